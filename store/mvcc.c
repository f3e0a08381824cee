/* mvcc.c — etcd's multi-version key space on sqlite3: history rows, a live-key index, leases, metadata.
 *
 * Tables:
 *   hist  every version ever written and not yet compacted, in revision
 *         order: its rowid is (mod_rev << HIST_SUB_BITS) + sub, so each
 *         write appends to the table's last page (pages fill completely,
 *         and a commit dirties one history page, not one per key), and
 *         watch history is a rowid range. A tombstone is a row with
 *         version 0 and no value. Each row names the key's version before
 *         it (prev, 0 if none): per-key history is that chain, from the
 *         key's newest row. A partial index finds the newest tombstone of
 *         a key that is no longer live, where such a chain starts.
 *   cur   the live key space: one row per live key pointing at its newest
 *         hist row, with the fields reads filter and sort on, so the common
 *         read (current revision) never has to look at history.
 *   lease granted leases and their TTLs.
 *   meta  revision, compact revision, applied raft index, schema version.
 *   info  free-form entries for mvcc_meta_get/set (cluster id, ...).
 *
 * Durability: the database runs in WAL mode with synchronous=NORMAL, so a
 * commit is not fsync'd. That is deliberate: the raft log is durable before
 * anything is applied, and the applied index is committed in the same sqlite
 * transaction as the writes it covers, so after a power loss the store
 * replays the log from whatever applied index survived. WAL with NORMAL still
 * never leaves a torn database, only a shorter one. */
#include "store/mvcc.h"

#include "lib/err.h"
#include "store/keycache.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "CAPS": marks a database file as ours in the sqlite header. */
#define MVCC_APP_ID 0x43415053
/* 1: history in a table keyed by (key, mod_rev, sub), indexed by revision.
 * 2: history in revision order with per-key chains (see above); a version 1
 *    file is migrated when opened. */
#define MVCC_SCHEMA_VERSION 2
/* Page size of a new database file (an existing file keeps its own). At
 * 4 KiB, values of 1-4 KiB (Kubernetes objects, even compressed) left a
 * page a third empty whenever the next row did not fit beside the last:
 * 100,000 Pod objects took 279 MiB for 170 MiB of stored values, 187 MiB
 * at 16 KiB. Puts and reads cost no more CPU at 16 KiB (a little less:
 * shallower trees), also with updates spread over 100,000 keys. */
#define MVCC_PAGE_SIZE 16384
/* hist rowids: the low bits are the sub-revision, the rest the revision.
 * 22 bits allow 4M writes in one revision and revisions below 2^40 (35
 * years at 1,000 writes a second; one bit is kept so that the id past a
 * revision never overflows); both limits are checked before a write. */
#define HIST_SUB_BITS 22
#define HIST_SB "22"
#define HIST_MAX_SUB ((int64_t)1 << HIST_SUB_BITS)
#define HIST_MAX_REV ((int64_t)1 << (62 - HIST_SUB_BITS))
/* SQL for the revision part of a hist rowid in column c. */
#define REV_OF(c) "(" c " >> " HIST_SB ")"
/* Values this long or longer are offered to lz4. */
#define MVCC_COMPRESS_MIN 256

enum { ENC_RAW = 0, ENC_LZ4 = 1 };

/* How a range's end selects keys (see mvcc_range). */
enum keymode { KM_EQ = 0, KM_RANGE, KM_FROM, KM_COUNT };

/* Where range rows come from: the live index (with or without values) or
 * history at a past revision (with or without values). */
enum src { SRC_CUR = 0, SRC_CURK, SRC_HIST, SRC_HISTK, SRC_COUNT };

/* ORDER BY variants; sorting by value happens in C because stored values
 * may be compressed. */
enum sortv {
	SORTV_KEY_ASC = 0, SORTV_KEY_DESC, SORTV_VER_ASC, SORTV_VER_DESC,
	SORTV_CREATE_ASC, SORTV_CREATE_DESC, SORTV_MOD_ASC, SORTV_MOD_DESC, SORTV_COUNT
};

enum {
	ST_BEGIN = 0, ST_COMMIT, ST_ROLLBACK, ST_BEGIN_READ,
	ST_META_GET, ST_META_SET, ST_INFO_GET, ST_INFO_SET,
	ST_CUR_GET, ST_TOMB_HEAD, ST_KV_VALUE, ST_KV_INSERT, ST_CUR_PUT, ST_PREV, ST_UNDO,
	ST_LEASE_INSERT, ST_LEASE_GET, ST_LEASE_DELETE, ST_LEASE_LIST, ST_LEASE_KEYS,
	ST_LEASE_PREVS, ST_LEASE_TOMB, ST_LEASE_CURDEL,
	ST_COMPACT, ST_COMPACT_TOMB, ST_HASH, ST_PAGE_COUNT, ST_PAGE_SIZE, ST_FREELIST,
	ST_COUNT
};

static const char *const fixed_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	/* Deferred: the read lock is taken by the first read (see read_hold). */
	[ST_BEGIN_READ] = "BEGIN",
	[ST_META_GET] = "SELECT value FROM meta WHERE name = ?1",
	[ST_META_SET] = "INSERT OR REPLACE INTO meta(name, value) VALUES(?1, ?2)",
	[ST_INFO_GET] = "SELECT value FROM info WHERE name = ?1",
	[ST_INFO_SET] = "INSERT OR REPLACE INTO info(name, value) VALUES(?1, ?2)",
	[ST_CUR_GET] = "SELECT create_rev, id, version, lease FROM cur WHERE key = ?1",
	/* The newest row of a key that is not live: where its chain starts. */
	[ST_TOMB_HEAD] = "SELECT max(id) FROM hist WHERE key = ?1 AND version = 0",
	[ST_KV_VALUE] = "SELECT enc, value FROM hist WHERE id = ?1",
	[ST_KV_INSERT] = "INSERT INTO hist(id, key, prev, create_rev, version, lease, enc, value)"
		" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[ST_CUR_PUT] = "INSERT OR REPLACE INTO cur(key, id, create_rev, version, lease)"
		" VALUES(?1, ?2, ?3, ?4, ?5)",
	/* One row of history by its id (a version's prev). */
	[ST_PREV] = "SELECT create_rev, " REV_OF("id") ", version, lease, enc, value FROM hist"
		" WHERE id = ?1",
	/* Takes back rows a write just appended (ids from ?1 on). */
	[ST_UNDO] = "DELETE FROM hist WHERE id >= ?1",
	[ST_LEASE_INSERT] = "INSERT INTO lease(id, ttl) VALUES(?1, ?2)",
	[ST_LEASE_GET] = "SELECT ttl FROM lease WHERE id = ?1",
	[ST_LEASE_DELETE] = "DELETE FROM lease WHERE id = ?1",
	[ST_LEASE_LIST] = "SELECT id, ttl FROM lease ORDER BY id",
	/* "lease != 0" lets sqlite use the partial index cur_lease. */
	[ST_LEASE_KEYS] = "SELECT key FROM cur WHERE lease = ?1 AND lease != 0 ORDER BY key",
	[ST_LEASE_PREVS] = "SELECT x.key, x.create_rev, " REV_OF("x.id") ", x.version, x.lease,"
		" v.enc, v.value FROM cur AS x CROSS JOIN hist AS v ON v.id = x.id"
		" WHERE x.lease = ?1 AND x.lease != 0 ORDER BY x.key",
	/* ?2 is the first id of the tombstones. */
	[ST_LEASE_TOMB] = "INSERT INTO hist(id, key, prev, create_rev, version, lease, enc, value)"
		" SELECT ?2 + row_number() OVER (ORDER BY key) - 1, key, id, 0, 0, 0, 0, NULL"
		" FROM cur WHERE lease = ?1 AND lease != 0",
	[ST_LEASE_CURDEL] = "DELETE FROM cur WHERE lease = ?1 AND lease != 0",
	/* Versions superseded at or below the compact revision ?1. Whatever a
	 * compaction at ?2 left is the newest version of its key at ?2, so only
	 * a version written in (?2, ?1] can supersede anything: everything on
	 * the chains behind those goes (a chain ends at a row an older
	 * compaction removed). */
	[ST_COMPACT] = "WITH RECURSIVE d(id) AS ("
		"SELECT prev FROM hist WHERE id >= ((?2 + 1) << " HIST_SB ")"
		" AND id < ((?1 + 1) << " HIST_SB ") AND prev != 0"
		" UNION SELECT h.prev FROM d CROSS JOIN hist AS h ON h.id = d.id WHERE h.prev != 0)"
		" DELETE FROM hist WHERE id IN d",
	/* Then the tombstones, which older compactions already removed below ?2. */
	[ST_COMPACT_TOMB] = "DELETE FROM hist WHERE id >= ((?2 + 1) << " HIST_SB ")"
		" AND id < ((?1 + 1) << " HIST_SB ") AND version = 0",
	[ST_HASH] = "SELECT x.key, x.create_rev, " REV_OF("x.id") ", x.version, x.lease,"
		" v.enc, v.value FROM cur AS x CROSS JOIN hist AS v ON v.id = x.id ORDER BY x.key",
	[ST_PAGE_COUNT] = "PRAGMA page_count",
	[ST_PAGE_SIZE] = "PRAGMA page_size",
	[ST_FREELIST] = "PRAGMA freelist_count",
};

/* The history and live-key tables (shared by a new file and a migration). */
#define HIST_CUR_SQL \
	"CREATE TABLE hist(id INTEGER PRIMARY KEY, key BLOB NOT NULL, prev INTEGER NOT NULL," \
	" create_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL," \
	" enc INTEGER NOT NULL, value BLOB);" \
	"CREATE INDEX hist_tomb ON hist(key) WHERE version = 0;" \
	"CREATE TABLE cur(key BLOB PRIMARY KEY, id INTEGER NOT NULL," \
	" create_rev INTEGER NOT NULL, version INTEGER NOT NULL," \
	" lease INTEGER NOT NULL) WITHOUT ROWID;" \
	"CREATE INDEX cur_lease ON cur(lease) WHERE lease != 0;"

static const char schema_sql[] =
	HIST_CUR_SQL
	"CREATE TABLE lease(id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);"
	"CREATE TABLE meta(name TEXT PRIMARY KEY, value) WITHOUT ROWID;"
	"CREATE TABLE info(name TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;";

struct mvcc {
	sqlite3 *db;               /* NULL only after a failed reopen in restore */
	char *path;
	char errmsg[CAP_ERRMSG_SIZE];

	int64_t rev;               /* includes txns ended in the open batch */
	int64_t committed_rev;
	int64_t compact_rev;
	int64_t committed_compact_rev;
	uint64_t applied_index;

	bool in_batch;
	bool read_open;            /* ranges' read transaction: see read_hold */
	bool in_txn;
	bool txn_wrote;
	int64_t txn_sub;           /* next sub-revision in the open txn */

	unsigned cache_kib;        /* sqlite page cache limit */
	/* WAL checkpoints made by mvcc_checkpoint_bg (another thread) instead
	 * of sqlite's automatic ones inside commits; bg_lock keeps that
	 * thread's connection and a close or restore of the file apart. */
	bool bg_checkpoints;
	int wal_frames;            /* frames in the WAL after the last commit */
	pthread_mutex_t bg_lock;
	uint8_t *zbuf;             /* lz4 scratch, grown as needed */
	LZ4_stream_t *lz4;         /* compression state, reused: set up once */
	size_t zcap;

	/* Live rows of recently written keys: a subset of cur in this
	 * connection's view, kept so by every write to cur (see keycache.h). */
	struct keycache *keys;

