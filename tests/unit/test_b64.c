/* test_b64.c — base64 against RFC 4648's vectors, random round trips, and
 * the inputs the decoder must refuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/b64.h"

static const struct {
	const char *plain;
	const char *coded;
} rfc_vectors[] = {
	{"", ""},
	{"f", "Zg=="},
	{"fo", "Zm8="},
	{"foo", "Zm9v"},
	{"foob", "Zm9vYg=="},
	{"fooba", "Zm9vYmE="},
	{"foobar", "Zm9vYmFy"},
};

#define NVECTORS (sizeof(rfc_vectors) / sizeof(rfc_vectors[0]))

/* Decodes src (copied into an exactly sized heap buffer so ASan catches any
 * read past n) and returns the decoder's result. */
static long decode_exact(const char *src, size_t n, uint8_t *dst)
{
	char *copy = malloc(n ? n : 1);
	long r;

	assert_non_null(copy);
	memcpy(copy, src, n);
	r = b64_decode(copy, n, dst);
	free(copy);
	return r;
}

/* Encoding the RFC 4648 test vectors gives exactly the RFC's text. */
static void test_encode_rfc_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < NVECTORS; i++) {
		size_t n = strlen(rfc_vectors[i].plain);
		char out[32];
		size_t len;

		assert_true(b64_encoded_size(n) <= sizeof(out));
		len = b64_encode((const uint8_t *)rfc_vectors[i].plain, n, out);
		assert_int_equal(len, strlen(rfc_vectors[i].coded));
		assert_int_equal(b64_encoded_size(n), len + 1);
		assert_string_equal(out, rfc_vectors[i].coded);
	}
}

/* Decoding the RFC 4648 vectors, padded or with padding dropped, gives back
 * the original bytes. */
static void test_decode_rfc_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < NVECTORS; i++) {
		const char *coded = rfc_vectors[i].coded;
		size_t plain_len = strlen(rfc_vectors[i].plain);
		size_t n = strlen(coded);
		uint8_t out[32];
		long r;

		assert_true(b64_decoded_max(n) <= sizeof(out));
		r = decode_exact(coded, n, out);
		assert_int_equal(r, (long)plain_len);
		assert_memory_equal(out, rfc_vectors[i].plain, plain_len);

		while (n > 0 && coded[n - 1] == '=')
			n--;
		r = decode_exact(coded, n, out);
		assert_int_equal(r, (long)plain_len);
		assert_memory_equal(out, rfc_vectors[i].plain, plain_len);
	}
}

/* The URL-safe alphabet ('-' and '_') decodes to the same bytes as the
 * standard one ('+' and '/'). */
static void test_decode_url_safe(void **state)
{
	static const uint8_t bytes[] = {0xfb, 0xff, 0xbf, 0xfe};
	char std[16];
	char url[16];
	uint8_t out[16];

	(void)state;
	b64_encode(bytes, sizeof(bytes), std);
	assert_non_null(strpbrk(std, "+/"));
	strcpy(url, std);
	for (char *p = url; *p; p++) {
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
	}
	assert_int_equal(decode_exact(std, strlen(std), out), (long)sizeof(bytes));
	assert_memory_equal(out, bytes, sizeof(bytes));
	memset(out, 0, sizeof(out));
	assert_int_equal(decode_exact(url, strlen(url), out), (long)sizeof(bytes));
	assert_memory_equal(out, bytes, sizeof(bytes));
}

/* Random binary of every length up to 300 survives encode then decode. */
static void test_round_trip_random(void **state)
{
	(void)state;
	srand(12345);
	for (size_t n = 0; n <= 300; n++) {
		uint8_t *src = malloc(n + 1);
		char *enc = malloc(b64_encoded_size(n));
		uint8_t *dec;
		size_t len;
		long r;

		assert_non_null(src);
		assert_non_null(enc);
		for (size_t i = 0; i < n; i++)
			src[i] = (uint8_t)(rand() & 0xff);
		len = b64_encode(src, n, enc);
		assert_int_equal(len % 4, 0);
		dec = malloc(b64_decoded_max(len) + 1);
		assert_non_null(dec);
		r = decode_exact(enc, len, dec);
		assert_int_equal(r, (long)n);
		assert_memory_equal(dec, src, n);
		free(dec);
		free(src);
		free(enc);
	}
}

/* Malformed input — bad characters, whitespace, misplaced or partial
 * padding, impossible lengths, mixed alphabets — is refused. */
static void test_decode_rejects(void **state)
{
	static const char *bad[] = {
		"Zm9v YmFy",   /* inner space */
		"Zm9vYmFy\n",  /* trailing newline */
		" Zm9v",       /* leading space */
		"Zg=",         /* padded but not a whole quad */
		"Zg===",       /* too much padding */
		"Z===",        /* three pad characters */
		"====",        /* only padding */
		"Z",           /* one character can't hold a byte */
		"Zm9vY",       /* same, after a whole quad */
		"Zg==Zg==",    /* padding in the middle */
		"Z=g=",        /* padding inside a quad */
		"Zm9v*mFy",    /* not in either alphabet */
		"+_8=",        /* mixed standard and URL-safe alphabets */
		"Zm9v\0mFy",   /* NUL inside */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t out[16];
		size_t n = strlen(bad[i]);

		if (i == sizeof(bad) / sizeof(bad[0]) - 1)
			n = 8;  /* the NUL case: the length includes the NUL */
		assert_int_equal(decode_exact(bad[i], n, out), -1);
	}
}

/* The decoder stops at n even when valid base64 follows in memory. */
static void test_decode_respects_length(void **state)
{
	uint8_t out[16];

	(void)state;
	assert_int_equal(b64_decode("Zm9vYmFy", 4, out), 3);
	assert_memory_equal(out, "foo", 3);
	assert_int_equal(b64_decode("Zm9vYmFy", 0, out), 0);
}

/* Every group of three bytes encodes as RFC 4648's alphabet says, six bits
 * at a time: the encoder's table of character pairs has no wrong entry. */
static void test_encode_every_group(void **state)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	(void)state;
	for (uint32_t v = 0; v < (1u << 24); v++) {
		uint8_t in[3] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
		char out[5];
		assert_int_equal(b64_encode(in, 3, out), 4);
		if (out[0] != alphabet[v >> 18] || out[1] != alphabet[v >> 12 & 63] ||
		    out[2] != alphabet[v >> 6 & 63] || out[3] != alphabet[v & 63] || out[4] != '\0')
			fail_msg("group %06x encoded as %.4s", v, out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_rfc_vectors),
		cmocka_unit_test(test_encode_every_group),
		cmocka_unit_test(test_decode_rfc_vectors),
		cmocka_unit_test(test_decode_url_safe),
		cmocka_unit_test(test_round_trip_random),
		cmocka_unit_test(test_decode_rejects),
		cmocka_unit_test(test_decode_respects_length),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
