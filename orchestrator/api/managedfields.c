/* managedfields.c — metadata.managedFields: FieldsV1 sets computed from
 * objects, the fields two versions of an object differ in, and server-side
 * apply with ownership, pruning and conflicts. */
#include "orchestrator/api/managedfields.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/api/status.h"

/* ---- how each field merges (what the types' list-type tags say) ---- */

enum shape {
	SH_DEFAULT, /* maps are granular, lists are owned whole */
	SH_ATOMIC,  /* owned whole, whatever the value */
	SH_KEYED,   /* a list of maps, items identified by keys */
	SH_SET,     /* a list of primitives, items identified by value */
};

struct mtype;

struct mfield {
	const char *name;
	enum shape shape;
	const char *keys[3];       /* for SH_KEYED, NULL-terminated */
	const struct mtype *type;  /* of the value (maps) or of the items (lists) */
	/* The Go type always serializes this field (a struct, or a slice
	 * without omitempty), so Kubernetes never sees it appear and never
	 * marks it with "." when an existing parent gains it. */
	bool always;
};

struct mtype {
	const struct mfield *fields; /* ends with a NULL name */
};

#define END { NULL, SH_DEFAULT, { NULL }, NULL, false }

static const struct mfield object_meta_fields[] = {
	{ "finalizers", SH_SET, { NULL }, NULL, false },
	{ "ownerReferences", SH_KEYED, { "uid", NULL }, NULL, false },
	END
};
static const struct mtype object_meta = { object_meta_fields };

static const struct mfield container_fields[] = {
	{ "ports", SH_KEYED, { "containerPort", "protocol", NULL }, NULL, false },
	{ "env", SH_KEYED, { "name", NULL }, NULL, false },
	{ "volumeMounts", SH_KEYED, { "mountPath", NULL }, NULL, false },
	{ "volumeDevices", SH_KEYED, { "devicePath", NULL }, NULL, false },
	{ "resources", SH_DEFAULT, { NULL }, NULL, true },
	END
};
static const struct mtype container = { container_fields };

static const struct mfield pod_spec_fields[] = {
	{ "containers", SH_KEYED, { "name", NULL }, &container, true },
	{ "initContainers", SH_KEYED, { "name", NULL }, &container, false },
	{ "ephemeralContainers", SH_KEYED, { "name", NULL }, &container, false },
	{ "volumes", SH_KEYED, { "name", NULL }, NULL, false },
	{ "imagePullSecrets", SH_KEYED, { "name", NULL }, NULL, false },
	{ "hostAliases", SH_KEYED, { "ip", NULL }, NULL, false },
	{ "topologySpreadConstraints", SH_KEYED, { "topologyKey", "whenUnsatisfiable", NULL },
	  NULL, false },
	{ "resourceClaims", SH_KEYED, { "name", NULL }, NULL, false },
	{ "schedulingGates", SH_KEYED, { "name", NULL }, NULL, false },
	{ "nodeSelector", SH_ATOMIC, { NULL }, NULL, false },
	END
};
static const struct mtype pod_spec = { pod_spec_fields };

static const struct mfield pod_template_fields[] = {
	{ "metadata", SH_DEFAULT, { NULL }, &object_meta, true },
	{ "spec", SH_DEFAULT, { NULL }, &pod_spec, true },
	END
};
static const struct mtype pod_template = { pod_template_fields };

static const struct mfield workload_spec_fields[] = {
	{ "selector", SH_ATOMIC, { NULL }, NULL, false },
	{ "template", SH_DEFAULT, { NULL }, &pod_template, true },
	{ "strategy", SH_DEFAULT, { NULL }, NULL, true },
	{ "updateStrategy", SH_DEFAULT, { NULL }, NULL, true },
	END
};
static const struct mtype workload_spec = { workload_spec_fields };

static const struct mfield service_spec_fields[] = {
	{ "ports", SH_KEYED, { "port", "protocol", NULL }, NULL, false },
	{ "selector", SH_ATOMIC, { NULL }, NULL, false },
	END
};
static const struct mtype service_spec = { service_spec_fields };

static const struct mfield node_spec_fields[] = {
	{ "podCIDRs", SH_SET, { NULL }, NULL, false },
	END
};
static const struct mtype node_spec = { node_spec_fields };

static const struct mfield status_fields[] = {
	{ "conditions", SH_KEYED, { "type", NULL }, NULL, false },
	{ "podIPs", SH_KEYED, { "ip", NULL }, NULL, false },
	{ "hostIPs", SH_KEYED, { "ip", NULL }, NULL, false },
	END
};
static const struct mtype status_type = { status_fields };

