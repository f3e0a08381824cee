/* podproxy.c — pods/log: finds the pod's node and its agent endpoint in the
 * store, then relays the agent's answer to the client.
 *
 * Happy path: read the pod, then its Node, from the store; connect to the
 * agent; send GET /containerLogs/<ns>/<pod>/<container>?<the client's
 * query> with the bearer token; parse the status line and headers; on 200,
 * start a streamed text/plain answer and copy the body (de-chunked) to the
 * client as it arrives, ending when the agent ends.
 *
 * Failure modes: a missing pod is 404; a pod without a node, or a
 * multi-container pod without ?container=, is 400 worded as the API server
 * words it; an unreachable agent is 502 (before streaming started); an
 * agent's error answer is passed on as a Status with its text; a client
 * that goes away closes the agent connection.
 *
 * pods/exec takes the same path with an upgrade, websocket (kubectl 1.30+)
 * or SPDY/3.1 (kubectl 1.29 and older): the client's upgrade headers
 * (Sec-WebSocket-Key and -Protocol, or every X-Stream-Protocol-Version
 * offered) go to the agent's /exec endpoint, which speaks both, and once
 * the agent has answered 101 the client gets its own 101 (with the
 * protocol the agent chose) and the two connections are spliced: bytes are
 * copied both ways unparsed (websocket frames from kubectl stay masked, as
 * the agent, a websocket server, expects; SPDY's compressed header blocks
 * stay in their one compression context per direction), until either side
 * ends. A side that reads slower than the other writes stops the reading
 * of the other. A request that is neither upgrade gets 400. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/b64.h"
#include "lib/log.h"
#include "lib/websocket.h"
#include "orchestrator/api/podproxy.h"
#include "orchestrator/api/status.h"

/* Queued bytes above which the other side of an exec relay stops being
 * read, and below which it is read again. */
#define RELAY_HIGH_WATER (1024 * 1024)
#define RELAY_LOW_WATER (256 * 1024)
#define RELAY_POLL_MS 20

static char *proxy_token;

struct proxy {
	struct http_req *req;
	struct kv *kv;
	char ns[256], name[256], node[256], container[256];
	char addr[64];
	int port;
	uv_tcp_t tcp;
	uv_connect_t connect;
	uv_write_t write;
	char *request;
	char head[8192];            /* status line and headers */
	size_t head_len;
	bool head_done;
	bool chunked;
	bool streaming;
	bool answered;
	bool client_gone;
	bool tcp_open;
	int status;
	/* de-chunking state */
	size_t chunk_left;
	char sizeline[32];
	size_t sizeline_len;
	int chunk_state;            /* 0 size line, 1 data, 2 CRLF after data, 3 done */
	char errbody[2048];
	size_t errlen;
	/* exec */
	bool exec;
	struct http_raw *raw;       /* the client's connection once upgraded */
	uv_timer_t poll;            /* while the client is slow to read */
	bool poll_open;
	bool agent_paused;
	int handles;                /* open handles; freed at zero */
	bool spdy;                  /* SPDY/3.1, not websocket */
	char key[64], protocols[256];
};

struct relay_write {
	uv_write_t w;
	struct proxy *p;
	char data[];
};

void podproxy_set_token(const char *token)
{
	free(proxy_token);
	proxy_token = token != NULL ? strdup(token) : NULL;
}

static void reply_status_obj(struct http_req *req, json_t *st)
{
	char *text = json_dumps(st, JSON_COMPACT);
	int code = api_status_code(st);
	http_reply(req, code, "application/json", text ? text : "{}", text ? strlen(text) : 2);
	free(text);
	json_decref(st);
}

static void proxy_free(struct proxy *p)
{
	free(p->request);
	free(p);
}

static void on_tcp_closed(uv_handle_t *h)
{
	struct proxy *p = h->data;

	if (--p->handles == 0)
		proxy_free(p);
}

