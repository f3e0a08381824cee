/* apiserver.c — the Kubernetes REST API: routing, the object life cycle
 * (create, get, list, watch, update, patch, delete) and the store layout.
 *
 * Happy path of a write: parse the path and the body → read the current
 * object from the store → build the new object (patch, defaults, the fields
 * only the server sets) → validate → one txn that puts it if mod_revision is
 * still what we read → answer with resourceVersion = the txn's revision.
 * A txn that loses the race is retried from the read (patch, apply, status)
 * or answered 409 Conflict when the client gave a resourceVersion.
 *
 * Failure modes: bad input is a Status with the real server's reason and
 * wording, and nothing is stored; a store error is a 500 (or 504 on a
 * timeout) Status; a client that goes away mid-request only loses its answer. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "lib/b64.h"
#include "lib/err.h"
#include "lib/http.h"
#include "lib/jsonx.h"
#include "lib/log.h"
#include "orchestrator/api/apiserver.h"
#include "orchestrator/api/cachedobj.h"
#include "orchestrator/api/podproxy.h"
#include "orchestrator/api/protobuf.h"
#include "orchestrator/api/defaults.h"
#include "orchestrator/api/managedfields.h"
#include "orchestrator/api/patch.h"
#include "orchestrator/api/resources.h"
#include "orchestrator/api/selector.h"
#include "orchestrator/api/status.h"
#include "orchestrator/api/strategic.h"
#include "orchestrator/api/svcalloc.h"
#include "orchestrator/api/table.h"
#include "orchestrator/api/validate.h"
#include "orchestrator/api/watchcache.h"
#include "orchestrator/api/yaml.h"

#define REGISTRY "/registry/"
#define UPDATE_ATTEMPTS 8
/* Service writes that lose an allocation race: each retry waits for the
 * cache to show the winner, so every lost round means another write won;
 * many writers picking from a nearly full range may need more rounds. */
#define ALLOC_ATTEMPTS 32
/* How long a consistent list waits for the cache before reading the store. */
#define CONSISTENT_WAIT_MS 500
#define WATCH_DEFAULT_TIMEOUT_S 1800
/* A watcher this far behind is cut off; its client re-lists. */
#define WATCH_MAX_PENDING (64u * 1024 * 1024)

#define CT_JSON "application/json"
#define CT_TABLE "application/json;as=Table;v=v1;g=meta.k8s.io"

static const char *const builtin_namespaces[] = {"default", "kube-system", "kube-public",
						 "kube-node-lease", NULL};

struct api_server {
	uv_loop_t *loop;
	struct kv *kv;
	struct http_server *http;
	struct wc *cache;
	char address[128];
	char host[128];
	unsigned bookmark_ms;
	int inflight;
	bool closing;
	bool bootstrapped;
	int bootstrap_left;
	uv_timer_t bootstrap_timer;
	struct rq *watches;
	struct svc_ranges ranges;        /* service CIDR and node-port range */
	struct svc_keeper *keeper;       /* the kubernetes Service, repairs */
	void (*close_cb)(void *data);
	void *close_data;
};

enum verb { V_GET, V_LIST, V_WATCH, V_CREATE, V_UPDATE, V_PATCH, V_DELETE, V_DELETECOLL };

struct rq;
/* Builds the object to write from the current one (a private copy). Returns
 * the new object (a new reference), or NULL with *status set. */
typedef json_t *(*mutate_fn)(struct rq *q, json_t *cur, json_t **status);

struct rq {
	struct api_server *s;
	struct http_req *req;
	struct rq *next_watch;
	const struct api_resource *res;
	enum verb verb;
	char ns[256];
	char name[256];
	char sub[32];
	char key[640];
	char prefix[400];
	bool table;
	bool dry_run;
	int attempts;
	json_t *body;
	const char *patch_type;
	mutate_fn mutate;
	json_t *cur;
	int64_t cur_rev;
	json_t *next;
	int success_code;
	bool answer_scale;
	/* lists and watches */
	struct label_selector *lsel;
	struct field_selector *fsel;
	bool fsel_in_view;   /* the field selector reads only cached views */
	long limit;
	char *cont_start;
	int64_t cont_rev;
	int64_t list_rev;
	json_t *keys, *objs;
	/* watches */
	struct wc_watcher *watcher;
	/* updates: this attempt began from the watch cache's copy; the next
	 * ones read the store */
	bool from_cache;
	bool store_only;
	uv_timer_t timeout_timer, bookmark_timer;
	int open_handles;
	bool stream_open;
	bool stopped;
	int64_t after;
	/* deletes */
	json_t *opts;
	size_t idx;
	json_t *deleted;
	/* Service writes: the allocation compares and operations that go in
	 * the write's txn, and the object as it was before allocation (a
	 * create that loses a race plans again from it). */
	json_t *alloc_cmp, *alloc_ops, *pre_alloc;
};

/* ---- small helpers ---- */

static void now_rfc3339(char *buf, size_t len, long long offset_s)
{
	time_t t = time(NULL) + offset_s;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void random_bytes(uint8_t *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(p + got, n - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			/* Never expected; fall back to something that still varies. */
			for (; got < n; got++)
				p[got] = (uint8_t)rand();
			return;
		}
		got += (size_t)r;
	}
}

static void new_uid(char *buf, size_t len)
{
	uint8_t b[16];
	random_bytes(b, sizeof b);
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(buf, len,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
}

/* generateName's suffix: the alphabet Kubernetes uses (no vowels, no
 * look-alikes). */
static void random_suffix(char *buf)
{
	static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
	uint8_t b[5];
	random_bytes(b, sizeof b);
	for (int i = 0; i < 5; i++)
		buf[i] = alphabet[b[i] % (sizeof alphabet - 1)];
	buf[5] = '\0';
}

static json_t *b64_json(const char *s)
{
	size_t n = strlen(s);
	char *buf = malloc(b64_encoded_size(n));
	json_t *j;
	if (buf == NULL)
		return NULL;
	b64_encode((const uint8_t *)s, n, buf);
	j = json_string(buf);
	free(buf);
	return j;
}

/* The end of the range of keys that start with prefix. */
static void prefix_end(const char *prefix, char *buf, size_t len)
{
	size_t n = strlen(prefix);
	snprintf(buf, len, "%s", prefix);
	if (n > 0 && n < len)
		buf[n - 1]++;
}

static char *b64_decode_str(const char *s, size_t *len)
{
	char *out;
	long n;
	if (s == NULL)
		return NULL;
	out = malloc(b64_decoded_max(strlen(s)) + 1);
	if (out == NULL)
		return NULL;
	n = b64_decode(s, strlen(s), (uint8_t *)out);
	if (n < 0) {
		free(out);
		return NULL;
	}
	out[n] = '\0';
	if (len != NULL)
		*len = (size_t)n;
	return out;
}

static int64_t header_revision(json_t *answer)
{
	int64_t rev = 0;
	char errmsg[CAP_ERRMSG_SIZE];
	jsonx_get_i64(json_object_get(answer, "header"), "revision", &rev, errmsg);
	return rev;
}

static int64_t kv_i64(json_t *o, const char *name)
{
	int64_t v = 0;
	char errmsg[CAP_ERRMSG_SIZE];
	jsonx_get_i64(o, name, &v, errmsg);
	return v;
}

static void set_rv(json_t *obj, int64_t rev)
{
	char buf[32];
	json_t *meta = json_object_get(obj, "metadata");
	if (!json_is_object(meta)) {
		meta = json_object();
		json_object_set_new(obj, "metadata", meta);
	}
	snprintf(buf, sizeof buf, "%lld", (long long)rev);
	json_object_set_new(meta, "resourceVersion", json_string(buf));
}

/* A stored value (gateway kv object) as an object with its resourceVersion. */
static json_t *decode_value(json_t *kvo, int64_t *rev)
{
	size_t n;
	char *v = b64_decode_str(json_string_value(json_object_get(kvo, "value")), &n);
	json_t *obj;
	if (v == NULL)
		return NULL;
	obj = json_loadb(v, n, 0, NULL);
	free(v);
	if (!json_is_object(obj)) {
		json_decref(obj);
		return NULL;
	}
	*rev = kv_i64(kvo, "mod_revision");
	set_rv(obj, *rev);
	return obj;
}

/* The JSON we store: the object without resourceVersion, which is the
 * store's mod_revision and is set on the way out. */
static json_t *encode_value(json_t *obj)
{
	/* Shallow copies: only metadata's own member is dropped. */
	json_t *copy = json_copy(obj);
	json_t *meta = json_copy(json_object_get(obj, "metadata"));
	char *text;
	json_t *j;
	json_object_del(meta, "resourceVersion");
	json_object_set_new(copy, "metadata", meta);
	text = json_dumps(copy, JSON_COMPACT);
	json_decref(copy);
	if (text == NULL)
		return NULL;
	j = b64_json(text);
	free(text);
	return j;
}

static const char *meta_str(json_t *obj, const char *field)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), field));
}

static json_t *meta_of(json_t *obj)
{
	json_t *meta = json_object_get(obj, "metadata");
	if (!json_is_object(meta)) {
		meta = json_object();
		json_object_set_new(obj, "metadata", meta);
	}
	return meta;
}

static void make_key(char *buf, size_t len, const struct api_resource *r, const char *ns,
		     const char *name)
{
	if (r->namespaced)
		snprintf(buf, len, REGISTRY "%s/%s/%s", r->plural, ns, name);
	else
		snprintf(buf, len, REGISTRY "%s/%s", r->plural, name);
}

/* ---- answering ---- */

static void rq_free(struct rq *q)
{
	json_decref(q->body);
	json_decref(q->cur);
	json_decref(q->next);
	json_decref(q->keys);
	json_decref(q->objs);
	json_decref(q->opts);
	json_decref(q->deleted);
	json_decref(q->alloc_cmp);
	json_decref(q->alloc_ops);
	json_decref(q->pre_alloc);
	label_selector_free(q->lsel);
	field_selector_free(q->fsel);
	free(q->cont_start);
	free(q);
}

static void maybe_finish_close(struct api_server *s);
static void on_bootstrap_timer(uv_timer_t *t);

static void rq_done(struct rq *q)
{
	struct api_server *s = q->s;
	rq_free(q);
	s->inflight--;
	maybe_finish_close(s);
}

static void reply_raw(struct http_req *req, int code, const char *ctype, json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT);
	if (text == NULL) {
		http_reply(req, 500, "text/plain", "out of memory\n", 14);
		return;
	}
	http_reply(req, code, ctype, text, strlen(text));
	free(text);
}

/* Answers with obj (stolen) and frees q. */
static void reply(struct rq *q, int code, json_t *obj)
{
	reply_raw(q->req, code, CT_JSON, obj);
	json_decref(obj);
	rq_done(q);
}

static void reply_status(struct rq *q, json_t *status)
{
	reply(q, api_status_code(status), status);
}

static void reply_store_error(struct rq *q, json_t *err)
{
	const char *msg = json_string_value(json_object_get(err, "message"));
	json_int_t code = json_integer_value(json_object_get(err, "code"));
	if (code == GRPC_DEADLINE_EXCEEDED) {
		reply_status(q, api_status_printf(504, "Timeout", "the store did not answer in time: %s",
						  msg ? msg : ""));
		return;
	}
	reply_status(q, api_status_printf(500, "InternalError",
					  "Internal error occurred: store: %s", msg ? msg : "unknown"));
}

/* The object as the client asked for it: itself, or a one-row Table. */
static void reply_object(struct rq *q, int code, json_t *obj)
{
	if (q->table) {
		json_t *items = json_pack("[O]", obj);
		json_t *t = table_build(q->res->plural, items, meta_str(obj, "resourceVersion"),
					time(NULL));
		json_decref(items);
		json_decref(obj);
		reply_raw(q->req, code, CT_TABLE, t);
		json_decref(t);
		rq_done(q);
		return;
	}
	reply(q, code, obj);
}

static bool accepts(struct http_req *req, const char *what)
{
	const char *a = http_req_header(req, "Accept");
	return a != NULL && strstr(a, what) != NULL;
}

/* ---- store calls ---- */

static int range_key(struct rq *q, const char *key, kv_cb cb)
{
	json_t *req = json_pack("{s:o}", "key", b64_json(key));
	int rv = kv_call(q->s->kv, KV_RANGE, req, cb, q);
	json_decref(req);
	return rv;
}

static void call_or_fail(struct rq *q, int rv)
{
	if (rv != 0)
		reply_status(q, api_status_printf(503, "ServiceUnavailable",
						  "the store is unavailable: %s", cap_strerror(rv)));
}

static json_t *cmp_mod(const char *key, int64_t rev)
{
	return json_pack("{s:o, s:s, s:s, s:o}", "key", b64_json(key), "target", "MOD", "result",
			 "EQUAL", "mod_revision", jsonx_i64(rev));
}

static json_t *op_put(const char *key, json_t *value)
{
	return json_pack("{s:{s:o, s:o}}", "request_put", "key", b64_json(key), "value", value);
}

static json_t *op_delete(const char *key, const char *end)
{
	json_t *o = json_pack("{s:{s:o}}", "request_delete_range", "key", b64_json(key));
	if (end != NULL)
		json_object_set_new(json_object_get(o, "request_delete_range"), "range_end",
				    b64_json(end));
	return o;
}

