/* defaults.h — Kubernetes defaulting of new and updated objects (the
 * SetDefaults_* functions of the built-in types, plus the
 * DefaultTolerationSeconds admission plugin for pods).
 *
 * Defaulting only fills fields that are absent; it never overwrites a value
 * the user gave. */
#ifndef CAPSTAN_ORCH_DEFAULTS_H
#define CAPSTAN_ORCH_DEFAULTS_H

#include <jansson.h>

/* resource is the plural ("pods", "deployments", ...); obj is modified in
 * place (borrowed). Unknown resources are left as they are. */
void defaults_apply(const char *resource, json_t *obj);
/* The pod spec defaults alone, for a pod spec inside a template (borrowed,
 * modified in place). */
void defaults_pod_spec(json_t *spec);

#endif
