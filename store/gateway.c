/* gateway.c — etcd's v3 JSON gateway: see gateway.h. */
#include "store/gateway.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "lib/http.h"
#include "lib/jsonx.h"
#include "lib/log.h"
#include "store/apply.h"

/* A watch stream stops being fed from memory once this much output is
 * waiting for a slow reader; it then catches up from history. */
#define WATCH_BACKLOG_BYTES (4u << 20)
/* Raw bytes per snapshot frame. */
#define SNAPSHOT_CHUNK (64u << 10)

struct watch_session;

struct gateway {
	uv_loop_t *loop;
	struct store *store;
	struct http_server *http;
	struct gateway_config cfg;
	struct watch_session *sessions;
	/* The frame of the last delivery, encoded once for every watcher that
	 * gets the same selection of the same batch (see frame_parts). */
	struct {
		uint64_t batch;
		const struct mvcc_event **sel;
		size_t n, cap;
		bool prev_kv;
		int64_t rev;
		char *head;     /* {"result":{"header":{...} */
		char *tail;     /* ,"events":[...]}}\n */
		size_t head_len, tail_len;
	} cache;
	void (*close_cb)(void *data);
	void *close_data;
};

/* One client's request, waiting for the store's answer. */
struct call {
	struct gateway *g;
	struct http_req *req;
	enum kv_op op;
	int64_t lease_id;   /* keep-alive: for the answer to an unknown lease */
};

/* One watcher inside a /v3/watch stream. */
struct stream_watch {
	struct stream_watch *next;
	struct watch_session *session;
	struct watcher *w;
	int64_t id;
	bool prev_kv;
};

/* One /v3/watch stream and its watchers. */
struct watch_session {
	struct watch_session *next, *prev;
	struct gateway *g;
	struct http_req *req;
	struct stream_watch *watches;
	int64_t next_id;
	bool closed;
};

static const struct {
	const char *path;
	int op;
} routes[] = {
	{"/v3/kv/range", KV_RANGE},
	{"/v3/kv/put", KV_PUT},
	{"/v3/kv/deleterange", KV_DELETE_RANGE},
	{"/v3/kv/txn", KV_TXN},
	{"/v3/kv/compaction", KV_COMPACT},
	{"/v3/lease/grant", KV_LEASE_GRANT},
	{"/v3/lease/revoke", KV_LEASE_REVOKE},
	{"/v3/kv/lease/revoke", KV_LEASE_REVOKE},
	{"/v3/lease/keepalive", KV_LEASE_KEEPALIVE},
	{"/v3/lease/timetolive", KV_LEASE_TIMETOLIVE},
	{"/v3/kv/lease/timetolive", KV_LEASE_TIMETOLIVE},
	{"/v3/lease/leases", KV_LEASE_LEASES},
	{"/v3/kv/lease/leases", KV_LEASE_LEASES},
	{"/v3/maintenance/status", KV_STATUS},
	{"/v3/maintenance/hash", KV_HASH},
	{"/v3/cluster/member/list", KV_MEMBER_LIST},
	{"/v3/cluster/member/add", KV_MEMBER_ADD},
	{"/v3/cluster/member/remove", KV_MEMBER_REMOVE},
	{"/v3/cluster/member/update", KV_MEMBER_UPDATE},
	{"/v3/cluster/member/promote", KV_MEMBER_PROMOTE},
	{"/v3/maintenance/transfer-leadership", KV_MOVE_LEADER},
};

/* Member-to-member paths (forwarding to the leader). */
#define PATH_PROPOSE "/capstan/v1/propose"
#define PATH_READ_INDEX "/capstan/v1/readindex"

/* Paths etcd serves that this member does not implement yet. */
static const char *const unimplemented[] = {
	"/v3/auth/enable", "/v3/auth/disable",
	"/v3/auth/authenticate", "/v3/auth/user/add", "/v3/auth/user/get",
	"/v3/auth/user/list", "/v3/auth/user/delete", "/v3/auth/user/changepw",
	"/v3/auth/user/grant", "/v3/auth/user/revoke", "/v3/auth/role/add",
	"/v3/auth/role/get", "/v3/auth/role/list", "/v3/auth/role/delete",
	"/v3/auth/role/grant", "/v3/auth/role/revoke", NULL,
};

