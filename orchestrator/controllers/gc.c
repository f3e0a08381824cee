/* gc.c — the garbage collector: deletes objects whose owners are all gone
 * (Background), deletes the dependents of an owner being deleted with the
 * foregroundDeletion finalizer before letting it go (Foreground), and
 * strips the owner's references from its dependents before letting an
 * owner with the orphan finalizer go (Orphan).
 *
 * Happy path: any event on a watched resource schedules one scan (events
 * arriving meanwhile fold into it) → the scan builds the owner graph from
 * every informer's cache and issues the deletes and patches it calls for.
 * An owner missing from the caches is confirmed absent with a GET (404, or
 * another uid under the name) before anything of its dependents is
 * deleted, since one cache can lag another. Failure modes: a failed write
 * re-schedules the scan with back-off; owner kinds this collector does not
 * know are never taken as gone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "orchestrator/controllers/controllers.h"
#include "orchestrator/controllers/ctlbase.h"
#include "orchestrator/controllers/podutil.h"

#define GC_SCAN_KEY "scan"
#define GC_SCAN_DELAY_MS 100
#define GC_FIN_FOREGROUND "foregroundDeletion"
#define GC_FIN_ORPHAN "orphan"

static const struct {
	const char *kind;
	const struct kres *res;
	bool namespaced;
} gc_kinds[] = {
	{ "Pod", &KRES_PODS, true },
	{ "ReplicaSet", &KRES_REPLICASETS, true },
	{ "Deployment", &KRES_DEPLOYMENTS, true },
	{ "DaemonSet", &KRES_DAEMONSETS, true },
	{ "Service", &KRES_SERVICES, true },
	{ "Endpoints", &KRES_ENDPOINTS, true },
	{ "ConfigMap", &KRES_CONFIGMAPS, true },
	{ "Secret", &KRES_SECRETS, true },
	{ "PersistentVolumeClaim", &KRES_PVCS, true },
	{ "PersistentVolume", &KRES_PVS, false },
	{ "Node", &KRES_NODES, false },
	{ "Namespace", &KRES_NAMESPACES, false },
};
#define GC_NKINDS (sizeof(gc_kinds) / sizeof(gc_kinds[0]))

struct gc_ctl {
	struct ctl_base base;
	struct informer *inf[GC_NKINDS];
	bool scan_pending;
	json_t *absent;           /* owner uids confirmed gone */
	json_t *verifying;        /* owner uids with a GET in flight */
	json_t *inflight;         /* "op uid" of writes not answered yet */
};

static const char *jstr(json_t *obj, const char *k)
{
	const char *v = json_string_value(json_object_get(obj, k));

	return v ? v : "";
}

static int kind_index(const char *kind)
{
	for (size_t i = 0; i < GC_NKINDS; i++)
		if (strcmp(gc_kinds[i].kind, kind) == 0)
			return (int)i;
	return -1;
}

static bool has_finalizer(json_t *obj, const char *f)
{
	json_t *v;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "finalizers"), i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), f) == 0)
			return true;
	return false;
}

static void schedule_scan(struct gc_ctl *c)
{
	if (c->base.stopped || c->scan_pending)
		return;
	c->scan_pending = true;
	workqueue_add_after(c->base.q, GC_SCAN_KEY, GC_SCAN_DELAY_MS);
}

static void op_done(struct ctl_base *b, const char *key, int status, json_t *body, void *arg)
{
	struct gc_ctl *c = (struct gc_ctl *)b;

	(void)key;
	(void)status;
	(void)body;
	json_object_del(c->inflight, arg);
	free(arg);
	schedule_scan(c);
}

/* Marks "op uid" in flight; false when it already is (the informer has not
 * caught up with our last write on that object). */
static char *begin_op(struct gc_ctl *c, const char *op, const char *uid)
{
	char *tag;
	size_t n = strlen(op) + strlen(uid) + 2;

	tag = malloc(n);
	if (tag == NULL)
		return NULL;
	snprintf(tag, n, "%s %s", op, uid);
	if (json_object_get(c->inflight, tag) != NULL) {
		free(tag);
		return NULL;
	}
	json_object_set_new(c->inflight, tag, json_true());
	return tag;
}

