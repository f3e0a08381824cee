/* endpoints.c — the Endpoints controller: for every Service with a
 * selector, an Endpoints object of the same name listing the IPs of the
 * selected pods, ready ones under addresses and the others under
 * notReadyAddresses (all under addresses, terminating ones included, when
 * the Service sets publishNotReadyAddresses), with the Service's ports
 * resolved against each pod.
 *
 * Happy path: a Service or pod event queues the Service → sync builds the
 * subsets from the pod cache and creates, updates or leaves the Endpoints
 * object. Failure modes: a failed write re-queues with back-off (a 409
 * means the cached Endpoints was stale); a named targetPort a pod lacks
 * leaves that pod out, as Kubernetes does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "orchestrator/api/selector.h"
#include "orchestrator/controllers/controllers.h"
#include "orchestrator/controllers/ctlbase.h"
#include "orchestrator/controllers/podutil.h"

struct ep_ctl {
	struct ctl_base base;
	struct informer *svc_inf, *pod_inf, *ep_inf;
};

struct ep_scan {
	const char *ns;
	struct label_selector *sel;
	json_t *svc;
	json_t *subsets;          /* ports key (JSON text) -> subset */
	bool publish_not_ready;   /* spec.publishNotReadyAddresses */
};

static int cmp_ip(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	const char *p = json_string_value(json_object_get(x, "ip"));
	const char *q = json_string_value(json_object_get(y, "ip"));

	return strcmp(p ? p : "", q ? q : "");
}

static void sort_addresses(json_t *arr)
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
	qsort(v, n, sizeof(*v), cmp_ip);
	json_array_clear(arr);
	for (i = 0; i < n; i++)
		json_array_append_new(arr, v[i]);
	free(v);
}

static void add_pod(void *data, json_t *pod)
{
	struct ep_scan *sc = data;
	json_t *meta = json_object_get(pod, "metadata");
	json_t *spec = json_object_get(pod, "spec");
	const char *ns = ctl_ns(pod);
	const char *ip = json_string_value(json_object_get(json_object_get(pod, "status"), "podIP"));
	const char *phase = json_string_value(json_object_get(json_object_get(pod, "status"), "phase"));
	json_t *ports, *sp, *addr, *subset;
	char *pkey;
	size_t i;

	if (ns == NULL || strcmp(ns, sc->ns) != 0 || ip == NULL || ip[0] == '\0')
		return;
	if (!label_selector_matches(sc->sel, json_object_get(meta, "labels")))
		return;
	/* Finished pods serve nothing; terminating ones are being drained. */
	if (phase != NULL && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))
		return;
	if (ctl_deleting(pod) && !sc->publish_not_ready)
		return;
	ports = json_array();
	json_array_foreach(json_object_get(json_object_get(sc->svc, "spec"), "ports"), i, sp) {
		int port = podutil_target_port(sp, pod);
		json_t *p;

		if (port <= 0) {
			json_decref(ports);
			return;
		}
		p = json_pack("{s:i, s:s}", "port", port, "protocol",
			      json_string_value(json_object_get(sp, "protocol"))
				      ? json_string_value(json_object_get(sp, "protocol")) : "TCP");
		if (json_is_string(json_object_get(sp, "name")) &&
		    json_string_length(json_object_get(sp, "name")) > 0)
			json_object_set(p, "name", json_object_get(sp, "name"));
		json_array_append_new(ports, p);
	}
	addr = json_pack("{s:s, s:{s:s, s:O, s:O, s:O}}", "ip", ip, "targetRef", "kind", "Pod",
			 "namespace", json_object_get(meta, "namespace"), "name",
			 json_object_get(meta, "name"), "uid", json_object_get(meta, "uid"));
	if (json_is_string(json_object_get(spec, "nodeName")))
		json_object_set(addr, "nodeName", json_object_get(spec, "nodeName"));
	pkey = json_dumps(ports, JSON_SORT_KEYS | JSON_COMPACT);
	subset = json_object_get(sc->subsets, pkey ? pkey : "");
	if (subset == NULL) {
		subset = json_pack("{s:o}", "ports", ports);
		json_object_set_new(sc->subsets, pkey ? pkey : "", subset);
	} else {
		json_decref(ports);
	}
	{
		/* publishNotReadyAddresses: every address counts as ready (for
		 * peers that must find each other before they are ready). */
		const char *which = sc->publish_not_ready || podutil_ready(pod) ? "addresses"
										  : "notReadyAddresses";
		json_t *list = json_object_get(subset, which);

		if (list == NULL) {
			list = json_array();
			json_object_set_new(subset, which, list);
		}
		json_array_append_new(list, addr);
	}
	free(pkey);
}

