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
 * CPU): what the round trip is without the server's wake-ups.
 *
 * Failure modes: a listen error prints a message and exits 1; while
 * watchers are open, a put body that is not JSON with string key and value
 * is answered 400 and not counted (without watchers no body is read).
 * Watchers that fall behind just queue: it is a benchmark tool, and the
 * generator reads everything. */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

struct null_gateway {
	uv_loop_t loop;
	uv_signal_t sigterm;
	uv_signal_t sigint;
	struct http_server *srv;
	int64_t rev;
	struct null_stream *streams;  /* owned; open streams, in no order */
	size_t nstreams, cap;
	struct jsonx_out answer;      /* owned; the put answer's text, reused */
};

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
static void reply_header(struct null_gateway *g, struct http_req *req)
{
	struct jsonx_out *o = &g->answer;
	o->len = 0;
	o->failed = false;
	JSONX_OUT_LIT(o, NULL_HEADER);
	jsonx_out_i64(o, g->rev);
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
	if (g->nstreams == 0) {
		g->rev++;
		reply_header(g, req);
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
	reply_header(g, req);
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
		reply_header(g, req);
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
	http_server_close(g->srv, on_server_closed, NULL);
}

static void usage(FILE *out)
{
	fprintf(out, "usage: null-gateway [--port N] [--spin]\n"
		     "Answers puts as etcd would without storing them, and streams each put to\n"
		     "the watchers of /v3/watch; prints the port it listens on (127.0.0.1),\n"
		     "serves until SIGTERM. --spin polls the sockets without ever sleeping.\n");
}

int main(int argc, char **argv)
{
	int port = 0;
	bool spin = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end != '\0' || v < 0 || v > 65535) {
				fprintf(stderr, "null-gateway: bad port %s\n", argv[i]);
				return 2;
			}
			port = (int)v;
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
	jsonx_out_free(&g.answer);
	return 0;
}
