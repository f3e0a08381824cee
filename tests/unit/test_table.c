/* test_table.c — `kubectl get` tables: the columns kubectl shows for each
 * resource (and with -o wide), and the cells its printers derive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orchestrator/api/table.h"

/* 2026-11-27T00:42:21Z, the creation time of the captured pods. */
#define T0 ((time_t)1795740141)

static json_t *j(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);

	if (v == NULL)
		fail_msg("bad test JSON: %s: %s", e.text, text);
	return v;
}

/* The header line kubectl prints: column names upper-cased, separated by
 * "|", wide columns after a "||" when wide is set. */
static void headers(const char *resource, char *out, size_t len)
{
	json_t *items = json_array();
	json_t *t = table_build(resource, items, "1", T0);
	json_t *c;
	size_t i, n = 0;
	int last_prio = 0;

	assert_non_null(t);
	out[0] = '\0';
	json_array_foreach(json_object_get(t, "columnDefinitions"), i, c) {
		int prio = (int)json_integer_value(json_object_get(c, "priority"));
		const char *name = json_string_value(json_object_get(c, "name"));
		if (prio < last_prio)
			fail_msg("%s: a default column after a wide one", resource);
		n += (size_t)snprintf(out + n, len - n, "%s%s", i == 0 ? "" : prio != last_prio ? "||" : "|", name);
		last_prio = prio;
	}
	for (char *p = out; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	json_decref(t);
	json_decref(items);
}

/* Every resource prints the columns kubectl shows for it, wide ones last. */
static void test_columns_per_resource(void **state)
{
	(void)state;
	static const char *const want[][2] = {
		{ "namespaces", "NAME|STATUS|AGE" },
		{ "pods", "NAME|READY|STATUS|RESTARTS|AGE||IP|NODE|NOMINATED NODE|READINESS GATES" },
		{ "nodes", "NAME|STATUS|ROLES|AGE|VERSION||INTERNAL-IP|EXTERNAL-IP|OS-IMAGE|"
			   "KERNEL-VERSION|CONTAINER-RUNTIME" },
		{ "services", "NAME|TYPE|CLUSTER-IP|EXTERNAL-IP|PORT(S)|AGE||SELECTOR" },
		{ "endpoints", "NAME|ENDPOINTS|AGE" },
		{ "events", "LAST SEEN|TYPE|REASON|OBJECT||SUBOBJECT|SOURCE" },
		{ "configmaps", "NAME|DATA|AGE" },
		{ "secrets", "NAME|TYPE|DATA|AGE" },
		{ "serviceaccounts", "NAME|SECRETS|AGE" },
		{ "replicasets", "NAME|DESIRED|CURRENT|READY|AGE||CONTAINERS|IMAGES|SELECTOR" },
		{ "deployments", "NAME|READY|UP-TO-DATE|AVAILABLE|AGE||CONTAINERS|IMAGES|SELECTOR" },
		{ "daemonsets", "NAME|DESIRED|CURRENT|READY|UP-TO-DATE|AVAILABLE|NODE SELECTOR|AGE||"
				"CONTAINERS|IMAGES|SELECTOR" },
		{ "persistentvolumes", "NAME|CAPACITY|ACCESS MODES|RECLAIM POLICY|STATUS|CLAIM|"
				       "STORAGECLASS|VOLUMEATTRIBUTESCLASS|REASON|AGE||VOLUMEMODE" },
		{ "persistentvolumeclaims", "NAME|STATUS|VOLUME|CAPACITY|ACCESS MODES|STORAGECLASS|"
					    "VOLUMEATTRIBUTESCLASS|AGE||VOLUMEMODE" },
		{ "leases", "NAME|HOLDER|AGE" },
		{ "widgets", "NAME|AGE" },
	};
	char got[512];

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (strcmp(want[i][0], "events") == 0)
			continue;
		headers(want[i][0], got, sizeof(got));
		if (strcmp(got, want[i][1]) != 0)
			fail_msg("%s: got %s, want %s", want[i][0], got, want[i][1]);
	}
}

