/* test_rollout.c — the rollout arithmetic, ReplicaSet victim order,
 * pod-template-hash, tolerations, node eligibility, Service ports and the
 * garbage collector's owner graph behave as Kubernetes' controllers do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/err.h"
#include "orchestrator/controllers/podutil.h"
#include "orchestrator/controllers/rollout.h"

static json_t *J(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &e);

	if (v == NULL)
		fail_msg("bad JSON in test: %s: %s", e.text, text);
	return v;
}

static void fence(const char *surge, const char *unav, int replicas, int *s, int *u)
{
	char errmsg[CAP_ERRMSG_SIZE];
	json_t *a = J(surge), *b = J(unav);

	assert_int_equal(rollout_fenceposts(a, b, replicas, s, u, errmsg), CAP_OK);
	json_decref(a);
	json_decref(b);
}

/* The defaults 25%/25% of 10 replicas give surge 3 (up) and unavailable 2 (down). */
static void test_fenceposts_percent(void **state)
{
	int s, u;

	(void)state;
	fence("\"25%\"", "\"25%\"", 10, &s, &u);
	assert_int_equal(s, 3);
	assert_int_equal(u, 2);
	fence("\"30%\"", "\"30%\"", 1, &s, &u);
	assert_int_equal(s, 1);
	assert_int_equal(u, 0);
	fence("2", "\"50%\"", 5, &s, &u);
	assert_int_equal(s, 2);
	assert_int_equal(u, 2);
}

/* Surge and unavailable both zero would block a rollout: unavailable becomes 1. */
static void test_fenceposts_both_zero(void **state)
{
	int s, u;

	(void)state;
	fence("0", "\"10%\"", 5, &s, &u);  /* 10% of 5 rounds down to 0 */
	assert_int_equal(s, 0);
	assert_int_equal(u, 1);
}

/* A value that is neither a number nor a percentage is refused. */
static void test_scaled_value_bad(void **state)
{
	char errmsg[CAP_ERRMSG_SIZE];
	json_t *v = J("\"abc\""), *w = J("\"12%x\"");
	int out = 77;

	(void)state;
	assert_int_equal(rollout_scaled_value(v, 10, true, &out, errmsg), CAP_EINVAL);
	assert_int_equal(rollout_scaled_value(w, 10, true, &out, errmsg), CAP_EINVAL);
	assert_int_equal(out, 77);
	json_decref(v);
	json_decref(w);
}

/* The new ReplicaSet grows only within replicas + surge, and never past replicas. */
static void test_new_rs_size(void **state)
{
	(void)state;
	assert_int_equal(rollout_new_rs_size(10, 3, 10, 0), 3);   /* surge room: 3 */
	assert_int_equal(rollout_new_rs_size(10, 3, 13, 3), 3);   /* full: wait */
	assert_int_equal(rollout_new_rs_size(10, 3, 12, 9), 10);  /* capped at replicas */
	assert_int_equal(rollout_new_rs_size(10, 0, 8, 0), 2);    /* old ones went down */
	assert_int_equal(rollout_new_rs_size(3, 1, 5, 4), 3);     /* scaled down to replicas */
}

/* Old sets go down only as far as maxUnavailable allows, counting the new
 * set's not-yet-available pods against the budget. */
static void test_scale_down_old_budget(void **state)
{
	struct rollout_rs old[] = { { "a", 100, 10, 10, -1 } };

	(void)state;
	/* 10 wanted, 2 may be unavailable, 3 new pods not available yet. */
	assert_int_equal(rollout_scale_down_old(old, 1, 3, 0, 10, 2), 2);
	assert_int_equal(old[0].replicas, 8);
	/* With 3 of 5 new pods available, 8 old ones may drop to 5: 3 + 5
	 * available pods still meet the minimum of 8. */
	old[0].available = 8;
	assert_int_equal(rollout_scale_down_old(old, 1, 5, 3, 10, 2), 3);
	assert_int_equal(old[0].replicas, 5);
}

