/* test_mvcc.c — unit tests of the sqlite-backed MVCC key space (store/mvcc.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lz4.h>

#include "client/pod_json.h"
#include "lib/err.h"
#include "store/mvcc.h"
#include "store/wal_ckpt.h"

struct fx {
	char dir[64];
	char path[128];
	struct mvcc *m;
};

static void remove_db_files(const char *path)
{
	static const char *const sfx[] = {"", "-wal", "-shm", ".restore", "-journal"};
	char p[256];
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
		unlink(p);
	}
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char errmsg[CAP_ERRMSG_SIZE];
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_mvcc.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/db", f->dir);
	if (mvcc_open(f->path, &f->m, errmsg) != CAP_OK) {
		fprintf(stderr, "open: %s\n", errmsg);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[256];
	mvcc_close(f->m);
	remove_db_files(f->path);
	snprintf(p, sizeof(p), "%s/db2", f->dir);
	remove_db_files(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

#define S(x) (const uint8_t *)(x), strlen(x)

/* One put in its own batch; returns the revision it wrote at. */
static int64_t put(struct mvcc *m, const char *key, const char *value)
{
	assert_int_equal(mvcc_begin(m), CAP_OK);
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_put(m, S(key), S(value), 0, NULL, NULL), CAP_OK);
	int64_t rev = mvcc_txn_end(m);
	assert_int_equal(mvcc_commit(m, mvcc_applied_index(m) + 1), CAP_OK);
	return rev;
}

/* One delete_range in its own batch; returns how many keys it deleted. */
static int64_t del(struct mvcc *m, const char *key, const uint8_t *end, size_t end_len)
{
	int64_t n = -1;
	assert_int_equal(mvcc_begin(m), CAP_OK);
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_delete_range(m, S(key), end, end_len, NULL, &n), CAP_OK);
	mvcc_txn_end(m);
	assert_int_equal(mvcc_commit(m, mvcc_applied_index(m) + 1), CAP_OK);
	return n;
}

/* Reads one key at rev (0 = current) into kv; returns the count. */
static int64_t get(struct mvcc *m, const char *key, int64_t rev, struct mvcc_kv *kv)
{
	struct mvcc_range_opts o = {.rev = rev};
	struct mvcc_kvs kvs = {0};
	int64_t count = -1;
	bool more = true;
	assert_int_equal(mvcc_range(m, S(key), NULL, 0, &o, &kvs, &count, &more), CAP_OK);
	assert_false(more);
	assert_int_equal((size_t)count, kvs.n);
	memset(kv, 0, sizeof(*kv));
	if (kvs.n == 1) {
		*kv = kvs.v[0];
		kvs.v[0].key = NULL;
		kvs.v[0].value = NULL;
	}
	mvcc_kvs_clear(&kvs);
	return count;
}

static void assert_kv(const struct mvcc_kv *kv, const char *key, const char *value,
		      int64_t create, int64_t mod, int64_t version)
{
	assert_int_equal(kv->key_len, strlen(key));
	assert_memory_equal(kv->key, key, kv->key_len);
	if (value) {
		assert_int_equal(kv->value_len, strlen(value));
		if (kv->value_len)
			assert_memory_equal(kv->value, value, kv->value_len);
	}
	assert_int_equal(kv->create_rev, create);
	assert_int_equal(kv->mod_rev, mod);
	assert_int_equal(kv->version, version);
}

/* The range's keys joined by commas, for compact order checks. */
static void keys_of(const struct mvcc_kvs *kvs, char *buf, size_t size)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < kvs->n; i++)
		off += (size_t)snprintf(buf + off, size - off, "%s%.*s", i ? "," : "",
					(int)kvs->v[i].key_len, (const char *)kvs->v[i].key);
}

static void range_keys(struct mvcc *m, const char *key, const uint8_t *end, size_t end_len,
		       const struct mvcc_range_opts *o, char *buf, size_t size,
		       int64_t *count, bool *more)
{
	struct mvcc_kvs kvs = {0};
	assert_int_equal(mvcc_range(m, S(key), end, end_len, o, &kvs, count, more), CAP_OK);
	keys_of(&kvs, buf, size);
	mvcc_kvs_clear(&kvs);
}

static const uint8_t zero[1] = {0};

/* An empty store is at revision 1; put/put/delete/put give etcd's revisions
 * and versions, and a re-created key starts over at version 1. */
static void test_put_revisions_versions(void **state)
{
	struct fx *f = *state;
	struct mvcc *m = f->m;
	struct mvcc_kv kv, prev, cur;
	assert_int_equal(mvcc_rev(m), 1);
	assert_int_equal(put(m, "foo", "bar"), 2);

	assert_int_equal(mvcc_begin(m), CAP_OK);
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_put(m, S("foo"), S("bar2"), 0, &prev, &cur), CAP_OK);
	assert_int_equal(mvcc_txn_end(m), 3);
	assert_int_equal(mvcc_commit(m, 2), CAP_OK);
	assert_kv(&prev, "foo", "bar", 2, 2, 1);
	assert_int_equal(cur.create_rev, 2);
	assert_int_equal(cur.mod_rev, 3);
	assert_int_equal(cur.version, 2);
	assert_null(cur.key);
	mvcc_kv_clear(&prev);

	assert_int_equal(get(m, "foo", 0, &kv), 1);
	assert_kv(&kv, "foo", "bar2", 2, 3, 2);
	mvcc_kv_clear(&kv);

	assert_int_equal(del(m, "foo", NULL, 0), 1);
	assert_int_equal(mvcc_rev(m), 4);
	assert_int_equal(get(m, "foo", 0, &kv), 0);

	assert_int_equal(mvcc_begin(m), CAP_OK);
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_put(m, S("foo"), S("again"), 0, &prev, &cur), CAP_OK);
	assert_int_equal(mvcc_txn_end(m), 5);
	assert_int_equal(mvcc_commit(m, 5), CAP_OK);
	/* The key did not exist just before. */
	assert_int_equal(prev.mod_rev, 0);
	assert_null(prev.key);
	assert_int_equal(cur.create_rev, 5);
	assert_int_equal(cur.version, 1);

	assert_int_equal(get(m, "foo", 0, &kv), 1);
	assert_kv(&kv, "foo", "again", 5, 5, 1);
	mvcc_kv_clear(&kv);
}

/* A delete that matches no key does not move the revision. */
static void test_delete_nothing_keeps_revision(void **state)
{
	struct fx *f = *state;
	put(f->m, "a", "1");
	assert_int_equal(del(f->m, "zzz", NULL, 0), 0);
	assert_int_equal(del(f->m, "b", S("c")), 0);
	assert_int_equal(mvcc_rev(f->m), 2);
	assert_int_equal(del(f->m, "a", NULL, 0), 1);
	assert_int_equal(mvcc_rev(f->m), 3);
}

/* Reads at a past revision see the key space as it was, including before a
 * delete, and a deleted key stays gone at later revisions. */
static void test_past_revisions(void **state)
{
	struct fx *f = *state;
	struct mvcc_kv kv;
	put(f->m, "k", "v1");    /* 2 */
	put(f->m, "k", "v2");    /* 3 */
	put(f->m, "other", "o"); /* 4 */
	del(f->m, "k", NULL, 0); /* 5 */
	put(f->m, "k", "v3");    /* 6 */

	assert_int_equal(get(f->m, "k", 1, &kv), 0);
	assert_int_equal(get(f->m, "k", 2, &kv), 1);
	assert_kv(&kv, "k", "v1", 2, 2, 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(f->m, "k", 4, &kv), 1);
	assert_kv(&kv, "k", "v2", 2, 3, 2);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(f->m, "k", 5, &kv), 0);
	assert_int_equal(get(f->m, "k", 6, &kv), 1);
	assert_kv(&kv, "k", "v3", 6, 6, 1);
	mvcc_kv_clear(&kv);

	/* A range at a past revision counts only keys live then. */
	char buf[128];
	int64_t count;
	bool more;
	struct mvcc_range_opts o = {.rev = 5};
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "other");
	assert_int_equal(count, 1);
	o.rev = 3;
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "k");
}

/* Deletes leave tombstones in history: watch events show the DELETE with the
 * deleted version as prev. */
static void test_deletes_kept_in_history(void **state)
{
	struct fx *f = *state;
	struct mvcc_events evs = {0};
	int64_t next;
	put(f->m, "k", "v");     /* 2 */
	del(f->m, "k", NULL, 0); /* 3 */
	assert_int_equal(mvcc_events(f->m, 1, 0, S("k"), NULL, 0, true, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 2);
	assert_int_equal(evs.v[0].type, MVCC_EVENT_PUT);
	assert_kv(&evs.v[0].kv, "k", "v", 2, 2, 1);
	assert_int_equal(evs.v[0].prev.mod_rev, 0);
	assert_int_equal(evs.v[1].type, MVCC_EVENT_DELETE);
	assert_int_equal(evs.v[1].kv.mod_rev, 3);
	assert_int_equal(evs.v[1].kv.version, 0);
	assert_memory_equal(evs.v[1].kv.key, "k", 1);
	assert_kv(&evs.v[1].prev, "k", "v", 2, 2, 1);
	assert_int_equal(next, 4);
	mvcc_events_clear(&evs);
}

static void put_abc(struct mvcc *m)
{
	put(m, "foo", "1");
	put(m, "foo1", "2");
	put(m, "foo2", "3");
	put(m, "fop", "4");
	put(m, "goo", "5");
}

/* Range ends: a single key, [key, end) for a prefix, key to the end of the
 * key space with "\0", and all keys with "\0"/"\0". */
static void test_range_end_semantics(void **state)
{
	struct fx *f = *state;
	char buf[128];
	int64_t count;
	bool more;
	struct mvcc_range_opts o = {0};
	put_abc(f->m);

	range_keys(f->m, "foo", NULL, 0, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "foo");
	assert_int_equal(count, 1);
	range_keys(f->m, "foo", S("fop"), &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "foo,foo1,foo2");
	assert_int_equal(count, 3);
	range_keys(f->m, "foo1", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "foo1,foo2,fop,goo");
	assert_int_equal(count, 4);
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "foo,foo1,foo2,fop,goo");
	assert_int_equal(count, 5);
	range_keys(f->m, "nokey", NULL, 0, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "");
	assert_int_equal(count, 0);
	/* An end before the key selects nothing. */
	range_keys(f->m, "goo", S("foo"), &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "");
}

/* limit cuts the answer and sets more; count is the total before the limit. */
static void test_limit_more_count(void **state)
{
	struct fx *f = *state;
	char buf[128];
	int64_t count;
	bool more;
	struct mvcc_range_opts o = {.limit = 2};
	put_abc(f->m);

	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "foo,foo1");
	assert_true(more);
	assert_int_equal(count, 5);
	o.limit = 5;
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_false(more);
	assert_int_equal(count, 5);
	o.limit = 2;
	o.sort_order = MVCC_SORT_DESCEND;
	range_keys(f->m, "foo", S("fop"), &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "foo2,foo1");
	assert_true(more);
	assert_int_equal(count, 3);
	/* The same at a past revision, read from history. */
	o.rev = 4;
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "foo2,foo1");
	assert_true(more);
	assert_int_equal(count, 3);
}

