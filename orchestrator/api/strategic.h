/* strategic.h — Kubernetes strategic merge patch
 * (application/strategic-merge-patch+json), the patch kubectl apply, set,
 * edit and rollout send.
 *
 * Like a merge patch, except that lists of the core types merge by a key
 * instead of being replaced: containers, initContainers and
 * ephemeralContainers, env, volumes, imagePullSecrets, resourceClaims and
 * schedulingGates merge by name; hostAliases, podIPs and hostIPs by ip;
 * status conditions and node addresses by type; container ports by
 * containerPort, service ports by port,
 * volumeMounts by mountPath, volumeDevices by devicePath, ownerReferences by
 * uid, topologySpreadConstraints by topologyKey, finalizers as a set of
 * primitives. Every other list (tolerations, args, command, ...) is replaced.
 * Directives: "$patch": "replace" | "merge" | "delete" (on a map or a list
 * element), "$setElementOrder/<list>", "$retainKeys", and
 * "$deleteFromPrimitiveList/<list>"; a null value deletes its key.
 *
 * kind ("Pod", "Deployment", "Service", ...) says where the pod spec lives:
 * spec for a Pod, spec.template.spec for workloads, spec.jobTemplate.spec.
 * template.spec for a CronJob. Unknown kinds still get the metadata keys and
 * the generic merge rules.
 *
 * target and patch are borrowed; *out is a new reference on CAP_OK. Errors
 * are CAP_EINVAL (a malformed directive) with a message in errmsg, a
 * caller-owned buffer of CAP_ERRMSG_SIZE bytes. */
#ifndef CAPSTAN_ORCH_STRATEGIC_H
#define CAPSTAN_ORCH_STRATEGIC_H

#include <jansson.h>

int patch_strategic(json_t *target, json_t *patch, const char *kind, json_t **out, char *errmsg);

#endif
