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

/* Each byte's 6-bit value with B64_Q_OK set, and B64_Q_STD or B64_Q_URL
 * for the characters only one alphabet has; 0 for anything else. */
#define B64_Q_OK 0x100
#define B64_Q_STD 0x200
#define B64_Q_URL 0x400
#define Q(c, v) [c] = B64_Q_OK | (v)
static const uint16_t b64_quick[256] = {
	Q('A', 0), Q('B', 1), Q('C', 2), Q('D', 3), Q('E', 4), Q('F', 5), Q('G', 6),
	Q('H', 7), Q('I', 8), Q('J', 9), Q('K', 10), Q('L', 11), Q('M', 12), Q('N', 13),
	Q('O', 14), Q('P', 15), Q('Q', 16), Q('R', 17), Q('S', 18), Q('T', 19), Q('U', 20),
	Q('V', 21), Q('W', 22), Q('X', 23), Q('Y', 24), Q('Z', 25), Q('a', 26), Q('b', 27),
	Q('c', 28), Q('d', 29), Q('e', 30), Q('f', 31), Q('g', 32), Q('h', 33), Q('i', 34),
	Q('j', 35), Q('k', 36), Q('l', 37), Q('m', 38), Q('n', 39), Q('o', 40), Q('p', 41),
	Q('q', 42), Q('r', 43), Q('s', 44), Q('t', 45), Q('u', 46), Q('v', 47), Q('w', 48),
	Q('x', 49), Q('y', 50), Q('z', 51), Q('0', 52), Q('1', 53), Q('2', 54), Q('3', 55),
	Q('4', 56), Q('5', 57), Q('6', 58), Q('7', 59), Q('8', 60), Q('9', 61),
	['+'] = B64_Q_OK | B64_Q_STD | 62, ['/'] = B64_Q_OK | B64_Q_STD | 63,
	['-'] = B64_Q_OK | B64_Q_URL | 62, ['_'] = B64_Q_OK | B64_Q_URL | 63,
};
#undef Q

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
	unsigned kinds = 0;
	for (; i + 4 <= len; i += 4) {
		const unsigned char *q = (const unsigned char *)src + i;
		unsigned a = b64_quick[q[0]], b = b64_quick[q[1]], c = b64_quick[q[2]],
			 d = b64_quick[q[3]];
		if (!(a & b & c & d & B64_Q_OK))
			break;
		kinds |= a | b | c | d;
		uint32_t v = (a & 63) << 18 | (b & 63) << 12 | (c & 63) << 6 | (d & 63);
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
