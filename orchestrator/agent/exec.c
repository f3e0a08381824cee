/* exec.c — one exec session: a process in the container's environment,
 * its pipes, and the websocket it is driven through.
 *
 * Happy path: check the upgrade (websocket, a valid key, v5 or v4 of
 * channel.k8s.io); spawn the command in a new session (so its process group
 * can be killed whole) with pipes for the streams asked for; answer 101;
 * then stdout and stderr go out as binary messages on channels 1 and 2,
 * channel 0 messages go to stdin, and v5's close message for channel 0
 * closes stdin. When the process has exited and both output pipes are at
 * EOF, the exit status goes out on channel 3 as a Status, then a close
 * frame, and the connection ends.
 *
 * Failure modes: a request that is no websocket upgrade gets 400; a command
 * that cannot be started is a Failure Status on channel 3 (kubectl prints
 * it); a client that goes away, closes, or breaks the protocol gets the
 * process group killed. When the process exits, whatever it left behind in
 * its group is killed too, as the process runtime does for containers, so
 * a background child holding stdout cannot keep the session open.
 * Back-pressure: a slow client stops the reading of stdout and stderr, a
 * slow stdin stops the reading of the client. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "lib/url.h"
#include "lib/websocket.h"
#include "orchestrator/agent/exec.h"

/* Largest message accepted from the client; kubectl sends stdin in 32 KiB
 * pieces. */
#define EXEC_MAX_MESSAGE (1024 * 1024)
/* Queued bytes above which the other side stops being read. */
#define EXEC_HIGH_WATER (1024 * 1024)
#define EXEC_LOW_WATER (256 * 1024)
#define EXEC_POLL_MS 20

#define CH_STDIN 0
#define CH_STDOUT 1
#define CH_STDERR 2
#define CH_ERROR 3
#define CH_RESIZE 4
#define CH_CLOSE 255

struct exec_session {
	struct exec_group *g;
	struct exec_session *prev, *next;
	struct http_raw *raw;        /* NULL once closed */
	uv_process_t proc;
	uv_pipe_t pin, pout, perr;
	uv_timer_t timer;            /* polls a slow client's queue */
	uv_shutdown_t shut;
	int handles_open;
	bool want_in, want_out, want_err;
	bool running;                /* spawned, exit not seen yet */
	bool out_eof, err_eof;
	bool out_paused;
	bool in_closing;
	bool finished;               /* the status is sent or the client is gone */
	bool v5;
	int exit_code;
	char spawn_error[640];       /* why the command did not start */
	char cmdline[512];           /* "[sh -c exit 3]", for messages */
	uint8_t *rbuf;               /* client bytes not parsed yet */
	size_t rlen;
	uint8_t *frame;              /* one frame's payload */
	uint8_t *msg;                /* one message, reassembled */
	struct ws_assembler as;
};

struct stdin_write {
	uv_write_t w;
	struct exec_session *s;
	char data[];
};


char **exec_query_command(const char *query)
{
	char **v = NULL;
	size_t n = 0;
	const char *p = query;

	while (p != NULL && *p != '\0') {
		size_t len = strcspn(p, "&;");

		if (len > 8 && strncmp(p, "command=", 8) == 0) {
			char **nv = realloc(v, (n + 2) * sizeof(*v));
			if (nv == NULL)
				goto oom;
			v = nv;
			v[n] = url_decode(p + 8, len - 8);
			if (v[n] == NULL)
				goto oom;
			v[++n] = NULL;
		}
		p += len;
		if (*p != '\0')
			p++;
	}
	return v;
oom:
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return NULL;
}

