/* replicaset.c — the ReplicaSet controller: keeps spec.replicas pods
 * matching each ReplicaSet's selector, adopting orphans and releasing pods
 * that stopped matching, and reports the counts in status.
 *
 * Happy path: an event on a ReplicaSet or on a pod queues the set's key →
 * sync claims the pods, creates or deletes the difference (recording
 * expectations so the next sync waits for the informer to see them), and
 * patches status when it changed. Failure modes: a failed write re-queues
 * the key with back-off; a creation that fails lowers the expectation so the
 * next sync retries it; expectations expire after five minutes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "orchestrator/api/selector.h"
#include "orchestrator/controllers/controllers.h"
#include "orchestrator/controllers/ctlbase.h"
#include "orchestrator/controllers/podutil.h"
#include "orchestrator/controllers/rollout.h"

#define RS_BURST 500

struct rs_ctl {
	struct ctl_base base;     /* first: the base is freed as the whole */
	struct informer *rs_inf, *pod_inf;
	/* The pods a sync looks at, by bucket: "u:<uid>" holds the pods whose
	 * controller has that uid, "n:<namespace>" the pods without a
	 * controller. buckets: bucket -> {pod key: true}; where: pod key ->
	 * bucket. Kept by the pod handlers, so a sync reads its own pods and
	 * the orphans it could adopt instead of every pod of the namespace
	 * (that scan was a quarter of the server's CPU in a 1,000-pod
	 * rollout). */
	json_t *buckets, *where;
};

/* The bucket a pod belongs in ("u:<uid>" or "n:<ns>"), in buf; NULL for a
 * pod that no set can own or adopt (a controller without a uid). */
static const char *bucket_of(json_t *pod, char *buf, size_t size)
{
	json_t *ref = podutil_controller_ref(pod);
	const char *v;

	if (ref != NULL) {
		v = json_string_value(json_object_get(ref, "uid"));
		if (v == NULL)
			return NULL;
		snprintf(buf, size, "u:%s", v);
	} else {
		v = ctl_ns(pod);
		snprintf(buf, size, "n:%s", v != NULL ? v : "");
	}
	return buf;
}

static void index_remove(struct rs_ctl *c, const char *key)
{
	const char *b = json_string_value(json_object_get(c->where, key));
	json_t *set;

	if (b == NULL)
		return;
	set = json_object_get(c->buckets, b);
	json_object_del(set, key);
	if (json_object_size(set) == 0)
		json_object_del(c->buckets, b);
	json_object_del(c->where, key);
}

static void index_put(struct rs_ctl *c, json_t *pod)
{
	char key[512], b[300];
	json_t *set;

	informer_key(pod, key, sizeof(key));
	index_remove(c, key);
	if (bucket_of(pod, b, sizeof(b)) == NULL)
		return;
	set = json_object_get(c->buckets, b);
	if (set == NULL) {
		set = json_object();
		if (set == NULL || json_object_set_new(c->buckets, b, set) != 0)
			return;
	}
	json_object_set_new(set, key, json_true());
	json_object_set_new(c->where, key, json_string(b));
}

struct pod_scan {
	struct rs_ctl *c;
	const char *ns;
	json_t *out;
};

static void collect_bucket(struct pod_scan *s, const char *b)
{
	const char *key;
	json_t *v;

	json_object_foreach(json_object_get(s->c->buckets, b), key, v) {
		json_t *p = informer_get(s->c->pod_inf, key);
		const char *ns = p != NULL ? ctl_ns(p) : NULL;

		if (ns != NULL && strcmp(ns, s->ns) == 0)
			json_array_append(s->out, p);
	}
}

/* The pods in namespace ns that the set with this uid owns, and those with
 * no controller: a new array of borrowed objects. */
static json_t *owned_or_orphans(struct rs_ctl *c, const char *uid, const char *ns)
{
	struct pod_scan s = { c, ns, json_array() };
	char b[300];

	if (uid != NULL) {
		snprintf(b, sizeof(b), "u:%s", uid);
		collect_bucket(&s, b);
	}
	snprintf(b, sizeof(b), "n:%s", ns);
	collect_bucket(&s, b);
	return s.out;
}

static void rs_create_done(struct ctl_base *b, const char *key, int status, json_t *body,
			   void *arg)
{
	(void)body;
	(void)arg;
	/* The pod will never show up in the informer: stop waiting for it. */
	if (status < 200 || status >= 300)
		ctl_observed_add(b, key);
}

