/* proxy_userspace.c — the userspace Service proxy: listeners and TCP
 * splices on libuv.
 *
 * Happy path: proxy_us_update opens a listener per nodePort (per nodePort
 * address) and per clusterIP:port that can be bound, and closes listeners
 * whose service port is gone. An accepted connection takes the listener's
 * next ready endpoint (round-robin), connects to it, and then copies bytes
 * both ways; an EOF on one side shuts down writing on the other, and the
 * pair closes once both directions have ended.
 *
 * Failure modes: no ready endpoint, or a failed connect, closes the client
 * connection at once (the client sees a reset or EOF, as with kube-proxy's
 * reject). A peer that reads slower than the other writes stops reading on
 * the writer's side while more than SPLICE_HIGH bytes are queued. A
 * listener that cannot be opened (the clusterIP is not local, the port is
 * taken) is tried again at the next update. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "orchestrator/agent/proxy_userspace.h"

#define SPLICE_HIGH (1 << 20)
#define READ_SIZE 65536

struct us_target {
	char *key;
	struct proxy_endpoint *eps;
	size_t n;
};

struct us_listener {
	struct proxy_us *u;
	struct us_listener *next;
	uv_tcp_t h;
	char addr[16];
	int port;
	char *key;                   /* the service port it serves */
	size_t rr;                   /* round-robin position */
	bool seen;                   /* still wanted at this update */
};

struct us_conn;

struct us_side {
	struct us_conn *c;
	uv_tcp_t h;
	bool eof;                    /* this side sent EOF (we shut down the other) */
	bool reading;
};

struct us_conn {
	struct proxy_us *u;
	struct us_conn *prev, *next;
	struct us_side in, out;      /* client, endpoint */
	uv_connect_t creq;
	bool connected;
	bool closing;
	int shut_done;               /* directions ended and shut down (2: close) */
	int open;                    /* handles not yet closed */
};

struct proxy_us {
	uv_loop_t *loop;
	char (*bind)[16];            /* nodePort addresses */
	size_t n_bind;
	struct us_target *targets;
	size_t n_targets;
	struct us_listener *listeners;
	struct us_conn *conns;
	int open;                    /* listener handles + conns not yet freed */
	bool closing;
	void (*close_cb)(void *data);
	void *close_data;
};

static void us_maybe_free(struct proxy_us *u);

static const struct us_target *target_find(struct proxy_us *u, const char *key)
{
	for (size_t i = 0; i < u->n_targets; i++)
		if (strcmp(u->targets[i].key, key) == 0)
			return &u->targets[i];
	return NULL;
}

static void targets_free(struct proxy_us *u)
{
	for (size_t i = 0; i < u->n_targets; i++) {
		free(u->targets[i].key);
		free(u->targets[i].eps);
	}
	free(u->targets);
	u->targets = NULL;
	u->n_targets = 0;
}

/* ---- connections ---- */

static void on_conn_handle_closed(uv_handle_t *h)
{
	struct us_side *s = h->data;
	struct us_conn *c = s->c;
	struct proxy_us *u = c->u;
	if (--c->open > 0)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		u->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c);
	u->open--;
	us_maybe_free(u);
}

static void conn_close(struct us_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	uv_close((uv_handle_t *)&c->in.h, on_conn_handle_closed);
	uv_close((uv_handle_t *)&c->out.h, on_conn_handle_closed);
}