static void gc_delete(struct gc_ctl *c, int kind, json_t *obj, const char *policy)
{
	char *tag = begin_op(c, "delete", ctl_uid(obj));

	if (tag == NULL)
		return;
	log_info("gc: deleting %s %s/%s (%s)", gc_kinds[kind].kind, ctl_ns(obj) ? ctl_ns(obj) : "",
		 ctl_name(obj), policy);
	if (ctl_delete(&c->base, gc_kinds[kind].res, gc_kinds[kind].namespaced ? ctl_ns(obj) : NULL,
		       ctl_name(obj), ctl_uid(obj), policy, GC_SCAN_KEY, op_done, tag) != 0) {
		json_object_del(c->inflight, tag);
		free(tag);
	}
}

/* A merge patch of metadata.<field> = value, guarded by resourceVersion. */
static void gc_patch_meta(struct gc_ctl *c, int kind, json_t *obj, const char *op,
			  const char *field, json_t *value)
{
	char *tag = begin_op(c, op, ctl_uid(obj));
	json_t *patch;

	if (tag == NULL) {
		json_decref(value);
		return;
	}
	patch = json_pack("{s:{s:o, s:O}}", "metadata", field, value, "resourceVersion",
			  json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
	if (patch == NULL || ctl_merge_patch(&c->base, gc_kinds[kind].res,
					     gc_kinds[kind].namespaced ? ctl_ns(obj) : NULL,
					     ctl_name(obj), NULL, patch, GC_SCAN_KEY, op_done,
					     tag) != 0) {
		json_object_del(c->inflight, tag);
		free(tag);
	}
	json_decref(patch);
}

static void remove_finalizer(struct gc_ctl *c, int kind, json_t *obj, const char *f)
{
	json_t *keep = json_array(), *v;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "finalizers"), i, v)
		if (!json_is_string(v) || strcmp(json_string_value(v), f) != 0)
			json_array_append(keep, v);
	gc_patch_meta(c, kind, obj, "finalize", "finalizers", keep);
}

/* obj's ownerReferences without those whose uid is in `drop` (an object of
 * uids) or equal to `uid`. */
static json_t *refs_without(json_t *obj, json_t *drop, const char *uid)
{
	json_t *keep = json_array(), *r;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "ownerReferences"), i, r) {
		const char *u = jstr(r, "uid");

		if ((drop != NULL && json_object_get(drop, u) != NULL) ||
		    (uid != NULL && strcmp(u, uid) == 0))
			continue;
		json_array_append(keep, r);
	}
	return keep;
}

struct verify {
	struct gc_ctl *c;
	char uid[];
};

static void verify_cb(struct ctl_base *b, const char *key, int status, json_t *body, void *arg)
{
	struct gc_ctl *c = (struct gc_ctl *)b;
	char *uid = arg;

	(void)key;
	/* Gone: not found, or the name now belongs to a different object. */
	if (status == 404 || (status == 200 && strcmp(ctl_uid(body) ? ctl_uid(body) : "", uid) != 0))
		json_object_set_new(c->absent, uid, json_true());
	json_object_del(c->verifying, uid);
	free(uid);
	schedule_scan(c);
}

static void get_cb(void *data, int status, json_t *body)
{
	struct verify *v = data;
	struct gc_ctl *c = v->c;
	char *uid = strdup(v->uid);

	free(v);
	if (!c->base.stopped && uid != NULL)
		verify_cb(&c->base, GC_SCAN_KEY, status, body, uid);
	else
		free(uid);
	ctl_base_release(&c->base);
}