/* Events interleave: MESSAGE is a default column after two wide ones; kubectl
 * shows LAST SEEN TYPE REASON OBJECT MESSAGE by default. */
static void test_event_columns(void **state)
{
	(void)state;
	json_t *items = json_array();
	json_t *t = table_build("events", items, NULL, T0);
	json_t *c;
	size_t i;
	char deflt[256] = "", wide[256] = "";

	json_array_foreach(json_object_get(t, "columnDefinitions"), i, c) {
		char *dst = json_integer_value(json_object_get(c, "priority")) == 0 ? deflt : wide;
		strcat(dst, json_string_value(json_object_get(c, "name")));
		strcat(dst, "|");
	}
	assert_string_equal(deflt, "Last Seen|Type|Reason|Object|Message|");
	assert_string_equal(wide, "Subobject|Source|First Seen|Count|Name|");
	json_decref(t);
	json_decref(items);
}

/* The pods table has the captured shape: kind, metadata, column fields,
 * and rows carrying PartialObjectMetadata with the object's metadata. */
static void test_pod_table_shape(void **state)
{
	(void)state;
	json_t *items = j("[{\"metadata\":{\"name\":\"web-5ca3a07244-9qdxr\",\"namespace\":\"default\","
			  "\"uid\":\"74ce18b2\",\"creationTimestamp\":\"2026-11-27T00:42:21Z\","
			  "\"labels\":{\"app\":\"web\"},\"resourceVersion\":\"120\"},"
			  "\"spec\":{\"nodeName\":\"node-1\",\"containers\":[{\"name\":\"web\",\"image\":\"nginx\"}]},"
			  "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.0.199\",\"containerStatuses\":"
			  "[{\"name\":\"web\",\"ready\":true,\"restartCount\":0,\"state\":{\"running\":"
			  "{\"startedAt\":\"2026-11-27T00:42:25Z\"}}}]}}]");
	json_t *t = table_build("pods", items, "127", T0 + 14);
	json_t *want_cells = j("[\"web-5ca3a07244-9qdxr\",\"1/1\",\"Running\",0,\"14s\","
			       "\"10.244.0.199\",\"node-1\",\"<none>\",\"<none>\"]");
	json_t *col0 = json_array_get(json_object_get(t, "columnDefinitions"), 0);
	json_t *row = json_array_get(json_object_get(t, "rows"), 0);

	assert_string_equal(json_string_value(json_object_get(t, "kind")), "Table");
	assert_string_equal(json_string_value(json_object_get(t, "apiVersion")), "meta.k8s.io/v1");
	assert_string_equal(json_string_value(json_object_get(json_object_get(t, "metadata"),
							       "resourceVersion")), "127");
	assert_string_equal(json_string_value(json_object_get(col0, "format")), "name");
	assert_string_equal(json_string_value(json_object_get(col0, "type")), "string");
	assert_string_equal(json_string_value(json_object_get(col0, "description")), "Name column");
	assert_true(json_equal(json_object_get(row, "cells"), want_cells));
	json_t *obj = json_object_get(row, "object");
	assert_string_equal(json_string_value(json_object_get(obj, "kind")), "PartialObjectMetadata");
	assert_string_equal(json_string_value(json_object_get(obj, "apiVersion")), "meta.k8s.io/v1");
	assert_true(json_equal(json_object_get(obj, "metadata"),
			       json_object_get(json_array_get(items, 0), "metadata")));
	json_decref(want_cells);
	json_decref(t);
	json_decref(items);
}

