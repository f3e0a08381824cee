/* watch.h — the watch hub: delivers every event to every interested watcher
 * once, in revision order, without gaps.
 *
 * A watcher is "synced" when it has seen everything up to the store's
 * current revision: it then gets events straight from apply
 * (watch_hub_notify). A watcher that starts in the past, or whose sink is
 * backed up (a slow reader), is "unsynced": the hub replays history for it
 * from sqlite in bounded chunks on a timer until it catches up, so a slow
 * reader never holds events in memory and never blocks the others. A
 * watcher whose next revision has been compacted away is told so once
 * (sink.compacted) and then gets nothing more.
 *
 * Threading: loop thread only. Ownership: the hub copies the options' keys;
 * events passed to sink.deliver are borrowed for the call. */
#ifndef CAPSTAN_WATCH_H
#define CAPSTAN_WATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "store/mvcc.h"

struct watch_hub;
struct watcher;

struct watch_opts {
	const uint8_t *key, *end;
	size_t key_len, end_len;   /* end semantics as in mvcc_range */
	int64_t start_rev;         /* 0 = from the next revision */
	bool prev_kv;
	bool no_put, no_delete;
	bool progress_notify;
};

struct watch_sink {
	/* Events of whole revisions, in order; n == 0 for a progress
	 * notification. rev is the store's revision at delivery. */
	void (*deliver)(void *data, const struct mvcc_event *const *evs, size_t n, int64_t rev);
	/* The watcher's next revision was compacted: it is finished. */
	void (*compacted)(void *data, int64_t compact_rev);
	/* True while the sink should not be given more (a slow reader). */
	bool (*blocked)(void *data);
	void *data;
};

int watch_hub_new(uv_loop_t *loop, struct mvcc *m, unsigned progress_ms,
		  struct watch_hub **out);
/* Closes the hub's timers and frees it once they are closed; watchers must
 * have been removed. */
void watch_hub_close(struct watch_hub *hub);

int watch_add(struct watch_hub *hub, const struct watch_opts *opts,
	      const struct watch_sink *sink, struct watcher **out);
void watch_remove(struct watch_hub *hub, struct watcher *w);
/* Whether w has caught up with the store (progress replies need all synced). */
bool watch_synced(const struct watcher *w);

/* Events of a committed batch, in revision order; rev is the new revision. */
void watch_hub_notify(struct watch_hub *hub, const struct mvcc_events *evs, int64_t rev);
/* The state was replaced (snapshot install): every watcher re-reads history. */
void watch_hub_reset(struct watch_hub *hub);
size_t watch_hub_count(const struct watch_hub *hub);
/* Whether any watcher wants put events' previous values (prev_kv); events
 * applied while none does may go without them (skip_prev_values), since a
 * watcher added later reads the events before it from history. */
bool watch_hub_wants_prev(const struct watch_hub *hub);
/* Called before and after watch_hub_notify hands one committed batch to the
 * synced watchers' sinks: the sinks' output in between may be gathered and
 * written at once (see http_server_batch_begin). Either may be NULL. */
void watch_hub_set_batch_hooks(struct watch_hub *hub, void (*begin)(void *data),
			       void (*end)(void *data), void *data);
/* Names the events array of the delivery under way: within one value, equal
 * event pointers are equal events, so a sink may encode a selection once
 * for every watcher that gets it. */
uint64_t watch_hub_batch(const struct watch_hub *hub);

#endif
