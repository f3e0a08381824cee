/* test_http_batch.c — write batches of the HTTP server (lib/http.h) and the
 * parallel writes under them (lib/fanout.h): streams served over socketpairs
 * the test reads itself, so it sees exactly what reached each peer and when. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/err.h"
#include "lib/fanout.h"
#include "lib/http.h"

/* More streams than it takes for a batch to be shared among threads. */
#define MANY 200
#define BIG (1u << 20)

struct fixture {
	uv_loop_t loop;
	struct http_server *srv;
	bool server_closed;
	struct http_req *reqs[MANY];
	int peer[MANY];
	bool gone[MANY];
	int nreq;
	int ngone;
};

static void on_gone(struct http_req *req, void *data)
{
	struct fixture *f = data;
	int i = (int)(intptr_t)req->user;

	f->gone[i] = true;
	f->ngone++;
	f->reqs[i] = NULL;
	http_stream_end(req);
}

static void handler(struct http_req *req, void *data)
{
	struct fixture *f = data;

	req->user = (void *)(intptr_t)f->nreq;
	f->reqs[f->nreq++] = req;
	http_stream_begin(req, 200, "application/json");
	http_req_on_close(req, on_gone, f);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct http_server_config cfg = {
		.host = "127.0.0.1",
		.max_body = 1024,
		.handler = handler,
	};
	char errmsg[CAP_ERRMSG_SIZE];

	assert_non_null(f);
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	cfg.data = f;
	assert_int_equal(http_server_start(&f->loop, &cfg, &f->srv, errmsg), 0);
	for (int i = 0; i < MANY; i++)
		f->peer[i] = -1;
	*state = f;
	return 0;
}

static void server_closed_cb(void *data)
{
	*(bool *)data = true;
}

static void spin(struct fixture *f, int turns)
{
	for (int i = 0; i < turns; i++)
		uv_run(&f->loop, UV_RUN_NOWAIT);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < MANY; i++)
		if (f->peer[i] >= 0)
			close(f->peer[i]);
	if (!f->server_closed)
		http_server_close(f->srv, server_closed_cb, &f->server_closed);
	for (int i = 0; i < 20000 && !f->server_closed; i++)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_true(f->server_closed);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

/* Reads the answer's head off the peer: what follows is the chunked body. */
static void skip_head(int fd)
{
	char buf[1024];
	size_t len = 0;

	while (len < 4 || memcmp(buf + len - 4, "\r\n\r\n", 4) != 0) {
		struct pollfd p = {fd, POLLIN, 0};
		assert_true(poll(&p, 1, 2000) == 1);
		assert_int_equal(read(fd, buf + len, 1), 1);
		len++;
		assert_true(len < sizeof(buf));
	}
}

/* Opens n streams; keep_alive false asks for the connection to close when
 * the stream ends. */
static void open_streams(struct fixture *f, int n, bool keep_alive)
{
	const char *req = keep_alive ? "POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
				     : "POST /s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
				       "Content-Length: 0\r\n\r\n";
	for (int i = 0; i < n; i++) {
		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		assert_int_equal(http_server_adopt_fd(f->srv, sv[0]), 0);
		f->peer[f->nreq] = sv[1];
		assert_int_equal(write(sv[1], req, strlen(req)), (ssize_t)strlen(req));
		int want = f->nreq + 1;
		for (int k = 0; k < 10000 && f->nreq < want; k++)
			uv_run(&f->loop, UV_RUN_NOWAIT);
		assert_int_equal(f->nreq, want);
		skip_head(sv[1]);
		fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
	}
}

/* Bytes waiting at a peer right now (without running the loop). */
static size_t available(int fd)
{
	char buf[4096];
	ssize_t k = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	return k > 0 ? (size_t)k : 0;
}

/* The chunked body that reached a peer, decoded, while the loop runs, until
 * want bytes of payload (or the end of the stream when want is 0) arrived.
 * *ended tells whether the last chunk came. */
static char *body_of(struct fixture *f, int fd, size_t want, bool *ended)
{
	size_t cap = BIG * 2 + 4096, len = 0, out = 0;
	char *raw = malloc(cap), *body = malloc(cap);
	bool end = false;

	assert_non_null(raw);
	assert_non_null(body);
	for (int turn = 0; turn < 200000 && !end && (want == 0 || out < want); turn++) {
		ssize_t k;
		uv_run(&f->loop, UV_RUN_NOWAIT);
		k = read(fd, raw + len, cap - len);
		if (k == 0) {
			end = true;
			break;
		}
		if (k < 0) {
			assert_true(errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNRESET);
			if (errno == ECONNRESET)
				break;
			continue;
		}
		len += (size_t)k;
		/* Decode the whole chunks received so far. */
		size_t off = 0;
		out = 0;
		while (off < len) {
			char *nl = memchr(raw + off, '\n', len - off);
			size_t size;
			if (nl == NULL)
				break;
			size = strtoul(raw + off, NULL, 16);
			if (size == 0) {
				end = true;
				break;
			}
			if ((size_t)(nl + 1 - raw) + size + 2 > len)
				break;
			memcpy(body + out, nl + 1, size);
			out += size;
			off = (size_t)(nl + 1 - raw) + size + 2;
		}
	}
	body[out] = '\0';
	free(raw);
	if (ended)
		*ended = end;
	return body;
}

