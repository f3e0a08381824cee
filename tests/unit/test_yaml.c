/* test_yaml.c — YAML manifests read into the JSON the API server stores,
 * and JSON written back as YAML that reads the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/err.h"
#include "orchestrator/api/yaml.h"

static json_t *load(const char *text)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_t *v = yaml_to_json(text, strlen(text), errmsg);

	if (v == NULL)
		fail_msg("yaml_to_json: %s", errmsg);
	return v;
}

static void assert_json_eq(json_t *got, const char *want_text)
{
	json_t *want = json_loads(want_text, JSON_DECODE_ANY, NULL);

	assert_non_null(want);
	if (!json_equal(got, want)) {
		char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_SORT_KEYS);
		fail_msg("got %s, want %s", g, want_text);
	}
	json_decref(want);
}

/* The Deployment manifest from the Kubernetes docs reads as the JSON kubectl would send. */
static void test_deployment_manifest(void **state)
{
	(void)state;
	json_t *v = load("apiVersion: apps/v1\n"
			 "kind: Deployment\n"
			 "metadata:\n"
			 "  name: nginx-deployment\n"
			 "  labels:\n"
			 "    app: nginx\n"
			 "spec:\n"
			 "  replicas: 3\n"
			 "  selector:\n"
			 "    matchLabels:\n"
			 "      app: nginx\n"
			 "  template:\n"
			 "    metadata:\n"
			 "      labels:\n"
			 "        app: nginx\n"
			 "    spec:\n"
			 "      containers:\n"
			 "      - name: nginx\n"
			 "        image: nginx:1.14.2\n"
			 "        ports:\n"
			 "        - containerPort: 80\n");
	assert_json_eq(v, "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
			  "\"metadata\":{\"name\":\"nginx-deployment\",\"labels\":{\"app\":\"nginx\"}},"
			  "\"spec\":{\"replicas\":3,\"selector\":{\"matchLabels\":{\"app\":\"nginx\"}},"
			  "\"template\":{\"metadata\":{\"labels\":{\"app\":\"nginx\"}},"
			  "\"spec\":{\"containers\":[{\"name\":\"nginx\",\"image\":\"nginx:1.14.2\","
			  "\"ports\":[{\"containerPort\":80}]}]}}}}");
	json_decref(v);
}

/* Plain scalars become JSON types; quoted ones and yes/on stay strings. */
static void test_scalar_types(void **state)
{
	(void)state;
	json_t *v = load("a: true\nb: False\nc: null\nd: ~\ne:\nf: 42\ng: -7\nh: 3.5\n"
			 "i: 1e3\nj: \"42\"\nk: 'true'\nl: yes\nm: on\nn: 0x1F\no: 1.2.3\n"
			 "p: \"\"\nq: 12345678901234567890\n");
	assert_json_eq(v, "{\"a\":true,\"b\":false,\"c\":null,\"d\":null,\"e\":null,\"f\":42,"
			  "\"g\":-7,\"h\":3.5,\"i\":1000.0,\"j\":\"42\",\"k\":\"true\",\"l\":\"yes\","
			  "\"m\":\"on\",\"n\":31,\"o\":\"1.2.3\",\"p\":\"\","
			  "\"q\":12345678901234567890.0}");
	json_decref(v);
}

/* Block scalars keep their newlines (a ConfigMap holding a file). */
static void test_block_scalars(void **state)
{
	(void)state;
	json_t *v = load("data:\n  game.properties: |\n    lives=3\n    enemies=aliens\n"
			 "  folded: >\n    one\n    two\n");
	assert_json_eq(v, "{\"data\":{\"game.properties\":\"lives=3\\nenemies=aliens\\n\","
			  "\"folded\":\"one two\\n\"}}");
	json_decref(v);
}