/* Unavailable old pods are removed first, from the oldest set. */
static void test_scale_down_old_unhealthy_first(void **state)
{
	struct rollout_rs old[] = { { "b", 200, 5, 5, -1 }, { "a", 100, 5, 3, -1 } };

	(void)state;
	assert_int_equal(rollout_scale_down_old(old, 2, 1, 0, 10, 2), 2);
	/* Sorted oldest first: "a" lost its 2 unavailable pods, "b" kept all. */
	assert_string_equal(old[0].name, "a");
	assert_int_equal(old[0].replicas, 3);
	assert_int_equal(old[1].replicas, 5);
}

/* The Kubernetes docs' example: 10 replicas (surge 3) mid-rollout with 8 old
 * and 5 new pods, scaled to 15: 3 more go to the old set, 2 to the new. */
static void test_proportional_docs_example(void **state)
{
	struct rollout_rs rs[] = { { "old", 100, 8, 8, 13 }, { "new", 200, 5, 0, 13 } };

	(void)state;
	rollout_proportional(rs, 2, 15, 3, 13);
	assert_int_equal(rs[0].replicas, 11);
	assert_int_equal(rs[1].replicas, 7);
	assert_int_equal(rs[0].replicas + rs[1].replicas, 18);
}

/* Rounding leftovers go to the newest of equal sets when growing, and are
 * taken from the oldest when shrinking. */
static void test_proportional_leftover(void **state)
{
	struct rollout_rs up[] = { { "a", 100, 1, 1, 3 }, { "b", 200, 1, 1, 3 },
				   { "c", 300, 1, 1, 3 } };
	struct rollout_rs down[] = { { "a", 100, 1, 1, 3 }, { "b", 200, 1, 1, 3 },
				     { "c", 300, 1, 1, 3 } };

	(void)state;
	rollout_proportional(up, 3, 4, 0, 3);
	assert_int_equal(up[0].replicas, 1);
	assert_int_equal(up[1].replicas, 1);
	assert_int_equal(up[2].replicas, 2);
	rollout_proportional(down, 3, 2, 0, 3);
	assert_int_equal(down[0].replicas, 0);
	assert_int_equal(down[1].replicas, 1);
	assert_int_equal(down[2].replicas, 1);
}

/* Scaling to zero mid-rollout empties every set; sets of size 0 stay 0. */
static void test_proportional_to_zero(void **state)
{
	struct rollout_rs rs[] = { { "a", 100, 4, 4, 6 }, { "b", 200, 2, 0, 6 },
				   { "c", 50, 0, 0, -1 } };

	(void)state;
	rollout_proportional(rs, 3, 0, 1, 6);
	assert_int_equal(rs[0].replicas, 0);
	assert_int_equal(rs[1].replicas, 0);
	assert_int_equal(rs[2].replicas, 0);
}

/* The hash is FNV-32a of the canonical template (plus the collision count as
 * 4 little-endian bytes) in the safe alphabet; reference values from an
 * independent FNV-1a implementation: "{}" -> 1415952421, with count 1 ->
 * 2302809700. */
static void test_hash_known_values(void **state)
{
	json_t *t = J("{}");
	char h[11];

	(void)state;
	rollout_template_hash(t, -1, h);
	assert_string_equal(h, "5859f96865");
	rollout_template_hash(t, 1, h);
	assert_string_equal(h, "6746d4fc44");
	json_decref(t);
}

