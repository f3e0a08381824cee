/* nsexec.c — a command started inside a container's namespaces (see
 * nsexec.h).
 *
 * Happy path: open the container's namespace files (/proc/<pid>/ns/...)
 * for those that differ from ours, make the pipes, fork. The child starts a
 * session, puts the pipes on 0-2, joins the namespaces (the network, UTS
 * and IPC ones first, the mount namespace last: joining it also moves the
 * root and working directory to the container's), closes every other
 * descriptor, changes to the working directory, resets signals, and execs
 * argv[0] found along the PATH of the container's environment, as seen
 * inside the container. The parent reads the close-on-exec error pipe: EOF
 * means exec succeeded.
 *
 * Failure modes: a namespace that cannot be opened or joined, a working
 * directory that does not exist in the container, or a command that is not
 * found or not executable: the child writes a code and errno and exits
 * 127, the parent reaps it and returns -1 with a message. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orchestrator/agent/nsexec.h"

/* Joined in this order; the mount namespace last. */
static const struct {
	const char *name;
	int type;
} namespaces[] = {
	{"net", CLONE_NEWNET},
	{"uts", CLONE_NEWUTS},
	{"ipc", CLONE_NEWIPC},
	{"mnt", CLONE_NEWNS},
};
#define N_NS (sizeof namespaces / sizeof namespaces[0])

/* What failed in the child, sent with its errno. */
enum { STEP_SETNS = 1, STEP_CWD, STEP_EXEC, STEP_TTY };

struct child_err {
	int step;
	int err;
};

static _Noreturn void child_fail(int fd, int step, int err)
{
	struct child_err ce = {step, err};
	ssize_t n;

	do
		n = write(fd, &ce, sizeof ce);
	while (n < 0 && errno == EINTR);
	_exit(127);
}

/* execve along PATH (the environment's, not ours), with system calls
 * only. Returns the most telling errno: EACCES over ENOENT, as execvp. */
static int child_exec(char *const *argv, char *const *env)
{
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	char buf[PATH_MAX];
	int best = ENOENT;
	size_t an = strlen(argv[0]);

	if (strchr(argv[0], '/') != NULL) {
		execve(argv[0], argv, env);
		return errno;
	}
	for (size_t i = 0; env != NULL && env[i] != NULL; i++)
		if (strncmp(env[i], "PATH=", 5) == 0)
			path = env[i] + 5;
	while (*path != '\0') {
		size_t n = strcspn(path, ":");

		if (n > 0 && n + 1 + an < sizeof buf) {
			memcpy(buf, path, n);
			buf[n] = '/';
			memcpy(buf + n + 1, argv[0], an + 1);
			execve(buf, argv, env);
			if (errno == EACCES)
				best = EACCES;
			else if (errno != ENOENT && errno != ENOTDIR && best != EACCES)
				best = errno;
		}
		path += n;
		if (*path == ':')
			path++;
	}
	return best;
}

static _Noreturn void child_main(const struct nsexec_spec *spec, const int child_fds[3],
				 const int ns_fds[N_NS], int errfd)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigset_t none;
	int devnull = -1;

	setsid();
	for (int i = 0; i < 3; i++) {
		/* A terminal is all three, as on a login. */
		int fd = spec->tty ? child_fds[0] : child_fds[i];

		if (fd < 0) {
			if (devnull < 0)
				devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
			fd = devnull;
		}
		/* dup2 clears close-on-exec on the copy. */
		if (fd >= 0)
			dup2(fd, i);
	}
	if (spec->err_to_out)
		dup2(1, 2);
	/* The new session's controlling terminal: ^C and job control work,
	 * and the shell knows it is interactive. */
	if (spec->tty && ioctl(0, TIOCSCTTY, 0) != 0)
		child_fail(errfd, STEP_TTY, errno);
	for (size_t i = 0; i < N_NS; i++)
		if (ns_fds[i] >= 0 && setns(ns_fds[i], namespaces[i].type) != 0)
			child_fail(errfd, STEP_SETNS, errno);
	/* Nothing of the agent (sockets, the store) leaks into the command;
	 * the error pipe closes itself on exec. */
	for (int fd = 3; fd < 4096; fd++)
		if (fd != errfd)
			close(fd);
	if (spec->cwd != NULL && chdir(spec->cwd) != 0)
		child_fail(errfd, STEP_CWD, errno);
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	child_fail(errfd, STEP_EXEC, child_exec(spec->argv, spec->env));
}

/* Opens the namespaces of pid that differ from ours (-1 for the others):
 * the calling thread's, which the child inherits. Returns 0, or an errno. */
