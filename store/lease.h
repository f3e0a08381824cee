/* lease.h — the lease clock. Lease records live in the MVCC store and change
 * only through the log; this table keeps each lease's deadline in memory.
 * Only the leader counts: when a deadline passes on the leader, the table
 * asks (expire callback) for a revoke to be proposed through the log, which
 * deletes the attached keys on every member. A new leader refreshes every
 * deadline to a full TTL rather than expiring leases early, as etcd does; a
 * member that is not leader expires nothing.
 *
 * Threading: loop thread only. */
#ifndef CAPSTAN_LEASE_H
#define CAPSTAN_LEASE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* etcd's minimum TTL for its default election timeout. */
#define LEASE_MIN_TTL 2

struct lease_table;

typedef void (*lease_expire_fn)(void *data, int64_t id);

int lease_table_new(uv_loop_t *loop, lease_expire_fn expire, void *data,
		    struct lease_table **out);
void lease_table_close(struct lease_table *t);

/* A grant or revoke applied from the log (every member). */
int lease_granted(struct lease_table *t, int64_t id, int64_t ttl);
void lease_revoked(struct lease_table *t, int64_t id);
/* Forget everything (before reloading after a snapshot install). */
void lease_clear(struct lease_table *t);

/* Leadership gained (refresh every deadline) or lost (stop expiring). */
void lease_set_leader(struct lease_table *t, bool leader);
/* A revoke proposed for an expired lease failed: try again later. */
void lease_expire_failed(struct lease_table *t, int64_t id);

/* Keep-alive on the leader: the deadline moves to now + TTL. Returns
 * CAP_ELEASENOTFOUND for an unknown lease. */
int lease_keepalive(struct lease_table *t, int64_t id, int64_t *ttl);
/* Seconds left (rounded down) and the granted TTL. */
int lease_remaining(struct lease_table *t, int64_t id, int64_t *remaining, int64_t *granted);
bool lease_exists(struct lease_table *t, int64_t id);

#endif
