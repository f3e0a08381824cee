/* fuzz_cmd_bin.c — libFuzzer target: the binary command decoder (what a
 * follower or a restart reads back from the raft log, and what a leader
 * gets forwarded by a peer) on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "store/apply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Properties: decoding an exactly sized copy never reads past it and
 * fails with CAP_ECORRUPT, CAP_ENOMEM or a request validation error; a
 * decoded request encodes back to the very same bytes (one encoding per
 * request, so what the leader applies and what followers decode agree). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	struct apply_req *req = NULL;
	char errmsg[CAP_ERRMSG_SIZE];
	uint8_t *again = NULL;
	size_t again_len = 0;
	int rv;

	if (buf == NULL)
		abort();
	memcpy(buf, data, size);
	rv = apply_decode_bin(buf, size, &req, errmsg);
	if (rv == CAP_OK) {
		if (req == NULL || apply_req_op(req) != KV_PUT)
			abort();
		if (apply_encode_bin(req, &again, &again_len) != CAP_OK)
			abort();
		if (again_len != size || memcmp(again, buf, size) != 0)
			abort();
		free(again);
		apply_req_free(req);
	} else if (rv != CAP_ECORRUPT && rv != CAP_ENOMEM && rv != CAP_EKEYEMPTY &&
		   rv != CAP_EINVAL && rv != CAP_ELEASEPROVIDED) {
		abort();
	}
	free(buf);
	return 0;
}
