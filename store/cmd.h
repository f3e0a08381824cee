/* cmd.h — the layout of one raft log entry: a batch of store commands
 * proposed together (group commit).
 *
 *   "CAPS" | version u8 | origin u64 | seq u64 | count u32 | count x (len u32 | bytes)
 *
 * Integers are little-endian. origin is the member that proposed the batch and
 * seq its local batch number, so the proposer finds its waiting requests when
 * the entry applies. Each command is opaque here (the store puts an op code
 * and the request in it: puts in apply's binary form, the rest as JSON).
 *
 * cmd_decode parses bytes that come from disk or the network: it checks every
 * length against the buffer and never reads outside it. */
#ifndef CAPSTAN_CMD_H
#define CAPSTAN_CMD_H

#include <stddef.h>
#include <stdint.h>

#define CMD_VERSION 1

struct cmd_entry {
	uint64_t origin;
	uint64_t seq;
	uint32_t count;
	const uint8_t **cmds;    /* point into the decoded buffer */
	size_t *lens;
};

struct cmd_builder {
	uint8_t *buf;
	size_t len, cap;
	uint32_t count;
};

/* Starts a batch; returns 0 or CAP_ENOMEM. */
int cmd_builder_init(struct cmd_builder *b, uint64_t origin, uint64_t seq);
int cmd_builder_add(struct cmd_builder *b, const void *cmd, size_t len);
/* Finishes the batch: *buf (allocated with raft_malloc, for raft_apply) and
 * *len. The builder is reset. */
int cmd_builder_finish(struct cmd_builder *b, void **buf, size_t *len);
void cmd_builder_clear(struct cmd_builder *b);

/* Decodes an entry; e's arrays are malloc'd (free with cmd_entry_clear) and
 * point into buf, which must outlive e. Returns 0 or CAP_ECORRUPT. */
int cmd_decode(const void *buf, size_t len, struct cmd_entry *e);
void cmd_entry_clear(struct cmd_entry *e);

#endif
