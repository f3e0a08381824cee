/* rollout.h — the pure arithmetic of Deployments and ReplicaSets: maxSurge
 * and maxUnavailable, how far a rolling update may scale each ReplicaSet,
 * proportional scaling mid-rollout, the pod-template-hash, and the order in
 * which a ReplicaSet picks pods to delete.
 *
 * Nothing here does I/O or keeps state; every function is a translation of
 * what Kubernetes' deployment and replicaset controllers compute, so that the
 * controllers that call them only move objects around. JSON arguments are
 * borrowed; errmsg is a caller-owned buffer of CAP_ERRMSG_SIZE bytes. */
#ifndef CAPSTAN_ROLLOUT_H
#define CAPSTAN_ROLLOUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROLLOUT_HASH_LABEL "pod-template-hash"
#define ROLLOUT_ANN_REVISION "deployment.kubernetes.io/revision"
#define ROLLOUT_ANN_REVISION_HISTORY "deployment.kubernetes.io/revision-history"
#define ROLLOUT_ANN_DESIRED "deployment.kubernetes.io/desired-replicas"
#define ROLLOUT_ANN_MAX "deployment.kubernetes.io/max-replicas"
#define ROLLOUT_ANN_CHANGE_CAUSE "kubernetes.io/change-cause"

/* An IntOrString (a number, or "N%" of total). Percentages round up when
 * round_up, down otherwise; NULL reads as 0. CAP_EINVAL on anything else. */
int rollout_scaled_value(json_t *v, int total, bool round_up, int *out, char *errmsg);

/* maxSurge (rounded up) and maxUnavailable (rounded down) for `replicas`;
 * when both come out 0, unavailable is 1 so that a rollout can progress. */
int rollout_fenceposts(json_t *max_surge, json_t *max_unavailable, int replicas,
		       int *surge, int *unavailable, char *errmsg);

/* One ReplicaSet as the rollout arithmetic sees it. Functions that scale
 * write the new size into `replicas`. */
struct rollout_rs {
	const char *name;     /* borrowed; breaks ties between equal timestamps */
	int64_t created;      /* creationTimestamp, seconds since the epoch */
	int replicas;         /* spec.replicas */
	int available;        /* status.availableReplicas */
	int max_replicas;     /* the max-replicas annotation, -1 when absent */
};

/* The size a rolling update may give the new ReplicaSet now: up to
 * replicas + surge pods in all, never above replicas. total is the sum of
 * spec.replicas over every ReplicaSet, new_size the new one's. */
int rollout_new_rs_size(int replicas, int surge, int total, int new_size);

/* Scales old ReplicaSets down as far as maxUnavailable allows: first the
 * pods that are not available (oldest set first), then available ones while
 * more than replicas - unavailable pods stay available. Returns how many
 * replicas were taken away in all. */
int rollout_scale_down_old(struct rollout_rs *old, size_t n, int new_size, int new_available,
			   int replicas, int unavailable);

/* A Deployment scaled mid-rollout: spreads the difference between
 * replicas + surge (0 when replicas is 0) and the current total over the
 * active ReplicaSets in proportion to their size (the max-replicas
 * annotation, else status_replicas, is what the sizes were computed for),
 * and gives the rounding leftover to the largest (newest on ties when
 * growing, oldest when shrinking). */
void rollout_proportional(struct rollout_rs *rs, size_t n, int replicas, int surge,
			  int status_replicas);

/* Sorts by creationTimestamp, oldest first (name on ties). */
void rollout_sort_oldest_first(struct rollout_rs *rs, size_t n);

/* The pod-template-hash of a pod template: FNV-32a over its canonical JSON
 * (sorted keys, null members dropped, without the pod-template-hash label) and the collision count
 * as four little-endian bytes (when collision_count >= 0), the decimal value
 * written with the alphabet "bcdfghjklmnpqrstvwxz2456789". out holds at
 * least 11 bytes. */
void rollout_template_hash(json_t *template, int64_t collision_count, char out[static 11]);

/* True when two pod templates are equal apart from the pod-template-hash
 * label and null members (how a Deployment finds the ReplicaSet of its
 * current template). */
bool rollout_templates_equal(json_t *a, json_t *b);

/* What a ReplicaSet knows about a pod when choosing whom to delete. */
struct rollout_pod {
	const char *name;     /* borrowed */
	bool assigned;        /* spec.nodeName set */
	int phase_rank;       /* Pending 0, Unknown 1, Running 2 (others 0) */
	bool ready;
	int64_t deletion_cost;/* controller.kubernetes.io/pod-deletion-cost */
	int colocated;        /* pods of the same set on the same node */
	int64_t ready_since;  /* Ready condition's lastTransitionTime, seconds */
	int restarts;         /* the highest restartCount of its containers */
	int64_t created;      /* creationTimestamp, seconds */
	size_t index;         /* for the caller: where the pod came from */
};

/* Sorts pods so the ones to delete first come first: unassigned before
 * assigned; Pending, Unknown, Running; not ready before ready; lower
 * deletion cost; more pods of the set on the node; ready for less time; more
 * restarts; newer. */
void rollout_sort_victims(struct rollout_pod *pods, size_t n);

/* Fills a rollout_pod from a Pod (borrowed: name points into it). */
void rollout_pod_from_json(json_t *pod, struct rollout_pod *out);

/* Seconds since the epoch of an RFC 3339 time ("2024-05-01T10:00:00Z",
 * fractions and offsets allowed), or -1. */
int64_t rollout_parse_time(const char *s);

#endif
