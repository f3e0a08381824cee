/* wal_ckpt.c — see wal_ckpt.h. */
#include "store/wal_ckpt.h"

#include <stdbool.h>
#include <stdlib.h>

#include "lib/err.h"
#include "lib/log.h"

/* WAL pages that start a checkpoint (sqlite's own size is 1,000: 4 MiB).
 * Each WAL cycle ends with three fdatasyncs on the loop thread (the
 * remainder's two, then sqlite's sync of the new WAL header), ~1.6 ms each
 * while every request in flight waits: at 64 connections 1,000 pages made
 * that 18 stalls a second. 4,000 pages (16 MiB) make it a third, and pages
 * written again within a cycle are copied once. The file is emptied when
 * writes pause (idle_check). */
#define CKPT_START_FRAMES 4000
/* A remainder the loop thread copies itself: ~512 KiB. */
#define CKPT_FINISH_FRAMES 128
/* Passes that may leave more than that before the loop thread takes over. */
#define CKPT_MAX_PASSES 4
/* How often the idle check runs: a WAL with no commit for a whole period
 * is emptied (see wal_ckpt.h). */
#define CKPT_IDLE_MS 250

struct wal_ckpt {
	uv_loop_t *loop;
	struct mvcc *m;
	uv_work_t work;
	bool busy;            /* a pass is in the pool */
	bool have_pass;       /* pass_done is from a pass over the current WAL */
	int passes;
	int pass_log, pass_done, pass_err;
	char errmsg[CAP_ERRMSG_SIZE];
	uv_timer_t idle;
	unsigned long commits;       /* commits seen, for the idle check */
	unsigned long idle_commits;  /* commits at the last idle check */
	bool idle_pass;              /* the pass in the pool was queued by it */
	bool closing;
	bool timer_closed;
	void (*close_cb)(void *data);
	void *close_data;
};

static void pass_work(uv_work_t *w);
static void pass_done(uv_work_t *w, int status);

/* Empties the WAL file once a pass has copied every frame: then the
 * TRUNCATE checkpoint on the loop thread has nothing to copy, only the
 * file to cut. */
static void idle_truncate(struct wal_ckpt *c)
{
	if (mvcc_wal_truncate(c->m) != 0)
		return;   /* busy: the next idle period tries again */
	c->have_pass = false;
	c->passes = 0;
}

/* A WAL keeps the size of its busiest stretch on disk (sqlite reuses the
 * file from its start after a checkpoint, not shrinks it): up to
 * CKPT_START_FRAMES pages. Once no commit came for a whole period, a pass
 * copies what is left in the pool, and the file is emptied when it is
 * done (pass_done), or at once if an earlier pass already copied it all. */
static void idle_check(uv_timer_t *t)
{
	struct wal_ckpt *c = t->data;
	bool idle = c->commits == c->idle_commits;
	int frames = mvcc_wal_frames(c->m);

	c->idle_commits = c->commits;
	if (!idle || c->busy || c->closing || frames == 0)
		return;
	if (c->have_pass && c->pass_done >= frames) {
		idle_truncate(c);
		return;
	}
	if (uv_queue_work(c->loop, &c->work, pass_work, pass_done) != 0)
		return;
	c->busy = true;
	c->idle_pass = true;
}

int wal_ckpt_open(uv_loop_t *loop, struct mvcc *m, struct wal_ckpt **out)
{
	struct wal_ckpt *c = calloc(1, sizeof *c);
	if (c == NULL)
		return CAP_ENOMEM;
	c->loop = loop;
	c->m = m;
	c->work.data = c;
	int rv = uv_timer_init(loop, &c->idle);
	if (rv != 0) {
		free(c);
		return CAP_EIO;
	}
	c->idle.data = c;
	/* Unreferenced: the check alone does not keep the loop running. */
	uv_timer_start(&c->idle, idle_check, CKPT_IDLE_MS, CKPT_IDLE_MS);
	uv_unref((uv_handle_t *)&c->idle);
	mvcc_set_bg_checkpoints(m);
	*out = c;
	return CAP_OK;
}

static void pass_work(uv_work_t *w)
{
	struct wal_ckpt *c = w->data;
	c->pass_err = mvcc_checkpoint_bg(c->m, &c->pass_log, &c->pass_done, c->errmsg);
}

/* Frees c and calls the close callback once neither the timer nor a pass
 * refers to it. */
static void finish_close(struct wal_ckpt *c)
{
	if (c->busy || !c->timer_closed)
		return;
	void (*cb)(void *) = c->close_cb;
	void *data = c->close_data;
	free(c);
	if (cb)
		cb(data);
}

static void pass_done(uv_work_t *w, int status)
{
	struct wal_ckpt *c = w->data;
	bool idle_pass = c->idle_pass;
	c->busy = false;
	c->idle_pass = false;
	if (c->closing) {
		finish_close(c);
		return;
	}
	if (status != 0 || c->pass_err != 0) {
		log_warn("%s", status != 0 ? uv_strerror(status) : c->errmsg);
		c->have_pass = false;
		c->passes++;   /* failures count toward the loop thread taking over */
		return;
	}
	c->have_pass = true;
	c->passes++;
	/* Still no commit since the idle check queued it: the WAL is as the
	 * pass saw it. */
	if (idle_pass && c->commits == c->idle_commits && c->pass_done >= c->pass_log &&
	    c->pass_log >= mvcc_wal_frames(c->m))
		idle_truncate(c);
}

static void finish_here(struct wal_ckpt *c)
{
	/* Busy only if a snapshot's own sync overlapped: the next commit tries
	 * again. */
	if (mvcc_sync(c->m) != 0)
		log_warn("checkpoint: %s", mvcc_errmsg(c->m));
	c->have_pass = false;
	c->passes = 0;
}

void wal_ckpt_committed(struct wal_ckpt *c)
{
	int frames = mvcc_wal_frames(c->m);

	c->commits++;
	if (c->busy || c->closing)
		return;
	if (frames < CKPT_START_FRAMES) {
		/* The WAL started over (after our checkpoint or a snapshot's). */
		c->have_pass = false;
		c->passes = 0;
		return;
	}
	if ((c->have_pass && frames - c->pass_done <= CKPT_FINISH_FRAMES) ||
	    c->passes >= CKPT_MAX_PASSES) {
		finish_here(c);
		return;
	}
	if (uv_queue_work(c->loop, &c->work, pass_work, pass_done) != 0) {
		finish_here(c);
		return;
	}
	c->busy = true;
}

static void timer_closed(uv_handle_t *h)
{
	struct wal_ckpt *c = h->data;
	c->timer_closed = true;
	finish_close(c);
}

void wal_ckpt_close(struct wal_ckpt *c, void (*cb)(void *data), void *data)
{
	c->closing = true;
	c->close_cb = cb;
	c->close_data = data;
	uv_close((uv_handle_t *)&c->idle, timer_closed);
}
