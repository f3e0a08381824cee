/* raft_guard.h — a raft_io that wraps another and corrects one reply of
 * libraft 0.15's followers.
 *
 * The flaw: a follower answering an AppendEntries that it handles at once (a
 * heartbeat, or entries it already holds) reports its whole stored log as
 * matching (last_log_index = last stored), including stale entries of
 * earlier terms beyond what the leader sent. A new leader counts those as
 * replicated, can commit an entry that only it holds, and then never repairs
 * that follower: an acknowledged write can be lost. In Raft a success means
 * "my log matches yours up to prevLogIndex + len(entries)", so the guard
 * clamps the reply to that. Replies sent after an asynchronous append are
 * exact already (the follower truncated any conflict before appending).
 *
 * It counts log appends in flight (raft_guard_appends), and lets its owner
 * rewrite a snapshot read for sending to a follower
 * (raft_guard_set_expand): the store's own snapshots name a state that its
 * database holds rather than copying it, and a follower needs the state.
 *
 * Everything else is passed through unchanged. Threading: loop thread only.
 * Ownership: the guard borrows inner, which must outlive it. */
#ifndef CAPSTAN_RAFT_GUARD_H
#define CAPSTAN_RAFT_GUARD_H

#include <raft.h>
#include <stdbool.h>

struct raft_guard {
	struct raft_io io;      /* hand this to raft_init */
	struct raft_io *inner;
	raft_io_tick_cb tick;
	raft_io_recv_cb recv;
	bool in_append;         /* inside raft's handling of an AppendEntries */
	raft_index limit;       /* prevLogIndex + len(entries) of that request */
	unsigned long clamped;  /* replies corrected, for tests and logs */
	int (*expand)(void *data, const struct raft_buffer *in, struct raft_buffer *out);
	void *expand_data;
	unsigned appends;       /* log appends in flight */
	bool closing;           /* raft_close reached the io: see guard_appended */
	raft_io_close_cb close_cb;  /* raft's, called once: see close_trampoline */
	unsigned close_repeats;     /* further close callbacks swallowed */
};

void raft_guard_init(struct raft_guard *g, struct raft_io *inner);
/* expand gets the data of a snapshot that raft is about to send (one
 * buffer, still owned by raft). It returns 0 and leaves out->base NULL to
 * send it unchanged, or 0 and an out buffer (allocated with raft_malloc,
 * which then replaces in), or a RAFT_* error to fail the send. */
/* Log appends not yet completed. raft_close cancels those still queued, and
 * libraft 0.15 then truncates its log past its end when two or more were
 * (a crash in its log's reference counts), so the node waits for none
 * before closing; the guard makes the cancellations harmless should that
 * wait time out (see guard_appended in raft_guard.c). */
unsigned raft_guard_appends(const struct raft_guard *g);
void raft_guard_set_expand(struct raft_guard *g,
			   int (*expand)(void *data, const struct raft_buffer *in,
					 struct raft_buffer *out),
			   void *data);

#endif
