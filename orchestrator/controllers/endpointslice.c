/* endpointslice.c — the EndpointSlice controller: for every Service with a
 * selector (ExternalName excepted), discovery.k8s.io/v1 EndpointSlices
 * listing the selected pods, labelled kubernetes.io/service-name and
 * endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
 * and owned by the Service (so the garbage collector removes them with it).
 *
 * Each endpoint carries its address, conditions (ready, serving,
 * terminating, as Kubernetes sets them: ready is serving and not
 * terminating, or anything when the Service publishes not-ready
 * addresses), nodeName and targetRef. Pods whose named target ports resolve
 * alike share slices; each slice holds at most 100 endpoints.
 *
 * Happy path: a Service, pod or slice event queues the Service → sync
 * computes the wanted slices (endpoints sorted by address, cut in chunks of
 * 100 per port set) and pairs them with the existing ones of the same port
 * set in name order: equal ones are left alone (no write, so two
 * controllers or a resync never fight), differing ones updated, missing
 * ones created (generateName "<service>-"), surplus ones deleted.
 *
 * Failure modes: a failed write re-queues with back-off (a 409 means the
 * cached slice was stale); creations are expected (ctl_expect) so a sync
 * that runs before the informer shows them does not create twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "orchestrator/api/selector.h"
#include "orchestrator/controllers/controllers.h"
#include "orchestrator/controllers/ctlbase.h"
#include "orchestrator/controllers/podutil.h"

#define ES_MAX_ENDPOINTS 100
#define ES_MANAGED_BY "endpointslice.kubernetes.io/managed-by"
#define ES_CONTROLLER "endpointslice-controller.k8s.io"
#define ES_SERVICE_NAME "kubernetes.io/service-name"

struct es_ctl {
	struct ctl_base base;
	struct informer *svc_inf, *pod_inf, *es_inf;
};

struct es_scan {
	const char *ns;
	const char *svc_name;
	struct label_selector *sel;
	json_t *svc;
	bool publish_not_ready;
	json_t *groups;       /* ports key (JSON text) -> {"ports": [...], "endpoints": [...]} */
	json_t *existing;     /* ports key -> [slice, ...] of ours for this Service */
};

static const char *str_of(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int cmp_endpoint(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	const char *p = json_string_value(json_array_get(json_object_get(x, "addresses"), 0));
	const char *q = json_string_value(json_array_get(json_object_get(y, "addresses"), 0));
	return strcmp(p ? p : "", q ? q : "");
}

static int cmp_slice_name(const void *a, const void *b)
{
	const char *p = ctl_name(*(json_t *const *)a), *q = ctl_name(*(json_t *const *)b);
	return strcmp(p ? p : "", q ? q : "");
}

static void sort_array(json_t *arr, int (*cmp)(const void *, const void *))
{
	size_t n = json_array_size(arr), i;
	json_t **v;

	if (n < 2)
		return;
	v = malloc(n * sizeof(*v));
	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(arr, i));
	qsort(v, n, sizeof(*v), cmp);
	json_array_clear(arr);
	for (i = 0; i < n; i++)
		json_array_append_new(arr, v[i]);
	free(v);
}

/* The slice's ports for this pod: the Service's ports with named target
 * ports resolved; NULL when one cannot be (the pod is left out). */
static json_t *pod_ports(json_t *svc, json_t *pod)
{
	json_t *ports = json_array(), *sp;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(svc, "spec"), "ports"), i, sp) {
		int port = podutil_target_port(sp, pod);
		json_t *p;

		if (port <= 0) {
			json_decref(ports);
			return NULL;
		}
		p = json_pack("{s:s, s:i, s:s}", "name", str_of(sp, "name") ? str_of(sp, "name") : "",
			      "port", port, "protocol",
			      str_of(sp, "protocol") ? str_of(sp, "protocol") : "TCP");
		if (str_of(sp, "appProtocol") != NULL)
			json_object_set(p, "appProtocol", json_object_get(sp, "appProtocol"));
		json_array_append_new(ports, p);
	}
	return ports;
}

