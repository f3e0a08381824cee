/* test_spdy.c — SPDY/3 framing: header blocks round-trip through the
 * protocol's dictionary with the compression context carried across
 * frames, split and truncated input waits for more, and malformed or
 * oversized frames are refused without reading past the input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/spdy.h"

/* The dictionary is the spec's: zlib names it by this Adler-32 in every
 * first header block, so a peer with the real one accepts ours. */
static void test_dictionary_checksum(void **state)
{
	size_t n;
	const uint8_t *d = spdy_dictionary(&n);

	(void)state;
	assert_int_equal(n, 1423);
	assert_int_equal(adler32(1, d, (uInt)n), 3821447106u);
	assert_memory_equal(d, "\0\0\0\7options\0\0\0\4head", 19);
}

/* SYN_STREAM and SYN_REPLY blocks decompress to what was compressed, twice
 * in a row on one context, as a connection carries one context across its
 * frames. */
static void test_header_block_round_trip(void **state)
{
	static const char *const h1[] = {"streamtype", "error", "x-multi", "a\0b", NULL};
	static const char *const h2[] = {"streamtype", "stdout", NULL};
	struct spdy_zout zo;
	struct spdy_zin zi;
	uint8_t frame[1024], plain[1024];
	struct spdy_frame f;
	struct spdy_nv nv;
	long n, pl;

	(void)state;
	assert_int_equal(spdy_zout_init(&zo), 0);
	assert_int_equal(spdy_zin_init(&zi), 0);
	n = spdy_syn_stream(&zo, 1, 0, 2, 0, h1, frame, sizeof frame);
	assert_true(n > 18);
	assert_int_equal(spdy_parse_frame(frame, (size_t)n, 4096, &f), n);
	assert_true(f.control);
	assert_int_equal(f.type, SPDY_SYN_STREAM);
	assert_int_equal(f.stream_id, 1);
	assert_int_equal(f.priority, 2);
	pl = spdy_block_inflate(&zi, f.block, f.block_len, plain, sizeof plain);
	assert_true(pl > 0);
	assert_int_equal(spdy_nv_find(plain, (size_t)pl, "StreamType", &nv), 1);
	assert_int_equal(nv.value_len, 5);
	assert_memory_equal(nv.value, "error", 5);
	assert_int_equal(spdy_nv_find(plain, (size_t)pl, "missing", &nv), 0);

	n = spdy_syn_reply(&zo, 3, SPDY_FLAG_FIN, h2, frame, sizeof frame);
	assert_true(n > 12);
	assert_int_equal(spdy_parse_frame(frame, (size_t)n, 4096, &f), n);
	assert_int_equal(f.type, SPDY_SYN_REPLY);
	assert_int_equal(f.flags, SPDY_FLAG_FIN);
	assert_int_equal(f.stream_id, 3);
	pl = spdy_block_inflate(&zi, f.block, f.block_len, plain, sizeof plain);
	assert_true(pl > 0);
	assert_int_equal(spdy_nv_find(plain, (size_t)pl, "streamtype", &nv), 1);
	assert_memory_equal(nv.value, "stdout", 6);
	spdy_zout_free(&zo);
	spdy_zin_free(&zi);
}

/* A block compressed without the dictionary, or garbage, is refused. */
static void test_header_block_bad_compression(void **state)
{
	static const uint8_t junk[] = {0x78, 0x9c, 0xff, 0xff, 0xff, 0x00, 0x13};
	uint8_t plain[256];
	struct spdy_zin zi;

	(void)state;
	assert_int_equal(spdy_zin_init(&zi), 0);
	assert_int_equal(spdy_block_inflate(&zi, junk, sizeof junk, plain, sizeof plain),
			 SPDY_ERROR);
	spdy_zin_free(&zi);
}