static bool query_true(struct http_req *req, const char *name)
{
	const char *v = http_req_query(req, name);

	return v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

/* ---- lifetime ---- */

static void session_free(struct exec_session *s)
{
	struct exec_group *g = s->g;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		g->head = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	free(s->rbuf);
	free(s->frame);
	free(s->msg);
	free(s);
	if (--g->live == 0 && g->drained != NULL)
		g->drained(g->data);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct exec_session *s = h->data;

	if (--s->handles_open == 0)
		session_free(s);
}

static void close_handle(struct exec_session *s, uv_handle_t *h)
{
	if (uv_is_closing(h))
		return;
	h->data = s;
	uv_close(h, on_handle_closed);
}

static void kill_group(struct exec_session *s)
{
	/* Spawned detached: the process group id is the pid. */
	if (s->proc.pid > 0)
		kill(-s->proc.pid, SIGKILL);
}

/* Ends the session: the connection (gracefully), the process group, every
 * handle. */
static void session_end(struct exec_session *s)
{
	s->finished = true;
	if (s->raw != NULL) {
		http_raw_close(s->raw);
		s->raw = NULL;
	}
	if (s->running)
		kill_group(s);
	/* The exit callback of a killed process is not needed: closing the
	 * handle stops it, and libuv reaps the child. */
	close_handle(s, (uv_handle_t *)&s->proc);
	close_handle(s, (uv_handle_t *)&s->timer);
	if (s->want_in)
		close_handle(s, (uv_handle_t *)&s->pin);
	if (s->want_out)
		close_handle(s, (uv_handle_t *)&s->pout);
	if (s->want_err)
		close_handle(s, (uv_handle_t *)&s->perr);
}

/* ---- to the client ---- */

static void send_frame(struct exec_session *s, int opcode, int channel, const char *data,
		       size_t n)
{
	uint8_t *buf;
	size_t hl, extra = channel >= 0 ? 1 : 0;

	if (s->raw == NULL)
		return;
	buf = malloc(WS_MAX_HEADER + extra + n);
	if (buf == NULL)
		return;
	hl = ws_frame_header(buf, opcode, true, extra + n, NULL);
	if (extra)
		buf[hl] = (uint8_t)channel;
	if (n > 0)
		memcpy(buf + hl + extra, data, n);
	http_raw_write(s->raw, (const char *)buf, hl + extra + n);
	free(buf);
}

static void send_close(struct exec_session *s, uint16_t code)
{
	char payload[2] = {(char)(code >> 8), (char)(code & 0xFF)};

	send_frame(s, WS_OP_CLOSE, -1, payload, sizeof payload);
}

/* The Status kubectl reads from channel 3: it turns an ExitCode cause into
 * "command terminated with exit code N" and its own exit code. */
static void send_status(struct exec_session *s)
{
	json_t *st;
	char *text;

	if (s->spawn_error[0] != '\0') {
		st = json_pack("{s:{},s:s,s:s,s:s,s:i}", "metadata", "status", "Failure",
			       "message", s->spawn_error, "reason", "InternalError", "code", 500);
	} else if (s->exit_code == 0) {
		st = json_pack("{s:{},s:s}", "metadata", "status", "Success");
	} else {
		char msg[700], code[16];

		snprintf(msg, sizeof msg,
			 "command terminated with non-zero exit code: error executing command "
			 "%s, exit code %d", s->cmdline, s->exit_code);
		snprintf(code, sizeof code, "%d", s->exit_code);
		st = json_pack("{s:{},s:s,s:s,s:s,s:{s:[{s:s,s:s}]}}", "metadata", "status",
			       "Failure", "message", msg, "reason", "NonZeroExitCode", "details",
			       "causes", "reason", "ExitCode", "message", code);
	}
	text = st != NULL ? json_dumps(st, JSON_COMPACT) : NULL;
	if (text != NULL)
		send_frame(s, WS_OP_BINARY, CH_ERROR, text, strlen(text));
	free(text);
	json_decref(st);
}

static void maybe_finish(struct exec_session *s)
{
	if (s->finished || s->running || (s->want_out && !s->out_eof) ||
	    (s->want_err && !s->err_eof))
		return;
	send_status(s);
	send_close(s, WS_CLOSE_NORMAL);
	session_end(s);
}

/* ---- from the process ---- */

static void on_out_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)h;
	buf->base = malloc(hint);
	buf->len = buf->base != NULL ? hint : 0;
}

