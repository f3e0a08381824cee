/* informer.c — list + watch of one resource into a keyed cache, with
 * handlers (see informer.h).
 *
 * Happy path: list → the cache is replaced and diffed (handlers see adds,
 * updates, deletes) → watch from the list's resourceVersion → events update
 * the cache → the watch ends (server timeout, restart) → it is resumed from
 * the last resourceVersion seen (events and bookmarks both advance it).
 *
 * Failure modes: a failed list is retried after a second; a watch answered
 * with an ERROR (410 Gone: the resourceVersion is compacted) or refused
 * relists; watches that end at once over and over are resumed no faster than
 * once a second, so a broken server is not hammered.
 *
 * Lifetime: informer_stop marks the informer stopped and releases what it
 * can at once; the memory goes when the last in-flight list answer and timer
 * close callbacks have come back (refs). */
#include "orchestrator/kube/informer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

#define INFORMER_MAX_HANDLERS 8
#define INFORMER_RETRY_MS 1000

struct informer {
	struct kclient *client;
	uv_loop_t *loop;
	struct kres res;
	char *ns;
	char *label_selector;
	char *field_selector;
	unsigned resync_ms;
	json_t *cache;                 /* key -> object */
	struct informer_handlers handlers[INFORMER_MAX_HANDLERS];
	int nhandlers;
	char rv[64];
	struct kclient_watch *watch;
	uv_timer_t retry;              /* relist / rewatch later */
	uv_timer_t resync;
	uint64_t watch_started;        /* loop time, ms */
	int refs;                      /* timers open, list in flight */
	bool synced;
	bool started;
	bool stopping;
	bool relist;                   /* the watch said 410 / refused */
};

static void start_list(struct informer *inf);
static void start_watch(struct informer *inf);

const char *informer_key(json_t *obj, char *buf, size_t size)
{
	json_t *md = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));

	if (name == NULL)
		name = "";
	if (ns != NULL && ns[0] != '\0')
		snprintf(buf, size, "%s/%s", ns, name);
	else
		snprintf(buf, size, "%s", name);
	return buf;
}

static char *dup_or_null(const char *s)
{
	return s != NULL && s[0] != '\0' ? strdup(s) : NULL;
}

int informer_new(struct kclient *c, const struct kres *r, const char *ns,
		 const char *label_selector, const char *field_selector, unsigned resync_ms,
		 struct informer **out)
{
	struct informer *inf = calloc(1, sizeof(*inf));

	if (inf == NULL)
		return -1;
	inf->client = c;
	inf->loop = kclient_loop(c);
	inf->res = *r;
	inf->ns = dup_or_null(ns);
	inf->label_selector = dup_or_null(label_selector);
	inf->field_selector = dup_or_null(field_selector);
	inf->resync_ms = resync_ms;
	inf->cache = json_object();
	if (inf->cache == NULL)
		goto err_after_alloc;
	*out = inf;
	return 0;

err_after_alloc:
	free(inf->ns);
	free(inf->label_selector);
	free(inf->field_selector);
	free(inf);
	return -1;
}

static void maybe_free(struct informer *inf)
{
	if (!inf->stopping || inf->refs > 0)
		return;
	json_decref(inf->cache);
	free(inf->ns);
	free(inf->label_selector);
	free(inf->field_selector);
	free(inf);
}

static void timer_closed(uv_handle_t *h)
{
	struct informer *inf = h->data;

	inf->refs--;
	maybe_free(inf);
}

/* ---- dispatch ---- */

static void emit_add(struct informer *inf, json_t *obj)
{
	for (int i = 0; i < inf->nhandlers && !inf->stopping; i++)
		if (inf->handlers[i].on_add != NULL)
			inf->handlers[i].on_add(inf->handlers[i].data, obj);
}

static void emit_update(struct informer *inf, json_t *old, json_t *obj)
{
	for (int i = 0; i < inf->nhandlers && !inf->stopping; i++)
		if (inf->handlers[i].on_update != NULL)
			inf->handlers[i].on_update(inf->handlers[i].data, old, obj);
}

static void emit_delete(struct informer *inf, json_t *obj)
{
	for (int i = 0; i < inf->nhandlers && !inf->stopping; i++)
		if (inf->handlers[i].on_delete != NULL)
			inf->handlers[i].on_delete(inf->handlers[i].data, obj);
}

