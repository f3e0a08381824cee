/* watchcache.c — the API server's copy of the store under /registry/, kept by
 * one kv watch (see watchcache.h for the contract). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/b64.h"
#include "lib/err.h"
#include "lib/jsonx.h"
#include "lib/log.h"
#include "orchestrator/api/watchcache.h"

/* Events kept for watches that resume from a resourceVersion. */
#define RING_SIZE 20000
#define RETRY_MS 250

struct entry {
	char *key;
	struct cobj *obj;
	int64_t rev;
};

struct ring_ev {
	enum wc_type type;
	char *key;
	struct cobj *obj;
	struct cobj *prev;
	int64_t rev;
};

struct wc_watcher {
	struct wc_watcher *next;
	char *prefix;
	int64_t after;
	wc_event_fn fn;
	wc_closed_fn closed;
	void *data;
	bool dead;
};

struct waiter {
	struct waiter *next;
	struct wc *c;
	int64_t rev;
	wc_wait_fn cb;
	void *data;
	uv_timer_t timer;
};

/* One kv watch; outlives the cache's interest in it until its last callback. */
struct kvw {
	struct wc *c;
	struct kv_watch *w;
	bool stale;
};

struct wc {
	uv_loop_t *loop;
	struct kv *kv;
	char *prefix;
	char *prefix_end;
	bool ready;
	bool closing;
	int64_t rev;
	int64_t oldest;
	struct entry *items;
	size_t n, cap;
	struct ring_ev *ring;
	size_t ring_head, ring_len;   /* oldest at ring_head */
	struct wc_watcher *watchers;
	int dispatching;
	struct waiter *waiters;
	struct kvw *watch;
	uv_timer_t retry;
	int pending;                  /* kv calls and watches not yet finished, + handles */
	void (*close_cb)(void *data);
	void *close_data;
};

static void load(struct wc *c);
static void on_retry(uv_timer_t *t);

/* ---- the sorted copy ---- */

static size_t find(const struct wc *c, const char *key, bool *found)
{
	size_t lo = 0, hi = c->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int cmp = strcmp(c->items[mid].key, key);
		if (cmp == 0) {
			*found = true;
			return mid;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* Takes the reference to obj. Returns the previous object (a reference the
 * caller owns) or NULL. */
static struct cobj *put(struct wc *c, const char *key, struct cobj *obj, int64_t rev)
{
	bool found;
	size_t i = find(c, key, &found);
	struct cobj *prev;
	if (found) {
		prev = c->items[i].obj;
		c->items[i].obj = obj;
		c->items[i].rev = rev;
		return prev;
	}
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 256;
		struct entry *ni = realloc(c->items, ncap * sizeof *ni);
		if (ni == NULL) {
			cobj_unref(obj);
			return NULL;
		}
		c->items = ni;
		c->cap = ncap;
	}
	memmove(&c->items[i + 1], &c->items[i], (c->n - i) * sizeof *c->items);
	c->items[i].key = strdup(key);
	c->items[i].obj = obj;
	c->items[i].rev = rev;
	c->n++;
	return NULL;
}

static struct cobj *del(struct wc *c, const char *key)
{
	bool found;
	size_t i = find(c, key, &found);
	struct cobj *prev;
	if (!found)
		return NULL;
	prev = c->items[i].obj;
	free(c->items[i].key);
	memmove(&c->items[i], &c->items[i + 1], (c->n - i - 1) * sizeof *c->items);
	c->n--;
	return prev;
}

static void clear_items(struct wc *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->items[i].key);
		cobj_unref(c->items[i].obj);
	}
	c->n = 0;
}

static void clear_ring(struct wc *c)
{
	for (size_t k = 0; k < c->ring_len; k++) {
		struct ring_ev *e = &c->ring[(c->ring_head + k) % RING_SIZE];
		free(e->key);
		cobj_unref(e->obj);
		cobj_unref(e->prev);
	}
	c->ring_head = c->ring_len = 0;
}

struct cobj *wc_get(const struct wc *c, const char *key, int64_t *rev)
{
	bool found;
	size_t i;
	if (!c->ready)
		return NULL;
	i = find(c, key, &found);
	if (!found)
		return NULL;
	*rev = c->items[i].rev;
	return c->items[i].obj;
}

struct tree_range {
	wc_item_fn fn;
	void *data;
};

