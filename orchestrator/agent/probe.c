/* probe.c — exec, httpGet and tcpSocket probes on libuv, and the periodic
 * worker that applies the kubelet's thresholds.
 *
 * Happy path: an attempt starts a timer of timeout_s and either spawns the
 * command in a process group of its own (exec: success on exit 0) or connects
 * to host:port (tcpSocket: success on connect; httpGet: sends one GET and
 * reads the status line, 200-399 is success). The first outcome wins and the
 * callback runs once; the attempt's handles are then closed and freed.
 * Failure modes: spawn errors, refused or reset connections, a malformed
 * answer and the timeout are all a failed attempt, never an error return;
 * on timeout an exec probe's whole process group is killed so a hanging
 * probe command leaves nothing behind. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "orchestrator/agent/network.h"
#include "orchestrator/agent/probe.h"

/* ---- specs ---- */

static char **strv_dup(char *const *v)
{
	size_t n = 0;
	char **out;
	if (v == NULL)
		return NULL;
	while (v[n] != NULL)
		n++;
	out = calloc(n + 1, sizeof *out);
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		out[i] = strdup(v[i]);
		if (out[i] == NULL) {
			for (size_t j = 0; j < i; j++)
				free(out[j]);
			free(out);
			return NULL;
		}
	}
	return out;
}

