/* test_protobuf.c — the protobuf envelope and DeleteOptions as kubectl 1.32+
 * sends them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/err.h"
#include "orchestrator/api/protobuf.h"

/* Copies bytes into an exactly sized heap buffer (ASan catches over-reads). */
static uint8_t *dup_exact(const char *bytes, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);
	memcpy(p, bytes, n);
	return p;
}

/* kubectl's `delete --dry-run=server --grace-period=0 --cascade=background`
 * body decodes to the same options as its JSON form. */
static void test_delete_options_envelope(void **state)
{
	(void)state;
	static const char msg[] =
		"k8s\0"
		"\x0a\x13" "\x0a\x02" "v1" "\x12\x0d" "DeleteOptions"
		"\x12\x19" "\x08\x00" "\x22\x0a" "Background" "\x2a\x03" "All"
		"\x12\x04" "\x12\x02" "42";
	size_t n = sizeof msg - 1;
	uint8_t *buf = dup_exact(msg, n);
	const uint8_t *raw;
	size_t raw_len;
	char kind[32], api_version[32], errmsg[CAP_ERRMSG_SIZE];

	assert_int_equal(pb_unwrap(buf, n, &raw, &raw_len, kind, sizeof kind, api_version,
				   sizeof api_version), 0);
	assert_string_equal(kind, "DeleteOptions");
	assert_string_equal(api_version, "v1");
	json_t *o = pb_delete_options_to_json(raw, raw_len, errmsg);
	assert_non_null(o);
	assert_int_equal(json_integer_value(json_object_get(o, "gracePeriodSeconds")), 0);
	assert_string_equal(json_string_value(json_object_get(o, "propagationPolicy")), "Background");
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "dryRun"), 0)), "All");
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "preconditions"),
							     "resourceVersion")), "42");
	json_decref(o);
	free(buf);
}

/* Bodies that are not the envelope, or that lie about lengths, are refused
 * without reading past the buffer. */
static void test_malformed_refused(void **state)
{
	(void)state;
	static const struct {
		const char *bytes;
		size_t n;
	} cases[] = {
		{"k8s", 3},                       /* too short for the magic */
		{"k9s\0\x12\x00", 6},             /* wrong magic */
		{"k8s\0\x12\x05" "ab", 8},        /* raw longer than the body */
		{"k8s\0\x0a\x80", 6},             /* truncated varint length */
		{"k8s\0\x0b", 5},                 /* wire type 3 (groups) */
		{"k8s\0\x02\x01", 6},             /* field number 0 */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint8_t *buf = dup_exact(cases[i].bytes, cases[i].n);
		const uint8_t *raw;
		size_t raw_len;
		char kind[8], api_version[8];
		assert_int_equal(pb_unwrap(buf, cases[i].n, &raw, &raw_len, kind, sizeof kind,
					   api_version, sizeof api_version), -1);
		free(buf);
	}
}

/* A DeleteOptions field with the wrong wire type, or a string that is not
 * UTF-8, is an error, not a silently different request. */
static void test_bad_fields_refused(void **state)
{
	(void)state;
	char errmsg[CAP_ERRMSG_SIZE];
	static const char wrong_type[] = "\x0a\x01" "x";        /* gracePeriodSeconds as bytes */
	static const char bad_utf8[] = "\x22\x02\xff\xfe";        /* propagationPolicy */
	uint8_t *a = dup_exact(wrong_type, sizeof wrong_type - 1);
	uint8_t *b = dup_exact(bad_utf8, sizeof bad_utf8 - 1);
	assert_null(pb_delete_options_to_json(a, sizeof wrong_type - 1, errmsg));
	assert_null(pb_delete_options_to_json(b, sizeof bad_utf8 - 1, errmsg));
	free(a);
	free(b);
}

/* Fields this version does not know are skipped, as Go's decoder does. */
static void test_unknown_fields_skipped(void **state)
{
	(void)state;
	char errmsg[CAP_ERRMSG_SIZE];
	static const char msg[] = "\x78\x05" "\x08\x1e";  /* field 15 varint, then grace 30 */
	uint8_t *buf = dup_exact(msg, sizeof msg - 1);
	json_t *o = pb_delete_options_to_json(buf, sizeof msg - 1, errmsg);
	assert_non_null(o);
	assert_int_equal(json_integer_value(json_object_get(o, "gracePeriodSeconds")), 30);
	json_decref(o);
	free(buf);
}

/* Only Kubernetes' protobuf media type is recognised. */
/* kubectl 1.33's `create service clusterip x --tcp=80:8080` body (captured)
 * decodes to the Service its JSON form describes: empty strings and zero
 * numbers left out, the named port with an integer targetPort. */
