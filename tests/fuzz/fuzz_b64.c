/* fuzz_b64.c — libFuzzer target: the base64 decoder on arbitrary bytes, and
 * the encode-then-decode round trip on arbitrary binary. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/b64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exactly sized copies, so a read or write one byte too far is caught. */
	char *src = malloc(size ? size : 1);
	uint8_t *dec = malloc(b64_decoded_max(size) ? b64_decoded_max(size) : 1);
	char *enc = malloc(b64_encoded_size(size));
	uint8_t *back = malloc(size ? size : 1);
	size_t enc_len;
	long r;

	if (src == NULL || dec == NULL || enc == NULL || back == NULL)
		abort();
	memcpy(src, data, size);

	/* Property 1: anything the decoder accepts fits its bound, and encoding
	 * the result then decoding gives the same bytes again. */
	r = b64_decode(src, size, dec);
	if (r < -1 || (r >= 0 && (size_t)r > b64_decoded_max(size)))
		abort();
	if (r >= 0) {
		char *re = malloc(b64_encoded_size((size_t)r));
		uint8_t *again = malloc(b64_decoded_max(b64_encoded_size((size_t)r)));
		size_t re_len;

		if (re == NULL || again == NULL)
			abort();
		re_len = b64_encode(dec, (size_t)r, re);
		if (b64_decode(re, re_len, again) != r || memcmp(again, dec, (size_t)r) != 0)
			abort();
		free(re);
		free(again);
	}

	/* Property 2: any binary survives encode then decode. */
	enc_len = b64_encode(data, size, enc);
	if (enc_len + 1 != b64_encoded_size(size) || enc[enc_len] != '\0')
		abort();
	if (b64_decoded_max(enc_len) < size)
		abort();
	{
		uint8_t *out = malloc(b64_decoded_max(enc_len) ? b64_decoded_max(enc_len) : 1);
		if (out == NULL)
			abort();
		if (b64_decode(enc, enc_len, out) != (long)size || memcmp(out, data, size) != 0)
			abort();
		free(out);
	}

	free(src);
	free(dec);
	free(enc);
	free(back);
	return 0;
}
