/* store.c — one member of the store, and the service behind the kv
 * interface: see store.h.
 *
 * Happy path of a write: store_call parses and validates the request
 * (apply_parse), encodes it as a command (op byte + the request's JSON) and
 * proposes it (node_propose). When its log entry commits, fsm_apply applies
 * every command of the entry in one sqlite transaction, recording the raft
 * index; then watchers get the events, the lease clock the grants and
 * revokes, and the proposer its answer.
 *
 * Reads: serializable ranges answer from local state at once; linearizable
 * ones wait for a read point (node_read_barrier). Read-only txns go through
 * the log like writes, which keeps them linearizable with one code path.
 *
 * Failure modes: invalid requests are answered before they reach the log; a
 * command that fails at apply (a lease gone, a revision compacted meanwhile)
 * fails alone, deterministically on every member; a sqlite failure while
 * applying stops the member (on_fatal) rather than letting it diverge. */
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "lib/err.h"
#include "lib/jsonx.h"
#include "lib/log.h"
#include "store/apply.h"
#include "store/cmd.h"
#include "store/lease.h"
#include "store/node.h"

/* The snapshot image: a header, then the sqlite database image. */
#define SNAP_MAGIC "CAPSNAP1"
#define SNAP_HEADER 16

struct store {
	uv_loop_t *loop;
	struct store_config cfg;
	char *strings[8];      /* copies of cfg's strings */
	struct mvcc *mvcc;
	struct node *node;
	struct watch_hub *hub;
	struct lease_table *leases;
	struct raft_fsm fsm;
	struct kv kv;
	bool fatal;
	uint64_t rng;
	void (*close_cb)(void *data);
	void *close_data;
};

/* What applying one command produced, handed to its proposer. */
struct result {
	int err;
	char errmsg[CAP_ERRMSG_SIZE];
	json_t *answer;
	int64_t rev;
};

/* A request waiting for the log or a read point. */
struct pending {
	struct store *s;
	enum kv_op op;
	struct apply_req *req;
	kv_cb cb;
	void *data;
	int64_t lease_id;   /* for expiry revokes */
};

static void result_free(void *p)
{
	struct result *r = p;
	if (r == NULL)
		return;
	json_decref(r->answer);
	free(r);
}

json_t *store_error(int err, const char *errmsg)
{
	const char *msg = (err == CAP_EINVAL && errmsg && errmsg[0]) ? errmsg : cap_strerror(err);
	return kv_error_new(cap_err_grpc(err), msg);
}

json_t *store_header(struct store *s, int64_t rev)
{
	json_t *h = json_object();
	json_object_set_new_nocheck(h, "cluster_id", jsonx_u64(node_cluster_id(s->node)));
	json_object_set_new_nocheck(h, "member_id", jsonx_u64(node_id(s->node)));
	if (rev >= 0)
		json_object_set_new_nocheck(h, "revision", jsonx_i64(rev));
	json_object_set_new_nocheck(h, "raft_term", jsonx_u64(node_term(s->node)));
	return h;
}

/* Answers with a header first, as the gateway orders members. */
static void answer(struct store *s, kv_cb cb, void *data, json_t *body, int64_t rev)
{
	json_t *out = json_object();
	json_object_set_new_nocheck(out, "header", store_header(s, rev));
	if (body != NULL)
		json_object_update(out, body);
	cb(data, out, NULL);
	json_decref(out);
}

static void fail(kv_cb cb, void *data, int err, const char *errmsg)
{
	json_t *e = store_error(err, errmsg);
	cb(data, NULL, e);
	json_decref(e);
}

/* ---- the state machine ---- */

static void fatal(struct store *s, const char *why)
{
	if (s->fatal)
		return;
	s->fatal = true;
	log_error("stopping: %s", why);
	if (s->cfg.on_fatal)
		s->cfg.on_fatal(s->cfg.data, why);
}

static void reload_leases(struct store *s)
{
	int64_t *ids = NULL, *ttls = NULL;
	size_t n = 0;
	lease_clear(s->leases);
	if (mvcc_lease_list(s->mvcc, &ids, &ttls, &n) != 0) {
		fatal(s, "reading leases failed");
		return;
	}
	for (size_t i = 0; i < n; i++)
		lease_granted(s->leases, ids[i], ttls[i]);
	free(ids);
	free(ttls);
	lease_set_leader(s->leases, node_leader_ready(s->node));
}

