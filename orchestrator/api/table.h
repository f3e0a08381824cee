/* table.h — meta.k8s.io/v1 Table rendering, as the real API server answers
 * `kubectl get` for each built-in resource.
 *
 * Columns, their order, their priority (1 = only with -o wide) and the cell
 * texts follow kubectl's own printers (pkg/printers/internalversion), e.g.
 * pods: NAME READY STATUS RESTARTS AGE | IP NODE NOMINATED NODE READINESS
 * GATES; resources without a printer get NAME AGE. Ages are printed like
 * k8s' duration.HumanDuration ("5s", "3m2s", "4h", "2d"). */
#ifndef CAPSTAN_ORCH_TABLE_H
#define CAPSTAN_ORCH_TABLE_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>

/* A new Table {kind, apiVersion, metadata{resourceVersion}, columnDefinitions,
 * rows[{cells, object: PartialObjectMetadata}]} for items (an array of
 * objects, borrowed) of the resource named by its plural ("pods").
 * resource_version may be NULL (then metadata is {}). now is the wall clock
 * used for ages. NULL only on allocation failure. */
json_t *table_build(const char *resource, json_t *items, const char *resource_version, time_t now);
/* The cells of one object's row, a new array (what table_build puts in
 * rows[i].cells). */
json_t *table_row_cells(const char *resource, json_t *obj, time_t now);
/* Writes d seconds as HumanDuration does into buf ("<invalid>" for d < -1). */
void table_human_duration(long long d, char *buf, size_t len);
/* An RFC 3339 UTC timestamp ("2026-11-27T00:42:21Z") as time_t; -1 if it
 * does not parse. */
time_t table_parse_time(const char *ts);
/* The pod STATUS column as kubectl prints it ("Running", "CrashLoopBackOff",
 * "Init:0/1", "Terminating", "Completed", ...), written into buf. */
void table_pod_status(json_t *pod, char *buf, size_t len);

#endif
