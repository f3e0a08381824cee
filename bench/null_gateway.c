/* null_gateway.c — the network floor: an HTTP server on capstan's own HTTP
 * layer (lib/http_server.c) that answers every put at once and stores
 * nothing, and sends each put to every watcher as an event.
 *
 * It answers one question for the benchmark: how fast can any server be,
 * seen through `capstan bench` over loopback TCP on this machine, when the
 * server does no work of its own. A put must both cross this (the client's
 * round trip) and be committed by raft (bench/raft-floor); the two numbers
 * together bound what capstan-store can reach. For watches, what is left is
 * the fan-out itself: one frame per watcher, written as capstan-store
 * writes them (a frame's shared parts and its watch ID, gathered in one
 * write batch per put).
 *
 * Requests: POST /v3/watch takes a body of create requests (one watch
 * each, IDs 0, 1, 2... as etcd numbers them) and streams a "created" frame
 * for each, then an event frame per put; POST /v3/kv/put bumps the
 * revision, goes to the watchers (key and value as sent, no decoding), and
 * is answered with etcd's put response; anything else gets an answer with
 * only a header, as a range that found nothing.
 *
 * Happy path: listen on 127.0.0.1:--port (0 picks one), print the port on
 * stdout, serve until SIGTERM or SIGINT, then close everything and exit 0.
 * With --spin the loop polls without ever sleeping (a core's worth of
 * CPU): what the round trip is without the server's wake-ups. With
 * --work-us N each put costs N µs of CPU more before it is answered (a
 * stand-in for what a store does between receiving and answering: raft,
 * apply). With --handoff that work, and the put's revision, is done on a
 * second thread, the "core" thread: the loop thread reads, parses and
 * answers, and each batch crosses between the two through a queue and a
 * uv_async wake-up each way. That is a store whose network I/O and whose
 * raft and apply run on separate threads, with everything but its
 * hand-offs and its CPU per put taken away: what such a design can reach
 * on this machine, beside the same work on one thread.
 *
 * Failure modes: a listen error prints a message and exits 1; while
 * watchers are open, a put body that is not JSON with string key and value
 * is answered 400 and not counted (without watchers no body is read).
 * Watchers that fall behind just queue: it is a benchmark tool, and the
 * generator reads everything. */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "lib/err.h"
#include "lib/http.h"
#include "lib/jsonx.h"

/* The header of every answer, as etcd's gateway writes it; the revision's
 * value (a quoted decimal) follows. */
#define NULL_HEADER                                                                       \
	"{\"header\":{\"cluster_id\":\"9065137438711488829\","                         \
	"\"member_id\":\"11362262618716530125\",\"revision\":"

/* A watch stream: its request, and how many watches it created. */
struct null_stream {
	struct http_req *req;
	unsigned nw;
};

/* The queues between the loop thread and the core thread (--handoff).
 * `in` and `out` are guarded by mu; each side swaps a whole queue with its
 * own empty one under the lock and works on it without, so the arrays
 * are reused from batch to batch. */
struct null_queue {
	struct http_req **req;
	int64_t *rev;
	size_t n, cap;
};

struct null_core {
	pthread_t thread;
	uv_loop_t loop;          /* the core thread's */
	uv_async_t wake;         /* on loop: puts are queued in `in` */
	uv_async_t stop;         /* on loop: close and return */
	uv_async_t done;         /* on the main loop: answers are queued in `out` */
	pthread_mutex_t mu;
	struct null_queue in, out;
	struct null_queue work;  /* the core thread's batch */
	struct null_queue replies; /* the loop thread's batch */
	int64_t rev;             /* the core thread's */
	uint64_t work_ns;        /* CPU per put on the core thread */
};

struct null_gateway {
	uv_loop_t loop;
	uv_signal_t sigterm;
	uv_signal_t sigint;
	struct http_server *srv;
	int64_t rev;
	struct null_stream *streams;  /* owned; open streams, in no order */
	size_t nstreams, cap;
	struct jsonx_out answer;      /* owned; the put answer's text, reused */
	struct null_core *core;       /* owned; NULL without --handoff */
	uint64_t work_ns;             /* --work-us, on this thread without --handoff */
};

static int queue_push(struct null_queue *q, struct http_req *req, int64_t rev)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 256;
		struct http_req **r = realloc(q->req, cap * sizeof *r);
		if (r == NULL)
			return -1;
		q->req = r;
		int64_t *v = realloc(q->rev, cap * sizeof *v);
		if (v == NULL)
			return -1;
		q->rev = v;
		q->cap = cap;
	}
	q->req[q->n] = req;
	q->rev[q->n] = rev;
	q->n++;
	return 0;
}

