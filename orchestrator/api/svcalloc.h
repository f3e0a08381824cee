/* svcalloc.h — Service cluster IPs and node ports: what the API server
 * allocates and releases with every Service write, kept authoritative in
 * the store.
 *
 * Each allocated value is one record in the store, keyed by the value, as
 * Kubernetes' IPAddress objects are:
 *   /registry/ipaddresses/<ip>          {"kind":"IPAddress", spec.parentRef}
 *   /registry/servicenodeports/<port>   {"kind":"ServiceNodePort", parentRef}
 * A Service write carries, in the same transaction, a create-if-absent
 * compare for every value it takes and a delete for every value it gives
 * up. Two servers (or two requests) that pick the same value cannot both
 * win: the loser's transaction fails and it plans again once its watch
 * cache has seen the winner. A crash between steps cannot leak, as there
 * are no steps; a record whose Service is gone (a namespace deleted with
 * its contents) is dropped by the repair pass (svc_keeper).
 *
 * The plan is computed from the API server's watch cache (wc): a stale
 * cache only costs a retry, never a double allocation.
 *
 * Threading: loop thread only. Ownership: every json_t argument is
 * borrowed unless said otherwise; returned Status objects are new
 * references. */
#ifndef CAPSTAN_ORCH_SVCALLOC_H
#define CAPSTAN_ORCH_SVCALLOC_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "lib/kv.h"
#include "orchestrator/api/rangealloc.h"
#include "orchestrator/api/resources.h"
#include "orchestrator/api/watchcache.h"

#define SVCALLOC_IP_PREFIX "/registry/ipaddresses/"
#define SVCALLOC_PORT_PREFIX "/registry/servicenodeports/"

/* Before validating an update (PUT, patch, apply) of a Service: carries
 * over the cluster IP(s) and node ports the client left out, as
 * kube-apiserver does, so `kubectl apply` or `replace` of a manifest without
 * them keeps what was allocated. Also keeps clusterIPs[0] in step with a
 * changed clusterIP, so the immutability check sees the change. */
void svcalloc_patch_update(json_t *next, json_t *cur);

/* After validation of a create (cur NULL) or update: fills next's
 * clusterIP, clusterIPs and nodePorts, and appends to cmp the txn compares
 * and to ops the txn operations (puts of new records, deletes of released
 * ones) that make it so. Returns NULL, or a Status (422 naming the field for
 * a taken or out-of-range value, 500 when a range is full); then cmp and ops
 * are left as they were. */
json_t *svcalloc_plan(const struct svc_ranges *r, struct wc *cache,
		      const struct api_resource *res, const char *ns, const char *name,
		      json_t *cur, json_t *next, json_t *cmp, json_t *ops);

/* Appends to ops the deletes of the records a Service being removed holds. */
void svcalloc_release(json_t *svc, json_t *ops);

/* The keeper: creates the `kubernetes` Service in `default` (cluster IP the
 * first of the range, port 443 to the API server's own address) and its
 * Endpoints and EndpointSlice (re-created every minute if deleted), then
 * runs the repair pass now and every minute: records whose Service no longer holds them are deleted (only if
 * unchanged since read), Services whose records are missing get them back. */
struct svc_keeper;

/* host/port: the API server's address for the kubernetes Endpoints. The
 * kv, cache and ranges are borrowed and must outlive the keeper. */
int svc_keeper_start(uv_loop_t *loop, struct kv *kv, struct wc *cache,
		     const struct svc_ranges *r, const char *host, int port,
		     struct svc_keeper **out);
/* Whether the kubernetes Service exists (created or found). */
bool svc_keeper_ready(const struct svc_keeper *k);
/* Stops the timer, waits for the store calls in flight, frees the keeper,
 * then calls cb. */
void svc_keeper_close(struct svc_keeper *k, void (*cb)(void *data), void *data);

#endif
