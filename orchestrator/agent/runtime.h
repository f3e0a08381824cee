/* runtime.h — how the node agent runs containers: one interface, two
 * implementations. The process runtime (runtime_process.c) runs each
 * container as a process group on the host, with its output in log files on
 * disk, and finds its containers again after an agent restart. The simulated
 * runtime (runtime_sim.c) runs nothing: containers are Running at once, or
 * follow a configured lifecycle, for hollow nodes in scale tests.
 *
 * A container handle is one attempt of one container: a restart is a new
 * start with attempt + 1.
 *
 * Threading: loop thread only. Ownership: the runtime owns its handles; a
 * handle stays valid until runtime_release (after its exit callback, or
 * instead of waiting for one). Specs are borrowed for the call. Contract
 * (libuv's): when start returns non-zero the exit callback never runs. */
#ifndef CAPSTAN_AGENT_RUNTIME_H
#define CAPSTAN_AGENT_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct runtime;
struct runtime_container;

/* A volume as the container sees it: host directory source appears at
 * target (process runtime: a bind mount in a mount namespace of the
 * container's own, when the agent runs as root). */
struct runtime_mount {
	const char *source;
	const char *target;
	bool read_only;
};

struct runtime_spec {
	const char *pod_uid;
	const char *pod_ns;
	const char *pod_name;
	const char *name;           /* container name */
	unsigned attempt;           /* 0 for the first start; names the log file */
	char *const *argv;          /* NULL-terminated; argv[0] searched in env's PATH */
	char *const *env;           /* "K=V", NULL-terminated */
	const char *cwd;            /* or NULL: the container's state directory */
	uint64_t memory_limit;      /* bytes (RLIMIT_AS), 0 for none */
	const struct runtime_mount *mounts;
	size_t n_mounts;
	/* The pod's network namespace (a bind-mounted nsfs file) every process
	 * of the container joins; NULL: the agent's own. */
	const char *netns;
	/* Simulated runtime only: run this long then exit with sim_exit_code;
	 * negative runs until stopped. */
	int64_t sim_run_ms;
	int sim_exit_code;
};

struct runtime_exit {
	int exit_code;              /* 128 + signal when killed by one */
	int signal;                 /* 0 when it exited by itself */
	bool cannot_run;            /* the command could not be started */
	int64_t finished_at;        /* unix seconds */
	char message[256];
};

typedef void (*runtime_exit_cb)(void *data, struct runtime_container *c,
				const struct runtime_exit *e);

/* What an agent restart finds on disk. */
struct runtime_found {
	const char *pod_uid;
	const char *pod_ns;
	const char *pod_name;
	const char *name;
	unsigned attempt;
	int64_t started_at;         /* unix seconds */
	bool running;
	struct runtime_exit exit;   /* when !running */
};
typedef void (*runtime_found_fn)(void *data, struct runtime_container *c,
				 const struct runtime_found *f);

struct runtime_ops {
	int (*start)(struct runtime *rt, const struct runtime_spec *spec, runtime_exit_cb cb,
		     void *data, struct runtime_container **out, int64_t *started_at,
		     char *errmsg);
	int (*kill)(struct runtime_container *c, int sig);
	void (*release)(struct runtime_container *c);
	void (*recover)(struct runtime *rt, runtime_found_fn fn, void *data);
	void (*adopt)(struct runtime_container *c, runtime_exit_cb cb, void *data);
	void (*discard)(struct runtime_container *c);
	int (*log_path)(struct runtime *rt, const char *pod_uid, const char *name,
			unsigned attempt, char *buf, size_t size);
	void (*forget_pod)(struct runtime *rt, const char *pod_uid);
	pid_t (*exec_pid)(struct runtime_container *c);
	void (*close)(struct runtime *rt);
};

struct runtime {
	const struct runtime_ops *ops;
	const char *version;        /* containerRuntimeVersion, "capstan-process://0.1" */
};

/* The process runtime keeps state under data_dir/pods. */
int runtime_process_new(uv_loop_t *loop, const char *data_dir, struct runtime **out,
			char *errmsg);
int runtime_sim_new(uv_loop_t *loop, struct runtime **out);

/* Starts one attempt; *started_at gets its start time (unix seconds).
 * errmsg (CAP_ERRMSG_SIZE) says why a start failed. */
static inline int runtime_start(struct runtime *rt, const struct runtime_spec *spec,
				runtime_exit_cb cb, void *data, struct runtime_container **out,
				int64_t *started_at, char *errmsg)
{
	return rt->ops->start(rt, spec, cb, data, out, started_at, errmsg);
}
/* Sends sig to the container's whole process group. */
static inline int runtime_kill(struct runtime *rt, struct runtime_container *c, int sig)
{
	return rt->ops->kill(c, sig);
}
/* Frees a handle; a container still running is left running (use kill
 * first). No exit callback runs after this. */
static inline void runtime_release(struct runtime *rt, struct runtime_container *c)
{
	rt->ops->release(c);
}
/* Calls fn for every container left by an earlier agent. Each handle is
 * then either adopted (watched for its exit, cb as for start) or discarded
 * (its process group killed and its state removed). */
static inline void runtime_recover(struct runtime *rt, runtime_found_fn fn, void *data)
{
	rt->ops->recover(rt, fn, data);
}
static inline void runtime_adopt(struct runtime *rt, struct runtime_container *c,
				 runtime_exit_cb cb, void *data)
{
	rt->ops->adopt(c, cb, data);
}
static inline void runtime_discard(struct runtime *rt, struct runtime_container *c)
{
	rt->ops->discard(c);
}
/* The log file of one attempt (the current file; "<path>.1" is the rotated
 * one). Returns -1 when the runtime keeps no logs. */
static inline int runtime_log_path(struct runtime *rt, const char *pod_uid, const char *name,
				   unsigned attempt, char *buf, size_t size)
{
	return rt->ops->log_path(rt, pod_uid, name, attempt, buf, size);
}
/* Removes what the runtime kept for a pod that is gone (logs, volumes). */
static inline void runtime_forget_pod(struct runtime *rt, const char *pod_uid)
{
	rt->ops->forget_pod(rt, pod_uid);
}
/* The process whose namespaces kubectl exec joins: the container's own
 * process, once it runs the container's command (its volumes mounted).
 * Returns -1 when there is none (not started yet, exited, or a runtime
 * without processes). */
static inline pid_t runtime_exec_pid(struct runtime *rt, struct runtime_container *c)
{
	return rt->ops->exec_pid(c);
}
/* Frees the runtime; containers keep running (an agent restart adopts
 * them). Handles must have been released. */
static inline void runtime_close(struct runtime *rt)
{
	rt->ops->close(rt);
}

#endif
