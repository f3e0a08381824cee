/* server_main.c — capstan-server: the Kubernetes API server on an embedded
 * store replica (or an external store), with a kubeconfig for kubectl. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "client/kv_http.h"
#include "lib/cidr.h"
#include "lib/err.h"
#include "lib/heap.h"
#include "lib/log.h"
#include "lib/url.h"
#include "orchestrator/agent/agent.h"
#include "orchestrator/api/apiserver.h"
#include "orchestrator/agent/proxy.h"
#include "orchestrator/agent/proxy_rules.h"
#include "orchestrator/api/podproxy.h"
#include "orchestrator/controllers/controllers.h"
#include "orchestrator/scheduler/scheduler.h"
#include "store/gateway.h"
#include "store/store.h"
#include "lib/dirs.h"

struct options {
	const char *data_dir;
	const char *listen;
	const char *name;
	const char *listen_client;
	const char *listen_peer;
	const char *initial_cluster;
	const char *cluster_state;
	const char *store_endpoints;
	unsigned snapshot_count;
	unsigned bookmark_ms;
	const char *controllers;
	bool no_scheduler;
	bool no_agent;
	/* the pod network */
	const char *node_ip;
	bool host_network;
	const char *proxy_mode;
	const char *nodeport_addresses;
	struct controller_options copts;
	struct sched_options sopts;
	struct svc_ranges ranges;
};

struct app {
	uv_loop_t *loop;
	struct store *store;
	struct kv *kv;          /* store_kv(store) or the kv_http client */
	struct gateway *gateway;
	struct api_server *api;
	struct controller_manager *cm;
	struct scheduler *sched;
	struct agent *agent;    /* the local node agent, unless --no-agent */
	uv_signal_t sigterm, sigint;
	int exit_code;
	bool stopping;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: capstan-server [flags]\n"
		"\n"
		"The Kubernetes API server of a capstan cluster, on an embedded store replica\n"
		"(or on an external store with --store-endpoints). Writes DATA-DIR/kubeconfig\n"
		"for the cluster admin and prints its path.\n"
		"\n"
		"  --data-dir DIR                   state and kubeconfig (default ./capstan-data)\n"
		"  --listen ADDR:PORT               Kubernetes API address (default 127.0.0.1:6443)\n"
		"  --store-endpoints URLS           use an external store (etcd gateway URLs)\n"
		"  --no-agent                       do not run a node agent in this process\n"
		"Pod network:\n"
		"  --cluster-cidr CIDR              pod ranges of the nodes come from here\n"
		"                                   (default 10.244.0.0/16)\n"
		"  --node-cidr-mask-size N          each node's pod range is a /N (default 24)\n"
		"  --node-ip ADDR                   the local agent's InternalIP (default 127.0.0.1)\n"
		"  --pod-network bridge|host        the local agent's pod network (default bridge\n"
		"                                   when root: a namespace and an IP per pod)\n"
		"  --proxy-mode MODE                the local agent's Service proxy: nftables,\n"
		"                                   userspace or none (default nftables as root)\n"
		"  --nodeport-addresses CIDRS       where nodePorts answer (default every local address)\n"
		"Controllers and scheduler (run while this server holds their Lease):\n"
		"  --controllers LIST               all, or a comma list (-name leaves one out)\n"
		"  --no-scheduler                   do not run the scheduler\n"
		"  --scheduler-score least|most     LeastAllocated (spread, default) or\n"
		"                                   MostAllocated (bin packing)\n"
		"  --node-monitor-grace-period S    silence before a node is Unknown (default 50)\n"
		"  --node-eviction-rate N           pods evicted per second at most (default 10)\n"
		"Services:\n"
		"  --service-cluster-ip-range CIDR  cluster IPs of Services (default 10.96.0.0/12;\n"
		"                                   the first address is the kubernetes Service's)\n"
		"  --service-node-port-range LO-HI  node ports of Services (default 30000-32767)\n"
		"Embedded store replica (etcd's flags and meaning):\n"
		"  --name NAME                      member name (default \"default\")\n"
		"  --listen-client-urls URL         serve etcd's gateway too (default: not served)\n"
		"  --listen-peer-urls URL           raft listen URL (default http://127.0.0.1:2380)\n"
		"  --initial-cluster NAME=URL,...   the members at bootstrap (default NAME=peer URL)\n"
		"  --initial-cluster-state new|existing  (default new)\n"
		"  --snapshot-count N               applied entries between snapshots (default 10000)\n"
		"Other:\n"
		"  --watch-bookmark-interval MS     period of watch BOOKMARK events (default 60000)\n"
		"  --log-level debug|info|warn|error  (default info)\n"
		"  --help, --version\n"
		"\n"
		"The API is plain HTTP without authentication: bind it to loopback.\n"
		"SIGTERM or SIGINT stops it cleanly (exit 0).\n");
}

