/* store_main.c — capstan-store: one replica of the store, with etcd's flags. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lib/err.h"
#include "lib/log.h"
#include "lib/url.h"
#include "store/gateway.h"
#include "store/store.h"

struct options {
	const char *name;
	const char *data_dir;
	const char *listen_client;
	const char *advertise_client;
	const char *listen_peer;
	const char *advertise_peer;
	const char *initial_cluster;
	const char *cluster_state;
	const char *cluster_token;
	unsigned snapshot_count;
	size_t max_request_bytes;
	unsigned heartbeat_ms, election_ms;
	unsigned progress_ms;
	unsigned db_cache_mb;
};

struct app {
	uv_loop_t *loop;
	struct store *store;
	struct gateway *gateway;
	uv_signal_t sigterm, sigint;
	int exit_code;
	bool stopping;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: capstan-store [flags]\n"
		"\n"
		"One replica of capstan's strongly consistent key-value store, serving\n"
		"etcd's v3 JSON gateway. Flags have etcd's names and meaning.\n"
		"\n"
		"  --name NAME                      member name (default \"default\")\n"
		"  --data-dir DIR                   data directory (default \"NAME.etcd\")\n"
		"  --listen-client-urls URL         client listen URL (default http://127.0.0.1:2379)\n"
		"  --advertise-client-urls URLS     client URLs told to others (default: the listen URL)\n"
		"  --listen-peer-urls URL           raft listen URL (default http://127.0.0.1:2380)\n"
		"  --initial-advertise-peer-urls URL  peer URL told to others (default: the listen URL)\n"
		"  --initial-cluster NAME=URL,...   the members at bootstrap (default NAME=peer URL)\n"
		"  --initial-cluster-state new|existing  (default new)\n"
		"  --initial-cluster-token TOKEN    (default etcd-cluster)\n"
		"  --snapshot-count N               applied requests between snapshots (default 10000)\n"
		"  --db-cache-mb N                  memory for the state database's page cache\n"
		"                                   (default 8; not an etcd flag)\n"
		"  --max-request-bytes N            largest request accepted (default 1572864)\n"
		"  --heartbeat-interval MS          (default 100)\n"
		"  --election-timeout MS            (default 1000)\n"
		"  --watch-progress-notify-interval MS  progress_notify period (default 600000)\n"
		"  --log-level debug|info|warn|error  (default info)\n"
		"  --help, --version\n"
		"\n"
		"SIGTERM or SIGINT stops it cleanly (exit 0).\n");
}

static void gateway_closed(void *data)
{
	(void)data;
}

static void store_closed(void *data)
{
	struct app *a = data;
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	uv_close((uv_handle_t *)&a->sigint, NULL);
	log_info("stopped");
}

static void shutdown_app(struct app *a)
{
	if (a->stopping)
		return;
	a->stopping = true;
	gateway_close(a->gateway, gateway_closed, a);
	store_close(a->store, store_closed, a);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct app *a = h->data;
	log_info("signal %d: shutting down", signum);
	shutdown_app(a);
}

static void on_fatal(void *data, const char *why)
{
	struct app *a = data;
	(void)why;
	/* Being removed from the cluster is an orderly end, as with etcd. */
	a->exit_code = a->store != NULL && store_removed(a->store) ? 0 : 1;
	shutdown_app(a);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"name", required_argument, NULL, 'n'},
		{"data-dir", required_argument, NULL, 'd'},
		{"listen-client-urls", required_argument, NULL, 'c'},
		{"advertise-client-urls", required_argument, NULL, 'a'},
		{"listen-peer-urls", required_argument, NULL, 'p'},
		{"initial-advertise-peer-urls", required_argument, NULL, 'P'},
		{"initial-cluster", required_argument, NULL, 'i'},
		{"initial-cluster-state", required_argument, NULL, 's'},
		{"initial-cluster-token", required_argument, NULL, 't'},
		{"snapshot-count", required_argument, NULL, 'S'},
		{"db-cache-mb", required_argument, NULL, 'C'},
		{"max-request-bytes", required_argument, NULL, 'm'},
		{"heartbeat-interval", required_argument, NULL, 'H'},
		{"election-timeout", required_argument, NULL, 'E'},
		{"watch-progress-notify-interval", required_argument, NULL, 'W'},
		{"log-level", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'v'},
		{NULL, 0, NULL, 0},
	};
	struct options o = {
		.name = "default",
		.listen_client = "http://127.0.0.1:2379",
		.listen_peer = "http://127.0.0.1:2380",
		.cluster_state = "new",
		.cluster_token = "etcd-cluster",
		.snapshot_count = 10000,
		.max_request_bytes = 1572864,
		.heartbeat_ms = 100,
		.election_ms = 1000,
	};
	char default_dir[512], default_cluster[1024], host[256], errmsg[CAP_ERRMSG_SIZE] = "";
	struct app a = {0};
	int port, c, rv;

	while ((c = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': o.name = optarg; break;
		case 'd': o.data_dir = optarg; break;
		case 'c': o.listen_client = optarg; break;
		case 'a': o.advertise_client = optarg; break;
		case 'p': o.listen_peer = optarg; break;
		case 'P': o.advertise_peer = optarg; break;
		case 'i': o.initial_cluster = optarg; break;
		case 's': o.cluster_state = optarg; break;
		case 't': o.cluster_token = optarg; break;
		case 'S': o.snapshot_count = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'C':
			o.db_cache_mb = (unsigned)strtoul(optarg, NULL, 10);
			if (o.db_cache_mb < 1 || o.db_cache_mb > 65536) {
				fprintf(stderr, "capstan-store: --db-cache-mb must be 1 to 65536\n");
				return 2;
			}
			break;
		case 'm': o.max_request_bytes = strtoull(optarg, NULL, 10); break;
		case 'H': o.heartbeat_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'E': o.election_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'W': o.progress_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'l':
			if (log_parse_level(optarg) < 0) {
				fprintf(stderr, "capstan-store: bad --log-level \"%s\"\n", optarg);
				return 2;
			}
			log_set_level((enum log_level)log_parse_level(optarg));
			break;
		case 'h': usage(stdout); return 0;
		case 'v': printf("capstan-store %s (etcd API %s)\n", PACKAGE_VERSION, STORE_API_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "capstan-store: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (strcmp(o.cluster_state, "new") != 0 && strcmp(o.cluster_state, "existing") != 0) {
		fprintf(stderr, "capstan-store: --initial-cluster-state must be new or existing\n");
		return 2;
	}
	if (o.data_dir == NULL) {
		snprintf(default_dir, sizeof default_dir, "%s.etcd", o.name);
		o.data_dir = default_dir;
	}
	if (o.advertise_peer == NULL)
		o.advertise_peer = o.listen_peer;
	if (o.advertise_client == NULL)
		o.advertise_client = o.listen_client;
	if (o.initial_cluster == NULL) {
		snprintf(default_cluster, sizeof default_cluster, "%s=%s", o.name, o.advertise_peer);
		o.initial_cluster = default_cluster;
	}
	if (o.max_request_bytes < 1024) {
		fprintf(stderr, "capstan-store: --max-request-bytes must be at least 1024\n");
		return 2;
	}
	if (url_host_port(o.listen_client, host, sizeof host, &port) != 0) {
		fprintf(stderr, "capstan-store: bad --listen-client-urls \"%s\"\n", o.listen_client);
		return 2;
	}
	/* A peer that vanishes mid-write must not kill the process. */
	signal(SIGPIPE, SIG_IGN);

	a.loop = uv_default_loop();
	struct store_config sc = {
		.name = o.name,
		.data_dir = o.data_dir,
		.listen_peer_url = o.listen_peer,
		.advertise_peer_url = o.advertise_peer,
		.advertise_client_urls = o.advertise_client,
		.initial_cluster = o.initial_cluster,
		.cluster_token = o.cluster_token,
		.new_cluster = strcmp(o.cluster_state, "new") == 0,
		.snapshot_count = o.snapshot_count,
		.heartbeat_ms = o.heartbeat_ms,
		.election_ms = o.election_ms,
		.progress_ms = o.progress_ms,
		.db_cache_kib = o.db_cache_mb * 1024u,
		.on_fatal = on_fatal,
		.data = &a,
	};
	rv = store_open(a.loop, &sc, &a.store, errmsg);
	if (rv != 0) {
		log_error("cannot start: %s", errmsg[0] ? errmsg : cap_strerror(rv));
		return 1;
	}
	struct gateway_config gc = {.host = host, .port = port, .max_request_bytes = o.max_request_bytes};
	rv = gateway_start(a.loop, a.store, &gc, &a.gateway, errmsg);
	if (rv != 0) {
		log_error("cannot serve clients on %s: %s", o.listen_client, errmsg);
		a.exit_code = 1;
		store_close(a.store, NULL, NULL);
		uv_run(a.loop, UV_RUN_DEFAULT);
		return 1;
	}
	uv_signal_init(a.loop, &a.sigterm);
	uv_signal_init(a.loop, &a.sigint);
	a.sigterm.data = a.sigint.data = &a;
	uv_signal_start(&a.sigterm, on_signal, SIGTERM);
	uv_signal_start(&a.sigint, on_signal, SIGINT);
	log_info("member %s serving clients on http://%s:%d, data in %s", o.name, host,
		 gateway_port(a.gateway), o.data_dir);

	uv_run(a.loop, UV_RUN_DEFAULT);
	rv = uv_loop_close(a.loop);
	if (rv != 0)
		log_warn("event loop closed with handles still open");
	return a.exit_code;
}