	sqlite3_stmt *st[ST_COUNT];
	/* Built on first use. */
	sqlite3_stmt *range_st[SRC_COUNT][KM_COUNT][SORTV_COUNT];
	sqlite3_stmt *count_st[2][KM_COUNT];
	sqlite3_stmt *events_st[KM_COUNT];
	sqlite3_stmt *tomb_st[KM_COUNT];
	sqlite3_stmt *curdel_st[KM_COUNT];
};

/* ---- errors ---- */

static int map_sqlite(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_NOMEM: return CAP_ENOMEM;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB: return CAP_ECORRUPT;
	default: return CAP_EIO;
	}
}

/* Records a sqlite failure in m->errmsg and translates its code. */
static int db_fail(struct mvcc *m, int rc, const char *what)
{
	cap_errmsg_printf(m->errmsg, "%s: %s", what,
			  m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(rc));
	return map_sqlite(rc);
}

static int fail(struct mvcc *m, int err, const char *msg)
{
	cap_errmsg_printf(m->errmsg, "%s", msg);
	return err;
}

/* ---- binding helpers ---- */

static void bind_blob(sqlite3_stmt *s, int i, const void *p, size_t n)
{
	/* A NULL pointer would bind SQL NULL; an empty value is an empty blob. */
	if (n == 0)
		sqlite3_bind_zeroblob(s, i, 0);
	else
		sqlite3_bind_blob64(s, i, p, n, SQLITE_STATIC);
}

/* Binds only parameters the statement has, so variants can share code. */
static void bind_i64(sqlite3_stmt *s, int i, int64_t v)
{
	if (i <= sqlite3_bind_parameter_count(s))
		sqlite3_bind_int64(s, i, v);
}

static void bind_keys(sqlite3_stmt *s, const uint8_t *key, size_t key_len,
		      const uint8_t *end, size_t end_len, enum keymode km)
{
	bind_blob(s, 1, key, key_len);
	if (km == KM_RANGE)
		bind_blob(s, 2, end, end_len);
}

static enum keymode keymode_of(const uint8_t *end, size_t end_len)
{
	if (end_len == 0)
		return KM_EQ;
	if (end_len == 1 && end[0] == 0)
		return KM_FROM;
	return KM_RANGE;
}

static int prepare(struct mvcc *m, const char *sql, sqlite3_stmt **out)
{
	int rc = sqlite3_prepare_v3(m->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
	if (rc != SQLITE_OK)
		return db_fail(m, rc, "prepare");
	return CAP_OK;
}

/* Runs a statement that returns no rows. */
static int step_done(struct mvcc *m, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return db_fail(m, rc, what);
	return CAP_OK;
}

/* ---- value encoding ---- */

static int zbuf_reserve(struct mvcc *m, size_t n)
{
	if (m->zcap >= n)
		return CAP_OK;
	size_t cap = m->zcap ? m->zcap : 4096;
	while (cap < n)
		cap *= 2;
	uint8_t *p = realloc(m->zbuf, cap);
	if (p == NULL)
		return fail(m, CAP_ENOMEM, "out of memory");
	m->zbuf = p;
	m->zcap = cap;
	return CAP_OK;
}

/* Picks the stored form of a value: lz4 (4-byte little-endian raw length,
 * then the block) when that is smaller, else the raw bytes. *data may point
 * into m->zbuf, valid until the next encode. */
static int value_encode(struct mvcc *m, const uint8_t *value, size_t len,
			const uint8_t **data, size_t *dlen, int *enc)
{
	*data = value;
	*dlen = len;
	*enc = ENC_RAW;
	if (len < MVCC_COMPRESS_MIN || len > LZ4_MAX_INPUT_SIZE)
		return CAP_OK;
	int bound = LZ4_compressBound((int)len);
	int err = zbuf_reserve(m, (size_t)bound + 4);
	if (err)
		return err;
	/* LZ4_compress_default clears a 16 KiB state on every call, which cost
	 * more than compressing a small value; a fast reset before each value
	 * keeps every block independent (no dictionary) at a fraction of it. */
	if (m->lz4 == NULL && (m->lz4 = LZ4_createStream()) == NULL)
		return CAP_ENOMEM;
	LZ4_resetStream_fast(m->lz4);
	int c = LZ4_compress_fast_continue(m->lz4, (const char *)value, (char *)m->zbuf + 4,
					   (int)len, bound, 1);
	if (c <= 0 || (size_t)c + 4 >= len)
		return CAP_OK;
	m->zbuf[0] = (uint8_t)len;
	m->zbuf[1] = (uint8_t)(len >> 8);
	m->zbuf[2] = (uint8_t)(len >> 16);
	m->zbuf[3] = (uint8_t)(len >> 24);
	*data = m->zbuf;
	*dlen = (size_t)c + 4;
	*enc = ENC_LZ4;
	return CAP_OK;
}

/* The length of a stored value once decoded; CAP_ECORRUPT for a bad row. */
static int value_raw_len(int enc, const uint8_t *blob, size_t blen, size_t *len)
{
	if (enc == ENC_RAW) {
		*len = blen;
		return CAP_OK;
	}
	if (enc != ENC_LZ4 || blen < 4)
		return CAP_ECORRUPT;
	*len = (size_t)blob[0] | (size_t)blob[1] << 8 | (size_t)blob[2] << 16 |
	       (size_t)blob[3] << 24;
	return CAP_OK;
}

static int value_decode_into(int enc, const uint8_t *blob, size_t blen, uint8_t *dst, size_t len)
{
	if (enc == ENC_RAW) {
		if (len)
			memcpy(dst, blob, len);
		return CAP_OK;
	}
	int n = LZ4_decompress_safe((const char *)blob + 4, (char *)dst, (int)(blen - 4), (int)len);
	if (n < 0 || (size_t)n != len)
		return CAP_ECORRUPT;
	return CAP_OK;
}

/* Decodes the (enc, value) columns at col into a malloc'd copy. */
static int column_value(struct mvcc *m, sqlite3_stmt *s, int col, uint8_t **out, size_t *out_len)
{
	int enc = sqlite3_column_int(s, col);
	const uint8_t *blob = sqlite3_column_blob(s, col + 1);
	size_t blen = (size_t)sqlite3_column_bytes(s, col + 1);
	size_t len;
	*out = NULL;
	*out_len = 0;
	if (value_raw_len(enc, blob, blen, &len))
		return fail(m, CAP_ECORRUPT, "stored value is damaged");
	if (len == 0)
		return CAP_OK;
	uint8_t *p = malloc(len);
	if (p == NULL)
		return fail(m, CAP_ENOMEM, "out of memory");
	if (value_decode_into(enc, blob, blen, p, len)) {
		free(p);
		return fail(m, CAP_ECORRUPT, "stored value is damaged");
	}
	*out = p;
	*out_len = len;
	return CAP_OK;
}

static int column_key(struct mvcc *m, sqlite3_stmt *s, int col, uint8_t **out, size_t *out_len)
{
	const void *p = sqlite3_column_blob(s, col);
	size_t n = (size_t)sqlite3_column_bytes(s, col);
	/* Keys are never NULL for a caller, even empty ones. */
	uint8_t *k = malloc(n ? n : 1);
	if (k == NULL)
		return fail(m, CAP_ENOMEM, "out of memory");
	if (n)
		memcpy(k, p, n);
	*out = k;
	*out_len = n;
	return CAP_OK;
}

/* Fills kv from a row laid out as key, create_rev, mod_rev, version, lease,
 * enc, value. */
static int row_to_kv(struct mvcc *m, sqlite3_stmt *s, bool with_value, struct mvcc_kv *kv)
{
	memset(kv, 0, sizeof(*kv));
	int err = column_key(m, s, 0, &kv->key, &kv->key_len);
	if (err)
		return err;
	kv->create_rev = sqlite3_column_int64(s, 1);
	kv->mod_rev = sqlite3_column_int64(s, 2);
	kv->version = sqlite3_column_int64(s, 3);
	kv->lease = sqlite3_column_int64(s, 4);
	if (with_value) {
		err = column_value(m, s, 5, &kv->value, &kv->value_len);
		if (err) {
			mvcc_kv_clear(kv);
			return err;
		}
	}
	return CAP_OK;
}

/* row_to_kv without copies: key, and a value stored uncompressed, point
 * into the row (valid until the statement steps on); a compressed value
 * is decoded into *owned, which the caller frees. */
static int row_borrow(struct mvcc *m, sqlite3_stmt *s, bool with_value, struct mvcc_kv *kv,
		      uint8_t **owned)
{
	memset(kv, 0, sizeof(*kv));
	*owned = NULL;
	kv->key_len = (size_t)sqlite3_column_bytes(s, 0);
	/* Keys are never NULL for a caller, even empty ones. */
	kv->key = kv->key_len ? (uint8_t *)(uintptr_t)sqlite3_column_blob(s, 0)
			      : (uint8_t *)(uintptr_t)"";
	kv->create_rev = sqlite3_column_int64(s, 1);
	kv->mod_rev = sqlite3_column_int64(s, 2);
	kv->version = sqlite3_column_int64(s, 3);
	kv->lease = sqlite3_column_int64(s, 4);
	if (!with_value)
		return CAP_OK;
	if (sqlite3_column_int(s, 5) != ENC_RAW) {
		int err = column_value(m, s, 5, owned, &kv->value_len);
		kv->value = *owned;
		return err;
	}
	kv->value_len = (size_t)sqlite3_column_bytes(s, 6);
	kv->value = kv->value_len ? (uint8_t *)(uintptr_t)sqlite3_column_blob(s, 6) : NULL;
	return CAP_OK;
}

static struct mvcc_kv *kvs_push(struct mvcc *m, struct mvcc_kvs *kvs)
{
	if (kvs->n == kvs->cap) {
		size_t cap = kvs->cap ? kvs->cap * 2 : 8;
		struct mvcc_kv *v = realloc(kvs->v, cap * sizeof(*v));
		if (v == NULL) {
			fail(m, CAP_ENOMEM, "out of memory");
			return NULL;
		}
		kvs->v = v;
		kvs->cap = cap;
	}
	struct mvcc_kv *kv = &kvs->v[kvs->n];
	memset(kv, 0, sizeof(*kv));
	return kv;
}

static void kvs_truncate(struct mvcc_kvs *kvs, size_t n)
{
	while (kvs->n > n)
		mvcc_kv_clear(&kvs->v[--kvs->n]);
}

/* ---- opening, checking, closing ---- */

static int exec(sqlite3 *db, const char *sql, char *errmsg)
{
	char *e = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &e);
	if (rc != SQLITE_OK) {
		cap_errmsg_printf(errmsg, "%s: %s", sql, e ? e : sqlite3_errstr(rc));
		sqlite3_free(e);
		return map_sqlite(rc);
	}
	return CAP_OK;
}

/* Runs a one-row one-column integer query. */
static int query_i64(sqlite3 *db, const char *sql, int64_t *out, char *errmsg)
{
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		goto err;
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_finalize(s);
		if (rc == SQLITE_DONE) {
			cap_errmsg_printf(errmsg, "%s: no row", sql);
			return CAP_ECORRUPT;
		}
		goto err;
	}
	*out = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return CAP_OK;
err:
	cap_errmsg_printf(errmsg, "%s: %s", sql, sqlite3_errmsg(db));
	return map_sqlite(rc);
}

static int meta_read(sqlite3 *db, const char *name, int64_t *out, char *errmsg)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT value FROM meta WHERE name = '%s'", name);
	int err = query_i64(db, sql, out, errmsg);
	if (err == CAP_ECORRUPT)
		cap_errmsg_printf(errmsg, "database has no %s entry", name);
	return err;
}