static json_t *op_range_count(const char *key)
{
	return json_pack("{s:{s:o, s:b}}", "request_range", "key", b64_json(key), "count_only", 1);
}

/* ---- body parsing ---- */

static json_t *parse_body(struct rq *q, json_t **status)
{
	const char *ct = http_req_header(q->req, "Content-Type");
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_error_t jerr;
	json_t *obj;
	if (q->req->body_len == 0) {
		*status = api_status_bad_request("the request body is empty");
		return NULL;
	}
	if (ct != NULL && strstr(ct, "protobuf") != NULL) {
		/* kubectl 1.32+ `create service|namespace` speak protobuf. */
		const uint8_t *raw;
		size_t raw_len;
		char kind[64], av[64];
		if (!pb_is_protobuf(ct) ||
		    pb_unwrap((const uint8_t *)q->req->body, q->req->body_len, &raw, &raw_len, kind,
			      sizeof kind, av, sizeof av) != 0 ||
		    !pb_object_known(av, kind)) {
			*status = api_status_new(415, "UnsupportedMediaType",
				"the body of the request was in an unknown format - accepted media "
				"types include: application/json, application/yaml", NULL);
			return NULL;
		}
		obj = pb_object_to_json(av, kind, raw, raw_len, errmsg);
		if (obj == NULL) {
			*status = api_status_bad_request(errmsg);
			return NULL;
		}
		return obj;
	}
	if (ct != NULL && strstr(ct, "yaml") != NULL) {
		obj = yaml_to_json(q->req->body, q->req->body_len, errmsg);
		if (obj == NULL) {
			char msg[CAP_ERRMSG_SIZE + 64];
			snprintf(msg, sizeof msg, "error converting YAML to JSON: %s", errmsg);
			*status = api_status_bad_request(msg);
			return NULL;
		}
	} else {
		obj = json_loadb(q->req->body, q->req->body_len, 0, &jerr);
		if (obj == NULL) {
			char msg[400];
			snprintf(msg, sizeof msg,
				 "couldn't get version/kind; json parse error: %s (line %d, column %d)",
				 jerr.text, jerr.line, jerr.column);
			*status = api_status_bad_request(msg);
			return NULL;
		}
	}
	if (!json_is_object(obj)) {
		json_decref(obj);
		*status = api_status_bad_request(
			"couldn't get version/kind; json parse error: the body is not a JSON object");
		return NULL;
	}
	return obj;
}

/* Checks apiVersion and kind of a body against the path's resource. As the
 * real server does, a body without them takes them from the path (obj is
 * filled in place). */
static json_t *check_type(const struct api_resource *r, json_t *obj, const char *kind,
			  const char *api_version)
{
	const char *k = json_string_value(json_object_get(obj, "kind"));
	const char *av = json_string_value(json_object_get(obj, "apiVersion"));
	char msg[512];
	(void)r;
	if (av != NULL && av[0] != '\0' && strcmp(av, api_version) != 0) {
		snprintf(msg, sizeof msg,
			 "the API version in the data (%s) does not match the expected API version (%s)",
			 av, api_version);
		return api_status_bad_request(msg);
	}
	if (k != NULL && k[0] != '\0' && strcmp(k, kind) != 0) {
		snprintf(msg, sizeof msg,
			 "the kind in the data (%s) does not match the expected kind (%s)", k, kind);
		return api_status_bad_request(msg);
	}
	if (k == NULL || k[0] == '\0')
		json_object_set_new(obj, "kind", json_string(kind));
	if (av == NULL || av[0] == '\0')
		json_object_set_new(obj, "apiVersion", json_string(api_version));
	return NULL;
}

static json_t *check_body_type(struct rq *q, json_t *obj)
{
	char av[128];
	api_resource_api_version(q->res, av, sizeof av);
	return check_type(q->res, obj, q->res->kind, av);
}

/* ---- create ---- */

static json_t *required_name(void)
{
	return json_pack("[{s:s, s:s, s:s}]", "reason", "FieldValueRequired", "message",
			 "Required value: name or generateName is required", "field",
			 "metadata.name");
}

/* Adds a metadata.name cause when the name is not a DNS-1123 name (a label
 * for namespaces, a subdomain for the rest) and validation did not already
 * say so. Takes and returns the causes (may be NULL). */
static json_t *check_name(const struct api_resource *r, const char *name, json_t *causes)
{
	const char *why;
	size_t i;
	json_t *c;
	char msg[768];
	if (name == NULL || name[0] == '\0')
		return causes;
	json_array_foreach(causes, i, c) {
		const char *f = json_string_value(json_object_get(c, "field"));
		if (f != NULL && strcmp(f, "metadata.name") == 0)
			return causes;
	}
	why = strcmp(r->plural, "namespaces") == 0 ? validate_dns1123_label(name) :
						      validate_dns1123_subdomain(name);
	if (why == NULL)
		return causes;
	if (causes == NULL)
		causes = json_array();
	snprintf(msg, sizeof msg, "Invalid value: \"%s\": %s", name, why);
	json_array_append_new(causes, json_pack("{s:s, s:s, s:s}", "reason", "FieldValueInvalid",
						"message", msg, "field", "metadata.name"));
	return causes;
}

/* Fills what only the server sets on a new object. */
static void stamp_new(struct rq *q, json_t *obj)
{
	json_t *meta = meta_of(obj);
	char uid[40], ts[32];
	new_uid(uid, sizeof uid);
	now_rfc3339(ts, sizeof ts, 0);
	json_object_set_new(meta, "uid", json_string(uid));
	json_object_set_new(meta, "creationTimestamp", json_string(ts));
	json_object_del(meta, "resourceVersion");
	json_object_del(meta, "deletionTimestamp");
	json_object_del(meta, "deletionGracePeriodSeconds");
	json_object_del(meta, "managedFields");
	if (q->res->tracks_generation)
		json_object_set_new(meta, "generation", json_integer(1));
	else
		json_object_del(meta, "generation");
	if (strcmp(q->res->plural, "namespaces") == 0) {
		json_t *st = json_object_get(obj, "status");
		if (!json_is_object(st)) {
			st = json_object();
			json_object_set_new(obj, "status", st);
		}
		json_object_set_new(st, "phase", json_string("Active"));
	}
}

/* Who is writing, as metadata.managedFields records it. */
static void writer_of(struct rq *q, struct managedfields_writer *w)
{
	char av[96], ts[32];
	api_resource_api_version(q->res, av, sizeof av);
	now_rfc3339(ts, sizeof ts, 0);
	managedfields_writer_init(w, http_req_query(q->req, "fieldManager"),
				  http_req_header(q->req, "User-Agent"), av, q->sub, ts);
}

static bool is_apply(const struct rq *q)
{
	return q->patch_type != NULL && strstr(q->patch_type, "apply-patch") != NULL;
}

/* Records in next's managedFields who wrote which of its fields over cur
 * (NULL on a create). An apply to an existing object did so while merging;
 * a binding is not recorded, as in Kubernetes. */
static void record_fields(struct rq *q, json_t *cur, json_t *next)
{
	struct managedfields_writer w;
	if (strcmp(q->sub, "binding") == 0 || (cur != NULL && is_apply(q) && q->sub[0] == '\0'))
		return;
	writer_of(q, &w);
	if (cur == NULL && is_apply(q))
		managedfields_apply_new(next, q->body, &w,
					(q->res->subresources & API_SUB_STATUS) != 0);
	else
		managedfields_update(cur, next, &w);
}

/* ---- service allocations (svcalloc.h) ---- */

static bool is_services(const struct rq *q)
{
	return strcmp(q->res->plural, "services") == 0 && q->res->group[0] == '\0';
}

/* Plans q->next's cluster IP and node ports over q->cur (NULL: a create);
 * the compares and operations go into q's txn. Returns a Status or NULL. */
static json_t *plan_allocations(struct rq *q)
{
	json_decref(q->alloc_cmp);
	json_decref(q->alloc_ops);
	q->alloc_cmp = json_array();
	q->alloc_ops = json_array();
	return svcalloc_plan(&q->s->ranges, q->s->cache, q->res, q->ns,
			     meta_str(q->next, "name") ?: q->name, q->cur, q->next, q->alloc_cmp,
			     q->alloc_ops);
}

static void append_all(json_t *to, json_t *from)
{
	size_t i;
	json_t *v;
	json_array_foreach(from, i, v)
		json_array_append(to, v);
}

/* A txn with allocations failed: once the cache shows what won, run again
 * (the plan then sees the value taken). */
static void after_cache(struct rq *q, json_t *answer, wc_wait_fn then)
{
	if (wc_wait(q->s->cache, header_revision(answer), 3000, then, q) != 0)
		then(q, false);
}

static void create_txn(struct rq *q);

static void on_create_retry(void *data, bool ok)
{
	struct rq *q = data;
	json_t *st;
	(void)ok;
	json_decref(q->next);
	q->next = json_deep_copy(q->pre_alloc);
	st = plan_allocations(q);
	if (st != NULL) {
		reply_status(q, st);
		return;
	}
	create_txn(q);
}

static void on_create_txn(void *data, json_t *answer, json_t *err)
{
	struct rq *q = data;
	json_t *resp;
	if (err != NULL) {
		reply_store_error(q, err);
		return;
	}
	if (json_is_true(json_object_get(answer, "succeeded"))) {
		json_t *obj = q->next;
		q->next = NULL;
		set_rv(obj, header_revision(answer));
		reply_object(q, q->success_code ? q->success_code : 201, obj);
		return;
	}
	resp = json_object_get(answer, "responses");
	if (q->res->namespaced &&
	    kv_i64(json_object_get(json_array_get(resp, 0), "response_range"), "count") == 0) {
		const struct api_resource *nsr = api_resource_find("", "v1", "namespaces");
		reply_status(q, api_status_not_found(nsr, q->ns));
		return;
	}
	if (q->alloc_cmp != NULL &&
	    kv_i64(json_object_get(json_array_get(resp, json_array_size(resp) - 1),
				   "response_range"), "count") == 0 &&
	    q->attempts++ < ALLOC_ATTEMPTS) {
		/* Not there, so an address or port went to someone else first. */
		after_cache(q, answer, on_create_retry);
		return;
	}
	if (meta_str(q->body, "name") == NULL && q->attempts++ < 3) {
		/* A generated name collided: try another. */
		create_txn(q);
		return;
	}
	reply_status(q, api_status_already_exists(q->res, meta_str(q->next, "name")));
}

static void create_txn(struct rq *q)
{
	json_t *obj = q->next, *meta = meta_of(obj), *txn, *cmp, *fail, *value;
	const char *name = json_string_value(json_object_get(meta, "name"));
	char nskey[400];
	int rv;
	if (meta_str(q->body, "name") == NULL || meta_str(q->body, "name")[0] == '\0') {
		const char *gen = meta_str(q->body, "generateName");
		char nm[300], suf[6];
		random_suffix(suf);
		snprintf(nm, sizeof nm, "%s%s", gen ? gen : "", suf);
		json_object_set_new(meta, "name", json_string(nm));
		name = json_string_value(json_object_get(meta, "name"));
	}
	make_key(q->key, sizeof q->key, q->res, q->ns, name);
	if (q->dry_run) {
		json_t *o = q->next;
		q->next = NULL;
		reply_object(q, 201, o);
		return;
	}
	cmp = json_array();
	fail = json_array();
	if (q->res->namespaced) {
		snprintf(nskey, sizeof nskey, REGISTRY "namespaces/%s", q->ns);
		json_array_append_new(cmp, json_pack("{s:o, s:s, s:s, s:o}", "key", b64_json(nskey),
						     "target", "CREATE", "result", "GREATER",
						     "create_revision", jsonx_i64(0)));
		json_array_append_new(fail, op_range_count(nskey));
	}
	json_array_append_new(cmp, json_pack("{s:o, s:s, s:s, s:o}", "key", b64_json(q->key),
					     "target", "CREATE", "result", "EQUAL",
					     "create_revision", jsonx_i64(0)));
	value = encode_value(obj);
	if (q->alloc_cmp != NULL) {
		append_all(cmp, q->alloc_cmp);
		json_array_append_new(fail, op_range_count(q->key));
	}
	txn = json_pack("{s:o, s:[o], s:o}", "compare", cmp, "success", op_put(q->key, value),
			"failure", fail);
	if (q->alloc_ops != NULL)
		append_all(json_object_get(txn, "success"), q->alloc_ops);
	rv = kv_call(q->s->kv, KV_TXN, txn, on_create_txn, q);
	json_decref(txn);
	call_or_fail(q, rv);
}

