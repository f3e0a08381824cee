/* raft_guard.c — see raft_guard.h. */
#include "store/raft_guard.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define GUARD(p) ((struct raft_guard *)(void *)((char *)(p) - offsetof(struct raft_guard, io)))

static void copy_errmsg(struct raft_guard *g)
{
	memcpy(g->io.errmsg, g->inner->errmsg, sizeof g->io.errmsg);
}

static int guard_init(struct raft_io *io, raft_id id, const char *address)
{
	struct raft_guard *g = GUARD(io);
	int rv = g->inner->init(g->inner, id, address);
	if (rv != 0)
		copy_errmsg(g);
	return rv;
}

static struct raft_guard *guard_of_inner(struct raft_io *inner);

/* libraft 0.15's raft_uv fires its close callback from each part that
 * finishes closing once the others are done (uvMaybeFireCloseCb), without
 * remembering that it already fired: a part whose close completes after the
 * callback ran (a segment writer, a snapshot request) fires it again, and
 * raft's callback then frees the raft's address and log a second time (a
 * "double free" abort on SIGTERM, seen about once in ten runs under ASan).
 * The raft is still allocated then: the node frees it only after its own
 * handles close, a loop iteration later. */
static void close_trampoline(struct raft_io *inner)
{
	struct raft_guard *g = guard_of_inner(inner);
	if (g->close_cb == NULL) {
		g->close_repeats++;
		return;
	}
	raft_io_close_cb cb = g->close_cb;
	g->close_cb = NULL;
	cb(inner);
}

static void guard_close(struct raft_io *io, raft_io_close_cb cb)
{
	struct raft_guard *g = GUARD(io);
	g->closing = true;
	g->close_cb = cb;
	/* raft's close callback finds the raft through io->data. */
	g->inner->data = io->data;
	g->inner->close(g->inner, close_trampoline);
}

static int guard_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
		      struct raft_snapshot **snapshot, raft_index *start_index,
		      struct raft_entry *entries[], size_t *n_entries)
{
	struct raft_guard *g = GUARD(io);
	int rv = g->inner->load(g->inner, term, voted_for, snapshot, start_index, entries,
				n_entries);
	if (rv != 0)
		copy_errmsg(g);
	return rv;
}

static struct raft_guard *guard_of_inner(struct raft_io *inner)
{
	/* inner->data points at the raft; the raft's io is our guard. */
	struct raft *r = inner->data;
	return GUARD(r->io);
}

static void tick_trampoline(struct raft_io *inner)
{
	struct raft_guard *g = guard_of_inner(inner);
	g->tick(&g->io);
}

static void recv_trampoline(struct raft_io *inner, struct raft_message *msg)
{
	struct raft_guard *g = guard_of_inner(inner);
	if (msg->type != RAFT_IO_APPEND_ENTRIES) {
		g->recv(&g->io, msg);
		return;
	}
	g->in_append = true;
	g->limit = msg->append_entries.prev_log_index + msg->append_entries.n_entries;
	g->recv(&g->io, msg);
	g->in_append = false;
}

static int guard_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
		       raft_io_recv_cb recv)
{
	struct raft_guard *g = GUARD(io);
	int rv;
	g->tick = tick;
	g->recv = recv;
	g->inner->data = io->data;
	rv = g->inner->start(g->inner, msecs, tick_trampoline, recv_trampoline);
	if (rv != 0)
		copy_errmsg(g);
	return rv;
}

static int guard_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
	struct raft_guard *g = GUARD(io);
	int rv = g->inner->bootstrap(g->inner, conf);
	if (rv != 0)
		copy_errmsg(g);
	return rv;
}

static int guard_recover(struct raft_io *io, const struct raft_configuration *conf)
{
	struct raft_guard *g = GUARD(io);
	return g->inner->recover(g->inner, conf);
}

static int guard_set_term(struct raft_io *io, raft_term term)
{
	struct raft_guard *g = GUARD(io);
	return g->inner->set_term(g->inner, term);
}

static int guard_set_vote(struct raft_io *io, raft_id server_id)
{
	struct raft_guard *g = GUARD(io);
	return g->inner->set_vote(g->inner, server_id);
}

static int guard_send(struct raft_io *io, struct raft_io_send *req,
		      const struct raft_message *message, raft_io_send_cb cb)
{
	struct raft_guard *g = GUARD(io);
	if (g->in_append && message->type == RAFT_IO_APPEND_ENTRIES_RESULT &&
	    message->append_entries_result.rejected == 0 &&
	    message->append_entries_result.last_log_index > g->limit) {
		struct raft_message m = *message;
		m.append_entries_result.last_log_index = g->limit;
		g->clamped++;
		return g->inner->send(g->inner, req, &m, cb);
	}
	return g->inner->send(g->inner, req, message, cb);
}

/* An append in flight, counted so the owner can wait for none before
 * closing raft (raft_guard_appends). */
struct guard_append_req {
	struct raft_io_append inner;
	struct raft_guard *g;
	struct raft_io_append *outer;
	raft_io_append_cb cb;
};

/* libraft 0.15 truncates its in-memory log from the first index of every
 * failed leader append (appendLeaderCb), even when an earlier failure has
 * already truncated the log below that index. Closing the io cancels every
 * append still queued at once, so with two or more queued the second
 * truncation starts past the end of the log, its entry count underflows, and
 * it walks entries that are not there: a NULL dereference in refsDecr or a
 * double free of an entry's buffer. (Upstream checks the index against the
 * last one first.)
 *
 * The node waits for appends in flight before closing, but only up to a
 * deadline. So once raft is closing, a failed append is reported as done:
 * raft is unavailable by then and has failed the requests waiting for it, so
 * libraft only drops its reference to the entries (the log frees them when
 * the close completes) and truncates nothing. Failures before the close are
 * passed on as they are. */
