/* scheduler.c — the default scheduler: a queue of unbound pods, filter and
 * score plugins over an in-memory picture of the nodes, asynchronous
 * binding (see scheduler.h).
 *
 * Happy path: while leader, informers on all pods and all nodes keep the
 * picture: per node its allocatable and the requests and host ports of every
 * pod bound (or assumed bound) to it. An unbound pod of ours enters a work
 * queue → every node is filtered, the fitting ones scored, the best taken
 * (ties broken at random) → the pod is assumed on that node at once, so the
 * next pod already sees its requests, and POST pods/binding goes out without
 * waiting: many bindings are in flight → 201 → a Scheduled event.
 *
 * Failure modes: no node fits → the pod stays Pending with PodScheduled=False
 * (Unschedulable) and a FailedScheduling event worded as kube-scheduler's; it
 * is retried when a node appears or changes in a way that matters, when a
 * pod goes away, and every flush period. A binding refused (409: bound
 * meanwhile, or being deleted) drops the assumption and takes the pod as the
 * cache shows it; other failures requeue the pod with back-off. Losing the
 * lease drops the whole picture; the next term starts from fresh lists. */
#include "orchestrator/scheduler/scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

#include "lib/log.h"
#include "orchestrator/kube/informer.h"
#include "orchestrator/kube/kclient.h"
#include "orchestrator/kube/leaderelect.h"
#include "orchestrator/kube/workqueue.h"

#define SCHED_NAME "default-scheduler"
#define SCHED_LEASE "capstan-scheduler"
#define SCHED_KICK_MS 1000
#define SCHED_EVENT_REPEAT_MS 60000

struct term;

struct scheduler {
	uv_loop_t *loop;
	struct kclient *client;
	struct sched_options opts;
	char identity[256];
	struct leaderelect *le;
	struct term *term;
	unsigned long bound;
};

struct term {
	struct scheduler *s;
	struct informer *pods;
	struct informer *nodes;
	struct workqueue *q;
	struct sched_node **arr;
	size_t nn;
	size_t ncap;
	json_t *node_idx;      /* name -> index in arr */
	json_t *accounted;     /* pod key -> {"node","cpu","mem","zcpu","zmem","ports"} */
	json_t *unsched;       /* pod key -> {"msg","at"} */
	uv_timer_t kick;       /* debounced retry of unschedulable pods */
	uv_timer_t flush;      /* periodic retry */
	unsigned seed;
	int refs;
	bool kick_armed;
	bool stopping;
};

struct bind_req {
	struct term *t;
	char key[512];
	char node[254];
};

/* ---- small helpers ---- */

static const char *or_empty(const char *s)
{
	return s != NULL ? s : "";
}

static const char *md_str(json_t *obj, const char *field)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), field));
}

static const char *spec_str(json_t *obj, const char *field)
{
	return json_string_value(json_object_get(json_object_get(obj, "spec"), field));
}

static void now_rfc3339(char *buf, size_t size)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void ignore_answer(void *data, int status, json_t *body)
{
	(void)data;
	if (status >= 300 && status != 404)
		log_debug("scheduler: a write answered %d: %s", status,
			  or_empty(json_string_value(json_object_get(body, "message"))));
}

/* A core/v1 Event about a pod, fire and forget. */
static void post_event(struct term *t, json_t *pod, const char *type, const char *reason,
		       const char *message)
{
	struct timespec ts;
	char name[320], now[64];
	const char *pname = md_str(pod, "name"), *ns = md_str(pod, "namespace");
	json_t *ev;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(name, sizeof name, "%.200s.%llx%04x", pname,
		 (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec,
		 (unsigned)rand_r(&t->seed) & 0xffff);
	now_rfc3339(now, sizeof now);
	ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s, s:s?, s:s?}, s:s, s:s,"
		       " s:s, s:{s:s}, s:s, s:s, s:i, s:s, s:s, s:s}",
		       "apiVersion", "v1", "kind", "Event",
		       "metadata", "name", name, "namespace", ns,
		       "involvedObject", "apiVersion", "v1", "kind", "Pod", "namespace", ns,
		       "name", pname, "uid", md_str(pod, "uid"), "resourceVersion",
		       md_str(pod, "resourceVersion"),
		       "reason", reason, "message", message, "type", type,
		       "source", "component", SCHED_NAME,
		       "firstTimestamp", now, "lastTimestamp", now, "count", 1,
		       "reportingComponent", SCHED_NAME, "reportingInstance", t->s->identity,
		       "action", strcmp(reason, "Scheduled") == 0 ? "Binding" : "Scheduling");
	if (ev != NULL)
		kclient_create(t->s->client, &KRES_EVENTS, ns, ev, ignore_answer, NULL);
	json_decref(ev);
}

