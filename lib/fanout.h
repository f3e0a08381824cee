/* fanout.h — many independent non-blocking socket writes at once, spread
 * over a few threads.
 *
 * One event sent to ten thousand watch streams is ten thousand writes, each
 * a few microseconds of the kernel's TCP stack (on loopback the receiver's
 * TCP input runs in the sender's context too). They touch nothing shared, so
 * they can run on every core instead of one after the other on the loop
 * thread.
 *
 * Threading: fanout_run() is called by one thread at a time (the owner's
 * loop thread) and returns when every write has been tried; the helper
 * threads do nothing else. The caller guarantees that no other thread
 * writes to or closes the descriptors during the call.
 *
 * Ownership: the writes and their buffers are the caller's; they are only
 * read during fanout_run(). */
#ifndef CAPSTAN_FANOUT_H
#define CAPSTAN_FANOUT_H

#include <stddef.h>
#include <sys/uio.h>

struct fanout;

struct fanout_write {
	int fd;                    /* a non-blocking socket (or pipe) */
	const struct iovec *iov;
	int iovcnt;
	size_t written;            /* out: bytes the descriptor took, maybe 0 */
};

/* helpers: threads besides the caller's (0: every write on the caller's
 * thread). Returns 0, or a CAP_E* code. */
int fanout_new(unsigned helpers, struct fanout **out);
/* Tries each write once, without blocking: a full socket buffer or an error
 * leaves written short, and the caller queues the rest the ordinary way
 * (which reports the error, if any). Writes are shared out among the
 * threads only when there are enough of them to pay for waking a thread;
 * with f NULL, all on the caller's thread. */
void fanout_run(struct fanout *f, struct fanout_write *w, size_t n);
/* Stops and joins the helper threads. */
void fanout_free(struct fanout *f);

#endif
