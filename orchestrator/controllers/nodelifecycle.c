/* nodelifecycle.c — the node lifecycle controller: notices nodes whose
 * agent stopped heartbeating, marks them Unknown and taints them
 * unreachable, and evicts pods from nodes with NoExecute taints once their
 * tolerations run out.
 *
 * Happy path, every monitor period: for each node, a heartbeat is a change
 * of its Lease's renewTime (kube-node-lease/<node>) or of its Ready
 * condition's lastHeartbeatTime, as observed on our own clock → no heartbeat
 * for the grace period: every condition becomes Unknown (NodeStatusUnknown,
 * "Kubelet stopped posting node status.") and the node gets the
 * node.kubernetes.io/unreachable taints, NoSchedule and NoExecute → a
 * heartbeat again: the unreachable taints go (Ready comes back when the
 * agent posts its status). Then for every bound pod on a node with NoExecute
 * taints: a taint it does not tolerate evicts it now, one it tolerates for N
 * seconds evicts it N seconds after the taint's timeAdded; evictions are
 * deletes, at most eviction_rate per second.
 *
 * Failure modes: a patch that fails (conflict: the node changed) is simply
 * tried again on the next period from the fresher cache; a delete that fails
 * is retried likewise; nodes first seen get a whole grace period, so a
 * controller that just became leader does not condemn healthy nodes whose
 * heartbeats it has not had time to see. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "orchestrator/controllers/controllers.h"

#define UNREACHABLE_TAINT "node.kubernetes.io/unreachable"
#define UNKNOWN_MESSAGE "Kubelet stopped posting node status."

struct nlc {
	struct controller_ctx *ctx;
	struct kclient *client;
	uv_loop_t *loop;
	struct informer *nodes;
	struct informer *pods;
	struct informer *leases;
	json_t *health;         /* node -> {"renew","hb","at"} */
	json_t *busy;           /* node or pod keys with a request in flight */
	json_t *taint_seen;     /* "node|key|effect" -> first seen (s) when no timeAdded */
	uv_timer_t monitor;
	uint64_t grace_ms;
	double rate;
	double tokens;
	uint64_t refilled_at;
	int refs;
	bool stopping;
};

struct nlc_req {
	struct nlc *n;
	char key[512];
};

static void rfc3339(char *buf, size_t size, time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static time_t parse_rfc3339(const char *s)
{
	struct tm tm = {0};

	if (s == NULL || sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
				&tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return (time_t)-1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return timegm(&tm);
}

static const char *str_at(json_t *obj, const char *a, const char *b)
{
	return json_string_value(json_object_get(json_object_get(obj, a), b));
}

static json_t *find_condition(json_t *node, const char *type)
{
	json_t *conds = json_object_get(json_object_get(node, "status"), "conditions");
	json_t *c;
	size_t i;

	json_array_foreach(conds, i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));

		if (t != NULL && strcmp(t, type) == 0)
			return c;
	}
	return NULL;
}

/* ---- requests ---- */

static struct nlc_req *req_new(struct nlc *n, const char *key)
{
	struct nlc_req *r = malloc(sizeof(*r));

	if (r == NULL)
		return NULL;
	r->n = n;
	snprintf(r->key, sizeof r->key, "%s", key);
	json_object_set_new(n->busy, key, json_true());
	n->refs++;
	return r;
}

static void req_abort(struct nlc_req *r)
{
	json_object_del(r->n->busy, r->key);
	r->n->refs--;
	free(r);
}

static void maybe_free(struct nlc *n)
{
	if (!n->stopping || n->refs > 0)
		return;
	json_decref(n->health);
	json_decref(n->busy);
	json_decref(n->taint_seen);
	free(n);
}

static void on_done(void *data, int status, json_t *body)
{
	struct nlc_req *r = data;
	struct nlc *n = r->n;
	const char *msg = json_string_value(json_object_get(body, "message"));

	if (status >= 300 && status != 404)
		log_warn("node lifecycle: %s: %d %s", r->key, status, msg ? msg : "");
	json_object_del(n->busy, r->key);
	n->refs--;
	free(r);
	maybe_free(n);
}

/* ---- node health ---- */

static bool is_unreachable_taint(json_t *t)
{
	const char *k = json_string_value(json_object_get(t, "key"));

	return k != NULL && strcmp(k, UNREACHABLE_TAINT) == 0;
}

