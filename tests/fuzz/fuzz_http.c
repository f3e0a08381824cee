/* fuzz_http.c — libFuzzer target: arbitrary bytes sent to the HTTP server
 * over a real socket pair, through the same code path as an accepted
 * connection; every run must end with the loop closing clean. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/err.h"
#include "lib/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct peer {
	uv_pipe_t pipe;
	uv_write_t write_req;
	uv_shutdown_t shutdown_req;
	char buf[65536];
	bool eof;
};

/* Exercises every way of answering: whole, streamed, with query lookups. */
static void handler(struct http_req *req, void *data)
{
	(void)data;
	if (strncmp(req->path, "/s", 2) == 0) {
		http_stream_begin(req, 200, "application/json");
		http_stream_write(req, req->body, req->body_len);
		http_stream_write(req, "{}", 2);
		http_stream_end(req);
		return;
	}
	if (http_req_query(req, "a") != NULL || http_req_header(req, "x") != NULL) {
		http_reply(req, 204, "text/plain", "", 0);
		return;
	}
	if (req->body_too_large)
		http_reply(req, 413, "text/plain", "too large", 9);
	else
		http_reply(req, 200, "text/plain", req->body, req->body_len);
}

static void peer_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct peer *p = h->data;

	(void)suggested;
	buf->base = p->buf;
	buf->len = sizeof(p->buf);
}

static void peer_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct peer *p = s->data;

	(void)buf;
	if (nread < 0) {
		p->eof = true;
		uv_read_stop(s);
	}
}

static void peer_written(uv_write_t *w, int status)
{
	(void)w;
	(void)status;
}

static void peer_shut(uv_shutdown_t *r, int status)
{
	(void)r;
	(void)status;
}

static void server_closed(void *data)
{
	*(bool *)data = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_server_config cfg = {
		.host = "127.0.0.1",
		.port = 0,
		.max_body = 256,
		.idle_timeout_ms = 2000,
		.header_timeout_ms = 2000,
		.handler = handler,
	};
	char errmsg[CAP_ERRMSG_SIZE];
	struct http_server *srv;
	struct peer peer;
	uv_loop_t loop;
	uv_buf_t buf;
	bool closed = false;
	int fds[2];

	memset(&peer, 0, sizeof(peer));
	if (uv_loop_init(&loop) != 0)
		abort();
	if (http_server_start(&loop, &cfg, &srv, errmsg) != 0)
		abort();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
		abort();
	if (http_server_adopt_fd(srv, fds[0]) != 0)
		abort();
	uv_pipe_init(&loop, &peer.pipe, 0);
	peer.pipe.data = &peer;
	if (uv_pipe_open(&peer.pipe, fds[1]) != 0)
		abort();
	buf = uv_buf_init((char *)(uintptr_t)data, (unsigned)size);
	if (size > 0 &&
	    uv_write(&peer.write_req, (uv_stream_t *)&peer.pipe, &buf, 1, peer_written) != 0)
		abort();
	/* Half-close: the server sees the end of the input and must wind up. */
	uv_shutdown(&peer.shutdown_req, (uv_stream_t *)&peer.pipe, peer_shut);
	uv_read_start((uv_stream_t *)&peer.pipe, peer_alloc, peer_read);
	while (!peer.eof)
		uv_run(&loop, UV_RUN_ONCE);

	uv_close((uv_handle_t *)&peer.pipe, NULL);
	http_server_close(srv, server_closed, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (!closed || uv_loop_close(&loop) != 0)
		abort();
	return 0;
}
