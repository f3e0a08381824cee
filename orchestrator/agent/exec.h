/* exec.h — the node agent's exec endpoint: runs a command inside a
 * container (its namespaces, directory and environment; nsexec.h) and
 * speaks the Kubernetes remote-command protocol with the client, which is
 * the API server relaying kubectl's connection: over a websocket
 * (v5.channel.k8s.io, or v4) or over SPDY/3.1 (v4, v3 or v2).
 *
 * Threading: loop thread only. Ownership: a session owns its process, pipes
 * and connection, and frees itself when done; the group is the caller's and
 * must outlive its sessions (exec_group_abort, then wait for drained). */
#ifndef CAPSTAN_AGENT_EXEC_H
#define CAPSTAN_AGENT_EXEC_H

#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#include "lib/http.h"

struct exec_session;

/* The live sessions of one agent. drained (if set) runs when the last one
 * has freed everything it held. */
struct exec_group {
	struct exec_session *head;
	int live;
	void (*drained)(void *data);
	void *data;
};

struct exec_spec {
	char *const *argv;          /* NULL-terminated, argv[0] searched in env's PATH */
	char *const *env;           /* "K=V", NULL-terminated */
	const char *cwd;            /* as the container sees it */
	pid_t ns_pid;               /* the container's process, whose namespaces
				     * the command joins; 0: the agent's (no root) */
};

/* The commands of an exec request: every "command" query parameter, in
 * order, URL-decoded. Returns a NULL-terminated array (free each string and
 * the array), or NULL when there is none or memory ran out. */
char **exec_query_command(const char *query);

/* Answers req: 400 unless it is a websocket upgrade offering v5 or v4 of
 * channel.k8s.io, or a SPDY/3.1 upgrade offering v4, v3 or v2; otherwise
 * upgrades, runs the command with pipes for the
 * streams the query asks for (stdin, stdout, stderr; tty is not supported
 * and runs as without), relays them, and reports the exit status on the
 * error channel before closing. */
void exec_serve(uv_loop_t *loop, struct exec_group *g, struct http_req *req,
		const struct exec_spec *spec);

/* Kills every session's process and closes its connection; drained follows
 * once all are freed (at once if none is live). */
void exec_group_abort(struct exec_group *g);

#endif