static void strv_free(char **v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

void probe_spec_free(struct probe_spec *s)
{
	strv_free(s->argv);
	strv_free(s->env);
	strv_free(s->headers);
	free(s->cwd);
	free(s->netns);
	free(s->host);
	free(s->path);
	memset(s, 0, sizeof *s);
}

int probe_spec_copy(const struct probe_spec *src, struct probe_spec *dst)
{
	*dst = *src;
	dst->argv = strv_dup(src->argv);
	dst->env = strv_dup(src->env);
	dst->headers = strv_dup(src->headers);
	dst->cwd = src->cwd ? strdup(src->cwd) : NULL;
	dst->netns = src->netns ? strdup(src->netns) : NULL;
	dst->host = src->host ? strdup(src->host) : NULL;
	dst->path = src->path ? strdup(src->path) : NULL;
	if ((src->argv && !dst->argv) || (src->env && !dst->env) ||
	    (src->headers && !dst->headers) || (src->cwd && !dst->cwd) ||
	    (src->netns && !dst->netns) ||
	    (src->host && !dst->host) || (src->path && !dst->path)) {
		probe_spec_free(dst);
		return -1;
	}
	return 0;
}

static unsigned uint_field(json_t *o, const char *name, unsigned def)
{
	json_t *v = json_object_get(o, name);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return def;
	return (unsigned)json_integer_value(v);
}

/* A port given as a number or as the name of one of the container's ports. */
static int resolve_port(json_t *port, json_t *container, char *errmsg)
{
	if (json_is_integer(port) && json_integer_value(port) > 0 &&
	    json_integer_value(port) < 65536)
		return (int)json_integer_value(port);
	if (json_is_string(port)) {
		const char *want = json_string_value(port);
		size_t i;
		json_t *p;
		char *end;
		long v = strtol(want, &end, 10);
		if (*want != '\0' && *end == '\0' && v > 0 && v < 65536)
			return (int)v;
		json_array_foreach(json_object_get(container, "ports"), i, p) {
			const char *name = json_string_value(json_object_get(p, "name"));
			json_t *cp = json_object_get(p, "containerPort");
			if (name != NULL && strcmp(name, want) == 0 && json_is_integer(cp))
				return (int)json_integer_value(cp);
		}
		cap_errmsg_printf(errmsg, "unknown port name \"%s\"", want);
		return -1;
	}
	cap_errmsg_printf(errmsg, "probe has no valid port");
	return -1;
}

int probe_spec_from_json(json_t *probe, json_t *container, char *const *env,
			 const char *cwd, struct probe_spec *s, char *errmsg)
{
	json_t *ex = json_object_get(probe, "exec");
	json_t *hg = json_object_get(probe, "httpGet");
	json_t *ts = json_object_get(probe, "tcpSocket");
	memset(s, 0, sizeof *s);
	s->initial_delay_s = uint_field(probe, "initialDelaySeconds", 0);
	s->period_s = uint_field(probe, "periodSeconds", 10);
	s->timeout_s = uint_field(probe, "timeoutSeconds", 1);
	s->success_threshold = uint_field(probe, "successThreshold", 1);
	s->failure_threshold = uint_field(probe, "failureThreshold", 3);
	if (s->period_s == 0)
		s->period_s = 10;
	if (s->timeout_s == 0)
		s->timeout_s = 1;
	if (s->success_threshold == 0)
		s->success_threshold = 1;
	if (s->failure_threshold == 0)
		s->failure_threshold = 3;
	if (json_is_object(ex)) {
		json_t *cmd = json_object_get(ex, "command");
		size_t i;
		json_t *a;
		if (json_array_size(cmd) == 0) {
			cap_errmsg_printf(errmsg, "exec probe without a command");
			return -1;
		}
		s->kind = PROBE_EXEC;
		s->argv = calloc(json_array_size(cmd) + 1, sizeof *s->argv);
		if (s->argv == NULL)
			goto err_nomem;
		json_array_foreach(cmd, i, a) {
			s->argv[i] = strdup(json_is_string(a) ? json_string_value(a) : "");
			if (s->argv[i] == NULL)
				goto err_nomem;
		}
		if (env != NULL && (s->env = strv_dup(env)) == NULL)
			goto err_nomem;
		if (cwd != NULL && (s->cwd = strdup(cwd)) == NULL)
			goto err_nomem;
		return 0;
	}
	if (json_is_object(hg) || json_is_object(ts)) {
		json_t *o = json_is_object(hg) ? hg : ts;
		const char *host = json_string_value(json_object_get(o, "host"));
		const char *scheme = json_string_value(json_object_get(o, "scheme"));
		s->kind = json_is_object(hg) ? PROBE_HTTP : PROBE_TCP;
		s->port = resolve_port(json_object_get(o, "port"), container, errmsg);
		if (s->port < 0)
			return -1;
		if (scheme != NULL && strcmp(scheme, "HTTP") != 0) {
			cap_errmsg_printf(errmsg, "probe scheme %s is not supported", scheme);
			return -1;
		}
		s->host = strdup(host != NULL && *host != '\0' ? host : "127.0.0.1");
		if (s->host == NULL)
			goto err_nomem;
		if (s->kind == PROBE_HTTP) {
			const char *path = json_string_value(json_object_get(hg, "path"));
			json_t *hdrs = json_object_get(hg, "httpHeaders");
			size_t i;
			json_t *h;
			s->path = strdup(path != NULL && *path != '\0' ? path : "/");
			if (s->path == NULL)
				goto err_nomem;
			if (json_array_size(hdrs) > 0) {
				s->headers = calloc(json_array_size(hdrs) + 1, sizeof *s->headers);
				if (s->headers == NULL)
					goto err_nomem;
				json_array_foreach(hdrs, i, h) {
					const char *n = json_string_value(json_object_get(h, "name"));
					const char *v = json_string_value(json_object_get(h, "value"));
					size_t len = strlen(n ?: "") + strlen(v ?: "") + 3;
					s->headers[i] = malloc(len);
					if (s->headers[i] == NULL)
						goto err_nomem;
					snprintf(s->headers[i], len, "%s: %s", n ?: "", v ?: "");
				}
			}
		}
		return 0;
	}
	cap_errmsg_printf(errmsg, "probe has no exec, httpGet or tcpSocket handler");
	return -1;

err_nomem:
	probe_spec_free(s);
	cap_errmsg_printf(errmsg, "out of memory");
	return -1;
}

/* ---- one attempt ---- */

struct attempt {
	const struct probe_spec *s;
	probe_result_cb cb;
	void *data;
	uv_timer_t timer;
	uv_tcp_t tcp;
	uv_connect_t connect;
	uv_write_t write;
	uv_process_t proc;
	bool proc_running;
	int open_handles;        /* freed when the last close callback ran */
	bool done;
	char req[2048];
	char buf[512];
	size_t len;
};

static void attempt_handle_closed(uv_handle_t *h)
{
	struct attempt *a = h->data;
	if (--a->open_handles == 0)
		free(a);
}

static void attempt_close(struct attempt *a, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, attempt_handle_closed);
}

