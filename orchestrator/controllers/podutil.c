/* podutil.c — pure helpers of the workload controllers: readiness, owner
 * references, pods from templates, tolerations, node eligibility, Service
 * ports and the garbage collector's owner graph. */
#include <stdlib.h>
#include <string.h>

#include "orchestrator/api/selector.h"
#include "orchestrator/controllers/podutil.h"
#include "orchestrator/controllers/rollout.h"
#include "lib/err.h"

static bool str_eq(json_t *v, const char *s)
{
	const char *x = json_string_value(v);

	return x != NULL && strcmp(x, s) == 0;
}

static json_t *ready_condition(json_t *pod)
{
	json_t *c;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(pod, "status"), "conditions"), i, c)
		if (str_eq(json_object_get(c, "type"), "Ready"))
			return c;
	return NULL;
}

bool podutil_ready(json_t *pod)
{
	return str_eq(json_object_get(ready_condition(pod), "status"), "True");
}

bool podutil_available(json_t *pod, int64_t min_ready, int64_t now)
{
	json_t *c = ready_condition(pod);
	int64_t since;

	if (!str_eq(json_object_get(c, "status"), "True"))
		return false;
	if (min_ready <= 0)
		return true;
	since = rollout_parse_time(json_string_value(json_object_get(c, "lastTransitionTime")));
	return since >= 0 && since + min_ready <= now;
}

bool podutil_active(json_t *pod)
{
	json_t *phase = json_object_get(json_object_get(pod, "status"), "phase");

	if (json_object_get(json_object_get(pod, "metadata"), "deletionTimestamp") != NULL)
		return false;
	return !str_eq(phase, "Succeeded") && !str_eq(phase, "Failed");
}

json_t *podutil_controller_ref(json_t *obj)
{
	json_t *r;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "ownerReferences"), i, r)
		if (json_is_true(json_object_get(r, "controller")))
			return r;
	return NULL;
}

json_t *podutil_new_controller_ref(json_t *owner, const char *api_version, const char *kind)
{
	json_t *meta = json_object_get(owner, "metadata");

	return json_pack("{s:s, s:s, s:O, s:O, s:b, s:b}", "apiVersion", api_version,
			 "kind", kind, "name", json_object_get(meta, "name"),
			 "uid", json_object_get(meta, "uid"), "controller", 1,
			 "blockOwnerDeletion", 1);
}

json_t *podutil_pod_from_template(json_t *template, json_t *owner, const char *api_version,
				  const char *kind)
{
	json_t *ometa = json_object_get(owner, "metadata");
	json_t *tmeta = json_object_get(template, "metadata");
	json_t *pod, *meta, *ref, *v;
	char *gen = NULL;
	const char *name = json_string_value(json_object_get(ometa, "name"));

	if (name == NULL)
		return NULL;
	gen = malloc(strlen(name) + 2);
	if (gen == NULL)
		return NULL;
	strcpy(gen, name);
	strcat(gen, "-");
	pod = json_pack("{s:s, s:s, s:{s:s, s:O}, s:O}", "apiVersion", "v1", "kind", "Pod",
			"metadata", "generateName", gen, "namespace",
			json_object_get(ometa, "namespace"), "spec",
			json_object_get(template, "spec") ? json_object_get(template, "spec")
							  : json_object());
	free(gen);
	if (pod == NULL)
		return NULL;
	meta = json_object_get(pod, "metadata");
	/* The spec is shared with the template: callers change it, so copy. */
	json_object_set_new(pod, "spec", json_deep_copy(json_object_get(pod, "spec")));
	if ((v = json_object_get(tmeta, "labels")) != NULL)
		json_object_set_new(meta, "labels", json_deep_copy(v));
	if ((v = json_object_get(tmeta, "annotations")) != NULL)
		json_object_set_new(meta, "annotations", json_deep_copy(v));
	ref = podutil_new_controller_ref(owner, api_version, kind);
	if (ref == NULL || json_object_set_new(meta, "ownerReferences", json_pack("[o]", ref))) {
		json_decref(pod);
		return NULL;
	}
	return pod;
}

bool podutil_tolerates(json_t *tol, json_t *taint)
{
	const char *tkey = json_string_value(json_object_get(tol, "key"));
	const char *op = json_string_value(json_object_get(tol, "operator"));
	const char *teff = json_string_value(json_object_get(tol, "effect"));
	const char *key = json_string_value(json_object_get(taint, "key"));
	const char *eff = json_string_value(json_object_get(taint, "effect"));
	const char *tval = json_string_value(json_object_get(tol, "value"));
	const char *val = json_string_value(json_object_get(taint, "value"));

	if (teff != NULL && teff[0] != '\0' && (eff == NULL || strcmp(teff, eff) != 0))
		return false;
	if (tkey == NULL || tkey[0] == '\0')
		/* An empty key tolerates every taint, but only with Exists. */
		return op != NULL && strcmp(op, "Exists") == 0;
	if (key == NULL || strcmp(tkey, key) != 0)
		return false;
	if (op != NULL && strcmp(op, "Exists") == 0)
		return true;
	return strcmp(tval ? tval : "", val ? val : "") == 0;
}