/* ---- the picture of the nodes ---- */

static struct sched_node *node_get(struct term *t, const char *name, bool create)
{
	json_t *i = json_object_get(t->node_idx, name);
	struct sched_node *n;

	if (i != NULL)
		return t->arr[json_integer_value(i)];
	if (!create)
		return NULL;
	if (t->nn == t->ncap) {
		size_t cap = t->ncap ? t->ncap * 2 : 64;
		struct sched_node **a = realloc(t->arr, cap * sizeof(*a));

		if (a == NULL)
			return NULL;
		t->arr = a;
		t->ncap = cap;
	}
	n = calloc(1, sizeof(*n));
	if (n == NULL)
		return NULL;
	n->name = strdup(name);
	n->ports = json_array();
	t->arr[t->nn] = n;
	json_object_set_new(t->node_idx, name, json_integer((json_int_t)t->nn));
	t->nn++;
	return n;
}

static void account(struct term *t, const char *key, const char *node_name,
		    const struct sched_pod *p)
{
	struct sched_node *n = node_get(t, node_name, true);
	json_t *port;
	size_t i;

	if (n == NULL)
		return;
	n->requested.milli_cpu += p->req.milli_cpu;
	n->requested.memory += p->req.memory;
	n->requested.pods += 1;
	n->nonzero.milli_cpu += p->nonzero.milli_cpu;
	n->nonzero.memory += p->nonzero.memory;
	n->nonzero.pods += 1;
	json_array_foreach(p->ports, i, port)
		json_array_append(n->ports, port);
	json_object_set_new(t->accounted, key,
			    json_pack("{s:s, s:I, s:I, s:I, s:I, s:O}", "node", node_name,
				      "cpu", (json_int_t)p->req.milli_cpu,
				      "mem", (json_int_t)p->req.memory,
				      "zcpu", (json_int_t)p->nonzero.milli_cpu,
				      "zmem", (json_int_t)p->nonzero.memory, "ports", p->ports));
}

static void unaccount(struct term *t, const char *key)
{
	json_t *a = json_object_get(t->accounted, key), *port, *used;
	struct sched_node *n;
	size_t i, j;

	if (a == NULL)
		return;
	n = node_get(t, json_string_value(json_object_get(a, "node")), false);
	if (n != NULL) {
		n->requested.milli_cpu -= json_integer_value(json_object_get(a, "cpu"));
		n->requested.memory -= json_integer_value(json_object_get(a, "mem"));
		n->requested.pods -= 1;
		n->nonzero.milli_cpu -= json_integer_value(json_object_get(a, "zcpu"));
		n->nonzero.memory -= json_integer_value(json_object_get(a, "zmem"));
		n->nonzero.pods -= 1;
		json_array_foreach(json_object_get(a, "ports"), i, port) {
			json_array_foreach(n->ports, j, used) {
				if (json_equal(port, used)) {
					json_array_remove(n->ports, j);
					break;
				}
			}
		}
	}
	json_object_del(t->accounted, key);
}

/* ---- retrying unschedulable pods ---- */

static void flush_unschedulable(struct term *t)
{
	const char *k;
	json_t *v;

	json_object_foreach(t->unsched, k, v)
		workqueue_add(t->q, k);
}

static void kick_cb(uv_timer_t *h)
{
	struct term *t = h->data;

	t->kick_armed = false;
	flush_unschedulable(t);
}

static void flush_cb(uv_timer_t *h)
{
	flush_unschedulable(h->data);
}

/* Something changed that may let a waiting pod fit. */
static void kick(struct term *t)
{
	if (t->kick_armed || t->stopping || json_object_size(t->unsched) == 0)
		return;
	t->kick_armed = true;
	uv_timer_start(&t->kick, kick_cb, SCHED_KICK_MS, 0);
}

/* ---- informer handlers ---- */

static bool is_ours(json_t *pod)
{
	const char *sn = spec_str(pod, "schedulerName");

	return sn == NULL || sn[0] == '\0' || strcmp(sn, SCHED_NAME) == 0;
}

static bool terminal(json_t *pod)
{
	const char *phase = json_string_value(json_object_get(json_object_get(pod, "status"),
							      "phase"));

	return phase != NULL && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0);
}

