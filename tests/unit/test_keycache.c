/* test_keycache.c — unit tests of the cache of live rows (store/keycache.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/keycache.h"

#define K(s) (const uint8_t *)(s), strlen(s)

static struct keycache_row row(int64_t id)
{
	return (struct keycache_row){.id = id, .create_rev = id + 1, .version = id + 2,
				     .lease = id + 3};
}

static void assert_row(struct keycache *c, const char *key, int64_t id)
{
	struct keycache_row r;
	assert_true(keycache_get(c, K(key), &r));
	assert_int_equal(r.id, id);
	assert_int_equal(r.create_rev, id + 1);
	assert_int_equal(r.version, id + 2);
	assert_int_equal(r.lease, id + 3);
}

static void assert_absent(struct keycache *c, const char *key)
{
	struct keycache_row r;
	assert_false(keycache_get(c, K(key), &r));
}

/* A key reads back what was last put for it, until dropped or cleared. */
static void test_put_get_replace_drop_clear(void **state)
{
	(void)state;
	struct keycache *c = keycache_new(64 * 1024);
	assert_non_null(c);
	assert_absent(c, "a");
	keycache_put(c, K("a"), &(struct keycache_row){0});
	keycache_put(c, K("a"), &(struct keycache_row){.id = 7, .create_rev = 8, .version = 9,
							.lease = 10});
	keycache_put(c, K("b"), &(struct keycache_row){.id = 20, .create_rev = 21, .version = 22,
							.lease = 23});
	assert_row(c, "a", 7);
	assert_row(c, "b", 20);
	/* a prefix or an extension of a key is another key */
	assert_absent(c, "");
	assert_absent(c, "ab");
	keycache_drop(c, K("a"));
	assert_absent(c, "a");
	assert_row(c, "b", 20);
	keycache_drop(c, K("never"));
	keycache_clear(c);
	assert_absent(c, "b");
	/* usable again after a clear */
	struct keycache_row r = row(30);
	keycache_put(c, K("b"), &r);
	assert_row(c, "b", 30);
	keycache_free(c);
}

/* With one set of two, a third key evicts the less recently used one. */
static void test_two_way_eviction(void **state)
{
	(void)state;
	struct keycache *c = keycache_new(1);
	assert_null(c);   /* less than one set */
	for (size_t bytes = 1; (c = keycache_new(bytes)) == NULL; bytes *= 2)
		assert_true(bytes < 4096);
	assert_int_equal(keycache_capacity(c), 2);
	struct keycache_row ra = row(1), rb = row(2), rc = row(3);
	keycache_put(c, K("a"), &ra);
	keycache_put(c, K("b"), &rb);
	assert_row(c, "a", 1);   /* a is now the more recently used */
	keycache_put(c, K("c"), &rc);
	assert_row(c, "a", 1);
	assert_row(c, "c", 3);
	assert_absent(c, "b");
	keycache_free(c);
}

/* Keys longer than KEYCACHE_KEY_MAX are never cached; one at the limit is. */
static void test_long_keys_not_cached(void **state)
{
	(void)state;
	uint8_t key[KEYCACHE_KEY_MAX + 1];
	struct keycache_row r = row(5), out;
	struct keycache *c = keycache_new(64 * 1024);
	memset(key, 'x', sizeof key);
	keycache_put(c, key, sizeof key, &r);
	assert_false(keycache_get(c, key, sizeof key, &out));
	keycache_put(c, key, KEYCACHE_KEY_MAX, &r);
	assert_true(keycache_get(c, key, KEYCACHE_KEY_MAX, &out));
	assert_int_equal(out.id, 5);
	keycache_drop(c, key, sizeof key);
	assert_true(keycache_get(c, key, KEYCACHE_KEY_MAX, &out));
	keycache_free(c);
}

/* A NULL cache (none configured) holds nothing and takes every call. */
static void test_null_cache(void **state)
{
	(void)state;
	struct keycache_row r = row(1);
	keycache_put(NULL, K("a"), &r);
	assert_false(keycache_get(NULL, K("a"), &r));
	keycache_drop(NULL, K("a"));
	keycache_clear(NULL);
	assert_int_equal(keycache_capacity(NULL), 0);
	keycache_free(NULL);
}

/* Many keys through a small cache: whatever it returns is the last row put. */
static void test_many_keys_only_latest(void **state)
{
	(void)state;
	enum { N = 3000 };
	static int64_t last[N];
	struct keycache *c = keycache_new(16 * 1024);
	char key[16];
	unsigned seed = 7;
	size_t hits = 0;
	assert_non_null(c);
	for (int i = 0; i < 50000; i++) {
		int k = (int)(rand_r(&seed) % N);
		snprintf(key, sizeof key, "key/%d", k);
		struct keycache_row r;
		if (keycache_get(c, K(key), &r)) {
			assert_int_equal(r.id, last[k]);
			hits++;
		}
		last[k] = i + 1;
		r = row(i + 1);
		keycache_put(c, K(key), &r);
	}
	assert_true(hits > 0);
	keycache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_replace_drop_clear),
		cmocka_unit_test(test_two_way_eviction),
		cmocka_unit_test(test_long_keys_not_cached),
		cmocka_unit_test(test_null_cache),
		cmocka_unit_test(test_many_keys_only_latest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
