/* exec.c — one exec session: a process inside the container (started by
 * nsexec.c, watched through a pidfd), its pipes, and the connection it is
 * driven through: a websocket (v5/v4.channel.k8s.io, kubectl 1.30+) or
 * SPDY/3.1 (v4/v3/v2, kubectl 1.29 and older, and newer ones falling
 * back). The process side is one; only the framing differs (the
 * "transport" sections below).
 *
 * Happy path (websocket): check the upgrade (a valid key, v5 or v4 of
 * channel.k8s.io); spawn the command in a new session (so its process group
 * can be killed whole) with pipes for the streams asked for; answer 101;
 * once the client has had time to set up its streams (its first message,
 * or WS_STREAMS_MS; see ws_streams_ready), stdout and stderr go out as
 * binary messages on channels 1 and 2; channel 0 messages go to stdin, and
 * v5's close message for channel 0 closes stdin. When the process has
 * exited and both output pipes are at EOF, the exit status goes out on
 * channel 3 as a Status, then a close frame, and the connection ends.
 *
 * Happy path (SPDY): answer 101 with the chosen X-Stream-Protocol-Version;
 * the client opens one stream per channel (SYN_STREAM with a "streamtype"
 * header: error, stdin, stdout, stderr, resize), each answered with a
 * SYN_REPLY; once all the query asked for are open, the pipes are read.
 * Output goes out as DATA frames on its stream, stdin comes in on its own
 * and its FIN closes the command's stdin. At the end stdout and stderr get
 * FIN, the Status (v4; v2/v3 send a text message, and nothing on success)
 * goes out on the error stream with FIN, then GOAWAY, and the connection
 * ends. PINGs are echoed. Flow control: received data is acknowledged with
 * WINDOW_UPDATE as the command consumes it; outgoing data respects the
 * peer's windows once the peer shows it takes part (a SETTINGS or
 * WINDOW_UPDATE frame). kubectl's spdystream never does and never sends
 * WINDOW_UPDATE, so holding it to the 64 KiB default would stall every
 * large output; TCP's back-pressure bounds what is queued instead.
 *
 * Failure modes: a request that is no websocket or SPDY upgrade gets 400;
 * a command that cannot be started is a Failure Status on the error
 * channel (kubectl prints it); a client that goes away, closes, or breaks
 * the protocol gets the command's session killed (while the client is not
 * read, pings find out that it went; see on_probe). When the process exits,
 * whatever it left behind in its session (its group, and groups it made,
 * as a shell's jobs) is killed too, as the process runtime does for
 * containers, so a background child holding stdout or the terminal cannot
 * keep the session open.
 * Back-pressure: a slow client stops the reading of stdout and stderr, a
 * slow stdin stops the reading of the client. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/spdy.h"
#include "lib/url.h"
#include "lib/websocket.h"
#include "orchestrator/agent/exec.h"
#include "orchestrator/agent/nsexec.h"

/* Largest message accepted from the client; kubectl sends stdin in 32 KiB
 * pieces. */
#define EXEC_MAX_MESSAGE (1024 * 1024)
/* Queued bytes above which the other side stops being read. */
#define EXEC_HIGH_WATER (1024 * 1024)
#define EXEC_LOW_WATER (256 * 1024)
#define EXEC_POLL_MS 20
/* While the client is not read, how often it is pinged (see on_probe). */
#define EXEC_PROBE_MS 2000

#define CH_STDIN 0
#define CH_STDOUT 1
#define CH_STDERR 2
#define CH_ERROR 3
#define CH_RESIZE 4
#define CH_CLOSE 255
#define N_CHANNELS 5

/* How long a SPDY client may take to open the streams it asked for. */
#define SPDY_STREAMS_MS 30000
/* How long a websocket client is given to set up its streams before output
 * goes out, unless a message from it shows it has (see ws_streams_ready). */
#define WS_STREAMS_MS 100
/* Received bytes acknowledged with one WINDOW_UPDATE. */
#define SPDY_ACK_BYTES 32768
/* With a terminal, how long the end waits for kubectl's first terminal
 * size (see maybe_finish). */
#define EXEC_RESIZE_WAIT_MS 5000
/* Decompressed header blocks larger than this end the connection. */
#define SPDY_MAX_BLOCK 16384

/* Output held back by the peer's SPDY flow-control window. */
struct held {
	char *buf;
	size_t len;
};

