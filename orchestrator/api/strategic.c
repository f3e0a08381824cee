/* strategic.c — Kubernetes strategic merge patch over jansson values, with
 * the patch strategies and merge keys of the core types written down as a
 * small schema (what the Go types' patchStrategy/patchMergeKey tags say). */
#include "orchestrator/api/strategic.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"

enum strat {
	S_PLAIN, /* maps merge, lists are replaced */
	S_MERGE, /* a list of maps merged by a key */
	S_SET,   /* a list of primitives merged as a set */
};

struct type;

struct field {
	const char *name;
	enum strat strat;
	const char *key;           /* the merge key, for S_MERGE */
	const struct type *type;   /* the type of the value (or of list elements) */
};

struct type {
	const struct field *fields; /* ends with a NULL name */
};

#define END { NULL, S_PLAIN, NULL, NULL }

static const struct field object_meta_fields[] = {
	{ "finalizers", S_SET, NULL, NULL },
	{ "ownerReferences", S_MERGE, "uid", NULL },
	END
};
static const struct type object_meta = { object_meta_fields };

static const struct field container_fields[] = {
	{ "ports", S_MERGE, "containerPort", NULL },
	{ "env", S_MERGE, "name", NULL },
	{ "volumeMounts", S_MERGE, "mountPath", NULL },
	{ "volumeDevices", S_MERGE, "devicePath", NULL },
	END
};
static const struct type container = { container_fields };

static const struct field pod_spec_fields[] = {
	{ "containers", S_MERGE, "name", &container },
	{ "initContainers", S_MERGE, "name", &container },
	{ "ephemeralContainers", S_MERGE, "name", &container },
	{ "volumes", S_MERGE, "name", NULL },
	{ "imagePullSecrets", S_MERGE, "name", NULL },
	{ "hostAliases", S_MERGE, "ip", NULL },
	{ "topologySpreadConstraints", S_MERGE, "topologyKey", NULL },
	{ "resourceClaims", S_MERGE, "name", NULL },
	{ "schedulingGates", S_MERGE, "name", NULL },
	END
};
static const struct type pod_spec = { pod_spec_fields };

static const struct field pod_template_fields[] = {
	{ "metadata", S_PLAIN, NULL, &object_meta },
	{ "spec", S_PLAIN, NULL, &pod_spec },
	END
};
static const struct type pod_template = { pod_template_fields };

static const struct field workload_spec_fields[] = {
	{ "template", S_PLAIN, NULL, &pod_template },
	END
};
static const struct type workload_spec = { workload_spec_fields };

static const struct field job_template_fields[] = {
	{ "metadata", S_PLAIN, NULL, &object_meta },
	{ "spec", S_PLAIN, NULL, &workload_spec },
	END
};
static const struct type job_template = { job_template_fields };

static const struct field cronjob_spec_fields[] = {
	{ "jobTemplate", S_PLAIN, NULL, &job_template },
	END
};
static const struct type cronjob_spec = { cronjob_spec_fields };

static const struct field service_spec_fields[] = {
	{ "ports", S_MERGE, "port", NULL },
	END
};
static const struct type service_spec = { service_spec_fields };

static const struct field node_spec_fields[] = {
	{ "podCIDRs", S_SET, NULL, NULL },
	END
};
static const struct type node_spec = { node_spec_fields };

/* Every status in the core types merges its conditions by type. */
static const struct field status_fields[] = {
	{ "conditions", S_MERGE, "type", NULL },
	{ "podIPs", S_MERGE, "ip", NULL },
	{ "hostIPs", S_MERGE, "ip", NULL },
	{ "addresses", S_MERGE, "type", NULL },
	END
};
static const struct type status = { status_fields };

