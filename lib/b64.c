/* b64.c — RFC 4648 base64: a padded standard encoder and a decoder that
 * also takes the URL-safe alphabet and unpadded input, as etcd clients send. */
#include "lib/b64.h"

#include <stdbool.h>
#include <string.h>

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

/* The two characters of every 12-bit value, built by the compiler: a group
 * of three bytes is two lookups and two 2-byte copies instead of four of
 * each (base64 of values was a tenth of a range read's CPU). */
#define B64_CHAR(x) ((x) < 26 ? 'A' + (x) : (x) < 52 ? 'a' + (x) - 26 : \
		     (x) < 62 ? '0' + (x) - 52 : (x) == 62 ? '+' : '/')
#define B64_P1(i) {B64_CHAR((i) >> 6), B64_CHAR((i) & 63)}
#define B64_P4(i) B64_P1(i), B64_P1((i) + 1), B64_P1((i) + 2), B64_P1((i) + 3)
#define B64_P16(i) B64_P4(i), B64_P4((i) + 4), B64_P4((i) + 8), B64_P4((i) + 12)
#define B64_P64(i) B64_P16(i), B64_P16((i) + 16), B64_P16((i) + 32), B64_P16((i) + 48)
#define B64_P256(i) B64_P64(i), B64_P64((i) + 64), B64_P64((i) + 128), B64_P64((i) + 192)
#define B64_P1024(i) B64_P256(i), B64_P256((i) + 256), B64_P256((i) + 512), B64_P256((i) + 768)
static const char b64_pairs[4096][2] = {
	B64_P1024(0), B64_P1024(1024), B64_P1024(2048), B64_P1024(3072),
};

size_t b64_encode(const uint8_t *src, size_t n, char *dst)
{
	size_t i = 0, o = 0;

	for (; i + 3 <= n; i += 3, o += 4) {
		uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
		memcpy(dst + o, b64_pairs[v >> 12], 2);
		memcpy(dst + o + 2, b64_pairs[v & 4095], 2);
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

/* Each byte's 6-bit value, already shifted to its place in a quad's 24
 * bits (one table per place), with B64_Q_BAD for anything outside both
 * alphabets ('=' included) and B64_Q_STD or B64_Q_URL for the characters
 * only one alphabet has: a quad is four loads and three ORs. */
#define B64_Q_BAD (1u << 24)
#define B64_Q_STD (1u << 25)
#define B64_Q_URL (1u << 26)
#define B64_VAL(c) ((c) >= 'A' && (c) <= 'Z' ? (c) - 'A' :                   \
		    (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26 :              \
		    (c) >= '0' && (c) <= '9' ? (c) - '0' + 52 :              \
		    (c) == '+' || (c) == '-' ? 62 : (c) == '/' || (c) == '_' ? 63 : -1)
#define B64_ENTRY(shift, c)                                                    \
	(B64_VAL(c) < 0 ? B64_Q_BAD :                                          \
	 (uint32_t)B64_VAL(c) << (shift) |                                     \
	 ((c) == '+' || (c) == '/' ? B64_Q_STD : (c) == '-' || (c) == '_' ? B64_Q_URL : 0u))
#define B64_ROW(s, b)                                                          \
	B64_ENTRY(s, (b) + 0), B64_ENTRY(s, (b) + 1), B64_ENTRY(s, (b) + 2),   \
	B64_ENTRY(s, (b) + 3), B64_ENTRY(s, (b) + 4), B64_ENTRY(s, (b) + 5),   \
	B64_ENTRY(s, (b) + 6), B64_ENTRY(s, (b) + 7), B64_ENTRY(s, (b) + 8),   \
	B64_ENTRY(s, (b) + 9), B64_ENTRY(s, (b) + 10), B64_ENTRY(s, (b) + 11), \
	B64_ENTRY(s, (b) + 12), B64_ENTRY(s, (b) + 13), B64_ENTRY(s, (b) + 14), \
	B64_ENTRY(s, (b) + 15)
#define B64_TABLE(s)                                                           \
	{B64_ROW(s, 0), B64_ROW(s, 16), B64_ROW(s, 32), B64_ROW(s, 48),         \
	 B64_ROW(s, 64), B64_ROW(s, 80), B64_ROW(s, 96), B64_ROW(s, 112),       \
	 B64_ROW(s, 128), B64_ROW(s, 144), B64_ROW(s, 160), B64_ROW(s, 176),    \
	 B64_ROW(s, 192), B64_ROW(s, 208), B64_ROW(s, 224), B64_ROW(s, 240)}
static const uint32_t b64_q0[256] = B64_TABLE(18);
static const uint32_t b64_q1[256] = B64_TABLE(12);
static const uint32_t b64_q2[256] = B64_TABLE(6);
static const uint32_t b64_q3[256] = B64_TABLE(0);

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

	/* Whole quads by table (nearly all of any value); a quad with '=' or
	 * anything outside both alphabets, and the tail, go through the careful
	 * loop below. */
	size_t i = 0;
	uint32_t kinds = 0;
	for (; i + 4 <= len; i += 4) {
		const unsigned char *q = (const unsigned char *)src + i;
		uint32_t v = b64_q0[q[0]] | b64_q1[q[1]] | b64_q2[q[2]] | b64_q3[q[3]];
		if (v & B64_Q_BAD)
			break;
		kinds |= v;
		dst[o++] = (uint8_t)(v >> 16);
		dst[o++] = (uint8_t)(v >> 8);
		dst[o++] = (uint8_t)v;
	}
	seen_std = (kinds & B64_Q_STD) != 0;
	seen_url = (kinds & B64_Q_URL) != 0;
	/* Mixed alphabets are not something any encoder produces. */
	if (seen_std && seen_url)
		return -1;
	for (; i < len; i++) {
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
