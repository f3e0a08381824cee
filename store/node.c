/* node.c — one raft member and the group commit of proposals: see node.h. */
#include "store/node.h"
#include "store/raft_aio.h"
#include "store/raft_prealloc.h"
#include "store/raft_guard.h"
#include "store/raft_nodelay.h"

#include <errno.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/err.h"
#include "lib/log.h"
#include "lib/url.h"
#include "lib/dirs.h"

/* A log entry holds at most this many command bytes; more waits for the
 * next entry, so one huge batch cannot stall the log. */
#define NODE_MAX_ENTRY_BYTES (4u << 20)
/* Commands kept in the log behind a snapshot, as etcd keeps 5,000 entries
 * (one request each) for followers to catch up from. */
#define NODE_CATCHUP_COMMANDS 5000
/* Size of a raft log segment file. libraft preallocates three (one open,
 * two prepared), which is disk used before anything is written: 24 MiB at
 * its default of 8 MiB. But closing a full segment destroys its kernel AIO
 * context (io_destroy), which waits out an RCU grace period: ~33 ms. On the
 * loop thread, as libraft does it, the member answered nothing meanwhile:
 * measured at 64 connections (~19k puts/s), put p99 was ~34 ms with 1 MiB
 * segments, ~16 ms with 2 MiB and 10-12 ms with 8 MiB. raft_aio.h now moves
 * that wait to a thread of its own; 4 MiB was chosen before that, for 12 MiB
 * preallocated. */
#define NODE_SEGMENT_BYTES (4u << 20)

struct proposal {
	struct proposal *next;
	const void *cmd;     /* the proposer's, until cb */
	size_t len;
	node_done_cb cb;
	void *data;
	uint64_t queued_ms;
};

/* A log entry proposed by this member, waiting to apply. */
struct batch {
	struct raft_apply req;
	struct node *node;
	struct batch *next, *prev;
	uint64_t seq;
	uint32_t count;
	node_done_cb *cbs;
	void **datas;
	void **results;      /* set by node_take_results */
};

struct read_wait {
	struct read_wait *next;
	node_read_cb cb;
	void *data;
	uint64_t queued_ms;
};

struct read_barrier {
	struct raft_barrier req;
	struct node *node;
	struct read_wait *waiters;
	bool fired;          /* libraft 0.15 may call a barrier's cb twice */
	struct read_barrier *dead_next;
};

struct node {
	uv_loop_t *loop;
	struct node_config cfg;
	struct raft raft;
	struct raft_io io;
	struct raft_guard guard;   /* wraps io: see raft_guard.h */
	struct raft_uv_transport transport;
	struct raft_nodelay nodelay;   /* wraps transport: see raft_nodelay.h */
	char raft_dir[4096];
	char address[256];
	uint64_t id;
	uint64_t cluster_id;
	struct node_member members[NODE_MAX_MEMBERS];
	size_t n_members;

	uv_check_t check;
	uv_timer_t timer;
	int handles_open;

	/* proposals not yet in a log entry */
	struct proposal *queue_head, *queue_tail;
	size_t queue_bytes;
	uint64_t next_seq;
	/* entries proposed and not yet applied, oldest first */
	struct batch *inflight_head, *inflight_tail;

	/* reads waiting for a read point */
	struct read_wait *reads_head, *reads_tail;
	struct read_barrier *read_inflight;

	/* leadership */
	int last_state;
	bool leader_ready;
	struct read_barrier *election_barrier;
	/* fired barriers, freed on the next loop turn (see barrier_retire) */
	struct read_barrier *dead;

	/* members added as voters, waiting as standbys to be promoted once
	 * they can catch up */
	uint64_t promote[NODE_MAX_MEMBERS];
	size_t n_promote;
	bool promoting;
	uint64_t promote_after_ms;

	/* snapshots are counted in applied commands, as etcd counts applied
	 * requests: libraft counts entries, and one entry holds a whole group
	 * commit (see node_take_results) */
	uint64_t cmds_since_snapshot;
	uint64_t entries_at_count;   /* raft's last_applied when counting restarted */
	bool counting;
	unsigned snapshot_count;

	bool closing;
	uint64_t close_deadline_ms;   /* node_close: waiting for appends until then */
	void (*close_cb)(void *data);
	void *close_data;
};

static uint64_t now_ms(struct node *n)
{
	return uv_now(n->loop);
}

uint64_t node_member_id(const char *peer_url, const char *token)
{
	char buf[1024];
	char addr[256];
	/* The ID depends on the peer address and the cluster token only, so a
	 * member added by URL and the process started with that URL agree. */
	if (url_address(peer_url, addr, sizeof addr) != 0)
		snprintf(addr, sizeof addr, "%s", peer_url);
	int len = snprintf(buf, sizeof buf, "%s|%s", addr, token ? token : "");
	uint64_t id = raft_digest(buf, (unsigned long long)len);
	return id ? id : 1;
}