static void rs_delete_done(struct ctl_base *b, const char *key, int status, json_t *body,
			   void *arg)
{
	(void)body;
	(void)arg;
	if (status == 404 || status < 200 || status >= 300)
		ctl_observed_del(b, key);
}

/* Sets the pod's ownerReferences to refs (new reference, consumed), guarded
 * by the resourceVersion the decision was made on. */
static void set_owner_refs(struct rs_ctl *c, json_t *pod, json_t *refs, const char *key)
{
	json_t *patch = json_pack("{s:{s:o, s:O}}", "metadata", "ownerReferences", refs,
				  "resourceVersion",
				  json_object_get(json_object_get(pod, "metadata"), "resourceVersion"));

	if (patch == NULL)
		return;
	ctl_merge_patch(&c->base, &KRES_PODS, ctl_ns(pod), ctl_name(pod), NULL, patch, key,
			NULL, NULL);
	json_decref(patch);
}

static bool labels_superset(json_t *labels, json_t *want)
{
	const char *k;
	json_t *v;

	json_object_foreach(want, k, v)
		if (!json_equal(json_object_get(labels, k), v))
			return false;
	return true;
}

static int rs_sync(void *data, const char *key)
{
	struct rs_ctl *c = data;
	struct ctl_base *b = &c->base;
	json_t *rs = informer_get(c->rs_inf, key);
	json_t *spec, *tmpl, *pods = NULL, *owned = NULL, *p, *status, *old_status;
	struct label_selector *sel = NULL;
	char errmsg[256];
	const char *uid;
	int64_t replicas, min_ready, now = ctl_now_ms() / 1000;
	int ready = 0, available = 0, labeled = 0, diff;
	bool requeue_available = false;
	size_t i;

	if (!informer_synced(c->rs_inf) || !informer_synced(c->pod_inf)) {
		/* Acting on a partial cache would create pods that exist. */
		workqueue_add_after(b->q, key, 200);
		return 0;
	}
	if (rs == NULL) {
		ctl_forget(b, key);
		return 0;
	}
	json_incref(rs);
	spec = json_object_get(rs, "spec");
	tmpl = json_object_get(spec, "template");
	uid = ctl_uid(rs);
	replicas = json_is_integer(json_object_get(spec, "replicas"))
		? json_integer_value(json_object_get(spec, "replicas")) : 1;
	min_ready = json_integer_value(json_object_get(spec, "minReadySeconds"));
	if (label_selector_from_json(json_object_get(spec, "selector"), &sel, errmsg) != 0 ||
	    label_selector_empty(sel)) {
		log_warn("replicaset %s: bad selector: %s", key, errmsg);
		goto out;
	}
	pods = owned_or_orphans(c, uid, ctl_ns(rs) ? ctl_ns(rs) : "");
	owned = json_array();
	json_array_foreach(pods, i, p) {
		json_t *ref = podutil_controller_ref(p);
		json_t *labels = json_object_get(json_object_get(p, "metadata"), "labels");
		bool match = label_selector_matches(sel, labels);

		if (ref != NULL) {
			const char *ruid = json_string_value(json_object_get(ref, "uid"));

			if (ruid == NULL || uid == NULL || strcmp(ruid, uid) != 0)
				continue;
			if (!match) {
				/* The pod's labels changed: let it go. */
				json_t *refs = json_array(), *r;
				size_t j;

				json_array_foreach(json_object_get(json_object_get(p, "metadata"),
								   "ownerReferences"), j, r)
					if (r != ref)
						json_array_append(refs, r);
				set_owner_refs(c, p, refs, key);
				continue;
			}
		} else {
			json_t *refs;

			/* Only a live set adopts, and only live pods. */
			if (!match || ctl_deleting(rs) || ctl_deleting(p) || !podutil_active(p))
				continue;
			refs = json_deep_copy(json_object_get(json_object_get(p, "metadata"),
							      "ownerReferences"));
			if (!json_is_array(refs)) {
				json_decref(refs);
				refs = json_array();
			}
			json_array_append_new(refs, podutil_new_controller_ref(rs, "apps/v1",
									      "ReplicaSet"));
			set_owner_refs(c, p, refs, key);
		}
		if (podutil_active(p))
			json_array_append(owned, p);
	}

	diff = (int)json_array_size(owned) - (int)replicas;
	if (!ctl_deleting(rs) && ctl_satisfied(b, key) && diff != 0) {
		if (diff < 0) {
			int n = -diff > RS_BURST ? RS_BURST : -diff;

			ctl_expect(b, key, n, 0);
			for (int k = 0; k < n; k++) {
				json_t *pod = podutil_pod_from_template(tmpl, rs, "apps/v1",
									"ReplicaSet");

				if (pod == NULL || ctl_create(b, &KRES_PODS, ctl_ns(rs), pod, key,
							      rs_create_done, NULL) != 0)
					ctl_observed_add(b, key);
				json_decref(pod);
			}
			if (-diff > n)
				workqueue_add(b->q, key);
		} else {
			struct rollout_pod *rp = calloc(json_array_size(owned), sizeof(*rp));
			size_t n = json_array_size(owned);

			if (rp == NULL)
				goto out;
			for (i = 0; i < n; i++) {
				rollout_pod_from_json(json_array_get(owned, i), &rp[i]);
				rp[i].index = i;
			}
			/* Pods sharing a node with more of the set go first. */
			for (i = 0; i < n; i++) {
				const char *node = json_string_value(json_object_get(json_object_get(
					json_array_get(owned, i), "spec"), "nodeName"));

				for (size_t j = 0; node != NULL && j < n; j++) {
					const char *o = json_string_value(json_object_get(
						json_object_get(json_array_get(owned, j), "spec"),
						"nodeName"));

					if (o != NULL && strcmp(o, node) == 0)
						rp[i].colocated++;
				}
			}
			rollout_sort_victims(rp, n);
			ctl_expect(b, key, 0, diff);
			for (int k = 0; k < diff; k++) {
				json_t *v = json_array_get(owned, rp[k].index);

				if (ctl_delete(b, &KRES_PODS, ctl_ns(v), ctl_name(v), ctl_uid(v), NULL,
					       key, rs_delete_done, NULL) != 0)
					ctl_observed_del(b, key);
			}
			free(rp);
		}
	}

	json_array_foreach(owned, i, p) {
		if (podutil_ready(p))
			ready++;
		if (podutil_available(p, min_ready, now))
			available++;
		else if (podutil_ready(p))
			requeue_available = true;
		if (labels_superset(json_object_get(json_object_get(p, "metadata"), "labels"),
				    json_object_get(json_object_get(tmpl, "metadata"), "labels")))
			labeled++;
	}
	old_status = json_object_get(rs, "status");
	status = json_pack("{s:i, s:i, s:i, s:i, s:I}", "replicas", (int)json_array_size(owned),
			   "fullyLabeledReplicas", labeled, "readyReplicas", ready,
			   "availableReplicas", available, "observedGeneration",
			   json_integer_value(json_object_get(json_object_get(rs, "metadata"),
							      "generation")));
	if (status != NULL) {
		const char *f[] = { "replicas", "fullyLabeledReplicas", "readyReplicas",
				    "availableReplicas", "observedGeneration" };
		bool same = true;

		for (i = 0; i < 5; i++)
			if (json_integer_value(json_object_get(old_status, f[i])) !=
			    json_integer_value(json_object_get(status, f[i])))
				same = false;
		if (!same) {
			json_t *patch = json_pack("{s:O}", "status", status);

			ctl_merge_patch(b, &KRES_REPLICASETS, ctl_ns(rs), ctl_name(rs), "status",
					patch, key, NULL, NULL);
			json_decref(patch);
		}
		json_decref(status);
	}
	/* A pod ready but not yet for minReadySeconds becomes available later
	 * without any event: look again then. */
	if (requeue_available && min_ready > 0)
		workqueue_add_after(b->q, key, (unsigned)(min_ready * 1000 + 100));
out:
	json_decref(owned);
	json_decref(pods);
	label_selector_free(sel);
	json_decref(rs);
	return 0;
}