static struct result *apply_one(struct store *s, const uint8_t *cmd, size_t len,
				struct mvcc_events *events)
{
	struct result *r = calloc(1, sizeof *r);
	struct apply_req *req = NULL;
	json_t *body;
	json_error_t jerr;

	if (r == NULL)
		return NULL;
	if (len < 1 || cmd[0] >= KV_OP_COUNT) {
		r->err = CAP_ECORRUPT;
		return r;
	}
	body = json_loadb((const char *)cmd + 1, len - 1, 0, &jerr);
	if (body == NULL) {
		r->err = CAP_ECORRUPT;
		return r;
	}
	r->err = apply_parse((enum kv_op)cmd[0], body, &req, r->errmsg);
	json_decref(body);
	if (r->err != 0)
		return r;
	r->err = apply_exec(s->mvcc, req, &r->answer, events, &r->rev, r->errmsg);
	if (r->err == 0) {
		if (apply_req_op(req) == KV_LEASE_GRANT)
			lease_granted(s->leases, apply_lease_id(req), apply_lease_ttl(req));
		else if (apply_req_op(req) == KV_LEASE_REVOKE)
			lease_revoked(s->leases, apply_lease_id(req));
	}
	apply_req_free(req);
	return r;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct store *s = fsm->data;
	uint64_t index = node_applying_index(s->node);
	struct mvcc_events events = {0};
	struct cmd_entry e;
	void **results;
	int rv;

	*result = NULL;
	if (index <= mvcc_applied_index(s->mvcc))
		return 0;  /* already in sqlite: a replay after restart */
	if (cmd_decode(buf->base, buf->len, &e) != 0) {
		fatal(s, "a log entry failed to decode");
		return RAFT_CORRUPT;
	}
	results = calloc(e.count ? e.count : 1, sizeof *results);
	if (results == NULL || mvcc_begin(s->mvcc) != 0) {
		free(results);
		cmd_entry_clear(&e);
		fatal(s, "cannot begin a state transaction");
		return RAFT_IOERR;
	}
	for (uint32_t i = 0; i < e.count; i++) {
		struct result *r = apply_one(s, e.cmds[i], e.lens[i], &events);
		results[i] = r;
		if (r == NULL || r->err == CAP_ENOMEM || r->err == CAP_EIO || r->err == CAP_ECORRUPT) {
			/* Not the request's fault: applying cannot go on consistently. */
			mvcc_rollback(s->mvcc);
			goto fatal_out;
		}
	}
	rv = mvcc_commit(s->mvcc, index);
	if (rv != 0)
		goto fatal_out;
	if (events.n > 0)
		watch_hub_notify(s->hub, &events, mvcc_rev(s->mvcc));
	mvcc_events_clear(&events);
	node_take_results(s->node, &e, results);
	cmd_entry_clear(&e);
	return 0;

fatal_out:
	for (uint32_t i = 0; i < e.count; i++)
		result_free(results[i]);
	free(results);
	mvcc_events_clear(&events);
	cmd_entry_clear(&e);
	fatal(s, mvcc_errmsg(s->mvcc));
	return RAFT_IOERR;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct store *s = fsm->data;
	void *image;
	size_t len;
	uint8_t *hdr;
	uint64_t applied = mvcc_applied_index(s->mvcc);

	if (mvcc_snapshot(s->mvcc, &image, &len) != 0)
		return RAFT_IOERR;
	*bufs = raft_malloc(2 * sizeof **bufs);
	hdr = raft_malloc(SNAP_HEADER);
	if (*bufs == NULL || hdr == NULL) {
		raft_free(*bufs);
		raft_free(hdr);
		free(image);
		return RAFT_NOMEM;
	}
	memcpy(hdr, SNAP_MAGIC, 8);
	for (int i = 0; i < 8; i++)
		hdr[8 + i] = (uint8_t)(applied >> (8 * i));
	(*bufs)[0].base = hdr;
	(*bufs)[0].len = SNAP_HEADER;
	/* raft frees snapshot buffers with raft_free, which is free() with the
	 * default heap that capstan keeps. */
	(*bufs)[1].base = image;
	(*bufs)[1].len = len;
	*n_bufs = 2;
	log_info("snapshot at applied index %" PRIu64 " (%zu bytes before compression)", applied, len);
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct store *s = fsm->data;
	const uint8_t *p = buf->base;
	uint64_t applied = 0;
	int rv = 0;

