/* store.c — one member of the store, and the service behind the kv
 * interface: see store.h.
 *
 * Happy path of a write: store_call parses and validates the request
 * (apply_parse), encodes it as a command (an op byte, then a put in apply's
 * binary form or any other request's JSON) and proposes it (node_propose).
 * When its log entry commits, fsm_apply applies every command of the entry
 * in the open sqlite transaction, recording the raft index; then watchers
 * get the events, the lease clock the grants and revokes, and the proposer
 * its answer. The transaction spans several entries and is committed a few
 * milliseconds later (commit_applied): see "Group commit of applied
 * entries" below.
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
#include "lib/http.h"
#include "lib/jsonx.h"
#include "lib/log.h"
#include "store/apply.h"
#include "store/cmd.h"
#include "store/forward.h"
#include "store/lease.h"
#include "store/node.h"
#include "store/wal_ckpt.h"

/* Command op byte for a member's published attributes (name, client URLs);
 * the other op bytes are enum kv_op values. */
#define CMD_MEMBER_ATTR 0x40
/* Command op byte for a request in apply's binary form (apply_encode_bin):
 * puts, which are most of the log. The rest stay op byte + JSON, and
 * entries written before the binary form existed read as they did. */
#define CMD_BINARY 0x41
/* The sqlite transaction of applied entries is committed once it holds
 * this many entries or commands, or this long after it opened. */
#define COMMIT_MAX_ENTRIES 64
#define COMMIT_MAX_CMDS 2048
#define COMMIT_DELAY_MS 5
/* How long a follower waits for the leader on a forwarded request. */
#define FORWARD_TIMEOUT_MS 7000

/* Snapshots: 8 bytes of magic and the applied index (u64 little-endian),
 * then for a full image the sqlite database; a reference (what a member
 * keeps of its own snapshots, see fsm_snapshot) has nothing after. */
#define SNAP_MAGIC "CAPSNAP1"
#define SNAP_REF_MAGIC "CAPSREF1"
#define SNAP_HEADER 16

struct store {
	uv_loop_t *loop;
	struct store_config cfg;
	char *strings[8];      /* copies of cfg's strings */
	struct mvcc *mvcc;
	struct wal_ckpt *ckpt;  /* NULL for FSM-only stores: sqlite checkpoints */
	struct node *node;
	struct watch_hub *hub;
	struct lease_table *leases;
	struct raft_fsm fsm;
	struct kv kv;
	struct forwarder *fw;
	struct raft *bound;     /* FSM-only stores: the raft whose log they apply */
	json_t *members;        /* published attributes: {"<id>": {name, clientURLs}} */
	bool published;         /* ours are in the replicated state */
	bool publishing;
	uv_timer_t tick;
	uv_check_t check;
	/* applied entries not yet committed to sqlite (see commit_applied) */
	uv_timer_t commit_timer;
	bool commit_timer_ready;   /* until then every entry commits at once */
	bool batch_open;
	bool rolled_back;          /* applied entries were lost: apply and reads stop */
	uint64_t batch_index;      /* raft index of the last entry applied in it */
	uint32_t batch_entries, batch_cmds;
	/* linearizable reads on a follower: waiting for a read index, the one
	 * batch in flight, and those waiting for the local apply to catch up */
	struct pending *ri_queue, *ri_inflight, *ri_ready;
	/* requests waiting for the known leader to publish its client URL */
	struct pending *url_wait;
	bool ri_busy;
	bool fatal;
	bool removed;           /* this member was removed from the cluster */
	uint64_t leaderless_since;   /* loop time, 0 while a leader is known */
	uint64_t next_probe;
	unsigned probe_turn;
	bool probing;
	int closed_handles;
	uint64_t rng;
	/* range answers as text (see read_text): kept between answers so a
	 * read allocates nothing for its text once the buffer has grown */
	struct jsonx_out text;
	/* A text header's parts around the revision, remade when the term or
	 * the ids change (text_header): the four numbers cost more to print
	 * than the rest of a put's answer. */
	char hdr_head[128], hdr_tail[48];
	size_t hdr_head_len, hdr_tail_len;
	uint64_t hdr_cluster, hdr_member, hdr_term;
	bool hdr_ready;
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
	store_text_cb text_cb;   /* the answer as text, where it can be (store_call_text) */
	void *data;
	int64_t lease_id;   /* for expiry revokes */
	char *cmd;          /* the encoded command, kept for one forward retry */
	size_t cmd_len;
	bool retried;
	uint64_t read_index;   /* follower reads: the leader's applied index */
	/* a proposal's request as parsed when it arrived: the leader applies
	 * it without parsing its command again (followers parse the command,
	 * which is the same request as JSON) */
	struct apply_req *parsed;
	uint64_t deadline_ms;  /* url_wait: when to give up */
	struct pending *next;
	/* internal proposals (from a follower) answer in raw form */
	void (*raw_cb)(void *data, int status, struct result *r);
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
	lease_set_leader(s->leases, s->node != NULL && node_leader_ready(s->node));
}

/* Records a member's name and client URLs in the replicated state. */
static int apply_member_attr(struct store *s, json_t *body)
{
	const char *id = json_string_value(json_object_get(body, "ID"));
	json_t *attr = json_object();
	char *text;
	int rv;
	if (id == NULL) {
		json_decref(attr);
		return CAP_EINVAL;
	}
	json_object_set(attr, "name", json_object_get(body, "name"));
	json_object_set(attr, "clientURLs", json_object_get(body, "clientURLs"));
	json_object_set_new(s->members, id, attr);
	text = json_dumps(s->members, JSON_COMPACT | JSON_SORT_KEYS);
	if (text == NULL)
		return CAP_ENOMEM;
	rv = mvcc_meta_set(s->mvcc, "members", text);
	free(text);
	return rv;
}

static void load_members(struct store *s)
{
	char *text = NULL;
	json_error_t jerr;
	json_decref(s->members);
	s->members = NULL;
	if (mvcc_meta_get(s->mvcc, "members", &text) == 0 && text != NULL)
		s->members = json_loads(text, 0, &jerr);
	free(text);
	if (!json_is_object(s->members)) {
		json_decref(s->members);
		s->members = json_object();
	}
	s->published = false;
}

static void lease_bookkeeping(struct store *s, const struct apply_req *req)
{
	if (apply_req_op(req) == KV_LEASE_GRANT)
		lease_granted(s->leases, apply_lease_id(req), apply_lease_ttl(req));
	else if (apply_req_op(req) == KV_LEASE_REVOKE)
		lease_revoked(s->leases, apply_lease_id(req));
}

static struct result *apply_one(struct store *s, const uint8_t *cmd, size_t len,
				const struct apply_req *parsed, struct mvcc_events *events)
{
	struct result *r = calloc(1, sizeof *r);
	struct apply_req *req = NULL;
	json_t *body;
	json_error_t jerr;

	if (r == NULL)
		return NULL;
	if (parsed != NULL) {
		r->err = apply_exec(s->mvcc, parsed, &r->answer, events, &r->rev, r->errmsg);
		if (r->err == 0)
			lease_bookkeeping(s, parsed);
		return r;
	}
	if (len < 1 || (cmd[0] >= KV_OP_COUNT && cmd[0] != CMD_MEMBER_ATTR && cmd[0] != CMD_BINARY)) {
		r->err = CAP_ECORRUPT;
		return r;
	}
	if (cmd[0] == CMD_BINARY) {
		r->err = apply_decode_bin(cmd + 1, len - 1, &req, r->errmsg);
		if (r->err != 0)
			return r;
		goto exec;
	}
	body = jsonx_loadb((const char *)cmd + 1, len - 1, 0, &jerr);
	if (body == NULL) {
		r->err = CAP_ECORRUPT;
		return r;
	}
	if (cmd[0] == CMD_MEMBER_ATTR) {
		r->err = apply_member_attr(s, body);
		r->rev = mvcc_rev(s->mvcc);
		json_decref(body);
		return r;
	}
	r->err = apply_parse((enum kv_op)cmd[0], body, &req, r->errmsg);
	json_decref(body);
	if (r->err != 0)
		return r;
exec:
	r->err = apply_exec(s->mvcc, req, &r->answer, events, &r->rev, r->errmsg);
	if (r->err == 0)
		lease_bookkeeping(s, req);
	apply_req_free(req);
	return r;
}