static void note_rv(struct informer *inf, json_t *obj)
{
	const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"),
							   "resourceVersion"));

	if (rv != NULL && rv[0] != '\0')
		snprintf(inf->rv, sizeof inf->rv, "%s", rv);
}

/* Sets key to obj and tells the handlers; a reference to the old object is
 * held across the calls so they may compare. */
static void apply_upsert(struct informer *inf, json_t *obj)
{
	char key[512];
	json_t *old;

	/* No user of an informer reads field ownership, and it is a third or
	 * more of a typical object (client-go's informers allow dropping it
	 * the same way, with a transform). */
	json_object_del(json_object_get(obj, "metadata"), "managedFields");
	informer_key(obj, key, sizeof key);
	old = json_incref(json_object_get(inf->cache, key));
	json_object_set(inf->cache, key, obj);
	if (old != NULL)
		emit_update(inf, old, obj);
	else
		emit_add(inf, obj);
	json_decref(old);
}

static void apply_delete(struct informer *inf, json_t *obj)
{
	char key[512];
	json_t *old;

	informer_key(obj, key, sizeof key);
	old = json_incref(json_object_get(inf->cache, key));
	json_object_del(inf->cache, key);
	/* The final state is the watch's object; the cached one if it has none. */
	emit_delete(inf, obj != NULL ? obj : old);
	json_decref(old);
}

/* ---- list ---- */

static void retry_cb(uv_timer_t *t)
{
	struct informer *inf = t->data;

	if (inf->stopping)
		return;
	if (inf->relist || !inf->synced)
		start_list(inf);
	else
		start_watch(inf);
}

static void retry_later(struct informer *inf, unsigned ms)
{
	uv_timer_start(&inf->retry, retry_cb, ms, 0);
}

static void on_list(void *data, int status, json_t *body)
{
	struct informer *inf = data;
	json_t *items, *item, *fresh, *gone, *v;
	const char *k;
	void *tmp;
	size_t i;
	char key[512];

	inf->refs--;
	if (inf->stopping) {
		maybe_free(inf);
		return;
	}
	items = json_object_get(body, "items");
	if (status != 200 || !json_is_array(items)) {
		log_warn("informer %s: list failed (status %d), retrying", inf->res.resource,
			 status);
		retry_later(inf, INFORMER_RETRY_MS);
		return;
	}
	fresh = json_object();
	json_array_foreach(items, i, item) {
		json_t *md = json_object_get(item, "metadata");

		/* Lists leave kind and apiVersion to the list; objects carry them. */
		if (json_object_get(item, "kind") == NULL) {
			const char *lk = json_string_value(json_object_get(body, "kind"));

			if (lk != NULL && strlen(lk) > 4 && strcmp(lk + strlen(lk) - 4, "List") == 0)
				json_object_set_new(item, "kind", json_stringn(lk, strlen(lk) - 4));
			v = json_object_get(body, "apiVersion");
			if (v != NULL)
				json_object_set(item, "apiVersion", v);
		}
		(void)md;
		json_object_set(fresh, informer_key(item, key, sizeof key), item);
	}
	gone = json_object();
	json_object_foreach(inf->cache, k, v)
		if (json_object_get(fresh, k) == NULL)
			json_object_set(gone, k, v);
	json_object_foreach_safe(gone, tmp, k, v) {
		json_object_del(inf->cache, k);
		emit_delete(inf, v);
	}
	json_decref(gone);
	json_array_foreach(items, i, item)
		apply_upsert(inf, item);
	json_decref(fresh);
	note_rv(inf, body);
	inf->synced = true;
	inf->relist = false;
	if (!inf->stopping)
		start_watch(inf);
}

static void start_list(struct informer *inf)
{
	struct kclient_list_opts o = {
		.label_selector = inf->label_selector,
		.field_selector = inf->field_selector,
	};

	if (kclient_list(inf->client, &inf->res, inf->ns, &o, on_list, inf) != 0) {
		retry_later(inf, INFORMER_RETRY_MS);
		return;
	}
	inf->refs++;
}

/* ---- watch ---- */