static bool tree_item(void *data, const char *key, struct cobj *obj, int64_t rev)
{
	struct tree_range *tr = data;
	json_t *tree = cobj_tree(obj);
	bool more;
	if (tree == NULL)
		return true;
	more = tr->fn(tr->data, key, tree, rev);
	json_decref(tree);
	return more;
}

void wc_range(const struct wc *c, const char *prefix, const char *from, wc_item_fn fn,
	      void *data)
{
	struct tree_range tr = {fn, data};
	wc_range_cached(c, prefix, from, tree_item, &tr);
}

void wc_range_cached(const struct wc *c, const char *prefix, const char *from,
		     wc_cached_fn fn, void *data)
{
	bool found;
	size_t plen = strlen(prefix);
	const char *start = from != NULL && strcmp(from, prefix) > 0 ? from : prefix;
	for (size_t i = find(c, start, &found); i < c->n; i++) {
		if (strncmp(c->items[i].key, prefix, plen) != 0)
			break;
		if (!fn(data, c->items[i].key, c->items[i].obj, c->items[i].rev))
			break;
	}
}

/* ---- decoding store answers ---- */

static char *b64_field(json_t *o, const char *name, size_t *len)
{
	const char *s = json_string_value(json_object_get(o, name));
	char *out;
	long n;
	if (s == NULL) {
		*len = 0;
		return calloc(1, 1);
	}
	out = malloc(b64_decoded_max(strlen(s)) + 1);
	if (out == NULL)
		return NULL;
	n = b64_decode(s, strlen(s), (uint8_t *)out);
	if (n < 0) {
		free(out);
		return NULL;
	}
	out[n] = '\0';
	*len = (size_t)n;
	return out;
}

static int64_t i64_field(json_t *o, const char *name)
{
	int64_t v = 0;
	char errmsg[CAP_ERRMSG_SIZE];
	jsonx_get_i64(o, name, &v, errmsg);
	return v;
}

/* The tree stored in kv (a gateway kv object), with resourceVersion set to
 * its mod_revision; NULL if it is not JSON. */
static json_t *decode_tree(json_t *kvo, char **key, int64_t *rev)
{
	size_t klen, vlen;
	char *k = b64_field(kvo, "key", &klen);
	char *v = b64_field(kvo, "value", &vlen);
	json_t *obj = NULL, *meta;
	char rvs[32];
	if (k == NULL || v == NULL)
		goto out;
	*rev = i64_field(kvo, "mod_revision");
	obj = json_loadb(v, vlen, 0, NULL);
	if (!json_is_object(obj)) {
		json_decref(obj);
		obj = NULL;
		goto out;
	}
	meta = json_object_get(obj, "metadata");
	if (!json_is_object(meta)) {
		meta = json_object();
		json_object_set_new(obj, "metadata", meta);
	}
	snprintf(rvs, sizeof rvs, "%lld", (long long)*rev);
	json_object_set_new(meta, "resourceVersion", json_string(rvs));
	*key = k;
	k = NULL;
out:
	free(k);
	free(v);
	return obj;
}

/* The same as a cached object. */
static struct cobj *decode_kv(json_t *kvo, char **key, int64_t *rev)
{
	json_t *tree = decode_tree(kvo, key, rev);
	struct cobj *o;
	if (tree == NULL)
		return NULL;
	o = cobj_new(tree);
	json_decref(tree);
	if (o == NULL) {
		free(*key);
		*key = NULL;
	}
	return o;
}

/* ---- events ---- */

static void ring_push(struct wc *c, enum wc_type type, const char *key, struct cobj *obj,
		      struct cobj *prev, int64_t rev)
{
	struct ring_ev *e;
	if (c->ring_len == RING_SIZE) {
		e = &c->ring[c->ring_head];
		/* Resuming after the dropped event's revision is no longer possible. */
		c->oldest = e->rev;
		free(e->key);
		cobj_unref(e->obj);
		cobj_unref(e->prev);
		c->ring_head = (c->ring_head + 1) % RING_SIZE;
		c->ring_len--;
	}
	e = &c->ring[(c->ring_head + c->ring_len) % RING_SIZE];
	e->type = type;
	e->key = strdup(key);
	e->obj = cobj_ref(obj);
	e->prev = cobj_ref(prev);
	e->rev = rev;
	c->ring_len++;
}

static void reap_watchers(struct wc *c)
{
	struct wc_watcher **pp = &c->watchers;
	if (c->dispatching > 0)
		return;
	while (*pp != NULL) {
		struct wc_watcher *w = *pp;
		if (w->dead) {
			*pp = w->next;
			free(w->prefix);
			free(w);
		} else {
			pp = &w->next;
		}
	}
}

