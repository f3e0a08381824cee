/* test_sched_plugins.c — the scheduler's filters keep pods off nodes that
 * cannot take them, with kube-scheduler's wording; its scores spread or pack;
 * Kubernetes quantities parse as the API server reads them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orchestrator/scheduler/plugins.h"

struct env {
	struct sched_node node;
	struct sched_pod pod;
	json_t *node_obj;
	json_t *pod_obj;
	struct sched_verdict v;
};

static json_t *load(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);

	if (j == NULL)
		fail_msg("bad JSON in test: %s: %s", e.text, text);
	return j;
}

/* A node named n1 from its JSON, and a pod from its spec JSON. */
static void env_init(struct env *e, const char *node_json, const char *pod_spec)
{
	char buf[4096];

	memset(e, 0, sizeof(*e));
	e->node_obj = load(node_json);
	snprintf(buf, sizeof buf, "{\"metadata\":{\"name\":\"p\",\"namespace\":\"default\"},"
				  "\"spec\":%s}", pod_spec);
	e->pod_obj = load(buf);
	e->node.name = "n1";
	e->node.node = e->node_obj;
	e->node.ports = json_array();
	sched_node_allocatable(e->node_obj, &e->node.alloc);
	sched_pod_init(&e->pod, e->pod_obj);
}

static void env_free(struct env *e)
{
	sched_pod_free(&e->pod);
	json_decref(e->node.ports);
	json_decref(e->node_obj);
	json_decref(e->pod_obj);
}

static const char *plain_node =
	"{\"metadata\":{\"name\":\"n1\",\"labels\":{\"zone\":\"a\",\"gen\":\"5\"}},"
	"\"status\":{\"allocatable\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"pods\":\"3\"}}}";

static int64_t milli(const char *s)
{
	int64_t v = 0;

	if (sched_quantity_milli(s, &v) != 0)
		fail_msg("%s does not parse", s);
	return v;
}

static int64_t value(const char *s)
{
	int64_t v = 0;

	if (sched_quantity_value(s, &v) != 0)
		fail_msg("%s does not parse", s);
	return v;
}

/* Quantities in every notation Kubernetes accepts read as the API server
 * reads them, rounding up the way MilliValue and Value do. */
static void test_quantities(void **state)
{
	int64_t v;

	(void)state;
	assert_int_equal(milli("100m"), 100);
	assert_int_equal(milli("1"), 1000);
	assert_int_equal(milli("1.5"), 1500);
	assert_int_equal(milli("0.1"), 100);
	assert_int_equal(milli("1.1"), 1100);
	assert_int_equal(milli("250000u"), 250);
	assert_int_equal(milli("1u"), 1);           /* rounded up */
	assert_int_equal(value("128Mi"), 128LL * 1024 * 1024);
	assert_int_equal(value("1Gi"), 1024LL * 1024 * 1024);
	assert_int_equal(value("1.5Gi"), 1536LL * 1024 * 1024);
	assert_int_equal(value("1e3"), 1000);
	assert_int_equal(value("1E3"), 1000);
	assert_int_equal(value("2k"), 2000);
	assert_int_equal(value("1M"), 1000000);
	assert_int_equal(value("1E"), 1000000000000000000LL);   /* exa, not an exponent */
	assert_int_equal(value("129e6"), 129000000);
	assert_int_equal(value("100m"), 1);         /* 0.1 rounds up to 1 */
	assert_int_equal(value("-1"), -1);
	assert_int_equal(value("+5"), 5);
	assert_int_equal(sched_quantity_value("", &v), -1);
	assert_int_equal(sched_quantity_value("abc", &v), -1);
	assert_int_equal(sched_quantity_value("1Qi", &v), -1);
	assert_int_equal(sched_quantity_value("1 Gi", &v), -1);
	assert_int_equal(sched_quantity_value("100Ei", &v), -1);   /* overflows int64 */
}

/* Node allocatable and pod requests: limits stand in for missing requests,
 * init containers count by their largest, overhead adds. */