#define ROOT(name, spec_type)                                                  \
	static const struct field name##_fields[] = {                          \
		{ "metadata", S_PLAIN, NULL, &object_meta },                   \
		{ "spec", S_PLAIN, NULL, spec_type },                          \
		{ "status", S_PLAIN, NULL, &status },                          \
		{ "template", S_PLAIN, NULL, &pod_template },                  \
		END                                                            \
	};                                                                     \
	static const struct type name = { name##_fields }

ROOT(pod_root, &pod_spec);
ROOT(workload_root, &workload_spec);
ROOT(cronjob_root, &cronjob_spec);
ROOT(service_root, &service_spec);
ROOT(node_root, &node_spec);
ROOT(generic_root, NULL);

static const struct type *root_type(const char *kind)
{
	static const char *const workloads[] = { "Deployment", "ReplicaSet", "DaemonSet",
						 "StatefulSet", "Job", "ReplicationController" };

	if (kind == NULL)
		return &generic_root;
	if (strcmp(kind, "Pod") == 0)
		return &pod_root;
	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
		if (strcmp(kind, workloads[i]) == 0)
			return &workload_root;
	if (strcmp(kind, "CronJob") == 0)
		return &cronjob_root;
	if (strcmp(kind, "Service") == 0)
		return &service_root;
	if (strcmp(kind, "Node") == 0)
		return &node_root;
	return &generic_root;
}

static const struct field *find_field(const struct type *t, const char *name)
{
	if (t == NULL)
		return NULL;
	for (const struct field *f = t->fields; f->name != NULL; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

#define SET_ORDER "$setElementOrder/"
#define DELETE_PRIMITIVE "$deleteFromPrimitiveList/"

static bool is_directive(const char *key)
{
	return strcmp(key, "$patch") == 0 || strcmp(key, "$retainKeys") == 0 ||
	       strncmp(key, SET_ORDER, strlen(SET_ORDER)) == 0 ||
	       strncmp(key, DELETE_PRIMITIVE, strlen(DELETE_PRIMITIVE)) == 0;
}

static int merge_into(json_t *dst, json_t *patch, const struct type *t, bool *deleted,
		      char *errmsg);

/* A value from a patch made fit to store: maps lose their directives and
 * null members (a new reference, NULL on a malformed directive). */
static json_t *clean(json_t *v, const struct type *t, char *errmsg)
{
	if (json_is_object(v)) {
		json_t *o = json_object();
		bool del = false;
		if (merge_into(o, v, t, &del, errmsg) != CAP_OK) {
			json_decref(o);
			return NULL;
		}
		return o;
	}
	if (json_is_array(v)) {
		json_t *a = json_array();
		json_t *e;
		size_t i;
		json_array_foreach(v, i, e) {
			json_t *c = clean(e, t, errmsg);
			if (c == NULL) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, c);
		}
		return a;
	}
	return json_deep_copy(v);
}

static long find_keyed(json_t *list, const char *key, json_t *want)
{
	json_t *e;
	size_t i;

	json_array_foreach(list, i, e) {
		json_t *have = json_object_get(e, key);
		if (have != NULL && json_equal(have, want))
			return (long)i;
	}
	return -1;
}

static long find_value(json_t *list, json_t *want)
{
	json_t *e;
	size_t i;

	json_array_foreach(list, i, e)
		if (json_equal(e, want))
			return (long)i;
	return -1;
}

/* A list merged by key: matching elements merge, "$patch": "delete"
 * elements are removed, new ones are appended, and a {"$patch": "replace"}
 * element makes the patch's elements the whole list. */
static int merge_keyed_list(json_t *dst, const char *name, json_t *plist, const struct field *f,
			    char *errmsg)
{
	json_t *cur = json_object_get(dst, name);
	json_t *p;
	size_t i;

	if (!json_is_array(cur)) {
		cur = json_array();
		json_object_set_new(dst, name, cur);
	}
	json_array_foreach(plist, i, p) {
		const char *d = json_string_value(json_object_get(p, "$patch"));
		if (d != NULL && strcmp(d, "replace") == 0) {
			json_array_clear(cur);
			break;
		}
	}
	json_array_foreach(plist, i, p) {
		const char *d = json_string_value(json_object_get(p, "$patch"));
		json_t *keyval;
		long idx;
		bool del = false;

		if (!json_is_object(p)) {
			json_array_append_new(cur, json_deep_copy(p));
			continue;
		}
		if (d != NULL && strcmp(d, "replace") == 0 && json_object_size(p) == 1)
			continue;
		keyval = json_object_get(p, f->key);
		if (keyval == NULL) {
			cap_errmsg_printf(errmsg, "map: %s does not contain declared merge key: %s",
					  name, f->key);
			return CAP_EINVAL;
		}
		idx = find_keyed(cur, f->key, keyval);
		if (d != NULL && strcmp(d, "delete") == 0) {
			/* Every element with this key goes, as Kubernetes does. */
			while (idx >= 0) {
				json_array_remove(cur, (size_t)idx);
				idx = find_keyed(cur, f->key, keyval);
			}
			continue;
		}
		if (idx >= 0) {
			if (merge_into(json_array_get(cur, (size_t)idx), p, f->type, &del, errmsg) !=
			    CAP_OK)
				return CAP_EINVAL;
			if (del)
				json_array_remove(cur, (size_t)idx);
		} else {
			json_t *e = json_object();
			if (merge_into(e, p, f->type, &del, errmsg) != CAP_OK) {
				json_decref(e);
				return CAP_EINVAL;
			}
			if (del)
				json_decref(e);
			else
				json_array_append_new(cur, e);
		}
	}
	return CAP_OK;
}

/* A list of primitives merged as a set: new values are appended. */
static void merge_set(json_t *dst, const char *name, json_t *plist)
{
	json_t *cur = json_object_get(dst, name);
	json_t *p;
	size_t i;

	if (!json_is_array(cur)) {
		cur = json_array();
		json_object_set_new(dst, name, cur);
	}
	json_array_foreach(plist, i, p)
		if (find_value(cur, p) < 0)
			json_array_append_new(cur, json_deep_copy(p));
}

/* $setElementOrder: the elements named in order take the positions that
 * named elements hold, in the given order; elements the order does not
 * name (added by someone else) keep their places. */
static int set_element_order(json_t *dst, const char *name, json_t *order, const struct field *f,
			     char *errmsg)
{
	json_t *cur = json_object_get(dst, name);
	json_t *sorted, *o;
	size_t i, *slots, nslots = 0;

	if (!json_is_array(order)) {
		cap_errmsg_printf(errmsg, "%s%s must be a list", SET_ORDER, name);
		return CAP_EINVAL;
	}
	if (!json_is_array(cur))
		return CAP_OK;
	slots = calloc(json_array_size(cur) + 1, sizeof(*slots));
	sorted = json_array();
	if (slots == NULL || sorted == NULL) {
		free(slots);
		json_decref(sorted);
		return CAP_ENOMEM;
	}
	json_array_foreach(order, i, o) {
		long idx;
		if (f != NULL && f->strat == S_MERGE) {
			json_t *kv = json_object_get(o, f->key);
			idx = kv == NULL ? -1 : find_keyed(cur, f->key, kv);
		} else {
			idx = find_value(cur, o);
		}
		if (idx >= 0 && find_value(sorted, json_array_get(cur, (size_t)idx)) < 0)
			json_array_append(sorted, json_array_get(cur, (size_t)idx));
	}
	for (i = 0; i < json_array_size(cur); i++)
		if (find_value(sorted, json_array_get(cur, i)) >= 0)
			slots[nslots++] = i;
	for (i = 0; i < nslots && i < json_array_size(sorted); i++)
		json_array_set(cur, slots[i], json_array_get(sorted, i));
	free(slots);
	json_decref(sorted);
	return CAP_OK;
}

/* Merges patch (an object, borrowed) into dst (an object owned by the
 * result, changed in place). *deleted is set when the patch says
 * "$patch": "delete" for this map. */
static int merge_into(json_t *dst, json_t *patch, const struct type *t, bool *deleted,
		      char *errmsg)
{
	json_t *d = json_object_get(patch, "$patch");
	json_t *retain = json_object_get(patch, "$retainKeys");
	const char *k;
	json_t *v, *tmp;

	*deleted = false;
	if (d != NULL) {
		const char *s = json_string_value(d);
		if (s == NULL || (strcmp(s, "delete") != 0 && strcmp(s, "replace") != 0 &&
				  strcmp(s, "merge") != 0)) {
			cap_errmsg_printf(errmsg, "Unknown patch type: %s",
					  s != NULL ? s : "(not a string)");
			return CAP_EINVAL;
		}
		if (strcmp(s, "delete") == 0) {
			*deleted = true;
			return CAP_OK;
		}
		if (strcmp(s, "replace") == 0)
			json_object_clear(dst);
	}
	if (retain != NULL) {
		if (!json_is_array(retain)) {
			cap_errmsg_printf(errmsg, "$retainKeys must be a list of field names");
			return CAP_EINVAL;
		}
		json_object_foreach_safe(dst, tmp, k, v) {
			json_t *name = json_string(k);
			if (find_value(retain, name) < 0)
				json_object_del(dst, k);
			json_decref(name);
		}
	}
	json_object_foreach(patch, k, v) {
		if (strncmp(k, DELETE_PRIMITIVE, strlen(DELETE_PRIMITIVE)) != 0)
			continue;
		json_t *cur = json_object_get(dst, k + strlen(DELETE_PRIMITIVE));
		json_t *e;
		size_t i;
		if (!json_is_array(v)) {
			cap_errmsg_printf(errmsg, "%s must be a list", k);
			return CAP_EINVAL;
		}
		json_array_foreach(v, i, e) {
			long idx;
			while (json_is_array(cur) && (idx = find_value(cur, e)) >= 0)
				json_array_remove(cur, (size_t)idx);
		}
	}
	json_object_foreach(patch, k, v) {
		const struct field *f;
		json_t *cur;
		bool del;

		if (is_directive(k))
			continue;
		if (strncmp(k, "$", 1) == 0) {
			cap_errmsg_printf(errmsg, "unknown directive %s", k);
			return CAP_EINVAL;
		}
		f = find_field(t, k);
		if (json_is_null(v)) {
			json_object_del(dst, k);
			continue;
		}
		cur = json_object_get(dst, k);
		if (json_is_object(v)) {
			if (!json_is_object(cur)) {
				cur = json_object();
				json_object_set_new(dst, k, cur);
			}
			if (merge_into(cur, v, f != NULL ? f->type : NULL, &del, errmsg) != CAP_OK)
				return CAP_EINVAL;
			if (del)
				json_object_del(dst, k);
		} else if (json_is_array(v) && f != NULL && f->strat == S_MERGE) {
			if (merge_keyed_list(dst, k, v, f, errmsg) != CAP_OK)
				return CAP_EINVAL;
		} else if (json_is_array(v) && f != NULL && f->strat == S_SET) {
			merge_set(dst, k, v);
		} else {
			json_t *c = clean(v, f != NULL ? f->type : NULL, errmsg);
			if (c == NULL)
				return CAP_EINVAL;
			json_object_set_new(dst, k, c);
		}
	}
	json_object_foreach(patch, k, v) {
		if (strncmp(k, SET_ORDER, strlen(SET_ORDER)) != 0)
			continue;
		const char *name = k + strlen(SET_ORDER);
		if (set_element_order(dst, name, v, find_field(t, name), errmsg) != CAP_OK)
			return CAP_EINVAL;
	}
	return CAP_OK;
}

int patch_strategic(json_t *target, json_t *patch, const char *kind, json_t **out, char *errmsg)
{
	json_t *doc;
	bool deleted = false;

	if (!json_is_object(patch)) {
		cap_errmsg_printf(errmsg, "a strategic merge patch must be a JSON object");
		return CAP_EINVAL;
	}
	/* Work on a copy: the target is borrowed, and the result must not
	 * share mutable children with it. */
	doc = json_is_object(target) ? json_deep_copy(target) : json_object();
	if (doc == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		return CAP_ENOMEM;
	}
	if (merge_into(doc, patch, root_type(kind), &deleted, errmsg) != CAP_OK) {
		json_decref(doc);
		return CAP_EINVAL;
	}
	if (deleted)
		json_object_clear(doc);
	*out = doc;
	return CAP_OK;
}