/* POST of a collection, or apply of a missing object: obj is q->body. */
static void create_object(struct rq *q)
{
	json_t *obj, *meta, *causes;
	const char *ns, *name, *gen;
	char name_buf[256], gen_buf[256];
	obj = json_deep_copy(q->body);
	meta = meta_of(obj);
	ns = json_string_value(json_object_get(meta, "namespace"));
	if (q->res->namespaced) {
		if (ns != NULL && ns[0] != '\0' && strcmp(ns, q->ns) != 0) {
			json_decref(obj);
			reply_status(q, api_status_bad_request("the namespace of the provided object "
				"does not match the namespace sent on the request"));
			return;
		}
		json_object_set_new(meta, "namespace", json_string(q->ns));
	} else {
		json_object_del(meta, "namespace");
	}
	/* Copies: defaulting may replace the strings these point into. */
	snprintf(name_buf, sizeof name_buf, "%s",
		 json_string_value(json_object_get(meta, "name")) ?: "");
	snprintf(gen_buf, sizeof gen_buf, "%s",
		 json_string_value(json_object_get(meta, "generateName")) ?: "");
	name = name_buf[0] != '\0' ? name_buf : NULL;
	gen = gen_buf[0] != '\0' ? gen_buf : NULL;
	if ((name == NULL || name[0] == '\0') && (gen == NULL || gen[0] == '\0')) {
		json_decref(obj);
		reply_status(q, api_status_invalid(q->res, "", required_name()));
		return;
	}
	if (q->name[0] != '\0' && name != NULL && strcmp(name, q->name) != 0) {
		char msg[600];
		snprintf(msg, sizeof msg,
			 "the name of the object (%s) does not match the name on the URL (%s)", name,
			 q->name);
		json_decref(obj);
		reply_status(q, api_status_bad_request(msg));
		return;
	}
	stamp_new(q, obj);
	defaults_apply(q->res->plural, obj);
	if (name == NULL) {
		/* Validate with a stand-in so generateName's prefix is checked. */
		char probe[300];
		snprintf(probe, sizeof probe, "%sxxxxx", gen);
		meta = meta_of(obj);
		json_object_set_new(meta, "name", json_string(probe));
		causes = check_name(q->res, probe, validate_object(q->res->plural, obj, NULL));
		json_object_del(meta, "name");
	} else {
		causes = check_name(q->res, name, validate_object(q->res->plural, obj, NULL));
	}
	if (causes != NULL) {
		json_decref(obj);
		reply_status(q, api_status_invalid(q->res, name ? name : "", causes));
		return;
	}
	record_fields(q, NULL, obj);
	q->next = obj;
	if (is_services(q)) {
		json_t *st;
		q->pre_alloc = json_deep_copy(obj);
		st = plan_allocations(q);
		if (st != NULL) {
			reply_status(q, st);
			return;
		}
	}
	create_txn(q);
}

static void handle_create(struct rq *q)
{
	json_t *st = NULL;
	q->body = parse_body(q, &st);
	if (q->body == NULL) {
		reply_status(q, st);
		return;
	}
	st = check_body_type(q, q->body);
	if (st != NULL) {
		reply_status(q, st);
		return;
	}
	create_object(q);
}

/* ---- get ---- */

static json_t *scale_of(struct rq *q, json_t *obj)
{
	json_t *meta = json_object_get(obj, "metadata");
	json_t *spec = json_object_get(obj, "spec");
	json_t *status = json_object_get(obj, "status");
	json_t *sel = json_object_get(spec, "selector");
	json_t *scale, *smeta, *sst;
	struct label_selector *ls = NULL;
	char errmsg[CAP_ERRMSG_SIZE];
	(void)q;
	scale = json_pack("{s:s, s:s}", "kind", "Scale", "apiVersion", "autoscaling/v1");
	smeta = json_object();
	const char *fields[] = {"name", "namespace", "uid", "resourceVersion", "creationTimestamp",
				NULL};
	for (int i = 0; fields[i] != NULL; i++) {
		json_t *v = json_object_get(meta, fields[i]);
		if (v != NULL)
			json_object_set(smeta, fields[i], v);
	}
	json_object_set_new(scale, "metadata", smeta);
	json_object_set_new(scale, "spec", json_pack("{s:I}", "replicas",
		(json_int_t)json_integer_value(json_object_get(spec, "replicas"))));
	sst = json_pack("{s:I}", "replicas",
			(json_int_t)json_integer_value(json_object_get(status, "replicas")));
	if (sel != NULL && label_selector_from_json(sel, &ls, errmsg) == 0) {
		char *text = label_selector_string(ls);
		if (text != NULL)
			json_object_set_new(sst, "selector", json_string(text));
		free(text);
		label_selector_free(ls);
	}
	json_object_set_new(scale, "status", sst);
	return scale;
}

static void on_get(void *data, json_t *answer, json_t *err)
{
	struct rq *q = data;
	json_t *kvs, *obj;
	int64_t rev;
	if (err != NULL) {
		reply_store_error(q, err);
		return;
	}
	kvs = json_object_get(answer, "kvs");
	if (json_array_size(kvs) == 0) {
		reply_status(q, api_status_not_found(q->res, q->name));
		return;
	}
	obj = decode_value(json_array_get(kvs, 0), &rev);
	if (obj == NULL) {
		reply_status(q, api_status_printf(500, "InternalError",
						  "Internal error occurred: stored %s is not JSON", q->key));
		return;
	}
	if (strcmp(q->sub, "scale") == 0) {
		json_t *scale = scale_of(q, obj);
		json_decref(obj);
		reply(q, 200, scale);
		return;
	}
	reply_object(q, 200, obj);
}

static void handle_get(struct rq *q)
{
	call_or_fail(q, range_key(q, q->key, on_get));
}

/* ---- list ---- */

static json_t *parse_selectors(struct rq *q)
{
	const char *ls = http_req_query(q->req, "labelSelector");
	const char *fs = http_req_query(q->req, "fieldSelector");
	char errmsg[CAP_ERRMSG_SIZE] = "";
	if (label_selector_parse(ls, &q->lsel, errmsg) != 0) {
		q->lsel = NULL;
		return api_status_bad_request(errmsg[0] ? errmsg : "unable to parse labelSelector");
	}
	if (field_selector_parse(fs, &q->fsel, errmsg) != 0) {
		q->fsel = NULL;
		return api_status_bad_request(errmsg[0] ? errmsg : "unable to parse fieldSelector");
	}
	q->fsel_in_view = cobj_view_covers(q->fsel);
	return NULL;
}

static bool matches(struct rq *q, json_t *obj)
{
	if (obj == NULL)
		return false;
	if (q->name[0] != '\0' && strcmp(meta_str(obj, "name") ?: "", q->name) != 0)
		return false;
	if (q->lsel != NULL &&
	    !label_selector_matches(q->lsel, json_object_get(json_object_get(obj, "metadata"),
							     "labels")))
		return false;
	if (q->fsel != NULL && !field_selector_matches(q->fsel, obj))
		return false;
	return true;
}

/* matches() over a cached object: its small view when that holds every
 * field the selectors read, else the whole object parsed from its text. */
static bool matches_cached(struct rq *q, const struct cobj *o)
{
	json_t *tree;
	bool ok;
	if (o == NULL)
		return false;
	if (q->fsel == NULL || q->fsel_in_view)
		return matches(q, cobj_view(o));
	tree = cobj_tree(o);
	ok = matches(q, tree);
	json_decref(tree);
	return ok;
}

/* A boolean query parameter as Go's strconv.ParseBool reads it (clients
 * send "true", "True" or "1"). */
static bool query_true(struct http_req *req, const char *name)
{
	static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True", NULL};
	const char *v = http_req_query(req, name);
	for (int i = 0; v != NULL && yes[i] != NULL; i++)
		if (strcmp(v, yes[i]) == 0)
			return true;
	return false;
}

static bool has_query(struct http_req *req, const char *name)
{
	const char *v = http_req_query(req, name);
	return v != NULL && v[0] != '\0';
}

static char *continue_token(const char *key, int64_t rev)
{
	json_t *t = json_pack("{s:s, s:I, s:s}", "v", "meta.k8s.io/v1", "rv", (json_int_t)rev,
			      "start", key);
	char *text = json_dumps(t, JSON_COMPACT);
	char *out = NULL;
	json_decref(t);
	if (text != NULL) {
		out = malloc(b64_encoded_size(strlen(text)));
		if (out != NULL)
			b64_encode((const uint8_t *)text, strlen(text), out);
	}
	free(text);
	return out;
}

static bool parse_continue(struct rq *q, const char *tok)
{
	size_t n;
	char *text = b64_decode_str(tok, &n);
	json_t *t;
	const char *start;
	json_int_t rv;
	if (text == NULL)
		return false;
	t = json_loadb(text, n, 0, NULL);
	free(text);
	start = json_string_value(json_object_get(t, "start"));
	rv = json_integer_value(json_object_get(t, "rv"));
	if (start == NULL || rv <= 0 || strncmp(start, q->prefix, strlen(q->prefix)) != 0) {
		json_decref(t);
		return false;
	}
	q->cont_start = strdup(start);
	q->cont_rev = rv;
	json_decref(t);
	return true;
}

static void list_kind(const struct api_resource *r, char *buf, size_t len)
{
	snprintf(buf, len, "%sList", r->kind);
}

/* Answers the list from q->keys/q->objs (sorted by key) at q->list_rev. */
static void finish_list(struct rq *q)
{
	json_t *items = json_array(), *meta = json_object(), *out;
	size_t i, n = json_array_size(q->objs);
	char rvs[32], kind[96], av[96];
	char *cont = NULL;
	long remaining = -1;
	for (i = 0; i < n; i++) {
		json_t *obj = json_array_get(q->objs, i);
		if (q->limit > 0 && (long)json_array_size(items) >= q->limit)
			break;
		if (matches(q, obj))
			json_array_append(items, obj);
	}
	if (i < n) {
		cont = continue_token(json_string_value(json_array_get(q->keys, i)), q->list_rev);
		/* Kubernetes counts what is left only for unfiltered lists. */
		if (!has_query(q->req, "labelSelector") && !has_query(q->req, "fieldSelector"))
			remaining = (long)(n - i);
	}
	snprintf(rvs, sizeof rvs, "%lld", (long long)q->list_rev);
	if (q->table) {
		out = table_build(q->res->plural, items, rvs, time(NULL));
		json_decref(items);
		json_decref(meta);
		meta = json_object_get(out, "metadata");
		if (cont != NULL)
			json_object_set_new(meta, "continue", json_string(cont));
		if (remaining > 0)
			json_object_set_new(meta, "remainingItemCount", json_integer(remaining));
		free(cont);
		reply_raw(q->req, 200, CT_TABLE, out);
		json_decref(out);
		rq_done(q);
		return;
	}
	json_object_set_new(meta, "resourceVersion", json_string(rvs));
	if (cont != NULL)
		json_object_set_new(meta, "continue", json_string(cont));
	if (remaining > 0)
		json_object_set_new(meta, "remainingItemCount", json_integer(remaining));
	free(cont);
	list_kind(q->res, kind, sizeof kind);
	api_resource_api_version(q->res, av, sizeof av);
	out = json_pack("{s:s, s:s, s:o, s:o}", "kind", kind, "apiVersion", av, "metadata", meta,
			"items", items);
	reply(q, 200, out);
}

/* What a list from the cache borrows from it while it is answered (in the
 * same loop turn, so the cache cannot change meanwhile). */
struct cached_items {
	const char **keys;
	struct cobj **objs;
	size_t n, cap;
	bool failed;
};

static bool collect_item(void *data, const char *key, struct cobj *obj, int64_t rev)
{
	struct cached_items *ci = data;
	(void)rev;
	if (ci->n == ci->cap) {
		size_t ncap = ci->cap ? ci->cap * 2 : 64;
		const char **nk = realloc(ci->keys, ncap * sizeof *nk);
		struct cobj **no;
		if (nk != NULL)
			ci->keys = nk;
		no = nk != NULL ? realloc(ci->objs, ncap * sizeof *no) : NULL;
		if (no == NULL) {
			ci->failed = true;
			return false;
		}
		ci->objs = no;
		ci->cap = ncap;
	}
	ci->keys[ci->n] = key;
	ci->objs[ci->n++] = obj;
	return true;
}

/* The list as JSON, spliced from the cached texts: the same bytes as
 * finish_list's reply, without building and serializing a tree per item. */
static void reply_cached_list(struct rq *q, struct cached_items *ci)
{
	json_t *meta = json_object();
	size_t i, k, nsel = 0, total, off;
	size_t *sel = malloc((ci->n ? ci->n : 1) * sizeof *sel);
	char rvs[32], kind[96], av[96], head[256];
	char *cont = NULL, *mtext = NULL, *buf = NULL;
	long remaining = -1;
	int hlen;
	if (sel == NULL || meta == NULL)
		goto oom;
	for (i = 0; i < ci->n; i++) {
		if (q->limit > 0 && (long)nsel >= q->limit)
			break;
		if (matches_cached(q, ci->objs[i]))
			sel[nsel++] = i;
	}
	if (i < ci->n) {
		cont = continue_token(ci->keys[i], q->list_rev);
		/* Kubernetes counts what is left only for unfiltered lists. */
		if (!has_query(q->req, "labelSelector") && !has_query(q->req, "fieldSelector"))
			remaining = (long)(ci->n - i);
	}
	snprintf(rvs, sizeof rvs, "%lld", (long long)q->list_rev);
	json_object_set_new(meta, "resourceVersion", json_string(rvs));
	if (cont != NULL)
		json_object_set_new(meta, "continue", json_string(cont));
	if (remaining > 0)
		json_object_set_new(meta, "remainingItemCount", json_integer(remaining));
	free(cont);
	mtext = json_dumps(meta, JSON_COMPACT);
	if (mtext == NULL)
		goto oom;
	list_kind(q->res, kind, sizeof kind);
	api_resource_api_version(q->res, av, sizeof av);
	hlen = snprintf(head, sizeof head, "{\"kind\":\"%s\",\"apiVersion\":\"%s\",\"metadata\":",
			kind, av);
	total = (size_t)hlen + strlen(mtext) + sizeof ",\"items\":[]}";
	for (k = 0; k < nsel; k++)
		total += cobj_len(ci->objs[sel[k]]) + 1;
	buf = malloc(total);
	if (buf == NULL)
		goto oom;
	off = (size_t)snprintf(buf, total, "%s%s,\"items\":[", head, mtext);
	for (k = 0; k < nsel; k++) {
		const struct cobj *o = ci->objs[sel[k]];
		if (k > 0)
			buf[off++] = ',';
		memcpy(buf + off, cobj_text(o), cobj_len(o));
		off += cobj_len(o);
	}
	memcpy(buf + off, "]}", 2);
	off += 2;
	http_reply(q->req, 200, CT_JSON, buf, off);
	free(buf);
	free(mtext);
	free(sel);
	json_decref(meta);
	rq_done(q);
	return;
oom:
	free(mtext);
	free(sel);
	json_decref(meta);
	reply_status(q, api_status_printf(500, "InternalError", "out of memory"));
}