/* ---- group commit of applied entries ----
 *
 * Applied entries share one sqlite transaction, committed when it holds
 * COMMIT_MAX_ENTRIES entries or COMMIT_MAX_CMDS commands, COMMIT_DELAY_MS
 * after it opened, or before anything that needs the committed state
 * (snapshots, restore, close). A commit costs WAL frames for every page
 * the entry touched plus the metadata rows, and with one request per entry
 * (low load) that was several pages per put; sharing the transaction
 * writes each page once per commit, and the WAL fills, and so checkpoints,
 * that much less often.
 *
 * Proposers are answered and watchers notified before the commit. That is
 * safe because the raft log, not sqlite, is the durable record: an entry is
 * applied only once committed to the log, and the applied index is written
 * in the same sqlite transaction as the entry's writes, so after a crash
 * the entries applied but not committed to sqlite are applied again from
 * the log (fsm_apply skips those at or below the stored applied index).
 * Reads run on the same sqlite connection and so see every applied entry.
 * A failed commit, like a failed apply, stops the member (fatal), and
 * reads stop with it (read_now). */
static int commit_applied(struct store *s)
{
	if (!s->batch_open)
		return 0;
	s->batch_open = false;
	s->batch_entries = s->batch_cmds = 0;
	if (s->commit_timer_ready)
		uv_timer_stop(&s->commit_timer);
	/* mvcc_commit rolls back what it could not commit. */
	if (mvcc_commit(s->mvcc, s->batch_index) != 0) {
		s->rolled_back = true;
		fatal(s, mvcc_errmsg(s->mvcc));
		return RAFT_IOERR;
	}
	if (s->ckpt != NULL)
		wal_ckpt_committed(s->ckpt);
	return 0;
}

static void commit_timer_cb(uv_timer_t *t)
{
	commit_applied(t->data);
}

int store_commit_applied(struct store *s)
{
	/* After a rollback the database lacks writes already acknowledged. */
	if (s->rolled_back)
		return CAP_EIO;
	return commit_applied(s) == 0 ? CAP_OK : CAP_EIO;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct store *s = fsm->data;
	uint64_t index = s->node ? node_applying_index(s->node) : raft_last_applied(s->bound) + 1;
	struct mvcc_events events = {0};
	struct cmd_entry e;
	void **results;
	int rv;

	*result = NULL;
	if (index <= mvcc_applied_index(s->mvcc))
		return 0;  /* already in sqlite: a replay after restart */
	/* Applying on top of a state that lost earlier entries would commit
	 * an applied index past them. */
	if (s->rolled_back)
		return RAFT_IOERR;
	if (cmd_decode(buf->base, buf->len, &e) != 0) {
		fatal(s, "a log entry failed to decode");
		return RAFT_CORRUPT;
	}
	results = calloc(e.count ? e.count : 1, sizeof *results);
	if (results == NULL || (!s->batch_open && mvcc_begin(s->mvcc) != 0)) {
		free(results);
		cmd_entry_clear(&e);
		if (s->batch_open) {
			/* Out of memory with entries open: they go too. */
			mvcc_rollback(s->mvcc);
			s->batch_open = false;
		}
		s->rolled_back = true;
		fatal(s, "cannot begin a state transaction");
		return RAFT_IOERR;
	}
	s->batch_open = true;
	/* Events are for the watchers there are now: one added later starts
	 * after this entry or reads it back from history. */
	events.skip = watch_hub_count(s->hub) == 0;
	events.skip_prev_values = !watch_hub_wants_prev(s->hub);
	for (uint32_t i = 0; i < e.count; i++) {
		struct pending *mine = s->node ? node_entry_data(s->node, &e, i) : NULL;
		struct result *r = apply_one(s, e.cmds[i], e.lens[i], mine ? mine->parsed : NULL,
					     &events);
		results[i] = r;
		if (r == NULL || r->err == CAP_ENOMEM || r->err == CAP_EIO || r->err == CAP_ECORRUPT) {
			/* Not the request's fault: applying cannot go on consistently. */
			mvcc_rollback(s->mvcc);
			s->batch_open = false;
			s->rolled_back = true;
			goto fatal_out;
		}
	}
	s->batch_index = index;
	s->batch_entries++;
	s->batch_cmds += e.count;
	if (!s->commit_timer_ready || s->batch_entries >= COMMIT_MAX_ENTRIES ||
	    s->batch_cmds >= COMMIT_MAX_CMDS) {
		rv = commit_applied(s);
		if (rv != 0)
			goto fatal_out;
	} else if (!uv_is_active((uv_handle_t *)&s->commit_timer)) {
		uv_timer_start(&s->commit_timer, commit_timer_cb, COMMIT_DELAY_MS, 0);
	}
	if (events.n > 0)
		watch_hub_notify(s->hub, &events, mvcc_rev(s->mvcc));
	mvcc_events_clear(&events);
	if (s->node != NULL) {
		node_take_results(s->node, &e, results);
	} else {
		for (uint32_t i = 0; i < e.count; i++)
			result_free(results[i]);
		free(results);
	}
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

/* The full image of the current state, for a follower: the header with
 * the applied index, then the sqlite database. */
static int snapshot_image(struct store *s, struct raft_buffer *out)
{
	void *image;
	size_t len;
	uint64_t applied;
	uint8_t *buf;

	if (commit_applied(s) != 0)
		return RAFT_IOERR;
	applied = mvcc_applied_index(s->mvcc);
	if (mvcc_snapshot(s->mvcc, &image, &len) != 0)
		return RAFT_IOERR;
	buf = raft_malloc(SNAP_HEADER + len);
	if (buf == NULL) {
		free(image);
		return RAFT_NOMEM;
	}
	memcpy(buf, SNAP_MAGIC, 8);
	for (int i = 0; i < 8; i++)
		buf[8 + i] = (uint8_t)(applied >> (8 * i));
	memcpy(buf + SNAP_HEADER, image, len);
	free(image);
	out->base = buf;
	out->len = SNAP_HEADER + len;
	log_info("snapshot image at applied index %" PRIu64 " (%zu bytes) for a follower",
		 applied, len);
	return 0;
}

/* A snapshot taken here names the state instead of copying it: sqlite
 * already holds that state durably (once checkpointed), as etcd's bolt file
 * does, so the log before it can go without a second copy of the database
 * on disk and in memory. A follower that needs the state gets a full image
 * made when it is sent (snapshot_expand); it may be newer than the
 * snapshot's index, which is safe: it holds only applied (so committed)
 * entries, records its own applied index, and the entries between are
 * skipped when the follower applies them. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct store *s = fsm->data;
	uint8_t *hdr;
	uint64_t applied;

	/* The snapshot names the committed state. */
	if (commit_applied(s) != 0)
		return RAFT_IOERR;
	applied = mvcc_applied_index(s->mvcc);
	/* The log up to here may be deleted once raft has the snapshot, and
	 * commits do not fsync sqlite's WAL (synchronous=NORMAL: the raft log
	 * is the durable record): checkpoint first, which syncs both files.
	 * RAFT_BUSY makes libraft try again after a later apply. */
	if (mvcc_sync(s->mvcc) != 0) {
		log_info("snapshot postponed: %s", mvcc_errmsg(s->mvcc));
		return RAFT_BUSY;
	}
	*bufs = raft_malloc(sizeof **bufs);
	hdr = raft_malloc(SNAP_HEADER);
	if (*bufs == NULL || hdr == NULL) {
		raft_free(*bufs);
		raft_free(hdr);
		return RAFT_NOMEM;
	}
	memcpy(hdr, SNAP_REF_MAGIC, 8);
	for (int i = 0; i < 8; i++)
		hdr[8 + i] = (uint8_t)(applied >> (8 * i));
	(*bufs)[0].base = hdr;
	(*bufs)[0].len = SNAP_HEADER;
	*n_bufs = 1;
	unsigned trailing = s->node ? node_snapshot_taken(s->node) : 0;
	log_info("snapshot at applied index %" PRIu64 " (%u entries kept behind it)", applied,
		 trailing);
	return 0;
}

