/* bench.c — `capstan bench`: closed-loop workloads and watch fan-out over the
 * etcd v3 JSON gateway, with throughput and latency percentiles.
 *
 * Happy path of a closed-loop workload (put, get, range, txn, lease): every
 * simulated client owns one http_client, hence one keep-alive connection,
 * and keeps exactly one request in flight; each answer is timed and the
 * next request goes out from the answer's callback. A deadline timer (or the
 * --total count, or SIGINT) stops issuing; the run ends when every client is
 * idle. Reads first make sure the key space exists (preload, untimed).
 *
 * Watch: W watchers watch one key, K to a stream (one by default; etcd's own
 * benchmark puts 100 on each of its streams, as a client library does when
 * one process watches many keys); a single writer puts to it one round at a
 * time; a round ends when every watcher has seen the put's revision. Each
 * watcher's latency is the time from sending the put to its event; the time
 * from the put's acknowledgement to the event (0 when the event came first,
 * as it does when a server notifies before it answers) is reported beside it.
 *
 * Failure modes: a non-200 answer or a transport error counts as an error
 * (the first one is kept for the report); after a transport error the client
 * waits 100 ms so a dead server is not spun on. A watch round that does not
 * complete in 10 s counts the missing events as errors. A watch run's timed
 * part ends with the round under way at the deadline.
 *
 * The generator itself shares the machine with the server: it is kept lean
 * (no JSON parsing on the closed-loop hot path, one loop thread). */
#include "client/bench.h"

#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "client/pod_json.h"
#include "client/watch_frames.h"
#include "lib/b64.h"
#include "lib/http.h"

#define BENCH_MAX_ENDPOINTS 16
#define BENCH_RETRY_MS 100
#define BENCH_ROUND_TIMEOUT_MS 10000
#define BENCH_WATCH_OPENING 256       /* watch streams being set up at once */
#define BENCH_WATCH_PER_STREAM_MAX 1000  /* creates in one request body */
#define BENCH_KEY_MAX 128
#define BENCH_WATCH_SETUP_MS 120000
/* etcd's gateway (grpc-gateway on Go's HTTP/1.1 server) stops reading a
 * request body once it starts to answer: under load, the creates behind
 * the first few of a stream's body can be dropped. A stream whose creates
 * stall this long is opened again. */
#define BENCH_WATCH_STALL_MS 3000
#define BENCH_MAX_PIDS 16
#define BENCH_K8S_VALUES 256          /* distinct objects of --values k8s */

const char bench_usage[] =
	"  bench WORKLOAD [--conns N] [--duration D | --total N] [--value-size B]\n"
	"        [--key-space N] [--consistency l|s] [--range-size N] [--watchers N]\n"
	"        [--watch-per-stream K] [--values random|k8s] [--prefix P] [--no-preload]\n"
	"        [--server-pid PID[,PID...]]\n"
	"                         load generator over the gateway; WORKLOAD is put,\n"
	"                         get, range, txn, watch or lease (see docs/benchmarks.md)\n";

enum bench_kind { BK_PUT, BK_GET, BK_RANGE, BK_TXN, BK_WATCH, BK_LEASE };

static const char *const bench_kind_names[] = {"put", "get", "range", "txn", "watch", "lease",
					       NULL};

struct bench_opts {
	enum bench_kind kind;
	unsigned conns;
	uint64_t duration_ms;         /* 0 = until total */
	uint64_t total;               /* 0 = until duration */
	unsigned value_size;
	uint64_t key_space;
	unsigned range_size;
	unsigned watchers;
	unsigned watch_per_stream;    /* watchers sharing one /v3/watch stream */
	bool k8s_values;              /* --values k8s: Pod objects of 1-4 KiB */
	bool value_size_set;
	bool serializable;
	bool preload;
	const char *prefix;
	char *urls[BENCH_MAX_ENDPOINTS];
	unsigned nurls;
	bool json;
	unsigned timeout_ms;
	int server_pids[BENCH_MAX_PIDS];   /* --server-pid: CPU time reported per op */
	unsigned npids;
};

struct bench;

/* One simulated client of a closed-loop workload. */
struct bench_conn {
	struct bench *b;
	struct http_client *hc;
	uv_timer_t retry;
	uint64_t t_start;             /* of the request (or lease cycle) in flight */
	int step;                     /* txn: 0 = create the key; lease: 0 grant, 1 put, 2 revoke */
	long long rev;                /* txn: the key's mod_revision */
	long long lease;              /* lease: the granted ID */
	uint64_t seq;                 /* txn/lease: this client's own key number */
	bool busy;
};

/* One watcher: a watch ID on a stream. */
struct bench_watcher {
	long long id;                 /* the server's watch ID, once created */
	long long ev_rev;             /* newest event's mod_revision */
	uint64_t ev_t;                /* when it arrived */
};

/* One /v3/watch stream and the watchers created on it. */
struct bench_stream {
	struct bench *b;
	struct http_call *call;
	struct bench_watcher *w;      /* nw watchers, a slice of bench.w */
	unsigned nw, ncreated;
	struct watch_splitter split;
	uint64_t t_progress;          /* opened, or a watcher created */
	bool reopening;               /* its call is being cancelled to open again */
	bool ended;
};

struct bench {
	uv_loop_t loop;
	struct bench_opts o;
	struct bench_conn *conns;
	unsigned nconns;
	unsigned active;              /* closed-loop clients with work in flight */
	uv_timer_t progress;
	uv_timer_t deadline;
	uv_signal_t sigint;
	uint64_t t0, t_end;
	/* CPU seconds at t0 and t_end: this process, and the --server-pid ones
	 * (negative when one of them could not be read). */
	double cpu_self[2], cpu_server[2];
	bool running;                 /* timed phase */
	bool stopping;
	bool preloading;
	uint64_t issued;
	uint64_t ops;
	uint64_t errors;
	uint64_t cas_failures;
	uint64_t last_ops;            /* at the previous progress line */
	char first_error[200];
	uint32_t *lat;                /* microseconds */
	size_t nlat, caplat;
	uint32_t *lat2;               /* watch: acknowledgement to event */
	size_t nlat2, caplat2;
	uint64_t rng;
	uint64_t next_key;
	uint64_t preload_left;
	char **values;                /* base64 values, used in turn by key */
	unsigned nvalues;
	size_t value_max;             /* longest of them */
	double value_mean;            /* mean raw size */
	int rc;
	/* watch */
	struct http_client *whc;      /* the watch streams' client */
	struct bench_watcher *w;      /* o.watchers */
	struct bench_stream *s;       /* nstreams */
	unsigned nstreams;
	unsigned sopened, screated, sended;   /* streams */
	unsigned wcreated;            /* watchers */
	unsigned reopened;            /* streams opened again (see BENCH_WATCH_STALL_MS) */
	struct http_client *writer;   /* the watch workload's putter */
	uint64_t round_t_send, round_t_ack;
	long long round_rev;          /* 0 until the put is acknowledged */
	unsigned round_got;
	uint64_t rounds;
	uv_timer_t round_timer;
	bool round_on;
	bool watch_ready;
	bool cancelling;
	bool round_timer_on;          /* round_timer was initialised */              /* bench_finish is cancelling the streams */
	struct http_client *probe;    /* the first, untimed request */
};

