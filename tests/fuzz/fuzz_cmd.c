/* fuzz_cmd.c — libFuzzer target: the raft entry decoder on arbitrary bytes,
 * and the build-then-decode round trip on commands cut from the input. */
#include <raft.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "store/cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Property 1: a decode either fails with CAP_ECORRUPT, leaving nothing
 * allocated, or every command it returns lies inside the buffer, in order,
 * and the commands with their length fields account for all bytes but the
 * header and zero padding. */
static void decode_arbitrary(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	struct cmd_entry e;
	int rv;

	if (buf == NULL)
		abort();
	memcpy(buf, data, size);
	rv = cmd_decode(buf, size, &e);
	if (rv == CAP_ECORRUPT) {
		if (e.cmds != NULL || e.lens != NULL)
			abort();
	} else if (rv == CAP_OK) {
		const uint8_t *end = buf + size;
		const uint8_t *prev_end = buf + 4 + 1 + 8 + 8 + 4;
		for (uint32_t i = 0; i < e.count; i++) {
			if (e.cmds[i] != prev_end + 4 || e.lens[i] > (size_t)(end - e.cmds[i]))
				abort();
			prev_end = e.cmds[i] + e.lens[i];
		}
		for (const uint8_t *p = prev_end; p < end; p++)
			if (*p != 0)
				abort();
		cmd_entry_clear(&e);
	} else if (rv != CAP_ENOMEM) {
		abort();
	}
	free(buf);
}

/* Property 2: commands cut from the input (each one's length taken from
 * one input byte) survive build, finish and decode unchanged. */
static void roundtrip(const uint8_t *data, size_t size)
{
	struct cmd_builder b;
	struct cmd_entry e;
	const uint8_t *cmds[256];
	size_t lens[256];
	uint32_t n = 0;
	size_t off = 0;
	void *out;
	size_t out_len;
	uint64_t origin = size, seq = size > 0 ? data[0] : 0;

	if (cmd_builder_init(&b, origin, seq) != CAP_OK)
		abort();
	while (off < size && n < 256) {
		size_t l = data[off++];
		if (l > size - off)
			l = size - off;
		cmds[n] = data + off;
		lens[n] = l;
		if (cmd_builder_add(&b, data + off, l) != CAP_OK)
			abort();
		off += l;
		n++;
	}
	if (cmd_builder_finish(&b, &out, &out_len) != CAP_OK || out_len % 8 != 0)
		abort();
	/* An exactly sized copy, so a read past the entry is caught. */
	uint8_t *copy = malloc(out_len);
	if (copy == NULL)
		abort();
	memcpy(copy, out, out_len);
	raft_free(out);
	if (cmd_decode(copy, out_len, &e) != CAP_OK || e.origin != origin || e.seq != seq ||
	    e.count != n)
		abort();
	for (uint32_t i = 0; i < n; i++)
		if (e.lens[i] != lens[i] || (lens[i] && memcmp(e.cmds[i], cmds[i], lens[i]) != 0))
			abort();
	cmd_entry_clear(&e);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	decode_arbitrary(data, size);
	roundtrip(data, size);
	return 0;
}
