/* raft_floor.c — the consensus floor: a bare libraft raft_uv single-node
 * apply loop with a trivial state machine, reporting entries per second.
 *
 * It answers one question for the benchmark: how many entries of a given size
 * can libraft commit on this disk, with N in flight, when nothing else (no
 * HTTP, no sqlite, no JSON) costs anything. capstan-store is judged against
 * this number.
 *
 * Happy path: make a fresh raft_uv directory, bootstrap one voter, start, wait
 * to be leader, then keep --inflight raft_apply() requests outstanding until
 * --duration has passed or --total have applied; print one result line (or a
 * JSON object with --json) on stdout. The directory is removed at the end
 * unless --keep is given. With --zero-fill the log segments are written with
 * zeros when libraft makes them, as capstan-store has them
 * (store/raft_prealloc.h); without it, libraft alone as packaged.
 *
 * Failure modes: any libraft error prints a message and exits 1. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "store/raft_prealloc.h"

#define FLOOR_ADDRESS "127.0.0.1:0"

struct floor_req {
	struct raft_apply req;
	struct floor *f;
	uint64_t t0;
};

struct floor {
	uv_loop_t loop;
	struct raft_uv_transport transport;
	struct raft_io io;
	struct raft_fsm fsm;
	struct raft raft;
	uv_timer_t timer;
	char dir[4096];
	unsigned entry_size;
	unsigned inflight;
	uint64_t duration_ms;
	uint64_t total;
	bool json;
	bool keep;
	bool zero_fill;
	bool leader;
	bool stopping;
	bool closing;
	unsigned outstanding;
	uint64_t submitted;
	uint64_t applied;             /* by the FSM */
	uint64_t acked;               /* apply callbacks with status 0 */
	uint64_t t_start, t_end;
	uint64_t lat_sum_ns;
	int rc;
};

/* The trivial state machine: count entries, touch the bytes once. */
static int floor_fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct floor *f = fsm->data;
	const uint8_t *p = buf->base;

	f->applied++;
	*result = (void *)(uintptr_t)(buf->len > 0 ? p[0] : 0);
	return 0;
}

/* Snapshots are never taken (the threshold is above any run), but libraft
 * wants the hooks; an empty snapshot is a valid one. */
static int floor_fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n)
{
	(void)fsm;
	*bufs = raft_malloc(sizeof(**bufs));
	if (*bufs == NULL)
		return RAFT_NOMEM;
	(*bufs)[0].base = raft_malloc(8);
	(*bufs)[0].len = 8;
	if ((*bufs)[0].base == NULL) {
		raft_free(*bufs);
		return RAFT_NOMEM;
	}
	memset((*bufs)[0].base, 0, 8);
	*n = 1;
	return 0;
}

static int floor_fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	(void)fsm;
	raft_free(buf->base);
	return 0;
}

static void floor_submit(struct floor *f);

static void floor_closed(struct raft *r)
{
	struct floor *f = r->data;

	raft_uv_close(&f->io);
	raft_uv_tcp_close(&f->transport);
	uv_close((uv_handle_t *)&f->timer, NULL);
}

static void floor_close_cb(uv_timer_t *t)
{
	struct floor *f = t->data;

	raft_close(&f->raft, floor_closed);
}

/* raft_close is called from a timer of its own, never from inside a libraft
 * callback: closing there trips libraft 0.15's own teardown. */
static void floor_close_soon(struct floor *f)
{
	if (f->closing)
		return;
	f->closing = true;
	uv_timer_start(&f->timer, floor_close_cb, 0, 0);
}

static void floor_stop(struct floor *f)
{
	if (f->stopping)
		return;
	f->stopping = true;
	if (f->t_end == 0)
		f->t_end = uv_hrtime();
	uv_timer_stop(&f->timer);
	if (f->outstanding == 0)
		floor_close_soon(f);
}

static void floor_apply_cb(struct raft_apply *req, int status, void *result)
{
	struct floor_req *fr = req->data;
	struct floor *f = fr->f;

	(void)result;
	f->outstanding--;
	if (status != 0) {
		if (!f->stopping) {
			fprintf(stderr, "raft-floor: apply failed: %s\n", raft_strerror(status));
			f->rc = 1;
		}
		free(fr);
		floor_stop(f);
		if (f->outstanding == 0)
			floor_close_soon(f);
		return;
	}
	if (!f->stopping) {
		f->acked++;
		f->lat_sum_ns += uv_hrtime() - fr->t0;
	}
	free(fr);
	if (f->total != 0 && f->acked >= f->total)
		floor_stop(f);
	if (f->stopping) {
		if (f->outstanding == 0)
			floor_close_soon(f);
		return;
	}
	floor_submit(f);
}

