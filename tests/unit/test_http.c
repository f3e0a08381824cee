/* test_http.c — the HTTP server and client of lib/http.h against each other
 * (and against raw loopback sockets where the client would hide the wire),
 * all on one uv loop, every run bounded in time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/err.h"
#include "lib/http.h"

#define MAX_BODY 1024
#define IDLE_MS 200
#define HEADER_MS 300
/* The slow-reader tests' header timeout, which is also how long a closing
 * connection may go without progress: long enough that a loaded machine
 * (sanitizers, the suite in parallel) cannot stall the reader that long. */
#define SLOW_HEADER_MS 1000
#define STREAM_CHUNKS 5
#define MANY 500
/* More than the kernel's socket buffers hold (tcp_wmem's 4 MiB at most, and
 * the reader's small receive buffer): most of it waits in the server's queue
 * when the upgraded connection is closed. */
#define FLOOD_BYTES (8 * 1024 * 1024)
#define FLOOD_HEAD "HTTP/1.1 101 Switching Protocols\r\nUpgrade: flood\r\n\r\n"

struct fixture;

/* A delayed answer or a stream driven by a timer. */
struct pending {
	struct fixture *f;
	struct http_req *req;
	uv_timer_t timer;
	int sent;
};

struct fixture {
	uv_loop_t loop;
	struct http_server *srv;
	struct http_client *client;
	int port;
	int on_close_calls;
	bool server_closed;
	bool slow_closed;
	int header_ms;
	struct pending *live[8];
};

/* ---- the server side: one handler, routed by path ---- */

static void pending_free(uv_handle_t *h)
{
	free(h->data);
}

static void pending_finish(struct pending *p)
{
	for (int i = 0; i < 8; i++)
		if (p->f->live[i] == p)
			p->f->live[i] = NULL;
	uv_timer_stop(&p->timer);
	uv_close((uv_handle_t *)&p->timer, pending_free);
}

static void delay_cb(uv_timer_t *t)
{
	struct pending *p = t->data;

	http_reply(p->req, 200, "text/plain", "late", 4);
	pending_finish(p);
}

static void stream_cb(uv_timer_t *t)
{
	struct pending *p = t->data;
	char chunk[8];

	if (p->sent == STREAM_CHUNKS) {
		http_stream_end(p->req);
		pending_finish(p);
		return;
	}
	snprintf(chunk, sizeof(chunk), "c%d", p->sent++);
	assert_int_equal(http_stream_write(p->req, chunk, strlen(chunk)), 0);
}

/* The peer of an open stream or pending request went away. */
static void on_peer_gone(struct http_req *req, void *data)
{
	struct pending *p = data;

	p->f->on_close_calls++;
	if (strcmp(req->path, "/slow") == 0) {
		p->f->slow_closed = true;
		http_reply(req, 200, "text/plain", "never seen", 10);
	} else {
		/* Writing to a gone peer reports it, so producers can stop. */
		assert_int_equal(http_stream_write(req, "x", 1), -1);
		http_stream_end(req);
	}
	pending_finish(p);
}

static struct pending *pending_new(struct fixture *f, struct http_req *req)
{
	struct pending *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	p->f = f;
	p->req = req;
	uv_timer_init(&f->loop, &p->timer);
	p->timer.data = p;
	for (int i = 0; i < 8; i++) {
		if (f->live[i] == NULL) {
			f->live[i] = p;
			break;
		}
	}
	return p;
}

static void flood_read(struct http_raw *raw, const char *bytes, ssize_t len, void *data)
{
	(void)raw;
	(void)bytes;
	(void)len;
	(void)data;
}