static void list_from_cache(struct rq *q)
{
	struct cached_items ci = {0};
	q->list_rev = wc_revision(q->s->cache);
	wc_range_cached(q->s->cache, q->prefix, NULL, collect_item, &ci);
	if (ci.failed) {
		reply_status(q, api_status_printf(500, "InternalError", "out of memory"));
	} else if (q->table) {
		/* A Table is built from trees (and lists for people are small). */
		q->keys = json_array();
		q->objs = json_array();
		for (size_t i = 0; i < ci.n; i++) {
			json_array_append_new(q->keys, json_string(ci.keys[i]));
			json_array_append_new(q->objs, cobj_tree(ci.objs[i]));
		}
		finish_list(q);
	} else {
		reply_cached_list(q, &ci);
	}
	free(ci.keys);
	free(ci.objs);
}

static void on_direct_range(void *data, json_t *answer, json_t *err)
{
	struct rq *q = data;
	json_t *kvo;
	size_t i;
	if (err != NULL) {
		if (json_integer_value(json_object_get(err, "code")) == GRPC_OUT_OF_RANGE &&
		    q->cont_start != NULL) {
			reply_status(q, api_status_new(410, "Expired",
				"The provided continue parameter is too old to display a consistent "
				"list result. You can start a new list without the continue parameter, "
				"or use the continue token in this response to retrieve the remainder "
				"of the results. Continuing with the provided token results in an "
				"inconsistent list - objects that were created, modified, or deleted "
				"between the time the first chunk was returned and now may show up in "
				"the list.", NULL));
			return;
		}
		reply_store_error(q, err);
		return;
	}
	q->keys = json_array();
	q->objs = json_array();
	json_array_foreach(json_object_get(answer, "kvs"), i, kvo) {
		int64_t rev;
		char *key = b64_decode_str(json_string_value(json_object_get(kvo, "key")), NULL);
		json_t *obj = decode_value(kvo, &rev);
		if (key != NULL && obj != NULL) {
			json_array_append_new(q->keys, json_string(key));
			json_array_append_new(q->objs, obj);
		} else {
			json_decref(obj);
		}
		free(key);
	}
	q->list_rev = q->cont_rev > 0 ? q->cont_rev : header_revision(answer);
	finish_list(q);
}

/* The list straight from the store (a continue page, or when the cache is
 * behind), at q->cont_rev if set. */
static void list_from_store(struct rq *q)
{
	char end[400];
	json_t *req;
	int rv;
	prefix_end(q->prefix, end, sizeof end);
	req = json_pack("{s:o, s:o}", "key", b64_json(q->cont_start ? q->cont_start : q->prefix),
			"range_end", b64_json(end));
	if (q->cont_rev > 0)
		json_object_set_new(req, "revision", jsonx_i64(q->cont_rev));
	rv = kv_call(q->s->kv, KV_RANGE, req, on_direct_range, q);
	json_decref(req);
	call_or_fail(q, rv);
}

static void on_list_wait(void *data, bool ok)
{
	struct rq *q = data;
	if (ok)
		list_from_cache(q);
	else
		list_from_store(q);
}

static void on_list_revision(void *data, json_t *answer, json_t *err)
{
	struct rq *q = data;
	int rv;
	if (err != NULL) {
		reply_store_error(q, err);
		return;
	}
	rv = wc_wait(q->s->cache, header_revision(answer), CONSISTENT_WAIT_MS, on_list_wait, q);
	if (rv != 0)
		list_from_store(q);
}

static void handle_list(struct rq *q)
{
	const char *limit = http_req_query(q->req, "limit");
	const char *cont = http_req_query(q->req, "continue");
	const char *rvq = http_req_query(q->req, "resourceVersion");
	json_t *st = parse_selectors(q);
	int rv;
	if (st != NULL) {
		reply_status(q, st);
		return;
	}
	if (limit != NULL)
		q->limit = strtol(limit, NULL, 10);
	if (cont != NULL && cont[0] != '\0') {
		if (!parse_continue(q, cont)) {
			reply_status(q, api_status_bad_request("continue key is not valid"));
			return;
		}
		list_from_store(q);
		return;
	}
	if (rvq != NULL && rvq[0] != '\0') {
		char *endp;
		long long want = strtoll(rvq, &endp, 10);
		if (*endp != '\0' || want < 0) {
			reply_status(q, api_status_bad_request("resourceVersion: Invalid value"));
			return;
		}
		/* "0" is any recent state; a number is "not older than". */
		rv = wc_wait(q->s->cache, want > 0 ? want : 1, want > 0 ? 3000 : 30000,
			     on_list_wait, q);
		if (rv != 0)
			list_from_store(q);
		return;
	}
	/* Consistent: the store's current revision, then the cache once it is
	 * there (a count-only range costs no values). */
	{
		json_t *req = json_pack("{s:o, s:b}", "key", b64_json(REGISTRY), "count_only", 1);
		rv = kv_call(q->s->kv, KV_RANGE, req, on_list_revision, q);
		json_decref(req);
		call_or_fail(q, rv);
	}
}

/* ---- watch ---- */

static void watch_stop(struct rq *q);

static void watch_handle_closed(uv_handle_t *h)
{
	struct rq *q = h->data;
	struct api_server *s = q->s;
	/* A streaming watch left the in-flight count when it began. */
	if (--q->open_handles == 0) {
		rq_free(q);
		maybe_finish_close(s);
	}
}

static void watch_unlink(struct rq *q)
{
	struct rq **pp;
	for (pp = &q->s->watches; *pp != NULL; pp = &(*pp)->next_watch)
		if (*pp == q) {
			*pp = q->next_watch;
			break;
		}
}

/* Ends the stream and frees q once the timers are closed. */
static void watch_stop(struct rq *q)
{
	if (q->stopped)
		return;
	q->stopped = true;
	watch_unlink(q);
	if (q->watcher != NULL) {
		wc_unwatch(q->s->cache, q->watcher);
		q->watcher = NULL;
	}
	if (q->stream_open)
		http_stream_end(q->req);
	q->open_handles = 2;
	uv_close((uv_handle_t *)&q->timeout_timer, watch_handle_closed);
	uv_close((uv_handle_t *)&q->bookmark_timer, watch_handle_closed);
}

static void watch_line_sent(struct rq *q, int rv)
{
	if (rv != 0 || http_stream_pending(q->req) > WATCH_MAX_PENDING) {
		if (rv == 0)
			log_warn("watch on %s: the client is too slow; ending its stream", q->prefix);
		watch_stop(q);
	}
}

static void watch_write(struct rq *q, const char *type, json_t *obj);

/* A watch event of a cached object: its text spliced into the event line
 * (the same bytes as serializing {"type", "object"}); a Table is built from
 * the tree. */
static void watch_write_cached(struct rq *q, const char *type, const struct cobj *o)
{
	char head[48];
	size_t hlen, n;
	char *line;
	if (q->stopped)
		return;
	if (q->table) {
		json_t *tree = cobj_tree(o);
		if (tree != NULL)
			watch_write(q, type, tree);
		json_decref(tree);
		return;
	}
	hlen = (size_t)snprintf(head, sizeof head, "{\"type\":\"%s\",\"object\":", type);
	n = hlen + cobj_len(o) + 2;
	line = malloc(n + 1);
	if (line == NULL)
		return;
	memcpy(line, head, hlen);
	memcpy(line + hlen, cobj_text(o), cobj_len(o));
	memcpy(line + hlen + cobj_len(o), "}\n", 3);
	watch_line_sent(q, http_stream_write(q->req, line, n));
	free(line);
}

static void watch_write(struct rq *q, const char *type, json_t *obj)
{
	json_t *ev, *payload = obj;
	char *text;
	int rv;
	if (q->stopped)
		return;
	if (q->table && strcmp(type, "ERROR") != 0 && strcmp(type, "BOOKMARK") != 0) {
		json_t *items = json_pack("[O]", obj);
		payload = table_build(q->res->plural, items, NULL, time(NULL));
		json_decref(items);
	} else {
		json_incref(payload);
	}
	ev = json_pack("{s:s, s:o}", "type", type, "object", payload);
	text = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	if (text == NULL)
		return;
	{
		size_t n = strlen(text);
		char *line = realloc(text, n + 2);
		if (line == NULL) {
			free(text);
			return;
		}
		line[n] = '\n';
		line[n + 1] = '\0';
		rv = http_stream_write(q->req, line, n + 1);
		free(line);
	}
	watch_line_sent(q, rv);
}

static void on_watch_event(void *data, const struct wc_event *ev)
{
	struct rq *q = data;
	bool now = matches_cached(q, ev->obj);
	bool before = ev->prev != NULL && matches_cached(q, ev->prev);
	switch (ev->type) {
	case WC_ADDED:
		if (now)
			watch_write_cached(q, "ADDED", ev->obj);
		break;
	case WC_MODIFIED:
		if (now && before)
			watch_write_cached(q, "MODIFIED", ev->obj);
		else if (now)
			watch_write_cached(q, "ADDED", ev->obj);
		else if (before)
			watch_write_cached(q, "DELETED", ev->obj);
		break;
	case WC_DELETED:
		if (before)
			watch_write_cached(q, "DELETED", ev->obj);
		break;
	}
}

static void on_watch_closed(void *data)
{
	struct rq *q = data;
	q->watcher = NULL;
	watch_stop(q);
}

static void on_watch_client_gone(struct http_req *req, void *data)
{
	struct rq *q = data;
	(void)req;
	watch_stop(q);
}

static void on_watch_timeout(uv_timer_t *t)
{
	watch_stop(t->data);
}

static void on_bookmark(uv_timer_t *t)
{
	struct rq *q = t->data;
	char av[96], rvs[32];
	json_t *obj;
	api_resource_api_version(q->res, av, sizeof av);
	snprintf(rvs, sizeof rvs, "%lld", (long long)wc_revision(q->s->cache));
	obj = json_pack("{s:s, s:s, s:{s:s}}", "kind", q->res->kind, "apiVersion", av, "metadata",
			"resourceVersion", rvs);
	watch_write(q, "BOOKMARK", obj);
	json_decref(obj);
}

static bool initial_item(void *data, const char *key, struct cobj *obj, int64_t rev)
{
	struct rq *q = data;
	(void)key;
	(void)rev;
	if (matches_cached(q, obj))
		watch_write_cached(q, "ADDED", obj);
	return !q->stopped;
}

static void watch_begin(void *data, bool ok)
{
	struct rq *q = data;
	const char *rvq = http_req_query(q->req, "resourceVersion");
	const char *tos = http_req_query(q->req, "timeoutSeconds");
	long timeout = WATCH_DEFAULT_TIMEOUT_S;
	int rv;
	if (!ok) {
		reply_status(q, api_status_printf(504, "Timeout",
						  "Too large resource version: the cache is not ready"));
		return;
	}
	if (tos != NULL && strtol(tos, NULL, 10) > 0)
		timeout = strtol(tos, NULL, 10);
	q->s->inflight--;   /* a watch does not hold up shutdown: it is ended */
	q->next_watch = q->s->watches;
	q->s->watches = q;
	uv_timer_init(q->s->loop, &q->timeout_timer);
	uv_timer_init(q->s->loop, &q->bookmark_timer);
	q->timeout_timer.data = q->bookmark_timer.data = q;
	http_req_on_close(q->req, on_watch_client_gone, q);
	http_stream_begin(q->req, 200, q->table ? CT_TABLE : CT_JSON);
	q->stream_open = true;
	uv_timer_start(&q->timeout_timer, on_watch_timeout, (uint64_t)timeout * 1000, 0);
	if (query_true(q->req, "allowWatchBookmarks"))
		uv_timer_start(&q->bookmark_timer, on_bookmark, q->s->bookmark_ms,
			       q->s->bookmark_ms);
	if (rvq == NULL || rvq[0] == '\0' || strcmp(rvq, "0") == 0) {
		q->after = wc_revision(q->s->cache);
		wc_range_cached(q->s->cache, q->prefix, NULL, initial_item, q);
		if (q->stopped)
			return;
	} else {
		q->after = strtoll(rvq, NULL, 10);
	}
	rv = wc_watch(q->s->cache, q->prefix, q->after, on_watch_event, on_watch_closed, q,
		      &q->watcher);
	if (rv == CAP_ECOMPACTED) {
		char msg[128];
		json_t *st;
		snprintf(msg, sizeof msg, "too old resource version: %lld (%lld)",
			 (long long)q->after, (long long)wc_oldest(q->s->cache));
		st = api_status_new(410, "Expired", msg, NULL);
		watch_write(q, "ERROR", st);
		json_decref(st);
		watch_stop(q);
		return;
	}
	if (rv != 0) {
		q->watcher = NULL;
		watch_stop(q);
	}
}

