/* b64.c — RFC 4648 base64: a padded standard encoder and a decoder that
 * also takes the URL-safe alphabet and unpadded input, as etcd clients send. */
#include "lib/b64.h"

#include <stdbool.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Decoding classes: a value 0..63, or one of these markers. */
enum {
	B64_BAD = -1,
	B64_STD = -2,   /* '+' or '/': the standard alphabet only */
	B64_URL = -3,   /* '-' or '_': the URL-safe alphabet only */
	B64_PAD = -4,
};

size_t b64_encoded_size(size_t n)
{
	return (n + 2) / 3 * 4 + 1;
}

size_t b64_encode(const uint8_t *src, size_t n, char *dst)
{
	size_t i = 0, o = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
		dst[o++] = b64_alphabet[v >> 18 & 63];
		dst[o++] = b64_alphabet[v >> 12 & 63];
		dst[o++] = b64_alphabet[v >> 6 & 63];
		dst[o++] = b64_alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)src[i] << 16;
		dst[o++] = b64_alphabet[v >> 18 & 63];
		dst[o++] = b64_alphabet[v >> 12 & 63];
		dst[o++] = '=';
		dst[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
		dst[o++] = b64_alphabet[v >> 18 & 63];
		dst[o++] = b64_alphabet[v >> 12 & 63];
		dst[o++] = b64_alphabet[v >> 6 & 63];
		dst[o++] = '=';
	}
	dst[o] = '\0';
	return o;
}

size_t b64_decoded_max(size_t n)
{
	return (n + 3) / 4 * 3;
}

static int b64_class(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	switch (c) {
	case '+': return B64_STD;
	case '/': return B64_STD;
	case '-': return B64_URL;
	case '_': return B64_URL;
	case '=': return B64_PAD;
	default: return B64_BAD;
	}
}

long b64_decode(const char *src, size_t n, uint8_t *dst)
{
	size_t len = n, o = 0;
	uint32_t acc = 0;
	int nacc = 0;
	bool seen_std = false, seen_url = false;

	/* Padding is all-or-nothing: a padded input is whole quads ending in
	 * one or two '='; an unpadded one must not end where '=' belonged. */
	if (len > 0 && src[len - 1] == '=') {
		if (len % 4 != 0)
			return -1;
		len--;
		if (src[len - 1] == '=')
			len--;
	}
	if (len % 4 == 1)
		return -1;

	for (size_t i = 0; i < len; i++) {
		int v = b64_class((unsigned char)src[i]);

		if (v == B64_STD || v == B64_URL) {
			unsigned char c = (unsigned char)src[i];
			if (v == B64_STD)
				seen_std = true;
			else
				seen_url = true;
			v = (c == '+' || c == '-') ? 62 : 63;
		} else if (v < 0) {
			return -1;      /* stray '=', whitespace, anything else */
		}
		/* Mixed alphabets are not something any encoder produces. */
		if (seen_std && seen_url)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		if (++nacc == 4) {
			dst[o++] = (uint8_t)(acc >> 16);
			dst[o++] = (uint8_t)(acc >> 8);
			dst[o++] = (uint8_t)acc;
			acc = 0;
			nacc = 0;
		}
	}
	if (nacc == 2) {
		dst[o++] = (uint8_t)(acc >> 4);
	} else if (nacc == 3) {
		dst[o++] = (uint8_t)(acc >> 10);
		dst[o++] = (uint8_t)(acc >> 2);
	}
	return (long)o;
}
