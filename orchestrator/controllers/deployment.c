/* deployment.c — the Deployment controller: one ReplicaSet per pod template
 * (named <deployment>-<pod-template-hash>), rolled from the old ones to the
 * new one by the RollingUpdate or Recreate strategy, scaled proportionally
 * mid-rollout, with revisions, history cleanup and the status kubectl's
 * rollout commands read.
 *
 * Happy path: an event on a Deployment, one of its ReplicaSets or (for
 * Recreate) one of their pods queues the Deployment → sync claims its
 * ReplicaSets, finds or creates the one of the current template, takes one
 * step of the strategy (each step a set of absolute spec.replicas patches,
 * so a repeated step on a stale cache is harmless), and writes status when
 * it changed. Failure modes: failed writes re-queue with back-off; a name
 * taken by a ReplicaSet that is not ours bumps status.collisionCount, which
 * changes the hash; a rollout that makes no progress for
 * progressDeadlineSeconds is reported as ProgressDeadlineExceeded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "orchestrator/api/selector.h"
#include "orchestrator/controllers/controllers.h"
#include "orchestrator/controllers/ctlbase.h"
#include "orchestrator/controllers/podutil.h"
#include "orchestrator/controllers/rollout.h"

struct deploy_ctl {
	struct ctl_base base;
	struct informer *d_inf, *rs_inf, *pod_inf;
};

/* One ReplicaSet of the deployment during a sync. */
struct deploy_rs {
	json_t *obj;              /* borrowed from the cache */
	struct rollout_rs r;      /* r.replicas is the planned size */
	int orig;                 /* spec.replicas as cached */
	long revision;
	bool is_new;
};

struct deploy_sync {
	struct deploy_ctl *c;
	const char *key;
	json_t *d;
	struct deploy_rs *rs;
	size_t n;
	struct deploy_rs *newrs;  /* NULL until there is one */
	int replicas, surge, unav;
	bool created;             /* a new ReplicaSet was asked for this sync */
	char created_name[300];
};

/* A string member, or "" when absent. */
static const char *jstr(json_t *obj, const char *k)
{
	const char *v = json_string_value(json_object_get(obj, k));

	return v ? v : "";
}

static long revision_of(json_t *obj)
{
	const char *v = json_string_value(json_object_get(json_object_get(json_object_get(obj,
		"metadata"), "annotations"), ROLLOUT_ANN_REVISION));

	return v ? strtol(v, NULL, 10) : 0;
}

static int int_field(json_t *obj, const char *a, const char *b, int def)
{
	json_t *v = json_object_get(json_object_get(obj, a), b);

	return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

static const char *rs_ann(json_t *rs, const char *name)
{
	return json_string_value(json_object_get(json_object_get(json_object_get(rs, "metadata"),
		"annotations"), name));
}

/* Annotations a ReplicaSet does not inherit from its Deployment. */
static bool skip_annotation(const char *k)
{
	return strcmp(k, "kubectl.kubernetes.io/last-applied-configuration") == 0 ||
	       strcmp(k, ROLLOUT_ANN_REVISION) == 0 || strcmp(k, ROLLOUT_ANN_REVISION_HISTORY) == 0 ||
	       strcmp(k, ROLLOUT_ANN_DESIRED) == 0 || strcmp(k, ROLLOUT_ANN_MAX) == 0 ||
	       strcmp(k, "deprecated.deployment.rollback.to") == 0;
}

static void copy_annotations(json_t *dst, json_t *d)
{
	const char *k;
	json_t *v;

	json_object_foreach(json_object_get(json_object_get(d, "metadata"), "annotations"), k, v)
		if (!skip_annotation(k))
			json_object_set(dst, k, v);
}

static void put_replica_annotations(struct deploy_sync *s, json_t *ann)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%d", s->replicas);
	json_object_set_new(ann, ROLLOUT_ANN_DESIRED, json_string(buf));
	snprintf(buf, sizeof(buf), "%d", s->replicas + s->surge);
	json_object_set_new(ann, ROLLOUT_ANN_MAX, json_string(buf));
}

/* Writes every planned size that differs from the cache, with the replica
 * annotations proportional scaling relies on. Returns how many changed. */
