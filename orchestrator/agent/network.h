/* network.h — the pod network of one node: every pod gets its own network
 * namespace and an address from the node's pod range (spec.podCIDR, handed
 * out by the server's node IPAM controller), on a node bridge, the way the
 * CNI bridge and host-local plugins do it; pods on other nodes are reached
 * through a route per node to its pod range via its InternalIP
 * (host-gateway); the cluster's pod range gets an unreachable route and the
 * service range a local one, so that neither ever leaves the machine.
 *
 * Modes: BRIDGE when the agent is root and not told --pod-network=host;
 * otherwise HOST: pods share the node's network and report the node IP, and
 * the Node's NetworkUnavailable condition says why. A BRIDGE whose setup
 * fails falls back to HOST the same way.
 *
 * Threading: loop thread only. Setup is synchronous netlink requests to the
 * kernel (each answered at once), done on the loop. Ownership: the config
 * is copied; the network owns its Node informer (the kclient must outlive
 * it). Namespaces and addresses are files under DATA/network and outlive
 * the agent: the next agent on the same data directory finds them. */
#ifndef CAPSTAN_AGENT_NETWORK_H
#define CAPSTAN_AGENT_NETWORK_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <uv.h>

#include "orchestrator/kube/kclient.h"

struct network;

struct network_config {
	const char *data_dir;       /* state under data_dir/network */
	const char *node_name;
	const char *node_ip;        /* the InternalIP other nodes route pods through */
	const char *cluster_cidr;   /* NULL: 10.244.0.0/16 */
	const char *service_cidr;   /* NULL: 10.96.0.0/12 */
	bool host_only;             /* --pod-network=host */
	/* Called when readiness or the condition changed (the agent then
	 * re-syncs its pods and patches the Node's status). */
	void (*changed)(void *data);
	void *data;
};

/* Starts the network (and, in BRIDGE mode, a Node informer). Never fails
 * for want of privileges: that is HOST mode. Returns 0, or -1 when out of
 * memory (errmsg: CAP_ERRMSG_SIZE). */
int network_start(uv_loop_t *loop, struct kclient *kc, const struct network_config *cfg,
		  struct network **out, char *errmsg);
/* Pods get their own namespaces (BRIDGE mode). */
bool network_per_pod(const struct network *n);
/* BRIDGE mode with the bridge up: pods can be set up. */
bool network_ready(const struct network *n);
/* The Node condition NetworkUnavailable (new reference), or NULL when
 * there is nothing to say (--pod-network=host). now is the heartbeat time
 * (RFC 3339). */
json_t *network_condition(struct network *n, const char *now);

/* Sets up (or finds again, after a restart) the pod's namespace, veth and
 * address. ip gets the dotted address (16 bytes), netns the namespace's
 * path (PATH_MAX). Returns 0; or 1 when the network is not ready yet; or -1
 * with errmsg (CAP_ERRMSG_SIZE). */
int network_pod_setup(struct network *n, const char *uid, char *ip, char *netns,
		      char *errmsg);
/* What an earlier setup left for the pod, without creating anything:
 * 0 with ip and netns, or -1. */
int network_pod_find(struct network *n, const char *uid, char *ip, char *netns);
/* Removes the pod's namespace, veth and address; idempotent. */
void network_pod_teardown(struct network *n, const char *uid);
/* Tears down every pod whose uid alive() denies (after an agent restart:
 * pods deleted while no agent watched). */
void network_gc(struct network *n, bool (*alive)(void *data, const char *uid), void *data);

/* Moves the calling thread into the network namespace at path, so that a
 * process it forks now (uv_spawn) starts there: returns a descriptor for
 * network_leave, or -1 with errno. Keep the window short: every netlink or
 * socket call of the thread meanwhile is in that namespace. */
int network_enter(const char *path);
/* Back to the namespace network_enter left (aborts if that fails: the loop
 * thread must never go on in a pod's namespace); closes saved. */
void network_leave(int saved);

/* Stops the informer and frees (memory goes once its timer has closed, on
 * the loop); namespaces and routes stay. */
void network_close(struct network *n);

#endif