struct exec_session {
	struct exec_group *g;
	struct exec_session *prev, *next;
	struct http_raw *raw;        /* NULL once closed */
	pid_t pid;                   /* the command, also its process group; 0: none */
	int pidfd;                   /* readable when it exits; -1: polled instead */
	uv_poll_t reap_poll;         /* on pidfd */
	uv_timer_t reap_timer;       /* without pidfd */
	bool reaper_open;
	uv_pipe_t pin, pout, perr;
	uv_timer_t timer;            /* polls a slow client's queue; before that,
				      * the SPDY streams' deadline */
	uv_timer_t probe;            /* pings a client that is not read */
	uv_shutdown_t shut;
	int handles_open;
	bool ask_in, ask_out, ask_err;  /* the streams the query asks for */
	bool want_in, want_out, want_err;  /* ... that have a pipe */
	bool pty;                    /* a terminal: pout is its master, both ways */
	bool running;                /* spawned, exit not seen yet */
	bool out_eof, err_eof;
	bool out_paused;
	bool in_closing;
	bool finished;               /* the status is sent or the client is gone */
	bool v5;
	bool await_resize;           /* tty: kubectl's first terminal size not seen */
	bool spdy;
	int version;                 /* of channel.k8s.io: 4, 3 or 2 */
	bool tty;
	bool streams_ready;          /* every stream asked for is open (SPDY),
				      * or presumed set up (websocket) */
	bool flow;                   /* the peer takes part in flow control */
	uint32_t sid[N_CHANNELS];    /* stream of each channel, 0 if none */
	uint32_t last_sid;
	uint32_t ping_id;            /* of our last SPDY ping: even */
	int64_t window[N_CHANNELS];  /* what the peer lets us send */
	int64_t session_window;
	int64_t initial_window;
	uint32_t unacked;            /* stdin bytes consumed, not acknowledged */
	struct held held[N_CHANNELS];
	struct spdy_zin zin;
	struct spdy_zout zout;
	uint8_t *plain;              /* one decompressed header block */
	int exit_code;
	char spawn_error[640];       /* why the command did not start */
	char cmdline[512];           /* "[sh -c exit 3]", for messages */
	uint8_t *rbuf;               /* client bytes not parsed yet */
	size_t rlen;
	uint8_t *frame;              /* websocket: one frame's payload */
	uint8_t *msg;                /* websocket: one message, reassembled */
	struct ws_assembler as;
};

struct stdin_write {
	uv_write_t w;
	struct exec_session *s;
	size_t len;
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
	for (int i = 0; i < N_CHANNELS; i++)
		free(s->held[i].buf);
	if (s->pidfd >= 0)
		close(s->pidfd);
	spdy_zin_free(&s->zin);
	spdy_zout_free(&s->zout);
	free(s->plain);
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
	/* A session of its own, led by the command. */
	if (s->pid > 0)
		nsexec_kill_session(s->pid, SIGKILL);
}

static void close_reaper(struct exec_session *s)
{
	if (!s->reaper_open)
		return;
	s->reaper_open = false;
	if (s->pidfd >= 0)
		close_handle(s, (uv_handle_t *)&s->reap_poll);
	else
		close_handle(s, (uv_handle_t *)&s->reap_timer);
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
	/* A running command is killed; its reaper stays until it is reaped,
	 * and the session is freed after. */
	if (s->running)
		kill_group(s);
	else
		close_reaper(s);
	close_handle(s, (uv_handle_t *)&s->timer);
	close_handle(s, (uv_handle_t *)&s->probe);
	if (s->want_in)
		close_handle(s, (uv_handle_t *)&s->pin);
	if (s->want_out)
		close_handle(s, (uv_handle_t *)&s->pout);
	if (s->want_err)
		close_handle(s, (uv_handle_t *)&s->perr);
}

static void raw_send(struct exec_session *s, const void *bytes, size_t n)
{
	if (s->raw != NULL)
		http_raw_write(s->raw, bytes, n);
}

/* ---- transport: websocket ---- */

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
	raw_send(s, buf, hl + extra + n);
	free(buf);
}

static void send_close(struct exec_session *s, uint16_t code)
{
	char payload[2] = {(char)(code >> 8), (char)(code & 0xFF)};

	send_frame(s, WS_OP_CLOSE, -1, payload, sizeof payload);
}

/* ---- transport: SPDY ---- */

static void spdy_data(struct exec_session *s, uint32_t sid, uint8_t flags, const char *data,
		      size_t n)
{
	uint8_t h[SPDY_HEADER_SIZE];

	if (s->raw == NULL || sid == 0)
		return;
	spdy_data_header(h, sid, flags, (uint32_t)n);
	raw_send(s, h, sizeof h);
	if (n > 0)
		raw_send(s, data, n);
}

/* What the peer's windows let us send on channel ch now. */
static size_t spdy_allowed(const struct exec_session *s, int ch, size_t want)
{
	int64_t w = s->window[ch] < s->session_window ? s->window[ch] : s->session_window;

	if (!s->flow)
		return want;
	if (w <= 0)
		return 0;
	return (uint64_t)w < want ? (size_t)w : want;
}

static void spdy_consume_window(struct exec_session *s, int ch, size_t n)
{
	s->window[ch] -= (int64_t)n;
	s->session_window -= (int64_t)n;
}

/* Sends output of channel ch as far as the windows allow and holds the
 * rest. Returns true when something is held back. */
