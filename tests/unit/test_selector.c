/* test_selector.c — label selectors (query syntax and LabelSelector objects)
 * and field selectors pick the objects Kubernetes would pick. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/err.h"
#include "orchestrator/api/selector.h"

static struct label_selector *parse(const char *text)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	struct label_selector *s = NULL;

	if (label_selector_parse(text, &s, errmsg) != CAP_OK)
		fail_msg("parse %s: %s", text, errmsg);
	return s;
}

static bool matches(const char *sel, const char *labels_json)
{
	struct label_selector *s = parse(sel);
	json_t *labels = labels_json == NULL ? NULL : json_loads(labels_json, 0, NULL);
	bool m = label_selector_matches(s, labels);

	json_decref(labels);
	label_selector_free(s);
	return m;
}

/* Equality-based requirements from the Labels and Selectors docs page. */
static void test_equality(void **state)
{
	(void)state;
	const char *prod = "{\"environment\":\"production\",\"tier\":\"frontend\"}";
	const char *dev = "{\"environment\":\"dev\",\"tier\":\"frontend\"}";

	assert_true(matches("environment = production", prod));
	assert_false(matches("environment = production", dev));
	assert_true(matches("environment==production,tier=frontend", prod));
	assert_false(matches("environment=production,tier!=frontend", prod));
	assert_true(matches("tier != frontend", "{\"environment\":\"qa\"}"));
	assert_false(matches("tier=frontend", NULL));
}

/* Set-based requirements (in, notin, exists, !exists) from the docs page. */
static void test_set_based(void **state)
{
	(void)state;
	assert_true(matches("environment in (production, qa)", "{\"environment\":\"qa\"}"));
	assert_false(matches("environment in (production, qa)", "{\"environment\":\"dev\"}"));
	assert_false(matches("environment in (production, qa)", "{}"));
	assert_true(matches("tier notin (frontend,backend)", "{\"tier\":\"cache\"}"));
	assert_true(matches("tier notin (frontend,backend)", "{}"));
	assert_false(matches("tier notin (frontend,backend)", "{\"tier\":\"backend\"}"));
	assert_true(matches("partition", "{\"partition\":\"\"}"));
	assert_false(matches("partition", "{\"p\":\"x\"}"));
	assert_true(matches("!partition", "{\"p\":\"x\"}"));
	assert_false(matches("!partition", "{\"partition\":\"a\"}"));
	assert_true(matches("partition in (customerA, customerB),environment!=qa",
			    "{\"partition\":\"customerB\",\"environment\":\"prod\"}"));
	assert_true(matches("a=", "{\"a\":\"\"}"));
	assert_false(matches("a=", "{\"a\":\"x\"}"));
}

/* An empty selector selects everything; kubectl sends "" for no -l. */
static void test_empty(void **state)
{
	(void)state;
	struct label_selector *s = parse("");

	assert_true(label_selector_empty(s));
	assert_true(label_selector_matches(s, NULL));
	label_selector_free(s);
	s = parse("a");
	assert_false(label_selector_empty(s));
	label_selector_free(s);
}

/* Malformed selectors and invalid keys or values are refused with a message. */
static void test_parse_errors(void **state)
{
	(void)state;
	const char *bad[] = { "a in b", "a in (b", "=b", "a=b c", "a,", "a b", "bad key!=x",
			      "a=b*", "a in ()", "-a=b", "a/b/c=d", NULL };
	for (int i = 0; bad[i] != NULL; i++) {
		char errmsg[CAP_ERRMSG_SIZE] = "";
		struct label_selector *s = NULL;
		if (label_selector_parse(bad[i], &s, errmsg) != CAP_EINVAL)
			fail_msg("accepted %s", bad[i]);
		assert_true(errmsg[0] != '\0');
	}
}

/* Printing gives the canonical form (sorted keys and values) kubectl shows. */
static void test_string(void **state)
{
	(void)state;
	struct label_selector *s = parse("tier notin (z, b),app=web,!x,y,k in (v)");
	char *t = label_selector_string(s);

	assert_string_equal(t, "app=web,k in (v),tier notin (b,z),!x,y");
	free(t);
	label_selector_free(s);
}