static void reply_json(struct http_req *req, int status, json_t *body)
{
	size_t len;
	char *text = jsonx_dumps(body, &len);
	if (text == NULL) {
		http_reply(req, 500, "text/plain", "out of memory\n", 14);
		return;
	}
	http_reply(req, status, "application/json", text, len);
	free(text);
}

static void reply_error(struct http_req *req, int grpc, const char *msg)
{
	json_t *e = kv_error_new(grpc, msg);
	reply_json(req, cap_grpc_http_status(grpc), e);
	json_decref(e);
}

static void reply_cap_error(struct http_req *req, int err, const char *errmsg)
{
	json_t *e = store_error(err, errmsg);
	reply_json(req, cap_grpc_http_status((int)json_integer_value(json_object_get(e, "code"))), e);
	json_decref(e);
}

/* ---- plain calls ---- */

static void call_done(void *data, json_t *ans, json_t *err)
{
	struct call *c = data;
	if (err != NULL) {
		int code = (int)json_integer_value(json_object_get(err, "code"));
		if (c->op == KV_LEASE_KEEPALIVE && code == GRPC_NOT_FOUND) {
			/* etcd answers a keep-alive of an unknown lease with TTL 0. */
			json_t *res = json_object();
			json_t *wrap = json_object();
			struct store *s = c->g->store;
			json_object_set_new_nocheck(res, "header", store_header(s, mvcc_rev(store_mvcc(s))));
			json_object_set_new_nocheck(res, "ID", jsonx_i64(c->lease_id));
			json_object_set_new_nocheck(wrap, "result", res);
			reply_json(c->req, 200, wrap);
			json_decref(wrap);
		} else {
			reply_json(c->req, cap_grpc_http_status(code), err);
		}
	} else if (c->op == KV_LEASE_KEEPALIVE) {
		json_t *wrap = json_object();
		json_object_set_nocheck(wrap, "result", ans);
		reply_json(c->req, 200, wrap);
		json_decref(wrap);
	} else {
		reply_json(c->req, 200, ans);
	}
	free(c);
}

/* A range's answer, written as text by the store. */
static void call_text_done(void *data, const char *text, size_t len)
{
	struct call *c = data;
	http_reply(c->req, 200, "application/json", text, len);
	free(c);
}

/* ---- watch streams ---- */

static int stream_frame(struct watch_session *ws, json_t *result)
{
	json_t *wrap = json_object();
	char *text;
	size_t len;
	int rv = -1;
	json_object_set_new_nocheck(wrap, "result", result);
	text = jsonx_dumps(wrap, &len);
	json_decref(wrap);
	if (text != NULL && !ws->closed) {
		text[len] = '\n';
		rv = http_stream_write(ws->req, text, len + 1);
	}
	free(text);
	return rv;
}

static void cache_clear(struct gateway *g)
{
	free(g->cache.head);
	free(g->cache.tail);
	g->cache.head = g->cache.tail = NULL;
	g->cache.n = 0;
}

/* The parts of a frame shared by every watcher of one selection: the text
 * before the watch ID and the text after it. A put seen by ten thousand
 * watchers is encoded once, not ten thousand times: within one batch of the
 * hub, the same event pointers are the same events. Returns false when out
 * of memory. */
