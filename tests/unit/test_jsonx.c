/* test_jsonx.c — the compact JSON writer gives json_dumps' bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/jsonx.h"

static void same_as_jansson(json_t *v)
{
	char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	size_t len = 0;
	char *got = jsonx_dumps(v, &len);
	assert_non_null(want);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(len, strlen(want));
	free(want);
	free(got);
}

/* Answers as the gateway builds them come out as jansson writes them:
 * members in insertion order, numbers, literals, nesting, empties. */
static void test_documents(void **state)
{
	(void)state;
	static const char *const docs[] = {
		"{}", "[]", "{\"a\":[]}", "{\"a\":{}}", "null", "true", "false", "0", "-9223372036854775808",
		"{\"header\":{\"cluster_id\":\"1\",\"revision\":\"42\"},\"kvs\":[{\"key\":\"YQ==\","
		"\"value\":\"Yg==\"}],\"count\":\"1\",\"more\":false}",
		"{\"z\":1,\"a\":2,\"m\":[1,[2,[3,{}]],null,true]}",
		"[1.5,0.1,1e300,-0.0,3.0]",
		"{\"s\":\"\\u00e9t\\u00e9 \\u2028 \\ud83d\\ude00\"}",
	};
	for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
		json_error_t e;
		json_t *v = json_loads(docs[i], JSON_DECODE_ANY, &e);
		assert_non_null(v);
		same_as_jansson(v);
		json_decref(v);
	}
}

/* Every ASCII byte, control characters, quotes, backslashes and NULs inside
 * strings and keys are escaped exactly as jansson escapes them. */
static void test_escapes(void **state)
{
	(void)state;
	char all[128];
	for (int i = 0; i < 128; i++)
		all[i] = (char)i;
	json_t *o = json_object();
	json_object_set_new(o, "all", json_stringn(all, sizeof all));
	json_object_set_new(o, "k\"\\\n\x01/", json_string("q\"b\\s/t\tr\r"));
	json_object_set_new(o, "", json_string(""));
	same_as_jansson(o);
	json_decref(o);

	srand(7);
	for (int n = 0; n < 500; n++) {
		char s[64];
		size_t len = (size_t)(rand() % 64);
		for (size_t i = 0; i < len; i++)
			s[i] = (char)(rand() % 128);
		json_t *v = json_stringn(s, len);
		same_as_jansson(v);
		json_decref(v);
	}
}

/* A string that is not valid UTF-8 fails, as it does with json_dumps. */
static void test_invalid_utf8(void **state)
{
	(void)state;
	json_t *o = json_object();
	json_object_set_new(o, "bad", json_stringn_nocheck("\xff\xfe", 2));
	assert_null(json_dumps(o, JSON_COMPACT));
	assert_null(jsonx_dumps(o, NULL));
	json_decref(o);
}

static void loads_as_jansson(const char *text, size_t flags)
{
	json_error_t e1, e2;
	json_t *a = jsonx_loadb(text, strlen(text), flags, &e1);
	json_t *b = json_loadb(text, strlen(text), flags, &e2);
	if (b == NULL) {
		assert_null(a);
		assert_string_equal(e1.text, e2.text);
		return;
	}
	assert_non_null(a);
	char *ta = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
	char *tb = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
	assert_string_equal(ta, tb);
	assert_true(json_equal(a, b));
	free(ta);
	free(tb);
	json_decref(a);
	json_decref(b);
}

/* Requests parse to jansson's values, and bad ones fail with jansson's
 * message: the quick path only takes what it builds the same way. */
static void test_load(void **state)
{
	(void)state;
	static const char *const docs[] = {
		"{\"key\":\"Zm9v\",\"value\":\"YmFy\"}",
		" {\"key\" : \"Zm9v\" ,\n\t\"lease\":\"7\", \"prev_kv\":true, \"x\":false, \"n\":null } ",
		"{\"success\":[{\"request_put\":{\"key\":\"AA==\",\"value\":\"\"}}],\"compare\":[]}",
		"{\"a\":1,\"a\":2,\"b\":-0,\"c\":-123456789012345678,\"d\":1234567890123456789}",
		"{\"a\":007}", "{\"a\":1.5}", "{\"a\":1e3}", "{\"a\":-}", "{\"a\":99999999999999999999}",
		"{\"k\":\"caf\u00e9\"}", "{\"k\":\"\\n\"}", "{\"k\":\"\xc3\xa9\"}", "{\"k\":\"\xff\"}",
		"{\"a\":1} x", "{\"a\":1", "{\"a\" 1}", "{\"a\":1,}", "{,}", "{}", "[]", "\"s\"", "7", "",
		"{\"a\":[1,2,[3,[4,{\"b\":[]}]]]}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":[1 2]}",
	};
	for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
		loads_as_jansson(docs[i], 0);
		loads_as_jansson(docs[i], JSON_DECODE_ANY);
	}
}

/* A string value with an escape, a quote, a control byte, DEL or a
 * non-ASCII byte anywhere in it (in the first, a middle or the last word of
 * eight) parses as jansson parses it, or fails as jansson fails. */
