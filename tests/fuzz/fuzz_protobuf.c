/* fuzz_protobuf.c — arbitrary bytes through the protobuf envelope, the
 * DeleteOptions decoder and every typed object decoder: never a crash or an out-of-bounds read, and a decoded body is
 * always a JSON object. */
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "orchestrator/api/protobuf.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, unsigned long size);

int LLVMFuzzerTestOneInput(const unsigned char *data, unsigned long size)
{
	const uint8_t *raw;
	size_t raw_len;
	char kind[32], api_version[32], errmsg[CAP_ERRMSG_SIZE];
	json_t *o;

	/* An exactly sized copy, so ASan catches any over-read. */
	uint8_t *buf = malloc(size ? size : 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	if (pb_unwrap(buf, size, &raw, &raw_len, kind, sizeof kind, api_version,
		      sizeof api_version) == 0 && raw != NULL) {
		if (raw < buf || raw + raw_len > buf + size)
			abort();
		o = pb_delete_options_to_json(raw, raw_len, errmsg);
		if (o != NULL && !json_is_object(o))
			abort();
		json_decref(o);
	}
	/* The message decoders on their own, too. */
	o = pb_delete_options_to_json(buf, size, errmsg);
	json_decref(o);
	{
		static const char *const types[][2] = {
			{"v1", "Service"}, {"v1", "Namespace"}, {"v1", "ConfigMap"},
			{"v1", "Secret"}, {"v1", "ServiceAccount"}, {"apps/v1", "Deployment"},
		};
		for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
			o = pb_object_to_json(types[i][0], types[i][1], buf, size, errmsg);
			if (o != NULL && !json_is_object(o))
				abort();
			json_decref(o);
		}
	}
	free(buf);
	return 0;
}
