/* http_server.c — the server half of http.h: HTTP/1.1 connections on libuv,
 * parsed by http-parser, one request in flight per connection.
 *
 * Happy path: accept → read into the connection's buffer → parse until one
 * whole request → pause the parser and call the handler → the handler answers
 * (now or from a later callback) → parse whatever is already buffered → wait,
 * idle, for the next request.
 *
 * Failure modes: malformed HTTP gets "400 Bad Request" and the connection is
 * closed once that is written; a peer that disconnects while its request is
 * with the handler (or its stream is open) makes on_close run once, and later
 * answers are dropped; peers idle for too long, or too slow to send a whole
 * request, are closed by the connection's timer, and so is one that takes
 * nothing of a final answer (or of what an upgraded connection queued
 * before its close) for as long: a slow reader still gets all of it.
 *
 * Upgrades: http_upgrade() writes the 101 answer and turns the connection
 * raw: reads go to the owner's callback (bytes that came in behind the
 * request are delivered from a zero timer, never re-entrantly), writes are
 * queued as for answers, and http_raw_close() shuts it down gracefully.
 *
 * Lifetime: a connection holds one reference for its two handles (released
 * in the last close callback), one per request handed to the handler
 * (released when the request is answered) and one for its raw owner
 * (released by http_raw_close), so neither a late answer nor a late close
 * callback can touch freed memory.
 *
 * Write batches: between http_server_batch_begin() and _end() a write to a
 * connection with nothing queued is copied into the batch instead of being
 * written; _end() then writes every gathered connection's bytes with one
 * non-blocking writev each, on a few threads at once (lib/fanout.h), and
 * queues whatever a socket did not take with uv_write, as an ordinary write
 * would. The loop thread runs nothing else meanwhile, so libuv never sees a
 * concurrent write, and a connection closed during the batch (its
 * descriptor closed by uv_close) is skipped, never written. A connection's
 * bytes keep their order: once it has bytes in the batch, its later writes
 * join them; one that already had bytes queued is written to the queue as
 * before. */
#include "lib/http.h"

#include <http_parser.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "lib/err.h"
#include "lib/fanout.h"
#include "lib/log.h"
#include "lib/url.h"

#define HTTP_DEFAULT_IDLE_MS 120000
#define HTTP_DEFAULT_HEADER_MS 30000
#define HTTP_READ_SIZE 65536
/* Request line plus headers; http-parser has its own (larger) limit too. */
#define HTTP_MAX_HEAD_BYTES (64 * 1024)
#define HTTP_MAX_HEADERS 128
/* While a request is with the handler we keep reading, only to notice a peer
 * that goes away; pipelined bytes are buffered up to this much. */
#define HTTP_BUSY_BUFFER_MAX (256 * 1024)

#define CONTAINER_OF(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct sbuf {
	char *data;
	size_t len;
	size_t cap;
};

/* A header's name and value: offsets of NUL-terminated strings in the
 * request's hbytes. */
struct http_header {
	size_t name;
	size_t value;
};

struct query_param {
	char *name;
	char *value;
};

struct conn;

/* One request: what the handler sees plus the parser's scratch space. */
struct sreq {
	struct http_req pub;
	struct conn *conn;
	struct sbuf url;
	struct sbuf pq;             /* path and query, NUL-terminated each */
	const char *path;           /* in pq */
	const char *query;          /* in pq */
	struct http_header *headers;
	size_t nheaders;
	size_t cap_headers;
	struct sbuf hbytes;         /* every header's name and value */
	struct sbuf hname;          /* the header being parsed */
	struct sbuf hvalue;
	bool in_value;
	size_t head_bytes;
	struct sbuf body;
	struct query_param *params;
	size_t nparams;
	bool params_parsed;
	bool keep_alive;
	bool head;          /* HEAD: answers carry no body */
	bool http10;        /* HTTP/1.0: no chunked encoding */
	bool dispatched;
	bool streaming;
	bool raw_stream;    /* streamed to HTTP/1.0: no chunks, close at end */
	bool answered;
	bool gone;          /* the connection closed before the answer */
	bool close_called;
	http_close_fn on_close;
	void *on_close_data;
};

enum timer_mode { TIMER_NONE, TIMER_IDLE, TIMER_HEADER, TIMER_LINGER, TIMER_RAW_FLUSH };

/* The owner's side of an upgraded connection. */
struct http_raw {
	struct conn *conn;
	http_raw_read_fn on_read;
	void *data;
	bool paused;
	bool owner_closed;          /* http_raw_close() called: no more callbacks */
	bool end_told;              /* the owner got its len < 0 read */
};

struct conn {
	struct http_server *srv;
	uv_loop_t *loop;
	union {
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	uv_stream_t *stream;
	uv_timer_t timer;
	uv_shutdown_t shutdown_req;
	http_parser parser;
	struct sbuf in;             /* received, not yet parsed */
	size_t in_off;
	struct sreq *req;           /* being parsed, or with the handler */
	struct sreq *spare;         /* the last answered request, for the next */
	unsigned idle_ms;
	unsigned header_ms;
	size_t pending_bytes;       /* queued with uv_write, not yet written */
	int refs;
	int handles_open;
	enum timer_mode timer_mode;
	bool busy;                  /* a complete request is with the handler */
	bool reading;
	bool processing;
	bool eof;
	bool shutting;              /* final answer written; lingering to close */
	bool shut_done;             /* ... and everything queued is written */
	size_t linger_queued;       /* conn_unsent() when the linger timer was
				     * last armed */
	bool closing;               /* handles are being closed */
	bool in_list;
	bool upgraded;              /* raw bytes now, no more HTTP */
	struct http_raw raw;
	size_t batch_job;           /* index + 1 of its job in the open batch, or 0 */
	struct conn *prev;
	struct conn *next;
};

/* A connection's bytes in a write batch: up to BATCH_SEGS runs of the
 * batch's buffer (a connection with more is written out and starts again). */
#define BATCH_SEGS 8
/* A batch of fewer connections does not start the helper threads (and
 * fanout_run keeps small runs on the calling thread anyway). */
#define BATCH_MIN_SHARED 64
/* The batch buffer kept between batches at most. */
#define BATCH_KEEP_BYTES (1u << 20)
/* Helper threads for batches at most (besides the loop thread). */
#define BATCH_MAX_HELPERS 3

struct batch_seg {
	size_t off, len;            /* in the batch's buffer */
};

struct batch_job {
	struct conn *conn;          /* holds a reference until the batch ends */
	int fd;
	int nseg;                   /* 0: written out early (batch_settle) */
	struct batch_seg seg[BATCH_SEGS];
};

struct http_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	struct http_server_config cfg;
	char *host;
	int port;
	bool closing;
	int pending;                /* open handles: listener + connections */
	struct conn *conns;
	struct {
		int depth;              /* nesting of begin/end */
		struct batch_job *jobs;
		size_t njobs, cap;
		struct sbuf bytes;      /* every job's bytes */
		struct fanout *fanout;  /* made at the first big batch */
		bool no_fanout;         /* making it failed: stay on the loop thread */
	} batch;
	char readbuf[HTTP_READ_SIZE];
	void (*close_cb)(void *data);
	void *close_data;
};

