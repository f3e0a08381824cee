/* Unit tests of the Service allocators' bitmaps and range flags
 * (orchestrator/api/rangealloc.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orchestrator/api/rangealloc.h"

static struct svc_ranges ranges(const char *cidr, const char *ports)
{
	struct svc_ranges r;
	char e[128];
	svc_ranges_default(&r);
	assert_int_equal(svc_ranges_parse_cidr(&r, cidr, e, sizeof e), 0);
	assert_int_equal(svc_ranges_parse_ports(&r, ports, e, sizeof e), 0);
	return r;
}

/* The defaults are Kubernetes' (10.96.0.0/12, 30000-32767); the first
 * address of the CIDR is the kubernetes Service's. */
static void test_defaults(void **state)
{
	struct svc_ranges r;
	char ip[20];
	(void)state;
	svc_ranges_default(&r);
	assert_string_equal(r.cidr, "10.96.0.0/12");
	assert_string_equal(r.ports, "30000-32767");
	ipv4_format(svc_ranges_first_ip(&r), ip, sizeof ip);
	assert_string_equal(ip, "10.96.0.1");
}

/* Malformed flags are refused with a message: host bits, too large or too
 * small a CIDR, IPv6, reversed or open port ranges. */
static void test_parse_errors(void **state)
{
	struct svc_ranges r;
	char e[128];
	(void)state;
	svc_ranges_default(&r);
	assert_int_equal(svc_ranges_parse_cidr(&r, "10.96.0.1/12", e, sizeof e), -1);
	assert_non_null(strstr(e, "host bits"));
	assert_int_equal(svc_ranges_parse_cidr(&r, "10.0.0.0/8", e, sizeof e), -1);
	assert_int_equal(svc_ranges_parse_cidr(&r, "10.96.0.0/31", e, sizeof e), -1);
	assert_int_equal(svc_ranges_parse_cidr(&r, "fd00::/108", e, sizeof e), -1);
	assert_int_equal(svc_ranges_parse_cidr(&r, "10.96.0.0", e, sizeof e), -1);
	assert_int_equal(svc_ranges_parse_cidr(&r, "010.96.0.0/12", e, sizeof e), -1);
	assert_int_equal(svc_ranges_parse_ports(&r, "32767-30000", e, sizeof e), -1);
	assert_int_equal(svc_ranges_parse_ports(&r, "30000-", e, sizeof e), -1);
	assert_int_equal(svc_ranges_parse_ports(&r, "0-100", e, sizeof e), -1);
	assert_int_equal(svc_ranges_parse_ports(&r, "30000-70000", e, sizeof e), -1);
	assert_int_equal(svc_ranges_parse_ports(&r, "31000", e, sizeof e), 0);
	assert_int_equal(r.port_lo, 31000);
	assert_int_equal(r.port_hi, 31000);
}

/* A /29 holds 6 usable addresses (network and broadcast are not handed
 * out); after 6 allocations the range is full, and a release makes exactly
 * that address the next one. */
static void test_ip_exhaustion_and_release(void **state)
{
	struct svc_ranges r = ranges("192.168.7.0/29", "30000-30001");
	struct rangealloc *a = rangealloc_new_ips(&r);
	uint32_t ip, got[6], net;
	(void)state;
	assert_int_equal(ipv4_parse("192.168.7.0", &net), 0);
	assert_int_equal(rangealloc_free_count(a), 6);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(rangealloc_allocate_next(a, (uint32_t)i * 7919u, &got[i]),
				 RANGEALLOC_OK);
		assert_true(got[i] > net && got[i] < net + 7);
		for (int j = 0; j < i; j++)
			assert_true(got[i] != got[j]);
	}
	assert_int_equal(rangealloc_allocate_next(a, 1, &ip), RANGEALLOC_FULL);
	rangealloc_release(a, got[3]);
	assert_int_equal(rangealloc_allocate_next(a, 12345, &ip), RANGEALLOC_OK);
	assert_true(ip == got[3]);
	rangealloc_free(a);
}

/* Asking for a value: the network and broadcast addresses and anything
 * outside the CIDR are out of range; a value already held is taken. */