/* A block larger than the caller's buffer is an error, not a truncation. */
static void test_header_block_over_cap(void **state)
{
	static char big[3000];
	const char *h[] = {"x-big", big, NULL};
	struct spdy_zout zo;
	struct spdy_zin zi;
	uint8_t frame[4096], plain[1024];
	struct spdy_frame f;
	long n;

	(void)state;
	memset(big, 'a', sizeof big - 1);
	assert_int_equal(spdy_zout_init(&zo), 0);
	assert_int_equal(spdy_zin_init(&zi), 0);
	n = spdy_syn_stream(&zo, 1, 0, 0, 0, h, frame, sizeof frame);
	assert_true(n > 0);
	assert_int_equal(spdy_parse_frame(frame, (size_t)n, 4096, &f), n);
	assert_int_equal(spdy_block_inflate(&zi, f.block, f.block_len, plain, sizeof plain),
			 SPDY_ERROR);
	spdy_zout_free(&zo);
	spdy_zin_free(&zi);
}

/* Plain blocks: lengths past the end, empty names, a count larger than
 * the pairs and trailing bytes are all malformed. */
static void test_nv_malformed(void **state)
{
	static const uint8_t ok[] = {0, 0, 0, 1, 0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b'};
	static const uint8_t past[] = {0, 0, 0, 1, 0, 0, 0, 9, 'a', 0, 0, 0, 1, 'b'};
	static const uint8_t empty[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 'b'};
	static const uint8_t count[] = {0, 0, 0, 2, 0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b'};
	static const uint8_t trail[] = {0, 0, 0, 1, 0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b', 'x'};
	static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 'a'};
	struct spdy_nv nv;

	(void)state;
	assert_int_equal(spdy_nv_find(ok, sizeof ok, "a", &nv), 1);
	assert_int_equal(spdy_nv_find(past, sizeof past, "a", &nv), SPDY_ERROR);
	assert_int_equal(spdy_nv_find(empty, sizeof empty, "a", &nv), SPDY_ERROR);
	assert_int_equal(spdy_nv_find(count, sizeof count, "a", &nv), SPDY_ERROR);
	assert_int_equal(spdy_nv_find(trail, sizeof trail, "a", &nv), SPDY_ERROR);
	assert_int_equal(spdy_nv_find(huge, sizeof huge, "a", &nv), SPDY_ERROR);
	assert_int_equal(spdy_nv_find(ok, 3, "a", &nv), SPDY_ERROR);
}

/* Data frames: every prefix of a frame asks for more, the whole frame
 * parses with its payload in place, and it is read from a buffer that
 * ends exactly where the frame does. */
static void test_data_frame_split(void **state)
{
	uint8_t *frame = malloc(8 + 5);
	struct spdy_frame f;

	(void)state;
	assert_non_null(frame);
	spdy_data_header(frame, 5, SPDY_FLAG_FIN, 5);
	memcpy(frame + 8, "hello", 5);
	for (size_t i = 0; i < 13; i++)
		assert_int_equal(spdy_parse_frame(frame, i, 4096, &f), SPDY_NEED_MORE);
	assert_int_equal(spdy_parse_frame(frame, 13, 4096, &f), 13);
	assert_false(f.control);
	assert_int_equal(f.stream_id, 5);
	assert_int_equal(f.flags, SPDY_FLAG_FIN);
	assert_int_equal(f.length, 5);
	assert_memory_equal(f.payload, "hello", 5);
	free(frame);
}

/* A frame longer than the caller's limit is refused from its header alone,
 * before its payload arrives. */
static void test_oversized_rejected(void **state)
{
	uint8_t h[8];
	struct spdy_frame f;

	(void)state;
	spdy_data_header(h, 1, 0, 70000);
	assert_int_equal(spdy_parse_frame(h, sizeof h, 65536, &f), SPDY_ERROR);
	spdy_data_header(h, 1, 0, SPDY_MAX_LENGTH);
	assert_int_equal(spdy_parse_frame(h, sizeof h, 65536, &f), SPDY_ERROR);
	assert_int_equal(spdy_parse_frame(h, sizeof h, SPDY_MAX_LENGTH, &f), SPDY_NEED_MORE);
}

/* The small control frames encode and parse back; each with a wrong size,
 * a zero stream id where one is needed, or another version is refused. */
static void test_control_frames(void **state)
{
	uint8_t b[32];
	struct spdy_frame f;
	uint8_t fl;
	uint32_t id, v;
	size_t n;

	(void)state;
	n = spdy_ping(b, 7);
	assert_int_equal(spdy_parse_frame(b, n, 64, &f), (long)n);
	assert_int_equal(f.type, SPDY_PING);
	assert_int_equal(f.ping_id, 7);
	n = spdy_rst_stream(b, 3, SPDY_CANCEL);
	assert_int_equal(spdy_parse_frame(b, n, 64, &f), (long)n);
	assert_int_equal(f.type, SPDY_RST_STREAM);
	assert_int_equal(f.stream_id, 3);
	assert_int_equal(f.status, SPDY_CANCEL);
	n = spdy_goaway(b, 9, SPDY_GOAWAY_OK);
	assert_int_equal(spdy_parse_frame(b, n, 64, &f), (long)n);
	assert_int_equal(f.type, SPDY_GOAWAY);
	assert_int_equal(f.stream_id, 9);
	n = spdy_window_update(b, 0, 1000);
	assert_int_equal(spdy_parse_frame(b, n, 64, &f), (long)n);
	assert_int_equal(f.type, SPDY_WINDOW_UPDATE);
	assert_int_equal(f.stream_id, 0);
	assert_int_equal(f.delta, 1000);
	n = spdy_settings1(b, SPDY_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20);
	assert_int_equal(spdy_parse_frame(b, n, 64, &f), (long)n);
	assert_int_equal(f.n_settings, 1);
	spdy_setting(&f, 0, &fl, &id, &v);
	assert_int_equal(id, SPDY_SETTINGS_INITIAL_WINDOW_SIZE);
	assert_int_equal(v, 1 << 20);

	/* A SETTINGS count beyond its entries. */
	b[11] = 2;
	assert_int_equal(spdy_parse_frame(b, n, 64, &f), SPDY_ERROR);
	/* A PING of five bytes. */
	n = spdy_ping(b, 7);
	b[7] = 5;
	b[12] = 0;
	assert_int_equal(spdy_parse_frame(b, n + 1, 64, &f), SPDY_ERROR);
	/* RST_STREAM of stream 0, and with status 0. */
	n = spdy_rst_stream(b, 0, SPDY_CANCEL);
	assert_int_equal(spdy_parse_frame(b, n, 64, &f), SPDY_ERROR);
	n = spdy_rst_stream(b, 1, 0);
	assert_int_equal(spdy_parse_frame(b, n, 64, &f), SPDY_ERROR);
	/* A WINDOW_UPDATE of nothing. */
	n = spdy_window_update(b, 1, 0);
	assert_int_equal(spdy_parse_frame(b, n, 64, &f), SPDY_ERROR);
	/* SPDY/2 framing. */
	n = spdy_ping(b, 7);
	b[1] = 2;
	assert_int_equal(spdy_parse_frame(b, n, 64, &f), SPDY_ERROR);
	/* A data frame on stream 0. */
	spdy_data_header(b, 0, 0, 0);
	assert_int_equal(spdy_parse_frame(b, 8, 64, &f), SPDY_ERROR);
	/* A SYN_STREAM too short for its fixed fields. */
	b[0] = 0x80;
	b[1] = 3;
	b[2] = 0;
	b[3] = SPDY_SYN_STREAM;
	memset(b + 4, 0, 4);
	b[7] = 6;
	memset(b + 8, 1, 6);
	assert_int_equal(spdy_parse_frame(b, 14, 64, &f), SPDY_ERROR);
}

/* An unknown control type parses so that it can be ignored. */
static void test_unknown_control_ignored(void **state)
{
	uint8_t b[12] = {0x80, 3, 0, 0x42, 0, 0, 0, 4, 1, 2, 3, 4};
	struct spdy_frame f;

	(void)state;
	assert_int_equal(spdy_parse_frame(b, sizeof b, 64, &f), 12);
	assert_true(f.control);
	assert_int_equal(f.type, 0x42);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dictionary_checksum),
		cmocka_unit_test(test_header_block_round_trip),
		cmocka_unit_test(test_header_block_bad_compression),
		cmocka_unit_test(test_header_block_over_cap),
		cmocka_unit_test(test_nv_malformed),
		cmocka_unit_test(test_data_frame_split),
		cmocka_unit_test(test_oversized_rejected),
		cmocka_unit_test(test_control_frames),
		cmocka_unit_test(test_unknown_control_ignored),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
