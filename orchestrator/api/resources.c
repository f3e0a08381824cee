/* resources.c — the served resources and their discovery and OpenAPI
 * documents. */
#include <stdio.h>
#include <string.h>

#include "orchestrator/api/resources.h"

/* The Kubernetes release whose behaviour and discovery we present; kubectl's
 * dispatcher picks its binary by this minor. */
#define K8S_MAJOR "1"
#define K8S_MINOR "31"
#define K8S_GIT_VERSION "v1.31.0"

static const struct api_resource resources[] = {
	{"", "v1", "pods", "pod", "Pod", true, {"po", NULL}, true,
	 API_SUB_STATUS | API_SUB_BINDING, false, false},
	{"", "v1", "nodes", "node", "Node", false, {"no", NULL}, false, API_SUB_STATUS, false, false},
	{"", "v1", "namespaces", "namespace", "Namespace", false, {"ns", NULL}, false,
	 API_SUB_STATUS, false, false},
	{"", "v1", "services", "service", "Service", true, {"svc", NULL}, true, API_SUB_STATUS,
	 false, false},
	{"", "v1", "endpoints", "endpoints", "Endpoints", true, {"ep", NULL}, false, 0, false, true},
	{"", "v1", "events", "event", "Event", true, {"ev", NULL}, false, 0, false, true},
	{"", "v1", "configmaps", "configmap", "ConfigMap", true, {"cm", NULL}, false, 0, false,
	 false},
	{"", "v1", "secrets", "secret", "Secret", true, {NULL}, false, 0, false, false},
	{"", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, {"sa", NULL}, false,
	 0, false, false},
	{"", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", false, {"pv", NULL},
	 false, API_SUB_STATUS, false, false},
	{"", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true,
	 {"pvc", NULL}, false, API_SUB_STATUS, false, false},
	{"apps", "v1", "deployments", "deployment", "Deployment", true, {"deploy", NULL}, true,
	 API_SUB_STATUS | API_SUB_SCALE, true, false},
	{"apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, {"rs", NULL}, true,
	 API_SUB_STATUS | API_SUB_SCALE, true, false},
	{"apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, {"ds", NULL}, true,
	 API_SUB_STATUS, true, false},
	{"coordination.k8s.io", "v1", "leases", "lease", "Lease", true, {NULL}, false, 0, false,
	 true},
	{"discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true, {NULL},
	 false, 0, false, false},
};

#define NRES (sizeof resources / sizeof resources[0])

/* The groups in the order /apis lists them. */
static const char *const groups[] = {"apps", "coordination.k8s.io", "discovery.k8s.io"};
#define NGROUPS (sizeof groups / sizeof groups[0])

static const char *const all_verbs[] = {"create", "delete", "deletecollection", "get", "list",
					"patch", "update", "watch", NULL};
static const char *const sub_verbs[] = {"get", "patch", "update", NULL};
static const char *const binding_verbs[] = {"create", NULL};

const struct api_resource *api_resource_find(const char *group, const char *version,
					     const char *plural)
{
	for (size_t i = 0; i < NRES; i++) {
		const struct api_resource *r = &resources[i];
		if (strcmp(r->group, group) == 0 && strcmp(r->version, version) == 0 &&
		    strcmp(r->plural, plural) == 0)
			return r;
	}
	return NULL;
}

size_t api_resource_count(void)
{
	return NRES;
}

const struct api_resource *api_resource_at(size_t i)
{
	return i < NRES ? &resources[i] : NULL;
}

void api_resource_api_version(const struct api_resource *r, char *buf, size_t len)
{
	if (r->group[0] != '\0')
		snprintf(buf, len, "%s/%s", r->group, r->version);
	else
		snprintf(buf, len, "%s", r->version);
}

bool api_group_version_known(const char *group, const char *version)
{
	for (size_t i = 0; i < NRES; i++)
		if (strcmp(resources[i].group, group) == 0 &&
		    strcmp(resources[i].version, version) == 0)
			return true;
	return false;
}