static int parse_cluster(struct node *n, char *errmsg)
{
	const char *s = n->cfg.initial_cluster;
	char tmp[8192];
	char *save = NULL;
	if (s == NULL || strlen(s) >= sizeof tmp) {
		cap_errmsg_printf(errmsg, "--initial-cluster is missing or too long");
		return CAP_EINVAL;
	}
	strcpy(tmp, s);
	for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		struct node_member *m;
		char addr[256];
		if (eq == NULL || eq == tok || n->n_members == NODE_MAX_MEMBERS ||
		    (size_t)(eq - tok) >= sizeof m->name || strlen(eq + 1) >= sizeof m->peer_url ||
		    url_address(eq + 1, addr, sizeof addr) != 0) {
			cap_errmsg_printf(errmsg, "--initial-cluster: bad member \"%s\"", tok);
			return CAP_EINVAL;
		}
		m = &n->members[n->n_members++];
		memcpy(m->name, tok, (size_t)(eq - tok));
		m->name[eq - tok] = '\0';
		strcpy(m->peer_url, eq + 1);
		m->id = node_member_id(m->peer_url, n->cfg.cluster_token);
	}
	for (size_t i = 0; i < n->n_members; i++) {
		if (strcmp(n->members[i].name, n->cfg.name) == 0) {
			n->id = n->members[i].id;
			url_address(n->members[i].peer_url, n->address, sizeof n->address);
		}
	}
	if (n->id == 0) {
		cap_errmsg_printf(errmsg, "--initial-cluster has no member named \"%s\"", n->cfg.name);
		return CAP_EINVAL;
	}
	{
		const char *t = n->cfg.cluster_token ? n->cfg.cluster_token : "";
		n->cluster_id = raft_digest(t, strlen(t)) ^ 0x63617073ull;
	}
	return CAP_OK;
}

/* A member keeps the ID it first started with (DIR/raft/member-id), so that
 * after `member update` it can restart on its new peer URL as the same
 * member; its address is then the one it advertises. */
static int keep_identity(struct node *n, char *errmsg)
{
	char path[4200];
	unsigned long long id = 0;
	FILE *f;
	snprintf(path, sizeof path, "%s/member-id", n->raft_dir);
	f = fopen(path, "r");
	if (f != NULL) {
		int got = fscanf(f, "%llx", &id);
		fclose(f);
		if (got != 1 || id == 0) {
			cap_errmsg_printf(errmsg, "%s is damaged", path);
			return CAP_ECORRUPT;
		}
		if (id != n->id) {
			n->id = id;
			if (n->cfg.advertise_peer_url == NULL ||
			    url_address(n->cfg.advertise_peer_url, n->address, sizeof n->address) != 0) {
				cap_errmsg_printf(errmsg, "member %llx needs --initial-advertise-peer-urls", id);
				return CAP_EINVAL;
			}
		}
		return CAP_OK;
	}
	f = fopen(path, "w");
	if (f == NULL || fprintf(f, "%llx\n", (unsigned long long)n->id) < 0 || fflush(f) != 0 ||
	    fsync(fileno(f)) != 0) {
		if (f)
			fclose(f);
		cap_errmsg_printf(errmsg, "write %s: %s", path, strerror(errno));
		return CAP_EIO;
	}
	fclose(f);
	return CAP_OK;
}


/* ---- completing requests ---- */

static void batch_unlink(struct node *n, struct batch *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		n->inflight_head = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		n->inflight_tail = b->prev;
	b->next = b->prev = NULL;
}

static void batch_finish(struct batch *b, int status)
{
	struct node *n = b->node;
	for (uint32_t i = 0; i < b->count; i++) {
		void *result = b->results ? b->results[i] : NULL;
		b->cbs[i](b->datas[i], result ? CAP_OK : status, result);
	}
	free(b->results);
	free(b->cbs);
	free(b->datas);
	(void)n;
	free(b);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct batch *b = req->data;
	struct node *n = b->node;
	(void)result;
	batch_unlink(n, b);
	if (status == RAFT_IOERR || status == RAFT_NOSPACE || status == RAFT_CORRUPT) {
		/* libraft 0.15 can diverge or leave holes in its log after a failed
		 * write (upstream fixes #321, #466, #483): a member whose disk failed
		 * stops rather than limping on. */
		n->cfg.on_fatal(n->cfg.data, raft_strerror(status));
	}
	if (status != 0 && b->results == NULL)
		log_debug("entry %llu not applied: %s", (unsigned long long)b->seq,
			  raft_strerror(status));
	/* The entry may still commit under the next leader: the outcome is
	 * unknown, so the client hears "leader changed", never a retry. */
	batch_finish(b, status == RAFT_SHUTDOWN ? CAP_ESTOPPED : CAP_ELEADERCHANGED);
}