static void write_str(struct http_req *req, const char *s)
{
	struct http_iov part = {s, strlen(s)};
	assert_int_equal(http_stream_writev(req, &part, 1), 0);
}

/* A batch writes nothing until its (outermost) end; then every stream has
 * its bytes, in the order written, followed by what was written after. */
static void test_batch_in_order(void **state)
{
	struct fixture *f = *state;
	char s[64];

	open_streams(f, MANY, true);
	http_server_batch_begin(f->srv);
	http_server_batch_begin(f->srv);
	for (int i = 0; i < MANY; i++) {
		snprintf(s, sizeof(s), "a%d;", i);
		write_str(f->reqs[i], s);
	}
	http_server_batch_end(f->srv);
	for (int i = 0; i < MANY; i++) {
		snprintf(s, sizeof(s), "b%d;", i);
		write_str(f->reqs[i], s);
	}
	for (int i = 0; i < MANY; i++)
		assert_int_equal(available(f->peer[i]), 0);
	http_server_batch_end(f->srv);
	for (int i = 0; i < MANY; i++) {
		snprintf(s, sizeof(s), "c%d;", i);
		write_str(f->reqs[i], s);
	}
	for (int i = 0; i < MANY; i++) {
		char want[64];
		snprintf(want, sizeof(want), "a%d;b%d;c%d;", i, i, i);
		char *got = body_of(f, f->peer[i], strlen(want), NULL);
		assert_string_equal(got, want);
		free(got);
	}
}

/* A socket that cannot take a batch's bytes gets the rest through the
 * queue, and bytes written later, in or out of a batch, come after them. */
static void test_batch_full_socket(void **state)
{
	struct fixture *f = *state;
	char *big = malloc(BIG + 1);
	char *want = malloc(BIG + 64);

	assert_non_null(big);
	assert_non_null(want);
	for (size_t i = 0; i < BIG; i++)
		big[i] = (char)('a' + i % 26);
	big[BIG] = '\0';
	open_streams(f, MANY, true);
	http_server_batch_begin(f->srv);
	for (int i = 0; i < MANY; i++)
		write_str(f->reqs[i], i == 0 ? big : "x");
	write_str(f->reqs[0], "<after big>");
	http_server_batch_end(f->srv);
	/* The peer has read nothing: most of the megabyte is still queued. */
	assert_true(http_stream_pending(f->reqs[0]) > 0);
	write_str(f->reqs[0], "<out of batch>");
	http_server_batch_begin(f->srv);
	write_str(f->reqs[0], "<next batch>");
	http_server_batch_end(f->srv);
	snprintf(want, BIG + 64, "%s<after big><out of batch><next batch>", big);
	char *got = body_of(f, f->peer[0], strlen(want), NULL);
	assert_int_equal(strlen(got), strlen(want));
	assert_true(strcmp(got, want) == 0);
	free(got);
	for (int i = 1; i < MANY; i++) {
		got = body_of(f, f->peer[i], 1, NULL);
		assert_string_equal(got, "x");
		free(got);
	}
	free(big);
	free(want);
}

/* Streams whose peers went away before the batch is written are told once
 * (on_close) and the others get their bytes: nothing touches a closed
 * connection. */
static void test_batch_peers_gone(void **state)
{
	struct fixture *f = *state;

	open_streams(f, MANY, true);
	for (int i = 1; i < MANY; i += 2) {
		close(f->peer[i]);
		f->peer[i] = -1;
	}
	for (int round = 0; round < 3; round++) {
		http_server_batch_begin(f->srv);
		for (int i = 0; i < MANY; i++)
			if (f->reqs[i] != NULL)
				http_stream_write(f->reqs[i], "e;", 2);
		http_server_batch_end(f->srv);
		spin(f, 5);
	}
	for (int i = 0; i < 20000 && f->ngone < MANY / 2; i++)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->ngone, MANY / 2);
	for (int i = 0; i < MANY; i += 2) {
		assert_false(f->gone[i]);
		char *got = body_of(f, f->peer[i], 6, NULL);
		assert_string_equal(got, "e;e;e;");
		free(got);
	}
}

/* The server closing every connection in the middle of a batch (on_close
 * ends each stream from inside the batch): the batch's end writes nothing to
 * the closed descriptors and touches no freed memory. */