/* The first outcome wins; the handles are closed here (a running exec probe
 * is killed first and its handle closed from its exit callback). */
static void attempt_finish(struct attempt *a, enum probe_result r, const char *msg)
{
	if (a->done)
		return;
	a->done = true;
	uv_timer_stop(&a->timer);
	attempt_close(a, (uv_handle_t *)&a->timer);
	if (a->s->kind == PROBE_EXEC) {
		if (a->proc_running)
			kill(-a->proc.pid, SIGKILL);
	} else if (a->tcp.data == a) {
		attempt_close(a, (uv_handle_t *)&a->tcp);
	}
	a->cb(a->data, r, msg);
}

static void on_attempt_timeout(uv_timer_t *t)
{
	struct attempt *a = t->data;
	char msg[300];
	if (a->s->kind == PROBE_EXEC)
		snprintf(msg, sizeof msg, "command \"%s\" timed out after %us", a->s->argv[0],
			 a->s->timeout_s);
	else
		snprintf(msg, sizeof msg, "%s http://%s:%d%s: context deadline exceeded",
			 a->s->kind == PROBE_HTTP ? "Get" : "dial tcp", a->s->host, a->s->port,
			 a->s->kind == PROBE_HTTP ? a->s->path : "");
	attempt_finish(a, PROBE_FAILURE, msg);
}

static void on_exec_exit(uv_process_t *p, int64_t status, int term_signal)
{
	struct attempt *a = p->data;
	char msg[300];
	a->proc_running = false;
	/* Whatever the probe command left in its group goes with it. */
	kill(-p->pid, SIGKILL);
	if (term_signal != 0)
		snprintf(msg, sizeof msg, "command \"%s\" killed by signal %d", a->s->argv[0],
			 term_signal);
	else
		snprintf(msg, sizeof msg, "command \"%s\" exited with %lld", a->s->argv[0],
			 (long long)status);
	attempt_finish(a, status == 0 && term_signal == 0 ? PROBE_SUCCESS : PROBE_FAILURE, msg);
	attempt_close(a, (uv_handle_t *)p);
}

static int start_exec(uv_loop_t *loop, struct attempt *a)
{
	uv_stdio_container_t stdio[3] = {
		{.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_IGNORE}};
	uv_process_options_t o = {
		.exit_cb = on_exec_exit,
		.file = a->s->argv[0],
		.args = a->s->argv,
		.env = a->s->env,
		.cwd = a->s->cwd,
		.flags = UV_PROCESS_DETACHED,   /* setsid: the timeout kills the group */
		.stdio_count = 3,
		.stdio = stdio,
	};
	char msg[300];
	int rv;
	a->proc.data = a;
	a->open_handles++;
	{
		/* An exec probe runs in the pod's network, as its container does. */
		int saved = a->s->netns != NULL ? network_enter(a->s->netns) : -1;
		rv = a->s->netns != NULL && saved < 0 ? UV_EPERM : uv_spawn(loop, &a->proc, &o);
		if (saved >= 0)
			network_leave(saved);
	}
	if (rv != 0) {
		snprintf(msg, sizeof msg, "exec \"%s\": %s", a->s->argv[0], uv_strerror(rv));
		attempt_finish(a, PROBE_FAILURE, msg);
		attempt_close(a, (uv_handle_t *)&a->proc);
		return 0;
	}
	a->proc_running = true;
	return 0;
}

static void on_http_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct attempt *a = h->data;
	(void)hint;
	*buf = uv_buf_init(a->buf + a->len, (unsigned)(sizeof a->buf - 1 - a->len));
}

