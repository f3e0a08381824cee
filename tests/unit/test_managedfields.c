/* test_managedfields.c — field ownership as kubectl users see it in
 * metadata.managedFields: the sets of an apply and of a write, conflicts,
 * force, and fields an applier stops applying. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/err.h"
#include "orchestrator/api/managedfields.h"
#include "orchestrator/api/patch.h"
#include "orchestrator/api/yaml.h"

static json_t *y(const char *text)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_t *v = yaml_to_json(text, strlen(text), errmsg);

	if (v == NULL)
		fail_msg("bad test YAML: %s", errmsg);
	return v;
}

static json_t *j(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);

	if (v == NULL)
		fail_msg("bad test JSON: %s", e.text);
	return v;
}

static void expect_json(json_t *got, const char *want_text)
{
	json_t *want = j(want_text);

	if (!json_equal(got, want)) {
		char *g = json_dumps(got, JSON_SORT_KEYS);
		char *w = json_dumps(want, JSON_SORT_KEYS);
		fail_msg("got  %s\nwant %s", g, w);
	}
	json_decref(want);
}

static struct managedfields_writer writer(const char *manager, const char *sub, const char *t)
{
	struct managedfields_writer w;

	managedfields_writer_init(&w, manager, NULL, "apps/v1", sub, t);
	return w;
}

/* The entry of manager doing op (NULL when it has none). */
static json_t *entry(json_t *obj, const char *manager, const char *op)
{
	json_t *e;
	size_t i;

	json_array_foreach(patch_pointer_get(obj, "/metadata/managedFields"), i, e) {
		if (strcmp(json_string_value(json_object_get(e, "manager")), manager) == 0 &&
		    strcmp(json_string_value(json_object_get(e, "operation")), op) == 0)
			return e;
	}
	return NULL;
}

#define DEPLOY                                                      \
	"apiVersion: apps/v1\n"                                     \
	"kind: Deployment\n"                                        \
	"metadata:\n"                                               \
	"  name: web\n"                                             \
	"  namespace: default\n"                                    \
	"  labels: {app: web}\n"                                    \
	"spec:\n"                                                   \
	"  replicas: 2\n"                                           \
	"  selector:\n"                                             \
	"    matchLabels: {app: web}\n"                             \
	"  template:\n"                                             \
	"    metadata:\n"                                           \
	"      labels: {app: web}\n"                                \
	"    spec:\n"                                               \
	"      containers:\n"                                       \
	"      - name: main\n"                                      \
	"        image: nginx:1.25\n"                               \
	"        ports:\n"                                          \
	"        - containerPort: 80\n"

/* An applied configuration owns its leaves, atomic values and list items
 * (keyed as Kubernetes keys them), never name, kind or apiVersion. */
static void test_set_of_applied_config(void **state)
{
	(void)state;
	json_t *obj = y(DEPLOY), *set = managedfields_set_of(obj, true);

	expect_json(set, "{\"f:metadata\": {\"f:labels\": {\"f:app\": {}}},"
			 " \"f:spec\": {\"f:replicas\": {}, \"f:selector\": {},"
			 "  \"f:template\": {\"f:metadata\": {\"f:labels\": {\"f:app\": {}}},"
			 "   \"f:spec\": {\"f:containers\": {\"k:{\\\"name\\\":\\\"main\\\"}\": {"
			 "    \".\": {}, \"f:image\": {}, \"f:name\": {},"
			 "    \"f:ports\": {\"k:{\\\"containerPort\\\":80,\\\"protocol\\\":\\\"TCP\\\"}\":"
			 "     {\".\": {}, \"f:containerPort\": {}}}}}}}}}");
	json_decref(set);
	json_decref(obj);
}

/* Finalizers are a set: each value is its own field. */
static void test_set_items_are_values(void **state)
{
	(void)state;
	json_t *obj = y("kind: ConfigMap\nmetadata:\n  finalizers: [a/b, c]\ndata: {k: v}\n");
	json_t *set = managedfields_set_of(obj, false);

	expect_json(set, "{\"f:metadata\": {\"f:finalizers\": {\"v:\\\"a/b\\\"\": {},"
			 " \"v:\\\"c\\\"\": {}}}, \"f:data\": {\"f:k\": {}}}");
	json_decref(set);
	json_decref(obj);
}

/* A create owns everything, new maps and list items marked with ".", as in
 * the entries kubectl create leaves. */