static void pod_seen(struct term *t, json_t *pod)
{
	char key[512];
	const char *node = spec_str(pod, "nodeName");
	json_t *acc;

	informer_key(pod, key, sizeof key);
	acc = json_object_get(t->accounted, key);
	if (node != NULL && node[0] != '\0') {
		struct sched_pod p;

		json_object_del(t->unsched, key);
		if (terminal(pod)) {
			if (acc != NULL) {
				unaccount(t, key);
				kick(t);
			}
			return;
		}
		if (acc != NULL &&
		    strcmp(json_string_value(json_object_get(acc, "node")), node) == 0)
			return;
		unaccount(t, key);
		sched_pod_init(&p, pod);
		account(t, key, node, &p);
		sched_pod_free(&p);
		return;
	}
	if (acc != NULL || md_str(pod, "deletionTimestamp") != NULL || !is_ours(pod))
		return;
	workqueue_add(t->q, key);
}

static void on_pod_add(void *data, json_t *pod)
{
	pod_seen(data, pod);
}

static void on_pod_update(void *data, json_t *old, json_t *pod)
{
	(void)old;
	pod_seen(data, pod);
}

static void on_pod_delete(void *data, json_t *pod)
{
	struct term *t = data;
	char key[512];

	informer_key(pod, key, sizeof key);
	json_object_del(t->unsched, key);
	if (json_object_get(t->accounted, key) != NULL) {
		unaccount(t, key);
		kick(t);
	}
}

static bool same_field(json_t *a, json_t *b, const char *part, const char *field)
{
	json_t *x = json_object_get(json_object_get(a, part), field);
	json_t *y = json_object_get(json_object_get(b, part), field);

	return (x == NULL && y == NULL) || (x != NULL && y != NULL && json_equal(x, y));
}

static void node_seen(struct term *t, json_t *node)
{
	const char *name = md_str(node, "name");
	struct sched_node *n;
	bool relevant;

	if (name == NULL || (n = node_get(t, name, true)) == NULL)
		return;
	/* Heartbeats change status often; only what the filters read matters. */
	relevant = n->node == NULL || !same_field(n->node, node, "metadata", "labels") ||
		   !same_field(n->node, node, "spec", "taints") ||
		   !same_field(n->node, node, "spec", "unschedulable") ||
		   !same_field(n->node, node, "status", "allocatable") ||
		   !same_field(n->node, node, "status", "capacity");
	json_decref(n->node);
	n->node = json_incref(node);
	sched_node_allocatable(node, &n->alloc);
	if (relevant)
		kick(t);
}

static void on_node_add(void *data, json_t *node)
{
	node_seen(data, node);
}

static void on_node_update(void *data, json_t *old, json_t *node)
{
	(void)old;
	node_seen(data, node);
}

static void on_node_delete(void *data, json_t *node)
{
	struct term *t = data;
	struct sched_node *n = node_get(t, md_str(node, "name") ? md_str(node, "name") : "",
					false);

	if (n == NULL)
		return;
	json_decref(n->node);
	n->node = NULL;   /* kept: pods may still name it */
}

/* ---- scheduling one pod ---- */

static void maybe_free(struct term *t);

static void on_bound(void *data, int status, json_t *body)
{
	struct bind_req *r = data;
	struct term *t = r->t;
	json_t *pod;
	char msg[1024];

	t->refs--;
	if (t->stopping) {
		free(r);
		maybe_free(t);
		return;
	}
	pod = informer_get(t->pods, r->key);
	if (status == 200 || status == 201) {
		t->s->bound++;
		if (pod != NULL) {
			snprintf(msg, sizeof msg, "Successfully assigned %s to %s", r->key, r->node);
			post_event(t, pod, "Normal", "Scheduled", msg);
		}
		free(r);
		return;
	}
	log_info("scheduler: binding %s to %s failed: %d %s", r->key, r->node, status,
		 or_empty(json_string_value(json_object_get(body, "message"))));
	unaccount(t, r->key);
	if (status == 409 || status == 404) {
		/* Bound elsewhere, being deleted, or gone: the cache says which. */
		if (pod != NULL)
			pod_seen(t, pod);
	} else {
		workqueue_add_rate_limited(t->q, r->key);
	}
	free(r);
}

