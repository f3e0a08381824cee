/* raft_nodelay.h — a raft_uv_transport that wraps another and turns off
 * Nagle's algorithm on every raft connection.
 *
 * libraft 0.15's TCP transport leaves TCP_NODELAY off, so a small
 * AppendEntries or its reply can sit in the kernel for a delayed-ACK period
 * (about 40 ms on Linux) before it is sent: every replicated write pays it
 * now and then, which shows as a 40–50 ms p99 plateau with three replicas.
 *
 * Threading: loop thread only. Ownership: the wrapper borrows inner, which
 * must outlive it; both are closed through the wrapper. */
#ifndef CAPSTAN_RAFT_NODELAY_H
#define CAPSTAN_RAFT_NODELAY_H

#include <raft.h>
#include <raft/uv.h>

struct raft_nodelay {
	struct raft_uv_transport transport;   /* hand this to raft_uv_init */
	struct raft_uv_transport *inner;
	raft_uv_accept_cb accept_cb;
	raft_uv_transport_close_cb close_cb;
};

void raft_nodelay_init(struct raft_nodelay *w, struct raft_uv_transport *inner);

#endif
