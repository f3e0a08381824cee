/* test_ipam.c — the node's host-local pod address allocator on a state
 * directory: unique addresses, kept across restarts, released on delete. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchestrator/agent/ipam.h"

static int setup(void **state)
{
	char *dir = strdup("/tmp/capstan-ipam-XXXXXX");
	if (dir == NULL || mkdtemp(dir) == NULL)
		return -1;
	*state = dir;
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", (char *)*state);
	free(*state);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *ip_s(uint32_t ip)
{
	static char buf[16];
	return cidr_format_ip(ip, buf, sizeof buf);
}

/* The first pod gets .2 (.0 is the network, .1 the bridge), the next .3;
 * asking again for the same pod gives its address back. */
static void test_first_addresses(void **state)
{
	struct ipam m;
	struct cidr r;
	uint32_t a, b, again;
	cidr_parse("10.244.1.0/24", &r);
	assert_int_equal(ipam_open(&m, *state, &r), 0);
	assert_int_equal(ipam_alloc(&m, "pod-a", &a), 0);
	assert_string_equal(ip_s(a), "10.244.1.2");
	assert_int_equal(ipam_alloc(&m, "pod-b", &b), 0);
	assert_string_equal(ip_s(b), "10.244.1.3");
	assert_int_equal(ipam_alloc(&m, "pod-a", &again), 0);
	assert_int_equal(again, a);
}

/* A new allocator on the same directory (an agent restart) finds every
 * owner's address and never hands one out twice. */
static void test_survives_restart(void **state)
{
	struct ipam m, m2;
	struct cidr r;
	uint32_t a, found, c;
	cidr_parse("10.244.1.0/24", &r);
	ipam_open(&m, *state, &r);
	assert_int_equal(ipam_alloc(&m, "pod-a", &a), 0);
	assert_int_equal(ipam_open(&m2, *state, &r), 0);
	assert_int_equal(ipam_find(*state, "pod-a", &found), 0);
	assert_int_equal(found, a);
	assert_int_equal(ipam_alloc(&m2, "pod-c", &c), 0);
	assert_int_not_equal(c, a);
	assert_int_not_equal(ipam_find(*state, "pod-z", &found), 0);
}

/* A released address is free again, but only after the rest of the range
 * has been used (round-robin), and the owner no longer has it. */
static void test_release_and_reuse(void **state)
{
	struct ipam m;
	struct cidr r;
	uint32_t a, b, c, d, found;
	cidr_parse("10.244.1.0/29", &r);   /* .2 to .6: five addresses */
	ipam_open(&m, *state, &r);
	assert_int_equal(ipam_alloc(&m, "a", &a), 0);
	assert_int_equal(ipam_alloc(&m, "b", &b), 0);
	assert_int_equal(ipam_release(*state, "a"), 0);
	assert_int_not_equal(ipam_find(*state, "a", &found), 0);
	assert_int_equal(ipam_alloc(&m, "c", &c), 0);
	assert_int_not_equal(c, a);
	assert_int_not_equal(c, b);
	assert_string_equal(ip_s(c), "10.244.1.4");
	assert_int_equal(ipam_release(*state, "nobody"), 0);
	assert_int_equal(ipam_alloc(&m, "d", &d), 0);
	assert_string_equal(ip_s(d), "10.244.1.5");
}

/* A full range says so (ENOSPC) and never reuses an address in use; the
 * broadcast address is never given. */
static void test_full_range(void **state)
{
	struct ipam m;
	struct cidr r;
	uint32_t got[5], extra;
	char owner[16];
	cidr_parse("10.244.1.0/29", &r);
	ipam_open(&m, *state, &r);
	for (int i = 0; i < 5; i++) {
		snprintf(owner, sizeof owner, "p%d", i);
		assert_int_equal(ipam_alloc(&m, owner, &got[i]), 0);
		assert_int_not_equal(got[i], r.addr + 7);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(got[i], got[j]);
	}
	errno = 0;
	assert_int_not_equal(ipam_alloc(&m, "one-too-many", &extra), 0);
	assert_int_equal(errno, ENOSPC);
	/* Too small for any pod at all. */
	cidr_parse("10.244.2.0/31", &r);
	ipam_open(&m, *state, &r);
	assert_int_not_equal(ipam_alloc(&m, "x", &extra), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_survives_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_and_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_range, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
