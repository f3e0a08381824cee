/* kv_http.c — the kv interface over etcd's v3 JSON gateway, with endpoint
 * failover and streamed watches.
 *
 * Happy path of a call: the request is serialised once, POSTed to the
 * current endpoint, the answer parsed and handed to the callback, and the
 * endpoint remembered as the one to use first.
 *
 * Failure modes:
 * - connection refused / unreachable: the same body goes to the next
 *   endpoint, until every endpoint was tried once; then a transport error.
 * - a broken connection or a timeout after the request may have been sent:
 *   reported, not retried (a put must not be applied twice).
 * - a non-200 answer: etcd's error object from the body, or one made from
 *   the HTTP status when the body is not one.
 * - kv_close(): every outstanding callback runs with code 1 "context canceled".
 *
 * Streams (watch, snapshot) are one long chunked answer holding concatenated
 * JSON objects. They are split by a scanner that tracks brace depth and
 * string state, so neither newlines nor chunk boundaries matter. */
#include "client/kv_http.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "lib/http.h"

struct kv_http {
	struct kv kv;
	uv_loop_t *loop;
	size_t n;                      /* endpoints */
	char **urls;
	struct http_client **clients;
	size_t cur;                    /* endpoint tried first */
	unsigned timeout_ms;
	unsigned refs;                 /* outstanding calls and streams */
	bool closing;
};

struct kvh_call {
	struct kv_http *h;
	enum kv_op op;
	char *body;
	size_t len;
	size_t idx;                    /* endpoint of the current attempt */
	size_t tried;                  /* attempts that could not connect */
	kv_cb cb;
	void *data;
};

struct kv_watch {
	struct kv_http *h;
	char *path;
	char *body;
	size_t len;
	size_t idx;
	size_t tried;
	kv_watch_cb cb;
	void *data;
	struct http_call *call;
	bool eof_ok;        /* the server ending the stream is normal */
	bool got_bytes;     /* no failover once the server spoke */
	bool canceled;      /* the user asked to stop */
	bool reported;      /* the final callback was delivered */
	bool in_chunk;      /* inside on_chunk: done must wait for us */
	bool done_pending;
	int final_status;
	/* Bytes of frames not yet complete, and the scanner's state over them. */
	char *buf;
	size_t used;
	size_t cap;
	size_t scan;
	int depth;
	bool in_str;
	bool esc;
};

static const struct kv_ops kvh_ops;

static struct kv_http *kvh_of(struct kv *kv)
{
	return kv->impl;
}

static void kvh_free(struct kv_http *h)
{
	size_t i;
	for (i = 0; i < h->n; i++)
		free(h->urls[i]);
	free(h->urls);
	free(h->clients);
	free(h);
}

static void kvh_unref(struct kv_http *h)
{
	h->refs--;
	if (h->closing && h->refs == 0)
		kvh_free(h);
}

