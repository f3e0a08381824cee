/* ctlbase.c — the reference-counted base, keyed requests and expectations
 * the workload controllers share (see ctlbase.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "orchestrator/controllers/ctlbase.h"

#define CTL_EXPECT_TIMEOUT_MS (5 * 60 * 1000)

int64_t ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *ctl_now_rfc3339(char *buf, size_t size)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

const char *ctl_ns(json_t *obj)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), "namespace"));
}

const char *ctl_name(json_t *obj)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
}

const char *ctl_uid(json_t *obj)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid"));
}

bool ctl_deleting(json_t *obj)
{
	return json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp") != NULL;
}

const char *ctl_split_key(const char *key, char *ns, size_t nsz)
{
	const char *slash = strchr(key, '/');
	size_t n;

	if (slash == NULL) {
		ns[0] = '\0';
		return key;
	}
	n = (size_t)(slash - key);
	if (n >= nsz)
		n = nsz - 1;
	memcpy(ns, key, n);
	ns[n] = '\0';
	return slash + 1;
}

int ctl_base_init(struct ctl_base *b, struct controller_ctx *ctx, const char *name,
		  int (*sync)(void *data, const char *key), void (*free_fn)(struct ctl_base *))
{
	b->ctx = ctx;
	b->client = ctx->client;
	b->name = name;
	b->refs = 1;
	b->stopped = false;
	b->free_fn = free_fn;
	b->expect = json_object();
	if (b->expect == NULL)
		return -1;
	if (workqueue_new(ctx->loop, sync, b, &b->q) != 0) {
		json_decref(b->expect);
		b->expect = NULL;
		return -1;
	}
	return 0;
}

void ctl_base_release(struct ctl_base *b)
{
	if (--b->refs > 0)
		return;
	json_decref(b->expect);
	b->free_fn(b);
}

void ctl_base_stop(struct ctl_base *b)
{
	b->stopped = true;
	workqueue_close(b->q);
	b->q = NULL;
	ctl_base_release(b);
}

void ctl_enqueue(struct ctl_base *b, const char *ns, const char *name)
{
	char key[512];

	if (b->stopped || name == NULL)
		return;
	if (ns != NULL && ns[0] != '\0')
		snprintf(key, sizeof(key), "%s/%s", ns, name);
	else
		snprintf(key, sizeof(key), "%s", name);
	workqueue_add(b->q, key);
}

void ctl_enqueue_obj(struct ctl_base *b, json_t *obj)
{
	ctl_enqueue(b, ctl_ns(obj), ctl_name(obj));
}

struct ctl_req {
	struct ctl_base *b;
	ctl_done_fn done;
	void *arg;
	const char *what;
	char key[];
};

static struct ctl_req *req_new(struct ctl_base *b, const char *key, ctl_done_fn done, void *arg,
			       const char *what)
{
	size_t n = strlen(key ? key : "") + 1;
	struct ctl_req *r = malloc(sizeof(*r) + n);

	if (r == NULL)
		return NULL;
	r->b = b;
	r->done = done;
	r->arg = arg;
	r->what = what;
	memcpy(r->key, key ? key : "", n);
	b->refs++;
	return r;
}

static void req_cb(void *data, int status, json_t *body)
{
	struct ctl_req *r = data;
	struct ctl_base *b = r->b;

	if (!b->stopped) {
		if (status < 200 || status >= 300) {
			const char *msg = json_string_value(json_object_get(body, "message"));

			log_debug("%s: %s for %s: %d %s", b->name, r->what, r->key, status,
				  msg ? msg : "");
			/* 404 and 409 mean the cache was behind: look again soon,
			 * with the usual back-off so a conflict cannot spin. */
			if (r->key[0] != '\0')
				workqueue_add_rate_limited(b->q, r->key);
		}
		if (r->done != NULL)
			r->done(b, r->key, status, body, r->arg);
	}
	free(r);
	ctl_base_release(b);
}

static int req_sent(struct ctl_req *r, int rc)
{
	if (rc == 0)
		return 0;
	log_warn("%s: could not send %s for %s", r->b->name, r->what, r->key);
	if (r->key[0] != '\0' && !r->b->stopped)
		workqueue_add_rate_limited(r->b->q, r->key);
	ctl_base_release(r->b);
	free(r);
	return -1;
}

int ctl_create(struct ctl_base *b, const struct kres *res, const char *ns, json_t *obj,
	       const char *key, ctl_done_fn done, void *arg)
{
	struct ctl_req *r = req_new(b, key, done, arg, "create");

	if (r == NULL)
		return -1;
	return req_sent(r, kclient_create(b->client, res, ns, obj, req_cb, r));
}

