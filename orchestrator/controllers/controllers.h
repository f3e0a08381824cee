/* controllers.h — the controller manager: one table of built-in
 * controllers, shared informers, and leader election so that with several
 * capstan-servers exactly one runs the controllers (the holder of the Lease
 * kube-system/capstan-controller-manager).
 *
 * A controller's start() runs when this process becomes leader; it gets a
 * context with the client and shared informers (one per resource, all
 * namespaces, started on first use) and returns its state; stop() undoes it
 * when leadership is lost or the manager stops (before the shared informers
 * are stopped). A controller that fails to start is logged and skipped.
 *
 * Threading: loop thread only. */
#ifndef CAPSTAN_CONTROLLERS_H
#define CAPSTAN_CONTROLLERS_H

#include <stdbool.h>
#include <uv.h>

#include "orchestrator/kube/informer.h"
#include "orchestrator/kube/kclient.h"

struct controller_manager;

struct controller_options {
	unsigned node_monitor_grace_s;   /* default 50 */
	unsigned node_monitor_period_ms; /* default 5000 (lower when the grace is short) */
	double eviction_rate;            /* pods evicted per second at most; default 10 */
	unsigned lease_duration_ms;      /* leader election; 0: 15000 */
	unsigned retry_period_ms;        /* 0: 2000 */
	const char *cluster_cidr;        /* pod ranges come from here; NULL: 10.244.0.0/16 */
	unsigned node_cidr_mask_size;    /* each node's pod range; 0: 24 */
};

struct controller_ctx {
	uv_loop_t *loop;
	struct kclient *client;
	const char *identity;
	/* Shared informer for r (all namespaces), started; owned by the manager. */
	struct informer *(*shared)(struct controller_ctx *ctx, const struct kres *r);
	const struct controller_options *opts;
	void *impl;
};

struct controller_def {
	const char *name;
	int (*start)(struct controller_ctx *ctx, void **state);
	void (*stop)(void *state);
};

/* NULL-terminated by name. */
extern const struct controller_def controller_table[];

int nodelifecycle_controller_start(struct controller_ctx *ctx, void **state);
void nodelifecycle_controller_stop(void *state);
int replicaset_controller_start(struct controller_ctx *ctx, void **state);
void replicaset_controller_stop(void *state);
int deployment_controller_start(struct controller_ctx *ctx, void **state);
void deployment_controller_stop(void *state);
int daemonset_controller_start(struct controller_ctx *ctx, void **state);
void daemonset_controller_stop(void *state);
int endpoints_controller_start(struct controller_ctx *ctx, void **state);
void endpoints_controller_stop(void *state);
int endpointslice_controller_start(struct controller_ctx *ctx, void **state);
void endpointslice_controller_stop(void *state);
int gc_controller_start(struct controller_ctx *ctx, void **state);
void gc_controller_stop(void *state);
int nodeipam_controller_start(struct controller_ctx *ctx, void **state);
void nodeipam_controller_stop(void *state);

/* enabled: "all" or a comma list of names ("-name" disables one of all).
 * opts NULL: defaults. Returns non-zero on an unknown name. */
int controller_manager_start(uv_loop_t *loop, const char *server_url, const char *enabled,
			     struct controller_manager **out);
int controller_manager_start_opts(uv_loop_t *loop, const char *server_url,
				  const char *enabled, const struct controller_options *opts,
				  struct controller_manager **out);
bool controller_manager_leading(const struct controller_manager *m);
void controller_manager_stop(struct controller_manager *m);

#endif