/* A range delete removes every live key in [key, end) in one revision, hands
 * back the deleted versions in key order, and an empty value is a value,
 * not a tombstone. */
static void test_delete_range_prevs(void **state)
{
	struct fx *f = *state;
	struct mvcc *m = f->m;
	struct mvcc_kvs prevs = {0};
	struct mvcc_events evs = {0};
	struct mvcc_kv kv;
	int64_t n, next;
	put_abc(m);          /* 2..6 */
	put(m, "foo1", "");  /* 7: empty value */
	assert_int_equal(get(m, "foo1", 0, &kv), 1);
	assert_int_equal(kv.value_len, 0);
	assert_int_equal(kv.version, 2);
	mvcc_kv_clear(&kv);

	assert_int_equal(mvcc_begin(m), CAP_OK);
	assert_int_equal(mvcc_delete_range(m, S("foo"), S("fop"), &prevs, &n), CAP_OK);
	assert_int_equal(mvcc_commit(m, 1), CAP_OK);
	assert_int_equal(n, 3);
	assert_int_equal(mvcc_rev(m), 8);
	assert_int_equal(prevs.n, 3);
	assert_kv(&prevs.v[0], "foo", "1", 2, 2, 1);
	assert_kv(&prevs.v[1], "foo1", "", 3, 7, 2);
	assert_kv(&prevs.v[2], "foo2", "3", 4, 4, 1);
	mvcc_kvs_clear(&prevs);

	assert_int_equal(mvcc_events(m, 7, 0, S("\0"), zero, 1, true, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 4);
	assert_int_equal(evs.v[0].type, MVCC_EVENT_PUT);
	assert_int_equal(evs.v[0].kv.value_len, 0);
	for (size_t i = 1; i < 4; i++) {
		assert_int_equal(evs.v[i].type, MVCC_EVENT_DELETE);
		assert_int_equal(evs.v[i].kv.mod_rev, 8);
		assert_int_not_equal(evs.v[i].prev.mod_rev, 0);
	}
	assert_memory_equal(evs.v[1].kv.key, "foo", 3);
	assert_memory_equal(evs.v[3].kv.key, "foo2", 4);
	mvcc_events_clear(&evs);

	char buf[128];
	int64_t count;
	bool more;
	struct mvcc_range_opts o = {0};
	range_keys(m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "fop,goo");
	/* Deleting everything from a key onwards. */
	assert_int_equal(del(m, "a", zero, 1), 2);
	range_keys(m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "");
	assert_int_equal(mvcc_rev(m), 9);
}

/* Every sort target in both orders, NONE with a non-key target meaning
 * ascending, ties broken by key, in the live index and in history. */
static void test_sorting(void **state)
{
	struct fx *f = *state;
	char buf[128];
	int64_t count;
	bool more;
	/* create: c=2 a=3 b=4; versions: a=3 b=1 c=2; mod: b=4 c=5 a=7;
	 * values: a="m" b="z" c="a". */
	put(f->m, "c", "x");  /* 2 */
	put(f->m, "a", "x");  /* 3 */
	put(f->m, "b", "z");  /* 4 */
	put(f->m, "c", "a");  /* 5 */
	put(f->m, "a", "y");  /* 6 */
	put(f->m, "a", "m");  /* 7 */

	static const struct {
		enum mvcc_sort_order order;
		enum mvcc_sort_target target;
		const char *want;
	} cases[] = {
		{MVCC_SORT_NONE, MVCC_SORT_KEY, "a,b,c"},
		{MVCC_SORT_ASCEND, MVCC_SORT_KEY, "a,b,c"},
		{MVCC_SORT_DESCEND, MVCC_SORT_KEY, "c,b,a"},
		{MVCC_SORT_NONE, MVCC_SORT_VERSION, "b,c,a"},
		{MVCC_SORT_ASCEND, MVCC_SORT_VERSION, "b,c,a"},
		{MVCC_SORT_DESCEND, MVCC_SORT_VERSION, "a,c,b"},
		{MVCC_SORT_ASCEND, MVCC_SORT_CREATE, "c,a,b"},
		{MVCC_SORT_DESCEND, MVCC_SORT_CREATE, "b,a,c"},
		{MVCC_SORT_NONE, MVCC_SORT_MOD, "b,c,a"},
		{MVCC_SORT_DESCEND, MVCC_SORT_MOD, "a,c,b"},
		{MVCC_SORT_ASCEND, MVCC_SORT_VALUE, "c,a,b"},
		{MVCC_SORT_DESCEND, MVCC_SORT_VALUE, "b,a,c"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mvcc_range_opts o = {.sort_order = cases[i].order,
					    .sort_target = cases[i].target};
		range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
		assert_string_equal(buf, cases[i].want);
		/* A limit applies after sorting. */
		o.limit = 1;
		range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
		assert_int_equal(strlen(buf), 1);
		assert_int_equal(buf[0], cases[i].want[0]);
		assert_true(more);
		assert_int_equal(count, 3);
	}

	/* Sorting by value still works when values are left out. */
	struct mvcc_kvs kvs = {0};
	struct mvcc_range_opts ko = {.sort_order = MVCC_SORT_ASCEND,
				     .sort_target = MVCC_SORT_VALUE, .keys_only = true};
	assert_int_equal(mvcc_range(f->m, S("\0"), zero, 1, &ko, &kvs, &count, &more), CAP_OK);
	keys_of(&kvs, buf, sizeof(buf));
	assert_string_equal(buf, "c,a,b");
	for (size_t i = 0; i < kvs.n; i++)
		assert_null(kvs.v[i].value);
	mvcc_kvs_clear(&kvs);

	/* Ties: at revision 4 every version is 1, so key order decides. */
	struct mvcc_range_opts o = {.rev = 4, .sort_order = MVCC_SORT_DESCEND,
				    .sort_target = MVCC_SORT_VERSION};
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "a,b,c");
	o.sort_target = MVCC_SORT_MOD;
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "b,a,c");
}

/* keys_only leaves values out; count_only returns no kvs, only the count. */
static void test_keys_only_count_only(void **state)
{
	struct fx *f = *state;
	struct mvcc_kvs kvs = {0};
	int64_t count;
	bool more;
	put_abc(f->m);

	struct mvcc_range_opts o = {.keys_only = true};
	assert_int_equal(mvcc_range(f->m, S("foo"), S("fop"), &o, &kvs, &count, &more), CAP_OK);
	assert_int_equal(kvs.n, 3);
	for (size_t i = 0; i < kvs.n; i++) {
		assert_null(kvs.v[i].value);
		assert_int_equal(kvs.v[i].value_len, 0);
		assert_int_equal(kvs.v[i].version, 1);
	}
	assert_kv(&kvs.v[1], "foo1", NULL, 3, 3, 1);
	mvcc_kvs_clear(&kvs);

	o = (struct mvcc_range_opts){.keys_only = true, .rev = 3};
	assert_int_equal(mvcc_range(f->m, S("foo"), S("fop"), &o, &kvs, &count, &more), CAP_OK);
	assert_int_equal(kvs.n, 2);
	assert_null(kvs.v[0].value);
	mvcc_kvs_clear(&kvs);

	o = (struct mvcc_range_opts){.count_only = true};
	assert_int_equal(mvcc_range(f->m, S("foo"), S("fop"), &o, &kvs, &count, &more), CAP_OK);
	assert_int_equal(kvs.n, 0);
	assert_int_equal(count, 3);
	o.rev = 2;
	assert_int_equal(mvcc_range(f->m, S("foo"), S("fop"), &o, &kvs, &count, &more), CAP_OK);
	assert_int_equal(count, 1);
	mvcc_kvs_clear(&kvs);
}

/* min/max mod and create revision filters drop kvs but not the count. */
static void test_min_max_filters(void **state)
{
	struct fx *f = *state;
	char buf[128];
	int64_t count;
	bool more;
	put(f->m, "a", "1"); /* 2 */
	put(f->m, "b", "1"); /* 3 */
	put(f->m, "c", "1"); /* 4 */
	put(f->m, "a", "2"); /* 5: a create 2 mod 5 */

	struct mvcc_range_opts o = {.min_mod_rev = 4};
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "a,c");
	assert_int_equal(count, 3);
	o = (struct mvcc_range_opts){.max_mod_rev = 4};
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "b,c");
	o = (struct mvcc_range_opts){.min_create_rev = 3};
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "b,c");
	o = (struct mvcc_range_opts){.max_create_rev = 3};
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "a,b");
	assert_int_equal(count, 3);
	/* With a limit, more reflects what the filters left. */
	o = (struct mvcc_range_opts){.min_mod_rev = 4, .limit = 1};
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "a");
	assert_true(more);
	o.limit = 2;
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_false(more);
	assert_int_equal(count, 3);
	/* Filters at a past revision see that revision's versions. */
	o = (struct mvcc_range_opts){.rev = 4, .max_create_rev = 2};
	range_keys(f->m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "a");
}

/* Compaction drops old revisions (reads there fail with ECOMPACTED), keeps
 * the latest versions, drops tombstones, and refuses future revisions. */