static int snapshot_expand(void *data, const struct raft_buffer *in, struct raft_buffer *out)
{
	struct store *s = data;
	out->base = NULL;
	out->len = 0;
	if (in->len >= SNAP_HEADER && memcmp(in->base, SNAP_REF_MAGIC, 8) == 0)
		return snapshot_image(s, out);
	return 0;
}

static uint64_t snap_index(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[8 + i];
	return v;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct store *s = fsm->data;
	const uint8_t *p = buf->base;
	uint64_t applied;
	int rv = 0;

	if (buf->len < SNAP_HEADER ||
	    (memcmp(p, SNAP_MAGIC, 8) != 0 && memcmp(p, SNAP_REF_MAGIC, 8) != 0)) {
		raft_free(buf->base);
		log_error("snapshot: bad header");
		return RAFT_CORRUPT;
	}
	applied = snap_index(p);
	/* The applied index compared below is the committed one. */
	if (commit_applied(s) != 0) {
		raft_free(buf->base);
		return RAFT_IOERR;
	}
	if (memcmp(p, SNAP_REF_MAGIC, 8) == 0) {
		/* Our own snapshot, loaded at start: the database must hold it. */
		if (applied > mvcc_applied_index(s->mvcc)) {
			log_error("snapshot at index %" PRIu64 " names a state the database does"
				  " not hold (applied index %" PRIu64 "): the database file was"
				  " replaced or lost", applied, mvcc_applied_index(s->mvcc));
			rv = RAFT_CORRUPT;
		}
		raft_free(buf->base);
		return rv;
	}
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
			load_members(s);
			watch_hub_reset(s->hub);
		}
	}
	raft_free(buf->base);
	return rv;
}

/* ---- leadership and leases ---- */

static void maybe_publish(struct store *s);

static void on_leader(void *data, bool ready)
{
	struct store *s = data;
	lease_set_leader(s->leases, ready);
	if (ready)
		maybe_publish(s);
}

static void on_node_fatal(void *data, const char *why)
{
	fatal(data, why);
}

/* ---- proposing: locally on the leader, forwarded from a follower ---- */

/* The client URL the leader published, or NULL. */
static const char *leader_url(struct store *s)
{
	char key[24];
	uint64_t leader = node_leader(s->node);
	if (leader == 0 || leader == node_id(s->node))
		return NULL;
	snprintf(key, sizeof key, "%" PRIu64, leader);
	json_t *urls = json_object_get(json_object_get(s->members, key), "clientURLs");
	return json_string_value(json_array_get(urls, 0));
}

/* ---- answers as text ---- */

/* Text answers past this size give their buffer back after use. */
#define TEXT_KEEP_BYTES (1u << 20)

/* The store's text buffer, taken out of the store while in use: the
 * callback given the text can start another answer (a pipelined request
 * served at once). */
static struct jsonx_out text_take(struct store *s)
{
	struct jsonx_out o = s->text;
	memset(&s->text, 0, sizeof s->text);
	o.len = 0;
	o.failed = false;
	return o;
}

static void text_give_back(struct store *s, struct jsonx_out *o)
{
	if (o->cap > TEXT_KEEP_BYTES || s->text.p != NULL)
		jsonx_out_free(o);
	else
		s->text = *o;
}

/* {"header":{...} as store_header writes it (rev >= 0), without the
 * closing brace of the answer. */
static void text_header(struct store *s, struct jsonx_out *o, int64_t rev)
{
	uint64_t cluster = node_cluster_id(s->node), member = node_id(s->node);
	uint64_t term = node_term(s->node);
	if (!s->hdr_ready || cluster != s->hdr_cluster || member != s->hdr_member ||
	    term != s->hdr_term) {
		/* 20 digits at most per number: both always fit. */
		s->hdr_head_len = (size_t)snprintf(s->hdr_head, sizeof s->hdr_head,
						   "{\"header\":{\"cluster_id\":\"%" PRIu64
						   "\",\"member_id\":\"%" PRIu64 "\",\"revision\":",
						   cluster, member);
		s->hdr_tail_len = (size_t)snprintf(s->hdr_tail, sizeof s->hdr_tail,
						   ",\"raft_term\":\"%" PRIu64 "\"}", term);
		s->hdr_cluster = cluster;
		s->hdr_member = member;
		s->hdr_term = term;
		s->hdr_ready = true;
	}
	jsonx_out_raw(o, s->hdr_head, s->hdr_head_len);
	jsonx_out_i64(o, rev);
	jsonx_out_raw(o, s->hdr_tail, s->hdr_tail_len);
}

/* An answer that is a header and nothing else (a put without prev_kv),
 * as text: what answer() and jsonx_dumps would make of it, without the
 * tree. False (having answered nothing) when it is not that. */
static bool answer_text(struct store *s, store_text_cb tcb, void *data, json_t *body,
			int64_t rev)
{
	if (tcb == NULL || rev < 0 || (body != NULL && json_object_size(body) != 0))
		return false;
	struct jsonx_out o = text_take(s);
	text_header(s, &o, rev);
	JSONX_OUT_LIT(&o, "}");
	bool ok = !o.failed;
	if (ok)
		tcb(data, o.p, o.len);
	text_give_back(s, &o);
	return ok;
}

static void pending_free(struct pending *p)
{
	apply_req_free(p->req);
	apply_req_free(p->parsed);
	free(p->cmd);
	free(p);
}

static void pending_finish(struct pending *p, int status, struct result *r)
{
	struct store *s = p->s;
	if (p->raw_cb != NULL) {
		p->raw_cb(p->data, status, r);
	} else if (status != 0 || r == NULL) {
		fail(p->cb, p->data, status ? status : CAP_ENOMEM, NULL);
	} else if (r->err != 0) {
		fail(p->cb, p->data, r->err, r->errmsg);
	} else if (!answer_text(s, p->text_cb, p->data, r->answer, r->rev)) {
		answer(s, p->cb, p->data, r->answer, r->rev);
	}
	result_free(r);
	pending_free(p);
}

static int submit(struct pending *p);

static void local_done(void *data, int status, void *result)
{
	struct pending *p = data;
	/* CAP_ENOLEADER from the queue means the command never entered a log:
	 * once a leader is known it is safe to send it there, once. */
	if (status == CAP_ENOLEADER && !p->retried && leader_url(p->s) != NULL) {
		p->retried = true;
		if (submit(p) == 0)
			return;
	}
	pending_finish(p, status, result);
}

static void forward_done(void *data, int status, json_t *ans)
{
	struct pending *p = data;
	struct result *r;
	if (status < 100 || ans == NULL) {
		/* Sent but unanswered: it may have applied. */
		pending_finish(p, status == HTTP_CLIENT_ECONNECT ? CAP_ENOLEADER : CAP_ELEADERCHANGED, NULL);
		return;
	}
	if (status != 200) {
		json_t *cap = json_object_get(ans, "cap");
		int err = json_is_integer(cap) ? (int)json_integer_value(cap) : CAP_EUNAVAILABLE;
		if (err == CAP_ENOLEADER && !p->retried) {
			p->retried = true;
			if (submit(p) == 0)
				return;
		}
		pending_finish(p, err, NULL);
		return;
	}
	r = calloc(1, sizeof *r);
	if (r == NULL) {
		pending_finish(p, CAP_ENOMEM, NULL);
		return;
	}
	jsonx_get_i64(ans, "rev", &r->rev, r->errmsg);
	r->err = (int)json_integer_value(json_object_get(ans, "err"));
	snprintf(r->errmsg, sizeof r->errmsg, "%s", json_string_value(json_object_get(ans, "errmsg")) ?: "");
	r->answer = json_incref(json_object_get(ans, "answer"));
	pending_finish(p, 0, r);
}