void *node_entry_data(struct node *n, const struct cmd_entry *e, uint32_t i)
{
	if (e->origin != n->id)
		return NULL;
	for (struct batch *b = n->inflight_head; b; b = b->next)
		if (b->seq == e->seq && b->count == e->count && b->results == NULL)
			return i < b->count ? b->datas[i] : NULL;
	return NULL;
}

/* Asks libraft for a snapshot once snapshot_count commands have applied
 * since the last one: its own threshold counts entries since the last
 * snapshot, so lowering it to 1 makes the check after this apply take one.
 * node_snapshot_taken puts it back. The entry threshold stays as a backstop
 * for entries without commands (barriers, configuration changes). */
static void count_commands(struct node *n, uint32_t count)
{
	/* The first entry applied after a start: the interval's entries (for
	 * node_snapshot_taken) count from here, not from index 0. */
	if (!n->counting) {
		n->counting = true;
		n->entries_at_count = raft_last_applied(&n->raft);
	}
	n->cmds_since_snapshot += count;
	if (n->cmds_since_snapshot >= n->snapshot_count)
		raft_set_snapshot_threshold(&n->raft, 1);
}

unsigned node_snapshot_taken(struct node *n)
{
	uint64_t entries = raft_last_applied(&n->raft) - n->entries_at_count;
	uint64_t cmds = n->cmds_since_snapshot;
	uint64_t keep = n->snapshot_count < NODE_CATCHUP_COMMANDS ? n->snapshot_count
								  : NODE_CATCHUP_COMMANDS;
	uint64_t trailing;

	/* Trailing entries let a follower that is a little behind catch up from
	 * the log instead of a snapshot install. Keep about `keep` commands'
	 * worth (etcd keeps 5,000 requests), converted to entries by this
	 * interval's commands per entry. */
	if (cmds == 0 || entries == 0)
		trailing = keep;
	else
		trailing = (keep * entries + cmds - 1) / cmds;
	/* Every entry that counts holds a command, so more entries than
	 * `keep` would be more than `keep` commands (entries without commands,
	 * barriers, are few). */
	if (trailing > keep)
		trailing = keep;
	if (trailing < 1)
		trailing = 1;
	raft_set_snapshot_trailing(&n->raft, (unsigned)trailing);
	raft_set_snapshot_threshold(&n->raft, n->snapshot_count);
	n->cmds_since_snapshot = 0;
	n->entries_at_count = raft_last_applied(&n->raft);
	return (unsigned)trailing;
}

void node_take_results(struct node *n, const struct cmd_entry *e, void **results)
{
	count_commands(n, e->count);
	if (e->origin == n->id) {
		for (struct batch *b = n->inflight_head; b; b = b->next) {
			if (b->seq == e->seq && b->count == e->count && b->results == NULL) {
				b->results = results;
				return;
			}
		}
	}
	for (uint32_t i = 0; i < e->count; i++)
		n->cfg.free_result(results[i]);
	free(results);
}

/* Fails queued proposals (only those older than the request timeout when
 * only_expired). The list is detached first: a callback may queue again. */
static void fail_queue(struct node *n, int status, bool only_expired)
{
	struct proposal *list = n->queue_head;
	uint64_t now = now_ms(n);
	n->queue_head = n->queue_tail = NULL;
	n->queue_bytes = 0;
	while (list) {
		struct proposal *p = list;
		list = p->next;
		p->next = NULL;
		if (only_expired && now - p->queued_ms < n->cfg.request_timeout_ms) {
			if (n->queue_tail)
				n->queue_tail->next = p;
			else
				n->queue_head = p;
			n->queue_tail = p;
			n->queue_bytes += p->len;
			continue;
		}
		p->cb(p->data, status, NULL);
		free(p);
	}
}

/* Same for waiting reads. */
static void fail_reads(struct node *n, int status, bool only_expired)
{
	struct read_wait *list = n->reads_head;
	uint64_t now = now_ms(n);
	n->reads_head = n->reads_tail = NULL;
	while (list) {
		struct read_wait *w = list;
		list = w->next;
		w->next = NULL;
		if (only_expired && now - w->queued_ms < n->cfg.request_timeout_ms) {
			if (n->reads_tail)
				n->reads_tail->next = w;
			else
				n->reads_head = w;
			n->reads_tail = w;
			continue;
		}
		w->cb(w->data, status);
		free(w);
	}
}

/* ---- group commit ---- */

