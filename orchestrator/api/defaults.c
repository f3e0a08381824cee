/* defaults.c — Kubernetes defaulting of the built-in resources. */
#include "orchestrator/api/defaults.h"

void defaults_apply(const char *resource, json_t *obj)
{
}

void defaults_pod_spec(json_t *spec)
{
}