static uint64_t bench_rand(struct bench *b)
{
	/* xorshift64*: cheap, good enough to pick keys. */
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	return b->rng * 2685821657736338717ULL;
}

static uint64_t bench_now(void)
{
	return uv_hrtime();
}

/* The value to write for key (or round) n, base64. */
static const char *bench_value(const struct bench *b, uint64_t n)
{
	return b->values[n % b->nvalues];
}

static void bench_sample(uint32_t **lat, size_t *n, size_t *cap, uint64_t ns)
{
	uint64_t us = ns / 1000;

	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 65536;
		uint32_t *p = realloc(*lat, c * sizeof(*p));
		if (p == NULL)
			return;       /* a lost sample, not a lost run */
		*lat = p;
		*cap = c;
	}
	(*lat)[(*n)++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void bench_record(struct bench *b, uint64_t ns)
{
	bench_sample(&b->lat, &b->nlat, &b->caplat, ns);
}

static void bench_error(struct bench *b, int status, const char *body, size_t len)
{
	b->errors++;
	if (b->first_error[0] != '\0')
		return;
	if (status < 100)
		snprintf(b->first_error, sizeof(b->first_error), "transport error %d", status);
	else
		snprintf(b->first_error, sizeof(b->first_error), "HTTP %d: %.*s", status,
			 (int)(len > 150 ? 150 : len), body);
}

/* The key of number n, as "<prefix>k/%010llu" base64-encoded into out. */
static void bench_key_b64(const struct bench *b, const char *sub, uint64_t n, char *out)
{
	char key[BENCH_KEY_MAX];
	int kl = snprintf(key, sizeof(key), "%s%s%010" PRIu64, b->o.prefix, sub, n);

	if (kl < 0 || (size_t)kl >= sizeof(key))
		kl = (int)sizeof(key) - 1;
	b64_encode((const uint8_t *)key, (size_t)kl, out);
}

static void bench_str_b64(const char *s, char *out)
{
	b64_encode((const uint8_t *)s, strlen(s), out);
}

/* The value after "name": in a JSON text, skipping blanks and an opening
 * quote; NULL if absent. Enough for the few scalar fields read here. */
static const char *bench_json_field(const char *body, const char *name)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\"", name);
	p = strstr(body, pat);
	if (p == NULL)
		return NULL;
	p += strlen(pat);
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p != ':')
		return NULL;
	p++;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p == '"')
		p++;
	return p;
}

static long long bench_json_int(const char *body, const char *name)
{
	const char *p = bench_json_field(body, name);
	return p != NULL ? strtoll(p, NULL, 10) : 0;
}

static void bench_finish(struct bench *b);
static void bench_conn_issue(struct bench_conn *c);

/* ---- closed-loop workloads ---- */

static void bench_conn_idle(struct bench_conn *c)
{
	struct bench *b = c->b;

	if (!c->busy)
		return;
	c->busy = false;
	b->active--;
	if (b->active == 0)
		bench_finish(b);
}

static bool bench_may_issue(struct bench *b)
{
	if (b->stopping)
		return false;
	if (b->preloading)
		return b->preload_left > 0;
	return b->o.total == 0 || b->issued < b->o.total;
}

static void bench_conn_retry_cb(uv_timer_t *t)
{
	bench_conn_issue(t->data);
}

/* ---- CPU time of the timed part ---- */

/* User plus system CPU seconds of this process, all threads. */
static double bench_cpu_self(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return -1;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The same for the --server-pid processes together, from /proc/PID/stat;
 * -1 when one of them cannot be read. */
static double bench_cpu_server(const struct bench_opts *o)
{
	long tck = sysconf(_SC_CLK_TCK);
	double sum = 0;

	for (unsigned i = 0; i < o->npids; i++) {
		char path[64], buf[1024], *p;
		unsigned long long ut, st;
		size_t n;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/stat", o->server_pids[i]);
		f = fopen(path, "r");
		if (f == NULL)
			return -1;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		/* The command name may hold spaces and parentheses: fields are
		 * counted from the last ')'. utime and stime are fields 14, 15. */
		p = strrchr(buf, ')');
		if (p == NULL || tck <= 0 ||
		    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
			   &st) != 2)
			return -1;
		sum += (double)(ut + st) / (double)tck;
	}
	return sum;
}

static void bench_mark_start(struct bench *b)
{
	b->t0 = bench_now();
	b->cpu_self[0] = bench_cpu_self();
	b->cpu_server[0] = bench_cpu_server(&b->o);
}

static void bench_mark_end(struct bench *b, uint64_t now)
{
	b->t_end = now;
	b->cpu_self[1] = bench_cpu_self();
	b->cpu_server[1] = bench_cpu_server(&b->o);
}

/* Microseconds of CPU per operation between the marks, or -1. */
static double bench_cpu_per_op(const struct bench *b, const double *cpu)
{
	if (cpu[0] < 0 || cpu[1] < 0 || b->t_end == 0 || b->ops == 0)
		return -1;
	return (cpu[1] - cpu[0]) * 1e6 / (double)b->ops;
}

static void bench_conn_on_answer(void *data, int status, const char *body, size_t len)
{
	struct bench_conn *c = data;
	struct bench *b = c->b;
	uint64_t now = bench_now();
	bool timed = b->running && !b->preloading;
	bool cycle_done = true;

	if (status != 200) {
		if (timed && (b->t_end == 0 || now <= b->t_end))
			bench_error(b, status, body, len);
		else if (b->preloading)
			bench_error(b, status, body, len);
		c->step = 0;
		if (status < 100 && !b->stopping) {
			uv_timer_start(&c->retry, bench_conn_retry_cb, BENCH_RETRY_MS, 0);
			return;
		}
		goto next;
	}
	switch (b->o.kind) {
	case BK_TXN:
		if (c->step == 0) {
			c->rev = bench_json_int(body, "revision");
			c->step = 1;
			cycle_done = false;
		} else {
			const char *s = bench_json_field(body, "succeeded");
			if (s != NULL && strncmp(s, "true", 4) == 0) {
				c->rev = bench_json_int(body, "revision");
			} else {
				/* Someone else wrote the key: learn it again. */
				b->cas_failures++;
				c->step = 0;
			}
		}
		break;
	case BK_LEASE:
		if (c->step == 0) {
			c->lease = bench_json_int(body, "ID");
			if (c->lease == 0) {
				bench_error(b, 200, body, len);
				goto next;
			}
			c->step = 1;
			cycle_done = false;
		} else if (c->step == 1) {
			c->step = 2;
			cycle_done = false;
		} else {
			c->step = 0;
		}
		break;
	default:
		break;
	}
	if (!cycle_done) {
		bench_conn_issue(c);
		return;
	}
	if (timed && (b->t_end == 0 || now <= b->t_end)) {
		b->ops++;
		bench_record(b, now - c->t_start);
	}
next:
	if (b->o.total != 0 && timed && b->ops + b->errors >= b->o.total && b->t_end == 0)
		bench_mark_end(b, now);
	if (!bench_may_issue(b)) {
		bench_conn_idle(c);
		return;
	}
	bench_conn_issue(c);
}