static bool frame_parts(struct gateway *g, const struct mvcc_event *const *evs, size_t n,
			int64_t rev, bool prev_kv)
{
	uint64_t batch = watch_hub_batch(store_watch_hub(g->store));
	json_t *frame, *arr, *h;
	char *events = NULL, *header = NULL;
	int hl, tl;

	if (g->cache.head != NULL && g->cache.batch == batch && g->cache.n == n &&
	    g->cache.prev_kv == prev_kv && g->cache.rev == rev &&
	    memcmp(g->cache.sel, evs, n * sizeof *evs) == 0)
		return true;
	cache_clear(g);
	if (n > g->cache.cap) {
		const struct mvcc_event **sel = realloc(g->cache.sel, n * sizeof *sel);
		if (sel == NULL)
			return false;
		g->cache.sel = sel;
		g->cache.cap = n;
	}
	frame = store_watch_frame(g->store, 0, evs, n, rev, prev_kv);
	arr = json_object_get(frame, "events");
	events = arr ? jsonx_dumps(arr, NULL) : NULL;
	json_decref(frame);
	h = store_header(g->store, rev);
	header = jsonx_dumps(h, NULL);
	json_decref(h);
	if (events == NULL || header == NULL)
		goto fail;
	/* The same members, in the same order, as store_watch_frame. */
	hl = asprintf(&g->cache.head, "{\"result\":{\"header\":%s", header);
	if (hl < 0) {
		g->cache.head = NULL;
		goto fail;
	}
	tl = asprintf(&g->cache.tail, ",\"events\":%s}}\n", events);
	if (tl < 0) {
		g->cache.tail = NULL;
		goto fail;
	}
	free(events);
	free(header);
	memcpy(g->cache.sel, evs, n * sizeof *evs);
	g->cache.n = n;
	g->cache.batch = batch;
	g->cache.prev_kv = prev_kv;
	g->cache.rev = rev;
	g->cache.head_len = (size_t)hl;
	g->cache.tail_len = (size_t)tl;
	return true;
fail:
	free(events);
	free(header);
	cache_clear(g);
	return false;
}

static void sw_deliver(void *data, const struct mvcc_event *const *evs, size_t n, int64_t rev)
{
	struct stream_watch *sw = data;
	struct gateway *g = sw->session->g;
	char id[48];
	struct http_iov parts[3];
	size_t np = 0;

	if (n == 0 || sw->session->closed) {
		stream_frame(sw->session, store_watch_frame(g->store, sw->id, evs, n, rev, sw->prev_kv));
		return;
	}
	if (!frame_parts(g, evs, n, rev, sw->prev_kv))
		return;
	parts[np++] = (struct http_iov){g->cache.head, g->cache.head_len};
	if (sw->id != 0) {
		int len = snprintf(id, sizeof id, ",\"watch_id\":\"%" PRId64 "\"", sw->id);
		parts[np++] = (struct http_iov){id, (size_t)len};
	}
	parts[np++] = (struct http_iov){g->cache.tail, g->cache.tail_len};
	http_stream_writev(sw->session->req, parts, np);
}

static void sw_remove(struct watch_session *ws, struct stream_watch *sw)
{
	struct stream_watch **pp = &ws->watches;
	while (*pp && *pp != sw)
		pp = &(*pp)->next;
	if (*pp)
		*pp = sw->next;
	watch_remove(store_watch_hub(ws->g->store), sw->w);
	free(sw);
}

/* Deferred removal: the hub is iterating when it reports compaction. */
static void sw_compacted(void *data, int64_t compact_rev)
{
	struct stream_watch *sw = data;
	json_t *res = json_object();
	json_object_set_new_nocheck(res, "header", store_header(sw->session->g->store, -1));
	jsonx_set_i64_nz(res, "watch_id", sw->id);
	json_object_set_new_nocheck(res, "canceled", json_true());
	json_object_set_new_nocheck(res, "compact_revision", jsonx_i64(compact_rev));
	stream_frame(sw->session, res);
	/* The hub marks the watcher done; it stays registered (inert) until
	 * the stream ends or the client cancels it. */
}

static bool sw_blocked(void *data)
{
	struct stream_watch *sw = data;
	return sw->session->closed || http_stream_pending(sw->session->req) > WATCH_BACKLOG_BYTES;
}