#define ROOT(name, spec_type)                                                  \
	static const struct mfield name##_fields[] = {                         \
		{ "metadata", SH_DEFAULT, { NULL }, &object_meta, true },      \
		{ "spec", SH_DEFAULT, { NULL }, spec_type, true },              \
		{ "status", SH_DEFAULT, { NULL }, &status_type, true },         \
		END                                                            \
	};                                                                     \
	static const struct mtype name = { name##_fields }

ROOT(pod_root, &pod_spec);
ROOT(workload_root, &workload_spec);
ROOT(service_root, &service_spec);
ROOT(node_root, &node_spec);
ROOT(generic_root, NULL);

static const struct mtype *root_type(json_t *obj)
{
	static const char *const workloads[] = { "Deployment", "ReplicaSet", "DaemonSet",
						 "StatefulSet", "Job", "ReplicationController" };
	const char *kind = json_string_value(json_object_get(obj, "kind"));

	if (kind == NULL)
		return &generic_root;
	if (strcmp(kind, "Pod") == 0)
		return &pod_root;
	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
		if (strcmp(kind, workloads[i]) == 0)
			return &workload_root;
	if (strcmp(kind, "Service") == 0)
		return &service_root;
	if (strcmp(kind, "Node") == 0)
		return &node_root;
	return &generic_root;
}

static const struct mfield *find_field(const struct mtype *t, const char *name)
{
	if (t == NULL)
		return NULL;
	for (const struct mfield *f = t->fields; f->name != NULL; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static const struct mtype *type_of(const struct mfield *f)
{
	return f != NULL ? f->type : NULL;
}

/* ---- path elements ---- */

static char *concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);
	if (s == NULL)
		abort();
	memcpy(s, a, la);
	memcpy(s + la, b, lb + 1);
	return s;
}

/* "k:{...}" naming an item of a keyed list (keys sorted, compact JSON), or
 * NULL when the item has none of the keys. A missing protocol counts as
 * TCP, the default the server gives it. Free the result. */
static char *item_key(json_t *item, const struct mfield *f)
{
	json_t *k;
	char *js, *s;

	if (!json_is_object(item))
		return NULL;
	k = json_object();
	for (int i = 0; f->keys[i] != NULL; i++) {
		json_t *v = json_object_get(item, f->keys[i]);
		if (v == NULL && strcmp(f->keys[i], "protocol") == 0)
			json_object_set_new(k, "protocol", json_string("TCP"));
		else if (v != NULL && !json_is_null(v))
			json_object_set(k, f->keys[i], v);
	}
	if (json_object_size(k) == 0) {
		json_decref(k);
		return NULL;
	}
	js = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(k);
	if (js == NULL)
		abort();
	s = concat("k:", js);
	free(js);
	return s;
}

/* "v:<json>" naming an item of a set. Free the result. */
static char *value_key(json_t *v)
{
	char *js = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY), *s;
	if (js == NULL)
		abort();
	s = concat("v:", js);
	free(js);
	return s;
}

/* Whether every item of a keyed list has a key and no two share one: else
 * the list can only be owned whole. */
static bool keyable(json_t *list, const struct mfield *f)
{
	json_t *seen = json_object(), *e;
	size_t i;
	bool ok = true;

	json_array_foreach(list, i, e) {
		char *k = item_key(e, f);
		if (k == NULL || json_object_get(seen, k) != NULL) {
			free(k);
			ok = false;
			break;
		}
		json_object_set_new(seen, k, json_true());
		free(k);
	}
	json_decref(seen);
	return ok;
}

enum vshape { V_LEAF, V_MAP, V_KEYED, V_SET };

static enum vshape shape_of(json_t *v, const struct mfield *f)
{
	if (f != NULL && f->shape == SH_ATOMIC)
		return V_LEAF;
	if (json_is_object(v))
		return V_MAP;
	if (json_is_array(v) && f != NULL && f->shape == SH_KEYED && keyable(v, f))
		return V_KEYED;
	if (json_is_array(v) && f != NULL && f->shape == SH_SET)
		return V_SET;
	return V_LEAF;
}

/* The item of list named by a "k:" or "v:" element, or -1. */
static long find_item(json_t *list, const struct mfield *f, const char *pe)
{
	json_t *e;
	size_t i;

	json_array_foreach(list, i, e) {
		char *k = strncmp(pe, "k:", 2) == 0 ? item_key(e, f) : value_key(e);
		bool same = k != NULL && strcmp(k, pe) == 0;
		free(k);
		if (same)
			return (long)i;
	}
	return -1;
}

/* ---- field sets: trees of path elements, "." marking a member ---- */

static json_t *child(json_t *node, const char *key)
{
	json_t *c = json_object_get(node, key);
	if (c == NULL) {
		c = json_object();
		json_object_set_new(node, key, c);
	}
	return c;
}

static json_t *field_child(json_t *node, const char *name)
{
	char *k = concat("f:", name);
	json_t *c = child(node, k);
	free(k);
	return c;
}

static void mark(json_t *node)
{
	json_object_set_new(node, ".", json_object());
}

static bool is_member(json_t *node)
{
	return json_object_get(node, ".") != NULL;
}

/* Drops the nodes with no member at or below them; true when node is left
 * with nothing. */
static bool set_prune(json_t *node)
{
	const char *k;
	json_t *v, *tmp;

	json_object_foreach_safe(node, tmp, k, v) {
		if (strcmp(k, ".") != 0 && set_prune(v))
			json_object_del(node, k);
	}
	return json_object_size(node) == 0;
}

static void set_union(json_t *dst, json_t *src)
{
	const char *k;
	json_t *v;

	json_object_foreach(src, k, v) {
		if (strcmp(k, ".") == 0)
			mark(dst);
		else
			set_union(child(dst, k), v);
	}
}

/* Takes the members of src out of dst; what lies below them stays. */
static void set_subtract(json_t *dst, json_t *src)
{
	const char *k;
	json_t *v;

	json_object_foreach(src, k, v) {
		json_t *c = json_object_get(dst, k);
		if (strcmp(k, ".") == 0)
			json_object_del(dst, ".");
		else if (c != NULL)
			set_subtract(c, v);
	}
}

/* Takes out of dst every member of src and everything below it: what a
 * write removed from the object nobody owns any more. */
