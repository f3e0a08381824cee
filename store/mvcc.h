/* mvcc.h — etcd's multi-version key space, kept in one sqlite3 database (WAL).
 *
 * The model: one cluster-wide revision, starting at 1 on an empty store and
 * growing by one per write transaction (a put, a delete that deletes
 * something, a txn that writes, a lease revoke that deletes keys). Each key
 * carries create_revision, mod_revision, version (1 on create, +1 per put,
 * reset by delete) and lease. Deletes leave tombstones in history; reads at
 * any revision not yet compacted see the key space as it was; compaction
 * drops history below a revision.
 *
 * Writes happen only inside a write batch (mvcc_begin ... mvcc_commit), which
 * is one sqlite transaction and also records the raft index it applied, so
 * a restart knows exactly where the state stands. Inside a batch, each etcd
 * transaction is bracketed by mvcc_txn_begin/mvcc_txn_end: every write between
 * them shares one revision (with increasing sub-revisions), and reads between
 * them see those writes.
 *
 * Values of 256 bytes or more are stored lz4-compressed when that saves space.
 *
 * Threading: not thread-safe; one owner (the store's loop thread), except
 * mvcc_checkpoint_bg (see there).
 * Ownership: every mvcc_kv handed out owns its key and value (malloc'd);
 * free with mvcc_kv_clear / mvcc_kvs_clear / mvcc_events_clear.
 * Errors: enum cap_err codes from lib/err.h; detail in mvcc_errmsg(). */
#ifndef CAPSTAN_MVCC_H
#define CAPSTAN_MVCC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mvcc;

struct mvcc_kv {
	uint8_t *key;
	size_t key_len;
	uint8_t *value;        /* NULL with value_len 0 when keys_only or a tombstone */
	size_t value_len;
	int64_t create_rev;
	int64_t mod_rev;
	int64_t version;       /* 0 marks a tombstone in events */
	int64_t lease;
};

struct mvcc_kvs {
	struct mvcc_kv *v;
	size_t n;
	size_t cap;
};

enum mvcc_event_type { MVCC_EVENT_PUT = 0, MVCC_EVENT_DELETE = 1 };

struct mvcc_event {
	enum mvcc_event_type type;
	struct mvcc_kv kv;     /* for DELETE: key and mod_rev only */
	struct mvcc_kv prev;   /* prev.mod_rev == 0 when absent or not asked for */
};

struct mvcc_events {
	struct mvcc_event *v;
	size_t n;
	size_t cap;
	/* Set by the collector to what its readers will use. skip: apply records
	 * no events (nobody is watching). skip_prev_values: nobody asks for
	 * prev_kv, so put events carry the previous version's metadata with a
	 * NULL value, and apply saves reading and decompressing that value. */
	bool skip;
	bool skip_prev_values;
};

enum mvcc_sort_order { MVCC_SORT_NONE = 0, MVCC_SORT_ASCEND, MVCC_SORT_DESCEND };
enum mvcc_sort_target {
	MVCC_SORT_KEY = 0, MVCC_SORT_VERSION, MVCC_SORT_CREATE, MVCC_SORT_MOD, MVCC_SORT_VALUE
};

struct mvcc_range_opts {
	int64_t rev;           /* 0 = current (including writes of the open txn) */
	int64_t limit;         /* 0 = no limit */
	bool keys_only;        /* kvs without values */
	bool count_only;       /* no kvs, count only */
	enum mvcc_sort_order sort_order;
	enum mvcc_sort_target sort_target;
	int64_t min_mod_rev, max_mod_rev;        /* 0 = no bound */
	int64_t min_create_rev, max_create_rev;  /* 0 = no bound */
};

/* Opens (creating if needed) the database at path, checks it, and prepares
 * statements. A file that fails sqlite's checks or carries a schema this code
 * does not know is refused with CAP_ECORRUPT and a message in errmsg
 * (CAP_ERRMSG_SIZE bytes). */
int mvcc_open(const char *path, struct mvcc **out, char *errmsg);
void mvcc_close(struct mvcc *m);
/* Bounds sqlite's page cache (KiB; 0 = MVCC_CACHE_KIB_DEFAULT), now and
 * after a restore reopens the file. The kernel's page cache still holds
 * the file; this is the store's own memory for it. */
#define MVCC_CACHE_KIB_DEFAULT 8192
int mvcc_set_cache_kib(struct mvcc *m, unsigned kib);
/* Sizes the cache of recently written keys' live rows (store/keycache.h;
 * KiB, 0 = none), emptying it. A put of a cached key skips reading its
 * live row from sqlite. CAP_ENOMEM leaves the store without the cache. */