static struct stream_watch *sw_find(struct watch_session *ws, int64_t id)
{
	for (struct stream_watch *sw = ws->watches; sw; sw = sw->next)
		if (sw->id == id)
			return sw;
	return NULL;
}

static void session_create(struct watch_session *ws, json_t *create)
{
	struct store *s = ws->g->store;
	struct watch_opts opts;
	uint8_t *key = NULL, *end = NULL;
	int64_t id = 0;
	bool fragment = false;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	struct stream_watch *sw;
	json_t *res;
	int rv;

	rv = store_watch_parse(create, &opts, &key, &end, &id, &fragment, errmsg);
	if (rv != 0) {
		/* etcd reports a bad create as a canceled watch with a reason. */
		res = json_object();
		json_object_set_new_nocheck(res, "header", store_header(s, mvcc_rev(store_mvcc(s))));
		json_object_set_new_nocheck(res, "created", json_true());
		json_object_set_new_nocheck(res, "canceled", json_true());
		json_object_set_new_nocheck(res, "cancel_reason",
					    json_string(errmsg[0] ? errmsg : cap_strerror(rv)));
		stream_frame(ws, res);
		return;
	}
	if (id == 0 && json_object_get(create, "watch_id") == NULL) {
		while (sw_find(ws, ws->next_id))
			ws->next_id++;
		id = ws->next_id++;
	} else if (sw_find(ws, id)) {
		res = json_object();
		json_object_set_new_nocheck(res, "header", store_header(s, mvcc_rev(store_mvcc(s))));
		jsonx_set_i64_nz(res, "watch_id", id);
		json_object_set_new_nocheck(res, "created", json_true());
		json_object_set_new_nocheck(res, "canceled", json_true());
		json_object_set_new_nocheck(res, "cancel_reason",
					    json_string("etcdserver: duplicate watch ID"));
		stream_frame(ws, res);
		goto out;
	}
	sw = calloc(1, sizeof *sw);
	if (sw == NULL)
		goto out;
	sw->session = ws;
	sw->id = id;
	sw->prev_kv = opts.prev_kv;
	/* The created frame goes first; history replay starts on a later turn. */
	res = json_object();
	json_object_set_new_nocheck(res, "header", store_header(s, mvcc_rev(store_mvcc(s))));
	jsonx_set_i64_nz(res, "watch_id", id);
	json_object_set_new_nocheck(res, "created", json_true());
	stream_frame(ws, res);
	struct watch_sink sink = {sw_deliver, sw_compacted, sw_blocked, sw};
	if (watch_add(store_watch_hub(s), &opts, &sink, &sw->w) != 0) {
		free(sw);
		goto out;
	}
	sw->next = ws->watches;
	ws->watches = sw;
out:
	free(key);
	free(end);
}

static void session_cancel(struct watch_session *ws, json_t *cancel)
{
	struct store *s = ws->g->store;
	int64_t id = 0;
	char errmsg[CAP_ERRMSG_SIZE];
	struct stream_watch *sw;
	if (jsonx_get_i64(cancel, "watch_id", &id, errmsg) != 0)
		return;
	sw = sw_find(ws, id);
	if (sw == NULL)
		return;
	sw_remove(ws, sw);
	json_t *res = json_object();
	json_object_set_new_nocheck(res, "header", store_header(s, mvcc_rev(store_mvcc(s))));
	jsonx_set_i64_nz(res, "watch_id", id);
	json_object_set_new_nocheck(res, "canceled", json_true());
	stream_frame(ws, res);
}

static void session_progress(struct watch_session *ws)
{
	struct store *s = ws->g->store;
	for (struct stream_watch *sw = ws->watches; sw; sw = sw->next)
		if (!watch_synced(sw->w))
			return;  /* a progress reply must not overtake pending events */
	json_t *res = json_object();
	json_object_set_new_nocheck(res, "header", store_header(s, mvcc_rev(store_mvcc(s))));
	json_object_set_new_nocheck(res, "watch_id", jsonx_i64(-1));
	stream_frame(ws, res);
}