/* The hash ignores key order, nulls and the hash label, and changes with the image. */
static void test_hash_stable(void **state)
{
	json_t *a = J("{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":"
		      "[{\"name\":\"c\",\"image\":\"nginx\"}]}}");
	json_t *b = J("{\"spec\":{\"containers\":[{\"image\":\"nginx\",\"name\":\"c\"}]},"
		      "\"metadata\":{\"labels\":{\"pod-template-hash\":\"xyz\",\"app\":\"web\"}}}");
	json_t *c = J("{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":"
		      "[{\"name\":\"c\",\"image\":\"nginx:2\"}]}}");
	/* kubectl's templates carry "creationTimestamp": null. */
	json_t *n = J("{\"metadata\":{\"creationTimestamp\":null,\"labels\":{\"app\":\"web\"}},"
		      "\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"nginx\"}]}}");
	char hn[11];
	char ha[11], hb[11], hc[11], h0[11];
	size_t i;

	(void)state;
	rollout_template_hash(a, 0, ha);
	rollout_template_hash(b, 0, hb);
	rollout_template_hash(c, 0, hc);
	rollout_template_hash(a, -1, h0);
	assert_string_equal(ha, hb);
	assert_string_not_equal(ha, hc);
	assert_string_not_equal(ha, h0);
	for (i = 0; ha[i]; i++)
		assert_non_null(strchr("bcdfghjklmnpqrstvwxz2456789", ha[i]));
	assert_true(rollout_templates_equal(a, b));
	assert_false(rollout_templates_equal(a, c));
	assert_true(rollout_templates_equal(a, n));
	rollout_template_hash(n, 0, hn);
	assert_string_equal(ha, hn);
	json_decref(n);
	json_decref(a);
	json_decref(b);
	json_decref(c);
}

static json_t *pod(const char *name, const char *node, const char *phase, bool ready,
		   const char *ready_at, int restarts, const char *created)
{
	json_t *p = json_pack("{s:{s:s, s:s}, s:{s:s}, s:{s:s, s:[{s:s, s:s, s:s}],"
			      " s:[{s:s, s:i}]}}",
			      "metadata", "name", name, "creationTimestamp", created,
			      "spec", "nodeName", node,
			      "status", "phase", phase, "conditions", "type", "Ready", "status",
			      ready ? "True" : "False", "lastTransitionTime", ready_at,
			      "containerStatuses", "name", "c", "restartCount", restarts);
	assert_non_null(p);
	return p;
}

/* Victims come in Kubernetes' order: unassigned, Pending, not ready,
 * ready for less time, more restarts, newer. */
static void test_victim_order(void **state)
{
	const char *t0 = "2024-01-01T00:00:00Z", *t1 = "2024-01-01T00:10:00Z";
	json_t *pods[] = {
		pod("running-old", "n1", "Running", true, t0, 0, t0),
		pod("running-newer", "n1", "Running", true, t0, 0, t1),
		pod("restarts", "n1", "Running", true, t0, 5, t0),
		pod("ready-late", "n1", "Running", true, t1, 0, t0),
		pod("notready", "n1", "Running", false, t0, 0, t0),
		pod("pending", "n1", "Pending", false, t0, 0, t0),
		pod("unassigned", "", "Pending", false, t0, 0, t0),
	};
	const char *want[] = { "unassigned", "pending", "notready", "ready-late", "restarts",
			       "running-newer", "running-old" };
	struct rollout_pod rp[7];
	size_t i;

	(void)state;
	for (i = 0; i < 7; i++) {
		rollout_pod_from_json(pods[i], &rp[i]);
		rp[i].index = i;
	}
	rollout_sort_victims(rp, 7);
	for (i = 0; i < 7; i++)
		assert_string_equal(rp[i].name, want[i]);
	for (i = 0; i < 7; i++)
		json_decref(pods[i]);
}

/* A lower pod-deletion-cost goes first even among otherwise equal pods. */
static void test_victim_deletion_cost(void **state)
{
	json_t *a = J("{\"metadata\":{\"name\":\"a\",\"annotations\":{"
		      "\"controller.kubernetes.io/pod-deletion-cost\":\"10\"}}}");
	json_t *b = J("{\"metadata\":{\"name\":\"b\",\"annotations\":{"
		      "\"controller.kubernetes.io/pod-deletion-cost\":\"-5\"}}}");
	struct rollout_pod rp[2];

	(void)state;
	rollout_pod_from_json(a, &rp[0]);
	rollout_pod_from_json(b, &rp[1]);
	rollout_sort_victims(rp, 2);
	assert_string_equal(rp[0].name, "b");
	json_decref(a);
	json_decref(b);
}

