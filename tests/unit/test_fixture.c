/* test_fixture.c — deterministic replication tests: three FSM-only stores
 * applying the log of libraft's in-memory fixture cluster, under leader
 * changes, partially replicated entries, kills, restarts and random faults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <raft.h>
#include <raft/fixture.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "lib/b64.h"
#include "lib/err.h"
#include "lib/kv.h"
#include "lib/log.h"
#include "store/mvcc.h"
#include "store/raft_guard.h"
#include "store/store.h"

#define N_SERVERS 3
#define MAX_PROPS 2048
#define ELECTION_MS 1000  /* the fixture's election timeout */
#define HEARTBEAT_MS 100  /* and heartbeat */
#define WAIT_MS (30 * ELECTION_MS)
/* FIXTURE_SEED=<n> runs test_random_faults with another seed. About one
 * seed in ten currently fails there, in libraft 0.15 itself: a follower
 * answering an empty AppendEntries echoes its whole log's last index, stale
 * entries of an older term included, and the leader counts them as
 * replicated (match index), commits on that count and then never repairs
 * that follower (its rejections fall below the match index). */
#define RANDOM_SEED 0x5eed2024u
#define RANDOM_ROUNDS 20
#define MAX_BARRIERS 512

enum prop_kind { PROP_PUT, PROP_DELETE, PROP_TXN };
enum prop_state { PROP_PENDING, PROP_ACKED, PROP_FAILED };

/* One proposed command and what became of it. */
struct prop {
	struct raft_apply req;
	enum prop_kind kind;
	enum prop_state state;
	bool delete_proposed;  /* a put whose key a later delete names */
	char key[24];          /* put, delete: the key; txn: the key its success branch puts */
	char value[40];        /* put, txn: the value written */
};

/* The barrier a new leader appends at once, as the store's raft member does
 * (store/node.c): libraft 0.15 commits entries of earlier terms by counting
 * replicas, and an entry of the leader's own term committing first keeps a
 * later leader from overwriting them. Never reused: 0.15 may fire a
 * barrier's callback twice. */
struct election_barrier {
	struct raft_barrier req;
	struct cluster *c;
	unsigned server;
	raft_term term;
	bool fired;
};

struct cluster {
	struct raft_fixture f;
	/* Each member's io goes through the store's guard, as in store/node.c. */
	struct raft_guard guards[N_SERVERS];
	uv_loop_t loop;
	char base[64];
	char dirs[N_SERVERS][96];
	struct store *stores[N_SERVERS];
	struct prop props[MAX_PROPS];
	size_t n_props;
	uint64_t seq;
	raft_id *term_leader;  /* term_leader[t]: the server seen leading term t */
	size_t n_terms;
	raft_term split_term;  /* a term seen with two leaders, 0 if none */
	uint64_t rng;
	struct raft_barrier barrier;
	int barrier_status;    /* -1 while pending */
	struct election_barrier elections[MAX_BARRIERS];
	size_t n_elections;
	int last_state[N_SERVERS];
	raft_term ready_term[N_SERVERS];  /* the term whose election barrier applied */
};

static void guard(struct cluster *c, unsigned i);


/* ---- the cluster ---- */

static struct cluster *cluster_of(struct raft_fixture *f)
{
	return (struct cluster *)(void *)((char *)f - offsetof(struct cluster, f));
}

static void on_election_barrier(struct raft_barrier *req, int status)
{
	struct election_barrier *b = req->data;
	struct raft *r = raft_fixture_get(&b->c->f, b->server);
	if (b->fired)
		return;
	b->fired = true;
	if (status == 0 && raft_state(r) == RAFT_LEADER && r->current_term == b->term)
		b->c->ready_term[b->server] = b->term;
}