/* Several documents separated by --- all come back, empty ones skipped. */
static void test_multi_document(void **state)
{
	(void)state;
	const char *text = "---\nkind: Service\n---\n# only a comment\n---\nkind: Deployment\n...\n";
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_t *all = yaml_to_json_all(text, strlen(text), errmsg);

	assert_non_null(all);
	assert_json_eq(all, "[{\"kind\":\"Service\"},{\"kind\":\"Deployment\"}]");
	json_decref(all);
	json_t *first = load(text);
	assert_json_eq(first, "{\"kind\":\"Service\"}");
	json_decref(first);
}

/* Flow style, anchors, aliases and merge keys resolve to plain JSON. */
static void test_flow_anchor_merge(void **state)
{
	(void)state;
	json_t *v = load("base: &b {cpu: 100m, memory: 64Mi}\n"
			 "args: [\"--port\", 8080]\n"
			 "copy: *b\n"
			 "merged:\n  <<: *b\n  memory: 128Mi\n");
	assert_json_eq(v, "{\"base\":{\"cpu\":\"100m\",\"memory\":\"64Mi\"},"
			  "\"args\":[\"--port\",8080],"
			  "\"copy\":{\"cpu\":\"100m\",\"memory\":\"64Mi\"},"
			  "\"merged\":{\"cpu\":\"100m\",\"memory\":\"128Mi\"}}");
	json_decref(v);
}

/* JSON is YAML: a JSON body (apply-patch+yaml from kubectl) reads unchanged. */
static void test_json_is_yaml(void **state)
{
	(void)state;
	const char *j = "{\"kind\":\"Pod\",\"spec\":{\"containers\":[{\"name\":\"a\",\"ports\":"
			"[{\"containerPort\":80}]}],\"x\":null,\"y\":[true,1.5,\"s\"]}}";
	json_t *v = load(j);
	assert_json_eq(v, j);
	json_decref(v);
}

/* A syntax error is reported with its line, not a crash or a partial value. */
static void test_syntax_error(void **state)
{
	(void)state;
	const char *text = "a: b\nc: [1, 2\nd: e\n";
	char errmsg[CAP_ERRMSG_SIZE] = "";

	assert_null(yaml_to_json(text, strlen(text), errmsg));
	assert_non_null(strstr(errmsg, "line"));
	errmsg[0] = '\0';
	assert_null(yaml_to_json("", 0, errmsg));
	assert_true(errmsg[0] != '\0');
}

/* An alias bomb is refused instead of exhausting memory. */
static void test_alias_bomb(void **state)
{
	(void)state;
	const char *text = "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
			   "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
			   "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
			   "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
			   "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
			   "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
			   "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
	char errmsg[CAP_ERRMSG_SIZE] = "";

	assert_null(yaml_to_json(text, strlen(text), errmsg));
	assert_non_null(strstr(errmsg, "too many"));
}

/* JSON written as YAML reads back equal, with look-alike strings quoted. */
static void test_round_trip(void **state)
{
	(void)state;
	const char *j = "{\"kind\":\"ConfigMap\",\"data\":{\"a\":\"true\",\"b\":\"42\",\"c\":\"yes\","
			"\"d\":\"\",\"e\":\"line1\\nline2\\n\",\"f\":\"null\",\"g\":\"- x\","
			"\"h\":\"key: value\"},\"n\":[1,2.5,false,null,{\"x\":[]}],\"o\":{}}";
	json_t *v = json_loads(j, 0, NULL);
	char *y = json_to_yaml(v);

	assert_non_null(y);
	assert_non_null(strstr(y, "kind: ConfigMap"));
	json_t *back = load(y);
	assert_true(json_equal(back, v));
	json_decref(back);
	json_decref(v);
	free(y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deployment_manifest),
		cmocka_unit_test(test_scalar_types),
		cmocka_unit_test(test_block_scalars),
		cmocka_unit_test(test_multi_document),
		cmocka_unit_test(test_flow_anchor_merge),
		cmocka_unit_test(test_json_is_yaml),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_alias_bomb),
		cmocka_unit_test(test_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
