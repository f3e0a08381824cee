/* runtime_sim.c — the simulated runtime of hollow nodes: no processes, no
 * files. A container is Running as soon as it starts and stays so until it
 * is killed, or exits by itself after spec->sim_run_ms with sim_exit_code.
 *
 * Happy path: start arms a timer (or none), kill ends the container on the
 * next loop turn with 0 for SIGTERM (a well-behaved program) and 128+signal
 * otherwise. Failure modes: none beyond allocation; nothing survives the
 * process, so recover finds nothing. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/err.h"
#include "orchestrator/agent/runtime.h"

struct sim_runtime {
	struct runtime base;
	uv_loop_t *loop;
};

struct sim_container {
	uv_timer_t timer;
	runtime_exit_cb cb;
	void *data;
	int exit_code;
	int signal;
	bool exited;
	bool released;
};

static void on_sim_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_sim_exit(uv_timer_t *t)
{
	struct sim_container *c = t->data;
	struct runtime_exit e = {0};
	if (c->exited)
		return;
	c->exited = true;
	e.exit_code = c->exit_code;
	e.signal = c->signal;
	e.finished_at = (int64_t)time(NULL);
	c->cb(c->data, (struct runtime_container *)c, &e);
}

static int sim_start(struct runtime *base, const struct runtime_spec *spec, runtime_exit_cb cb,
		     void *data, struct runtime_container **out, int64_t *started_at,
		     char *errmsg)
{
	struct sim_runtime *rt = (struct sim_runtime *)base;
	struct sim_container *c = calloc(1, sizeof *c);
	if (c == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		return -1;
	}
	c->cb = cb;
	c->data = data;
	c->exit_code = spec->sim_exit_code;
	uv_timer_init(rt->loop, &c->timer);
	c->timer.data = c;
	/* Hollow nodes run thousands of timers: unref them so they never keep
	 * a loop alive on their own. */
	uv_unref((uv_handle_t *)&c->timer);
	if (spec->sim_run_ms >= 0)
		uv_timer_start(&c->timer, on_sim_exit, (uint64_t)spec->sim_run_ms, 0);
	*started_at = (int64_t)time(NULL);
	*out = (struct runtime_container *)c;
	return 0;
}

static int sim_kill(struct runtime_container *rc, int sig)
{
	struct sim_container *c = (struct sim_container *)rc;
	if (c->exited)
		return 0;
	c->exit_code = sig == SIGTERM ? 0 : 128 + sig;
	c->signal = sig == SIGTERM ? 0 : sig;
	uv_timer_start(&c->timer, on_sim_exit, 0, 0);
	return 0;
}

static void sim_release(struct runtime_container *rc)
{
	struct sim_container *c = (struct sim_container *)rc;
	if (c == NULL)
		return;
	c->exited = true;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_sim_closed);
}

static void sim_recover(struct runtime *rt, runtime_found_fn fn, void *data)
{
	(void)rt;
	(void)fn;
	(void)data;
}

static void sim_adopt(struct runtime_container *c, runtime_exit_cb cb, void *data)
{
	(void)c;
	(void)cb;
	(void)data;
}

static int sim_log_path(struct runtime *rt, const char *uid, const char *name, unsigned attempt,
			char *buf, size_t size)
{
	(void)rt;
	(void)uid;
	(void)name;
	(void)attempt;
	(void)buf;
	(void)size;
	return -1;
}

static void sim_forget_pod(struct runtime *rt, const char *uid)
{
	(void)rt;
	(void)uid;
}

static pid_t sim_exec_pid(struct runtime_container *c)
{
	(void)c;
	return -1;
}

static void sim_close(struct runtime *rt)
{
	free(rt);
}

static const struct runtime_ops sim_ops = {
	.start = sim_start,
	.kill = sim_kill,
	.release = sim_release,
	.recover = sim_recover,
	.adopt = sim_adopt,
	.discard = sim_release,
	.log_path = sim_log_path,
	.forget_pod = sim_forget_pod,
	.exec_pid = sim_exec_pid,
	.close = sim_close,
};

int runtime_sim_new(uv_loop_t *loop, struct runtime **out)
{
	struct sim_runtime *rt = calloc(1, sizeof *rt);
	if (rt == NULL)
		return -1;
	rt->base.ops = &sim_ops;
	rt->base.version = "capstan-sim://0.1";
	rt->loop = loop;
	*out = &rt->base;
	return 0;
}
