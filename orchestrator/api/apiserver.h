/* apiserver.h — the Kubernetes REST API over the kv interface: typed objects
 * stored as JSON under /registry/<resource>/[<namespace>/]<name>, served to
 * kubectl and client libraries over plain HTTP/1.1.
 *
 * The server needs only a struct kv, so it runs the same on the embedded
 * store (store_kv) and on an external one (kv_http). Reads of lists and every
 * watch come from a watch cache (watchcache.h); single reads and all writes go
 * to the store, writes as compare-and-swap transactions on mod_revision.
 *
 * Threading: loop thread only. Ownership: the kv is borrowed and must outlive
 * the server until api_server_close's callback has run. */
#ifndef CAPSTAN_ORCH_APISERVER_H
#define CAPSTAN_ORCH_APISERVER_H

#include <stdbool.h>
#include <uv.h>

#include "lib/kv.h"
#include "orchestrator/api/rangealloc.h"

#define API_MAX_BODY (3u * 1024 * 1024)

struct api_server;

struct api_config {
	const char *host;            /* listen address, e.g. "127.0.0.1" */
	int port;                    /* 0 picks a free port */
	unsigned bookmark_ms;        /* watch BOOKMARK period; 0 = 60000 */
	/* Service CIDR and node-port range (copied); NULL: 10.96.0.0/12 and
	 * 30000-32767. */
	const struct svc_ranges *ranges;
};

/* Listens and starts loading the watch cache and creating the built-in
 * namespaces (retried until the store answers). errmsg: CAP_ERRMSG_SIZE. */
int api_server_start(uv_loop_t *loop, struct kv *kv, const struct api_config *cfg,
		     struct api_server **out, char *errmsg);
int api_server_port(const struct api_server *s);
/* Whether the cache is loaded and the built-in namespaces exist. */
bool api_server_ready(const struct api_server *s);
/* Ends every watch stream, waits for requests already at the store, stops
 * listening, frees the server, then calls cb. */
void api_server_close(struct api_server *s, void (*cb)(void *data), void *data);

#endif
