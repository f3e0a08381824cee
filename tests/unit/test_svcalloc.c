/* Unit tests of what a Service update keeps and what a removal releases
 * (orchestrator/api/svcalloc.c): the carry-over kube-apiserver does for
 * clients that leave allocated values out, and the store operations that
 * free a Service's records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/b64.h"
#include "orchestrator/api/svcalloc.h"

static json_t *j(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);
	if (v == NULL)
		fail_msg("bad JSON in test: %s", e.text);
	return v;
}

static const char node_port_svc[] =
	"{\"spec\":{\"type\":\"NodePort\",\"clusterIP\":\"10.96.4.4\",\"clusterIPs\":[\"10.96.4.4\"],"
	"\"externalTrafficPolicy\":\"Cluster\",\"ports\":[{\"name\":\"a\",\"port\":80,\"protocol\":\"TCP\",\"nodePort\":30001},"
	"{\"name\":\"b\",\"port\":53,\"protocol\":\"UDP\",\"nodePort\":30002}]}}";

/* An update that leaves out clusterIP, clusterIPs and nodePorts gets the
 * current ones back, matched by port and protocol. */
static void test_carry_over(void **state)
{
	json_t *cur = j(node_port_svc);
	json_t *next = j("{\"spec\":{\"type\":\"NodePort\",\"ports\":[{\"name\":\"b\",\"port\":53,"
			 "\"protocol\":\"UDP\"},{\"name\":\"a\",\"port\":80,\"protocol\":\"TCP\"},"
			 "{\"name\":\"c\",\"port\":81,\"protocol\":\"TCP\"}]}}");
	json_t *spec, *ports;
	(void)state;
	svcalloc_patch_update(next, cur);
	spec = json_object_get(next, "spec");
	ports = json_object_get(spec, "ports");
	assert_string_equal(json_string_value(json_object_get(spec, "clusterIP")), "10.96.4.4");
	assert_true(json_equal(json_object_get(spec, "clusterIPs"),
			       json_object_get(json_object_get(cur, "spec"), "clusterIPs")));
	assert_int_equal(json_integer_value(json_object_get(json_array_get(ports, 0), "nodePort")),
			 30002);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(ports, 1), "nodePort")),
			 30001);
	assert_null(json_object_get(json_array_get(ports, 2), "nodePort"));
	json_decref(cur);
	json_decref(next);
}

/* A changed clusterIP drags clusterIPs along (so validation sees the change
 * on clusterIPs[0], as Kubernetes reports it). */
static void test_changed_ip_moves_cluster_ips(void **state)
{
	json_t *cur = j(node_port_svc);
	json_t *next = j(node_port_svc);
	(void)state;
	json_object_set_new(json_object_get(next, "spec"), "clusterIP", json_string("10.96.9.9"));
	svcalloc_patch_update(next, cur);
	assert_string_equal(json_string_value(json_array_get(json_object_get(
				    json_object_get(next, "spec"), "clusterIPs"), 0)), "10.96.9.9");
	json_decref(cur);
	json_decref(next);
}

/* Back to ClusterIP drops the node ports (and externalTrafficPolicy) the
 * client left as they were; to ExternalName drops the cluster IP and its
 * families. */
static void test_type_changes_drop_allocations(void **state)
{
	json_t *cur = j(node_port_svc);
	json_t *next = j(node_port_svc);
	json_t *spec;
	(void)state;
	json_object_set_new(json_object_get(next, "spec"), "type", json_string("ClusterIP"));
	svcalloc_patch_update(next, cur);
	spec = json_object_get(next, "spec");
	assert_null(json_object_get(json_array_get(json_object_get(spec, "ports"), 0), "nodePort"));
	assert_null(json_object_get(json_array_get(json_object_get(spec, "ports"), 1), "nodePort"));
	assert_string_equal(json_string_value(json_object_get(spec, "clusterIP")), "10.96.4.4");
	assert_null(json_object_get(spec, "externalTrafficPolicy"));
	json_decref(next);

	next = j(node_port_svc);
	spec = json_object_get(next, "spec");
	json_object_set_new(spec, "type", json_string("ExternalName"));
	json_object_set_new(spec, "ipFamilies", json_pack("[s]", "IPv4"));
	svcalloc_patch_update(next, cur);
	assert_null(json_object_get(spec, "clusterIP"));
	assert_null(json_object_get(spec, "clusterIPs"));
	assert_null(json_object_get(spec, "ipFamilies"));
	json_decref(next);
	json_decref(cur);
}

/* Whether ops holds a delete of key. */
static bool deletes(json_t *ops, const char *key)
{
	json_t *op;
	size_t i;
	json_array_foreach(ops, i, op) {
		const char *k = json_string_value(
			json_object_get(json_object_get(op, "request_delete_range"), "key"));
		uint8_t buf[256];
		long n = k != NULL ? b64_decode(k, strlen(k), buf) : -1;
		if (n == (long)strlen(key) && memcmp(buf, key, (size_t)n) == 0)
			return true;
	}
	return false;
}

/* Removing a Service frees its IP record, each node port once (one number
 * shared by TCP and UDP is one record) and its health check port; a
 * headless or ExternalName Service holds nothing. */
static void test_release(void **state)
{
	json_t *svc = j("{\"spec\":{\"type\":\"NodePort\",\"clusterIP\":\"10.96.4.4\",\"ports\":["
			"{\"port\":53,\"protocol\":\"TCP\",\"nodePort\":30053},"
			"{\"port\":53,\"protocol\":\"UDP\",\"nodePort\":30053},"
			"{\"port\":80,\"protocol\":\"TCP\",\"nodePort\":30080}]}}");
	json_t *ops = json_array();
	(void)state;
	svcalloc_release(svc, ops);
	assert_int_equal(json_array_size(ops), 3);
	assert_true(deletes(ops, SVCALLOC_IP_PREFIX "10.96.4.4"));
	assert_true(deletes(ops, SVCALLOC_PORT_PREFIX "30053"));
	assert_true(deletes(ops, SVCALLOC_PORT_PREFIX "30080"));
	json_decref(svc);
	json_array_clear(ops);
	/* A LoadBalancer with externalTrafficPolicy Local holds its health
	 * check port too. */
	svc = j("{\"spec\":{\"type\":\"LoadBalancer\",\"externalTrafficPolicy\":\"Local\","
		"\"healthCheckNodePort\":30999,\"ports\":[{\"port\":80,\"nodePort\":30080}]}}");
	svcalloc_release(svc, ops);
	assert_int_equal(json_array_size(ops), 2);
	assert_true(deletes(ops, SVCALLOC_PORT_PREFIX "30999"));
	json_decref(svc);
	json_array_clear(ops);
	svc = j("{\"spec\":{\"clusterIP\":\"None\",\"ports\":[{\"port\":80}]}}");
	svcalloc_release(svc, ops);
	json_decref(svc);
	svc = j("{\"spec\":{\"type\":\"ExternalName\",\"externalName\":\"a.example.com\"}}");
	svcalloc_release(svc, ops);
	json_decref(svc);
	assert_int_equal(json_array_size(ops), 0);
	json_decref(ops);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_carry_over),
		cmocka_unit_test(test_changed_ip_moves_cluster_ips),
		cmocka_unit_test(test_type_changes_drop_allocations),
		cmocka_unit_test(test_release),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