static int apply_sizes(struct deploy_sync *s)
{
	int changed = 0;

	for (size_t i = 0; i < s->n; i++) {
		struct deploy_rs *x = &s->rs[i];
		char want[32];
		const char *have = rs_ann(x->obj, ROLLOUT_ANN_DESIRED);
		json_t *patch, *ann;

		snprintf(want, sizeof(want), "%d", s->replicas);
		if (x->r.replicas == x->orig && (x->orig == 0 || (have && strcmp(have, want) == 0)))
			continue;
		ann = json_object();
		put_replica_annotations(s, ann);
		patch = json_pack("{s:{s:o}, s:{s:i}}", "metadata", "annotations", ann, "spec",
				  "replicas", x->r.replicas);
		ctl_merge_patch(&s->c->base, &KRES_REPLICASETS, ctl_ns(x->obj), ctl_name(x->obj),
				NULL, patch, s->key, NULL, NULL);
		json_decref(patch);
		if (x->r.replicas != x->orig)
			changed++;
	}
	return changed;
}

static void set_owner_refs(struct deploy_sync *s, json_t *rs, json_t *refs)
{
	json_t *patch = json_pack("{s:{s:o, s:O}}", "metadata", "ownerReferences", refs,
				  "resourceVersion",
				  json_object_get(json_object_get(rs, "metadata"), "resourceVersion"));

	ctl_merge_patch(&s->c->base, &KRES_REPLICASETS, ctl_ns(rs), ctl_name(rs), NULL, patch,
			s->key, NULL, NULL);
	json_decref(patch);
}

struct ns_scan {
	const char *ns;
	json_t *out;
};

static void collect_ns(void *data, json_t *obj)
{
	struct ns_scan *sc = data;
	const char *ns = ctl_ns(obj);

	if (ns != NULL && strcmp(ns, sc->ns) == 0)
		json_array_append(sc->out, obj);
}

/* Claims the deployment's ReplicaSets: ours that still match, orphans that
 * match (adopted), and ours that no longer match are released. */
static int claim(struct deploy_sync *s, struct label_selector *sel)
{
	struct deploy_ctl *c = s->c;
	json_t *all = json_array(), *rs;
	const char *ns = ctl_ns(s->d), *uid = ctl_uid(s->d);
	size_t i;

	struct ns_scan sc = { ns, all };

	informer_foreach(c->rs_inf, collect_ns, &sc);
	s->rs = calloc(json_array_size(all) + 1, sizeof(*s->rs));
	if (s->rs == NULL) {
		json_decref(all);
		return -1;
	}
	json_array_foreach(all, i, rs) {
		json_t *ref = podutil_controller_ref(rs);
		json_t *labels = json_object_get(json_object_get(rs, "metadata"), "labels");
		bool match = label_selector_matches(sel, labels);
		struct deploy_rs *x;

		if (ref != NULL) {
			const char *ruid = json_string_value(json_object_get(ref, "uid"));

			if (ruid == NULL || strcmp(ruid, uid) != 0)
				continue;
			if (!match) {
				json_t *refs = json_array(), *r;
				size_t j;

				json_array_foreach(json_object_get(json_object_get(rs, "metadata"),
								   "ownerReferences"), j, r)
					if (r != ref)
						json_array_append(refs, r);
				set_owner_refs(s, rs, refs);
				continue;
			}
		} else {
			json_t *refs;

			if (!match || ctl_deleting(rs) || ctl_deleting(s->d))
				continue;
			refs = json_deep_copy(json_object_get(json_object_get(rs, "metadata"),
							      "ownerReferences"));
			if (!json_is_array(refs)) {
				json_decref(refs);
				refs = json_array();
			}
			json_array_append_new(refs, podutil_new_controller_ref(s->d, "apps/v1",
									      "Deployment"));
			set_owner_refs(s, rs, refs);
		}
		x = &s->rs[s->n++];
		x->obj = rs;
		x->r.name = ctl_name(rs);
		x->r.created = rollout_parse_time(json_string_value(json_object_get(
			json_object_get(rs, "metadata"), "creationTimestamp")));
		x->orig = int_field(rs, "spec", "replicas", 1);
		x->r.replicas = x->orig;
		x->r.available = int_field(rs, "status", "availableReplicas", 0);
		x->r.max_replicas = rs_ann(rs, ROLLOUT_ANN_MAX)
			? atoi(rs_ann(rs, ROLLOUT_ANN_MAX)) : -1;
		x->revision = revision_of(rs);
	}
	/* The cache keeps `all`'s objects alive; the array itself can go. */
	json_decref(all);
	return 0;
}


static long max_old_revision(struct deploy_sync *s)
{
	long m = 0;

	for (size_t i = 0; i < s->n; i++)
		if (!s->rs[i].is_new && s->rs[i].revision > m)
			m = s->rs[i].revision;
	return m;
}

/* The new ReplicaSet already exists: make it the latest revision (the old
 * number goes into revision-history, as after a rollback). */