/* Checks that db is an undamaged capstan database of a schema version this
 * code reads or migrates (*schema gets it). A file with no tables and no
 * application id is new: *fresh is set when fresh is not NULL, and refused
 * otherwise. Every refusal is CAP_ECORRUPT with the reason in errmsg. */
static int db_check(sqlite3 *db, bool *fresh, int64_t *schema, char *errmsg)
{
	int64_t app_id, ntables, v;
	int err = query_i64(db, "PRAGMA application_id", &app_id, errmsg);
	if (err)
		goto refuse;
	err = query_i64(db, "SELECT count(*) FROM sqlite_master", &ntables, errmsg);
	if (err)
		goto refuse;
	if (app_id == 0 && ntables == 0) {
		if (fresh == NULL) {
			cap_errmsg_printf(errmsg, "empty database");
			return CAP_ECORRUPT;
		}
		*fresh = true;
		return CAP_OK;
	}
	if (app_id != MVCC_APP_ID) {
		cap_errmsg_printf(errmsg, "not a capstan database (application id %lld)",
				  (long long)app_id);
		return CAP_ECORRUPT;
	}

	/* quick_check walks every b-tree page: it catches torn and overwritten
	 * pages in O(size) without the index cross-checks of integrity_check. */
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL);
	if (rc != SQLITE_OK) {
		cap_errmsg_printf(errmsg, "quick_check: %s", sqlite3_errmsg(db));
		return rc == SQLITE_NOMEM ? CAP_ENOMEM : CAP_ECORRUPT;
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		cap_errmsg_printf(errmsg, "database is damaged (quick_check: %s)",
				  sqlite3_errmsg(db));
		sqlite3_finalize(s);
		return rc == SQLITE_NOMEM ? CAP_ENOMEM : CAP_ECORRUPT;
	}
	const char *res = (const char *)sqlite3_column_text(s, 0);
	if (res == NULL || strcmp(res, "ok") != 0) {
		cap_errmsg_printf(errmsg, "database is damaged (quick_check: %s)",
				  res ? res : "failed");
		for (char *p = errmsg; *p; p++)
			if (*p == '\n')
				*p = ' ';
		sqlite3_finalize(s);
		return CAP_ECORRUPT;
	}
	sqlite3_finalize(s);

	err = meta_read(db, "schema", &v, errmsg);
	if (err)
		goto refuse;
	if (v != 1 && v != MVCC_SCHEMA_VERSION) {
		cap_errmsg_printf(errmsg, "unknown schema version %lld", (long long)v);
		return CAP_ECORRUPT;
	}
	*schema = v;
	err = query_i64(db, v == 1 ? "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
				     " AND name IN ('kv', 'cur', 'lease', 'meta', 'info')"
				   : "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
				     " AND name IN ('hist', 'cur', 'lease', 'meta', 'info')",
			&ntables, errmsg);
	if (err)
		goto refuse;
	if (ntables != 5) {
		cap_errmsg_printf(errmsg, "database lacks capstan tables");
		return CAP_ECORRUPT;
	}
	static const char *const names[] = {"revision", "compact_revision", "applied_index"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		err = meta_read(db, names[i], &v, errmsg);
		if (err)
			goto refuse;
	}
	return CAP_OK;
refuse:
	cap_errmsg_wrapf(errmsg, "check");
	/* Anything but memory exhaustion means the file cannot be trusted. */
	return err == CAP_ENOMEM ? err : CAP_ECORRUPT;
}

static void read_release(struct mvcc *m);

static void db_close(struct mvcc *m)
{
	keycache_clear(m->keys);
	read_release(m);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(m->st[i]);
	for (int a = 0; a < SRC_COUNT; a++)
		for (int b = 0; b < KM_COUNT; b++)
			for (int c = 0; c < SORTV_COUNT; c++)
				sqlite3_finalize(m->range_st[a][b][c]);
	for (int a = 0; a < 2; a++)
		for (int b = 0; b < KM_COUNT; b++)
			sqlite3_finalize(m->count_st[a][b]);
	for (int b = 0; b < KM_COUNT; b++) {
		sqlite3_finalize(m->events_st[b]);
		sqlite3_finalize(m->tomb_st[b]);
		sqlite3_finalize(m->curdel_st[b]);
	}
	memset(m->st, 0, sizeof(m->st));
	memset(m->range_st, 0, sizeof(m->range_st));
	memset(m->count_st, 0, sizeof(m->count_st));
	memset(m->events_st, 0, sizeof(m->events_st));
	memset(m->tomb_st, 0, sizeof(m->tomb_st));
	memset(m->curdel_st, 0, sizeof(m->curdel_st));
	if (m->db)
		sqlite3_close(m->db);
	m->db = NULL;
}

/* The page cache is what the store's memory grows with as the data does:
 * it is bounded by configuration, not by the data. */
static int set_cache(struct mvcc *m, char *errmsg)
{
	char sql[64];
	snprintf(sql, sizeof sql, "PRAGMA cache_size=-%u", m->cache_kib);
	return exec(m->db, sql, errmsg);
}

/* sqlite calls this after each commit instead of its automatic checkpoint
 * (installing a WAL hook turns that off). */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	(void)db;
	(void)name;
	((struct mvcc *)arg)->wal_frames = frames;
	return SQLITE_OK;
}

/* Rewrites a version 1 database as version 2 in one transaction: history
 * copied in revision order (so it packs as new writes would), each row
 * linked to its key's version before it; the live index re-pointed at the
 * new rows. A crash leaves the file as it was. A history the new ids
 * cannot hold is refused, never cut. The old tables' pages go to the free
 * list, which later writes reuse. */
static int migrate_v1(sqlite3 *db, char *errmsg)
{
	int64_t max_rev, max_sub;
	int err;
	if ((err = query_i64(db, "SELECT coalesce(max(mod_rev), 0) FROM kv", &max_rev, errmsg)) ||
	    (err = query_i64(db, "SELECT coalesce(max(sub), 0) FROM kv", &max_sub, errmsg)))
		return err;
	if (max_rev >= HIST_MAX_REV || max_sub >= HIST_MAX_SUB) {
		cap_errmsg_printf(errmsg, "cannot migrate schema 1: revision %lld or sub-revision"
				  " %lld out of range", (long long)max_rev, (long long)max_sub);
		return CAP_ECORRUPT;
	}
	/* sqlite as distributions build it zeroes every page it frees
	 * (SECURE_DELETE), which made dropping the old tables hold them all
	 * as dirty pages: ~40 MiB more memory for a 40 MiB file. Their pages
	 * are only put on the free list here; the setting is put back after. */
	int64_t secure;
	if ((err = query_i64(db, "PRAGMA secure_delete", &secure, errmsg)) ||
	    (err = exec(db, "PRAGMA secure_delete=0", errmsg)))
		return err;
	/* The old live index moves aside first: the new one takes its names. */
	err = exec(db, "BEGIN IMMEDIATE;"
		   "DROP INDEX cur_lease;"
		   "ALTER TABLE cur RENAME TO cur_v1;"
		   HIST_CUR_SQL
		   /* In revision order by the old revision index, each row's
		    * prev by a seek in the old key order: no sort of the
		    * whole history (temp_store is memory). */
		   "INSERT INTO hist(id, key, prev, create_rev, version, lease, enc, value)"
		   " SELECT (mod_rev << " HIST_SB ") + sub, key,"
		   " coalesce((SELECT (p.mod_rev << " HIST_SB ") + p.sub FROM kv AS p"
		   " WHERE p.key = kv.key AND p.mod_rev <= kv.mod_rev"
		   " AND (p.mod_rev < kv.mod_rev OR p.sub < kv.sub)"
		   " ORDER BY p.mod_rev DESC, p.sub DESC LIMIT 1), 0),"
		   " create_rev, version, lease, enc, value FROM kv INDEXED BY kv_rev"
		   " ORDER BY mod_rev, sub;"
		   "INSERT INTO cur(key, id, create_rev, version, lease)"
		   " SELECT key, (mod_rev << " HIST_SB ") + sub, create_rev, version, lease"
		   " FROM cur_v1;"
		   "DROP TABLE cur_v1;"
		   "DROP TABLE kv;"
		   "UPDATE meta SET value = 2 WHERE name = 'schema';"
		   "COMMIT", errmsg);
	if (err)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA secure_delete=%d", secure ? 1 : 0);
	sqlite3_exec(db, sql, NULL, NULL, NULL);
	return err;
}

/* Opens m->path into m->db, creating the schema for a new file. */
static int db_open(struct mvcc *m, char *errmsg)
{
	bool fresh = false;
	int64_t schema = MVCC_SCHEMA_VERSION;
	int err;
	int rc = sqlite3_open_v2(m->path, &m->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		cap_errmsg_printf(errmsg, "open %s: %s", m->path,
				  m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(rc));
		err = map_sqlite(rc);
		goto err_after_open;
	}
	sqlite3_extended_result_codes(m->db, 1);

	err = db_check(m->db, &fresh, &schema, errmsg);
	if (err)
		goto err_after_open;
	if (fresh) {
		/* Before anything is written: a file's page size is fixed by its
		 * first write. */
		char sql[64];
		snprintf(sql, sizeof sql, "PRAGMA page_size=%d", MVCC_PAGE_SIZE);
		err = exec(m->db, sql, errmsg);
		if (err)
			goto err_after_open;
	}
	err = exec(m->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
		   " PRAGMA temp_store=MEMORY;"
		   " PRAGMA journal_size_limit=67108864", errmsg);
	if (err)
		goto err_after_open;
	err = set_cache(m, errmsg);
	if (err)
		goto err_after_open;
	if (m->bg_checkpoints)
		sqlite3_wal_hook(m->db, wal_hook, m);
	if (fresh) {
		char sql[sizeof(schema_sql) + 512];
		snprintf(sql, sizeof(sql),
			 "BEGIN; %s"
			 "INSERT INTO meta(name, value) VALUES('schema', %d), ('revision', 1),"
			 " ('compact_revision', 0), ('applied_index', 0);"
			 "PRAGMA application_id=%d; COMMIT",
			 schema_sql, MVCC_SCHEMA_VERSION, MVCC_APP_ID);
		err = exec(m->db, sql, errmsg);
		if (err)
			goto err_after_open;
	} else if (schema == 1) {
		err = migrate_v1(m->db, errmsg);
		if (err) {
			cap_errmsg_wrapf(errmsg, "migrate");
			goto err_after_open;
		}
	}

	int64_t applied;
	if ((err = meta_read(m->db, "revision", &m->rev, errmsg)) ||
	    (err = meta_read(m->db, "compact_revision", &m->compact_rev, errmsg)) ||
	    (err = meta_read(m->db, "applied_index", &applied, errmsg)))
		goto err_after_open;
	m->applied_index = (uint64_t)applied;
	m->committed_rev = m->rev;
	m->committed_compact_rev = m->compact_rev;

	for (int i = 0; i < ST_COUNT; i++) {
		err = prepare(m, fixed_sql[i], &m->st[i]);
		if (err) {
			cap_errmsg_printf(errmsg, "%s", m->errmsg);
			goto err_after_open;
		}
	}
	return CAP_OK;

err_after_open:
	db_close(m);
	return err;
}

