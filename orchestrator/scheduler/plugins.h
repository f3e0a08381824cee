/* plugins.h — the scheduler's filter and score plugins over a node's
 * cached state, and Kubernetes quantity parsing.
 *
 * Filters (kube-scheduler's names and verdict wording): NodeUnschedulable,
 * NodeName, TaintToleration, NodeAffinity (nodeSelector and required node
 * affinity), NodePorts, NodeResourcesFit. Scores: LeastAllocated (spread)
 * and MostAllocated (bin packing), 0..100 over cpu and memory.
 *
 * Pure functions: no I/O, no allocation beyond what is stated. Objects are
 * borrowed. */
#ifndef CAPSTAN_SCHED_PLUGINS_H
#define CAPSTAN_SCHED_PLUGINS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Requests (or a node's allocatable): cpu in millicores, memory in bytes. */
struct sched_resources {
	int64_t milli_cpu;
	int64_t memory;
	int64_t pods;
};

/* A node as the scheduler sees it: the object plus what is placed on it. */
struct sched_node {
	const char *name;
	json_t *node;                      /* borrowed; NULL while only pods name it */
	struct sched_resources alloc;
	struct sched_resources requested;  /* sum of pod requests */
	struct sched_resources nonzero;    /* the same with defaults for empty requests */
	json_t *ports;                     /* array of {"p":proto,"i":hostIP,"n":port} in use */
};

enum sched_score_mode { SCHED_SCORE_LEAST = 0, SCHED_SCORE_MOST = 1 };

#define SCHED_MAX_REASONS 4
#define SCHED_REASON_SIZE 256

/* Why a node was filtered out: one or more reasons in kube-scheduler's words. */
struct sched_verdict {
	int n;
	char reasons[SCHED_MAX_REASONS][SCHED_REASON_SIZE];
};

/* What scheduling one pod needs, computed once per pod. */
struct sched_pod {
	json_t *pod;                 /* borrowed */
	struct sched_resources req;  /* pods = 1 */
	struct sched_resources nonzero;
	json_t *ports;               /* new array of {"p","i","n"} with hostPort > 0 */
	/* Looked up once per pod rather than once per node (borrowed from pod):
	 * spec.nodeSelector, the required node affinity, spec.nodeName. */
	json_t *node_selector;
	json_t *required_affinity;
	const char *node_name;
};

/* "100m", "1", "1.5", "128Mi", "1Gi", "1e3", "2k", "-1": 0 and the value in
 * milli-units (rounded up, as Kubernetes' MilliValue), or -1 when s is not a
 * quantity or overflows. */
int sched_quantity_milli(const char *s, int64_t *out);
/* The same in whole units (rounded up): bytes, pod counts. */
int sched_quantity_value(const char *s, int64_t *out);

/* Allocatable (or else capacity) of a Node object. Missing pods count: 110. */
void sched_node_allocatable(json_t *node, struct sched_resources *out);
/* Fills p from a Pod: requests of the containers (limits when no requests),
 * the largest init container's when larger, plus overhead; the ports. */
void sched_pod_init(struct sched_pod *p, json_t *pod);
void sched_pod_free(struct sched_pod *p);

/* Each returns true when the node passes; otherwise adds reasons to v. */
bool sched_filter_unschedulable(const struct sched_node *n, const struct sched_pod *p,
				struct sched_verdict *v);
bool sched_filter_node_name(const struct sched_node *n, const struct sched_pod *p,
			    struct sched_verdict *v);
bool sched_filter_taints(const struct sched_node *n, const struct sched_pod *p,
			 struct sched_verdict *v);
bool sched_filter_affinity(const struct sched_node *n, const struct sched_pod *p,
			   struct sched_verdict *v);
bool sched_filter_ports(const struct sched_node *n, const struct sched_pod *p,
			struct sched_verdict *v);
bool sched_filter_resources(const struct sched_node *n, const struct sched_pod *p,
			    struct sched_verdict *v);
/* All of them in kube-scheduler's order, stopping at the first that fails. */
bool sched_filter(const struct sched_node *n, const struct sched_pod *p,
		  struct sched_verdict *v);

/* 0..100: the node's score for the pod (higher is better). */
int sched_score(const struct sched_node *n, const struct sched_pod *p,
		enum sched_score_mode mode);

/* Whether a toleration tolerates a taint (key, operator, value, effect). */
bool sched_tolerates(json_t *toleration, json_t *taint);

/* "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated
 * taint {k: v}." from counts: an object reason -> integer. */
void sched_fit_message(int nnodes, json_t *counts, char *buf, size_t size);

#endif
