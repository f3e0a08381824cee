/* status.c — metav1.Status answers with the real API server's wording. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/api/status.h"
#include "orchestrator/api/validate.h"

void api_qualified_resource(const struct api_resource *r, char *buf, size_t len)
{
	if (r->group[0] != '\0')
		snprintf(buf, len, "%s.%s", r->plural, r->group);
	else
		snprintf(buf, len, "%s", r->plural);
}

json_t *api_status_new(int code, const char *reason, const char *message, json_t *details)
{
	json_t *s = json_object();
	if (s == NULL) {
		json_decref(details);
		return NULL;
	}
	json_object_set_new(s, "kind", json_string("Status"));
	json_object_set_new(s, "apiVersion", json_string("v1"));
	json_object_set_new(s, "metadata", json_object());
	json_object_set_new(s, "status", json_string("Failure"));
	json_object_set_new(s, "message", json_string(message));
	if (reason != NULL && reason[0] != '\0')
		json_object_set_new(s, "reason", json_string(reason));
	if (details != NULL)
		json_object_set_new(s, "details", details);
	json_object_set_new(s, "code", json_integer(code));
	return s;
}

int api_status_code(json_t *status)
{
	json_int_t c = json_integer_value(json_object_get(status, "code"));
	return c >= 100 && c < 600 ? (int)c : 500;
}

/* details {name, group?, kind}: kind is the plural for lookups (as the real
 * server does for NotFound and AlreadyExists) or the Kind for Invalid. */
static json_t *details_new(const struct api_resource *r, const char *name, const char *kind)
{
	json_t *d = json_object();
	if (name != NULL && name[0] != '\0')
		json_object_set_new(d, "name", json_string(name));
	if (r->group[0] != '\0')
		json_object_set_new(d, "group", json_string(r->group));
	json_object_set_new(d, "kind", json_string(kind));
	return d;
}

json_t *api_status_success(const struct api_resource *r, const char *name, const char *uid)
{
	json_t *s = json_object();
	json_t *d = details_new(r, name, r->plural);
	if (uid != NULL)
		json_object_set_new(d, "uid", json_string(uid));
	json_object_set_new(s, "kind", json_string("Status"));
	json_object_set_new(s, "apiVersion", json_string("v1"));
	json_object_set_new(s, "metadata", json_object());
	json_object_set_new(s, "status", json_string("Success"));
	json_object_set_new(s, "details", d);
	return s;
}

json_t *api_status_not_found(const struct api_resource *r, const char *name)
{
	char q[128], msg[512];
	api_qualified_resource(r, q, sizeof q);
	snprintf(msg, sizeof msg, "%s \"%s\" not found", q, name);
	return api_status_new(404, "NotFound", msg, details_new(r, name, r->plural));
}

json_t *api_status_already_exists(const struct api_resource *r, const char *name)
{
	char q[128], msg[512];
	api_qualified_resource(r, q, sizeof q);
	snprintf(msg, sizeof msg, "%s \"%s\" already exists", q, name);
	return api_status_new(409, "AlreadyExists", msg, details_new(r, name, r->plural));
}

json_t *api_status_conflict(const struct api_resource *r, const char *name, const char *why)
{
	char q[128], msg[1024];
	api_qualified_resource(r, q, sizeof q);
	snprintf(msg, sizeof msg, "Operation cannot be fulfilled on %s \"%s\": %s", q, name, why);
	return api_status_new(409, "Conflict", msg, details_new(r, name, r->plural));
}

json_t *api_status_invalid(const struct api_resource *r, const char *name, json_t *causes)
{
	char *msg = validate_status_message(r->kind, name, causes);
	json_t *d = details_new(r, name, r->kind);
	json_t *s;
	json_object_set_new(d, "causes", causes);
	s = api_status_new(422, "Invalid", msg != NULL ? msg : "invalid object", d);
	free(msg);
	return s;
}

json_t *api_status_bad_request(const char *message)
{
	return api_status_new(400, "BadRequest", message, NULL);
}

json_t *api_status_printf(int code, const char *reason, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return api_status_new(code, reason, msg, NULL);
}