struct wreq {
	uv_write_t w;
	struct conn *conn;
	size_t len;
	char data[];
};

/* ---- small buffers ---- */

static int sbuf_append(struct sbuf *b, const char *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *d;

		while (cap < b->len + n + 1)
			cap *= 2;
		d = realloc(b->data, cap);
		if (d == NULL)
			return -1;
		b->data = d;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static void sbuf_free(struct sbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

/* ---- requests ---- */

static void sreq_free_params(struct sreq *r)
{
	for (size_t i = 0; i < r->nparams; i++) {
		free(r->params[i].name);
		free(r->params[i].value);
	}
	free(r->params);
	r->params = NULL;
	r->nparams = 0;
}

static void sreq_free(struct sreq *r)
{
	free(r->headers);
	sreq_free_params(r);
	sbuf_free(&r->url);
	sbuf_free(&r->pq);
	sbuf_free(&r->hbytes);
	sbuf_free(&r->hname);
	sbuf_free(&r->hvalue);
	sbuf_free(&r->body);
	free(r);
}

/* A buffer kept for the connection's next request, emptied; one grown past
 * SREQ_KEEP_BYTES (a big body) is given back instead. */
#define SREQ_KEEP_BYTES 16384

static struct sbuf sbuf_kept(struct sbuf b)
{
	if (b.cap > SREQ_KEEP_BYTES) {
		sbuf_free(&b);
		return b;
	}
	b.len = 0;
	if (b.data != NULL)
		b.data[0] = '\0';
	return b;
}

/* An answered request's memory serves the connection's next request: a
 * request then costs no allocation in this layer. */
static void sreq_recycle(struct conn *c, struct sreq *r)
{
	struct sbuf url, pq, hbytes, hname, hvalue, body;
	struct http_header *headers = r->headers;
	size_t cap_headers = r->cap_headers;

	if (c->spare != NULL || c->closing) {
		sreq_free(r);
		return;
	}
	sreq_free_params(r);
	url = sbuf_kept(r->url);
	pq = sbuf_kept(r->pq);
	hbytes = sbuf_kept(r->hbytes);
	hname = sbuf_kept(r->hname);
	hvalue = sbuf_kept(r->hvalue);
	body = sbuf_kept(r->body);
	memset(r, 0, sizeof(*r));
	r->url = url;
	r->pq = pq;
	r->hbytes = hbytes;
	r->hname = hname;
	r->hvalue = hvalue;
	r->body = body;
	r->headers = headers;
	r->cap_headers = cap_headers;
	c->spare = r;
}

static int sreq_finish_header(struct sreq *r)
{
	struct http_header *h;

	if (r->hname.len == 0 && !r->in_value)
		return 0;
	if (r->nheaders >= HTTP_MAX_HEADERS)
		return -1;
	if (r->nheaders == r->cap_headers) {
		size_t cap = r->cap_headers ? r->cap_headers * 2 : 16;
		h = realloc(r->headers, cap * sizeof(*h));
		if (h == NULL)
			return -1;
		r->headers = h;
		r->cap_headers = cap;
	}
	h = &r->headers[r->nheaders];
	h->name = r->hbytes.len;
	if (sbuf_append(&r->hbytes, r->hname.data, r->hname.len) != 0 ||
	    sbuf_append(&r->hbytes, "", 1) != 0)
		return -1;
	h->value = r->hbytes.len;
	if (sbuf_append(&r->hbytes, r->hvalue.data, r->hvalue.len) != 0 ||
	    sbuf_append(&r->hbytes, "", 1) != 0)
		return -1;
	r->hname.len = r->hvalue.len = 0;
	r->nheaders++;
	r->in_value = false;
	return 0;
}

/* Splits the raw request target into path and query; absolute-form targets
 * ("http://host/p?q") keep only their path. */
static int sreq_split_url(struct sreq *r)
{
	const char *url = r->url.data ? r->url.data : "";
	const char *start = url;
	const char *q;
	const char *end;

	if (url[0] != '/' && url[0] != '*') {
		const char *scheme = strstr(url, "://");
		if (scheme != NULL) {
			start = strchr(scheme + 3, '/');
			if (start == NULL)
				start = "/";
		}
	}
	end = start + strcspn(start, "#");
	q = memchr(start, '?', (size_t)(end - start));
	/* The query after the path, each NUL-terminated, in one buffer. */
	size_t plen = (size_t)((q != NULL ? q : end) - start);
	size_t qlen = q != NULL ? (size_t)(end - q - 1) : 0;
	r->pq.len = 0;
	if (sbuf_append(&r->pq, start, plen) != 0 || sbuf_append(&r->pq, "", 1) != 0 ||
	    sbuf_append(&r->pq, q != NULL ? q + 1 : "", qlen) != 0)
		return -1;
	r->path = r->pq.data;
	r->query = r->pq.data + plen + 1;
	r->pub.path = r->path;
	r->pub.query = r->query;
	return 0;
}


static int sreq_parse_query(struct sreq *r)
{
	const char *p = r->query;

	r->params_parsed = true;
	while (*p != '\0') {
		size_t len = strcspn(p, "&;");
		const char *eq = memchr(p, '=', len);
		size_t nlen = eq ? (size_t)(eq - p) : len;
		struct query_param *np;

		if (len > 0) {
			np = realloc(r->params, (r->nparams + 1) * sizeof(*np));
			if (np == NULL)
				return -1;
			r->params = np;
			np = &r->params[r->nparams];
			np->name = url_decode(p, nlen);
			np->value = eq ? url_decode(eq + 1, len - nlen - 1) : strdup("");
			if (np->name == NULL || np->value == NULL) {
				free(np->name);
				free(np->value);
				return -1;
			}
			r->nparams++;
		}
		p += len;
		if (*p != '\0')
			p++;
	}
	return 0;
}

const char *http_req_header(const struct http_req *req, const char *name)
{
	const struct sreq *r = CONTAINER_OF(req, struct sreq, pub);

	for (size_t i = 0; i < r->nheaders; i++)
		if (strcasecmp(r->hbytes.data + r->headers[i].name, name) == 0)
			return r->hbytes.data + r->headers[i].value;
	return NULL;
}

const char *http_req_header_join(const struct http_req *req, const char *name, char *buf,
				 size_t size)
{
	const struct sreq *r = CONTAINER_OF(req, struct sreq, pub);
	size_t n = 0;
	bool found = false;

	if (size == 0)
		return NULL;
	buf[0] = '\0';
	for (size_t i = 0; i < r->nheaders; i++) {
		if (strcasecmp(r->hbytes.data + r->headers[i].name, name) != 0)
			continue;
		found = true;
		if (n < size)
			n += (size_t)snprintf(buf + n, size - n, "%s%s", n > 0 ? ", " : "",
					      r->hbytes.data + r->headers[i].value);
	}
	return found ? buf : NULL;
}

const char *http_req_query(struct http_req *req, const char *name)
{
	struct sreq *r = CONTAINER_OF(req, struct sreq, pub);

	if (!r->params_parsed && sreq_parse_query(r) != 0)
		log_warn("http: out of memory parsing a query string");
	for (size_t i = 0; i < r->nparams; i++)
		if (strcmp(r->params[i].name, name) == 0)
			return r->params[i].value;
	return NULL;
}

void http_req_on_close(struct http_req *req, http_close_fn cb, void *data)
{
	struct sreq *r = CONTAINER_OF(req, struct sreq, pub);

	r->on_close = cb;
	r->on_close_data = data;
}

/* ---- connections: lifetime ---- */

static void conn_process(struct conn *c);
static void conn_update(struct conn *c);
static void conn_close(struct conn *c);

static void server_maybe_free(struct http_server *srv)
{
	void (*cb)(void *);
	void *data;

	if (!srv->closing || srv->pending > 0)
		return;
	cb = srv->close_cb;
	data = srv->close_data;
	fanout_free(srv->batch.fanout);
	free(srv->batch.jobs);
	sbuf_free(&srv->batch.bytes);
	free(srv->host);
	free(srv);
	if (cb != NULL)
		cb(data);
}

static void conn_unref(struct conn *c)
{
	if (--c->refs > 0)
		return;
	if (c->req != NULL)
		sreq_free(c->req);
	if (c->spare != NULL)
		sreq_free(c->spare);
	sbuf_free(&c->in);
	free(c);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct http_server *srv = c->srv;

	if (--c->handles_open > 0)
		return;
	if (c->in_list) {
		if (c->prev != NULL)
			c->prev->next = c->next;
		else
			srv->conns = c->next;
		if (c->next != NULL)
			c->next->prev = c->prev;
		c->in_list = false;
		srv->pending--;
	}
	/* From here on the connection never touches its server again. */
	c->srv = NULL;
	conn_unref(c);
	server_maybe_free(srv);
}

/* Closes both handles now; a request with the handler is told, once. */
static void conn_close(struct conn *c)
{
	struct sreq *r = c->req;

	if (c->closing)
		return;
	c->closing = true;
	if (c->reading)
		uv_read_stop(c->stream);
	c->reading = false;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)c->stream, conn_handle_closed);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	if (c->upgraded && !c->raw.owner_closed && !c->raw.end_told) {
		c->raw.end_told = true;
		c->raw.on_read(&c->raw, NULL, UV_ECONNRESET, c->raw.data);
	}
	if (r != NULL && r->dispatched) {
		r->gone = true;
		if (r->on_close != NULL && !r->close_called) {
			r->close_called = true;
			/* May answer right here; conn is closing, so it is dropped. */
			r->on_close(&r->pub, r->on_close_data);
		}
	} else if (r != NULL) {
		c->req = NULL;
		sreq_free(r);
	}
}