/* Answers (if not yet) and releases everything. */
static void proxy_finish(struct proxy *p, json_t *st)
{
	if (!p->answered) {
		p->answered = true;
		if (p->streaming)
			http_stream_end(p->req);
		else if (st != NULL)
			reply_status_obj(p->req, st);
		else
			reply_status_obj(p->req, api_status_printf(502, "ServiceUnavailable",
						"the node agent closed the connection"));
		st = NULL;
	}
	json_decref(st);
	if (p->raw != NULL) {
		http_raw_close(p->raw);
		p->raw = NULL;
	}
	if (p->poll_open) {
		p->poll_open = false;
		p->poll.data = p;
		uv_close((uv_handle_t *)&p->poll, on_tcp_closed);
	}
	if (p->tcp_open) {
		p->tcp_open = false;
		uv_close((uv_handle_t *)&p->tcp, on_tcp_closed);
	} else if (p->handles == 0) {
		proxy_free(p);
	}
}

static void on_client_gone(struct http_req *req, void *data)
{
	struct proxy *p = data;
	(void)req;
	p->client_gone = true;
	/* Later replies are dropped by the server; stop reading the agent. */
	if (p->tcp_open)
		uv_read_stop((uv_stream_t *)&p->tcp);
	proxy_finish(p, NULL);
}

static void body_bytes(struct proxy *p, const char *b, size_t n)
{
	if (n == 0)
		return;
	if (p->status != 200) {
		size_t room = sizeof p->errbody - 1 - p->errlen;
		if (n > room)
			n = room;
		memcpy(p->errbody + p->errlen, b, n);
		p->errlen += n;
		return;
	}
	http_stream_write(p->req, b, n);
}

/* Feeds the body; returns true when it is complete (chunked end). */
static bool feed_body(struct proxy *p, const char *b, size_t n)
{
	if (!p->chunked) {
		body_bytes(p, b, n);
		return false;
	}
	while (n > 0) {
		if (p->chunk_state == 0) {
			char c = *b++;
			n--;
			if (c == '\n') {
				p->sizeline[p->sizeline_len] = '\0';
				p->chunk_left = strtoul(p->sizeline, NULL, 16);
				p->sizeline_len = 0;
				p->chunk_state = p->chunk_left == 0 ? 3 : 1;
				if (p->chunk_state == 3)
					return true;
			} else if (c != '\r' && p->sizeline_len < sizeof p->sizeline - 1) {
				p->sizeline[p->sizeline_len++] = c;
			}
		} else if (p->chunk_state == 1) {
			size_t take = n < p->chunk_left ? n : p->chunk_left;
			body_bytes(p, b, take);
			b += take;
			n -= take;
			p->chunk_left -= take;
			if (p->chunk_left == 0)
				p->chunk_state = 2;
		} else if (p->chunk_state == 2) {
			if (*b == '\n')
				p->chunk_state = 0;
			b++;
			n--;
		} else {
			return true;
		}
	}
	return false;
}

static void finish_error(struct proxy *p)
{
	char msg[2200];
	p->errbody[p->errlen] = '\0';
	snprintf(msg, sizeof msg, "%s", p->errbody[0] ? p->errbody : "the node agent refused");
	proxy_finish(p, api_status_printf(p->status == 404 ? 404 : p->status == 401 ? 502 : 400,
					  p->status == 404 ? "NotFound" : "BadRequest", "%s", msg));
}

