/* http.h — HTTP/1.1 on libuv: a server (keep-alive, bounded bodies, delayed
 * and streamed replies) and a client (keep-alive pool per endpoint, plain and
 * streamed responses). Parsing is http-parser's.
 *
 * Threading: everything runs on the loop thread that owns the server or client.
 *
 * Server contract
 * - The handler is called once per complete request. It must eventually
 *   answer with exactly one of http_reply() or http_stream_begin() ...
 *   http_stream_end(), now or from a later callback. Requests on one
 *   connection are answered in order; the next request on a connection is not
 *   read until the current one is answered (no pipelining overlap).
 * - The struct http_req and everything it points to stay valid until the
 *   handler has answered; if the client goes away first, the request stays
 *   valid too, the on_close callback (if set) is called once, and later
 *   replies are silently dropped.
 * - A body over max_body is not buffered: the rest is read and discarded,
 *   and the handler is called with body_too_large set and an empty body.
 * - A connection idle (no request bytes, no request in progress) for
 *   idle_timeout_ms, or slower than header_timeout_ms to send a whole request,
 *   is closed: slow or abandoned clients do not hold resources forever.
 *
 * - Upgrades (websocket): the handler answers with http_upgrade() instead;
 *   the connection then stops being HTTP and its bytes go both ways through
 *   the struct http_raw it returns, until http_raw_close().
 *
 * Client contract (libuv's): when a function taking a callback returns non-zero,
 * the callback is never called. Otherwise it is called exactly once, also on
 * failure and on http_client_close() (with status HTTP_CLIENT_ECANCELED). */
#ifndef CAPSTAN_HTTP_H
#define CAPSTAN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* ---- server ---- */

struct http_server;
struct http_req;

typedef void (*http_handler_fn)(struct http_req *req, void *data);
typedef void (*http_close_fn)(struct http_req *req, void *data);

struct http_req {
	const char *method;      /* "GET", "POST", ... */
	const char *path;        /* decoded? no: raw path, without the query */
	const char *query;       /* raw query string without '?', "" if none */
	const char *body;        /* NUL-terminated for convenience; body_len bytes */
	size_t body_len;
	bool body_too_large;
	void *user;              /* free for the handler's use */
};

struct http_server_config {
	const char *host;            /* e.g. "127.0.0.1" */
	int port;                    /* 0 picks a free port (see http_server_port) */
	size_t max_body;             /* bytes; bodies over it are refused */
	unsigned idle_timeout_ms;    /* 0 = default 120000 */
	unsigned header_timeout_ms;  /* 0 = default 30000 */
	http_handler_fn handler;
	void *data;                  /* passed to handler */
};

/* Binds and listens. On error returns non-zero with a message in errmsg
 * (CAP_ERRMSG_SIZE bytes). The config is copied. */
int http_server_start(uv_loop_t *loop, const struct http_server_config *cfg,
		      struct http_server **out, char *errmsg);
int http_server_port(const struct http_server *srv);
/* Stops listening, closes every connection (calling on_close of pending
 * requests), and frees the server once all handles are closed; then calls cb. */
void http_server_close(struct http_server *srv, void (*cb)(void *data), void *data);

/* Value of a request header (case-insensitive name), or NULL. */
const char *http_req_header(const struct http_req *req, const char *name);
/* Every value of a header sent more than once (kubectl sends one
 * X-Stream-Protocol-Version line per protocol), joined with ", " into buf
 * (size bytes, truncated to fit). Returns buf, or NULL when absent. */
const char *http_req_header_join(const struct http_req *req, const char *name, char *buf,
				 size_t size);
/* Value of a query parameter (URL-decoded into a buffer owned by req), or NULL. */
const char *http_req_query(struct http_req *req, const char *name);
/* Called once if the connection closes before the request is answered (or
 * while a stream is open). */
void http_req_on_close(struct http_req *req, http_close_fn cb, void *data);

/* A whole answer. body is copied. */
void http_reply(struct http_req *req, int status, const char *content_type,
		const char *body, size_t len);
/* A streamed (chunked) answer. */
void http_stream_begin(struct http_req *req, int status, const char *content_type);
/* Returns 0, or -1 if the client is gone (the caller should stop and call
 * http_stream_end). data is copied. */
int http_stream_write(struct http_req *req, const char *data, size_t len);
/* One chunk made of up to HTTP_IOV_MAX pieces, written as one (a frame
 * whose parts are shared by many streams needs no copy to assemble). The
 * pieces are copied only if the socket cannot take them at once. */
#define HTTP_IOV_MAX 8
struct http_iov {
	const char *base;
	size_t len;
};
int http_stream_writev(struct http_req *req, const struct http_iov *iov, size_t n);
/* Write batches (loop thread only): between begin and end, writes to
 * connections with nothing queued are gathered (copied) instead of made,
 * and end writes them all, the sockets of many connections on a few threads
 * at once. Each connection's bytes keep their order, also with writes made
 * outside the batch; nothing else changes for the caller (a connection that
 * closes meanwhile drops its bytes, as it would have). Pairs nest; end must
 * be called before control returns to the loop. */
