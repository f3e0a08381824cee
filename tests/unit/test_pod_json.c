/* test_pod_json.c — the benchmark's Kubernetes-like values: real Pod JSON
 * of the asked size, different from seed to seed, the same for one seed,
 * and compressible the way JSON is (not random bytes, not one repeated
 * pattern). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>
#include <lz4.h>

#include "client/pod_json.h"

/* From 1 to 4 KiB: a Pod object with its parts, at least as large as asked
 * and at most ~1 KiB more. */
static void test_sizes_and_shape(void **state)
{
	(void)state;
	for (size_t target = 1024; target <= 4096; target += 256) {
		size_t len;
		char *text = pod_json(target * 31 + 7, target, &len);
		json_error_t err;
		json_t *o;

		assert_non_null(text);
		assert_int_equal(strlen(text), len);
		assert_true(len >= target && len <= target + 1200);
		o = json_loads(text, 0, &err);
		assert_non_null(o);
		assert_string_equal(json_string_value(json_object_get(o, "kind")), "Pod");
		assert_non_null(json_object_get(json_object_get(o, "metadata"), "uid"));
		assert_true(json_array_size(json_object_get(json_object_get(o, "spec"),
							    "containers")) == 1);
		json_decref(o);
		free(text);
	}
}

/* One seed, one object; another seed, another object of about the size. */
static void test_seeds(void **state)
{
	size_t la, lb, lc;
	char *a = pod_json(1, 2048, &la), *b = pod_json(1, 2048, &lb), *c = pod_json(2, 2048, &lc);
	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	assert_false(la == lc && memcmp(a, c, la) == 0);
	free(a);
	free(b);
	free(c);
}

/* lz4, one value at a time as the store keeps them, saves something but
 * not nearly everything: between 1.2x and 3x over the range. */
static void test_compressible_like_json(void **state)
{
	(void)state;
	for (size_t target = 1024; target <= 4096; target += 1024) {
		size_t len;
		char *text = pod_json(target, target, &len);
		char out[LZ4_COMPRESSBOUND(8192)];
		int c;

		assert_non_null(text);
		c = LZ4_compress_default(text, out, (int)len, (int)sizeof out);
		assert_true(c > 0);
		assert_true((double)len / c > 1.2 && (double)len / c < 3.0);
		free(text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes_and_shape),
		cmocka_unit_test(test_seeds),
		cmocka_unit_test(test_compressible_like_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