static void relay_from_agent(struct proxy *p, const char *b, ssize_t n);
static void exec_upgrade(struct proxy *p, const char *rest, size_t n);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)h;
	buf->base = malloc(hint);
	buf->len = buf->base ? hint : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct proxy *p = s->data;
	const char *b = buf->base;
	size_t n = nread > 0 ? (size_t)nread : 0;
	if (p->raw != NULL) {
		relay_from_agent(p, b, nread);
		free(buf->base);
		return;
	}
	if (p->answered) {
		free(buf->base);
		return;
	}
	if (nread < 0) {
		free(buf->base);
		if (p->head_done && p->status != 200)
			finish_error(p);
		else
			proxy_finish(p, NULL);
		return;
	}
	if (!p->head_done) {
		size_t take = n < sizeof p->head - 1 - p->head_len ? n : sizeof p->head - 1 - p->head_len;
		char *end;
		memcpy(p->head + p->head_len, b, take);
		p->head_len += take;
		p->head[p->head_len] = '\0';
		end = strstr(p->head, "\r\n\r\n");
		if (end == NULL) {
			free(buf->base);
			if (p->head_len >= sizeof p->head - 1)
				proxy_finish(p, api_status_printf(502, "ServiceUnavailable",
							  "bad answer from the node agent"));
			return;
		}
		*end = '\0';
		p->head_done = true;
		if (sscanf(p->head, "HTTP/1.%*d %d", &p->status) != 1) {
			free(buf->base);
			proxy_finish(p, api_status_printf(502, "ServiceUnavailable",
							  "bad answer from the node agent"));
			return;
		}
		for (char *c = p->head; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		p->chunked = strstr(p->head, "transfer-encoding: chunked") != NULL;
		if (p->exec && p->status == 101) {
			size_t hl = (size_t)(end - p->head) + 4;
			size_t before = p->head_len - take;
			size_t off = hl > before ? hl - before : 0;

			exec_upgrade(p, b + off, off < n ? n - off : 0);
			free(buf->base);
			return;
		}
		if (p->exec && p->status == 200)
			p->status = 502;    /* the agent must upgrade or refuse */
		if (p->status == 200) {
			http_stream_begin(p->req, 200, "text/plain");
			p->streaming = true;
		}
		/* What came after the headers is body. */
		{
			size_t hl = (size_t)(end - p->head) + 4;
			size_t before = p->head_len - take;   /* head bytes from earlier reads */
			size_t off = hl > before ? hl - before : 0;
			b += off;
			n = off < n ? n - off : 0;
		}
	}
	if (feed_body(p, b, n)) {
		free(buf->base);
		if (p->status != 200)
			finish_error(p);
		else
			proxy_finish(p, NULL);
		return;
	}
	free(buf->base);
}

/* ---- the exec relay ---- */

static void relay_pause_agent(struct proxy *p, bool pause);

static void on_relay_poll(uv_timer_t *t)
{
	struct proxy *p = t->data;

	if (p->raw == NULL || http_raw_pending(p->raw) < RELAY_LOW_WATER)
		relay_pause_agent(p, false);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* The client is slow: stop reading the agent until its queue drains. */
static void relay_pause_agent(struct proxy *p, bool pause)
{
	if (p->agent_paused == pause || !p->tcp_open)
		return;
	p->agent_paused = pause;
	if (pause) {
		uv_read_stop((uv_stream_t *)&p->tcp);
		uv_timer_start(&p->poll, on_relay_poll, RELAY_POLL_MS, RELAY_POLL_MS);
	} else {
		uv_timer_stop(&p->poll);
		if (uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read) != 0)
			proxy_finish(p, NULL);
	}
}

static void relay_from_agent(struct proxy *p, const char *b, ssize_t n)
{
	if (n < 0 || http_raw_write(p->raw, b, (size_t)n) != 0) {
		proxy_finish(p, NULL);
		return;
	}
	if (http_raw_pending(p->raw) > RELAY_HIGH_WATER)
		relay_pause_agent(p, true);
}

static void on_relay_written(uv_write_t *w, int status)
{
	struct relay_write *rw = (struct relay_write *)w;
	struct proxy *p = rw->p;

	free(rw);
	if (status != 0) {
		if (status != UV_ECANCELED && p->raw != NULL)
			proxy_finish(p, NULL);
		return;
	}
	if (p->raw != NULL && p->tcp_open &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&p->tcp) < RELAY_LOW_WATER)
		http_raw_pause(p->raw, false);
}