static void conn_shutdown_cb(uv_shutdown_t *sr, int status)
{
	struct conn *c = sr->data;

	c->shut_done = true;
	if (status < 0 || c->eof)
		conn_close(c);
	/* Otherwise linger: read and discard until the peer closes or the timer
	 * fires, so unread request bytes don't turn our close into a reset
	 * that destroys the answer before the peer reads it. */
}

/* Closes gracefully once everything queued has been written. */
static void batch_settle(struct conn *c);

static void conn_shutdown(struct conn *c)
{
	if (c->closing || c->shutting)
		return;
	/* The shutdown follows the write queue: bytes waiting in a batch must
	 * be in it first. */
	batch_settle(c);
	if (c->closing)
		return;
	c->shutting = true;
	c->shutdown_req.data = c;
	if (uv_shutdown(&c->shutdown_req, c->stream, conn_shutdown_cb) != 0) {
		conn_close(c);
		return;
	}
	/* conn_update() arms the linger timer: a peer that never reads nor
	 * closes must not hold the connection. */
	c->timer_mode = TIMER_NONE;
	uv_timer_stop(&c->timer);
	conn_update(c);
}

/* ---- connections: writing ---- */

static void conn_write_cb(uv_write_t *w, int status)
{
	struct wreq *wr = CONTAINER_OF(w, struct wreq, w);
	struct conn *c = wr->conn;

	c->pending_bytes -= wr->len;
	free(wr);
	if (status < 0)
		conn_close(c);
}

/* Queues parts with uv_write, leaving out their first skip bytes (written
 * already). Returns 0, or -1 without closing the connection (the caller
 * does: a batch must not run callbacks halfway). */
static int conn_queue(struct conn *c, const uv_buf_t *parts, size_t nparts, size_t skip)
{
	struct wreq *wr;
	size_t total = 0, off = 0;
	uv_buf_t buf;

	for (size_t i = 0; i < nparts; i++)
		total += parts[i].len;
	if (skip >= total)
		return 0;
	total -= skip;
	wr = malloc(sizeof(*wr) + total);
	if (wr == NULL)
		return -1;
	for (size_t i = 0; i < nparts; i++) {
		size_t len = parts[i].len;
		const char *base = parts[i].base;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		base += skip;
		len -= skip;
		skip = 0;
		memcpy(wr->data + off, base, len);
		off += len;
	}
	wr->conn = c;
	wr->len = total;
	buf = uv_buf_init(wr->data, (unsigned)total);
	if (uv_write(&wr->w, c->stream, &buf, 1, conn_write_cb) != 0) {
		free(wr);
		return -1;
	}
	c->pending_bytes += total;
	return 0;
}

/* Writes parts now (what the socket does not take is queued); returns 0 or
 * -1 (connection closing). */
static int conn_write_now(struct conn *c, const uv_buf_t *parts, size_t nparts)
{
	size_t total = 0, skip = 0;

	for (size_t i = 0; i < nparts; i++)
		total += parts[i].len;
	if (total == 0)
		return 0;
	/* Nothing queued: write now, straight from the caller's buffers, and
	 * copy only what the socket did not take. An error is left to the
	 * queued write below, which reports it through its callback. */
	if (c->pending_bytes == 0) {
		int n = uv_try_write(c->stream, parts, (unsigned)nparts);
		if (n > 0 && (size_t)n == total)
			return 0;
		if (n > 0)
			skip = (size_t)n;
	}
	if (conn_queue(c, parts, nparts, skip) != 0) {
		conn_close(c);
		return -1;
	}
	return 0;
}

