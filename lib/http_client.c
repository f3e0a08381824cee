/* http_client.c — the client half of http.h: a keep-alive connection pool to
 * one endpoint, with queued, timed and streamed requests.
 *
 * Happy path: a request is queued → it takes an idle pooled connection, or a
 * new one while the pool is below its cap, or waits → its bytes are written →
 * the response is parsed (Content-Length, chunked, or read-until-close) → the
 * connection goes back to the pool and the callback runs.
 *
 * Failure modes: a connect failure answers HTTP_CLIENT_ECONNECT; a broken
 * connection or malformed response answers HTTP_CLIENT_EIO, except that a
 * reused connection closed by the server before a single response byte (the
 * server's idle timeout racing our request) is retried once on another
 * connection; the timer answers HTTP_CLIENT_ETIMEOUT; a cancel or a close
 * answers HTTP_CLIENT_ECANCELED. Whatever happens, the callback runs exactly
 * once, and a connection whose request ended early is closed, never reused.
 *
 * Lifetime: a call is freed in its timer's close callback; the client is
 * freed when its last handle (connections, call timers, a pending address
 * lookup) has closed. */
#include "lib/http.h"

#include <http_parser.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "lib/log.h"

#define HTTP_CLIENT_MAX_CONNS 64
#define HTTP_CLIENT_READ_SIZE 65536

#define CONTAINER_OF(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

enum addr_state { ADDR_NONE, ADDR_RESOLVING, ADDR_OK, ADDR_FAILED };

struct cconn;

struct http_call {
	struct http_client *client;
	struct cconn *conn;          /* while it is being sent or answered */
	char *reqbuf;
	size_t reqlen;
	uv_timer_t timer;
	unsigned timeout_ms;
	http_response_cb cb;
	http_chunk_cb on_chunk;      /* non-NULL for a streamed call */
	void *data;
	char *body;
	size_t body_len;
	size_t body_cap;
	int status;
	bool head;
	bool done;
	bool queued;
	bool retried;
	struct http_call *prev;      /* the client's queue */
	struct http_call *next;
};

struct cconn {
	struct http_client *client;
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	uv_write_t write_req;
	http_parser parser;
	struct http_call *call;
	bool connected;
	bool closing;
	bool dedicated;              /* a stream's own connection: never pooled */
	bool reused;                 /* has answered a request before */
	bool got_bytes;              /* of the current response */
	bool complete;
	bool keep_alive;
	struct cconn *prev;
	struct cconn *next;
};

struct http_client {
	uv_loop_t *loop;
	char *host;
	char *hostport;              /* the Host header */
	int port;
	enum addr_state addr_state;
	struct sockaddr_storage addr;
	uv_getaddrinfo_t gai;
	struct http_call *queue_head;
	struct http_call *queue_tail;
	struct cconn *conns;
	int npooled;
	int handles;                 /* open handles and requests in flight */
	bool closing;
	char readbuf[HTTP_CLIENT_READ_SIZE];
};

static void client_pump(struct http_client *c);

static void client_maybe_free(struct http_client *c)
{
	if (!c->closing || c->handles > 0)
		return;
	free(c->host);
	free(c->hostport);
	free(c);
}

/* ---- calls ---- */

static void call_timer_closed(uv_handle_t *h)
{
	struct http_call *call = h->data;
	struct http_client *c = call->client;

	free(call->reqbuf);
	free(call->body);
	free(call);
	c->handles--;
	client_maybe_free(c);
}

static void queue_remove(struct http_client *c, struct http_call *call)
{
	if (call->prev != NULL)
		call->prev->next = call->next;
	else
		c->queue_head = call->next;
	if (call->next != NULL)
		call->next->prev = call->prev;
	else
		c->queue_tail = call->prev;
	call->prev = call->next = NULL;
	call->queued = false;
}

static void queue_push(struct http_client *c, struct http_call *call, bool front)
{
	call->queued = true;
	if (front) {
		call->prev = NULL;
		call->next = c->queue_head;
		if (c->queue_head != NULL)
			c->queue_head->prev = call;
		else
			c->queue_tail = call;
		c->queue_head = call;
	} else {
		call->next = NULL;
		call->prev = c->queue_tail;
		if (c->queue_tail != NULL)
			c->queue_tail->next = call;
		else
			c->queue_head = call;
		c->queue_tail = call;
	}
}