static void handle_watch(struct rq *q)
{
	const char *rvq = http_req_query(q->req, "resourceVersion");
	json_t *st = parse_selectors(q);
	int64_t want = 1;
	int rv;
	if (st != NULL) {
		reply_status(q, st);
		return;
	}
	if (rvq != NULL && rvq[0] != '\0') {
		char *endp;
		long long v = strtoll(rvq, &endp, 10);
		if (*endp != '\0' || v < 0) {
			reply_status(q, api_status_bad_request("resourceVersion: Invalid value"));
			return;
		}
	}
	rv = wc_wait(q->s->cache, want, 30000, watch_begin, q);
	if (rv != 0)
		reply_status(q, api_status_printf(503, "ServiceUnavailable", "out of memory"));
}

/* ---- update (PUT, PATCH, status, scale, binding) ---- */

static void update_start(struct rq *q);
static bool retry_from_store(struct rq *q, json_t *status);

static bool is_main_write(const struct rq *q)
{
	return q->sub[0] == '\0' || strcmp(q->sub, "scale") == 0;
}

/* Answers a successful update whose object now has revision rev. */
static void reply_written(struct rq *q, int64_t rev)
{
	json_t *obj;
	obj = q->next;
	q->next = NULL;
	set_rv(obj, rev);
	if (q->answer_scale) {
		json_t *scale = scale_of(q, obj);
		json_decref(obj);
		reply(q, 200, scale);
		return;
	}
	if (q->success_code == 1) {
		/* pods/binding answers a Status. */
		json_decref(obj);
		json_t *ok = json_pack("{s:s, s:s, s:{}, s:s, s:i}", "kind", "Status", "apiVersion",
				       "v1", "metadata", "status", "Success", "code", 201);
		reply(q, 201, ok);
		return;
	}
	reply_object(q, q->success_code ? q->success_code : 200, obj);
}

static void on_update_retry(void *data, bool ok)
{
	(void)ok;
	update_start(data);
}

static void on_update_txn(void *data, json_t *answer, json_t *err)
{
	struct rq *q = data;
	if (err != NULL) {
		reply_store_error(q, err);
		return;
	}
	if (!json_is_true(json_object_get(answer, "succeeded"))) {
		if (retry_from_store(q, NULL))
			return;
		if (q->attempts++ < (q->alloc_cmp != NULL ? ALLOC_ATTEMPTS : UPDATE_ATTEMPTS)) {
			json_decref(q->cur);
			json_decref(q->next);
			q->cur = q->next = NULL;
			if (q->alloc_cmp != NULL)
				after_cache(q, answer, on_update_retry);
			else
				update_start(q);
			return;
		}
		reply_status(q, api_status_conflict(q->res, q->name,
			"the object has been modified; please apply your changes to the latest "
			"version and try again"));
		return;
	}
	reply_written(q, header_revision(answer));
}

static bool spec_changed(json_t *a, json_t *b)
{
	/* Everything but metadata and status counts as the spec. */
	const char *k;
	json_t *v;
	json_object_foreach(a, k, v) {
		if (strcmp(k, "metadata") == 0 || strcmp(k, "status") == 0)
			continue;
		if (!json_equal(v, json_object_get(b, k)))
			return true;
	}
	json_object_foreach(b, k, v) {
		if (strcmp(k, "metadata") == 0 || strcmp(k, "status") == 0)
			continue;
		if (json_object_get(a, k) == NULL)
			return true;
	}
	return false;
}

/* Puts q->next if the object is still at q->cur_rev; or deletes it when it
 * was being deleted and its last finalizer is gone. */
/* Whether two versions of an object differ only in resourceVersion. */
static bool same_object(json_t *a, json_t *b)
{
	/* Shallow copies: only metadata's own member is dropped. */
	json_t *ca = json_copy(a), *cb = json_copy(b);
	json_t *ma = json_copy(json_object_get(a, "metadata"));
	json_t *mb = json_copy(json_object_get(b, "metadata"));
	bool same;
	json_object_del(ma, "resourceVersion");
	json_object_del(mb, "resourceVersion");
	json_object_set_new(ca, "metadata", ma);
	json_object_set_new(cb, "metadata", mb);
	same = json_equal(ca, cb);
	json_decref(ca);
	json_decref(cb);
	return same;
}

static void write_next(struct rq *q, bool remove)
{
	json_t *txn;
	int rv;
	if (q->dry_run) {
		json_t *o = q->next;
		q->next = NULL;
		reply_object(q, 200, o);
		return;
	}
	if (!remove && q->cur != NULL && same_object(q->cur, q->next)) {
		/* As Kubernetes does, an update that changes nothing writes
		 * nothing: the resourceVersion stays, and watchers see no event. */
		if (retry_from_store(q, NULL))
			return;
		reply_written(q, q->cur_rev);
		return;
	}
	txn = json_pack("{s:[o], s:[o]}", "compare", cmp_mod(q->key, q->cur_rev), "success",
			remove ? op_delete(q->key, NULL) : op_put(q->key, encode_value(q->next)));
	if (is_services(q) && remove)
		svcalloc_release(q->cur, json_object_get(txn, "success"));
	else if (q->alloc_cmp != NULL) {
		append_all(json_object_get(txn, "compare"), q->alloc_cmp);
		append_all(json_object_get(txn, "success"), q->alloc_ops);
	}
	rv = kv_call(q->s->kv, KV_TXN, txn, on_update_txn, q);
	json_decref(txn);
	call_or_fail(q, rv);
}

/* Applies the rules every update follows to q->next, given q->cur. Returns
 * a Status on a refusal. */
static json_t *finish_update(struct rq *q)
{
	json_t *cur = q->cur, *next = q->next, *meta, *cmeta, *causes;
	const char *rv = meta_str(next, "resourceVersion");
	const char *crv = meta_str(cur, "resourceVersion");
	const char *keep[] = {"uid", "creationTimestamp", "name", "namespace", "deletionTimestamp",
			      "deletionGracePeriodSeconds", "generateName", NULL};
	char av[96];
	json_t *st;
	if (rv != NULL && rv[0] != '\0' && strcmp(rv, crv) != 0)
		return api_status_conflict(q->res, q->name,
			"the object has been modified; please apply your changes to the latest "
			"version and try again");
	api_resource_api_version(q->res, av, sizeof av);
	if (json_object_get(next, "kind") == NULL)
		json_object_set_new(next, "kind", json_string(q->res->kind));
	if (json_object_get(next, "apiVersion") == NULL)
		json_object_set_new(next, "apiVersion", json_string(av));
	st = check_type(q->res, next, q->res->kind, av);
	if (st != NULL)
		return st;
	meta = meta_of(next);
	cmeta = json_object_get(cur, "metadata");
	{
		const char *nn = json_string_value(json_object_get(meta, "name"));
		if (nn != NULL && strcmp(nn, q->name) != 0) {
			char msg[600];
			snprintf(msg, sizeof msg,
				 "the name of the object (%s) does not match the name on the URL (%s)",
				 nn, q->name);
			return api_status_bad_request(msg);
		}
		const char *ns = json_string_value(json_object_get(meta, "namespace"));
		if (q->res->namespaced && ns != NULL && ns[0] != '\0' && strcmp(ns, q->ns) != 0)
			return api_status_bad_request("the namespace of the provided object does not "
						      "match the namespace sent on the request");
	}
	for (int i = 0; keep[i] != NULL; i++) {
		json_t *v = json_object_get(cmeta, keep[i]);
		if (v != NULL)
			json_object_set(meta, keep[i], v);
		else
			json_object_del(meta, keep[i]);
	}
	json_object_set_new(meta, "resourceVersion", json_string(crv));
	if (q->res->subresources & API_SUB_STATUS) {
		if (is_main_write(q)) {
			/* Writes of the main resource leave status alone... */
			json_t *cs = json_object_get(cur, "status");
			if (cs != NULL)
				json_object_set(next, "status", cs);
			else
				json_object_del(next, "status");
		} else if (strcmp(q->sub, "status") == 0) {
			/* ...and writes of /status change nothing else. */
			json_t *ns = json_object_get(next, "status");
			json_t *copy = json_deep_copy(cur);
			if (ns != NULL)
				json_object_set(copy, "status", ns);
			else
				json_object_del(copy, "status");
			json_decref(q->next);
			q->next = next = copy;
			meta = meta_of(next);
		}
	}
	if (q->res->tracks_generation) {
		json_int_t gen = json_integer_value(json_object_get(cmeta, "generation"));
		if (gen <= 0)
			gen = 1;
		if (spec_changed(cur, next))
			gen++;
		json_object_set_new(meta, "generation", json_integer(gen));
	}
	if (is_services(q) && is_main_write(q))
		svcalloc_patch_update(next, cur);
	defaults_apply(q->res->plural, next);
	causes = validate_object(q->res->plural, next, cur);
	if (causes != NULL)
		return api_status_invalid(q->res, q->name, causes);
	return NULL;
}

static void on_update_get(void *data, json_t *answer, json_t *err);

/* An attempt that began from the watch cache's copy may end only in a
 * write, whose compare on mod_revision proves the copy was the current
 * object. Any other outcome (a refusal, a no-op, a lost compare) may come
 * from a copy that is behind, so it is decided again from the store, as
 * every attempt was before. Returns false when the attempt read the store:
 * the caller goes on. status (may be NULL) is dropped when retrying. */
static bool retry_from_store(struct rq *q, json_t *status)
{
	if (!q->from_cache)
		return false;
	json_decref(status);
	json_decref(q->cur);
	json_decref(q->next);
	q->cur = q->next = NULL;
	q->from_cache = false;
	q->store_only = true;
	call_or_fail(q, range_key(q, q->key, on_update_get));
	return true;
}

static void update_with_cur(struct rq *q);

static void on_update_get(void *data, json_t *answer, json_t *err)
{
	struct rq *q = data;
	json_t *kvs;
	if (err != NULL) {
		reply_store_error(q, err);
		return;
	}
	kvs = json_object_get(answer, "kvs");
	if (json_array_size(kvs) == 0) {
		bool apply = q->patch_type != NULL && strstr(q->patch_type, "apply-patch") != NULL;
		if ((apply || (q->verb == V_UPDATE && q->res->create_on_update)) && q->sub[0] == '\0') {
			q->success_code = 201;
			create_object(q);
			return;
		}
		reply_status(q, api_status_not_found(q->res, q->name));
		return;
	}
	q->cur = decode_value(json_array_get(kvs, 0), &q->cur_rev);
	if (q->cur == NULL) {
		reply_status(q, api_status_printf(500, "InternalError",
						  "Internal error occurred: stored %s is not JSON", q->key));
		return;
	}
	update_with_cur(q);
}

/* The update from q->cur (at q->cur_rev) on. */
static void update_with_cur(struct rq *q)
{
	json_t *st = NULL, *fin;
	{
		json_t *copy = json_deep_copy(q->cur);
		q->next = q->mutate(q, copy, &st);
		json_decref(copy);
	}
	if (q->next == NULL) {
		if (!retry_from_store(q, st))
			reply_status(q, st);
		return;
	}
	st = finish_update(q);
	if (st != NULL) {
		if (!retry_from_store(q, st))
			reply_status(q, st);
		return;
	}
	record_fields(q, q->cur, q->next);
	if (is_services(q) && is_main_write(q)) {
		st = plan_allocations(q);
		if (st != NULL) {
			reply_status(q, st);
			return;
		}
	}
	/* A no-op update writes nothing and keeps the resourceVersion. */
	if (json_equal(q->next, q->cur)) {
		json_t *o;
		if (retry_from_store(q, NULL))
			return;
		o = q->cur;
		q->cur = NULL;
		if (q->answer_scale) {
			json_t *scale = scale_of(q, o);
			json_decref(o);
			reply(q, 200, scale);
			return;
		}
		if (q->success_code == 1) {
			json_decref(o);
			reply_status(q, api_status_conflict(q->res, q->name, "pod is already bound"));
			return;
		}
		reply_object(q, 200, o);
		return;
	}
	fin = json_object_get(meta_of(q->next), "finalizers");
	/* An object being deleted goes once its last finalizer is removed; a
	 * pod in its grace period stays until its node agent deletes it. */
	json_t *grace = json_object_get(meta_of(q->next), "deletionGracePeriodSeconds");
	write_next(q, meta_str(q->next, "deletionTimestamp") != NULL && json_array_size(fin) == 0 &&
		       (!json_is_integer(grace) || json_integer_value(grace) == 0));
}