static void on_client_bytes(struct http_raw *raw, const char *bytes, ssize_t len, void *data)
{
	struct proxy *p = data;
	struct relay_write *rw;
	uv_buf_t b;

	(void)raw;
	if (len < 0 || !p->tcp_open) {
		proxy_finish(p, NULL);
		return;
	}
	rw = malloc(sizeof(*rw) + (size_t)len);
	if (rw == NULL) {
		proxy_finish(p, NULL);
		return;
	}
	rw->p = p;
	memcpy(rw->data, bytes, (size_t)len);
	b = uv_buf_init(rw->data, (unsigned)len);
	if (uv_write(&rw->w, (uv_stream_t *)&p->tcp, &b, 1, on_relay_written) != 0) {
		free(rw);
		proxy_finish(p, NULL);
		return;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&p->tcp) > RELAY_HIGH_WATER)
		http_raw_pause(p->raw, true);
}

/* The agent said 101: answer the client likewise and splice. rest is what
 * the agent sent after its headers (frames already). */
static void exec_upgrade(struct proxy *p, const char *rest, size_t n)
{
	const char *name = p->spdy ? "\r\nx-stream-protocol-version:" :
				     "\r\nsec-websocket-protocol:";
	char accept[WS_ACCEPT_SIZE], proto[128] = "", headers[512];
	const char *h = strstr(p->head, name);

	p->answered = true;
	if (h != NULL) {
		h += strlen(name);
		h += strspn(h, " \t");
		snprintf(proto, sizeof proto, "%.*s", (int)strcspn(h, " \t\r\n"), h);
	}
	if (p->spdy) {
		snprintf(headers, sizeof headers,
			 "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n%s%s%s",
			 proto[0] ? "X-Stream-Protocol-Version: " : "", proto,
			 proto[0] ? "\r\n" : "");
	} else {
		if (ws_accept_key(p->key, accept) != 0)
			accept[0] = '\0';  /* checked before the agent was asked */
		snprintf(headers, sizeof headers,
			 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
			 "%s%s%s", accept, proto[0] ? "Sec-WebSocket-Protocol: " : "", proto,
			 proto[0] ? "\r\n" : "");
	}
	if (http_upgrade(p->req, headers, on_client_bytes, p, &p->raw) != 0) {
		p->raw = NULL;
		proxy_finish(p, NULL);
		return;
	}
	uv_timer_init(uv_default_loop(), &p->poll);
	p->poll.data = p;
	p->poll_open = true;
	p->handles++;
	if (n > 0)
		relay_from_agent(p, rest, (ssize_t)n);
}

static void on_written(uv_write_t *w, int status)
{
	struct proxy *p = w->data;
	if (status != 0 && !p->answered)
		proxy_finish(p, api_status_printf(502, "ServiceUnavailable",
						  "cannot reach the node agent of %s: %s", p->node,
						  uv_strerror(status)));
}

static void on_connect(uv_connect_t *c, int status)
{
	struct proxy *p = c->data;
	uv_buf_t b;
	if (p->answered)
		return;
	if (status != 0) {
		proxy_finish(p, api_status_printf(502, "ServiceUnavailable",
						  "cannot reach the node agent of %s at %s:%d: %s",
						  p->node, p->addr, p->port, uv_strerror(status)));
		return;
	}
	b = uv_buf_init(p->request, (unsigned)strlen(p->request));
	p->write.data = p;
	if (uv_write(&p->write, (uv_stream_t *)&p->tcp, &b, 1, on_written) != 0 ||
	    uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read) != 0)
		proxy_finish(p, api_status_printf(502, "ServiceUnavailable",
						  "cannot reach the node agent of %s", p->node));
}