	if (buf->len < SNAP_HEADER || memcmp(p, SNAP_MAGIC, 8) != 0) {
		raft_free(buf->base);
		log_error("snapshot: bad header");
		return RAFT_CORRUPT;
	}
	for (int i = 7; i >= 0; i--)
		applied = (applied << 8) | p[8 + i];
	/* sqlite is durable and the committed log prefix is the same on every
	 * member, so a state already at or past the snapshot stays. */
	if (applied > mvcc_applied_index(s->mvcc)) {
		rv = mvcc_restore(s->mvcc, p + SNAP_HEADER, buf->len - SNAP_HEADER);
		if (rv != 0) {
			log_error("snapshot restore: %s", mvcc_errmsg(s->mvcc));
			rv = RAFT_CORRUPT;
		} else {
			log_info("state restored from snapshot at index %" PRIu64, applied);
			reload_leases(s);
			watch_hub_reset(s->hub);
		}
	}
	raft_free(buf->base);
	return rv;
}

/* ---- leadership and leases ---- */

static void on_leader(void *data, bool ready)
{
	struct store *s = data;
	lease_set_leader(s->leases, ready);
}

static void on_node_fatal(void *data, const char *why)
{
	fatal(data, why);
}

static void expire_done(void *data, json_t *ans, json_t *err)
{
	struct pending *p = data;
	(void)ans;
	if (err != NULL)
		lease_expire_failed(p->s->leases, p->lease_id);
	free(p);
}

static void propose_done(void *data, int status, void *result);

static void lease_expire(void *data, int64_t id)
{
	struct store *s = data;
	struct pending *p = calloc(1, sizeof *p);
	char cmd[64];
	int len;
	if (p == NULL) {
		lease_expire_failed(s->leases, id);
		return;
	}
	p->s = s;
	p->op = KV_LEASE_REVOKE;
	p->cb = expire_done;
	p->data = p;
	p->lease_id = id;
	len = snprintf(cmd, sizeof cmd, "%c{\"ID\":%" PRId64 "}", (char)KV_LEASE_REVOKE, id);
	if (node_propose(s->node, cmd, (size_t)len, propose_done, p) != 0) {
		lease_expire_failed(s->leases, id);
		free(p);
	}
	log_debug("lease %" PRId64 " expired", id);
}

/* ---- serving requests ---- */

static void propose_done(void *data, int status, void *result)
{
	struct pending *p = data;
	struct result *r = result;
	kv_cb cb = p->cb;
	void *cb_data = p->data;
	struct store *s = p->s;
	bool is_expiry = p->cb == expire_done;

	if (!is_expiry)
		free(p);
	if (status != 0 || r == NULL)
		fail(cb, cb_data, status ? status : CAP_ENOMEM, NULL);
	else if (r->err != 0)
		fail(cb, cb_data, r->err, r->errmsg);
	else
		answer(s, cb, cb_data, r->answer, r->rev);
	result_free(r);
}

static int propose(struct store *s, enum kv_op op, json_t *req, kv_cb cb, void *data)
{
	struct pending *p;
	char *json;
	size_t len;
	int rv;

	json = json_dumps(req, JSON_COMPACT);
	if (json == NULL)
		return CAP_ENOMEM;
	len = strlen(json);
	/* The op code rides in the first byte, the request's JSON after it. */
	char *cmd = malloc(len + 1);
	p = calloc(1, sizeof *p);
	if (cmd == NULL || p == NULL) {
		free(json);
		free(cmd);
		free(p);
		return CAP_ENOMEM;
	}
	cmd[0] = (char)op;
	memcpy(cmd + 1, json, len);
	free(json);
	p->s = s;
	p->op = op;
	p->cb = cb;
	p->data = data;
	rv = node_propose(s->node, cmd, len + 1, propose_done, p);
	free(cmd);
	if (rv != 0)
		free(p);
	return rv;
}