static void session_end(struct watch_session *ws)
{
	struct gateway *g = ws->g;
	while (ws->watches)
		sw_remove(ws, ws->watches);
	if (ws->prev)
		ws->prev->next = ws->next;
	else
		g->sessions = ws->next;
	if (ws->next)
		ws->next->prev = ws->prev;
	http_stream_end(ws->req);
	free(ws);
}

static void session_closed(struct http_req *req, void *data)
{
	struct watch_session *ws = data;
	(void)req;
	ws->closed = true;
	session_end(ws);
}

static void serve_watch(struct gateway *g, struct http_req *req)
{
	struct watch_session *ws = calloc(1, sizeof *ws);
	size_t off = 0;
	if (ws == NULL) {
		reply_cap_error(req, CAP_ENOMEM, NULL);
		return;
	}
	ws->g = g;
	ws->req = req;
	ws->next = g->sessions;
	if (g->sessions)
		g->sessions->prev = ws;
	g->sessions = ws;
	http_stream_begin(req, 200, "application/json");
	http_req_on_close(req, session_closed, ws);
	/* The body holds one or more request objects back to back. */
	while (off < req->body_len) {
		json_error_t jerr;
		json_t *msg;
		json_t *v;
		while (off < req->body_len && strchr(" \t\r\n", req->body[off]))
			off++;
		if (off >= req->body_len)
			break;
		msg = json_loadb(req->body + off, req->body_len - off, JSON_DISABLE_EOF_CHECK, &jerr);
		if (msg == NULL) {
			json_t *e = kv_error_new(GRPC_INVALID_ARGUMENT, jerr.text);
			json_t *wrap = json_object();
			json_object_set_new_nocheck(wrap, "error", e);
			char *text = json_dumps(wrap, JSON_COMPACT);
			if (text)
				http_stream_write(req, text, strlen(text));
			free(text);
			json_decref(wrap);
			break;
		}
		off += jerr.position;
		if ((v = json_object_get(msg, "create_request")) != NULL)
			session_create(ws, v);
		else if ((v = json_object_get(msg, "cancel_request")) != NULL)
			session_cancel(ws, v);
		else if (json_object_get(msg, "progress_request") != NULL)
			session_progress(ws);
		json_decref(msg);
	}
}

/* ---- snapshot download ---- */

static void serve_snapshot(struct gateway *g, struct http_req *req)
{
	void *image;
	size_t len;
	struct store *s = g->store;
	if (store_commit_applied(s) != 0 || mvcc_snapshot(store_mvcc(s), &image, &len) != 0) {
		reply_cap_error(req, CAP_EIO, NULL);
		return;
	}
	http_stream_begin(req, 200, "application/json");
	for (size_t off = 0; off < len || off == 0;) {
		size_t n = len - off < SNAPSHOT_CHUNK ? len - off : SNAPSHOT_CHUNK;
		json_t *res = json_object();
		json_t *wrap = json_object();
		json_object_set_new_nocheck(res, "header", store_header(s, mvcc_rev(store_mvcc(s))));
		jsonx_set_i64_nz(res, "remaining_bytes", (int64_t)(len - off - n));
		json_object_set_new_nocheck(res, "blob", jsonx_bytes((const uint8_t *)image + off, n));
		json_object_set_new_nocheck(wrap, "result", res);
		char *text = json_dumps(wrap, JSON_COMPACT);
		json_decref(wrap);
		int rv = text ? http_stream_write(req, text, strlen(text)) : -1;
		if (text)
			http_stream_write(req, "\n", 1);
		free(text);
		off += n;
		if (rv != 0 || len == 0)
			break;
	}
	http_stream_end(req);
	free(image);
}

/* ---- routing ---- */

static void call_done(void *data, json_t *ans, json_t *err);