static void test_requests(void **state)
{
	struct env e;

	(void)state;
	env_init(&e, plain_node,
		 "{\"containers\":[{\"name\":\"a\",\"resources\":{\"requests\":{\"cpu\":\"100m\","
		 "\"memory\":\"64Mi\"}}},{\"name\":\"b\",\"resources\":{\"limits\":{\"cpu\":\"200m\","
		 "\"memory\":\"32Mi\"}}}],\"initContainers\":[{\"name\":\"i\",\"resources\":"
		 "{\"requests\":{\"cpu\":\"500m\"}}}],\"overhead\":{\"cpu\":\"10m\"}}");
	assert_int_equal(e.node.alloc.milli_cpu, 1000);
	assert_int_equal(e.node.alloc.memory, 1024LL * 1024 * 1024);
	assert_int_equal(e.node.alloc.pods, 3);
	assert_int_equal(e.pod.req.milli_cpu, 510);
	assert_int_equal(e.pod.req.memory, 96LL * 1024 * 1024);
	assert_int_equal(e.pod.req.pods, 1);
	env_free(&e);
}

/* NodeResourcesFit: cpu, memory and the pod count are checked against what
 * is already placed, each shortfall named. */
static void test_fit(void **state)
{
	struct env e;

	(void)state;
	env_init(&e, plain_node,
		 "{\"containers\":[{\"name\":\"a\",\"resources\":{\"requests\":{\"cpu\":\"500m\","
		 "\"memory\":\"512Mi\"}}}]}");
	assert_true(sched_filter_resources(&e.node, &e.pod, &e.v));
	e.node.requested.milli_cpu = 600;
	assert_false(sched_filter_resources(&e.node, &e.pod, &e.v));
	assert_int_equal(e.v.n, 1);
	assert_string_equal(e.v.reasons[0], "Insufficient cpu");
	e.v.n = 0;
	e.node.requested.memory = 600LL * 1024 * 1024;
	e.node.requested.pods = 3;
	assert_false(sched_filter(&e.node, &e.pod, &e.v));
	assert_int_equal(e.v.n, 3);
	assert_string_equal(e.v.reasons[0], "Too many pods");
	assert_string_equal(e.v.reasons[1], "Insufficient cpu");
	assert_string_equal(e.v.reasons[2], "Insufficient memory");
	env_free(&e);
}

/* A pod requesting nothing still needs a pod slot, and nothing else. */
static void test_fit_besteffort(void **state)
{
	struct env e;

	(void)state;
	env_init(&e, plain_node, "{\"containers\":[{\"name\":\"a\"}]}");
	e.node.requested.milli_cpu = 1000;
	e.node.requested.memory = 1024LL * 1024 * 1024;
	assert_true(sched_filter_resources(&e.node, &e.pod, &e.v));
	e.node.requested.pods = 3;
	assert_false(sched_filter_resources(&e.node, &e.pod, &e.v));
	env_free(&e);
}

/* NodeName: a pod naming a node fits only there. */
static void test_node_name(void **state)
{
	struct env e;

	(void)state;
	env_init(&e, plain_node, "{\"nodeName\":\"n2\",\"containers\":[]}");
	assert_false(sched_filter_node_name(&e.node, &e.pod, &e.v));
	assert_string_equal(e.v.reasons[0], "node(s) didn't match the requested node name");
	e.node.name = "n2";
	assert_true(sched_filter_node_name(&e.node, &e.pod, &e.v));
	env_free(&e);
}

/* NodeUnschedulable: a cordoned node takes only pods tolerating the
 * unschedulable taint. */