bool podutil_taints_tolerated(json_t *tolerations, json_t *taints)
{
	json_t *taint, *tol;
	size_t i, j;

	json_array_foreach(taints, i, taint) {
		bool ok = false;

		/* PreferNoSchedule is only a preference: it never keeps a pod off. */
		if (!str_eq(json_object_get(taint, "effect"), "NoSchedule") &&
		    !str_eq(json_object_get(taint, "effect"), "NoExecute"))
			continue;
		json_array_foreach(tolerations, j, tol)
			if (podutil_tolerates(tol, taint)) {
				ok = true;
				break;
			}
		if (!ok)
			return false;
	}
	return true;
}

static const struct {
	const char *key, *effect;
} daemon_tolerations[] = {
	{ "node.kubernetes.io/not-ready", "NoExecute" },
	{ "node.kubernetes.io/unreachable", "NoExecute" },
	{ "node.kubernetes.io/disk-pressure", "NoSchedule" },
	{ "node.kubernetes.io/memory-pressure", "NoSchedule" },
	{ "node.kubernetes.io/pid-pressure", "NoSchedule" },
	{ "node.kubernetes.io/unschedulable", "NoSchedule" },
};

void podutil_add_daemon_tolerations(json_t *spec)
{
	json_t *tols = json_object_get(spec, "tolerations");
	size_t i, j;

	if (!json_is_array(tols)) {
		tols = json_array();
		json_object_set_new(spec, "tolerations", tols);
	}
	for (i = 0; i < sizeof(daemon_tolerations) / sizeof(daemon_tolerations[0]); i++) {
		json_t *t;
		bool have = false;

		json_array_foreach(tols, j, t)
			if (str_eq(json_object_get(t, "key"), daemon_tolerations[i].key) &&
			    str_eq(json_object_get(t, "effect"), daemon_tolerations[i].effect))
				have = true;
		if (!have)
			json_array_append_new(tols, json_pack("{s:s, s:s, s:s}", "key",
							      daemon_tolerations[i].key, "operator",
							      "Exists", "effect",
							      daemon_tolerations[i].effect));
	}
}

static json_t *ensure_obj(json_t *parent, const char *key)
{
	json_t *v = json_object_get(parent, key);

	if (!json_is_object(v)) {
		v = json_object();
		json_object_set_new(parent, key, v);
	}
	return v;
}

int podutil_pin_to_node(json_t *spec, const char *node)
{
	json_t *na = ensure_obj(ensure_obj(spec, "affinity"), "nodeAffinity");
	json_t *req = ensure_obj(na, "requiredDuringSchedulingIgnoredDuringExecution");
	json_t *terms = json_object_get(req, "nodeSelectorTerms");
	json_t *field = json_pack("{s:s, s:s, s:[s]}", "key", "metadata.name", "operator", "In",
				  "values", node);
	json_t *term, *f;
	size_t i, j;

	if (field == NULL)
		return CAP_ENOMEM;
	if (!json_is_array(terms) || json_array_size(terms) == 0) {
		json_object_set_new(req, "nodeSelectorTerms",
				    json_pack("[{s:[o]}]", "matchFields", field));
		return CAP_OK;
	}
	/* Terms are ORed: the node name must be required in each of them. */
	json_array_foreach(terms, i, term) {
		json_t *mf = json_object_get(term, "matchFields");
		json_t *keep = json_array();

		json_array_foreach(mf, j, f)
			if (!str_eq(json_object_get(f, "key"), "metadata.name"))
				json_array_append(keep, f);
		json_array_append(keep, field);
		json_object_set_new(term, "matchFields", keep);
	}
	json_decref(field);
	return CAP_OK;
}

const char *podutil_pinned_node(json_t *pod)
{
	json_t *spec = json_object_get(pod, "spec");
	const char *n = json_string_value(json_object_get(spec, "nodeName"));
	json_t *terms, *term, *f;
	size_t i, j;

	if (n != NULL && n[0] != '\0')
		return n;
	terms = json_object_get(json_object_get(json_object_get(json_object_get(spec, "affinity"),
		"nodeAffinity"), "requiredDuringSchedulingIgnoredDuringExecution"),
		"nodeSelectorTerms");
	json_array_foreach(terms, i, term)
		json_array_foreach(json_object_get(term, "matchFields"), j, f)
			if (str_eq(json_object_get(f, "key"), "metadata.name") &&
			    str_eq(json_object_get(f, "operator"), "In") &&
			    json_array_size(json_object_get(f, "values")) == 1)
				return json_string_value(json_array_get(json_object_get(f, "values"), 0));
	return NULL;
}