/* Builds and sends the client's next request. A request that cannot even
 * be queued ends this client. */
static void bench_conn_issue(struct bench_conn *c)
{
	struct bench *b = c->b;
	char k[BENCH_KEY_MAX * 2], e[BENCH_KEY_MAX * 2];
	char *body;
	size_t cap = b->value_max + 4 * BENCH_KEY_MAX + 256;
	const char *path;
	int n;
	uint64_t key;

	/* A lease cycle is finished even when stopping: no lease is left behind. */
	bool mid_cycle = b->o.kind == BK_LEASE && c->step != 0 && !b->preloading;

	if (!mid_cycle && !bench_may_issue(b)) {
		bench_conn_idle(c);
		return;
	}
	body = malloc(cap);
	if (body == NULL) {
		bench_error(b, 0, "", 0);
		bench_conn_idle(c);
		return;
	}
	if (b->preloading) {
		key = b->next_key++;
		b->preload_left--;
		bench_key_b64(b, "k/", key, k);
		path = "/v3/kv/put";
		n = snprintf(body, cap, "{\"key\":\"%s\",\"value\":\"%s\"}", k, bench_value(b, key));
		goto send;
	}
	if (b->o.kind != BK_LEASE || c->step == 0)
		c->t_start = bench_now();
	switch (b->o.kind) {
	case BK_PUT:
		b->issued++;
		key = b->next_key++ % b->o.key_space;
		bench_key_b64(b, "k/", key, k);
		path = "/v3/kv/put";
		n = snprintf(body, cap, "{\"key\":\"%s\",\"value\":\"%s\"}", k, bench_value(b, key));
		break;
	case BK_GET:
		b->issued++;
		key = bench_rand(b) % b->o.key_space;
		bench_key_b64(b, "k/", key, k);
		path = "/v3/kv/range";
		n = snprintf(body, cap, "{\"key\":\"%s\"%s}", k,
			     b->o.serializable ? ",\"serializable\":true" : "");
		break;
	case BK_RANGE:
		b->issued++;
		key = bench_rand(b) % (b->o.key_space - b->o.range_size + 1);
		bench_key_b64(b, "k/", key, k);
		bench_key_b64(b, "k/", key + b->o.range_size, e);
		path = "/v3/kv/range";
		n = snprintf(body, cap, "{\"key\":\"%s\",\"range_end\":\"%s\"%s}", k, e,
			     b->o.serializable ? ",\"serializable\":true" : "");
		break;
	case BK_TXN:
		bench_key_b64(b, "txn/", c->seq, k);
		if (c->step == 0) {
			path = "/v3/kv/put";
			n = snprintf(body, cap, "{\"key\":\"%s\",\"value\":\"%s\"}", k,
				     bench_value(b, c->seq));
			break;
		}
		b->issued++;
		path = "/v3/kv/txn";
		n = snprintf(body, cap,
			     "{\"compare\":[{\"key\":\"%s\",\"target\":\"MOD\",\"result\":\"EQUAL\","
			     "\"mod_revision\":\"%lld\"}],\"success\":[{\"request_put\":"
			     "{\"key\":\"%s\",\"value\":\"%s\"}}]}",
			     k, c->rev, k, bench_value(b, b->issued));
		break;
	case BK_LEASE:
		if (c->step == 0) {
			b->issued++;
			path = "/v3/lease/grant";
			n = snprintf(body, cap, "{\"TTL\":\"60\"}");
		} else if (c->step == 1) {
			key = c->seq;
			bench_key_b64(b, "lease/", key, k);
			path = "/v3/kv/put";
			n = snprintf(body, cap, "{\"key\":\"%s\",\"value\":\"%s\",\"lease\":\"%lld\"}",
				     k, bench_value(b, key), c->lease);
		} else {
			path = "/v3/lease/revoke";
			n = snprintf(body, cap, "{\"ID\":\"%lld\"}", c->lease);
		}
		break;
	default:
		n = -1;
		path = "";
		break;
	}
send:
	if (n < 0 || (size_t)n >= cap ||
	    http_client_post(c->hc, path, "application/json", body, (size_t)n,
			     b->o.timeout_ms, bench_conn_on_answer, c) != 0) {
		free(body);
		bench_error(b, 0, "", 0);
		bench_conn_idle(c);
		return;
	}
	free(body);
}

static void bench_start_conns(struct bench *b)
{
	unsigned i;

	b->active = b->nconns;
	for (i = 0; i < b->nconns; i++)
		b->conns[i].busy = true;
	for (i = 0; i < b->nconns && !b->stopping; i++)
		bench_conn_issue(&b->conns[i]);
}

/* ---- watch ---- */

static void bench_watch_open_more(struct bench *b);
static void bench_round_start(struct bench *b);
static void bench_deadline_cb(uv_timer_t *t);

static void bench_round_end(struct bench *b)
{
	unsigned i;
	uint64_t now = bench_now();
	/* A round under way at the deadline is timed to its end (bench_stop):
	 * a round of 10,000 watchers can outlast a short run. */
	bool in_time = b->t_end == 0;

	b->round_on = false;
	uv_timer_stop(&b->round_timer);
	for (i = 0; i < b->o.watchers; i++) {
		struct bench_watcher *w = &b->w[i];
		if (w->ev_rev != b->round_rev) {
			if (in_time) {
				b->errors++;
				if (b->first_error[0] == '\0')
					snprintf(b->first_error, sizeof(b->first_error),
						 "a watcher missed revision %lld", b->round_rev);
			}
			continue;
		}
		if (in_time) {
			b->ops++;
			bench_record(b, w->ev_t - b->round_t_send);
			bench_sample(&b->lat2, &b->nlat2, &b->caplat2,
				     w->ev_t > b->round_t_ack ? w->ev_t - b->round_t_ack : 0);
		}
	}
	b->rounds++;
	if ((b->stopping || (b->o.total != 0 && b->rounds >= b->o.total)) && b->t_end == 0)
		bench_mark_end(b, now);
	if (b->stopping || (b->o.total != 0 && b->rounds >= b->o.total)) {
		bench_finish(b);
		return;
	}
	bench_round_start(b);
}

static void bench_round_check(struct bench *b)
{
	if (b->round_on && b->round_rev != 0 && b->round_got >= b->o.watchers)
		bench_round_end(b);
}

static void bench_round_timeout_cb(uv_timer_t *t)
{
	bench_round_end(t->data);
}

static void bench_writer_on_answer(void *data, int status, const char *body, size_t len)
{
	struct bench *b = data;
	unsigned i;

	if (!b->round_on)
		return;
	if (status != 200) {
		bench_error(b, status, body, len);
		b->round_on = false;
		uv_timer_stop(&b->round_timer);
		if (b->stopping) {
			if (b->t_end == 0)
				bench_mark_end(b, bench_now());
			bench_finish(b);
		}
		else
			uv_timer_start(&b->round_timer, bench_round_timeout_cb, BENCH_RETRY_MS, 0);
		return;
	}
	b->round_t_ack = bench_now();
	b->round_rev = bench_json_int(body, "revision");
	b->round_got = 0;
	for (i = 0; i < b->o.watchers; i++)
		if (b->w[i].ev_rev == b->round_rev)
			b->round_got++;
	bench_round_check(b);
}

