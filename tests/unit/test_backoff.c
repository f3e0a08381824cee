/* test_backoff.c — the container restart back-off on a fake clock: 10 s,
 * doubling, capped at 300 s, reset after 10 minutes of clean running. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "orchestrator/agent/backoff.h"

/* A container crashing right after each start waits 10, 20, 40, 80, 160 s,
 * then 300 s for good. */
static void test_doubles_to_cap(void **state)
{
	static const uint64_t want[] = {10000, 20000, 40000, 80000, 160000, 300000, 300000,
					300000};
	struct backoff b;
	uint64_t now = 1000;
	(void)state;
	backoff_init(&b);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		uint64_t started = now;
		now += 500;     /* crashed half a second after starting */
		uint64_t d = backoff_next(&b, started, now);
		assert_int_equal(d, want[i]);
		now += d;       /* the restart happens when the delay is over */
	}
}

/* Ten minutes of clean running makes the next crash count as the first. */
static void test_resets_after_long_run(void **state)
{
	struct backoff b;
	uint64_t now = 0;
	(void)state;
	backoff_init(&b);
	for (int i = 0; i < 6; i++)
		now += backoff_next(&b, now, now + 1000) + 1000;
	assert_int_equal(b.delay_ms, 300000);
	/* Ran 10 minutes exactly: back to 10 s. */
	assert_int_equal(backoff_next(&b, now, now + 600000), 10000);
	now += 600000 + 10000;
	/* A run one second short of the reset keeps doubling. */
	assert_int_equal(backoff_next(&b, now, now + 599000), 20000);
}

/* A crash after a run just short of 10 minutes does not reset. */
static void test_no_reset_when_short(void **state)
{
	struct backoff b;
	(void)state;
	backoff_init(&b);
	assert_int_equal(backoff_next(&b, 0, 100), 10000);
	assert_int_equal(backoff_next(&b, 20000, 20000 + 599999), 20000);
}

/* backoff_reset forgets the crashes (the pod was replaced). */
static void test_explicit_reset(void **state)
{
	struct backoff b;
	(void)state;
	backoff_init(&b);
	backoff_next(&b, 0, 1);
	backoff_next(&b, 2, 3);
	backoff_reset(&b);
	assert_int_equal(backoff_next(&b, 4, 5), 10000);
}

/* Custom values (simulated nodes) follow the same rule. */
static void test_custom_values(void **state)
{
	struct backoff b;
	(void)state;
	backoff_init_custom(&b, 100, 250, 1000);
	assert_int_equal(backoff_next(&b, 0, 1), 100);
	assert_int_equal(backoff_next(&b, 0, 1), 200);
	assert_int_equal(backoff_next(&b, 0, 1), 250);
	assert_int_equal(backoff_next(&b, 0, 1), 250);
	assert_int_equal(backoff_next(&b, 0, 1000), 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doubles_to_cap),
		cmocka_unit_test(test_resets_after_long_run),
		cmocka_unit_test(test_no_reset_when_short),
		cmocka_unit_test(test_explicit_reset),
		cmocka_unit_test(test_custom_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