static void sync_new_revision(struct deploy_sync *s)
{
	struct deploy_rs *x = s->newrs;
	long want = max_old_revision(s) + 1;
	json_t *ann, *patch;
	char buf[32];

	if (x->revision >= want)
		return;
	ann = json_object();
	copy_annotations(ann, s->d);
	snprintf(buf, sizeof(buf), "%ld", want);
	json_object_set_new(ann, ROLLOUT_ANN_REVISION, json_string(buf));
	if (x->revision > 0) {
		const char *hist = rs_ann(x->obj, ROLLOUT_ANN_REVISION_HISTORY);
		char h[512];

		if (hist != NULL && hist[0] != '\0')
			snprintf(h, sizeof(h), "%s,%ld", hist, x->revision);
		else
			snprintf(h, sizeof(h), "%ld", x->revision);
		json_object_set_new(ann, ROLLOUT_ANN_REVISION_HISTORY, json_string(h));
	}
	patch = json_pack("{s:{s:o}}", "metadata", "annotations", ann);
	ctl_merge_patch(&s->c->base, &KRES_REPLICASETS, ctl_ns(x->obj), ctl_name(x->obj), NULL,
			patch, s->key, NULL, NULL);
	json_decref(patch);
	x->revision = want;
}

/* Keeps the deployment's own revision annotation on its new set's. */
static void sync_deploy_revision(struct deploy_sync *s, long rev)
{
	char buf[32];
	json_t *patch;

	if (rev <= 0 || revision_of(s->d) == rev)
		return;
	snprintf(buf, sizeof(buf), "%ld", rev);
	patch = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", ROLLOUT_ANN_REVISION, buf);
	ctl_merge_patch(&s->c->base, &KRES_DEPLOYMENTS, ctl_ns(s->d), ctl_name(s->d), NULL, patch,
			s->key, NULL, NULL);
	json_decref(patch);
}

static json_t *progressing(json_t *status)
{
	json_t *c;
	size_t i;

	json_array_foreach(json_object_get(status, "conditions"), i, c)
		if (json_is_string(json_object_get(c, "type")) &&
		    strcmp(json_string_value(json_object_get(c, "type")), "Progressing") == 0)
			return c;
	return NULL;
}

/* Sets a condition in a status being built: same status and reason change
 * nothing; same status keeps lastTransitionTime. always_touch refreshes
 * lastUpdateTime even then (the rollout made progress). */
static void set_condition(json_t *status, const char *type, const char *st, const char *reason,
			  const char *msg, bool always_touch)
{
	json_t *conds = json_object_get(status, "conditions"), *c, *old = NULL;
	char now[32];
	size_t i;

	if (!json_is_array(conds)) {
		conds = json_array();
		json_object_set_new(status, "conditions", conds);
	}
	json_array_foreach(conds, i, c)
		if (strcmp(jstr(c, "type"), type) == 0) {
			old = c;
			break;
		}
	if (old != NULL && !always_touch &&
	    strcmp(jstr(old, "status"), st) == 0 &&
	    strcmp(jstr(old, "reason"), reason) == 0)
		return;
	ctl_now_rfc3339(now, sizeof(now));
	c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", type, "status", st,
		      "lastUpdateTime", now, "lastTransitionTime", now, "reason", reason,
		      "message", msg);
	if (old != NULL && strcmp(jstr(old, "status"), st) == 0)
		json_object_set(c, "lastTransitionTime", json_object_get(old, "lastTransitionTime"));
	if (old != NULL)
		json_array_set_new(conds, i, c);
	else
		json_array_append_new(conds, c);
}