/* Runs the callback, once, and schedules the call's release. The caller
 * has already detached the call from its connection. */
static void call_complete(struct http_call *call, int status)
{
	const char *body = call->body ? call->body : "";
	size_t len = call->body ? call->body_len : 0;

	if (call->done)
		return;
	call->done = true;
	if (call->queued)
		queue_remove(call->client, call);
	uv_timer_stop(&call->timer);
	if (status < 100) {
		body = "";
		len = 0;
	}
	call->cb(call->data, status, body, len);
	uv_close((uv_handle_t *)&call->timer, call_timer_closed);
}

/* ---- connections ---- */

static void conn_closed(uv_handle_t *h)
{
	struct cconn *conn = h->data;
	struct http_client *c = conn->client;

	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		c->conns = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	free(conn);
	c->handles--;
	client_maybe_free(c);
}

static void conn_close(struct cconn *conn)
{
	if (conn->closing)
		return;
	conn->closing = true;
	if (!conn->dedicated)
		conn->client->npooled--;
	uv_close((uv_handle_t *)&conn->tcp, conn_closed);
}

/* Ends the connection's call with an error, closing the connection. */
static void conn_fail(struct cconn *conn, int status)
{
	struct http_call *call = conn->call;
	struct http_client *c = conn->client;

	conn->call = NULL;
	conn_close(conn);
	if (call == NULL)
		return;
	call->conn = NULL;
	/* The server closed a kept-alive connection before answering: it never
	 * saw the request, so sending it again is safe. */
	if (status == HTTP_CLIENT_EIO && conn->reused && !conn->got_bytes &&
	    !call->retried && !c->closing) {
		call->retried = true;
		free(call->body);
		call->body = NULL;
		call->body_len = call->body_cap = 0;
		queue_push(c, call, true);
		client_pump(c);
		return;
	}
	call_complete(call, status);
}

static int body_append(struct http_call *call, const char *at, size_t len)
{
	if (call->body_len + len + 1 > call->body_cap) {
		size_t cap = call->body_cap ? call->body_cap : 256;
		char *b;

		while (cap < call->body_len + len + 1)
			cap *= 2;
		b = realloc(call->body, cap);
		if (b == NULL)
			return -1;
		call->body = b;
		call->body_cap = cap;
	}
	memcpy(call->body + call->body_len, at, len);
	call->body_len += len;
	call->body[call->body_len] = '\0';
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct cconn *conn = p->data;

	/* A HEAD answer states a length but carries no body. */
	return conn->call != NULL && conn->call->head ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct cconn *conn = p->data;
	struct http_call *call = conn->call;

	if (call == NULL)
		return -1;
	if (p->status_code < 200)
		return 0;
	if (call->on_chunk != NULL) {
		call->on_chunk(call->data, at, len);
		/* Cancelled from inside on_chunk: stop parsing now. */
		return conn->call == call ? 0 : -1;
	}
	return body_append(call, at, len);
}