static void test_load_special_byte_anywhere(void **state)
{
	(void)state;
	static const char *const specials[] = {"\\n", "\\\"", "\"", "\x01", "\x1f", "\x7f",
						"\xc3\xa9", "\xff", "\\u0041", " ", "~"};
	char doc[128];
	for (size_t len = 0; len <= 40; len++)
		for (size_t at = 0; at <= len; at++)
			for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) {
				char val[64];
				memset(val, 'A', len);
				val[len] = '\0';
				snprintf(doc, sizeof doc, "{\"key\":\"%.*s%s%s\"}", (int)at, val,
					 specials[k], val + at);
				loads_as_jansson(doc, 0);
			}
}

/* An integer field written as a real is taken when whole and in range
 * (Go takes 1e3), refused when fractional or out of range (1e30, NaN-free
 * but beyond int64) with the field's error, never converted blindly. */
static void test_integer_fields_from_reals(void **state)
{
	(void)state;
	char errmsg[256];
	json_error_t e;
	json_t *o = json_loads("{\"a\":1e3,\"b\":1e30,\"c\":-1e30,\"d\":1.5,\"e\":1e19,"
			       "\"f\":-1e3,\"g\":2e19,\"h\":-9.223372036854775808e18}", 0, &e);
	int64_t i = 0;
	uint64_t u = 0;
	assert_non_null(o);
	assert_int_equal(jsonx_get_i64(o, "a", &i, errmsg), 0);
	assert_true(i == 1000);
	assert_int_not_equal(jsonx_get_i64(o, "b", &i, errmsg), 0);
	assert_int_not_equal(jsonx_get_i64(o, "c", &i, errmsg), 0);
	assert_int_not_equal(jsonx_get_i64(o, "d", &i, errmsg), 0);
	assert_int_not_equal(jsonx_get_i64(o, "e", &i, errmsg), 0);
	assert_int_equal(jsonx_get_i64(o, "h", &i, errmsg), 0);
	assert_true(i == INT64_MIN);
	assert_int_equal(jsonx_get_u64(o, "e", &u, errmsg), 0);
	assert_true(u == 10000000000000000000ull);
	assert_int_not_equal(jsonx_get_u64(o, "f", &u, errmsg), 0);
	assert_int_not_equal(jsonx_get_u64(o, "g", &u, errmsg), 0);
	json_decref(o);
}

/* 64-bit integers are answered as decimal strings, extremes included. */
static void test_integers_as_strings(void **state)
{
	(void)state;
	static const struct {
		int64_t v;
		const char *s;
	} cases[] = {{0, "0"}, {7, "7"}, {-1, "-1"}, {1234567890123, "1234567890123"},
		     {INT64_MAX, "9223372036854775807"}, {INT64_MIN, "-9223372036854775808"}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *v = jsonx_i64(cases[i].v);
		assert_string_equal(json_string_value(v), cases[i].s);
		json_decref(v);
	}
	json_t *u = jsonx_u64(UINT64_MAX);
	assert_string_equal(json_string_value(u), "18446744073709551615");
	json_decref(u);
}

/* The tree-less writer writes each value as jsonx_dumps writes the tree's
 * value: integers (extremes too), base64 bytes of every length mod 3 and
 * every byte value, and a buffer grown from nothing through many reallocs. */
static void test_out_same_as_tree(void **state)
{
	(void)state;
	static const int64_t ints[] = {0, 1, -1, 9, 10, -10, 1234567890123, INT64_MAX, INT64_MIN};
	static const uint64_t uints[] = {0, 1, 10, UINT64_MAX};
	struct jsonx_out out = {0};
	json_t *arr = json_array();
	uint8_t bytes[700];
	for (size_t i = 0; i < sizeof bytes; i++)
		bytes[i] = (uint8_t)(i * 37 + 11);
	JSONX_OUT_LIT(&out, "[");
	for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
		jsonx_out_i64(&out, ints[i]);
		JSONX_OUT_LIT(&out, ",");
		json_array_append_new(arr, jsonx_i64(ints[i]));
	}
	for (size_t i = 0; i < sizeof uints / sizeof uints[0]; i++) {
		jsonx_out_u64(&out, uints[i]);
		JSONX_OUT_LIT(&out, ",");
		json_array_append_new(arr, jsonx_u64(uints[i]));
	}
	for (size_t n = 0; n <= sizeof bytes; n += (n < 8 ? 1 : 97)) {
		jsonx_out_bytes(&out, bytes, n);
		JSONX_OUT_LIT(&out, ",");
		json_array_append_new(arr, jsonx_bytes(bytes, n));
	}
	jsonx_out_raw(&out, "null]", 5);
	json_array_append_new(arr, json_null());
	char *want = jsonx_dumps(arr, NULL);
	assert_false(out.failed);
	assert_int_equal(out.len, strlen(want));
	assert_memory_equal(out.p, want, out.len);
	free(want);
	json_decref(arr);
	jsonx_out_free(&out);
	assert_null(out.p);
	assert_int_equal(out.len, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_documents),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_load_special_byte_anywhere),
		cmocka_unit_test(test_integers_as_strings),
		cmocka_unit_test(test_integer_fields_from_reals),
		cmocka_unit_test(test_out_same_as_tree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