static void add_pod(void *data, json_t *pod)
{
	struct es_scan *sc = data;
	json_t *meta = json_object_get(pod, "metadata");
	json_t *status = json_object_get(pod, "status");
	const char *ip = str_of(status, "podIP"), *phase = str_of(status, "phase");
	const char *node = str_of(json_object_get(pod, "spec"), "nodeName");
	json_t *ports, *ep, *group;
	bool serving, terminating, ready;
	char *pkey;

	if (ctl_ns(pod) == NULL || strcmp(ctl_ns(pod), sc->ns) != 0 || ip == NULL || ip[0] == '\0')
		return;
	if (!label_selector_matches(sc->sel, json_object_get(meta, "labels")))
		return;
	/* Finished pods serve nothing, even while terminating. */
	if (phase != NULL && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))
		return;
	ports = pod_ports(sc->svc, pod);
	if (ports == NULL)
		return;
	serving = podutil_ready(pod);
	terminating = ctl_deleting(pod);
	ready = sc->publish_not_ready || (serving && !terminating);
	ep = json_pack("{s:[s], s:{s:b, s:b, s:b}, s:{s:s, s:O, s:O, s:O}}", "addresses", ip,
		       "conditions", "ready", ready, "serving", serving, "terminating",
		       terminating, "targetRef", "kind", "Pod", "namespace",
		       json_object_get(meta, "namespace"), "name", json_object_get(meta, "name"),
		       "uid", json_object_get(meta, "uid"));
	if (node != NULL)
		json_object_set_new(ep, "nodeName", json_string(node));
	pkey = json_dumps(ports, JSON_SORT_KEYS | JSON_COMPACT);
	group = json_object_get(sc->groups, pkey ? pkey : "");
	if (group == NULL) {
		group = json_pack("{s:O, s:[]}", "ports", ports, "endpoints");
		json_object_set_new(sc->groups, pkey ? pkey : "", group);
	}
	json_array_append_new(json_object_get(group, "endpoints"), ep);
	json_decref(ports);
	free(pkey);
}

/* Whether a slice is ours and belongs to the scanned Service. */
static bool ours(struct es_scan *sc, json_t *slice)
{
	json_t *labels = json_object_get(json_object_get(slice, "metadata"), "labels");
	const char *mb = str_of(labels, ES_MANAGED_BY), *sn = str_of(labels, ES_SERVICE_NAME);

	return ctl_ns(slice) != NULL && strcmp(ctl_ns(slice), sc->ns) == 0 && mb != NULL &&
	       strcmp(mb, ES_CONTROLLER) == 0 && sn != NULL && strcmp(sn, sc->svc_name) == 0;
}

static void add_existing(void *data, json_t *slice)
{
	struct es_scan *sc = data;
	json_t *list, *ports;
	char *pkey;

	if (!ours(sc, slice))
		return;
	ports = json_object_get(slice, "ports");
	pkey = ports != NULL ? json_dumps(ports, JSON_SORT_KEYS | JSON_COMPACT) : strdup("[]");
	list = json_object_get(sc->existing, pkey ? pkey : "");
	if (list == NULL) {
		list = json_array();
		json_object_set_new(sc->existing, pkey ? pkey : "", list);
	}
	json_array_append(list, slice);
	free(pkey);
}

static json_t *wanted_labels(json_t *svc, const char *name)
{
	json_t *labels = json_deep_copy(json_object_get(json_object_get(svc, "metadata"), "labels"));

	if (!json_is_object(labels)) {
		json_decref(labels);
		labels = json_object();
	}
	json_object_set_new(labels, ES_SERVICE_NAME, json_string(name));
	json_object_set_new(labels, ES_MANAGED_BY, json_string(ES_CONTROLLER));
	return labels;
}

/* Whether a and b hold the same array (absent counts as empty). */
static bool same_list(json_t *a, json_t *b)
{
	if (json_array_size(a) == 0 && json_array_size(b) == 0)
		return true;
	return json_equal(a, b);
}

/* Whether an existing slice already says what want says. */
static bool same_slice(json_t *have, json_t *want)
{
	json_t *hm = json_object_get(have, "metadata"), *wm = json_object_get(want, "metadata");

	return same_list(json_object_get(have, "endpoints"), json_object_get(want, "endpoints")) &&
	       same_list(json_object_get(have, "ports"), json_object_get(want, "ports")) &&
	       json_equal(json_object_get(have, "addressType"), json_object_get(want, "addressType")) &&
	       json_equal(json_object_get(hm, "labels"), json_object_get(wm, "labels")) &&
	       json_equal(json_object_get(hm, "ownerReferences"),
			  json_object_get(wm, "ownerReferences"));
}

static void es_create_done(struct ctl_base *b, const char *key, int status, json_t *body,
			   void *arg)
{
	(void)body;
	(void)arg;
	if (status < 200 || status >= 300)
		ctl_observed_add(b, key);
}

static void delete_ours(struct es_ctl *c, struct es_scan *sc, const char *key)
{
	const char *k;
	json_t *list, *s;
	size_t i;

	json_object_foreach(sc->existing, k, list)
		json_array_foreach(list, i, s)
			ctl_delete(&c->base, &KRES_ENDPOINTSLICES, sc->ns, ctl_name(s), ctl_uid(s),
				   NULL, key, NULL, NULL);
}

