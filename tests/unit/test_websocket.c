/* test_websocket.c — the websocket framing against RFC 6455's examples,
 * split input, size limits, fragmentation and the frames a peer must not
 * send. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/websocket.h"

/* The handshake answer kubectl checks is the RFC's worked example. */
static void test_accept_key_rfc_example(void **state)
{
	char out[WS_ACCEPT_SIZE];

	(void)state;
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* A key that is not base64 of 16 bytes is refused, so no bogus upgrade. */
static void test_accept_key_rejects_bad_keys(void **state)
{
	char out[WS_ACCEPT_SIZE];

	(void)state;
	assert_int_equal(ws_accept_key(NULL, out), -1);
	assert_int_equal(ws_accept_key("", out), -1);
	assert_int_equal(ws_accept_key("short", out), -1);
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==AAAA", out), -1);
	assert_int_equal(ws_accept_key("!!!!!!!!!!!!!!!!!!!!!!!!", out), -1);
}

/* RFC 6455 5.7: an unmasked and a masked "Hello" parse to the same text. */
static void test_parse_rfc_hello(void **state)
{
	static const uint8_t plain[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
	static const uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f,
					 0x9f, 0x4d, 0x51, 0x58};
	uint8_t out[16];
	struct ws_frame f;

	(void)state;
	assert_int_equal(ws_parse_frame(plain, sizeof plain, false, out, sizeof out, &f),
			 (long)sizeof plain);
	assert_true(f.fin);
	assert_int_equal(f.opcode, WS_OP_TEXT);
	assert_int_equal(f.len, 5);
	assert_memory_equal(out, "Hello", 5);
	memset(out, 0, sizeof out);
	assert_int_equal(ws_parse_frame(masked, sizeof masked, true, out, sizeof out, &f),
			 (long)sizeof masked);
	assert_true(f.masked);
	assert_memory_equal(out, "Hello", 5);
}

/* Every strict prefix of a frame asks for more; nothing is half-read. */
static void test_parse_split_input(void **state)
{
	uint8_t frame[WS_MAX_HEADER + 300], out[300];
	uint8_t key[4] = {1, 2, 3, 4};
	uint8_t payload[300];
	size_t hl;
	struct ws_frame f;

	(void)state;
	for (size_t i = 0; i < sizeof payload; i++)
		payload[i] = (uint8_t)i;
	hl = ws_frame_header(frame, WS_OP_BINARY, true, sizeof payload, key);
	assert_int_equal(hl, 8);
	memcpy(frame + hl, payload, sizeof payload);
	ws_mask(frame + hl, sizeof payload, key, 0);
	for (size_t n = 0; n < hl + sizeof payload; n++)
		assert_int_equal(ws_parse_frame(frame, n, true, out, sizeof out, &f),
				 WS_NEED_MORE);
	assert_int_equal(ws_parse_frame(frame, hl + sizeof payload, true, out, sizeof out, &f),
			 (long)(hl + sizeof payload));
	assert_int_equal(f.len, sizeof payload);
	assert_memory_equal(out, payload, sizeof payload);
}

/* 16- and 64-bit lengths round-trip through the encoder and the parser. */
static void test_extended_lengths(void **state)
{
	size_t sizes[] = {125, 126, 65535, 65536, 70000};
	uint8_t *buf = malloc(WS_MAX_HEADER + 70000), *out = malloc(70000);

	(void)state;
	assert_non_null(buf);
	assert_non_null(out);
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		struct ws_frame f;
		size_t hl = ws_frame_header(buf, WS_OP_BINARY, true, sizes[k], NULL);

		assert_int_equal(hl, sizes[k] < 126 ? 2 : sizes[k] <= 65535 ? 4 : 10);
		memset(buf + hl, 'x', sizes[k]);
		assert_int_equal(ws_parse_frame(buf, hl + sizes[k], false, out, 70000, &f),
				 (long)(hl + sizes[k]));
		assert_int_equal(f.len, sizes[k]);
	}
	free(buf);
	free(out);
}

/* A frame over the caller's limit is refused from its header alone, even
 * when it claims an enormous 64-bit length. */
static void test_size_limit(void **state)
{
	uint8_t hdr[WS_MAX_HEADER], out[100];
	uint8_t key[4] = {9, 9, 9, 9};
	struct ws_frame f;
	size_t hl;

	(void)state;
	hl = ws_frame_header(hdr, WS_OP_BINARY, true, 101, key);
	assert_int_equal(ws_parse_frame(hdr, hl, true, out, sizeof out, &f), WS_ERROR);
	hl = ws_frame_header(hdr, WS_OP_BINARY, true, UINT64_C(1) << 40, key);
	assert_int_equal(ws_parse_frame(hdr, hl, true, out, sizeof out, &f), WS_ERROR);
	/* The top bit of a 64-bit length must be zero. */
	hdr[2] = 0x80;
	assert_int_equal(ws_parse_frame(hdr, hl, true, out, sizeof out, &f), WS_ERROR);
}