/* Writes c's bytes of the open batch now, on the loop thread: before
 * anything that must come after them and cannot wait for the batch's end. */
static void batch_settle(struct conn *c)
{
	struct http_server *srv = c->srv;
	struct batch_job *job;
	uv_buf_t parts[BATCH_SEGS];

	if (c->batch_job == 0)
		return;
	job = &srv->batch.jobs[c->batch_job - 1];
	c->batch_job = 0;
	for (int i = 0; i < job->nseg; i++)
		parts[i] = uv_buf_init(srv->batch.bytes.data + job->seg[i].off,
				       (unsigned)job->seg[i].len);
	/* The job keeps its reference on c until the batch ends. */
	int nseg = job->nseg;
	job->nseg = 0;
	if (!c->closing)
		conn_write_now(c, parts, (size_t)nseg);
}

/* Adds parts to c's bytes in the open batch. */
static int batch_add(struct conn *c, const uv_buf_t *parts, size_t nparts)
{
	struct http_server *srv = c->srv;
	struct batch_job *job = NULL;
	size_t off = srv->batch.bytes.len, total = 0;
	uv_os_fd_t fd;

	for (size_t i = 0; i < nparts; i++)
		total += parts[i].len;
	if (total == 0)
		return 0;
	if (c->batch_job != 0) {
		job = &srv->batch.jobs[c->batch_job - 1];
		if (job->nseg == BATCH_SEGS && job->seg[BATCH_SEGS - 1].off +
		    job->seg[BATCH_SEGS - 1].len != off) {
			batch_settle(c);
			if (c->closing)
				return -1;
			return conn_write_now(c, parts, nparts);
		}
	} else {
		if (uv_fileno((uv_handle_t *)c->stream, &fd) != 0)
			return conn_write_now(c, parts, nparts);
		if (srv->batch.njobs == srv->batch.cap) {
			size_t cap = srv->batch.cap ? srv->batch.cap * 2 : 64;
			struct batch_job *jobs = realloc(srv->batch.jobs, cap * sizeof(*jobs));
			if (jobs == NULL)
				return conn_write_now(c, parts, nparts);
			srv->batch.jobs = jobs;
			srv->batch.cap = cap;
		}
		job = &srv->batch.jobs[srv->batch.njobs];
		job->conn = c;
		job->fd = fd;
		job->nseg = 0;
	}
	for (size_t i = 0; i < nparts; i++)
		if (sbuf_append(&srv->batch.bytes, parts[i].base, parts[i].len) != 0) {
			srv->batch.bytes.len = off;
			if (c->batch_job == 0)
				return conn_write_now(c, parts, nparts);
			batch_settle(c);
			if (c->closing)
				return -1;
			return conn_write_now(c, parts, nparts);
		}
	if (c->batch_job == 0) {
		srv->batch.njobs++;
		c->batch_job = srv->batch.njobs;
		c->refs++;
	}
	/* Back-to-back writes of one connection make one run. */
	if (job->nseg > 0 && job->seg[job->nseg - 1].off + job->seg[job->nseg - 1].len == off)
		job->seg[job->nseg - 1].len += total;
	else
		job->seg[job->nseg++] = (struct batch_seg){off, total};
	return 0;
}

/* Queues the concatenation of parts; returns 0 or -1 (connection closing). */
static int conn_write(struct conn *c, const uv_buf_t *parts, size_t nparts)
{
	if (c->closing || c->shutting)
		return -1;
	if (c->srv->batch.depth > 0 && (c->batch_job != 0 || c->pending_bytes == 0))
		return batch_add(c, parts, nparts);
	return conn_write_now(c, parts, nparts);
}

void http_server_batch_begin(struct http_server *srv)
{
	srv->batch.depth++;
}

static void batch_fanout(struct http_server *srv, size_t njobs)
{
	unsigned par;

	if (srv->batch.fanout != NULL || srv->batch.no_fanout || njobs < BATCH_MIN_SHARED)
		return;
	par = uv_available_parallelism();
	par = par > BATCH_MAX_HELPERS + 1 ? BATCH_MAX_HELPERS : par - 1;
	if (par == 0 || fanout_new(par, &srv->batch.fanout) != 0) {
		srv->batch.fanout = NULL;
		srv->batch.no_fanout = true;
	}
}

void http_server_batch_end(struct http_server *srv)
{
	struct batch_job *jobs = srv->batch.jobs;
	size_t njobs = srv->batch.njobs, cap = srv->batch.cap, nw = 0;
	struct sbuf bytes = srv->batch.bytes;
	struct fanout_write *w;
	struct iovec *iov;

	if (srv->batch.depth <= 0)
		abort();
	if (--srv->batch.depth > 0 || njobs == 0)
		return;
	/* The batch is taken whole: a callback run by a close below sees no
	 * batch, and cannot add to this one. */
	srv->batch.jobs = NULL;
	srv->batch.njobs = srv->batch.cap = 0;
	srv->batch.bytes = (struct sbuf){0};
	w = malloc(njobs * sizeof(*w));
	iov = malloc(njobs * BATCH_SEGS * sizeof(*iov));
	for (size_t i = 0; i < njobs; i++) {
		struct batch_job *job = &jobs[i];
		job->conn->batch_job = 0;
		if (job->nseg == 0 || job->conn->closing || w == NULL || iov == NULL)
			continue;
		for (int k = 0; k < job->nseg; k++)
			iov[i * BATCH_SEGS + k] = (struct iovec){bytes.data + job->seg[k].off,
								 job->seg[k].len};
		w[nw++] = (struct fanout_write){job->fd, &iov[i * BATCH_SEGS], job->nseg, 0};
	}
	batch_fanout(srv, nw);
	fanout_run(srv->batch.fanout, w, nw);
	/* Nothing below runs a callback until every job has been queued:
	 * connections are closed, if need be, only at the end. */
	nw = 0;
	for (size_t i = 0; i < njobs; i++) {
		struct batch_job *job = &jobs[i];
		struct conn *c = job->conn;
		uv_buf_t parts[BATCH_SEGS];
		size_t written = 0;
		if (job->nseg == 0 || c->closing)
			continue;
		if (w != NULL && iov != NULL)
			written = w[nw++].written;
		for (int k = 0; k < job->nseg; k++)
			parts[k] = uv_buf_init(bytes.data + job->seg[k].off, (unsigned)job->seg[k].len);
		/* What the socket did not take (also after an error, which the
		 * queued write then reports) goes to libuv's queue, in order. */
		if (conn_queue(c, parts, (size_t)job->nseg, written) != 0)
			job->nseg = -1;
	}
	free(w);
	free(iov);
	for (size_t i = 0; i < njobs; i++) {
		if (jobs[i].nseg < 0)
			conn_close(jobs[i].conn);
		conn_unref(jobs[i].conn);
	}
	/* Keep the arrays for the next batch, unless a callback made new ones;
	 * a buffer grown by a big fan-out is given back rather than held. */
	if (srv->batch.jobs == NULL && srv->batch.bytes.data == NULL &&
	    bytes.cap <= BATCH_KEEP_BYTES) {
		srv->batch.jobs = jobs;
		srv->batch.cap = cap;
		bytes.len = 0;
		srv->batch.bytes = bytes;
	} else {
		free(jobs);
		sbuf_free(&bytes);
	}
}

