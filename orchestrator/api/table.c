/* table.c — meta.k8s.io/v1 Table rendering for kubectl get. */
#include "orchestrator/api/table.h"

json_t *table_build(const char *resource, json_t *items, const char *resource_version, time_t now)
{
	return NULL;
}
