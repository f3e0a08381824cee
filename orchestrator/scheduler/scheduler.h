/* scheduler.h — the default scheduler: places unbound pods whose
 * schedulerName is default-scheduler (or empty) on nodes, through the
 * filter and score plugins of plugins.h, binding with POST pods/binding.
 *
 * It runs only while it holds the Lease kube-system/capstan-scheduler, so
 * with several capstan-servers exactly one schedules. It talks HTTP to the
 * API server like any outside scheduler.
 *
 * Threading: loop thread only. */
#ifndef CAPSTAN_SCHEDULER_H
#define CAPSTAN_SCHEDULER_H

#include <stdbool.h>
#include <uv.h>

#include "orchestrator/scheduler/plugins.h"

struct scheduler;

struct sched_options {
	enum sched_score_mode score;   /* LeastAllocated by default */
	unsigned lease_duration_ms;    /* leader election; 0: 15000 */
	unsigned retry_period_ms;      /* 0: 2000 */
	unsigned flush_ms;             /* unschedulable pods retried at least this often; 0: 30000 */
};

int sched_start(uv_loop_t *loop, const char *server_url, const struct sched_options *opts,
		struct scheduler **out);
bool sched_leading(const struct scheduler *s);
/* Pods bound since start (for logs and benchmarks). */
unsigned long sched_bound_count(const struct scheduler *s);
void sched_stop(struct scheduler *s);

#endif