static void test_compaction(void **state)
{
	struct fx *f = *state;
	struct mvcc *m = f->m;
	struct mvcc_kv kv;
	struct mvcc_kvs kvs = {0};
	struct mvcc_events evs = {0};
	int64_t count, next;
	bool more;
	put(m, "a", "1");     /* 2 */
	put(m, "a", "2");     /* 3 */
	put(m, "b", "1");     /* 4 */
	del(m, "b", NULL, 0); /* 5 */
	put(m, "c", "1");     /* 6 */
	put(m, "a", "3");     /* 7 */

	assert_int_equal(mvcc_begin(m), CAP_OK);
	assert_int_equal(mvcc_compact(m, 100), CAP_EFUTUREREV);
	assert_int_equal(mvcc_compact(m, 6), CAP_OK);
	assert_int_equal(mvcc_commit(m, 1), CAP_OK);
	assert_int_equal(mvcc_compact_rev(m), 6);
	/* Compaction writes no revision. */
	assert_int_equal(mvcc_rev(m), 7);

	struct mvcc_range_opts o = {.rev = 5};
	assert_int_equal(mvcc_range(m, S("a"), NULL, 0, &o, &kvs, &count, &more), CAP_ECOMPACTED);
	assert_int_equal(kvs.n, 0);
	o.rev = 100;
	assert_int_equal(mvcc_range(m, S("a"), NULL, 0, &o, &kvs, &count, &more), CAP_EFUTUREREV);

	/* At the compact revision itself the key space is intact. */
	assert_int_equal(get(m, "a", 6, &kv), 1);
	assert_kv(&kv, "a", "2", 2, 3, 2);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(m, "b", 6, &kv), 0);
	assert_int_equal(get(m, "a", 0, &kv), 1);
	assert_kv(&kv, "a", "3", 2, 7, 3);
	mvcc_kv_clear(&kv);

	/* History below the compaction is gone: only a's rev 3 (latest at 6),
	 * c's rev 6 and a's rev 7 remain; b's put and tombstone are dropped. */
	assert_int_equal(mvcc_events(m, 5, 0, S("\0"), zero, 1, false, 0, &evs, &next),
			 CAP_ECOMPACTED);
	/* As in etcd, a watch may start at the compact revision itself: the
	 * put made there is still in history. */
	assert_int_equal(mvcc_events(m, 6, 6, S("\0"), zero, 1, false, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 1);
	assert_kv(&evs.v[0].kv, "c", "1", 6, 6, 1);
	mvcc_events_clear(&evs);
	assert_int_equal(mvcc_events(m, 7, 0, S("\0"), zero, 1, true, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 1);
	assert_kv(&evs.v[0].prev, "a", "2", 2, 3, 2);
	mvcc_events_clear(&evs);

	assert_int_equal(mvcc_begin(m), CAP_OK);
	assert_int_equal(mvcc_compact(m, 6), CAP_ECOMPACTED);
	assert_int_equal(mvcc_compact(m, 5), CAP_ECOMPACTED);
	assert_int_equal(mvcc_compact(m, 7), CAP_OK);
	assert_int_equal(mvcc_commit(m, 2), CAP_OK);
	assert_int_equal(get(m, "a", 7, &kv), 1);
	assert_kv(&kv, "a", "3", 2, 7, 3);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(m, "c", 0, &kv), 1);
	mvcc_kv_clear(&kv);

	/* The compact revision survives a reopen. */
	char errmsg[CAP_ERRMSG_SIZE];
	mvcc_close(m);
	assert_int_equal(mvcc_open(f->path, &f->m, errmsg), CAP_OK);
	assert_int_equal(mvcc_compact_rev(f->m), 7);
}

/* Writes between txn_begin/txn_end share one revision with increasing
 * sub-revisions, reads inside see them, and a txn without writes keeps the
 * revision. */
