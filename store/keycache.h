/* keycache.h — the live rows of recently written keys, kept in memory so
 * that a put of a key written lately skips sqlite's read of its live row
 * (store/mvcc.c). Kubernetes rewrites the same keys over and over (status
 * updates, leases, endpoints); each such put otherwise pays a b-tree seek
 * in sqlite before it writes.
 *
 * Fixed size, set at creation: two-way set-associative by a hash of the
 * key, the less recently used of a set's two entries giving way. Keys
 * longer than KEYCACHE_KEY_MAX bytes are never cached. The cache decides
 * nothing: its owner keeps it a subset of the live-key table, replacing or
 * dropping a key's entry with every write of that key and clearing the
 * whole cache (in constant time) whenever it cannot tell which keys a
 * change touched — a range delete, a lease's revocation, a rollback, a
 * restore.
 *
 * Threading: its owner's thread only. Ownership: keys are copied in; rows
 * are copied out. */
#ifndef CAPSTAN_KEYCACHE_H
#define CAPSTAN_KEYCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYCACHE_KEY_MAX 86

/* What the live-key table holds for a key besides the key itself. */
struct keycache_row {
	int64_t id;            /* the live version's history row */
	int64_t create_rev;
	int64_t version;
	int64_t lease;
};

struct keycache;

/* A cache of at most bytes of memory (rounded down to whole sets); NULL
 * when out of memory or when bytes holds less than one set, which callers
 * treat as "no cache". */
struct keycache *keycache_new(size_t bytes);
void keycache_free(struct keycache *c);

/* True and *row filled when key is cached. */
bool keycache_get(struct keycache *c, const uint8_t *key, size_t len, struct keycache_row *row);
/* Records key's live row, replacing what was cached for it. */
void keycache_put(struct keycache *c, const uint8_t *key, size_t len,
		  const struct keycache_row *row);
void keycache_drop(struct keycache *c, const uint8_t *key, size_t len);
void keycache_clear(struct keycache *c);
/* Entries the cache can hold. */
size_t keycache_capacity(const struct keycache *c);

#endif