static void out_pause(struct exec_session *s, bool pause);

static void on_out_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct exec_session *s = st->data;
	bool is_err = st == (uv_stream_t *)&s->perr;

	if (nread > 0) {
		send_frame(s, WS_OP_BINARY, is_err ? CH_STDERR : CH_STDOUT, buf->base,
			   (size_t)nread);
		if (s->raw != NULL && http_raw_pending(s->raw) > EXEC_HIGH_WATER)
			out_pause(s, true);
	} else if (nread < 0) {
		uv_read_stop(st);
		if (is_err)
			s->err_eof = true;
		else
			s->out_eof = true;
		free(buf->base);
		maybe_finish(s);
		return;
	}
	free(buf->base);
}

static void on_poll(uv_timer_t *t)
{
	struct exec_session *s = t->data;

	if (s->raw == NULL || http_raw_pending(s->raw) < EXEC_LOW_WATER)
		out_pause(s, false);
}

static void out_pause(struct exec_session *s, bool pause)
{
	if (s->out_paused == pause || s->finished)
		return;
	s->out_paused = pause;
	if (s->want_out && !s->out_eof) {
		if (pause)
			uv_read_stop((uv_stream_t *)&s->pout);
		else
			uv_read_start((uv_stream_t *)&s->pout, on_out_alloc, on_out_read);
	}
	if (s->want_err && !s->err_eof) {
		if (pause)
			uv_read_stop((uv_stream_t *)&s->perr);
		else
			uv_read_start((uv_stream_t *)&s->perr, on_out_alloc, on_out_read);
	}
	if (pause)
		uv_timer_start(&s->timer, on_poll, EXEC_POLL_MS, EXEC_POLL_MS);
	else
		uv_timer_stop(&s->timer);
}

static void on_process_exit(uv_process_t *p, int64_t status, int sig)
{
	struct exec_session *s = p->data;

	s->running = false;
	s->exit_code = sig != 0 ? 128 + sig : (int)status;
	/* Nothing the command started outlives it. */
	kill(-p->pid, SIGKILL);
	maybe_finish(s);
}

/* ---- from the client ---- */

static void on_stdin_written(uv_write_t *w, int status)
{
	struct stdin_write *sw = (struct stdin_write *)w;
	struct exec_session *s = sw->s;

	(void)status;       /* a command that stops reading is not an error */
	free(sw);
	if (s->raw != NULL && !s->finished &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&s->pin) < EXEC_LOW_WATER)
		http_raw_pause(s->raw, false);
}

static void on_stdin_shut(uv_shutdown_t *r, int status)
{
	(void)r;
	(void)status;
}

static void stdin_close(struct exec_session *s)
{
	if (!s->want_in || s->in_closing || uv_is_closing((uv_handle_t *)&s->pin))
		return;
	s->in_closing = true;
	/* After the queued writes: the command reads everything, then EOF. */
	if (uv_shutdown(&s->shut, (uv_stream_t *)&s->pin, on_stdin_shut) != 0)
		close_handle(s, (uv_handle_t *)&s->pin);
}

static void stdin_write(struct exec_session *s, const uint8_t *data, size_t n)
{
	struct stdin_write *sw;
	uv_buf_t b;

	if (!s->want_in || s->in_closing || n == 0 || uv_is_closing((uv_handle_t *)&s->pin))
		return;
	sw = malloc(sizeof(*sw) + n);
	if (sw == NULL)
		return;
	sw->s = s;
	memcpy(sw->data, data, n);
	b = uv_buf_init(sw->data, (unsigned)n);
	if (uv_write(&sw->w, (uv_stream_t *)&s->pin, &b, 1, on_stdin_written) != 0) {
		free(sw);
		return;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&s->pin) > EXEC_HIGH_WATER)
		http_raw_pause(s->raw, true);
}

