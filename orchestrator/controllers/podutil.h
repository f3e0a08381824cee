/* podutil.h — pure helpers the workload controllers share: pod readiness
 * and availability, controller ownerReferences, pods built from templates,
 * taints against tolerations, DaemonSet node eligibility, Service port
 * resolution, and the garbage collector's owner graph.
 *
 * No I/O and no state. JSON arguments are borrowed unless a function says it
 * returns a new reference. */
#ifndef CAPSTAN_PODUTIL_H
#define CAPSTAN_PODUTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The pod's Ready condition is True. */
bool podutil_ready(json_t *pod);
/* Ready for at least min_ready seconds at time now (seconds since epoch). */
bool podutil_available(json_t *pod, int64_t min_ready, int64_t now);
/* Not being deleted and not Succeeded or Failed: counts toward replicas. */
bool podutil_active(json_t *pod);

/* The ownerReference with controller: true, borrowed, or NULL. */
json_t *podutil_controller_ref(json_t *obj);
/* A new controller ownerReference to owner (apiVersion, kind, name, uid,
 * controller: true, blockOwnerDeletion: true). */
json_t *podutil_new_controller_ref(json_t *owner, const char *api_version, const char *kind);

/* A new Pod (new reference) from a template: labels, annotations and spec
 * copied, generateName "<owner>-", namespace set, and a controller
 * reference to the owner. NULL on allocation failure. */
json_t *podutil_pod_from_template(json_t *template, json_t *owner, const char *api_version,
				  const char *kind);

/* A toleration tolerates a taint (key, operator Equal/Exists, value, effect;
 * an empty key with Exists tolerates everything). */
bool podutil_tolerates(json_t *toleration, json_t *taint);
/* Every NoSchedule and NoExecute taint of the node is tolerated. */
bool podutil_taints_tolerated(json_t *tolerations, json_t *taints);

/* Adds the tolerations Kubernetes gives DaemonSet pods (not-ready and
 * unreachable NoExecute; disk/memory/PID pressure and unschedulable
 * NoSchedule) to a pod spec, unless already there. */
void podutil_add_daemon_tolerations(json_t *spec);
/* Pins a pod spec to a node with required node affinity on metadata.name
 * (matchFields), replacing any matchFields on metadata.name it had. */
int podutil_pin_to_node(json_t *spec, const char *node);
/* The node a DaemonSet pod is pinned to (nodeName, else its matchFields
 * affinity), borrowed from pod, or NULL. */
const char *podutil_pinned_node(json_t *pod);

/* A DaemonSet whose template is `template` should run a pod on the node:
 * nodeSelector and required node affinity (matchExpressions on labels,
 * matchFields on metadata.name) match, and its taints are tolerated by the
 * template's tolerations plus the DaemonSet defaults. */
bool podutil_node_should_run(json_t *template, json_t *node);

/* The port number a Service port reaches on a pod: targetPort a number, a
 * container port name, or absent (then `port`). -1 when a name is not found
 * among the pod's containers with the same protocol. */
int podutil_target_port(json_t *svc_port, json_t *pod);

/* The owner graph of the garbage collector: every object with a uid and its
 * ownerReferences. Walks are safe on cycles. */
struct gc_graph;
struct gc_graph *gc_graph_new(void);
void gc_graph_free(struct gc_graph *g);
/* obj is borrowed and must outlive the graph. Objects without a uid are
 * skipped. Returns 0, or -1 on allocation failure. */
int gc_graph_add(struct gc_graph *g, json_t *obj);
/* The object with this uid, borrowed, or NULL. */
json_t *gc_graph_get(struct gc_graph *g, const char *uid);
/* The objects that name uid as an owner (direct dependents), as a new array
 * of borrowed objects (the caller decrefs the array). */
json_t *gc_graph_dependents(struct gc_graph *g, const char *uid);
/* Every object that depends on uid, directly or through others, each once,
 * uid itself excluded, even when the references form a cycle. */
json_t *gc_graph_all_dependents(struct gc_graph *g, const char *uid);
/* How many direct dependents of uid still block its foreground deletion
 * (blockOwnerDeletion: true on their reference to it). */
size_t gc_graph_blocking(struct gc_graph *g, const char *uid);
/* True when none of obj's owners is in the graph with the referenced uid
 * (the object is garbage, if it has any owner). */
bool gc_graph_owners_gone(struct gc_graph *g, json_t *obj);

#endif