static bool has_unreachable(json_t *node, const char *effect)
{
	json_t *taints = json_object_get(json_object_get(node, "spec"), "taints");
	json_t *t;
	size_t i;

	json_array_foreach(taints, i, t) {
		const char *e = json_string_value(json_object_get(t, "effect"));

		if (is_unreachable_taint(t) && e != NULL && strcmp(e, effect) == 0)
			return true;
	}
	return false;
}

/* Sets spec.taints to the node's taints without the unreachable ones, plus
 * them again when add is set. The resourceVersion makes it a compare-and-set. */
static void patch_taints(struct nlc *n, json_t *node, const char *name, bool add)
{
	json_t *taints = json_object_get(json_object_get(node, "spec"), "taints");
	json_t *out = json_array(), *t, *patch;
	struct nlc_req *r;
	char now[64];
	size_t i;

	json_array_foreach(taints, i, t)
		if (!is_unreachable_taint(t))
			json_array_append(out, t);
	if (add) {
		rfc3339(now, sizeof now, time(NULL));
		json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "key", UNREACHABLE_TAINT,
						     "effect", "NoSchedule", "timeAdded", now));
		json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "key", UNREACHABLE_TAINT,
						     "effect", "NoExecute", "timeAdded", now));
	}
	patch = json_pack("{s:{s:s?}, s:{s:o}}", "metadata", "resourceVersion",
			  str_at(node, "metadata", "resourceVersion"), "spec", "taints", out);
	r = req_new(n, name);
	if (r != NULL && kclient_patch(n->client, &KRES_NODES, NULL, name, NULL,
				       "application/merge-patch+json", patch, on_done, r) != 0)
		req_abort(r);
	json_decref(patch);
	log_info("node lifecycle: node %s: %s the unreachable taints", name,
		 add ? "adding" : "removing");
}

/* Every condition Unknown, as the kubelet's silence leaves them. */
static void patch_unknown(struct nlc *n, json_t *node, const char *name)
{
	json_t *conds = json_object_get(json_object_get(node, "status"), "conditions");
	json_t *out = json_array(), *c, *patch;
	struct nlc_req *r;
	char now[64], key[600];
	size_t i;

	rfc3339(now, sizeof now, time(NULL));
	json_array_foreach(conds, i, c) {
		json_t *nc = json_deep_copy(c);

		json_object_set_new(nc, "status", json_string("Unknown"));
		json_object_set_new(nc, "reason", json_string("NodeStatusUnknown"));
		json_object_set_new(nc, "message", json_string(UNKNOWN_MESSAGE));
		json_object_set_new(nc, "lastTransitionTime", json_string(now));
		json_array_append_new(out, nc);
	}
	if (find_condition(node, "Ready") == NULL)
		json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type",
						     "Ready", "status", "Unknown", "reason",
						     "NodeStatusNeverUpdated", "message",
						     "Kubelet never posted node status.",
						     "lastHeartbeatTime", now, "lastTransitionTime",
						     now));
	patch = json_pack("{s:{s:o}}", "status", "conditions", out);
	snprintf(key, sizeof key, "%s/status", name);
	r = req_new(n, key);
	if (r != NULL && kclient_patch(n->client, &KRES_NODES, NULL, name, "status",
				       "application/strategic-merge-patch+json", patch, on_done,
				       r) != 0)
		req_abort(r);
	json_decref(patch);
	log_info("node lifecycle: node %s stopped heartbeating: conditions Unknown", name);
}