static void on_watch(void *data, enum kclient_event type, json_t *obj)
{
	struct informer *inf = data;
	const char *reason;

	switch (type) {
	case KCLIENT_ADDED:
	case KCLIENT_MODIFIED:
		note_rv(inf, obj);
		if (!inf->stopping)
			apply_upsert(inf, obj);
		break;
	case KCLIENT_DELETED:
		note_rv(inf, obj);
		if (!inf->stopping)
			apply_delete(inf, obj);
		break;
	case KCLIENT_BOOKMARK:
		note_rv(inf, obj);
		break;
	case KCLIENT_ERROR:
		reason = json_string_value(json_object_get(obj, "reason"));
		log_debug("informer %s: watch error %s", inf->res.resource,
			  reason ? reason : "(none)");
		inf->relist = true;
		break;
	case KCLIENT_WATCH_END:
		inf->watch = NULL;
		inf->refs--;
		if (inf->stopping) {
			maybe_free(inf);
			return;
		}
		/* A watch that ended at once is not retried in a tight loop. */
		if (uv_now(inf->loop) - inf->watch_started < INFORMER_RETRY_MS)
			retry_later(inf, INFORMER_RETRY_MS);
		else if (inf->relist)
			start_list(inf);
		else
			start_watch(inf);
		break;
	}
}

static void start_watch(struct informer *inf)
{
	struct kclient_list_opts o = {
		.label_selector = inf->label_selector,
		.field_selector = inf->field_selector,
		.resource_version = inf->rv[0] ? inf->rv : NULL,
	};

	inf->watch_started = uv_now(inf->loop);
	if (kclient_watch(inf->client, &inf->res, inf->ns, &o, on_watch, inf, &inf->watch) != 0) {
		inf->watch = NULL;
		retry_later(inf, INFORMER_RETRY_MS);
		return;
	}
	inf->refs++;
}

/* ---- resync ---- */

static void resync_cb(uv_timer_t *t)
{
	struct informer *inf = t->data;
	json_t *snapshot;
	const char *k;
	json_t *v;

	if (!inf->synced)
		return;
	/* A copy of the index: handlers run arbitrary code. */
	snapshot = json_copy(inf->cache);
	json_object_foreach(snapshot, k, v)
		emit_update(inf, v, v);
	json_decref(snapshot);
}

/* ---- public ---- */

int informer_add_handlers(struct informer *inf, const struct informer_handlers *h)
{
	json_t *snapshot, *v;
	const char *k;

	if (inf->nhandlers >= INFORMER_MAX_HANDLERS)
		return -1;
	inf->handlers[inf->nhandlers++] = *h;
	if (inf->synced && h->on_add != NULL) {
		snapshot = json_copy(inf->cache);
		json_object_foreach(snapshot, k, v)
			h->on_add(h->data, v);
		json_decref(snapshot);
	}
	return 0;
}

void informer_remove_handlers(struct informer *inf, void *data)
{
	for (int i = 0; i < inf->nhandlers; i++) {
		if (inf->handlers[i].data != data)
			continue;
		memmove(&inf->handlers[i], &inf->handlers[i + 1],
			sizeof(inf->handlers[0]) * (size_t)(inf->nhandlers - i - 1));
		inf->nhandlers--;
		i--;
	}
}

int informer_start(struct informer *inf)
{
	if (inf->started)
		return -1;
	inf->started = true;
	uv_timer_init(inf->loop, &inf->retry);
	uv_timer_init(inf->loop, &inf->resync);
	inf->retry.data = inf->resync.data = inf;
	inf->refs += 2;
	if (inf->resync_ms > 0)
		uv_timer_start(&inf->resync, resync_cb, inf->resync_ms, inf->resync_ms);
	start_list(inf);
	return 0;
}

bool informer_synced(const struct informer *inf)
{
	return inf->synced;
}

json_t *informer_get(struct informer *inf, const char *key)
{
	return json_object_get(inf->cache, key);
}

void informer_foreach(struct informer *inf, void (*fn)(void *data, json_t *obj), void *data)
{
	const char *k;
	json_t *v;

	json_object_foreach(inf->cache, k, v)
		fn(data, v);
}

size_t informer_count(const struct informer *inf)
{
	return json_object_size(inf->cache);
}

void informer_stop(struct informer *inf)
{
	if (inf == NULL || inf->stopping)
		return;
	inf->stopping = true;
	inf->nhandlers = 0;
	if (!inf->started) {
		maybe_free(inf);
		return;
	}
	uv_close((uv_handle_t *)&inf->retry, timer_closed);
	uv_close((uv_handle_t *)&inf->resync, timer_closed);
	if (inf->watch != NULL)
		kclient_watch_stop(inf->watch);   /* WATCH_END drops its ref */
}
