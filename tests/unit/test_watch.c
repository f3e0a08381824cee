/* test_watch.c — unit tests of the watch hub (store/watch.c) on a real uv
 * loop and a real MVCC store: live delivery and filters, replay of history,
 * slow readers, compaction and progress notifications. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "lib/err.h"
#include "store/mvcc.h"
#include "store/watch.h"

#define MAX_GOT 8192

/* What one watcher was given. */
struct got {
	enum mvcc_event_type type;
	char key[32];
	char value[32];
	int64_t mod_rev;
	int64_t prev_mod_rev;
};

struct rec {
	struct got *v;
	size_t n;
	int progress;            /* deliveries with no events */
	int64_t progress_rev;
	int compacted;           /* calls of sink.compacted */
	int64_t compact_rev;
	int64_t last_rev;        /* highest event revision seen */
	bool out_of_order;
	bool blocked;
	struct watcher *w;
};

struct fx {
	char dir[64];
	char path[128];
	struct mvcc *m;
	uv_loop_t loop;
	struct watch_hub *hub;
	struct rec recs[6];
};

static void sink_deliver(void *data, const struct mvcc_event *const *evs, size_t n, int64_t rev)
{
	struct rec *r = data;
	if (n == 0) {
		r->progress++;
		r->progress_rev = rev;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct mvcc_event *ev = evs[i];
		assert_true(r->n < MAX_GOT);
		struct got *g = &r->v[r->n++];
		memset(g, 0, sizeof *g);
		g->type = ev->type;
		assert_true(ev->kv.key_len < sizeof g->key);
		memcpy(g->key, ev->kv.key, ev->kv.key_len);
		if (ev->kv.value_len < sizeof g->value && ev->kv.value_len > 0)
			memcpy(g->value, ev->kv.value, ev->kv.value_len);
		g->mod_rev = ev->kv.mod_rev;
		g->prev_mod_rev = ev->prev.mod_rev;
		if (ev->kv.mod_rev < r->last_rev || ev->kv.mod_rev > rev)
			r->out_of_order = true;
		r->last_rev = ev->kv.mod_rev;
	}
}

static void sink_compacted(void *data, int64_t compact_rev)
{
	struct rec *r = data;
	r->compacted++;
	r->compact_rev = compact_rev;
}

static bool sink_blocked(void *data)
{
	return ((struct rec *)data)->blocked;
}

static void remove_db_files(const char *path)
{
	static const char *const sfx[] = {"", "-wal", "-shm", ".restore", "-journal"};
	char p[256];
	for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
		snprintf(p, sizeof p, "%s%s", path, sfx[i]);
		unlink(p);
	}
}

static int setup_with(void **state, unsigned progress_ms)
{
	struct fx *f = calloc(1, sizeof *f);
	char errmsg[CAP_ERRMSG_SIZE];
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/test_watch.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof f->path, "%s/db", f->dir);
	if (mvcc_open(f->path, &f->m, errmsg) != CAP_OK)
		return -1;
	if (uv_loop_init(&f->loop) != 0)
		return -1;
	if (watch_hub_new(&f->loop, f->m, progress_ms, &f->hub) != CAP_OK)
		return -1;
	for (size_t i = 0; i < sizeof f->recs / sizeof f->recs[0]; i++) {
		f->recs[i].v = calloc(MAX_GOT, sizeof *f->recs[i].v);
		if (f->recs[i].v == NULL)
			return -1;
	}
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, 0);
}