static int on_message_complete(http_parser *p)
{
	struct cconn *conn = p->data;

	/* 1xx answers are interim: the real one follows. */
	if (p->status_code < 200)
		return 0;
	conn->complete = true;
	conn->keep_alive = http_should_keep_alive(p);
	if (conn->call != NULL)
		conn->call->status = (int)p->status_code;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings response_settings = {
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* The response is whole: pool or close the connection, then answer. */
static void conn_response_done(struct cconn *conn, bool leftover)
{
	struct http_call *call = conn->call;
	struct http_client *c = conn->client;

	conn->call = NULL;
	call->conn = NULL;
	conn->reused = true;
	if (!conn->keep_alive || leftover || conn->dedicated || c->closing)
		conn_close(conn);
	call_complete(call, call->status);
	client_pump(c);
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct cconn *conn = h->data;

	(void)suggested;
	/* Each read is parsed before the next one: one buffer per client. */
	buf->base = conn->client->readbuf;
	buf->len = sizeof(conn->client->readbuf);
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct cconn *conn = s->data;
	size_t n;
	enum http_errno e;

	if (conn->closing || nread == 0)
		return;
	if (conn->call == NULL) {
		/* Idle: the server closed it, or sent bytes nobody asked for. */
		conn_close(conn);
		return;
	}
	if (nread < 0) {
		/* A body delimited by the close ends here. */
		http_parser_execute(&conn->parser, &response_settings, NULL, 0);
		if (conn->complete && conn->call != NULL)
			conn_response_done(conn, false);
		else
			conn_fail(conn, HTTP_CLIENT_EIO);
		return;
	}
	conn->got_bytes = true;
	n = http_parser_execute(&conn->parser, &response_settings, buf->base, (size_t)nread);
	if (conn->closing || conn->call == NULL)
		return;     /* cancelled or closed from a chunk callback */
	e = HTTP_PARSER_ERRNO(&conn->parser);
	if (conn->complete)
		conn_response_done(conn, n < (size_t)nread);
	else if (e != HPE_OK)
		conn_fail(conn, HTTP_CLIENT_EIO);
}

static void conn_write_cb(uv_write_t *w, int status)
{
	struct cconn *conn = w->data;

	/* Must not touch the call: it may be gone already. */
	if (status < 0 && !conn->closing)
		conn_fail(conn, HTTP_CLIENT_EIO);
}

static void conn_send(struct cconn *conn)
{
	struct http_call *call = conn->call;
	uv_buf_t buf = uv_buf_init(call->reqbuf, (unsigned)call->reqlen);

	http_parser_init(&conn->parser, HTTP_RESPONSE);
	conn->parser.data = conn;
	conn->complete = false;
	conn->got_bytes = false;
	conn->write_req.data = conn;
	if (uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, &buf, 1, conn_write_cb) != 0)
		conn_fail(conn, HTTP_CLIENT_EIO);
}

static void conn_connect_cb(uv_connect_t *req, int status)
{
	struct cconn *conn = req->data;

	if (conn->closing)
		return;
	if (status < 0) {
		conn_fail(conn, HTTP_CLIENT_ECONNECT);
		return;
	}
	conn->connected = true;
	uv_tcp_nodelay(&conn->tcp, 1);
	if (uv_read_start((uv_stream_t *)&conn->tcp, conn_alloc_cb, conn_read_cb) != 0) {
		conn_fail(conn, HTTP_CLIENT_ECONNECT);
		return;
	}
	if (conn->call != NULL)
		conn_send(conn);
	else
		client_pump(conn->client);
}

/* Opens a connection that will carry call. */
static int conn_open(struct http_client *c, struct http_call *call, bool dedicated)
{
	struct cconn *conn = calloc(1, sizeof(*conn));
	int rv;

	if (conn == NULL)
		return -1;
	conn->client = c;
	conn->dedicated = dedicated;
	uv_tcp_init(c->loop, &conn->tcp);
	conn->tcp.data = conn;
	conn->connect_req.data = conn;
	conn->next = c->conns;
	if (c->conns != NULL)
		c->conns->prev = conn;
	c->conns = conn;
	c->handles++;
	if (!dedicated)
		c->npooled++;
	conn->call = call;
	call->conn = conn;
	rv = uv_tcp_connect(&conn->connect_req, &conn->tcp,
			    (const struct sockaddr *)&c->addr, conn_connect_cb);
	if (rv != 0) {
		conn_fail(conn, HTTP_CLIENT_ECONNECT);
		return 0;
	}
	return 0;
}

/* ---- the client ---- */

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct http_client *c = req->data;

	c->handles--;
	if (status == 0 && res != NULL) {
		memcpy(&c->addr, res->ai_addr, res->ai_addrlen);
		c->addr_state = ADDR_OK;
	} else {
		if (!c->closing)
			log_warn("http client: cannot resolve %s: %s", c->host,
				 uv_strerror(status));
		c->addr_state = ADDR_FAILED;
	}
	uv_freeaddrinfo(res);
	if (c->closing) {
		client_maybe_free(c);
		return;
	}
	client_pump(c);
}

static int client_resolve(struct http_client *c)
{
	struct addrinfo hints;
	char port[16];
	int rv;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", c->port);
	c->gai.data = c;
	rv = uv_getaddrinfo(c->loop, &c->gai, gai_cb, c->host, port, &hints);
	if (rv != 0)
		return rv;
	c->handles++;
	c->addr_state = ADDR_RESOLVING;
	return 0;
}

