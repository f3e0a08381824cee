/* test_raft_aio.c — unit tests of store/raft_aio.c: io_destroy is handed to
 * a thread and still happens, every other syscall(3) passes through, and
 * the process-wide lookup of syscall (what libraft's calls bind to) finds
 * the replacement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "store/raft_aio.h"

/* Whether ctx is still a live AIO context: io_getevents on a destroyed one
 * fails with EINVAL. */
static int ctx_alive(aio_context_t ctx)
{
	struct io_event ev;
	struct timespec zero = {0, 0};
	long rv = syscall(SYS_io_getevents, ctx, 0L, 1L, &ev, &zero);
	if (rv >= 0)
		return 1;
	assert_int_equal(errno, EINVAL);
	return 0;
}

/* Before raft_aio_start, io_destroy is libc's: synchronous, errors included. */
static void test_destroy_before_start_is_synchronous(void **state)
{
	(void)state;
	aio_context_t ctx = 0;
	assert_int_equal(syscall(SYS_io_setup, 1L, &ctx), 0);
	assert_int_equal(syscall(SYS_io_destroy, ctx), 0);
	assert_int_equal(ctx_alive(ctx), 0);
	errno = 0;
	assert_int_equal(syscall(SYS_io_destroy, ctx), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(raft_aio_deferred(), 0);
}

/* Other calls keep their results and errno. */
static void test_other_calls_pass_through(void **state)
{
	(void)state;
	assert_int_equal(raft_aio_start(), 0);
	assert_int_equal(syscall(SYS_getpid), getpid());
	errno = 0;
	assert_int_equal(syscall(SYS_close, -1L), -1);
	assert_int_equal(errno, EBADF);
}

/* After the start io_destroy returns at once and the context goes later. */
static void test_destroy_is_deferred_and_done(void **state)
{
	(void)state;
	aio_context_t ctx = 0;
	unsigned long before = raft_aio_deferred();
	assert_int_equal(raft_aio_start(), 0);
	assert_int_equal(raft_aio_start(), 0);   /* idempotent */
	assert_int_equal(syscall(SYS_io_setup, 8L, &ctx), 0);
	assert_int_equal(syscall(SYS_io_destroy, ctx), 0);
	assert_int_equal(raft_aio_deferred(), before + 1);
	for (int i = 0; i < 500 && ctx_alive(ctx); i++)
		usleep(10 * 1000);
	assert_int_equal(ctx_alive(ctx), 0);
}

/* A library's call to syscall binds to the replacement, not libc's. */
static void test_global_lookup_finds_replacement(void **state)
{
	(void)state;
	void *global = dlsym(RTLD_DEFAULT, "syscall");
	void *next = dlsym(RTLD_NEXT, "syscall");
	assert_non_null(global);
	assert_non_null(next);
	assert_ptr_equal(global, (void *)syscall);
	assert_ptr_not_equal(global, next);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_destroy_before_start_is_synchronous),
		cmocka_unit_test(test_other_calls_pass_through),
		cmocka_unit_test(test_destroy_is_deferred_and_done),
		cmocka_unit_test(test_global_lookup_finds_replacement),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
