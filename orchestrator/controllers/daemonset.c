/* daemonset.c — the DaemonSet controller: one pod per eligible node,
 * pinned to it with required node affinity on metadata.name and bound by
 * the scheduler, replaced by RollingUpdate (maxUnavailable) or OnDelete when
 * the template changes, and counted in status.
 *
 * A pod's template version is the controller-revision-hash label: the
 * pod-template-hash of the template (Kubernetes keeps ControllerRevision
 * objects for it; capstan has none, so rollback of a DaemonSet is by
 * re-applying the old template).
 *
 * Happy path: a DaemonSet, node or pod event queues the DaemonSet → sync
 * pairs nodes with pods, creates the missing ones and deletes pods on
 * nodes that are gone or no longer eligible, extra pods and failed pods,
 * then replaces old-template pods within maxUnavailable, and patches
 * status. Failure modes: as the ReplicaSet controller (expectations,
 * re-queue with back-off). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "orchestrator/api/selector.h"
#include "orchestrator/controllers/controllers.h"
#include "orchestrator/controllers/ctlbase.h"
#include "orchestrator/controllers/podutil.h"
#include "orchestrator/controllers/rollout.h"

#define DS_HASH_LABEL "controller-revision-hash"

struct ds_ctl {
	struct ctl_base base;
	struct informer *ds_inf, *pod_inf, *node_inf;
};

struct ds_scan {
	struct ds_ctl *c;
	json_t *ds;
	struct label_selector *sel;
	json_t *pods;              /* node name -> [pods] */
	json_t *unpinned;          /* pods bound to no node we can tell */
	const char *key;
};

static const char *jstr(json_t *obj, const char *k)
{
	const char *v = json_string_value(json_object_get(obj, k));

	return v ? v : "";
}

static void set_owner_refs(struct ds_scan *s, json_t *pod, json_t *refs)
{
	json_t *patch = json_pack("{s:{s:o, s:O}}", "metadata", "ownerReferences", refs,
				  "resourceVersion",
				  json_object_get(json_object_get(pod, "metadata"), "resourceVersion"));

	ctl_merge_patch(&s->c->base, &KRES_PODS, ctl_ns(pod), ctl_name(pod), NULL, patch, s->key,
			NULL, NULL);
	json_decref(patch);
}

static void claim_pod(void *data, json_t *pod)
{
	struct ds_scan *s = data;
	json_t *ref = podutil_controller_ref(pod);
	json_t *labels = json_object_get(json_object_get(pod, "metadata"), "labels");
	const char *ns = ctl_ns(pod), *node;
	bool match;
	json_t *list;

	if (ns == NULL || strcmp(ns, ctl_ns(s->ds)) != 0)
		return;
	match = label_selector_matches(s->sel, labels);
	if (ref != NULL) {
		if (strcmp(jstr(ref, "uid"), ctl_uid(s->ds)) != 0)
			return;
		if (!match) {
			json_t *refs = json_array(), *r;
			size_t j;

			json_array_foreach(json_object_get(json_object_get(pod, "metadata"),
							   "ownerReferences"), j, r)
				if (r != ref)
					json_array_append(refs, r);
			set_owner_refs(s, pod, refs);
			return;
		}
	} else {
		json_t *refs;

		if (!match || ctl_deleting(pod) || ctl_deleting(s->ds) || !podutil_active(pod))
			return;
		refs = json_deep_copy(json_object_get(json_object_get(pod, "metadata"),
						      "ownerReferences"));
		if (!json_is_array(refs)) {
			json_decref(refs);
			refs = json_array();
		}
		json_array_append_new(refs, podutil_new_controller_ref(s->ds, "apps/v1", "DaemonSet"));
		set_owner_refs(s, pod, refs);
	}
	if (ctl_deleting(pod))
		return;
	node = podutil_pinned_node(pod);
	if (node == NULL) {
		json_array_append(s->unpinned, pod);
		return;
	}
	list = json_object_get(s->pods, node);
	if (list == NULL) {
		list = json_array();
		json_object_set_new(s->pods, node, list);
	}
	json_array_append(list, pod);
}

static void create_done(struct ctl_base *b, const char *key, int status, json_t *body, void *arg)
{
	(void)body;
	(void)arg;
	if (status < 200 || status >= 300)
		ctl_observed_add(b, key);
}

