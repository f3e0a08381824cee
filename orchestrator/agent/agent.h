/* agent.h — the node agent (the kubelet's job): registers a Node, renews
 * its Lease in kube-node-lease, watches the pods bound to the node, runs
 * them through a runtime (runtime.h), probes and restarts their containers,
 * terminates them gracefully, reports their status and Events, and serves
 * their logs on its own HTTP endpoint.
 *
 * One struct agent is one node. capstan-agent --simulate N runs N of them in
 * one process on the simulated runtime; capstan-server runs one in-process.
 *
 * The endpoint (GET /containerLogs/<ns>/<pod>/<container>) answers only
 * requests carrying "Authorization: Bearer <token>", the token the API
 * server shares through its data directory (agent-token); it listens on
 * loopback by default.
 *
 * Threading: loop thread only. Ownership: the config is copied. Containers
 * keep running when the agent stops; the next agent on the same data
 * directory adopts them. */
#ifndef CAPSTAN_AGENT_H
#define CAPSTAN_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct agent;

struct agent_config {
	const char *server;          /* "http://host:port"; or NULL and kubeconfig */
	const char *kubeconfig;
	const char *node_name;
	const char *data_dir;        /* state, logs, volumes (process runtime) */
	const char *image_dir;       /* image catalog (*.json); NULL: the defaults */
	const char *listen_host;     /* endpoint address; NULL: no endpoint */
	int listen_port;             /* 0 picks a free port */
	const char *token;           /* the endpoint's bearer token; NULL refuses all */
	bool simulate;               /* simulated runtime (hollow node) */
	unsigned lease_ms;           /* Lease renewal period; 0 = 10000 */
	unsigned status_ms;          /* Node status refresh period; 0 = 300000 */
	/* The pod network (network.h). */
	const char *node_ip;         /* the Node's InternalIP; NULL: 127.0.0.1 */
	bool host_network;           /* --pod-network=host: pods share the node's network */
	const char *cluster_cidr;    /* the cluster's pod range; NULL: 10.244.0.0/16 */
	const char *service_cidr;    /* the service range; NULL: 10.96.0.0/12 */
	/* The Service proxy (proxy.h); hollow nodes run none. */
	const char *proxy_mode;      /* "nftables", "userspace", "none"; NULL: auto */
	const char *nodeport_addresses; /* CIDR list; NULL: every local address */
};

/* Starts registering the node and watching its pods (retried until the API
 * server answers). errmsg: CAP_ERRMSG_SIZE. */
int agent_start(uv_loop_t *loop, const struct agent_config *cfg, struct agent **out,
		char *errmsg);
/* The endpoint's port, or 0 without one. */
int agent_port(const struct agent *a);
/* Stops watching, closes the endpoint and frees the agent; containers keep
 * running. cb runs when every handle is closed. */
void agent_close(struct agent *a, void (*cb)(void *data), void *data);

/* The token file shared by an API server and its agents: reads it, or
 * creates it with a random token when create is set. buf gets the token. */
int agent_token_load(const char *path, bool create, char *buf, size_t size);

#endif
