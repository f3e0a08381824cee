/* cachedobj.c — the watch cache's compact objects: text plus selector view
 * (see cachedobj.h for the contract). */
#include <stdlib.h>
#include <string.h>

#include "orchestrator/api/cachedobj.h"

struct cobj {
	int refs;
	size_t len;
	char *text;
	json_t *view;
};

/* The field paths Kubernetes' field selectors support across the core
 * kinds (metadata.name and metadata.namespace are always in the view). The
 * view copies the scalar found at each, so a selector over these reads the
 * same text from the view as from the whole object. */
static const char *const view_paths[] = {
	"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
	"spec.hostNetwork", "spec.unschedulable", "spec.signerName", "spec.clusterIP",
	"spec.type", "status.phase", "status.podIP", "status.nominatedNodeName",
	"status.replicas", "status.successful", "involvedObject.kind",
	"involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
	"involvedObject.apiVersion", "involvedObject.resourceVersion",
	"involvedObject.fieldPath", "reason", "reportingComponent", "source", "type", NULL,
};

static bool is_scalar(json_t *v)
{
	return json_is_string(v) || json_is_integer(v) || json_is_real(v) || json_is_boolean(v);
}

/* Copies the scalar at a dotted path of two segments at most from tree into
 * view, creating the intermediate object. */
static int copy_path(json_t *tree, json_t *view, const char *path)
{
	const char *dot = strchr(path, '.');
	char head[64];
	json_t *v, *sub;
	size_t n;

	if (dot == NULL) {
		v = json_object_get(tree, path);
		return is_scalar(v) ? json_object_set(view, path, v) : 0;
	}
	n = (size_t)(dot - path);
	if (n >= sizeof head)
		return 0;
	memcpy(head, path, n);
	head[n] = '\0';
	v = json_object_get(json_object_get(tree, head), dot + 1);
	if (!is_scalar(v))
		return 0;
	sub = json_object_get(view, head);
	if (sub == NULL) {
		sub = json_object();
		if (sub == NULL || json_object_set_new(view, head, sub) != 0)
			return -1;
	}
	return json_object_set(sub, dot + 1, v);
}

static json_t *make_view(json_t *tree)
{
	json_t *view = json_object(), *meta = json_object();
	json_t *src = json_object_get(tree, "metadata"), *labels;

	if (view == NULL || meta == NULL || json_object_set_new(view, "metadata", meta) != 0) {
		json_decref(view);
		return NULL;
	}
	if (copy_path(src, meta, "name") != 0 || copy_path(src, meta, "namespace") != 0)
		goto err;
	labels = json_object_get(src, "labels");
	if (labels != NULL && json_object_set_new(meta, "labels", json_deep_copy(labels)) != 0)
		goto err;
	for (int i = 0; view_paths[i] != NULL; i++)
		if (copy_path(tree, view, view_paths[i]) != 0)
			goto err;
	return view;
err:
	json_decref(view);
	return NULL;
}

struct cobj *cobj_new(json_t *tree)
{
	struct cobj *o = calloc(1, sizeof *o);

	if (o == NULL)
		return NULL;
	o->text = json_dumps(tree, JSON_COMPACT);
	o->view = make_view(tree);
	if (o->text == NULL || o->view == NULL) {
		free(o->text);
		json_decref(o->view);
		free(o);
		return NULL;
	}
	o->len = strlen(o->text);
	o->refs = 1;
	return o;
}

struct cobj *cobj_ref(struct cobj *o)
{
	if (o != NULL)
		o->refs++;
	return o;
}

void cobj_unref(struct cobj *o)
{
	if (o == NULL || --o->refs > 0)
		return;
	free(o->text);
	json_decref(o->view);
	free(o);
}

const char *cobj_text(const struct cobj *o)
{
	return o->text;
}

size_t cobj_len(const struct cobj *o)
{
	return o->len;
}

json_t *cobj_view(const struct cobj *o)
{
	return o->view;
}

json_t *cobj_tree(const struct cobj *o)
{
	return json_loadb(o->text, o->len, 0, NULL);
}

static bool in_view(const char *path)
{
	if (strcmp(path, "metadata.name") == 0 || strcmp(path, "metadata.namespace") == 0)
		return true;
	for (int i = 0; view_paths[i] != NULL; i++)
		if (strcmp(path, view_paths[i]) == 0)
			return true;
	return false;
}

bool cobj_view_covers(const struct field_selector *fs)
{
	if (fs == NULL)
		return true;
	for (size_t i = 0; i < field_selector_size(fs); i++)
		if (!in_view(field_selector_path(fs, i)))
			return false;
	return true;
}