static void set_remove_under(json_t *dst, json_t *src)
{
	const char *k;
	json_t *v;

	json_object_foreach(src, k, v) {
		json_t *c = json_object_get(dst, k);
		if (strcmp(k, ".") == 0 || c == NULL)
			continue;
		if (is_member(v))
			json_object_del(dst, k);
		else
			set_remove_under(c, v);
	}
}

static bool set_empty(json_t *node)
{
	const char *k;
	json_t *v;

	json_object_foreach(node, k, v) {
		if (strcmp(k, ".") == 0 || !set_empty(v))
			return false;
	}
	return true;
}

/* FieldsV1 (a member without children is {}) to the tree form. Returns
 * false on something that is not FieldsV1. */
static bool from_v1(json_t *v1, json_t *node)
{
	const char *k;
	json_t *v;

	if (!json_is_object(v1))
		return false;
	json_object_foreach(v1, k, v) {
		if (!json_is_object(v))
			return false;
		if (strcmp(k, ".") == 0) {
			mark(node);
		} else if (json_object_size(v) == 0) {
			mark(child(node, k));
		} else if (!from_v1(v, child(node, k))) {
			return false;
		}
	}
	return true;
}

static json_t *to_v1(json_t *node)
{
	json_t *out = json_object(), *v;
	const char *k;

	json_object_foreach(node, k, v) {
		if (strcmp(k, ".") == 0) {
			if (json_object_size(node) > 1)
				json_object_set_new(out, ".", json_object());
		} else {
			json_object_set_new(out, k, to_v1(v));
		}
	}
	return out;
}

/* ---- sets of objects ---- */

/* A copy without what the server owns: those fields are never managed. */
static json_t *stripped(json_t *obj, bool ignore_status)
{
	static const char *const meta_fields[] = { "name", "namespace", "creationTimestamp",
						   "selfLink", "uid", "clusterName", "generation",
						   "managedFields", "resourceVersion", NULL };
	json_t *c = json_is_object(obj) ? json_deep_copy(obj) : json_object();
	json_t *meta = json_object_get(c, "metadata");

	json_object_del(c, "apiVersion");
	json_object_del(c, "kind");
	if (ignore_status)
		json_object_del(c, "status");
	for (int i = 0; meta_fields[i] != NULL; i++)
		json_object_del(meta, meta_fields[i]);
	return c;
}

/* stripped() for reading only: shares everything with obj but the top
 * level and metadata, which is all stripped() removes from. Callers must
 * not change what it returns below those two levels. */
static json_t *stripped_view(json_t *obj, bool ignore_status)
{
	static const char *const meta_fields[] = { "name", "namespace", "creationTimestamp",
						   "selfLink", "uid", "clusterName", "generation",
						   "managedFields", "resourceVersion", NULL };
	json_t *c = json_is_object(obj) ? json_copy(obj) : json_object();
	json_t *meta = json_object_get(c, "metadata");

	json_object_del(c, "apiVersion");
	json_object_del(c, "kind");
	if (ignore_status)
		json_object_del(c, "status");
	if (json_is_object(meta)) {
		meta = json_copy(meta);
		json_object_set_new(c, "metadata", meta);
		for (int i = 0; meta_fields[i] != NULL; i++)
			json_object_del(meta, meta_fields[i]);
	}
	return c;
}

static void applied_value(json_t *v, const struct mfield *f, json_t *node);

static void applied_map(json_t *obj, const struct mtype *t, json_t *node)
{
	const char *k;
	json_t *v;

	json_object_foreach(obj, k, v) {
		if (!json_is_null(v))
			applied_value(v, find_field(t, k), field_child(node, k));
	}
}

/* What applying v claims: leaves and atomic values, every list item, but
 * not the maps on the way (they belong to whoever owns their fields). */
static void applied_value(json_t *v, const struct mfield *f, json_t *node)
{
	json_t *e;
	size_t i;

	switch (shape_of(v, f)) {
	case V_LEAF:
		mark(node);
		break;
	case V_MAP:
		applied_map(v, type_of(f), node);
		break;
	case V_KEYED:
		json_array_foreach(v, i, e) {
			char *k = item_key(e, f);
			json_t *c = child(node, k);
			free(k);
			mark(c);
			applied_map(e, f->type, c);
		}
		break;
	case V_SET:
		json_array_foreach(v, i, e) {
			char *k = value_key(e);
			mark(child(node, k));
			free(k);
		}
		break;
	}
}

json_t *managedfields_set_of(json_t *obj, bool ignore_status)
{
	json_t *s = stripped(obj, ignore_status), *set = json_object(), *out;

	applied_map(s, root_type(obj), set);
	json_decref(s);
	set_prune(set);
	out = to_v1(set);
	json_decref(set);
	return out;
}

/* The three sets a comparison gives. */
struct diff {
	json_t *added, *modified, *removed;
};

static void added_value(json_t *v, const struct mfield *f, json_t *node);

static void added_map(json_t *obj, const struct mtype *t, json_t *node)
{
	const char *k;
	json_t *v;

	json_object_foreach(obj, k, v) {
		if (!json_is_null(v))
			added_value(v, find_field(t, k), field_child(node, k));
	}
}

/* A value that is new: it and everything inside it. */
static void added_value(json_t *v, const struct mfield *f, json_t *node)
{
	json_t *e;
	size_t i;
	enum vshape sh = shape_of(v, f);

	mark(node);
	if (sh == V_MAP) {
		added_map(v, type_of(f), node);
	} else if (sh == V_KEYED) {
		json_array_foreach(v, i, e) {
			char *k = item_key(e, f);
			json_t *c = child(node, k);
			free(k);
			mark(c);
			added_map(e, f->type, c);
		}
	} else if (sh == V_SET) {
		json_array_foreach(v, i, e) {
			char *k = value_key(e);
			mark(child(node, k));
			free(k);
		}
	}
}