static void flush_queue(struct node *n)
{
	while (n->queue_head != NULL) {
		struct cmd_builder cb;
		struct batch *b = calloc(1, sizeof *b);
		struct proposal *p;
		struct raft_buffer buf;
		size_t bytes = 0;
		uint32_t count = 0;
		int rv;

		for (p = n->queue_head; p && (count == 0 || bytes + p->len <= NODE_MAX_ENTRY_BYTES);
		     p = p->next) {
			bytes += p->len;
			count++;
		}
		if (b == NULL || cmd_builder_init(&cb, n->id, ++n->next_seq) != 0)
			goto oom;
		b->cbs = calloc(count, sizeof *b->cbs);
		b->datas = calloc(count, sizeof *b->datas);
		if (b->cbs == NULL || b->datas == NULL)
			goto oom_builder;
		for (uint32_t i = 0; i < count; i++) {
			p = n->queue_head;
			if (cmd_builder_add(&cb, p->cmd, p->len) != 0)
				goto oom_builder;
			n->queue_head = p->next;
			n->queue_bytes -= p->len;
			b->cbs[i] = p->cb;
			b->datas[i] = p->data;
			free(p);
			b->count++;
		}
		if (n->queue_head == NULL)
			n->queue_tail = NULL;
		if (cmd_builder_finish(&cb, &buf.base, &buf.len) != 0)
			goto oom_builder;
		b->node = n;
		b->seq = n->next_seq;
		b->req.data = b;
		/* Link before raft_apply: with one voter the entry can apply inside it. */
		b->prev = n->inflight_tail;
		if (n->inflight_tail)
			n->inflight_tail->next = b;
		else
			n->inflight_head = b;
		n->inflight_tail = b;
		rv = raft_apply(&n->raft, &b->req, &buf, 1, apply_cb);
		if (rv != 0) {
			raft_free(buf.base);
			batch_unlink(n, b);
			log_warn("raft_apply: %s", raft_strerror(rv));
			batch_finish(b, rv == RAFT_NOTLEADER || rv == RAFT_LEADERSHIPLOST
						? CAP_ENOLEADER : CAP_EIO);
		}
		continue;
	oom_builder:
		cmd_builder_clear(&cb);
	oom:
		/* Requests already moved into b fail with it; the rest stay queued. */
		if (b != NULL) {
			b->results = NULL;
			batch_finish(b, CAP_ENOMEM);
		}
		return;
	}
}

/* ---- read barriers ---- */

/* libraft 0.15 can call a barrier's callback a second time within the same
 * loop turn; the struct must outlive that, so it is freed on the next turn. */
static void barrier_retire(struct node *n, struct read_barrier *rb)
{
	rb->dead_next = n->dead;
	n->dead = rb;
}

static void barrier_reap(struct node *n)
{
	while (n->dead) {
		struct read_barrier *rb = n->dead;
		n->dead = rb->dead_next;
		free(rb);
	}
}

static void read_barrier_cb(struct raft_barrier *req, int status)
{
	struct read_barrier *rb = req->data;
	struct node *n = rb->node;
	if (rb->fired)
		return;
	rb->fired = true;
	if (n->read_inflight == rb)
		n->read_inflight = NULL;
	while (rb->waiters) {
		struct read_wait *w = rb->waiters;
		rb->waiters = w->next;
		w->cb(w->data, status == 0 ? CAP_OK : CAP_ENOLEADER);
		free(w);
	}
	barrier_retire(n, rb);
}

static bool single_voter(struct node *n)
{
	unsigned voters = 0;
	for (unsigned i = 0; i < n->raft.configuration.n; i++)
		if (n->raft.configuration.servers[i].role == RAFT_VOTER)
			voters++;
	return voters == 1;
}

static void serve_reads(struct node *n)
{
	if (n->reads_head == NULL || !n->leader_ready)
		return;
	if (single_voter(n)) {
		/* With one voter, every acknowledged write has applied and no other
		 * member can be leader: local state is a linearizable read point. */
		fail_reads(n, CAP_OK, false);
		return;
	}
	if (n->read_inflight != NULL)
		return;
	struct read_barrier *rb = calloc(1, sizeof *rb);
	if (rb == NULL)
		return;
	rb->node = n;
	rb->req.data = rb;
	rb->waiters = n->reads_head;
	n->reads_head = n->reads_tail = NULL;
	n->read_inflight = rb;
	if (raft_barrier(&n->raft, &rb->req, read_barrier_cb) != 0) {
		n->read_inflight = NULL;
		rb->fired = false;
		read_barrier_cb(&rb->req, RAFT_NOTLEADER);
	}
}

/* ---- leadership ---- */

static void election_barrier_cb(struct raft_barrier *req, int status)
{
	struct read_barrier *rb = req->data;
	struct node *n = rb->node;
	if (rb->fired)
		return;
	rb->fired = true;
	if (n->election_barrier == rb)
		n->election_barrier = NULL;
	if (status == 0 && raft_state(&n->raft) == RAFT_LEADER && !n->closing) {
		n->leader_ready = true;
		log_info("member %016llx is leader at term %llu", (unsigned long long)n->id,
			 (unsigned long long)n->raft.current_term);
		n->cfg.on_leader(n->cfg.data, true);
	}
	barrier_retire(n, rb);
}