static void test_batch_server_closes_inside(void **state)
{
	struct fixture *f = *state;

	open_streams(f, MANY, true);
	http_server_batch_begin(f->srv);
	for (int i = 0; i < MANY; i++)
		write_str(f->reqs[i], "lost;");
	http_server_close(f->srv, server_closed_cb, &f->server_closed);
	assert_int_equal(f->ngone, MANY);
	http_server_batch_end(f->srv);
	for (int i = 0; i < 20000 && !f->server_closed; i++)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_true(f->server_closed);
	for (int i = 0; i < MANY; i++) {
		bool ended = false;
		char *got = body_of(f, f->peer[i], 0, &ended);
		assert_string_equal(got, "");
		free(got);
	}
}

/* A stream that ends inside a batch on a connection that then closes: the
 * close waits for the batch's bytes and the last chunk, in that order. */
static void test_batch_stream_end_inside(void **state)
{
	struct fixture *f = *state;
	bool ended = false;

	open_streams(f, MANY, false);
	http_server_batch_begin(f->srv);
	for (int i = 0; i < MANY; i++)
		write_str(f->reqs[i], "last;");
	for (int i = 0; i < MANY; i += 2) {
		struct http_req *req = f->reqs[i];
		f->reqs[i] = NULL;
		http_stream_end(req);
	}
	http_server_batch_end(f->srv);
	for (int i = 0; i < MANY; i += 2) {
		char *got = body_of(f, f->peer[i], 0, &ended);
		assert_true(ended);
		assert_string_equal(got, "last;");
		free(got);
	}
	for (int i = 1; i < MANY; i += 2) {
		char *got = body_of(f, f->peer[i], 5, NULL);
		assert_string_equal(got, "last;");
		free(got);
	}
}

/* fanout_run tries every write once: whole on sockets with room, short on a
 * full one, nothing (and no SIGPIPE) on one whose peer is gone. */
static void test_fanout_writes(void **state)
{
	struct fanout *fo;
	int sv[MANY][2];
	struct fanout_write w[MANY];
	struct iovec iov[MANY][2];
	char *big = calloc(1, BIG);
	char buf[64];

	(void)state;
	assert_non_null(big);
	assert_int_equal(fanout_new(2, &fo), 0);
	for (int i = 0; i < MANY; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
		fcntl(sv[i][0], F_SETFL, fcntl(sv[i][0], F_GETFL) | O_NONBLOCK);
		iov[i][0] = (struct iovec){"head-", 5};
		iov[i][1] = i == 0 ? (struct iovec){big, BIG} : (struct iovec){"tail", 4};
		w[i] = (struct fanout_write){sv[i][0], iov[i], 2, 12345};
	}
	close(sv[1][1]);
	fanout_run(fo, w, MANY);
	assert_true(w[0].written > 0 && w[0].written < BIG + 5);
	assert_int_equal(w[1].written, 0);
	for (int i = 2; i < MANY; i++) {
		assert_int_equal(w[i].written, 9);
		assert_int_equal(read(sv[i][1], buf, sizeof(buf)), 9);
		assert_memory_equal(buf, "head-tail", 9);
	}
	/* Without helpers, the same writes on the caller's thread. */
	fanout_run(NULL, &w[2], MANY - 2);
	for (int i = 2; i < MANY; i++)
		assert_int_equal(w[i].written, 9);
	fanout_free(fo);
	for (int i = 0; i < MANY; i++) {
		close(sv[i][0]);
		if (i != 1)
			close(sv[i][1]);
	}
	free(big);
}

/* Back-to-back runs, with helpers that wake late or join a run already
 * over: every write of every run is tried once, and no run returns while a
 * helper still works on it. */
static void test_fanout_many_runs(void **state)
{
	enum { N = 100, RUNS = 2000 };
	struct fanout *fo;
	int sv[N][2];
	struct fanout_write w[N];
	struct iovec iov = {"0123456789", 10};
	char buf[4096];

	(void)state;
	assert_int_equal(fanout_new(3, &fo), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
		fcntl(sv[i][0], F_SETFL, fcntl(sv[i][0], F_GETFL) | O_NONBLOCK);
		fcntl(sv[i][1], F_SETFL, fcntl(sv[i][1], F_GETFL) | O_NONBLOCK);
	}
	for (int run = 0; run < RUNS; run++) {
		for (int i = 0; i < N; i++)
			w[i] = (struct fanout_write){sv[i][0], &iov, 1, 12345};
		fanout_run(fo, w, N);
		for (int i = 0; i < N; i++)
			assert_int_equal(w[i].written, 10);
		if (run % 100 == 99)
			for (int i = 0; i < N; i++)
				while (read(sv[i][1], buf, sizeof(buf)) > 0)
					;
	}
	fanout_free(fo);
	for (int i = 0; i < N; i++) {
		close(sv[i][0]);
		close(sv[i][1]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_batch_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_full_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_peers_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_server_closes_inside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_stream_end_inside, setup, teardown),
		cmocka_unit_test(test_fanout_writes),
		cmocka_unit_test(test_fanout_many_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