struct dnode {
	json_t *add, *mod, *rem;
};

static struct dnode dchild(struct dnode n, const char *key)
{
	struct dnode c = { child(n.add, key), child(n.mod, key), child(n.rem, key) };
	return c;
}

static void cmp_value(json_t *a, json_t *b, const struct mfield *f, struct dnode n);

/* a may be NULL: a parent that always exists but is empty. */
static void cmp_map(json_t *a, json_t *b, const struct mtype *t, struct dnode n)
{
	const char *k;
	json_t *vb, *va;

	json_object_foreach(b, k, vb) {
		const struct mfield *f = find_field(t, k);
		char *key;

		if (json_is_null(vb))
			continue;
		va = json_object_get(a, k);
		if (json_is_null(va))
			va = NULL;
		key = concat("f:", k);
		if (va != NULL || (f != NULL && f->always))
			cmp_value(va, vb, f, dchild(n, key));
		else
			added_value(vb, f, child(n.add, key));
		free(key);
	}
	json_object_foreach(a, k, va) {
		vb = json_object_get(b, k);
		if (!json_is_null(va) && (vb == NULL || json_is_null(vb)))
			mark(field_child(n.rem, k));
	}
}

static void cmp_items(json_t *a, json_t *b, const struct mfield *f, struct dnode n)
{
	bool keyed = f->shape == SH_KEYED;
	json_t *e;
	size_t i;

	json_array_foreach(b, i, e) {
		char *k = keyed ? item_key(e, f) : value_key(e);
		long j = a != NULL ? find_item(a, f, k) : -1;
		if (j < 0) {
			json_t *c = child(n.add, k);
			mark(c);
			if (keyed)
				added_map(e, f->type, c);
		} else if (keyed) {
			cmp_map(json_array_get(a, (size_t)j), e, f->type, dchild(n, k));
		}
		free(k);
	}
	json_array_foreach(a, i, e) {
		char *k = keyed ? item_key(e, f) : value_key(e);
		if (find_item(b, f, k) < 0)
			mark(child(n.rem, k));
		free(k);
	}
}

static void cmp_value(json_t *a, json_t *b, const struct mfield *f, struct dnode n)
{
	enum vshape sb = shape_of(b, f);

	if (a != NULL && (sb == V_LEAF || shape_of(a, f) != sb)) {
		if (!json_equal(a, b))
			mark(n.mod);
		return;
	}
	switch (sb) {
	case V_LEAF:
		mark(n.add);
		break;
	case V_MAP:
		cmp_map(a, b, type_of(f), n);
		break;
	case V_KEYED:
	case V_SET:
		cmp_items(a, b, f, n);
		break;
	}
}

/* before may be NULL (a create). Free with diff_free. */
static struct diff compare(json_t *before, json_t *after, bool ignore_status)
{
	json_t *a = stripped_view(before, ignore_status), *b = stripped_view(after, ignore_status);
	struct diff d = { json_object(), json_object(), json_object() };
	struct dnode n = { d.added, d.modified, d.removed };

	cmp_map(a, b, root_type(after), n);
	json_decref(a);
	json_decref(b);
	set_prune(d.added);
	set_prune(d.modified);
	set_prune(d.removed);
	return d;
}

static void diff_free(struct diff *d)
{
	json_decref(d->added);
	json_decref(d->modified);
	json_decref(d->removed);
}

/* Added and modified together: what a write set. A new reference. */
static json_t *diff_changed(const struct diff *d)
{
	json_t *c = json_deep_copy(d->added);
	set_union(c, d->modified);
	return c;
}

json_t *managedfields_changed(json_t *before, json_t *after)
{
	struct diff d = compare(before, after, false);
	json_t *c = diff_changed(&d), *out = to_v1(c);

	json_decref(c);
	diff_free(&d);
	return out;
}

/* ---- managedFields entries ---- */

struct entry {
	char *manager, *operation, *api_version, *time, *subresource;
	json_t *set;
};

struct entries {
	struct entry *v;
	size_t n;
};

static char *dup_or_empty(const char *s)
{
	return concat(s != NULL ? s : "", "");
}

static struct entry *entries_add(struct entries *es, const char *manager, const char *op,
				 const char *api_version, const char *time,
				 const char *subresource, json_t *set)
{
	struct entry *v = realloc(es->v, (es->n + 1) * sizeof(*v)), *e;
	if (v == NULL)
		abort();
	es->v = v;
	e = &es->v[es->n++];
	e->manager = dup_or_empty(manager);
	e->operation = dup_or_empty(op);
	e->api_version = dup_or_empty(api_version);
	e->time = dup_or_empty(time);
	e->subresource = dup_or_empty(subresource);
	e->set = set;
	return e;
}

static void entry_free(struct entry *e)
{
	free(e->manager);
	free(e->operation);
	free(e->api_version);
	free(e->time);
	free(e->subresource);
	json_decref(e->set);
}

static void entries_free(struct entries *es)
{
	for (size_t i = 0; i < es->n; i++)
		entry_free(&es->v[i]);
	free(es->v);
	es->v = NULL;
	es->n = 0;
}

