/* cachedobj.h — an object as the watch cache keeps it: its JSON text as the
 * API serves it, plus a small parsed view of the fields selectors read.
 *
 * Why: a jansson tree of a Pod with its managedFields is 10-20 times the
 * size of its text, and the cache holds every object plus a ring of recent
 * events; and the text is what lists and watches send anyway, so serving
 * them is splicing bytes instead of serializing a tree per watcher.
 *
 * The text is json_dumps(obj, JSON_COMPACT) of the object it was made from,
 * byte for byte what replying with that tree produced. The view is an object
 * holding only metadata.name, metadata.namespace, metadata.labels and the
 * scalar fields at the paths field selectors commonly ask for (spec.nodeName,
 * status.phase, involvedObject.name, ...; see cobj_view_covers); a selector
 * over any other path must match against cobj_tree instead.
 *
 * Ownership: a cobj is immutable and reference-counted; cobj_new returns one
 * reference, cobj_ref adds one, cobj_unref drops one (NULL is allowed).
 * Borrowed pointers (text, view) live as long as the caller's reference.
 * Threading: no shared state; a cobj may be read from any thread but its
 * references counted from one. */
#ifndef CAPSTAN_ORCH_CACHEDOBJ_H
#define CAPSTAN_ORCH_CACHEDOBJ_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "orchestrator/api/selector.h"

struct cobj;

/* A new object from tree (borrowed, not kept). NULL on allocation failure. */
struct cobj *cobj_new(json_t *tree);
struct cobj *cobj_ref(struct cobj *o);
void cobj_unref(struct cobj *o);

/* The compact JSON text (NUL-terminated) and its length. */
const char *cobj_text(const struct cobj *o);
size_t cobj_len(const struct cobj *o);
/* The selector view (borrowed). */
json_t *cobj_view(const struct cobj *o);
/* The whole object, parsed from the text: a new reference, NULL only on
 * allocation failure. */
json_t *cobj_tree(const struct cobj *o);

/* True when every path fs reads is in the view (NULL: no field selector). */
bool cobj_view_covers(const struct field_selector *fs);

#endif
