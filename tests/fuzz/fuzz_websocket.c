/* fuzz_websocket.c — libFuzzer target: the websocket frame parser and the
 * message reassembler on arbitrary bytes, as a server (masked frames) and
 * as a client (unmasked), with a small payload limit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/websocket.h"

#define FUZZ_WS_LIMIT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run(const uint8_t *src, size_t size, bool from_client)
{
	uint8_t *out = malloc(FUZZ_WS_LIMIT), *msg = malloc(FUZZ_WS_LIMIT);
	struct ws_assembler a;
	size_t off = 0;

	if (out == NULL || msg == NULL)
		abort();
	ws_assembler_init(&a, msg, FUZZ_WS_LIMIT);
	while (off < size) {
		struct ws_frame f;
		long n = ws_parse_frame(src + off, size - off, from_client, out, FUZZ_WS_LIMIT, &f);

		if (n == WS_NEED_MORE || n == WS_ERROR)
			break;
		/* Progress, within the input, and a payload within the limit. */
		if (n <= 0 || (size_t)n > size - off || f.len > FUZZ_WS_LIMIT ||
		    f.len > (uint64_t)n)
			abort();
		if (f.opcode >= WS_OP_CLOSE) {
			if (f.len > WS_MAX_CONTROL || !f.fin)
				abort();
		} else if (ws_assemble(&a, &f, out) == 1 && a.len > FUZZ_WS_LIMIT) {
			abort();
		}
		off += (size_t)n;
	}
	free(out);
	free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exactly sized copy, so a read one byte too far is caught. */
	uint8_t *src = malloc(size ? size : 1);

	if (src == NULL)
		abort();
	memcpy(src, data, size);
	run(src, size, true);
	run(src, size, false);

	/* Re-encoding a parsed frame gives a frame that parses the same. */
	if (size >= 1) {
		uint8_t hdr[WS_MAX_HEADER], back[WS_MAX_HEADER + 64], out[64];
		uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
		struct ws_frame f;
		size_t len = size - 1 < 64 ? size - 1 : 64;
		size_t hl = ws_frame_header(hdr, WS_OP_BINARY, (src[0] & 1) != 0, len, key);
		long n;

		memcpy(back, hdr, hl);
		memcpy(back + hl, src + 1, len);
		ws_mask(back + hl, len, key, 0);
		n = ws_parse_frame(back, hl + len, true, out, sizeof out, &f);
		if (n != (long)(hl + len) || f.len != len || memcmp(out, src + 1, len) != 0)
			abort();
	}
	free(src);
	return 0;
}