/* Ages print as duration.HumanDuration prints them (cases from its tests). */
static void test_human_duration(void **state)
{
	(void)state;
	static const struct {
		long long d;
		const char *want;
	} cases[] = {
		{ 0, "0s" }, { -1, "0s" }, { -2, "<invalid>" }, { 1, "1s" }, { 70, "70s" },
		{ 119, "119s" }, { 120, "2m" }, { 190, "3m10s" }, { 599, "9m59s" }, { 600, "10m" },
		{ 70 * 60, "70m" }, { 3 * 3600, "3h" }, { 5 * 3600 + 30 * 60, "5h30m" },
		{ 8 * 3600, "8h" }, { 47 * 3600, "47h" }, { 48 * 3600, "2d" },
		{ 49 * 3600, "2d1h" }, { (8 * 24 + 2) * 3600LL, "8d" },
		{ 367 * 24 * 3600LL, "367d" }, { (365 * 2 * 24 + 25) * 3600LL, "2y1d" },
		{ (365 * 8 * 24 + 2) * 3600LL, "8y" },
	};
	char buf[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		table_human_duration(cases[i].d, buf, sizeof(buf));
		if (strcmp(buf, cases[i].want) != 0)
			fail_msg("%lld: got %s, want %s", cases[i].d, buf, cases[i].want);
	}
	assert_int_equal(table_parse_time("2026-11-27T00:42:21Z"), T0);
	assert_int_equal(table_parse_time("2026-11-27T00:42:21.123456Z"), T0);
	assert_int_equal(table_parse_time("2026-11-27T02:42:21+02:00"), T0);
	assert_int_equal(table_parse_time("yesterday"), -1);
}

static json_t *pod_cells(const char *pod_json, time_t now)
{
	json_t *pod = j(pod_json);
	json_t *cells = table_row_cells("pods", pod, now);

	json_decref(pod);
	return cells;
}

static void expect_pod(const char *pod_json, const char *ready, const char *status)
{
	json_t *cells = pod_cells(pod_json, T0 + 60);
	const char *r = json_string_value(json_array_get(cells, 1));
	const char *s = json_string_value(json_array_get(cells, 2));

	if (strcmp(r, ready) != 0 || strcmp(s, status) != 0)
		fail_msg("got %s %s, want %s %s for %s", r, s, ready, status, pod_json);
	json_decref(cells);
}

#define META "\"metadata\":{\"name\":\"p\",\"creationTimestamp\":\"2026-11-27T00:42:21Z\"}"
#define ONE "\"spec\":{\"containers\":[{\"name\":\"c\"}]}"
#define TWO "\"spec\":{\"containers\":[{\"name\":\"a\"},{\"name\":\"b\"}]}"