static void test_changed_on_create(void **state)
{
	(void)state;
	json_t *obj = y(DEPLOY), *set = managedfields_changed(NULL, obj);

	expect_json(set, "{\"f:metadata\": {\"f:labels\": {\".\": {}, \"f:app\": {}}},"
			 " \"f:spec\": {\"f:replicas\": {}, \"f:selector\": {},"
			 "  \"f:template\": {\"f:metadata\": {\"f:labels\": {\".\": {}, \"f:app\": {}}},"
			 "   \"f:spec\": {\"f:containers\": {\"k:{\\\"name\\\":\\\"main\\\"}\": {"
			 "    \".\": {}, \"f:image\": {}, \"f:name\": {},"
			 "    \"f:ports\": {\".\": {}, \"k:{\\\"containerPort\\\":80,\\\"protocol\\\":\\\"TCP\\\"}\":"
			 "     {\".\": {}, \"f:containerPort\": {}}}}}}}}}");
	json_decref(set);
	json_decref(obj);
}

/* A write owns only what it changed: here the image and the replicas. */
static void test_changed_between_versions(void **state)
{
	(void)state;
	json_t *a = y(DEPLOY), *b = json_deep_copy(a), *set;

	json_object_set_new(json_object_get(b, "spec"), "replicas", json_integer(5));
	json_object_set_new(patch_pointer_get(b, "/spec/template/spec/containers/0"), "image",
			    json_string("nginx:1.26"));
	json_object_set_new(json_object_get(b, "metadata"), "resourceVersion", json_string("9"));
	set = managedfields_changed(a, b);
	expect_json(set, "{\"f:spec\": {\"f:replicas\": {}, \"f:template\": {\"f:spec\": {"
			 "\"f:containers\": {\"k:{\\\"name\\\":\\\"main\\\"}\": {\"f:image\": {}}}}}}}");
	json_decref(set);
	json_decref(a);
	json_decref(b);
}

/* An update records its manager, operation, time and apiVersion, and takes
 * the fields it changed from their previous owner. */
static void test_update_takes_ownership(void **state)
{
	(void)state;
	struct managedfields_writer create = writer("kubectl-create", NULL, "2024-01-01T00:00:00Z");
	struct managedfields_writer scale = writer("kubectl", "scale", "2024-01-02T00:00:00Z");
	json_t *a = y(DEPLOY), *b, *e;

	managedfields_update(NULL, a, &create);
	b = json_deep_copy(a);
	json_object_set_new(json_object_get(b, "spec"), "replicas", json_integer(5));
	managedfields_update(a, b, &scale);
	e = entry(b, "kubectl", "Update");
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "apiVersion")), "apps/v1");
	assert_string_equal(json_string_value(json_object_get(e, "time")), "2024-01-02T00:00:00Z");
	assert_string_equal(json_string_value(json_object_get(e, "subresource")), "scale");
	assert_string_equal(json_string_value(json_object_get(e, "fieldsType")), "FieldsV1");
	expect_json(json_object_get(e, "fieldsV1"), "{\"f:spec\": {\"f:replicas\": {}}}");
	e = entry(b, "kubectl-create", "Update");
	assert_non_null(e);
	assert_null(patch_pointer_get(e, "/fieldsV1/f:spec/f:replicas"));
	assert_non_null(patch_pointer_get(e, "/fieldsV1/f:spec/f:selector"));
	/* Entries are sorted oldest first. */
	assert_string_equal(json_string_value(patch_pointer_get(b, "/metadata/managedFields/0/manager")),
			    "kubectl-create");
	json_decref(a);
	json_decref(b);
}

/* A write that changes nothing keeps the entries as they were (no new
 * time), and an empty managedFields list in the body resets them. */
static void test_update_noop_and_reset(void **state)
{
	(void)state;
	struct managedfields_writer w1 = writer("one", NULL, "2024-01-01T00:00:00Z");
	struct managedfields_writer w2 = writer("two", NULL, "2024-01-02T00:00:00Z");
	json_t *a = y(DEPLOY), *b;

	managedfields_update(NULL, a, &w1);
	b = json_deep_copy(a);
	managedfields_update(a, b, &w2);
	assert_true(json_equal(a, b));
	json_object_set_new(json_object_get(b, "metadata"), "managedFields", json_array());
	json_object_set_new(json_object_get(b, "spec"), "replicas", json_integer(7));
	managedfields_update(a, b, &w2);
	assert_int_equal(json_array_size(patch_pointer_get(b, "/metadata/managedFields")), 1);
	assert_non_null(entry(b, "two", "Update"));
	json_decref(a);
	json_decref(b);
}