static bool spdy_send_output(struct exec_session *s, int ch, const char *data, size_t n)
{
	struct held *h = &s->held[ch];
	size_t ok;

	if (s->sid[ch] == 0)
		return false;        /* the client did not open it: nobody reads */
	if (h->len > 0) {
		char *nb = realloc(h->buf, h->len + n);

		if (nb == NULL)
			return true;
		memcpy(nb + h->len, data, n);
		h->buf = nb;
		h->len += n;
		return true;
	}
	ok = spdy_allowed(s, ch, n);
	if (ok > 0) {
		spdy_data(s, s->sid[ch], 0, data, ok);
		spdy_consume_window(s, ch, ok);
	}
	if (ok == n)
		return false;
	h->buf = malloc(n - ok);
	if (h->buf == NULL)
		return false;        /* out of memory: that output is lost */
	memcpy(h->buf, data + ok, n - ok);
	h->len = n - ok;
	return true;
}

static bool spdy_holding(const struct exec_session *s)
{
	return s->held[CH_STDOUT].len > 0 || s->held[CH_STDERR].len > 0;
}

/* The windows grew: send what was held. */
static void spdy_flush_held(struct exec_session *s)
{
	for (int ch = CH_STDOUT; ch <= CH_STDERR; ch++) {
		struct held *h = &s->held[ch];
		size_t ok = spdy_allowed(s, ch, h->len);

		if (ok == 0)
			continue;
		spdy_data(s, s->sid[ch], 0, h->buf, ok);
		spdy_consume_window(s, ch, ok);
		memmove(h->buf, h->buf + ok, h->len - ok);
		h->len -= ok;
	}
}

static void send_goaway(struct exec_session *s, uint32_t status)
{
	uint8_t b[16];

	raw_send(s, b, spdy_goaway(b, s->last_sid, status));
}

/* ---- to the client, either transport ---- */

static void send_output(struct exec_session *s, int ch, const char *data, size_t n);

/* The Status kubectl reads from the error channel: it turns an ExitCode
 * cause into "command terminated with exit code N" and its own exit code.
 * Protocols before v4 carry a plain message, and nothing on success. */
static void send_status(struct exec_session *s)
{
	json_t *st;
	char *text;
	char msg[700];

	if (s->spawn_error[0] != '\0') {
		snprintf(msg, sizeof msg, "%s", s->spawn_error);
		st = json_pack("{s:{},s:s,s:s,s:s,s:i}", "metadata", "status", "Failure",
			       "message", msg, "reason", "InternalError", "code", 500);
	} else if (s->exit_code == 0) {
		msg[0] = '\0';
		st = json_pack("{s:{},s:s}", "metadata", "status", "Success");
	} else {
		char code[16];

		snprintf(msg, sizeof msg,
			 "command terminated with non-zero exit code: error executing command "
			 "%s, exit code %d", s->cmdline, s->exit_code);
		snprintf(code, sizeof code, "%d", s->exit_code);
		st = json_pack("{s:{},s:s,s:s,s:s,s:{s:[{s:s,s:s}]}}", "metadata", "status",
			       "Failure", "message", msg, "reason", "NonZeroExitCode", "details",
			       "causes", "reason", "ExitCode", "message", code);
	}
	text = st != NULL ? json_dumps(st, JSON_COMPACT) : NULL;
	if (s->spdy && s->version < 4)
		spdy_data(s, s->sid[CH_ERROR], SPDY_FLAG_FIN, msg, strlen(msg));
	else if (s->spdy)
		spdy_data(s, s->sid[CH_ERROR], SPDY_FLAG_FIN, text ? text : "",
			  text ? strlen(text) : 0);
	else if (text != NULL)
		send_frame(s, WS_OP_BINARY, CH_ERROR, text, strlen(text));
	free(text);
	json_decref(st);
}

static void on_resize_wait(uv_timer_t *t);

static void maybe_finish(struct exec_session *s)
{
	if (s->finished || s->running || (s->want_out && !s->out_eof) ||
	    (s->want_err && !s->err_eof))
		return;
	if (!s->streams_ready || (s->spdy && spdy_holding(s)))
		return;
	/* With a terminal kubectl sends its size once the streams are up,
	 * from a goroutine of its own; ending the session before that makes
	 * it log an error ("EOF", "websocket: close sent") after a command
	 * that ended at once. So the end waits for that size, boundedly. */
	if (s->await_resize) {
		uv_timer_stop(&s->timer);
		uv_timer_start(&s->timer, on_resize_wait, EXEC_RESIZE_WAIT_MS, 0);
		return;
	}
	if (s->spdy) {
		/* Every stream ends before the status, and the status before
		 * the connection. */
		spdy_data(s, s->sid[CH_STDOUT], SPDY_FLAG_FIN, NULL, 0);
		spdy_data(s, s->sid[CH_STDERR], SPDY_FLAG_FIN, NULL, 0);
		spdy_data(s, s->sid[CH_STDIN], SPDY_FLAG_FIN, NULL, 0);
		spdy_data(s, s->sid[CH_RESIZE], SPDY_FLAG_FIN, NULL, 0);
		send_status(s);
		send_goaway(s, SPDY_GOAWAY_OK);
	} else {
		send_status(s);
		send_close(s, WS_CLOSE_NORMAL);
	}
	session_end(s);
}

static void on_resize_wait(uv_timer_t *t)
{
	struct exec_session *s = t->data;

	s->await_resize = false;
	maybe_finish(s);
}