static void bind_pod(struct term *t, const char *key, json_t *pod, const char *node)
{
	struct bind_req *r = malloc(sizeof(*r));
	const char *ns = md_str(pod, "namespace"), *name = md_str(pod, "name");
	json_t *b;

	if (r == NULL)
		goto err;
	r->t = t;
	snprintf(r->key, sizeof r->key, "%s", key);
	snprintf(r->node, sizeof r->node, "%s", node);
	b = json_pack("{s:s, s:s, s:{s:s, s:s, s:s?}, s:{s:s, s:s, s:s}}", "apiVersion", "v1",
		      "kind", "Binding", "metadata", "name", name, "namespace", ns, "uid",
		      md_str(pod, "uid"), "target", "apiVersion", "v1", "kind", "Node", "name",
		      node);
	if (b == NULL || kclient_post_sub(t->s->client, &KRES_PODS, ns, name, "binding", b,
					  on_bound, r) != 0) {
		json_decref(b);
		free(r);
		goto err;
	}
	json_decref(b);
	t->refs++;
	return;

err:
	unaccount(t, key);
	workqueue_add_rate_limited(t->q, key);
}

static void unschedulable(struct term *t, const char *key, json_t *pod, const char *msg)
{
	json_t *u = json_object_get(t->unsched, key);
	uint64_t now = uv_now(t->s->loop);
	const char *last = json_string_value(json_object_get(u, "msg"));
	json_t *patch;
	char ts[64];

	if (last != NULL && strcmp(last, msg) == 0 &&
	    now - (uint64_t)json_integer_value(json_object_get(u, "at")) < SCHED_EVENT_REPEAT_MS)
		return;
	json_object_set_new(t->unsched, key, json_pack("{s:s, s:I}", "msg", msg, "at",
						       (json_int_t)now));
	log_info("scheduler: %s: %s", key, msg);
	post_event(t, pod, "Warning", "FailedScheduling", msg);
	if (last != NULL && strcmp(last, msg) == 0)
		return;
	now_rfc3339(ts, sizeof ts);
	patch = json_pack("{s:{s:[{s:s, s:s, s:s, s:s, s:s, s:n}]}}", "status", "conditions",
			  "type", "PodScheduled", "status", "False", "reason", "Unschedulable",
			  "message", msg, "lastTransitionTime", ts, "lastProbeTime");
	kclient_patch(t->s->client, &KRES_PODS, md_str(pod, "namespace"), md_str(pod, "name"),
		      "status", "application/strategic-merge-patch+json", patch, ignore_answer,
		      NULL);
	json_decref(patch);
}

static int schedule_one(void *data, const char *key)
{
	struct term *t = data;
	json_t *pod, *counts = NULL;
	struct sched_pod p;
	struct sched_node *best = NULL;
	int best_score = -1, nnodes = 0;
	unsigned ties = 0;
	const char *node;
	char msg[1024];

	if (!informer_synced(t->pods) || !informer_synced(t->nodes)) {
		workqueue_add_after(t->q, key, 100);
		return 0;
	}
	pod = informer_get(t->pods, key);
	if (pod == NULL || json_object_get(t->accounted, key) != NULL ||
	    md_str(pod, "deletionTimestamp") != NULL || !is_ours(pod))
		return 0;
	node = spec_str(pod, "nodeName");
	if (node != NULL && node[0] != '\0')
		return 0;
	sched_pod_init(&p, pod);
	for (size_t i = 0; i < t->nn; i++) {
		struct sched_node *n = t->arr[i];
		struct sched_verdict v;
		int score;

		if (n->node == NULL)
			continue;
		nnodes++;
		v.n = 0;
		if (!sched_filter(n, &p, &v)) {
			if (counts == NULL)
				counts = json_object();
			for (int j = 0; j < v.n; j++) {
				json_int_t c = json_integer_value(json_object_get(counts,
										  v.reasons[j]));

				json_object_set_new(counts, v.reasons[j], json_integer(c + 1));
			}
			continue;
		}
		score = sched_score(n, &p, t->s->opts.score);
		if (score > best_score) {
			best_score = score;
			best = n;
			ties = 1;
		} else if (score == best_score && rand_r(&t->seed) % ++ties == 0) {
			best = n;
		}
	}
	if (best != NULL) {
		json_object_del(t->unsched, key);
		account(t, key, best->name, &p);
		bind_pod(t, key, pod, best->name);
	} else {
		sched_fit_message(nnodes, counts, msg, sizeof msg);
		unschedulable(t, key, pod, msg);
	}
	json_decref(counts);
	sched_pod_free(&p);
	return 0;
}

/* ---- terms ---- */

static void maybe_free(struct term *t)
{
	if (!t->stopping || t->refs > 0)
		return;
	for (size_t i = 0; i < t->nn; i++) {
		json_decref(t->arr[i]->node);
		json_decref(t->arr[i]->ports);
		free((char *)t->arr[i]->name);
		free(t->arr[i]);
	}
	free(t->arr);
	json_decref(t->node_idx);
	json_decref(t->accounted);
	json_decref(t->unsched);
	free(t);
}