/* A Deployment's LabelSelector object (matchLabels + matchExpressions). */
static void test_from_json(void **state)
{
	(void)state;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	struct label_selector *s = NULL;
	json_t *sel = json_loads("{\"matchLabels\":{\"component\":\"redis\"},\"matchExpressions\":["
				 "{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"cache\"]},"
				 "{\"key\":\"environment\",\"operator\":\"NotIn\",\"values\":[\"dev\"]}]}",
				 0, NULL);

	assert_int_equal(label_selector_from_json(sel, &s, errmsg), CAP_OK);
	json_t *l1 = json_loads("{\"component\":\"redis\",\"tier\":\"cache\"}", 0, NULL);
	json_t *l2 = json_loads("{\"component\":\"redis\",\"tier\":\"cache\",\"environment\":\"dev\"}",
				0, NULL);
	json_t *l3 = json_loads("{\"tier\":\"cache\"}", 0, NULL);
	assert_true(label_selector_matches(s, l1));
	assert_false(label_selector_matches(s, l2));
	assert_false(label_selector_matches(s, l3));
	char *t = label_selector_string(s);
	assert_string_equal(t, "component=redis,environment notin (dev),tier in (cache)");
	free(t);
	label_selector_free(s);
	json_decref(sel);

	/* Exists with values, or In without, is invalid. */
	sel = json_loads("{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\",\"values\":[]}]}",
			 0, NULL);
	assert_int_equal(label_selector_from_json(sel, &s, errmsg), CAP_EINVAL);
	json_decref(sel);
	sel = json_loads("{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Bogus\"}]}", 0, NULL);
	assert_int_equal(label_selector_from_json(sel, &s, errmsg), CAP_EINVAL);
	json_decref(sel);

	assert_int_equal(label_selector_from_json(NULL, &s, errmsg), CAP_OK);
	assert_true(label_selector_empty(s));
	label_selector_free(s);
	json_decref(l1);
	json_decref(l2);
	json_decref(l3);
}

static bool fmatches(const char *sel, json_t *obj)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	struct field_selector *s = NULL;

	if (field_selector_parse(sel, &s, errmsg) != CAP_OK)
		fail_msg("parse %s: %s", sel, errmsg);
	bool m = field_selector_matches(s, obj);
	field_selector_free(s);
	return m;
}

/* Field selectors from the docs and from kubectl describe / rollout status. */
static void test_field(void **state)
{
	(void)state;
	json_t *pod = json_loads("{\"metadata\":{\"name\":\"web\",\"namespace\":\"default\"},"
				 "\"spec\":{\"nodeName\":\"node-1\",\"restartPolicy\":\"Always\"},"
				 "\"status\":{\"phase\":\"Running\"}}", 0, NULL);
	json_t *pending = json_loads("{\"metadata\":{\"name\":\"p\"},\"status\":{\"phase\":\"Pending\"}}",
				     0, NULL);

	assert_true(fmatches("status.phase=Running", pod));
	assert_false(fmatches("status.phase=Running", pending));
	assert_true(fmatches("metadata.name==web,metadata.namespace=default", pod));
	assert_false(fmatches("metadata.name=web,spec.restartPolicy!=Always", pod));
	assert_true(fmatches("status.phase!=Running,spec.restartPolicy=Always", pending) == false);
	assert_true(fmatches("status.phase!=Running", pending));
	/* An unscheduled pod has spec.nodeName "" (the scheduler's own query). */
	assert_true(fmatches("spec.nodeName=", pending));
	assert_false(fmatches("spec.nodeName=", pod));
	assert_true(fmatches("", pod));
	json_decref(pod);
	json_decref(pending);
}

/* Escaped commas and equals signs are part of the value; bad terms are refused. */
static void test_field_escapes(void **state)
{
	(void)state;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	struct field_selector *s = NULL;
	json_t *obj = json_loads("{\"metadata\":{\"name\":\"a,b=c\"}}", 0, NULL);

	assert_true(fmatches("metadata.name=a\\,b\\=c", obj));
	assert_int_equal(field_selector_parse("metadata.name=x,metadata.namespace=y", &s, errmsg),
			 CAP_OK);
	assert_string_equal(field_selector_equals(s, "metadata.namespace"), "y");
	assert_null(field_selector_equals(s, "spec.nodeName"));
	field_selector_free(s);
	assert_int_equal(field_selector_parse("metadata.name", &s, errmsg), CAP_EINVAL);
	assert_non_null(strstr(errmsg, "metadata.name"));
	json_decref(obj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_equality),
		cmocka_unit_test(test_set_based),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_string),
		cmocka_unit_test(test_from_json),
		cmocka_unit_test(test_field),
		cmocka_unit_test(test_field_escapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