/* Copies the client's query parameters the agent understands. */
static void build_request(struct proxy *p)
{
	static const char *const keep[] = {"follow", "tailLines", "sinceSeconds", "sinceTime",
					   "timestamps", "previous", "limitBytes"};
	char q[2048] = "";
	size_t n = 0;
	size_t len;
	for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
		const char *v = http_req_query(p->req, keep[i]);
		if (v == NULL || n >= sizeof q)
			continue;
		/* The values are numbers, booleans or RFC 3339 times: only ':'
		 * and '+' need escaping. */
		n += (size_t)snprintf(q + n, sizeof q - n, "%s%s=", n ? "&" : "?", keep[i]);
		for (const char *c = v; *c && n + 4 < sizeof q; c++)
			n += (size_t)snprintf(q + n, sizeof q - n,
					      (*c == ':' || *c == '+' || *c == '&' || *c == ' ') ?
					      "%%%02X" : "%c", (unsigned char)*c);
	}
	if (p->exec) {
		/* The upgrade the client asked for, with what it offered. */
		char upgrade[sizeof p->key + sizeof p->protocols + 160];

		if (p->spdy)
			snprintf(upgrade, sizeof upgrade,
				 "Upgrade: SPDY/3.1\r\nConnection: Upgrade\r\n"
				 "X-Stream-Protocol-Version: %s\r\n", p->protocols);
		else
			snprintf(upgrade, sizeof upgrade,
				 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
				 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n"
				 "Sec-WebSocket-Protocol: %s\r\n", p->key, p->protocols);
		/* The query goes as it came: several command= parameters, each
		 * already escaped by the client (and the parser admits no blanks
		 * or line breaks in it). */
		len = strlen(p->ns) + strlen(p->name) + strlen(p->container) +
		      strlen(p->req->query) + strlen(upgrade) +
		      (proxy_token ? strlen(proxy_token) : 0) + 256;
		p->request = malloc(len);
		if (p->request == NULL)
			return;
		snprintf(p->request, len,
			 "GET /exec/%s/%s/%s?%s HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s%s\r\n",
			 p->ns, p->name, p->container, p->req->query, p->addr, p->port,
			 proxy_token ? "Authorization: Bearer " : "", proxy_token ? proxy_token : "",
			 proxy_token ? "\r\n" : "", upgrade);
		return;
	}
	len = strlen(p->ns) + strlen(p->name) + strlen(p->container) + strlen(q) +
	      (proxy_token ? strlen(proxy_token) : 0) + 256;
	p->request = malloc(len);
	if (p->request == NULL)
		return;
	snprintf(p->request, len,
		 "GET /containerLogs/%s/%s/%s%s HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s"
		 "Connection: close\r\n\r\n",
		 p->ns, p->name, p->container, q, p->addr, p->port,
		 proxy_token ? "Authorization: Bearer " : "", proxy_token ? proxy_token : "",
		 proxy_token ? "\r\n" : "");
}

static json_t *decode_kv(json_t *answer)
{
	json_t *kvo = json_array_get(json_object_get(answer, "kvs"), 0);
	const char *v = json_string_value(json_object_get(kvo, "value"));
	size_t n;
	uint8_t *buf;
	long m;
	json_t *obj;
	if (v == NULL)
		return NULL;
	n = strlen(v);
	buf = malloc(b64_decoded_max(n) + 1);
	if (buf == NULL)
		return NULL;
	m = b64_decode(v, n, buf);
	obj = m >= 0 ? json_loadb((const char *)buf, (size_t)m, 0, NULL) : NULL;
	free(buf);
	return obj;
}

static void proxy_start(struct proxy *p, struct http_req *req, struct kv *kv, const char *ns,
			const char *name);

