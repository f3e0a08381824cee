/* test_watch_frames.c — the watch stream reader of `capstan bench`: objects
 * come out whole and in order whatever the chunking, strings hide braces,
 * and a frame yields its watch ID and its events' revisions. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "client/watch_frames.h"

struct got {
	char frames[8][256];
	int n;
	int stop_after;               /* 0: never stop */
};

static bool collect(void *data, const char *frame, size_t len)
{
	struct got *g = data;

	assert_true(g->n < 8 && len < sizeof g->frames[0]);
	memcpy(g->frames[g->n], frame, len);
	g->frames[g->n][len] = '\0';
	g->n++;
	return g->stop_after == 0 || g->n < g->stop_after;
}

static const char stream[] =
	"{\"result\":{\"header\":{\"revision\":\"5\"},\"created\":true}}\n"
	"{\"result\":{\"watch_id\":\"3\",\"events\":[{\"kv\":{\"key\":\"e30=\",\"mod_revision\":\"6\"}},"
	"{\"kv\":{\"key\":\"a\",\"mod_revision\":\"7\"}}]}}\n"
	"{\"error\":{\"message\":\"a \\\"}\\\" in a string\"}}";

/* Fed one byte at a time or all at once, the same three objects come out. */
static void test_split_any_chunking(void **state)
{
	(void)state;
	for (size_t step = 1; step <= sizeof stream; step++) {
		struct watch_splitter sp = {0};
		struct got g = {0};
		for (size_t off = 0; off < sizeof stream - 1; off += step) {
			size_t n = sizeof stream - 1 - off < step ? sizeof stream - 1 - off : step;
			assert_int_equal(watch_splitter_feed(&sp, stream + off, n, collect, &g), 0);
		}
		assert_int_equal(g.n, 3);
		assert_string_equal(g.frames[0],
				    "{\"result\":{\"header\":{\"revision\":\"5\"},\"created\":true}}");
		assert_string_equal(g.frames[2], "{\"error\":{\"message\":\"a \\\"}\\\" in a string\"}}");
		assert_int_equal(sp.len, 0);
		watch_splitter_clear(&sp);
	}
}

/* Nothing fed yields nothing; an unfinished object waits for its end; a
 * callback's stop is obeyed. */
static void test_split_partial_and_stop(void **state)
{
	struct watch_splitter sp = {0};
	struct got g = {.stop_after = 1};
	(void)state;
	assert_int_equal(watch_splitter_feed(&sp, "", 0, collect, &g), 0);
	assert_int_equal(g.n, 0);
	assert_int_equal(watch_splitter_feed(&sp, "{\"a\":{", 6, collect, &g), 0);
	assert_int_equal(g.n, 0);
	assert_int_equal(watch_splitter_feed(&sp, "}}{\"b\":1}", 9, collect, &g), 1);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.frames[0], "{\"a\":{}}");
	watch_splitter_clear(&sp);
}

/* The watch ID (0 when left out) and the events' revisions, in order. */
static void test_frame_scan(void **state)
{
	const char *f = "{\"result\":{\"header\":{\"revision\":\"9\"},\"watch_id\":\"12\",\"events\":"
			"[{\"kv\":{\"mod_revision\":\"8\"}},{\"kv\":{\"mod_revision\":9}}]}}";
	const char *p = f;
	long long id = -1, rev = 0;
	(void)state;
	assert_true(watch_frame_id(f, strlen(f), &id));
	assert_int_equal(id, 12);
	assert_true(watch_frame_next_rev(&p, f + strlen(f), &rev));
	assert_int_equal(rev, 8);
	assert_true(watch_frame_next_rev(&p, f + strlen(f), &rev));
	assert_int_equal(rev, 9);
	assert_false(watch_frame_next_rev(&p, f + strlen(f), &rev));

	f = "{\"result\":{\"events\":[]}}";
	assert_true(watch_frame_id(f, strlen(f), &id));
	assert_int_equal(id, 0);
	f = "{\"error\":{\"watch_id\":\"1\"}}";
	assert_false(watch_frame_id(f, strlen(f), &id));
}

/* A number longer than a long long saturates instead of overflowing. */
static void test_frame_huge_number(void **state)
{
	const char *f = "{\"result\":{\"watch_id\":\"99999999999999999999999\"}}";
	const char *p = "\"mod_revision\":123456789012345678901234567890";
	long long id = 0, rev = 0;
	(void)state;
	assert_true(watch_frame_id(f, strlen(f), &id));
	assert_true(id == LLONG_MAX);
	assert_true(watch_frame_next_rev(&p, p + strlen(p), &rev));
	assert_true(rev == LLONG_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_any_chunking),
		cmocka_unit_test(test_split_partial_and_stop),
		cmocka_unit_test(test_frame_scan),
		cmocka_unit_test(test_frame_huge_number),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