static void verify_owner(struct gc_ctl *c, json_t *dep, json_t *ref, int kind)
{
	const char *uid = jstr(ref, "uid");
	struct verify *v;

	if (json_object_get(c->verifying, uid) != NULL)
		return;
	v = malloc(sizeof(*v) + strlen(uid) + 1);
	if (v == NULL)
		return;
	v->c = c;
	strcpy(v->uid, uid);
	c->base.refs++;
	json_object_set_new(c->verifying, uid, json_true());
	if (kclient_get(c->base.client, gc_kinds[kind].res,
			gc_kinds[kind].namespaced ? ctl_ns(dep) : NULL, jstr(ref, "name"), get_cb,
			v) != 0) {
		json_object_del(c->verifying, uid);
		free(v);
		ctl_base_release(&c->base);
	}
}

struct scan {
	struct gc_ctl *c;
	struct gc_graph *g;
	json_t *kind_of;          /* uid -> kind index */
	json_t *still_absent;     /* absent uids still referenced */
	int kind;
};

static void add_obj(void *data, json_t *obj)
{
	struct scan *s = data;
	const char *uid = ctl_uid(obj);

	if (uid == NULL)
		return;
	gc_graph_add(s->g, obj);
	json_object_set_new(s->kind_of, uid, json_integer(s->kind));
}

static int kind_of(struct scan *s, json_t *obj)
{
	return (int)json_integer_value(json_object_get(s->kind_of, ctl_uid(obj)));
}

/* An owner being deleted with a finalizer of ours. */
static void handle_owner(struct scan *s, json_t *obj, int kind)
{
	struct gc_ctl *c = s->c;
	json_t *deps, *d;
	size_t i;

	if (has_finalizer(obj, GC_FIN_ORPHAN)) {
		deps = gc_graph_dependents(s->g, ctl_uid(obj));
		json_array_foreach(deps, i, d)
			gc_patch_meta(c, kind_of(s, d), d, "orphan", "ownerReferences",
				      refs_without(d, NULL, ctl_uid(obj)));
		if (json_array_size(deps) == 0)
			remove_finalizer(c, kind, obj, GC_FIN_ORPHAN);
		json_decref(deps);
		return;
	}
	if (has_finalizer(obj, GC_FIN_FOREGROUND)) {
		bool all_asked = true;

		deps = gc_graph_dependents(s->g, ctl_uid(obj));
		json_array_foreach(deps, i, d) {
			json_t *sub;

			if (ctl_deleting(d))
				continue;
			all_asked = false;
			/* A dependent with dependents of its own goes the same way. */
			sub = gc_graph_dependents(s->g, ctl_uid(d));
			gc_delete(c, kind_of(s, d), d,
				  json_array_size(sub) > 0 ? "Foreground" : "Background");
			json_decref(sub);
		}
		if (all_asked && gc_graph_blocking(s->g, ctl_uid(obj)) == 0)
			remove_finalizer(c, kind, obj, GC_FIN_FOREGROUND);
		json_decref(deps);
	}
}

/* A dependent: collected when every owner is confirmed gone; references to
 * gone owners are dropped when some owner remains. */
static void handle_dependent(struct scan *s, json_t *obj, int kind)
{
	struct gc_ctl *c = s->c;
	json_t *refs = json_object_get(json_object_get(obj, "metadata"), "ownerReferences"), *r;
	json_t *gone;
	size_t i, n = json_array_size(refs), ngone = 0;
	bool unsure = false;

	if (n == 0 || ctl_deleting(obj))
		return;
	gone = json_object();
	json_array_foreach(refs, i, r) {
		const char *uid = jstr(r, "uid");
		int k = kind_index(jstr(r, "kind"));

		if (gc_graph_get(s->g, uid) != NULL || k < 0) {
			continue;   /* present, or a kind we cannot check */
		}
		if (json_object_get(c->absent, uid) != NULL) {
			json_object_set_new(s->still_absent, uid, json_true());
			json_object_set_new(gone, uid, json_true());
			ngone++;
		} else {
			verify_owner(c, obj, r, k);
			unsure = true;
		}
	}
	if (ngone == 0 || unsure) {
		json_decref(gone);
		return;
	}
	if (ngone == n)
		gc_delete(c, kind, obj, "Background");
	else
		gc_patch_meta(c, kind, obj, "unown", "ownerReferences", refs_without(obj, gone, NULL));
	json_decref(gone);
}