/* The first attempt of an update starts from the watch cache's copy of the
 * object, as Kubernetes' GuaranteedUpdate does with its cached object: the
 * write's compare on mod_revision makes that safe, and when the copy is
 * behind the attempt is made again from the store (retry_from_store).
 * Services, whose writes carry allocations, and dry runs read the store. */
static void update_start(struct rq *q)
{
	int64_t rev = 0;
	struct cobj *o;
	q->from_cache = false;
	if (!q->store_only && !q->dry_run && !is_services(q) &&
	    (o = wc_get(q->s->cache, q->key, &rev)) != NULL && (q->cur = cobj_tree(o)) != NULL) {
		q->from_cache = true;
		q->cur_rev = rev;
		update_with_cur(q);
		return;
	}
	call_or_fail(q, range_key(q, q->key, on_update_get));
}

static json_t *mutate_put(struct rq *q, json_t *cur, json_t **status)
{
	(void)cur;
	(void)status;
	return json_deep_copy(q->body);
}

static json_t *mutate_scale_put(struct rq *q, json_t *cur, json_t **status)
{
	json_t *spec = json_object_get(q->body, "spec");
	json_t *rep = json_object_get(spec, "replicas");
	json_t *out;
	const char *rv = meta_str(q->body, "resourceVersion");
	if (!json_is_integer(rep) || json_integer_value(rep) < 0) {
		*status = api_status_invalid(q->res, q->name, json_pack("[{s:s, s:s, s:s}]",
			"reason", "FieldValueInvalid", "message",
			"Invalid value: must be greater than or equal to 0", "field", "spec.replicas"));
		return NULL;
	}
	out = json_deep_copy(cur);
	if (rv != NULL && rv[0] != '\0')
		set_rv(out, strtoll(rv, NULL, 10));
	json_object_set(json_object_get(out, "spec"), "replicas", rep);
	return out;
}

static json_t *apply_patch(struct rq *q, json_t *target, json_t **status)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	const char *pt = q->patch_type;
	json_t *out = NULL;
	int rv;
	if (strstr(pt, "json-patch+json") != NULL) {
		if (!json_is_array(q->body)) {
			*status = api_status_bad_request("json: cannot unmarshal object into Go value "
							 "of type jsonpatch.Patch");
			return NULL;
		}
		rv = patch_json(target, q->body, &out, errmsg);
	} else if (strstr(pt, "strategic-merge-patch+json") != NULL) {
		/* Tested before merge-patch: its name contains that one's. */
		const char *kind = json_string_value(json_object_get(target, "kind"));
		rv = patch_strategic(target, q->body, kind ? kind : q->res->kind, &out, errmsg);
	} else if (strstr(pt, "merge-patch+json") != NULL) {
		rv = patch_merge(target, q->body, &out, errmsg);
	} else if (strstr(pt, "apply-patch") != NULL && q->sub[0] == '\0') {
		struct managedfields_writer w;
		writer_of(q, &w);
		return managedfields_apply(target, q->body, &w, query_true(q->req, "force"),
					   (q->res->subresources & API_SUB_STATUS) != 0, status);
	} else if (strstr(pt, "apply-patch") != NULL) {
		/* Subresources take the applied configuration as a merge. */
		rv = patch_merge(target, q->body, &out, errmsg);
	} else {
		rv = CAP_EINVAL;
	}
	if (rv != 0) {
		if (strstr(pt, "json-patch+json") != NULL && strstr(errmsg, "test") != NULL)
			*status = api_status_new(422, "Invalid", errmsg, NULL);
		else
			*status = api_status_printf(rv == CAP_EINVAL ? 422 : 500,
				rv == CAP_EINVAL ? "Invalid" : "InternalError", "%s",
				errmsg[0] ? errmsg : "the patch could not be applied");
		return NULL;
	}
	if (!json_is_object(out)) {
		json_decref(out);
		*status = api_status_bad_request("the patch did not produce an object");
		return NULL;
	}
	return out;
}

static json_t *mutate_patch(struct rq *q, json_t *cur, json_t **status)
{
	if (strcmp(q->sub, "scale") == 0) {
		json_t *scale = scale_of(q, cur), *patched, *out;
		json_t *saved_body;
		patched = apply_patch(q, scale, status);
		json_decref(scale);
		if (patched == NULL)
			return NULL;
		saved_body = q->body;
		q->body = patched;
		out = mutate_scale_put(q, cur, status);
		q->body = saved_body;
		json_decref(patched);
		return out;
	}
	return apply_patch(q, cur, status);
}

static json_t *mutate_binding(struct rq *q, json_t *cur, json_t **status)
{
	json_t *spec = json_object_get(cur, "spec");
	const char *node = json_string_value(json_object_get(json_object_get(q->body, "target"),
							     "name"));
	const char *have = json_string_value(json_object_get(spec, "nodeName"));
	char why[512];
	json_t *out;
	if (node == NULL || node[0] == '\0') {
		*status = api_status_invalid(q->res, q->name, json_pack("[{s:s, s:s, s:s}]",
			"reason", "FieldValueRequired", "message", "Required value", "field",
			"target.name"));
		return NULL;
	}
	if (have != NULL && have[0] != '\0') {
		snprintf(why, sizeof why, "pod %s is already assigned to node \"%s\"", q->name, have);
		*status = api_status_conflict(q->res, q->name, why);
		return NULL;
	}
	if (meta_str(cur, "deletionTimestamp") != NULL) {
		snprintf(why, sizeof why, "pod %s is being deleted, cannot be assigned to a host",
			 q->name);
		*status = api_status_conflict(q->res, q->name, why);
		return NULL;
	}
	/* cur is this request's private copy: change it in place. */
	out = json_incref(cur);
	json_object_set_new(json_object_get(out, "spec"), "nodeName", json_string(node));
	return out;
}

static void handle_update(struct rq *q)
{
	json_t *st = NULL;
	q->body = parse_body(q, &st);
	if (q->body == NULL) {
		reply_status(q, st);
		return;
	}
	if (strcmp(q->sub, "scale") == 0) {
		st = check_type(q->res, q->body, "Scale", "autoscaling/v1");
		if (st != NULL) {
			reply_status(q, st);
			return;
		}
		q->answer_scale = true;
		q->mutate = mutate_scale_put;
	} else {
		st = check_body_type(q, q->body);
		if (st != NULL) {
			reply_status(q, st);
			return;
		}
		q->mutate = mutate_put;
	}
	update_start(q);
}

static void handle_patch(struct rq *q)
{
	const char *ct = http_req_header(q->req, "Content-Type");
	json_t *st = NULL;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_error_t jerr;
	if (ct == NULL || (strstr(ct, "json-patch+json") == NULL &&
			   strstr(ct, "merge-patch+json") == NULL &&
			   strstr(ct, "apply-patch+yaml") == NULL)) {
		char msg[400];
		snprintf(msg, sizeof msg, "the body of the request was in an unknown format - "
			 "accepted media types include: application/json-patch+json, "
			 "application/merge-patch+json, application/apply-patch+yaml%s",
			 strcmp(q->sub, "scale") == 0 || q->res->group[0] != 'c' ?
			 ", application/strategic-merge-patch+json" :
			 ", application/strategic-merge-patch+json");
		reply_status(q, api_status_new(415, "UnsupportedMediaType", msg, NULL));
		return;
	}
	q->patch_type = ct;
	if (strstr(ct, "apply-patch+yaml") != NULL) {
		q->body = yaml_to_json(q->req->body, q->req->body_len, errmsg);
		if (!json_is_object(q->body)) {
			char msg[CAP_ERRMSG_SIZE + 64];
			snprintf(msg, sizeof msg, "error decoding YAML: %s",
				 errmsg[0] ? errmsg : "not an object");
			reply_status(q, api_status_bad_request(msg));
			return;
		}
		if (http_req_query(q->req, "fieldManager") == NULL) {
			reply_status(q, api_status_bad_request("PATCH, application/apply-patch+yaml "
				"requests must include a fieldManager parameter"));
			return;
		}
		st = check_body_type(q, q->body);
		if (st != NULL) {
			reply_status(q, st);
			return;
		}
	} else {
		q->body = json_loadb(q->req->body, q->req->body_len, 0, &jerr);
		if (q->body == NULL) {
			char msg[400];
			snprintf(msg, sizeof msg, "error decoding patch: %s", jerr.text);
			reply_status(q, api_status_bad_request(msg));
			return;
		}
	}
	if (strcmp(q->sub, "scale") == 0)
		q->answer_scale = true;
	q->mutate = mutate_patch;
	update_start(q);
}

/* ---- delete ---- */

static void on_delete_txn(void *data, json_t *answer, json_t *err);

static void delete_start(struct rq *q);

static json_t *precondition_failed(struct rq *q, json_t *cur)
{
	json_t *pre = json_object_get(q->opts, "preconditions");
	const char *uid = json_string_value(json_object_get(pre, "uid"));
	const char *rv = json_string_value(json_object_get(pre, "resourceVersion"));
	char why[512];
	if (uid != NULL && strcmp(uid, meta_str(cur, "uid") ?: "") != 0) {
		snprintf(why, sizeof why,
			 "Precondition failed: UID in precondition: %s, UID in object meta: %s", uid,
			 meta_str(cur, "uid") ?: "");
		return api_status_conflict(q->res, q->name, why);
	}
	if (rv != NULL && strcmp(rv, meta_str(cur, "resourceVersion") ?: "") != 0) {
		snprintf(why, sizeof why,
			 "Precondition failed: ResourceVersion in precondition: %s, ResourceVersion "
			 "in object meta: %s", rv, meta_str(cur, "resourceVersion") ?: "");
		return api_status_conflict(q->res, q->name, why);
	}
	return NULL;
}

static long long grace_seconds(struct rq *q, json_t *cur)
{
	json_t *g = json_object_get(q->opts, "gracePeriodSeconds");
	const char *gq = http_req_query(q->req, "gracePeriodSeconds");
	if (json_is_integer(g))
		return json_integer_value(g);
	if (gq != NULL)
		return strtoll(gq, NULL, 10);
	g = json_object_get(json_object_get(cur, "spec"), "terminationGracePeriodSeconds");
	return json_is_integer(g) ? json_integer_value(g) : 30;
}

static bool is_protected_namespace(const char *name)
{
	return strcmp(name, "default") == 0 || strcmp(name, "kube-system") == 0 ||
	       strcmp(name, "kube-public") == 0;
}

/* Foreground and Orphan deletion are carried out by the garbage collector:
 * the API server marks the owner with the matching finalizer (as Kubernetes
 * does), so it lives, with a deletionTimestamp, until the collector is done. */
static void add_propagation_finalizer(struct rq *q, json_t *meta)
{
	const char *policy = json_string_value(json_object_get(q->opts, "propagationPolicy"));
	const char *name = NULL;
	json_t *fin;
	size_t i;
	json_t *v;
	if (json_object_get(meta, "deletionTimestamp") != NULL)
		return;
	if (policy != NULL && strcmp(policy, "Foreground") == 0)
		name = "foregroundDeletion";
	else if ((policy != NULL && strcmp(policy, "Orphan") == 0) ||
		 json_is_true(json_object_get(q->opts, "orphanDependents")))
		name = "orphan";
	if (name == NULL)
		return;
	fin = json_object_get(meta, "finalizers");
	if (!json_is_array(fin)) {
		fin = json_array();
		json_object_set_new(meta, "finalizers", fin);
	}
	json_array_foreach(fin, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), name) == 0)
			return;
	json_array_append_new(fin, json_string(name));
}

static bool release_service(void *data, const char *key, json_t *obj, int64_t rev)
{
	(void)key;
	(void)rev;
	svcalloc_release(obj, data);
	return true;
}