/* Tops the pipeline up to inflight requests. */
static void floor_submit(struct floor *f)
{
	while (!f->stopping && f->outstanding < f->inflight &&
	       (f->total == 0 || f->submitted < f->total)) {
		struct floor_req *fr = calloc(1, sizeof(*fr));
		struct raft_buffer buf;
		int rv;

		buf.len = f->entry_size;
		buf.base = raft_malloc(buf.len);
		if (fr == NULL || buf.base == NULL) {
			free(fr);
			raft_free(buf.base);
			fprintf(stderr, "raft-floor: out of memory\n");
			f->rc = 1;
			floor_stop(f);
			return;
		}
		memset(buf.base, (int)(f->submitted & 0xff), buf.len);
		fr->f = f;
		fr->req.data = fr;
		fr->t0 = uv_hrtime();
		rv = raft_apply(&f->raft, &fr->req, &buf, 1, floor_apply_cb);
		if (rv != 0) {
			raft_free(buf.base);
			free(fr);
			fprintf(stderr, "raft-floor: raft_apply: %s\n", raft_strerror(rv));
			f->rc = 1;
			floor_stop(f);
			return;
		}
		f->outstanding++;
		f->submitted++;
	}
}

static void floor_timer_cb(uv_timer_t *t)
{
	struct floor *f = t->data;

	if (!f->leader) {
		if (raft_state(&f->raft) != RAFT_LEADER)
			return;
		/* Leader: the run starts now and lasts duration_ms. */
		f->leader = true;
		f->t_start = uv_hrtime();
		uv_timer_stop(t);
		if (f->duration_ms > 0)
			uv_timer_start(t, floor_timer_cb, f->duration_ms, 0);
		floor_submit(f);
		return;
	}
	floor_stop(f);
}

static void floor_usage(FILE *out)
{
	fputs("Usage: raft-floor [--dir DIR] [--entry-size B] [--inflight N]\n"
	      "                  [--duration SECONDS | --total N] [--json] [--keep]\n"
	      "                  [--zero-fill]\n"
	      "A bare libraft raft_uv single-node apply loop: prints entries/s.\n"
	      "DIR (default: a fresh directory under $TMPDIR or /tmp) must not exist\n"
	      "or be empty; put it on the disk you want to measure.\n", out);
}

static int floor_rm_dir(const char *dir)
{
	uv_fs_t req;
	uv_dirent_t ent;
	char path[8192];
	int rv;

	rv = uv_fs_scandir(NULL, &req, dir, 0, NULL);
	if (rv < 0)
		return rv;
	while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
		uv_fs_t r2;
		snprintf(path, sizeof(path), "%s/%s", dir, ent.name);
		uv_fs_unlink(NULL, &r2, path, NULL);
		uv_fs_req_cleanup(&r2);
	}
	uv_fs_req_cleanup(&req);
	return rmdir(dir);
}

