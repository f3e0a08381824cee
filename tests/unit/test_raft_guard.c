/* test_raft_guard.c — unit tests of store/raft_guard.c's close path: raft's
 * close callback runs once however often the io below fires it (libraft
 * 0.15's raft_uv can fire it twice, which freed the raft's memory twice). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <raft.h>
#include <string.h>

#include "store/raft_guard.h"

/* A stand-in for raft_uv whose close fires its callback `fires` times, as
 * raft_uv does when one of its parts finishes closing after the rest. */
struct fake_io {
	struct raft_io io;
	int fires;
};

static void fake_close(struct raft_io *io, raft_io_close_cb cb)
{
	struct fake_io *f = (struct fake_io *)io;
	for (int i = 0; i < f->fires; i++)
		cb(io);
}

static int raft_cb_calls;
static struct raft *raft_seen;

/* Stands for libraft's own close callback: it finds the raft in io->data. */
static void on_io_closed(struct raft_io *io)
{
	raft_cb_calls++;
	raft_seen = io->data;
}

static void close_with(int fires, unsigned want_repeats)
{
	struct fake_io inner;
	struct raft_guard g;
	struct raft r;

	memset(&inner, 0, sizeof inner);
	memset(&r, 0, sizeof r);
	inner.io.version = 2;
	inner.io.close = fake_close;
	inner.fires = fires;
	raft_guard_init(&g, &inner.io);
	/* What raft_init does with the io it is given. */
	r.io = &g.io;
	g.io.data = &r;
	raft_cb_calls = 0;
	raft_seen = NULL;
	g.io.close(&g.io, on_io_closed);
	assert_int_equal(raft_cb_calls, 1);
	assert_ptr_equal(raft_seen, &r);
	assert_int_equal(g.close_repeats, want_repeats);
}

/* An io that fires its close callback once passes it through unchanged. */
static void test_close_fired_once_reaches_raft(void **state)
{
	(void)state;
	close_with(1, 0);
}

/* An io that fires its close callback twice or more reaches raft once. */
static void test_close_fired_twice_reaches_raft_once(void **state)
{
	(void)state;
	close_with(2, 1);
	close_with(3, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_close_fired_once_reaches_raft),
		cmocka_unit_test(test_close_fired_twice_reaches_raft_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