int mvcc_open(const char *path, struct mvcc **out, char *errmsg)
{
	struct mvcc *m = calloc(1, sizeof(*m));
	if (m == NULL)
		goto err_nomem;
	m->path = strdup(path);
	if (m->path == NULL)
		goto err_after_alloc;
	m->cache_kib = MVCC_CACHE_KIB_DEFAULT;
	/* Without memory for it the store just reads every live row. */
	m->keys = keycache_new((size_t)MVCC_KEY_CACHE_KIB_DEFAULT * 1024);
	pthread_mutex_init(&m->bg_lock, NULL);

	/* A leftover of a restore interrupted before its rename. */
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.restore", path);
	unlink(tmp);

	int err = db_open(m, errmsg);
	if (err) {
		cap_errmsg_wrapf(errmsg, "%s", path);
		pthread_mutex_destroy(&m->bg_lock);
		keycache_free(m->keys);
		free(m->path);
		free(m);
		return err;
	}
	*out = m;
	return CAP_OK;

err_after_alloc:
	free(m);
err_nomem:
	cap_errmsg_printf(errmsg, "out of memory");
	return CAP_ENOMEM;
}

int mvcc_set_key_cache_kib(struct mvcc *m, unsigned kib)
{
	keycache_free(m->keys);
	m->keys = NULL;
	if (kib == 0)
		return CAP_OK;
	m->keys = keycache_new((size_t)kib * 1024);
	return m->keys != NULL ? CAP_OK : fail(m, CAP_ENOMEM, "out of memory for the key cache");
}

int mvcc_set_cache_kib(struct mvcc *m, unsigned kib)
{
	m->cache_kib = kib ? kib : MVCC_CACHE_KIB_DEFAULT;
	if (m->db == NULL)
		return CAP_OK;
	return set_cache(m, m->errmsg);
}

void mvcc_close(struct mvcc *m)
{
	if (m == NULL)
		return;
	if (m->in_batch)
		mvcc_rollback(m);
	pthread_mutex_lock(&m->bg_lock);
	db_close(m);
	pthread_mutex_unlock(&m->bg_lock);
	pthread_mutex_destroy(&m->bg_lock);
	free(m->zbuf);
	LZ4_freeStream(m->lz4);
	keycache_free(m->keys);
	free(m->path);
	free(m);
}

const char *mvcc_errmsg(const struct mvcc *m)
{
	return m->errmsg;
}

int64_t mvcc_rev(const struct mvcc *m)
{
	return m->rev;
}

int64_t mvcc_compact_rev(const struct mvcc *m)
{
	return m->compact_rev;
}

uint64_t mvcc_applied_index(const struct mvcc *m)
{
	return m->applied_index;
}

/* ---- batches and txns ---- */

/* ---- the read transaction of ranges ----
 *
 * Ranges outside a batch share one read transaction (a deferred BEGIN),
 * open from the first such range until anything else uses the connection:
 * a statement in autocommit mode takes and drops sqlite's WAL read lock
 * (file locks and shared-memory reads) by itself, which was about a tenth
 * of a range read's CPU. It never reads an old state: this connection is
 * the only writer (the background checkpointer only copies pages), and
 * every other entry point ends the read transaction first (need_db), so a
 * batch begins, a checkpoint or snapshot runs, and a restore replaces the
 * file with none open. */
static void read_hold(struct mvcc *m)
{
	if (m->read_open || m->in_batch || m->db == NULL)
		return;
	int rc = sqlite3_step(m->st[ST_BEGIN_READ]);
	sqlite3_reset(m->st[ST_BEGIN_READ]);
	/* Failing, reads just go on in autocommit mode. */
	m->read_open = rc == SQLITE_DONE;
}

static void read_release(struct mvcc *m)
{
	if (!m->read_open)
		return;
	m->read_open = false;
	int rc = sqlite3_step(m->st[ST_COMMIT]);
	sqlite3_reset(m->st[ST_COMMIT]);
	/* A read-only transaction ends without writing; should it not, it
	 * must still not be left open under the next batch. */
	if (rc != SQLITE_DONE || !sqlite3_get_autocommit(m->db)) {
		sqlite3_step(m->st[ST_ROLLBACK]);
		sqlite3_reset(m->st[ST_ROLLBACK]);
	}
}

/* The checks of every entry point but ranges, which keep the read
 * transaction (need_db_keep). */
static int need_db_keep(struct mvcc *m)
{
	if (m->db == NULL)
		return fail(m, CAP_EIO, "database is closed after a failed restore");
	return CAP_OK;
}

static int need_db(struct mvcc *m)
{
	read_release(m);
	return need_db_keep(m);
}

static int need_batch(struct mvcc *m)
{
	if (m->db == NULL)
		return need_db(m);
	if (!m->in_batch)
		return fail(m, CAP_EINVAL, "write outside a batch");
	return CAP_OK;
}

int mvcc_begin(struct mvcc *m)
{
	int err = need_db(m);
	if (err)
		return err;
	if (m->in_batch)
		return fail(m, CAP_EINVAL, "batch already open");
	err = step_done(m, m->st[ST_BEGIN], "begin");
	if (err)
		return err;
	m->in_batch = true;
	m->in_txn = false;
	return CAP_OK;
}

static int meta_write(struct mvcc *m, const char *name, int64_t v)
{
	sqlite3_stmt *s = m->st[ST_META_SET];
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, v);
	return step_done(m, s, "meta");
}

int mvcc_commit(struct mvcc *m, uint64_t applied_index)
{
	int err = need_batch(m);
	if (err)
		return err;
	if (m->in_txn)
		mvcc_txn_end(m);
	if ((err = meta_write(m, "revision", m->rev)) ||
	    (err = meta_write(m, "applied_index", (int64_t)applied_index)))
		goto err_rollback;
	err = step_done(m, m->st[ST_COMMIT], "commit");
	if (err)
		goto err_rollback;
	m->in_batch = false;
	m->applied_index = applied_index;
	m->committed_rev = m->rev;
	m->committed_compact_rev = m->compact_rev;
	return CAP_OK;

err_rollback:
	{
		/* Keep the first error's message. */
		char msg[CAP_ERRMSG_SIZE];
		memcpy(msg, m->errmsg, sizeof(msg));
		mvcc_rollback(m);
		memcpy(m->errmsg, msg, sizeof(msg));
	}
	return err;
}

void mvcc_rollback(struct mvcc *m)
{
	if (!m->in_batch || m->db == NULL)
		return;
	/* ROLLBACK only fails when no transaction is open, which sqlite may
	 * already have done itself after an I/O error. */
	step_done(m, m->st[ST_ROLLBACK], "rollback");
	keycache_clear(m->keys);
	m->in_batch = false;
	m->in_txn = false;
	m->txn_wrote = false;
	m->rev = m->committed_rev;
	m->compact_rev = m->committed_compact_rev;
}

void mvcc_txn_begin(struct mvcc *m)
{
	m->in_txn = true;
	m->txn_wrote = false;
	m->txn_sub = 0;
}

int64_t mvcc_txn_end(struct mvcc *m)
{
	if (m->in_txn && m->txn_wrote)
		m->rev++;
	m->in_txn = false;
	m->txn_wrote = false;
	m->txn_sub = 0;
	return m->rev;
}

int64_t mvcc_txn_rev(const struct mvcc *m)
{
	return m->rev + 1;
}

/* Opens a txn around a single write issued outside one. */
static bool txn_enter(struct mvcc *m)
{
	if (m->in_txn)
		return false;
	mvcc_txn_begin(m);
	return true;
}

static void txn_leave(struct mvcc *m, bool implicit)
{
	if (implicit)
		mvcc_txn_end(m);
}

/* ---- writes ---- */

static int lease_exists(struct mvcc *m, int64_t id, bool *exists, int64_t *ttl)
{
	sqlite3_stmt *s = m->st[ST_LEASE_GET];
	sqlite3_bind_int64(s, 1, id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && ttl)
		*ttl = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(m, rc, "lease");
	*exists = rc == SQLITE_ROW;
	return CAP_OK;
}

static int64_t hist_id(int64_t rev, int64_t sub)
{
	return (rev << HIST_SUB_BITS) + sub;
}

/* Refuses a write of n more rows in the open txn's revision that hist ids
 * cannot hold (see HIST_SUB_BITS), before anything is written. */
static int id_room(struct mvcc *m, int64_t n)
{
	int64_t sub = m->in_txn ? m->txn_sub : 0;
	if (m->rev + 1 >= HIST_MAX_REV)
		return fail(m, CAP_ENOSPACE, "revision space exhausted");
	if (sub + n > HIST_MAX_SUB)
		return fail(m, CAP_ETOOLARGE, "too many writes in one revision");
	return CAP_OK;
}

/* After a statement appended n rows from sub-revision sub on: if they went
 * past what ids hold, takes them back and refuses the write. */
static int id_room_after(struct mvcc *m, int64_t sub, int64_t n)
{
	if (sub + n <= HIST_MAX_SUB)
		return CAP_OK;
	sqlite3_stmt *s = m->st[ST_UNDO];
	sqlite3_bind_int64(s, 1, hist_id(m->rev + 1, sub));
	int err = step_done(m, s, "undo");
	if (err)
		return err;
	return fail(m, CAP_ETOOLARGE, "too many writes in one revision");
}

/* The value of history row id, into kv (which then owns it). */
static int read_value(struct mvcc *m, int64_t id, struct mvcc_kv *kv)
{
	sqlite3_stmt *s = m->st[ST_KV_VALUE];
	sqlite3_bind_int64(s, 1, id);
	int rc = sqlite3_step(s);
	int err;
	if (rc == SQLITE_ROW)
		err = column_value(m, s, 0, &kv->value, &kv->value_len);
	else
		err = rc == SQLITE_DONE ? fail(m, CAP_ECORRUPT, "live key without its version")
					: db_fail(m, rc, "put");
	sqlite3_reset(s);
	return err;
}

static int put(struct mvcc *m, const uint8_t *key, size_t key_len,
	       const uint8_t *value, size_t value_len, int64_t lease,
	       struct mvcc_kv *prev, bool prev_value, struct mvcc_kv *cur)
{
	int err = need_batch(m);
	if (err)
		return err;
	if (key_len == 0)
		return fail(m, CAP_EKEYEMPTY, "key is not provided");
	if (prev)
		memset(prev, 0, sizeof(*prev));
	if (lease != 0) {
		bool exists;
		if ((err = lease_exists(m, lease, &exists, NULL)))
			return err;
		if (!exists)
			return fail(m, CAP_ELEASENOTFOUND, "requested lease not found");
	}
	if ((err = id_room(m, 1)))
		return err;
	bool implicit = txn_enter(m);
	int64_t rev = m->rev + 1;
	int64_t id = hist_id(rev, m->txn_sub);
	int64_t create_rev = rev, version = 1, prev_id = 0;

