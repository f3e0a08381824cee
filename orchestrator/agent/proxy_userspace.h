/* proxy_userspace.h — the Service proxy without kernel rules: TCP
 * listeners on the nodePorts (on the --nodeport-addresses that are single
 * addresses, else on 0.0.0.0) and on clusterIP:port where that address is
 * bound on this host, each accepted connection spliced to the next ready
 * endpoint of its service port (round-robin).
 *
 * Limits, by construction: TCP only; a clusterIP that no local interface
 * carries cannot be listened on, so it is reachable only where the kernel
 * delivers it locally; the endpoint sees the proxy's address as the
 * client's.
 *
 * Threading: loop thread only. Ownership: proxy_us_update copies what it
 * needs from the model. */
#ifndef CAPSTAN_PROXY_USERSPACE_H
#define CAPSTAN_PROXY_USERSPACE_H

#include <uv.h>

#include "orchestrator/agent/proxy_rules.h"

struct proxy_us;

/* nodeport_cidrs: canonical text from proxy_parse_cidrs, or NULL. */
int proxy_us_new(uv_loop_t *loop, const char *nodeport_cidrs, struct proxy_us **out);
/* Opens and closes listeners to match the model; open connections stay. */
void proxy_us_update(struct proxy_us *u, const struct proxy_model *m);
/* Closes every listener and connection; cb runs once all handles closed. */
void proxy_us_close(struct proxy_us *u, void (*cb)(void *data), void *data);

#endif