static void deliver(struct wc_watcher *w, const struct wc_event *ev)
{
	if (w->dead || ev->rev <= w->after)
		return;
	if (strncmp(ev->key, w->prefix, strlen(w->prefix)) != 0)
		return;
	w->fn(w->data, ev);
}

static void dispatch(struct wc *c, const struct wc_event *ev)
{
	c->dispatching++;
	for (struct wc_watcher *w = c->watchers; w != NULL; w = w->next)
		deliver(w, ev);
	c->dispatching--;
	reap_watchers(c);
}

static void wake_waiters(struct wc *c, bool force_fail);

static void maybe_free(struct wc *c);

static void timer_freed(uv_handle_t *h)
{
	struct waiter *wt = h->data;
	struct wc *c = wt->c;
	free(wt);
	c->pending--;
	maybe_free(c);
}

static void finish_waiter(struct wc *c, struct waiter *wt, bool ok)
{
	struct waiter **pp;
	for (pp = &c->waiters; *pp != NULL; pp = &(*pp)->next)
		if (*pp == wt) {
			*pp = wt->next;
			break;
		}
	uv_timer_stop(&wt->timer);
	wt->cb(wt->data, ok);
	uv_close((uv_handle_t *)&wt->timer, timer_freed);
}

static void wake_waiters(struct wc *c, bool force_fail)
{
	struct waiter *wt = c->waiters, *next;
	for (; wt != NULL; wt = next) {
		next = wt->next;
		if (force_fail)
			finish_waiter(c, wt, false);
		else if (c->ready && c->rev >= wt->rev)
			finish_waiter(c, wt, true);
	}
}

static void apply_event(struct wc *c, json_t *ev)
{
	bool is_delete = strcmp(json_string_value(json_object_get(ev, "type")) ?: "", "DELETE") == 0;
	json_t *kvo = json_object_get(ev, "kv");
	struct wc_event out = {0};
	char *key = NULL;
	int64_t rev = 0;
	if (is_delete) {
		size_t klen;
		struct cobj *prev, *last;
		json_t *tree, *meta;
		char rvs[32];
		key = b64_field(kvo, "key", &klen);
		rev = i64_field(kvo, "mod_revision");
		if (key == NULL)
			return;
		prev = del(c, key);
		if (prev != NULL) {
			/* The last state, stamped with the revision of its deletion, as
			 * the real server sends DELETED events. */
			tree = cobj_tree(prev);
			meta = json_object_get(tree, "metadata");
			snprintf(rvs, sizeof rvs, "%lld", (long long)rev);
			json_object_set_new(meta, "resourceVersion", json_string(rvs));
			last = cobj_new(tree);
			json_decref(tree);
			if (last == NULL) {
				/* Out of memory: the copy no longer matches the store. */
				cobj_unref(prev);
				free(key);
				log_error("watch cache: out of memory on a delete");
				return;
			}
			out.type = WC_DELETED;
			out.key = key;
			out.obj = last;
			out.prev = prev;
			out.rev = rev;
			ring_push(c, out.type, key, last, prev, rev);
			if (rev > c->rev)
				c->rev = rev;
			dispatch(c, &out);
			cobj_unref(last);
			cobj_unref(prev);
		}
		free(key);
		return;
	}
	struct cobj *obj = decode_kv(kvo, &key, &rev);
	if (obj == NULL) {
		log_warn("watch cache: a value under %s is not a JSON object; skipped", c->prefix);
		return;
	}
	struct cobj *prev = put(c, key, cobj_ref(obj), rev);
	out.type = prev != NULL ? WC_MODIFIED : WC_ADDED;
	out.key = key;
	out.obj = obj;
	out.prev = prev;
	out.rev = rev;
	ring_push(c, out.type, key, obj, prev, rev);
	if (rev > c->rev)
		c->rev = rev;
	dispatch(c, &out);
	cobj_unref(obj);
	cobj_unref(prev);
	free(key);
}

static void reset(struct wc *c, const char *why)
{
	struct wc_watcher *w;
	if (!c->closing)
		log_warn("watch cache: %s; reloading", why);
	c->ready = false;
	c->dispatching++;
	for (w = c->watchers; w != NULL; w = w->next) {
		if (!w->dead) {
			w->dead = true;
			w->closed(w->data);
		}
	}
	c->dispatching--;
	reap_watchers(c);
	clear_items(c);
	clear_ring(c);
	if (!c->closing && !uv_is_active((uv_handle_t *)&c->retry)) {
		c->pending++;
		uv_timer_start(&c->retry, on_retry, RETRY_MS, 0);
	}
}