/* The ranges must parse, the node ranges must fit the cluster range (and
 * there must be at most 2^20 of them), and the pod and service ranges must
 * not overlap: a clear message now beats a controller that never starts. */
static int check_network_flags(const struct options *o)
{
	const char *cc = o->copts.cluster_cidr ? o->copts.cluster_cidr : "10.244.0.0/16";
	const char *sc = o->ranges.cidr;
	unsigned mask = o->copts.node_cidr_mask_size ? o->copts.node_cidr_mask_size : 24;
	struct cidr cluster, service;
	uint32_t ip;

	if (cidr_parse(cc, &cluster) != 0) {
		fprintf(stderr, "capstan-server: bad --cluster-cidr \"%s\" (want a.b.c.d/n with "
				"no host bits)\n", cc);
		return -1;
	}
	if (cidr_parse(sc, &service) != 0) {
		fprintf(stderr, "capstan-server: bad --service-cluster-ip-range \"%s\" (want "
				"a.b.c.d/n with no host bits)\n", sc);
		return -1;
	}
	if (mask < cluster.prefix || cidr_subnet_count(&cluster, mask) > (1u << 20)) {
		fprintf(stderr, "capstan-server: --node-cidr-mask-size %u does not fit "
				"--cluster-cidr %s\n", mask, cc);
		return -1;
	}
	if (cidr_overlaps(&cluster, &service)) {
		fprintf(stderr, "capstan-server: --cluster-cidr %s overlaps "
				"--service-cluster-ip-range %s\n", cc, sc);
		return -1;
	}
	if (o->node_ip != NULL && cidr_parse_ip(o->node_ip, &ip) != 0) {
		fprintf(stderr, "capstan-server: bad --node-ip \"%s\"\n", o->node_ip);
		return -1;
	}
	return 0;
}