/* Terminal sizes from kubectl: {"Width":W,"Height":H}, one JSON object a
 * line (SPDY) or a message (websocket). Applied to the terminal, if any. */
static void resize_msg(struct exec_session *s, const uint8_t *data, size_t n)
{
	while (n > 0) {
		const uint8_t *nl = memchr(data, '\n', n);
		size_t len = nl != NULL ? (size_t)(nl - data) : n;
		json_t *size = len > 0 ? json_loadb((const char *)data, len, 0, NULL) : NULL;
		json_int_t w = json_integer_value(json_object_get(size, "Width"));
		json_int_t h = json_integer_value(json_object_get(size, "Height"));

		json_decref(size);
		if (s->pty && w > 0 && h > 0 && w <= 0xFFFF && h <= 0xFFFF &&
		    !uv_is_closing((uv_handle_t *)&s->pout)) {
			struct winsize ws = {.ws_row = (unsigned short)h,
					     .ws_col = (unsigned short)w};
			uv_os_fd_t fd;

			if (uv_fileno((uv_handle_t *)&s->pout, &fd) == 0)
				ioctl(fd, TIOCSWINSZ, &ws);
		}
		data += len + (nl != NULL);
		n -= len + (nl != NULL);
	}
	if (s->await_resize) {
		s->await_resize = false;
		maybe_finish(s);
	}
}

/* ---- from the process ---- */

static void on_out_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)h;
	buf->base = malloc(hint);
	buf->len = buf->base != NULL ? hint : 0;
}

static void out_pause(struct exec_session *s, bool pause);

static void send_output(struct exec_session *s, int ch, const char *data, size_t n)
{
	if (!s->spdy) {
		send_frame(s, WS_OP_BINARY, ch, data, n);
	} else if (spdy_send_output(s, ch, data, n)) {
		/* Held by the peer's window: read no more until it opens. */
		out_pause(s, true);
		return;
	}
	if (s->raw != NULL && http_raw_pending(s->raw) > EXEC_HIGH_WATER)
		out_pause(s, true);
}