/* Applying a different value of a field someone else updated is a 409
 * Conflict worded as the real server words it; the same value is not. */
static void test_apply_conflict(void **state)
{
	(void)state;
	struct managedfields_writer csa = writer("kubectl-client-side-apply", NULL,
						 "2024-01-01T00:00:00Z");
	struct managedfields_writer ssa = writer("kubectl", NULL, "2024-01-02T00:00:00Z");
	json_t *live = y(DEPLOY), *cfg = y(DEPLOY), *st = NULL, *out, *cause;

	managedfields_update(NULL, live, &csa);
	json_object_set_new(json_object_get(cfg, "spec"), "replicas", json_integer(3));
	out = managedfields_apply(live, cfg, &ssa, false, true, &st);
	assert_null(out);
	assert_int_equal(json_integer_value(json_object_get(st, "code")), 409);
	assert_string_equal(json_string_value(json_object_get(st, "reason")), "Conflict");
	assert_string_equal(json_string_value(json_object_get(st, "message")),
			    "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" "
			    "using apps/v1: .spec.replicas");
	assert_int_equal(json_array_size(patch_pointer_get(st, "/details/causes")), 1);
	cause = patch_pointer_get(st, "/details/causes/0");
	assert_string_equal(json_string_value(json_object_get(cause, "reason")),
			    "FieldManagerConflict");
	assert_string_equal(json_string_value(json_object_get(cause, "field")), ".spec.replicas");
	assert_string_equal(json_string_value(json_object_get(cause, "message")),
			    "conflict with \"kubectl-client-side-apply\" using apps/v1");
	json_decref(st);

	/* The same values: no conflict, both own them. */
	json_object_set_new(json_object_get(cfg, "spec"), "replicas", json_integer(2));
	st = NULL;
	out = managedfields_apply(live, cfg, &ssa, false, true, &st);
	assert_non_null(out);
	assert_null(st);
	assert_non_null(patch_pointer_get(entry(out, "kubectl", "Apply"),
					  "/fieldsV1/f:spec/f:replicas"));
	assert_non_null(patch_pointer_get(entry(out, "kubectl-client-side-apply", "Update"),
					  "/fieldsV1/f:spec/f:replicas"));
	json_decref(out);
	json_decref(live);
	json_decref(cfg);
}

/* Several conflicts are listed by owner, one line each; a field in a keyed
 * list item is named by its key. */
static void test_apply_conflicts_listed(void **state)
{
	(void)state;
	struct managedfields_writer up = writer("editor", NULL, "2024-01-01T00:00:00Z");
	struct managedfields_writer ssa = writer("kubectl", NULL, "2024-01-02T00:00:00Z");
	json_t *live = y(DEPLOY), *cfg = y(DEPLOY), *st = NULL;

	managedfields_update(NULL, live, &up);
	json_object_set_new(json_object_get(cfg, "spec"), "replicas", json_integer(3));
	json_object_set_new(patch_pointer_get(cfg, "/spec/template/spec/containers/0"), "image",
			    json_string("nginx:2"));
	assert_null(managedfields_apply(live, cfg, &ssa, false, true, &st));
	assert_string_equal(json_string_value(json_object_get(st, "message")),
			    "Apply failed with 2 conflicts: conflicts with \"editor\" using apps/v1:\n"
			    "- .spec.replicas\n"
			    "- .spec.template.spec.containers[name=\"main\"].image");
	json_decref(st);
	json_decref(live);
	json_decref(cfg);
}

/* force=true applies anyway and moves the conflicting fields to the
 * applier; an owner left with nothing disappears. */
