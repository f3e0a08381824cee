/* leaderelect.h — leader election on a coordination.k8s.io/v1 Lease, as
 * client-go's leaderelection does it: the holder renews spec.renewTime every
 * retry period; another candidate takes the Lease over when it has not seen
 * the record change for leaseDurationSeconds (its own clock, so clock skew
 * between machines does not matter); updates carry the resourceVersion, so
 * two candidates never both win.
 *
 * Defaults: lease duration 15 s, renew deadline 10 s, retry period 2 s.
 * A leader that cannot renew within the renew deadline stops leading.
 *
 * Threading: loop thread only. Callbacks run on the loop thread; on_stop
 * runs only after on_start. */
#ifndef CAPSTAN_LEADERELECT_H
#define CAPSTAN_LEADERELECT_H

#include <stdbool.h>

#include "orchestrator/kube/kclient.h"

struct leaderelect;

struct leaderelect_config {
	const char *ns;               /* "kube-system" */
	const char *name;             /* the Lease */
	const char *identity;         /* this candidate; copied */
	unsigned lease_duration_ms;   /* 0: 15000 */
	unsigned renew_deadline_ms;   /* 0: 10000 */
	unsigned retry_period_ms;     /* 0: 2000 */
	void (*on_start)(void *data); /* became leader */
	void (*on_stop)(void *data);  /* lost the lease */
	void *data;
};

int leaderelect_start(struct kclient *c, const struct leaderelect_config *cfg,
		      struct leaderelect **out);
bool leaderelect_is_leader(const struct leaderelect *le);
/* Stops campaigning; a leader gives the Lease up (best effort, so another
 * candidate takes over at once) without calling on_stop. Frees. */
void leaderelect_stop(struct leaderelect *le);

/* "host_pid_random": a unique candidate identity. */
void leaderelect_identity(char *buf, size_t size);

#endif
