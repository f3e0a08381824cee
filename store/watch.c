/* watch.c — the watch hub: see watch.h. */
#include "store/watch.h"

#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "lib/log.h"

/* Events replayed per watcher per timer tick. */
#define CATCHUP_CHUNK 1000
#define CATCHUP_TICK_MS 5

struct watcher {
	struct watcher *next, *prev;
	struct watch_hub *hub;
	uint8_t *key, *end;
	size_t key_len, end_len;
	bool prev_kv, no_put, no_delete, progress_notify;
	struct watch_sink sink;
	int64_t next_rev;    /* first revision not yet delivered */
	bool synced;
	bool done;           /* compacted: nothing more */
};

struct watch_hub {
	uv_loop_t *loop;
	struct mvcc *m;
	struct watcher *head;
	size_t count;
	size_t unsynced;
	size_t prev_kv;      /* watchers that want prev_kv */
	uint64_t batch;      /* bumped for every events array handed out */
	uv_timer_t catchup;
	uv_timer_t progress;
	unsigned progress_ms;
	int open_handles;
	bool closing;
	void (*batch_begin)(void *data);
	void (*batch_end)(void *data);
	void *batch_data;
};

static int bcmp_(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
	size_t n = an < bn ? an : bn;
	int c = n ? memcmp(a, b, n) : 0;
	return c ? c : (an < bn ? -1 : an > bn ? 1 : 0);
}

static bool matches(const struct watcher *w, const struct mvcc_event *ev)
{
	const struct mvcc_kv *kv = &ev->kv;
	if ((ev->type == MVCC_EVENT_PUT && w->no_put) ||
	    (ev->type == MVCC_EVENT_DELETE && w->no_delete))
		return false;
	if (w->end_len == 0)
		return bcmp_(kv->key, kv->key_len, w->key, w->key_len) == 0;
	if (!(w->key_len == 1 && w->key[0] == 0) && bcmp_(kv->key, kv->key_len, w->key, w->key_len) < 0)
		return false;
	if (w->end_len == 1 && w->end[0] == 0)
		return true;
	return bcmp_(kv->key, kv->key_len, w->end, w->end_len) < 0;
}

static void catchup_cb(uv_timer_t *t);

static void set_synced(struct watcher *w, bool synced)
{
	struct watch_hub *hub = w->hub;
	if (w->synced == synced)
		return;
	w->synced = synced;
	if (synced)
		hub->unsynced--;
	else {
		hub->unsynced++;
		if (!uv_is_active((uv_handle_t *)&hub->catchup) && !hub->closing)
			uv_timer_start(&hub->catchup, catchup_cb, 0, 0);
	}
}

/* Delivers the matching events of evs[0..n) to w; filtering of prev_kv is
 * the sink's (it knows the flag). */