static void on_out_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct exec_session *s = st->data;
	bool is_err = st == (uv_stream_t *)&s->perr;

	if (nread > 0) {
		send_output(s, is_err ? CH_STDERR : CH_STDOUT, buf->base, (size_t)nread);
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

	if (s->spdy && spdy_holding(s))
		return;         /* a WINDOW_UPDATE resumes */
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

/* Reaps the command if it has exited. */
static void reap(struct exec_session *s)
{
	int st = 0;
	pid_t r = waitpid(s->pid, &st, WNOHANG);

	if (r == 0 || (r < 0 && errno == EINTR))
		return;
	s->running = false;
	if (r != s->pid)
		s->exit_code = 128 + SIGKILL;   /* ALWAYS: our child, reaped by us only */
	else if (WIFSIGNALED(st))
		s->exit_code = 128 + WTERMSIG(st);
	else
		s->exit_code = WEXITSTATUS(st);
	/* Nothing the command started outlives it (nor holds its pipes or
	 * terminal open). */
	nsexec_kill_session(s->pid, SIGKILL);
	close_reaper(s);
	maybe_finish(s);
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	reap(h->data);
}

static void on_reap_timer(uv_timer_t *t)
{
	reap(t->data);
}

/* Watches for the command's exit: a pidfd becomes readable then (Linux
 * 5.3+); without one, waitpid is polled. Returns 0 or a libuv error. */
static int start_reaper(uv_loop_t *loop, struct exec_session *s)
{
	s->pidfd = (int)syscall(SYS_pidfd_open, s->pid, 0);
	if (s->pidfd >= 0 && uv_poll_init(loop, &s->reap_poll, s->pidfd) != 0) {
		close(s->pidfd);
		s->pidfd = -1;
	}
	if (s->pidfd >= 0) {
		s->reap_poll.data = s;
		s->handles_open++;
		s->reaper_open = true;
		return uv_poll_start(&s->reap_poll, UV_READABLE, on_pidfd);
	}
	uv_timer_init(loop, &s->reap_timer);
	s->reap_timer.data = s;
	s->handles_open++;
	s->reaper_open = true;
	return uv_timer_start(&s->reap_timer, on_reap_timer, 50, 50);
}

/* Starts reading the command's output. */
static void start_output(struct exec_session *s)
{
	if (s->want_out && !s->out_eof)
		uv_read_start((uv_stream_t *)&s->pout, on_out_alloc, on_out_read);
	if (s->want_err && !s->err_eof)
		uv_read_start((uv_stream_t *)&s->perr, on_out_alloc, on_out_read);
}

/* ---- from the client ---- */

/* Tells a SPDY peer that n more stdin bytes were consumed, in batches. */
static void spdy_ack(struct exec_session *s, size_t n)
{
	uint8_t b[32];

	if (!s->spdy || s->sid[CH_STDIN] == 0)
		return;
	s->unacked += (uint32_t)n;
	if (s->unacked < SPDY_ACK_BYTES)
		return;
	/* The stream's window and, for SPDY/3.1 peers, the session's. */
	spdy_window_update(b, s->sid[CH_STDIN], s->unacked);
	spdy_window_update(b + 16, 0, s->unacked);
	raw_send(s, b, 32);
	s->unacked = 0;
}

/* Where stdin goes: its pipe, or the terminal (which carries the output
 * too); NULL when there is none or it is closing. */
static uv_stream_t *stdin_target(struct exec_session *s)
{
	uv_handle_t *h = s->pty ? (uv_handle_t *)&s->pout : (uv_handle_t *)&s->pin;

	if (!(s->pty ? s->want_out && s->ask_in : s->want_in) || s->in_closing ||
	    uv_is_closing(h))
		return NULL;
	return (uv_stream_t *)h;
}

static size_t stdin_queued(struct exec_session *s)
{
	uv_handle_t *h = s->pty ? (uv_handle_t *)&s->pout : (uv_handle_t *)&s->pin;

	return uv_is_closing(h) ? 0 : uv_stream_get_write_queue_size((uv_stream_t *)h);
}

/* A client that is not read (its stdin waits for the command) could leave
 * unseen: nothing would read its end, and a command that writes nothing
 * would write nothing to fail, so the command would outlive the session. A
 * ping now and then does write: to a peer that is gone the kernel answers
 * with a reset, the next write fails, and the connection's end is the
 * session's (client_lost). Through the API server the same happens one hop
 * at a time. */
static void on_probe(uv_timer_t *t)
{
	struct exec_session *s = t->data;

	if (s->finished)
		return;
	if (s->spdy) {
		uint8_t b[12];

		s->ping_id += 2;     /* a server's ids are even */
		raw_send(s, b, spdy_ping(b, s->ping_id));
	} else {
		send_frame(s, WS_OP_PING, -1, NULL, 0);
	}
}

/* Stops (true) or resumes reading the client, for stdin's back-pressure. */
static void client_pause(struct exec_session *s, bool pause)
{
	if (s->raw == NULL)
		return;
	http_raw_pause(s->raw, pause);
	if (pause)
		uv_timer_start(&s->probe, on_probe, EXEC_PROBE_MS, EXEC_PROBE_MS);
	else
		uv_timer_stop(&s->probe);
}

static void on_stdin_written(uv_write_t *w, int status)
{
	struct stdin_write *sw = (struct stdin_write *)w;
	struct exec_session *s = sw->s;

	(void)status;       /* a command that stops reading is not an error */
	if (!s->finished)
		spdy_ack(s, sw->len);
	free(sw);
	if (!s->finished && stdin_queued(s) < EXEC_LOW_WATER)
		client_pause(s, false);
}

/* Everything queued is written: closing our end is the command's EOF (a
 * pipe cannot be shut down half way, so the shutdown itself may fail). */
static void on_stdin_shut(uv_shutdown_t *r, int status)
{
	struct exec_session *s = r->handle->data;

	(void)status;
	close_handle(s, (uv_handle_t *)&s->pin);
}

static void stdin_write(struct exec_session *s, const uint8_t *data, size_t n);

static void stdin_close(struct exec_session *s)
{
	if (stdin_target(s) == NULL)
		return;
	if (s->pty) {
		/* A terminal cannot be half closed: its end-of-file character
		 * is what a user would type. */
		stdin_write(s, (const uint8_t *)"\x04", 1);
		s->in_closing = true;
		return;
	}
	s->in_closing = true;
	/* After the queued writes: the command reads everything, then EOF. */
	if (uv_shutdown(&s->shut, (uv_stream_t *)&s->pin, on_stdin_shut) != 0)
		close_handle(s, (uv_handle_t *)&s->pin);
}

static void stdin_write(struct exec_session *s, const uint8_t *data, size_t n)
{
	uv_stream_t *in = stdin_target(s);
	struct stdin_write *sw;
	uv_buf_t b;

	if (in == NULL || n == 0) {
		spdy_ack(s, n);
		return;
	}
	sw = malloc(sizeof(*sw) + n);
	if (sw == NULL)
		return;
	sw->s = s;
	sw->len = n;
	memcpy(sw->data, data, n);
	b = uv_buf_init(sw->data, (unsigned)n);
	if (uv_write(&sw->w, in, &b, 1, on_stdin_written) != 0) {
		free(sw);
		return;
	}
	if (stdin_queued(s) > EXEC_HIGH_WATER)
		client_pause(s, true);
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
		resize_msg(s, m + 1, n - 1);
		break;
	default:
		break;
	}
}

/* The client is gone or broke the protocol: stop everything. code is a
 * websocket close code, or for SPDY non-zero for a protocol error. */
static void client_lost(struct exec_session *s, uint16_t code)
{
	if (code != 0 && s->spdy)
		send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
	else if (code != 0)
		send_close(s, code);
	session_end(s);
}