/* Moves queued calls onto connections: idle ones first, then new ones. */
static void client_pump(struct http_client *c)
{
	if (c->closing)
		return;
	if (c->addr_state == ADDR_NONE && c->queue_head != NULL &&
	    client_resolve(c) != 0)
		c->addr_state = ADDR_FAILED;
	if (c->addr_state == ADDR_RESOLVING)
		return;
	while (c->queue_head != NULL && !c->closing) {
		struct http_call *call = c->queue_head;
		struct cconn *conn;

		if (c->addr_state == ADDR_FAILED) {
			call_complete(call, HTTP_CLIENT_ECONNECT);
			continue;
		}
		if (call->on_chunk != NULL) {
			queue_remove(c, call);
			if (conn_open(c, call, true) != 0)
				call_complete(call, HTTP_CLIENT_ECONNECT);
			continue;
		}
		for (conn = c->conns; conn != NULL; conn = conn->next)
			if (!conn->closing && !conn->dedicated && conn->connected &&
			    conn->call == NULL)
				break;
		if (conn != NULL) {
			queue_remove(c, call);
			conn->call = call;
			call->conn = conn;
			conn_send(conn);
			continue;
		}
		if (c->npooled >= HTTP_CLIENT_MAX_CONNS)
			break;
		queue_remove(c, call);
		if (conn_open(c, call, false) != 0)
			call_complete(call, HTTP_CLIENT_ECONNECT);
	}
}

/* Splits "http://host:port/..." (scheme optional, IPv6 in brackets). */
static int parse_url(const char *url, char **host, int *port)
{
	const char *p = url, *end, *colon;
	char *endp;
	long v;

	if (strncasecmp(p, "http://", 7) == 0)
		p += 7;
	else if (strstr(p, "://") != NULL)
		return -1;
	end = p + strcspn(p, "/?#");
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(end - p));
		if (rb == NULL)
			return -1;
		*host = strndup(p + 1, (size_t)(rb - p - 1));
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		*host = strndup(p, (size_t)((colon ? colon : end) - p));
	}
	if (*host == NULL)
		return -1;
	if (**host == '\0')
		goto err;
	if (colon == NULL) {
		*port = 80;
		return 0;
	}
	v = strtol(colon + 1, &endp, 10);
	if (endp != end || endp == colon + 1 || v <= 0 || v > 65535)
		goto err;
	*port = (int)v;
	return 0;
err:
	free(*host);
	*host = NULL;
	return -1;
}

int http_client_new(uv_loop_t *loop, const char *url, struct http_client **out)
{
	struct http_client *c = calloc(1, sizeof(*c));
	size_t hplen;

	if (c == NULL)
		return -1;
	c->loop = loop;
	if (parse_url(url, &c->host, &c->port) != 0) {
		free(c);
		return -1;
	}
	hplen = strlen(c->host) + 16;
	c->hostport = malloc(hplen);
	if (c->hostport == NULL) {
		free(c->host);
		free(c);
		return -1;
	}
	if (strchr(c->host, ':') != NULL)
		snprintf(c->hostport, hplen, "[%s]:%d", c->host, c->port);
	else
		snprintf(c->hostport, hplen, "%s:%d", c->host, c->port);
	if (uv_ip4_addr(c->host, c->port, (struct sockaddr_in *)&c->addr) == 0 ||
	    uv_ip6_addr(c->host, c->port, (struct sockaddr_in6 *)&c->addr) == 0)
		c->addr_state = ADDR_OK;
	*out = c;
	return 0;
}

static void call_timeout_cb(uv_timer_t *t)
{
	struct http_call *call = t->data;

	if (call->conn != NULL) {
		call->conn->call = NULL;
		conn_close(call->conn);
		call->conn = NULL;
	}
	call_complete(call, HTTP_CLIENT_ETIMEOUT);
}