static void delete_done(struct ctl_base *b, const char *key, int status, json_t *body, void *arg)
{
	(void)body;
	(void)arg;
	if (status < 200 || status >= 300)
		ctl_observed_del(b, key);
}

struct ds_plan {
	json_t *create;            /* node names */
	json_t *del;               /* pods */
};

static void plan_delete(struct ds_plan *p, json_t *pod)
{
	json_t *x;
	size_t i;

	json_array_foreach(p->del, i, x)
		if (x == pod)
			return;
	json_array_append(p->del, pod);
}

static void collect_all(void *data, json_t *obj)
{
	json_array_append((json_t *)data, obj);
}

static bool has_hash(json_t *pod, const char *hash)
{
	return strcmp(jstr(json_object_get(json_object_get(pod, "metadata"), "labels"),
			   DS_HASH_LABEL), hash) == 0;
}

static bool failed(json_t *pod)
{
	return strcmp(jstr(json_object_get(pod, "status"), "phase"), "Failed") == 0;
}

/* The pod that stays on a node with several: current template first, then
 * the oldest; failed pods never stay. */
static json_t *keeper(json_t *list, const char *hash)
{
	json_t *best = NULL, *p;
	size_t i;

	json_array_foreach(list, i, p) {
		if (failed(p))
			continue;
		if (best == NULL || (has_hash(p, hash) && !has_hash(best, hash)) ||
		    (has_hash(p, hash) == has_hash(best, hash) &&
		     strcmp(jstr(json_object_get(p, "metadata"), "creationTimestamp"),
			    jstr(json_object_get(best, "metadata"), "creationTimestamp")) < 0))
			best = p;
	}
	return best;
}

static void create_pod(struct ds_ctl *c, json_t *ds, const char *key, const char *node,
		       const char *hash)
{
	json_t *tmpl = json_object_get(json_object_get(ds, "spec"), "template");
	json_t *pod = podutil_pod_from_template(tmpl, ds, "apps/v1", "DaemonSet");
	json_t *meta, *labels;

	if (pod == NULL) {
		ctl_observed_add(&c->base, key);
		return;
	}
	meta = json_object_get(pod, "metadata");
	labels = json_object_get(meta, "labels");
	if (!json_is_object(labels)) {
		labels = json_object();
		json_object_set_new(meta, "labels", labels);
	}
	json_object_set_new(labels, DS_HASH_LABEL, json_string(hash));
	podutil_pin_to_node(json_object_get(pod, "spec"), node);
	podutil_add_daemon_tolerations(json_object_get(pod, "spec"));
	if (ctl_create(&c->base, &KRES_PODS, ctl_ns(ds), pod, key, create_done, NULL) != 0)
		ctl_observed_add(&c->base, key);
	json_decref(pod);
}

