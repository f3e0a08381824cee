/* status.h — metav1.Status answers, worded as the Kubernetes API server words
 * them, so kubectl prints "Error from server (NotFound): pods "x" not found".
 *
 * Every function returns a new reference the caller owns (NULL only on
 * allocation failure). The HTTP status to answer with is the "code" member
 * (api_status_code). */
#ifndef CAPSTAN_ORCH_STATUS_H
#define CAPSTAN_ORCH_STATUS_H

#include <jansson.h>

#include "orchestrator/api/resources.h"

/* {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
 * "message","reason","details"?,"code"}; details is stolen (may be NULL). */
json_t *api_status_new(int code, const char *reason, const char *message, json_t *details);
/* A Success Status (DELETE answers), details {name, group?, kind, uid?}. */
json_t *api_status_success(const struct api_resource *r, const char *name, const char *uid);
int api_status_code(json_t *status);

/* `pods "x" not found` (resource qualified by group: `deployments.apps`). */
json_t *api_status_not_found(const struct api_resource *r, const char *name);
json_t *api_status_already_exists(const struct api_resource *r, const char *name);
/* 409 Conflict: "Operation cannot be fulfilled on pods "x": <why>". */
json_t *api_status_conflict(const struct api_resource *r, const char *name, const char *why);
/* 422 Invalid with details.causes (causes stolen). */
json_t *api_status_invalid(const struct api_resource *r, const char *name, json_t *causes);
json_t *api_status_bad_request(const char *message);
/* printf-style message with the given code and reason. */
json_t *api_status_printf(int code, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The resource name qualified by its group, as messages show it:
 * "pods", "deployments.apps". Written into buf. */
void api_qualified_resource(const struct api_resource *r, char *buf, size_t len);

#endif