static bool in_values(json_t *values, const char *v)
{
	json_t *x;
	size_t i;

	json_array_foreach(values, i, x)
		if (v != NULL && str_eq(x, v))
			return true;
	return false;
}

/* One NodeSelectorRequirement against a value (label or field); NULL means
 * the label is absent. Gt/Lt compare integers. */
static bool requirement_matches(json_t *req, const char *v)
{
	const char *op = json_string_value(json_object_get(req, "operator"));
	json_t *values = json_object_get(req, "values");

	if (op == NULL)
		return false;
	if (strcmp(op, "In") == 0)
		return in_values(values, v);
	if (strcmp(op, "NotIn") == 0)
		return !in_values(values, v);
	if (strcmp(op, "Exists") == 0)
		return v != NULL;
	if (strcmp(op, "DoesNotExist") == 0)
		return v == NULL;
	if ((strcmp(op, "Gt") == 0 || strcmp(op, "Lt") == 0) && v != NULL &&
	    json_array_size(values) == 1) {
		long long a = strtoll(v, NULL, 10);
		const char *w = json_string_value(json_array_get(values, 0));
		long long b = strtoll(w ? w : "0", NULL, 10);

		return op[0] == 'G' ? a > b : a < b;
	}
	return false;
}

static bool term_matches(json_t *term, json_t *node)
{
	json_t *labels = json_object_get(json_object_get(node, "metadata"), "labels");
	const char *name = json_string_value(json_object_get(json_object_get(node, "metadata"), "name"));
	json_t *r;
	size_t i;
	bool any = false;

	json_array_foreach(json_object_get(term, "matchExpressions"), i, r) {
		const char *key = json_string_value(json_object_get(r, "key"));

		any = true;
		if (!requirement_matches(r, json_string_value(json_object_get(labels, key ? key : ""))))
			return false;
	}
	json_array_foreach(json_object_get(term, "matchFields"), i, r) {
		any = true;
		if (!str_eq(json_object_get(r, "key"), "metadata.name") ||
		    !requirement_matches(r, name))
			return false;
	}
	/* An empty term matches nothing, as in Kubernetes. */
	return any;
}

bool podutil_node_should_run(json_t *template, json_t *node)
{
	json_t *spec = json_object_get(template, "spec");
	json_t *labels = json_object_get(json_object_get(node, "metadata"), "labels");
	json_t *ns = json_object_get(spec, "nodeSelector");
	json_t *terms, *term, *tols;
	const char *k;
	json_t *v;
	size_t i;
	bool ok;

	json_object_foreach(ns, k, v)
		if (!json_is_string(v) || !str_eq(json_object_get(labels, k), json_string_value(v)))
			return false;
	terms = json_object_get(json_object_get(json_object_get(json_object_get(spec, "affinity"),
		"nodeAffinity"), "requiredDuringSchedulingIgnoredDuringExecution"),
		"nodeSelectorTerms");
	if (json_array_size(terms) > 0) {
		ok = false;
		json_array_foreach(terms, i, term)
			if (term_matches(term, node)) {
				ok = true;
				break;
			}
		if (!ok)
			return false;
	}
	tols = json_is_array(json_object_get(spec, "tolerations"))
		? json_deep_copy(json_object_get(spec, "tolerations")) : json_array();
	{
		json_t *tmp = json_pack("{s:o}", "tolerations", tols);

		podutil_add_daemon_tolerations(tmp);
		ok = podutil_taints_tolerated(json_object_get(tmp, "tolerations"),
					      json_object_get(json_object_get(node, "spec"), "taints"));
		json_decref(tmp);
	}
	return ok;
}

int podutil_target_port(json_t *svc_port, json_t *pod)
{
	json_t *tp = json_object_get(svc_port, "targetPort");
	const char *proto = json_string_value(json_object_get(svc_port, "protocol"));
	json_t *c, *p;
	size_t i, j;

	if (json_is_integer(tp))
		return (int)json_integer_value(tp);
	if (tp == NULL || json_is_null(tp) || (json_is_string(tp) && json_string_length(tp) == 0))
		return (int)json_integer_value(json_object_get(svc_port, "port"));
	if (!json_is_string(tp))
		return -1;
	if (proto == NULL)
		proto = "TCP";
	json_array_foreach(json_object_get(json_object_get(pod, "spec"), "containers"), i, c)
		json_array_foreach(json_object_get(c, "ports"), j, p) {
			const char *pp = json_string_value(json_object_get(p, "protocol"));

			if (str_eq(json_object_get(p, "name"), json_string_value(tp)) &&
			    strcmp(pp ? pp : "TCP", proto) == 0)
				return (int)json_integer_value(json_object_get(p, "containerPort"));
		}
	return -1;
}

