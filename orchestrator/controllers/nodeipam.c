/* nodeipam.c — the node IPAM controller: gives every Node a pod range
 * (spec.podCIDR and spec.podCIDRs) carved from the cluster range
 * (--cluster-cidr, subnets of --node-cidr-mask-size), never the same range
 * to two nodes, the way kube-controller-manager's range allocator does.
 *
 * Happy path: the Node informer syncs → every range Nodes already carry is
 * marked used (a new leader rebuilds the set from the Nodes, the only
 * record) → each Node without a range is queued → sync takes the next free
 * subnet and merge-patches it into the Node's spec. A deleted Node's range
 * goes back to the set.
 *
 * Failure modes: a patch that fails gives the range back and the key is
 * retried with back-off (a 404 means the node is gone); an exhausted set
 * records a CIDRNotAvailable Event on the Node (once per node) and retries
 * every 10 s, so deleting a node frees a range for a waiting one. A range
 * outside the cluster range (set by hand) is left alone and not tracked.
 * Hollow nodes (label node.capstan.io/runtime=simulated) get none: they run
 * no pod network, and a range each would exhaust the cluster range long
 * before a scale test's node count (256 /24s by default), with an Event for
 * every node after. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/cidr.h"
#include "lib/log.h"
#include "orchestrator/controllers/controllers.h"
#include "orchestrator/controllers/ctlbase.h"

#define NODEIPAM_RETRY_MS 10000

struct ipam_ctl {
	struct ctl_base base;
	struct informer *node_inf;
	struct cidr_set set;
	json_t *assigned;       /* node name -> the range we or the Node hold ("a.b.c.d/n") */
	json_t *reported;       /* node name -> true: CIDRNotAvailable already recorded */
	bool rebuilt;
};

static bool wants_range(json_t *node)
{
	const char *rt = json_string_value(json_object_get(
		json_object_get(json_object_get(node, "metadata"), "labels"),
		"node.capstan.io/runtime"));

	return rt == NULL || strcmp(rt, "simulated") != 0;
}

static const char *node_pod_cidr(json_t *node)
{
	return json_string_value(json_object_get(json_object_get(node, "spec"), "podCIDR"));
}

/* Records that name holds cidr_s (if it is one of our subnets). */
static void occupy(struct ipam_ctl *c, const char *name, const char *cidr_s)
{
	struct cidr r;

	if (cidr_parse(cidr_s, &r) != 0 || cidr_set_occupy(&c->set, &r) != 0)
		return;
	json_object_set_new(c->assigned, name, json_string(cidr_s));
}

static void release(struct ipam_ctl *c, const char *name)
{
	const char *held = json_string_value(json_object_get(c->assigned, name));
	struct cidr r;
	const char *k;
	json_t *v;

	if (held == NULL)
		return;
	/* Another node may hold the same range (set by hand): keep it used. */
	json_object_foreach(c->assigned, k, v)
		if (strcmp(k, name) != 0 && json_equal(v, json_object_get(c->assigned, name)))
			goto forget;
	if (cidr_parse(held, &r) == 0)
		cidr_set_release(&c->set, &r);
forget:
	json_object_del(c->assigned, name);
}

static void on_rebuild_node(void *data, json_t *node)
{
	struct ipam_ctl *c = data;
	const char *name = ctl_name(node), *pc = node_pod_cidr(node);

	if (name != NULL && pc != NULL)
		occupy(c, name, pc);
}

static void queue_unassigned(void *data, json_t *node)
{
	struct ipam_ctl *c = data;

	if (node_pod_cidr(node) == NULL && wants_range(node))
		ctl_enqueue_obj(&c->base, node);
}

static void record_exhausted(struct ipam_ctl *c, json_t *node)
{
	char name[300], now[32], range[32];
	const char *node_name = ctl_name(node);
	struct timespec ts;
	json_t *ev;

	if (json_object_get(c->reported, node_name) != NULL)
		return;
	json_object_set_new(c->reported, node_name, json_true());
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(name, sizeof name, "%.200s.%llx", node_name,
		 (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec);
	ctl_now_rfc3339(now, sizeof now);
	cidr_format(&c->set.range, range, sizeof range);
	log_warn("node ipam: no pod range left in %s for node %s", range, node_name);
	ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s?}, s:s, s:s, s:s,"
		       " s:{s:s}, s:s, s:s, s:i, s:s}",
		       "apiVersion", "v1", "kind", "Event",
		       "metadata", "name", name, "namespace", "default",
		       "involvedObject", "apiVersion", "v1", "kind", "Node", "name", node_name,
		       "uid", ctl_uid(node),
		       "reason", "CIDRNotAvailable",
		       "message", "Node status is now: CIDRNotAvailable",
		       "type", "Normal",
		       "source", "component", "cidrAllocator",
		       "firstTimestamp", now, "lastTimestamp", now, "count", 1,
		       "reportingComponent", "cidrAllocator");
	if (ev != NULL)
		ctl_create(&c->base, &KRES_EVENTS, "default", ev, NULL, NULL, NULL);
	json_decref(ev);
}