static void on_message(struct exec_session *s, const uint8_t *m, size_t n)
{
	if (n == 0)
		return;
	switch (m[0]) {
	case CH_STDIN:
		stdin_write(s, m + 1, n - 1);
		break;
	case CH_CLOSE:
		if (s->v5 && n >= 2 && m[1] == CH_STDIN)
			stdin_close(s);
		break;
	case CH_RESIZE:
	default:
		/* No terminal, so nothing to resize. */
		break;
	}
}

/* The client is gone or broke the protocol: stop everything. */
static void client_lost(struct exec_session *s, uint16_t code)
{
	if (code != 0)
		send_close(s, code);
	session_end(s);
}

static void on_client(struct http_raw *raw, const char *bytes, ssize_t len, void *data)
{
	struct exec_session *s = data;
	size_t off = 0;

	(void)raw;
	if (s->finished)
		return;
	if (len < 0) {
		client_lost(s, 0);
		return;
	}
	if (s->rlen + (size_t)len > EXEC_MAX_MESSAGE + WS_MAX_HEADER) {
		/* More than a whole frame pending means a frame over the limit. */
		client_lost(s, WS_CLOSE_TOO_BIG);
		return;
	}
	memcpy(s->rbuf + s->rlen, bytes, (size_t)len);
	s->rlen += (size_t)len;
	while (!s->finished && off < s->rlen) {
		struct ws_frame f;
		long n = ws_parse_frame(s->rbuf + off, s->rlen - off, true, s->frame,
					EXEC_MAX_MESSAGE, &f);

		if (n == WS_NEED_MORE)
			break;
		if (n == WS_ERROR) {
			client_lost(s, WS_CLOSE_PROTOCOL);
			return;
		}
		off += (size_t)n;
		switch (f.opcode) {
		case WS_OP_PING:
			send_frame(s, WS_OP_PONG, -1, (const char *)s->frame, (size_t)f.len);
			break;
		case WS_OP_PONG:
			break;
		case WS_OP_CLOSE:
			/* The client ends the session before the command did. */
			client_lost(s, WS_CLOSE_NORMAL);
			return;
		default: {
			int r = ws_assemble(&s->as, &f, s->frame);

			if (r == WS_ERROR) {
				client_lost(s, WS_CLOSE_PROTOCOL);
				return;
			}
			if (r == 1 && s->as.opcode == WS_OP_BINARY)
				on_message(s, s->as.buf, s->as.len);
			break;
		}
		}
	}
	if (s->finished)
		return;
	memmove(s->rbuf, s->rbuf + off, s->rlen - off);
	s->rlen -= off;
}

/* ---- start ---- */

static void reply_400(struct http_req *req, const char *msg)
{
	http_reply(req, 400, "text/plain", msg, strlen(msg));
}

static void format_cmdline(struct exec_session *s, char *const *argv)
{
	size_t n = 0;

	n += (size_t)snprintf(s->cmdline, sizeof s->cmdline, "[");
	for (size_t i = 0; argv[i] != NULL && n < sizeof s->cmdline; i++)
		n += (size_t)snprintf(s->cmdline + n, sizeof s->cmdline - n, "%s%s",
				      i ? " " : "", argv[i]);
	if (n < sizeof s->cmdline)
		snprintf(s->cmdline + n, sizeof s->cmdline - n, "]");
}