int main(int argc, char **argv)
{
	static struct floor f;
	struct raft_configuration conf;
	double secs, rate;
	bool made_dir = false;
	const char *dir = NULL;
	int i, rv;

	f.entry_size = 256;
	f.inflight = 64;
	f.duration_ms = 5000;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0) {
			floor_usage(stdout);
			return 0;
		} else if (strcmp(a, "--json") == 0) {
			f.json = true;
		} else if (strcmp(a, "--keep") == 0) {
			f.keep = true;
		} else if (strcmp(a, "--zero-fill") == 0) {
			f.zero_fill = true;
		} else if (v == NULL) {
			floor_usage(stderr);
			return 2;
		} else if (strcmp(a, "--dir") == 0) {
			dir = v;
			i++;
		} else if (strcmp(a, "--entry-size") == 0) {
			f.entry_size = (unsigned)strtoul(v, NULL, 10);
			i++;
		} else if (strcmp(a, "--inflight") == 0) {
			f.inflight = (unsigned)strtoul(v, NULL, 10);
			i++;
		} else if (strcmp(a, "--duration") == 0) {
			f.duration_ms = (uint64_t)(strtod(v, NULL) * 1000);
			i++;
		} else if (strcmp(a, "--total") == 0) {
			f.total = strtoull(v, NULL, 10);
			f.duration_ms = 0;
			i++;
		} else {
			floor_usage(stderr);
			return 2;
		}
	}
	if (f.entry_size == 0 || f.inflight == 0 || (f.duration_ms == 0 && f.total == 0)) {
		floor_usage(stderr);
		return 2;
	}
	if (dir == NULL) {
		const char *tmp = getenv("TMPDIR");
		snprintf(f.dir, sizeof(f.dir), "%s/raft-floor.XXXXXX",
			 tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
		if (mkdtemp(f.dir) == NULL) {
			fprintf(stderr, "raft-floor: mkdtemp %s: %s\n", f.dir, strerror(errno));
			return 1;
		}
		made_dir = true;
	} else {
		snprintf(f.dir, sizeof(f.dir), "%s", dir);
		if (mkdir(f.dir, 0700) == 0)
			made_dir = true;
		else if (errno != EEXIST) {
			fprintf(stderr, "raft-floor: mkdir %s: %s\n", f.dir, strerror(errno));
			return 1;
		}
	}
	/* Only a directory made here is removed: never the caller's files. */
	made_dir = made_dir && !f.keep;

	if (uv_loop_init(&f.loop) != 0)
		return 1;
	rv = raft_uv_tcp_init(&f.transport, &f.loop);
	if (rv != 0) {
		fprintf(stderr, "raft-floor: raft_uv_tcp_init: %s\n", raft_strerror(rv));
		goto err_loop;
	}
	if (f.zero_fill && (rv = raft_prealloc_start(f.dir)) != 0) {
		fprintf(stderr, "raft-floor: %s: %s\n", f.dir, strerror(rv));
		goto err_transport;
	}
	rv = raft_uv_init(&f.io, &f.loop, f.dir, &f.transport);
	if (rv != 0) {
		fprintf(stderr, "raft-floor: raft_uv_init: %s\n", raft_strerror(rv));
		goto err_transport;
	}
	f.fsm.version = 1;
	f.fsm.data = &f;
	f.fsm.apply = floor_fsm_apply;
	f.fsm.snapshot = floor_fsm_snapshot;
	f.fsm.restore = floor_fsm_restore;
	rv = raft_init(&f.raft, &f.io, &f.fsm, 1, FLOOR_ADDRESS);
	if (rv != 0) {
		fprintf(stderr, "raft-floor: raft_init: %s\n", raft_strerror(rv));
		goto err_io;
	}
	f.raft.data = &f;
	/* The same timings as capstan-store; no snapshot during a run. */
	raft_set_heartbeat_timeout(&f.raft, 100);
	raft_set_election_timeout(&f.raft, 1000);
	raft_set_snapshot_threshold(&f.raft, 1u << 30);
	raft_configuration_init(&conf);
	rv = raft_configuration_add(&conf, 1, FLOOR_ADDRESS, RAFT_VOTER);
	if (rv == 0)
		rv = raft_bootstrap(&f.raft, &conf);
	raft_configuration_close(&conf);
	if (rv == 0)
		rv = raft_start(&f.raft);
	if (rv != 0) {
		fprintf(stderr, "raft-floor: bootstrap/start: %s\n", raft_strerror(rv));
		raft_close(&f.raft, floor_closed);
		f.rc = 1;
		uv_timer_init(&f.loop, &f.timer);
		goto run;
	}
	uv_timer_init(&f.loop, &f.timer);
	f.timer.data = &f;
	uv_timer_start(&f.timer, floor_timer_cb, 1, 1);
run:
	uv_run(&f.loop, UV_RUN_DEFAULT);
	uv_loop_close(&f.loop);
	if (made_dir)
		floor_rm_dir(f.dir);
	if (f.rc != 0)
		return f.rc;
	secs = (double)(f.t_end - f.t_start) / 1e9;
	rate = secs > 0 ? (double)f.acked / secs : 0;
	if (f.json)
		printf("{\"workload\":\"raft-floor\",\"entry_size\":%u,\"inflight\":%u,"
		       "\"entries\":%" PRIu64 ",\"duration_s\":%.3f,\"entries_per_s\":%.1f,"
		       "\"mean_latency_ms\":%.3f,\"zero_fill\":%s}\n",
		       f.entry_size, f.inflight, f.acked, secs, rate,
		       f.acked ? (double)f.lat_sum_ns / (double)f.acked / 1e6 : 0,
		       f.zero_fill ? "true" : "false");
	else
		printf("raft-floor: %u-byte entries, %u in flight: %" PRIu64 " in %.2f s = "
		       "%.1f entries/s, mean latency %.3f ms\n",
		       f.entry_size, f.inflight, f.acked, secs, rate,
		       f.acked ? (double)f.lat_sum_ns / (double)f.acked / 1e6 : 0);
	return 0;

err_io:
	raft_uv_close(&f.io);
err_transport:
	raft_uv_tcp_close(&f.transport);
err_loop:
	uv_run(&f.loop, UV_RUN_DEFAULT);
	uv_loop_close(&f.loop);
	if (made_dir)
		floor_rm_dir(f.dir);
	return 1;
}
