/* watchcache.h — an in-memory copy of every object under a key prefix of the
 * store (key -> object + mod_revision), kept current by one kv watch, with a
 * ring of recent events, so lists and watches are served without a trip
 * through Raft. Objects are kept as their JSON text plus a small selector
 * view (cachedobj.h), not as trees: the text is what lists and watches send.
 *
 * Happy path: wc_start ranges the prefix, then watches it from the next
 * revision; each watch frame updates the copy, appends to the ring and is
 * handed to the watchers whose prefix matches. Failure modes: a failed initial
 * range is retried every 250 ms; a watch that ends (compacted, store gone) is
 * a reset: every watcher gets its closed callback, the copy is reloaded.
 *
 * Objects held by the cache are immutable and reference-counted: callers
 * borrow them for the call (cobj_ref to keep one). The stored JSON gets
 * metadata.resourceVersion set to its mod_revision on the way in.
 *
 * Threading: loop thread only. Callbacks may run before the call that
 * registers them returns (replayed events, a wait already satisfied). */
#ifndef CAPSTAN_ORCH_WATCHCACHE_H
#define CAPSTAN_ORCH_WATCHCACHE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "lib/kv.h"
#include "orchestrator/api/cachedobj.h"

struct wc;
struct wc_watcher;

enum wc_type { WC_ADDED = 0, WC_MODIFIED, WC_DELETED };

struct wc_event {
	enum wc_type type;
	const char *key;
	struct cobj *obj;    /* new state; for DELETED the last state, resourceVersion = deletion */
	struct cobj *prev;   /* state before the event, NULL for ADDED */
	int64_t rev;
};

/* Starts loading; the kv is borrowed and must outlive the cache. */
int wc_start(uv_loop_t *loop, struct kv *kv, const char *prefix, struct wc **out);
/* Cancels the watch and every wait and watcher (their closed callbacks run),
 * then frees the cache once the kv has answered what is outstanding, and
 * calls cb. */
void wc_close(struct wc *c, void (*cb)(void *data), void *data);

bool wc_ready(const struct wc *c);
/* The revision the copy reflects (0 before it is loaded). */
int64_t wc_revision(const struct wc *c);
/* The oldest revision a watch may resume after. */
int64_t wc_oldest(const struct wc *c);

/* Calls fn for each object whose key is >= from (NULL: the start) and starts
 * with prefix, in key order, until fn returns false. obj is a tree parsed
 * for the call (borrowed; json_incref to keep it): for callers that read
 * a few small objects. */
typedef bool (*wc_item_fn)(void *data, const char *key, json_t *obj, int64_t rev);
void wc_range(const struct wc *c, const char *prefix, const char *from, wc_item_fn fn,
	      void *data);
/* The cached object at key (borrowed) and its mod_revision, or NULL. */
struct cobj *wc_get(const struct wc *c, const char *key, int64_t *rev);
/* The same over the cached objects themselves (borrowed): for lists and
 * watches, which send their text. */
typedef bool (*wc_cached_fn)(void *data, const char *key, struct cobj *obj, int64_t rev);
void wc_range_cached(const struct wc *c, const char *prefix, const char *from,
		     wc_cached_fn fn, void *data);

/* Calls cb(data, true) once the copy reflects revision rev, or cb(data,
 * false) after timeout_ms. */
typedef void (*wc_wait_fn)(void *data, bool ok);
int wc_wait(struct wc *c, int64_t rev, unsigned timeout_ms, wc_wait_fn cb, void *data);

/* Events under prefix with revision > after, replayed from the ring first.
 * CAP_ECOMPACTED when after < wc_oldest (the ring no longer holds them).
 * closed runs once if the cache resets; the watcher is gone then and must not
 * be passed to wc_unwatch. */
typedef void (*wc_event_fn)(void *data, const struct wc_event *ev);
typedef void (*wc_closed_fn)(void *data);
int wc_watch(struct wc *c, const char *prefix, int64_t after, wc_event_fn fn,
	     wc_closed_fn closed, void *data, struct wc_watcher **out);
/* Safe from inside fn. */
void wc_unwatch(struct wc *c, struct wc_watcher *w);

#endif