static void bench_round_start(struct bench *b)
{
	char k[BENCH_KEY_MAX * 2];
	char key[BENCH_KEY_MAX];
	char *body;
	size_t cap = b->value_max + 2 * BENCH_KEY_MAX + 64;
	int n;

	if (b->stopping) {
		bench_finish(b);
		return;
	}
	snprintf(key, sizeof(key), "%swatch/key", b->o.prefix);
	bench_str_b64(key, k);
	body = malloc(cap);
	if (body == NULL)
		goto fail;
	n = snprintf(body, cap, "{\"key\":\"%s\",\"value\":\"%s\"}", k, bench_value(b, b->rounds));
	b->round_on = true;
	b->round_rev = 0;
	b->round_got = 0;
	b->round_t_send = bench_now();
	uv_timer_start(&b->round_timer, bench_round_timeout_cb, BENCH_ROUND_TIMEOUT_MS, 0);
	if (http_client_post(b->writer, "/v3/kv/put", "application/json", body, (size_t)n,
			     b->o.timeout_ms, bench_writer_on_answer, b) != 0) {
		free(body);
		goto fail;
	}
	free(body);
	return;
fail:
	b->round_on = false;
	bench_error(b, 0, "", 0);
	b->stopping = true;
	bench_finish(b);
}

static void bench_watch_event(struct bench *b, struct bench_watcher *w, long long rev)
{
	if (rev > w->ev_rev) {
		w->ev_rev = rev;
		w->ev_t = bench_now();
		if (b->round_on && b->round_rev != 0 && rev == b->round_rev) {
			b->round_got++;
			bench_round_check(b);
		}
	}
}

/* The watcher of a stream with this watch ID. IDs are per stream and, on
 * both servers, handed out 0, 1, 2... in the order of the creates; the
 * search covers a server that numbers them otherwise. */
static struct bench_watcher *bench_stream_watcher(struct bench_stream *st, long long id)
{
	unsigned i;

	if (id >= 0 && id < (long long)st->ncreated && st->w[id].id == id)
		return &st->w[id];
	for (i = 0; i < st->ncreated; i++)
		if (st->w[i].id == id)
			return &st->w[i];
	return NULL;
}

/* The event frames of a created stream, scanned rather than parsed (see
 * client/watch_frames.h). */
static bool bench_watch_frame_fast(struct bench_stream *st, const char *s, size_t n)
{
	const char *p = s;
	struct bench_watcher *w;
	long long id, rev;

	if (!watch_frame_id(s, n, &id))
		return false;
	w = st->nw == 1 ? &st->w[0] : bench_stream_watcher(st, id);
	if (w == NULL)
		return false;
	while (watch_frame_next_rev(&p, s + n, &rev))
		bench_watch_event(st->b, w, rev);
	return true;
}

static long long bench_json_i64(json_t *v)
{
	return json_is_string(v) ? strtoll(json_string_value(v), NULL, 10)
				 : (long long)json_integer_value(v);
}

/* One complete frame {"result": {...}} of a watch stream. */
static void bench_watch_frame(struct bench_stream *st, const char *s, size_t n)
{
	struct bench *b = st->b;
	json_t *root, *res, *events;
	struct bench_watcher *w;
	long long id;
	size_t i, ne;

	if (st->ncreated == st->nw && bench_watch_frame_fast(st, s, n))
		return;
	root = json_loadb(s, n, 0, NULL);
	res = json_object_get(root, "result");
	events = json_object_get(res, "events");
	ne = json_array_size(events);
	if (res == NULL || json_is_true(json_object_get(res, "canceled"))) {
		bench_error(b, 200, s, n);
		goto out;
	}
	id = bench_json_i64(json_object_get(res, "watch_id"));
	if (json_is_true(json_object_get(res, "created")) && st->ncreated < st->nw) {
		st->w[st->ncreated++].id = id;
		st->t_progress = bench_now();
		b->wcreated++;
		if (st->ncreated == st->nw) {
			b->screated++;
			bench_watch_open_more(b);
		}
	}
	w = bench_stream_watcher(st, id);
	for (i = 0; i < ne && w != NULL; i++) {
		json_t *kv = json_object_get(json_array_get(events, i), "kv");
		bench_watch_event(b, w, bench_json_i64(json_object_get(kv, "mod_revision")));
	}
out:
	json_decref(root);
}

static bool bench_watch_frame_cb(void *data, const char *frame, size_t len)
{
	struct bench_stream *st = data;

	bench_watch_frame(st, frame, len);
	return st->call != NULL;      /* false: ended from inside the frame */
}

static void bench_watch_chunk(void *data, const char *bytes, size_t len)
{
	struct bench_stream *st = data;

	if (watch_splitter_feed(&st->split, bytes, len, bench_watch_frame_cb, st) < 0)
		bench_error(st->b, 0, "", 0);
}

static void bench_watch_done(void *data, int status, const char *body, size_t len)
{
	struct bench_stream *st = data;
	struct bench *b = st->b;

	st->call = NULL;
	if (st->reopening)
		return;
	st->ended = true;
	b->sended++;
	if (!b->stopping) {
		bench_error(b, status, body, len);
		if (st->ncreated < st->nw) {
			/* Could not even set it up: the run cannot go on. */
			b->stopping = true;
			b->rc = 1;
			bench_finish(b);
			return;
		}
	}
	if (b->stopping)
		bench_finish(b);
}

/* The body that creates a stream's watchers: one create request each, back
 * to back, as etcd's gateway reads a stream's requests. */
static char *bench_watch_body(struct bench *b, unsigned nw, size_t *len)
{
	char k[BENCH_KEY_MAX * 2], key[BENCH_KEY_MAX], one[BENCH_KEY_MAX * 3];
	char *body;
	int n;
	unsigned i;

	snprintf(key, sizeof(key), "%swatch/key", b->o.prefix);
	bench_str_b64(key, k);
	n = snprintf(one, sizeof(one), "{\"create_request\":{\"key\":\"%s\"}}\n", k);
	body = malloc((size_t)n * nw + 1);
	if (body == NULL)
		return NULL;
	for (i = 0; i < nw; i++)
		memcpy(body + (size_t)n * i, one, (size_t)n);
	*len = (size_t)n * nw;
	return body;
}

/* Opens st's stream with a create for each of its watchers; false when
 * that cannot even be started (the run stops). */
static bool bench_watch_open_stream(struct bench *b, struct bench_stream *st)
{
	size_t n = 0;
	char *body = bench_watch_body(b, st->nw, &n);
	bool ok = body != NULL && http_client_stream(b->whc, "/v3/watch", body, n,
						     bench_watch_chunk, bench_watch_done, st,
						     &st->call) == 0;
	free(body);
	st->t_progress = bench_now();
	if (!ok) {
		st->ended = true;
		b->sended++;
		bench_error(b, 0, "", 0);
		b->stopping = true;
		b->rc = 1;
	}
	return ok;
}

