/* lease.c — the lease clock: see lease.h. */
#include "store/lease.h"

#include <stdlib.h>

#include "lib/err.h"

#define LEASE_BUCKETS 4096
#define LEASE_TICK_MS 250

struct lease {
	struct lease *next;
	int64_t id;
	int64_t ttl;
	uint64_t deadline_ms;
	bool revoking;       /* a revoke has been proposed */
};

struct lease_table {
	uv_loop_t *loop;
	uv_timer_t tick;
	lease_expire_fn expire;
	void *data;
	bool leader;
	struct lease *buckets[LEASE_BUCKETS];
};

static size_t bucket_of(int64_t id)
{
	uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
	return (size_t)(x >> 52) % LEASE_BUCKETS;
}

static struct lease *find(struct lease_table *t, int64_t id)
{
	for (struct lease *l = t->buckets[bucket_of(id)]; l; l = l->next)
		if (l->id == id)
			return l;
	return NULL;
}

static void tick_cb(uv_timer_t *timer)
{
	struct lease_table *t = timer->data;
	uint64_t now = uv_now(t->loop);
	if (!t->leader)
		return;
	for (size_t b = 0; b < LEASE_BUCKETS; b++) {
		for (struct lease *l = t->buckets[b]; l; l = l->next) {
			if (!l->revoking && l->deadline_ms <= now) {
				l->revoking = true;
				/* May revoke l synchronously? No: revokes come from the
				 * log, after this loop turn. */
				t->expire(t->data, l->id);
			}
		}
	}
}

int lease_table_new(uv_loop_t *loop, lease_expire_fn expire, void *data,
		    struct lease_table **out)
{
	struct lease_table *t = calloc(1, sizeof *t);
	if (t == NULL)
		return CAP_ENOMEM;
	t->loop = loop;
	t->expire = expire;
	t->data = data;
	uv_timer_init(loop, &t->tick);
	t->tick.data = t;
	uv_timer_start(&t->tick, tick_cb, LEASE_TICK_MS, LEASE_TICK_MS);
	*out = t;
	return CAP_OK;
}

static void closed_cb(uv_handle_t *h)
{
	free(h->data);
}

void lease_table_close(struct lease_table *t)
{
	lease_clear(t);
	uv_close((uv_handle_t *)&t->tick, closed_cb);
}

int lease_granted(struct lease_table *t, int64_t id, int64_t ttl)
{
	struct lease *l = find(t, id);
	if (l == NULL) {
		l = calloc(1, sizeof *l);
		if (l == NULL)
			return CAP_ENOMEM;
		l->id = id;
		size_t b = bucket_of(id);
		l->next = t->buckets[b];
		t->buckets[b] = l;
	}
	l->ttl = ttl;
	l->deadline_ms = uv_now(t->loop) + (uint64_t)ttl * 1000;
	l->revoking = false;
	return CAP_OK;
}

void lease_revoked(struct lease_table *t, int64_t id)
{
	struct lease **pp = &t->buckets[bucket_of(id)];
	while (*pp) {
		if ((*pp)->id == id) {
			struct lease *l = *pp;
			*pp = l->next;
			free(l);
			return;
		}
		pp = &(*pp)->next;
	}
}

void lease_clear(struct lease_table *t)
{
	for (size_t b = 0; b < LEASE_BUCKETS; b++) {
		while (t->buckets[b]) {
			struct lease *l = t->buckets[b];
			t->buckets[b] = l->next;
			free(l);
		}
	}
}

void lease_set_leader(struct lease_table *t, bool leader)
{
	uint64_t now = uv_now(t->loop);
	t->leader = leader;
	if (!leader)
		return;
	for (size_t b = 0; b < LEASE_BUCKETS; b++) {
		for (struct lease *l = t->buckets[b]; l; l = l->next) {
			l->deadline_ms = now + (uint64_t)l->ttl * 1000;
			l->revoking = false;
		}
	}
}

void lease_expire_failed(struct lease_table *t, int64_t id)
{
	struct lease *l = find(t, id);
	if (l != NULL)
		l->revoking = false;
}

int lease_keepalive(struct lease_table *t, int64_t id, int64_t *ttl)
{
	struct lease *l = find(t, id);
	if (l == NULL || l->revoking)
		return CAP_ELEASENOTFOUND;
	l->deadline_ms = uv_now(t->loop) + (uint64_t)l->ttl * 1000;
	*ttl = l->ttl;
	return CAP_OK;
}

int lease_remaining(struct lease_table *t, int64_t id, int64_t *remaining, int64_t *granted)
{
	struct lease *l = find(t, id);
	uint64_t now = uv_now(t->loop);
	if (l == NULL)
		return CAP_ELEASENOTFOUND;
	*granted = l->ttl;
	*remaining = l->deadline_ms > now ? (int64_t)((l->deadline_ms - now) / 1000) : 0;
	return CAP_OK;
}

bool lease_exists(struct lease_table *t, int64_t id)
{
	return find(t, id) != NULL;
}
