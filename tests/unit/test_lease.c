/* test_lease.c — unit tests of the lease clock (store/lease.c) on a real uv
 * loop: grants, keep-alives, and which member expires what, when. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <uv.h>

#include "lib/err.h"
#include "store/lease.h"

#define MAX_IDS 8

struct fx {
	uv_loop_t loop;
	struct lease_table *t;
	int64_t ids[MAX_IDS];     /* lease ids the test watches */
	int expired[MAX_IDS];     /* expire callbacks per watched id */
	int stray;                /* expire callbacks for ids not watched */
};

static void on_expire(void *data, int64_t id)
{
	struct fx *f = data;
	for (int i = 0; i < MAX_IDS; i++) {
		if (f->ids[i] == id) {
			f->expired[i]++;
			return;
		}
	}
	f->stray++;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	if (f == NULL || uv_loop_init(&f->loop) != 0)
		return -1;
	if (lease_table_new(&f->loop, on_expire, f, &f->t) != CAP_OK)
		return -1;
	for (int i = 0; i < MAX_IDS; i++)
		f->ids[i] = 100 + i;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	lease_table_close(f->t);
	/* The table's timer closes: the loop ends and closes clean. */
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	assert_int_equal(f->stray, 0);
	free(f);
	return 0;
}

static void deadline_cb(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Runs the loop until f->expired[i] >= n or ms pass; returns whether it got
 * there. */
static bool run_until_expired(struct fx *f, int i, int n, unsigned ms)
{
	uv_timer_t deadline;
	bool expired = false;
	uv_timer_init(&f->loop, &deadline);
	deadline.data = &expired;
	uv_timer_start(&deadline, deadline_cb, ms, 0);
	while (f->expired[i] < n && !expired)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&deadline, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	return f->expired[i] >= n;
}

static void run_for(struct fx *f, unsigned ms)
{
	run_until_expired(f, 0, 1 << 30, ms);
}

/* A grant is visible with its TTL; remaining counts down from it; a
 * keep-alive answers the TTL; unknown leases are "not found". */
static void test_grant_keepalive_remaining(void **state)
{
	struct fx *f = *state;
	int64_t rem = -1, granted = -1, ttl = -1;
	assert_false(lease_exists(f->t, 100));
	assert_int_equal(lease_remaining(f->t, 100, &rem, &granted), CAP_ELEASENOTFOUND);
	assert_int_equal(lease_keepalive(f->t, 100, &ttl), CAP_ELEASENOTFOUND);

	assert_int_equal(lease_granted(f->t, 100, 30), CAP_OK);
	assert_true(lease_exists(f->t, 100));
	assert_false(lease_exists(f->t, 101));
	assert_int_equal(lease_remaining(f->t, 100, &rem, &granted), CAP_OK);
	assert_int_equal(granted, 30);
	assert_true(rem >= 28 && rem <= 30);
	assert_int_equal(lease_keepalive(f->t, 100, &ttl), CAP_OK);
	assert_int_equal(ttl, 30);

	/* many leases, ids that could collide in a hash table */
	for (int64_t id = 1; id <= 5000; id++)
		assert_int_equal(lease_granted(f->t, id * 4096, id % 50 + 10), CAP_OK);
	for (int64_t id = 1; id <= 5000; id++) {
		assert_int_equal(lease_remaining(f->t, id * 4096, &rem, &granted), CAP_OK);
		assert_int_equal(granted, id % 50 + 10);
	}
	assert_int_equal(lease_remaining(f->t, 100, &rem, &granted), CAP_OK);
	assert_int_equal(granted, 30);
	lease_revoked(f->t, 4096 * 7);
	assert_false(lease_exists(f->t, 4096 * 7));
	assert_true(lease_exists(f->t, 4096 * 8));
	lease_clear(f->t);
	assert_false(lease_exists(f->t, 100));
	assert_false(lease_exists(f->t, 4096));
}

/* A member that is not the leader expires nothing, however late. */
static void test_follower_expires_nothing(void **state)
{
	struct fx *f = *state;
	assert_int_equal(lease_granted(f->t, 100, 1), CAP_OK);
	run_for(f, 1600);
	assert_int_equal(f->expired[0], 0);
	assert_true(lease_exists(f->t, 100));
}

/* The leader asks once for an expired lease's revoke, not again until that
 * proposal is reported failed; the revoke removes it for good. */
static void test_leader_expires_once(void **state)
{
	struct fx *f = *state;
	int64_t ttl;
	lease_set_leader(f->t, true);
	assert_int_equal(lease_granted(f->t, 100, 1), CAP_OK);
	assert_int_equal(lease_granted(f->t, 101, 3600), CAP_OK);
	assert_true(run_until_expired(f, 0, 1, 5000));
	run_for(f, 700);
	assert_int_equal(f->expired[0], 1);
	/* a lease being revoked cannot be kept alive */
	assert_int_equal(lease_keepalive(f->t, 100, &ttl), CAP_ELEASENOTFOUND);
	lease_expire_failed(f->t, 100);
	assert_true(run_until_expired(f, 0, 2, 5000));
	lease_revoked(f->t, 100);
	assert_false(lease_exists(f->t, 100));
	run_for(f, 600);
	assert_int_equal(f->expired[0], 2);
	assert_int_equal(f->expired[1], 0);
	assert_true(lease_exists(f->t, 101));
}

/* Several short leases each expire exactly once. */
static void test_many_expire_once_each(void **state)
{
	struct fx *f = *state;
	lease_set_leader(f->t, true);
	for (int i = 0; i < 4; i++)
		assert_int_equal(lease_granted(f->t, f->ids[i], 1), CAP_OK);
	for (int i = 0; i < 4; i++)
		assert_true(run_until_expired(f, i, 1, 5000));
	run_for(f, 600);
	for (int i = 0; i < 4; i++)
		assert_int_equal(f->expired[i], 1);
}

/* A keep-alive moves the deadline: a lease renewed well within its TTL does
 * not expire while one left alone does. */
static void test_keepalive_defers_expiry(void **state)
{
	struct fx *f = *state;
	int64_t ttl;
	lease_set_leader(f->t, true);
	assert_int_equal(lease_granted(f->t, 100, 2), CAP_OK);
	assert_int_equal(lease_granted(f->t, 101, 2), CAP_OK);
	/* renew 100 every 500 ms until 101 (same TTL, not renewed) expires */
	for (int i = 0; i < 20 && f->expired[1] == 0; i++) {
		run_until_expired(f, 1, 1, 500);
		assert_int_equal(lease_keepalive(f->t, 100, &ttl), CAP_OK);
		assert_int_equal(ttl, 2);
	}
	assert_int_equal(f->expired[1], 1);
	assert_int_equal(f->expired[0], 0);
}

/* A new leader gives every lease a full TTL from the moment it leads rather
 * than expiring those whose old deadline passed while it followed. */
static void test_new_leader_refreshes(void **state)
{
	struct fx *f = *state;
	int64_t rem, granted;
	assert_int_equal(lease_granted(f->t, 100, 2), CAP_OK);
	run_for(f, 2600);   /* its original deadline is past */
	assert_int_equal(f->expired[0], 0);
	lease_set_leader(f->t, true);
	assert_int_equal(lease_remaining(f->t, 100, &rem, &granted), CAP_OK);
	assert_true(rem >= 1);
	/* several ticks of the clock later it is still alive */
	run_for(f, 800);
	assert_int_equal(f->expired[0], 0);
	/* and it does expire, once, after the full TTL */
	assert_true(run_until_expired(f, 0, 1, 5000));
	run_for(f, 300);
	assert_int_equal(f->expired[0], 1);
}

/* Losing leadership stops expiry of leases that are due. */
static void test_lost_leadership_stops_expiry(void **state)
{
	struct fx *f = *state;
	lease_set_leader(f->t, true);
	assert_int_equal(lease_granted(f->t, 100, 1), CAP_OK);
	lease_set_leader(f->t, false);
	run_for(f, 1600);
	assert_int_equal(f->expired[0], 0);
	assert_true(lease_exists(f->t, 100));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_grant_keepalive_remaining, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follower_expires_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leader_expires_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_expire_once_each, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keepalive_defers_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_leader_refreshes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_leadership_stops_expiry, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