/* The ReplicaSet that controls pod, as a "ns/name" key in buf, or NULL. */
static const char *owner_key(json_t *pod, char *buf, size_t size)
{
	json_t *ref = podutil_controller_ref(pod);

	if (ref == NULL || !json_is_string(json_object_get(ref, "kind")) ||
	    strcmp(json_string_value(json_object_get(ref, "kind")), "ReplicaSet") != 0)
		return NULL;
	snprintf(buf, size, "%s/%s", ctl_ns(pod) ? ctl_ns(pod) : "",
		 json_string_value(json_object_get(ref, "name")));
	return buf;
}

struct match_scan {
	struct rs_ctl *c;
	json_t *pod;
};

static void enqueue_if_selects(void *data, json_t *rs)
{
	struct match_scan *m = data;
	struct label_selector *sel = NULL;
	char errmsg[256];
	const char *ns = ctl_ns(rs), *pns = ctl_ns(m->pod);

	if (ns == NULL || pns == NULL || strcmp(ns, pns) != 0)
		return;
	if (label_selector_from_json(json_object_get(json_object_get(rs, "spec"), "selector"),
				     &sel, errmsg) != 0)
		return;
	if (!label_selector_empty(sel) &&
	    label_selector_matches(sel, json_object_get(json_object_get(m->pod, "metadata"),
							"labels")))
		ctl_enqueue_obj(&m->c->base, rs);
	label_selector_free(sel);
}

