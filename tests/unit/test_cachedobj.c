/* test_cachedobj.c — the watch cache's compact objects serve the same bytes
 * as the trees they replace, and their selector view answers selectors as
 * the whole object would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/err.h"
#include "orchestrator/api/cachedobj.h"

static const char *const pod_json =
	"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"web-1\","
	"\"namespace\":\"prod\",\"resourceVersion\":\"42\",\"labels\":{\"app\":\"web\","
	"\"tier\":\"front\"},\"managedFields\":[{\"manager\":\"kubectl\"}]},"
	"\"spec\":{\"nodeName\":\"n1\",\"restartPolicy\":\"Always\",\"hostNetwork\":false,"
	"\"containers\":[{\"name\":\"c\",\"image\":\"nginx\",\"ports\":[{\"containerPort\":80}]}]},"
	"\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.7\",\"conditions\":"
	"[{\"type\":\"Ready\",\"status\":\"True\"}]},\"x\":1.5}";

static struct field_selector *fsel(const char *text)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	struct field_selector *s = NULL;

	if (field_selector_parse(text, &s, errmsg) != CAP_OK)
		fail_msg("parse %s: %s", text, errmsg);
	return s;
}

/* The text is exactly what serializing the tree compactly gives. */
static void test_text_is_the_compact_dump(void **state)
{
	json_t *tree = json_loads(pod_json, 0, NULL);
	struct cobj *o = cobj_new(tree);
	char *want = json_dumps(tree, JSON_COMPACT);

	(void)state;
	assert_non_null(o);
	assert_string_equal(cobj_text(o), want);
	assert_int_equal(cobj_len(o), strlen(want));
	free(want);
	json_decref(tree);
	cobj_unref(o);
}

/* Parsing the text back gives an equal tree. */
static void test_tree_round_trips(void **state)
{
	json_t *tree = json_loads(pod_json, 0, NULL);
	struct cobj *o = cobj_new(tree);
	json_t *back = cobj_tree(o);

	(void)state;
	assert_true(json_equal(tree, back));
	json_decref(back);
	json_decref(tree);
	cobj_unref(o);
}

/* The view keeps name, namespace, labels and selectable scalars only. */
static void test_view_holds_what_selectors_read(void **state)
{
	json_t *tree = json_loads(pod_json, 0, NULL);
	struct cobj *o = cobj_new(tree);
	json_t *v = cobj_view(o), *meta = json_object_get(v, "metadata");

	(void)state;
	assert_string_equal(json_string_value(json_object_get(meta, "name")), "web-1");
	assert_string_equal(json_string_value(json_object_get(meta, "namespace")), "prod");
	assert_true(json_equal(json_object_get(meta, "labels"),
			       json_object_get(json_object_get(tree, "metadata"), "labels")));
	assert_null(json_object_get(meta, "managedFields"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(v, "spec"),
							      "nodeName")), "n1");
	assert_null(json_object_get(json_object_get(v, "spec"), "containers"));
	assert_null(json_object_get(json_object_get(v, "status"), "conditions"));
	json_decref(tree);
	cobj_unref(o);
}

/* A selector over covered paths reads the same from the view as from the
 * whole object, for matches and for misses. */
static void test_view_matches_like_the_object(void **state)
{
	static const char *const sels[] = {
		"spec.nodeName=n1", "spec.nodeName!=n1", "status.phase=Running,metadata.name=web-1",
		"spec.hostNetwork=false", "status.podIP=10.0.0.8", "metadata.namespace=prod",
		"spec.schedulerName=", "type=", NULL,
	};
	json_t *tree = json_loads(pod_json, 0, NULL);
	struct cobj *o = cobj_new(tree);

	(void)state;
	for (int i = 0; sels[i] != NULL; i++) {
		struct field_selector *s = fsel(sels[i]);
		assert_true(cobj_view_covers(s));
		assert_int_equal(field_selector_matches(s, cobj_view(o)),
				 field_selector_matches(s, tree));
		field_selector_free(s);
	}
	json_decref(tree);
	cobj_unref(o);
}

/* Paths outside the view are reported, so callers match the whole object. */
static void test_other_paths_are_not_covered(void **state)
{
	struct field_selector *s = fsel("spec.nodeName=n1,x=1.5");

	(void)state;
	assert_false(cobj_view_covers(s));
	assert_true(cobj_view_covers(NULL));
	field_selector_free(s);
}

/* References: the object lives until the last one is dropped. */
static void test_references(void **state)
{
	json_t *tree = json_loads("{\"metadata\":{\"name\":\"a\"}}", 0, NULL);
	struct cobj *o = cobj_new(tree);

	(void)state;
	json_decref(tree);
	assert_ptr_equal(cobj_ref(o), o);
	cobj_unref(o);
	assert_string_equal(cobj_text(o), "{\"metadata\":{\"name\":\"a\"}}");
	cobj_unref(o);
	cobj_unref(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_is_the_compact_dump),
		cmocka_unit_test(test_tree_round_trips),
		cmocka_unit_test(test_view_holds_what_selectors_read),
		cmocka_unit_test(test_view_matches_like_the_object),
		cmocka_unit_test(test_other_paths_are_not_covered),
		cmocka_unit_test(test_references),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