static void queue_swap(struct null_queue *a, struct null_queue *b)
{
	struct null_queue t = *a;
	*a = *b;
	*b = t;
}

static void queue_free(struct null_queue *q)
{
	free(q->req);
	free(q->rev);
}

/* CPU work standing in for raft and apply: a loop of dependent integer
 * steps, calibrated once at start (before any load) so that `spins_per_us`
 * of them take a microsecond. Pure user-space work: the CPU a put costs
 * does not depend on whether the thread is preempted meanwhile. */
static double spins_per_us;
static volatile uint64_t burn_sink;

static void spin(uint64_t n)
{
	uint64_t x = burn_sink;
	for (uint64_t i = 0; i < n; i++)
		x = x * 6364136223846793005u + 1442695040888963407u;
	burn_sink = x;
}

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void burn_calibrate(void)
{
	uint64_t n = 1 << 16;
	double best = 0;
	for (int round = 0; round < 5; round++) {
		double t0 = now_us();
		spin(n);
		double dt = now_us() - t0;
		if (dt > 0 && (double)n / dt > best)
			best = (double)n / dt;
		if (dt < 2000)
			n *= 2;
	}
	spins_per_us = best;
}

static void burn(uint64_t ns)
{
	spin((uint64_t)(spins_per_us * (double)ns / 1000.0));
}

static void reply_header(struct null_gateway *g, struct http_req *req, int64_t rev);

/* Core thread: takes the queued puts as one batch, works on each, and
 * sends the batch's answers back in one wake-up, as a store answers the
 * entries of one commit. */
static void core_wake(uv_async_t *h)
{
	struct null_core *c = h->data;
	struct null_queue *batch = &c->work;
	pthread_mutex_lock(&c->mu);
	queue_swap(batch, &c->in);
	pthread_mutex_unlock(&c->mu);
	for (size_t i = 0; i < batch->n; i++) {
		if (c->work_ns > 0)
			burn(c->work_ns);
		batch->rev[i] = ++c->rev;
	}
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < batch->n; i++) {
		/* Out of memory: the answer is lost and the generator's
		 * request times out, which its report shows. */
		(void)queue_push(&c->out, batch->req[i], batch->rev[i]);
	}
	pthread_mutex_unlock(&c->mu);
	batch->n = 0;
	uv_async_send(&c->done);
}

static void core_stop(uv_async_t *h)
{
	struct null_core *c = h->data;
	uv_close((uv_handle_t *)&c->wake, NULL);
	uv_close((uv_handle_t *)&c->stop, NULL);
}