/* Pairs the wanted slices of one port set with the existing ones. */
static void reconcile_group(struct es_ctl *c, struct es_scan *sc, const char *key,
			    json_t *ports, json_t *endpoints, json_t *have, json_t *owner,
			    json_t *labels)
{
	size_t n = json_array_size(endpoints), chunks, i;
	size_t nhave = json_array_size(have);

	chunks = n == 0 ? 1 : (n + ES_MAX_ENDPOINTS - 1) / ES_MAX_ENDPOINTS;
	sort_array(have, cmp_slice_name);
	for (i = 0; i < chunks; i++) {
		json_t *eps = json_array(), *want, *cur;
		for (size_t j = i * ES_MAX_ENDPOINTS; j < n && j < (i + 1) * ES_MAX_ENDPOINTS; j++)
			json_array_append(eps, json_array_get(endpoints, j));
		want = json_pack("{s:s, s:s, s:{s:O, s:[O]}, s:s, s:o, s:O}", "apiVersion",
				 "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata",
				 "labels", labels, "ownerReferences", owner, "addressType", "IPv4",
				 "endpoints", eps, "ports", ports);
		cur = i < nhave ? json_array_get(have, i) : NULL;
		if (cur == NULL) {
			char gen[300];
			snprintf(gen, sizeof gen, "%s-", sc->svc_name);
			json_object_set_new(json_object_get(want, "metadata"), "generateName",
					    json_string(gen));
			ctl_expect(&c->base, key, 1, 0);
			if (ctl_create(&c->base, &KRES_ENDPOINTSLICES, sc->ns, want, key,
				       es_create_done, NULL) != 0)
				ctl_observed_add(&c->base, key);
		} else if (!same_slice(cur, want)) {
			json_t *m = json_object_get(want, "metadata");
			json_t *cm = json_object_get(cur, "metadata");
			json_object_set(m, "name", json_object_get(cm, "name"));
			json_object_set(m, "namespace", json_object_get(cm, "namespace"));
			json_object_set(m, "resourceVersion", json_object_get(cm, "resourceVersion"));
			ctl_update(&c->base, &KRES_ENDPOINTSLICES, sc->ns, ctl_name(cur), want, key,
				   NULL, NULL);
		}
		json_decref(want);
	}
	for (i = chunks; i < nhave; i++) {
		json_t *s = json_array_get(have, i);
		ctl_delete(&c->base, &KRES_ENDPOINTSLICES, sc->ns, ctl_name(s), ctl_uid(s), NULL,
			   key, NULL, NULL);
	}
}

static int es_sync(void *data, const char *key)
{
	struct es_ctl *c = data;
	struct ctl_base *b = &c->base;
	struct es_scan sc = {0};
	json_t *svc, *sel, *owner = NULL, *labels = NULL, *group;
	char errmsg[256], ns[256];
	const char *name = ctl_split_key(key, ns, sizeof(ns)), *k;

	if (!informer_synced(c->svc_inf) || !informer_synced(c->pod_inf) ||
	    !informer_synced(c->es_inf)) {
		workqueue_add_after(b->q, key, 200);
		return 0;
	}
	if (!ctl_satisfied(b, key)) {
		/* Our creations are not in the cache yet; their events re-queue. */
		workqueue_add_after(b->q, key, 1000);
		return 0;
	}
	svc = json_incref(informer_get(c->svc_inf, key));
	sc.ns = ns;
	sc.svc_name = name;
	sc.svc = svc;
	sc.groups = json_object();
	sc.existing = json_object();
	informer_foreach(c->es_inf, add_existing, &sc);
	sel = json_object_get(json_object_get(svc, "spec"), "selector");
	if (svc == NULL || ctl_deleting(svc) || json_object_size(sel) == 0 ||
	    strcmp(str_of(json_object_get(svc, "spec"), "type") ?: "", "ExternalName") == 0) {
		/* No Service, or one this controller gives no endpoints: its
		 * slices (ours only) go. */
		delete_ours(c, &sc, key);
		goto out;
	}
	{
		json_t *ls = json_pack("{s:O}", "matchLabels", sel);
		int rv = label_selector_from_json(ls, &sc.sel, errmsg);
		json_decref(ls);
		if (rv != 0)
			goto out;
	}
	sc.publish_not_ready =
		json_is_true(json_object_get(json_object_get(svc, "spec"), "publishNotReadyAddresses"));
	informer_foreach(c->pod_inf, add_pod, &sc);
	owner = json_pack("{s:s, s:s, s:s, s:O, s:b, s:b}", "apiVersion", "v1", "kind", "Service",
			  "name", name, "uid", json_object_get(json_object_get(svc, "metadata"), "uid"),
			  "controller", 1, "blockOwnerDeletion", 1);
	labels = wanted_labels(svc, name);
	if (json_object_size(sc.groups) == 0)
		/* No endpoints: one placeholder slice without ports, as
		 * Kubernetes keeps, so consumers see "none" rather than nothing. */
		json_object_set_new(sc.groups, "[]", json_pack("{s:[], s:[]}", "ports", "endpoints"));
	json_object_foreach(sc.groups, k, group) {
		json_t *have = json_object_get(sc.existing, k);
		json_t *mine = have != NULL ? json_incref(have) : json_array();
		sort_array(json_object_get(group, "endpoints"), cmp_endpoint);
		reconcile_group(c, &sc, key, json_object_get(group, "ports"),
				json_object_get(group, "endpoints"), mine, owner, labels);
		json_decref(mine);
		json_object_del(sc.existing, k);
	}
	/* Port sets nobody has any more. */
	delete_ours(c, &sc, key);
out:
	json_decref(owner);
	json_decref(labels);
	json_decref(sc.groups);
	json_decref(sc.existing);
	label_selector_free(sc.sel);
	json_decref(svc);
	return 0;
}

