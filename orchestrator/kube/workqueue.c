/* workqueue.c — a deduplicating, rate-limited queue of keys for one worker
 * (see workqueue.h).
 *
 * Happy path: add → the key is marked dirty and appended to the FIFO (unless
 * it is already there) → a zero-delay timer runs a batch: each key leaves the
 * FIFO and the dirty set, enters the processing set, fn runs → 0 forgets its
 * failures → a key added again while it was processed goes to the back of
 * the FIFO then, so one key never runs twice at once.
 *
 * Failure modes: fn non-zero → the key waits 5 ms·2^failures (capped) in the
 * delay heap, then is added again. Closing from inside fn is allowed: the
 * memory goes once fn has returned and both timers are closed. */
#include "orchestrator/kube/workqueue.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WORKQUEUE_BATCH 512
#define WORKQUEUE_BASE_MS 5
#define WORKQUEUE_MAX_MS 1000000

struct delayed {
	uint64_t due;
	uint64_t seq;        /* FIFO among equal due times */
	char *key;
};

struct workqueue {
	uv_loop_t *loop;
	workqueue_fn fn;
	void *data;
	char **ring;
	size_t head;
	size_t len;
	size_t cap;
	json_t *dirty;        /* queued, or added again while processing */
	json_t *processing;
	json_t *failures;     /* key -> count */
	struct delayed *heap;
	size_t hlen;
	size_t hcap;
	uint64_t seq;
	uv_timer_t run;
	uv_timer_t delay;
	unsigned base_ms;
	unsigned max_ms;
	int handles;
	int in_fn;
	bool closing;
	bool run_scheduled;
};

static void run_cb(uv_timer_t *t);

static void schedule_run(struct workqueue *q)
{
	if (q->run_scheduled || q->closing)
		return;
	q->run_scheduled = true;
	uv_timer_start(&q->run, run_cb, 0, 0);
}

static int ring_push(struct workqueue *q, const char *key)
{
	char *k;

	if (q->len == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		char **r = malloc(cap * sizeof(*r));

		if (r == NULL)
			return -1;
		for (size_t i = 0; i < q->len; i++)
			r[i] = q->ring[(q->head + i) % q->cap];
		free(q->ring);
		q->ring = r;
		q->head = 0;
		q->cap = cap;
	}
	k = strdup(key);
	if (k == NULL)
		return -1;
	q->ring[(q->head + q->len) % q->cap] = k;
	q->len++;
	return 0;
}

static char *ring_pop(struct workqueue *q)
{
	char *k;

	if (q->len == 0)
		return NULL;
	k = q->ring[q->head];
	q->head = (q->head + 1) % q->cap;
	q->len--;
	return k;
}

/* ---- the delay heap, ordered by (due, seq) ---- */