static void monitor_node(struct nlc *n, json_t *node, uint64_t now)
{
	const char *name = str_at(node, "metadata", "name");
	char lkey[512], skey[600];
	json_t *lease, *ready, *h;
	const char *renew, *hb, *ready_status;
	bool stale;

	if (name == NULL)
		return;
	snprintf(lkey, sizeof lkey, "kube-node-lease/%s", name);
	lease = informer_get(n->leases, lkey);
	renew = str_at(lease, "spec", "renewTime");
	ready = find_condition(node, "Ready");
	hb = json_string_value(json_object_get(ready, "lastHeartbeatTime"));
	ready_status = json_string_value(json_object_get(ready, "status"));
	renew = renew ? renew : "";
	hb = hb ? hb : "";
	h = json_object_get(n->health, name);
	if (h == NULL || strcmp(renew, json_string_value(json_object_get(h, "renew"))) != 0 ||
	    (strcmp(hb, json_string_value(json_object_get(h, "hb"))) != 0 &&
	     (ready_status == NULL || strcmp(ready_status, "Unknown") != 0))) {
		/* Our own Unknown patch moves no heartbeat: only the agent's do. */
		json_object_set_new(n->health, name, json_pack("{s:s, s:s, s:I}", "renew", renew,
							       "hb", hb, "at", (json_int_t)now));
		h = json_object_get(n->health, name);
	}
	json_object_set_new(h, "seen", json_true());
	stale = now - (uint64_t)json_integer_value(json_object_get(h, "at")) > n->grace_ms;
	snprintf(skey, sizeof skey, "%s/status", name);
	if (stale) {
		if ((ready_status == NULL || strcmp(ready_status, "Unknown") != 0) &&
		    json_object_get(n->busy, skey) == NULL)
			patch_unknown(n, node, name);
		if ((!has_unreachable(node, "NoExecute") || !has_unreachable(node, "NoSchedule")) &&
		    json_object_get(n->busy, name) == NULL)
			patch_taints(n, node, name, true);
	} else if ((has_unreachable(node, "NoExecute") || has_unreachable(node, "NoSchedule")) &&
		   json_object_get(n->busy, name) == NULL) {
		patch_taints(n, node, name, false);
	}
}

/* ---- NoExecute evictions ---- */

static bool tolerates(json_t *tol, json_t *taint)
{
	const char *tk = json_string_value(json_object_get(tol, "key"));
	const char *op = json_string_value(json_object_get(tol, "operator"));
	const char *te = json_string_value(json_object_get(tol, "effect"));
	const char *tv = json_string_value(json_object_get(tol, "value"));
	const char *k = json_string_value(json_object_get(taint, "key"));
	const char *e = json_string_value(json_object_get(taint, "effect"));
	const char *v = json_string_value(json_object_get(taint, "value"));

	if (te != NULL && te[0] != '\0' && (e == NULL || strcmp(te, e) != 0))
		return false;
	if (tk == NULL || tk[0] == '\0')
		return op != NULL && strcmp(op, "Exists") == 0;
	if (k == NULL || strcmp(tk, k) != 0)
		return false;
	if (op != NULL && strcmp(op, "Exists") == 0)
		return true;
	return strcmp(tv ? tv : "", v ? v : "") == 0;
}

/* Seconds since the epoch when the pod must go (INFINITY: never). */
static double evict_at(struct nlc *n, json_t *node, json_t *pod)
{
	json_t *taints = json_object_get(json_object_get(node, "spec"), "taints");
	json_t *tols = json_object_get(json_object_get(pod, "spec"), "tolerations");
	json_t *t, *tol;
	size_t i, j;
	double at = INFINITY;

	json_array_foreach(taints, i, t) {
		const char *e = json_string_value(json_object_get(t, "effect"));
		double added, secs = INFINITY;
		bool tolerated = false;

		if (e == NULL || strcmp(e, "NoExecute") != 0)
			continue;
		json_array_foreach(tols, j, tol) {
			json_t *s;

			if (!tolerates(tol, t))
				continue;
			tolerated = true;
			s = json_object_get(tol, "tolerationSeconds");
			if (json_is_integer(s) && (double)json_integer_value(s) < secs)
				secs = (double)json_integer_value(s);
		}
		if (!tolerated)
			return 0;
		if (isinf(secs))
			continue;
		added = (double)parse_rfc3339(json_string_value(json_object_get(t, "timeAdded")));
		if (added < 0) {
			char key[800];
			json_t *seen;

			const char *tkey = json_string_value(json_object_get(t, "key"));

			snprintf(key, sizeof key, "%s|%s|NoExecute", str_at(node, "metadata", "name"),
				 tkey ? tkey : "");
			seen = json_object_get(n->taint_seen, key);
			if (seen == NULL) {
				seen = json_integer((json_int_t)time(NULL));
				json_object_set_new(n->taint_seen, key, seen);
			}
			added = (double)json_integer_value(seen);
		}
		if (added + (secs > 0 ? secs : 0) < at)
			at = added + (secs > 0 ? secs : 0);
	}
	return at;
}