static int ds_sync(void *data, const char *key)
{
	struct ds_ctl *c = data;
	struct ctl_base *b = &c->base;
	json_t *ds = NULL, *spec, *tmpl, *nodes = NULL, *node, *list, *p, *st, *seen = NULL;
	json_t *old_ready = NULL, *ru;
	struct ds_scan s = { 0 };
	struct ds_plan plan = { json_array(), json_array() };
	char errmsg[256], hash[11];
	int64_t min_ready, now = ctl_now_ms() / 1000;
	int desired = 0, current = 0, misscheduled = 0, ready = 0, updated = 0, available = 0;
	int max_unav = 1, unavailable = 0;
	bool on_delete, requeue = false;
	const char *k;
	size_t i;

	if (!informer_synced(c->ds_inf) || !informer_synced(c->pod_inf) ||
	    !informer_synced(c->node_inf)) {
		workqueue_add_after(b->q, key, 200);
		goto out;
	}
	ds = informer_get(c->ds_inf, key);
	if (ds == NULL) {
		ctl_forget(b, key);
		goto out;
	}
	json_incref(ds);
	spec = json_object_get(ds, "spec");
	tmpl = json_object_get(spec, "template");
	min_ready = json_integer_value(json_object_get(spec, "minReadySeconds"));
	on_delete = strcmp(jstr(json_object_get(spec, "updateStrategy"), "type"), "OnDelete") == 0;
	rollout_template_hash(tmpl, -1, hash);
	if (label_selector_from_json(json_object_get(spec, "selector"), &s.sel, errmsg) != 0 ||
	    label_selector_empty(s.sel))
		goto out;
	s.c = c;
	s.ds = ds;
	s.key = key;
	s.pods = json_object();
	s.unpinned = json_array();
	informer_foreach(c->pod_inf, claim_pod, &s);
	nodes = json_array();
	informer_foreach(c->node_inf, collect_all, nodes);
	seen = json_object();
	old_ready = json_array();

	json_array_foreach(nodes, i, node) {
		const char *name = ctl_name(node);
		bool should = podutil_node_should_run(tmpl, node);
		json_t *keep;
		size_t j;

		if (name == NULL)
			continue;
		json_object_set_new(seen, name, json_true());
		list = json_object_get(s.pods, name);
		if (!should) {
			if (json_array_size(list) > 0) {
				misscheduled++;
				json_array_foreach(list, j, p)
					plan_delete(&plan, p);
			}
			continue;
		}
		desired++;
		keep = keeper(list, hash);
		json_array_foreach(list, j, p)
			if (p != keep)
				plan_delete(&plan, p);
		if (keep == NULL) {
			if (!ctl_deleting(ds))
				json_array_append_new(plan.create, json_string(name));
			unavailable++;
			continue;
		}
		current++;
		if (podutil_ready(keep))
			ready++;
		if (has_hash(keep, hash))
			updated++;
		if (podutil_available(keep, min_ready, now)) {
			available++;
			if (!has_hash(keep, hash))
				json_array_append(old_ready, keep);
		} else {
			unavailable++;
			if (podutil_ready(keep))
				requeue = true;
			/* An old pod that is not available costs nothing to replace. */
			if (!has_hash(keep, hash) && !on_delete)
				plan_delete(&plan, keep);
		}
	}
	/* Pods on nodes that no longer exist, or on no node at all. */
	json_object_foreach(s.pods, k, list)
		if (json_object_get(seen, k) == NULL)
			json_array_foreach(list, i, p)
				plan_delete(&plan, p);
	json_array_foreach(s.unpinned, i, p)
		plan_delete(&plan, p);

	if (!on_delete && json_array_size(old_ready) > 0) {
		int budget;

		ru = json_object_get(json_object_get(spec, "updateStrategy"), "rollingUpdate");
		if (json_object_get(ru, "maxUnavailable") != NULL &&
		    rollout_scaled_value(json_object_get(ru, "maxUnavailable"), desired, true,
					 &max_unav, errmsg) != 0)
			max_unav = 1;
		if (max_unav < 1)
			max_unav = 1;
		budget = max_unav - unavailable;
		json_array_foreach(old_ready, i, p) {
			if (budget <= 0)
				break;
			plan_delete(&plan, p);
			budget--;
		}
	}

	if (ctl_satisfied(b, key) && (json_array_size(plan.create) || json_array_size(plan.del))) {
		json_t *n;

		ctl_expect(b, key, (int)json_array_size(plan.create), (int)json_array_size(plan.del));
		json_array_foreach(plan.create, i, n)
			create_pod(c, ds, key, json_string_value(n), hash);
		json_array_foreach(plan.del, i, p)
			if (ctl_delete(b, &KRES_PODS, ctl_ns(p), ctl_name(p), ctl_uid(p), NULL, key,
				       delete_done, NULL) != 0)
				ctl_observed_del(b, key);
	}

	st = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I}",
		       "desiredNumberScheduled", desired, "currentNumberScheduled", current,
		       "numberMisscheduled", misscheduled, "numberReady", ready,
		       "updatedNumberScheduled", updated, "numberAvailable", available,
		       "numberUnavailable", desired - available > 0 ? desired - available : 0,
		       "observedGeneration", json_integer_value(json_object_get(
			       json_object_get(ds, "metadata"), "generation")));
	if (st != NULL) {
		json_t *old = json_object_get(ds, "status");
		bool same = true;

		json_object_foreach(st, k, p)
			if (json_integer_value(json_object_get(old, k)) != json_integer_value(p))
				same = false;
		if (!same) {
			json_t *patch = json_pack("{s:O}", "status", st);

			ctl_merge_patch(b, &KRES_DAEMONSETS, ctl_ns(ds), ctl_name(ds), "status", patch,
					key, NULL, NULL);
			json_decref(patch);
		}
		json_decref(st);
	}
	if (requeue && min_ready > 0)
		workqueue_add_after(b->q, key, (unsigned)(min_ready * 1000 + 100));