/* The graph indexes objects by uid (a JSON object used as a hash map from
 * uid to the borrowed object) and dependents by owner uid (uid to an array
 * of the dependents' uids). */
struct gc_graph {
	json_t *by_uid;        /* uid -> integer (pointer to the borrowed object) */
	json_t *deps;          /* owner uid -> [dependent uid, ...] */
};

struct gc_graph *gc_graph_new(void)
{
	struct gc_graph *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->by_uid = json_object();
	g->deps = json_object();
	if (g->by_uid == NULL || g->deps == NULL) {
		gc_graph_free(g);
		return NULL;
	}
	return g;
}

void gc_graph_free(struct gc_graph *g)
{
	if (g == NULL)
		return;
	json_decref(g->by_uid);
	json_decref(g->deps);
	free(g);
}

static const char *uid_of(json_t *obj)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid"));
}

int gc_graph_add(struct gc_graph *g, json_t *obj)
{
	const char *uid = uid_of(obj);
	json_t *r;
	size_t i;

	if (uid == NULL)
		return 0;
	if (json_object_set_new(g->by_uid, uid, json_integer((json_int_t)(intptr_t)obj)))
		return -1;
	json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "ownerReferences"), i, r) {
		const char *owner = json_string_value(json_object_get(r, "uid"));
		json_t *list;

		if (owner == NULL)
			continue;
		list = json_object_get(g->deps, owner);
		if (list == NULL) {
			list = json_array();
			if (json_object_set_new(g->deps, owner, list))
				return -1;
		}
		if (json_array_append_new(list, json_string(uid)))
			return -1;
	}
	return 0;
}

json_t *gc_graph_get(struct gc_graph *g, const char *uid)
{
	json_t *v = json_object_get(g->by_uid, uid);

	return v ? (json_t *)(intptr_t)json_integer_value(v) : NULL;
}

json_t *gc_graph_dependents(struct gc_graph *g, const char *uid)
{
	json_t *out = json_array(), *u;
	size_t i;

	json_array_foreach(json_object_get(g->deps, uid), i, u) {
		json_t *o = gc_graph_get(g, json_string_value(u));

		if (o != NULL)
			json_array_append(out, o);
	}
	return out;
}

json_t *gc_graph_all_dependents(struct gc_graph *g, const char *uid)
{
	json_t *out = json_array(), *seen = json_object(), *todo = json_array(), *u;
	size_t i;

	json_object_set_new(seen, uid, json_true());
	json_array_append_new(todo, json_string(uid));
	/* Breadth first; `seen` stops a cycle from walking forever. */
	for (size_t head = 0; head < json_array_size(todo); head++) {
		const char *cur = json_string_value(json_array_get(todo, head));

		json_array_foreach(json_object_get(g->deps, cur), i, u) {
			const char *d = json_string_value(u);
			json_t *o = gc_graph_get(g, d);

			if (o == NULL || json_object_get(seen, d) != NULL)
				continue;
			json_object_set_new(seen, d, json_true());
			json_array_append(todo, u);
			json_array_append(out, o);
		}
	}
	json_decref(seen);
	json_decref(todo);
	return out;
}

size_t gc_graph_blocking(struct gc_graph *g, const char *uid)
{
	json_t *deps = gc_graph_dependents(g, uid), *d, *r;
	size_t i, j, n = 0;

	json_array_foreach(deps, i, d)
		json_array_foreach(json_object_get(json_object_get(d, "metadata"), "ownerReferences"),
				   j, r)
			if (str_eq(json_object_get(r, "uid"), uid) &&
			    json_is_true(json_object_get(r, "blockOwnerDeletion")))
				n++;
	json_decref(deps);
	return n;
}

bool gc_graph_owners_gone(struct gc_graph *g, json_t *obj)
{
	json_t *refs = json_object_get(json_object_get(obj, "metadata"), "ownerReferences"), *r;
	size_t i;

	if (json_array_size(refs) == 0)
		return false;
	json_array_foreach(refs, i, r) {
		const char *u = json_string_value(json_object_get(r, "uid"));

		if (u != NULL && gc_graph_get(g, u) != NULL)
			return false;
	}
	return true;
}