	struct keycache_row live;
	sqlite3_stmt *s = m->st[ST_CUR_GET];
	int rc;
	if (keycache_get(m->keys, key, key_len, &live)) {
		rc = SQLITE_ROW;
	} else {
		bind_blob(s, 1, key, key_len);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			live.create_rev = sqlite3_column_int64(s, 0);
			live.id = sqlite3_column_int64(s, 1);
			live.version = sqlite3_column_int64(s, 2);
			live.lease = sqlite3_column_int64(s, 3);
		}
	}
	if (rc == SQLITE_ROW) {
		sqlite3_reset(s);
		create_rev = live.create_rev;
		prev_id = live.id;
		version = live.version + 1;
		if (prev) {
			prev->create_rev = create_rev;
			prev->mod_rev = prev_id >> HIST_SUB_BITS;
			prev->version = version - 1;
			prev->lease = live.lease;
			prev->key = malloc(key_len);
			if (prev->key == NULL) {
				err = fail(m, CAP_ENOMEM, "out of memory");
				goto err_after_prev;
			}
			memcpy(prev->key, key, key_len);
			prev->key_len = key_len;
			if (prev_value && (err = read_value(m, prev_id, prev)))
				goto err_after_prev;
		}
	} else if (rc == SQLITE_DONE) {
		/* Not live: the chain goes on from its last tombstone, if any. */
		sqlite3_reset(s);
		s = m->st[ST_TOMB_HEAD];
		bind_blob(s, 1, key, key_len);
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW) {
			err = db_fail(m, rc, "put");
			sqlite3_reset(s);
			goto err_after_prev;
		}
		prev_id = sqlite3_column_int64(s, 0);
	} else {
		err = db_fail(m, rc, "put");
		sqlite3_reset(s);
		goto err_after_prev;
	}
	sqlite3_reset(s);

	const uint8_t *data;
	size_t dlen;
	int enc;
	err = value_encode(m, value, value_len, &data, &dlen, &enc);
	if (err)
		goto err_after_prev;
	s = m->st[ST_KV_INSERT];
	sqlite3_bind_int64(s, 1, id);
	bind_blob(s, 2, key, key_len);
	sqlite3_bind_int64(s, 3, prev_id);
	sqlite3_bind_int64(s, 4, create_rev);
	sqlite3_bind_int64(s, 5, version);
	sqlite3_bind_int64(s, 6, lease);
	sqlite3_bind_int(s, 7, enc);
	bind_blob(s, 8, data, dlen);
	if ((err = step_done(m, s, "put")))
		goto err_after_prev;

	s = m->st[ST_CUR_PUT];
	bind_blob(s, 1, key, key_len);
	sqlite3_bind_int64(s, 2, id);
	sqlite3_bind_int64(s, 3, create_rev);
	sqlite3_bind_int64(s, 4, version);
	sqlite3_bind_int64(s, 5, lease);
	if ((err = step_done(m, s, "put")))
		goto err_after_prev;
	keycache_put(m->keys, key, key_len,
		     &(struct keycache_row){.id = id, .create_rev = create_rev,
					    .version = version, .lease = lease});

	m->txn_sub++;
	m->txn_wrote = true;
	if (cur) {
		memset(cur, 0, sizeof(*cur));
		cur->create_rev = create_rev;
		cur->mod_rev = rev;
		cur->version = version;
		cur->lease = lease;
	}
	txn_leave(m, implicit);
	return CAP_OK;

err_after_prev:
	/* The batch is rolled back after a failed write, which empties the
	 * cache; dropping the key too keeps it right even before that. */
	keycache_drop(m->keys, key, key_len);
	if (prev)
		mvcc_kv_clear(prev);
	txn_leave(m, implicit);
	return err;
}

int mvcc_put(struct mvcc *m, const uint8_t *key, size_t key_len,
	     const uint8_t *value, size_t value_len, int64_t lease,
	     struct mvcc_kv *prev, struct mvcc_kv *cur)
{
	return put(m, key, key_len, value, value_len, lease, prev, true, cur);
}

int mvcc_put_prev_meta(struct mvcc *m, const uint8_t *key, size_t key_len,
		       const uint8_t *value, size_t value_len, int64_t lease,
		       struct mvcc_kv *prev, struct mvcc_kv *cur)
{
	return put(m, key, key_len, value, value_len, lease, prev, false, cur);
}

/* Builds a statement variant from SQL text on first use. */
static int lazy(struct mvcc *m, sqlite3_stmt **slot, const char *sql)
{
	if (*slot)
		return CAP_OK;
	return prepare(m, sql, slot);
}

static const char *keycond(enum keymode km)
{
	switch (km) {
	case KM_EQ: return "x.key = ?1";
	case KM_RANGE: return "x.key >= ?1 AND x.key < ?2";
	default: return "x.key >= ?1";
	}
}

/* Events scan hist by id for a range of keys; the unary plus keeps sqlite
 * from choosing the tombstone index instead. */
static const char *keycond_norange(enum keymode km)
{
	switch (km) {
	case KM_EQ: return "+x.key = ?1";
	case KM_RANGE: return "+x.key >= ?1 AND +x.key < ?2";
	default: return "+x.key >= ?1";
	}
}

static int range_read(struct mvcc *m, const uint8_t *key, size_t key_len,
		      const uint8_t *end, size_t end_len, const struct mvcc_range_opts *opts,
		      struct mvcc_kvs *out, int64_t *count, bool *more);

int mvcc_delete_range(struct mvcc *m, const uint8_t *key, size_t key_len,
		      const uint8_t *end, size_t end_len, struct mvcc_kvs *prevs,
		      int64_t *deleted)
{
	int64_t dummy;
	if (deleted == NULL)
		deleted = &dummy;
	*deleted = 0;
	int err = need_batch(m);
	if (err)
		return err;
	if (key_len == 0)
		return fail(m, CAP_EKEYEMPTY, "key is not provided");
	enum keymode km = keymode_of(end, end_len);
	bool implicit = txn_enter(m);
	size_t prevs_start = prevs ? prevs->n : 0;
	/* Which keys a range held is sqlite's to say: forget them all. */
	if (km == KM_EQ)
		keycache_drop(m->keys, key, key_len);
	else
		keycache_clear(m->keys);

	if (prevs) {
		struct mvcc_range_opts o = {0};
		int64_t c;
		bool more;
		if ((err = range_read(m, key, key_len, end, end_len, &o, prevs, &c, &more)))
			goto err;
	}

	char sql[512];
	/* ?3 is the first id of the tombstones. */
	snprintf(sql, sizeof(sql),
		 "INSERT INTO hist(id, key, prev, create_rev, version, lease, enc, value)"
		 " SELECT ?3 + row_number() OVER (ORDER BY x.key) - 1, x.key, x.id, 0, 0, 0, 0, NULL"
		 " FROM cur AS x WHERE %s", keycond(km));
	if ((err = lazy(m, &m->tomb_st[km], sql)))
		goto err;
	if ((err = id_room(m, 0)))
		goto err;
	sqlite3_stmt *s = m->tomb_st[km];
	bind_keys(s, key, key_len, end, end_len, km);
	sqlite3_bind_int64(s, 3, hist_id(m->rev + 1, m->txn_sub));
	if ((err = step_done(m, s, "delete")))
		goto err;
	int64_t n = sqlite3_changes64(m->db);
	if (n == 0)
		goto done;
	if ((err = id_room_after(m, m->txn_sub, n)))
		goto err;

	snprintf(sql, sizeof(sql), "DELETE FROM cur AS x WHERE %s", keycond(km));
	if ((err = lazy(m, &m->curdel_st[km], sql)))
		goto err;
	s = m->curdel_st[km];
	bind_keys(s, key, key_len, end, end_len, km);
	if ((err = step_done(m, s, "delete")))
		goto err;
	m->txn_sub += n;
	m->txn_wrote = true;
done:
	*deleted = n;
	txn_leave(m, implicit);
	return CAP_OK;
err:
	if (prevs)
		kvs_truncate(prevs, prevs_start);
	txn_leave(m, implicit);
	return err;
}

/* ---- reads ---- */

static enum sortv sortv_of(const struct mvcc_range_opts *o, bool *value_sort)
{
	enum mvcc_sort_order order = o->sort_order;
	*value_sort = false;
	/* As etcd: no order with a target other than the key means ascending. */
	if (order == MVCC_SORT_NONE && o->sort_target != MVCC_SORT_KEY)
		order = MVCC_SORT_ASCEND;
	bool desc = order == MVCC_SORT_DESCEND;
	switch (o->sort_target) {
	case MVCC_SORT_VERSION: return desc ? SORTV_VER_DESC : SORTV_VER_ASC;
	case MVCC_SORT_CREATE: return desc ? SORTV_CREATE_DESC : SORTV_CREATE_ASC;
	case MVCC_SORT_MOD: return desc ? SORTV_MOD_DESC : SORTV_MOD_ASC;
	case MVCC_SORT_VALUE:
		*value_sort = true;
		return SORTV_KEY_ASC;
	default: return desc ? SORTV_KEY_DESC : SORTV_KEY_ASC;
	}
}

static const char *const order_sql[SORTV_COUNT] = {
	[SORTV_KEY_ASC] = "x.key",
	[SORTV_KEY_DESC] = "x.key DESC",
	[SORTV_VER_ASC] = "x.version, x.key",
	[SORTV_VER_DESC] = "x.version DESC, x.key",
	[SORTV_CREATE_ASC] = "x.create_rev, x.key",
	[SORTV_CREATE_DESC] = "x.create_rev DESC, x.key",
	[SORTV_MOD_ASC] = REV_OF("x.id") ", x.key",
	[SORTV_MOD_DESC] = REV_OF("x.id") " DESC, x.key",
};

/* The same orders for history reads, by result column: 1 key, 2 create_rev,
 * 3 mod_rev, 4 version (their two arms merge on these, see hist_sql). */
static const char *const hist_order_sql[SORTV_COUNT] = {
	[SORTV_KEY_ASC] = "1",
	[SORTV_KEY_DESC] = "1 DESC",
	[SORTV_VER_ASC] = "4, 1",
	[SORTV_VER_DESC] = "4 DESC, 1",
	[SORTV_CREATE_ASC] = "2, 1",
	[SORTV_CREATE_DESC] = "2 DESC, 1",
	[SORTV_MOD_ASC] = "3, 1",
	[SORTV_MOD_DESC] = "3 DESC, 1",
};

/* Current reads: "<select> <key condition>"; history reads: the select
 * list for hist_sql. */
static const char *const src_sql[SRC_COUNT] = {
	[SRC_CUR] = "SELECT x.key, x.create_rev, " REV_OF("x.id") ", x.version, x.lease,"
		" v.enc, v.value FROM cur AS x CROSS JOIN hist AS v ON v.id = x.id WHERE ",
	[SRC_CURK] = "SELECT x.key, x.create_rev, " REV_OF("x.id") ", x.version, x.lease, 0, NULL"
		" FROM cur AS x WHERE ",
	[SRC_HIST] = "SELECT hd.key, x.create_rev, " REV_OF("x.id") ", x.version, x.lease,"
		" x.enc, x.value",
	[SRC_HISTK] = "SELECT hd.key, x.create_rev, " REV_OF("x.id") ", x.version, x.lease, 0, NULL",
};

/* The first hist id past revision ?3. */
#define HIST_BOUND "((?3 + 1) << " HIST_SB ")"
/* The id of head's key's version at revision ?3: its chain walked back from
 * head (the key's newest row) to the first row at or below ?3. A chain that
 * ends above ?3 (the key was created later) gives its last row, which the
 * caller's "x.id < bound" drops. */
#define HIST_WALK \
	"(WITH RECURSIVE w(id) AS (SELECT hd.id UNION ALL SELECT h.prev FROM w" \
	" CROSS JOIN hist AS h ON h.id = w.id WHERE w.id >= " HIST_BOUND " AND h.prev != 0)" \
	" SELECT min(id) FROM w)"
#define HIST_AT "hist AS x ON x.id = " HIST_WALK " WHERE x.id < " HIST_BOUND " AND x.version > 0"

/* History at revision ?3 for a key mode: the select list cols over each
 * key's version there as x (the key as hd.key), filtered by cond. A key's
 * chain starts at its newest row: live in cur, else its last tombstone;
 * the key exists at ?3 unless the row found is a tombstone or was
 * compacted away. For a range the two kinds of keys come from two arms,
 * each in key order from its index, which sqlite merges for an ORDER BY
 * on the result columns: a limit stops the walk early. */