static void guard_appended(struct raft_io_append *inner, int status)
{
	struct guard_append_req *ga = inner->data;
	struct raft_io_append *outer = ga->outer;
	raft_io_append_cb cb = ga->cb;
	ga->g->appends--;
	if (status != 0 && ga->g->closing)
		status = 0;
	free(ga);
	cb(outer, status);
}

static int guard_append(struct raft_io *io, struct raft_io_append *req,
			const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
	struct raft_guard *g = GUARD(io);
	struct guard_append_req *ga = calloc(1, sizeof *ga);
	int rv;

	if (ga == NULL)
		return RAFT_NOMEM;
	ga->g = g;
	ga->outer = req;
	ga->cb = cb;
	ga->inner.data = ga;
	rv = g->inner->append(g->inner, &ga->inner, entries, n, guard_appended);
	if (rv != 0) {
		free(ga);
		return rv;
	}
	g->appends++;
	return 0;
}

unsigned raft_guard_appends(const struct raft_guard *g)
{
	return g->appends;
}

static int guard_truncate(struct raft_io *io, raft_index index)
{
	struct raft_guard *g = GUARD(io);
	return g->inner->truncate(g->inner, index);
}

static int guard_snapshot_put(struct raft_io *io, unsigned trailing,
			      struct raft_io_snapshot_put *req, const struct raft_snapshot *snapshot,
			      raft_io_snapshot_put_cb cb)
{
	struct raft_guard *g = GUARD(io);
	return g->inner->snapshot_put(g->inner, trailing, req, snapshot, cb);
}

/* A snapshot read for sending to a follower: the inner read, then the
 * owner's expand hook over its data. */
struct guard_get {
	struct raft_io_snapshot_get inner;
	struct raft_guard *g;
	struct raft_io_snapshot_get *outer;
	raft_io_snapshot_get_cb cb;
};

static void guard_snapshot_got(struct raft_io_snapshot_get *inner, struct raft_snapshot *snap,
			       int status)
{
	struct guard_get *gg = inner->data;
	struct raft_io_snapshot_get *outer = gg->outer;
	raft_io_snapshot_get_cb cb = gg->cb;
	struct raft_guard *g = gg->g;

	free(gg);
	if (status == 0 && snap != NULL && snap->n_bufs == 1 && g->expand != NULL) {
		struct raft_buffer out = {0};
		int rv = g->expand(g->expand_data, &snap->bufs[0], &out);
		if (rv != 0) {
			/* raft frees the snapshot only when the status is 0. */
			raft_free(snap->bufs[0].base);
			raft_free(snap->bufs);
			raft_configuration_close(&snap->configuration);
			raft_free(snap);
			cb(outer, NULL, rv);
			return;
		}
		if (out.base != NULL) {
			raft_free(snap->bufs[0].base);
			snap->bufs[0] = out;
		}
	}
	cb(outer, snap, status);
}

static int guard_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
			      raft_io_snapshot_get_cb cb)
{
	struct raft_guard *g = GUARD(io);
	struct guard_get *gg = calloc(1, sizeof *gg);
	int rv;

	if (gg == NULL)
		return RAFT_NOMEM;
	gg->g = g;
	gg->outer = req;
	gg->cb = cb;
	gg->inner.data = gg;
	rv = g->inner->snapshot_get(g->inner, &gg->inner, guard_snapshot_got);
	if (rv != 0)
		free(gg);
	return rv;
}

static raft_time guard_time(struct raft_io *io)
{
	struct raft_guard *g = GUARD(io);
	return g->inner->time(g->inner);
}

static int guard_random(struct raft_io *io, int min, int max)
{
	struct raft_guard *g = GUARD(io);
	return g->inner->random(g->inner, min, max);
}

static int guard_async_work(struct raft_io *io, struct raft_io_async_work *req,
			    raft_io_async_work_cb cb)
{
	struct raft_guard *g = GUARD(io);
	return g->inner->async_work(g->inner, req, cb);
}

void raft_guard_set_expand(struct raft_guard *g,
			   int (*expand)(void *data, const struct raft_buffer *in,
					 struct raft_buffer *out),
			   void *data)
{
	g->expand = expand;
	g->expand_data = data;
}

void raft_guard_init(struct raft_guard *g, struct raft_io *inner)
{
	memset(g, 0, sizeof *g);
	g->inner = inner;
	g->io.version = inner->version;
	g->io.impl = g;
	g->io.init = guard_init;
	g->io.close = guard_close;
	g->io.load = guard_load;
	g->io.start = guard_start;
	g->io.bootstrap = guard_bootstrap;
	g->io.recover = guard_recover;
	g->io.set_term = guard_set_term;
	g->io.set_vote = guard_set_vote;
	g->io.send = guard_send;
	g->io.append = guard_append;
	g->io.truncate = guard_truncate;
	g->io.snapshot_put = guard_snapshot_put;
	g->io.snapshot_get = guard_snapshot_get;
	g->io.time = guard_time;
	g->io.random = guard_random;
	g->io.async_work = inner->version >= 2 ? guard_async_work : NULL;
}