void exec_serve(uv_loop_t *loop, struct exec_group *g, struct http_req *req,
		const struct exec_spec *spec)
{
	static const char *const protocols[] = {"v5.channel.k8s.io", "v4.channel.k8s.io", NULL};
	const char *up = http_req_header(req, "Upgrade");
	const char *proto = ws_pick_protocol(http_req_header(req, "Sec-WebSocket-Protocol"),
					     protocols);
	char accept[WS_ACCEPT_SIZE], headers[512];
	uv_stdio_container_t stdio[3];
	uv_process_options_t opts;
	struct exec_session *s;
	int rv;

	if (up == NULL || strcasecmp(up, "websocket") != 0 ||
	    ws_accept_key(http_req_header(req, "Sec-WebSocket-Key"), accept) != 0) {
		reply_400(req, "exec needs a websocket upgrade (v5.channel.k8s.io)");
		return;
	}
	if (proto == NULL) {
		reply_400(req, "exec speaks v5.channel.k8s.io or v4.channel.k8s.io only");
		return;
	}
	if (spec->argv == NULL || spec->argv[0] == NULL) {
		reply_400(req, "you must specify at least one command for the container");
		return;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->rbuf = malloc(EXEC_MAX_MESSAGE + WS_MAX_HEADER)) == NULL ||
	    (s->frame = malloc(EXEC_MAX_MESSAGE)) == NULL ||
	    (s->msg = malloc(EXEC_MAX_MESSAGE)) == NULL) {
		if (s != NULL) {
			free(s->rbuf);
			free(s->frame);
			free(s);
		}
		http_reply(req, 500, "text/plain", "out of memory", 13);
		return;
	}
	s->g = g;
	s->next = g->head;
	if (g->head != NULL)
		g->head->prev = s;
	g->head = s;
	g->live++;
	s->v5 = strcmp(proto, protocols[0]) == 0;
	s->want_in = query_true(req, "stdin");
	s->want_out = query_true(req, "stdout");
	s->want_err = query_true(req, "stderr");
	ws_assembler_init(&s->as, s->msg, EXEC_MAX_MESSAGE);
	format_cmdline(s, spec->argv);
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	s->handles_open = 2;         /* timer, process */
	memset(stdio, 0, sizeof stdio);
	{
		uv_pipe_t *pipes[3] = {&s->pin, &s->pout, &s->perr};
		bool want[3] = {s->want_in, s->want_out, s->want_err};

		for (int i = 0; i < 3; i++) {
			if (!want[i]) {
				stdio[i].flags = UV_IGNORE;
				continue;
			}
			uv_pipe_init(loop, pipes[i], 0);
			pipes[i]->data = s;
			s->handles_open++;
			stdio[i].flags = UV_CREATE_PIPE |
					 (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
			stdio[i].data.stream = (uv_stream_t *)pipes[i];
		}
	}
	memset(&opts, 0, sizeof opts);
	opts.file = spec->argv[0];
	opts.args = (char **)spec->argv;
	opts.env = (char **)spec->env;
	opts.cwd = spec->cwd;
	opts.stdio = stdio;
	opts.stdio_count = 3;
	/* Its own session and process group, as a container's processes have. */
	opts.flags = UV_PROCESS_DETACHED;
	opts.exit_cb = on_process_exit;
	s->proc.data = s;
	rv = uv_spawn(loop, &s->proc, &opts);
	if (rv != 0) {
		snprintf(s->spawn_error, sizeof s->spawn_error,
			 "failed to exec in container: starting %s: %s", s->cmdline,
			 uv_strerror(rv));
		s->proc.pid = 0;
	} else {
		s->running = true;
	}
	snprintf(headers, sizeof headers,
		 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
		 "Sec-WebSocket-Protocol: %s\r\n", accept, proto);
	if (http_upgrade(req, headers, on_client, s, &s->raw) != 0) {
		s->raw = NULL;
		session_end(s);
		return;
	}
	if (rv != 0) {
		s->running = false;
		s->out_eof = s->err_eof = true;
		maybe_finish(s);
		return;
	}
	if (s->want_out)
		uv_read_start((uv_stream_t *)&s->pout, on_out_alloc, on_out_read);
	if (s->want_err)
		uv_read_start((uv_stream_t *)&s->perr, on_out_alloc, on_out_read);
	log_debug("exec %s: pid %d", s->cmdline, s->proc.pid);
}

void exec_group_abort(struct exec_group *g)
{
	struct exec_session *s;

	for (s = g->head; s != NULL; s = s->next)
		if (!s->finished)
			session_end(s);
	if (g->live == 0 && g->drained != NULL)
		g->drained(g->data);
}