static int kv_get(struct kv *kv, const char *key, kv_cb cb, void *data)
{
	size_t n = strlen(key);
	char *enc = malloc(b64_encoded_size(n) + 1);
	json_t *req;
	int rv;
	if (enc == NULL)
		return -1;
	enc[b64_encode((const uint8_t *)key, n, enc)] = '\0';
	/* A local (serializable) read: the pod and its node are long-lived,
	 * and a log request needs no round of the consensus protocol. */
	req = json_pack("{s:s,s:b}", "key", enc, "serializable", 1);
	free(enc);
	rv = kv_call(kv, KV_RANGE, req, cb, data);
	json_decref(req);
	return rv;
}

static void on_node(void *data, json_t *answer, json_t *err)
{
	struct proxy *p = data;
	json_t *node, *addrs, *a;
	struct sockaddr_in sa;
	size_t i;
	node = err == NULL ? decode_kv(answer) : NULL;
	if (node == NULL) {
		p->answered = true;
		reply_status_obj(p->req, api_status_printf(404, "NotFound", "nodes \"%s\" not found",
							   p->node));
		proxy_free(p);
		return;
	}
	addrs = json_object_get(json_object_get(node, "status"), "addresses");
	snprintf(p->addr, sizeof p->addr, "127.0.0.1");
	json_array_foreach(addrs, i, a) {
		const char *t = json_string_value(json_object_get(a, "type"));
		const char *v = json_string_value(json_object_get(a, "address"));
		if (t != NULL && v != NULL && strcmp(t, "InternalIP") == 0) {
			snprintf(p->addr, sizeof p->addr, "%s", v);
			break;
		}
	}
	p->port = (int)json_integer_value(json_object_get(json_object_get(json_object_get(
		json_object_get(node, "status"), "daemonEndpoints"), "kubeletEndpoint"), "Port"));
	json_decref(node);
	build_request(p);
	if (p->port <= 0 || p->request == NULL || uv_ip4_addr(p->addr, p->port, &sa) != 0) {
		p->answered = true;
		reply_status_obj(p->req, api_status_printf(502, "ServiceUnavailable",
			"node %s has no reachable agent endpoint", p->node));
		proxy_free(p);
		return;
	}
	uv_tcp_init(uv_default_loop(), &p->tcp);
	p->tcp.data = p;
	p->tcp_open = true;
	p->handles++;
	p->connect.data = p;
	http_req_on_close(p->req, on_client_gone, p);
	if (uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&sa, on_connect) != 0)
		proxy_finish(p, api_status_printf(502, "ServiceUnavailable",
						  "cannot reach the node agent of %s", p->node));
}

static void on_pod(void *data, json_t *answer, json_t *err)
{
	struct proxy *p = data;
	json_t *pod = err == NULL ? decode_kv(answer) : NULL;
	json_t *ctrs;
	const char *node, *want = http_req_query(p->req, "container");
	char key[400];
	if (pod == NULL) {
		reply_status_obj(p->req, api_status_printf(404, "NotFound", "pods \"%s\" not found",
							   p->name));
		proxy_free(p);
		return;
	}
	node = json_string_value(json_object_get(json_object_get(pod, "spec"), "nodeName"));
	ctrs = json_object_get(json_object_get(pod, "spec"), "containers");
	if (node == NULL || *node == '\0') {
		reply_status_obj(p->req, api_status_bad_request(
			"pod does not have a host assigned"));
		goto out;
	}
	snprintf(p->node, sizeof p->node, "%s", node);
	if (want != NULL && *want != '\0') {
		size_t i;
		json_t *c;
		bool found = false;
		json_array_foreach(ctrs, i, c) {
			const char *n = json_string_value(json_object_get(c, "name"));
			if (n != NULL && strcmp(n, want) == 0)
				found = true;
		}
		if (!found) {
			reply_status_obj(p->req, api_status_printf(400, "BadRequest",
				"container %s is not valid for pod %s", want, p->name));
			goto out;
		}
		snprintf(p->container, sizeof p->container, "%s", want);
	} else if (json_array_size(ctrs) == 1) {
		snprintf(p->container, sizeof p->container, "%s",
			 json_string_value(json_object_get(json_array_get(ctrs, 0), "name")) ?: "");
	} else {
		reply_status_obj(p->req, api_status_printf(400, "BadRequest",
			"a container name must be specified for pod %s", p->name));
		goto out;
	}
	json_decref(pod);
	snprintf(key, sizeof key, "/registry/nodes/%s", p->node);
	if (kv_get(p->kv, key, on_node, p) != 0) {
		reply_status_obj(p->req, api_status_printf(503, "ServiceUnavailable",
							   "the store is unavailable"));
		proxy_free(p);
	}
	return;
out:
	json_decref(pod);
	proxy_free(p);
}