static void test_apply_force_moves_ownership(void **state)
{
	(void)state;
	struct managedfields_writer ssa = writer("kubectl", NULL, "2024-01-01T00:00:00Z");
	struct managedfields_writer scale = writer("kubectl", "scale", "2024-01-02T00:00:00Z");
	json_t *live = y(DEPLOY), *cfg = y(DEPLOY), *scaled, *st = NULL, *out;

	managedfields_apply_new(live, cfg, &ssa, true);
	assert_non_null(patch_pointer_get(entry(live, "kubectl", "Apply"),
					  "/fieldsV1/f:spec/f:replicas"));
	scaled = json_deep_copy(live);
	json_object_set_new(json_object_get(scaled, "spec"), "replicas", json_integer(5));
	managedfields_update(live, scaled, &scale);
	assert_null(patch_pointer_get(entry(scaled, "kubectl", "Apply"),
				      "/fieldsV1/f:spec/f:replicas"));
	json_object_set_new(json_object_get(cfg, "spec"), "replicas", json_integer(3));
	assert_null(managedfields_apply(scaled, cfg, &ssa, false, true, &st));
	assert_string_equal(json_string_value(json_object_get(st, "message")),
			    "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource "
			    "\"scale\" using apps/v1: .spec.replicas");
	json_decref(st);
	st = NULL;
	out = managedfields_apply(scaled, cfg, &ssa, true, true, &st);
	assert_non_null(out);
	assert_int_equal(json_integer_value(patch_pointer_get(out, "/spec/replicas")), 3);
	assert_non_null(patch_pointer_get(entry(out, "kubectl", "Apply"),
					  "/fieldsV1/f:spec/f:replicas"));
	assert_null(entry(out, "kubectl", "Update"));
	assert_int_equal(json_array_size(patch_pointer_get(out, "/metadata/managedFields")), 1);
	json_decref(out);
	json_decref(scaled);
	json_decref(live);
	json_decref(cfg);
}

/* An applier that stops applying a field removes it, unless another
 * manager owns it; a list item it stops applying goes too. */
static void test_apply_prunes_what_it_dropped(void **state)
{
	(void)state;
	struct managedfields_writer ssa = writer("ssa", NULL, "2024-01-01T00:00:00Z");
	struct managedfields_writer lab = writer("labeler", NULL, "2024-01-02T00:00:00Z");
	json_t *live = y(DEPLOY), *cfg = y(DEPLOY), *next, *out, *st = NULL, *cs;

	/* First apply: an extra label, an extra container. */
	json_object_set_new(patch_pointer_get(cfg, "/metadata/labels"), "tier",
			    json_string("front"));
	json_object_set_new(patch_pointer_get(cfg, "/metadata/labels"), "team",
			    json_string("a"));
	json_array_append_new(patch_pointer_get(cfg, "/spec/template/spec/containers"),
			      y("{name: side, image: busybox}"));
	json_decref(live);
	live = json_deep_copy(cfg);
	managedfields_apply_new(live, cfg, &ssa, true);
	/* Someone else relabels "team" (taking it) and adds "extra". */
	next = json_deep_copy(live);
	json_object_set_new(patch_pointer_get(next, "/metadata/labels"), "team",
			    json_string("b"));
	json_object_set_new(patch_pointer_get(next, "/metadata/labels"), "extra",
			    json_string("x"));
	managedfields_update(live, next, &lab);
	json_decref(live);
	live = next;
	json_decref(cfg);
	cfg = y(DEPLOY);
	out = managedfields_apply(live, cfg, &ssa, false, true, &st);
	assert_non_null(out);
	/* Dropped and owned by nobody else: gone. */
	assert_null(patch_pointer_get(out, "/metadata/labels/tier"));
	cs = patch_pointer_get(out, "/spec/template/spec/containers");
	assert_int_equal(json_array_size(cs), 1);
	/* Owned by someone else, or never applied by ssa: stays. */
	assert_string_equal(json_string_value(patch_pointer_get(out, "/metadata/labels/team")), "b");
	assert_string_equal(json_string_value(patch_pointer_get(out, "/metadata/labels/extra")), "x");
	assert_string_equal(json_string_value(patch_pointer_get(out, "/metadata/labels/app")), "web");
	json_decref(out);
	json_decref(live);
	json_decref(cfg);
}

/* Applied list items merge by key into the live list; other items and
 * other fields of the same item stay. */
