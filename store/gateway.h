/* gateway.h — etcd's v3 JSON gateway over HTTP/1.1: routes each POST path to
 * the store's service (store_call), streams watches, lease keep-alives and
 * snapshots, and turns every error into etcd's error body and HTTP status.
 *
 * Threading: loop thread only. The gateway borrows the store, which must
 * outlive it. */
#ifndef CAPSTAN_GATEWAY_H
#define CAPSTAN_GATEWAY_H

#include <stddef.h>
#include <uv.h>

#include "store/store.h"

struct gateway;

struct gateway_config {
	const char *host;
	int port;
	size_t max_request_bytes;   /* etcd's --max-request-bytes, default 1.5 MiB */
};

int gateway_start(uv_loop_t *loop, struct store *s, const struct gateway_config *cfg,
		  struct gateway **out, char *errmsg);
int gateway_port(const struct gateway *g);
/* Ends every stream (removing its watchers), stops listening, frees the
 * gateway, then calls cb. */
void gateway_close(struct gateway *g, void (*cb)(void *data), void *data);

#endif