static void hist_sql(enum keymode km, const char *cols, const char *cond, char *buf, size_t size)
{
	const char *kc_cur = km == KM_RANGE ? "hd.key >= ?1 AND hd.key < ?2" : "hd.key >= ?1";
	const char *kc_tomb = km == KM_RANGE ? "t.key >= ?1 AND t.key < ?2" : "t.key >= ?1";
	if (km == KM_EQ)
		snprintf(buf, size,
			 "%s FROM (SELECT ?1 AS key, coalesce((SELECT id FROM cur WHERE key = ?1),"
			 " (SELECT max(id) FROM hist WHERE key = ?1 AND version = 0)) AS id) AS hd"
			 " CROSS JOIN " HIST_AT "%s", cols, cond);
	else
		snprintf(buf, size,
			 "%s FROM cur AS hd CROSS JOIN " HIST_AT " AND %s%s"
			 " UNION ALL %s FROM (SELECT t.key AS key, max(t.id) AS id FROM hist AS t"
			 " WHERE t.version = 0 AND %s"
			 " AND NOT EXISTS (SELECT 1 FROM cur AS c WHERE c.key = t.key) GROUP BY t.key)"
			 " AS hd CROSS JOIN " HIST_AT "%s",
			 cols, kc_cur, cond, cols, kc_tomb, cond);
}

static const char filter_cond[] =
	" AND (?4 = 0 OR " REV_OF("x.id") " >= ?4) AND (?5 = 0 OR " REV_OF("x.id") " <= ?5)"
	" AND (?6 = 0 OR x.create_rev >= ?6) AND (?7 = 0 OR x.create_rev <= ?7)";

static int kv_value_cmp(const void *pa, const void *pb)
{
	const struct mvcc_kv *a = pa, *b = pb;
	size_t n = a->value_len < b->value_len ? a->value_len : b->value_len;
	int c = n ? memcmp(a->value, b->value, n) : 0;
	if (c == 0 && a->value_len != b->value_len)
		c = a->value_len < b->value_len ? -1 : 1;
	if (c == 0) {
		n = a->key_len < b->key_len ? a->key_len : b->key_len;
		c = n ? memcmp(a->key, b->key, n) : 0;
		if (c == 0 && a->key_len != b->key_len)
			c = a->key_len < b->key_len ? -1 : 1;
	}
	return c;
}

static int kv_value_cmp_desc(const void *pa, const void *pb)
{
	const struct mvcc_kv *a = pa, *b = pb;
	size_t n = a->value_len < b->value_len ? a->value_len : b->value_len;
	int c = n ? memcmp(a->value, b->value, n) : 0;
	if (c == 0 && a->value_len != b->value_len)
		c = a->value_len < b->value_len ? -1 : 1;
	if (c != 0)
		return -c;
	/* Ties stay in ascending key order, as for the other targets. */
	return kv_value_cmp(pa, pb);
}

static int count_live(struct mvcc *m, bool hist, enum keymode km, const uint8_t *key,
		      size_t key_len, const uint8_t *end, size_t end_len, int64_t rev,
		      int64_t *count)
{
	char sql[4096], inner[3584];
	if (hist) {
		hist_sql(km, "SELECT 1", "", inner, sizeof(inner));
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM (%s)", inner);
	} else {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM cur AS x WHERE %s", keycond(km));
	}
	int err = lazy(m, &m->count_st[hist][km], sql);
	if (err)
		return err;
	sqlite3_stmt *s = m->count_st[hist][km];
	bind_keys(s, key, key_len, end, end_len, km);
	bind_i64(s, 3, rev);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*count = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW)
		return db_fail(m, rc, "range count");
	return CAP_OK;
}

/* mvcc_range without the argument checks, appending to out; or, when fn
 * is not NULL, handing each kv to fn (mvcc_range_each) with out unused. */
static int range_read_fn(struct mvcc *m, const uint8_t *key, size_t key_len,
			 const uint8_t *end, size_t end_len, const struct mvcc_range_opts *opts,
			 struct mvcc_kvs *out, mvcc_kv_fn fn, void *arg, int64_t *count,
			 bool *more);

static int range_read(struct mvcc *m, const uint8_t *key, size_t key_len,
		      const uint8_t *end, size_t end_len, const struct mvcc_range_opts *opts,
		      struct mvcc_kvs *out, int64_t *count, bool *more)
{
	return range_read_fn(m, key, key_len, end, end_len, opts, out, NULL, NULL, count, more);
}

static int range_read_fn(struct mvcc *m, const uint8_t *key, size_t key_len,
			 const uint8_t *end, size_t end_len, const struct mvcc_range_opts *opts,
			 struct mvcc_kvs *out, mvcc_kv_fn fn, void *arg, int64_t *count,
			 bool *more)
{
	int64_t rev = opts->rev > 0 ? opts->rev : 0;
	/* The live index answers for the current revision, as long as the
	 * open txn has not moved it past the one asked for. */
	bool hist = !(rev == 0 || (rev == m->rev && !m->txn_wrote));
	enum keymode km = keymode_of(end, end_len);
	bool value_sort;
	enum sortv sv = sortv_of(opts, &value_sort);
	bool filters = opts->min_mod_rev || opts->max_mod_rev ||
		       opts->min_create_rev || opts->max_create_rev;
	int err;

	*more = false;
	*count = 0;
	if (opts->count_only)
		return count_live(m, hist, km, key, key_len, end, end_len, rev, count);
	/* A sort by value needs every row first: collect, then hand over. */
	if (fn != NULL && value_sort) {
		struct mvcc_kvs all = {0};
		err = range_read(m, key, key_len, end, end_len, opts, &all, count, more);
		for (size_t i = 0; err == CAP_OK && i < all.n; i++)
			err = fn(arg, &all.v[i]);
		mvcc_kvs_clear(&all);
		return err;
	}

	bool values = !opts->keys_only || value_sort;
	enum src src = hist ? (values ? SRC_HIST : SRC_HISTK) : (values ? SRC_CUR : SRC_CURK);
	sqlite3_stmt **slot = &m->range_st[src][km][sv];
	if (*slot == NULL) {
		char sql[4096], inner[3584];
		if (hist) {
			hist_sql(km, src_sql[src], filter_cond, inner, sizeof(inner));
			snprintf(sql, sizeof(sql), "%s ORDER BY %s LIMIT ?8", inner,
				 hist_order_sql[sv]);
		} else {
			snprintf(sql, sizeof(sql), "%s%s%s ORDER BY %s LIMIT ?8", src_sql[src],
				 keycond(km), filter_cond, order_sql[sv]);
		}
		if ((err = prepare(m, sql, slot)))
			return err;
	}
	sqlite3_stmt *s = *slot;
	bind_keys(s, key, key_len, end, end_len, km);
	bind_i64(s, 3, rev);
	sqlite3_bind_int64(s, 4, opts->min_mod_rev);
	sqlite3_bind_int64(s, 5, opts->max_mod_rev);
	sqlite3_bind_int64(s, 6, opts->min_create_rev);
	sqlite3_bind_int64(s, 7, opts->max_create_rev);
	/* One row past the limit tells whether there is more. */
	sqlite3_bind_int64(s, 8, opts->limit > 0 && !value_sort ? opts->limit + 1 : -1);

	size_t start = out ? out->n : 0;
	int rc;
	if (fn != NULL) {
		/* Rows go to fn as they come, without copies; the row past the
		 * limit only says there is more. */
		int64_t n = 0;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			struct mvcc_kv kv;
			uint8_t *owned;
			if (opts->limit > 0 && n == opts->limit) {
				*more = true;
				continue;
			}
			err = row_borrow(m, s, values, &kv, &owned);
			if (err == CAP_OK)
				err = fn(arg, &kv);
			free(owned);
			if (err)
				goto err_fn;
			n++;
		}
		sqlite3_reset(s);
		if (rc != SQLITE_DONE)
			return db_fail(m, rc, "range");
		if (filters || *more)
			return count_live(m, hist, km, key, key_len, end, end_len, rev, count);
		*count = n;
		return CAP_OK;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct mvcc_kv *kv = kvs_push(m, out);
		if (kv == NULL) {
			err = CAP_ENOMEM;
			goto err;
		}
		if ((err = row_to_kv(m, s, values, kv)))
			goto err;
		out->n++;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		err = db_fail(m, rc, "range");
		goto err;
	}

	size_t n = out->n - start;
	if (value_sort && n > 1) {
		qsort(out->v + start, n, sizeof(*out->v),
		      opts->sort_order == MVCC_SORT_DESCEND ? kv_value_cmp_desc : kv_value_cmp);
		if (opts->keys_only) {
			for (size_t i = start; i < out->n; i++) {
				free(out->v[i].value);
				out->v[i].value = NULL;
				out->v[i].value_len = 0;
			}
		}
	}
	if (opts->limit > 0 && n > (size_t)opts->limit) {
		kvs_truncate(out, start + (size_t)opts->limit);
		*more = true;
	}
	/* count is before limit and filters: without either, it is what came back. */
	if (filters || *more) {
		err = count_live(m, hist, km, key, key_len, end, end_len, rev, count);
		if (err)
			goto err_truncate;
	} else {
		*count = (int64_t)n;
	}
	return CAP_OK;

err:
	sqlite3_reset(s);
err_truncate:
	kvs_truncate(out, start);
	return err;
err_fn:
	sqlite3_reset(s);
	*more = false;
	return err;
}

static int check_rev(struct mvcc *m, int64_t rev)
{
	if (rev > m->rev)
		return fail(m, CAP_EFUTUREREV, "required revision is a future revision");
	if (rev > 0 && rev < m->compact_rev)
		return fail(m, CAP_ECOMPACTED, "required revision has been compacted");
	return CAP_OK;
}

static const struct mvcc_range_opts range_defaults;

/* What mvcc_range and mvcc_range_each do before reading: NULL options,
 * count and more replaced by the defaults and the caller's scratch
 * variables, the results zeroed, the database and the revision checked. */
static int range_start(struct mvcc *m, const struct mvcc_range_opts **opts, int64_t **count,
		       bool **more, int64_t *count_scratch, bool *more_scratch)
{
	int err;
	if (*opts == NULL)
		*opts = &range_defaults;
	if (*count == NULL)
		*count = count_scratch;
	if (*more == NULL)
		*more = more_scratch;
	**count = 0;
	**more = false;
	if ((err = need_db_keep(m)) || (err = check_rev(m, (*opts)->rev)))
		return err;
	return CAP_OK;
}

int mvcc_range(struct mvcc *m, const uint8_t *key, size_t key_len,
	       const uint8_t *end, size_t end_len, const struct mvcc_range_opts *opts,
	       struct mvcc_kvs *out, int64_t *count, bool *more)
{
	int64_t c;
	bool mo;
	struct mvcc_kvs scratch = {0};
	int err = range_start(m, &opts, &count, &more, &c, &mo);
	if (err)
		return err;
	if (out == NULL) {
		if (!opts->count_only)
			return fail(m, CAP_EINVAL, "range without an output");
		out = &scratch;
	}
	read_hold(m);
	return range_read(m, key, key_len, end, end_len, opts, out, count, more);
}

int mvcc_range_each(struct mvcc *m, const uint8_t *key, size_t key_len,
		    const uint8_t *end, size_t end_len, const struct mvcc_range_opts *opts,
		    mvcc_kv_fn fn, void *arg, int64_t *count, bool *more)
{
	int64_t c;
	bool mo;
	int err = range_start(m, &opts, &count, &more, &c, &mo);
	if (err)
		return err;
	read_hold(m);
	return range_read_fn(m, key, key_len, end, end_len, opts, NULL, fn, arg, count, more);
}