static int open_namespaces(pid_t pid, int ns_fds[N_NS])
{
	for (size_t i = 0; i < N_NS; i++) {
		char theirs[64], ours[64];
		struct stat a, b;

		ns_fds[i] = -1;
		snprintf(theirs, sizeof theirs, "/proc/%d/ns/%s", (int)pid, namespaces[i].name);
		snprintf(ours, sizeof ours, "/proc/thread-self/ns/%s", namespaces[i].name);
		if (stat(theirs, &a) != 0)
			return errno;
		if (stat(ours, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			continue;
		ns_fds[i] = open(theirs, O_RDONLY | O_CLOEXEC);
		if (ns_fds[i] < 0)
			return errno;
	}
	return 0;
}

/* Moves fd above 2, so that putting the pipes on 0-2 in the child never
 * overwrites one of them (an agent started with 0-2 closed gets low fds). */
static int above2(int fd)
{
	int nfd;

	if (fd > 2)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return nfd;
}

static int cloexec(int fd)
{
	if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

pid_t nsexec_start(const struct nsexec_spec *spec, int fds[3], char *errmsg, size_t size)
{
	int ns_fds[N_NS], child_fds[3] = {-1, -1, -1}, ep[2] = {-1, -1}, rv;
	struct child_err ce;
	ssize_t n;
	pid_t pid;

	for (size_t i = 0; i < N_NS; i++)
		ns_fds[i] = -1;
	for (int i = 0; i < 3; i++)
		fds[i] = -1;
	if (spec->ns_pid > 0 && (rv = open_namespaces(spec->ns_pid, ns_fds)) != 0) {
		snprintf(errmsg, size, "failed to exec in container: cannot open the "
			 "namespaces of process %d: %s", (int)spec->ns_pid, strerror(rv));
		goto err;
	}
	if (spec->tty) {
		int m, sl;

		if (openpty(&m, &sl, NULL, NULL, NULL) != 0) {
			snprintf(errmsg, size, "failed to exec in container: openpty: %s",
				 strerror(errno));
			goto err;
		}
		fds[1] = cloexec(above2(m));
		child_fds[0] = cloexec(above2(sl));
		if (fds[1] < 0 || child_fds[0] < 0) {
			snprintf(errmsg, size, "failed to exec in container: terminal: %s",
				 strerror(errno));
			goto err;
		}
	}
	for (int i = 0; i < 3 && !spec->tty; i++) {
		int p[2];

		if (!spec->pipe[i])
			continue;
		if (pipe2(p, O_CLOEXEC) != 0) {
			snprintf(errmsg, size, "failed to exec in container: pipe: %s",
				 strerror(errno));
			goto err;
		}
		p[0] = above2(p[0]);
		p[1] = above2(p[1]);
		/* stdin: the child reads p[0]; output: the child writes p[1]. */
		child_fds[i] = i == 0 ? p[0] : p[1];
		fds[i] = i == 0 ? p[1] : p[0];
		if (p[0] < 0 || p[1] < 0) {
			snprintf(errmsg, size, "failed to exec in container: pipe: %s",
				 strerror(errno));
			goto err;
		}
	}
	if (pipe2(ep, O_CLOEXEC) != 0) {
		snprintf(errmsg, size, "failed to exec in container: pipe: %s", strerror(errno));
		goto err;
	}
	/* _Fork: no atfork handlers run (libuv's would recreate its signal
	 * pipe in the child). */
	pid = _Fork();
	if (pid == 0)
		child_main(spec, child_fds, ns_fds, ep[1]);
	rv = errno;
	close(ep[1]);
	ep[1] = -1;
	close_all(child_fds, 3);
	close_all(ns_fds, N_NS);
	if (pid < 0) {
		snprintf(errmsg, size, "failed to exec in container: fork: %s", strerror(rv));
		goto err;
	}
	do
		n = read(ep[0], &ce, sizeof ce);
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	ep[0] = -1;
	if (n != (ssize_t)sizeof ce)
		return pid;     /* closed on exec: the command runs */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	switch (ce.step) {
	case STEP_SETNS:
		snprintf(errmsg, size, "failed to exec in container: cannot enter the "
			 "container's namespaces: %s", strerror(ce.err));
		break;
	case STEP_TTY:
		snprintf(errmsg, size, "failed to exec in container: cannot set up the "
			 "terminal: %s", strerror(ce.err));
		break;
	case STEP_CWD:
		snprintf(errmsg, size, "failed to exec in container: chdir to %s: %s",
			 spec->cwd, strerror(ce.err));
		break;
	default: {
		const char *a0 = spec->argv[0];

		/* runc's wording, which kubectl users know. */
		if (ce.err == ENOENT && strchr(a0, '/') == NULL)
			snprintf(errmsg, size, "failed to exec in container: starting container "
				 "process caused: exec: \"%s\": executable file not found in $PATH",
				 a0);
		else if (ce.err == ENOENT)
			snprintf(errmsg, size, "failed to exec in container: starting container "
				 "process caused: exec: \"%s\": stat %s: no such file or directory",
				 a0, a0);
		else
			snprintf(errmsg, size, "failed to exec in container: starting container "
				 "process caused: exec: \"%s\": %s", a0, strerror(ce.err));
		break;
	}
	}
	close_all(fds, 3);
	return -1;
err:
	close_all(ns_fds, N_NS);
	close_all(child_fds, 3);
	close_all(fds, 3);
	close_all(ep, 2);
	return -1;
}

void nsexec_kill_session(pid_t sid, int sig)
{
	DIR *d;
	struct dirent *e;

	if (sid <= 1)
		return;
	kill(-sid, sig);         /* the leader's group: no scan needed */
	d = opendir("/proc");
	while (d != NULL && (e = readdir(d)) != NULL) {
		char path[300], stat[512], *rp;
		int fd, session;
		ssize_t n;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, stat, sizeof stat - 1);
		close(fd);
		if (n <= 0)
			continue;
		stat[n] = '\0';
		/* After the command name (which may hold anything): state,
		 * parent, process group, session. */
		rp = strrchr(stat, ')');
		if (rp != NULL && sscanf(rp + 1, " %*c %*d %*d %d", &session) == 1 &&
		    session == (int)sid)
			kill((pid_t)atoi(e->d_name), sig);
	}
	if (d != NULL)
		closedir(d);
}