static void on_watch(void *data, json_t *frame, json_t *err)
{
	struct kvw *kw = data;
	struct wc *c = kw->c;
	json_t *events, *ev;
	size_t i;
	int64_t hrev;
	if (frame == NULL) {
		/* The stream is over: after our cancel, or broken. */
		bool stale = kw->stale;
		if (c->watch == kw)
			c->watch = NULL;
		free(kw);
		c->pending--;
		if (!stale && !c->closing)
			reset(c, err != NULL ? "the store watch broke" : "the store watch ended");
		maybe_free(c);
		return;
	}
	if (kw->stale)
		return;
	if (json_is_true(json_object_get(frame, "canceled"))) {
		kw->stale = true;
		kv_watch_cancel(c->kv, kw->w);
		reset(c, "the store watch was cancelled (compacted)");
		return;
	}
	events = json_object_get(frame, "events");
	json_array_foreach(events, i, ev)
		apply_event(c, ev);
	hrev = i64_field(json_object_get(frame, "header"), "revision");
	/* A frame's header revision covers every event up to it. */
	if (hrev > c->rev)
		c->rev = hrev;
	wake_waiters(c, false);
}

static void start_watch(struct wc *c)
{
	struct kvw *kw = calloc(1, sizeof *kw);
	char *kb = malloc(b64_encoded_size(strlen(c->prefix)));
	char *eb = malloc(b64_encoded_size(strlen(c->prefix_end)));
	json_t *create;
	int rv;
	b64_encode((const uint8_t *)c->prefix, strlen(c->prefix), kb);
	b64_encode((const uint8_t *)c->prefix_end, strlen(c->prefix_end), eb);
	create = json_pack("{s:s, s:s, s:o}", "key", kb, "range_end", eb, "start_revision",
			   jsonx_i64(c->rev + 1));
	free(kb);
	free(eb);
	kw->c = c;
	rv = kv_watch(c->kv, create, on_watch, kw, &kw->w);
	json_decref(create);
	if (rv != 0) {
		free(kw);
		reset(c, "cannot watch the store");
		return;
	}
	c->pending++;
	c->watch = kw;
}

static void on_range(void *data, json_t *answer, json_t *err)
{
	struct wc *c = data;
	json_t *kvs, *kvo;
	size_t i;
	c->pending--;
	if (c->closing) {
		maybe_free(c);
		return;
	}
	if (err != NULL) {
		log_debug("watch cache: initial list failed: %s",
			  json_string_value(json_object_get(err, "message")));
		c->pending++;
		uv_timer_start(&c->retry, on_retry, RETRY_MS, 0);
		return;
	}
	clear_items(c);
	clear_ring(c);
	kvs = json_object_get(answer, "kvs");
	json_array_foreach(kvs, i, kvo) {
		char *key = NULL;
		int64_t rev = 0;
		struct cobj *obj = decode_kv(kvo, &key, &rev);
		if (obj == NULL)
			continue;
		cobj_unref(put(c, key, obj, rev));
		free(key);
	}
	c->rev = i64_field(json_object_get(answer, "header"), "revision");
	c->oldest = c->rev;
	c->ready = true;
	log_info("watch cache: %zu objects at revision %lld", c->n, (long long)c->rev);
	start_watch(c);
	wake_waiters(c, false);
}

static void load(struct wc *c)
{
	json_t *req;
	char *kb, *eb;
	int rv;
	if (c->closing)
		return;
	kb = malloc(b64_encoded_size(strlen(c->prefix)));
	eb = malloc(b64_encoded_size(strlen(c->prefix_end)));
	b64_encode((const uint8_t *)c->prefix, strlen(c->prefix), kb);
	b64_encode((const uint8_t *)c->prefix_end, strlen(c->prefix_end), eb);
	req = json_pack("{s:s, s:s}", "key", kb, "range_end", eb);
	free(kb);
	free(eb);
	rv = kv_call(c->kv, KV_RANGE, req, on_range, c);
	json_decref(req);
	if (rv != 0) {
		c->pending++;
		uv_timer_start(&c->retry, on_retry, RETRY_MS, 0);
		return;
	}
	c->pending++;
}