static void on_delete_get(void *data, json_t *answer, json_t *err)
{
	struct rq *q = data;
	json_t *kvs, *st, *meta, *fin, *txn;
	bool graceful;
	long long grace;
	int rv;
	if (err != NULL) {
		reply_store_error(q, err);
		return;
	}
	kvs = json_object_get(answer, "kvs");
	if (json_array_size(kvs) == 0) {
		reply_status(q, api_status_not_found(q->res, q->name));
		return;
	}
	json_decref(q->cur);
	q->cur = decode_value(json_array_get(kvs, 0), &q->cur_rev);
	if (q->cur == NULL) {
		reply_status(q, api_status_printf(500, "InternalError", "stored %s is not JSON", q->key));
		return;
	}
	st = precondition_failed(q, q->cur);
	if (st != NULL) {
		reply_status(q, st);
		return;
	}
	if (strcmp(q->res->plural, "namespaces") == 0) {
		if (is_protected_namespace(q->name)) {
			reply_status(q, api_status_printf(403, "Forbidden",
				"namespaces \"%s\" is forbidden: this namespace may not be deleted",
				q->name));
			return;
		}
		if (q->dry_run) {
			reply(q, 200, api_status_success(q->res, q->name, meta_str(q->cur, "uid")));
			return;
		}
		/* Without a namespace controller yet, the contents go with the
		 * namespace, in the same transaction. */
		json_t *ops = json_array();
		for (size_t i = 0; i < api_resource_count(); i++) {
			const struct api_resource *r = api_resource_at(i);
			char p[400], e[400];
			if (!r->namespaced)
				continue;
			snprintf(p, sizeof p, REGISTRY "%s/%s/", r->plural, q->name);
			prefix_end(p, e, sizeof e);
			json_array_append_new(ops, op_delete(p, e));
		}
		json_array_append_new(ops, op_delete(q->key, NULL));
		{
			/* The Services go too: so do their addresses and ports. */
			char p[400];
			snprintf(p, sizeof p, REGISTRY "services/%s/", q->name);
			wc_range(q->s->cache, p, NULL, release_service, ops);
		}
		txn = json_pack("{s:[o], s:o}", "compare", cmp_mod(q->key, q->cur_rev), "success",
				ops);
		rv = kv_call(q->s->kv, KV_TXN, txn, on_delete_txn, q);
		json_decref(txn);
		call_or_fail(q, rv);
		return;
	}
	meta = meta_of(q->cur);
	add_propagation_finalizer(q, meta);
	fin = json_object_get(meta, "finalizers");
	grace = grace_seconds(q, q->cur);
	graceful = strcmp(q->res->plural, "pods") == 0 && grace > 0 &&
		   json_string_value(json_object_get(json_object_get(q->cur, "spec"), "nodeName")) !=
			   NULL;
	if (json_array_size(fin) > 0 || graceful) {
		char ts[32];
		if (json_object_get(meta, "deletionTimestamp") != NULL) {
			json_t *o = q->cur;
			q->cur = NULL;
			reply_object(q, 202, o);
			return;
		}
		q->next = json_deep_copy(q->cur);
		meta = meta_of(q->next);
		now_rfc3339(ts, sizeof ts, graceful ? grace : 0);
		json_object_set_new(meta, "deletionTimestamp", json_string(ts));
		json_object_set_new(meta, "deletionGracePeriodSeconds",
				    json_integer(graceful ? grace : 0));
		q->success_code = json_array_size(fin) > 0 ? 202 : 200;
		if (q->dry_run) {
			json_t *o = q->next;
			q->next = NULL;
			reply_object(q, q->success_code, o);
			return;
		}
		txn = json_pack("{s:[o], s:[o]}", "compare", cmp_mod(q->key, q->cur_rev), "success",
				op_put(q->key, encode_value(q->next)));
	} else {
		if (q->dry_run) {
			json_t *o = q->cur;
			q->cur = NULL;
			reply_object(q, 200, o);
			return;
		}
		txn = json_pack("{s:[o], s:[o]}", "compare", cmp_mod(q->key, q->cur_rev), "success",
				op_delete(q->key, NULL));
		if (is_services(q))
			svcalloc_release(q->cur, json_object_get(txn, "success"));
	}
	rv = kv_call(q->s->kv, KV_TXN, txn, on_delete_txn, q);
	json_decref(txn);
	call_or_fail(q, rv);
}

static void on_delete_txn(void *data, json_t *answer, json_t *err)
{
	struct rq *q = data;
	if (err != NULL) {
		reply_store_error(q, err);
		return;
	}
	if (!json_is_true(json_object_get(answer, "succeeded"))) {
		if (q->attempts++ < UPDATE_ATTEMPTS) {
			json_decref(q->next);
			q->next = NULL;
			delete_start(q);
			return;
		}
		reply_status(q, api_status_conflict(q->res, q->name,
			"the object has been modified; please apply your changes to the latest "
			"version and try again"));
		return;
	}
	if (q->next != NULL) {
		json_t *o = q->next;
		q->next = NULL;
		set_rv(o, header_revision(answer));
		reply_object(q, q->success_code, o);
		return;
	}
	if (strcmp(q->res->plural, "pods") == 0) {
		json_t *o = q->cur;
		q->cur = NULL;
		reply_object(q, 200, o);
		return;
	}
	reply(q, 200, api_status_success(q->res, q->name, meta_str(q->cur, "uid")));
}

static void delete_start(struct rq *q)
{
	call_or_fail(q, range_key(q, q->key, on_delete_get));
}

static json_t *parse_delete_options(struct rq *q)
{
	json_t *dr;
	if (q->req->body_len == 0)
		return NULL;
	if (pb_is_protobuf(http_req_header(q->req, "Content-Type"))) {
		/* kubectl 1.32+ sends DeleteOptions as protobuf. */
		const uint8_t *raw;
		size_t raw_len;
		char kind[64], api_version[64], errmsg[CAP_ERRMSG_SIZE];
		if (pb_unwrap((const uint8_t *)q->req->body, q->req->body_len, &raw, &raw_len,
			      kind, sizeof kind, api_version, sizeof api_version) != 0 ||
		    strcmp(kind, "DeleteOptions") != 0 ||
		    (q->opts = pb_delete_options_to_json(raw, raw_len, errmsg)) == NULL)
			return api_status_bad_request("the DeleteOptions protobuf body is malformed");
	} else {
		q->opts = json_loadb(q->req->body, q->req->body_len, 0, NULL);
	}
	if (!json_is_object(q->opts)) {
		json_decref(q->opts);
		q->opts = NULL;
		return api_status_bad_request("couldn't get version/kind; json parse error: the "
					      "DeleteOptions body is not a JSON object");
	}
	dr = json_object_get(q->opts, "dryRun");
	if (json_array_size(dr) > 0)
		q->dry_run = true;
	return NULL;
}

static void handle_delete(struct rq *q)
{
	json_t *st = parse_delete_options(q);
	if (st != NULL) {
		reply_status(q, st);
		return;
	}
	delete_start(q);
}

/* deletecollection: every matching object, in batches of one txn each. */
static void deletecoll_next(struct rq *q);

static void on_deletecoll_txn(void *data, json_t *answer, json_t *err)
{
	struct rq *q = data;
	(void)answer;
	if (err != NULL) {
		reply_store_error(q, err);
		return;
	}
	deletecoll_next(q);
}

static void deletecoll_next(struct rq *q)
{
	json_t *ops = json_array(), *txn;
	size_t n = json_array_size(q->objs);
	char ts[32];
	int rv;
	now_rfc3339(ts, sizeof ts, 0);
	while (q->idx < n && json_array_size(ops) < 100) {
		json_t *obj = json_array_get(q->objs, q->idx);
		const char *key = json_string_value(json_array_get(q->keys, q->idx));
		q->idx++;
		if (!matches(q, obj))
			continue;
		json_array_append(q->deleted, obj);
		if (json_array_size(json_object_get(json_object_get(obj, "metadata"), "finalizers"))) {
			json_t *copy;
			if (meta_str(obj, "deletionTimestamp") != NULL)
				continue;
			copy = json_deep_copy(obj);
			json_object_set_new(meta_of(copy), "deletionTimestamp", json_string(ts));
			json_object_set_new(meta_of(copy), "deletionGracePeriodSeconds",
					    json_integer(0));
			json_array_append_new(ops, op_put(key, encode_value(copy)));
			json_decref(copy);
		} else {
			json_array_append_new(ops, op_delete(key, NULL));
			if (is_services(q))
				svcalloc_release(obj, ops);
		}
	}
	if (json_array_size(ops) == 0 || q->dry_run) {
		char kind[96], av[96];
		json_decref(ops);
		if (q->idx < n && q->dry_run) {
			deletecoll_next(q);
			return;
		}
		list_kind(q->res, kind, sizeof kind);
		api_resource_api_version(q->res, av, sizeof av);
		json_t *out = json_pack("{s:s, s:s, s:{}, s:O}", "kind", kind, "apiVersion", av,
					"metadata", "items", q->deleted);
		if (q->idx < n) {
			json_decref(out);
			deletecoll_next(q);
			return;
		}
		reply(q, 200, out);
		return;
	}
	txn = json_pack("{s:[], s:o}", "compare", "success", ops);
	rv = kv_call(q->s->kv, KV_TXN, txn, on_deletecoll_txn, q);
	json_decref(txn);
	call_or_fail(q, rv);
}

static void on_deletecoll_range(void *data, json_t *answer, json_t *err)
{
	struct rq *q = data;
	json_t *kvo;
	size_t i;
	if (err != NULL) {
		reply_store_error(q, err);
		return;
	}
	q->keys = json_array();
	q->objs = json_array();
	q->deleted = json_array();
	json_array_foreach(json_object_get(answer, "kvs"), i, kvo) {
		int64_t rev;
		char *key = b64_decode_str(json_string_value(json_object_get(kvo, "key")), NULL);
		json_t *obj = decode_value(kvo, &rev);
		if (key != NULL && obj != NULL) {
			json_array_append_new(q->keys, json_string(key));
			json_array_append_new(q->objs, obj);
		} else {
			json_decref(obj);
		}
		free(key);
	}
	deletecoll_next(q);
}

static void handle_deletecoll(struct rq *q)
{
	json_t *st = parse_selectors(q), *req;
	char end[400];
	int rv;
	if (st == NULL)
		st = parse_delete_options(q);
	if (st != NULL) {
		reply_status(q, st);
		return;
	}
	if (strcmp(q->res->plural, "namespaces") == 0) {
		reply_status(q, api_status_new(405, "MethodNotAllowed",
			"the server does not allow this method on the requested resource", NULL));
		return;
	}
	prefix_end(q->prefix, end, sizeof end);
	req = json_pack("{s:o, s:o}", "key", b64_json(q->prefix), "range_end", b64_json(end));
	rv = kv_call(q->s->kv, KV_RANGE, req, on_deletecoll_range, q);
	json_decref(req);
	call_or_fail(q, rv);
}

/* ---- routing ---- */

static int split_path(const char *path, char segs[][256], int max)
{
	int n = 0;
	const char *p = path;
	while (*p != '\0' && n < max) {
		const char *e;
		size_t len;
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		e = strchr(p, '/');
		len = e ? (size_t)(e - p) : strlen(p);
		if (len >= 256)
			return -1;
		memcpy(segs[n], p, len);
		segs[n][len] = '\0';
		n++;
		p += len;
	}
	if (*p != '\0') {
		while (*p == '/')
			p++;
		if (*p != '\0')
			return -1;
	}
	return n;
}

static void reply_json_doc(struct http_req *req, const char *ctype, json_t *doc)
{
	reply_raw(req, 200, ctype, doc);
	json_decref(doc);
}

static void not_found_path(struct rq *q)
{
	reply_status(q, api_status_new(404, "NotFound",
				       "the server could not find the requested resource", json_object()));
}

static void method_not_allowed(struct rq *q)
{
	reply_status(q, api_status_new(405, "MethodNotAllowed",
		"the server does not allow this method on the requested resource", NULL));
}

/* Aggregated discovery version the client asked for, or NULL. */
static const char *aggregated_version(struct http_req *req)
{
	const char *a = http_req_header(req, "Accept");
	const char *p;
	if (a == NULL || strstr(a, "as=APIGroupDiscoveryList") == NULL)
		return NULL;
	/* The first acceptable entry wins, as in the client's order. */
	for (p = a; p != NULL && *p != '\0';) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char entry[256];
		if (len >= sizeof entry)
			len = sizeof entry - 1;
		memcpy(entry, p, len);
		entry[len] = '\0';
		if (strstr(entry, "as=APIGroupDiscoveryList") != NULL &&
		    strstr(entry, "g=apidiscovery.k8s.io") != NULL) {
			if (strstr(entry, "v=v2beta1") != NULL)
				return "v2beta1";
			if (strstr(entry, "v=v2") != NULL)
				return "v2";
		}
		p = end ? end + 1 : NULL;
	}
	return NULL;
}

/* Answers the paths that are not resources; true if it did. */
static bool handle_meta(struct rq *q, char segs[][256], int n)
{
	struct http_req *req = q->req;
	const char *agg;
	json_t *doc;
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
		return false;
	if (n == 1 && (strcmp(segs[0], "healthz") == 0 || strcmp(segs[0], "livez") == 0 ||
		       strcmp(segs[0], "readyz") == 0)) {
		if (strcmp(segs[0], "readyz") == 0 && !api_server_ready(q->s))
			http_reply(req, 500, "text/plain; charset=utf-8", "[-]store not ready\n", 19);
		else
			http_reply(req, 200, "text/plain; charset=utf-8", "ok", 2);
		rq_done(q);
		return true;
	}
	if (n == 1 && strcmp(segs[0], "version") == 0) {
		reply_json_doc(req, CT_JSON, api_version_info());
		rq_done(q);
		return true;
	}
	if (n == 1 && (strcmp(segs[0], "api") == 0 || strcmp(segs[0], "apis") == 0)) {
		bool core = strcmp(segs[0], "api") == 0;
		agg = aggregated_version(req);
		if (agg != NULL) {
			char ct[160];
			snprintf(ct, sizeof ct,
				 "application/json;g=apidiscovery.k8s.io;v=%s;as=APIGroupDiscoveryList",
				 agg);
			reply_json_doc(req, ct, api_discovery_aggregated(core, agg));
		} else {
			reply_json_doc(req, CT_JSON, core ? api_discovery_core(q->s->address) :
							    api_discovery_groups());
		}
		rq_done(q);
		return true;
	}
	if ((n == 2 && strcmp(segs[0], "api") == 0) || (n == 3 && strcmp(segs[0], "apis") == 0)) {
		doc = n == 2 ? api_discovery_resources("", segs[1]) :
			       api_discovery_resources(segs[1], segs[2]);
		if (doc == NULL) {
			not_found_path(q);
			return true;
		}
		reply_json_doc(req, CT_JSON, doc);
		rq_done(q);
		return true;
	}
	if (n >= 1 && strcmp(segs[0], "openapi") == 0) {
		if (n == 2 && strcmp(segs[1], "v2") == 0) {
			http_reply(req, 200,
				   "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
				   api_openapi_v2_pb, api_openapi_v2_pb_len);
			rq_done(q);
			return true;
		}
		if (n == 2 && strcmp(segs[1], "v3") == 0) {
			reply_json_doc(req, CT_JSON, api_openapi_v3_index());
			rq_done(q);
			return true;
		}
		doc = NULL;
		if (n == 4 && strcmp(segs[1], "v3") == 0 && strcmp(segs[2], "api") == 0)
			doc = api_openapi_v3_document("", segs[3]);
		else if (n == 5 && strcmp(segs[1], "v3") == 0 && strcmp(segs[2], "apis") == 0)
			doc = api_openapi_v3_document(segs[3], segs[4]);
		if (doc == NULL) {
			not_found_path(q);
			return true;
		}
		reply_json_doc(req, CT_JSON, doc);
		rq_done(q);
		return true;
	}
	return false;
}