struct walk {
	struct scan *s;
	int kind;
};

static void visit(void *data, json_t *obj)
{
	struct walk *w = data;

	if (ctl_deleting(obj))
		handle_owner(w->s, obj, w->kind);
	handle_dependent(w->s, obj, w->kind);
}

static int gc_sync(void *data, const char *key)
{
	struct gc_ctl *c = data;
	struct scan s = { c, NULL, NULL, NULL, 0 };

	(void)key;
	c->scan_pending = false;
	for (size_t i = 0; i < GC_NKINDS; i++)
		if (c->inf[i] != NULL && !informer_synced(c->inf[i])) {
			schedule_scan(c);
			return 0;
		}
	s.g = gc_graph_new();
	s.kind_of = json_object();
	s.still_absent = json_object();
	if (s.g == NULL || s.kind_of == NULL || s.still_absent == NULL)
		goto out;
	for (size_t i = 0; i < GC_NKINDS; i++) {
		s.kind = (int)i;
		if (c->inf[i] != NULL)
			informer_foreach(c->inf[i], add_obj, &s);
	}
	for (size_t i = 0; i < GC_NKINDS; i++) {
		struct walk w = { &s, (int)i };

		if (c->inf[i] != NULL)
			informer_foreach(c->inf[i], visit, &w);
	}
	/* Forget confirmed-gone owners nobody refers to any more. */
	json_decref(c->absent);
	c->absent = s.still_absent;
	s.still_absent = NULL;
out:
	json_decref(s.still_absent);
	json_decref(s.kind_of);
	gc_graph_free(s.g);
	return 0;
}

static void on_add(void *data, json_t *obj)
{
	(void)obj;
	schedule_scan(data);
}

static void on_update(void *data, json_t *old, json_t *obj)
{
	json_t *om = json_object_get(old, "metadata"), *nm = json_object_get(obj, "metadata");

	/* Only owners, finalizers and deletion matter here. */
	if (json_equal(json_object_get(om, "ownerReferences"), json_object_get(nm, "ownerReferences")) &&
	    json_equal(json_object_get(om, "finalizers"), json_object_get(nm, "finalizers")) &&
	    json_equal(json_object_get(om, "deletionTimestamp"),
		       json_object_get(nm, "deletionTimestamp")))
		return;
	schedule_scan(data);
}

static void gc_free(struct ctl_base *b)
{
	struct gc_ctl *c = (struct gc_ctl *)b;

	json_decref(c->absent);
	json_decref(c->verifying);
	json_decref(c->inflight);
	free(c);
}

int gc_controller_start(struct controller_ctx *ctx, void **state)
{
	struct gc_ctl *c = calloc(1, sizeof(*c));
	struct informer_handlers h = { on_add, on_update, on_add, NULL };

	if (c == NULL)
		return -1;
	c->absent = json_object();
	c->verifying = json_object();
	c->inflight = json_object();
	if (ctl_base_init(&c->base, ctx, "gc", gc_sync, gc_free) != 0) {
		json_decref(c->absent);
		json_decref(c->verifying);
		json_decref(c->inflight);
		free(c);
		return -1;
	}
	h.data = c;
	for (size_t i = 0; i < GC_NKINDS; i++) {
		c->inf[i] = ctx->shared(ctx, gc_kinds[i].res);
		if (c->inf[i] == NULL) {
			log_warn("gc: no informer for %s: its objects are not collected",
				 gc_kinds[i].res->resource);
			continue;
		}
		informer_add_handlers(c->inf[i], &h);
	}
	schedule_scan(c);
	*state = c;
	return 0;
}

void gc_controller_stop(void *state)
{
	struct gc_ctl *c = state;

	for (size_t i = 0; i < GC_NKINDS; i++)
		if (c->inf[i] != NULL)
			informer_remove_handlers(c->inf[i], c);
	ctl_base_stop(&c->base);
}