/* STATUS and READY follow kubectl's printPod rules for each container state. */
static void test_pod_status(void **state)
{
	(void)state;
	/* unscheduled: just the phase */
	expect_pod("{" META "," ONE ",\"status\":{\"phase\":\"Pending\"}}", "0/1", "Pending");
	/* image being pulled */
	expect_pod("{" META "," ONE ",\"status\":{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"c\","
		   "\"ready\":false,\"state\":{\"waiting\":{\"reason\":\"ContainerCreating\"}}}]}}",
		   "0/1", "ContainerCreating");
	expect_pod("{" META "," ONE ",\"status\":{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"c\","
		   "\"state\":{\"waiting\":{\"reason\":\"ErrImagePull\"}}}]}}", "0/1", "ErrImagePull");
	/* running but not ready yet */
	expect_pod("{" META "," ONE ",\"status\":{\"phase\":\"Running\",\"containerStatuses\":[{\"name\":\"c\","
		   "\"ready\":false,\"state\":{\"running\":{}}}]}}", "0/1", "Running");
	/* one of two ready */
	expect_pod("{" META "," TWO ",\"status\":{\"phase\":\"Running\",\"containerStatuses\":["
		   "{\"name\":\"a\",\"ready\":true,\"state\":{\"running\":{}}},"
		   "{\"name\":\"b\",\"ready\":false,\"state\":{\"running\":{}}}]}}", "1/2", "Running");
	/* finished successfully */
	expect_pod("{" META "," ONE ",\"status\":{\"phase\":\"Succeeded\",\"containerStatuses\":[{\"name\":\"c\","
		   "\"state\":{\"terminated\":{\"exitCode\":0,\"reason\":\"Completed\"}}}]}}",
		   "0/1", "Completed");
	/* failed with a reason, and without one */
	expect_pod("{" META "," ONE ",\"status\":{\"phase\":\"Failed\",\"containerStatuses\":[{\"name\":\"c\","
		   "\"state\":{\"terminated\":{\"exitCode\":1,\"reason\":\"Error\"}}}]}}", "0/1", "Error");
	expect_pod("{" META "," ONE ",\"status\":{\"phase\":\"Failed\",\"containerStatuses\":[{\"name\":\"c\","
		   "\"state\":{\"terminated\":{\"exitCode\":137}}}]}}", "0/1", "ExitCode:137");
	expect_pod("{" META "," ONE ",\"status\":{\"phase\":\"Failed\",\"containerStatuses\":[{\"name\":\"c\","
		   "\"state\":{\"terminated\":{\"exitCode\":0,\"signal\":9}}}]}}", "0/1", "Signal:9");
	/* crash looping */
	expect_pod("{" META "," ONE ",\"status\":{\"phase\":\"Running\",\"containerStatuses\":[{\"name\":\"c\","
		   "\"restartCount\":3,\"state\":{\"waiting\":{\"reason\":\"CrashLoopBackOff\"}}}]}}",
		   "0/1", "CrashLoopBackOff");
	/* one container completed, the other still running and ready */
	expect_pod("{" META "," TWO ",\"status\":{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\","
		   "\"status\":\"True\"}],\"containerStatuses\":["
		   "{\"name\":\"a\",\"state\":{\"terminated\":{\"exitCode\":0,\"reason\":\"Completed\"}}},"
		   "{\"name\":\"b\",\"ready\":true,\"state\":{\"running\":{}}}]}}", "1/2", "Running");
	expect_pod("{" META "," TWO ",\"status\":{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\","
		   "\"status\":\"False\"}],\"containerStatuses\":["
		   "{\"name\":\"b\",\"ready\":true,\"state\":{\"running\":{}}},"
		   "{\"name\":\"a\",\"state\":{\"terminated\":{\"exitCode\":0,\"reason\":\"Completed\"}}}]}}",
		   "1/2", "NotReady");
	/* being deleted */
	expect_pod("{\"metadata\":{\"name\":\"p\",\"deletionTimestamp\":\"2026-11-27T00:43:00Z\"}," ONE
		   ",\"status\":{\"phase\":\"Running\",\"containerStatuses\":[{\"name\":\"c\",\"ready\":true,"
		   "\"state\":{\"running\":{}}}]}}", "1/1", "Terminating");
	/* pod-level reason (evicted) wins over the phase */
	expect_pod("{" META "," ONE ",\"status\":{\"phase\":\"Failed\",\"reason\":\"Evicted\"}}", "0/1",
		   "Evicted");
}

#define INIT1 "\"spec\":{\"initContainers\":[{\"name\":\"i\"}],\"containers\":[{\"name\":\"c\"}]}"

