/* fuzz_spdy.c — libFuzzer target: the SPDY/3 frame parser on arbitrary
 * bytes, with every header block it finds decompressed (through one
 * context, as a connection does) into a small buffer and walked pair by
 * pair. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/spdy.h"

#define FUZZ_SPDY_LIMIT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *plain = malloc(FUZZ_SPDY_LIMIT);
	struct spdy_zin zi;
	size_t off = 0;
	bool zok = true;

	if (plain == NULL || spdy_zin_init(&zi) != 0)
		abort();
	while (off < size) {
		struct spdy_frame f;
		long n = spdy_parse_frame(data + off, size - off, FUZZ_SPDY_LIMIT, &f);

		if (n == SPDY_NEED_MORE || n == SPDY_ERROR)
			break;
		/* Progress, within the input, and a payload within the limit. */
		if (n < SPDY_HEADER_SIZE || (size_t)n > size - off || f.length > FUZZ_SPDY_LIMIT)
			abort();
		if (f.control && f.type == SPDY_SETTINGS) {
			for (uint32_t i = 0; i < f.n_settings; i++) {
				uint8_t fl;
				uint32_t id, v;

				spdy_setting(&f, i, &fl, &id, &v);
			}
		}
		if (f.control && f.block != NULL && zok) {
			long pl = spdy_block_inflate(&zi, f.block, f.block_len, plain,
						     FUZZ_SPDY_LIMIT);
			struct spdy_nv_iter it;
			struct spdy_nv nv;

			if (pl < 0 || (size_t)pl >= FUZZ_SPDY_LIMIT) {
				/* The context is spent after an error. */
				zok = pl >= 0;
			} else if (spdy_nv_begin(&it, plain, (size_t)pl) == 0) {
				while (spdy_nv_next(&it, &nv) == 1)
					if (nv.name_len == 0 ||
					    nv.name + nv.name_len > (const char *)plain + pl ||
					    nv.value + nv.value_len > (const char *)plain + pl)
						abort();
			}
		}
		off += (size_t)n;
	}
	spdy_zin_free(&zi);
	free(plain);
	return 0;
}