static void track_state(struct node *n)
{
	int state = raft_state(&n->raft);
	if (state == n->last_state)
		return;
	if (n->last_state == RAFT_LEADER) {
		n->leader_ready = false;
		n->cfg.on_leader(n->cfg.data, false);
		log_info("member %016llx lost leadership", (unsigned long long)n->id);
	}
	n->last_state = state;
	if (state == RAFT_LEADER && n->election_barrier == NULL) {
		/* libraft 0.15 can commit entries of earlier terms by counting
		 * replicas; a barrier of our own term committing first makes the
		 * log prefix safe to build on. */
		struct read_barrier *rb = calloc(1, sizeof *rb);
		if (rb == NULL)
			return;
		rb->node = n;
		rb->req.data = rb;
		n->election_barrier = rb;
		if (raft_barrier(&n->raft, &rb->req, election_barrier_cb) != 0) {
			n->election_barrier = NULL;
			free(rb);
		}
	}
}

static void check_cb(uv_check_t *h)
{
	struct node *n = h->data;
	barrier_reap(n);
	if (n->closing)
		return;
	track_state(n);
	if (n->leader_ready) {
		flush_queue(n);
		serve_reads(n);
	} else if (raft_state(&n->raft) == RAFT_FOLLOWER && n->raft.follower_state.current_leader.id != 0) {
		/* Another member leads: without forwarding, answer at once. */
		fail_queue(n, CAP_ENOLEADER, false);
		fail_reads(n, CAP_ENOLEADER, false);
	}
}

static void promote_cb(struct raft_change *req, int status)
{
	struct node *n = req->data;
	n->promoting = false;
	free(req);
	if (status == 0 && n->n_promote > 0) {
		log_info("member %016llx promoted to voter", (unsigned long long)n->promote[0]);
		memmove(n->promote, n->promote + 1, (n->n_promote - 1) * sizeof n->promote[0]);
		n->n_promote--;
	} else {
		n->promote_after_ms = now_ms(n) + 1000;
	}
}

/* Promotes standbys added as voters; libraft first catches them up, and
 * fails the change if they cannot be reached (then we try again later). */
static void promote_pending(struct node *n)
{
	struct raft_change *req;
	if (n->n_promote == 0 || n->promoting || !n->leader_ready ||
	    n->raft.configuration_uncommitted_index != 0 || now_ms(n) < n->promote_after_ms)
		return;
	const struct raft_server *srv = NULL;
	for (unsigned i = 0; i < n->raft.configuration.n; i++)
		if (n->raft.configuration.servers[i].id == n->promote[0])
			srv = &n->raft.configuration.servers[i];
	if (srv == NULL || srv->role == RAFT_VOTER) {
		memmove(n->promote, n->promote + 1, (n->n_promote - 1) * sizeof n->promote[0]);
		n->n_promote--;
		return;
	}
	if (srv->role != RAFT_STANDBY)
		return;  /* still being added */
	req = calloc(1, sizeof *req);
	if (req == NULL)
		return;
	req->data = n;
	n->promoting = true;
	if (raft_assign(&n->raft, req, srv->id, RAFT_VOTER, promote_cb) != 0) {
		n->promoting = false;
		free(req);
		n->promote_after_ms = now_ms(n) + 1000;
	}
}

static void timer_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	if (n->closing)
		return;
	track_state(n);
	promote_pending(n);
	if (!n->leader_ready) {
		fail_queue(n, CAP_ENOLEADER, true);
		fail_reads(n, CAP_ENOLEADER, true);
	}
}

/* ---- life cycle ---- */