static void handler(struct http_req *req, void *data)
{
	struct fixture *f = data;
	char out[256];

	if (strcmp(req->path, "/echo") == 0) {
		http_reply(req, 200, "text/plain", req->body, req->body_len);
	} else if (strcmp(req->path, "/big") == 0) {
		if (req->body_too_large)
			http_reply(req, 413, "text/plain", "too large", 9);
		else
			http_reply(req, 200, "text/plain", req->body, req->body_len);
	} else if (strcmp(req->path, "/query") == 0) {
		const char *a = http_req_query(req, "a");
		const char *b = http_req_query(req, "b");
		const char *h = http_req_header(req, "x-test");

		snprintf(out, sizeof(out), "%s|%s|%s|%s", a ? a : "(null)",
			 b ? b : "(null)", h ? h : "(null)", req->method);
		http_reply(req, 200, "text/plain", out, strlen(out));
	} else if (strcmp(req->path, "/delay") == 0) {
		struct pending *p = pending_new(f, req);
		uv_timer_start(&p->timer, delay_cb, 50, 0);
	} else if (strcmp(req->path, "/stream") == 0) {
		struct pending *p = pending_new(f, req);
		http_stream_begin(req, 200, "application/json");
		http_req_on_close(req, on_peer_gone, p);
		uv_timer_start(&p->timer, stream_cb, 20, 30);
	} else if (strcmp(req->path, "/hang") == 0) {
		struct pending *p = pending_new(f, req);
		http_stream_begin(req, 200, "application/json");
		http_req_on_close(req, on_peer_gone, p);
		assert_int_equal(http_stream_write(req, "first", 5), 0);
	} else if (strcmp(req->path, "/slow") == 0) {
		struct pending *p = pending_new(f, req);
		http_req_on_close(req, on_peer_gone, p);
	} else if (strcmp(req->path, "/flood") == 0) {
		/* Upgrades, queues FLOOD_BYTES and closes at once. */
		struct http_raw *raw;
		char *blob = malloc(FLOOD_BYTES);

		assert_non_null(blob);
		memset(blob, 'x', FLOOD_BYTES);
		assert_int_equal(http_upgrade(req, "Upgrade: flood\r\n", flood_read, f, &raw), 0);
		assert_int_equal(http_raw_write(raw, blob, FLOOD_BYTES), 0);
		http_raw_close(raw);
		free(blob);
	} else {
		http_reply(req, 404, "text/plain", "not found", 9);
	}
}

/* ---- loop helpers ---- */

static void deadline_cb(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Runs the loop until *flag or ms elapse; returns whether *flag was set. */
static bool run_until(struct fixture *f, bool *flag, unsigned ms)
{
	uv_timer_t deadline;
	bool expired = false;

	uv_timer_init(&f->loop, &deadline);
	deadline.data = &expired;
	uv_timer_start(&deadline, deadline_cb, ms, 0);
	while (!*flag && !expired)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&deadline, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	return *flag;
}

static int setup_with(void **state, int header_ms)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct http_server_config cfg = {
		.host = "127.0.0.1",
		.port = 0,
		.max_body = MAX_BODY,
		.idle_timeout_ms = IDLE_MS,
		.header_timeout_ms = header_ms,
		.handler = handler,
	};
	char errmsg[CAP_ERRMSG_SIZE];
	char url[64];

	assert_non_null(f);
	f->header_ms = header_ms;
	assert_int_equal(uv_loop_init(&f->loop), 0);
	cfg.data = f;
	assert_int_equal(http_server_start(&f->loop, &cfg, &f->srv, errmsg), 0);
	f->port = http_server_port(f->srv);
	assert_true(f->port > 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", f->port);
	assert_int_equal(http_client_new(&f->loop, url, &f->client), 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, HEADER_MS);
}

static int setup_slow(void **state)
{
	return setup_with(state, SLOW_HEADER_MS);
}

static void server_closed_cb(void *data)
{
	*(bool *)data = true;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	http_client_close(f->client);
	if (f->srv != NULL)
		http_server_close(f->srv, server_closed_cb, &f->server_closed);
	assert_true(run_until(f, &f->server_closed, 2000));
	/* Whatever the tests left pending must still wind down by itself. */
	for (int i = 0; i < 8; i++)
		assert_null(f->live[i]);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

/* ---- a raw client on a uv_tcp_t, for what the http client hides ---- */

struct raw {
	uv_tcp_t tcp;
	uv_connect_t creq;
	bool connected;
	bool eof;
	bool closed;
	char buf[16384];
	size_t len;
};

static void raw_connect_cb(uv_connect_t *req, int status)
{
	struct raw *r = req->data;

	assert_int_equal(status, 0);
	r->connected = true;
}

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct raw *r = h->data;

	(void)suggested;
	buf->base = r->buf + r->len;
	buf->len = sizeof(r->buf) - r->len - 1;
}

static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct raw *r = s->data;

	(void)buf;
	if (nread < 0) {
		r->eof = true;
		uv_read_stop(s);
		return;
	}
	r->len += (size_t)nread;
	r->buf[r->len] = '\0';
}