/* Sends p's command to the log: here when this member leads or no leader is
 * known yet (the node waits a bounded time for one), else to the leader. */
static void url_wait_add(struct pending *p)
{
	struct store *s = p->s;
	p->deadline_ms = uv_now(s->loop) + FORWARD_TIMEOUT_MS;
	p->next = s->url_wait;
	s->url_wait = p;
}

/* True when another member leads but has not said where it serves yet. */
static bool leader_unreachable(struct store *s)
{
	uint64_t leader = node_leader(s->node);
	return !node_leader_ready(s->node) && leader != 0 && leader != node_id(s->node) &&
	       leader_url(s) == NULL;
}

static int submit(struct pending *p)
{
	struct store *s = p->s;
	const char *url = node_leader_ready(s->node) ? NULL : leader_url(s);
	if (leader_unreachable(s)) {
		url_wait_add(p);
		return CAP_OK;
	}
	if (url == NULL)
		return node_propose(s->node, p->cmd, p->cmd_len, local_done, p);
	json_t *body = json_object();
	json_object_set_new_nocheck(body, "cmd", jsonx_bytes((const uint8_t *)p->cmd, p->cmd_len));
	int rv = forwarder_post(s->fw, url, "/capstan/v1/propose", body, FORWARD_TIMEOUT_MS,
				forward_done, p);
	json_decref(body);
	return rv;
}

static struct pending *pending_new(struct store *s, uint8_t op, json_t *req, kv_cb cb, void *data)
{
	struct pending *p = calloc(1, sizeof *p);
	size_t len = 0;
	char *json = req ? jsonx_dumps(req, &len) : NULL;
	if (p == NULL || (req != NULL && json == NULL) || (p->cmd = malloc(len + 1)) == NULL) {
		free(json);
		free(p);
		return NULL;
	}
	/* The op code rides in the first byte, the request's JSON after it. */
	p->cmd[0] = (char)op;
	if (len)
		memcpy(p->cmd + 1, json, len);
	free(json);
	p->cmd_len = len + 1;
	p->s = s;
	p->op = (enum kv_op)op;
	p->cb = cb;
	p->data = data;
	return p;
}

/* Proposes req; parsed (may be NULL) is req already parsed, owned from here
 * on, so the leader need not parse the command again when it applies. */
static int propose(struct store *s, enum kv_op op, json_t *req, struct apply_req *parsed,
		   kv_cb cb, store_text_cb tcb, void *data)
{
	uint8_t *bin = NULL;
	size_t bin_len = 0;
	struct pending *p;
	int rv;

	/* Raw bytes and varints: a put of 256 B takes ~285 B of log instead of
	 * ~400 of JSON with base64, and a follower applies it without parsing
	 * JSON. */
	if (parsed != NULL &&
	    apply_encode_bin_tagged(parsed, CMD_BINARY, &bin, &bin_len) == CAP_OK) {
		req = NULL;
	} else if (req == NULL) {
		/* A request parsed from text has no JSON to fall back on. */
		apply_req_free(parsed);
		return CAP_ENOMEM;
	}
	p = pending_new(s, (uint8_t)op, req, cb, data);
	if (p == NULL) {
		free(bin);
		apply_req_free(parsed);
		return CAP_ENOMEM;
	}
	if (bin != NULL) {
		/* The command is the tagged binary form, as it is. */
		free(p->cmd);
		p->cmd = (char *)bin;
		p->cmd_len = bin_len;
	}
	p->parsed = parsed;
	p->text_cb = tcb;
	rv = submit(p);
	if (rv != 0)
		pending_free(p);
	return rv;
}

static void expire_done(void *data, json_t *ans, json_t *err)
{
	struct pending *p = data;
	(void)ans;
	if (err != NULL)
		lease_expire_failed(p->s->leases, p->lease_id);
}

static void lease_expire(void *data, int64_t id)
{
	struct store *s = data;
	json_t *req = json_object();
	json_object_set_new_nocheck(req, "ID", json_integer(id));
	struct pending *p = pending_new(s, KV_LEASE_REVOKE, req, expire_done, NULL);
	json_decref(req);
	if (p == NULL) {
		lease_expire_failed(s->leases, id);
		return;
	}
	p->data = p;
	p->lease_id = id;
	if (node_propose(s->node, p->cmd, p->cmd_len, local_done, p) != 0) {
		lease_expire_failed(s->leases, id);
		pending_free(p);
	}
	log_debug("lease %" PRId64 " expired", id);
}

/* ---- requests forwarded to this member as leader ---- */

struct internal {
	kv_cb cb;
	void *data;
};

static void internal_done(void *data, int status, struct result *r)
{
	struct internal *in = data;
	json_t *out;
	if (status != 0 || r == NULL) {
		int err = status ? status : CAP_ENOMEM;
		json_t *e = store_error(err, NULL);
		json_object_set_new_nocheck(e, "cap", json_integer(err));
		in->cb(in->data, NULL, e);
		json_decref(e);
		free(in);
		return;
	}
	out = json_object();
	json_object_set_new_nocheck(out, "rev", jsonx_i64(r->rev));
	if (r->err) {
		json_object_set_new_nocheck(out, "err", json_integer(r->err));
		json_object_set_new_nocheck(out, "errmsg", json_string(r->errmsg));
	}
	if (r->answer)
		json_object_set_nocheck(out, "answer", r->answer);
	in->cb(in->data, out, NULL);
	json_decref(out);
	free(in);
}

int store_internal_propose(struct store *s, json_t *body, kv_cb cb, void *data)
{
	uint8_t *cmd = NULL;
	size_t len = 0;
	char errmsg[CAP_ERRMSG_SIZE];
	struct internal *in;
	struct pending *p;
	int rv;

	if (jsonx_get_bytes(body, "cmd", &cmd, &len, errmsg) != 0 || len == 0) {
		free(cmd);
		return CAP_EINVAL;
	}
	if (!node_leader_ready(s->node)) {
		free(cmd);
		return CAP_ENOLEADER;
	}
	in = calloc(1, sizeof *in);
	p = calloc(1, sizeof *p);
	if (in == NULL || p == NULL) {
		free(in);
		free(p);
		free(cmd);
		return CAP_ENOMEM;
	}
	in->cb = cb;
	in->data = data;
	p->s = s;
	p->cmd = (char *)cmd;
	p->cmd_len = len;
	p->raw_cb = internal_done;
	p->data = in;
	p->retried = true;  /* a forwarded command is never forwarded again */
	rv = node_propose(s->node, p->cmd, p->cmd_len, local_done, p);
	if (rv != 0) {
		free(in);
		pending_free(p);
	}
	return rv;
}

struct internal_read {
	struct store *s;
	kv_cb cb;
	void *data;
};

static void internal_read_point(void *data, int status)
{
	struct internal_read *ir = data;
	if (status != 0) {
		json_t *e = store_error(status, NULL);
		json_object_set_new_nocheck(e, "cap", json_integer(status));
		ir->cb(ir->data, NULL, e);
		json_decref(e);
	} else {
		json_t *out = json_object();
		json_object_set_new_nocheck(out, "index", jsonx_u64(node_applied_index(ir->s->node)));
		ir->cb(ir->data, out, NULL);
		json_decref(out);
	}
	free(ir);
}

int store_internal_read_index(struct store *s, kv_cb cb, void *data)
{
	struct internal_read *ir;
	int rv;
	if (!node_leader_ready(s->node))
		return CAP_ENOLEADER;
	ir = calloc(1, sizeof *ir);
	if (ir == NULL)
		return CAP_ENOMEM;
	ir->s = s;
	ir->cb = cb;
	ir->data = data;
	rv = node_read_barrier(s->node, internal_read_point, ir);
	if (rv != 0)
		free(ir);
	return rv;
}

/* ---- serving requests ---- */