/* DIR/kubeconfig for the cluster admin: plain HTTP, no credentials. */
static int write_kubeconfig(const char *dir, const char *host, int port, char *path,
			    size_t size)
{
	char tmp[PATH_MAX + 32];
	FILE *f;
	char abs[PATH_MAX];
	if (realpath(dir, abs) == NULL)
		return -1;
	snprintf(path, size, "%s/kubeconfig", abs);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	fprintf(f,
		"apiVersion: v1\n"
		"kind: Config\n"
		"clusters:\n"
		"- name: capstan\n"
		"  cluster:\n"
		"    server: http://%s:%d\n"
		"users:\n"
		"- name: capstan-admin\n"
		"  user: {}\n"
		"contexts:\n"
		"- name: capstan\n"
		"  context:\n"
		"    cluster: capstan\n"
		"    user: capstan-admin\n"
		"    namespace: default\n"
		"current-context: capstan\n"
		"preferences: {}\n",
		host, port);
	if (fclose(f) != 0 || chmod(tmp, 0600) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void store_closed(void *data)
{
	struct app *a = data;
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	uv_close((uv_handle_t *)&a->sigint, NULL);
	log_info("stopped");
}

static void gateway_closed(void *data)
{
	struct app *a = data;
	a->gateway = NULL;
	if (a->store != NULL)
		store_close(a->store, store_closed, a);
}

static void api_closed(void *data)
{
	struct app *a = data;
	a->api = NULL;
	if (a->store == NULL) {
		kv_close(a->kv);
		store_closed(a);
		return;
	}
	if (a->gateway != NULL)
		gateway_close(a->gateway, gateway_closed, a);
	else
		store_close(a->store, store_closed, a);
}

static void shutdown_app(struct app *a)
{
	if (a->stopping)
		return;
	a->stopping = true;
	controller_manager_stop(a->cm);
	a->cm = NULL;
	sched_stop(a->sched);
	a->sched = NULL;
	if (a->agent != NULL)
		agent_close(a->agent, NULL, NULL);
	a->agent = NULL;
	if (a->api != NULL)
		api_server_close(a->api, api_closed, a);
	else
		api_closed(a);
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
	log_error("store: %s", why);
	a->exit_code = 1;
	shutdown_app(a);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"data-dir", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'L'},
		{"name", required_argument, NULL, 'n'},
		{"listen-client-urls", required_argument, NULL, 'c'},
		{"listen-peer-urls", required_argument, NULL, 'p'},
		{"initial-cluster", required_argument, NULL, 'i'},
		{"initial-cluster-state", required_argument, NULL, 's'},
		{"snapshot-count", required_argument, NULL, 'S'},
		{"store-endpoints", required_argument, NULL, 'e'},
		{"no-agent", no_argument, NULL, 'A'},
		{"proxy-mode", required_argument, NULL, 1001},
		{"nodeport-addresses", required_argument, NULL, 1002},
		{"watch-bookmark-interval", required_argument, NULL, 'B'},
		{"log-level", required_argument, NULL, 'l'},
		{"controllers", required_argument, NULL, 'C'},
		{"no-scheduler", no_argument, NULL, 'N'},
		{"scheduler-score", required_argument, NULL, 'O'},
		{"node-monitor-grace-period", required_argument, NULL, 'G'},
		{"node-eviction-rate", required_argument, NULL, 'R'},
		{"service-cluster-ip-range", required_argument, NULL, 'I'},
		{"service-node-port-range", required_argument, NULL, 'P'},
		{"cluster-cidr", required_argument, NULL, 0x100},
		{"node-cidr-mask-size", required_argument, NULL, 0x101},
		{"node-ip", required_argument, NULL, 0x103},
		{"pod-network", required_argument, NULL, 0x104},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'v'},
		{NULL, 0, NULL, 0},
	};
	struct options o = {
		.data_dir = "capstan-data",
		.listen = "127.0.0.1:6443",
		.name = "default",
		.listen_peer = "http://127.0.0.1:2380",
		.cluster_state = "new",
		.snapshot_count = 10000,
	};
	char store_dir[PATH_MAX], default_cluster[1024], host[256], chost[256];
	char kubeconfig[PATH_MAX + 16], errmsg[CAP_ERRMSG_SIZE] = "";
	struct app a = {0};
	int port, cport = 0, c, rv;

	heap_tune();
	svc_ranges_default(&o.ranges);

	while ((c = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': o.data_dir = optarg; break;
		case 'L': o.listen = optarg; break;
		case 'n': o.name = optarg; break;
		case 'c': o.listen_client = optarg; break;
		case 'p': o.listen_peer = optarg; break;
		case 'i': o.initial_cluster = optarg; break;
		case 's': o.cluster_state = optarg; break;
		case 'S': o.snapshot_count = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'e': o.store_endpoints = optarg; break;
		case 'A': o.no_agent = true; break;
		case 1001: {
			enum proxy_mode pm;
			if (proxy_parse_mode(optarg, &pm) != 0) {
				fprintf(stderr, "capstan-server: --proxy-mode is nftables, userspace or none\n");
				return 2;
			}
			o.proxy_mode = optarg;
			break;
		}
		case 1002: {
			char canon[1024], perr[CAP_ERRMSG_SIZE];
			if (proxy_parse_cidrs(optarg, canon, sizeof canon, perr) != 0) {
				fprintf(stderr, "capstan-server: bad --nodeport-addresses: %s\n", perr);
				return 2;
			}
			o.nodeport_addresses = optarg;
			break;
		}
		case 'B': o.bookmark_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'C': o.controllers = optarg; break;
		case 'N': o.no_scheduler = true; break;
		case 'O':
			if (strcmp(optarg, "least") != 0 && strcmp(optarg, "most") != 0) {
				fprintf(stderr, "capstan-server: --scheduler-score is least or most\n");
				return 2;
			}
			o.sopts.score = strcmp(optarg, "most") == 0 ? SCHED_SCORE_MOST
								   : SCHED_SCORE_LEAST;
			break;
		case 'G': o.copts.node_monitor_grace_s = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'R': o.copts.eviction_rate = strtod(optarg, NULL); break;
		case 'I':
			if (svc_ranges_parse_cidr(&o.ranges, optarg, errmsg, sizeof errmsg) != 0) {
				fprintf(stderr, "capstan-server: --service-cluster-ip-range: %s\n",
					errmsg);
				return 2;
			}
			break;
		case 'P':
			if (svc_ranges_parse_ports(&o.ranges, optarg, errmsg, sizeof errmsg) != 0) {
				fprintf(stderr, "capstan-server: --service-node-port-range: %s\n",
					errmsg);
				return 2;
			}
			break;
		case 0x100: o.copts.cluster_cidr = optarg; break;
		case 0x101: {
			char *end;
			unsigned long m = strtoul(optarg, &end, 10);
			if (*end != '\0' || m < 1 || m > 30) {
				fprintf(stderr, "capstan-server: bad --node-cidr-mask-size \"%s\"\n", optarg);
				return 2;
			}
			o.copts.node_cidr_mask_size = (unsigned)m;
			break;
		}
		case 0x103: o.node_ip = optarg; break;
		case 0x104:
			if (strcmp(optarg, "bridge") != 0 && strcmp(optarg, "host") != 0) {
				fprintf(stderr, "capstan-server: --pod-network is bridge or host\n");
				return 2;
			}
			o.host_network = strcmp(optarg, "host") == 0;
			break;
		case 'l':
			if (log_parse_level(optarg) < 0) {
				fprintf(stderr, "capstan-server: bad --log-level \"%s\"\n", optarg);
				return 2;
			}
			log_set_level((enum log_level)log_parse_level(optarg));
			break;
		case 'h': usage(stdout); return 0;
		case 'v':
			printf("capstan-server %s (Kubernetes API v1.31, etcd API %s)\n",
			       PACKAGE_VERSION, STORE_API_VERSION);
			return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "capstan-server: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (check_network_flags(&o) != 0)
		return 2;
	if (url_host_port(o.listen, host, sizeof host, &port) != 0) {
		fprintf(stderr, "capstan-server: bad --listen \"%s\" (want ADDR:PORT)\n", o.listen);
		return 2;
	}
	if (strcmp(o.cluster_state, "new") != 0 && strcmp(o.cluster_state, "existing") != 0) {
		fprintf(stderr, "capstan-server: --initial-cluster-state must be new or existing\n");
		return 2;
	}
	if (o.listen_client != NULL &&
	    url_host_port(o.listen_client, chost, sizeof chost, &cport) != 0) {
		fprintf(stderr, "capstan-server: bad --listen-client-urls \"%s\"\n", o.listen_client);
		return 2;
	}
	if (o.store_endpoints == NULL && o.initial_cluster != NULL &&
	    strchr(o.initial_cluster, ',') != NULL && o.listen_client == NULL) {
		/* Stacked replicas reach the leader through its store gateway: a
		 * follower forwards writes and read-index requests there. */
		fprintf(stderr, "capstan-server: a stacked cluster (several members in "
				"--initial-cluster) needs --listen-client-urls for its store\n");
		return 2;
	}
	if (dirs_make_all(o.data_dir, 0700) != 0) {
		fprintf(stderr, "capstan-server: cannot create %s: %s\n", o.data_dir,
			strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	a.loop = uv_default_loop();

	if (o.store_endpoints != NULL) {
		rv = kv_http_new(a.loop, o.store_endpoints, 10000, &a.kv);
		if (rv != 0) {
			log_error("bad --store-endpoints \"%s\": %s", o.store_endpoints,
				  cap_strerror(rv));
			return 2;
		}
		log_info("using the external store at %s", o.store_endpoints);
	} else {
		snprintf(store_dir, sizeof store_dir, "%s/store", o.data_dir);
		if (o.initial_cluster == NULL) {
			snprintf(default_cluster, sizeof default_cluster, "%s=%s", o.name,
				 o.listen_peer);
			o.initial_cluster = default_cluster;
		}
		struct store_config sc = {
			.name = o.name,
			.data_dir = store_dir,
			.listen_peer_url = o.listen_peer,
			.advertise_peer_url = o.listen_peer,
			.advertise_client_urls = o.listen_client ? o.listen_client : "",
			.initial_cluster = o.initial_cluster,
			.cluster_token = "etcd-cluster",
			.new_cluster = strcmp(o.cluster_state, "new") == 0,
			.snapshot_count = o.snapshot_count,
			.heartbeat_ms = 100,
			.election_ms = 1000,
			.on_fatal = on_fatal,
			.data = &a,
		};
		rv = store_open(a.loop, &sc, &a.store, errmsg);
		if (rv != 0) {
			log_error("cannot start the store: %s", errmsg[0] ? errmsg : cap_strerror(rv));
			return 1;
		}
		a.kv = store_kv(a.store);
		if (o.listen_client != NULL) {
			struct gateway_config gc = {.host = chost, .port = cport,
						    .max_request_bytes = 1572864};
			rv = gateway_start(a.loop, a.store, &gc, &a.gateway, errmsg);
			if (rv != 0) {
				log_error("cannot serve store clients on %s: %s", o.listen_client,
					  errmsg);
				store_close(a.store, NULL, NULL);
				uv_run(a.loop, UV_RUN_DEFAULT);
				return 1;
			}
		}
	}

	struct api_config ac = {.host = host, .port = port, .bookmark_ms = o.bookmark_ms,
				.ranges = &o.ranges};
	rv = api_server_start(a.loop, a.kv, &ac, &a.api, errmsg);
	if (rv != 0) {
		log_error("cannot serve the API on %s: %s", o.listen, errmsg);
		a.exit_code = 1;
		a.stopping = false;
		a.api = NULL;
		uv_signal_init(a.loop, &a.sigterm);
		uv_signal_init(a.loop, &a.sigint);
		shutdown_app(&a);
		uv_run(a.loop, UV_RUN_DEFAULT);
		return 1;
	}
	if (write_kubeconfig(o.data_dir, host, api_server_port(a.api), kubeconfig,
			     sizeof kubeconfig) != 0) {
		log_error("cannot write %s/kubeconfig: %s", o.data_dir, strerror(errno));
		a.exit_code = 1;
		uv_signal_init(a.loop, &a.sigterm);
		uv_signal_init(a.loop, &a.sigint);
		shutdown_app(&a);
		uv_run(a.loop, UV_RUN_DEFAULT);
		return 1;
	}
	uv_signal_init(a.loop, &a.sigterm);
	uv_signal_init(a.loop, &a.sigint);
	a.sigterm.data = a.sigint.data = &a;
	uv_signal_start(&a.sigterm, on_signal, SIGTERM);
	uv_signal_start(&a.sigint, on_signal, SIGINT);
	log_info("Kubernetes API on http://%s:%d; kubeconfig %s", host, api_server_port(a.api),
		 kubeconfig);
	printf("%s\n", kubeconfig);
	fflush(stdout);

	/* Controllers and scheduler reach the API over HTTP, as separate
	 * kube-controller-manager and kube-scheduler processes would. */
	char self_url[300];
	snprintf(self_url, sizeof self_url, "http://%s:%d",
		 strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : host, api_server_port(a.api));
	if (controller_manager_start_opts(a.loop, self_url, o.controllers ? o.controllers : "all",
					  &o.copts, &a.cm) != 0)
		log_error("cannot start the controller manager");
	if (!o.no_scheduler && sched_start(a.loop, self_url, &o.sopts, &a.sched) != 0)
		log_error("cannot start the scheduler");
	/* The agent endpoint token, shared with agents through the data dir. */
	char tokpath[PATH_MAX + 16], token[128] = "", hn[256] = "localhost", adir[PATH_MAX + 16];
	snprintf(tokpath, sizeof tokpath, "%s/agent-token", o.data_dir);
	if (agent_token_load(tokpath, true, token, sizeof token) == 0)
		podproxy_set_token(token);
	else
		log_error("cannot create %s: pod logs are unavailable", tokpath);
	gethostname(hn, sizeof hn - 1);
	snprintf(adir, sizeof adir, "%s/agent", o.data_dir);
	struct agent_config agc = {.server = self_url, .node_name = hn, .data_dir = adir,
				   .listen_host = "127.0.0.1", .listen_port = 0, .token = token[0] ? token : NULL,
				   .node_ip = o.node_ip, .host_network = o.host_network,
				   .cluster_cidr = o.copts.cluster_cidr, .service_cidr = o.ranges.cidr,
				   .proxy_mode = o.proxy_mode, .nodeport_addresses = o.nodeport_addresses};
	if (!o.no_agent && agent_start(a.loop, &agc, &a.agent, errmsg) != 0)
		log_error("cannot start the node agent: %s", errmsg);

	uv_run(a.loop, UV_RUN_DEFAULT);
	rv = uv_loop_close(a.loop);
	if (rv != 0)
		log_warn("event loop closed with handles still open");
	return a.exit_code;
}