static void read_now(struct store *s, struct apply_req *req, kv_cb cb, void *data)
{
	json_t *ans = NULL;
	int64_t rev = 0;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	struct mvcc_events unused = {0};
	int rv = apply_exec(s->mvcc, req, &ans, &unused, &rev, errmsg);
	if (rv != 0)
		fail(cb, data, rv, errmsg);
	else
		answer(s, cb, data, ans, rev);
	json_decref(ans);
}

static void read_point(void *data, int status)
{
	struct pending *p = data;
	if (status != 0)
		fail(p->cb, p->data, status, NULL);
	else
		read_now(p->s, p->req, p->cb, p->data);
	apply_req_free(p->req);
	free(p);
}

static uint64_t next_random(struct store *s)
{
	/* xorshift64*, seeded from the clock and member id: lease IDs only need
	 * to be unlikely to collide, and a collision is caught at apply. */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return s->rng * 2685821657736338717ull;
}

static int call_lease_grant(struct store *s, json_t *req, kv_cb cb, void *data)
{
	json_t *copy = json_deep_copy(req);
	int64_t id = 0, ttl = 0;
	char errmsg[CAP_ERRMSG_SIZE];
	int rv;

	if (copy == NULL)
		return CAP_ENOMEM;
	jsonx_get_i64(copy, "ID", &id, errmsg);
	jsonx_get_i64(copy, "TTL", &ttl, errmsg);
	if (id == 0) {
		do
			id = (int64_t)(next_random(s) >> 1);
		while (id == 0 || lease_exists(s->leases, id));
		json_object_set_new(copy, "ID", json_integer(id));
	} else if (lease_exists(s->leases, id)) {
		json_decref(copy);
		fail(cb, data, CAP_ELEASEEXISTS, NULL);
		return CAP_OK;
	}
	if (ttl < LEASE_MIN_TTL)
		json_object_set_new(copy, "TTL", json_integer(LEASE_MIN_TTL));
	rv = propose(s, KV_LEASE_GRANT, copy, cb, data);
	json_decref(copy);
	return rv;
}

static void call_keepalive(struct store *s, json_t *req, kv_cb cb, void *data)
{
	int64_t id = 0, ttl = 0;
	char errmsg[CAP_ERRMSG_SIZE];
	if (jsonx_get_i64(req, "ID", &id, errmsg) != 0) {
		fail(cb, data, CAP_EINVAL, errmsg);
		return;
	}
	if (!node_leader_ready(s->node)) {
		fail(cb, data, CAP_ENOLEADER, NULL);
		return;
	}
	if (lease_keepalive(s->leases, id, &ttl) != 0) {
		fail(cb, data, CAP_ELEASENOTFOUND, NULL);
		return;
	}
	json_t *body = json_object();
	json_object_set_new_nocheck(body, "ID", jsonx_i64(id));
	json_object_set_new_nocheck(body, "TTL", jsonx_i64(ttl));
	answer(s, cb, data, body, mvcc_rev(s->mvcc));
	json_decref(body);
}

static void call_timetolive(struct store *s, json_t *req, kv_cb cb, void *data)
{
	int64_t id = 0, remaining = 0, granted = 0;
	bool keys = false;
	char errmsg[CAP_ERRMSG_SIZE];
	json_t *body;
	if (jsonx_get_i64(req, "ID", &id, errmsg) != 0 ||
	    jsonx_get_bool(req, "keys", &keys, errmsg) != 0) {
		fail(cb, data, CAP_EINVAL, errmsg);
		return;
	}
	body = json_object();
	json_object_set_new_nocheck(body, "ID", jsonx_i64(id));
	if (lease_remaining(s->leases, id, &remaining, &granted) != 0) {
		/* etcd answers a missing lease with TTL -1, not an error. */
		json_object_set_new_nocheck(body, "TTL", jsonx_i64(-1));
	} else {
		json_object_set_new_nocheck(body, "TTL", jsonx_i64(remaining));
		json_object_set_new_nocheck(body, "grantedTTL", jsonx_i64(granted));
		if (keys) {
			struct mvcc_kvs kvs = {0};
			if (mvcc_lease_keys(s->mvcc, id, &kvs) == 0 && kvs.n > 0) {
				json_t *arr = json_array();
				for (size_t i = 0; i < kvs.n; i++)
					json_array_append_new(arr, jsonx_bytes(kvs.v[i].key, kvs.v[i].key_len));
				json_object_set_new_nocheck(body, "keys", arr);
			}
			mvcc_kvs_clear(&kvs);
		}
	}
	answer(s, cb, data, body, mvcc_rev(s->mvcc));
	json_decref(body);
}

