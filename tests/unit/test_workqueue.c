/* test_workqueue.c — the controllers' work queue deduplicates keys, runs a
 * key again when it was added while being processed, retries failures with
 * a doubling back-off that stops at its cap, and honours delayed adds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orchestrator/kube/workqueue.h"

#define MAX_CALLS 64

struct fixture {
	uv_loop_t loop;
	uv_timer_t guard;
	struct workqueue *q;
	char calls[MAX_CALLS][16];
	uint64_t at[MAX_CALLS];
	int ncalls;
	int fail_left;          /* fn fails this many times more */
	bool readd_once;        /* fn adds its own key on the first call */
	bool close_in_fn;
	bool timed_out;
};

static int fn(void *data, const char *key)
{
	struct fixture *f = data;

	if (f->ncalls < MAX_CALLS) {
		snprintf(f->calls[f->ncalls], sizeof f->calls[0], "%s", key);
		f->at[f->ncalls] = uv_now(&f->loop);
	}
	f->ncalls++;
	if (f->readd_once) {
		f->readd_once = false;
		workqueue_add(f->q, key);
		workqueue_add(f->q, key);   /* still one more run, not two */
	}
	if (f->close_in_fn) {
		workqueue_close(f->q);
		f->q = NULL;
		return 0;
	}
	if (f->fail_left > 0) {
		f->fail_left--;
		return 1;
	}
	return 0;
}

static void guard_cb(uv_timer_t *t)
{
	struct fixture *f = t->data;

	f->timed_out = true;
	uv_stop(&f->loop);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	uv_loop_init(&f->loop);
	uv_timer_init(&f->loop, &f->guard);
	f->guard.data = f;
	/* Bounds every run; unreferenced so an idle queue ends uv_run. */
	uv_timer_start(&f->guard, guard_cb, 10000, 0);
	uv_unref((uv_handle_t *)&f->guard);
	assert_int_equal(workqueue_new(&f->loop, fn, f, &f->q), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->q != NULL)
		workqueue_close(f->q);
	uv_close((uv_handle_t *)&f->guard, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	/* Every handle of the queue is closed. */
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

static void run(struct fixture *f)
{
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_false(f->timed_out);
}

/* A key added several times before it runs is processed once, in FIFO order
 * with the others. */
static void test_dedup(void **state)
{
	struct fixture *f = *state;

	workqueue_add(f->q, "a");
	workqueue_add(f->q, "b");
	workqueue_add(f->q, "a");
	workqueue_add(f->q, "a");
	assert_int_equal(workqueue_len(f->q), 2);
	run(f);
	assert_int_equal(f->ncalls, 2);
	assert_string_equal(f->calls[0], "a");
	assert_string_equal(f->calls[1], "b");
}

/* fn is never called from inside workqueue_add: processing is deferred. */
static void test_not_synchronous(void **state)
{
	struct fixture *f = *state;

	workqueue_add(f->q, "a");
	assert_int_equal(f->ncalls, 0);
	run(f);
	assert_int_equal(f->ncalls, 1);
}

/* A key added while it is being processed runs once more afterwards, after
 * the keys already waiting. */
static void test_readd_while_processing(void **state)
{
	struct fixture *f = *state;

	f->readd_once = true;
	workqueue_add(f->q, "a");
	workqueue_add(f->q, "b");
	run(f);
	assert_int_equal(f->ncalls, 3);
	assert_string_equal(f->calls[0], "a");
	assert_string_equal(f->calls[1], "b");
	assert_string_equal(f->calls[2], "a");
}

/* Failures are retried with gaps that double from the base, then stay at
 * the cap; success forgets the failures. */
static void test_backoff(void **state)
{
	struct fixture *f = *state;
	const int fails = 12;

	workqueue_set_backoff(f->q, 2, 16);
	f->fail_left = fails;
	workqueue_add(f->q, "x");
	run(f);
	assert_int_equal(f->ncalls, fails + 1);
	for (int i = 1; i <= fails; i++) {
		uint64_t want = 2u << (i - 1);

		if (want > 16)
			want = 16;
		/* Timers never fire early: each gap is at least its back-off. */
		assert_true(f->at[i] - f->at[i - 1] >= want);
	}
	/* Without the cap the last gaps alone would take 2^12·2 ms ≈ 8 s. */
	assert_true(f->at[fails] - f->at[0] < 4000);
	assert_int_equal(workqueue_failures(f->q, "x"), 0);
}

/* Failure counts are per key: one key failing does not slow another. */
static void test_backoff_per_key(void **state)
{
	struct fixture *f = *state;

	workqueue_set_backoff(f->q, 1, 1000);
	workqueue_add_rate_limited(f->q, "slow");
	workqueue_add_rate_limited(f->q, "slow");
	workqueue_add_rate_limited(f->q, "slow");
	assert_int_equal(workqueue_failures(f->q, "slow"), 3);
	assert_int_equal(workqueue_failures(f->q, "fast"), 0);
	workqueue_forget(f->q, "slow");
	assert_int_equal(workqueue_failures(f->q, "slow"), 0);
	run(f);
}

/* Delayed adds come out in order of their due time, not of the calls. */
static void test_delayed(void **state)
{
	struct fixture *f = *state;
	uint64_t added = uv_now(&f->loop);

	workqueue_add_after(f->q, "c", 60);
	workqueue_add_after(f->q, "a", 20);
	workqueue_add_after(f->q, "b", 40);
	workqueue_add(f->q, "now");
	assert_int_equal(workqueue_len(f->q), 1);
	run(f);
	assert_int_equal(f->ncalls, 4);
	assert_string_equal(f->calls[0], "now");
	assert_string_equal(f->calls[1], "a");
	assert_string_equal(f->calls[2], "b");
	assert_string_equal(f->calls[3], "c");
	/* Not before its delay, counted from the add: the first call ("now")
	 * may itself run late on a loaded machine. */
	assert_true(f->at[3] - added >= 60);
}

/* A delayed add of a key already queued when it comes due is deduplicated. */
static void test_delayed_dedup(void **state)
{
	struct fixture *f = *state;

	workqueue_add_after(f->q, "k", 10);
	workqueue_add_after(f->q, "k", 10);
	run(f);
	assert_int_equal(f->ncalls, 1);
}

/* Closing the queue from inside fn stops processing; nothing leaks. */
static void test_close_in_fn(void **state)
{
	struct fixture *f = *state;

	f->close_in_fn = true;
	workqueue_add(f->q, "a");
	workqueue_add(f->q, "b");
	workqueue_add_after(f->q, "c", 10);
	run(f);
	assert_int_equal(f->ncalls, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_synchronous, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readd_while_processing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff_per_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delayed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delayed_dedup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_in_fn, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