static void serve_internal(struct gateway *g, struct http_req *req, const char *p, json_t *body)
{
	struct call *c = calloc(1, sizeof *c);
	int rv;
	if (c == NULL) {
		reply_cap_error(req, CAP_ENOMEM, NULL);
		return;
	}
	c->g = g;
	c->req = req;
	c->op = KV_OP_COUNT;
	if (strcmp(p, PATH_PROPOSE) == 0)
		rv = store_internal_propose(g->store, body, call_done, c);
	else
		rv = store_internal_read_index(g->store, call_done, c);
	if (rv != 0) {
		json_t *e = store_error(rv, NULL);
		json_object_set_new_nocheck(e, "cap", json_integer(rv));
		reply_json(req, cap_grpc_http_status(cap_err_grpc(rv)), e);
		json_decref(e);
		free(c);
	}
}

static struct call *call_new(struct gateway *g, struct http_req *req, enum kv_op op)
{
	struct call *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->g = g;
	c->req = req;
	c->op = op;
	return c;
}

static void handle(struct http_req *req, void *data)
{
	struct gateway *g = data;
	char path[128];
	const char *p = req->path;
	json_t *body;
	json_error_t jerr;

	/* /v3beta/... is an alias of /v3/... */
	if (strncmp(p, "/v3beta/", 8) == 0) {
		snprintf(path, sizeof path, "/v3/%s", p + 8);
		p = path;
	}
	int op = -1;
	bool known = false;
	for (size_t i = 0; i < sizeof routes / sizeof routes[0] && op < 0; i++)
		if (strcmp(p, routes[i].path) == 0)
			op = routes[i].op;
	if (op < 0) {
		known = strcmp(p, "/v3/watch") == 0 || strcmp(p, "/v3/maintenance/snapshot") == 0 ||
			strcmp(p, "/v3/maintenance/alarm") == 0 ||
			strcmp(p, "/v3/maintenance/defragment") == 0 ||
			strcmp(p, PATH_PROPOSE) == 0 || strcmp(p, PATH_READ_INDEX) == 0;
		for (size_t i = 0; unimplemented[i] && !known; i++)
			if (strcmp(p, unimplemented[i]) == 0)
				known = true;
	}
	if (op < 0 && !known) {
		http_reply(req, 404, "text/plain", "Not Found\n", 10);
		return;
	}
	if (strcmp(req->method, "POST") != 0) {
		http_reply(req, 405, "text/plain", "Method Not Allowed\n", 19);
		return;
	}
	/* etcd limits the decoded request; keys and values travel base64
	 * encoded here, 4 bytes for 3. */
	if (req->body_too_large ||
	    req->body_len > g->cfg.max_request_bytes / 3 * 4 + 1024) {
		reply_cap_error(req, CAP_ETOOLARGE, NULL);
		return;
	}
	if (strcmp(p, "/v3/watch") == 0) {
		serve_watch(g, req);
		return;
	}
	if (strcmp(p, "/v3/maintenance/snapshot") == 0) {
		serve_snapshot(g, req);
		return;
	}
	/* Puts are most of the writes: one read straight from its text into
	 * its request; anything unusual takes the path below. */
	struct apply_req *put = NULL;
	if (op == KV_PUT && apply_parse_put_text(req->body, req->body_len, &put)) {
		struct call *c = call_new(g, req, KV_PUT);
		if (c == NULL) {
			apply_req_free(put);
			reply_cap_error(req, CAP_ENOMEM, NULL);
			return;
		}
		int rv = store_put(g->store, put, call_done, call_text_done, c);
		if (rv != 0) {
			free(c);
			reply_cap_error(req, rv, NULL);
		}
		return;
	}
	/* An empty body is an empty request, as Go's decoder sees it. */
	if (req->body_len == 0)
		body = json_object();
	else
		body = jsonx_loadb(req->body, req->body_len, JSON_DECODE_ANY, &jerr);
	if (body == NULL) {
		reply_error(req, GRPC_INVALID_ARGUMENT, jerr.text);
		return;
	}
	if (json_is_null(body)) {
		/* Go decodes a null body into an empty request. */
		json_decref(body);
		body = json_object();
	}
	if (!json_is_object(body)) {
		json_decref(body);
		reply_error(req, GRPC_INVALID_ARGUMENT,
			    "json: cannot unmarshal non-object into Go value of the request type");
		return;
	}
	if (op < 0) {
		if (strcmp(p, "/v3/maintenance/alarm") == 0 ||
		    strcmp(p, "/v3/maintenance/defragment") == 0) {
			/* No alarms are raised; sqlite reclaims space without a
			 * stop-the-world defragment. */
			http_reply(req, 200, "application/json", "{}", 2);
		} else if (strcmp(p, PATH_PROPOSE) == 0 || strcmp(p, PATH_READ_INDEX) == 0) {
			serve_internal(g, req, p, body);
		} else {
			reply_error(req, GRPC_UNIMPLEMENTED, "not supported by capstan-store yet");
		}
		json_decref(body);
		return;
	}
	struct call *c = call_new(g, req, (enum kv_op)op);
	if (c == NULL) {
		json_decref(body);
		reply_cap_error(req, CAP_ENOMEM, NULL);
		return;
	}
	if (op == KV_LEASE_KEEPALIVE) {
		/* Remember the ID for the TTL-0 answer to an unknown lease. */
		char errmsg[CAP_ERRMSG_SIZE];
		jsonx_get_i64(body, "ID", &c->lease_id, errmsg);
	}
	/* Ranges (reads, gets, lists) and puts are most of the traffic: their
	 * answers go to the reply's text without a JSON tree. */
	int rv = op == KV_RANGE || op == KV_PUT
		 ? store_call_text(g->store, (enum kv_op)op, body, call_done, call_text_done, c)
		 : store_call(g->store, (enum kv_op)op, body, call_done, c);
	json_decref(body);
	if (rv != 0) {
		free(c);
		reply_cap_error(req, rv, NULL);
	}
}