static void call_leases(struct store *s, kv_cb cb, void *data)
{
	int64_t *ids = NULL, *ttls = NULL;
	size_t n = 0;
	json_t *body;
	if (mvcc_lease_list(s->mvcc, &ids, &ttls, &n) != 0) {
		fail(cb, data, CAP_EIO, NULL);
		return;
	}
	body = json_object();
	if (n > 0) {
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++) {
			json_t *o = json_object();
			json_object_set_new_nocheck(o, "ID", jsonx_i64(ids[i]));
			json_array_append_new(arr, o);
		}
		json_object_set_new_nocheck(body, "leases", arr);
	}
	free(ids);
	free(ttls);
	answer(s, cb, data, body, mvcc_rev(s->mvcc));
	json_decref(body);
}

static void call_status(struct store *s, kv_cb cb, void *data)
{
	int64_t size = 0, in_use = 0;
	json_t *body = json_object();
	mvcc_db_size(s->mvcc, &size, &in_use);
	json_object_set_new_nocheck(body, "version", json_string(STORE_API_VERSION));
	json_object_set_new_nocheck(body, "dbSize", jsonx_i64(size));
	json_object_set_new_nocheck(body, "leader", jsonx_u64(node_leader(s->node)));
	json_object_set_new_nocheck(body, "raftIndex", jsonx_u64(node_last_index(s->node)));
	json_object_set_new_nocheck(body, "raftTerm", jsonx_u64(node_term(s->node)));
	json_object_set_new_nocheck(body, "raftAppliedIndex", jsonx_u64(node_applied_index(s->node)));
	json_object_set_new_nocheck(body, "dbSizeInUse", jsonx_i64(in_use));
	answer(s, cb, data, body, mvcc_rev(s->mvcc));
	json_decref(body);
}

static void call_hash(struct store *s, kv_cb cb, void *data)
{
	uint32_t hash = 0;
	json_t *body;
	if (mvcc_hash(s->mvcc, &hash) != 0) {
		fail(cb, data, CAP_EIO, NULL);
		return;
	}
	body = json_object();
	json_object_set_new_nocheck(body, "hash", json_integer(hash));
	answer(s, cb, data, body, mvcc_rev(s->mvcc));
	json_decref(body);
}

static void call_member_list(struct store *s, kv_cb cb, void *data)
{
	const struct node_member *m;
	size_t n = node_members(s->node, &m);
	json_t *body = json_object();
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		json_t *peers = json_array();
		json_object_set_new_nocheck(o, "ID", jsonx_u64(m[i].id));
		json_object_set_new_nocheck(o, "name", json_string(m[i].name));
		json_array_append_new(peers, json_string(m[i].peer_url));
		json_object_set_new_nocheck(o, "peerURLs", peers);
		if (m[i].id == node_id(s->node) && s->cfg.advertise_client_urls) {
			json_t *clients = json_array();
			char tmp[4096];
			char *save = NULL;
			snprintf(tmp, sizeof tmp, "%s", s->cfg.advertise_client_urls);
			for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
				json_array_append_new(clients, json_string(t));
			json_object_set_new_nocheck(o, "clientURLs", clients);
		}
		json_array_append_new(arr, o);
	}
	json_object_set_new_nocheck(body, "members", arr);
	answer(s, cb, data, body, -1);
	json_decref(body);
}