static void entry_set_str(char **field, const char *s)
{
	free(*field);
	*field = dup_or_empty(s);
}

/* Reads metadata.managedFields; false (es left empty) when it is not a
 * list of entries Kubernetes would accept. */
static bool entries_decode(json_t *mf, struct entries *es)
{
	json_t *e;
	size_t i;

	if (!json_is_array(mf))
		return false;
	json_array_foreach(mf, i, e) {
		const char *op = json_string_value(json_object_get(e, "operation"));
		const char *ft = json_string_value(json_object_get(e, "fieldsType"));
		json_t *v1 = json_object_get(e, "fieldsV1"), *set = json_object();
		if (!json_is_object(e) || op == NULL ||
		    (strcmp(op, "Apply") != 0 && strcmp(op, "Update") != 0) ||
		    (ft != NULL && strcmp(ft, "FieldsV1") != 0) ||
		    (v1 != NULL && !from_v1(v1, set))) {
			json_decref(set);
			entries_free(es);
			return false;
		}
		set_prune(set);
		entries_add(es, json_string_value(json_object_get(e, "manager")), op,
			    json_string_value(json_object_get(e, "apiVersion")),
			    json_string_value(json_object_get(e, "time")),
			    json_string_value(json_object_get(e, "subresource")), set);
	}
	return true;
}

/* Kubernetes' order: Apply before Update, then older first, then by name. */
static int entry_cmp(const void *pa, const void *pb)
{
	const struct entry *a = pa, *b = pb;
	int c;

	if ((c = strcmp(a->operation, b->operation)) != 0)
		return c;
	if ((c = strcmp(a->time, b->time)) != 0)
		return c;
	if ((c = strcmp(a->manager, b->manager)) != 0)
		return c;
	if ((c = strcmp(a->api_version, b->api_version)) != 0)
		return c;
	return strcmp(a->subresource, b->subresource);
}

/* Writes the entries that own something into obj's metadata. */
static void entries_store(struct entries *es, json_t *obj)
{
	json_t *meta = json_object_get(obj, "metadata"), *list = json_array();

	if (es->n > 1)
		qsort(es->v, es->n, sizeof(*es->v), entry_cmp);
	for (size_t i = 0; i < es->n; i++) {
		struct entry *e = &es->v[i];
		json_t *o;
		set_prune(e->set);
		if (set_empty(e->set))
			continue;
		o = json_object();
		json_object_set_new(o, "manager", json_string(e->manager));
		json_object_set_new(o, "operation", json_string(e->operation));
		if (e->api_version[0] != '\0')
			json_object_set_new(o, "apiVersion", json_string(e->api_version));
		if (e->time[0] != '\0')
			json_object_set_new(o, "time", json_string(e->time));
		json_object_set_new(o, "fieldsType", json_string("FieldsV1"));
		json_object_set_new(o, "fieldsV1", to_v1(e->set));
		if (e->subresource[0] != '\0')
			json_object_set_new(o, "subresource", json_string(e->subresource));
		json_array_append_new(list, o);
	}
	if (!json_is_object(meta)) {
		meta = json_object();
		json_object_set_new(obj, "metadata", meta);
	}
	if (json_array_size(list) > 0) {
		json_object_set_new(meta, "managedFields", list);
	} else {
		json_object_del(meta, "managedFields");
		json_decref(list);
	}
}

/* The entry of w doing op, or NULL. An applier is the same whatever
 * apiVersion it applies with; an updater is one per apiVersion. */
static struct entry *entries_find(struct entries *es, const struct managedfields_writer *w,
				  const char *op)
{
	for (size_t i = 0; i < es->n; i++) {
		struct entry *e = &es->v[i];
		if (strcmp(e->manager, w->manager) == 0 && strcmp(e->operation, op) == 0 &&
		    strcmp(e->subresource, w->subresource) == 0 &&
		    (strcmp(op, "Apply") == 0 || strcmp(e->api_version, w->api_version) == 0))
			return e;
	}
	return NULL;
}

void managedfields_writer_init(struct managedfields_writer *w, const char *field_manager,
			       const char *user_agent, const char *api_version,
			       const char *subresource, const char *time)
{
	const char *m = field_manager;
	size_t n = 0;

	if (m == NULL || m[0] == '\0') {
		/* As Kubernetes does: the user agent's first token, printable
		 * characters only. */
		m = user_agent != NULL ? user_agent : "";
		for (size_t i = 0; m[i] != '\0' && m[i] != '/' && n < sizeof(w->manager) - 1; i++)
			if (isprint((unsigned char)m[i]))
				w->manager[n++] = m[i];
	} else {
		n = strlen(m);
		if (n > sizeof(w->manager) - 1)
			n = sizeof(w->manager) - 1;
		memcpy(w->manager, m, n);
	}
	w->manager[n] = '\0';
	if (n == 0)
		snprintf(w->manager, sizeof(w->manager), "unknown");
	snprintf(w->api_version, sizeof(w->api_version), "%s", api_version ? api_version : "");
	snprintf(w->subresource, sizeof(w->subresource), "%s", subresource ? subresource : "");
	snprintf(w->time, sizeof(w->time), "%s", time ? time : "");
}

/* Whether a client asked to reset the entries: [] or [{}]. */
static bool is_reset(json_t *mf)
{
	return json_is_array(mf) &&
	       (json_array_size(mf) == 0 ||
		(json_array_size(mf) == 1 && json_is_object(json_array_get(mf, 0)) &&
		 json_object_size(json_array_get(mf, 0)) == 0));
}