/* A range answered as text: the header as store_header writes it, then
 * the answer's members (apply_range_text), with no JSON tree between the
 * rows and the text. Returns false (having answered nothing) when the
 * text path cannot answer, so the caller answers the JSON way. */
static bool read_text(struct store *s, struct apply_req *req, store_text_cb tcb, void *data)
{
	struct jsonx_out o = text_take(s);
	int64_t rev = mvcc_rev(s->mvcc), got = -1;
	int rv;

	text_header(s, &o, rev);
	rv = apply_range_text(s->mvcc, req, &o, &got);
	JSONX_OUT_LIT(&o, "}");
	/* A range writes nothing, so the header's revision, written first,
	 * is the one apply_exec would give; anything else is answered the
	 * JSON way, errors included, with their messages. */
	bool ok = rv == CAP_OK && got == rev && !o.failed;
	if (ok)
		tcb(data, o.p, o.len);
	text_give_back(s, &o);
	return ok;
}

static void read_now(struct store *s, struct apply_req *req, kv_cb cb, store_text_cb tcb,
		     void *data)
{
	json_t *ans = NULL;
	int64_t rev = 0;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	struct mvcc_events unused = {0};
	int rv;
	/* After a failed apply or commit the open transaction was rolled
	 * back: the state may be older than answers already given. This
	 * holds for answers as text too. */
	if (s->rolled_back) {
		fail(cb, data, CAP_ESTOPPED, NULL);
		return;
	}
	if (tcb != NULL && read_text(s, req, tcb, data))
		return;
	rv = apply_exec(s->mvcc, req, &ans, &unused, &rev, errmsg);
	if (rv != 0)
		fail(cb, data, rv, errmsg);
	else
		answer(s, cb, data, ans, rev);
	json_decref(ans);
}

static void follower_read(struct store *s, struct pending *p);

static void read_point(void *data, int status)
{
	struct pending *p = data;
	if (status == CAP_ENOLEADER && !p->retried && leader_url(p->s) != NULL) {
		p->retried = true;
		follower_read(p->s, p);
		return;
	}
	if (status != 0)
		fail(p->cb, p->data, status, NULL);
	else
		read_now(p->s, p->req, p->cb, p->text_cb, p->data);
	pending_free(p);
}

/* Serves follower reads whose read index the local apply has reached. */
static void serve_ready_reads(struct store *s)
{
	uint64_t applied = node_applied_index(s->node);
	struct pending **pp = &s->ri_ready;
	while (*pp) {
		struct pending *p = *pp;
		if (p->read_index > applied) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		read_now(s, p->req, p->cb, p->text_cb, p->data);
		pending_free(p);
	}
}

static void ri_kick(struct store *s);

static void ri_done(void *data, int status, json_t *ans)
{
	struct store *s = data;
	struct pending *batch = s->ri_inflight;
	uint64_t index = 0;
	char errmsg[CAP_ERRMSG_SIZE];
	bool ok = status == 200 && ans != NULL && jsonx_get_u64(ans, "index", &index, errmsg) == 0;
	int err = CAP_ENOLEADER;
	if (!ok && ans != NULL && json_is_integer(json_object_get(ans, "cap")))
		err = (int)json_integer_value(json_object_get(ans, "cap"));
	s->ri_inflight = NULL;
	s->ri_busy = false;
	while (batch) {
		struct pending *p = batch;
		batch = p->next;
		if (ok) {
			p->read_index = index;
			p->next = s->ri_ready;
			s->ri_ready = p;
		} else {
			fail(p->cb, p->data, err, NULL);
			pending_free(p);
		}
	}
	serve_ready_reads(s);
	ri_kick(s);
}

/* One read index request at a time; reads that arrive meanwhile wait for
 * the next one, which the leader confirms after they arrived. */
static void ri_kick(struct store *s)
{
	const char *url;
	if (s->ri_busy || s->ri_queue == NULL)
		return;
	url = leader_url(s);
	if (url == NULL) {
		/* No leader known (or we lead now): the node waits a bounded time. */
		while (s->ri_queue) {
			struct pending *p = s->ri_queue;
			s->ri_queue = p->next;
			if (leader_unreachable(s)) {
				url_wait_add(p);
				continue;
			}
			p->retried = true;
			if (node_read_barrier(s->node, read_point, p) != 0) {
				fail(p->cb, p->data, CAP_ENOLEADER, NULL);
				pending_free(p);
			}
		}
		return;
	}
	s->ri_inflight = s->ri_queue;
	s->ri_queue = NULL;
	s->ri_busy = true;
	json_t *body = json_object();
	if (forwarder_post(s->fw, url, "/capstan/v1/readindex", body, FORWARD_TIMEOUT_MS, ri_done,
			   s) != 0)
		ri_done(s, HTTP_CLIENT_ECONNECT, NULL);
	json_decref(body);
}