static void pod_add(void *data, json_t *pod)
{
	struct es_ctl *c = data;

	ctl_enqueue_services_selecting(&c->base, c->svc_inf, pod);
}

static void pod_update(void *data, json_t *old, json_t *pod)
{
	/* Labels may have changed: the Services of the old ones look too. */
	pod_add(data, old);
	pod_add(data, pod);
}

static void svc_add(void *data, json_t *svc)
{
	struct es_ctl *c = data;

	if (!c->base.stopped)
		ctl_enqueue_obj(&c->base, svc);
}

static void svc_update(void *data, json_t *old, json_t *svc)
{
	(void)old;
	svc_add(data, svc);
}

/* A slice event queues its Service (ours only: other managers' slices are
 * theirs). */
static void slice_event(struct es_ctl *c, json_t *slice, bool added)
{
	json_t *labels = json_object_get(json_object_get(slice, "metadata"), "labels");
	const char *mb = str_of(labels, ES_MANAGED_BY), *sn = str_of(labels, ES_SERVICE_NAME);

	if (c->base.stopped || mb == NULL || strcmp(mb, ES_CONTROLLER) != 0 || sn == NULL ||
	    ctl_ns(slice) == NULL)
		return;
	if (added) {
		char key[600];
		snprintf(key, sizeof key, "%s/%s", ctl_ns(slice), sn);
		ctl_observed_add(&c->base, key);
	}
	ctl_enqueue(&c->base, ctl_ns(slice), sn);
}

static void es_add(void *data, json_t *slice)
{
	slice_event(data, slice, true);
}

static void es_update(void *data, json_t *old, json_t *slice)
{
	(void)old;
	slice_event(data, slice, false);
}

static void es_delete(void *data, json_t *slice)
{
	slice_event(data, slice, false);
}

static void es_free(struct ctl_base *b)
{
	free(b);
}

int endpointslice_controller_start(struct controller_ctx *ctx, void **state)
{
	struct es_ctl *c = calloc(1, sizeof(*c));
	struct informer_handlers ph = {pod_add, pod_update, pod_add, NULL};
	struct informer_handlers sh = {svc_add, svc_update, svc_add, NULL};
	struct informer_handlers eh = {es_add, es_update, es_delete, NULL};

	if (c == NULL)
		return -1;
	if (ctl_base_init(&c->base, ctx, "endpointslice", es_sync, es_free) != 0) {
		free(c);
		return -1;
	}
	c->svc_inf = ctx->shared(ctx, &KRES_SERVICES);
	c->pod_inf = ctx->shared(ctx, &KRES_PODS);
	c->es_inf = ctx->shared(ctx, &KRES_ENDPOINTSLICES);
	if (c->svc_inf == NULL || c->pod_inf == NULL || c->es_inf == NULL) {
		ctl_base_stop(&c->base);
		return -1;
	}
	ph.data = sh.data = eh.data = c;
	informer_add_handlers(c->pod_inf, &ph);
	informer_add_handlers(c->svc_inf, &sh);
	informer_add_handlers(c->es_inf, &eh);
	*state = c;
	return 0;
}

void endpointslice_controller_stop(void *state)
{
	struct es_ctl *c = state;

	informer_remove_handlers(c->pod_inf, c);
	informer_remove_handlers(c->svc_inf, c);
	informer_remove_handlers(c->es_inf, c);
	ctl_base_stop(&c->base);
}