static const char *status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 412: return "Precondition Failed";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

/* A bounded appender for format_head: every answer has a head, and
 * snprintf's format parsing was a few percent of a small answer's CPU. */
struct head_out {
	char *p;
	size_t len, cap;
	bool full;
};

static void head_put(struct head_out *h, const char *s, size_t n)
{
	if (h->full || n >= h->cap - h->len) {
		h->full = true;
		return;
	}
	memcpy(h->p + h->len, s, n);
	h->len += n;
}

static void head_str(struct head_out *h, const char *s)
{
	head_put(h, s, strlen(s));
}

static void head_num(struct head_out *h, unsigned long long v)
{
	char digits[24];
	size_t i = sizeof digits;
	do {
		digits[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	head_put(h, digits + i, sizeof digits - i);
}

/* Writes the status line and headers into out; length < 0 means chunked
 * (or, for HTTP/1.0, delimited by the close). Returns 0 if they do not
 * fit in cap bytes. */
static size_t format_head(char *out, size_t cap, const struct sreq *r, int status,
			  const char *content_type, long long length)
{
	struct head_out h = {.p = out, .cap = cap};

	head_str(&h, "HTTP/1.1 ");
	head_num(&h, status >= 0 ? (unsigned long long)status : 0);
	head_str(&h, " ");
	head_str(&h, status_text(status));
	head_str(&h, "\r\nContent-Type: ");
	head_str(&h, content_type ? content_type : "application/octet-stream");
	head_str(&h, "\r\n");
	if (length >= 0) {
		head_str(&h, "Content-Length: ");
		head_num(&h, (unsigned long long)length);
		head_str(&h, "\r\n");
	} else if (!r->http10) {
		head_str(&h, "Transfer-Encoding: chunked\r\n");
	}
	if (!r->keep_alive)
		head_str(&h, "Connection: close\r\n");
	else if (r->http10)
		head_str(&h, "Connection: keep-alive\r\n");
	head_str(&h, "\r\n");
	if (h.full)
		return 0;
	out[h.len] = '\0';
	return h.len;
}

/* The request is answered: free it, then carry on with the connection. */
static void sreq_answered(struct sreq *r)
{
	struct conn *c = r->conn;
	bool keep = r->keep_alive;

	r->answered = true;
	if (c->req == r)
		c->req = NULL;
	sreq_recycle(c, r);
	if (!c->closing) {
		c->busy = false;
		if (!keep || c->srv->closing) {
			conn_shutdown(c);
		} else {
			conn_process(c);
			conn_update(c);
		}
	}
	conn_unref(c);
}

static struct sreq *sreq_of(struct http_req *req)
{
	struct sreq *r = CONTAINER_OF(req, struct sreq, pub);

	/* Answering twice would free the request twice: catch it here. */
	if (!r->dispatched || r->answered)
		abort();
	return r;
}

void http_reply(struct http_req *req, int status, const char *content_type,
		const char *body, size_t len)
{
	struct sreq *r = sreq_of(req);
	struct conn *c = r->conn;
	char head[512];
	uv_buf_t parts[2];
	size_t hlen;

	if (r->streaming)
		abort();
	if (!r->gone && !c->closing) {
		if (c->srv->closing)
			r->keep_alive = false;
		hlen = format_head(head, sizeof(head), r, status, content_type,
				   (long long)len);
		parts[0] = uv_buf_init(head, (unsigned)hlen);
		parts[1] = uv_buf_init((char *)(uintptr_t)body, (unsigned)len);
		if (hlen == 0)
			conn_close(c);
		else
			conn_write(c, parts, r->head ? 1 : 2);
	}
	sreq_answered(r);
}

void http_stream_begin(struct http_req *req, int status, const char *content_type)
{
	struct sreq *r = sreq_of(req);
	struct conn *c = r->conn;
	char head[512];
	uv_buf_t part;
	size_t hlen;

	if (r->streaming)
		abort();
	r->streaming = true;
	if (r->gone || c->closing)
		return;
	if (r->http10) {
		/* No chunked encoding in HTTP/1.0: the close ends the body. */
		r->raw_stream = true;
		r->keep_alive = false;
	}
	hlen = format_head(head, sizeof(head), r, status, content_type, -1);
	part = uv_buf_init(head, (unsigned)hlen);
	conn_write(c, &part, 1);
}

int http_stream_write(struct http_req *req, const char *data, size_t len)
{
	struct http_iov part = {data, len};
	return http_stream_writev(req, &part, 1);
}

int http_stream_writev(struct http_req *req, const struct http_iov *iov, size_t n)
{
	struct sreq *r = sreq_of(req);
	struct conn *c = r->conn;
	char size[32];
	uv_buf_t parts[HTTP_IOV_MAX + 2];
	size_t len = 0, np = 0;

	if (!r->streaming || n > HTTP_IOV_MAX)
		abort();
	if (r->gone || c->closing || c->shutting)
		return -1;
	for (size_t i = 0; i < n; i++)
		len += iov[i].len;
	/* An empty chunk would end the stream. */
	if (len == 0 || r->head)
		return 0;
	if (!r->raw_stream) {
		snprintf(size, sizeof(size), "%zx\r\n", len);
		parts[np++] = uv_buf_init(size, (unsigned)strlen(size));
	}
	for (size_t i = 0; i < n; i++)
		parts[np++] = uv_buf_init((char *)(uintptr_t)iov[i].base, (unsigned)iov[i].len);
	if (!r->raw_stream)
		parts[np++] = uv_buf_init("\r\n", 2);
	return conn_write(c, parts, np);
}

size_t http_stream_pending(const struct http_req *req)
{
	const struct sreq *r = CONTAINER_OF(req, struct sreq, pub);

	if (r->gone || r->conn->closing)
		return 0;
	return r->conn->pending_bytes;
}

void http_stream_end(struct http_req *req)
{
	struct sreq *r = sreq_of(req);
	struct conn *c = r->conn;
	uv_buf_t part;

	if (!r->streaming)
		abort();
	if (!r->gone && !c->closing && !r->raw_stream && !r->head) {
		part = uv_buf_init("0\r\n\r\n", 5);
		conn_write(c, &part, 1);
	}
	sreq_answered(r);
}

/* ---- connections: parsing ---- */

static int on_message_begin(http_parser *p)
{
	struct conn *c = p->data;
	struct sreq *r = c->spare != NULL ? c->spare : calloc(1, sizeof(*r));

	if (r == NULL)
		return -1;
	c->spare = NULL;
	r->conn = c;
	c->req = r;
	/* The whole request must now arrive within the header timeout. */
	c->timer_mode = TIMER_NONE;
	uv_timer_stop(&c->timer);
	conn_update(c);
	return 0;
}

static int head_bytes_add(struct sreq *r, size_t n)
{
	r->head_bytes += n;
	return r->head_bytes > HTTP_MAX_HEAD_BYTES ? -1 : 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct sreq *r = ((struct conn *)p->data)->req;

	if (head_bytes_add(r, len) != 0)
		return -1;
	return sbuf_append(&r->url, at, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct sreq *r = ((struct conn *)p->data)->req;

	if (head_bytes_add(r, len) != 0)
		return -1;
	if (r->in_value && sreq_finish_header(r) != 0)
		return -1;
	return sbuf_append(&r->hname, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct sreq *r = ((struct conn *)p->data)->req;

	if (head_bytes_add(r, len) != 0)
		return -1;
	r->in_value = true;
	return sbuf_append(&r->hvalue, at, len);
}

static int on_headers_complete(http_parser *p)
{
	struct conn *c = p->data;
	struct sreq *r = c->req;
	const char *expect;

	if (sreq_finish_header(r) != 0 || sreq_split_url(r) != 0)
		return -1;
	r->pub.method = http_method_str((enum http_method)p->method);
	r->head = p->method == HTTP_HEAD;
	r->http10 = p->http_major == 1 && p->http_minor == 0;
	if ((p->flags & F_CONTENTLENGTH) && !(p->flags & F_CHUNKED) &&
	    p->content_length > c->srv->cfg.max_body)
		r->pub.body_too_large = true;
	expect = http_req_header(&r->pub, "Expect");
	if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && !r->http10) {
		uv_buf_t part = uv_buf_init("HTTP/1.1 100 Continue\r\n\r\n", 25);
		conn_write(c, &part, 1);
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	struct sreq *r = c->req;

	/* Over the limit: keep parsing to find the request's end, store nothing. */
	if (r->pub.body_too_large)
		return 0;
	if (r->body.len + len > c->srv->cfg.max_body) {
		r->pub.body_too_large = true;
		sbuf_free(&r->body);
		return 0;
	}
	return sbuf_append(&r->body, at, len);
}

static int on_message_complete(http_parser *p)
{
	struct conn *c = p->data;
	struct sreq *r = c->req;

	r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
	/* Stop here: the handler gets this request before we look further. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

static void conn_bad_request(struct conn *c)
{
	static const char answer[] =
		"HTTP/1.1 400 Bad Request\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Length: 12\r\n"
		"Connection: close\r\n"
		"\r\n"
		"Bad Request\n";
	uv_buf_t part = uv_buf_init((char *)(uintptr_t)answer, sizeof(answer) - 1);

	if (c->req != NULL) {
		sreq_free(c->req);
		c->req = NULL;
	}
	c->in.len = 0;
	c->in_off = 0;
	conn_write(c, &part, 1);
	conn_shutdown(c);
}

static void conn_dispatch(struct conn *c)
{
	struct sreq *r = c->req;
	struct http_server *srv = c->srv;

	c->busy = true;
	c->timer_mode = TIMER_NONE;
	uv_timer_stop(&c->timer);
	r->dispatched = true;
	c->refs++;              /* released in sreq_answered() */
	if (r->pub.body_too_large || r->body.data == NULL) {
		r->pub.body = "";
		r->pub.body_len = 0;
	} else {
		r->pub.body = r->body.data;
		r->pub.body_len = r->body.len;
	}
	srv->cfg.handler(&r->pub, srv->cfg.data);
}

/* Parses buffered bytes while no request is with the handler. Not
 * reentrant: an answer given from inside the handler lands back here. */
static void conn_process(struct conn *c)
{
	if (c->processing)
		return;
	c->processing = true;
	while (!c->closing && !c->shutting && !c->busy && !c->upgraded && c->in_off < c->in.len) {
		size_t avail = c->in.len - c->in_off;
		size_t n = http_parser_execute(&c->parser, &parser_settings,
					       c->in.data + c->in_off, avail);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

		c->in_off += n;
		if (e == HPE_PAUSED) {
			http_parser_pause(&c->parser, 0);
			conn_dispatch(c);
			continue;
		}
		if (e != HPE_OK || c->parser.upgrade) {
			/* Upgrades aren't spoken here: the bytes after are not HTTP. */
			conn_bad_request(c);
			break;
		}
	}
	if (!c->closing) {
		if (c->in_off == c->in.len) {
			c->in.len = 0;
			c->in_off = 0;
		} else if (c->in_off > 0) {
			memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
			c->in.len -= c->in_off;
			c->in_off = 0;
		}
	}
	c->processing = false;
}

static void raw_flush(struct conn *c);

/* Bytes of this connection's output the peer has not taken yet: queued here
 * and in the socket's send queue (the kernel's buffer drains as the peer
 * reads, while ours moves only when much of that is free). */
static size_t conn_unsent(struct conn *c)
{
	size_t n = uv_stream_get_write_queue_size(c->stream);
	uv_os_fd_t fd;
	int outq = 0;

	if (uv_fileno((uv_handle_t *)c->stream, &fd) == 0 && ioctl(fd, SIOCOUTQ, &outq) == 0 &&
	    outq > 0)
		n += (size_t)outq;
	return n;
}

static void conn_timer_cb(uv_timer_t *t)
{
	struct conn *c = t->data;

	if (c->timer_mode == TIMER_RAW_FLUSH) {
		c->timer_mode = TIMER_NONE;
		raw_flush(c);
		return;
	}
	if (c->timer_mode == TIMER_LINGER) {
		size_t queued = conn_unsent(c);

		/* A slow reader still taking bytes keeps its answer (a long
		 * stream, an exec's last output): only a whole period without
		 * progress ends the connection before everything is written. */
		if (queued > 0 && queued < c->linger_queued) {
			c->linger_queued = queued;
			uv_timer_start(&c->timer, conn_timer_cb, c->header_ms, 0);
			return;
		}
		log_debug("http: closing lingering connection");
	}
	if (c->timer_mode == TIMER_IDLE)
		log_debug("http: closing idle connection");
	else if (c->timer_mode == TIMER_HEADER)
		log_debug("http: closing connection: request too slow");
	conn_close(c);
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)suggested;
	/* Every read is copied out at once, so one buffer per server is enough. */
	buf->base = c->srv->readbuf;
	buf->len = sizeof(c->srv->readbuf);
}

static void raw_read(struct conn *c, ssize_t nread, const uv_buf_t *buf);

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	if (c->closing)
		return;
	if (c->upgraded && !c->shutting) {
		raw_read(c, nread, buf);
		return;
	}
	if (nread < 0) {
		c->eof = true;
		if (c->shutting && !c->shut_done && nread == UV_EOF) {
			/* A peer that only stopped sending still gets what is
			 * queued for it; the shutdown's end closes. */
			conn_update(c);
			return;
		}
		if (c->shutting || c->busy || nread != UV_EOF) {
			conn_close(c);
			return;
		}
		/* The peer is done sending; finish any writes, then close. */
		conn_shutdown(c);
		return;
	}
	if (nread == 0 || c->shutting)
		return;
	if (sbuf_append(&c->in, buf->base, (size_t)nread) != 0) {
		conn_close(c);
		return;
	}
	conn_process(c);
	conn_update(c);
}

static void raw_update(struct conn *c);

/* Brings reading and the timer in line with the connection's state. */
static void conn_update(struct conn *c)
{
	bool want_read;
	unsigned ms = 0;

	if (c->closing)
		return;
	if (c->upgraded && !c->shutting) {
		raw_update(c);
		return;
	}
	want_read = !c->eof &&
		    (!c->busy || c->in.len - c->in_off < HTTP_BUSY_BUFFER_MAX);
	if (want_read && !c->reading) {
		if (uv_read_start(c->stream, conn_alloc_cb, conn_read_cb) != 0) {
			conn_close(c);
			return;
		}
		c->reading = true;
	} else if (!want_read && c->reading) {
		uv_read_stop(c->stream);
		c->reading = false;
	}

	if (c->shutting) {
		if (c->timer_mode != TIMER_LINGER) {
			c->timer_mode = TIMER_LINGER;
			c->linger_queued = conn_unsent(c);
			ms = c->header_ms;
		}
	} else if (c->busy) {
		c->timer_mode = TIMER_NONE;
		uv_timer_stop(&c->timer);
	} else if (c->req != NULL) {
		if (!uv_is_active((uv_handle_t *)&c->timer)) {
			c->timer_mode = TIMER_HEADER;
			ms = c->header_ms;
		}
	} else if (c->timer_mode != TIMER_IDLE) {
		c->timer_mode = TIMER_IDLE;
		ms = c->idle_ms;
	}
	if (ms > 0)
		uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

/* ---- upgraded connections ---- */

/* Delivers what an upgraded connection has buffered, then its end if the
 * peer has finished. The owner may close or pause from its callback. */
static void raw_flush(struct conn *c)
{
	struct http_raw *raw = &c->raw;

	if (c->closing || c->shutting || raw->owner_closed || raw->paused)
		return;
	if (c->in_off < c->in.len) {
		/* Taken out first: the callback may pause, and later reads append. */
		struct sbuf pending = c->in;
		size_t off = c->in_off;
		bool stop;

		memset(&c->in, 0, sizeof(c->in));
		c->in_off = 0;
		c->refs++;
		raw->on_read(raw, pending.data + off, (ssize_t)(pending.len - off), raw->data);
		sbuf_free(&pending);
		stop = c->closing || c->shutting || raw->owner_closed || raw->paused;
		conn_unref(c);
		if (stop)
			return;
	}
	if (c->eof && !raw->end_told && c->in.len == 0) {
		raw->end_told = true;
		raw->on_read(raw, NULL, UV_EOF, raw->data);
		return;
	}
	conn_update(c);
}

static void raw_read(struct conn *c, ssize_t nread, const uv_buf_t *buf)
{
	struct http_raw *raw = &c->raw;

	if (nread == 0)
		return;
	if (nread < 0) {
		c->eof = true;
		if (nread != UV_EOF) {
			conn_close(c);
			return;
		}
		uv_read_stop(c->stream);
		c->reading = false;
		raw_flush(c);
		return;
	}
	if (raw->owner_closed)
		return;
	if (raw->paused || c->in_off < c->in.len) {
		/* Keep the order: older bytes go first. */
		if (sbuf_append(&c->in, buf->base, (size_t)nread) != 0)
			conn_close(c);
		else
			raw_update(c);
		return;
	}
	raw->on_read(raw, buf->base, nread, raw->data);
}

static void raw_update(struct conn *c)
{
	struct http_raw *raw = &c->raw;
	bool want_read = !c->eof && !raw->paused && !raw->owner_closed;

	if (want_read && !c->reading) {
		if (uv_read_start(c->stream, conn_alloc_cb, conn_read_cb) != 0) {
			conn_close(c);
			return;
		}
		c->reading = true;
	} else if (!want_read && c->reading) {
		uv_read_stop(c->stream);
		c->reading = false;
	}
	if (!raw->paused && !raw->owner_closed &&
	    (c->in_off < c->in.len || (c->eof && !raw->end_told)) &&
	    c->timer_mode != TIMER_RAW_FLUSH) {
		c->timer_mode = TIMER_RAW_FLUSH;
		uv_timer_start(&c->timer, conn_timer_cb, 0, 0);
	}
}

int http_upgrade(struct http_req *req, const char *extra_headers, http_raw_read_fn on_read,
		 void *data, struct http_raw **out)
{
	struct sreq *r = sreq_of(req);
	struct conn *c = r->conn;
	static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n";
	uv_buf_t parts[3];

	if (r->streaming)
		abort();
	if (r->gone || c->closing || c->shutting || c->srv->closing) {
		r->keep_alive = false;
		sreq_answered(r);
		return -1;
	}
	parts[0] = uv_buf_init((char *)(uintptr_t)head, sizeof(head) - 1);
	parts[1] = uv_buf_init((char *)(uintptr_t)(extra_headers ? extra_headers : ""),
			       extra_headers ? (unsigned)strlen(extra_headers) : 0);
	parts[2] = uv_buf_init("\r\n", 2);
	if (conn_write(c, parts, 3) != 0) {
		sreq_answered(r);
		return -1;
	}
	memset(&c->raw, 0, sizeof(c->raw));
	c->raw.conn = c;
	c->raw.on_read = on_read;
	c->raw.data = data;
	c->upgraded = true;
	c->refs++;              /* released in http_raw_close() */
	/* Answered: the request goes, and the connection with it stays raw. */
	r->answered = true;
	c->req = NULL;
	sreq_free(r);
	c->busy = false;
	c->timer_mode = TIMER_NONE;
	uv_timer_stop(&c->timer);
	raw_update(c);
	conn_unref(c);
	*out = &c->raw;
	return 0;
}

int http_raw_write(struct http_raw *raw, const char *bytes, size_t len)
{
	uv_buf_t part = uv_buf_init((char *)(uintptr_t)bytes, (unsigned)len);

	if (len == 0)
		return raw->conn->closing || raw->conn->shutting ? -1 : 0;
	return conn_write(raw->conn, &part, 1);
}

size_t http_raw_pending(const struct http_raw *raw)
{
	return raw->conn->closing ? 0 : raw->conn->pending_bytes;
}

void http_raw_pause(struct http_raw *raw, bool paused)
{
	struct conn *c = raw->conn;

	if (raw->paused == paused)
		return;
	raw->paused = paused;
	if (!c->closing && !c->shutting)
		raw_update(c);
}

void http_raw_close(struct http_raw *raw)
{
	struct conn *c = raw->conn;

	if (raw->owner_closed)
		abort();
	raw->owner_closed = true;
	if (c->timer_mode == TIMER_RAW_FLUSH) {
		c->timer_mode = TIMER_NONE;
		uv_timer_stop(&c->timer);
	}
	sbuf_free(&c->in);
	c->in_off = 0;
	if (!c->closing)
		conn_shutdown(c);
	conn_unref(c);
}

/* Makes a connection around an initialised stream handle. */
static void conn_start(struct conn *c)
{
	struct http_server *srv = c->srv;

	c->stream->data = c;
	c->timer.data = c;
	c->refs = 1;
	c->handles_open = 2;
	c->idle_ms = srv->cfg.idle_timeout_ms ? srv->cfg.idle_timeout_ms : HTTP_DEFAULT_IDLE_MS;
	c->header_ms = srv->cfg.header_timeout_ms ? srv->cfg.header_timeout_ms
						  : HTTP_DEFAULT_HEADER_MS;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	c->next = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev = c;
	srv->conns = c;
	c->in_list = true;
	srv->pending++;
	conn_update(c);
}

static void free_on_close(uv_handle_t *h)
{
	free(h->data);
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct http_server *srv = listener->data;
	struct conn *c;

	if (status < 0) {
		log_warn("http: accept: %s", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	c->srv = srv;
	c->loop = srv->loop;
	uv_tcp_init(srv->loop, &c->h.tcp);
	c->stream = (uv_stream_t *)&c->h.tcp;
	if (uv_accept(listener, c->stream) != 0) {
		c->h.tcp.data = c;
		uv_close((uv_handle_t *)&c->h.tcp, free_on_close);
		return;
	}
	/* Watch streams live on latency: never hold a small write back. */
	uv_tcp_nodelay(&c->h.tcp, 1);
	uv_timer_init(srv->loop, &c->timer);
	conn_start(c);
}

int http_server_adopt_fd(struct http_server *srv, int fd)
{
	struct conn *c;
	int rv;

	if (srv->closing)
		return UV_ECANCELED;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return UV_ENOMEM;
	c->srv = srv;
	c->loop = srv->loop;
	uv_pipe_init(srv->loop, &c->h.pipe, 0);
	c->stream = (uv_stream_t *)&c->h.pipe;
	rv = uv_pipe_open(&c->h.pipe, fd);
	if (rv != 0) {
		c->h.pipe.data = c;
		uv_close((uv_handle_t *)&c->h.pipe, free_on_close);
		return rv;
	}
	uv_timer_init(srv->loop, &c->timer);
	conn_start(c);
	return 0;
}

/* ---- the server ---- */

static int resolve_host(const char *host, int port, struct sockaddr_storage *ss)
{
	struct addrinfo hints, *res = NULL;
	char portstr[16];

	if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(portstr, sizeof(portstr), "%d", port);
	/* Blocking, but only once at startup. */
	if (getaddrinfo(host, portstr, &hints, &res) != 0 || res == NULL)
		return -1;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static void listener_closed(uv_handle_t *h)
{
	struct http_server *srv = h->data;

	srv->pending--;
	server_maybe_free(srv);
}

int http_server_start(uv_loop_t *loop, const struct http_server_config *cfg,
		      struct http_server **out, char *errmsg)
{
	struct http_server *srv;
	struct sockaddr_storage ss;
	int namelen = sizeof(ss);
	int rv;

	if (cfg->handler == NULL) {
		cap_errmsg_printf(errmsg, "http server: no handler");
		return CAP_EINVAL;
	}
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		cap_errmsg_printf(errmsg, "http server: out of memory");
		return CAP_ENOMEM;
	}
	srv->loop = loop;
	srv->cfg = *cfg;
	srv->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
	if (srv->host == NULL) {
		free(srv);
		cap_errmsg_printf(errmsg, "http server: out of memory");
		return CAP_ENOMEM;
	}
	srv->cfg.host = srv->host;
	memset(&ss, 0, sizeof(ss));
	if (resolve_host(srv->host, cfg->port, &ss) != 0) {
		cap_errmsg_printf(errmsg, "http server: cannot resolve %s", srv->host);
		free(srv->host);
		free(srv);
		return CAP_EINVAL;
	}
	uv_tcp_init(loop, &srv->listener);
	srv->listener.data = srv;
	srv->pending = 1;
	rv = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
	if (rv == 0)
		rv = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
	if (rv != 0) {
		cap_errmsg_printf(errmsg, "http server: listen on %s:%d: %s",
				  srv->host, cfg->port, uv_strerror(rv));
		goto err_after_tcp_init;
	}
	rv = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &namelen);
	if (rv != 0) {
		cap_errmsg_printf(errmsg, "http server: getsockname: %s", uv_strerror(rv));
		goto err_after_tcp_init;
	}
	if (ss.ss_family == AF_INET6)
		srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else
		srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	*out = srv;
	return 0;

err_after_tcp_init:
	/* The handle's memory is ours only after its close callback. */
	srv->closing = true;
	uv_close((uv_handle_t *)&srv->listener, listener_closed);
	return CAP_EIO;
}

int http_server_port(const struct http_server *srv)
{
	return srv->port;
}

void http_server_close(struct http_server *srv, void (*cb)(void *data), void *data)
{
	struct conn *c;

	if (srv->closing)
		return;
	srv->closing = true;
	srv->close_cb = cb;
	srv->close_data = data;
	uv_close((uv_handle_t *)&srv->listener, listener_closed);
	for (c = srv->conns; c != NULL; c = c->next)
		conn_close(c);
}