/* A server that just became leader appends its election barrier. */
static void track_leadership(struct cluster *c, unsigned i)
{
	struct raft *r = raft_fixture_get(&c->f, i);
	int state = raft_state(r);
	bool elected = state == RAFT_LEADER && c->last_state[i] != RAFT_LEADER;
	struct election_barrier *b;

	c->last_state[i] = state;
	if (!elected || c->n_elections == MAX_BARRIERS)
		return;
	b = &c->elections[c->n_elections++];
	b->c = c;
	b->server = i;
	b->term = r->current_term;
	b->req.data = b;
	if (raft_barrier(r, &b->req, on_election_barrier) != 0)
		b->fired = true;
}

/* Runs after every fixture step: appends election barriers, records which
 * server led each term, and notes a term in which two different servers
 * were ever leader. */
static void on_step(struct raft_fixture *f, struct raft_fixture_event *ev)
{
	struct cluster *c = cluster_of(f);
	(void)ev;
	for (unsigned i = 0; i < raft_fixture_n(f); i++) {
		struct raft *r = raft_fixture_get(f, i);
		raft_term t = r->current_term;
		track_leadership(c, i);
		if (raft_state(r) != RAFT_LEADER)
			continue;
		if (t >= c->n_terms) {
			size_t n = (size_t)t * 2 + 16;
			raft_id *p = realloc(c->term_leader, n * sizeof *p);
			if (p == NULL) {
				c->split_term = t;  /* cannot check: fail loudly */
				return;
			}
			memset(p + c->n_terms, 0, (n - c->n_terms) * sizeof *p);
			c->term_leader = p;
			c->n_terms = n;
		}
		if (c->term_leader[t] == 0)
			c->term_leader[t] = r->id;
		else if (c->term_leader[t] != r->id && c->split_term == 0)
			c->split_term = t;
	}
}

static uint64_t rnd(struct cluster *c)
{
	/* xorshift64*: the same sequence on every libc. */
	c->rng ^= c->rng >> 12;
	c->rng ^= c->rng << 25;
	c->rng ^= c->rng >> 27;
	return c->rng * 0x2545f4914f6cdd1dull;
}

static unsigned rnd_below(struct cluster *c, unsigned n)
{
	return (unsigned)(rnd(c) % n);
}

static void set_raft_options(struct raft *r)
{
	raft_set_election_timeout(r, ELECTION_MS);
	raft_set_heartbeat_timeout(r, HEARTBEAT_MS);
	/* The 0.15 fixture reads out of bounds when it truncates a log after a
	 * snapshot: never take one here. */
	raft_set_snapshot_threshold(r, UINT_MAX);
}

static int setup(void **state)
{
	struct cluster *c = calloc(1, sizeof *c);
	struct raft_configuration conf;
	char errmsg[CAP_ERRMSG_SIZE];

	if (c == NULL)
		return -1;
	/* FIXTURE_SEED explores other fault sequences; the default is fixed. */
	c->rng = getenv("FIXTURE_SEED") != NULL ? strtoull(getenv("FIXTURE_SEED"), NULL, 0)
						: RANDOM_SEED;
	if (c->rng == 0)
		c->rng = RANDOM_SEED;
	if (uv_loop_init(&c->loop) != 0)
		return -1;
	snprintf(c->base, sizeof c->base, "/tmp/test_fixture.XXXXXX");
	if (mkdtemp(c->base) == NULL)
		return -1;
	/* raft_fixture_initialize does not zero the struct in 0.15. */
	memset(&c->f, 0, sizeof c->f);
	if (raft_fixture_initialize(&c->f) != 0)
		return -1;
	for (unsigned i = 0; i < N_SERVERS; i++) {
		snprintf(c->dirs[i], sizeof c->dirs[i], "%s/m%u", c->base, i);
		if (store_open_fsm(&c->loop, c->dirs[i], &c->stores[i], errmsg) != CAP_OK) {
			fprintf(stderr, "open store %u: %s\n", i, errmsg);
			return -1;
		}
		if (raft_fixture_grow(&c->f, store_fsm(c->stores[i])) != 0)
			return -1;
	}
	if (raft_fixture_configuration(&c->f, N_SERVERS, &conf) != 0)
		return -1;
	if (raft_fixture_bootstrap(&c->f, &conf) != 0)
		return -1;
	raft_configuration_close(&conf);
	for (unsigned i = 0; i < N_SERVERS; i++) {
		struct raft *r = raft_fixture_get(&c->f, i);
		store_fsm_bind(c->stores[i], r);
		set_raft_options(r);
		guard(c, i);
	}
	if (raft_fixture_start(&c->f) != 0)
		return -1;
	raft_fixture_hook(&c->f, on_step);
	*state = c;
	return 0;
}