static void timer_closed(uv_handle_t *h)
{
	struct term *t = h->data;

	t->refs--;
	maybe_free(t);
}

static void term_stop(struct term *t)
{
	t->stopping = true;
	informer_stop(t->pods);
	informer_stop(t->nodes);
	workqueue_close(t->q);
	uv_close((uv_handle_t *)&t->kick, timer_closed);
	uv_close((uv_handle_t *)&t->flush, timer_closed);
}

static struct term *term_start(struct scheduler *s)
{
	struct term *t = calloc(1, sizeof(*t));
	struct informer_handlers ph = {on_pod_add, on_pod_update, on_pod_delete, NULL};
	struct informer_handlers nh = {on_node_add, on_node_update, on_node_delete, NULL};
	unsigned flush_ms = s->opts.flush_ms ? s->opts.flush_ms : 30000;

	if (t == NULL)
		return NULL;
	t->s = s;
	t->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)t;
	t->node_idx = json_object();
	t->accounted = json_object();
	t->unsched = json_object();
	ph.data = nh.data = t;
	if (workqueue_new(s->loop, schedule_one, t, &t->q) != 0)
		goto err_after_alloc;
	/* Pods back off from 1 s (kube-scheduler's initial back-off) to 10 s. */
	workqueue_set_backoff(t->q, 1000, 10000);
	if (informer_new(s->client, &KRES_PODS, NULL, NULL, NULL, 0, &t->pods) != 0)
		goto err_after_queue;
	if (informer_new(s->client, &KRES_NODES, NULL, NULL, NULL, 0, &t->nodes) != 0)
		goto err_after_pods;
	informer_add_handlers(t->pods, &ph);
	informer_add_handlers(t->nodes, &nh);
	uv_timer_init(s->loop, &t->kick);
	uv_timer_init(s->loop, &t->flush);
	t->kick.data = t->flush.data = t;
	t->refs = 2;
	uv_timer_start(&t->flush, flush_cb, flush_ms, flush_ms);
	informer_start(t->nodes);
	informer_start(t->pods);
	return t;

err_after_pods:
	informer_stop(t->pods);
err_after_queue:
	workqueue_close(t->q);
err_after_alloc:
	json_decref(t->node_idx);
	json_decref(t->accounted);
	json_decref(t->unsched);
	free(t);
	return NULL;
}

static void on_leading(void *data)
{
	struct scheduler *s = data;

	s->term = term_start(s);
	if (s->term == NULL)
		log_error("scheduler: cannot start");
	else
		log_info("scheduler: scheduling (%s)",
			 s->opts.score == SCHED_SCORE_MOST ? "MostAllocated" : "LeastAllocated");
}

static void on_stopped_leading(void *data)
{
	struct scheduler *s = data;

	if (s->term != NULL)
		term_stop(s->term);
	s->term = NULL;
}

int sched_start(uv_loop_t *loop, const char *server_url, const struct sched_options *opts,
		struct scheduler **out)
{
	struct scheduler *s = calloc(1, sizeof(*s));
	struct leaderelect_config lc = {0};

	if (s == NULL)
		return -1;
	s->loop = loop;
	if (opts != NULL)
		s->opts = *opts;
	if (kclient_new(loop, server_url, &s->client) != 0)
		goto err_after_alloc;
	leaderelect_identity(s->identity, sizeof s->identity);
	lc.ns = "kube-system";
	lc.name = SCHED_LEASE;
	lc.identity = s->identity;
	lc.lease_duration_ms = s->opts.lease_duration_ms;
	lc.retry_period_ms = s->opts.retry_period_ms;
	lc.on_start = on_leading;
	lc.on_stop = on_stopped_leading;
	lc.data = s;
	if (leaderelect_start(s->client, &lc, &s->le) != 0)
		goto err_after_client;
	*out = s;
	return 0;

err_after_client:
	kclient_close(s->client);
err_after_alloc:
	free(s);
	return -1;
}

bool sched_leading(const struct scheduler *s)
{
	return s->term != NULL;
}

unsigned long sched_bound_count(const struct scheduler *s)
{
	return s->bound;
}

void sched_stop(struct scheduler *s)
{
	if (s == NULL)
		return;
	if (s->term != NULL)
		term_stop(s->term);
	s->term = NULL;
	leaderelect_stop(s->le);
	kclient_close(s->client);
	free(s);
}