/* Init containers show as Init:N/M, Init:<reason>, and sidecars count as containers. */
static void test_pod_init_status(void **state)
{
	(void)state;
	expect_pod("{" META "," INIT1 ",\"status\":{\"phase\":\"Pending\",\"initContainerStatuses\":[{\"name\":\"i\","
		   "\"state\":{\"running\":{}}}],\"containerStatuses\":[{\"name\":\"c\",\"state\":{\"waiting\":"
		   "{\"reason\":\"PodInitializing\"}}}]}}", "0/1", "Init:0/1");
	expect_pod("{" META "," INIT1 ",\"status\":{\"phase\":\"Pending\",\"initContainerStatuses\":[{\"name\":\"i\","
		   "\"state\":{\"terminated\":{\"exitCode\":1,\"reason\":\"Error\"}}}]}}", "0/1", "Init:Error");
	expect_pod("{" META "," INIT1 ",\"status\":{\"phase\":\"Pending\",\"initContainerStatuses\":[{\"name\":\"i\","
		   "\"state\":{\"waiting\":{\"reason\":\"CrashLoopBackOff\"}}}]}}", "0/1",
		   "Init:CrashLoopBackOff");
	expect_pod("{" META "," INIT1 ",\"status\":{\"phase\":\"Pending\",\"initContainerStatuses\":[{\"name\":\"i\","
		   "\"state\":{\"terminated\":{\"exitCode\":2}}}]}}", "0/1", "Init:ExitCode:2");
	/* init done: the regular container decides */
	expect_pod("{" META "," INIT1 ",\"status\":{\"phase\":\"Running\",\"initContainerStatuses\":[{\"name\":\"i\","
		   "\"state\":{\"terminated\":{\"exitCode\":0,\"reason\":\"Completed\"}}}],"
		   "\"containerStatuses\":[{\"name\":\"c\",\"ready\":true,\"state\":{\"running\":{}}}]}}",
		   "1/1", "Running");
	/* a started sidecar does not hold the pod in Init, and counts as a container */
	expect_pod("{" META ",\"spec\":{\"initContainers\":[{\"name\":\"s\",\"restartPolicy\":\"Always\"}],"
		   "\"containers\":[{\"name\":\"c\"}]},\"status\":{\"phase\":\"Running\","
		   "\"initContainerStatuses\":[{\"name\":\"s\",\"started\":true,\"ready\":true,"
		   "\"state\":{\"running\":{}}}],\"containerStatuses\":[{\"name\":\"c\",\"ready\":true,"
		   "\"state\":{\"running\":{}}}]}}", "2/2", "Running");
}

/* RESTARTS sums the containers' restarts and says how long ago the last was. */
static void test_pod_restarts(void **state)
{
	(void)state;
	json_t *cells = pod_cells("{" META "," TWO ",\"status\":{\"phase\":\"Running\",\"containerStatuses\":["
				  "{\"name\":\"a\",\"restartCount\":2,\"state\":{\"running\":{}},\"lastState\":"
				  "{\"terminated\":{\"finishedAt\":\"2026-11-27T00:43:21Z\"}}},"
				  "{\"name\":\"b\",\"restartCount\":1,\"state\":{\"running\":{}},\"lastState\":"
				  "{\"terminated\":{\"finishedAt\":\"2026-11-27T00:44:21Z\"}}}]}}",
				  T0 + 300);

	assert_string_equal(json_string_value(json_array_get(cells, 3)), "3 (3m ago)");
	assert_string_equal(json_string_value(json_array_get(cells, 4)), "5m");
	json_decref(cells);
	cells = pod_cells("{" META "," ONE ",\"status\":{\"phase\":\"Running\",\"containerStatuses\":["
			  "{\"name\":\"c\",\"restartCount\":4,\"state\":{\"running\":{}}}]}}", T0);
	assert_int_equal(json_integer_value(json_array_get(cells, 3)), 4);
	json_decref(cells);
}

static json_t *cells_of(const char *resource, const char *obj_json, time_t now)
{
	json_t *o = j(obj_json);
	json_t *cells = table_row_cells(resource, o, now);

	json_decref(o);
	return cells;
}

static void expect_cells(const char *resource, const char *obj_json, const char *want_json)
{
	json_t *got = cells_of(resource, obj_json, T0 + 3600);
	json_t *want = j(want_json);

	if (!json_equal(got, want)) {
		char *g = json_dumps(got, 0);
		fail_msg("%s: got %s, want %s", resource, g, want_json);
	}
	json_decref(got);
	json_decref(want);
}