/* Frames a peer must not send are errors, not data. */
static void test_protocol_errors(void **state)
{
	uint8_t out[200];
	struct ws_frame f;
	static const uint8_t unmasked_from_client[] = {0x82, 0x01, 'a'};
	static const uint8_t masked_from_server[] = {0x82, 0x81, 0, 0, 0, 0, 'a'};
	static const uint8_t rsv[] = {0xC2, 0x80, 0, 0, 0, 0};
	static const uint8_t bad_opcode[] = {0x83, 0x80, 0, 0, 0, 0};
	static const uint8_t fragmented_ping[] = {0x09, 0x80, 0, 0, 0, 0};
	static const uint8_t long_ping[] = {0x89, 0xFE, 0x00, 0x7E};
	static const uint8_t close_one_byte[] = {0x88, 0x81, 0, 0, 0, 0, 3};
	static const uint8_t non_minimal[] = {0x82, 0xFE, 0x00, 0x05};

	(void)state;
	assert_int_equal(ws_parse_frame(unmasked_from_client, sizeof unmasked_from_client, true,
					out, sizeof out, &f), WS_ERROR);
	assert_int_equal(ws_parse_frame(masked_from_server, sizeof masked_from_server, false,
					out, sizeof out, &f), WS_ERROR);
	assert_int_equal(ws_parse_frame(rsv, sizeof rsv, true, out, sizeof out, &f), WS_ERROR);
	assert_int_equal(ws_parse_frame(bad_opcode, sizeof bad_opcode, true, out, sizeof out, &f),
			 WS_ERROR);
	assert_int_equal(ws_parse_frame(fragmented_ping, sizeof fragmented_ping, true, out,
					sizeof out, &f), WS_ERROR);
	assert_int_equal(ws_parse_frame(long_ping, sizeof long_ping, true, out, sizeof out, &f),
			 WS_ERROR);
	assert_int_equal(ws_parse_frame(close_one_byte, sizeof close_one_byte, true, out,
					sizeof out, &f), WS_ERROR);
	assert_int_equal(ws_parse_frame(non_minimal, sizeof non_minimal, true, out, sizeof out,
					&f), WS_ERROR);
}

/* A close frame's status code is read out of its payload. */
static void test_close_code(void **state)
{
	uint8_t buf[WS_MAX_HEADER + 4], out[8];
	uint8_t key[4] = {0xAA, 0xBB, 0xCC, 0xDD};
	struct ws_frame f;
	size_t hl = ws_frame_header(buf, WS_OP_CLOSE, true, 4, key);

	(void)state;
	memcpy(buf + hl, "\x03\xe8ok", 4);
	ws_mask(buf + hl, 4, key, 0);
	assert_int_equal(ws_parse_frame(buf, hl + 4, true, out, sizeof out, &f), (long)(hl + 4));
	assert_int_equal(f.opcode, WS_OP_CLOSE);
	assert_int_equal(f.close_code, WS_CLOSE_NORMAL);
	assert_memory_equal(out + 2, "ok", 2);
}

/* RFC 6455 5.7: "Hel" + "lo" reassemble to "Hello", with a ping between the
 * fragments handled by the caller. */
static void test_fragmentation(void **state)
{
	static const uint8_t stream[] = {0x01, 0x03, 'H', 'e', 'l', 0x89, 0x00,
					 0x80, 0x02, 'l', 'o'};
	uint8_t out[16], msg[16];
	struct ws_assembler a;
	struct ws_frame f;
	size_t off = 0;
	int got = 0, pings = 0;

	(void)state;
	ws_assembler_init(&a, msg, sizeof msg);
	while (off < sizeof stream) {
		long n = ws_parse_frame(stream + off, sizeof stream - off, false, out, sizeof out, &f);

		assert_true(n > 0);
		off += (size_t)n;
		if (f.opcode == WS_OP_PING) {
			pings++;
			continue;
		}
		got = ws_assemble(&a, &f, out);
		assert_true(got >= 0);
	}
	assert_int_equal(got, 1);
	assert_int_equal(pings, 1);
	assert_int_equal(a.opcode, WS_OP_TEXT);
	assert_int_equal(a.len, 5);
	assert_memory_equal(a.buf, "Hello", 5);
}

/* Continuations out of order, and messages over the limit, are errors. */
static void test_assembler_errors(void **state)
{
	uint8_t msg[4];
	struct ws_assembler a;
	struct ws_frame cont = {.fin = true, .opcode = WS_OP_CONT, .len = 1};
	struct ws_frame start = {.fin = false, .opcode = WS_OP_BINARY, .len = 3};
	struct ws_frame big = {.fin = true, .opcode = WS_OP_CONT, .len = 2};

	(void)state;
	ws_assembler_init(&a, msg, sizeof msg);
	assert_int_equal(ws_assemble(&a, &cont, (const uint8_t *)"x"), WS_ERROR);
	assert_int_equal(ws_assemble(&a, &start, (const uint8_t *)"abc"), 0);
	assert_int_equal(ws_assemble(&a, &start, (const uint8_t *)"abc"), WS_ERROR);
	ws_assembler_init(&a, msg, sizeof msg);
	assert_int_equal(ws_assemble(&a, &start, (const uint8_t *)"abc"), 0);
	assert_int_equal(ws_assemble(&a, &big, (const uint8_t *)"de"), WS_ERROR);
}

/* The subprotocol is chosen by our preference among what the client offers. */
static void test_pick_protocol(void **state)
{
	static const char *const ours[] = {"v5.channel.k8s.io", "v4.channel.k8s.io", NULL};

	(void)state;
	assert_string_equal(ws_pick_protocol("v4.channel.k8s.io, v5.channel.k8s.io", ours),
			    "v5.channel.k8s.io");
	assert_string_equal(ws_pick_protocol("base64.channel.k8s.io,v4.channel.k8s.io", ours),
			    "v4.channel.k8s.io");
	assert_null(ws_pick_protocol("v5.channel.k8s.io.x", ours));
	assert_null(ws_pick_protocol(NULL, ours));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accept_key_rfc_example),
		cmocka_unit_test(test_accept_key_rejects_bad_keys),
		cmocka_unit_test(test_parse_rfc_hello),
		cmocka_unit_test(test_parse_split_input),
		cmocka_unit_test(test_extended_lengths),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_close_code),
		cmocka_unit_test(test_fragmentation),
		cmocka_unit_test(test_assembler_errors),
		cmocka_unit_test(test_pick_protocol),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
