/* resources.h — the resources the API server serves (one static table), and
 * the documents that describe them to clients: discovery (legacy and
 * aggregated), /version and the minimal OpenAPI kubectl needs.
 *
 * The table is immutable and lives for the whole program; every json_t the
 * builders return is a new reference the caller owns. */
#ifndef CAPSTAN_ORCH_RESOURCES_H
#define CAPSTAN_ORCH_RESOURCES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum {
	API_SUB_STATUS = 1u << 0,   /* <r>/status */
	API_SUB_SCALE = 1u << 1,    /* <r>/scale (autoscaling/v1 Scale) */
	API_SUB_BINDING = 1u << 2,  /* pods/binding */
};

struct api_resource {
	const char *group;          /* "" for the core group */
	const char *version;
	const char *plural;
	const char *singular;
	const char *kind;
	bool namespaced;
	const char *short_names[3]; /* NULL-terminated */
	bool category_all;          /* listed by `kubectl get all` */
	unsigned subresources;      /* API_SUB_* */
	bool tracks_generation;     /* metadata.generation grows on spec changes */
	bool create_on_update;      /* PUT of a missing object creates it */
};

/* The resource at group/version/plural, or NULL. */
const struct api_resource *api_resource_find(const char *group, const char *version,
					     const char *plural);
size_t api_resource_count(void);
const struct api_resource *api_resource_at(size_t i);
/* "v1" or "apps/v1". Written into buf. */
void api_resource_api_version(const struct api_resource *r, char *buf, size_t len);
/* Whether any resource lives in group/version. */
bool api_group_version_known(const char *group, const char *version);

/* GET /api: APIVersions; server_address is "host:port". */
json_t *api_discovery_core(const char *server_address);
/* GET /apis: APIGroupList. */
json_t *api_discovery_groups(void);
/* GET /api/v1 or /apis/<group>/<version>: APIResourceList, NULL if unknown. */
json_t *api_discovery_resources(const char *group, const char *version);
/* Aggregated discovery (APIGroupDiscoveryList) of the core group (core true)
 * or of the named groups; version is "v2" or "v2beta1". */
json_t *api_discovery_aggregated(bool core, const char *version);

/* GET /version. */
json_t *api_version_info(void);
/* GET /openapi/v3: the index of per-group-version documents. */
json_t *api_openapi_v3_index(void);
/* GET /openapi/v3/api/v1 or /openapi/v3/apis/<g>/<v>: paths with the
 * operations and parameters kubectl looks for; NULL if unknown. */
json_t *api_openapi_v3_document(const char *group, const char *version);
/* GET /openapi/v2 as protobuf: a document holding only swagger "2.0". */
extern const char api_openapi_v2_pb[];
extern const size_t api_openapi_v2_pb_len;

#endif