int store_call(struct store *s, enum kv_op op, json_t *req, kv_cb cb, void *data)
{
	struct apply_req *parsed = NULL;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	int rv;

	if (s->fatal)
		return CAP_ESTOPPED;
	switch (op) {
	case KV_RANGE:
	case KV_PUT:
	case KV_DELETE_RANGE:
	case KV_TXN:
	case KV_COMPACT:
	case KV_LEASE_REVOKE:
		rv = apply_parse(op, req, &parsed, errmsg);
		if (rv != 0) {
			fail(cb, data, rv, errmsg);
			return CAP_OK;
		}
		if (op == KV_RANGE) {
			if (apply_req_serializable(parsed)) {
				read_now(s, parsed, cb, data);
				apply_req_free(parsed);
				return CAP_OK;
			}
			struct pending *p = calloc(1, sizeof *p);
			if (p == NULL) {
				apply_req_free(parsed);
				return CAP_ENOMEM;
			}
			p->s = s;
			p->req = parsed;
			p->cb = cb;
			p->data = data;
			rv = node_read_barrier(s->node, read_point, p);
			if (rv != 0) {
				apply_req_free(parsed);
				free(p);
			}
			return rv;
		}
		if (op == KV_LEASE_REVOKE && !lease_exists(s->leases, apply_lease_id(parsed))) {
			apply_req_free(parsed);
			fail(cb, data, CAP_ELEASENOTFOUND, NULL);
			return CAP_OK;
		}
		apply_req_free(parsed);
		return propose(s, op, req, cb, data);
	case KV_LEASE_GRANT:
		rv = apply_parse(op, req, &parsed, errmsg);
		apply_req_free(parsed);
		if (rv != 0) {
			fail(cb, data, rv, errmsg);
			return CAP_OK;
		}
		return call_lease_grant(s, req, cb, data);
	case KV_LEASE_KEEPALIVE:
		call_keepalive(s, req, cb, data);
		return CAP_OK;
	case KV_LEASE_TIMETOLIVE:
		call_timetolive(s, req, cb, data);
		return CAP_OK;
	case KV_LEASE_LEASES:
		call_leases(s, cb, data);
		return CAP_OK;
	case KV_STATUS:
		call_status(s, cb, data);
		return CAP_OK;
	case KV_HASH:
		call_hash(s, cb, data);
		return CAP_OK;
	case KV_MEMBER_LIST:
		call_member_list(s, cb, data);
		return CAP_OK;
	default:
		return CAP_EINVAL;
	}
}

/* ---- watch helpers shared by the gateway and the in-process kv ---- */

int store_watch_parse(json_t *create, struct watch_opts *opts, uint8_t **key, uint8_t **end,
		      int64_t *watch_id, bool *fragment, char *errmsg)
{
	static const char *const filters[] = {"NOPUT", "NODELETE", NULL};
	size_t key_len = 0, end_len = 0;
	json_t *arr = NULL;
	int rv;

	memset(opts, 0, sizeof *opts);
	*key = *end = NULL;
	if (!json_is_object(create)) {
		cap_errmsg_printf(errmsg, "json: create_request must be an object");
		return CAP_EINVAL;
	}
	if ((rv = jsonx_get_bytes(create, "key", key, &key_len, errmsg)) != 0 ||
	    (rv = jsonx_get_bytes(create, "range_end", end, &end_len, errmsg)) != 0 ||
	    (rv = jsonx_get_i64(create, "start_revision", &opts->start_rev, errmsg)) != 0 ||
	    (rv = jsonx_get_bool(create, "prev_kv", &opts->prev_kv, errmsg)) != 0 ||
	    (rv = jsonx_get_bool(create, "progress_notify", &opts->progress_notify, errmsg)) != 0 ||
	    (rv = jsonx_get_i64(create, "watch_id", watch_id, errmsg)) != 0 ||
	    (rv = jsonx_get_bool(create, "fragment", fragment, errmsg)) != 0 ||
	    (rv = jsonx_get_array(create, "filters", &arr, errmsg)) != 0)
		goto err;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *wrap = json_object();
		int f = 0;
		json_object_set(wrap, "f", json_array_get(arr, i));
		rv = jsonx_get_enum(wrap, "f", filters, &f, errmsg);
		json_decref(wrap);
		if (rv != 0)
			goto err;
		if (f == 0)
			opts->no_put = true;
		else
			opts->no_delete = true;
	}
	opts->key = *key;
	opts->key_len = key_len;
	opts->end = *end;
	opts->end_len = end_len;
	return CAP_OK;
err:
	free(*key);
	free(*end);
	*key = *end = NULL;
	return rv;
}