/* Puts member i's io behind the guard that corrects libraft 0.15's
 * follower replies (store/raft_guard.h), exactly as capstan runs it. */
static void guard(struct cluster *c, unsigned i)
{
	struct raft *r = raft_fixture_get(&c->f, i);
	raft_guard_init(&c->guards[i], r->io);
	r->io = &c->guards[i].io;
	c->guards[i].io.data = r;
}

static void remove_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char p[512];
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof p, "%s/%s", path, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(path);
}

static int teardown(void **state)
{
	struct cluster *c = *state;
	int rv;
	/* The fixture completes pending I/O on close, which may still apply
	 * entries: close it while the stores are open. */
	raft_fixture_close(&c->f);
	for (unsigned i = 0; i < N_SERVERS; i++)
		if (c->stores[i] != NULL)
			store_close_fsm(c->stores[i]);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	rv = uv_loop_close(&c->loop);
	if (rv != 0)
		fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rv));
	for (unsigned i = 0; i < N_SERVERS; i++)
		remove_dir(c->dirs[i]);
	rmdir(c->base);
	free(c->term_leader);
	free(c);
	return rv == 0 ? 0 : -1;
}

/* The alive server in leader state with the highest term whose election
 * barrier has applied (the store proposes nothing before), or N_SERVERS. */
static unsigned leader_of(struct cluster *c)
{
	unsigned best = N_SERVERS;
	for (unsigned i = 0; i < N_SERVERS; i++) {
		struct raft *r = raft_fixture_get(&c->f, i);
		if (!raft_fixture_alive(&c->f, i) || raft_state(r) != RAFT_LEADER ||
		    c->ready_term[i] != r->current_term)
			continue;
		if (best == N_SERVERS ||
		    r->current_term > raft_fixture_get(&c->f, best)->current_term)
			best = i;
	}
	return best;
}

/* Makes server i the first to time out at its next election timer reset. */
static void prefer(struct cluster *c, unsigned i)
{
	for (unsigned j = 0; j < N_SERVERS; j++)
		raft_fixture_set_randomized_election_timeout(&c->f, j,
							     j == i ? ELECTION_MS : 2 * ELECTION_MS - 1);
}

/* Restarts member i as a process restart would: its raft instance is closed
 * and a new one starts from the fixture's in-memory disk (term, vote, log),
 * so it applies its log again from the start; with reopen, its store is
 * closed and opened again from its directory too. The member stays killed:
 * the caller revives it. */
static void restart(struct cluster *c, unsigned i, bool reopen)
{
	struct raft_fixture_server *s = &c->f.servers[i];
	struct raft *r = &s->raft;
	char errmsg[CAP_ERRMSG_SIZE];

	if (raft_fixture_alive(&c->f, i))
		raft_fixture_kill(&c->f, i);
	/* The fixture's raft_io neither cancels nor drops a closed instance's
	 * disk writes and sends: let them complete first. */
	raft_fixture_step_until_elapsed(&c->f, 500);
	raft_close(r, NULL);
	if (reopen) {
		store_close_fsm(c->stores[i]);
		c->stores[i] = NULL;
		uv_run(&c->loop, UV_RUN_NOWAIT);
		if (store_open_fsm(&c->loop, c->dirs[i], &c->stores[i], errmsg) != CAP_OK)
			fail_msg("reopen store %u: %s", i, errmsg);
	}
	assert_int_equal(raft_init(r, &s->io, store_fsm(c->stores[i]), s->id, s->address), 0);
	set_raft_options(r);
	guard(c, i);
	store_fsm_bind(c->stores[i], r);
	assert_int_equal(raft_start(r), 0);
}