static json_t *strings(const char *const *v)
{
	json_t *a = json_array();
	for (; *v != NULL; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

json_t *api_discovery_core(const char *server_address)
{
	json_t *o = json_object();
	json_t *cidr = json_object();
	json_object_set_new(o, "kind", json_string("APIVersions"));
	json_object_set_new(o, "versions", json_pack("[s]", "v1"));
	json_object_set_new(cidr, "clientCIDR", json_string("0.0.0.0/0"));
	json_object_set_new(cidr, "serverAddress", json_string(server_address));
	json_object_set_new(o, "serverAddressByClientCIDRs", json_pack("[o]", cidr));
	return o;
}

json_t *api_discovery_groups(void)
{
	json_t *o = json_object();
	json_t *list = json_array();
	json_object_set_new(o, "kind", json_string("APIGroupList"));
	json_object_set_new(o, "apiVersion", json_string("v1"));
	for (size_t i = 0; i < NGROUPS; i++) {
		char gv[128];
		snprintf(gv, sizeof gv, "%s/v1", groups[i]);
		json_array_append_new(list, json_pack("{s:s, s:[{s:s, s:s}], s:{s:s, s:s}}",
			"name", groups[i], "versions", "groupVersion", gv, "version", "v1",
			"preferredVersion", "groupVersion", gv, "version", "v1"));
	}
	json_object_set_new(o, "groups", list);
	return o;
}

static json_t *resource_entry(const struct api_resource *r)
{
	json_t *e = json_object();
	json_object_set_new(e, "name", json_string(r->plural));
	json_object_set_new(e, "singularName", json_string(r->singular));
	json_object_set_new(e, "namespaced", json_boolean(r->namespaced));
	json_object_set_new(e, "kind", json_string(r->kind));
	json_object_set_new(e, "verbs", strings(all_verbs));
	if (r->short_names[0] != NULL)
		json_object_set_new(e, "shortNames", strings(r->short_names));
	if (r->category_all)
		json_object_set_new(e, "categories", json_pack("[s]", "all"));
	return e;
}

static json_t *sub_entry(const struct api_resource *r, const char *sub, const char *group,
			 const char *version, const char *kind, const char *const *verbs)
{
	char name[128];
	json_t *e = json_object();
	snprintf(name, sizeof name, "%s/%s", r->plural, sub);
	json_object_set_new(e, "name", json_string(name));
	json_object_set_new(e, "singularName", json_string(""));
	json_object_set_new(e, "namespaced", json_boolean(r->namespaced));
	if (group != NULL) {
		json_object_set_new(e, "group", json_string(group));
		json_object_set_new(e, "version", json_string(version));
	}
	json_object_set_new(e, "kind", json_string(kind));
	json_object_set_new(e, "verbs", strings(verbs));
	return e;
}

json_t *api_discovery_resources(const char *group, const char *version)
{
	json_t *o, *list;
	char gv[128];
	if (!api_group_version_known(group, version))
		return NULL;
	o = json_object();
	list = json_array();
	if (group[0] != '\0')
		snprintf(gv, sizeof gv, "%s/%s", group, version);
	else
		snprintf(gv, sizeof gv, "%s", version);
	json_object_set_new(o, "kind", json_string("APIResourceList"));
	json_object_set_new(o, "apiVersion", json_string("v1"));
	json_object_set_new(o, "groupVersion", json_string(gv));
	for (size_t i = 0; i < NRES; i++) {
		const struct api_resource *r = &resources[i];
		if (strcmp(r->group, group) != 0 || strcmp(r->version, version) != 0)
			continue;
		json_array_append_new(list, resource_entry(r));
		if (r->subresources & API_SUB_BINDING)
			json_array_append_new(list, sub_entry(r, "binding", NULL, NULL, "Binding",
							      binding_verbs));
		if (r->subresources & API_SUB_SCALE)
			json_array_append_new(list, sub_entry(r, "scale", "autoscaling", "v1",
							      "Scale", sub_verbs));
		if (r->subresources & API_SUB_STATUS)
			json_array_append_new(list, sub_entry(r, "status", NULL, NULL, r->kind,
							      sub_verbs));
	}
	json_object_set_new(o, "resources", list);
	return o;
}

static json_t *kind_ref(const char *group, const char *version, const char *kind)
{
	return json_pack("{s:s, s:s, s:s}", "group", group, "version", version, "kind", kind);
}

static json_t *aggregated_resource(const struct api_resource *r)
{
	json_t *e = json_object();
	json_t *subs = json_array();
	json_object_set_new(e, "resource", json_string(r->plural));
	json_object_set_new(e, "responseKind", kind_ref(r->group, r->version, r->kind));
	json_object_set_new(e, "scope", json_string(r->namespaced ? "Namespaced" : "Cluster"));
	json_object_set_new(e, "singularResource", json_string(r->singular));
	json_object_set_new(e, "verbs", strings(all_verbs));
	if (r->short_names[0] != NULL)
		json_object_set_new(e, "shortNames", strings(r->short_names));
	if (r->category_all)
		json_object_set_new(e, "categories", json_pack("[s]", "all"));
	if (r->subresources & API_SUB_BINDING)
		json_array_append_new(subs, json_pack("{s:s, s:o, s:o}", "subresource", "binding",
			"responseKind", kind_ref("", "v1", "Binding"), "verbs",
			strings(binding_verbs)));
	if (r->subresources & API_SUB_SCALE)
		json_array_append_new(subs, json_pack("{s:s, s:o, s:o}", "subresource", "scale",
			"responseKind", kind_ref("autoscaling", "v1", "Scale"), "verbs",
			strings(sub_verbs)));
	if (r->subresources & API_SUB_STATUS)
		json_array_append_new(subs, json_pack("{s:s, s:o, s:o}", "subresource", "status",
			"responseKind", kind_ref(r->group, r->version, r->kind), "verbs",
			strings(sub_verbs)));
	if (json_array_size(subs) > 0)
		json_object_set_new(e, "subresources", subs);
	else
		json_decref(subs);
	return e;
}

static json_t *aggregated_group(const char *group)
{
	json_t *list = json_array();
	for (size_t i = 0; i < NRES; i++)
		if (strcmp(resources[i].group, group) == 0)
			json_array_append_new(list, aggregated_resource(&resources[i]));
	return json_pack("{s:{s:s, s:n}, s:[{s:s, s:o, s:s}]}", "metadata", "name", group,
			 "creationTimestamp", "versions", "version", "v1", "resources", list,
			 "freshness", "Current");
}

json_t *api_discovery_aggregated(bool core, const char *version)
{
	char av[64];
	json_t *items = json_array();
	snprintf(av, sizeof av, "apidiscovery.k8s.io/%s", version);
	if (core) {
		json_array_append_new(items, aggregated_group(""));
	} else {
		for (size_t i = 0; i < NGROUPS; i++)
			json_array_append_new(items, aggregated_group(groups[i]));
	}
	return json_pack("{s:s, s:s, s:{}, s:o}", "kind", "APIGroupDiscoveryList", "apiVersion",
			 av, "metadata", "items", items);
}

json_t *api_version_info(void)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "major", K8S_MAJOR,
			 "minor", K8S_MINOR, "gitVersion", K8S_GIT_VERSION "+capstan-" PACKAGE_VERSION,
			 "gitCommit", "0000000000000000000000000000000000000000", "gitTreeState",
			 "clean", "buildDate", "2025-01-01T00:00:00Z", "goVersion", "go1.22.0",
			 "compiler", "gc", "platform", "linux/amd64");
}