static void raw_connect(struct fixture *f, struct raw *r)
{
	struct sockaddr_in sa;

	memset(r, 0, sizeof(*r));
	uv_ip4_addr("127.0.0.1", f->port, &sa);
	uv_tcp_init(&f->loop, &r->tcp);
	r->tcp.data = r;
	r->creq.data = r;
	assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp, (struct sockaddr *)&sa,
					raw_connect_cb), 0);
	assert_true(run_until(f, &r->connected, 2000));
	assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read), 0);
}

static void raw_write_cb(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void raw_send(struct raw *r, const char *data, size_t len)
{
	uv_write_t *w = malloc(sizeof(*w) + len);
	uv_buf_t buf;

	assert_non_null(w);
	memcpy(w + 1, data, len);
	buf = uv_buf_init((char *)(w + 1), (unsigned)len);
	assert_int_equal(uv_write(w, (uv_stream_t *)&r->tcp, &buf, 1, raw_write_cb), 0);
}

static void raw_send_str(struct raw *r, const char *s)
{
	raw_send(r, s, strlen(s));
}

static void raw_closed(uv_handle_t *h)
{
	((struct raw *)h->data)->closed = true;
}

static void raw_close(struct fixture *f, struct raw *r)
{
	uv_close((uv_handle_t *)&r->tcp, raw_closed);
	assert_true(run_until(f, &r->closed, 2000));
}

static int count_substr(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Runs until the raw peer has received `n` occurrences of `needle`. */
static bool raw_wait_for(struct fixture *f, struct raw *r, const char *needle, int n,
			 unsigned ms)
{
	uint64_t end = uv_now(&f->loop) + ms;

	while (count_substr(r->buf, needle) < n && uv_now(&f->loop) < end) {
		bool never = false;
		run_until(f, &never, 10);
	}
	return count_substr(r->buf, needle) >= n;
}

/* ---- client callbacks ---- */

struct result {
	bool done;
	int status;
	char body[4096];
	size_t len;
	int calls;
	uint64_t at;
	uv_loop_t *loop;
};

static void result_cb(void *data, int status, const char *body, size_t len)
{
	struct result *r = data;

	r->calls++;
	r->done = true;
	r->status = status;
	r->len = len < sizeof(r->body) - 1 ? len : sizeof(r->body) - 1;
	memcpy(r->body, body, r->len);
	r->body[r->len] = '\0';
	if (r->loop != NULL)
		r->at = uv_now(r->loop);
}

/* ---- tests ---- */

/* A POSTed body comes back from the echo handler byte for byte. */
static void test_post_echo(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};

	assert_int_equal(http_client_post(f->client, "/echo", "text/plain", "hello, world",
					  12, 2000, result_cb, &r), 0);
	assert_true(run_until(f, &r.done, 2000));
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 12);
	assert_string_equal(r.body, "hello, world");
	assert_int_equal(r.calls, 1);
}

/* Query parameters are URL-decoded and headers found case-insensitively. */
static void test_query_and_headers(void **state)
{
	struct fixture *f = *state;
	struct raw raw;

	raw_connect(f, &raw);
	raw_send_str(&raw, "GET /query?b=hello%20big+world&a=1&c HTTP/1.1\r\n"
		       "Host: x\r\nX-Test: yes\r\n\r\n");
	assert_true(raw_wait_for(f, &raw, "1|hello big world|yes|GET", 1, 2000));
	raw_close(f, &raw);
}

struct chain {
	struct fixture *f;
	int left;
	int ok;
	bool done;
};

static void chain_cb(void *data, int status, const char *body, size_t len)
{
	struct chain *c = data;

	if (status == 200 && len == 4 && memcmp(body, "ping", 4) == 0)
		c->ok++;
	if (--c->left == 0) {
		c->done = true;
		return;
	}
	assert_int_equal(http_client_post(c->f->client, "/echo", "text/plain", "ping", 4,
					  2000, chain_cb, c), 0);
}

