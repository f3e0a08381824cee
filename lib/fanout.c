/* fanout.c — parallel non-blocking writes: see fanout.h.
 *
 * A run hands out the writes in slices through an atomic cursor; the caller
 * takes slices too. A helper joins the run when it wakes, if the run is
 * still open; once the caller is out of slices it closes the run and waits
 * only for the helpers that joined: one that the scheduler wakes late (the
 * cores busy elsewhere) finds the run over instead of holding the caller.
 * Helpers sleep on a condition variable between runs. */
#include "lib/fanout.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <uv.h>

#include "lib/err.h"

/* Below this many writes a run stays on the caller's thread: waking a
 * helper costs more than it saves (one watcher's event must not wait). */
#define FANOUT_MIN_SHARED 64
/* Writes taken from the cursor at a time. */
#define FANOUT_SLICE 32

struct fanout {
	uv_mutex_t lock;
	uv_cond_t start;           /* a run began, or stopping */
	uv_cond_t done;            /* a helper finished its part of a run */
	uv_thread_t *threads;
	unsigned helpers;
	unsigned started;          /* helper threads created */
	uint64_t gen;              /* bumped per shared run */
	bool open;                 /* run gen still takes helpers */
	unsigned joined, left;     /* helpers that joined run gen, and finished */
	bool stopping;
	struct fanout_write *w;    /* the shared run */
	size_t n;
	atomic_size_t next;
};

static void write_one(struct fanout_write *w)
{
	struct msghdr msg = {.msg_iov = (struct iovec *)w->iov, .msg_iovlen = (size_t)w->iovcnt};
	ssize_t k;

	w->written = 0;
	/* One piece (a batch's usual frame) skips the kernel's msghdr copy. */
	do
		k = w->iovcnt == 1 ? send(w->fd, w->iov[0].iov_base, w->iov[0].iov_len,
					  MSG_DONTWAIT | MSG_NOSIGNAL)
				   : sendmsg(w->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (k < 0 && errno == EINTR);
	if (k < 0 && errno == ENOTSOCK) {
		/* A pipe (tests serve socketpairs and pipes alike): libuv made it
		 * non-blocking, and the store ignores SIGPIPE. */
		do
			k = writev(w->fd, w->iov, w->iovcnt);
		while (k < 0 && errno == EINTR);
	}
	if (k > 0)
		w->written = (size_t)k;
}

static void run_slices(struct fanout *f)
{
	for (;;) {
		size_t i = atomic_fetch_add(&f->next, FANOUT_SLICE);
		size_t end;
		if (i >= f->n)
			return;
		end = i + FANOUT_SLICE < f->n ? i + FANOUT_SLICE : f->n;
		for (; i < end; i++)
			write_one(&f->w[i]);
	}
}

static void helper_main(void *arg)
{
	struct fanout *f = arg;
	uint64_t seen = 0;

	uv_mutex_lock(&f->lock);
	for (;;) {
		while (!f->stopping && f->gen == seen)
			uv_cond_wait(&f->start, &f->lock);
		if (f->stopping)
			break;
		seen = f->gen;
		if (!f->open)
			continue;
		f->joined++;
		uv_mutex_unlock(&f->lock);
		run_slices(f);
		uv_mutex_lock(&f->lock);
		f->left++;
		uv_cond_signal(&f->done);
	}
	uv_mutex_unlock(&f->lock);
}

int fanout_new(unsigned helpers, struct fanout **out)
{
	struct fanout *f = calloc(1, sizeof *f);
	if (f == NULL)
		return CAP_ENOMEM;
	if (helpers > 0) {
		f->threads = calloc(helpers, sizeof *f->threads);
		if (f->threads == NULL) {
			free(f);
			return CAP_ENOMEM;
		}
	}
	uv_mutex_init(&f->lock);
	uv_cond_init(&f->start);
	uv_cond_init(&f->done);
	atomic_init(&f->next, 0);
	for (unsigned i = 0; i < helpers; i++) {
		/* Fewer helpers than asked is fine: the caller does the rest. */
		if (uv_thread_create(&f->threads[i], helper_main, f) != 0)
			break;
		f->started++;
	}
	f->helpers = f->started;
	*out = f;
	return CAP_OK;
}

void fanout_run(struct fanout *f, struct fanout_write *w, size_t n)
{
	if (f == NULL || f->helpers == 0 || n < FANOUT_MIN_SHARED) {
		for (size_t i = 0; i < n; i++)
			write_one(&w[i]);
		return;
	}
	uv_mutex_lock(&f->lock);
	f->w = w;
	f->n = n;
	atomic_store(&f->next, 0);
	f->joined = f->left = 0;
	f->open = true;
	f->gen++;
	uv_cond_broadcast(&f->start);
	uv_mutex_unlock(&f->lock);

	run_slices(f);

	/* No helper joins from now on, and every one that joined finishes its
	 * slice: none may still be reading w when this returns. */
	uv_mutex_lock(&f->lock);
	f->open = false;
	while (f->left < f->joined)
		uv_cond_wait(&f->done, &f->lock);
	f->w = NULL;
	f->n = 0;
	uv_mutex_unlock(&f->lock);
}

void fanout_free(struct fanout *f)
{
	if (f == NULL)
		return;
	uv_mutex_lock(&f->lock);
	f->stopping = true;
	uv_cond_broadcast(&f->start);
	uv_mutex_unlock(&f->lock);
	for (unsigned i = 0; i < f->started; i++)
		uv_thread_join(&f->threads[i]);
	uv_cond_destroy(&f->start);
	uv_cond_destroy(&f->done);
	uv_mutex_destroy(&f->lock);
	free(f->threads);
	free(f);
}