static struct us_side *peer(struct us_side *s)
{
	return s == &s->c->in ? &s->c->out : &s->c->in;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = malloc(READ_SIZE);
	buf->len = buf->base != NULL ? READ_SIZE : 0;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void side_read(struct us_side *s, bool on)
{
	if (s->c->closing || s->eof || s->reading == on)
		return;
	s->reading = on;
	if (on)
		uv_read_start((uv_stream_t *)&s->h, on_alloc, on_read);
	else
		uv_read_stop((uv_stream_t *)&s->h);
}

struct us_write {
	uv_write_t req;
	struct us_side *from;
	char *base;
};

static void on_written(uv_write_t *req, int status)
{
	struct us_write *w = req->data;
	struct us_side *from = w->from;
	free(w->base);
	free(w);
	if (status != 0) {
		conn_close(from->c);
		return;
	}
	if (peer(from)->h.write_queue_size < SPLICE_HIGH / 2)
		side_read(from, true);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct us_side *s = req->data;   /* the side that was shut down */
	free(req);
	if (s->c->closing)
		return;
	if (status != 0 || ++s->c->shut_done == 2)
		conn_close(s->c);        /* both directions are done, or broken */
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct us_side *s = st->data, *to = peer(st->data);
	struct us_conn *c = s->c;

	if (n == 0) {
		free(buf->base);
		return;
	}
	if (n < 0) {
		free(buf->base);
		if (n != UV_EOF) {
			conn_close(c);
			return;
		}
		side_read(s, false);
		s->eof = true;
		uv_shutdown_t *sh = malloc(sizeof *sh);
		if (sh == NULL) {
			conn_close(c);
			return;
		}
		sh->data = to;
		if (uv_shutdown(sh, (uv_stream_t *)&to->h, on_shutdown) != 0) {
			free(sh);
			conn_close(c);
		}
		return;
	}
	struct us_write *w = malloc(sizeof *w);
	if (w == NULL) {
		free(buf->base);
		conn_close(c);
		return;
	}
	w->from = s;
	w->base = buf->base;
	w->req.data = w;
	uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
	if (uv_write(&w->req, (uv_stream_t *)&to->h, &b, 1, on_written) != 0) {
		free(w->base);
		free(w);
		conn_close(c);
		return;
	}
	if (to->h.write_queue_size >= SPLICE_HIGH)
		side_read(s, false);
}

static void on_connected(uv_connect_t *req, int status)
{
	struct us_conn *c = req->data;
	if (c->closing)
		return;
	if (status != 0) {
		log_debug("userspace proxy: endpoint connect: %s", uv_strerror(status));
		conn_close(c);
		return;
	}
	c->connected = true;
	side_read(&c->in, true);
	side_read(&c->out, true);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct us_listener *l = server->data;
	struct proxy_us *u = l->u;
	const struct us_target *t = target_find(u, l->key);
	struct us_conn *c;
	struct sockaddr_in sa;

	if (status != 0 || u->closing)
		return;
	c = calloc(1, sizeof *c);
	if (c == NULL)
		return;
	c->u = u;
	c->in.c = c->out.c = c;
	c->in.h.data = &c->in;
	c->out.h.data = &c->out;
	c->creq.data = c;
	uv_tcp_init(u->loop, &c->in.h);
	uv_tcp_init(u->loop, &c->out.h);
	c->open = 2;
	c->next = u->conns;
	if (u->conns != NULL)
		u->conns->prev = c;
	u->conns = c;
	u->open++;
	if (uv_accept(server, (uv_stream_t *)&c->in.h) != 0) {
		conn_close(c);
		return;
	}
	if (t == NULL || t->n == 0) {
		conn_close(c);           /* no ready endpoint: refuse */
		return;
	}
	const struct proxy_endpoint *e = &t->eps[l->rr++ % t->n];
	uv_ip4_addr(e->ip, e->port, &sa);
	uv_tcp_nodelay(&c->in.h, 1);
	uv_tcp_nodelay(&c->out.h, 1);
	if (uv_tcp_connect(&c->creq, &c->out.h, (const struct sockaddr *)&sa, on_connected) != 0)
		conn_close(c);
}

/* ---- listeners ---- */

static void on_listener_closed(uv_handle_t *h)
{
	struct us_listener *l = h->data;
	struct proxy_us *u = l->u;
	free(l->key);
	free(l);
	u->open--;
	us_maybe_free(u);
}

static struct us_listener *listener_find(struct proxy_us *u, const char *addr, int port)
{
	for (struct us_listener *l = u->listeners; l != NULL; l = l->next)
		if (l->port == port && strcmp(l->addr, addr) == 0)
			return l;
	return NULL;
}

static void listener_want(struct proxy_us *u, const char *addr, int port, const char *key,
			  bool quiet)
{
	struct us_listener *l = listener_find(u, addr, port);
	struct sockaddr_in sa;
	int rv;

	if (l != NULL) {
		l->seen = true;
		if (strcmp(l->key, key) != 0) {
			char *k = strdup(key);
			if (k != NULL) {
				free(l->key);
				l->key = k;
			}
		}
		return;
	}
	l = calloc(1, sizeof *l);
	if (l == NULL || (l->key = strdup(key)) == NULL) {
		free(l);
		return;
	}
	l->u = u;
	snprintf(l->addr, sizeof l->addr, "%s", addr);
	l->port = port;
	l->seen = true;
	uv_tcp_init(u->loop, &l->h);
	l->h.data = l;
	u->open++;
	uv_ip4_addr(addr, port, &sa);
	rv = uv_tcp_bind(&l->h, (const struct sockaddr *)&sa, 0);
	if (rv == 0)
		rv = uv_listen((uv_stream_t *)&l->h, 511, on_connection);
	if (rv != 0) {
		/* A clusterIP that is not local cannot be bound: expected. */
		if (quiet)
			log_debug("userspace proxy: %s:%d (%s): %s", addr, port, key, uv_strerror(rv));
		else
			log_warn("userspace proxy: cannot listen on %s:%d for %s: %s", addr, port, key,
				 uv_strerror(rv));
		uv_close((uv_handle_t *)&l->h, on_listener_closed);
		return;
	}
	log_info("userspace proxy: %s:%d -> %s", addr, port, key);
	l->next = u->listeners;
	u->listeners = l;
}

void proxy_us_update(struct proxy_us *u, const struct proxy_model *m)
{
	struct us_listener **pp;

	if (u->closing)
		return;
	targets_free(u);
	u->targets = calloc(m->n ? m->n : 1, sizeof *u->targets);
	if (u->targets == NULL)
		return;
	for (size_t i = 0; i < m->n; i++) {
		struct us_target *t = &u->targets[u->n_targets];
		const struct proxy_svc_port *sp = &m->v[i];
		if (strcmp(sp->proto, "tcp") != 0)
			continue;    /* TCP only */
		t->key = strdup(sp->key);
		t->eps = sp->n_eps ? malloc(sp->n_eps * sizeof *t->eps) : NULL;
		if (t->key == NULL || (sp->n_eps && t->eps == NULL)) {
			free(t->key);
			free(t->eps);
			continue;
		}
		if (sp->n_eps)
			memcpy(t->eps, sp->eps, sp->n_eps * sizeof *t->eps);
		t->n = sp->n_eps;
		u->n_targets++;
	}
	for (struct us_listener *l = u->listeners; l != NULL; l = l->next)
		l->seen = false;
	for (size_t i = 0; i < u->n_targets; i++) {
		const struct proxy_svc_port *sp = proxy_model_find(m, u->targets[i].key);
		if (sp->cluster_ip[0] != '\0')
			listener_want(u, sp->cluster_ip, sp->port, sp->key, true);
		for (size_t b = 0; sp->node_port != 0 && b < u->n_bind; b++)
			listener_want(u, u->bind[b], sp->node_port, sp->key, false);
	}
	for (pp = &u->listeners; *pp != NULL;) {
		struct us_listener *l = *pp;
		if (l->seen) {
			pp = &l->next;
			continue;
		}
		*pp = l->next;
		log_info("userspace proxy: closing %s:%d", l->addr, l->port);
		uv_close((uv_handle_t *)&l->h, on_listener_closed);
	}
}

/* ---- lifecycle ---- */

int proxy_us_new(uv_loop_t *loop, const char *cidrs, struct proxy_us **out)
{
	struct proxy_us *u = calloc(1, sizeof *u);
	char buf[1024], *save = NULL, *tok;
	bool all_hosts = cidrs != NULL && cidrs[0] != '\0';

	if (u == NULL)
		return -1;
	u->loop = loop;
	/* Single addresses are listened on one by one; any wider range means
	 * every address (the kernel cannot listen on a range). */
	snprintf(buf, sizeof buf, "%s", cidrs ? cidrs : "");
	for (tok = strtok_r(buf, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
		char *slash = strchr(tok, '/');
		if (slash == NULL || strcmp(slash, "/32") != 0) {
			all_hosts = false;
			break;
		}
	}
	if (!all_hosts) {
		u->bind = calloc(1, sizeof *u->bind);
		if (u->bind == NULL)
			goto err;
		snprintf(u->bind[0], sizeof u->bind[0], "0.0.0.0");
		u->n_bind = 1;
	} else {
		snprintf(buf, sizeof buf, "%s", cidrs);
		for (tok = strtok_r(buf, ", ", &save); tok != NULL;
		     tok = strtok_r(NULL, ", ", &save)) {
			char (*nb)[16] = realloc(u->bind, (u->n_bind + 1) * sizeof *nb);
			if (nb == NULL)
				goto err;
			u->bind = nb;
			*strchr(tok, '/') = '\0';
			snprintf(u->bind[u->n_bind++], sizeof u->bind[0], "%s", tok);
		}
	}
	*out = u;
	return 0;
err:
	free(u->bind);
	free(u);
	return -1;
}

static void us_maybe_free(struct proxy_us *u)
{
	if (!u->closing || u->open > 0)
		return;
	if (u->close_cb != NULL)
		u->close_cb(u->close_data);
	targets_free(u);
	free(u->bind);
	free(u);
}

void proxy_us_close(struct proxy_us *u, void (*cb)(void *data), void *data)
{
	u->closing = true;
	u->close_cb = cb;
	u->close_data = data;
	while (u->listeners != NULL) {
		struct us_listener *l = u->listeners;
		u->listeners = l->next;
		uv_close((uv_handle_t *)&l->h, on_listener_closed);
	}
	for (struct us_conn *c = u->conns; c != NULL; c = c->next)
		conn_close(c);
	us_maybe_free(u);
}
