/* cmd.c — see cmd.h. */
#include "store/cmd.h"

#include <raft.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"

#define CMD_HEADER (4 + 1 + 8 + 8 + 4)

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static int reserve(struct cmd_builder *b, size_t more)
{
	if (b->len + more <= b->cap)
		return CAP_OK;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	uint8_t *p = raft_realloc(b->buf, cap);
	if (p == NULL)
		return CAP_ENOMEM;
	b->buf = p;
	b->cap = cap;
	return CAP_OK;
}

int cmd_builder_init(struct cmd_builder *b, uint64_t origin, uint64_t seq)
{
	memset(b, 0, sizeof *b);
	if (reserve(b, CMD_HEADER) != 0)
		return CAP_ENOMEM;
	memcpy(b->buf, "CAPS", 4);
	b->buf[4] = CMD_VERSION;
	put_u64(b->buf + 5, origin);
	put_u64(b->buf + 13, seq);
	put_u32(b->buf + 21, 0);
	b->len = CMD_HEADER;
	return CAP_OK;
}

int cmd_builder_add(struct cmd_builder *b, const void *cmd, size_t len)
{
	if (len > UINT32_MAX || reserve(b, 4 + len) != 0)
		return CAP_ENOMEM;
	put_u32(b->buf + b->len, (uint32_t)len);
	memcpy(b->buf + b->len + 4, cmd, len);
	b->len += 4 + len;
	b->count++;
	return CAP_OK;
}

int cmd_builder_finish(struct cmd_builder *b, void **buf, size_t *len)
{
	/* raft_uv writes entries in 8-byte multiples; pad so the buffer length
	 * is what it will read back. */
	size_t padded = (b->len + 7) & ~(size_t)7;
	if (reserve(b, padded - b->len) != 0)
		return CAP_ENOMEM;
	memset(b->buf + b->len, 0, padded - b->len);
	put_u32(b->buf + 21, b->count);
	/* The entry stays in raft's in-memory log until a snapshot (and its
	 * trailing entries) let it go: give back the growth slack, up to half
	 * of the buffer, now rather than then. */
	if (b->cap > padded) {
		uint8_t *p = raft_realloc(b->buf, padded);
		if (p != NULL)
			b->buf = p;
	}
	*buf = b->buf;
	*len = padded;
	memset(b, 0, sizeof *b);
	return CAP_OK;
}

void cmd_builder_clear(struct cmd_builder *b)
{
	raft_free(b->buf);
	memset(b, 0, sizeof *b);
}

int cmd_decode(const void *buf, size_t len, struct cmd_entry *e)
{
	const uint8_t *p = buf;
	size_t off = CMD_HEADER;
	memset(e, 0, sizeof *e);
	if (len < CMD_HEADER || memcmp(p, "CAPS", 4) != 0 || p[4] != CMD_VERSION)
		return CAP_ECORRUPT;
	e->origin = get_u64(p + 5);
	e->seq = get_u64(p + 13);
	e->count = get_u32(p + 21);
	/* Each command needs at least its 4-byte length. */
	if (e->count > (len - CMD_HEADER) / 4)
		return CAP_ECORRUPT;
	if (e->count > 0) {
		e->cmds = calloc(e->count, sizeof *e->cmds);
		e->lens = calloc(e->count, sizeof *e->lens);
		if (e->cmds == NULL || e->lens == NULL) {
			cmd_entry_clear(e);
			return CAP_ENOMEM;
		}
	}
	for (uint32_t i = 0; i < e->count; i++) {
		if (len - off < 4)
			goto corrupt;
		uint32_t n = get_u32(p + off);
		off += 4;
		if (len - off < n)
			goto corrupt;
		e->cmds[i] = p + off;
		e->lens[i] = n;
		off += n;
	}
	/* Only zero padding may follow. */
	for (; off < len; off++)
		if (p[off] != 0)
			goto corrupt;
	return CAP_OK;
corrupt:
	cmd_entry_clear(e);
	return CAP_ECORRUPT;
}

void cmd_entry_clear(struct cmd_entry *e)
{
	free(e->cmds);
	free(e->lens);
	e->cmds = NULL;
	e->lens = NULL;
	e->count = 0;
}