/* Streams set up in part and stalled are closed (cancelling the watchers
 * they have) and opened again. */
static void bench_watch_reopen_stalled(struct bench *b)
{
	uint64_t now = bench_now();

	for (unsigned i = 0; i < b->sopened && !b->stopping; i++) {
		struct bench_stream *st = &b->s[i];
		if (st->call == NULL || st->ncreated == st->nw ||
		    now - st->t_progress < (uint64_t)BENCH_WATCH_STALL_MS * 1000000)
			continue;
		st->reopening = true;
		http_call_cancel(st->call);
		st->reopening = false;
		b->wcreated -= st->ncreated;
		st->ncreated = 0;
		watch_splitter_clear(&st->split);
		b->reopened++;
		bench_watch_open_stream(b, st);
	}
}

static void bench_watch_open_more(struct bench *b)
{
	while (!b->stopping && b->sopened < b->nstreams &&
	       b->sopened - b->screated < BENCH_WATCH_OPENING)
		bench_watch_open_stream(b, &b->s[b->sopened++]);
	if (!b->watch_ready && b->wcreated == b->o.watchers) {
		b->watch_ready = true;
		fprintf(stderr, "bench: %u watchers on %u streams ready\n", b->o.watchers,
			b->nstreams);
		bench_mark_start(b);
		b->running = true;
		uv_timer_stop(&b->deadline);
		if (b->o.duration_ms > 0)
			uv_timer_start(&b->deadline, bench_deadline_cb, b->o.duration_ms, 0);
		bench_round_start(b);
	}
	if (b->stopping)
		bench_finish(b);
}

/* ---- run control ---- */

static void bench_stop(struct bench *b);

static void bench_deadline_cb(uv_timer_t *t)
{
	bench_stop(t->data);
}

static void bench_watch_setup_cb(uv_timer_t *t)
{
	struct bench *b = t->data;

	fprintf(stderr, "Error: bench: only %u of %u watchers ready after %d s\n", b->wcreated,
		b->o.watchers, BENCH_WATCH_SETUP_MS / 1000);
	/* Which streams, and what they got: enough to tell a server that
	 * dropped creates from one that never answered. */
	for (unsigned i = 0, shown = 0; i < b->sopened && shown < 5; i++) {
		struct bench_stream *st = &b->s[i];
		if (st->ncreated == st->nw)
			continue;
		fprintf(stderr, "  stream %u: %u of %u created%s, %zu bytes of an unfinished frame\n",
			i, st->ncreated, st->nw, st->ended ? ", ended" : "", st->split.len);
		shown++;
	}
	b->rc = 1;
	bench_stop(b);
}

static void bench_handle_closed(uv_handle_t *h)
{
	(void)h;
}

static void bench_stop(struct bench *b)
{
	unsigned i;

	if (b->stopping)
		return;
	b->stopping = true;
	if (b->o.kind == BK_WATCH) {
		/* The round under way ends the timed part (bench_round_end). */
		if (!b->round_on) {
			if (b->t_end == 0)
				bench_mark_end(b, bench_now());
			bench_finish(b);
		}
		return;
	}
	if (b->t_end == 0)
		bench_mark_end(b, bench_now());
	/* Clients waiting out a retry are idle already. */
	for (i = 0; i < b->nconns; i++) {
		struct bench_conn *c = &b->conns[i];
		if (c->busy && uv_is_active((uv_handle_t *)&c->retry)) {
			uv_timer_stop(&c->retry);
			bench_conn_idle(c);
		}
	}
}

static void bench_sigint_cb(uv_signal_t *s, int signum)
{
	(void)signum;
	bench_stop(s->data);
}

static void bench_progress_cb(uv_timer_t *t)
{
	struct bench *b = t->data;
	double secs;

	if (b->preloading) {
		fprintf(stderr, "bench: preloading, %" PRIu64 " keys to go\n", b->preload_left);
		return;
	}
	if (!b->running) {
		if (b->o.kind == BK_WATCH) {
			fprintf(stderr, "bench: %u of %u watchers ready\n", b->wcreated,
				b->o.watchers);
			bench_watch_reopen_stalled(b);
		}
		return;
	}
	secs = (double)(bench_now() - b->t0) / 1e9;
	fprintf(stderr, "bench: %5.1fs %10" PRIu64 " ops %9.0f/s  errors %" PRIu64 "\n", secs,
		b->ops, (double)(b->ops - b->last_ops), b->errors);
	b->last_ops = b->ops;
}

static void bench_begin_timed(struct bench *b)
{
	b->preloading = false;
	b->running = true;
	bench_mark_start(b);
	b->next_key = 0;
	if (b->o.duration_ms > 0)
		uv_timer_start(&b->deadline, bench_deadline_cb, b->o.duration_ms, 0);
	bench_start_conns(b);
}

/* Called whenever something may have ended; the run is over once every
 * client and stream is quiet. */
static void bench_finish(struct bench *b)
{
	unsigned i;

	if (b->o.kind == BK_WATCH) {
		if (!b->stopping) {
			if (b->o.total != 0 && b->rounds >= b->o.total)
				b->stopping = true;
			else
				return;
		}
		if (b->round_on)
			return;
		if (b->cancelling)
			return;
		/* Cancelling runs bench_watch_done, which would call back in here. */
		b->cancelling = true;
		for (i = 0; i < b->sopened; i++)
			if (b->s[i].call != NULL)
				http_call_cancel(b->s[i].call);
		b->cancelling = false;
		if (b->sended < b->sopened)
			return;
		uv_timer_stop(&b->deadline);
		uv_timer_stop(&b->progress);
		uv_timer_stop(&b->round_timer);
		if (b->whc != NULL) {
			http_client_close(b->whc);
			b->whc = NULL;
		}
		if (b->writer != NULL) {
			http_client_close(b->writer);
			b->writer = NULL;
		}
		uv_signal_stop(&b->sigint);
		return;
	}
	if (b->active > 0)
		return;
	if (b->preloading && !b->stopping) {
		bench_begin_timed(b);
		return;
	}
	if (b->t_end == 0)
		bench_mark_end(b, bench_now());
	uv_timer_stop(&b->deadline);
	uv_timer_stop(&b->progress);
	uv_signal_stop(&b->sigint);
	for (i = 0; i < b->nconns; i++) {
		if (b->conns[i].hc != NULL) {
			http_client_close(b->conns[i].hc);
			b->conns[i].hc = NULL;
		}
	}
}

/* ---- preload check ---- */

static void bench_on_count(void *data, int status, const char *body, size_t len)
{
	struct bench *b = data;
	long long have;

	http_client_close(b->probe);
	b->probe = NULL;
	if (status != 200) {
		bench_error(b, status, body, len);
		fprintf(stderr, "Error: cannot reach %s (%s)\n", b->o.urls[0], b->first_error);
		b->rc = 1;
		b->stopping = true;
		bench_finish(b);
		return;
	}
	have = bench_json_int(body, "count");
	if (b->stopping) {
		bench_finish(b);
		return;
	}
	if (b->o.preload && (b->o.kind == BK_GET || b->o.kind == BK_RANGE) &&
	    (uint64_t)have < b->o.key_space) {
		fprintf(stderr, "bench: preloading %" PRIu64 " keys\n", b->o.key_space);
		b->preloading = true;
		b->preload_left = b->o.key_space;
		b->next_key = 0;
		bench_start_conns(b);
		return;
	}
	bench_begin_timed(b);
}

