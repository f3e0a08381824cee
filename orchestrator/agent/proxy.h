/* proxy.h — the node agent's Service proxy (kube-proxy's job): it watches
 * Services and EndpointSlices and makes clusterIP:port and nodeIP:nodePort
 * reach a ready endpoint, spreading connections across endpoints.
 *
 * Modes:
 *  - nftables: one table of its own ("ip capstan", see proxy_rules.h),
 *    replaced atomically through libnftables after changes (coalesced: one
 *    sync at most every 100 ms, a burst of changes makes one sync). Needs
 *    root (CAP_NET_ADMIN). The table stays when the agent stops, so traffic
 *    keeps flowing across a restart; the next agent resyncs it.
 *  - userspace: the agent itself listens on the nodePorts (and on a
 *    clusterIP:port when that address is bound on this host) and splices
 *    TCP connections round-robin to ready endpoints (proxy_userspace.h).
 *  - none: no proxy.
 * PROXY_AUTO is nftables when running as root, userspace otherwise; when
 * nftables cannot be programmed at all (no kernel support) the proxy falls
 * back to userspace and says so in the log.
 *
 * Threading: loop thread only; nft runs on libuv's thread pool. Ownership:
 * the config is copied; the kclient is borrowed and must outlive the proxy
 * (close the proxy first). */
#ifndef CAPSTAN_PROXY_H
#define CAPSTAN_PROXY_H

#include <uv.h>

#include "orchestrator/kube/kclient.h"

enum proxy_mode { PROXY_AUTO, PROXY_NFTABLES, PROXY_USERSPACE, PROXY_NONE };

/* "nftables", "userspace", "none" (or "" / NULL: auto). 0 or -1. */
int proxy_parse_mode(const char *s, enum proxy_mode *out);

struct proxy_config {
	enum proxy_mode mode;
	const char *nodeport_addresses;   /* CIDR list; NULL: every local address */
};

struct proxy;

/* Starts the informers; the first sync comes once both have listed.
 * errmsg: CAP_ERRMSG_SIZE. Mode none is not an error: *out is NULL. */
int proxy_start(uv_loop_t *loop, struct kclient *kc, const struct proxy_config *cfg,
		struct proxy **out, char *errmsg);
/* The mode in force: "nftables" or "userspace". */
const char *proxy_mode_name(const struct proxy *p);
/* Stops watching, closes the userspace listeners and connections, waits for
 * a running nft transaction, then frees the proxy and calls cb. The nft
 * table is left in place. */
void proxy_close(struct proxy *p, void (*cb)(void *data), void *data);

#endif