static void batch_begin(void *data)
{
	struct gateway *g = data;
	http_server_batch_begin(g->http);
}

static void batch_end(void *data)
{
	struct gateway *g = data;
	http_server_batch_end(g->http);
}

int gateway_start(uv_loop_t *loop, struct store *s, const struct gateway_config *cfg,
		  struct gateway **out, char *errmsg)
{
	struct gateway *g = calloc(1, sizeof *g);
	int rv;
	if (g == NULL)
		return CAP_ENOMEM;
	g->loop = loop;
	g->store = s;
	g->cfg = *cfg;
	if (g->cfg.max_request_bytes == 0)
		g->cfg.max_request_bytes = 1572864;
	struct http_server_config hc = {
		.host = cfg->host,
		.port = cfg->port,
		/* Room for the JSON and base64 around a request of the limit; the
		 * exact limit is checked on the decoded size by the handler. */
		.max_body = g->cfg.max_request_bytes / 3 * 4 + 1024,
		.handler = handle,
		.data = g,
	};
	rv = http_server_start(loop, &hc, &g->http, errmsg);
	if (rv != 0) {
		free(g);
		return CAP_EIO;
	}
	/* One put seen by many streams: their frames are written together, on
	 * every core, when the hub has handed the put to all of them. */
	watch_hub_set_batch_hooks(store_watch_hub(s), batch_begin, batch_end, g);
	*out = g;
	return CAP_OK;
}

int gateway_port(const struct gateway *g)
{
	return http_server_port(g->http);
}

static void http_closed(void *data)
{
	struct gateway *g = data;
	cache_clear(g);
	free(g->cache.sel);
	void (*cb)(void *) = g->close_cb;
	void *cb_data = g->close_data;
	free(g);
	if (cb)
		cb(cb_data);
}

void gateway_close(struct gateway *g, void (*cb)(void *data), void *data)
{
	g->close_cb = cb;
	g->close_data = data;
	watch_hub_set_batch_hooks(store_watch_hub(g->store), NULL, NULL, NULL);
	/* Closing the server closes each stream's connection, whose on_close
	 * ends the session and removes its watchers. */
	http_server_close(g->http, http_closed, g);
}