static void follower_read(struct store *s, struct pending *p)
{
	p->next = s->ri_queue;
	s->ri_queue = p;
	ri_kick(s);
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
	rv = propose(s, KV_LEASE_GRANT, copy, NULL, cb, NULL, data);
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

static json_t *member_json(struct store *s, const struct node_member *m)
{
	char key[24];
	json_t *o = json_object();
	json_t *peers = json_array();
	json_t *attr;
	snprintf(key, sizeof key, "%" PRIu64, m->id);
	attr = json_object_get(s->members, key);
	json_object_set_new_nocheck(o, "ID", jsonx_u64(m->id));
	if (json_string_length(json_object_get(attr, "name")) > 0)
		json_object_set_nocheck(o, "name", json_object_get(attr, "name"));
	json_array_append_new(peers, json_string(m->peer_url));
	json_object_set_new_nocheck(o, "peerURLs", peers);
	if (json_array_size(json_object_get(attr, "clientURLs")) > 0)
		json_object_set_nocheck(o, "clientURLs", json_object_get(attr, "clientURLs"));
	jsonx_set_true(o, "isLearner", m->learner);
	return o;
}

static json_t *members_json(struct store *s)
{
	struct node_member m[NODE_MAX_MEMBERS];
	size_t n = node_members(s->node, m, NODE_MAX_MEMBERS);
	json_t *arr = json_array();
	for (size_t i = 0; i < n && i < NODE_MAX_MEMBERS; i++)
		json_array_append_new(arr, member_json(s, &m[i]));
	return arr;
}

static void call_member_list(struct store *s, kv_cb cb, void *data)
{
	json_t *body = json_object();
	json_object_set_new_nocheck(body, "members", members_json(s));
	answer(s, cb, data, body, -1);
	json_decref(body);
}

/* A request only the leader can answer, sent to it as a gateway call. */
struct relay {
	struct store *s;
	kv_cb cb;
	void *data;
	bool unwrap;
};

static void relay_done(void *data, int status, json_t *ans)
{
	struct relay *r = data;
	if (status == 200 && ans != NULL) {
		json_t *inner = r->unwrap ? json_object_get(ans, "result") : ans;
		r->cb(r->data, inner ? inner : ans, NULL);
	} else if (ans != NULL && json_object_get(ans, "code") != NULL) {
		r->cb(r->data, NULL, ans);
	} else {
		fail(r->cb, r->data, CAP_ENOLEADER, NULL);
	}
	free(r);
}

/* Sends op to the leader; returns CAP_ENOLEADER when none is known. */
static int relay(struct store *s, enum kv_op op, json_t *req, kv_cb cb, void *data)
{
	const char *url = leader_url(s);
	struct relay *r;
	int rv;
	if (url == NULL)
		return CAP_ENOLEADER;
	r = calloc(1, sizeof *r);
	if (r == NULL)
		return CAP_ENOMEM;
	r->s = s;
	r->cb = cb;
	r->data = data;
	r->unwrap = op == KV_LEASE_KEEPALIVE;
	rv = forwarder_post(s->fw, url, kv_op_path(op), req, FORWARD_TIMEOUT_MS, relay_done, r);
	if (rv != 0)
		free(r);
	return rv;
}

struct member_change {
	struct store *s;
	enum kv_op op;
	uint64_t id;
	json_t *peer_urls;
	bool learner;
	kv_cb cb;
	void *data;
};

static void member_change_done(void *data, int status)
{
	struct member_change *mc = data;
	struct store *s = mc->s;
	if (status != 0) {
		fail(mc->cb, mc->data, status, NULL);
	} else {
		json_t *body = json_object();
		if (mc->op == KV_MEMBER_ADD) {
			json_t *m = json_object();
			json_object_set_new_nocheck(m, "ID", jsonx_u64(mc->id));
			json_object_set_nocheck(m, "peerURLs", mc->peer_urls);
			jsonx_set_true(m, "isLearner", mc->learner);
			json_object_set_new_nocheck(body, "member", m);
		}
		json_object_set_new_nocheck(body, "members", members_json(s));
		answer(s, mc->cb, mc->data, body, -1);
		json_decref(body);
	}
	json_decref(mc->peer_urls);
	free(mc);
}

static void member_update_removed(void *data, int status)
{
	struct member_change *mc = data;
	int rv = status;
	if (rv == 0)
		rv = node_add_member(mc->s->node, mc->id, json_string_value(json_array_get(mc->peer_urls, 0)),
				     mc->learner, member_change_done, mc);
	if (rv != 0)
		member_change_done(mc, rv);
}

/* Whether member id already has peer URL url. */
static bool peer_url_of(struct store *s, uint64_t id, const char *url)
{
	struct node_member m[NODE_MAX_MEMBERS];
	size_t n = node_members(s->node, m, NODE_MAX_MEMBERS);
	for (size_t i = 0; i < n && i < NODE_MAX_MEMBERS; i++)
		if (m[i].id == id)
			return strcmp(m[i].peer_url, url) == 0;
	return false;
}

static bool is_member(struct store *s, uint64_t id, bool *learner)
{
	struct node_member m[NODE_MAX_MEMBERS];
	size_t n = node_members(s->node, m, NODE_MAX_MEMBERS);
	for (size_t i = 0; i < n && i < NODE_MAX_MEMBERS; i++) {
		if (m[i].id == id) {
			if (learner)
				*learner = m[i].learner;
			return true;
		}
	}
	return false;
}

static int call_member_change(struct store *s, enum kv_op op, json_t *req, kv_cb cb, void *data)
{
	struct member_change *mc;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	uint64_t id = 0;
	bool learner = false, is_learner = false;
	json_t *urls = NULL;
	int rv;

	if ((rv = jsonx_get_u64(req, "ID", &id, errmsg)) != 0 ||
	    (rv = jsonx_get_array(req, "peerURLs", &urls, errmsg)) != 0 ||
	    (rv = jsonx_get_bool(req, "isLearner", &learner, errmsg)) != 0) {
		fail(cb, data, rv, errmsg);
		return CAP_OK;
	}
	if (op == KV_MEMBER_ADD) {
		if (json_array_size(urls) == 0 || !json_is_string(json_array_get(urls, 0))) {
			fail(cb, data, CAP_EINVAL, "etcdserver: peerURLs is empty");
			return CAP_OK;
		}
		id = node_member_id(json_string_value(json_array_get(urls, 0)), s->cfg.cluster_token);
		if (is_member(s, id, NULL)) {
			fail(cb, data, CAP_EINVAL, "etcdserver: peerURL exists");
			return CAP_OK;
		}
	} else if (!is_member(s, id, &is_learner)) {
		fail(cb, data, CAP_EMEMBERNOTFOUND, NULL);
		return CAP_OK;
	}
	if (!node_leader_ready(s->node)) {
		rv = relay(s, op, req, cb, data);
		if (rv == CAP_ENOLEADER) {
			fail(cb, data, CAP_ENOLEADER, NULL);
			return CAP_OK;
		}
		return rv;
	}
	if (op == KV_MEMBER_UPDATE) {
		const char *url = json_string_value(json_array_get(urls, 0));
		if (url == NULL) {
			fail(cb, data, CAP_EINVAL, "etcdserver: peerURLs is empty");
			return CAP_OK;
		}
		if (peer_url_of(s, id, url)) {
			/* Nothing changes: answer as etcd does. */
			json_t *body = json_object();
			json_object_set_new_nocheck(body, "members", members_json(s));
			answer(s, cb, data, body, -1);
			json_decref(body);
			return CAP_OK;
		}
		if (id == node_id(s->node)) {
			fail(cb, data, CAP_EINVAL,
			     "etcdserver: move leadership away before changing the leader's peer URLs");
			return CAP_OK;
		}
	}
	if (op == KV_MEMBER_PROMOTE && !is_learner) {
		fail(cb, data, CAP_EINVAL, "etcdserver: can only promote a learner member");
		return CAP_OK;
	}
	mc = calloc(1, sizeof *mc);
	if (mc == NULL)
		return CAP_ENOMEM;
	mc->s = s;
	mc->op = op;
	mc->id = id;
	mc->peer_urls = json_incref(urls);
	mc->learner = learner;
	mc->cb = cb;
	mc->data = data;
	if (op == KV_MEMBER_UPDATE) {
		/* libraft 0.15 cannot change an address in place: the member is
		 * removed and added back with the same ID at its new address, as a
		 * standby promoted once it catches up. It restarts on the new URL
		 * and keeps its ID (node.c, keep_identity). */
		mc->learner = is_learner;
		rv = node_remove_member(s->node, id, member_update_removed, mc);
	} else if (op == KV_MEMBER_ADD)
		rv = node_add_member(s->node, id, json_string_value(json_array_get(urls, 0)), learner,
				     member_change_done, mc);
	else if (op == KV_MEMBER_REMOVE)
		rv = node_remove_member(s->node, id, member_change_done, mc);
	else
		rv = node_promote_member(s->node, id, member_change_done, mc);
	if (rv != 0) {
		json_decref(mc->peer_urls);
		free(mc);
		fail(cb, data, rv, NULL);
	}
	return CAP_OK;
}

struct move_leader {
	struct store *s;
	kv_cb cb;
	void *data;
};

static void move_leader_done(void *data, int status)
{
	struct move_leader *ml = data;
	if (status != 0)
		fail(ml->cb, ml->data, status, NULL);
	else
		answer(ml->s, ml->cb, ml->data, NULL, mvcc_rev(ml->s->mvcc));
	free(ml);
}

static int call_move_leader(struct store *s, json_t *req, kv_cb cb, void *data)
{
	uint64_t target = 0;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	struct move_leader *ml;
	int rv;
	if ((rv = jsonx_get_u64(req, "targetID", &target, errmsg)) != 0) {
		fail(cb, data, rv, errmsg);
		return CAP_OK;
	}
	if (!is_member(s, target, NULL) || target == node_id(s->node)) {
		fail(cb, data, CAP_EBADTRANSFEREE, NULL);
		return CAP_OK;
	}
	if (!node_leader_ready(s->node)) {
		/* etcd asks the leader itself to move; a follower says so. */
		fail(cb, data, CAP_EINVAL, "etcdserver: not leader");
		return CAP_OK;
	}
	ml = calloc(1, sizeof *ml);
	if (ml == NULL)
		return CAP_ENOMEM;
	ml->s = s;
	ml->cb = cb;
	ml->data = data;
	rv = node_transfer(s->node, target, move_leader_done, ml);
	if (rv != 0) {
		free(ml);
		fail(cb, data, rv, NULL);
	}
	return CAP_OK;
}

static int call(struct store *s, enum kv_op op, json_t *req, kv_cb cb, store_text_cb tcb,
		void *data)
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
				read_now(s, parsed, cb, tcb, data);
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
			p->text_cb = tcb;
			p->data = data;
			if (!node_leader_ready(s->node) &&
			    (leader_url(s) != NULL || leader_unreachable(s))) {
				follower_read(s, p);
				return CAP_OK;
			}
			rv = node_read_barrier(s->node, read_point, p);
			if (rv != 0) {
				p->req = NULL;
				apply_req_free(parsed);
				pending_free(p);
			}
			return rv;
		}
		if (op == KV_LEASE_REVOKE && !lease_exists(s->leases, apply_lease_id(parsed))) {
			apply_req_free(parsed);
			fail(cb, data, CAP_ELEASENOTFOUND, NULL);
			return CAP_OK;
		}
		return propose(s, op, req, parsed, cb, tcb, data);
	case KV_LEASE_GRANT:
		rv = apply_parse(op, req, &parsed, errmsg);
		apply_req_free(parsed);
		if (rv != 0) {
			fail(cb, data, rv, errmsg);
			return CAP_OK;
		}
		return call_lease_grant(s, req, cb, data);
	case KV_LEASE_KEEPALIVE:
	case KV_LEASE_TIMETOLIVE:
		/* Only the leader keeps the lease clock. */
		if (!node_leader_ready(s->node) && relay(s, op, req, cb, data) == CAP_OK)
			return CAP_OK;
		if (op == KV_LEASE_KEEPALIVE)
			call_keepalive(s, req, cb, data);
		else
			call_timetolive(s, req, cb, data);
		return CAP_OK;
	case KV_MEMBER_ADD:
	case KV_MEMBER_REMOVE:
	case KV_MEMBER_UPDATE:
	case KV_MEMBER_PROMOTE:
		return call_member_change(s, op, req, cb, data);
	case KV_MOVE_LEADER:
		return call_move_leader(s, req, cb, data);
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