json_t *store_watch_frame(struct store *s, int64_t watch_id,
			  const struct mvcc_event *const *evs, size_t n, int64_t rev, bool prev_kv)
{
	json_t *res = json_object();
	json_object_set_new_nocheck(res, "header", store_header(s, rev));
	jsonx_set_i64_nz(res, "watch_id", watch_id);
	if (n > 0) {
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++) {
			json_t *ev = json_object();
			if (evs[i]->type == MVCC_EVENT_DELETE)
				json_object_set_new_nocheck(ev, "type", json_string("DELETE"));
			json_object_set_new_nocheck(ev, "kv", apply_kv_json(&evs[i]->kv, false));
			if (prev_kv && evs[i]->prev.mod_rev != 0)
				json_object_set_new_nocheck(ev, "prev_kv", apply_kv_json(&evs[i]->prev, false));
			json_array_append_new(arr, ev);
		}
		json_object_set_new_nocheck(res, "events", arr);
	}
	return res;
}

/* ---- the in-process kv ---- */

struct kv_watch {
	struct store *s;
	struct watcher *w;
	int64_t id;
	bool prev_kv;
	kv_watch_cb cb;
	void *data;
};

static int kv_local_call(struct kv *kv, enum kv_op op, json_t *req, kv_cb cb, void *data)
{
	return store_call(kv->impl, op, req, cb, data);
}

static void local_deliver(void *data, const struct mvcc_event *const *evs, size_t n, int64_t rev)
{
	struct kv_watch *kw = data;
	json_t *frame = store_watch_frame(kw->s, kw->id, evs, n, rev, kw->prev_kv);
	kw->cb(kw->data, frame, NULL);
	json_decref(frame);
}

static void local_compacted(void *data, int64_t compact_rev)
{
	struct kv_watch *kw = data;
	json_t *frame = json_object();
	json_object_set_new_nocheck(frame, "header", store_header(kw->s, -1));
	json_object_set_new_nocheck(frame, "canceled", json_true());
	json_object_set_new_nocheck(frame, "compact_revision", jsonx_i64(compact_rev));
	kw->cb(kw->data, frame, NULL);
	json_decref(frame);
}

static bool local_blocked(void *data)
{
	(void)data;
	return false;
}

static int kv_local_watch(struct kv *kv, json_t *create, kv_watch_cb cb, void *data,
			  struct kv_watch **out)
{
	struct store *s = kv->impl;
	struct watch_opts opts;
	uint8_t *key, *end;
	int64_t id = 0;
	bool fragment = false;
	char errmsg[CAP_ERRMSG_SIZE];
	struct kv_watch *kw;
	int rv = store_watch_parse(create, &opts, &key, &end, &id, &fragment, errmsg);
	if (rv != 0)
		return rv;
	kw = calloc(1, sizeof *kw);
	if (kw == NULL) {
		rv = CAP_ENOMEM;
		goto out;
	}
	kw->s = s;
	kw->id = id;
	kw->prev_kv = opts.prev_kv;
	kw->cb = cb;
	kw->data = data;
	struct watch_sink sink = {local_deliver, local_compacted, local_blocked, kw};
	rv = watch_add(s->hub, &opts, &sink, &kw->w);
	if (rv != 0) {
		free(kw);
		goto out;
	}
	*out = kw;
out:
	free(key);
	free(end);
	return rv;
}

static void kv_local_watch_cancel(struct kv_watch *kw)
{
	watch_remove(kw->s->hub, kw->w);
	kw->cb(kw->data, NULL, NULL);
	free(kw);
}

static void kv_local_close(struct kv *kv)
{
	(void)kv;  /* owned by the store */
}

static const struct kv_ops kv_local_ops = {
	.call = kv_local_call,
	.watch = kv_local_watch,
	.watch_cancel = kv_local_watch_cancel,
	.close = kv_local_close,
};

struct kv *store_kv(struct store *s)
{
	return &s->kv;
}

/* ---- life cycle ---- */

static char *keep(struct store *s, int slot, const char *v)
{
	if (v == NULL)
		return NULL;
	s->strings[slot] = strdup(v);
	return s->strings[slot];
}