static void count_tcp(uv_handle_t *h, void *arg)
{
	if (h->type == UV_TCP && !uv_is_closing(h))
		(*(int *)arg)++;
}

/* Sequential requests reuse one kept-alive connection on both sides. */
static void test_keepalive_reuse(void **state)
{
	struct fixture *f = *state;
	struct chain c = {.f = f, .left = 30};
	int ntcp = 0;

	assert_int_equal(http_client_post(f->client, "/echo", "text/plain", "ping", 4,
					  2000, chain_cb, &c), 0);
	assert_true(run_until(f, &c.done, 5000));
	assert_int_equal(c.ok, 30);
	uv_walk(&f->loop, count_tcp, &ntcp);
	/* The listener, one server connection, one client connection. */
	assert_int_equal(ntcp, 3);
}

/* Pipelined requests on one raw connection are all answered, in order, and
 * the connection stays open. */
static void test_keepalive_pipelined(void **state)
{
	struct fixture *f = *state;
	static const char reqs[] =
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo"
		"GET /delay HTTP/1.1\r\nHost: x\r\n\r\n"
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nthree";
	struct raw raw;
	const char *one, *two, *late, *three;

	raw_connect(f, &raw);
	raw_send(&raw, reqs, sizeof(reqs) - 1);
	assert_true(raw_wait_for(f, &raw, "HTTP/1.1 200 OK", 4, 2000));
	one = strstr(raw.buf, "\r\n\r\none");
	two = strstr(raw.buf, "\r\n\r\ntwo");
	late = strstr(raw.buf, "\r\n\r\nlate");
	three = strstr(raw.buf, "\r\n\r\nthree");
	assert_non_null(one);
	assert_non_null(two);
	assert_non_null(late);
	assert_non_null(three);
	assert_true(one < two && two < late && late < three);
	assert_false(raw.eof);
	raw_close(f, &raw);
}

/* Requests that follow one another on a connection (whose memory the
 * server reuses) see only their own headers, query and body: a header, a
 * query parameter or a longer body of the one before is not there. */
static void test_keepalive_requests_see_only_their_own(void **state)
{
	struct fixture *f = *state;
	static const char reqs[] =
		"GET /query?a=first&b=1 HTTP/1.1\r\nHost: x\r\nX-Test: one\r\n\r\n"
		"GET /query?a=2 HTTP/1.1\r\nHost: x\r\n\r\n"
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nlong-body-1"
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nb2"
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
		"GET /query HTTP/1.1\r\nhost: x\r\nx-test: three\r\n\r\n";
	struct raw raw;

	raw_connect(f, &raw);
	raw_send(&raw, reqs, sizeof(reqs) - 1);
	assert_true(raw_wait_for(f, &raw, "HTTP/1.1 200 OK", 6, 2000));
	const char *first = strstr(raw.buf, "\r\n\r\nfirst|1|one|GET");
	const char *second = strstr(raw.buf, "\r\n\r\n2|(null)|(null)|GET");
	const char *body1 = strstr(raw.buf, "\r\n\r\nlong-body-1");
	const char *body2 = strstr(raw.buf, "Content-Length: 2\r\n\r\nb2");
	const char *empty = strstr(raw.buf, "Content-Length: 0\r\n\r\nHTTP/1.1");
	const char *third = strstr(raw.buf, "\r\n\r\n(null)|(null)|three|GET");
	assert_non_null(first);
	assert_non_null(second);
	assert_non_null(body1);
	assert_non_null(body2);
	assert_non_null(empty);
	assert_non_null(third);
	assert_true(first < second && second < body1 && body1 < body2 && body2 < empty &&
		    empty < third);
	raw_close(f, &raw);
}

/* A handler that answers from a later timer callback is heard. */
static void test_delayed_reply(void **state)
{
	struct fixture *f = *state;
	struct result r = {.loop = &f->loop};
	uint64_t start = uv_now(&f->loop);

	assert_int_equal(http_client_request(f->client, "GET", "/delay", NULL, NULL, 0,
					     2000, result_cb, &r), 0);
	assert_true(run_until(f, &r.done, 2000));
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "late");
	assert_true(r.at - start >= 40);
}

struct streamed {
	int chunks;
	char data[256];
	size_t len;
	uint64_t first_at;
	struct result done;
	uv_loop_t *loop;
	struct http_call *call;
	int cancel_after;
};