/* ---- publishing this member's attributes, and periodic checks ---- */

static void publish_done(void *data, int status, struct result *r)
{
	struct store *s = data;
	s->publishing = false;
	if (status == 0 && r != NULL && r->err == 0) {
		s->published = true;
		log_info("published member attributes (name %s, client URLs %s)", s->cfg.name,
			 s->cfg.advertise_client_urls);
	}
}

static bool attrs_current(struct store *s)
{
	char key[24];
	snprintf(key, sizeof key, "%" PRIu64, node_id(s->node));
	json_t *attr = json_object_get(s->members, key);
	const char *name = json_string_value(json_object_get(attr, "name"));
	json_t *urls = json_object_get(attr, "clientURLs");
	return name != NULL && strcmp(name, s->cfg.name) == 0 &&
	       json_array_size(urls) > 0 && s->cfg.advertise_client_urls != NULL &&
	       strncmp(json_string_value(json_array_get(urls, 0)), s->cfg.advertise_client_urls,
		       strlen(json_string_value(json_array_get(urls, 0)))) == 0;
}

/* Like etcd's publish: a member puts its name and client URLs through the
 * log once it is part of a cluster with a leader, so every member can list
 * them and followers can reach the leader. */
static void maybe_publish(struct store *s)
{
	char key[24];
	json_t *req, *urls;
	struct pending *p;
	if (s->published || s->publishing || s->fatal || node_leader(s->node) == 0)
		return;
	if (attrs_current(s)) {
		s->published = true;
		return;
	}
	req = json_object();
	urls = json_array();
	snprintf(key, sizeof key, "%" PRIu64, node_id(s->node));
	json_object_set_new_nocheck(req, "ID", json_string(key));
	json_object_set_new_nocheck(req, "name", json_string(s->cfg.name));
	if (s->cfg.advertise_client_urls) {
		char tmp[4096];
		char *save = NULL;
		snprintf(tmp, sizeof tmp, "%s", s->cfg.advertise_client_urls);
		for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
			json_array_append_new(urls, json_string(t));
	}
	json_object_set_new_nocheck(req, "clientURLs", urls);
	p = pending_new(s, CMD_MEMBER_ATTR, req, NULL, NULL);
	json_decref(req);
	if (p == NULL)
		return;
	p->raw_cb = publish_done;
	p->data = s;
	s->publishing = true;
	if (!node_leader_ready(s->node) && leader_url(s) == NULL) {
		/* The leader has not published yet; it will, and we retry. */
		s->publishing = false;
		pending_free(p);
		return;
	}
	if (submit(p) != 0) {
		s->publishing = false;
		pending_free(p);
	}
}

/* Requests that waited for the leader's URL go on, or give up in time. */
static void retry_url_wait(struct store *s)
{
	struct pending *list = s->url_wait;
	uint64_t now = uv_now(s->loop);
	s->url_wait = NULL;
	while (list) {
		struct pending *p = list;
		list = p->next;
		p->next = NULL;
		if (leader_unreachable(s)) {
			if (now >= p->deadline_ms) {
				if (p->req == NULL)
					pending_finish(p, CAP_ENOLEADER, NULL);
				else {
					fail(p->cb, p->data, CAP_ENOLEADER, NULL);
					pending_free(p);
				}
			} else {
				p->next = s->url_wait;
				s->url_wait = p;
			}
			continue;
		}
		if (p->req != NULL) {
			follower_read(s, p);
		} else if (submit(p) != 0) {
			pending_finish(p, CAP_ENOLEADER, NULL);
		}
	}
}

static void probe_done(void *data, int status, json_t *ans)
{
	struct store *s = data;
	char key[24];
	json_t *members = json_object_get(ans, "members");
	size_t i;
	json_t *m;
	bool listed = false;
	s->probing = false;
	if (s->fatal || status != 200 || !json_is_array(members) || json_array_size(members) == 0)
		return;
	snprintf(key, sizeof key, "%" PRIu64, node_id(s->node));
	json_array_foreach(members, i, m)
		if (strcmp(json_string_value(json_object_get(m, "ID")) ?: "", key) == 0)
			listed = true;
	if (!listed) {
		s->removed = true;
		fatal(s, "this member was removed from the cluster");
	}
}

/* A removed member never applies its own removal (the leader stops sending
 * to it at once), so one that has had no leader for a while asks another
 * member whether it is still listed, as etcd's removed members learn from
 * their peers. */
static void probe_removal(struct store *s)
{
	uint64_t now = uv_now(s->loop);
	const char *k;
	json_t *attr;
	const char *urls[NODE_MAX_MEMBERS];
	size_t n = 0;
	char self[24];
	if (node_leader(s->node) != 0) {
		s->leaderless_since = 0;
		return;
	}
	if (s->leaderless_since == 0)
		s->leaderless_since = now;
	if (s->probing || now - s->leaderless_since < 3000 || now < s->next_probe)
		return;
	s->next_probe = now + 2000;
	snprintf(self, sizeof self, "%" PRIu64, node_id(s->node));
	json_object_foreach(s->members, k, attr) {
		const char *url = json_string_value(json_array_get(json_object_get(attr, "clientURLs"), 0));
		if (strcmp(k, self) != 0 && url != NULL && n < NODE_MAX_MEMBERS)
			urls[n++] = url;
	}
	if (n == 0)
		return;
	json_t *body = json_object();
	if (forwarder_post(s->fw, urls[s->probe_turn++ % n], "/v3/cluster/member/list", body, 2000,
			   probe_done, s) == 0)
		s->probing = true;
	json_decref(body);
}

static void tick_cb(uv_timer_t *t)
{
	struct store *s = t->data;
	if (s->fatal)
		return;
	if (node_removed(s->node)) {
		s->removed = true;
		fatal(s, "this member was removed from the cluster");
		return;
	}
	probe_removal(s);
	maybe_publish(s);
	retry_url_wait(s);
	ri_kick(s);
}

