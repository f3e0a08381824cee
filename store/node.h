/* node.h — one raft member: libraft over its libuv backend and TCP transport,
 * the group commit of proposals into log entries, leadership tracking, and
 * read barriers.
 *
 * Happy path of a write: node_propose() queues the command; in the loop's
 * check phase the queue becomes one log entry (store/cmd.h) handed to
 * raft_apply(); when the entry commits, libraft calls the store's FSM apply,
 * which applies every command in its open sqlite transaction and hands its results
 * to node_take_results(); the proposer's callbacks then run with them.
 *
 * Failure modes: not leader (CAP_ENOLEADER at once; forwarding comes with
 * clusters), no leader for request_timeout (CAP_ENOLEADER), leadership lost
 * before commit (CAP_ENOLEADER: the outcome is unknown, as with etcd's
 * "leader changed"), shutdown (CAP_ESTOPPED), a disk error in raft (the node
 * stops: see node_config.on_fatal).
 *
 * libraft 0.15 gaps handled here: on becoming leader a barrier is appended
 * and nothing is proposed or read until it applies; barrier callbacks are
 * made idempotent.
 *
 * Threading: loop thread only. Callbacks follow libuv's contract: an error
 * return means the callback is never called. */
#ifndef CAPSTAN_NODE_H
#define CAPSTAN_NODE_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "store/cmd.h"

#define NODE_MAX_MEMBERS 16

struct node_member {
	uint64_t id;
	char name[64];        /* from --initial-cluster; "" if unknown here */
	char peer_url[256];
	bool learner;         /* replicates but does not vote */
};

struct node_config {
	const char *name;
	const char *data_dir;         /* raft files live in data_dir/raft */
	const char *listen_peer_url;  /* http://host:port the transport binds */
	const char *advertise_peer_url;
	const char *initial_cluster;  /* "name=http://host:port,..." */
	const char *cluster_token;
	bool new_cluster;
	unsigned snapshot_count;      /* applied commands between snapshots */
	unsigned heartbeat_ms;
	unsigned election_ms;
	unsigned request_timeout_ms;  /* how long a proposal waits for a leader */
	struct raft_fsm *fsm;
	void *data;
	/* Leadership became usable (the election barrier applied) or was lost. */
	void (*on_leader)(void *data, bool ready);
	/* Frees an FSM result nobody waits for. */
	void (*free_result)(void *result);
	/* Rewrites a snapshot's data before it is sent to a follower: see
	 * raft_guard_set_expand. NULL sends snapshots as stored. */
	int (*snapshot_expand)(void *data, const struct raft_buffer *in, struct raft_buffer *out);
	/* A fault the node cannot continue after (disk errors). */
	void (*on_fatal)(void *data, const char *why);
};

struct node;

/* status: CAP_OK, else a cap_err; result: what the FSM produced for this
 * command (ownership passes to the callback), NULL on error. */
typedef void (*node_done_cb)(void *data, int status, void *result);
typedef void (*node_read_cb)(void *data, int status);

int node_start(uv_loop_t *loop, const struct node_config *cfg, struct node **out,
	       char *errmsg);
/* Fails every waiting request with CAP_ESTOPPED, closes raft, frees the node
 * and then calls cb. */
void node_close(struct node *n, void (*cb)(void *data), void *data);

/* Queues a command for the next log entry. cmd is borrowed: it must stay
 * unchanged until cb is called. */
int node_propose(struct node *n, const void *cmd, size_t len, node_done_cb cb, void *data);
/* Calls cb once every write acknowledged before this call is applied and
 * this member is still leader (a linearizable read point). */
int node_read_barrier(struct node *n, node_read_cb cb, void *data);

/* For the FSM apply: the raft index of the entry being applied. */
uint64_t node_applying_index(const struct node *n);
/* For the FSM apply: hands the results (array of e->count, each owned) of an
 * applied entry to the requests waiting for it, or frees them. Takes
 * ownership of the array. */
void node_take_results(struct node *n, const struct cmd_entry *e, void **results);

/* For the FSM apply: the data pointer given to node_propose for command i
 * of an entry this member proposed and still waits for, else NULL. */
void *node_entry_data(struct node *n, const struct cmd_entry *e, uint32_t i);

/* For the FSM snapshot: a snapshot is being taken now. Restarts the count
 * of commands toward the next one and sets how many log entries stay behind
 * it (returned). */
unsigned node_snapshot_taken(struct node *n);

uint64_t node_id(const struct node *n);
uint64_t node_cluster_id(const struct node *n);
uint64_t node_term(const struct node *n);
uint64_t node_leader(const struct node *n);   /* 0 when none known */
bool node_leader_ready(const struct node *n);
uint64_t node_last_index(const struct node *n);
uint64_t node_applied_index(const struct node *n);
/* The current members, from raft's configuration: up to max into out;
 * returns how many there are. */
size_t node_members(const struct node *n, struct node_member *out, size_t max);
/* The member ID for a peer URL: a hash of its address and the cluster token. */
uint64_t node_member_id(const char *peer_url, const char *token);
/* The peer address ("host:port") of the current leader, or NULL. */
const char *node_leader_address(const struct node *n);

/* Membership changes, one at a time (CAP_EUNAVAILABLE while another is under
 * way). cb(data, status) runs once the change has committed. */
typedef void (*node_change_cb)(void *data, int status);
int node_add_member(struct node *n, uint64_t id, const char *peer_url, bool learner,
		    node_change_cb cb, void *data);
int node_remove_member(struct node *n, uint64_t id, node_change_cb cb, void *data);
int node_promote_member(struct node *n, uint64_t id, node_change_cb cb, void *data);
/* Hands leadership to id (0: the most up-to-date voter). */
int node_transfer(struct node *n, uint64_t id, node_change_cb cb, void *data);
/* True once this member is no longer in the configuration it applied. */
bool node_removed(const struct node *n);

#endif