static void deliver(struct watcher *w, const struct mvcc_event *evs, size_t n, int64_t rev)
{
	const struct mvcc_event *stack[64];
	const struct mvcc_event **sel = n <= 64 ? stack : malloc(n * sizeof *sel);
	size_t k = 0;
	if (sel == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		if (evs[i].kv.mod_rev >= w->next_rev && matches(w, &evs[i]))
			sel[k++] = &evs[i];
	if (k > 0)
		w->sink.deliver(w->sink.data, sel, k, rev);
	if (sel != stack)
		free(sel);
}

/* Replays up to one chunk of history for an unsynced watcher; returns true
 * when it has caught up. */
static bool catch_up(struct watch_hub *hub, struct watcher *w)
{
	struct mvcc_events evs = {0};
	int64_t cur = mvcc_rev(hub->m);
	int64_t next = 0;
	int rv;

	if (w->next_rev > cur)
		return true;
	rv = mvcc_events(hub->m, w->next_rev, cur, w->key, w->key_len, w->end, w->end_len,
			 w->prev_kv, CATCHUP_CHUNK, &evs, &next);
	if (rv == CAP_ECOMPACTED) {
		w->done = true;
		w->sink.compacted(w->sink.data, mvcc_compact_rev(hub->m));
		return true;
	}
	if (rv != 0) {
		log_warn("watch: reading history from %lld: %s", (long long)w->next_rev,
			 mvcc_errmsg(hub->m));
		return false;
	}
	hub->batch++;
	deliver(w, evs.v, evs.n, cur);
	mvcc_events_clear(&evs);
	w->next_rev = next;
	return w->next_rev > cur;
}

static void catchup_cb(uv_timer_t *t)
{
	struct watch_hub *hub = t->data;
	bool pending = false;
	for (struct watcher *w = hub->head; w; w = w->next) {
		if (w->synced || w->done)
			continue;
		if (w->sink.blocked(w->sink.data)) {
			pending = true;
			continue;
		}
		if (catch_up(hub, w))
			set_synced(w, true);
		else
			pending = true;
	}
	if (pending && !hub->closing)
		uv_timer_start(&hub->catchup, catchup_cb, CATCHUP_TICK_MS, 0);
}

static void progress_cb(uv_timer_t *t)
{
	struct watch_hub *hub = t->data;
	int64_t rev = mvcc_rev(hub->m);
	for (struct watcher *w = hub->head; w; w = w->next)
		if (w->progress_notify && w->synced && !w->done)
			w->sink.deliver(w->sink.data, NULL, 0, rev);
}

int watch_hub_new(uv_loop_t *loop, struct mvcc *m, unsigned progress_ms,
		  struct watch_hub **out)
{
	struct watch_hub *hub = calloc(1, sizeof *hub);
	if (hub == NULL)
		return CAP_ENOMEM;
	hub->loop = loop;
	hub->m = m;
	hub->progress_ms = progress_ms ? progress_ms : 600000;
	uv_timer_init(loop, &hub->catchup);
	uv_timer_init(loop, &hub->progress);
	hub->catchup.data = hub;
	hub->progress.data = hub;
	hub->open_handles = 2;
	uv_timer_start(&hub->progress, progress_cb, hub->progress_ms, hub->progress_ms);
	*out = hub;
	return CAP_OK;
}

static void hub_handle_closed(uv_handle_t *h)
{
	struct watch_hub *hub = h->data;
	if (--hub->open_handles == 0)
		free(hub);
}

void watch_hub_close(struct watch_hub *hub)
{
	hub->closing = true;
	uv_close((uv_handle_t *)&hub->catchup, hub_handle_closed);
	uv_close((uv_handle_t *)&hub->progress, hub_handle_closed);
}

static uint8_t *copy(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n + 1);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

int watch_add(struct watch_hub *hub, const struct watch_opts *opts,
	      const struct watch_sink *sink, struct watcher **out)
{
	struct watcher *w = calloc(1, sizeof *w);
	int64_t cur = mvcc_rev(hub->m);
	if (w == NULL)
		return CAP_ENOMEM;
	w->key = copy(opts->key, opts->key_len);
	w->end = copy(opts->end, opts->end_len);
	if (w->key == NULL || w->end == NULL) {
		free(w->key);
		free(w->end);
		free(w);
		return CAP_ENOMEM;
	}
	w->key_len = opts->key_len;
	w->end_len = opts->end_len;
	w->prev_kv = opts->prev_kv;
	hub->prev_kv += w->prev_kv;
	w->no_put = opts->no_put;
	w->no_delete = opts->no_delete;
	w->progress_notify = opts->progress_notify;
	w->sink = *sink;
	w->hub = hub;
	w->next_rev = opts->start_rev > 0 ? opts->start_rev : cur + 1;
	w->synced = true;
	w->next = hub->head;
	if (hub->head)
		hub->head->prev = w;
	hub->head = w;
	hub->count++;
	if (w->next_rev <= cur) {
		set_synced(w, false);
		uv_timer_start(&hub->catchup, catchup_cb, 0, 0);
	}
	*out = w;
	return CAP_OK;
}

void watch_remove(struct watch_hub *hub, struct watcher *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		hub->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	if (!w->synced)
		hub->unsynced--;
	hub->prev_kv -= w->prev_kv;
	hub->count--;
	free(w->key);
	free(w->end);
	free(w);
}

bool watch_synced(const struct watcher *w)
{
	return w->synced;
}

void watch_hub_notify(struct watch_hub *hub, const struct mvcc_events *evs, int64_t rev)
{
	hub->batch++;
	if (hub->batch_begin != NULL)
		hub->batch_begin(hub->batch_data);
	for (struct watcher *w = hub->head; w; w = w->next) {
		if (!w->synced || w->done)
			continue;
		if (w->sink.blocked(w->sink.data)) {
			/* The reader is behind: stop feeding it from memory and let it
			 * catch up from history when it drains. */
			set_synced(w, false);
			continue;
		}
		deliver(w, evs->v, evs->n, rev);
		/* Only ever forward: a watch that starts in the future keeps its
		 * start until the store gets there. */
		if (w->next_rev <= rev)
			w->next_rev = rev + 1;
	}
	if (hub->batch_end != NULL)
		hub->batch_end(hub->batch_data);
}

void watch_hub_set_batch_hooks(struct watch_hub *hub, void (*begin)(void *data),
			       void (*end)(void *data), void *data)
{
	hub->batch_begin = begin;
	hub->batch_end = end;
	hub->batch_data = data;
}

void watch_hub_reset(struct watch_hub *hub)
{
	for (struct watcher *w = hub->head; w; w = w->next)
		if (!w->done)
			set_synced(w, false);
	if (hub->unsynced > 0 && !hub->closing)
		uv_timer_start(&hub->catchup, catchup_cb, 0, 0);
}

uint64_t watch_hub_batch(const struct watch_hub *hub)
{
	return hub->batch;
}

bool watch_hub_wants_prev(const struct watch_hub *hub)
{
	return hub->prev_kv > 0;
}

size_t watch_hub_count(const struct watch_hub *hub)
{
	return hub->count;
}
