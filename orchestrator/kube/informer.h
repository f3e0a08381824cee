/* informer.h — list + watch of one resource into a local cache, with event
 * handlers: the client-go informer, small.
 *
 * The cache maps "ns/name" (or "name" for cluster-scoped objects) to the
 * latest object seen. After the first list, handlers see on_add for every
 * object; then the watch drives on_add/on_update/on_delete. A watch that
 * ends is resumed from the last resourceVersion; a 410 Gone (or any refused
 * watch) relists, and the relist is diffed against the cache so handlers see
 * what changed meanwhile (deletions included). resync_ms > 0 replays every
 * cached object as on_update(obj, obj) that often. Cached objects (and
 * those handed to on_add/on_update) have no metadata.managedFields: nothing
 * here reads them, and they are much of an object's size; a write of such
 * an object without the field keeps the stored ownership, as the API
 * server treats a client that knows nothing of managedFields.
 *
 * Threading: loop thread only. Ownership: objects passed to handlers and
 * returned by informer_get are borrowed (valid until the next event is
 * applied; json_incref to keep them). Handlers added after the informer has
 * synced get on_add for every cached object at once. */
#ifndef CAPSTAN_INFORMER_H
#define CAPSTAN_INFORMER_H

#include <jansson.h>
#include <stdbool.h>

#include "orchestrator/kube/kclient.h"

struct informer;

struct informer_handlers {
	void (*on_add)(void *data, json_t *obj);
	void (*on_update)(void *data, json_t *old, json_t *obj);
	void (*on_delete)(void *data, json_t *obj);
	void *data;
};

/* ns NULL: all namespaces; selectors NULL: none. Nothing runs before
 * informer_start. The client must outlive the informer. */
int informer_new(struct kclient *c, const struct kres *r, const char *ns,
		 const char *label_selector, const char *field_selector, unsigned resync_ms,
		 struct informer **out);
/* Up to 8 handler sets; the struct is copied. */
int informer_add_handlers(struct informer *inf, const struct informer_handlers *h);
/* Removes the handler set whose data pointer is data (for stopping one user
 * of a shared informer). */
void informer_remove_handlers(struct informer *inf, void *data);
int informer_start(struct informer *inf);
/* True once the first list has been applied. */
bool informer_synced(const struct informer *inf);
/* Cached object by key, or NULL. Borrowed. */
json_t *informer_get(struct informer *inf, const char *key);
/* Calls fn for every cached object (borrowed). fn must not change the cache. */
void informer_foreach(struct informer *inf, void (*fn)(void *data, json_t *obj), void *data);
size_t informer_count(const struct informer *inf);
/* Stops the watch and timers and frees the informer (memory is reclaimed
 * once in-flight requests and handles have finished). No handler runs after
 * this returns. */
void informer_stop(struct informer *inf);

/* The cache key of an object: "ns/name" or "name". Returns buf. */
const char *informer_key(json_t *obj, char *buf, size_t size);

#endif