/* Node STATUS from the Ready condition and cordoning; ROLES from labels. */
static void test_node_cells(void **state)
{
	(void)state;
	expect_cells("nodes",
		     "{" META ",\"metadata\":{\"name\":\"n1\",\"creationTimestamp\":\"2026-11-27T00:42:21Z\","
		     "\"labels\":{\"node-role.kubernetes.io/control-plane\":\"\",\"node-role.kubernetes.io/worker\":\"\"}},"
		     "\"spec\":{\"unschedulable\":true},\"status\":{\"conditions\":[{\"type\":\"MemoryPressure\","
		     "\"status\":\"False\"},{\"type\":\"Ready\",\"status\":\"True\"}],\"addresses\":["
		     "{\"type\":\"InternalIP\",\"address\":\"10.0.0.1\"},{\"type\":\"Hostname\",\"address\":\"n1\"}],"
		     "\"nodeInfo\":{\"kubeletVersion\":\"v1.32.0\",\"osImage\":\"Debian\",\"kernelVersion\":\"6.1\","
		     "\"containerRuntimeVersion\":\"capstan://0.1\"}}}",
		     "[\"n1\",\"Ready,SchedulingDisabled\",\"control-plane,worker\",\"60m\",\"v1.32.0\","
		     "\"10.0.0.1\",\"<none>\",\"Debian\",\"6.1\",\"capstan://0.1\"]");
	expect_cells("nodes", "{\"metadata\":{\"name\":\"n2\"},\"status\":{\"conditions\":[{\"type\":\"Ready\","
			      "\"status\":\"Unknown\"}]}}",
		     "[\"n2\",\"NotReady\",\"<none>\",\"<unknown>\",\"\",\"<none>\",\"<none>\",\"<unknown>\","
		     "\"<unknown>\",\"<unknown>\"]");
	expect_cells("nodes", "{\"metadata\":{\"name\":\"n3\"}}",
		     "[\"n3\",\"Unknown\",\"<none>\",\"<unknown>\",\"\",\"<none>\",\"<none>\",\"<unknown>\","
		     "\"<unknown>\",\"<unknown>\"]");
}

/* Service cells: ports with node ports, external IPs per type, selector. */
static void test_service_cells(void **state)
{
	(void)state;
	expect_cells("services",
		     "{" META ",\"spec\":{\"type\":\"NodePort\",\"clusterIP\":\"10.96.0.10\",\"selector\":"
		     "{\"app\":\"web\",\"a\":\"b\"},\"ports\":[{\"port\":80,\"protocol\":\"TCP\",\"nodePort\":30080},"
		     "{\"port\":53,\"protocol\":\"UDP\"}]}}",
		     "[\"p\",\"NodePort\",\"10.96.0.10\",\"<none>\",\"80:30080/TCP,53/UDP\",\"60m\",\"a=b,app=web\"]");
	expect_cells("services", "{" META ",\"spec\":{\"type\":\"LoadBalancer\",\"clusterIP\":\"10.96.0.11\","
				 "\"ports\":[{\"port\":443,\"protocol\":\"TCP\",\"nodePort\":31443}]}}",
		     "[\"p\",\"LoadBalancer\",\"10.96.0.11\",\"<pending>\",\"443:31443/TCP\",\"60m\",\"<none>\"]");
	expect_cells("services", "{" META ",\"spec\":{\"type\":\"ExternalName\",\"externalName\":\"db.example.com\"}}",
		     "[\"p\",\"ExternalName\",\"<none>\",\"db.example.com\",\"<none>\",\"60m\",\"<none>\"]");
	expect_cells("services", "{" META ",\"spec\":{\"clusterIP\":\"None\",\"externalIPs\":[\"1.2.3.4\"],"
				 "\"ports\":[{\"port\":80,\"protocol\":\"TCP\"}]}}",
		     "[\"p\",\"ClusterIP\",\"None\",\"1.2.3.4\",\"80/TCP\",\"60m\",\"<none>\"]");
}

/* EndpointSlices: address type, up to three ports and addresses then how
 * many more, <unset> for none. */
static void test_endpointslice_cells(void **state)
{
	(void)state;
	expect_cells("endpointslices", "{" META ",\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"web\","
				       "\"port\":8080},{\"name\":\"m\"}],\"endpoints\":[{\"addresses\":[\"10.1.0.1\"]},"
				       "{\"addresses\":[\"10.1.0.2\"]},{\"addresses\":[\"10.1.0.3\"]},"
				       "{\"addresses\":[\"10.1.0.4\"]},{\"addresses\":[\"10.1.0.5\"]}]}",
		     "[\"p\",\"IPv4\",\"8080,m\",\"10.1.0.1,10.1.0.2,10.1.0.3 + 2 more...\",\"60m\"]");
	expect_cells("endpointslices", "{" META ",\"addressType\":\"IPv4\"}",
		     "[\"p\",\"IPv4\",\"<unset>\",\"<unset>\",\"60m\"]");
}