/* ---- report ---- */

static int bench_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* The p-th percentile of sorted samples, in milliseconds. */
static double bench_pct_of(const uint32_t *lat, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(p / 100.0 * (double)n);
	if (i >= n)
		i = n - 1;
	return lat[i] / 1000.0;
}

static double bench_pct(const struct bench *b, double p)
{
	return bench_pct_of(b->lat, b->nlat, p);
}

static void bench_report(struct bench *b)
{
	double secs = b->t_end > b->t0 ? (double)(b->t_end - b->t0) / 1e9 : 0;
	double rate = secs > 0 ? (double)b->ops / secs : 0;
	double sum = 0, maxv;
	size_t i;
	const char *what = b->o.kind == BK_WATCH ? "events" : "ops";

	if (b->nlat > 1)
		qsort(b->lat, b->nlat, sizeof(*b->lat), bench_cmp_u32);
	/* lat2 is only kept by the watch workload. */
	if (b->nlat2 > 1)
		qsort(b->lat2, b->nlat2, sizeof(*b->lat2), bench_cmp_u32);
	for (i = 0; i < b->nlat; i++)
		sum += b->lat[i];
	maxv = b->nlat ? b->lat[b->nlat - 1] / 1000.0 : 0;
	if (b->o.json) {
		json_t *j = json_object(), *l = json_object();
		char *s;
		json_object_set_new(j, "workload", json_string(bench_kind_names[b->o.kind]));
		json_object_set_new(j, "conns", json_integer(b->o.kind == BK_WATCH ? 1 : b->nconns));
		if (b->o.kind == BK_WATCH) {
			json_object_set_new(j, "watchers", json_integer(b->o.watchers));
			json_object_set_new(j, "streams", json_integer(b->nstreams));
			json_object_set_new(j, "streams_reopened", json_integer(b->reopened));
			json_object_set_new(j, "rounds", json_integer((json_int_t)b->rounds));
		}
		if (b->o.kind == BK_GET || b->o.kind == BK_RANGE)
			json_object_set_new(j, "consistency",
					    json_string(b->o.serializable ? "s" : "l"));
		if (b->o.kind == BK_RANGE)
			json_object_set_new(j, "range_size", json_integer(b->o.range_size));
		if (b->o.kind == BK_TXN)
			json_object_set_new(j, "cas_failures",
					    json_integer((json_int_t)b->cas_failures));
		json_object_set_new(j, "values", json_string(b->o.k8s_values ? "k8s" : "random"));
		json_object_set_new(j, "value_size", json_integer((json_int_t)(b->value_mean + 0.5)));
		json_object_set_new(j, "key_space", json_integer((json_int_t)b->o.key_space));
		json_object_set_new(j, "duration_s", json_real(secs));
		json_object_set_new(j, "ops", json_integer((json_int_t)b->ops));
		json_object_set_new(j, "errors", json_integer((json_int_t)b->errors));
		json_object_set_new(j, "ops_per_s", json_real(rate));
		json_object_set_new(l, "mean", json_real(b->nlat ? sum / b->nlat / 1000.0 : 0));
		json_object_set_new(l, "p50", json_real(bench_pct(b, 50)));
		json_object_set_new(l, "p90", json_real(bench_pct(b, 90)));
		json_object_set_new(l, "p99", json_real(bench_pct(b, 99)));
		json_object_set_new(l, "p99.9", json_real(bench_pct(b, 99.9)));
		json_object_set_new(l, "max", json_real(maxv));
		json_object_set_new(j, "latency_ms", l);
		if (b->o.kind == BK_WATCH) {
			json_t *a = json_object();
			json_object_set_new(a, "p50", json_real(bench_pct_of(b->lat2, b->nlat2, 50)));
			json_object_set_new(a, "p99", json_real(bench_pct_of(b->lat2, b->nlat2, 99)));
			json_object_set_new(a, "max", json_real(bench_pct_of(b->lat2, b->nlat2, 100)));
			json_object_set_new(j, "after_ack_ms", a);
		}
		{
			/* CPU per operation (per event for watch) during the timed part. */
			json_t *c = json_object();
			double self = bench_cpu_per_op(b, b->cpu_self);
			double srv = bench_cpu_per_op(b, b->cpu_server);
			json_object_set_new(c, "client_us_per_op", self < 0 ? json_null() : json_real(self));
			if (b->o.npids > 0)
				json_object_set_new(c, "server_us_per_op",
						    srv < 0 ? json_null() : json_real(srv));
			json_object_set_new(j, "cpu", c);
		}
		if (b->first_error[0] != '\0')
			json_object_set_new(j, "first_error", json_string(b->first_error));
		s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
		if (s != NULL)
			puts(s);
		free(s);
		json_decref(j);
		return;
	}
	printf("workload:   %s", bench_kind_names[b->o.kind]);
	if (b->o.kind == BK_WATCH)
		printf(" (%u watchers on %u streams, %" PRIu64 " puts)", b->o.watchers,
		       b->nstreams, b->rounds);
	else
		printf(" (%u conns)", b->nconns);
	if (b->o.kind == BK_GET || b->o.kind == BK_RANGE)
		printf(", %s", b->o.serializable ? "serializable" : "linearizable");
	if (b->o.kind == BK_RANGE)
		printf(", %u keys per range", b->o.range_size);
	if (b->o.k8s_values)
		printf(", Pod objects of %.0f B on average\n", b->value_mean);
	else
		printf(", value %u B\n", b->o.value_size);
	printf("%-11s %" PRIu64 " in %.2f s = %.1f/s, errors %" PRIu64, what, b->ops, secs, rate,
	       b->errors);
	if (b->o.kind == BK_TXN)
		printf(", failed compares %" PRIu64, b->cas_failures);
	printf("\n");
	printf("%s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
	       b->o.kind == BK_WATCH ? "put to event ms:" : "latency ms:", bench_pct(b, 50),
	       bench_pct(b, 90), bench_pct(b, 99), bench_pct(b, 99.9), maxv,
	       b->nlat ? sum / b->nlat / 1000.0 : 0);
	if (b->o.kind == BK_WATCH)
		printf("after ack:  p50 %.3f  p99 %.3f  max %.3f  (put acknowledged to event)\n",
		       bench_pct_of(b->lat2, b->nlat2, 50), bench_pct_of(b->lat2, b->nlat2, 99),
		       bench_pct_of(b->lat2, b->nlat2, 100));
	{
		double self = bench_cpu_per_op(b, b->cpu_self);
		double srv = bench_cpu_per_op(b, b->cpu_server);
		printf("cpu us/%s: generator %.1f", b->o.kind == BK_WATCH ? "event" : "op", self);
		if (b->o.npids > 0) {
			if (srv < 0)
				printf(", server n/a");
			else
				printf(", server %.1f", srv);
		}
		printf("\n");
	}
	if (b->first_error[0] != '\0')
		printf("first error: %s\n", b->first_error);
}