/* Steps until there is a stable leader, from the next step on: the fixture
 * names the leader only after a step, so right after a kill it still names
 * the dead one. */
static void wait_leader(struct cluster *c)
{
	raft_fixture_step(&c->f);
	assert_true(raft_fixture_step_until_has_leader(&c->f, WAIT_MS));
}

static void heal(struct cluster *c)
{
	for (unsigned i = 0; i < N_SERVERS; i++)
		if (!raft_fixture_alive(&c->f, i))
			raft_fixture_revive(&c->f, i);
	for (unsigned i = 0; i < N_SERVERS; i++)
		for (unsigned j = 0; j < N_SERVERS; j++)
			if (i != j)
				raft_fixture_desaturate(&c->f, i, j);
}

static void on_barrier(struct raft_barrier *req, int status)
{
	struct cluster *c = req->data;
	c->barrier_status = status;
}

static bool barrier_done(struct raft_fixture *f, void *arg)
{
	(void)f;
	return ((struct cluster *)arg)->barrier_status != -1;
}

/* Heals every fault, waits for a stable leader and steps until a barrier it
 * commits has applied on every member. */
static void settle(struct cluster *c)
{
	heal(c);
	for (int attempt = 0; attempt < 5; attempt++) {
		struct raft *r;
		wait_leader(c);
		r = raft_fixture_get(&c->f, raft_fixture_leader_index(&c->f));
		c->barrier.data = c;
		c->barrier_status = -1;
		if (raft_barrier(r, &c->barrier, on_barrier) != 0)
			continue;
		assert_true(raft_fixture_step_until(&c->f, barrier_done, c, WAIT_MS));
		if (c->barrier_status != 0)
			continue;
		assert_true(raft_fixture_step_until_applied(&c->f, N_SERVERS,
							    raft_last_applied(r), WAIT_MS));
		uv_run(&c->loop, UV_RUN_NOWAIT);
		return;
	}
	fail_msg("no barrier committed after healing");
}

/* ---- proposing ---- */

static void on_applied(struct raft_apply *req, int status, void *result)
{
	struct prop *p = req->data;
	(void)result;
	p->state = status == 0 ? PROP_ACKED : PROP_FAILED;
}

static json_t *b64_json(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(b64_encoded_size(n));
	json_t *j;
	assert_non_null(out);
	b64_encode((const uint8_t *)s, n, out);
	j = json_string(out);
	free(out);
	return j;
}

static struct prop *new_prop(struct cluster *c, enum prop_kind kind)
{
	struct prop *p;
	assert_true(c->n_props < MAX_PROPS);
	p = &c->props[c->n_props++];
	p->kind = kind;
	p->state = PROP_PENDING;
	p->req.data = p;
	return p;
}

/* Proposes req (consumed) as one command on server i; a refusal by raft
 * leaves p failed. */
static void propose(struct cluster *c, unsigned i, struct prop *p, enum kv_op op, json_t *req)
{
	struct raft_buffer buf;
	void *base;
	size_t len;

	assert_int_equal(store_encode_command(op, req, i + 1, ++c->seq, &base, &len), CAP_OK);
	json_decref(req);
	buf.base = base;
	buf.len = len;
	if (raft_apply(raft_fixture_get(&c->f, i), &p->req, &buf, 1, on_applied) != 0) {
		raft_free(base);
		p->state = PROP_FAILED;
	}
}

/* A put of a fresh key under prefix ("k/" keys are never deleted, "d/" keys
 * may be) with a value no other command writes. */