static void evict_pod(void *data, json_t *pod)
{
	struct nlc *n = data;
	const char *node_name = str_at(pod, "spec", "nodeName");
	char key[512];
	json_t *node;
	struct nlc_req *r;
	double at;
	uint64_t now;

	if (node_name == NULL || node_name[0] == '\0' ||
	    str_at(pod, "metadata", "deletionTimestamp") != NULL)
		return;
	node = informer_get(n->nodes, node_name);
	if (node == NULL || json_array_size(json_object_get(json_object_get(node, "spec"),
							       "taints")) == 0)
		return;
	informer_key(pod, key, sizeof key);
	if (json_object_get(n->busy, key) != NULL)
		return;
	at = evict_at(n, node, pod);
	if (isinf(at) || at > (double)time(NULL))
		return;
	now = uv_now(n->loop);
	n->tokens += (double)(now - n->refilled_at) * n->rate / 1000.0;
	n->refilled_at = now;
	if (n->tokens > (n->rate > 1 ? n->rate : 1))
		n->tokens = n->rate > 1 ? n->rate : 1;
	if (n->tokens < 1)
		return;
	n->tokens -= 1;
	log_info("node lifecycle: evicting pod %s from node %s (NoExecute taint)", key, node_name);
	r = req_new(n, key);
	if (r != NULL && kclient_delete(n->client, &KRES_PODS, str_at(pod, "metadata", "namespace"),
					str_at(pod, "metadata", "name"), NULL, on_done, r) != 0)
		req_abort(r);
}

/* ---- the period ---- */

static void monitor_each(void *data, json_t *node)
{
	struct nlc *n = data;

	monitor_node(n, node, uv_now(n->loop));
}

static void monitor_cb(uv_timer_t *t)
{
	struct nlc *n = t->data;
	const char *k;
	json_t *v;
	void *tmp;

	if (!informer_synced(n->nodes) || !informer_synced(n->leases) ||
	    !informer_synced(n->pods))
		return;
	json_object_foreach(n->health, k, v)
		json_object_del(v, "seen");
	informer_foreach(n->nodes, monitor_each, n);
	/* Forget nodes that are gone. */
	json_object_foreach_safe(n->health, tmp, k, v)
		if (json_object_get(v, "seen") == NULL)
			json_object_del(n->health, k);
	informer_foreach(n->pods, evict_pod, n);
}

static void timer_closed(uv_handle_t *h)
{
	struct nlc *n = h->data;

	n->refs--;
	maybe_free(n);
}

int nodelifecycle_controller_start(struct controller_ctx *ctx, void **state)
{
	struct nlc *n = calloc(1, sizeof(*n));
	unsigned period;

	if (n == NULL)
		return -1;
	n->ctx = ctx;
	n->client = ctx->client;
	n->loop = ctx->loop;
	n->grace_ms = (uint64_t)ctx->opts->node_monitor_grace_s * 1000;
	n->rate = ctx->opts->eviction_rate;
	n->tokens = n->rate > 1 ? n->rate : 1;
	n->refilled_at = uv_now(n->loop);
	n->health = json_object();
	n->busy = json_object();
	n->taint_seen = json_object();
	n->nodes = ctx->shared(ctx, &KRES_NODES);
	n->pods = ctx->shared(ctx, &KRES_PODS);
	n->leases = ctx->shared(ctx, &KRES_LEASES);
	if (n->nodes == NULL || n->pods == NULL || n->leases == NULL) {
		json_decref(n->health);
		json_decref(n->busy);
		json_decref(n->taint_seen);
		free(n);
		return -1;
	}
	period = ctx->opts->node_monitor_period_ms;
	if (period == 0) {
		period = (unsigned)(n->grace_ms / 5);
		if (period > 5000)
			period = 5000;
		if (period < 200)
			period = 200;
	}
	uv_timer_init(n->loop, &n->monitor);
	n->monitor.data = n;
	n->refs = 1;
	uv_timer_start(&n->monitor, monitor_cb, period, period);
	*state = n;
	return 0;
}

void nodelifecycle_controller_stop(void *state)
{
	struct nlc *n = state;

	n->stopping = true;
	uv_close((uv_handle_t *)&n->monitor, timer_closed);
}
