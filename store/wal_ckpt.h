/* wal_ckpt.h — sqlite's WAL checkpoints on libuv's thread pool instead of
 * inside commits on the loop thread.
 *
 * Left to itself, sqlite checkpoints in the commit that takes the WAL past
 * 1,000 frames: it copies them into the database file and fsyncs the WAL
 * and the file there, 4–6 ms during which the store's loop answers nothing
 * (the put p99). Here a commit that finds the WAL past CKPT_START_FRAMES
 * (4,000: see wal_ckpt.c) queues a PASSIVE checkpoint on a connection of its own in a pool thread
 * (mvcc_checkpoint_bg); it copies and syncs the frames that existed when
 * it started. The WAL can only start over from its beginning once every
 * frame is in the file, and commits keep adding frames meanwhile, so when a
 * pass leaves few behind, the loop thread checkpoints that remainder itself
 * (mvcc_sync: a few frames and two small fsyncs). If passes do not catch
 * up, the loop thread checkpoints whatever is left after a few of them, as
 * sqlite would have.
 *
 * The WAL file keeps the size of its busiest stretch (sqlite reuses it from
 * the start rather than shrink it), megabytes of disk for nothing once
 * writes stop. A timer checks every 250 ms; when a whole period passed
 * without a commit, a pass copies what is left and then the loop thread
 * empties the file with a TRUNCATE checkpoint (mvcc_wal_truncate), which
 * has nothing left to copy by then.
 *
 * Failure modes: a failed pass is logged and retried at a later commit;
 * nothing depends on a checkpoint for durability (the raft log is the
 * record; snapshots sync sqlite themselves, see store.c).
 *
 * Threading: every function on the loop thread; only the pass runs in the
 * pool. Ownership: the checkpointer borrows the mvcc, which must stay open
 * until wal_ckpt_close's callback. */
#ifndef CAPSTAN_WAL_CKPT_H
#define CAPSTAN_WAL_CKPT_H

#include <uv.h>

#include "store/mvcc.h"

struct wal_ckpt;

/* Takes over m's checkpoints. Returns 0 or CAP_ENOMEM. */
int wal_ckpt_open(uv_loop_t *loop, struct mvcc *m, struct wal_ckpt **out);
/* Call after every commit of m. */
void wal_ckpt_committed(struct wal_ckpt *c);
/* Stops the idle timer, waits for a pass in flight, frees c, then calls
 * cb from a later loop iteration. */
void wal_ckpt_close(struct wal_ckpt *c, void (*cb)(void *data), void *data);

#endif
