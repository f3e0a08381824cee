/* probe.h — container probes (exec, httpGet, tcpSocket) with the kubelet's
 * defaults and thresholds: one attempt at a time (probe_once) and a periodic
 * worker that turns attempts into a healthy/unhealthy verdict (probe_worker).
 *
 * Threading: loop thread only. Ownership: a probe_spec is plain data owned by
 * whoever filled it (probe_spec_free releases its strings); probe_once
 * borrows the spec until its callback ran, a worker copies it. Contract
 * (libuv's): a non-zero return means the callback never runs. */
#ifndef CAPSTAN_AGENT_PROBE_H
#define CAPSTAN_AGENT_PROBE_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

enum probe_kind { PROBE_EXEC, PROBE_HTTP, PROBE_TCP };
enum probe_result { PROBE_SUCCESS, PROBE_FAILURE };

struct probe_spec {
	enum probe_kind kind;
	char **argv;              /* exec: NULL-terminated */
	char **env;               /* exec: NULL-terminated "K=V", or NULL to inherit */
	char *cwd;                /* exec: or NULL */
	char *netns;              /* exec: the pod's network namespace, or NULL */
	char *host;               /* http/tcp: IPv4 address (default the pod IP, 127.0.0.1) */
	int port;                 /* http/tcp */
	char *path;               /* http: "/" by default */
	char **headers;           /* http: NULL-terminated "Name: value", or NULL */
	unsigned initial_delay_s; /* 0 */
	unsigned period_s;        /* 10 */
	unsigned timeout_s;       /* 1 */
	unsigned success_threshold; /* 1 */
	unsigned failure_threshold; /* 3 */
};

/* Fills spec from a Kubernetes Probe object; named ports are looked up in
 * the container's ports. env and cwd are copied (for exec). Returns 0, or
 * -1 with a message in errmsg (CAP_ERRMSG_SIZE) for a probe it cannot run. */
int probe_spec_from_json(json_t *probe, json_t *container, char *const *env,
			 const char *cwd, struct probe_spec *spec, char *errmsg);
void probe_spec_free(struct probe_spec *spec);
/* A deep copy; 0 or -1 on allocation failure. */
int probe_spec_copy(const struct probe_spec *src, struct probe_spec *dst);

/* msg: what happened, worded like the kubelet's probe messages; valid
 * during the call. */
typedef void (*probe_result_cb)(void *data, enum probe_result result, const char *msg);

/* Runs one attempt bounded by spec->timeout_s. An exec probe runs in its own
 * process group, killed whole on timeout. */
int probe_once(uv_loop_t *loop, const struct probe_spec *spec, probe_result_cb cb, void *data);

/* Thresholds: successes/failures in a row flip the verdict. */
struct probe_counter {
	unsigned successes;
	unsigned failures;
	bool healthy;
};
/* Records one result; returns true when the verdict changed. */
bool probe_counter_add(struct probe_counter *c, const struct probe_spec *spec,
		       enum probe_result r);

/* The periodic worker: the first attempt after initial_delay_s, then every
 * period_s. cb runs after each attempt with the result and the verdict
 * (changed: whether this attempt flipped it). */
struct probe_worker;
typedef void (*probe_worker_cb)(void *data, enum probe_result result, bool healthy,
				bool changed, const char *msg);
int probe_worker_start(uv_loop_t *loop, const struct probe_spec *spec, bool initially_healthy,
		       probe_worker_cb cb, void *data, struct probe_worker **out);
/* No callback runs after this returns; memory goes once pending I/O ends. */
void probe_worker_stop(struct probe_worker *w);

#endif