static void test_unschedulable(void **state)
{
	const char *cordoned = "{\"metadata\":{\"name\":\"n1\"},\"spec\":{\"unschedulable\":true}}";
	struct env e;

	(void)state;
	env_init(&e, cordoned, "{\"containers\":[]}");
	assert_false(sched_filter_unschedulable(&e.node, &e.pod, &e.v));
	assert_string_equal(e.v.reasons[0], "node(s) were unschedulable");
	env_free(&e);
	env_init(&e, cordoned, "{\"containers\":[],\"tolerations\":[{\"key\":"
			       "\"node.kubernetes.io/unschedulable\",\"operator\":\"Exists\","
			       "\"effect\":\"NoSchedule\"}]}");
	assert_true(sched_filter_unschedulable(&e.node, &e.pod, &e.v));
	env_free(&e);
}

static bool taint_ok(const char *taints, const char *tolerations, char *why, size_t size)
{
	char node[1024], spec[1024];
	struct env e;
	bool ok;

	snprintf(node, sizeof node, "{\"metadata\":{\"name\":\"n1\"},\"spec\":{\"taints\":%s}}",
		 taints);
	snprintf(spec, sizeof spec, "{\"containers\":[],\"tolerations\":%s}", tolerations);
	env_init(&e, node, spec);
	ok = sched_filter_taints(&e.node, &e.pod, &e.v);
	if (why != NULL)
		snprintf(why, size, "%s", e.v.n ? e.v.reasons[0] : "");
	env_free(&e);
	return ok;
}

/* TaintToleration: NoSchedule and NoExecute taints need a toleration;
 * Equal compares values, Exists does not, an empty key with Exists
 * tolerates everything, the effect must match when given. */
static void test_taints(void **state)
{
	const char *gpu = "[{\"key\":\"dedicated\",\"value\":\"gpu\",\"effect\":\"NoSchedule\"}]";
	char why[SCHED_REASON_SIZE];

	(void)state;
	assert_false(taint_ok(gpu, "[]", why, sizeof why));
	assert_string_equal(why, "node(s) had untolerated taint {dedicated: gpu}");
	assert_true(taint_ok(gpu, "[{\"key\":\"dedicated\",\"value\":\"gpu\"}]", NULL, 0));
	assert_false(taint_ok(gpu, "[{\"key\":\"dedicated\",\"value\":\"cpu\"}]", NULL, 0));
	assert_true(taint_ok(gpu, "[{\"key\":\"dedicated\",\"operator\":\"Exists\"}]", NULL, 0));
	assert_true(taint_ok(gpu, "[{\"operator\":\"Exists\"}]", NULL, 0));
	assert_false(taint_ok(gpu, "[{\"key\":\"dedicated\",\"operator\":\"Exists\","
				   "\"effect\":\"NoExecute\"}]", NULL, 0));
	assert_true(taint_ok(gpu, "[{\"key\":\"dedicated\",\"operator\":\"Exists\","
				  "\"effect\":\"NoSchedule\"}]", NULL, 0));
	/* PreferNoSchedule only weighs in scoring, never filters. */
	assert_true(taint_ok("[{\"key\":\"k\",\"effect\":\"PreferNoSchedule\"}]", "[]", NULL, 0));
	assert_false(taint_ok("[{\"key\":\"node.kubernetes.io/unreachable\",\"effect\":"
			      "\"NoExecute\"}]", "[]", why, sizeof why));
	assert_string_equal(why, "node(s) had untolerated taint {node.kubernetes.io/unreachable: }");
}

static bool affinity_ok(const char *pod_spec)
{
	struct env e;
	bool ok;

	env_init(&e, plain_node, pod_spec);
	ok = sched_filter_affinity(&e.node, &e.pod, &e.v);
	if (!ok)
		assert_string_equal(e.v.reasons[0],
				    "node(s) didn't match Pod's node affinity/selector");
	env_free(&e);
	return ok;
}

static bool expr_ok(const char *expr)
{
	char spec[1024];

	snprintf(spec, sizeof spec, "{\"containers\":[],\"affinity\":{\"nodeAffinity\":"
				    "{\"requiredDuringSchedulingIgnoredDuringExecution\":"
				    "{\"nodeSelectorTerms\":[{\"matchExpressions\":[%s]}]}}}}", expr);
	return affinity_ok(spec);
}