/* ---- flags ---- */

static void bench_usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "Error: bench: %s%s%s\n(see capstan --help)\n", msg, arg ? " " : "",
		arg ? arg : "");
}

static int bench_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s == '\0' || *s == '-')
		return -1;
	v = strtoull(s, &end, 10);
	if (*end == 'k' || *end == 'K') {
		v *= 1000;
		end++;
	}
	if (*end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* "10s", "500ms", "2m", or bare seconds. */
static int bench_parse_duration(const char *s, uint64_t *ms)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v < 0)
		return -1;
	if (*end == '\0' || strcmp(end, "s") == 0)
		v *= 1000;
	else if (strcmp(end, "m") == 0)
		v *= 60000;
	else if (strcmp(end, "ms") != 0)
		return -1;
	*ms = (uint64_t)v;
	return 0;
}

static int bench_parse_endpoints(struct bench_opts *o, const char *list)
{
	const char *p = list;

	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		if (n > 0) {
			if (o->nurls == BENCH_MAX_ENDPOINTS)
				return -1;
			o->urls[o->nurls] = strndup(p, n);
			if (o->urls[o->nurls] == NULL)
				return -1;
			o->nurls++;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return o->nurls > 0 ? 0 : -1;
}

/* A comma-separated list of process IDs. */
static int bench_parse_pids(struct bench_opts *o, const char *list)
{
	const char *p = list;

	do {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v <= 0 || v > INT32_MAX || o->npids == BENCH_MAX_PIDS ||
		    (*end != ',' && *end != '\0'))
			return -1;
		o->server_pids[o->npids++] = (int)v;
		p = *end == ',' ? end + 1 : end;
	} while (*p != '\0');
	return 0;
}

static int bench_parse(struct bench_opts *o, int argc, char **argv)
{
	int i;
	uint64_t v;
	bool conns_set = false;

	if (argc < 1) {
		bench_usage_error("a workload is needed (put, get, range, txn, watch, lease)", NULL);
		return -1;
	}
	for (i = 0; bench_kind_names[i] != NULL; i++)
		if (strcmp(argv[0], bench_kind_names[i]) == 0)
			break;
	if (bench_kind_names[i] == NULL) {
		bench_usage_error("unknown workload", argv[0]);
		return -1;
	}
	o->kind = (enum bench_kind)i;
	for (i = 1; i < argc; i++) {
		char *a = argv[i], *val = NULL, *eq;
		char name[32];
		if (strncmp(a, "--", 2) != 0) {
			bench_usage_error("unexpected argument", a);
			return -1;
		}
		eq = strchr(a, '=');
		snprintf(name, sizeof(name), "%.*s",
			 (int)(eq != NULL ? (size_t)(eq - a) : strlen(a)), a);
		if (strcmp(name, "--no-preload") == 0) {
			o->preload = false;
			continue;
		}
		if (eq != NULL)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else {
			bench_usage_error("flag needs an argument:", name);
			return -1;
		}
		if (strcmp(name, "--duration") == 0) {
			if (bench_parse_duration(val, &o->duration_ms) != 0)
				goto bad;
		} else if (strcmp(name, "--total") == 0) {
			if (bench_parse_u64(val, &o->total) != 0)
				goto bad;
		} else if (strcmp(name, "--conns") == 0 || strcmp(name, "--clients") == 0) {
			if (bench_parse_u64(val, &v) != 0 || v == 0 || v > 4096)
				goto bad;
			o->conns = (unsigned)v;
			conns_set = true;
		} else if (strcmp(name, "--value-size") == 0) {
			if (bench_parse_u64(val, &v) != 0 || v > 1 << 20)
				goto bad;
			o->value_size = (unsigned)v;
			o->value_size_set = true;
		} else if (strcmp(name, "--values") == 0) {
			if (strcmp(val, "k8s") == 0)
				o->k8s_values = true;
			else if (strcmp(val, "random") == 0)
				o->k8s_values = false;
			else
				goto bad;
		} else if (strcmp(name, "--key-space") == 0) {
			if (bench_parse_u64(val, &v) != 0 || v == 0)
				goto bad;
			o->key_space = v;
		} else if (strcmp(name, "--range-size") == 0) {
			if (bench_parse_u64(val, &v) != 0 || v == 0 || v > 100000)
				goto bad;
			o->range_size = (unsigned)v;
		} else if (strcmp(name, "--watchers") == 0) {
			if (bench_parse_u64(val, &v) != 0 || v == 0 || v > 100000)
				goto bad;
			o->watchers = (unsigned)v;
		} else if (strcmp(name, "--watch-per-stream") == 0) {
			if (bench_parse_u64(val, &v) != 0 || v == 0 || v > BENCH_WATCH_PER_STREAM_MAX)
				goto bad;
			o->watch_per_stream = (unsigned)v;
		} else if (strcmp(name, "--consistency") == 0) {
			if (strcmp(val, "l") == 0)
				o->serializable = false;
			else if (strcmp(val, "s") == 0)
				o->serializable = true;
			else
				goto bad;
		} else if (strcmp(name, "--server-pid") == 0) {
			if (bench_parse_pids(o, val) != 0)
				goto bad;
		} else if (strcmp(name, "--prefix") == 0) {
			if (strlen(val) > BENCH_KEY_MAX - 32)
				goto bad;
			o->prefix = val;
		} else {
			bench_usage_error("unknown flag", name);
			return -1;
		}
		continue;
bad:
		fprintf(stderr, "Error: bench: bad %s %s\n(see capstan --help)\n", name, val);
		return -1;
	}
	if (o->duration_ms == 0 && o->total == 0)
		o->duration_ms = 10000;
	if (o->kind == BK_RANGE && o->range_size > o->key_space) {
		bench_usage_error("--range-size is larger than --key-space", NULL);
		return -1;
	}
	if (o->k8s_values && o->value_size_set) {
		bench_usage_error("--value-size does not apply to --values k8s", NULL);
		return -1;
	}
	if (!conns_set && (o->kind == BK_GET || o->kind == BK_RANGE))
		o->conns = 64;
	return 0;
}

/* Many watch streams need many descriptors: take what the hard limit allows. */
static void bench_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The values to write, base64: one of random bytes, so that nothing along
 * the way gets to compress them; or BENCH_K8S_VALUES Pod objects with sizes
 * spread over 1-4 KiB, for what a store does with what Kubernetes keeps. */
static int bench_make_values(struct bench *b)
{
	unsigned i;
	double sum = 0;

	b->nvalues = b->o.k8s_values ? BENCH_K8S_VALUES : 1;
	b->values = calloc(b->nvalues, sizeof(*b->values));
	if (b->values == NULL)
		return -1;
	for (i = 0; i < b->nvalues; i++) {
		uint8_t *raw;
		size_t len = b->o.value_size;
		if (b->o.k8s_values) {
			raw = (uint8_t *)pod_json(bench_rand(b),
						  1024 + (size_t)i * 3072 / BENCH_K8S_VALUES, &len);
		} else {
			raw = malloc(len + 1);
			for (size_t k = 0; raw != NULL && k < len; k++)
				raw[k] = (uint8_t)(bench_rand(b) >> 56);
		}
		if (raw == NULL)
			return -1;
		b->values[i] = malloc(b64_encoded_size(len));
		if (b->values[i] == NULL) {
			free(raw);
			return -1;
		}
		b64_encode(raw, len, b->values[i]);
		free(raw);
		if (strlen(b->values[i]) > b->value_max)
			b->value_max = strlen(b->values[i]);
		sum += (double)len;
	}
	b->value_mean = sum / b->nvalues;
	return 0;
}

