/* agent_main.c — capstan-agent: the node agent as its own process, for one
 * node (process runtime) or N hollow nodes (--simulate N). */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "lib/cidr.h"
#include "lib/err.h"
#include "lib/heap.h"
#include "lib/log.h"
#include "orchestrator/agent/agent.h"
#include "orchestrator/agent/proxy.h"
#include "orchestrator/agent/proxy_rules.h"
#include "lib/dirs.h"

struct app {
	uv_loop_t *loop;
	struct agent **agents;
	size_t n;
	size_t open;
	uv_signal_t sigterm, sigint;
	bool stopping;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: capstan-agent [flags]\n"
		"\n"
		"The node agent of a capstan cluster: registers a Node, renews its Lease,\n"
		"runs the pods bound to it and serves their logs.\n"
		"\n"
		"  --kubeconfig FILE       the cluster to join (its server: line)\n"
		"  --server URL            or the API server's URL (http://host:port)\n"
		"  --node-name NAME        the Node's name (default: the host name)\n"
		"  --data-dir DIR          container state, logs and volumes (default ./capstan-agent-data)\n"
		"  --listen ADDR:PORT      the agent's endpoint (default NODE-IP:10250)\n"
		"  --token-file FILE       bearer token the endpoint requires (default: agent-token\n"
		"                          beside the kubeconfig, as capstan-server writes it)\n"
		"  --image-dir DIR         the local image catalog (*.json)\n"
		"  --proxy-mode MODE       the Service proxy: nftables (kernel rules, the default\n"
		"                          as root), userspace (TCP splicing, the default otherwise)\n"
		"                          or none\n"
		"  --nodeport-addresses CIDRS  where nodePorts answer, e.g. 10.0.0.0/8,192.168.1.5\n"
		"                          (default every local address)\n"
		"  --simulate N            run N hollow nodes NAME-0..NAME-(N-1) on the simulated\n"
		"                          runtime (no processes, no endpoint, no proxy)\n"
		"Pod network (as root: a namespace and an IP per pod on bridge cbr0):\n"
		"  --node-ip ADDR          the Node's InternalIP, where other nodes route this\n"
		"                          node's pods (default 127.0.0.1)\n"
		"  --pod-network bridge|host  host: pods share the node's network (default bridge;\n"
		"                          host anyway when not root)\n"
		"  --cluster-cidr CIDR     the cluster's pod range (default 10.244.0.0/16)\n"
		"  --service-cluster-ip-range CIDR  the service range (default 10.96.0.0/12)\n"
		"  --log-level debug|info|warn|error  (default info)\n"
		"  --help, --version\n"
		"\n"
		"Containers keep running when the agent stops; the next agent on the same\n"
		"data directory adopts them. SIGTERM or SIGINT stops it cleanly (exit 0).\n");
}

static void on_agent_closed(void *data)
{
	struct app *a = data;
	if (--a->open == 0) {
		uv_close((uv_handle_t *)&a->sigterm, NULL);
		uv_close((uv_handle_t *)&a->sigint, NULL);
		log_info("stopped");
	}
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct app *a = h->data;
	if (a->stopping)
		return;
	a->stopping = true;
	log_info("signal %d: shutting down", signum);
	if (a->open == 0) {
		a->open = 1;
		on_agent_closed(a);
		return;
	}
	for (size_t i = 0; i < a->n; i++)
		if (a->agents[i] != NULL)
			agent_close(a->agents[i], on_agent_closed, a);
}