static void test_apply_merges_lists_by_key(void **state)
{
	(void)state;
	struct managedfields_writer ssa = writer("ssa", NULL, "2024-01-01T00:00:00Z");
	json_t *live = y(DEPLOY), *cfg, *out, *st = NULL;

	json_object_set_new(patch_pointer_get(live, "/spec/template/spec/containers/0"),
			    "imagePullPolicy", json_string("Always"));
	cfg = y("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
		"  template:\n    spec:\n      containers:\n      - {name: main, image: nginx:2}\n"
		"      - {name: side, image: busybox}\n");
	out = managedfields_apply(live, cfg, &ssa, false, true, &st);
	assert_non_null(out);
	assert_string_equal(json_string_value(patch_pointer_get(out,
		"/spec/template/spec/containers/0/image")), "nginx:2");
	assert_string_equal(json_string_value(patch_pointer_get(out,
		"/spec/template/spec/containers/0/imagePullPolicy")), "Always");
	assert_string_equal(json_string_value(patch_pointer_get(out,
		"/spec/template/spec/containers/1/name")), "side");
	assert_int_equal(json_integer_value(patch_pointer_get(out, "/spec/replicas")), 2);
	json_decref(out);
	json_decref(live);
	json_decref(cfg);
}

/* kubectl apply --server-side takes over from client-side apply without a
 * conflict on fields whose value is still the last-applied one, and keeps
 * the last-applied annotation up to date; another manager gets the
 * conflict. */
static void test_apply_takes_over_client_side_apply(void **state)
{
	(void)state;
	struct managedfields_writer csa = writer("kubectl-client-side-apply", NULL,
						 "2024-01-01T00:00:00Z");
	struct managedfields_writer ssa = writer("kubectl", NULL, "2024-01-02T00:00:00Z");
	struct managedfields_writer other = writer("other", NULL, "2024-01-02T00:00:00Z");
	json_t *live = y("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n"
			 "    kubectl.kubernetes.io/last-applied-configuration: '{\"apiVersion\":\"v1\","
			 "\"data\":{\"mode\":\"two\"},\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\"}}'\n"
			 "data: {mode: two}\n");
	json_t *cfg = y("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {mode: three}\n");
	json_t *st = NULL, *out;
	const char *last;

	managedfields_update(NULL, live, &csa);
	assert_null(managedfields_apply(live, cfg, &other, false, false, &st));
	assert_int_equal(json_integer_value(json_object_get(st, "code")), 409);
	json_decref(st);
	st = NULL;
	out = managedfields_apply(live, cfg, &ssa, false, false, &st);
	assert_non_null(out);
	assert_string_equal(json_string_value(patch_pointer_get(out, "/data/mode")), "three");
	assert_non_null(patch_pointer_get(entry(out, "kubectl", "Apply"), "/fieldsV1/f:data/f:mode"));
	assert_null(patch_pointer_get(entry(out, "kubectl-client-side-apply", "Update"),
				      "/fieldsV1/f:data/f:mode"));
	last = json_string_value(json_object_get(patch_pointer_get(out, "/metadata/annotations"),
						 "kubectl.kubernetes.io/last-applied-configuration"));
	assert_non_null(last);
	assert_non_null(strstr(last, "\"mode\":\"three\""));
	json_decref(out);
	json_decref(live);
	json_decref(cfg);
}

/* Without a fieldManager the manager is the user agent's first token, as
 * Kubernetes derives it; with neither it is "unknown". */
static void test_manager_from_user_agent(void **state)
{
	(void)state;
	struct managedfields_writer w;

	managedfields_writer_init(&w, NULL, "kubectl/v1.31.0 (linux/amd64) kubernetes/abc", "v1",
				  NULL, "t");
	assert_string_equal(w.manager, "kubectl");
	managedfields_writer_init(&w, "", "kubectl.1.27/v1.27.16", "v1", NULL, "t");
	assert_string_equal(w.manager, "kubectl.1.27");
	managedfields_writer_init(&w, "kubectl-edit", "kubectl/v1.31.0", "v1", "", "t");
	assert_string_equal(w.manager, "kubectl-edit");
	managedfields_writer_init(&w, NULL, NULL, "v1", NULL, "t");
	assert_string_equal(w.manager, "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_of_applied_config),
		cmocka_unit_test(test_set_items_are_values),
		cmocka_unit_test(test_changed_on_create),
		cmocka_unit_test(test_changed_between_versions),
		cmocka_unit_test(test_update_takes_ownership),
		cmocka_unit_test(test_update_noop_and_reset),
		cmocka_unit_test(test_apply_conflict),
		cmocka_unit_test(test_apply_conflicts_listed),
		cmocka_unit_test(test_apply_force_moves_ownership),
		cmocka_unit_test(test_apply_prunes_what_it_dropped),
		cmocka_unit_test(test_apply_merges_lists_by_key),
		cmocka_unit_test(test_apply_takes_over_client_side_apply),
		cmocka_unit_test(test_manager_from_user_agent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