/* NodeAffinity: nodeSelector labels and required matchExpressions with
 * every operator; terms are ORed, expressions ANDed. */
static void test_affinity(void **state)
{
	(void)state;
	assert_true(affinity_ok("{\"containers\":[],\"nodeSelector\":{\"zone\":\"a\"}}"));
	assert_false(affinity_ok("{\"containers\":[],\"nodeSelector\":{\"zone\":\"b\"}}"));
	assert_false(affinity_ok("{\"containers\":[],\"nodeSelector\":{\"disk\":\"ssd\"}}"));
	assert_true(expr_ok("{\"key\":\"zone\",\"operator\":\"In\",\"values\":[\"b\",\"a\"]}"));
	assert_false(expr_ok("{\"key\":\"zone\",\"operator\":\"In\",\"values\":[\"b\"]}"));
	assert_true(expr_ok("{\"key\":\"zone\",\"operator\":\"NotIn\",\"values\":[\"b\"]}"));
	assert_false(expr_ok("{\"key\":\"zone\",\"operator\":\"NotIn\",\"values\":[\"a\"]}"));
	assert_true(expr_ok("{\"key\":\"disk\",\"operator\":\"NotIn\",\"values\":[\"a\"]}"));
	assert_true(expr_ok("{\"key\":\"zone\",\"operator\":\"Exists\"}"));
	assert_false(expr_ok("{\"key\":\"disk\",\"operator\":\"Exists\"}"));
	assert_true(expr_ok("{\"key\":\"disk\",\"operator\":\"DoesNotExist\"}"));
	assert_false(expr_ok("{\"key\":\"zone\",\"operator\":\"DoesNotExist\"}"));
	assert_true(expr_ok("{\"key\":\"gen\",\"operator\":\"Gt\",\"values\":[\"4\"]}"));
	assert_false(expr_ok("{\"key\":\"gen\",\"operator\":\"Gt\",\"values\":[\"5\"]}"));
	assert_true(expr_ok("{\"key\":\"gen\",\"operator\":\"Lt\",\"values\":[\"6\"]}"));
	assert_false(expr_ok("{\"key\":\"zone\",\"operator\":\"Lt\",\"values\":[\"6\"]}"));
	assert_false(expr_ok("{\"key\":\"zone\",\"operator\":\"Exists\"},"
			     "{\"key\":\"disk\",\"operator\":\"Exists\"}"));
	/* Two terms: the second matches. */
	assert_true(affinity_ok("{\"containers\":[],\"affinity\":{\"nodeAffinity\":"
				"{\"requiredDuringSchedulingIgnoredDuringExecution\":"
				"{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":\"disk\","
				"\"operator\":\"Exists\"}]},{\"matchFields\":[{\"key\":"
				"\"metadata.name\",\"operator\":\"In\",\"values\":[\"n1\"]}]}]}}}}"));
	/* An empty term matches no node. */
	assert_false(affinity_ok("{\"containers\":[],\"affinity\":{\"nodeAffinity\":"
				 "{\"requiredDuringSchedulingIgnoredDuringExecution\":"
				 "{\"nodeSelectorTerms\":[{}]}}}}"));
}

/* NodePorts: a hostPort in use on the node (same protocol, overlapping
 * address) rules the node out. */