static void *core_main(void *arg)
{
	struct null_core *c = arg;
	uv_run(&c->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* Loop thread: the core thread's answers. */
static void core_done(uv_async_t *h)
{
	struct null_gateway *g = h->data;
	struct null_core *c = g->core;
	struct null_queue *done = &c->replies;
	pthread_mutex_lock(&c->mu);
	queue_swap(done, &c->out);
	pthread_mutex_unlock(&c->mu);
	for (size_t i = 0; i < done->n; i++)
		reply_header(g, done->req[i], done->rev[i]);
	done->n = 0;
}

static int core_start(struct null_gateway *g, uint64_t work_ns)
{
	struct null_core *c = calloc(1, sizeof *c);
	if (c == NULL)
		return -1;
	c->work_ns = work_ns;
	c->rev = g->rev;
	pthread_mutex_init(&c->mu, NULL);
	uv_loop_init(&c->loop);
	uv_async_init(&c->loop, &c->wake, core_wake);
	uv_async_init(&c->loop, &c->stop, core_stop);
	uv_async_init(&g->loop, &c->done, core_done);
	c->wake.data = c->stop.data = c;
	c->done.data = g;
	g->core = c;
	return pthread_create(&c->thread, NULL, core_main, c) == 0 ? 0 : -1;
}

/* Stops the core thread and answers what it still held, before the server
 * (which owns the requests) closes. */
static void core_shutdown(struct null_gateway *g)
{
	struct null_core *c = g->core;
	uv_async_send(&c->stop);
	pthread_join(c->thread, NULL);
	uv_loop_close(&c->loop);
	core_done(&c->done);
	for (size_t i = 0; i < c->in.n; i++)
		reply_header(g, c->in.req[i], ++c->rev);
	uv_close((uv_handle_t *)&c->done, NULL);
}

static void core_free(struct null_core *c)
{
	if (c == NULL)
		return;
	queue_free(&c->in);
	queue_free(&c->out);
	queue_free(&c->work);
	queue_free(&c->replies);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* The client went away (or the server is closing): the stream is ended,
 * which lets the HTTP layer free the request and its connection. */
static void stream_closed(struct http_req *req, void *data)
{
	struct null_gateway *g = data;
	for (size_t i = 0; i < g->nstreams; i++) {
		if (g->streams[i].req == req) {
			g->streams[i] = g->streams[--g->nstreams];
			break;
		}
	}
	http_stream_end(req);
}

static void watch_open(struct null_gateway *g, struct http_req *req)
{
	unsigned nw = 0;
	for (const char *p = req->body; (p = strstr(p, "create_request")) != NULL; p++)
		nw++;
	if (nw == 0) {
		static const char msg[] = "{\"error\":\"no create_request\",\"code\":3}";
		http_reply(req, 400, "application/json", msg, sizeof msg - 1);
		return;
	}
	if (g->nstreams == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 1024;
		struct null_stream *n = realloc(g->streams, cap * sizeof *n);
		if (n == NULL) {
			static const char msg[] = "{\"error\":\"out of memory\",\"code\":8}";
			http_reply(req, 503, "application/json", msg, sizeof msg - 1);
			return;
		}
		g->streams = n;
		g->cap = cap;
	}
	g->streams[g->nstreams++] = (struct null_stream){req, nw};
	http_req_on_close(req, stream_closed, g);
	http_stream_begin(req, 200, "application/json");
	for (unsigned id = 0; id < nw; id++) {
		char frame[256];
		int n = snprintf(frame, sizeof frame,
				 "{\"result\":" NULL_HEADER "\"%" PRId64 "\",\"raft_term\":\"2\"},"
				 "\"watch_id\":\"%u\",\"created\":true}}\n",
				 g->rev, id);
		http_stream_write(req, frame, (size_t)n);
	}
}

/* Every watcher's frame: the shared head and tail, and between them the
 * watch ID (left out when 0, as etcd's gateway leaves out zero values). */
static void fan_out(struct null_gateway *g, const char *key, const char *value)
{
	char *head = NULL, *tail = NULL;
	int hl = asprintf(&head, "{\"result\":" NULL_HEADER "\"%" PRId64 "\",\"raft_term\":\"2\"}",
			  g->rev);
	if (hl < 0)
		head = NULL;
	int tl = asprintf(&tail, ",\"events\":[{\"kv\":{\"key\":\"%s\",\"create_revision\":\"2\","
				 "\"mod_revision\":\"%" PRId64 "\",\"version\":\"%" PRId64 "\","
				 "\"value\":\"%s\"}}]}}\n",
			  key, g->rev, g->rev - 1, value);
	if (tl < 0)
		tail = NULL;
	if (head == NULL || tail == NULL)
		goto out;
	http_server_batch_begin(g->srv);
	for (size_t i = 0; i < g->nstreams; i++) {
		for (unsigned id = 0; id < g->streams[i].nw; id++) {
			char idp[32];
			struct http_iov parts[3];
			size_t np = 0;
			parts[np++] = (struct http_iov){head, (size_t)hl};
			if (id != 0) {
				int n = snprintf(idp, sizeof idp, ",\"watch_id\":\"%u\"", id);
				parts[np++] = (struct http_iov){idp, (size_t)n};
			}
			parts[np++] = (struct http_iov){tail, (size_t)tl};
			http_stream_writev(g->streams[i].req, parts, np);
		}
	}
	http_server_batch_end(g->srv);
out:
	free(head);
	free(tail);
}

/* etcd's answer to a put: the header alone. Written as capstan-store
 * writes it (lib/jsonx.c's text writer, into a buffer kept across
 * answers), so the floor pays no more per answer than the store does. */
static void reply_header(struct null_gateway *g, struct http_req *req, int64_t rev)
{
	struct jsonx_out *o = &g->answer;
	o->len = 0;
	o->failed = false;
	JSONX_OUT_LIT(o, NULL_HEADER);
	jsonx_out_i64(o, rev);
	JSONX_OUT_LIT(o, ",\"raft_term\":\"2\"}}");
	if (o->failed) {
		static const char msg[] = "{\"error\":\"out of memory\",\"code\":8}";
		http_reply(req, 503, "application/json", msg, sizeof msg - 1);
		return;
	}
	http_reply(req, 200, "application/json", o->p, o->len);
}

static void put(struct null_gateway *g, struct http_req *req)
{
	/* Without watchers the body is not even parsed: a put costs only
	 * what every server pays to receive a request and answer it. */
	if (g->nstreams == 0 && g->core != NULL) {
		struct null_core *c = g->core;
		pthread_mutex_lock(&c->mu);
		int rc = queue_push(&c->in, req, 0);
		pthread_mutex_unlock(&c->mu);
		if (rc != 0) {
			static const char msg[] = "{\"error\":\"out of memory\",\"code\":8}";
			http_reply(req, 503, "application/json", msg, sizeof msg - 1);
			return;
		}
		uv_async_send(&c->wake);
		return;
	}
	if (g->nstreams == 0) {
		if (g->work_ns > 0)
			burn(g->work_ns);
		g->rev++;
		reply_header(g, req, g->rev);
		return;
	}
	json_t *body = json_loadb(req->body, req->body_len, 0, NULL);
	const char *key = json_string_value(json_object_get(body, "key"));
	const char *value = json_string_value(json_object_get(body, "value"));
	if (key == NULL || value == NULL) {
		static const char msg[] = "{\"error\":\"key and value must be strings\",\"code\":3}";
		http_reply(req, 400, "application/json", msg, sizeof msg - 1);
		json_decref(body);
		return;
	}
	g->rev++;
	fan_out(g, key, value);
	json_decref(body);
	reply_header(g, req, g->rev);
}

static void on_request(struct http_req *req, void *data)
{
	struct null_gateway *g = data;
	if (strcmp(req->path, "/v3/watch") == 0) {
		watch_open(g, req);
	} else if (strcmp(req->path, "/v3/kv/put") == 0) {
		put(g, req);
	} else {
		/* A range (the generator's first call counts the keys): empty. */
		reply_header(g, req, g->rev);
	}
}

static void on_server_closed(void *data)
{
	(void)data;
}

static void on_signal(uv_signal_t *h, int signum)
{
	(void)signum;
	struct null_gateway *g = h->data;
	uv_close((uv_handle_t *)&g->sigterm, NULL);
	uv_close((uv_handle_t *)&g->sigint, NULL);
	if (g->core != NULL)
		core_shutdown(g);
	http_server_close(g->srv, on_server_closed, NULL);
}

static void usage(FILE *out)
{
	fprintf(out, "usage: null-gateway [--port N] [--work-us N] [--spin | --handoff]\n"
		     "Answers puts as etcd would without storing them, and streams each put to\n"
		     "the watchers of /v3/watch; prints the port it listens on (127.0.0.1),\n"
		     "serves until SIGTERM. --spin polls the sockets without ever sleeping.\n"
		     "--work-us N spends N us of CPU per put before answering it; --handoff does\n"
		     "that on a second thread, handing each batch of puts over and back.\n");
}

int main(int argc, char **argv)
{
	int port = 0;
	bool spin = false;
	double work_us = 0;
	bool handoff = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end != '\0' || v < 0 || v > 65535) {
				fprintf(stderr, "null-gateway: bad port %s\n", argv[i]);
				return 2;
			}
			port = (int)v;
		} else if (strcmp(argv[i], "--work-us") == 0 && i + 1 < argc) {
			char *end;
			work_us = strtod(argv[++i], &end);
			if (*end != '\0' || !(work_us >= 0 && work_us <= 1e6)) {
				fprintf(stderr, "null-gateway: bad --work-us %s\n", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--handoff") == 0) {
			handoff = true;
		} else if (strcmp(argv[i], "--spin") == 0) {
			spin = true;
		} else if (strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}

	if (spin && handoff) {
		usage(stderr);
		return 2;
	}

	struct null_gateway g;
	memset(&g, 0, sizeof g);
	uv_loop_init(&g.loop);
	struct http_server_config cfg = {
		.host = "127.0.0.1",
		.port = port,
		.max_body = 1 << 20,
		.handler = on_request,
		.data = &g,
	};
	char errmsg[CAP_ERRMSG_SIZE];
	if (http_server_start(&g.loop, &cfg, &g.srv, errmsg) != 0) {
		fprintf(stderr, "null-gateway: %s\n", errmsg);
		return 1;
	}
	printf("%d\n", http_server_port(g.srv));
	fflush(stdout);

	uv_signal_init(&g.loop, &g.sigterm);
	uv_signal_init(&g.loop, &g.sigint);
	g.sigterm.data = g.sigint.data = &g;
	g.rev = 1;
	uv_signal_start(&g.sigterm, on_signal, SIGTERM);
	uv_signal_start(&g.sigint, on_signal, SIGINT);
	g.work_ns = (uint64_t)(work_us * 1000);
	if (g.work_ns > 0)
		burn_calibrate();
	if (handoff && core_start(&g, g.work_ns) != 0) {
		fprintf(stderr, "null-gateway: cannot start the core thread\n");
		return 1;
	}

	if (spin) {
		/* Polls without sleeping: the round trip without the server's
		 * wake-ups, at the cost of a core. */
		while (uv_run(&g.loop, UV_RUN_NOWAIT) != 0)
			;
	} else {
		uv_run(&g.loop, UV_RUN_DEFAULT);
	}
	uv_loop_close(&g.loop);
	free(g.streams);
	core_free(g.core);
	jsonx_out_free(&g.answer);
	return 0;
}