static json_t *kvh_transport_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static json_t *kvh_transport_error(const char *fmt, ...)
{
	char msg[CAP_ERRMSG_SIZE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_t *err = kv_error_new(GRPC_UNAVAILABLE, msg);
	if (err != NULL)
		json_object_set_new(err, "transport", json_true());
	return err;
}

bool kv_http_is_transport_error(const json_t *err)
{
	return err != NULL && json_is_true(json_object_get(err, "transport"));
}

const char *kv_http_endpoint(const struct kv *kv)
{
	const struct kv_http *h = kv->impl;
	return h->urls[h->cur];
}

/* The error of a client-side failure (status < 0). */
static json_t *kvh_status_error(struct kv_http *h, size_t idx, int status)
{
	switch (status) {
	case HTTP_CLIENT_ECONNECT:
		if (h->n > 1)
			return kvh_transport_error("could not connect to any endpoint (last %s)",
						   h->urls[idx]);
		return kvh_transport_error("could not connect to %s", h->urls[idx]);
	case HTTP_CLIENT_ETIMEOUT:
		return kvh_transport_error("context deadline exceeded (%s)", h->urls[idx]);
	case HTTP_CLIENT_ECANCELED:
		return kv_error_new(GRPC_CANCELED, "context canceled");
	default:
		return kvh_transport_error("connection to %s broke", h->urls[idx]);
	}
}

/* gRPC code for an HTTP status, for error bodies that are not etcd's. */
static int kvh_grpc_of_http(int status)
{
	switch (status) {
	case 400: return GRPC_INVALID_ARGUMENT;
	case 403: return GRPC_PERMISSION_DENIED;
	case 404: return GRPC_NOT_FOUND;
	case 405: return GRPC_UNIMPLEMENTED;
	case 408: return GRPC_CANCELED;
	case 409: return GRPC_ABORTED;
	case 412: return GRPC_FAILED_PRECONDITION;
	case 429: return GRPC_RESOURCE_EXHAUSTED;
	case 501: return GRPC_UNIMPLEMENTED;
	case 503: return GRPC_UNAVAILABLE;
	case 504: return GRPC_DEADLINE_EXCEEDED;
	default: return GRPC_UNKNOWN;
	}
}

/* etcd's error object from a non-200 body; made up from the status when the
 * body is not one. New reference. */
static json_t *kvh_http_error(int status, const char *body, size_t len)
{
	json_t *j = json_loadb(body, len, 0, NULL);
	if (json_is_object(j) && json_is_string(json_object_get(j, "message")))
		return j;
	if (json_is_object(j) && json_is_string(json_object_get(j, "error"))) {
		json_object_set(j, "message", json_object_get(j, "error"));
		return j;
	}
	json_decref(j);

	char msg[CAP_ERRMSG_SIZE];
	size_t n = len;
	while (n > 0 && isspace((unsigned char)body[n - 1]))
		n--;
	if (n > 200)
		n = 200;
	if (n > 0)
		snprintf(msg, sizeof msg, "%.*s (HTTP %d)", (int)n, body, status);
	else
		snprintf(msg, sizeof msg, "HTTP %d", status);
	return kv_error_new(kvh_grpc_of_http(status), msg);
}

/* The gateway's in-stream error {"error":{"grpc_code","message",...}} as
 * etcd's flat error object. New reference. */
static json_t *kvh_stream_error(json_t *e)
{
	if (json_is_object(e)) {
		const char *msg = json_string_value(json_object_get(e, "message"));
		json_t *code = json_object_get(e, "grpc_code");
		if (code == NULL)
			code = json_object_get(e, "code");
		return kv_error_new(json_is_integer(code) ? (int)json_integer_value(code) : GRPC_UNKNOWN,
				    msg != NULL ? msg : "stream error");
	}
	if (json_is_string(e))
		return kv_error_new(GRPC_UNKNOWN, json_string_value(e));
	return kv_error_new(GRPC_UNKNOWN, "stream error");
}

/* ---- unary calls ---- */

static int kvh_call_send(struct kvh_call *c);

static void kvh_call_finish(struct kvh_call *c, json_t *answer, json_t *err)
{
	struct kv_http *h = c->h;
	if (err == NULL && answer == NULL)
		err = kv_error_new(GRPC_INTERNAL, "out of memory");
	c->cb(c->data, err != NULL ? NULL : answer, err);
	json_decref(answer);
	json_decref(err);
	free(c->body);
	free(c);
	kvh_unref(h);
}

static void kvh_on_response(void *data, int status, const char *body, size_t len)
{
	struct kvh_call *c = data;
	struct kv_http *h = c->h;

	if (status == HTTP_CLIENT_ECONNECT && !h->closing && c->tried + 1 < h->n) {
		c->tried++;
		c->idx = (c->idx + 1) % h->n;
		if (kvh_call_send(c) == 0)
			return;
		status = HTTP_CLIENT_ECONNECT;
	}
	if (status < 0) {
		kvh_call_finish(c, NULL, kvh_status_error(h, c->idx, status));
		return;
	}
	/* The server answered: this endpoint is good. */
	h->cur = c->idx;
	if (status != 200) {
		kvh_call_finish(c, NULL, kvh_http_error(status, body, len));
		return;
	}
	json_error_t jerr;
	json_t *answer = json_loadb(body, len, 0, &jerr);
	if (!json_is_object(answer)) {
		json_decref(answer);
		kvh_call_finish(c, NULL, kv_error_new(GRPC_INTERNAL, "invalid JSON in answer"));
		return;
	}
	if (c->op == KV_LEASE_KEEPALIVE) {
		/* keepalive is a stream on the gateway: one {"result"} or {"error"} frame. */
		json_t *e = json_object_get(answer, "error");
		json_t *r = json_object_get(answer, "result");
		if (e != NULL) {
			json_t *err = kvh_stream_error(e);
			json_decref(answer);
			kvh_call_finish(c, NULL, err);
			return;
		}
		if (json_is_object(r)) {
			json_incref(r);
			json_decref(answer);
			answer = r;
		}
	}
	kvh_call_finish(c, answer, NULL);
}

static int kvh_call_send(struct kvh_call *c)
{
	struct kv_http *h = c->h;
	return http_client_post(h->clients[c->idx], kv_op_path(c->op), "application/json",
				c->body, c->len, h->timeout_ms, kvh_on_response, c);
}

static int kvh_call(struct kv *kv, enum kv_op op, json_t *req, kv_cb cb, void *data)
{
	struct kv_http *h = kvh_of(kv);
	struct kvh_call *c;
	int rv;

	if (h->closing || kv_op_path(op) == NULL)
		return CAP_EINVAL;
	c = calloc(1, sizeof *c);
	if (c == NULL)
		return CAP_ENOMEM;
	c->h = h;
	c->op = op;
	c->cb = cb;
	c->data = data;
	c->idx = h->cur;
	c->body = req != NULL ? json_dumps(req, JSON_COMPACT) : strdup("{}");
	if (c->body == NULL) {
		rv = CAP_ENOMEM;
		goto err_after_alloc;
	}
	c->len = strlen(c->body);
	/* A client that cannot even start a request is as good as unreachable. */
	while ((rv = kvh_call_send(c)) != 0) {
		if (++c->tried >= h->n) {
			rv = CAP_EUNAVAILABLE;
			goto err_after_body;
		}
		c->idx = (c->idx + 1) % h->n;
	}
	h->refs++;
	return 0;

err_after_body:
	free(c->body);
err_after_alloc:
	free(c);
	return rv;
}

/* ---- streams ---- */

static int kvh_stream_send(struct kv_watch *w);

static void kvh_stream_free(struct kv_watch *w)
{
	struct kv_http *h = w->h;
	free(w->buf);
	free(w->body);
	free(w->path);
	free(w);
	kvh_unref(h);
}

/* Delivers the final callback (once) and frees the stream. */
static void kvh_stream_finish(struct kv_watch *w, int status)
{
	if (!w->reported) {
		json_t *err = NULL;
		w->reported = true;
		if (w->canceled || (status == 200 && w->eof_ok))
			err = NULL;
		else if (status < 0)
			err = kvh_status_error(w->h, w->idx, status);
		else if (status != 200)
			err = kvh_http_error(status, w->buf != NULL ? w->buf : "", w->used);
		else
			err = kvh_transport_error("stream closed by %s", w->h->urls[w->idx]);
		w->cb(w->data, NULL, err);
		json_decref(err);
	}
	kvh_stream_free(w);
}

static void kvh_stream_stop(struct kv_watch *w)
{
	struct http_call *call = w->call;
	if (call != NULL) {
		w->call = NULL;
		http_call_cancel(call);
	}
}

/* One complete top-level JSON object of the stream. */
static void kvh_stream_frame(struct kv_watch *w, const char *p, size_t len)
{
	json_t *j = json_loadb(p, len, 0, NULL);
	json_t *r, *e;

	if (!json_is_object(j)) {
		json_t *err = kv_error_new(GRPC_INTERNAL, "invalid JSON in stream");
		w->reported = true;
		w->cb(w->data, NULL, err);
		json_decref(err);
		kvh_stream_stop(w);
		goto out;
	}
	r = json_object_get(j, "result");
	e = json_object_get(j, "error");
	if (json_is_object(r)) {
		w->cb(w->data, r, NULL);
	} else if (e != NULL) {
		json_t *err = json_is_object(e) ? kvh_stream_error(e) : json_incref(j);
		if (json_is_string(e) && json_object_get(err, "message") == NULL)
			json_object_set(err, "message", e);
		w->reported = true;
		w->cb(w->data, NULL, err);
		json_decref(err);
		kvh_stream_stop(w);
	}
	/* Anything else is not ours to interpret: skipped. */
out:
	json_decref(j);
}

static int kvh_buf_append(struct kv_watch *w, const char *bytes, size_t len)
{
	if (w->used + len + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		while (cap < w->used + len + 1)
			cap *= 2;
		char *b = realloc(w->buf, cap);
		if (b == NULL)
			return -1;
		w->buf = b;
		w->cap = cap;
	}
	memcpy(w->buf + w->used, bytes, len);
	w->used += len;
	w->buf[w->used] = '\0';
	return 0;
}

static void kvh_on_chunk(void *data, const char *bytes, size_t len)
{
	struct kv_watch *w = data;
	size_t start = 0, i;

	w->got_bytes = true;
	if (w->reported || w->canceled)
		return;
	if (kvh_buf_append(w, bytes, len) != 0) {
		json_t *err = kv_error_new(GRPC_RESOURCE_EXHAUSTED, "out of memory");
		w->reported = true;
		w->cb(w->data, NULL, err);
		json_decref(err);
		kvh_stream_stop(w);
		return;
	}
	w->in_chunk = true;
	for (i = w->scan; i < w->used && !w->reported && !w->canceled; i++) {
		char ch = w->buf[i];
		if (w->in_str) {
			if (w->esc)
				w->esc = false;
			else if (ch == '\\')
				w->esc = true;
			else if (ch == '"')
				w->in_str = false;
			continue;
		}
		if (w->depth == 0) {
			/* Between frames: only the start of an object matters. */
			if (ch == '{') {
				start = i;
				w->depth = 1;
			} else {
				start = i + 1;
			}
			continue;
		}
		if (ch == '"')
			w->in_str = true;
		else if (ch == '{' || ch == '[')
			w->depth++;
		else if ((ch == '}' || ch == ']') && --w->depth == 0) {
			kvh_stream_frame(w, w->buf + start, i + 1 - start);
			start = i + 1;
		}
	}
	/* Keep only the incomplete frame; the scanner resumes where it stopped. */
	if (start > 0) {
		memmove(w->buf, w->buf + start, w->used - start);
		w->used -= start;
		w->buf[w->used] = '\0';
		i -= start;
	}
	w->scan = i;
	w->in_chunk = false;
	if (w->done_pending)
		kvh_stream_finish(w, w->final_status);
}

static void kvh_on_done(void *data, int status, const char *body, size_t len)
{
	struct kv_watch *w = data;
	struct kv_http *h = w->h;

	(void)body;
	(void)len;
	if (status == HTTP_CLIENT_ECONNECT && !w->got_bytes && !w->canceled && !w->reported &&
	    !h->closing && w->tried + 1 < h->n) {
		w->tried++;
		w->idx = (w->idx + 1) % h->n;
		if (kvh_stream_send(w) == 0)
			return;
	}
	w->call = NULL;
	if (status >= 100 && status != 200 && w->used == 0 && len > 0)
		kvh_buf_append(w, body, len);
	if (w->in_chunk) {
		w->done_pending = true;
		w->final_status = status;
		return;
	}
	kvh_stream_finish(w, status);
}

static int kvh_stream_send(struct kv_watch *w)
{
	return http_client_stream(w->h->clients[w->idx], w->path, w->body, w->len,
				  kvh_on_chunk, kvh_on_done, w, &w->call);
}

int kv_http_stream(struct kv *kv, const char *path, json_t *body, kv_watch_cb cb, void *data,
		   struct kv_watch **out)
{
	struct kv_http *h = kvh_of(kv);
	struct kv_watch *w;
	int rv;

	if (h->closing)
		return CAP_EINVAL;
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return CAP_ENOMEM;
	w->h = h;
	w->cb = cb;
	w->data = data;
	w->idx = h->cur;
	w->eof_ok = true;
	w->path = strdup(path);
	w->body = json_dumps(body, JSON_COMPACT);
	if (w->path == NULL || w->body == NULL) {
		rv = CAP_ENOMEM;
		goto err_after_alloc;
	}
	w->len = strlen(w->body);
	while ((rv = kvh_stream_send(w)) != 0) {
		if (++w->tried >= h->n) {
			rv = CAP_EUNAVAILABLE;
			goto err_after_alloc;
		}
		w->idx = (w->idx + 1) % h->n;
	}
	h->refs++;
	if (out != NULL)
		*out = w;
	return 0;

err_after_alloc:
	free(w->body);
	free(w->path);
	free(w);
	return rv;
}

static int kvh_watch(struct kv *kv, json_t *create, kv_watch_cb cb, void *data,
		     struct kv_watch **out)
{
	json_t *body = json_pack("{s:O}", "create_request", create);
	struct kv_watch *w = NULL;
	int rv;

	if (body == NULL)
		return CAP_ENOMEM;
	rv = kv_http_stream(kv, "/v3/watch", body, cb, data, &w);
	json_decref(body);
	if (rv != 0)
		return rv;
	/* A watch has no natural end: the server closing it is a failure. */
	w->eof_ok = false;
	*out = w;
	return 0;
}

static void kvh_watch_cancel(struct kv_watch *w)
{
	if (w->canceled)
		return;
	w->canceled = true;
	if (w->call != NULL)
		kvh_stream_stop(w);
}

static void kvh_close(struct kv *kv)
{
	struct kv_http *h = kvh_of(kv);
	size_t i;

	h->closing = true;
	/* Hold a reference so callbacks run by the closes cannot free h under us. */
	h->refs++;
	for (i = 0; i < h->n; i++)
		http_client_close(h->clients[i]);
	kvh_unref(h);
}

static const struct kv_ops kvh_ops = {
	.call = kvh_call,
	.watch = kvh_watch,
	.watch_cancel = kvh_watch_cancel,
	.close = kvh_close,
};

/* Splits "a, b,c" into URLs; bare host:port gets "http://". */
static int kvh_parse_endpoints(struct kv_http *h, const char *endpoints)
{
	const char *p = endpoints;

	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t n;
		if (end == NULL)
			end = p + strlen(p);
		while (p < end && isspace((unsigned char)*p))
			p++;
		n = (size_t)(end - p);
		while (n > 0 && isspace((unsigned char)p[n - 1]))
			n--;
		if (n > 0) {
			char **urls = realloc(h->urls, (h->n + 1) * sizeof *urls);
			if (urls == NULL)
				return CAP_ENOMEM;
			h->urls = urls;
			if (n >= 8 && strncmp(p, "https://", 8) == 0)
				return CAP_EINVAL;   /* no TLS yet */
			bool bare = !(n >= 7 && strncmp(p, "http://", 7) == 0);
			char *u = malloc(n + 8);
			if (u == NULL)
				return CAP_ENOMEM;
			snprintf(u, n + 8, "%s%.*s", bare ? "http://" : "", (int)n, p);
			h->urls[h->n++] = u;
		}
		p = *end == ',' ? end + 1 : end;
	}
	return h->n > 0 ? 0 : CAP_EINVAL;
}

int kv_http_new(uv_loop_t *loop, const char *endpoints, unsigned timeout_ms, struct kv **out)
{
	struct kv_http *h;
	size_t i;
	int rv;

	h = calloc(1, sizeof *h);
	if (h == NULL)
		return CAP_ENOMEM;
	h->loop = loop;
	h->timeout_ms = timeout_ms;
	h->kv.ops = &kvh_ops;
	h->kv.impl = h;
	rv = kvh_parse_endpoints(h, endpoints != NULL ? endpoints : "");
	if (rv != 0)
		goto err_after_alloc;
	h->clients = calloc(h->n, sizeof *h->clients);
	if (h->clients == NULL) {
		rv = CAP_ENOMEM;
		goto err_after_alloc;
	}
	for (i = 0; i < h->n; i++) {
		if (http_client_new(loop, h->urls[i], &h->clients[i]) != 0) {
			rv = CAP_EINVAL;
			goto err_after_clients;
		}
	}
	*out = &h->kv;
	return 0;

err_after_clients:
	while (i-- > 0)
		http_client_close(h->clients[i]);
err_after_alloc:
	kvh_free(h);
	return rv;
}
