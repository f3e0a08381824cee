/* wal_ckpt.c — see wal_ckpt.h. */
#include "store/wal_ckpt.h"

#include <stdbool.h>
#include <stdlib.h>

#include "lib/err.h"
#include "lib/log.h"

/* sqlite's own automatic checkpoint size. */
#define CKPT_START_FRAMES 1000
/* A remainder the loop thread copies itself: ~512 KiB. */
#define CKPT_FINISH_FRAMES 128
/* Passes that may leave more than that before the loop thread takes over. */
#define CKPT_MAX_PASSES 4

struct wal_ckpt {
	uv_loop_t *loop;
	struct mvcc *m;
	uv_work_t work;
	bool busy;            /* a pass is in the pool */
	bool have_pass;       /* pass_done is from a pass over the current WAL */
	int passes;
	int pass_log, pass_done, pass_err;
	char errmsg[CAP_ERRMSG_SIZE];
	bool closing;
	void (*close_cb)(void *data);
	void *close_data;
};

int wal_ckpt_open(uv_loop_t *loop, struct mvcc *m, struct wal_ckpt **out)
{
	struct wal_ckpt *c = calloc(1, sizeof *c);
	if (c == NULL)
		return CAP_ENOMEM;
	c->loop = loop;
	c->m = m;
	c->work.data = c;
	mvcc_set_bg_checkpoints(m);
	*out = c;
	return CAP_OK;
}

static void pass_work(uv_work_t *w)
{
	struct wal_ckpt *c = w->data;
	c->pass_err = mvcc_checkpoint_bg(c->m, &c->pass_log, &c->pass_done, c->errmsg);
}

static void pass_done(uv_work_t *w, int status)
{
	struct wal_ckpt *c = w->data;
	c->busy = false;
	if (c->closing) {
		void (*cb)(void *) = c->close_cb;
		void *data = c->close_data;
		free(c);
		if (cb)
			cb(data);
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

void wal_ckpt_close(struct wal_ckpt *c, void (*cb)(void *data), void *data)
{
	if (c->busy) {
		c->closing = true;
		c->close_cb = cb;
		c->close_data = data;
		return;
	}
	free(c);
	if (cb)
		cb(data);
}