static void test_txn_grouping(void **state)
{
	struct fx *f = *state;
	struct mvcc *m = f->m;
	struct mvcc_kv kv, cur;
	struct mvcc_events evs = {0};
	int64_t next, n;
	put(m, "z", "0"); /* 2 */

	assert_int_equal(mvcc_begin(m), CAP_OK);
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_txn_rev(m), 3);
	assert_int_equal(mvcc_put(m, S("b"), S("1"), 0, NULL, &cur), CAP_OK);
	assert_int_equal(cur.mod_rev, 3);
	assert_int_equal(mvcc_put(m, S("a"), S("2"), 0, NULL, &cur), CAP_OK);
	assert_int_equal(cur.mod_rev, 3);
	assert_int_equal(mvcc_delete_range(m, S("z"), NULL, 0, NULL, &n), CAP_OK);
	assert_int_equal(n, 1);
	/* Read-your-writes inside the txn. */
	assert_int_equal(get(m, "a", 0, &kv), 1);
	assert_kv(&kv, "a", "2", 3, 3, 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(m, "z", 0, &kv), 0);
	/* The current revision still shows the state before the txn. */
	assert_int_equal(get(m, "z", 2, &kv), 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(m, "a", 2, &kv), 0);
	assert_int_equal(mvcc_txn_end(m), 3);

	mvcc_txn_begin(m);
	assert_int_equal(get(m, "a", 0, &kv), 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(mvcc_txn_end(m), 3);
	assert_int_equal(mvcc_commit(m, 9), CAP_OK);
	assert_int_equal(mvcc_rev(m), 3);

	/* Events come in write order within the revision. */
	assert_int_equal(mvcc_events(m, 3, 3, S("\0"), zero, 1, false, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 3);
	assert_memory_equal(evs.v[0].kv.key, "b", 1);
	assert_memory_equal(evs.v[1].kv.key, "a", 1);
	assert_memory_equal(evs.v[2].kv.key, "z", 1);
	assert_int_equal(evs.v[2].type, MVCC_EVENT_DELETE);
	for (size_t i = 0; i < evs.n; i++)
		assert_int_equal(evs.v[i].kv.mod_rev, 3);
	assert_int_equal(next, 4);
	mvcc_events_clear(&evs);
}

/* Events come in revision order with prev kvs when asked, filtered by key
 * range, and a max never splits one revision's events. */
static void test_events_order_and_batches(void **state)
{
	struct fx *f = *state;
	struct mvcc *m = f->m;
	struct mvcc_events evs = {0};
	int64_t next;
	put(m, "k1", "a"); /* 2 */
	assert_int_equal(mvcc_begin(m), CAP_OK);
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_put(m, S("k1"), S("b"), 0, NULL, NULL), CAP_OK);
	assert_int_equal(mvcc_put(m, S("k2"), S("c"), 0, NULL, NULL), CAP_OK);
	assert_int_equal(mvcc_put(m, S("x"), S("d"), 0, NULL, NULL), CAP_OK);
	assert_int_equal(mvcc_txn_end(m), 3);
	assert_int_equal(mvcc_commit(m, 1), CAP_OK);
	put(m, "k2", "e"); /* 4 */

	/* max 2 stops after revision 3 as a whole (3 events), not inside it. */
	assert_int_equal(mvcc_events(m, 2, 0, S("\0"), zero, 1, true, 2, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 4);
	assert_int_equal(next, 4);
	assert_int_equal(evs.v[0].kv.mod_rev, 2);
	assert_int_equal(evs.v[1].kv.mod_rev, 3);
	assert_kv(&evs.v[1].kv, "k1", "b", 2, 3, 2);
	assert_kv(&evs.v[1].prev, "k1", "a", 2, 2, 1);
	assert_int_equal(evs.v[2].prev.mod_rev, 0);
	assert_int_equal(evs.v[3].kv.mod_rev, 3);
	mvcc_events_clear(&evs);

	assert_int_equal(mvcc_events(m, next, 0, S("\0"), zero, 1, true, 2, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 1);
	assert_kv(&evs.v[0].prev, "k2", "c", 3, 3, 1);
	assert_int_equal(next, 5);
	mvcc_events_clear(&evs);

	/* Key range filter: only k-prefixed keys. */
	assert_int_equal(mvcc_events(m, 1, 0, S("k"), S("l"), false, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 4);
	for (size_t i = 0; i < evs.n; i++)
		assert_int_equal(evs.v[i].kv.key[0], 'k');
	assert_null(evs.v[1].prev.key);
	mvcc_events_clear(&evs);

	/* Bounded above by to_rev. */
	assert_int_equal(mvcc_events(m, 1, 2, S("k1"), NULL, 0, false, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 1);
	assert_int_equal(next, 3);
	mvcc_events_clear(&evs);
}

/* Leases: grant, attach through put, list keys, revoke deletes every
 * attached key in one revision; unknown leases are refused. */
static void test_leases(void **state)
{
	struct fx *f = *state;
	struct mvcc *m = f->m;
	struct mvcc_kvs kvs = {0};
	struct mvcc_kv kv;
	int64_t ttl = 0, *ids, *ttls;
	size_t n;

	assert_int_equal(mvcc_begin(m), CAP_OK);
	assert_int_equal(mvcc_lease_grant(m, 777, 60), CAP_OK);
	assert_int_equal(mvcc_lease_grant(m, 777, 10), CAP_ELEASEEXISTS);
	assert_int_equal(mvcc_lease_grant(m, 5, 10), CAP_OK);
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_put(m, S("l2"), S("a"), 777, NULL, NULL), CAP_OK);
	assert_int_equal(mvcc_put(m, S("l1"), S("b"), 777, NULL, NULL), CAP_OK);
	assert_int_equal(mvcc_put(m, S("keep"), S("c"), 0, NULL, NULL), CAP_OK);
	assert_int_equal(mvcc_put(m, S("bad"), S("c"), 999, NULL, NULL), CAP_ELEASENOTFOUND);
	assert_int_equal(mvcc_txn_end(m), 2);
	assert_int_equal(mvcc_commit(m, 1), CAP_OK);
	/* A grant writes no revision. */
	assert_int_equal(mvcc_rev(m), 2);

	assert_int_equal(mvcc_lease_get(m, 777, &ttl), CAP_OK);
	assert_int_equal(ttl, 60);
	assert_int_equal(mvcc_lease_get(m, 1, &ttl), CAP_ELEASENOTFOUND);
	assert_int_equal(mvcc_lease_list(m, &ids, &ttls, &n), CAP_OK);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 5);
	assert_int_equal(ttls[0], 10);
	assert_int_equal(ids[1], 777);
	free(ids);
	free(ttls);

	assert_int_equal(mvcc_lease_keys(m, 777, &kvs), CAP_OK);
	assert_int_equal(kvs.n, 2);
	assert_memory_equal(kvs.v[0].key, "l1", 2);
	assert_memory_equal(kvs.v[1].key, "l2", 2);
	mvcc_kvs_clear(&kvs);
	assert_int_equal(get(m, "l1", 0, &kv), 1);
	assert_int_equal(kv.lease, 777);
	mvcc_kv_clear(&kv);

	/* A put without the lease detaches the key. */
	put(m, "l2", "a2"); /* 3 */
	assert_int_equal(mvcc_lease_keys(m, 777, &kvs), CAP_OK);
	assert_int_equal(kvs.n, 1);
	mvcc_kvs_clear(&kvs);
	assert_int_equal(mvcc_begin(m), CAP_OK);
	assert_int_equal(mvcc_put(m, S("l2"), S("a3"), 777, NULL, NULL), CAP_OK); /* 4 */
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_lease_revoke(m, 777, &kvs), CAP_OK);
	assert_int_equal(mvcc_txn_end(m), 5);
	assert_int_equal(mvcc_lease_revoke(m, 777, NULL), CAP_ELEASENOTFOUND);
	/* Revoking a lease without keys writes nothing. */
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_lease_revoke(m, 5, NULL), CAP_OK);
	assert_int_equal(mvcc_txn_end(m), 5);
	assert_int_equal(mvcc_commit(m, 2), CAP_OK);

	assert_int_equal(kvs.n, 2);
	assert_kv(&kvs.v[0], "l1", "b", 2, 2, 1);
	assert_kv(&kvs.v[1], "l2", "a3", 2, 4, 3);
	mvcc_kvs_clear(&kvs);
	assert_int_equal(get(m, "l1", 0, &kv), 0);
	assert_int_equal(get(m, "l2", 0, &kv), 0);
	assert_int_equal(get(m, "keep", 0, &kv), 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(mvcc_lease_get(m, 777, &ttl), CAP_ELEASENOTFOUND);

	struct mvcc_events evs = {0};
	int64_t next;
	assert_int_equal(mvcc_events(m, 5, 5, S("\0"), zero, 1, false, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 2);
	assert_int_equal(evs.v[0].type, MVCC_EVENT_DELETE);
	assert_int_equal(evs.v[1].type, MVCC_EVENT_DELETE);
	mvcc_events_clear(&evs);
}

/* Free-form metadata is stored and read back, also after reopening. */
static void test_meta(void **state)
{
	struct fx *f = *state;
	char *v = NULL, errmsg[CAP_ERRMSG_SIZE];
	assert_int_equal(mvcc_meta_get(f->m, "cluster_id", &v), CAP_OK);
	assert_null(v);
	assert_int_equal(mvcc_meta_set(f->m, "cluster_id", "x"), CAP_EINVAL);
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	assert_int_equal(mvcc_meta_set(f->m, "cluster_id", "12345"), CAP_OK);
	assert_int_equal(mvcc_commit(f->m, 1), CAP_OK);
	mvcc_close(f->m);
	assert_int_equal(mvcc_open(f->path, &f->m, errmsg), CAP_OK);
	assert_int_equal(mvcc_meta_get(f->m, "cluster_id", &v), CAP_OK);
	assert_string_equal(v, "12345");
	free(v);
	/* Internal entries do not leak into the free-form ones. */
	assert_int_equal(mvcc_meta_get(f->m, "revision", &v), CAP_OK);
	assert_null(v);
}

/* The applied index and revision are committed with the data and survive a
 * close and reopen. */
static void test_applied_index_persisted(void **state)
{
	struct fx *f = *state;
	char errmsg[CAP_ERRMSG_SIZE];
	struct mvcc_kv kv;
	assert_int_equal(mvcc_applied_index(f->m), 0);
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	assert_int_equal(mvcc_put(f->m, S("k"), S("v"), 0, NULL, NULL), CAP_OK);
	assert_int_equal(mvcc_commit(f->m, 42), CAP_OK);
	assert_int_equal(mvcc_applied_index(f->m), 42);
	mvcc_close(f->m);
	assert_int_equal(mvcc_open(f->path, &f->m, errmsg), CAP_OK);
	assert_int_equal(mvcc_applied_index(f->m), 42);
	assert_int_equal(mvcc_rev(f->m), 2);
	assert_int_equal(get(f->m, "k", 0, &kv), 1);
	assert_kv(&kv, "k", "v", 2, 2, 1);
	mvcc_kv_clear(&kv);
}

/* With checkpoints left to another thread, commits leave the WAL growing;
 * a checkpoint on another thread's connection copies frames while the owner
 * keeps writing (a PASSIVE pass stops at frames a reader of the owner may
 * still need, so how many depends on timing), a pass with the owner idle
 * copies every frame, a sync makes the rest durable, and the data reads
 * back after a reopen. */
static void *bg_pass(void *arg)
{
	static int log_frames, done;
	static char errmsg[CAP_ERRMSG_SIZE];
	struct mvcc *m = arg;
	if (mvcc_checkpoint_bg(m, &log_frames, &done, errmsg) != CAP_OK || done <= 0 ||
	    done > log_frames)
		return NULL;
	return m;
}

static void test_background_checkpoint(void **state)
{
	struct fx *f = *state;
	char errmsg[CAP_ERRMSG_SIZE];
	char key[32];
	struct mvcc_kv kv;
	pthread_t th;
	void *ok;

	mvcc_set_bg_checkpoints(f->m);
	for (int i = 0; i < 1500; i++) {
		snprintf(key, sizeof key, "k%04d", i);
		put(f->m, key, "value");
	}
	/* sqlite alone would have checkpointed (and restarted the WAL) at 1,000. */
	assert_true(mvcc_wal_frames(f->m) >= 1500);
	assert_int_equal(pthread_create(&th, NULL, bg_pass, f->m), 0);
	for (int i = 1500; i < 1600; i++) {
		snprintf(key, sizeof key, "k%04d", i);
		put(f->m, key, "value");
	}
	assert_int_equal(pthread_join(th, &ok), 0);
	assert_ptr_equal(ok, f->m);
	/* With the owner idle, a pass copies every frame. */
	{
		int log_frames, done;
		assert_int_equal(mvcc_checkpoint_bg(f->m, &log_frames, &done, errmsg), CAP_OK);
		assert_true(log_frames > 0);
		assert_int_equal(done, log_frames);
	}
	assert_int_equal(mvcc_sync(f->m), CAP_OK);
	put(f->m, "after", "sync");
	/* The WAL started over once every frame was in the file. */
	assert_true(mvcc_wal_frames(f->m) < 100);
	mvcc_close(f->m);
	assert_int_equal(mvcc_open(f->path, &f->m, errmsg), CAP_OK);
	assert_int_equal(get(f->m, "k1599", 0, &kv), 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(f->m, "after", 0, &kv), 1);
	mvcc_kv_clear(&kv);
}

/* A rolled-back batch leaves no key, revision, lease, compaction or index behind. */
static void test_rollback(void **state)
{
	struct fx *f = *state;
	struct mvcc *m = f->m;
	struct mvcc_kv kv;
	int64_t ttl;
	put(m, "a", "1"); /* 2, index 1 */
	put(m, "a", "2"); /* 3, index 2 */
	assert_int_equal(mvcc_begin(m), CAP_OK);
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_put(m, S("b"), S("x"), 0, NULL, NULL), CAP_OK);
	assert_int_equal(mvcc_txn_end(m), 4);
	assert_int_equal(mvcc_lease_grant(m, 9, 9), CAP_OK);
	assert_int_equal(mvcc_compact(m, 3), CAP_OK);
	assert_int_equal(mvcc_rev(m), 4);
	mvcc_rollback(m);

	assert_int_equal(mvcc_rev(m), 3);
	assert_int_equal(mvcc_compact_rev(m), 0);
	assert_int_equal(mvcc_applied_index(m), 2);
	assert_int_equal(get(m, "b", 0, &kv), 0);
	assert_int_equal(get(m, "a", 2, &kv), 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(mvcc_lease_get(m, 9, &ttl), CAP_ELEASENOTFOUND);
	/* The next write takes the revision the rolled-back one had. */
	assert_int_equal(put(m, "c", "1"), 4);
}

/* A model of the history, for the randomized comparison below. */
struct model_ver {
	int key;
	int64_t rev, create, version; /* version 0: tombstone */
	int value;
};

/* The live version of key k at rev in the model, or NULL. */
static const struct model_ver *model_at(const struct model_ver *h, size_t n, int k, int64_t rev)
{
	const struct model_ver *best = NULL;
	for (size_t i = 0; i < n; i++)
		if (h[i].key == k && h[i].rev <= rev)
			best = &h[i];
	return best && best->version ? best : NULL;
}

/* Random puts, range deletes, multi-write txns and compactions agree with a
 * plain model of etcd's semantics at every readable revision. */
static void test_random_against_model(void **state)
{
	struct fx *f = *state;
	struct mvcc *m = f->m;
	enum { NKEYS = 12, STEPS = 400 };
	struct model_ver *h = calloc(STEPS * 4, sizeof(*h));
	size_t nh = 0;
	int64_t rev = 1, compact = 0;
	unsigned seed = 12345;
	char key[16], val[16], end[16];
	assert_non_null(h);

	for (int step = 0; step < STEPS; step++) {
		int op = (int)(rand_r(&seed) % 10);
		assert_int_equal(mvcc_begin(m), CAP_OK);
		if (op == 9 && rev > compact + 1) {
			int64_t c = compact + 1 + (int64_t)(rand_r(&seed) % (uint64_t)(rev - compact));
			assert_int_equal(mvcc_compact(m, c), CAP_OK);
			compact = c;
		} else {
			/* A txn of one to three writes on distinct keys. */
			int nw = 1 + (int)(rand_r(&seed) % 3), base = (int)(rand_r(&seed) % NKEYS);
			bool wrote = false;
			mvcc_txn_begin(m);
			for (int w = 0; w < nw; w++) {
				int k = (base + w * 5) % NKEYS;
				snprintf(key, sizeof(key), "k%02d", k);
				const struct model_ver *cur = model_at(h, nh, k, rev + 1);
				if (op < 7) {
					int v = (int)(rand_r(&seed) % 1000);
					snprintf(val, sizeof(val), "v%d", v);
					assert_int_equal(mvcc_put(m, S(key), S(val), 0, NULL, NULL), CAP_OK);
					h[nh++] = (struct model_ver){k, rev + 1, cur ? cur->create : rev + 1,
								    cur ? cur->version + 1 : 1, v};
					wrote = true;
				} else {
					int64_t n;
					assert_int_equal(mvcc_delete_range(m, S(key), NULL, 0, NULL, &n), CAP_OK);
					assert_int_equal(n, cur ? 1 : 0);
					if (cur) {
						h[nh++] = (struct model_ver){k, rev + 1, 0, 0, 0};
						wrote = true;
					}
				}
			}
			assert_int_equal(mvcc_txn_end(m), wrote ? rev + 1 : rev);
			if (wrote)
				rev++;
		}
		assert_int_equal(mvcc_commit(m, (uint64_t)step + 1), CAP_OK);
		assert_int_equal(mvcc_rev(m), rev);

		/* Check a random readable revision and the current one, over a
		 * random key range. */
		int64_t at[2] = {compact + (int64_t)(rand_r(&seed) % (uint64_t)(rev - compact + 1)), 0};
		if (at[0] == 0)
			at[0] = rev;
		int lo = (int)(rand_r(&seed) % NKEYS), hi = lo + (int)(rand_r(&seed) % NKEYS);
		snprintf(key, sizeof(key), "k%02d", lo);
		snprintf(end, sizeof(end), "k%02d", hi);
		for (int a = 0; a < 2; a++) {
			struct mvcc_range_opts o = {.rev = at[a]};
			struct mvcc_kvs kvs = {0};
			int64_t count;
			bool more;
			int64_t r = at[a] ? at[a] : rev;
			assert_int_equal(mvcc_range(m, S(key), S(end), &o, &kvs, &count, &more), CAP_OK);
			size_t j = 0;
			for (int k = lo; k < hi && k < NKEYS; k++) {
				const struct model_ver *v = model_at(h, nh, k, r);
				if (v == NULL)
					continue;
				assert_true(j < kvs.n);
				snprintf(key, sizeof(key), "k%02d", k);
				snprintf(val, sizeof(val), "v%d", v->value);
				assert_kv(&kvs.v[j], key, val, v->create, v->rev, v->version);
				j++;
			}
			assert_int_equal(j, kvs.n);
			assert_int_equal(count, (int64_t)kvs.n);
			snprintf(key, sizeof(key), "k%02d", lo);
			mvcc_kvs_clear(&kvs);
		}
		if (compact > 0) {
			struct mvcc_range_opts o = {.rev = compact - 1};
			int64_t count;
			bool more;
			if (compact > 1)
				assert_int_equal(mvcc_range(m, S("k00"), NULL, 0, &o, NULL, &count, &more),
						 CAP_ECOMPACTED);
		}
	}

	/* Every event after the compaction matches the model's history. */
	struct mvcc_events evs = {0};
	int64_t next;
	assert_int_equal(mvcc_events(m, compact + 1, 0, S("\0"), zero, 1, false, 0, &evs, &next),
			 CAP_OK);
	size_t j = 0;
	for (size_t i = 0; i < nh; i++) {
		if (h[i].rev <= compact)
			continue;
		assert_true(j < evs.n);
		assert_int_equal(evs.v[j].kv.mod_rev, h[i].rev);
		assert_int_equal(evs.v[j].type, h[i].version ? MVCC_EVENT_PUT : MVCC_EVENT_DELETE);
		snprintf(key, sizeof(key), "k%02d", h[i].key);
		assert_memory_equal(evs.v[j].kv.key, key, 3);
		j++;
	}
	assert_int_equal(j, evs.n);
	assert_int_equal(next, rev + 1);
	mvcc_events_clear(&evs);
	free(h);
}

/* The same random writes into a store without the key cache and one with a
 * cache of four entries (many evictions, keys longer than it holds) give
 * the same state after every batch, committed or rolled back, and the same
 * history with the same previous versions: puts, single and range deletes,
 * lease revocations, txns, rollbacks and a restore all keep the cache a
 * subset of the live keys. */
static void test_key_cache_changes_nothing(void **state)
{
	struct fx *f = *state;
	struct mvcc *m[2];
	char errmsg[CAP_ERRMSG_SIZE], path2[256], key[128], end[128], val[16];
	enum { NKEYS = 10, STEPS = 600 };
	unsigned seed = 4242;
	uint64_t index = 0, img_index = 0;
	void *img = NULL;
	size_t img_len = 0;
	snprintf(path2, sizeof(path2), "%s/db2", f->dir);
	m[0] = f->m;
	assert_int_equal(mvcc_open(path2, &m[1], errmsg), CAP_OK);
	assert_int_equal(mvcc_set_key_cache_kib(m[0], 0), CAP_OK);
	assert_int_equal(mvcc_set_key_cache_kib(m[1], 1), CAP_OK);

	for (int step = 0; step < STEPS; step++) {
		unsigned op_seed = seed;
		int rolled = (int)(rand_r(&seed) % 6) == 0;
		for (int i = 0; i < 2; i++) {
			unsigned r = op_seed;
			assert_int_equal(mvcc_begin(m[i]), CAP_OK);
			int nops = 1 + (int)(rand_r(&r) % 4);
			for (int o = 0; o < nops; o++) {
				int op = (int)(rand_r(&r) % 12), k = (int)(rand_r(&r) % NKEYS);
				/* keys 8 and 9 are longer than the cache holds */
				snprintf(key, sizeof(key), "%s%02d",
					 k >= 8 ? "a-key-longer-than-the-cache-holds-"
						  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/" : "k/", k);
				int64_t lease = (int64_t)(rand_r(&r) % 4), n;
				int rv;
				if (op < 6) {
					snprintf(val, sizeof(val), "v%d", (int)(rand_r(&r) % 1000));
					struct mvcc_kv prev;
					rv = mvcc_put(m[i], S(key), S(val), lease, &prev, NULL);
					assert_true(rv == CAP_OK || rv == CAP_ELEASENOTFOUND);
					mvcc_kv_clear(&prev);
				} else if (op < 8) {
					assert_int_equal(mvcc_delete_range(m[i], S(key), NULL, 0, NULL, &n), CAP_OK);
				} else if (op == 8) {
					snprintf(end, sizeof(end), "k/%02d", k + 1 + (int)(rand_r(&r) % 3));
					assert_int_equal(mvcc_delete_range(m[i], S("k/0"), S(end), NULL, &n), CAP_OK);
				} else if (op == 9) {
					rv = mvcc_lease_grant(m[i], lease ? lease : 1, 60);
					assert_true(rv == CAP_OK || rv == CAP_ELEASEEXISTS);
				} else if (op == 10) {
					rv = mvcc_lease_revoke(m[i], lease ? lease : 1, NULL);
					assert_true(rv == CAP_OK || rv == CAP_ELEASENOTFOUND);
				} else {
					/* a txn: two writes to one key at one revision */
					mvcc_txn_begin(m[i]);
					assert_int_equal(mvcc_put(m[i], S(key), S("t1"), 0, NULL, NULL), CAP_OK);
					assert_int_equal(mvcc_put(m[i], S(key), S("t2"), 0, NULL, NULL), CAP_OK);
					mvcc_txn_end(m[i]);
				}
			}
			if (rolled)
				mvcc_rollback(m[i]);
			else
				assert_int_equal(mvcc_commit(m[i], index + 1), CAP_OK);
		}
		seed = op_seed;
		for (int skip = 0; skip < 64; skip++)
			(void)rand_r(&seed);
		if (!rolled)
			index++;
		if (step == STEPS / 4) {
			assert_int_equal(mvcc_snapshot(m[0], &img, &img_len), CAP_OK);
			img_index = index;
		} else if (step == STEPS / 2) {
			/* a restore takes both back to an older state under the cache */
			for (int i = 0; i < 2; i++) {
				assert_int_equal(mvcc_restore(m[i], img, img_len), CAP_OK);
				/* every key written right away, cached or not */
				assert_int_equal(mvcc_begin(m[i]), CAP_OK);
				for (int k = 0; k < 8; k++) {
					snprintf(key, sizeof(key), "k/%02d", k);
					assert_int_equal(mvcc_put(m[i], S(key), S("r"), 0, NULL, NULL),
							 CAP_OK);
				}
				assert_int_equal(mvcc_commit(m[i], img_index + 1), CAP_OK);
			}
			index = img_index + 1;
			free(img);
		}
		uint32_t h0, h1;
		assert_int_equal(mvcc_rev(m[0]), mvcc_rev(m[1]));
		assert_int_equal(mvcc_hash(m[0], &h0), CAP_OK);
		assert_int_equal(mvcc_hash(m[1], &h1), CAP_OK);
		assert_int_equal(h0, h1);
	}

	struct mvcc_events evs[2] = {{0}};
	int64_t next[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(mvcc_events(m[i], 1, 0, S("\0"), zero, 1, true, 0, &evs[i], &next[i]),
				 CAP_OK);
	assert_int_equal(next[0], next[1]);
	assert_int_equal(evs[0].n, evs[1].n);
	assert_true(evs[0].n > STEPS);
	for (size_t j = 0; j < evs[0].n; j++) {
		const struct mvcc_event *a = &evs[0].v[j], *b = &evs[1].v[j];
		assert_int_equal(a->type, b->type);
		assert_int_equal(a->kv.key_len, b->kv.key_len);
		assert_memory_equal(a->kv.key, b->kv.key, a->kv.key_len);
		assert_int_equal(a->kv.mod_rev, b->kv.mod_rev);
		assert_int_equal(a->kv.create_rev, b->kv.create_rev);
		assert_int_equal(a->kv.version, b->kv.version);
		assert_int_equal(a->kv.lease, b->kv.lease);
		assert_int_equal(a->prev.mod_rev, b->prev.mod_rev);
		assert_int_equal(a->prev.create_rev, b->prev.create_rev);
		assert_int_equal(a->prev.version, b->prev.version);
		assert_int_equal(a->prev.value_len, b->prev.value_len);
	}
	mvcc_events_clear(&evs[0]);
	mvcc_events_clear(&evs[1]);
	mvcc_close(m[1]);
}

/* A snapshot restored into a fresh database reproduces keys, history,
 * leases, revisions and the applied index; a damaged image is refused
 * and leaves the database as it was. */
static void test_snapshot_restore(void **state)
{
	struct fx *f = *state;
	struct mvcc *src = f->m, *dst;
	char errmsg[CAP_ERRMSG_SIZE], path2[256];
	struct mvcc_kv kv;
	void *img;
	size_t len;
	uint32_t h1, h2;
	int64_t ttl;

	put(src, "a", "1");
	put(src, "a", "2");
	put(src, "b", "3");
	assert_int_equal(mvcc_begin(src), CAP_OK);
	assert_int_equal(mvcc_lease_grant(src, 7, 30), CAP_OK);
	assert_int_equal(mvcc_commit(src, 77), CAP_OK);
	assert_int_equal(mvcc_snapshot(src, &img, &len), CAP_OK);
	assert_true(len > 0);

	snprintf(path2, sizeof(path2), "%s/db2", f->dir);
	assert_int_equal(mvcc_open(path2, &dst, errmsg), CAP_OK);
	put(dst, "other", "x");
	assert_int_equal(mvcc_restore(dst, img, len), CAP_OK);
	assert_int_equal(mvcc_rev(dst), 4);
	assert_int_equal(mvcc_applied_index(dst), 77);
	assert_int_equal(get(dst, "other", 0, &kv), 0);
	assert_int_equal(get(dst, "a", 2, &kv), 1);
	assert_kv(&kv, "a", "1", 2, 2, 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(mvcc_lease_get(dst, 7, &ttl), CAP_OK);
	assert_int_equal(ttl, 30);
	assert_int_equal(mvcc_hash(src, &h1), CAP_OK);
	assert_int_equal(mvcc_hash(dst, &h2), CAP_OK);
	assert_int_equal(h1, h2);

	/* The restored store keeps working and persists. */
	assert_int_equal(put(dst, "c", "4"), 5);
	mvcc_close(dst);
	assert_int_equal(mvcc_open(path2, &dst, errmsg), CAP_OK);
	assert_int_equal(mvcc_rev(dst), 5);

	/* A restore cut short before its rename leaves a stray file: the
	 * database opens as it was and the stray file is removed. */
	mvcc_close(dst);
	char stray[300];
	snprintf(stray, sizeof(stray), "%s.restore", path2);
	int fd = open(stray, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, img, len / 2), (ssize_t)(len / 2));
	close(fd);
	assert_int_equal(mvcc_open(path2, &dst, errmsg), CAP_OK);
	assert_int_equal(mvcc_rev(dst), 5);
	assert_int_not_equal(access(stray, F_OK), 0);

	/* A damaged image: the middle overwritten. */
	uint8_t *bad = malloc(len);
	assert_non_null(bad);
	memcpy(bad, img, len);
	memset(bad + len / 2 - 2048, 0x5a, 4096);
	assert_int_equal(mvcc_restore(dst, bad, len), CAP_ECORRUPT);
	assert_int_equal(mvcc_restore(dst, bad, 100), CAP_ECORRUPT);
	assert_int_equal(mvcc_rev(dst), 5);
	assert_int_equal(get(dst, "c", 0, &kv), 1);
	mvcc_kv_clear(&kv);
	free(bad);
	free(img);
	mvcc_close(dst);
}

/* A database file with bytes overwritten in the middle is refused by
 * mvcc_open with CAP_ECORRUPT, as is a file that is not ours. */
static void test_corrupt_file_refused(void **state)
{
	struct fx *f = *state;
	char errmsg[CAP_ERRMSG_SIZE], key[32], value[128];
	struct stat st;
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "key-%05d", i);
		snprintf(value, sizeof(value), "value %d %x %o", i, i * 7919, i * 31);
		assert_int_equal(mvcc_put(f->m, S(key), S(value), 0, NULL, NULL), CAP_OK);
	}
	assert_int_equal(mvcc_commit(f->m, 1), CAP_OK);
	mvcc_close(f->m);
	f->m = NULL;

	assert_int_equal(stat(f->path, &st), 0);
	assert_true(st.st_size > 16 * 4096);
	int fd = open(f->path, O_WRONLY);
	assert_true(fd >= 0);
	char junk[4096];
	memset(junk, 0x5a, sizeof(junk));
	off_t mid = (st.st_size / 2) & ~(off_t)4095;
	assert_int_equal(pwrite(fd, junk, sizeof(junk), mid), (ssize_t)sizeof(junk));
	close(fd);

	errmsg[0] = '\0';
	assert_int_equal(mvcc_open(f->path, &f->m, errmsg), CAP_ECORRUPT);
	assert_null(f->m);
	assert_non_null(strstr(errmsg, "damaged"));

	/* Not a database at all. */
	fd = open(f->path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	assert_int_equal(mvcc_open(f->path, &f->m, errmsg), CAP_ECORRUPT);
	remove_db_files(f->path);
	assert_int_equal(mvcc_open(f->path, &f->m, errmsg), CAP_OK);
}

/* Values compressed one after another with the one reused lz4 state each
 * decode on their own: no block depends on the value before it. */
static void test_compression_blocks_independent(void **state)
{
	struct fx *f = *state;
	static const size_t sizes[] = {256, 300, 4096, 70000, 257, 65536, 1000};
	uint8_t *vals[7];
	char key[16];
	struct mvcc_kvs kvs = {0};
	int64_t count;
	bool more;

	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	for (size_t k = 0; k < 7; k++) {
		vals[k] = malloc(sizes[k]);
		assert_non_null(vals[k]);
		for (size_t i = 0; i < sizes[k]; i++)
			vals[k][i] = (uint8_t)("abcabcabd"[(i + k) % 9] + (i / 512) % (k + 2));
		snprintf(key, sizeof key, "z%zu", k);
		assert_int_equal(mvcc_put(f->m, (const uint8_t *)key, strlen(key), vals[k], sizes[k], 0,
					  NULL, NULL), CAP_OK);
	}
	assert_int_equal(mvcc_commit(f->m, 1), CAP_OK);
	for (size_t k = 0; k < 7; k++) {
		snprintf(key, sizeof key, "z%zu", k);
		assert_int_equal(mvcc_range(f->m, (const uint8_t *)key, strlen(key), NULL, 0, NULL, &kvs,
					    &count, &more), CAP_OK);
		assert_int_equal(kvs.n, 1);
		assert_int_equal(kvs.v[0].value_len, sizes[k]);
		assert_memory_equal(kvs.v[0].value, vals[k], sizes[k]);
		mvcc_kvs_clear(&kvs);
		free(vals[k]);
	}
}

/* A large compressible value round-trips intact and is stored compressed. */
static void test_compression_roundtrip(void **state)
{
	struct fx *f = *state;
	size_t len = 1 << 20;
	uint8_t *big = malloc(len);
	struct mvcc_kvs kvs = {0};
	struct mvcc_events evs = {0};
	int64_t count, size, in_use, next;
	bool more;
	assert_non_null(big);
	for (size_t i = 0; i < len; i++)
		big[i] = (uint8_t)("the quick brown fox "[i % 20] + (i / 4096) % 3);

	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	assert_int_equal(mvcc_put(f->m, S("big"), big, len, 0, NULL, NULL), CAP_OK);
	/* A value just under the threshold and an incompressible one stay raw. */
	assert_int_equal(mvcc_put(f->m, S("small"), big, 255, 0, NULL, NULL), CAP_OK);
	assert_int_equal(mvcc_commit(f->m, 1), CAP_OK);

	assert_int_equal(mvcc_range(f->m, S("big"), NULL, 0, NULL, &kvs, &count, &more), CAP_OK);
	assert_int_equal(kvs.n, 1);
	assert_int_equal(kvs.v[0].value_len, len);
	assert_memory_equal(kvs.v[0].value, big, len);
	mvcc_kvs_clear(&kvs);
	assert_int_equal(mvcc_range(f->m, S("small"), NULL, 0, NULL, &kvs, &count, &more), CAP_OK);
	assert_int_equal(kvs.v[0].value_len, 255);
	assert_memory_equal(kvs.v[0].value, big, 255);
	mvcc_kvs_clear(&kvs);

	/* History and prev values decode too. */
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	struct mvcc_kv prev;
	assert_int_equal(mvcc_put(f->m, S("big"), S("tiny"), 0, &prev, NULL), CAP_OK);
	assert_int_equal(mvcc_commit(f->m, 2), CAP_OK);
	assert_int_equal(prev.value_len, len);
	assert_memory_equal(prev.value, big, len);
	mvcc_kv_clear(&prev);
	assert_int_equal(mvcc_events(f->m, 3, 0, S("big"), NULL, 0, true, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 1);
	assert_int_equal(evs.v[0].prev.value_len, len);
	assert_memory_equal(evs.v[0].prev.value, big, len);
	mvcc_events_clear(&evs);

	assert_int_equal(mvcc_db_size(f->m, &size, &in_use), CAP_OK);
	assert_true(in_use <= size);
	assert_true(size < (int64_t)len / 4);
	free(big);
}

/* The hash is equal for equal key spaces and changes with any write. */
static void test_hash(void **state)
{
	struct fx *f = *state;
	struct mvcc *other;
	char errmsg[CAP_ERRMSG_SIZE], path2[256];
	uint32_t h1, h2, h3;
	snprintf(path2, sizeof(path2), "%s/db2", f->dir);
	assert_int_equal(mvcc_open(path2, &other, errmsg), CAP_OK);
	put(f->m, "a", "1");
	put(f->m, "b", "2");
	put(other, "a", "1");
	put(other, "b", "2");
	assert_int_equal(mvcc_hash(f->m, &h1), CAP_OK);
	assert_int_equal(mvcc_hash(other, &h2), CAP_OK);
	assert_int_equal(h1, h2);
	put(other, "b", "3");
	assert_int_equal(mvcc_hash(other, &h3), CAP_OK);
	assert_int_not_equal(h1, h3);
	mvcc_close(other);
}

/* Writes outside a batch and empty keys are refused. */
static void test_misuse_refused(void **state)
{
	struct fx *f = *state;
	int64_t n;
	assert_int_equal(mvcc_put(f->m, S("k"), S("v"), 0, NULL, NULL), CAP_EINVAL);
	assert_int_equal(mvcc_delete_range(f->m, S("k"), NULL, 0, NULL, &n), CAP_EINVAL);
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	assert_int_equal(mvcc_begin(f->m), CAP_EINVAL);
	assert_int_equal(mvcc_put(f->m, (const uint8_t *)"", 0, S("v"), 0, NULL, NULL),
			 CAP_EKEYEMPTY);
	mvcc_rollback(f->m);
	assert_int_equal(mvcc_rev(f->m), 1);
}

/* The schema-1 layout and rows as the code before schema 2 wrote them:
 * a put a=1 (rev 2), b=x with lease 7 (3), a=2 (4), delete b (5), one txn
 * putting c=3 then a=3 (6), d=4 with lease 7 (7). */
static const char v1_sql[] =
	"CREATE TABLE kv(key BLOB NOT NULL, mod_rev INTEGER NOT NULL, sub INTEGER NOT NULL,"
	" create_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL,"
	" enc INTEGER NOT NULL, value BLOB, PRIMARY KEY(key, mod_rev, sub)) WITHOUT ROWID;"
	"CREATE INDEX kv_rev ON kv(mod_rev, sub);"
	"CREATE TABLE cur(key BLOB PRIMARY KEY, create_rev INTEGER NOT NULL,"
	" mod_rev INTEGER NOT NULL, sub INTEGER NOT NULL, version INTEGER NOT NULL,"
	" lease INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX cur_lease ON cur(lease) WHERE lease != 0;"
	"CREATE TABLE lease(id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);"
	"CREATE TABLE meta(name TEXT PRIMARY KEY, value) WITHOUT ROWID;"
	"CREATE TABLE info(name TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
	"INSERT INTO meta VALUES('schema', 1), ('revision', 7), ('compact_revision', 0),"
	" ('applied_index', 9);"
	"INSERT INTO info VALUES('cluster', 'c1');"
	"INSERT INTO lease VALUES(7, 60);"
	"INSERT INTO kv VALUES(CAST('a' AS BLOB), 2, 0, 2, 1, 0, 0, CAST('1' AS BLOB)),"
	" (CAST('b' AS BLOB), 3, 0, 3, 1, 7, 0, CAST('x' AS BLOB)),"
	" (CAST('a' AS BLOB), 4, 0, 2, 2, 0, 0, CAST('2' AS BLOB)),"
	" (CAST('b' AS BLOB), 5, 0, 0, 0, 0, 0, NULL),"
	" (CAST('c' AS BLOB), 6, 0, 6, 1, 0, 0, CAST('3' AS BLOB)),"
	" (CAST('a' AS BLOB), 6, 1, 2, 3, 0, 0, CAST('3' AS BLOB)),"
	" (CAST('d' AS BLOB), 7, 0, 7, 1, 7, 0, CAST('4' AS BLOB));"
	"INSERT INTO cur VALUES(CAST('a' AS BLOB), 2, 6, 1, 3, 0),"
	" (CAST('c' AS BLOB), 6, 6, 0, 1, 0), (CAST('d' AS BLOB), 7, 7, 0, 1, 7);"
	"PRAGMA application_id=1128353875;";

static void make_v1(const char *path, const char *extra)
{
	sqlite3 *db;
	remove_db_files(path);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, v1_sql, NULL, NULL, NULL), SQLITE_OK);
	if (extra)
		assert_int_equal(sqlite3_exec(db, extra, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void assert_event(const struct mvcc_event *ev, enum mvcc_event_type type, const char *key,
			 int64_t mod, const char *prev_value, int64_t prev_mod)
{
	assert_int_equal(ev->type, type);
	assert_int_equal(ev->kv.key_len, strlen(key));
	assert_memory_equal(ev->kv.key, key, ev->kv.key_len);
	assert_int_equal(ev->kv.mod_rev, mod);
	assert_int_equal(ev->prev.mod_rev, prev_mod);
	if (prev_value) {
		assert_int_equal(ev->prev.value_len, strlen(prev_value));
		assert_memory_equal(ev->prev.value, prev_value, ev->prev.value_len);
	}
}

/* A schema-1 database opens migrated: the same revisions, live keys, past
 * revisions, events with their previous versions, leases and metadata, and
 * it keeps working (writes, compaction) and reopens as schema 2. */
/* The page size sqlite reports for the database at path. */
static int64_t page_size_of(const char *path)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t n;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* Kubernetes-sized values (Pod objects of 1-4 KiB) take little more room
 * than their compressed bytes: a new file has 16 KiB pages, in which rows of
 * a few KiB leave little empty; with 4 KiB pages they took 1.6x. */
static void test_large_values_packed(void **state)
{
	struct fx *f = *state;
	int64_t size, in_use;
	double stored = 0;

	assert_int_equal(page_size_of(f->path), 16384);
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	for (unsigned i = 0; i < 400; i++) {
		char key[32], out[LZ4_COMPRESSBOUND(8192)];
		size_t len;
		char *v = pod_json(i + 1, 1024 + i * 3072 / 400, &len);
		int c;
		assert_non_null(v);
		c = LZ4_compress_default(v, out, (int)len, (int)sizeof out);
		assert_true(c > 0 && (size_t)c < len);
		stored += c;
		snprintf(key, sizeof key, "/registry/pods/ns/p%u", i);
		mvcc_txn_begin(f->m);
		assert_int_equal(mvcc_put(f->m, S(key), (const uint8_t *)v, len, 0, NULL, NULL),
				 CAP_OK);
		mvcc_txn_end(f->m);
		free(v);
	}
	assert_int_equal(mvcc_commit(f->m, mvcc_applied_index(f->m) + 1), CAP_OK);
	assert_int_equal(mvcc_db_size(f->m, &size, &in_use), CAP_OK);
	assert_true((double)in_use < 1.3 * stored);
}

/* A file made with another page size (any made before 16 KiB pages) keeps
 * it, and works. */
static void test_page_size_kept(void **state)
{
	struct fx *f = *state;
	char errmsg[CAP_ERRMSG_SIZE], path2[256];
	struct mvcc *m;
	struct mvcc_kv kv;

	snprintf(path2, sizeof(path2), "%s/db2", f->dir);
	make_v1(path2, NULL);
	assert_int_equal(page_size_of(path2), 4096);
	assert_int_equal(mvcc_open(path2, &m, errmsg), CAP_OK);
	assert_int_equal(put(m, "b", "y"), 8);
	mvcc_close(m);
	assert_int_equal(page_size_of(path2), 4096);
	assert_int_equal(mvcc_open(path2, &m, errmsg), CAP_OK);
	assert_int_equal(get(m, "b", 0, &kv), 1);
	assert_kv(&kv, "b", "y", 8, 8, 1);
	mvcc_kv_clear(&kv);
	mvcc_close(m);
}

static void test_schema1_migrated(void **state)
{
	struct fx *f = *state;
	char errmsg[CAP_ERRMSG_SIZE], path2[256], buf[64], *v;
	struct mvcc *m;
	struct mvcc_kv kv;
	struct mvcc_kvs kvs = {0};
	struct mvcc_events evs = {0};
	struct mvcc_range_opts o = {0};
	int64_t count, next;
	bool more;

	snprintf(path2, sizeof(path2), "%s/db2", f->dir);
	make_v1(path2, NULL);
	assert_int_equal(mvcc_open(path2, &m, errmsg), CAP_OK);
	assert_int_equal(mvcc_rev(m), 7);
	assert_int_equal(mvcc_applied_index(m), 9);
	assert_int_equal(mvcc_meta_get(m, "cluster", &v), CAP_OK);
	assert_string_equal(v, "c1");
	free(v);

	assert_int_equal(mvcc_range(m, S("\0"), zero, 1, &o, &kvs, &count, &more), CAP_OK);
	assert_int_equal(kvs.n, 3);
	assert_kv(&kvs.v[0], "a", "3", 2, 6, 3);
	assert_kv(&kvs.v[1], "c", "3", 6, 6, 1);
	assert_kv(&kvs.v[2], "d", "4", 7, 7, 1);
	assert_int_equal(kvs.v[2].lease, 7);
	mvcc_kvs_clear(&kvs);
	o.rev = 4;
	range_keys(m, "\0", zero, 1, &o, buf, sizeof(buf), &count, &more);
	assert_string_equal(buf, "a,b");
	assert_int_equal(get(m, "a", 3, &kv), 1);
	assert_kv(&kv, "a", "1", 2, 2, 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(m, "b", 4, &kv), 1);
	assert_kv(&kv, "b", "x", 3, 3, 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(m, "b", 5, &kv), 0);

	assert_int_equal(mvcc_events(m, 2, 0, S("\0"), zero, 1, true, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 7);
	assert_event(&evs.v[0], MVCC_EVENT_PUT, "a", 2, NULL, 0);
	assert_event(&evs.v[2], MVCC_EVENT_PUT, "a", 4, "1", 2);
	assert_event(&evs.v[3], MVCC_EVENT_DELETE, "b", 5, "x", 3);
	assert_event(&evs.v[4], MVCC_EVENT_PUT, "c", 6, NULL, 0);
	assert_event(&evs.v[5], MVCC_EVENT_PUT, "a", 6, "2", 4);
	mvcc_events_clear(&evs);

	assert_int_equal(mvcc_lease_keys(m, 7, &kvs), CAP_OK);
	assert_int_equal(kvs.n, 1);
	assert_memory_equal(kvs.v[0].key, "d", 1);
	mvcc_kvs_clear(&kvs);

	/* b comes back after its tombstone; compaction keeps what it must. */
	assert_int_equal(put(m, "b", "y"), 8);
	assert_int_equal(get(m, "b", 0, &kv), 1);
	assert_kv(&kv, "b", "y", 8, 8, 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(mvcc_begin(m), CAP_OK);
	assert_int_equal(mvcc_compact(m, 6), CAP_OK);
	assert_int_equal(mvcc_commit(m, 10), CAP_OK);
	assert_int_equal(get(m, "a", 6, &kv), 1);
	assert_kv(&kv, "a", "3", 2, 6, 3);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(m, "b", 7, &kv), 0);
	mvcc_close(m);

	assert_int_equal(mvcc_open(path2, &m, errmsg), CAP_OK);
	assert_int_equal(mvcc_rev(m), 8);
	assert_int_equal(get(m, "d", 0, &kv), 1);
	assert_kv(&kv, "d", "4", 7, 7, 1);
	mvcc_kv_clear(&kv);
	mvcc_close(m);

	/* A history whose sub-revisions the new ids cannot hold is refused,
	 * and the file is left as it was. */
	make_v1(path2, "INSERT INTO kv VALUES(CAST('e' AS BLOB), 7, 9999999, 7, 1, 0, 0, NULL)");
	assert_int_equal(mvcc_open(path2, &m, errmsg), CAP_ECORRUPT);
	assert_non_null(strstr(errmsg, "cannot migrate"));
	sqlite3 *db;
	int64_t n = 0;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(path2, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM kv", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	assert_int_equal(n, 8);
}

/* A snapshot image of a schema-1 database (a member of the earlier version
 * sent it) is restored and migrated: the same keys and history. */
static void test_schema1_image_restored(void **state)
{
	struct fx *f = *state;
	char path2[256];
	struct mvcc_kv kv;
	struct stat st;

	snprintf(path2, sizeof(path2), "%s/db2", f->dir);
	make_v1(path2, NULL);
	assert_int_equal(stat(path2, &st), 0);
	uint8_t *img = malloc((size_t)st.st_size);
	assert_non_null(img);
	int fd = open(path2, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, img, (size_t)st.st_size), st.st_size);
	close(fd);

	put(f->m, "other", "x");
	assert_int_equal(mvcc_restore(f->m, img, (size_t)st.st_size), CAP_OK);
	free(img);
	assert_int_equal(mvcc_rev(f->m), 7);
	assert_int_equal(get(f->m, "other", 0, &kv), 0);
	assert_int_equal(get(f->m, "a", 0, &kv), 1);
	assert_kv(&kv, "a", "3", 2, 6, 3);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(f->m, "b", 4, &kv), 1);
	assert_kv(&kv, "b", "x", 3, 3, 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(put(f->m, "a", "4"), 8);
}

/* One key's history across a delete and a re-create: reads at each past
 * revision, its watch events with previous versions (none across the
 * tombstone), and the same after a compaction cut part of it. */
static void test_single_key_history(void **state)
{
	struct fx *f = *state;
	struct mvcc *m = f->m;
	struct mvcc_kv kv;
	struct mvcc_events evs = {0};
	int64_t next;

	assert_int_equal(put(m, "k", "1"), 2);
	assert_int_equal(put(m, "other", "o"), 3);
	assert_int_equal(put(m, "k", "2"), 4);
	assert_int_equal(del(m, "k", NULL, 0), 1);           /* rev 5 */
	assert_int_equal(put(m, "k", "3"), 6);
	assert_int_equal(put(m, "k", "4"), 7);
	assert_int_equal(get(m, "k", 3, &kv), 1);
	assert_kv(&kv, "k", "1", 2, 2, 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(m, "k", 4, &kv), 1);
	assert_kv(&kv, "k", "2", 2, 4, 2);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(m, "k", 5, &kv), 0);
	assert_int_equal(get(m, "k", 6, &kv), 1);
	assert_kv(&kv, "k", "3", 6, 6, 1);
	mvcc_kv_clear(&kv);

	assert_int_equal(mvcc_events(m, 3, 6, S("k"), NULL, 0, true, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 3);
	assert_event(&evs.v[0], MVCC_EVENT_PUT, "k", 4, "1", 2);
	assert_event(&evs.v[1], MVCC_EVENT_DELETE, "k", 5, "2", 4);
	assert_event(&evs.v[2], MVCC_EVENT_PUT, "k", 6, NULL, 0);
	assert_int_equal(next, 7);
	mvcc_events_clear(&evs);

	/* Deleted again: the chain now starts at the newest tombstone. */
	assert_int_equal(del(m, "k", NULL, 0), 1);           /* rev 8 */
	assert_int_equal(get(m, "k", 7, &kv), 1);
	assert_kv(&kv, "k", "4", 6, 7, 2);
	mvcc_kv_clear(&kv);
	assert_int_equal(mvcc_events(m, 7, 0, S("k"), NULL, 0, true, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 2);
	assert_event(&evs.v[0], MVCC_EVENT_PUT, "k", 7, "3", 6);
	assert_event(&evs.v[1], MVCC_EVENT_DELETE, "k", 8, "4", 7);
	mvcc_events_clear(&evs);

	/* Compacted at 6: the version there stays, the ones before it go,
	 * and an event at 7 no longer finds a previous version it had. */
	assert_int_equal(mvcc_begin(m), CAP_OK);
	assert_int_equal(mvcc_compact(m, 6), CAP_OK);
	assert_int_equal(mvcc_commit(m, 100), CAP_OK);
	assert_int_equal(get(m, "k", 6, &kv), 1);
	assert_kv(&kv, "k", "3", 6, 6, 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(mvcc_begin(m), CAP_OK);
	assert_int_equal(mvcc_compact(m, 7), CAP_OK);
	assert_int_equal(mvcc_commit(m, 101), CAP_OK);
	assert_int_equal(mvcc_events(m, 7, 0, S("k"), NULL, 0, true, 0, &evs, &next), CAP_OK);
	assert_int_equal(evs.n, 2);
	assert_event(&evs.v[0], MVCC_EVENT_PUT, "k", 7, NULL, 0);
	mvcc_events_clear(&evs);
	assert_int_equal(get(m, "other", 7, &kv), 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(put(m, "k", "5"), 9);
	assert_int_equal(get(m, "k", 0, &kv), 1);
	assert_kv(&kv, "k", "5", 9, 9, 1);
	mvcc_kv_clear(&kv);
}

static off_t wal_size(const char *path)
{
	char p[256];
	struct stat st;
	snprintf(p, sizeof(p), "%s-wal", path);
	return stat(p, &st) == 0 ? st.st_size : -1;
}

static const char *idle_path;
static int idle_ticks;

/* Stops the loop once the WAL file is empty, or after 5 s. */
static void idle_tick(uv_timer_t *t)
{
	if (wal_size(idle_path) == 0 || ++idle_ticks >= 100)
		uv_timer_stop(t);
}

/* An idle store's WAL file is emptied: by mvcc_wal_truncate directly (not
 * inside a batch), and by the checkpointer once no commit came for a while
 * (a pass in the pool copies the frames, then the file is cut); everything
 * committed is still there after a reopen. */
static void test_wal_truncated_when_idle(void **state)
{
	struct fx *f = *state;
	char errmsg[CAP_ERRMSG_SIZE], key[32];
	struct mvcc_kv kv;
	uv_loop_t loop;
	uv_timer_t t;
	struct wal_ckpt *c;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(wal_ckpt_open(&loop, f->m, &c), CAP_OK);
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof key, "k%04d", i);
		put(f->m, key, "value");
		wal_ckpt_committed(c);
	}
	assert_true(wal_size(f->path) > 0);
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	assert_int_equal(mvcc_wal_truncate(f->m), CAP_EINVAL);
	mvcc_rollback(f->m);
	idle_path = f->path;
	idle_ticks = 0;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, idle_tick, 50, 50);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(wal_size(f->path), 0);
	/* Not before a whole idle period: the first check still saw commits. */
	assert_true(idle_ticks >= 5);
	assert_int_equal(mvcc_wal_frames(f->m), 0);

	put(f->m, "after", "truncate");
	assert_true(wal_size(f->path) > 0);
	assert_int_equal(mvcc_wal_truncate(f->m), CAP_OK);
	assert_int_equal(wal_size(f->path), 0);
	wal_ckpt_close(c, NULL, NULL);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);

	mvcc_close(f->m);
	assert_int_equal(mvcc_open(f->path, &f->m, errmsg), CAP_OK);
	assert_int_equal(get(f->m, "k0299", 0, &kv), 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(f->m, "after", 0, &kv), 1);
	mvcc_kv_clear(&kv);
}

/* A TRUNCATE checkpoint from another connection: whether a reader of the
 * main connection held it back. */
static bool truncate_blocked(const char *path)
{
	sqlite3 *db = NULL;
	int busy = -1, log = -1, done = -1;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode", NULL, NULL, NULL), SQLITE_OK);
	int rc = sqlite3_wal_checkpoint_v2(db, "main", SQLITE_CHECKPOINT_TRUNCATE, &log, &done);
	busy = (rc & 0xff) == SQLITE_BUSY;
	assert_true(rc == SQLITE_OK || busy);
	sqlite3_close(db);
	return busy;
}

/* Ranges outside a batch share one read transaction, kept after the range
 * returns; a batch, a sync, a snapshot, a restore and other reads end it
 * first, so writes and checkpoints go through and every read after a
 * commit sees it. */
static void test_ranges_share_a_read_transaction(void **state)
{
	struct fx *f = *state;
	struct mvcc_kv kv;
	put(f->m, "a", "1");
	assert_false(truncate_blocked(f->path));

	/* a range leaves its read transaction open (on WAL frames, which a
	 * reader of the database file alone would not hold back) */
	put(f->m, "w", "1");
	assert_int_equal(get(f->m, "a", 0, &kv), 1);
	mvcc_kv_clear(&kv);
	assert_true(truncate_blocked(f->path));

	/* a batch ends it, and the next range sees the batch's writes */
	int64_t r2 = put(f->m, "a", "2");
	assert_int_equal(get(f->m, "a", 0, &kv), 1);
	assert_kv(&kv, "a", "2", 2, r2, 2);
	mvcc_kv_clear(&kv);
	assert_int_equal(get(f->m, "a", 0, &kv), 1);
	assert_kv(&kv, "a", "2", 2, r2, 2);
	mvcc_kv_clear(&kv);

	/* a sync copies every frame despite the range before it */
	assert_int_equal(mvcc_sync(f->m), CAP_OK);
	assert_false(truncate_blocked(f->path));

	/* other reads end it too */
	put(f->m, "w", "2");
	assert_int_equal(get(f->m, "a", 0, &kv), 1);
	mvcc_kv_clear(&kv);
	char *v = NULL;
	assert_int_equal(mvcc_meta_get(f->m, "nothing", &v), CAP_OK);
	assert_null(v);
	assert_false(truncate_blocked(f->path));

	/* snapshot and restore after a range */
	void *snap = NULL;
	size_t len = 0;
	assert_int_equal(get(f->m, "a", 0, &kv), 1);
	mvcc_kv_clear(&kv);
	assert_int_equal(mvcc_snapshot(f->m, &snap, &len), CAP_OK);
	int64_t r3 = put(f->m, "a", "3");
	assert_int_equal(get(f->m, "a", 0, &kv), 1);
	assert_kv(&kv, "a", "3", 2, r3, 3);
	mvcc_kv_clear(&kv);
	assert_int_equal(mvcc_restore(f->m, snap, len), CAP_OK);
	free(snap);
	assert_int_equal(get(f->m, "a", 0, &kv), 1);
	assert_kv(&kv, "a", "2", 2, r2, 2);
	mvcc_kv_clear(&kv);
	/* and a range at a past revision, then a write, then close */
	assert_int_equal(get(f->m, "a", r2, &kv), 1);
	mvcc_kv_clear(&kv);
	put(f->m, "b", "x");
	assert_int_equal(get(f->m, "b", 0, &kv), 1);
	mvcc_kv_clear(&kv);
}

struct each_seen {
	int calls;
	int stop_at;           /* fail on this call (1-based), 0 = never */
	struct mvcc_kvs kvs;   /* copies of what fn saw */
};

static int each_fn(void *arg, const struct mvcc_kv *kv)
{
	struct each_seen *e = arg;
	if (++e->calls == e->stop_at)
		return CAP_ENOMEM;
	if (e->kvs.n == e->kvs.cap) {
		e->kvs.cap = e->kvs.cap ? 2 * e->kvs.cap : 8;
		e->kvs.v = realloc(e->kvs.v, e->kvs.cap * sizeof(*e->kvs.v));
		assert_non_null(e->kvs.v);
	}
	struct mvcc_kv *c = &e->kvs.v[e->kvs.n++];
	*c = *kv;
	c->key = malloc(kv->key_len + 1);
	memcpy(c->key, kv->key, kv->key_len);
	c->value = kv->value_len ? malloc(kv->value_len) : NULL;
	if (kv->value_len)
		memcpy(c->value, kv->value, kv->value_len);
	return CAP_OK;
}

/* mvcc_range_each hands over the kvs mvcc_range gives, with the same count
 * and more, for plain, limited, keys-only, value-sorted, past-revision and
 * compressed reads; with count_only it calls nothing; an error from fn
 * stops the range and is returned. */
static void test_range_each(void **state)
{
	struct fx *f = *state;
	char big[600];
	memset(big, 'q', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	put(f->m, "k1", "b");
	int64_t r = put(f->m, "k2", "a");
	put(f->m, "k3", big);
	put(f->m, "k2", "c");
	static const uint8_t all_end[] = {0};
	struct mvcc_range_opts cases[] = {
		{0},
		{.limit = 2},
		{.keys_only = true, .limit = 1},
		{.sort_order = MVCC_SORT_DESCEND, .sort_target = MVCC_SORT_VALUE, .limit = 2},
		{.rev = r},
		{.min_mod_rev = r + 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mvcc_kvs want = {0};
		struct each_seen got = {0};
		int64_t wc = -1, gc = -2;
		bool wm = false, gm = true;
		assert_int_equal(mvcc_range(f->m, S("k"), all_end, 1, &cases[i], &want, &wc, &wm), CAP_OK);
		assert_int_equal(mvcc_range_each(f->m, S("k"), all_end, 1, &cases[i], each_fn, &got, &gc,
						 &gm),
				 CAP_OK);
		assert_int_equal(gc, wc);
		assert_int_equal(gm, wm);
		assert_int_equal(got.kvs.n, want.n);
		for (size_t j = 0; j < want.n; j++) {
			const struct mvcc_kv *a = &want.v[j], *b = &got.kvs.v[j];
			assert_int_equal(a->key_len, b->key_len);
			assert_memory_equal(a->key, b->key, a->key_len);
			assert_int_equal(a->value_len, b->value_len);
			if (a->value_len)
				assert_memory_equal(a->value, b->value, a->value_len);
			assert_int_equal(a->create_rev, b->create_rev);
			assert_int_equal(a->mod_rev, b->mod_rev);
			assert_int_equal(a->version, b->version);
			assert_int_equal(a->lease, b->lease);
		}
		mvcc_kvs_clear(&want);
		mvcc_kvs_clear(&got.kvs);
	}
	struct mvcc_range_opts co = {.count_only = true};
	struct each_seen none = {0};
	int64_t c = 0;
	assert_int_equal(mvcc_range_each(f->m, S("k"), all_end, 1, &co, each_fn, &none, &c, NULL),
			 CAP_OK);
	assert_int_equal(c, 3);
	assert_int_equal(none.calls, 0);
	struct each_seen stop = {.stop_at = 2};
	assert_int_equal(mvcc_range_each(f->m, S("k"), all_end, 1, NULL, each_fn, &stop, NULL, NULL),
			 CAP_ENOMEM);
	assert_int_equal(stop.calls, 2);
	mvcc_kvs_clear(&stop.kvs);
	/* the statement was reset: the next read works */
	struct mvcc_kv kv;
	assert_int_equal(get(f->m, "k1", 0, &kv), 1);
	mvcc_kv_clear(&kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_revisions_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_nothing_keeps_revision, setup, teardown),
		cmocka_unit_test_setup_teardown(test_past_revisions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deletes_kept_in_history, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_end_semantics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limit_more_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_range_prevs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sorting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_only_count_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_min_max_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_grouping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_order_and_batches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta, setup, teardown),
		cmocka_unit_test_setup_teardown(test_applied_index_persisted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_background_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_against_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_cache_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_file_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compression_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compression_blocks_independent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_misuse_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema1_migrated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_page_size_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_values_packed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema1_image_restored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_single_key_history, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_truncated_when_idle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ranges_share_a_read_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_each, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
