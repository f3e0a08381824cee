/* test_cidr.c — IPv4 CIDR parsing and arithmetic, and the subnet allocator
 * the node IPAM controller hands pod ranges out of. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/cidr.h"

/* Well-formed ranges parse and print back the same. */
static void test_parse_format(void **state)
{
	static const char *good[] = {"10.244.0.0/16", "10.96.0.0/12", "0.0.0.0/0",
				     "192.168.1.7/32", "10.244.255.0/24"};
	struct cidr c;
	char buf[32];
	(void)state;
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		assert_int_equal(cidr_parse(good[i], &c), 0);
		assert_string_equal(cidr_format(&c, buf, sizeof buf), good[i]);
	}
	assert_int_equal(cidr_parse("10.244.0.0/16", &c), 0);
	assert_int_equal(c.addr, 0x0af40000u);
	assert_int_equal(c.prefix, 16);
}

/* Malformed ranges, and ranges with host bits set, are refused. */
static void test_parse_rejects(void **state)
{
	static const char *bad[] = {"", "10.244.0.0", "10.244.0.0/", "10.244.0.0/33",
				    "10.244.0.0/016", "10.244.0.0/+16", "10.244.0.0/16 ",
				    " 10.244.0.0/16", "10.244.0/16", "10.244.0.256/24",
				    "10.244.1.0/16", "/16", "a.b.c.d/8", "10.244.0.0/1a",
				    "10.244.0.0/123", "10.244.0.0//16", "::1/128"};
	struct cidr c;
	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_not_equal(cidr_parse(bad[i], &c), 0);
	assert_int_not_equal(cidr_parse(NULL, &c), 0);
}

/* An address with its prefix gives both the address and its network. */
static void test_parse_host(void **state)
{
	struct cidr c;
	uint32_t a;
	char buf[32];
	(void)state;
	assert_int_equal(cidr_parse_host("10.244.1.7/24", &c, &a), 0);
	assert_string_equal(cidr_format(&c, buf, sizeof buf), "10.244.1.0/24");
	assert_string_equal(cidr_format_ip(a, buf, sizeof buf), "10.244.1.7");
}

/* Containment and overlap follow the prefixes. */
static void test_contains(void **state)
{
	struct cidr cl, node, svc, other;
	uint32_t ip;
	(void)state;
	cidr_parse("10.244.0.0/16", &cl);
	cidr_parse("10.244.3.0/24", &node);
	cidr_parse("10.96.0.0/12", &svc);
	cidr_parse("10.0.0.0/8", &other);
	assert_true(cidr_contains(&cl, &node));
	assert_false(cidr_contains(&node, &cl));
	assert_false(cidr_overlaps(&cl, &svc));
	assert_true(cidr_overlaps(&other, &svc));
	assert_true(cidr_overlaps(&svc, &other));
	cidr_parse_ip("10.244.3.200", &ip);
	assert_true(cidr_contains_ip(&node, ip));
	cidr_parse_ip("10.244.4.1", &ip);
	assert_false(cidr_contains_ip(&node, ip));
	assert_int_equal(cidr_size(&node), 256);
	cidr_parse("0.0.0.0/0", &other);
	assert_true(cidr_size(&other) == ((uint64_t)1 << 32));
}

/* A /16 cut into /24s has 256 of them, the i-th at the i-th third octet. */
static void test_subnets(void **state)
{
	struct cidr cl, s;
	char buf[32];
	(void)state;
	cidr_parse("10.244.0.0/16", &cl);
	assert_int_equal(cidr_subnet_count(&cl, 24), 256);
	assert_int_equal(cidr_subnet_count(&cl, 15), 0);
	s = cidr_subnet(&cl, 24, 0);
	assert_string_equal(cidr_format(&s, buf, sizeof buf), "10.244.0.0/24");
	s = cidr_subnet(&cl, 24, 255);
	assert_string_equal(cidr_format(&s, buf, sizeof buf), "10.244.255.0/24");
	s = cidr_subnet(&cl, 26, 5);
	assert_string_equal(cidr_format(&s, buf, sizeof buf), "10.244.1.64/26");
	assert_string_equal(cidr_format_ip(cidr_nth_ip(&s, 1), buf, sizeof buf), "10.244.1.65");
}

/* The set hands out every subnet once, then reports exhaustion. */
static void test_set_exhausts(void **state)
{
	struct cidr_set set;
	struct cidr cl, got[4], extra;
	char buf[32];
	(void)state;
	cidr_parse("10.244.0.0/22", &cl);
	assert_int_equal(cidr_set_init(&set, &cl, 24), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(cidr_set_alloc(&set, &got[i]), 0);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(got[i].addr, got[j].addr);
	}
	assert_string_equal(cidr_format(&got[0], buf, sizeof buf), "10.244.0.0/24");
	assert_int_not_equal(cidr_set_alloc(&set, &extra), 0);
	/* A released range can be given again. */
	assert_int_equal(cidr_set_release(&set, &got[2]), 0);
	assert_int_equal(cidr_set_alloc(&set, &extra), 0);
	assert_int_equal(extra.addr, got[2].addr);
	cidr_set_free(&set);
}

/* Ranges already in use (rebuilt from existing Nodes) are never given out,
 * and a released range is not the very next one handed out. */
static void test_set_occupy_and_rotation(void **state)
{
	struct cidr_set set;
	struct cidr cl, used, r, foreign;
	char buf[32];
	(void)state;
	cidr_parse("10.244.0.0/16", &cl);
	assert_int_equal(cidr_set_init(&set, &cl, 24), 0);
	cidr_parse("10.244.0.0/24", &used);
	assert_int_equal(cidr_set_occupy(&set, &used), 0);
	cidr_parse("10.244.1.0/24", &used);
	assert_int_equal(cidr_set_occupy(&set, &used), 0);
	assert_int_equal(cidr_set_alloc(&set, &r), 0);
	assert_string_equal(cidr_format(&r, buf, sizeof buf), "10.244.2.0/24");
	assert_int_equal(cidr_set_release(&set, &r), 0);
	assert_int_equal(cidr_set_alloc(&set, &r), 0);
	assert_string_equal(cidr_format(&r, buf, sizeof buf), "10.244.3.0/24");
	assert_true(cidr_set_is_used(&set, &used));
	/* Not one of its subnets: outside the range, or another size. */
	cidr_parse("10.245.0.0/24", &foreign);
	assert_int_not_equal(cidr_set_occupy(&set, &foreign), 0);
	cidr_parse("10.244.4.0/25", &foreign);
	assert_int_not_equal(cidr_set_occupy(&set, &foreign), 0);
	assert_int_not_equal(cidr_set_release(&set, &foreign), 0);
	cidr_set_free(&set);
}

/* Sizes that do not fit the range are refused up front. */
static void test_set_bad_sizes(void **state)
{
	struct cidr_set set;
	struct cidr cl;
	(void)state;
	cidr_parse("10.244.0.0/16", &cl);
	assert_int_not_equal(cidr_set_init(&set, &cl, 8), 0);
	assert_int_not_equal(cidr_set_init(&set, &cl, 33), 0);
	cidr_parse("10.0.0.0/8", &cl);
	assert_int_not_equal(cidr_set_init(&set, &cl, 32), 0);   /* 2^24 subnets */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_format),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_parse_host),
		cmocka_unit_test(test_contains),
		cmocka_unit_test(test_subnets),
		cmocka_unit_test(test_set_exhausts),
		cmocka_unit_test(test_set_occupy_and_rotation),
		cmocka_unit_test(test_set_bad_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