static bool before(const struct delayed *a, const struct delayed *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_swap(struct workqueue *q, size_t i, size_t j)
{
	struct delayed t = q->heap[i];

	q->heap[i] = q->heap[j];
	q->heap[j] = t;
}

static int heap_push(struct workqueue *q, uint64_t due, const char *key)
{
	size_t i;

	if (q->hlen == q->hcap) {
		size_t cap = q->hcap ? q->hcap * 2 : 32;
		struct delayed *h = realloc(q->heap, cap * sizeof(*h));

		if (h == NULL)
			return -1;
		q->heap = h;
		q->hcap = cap;
	}
	i = q->hlen;
	q->heap[i].due = due;
	q->heap[i].seq = q->seq++;
	q->heap[i].key = strdup(key);
	if (q->heap[i].key == NULL)
		return -1;
	q->hlen++;
	while (i > 0 && before(&q->heap[i], &q->heap[(i - 1) / 2])) {
		heap_swap(q, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	return 0;
}

static char *heap_pop(struct workqueue *q)
{
	char *key = q->heap[0].key;
	size_t i = 0;

	q->heap[0] = q->heap[--q->hlen];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < q->hlen && before(&q->heap[l], &q->heap[m]))
			m = l;
		if (r < q->hlen && before(&q->heap[r], &q->heap[m]))
			m = r;
		if (m == i)
			break;
		heap_swap(q, i, m);
		i = m;
	}
	return key;
}

static void delay_cb(uv_timer_t *t);

static void arm_delay(struct workqueue *q)
{
	uint64_t now = uv_now(q->loop);

	if (q->hlen == 0 || q->closing) {
		uv_timer_stop(&q->delay);
		return;
	}
	uv_timer_start(&q->delay, delay_cb, q->heap[0].due > now ? q->heap[0].due - now : 0, 0);
}

static void delay_cb(uv_timer_t *t)
{
	struct workqueue *q = t->data;
	uint64_t now = uv_now(q->loop);

	while (q->hlen > 0 && q->heap[0].due <= now && !q->closing) {
		char *key = heap_pop(q);

		workqueue_add(q, key);
		free(key);
	}
	arm_delay(q);
}

/* ---- lifetime ---- */

static void maybe_free(struct workqueue *q)
{
	char *k;

	if (!q->closing || q->handles > 0 || q->in_fn > 0)
		return;
	while ((k = ring_pop(q)) != NULL)
		free(k);
	free(q->ring);
	for (size_t i = 0; i < q->hlen; i++)
		free(q->heap[i].key);
	free(q->heap);
	json_decref(q->dirty);
	json_decref(q->processing);
	json_decref(q->failures);
	free(q);
}

static void handle_closed(uv_handle_t *h)
{
	struct workqueue *q = h->data;

	q->handles--;
	maybe_free(q);
}

int workqueue_new(uv_loop_t *loop, workqueue_fn fn, void *data, struct workqueue **out)
{
	struct workqueue *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return -1;
	q->loop = loop;
	q->fn = fn;
	q->data = data;
	q->base_ms = WORKQUEUE_BASE_MS;
	q->max_ms = WORKQUEUE_MAX_MS;
	q->dirty = json_object();
	q->processing = json_object();
	q->failures = json_object();
	if (q->dirty == NULL || q->processing == NULL || q->failures == NULL) {
		json_decref(q->dirty);
		json_decref(q->processing);
		json_decref(q->failures);
		free(q);
		return -1;
	}
	uv_timer_init(loop, &q->run);
	uv_timer_init(loop, &q->delay);
	q->run.data = q->delay.data = q;
	q->handles = 2;
	*out = q;
	return 0;
}

void workqueue_close(struct workqueue *q)
{
	if (q == NULL || q->closing)
		return;
	q->closing = true;
	uv_close((uv_handle_t *)&q->run, handle_closed);
	uv_close((uv_handle_t *)&q->delay, handle_closed);
}

/* ---- adding ---- */

void workqueue_add(struct workqueue *q, const char *key)
{
	if (q->closing || json_object_get(q->dirty, key) != NULL)
		return;
	json_object_set_new(q->dirty, key, json_true());
	/* Being processed: it goes back to the FIFO when fn returns. */
	if (json_object_get(q->processing, key) != NULL)
		return;
	if (ring_push(q, key) != 0) {
		json_object_del(q->dirty, key);
		return;
	}
	schedule_run(q);
}

void workqueue_add_after(struct workqueue *q, const char *key, unsigned ms)
{
	if (q->closing)
		return;
	if (ms == 0) {
		workqueue_add(q, key);
		return;
	}
	if (heap_push(q, uv_now(q->loop) + ms, key) != 0)
		return;
	arm_delay(q);
}

void workqueue_add_rate_limited(struct workqueue *q, const char *key)
{
	unsigned n = workqueue_failures(q, key);
	uint64_t ms = q->base_ms;

	for (unsigned i = 0; i < n && ms < q->max_ms; i++)
		ms *= 2;
	if (ms > q->max_ms)
		ms = q->max_ms;
	json_object_set_new(q->failures, key, json_integer((json_int_t)n + 1));
	workqueue_add_after(q, key, (unsigned)ms);
}

void workqueue_forget(struct workqueue *q, const char *key)
{
	json_object_del(q->failures, key);
}

unsigned workqueue_failures(struct workqueue *q, const char *key)
{
	return (unsigned)json_integer_value(json_object_get(q->failures, key));
}

size_t workqueue_len(const struct workqueue *q)
{
	return q->len;
}

void workqueue_set_backoff(struct workqueue *q, unsigned base_ms, unsigned max_ms)
{
	q->base_ms = base_ms ? base_ms : 1;
	q->max_ms = max_ms >= q->base_ms ? max_ms : q->base_ms;
}

/* ---- processing ---- */

static void run_cb(uv_timer_t *t)
{
	struct workqueue *q = t->data;

	q->run_scheduled = false;
	for (int n = 0; n < WORKQUEUE_BATCH && q->len > 0 && !q->closing; n++) {
		char *key = ring_pop(q);
		int rv;

		json_object_del(q->dirty, key);
		json_object_set_new(q->processing, key, json_true());
		q->in_fn++;
		rv = q->fn(q->data, key);
		q->in_fn--;
		json_object_del(q->processing, key);
		if (q->closing) {
			free(key);
			break;
		}
		if (rv != 0)
			workqueue_add_rate_limited(q, key);
		else
			workqueue_forget(q, key);
		if (json_object_get(q->dirty, key) != NULL)
			ring_push(q, key);
		free(key);
	}
	if (q->closing) {
		maybe_free(q);
		return;
	}
	if (q->len > 0)
		schedule_run(q);
}