static void check_cb(uv_check_t *c)
{
	struct store *s = c->data;
	if (s->ri_ready != NULL)
		serve_ready_reads(s);
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
	rv = mvcc_set_cache_kib(s->mvcc, cfg->db_cache_kib);
	if (rv != 0) {
		cap_errmsg_printf(errmsg, "%s: %s", path, mvcc_errmsg(s->mvcc));
		goto err_mvcc;
	}
	rv = wal_ckpt_open(loop, s->mvcc, &s->ckpt);
	if (rv != 0)
		goto err_mvcc;
	rv = watch_hub_new(loop, s->mvcc, cfg->progress_ms, &s->hub);
	if (rv != 0)
		goto err_ckpt;
	rv = lease_table_new(loop, lease_expire, s, &s->leases);
	if (rv != 0)
		goto err_hub;
	rv = forwarder_new(loop, &s->fw);
	if (rv != 0)
		goto err_leases;
	load_members(s);
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
		.snapshot_expand = snapshot_expand,
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
		goto err_fw;
	uv_timer_init(loop, &s->tick);
	s->tick.data = s;
	uv_timer_start(&s->tick, tick_cb, 200, 200);
	uv_check_init(loop, &s->check);
	s->check.data = s;
	uv_check_start(&s->check, check_cb);
	uv_timer_init(loop, &s->commit_timer);
	s->commit_timer.data = s;
	s->commit_timer_ready = true;
	log_info("state at revision %lld, applied index %llu", (long long)mvcc_rev(s->mvcc),
		 (unsigned long long)mvcc_applied_index(s->mvcc));
	*out = s;
	return CAP_OK;

err_fw:
	forwarder_close(s->fw);
	json_decref(s->members);
err_leases:
	lease_table_close(s->leases);
err_hub:
	watch_hub_close(s->hub);
err_ckpt:
	/* mvcc_close waits for a pass that raft's replay may have started. */
	wal_ckpt_close(s->ckpt, NULL, NULL);
err_mvcc:
	mvcc_close(s->mvcc);
err:
	for (int i = 0; i < 8; i++)
		free(s->strings[i]);
	free(s);
	return rv;
}

int store_call(struct store *s, enum kv_op op, json_t *req, kv_cb cb, void *data)
{
	return call(s, op, req, cb, NULL, data);
}

int store_put(struct store *s, struct apply_req *put, kv_cb cb, store_text_cb tcb, void *data)
{
	if (s->fatal) {
		apply_req_free(put);
		return CAP_ESTOPPED;
	}
	return propose(s, KV_PUT, NULL, put, cb, tcb, data);
}

int store_call_text(struct store *s, enum kv_op op, json_t *req, kv_cb cb, store_text_cb tcb,
		    void *data)
{
	return call(s, op, req, cb, tcb, data);
}

static void fail_reads_list(struct pending **list)
{
	while (*list) {
		struct pending *p = *list;
		*list = p->next;
		fail(p->cb, p->data, CAP_ESTOPPED, NULL);
		pending_free(p);
	}
}

/* The last step of store_close: nothing uses the database any more. */
static void store_free(void *data)
{
	struct store *s = data;
	void (*cb)(void *) = s->close_cb;
	void *cb_data = s->close_data;
	mvcc_close(s->mvcc);
	jsonx_out_free(&s->text);
	for (int i = 0; i < 8; i++)
		free(s->strings[i]);
	free(s);
	if (cb)
		cb(cb_data);
}

static void node_closed(void *data)
{
	struct store *s = data;
	fail_reads_list(&s->ri_queue);
	fail_reads_list(&s->ri_ready);
	while (s->url_wait) {
		struct pending *p = s->url_wait;
		s->url_wait = p->next;
		if (p->req == NULL)
			pending_finish(p, CAP_ESTOPPED, NULL);
		else {
			fail(p->cb, p->data, CAP_ESTOPPED, NULL);
			pending_free(p);
		}
	}
	json_decref(s->members);
	lease_table_close(s->leases);
	watch_hub_close(s->hub);
	/* The node applies nothing more. Committing is not needed for
	 * durability (the log replays), but a clean stop leaves nothing to
	 * replay. */
	if (!s->rolled_back)
		commit_applied(s);
	/* A checkpoint pass in the pool still uses the database; store_free
	 * may run at once. */
	struct wal_ckpt *ckpt = s->ckpt;
	s->ckpt = NULL;
	wal_ckpt_close(ckpt, store_free, s);
}

static void handles_closed(uv_handle_t *h)
{
	struct store *s = h->data;
	if (++s->closed_handles < 3)
		return;
	node_close(s->node, node_closed, s);
}

static void close_now(struct store *s)
{
	/* Forwarded requests in flight fail (their callbacks run) before the
	 * node goes. */
	forwarder_close(s->fw);
	s->fw = NULL;
	/* Entries the node still applies while it closes commit at once. */
	s->commit_timer_ready = false;
	uv_close((uv_handle_t *)&s->tick, handles_closed);
	uv_close((uv_handle_t *)&s->check, handles_closed);
	uv_close((uv_handle_t *)&s->commit_timer, handles_closed);
}

static void handoff_done(void *data, int status)
{
	struct store *s = data;
	log_info("leadership handed over before shutdown: %s", status ? cap_strerror(status) : "done");
	close_now(s);
}

void store_close(struct store *s, void (*cb)(void *data), void *data)
{
	struct node_member m[NODE_MAX_MEMBERS];
	size_t voters = 0;
	size_t n = node_members(s->node, m, NODE_MAX_MEMBERS);
	s->close_cb = cb;
	s->close_data = data;
	for (size_t i = 0; i < n && i < NODE_MAX_MEMBERS; i++)
		voters += !m[i].learner;
	/* A leader leaving a cluster hands over first, so clients see no
	 * election timeout. */
	if (!s->fatal && node_leader_ready(s->node) && voters > 1 &&
	    node_transfer(s->node, 0, handoff_done, s) == 0)
		return;
	close_now(s);
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

bool store_removed(const struct store *s)
{
	return s->removed;
}

bool store_has_member(struct store *s, uint64_t id)
{
	return is_member(s, id, NULL);
}

/* ---- FSM-only stores, for deterministic tests on libraft's fixture ---- */

int store_open_fsm(uv_loop_t *loop, const char *data_dir, struct store **out, char *errmsg)
{
	struct store *s = calloc(1, sizeof *s);
	char path[4096];
	int rv;
	if (s == NULL)
		return CAP_ENOMEM;
	s->loop = loop;
	s->cfg.data_dir = keep(s, 1, data_dir);
	if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
		cap_errmsg_printf(errmsg, "create %s: %s", data_dir, strerror(errno));
		rv = CAP_EIO;
		goto err;
	}
	snprintf(path, sizeof path, "%s/state.db", data_dir);
	if ((rv = mvcc_open(path, &s->mvcc, errmsg)) != 0)
		goto err;
	if ((rv = watch_hub_new(loop, s->mvcc, 0, &s->hub)) != 0)
		goto err_mvcc;
	if ((rv = lease_table_new(loop, lease_expire, s, &s->leases)) != 0)
		goto err_hub;
	load_members(s);
	s->fsm.version = 1;
	s->fsm.data = s;
	s->fsm.apply = fsm_apply;
	s->fsm.snapshot = fsm_snapshot;
	s->fsm.restore = fsm_restore;
	*out = s;
	return CAP_OK;
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

struct raft_fsm *store_fsm(struct store *s)
{
	return &s->fsm;
}

void store_fsm_bind(struct store *s, struct raft *r)
{
	s->bound = r;
}

void store_close_fsm(struct store *s)
{
	json_decref(s->members);
	lease_table_close(s->leases);
	watch_hub_close(s->hub);
	mvcc_close(s->mvcc);
	for (int i = 0; i < 8; i++)
		free(s->strings[i]);
	free(s);
}

int store_encode_command(enum kv_op op, json_t *req, uint64_t origin, uint64_t seq,
			 void **buf, size_t *len)
{
	struct cmd_builder b;
	size_t n = 0;
	char *json = jsonx_dumps(req, &n);
	char *cmd;
	int rv;
	if (json == NULL)
		return CAP_ENOMEM;
	cmd = malloc(n + 1);
	if (cmd == NULL) {
		free(json);
		return CAP_ENOMEM;
	}
	cmd[0] = (char)op;
	memcpy(cmd + 1, json, n);
	free(json);
	rv = cmd_builder_init(&b, origin, seq);
	if (rv == 0)
		rv = cmd_builder_add(&b, cmd, n + 1);
	if (rv == 0)
		rv = cmd_builder_finish(&b, buf, len);
	else
		cmd_builder_clear(&b);
	free(cmd);
	return rv;
}