void managedfields_update(json_t *before, json_t *after, const struct managedfields_writer *w)
{
	json_t *own = json_object_get(json_object_get(after, "metadata"), "managedFields");
	json_t *changed;
	struct entries es = { NULL, 0 };
	struct diff d;

	if (!json_is_object(after))
		return;
	/* Clients that know nothing of managedFields send none (or what they
	 * read): the stored entries carry on. */
	if (!is_reset(own) && (!entries_decode(own, &es) || es.n == 0))
		entries_decode(json_object_get(json_object_get(before, "metadata"), "managedFields"),
			       &es);
	d = compare(before, after, false);
	changed = diff_changed(&d);
	for (size_t i = 0; i < es.n; i++) {
		/* A write takes what it changed from everyone, and what it
		 * removed is nobody's. */
		set_subtract(es.v[i].set, changed);
		set_remove_under(es.v[i].set, d.removed);
	}
	if (!set_empty(changed)) {
		struct entry *e = entries_find(&es, w, "Update");
		if (e == NULL)
			e = entries_add(&es, w->manager, "Update", w->api_version, w->time,
					w->subresource, json_object());
		set_union(e->set, changed);
		entry_set_str(&e->time, w->time);
	}
	entries_store(&es, after);
	entries_free(&es);
	json_decref(changed);
	diff_free(&d);
}

/* ---- apply ---- */

static void merge_value(json_t *dst, const char *k, json_t *v, const struct mfield *f);

static void merge_map(json_t *dst, json_t *src, const struct mtype *t)
{
	const char *k;
	json_t *v;

	json_object_foreach(src, k, v) {
		if (json_is_null(v))
			json_object_del(dst, k);
		else
			merge_value(dst, k, v, find_field(t, k));
	}
}

/* The applied value v of dst's member k over what dst has: maps merge,
 * keyed lists and sets merge by item, the rest is replaced. */
static void merge_value(json_t *dst, const char *k, json_t *v, const struct mfield *f)
{
	json_t *cur = json_object_get(dst, k), *e;
	enum vshape sh = shape_of(v, f);
	size_t i;

	if (sh == V_MAP && json_is_object(cur)) {
		merge_map(cur, v, type_of(f));
		return;
	}
	if ((sh == V_KEYED || sh == V_SET) && json_is_array(cur) && shape_of(cur, f) == sh) {
		json_array_foreach(v, i, e) {
			char *key = sh == V_KEYED ? item_key(e, f) : value_key(e);
			long j = find_item(cur, f, key);
			free(key);
			if (j >= 0 && sh == V_KEYED)
				merge_map(json_array_get(cur, (size_t)j), e, f->type);
			else if (j < 0)
				json_array_append_new(cur, json_deep_copy(e));
		}
		return;
	}
	json_object_set_new(dst, k, json_deep_copy(v));
}

static void prune_value(json_t *holder, const char *k, long idx, const struct mfield *f,
			json_t *cand, json_t *keep);

/* Removes from obj the members of cand (fields the applier applied last
 * time and not now) that no set in keep owns, at or below. */
static void prune_map(json_t *obj, const struct mtype *t, json_t *cand, json_t *keep)
{
	const char *k;
	json_t *c;

	json_object_foreach(cand, k, c) {
		if (strncmp(k, "f:", 2) != 0 || json_object_get(obj, k + 2) == NULL)
			continue;
		prune_value(obj, k + 2, -1, find_field(t, k + 2), c,
			    json_object_get(keep, k));
	}
}

/* The value is holder[k] (a map member) or holder[idx] (a list item,
 * typed by the list's field f). */
static void prune_value(json_t *holder, const char *k, long idx, const struct mfield *f,
			json_t *cand, json_t *keep)
{
	json_t *v = idx >= 0 ? json_array_get(holder, (size_t)idx) : json_object_get(holder, k);
	const struct mtype *t = idx >= 0 ? f->type : type_of(f);
	enum vshape sh;
	const char *ck;
	json_t *c;

	if (is_member(cand) && keep == NULL) {
		if (idx >= 0)
			json_array_remove(holder, (size_t)idx);
		else
			json_object_del(holder, k);
		return;
	}
	if (idx >= 0 || json_is_object(v)) {
		if (json_is_object(v))
			prune_map(v, t, cand, keep);
		return;
	}
	sh = shape_of(v, f);
	if (sh != V_KEYED && sh != V_SET)
		return;
	/* Each item is looked up afresh, so earlier removals do not matter. */
	json_object_foreach(cand, ck, c) {
		long j = strcmp(ck, ".") != 0 ? find_item(v, f, ck) : -1;
		if (j >= 0)
			prune_value(v, NULL, j, f, c, json_object_get(keep, ck));
	}
}

/* A field another manager owns that the apply would change. */
struct conflict {
	const struct entry *owner;
	char *path;
};

static int conflict_cmp(const void *pa, const void *pb)
{
	const struct conflict *a = pa, *b = pb;
	int c = entry_cmp(a->owner, b->owner);
	return c != 0 ? c : strcmp(a->path, b->path);
}

/* A string as JSON (Go's %q for what managers and keys hold). Free it. */
static char *quote(json_t *v)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (s == NULL)
		abort();
	return s;
}

/* ".spec", "[name=\"main\"]", "[=\"x\"]": how Kubernetes prints a path
 * element. Free the result. */