/* An orphan pod: every set that could adopt it looks at it. */
static void enqueue_owner_or_matching(struct rs_ctl *c, json_t *pod)
{
	char key[512];
	struct match_scan m = { c, pod };

	if (owner_key(pod, key, sizeof(key)) != NULL) {
		workqueue_add(c->base.q, key);
		return;
	}
	if (podutil_controller_ref(pod) == NULL)
		informer_foreach(c->rs_inf, enqueue_if_selects, &m);
}

static void pod_add(void *data, json_t *pod)
{
	struct rs_ctl *c = data;
	char key[512];

	if (c->base.stopped)
		return;
	index_put(c, pod);
	if (owner_key(pod, key, sizeof(key)) != NULL)
		ctl_observed_add(&c->base, key);
	enqueue_owner_or_matching(c, pod);
}

static void pod_update(void *data, json_t *old, json_t *pod)
{
	struct rs_ctl *c = data;
	char key[512], okey[512];

	if (c->base.stopped)
		return;
	index_put(c, pod);
	if (!ctl_deleting(old) && ctl_deleting(pod) && owner_key(pod, key, sizeof(key)) != NULL)
		ctl_observed_del(&c->base, key);
	if (owner_key(old, okey, sizeof(okey)) != NULL &&
	    (owner_key(pod, key, sizeof(key)) == NULL || strcmp(key, okey) != 0))
		workqueue_add(c->base.q, okey);
	enqueue_owner_or_matching(c, pod);
}

static void pod_delete(void *data, json_t *pod)
{
	struct rs_ctl *c = data;
	char key[512];

	if (c->base.stopped)
		return;
	index_remove(c, informer_key(pod, key, sizeof(key)));
	if (owner_key(pod, key, sizeof(key)) != NULL) {
		if (!ctl_deleting(pod))
			ctl_observed_del(&c->base, key);
		workqueue_add(c->base.q, key);
	}
}

static void rs_add(void *data, json_t *rs)
{
	struct rs_ctl *c = data;

	if (!c->base.stopped)
		ctl_enqueue_obj(&c->base, rs);
}

static void rs_update(void *data, json_t *old, json_t *rs)
{
	(void)old;
	rs_add(data, rs);
}

static void rs_free(struct ctl_base *b)
{
	struct rs_ctl *c = (struct rs_ctl *)b;

	json_decref(c->buckets);
	json_decref(c->where);
	free(b);
}

int replicaset_controller_start(struct controller_ctx *ctx, void **state)
{
	struct rs_ctl *c = calloc(1, sizeof(*c));
	struct informer_handlers ph = { pod_add, pod_update, pod_delete, NULL };
	struct informer_handlers rh = { rs_add, rs_update, rs_add, NULL };

	if (c == NULL)
		return -1;
	c->buckets = json_object();
	c->where = json_object();
	if (c->buckets == NULL || c->where == NULL ||
	    ctl_base_init(&c->base, ctx, "replicaset", rs_sync, rs_free) != 0) {
		json_decref(c->buckets);
		json_decref(c->where);
		free(c);
		return -1;
	}
	c->rs_inf = ctx->shared(ctx, &KRES_REPLICASETS);
	c->pod_inf = ctx->shared(ctx, &KRES_PODS);
	if (c->rs_inf == NULL || c->pod_inf == NULL) {
		ctl_base_stop(&c->base);
		return -1;
	}
	ph.data = c;
	rh.data = c;
	informer_add_handlers(c->pod_inf, &ph);
	informer_add_handlers(c->rs_inf, &rh);
	*state = c;
	return 0;
}

void replicaset_controller_stop(void *state)
{
	struct rs_ctl *c = state;

	informer_remove_handlers(c->pod_inf, c);
	informer_remove_handlers(c->rs_inf, c);
	ctl_base_stop(&c->base);
}