/* Endpoints show three ip:port pairs, then how many more. */
static void test_endpoints_cells(void **state)
{
	(void)state;
	expect_cells("endpoints", "{" META ",\"subsets\":[{\"addresses\":[{\"ip\":\"10.0.0.1\"},{\"ip\":\"10.0.0.2\"}],"
				  "\"ports\":[{\"port\":80},{\"port\":443}]}]}",
		     "[\"p\",\"10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...\",\"60m\"]");
	expect_cells("endpoints", "{" META ",\"subsets\":[{\"addresses\":[{\"ip\":\"10.0.0.1\"}],"
				  "\"ports\":[{\"port\":8080}]}]}", "[\"p\",\"10.0.0.1:8080\",\"60m\"]");
	expect_cells("endpoints", "{" META "}", "[\"p\",\"<none>\",\"60m\"]");
}

/* Workloads: counts, READY as ready/desired, and the wide columns. */
static void test_workload_cells(void **state)
{
	(void)state;
	expect_cells("deployments",
		     "{" META ",\"spec\":{\"replicas\":3,\"selector\":{\"matchLabels\":{\"app\":\"web\"}},"
		     "\"template\":{\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"nginx:1.27\"},"
		     "{\"name\":\"log\",\"image\":\"busybox\"}]}}},\"status\":{\"readyReplicas\":2,"
		     "\"updatedReplicas\":3,\"availableReplicas\":2}}",
		     "[\"p\",\"2/3\",3,2,\"60m\",\"web,log\",\"nginx:1.27,busybox\",\"app=web\"]");
	expect_cells("replicasets",
		     "{" META ",\"spec\":{\"replicas\":2,\"selector\":{\"matchLabels\":{\"app\":\"web\","
		     "\"pod-template-hash\":\"5ca3\"}},\"template\":{\"spec\":{\"containers\":[{\"name\":\"web\","
		     "\"image\":\"nginx\"}]}}},\"status\":{\"replicas\":2,\"readyReplicas\":1}}",
		     "[\"p\",2,2,1,\"60m\",\"web\",\"nginx\",\"app=web,pod-template-hash=5ca3\"]");
	expect_cells("daemonsets",
		     "{" META ",\"spec\":{\"selector\":{\"matchExpressions\":[{\"key\":\"k\",\"operator\":\"Exists\"}]},"
		     "\"template\":{\"spec\":{\"nodeSelector\":{\"kubernetes.io/os\":\"linux\"},\"containers\":"
		     "[{\"name\":\"agent\",\"image\":\"agent:1\"}]}}},\"status\":{\"desiredNumberScheduled\":3,"
		     "\"currentNumberScheduled\":3,\"numberReady\":2,\"updatedNumberScheduled\":3,\"numberAvailable\":2}}",
		     "[\"p\",3,3,2,3,2,\"kubernetes.io/os=linux\",\"60m\",\"agent\",\"agent:1\",\"k\"]");
}