static void on_http_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct attempt *a = st->data;
	char msg[300];
	char *eol;
	int code;
	(void)buf;
	if (a->done)
		return;
	if (n < 0) {
		snprintf(msg, sizeof msg, "Get \"http://%s:%d%s\": %s", a->s->host, a->s->port,
			 a->s->path, n == UV_EOF ? "EOF" : uv_strerror((int)n));
		attempt_finish(a, PROBE_FAILURE, msg);
		return;
	}
	a->len += (size_t)n;
	a->buf[a->len] = '\0';
	eol = strstr(a->buf, "\r\n");
	if (eol == NULL && a->len < sizeof a->buf - 1)
		return;
	if (sscanf(a->buf, "HTTP/1.%*d %d", &code) != 1) {
		snprintf(msg, sizeof msg, "Get \"http://%s:%d%s\": malformed HTTP response",
			 a->s->host, a->s->port, a->s->path);
		attempt_finish(a, PROBE_FAILURE, msg);
		return;
	}
	if (code >= 200 && code < 400) {
		snprintf(msg, sizeof msg, "HTTP probe succeeded with statuscode: %d", code);
		attempt_finish(a, PROBE_SUCCESS, msg);
	} else {
		snprintf(msg, sizeof msg, "HTTP probe failed with statuscode: %d", code);
		attempt_finish(a, PROBE_FAILURE, msg);
	}
}

static void on_http_written(uv_write_t *w, int status)
{
	struct attempt *a = w->data;
	char msg[300];
	if (a->done)
		return;
	if (status != 0) {
		snprintf(msg, sizeof msg, "Get \"http://%s:%d%s\": %s", a->s->host, a->s->port,
			 a->s->path, uv_strerror(status));
		attempt_finish(a, PROBE_FAILURE, msg);
	}
}

static void on_connect(uv_connect_t *c, int status)
{
	struct attempt *a = c->data;
	char msg[300];
	uv_buf_t b;
	size_t n;
	if (a->done)
		return;
	if (status != 0) {
		if (a->s->kind == PROBE_HTTP)
			snprintf(msg, sizeof msg, "Get \"http://%s:%d%s\": dial tcp %s:%d: connect: %s",
				 a->s->host, a->s->port, a->s->path, a->s->host, a->s->port,
				 status == UV_ECONNREFUSED ? "connection refused" : uv_strerror(status));
		else
			snprintf(msg, sizeof msg, "dial tcp %s:%d: connect: %s", a->s->host,
				 a->s->port,
				 status == UV_ECONNREFUSED ? "connection refused" : uv_strerror(status));
		attempt_finish(a, PROBE_FAILURE, msg);
		return;
	}
	if (a->s->kind == PROBE_TCP) {
		attempt_finish(a, PROBE_SUCCESS, "tcp connect succeeded");
		return;
	}
	n = (size_t)snprintf(a->req, sizeof a->req,
			     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: kube-probe/1.31\r\n"
			     "Accept: */*\r\nConnection: close\r\n",
			     a->s->path, a->s->host, a->s->port);
	for (size_t i = 0; a->s->headers != NULL && a->s->headers[i] != NULL; i++)
		if (n < sizeof a->req)
			n += (size_t)snprintf(a->req + n, sizeof a->req - n, "%s\r\n",
					      a->s->headers[i]);
	if (n < sizeof a->req)
		n += (size_t)snprintf(a->req + n, sizeof a->req - n, "\r\n");
	if (n >= sizeof a->req) {
		attempt_finish(a, PROBE_FAILURE, "HTTP probe request too large");
		return;
	}
	b = uv_buf_init(a->req, (unsigned)n);
	a->write.data = a;
	if (uv_write(&a->write, (uv_stream_t *)&a->tcp, &b, 1, on_http_written) != 0 ||
	    uv_read_start((uv_stream_t *)&a->tcp, on_http_alloc, on_http_read) != 0)
		attempt_finish(a, PROBE_FAILURE, "HTTP probe: cannot send the request");
}

static int start_connect(uv_loop_t *loop, struct attempt *a)
{
	struct sockaddr_in sa;
	char msg[300];
	int rv;
	if (uv_tcp_init(loop, &a->tcp) != 0)
		return -1;
	a->tcp.data = a;
	a->open_handles++;
	a->connect.data = a;
	rv = uv_ip4_addr(a->s->host, a->s->port, &sa);
	if (rv == 0)
		rv = uv_tcp_connect(&a->connect, &a->tcp, (const struct sockaddr *)&sa, on_connect);
	if (rv != 0) {
		snprintf(msg, sizeof msg, "dial tcp %s:%d: %s", a->s->host, a->s->port,
			 uv_strerror(rv));
		attempt_finish(a, PROBE_FAILURE, msg);
	}
	return 0;
}