int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"kubeconfig", required_argument, NULL, 'k'},
		{"server", required_argument, NULL, 's'},
		{"node-name", required_argument, NULL, 'n'},
		{"data-dir", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'L'},
		{"token-file", required_argument, NULL, 't'},
		{"image-dir", required_argument, NULL, 'i'},
		{"simulate", required_argument, NULL, 'S'},
		{"proxy-mode", required_argument, NULL, 1001},
		{"nodeport-addresses", required_argument, NULL, 1002},
		{"log-level", required_argument, NULL, 'l'},
		{"node-ip", required_argument, NULL, 'I'},
		{"pod-network", required_argument, NULL, 'P'},
		{"cluster-cidr", required_argument, NULL, 'C'},
		{"service-cluster-ip-range", required_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'v'},
		{NULL, 0, NULL, 0},
	};
	const char *kubeconfig = NULL, *server = NULL, *node = NULL, *data_dir = "capstan-agent-data";
	const char *listen = NULL, *token_file = NULL, *image_dir = NULL;
	char hostname[256], host[256], deflisten[32], token[128] = "", tokpath[PATH_MAX], errmsg[CAP_ERRMSG_SIZE];
	const char *proxy_mode = NULL, *nodeport_addresses = NULL;
	const char *node_ip = NULL, *cluster_cidr = NULL, *service_cidr = NULL;
	bool host_network = false;
	struct cidr cidr_check;
	uint32_t ip_check;
	long simulate = 0;
	int c, port = 0;
	struct app a = {0};
	char *colon, *end;

	heap_tune();
	while ((c = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
		switch (c) {
		case 'k': kubeconfig = optarg; break;
		case 's': server = optarg; break;
		case 'n': node = optarg; break;
		case 'd': data_dir = optarg; break;
		case 'L': listen = optarg; break;
		case 't': token_file = optarg; break;
		case 'i': image_dir = optarg; break;
		case 'I':
			if (cidr_parse_ip(optarg, &ip_check) != 0) {
				fprintf(stderr, "capstan-agent: bad --node-ip \"%s\" (want an IPv4 address)\n",
					optarg);
				return 2;
			}
			node_ip = optarg;
			break;
		case 'P':
			if (strcmp(optarg, "bridge") != 0 && strcmp(optarg, "host") != 0) {
				fprintf(stderr, "capstan-agent: --pod-network is bridge or host\n");
				return 2;
			}
			host_network = strcmp(optarg, "host") == 0;
			break;
		case 'C':
		case 'V':
			if (cidr_parse(optarg, &cidr_check) != 0) {
				fprintf(stderr, "capstan-agent: bad --%s \"%s\" (want a.b.c.d/n)\n",
					c == 'C' ? "cluster-cidr" : "service-cluster-ip-range", optarg);
				return 2;
			}
			if (c == 'C')
				cluster_cidr = optarg;
			else
				service_cidr = optarg;
			break;
		case 1001: {
			enum proxy_mode pm;
			if (proxy_parse_mode(optarg, &pm) != 0) {
				fprintf(stderr, "capstan-agent: --proxy-mode is nftables, userspace or none\n");
				return 2;
			}
			proxy_mode = optarg;
			break;
		}
		case 1002: {
			char canon[1024], perr[CAP_ERRMSG_SIZE];
			if (proxy_parse_cidrs(optarg, canon, sizeof canon, perr) != 0) {
				fprintf(stderr, "capstan-agent: bad --nodeport-addresses: %s\n", perr);
				return 2;
			}
			nodeport_addresses = optarg;
			break;
		}
		case 'S':
			simulate = strtol(optarg, &end, 10);
			if (*end != '\0' || simulate < 1 || simulate > 100000) {
				fprintf(stderr, "capstan-agent: bad --simulate \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'l':
			if (log_parse_level(optarg) < 0) {
				fprintf(stderr, "capstan-agent: bad --log-level \"%s\"\n", optarg);
				return 2;
			}
			log_set_level((enum log_level)log_parse_level(optarg));
			break;
		case 'h': usage(stdout); return 0;
		case 'v':
			printf("capstan-agent %s (kubelet v1.31.0-capstan)\n", PACKAGE_VERSION);
			return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "capstan-agent: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (kubeconfig == NULL && server == NULL) {
		fprintf(stderr, "capstan-agent: --kubeconfig or --server is required\n");
		return 2;
	}
	if (node == NULL) {
		if (gethostname(hostname, sizeof hostname) != 0)
			snprintf(hostname, sizeof hostname, "localhost");
		hostname[sizeof hostname - 1] = '\0';
		node = hostname;
	}
	/* The API server reaches the endpoint at the Node's InternalIP. */
	if (listen == NULL) {
		snprintf(deflisten, sizeof deflisten, "%s:10250",
			 node_ip != NULL ? node_ip : "127.0.0.1");
		listen = deflisten;
	}
	snprintf(host, sizeof host, "%s", listen);
	colon = strrchr(host, ':');
	if (colon == NULL || (port = (int)strtol(colon + 1, &end, 10), *end != '\0') || port < 0 ||
	    port > 65535) {
		fprintf(stderr, "capstan-agent: bad --listen \"%s\" (want ADDR:PORT)\n", listen);
		return 2;
	}
	*colon = '\0';
	if (simulate == 0 && dirs_make_all(data_dir, 0700) != 0) {
		fprintf(stderr, "capstan-agent: cannot create %s: %s\n", data_dir, strerror(errno));
		return 1;
	}
	if (token_file == NULL && kubeconfig != NULL) {
		char kc[PATH_MAX];
		snprintf(kc, sizeof kc, "%s", kubeconfig);
		snprintf(tokpath, sizeof tokpath, "%s/agent-token", dirname(kc));
		token_file = tokpath;
	}
	if (token_file != NULL && agent_token_load(token_file, false, token, sizeof token) != 0)
		log_warn("no token in %s: the endpoint refuses every request", token_file);

	signal(SIGPIPE, SIG_IGN);
	a.loop = uv_default_loop();
	a.n = simulate > 0 ? (size_t)simulate : 1;
	a.agents = calloc(a.n, sizeof *a.agents);
	if (a.agents == NULL)
		return 1;
	for (size_t i = 0; i < a.n; i++) {
		char name[300];
		struct agent_config cfg = {
			.server = server,
			.kubeconfig = kubeconfig,
			.node_name = node,
			.data_dir = simulate > 0 ? NULL : data_dir,
			.image_dir = image_dir,
			.listen_host = simulate > 0 ? NULL : host,
			.listen_port = port,
			.token = token[0] ? token : NULL,
			.simulate = simulate > 0,
			.node_ip = node_ip,
			.host_network = host_network,
			.cluster_cidr = cluster_cidr,
			.service_cidr = service_cidr,
			.proxy_mode = proxy_mode,
			.nodeport_addresses = nodeport_addresses,
		};
		if (simulate > 0) {
			snprintf(name, sizeof name, "%s-%zu", node, i);
			cfg.node_name = name;
		}
		if (agent_start(a.loop, &cfg, &a.agents[i], errmsg) != 0) {
			log_error("node %s: %s", cfg.node_name, errmsg);
			a.agents[i] = NULL;
			if (i == 0 && simulate == 0)
				return 1;
			continue;
		}
		a.open++;
	}
	uv_signal_init(a.loop, &a.sigterm);
	uv_signal_init(a.loop, &a.sigint);
	a.sigterm.data = a.sigint.data = &a;
	uv_signal_start(&a.sigterm, on_signal, SIGTERM);
	uv_signal_start(&a.sigint, on_signal, SIGINT);
	if (simulate == 0)
		printf("%d\n", agent_port(a.agents[0]));
	else
		printf("%ld nodes\n", simulate);
	fflush(stdout);
	uv_run(a.loop, UV_RUN_DEFAULT);
	free(a.agents);
	if (uv_loop_close(a.loop) != 0)
		log_warn("event loop closed with handles still open");
	return 0;
}