static void test_ip_specific(void **state)
{
	struct svc_ranges r = ranges("10.96.0.0/12", "30000-32767");
	struct rangealloc *a = rangealloc_new_ips(&r);
	uint32_t ip;
	(void)state;
	assert_int_equal(ipv4_parse("10.96.0.0", &ip), 0);
	assert_int_equal(rangealloc_allocate(a, ip), RANGEALLOC_OUT_OF_RANGE);
	assert_int_equal(ipv4_parse("10.111.255.255", &ip), 0);
	assert_int_equal(rangealloc_allocate(a, ip), RANGEALLOC_OUT_OF_RANGE);
	assert_int_equal(ipv4_parse("10.112.0.1", &ip), 0);
	assert_int_equal(rangealloc_allocate(a, ip), RANGEALLOC_OUT_OF_RANGE);
	assert_int_equal(ipv4_parse("10.111.255.254", &ip), 0);
	assert_int_equal(rangealloc_allocate(a, ip), RANGEALLOC_OK);
	assert_int_equal(rangealloc_allocate(a, ip), RANGEALLOC_TAKEN);
	assert_true(rangealloc_has(a, ip));
	rangealloc_release(a, ip);
	assert_false(rangealloc_has(a, ip));
	assert_int_equal(rangealloc_allocate(a, ip), RANGEALLOC_OK);
	rangealloc_free(a);
}

/* Dynamic allocation leaves the static band (the lowest 256 addresses of a
 * /12; the lowest 86 ports of 30000-32767) to requested values until the
 * upper band is full, as Kubernetes does. */
static void test_static_band_reserved(void **state)
{
	struct svc_ranges r = ranges("10.96.0.0/12", "30000-32767");
	struct rangealloc *ips = rangealloc_new_ips(&r);
	struct rangealloc *ports = rangealloc_new_ports(&r);
	uint32_t v, band_top;
	(void)state;
	assert_int_equal(ipv4_parse("10.96.1.0", &band_top), 0);
	for (uint32_t s = 0; s < 2000; s++) {
		assert_int_equal(rangealloc_allocate_next(ips, s * 2654435761u, &v), RANGEALLOC_OK);
		assert_true(v > band_top);
		assert_int_equal(rangealloc_allocate_next(ports, s * 2654435761u, &v),
				 RANGEALLOC_OK);
		assert_true(v >= 30000 + 86);
	}
	rangealloc_free(ips);
	rangealloc_free(ports);
}

/* When the upper band is full, dynamic allocation falls back to the static
 * band, and only then reports a full range. */
static void test_port_band_fallback_and_full(void **state)
{
	struct svc_ranges r = ranges("10.96.0.0/24", "30000-30099");
	struct rangealloc *a = rangealloc_new_ports(&r);
	uint32_t v;
	int low = 0;
	(void)state;
	for (int i = 0; i < 100; i++) {
		assert_int_equal(rangealloc_allocate_next(a, (uint32_t)i, &v), RANGEALLOC_OK);
		if (v < 30016)
			low++;
		/* The first 84 come from the upper band. */
		if (i < 84)
			assert_true(v >= 30016);
	}
	assert_int_equal(low, 16);
	assert_int_equal(rangealloc_allocate_next(a, 0, &v), RANGEALLOC_FULL);
	assert_int_equal(rangealloc_allocate(a, 30050), RANGEALLOC_TAKEN);
	assert_int_equal(rangealloc_allocate(a, 30100), RANGEALLOC_OUT_OF_RANGE);
	assert_int_equal(rangealloc_allocate(a, 29999), RANGEALLOC_OUT_OF_RANGE);
	rangealloc_free(a);
}

/* Addresses parse strictly and print back the same. */
static void test_ipv4_text(void **state)
{
	uint32_t ip;
	char buf[20];
	(void)state;
	assert_int_equal(ipv4_parse("10.96.0.10", &ip), 0);
	ipv4_format(ip, buf, sizeof buf);
	assert_string_equal(buf, "10.96.0.10");
	assert_int_equal(ipv4_parse("10.96.0", &ip), -1);
	assert_int_equal(ipv4_parse("10.96.0.256", &ip), -1);
	assert_int_equal(ipv4_parse("10.96.0.1 ", &ip), -1);
	assert_int_equal(ipv4_parse("10.96.00.1", &ip), -1);
	assert_int_equal(ipv4_parse("None", &ip), -1);
	assert_int_equal(ipv4_parse("", &ip), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_ip_exhaustion_and_release),
		cmocka_unit_test(test_ip_specific),
		cmocka_unit_test(test_static_band_reserved),
		cmocka_unit_test(test_port_band_fallback_and_full),
		cmocka_unit_test(test_ipv4_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