int node_start(uv_loop_t *loop, const struct node_config *cfg, struct node **out,
	       char *errmsg)
{
	struct node *n = calloc(1, sizeof *n);
	int rv;

	if (n == NULL)
		return CAP_ENOMEM;
	n->loop = loop;
	n->cfg = *cfg;
	if (n->cfg.request_timeout_ms == 0)
		n->cfg.request_timeout_ms = 5000;
	rv = parse_cluster(n, errmsg);
	if (rv != 0)
		goto err;
	snprintf(n->raft_dir, sizeof n->raft_dir, "%s/raft", cfg->data_dir);
	if (dirs_make_all(n->raft_dir, 0700) != 0) {
		cap_errmsg_printf(errmsg, "create %s: %s", n->raft_dir, strerror(errno));
		rv = CAP_EIO;
		goto err;
	}
	rv = keep_identity(n, errmsg);
	if (rv != 0)
		goto err;
	rv = raft_uv_tcp_init(&n->transport, loop);
	if (rv != 0) {
		cap_errmsg_printf(errmsg, "raft transport: %s", raft_strerror(rv));
		rv = CAP_EIO;
		goto err;
	}
	if (cfg->listen_peer_url != NULL) {
		char bind[256];
		if (url_address(cfg->listen_peer_url, bind, sizeof bind) != 0) {
			cap_errmsg_printf(errmsg, "bad --listen-peer-urls \"%s\"", cfg->listen_peer_url);
			rv = CAP_EINVAL;
			goto err_transport;
		}
		raft_uv_tcp_set_bind_address(&n->transport, bind);
	}
	raft_nodelay_init(&n->nodelay, &n->transport);
	/* Segment closes stop stalling the loop (see raft_aio.h); without the
	 * thread they stall it as before. */
	if (raft_aio_start() != 0)
		log_warn("raft: cannot start the AIO teardown thread; segment closes stall the loop");
	/* Appends go out on the first try (see raft_prealloc.h); without it
	 * each one under load is tried twice, as before. */
	if (raft_prealloc_start(n->raft_dir) != 0)
		log_warn("raft: cannot resolve %s; log segments are not written ahead", n->raft_dir);
	rv = raft_uv_init(&n->io, loop, n->raft_dir, &n->nodelay.transport);
	if (rv != 0) {
		cap_errmsg_printf(errmsg, "raft storage in %s: %s", n->raft_dir, n->io.errmsg);
		rv = CAP_EIO;
		goto err_transport;
	}
	raft_uv_set_snapshot_compression(&n->io, true);
	raft_guard_init(&n->guard, &n->io);
	raft_guard_set_expand(&n->guard, cfg->snapshot_expand, cfg->data);
	rv = raft_init(&n->raft, &n->guard.io, cfg->fsm, n->id, n->address);
	if (rv != 0) {
		cap_errmsg_printf(errmsg, "raft: %s", raft_errmsg(&n->raft));
		rv = CAP_EIO;
		goto err_io;
	}
	raft_set_heartbeat_timeout(&n->raft, cfg->heartbeat_ms ? cfg->heartbeat_ms : 100);
	raft_set_election_timeout(&n->raft, cfg->election_ms ? cfg->election_ms : 1000);
	n->snapshot_count = cfg->snapshot_count ? cfg->snapshot_count : 10000;
	raft_set_snapshot_threshold(&n->raft, n->snapshot_count);
	raft_set_snapshot_trailing(&n->raft, n->snapshot_count < NODE_CATCHUP_COMMANDS
						     ? n->snapshot_count : NODE_CATCHUP_COMMANDS);
	/* See NODE_SEGMENT_BYTES. A batch larger than a segment still goes
	 * into a segment of its own. */
	raft_uv_set_segment_size(&n->io, NODE_SEGMENT_BYTES);
	raft_set_pre_vote(&n->raft, true);

	if (cfg->new_cluster) {
		struct raft_configuration conf;
		raft_configuration_init(&conf);
		for (size_t i = 0; i < n->n_members; i++) {
			char addr[256];
			url_address(n->members[i].peer_url, addr, sizeof addr);
			rv = raft_configuration_add(&conf, n->members[i].id, addr, RAFT_VOTER);
			if (rv != 0)
				break;
		}
		if (rv == 0)
			rv = raft_bootstrap(&n->raft, &conf);
		raft_configuration_close(&conf);
		if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
			cap_errmsg_printf(errmsg, "raft bootstrap: %s", raft_strerror(rv));
			rv = CAP_EIO;
			goto err_raft;
		}
	}
	/* raft_start can already apply entries (a lone voter elects itself and
	 * replays the log), and the FSM asks the node for the index. */
	*out = n;
	rv = raft_start(&n->raft);
	if (rv != 0) {
		*out = NULL;
		cap_errmsg_printf(errmsg, "raft start: %s", raft_errmsg(&n->raft));
		rv = rv == RAFT_CORRUPT ? CAP_ECORRUPT : CAP_EIO;
		goto err_raft;
	}
	uv_check_init(loop, &n->check);
	n->check.data = n;
	uv_check_start(&n->check, check_cb);
	uv_timer_init(loop, &n->timer);
	n->timer.data = n;
	uv_timer_start(&n->timer, timer_cb, 100, 100);
	n->handles_open = 2;
	n->last_state = RAFT_UNAVAILABLE;
	*out = n;
	return CAP_OK;

err_raft:
	/* raft_init succeeded: raft_close is the only way back, and it is
	 * asynchronous; the process is exiting anyway, so we leak. */
	return rv;
err_io:
	raft_uv_close(&n->io);
err_transport:
	raft_uv_tcp_close(&n->transport);
err:
	free(n);
	return rv;
}

static void node_free_maybe(struct node *n)
{
	if (n->handles_open > 0)
		return;
	raft_uv_close(&n->io);
	raft_uv_tcp_close(&n->transport);
	barrier_reap(n);
	void (*cb)(void *) = n->close_cb;
	void *data = n->close_data;
	free(n);
	if (cb)
		cb(data);
}

static void handle_closed(uv_handle_t *h)
{
	struct node *n = h->data;
	n->handles_open--;
	node_free_maybe(n);
}

static void raft_closed(struct raft *r)
{
	struct node *n = r->data;
	/* Batches still in flight were failed by raft_close with RAFT_SHUTDOWN. */
	uv_close((uv_handle_t *)&n->check, handle_closed);
	uv_close((uv_handle_t *)&n->timer, handle_closed);
}

static void close_raft(struct node *n)
{
	uv_timer_stop(&n->timer);
	n->raft.data = n;
	raft_close(&n->raft, raft_closed);
}

