/* workqueue.h — a queue of keys for a controller: keys are deduplicated
 * while queued, one key is processed at a time (a key added while it is
 * being processed runs again afterwards), failures are retried with per-key
 * exponential back-off (5 ms doubling up to 1000 s, client-go's default),
 * and keys can be added after a delay.
 *
 * Processing: fn runs on the loop thread, from a callback of the queue's own
 * (never from inside workqueue_add). A batch of keys is processed per loop
 * iteration so I/O is not starved. fn returning 0 forgets the key's failures;
 * non-zero re-adds it after its back-off.
 *
 * Threading: loop thread only. Keys are copied. */
#ifndef CAPSTAN_WORKQUEUE_H
#define CAPSTAN_WORKQUEUE_H

#include <stddef.h>
#include <uv.h>

struct workqueue;

/* 0 = done (forget), non-zero = retry with back-off. */
typedef int (*workqueue_fn)(void *data, const char *key);

int workqueue_new(uv_loop_t *loop, workqueue_fn fn, void *data, struct workqueue **out);
void workqueue_add(struct workqueue *q, const char *key);
void workqueue_add_after(struct workqueue *q, const char *key, unsigned ms);
/* Re-adds after the key's back-off, and doubles it. */
void workqueue_add_rate_limited(struct workqueue *q, const char *key);
/* Forgets the key's failures (its next back-off is the base again). */
void workqueue_forget(struct workqueue *q, const char *key);
/* Failures counted for key since it was last forgotten. */
unsigned workqueue_failures(struct workqueue *q, const char *key);
/* Keys waiting to be processed now (not delayed ones). */
size_t workqueue_len(const struct workqueue *q);
/* Changes the back-off bounds (defaults 5 ms and 1000000 ms). */
void workqueue_set_backoff(struct workqueue *q, unsigned base_ms, unsigned max_ms);
/* Drops every key and frees the queue once its handles are closed; fn is
 * never called again. Safe to call from inside fn. */
void workqueue_close(struct workqueue *q);

#endif