int probe_once(uv_loop_t *loop, const struct probe_spec *s, probe_result_cb cb, void *data)
{
	struct attempt *a = calloc(1, sizeof *a);
	if (a == NULL)
		return -1;
	a->s = s;
	a->cb = cb;
	a->data = data;
	if (uv_timer_init(loop, &a->timer) != 0) {
		free(a);
		return -1;
	}
	a->timer.data = a;
	a->open_handles = 1;
	uv_timer_start(&a->timer, on_attempt_timeout, (uint64_t)s->timeout_s * 1000, 0);
	/* From here on the callback runs exactly once, failure or not. */
	if (s->kind == PROBE_EXEC)
		start_exec(loop, a);
	else if (start_connect(loop, a) != 0)
		attempt_finish(a, PROBE_FAILURE, "cannot create a socket");
	return 0;
}

/* ---- thresholds ---- */

bool probe_counter_add(struct probe_counter *c, const struct probe_spec *s, enum probe_result r)
{
	bool was = c->healthy;
	if (r == PROBE_SUCCESS) {
		c->failures = 0;
		if (c->successes < s->success_threshold)
			c->successes++;
		if (c->successes >= s->success_threshold)
			c->healthy = true;
	} else {
		c->successes = 0;
		if (c->failures < s->failure_threshold)
			c->failures++;
		if (c->failures >= s->failure_threshold)
			c->healthy = false;
	}
	return was != c->healthy;
}

/* ---- the periodic worker ---- */

struct probe_worker {
	uv_loop_t *loop;
	struct probe_spec spec;
	struct probe_counter counter;
	probe_worker_cb cb;
	void *data;
	uv_timer_t timer;
	bool in_flight;          /* an attempt is running: it holds a pointer to us */
	bool stopped;
	bool timer_closed;
};

static void worker_free_if_idle(struct probe_worker *w)
{
	if (w->stopped && !w->in_flight && w->timer_closed) {
		probe_spec_free(&w->spec);
		free(w);
	}
}

static void on_worker_timer_closed(uv_handle_t *h)
{
	struct probe_worker *w = h->data;
	w->timer_closed = true;
	worker_free_if_idle(w);
}

static void on_worker_result(void *data, enum probe_result r, const char *msg)
{
	struct probe_worker *w = data;
	bool changed;
	w->in_flight = false;
	if (w->stopped) {
		worker_free_if_idle(w);
		return;
	}
	changed = probe_counter_add(&w->counter, &w->spec, r);
	w->cb(w->data, r, w->counter.healthy, changed, msg);
}

static void on_worker_tick(uv_timer_t *t)
{
	struct probe_worker *w = t->data;
	/* A slow attempt is never doubled up: the period counts from the start
	 * of the previous attempt, and a still-running one skips a tick. */
	if (w->in_flight)
		return;
	if (probe_once(w->loop, &w->spec, on_worker_result, w) == 0)
		w->in_flight = true;
}

int probe_worker_start(uv_loop_t *loop, const struct probe_spec *spec, bool initially_healthy,
		       probe_worker_cb cb, void *data, struct probe_worker **out)
{
	struct probe_worker *w = calloc(1, sizeof *w);
	if (w == NULL)
		return -1;
	if (probe_spec_copy(spec, &w->spec) != 0) {
		free(w);
		return -1;
	}
	w->loop = loop;
	w->cb = cb;
	w->data = data;
	w->counter.healthy = initially_healthy;
	if (uv_timer_init(loop, &w->timer) != 0) {
		probe_spec_free(&w->spec);
		free(w);
		return -1;
	}
	w->timer.data = w;
	uv_timer_start(&w->timer, on_worker_tick, (uint64_t)spec->initial_delay_s * 1000,
		       (uint64_t)spec->period_s * 1000);
	*out = w;
	return 0;
}

void probe_worker_stop(struct probe_worker *w)
{
	if (w == NULL || w->stopped)
		return;
	w->stopped = true;
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *)&w->timer, on_worker_timer_closed);
}
