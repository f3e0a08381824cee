/* kv_http.h — the kv interface (lib/kv.h) over HTTP: etcd's v3 JSON gateway
 * as served by capstan-store or etcd itself.
 *
 * Endpoints are tried in order; a call that cannot connect moves on to the
 * next endpoint, and the endpoint that answered is used first next time.
 * Only connection failures fail over: once a request may have reached a
 * server, it is not resent, so a write is never applied twice by us.
 *
 * Errors reach callbacks as etcd's error object {"error","message","code"}:
 * the server's own for a non-200 answer; code 14 (Unavailable) with an extra
 * member "transport": true when no endpoint answered or the answer did not
 * come in time (see kv_http_is_transport_error).
 *
 * Threading: the loop thread only. Ownership: kv_close() frees the kv after
 * cancelling what is outstanding; each callback still runs once. */
#ifndef CAPSTAN_KV_HTTP_H
#define CAPSTAN_KV_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "lib/kv.h"

/* endpoints: comma-separated "http://host:port" URLs. timeout_ms bounds each
 * unary call (0 = none); streams (watch, snapshot) are never timed out.
 * Returns 0 and *out, or a cap_err code (CAP_EINVAL for a bad endpoint list). */
int kv_http_new(uv_loop_t *loop, const char *endpoints, unsigned timeout_ms, struct kv **out);

/* POSTs body to path and delivers each {"result": ...} object of the streamed
 * answer to cb, as watch does; for streams the server ends by itself (e.g.
 * /v3/maintenance/snapshot) a clean end is reported as cb(NULL, NULL).
 * Cancel with kv_watch_cancel(). Same callback contract as kv_watch(). */
int kv_http_stream(struct kv *kv, const char *path, json_t *body, kv_watch_cb cb, void *data,
		   struct kv_watch **out);

/* True when err was made by this client because no server answered in time
 * (as opposed to an error a server reported). */
bool kv_http_is_transport_error(const json_t *err);

/* The endpoint URL calls currently go to first (borrowed). */
const char *kv_http_endpoint(const struct kv *kv);

#endif
