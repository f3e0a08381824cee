/* validate.h — Kubernetes API validation of create and update, reporting
 * every bad field at once as the API server does.
 *
 * The causes array is what goes into a 422 Invalid Status's
 * details.causes: [{"reason": "FieldValueInvalid" | "FieldValueRequired" |
 * "FieldValueNotSupported" | "FieldValueDuplicate" | "FieldValueForbidden" |
 * "FieldValueTooLong", "message": "Invalid value: \"Foo_bar\": a lowercase
 * RFC 1123 subdomain must consist of ...", "field": "metadata.name"}], worded
 * as the real API server words them. */
#ifndef CAPSTAN_ORCH_VALIDATE_H
#define CAPSTAN_ORCH_VALIDATE_H

#include <jansson.h>

/* resource is the plural ("pods"); obj and old (NULL on create) are
 * borrowed. NULL when obj is valid, else a new array of causes. */
json_t *validate_object(const char *resource, json_t *obj, json_t *old);
/* The Status message for a 422: `<Kind> "<name>" is invalid: <field>:
 * <message>, ...` with causes joined as the API server joins them ("[a, b]"
 * when there are several). malloc'd; the caller frees it. */
char *validate_status_message(const char *kind, const char *name, json_t *causes);

/* NULL if ok, else Kubernetes' message (static storage), e.g. "a lowercase
 * RFC 1123 subdomain must consist of lower case alphanumeric characters, '-'
 * or '.', and must start and end with an alphanumeric character (e.g.
 * 'example.com', regex used for validation is '...')". */
const char *validate_dns1123_subdomain(const char *name);
const char *validate_dns1123_label(const char *name);
/* A label or annotation key: an optional DNS subdomain prefix and "/", then
 * a name of at most 63 alphanumerics, '-', '_' or '.'. NULL if ok, else the
 * first of Kubernetes' messages (written into a static buffer: not
 * thread-safe, copy it before the next call). */
const char *validate_qualified_name(const char *name);
/* A label value: empty, or at most 63 alphanumerics, '-', '_' or '.'
 * starting and ending alphanumeric. NULL if ok, else the message (static). */
const char *validate_label_value(const char *value);

#endif