/* minReadySeconds: a pod counts as available only after being ready that long. */
static void test_available(void **state)
{
	json_t *p = pod("p", "n", "Running", true, "2024-01-01T00:00:00Z", 0,
			"2024-01-01T00:00:00Z");
	int64_t t = rollout_parse_time("2024-01-01T00:00:00Z");

	(void)state;
	assert_true(t > 0);
	assert_int_equal(rollout_parse_time("2024-01-01T02:00:00+02:00"), t);
	assert_int_equal(rollout_parse_time("2024-01-01T00:00:00.123456Z"), t);
	assert_true(podutil_available(p, 0, t));
	assert_false(podutil_available(p, 30, t + 29));
	assert_true(podutil_available(p, 30, t + 30));
	json_decref(p);
}

/* Pods built from a template carry its labels, generateName and a controller reference. */
static void test_pod_from_template(void **state)
{
	json_t *rs = J("{\"metadata\":{\"name\":\"web-abc\",\"namespace\":\"ns\",\"uid\":\"u1\"}}");
	json_t *t = J("{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":[]}}");
	json_t *p = podutil_pod_from_template(t, rs, "apps/v1", "ReplicaSet");
	json_t *ref;

	(void)state;
	assert_non_null(p);
	assert_string_equal(json_string_value(json_object_get(json_object_get(p, "metadata"),
						"generateName")), "web-abc-");
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(
		p, "metadata"), "labels"), "app")), "web");
	ref = podutil_controller_ref(p);
	assert_non_null(ref);
	assert_string_equal(json_string_value(json_object_get(ref, "uid")), "u1");
	assert_string_equal(json_string_value(json_object_get(ref, "kind")), "ReplicaSet");
	assert_true(json_is_true(json_object_get(ref, "blockOwnerDeletion")));
	/* The pod's spec is its own: changing it leaves the template alone. */
	json_object_set_new(json_object_get(p, "spec"), "nodeName", json_string("n"));
	assert_null(json_object_get(json_object_get(t, "spec"), "nodeName"));
	json_decref(p);
	json_decref(t);
	json_decref(rs);
}

/* Toleration matching: Exists, Equal with value, effect, and the empty key. */
static void test_tolerations(void **state)
{
	json_t *taint = J("{\"key\":\"gpu\",\"value\":\"yes\",\"effect\":\"NoSchedule\"}");
	json_t *t1 = J("{\"key\":\"gpu\",\"operator\":\"Exists\"}");
	json_t *t2 = J("{\"key\":\"gpu\",\"operator\":\"Equal\",\"value\":\"no\"}");
	json_t *t3 = J("{\"key\":\"gpu\",\"value\":\"yes\",\"effect\":\"NoExecute\"}");
	json_t *t4 = J("{\"operator\":\"Exists\"}");
	json_t *t5 = J("{\"key\":\"gpu\",\"value\":\"yes\"}");

	(void)state;
	assert_true(podutil_tolerates(t1, taint));
	assert_false(podutil_tolerates(t2, taint));
	assert_false(podutil_tolerates(t3, taint));
	assert_true(podutil_tolerates(t4, taint));
	assert_true(podutil_tolerates(t5, taint));
	json_decref(taint);
	json_decref(t1);
	json_decref(t2);
	json_decref(t3);
	json_decref(t4);
	json_decref(t5);
}

/* DaemonSet eligibility: nodeSelector, untolerated taints, and the not-ready
 * taint DaemonSet pods tolerate by default. */