static int64_t collision_count(json_t *d)
{
	json_t *v = json_object_get(json_object_get(d, "status"), "collisionCount");

	return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* Asks for the ReplicaSet of the current template with `size` replicas.
 * A name taken by a set that is not ours raises collisionCount instead. */
static void create_new_rs(struct deploy_sync *s, int size)
{
	json_t *d = s->d, *spec = json_object_get(d, "spec");
	json_t *tmpl = json_deep_copy(json_object_get(spec, "template"));
	json_t *sel = json_deep_copy(json_object_get(spec, "selector"));
	json_t *labels, *ann, *rs = NULL, *ref, *existing, *ml;
	char hash[11], name[300], key[600], buf[32];
	const char *ns = ctl_ns(d);

	if (tmpl == NULL || sel == NULL)
		goto out;
	rollout_template_hash(tmpl, collision_count(d), hash);
	snprintf(name, sizeof(name), "%s-%s", ctl_name(d), hash);
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	existing = informer_get(s->c->rs_inf, key);
	if (existing != NULL) {
		/* Ours with the same template would have been found: this name
		 * belongs to someone else, so the hash must change. */
		json_t *patch = json_pack("{s:{s:I}}", "status", "collisionCount",
					  (json_int_t)(collision_count(d) < 0 ? 1
									 : collision_count(d) + 1));

		log_info("deployment %s: ReplicaSet %s exists, raising collisionCount", s->key, name);
		ctl_merge_patch(&s->c->base, &KRES_DEPLOYMENTS, ns, ctl_name(d), "status", patch,
				s->key, NULL, NULL);
		json_decref(patch);
		goto out;
	}
	labels = json_object_get(json_object_get(tmpl, "metadata"), "labels");
	if (!json_is_object(labels)) {
		labels = json_object();
		if (!json_is_object(json_object_get(tmpl, "metadata")))
			json_object_set_new(tmpl, "metadata", json_object());
		json_object_set_new(json_object_get(tmpl, "metadata"), "labels", labels);
	}
	json_object_set_new(labels, ROLLOUT_HASH_LABEL, json_string(hash));
	ml = json_object_get(sel, "matchLabels");
	if (!json_is_object(ml)) {
		ml = json_object();
		json_object_set_new(sel, "matchLabels", ml);
	}
	json_object_set_new(ml, ROLLOUT_HASH_LABEL, json_string(hash));
	ann = json_object();
	copy_annotations(ann, d);
	snprintf(buf, sizeof(buf), "%ld", max_old_revision(s) + 1);
	json_object_set_new(ann, ROLLOUT_ANN_REVISION, json_string(buf));
	put_replica_annotations(s, ann);
	ref = podutil_new_controller_ref(d, "apps/v1", "Deployment");
	rs = json_pack("{s:s, s:s, s:{s:s, s:s, s:O, s:o, s:[o]}, s:{s:i, s:i, s:O, s:O}}",
		       "apiVersion", "apps/v1", "kind", "ReplicaSet",
		       "metadata", "name", name, "namespace", ns, "labels", labels,
		       "annotations", ann, "ownerReferences", ref,
		       "spec", "replicas", size, "minReadySeconds",
		       int_field(d, "spec", "minReadySeconds", 0), "selector", sel,
		       "template", tmpl);
	if (rs == NULL)
		goto out;
	log_info("deployment %s: creating ReplicaSet %s with %d replicas", s->key, name, size);
	ctl_create(&s->c->base, &KRES_REPLICASETS, ns, rs, s->key, NULL, NULL);
	s->created = true;
	snprintf(s->created_name, sizeof(s->created_name), "%s", name);
	sync_deploy_revision(s, max_old_revision(s) + 1);
out:
	json_decref(rs);
	json_decref(tmpl);
	json_decref(sel);
}

static int total_replicas(struct deploy_sync *s)
{
	int t = 0;

	for (size_t i = 0; i < s->n; i++)
		t += s->rs[i].r.replicas;
	return t;
}

/* A change of spec.replicas alone: an active set whose desired-replicas
 * annotation is not the deployment's replicas. */
static bool scaling_event(struct deploy_sync *s)
{
	char want[32];

	snprintf(want, sizeof(want), "%d", s->replicas);
	for (size_t i = 0; i < s->n; i++) {
		const char *have = rs_ann(s->rs[i].obj, ROLLOUT_ANN_DESIRED);

		if (s->rs[i].orig > 0 && have != NULL && strcmp(have, want) != 0)
			return true;
	}
	return false;
}

static bool is_rolling(json_t *d)
{
	const char *t = json_string_value(json_object_get(json_object_get(json_object_get(d,
		"spec"), "strategy"), "type"));

	return t == NULL || strcmp(t, "Recreate") != 0;
}

/* Sizes the sets for a scale of the deployment, without rolling. */
static void scale(struct deploy_sync *s)
{
	struct deploy_rs *only = NULL;
	size_t active = 0;
	struct rollout_rs *tmp;

	for (size_t i = 0; i < s->n; i++)
		if (s->rs[i].orig > 0) {
			active++;
			only = &s->rs[i];
		}
	if (active == 0) {
		/* Nothing runs: the newest set takes the whole size. */
		for (size_t i = 0; i < s->n; i++)
			if (only == NULL || s->rs[i].is_new ||
			    (!only->is_new && s->rs[i].r.created > only->r.created))
				only = &s->rs[i];
	}
	if (active <= 1) {
		if (only != NULL)
			only->r.replicas = s->replicas;
		return;
	}
	/* The new set already holds everything: the old ones go. */
	if (s->newrs != NULL && s->newrs->orig == s->replicas &&
	    s->newrs->r.available == s->replicas) {
		for (size_t i = 0; i < s->n; i++)
			if (!s->rs[i].is_new)
				s->rs[i].r.replicas = 0;
		return;
	}
	if (!is_rolling(s->d))
		return;
	tmp = calloc(s->n, sizeof(*tmp));
	if (tmp == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		tmp[i] = s->rs[i].r;
	rollout_proportional(tmp, s->n, s->replicas, s->surge,
			     int_field(s->d, "status", "replicas", 0));
	for (size_t i = 0; i < s->n; i++)
		s->rs[i].r.replicas = tmp[i].replicas;
	free(tmp);
}

static void rolling(struct deploy_sync *s)
{
	struct rollout_rs *old;
	size_t k = 0;
	int new_size;

	if (s->newrs == NULL) {
		create_new_rs(s, rollout_new_rs_size(s->replicas, s->surge, total_replicas(s), 0));
		return;
	}
	new_size = s->newrs->orig > s->replicas ? s->replicas
		: rollout_new_rs_size(s->replicas, s->surge, total_replicas(s), s->newrs->orig);
	s->newrs->r.replicas = new_size;
	if (new_size > s->newrs->orig)
		return;   /* one step at a time: scale up first, as Kubernetes does */
	old = calloc(s->n, sizeof(*old));
	if (old == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		if (!s->rs[i].is_new) {
			old[k] = s->rs[i].r;
			old[k].name = s->rs[i].r.name;
			k++;
		}
	rollout_scale_down_old(old, k, new_size, s->newrs->r.available, s->replicas, s->unav);
	/* Sorting reordered the copies: match them back by name. */
	for (size_t j = 0; j < k; j++)
		for (size_t i = 0; i < s->n; i++)
			if (!s->rs[i].is_new && strcmp(s->rs[i].r.name, old[j].name) == 0)
				s->rs[i].r.replicas = old[j].replicas;
	free(old);
}

struct pod_count {
	struct deploy_sync *s;
	int n;
};

static void count_old_pods(void *data, json_t *pod)
{
	struct pod_count *pc = data;
	json_t *ref = podutil_controller_ref(pod);
	const char *ruid = json_string_value(json_object_get(ref, "uid"));
	const char *phase = json_string_value(json_object_get(json_object_get(pod, "status"), "phase"));

	if (ruid == NULL || (phase != NULL && (strcmp(phase, "Succeeded") == 0 ||
					       strcmp(phase, "Failed") == 0)))
		return;
	for (size_t i = 0; i < pc->s->n; i++)
		if (!pc->s->rs[i].is_new && strcmp(ctl_uid(pc->s->rs[i].obj), ruid) == 0)
			pc->n++;
}

static void recreate(struct deploy_sync *s)
{
	struct pod_count pc = { s, 0 };
	bool old_up = false;

	for (size_t i = 0; i < s->n; i++)
		if (!s->rs[i].is_new && (s->rs[i].orig > 0 ||
					 int_field(s->rs[i].obj, "status", "replicas", 0) > 0)) {
			s->rs[i].r.replicas = 0;
			old_up = true;
		}
	if (old_up)
		return;
	/* Recreate means no old pod runs beside a new one: wait for them. */
	informer_foreach(s->c->pod_inf, count_old_pods, &pc);
	if (pc.n > 0)
		return;
	if (s->newrs == NULL)
		create_new_rs(s, s->replicas);
	else
		s->newrs->r.replicas = s->replicas;
}

static int cmp_revision(const void *a, const void *b)
{
	const struct deploy_rs *x = *(struct deploy_rs *const *)a, *y = *(struct deploy_rs *const *)b;

	if (x->revision != y->revision)
		return x->revision < y->revision ? -1 : 1;
	return strcmp(x->r.name, y->r.name);
}

/* Deletes the oldest empty old sets beyond revisionHistoryLimit. */
static void cleanup_history(struct deploy_sync *s)
{
	int limit = int_field(s->d, "spec", "revisionHistoryLimit", 10);
	struct deploy_rs **empty = calloc(s->n + 1, sizeof(*empty));
	size_t m = 0, i;

	if (empty == NULL)
		return;
	for (i = 0; i < s->n; i++) {
		struct deploy_rs *x = &s->rs[i];

		if (!x->is_new && x->orig == 0 && x->r.replicas == 0 &&
		    int_field(x->obj, "status", "replicas", 0) == 0 && !ctl_deleting(x->obj))
			empty[m++] = x;
	}
	if ((int)m > limit) {
		qsort(empty, m, sizeof(*empty), cmp_revision);
		for (i = 0; i < m - (size_t)limit; i++)
			ctl_delete(&s->c->base, &KRES_REPLICASETS, ctl_ns(empty[i]->obj),
				   ctl_name(empty[i]->obj), ctl_uid(empty[i]->obj), NULL, s->key,
				   NULL, NULL);
	}
	free(empty);
}

/* Computes the status from the sets' statuses; writes it when it changed.
 * Returns the milliseconds after which the progress deadline should be
 * looked at again (0: no need). */
static unsigned sync_status(struct deploy_sync *s, bool paused)
{
	json_t *d = s->d, *old = json_object_get(d, "status"), *st, *cond, *patch;
	int replicas = 0, updated = 0, ready = 0, available = 0;
	int deadline = int_field(d, "spec", "progressDeadlineSeconds", 600);
	bool has_deadline = json_is_integer(json_object_get(json_object_get(d, "spec"),
							     "progressDeadlineSeconds"));
	bool complete;
	char msg[400];
	unsigned again = 0;
	const char *nname = s->newrs ? ctl_name(s->newrs->obj) : NULL;

	for (size_t i = 0; i < s->n; i++) {
		json_t *rs = s->rs[i].obj;

		replicas += int_field(rs, "status", "replicas", 0);
		ready += int_field(rs, "status", "readyReplicas", 0);
		available += int_field(rs, "status", "availableReplicas", 0);
		if (s->rs[i].is_new)
			updated = int_field(rs, "status", "replicas", 0);
	}
	st = json_deep_copy(old);
	if (!json_is_object(st)) {
		json_decref(st);
		st = json_object();
	}
	json_object_set_new(st, "observedGeneration", json_integer(json_integer_value(
		json_object_get(json_object_get(d, "metadata"), "generation"))));
	json_object_set_new(st, "replicas", json_integer(replicas));
	json_object_set_new(st, "updatedReplicas", json_integer(updated));
	json_object_set_new(st, "readyReplicas", json_integer(ready));
	json_object_set_new(st, "availableReplicas", json_integer(available));
	json_object_set_new(st, "unavailableReplicas",
			    json_integer(s->replicas - available > 0 ? s->replicas - available : 0));
	if (available >= s->replicas - (is_rolling(d) ? s->unav : 0))
		set_condition(st, "Available", "True", "MinimumReplicasAvailable",
			      "Deployment has minimum availability.", false);
	else
		set_condition(st, "Available", "False", "MinimumReplicasUnavailable",
			      "Deployment does not have minimum availability.", false);

	cond = progressing(st);
	complete = replicas == s->replicas && updated == s->replicas && available == s->replicas &&
		   s->newrs != NULL;
	if (paused) {
		set_condition(st, "Progressing", "Unknown", "DeploymentPaused",
			      "Deployment is paused", false);
	} else if (cond != NULL && strcmp(jstr(cond, "reason"), "DeploymentPaused") == 0) {
		set_condition(st, "Progressing", "Unknown", "DeploymentResumed",
			      "Deployment is resumed", false);
	} else if (s->created) {
		snprintf(msg, sizeof(msg), "Created new replica set \"%s\"", s->created_name);
		set_condition(st, "Progressing", "True", "NewReplicaSetCreated", msg, true);
		if (has_deadline)
			again = (unsigned)deadline * 1000 + 500;
	} else if (has_deadline && !(replicas == updated && cond != NULL &&
				     strcmp(jstr(cond, "reason"), "NewReplicaSetAvailable") == 0)) {
		/* Progress means more updated, ready or available pods, or fewer
		 * old ones, than the status last said. */
		bool progressed = updated > int_field(d, "status", "updatedReplicas", 0) ||
				  ready > int_field(d, "status", "readyReplicas", 0) ||
				  available > int_field(d, "status", "availableReplicas", 0) ||
				  replicas - updated < int_field(d, "status", "replicas", 0) -
						       int_field(d, "status", "updatedReplicas", 0);
		int64_t since = cond ? rollout_parse_time(jstr(cond, "lastUpdateTime")) : -1;
		int64_t now = ctl_now_ms() / 1000;

		if (complete && nname != NULL) {
			snprintf(msg, sizeof(msg), "ReplicaSet \"%s\" has successfully progressed.", nname);
			set_condition(st, "Progressing", "True", "NewReplicaSetAvailable", msg, false);
		} else if (progressed && nname != NULL) {
			snprintf(msg, sizeof(msg), "ReplicaSet \"%s\" is progressing.", nname);
			set_condition(st, "Progressing", "True", "ReplicaSetUpdated", msg, true);
			again = (unsigned)deadline * 1000 + 500;
		} else if (cond != NULL && since >= 0 && nname != NULL &&
			   strcmp(jstr(cond, "reason"), "ProgressDeadlineExceeded") != 0) {
			if (now > since + deadline) {
				snprintf(msg, sizeof(msg), "ReplicaSet \"%s\" has timed out progressing.",
					 nname);
				set_condition(st, "Progressing", "False", "ProgressDeadlineExceeded",
					      msg, false);
			} else {
				again = (unsigned)((since + deadline - now) * 1000 + 500);
			}
		} else if (cond == NULL && nname != NULL) {
			snprintf(msg, sizeof(msg), "Found new replica set \"%s\"", nname);
			set_condition(st, "Progressing", "True", "FoundNewReplicaSet", msg, false);
		}
	}
	if (!json_equal(st, old)) {
		patch = json_pack("{s:O}", "status", st);
		ctl_merge_patch(&s->c->base, &KRES_DEPLOYMENTS, ctl_ns(d), ctl_name(d), "status",
				patch, s->key, NULL, NULL);
		json_decref(patch);
	}
	json_decref(st);
	return again;
}

static int deploy_sync(void *data, const char *key)
{
	struct deploy_ctl *c = data;
	struct deploy_sync s = { .c = c, .key = key };
	struct label_selector *sel = NULL;
	json_t *d, *spec, *ru;
	char errmsg[256];
	bool paused;
	unsigned again;

	if (!informer_synced(c->d_inf) || !informer_synced(c->rs_inf) ||
	    !informer_synced(c->pod_inf)) {
		workqueue_add_after(c->base.q, key, 200);
		return 0;
	}
	d = informer_get(c->d_inf, key);
	if (d == NULL || ctl_deleting(d))
		return 0;
	json_incref(d);
	s.d = d;
	spec = json_object_get(d, "spec");
	if (label_selector_from_json(json_object_get(spec, "selector"), &sel, errmsg) != 0 ||
	    label_selector_empty(sel))
		goto out;
	s.replicas = int_field(d, "spec", "replicas", 1);
	ru = json_object_get(json_object_get(spec, "strategy"), "rollingUpdate");
	if (is_rolling(d)) {
		if (rollout_fenceposts(json_object_get(ru, "maxSurge"),
				       json_object_get(ru, "maxUnavailable"), s.replicas, &s.surge,
				       &s.unav, errmsg) != 0) {
			log_warn("deployment %s: %s", key, errmsg);
			goto out;
		}
	}
	if (claim(&s, sel) != 0)
		goto out;
	/* The new set: the oldest with the current template. */
	for (size_t i = 0; i < s.n; i++)
		if (rollout_templates_equal(json_object_get(json_object_get(s.rs[i].obj, "spec"),
							    "template"),
					    json_object_get(spec, "template")) &&
		    (s.newrs == NULL || s.rs[i].r.created < s.newrs->r.created))
			s.newrs = &s.rs[i];
	if (s.newrs != NULL) {
		s.newrs->is_new = true;
		sync_new_revision(&s);
		sync_deploy_revision(&s, s.newrs->revision);
	}
	paused = json_is_true(json_object_get(spec, "paused"));
	if (paused || scaling_event(&s)) {
		scale(&s);
		apply_sizes(&s);
		if (paused)
			cleanup_history(&s);
	} else {
		if (is_rolling(d))
			rolling(&s);
		else
			recreate(&s);
		apply_sizes(&s);
		if (s.newrs != NULL && s.newrs->orig == s.replicas &&
		    s.newrs->r.available == s.replicas && total_replicas(&s) == s.replicas)
			cleanup_history(&s);
	}
	again = sync_status(&s, paused);
	if (again > 0)
		workqueue_add_after(c->base.q, key, again);
out:
	free(s.rs);
	label_selector_free(sel);
	json_decref(d);
	return 0;
}

/* The deployment controlling obj, queued; orphans queue every deployment
 * in their namespace whose selector matches them. */
struct match_scan {
	struct deploy_ctl *c;
	json_t *obj;
};

static void enqueue_if_selects(void *data, json_t *d)
{
	struct match_scan *m = data;
	struct label_selector *sel = NULL;
	char errmsg[256];
	const char *ns = ctl_ns(d), *ons = ctl_ns(m->obj);

	if (ns == NULL || ons == NULL || strcmp(ns, ons) != 0)
		return;
	if (label_selector_from_json(json_object_get(json_object_get(d, "spec"), "selector"), &sel,
				     errmsg) != 0)
		return;
	if (!label_selector_empty(sel) &&
	    label_selector_matches(sel, json_object_get(json_object_get(m->obj, "metadata"),
							"labels")))
		ctl_enqueue_obj(&m->c->base, d);
	label_selector_free(sel);
}

static void enqueue_for_rs(struct deploy_ctl *c, json_t *rs)
{
	json_t *ref = podutil_controller_ref(rs);
	struct match_scan m = { c, rs };

	if (ref == NULL) {
		informer_foreach(c->d_inf, enqueue_if_selects, &m);
		return;
	}
	if (strcmp(jstr(ref, "kind"), "Deployment") == 0)
		ctl_enqueue(&c->base, ctl_ns(rs), jstr(ref, "name"));
}

static void rs_add(void *data, json_t *rs)
{
	struct deploy_ctl *c = data;

	if (!c->base.stopped)
		enqueue_for_rs(c, rs);
}

static void rs_update(void *data, json_t *old, json_t *rs)
{
	struct deploy_ctl *c = data;
	json_t *a = podutil_controller_ref(old), *b = podutil_controller_ref(rs);

	if (c->base.stopped)
		return;
	if (a != NULL && (b == NULL || !json_equal(a, b)))
		enqueue_for_rs(c, old);
	enqueue_for_rs(c, rs);
}

/* Recreate waits for old pods to go: their deletion wakes the deployment. */
static void pod_delete(void *data, json_t *pod)
{
	struct deploy_ctl *c = data;
	json_t *ref = podutil_controller_ref(pod), *rs;
	char key[512];

	if (c->base.stopped || ref == NULL || strcmp(jstr(ref, "kind"), "ReplicaSet") != 0)
		return;
	snprintf(key, sizeof(key), "%s/%s", ctl_ns(pod), jstr(ref, "name"));
	rs = informer_get(c->rs_inf, key);
	if (rs != NULL)
		enqueue_for_rs(c, rs);
}

static void pod_update(void *data, json_t *old, json_t *pod)
{
	(void)old;
	/* Only pods that reach a final phase matter to Recreate. */
	if (json_is_string(json_object_get(json_object_get(pod, "status"), "phase")) &&
	    (strcmp(jstr(json_object_get(pod, "status"), "phase"), "Succeeded") == 0 ||
	     strcmp(jstr(json_object_get(pod, "status"), "phase"), "Failed") == 0))
		pod_delete(data, pod);
}

static void d_add(void *data, json_t *d)
{
	struct deploy_ctl *c = data;

	if (!c->base.stopped)
		ctl_enqueue_obj(&c->base, d);
}

static void d_update(void *data, json_t *old, json_t *d)
{
	(void)old;
	d_add(data, d);
}

static void deploy_free(struct ctl_base *b)
{
	free(b);
}

int deployment_controller_start(struct controller_ctx *ctx, void **state)
{
	struct deploy_ctl *c = calloc(1, sizeof(*c));
	struct informer_handlers dh = { d_add, d_update, d_add, NULL };
	struct informer_handlers rh = { rs_add, rs_update, rs_add, NULL };
	struct informer_handlers ph = { NULL, pod_update, pod_delete, NULL };

	if (c == NULL)
		return -1;
	if (ctl_base_init(&c->base, ctx, "deployment", deploy_sync, deploy_free) != 0) {
		free(c);
		return -1;
	}
	c->d_inf = ctx->shared(ctx, &KRES_DEPLOYMENTS);
	c->rs_inf = ctx->shared(ctx, &KRES_REPLICASETS);
	c->pod_inf = ctx->shared(ctx, &KRES_PODS);
	if (c->d_inf == NULL || c->rs_inf == NULL || c->pod_inf == NULL) {
		ctl_base_stop(&c->base);
		return -1;
	}
	dh.data = rh.data = ph.data = c;
	informer_add_handlers(c->d_inf, &dh);
	informer_add_handlers(c->rs_inf, &rh);
	informer_add_handlers(c->pod_inf, &ph);
	*state = c;
	return 0;
}

void deployment_controller_stop(void *state)
{
	struct deploy_ctl *c = state;

	informer_remove_handlers(c->d_inf, c);
	informer_remove_handlers(c->rs_inf, c);
	informer_remove_handlers(c->pod_inf, c);
	ctl_base_stop(&c->base);
}
