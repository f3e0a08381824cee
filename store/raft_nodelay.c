/* raft_nodelay.c — see raft_nodelay.h. */
#include "store/raft_nodelay.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lib/log.h"

static void nodelay(struct uv_stream_s *stream)
{
	if (stream != NULL && stream->type == UV_TCP && uv_tcp_nodelay((uv_tcp_t *)stream, 1) != 0)
		log_warn("raft transport: cannot set TCP_NODELAY");
}

static int w_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
	struct raft_nodelay *w = t->impl;
	int rv = w->inner->init(w->inner, id, address);
	if (rv != 0)
		memcpy(t->errmsg, w->inner->errmsg, sizeof t->errmsg);
	return rv;
}

static void accept_trampoline(struct raft_uv_transport *inner, raft_id id, const char *address,
			      struct uv_stream_s *stream)
{
	struct raft_nodelay *w = inner->data;
	nodelay(stream);
	w->accept_cb(&w->transport, id, address, stream);
}

static int w_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
	struct raft_nodelay *w = t->impl;
	int rv;
	w->accept_cb = cb;
	rv = w->inner->listen(w->inner, accept_trampoline);
	if (rv != 0)
		memcpy(t->errmsg, w->inner->errmsg, sizeof t->errmsg);
	return rv;
}

/* Connect requests in flight, to find each one's callback: req->data
 * belongs to libraft, so the request cannot carry it. */
struct pending_connect {
	struct pending_connect *next;
	struct raft_uv_connect *req;
	raft_uv_connect_cb cb;
};

static struct pending_connect *pending;   /* loop thread only */

static void connect_trampoline(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
	struct pending_connect **pp = &pending;
	while (*pp != NULL && (*pp)->req != req)
		pp = &(*pp)->next;
	if (*pp == NULL)
		return;  /* cannot happen: every request was recorded */
	struct pending_connect *p = *pp;
	raft_uv_connect_cb cb = p->cb;
	*pp = p->next;
	free(p);
	if (status == 0)
		nodelay(stream);
	cb(req, stream, status);
}

static int w_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
		     const char *address, raft_uv_connect_cb cb)
{
	struct raft_nodelay *w = t->impl;
	struct pending_connect *p = malloc(sizeof *p);
	int rv;
	if (p == NULL)
		return RAFT_NOMEM;
	p->req = req;
	p->cb = cb;
	p->next = pending;
	pending = p;
	rv = w->inner->connect(w->inner, req, id, address, connect_trampoline);
	if (rv != 0) {
		/* Not started: the callback will never come. */
		struct pending_connect **pp = &pending;
		while (*pp != p)
			pp = &(*pp)->next;
		*pp = p->next;
		free(p);
		memcpy(t->errmsg, w->inner->errmsg, sizeof t->errmsg);
	}
	return rv;
}

static void close_trampoline(struct raft_uv_transport *inner)
{
	struct raft_nodelay *w = inner->data;
	if (w->close_cb != NULL)
		w->close_cb(&w->transport);
}

static void w_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
	struct raft_nodelay *w = t->impl;
	w->close_cb = cb;
	w->inner->close(w->inner, close_trampoline);
}

void raft_nodelay_init(struct raft_nodelay *w, struct raft_uv_transport *inner)
{
	memset(w, 0, sizeof *w);
	w->inner = inner;
	inner->data = w;
	w->transport.impl = w;
	w->transport.init = w_init;
	w->transport.listen = w_listen;
	w->transport.connect = w_connect;
	w->transport.close = w_close;
}
