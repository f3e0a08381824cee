/* test_patch.c — merge patches (RFC 7386) and JSON patches (RFC 6902) give
 * the documents the RFCs' own examples give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/err.h"
#include "orchestrator/api/patch.h"

static json_t *j(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &e);

	if (v == NULL)
		fail_msg("bad test JSON %s: %s", text, e.text);
	return v;
}

static void expect(json_t *got, const char *want_text)
{
	json_t *want = j(want_text);

	if (!json_equal(got, want)) {
		char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_SORT_KEYS);
		fail_msg("got %s, want %s", g, want_text);
	}
	json_decref(want);
}

static void merge_case(const char *target, const char *patch, const char *want)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_t *t = j(target), *p = j(patch), *out = NULL;
	json_t *before = json_deep_copy(t);

	assert_int_equal(patch_merge(t, p, &out, errmsg), CAP_OK);
	expect(out, want);
	/* The target is borrowed: it must come back unchanged. */
	assert_true(json_equal(t, before));
	json_decref(t);
	json_decref(p);
	json_decref(out);
	json_decref(before);
}

/* Every example of RFC 7386 appendix A. */
static void test_merge_rfc7386_appendix_a(void **state)
{
	(void)state;
	merge_case("{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
	merge_case("{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}");
	merge_case("{\"a\":\"b\"}", "{\"a\":null}", "{}");
	merge_case("{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}");
	merge_case("{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
	merge_case("{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}");
	merge_case("{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}");
	merge_case("{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}");
	merge_case("[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]");
	merge_case("{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]");
	merge_case("{\"a\":\"foo\"}", "null", "null");
	merge_case("{\"a\":\"foo\"}", "\"bar\"", "\"bar\"");
	merge_case("{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}");
	merge_case("[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}");
	merge_case("{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}");
}

/* kubectl scale and kubectl label send merge patches like these. */
static void test_merge_kubectl(void **state)
{
	(void)state;
	merge_case("{\"metadata\":{\"name\":\"web\",\"labels\":{\"app\":\"web\",\"old\":\"x\"}},"
		   "\"spec\":{\"replicas\":3,\"template\":{}}}",
		   "{\"metadata\":{\"labels\":{\"old\":null,\"tier\":\"fe\"}},\"spec\":{\"replicas\":5}}",
		   "{\"metadata\":{\"name\":\"web\",\"labels\":{\"app\":\"web\",\"tier\":\"fe\"}},"
		   "\"spec\":{\"replicas\":5,\"template\":{}}}");
}

static void json_patch_ok(const char *target, const char *ops, const char *want)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_t *t = j(target), *p = j(ops), *out = NULL;

	if (patch_json(t, p, &out, errmsg) != CAP_OK)
		fail_msg("patch %s failed: %s", ops, errmsg);
	expect(out, want);
	json_decref(t);
	json_decref(p);
	json_decref(out);
}

static void json_patch_fails(const char *target, const char *ops)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_t *t = j(target), *p = j(ops), *out = NULL;
	json_t *before = json_deep_copy(t);

	assert_int_equal(patch_json(t, p, &out, errmsg), CAP_EINVAL);
	assert_null(out);
	assert_true(errmsg[0] != '\0');
	assert_true(json_equal(t, before));
	json_decref(t);
	json_decref(p);
	json_decref(before);
}