static struct prop *propose_put(struct cluster *c, unsigned i, const char *prefix)
{
	size_t id = c->n_props;
	struct prop *p = new_prop(c, PROP_PUT);
	snprintf(p->key, sizeof p->key, "%s%05zu", prefix, id);
	snprintf(p->value, sizeof p->value, "value-%05zu-%08" PRIx64, id, rnd(c) & 0xffffffffu);
	propose(c, i, p, KV_PUT, json_pack("{s:o,s:o}", "key", b64_json(p->key),
					  "value", b64_json(p->value)));
	return p;
}

static struct prop *propose_delete(struct cluster *c, unsigned i, struct prop *put)
{
	struct prop *p = new_prop(c, PROP_DELETE);
	put->delete_proposed = true;
	snprintf(p->key, sizeof p->key, "%s", put->key);
	propose(c, i, p, KV_DELETE_RANGE, json_pack("{s:o}", "key", b64_json(p->key)));
	return p;
}

/* A txn whose compare holds once cmp (an acknowledged put) has applied: it
 * puts "t/<id>" on success, "f/<id>" on failure. */
static struct prop *propose_txn(struct cluster *c, unsigned i, const struct prop *cmp)
{
	size_t id = c->n_props;
	struct prop *p = new_prop(c, PROP_TXN);
	char fkey[24];
	json_t *req;
	snprintf(p->key, sizeof p->key, "t/%05zu", id);
	snprintf(fkey, sizeof fkey, "f/%05zu", id);
	snprintf(p->value, sizeof p->value, "txn-%05zu-%08" PRIx64, id, rnd(c) & 0xffffffffu);
	req = json_pack("{s:[{s:o,s:s,s:s,s:s}],s:[{s:{s:o,s:o}}],s:[{s:{s:o,s:o}}]}",
			"compare", "key", b64_json(cmp->key), "target", "VERSION",
			"result", "GREATER", "version", "0",
			"success", "request_put", "key", b64_json(p->key), "value", b64_json(p->value),
			"failure", "request_put", "key", b64_json(fkey), "value", b64_json(p->value));
	assert_non_null(req);
	propose(c, i, p, KV_TXN, req);
	return p;
}

/* The latest acknowledged put under prefix with no delete proposed, or NULL. */
static struct prop *acked_put(struct cluster *c, const char *prefix)
{
	for (size_t k = c->n_props; k-- > 0;) {
		struct prop *p = &c->props[k];
		if (p->kind == PROP_PUT && p->state == PROP_ACKED && !p->delete_proposed &&
		    strncmp(p->key, prefix, strlen(prefix)) == 0)
			return p;
	}
	return NULL;
}

/* n commands on server i: mostly puts, some txns and deletes of acknowledged
 * keys. */
static void propose_mix(struct cluster *c, unsigned i, unsigned n)
{
	for (unsigned k = 0; k < n; k++) {
		unsigned dice = rnd_below(c, 10);
		struct prop *target;
		if (dice == 0 && (target = acked_put(c, "k/")) != NULL)
			propose_txn(c, i, target);
		else if (dice == 1 && (target = acked_put(c, "d/")) != NULL)
			propose_delete(c, i, target);
		else
			propose_put(c, i, dice < 4 ? "d/" : "k/");
	}
}

/* ---- checks ---- */

static size_t count_props(struct cluster *c, enum prop_state state)
{
	size_t n = 0;
	for (size_t k = 0; k < c->n_props; k++)
		n += c->props[k].state == state;
	return n;
}

/* Whether key is live in m; if so its value goes to value. */
static bool lookup(struct mvcc *m, const char *key, char *value, size_t cap)
{
	struct mvcc_kvs kvs = {0};
	int64_t count = 0;
	bool more = false;
	bool found;
	assert_int_equal(mvcc_range(m, (const uint8_t *)key, strlen(key), NULL, 0, NULL,
				    &kvs, &count, &more), CAP_OK);
	found = kvs.n == 1;
	if (found) {
		size_t len = kvs.v[0].value_len < cap - 1 ? kvs.v[0].value_len : cap - 1;
		memcpy(value, kvs.v[0].value, len);
		value[len] = '\0';
	}
	mvcc_kvs_clear(&kvs);
	return found;
}