static int client_submit(struct http_client *c, const char *method, const char *path,
			 const char *content_type, const char *body, size_t len,
			 unsigned timeout_ms, http_chunk_cb on_chunk,
			 http_response_cb cb, void *data, struct http_call **out)
{
	struct http_call *call;
	bool has_body = body != NULL || len > 0 ||
			(strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0);
	char head[1024];
	int n;

	if (c->closing || cb == NULL || path == NULL || path[0] != '/')
		return -1;
	if (strpbrk(path, " \r\n") != NULL || strpbrk(method, " \r\n") != NULL)
		return -1;
	call = calloc(1, sizeof(*call));
	if (call == NULL)
		return -1;
	n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path,
		     c->hostport);
	if (n > 0 && (size_t)n < sizeof(head) && has_body && content_type != NULL)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Type: %s\r\n",
			      content_type);
	if (n > 0 && (size_t)n < sizeof(head) && has_body)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n",
			      len);
	if (n > 0 && (size_t)n < sizeof(head))
		n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
	if (n <= 0 || (size_t)n >= sizeof(head))
		goto err_after_alloc;
	call->reqlen = (size_t)n + len;
	call->reqbuf = malloc(call->reqlen);
	if (call->reqbuf == NULL)
		goto err_after_alloc;
	memcpy(call->reqbuf, head, (size_t)n);
	if (len > 0)
		memcpy(call->reqbuf + n, body, len);
	call->client = c;
	call->cb = cb;
	call->on_chunk = on_chunk;
	call->data = data;
	call->head = strcmp(method, "HEAD") == 0;
	call->timeout_ms = timeout_ms;
	uv_timer_init(c->loop, &call->timer);
	call->timer.data = call;
	c->handles++;
	if (timeout_ms > 0)
		uv_timer_start(&call->timer, call_timeout_cb, timeout_ms, 0);
	if (out != NULL)
		*out = call;
	queue_push(c, call, false);
	client_pump(c);
	return 0;

err_after_alloc:
	free(call->reqbuf);
	free(call);
	return -1;
}

int http_client_post(struct http_client *c, const char *path, const char *content_type,
		     const char *body, size_t len, unsigned timeout_ms,
		     http_response_cb cb, void *data)
{
	return client_submit(c, "POST", path, content_type, body, len, timeout_ms,
			     NULL, cb, data, NULL);
}

int http_client_request(struct http_client *c, const char *method, const char *path,
			const char *content_type, const char *body, size_t len,
			unsigned timeout_ms, http_response_cb cb, void *data)
{
	if (method == NULL)
		return -1;
	return client_submit(c, method, path, content_type, body, len, timeout_ms,
			     NULL, cb, data, NULL);
}

int http_client_stream(struct http_client *c, const char *path, const char *body,
		       size_t len, http_chunk_cb on_chunk, http_response_cb done,
		       void *data, struct http_call **out)
{
	if (on_chunk == NULL)
		return -1;
	return client_submit(c, "POST", path, "application/json", body, len, 0,
			     on_chunk, done, data, out);
}

int http_client_stream_method(struct http_client *c, const char *method, const char *path,
			      const char *body, size_t len, http_chunk_cb on_chunk,
			      http_response_cb done, void *data, struct http_call **out)
{
	if (on_chunk == NULL || method == NULL)
		return -1;
	return client_submit(c, method, path, "application/json", body, len, 0,
			     on_chunk, done, data, out);
}

void http_call_cancel(struct http_call *call)
{
	if (call->done)
		return;
	if (call->conn != NULL) {
		call->conn->call = NULL;
		conn_close(call->conn);
		call->conn = NULL;
	}
	call_complete(call, HTTP_CLIENT_ECANCELED);
}

void http_client_close(struct http_client *c)
{
	struct cconn *conn;

	if (c->closing)
		return;
	c->closing = true;
	while (c->queue_head != NULL)
		call_complete(c->queue_head, HTTP_CLIENT_ECANCELED);
	for (conn = c->conns; conn != NULL; conn = conn->next) {
		struct http_call *call = conn->call;

		conn->call = NULL;
		conn_close(conn);
		if (call != NULL) {
			call->conn = NULL;
			call_complete(call, HTTP_CLIENT_ECANCELED);
		}
	}
	if (c->addr_state == ADDR_RESOLVING)
		uv_cancel((uv_req_t *)&c->gai);
	client_maybe_free(c);
}