/* RFC 6902 appendix A, examples A.1 to A.16 (A.13 is a JSON parser matter). */
static void test_json_patch_rfc6902_appendix_a(void **state)
{
	(void)state;
	/* A.1 adding an object member */
	json_patch_ok("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\"}]",
		      "{\"baz\":\"qux\",\"foo\":\"bar\"}");
	/* A.2 adding an array element */
	json_patch_ok("{\"foo\":[\"bar\",\"baz\"]}",
		      "[{\"op\":\"add\",\"path\":\"/foo/1\",\"value\":\"qux\"}]",
		      "{\"foo\":[\"bar\",\"qux\",\"baz\"]}");
	/* A.3 removing an object member */
	json_patch_ok("{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"remove\",\"path\":\"/baz\"}]",
		      "{\"foo\":\"bar\"}");
	/* A.4 removing an array element */
	json_patch_ok("{\"foo\":[\"bar\",\"qux\",\"baz\"]}", "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]",
		      "{\"foo\":[\"bar\",\"baz\"]}");
	/* A.5 replacing a value */
	json_patch_ok("{\"baz\":\"qux\",\"foo\":\"bar\"}",
		      "[{\"op\":\"replace\",\"path\":\"/baz\",\"value\":\"boo\"}]",
		      "{\"baz\":\"boo\",\"foo\":\"bar\"}");
	/* A.6 moving a value */
	json_patch_ok("{\"foo\":{\"bar\":\"baz\",\"waldo\":\"fred\"},\"qux\":{\"corge\":\"grault\"}}",
		      "[{\"op\":\"move\",\"from\":\"/foo/waldo\",\"path\":\"/qux/thud\"}]",
		      "{\"foo\":{\"bar\":\"baz\"},\"qux\":{\"corge\":\"grault\",\"thud\":\"fred\"}}");
	/* A.7 moving an array element */
	json_patch_ok("{\"foo\":[\"all\",\"grass\",\"cows\",\"eat\"]}",
		      "[{\"op\":\"move\",\"from\":\"/foo/1\",\"path\":\"/foo/3\"}]",
		      "{\"foo\":[\"all\",\"cows\",\"eat\",\"grass\"]}");
	/* A.8 testing a value: success */
	json_patch_ok("{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}",
		      "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"qux\"},"
		      "{\"op\":\"test\",\"path\":\"/foo/1\",\"value\":2}]",
		      "{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}");
	/* A.9 testing a value: error */
	json_patch_fails("{\"baz\":\"qux\"}", "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"bar\"}]");
	/* A.10 adding a nested member object */
	json_patch_ok("{\"foo\":\"bar\"}",
		      "[{\"op\":\"add\",\"path\":\"/child\",\"value\":{\"grandchild\":{}}}]",
		      "{\"foo\":\"bar\",\"child\":{\"grandchild\":{}}}");
	/* A.11 ignoring unrecognized elements */
	json_patch_ok("{\"foo\":\"bar\"}",
		      "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\",\"xyz\":123}]",
		      "{\"foo\":\"bar\",\"baz\":\"qux\"}");
	/* A.12 adding to a nonexistent target */
	json_patch_fails("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz/bat\",\"value\":\"qux\"}]");
	/* A.14 ~ escape ordering */
	json_patch_ok("{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":10}]",
		      "{\"/\":9,\"~1\":10}");
	/* A.15 comparing strings and numbers */
	json_patch_fails("{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":\"10\"}]");
	/* A.16 adding an array value */
	json_patch_ok("{\"foo\":[\"bar\"]}",
		      "[{\"op\":\"add\",\"path\":\"/foo/-\",\"value\":[\"abc\",\"def\"]}]",
		      "{\"foo\":[\"bar\",[\"abc\",\"def\"]]}");
}