static void test_node_should_run(void **state)
{
	json_t *tmpl = J("{\"spec\":{\"nodeSelector\":{\"disk\":\"ssd\"}}}");
	json_t *ssd = J("{\"metadata\":{\"name\":\"a\",\"labels\":{\"disk\":\"ssd\"}}}");
	json_t *hdd = J("{\"metadata\":{\"name\":\"b\",\"labels\":{\"disk\":\"hdd\"}}}");
	json_t *tainted = J("{\"metadata\":{\"name\":\"c\",\"labels\":{\"disk\":\"ssd\"}},"
			    "\"spec\":{\"taints\":[{\"key\":\"dedicated\",\"value\":\"db\","
			    "\"effect\":\"NoSchedule\"}]}}");
	json_t *notready = J("{\"metadata\":{\"name\":\"d\",\"labels\":{\"disk\":\"ssd\"}},"
			     "\"spec\":{\"taints\":[{\"key\":\"node.kubernetes.io/not-ready\","
			     "\"effect\":\"NoExecute\"},{\"key\":\"x\",\"effect\":"
			     "\"PreferNoSchedule\"}]}}");
	json_t *aff = J("{\"spec\":{\"affinity\":{\"nodeAffinity\":{\"requiredDuringScheduling"
			"IgnoredDuringExecution\":{\"nodeSelectorTerms\":[{\"matchExpressions\":"
			"[{\"key\":\"disk\",\"operator\":\"NotIn\",\"values\":[\"ssd\"]}]}]}}}}}");

	(void)state;
	assert_true(podutil_node_should_run(tmpl, ssd));
	assert_false(podutil_node_should_run(tmpl, hdd));
	assert_false(podutil_node_should_run(tmpl, tainted));
	assert_true(podutil_node_should_run(tmpl, notready));
	assert_false(podutil_node_should_run(aff, ssd));
	assert_true(podutil_node_should_run(aff, hdd));
	json_decref(tmpl);
	json_decref(ssd);
	json_decref(hdd);
	json_decref(tainted);
	json_decref(notready);
	json_decref(aff);
}

/* A DaemonSet pod is pinned by matchFields on metadata.name, keeping the
 * template's own node affinity terms. */
static void test_pin_to_node(void **state)
{
	json_t *spec = J("{\"affinity\":{\"nodeAffinity\":{\"requiredDuringScheduling"
			 "IgnoredDuringExecution\":{\"nodeSelectorTerms\":[{\"matchExpressions\":"
			 "[{\"key\":\"disk\",\"operator\":\"In\",\"values\":[\"ssd\"]}]}]}}}}");
	json_t *p;
	json_t *node = J("{\"metadata\":{\"name\":\"n7\",\"labels\":{\"disk\":\"ssd\"}}}");
	json_t *other = J("{\"metadata\":{\"name\":\"n8\",\"labels\":{\"disk\":\"ssd\"}}}");

	(void)state;
	assert_int_equal(podutil_pin_to_node(spec, "n7"), CAP_OK);
	p = json_pack("{s:O}", "spec", spec);
	assert_string_equal(podutil_pinned_node(p), "n7");
	assert_true(podutil_node_should_run(p, node));
	assert_false(podutil_node_should_run(p, other));
	json_decref(p);
	json_decref(spec);
	json_decref(node);
	json_decref(other);
}

/* targetPort: a number, a named container port (same protocol), or the port itself. */
static void test_target_port(void **state)
{
	json_t *p = J("{\"spec\":{\"containers\":[{\"ports\":[{\"name\":\"http\","
		      "\"containerPort\":8080},{\"name\":\"dns\",\"containerPort\":53,"
		      "\"protocol\":\"UDP\"}]}]}}");
	json_t *a = J("{\"port\":80,\"targetPort\":9090}");
	json_t *b = J("{\"port\":80,\"targetPort\":\"http\"}");
	json_t *c = J("{\"port\":80}");
	json_t *d = J("{\"port\":53,\"targetPort\":\"dns\"}");
	json_t *e = J("{\"port\":53,\"targetPort\":\"dns\",\"protocol\":\"UDP\"}");

	(void)state;
	assert_int_equal(podutil_target_port(a, p), 9090);
	assert_int_equal(podutil_target_port(b, p), 8080);
	assert_int_equal(podutil_target_port(c, p), 80);
	assert_int_equal(podutil_target_port(d, p), -1);
	assert_int_equal(podutil_target_port(e, p), 53);
	json_decref(p);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(d);
	json_decref(e);
}

