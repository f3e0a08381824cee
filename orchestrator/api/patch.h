/* patch.h — JSON merge patch (RFC 7386) and JSON patch (RFC 6902).
 *
 * Both leave target untouched (borrowed) and give the result as a new
 * reference in *out on CAP_OK. On failure they return CAP_EINVAL (or
 * CAP_ENOMEM) with a message in errmsg, a caller-owned buffer of
 * CAP_ERRMSG_SIZE bytes, and leave *out unset. */
#ifndef CAPSTAN_ORCH_PATCH_H
#define CAPSTAN_ORCH_PATCH_H

#include <jansson.h>

/* RFC 7386: objects merge recursively, null deletes, anything else replaces. */
int patch_merge(json_t *target, json_t *patch, json_t **out, char *errmsg);
/* RFC 6902: ops is an array of {op, path, value|from}; add, remove, replace,
 * move, copy, test; JSON pointers (RFC 6901) with ~0 and ~1 escapes; "-"
 * appends to an array. A failing "test" is CAP_EINVAL too. The whole patch
 * applies or nothing does. */
int patch_json(json_t *target, json_t *ops, json_t **out, char *errmsg);

/* The value at an RFC 6901 pointer inside doc, borrowed, or NULL when the
 * pointer is malformed or names nothing. "" is doc itself. */
json_t *patch_pointer_get(json_t *doc, const char *pointer);

#endif