/* Pointer escapes, copies, root replacement and RFC 6902's error cases. */
static void test_json_patch_edges(void **state)
{
	(void)state;
	json_patch_ok("{\"a/b\":1,\"m~n\":2}",
		      "[{\"op\":\"replace\",\"path\":\"/a~1b\",\"value\":3},"
		      "{\"op\":\"remove\",\"path\":\"/m~0n\"}]", "{\"a/b\":3}");
	json_patch_ok("{\"a\":{\"x\":[1]}}", "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/b\"},"
					    "{\"op\":\"add\",\"path\":\"/b/x/-\",\"value\":2}]",
		      "{\"a\":{\"x\":[1]},\"b\":{\"x\":[1,2]}}");
	json_patch_ok("{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"\",\"value\":[1]}]", "[1]");
	json_patch_ok("{\"a\":null}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":null}]",
		      "{\"a\":null}");
	/* 1 and 1.0 are the same number */
	json_patch_ok("{\"a\":1}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":1.0}]", "{\"a\":1}");
	json_patch_fails("{\"a\":[1]}", "[{\"op\":\"add\",\"path\":\"/a/2\",\"value\":0}]");
	json_patch_fails("{\"a\":[1]}", "[{\"op\":\"add\",\"path\":\"/a/01\",\"value\":0}]");
	json_patch_fails("{\"a\":[1]}", "[{\"op\":\"replace\",\"path\":\"/b\",\"value\":0}]");
	json_patch_fails("{\"a\":[1]}", "[{\"op\":\"remove\",\"path\":\"/a/1\"}]");
	json_patch_fails("{\"a\":{}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/b\"}]");
	json_patch_fails("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"a\",\"value\":0}]");
	json_patch_fails("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/~2\",\"value\":0}]");
	json_patch_fails("{\"a\":1}", "[{\"op\":\"frobnicate\",\"path\":\"/a\"}]");
	json_patch_fails("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/b\"}]");
	json_patch_fails("{\"a\":1}", "{\"op\":\"add\",\"path\":\"/b\",\"value\":1}");
	/* A failure after a successful op leaves the target untouched. */
	json_patch_fails("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/b\",\"value\":2},"
				      "{\"op\":\"test\",\"path\":\"/a\",\"value\":2}]");
}

/* kubectl rollout undo replaces the template and annotations in one patch. */
static void test_json_patch_rollout_undo(void **state)
{
	(void)state;
	json_patch_ok("{\"metadata\":{\"annotations\":{\"deployment.kubernetes.io/revision\":\"2\"}},"
		      "\"spec\":{\"replicas\":3,\"template\":{\"spec\":{\"containers\":[{\"name\":\"web\","
		      "\"image\":\"nginx:2\"}]}}}}",
		      "[{\"op\":\"replace\",\"path\":\"/spec/template\",\"value\":{\"spec\":{\"containers\":"
		      "[{\"name\":\"web\",\"image\":\"nginx:1\"}]}}},"
		      "{\"op\":\"replace\",\"path\":\"/metadata/annotations\",\"value\":"
		      "{\"deployment.kubernetes.io/revision\":\"2\",\"kubernetes.io/change-cause\":\"x\"}}]",
		      "{\"metadata\":{\"annotations\":{\"deployment.kubernetes.io/revision\":\"2\","
		      "\"kubernetes.io/change-cause\":\"x\"}},\"spec\":{\"replicas\":3,\"template\":"
		      "{\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"nginx:1\"}]}}}}");
}

/* Pointer lookups used by callers to read single fields. */
static void test_pointer_get(void **state)
{
	(void)state;
	json_t *doc = j("{\"foo\":[\"bar\",\"baz\"],\"\":0,\"a/b\":1,\"m~n\":8,\" \":7}");

	assert_ptr_equal(patch_pointer_get(doc, ""), doc);
	assert_string_equal(json_string_value(patch_pointer_get(doc, "/foo/0")), "bar");
	assert_int_equal(json_integer_value(patch_pointer_get(doc, "/")), 0);
	assert_int_equal(json_integer_value(patch_pointer_get(doc, "/a~1b")), 1);
	assert_int_equal(json_integer_value(patch_pointer_get(doc, "/m~0n")), 8);
	assert_int_equal(json_integer_value(patch_pointer_get(doc, "/ ")), 7);
	assert_null(patch_pointer_get(doc, "/foo/2"));
	assert_null(patch_pointer_get(doc, "foo"));
	json_decref(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_rfc7386_appendix_a),
		cmocka_unit_test(test_merge_kubectl),
		cmocka_unit_test(test_json_patch_rfc6902_appendix_a),
		cmocka_unit_test(test_json_patch_edges),
		cmocka_unit_test(test_json_patch_rollout_undo),
		cmocka_unit_test(test_pointer_get),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