#define MVCC_KEY_CACHE_KIB_DEFAULT 4096
int mvcc_set_key_cache_kib(struct mvcc *m, unsigned kib);
const char *mvcc_errmsg(const struct mvcc *m);

/* Committed revision (1 when empty). Inside a batch it already counts the
 * txns ended in that batch (mvcc_rollback takes them back). */
int64_t mvcc_rev(const struct mvcc *m);
int64_t mvcc_compact_rev(const struct mvcc *m);  /* 0 if never compacted */
uint64_t mvcc_applied_index(const struct mvcc *m);

/* ---- write batches ---- */
int mvcc_begin(struct mvcc *m);
/* Commits the batch and records applied_index. */
int mvcc_commit(struct mvcc *m, uint64_t applied_index);
void mvcc_rollback(struct mvcc *m);

/* One etcd transaction inside a batch. mvcc_txn_end returns the revision the
 * txn wrote at, or the unchanged current revision if it wrote nothing. */
void mvcc_txn_begin(struct mvcc *m);
int64_t mvcc_txn_end(struct mvcc *m);
/* The revision writes of the open txn get (current + 1). */
int64_t mvcc_txn_rev(const struct mvcc *m);
/* A write issued outside mvcc_txn_begin/end is a txn of its own. Writes
 * outside a batch are refused with CAP_EINVAL; an empty key with
 * CAP_EKEYEMPTY. After a failed write the batch should be rolled back. */

/* Puts key = value with lease (0 = none). If prev is not NULL it receives the
 * previous live version (prev->mod_rev == 0 if the key did not exist); if cur
 * is not NULL it receives the new version's create_rev, mod_rev, version and
 * lease (its key and value pointers are left NULL). A lease that does not
 * exist is refused with CAP_ELEASENOTFOUND before anything is written. */
int mvcc_put(struct mvcc *m, const uint8_t *key, size_t key_len,
	     const uint8_t *value, size_t value_len, int64_t lease,
	     struct mvcc_kv *prev, struct mvcc_kv *cur);
/* As mvcc_put, but prev (which must not be NULL) receives the previous
 * version without its value (value NULL, value_len 0). */
int mvcc_put_prev_meta(struct mvcc *m, const uint8_t *key, size_t key_len,
		       const uint8_t *value, size_t value_len, int64_t lease,
		       struct mvcc_kv *prev, struct mvcc_kv *cur);

/* Deletes the live keys in [key, end) (end semantics as in mvcc_range).
 * *deleted gets the count; if prevs is not NULL it receives the deleted
 * versions, in key order. */
int mvcc_delete_range(struct mvcc *m, const uint8_t *key, size_t key_len,
		      const uint8_t *end, size_t end_len, struct mvcc_kvs *prevs,
		      int64_t *deleted);

/* Reads the range [key, end): end_len == 0 means the single key; an end of
 * one zero byte means every key >= key; a key of one zero byte with such an
 * end means all keys. *count is the number of live keys in the range at that
 * revision, before limit and min/max filters; *more is set when limit cut
 * the answer. Errors: CAP_ECOMPACTED, CAP_EFUTUREREV.
 * kvs are appended to out (nothing is appended on error); out may be NULL
 * with count_only; opts NULL means all defaults. */
int mvcc_range(struct mvcc *m, const uint8_t *key, size_t key_len,
	       const uint8_t *end, size_t end_len, const struct mvcc_range_opts *opts,
	       struct mvcc_kvs *out, int64_t *count, bool *more);

/* mvcc_range handing each kv to fn, in order, instead of collecting them:
 * its key and value point into the database's row (or a buffer of the
 * call) and are valid only during fn. fn returning non-zero stops the
 * range, which returns that code (fn may then have had some kvs). count
 * and more as mvcc_range; with count_only fn is not called. */
typedef int (*mvcc_kv_fn)(void *arg, const struct mvcc_kv *kv);
int mvcc_range_each(struct mvcc *m, const uint8_t *key, size_t key_len,
		    const uint8_t *end, size_t end_len, const struct mvcc_range_opts *opts,
		    mvcc_kv_fn fn, void *arg, int64_t *count, bool *more);

/* Compacts history below rev: every version superseded at or before rev and
 * every tombstone at or before rev is dropped. Errors: CAP_ECOMPACTED if
 * rev <= the current compact revision, CAP_EFUTUREREV if rev > current.
 * Must be called inside a batch. */
int mvcc_compact(struct mvcc *m, int64_t rev);

