/* fuzz_json_load.c — libFuzzer target: jsonx_loadb against json_loadb on
 * arbitrary bytes. Both must fail or both succeed, with values that write
 * out to the same text (same members in the same order), for each flag
 * set the store uses. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jsonx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const char *buf, size_t size, size_t flags)
{
	json_error_t e1, e2;
	json_t *a = jsonx_loadb(buf, size, flags, &e1);
	json_t *b = json_loadb(buf, size, flags, &e2);
	if ((a == NULL) != (b == NULL))
		abort();
	if (a != NULL) {
		char *ta = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
		char *tb = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
		if (ta == NULL || tb == NULL || strcmp(ta, tb) != 0 || !json_equal(a, b))
			abort();
		free(ta);
		free(tb);
	} else if (strcmp(e1.text, e2.text) != 0) {
		abort();
	}
	json_decref(a);
	json_decref(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	same((const char *)data, size, 0);
	same((const char *)data, size, JSON_DECODE_ANY);
	return 0;
}