int ctl_merge_patch(struct ctl_base *b, const struct kres *res, const char *ns, const char *name,
		    const char *sub, json_t *patch, const char *key, ctl_done_fn done, void *arg)
{
	struct ctl_req *r = req_new(b, key, done, arg, "patch");

	if (r == NULL)
		return -1;
	return req_sent(r, kclient_patch(b->client, res, ns, name, sub,
					 "application/merge-patch+json", patch, req_cb, r));
}

int ctl_update(struct ctl_base *b, const struct kres *res, const char *ns, const char *name,
	       json_t *obj, const char *key, ctl_done_fn done, void *arg)
{
	struct ctl_req *r = req_new(b, key, done, arg, "update");

	if (r == NULL)
		return -1;
	return req_sent(r, kclient_update(b->client, res, ns, name, NULL, obj, req_cb, r));
}

int ctl_delete(struct ctl_base *b, const struct kres *res, const char *ns, const char *name,
	       const char *uid, const char *policy, const char *key, ctl_done_fn done, void *arg)
{
	struct ctl_req *r = req_new(b, key, done, arg, "delete");
	json_t *opts = json_pack("{s:s, s:s}", "kind", "DeleteOptions", "apiVersion", "v1");
	int rc;

	if (r == NULL || opts == NULL) {
		json_decref(opts);
		if (r != NULL) {
			ctl_base_release(b);
			free(r);
		}
		return -1;
	}
	if (policy != NULL)
		json_object_set_new(opts, "propagationPolicy", json_string(policy));
	if (uid != NULL)
		json_object_set_new(opts, "preconditions", json_pack("{s:s}", "uid", uid));
	rc = req_sent(r, kclient_delete(b->client, res, ns, name, opts, req_cb, r));
	json_decref(opts);
	return rc;
}

static json_t *expect_entry(struct ctl_base *b, const char *key)
{
	return json_object_get(b->expect, key);
}

void ctl_expect(struct ctl_base *b, const char *key, int adds, int dels)
{
	json_object_set_new(b->expect, key, json_pack("[i, i, I]", adds, dels,
						      (json_int_t)(ctl_now_ms() +
								   CTL_EXPECT_TIMEOUT_MS)));
}

static void observed(struct ctl_base *b, const char *key, size_t slot)
{
	json_t *e = expect_entry(b, key);
	json_int_t v;

	if (e == NULL)
		return;
	v = json_integer_value(json_array_get(e, slot));
	if (v > 0)
		json_array_set_new(e, slot, json_integer(v - 1));
}

void ctl_observed_add(struct ctl_base *b, const char *key)
{
	observed(b, key, 0);
}

void ctl_observed_del(struct ctl_base *b, const char *key)
{
	observed(b, key, 1);
}

bool ctl_satisfied(struct ctl_base *b, const char *key)
{
	json_t *e = expect_entry(b, key);

	if (e == NULL)
		return true;
	if (json_integer_value(json_array_get(e, 0)) <= 0 &&
	    json_integer_value(json_array_get(e, 1)) <= 0)
		return true;
	/* A lost watch event must not freeze the controller forever. */
	return ctl_now_ms() > json_integer_value(json_array_get(e, 2));
}

void ctl_forget(struct ctl_base *b, const char *key)
{
	json_object_del(b->expect, key);
}

struct selecting_scan {
	struct ctl_base *b;
	json_t *pod;
};

static void enqueue_if_selects(void *data, json_t *svc)
{
	struct selecting_scan *m = data;
	json_t *sel = json_object_get(json_object_get(svc, "spec"), "selector");
	json_t *labels = json_object_get(json_object_get(m->pod, "metadata"), "labels");
	const char *ns = ctl_ns(svc), *pns = ctl_ns(m->pod), *k;
	json_t *v;

	if (ns == NULL || pns == NULL || strcmp(ns, pns) != 0 || json_object_size(sel) == 0)
		return;
	json_object_foreach(sel, k, v)
		if (!json_equal(json_object_get(labels, k), v))
			return;
	ctl_enqueue_obj(m->b, svc);
}

void ctl_enqueue_services_selecting(struct ctl_base *b, struct informer *services, json_t *pod)
{
	struct selecting_scan m = { b, pod };

	if (!b->stopped)
		informer_foreach(services, enqueue_if_selects, &m);
}