int store_open(uv_loop_t *loop, const struct store_config *cfg, struct store **out,
	       char *errmsg)
{
	struct store *s = calloc(1, sizeof *s);
	char path[4096];
	int rv;

	if (s == NULL)
		return CAP_ENOMEM;
	s->loop = loop;
	s->cfg = *cfg;
	s->cfg.name = keep(s, 0, cfg->name);
	s->cfg.data_dir = keep(s, 1, cfg->data_dir);
	s->cfg.listen_peer_url = keep(s, 2, cfg->listen_peer_url);
	s->cfg.advertise_peer_url = keep(s, 3, cfg->advertise_peer_url);
	s->cfg.advertise_client_urls = keep(s, 4, cfg->advertise_client_urls);
	s->cfg.initial_cluster = keep(s, 5, cfg->initial_cluster);
	s->cfg.cluster_token = keep(s, 6, cfg->cluster_token);
	s->rng = (uint64_t)uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32) ^ 0x9E3779B97F4A7C15ull;

	if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
		cap_errmsg_printf(errmsg, "create %s: %s", cfg->data_dir, strerror(errno));
		rv = CAP_EIO;
		goto err;
	}
	snprintf(path, sizeof path, "%s/state.db", cfg->data_dir);
	rv = mvcc_open(path, &s->mvcc, errmsg);
	if (rv != 0) {
		cap_errmsg_wrapf(errmsg, "%s", path);
		goto err;
	}
	rv = watch_hub_new(loop, s->mvcc, cfg->progress_ms, &s->hub);
	if (rv != 0)
		goto err_mvcc;
	rv = lease_table_new(loop, lease_expire, s, &s->leases);
	if (rv != 0)
		goto err_hub;
	s->kv.ops = &kv_local_ops;
	s->kv.impl = s;
	s->fsm.version = 1;
	s->fsm.data = s;
	s->fsm.apply = fsm_apply;
	s->fsm.snapshot = fsm_snapshot;
	s->fsm.restore = fsm_restore;

	struct node_config nc = {
		.name = s->cfg.name,
		.data_dir = s->cfg.data_dir,
		.listen_peer_url = s->cfg.listen_peer_url,
		.advertise_peer_url = s->cfg.advertise_peer_url,
		.initial_cluster = s->cfg.initial_cluster,
		.cluster_token = s->cfg.cluster_token,
		.new_cluster = cfg->new_cluster,
		.snapshot_count = cfg->snapshot_count,
		.heartbeat_ms = cfg->heartbeat_ms,
		.election_ms = cfg->election_ms,
		.fsm = &s->fsm,
		.data = s,
		.on_leader = on_leader,
		.free_result = result_free,
		.on_fatal = on_node_fatal,
	};
	/* Leases must be known before raft replays the log. */
	{
		int64_t *ids = NULL, *ttls = NULL;
		size_t n = 0;
		if (mvcc_lease_list(s->mvcc, &ids, &ttls, &n) == 0)
			for (size_t i = 0; i < n; i++)
				lease_granted(s->leases, ids[i], ttls[i]);
		free(ids);
		free(ttls);
	}
	rv = node_start(loop, &nc, &s->node, errmsg);
	if (rv != 0)
		goto err_leases;
	log_info("state at revision %lld, applied index %llu", (long long)mvcc_rev(s->mvcc),
		 (unsigned long long)mvcc_applied_index(s->mvcc));
	*out = s;
	return CAP_OK;

err_leases:
	lease_table_close(s->leases);
err_hub:
	watch_hub_close(s->hub);
err_mvcc:
	mvcc_close(s->mvcc);
err:
	for (int i = 0; i < 8; i++)
		free(s->strings[i]);
	free(s);
	return rv;
}

static void node_closed(void *data)
{
	struct store *s = data;
	void (*cb)(void *) = s->close_cb;
	void *cb_data = s->close_data;
	lease_table_close(s->leases);
	watch_hub_close(s->hub);
	mvcc_close(s->mvcc);
	for (int i = 0; i < 8; i++)
		free(s->strings[i]);
	free(s);
	if (cb)
		cb(cb_data);
}

void store_close(struct store *s, void (*cb)(void *data), void *data)
{
	s->close_cb = cb;
	s->close_data = data;
	node_close(s->node, node_closed, s);
}

struct watch_hub *store_watch_hub(struct store *s)
{
	return s->hub;
}

struct mvcc *store_mvcc(struct store *s)
{
	return s->mvcc;
}

bool store_is_leader(struct store *s)
{
	return node_leader_ready(s->node);
}

bool store_has_member(struct store *s, uint64_t id)
{
	const struct node_member *m;
	size_t n = node_members(s->node, &m);
	for (size_t i = 0; i < n; i++)
		if (m[i].id == id)
			return true;
	return false;
}