/* libraft 0.15 crashes when a log append completes after raft_close (its
 * callback releases entries of a log already freed): with writes in flight
 * at SIGTERM, the process died with SIGSEGV instead of exiting 0. So the
 * close waits for the appends in flight, for a bounded time (a follower may
 * keep receiving entries meanwhile). */
static void close_wait_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	if (raft_guard_appends(&n->guard) == 0 || now_ms(n) >= n->close_deadline_ms)
		close_raft(n);
}

void node_close(struct node *n, void (*cb)(void *data), void *data)
{
	n->closing = true;
	n->close_cb = cb;
	n->close_data = data;
	fail_queue(n, CAP_ESTOPPED, false);
	fail_reads(n, CAP_ESTOPPED, false);
	if (n->leader_ready) {
		n->leader_ready = false;
		n->cfg.on_leader(n->cfg.data, false);
	}
	if (raft_guard_appends(&n->guard) == 0) {
		close_raft(n);
		return;
	}
	n->close_deadline_ms = now_ms(n) + 2000;
	uv_timer_start(&n->timer, close_wait_cb, 1, 1);
}

int node_propose(struct node *n, const void *cmd, size_t len, node_done_cb cb, void *data)
{
	struct proposal *p;
	if (n->closing)
		return CAP_ESTOPPED;
	if (!n->leader_ready && raft_state(&n->raft) == RAFT_FOLLOWER &&
	    n->raft.follower_state.current_leader.id != 0)
		return CAP_ENOLEADER;
	p = calloc(1, sizeof *p);
	if (p == NULL)
		return CAP_ENOMEM;
	p->cmd = cmd;
	p->len = len;
	p->cb = cb;
	p->data = data;
	p->queued_ms = now_ms(n);
	if (n->queue_tail)
		n->queue_tail->next = p;
	else
		n->queue_head = p;
	n->queue_tail = p;
	n->queue_bytes += len;
	return CAP_OK;
}

int node_read_barrier(struct node *n, node_read_cb cb, void *data)
{
	struct read_wait *w;
	if (n->closing)
		return CAP_ESTOPPED;
	if (!n->leader_ready && raft_state(&n->raft) == RAFT_FOLLOWER &&
	    n->raft.follower_state.current_leader.id != 0)
		return CAP_ENOLEADER;
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return CAP_ENOMEM;
	w->cb = cb;
	w->data = data;
	w->queued_ms = now_ms(n);
	if (n->reads_tail)
		n->reads_tail->next = w;
	else
		n->reads_head = w;
	n->reads_tail = w;
	return CAP_OK;
}

uint64_t node_applying_index(const struct node *n)
{
	return raft_last_applied((struct raft *)&n->raft) + 1;
}

uint64_t node_id(const struct node *n)
{
	return n->id;
}

uint64_t node_cluster_id(const struct node *n)
{
	return n->cluster_id;
}

uint64_t node_term(const struct node *n)
{
	return n->raft.current_term;
}

uint64_t node_leader(const struct node *n)
{
	raft_id id = 0;
	const char *addr = NULL;
	raft_leader((struct raft *)&n->raft, &id, &addr);
	return id;
}

bool node_leader_ready(const struct node *n)
{
	return n->leader_ready;
}

uint64_t node_last_index(const struct node *n)
{
	return raft_last_index((struct raft *)&n->raft);
}

uint64_t node_applied_index(const struct node *n)
{
	return raft_last_applied((struct raft *)&n->raft);
}

size_t node_members(const struct node *n, struct node_member *out, size_t max)
{
	const struct raft_configuration *c = &n->raft.configuration;
	size_t k = 0;
	for (unsigned i = 0; i < c->n; i++) {
		const struct raft_server *srv = &c->servers[i];
		if (k < max) {
			struct node_member *m = &out[k];
			memset(m, 0, sizeof *m);
			m->id = srv->id;
			snprintf(m->peer_url, sizeof m->peer_url, "http://%s", srv->address);
			m->learner = srv->role != RAFT_VOTER;
			for (size_t j = 0; j < n->n_members; j++)
				if (n->members[j].id == srv->id)
					snprintf(m->name, sizeof m->name, "%s", n->members[j].name);
		}
		k++;
	}
	return k;
}

const char *node_leader_address(const struct node *n)
{
	raft_id id = 0;
	const char *addr = NULL;
	raft_leader((struct raft *)&n->raft, &id, &addr);
	return id ? addr : NULL;
}

bool node_removed(const struct node *n)
{
	const struct raft_configuration *c = &n->raft.configuration;
	if (c->n == 0)
		return false;
	for (unsigned i = 0; i < c->n; i++)
		if (c->servers[i].id == n->id)
			return false;
	return true;
}

/* ---- membership ---- */

struct change {
	struct raft_change req;
	struct raft_transfer transfer;
	struct node *node;
	uint64_t id;
	int next_role;        /* after an add: the role to assign, or -1 */
	node_change_cb cb;
	void *data;
};