static void check_value(struct cluster *c, const char *key, const char *want)
{
	char got[64];
	for (unsigned i = 0; i < N_SERVERS; i++) {
		struct mvcc *m = store_mvcc(c->stores[i]);
		if (!lookup(m, key, got, sizeof got))
			fail_msg("member %u lacks %s", i, key);
		if (strcmp(got, want) != 0)
			fail_msg("member %u: %s = %s, want %s", i, key, got, want);
	}
}

static void check_absent(struct cluster *c, const char *key)
{
	char got[64];
	for (unsigned i = 0; i < N_SERVERS; i++)
		if (lookup(store_mvcc(c->stores[i]), key, got, sizeof got))
			fail_msg("member %u has %s = %s", i, key, got);
}

/* Every acknowledged command is in every store. */
static void check_acked(struct cluster *c)
{
	for (size_t k = 0; k < c->n_props; k++) {
		const struct prop *p = &c->props[k];
		if (p->state != PROP_ACKED)
			continue;
		if (p->kind == PROP_DELETE)
			check_absent(c, p->key);
		else if (p->kind == PROP_TXN || !p->delete_proposed)
			check_value(c, p->key, p->value);
	}
}

/* The stores agree: same hash, revision and applied index. Returns the
 * revision. */
static int64_t check_agree(struct cluster *c)
{
	uint32_t hash0 = 0;
	int64_t rev0 = 0;
	uint64_t applied0 = 0;
	for (unsigned i = 0; i < N_SERVERS; i++) {
		struct mvcc *m = store_mvcc(c->stores[i]);
		uint32_t hash;
		assert_int_equal(mvcc_hash(m, &hash), CAP_OK);
		if (i == 0) {
			hash0 = hash;
			rev0 = mvcc_rev(m);
			applied0 = mvcc_applied_index(m);
			continue;
		}
		if (hash != hash0 || mvcc_rev(m) != rev0 || mvcc_applied_index(m) != applied0)
			fail_msg("member %u: hash %08" PRIx32 " rev %" PRId64 " applied %" PRIu64
				 "; member 0: hash %08" PRIx32 " rev %" PRId64 " applied %" PRIu64,
				 i, hash, mvcc_rev(m), mvcc_applied_index(m), hash0, rev0, applied0);
	}
	return rev0;
}

static size_t terms_led(struct cluster *c)
{
	size_t n = 0;
	for (size_t t = 0; t < c->n_terms; t++)
		n += c->term_leader[t] != 0;
	return n;
}

static void check_one_leader_per_term(struct cluster *c)
{
	if (c->split_term != 0)
		fail_msg("two leaders in term %llu", (unsigned long long)c->split_term);
}

/* The revision an empty store reaches after every proposal applied once, when
 * every proposal was acknowledged and every txn and delete wrote. */
static int64_t rev_if_all_applied(struct cluster *c)
{
	assert_int_equal(count_props(c, PROP_ACKED), c->n_props);
	return 1 + (int64_t)c->n_props;
}

/* ---- tests ---- */

/* Entries proposed on the leader apply on every member: 200 puts, 20 txns
 * and 20 deletes leave every store with the same contents, hash and
 * revision, one revision per write. */
static void test_replicate(void **state)
{
	struct cluster *c = *state;
	struct prop *txn_cmp;

	raft_fixture_elect(&c->f, 0);
	for (int k = 0; k < 200; k++)
		propose_put(c, 0, k % 10 == 0 ? "d/" : "k/");
	settle(c);
	txn_cmp = acked_put(c, "k/");
	assert_non_null(txn_cmp);
	for (int k = 0; k < 20; k++) {
		propose_txn(c, 0, txn_cmp);
		propose_delete(c, 0, &c->props[k * 10]);
	}
	settle(c);
	assert_int_equal(check_agree(c), rev_if_all_applied(c));
	check_acked(c);
	for (int k = 0; k < 20; k++)
		check_absent(c, c->props[k * 10].key);
	check_one_leader_per_term(c);
}

