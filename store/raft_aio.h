/* raft_aio.h — libraft's kernel AIO contexts destroyed off the loop thread.
 *
 * libraft 0.15 gives each open log segment a kernel AIO context and, when
 * the segment closes, destroys it with io_destroy(2) on the loop thread.
 * The kernel makes io_destroy wait for an RCU grace period, ~33 ms
 * (strace -T) during which the member answers nothing, once per log segment
 * (NODE_SEGMENT_BYTES): the put p99.9 and max.
 *
 * libraft reaches io_destroy through libc's syscall(3). raft_aio.c defines
 * syscall itself, which the dynamic linker prefers to libc's for every
 * library of the process: once raft_aio_start has run, an io_destroy is
 * handed to a thread of its own and returns 0 at once; every other call,
 * and io_destroy before the start or when the thread cannot take more, goes
 * to libc's syscall unchanged.
 *
 * Why deferring is safe: libraft destroys a context last, after the
 * segment's writes completed or were cancelled, its event fd and file were
 * closed and its event array freed, and it never uses the context's id
 * again. The kernel keeps the context (its ring, the files of writes still
 * in flight) until io_destroy runs, and tears down whatever is left when the
 * process exits.
 *
 * Threading: raft_aio_start on the loop thread before the raft I/O starts;
 * the destroying thread lives until the process exits. */
#ifndef CAPSTAN_RAFT_AIO_H
#define CAPSTAN_RAFT_AIO_H

/* Starts deferring io_destroy (idempotent). 0, or an errno value when the
 * thread cannot start (then io_destroy stays synchronous). */
int raft_aio_start(void);

/* io_destroy calls handed to the thread so far, for tests. */
unsigned long raft_aio_deferred(void);

#endif