/* The websocket client can take the output now. kubectl (client-go's
 * websocket executor, 1.30 to at least 1.33) starts reading the connection
 * in one goroutine while another registers its streams, and discards ("Unknown
 * stream id 1, discarding message") what comes for a stream not registered
 * yet: output sent right after the 101 is sometimes lost, the head of it,
 * with exit code 0. Nothing tells when the streams exist unless the client
 * sends a message (stdin, its close, a terminal size), so without one the
 * output waits WS_STREAMS_MS: the kubelet's answer comes after a runtime
 * round trip too. The status waits as well (maybe_finish), so a command
 * that failed to start is not reported as a success. */
static void ws_streams_ready(struct exec_session *s)
{
	if (s->streams_ready || s->finished)
		return;
	s->streams_ready = true;
	uv_timer_stop(&s->timer);
	start_output(s);
	maybe_finish(s);
}

static void on_ws_streams(uv_timer_t *t)
{
	ws_streams_ready(t->data);
}

/* Parses websocket frames from buf; returns the bytes used, or -1 when the
 * session ended. */
static long ws_input(struct exec_session *s, const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (!s->finished && off < len) {
		struct ws_frame f;
		long n = ws_parse_frame(buf + off, len - off, true, s->frame, EXEC_MAX_MESSAGE, &f);

		if (n == WS_NEED_MORE)
			break;
		if (n == WS_ERROR) {
			client_lost(s, WS_CLOSE_PROTOCOL);
			return -1;
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
			return -1;
		default: {
			int r = ws_assemble(&s->as, &f, s->frame);

			if (r == WS_ERROR) {
				client_lost(s, WS_CLOSE_PROTOCOL);
				return -1;
			}
			if (r == 1 && s->as.opcode == WS_OP_BINARY)
				on_message(s, s->as.buf, s->as.len);
			/* Data comes from code that holds the client's streams
			 * (a ping would not: kubectl sends those from its
			 * reading loop). */
			if (r == 1)
				ws_streams_ready(s);
			break;
		}
		}
	}
	return s->finished ? -1 : (long)off;
}

static int channel_of(uint32_t sid, const struct exec_session *s)
{
	for (int ch = 0; ch < N_CHANNELS; ch++)
		if (s->sid[ch] == sid && sid != 0)
			return ch;
	return -1;
}

/* Whether every stream the query asked for is open. */
static bool spdy_all_streams(const struct exec_session *s)
{
	return s->sid[CH_ERROR] != 0 && (!s->ask_in || s->sid[CH_STDIN] != 0) &&
	       (!s->ask_out || s->sid[CH_STDOUT] != 0) &&
	       (!s->ask_err || s->sid[CH_STDERR] != 0) &&
	       (!s->tty || s->version < 3 || s->sid[CH_RESIZE] != 0);
}

/* A SYN_STREAM: which channel it is for, then SYN_REPLY. Returns -1 when
 * the connection must end. */
static int spdy_syn_stream_in(struct exec_session *s, const struct spdy_frame *f)
{
	static const char *const types[N_CHANNELS] = {"stdin", "stdout", "stderr", "error",
						      "resize"};
	static const char *const none[] = {NULL};
	struct spdy_nv nv;
	uint8_t reply[256], rst[16];
	long pl, n;
	int ch = -1;

	/* Client streams are odd and grow. */
	if (f->stream_id % 2 == 0 || f->stream_id <= s->last_sid)
		return -1;
	s->last_sid = f->stream_id;
	pl = spdy_block_inflate(&s->zin, f->block, f->block_len, s->plain, SPDY_MAX_BLOCK);
	if (pl < 0)
		return -1;          /* the compression context is lost with it */
	if (spdy_nv_find(s->plain, (size_t)pl, "streamtype", &nv) == 1)
		for (int i = 0; i < N_CHANNELS; i++)
			if (strlen(types[i]) == nv.value_len &&
			    memcmp(types[i], nv.value, nv.value_len) == 0)
				ch = i;
	if (ch < 0 || s->sid[ch] != 0) {
		raw_send(s, rst, spdy_rst_stream(rst, f->stream_id,
						 ch < 0 ? SPDY_REFUSED_STREAM : SPDY_STREAM_IN_USE));
		return 0;
	}
	s->sid[ch] = f->stream_id;
	s->window[ch] = s->initial_window;
	n = spdy_syn_reply(&s->zout, f->stream_id, 0, none, reply, sizeof reply);
	if (n < 0)
		return -1;
	raw_send(s, reply, (size_t)n);
	if (ch == CH_STDIN && (f->flags & SPDY_FLAG_FIN))
		stdin_close(s);
	if (!s->streams_ready && spdy_all_streams(s)) {
		s->streams_ready = true;
		uv_timer_stop(&s->timer);
		start_output(s);
		maybe_finish(s);
	}
	return 0;
}

static void spdy_settings_in(struct exec_session *s, const struct spdy_frame *f)
{
	for (uint32_t i = 0; i < f->n_settings; i++) {
		uint8_t fl;
		uint32_t id, v;

		spdy_setting(f, i, &fl, &id, &v);
		if (id != SPDY_SETTINGS_INITIAL_WINDOW_SIZE || v > 0x7FFFFFFFu)
			continue;
		/* Open streams move by the difference (SPDY/3 2.6.8). */
		for (int ch = 0; ch < N_CHANNELS; ch++)
			s->window[ch] += (int64_t)v - s->initial_window;
		s->initial_window = v;
		s->flow = true;
	}
}

