/* nsexec.h — starts a command inside a running container, for kubectl
 * exec: in the namespaces of the container's process (mount, so volumes are
 * at their mountPath; network, UTS and IPC), in the container's working
 * directory and environment, in a session of its own (its process group can
 * be killed whole), with pipes for the streams asked for, or a terminal.
 *
 * Joining namespaces needs root (CAP_SYS_ADMIN); the caller passes no
 * container pid when it is not root, and the command then runs in the
 * agent's namespaces with the container's directory and environment.
 *
 * Synchronous, as uv_spawn is: fork, then a short blocking read of a
 * close-on-exec pipe that carries the child's error if exec fails. Between
 * fork and exec the child makes system calls only. Threading: any thread;
 * the loop thread in the agent. */
#ifndef CAPSTAN_AGENT_NSEXEC_H
#define CAPSTAN_AGENT_NSEXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct nsexec_spec {
	char *const *argv;          /* NULL-terminated; argv[0] searched in env's PATH */
	char *const *env;           /* "K=V", NULL-terminated */
	const char *cwd;            /* inside the container's mount namespace */
	pid_t ns_pid;               /* the container's process, or 0: stay in ours */
	bool pipe[3];               /* stdin, stdout, stderr; /dev/null when false */
	bool err_to_out;            /* stderr goes where stdout goes (pipe[2] false) */
	bool tty;                   /* a new pseudo-terminal on 0-2, its controlling
				     * terminal, instead of pipes: fds[1] is the
				     * terminal's master, read and written */
};

/* Starts the command. On success returns its pid (also its process group)
 * and fds[i] holds the agent's end of each pipe asked for (close-on-exec,
 * the caller's to close), -1 for the others. On failure returns -1, opens
 * nothing, and errmsg (size bytes) says why, in the words kubectl prints
 * ("... no such file or directory"). The caller reaps the child. */
pid_t nsexec_start(const struct nsexec_spec *spec, int fds[3], char *errmsg, size_t size);

/* Sends sig to every process of session sid: the command's process group
 * and the groups it made (a shell with job control puts each job in one
 * of its own), so nothing it started outlives it or holds its terminal. */
void nsexec_kill_session(pid_t sid, int sig);

#endif