json_t *api_openapi_v3_index(void)
{
	json_t *paths = json_object();
	json_object_set_new(paths, "api/v1",
			    json_pack("{s:s}", "serverRelativeURL", "/openapi/v3/api/v1?hash=C0"));
	for (size_t i = 0; i < NGROUPS; i++) {
		char name[128], url[192];
		snprintf(name, sizeof name, "apis/%s/v1", groups[i]);
		snprintf(url, sizeof url, "/openapi/v3/%s?hash=C0", name);
		json_object_set_new(paths, name, json_pack("{s:s}", "serverRelativeURL", url));
	}
	return json_pack("{s:o}", "paths", paths);
}

/* One operation: what kubectl's OpenAPI v3 lookups read (the action, the
 * group/version/kind, and whether fieldValidation is a parameter). */
static json_t *operation(const struct api_resource *r, const char *action)
{
	json_t *params = json_pack("[{s:s, s:s, s:{s:s, s:b}}, {s:s, s:s, s:{s:s}}]",
				   "name", "fieldValidation", "in", "query", "schema", "type",
				   "string", "uniqueItems", 1, "name", "dryRun", "in", "query",
				   "schema", "type", "string");
	return json_pack("{s:o, s:{}, s:s, s:o}", "parameters", params, "responses",
			 "x-kubernetes-action", action, "x-kubernetes-group-version-kind",
			 kind_ref(r->group, r->version, r->kind));
}

json_t *api_openapi_v3_document(const char *group, const char *version)
{
	json_t *paths;
	if (!api_group_version_known(group, version))
		return NULL;
	paths = json_object();
	for (size_t i = 0; i < NRES; i++) {
		const struct api_resource *r = &resources[i];
		char base[192], coll[256], item[300];
		if (strcmp(r->group, group) != 0 || strcmp(r->version, version) != 0)
			continue;
		if (group[0] != '\0')
			snprintf(base, sizeof base, "/apis/%s/%s", group, version);
		else
			snprintf(base, sizeof base, "/api/%s", version);
		if (r->namespaced)
			snprintf(coll, sizeof coll, "%s/namespaces/{namespace}/%s", base, r->plural);
		else
			snprintf(coll, sizeof coll, "%s/%s", base, r->plural);
		snprintf(item, sizeof item, "%s/{name}", coll);
		json_object_set_new(paths, item, json_pack("{s:o, s:o}", "patch",
				    operation(r, "patch"), "put", operation(r, "put")));
		json_object_set_new(paths, coll, json_pack("{s:o}", "post", operation(r, "post")));
	}
	return json_pack("{s:s, s:{s:s, s:s}, s:o}", "openapi", "3.0.0", "info", "title",
			 "Kubernetes", "version", K8S_GIT_VERSION, "paths", paths);
}

/* Protobuf of openapi_v2.Document{swagger: "2.0"}: field 1, length 3. */
const char api_openapi_v2_pb[] = {0x0a, 0x03, '2', '.', '0'};
const size_t api_openapi_v2_pb_len = sizeof api_openapi_v2_pb;