static bool valid_segment(const char *s)
{
	return s[0] != '\0' && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
	       strchr(s, '%') == NULL;
}

static void route(struct rq *q)
{
	char segs[10][256];
	struct http_req *req = q->req;
	const char *m = req->method;
	const char *group, *version;
	int n = split_path(req->path, segs, 10), i;
	bool watch = false;
	const char *dr;
	if (n < 0) {
		not_found_path(q);
		return;
	}
	if (handle_meta(q, segs, n))
		return;
	if (n >= 2 && strcmp(segs[0], "api") == 0) {
		group = "";
		version = segs[1];
		i = 2;
	} else if (n >= 3 && strcmp(segs[0], "apis") == 0) {
		group = segs[1];
		version = segs[2];
		i = 3;
	} else {
		not_found_path(q);
		return;
	}
	if (!api_group_version_known(group, version)) {
		not_found_path(q);
		return;
	}
	if (i < n && strcmp(segs[i], "watch") == 0) {
		watch = true;
		i++;
	}
	/* namespaces/<ns>/<resource>... unless it is the namespace itself. */
	if (n - i >= 3 && strcmp(segs[i], "namespaces") == 0 &&
	    api_resource_find(group, version, segs[i + 2]) != NULL &&
	    api_resource_find(group, version, segs[i + 2])->namespaced) {
		snprintf(q->ns, sizeof q->ns, "%s", segs[i + 1]);
		i += 2;
	}
	if (i >= n) {
		not_found_path(q);
		return;
	}
	q->res = api_resource_find(group, version, segs[i]);
	if (q->res == NULL || n - i > 3) {
		not_found_path(q);
		return;
	}
	if (n - i >= 2)
		snprintf(q->name, sizeof q->name, "%s", segs[i + 1]);
	if (n - i == 3)
		snprintf(q->sub, sizeof q->sub, "%s", segs[i + 2]);
	if ((q->name[0] != '\0' && !valid_segment(q->name)) ||
	    (q->ns[0] == '\0' && q->res->namespaced && q->name[0] != '\0')) {
		/* A namespaced object needs its namespace in the path. */
		not_found_path(q);
		return;
	}
	if (strcmp(q->sub, "log") == 0 && strcmp(q->res->plural, "pods") == 0 &&
	    strcmp(m, "GET") == 0) {
		/* Streamed from the pod's node agent (podproxy.c). */
		podproxy_log(req, q->s->kv, q->ns, q->name);
		rq_done(q);
		return;
	}
	if (strcmp(q->sub, "exec") == 0 && strcmp(q->res->plural, "pods") == 0) {
		podproxy_exec(req, q->s->kv, q->ns, q->name); /* websocket relay (podproxy.c) */
		rq_done(q);
		return;
	}
	if (q->sub[0] != '\0') {
		bool ok = (strcmp(q->sub, "status") == 0 && (q->res->subresources & API_SUB_STATUS)) ||
			  (strcmp(q->sub, "scale") == 0 && (q->res->subresources & API_SUB_SCALE)) ||
			  (strcmp(q->sub, "binding") == 0 && (q->res->subresources & API_SUB_BINDING));
		if (!ok) {
			not_found_path(q);
			return;
		}
	}
	if (q->res->namespaced && q->ns[0] != '\0')
		snprintf(q->prefix, sizeof q->prefix, REGISTRY "%s/%s/", q->res->plural, q->ns);
	else
		snprintf(q->prefix, sizeof q->prefix, REGISTRY "%s/", q->res->plural);
	if (q->name[0] != '\0')
		make_key(q->key, sizeof q->key, q->res, q->ns, q->name);
	q->table = accepts(req, "as=Table");
	dr = http_req_query(req, "dryRun");
	q->dry_run = dr != NULL && strcmp(dr, "All") == 0;
	if (query_true(req, "watch"))
		watch = true;

	if (strcmp(q->sub, "binding") == 0) {
		if (strcmp(m, "POST") != 0) {
			method_not_allowed(q);
			return;
		}
		json_t *st = NULL;
		q->body = parse_body(q, &st);
		if (q->body == NULL) {
			reply_status(q, st);
			return;
		}
		q->mutate = mutate_binding;
		q->success_code = 1;
		snprintf(q->sub, sizeof q->sub, "binding");
		update_start(q);
		return;
	}
	if (strcmp(m, "GET") == 0) {
		if (watch) {
			q->verb = V_WATCH;
			handle_watch(q);
		} else if (q->name[0] != '\0') {
			q->verb = V_GET;
			handle_get(q);
		} else {
			q->verb = V_LIST;
			handle_list(q);
		}
		return;
	}
	if (watch) {
		method_not_allowed(q);
		return;
	}
	if (strcmp(m, "POST") == 0 && q->name[0] == '\0') {
		if (q->res->namespaced && q->ns[0] == '\0') {
			method_not_allowed(q);
			return;
		}
		q->verb = V_CREATE;
		handle_create(q);
		return;
	}
	if (strcmp(m, "PUT") == 0 && q->name[0] != '\0') {
		q->verb = V_UPDATE;
		handle_update(q);
		return;
	}
	if (strcmp(m, "PATCH") == 0 && q->name[0] != '\0') {
		q->verb = V_PATCH;
		handle_patch(q);
		return;
	}
	if (strcmp(m, "DELETE") == 0 && q->name[0] != '\0' && q->sub[0] == '\0') {
		q->verb = V_DELETE;
		handle_delete(q);
		return;
	}
	if (strcmp(m, "DELETE") == 0 && q->name[0] == '\0' &&
	    (!q->res->namespaced || q->ns[0] != '\0')) {
		q->verb = V_DELETECOLL;
		handle_deletecoll(q);
		return;
	}
	method_not_allowed(q);
}

static void on_request(struct http_req *req, void *data)
{
	struct api_server *s = data;
	struct rq *q = calloc(1, sizeof *q);
	if (q == NULL) {
		http_reply(req, 503, "text/plain", "out of memory\n", 14);
		return;
	}
	q->s = s;
	q->req = req;
	s->inflight++;
	log_debug("%s %s%s%s", req->method, req->path, req->query[0] ? "?" : "", req->query);
	if (s->closing) {
		reply_status(q, api_status_printf(503, "ServiceUnavailable",
						  "the server is shutting down"));
		return;
	}
	if (req->body_too_large) {
		reply_status(q, api_status_printf(413, "RequestEntityTooLarge",
						  "Request entity too large: limit is %u", API_MAX_BODY));
		return;
	}
	route(q);
}

/* ---- start-up: the built-in namespaces ---- */

static void bootstrap_next(struct api_server *s);

static void on_bootstrap_txn(void *data, json_t *answer, json_t *err)
{
	struct api_server *s = data;
	(void)answer;
	s->inflight--;
	if (s->closing) {
		maybe_finish_close(s);
		return;
	}
	if (err != NULL) {
		/* Most likely no leader yet: try again shortly. */
		uv_timer_start(&s->bootstrap_timer, on_bootstrap_timer, 250, 0);
		return;
	}
	s->bootstrap_left++;
	bootstrap_next(s);
}

/* Creates the built-in namespaces one at a time (bootstrap_left is the index
 * of the next one); an existing one is left as it is. */
static void bootstrap_next(struct api_server *s)
{
	const char *name = builtin_namespaces[s->bootstrap_left];
	char key[256], uid[40], ts[32];
	json_t *obj, *txn;
	int rv;
	if (name == NULL) {
		s->bootstrapped = true;
		log_info("API server: built-in namespaces present");
		if (svc_keeper_start(s->loop, s->kv, s->cache, &s->ranges, s->host,
				     http_server_port(s->http), &s->keeper) != 0)
			log_error("API server: cannot start the service allocation keeper");
		return;
	}
	snprintf(key, sizeof key, REGISTRY "namespaces/%s", name);
	new_uid(uid, sizeof uid);
	now_rfc3339(ts, sizeof ts, 0);
	obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:{s:s}}, s:{s:[s]}, s:{s:s}}", "kind",
			"Namespace", "apiVersion", "v1", "metadata", "name", name, "uid", uid,
			"creationTimestamp", ts, "labels", "kubernetes.io/metadata.name", name,
			"spec", "finalizers", "kubernetes", "status", "phase", "Active");
	txn = json_pack("{s:[{s:o, s:s, s:s, s:o}], s:[o]}", "compare", "key", b64_json(key),
			"target", "CREATE", "result", "EQUAL", "create_revision", jsonx_i64(0),
			"success", op_put(key, encode_value(obj)));
	json_decref(obj);
	s->inflight++;
	rv = kv_call(s->kv, KV_TXN, txn, on_bootstrap_txn, s);
	json_decref(txn);
	if (rv != 0) {
		s->inflight--;
		uv_timer_start(&s->bootstrap_timer, on_bootstrap_timer, 250, 0);
	}
}

static void on_bootstrap_timer(uv_timer_t *t)
{
	struct api_server *s = t->data;
	if (!s->closing)
		bootstrap_next(s);
}

/* ---- life cycle ---- */

int api_server_start(uv_loop_t *loop, struct kv *kv, const struct api_config *cfg,
		     struct api_server **out, char *errmsg)
{
	struct api_server *s = calloc(1, sizeof *s);
	int rv;
	if (s == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		return CAP_ENOMEM;
	}
	s->loop = loop;
	s->kv = kv;
	s->bookmark_ms = cfg->bookmark_ms ? cfg->bookmark_ms : 60000;
	if (cfg->ranges != NULL)
		s->ranges = *cfg->ranges;
	else
		svc_ranges_default(&s->ranges);
	snprintf(s->host, sizeof s->host, "%s", cfg->host);
	rv = wc_start(loop, kv, REGISTRY, &s->cache);
	if (rv != 0) {
		cap_errmsg_printf(errmsg, "watch cache: %s", cap_strerror(rv));
		free(s);
		return rv;
	}
	struct http_server_config hc = {
		.host = cfg->host,
		.port = cfg->port,
		.max_body = API_MAX_BODY,
		/* Watches are long-lived and quiet: idle means idle between requests. */
		.idle_timeout_ms = 0,
		.handler = on_request,
		.data = s,
	};
	rv = http_server_start(loop, &hc, &s->http, errmsg);
	if (rv != 0) {
		wc_close(s->cache, NULL, NULL);
		free(s);
		return rv;
	}
	snprintf(s->address, sizeof s->address, "%s:%d", cfg->host, http_server_port(s->http));
	uv_timer_init(loop, &s->bootstrap_timer);
	s->bootstrap_timer.data = s;
	bootstrap_next(s);
	*out = s;
	return 0;
}

int api_server_port(const struct api_server *s)
{
	return http_server_port(s->http);
}

bool api_server_ready(const struct api_server *s)
{
	return s->bootstrapped && wc_ready(s->cache) && svc_keeper_ready(s->keeper);
}

static void http_closed(void *data)
{
	struct api_server *s = data;
	void (*cb)(void *) = s->close_cb;
	void *cb_data = s->close_data;
	free(s);
	if (cb != NULL)
		cb(cb_data);
}

static void cache_closed(void *data)
{
	struct api_server *s = data;
	http_server_close(s->http, http_closed, s);
}

static void keeper_closed(void *data)
{
	struct api_server *s = data;
	wc_close(s->cache, cache_closed, s);
}

static void bootstrap_timer_closed(uv_handle_t *h)
{
	struct api_server *s = h->data;
	if (s->keeper != NULL)
		svc_keeper_close(s->keeper, keeper_closed, s);
	else
		keeper_closed(s);
}

static void maybe_finish_close(struct api_server *s)
{
	if (!s->closing || s->inflight > 0 || s->watches != NULL || s->close_cb == NULL)
		return;
	if (uv_is_closing((uv_handle_t *)&s->bootstrap_timer))
		return;
	uv_close((uv_handle_t *)&s->bootstrap_timer, bootstrap_timer_closed);
}

void api_server_close(struct api_server *s, void (*cb)(void *data), void *data)
{
	s->closing = true;
	s->close_cb = cb;
	s->close_data = data;
	uv_timer_stop(&s->bootstrap_timer);
	while (s->watches != NULL)
		watch_stop(s->watches);
	maybe_finish_close(s);
}