int mvcc_compact(struct mvcc *m, int64_t rev)
{
	int err = need_batch(m);
	if (err)
		return err;
	if (rev <= m->compact_rev)
		return fail(m, CAP_ECOMPACTED, "required revision has been compacted");
	if (rev > m->rev)
		return fail(m, CAP_EFUTUREREV, "required revision is a future revision");
	for (int i = ST_COMPACT; i <= ST_COMPACT_TOMB; i++) {
		sqlite3_stmt *s = m->st[i];
		sqlite3_bind_int64(s, 1, rev);
		sqlite3_bind_int64(s, 2, m->compact_rev);
		if ((err = step_done(m, s, "compact")))
			return err;
	}
	if ((err = meta_write(m, "compact_revision", rev)))
		return err;
	m->compact_rev = rev;
	return CAP_OK;
}

/* Fills *prev with the version of key in hist row prev_id (a row's prev),
 * leaving it zeroed when there is none, it is a tombstone or it was
 * compacted away. */
static int prev_version(struct mvcc *m, const uint8_t *key, size_t key_len, int64_t prev_id,
			struct mvcc_kv *prev)
{
	sqlite3_stmt *s = m->st[ST_PREV];
	int err = CAP_OK;
	memset(prev, 0, sizeof(*prev));
	if (prev_id == 0)
		return CAP_OK;
	sqlite3_bind_int64(s, 1, prev_id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_int64(s, 2) > 0) {
		prev->create_rev = sqlite3_column_int64(s, 0);
		prev->mod_rev = sqlite3_column_int64(s, 1);
		prev->version = sqlite3_column_int64(s, 2);
		prev->lease = sqlite3_column_int64(s, 3);
		prev->key = malloc(key_len);
		if (prev->key == NULL) {
			err = fail(m, CAP_ENOMEM, "out of memory");
		} else {
			memcpy(prev->key, key, key_len);
			prev->key_len = key_len;
			err = column_value(m, s, 4, &prev->value, &prev->value_len);
		}
		if (err)
			mvcc_kv_clear(prev);
	} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		err = db_fail(m, rc, "events");
	}
	sqlite3_reset(s);
	return err;
}

static struct mvcc_event *events_push(struct mvcc *m, struct mvcc_events *evs)
{
	if (evs->n == evs->cap) {
		size_t cap = evs->cap ? evs->cap * 2 : 16;
		struct mvcc_event *v = realloc(evs->v, cap * sizeof(*v));
		if (v == NULL) {
			fail(m, CAP_ENOMEM, "out of memory");
			return NULL;
		}
		evs->v = v;
		evs->cap = cap;
	}
	struct mvcc_event *ev = &evs->v[evs->n];
	memset(ev, 0, sizeof(*ev));
	return ev;
}

int mvcc_events(struct mvcc *m, int64_t from_rev, int64_t to_rev,
		const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len,
		bool with_prev, size_t max, struct mvcc_events *out, int64_t *next_rev)
{
	int err = need_db(m);
	if (err)
		return err;
	*next_rev = from_rev;
	if (m->compact_rev > 0 && from_rev < m->compact_rev)
		return fail(m, CAP_ECOMPACTED, "required revision has been compacted");
	int64_t hi = to_rev <= 0 || to_rev > m->rev ? m->rev : to_rev;
	if (from_rev > hi)
		return CAP_OK;

	enum keymode km = keymode_of(end, end_len);
	char sql[1024];
	/* ?3 and ?4: the hist ids of revisions from_rev and hi + 1. */
	if (km == KM_EQ)
		/* One key: its chain, from its newest row back into the range,
		 * rather than every write in the range. */
		snprintf(sql, sizeof(sql),
			 "WITH RECURSIVE w(id) AS (SELECT id FROM (SELECT coalesce("
			 "(SELECT id FROM cur WHERE key = ?1),"
			 " (SELECT max(id) FROM hist WHERE key = ?1 AND version = 0)) AS id)"
			 " WHERE id IS NOT NULL"
			 " UNION ALL SELECT h.prev FROM w CROSS JOIN hist AS h ON h.id = w.id"
			 " WHERE h.prev >= ?3)"
			 " SELECT x.key, x.create_rev, " REV_OF("x.id") ", x.version, x.lease,"
			 " x.enc, x.value, x.prev FROM w CROSS JOIN hist AS x ON x.id = w.id"
			 " WHERE x.id >= ?3 AND x.id < ?4 ORDER BY x.id");
	else
		snprintf(sql, sizeof(sql),
			 "SELECT x.key, x.create_rev, " REV_OF("x.id") ", x.version, x.lease,"
			 " x.enc, x.value, x.prev FROM hist AS x WHERE x.id >= ?3 AND x.id < ?4"
			 " AND %s ORDER BY x.id", keycond_norange(km));
	if ((err = lazy(m, &m->events_st[km], sql)))
		return err;
	sqlite3_stmt *s = m->events_st[km];
	bind_keys(s, key, key_len, end, end_len, km);
	/* A start at or below 0 is the start of history (and no shift of a
	 * negative number). */
	sqlite3_bind_int64(s, 3, hist_id(from_rev > 0 ? from_rev : 0, 0));
	sqlite3_bind_int64(s, 4, hist_id(hi + 1, 0));

	size_t start = out->n, taken = 0;
	int64_t last_rev = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t r = sqlite3_column_int64(s, 2);
		/* Stop only between revisions, so one revision's events stay together. */
		if (max > 0 && taken >= max && r != last_rev) {
			sqlite3_reset(s);
			*next_rev = r;
			return CAP_OK;
		}
		struct mvcc_event *ev = events_push(m, out);
		if (ev == NULL) {
			err = CAP_ENOMEM;
			goto err;
		}
		bool del = sqlite3_column_int64(s, 3) == 0;
		ev->type = del ? MVCC_EVENT_DELETE : MVCC_EVENT_PUT;
		if ((err = row_to_kv(m, s, !del, &ev->kv)))
			goto err;
		out->n++;
		if (with_prev &&
		    (err = prev_version(m, ev->kv.key, ev->kv.key_len,
					sqlite3_column_int64(s, 7), &ev->prev)))
			goto err;
		last_rev = r;
		taken++;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		err = db_fail(m, rc, "events");
		goto err_truncate;
	}
	*next_rev = hi + 1;
	return CAP_OK;

err:
	sqlite3_reset(s);
err_truncate:
	while (out->n > start) {
		out->n--;
		mvcc_kv_clear(&out->v[out->n].kv);
		mvcc_kv_clear(&out->v[out->n].prev);
	}
	return err;
}

/* ---- leases ---- */

int mvcc_lease_grant(struct mvcc *m, int64_t id, int64_t ttl)
{
	int err = need_batch(m);
	if (err)
		return err;
	bool exists;
	if ((err = lease_exists(m, id, &exists, NULL)))
		return err;
	if (exists)
		return fail(m, CAP_ELEASEEXISTS, "lease already exists");
	sqlite3_stmt *s = m->st[ST_LEASE_INSERT];
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, ttl);
	return step_done(m, s, "lease grant");
}

int mvcc_lease_revoke(struct mvcc *m, int64_t id, struct mvcc_kvs *deleted_prevs)
{
	int err = need_batch(m);
	if (err)
		return err;
	bool exists;
	if ((err = lease_exists(m, id, &exists, NULL)))
		return err;
	if (!exists)
		return fail(m, CAP_ELEASENOTFOUND, "requested lease not found");
	bool implicit = txn_enter(m);
	size_t start = deleted_prevs ? deleted_prevs->n : 0;
	sqlite3_stmt *s;
	int rc;

	if (deleted_prevs) {
		s = m->st[ST_LEASE_PREVS];
		sqlite3_bind_int64(s, 1, id);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			struct mvcc_kv *kv = kvs_push(m, deleted_prevs);
			if (kv == NULL) {
				err = CAP_ENOMEM;
				break;
			}
			if ((err = row_to_kv(m, s, true, kv)))
				break;
			deleted_prevs->n++;
		}
		sqlite3_reset(s);
		if (err == CAP_OK && rc != SQLITE_DONE)
			err = db_fail(m, rc, "lease revoke");
		if (err)
			goto err;
	}

	if ((err = id_room(m, 0)))
		goto err;
	s = m->st[ST_LEASE_TOMB];
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, hist_id(m->rev + 1, m->txn_sub));
	if ((err = step_done(m, s, "lease revoke")))
		goto err;
	int64_t n = sqlite3_changes64(m->db);
	if ((err = id_room_after(m, m->txn_sub, n)))
		goto err;
	if (n > 0) {
		keycache_clear(m->keys);
		s = m->st[ST_LEASE_CURDEL];
		sqlite3_bind_int64(s, 1, id);
		if ((err = step_done(m, s, "lease revoke")))
			goto err;
		m->txn_sub += n;
		m->txn_wrote = true;
	}
	s = m->st[ST_LEASE_DELETE];
	sqlite3_bind_int64(s, 1, id);
	if ((err = step_done(m, s, "lease revoke")))
		goto err;
	txn_leave(m, implicit);
	return CAP_OK;

err:
	if (deleted_prevs)
		kvs_truncate(deleted_prevs, start);
	txn_leave(m, implicit);
	return err;
}

int mvcc_lease_get(struct mvcc *m, int64_t id, int64_t *granted_ttl)
{
	int err = need_db(m);
	if (err)
		return err;
	bool exists;
	int64_t ttl = 0;
	if ((err = lease_exists(m, id, &exists, &ttl)))
		return err;
	if (!exists)
		return fail(m, CAP_ELEASENOTFOUND, "requested lease not found");
	if (granted_ttl)
		*granted_ttl = ttl;
	return CAP_OK;
}

int mvcc_lease_keys(struct mvcc *m, int64_t id, struct mvcc_kvs *out)
{
	int err = need_db(m);
	if (err)
		return err;
	sqlite3_stmt *s = m->st[ST_LEASE_KEYS];
	size_t start = out->n;
	int rc;
	sqlite3_bind_int64(s, 1, id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct mvcc_kv *kv = kvs_push(m, out);
		if (kv == NULL) {
			err = CAP_ENOMEM;
			break;
		}
		if ((err = column_key(m, s, 0, &kv->key, &kv->key_len)))
			break;
		out->n++;
	}
	sqlite3_reset(s);
	if (err == CAP_OK && rc != SQLITE_DONE)
		err = db_fail(m, rc, "lease keys");
	if (err)
		kvs_truncate(out, start);
	return err;
}

int mvcc_lease_list(struct mvcc *m, int64_t **ids, int64_t **ttls, size_t *n)
{
	int err = need_db(m);
	if (err)
		return err;
	sqlite3_stmt *s = m->st[ST_LEASE_LIST];
	int64_t *iv = NULL, *tv = NULL;
	size_t cnt = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			int64_t *a = realloc(iv, cap * sizeof(*a));
			if (a == NULL)
				goto err_nomem;
			iv = a;
			a = realloc(tv, cap * sizeof(*a));
			if (a == NULL)
				goto err_nomem;
			tv = a;
		}
		iv[cnt] = sqlite3_column_int64(s, 0);
		tv[cnt] = sqlite3_column_int64(s, 1);
		cnt++;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		err = db_fail(m, rc, "lease list");
		goto err;
	}
	*ids = iv;
	*ttls = tv;
	*n = cnt;
	return CAP_OK;

err_nomem:
	sqlite3_reset(s);
	err = fail(m, CAP_ENOMEM, "out of memory");
err:
	free(iv);
	free(tv);
	return err;
}

/* ---- metadata ---- */