static void test_ports(void **state)
{
	struct env e;

	(void)state;
	env_init(&e, plain_node, "{\"containers\":[{\"name\":\"a\",\"ports\":[{\"containerPort\":"
				 "80,\"hostPort\":8080}]}]}");
	assert_true(sched_filter_ports(&e.node, &e.pod, &e.v));
	json_array_append_new(e.node.ports, json_pack("{s:s, s:s, s:i}", "p", "UDP", "i", "",
						      "n", 8080));
	assert_true(sched_filter_ports(&e.node, &e.pod, &e.v));
	json_array_append_new(e.node.ports, json_pack("{s:s, s:s, s:i}", "p", "TCP", "i",
						      "10.0.0.1", "n", 8080));
	assert_false(sched_filter_ports(&e.node, &e.pod, &e.v));
	assert_string_equal(e.v.reasons[0],
			    "node(s) didn't have free ports for the requested pod ports");
	env_free(&e);
	/* Two distinct specific addresses do not conflict. */
	env_init(&e, plain_node, "{\"containers\":[{\"name\":\"a\",\"ports\":[{\"containerPort\":"
				 "80,\"hostPort\":8080,\"hostIP\":\"10.0.0.2\"}]}]}");
	json_array_append_new(e.node.ports, json_pack("{s:s, s:s, s:i}", "p", "TCP", "i",
						      "10.0.0.1", "n", 8080));
	assert_true(sched_filter_ports(&e.node, &e.pod, &e.v));
	env_free(&e);
}

/* LeastAllocated prefers the emptier node, MostAllocated the fuller one; a
 * pod that requests nothing still counts 100m and 200Mi. */
static void test_scores(void **state)
{
	const char *big = "{\"metadata\":{\"name\":\"n1\"},\"status\":{\"allocatable\":"
			  "{\"cpu\":\"4\",\"memory\":\"4000Mi\"}}}";
	struct env e;
	struct sched_node busy;
	int empty_least, busy_least, empty_most, busy_most;

	(void)state;
	env_init(&e, big, "{\"containers\":[{\"name\":\"a\",\"resources\":{\"requests\":"
			  "{\"cpu\":\"1\",\"memory\":\"1000Mi\"}}}]}");
	busy = e.node;
	busy.nonzero.milli_cpu = 2000;
	busy.nonzero.memory = 2000LL * 1024 * 1024;
	empty_least = sched_score(&e.node, &e.pod, SCHED_SCORE_LEAST);
	busy_least = sched_score(&busy, &e.pod, SCHED_SCORE_LEAST);
	empty_most = sched_score(&e.node, &e.pod, SCHED_SCORE_MOST);
	busy_most = sched_score(&busy, &e.pod, SCHED_SCORE_MOST);
	/* (4000-1000)/4000 = 75 on both resources, (4000-3000)/4000 = 25. */
	assert_int_equal(empty_least, 75);
	assert_int_equal(busy_least, 25);
	assert_int_equal(empty_most, 25);
	assert_int_equal(busy_most, 75);
	env_free(&e);
	env_init(&e, big, "{\"containers\":[{\"name\":\"a\"}]}");
	assert_int_equal(e.pod.nonzero.milli_cpu, 100);
	assert_int_equal(e.pod.nonzero.memory, 200LL * 1024 * 1024);
	assert_true(sched_score(&e.node, &e.pod, SCHED_SCORE_LEAST) >
		    sched_score(&busy, &e.pod, SCHED_SCORE_LEAST));
	env_free(&e);
}

/* The FailedScheduling message counts nodes per reason, sorted, worded as
 * kube-scheduler's. */
static void test_fit_message(void **state)
{
	json_t *counts = json_pack("{s:i, s:i}", "node(s) had untolerated taint {a: }", 2,
				   "Insufficient cpu", 1);
	char buf[512];

	(void)state;
	sched_fit_message(3, counts, buf, sizeof buf);
	assert_string_equal(buf, "0/3 nodes are available: 1 Insufficient cpu, "
				 "2 node(s) had untolerated taint {a: }.");
	sched_fit_message(0, counts, buf, sizeof buf);
	assert_string_equal(buf, "no nodes available to schedule pods");
	json_decref(counts);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quantities),
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_fit),
		cmocka_unit_test(test_fit_besteffort),
		cmocka_unit_test(test_node_name),
		cmocka_unit_test(test_unschedulable),
		cmocka_unit_test(test_taints),
		cmocka_unit_test(test_affinity),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_scores),
		cmocka_unit_test(test_fit_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