static int bench_setup(struct bench *b)
{
	unsigned i;

	if (bench_make_values(b) != 0)
		return -1;

	if (b->o.kind == BK_WATCH) {
		uv_timer_init(&b->loop, &b->round_timer);
		b->round_timer.data = b;
		b->round_timer_on = true;
		b->nstreams = (b->o.watchers + b->o.watch_per_stream - 1) / b->o.watch_per_stream;
		b->w = calloc(b->o.watchers, sizeof(*b->w));
		b->s = calloc(b->nstreams, sizeof(*b->s));
		if (b->w == NULL || b->s == NULL)
			return -1;
		for (i = 0; i < b->nstreams; i++) {
			struct bench_stream *st = &b->s[i];
			unsigned first = i * b->o.watch_per_stream;
			st->b = b;
			st->w = &b->w[first];
			st->nw = b->o.watchers - first < b->o.watch_per_stream
					 ? b->o.watchers - first
					 : b->o.watch_per_stream;
		}
		if (http_client_new(&b->loop, b->o.urls[0], &b->whc) != 0 ||
		    http_client_new(&b->loop, b->o.urls[0], &b->writer) != 0)
			return -1;
		return 0;
	}
	b->conns = calloc(b->o.conns, sizeof(*b->conns));
	if (b->conns == NULL)
		return -1;
	b->nconns = b->o.conns;
	for (i = 0; i < b->nconns; i++) {
		struct bench_conn *c = &b->conns[i];
		c->b = b;
		c->seq = i;
		uv_timer_init(&b->loop, &c->retry);
		c->retry.data = c;
	}
	for (i = 0; i < b->nconns; i++)
		if (http_client_new(&b->loop, b->o.urls[i % b->o.nurls], &b->conns[i].hc) != 0)
			return -1;
	return 0;
}

int bench_main(int argc, char **argv, const char *endpoints, bool json, unsigned timeout_ms)
{
	struct bench *b;
	int rc = 1;
	unsigned i;
	char k[BENCH_KEY_MAX * 2], e[BENCH_KEY_MAX * 2], key[BENCH_KEY_MAX], body[BENCH_KEY_MAX * 5];

	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return 1;
	b->o.conns = 16;
	b->o.value_size = 256;
	b->o.key_space = 10000;
	b->o.range_size = 10;
	b->o.watchers = 1;
	b->o.watch_per_stream = 1;
	b->o.preload = true;
	b->o.prefix = "/bench/";
	b->o.json = json;
	b->o.timeout_ms = timeout_ms;
	b->rng = 0x9E3779B97F4A7C15ULL ^ uv_hrtime();
	if (bench_parse(&b->o, argc, argv) != 0) {
		rc = 2;
		goto out_free;
	}
	if (bench_parse_endpoints(&b->o, endpoints) != 0) {
		bench_usage_error("bad --endpoints", endpoints);
		rc = 2;
		goto out_free;
	}
	bench_raise_nofile();
	if (uv_loop_init(&b->loop) != 0)
		goto out_free;
	uv_timer_init(&b->loop, &b->progress);
	uv_timer_init(&b->loop, &b->deadline);
	uv_signal_init(&b->loop, &b->sigint);
	b->progress.data = b->deadline.data = b->sigint.data = b;
	uv_signal_start(&b->sigint, bench_sigint_cb, SIGINT);
	uv_timer_start(&b->progress, bench_progress_cb, 1000, 1000);
	if (bench_setup(b) != 0) {
		fprintf(stderr, "Error: bench: setup failed (bad endpoint or out of memory)\n");
		b->stopping = true;
		goto out_close;
	}

	if (b->o.kind == BK_WATCH) {
		/* The timed part starts once every watcher is ready; setting them up
		 * is bounded too. */
		uv_timer_start(&b->deadline, bench_watch_setup_cb, BENCH_WATCH_SETUP_MS, 0);
		bench_watch_open_more(b);
	} else {
		/* One untimed read says whether the server is there, and how much of
		 * the key space already exists. */
		snprintf(key, sizeof(key), "%sk/", b->o.prefix);
		bench_str_b64(key, k);
		snprintf(key, sizeof(key), "%sk0", b->o.prefix);
		bench_str_b64(key, e);
		snprintf(body, sizeof(body),
			 "{\"key\":\"%s\",\"range_end\":\"%s\",\"count_only\":true}", k, e);
		if (http_client_new(&b->loop, b->o.urls[0], &b->probe) != 0 ||
		    http_client_post(b->probe, "/v3/kv/range", "application/json", body,
				     strlen(body), timeout_ms ? timeout_ms : 5000, bench_on_count,
				     b) != 0) {
			fprintf(stderr, "Error: bench: bad endpoint %s\n", b->o.urls[0]);
			b->stopping = true;
			goto out_close;
		}
	}
	uv_run(&b->loop, UV_RUN_DEFAULT);
	rc = b->rc;
	if (rc == 0)
		bench_report(b);
	else if (b->first_error[0] != '\0' && b->o.kind == BK_WATCH)
		fprintf(stderr, "Error: bench: %s\n", b->first_error);
	fflush(stdout);

out_close:
	if (b->probe != NULL)
		http_client_close(b->probe);
	/* Whatever a failed run left open is closed here. */
	for (i = 0; i < b->nconns; i++)
		if (b->conns[i].hc != NULL)
			http_client_close(b->conns[i].hc);
	if (b->whc != NULL)
		http_client_close(b->whc);
	if (b->writer != NULL)
		http_client_close(b->writer);
	for (i = 0; i < b->nconns; i++)
		uv_close((uv_handle_t *)&b->conns[i].retry, bench_handle_closed);
	if (b->round_timer_on)
		uv_close((uv_handle_t *)&b->round_timer, bench_handle_closed);
	uv_close((uv_handle_t *)&b->progress, bench_handle_closed);
	uv_close((uv_handle_t *)&b->deadline, bench_handle_closed);
	uv_close((uv_handle_t *)&b->sigint, bench_handle_closed);
	uv_run(&b->loop, UV_RUN_DEFAULT);
	uv_loop_close(&b->loop);
out_free:
	for (i = 0; b->s != NULL && i < b->nstreams; i++)
		watch_splitter_clear(&b->s[i].split);
	free(b->s);
	free(b->w);
	free(b->conns);
	free(b->lat);
	free(b->lat2);
	for (i = 0; b->values != NULL && i < b->nvalues; i++)
		free(b->values[i]);
	free(b->values);
	for (i = 0; i < b->o.nurls; i++)
		free(b->o.urls[i]);
	free(b);
	return rc;
}