static int ep_sync(void *data, const char *key)
{
	struct ep_ctl *c = data;
	struct ctl_base *b = &c->base;
	json_t *svc, *ep, *subsets = NULL, *want = NULL, *s, *labels;
	struct ep_scan sc = { 0 };
	char errmsg[256], ns[256];
	const char *name = ctl_split_key(key, ns, sizeof(ns)), *k;

	if (!informer_synced(c->svc_inf) || !informer_synced(c->pod_inf) ||
	    !informer_synced(c->ep_inf)) {
		workqueue_add_after(b->q, key, 200);
		return 0;
	}
	svc = informer_get(c->svc_inf, key);
	ep = informer_get(c->ep_inf, key);
	if (svc == NULL) {
		/* The service is gone: so are its endpoints. */
		if (ep != NULL)
			ctl_delete(b, &KRES_ENDPOINTS, ns, name, ctl_uid(ep), NULL, key, NULL, NULL);
		return 0;
	}
	json_incref(svc);
	json_incref(ep);
	if (json_object_size(json_object_get(json_object_get(svc, "spec"), "selector")) == 0)
		goto out;   /* endpoints of a selector-less service are the user's */
	{
		json_t *ls = json_pack("{s:O}", "matchLabels",
				       json_object_get(json_object_get(svc, "spec"), "selector"));

		if (label_selector_from_json(ls, &sc.sel, errmsg) != 0) {
			json_decref(ls);
			goto out;
		}
		json_decref(ls);
	}
	sc.ns = ns;
	sc.svc = svc;
	sc.publish_not_ready = json_is_true(
		json_object_get(json_object_get(svc, "spec"), "publishNotReadyAddresses"));
	sc.subsets = json_object();
	informer_foreach(c->pod_inf, add_pod, &sc);
	subsets = json_array();
	json_object_foreach(sc.subsets, k, s) {
		sort_addresses(json_object_get(s, "addresses"));
		sort_addresses(json_object_get(s, "notReadyAddresses"));
		json_array_append(subsets, s);
	}
	labels = json_object_get(json_object_get(svc, "metadata"), "labels");
	if (ep != NULL && (json_equal(json_object_get(ep, "subsets"), subsets) ||
			   (json_object_get(ep, "subsets") == NULL && json_array_size(subsets) == 0)) &&
	    json_equal(json_object_get(json_object_get(ep, "metadata"), "labels"), labels))
		goto out;
	want = json_pack("{s:s, s:s, s:{s:s, s:s}, s:O}", "apiVersion", "v1", "kind", "Endpoints",
			 "metadata", "name", name, "namespace", ns, "subsets", subsets);
	if (labels != NULL)
		json_object_set(json_object_get(want, "metadata"), "labels", labels);
	if (ep == NULL) {
		ctl_create(b, &KRES_ENDPOINTS, ns, want, key, NULL, NULL);
	} else {
		json_object_set(json_object_get(want, "metadata"), "resourceVersion",
				json_object_get(json_object_get(ep, "metadata"), "resourceVersion"));
		ctl_update(b, &KRES_ENDPOINTS, ns, name, want, key, NULL, NULL);
	}
out:
	json_decref(want);
	json_decref(subsets);
	json_decref(sc.subsets);
	label_selector_free(sc.sel);
	json_decref(ep);
	json_decref(svc);
	return 0;
}

static void pod_add(void *data, json_t *pod)
{
	struct ep_ctl *c = data;

	ctl_enqueue_services_selecting(&c->base, c->svc_inf, pod);
}

static void pod_update(void *data, json_t *old, json_t *pod)
{
	/* Labels may have changed: services of the old ones look too. */
	pod_add(data, old);
	pod_add(data, pod);
}

static void svc_add(void *data, json_t *svc)
{
	struct ep_ctl *c = data;

	if (!c->base.stopped)
		ctl_enqueue_obj(&c->base, svc);
}

static void svc_update(void *data, json_t *old, json_t *svc)
{
	(void)old;
	svc_add(data, svc);
}

/* Someone changed or removed an Endpoints object we manage: put it back. */
static void ep_update(void *data, json_t *old, json_t *ep)
{
	(void)old;
	svc_add(data, ep);
}

static void ep_free(struct ctl_base *b)
{
	free(b);
}

int endpoints_controller_start(struct controller_ctx *ctx, void **state)
{
	struct ep_ctl *c = calloc(1, sizeof(*c));
	struct informer_handlers ph = { pod_add, pod_update, pod_add, NULL };
	struct informer_handlers sh = { svc_add, svc_update, svc_add, NULL };
	struct informer_handlers eh = { NULL, ep_update, svc_add, NULL };

	if (c == NULL)
		return -1;
	if (ctl_base_init(&c->base, ctx, "endpoints", ep_sync, ep_free) != 0) {
		free(c);
		return -1;
	}
	c->svc_inf = ctx->shared(ctx, &KRES_SERVICES);
	c->pod_inf = ctx->shared(ctx, &KRES_PODS);
	c->ep_inf = ctx->shared(ctx, &KRES_ENDPOINTS);
	if (c->svc_inf == NULL || c->pod_inf == NULL || c->ep_inf == NULL) {
		ctl_base_stop(&c->base);
		return -1;
	}
	ph.data = sh.data = eh.data = c;
	informer_add_handlers(c->pod_inf, &ph);
	informer_add_handlers(c->svc_inf, &sh);
	informer_add_handlers(c->ep_inf, &eh);
	*state = c;
	return 0;
}

void endpoints_controller_stop(void *state)
{
	struct ep_ctl *c = state;

	informer_remove_handlers(c->pod_inf, c);
	informer_remove_handlers(c->svc_inf, c);
	informer_remove_handlers(c->ep_inf, c);
	ctl_base_stop(&c->base);
}