out:
	label_selector_free(s.sel);
	json_decref(s.pods);
	json_decref(s.unpinned);
	json_decref(nodes);
	json_decref(seen);
	json_decref(old_ready);
	json_decref(ds);
	json_decref(plan.create);
	json_decref(plan.del);
	return 0;
}

static void enqueue_all(void *data, json_t *ds)
{
	ctl_enqueue_obj(data, ds);
}

static void node_add(void *data, json_t *node)
{
	struct ds_ctl *c = data;

	(void)node;
	if (!c->base.stopped)
		informer_foreach(c->ds_inf, enqueue_all, &c->base);
}

static void node_update(void *data, json_t *old, json_t *node)
{
	json_t *om = json_object_get(old, "metadata"), *nm = json_object_get(node, "metadata");

	/* Heartbeats change status only: eligibility depends on labels and taints. */
	if (json_equal(json_object_get(om, "labels"), json_object_get(nm, "labels")) &&
	    json_equal(json_object_get(old, "spec"), json_object_get(node, "spec")))
		return;
	node_add(data, node);
}

static const char *owner_key(json_t *pod, char *buf, size_t size)
{
	json_t *ref = podutil_controller_ref(pod);

	if (ref == NULL || strcmp(jstr(ref, "kind"), "DaemonSet") != 0)
		return NULL;
	snprintf(buf, size, "%s/%s", ctl_ns(pod) ? ctl_ns(pod) : "", jstr(ref, "name"));
	return buf;
}

static void pod_add(void *data, json_t *pod)
{
	struct ds_ctl *c = data;
	char key[512];

	if (c->base.stopped || owner_key(pod, key, sizeof(key)) == NULL)
		return;
	ctl_observed_add(&c->base, key);
	workqueue_add(c->base.q, key);
}

static void pod_update(void *data, json_t *old, json_t *pod)
{
	struct ds_ctl *c = data;
	char key[512];

	if (c->base.stopped || owner_key(pod, key, sizeof(key)) == NULL)
		return;
	if (!ctl_deleting(old) && ctl_deleting(pod))
		ctl_observed_del(&c->base, key);
	workqueue_add(c->base.q, key);
}

static void pod_delete(void *data, json_t *pod)
{
	struct ds_ctl *c = data;
	char key[512];

	if (c->base.stopped || owner_key(pod, key, sizeof(key)) == NULL)
		return;
	if (!ctl_deleting(pod))
		ctl_observed_del(&c->base, key);
	workqueue_add(c->base.q, key);
}

static void ds_add(void *data, json_t *ds)
{
	struct ds_ctl *c = data;

	if (!c->base.stopped)
		ctl_enqueue_obj(&c->base, ds);
}

static void ds_update(void *data, json_t *old, json_t *ds)
{
	(void)old;
	ds_add(data, ds);
}

static void ds_free(struct ctl_base *b)
{
	free(b);
}

int daemonset_controller_start(struct controller_ctx *ctx, void **state)
{
	struct ds_ctl *c = calloc(1, sizeof(*c));
	struct informer_handlers dh = { ds_add, ds_update, ds_add, NULL };
	struct informer_handlers ph = { pod_add, pod_update, pod_delete, NULL };
	struct informer_handlers nh = { node_add, node_update, node_add, NULL };

	if (c == NULL)
		return -1;
	if (ctl_base_init(&c->base, ctx, "daemonset", ds_sync, ds_free) != 0) {
		free(c);
		return -1;
	}
	c->ds_inf = ctx->shared(ctx, &KRES_DAEMONSETS);
	c->pod_inf = ctx->shared(ctx, &KRES_PODS);
	c->node_inf = ctx->shared(ctx, &KRES_NODES);
	if (c->ds_inf == NULL || c->pod_inf == NULL || c->node_inf == NULL) {
		ctl_base_stop(&c->base);
		return -1;
	}
	dh.data = ph.data = nh.data = c;
	informer_add_handlers(c->ds_inf, &dh);
	informer_add_handlers(c->pod_inf, &ph);
	informer_add_handlers(c->node_inf, &nh);
	*state = c;
	return 0;
}

void daemonset_controller_stop(void *state)
{
	struct ds_ctl *c = state;

	informer_remove_handlers(c->ds_inf, c);
	informer_remove_handlers(c->pod_inf, c);
	informer_remove_handlers(c->node_inf, c);
	ctl_base_stop(&c->base);
}