/* Parses SPDY frames from buf; returns the bytes used, or -1 when the
 * session ended. */
static long spdy_input(struct exec_session *s, const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (!s->finished && off < len) {
		struct spdy_frame f;
		long n = spdy_parse_frame(buf + off, len - off, EXEC_MAX_MESSAGE, &f);
		int ch;

		if (n == SPDY_NEED_MORE)
			break;
		if (n == SPDY_ERROR) {
			client_lost(s, 1);
			return -1;
		}
		off += (size_t)n;
		if (!f.control) {
			ch = channel_of(f.stream_id, s);
			/* Only stdin carries input (resize messages are a few
			 * bytes, never near a window, and tty is not run). */
			if (ch == CH_STDIN)
				stdin_write(s, f.payload, f.length);
			else if (ch == CH_RESIZE && f.length > 0)
				resize_msg(s, f.payload, f.length);
			if (ch == CH_STDIN && (f.flags & SPDY_FLAG_FIN))
				stdin_close(s);
			continue;
		}
		switch (f.type) {
		case SPDY_SYN_STREAM:
			if (spdy_syn_stream_in(s, &f) != 0) {
				client_lost(s, 1);
				return -1;
			}
			break;
		case SPDY_RST_STREAM:
			ch = channel_of(f.stream_id, s);
			if (ch == CH_STDIN) {
				stdin_close(s);
			} else if (ch >= 0 && ch != CH_RESIZE) {
				/* Whoever reads the output or the status is gone. */
				client_lost(s, 0);
				return -1;
			}
			break;
		case SPDY_SETTINGS:
			spdy_settings_in(s, &f);
			break;
		case SPDY_PING:
			/* Odd ids are the client's; ours would be even. */
			if (f.ping_id % 2 == 1) {
				uint8_t b[12];

				raw_send(s, b, spdy_ping(b, f.ping_id));
			}
			break;
		case SPDY_GOAWAY:
			/* The client leaves before the command ended. */
			client_lost(s, 0);
			return -1;
		case SPDY_WINDOW_UPDATE:
			s->flow = true;
			if (f.stream_id == 0) {
				s->session_window += f.delta;
			} else {
				ch = channel_of(f.stream_id, s);
				if (ch >= 0)
					s->window[ch] += f.delta;
			}
			spdy_flush_held(s);
			if (!spdy_holding(s))
				maybe_finish(s);
			break;
		default:
			/* HEADERS and unknown types carry nothing for exec. */
			break;
		}
	}
	return s->finished ? -1 : (long)off;
}

static void on_client(struct http_raw *raw, const char *bytes, ssize_t len, void *data)
{
	struct exec_session *s = data;
	long used;

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
	used = s->spdy ? spdy_input(s, s->rbuf, s->rlen) : ws_input(s, s->rbuf, s->rlen);
	if (used < 0)
		return;
	memmove(s->rbuf, s->rbuf + used, s->rlen - (size_t)used);
	s->rlen -= (size_t)used;
}