static int raft_to_cap(int rv)
{
	switch (rv) {
	case 0: return CAP_OK;
	case RAFT_NOTLEADER:
	case RAFT_LEADERSHIPLOST: return CAP_ENOLEADER;
	case RAFT_NOTFOUND: return CAP_EMEMBERNOTFOUND;
	case RAFT_CANTCHANGE: return CAP_EUNAVAILABLE;
	case RAFT_DUPLICATEID:
	case RAFT_DUPLICATEADDRESS:
	case RAFT_BADROLE:
	case RAFT_BADID: return CAP_EINVAL;
	case RAFT_SHUTDOWN: return CAP_ESTOPPED;
	case RAFT_NOCONNECTION: return CAP_EUNAVAILABLE;
	default: return CAP_EIO;
	}
}

static void change_cb(struct raft_change *req, int status)
{
	struct change *c = req->data;
	struct node *n = c->node;
	if (status == 0 && c->next_role >= 0) {
		int role = c->next_role;
		c->next_role = -1;
		/* libraft catches a new voter up before it counts in the quorum. */
		int rv = raft_assign(&n->raft, &c->req, c->id, role, change_cb);
		if (rv == 0)
			return;
		status = rv;
	}
	c->cb(c->data, raft_to_cap(status));
	free(c);
}

static struct change *change_new(struct node *n, uint64_t id, node_change_cb cb, void *data)
{
	struct change *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->node = n;
	c->id = id;
	c->next_role = -1;
	c->cb = cb;
	c->data = data;
	c->req.data = c;
	c->transfer.data = c;
	return c;
}

static int change_ready(struct node *n)
{
	if (!n->leader_ready)
		return CAP_ENOLEADER;
	/* One change at a time, and only after the previous one committed:
	 * libraft 0.15 cannot roll back an uncommitted change. */
	if (n->raft.configuration_uncommitted_index != 0)
		return CAP_EUNAVAILABLE;
	return CAP_OK;
}

enum change_kind { CHANGE_ADD, CHANGE_REMOVE, CHANGE_PROMOTE };

static int start_change(struct node *n, enum change_kind kind, uint64_t id, const char *addr,
			node_change_cb cb, void *data)
{
	struct change *c;
	int rv = change_ready(n);
	if (rv != 0)
		return rv;
	c = change_new(n, id, cb, data);
	if (c == NULL)
		return CAP_ENOMEM;
	switch (kind) {
	case CHANGE_ADD:
		/* Even a voter joins as a standby: it counts in the quorum only
		 * once it has caught up (promote_pending), so adding a member that
		 * is not running yet cannot cost the cluster its majority. */
		c->next_role = RAFT_STANDBY;
		rv = raft_add(&n->raft, &c->req, id, addr, change_cb);
		break;
	case CHANGE_REMOVE:
		rv = raft_remove(&n->raft, &c->req, id, change_cb);
		break;
	default:
		rv = raft_assign(&n->raft, &c->req, id, RAFT_VOTER, change_cb);
		break;
	}
	if (rv != 0) {
		free(c);
		return raft_to_cap(rv);
	}
	return CAP_OK;
}

int node_add_member(struct node *n, uint64_t id, const char *peer_url, bool learner,
		    node_change_cb cb, void *data)
{
	char addr[256];
	int rv;
	if (url_address(peer_url, addr, sizeof addr) != 0)
		return CAP_EINVAL;
	rv = start_change(n, CHANGE_ADD, id, addr, cb, data);
	if (rv == 0 && !learner && n->n_promote < NODE_MAX_MEMBERS)
		n->promote[n->n_promote++] = id;
	return rv;
}

int node_remove_member(struct node *n, uint64_t id, node_change_cb cb, void *data)
{
	return start_change(n, CHANGE_REMOVE, id, NULL, cb, data);
}

int node_promote_member(struct node *n, uint64_t id, node_change_cb cb, void *data)
{
	return start_change(n, CHANGE_PROMOTE, id, NULL, cb, data);
}

static void transfer_cb(struct raft_transfer *req)
{
	struct change *c = req->data;
	struct node *n = c->node;
	int status = raft_state(&n->raft) == RAFT_LEADER ? CAP_ETIMEOUT : CAP_OK;
	c->cb(c->data, status);
	free(c);
}

int node_transfer(struct node *n, uint64_t id, node_change_cb cb, void *data)
{
	struct change *c;
	int rv;
	if (!n->leader_ready)
		return CAP_ENOLEADER;
	c = change_new(n, id, cb, data);
	if (c == NULL)
		return CAP_ENOMEM;
	rv = raft_transfer(&n->raft, &c->transfer, id, transfer_cb);
	if (rv != 0) {
		free(c);
		return rv == RAFT_NOTFOUND || rv == RAFT_BADID ? CAP_EBADTRANSFEREE : raft_to_cap(rv);
	}
	return CAP_OK;
}