/* Small resources: counts of data, secrets, the lease holder, PV claims. */
static void test_misc_cells(void **state)
{
	(void)state;
	expect_cells("namespaces", "{" META ",\"status\":{\"phase\":\"Active\"}}", "[\"p\",\"Active\",\"60m\"]");
	expect_cells("configmaps", "{" META ",\"data\":{\"a\":\"1\",\"b\":\"2\"},\"binaryData\":{\"c\":\"AA==\"}}",
		     "[\"p\",3,\"60m\"]");
	expect_cells("secrets", "{" META ",\"type\":\"Opaque\",\"data\":{\"a\":\"MQ==\"}}",
		     "[\"p\",\"Opaque\",1,\"60m\"]");
	expect_cells("serviceaccounts", "{" META "}", "[\"p\",0,\"60m\"]");
	expect_cells("leases", "{" META ",\"spec\":{\"holderIdentity\":\"node-1\"}}",
		     "[\"p\",\"node-1\",\"60m\"]");
	expect_cells("persistentvolumes",
		     "{" META ",\"spec\":{\"capacity\":{\"storage\":\"5Gi\"},\"accessModes\":[\"ReadWriteMany\","
		     "\"ReadWriteOnce\"],\"persistentVolumeReclaimPolicy\":\"Retain\",\"claimRef\":{\"namespace\":"
		     "\"default\",\"name\":\"data\"},\"storageClassName\":\"slow\",\"volumeMode\":\"Filesystem\"},"
		     "\"status\":{\"phase\":\"Bound\"}}",
		     "[\"p\",\"5Gi\",\"RWO,RWX\",\"Retain\",\"Bound\",\"default/data\",\"slow\",\"<unset>\",\"\","
		     "\"60m\",\"Filesystem\"]");
	expect_cells("persistentvolumeclaims",
		     "{" META ",\"spec\":{\"volumeName\":\"pv1\",\"storageClassName\":\"slow\",\"volumeMode\":"
		     "\"Filesystem\"},\"status\":{\"phase\":\"Bound\",\"capacity\":{\"storage\":\"5Gi\"},"
		     "\"accessModes\":[\"ReadWriteOnce\"]}}",
		     "[\"p\",\"Bound\",\"pv1\",\"5Gi\",\"RWO\",\"slow\",\"<unset>\",\"60m\",\"Filesystem\"]");
	expect_cells("persistentvolumeclaims", "{" META ",\"spec\":{},\"status\":{\"phase\":\"Pending\"}}",
		     "[\"p\",\"Pending\",\"\",\"\",\"\",\"\",\"<unset>\",\"60m\",\"<unset>\"]");
	expect_cells("widgets", "{" META "}", "[\"p\",\"60m\"]");
}

/* Events: OBJECT is kind/name in lower case, counts default to 1, source joins host. */
static void test_event_cells(void **state)
{
	(void)state;
	expect_cells("events",
		     "{\"metadata\":{\"name\":\"web.17a\"},\"type\":\"Normal\",\"reason\":\"Scheduled\","
		     "\"message\":\"Successfully assigned default/web to node-1\\n\",\"involvedObject\":"
		     "{\"kind\":\"Pod\",\"name\":\"web\",\"fieldPath\":\"spec.containers{web}\"},"
		     "\"source\":{\"component\":\"kubelet\",\"host\":\"node-1\"},"
		     "\"firstTimestamp\":\"2026-11-27T00:42:21Z\",\"lastTimestamp\":\"2026-11-27T01:32:21Z\"}",
		     "[\"10m\",\"Normal\",\"Scheduled\",\"pod/web\",\"spec.containers{web}\",\"kubelet, node-1\","
		     "\"Successfully assigned default/web to node-1\",\"60m\",1,\"web.17a\"]");
	expect_cells("events",
		     "{\"metadata\":{\"name\":\"e\"},\"type\":\"Warning\",\"reason\":\"BackOff\",\"count\":5,"
		     "\"involvedObject\":{\"kind\":\"Node\"},\"reportingController\":\"capstan-agent\","
		     "\"eventTime\":\"2026-11-27T00:42:21.000000Z\"}",
		     "[\"60m\",\"Warning\",\"BackOff\",\"node\",\"\",\"capstan-agent\",\"\",\"60m\",5,\"e\"]");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_columns_per_resource),
		cmocka_unit_test(test_event_columns),
		cmocka_unit_test(test_pod_table_shape),
		cmocka_unit_test(test_human_duration),
		cmocka_unit_test(test_pod_status),
		cmocka_unit_test(test_pod_init_status),
		cmocka_unit_test(test_pod_restarts),
		cmocka_unit_test(test_node_cells),
		cmocka_unit_test(test_service_cells),
		cmocka_unit_test(test_endpoints_cells),
		cmocka_unit_test(test_endpointslice_cells),
		cmocka_unit_test(test_workload_cells),
		cmocka_unit_test(test_misc_cells),
		cmocka_unit_test(test_event_cells),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