static void on_streams_timeout(uv_timer_t *t)
{
	struct exec_session *s = t->data;

	log_warn("exec %s: the client did not open its streams", s->cmdline);
	client_lost(s, 1);
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

/* The upgrade asked for: its 101 headers in headers, and the session's
 * transport fields set. Returns NULL, or why the request cannot be served. */
static const char *negotiate(struct http_req *req, struct exec_session *s, char *headers,
			     size_t size)
{
	static const char *const ws_protocols[] = {"v5.channel.k8s.io", "v4.channel.k8s.io",
						   NULL};
	static const char *const spdy_protocols[] = {"v4.channel.k8s.io", "v3.channel.k8s.io",
						     "v2.channel.k8s.io", NULL};
	const char *up = http_req_header(req, "Upgrade");
	char offered[512], accept[WS_ACCEPT_SIZE];
	const char *proto;

	if (up != NULL && strcasecmp(up, "SPDY/3.1") == 0) {
		proto = ws_pick_protocol(http_req_header_join(req, "X-Stream-Protocol-Version",
							      offered, sizeof offered),
					 spdy_protocols);
		if (proto == NULL)
			return "unable to upgrade: X-Stream-Protocol-Version offers none of "
			       "v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io";
		s->spdy = true;
		s->version = proto[1] - '0';
		snprintf(headers, size,
			 "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
			 "X-Stream-Protocol-Version: %s\r\n", proto);
		return NULL;
	}
	if (up == NULL || strcasecmp(up, "websocket") != 0 ||
	    ws_accept_key(http_req_header(req, "Sec-WebSocket-Key"), accept) != 0)
		return "exec needs a websocket (v5.channel.k8s.io) or SPDY/3.1 upgrade";
	proto = ws_pick_protocol(http_req_header(req, "Sec-WebSocket-Protocol"), ws_protocols);
	if (proto == NULL)
		return "exec speaks v5.channel.k8s.io or v4.channel.k8s.io only";
	s->v5 = strcmp(proto, ws_protocols[0]) == 0;
	snprintf(headers, size,
		 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
		 "Sec-WebSocket-Protocol: %s\r\n", accept, proto);
	return NULL;
}

static void session_abandon(struct exec_session *s)
{
	spdy_zin_free(&s->zin);
	spdy_zout_free(&s->zout);
	free(s->plain);
	free(s->rbuf);
	free(s->frame);
	free(s->msg);
	free(s);
}

void exec_serve(uv_loop_t *loop, struct exec_group *g, struct http_req *req,
		const struct exec_spec *spec)
{
	char headers[512];
	struct nsexec_spec ns = {0};
	struct exec_session *s;
	const char *why;
	int fds[3];

	if (spec->argv == NULL || spec->argv[0] == NULL) {
		reply_400(req, "you must specify at least one command for the container");
		return;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		http_reply(req, 500, "text/plain", "out of memory", 13);
		return;
	}
	s->pidfd = -1;
	why = negotiate(req, s, headers, sizeof headers);
	if (why != NULL) {
		free(s);
		reply_400(req, why);
		return;
	}
	if ((s->rbuf = malloc(EXEC_MAX_MESSAGE + WS_MAX_HEADER)) == NULL ||
	    (!s->spdy && ((s->frame = malloc(EXEC_MAX_MESSAGE)) == NULL ||
			  (s->msg = malloc(EXEC_MAX_MESSAGE)) == NULL)) ||
	    (s->spdy && ((s->plain = malloc(SPDY_MAX_BLOCK)) == NULL ||
			 spdy_zin_init(&s->zin) != 0 || spdy_zout_init(&s->zout) != 0))) {
		session_abandon(s);
		http_reply(req, 500, "text/plain", "out of memory", 13);
		return;
	}
	s->g = g;
	s->next = g->head;
	if (g->head != NULL)
		g->head->prev = s;
	g->head = s;
	g->live++;
	s->tty = query_true(req, "tty");
	/* Only v5/v4 websockets and SPDY v3+ carry terminal sizes. */
	s->await_resize = s->tty && (!s->spdy || s->version >= 3);
	s->ask_in = s->want_in = query_true(req, "stdin");
	s->ask_out = s->want_out = query_true(req, "stdout");
	/* With a terminal, kubectl opens no stderr stream (stderr goes
	 * through the terminal). */
	s->ask_err = s->want_err = query_true(req, "stderr") && !(s->spdy && s->tty);
	s->initial_window = SPDY_DEFAULT_WINDOW;
	s->session_window = SPDY_DEFAULT_WINDOW;
	if (!s->spdy)
		ws_assembler_init(&s->as, s->msg, EXEC_MAX_MESSAGE);
	format_cmdline(s, spec->argv);
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	uv_timer_init(loop, &s->probe);
	s->probe.data = s;
	s->handles_open = 2;         /* the timers */
	ns.argv = spec->argv;
	ns.env = spec->env;
	ns.cwd = spec->cwd;
	ns.ns_pid = spec->ns_pid;
	ns.pipe[0] = s->want_in;
	ns.pipe[1] = s->want_out;
	ns.pipe[2] = s->want_err;
	/* With a terminal (kubectl asks for stdout, and no stderr) the
	 * command gets a new one on all three; its master carries stdin in and
	 * the output out through pout. */
	ns.tty = s->tty && s->want_out;
	if (ns.tty) {
		ns.pipe[0] = ns.pipe[2] = false;
		s->want_in = s->want_err = false;
	}
	s->pid = nsexec_start(&ns, fds, s->spawn_error, sizeof s->spawn_error);
	if (s->pid > 0) {
		uv_pipe_t *pipes[3] = {&s->pin, &s->pout, &s->perr};

		s->running = true;
		s->pty = ns.tty;
		for (int i = 0; i < 3; i++) {
			if (fds[i] < 0)
				continue;
			uv_pipe_init(loop, pipes[i], 0);
			pipes[i]->data = s;
			s->handles_open++;
			if (uv_pipe_open(pipes[i], fds[i]) != 0)
				close(fds[i]);      /* reads and writes then fail: EOF */
		}
		if (start_reaper(loop, s) != 0)
			log_warn("exec %s: cannot watch pid %d", s->cmdline, (int)s->pid);
	} else {
		s->pid = 0;
		/* No pipes were made: nothing to wait for but the status. */
		s->want_in = s->want_out = s->want_err = false;
	}
	if (http_upgrade(req, headers, on_client, s, &s->raw) != 0) {
		s->raw = NULL;
		session_end(s);
		return;
	}
	if (s->spdy) {
		/* Output waits for its streams; so does the status. */
		uv_timer_start(&s->timer, on_streams_timeout, SPDY_STREAMS_MS, 0);
		log_debug("exec %s: pid %d, SPDY v%d", s->cmdline, (int)s->pid, s->version);
		return;
	}
	/* Output and status wait for the client's streams. */
	uv_timer_start(&s->timer, on_ws_streams, WS_STREAMS_MS, 0);
	log_debug("exec %s: pid %d", s->cmdline, (int)s->pid);
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