static char *pe_string(const char *pe)
{
	json_t *v, *kv;
	const char *k;
	char *out, *next;

	if (strncmp(pe, "f:", 2) == 0)
		return concat(".", pe + 2);
	if (strncmp(pe, "v:", 2) == 0) {
		next = concat("[=", pe + 2);
		out = concat(next, "]");
		free(next);
		return out;
	}
	v = json_loads(pe + 2, JSON_DECODE_ANY, NULL);
	if (strncmp(pe, "k:", 2) != 0 || !json_is_object(v)) {
		json_decref(v);
		next = concat("[", pe);
		out = concat(next, "]");
		free(next);
		return out;
	}
	/* The keys come in the order they were written: sorted. */
	out = concat("[", "");
	json_object_foreach(v, k, kv) {
		char *val = quote(kv);
		size_t len = strlen(out) + strlen(k) + strlen(val) + 3;
		next = malloc(len);
		if (next == NULL)
			abort();
		snprintf(next, len, "%s%s%s=%s", out, out[1] == '\0' ? "" : ",", k, val);
		free(out);
		free(val);
		out = next;
	}
	json_decref(v);
	next = concat(out, "]");
	free(out);
	return next;
}

/* Appends to cs the members both a and b hold and allowed (may be NULL)
 * does not, with their paths. */
static void collect_common(json_t *a, json_t *b, json_t *allowed, const char *prefix,
			   const struct entry *owner, struct conflict **cs, size_t *n)
{
	const char *k;
	json_t *v;

	json_object_foreach(a, k, v) {
		json_t *w = json_object_get(b, k), *al = json_object_get(allowed, k);
		char *pe, *path;
		if (strcmp(k, ".") == 0 || w == NULL)
			continue;
		pe = pe_string(k);
		path = concat(prefix, pe);
		free(pe);
		if (is_member(v) && is_member(w) && (al == NULL || !is_member(al))) {
			struct conflict *nc = realloc(*cs, (*n + 1) * sizeof(**cs));
			if (nc == NULL)
				abort();
			*cs = nc;
			(*cs)[*n].owner = owner;
			(*cs)[(*n)++].path = concat(path, "");
		}
		collect_common(v, w, al, path, owner, cs, n);
		free(path);
	}
}

/* How Kubernetes names a manager in a conflict: "name", then
 * ` with subresource "s"`, and ` using <apiVersion>` for an updater. */
static char *owner_string(const struct entry *e)
{
	json_t *m = json_string(e->manager);
	char *q = quote(m);
	size_t len = strlen(q) + strlen(e->subresource) + strlen(e->api_version) + 64;
	char *out = malloc(len);
	int n;

	json_decref(m);
	if (out == NULL)
		abort();
	n = snprintf(out, len, "%s", q);
	if (e->subresource[0] != '\0')
		n += snprintf(out + n, len - (size_t)n, " with subresource \"%s\"", e->subresource);
	if (strcmp(e->operation, "Update") == 0)
		snprintf(out + n, len - (size_t)n, " using %s", e->api_version);
	free(q);
	return out;
}

/* The 409 Kubernetes answers: its message and one cause per field. */
static json_t *conflict_status(struct conflict *cs, size_t n)
{
	json_t *causes = json_array();
	char *msg;
	size_t len = 128;

	qsort(cs, n, sizeof(*cs), conflict_cmp);
	for (size_t i = 0; i < n; i++)
		len += strlen(cs[i].path) + 2 * (strlen(cs[i].owner->manager) + 160);
	msg = malloc(len);
	if (msg == NULL)
		abort();
	if (n == 1) {
		char *o = owner_string(cs[0].owner);
		snprintf(msg, len, "Apply failed with 1 conflict: conflict with %s: %s", o,
			 cs[0].path);
		free(o);
	} else {
		size_t at = (size_t)snprintf(msg, len, "Apply failed with %zu conflicts: ", n);
		for (size_t i = 0; i < n; i++) {
			if (i == 0 || cs[i].owner != cs[i - 1].owner) {
				char *o = owner_string(cs[i].owner);
				at += (size_t)snprintf(msg + at, len - at, "%sconflicts with %s:",
						       i == 0 ? "" : "\n", o);
				free(o);
			}
			at += (size_t)snprintf(msg + at, len - at, "\n- %s", cs[i].path);
		}
	}
	for (size_t i = 0; i < n; i++) {
		char *o = owner_string(cs[i].owner), *m = concat("conflict with ", o);
		json_array_append_new(causes, json_pack("{s:s, s:s, s:s}", "reason",
							"FieldManagerConflict", "message", m,
							"field", cs[i].path));
		free(o);
		free(m);
	}
	json_t *st = api_status_new(409, "Conflict", msg, json_pack("{s:o}", "causes", causes));
	free(msg);
	return st;
}

void managedfields_apply_new(json_t *obj, json_t *config, const struct managedfields_writer *w,
			    bool ignore_status)
{
	struct entries es = { NULL, 0 };
	json_t *set = json_object(), *s = stripped(config, ignore_status);

	applied_map(s, root_type(config), set);
	json_decref(s);
	set_prune(set);
	entries_add(&es, w->manager, "Apply", w->api_version, w->time, w->subresource, set);
	entries_store(&es, obj);
	entries_free(&es);
}

#define LAST_APPLIED "kubectl.kubernetes.io/last-applied-configuration"

/* The fields "kubectl" may take over from client-side apply without a
 * conflict: those of the live object's last-applied configuration that
 * still hold the value it gives them. This is how Kubernetes lets users
 * move from kubectl apply to kubectl apply --server-side. NULL when there
 * is no such configuration. */