static void test_service_from_kubectl(void **state)
{
	static const char body[] =
		"\x6b\x38\x73\x00\x0a\x0d\x0a\x02\x76\x31\x12\x07\x53\x65\x72\x76\x69\x63"
		"\x65\x12\x63\x0a\x1b\x0a\x01\x78\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00"
		"\x38\x00\x42\x00\x5a\x08\x0a\x03\x61\x70\x70\x12\x01\x78\x12\x40\x0a\x1b"
		"\x0a\x07\x38\x30\x2d\x38\x30\x38\x30\x12\x03\x54\x43\x50\x18\x50\x22\x07"
		"\x08\x00\x10\x90\x3f\x1a\x00\x28\x00\x12\x08\x0a\x03\x61\x70\x70\x12\x01"
		"\x78\x1a\x00\x22\x09\x43\x6c\x75\x73\x74\x65\x72\x49\x50\x3a\x00\x42\x00"
		"\x52\x00\x5a\x00\x60\x00\x68\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";
	uint8_t *buf = dup_exact(body, sizeof body - 1);
	const uint8_t *raw;
	size_t raw_len;
	char kind[32], av[32], errmsg[CAP_ERRMSG_SIZE];
	json_t *o, *want;
	(void)state;
	assert_int_equal(pb_unwrap(buf, sizeof body - 1, &raw, &raw_len, kind, sizeof kind, av,
				   sizeof av), 0);
	assert_true(pb_object_known(av, kind));
	o = pb_object_to_json(av, kind, raw, raw_len, errmsg);
	assert_non_null(o);
	want = json_loads("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":"
			  "\"x\",\"labels\":{\"app\":\"x\"}},\"spec\":{\"ports\":[{\"name\":"
			  "\"80-8080\",\"protocol\":\"TCP\",\"port\":80,\"targetPort\":8080}],"
			  "\"selector\":{\"app\":\"x\"},\"type\":\"ClusterIP\"}}", 0, NULL);
	if (!json_equal(o, want)) {
		char *d = json_dumps(o, JSON_SORT_KEYS);
		fail_msg("decoded %s", d);
	}
	json_decref(want);
	json_decref(o);
	/* A truncated object is refused, never half-read. */
	assert_null(pb_object_to_json(av, kind, raw, raw_len - 3, errmsg));
	assert_false(pb_object_known("v1", "Pod"));
	free(buf);
}

/* kubectl 1.33's `create deployment web --image=nginx --replicas=3`
 * (captured) decodes with its replicas, selector, template and the
 * strategy object kubectl leaves empty. */
static void test_deployment_from_kubectl(void **state)
{
	static const char body[] =
		"\x6b\x38\x73\x00\x0a\x15\x0a\x07\x61\x70\x70\x73\x2f\x76\x31\x12\x0a\x44\x65\x70\x6c\x6f"
		"\x79\x6d\x65\x6e\x74\x12\xab\x01\x0a\x1f\x0a\x03\x77\x65\x62\x12\x00\x1a\x00\x22\x00\x2a"
		"\x00\x32\x00\x38\x00\x42\x00\x5a\x0a\x0a\x03\x61\x70\x70\x12\x03\x77\x65\x62\x12\x7a\x08"
		"\x03\x12\x0c\x0a\x0a\x0a\x03\x61\x70\x70\x12\x03\x77\x65\x62\x1a\x60\x0a\x1c\x0a\x00\x12"
		"\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x5a\x0a\x0a\x03\x61\x70\x70\x12\x03"
		"\x77\x65\x62\x12\x40\x12\x22\x0a\x05\x6e\x67\x69\x6e\x78\x12\x05\x6e\x67\x69\x6e\x78\x2a"
		"\x00\x42\x00\x6a\x00\x72\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x00\x32"
		"\x00\x42\x00\x4a\x00\x52\x00\x58\x00\x60\x00\x68\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00"
		"\xc2\x01\x00\x22\x02\x0a\x00\x28\x00\x38\x00\x1a\x0c\x08\x00\x10\x00\x18\x00\x20\x00\x28"
		"\x00\x38\x00\x1a\x00\x22\x00";
	uint8_t *buf = dup_exact(body, sizeof body - 1);
	const uint8_t *raw;
	size_t raw_len;
	char kind[32], av[32], errmsg[CAP_ERRMSG_SIZE];
	json_t *o, *want;
	(void)state;
	assert_int_equal(pb_unwrap(buf, sizeof body - 1, &raw, &raw_len, kind, sizeof kind, av,
				   sizeof av), 0);
	assert_string_equal(av, "apps/v1");
	o = pb_object_to_json(av, kind, raw, raw_len, errmsg);
	assert_non_null(o);
	want = json_loads("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{"
			  "\"name\":\"web\",\"labels\":{\"app\":\"web\"}},\"spec\":{\"replicas\":3,"
			  "\"selector\":{\"matchLabels\":{\"app\":\"web\"}},\"template\":{\"metadata\":"
			  "{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":[{\"name\":\"nginx\","
			  "\"image\":\"nginx\"}]}},\"strategy\":{}}}", 0, NULL);
	if (!json_equal(o, want)) {
		char *d = json_dumps(o, JSON_SORT_KEYS);
		fail_msg("decoded %s", d);
	}
	json_decref(want);
	json_decref(o);
	free(buf);
}

static void test_content_type(void **state)
{
	(void)state;
	assert_true(pb_is_protobuf("application/vnd.kubernetes.protobuf"));
	assert_true(pb_is_protobuf("application/vnd.kubernetes.protobuf;stream=watch"));
	assert_false(pb_is_protobuf("application/json"));
	assert_false(pb_is_protobuf(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delete_options_envelope),
		cmocka_unit_test(test_malformed_refused),
		cmocka_unit_test(test_bad_fields_refused),
		cmocka_unit_test(test_unknown_fields_skipped),
		cmocka_unit_test(test_content_type),
		cmocka_unit_test(test_service_from_kubectl),
		cmocka_unit_test(test_deployment_from_kubectl),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