static json_t *obj(const char *uid, const char *owner, bool block)
{
	if (owner == NULL)
		return json_pack("{s:{s:s}}", "metadata", "uid", uid);
	return json_pack("{s:{s:s, s:[{s:s, s:b}]}}", "metadata", "uid", uid, "ownerReferences",
			 "uid", owner, "blockOwnerDeletion", block);
}

/* Deployment -> ReplicaSet -> pods: the walk finds every dependent once;
 * blockOwnerDeletion is counted; a missing owner makes an orphan garbage. */
static void test_gc_graph(void **state)
{
	json_t *o[] = { obj("d", NULL, false), obj("rs", "d", true), obj("p1", "rs", true),
			obj("p2", "rs", false), obj("lost", "gone", true) };
	struct gc_graph *g = gc_graph_new();
	json_t *all, *direct;
	size_t i;

	(void)state;
	for (i = 0; i < 5; i++)
		assert_int_equal(gc_graph_add(g, o[i]), 0);
	all = gc_graph_all_dependents(g, "d");
	assert_int_equal(json_array_size(all), 3);
	direct = gc_graph_dependents(g, "rs");
	assert_int_equal(json_array_size(direct), 2);
	assert_int_equal(gc_graph_blocking(g, "rs"), 1);
	assert_true(gc_graph_owners_gone(g, o[4]));
	assert_false(gc_graph_owners_gone(g, o[2]));
	assert_false(gc_graph_owners_gone(g, o[0]));  /* no owners: not garbage */
	json_decref(all);
	json_decref(direct);
	gc_graph_free(g);
	for (i = 0; i < 5; i++)
		json_decref(o[i]);
}

/* Owners that reference each other do not make the walk loop. */
static void test_gc_graph_cycle(void **state)
{
	json_t *a = obj("a", "b", true), *b = obj("b", "a", true), *c = obj("c", "a", false);
	struct gc_graph *g = gc_graph_new();
	json_t *all;

	(void)state;
	gc_graph_add(g, a);
	gc_graph_add(g, b);
	gc_graph_add(g, c);
	all = gc_graph_all_dependents(g, "a");
	assert_int_equal(json_array_size(all), 2);   /* b and c, never a itself */
	json_decref(all);
	gc_graph_free(g);
	json_decref(a);
	json_decref(b);
	json_decref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fenceposts_percent),
		cmocka_unit_test(test_fenceposts_both_zero),
		cmocka_unit_test(test_scaled_value_bad),
		cmocka_unit_test(test_new_rs_size),
		cmocka_unit_test(test_scale_down_old_budget),
		cmocka_unit_test(test_scale_down_old_unhealthy_first),
		cmocka_unit_test(test_proportional_docs_example),
		cmocka_unit_test(test_proportional_leftover),
		cmocka_unit_test(test_proportional_to_zero),
		cmocka_unit_test(test_hash_known_values),
		cmocka_unit_test(test_hash_stable),
		cmocka_unit_test(test_victim_order),
		cmocka_unit_test(test_victim_deletion_cost),
		cmocka_unit_test(test_available),
		cmocka_unit_test(test_pod_from_template),
		cmocka_unit_test(test_tolerations),
		cmocka_unit_test(test_node_should_run),
		cmocka_unit_test(test_pin_to_node),
		cmocka_unit_test(test_target_port),
		cmocka_unit_test(test_gc_graph),
		cmocka_unit_test(test_gc_graph_cycle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