void http_server_batch_begin(struct http_server *srv);
void http_server_batch_end(struct http_server *srv);
/* Bytes queued to the client and not yet written: lets producers apply
 * back-pressure on slow readers. */
size_t http_stream_pending(const struct http_req *req);
void http_stream_end(struct http_req *req);

/* Taking over a connection after "101 Switching Protocols". */
struct http_raw;

/* len > 0: bytes from the peer (valid during the call). len < 0: a libuv
 * error code, UV_EOF when the peer finished sending; it comes once, and no
 * reads follow it. The owner still calls http_raw_close(). */
typedef void (*http_raw_read_fn)(struct http_raw *raw, const char *bytes, ssize_t len,
				 void *data);

/* Answers req with "HTTP/1.1 101 Switching Protocols", the headers in
 * extra_headers (each ending in "\r\n"; "Upgrade" and "Connection" are the
 * caller's to send) and an empty line, and hands the connection to the
 * caller: every byte the peer sends from then on (also bytes it sent after
 * its request, before the answer) goes to on_read, from a later loop
 * iteration, never from inside this call. The request is answered either
 * way and must not be used again. Returns 0 with *out set, or -1 if the
 * client is already gone (on_read is then never called). The idle and
 * header timeouts no longer apply. */
int http_upgrade(struct http_req *req, const char *extra_headers, http_raw_read_fn on_read,
		 void *data, struct http_raw **out);
/* Queues bytes (copied) to the peer. Returns 0, or -1 if the connection is
 * closing. */
int http_raw_write(struct http_raw *raw, const char *bytes, size_t len);
/* Bytes queued to the peer and not yet written (for back-pressure). */
size_t http_raw_pending(const struct http_raw *raw);
/* Stops (true) or resumes (false) reading from the peer: back-pressure
 * when whatever the bytes go to is slow. */
void http_raw_pause(struct http_raw *raw, bool paused);
/* Ends the connection once what is queued has been written. No callback
 * runs after this and raw must not be used again. Call it exactly once. */
void http_raw_close(struct http_raw *raw);

/* ---- client ---- */

#define HTTP_CLIENT_ECONNECT (-1)   /* could not connect */
#define HTTP_CLIENT_EIO (-2)        /* connection broke / bad response */
#define HTTP_CLIENT_ETIMEOUT (-3)   /* no complete answer in time */
#define HTTP_CLIENT_ECANCELED (-4)  /* cancelled or client closed */

struct http_client;
struct http_call;

/* status: HTTP status (>= 100) or one of HTTP_CLIENT_E*. body is valid only
 * during the callback (NUL-terminated). */
typedef void (*http_response_cb)(void *data, int status, const char *body, size_t len);
/* Streamed response: on_chunk gets body bytes as they arrive (any split);
 * done is called once at the end with the final status as above. */
typedef void (*http_chunk_cb)(void *data, const char *bytes, size_t len);

/* url: "http://host:port" (a path, if any, is ignored). */
int http_client_new(uv_loop_t *loop, const char *url, struct http_client **out);
/* POST a body (copied); timeout_ms 0 = no timeout. */
int http_client_post(struct http_client *c, const char *path, const char *content_type,
		     const char *body, size_t len, unsigned timeout_ms,
		     http_response_cb cb, void *data);
/* Any method. */
int http_client_request(struct http_client *c, const char *method, const char *path,
			const char *content_type, const char *body, size_t len,
			unsigned timeout_ms, http_response_cb cb, void *data);
/* POST and stream the answer on a connection of its own. *out lets the
 * caller cancel; done(…, HTTP_CLIENT_ECANCELED, …) follows a cancel. */
int http_client_stream(struct http_client *c, const char *path, const char *body,
		       size_t len, http_chunk_cb on_chunk, http_response_cb done,
		       void *data, struct http_call **out);
/* The same with any method and no timeout: a Kubernetes watch is a GET. */
int http_client_stream_method(struct http_client *c, const char *method, const char *path,
			      const char *body, size_t len, http_chunk_cb on_chunk,
			      http_response_cb done, void *data, struct http_call **out);
/* done runs (with HTTP_CLIENT_ECANCELED) before this returns; the call must
 * not be used after its done callback has run. */
void http_call_cancel(struct http_call *call);
/* Cancels everything outstanding (callbacks run with ECANCELED) and frees
 * the client once its handles are closed. */
void http_client_close(struct http_client *c);

/* ---- for tests and fuzzing only ---- */

/* Serves fd, an already connected stream socket (e.g. one end of a
 * socketpair), exactly like an accepted connection. The server owns fd from
 * a 0 return on. Returns 0 or a libuv error code. */
int http_server_adopt_fd(struct http_server *srv, int fd);

#endif