/* Leader changes with partially replicated entries lose nothing that was
 * acknowledged: entries a deposed leader got to one follower only survive
 * once the next leader commits, entries that reached no follower are never
 * acknowledged and vanish, the stores agree, and no term has two leaders. */
static void test_leader_change(void **state)
{
	struct cluster *c = *state;
	struct raft *r0 = raft_fixture_get(&c->f, 0);
	struct raft *r1 = raft_fixture_get(&c->f, 1);
	size_t a0, b0, b1;
	unsigned l;

	raft_fixture_elect(&c->f, 0);
	for (int k = 0; k < 30; k++)
		propose_put(c, 0, "k/");
	settle(c);
	assert_int_equal(count_props(c, PROP_ACKED), 30);

	/* Entries reach follower 1 only, and its acks never get back: the
	 * leader cannot commit them. */
	raft_fixture_saturate(&c->f, 0, 2);
	raft_fixture_saturate(&c->f, 1, 0);
	a0 = c->n_props;
	for (int k = 0; k < 10; k++)
		propose_put(c, 0, "k/");
	raft_fixture_step_until_elapsed(&c->f, 300);
	for (size_t k = a0; k < c->n_props; k++)
		assert_int_equal(c->props[k].state, PROP_PENDING);
	assert_true(r1->last_stored >= r0->last_stored);
	assert_true(raft_fixture_get(&c->f, 2)->last_stored < r0->last_stored);

	/* The leader dies; follower 1, which holds the entries, takes over. */
	raft_fixture_kill(&c->f, 0);
	prefer(c, 1);
	wait_leader(c);
	assert_int_equal(raft_fixture_leader_index(&c->f), 1);
	for (int k = 0; k < 10; k++)
		propose_put(c, 1, "k/");
	raft_fixture_step_until_elapsed(&c->f, 500);

	/* The new leader's entries reach no one, and it dies too; the old
	 * leader comes back and follower 2 takes over. */
	raft_fixture_saturate(&c->f, 1, 0);
	raft_fixture_saturate(&c->f, 1, 2);
	b0 = c->n_props;
	for (int k = 0; k < 5; k++)
		propose_put(c, 1, "k/");
	b1 = c->n_props;
	raft_fixture_step_until_elapsed(&c->f, 100);
	raft_fixture_kill(&c->f, 1);
	raft_fixture_revive(&c->f, 0);
	prefer(c, 2);
	wait_leader(c);
	l = raft_fixture_leader_index(&c->f);
	assert_int_not_equal(l, 1);
	propose_mix(c, l, 20);
	raft_fixture_step_until_elapsed(&c->f, 500);

	settle(c);
	check_one_leader_per_term(c);
	check_agree(c);
	check_acked(c);
	/* Below an entry the new leader committed, so committed themselves,
	 * though their proposer never heard it. */
	for (size_t k = a0; k < a0 + 10; k++)
		check_value(c, c->props[k].key, c->props[k].value);
	for (size_t k = b0; k < b1; k++) {
		assert_int_equal(c->props[k].state, PROP_FAILED);
		check_absent(c, c->props[k].key);
	}
	assert_int_equal(count_props(c, PROP_PENDING), 0);
}

/* A member that restarts applies its log again from the start: the FSM skips
 * what its store already holds (mvcc_applied_index), so after a restart of a
 * follower (store reopened) and of the leader (store kept open) every
 * revision counts each write once and the stores agree. */