static void chunk_cb(void *data, const char *bytes, size_t len)
{
	struct streamed *s = data;

	if (s->chunks++ == 0)
		s->first_at = uv_now(s->loop);
	assert_true(s->len + len < sizeof(s->data));
	memcpy(s->data + s->len, bytes, len);
	s->len += len;
	if (s->cancel_after > 0 && s->chunks == s->cancel_after)
		http_call_cancel(s->call);
}

static void stream_done_cb(void *data, int status, const char *body, size_t len)
{
	struct streamed *s = data;

	result_cb(&s->done, status, body, len);
}

/* A streamed reply arrives chunk by chunk, each as soon as it is written. */
static void test_stream_chunks(void **state)
{
	struct fixture *f = *state;
	struct streamed s = {.loop = &f->loop};

	s.done.loop = &f->loop;
	assert_int_equal(http_client_stream(f->client, "/stream", "{}", 2, chunk_cb,
					    stream_done_cb, &s, &s.call), 0);
	assert_true(run_until(f, &s.done.done, 3000));
	assert_int_equal(s.done.status, 200);
	assert_int_equal(s.chunks, STREAM_CHUNKS);
	assert_int_equal(s.len, 10);
	assert_memory_equal(s.data, "c0c1c2c3c4", 10);
	/* Chunks are 30 ms apart: the first must not wait for the last. */
	assert_true(s.done.at - s.first_at >= 80);
}

/* Cancelling a stream from its chunk callback ends it with ECANCELED, once,
 * and the server sees the peer leave. */
static void test_stream_cancel(void **state)
{
	struct fixture *f = *state;
	struct streamed s = {.loop = &f->loop, .cancel_after = 2};

	assert_int_equal(http_client_stream(f->client, "/stream", "{}", 2, chunk_cb,
					    stream_done_cb, &s, &s.call), 0);
	assert_true(run_until(f, &s.done.done, 3000));
	assert_int_equal(s.done.status, HTTP_CLIENT_ECANCELED);
	assert_int_equal(s.done.calls, 1);
	assert_int_equal(s.chunks, 2);
	for (int i = 0; i < 100 && f->on_close_calls == 0; i++) {
		bool never = false;
		run_until(f, &never, 10);
	}
	assert_int_equal(f->on_close_calls, 1);
}

/* Bodies over max_body (by Content-Length or chunked) get the handler's
 * too-large answer, and the same connection then serves the next request. */