static void on_retry(uv_timer_t *t)
{
	struct wc *c = t->data;
	c->pending--;
	load(c);
}

static void on_wait_timeout(uv_timer_t *t)
{
	struct waiter *wt = t->data;
	finish_waiter(wt->c, wt, false);
}

int wc_start(uv_loop_t *loop, struct kv *kv, const char *prefix, struct wc **out)
{
	struct wc *c = calloc(1, sizeof *c);
	size_t plen = strlen(prefix);
	if (c == NULL || plen == 0)
		goto err;
	c->loop = loop;
	c->kv = kv;
	c->prefix = strdup(prefix);
	c->prefix_end = strdup(prefix);
	c->ring = calloc(RING_SIZE, sizeof *c->ring);
	if (c->prefix == NULL || c->prefix_end == NULL || c->ring == NULL)
		goto err_free;
	c->prefix_end[plen - 1]++;
	uv_timer_init(loop, &c->retry);
	c->retry.data = c;
	*out = c;
	c->pending++;   /* the retry handle itself, released when it closes */
	load(c);
	return 0;
err_free:
	free(c->prefix);
	free(c->prefix_end);
	free(c->ring);
err:
	free(c);
	return CAP_ENOMEM;
}

bool wc_ready(const struct wc *c)
{
	return c->ready;
}

int64_t wc_revision(const struct wc *c)
{
	return c->ready ? c->rev : 0;
}

int64_t wc_oldest(const struct wc *c)
{
	return c->oldest;
}

int wc_wait(struct wc *c, int64_t rev, unsigned timeout_ms, wc_wait_fn cb, void *data)
{
	struct waiter *wt;
	if (c->ready && c->rev >= rev) {
		cb(data, true);
		return 0;
	}
	wt = calloc(1, sizeof *wt);
	if (wt == NULL)
		return CAP_ENOMEM;
	wt->c = c;
	wt->rev = rev;
	wt->cb = cb;
	wt->data = data;
	uv_timer_init(c->loop, &wt->timer);
	wt->timer.data = wt;
	c->pending++;
	wt->next = c->waiters;
	c->waiters = wt;
	uv_timer_start(&wt->timer, on_wait_timeout, timeout_ms, 0);
	return 0;
}

int wc_watch(struct wc *c, const char *prefix, int64_t after, wc_event_fn fn,
	     wc_closed_fn closed, void *data, struct wc_watcher **out)
{
	struct wc_watcher *w;
	if (!c->ready)
		return CAP_EUNAVAILABLE;
	if (after < c->oldest)
		return CAP_ECOMPACTED;
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return CAP_ENOMEM;
	w->prefix = strdup(prefix);
	w->after = after;
	w->fn = fn;
	w->closed = closed;
	w->data = data;
	w->next = c->watchers;
	c->watchers = w;
	*out = w;
	c->dispatching++;
	for (size_t k = 0; k < c->ring_len && !w->dead; k++) {
		struct ring_ev *e = &c->ring[(c->ring_head + k) % RING_SIZE];
		struct wc_event ev = {e->type, e->key, e->obj, e->prev, e->rev};
		deliver(w, &ev);
	}
	c->dispatching--;
	reap_watchers(c);
	return 0;
}

void wc_unwatch(struct wc *c, struct wc_watcher *w)
{
	w->dead = true;
	reap_watchers(c);
}

static void retry_closed(uv_handle_t *h)
{
	struct wc *c = h->data;
	c->pending--;
	maybe_free(c);
}

static void maybe_free(struct wc *c)
{
	void (*cb)(void *);
	void *data;
	if (!c->closing || c->pending > 0)
		return;
	cb = c->close_cb;
	data = c->close_data;
	clear_items(c);
	clear_ring(c);
	free(c->items);
	free(c->ring);
	free(c->prefix);
	free(c->prefix_end);
	free(c);
	if (cb != NULL)
		cb(data);
}

void wc_close(struct wc *c, void (*cb)(void *data), void *data)
{
	c->closing = true;
	c->close_cb = cb;
	c->close_data = data;
	reset(c, "closing");
	wake_waiters(c, true);
	if (uv_is_active((uv_handle_t *)&c->retry)) {
		uv_timer_stop(&c->retry);
		c->pending--;
	}
	uv_close((uv_handle_t *)&c->retry, retry_closed);
	if (c->watch != NULL) {
		c->watch->stale = true;
		kv_watch_cancel(c->kv, c->watch->w);
	}
}
