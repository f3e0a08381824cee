/* null_gateway.c — the network floor: an HTTP server on capstan's own HTTP
 * layer (lib/http_server.c) that answers every request at once with a fixed
 * etcd put response, storing nothing.
 *
 * It answers one question for the benchmark: how fast can any server be,
 * seen through `capstan bench` over loopback TCP on this machine, when the
 * server does no work at all. A put must both cross this (the client's
 * round trip) and be committed by raft (bench/raft-floor); the two numbers
 * together bound what capstan-store can reach.
 *
 * Happy path: listen on 127.0.0.1:--port (0 picks one), print the port on
 * stdout, serve until SIGTERM or SIGINT, then close everything and exit 0.
 *
 * Failure modes: a listen error prints a message and exits 1. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "lib/err.h"
#include "lib/http.h"

/* What etcd answers a put with (no prev_kv): the same size and shape as
 * capstan-store's answer, so the client parses what it always does. */
static const char put_answer[] =
	"{\"header\":{\"cluster_id\":\"9065137438711488829\","
	"\"member_id\":\"11362262618716530125\",\"revision\":\"2\",\"raft_term\":\"2\"}}";

struct null_gateway {
	uv_loop_t loop;
	uv_signal_t sigterm;
	uv_signal_t sigint;
	struct http_server *srv;
};

static void on_request(struct http_req *req, void *data)
{
	(void)data;
	http_reply(req, 200, "application/json", put_answer, sizeof(put_answer) - 1);
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
	fprintf(out, "usage: null-gateway [--port N]\n"
		     "Answers every HTTP request with a fixed etcd put response; prints the\n"
		     "port it listens on (127.0.0.1), serves until SIGTERM.\n");
}

int main(int argc, char **argv)
{
	int port = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end != '\0' || v < 0 || v > 65535) {
				fprintf(stderr, "null-gateway: bad port %s\n", argv[i]);
				return 2;
			}
			port = (int)v;
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
	uv_signal_start(&g.sigterm, on_signal, SIGTERM);
	uv_signal_start(&g.sigint, on_signal, SIGINT);

	uv_run(&g.loop, UV_RUN_DEFAULT);
	uv_loop_close(&g.loop);
	return 0;
}