int mvcc_meta_get(struct mvcc *m, const char *name, char **value)
{
	int err = need_db(m);
	if (err)
		return err;
	*value = NULL;
	sqlite3_stmt *s = m->st[ST_INFO_GET];
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(s, 0);
		*value = strdup(v ? v : "");
		if (*value == NULL)
			err = fail(m, CAP_ENOMEM, "out of memory");
	} else if (rc != SQLITE_DONE) {
		err = db_fail(m, rc, "meta get");
	}
	sqlite3_reset(s);
	return err;
}

int mvcc_meta_set(struct mvcc *m, const char *name, const char *value)
{
	int err = need_batch(m);
	if (err)
		return err;
	sqlite3_stmt *s = m->st[ST_INFO_SET];
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
	return step_done(m, s, "meta set");
}

/* ---- whole-database operations ---- */

int mvcc_sync(struct mvcc *m)
{
	int log_frames = -1, done = -1;
	int err = need_db(m);
	if (err)
		return err;
	if (m->in_batch)
		return fail(m, CAP_EINVAL, "sync inside a batch");
	int rc = sqlite3_wal_checkpoint_v2(m->db, "main", SQLITE_CHECKPOINT_PASSIVE, &log_frames,
					   &done);
	if (rc != SQLITE_OK)
		return fail(m, map_sqlite(rc), sqlite3_errmsg(m->db));
	/* A frame left behind means a reader still needs an older page, and
	 * neither the frames nor the database file are all synced. */
	if (done < log_frames) {
		char msg[128];
		snprintf(msg, sizeof msg, "checkpoint copied %d of %d WAL frames", done, log_frames);
		return fail(m, CAP_EUNAVAILABLE, msg);
	}
	return CAP_OK;
}

void mvcc_set_bg_checkpoints(struct mvcc *m)
{
	m->bg_checkpoints = true;
	if (m->db != NULL)
		sqlite3_wal_hook(m->db, wal_hook, m);
}

int mvcc_wal_frames(const struct mvcc *m)
{
	return m->wal_frames;
}

int mvcc_wal_truncate(struct mvcc *m)
{
	int log_frames = -1, done = -1;
	int err = need_db(m);
	if (err)
		return err;
	if (m->in_batch)
		return fail(m, CAP_EINVAL, "WAL truncate inside a batch");
	/* No busy handler: against a background pass this returns
	 * SQLITE_BUSY at once rather than wait on the loop thread. */
	int rc = sqlite3_wal_checkpoint_v2(m->db, "main", SQLITE_CHECKPOINT_TRUNCATE,
					   &log_frames, &done);
	if ((rc & 0xff) == SQLITE_BUSY)
		return fail(m, CAP_EUNAVAILABLE, "WAL truncate: checkpoint busy");
	if (rc != SQLITE_OK)
		return fail(m, map_sqlite(rc), sqlite3_errmsg(m->db));
	m->wal_frames = 0;
	return CAP_OK;
}

int mvcc_checkpoint_bg(struct mvcc *m, int *log_frames, int *done, char *errmsg)
{
	sqlite3 *db = NULL;
	int rc;

	*log_frames = *done = -1;
	pthread_mutex_lock(&m->bg_lock);
	/* A connection of its own: sqlite connections are not shared between
	 * threads here (SQLITE_OPEN_NOMUTEX), and WAL mode lets it copy frames
	 * while the main connection commits new ones. Opening it per pass
	 * keeps no second file descriptor across a restore. */
	rc = sqlite3_open_v2(m->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	/* A new connection reads the file lazily, and until it has, it is not
	 * in WAL mode and a checkpoint does nothing (and says -1 frames). */
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "PRAGMA journal_mode", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_wal_checkpoint_v2(db, "main", SQLITE_CHECKPOINT_PASSIVE, log_frames,
					       done);
	if (rc != SQLITE_OK)
		cap_errmsg_printf(errmsg, "background checkpoint: %s",
				  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	sqlite3_close(db);
	pthread_mutex_unlock(&m->bg_lock);
	return rc == SQLITE_OK ? CAP_OK : map_sqlite(rc);
}

int mvcc_snapshot(struct mvcc *m, void **buf, size_t *len)
{
	int err = need_db(m);
	if (err)
		return err;
	/* Inside a batch the image would hold uncommitted writes. */
	if (m->in_batch)
		return fail(m, CAP_EINVAL, "snapshot inside a batch");
	sqlite3_int64 size = 0;
	unsigned char *img = sqlite3_serialize(m->db, "main", &size, 0);
	if (img == NULL)
		return fail(m, CAP_ENOMEM, "snapshot: cannot serialize the database");
	void *copy = malloc(size > 0 ? (size_t)size : 1);
	if (copy == NULL) {
		sqlite3_free(img);
		return fail(m, CAP_ENOMEM, "out of memory");
	}
	memcpy(copy, img, (size_t)size);
	sqlite3_free(img);
	/* Mark the image as a rollback-journal database (header bytes 18 and
	 * 19): an in-memory copy cannot run in WAL mode, and restore turns WAL
	 * back on when it reopens the file. */
	if (size >= 100) {
		((uint8_t *)copy)[18] = 1;
		((uint8_t *)copy)[19] = 1;
	}
	*buf = copy;
	*len = (size_t)size;
	return CAP_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int fsync_dir_of(const char *path)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

/* Validates an image the way mvcc_open validates a file. */
static int image_check(struct mvcc *m, const void *buf, size_t len)
{
	sqlite3 *db = NULL;
	char msg[CAP_ERRMSG_SIZE];
	int err;
	if (len < 512)
		return fail(m, CAP_ECORRUPT, "restore: image too short");
	/* The copy lets sqlite read an image whose header still says WAL. */
	uint8_t *copy = sqlite3_malloc64(len);
	if (copy == NULL)
		return fail(m, CAP_ENOMEM, "out of memory");
	memcpy(copy, buf, len);
	copy[18] = 1;
	copy[19] = 1;
	int rc = sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		sqlite3_free(copy);
		err = fail(m, map_sqlite(rc), "restore: cannot open a check connection");
		goto err_after_open;
	}
	/* FREEONCLOSE hands the copy to sqlite, which frees it on close. */
	rc = sqlite3_deserialize(db, "main", copy, (sqlite3_int64)len, (sqlite3_int64)len,
				 SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_READONLY);
	if (rc != SQLITE_OK) {
		err = fail(m, map_sqlite(rc), "restore: cannot load the image");
		goto err_after_open;
	}
	int64_t schema;
	err = db_check(db, NULL, &schema, msg);
	if (err) {
		cap_errmsg_printf(m->errmsg, "restore: %s", msg);
		goto err_after_open;
	}
	sqlite3_close(db);
	return CAP_OK;

err_after_open:
	sqlite3_close(db);
	return err;
}

int mvcc_restore(struct mvcc *m, const void *buf, size_t len)
{
	int err = need_db(m);
	if (err)
		return err;
	if (m->in_batch)
		return fail(m, CAP_EINVAL, "restore inside a batch");
	if ((err = image_check(m, buf, len)))
		return err;

	/* Write the new file next to the old one and rename it over, so a
	 * crash leaves either the old database or the new one. */
	char tmp[4096], side[4096];
	snprintf(tmp, sizeof(tmp), "%s.restore", m->path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		cap_errmsg_printf(m->errmsg, "restore: %s: %s", tmp, strerror(errno));
		return CAP_EIO;
	}
	if (write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		cap_errmsg_printf(m->errmsg, "restore: %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return CAP_EIO;
	}
	close(fd);

	/* Closing the last connection checkpoints the WAL into the old file;
	 * the -wal and -shm files must then go, or sqlite would replay old
	 * frames onto the new file. No checkpoint of another thread may have
	 * the file open meanwhile. */
	pthread_mutex_lock(&m->bg_lock);
	db_close(m);
	snprintf(side, sizeof(side), "%s-wal", m->path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", m->path);
	unlink(side);
	if (rename(tmp, m->path) != 0) {
		cap_errmsg_printf(m->errmsg, "restore: rename: %s", strerror(errno));
		unlink(tmp);
		err = CAP_EIO;
		goto reopen;
	}
	if (fsync_dir_of(m->path) != 0) {
		cap_errmsg_printf(m->errmsg, "restore: fsync directory: %s", strerror(errno));
		err = CAP_EIO;
	}
reopen:
	{
		char msg[CAP_ERRMSG_SIZE];
		int oerr = db_open(m, msg);
		pthread_mutex_unlock(&m->bg_lock);
		if (oerr) {
			cap_errmsg_printf(m->errmsg, "restore: reopen: %s", msg);
			return oerr;
		}
	}
	return err;
}

int mvcc_db_size(struct mvcc *m, int64_t *size, int64_t *in_use)
{
	int err = need_db(m);
	if (err)
		return err;
	int64_t v[3];
	int ids[3] = {ST_PAGE_COUNT, ST_PAGE_SIZE, ST_FREELIST};
	for (int i = 0; i < 3; i++) {
		sqlite3_stmt *s = m->st[ids[i]];
		int rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			v[i] = sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		if (rc != SQLITE_ROW)
			return db_fail(m, rc, "db size");
	}
	*size = v[0] * v[1];
	*in_use = (v[0] - v[2]) * v[1];
	return CAP_OK;
}

static void crc32_table(uint32_t t[256])
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		t[i] = c;
	}
}

static uint32_t crc32_update(const uint32_t t[256], uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;
	crc = ~crc;
	while (n--)
		crc = t[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static uint32_t crc32_i64(const uint32_t t[256], uint32_t crc, int64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)v >> (8 * i));
	return crc32_update(t, crc, b, 8);
}

int mvcc_hash(struct mvcc *m, uint32_t *hash)
{
	int err = need_db(m);
	if (err)
		return err;
	uint32_t t[256];
	uint32_t crc = 0;
	crc32_table(t);
	sqlite3_stmt *s = m->st[ST_HASH];
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const void *k = sqlite3_column_blob(s, 0);
		size_t klen = (size_t)sqlite3_column_bytes(s, 0);
		int enc = sqlite3_column_int(s, 5);
		const uint8_t *blob = sqlite3_column_blob(s, 6);
		size_t blen = (size_t)sqlite3_column_bytes(s, 6), vlen;
		/* Hash the decoded value so replicas agree whatever their encoding. */
		if (value_raw_len(enc, blob, blen, &vlen) ||
		    (err = zbuf_reserve(m, vlen ? vlen : 1)) ||
		    value_decode_into(enc, blob, blen, m->zbuf, vlen)) {
			sqlite3_reset(s);
			return err ? err : fail(m, CAP_ECORRUPT, "stored value is damaged");
		}
		crc = crc32_i64(t, crc, (int64_t)klen);
		crc = crc32_update(t, crc, k, klen);
		for (int c = 1; c <= 4; c++)
			crc = crc32_i64(t, crc, sqlite3_column_int64(s, c));
		crc = crc32_i64(t, crc, (int64_t)vlen);
		crc = crc32_update(t, crc, m->zbuf, vlen);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return db_fail(m, rc, "hash");
	crc = crc32_i64(t, crc, m->rev);
	*hash = crc;
	return CAP_OK;
}

void mvcc_kv_clear(struct mvcc_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

void mvcc_kvs_clear(struct mvcc_kvs *kvs)
{
	for (size_t i = 0; i < kvs->n; i++)
		mvcc_kv_clear(&kvs->v[i]);
	free(kvs->v);
	memset(kvs, 0, sizeof(*kvs));
}

void mvcc_events_clear(struct mvcc_events *evs)
{
	for (size_t i = 0; i < evs->n; i++) {
		mvcc_kv_clear(&evs->v[i].kv);
		mvcc_kv_clear(&evs->v[i].prev);
	}
	free(evs->v);
	memset(evs, 0, sizeof(*evs));
}