static void test_restart(void **state)
{
	struct cluster *c = *state;
	struct raft *r2 = raft_fixture_get(&c->f, 2);
	unsigned l;

	raft_fixture_elect(&c->f, 0);
	propose_mix(c, 0, 60);
	settle(c);
	propose_mix(c, 0, 20);
	settle(c);

	/* Follower 2 restarts and misses 40 entries while down. */
	restart(c, 2, true);
	assert_int_equal(raft_last_applied(r2), 1);
	assert_true(mvcc_applied_index(store_mvcc(c->stores[2])) > 1);
	propose_mix(c, 0, 40);
	assert_true(raft_fixture_step_until_applied(&c->f, 1,
						    raft_fixture_get(&c->f, 0)->last_stored, WAIT_MS));
	raft_fixture_revive(&c->f, 2);
	settle(c);
	assert_int_equal(check_agree(c), rev_if_all_applied(c));
	check_acked(c);

	/* The leader restarts; another leader carries on without it. */
	restart(c, 0, false);
	wait_leader(c);
	l = raft_fixture_leader_index(&c->f);
	assert_int_not_equal(l, 0);
	propose_mix(c, l, 30);
	raft_fixture_step_until_elapsed(&c->f, 500);
	raft_fixture_revive(&c->f, 0);
	settle(c);
	assert_int_equal(check_agree(c), rev_if_all_applied(c));
	check_acked(c);
	check_one_leader_per_term(c);
}

/* Under 20 rounds of random faults (saturated links, kills, restarts,
 * steered elections) interleaved with proposals, with a fixed seed: no term
 * has two leaders, and after healing the stores agree and hold every
 * acknowledged write. */
static void test_random_faults(void **state)
{
	struct cluster *c = *state;
	unsigned faults[5] = {0};

	raft_fixture_elect(&c->f, 0);
	propose_mix(c, 0, 20);
	settle(c);
	for (int round = 0; round < RANDOM_ROUNDS; round++) {
		unsigned fault = rnd_below(c, 5);
		unsigned i = rnd_below(c, N_SERVERS);
		unsigned j = (i + 1 + rnd_below(c, N_SERVERS - 1)) % N_SERVERS;
		unsigned l = leader_of(c);

		/* Half the kills and restarts hit the leader. */
		if ((fault == 1 || fault == 2) && l < N_SERVERS && rnd_below(c, 2) == 0)
			i = l;

		faults[fault]++;
		switch (fault) {
		case 0:
			raft_fixture_saturate(&c->f, i, j);
			if (rnd_below(c, 2))
				raft_fixture_saturate(&c->f, j, i);
			break;
		case 1:
			for (unsigned k = 0; k < N_SERVERS; k++)
				if (!raft_fixture_alive(&c->f, k))
					raft_fixture_revive(&c->f, k);
			raft_fixture_kill(&c->f, i);
			break;
		case 2:
			restart(c, i, rnd_below(c, 2) == 0);
			raft_fixture_revive(&c->f, i);
			break;
		case 3:
			heal(c);
			break;
		default:
			/* Cut the leader's heartbeats so that i, steered to time
			 * out first, takes over if its log allows. */
			prefer(c, i);
			if (l < N_SERVERS)
				for (unsigned k = 0; k < N_SERVERS; k++)
					if (k != l)
						raft_fixture_saturate(&c->f, l, k);
			break;
		}
		l = leader_of(c);
		if (l < N_SERVERS)
			propose_mix(c, l, 5 + rnd_below(c, 11));
		raft_fixture_step_until_elapsed(&c->f, 50 + rnd_below(c, 2000));
		check_one_leader_per_term(c);
	}
	settle(c);
	check_one_leader_per_term(c);
	check_agree(c);
	check_acked(c);
	assert_int_equal(count_props(c, PROP_PENDING), 0);
	if (getenv("FIXTURE_VERBOSE") != NULL)
		fprintf(stderr, "faults %u/%u/%u/%u/%u, %zu proposed, %zu acked, %zu terms led,"
			" term %llu, revision %" PRId64 "\n",
			faults[0], faults[1], faults[2], faults[3], faults[4], c->n_props,
			count_props(c, PROP_ACKED), terms_led(c),
			(unsigned long long)raft_fixture_get(&c->f, 0)->current_term,
			mvcc_rev(store_mvcc(c->stores[0])));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_replicate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leader_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_faults, setup, teardown),
	};
	log_set_level(LOG_LEVEL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