/* Events with from_rev <= mod_rev <= to_rev on keys in [key, end), in
 * (revision, sub-revision) order, at most max of them but never splitting a
 * revision. *next_rev gets the first revision not returned. Errors:
 * CAP_ECOMPACTED if from_rev < compact revision (as etcd, a start at the
 * compact revision itself is served: what was written there is kept).
 * max 0 means no limit; to_rev <= 0 or past the current revision means the
 * current revision; events are appended to out. */
int mvcc_events(struct mvcc *m, int64_t from_rev, int64_t to_rev,
		const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len,
		bool with_prev, size_t max, struct mvcc_events *out, int64_t *next_rev);

/* ---- leases (the TTL clock itself is kept by the leader, in memory) ---- */
int mvcc_lease_grant(struct mvcc *m, int64_t id, int64_t ttl);   /* CAP_ELEASEEXISTS */
/* Deletes the lease and, in the open txn, every key attached to it. */
int mvcc_lease_revoke(struct mvcc *m, int64_t id, struct mvcc_kvs *deleted_prevs);
/* CAP_ELEASENOTFOUND if missing. */
int mvcc_lease_get(struct mvcc *m, int64_t id, int64_t *granted_ttl);
/* Keys (key bytes only) attached to a lease, in key order. */
int mvcc_lease_keys(struct mvcc *m, int64_t id, struct mvcc_kvs *out);
/* All leases: ids[i], ttls[i]; arrays malloc'd, caller frees. */
int mvcc_lease_list(struct mvcc *m, int64_t **ids, int64_t **ttls, size_t *n);

/* ---- metadata (cluster id, membership, ...) kept in the same database ---- */
int mvcc_meta_get(struct mvcc *m, const char *name, char **value);  /* *value NULL if unset; caller frees */
int mvcc_meta_set(struct mvcc *m, const char *name, const char *value);  /* inside a batch */

/* ---- whole-database operations ---- */
/* Serializes the committed database into one malloc'd buffer (refused
 * with CAP_EINVAL inside a batch). */
int mvcc_snapshot(struct mvcc *m, void **buf, size_t *len);
/* Makes every committed transaction durable in the database file (a
 * checkpoint of the whole WAL, which fsyncs it and the file). CAP_EUNAVAILABLE if
 * a reader kept part of the WAL from being copied. Not inside a batch. */
int mvcc_sync(struct mvcc *m);

/* WAL checkpoints off the loop thread. After mvcc_set_bg_checkpoints,
 * commits no longer checkpoint the WAL themselves (sqlite's automatic
 * checkpoint copies ~1,000 pages and fsyncs two files inside the commit
 * that crosses the limit); the owner calls mvcc_checkpoint_bg on another
 * thread and mvcc_sync for what is left (see store/wal_ckpt.h).
 * mvcc_wal_frames: frames in the WAL after the last commit.
 * mvcc_checkpoint_bg is the one mvcc call that may run on another thread,
 * concurrently with the others: a PASSIVE checkpoint on a connection of
 * its own; *done of *log_frames frames are now in the database file.
 * mvcc_close and mvcc_restore wait for it. */
void mvcc_set_bg_checkpoints(struct mvcc *m);
int mvcc_wal_frames(const struct mvcc *m);
int mvcc_checkpoint_bg(struct mvcc *m, int *log_frames, int *done, char *errmsg);
/* Empties the WAL file (a TRUNCATE checkpoint) when the store is idle, so
 * it does not keep its high-water size on disk: on the loop thread, not
 * inside a batch. CAP_EUNAVAILABLE if a background pass holds the
 * checkpoint (try again later). */
int mvcc_wal_truncate(struct mvcc *m);
/* Replaces the whole state with a buffer made by mvcc_snapshot (checked
 * first; a damaged one is refused with CAP_ECORRUPT and nothing changes).
 * The new file is renamed over the old one, so a crash leaves either. If the
 * reopen after the rename fails, every later call fails with CAP_EIO. */
int mvcc_restore(struct mvcc *m, const void *buf, size_t len);
/* File size, and bytes in use (size minus free pages). */
int mvcc_db_size(struct mvcc *m, int64_t *size, int64_t *in_use);
/* A hash of all live keys and values at the current revision, for
 * comparing replicas (maintenance/hash). */
int mvcc_hash(struct mvcc *m, uint32_t *hash);

void mvcc_kv_clear(struct mvcc_kv *kv);
void mvcc_kvs_clear(struct mvcc_kvs *kvs);
void mvcc_events_clear(struct mvcc_events *evs);

#endif