static void on_patched(struct ctl_base *b, const char *key, int status, json_t *body, void *arg)
{
	struct ipam_ctl *c = (struct ipam_ctl *)b;
	(void)body;
	(void)arg;
	if (status >= 200 && status < 300)
		return;
	/* Not written: the range is free again (the key is retried). */
	release(c, key);
}

static int ipam_sync(void *data, const char *key)
{
	struct ipam_ctl *c = data;
	struct ctl_base *b = &c->base;
	char range[32];
	struct cidr r;
	json_t *node, *patch;

	if (!informer_synced(c->node_inf)) {
		workqueue_add_after(b->q, key, 200);
		return 0;
	}
	if (!c->rebuilt) {
		/* Before the first range is handed out, every range in use is
		 * known, or two nodes could get the same one. */
		informer_foreach(c->node_inf, on_rebuild_node, c);
		c->rebuilt = true;
	}
	node = informer_get(c->node_inf, key);
	if (node == NULL || ctl_deleting(node) || !wants_range(node))
		return 0;
	if (node_pod_cidr(node) != NULL) {
		occupy(c, key, node_pod_cidr(node));
		return 0;
	}
	if (json_object_get(c->assigned, key) != NULL)
		return 0;   /* our patch is on its way; the informer has not seen it yet */
	if (cidr_set_alloc(&c->set, &r) != 0) {
		record_exhausted(c, node);
		workqueue_add_after(b->q, key, NODEIPAM_RETRY_MS);
		return 0;
	}
	json_object_del(c->reported, key);
	cidr_format(&r, range, sizeof range);
	json_object_set_new(c->assigned, key, json_string(range));
	log_info("node ipam: node %s gets pod range %s", key, range);
	patch = json_pack("{s:{s:s, s:[s]}}", "spec", "podCIDR", range, "podCIDRs", range);
	ctl_merge_patch(b, &KRES_NODES, NULL, key, NULL, patch, key, on_patched, NULL);
	json_decref(patch);
	return 0;
}

static void node_add(void *data, json_t *node)
{
	struct ipam_ctl *c = data;

	if (c->base.stopped)
		return;
	if (node_pod_cidr(node) != NULL && c->rebuilt)
		occupy(c, ctl_name(node), node_pod_cidr(node));
	else if (node_pod_cidr(node) == NULL && wants_range(node))
		ctl_enqueue_obj(&c->base, node);
}

static void node_update(void *data, json_t *old, json_t *node)
{
	(void)old;
	node_add(data, node);
}

static void node_delete(void *data, json_t *node)
{
	struct ipam_ctl *c = data;
	const char *name = ctl_name(node);

	if (c->base.stopped || name == NULL)
		return;
	release(c, name);
	json_object_del(c->reported, name);
	/* A node waiting for a range may get this one. */
	informer_foreach(c->node_inf, queue_unassigned, c);
}

static void ipam_free(struct ctl_base *b)
{
	struct ipam_ctl *c = (struct ipam_ctl *)b;

	cidr_set_free(&c->set);
	json_decref(c->assigned);
	json_decref(c->reported);
	free(c);
}

int nodeipam_controller_start(struct controller_ctx *ctx, void **state)
{
	const struct controller_options *o = ctx->opts;
	struct informer_handlers nh = { node_add, node_update, node_delete, NULL };
	struct ipam_ctl *c = calloc(1, sizeof(*c));
	struct cidr range;

	if (c == NULL)
		return -1;
	if (cidr_parse(o->cluster_cidr ? o->cluster_cidr : "10.244.0.0/16", &range) != 0 ||
	    cidr_set_init(&c->set, &range,
			  o->node_cidr_mask_size ? o->node_cidr_mask_size : 24) != 0) {
		log_error("node ipam: --cluster-cidr %s cannot be cut into /%u ranges",
			  o->cluster_cidr ? o->cluster_cidr : "10.244.0.0/16",
			  o->node_cidr_mask_size ? o->node_cidr_mask_size : 24);
		free(c);
		return -1;
	}
	c->assigned = json_object();
	c->reported = json_object();
	if (ctl_base_init(&c->base, ctx, "nodeipam", ipam_sync, ipam_free) != 0) {
		json_decref(c->assigned);
		json_decref(c->reported);
		cidr_set_free(&c->set);
		free(c);
		return -1;
	}
	c->node_inf = ctx->shared(ctx, &KRES_NODES);
	if (c->node_inf == NULL) {
		ctl_base_stop(&c->base);
		return -1;
	}
	nh.data = c;
	informer_add_handlers(c->node_inf, &nh);
	*state = c;
	return 0;
}

void nodeipam_controller_stop(void *state)
{
	struct ipam_ctl *c = state;

	informer_remove_handlers(c->node_inf, c);
	ctl_base_stop(&c->base);
}