static json_t *allowed_from_last_applied(json_t *live, bool ignore_status)
{
	const char *text = json_string_value(
		json_object_get(json_object_get(json_object_get(live, "metadata"), "annotations"),
				LAST_APPLIED));
	json_t *last, *allowed, *s;
	struct diff d;

	if (text == NULL || (last = json_loads(text, 0, NULL)) == NULL)
		return NULL;
	if (!json_is_object(last)) {
		json_decref(last);
		return NULL;
	}
	allowed = json_object();
	s = stripped(last, ignore_status);
	applied_map(s, root_type(live), allowed);
	json_decref(s);
	d = compare(last, live, ignore_status);
	set_subtract(allowed, d.modified);
	set_remove_under(allowed, d.removed);
	set_prune(allowed);
	diff_free(&d);
	json_decref(last);
	return allowed;
}

/* As Kubernetes does for "kubectl": an object that has a last-applied
 * configuration gets the new applied configuration there, so that a later
 * client-side apply computes its patch from what was last applied. */
static void update_last_applied(json_t *obj, json_t *config)
{
	json_t *ann = json_object_get(json_object_get(obj, "metadata"), "annotations");
	json_t *c, *cann;
	char *text;

	if (json_object_get(ann, LAST_APPLIED) == NULL)
		return;
	c = json_deep_copy(config);
	cann = json_object_get(json_object_get(c, "metadata"), "annotations");
	json_object_del(cann, LAST_APPLIED);
	if (cann != NULL && json_object_size(cann) == 0)
		json_object_del(json_object_get(c, "metadata"), "annotations");
	text = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(c);
	/* Annotations are limited to 256 KiB in all: too large, it goes. */
	if (text == NULL || strlen(text) > 256 * 1024)
		json_object_del(ann, LAST_APPLIED);
	else
		json_object_set_new(ann, LAST_APPLIED, json_string(text));
	free(text);
}

json_t *managedfields_apply(json_t *live, json_t *config, const struct managedfields_writer *w,
			    bool force, bool ignore_status, json_t **status)
{
	struct entries es = { NULL, 0 };
	struct conflict *cs = NULL;
	size_t ncs = 0;
	json_t *cfg, *merged, *newset, *s, *changed, *allowed;
	struct entry *self;
	struct diff d;
	bool object_changed;

	if (json_object_get(json_object_get(config, "metadata"), "managedFields") != NULL) {
		*status = api_status_bad_request("metadata.managedFields must be nil");
		return NULL;
	}
	cfg = json_deep_copy(config);
	if (ignore_status)
		json_object_del(cfg, "status");
	entries_decode(json_object_get(json_object_get(live, "metadata"), "managedFields"), &es);
	merged = json_deep_copy(live);
	json_object_del(json_object_get(merged, "metadata"), "managedFields");
	merge_map(merged, cfg, root_type(live));

	newset = json_object();
	s = stripped(cfg, ignore_status);
	applied_map(s, root_type(live), newset);
	json_decref(s);
	set_prune(newset);

	self = entries_find(&es, w, "Apply");
	if (self != NULL) {
		/* What it applied before and not now goes, unless someone
		 * (itself included, with this configuration) still owns it. */
		json_t *cand = json_deep_copy(self->set), *keep = json_deep_copy(newset);
		set_subtract(cand, newset);
		set_prune(cand);
		for (size_t i = 0; i < es.n; i++)
			if (&es.v[i] != self)
				set_union(keep, es.v[i].set);
		prune_map(merged, root_type(live), cand, keep);
		json_decref(cand);
		json_decref(keep);
	}

	d = compare(live, merged, ignore_status);
	changed = diff_changed(&d);
	allowed = strcmp(w->manager, "kubectl") == 0 ? allowed_from_last_applied(live, ignore_status)
						     : NULL;
	for (size_t i = 0; i < es.n; i++)
		if (&es.v[i] != self)
			collect_common(es.v[i].set, changed, allowed, "", &es.v[i], &cs, &ncs);
	json_decref(allowed);
	if (ncs > 0 && !force) {
		*status = conflict_status(cs, ncs);
		for (size_t i = 0; i < ncs; i++)
			free(cs[i].path);
		free(cs);
		json_decref(changed);
		diff_free(&d);
		json_decref(newset);
		json_decref(merged);
		json_decref(cfg);
		entries_free(&es);
		return NULL;
	}
	for (size_t i = 0; i < ncs; i++)
		free(cs[i].path);
	free(cs);
	for (size_t i = 0; i < es.n; i++) {
		if (&es.v[i] == self)
			continue;
		/* Forced (or taken over from client-side apply): the
		 * fields move to the applier. */
		set_subtract(es.v[i].set, changed);
		set_remove_under(es.v[i].set, d.removed);
	}
	object_changed = !set_empty(changed) || !set_empty(d.removed);
	if (self == NULL) {
		self = entries_add(&es, w->manager, "Apply", w->api_version, w->time,
				   w->subresource, newset);
	} else {
		if (object_changed || !json_equal(self->set, newset))
			entry_set_str(&self->time, w->time);
		entry_set_str(&self->api_version, w->api_version);
		json_decref(self->set);
		self->set = newset;
	}
	entries_store(&es, merged);
	entries_free(&es);
	json_decref(changed);
	diff_free(&d);
	if (strcmp(w->manager, "kubectl") == 0)
		update_last_applied(merged, config);
	json_decref(cfg);
	return merged;
}