static int setup_progress(void **state)
{
	return setup_with(state, 20);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	for (size_t i = 0; i < sizeof f->recs / sizeof f->recs[0]; i++) {
		if (f->recs[i].w != NULL)
			watch_remove(f->hub, f->recs[i].w);
		free(f->recs[i].v);
	}
	assert_int_equal(watch_hub_count(f->hub), 0);
	watch_hub_close(f->hub);
	/* Everything the hub opened closes: the loop ends and closes clean. */
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	mvcc_close(f->m);
	remove_db_files(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ---- writing ---- */

static uint8_t *bytes_dup(const char *s)
{
	return (uint8_t *)strdup(s);
}

/* One put as its own revision, events appended to evs. */
static void put_one(struct fx *f, const char *key, const char *value, struct mvcc_events *evs)
{
	struct mvcc_event ev = {0};
	struct mvcc_kv cur = {0};
	mvcc_txn_begin(f->m);
	assert_int_equal(mvcc_put(f->m, (const uint8_t *)key, strlen(key), (const uint8_t *)value,
				  strlen(value), 0, &ev.prev, &cur),
			 CAP_OK);
	mvcc_txn_end(f->m);
	ev.type = MVCC_EVENT_PUT;
	ev.kv = cur;
	ev.kv.key = bytes_dup(key);
	ev.kv.key_len = strlen(key);
	ev.kv.value = bytes_dup(value);
	ev.kv.value_len = strlen(value);
	if (evs->n == evs->cap) {
		evs->cap = evs->cap ? evs->cap * 2 : 16;
		evs->v = realloc(evs->v, evs->cap * sizeof *evs->v);
		assert_non_null(evs->v);
	}
	evs->v[evs->n++] = ev;
}

/* Commits a batch and tells the hub, as the store does after apply. */
static void commit_notify(struct fx *f, struct mvcc_events *evs)
{
	assert_int_equal(mvcc_commit(f->m, mvcc_applied_index(f->m) + 1), CAP_OK);
	if (evs->n > 0)
		watch_hub_notify(f->hub, evs, mvcc_rev(f->m));
	mvcc_events_clear(evs);
}

/* A put in its own batch, notified; returns its revision. */
static int64_t put(struct fx *f, const char *key, const char *value)
{
	struct mvcc_events evs = {0};
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	put_one(f, key, value, &evs);
	commit_notify(f, &evs);
	return mvcc_rev(f->m);
}

/* n puts of key, one revision each, in one batch, notified together. */
static void put_many(struct fx *f, const char *key, int n)
{
	struct mvcc_events evs = {0};
	char v[32];
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	for (int i = 0; i < n; i++) {
		snprintf(v, sizeof v, "v%d", i);
		put_one(f, key, v, &evs);
	}
	commit_notify(f, &evs);
}

/* A delete of [key, end) in its own batch, notified; returns its revision. */
static int64_t del(struct fx *f, const char *key, const char *end)
{
	struct mvcc_events evs = {0};
	struct mvcc_kvs prevs = {0};
	int64_t n;
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	mvcc_txn_begin(f->m);
	int64_t rev = mvcc_txn_rev(f->m);
	assert_int_equal(mvcc_delete_range(f->m, (const uint8_t *)key, strlen(key),
					   (const uint8_t *)end, end ? strlen(end) : 0, &prevs, &n),
			 CAP_OK);
	mvcc_txn_end(f->m);
	evs.cap = prevs.n ? prevs.n : 1;
	evs.v = calloc(evs.cap, sizeof *evs.v);
	assert_non_null(evs.v);
	for (size_t i = 0; i < prevs.n; i++) {
		struct mvcc_event *ev = &evs.v[evs.n++];
		ev->type = MVCC_EVENT_DELETE;
		ev->kv.key = malloc(prevs.v[i].key_len);
		memcpy(ev->kv.key, prevs.v[i].key, prevs.v[i].key_len);
		ev->kv.key_len = prevs.v[i].key_len;
		ev->kv.mod_rev = rev;
		ev->prev = prevs.v[i];
		memset(&prevs.v[i], 0, sizeof prevs.v[i]);
	}
	mvcc_kvs_clear(&prevs);
	commit_notify(f, &evs);
	return mvcc_rev(f->m);
}

static void compact(struct fx *f, int64_t rev)
{
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	assert_int_equal(mvcc_compact(f->m, rev), CAP_OK);
	assert_int_equal(mvcc_commit(f->m, mvcc_applied_index(f->m) + 1), CAP_OK);
}

/* ---- watching ---- */

static void watch(struct fx *f, int i, const char *key, const char *end, int64_t start,
		  void (*tweak)(struct watch_opts *))
{
	struct watch_opts o = {
		.key = (const uint8_t *)key,
		.key_len = strlen(key),
		.end = (const uint8_t *)end,
		.end_len = end ? strlen(end) : 0,
		.start_rev = start,
	};
	struct watch_sink s = {sink_deliver, sink_compacted, sink_blocked, &f->recs[i]};
	if (tweak)
		tweak(&o);
	assert_int_equal(watch_add(f->hub, &o, &s, &f->recs[i].w), CAP_OK);
}

static void no_put(struct watch_opts *o)
{
	o->no_put = true;
}

static void no_delete(struct watch_opts *o)
{
	o->no_delete = true;
}

static void with_prev(struct watch_opts *o)
{
	o->prev_kv = true;
}

static void progress(struct watch_opts *o)
{
	o->progress_notify = true;
}

static void deadline_cb(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Runs the loop until cond(f) holds or ms pass; returns cond(f). */
static bool run_until(struct fx *f, bool (*cond)(struct fx *), unsigned ms)
{
	uv_timer_t deadline;
	bool expired = false;
	uv_timer_init(&f->loop, &deadline);
	deadline.data = &expired;
	uv_timer_start(&deadline, deadline_cb, ms, 0);
	while (!cond(f) && !expired)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&deadline, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	return cond(f);
}

static bool never(struct fx *f)
{
	(void)f;
	return false;
}

static bool rec0_synced(struct fx *f)
{
	return watch_synced(f->recs[0].w);
}

/* The watcher saw exactly these (type, key, mod_rev), in order. */
static void assert_got(const struct rec *r, size_t n, const struct got *want)
{
	assert_false(r->out_of_order);
	if (r->n != n)
		fail_msg("got %zu events, want %zu", r->n, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(r->v[i].type, want[i].type);
		assert_string_equal(r->v[i].key, want[i].key);
		assert_int_equal(r->v[i].mod_rev, want[i].mod_rev);
	}
}

/* The watcher saw every revision of from..to exactly once, in order. */
static void assert_revs(const struct rec *r, int64_t from, int64_t to)
{
	assert_false(r->out_of_order);
	if ((int64_t)r->n != to - from + 1)
		fail_msg("got %zu events, want %lld", r->n, (long long)(to - from + 1));
	for (size_t i = 0; i < r->n; i++)
		assert_int_equal(r->v[i].mod_rev, from + (int64_t)i);
}

#define P MVCC_EVENT_PUT
#define D MVCC_EVENT_DELETE

/* Synced watchers get live events at once, filtered by key, range, prefix,
 * whole key space, and the NOPUT/NODELETE filters. */
static void test_live_filters(void **state)
{
	struct fx *f = *state;
	put(f, "seed", "x");
	watch(f, 0, "a", NULL, 0, NULL);          /* one key */
	watch(f, 1, "a", "c", 0, NULL);           /* [a, c) */
	watch(f, 2, "p/", "p0", 0, NULL);         /* prefix p/ */
	{
		/* the whole key space: key and end are one zero byte each */
		static const uint8_t zero[1] = {0};
		struct watch_opts o = {.key = zero, .key_len = 1, .end = zero, .end_len = 1};
		struct watch_sink s = {sink_deliver, sink_compacted, sink_blocked, &f->recs[3]};
		assert_int_equal(watch_add(f->hub, &o, &s, &f->recs[3].w), CAP_OK);
	}
	watch(f, 4, "a", "c", 0, no_put);
	watch(f, 5, "a", "c", 0, no_delete);
	for (int i = 0; i < 6; i++)
		assert_true(watch_synced(f->recs[i].w));

	int64_t ra = put(f, "a", "1");
	int64_t rb = put(f, "b", "2");
	int64_t rc = put(f, "c", "3");
	int64_t rp = put(f, "p/x", "4");
	int64_t rq = put(f, "p0", "5");
	int64_t rda = del(f, "a", NULL);
	int64_t rdr = del(f, "b", "z");   /* deletes b, c, p/x, p0 */

	const struct got w0[] = {{P, "a", "", ra, 0}, {D, "a", "", rda, 0}};
	assert_got(&f->recs[0], 2, w0);
	const struct got w1[] = {{P, "a", "", ra, 0}, {P, "b", "", rb, 0}, {D, "a", "", rda, 0},
				 {D, "b", "", rdr, 0}};
	assert_got(&f->recs[1], 4, w1);
	const struct got w2[] = {{P, "p/x", "", rp, 0}, {D, "p/x", "", rdr, 0}};
	assert_got(&f->recs[2], 2, w2);
	const struct got w3[] = {{P, "a", "", ra, 0},   {P, "b", "", rb, 0},
				 {P, "c", "", rc, 0},   {P, "p/x", "", rp, 0},
				 {P, "p0", "", rq, 0},  {D, "a", "", rda, 0},
				 {D, "b", "", rdr, 0},  {D, "c", "", rdr, 0},
				 {D, "p/x", "", rdr, 0}, {D, "p0", "", rdr, 0},
				 {D, "seed", "", rdr, 0}};
	assert_got(&f->recs[3], 11, w3);
	const struct got w4[] = {{D, "a", "", rda, 0}, {D, "b", "", rdr, 0}};
	assert_got(&f->recs[4], 2, w4);
	const struct got w5[] = {{P, "a", "", ra, 0}, {P, "b", "", rb, 0}};
	assert_got(&f->recs[5], 2, w5);
	/* values come along */
	assert_string_equal(f->recs[1].v[1].value, "2");
}

/* A watcher starting in the past replays history from its start revision,
 * then continues with live events, with no gap and no duplicate, even when
 * history takes several chunks and writes keep coming meanwhile. */
static void test_replay_then_live(void **state)
{
	struct fx *f = *state;
	put_many(f, "k", 2500);
	int64_t start = 7;
	watch(f, 0, "k", NULL, start, NULL);
	assert_false(watch_synced(f->recs[0].w));
	/* Writes while catching up: one before the loop runs, then one per turn.
	 * A turn is bounded: on a slow machine the catch-up can finish in the
	 * timers before the loop polls, and a bare UV_RUN_ONCE then waited for
	 * the next timer, the progress one, minutes away. */
	put(f, "k", "during");
	for (int i = 0; i < 200 && !watch_synced(f->recs[0].w); i++) {
		run_until(f, rec0_synced, 10);
		put(f, "k", "during");
	}
	assert_true(run_until(f, rec0_synced, 5000));
	/* and live ones after */
	put(f, "k", "after");
	int64_t last = put(f, "k", "after2");
	assert_revs(&f->recs[0], start, last);
	assert_string_equal(f->recs[0].v[f->recs[0].n - 1].value, "after2");
}

/* A blocked sink is taken off live delivery, is given nothing while it stays
 * blocked, and once it drains catches up with everything, in order. */
static void test_blocked_sink_catches_up(void **state)
{
	struct fx *f = *state;
	int64_t first = put(f, "seed", "x") + 1;
	watch(f, 0, "k", NULL, 0, NULL);
	watch(f, 1, "k", NULL, 0, NULL);   /* a fast reader alongside */
	put(f, "k", "1");
	assert_int_equal(f->recs[0].n, 1);
	f->recs[0].blocked = true;
	put(f, "k", "2");
	assert_false(watch_synced(f->recs[0].w));
	assert_int_equal(f->recs[0].n, 1);
	for (int i = 0; i < 20; i++)
		put(f, "k", "more");
	/* it stays blocked for a while: nothing is pushed to it */
	run_until(f, never, 60);
	assert_int_equal(f->recs[0].n, 1);
	/* the fast reader was never held back */
	int64_t last = put(f, "k", "last");
	assert_revs(&f->recs[1], first, last);
	f->recs[0].blocked = false;
	assert_true(run_until(f, rec0_synced, 5000));
	assert_revs(&f->recs[0], first, last);
	int64_t live = put(f, "k", "live");
	assert_revs(&f->recs[0], first, live);
}

/* A watcher whose start was compacted away is told once, with the compact
 * revision, and given nothing afterwards; a start at the compact revision
 * itself is served. */
static void test_compacted(void **state)
{
	struct fx *f = *state;
	int64_t r1 = put(f, "k", "1");
	put(f, "k", "2");
	int64_t r3 = put(f, "k", "3");
	int64_t r4 = put(f, "k", "4");
	compact(f, r3);
	watch(f, 0, "k", NULL, r1, NULL);
	watch(f, 1, "k", NULL, r3, NULL);
	assert_true(run_until(f, rec0_synced, 2000));
	assert_int_equal(f->recs[0].compacted, 1);
	assert_int_equal(f->recs[0].compact_rev, r3);
	assert_int_equal(f->recs[0].n, 0);
	int64_t r5 = put(f, "k", "5");
	run_until(f, never, 30);
	assert_int_equal(f->recs[0].compacted, 1);
	assert_int_equal(f->recs[0].n, 0);
	/* the one at the compact revision */
	assert_int_equal(f->recs[1].compacted, 0);
	assert_revs(&f->recs[1], r3, r5);
	(void)r4;
}

/* A watcher left behind by a compaction while its sink was blocked is told
 * it was compacted when it drains. */
static void test_blocked_then_compacted(void **state)
{
	struct fx *f = *state;
	put(f, "seed", "x");
	watch(f, 0, "k", NULL, 0, NULL);
	f->recs[0].blocked = true;
	put(f, "k", "1");   /* takes it off live delivery */
	put(f, "k", "2");
	int64_t r = put(f, "k", "3");
	compact(f, r);
	f->recs[0].blocked = false;
	assert_true(run_until(f, rec0_synced, 2000));
	assert_int_equal(f->recs[0].compacted, 1);
	assert_int_equal(f->recs[0].compact_rev, r);
	assert_int_equal(f->recs[0].n, 0);
}

static bool progressed_twice(struct fx *f)
{
	return f->recs[0].progress >= 2;
}

/* Progress notifications go to synced watchers that asked for them, carry
 * the current revision, and go to no one else. */
static void test_progress(void **state)
{
	struct fx *f = *state;
	int64_t rev = put(f, "k", "1");
	watch(f, 0, "k", NULL, 0, progress);          /* synced, asked */
	watch(f, 1, "k", NULL, 0, NULL);              /* synced, did not ask */
	watch(f, 2, "k", NULL, 1, progress);          /* unsynced (blocked), asked */
	f->recs[2].blocked = true;
	assert_false(watch_synced(f->recs[2].w));
	assert_true(run_until(f, progressed_twice, 5000));
	assert_int_equal(f->recs[0].progress_rev, rev);
	assert_int_equal(f->recs[0].n, 0);
	assert_int_equal(f->recs[1].progress, 0);
	assert_int_equal(f->recs[2].progress, 0);
	assert_int_equal(f->recs[2].n, 0);
}

/* A watcher starting at a future revision (store at 2, watch from 5) is
 * given nothing below 5, then every event from 5 on: a client resuming
 * ahead of the store must not see older changes it did not ask for. */
static void test_future_start(void **state)
{
	struct fx *f = *state;
	/* a new store is at revision 1; the first write makes it 2 */
	assert_int_equal(put(f, "k", "2"), 2);
	watch(f, 0, "k", NULL, 5, NULL);
	put(f, "k", "3");
	put(f, "k", "4");
	run_until(f, never, 30);
	assert_int_equal(f->recs[0].n, 0);
	int64_t r5 = put(f, "k", "5");
	int64_t r6 = put(f, "k", "6");
	run_until(f, never, 30);
	assert_int_equal(r5, 5);
	assert_revs(&f->recs[0], 5, r6);
	assert_string_equal(f->recs[0].v[0].value, "5");
}

/* The hub wants put events' previous values exactly while a prev_kv watcher
 * is registered, synced or not. */
static void test_wants_prev_follows_watchers(void **state)
{
	struct fx *f = *state;
	put(f, "k", "2");
	watch(f, 0, "k", NULL, 0, NULL);
	assert_false(watch_hub_wants_prev(f->hub));
	watch(f, 1, "k", NULL, 1, with_prev);       /* unsynced: replays history */
	assert_true(watch_hub_wants_prev(f->hub));
	watch(f, 2, "a", "z", 0, with_prev);
	watch_remove(f->hub, f->recs[1].w);
	f->recs[1].w = NULL;
	assert_true(watch_hub_wants_prev(f->hub));
	watch_remove(f->hub, f->recs[2].w);
	f->recs[2].w = NULL;
	assert_false(watch_hub_wants_prev(f->hub));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_live_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wants_prev_follows_watchers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_then_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blocked_sink_catches_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compacted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blocked_then_compacted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_progress, setup_progress, teardown),
		cmocka_unit_test_setup_teardown(test_future_start, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
