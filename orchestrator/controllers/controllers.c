/* controllers.c — the controller manager: the table of built-in
 * controllers, shared informers, and the leader election that decides
 * whether this process runs them (see controllers.h).
 *
 * Happy path: start → campaign for kube-system/capstan-controller-manager →
 * on becoming leader, start every enabled controller (they create shared
 * informers on demand) → on losing the lease, stop them all and drop the
 * shared informers, so a later term starts from a fresh list.
 *
 * Failure modes: a controller whose start fails is logged and left out of
 * this term; the API server unreachable shows up as a lost lease (renew
 * deadline) and the manager campaigns again. */
#include "orchestrator/controllers/controllers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "orchestrator/kube/leaderelect.h"

#define CM_MAX_SHARED 24
#define CM_LEASE_NAME "capstan-controller-manager"

const struct controller_def controller_table[] = {
	{"nodelifecycle", nodelifecycle_controller_start, nodelifecycle_controller_stop},
	{"nodeipam", nodeipam_controller_start, nodeipam_controller_stop},
	/* ---- workload controllers: add one line each below ---- */
	{"replicaset", replicaset_controller_start, replicaset_controller_stop},
	{"deployment", deployment_controller_start, deployment_controller_stop},
	{"daemonset", daemonset_controller_start, daemonset_controller_stop},
	{"endpoints", endpoints_controller_start, endpoints_controller_stop},
	{"endpointslice", endpointslice_controller_start, endpointslice_controller_stop},
	{"garbagecollector", gc_controller_start, gc_controller_stop},
	/* ---- end of workload controllers ---- */
	{NULL, NULL, NULL},
};

#define CM_NCONTROLLERS (sizeof controller_table / sizeof controller_table[0])

struct shared_informer {
	const struct kres *res;
	struct informer *inf;
};

struct controller_manager {
	uv_loop_t *loop;
	struct kclient *client;
	char identity[256];
	struct controller_options opts;
	struct controller_ctx ctx;
	struct leaderelect *le;
	struct shared_informer shared[CM_MAX_SHARED];
	int nshared;
	bool enabled[CM_NCONTROLLERS];
	bool running[CM_NCONTROLLERS];
	void *state[CM_NCONTROLLERS];
	bool leading;
};

static bool same_res(const struct kres *a, const struct kres *b)
{
	return strcmp(a->group, b->group) == 0 && strcmp(a->version, b->version) == 0 &&
	       strcmp(a->resource, b->resource) == 0;
}

static struct informer *shared_informer(struct controller_ctx *ctx, const struct kres *r)
{
	struct controller_manager *m = ctx->impl;
	struct informer *inf;

	for (int i = 0; i < m->nshared; i++)
		if (same_res(m->shared[i].res, r))
			return m->shared[i].inf;
	if (m->nshared >= CM_MAX_SHARED)
		return NULL;
	if (informer_new(m->client, r, NULL, NULL, NULL, 0, &inf) != 0)
		return NULL;
	if (informer_start(inf) != 0) {
		informer_stop(inf);
		return NULL;
	}
	m->shared[m->nshared].res = r;
	m->shared[m->nshared].inf = inf;
	m->nshared++;
	return inf;
}

static void stop_controllers(struct controller_manager *m)
{
	for (size_t i = 0; i < CM_NCONTROLLERS; i++) {
		if (!m->running[i])
			continue;
		controller_table[i].stop(m->state[i]);
		m->running[i] = false;
		m->state[i] = NULL;
	}
	for (int i = 0; i < m->nshared; i++)
		informer_stop(m->shared[i].inf);
	m->nshared = 0;
}

static void on_leading(void *data)
{
	struct controller_manager *m = data;

	m->leading = true;
	for (size_t i = 0; controller_table[i].name != NULL; i++) {
		if (!m->enabled[i])
			continue;
		if (controller_table[i].start(&m->ctx, &m->state[i]) != 0) {
			log_error("controller %s failed to start", controller_table[i].name);
			continue;
		}
		m->running[i] = true;
		log_info("controller %s started", controller_table[i].name);
	}
}

static void on_stopped_leading(void *data)
{
	struct controller_manager *m = data;

	m->leading = false;
	stop_controllers(m);
	log_info("controllers stopped: not the leader any more");
}

/* "all", "a,b", "all,-a". Unknown names are reported and ignored, so a
 * flag naming a controller this build lacks does not stop the server. */
static void parse_enabled(struct controller_manager *m, const char *list)
{
	char buf[1024], *save = NULL, *tok;

	snprintf(buf, sizeof buf, "%s", list ? list : "all");
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		bool on = tok[0] != '-';
		const char *name = on ? tok : tok + 1;
		bool found = false;

		for (size_t i = 0; controller_table[i].name != NULL; i++) {
			if (strcmp(name, "all") == 0 || strcmp(name, "*") == 0 ||
			    strcmp(name, controller_table[i].name) == 0) {
				m->enabled[i] = on;
				found = true;
			}
		}
		if (!found)
			log_warn("--controllers: no controller named \"%s\"", name);
	}
}

int controller_manager_start_opts(uv_loop_t *loop, const char *server_url,
				  const char *enabled, const struct controller_options *opts,
				  struct controller_manager **out)
{
	struct controller_manager *m = calloc(1, sizeof(*m));
	struct leaderelect_config lc = {0};

	if (m == NULL)
		return -1;
	m->loop = loop;
	if (opts != NULL)
		m->opts = *opts;
	if (m->opts.node_monitor_grace_s == 0)
		m->opts.node_monitor_grace_s = 50;
	if (m->opts.eviction_rate <= 0)
		m->opts.eviction_rate = 10;
	parse_enabled(m, enabled);
	if (kclient_new(loop, server_url, &m->client) != 0)
		goto err_after_alloc;
	leaderelect_identity(m->identity, sizeof m->identity);
	m->ctx.loop = loop;
	m->ctx.client = m->client;
	m->ctx.identity = m->identity;
	m->ctx.shared = shared_informer;
	m->ctx.opts = &m->opts;
	m->ctx.impl = m;
	lc.ns = "kube-system";
	lc.name = CM_LEASE_NAME;
	lc.identity = m->identity;
	lc.lease_duration_ms = m->opts.lease_duration_ms;
	lc.retry_period_ms = m->opts.retry_period_ms;
	lc.on_start = on_leading;
	lc.on_stop = on_stopped_leading;
	lc.data = m;
	if (leaderelect_start(m->client, &lc, &m->le) != 0)
		goto err_after_client;
	*out = m;
	return 0;

err_after_client:
	kclient_close(m->client);
err_after_alloc:
	free(m);
	return -1;
}

int controller_manager_start(uv_loop_t *loop, const char *server_url, const char *enabled,
			     struct controller_manager **out)
{
	return controller_manager_start_opts(loop, server_url, enabled, NULL, out);
}

bool controller_manager_leading(const struct controller_manager *m)
{
	return m->leading;
}

void controller_manager_stop(struct controller_manager *m)
{
	if (m == NULL)
		return;
	stop_controllers(m);
	leaderelect_stop(m->le);
	kclient_close(m->client);
	free(m);
}