static struct proxy *proxy_new(struct http_req *req, struct kv *kv, const char *ns,
			       const char *name);

void podproxy_log(struct http_req *req, struct kv *kv, const char *ns, const char *name)
{
	proxy_new(req, kv, ns, name);
}

void podproxy_exec(struct http_req *req, struct kv *kv, const char *ns, const char *name)
{
	const char *up = http_req_header(req, "Upgrade");
	const char *key = http_req_header(req, "Sec-WebSocket-Key");
	const char *protos = http_req_header(req, "Sec-WebSocket-Protocol");
	char accept[WS_ACCEPT_SIZE], offered[256];
	bool spdy = up != NULL && strcasecmp(up, "SPDY/3.1") == 0;
	struct proxy *p;

	if (spdy) {
		/* One header line per protocol offered; the agent chooses. */
		protos = http_req_header_join(req, "X-Stream-Protocol-Version", offered,
					      sizeof offered);
		if (protos == NULL) {
			reply_status_obj(req, api_status_bad_request(
				"unable to upgrade: missing X-Stream-Protocol-Version"));
			return;
		}
	} else if (up == NULL || strcasecmp(up, "websocket") != 0 || key == NULL ||
		   ws_accept_key(key, accept) != 0 || protos == NULL) {
		reply_status_obj(req, api_status_printf(400, "BadRequest",
			"pods/exec needs a connection upgrade: websocket (v5.channel.k8s.io) "
			"or SPDY/3.1 (X-Stream-Protocol-Version v4.channel.k8s.io)"));
		return;
	}
	p = calloc(1, sizeof *p);
	if (p == NULL) {
		http_reply(req, 500, "text/plain", "out of memory", 13);
		return;
	}
	p->exec = true;
	p->spdy = spdy;
	snprintf(p->key, sizeof p->key, "%s", spdy ? "" : key);
	/* Copied into the agent request: printable characters only. */
	for (size_t i = 0, o = 0; protos[i] != '\0' && o + 1 < sizeof p->protocols; i++)
		if ((unsigned char)protos[i] >= 0x20 && protos[i] != 0x7f)
			p->protocols[o++] = protos[i];
	proxy_start(p, req, kv, ns, name);
}

static struct proxy *proxy_new(struct http_req *req, struct kv *kv, const char *ns,
			       const char *name)
{
	struct proxy *p = calloc(1, sizeof *p);
	if (p == NULL) {
		http_reply(req, 500, "text/plain", "out of memory", 13);
		return NULL;
	}
	proxy_start(p, req, kv, ns, name);
	return p;
}

static void proxy_start(struct proxy *p, struct http_req *req, struct kv *kv, const char *ns,
			const char *name)
{
	char key[600];

	p->req = req;
	p->kv = kv;
	snprintf(p->ns, sizeof p->ns, "%s", ns);
	snprintf(p->name, sizeof p->name, "%s", name);
	snprintf(key, sizeof key, "/registry/pods/%s/%s", ns, name);
	if (kv_get(kv, key, on_pod, p) != 0) {
		reply_status_obj(req, api_status_printf(503, "ServiceUnavailable",
							"the store is unavailable"));
		proxy_free(p);
	}
}