static void test_body_too_large(void **state)
{
	struct fixture *f = *state;
	char big[MAX_BODY * 3];
	char head[128];
	struct raw raw;
	int n;

	memset(big, 'z', sizeof(big));
	raw_connect(f, &raw);
	n = snprintf(head, sizeof(head),
		     "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
		     sizeof(big));
	raw_send(&raw, head, (size_t)n);
	raw_send(&raw, big, sizeof(big));
	assert_true(raw_wait_for(f, &raw, "too large", 1, 2000));
	assert_non_null(strstr(raw.buf, "HTTP/1.1 413"));

	/* Chunked, each chunk under the limit, the sum over it. */
	raw_send_str(&raw, "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 3; i++) {
		n = snprintf(head, sizeof(head), "%x\r\n", MAX_BODY / 2 + 1);
		raw_send(&raw, head, (size_t)n);
		raw_send(&raw, big, MAX_BODY / 2 + 1);
		raw_send_str(&raw, "\r\n");
	}
	raw_send_str(&raw, "0\r\n\r\n");
	assert_true(raw_wait_for(f, &raw, "too large", 2, 2000));

	raw_send_str(&raw, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nsmall");
	assert_true(raw_wait_for(f, &raw, "\r\n\r\nsmall", 1, 2000));
	assert_false(raw.eof);
	raw_close(f, &raw);
}

/* The client sees the too-large answer as an ordinary status. */
static void test_body_too_large_client(void **state)
{
	struct fixture *f = *state;
	char big[MAX_BODY + 1];
	struct result r = {0};

	memset(big, 'q', sizeof(big));
	assert_int_equal(http_client_post(f->client, "/big", "text/plain", big, sizeof(big),
					  2000, result_cb, &r), 0);
	assert_true(run_until(f, &r.done, 2000));
	assert_int_equal(r.status, 413);
	assert_string_equal(r.body, "too large");
}

/* Malformed HTTP gets "400 Bad Request" and the connection is closed. */
static void test_malformed_400(void **state)
{
	struct fixture *f = *state;
	struct raw raw;

	raw_connect(f, &raw);
	raw_send_str(&raw, "THIS IS NOT HTTP\r\n\r\n");
	assert_true(run_until(f, &raw.eof, 2000));
	assert_int_equal(strncmp(raw.buf, "HTTP/1.1 400 Bad Request\r\n", 26), 0);
	raw_close(f, &raw);
}

/* "Connection: close" and HTTP/1.0 requests get one answer, then a close. */
static void test_connection_close(void **state)
{
	struct fixture *f = *state;
	struct raw raw;

	raw_connect(f, &raw);
	raw_send_str(&raw, "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		       "Content-Length: 2\r\n\r\nhi");
	assert_true(run_until(f, &raw.eof, 2000));
	assert_non_null(strstr(raw.buf, "Connection: close\r\n"));
	assert_non_null(strstr(raw.buf, "\r\n\r\nhi"));
	raw_close(f, &raw);

	raw_connect(f, &raw);
	raw_send_str(&raw, "GET /delay HTTP/1.0\r\n\r\n");
	assert_true(run_until(f, &raw.eof, 2000));
	assert_non_null(strstr(raw.buf, "Content-Length: 4\r\n"));
	assert_non_null(strstr(raw.buf, "\r\n\r\nlate"));
	raw_close(f, &raw);
}

/* A connection that sends nothing is closed after the idle timeout, and one
 * that stops halfway through its headers after the header timeout. */
static void test_idle_and_header_timeouts(void **state)
{
	struct fixture *f = *state;
	struct raw raw;
	uint64_t start;

	raw_connect(f, &raw);
	start = uv_now(&f->loop);
	assert_true(run_until(f, &raw.eof, 2000));
	assert_true(uv_now(&f->loop) - start >= IDLE_MS - 20);
	assert_int_equal(raw.len, 0);
	raw_close(f, &raw);

	raw_connect(f, &raw);
	start = uv_now(&f->loop);
	raw_send_str(&raw, "GET /echo HTTP/1.1\r\nHost:");
	assert_true(run_until(f, &raw.eof, 2000));
	assert_true(uv_now(&f->loop) - start >= HEADER_MS - 20);
	raw_close(f, &raw);
}

/* A client that disconnects while its stream is open triggers on_close. */
static void test_disconnect_during_stream(void **state)
{
	struct fixture *f = *state;
	struct raw raw;

	raw_connect(f, &raw);
	raw_send_str(&raw, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_true(raw_wait_for(f, &raw, "first", 1, 2000));
	assert_non_null(strstr(raw.buf, "Transfer-Encoding: chunked\r\n"));
	assert_int_equal(f->on_close_calls, 0);
	raw_close(f, &raw);
	for (int i = 0; i < 100 && f->on_close_calls == 0; i++) {
		bool never = false;
		run_until(f, &never, 10);
	}
	assert_int_equal(f->on_close_calls, 1);
}

/* Closing the server tells an open stream's on_close and still finishes,
 * with the peer seeing its connection end. */
static void test_server_close_notifies(void **state)
{
	struct fixture *f = *state;
	struct raw raw;

	raw_connect(f, &raw);
	raw_send_str(&raw, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_true(raw_wait_for(f, &raw, "first", 1, 2000));
	http_server_close(f->srv, server_closed_cb, &f->server_closed);
	f->srv = NULL;
	assert_int_equal(f->on_close_calls, 1);
	assert_true(run_until(f, &f->server_closed, 2000));
	assert_true(run_until(f, &raw.eof, 2000));
	raw_close(f, &raw);
}

/* A request with no answer in time fails with ETIMEOUT, once; the server
 * then sees the connection go and drops its late answer. */
static void test_client_timeout(void **state)
{
	struct fixture *f = *state;
	struct result r = {.loop = &f->loop};
	uint64_t start = uv_now(&f->loop);

	assert_int_equal(http_client_post(f->client, "/slow", "text/plain", "", 0, 100,
					  result_cb, &r), 0);
	assert_true(run_until(f, &r.done, 2000));
	assert_int_equal(r.status, HTTP_CLIENT_ETIMEOUT);
	assert_true(r.at - start >= 90);
	assert_true(run_until(f, &f->slow_closed, 2000));
	assert_int_equal(r.calls, 1);

	/* The client is still usable afterwards. */
	r = (struct result){0};
	assert_int_equal(http_client_post(f->client, "/echo", "text/plain", "ok", 2, 2000,
					  result_cb, &r), 0);
	assert_true(run_until(f, &r.done, 2000));
	assert_int_equal(r.status, 200);
}

/* A port nobody listens on answers ECONNECT. */
static void test_connect_refused(void **state)
{
	struct fixture *f = *state;
	struct http_client *c;
	struct result r = {0};
	char url[64];
	uv_tcp_t probe;
	struct sockaddr_in sa;
	int namelen = sizeof(sa);

	/* Take a free port, then release it so nothing listens there. */
	uv_tcp_init(&f->loop, &probe);
	uv_ip4_addr("127.0.0.1", 0, &sa);
	assert_int_equal(uv_tcp_bind(&probe, (struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_tcp_getsockname(&probe, (struct sockaddr *)&sa, &namelen), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
	uv_close((uv_handle_t *)&probe, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);

	assert_int_equal(http_client_new(&f->loop, url, &c), 0);
	assert_int_equal(http_client_post(c, "/echo", "text/plain", "x", 1, 2000,
					  result_cb, &r), 0);
	assert_true(run_until(f, &r.done, 2000));
	assert_int_equal(r.status, HTTP_CLIENT_ECONNECT);
	http_client_close(c);
}

struct many {
	int answered;
	int ok;
	bool done;
};

struct one {
	struct many *m;
	int i;
};

static void many_cb(void *data, int status, const char *body, size_t len)
{
	struct one *o = data;
	char want[32];

	snprintf(want, sizeof(want), "request %d", o->i);
	if (status == 200 && len == strlen(want) && memcmp(body, want, len) == 0)
		o->m->ok++;
	if (++o->m->answered == MANY)
		o->m->done = true;
}

/* 500 concurrent requests, more than the pool's connections, are all
 * answered with their own bodies. */
static void test_many_concurrent(void **state)
{
	struct fixture *f = *state;
	struct many m = {0};
	struct one *ones = calloc(MANY, sizeof(*ones));

	assert_non_null(ones);
	for (int i = 0; i < MANY; i++) {
		char body[32];
		int n = snprintf(body, sizeof(body), "request %d", i);

		ones[i].m = &m;
		ones[i].i = i;
		assert_int_equal(http_client_post(f->client, i % 2 ? "/echo" : "/big",
						  "text/plain", body, (size_t)n, 5000,
						  many_cb, &ones[i]), 0);
	}
	assert_true(run_until(f, &m.done, 10000));
	assert_int_equal(m.ok, MANY);
	free(ones);
}

/* Closing the client cancels what is outstanding, each callback once. */
/* A reader that takes a little at a time, with pauses shorter than the
 * header timeout but adding up to many of them. */
struct sink {
	uv_tcp_t tcp;
	uv_connect_t creq;
	bool connected, eof, closed;
	size_t total, burst;
	char scratch[65536];
};

static void sink_connect_cb(uv_connect_t *req, int status)
{
	assert_int_equal(status, 0);
	((struct sink *)req->data)->connected = true;
}

static void sink_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct sink *k = h->data;

	(void)suggested;
	*buf = uv_buf_init(k->scratch, sizeof(k->scratch));
}

static void sink_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct sink *k = s->data;

	(void)buf;
	if (nread < 0) {
		k->eof = true;
		uv_read_stop(s);
		return;
	}
	k->total += (size_t)nread;
	k->burst += (size_t)nread;
}

static void sink_closed(uv_handle_t *h)
{
	((struct sink *)h->data)->closed = true;
}

static void sink_shut(uv_shutdown_t *r, int status)
{
	assert_int_equal(status, 0);
	free(r);
}

/* Asks for /flood and reads it slowly; half_close: stops sending first. */
static void flood_slow_reader(struct fixture *f, bool half_close)
{
	static char get_flood[] = "GET /flood HTTP/1.1\r\nHost: x\r\n\r\n";
	struct sink *k = calloc(1, sizeof(*k));
	struct sockaddr_in sa;
	uint64_t start, end;
	uv_buf_t req;
	uv_write_t w;

	assert_non_null(k);
	uv_ip4_addr("127.0.0.1", f->port, &sa);
	assert_int_equal(uv_tcp_init_ex(&f->loop, &k->tcp, AF_INET), 0);
	k->tcp.data = k;
	k->creq.data = k;
	{
		int small = 32768;

		/* A small window: the server's queue drains only as we read. */
		assert_int_equal(uv_recv_buffer_size((uv_handle_t *)&k->tcp, &small), 0);
	}
	assert_int_equal(uv_tcp_connect(&k->creq, &k->tcp, (struct sockaddr *)&sa,
					sink_connect_cb), 0);
	assert_true(run_until(f, &k->connected, 2000));
	req = uv_buf_init(get_flood, sizeof(get_flood) - 1);
	assert_int_equal(uv_write(&w, (uv_stream_t *)&k->tcp, &req, 1, NULL), 0);
	if (half_close) {
		uv_shutdown_t *sr = malloc(sizeof(*sr));

		assert_non_null(sr);
		assert_int_equal(uv_shutdown(sr, (uv_stream_t *)&k->tcp, sink_shut), 0);
	}
	start = uv_now(&f->loop);
	end = start + 60000;
	while (!k->eof && uv_now(&f->loop) < end) {
		bool never = false;

		/* Nothing read for a quarter of the timeout, then a little. */
		run_until(f, &never, f->header_ms / 4);
		k->burst = 0;
		assert_int_equal(uv_read_start((uv_stream_t *)&k->tcp, sink_alloc, sink_read), 0);
		while (!k->eof && k->burst < 512 * 1024 && uv_now(&f->loop) < end)
			uv_run(&f->loop, UV_RUN_ONCE);
		uv_read_stop((uv_stream_t *)&k->tcp);
	}
	assert_true(k->eof);
	/* The reading took several header timeouts, and nothing was lost. */
	assert_true(uv_now(&f->loop) - start > 2 * (uint64_t)f->header_ms);
	assert_int_equal(k->total, strlen(FLOOD_HEAD) + FLOOD_BYTES);
	uv_close((uv_handle_t *)&k->tcp, sink_closed);
	assert_true(run_until(f, &k->closed, 2000));
	free(k);
}

/* What an upgraded connection queued before its close reaches a reader that
 * takes longer than the header timeout in all, but keeps taking bytes. */
static void test_raw_close_waits_for_a_slow_reader(void **state)
{
	flood_slow_reader(*state, false);
}

/* ... also when that reader has stopped sending (half closed) before. */
static void test_raw_close_waits_for_a_half_closed_reader(void **state)
{
	flood_slow_reader(*state, true);
}

static void test_client_close_cancels(void **state)
{
	struct fixture *f = *state;
	struct result r[3] = {{0}};

	assert_int_equal(http_client_post(f->client, "/slow", "text/plain", "", 0, 0,
					  result_cb, &r[0]), 0);
	assert_int_equal(http_client_post(f->client, "/delay", "text/plain", "", 0, 0,
					  result_cb, &r[1]), 0);
	assert_int_equal(http_client_post(f->client, "/echo", "text/plain", "", 0, 0,
					  result_cb, &r[2]), 0);
	http_client_close(f->client);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].status, HTTP_CLIENT_ECANCELED);
	}
	/* Give teardown a fresh client to close. */
	{
		char url[64];
		snprintf(url, sizeof(url), "http://127.0.0.1:%d", f->port);
		assert_int_equal(http_client_new(&f->loop, url, &f->client), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_post_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_and_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keepalive_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keepalive_pipelined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keepalive_requests_see_only_their_own, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_delayed_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_too_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_too_large_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_400, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_and_header_timeouts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raw_close_waits_for_a_slow_reader, setup_slow,
						teardown),
		cmocka_unit_test_setup_teardown(test_raw_close_waits_for_a_half_closed_reader,
						setup_slow, teardown),
		cmocka_unit_test_setup_teardown(test_disconnect_during_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_close_notifies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_close_cancels, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
