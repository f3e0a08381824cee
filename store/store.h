/* store.h — one member of the store: the MVCC state in sqlite, the raft
 * member that orders writes, the watch hub and the lease clock, composed,
 * and the service behind the kv interface (lib/kv.h) that the gateway and
 * in-process users call.
 *
 * Threading: loop thread only. Ownership: store_open's config strings are
 * copied; answers follow lib/kv.h. */
#ifndef CAPSTAN_STORE_H
#define CAPSTAN_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <raft.h>
#include <uv.h>

#include "lib/kv.h"
#include "store/mvcc.h"
#include "store/watch.h"

#define STORE_API_VERSION "3.4.23"

struct store_config {
	const char *name;
	const char *data_dir;
	const char *listen_peer_url;
	const char *advertise_peer_url;
	const char *advertise_client_urls;
	const char *initial_cluster;
	const char *cluster_token;
	bool new_cluster;
	unsigned snapshot_count;
	unsigned heartbeat_ms, election_ms;
	unsigned progress_ms;    /* watch progress_notify interval */
	unsigned db_cache_kib;   /* sqlite page cache, 0 = mvcc's default */
	/* Called once if the member hits a fault it cannot continue after. */
	void (*on_fatal)(void *data, const char *why);
	void *data;
};

struct store;

/* Opens the state in cfg->data_dir and starts the raft member. A damaged
 * state file is refused (CAP_ECORRUPT) with a message in errmsg. */
int store_open(uv_loop_t *loop, const struct store_config *cfg, struct store **out,
	       char *errmsg);
/* Fails pending requests with CAP_ESTOPPED, stops raft, closes the state,
 * frees the store, then calls cb. Watchers must have been removed. */
void store_close(struct store *s, void (*cb)(void *data), void *data);

/* The kv interface's call: answers op for req (borrowed) through cb. */
int store_call(struct store *s, enum kv_op op, json_t *req, kv_cb cb, void *data);
/* An answer as text: exactly what jsonx_dumps makes of the JSON answer
 * store_call gives (the gateway's reply body). text is valid only during
 * the call. */
typedef void (*store_text_cb)(void *data, const char *text, size_t len);
/* store_call, except that a successful range (KV_RANGE), and a successful
 * write whose answer is the header alone (a put without prev_kv), answer
 * through tcb, built without a JSON tree; errors, and everything else,
 * answer through cb as in store_call. Exactly one of the two is called. */
int store_call_text(struct store *s, enum kv_op op, json_t *req, kv_cb cb, store_text_cb tcb,
		    void *data);
/* store_call_text for a put already parsed from its text
 * (apply_parse_put_text), which the store owns from here on. */
struct apply_req;
int store_put(struct store *s, struct apply_req *put, kv_cb cb, store_text_cb tcb, void *data);
/* An in-process struct kv over this store (owned by the store). */
struct kv *store_kv(struct store *s);

/* The response header; rev < 0 leaves "revision" out. New reference. */
json_t *store_header(struct store *s, int64_t rev);
struct watch_hub *store_watch_hub(struct store *s);
struct mvcc *store_mvcc(struct store *s);
/* Commits the applied entries still in the open sqlite transaction (see
 * store.c's group commit): call before reading the database other than
 * through its own connection, e.g. mvcc_snapshot. 0 or CAP_EIO (then the
 * member stops). */
int store_commit_applied(struct store *s);
bool store_is_leader(struct store *s);
/* Leader side of forwarding: propose a follower's command ({"cmd": base64})
 * and answer {"rev","answer"[,"err","errmsg"]}; or confirm leadership and
 * answer {"index"}: the applied index a follower must reach to read. Errors
 * carry "cap" (the cap_err) besides etcd's fields. */
int store_internal_propose(struct store *s, json_t *body, kv_cb cb, void *data);
int store_internal_read_index(struct store *s, kv_cb cb, void *data);
/* True once this member learned it was removed from the cluster (the store
 * has then called on_fatal; etcd's removed members exit with status 0). */
bool store_removed(const struct store *s);
/* Whether id names a member of the cluster. */
bool store_has_member(struct store *s, uint64_t id);

/* Parses a watch create_request into opts (keys malloc'd into *key and *end,
 * caller frees) and reads its other fields. */
int store_watch_parse(json_t *create, struct watch_opts *opts, uint8_t **key, uint8_t **end,
		      int64_t *watch_id, bool *fragment, char *errmsg);
/* The "result" object of a watch frame with events (n may be 0). */
json_t *store_watch_frame(struct store *s, int64_t watch_id,
			  const struct mvcc_event *const *evs, size_t n, int64_t rev, bool prev_kv);

/* An error answer for kv callbacks: etcd's {"error","message","code"}. */
json_t *store_error(int err, const char *errmsg);

/* ---- for deterministic tests on libraft's in-memory fixture ---- */

/* A store with no raft member of its own: its FSM (store_fsm) applies the
 * entries of the raft it is bound to. Only the state machine works: no
 * store_call. */
int store_open_fsm(uv_loop_t *loop, const char *data_dir, struct store **out, char *errmsg);
struct raft_fsm *store_fsm(struct store *s);
void store_fsm_bind(struct store *s, struct raft *r);
/* Closes the state; the loop must then run to close the hub's and lease
 * table's timers. */
void store_close_fsm(struct store *s);
/* One log entry holding one command: kv request req (borrowed) of kind op.
 * *buf is allocated with raft_malloc, ready for raft_apply. */
int store_encode_command(enum kv_op op, json_t *req, uint64_t origin, uint64_t seq,
			 void **buf, size_t *len);

#endif
