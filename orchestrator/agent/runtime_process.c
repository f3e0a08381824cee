/* runtime_process.c — the process runtime: each container attempt is a
 * process group on the host, watched by a small shim process, with its
 * output in rotated log files under DATA/pods/<uid>/<container>/.
 *
 * Happy path: start forks a shim. The shim calls setsid() (so the group id
 * is its pid), ignores SIGTERM, and forks the container process, which
 * execs the command with stdout and stderr on two pipes. The shim writes
 * each line to <attempt>.log in the CRI format ("<RFC3339Nano> stdout F
 * text"), rotating to <attempt>.log.1 at 10 MiB, and when the container
 * exits it writes <attempt>.exit (exit code, signal, time) and then kills
 * its whole group, itself included, so nothing the container started
 * outlives it. The agent records the shim's pid and start time in
 * "current" and polls for its end every 200 ms.
 *
 * Failure modes: an exec failure is reported through a close-on-exec pipe
 * and recorded as cannot_run (the kubelet's ContainerCannotRun); a group
 * killed with SIGKILL before the shim wrote the exit file is reported as
 * killed by signal 9. The shim is not the agent: when the agent dies the
 * containers keep running and their logs keep flowing; on start the agent
 * reads every "current" file and adopts the shims still alive (pid and
 * /proc start time must both match, so a reused pid is never mistaken for
 * ours), or reports how they ended.
 *
 * The shim runs between fork and _exit without exec: it uses system calls
 * only (no malloc, no stdio), everything it needs is prepared before fork,
 * and it forks with _Fork() so no atfork handler (libuv has one) runs. */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <sys/mount.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/err.h"
#include "lib/log.h"
#include "orchestrator/agent/runtime.h"
#include "lib/dirs.h"

#define LOG_ROTATE_BYTES (10u * 1024 * 1024)
#define POLL_MS 200

struct proc_runtime;

struct proc_container {
	struct proc_runtime *rt;
	struct proc_container *next;
	char dir[PATH_MAX];          /* DATA/pods/<uid>/<name> */
	char uid[128], ns[256], pod[256], name[256];
	unsigned attempt;
	pid_t pid;                   /* the shim: also the process group id */
	unsigned long long start_ticks; /* /proc/<pid>/stat starttime */
	int64_t started_at;
	bool our_child;              /* forked by this agent: waitpid works */
	bool watching;
	bool exited;
	runtime_exit_cb cb;
	void *data;
};

struct proc_runtime {
	struct runtime base;
	uv_loop_t *loop;
	char root[PATH_MAX];         /* DATA/pods */
	uv_timer_t poll;
	struct proc_container *list;
};

/* ---- small file helpers (agent side) ---- */


static int write_file_atomic(const char *path, const char *text)
{
	char tmp[PATH_MAX + 8];
	FILE *f;
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	fputs(text, f);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static int read_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n;
	if (f == NULL)
		return -1;
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
	return 0;
}

static int rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	if (d == NULL)
		return unlink(path);
	while ((e = readdir(d)) != NULL) {
		char sub[PATH_MAX];
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= sizeof sub)
			continue;
		if (e->d_type == DT_DIR)
			rm_rf(sub);
		else
			unlink(sub);
	}
	closedir(d);
	return rmdir(path);
}

/* The start time of pid in clock ticks since boot, and whether it is a
 * zombie (dead, waiting to be reaped): 0, or -1 when there is no such pid. */
static int proc_stat(pid_t pid, unsigned long long *ticks, bool *zombie)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	int field;
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (read_file(path, buf, sizeof buf) != 0)
		return -1;
	/* The command name may hold spaces and parentheses: fields start
	 * after the last ')'. */
	p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	p += 2;
	*zombie = *p == 'Z' || *p == 'X';
	for (field = 3; field < 22 && p != NULL; field++) {
		p = strchr(p, ' ');
		if (p != NULL)
			p++;
	}
	if (p == NULL)
		return -1;
	v = strtoull(p, NULL, 10);
	*ticks = v;
	return 0;
}

/* ---- the shim (after fork: system calls only) ---- */

struct shim_args {
	const char *log_path;         /* <attempt>.log */
	const char *log_rotated;      /* <attempt>.log.1 */
	const char *exit_path;        /* <attempt>.exit */
	const char *exit_tmp;
	const char *exec_path;        /* resolved argv[0], or NULL: not found */
	char *const *argv;
	char *const *env;
	const char *cwd;
	uint64_t memory_limit;
	const struct runtime_mount *mounts;
	size_t n_mounts;
	const char *netns;            /* the pod's network namespace, or NULL */
};

/* What the container child reports through the exec pipe when it fails
 * before exec: negative codes, so they cannot be mistaken for exec's errno. */
#define SHIM_ERR_VOLUMES (-1)
#define SHIM_ERR_NETNS (-2)

static size_t put_str(char *dst, size_t at, size_t size, const char *s)
{
	while (*s != '\0' && at + 1 < size)
		dst[at++] = *s++;
	dst[at] = '\0';
	return at;
}

static size_t put_uint(char *dst, size_t at, size_t size, unsigned long long v, int width)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0 && n < (int)sizeof tmp);
	while (n < width && n < (int)sizeof tmp)
		tmp[n++] = '0';
	while (n > 0 && at + 1 < size)
		dst[at++] = tmp[--n];
	dst[at] = '\0';
	return at;
}

/* Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, no
 * library calls: the shim must stay async-signal-safe). */
static void civil(long long days, int *y, unsigned *m, unsigned *d)
{
	long long z = days + 719468;
	long long era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

static size_t put_timestamp(char *dst, size_t at, size_t size)
{
	struct timespec ts;
	int y;
	unsigned mo, d;
	long long secs;
	clock_gettime(CLOCK_REALTIME, &ts);
	secs = (long long)ts.tv_sec;
	civil(secs / 86400, &y, &mo, &d);
	at = put_uint(dst, at, size, (unsigned long long)y, 4);
	at = put_str(dst, at, size, "-");
	at = put_uint(dst, at, size, mo, 2);
	at = put_str(dst, at, size, "-");
	at = put_uint(dst, at, size, d, 2);
	at = put_str(dst, at, size, "T");
	at = put_uint(dst, at, size, (unsigned long long)(secs % 86400 / 3600), 2);
	at = put_str(dst, at, size, ":");
	at = put_uint(dst, at, size, (unsigned long long)(secs % 3600 / 60), 2);
	at = put_str(dst, at, size, ":");
	at = put_uint(dst, at, size, (unsigned long long)(secs % 60), 2);
	at = put_str(dst, at, size, ".");
	at = put_uint(dst, at, size, (unsigned long long)ts.tv_nsec, 9);
	return put_str(dst, at, size, "Z");
}

struct shim_log {
	int fd;
	off_t size;
	const struct shim_args *a;
};

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* One CRI log line: "<time> <stream> <F|P> <text>\n". */
static void shim_log_line(struct shim_log *l, const char *stream, bool partial,
			  const char *text, size_t len)
{
	char head[96];
	size_t n = put_timestamp(head, 0, sizeof head);
	n = put_str(head, n, sizeof head, " ");
	n = put_str(head, n, sizeof head, stream);
	n = put_str(head, n, sizeof head, partial ? " P " : " F ");
	if (l->size > (off_t)LOG_ROTATE_BYTES) {
		/* Keep two files: the full one moves aside, the older one goes. */
		rename(l->a->log_path, l->a->log_rotated);
		close(l->fd);
		l->fd = open(l->a->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
			     0600);
		l->size = 0;
		if (l->fd < 0)
			return;
	}
	write_all(l->fd, head, n);
	write_all(l->fd, text, len);
	write_all(l->fd, "\n", 1);
	l->size += (off_t)(n + len + 1);
}

struct shim_stream {
	int fd;
	const char *name;
	char buf[16384];
	size_t len;
};

/* Reads what is there; returns false at end of file. */
static bool shim_pump(struct shim_log *l, struct shim_stream *s)
{
	ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
	size_t start = 0;
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0) {
		if (s->len > 0)
			shim_log_line(l, s->name, false, s->buf, s->len);
		s->len = 0;
		return false;
	}
	s->len += (size_t)n;
	for (size_t i = 0; i < s->len; i++) {
		if (s->buf[i] != '\n')
			continue;
		shim_log_line(l, s->name, false, s->buf + start, i - start);
		start = i + 1;
	}
	if (start == 0 && s->len == sizeof s->buf) {
		/* A line longer than the buffer goes out in partial pieces. */
		shim_log_line(l, s->name, true, s->buf, s->len);
		s->len = 0;
		return true;
	}
	memmove(s->buf, s->buf + start, s->len - start);
	s->len -= start;
	return true;
}

static void shim_write_exit(const struct shim_args *a, int code, int sig, bool cannot_run,
			    const char *msg)
{
	char buf[512];
	size_t n = 0;
	struct timespec ts;
	int fd;
	clock_gettime(CLOCK_REALTIME, &ts);
	n = put_uint(buf, n, sizeof buf, (unsigned long long)code, 1);
	n = put_str(buf, n, sizeof buf, " ");
	n = put_uint(buf, n, sizeof buf, (unsigned long long)sig, 1);
	n = put_str(buf, n, sizeof buf, cannot_run ? " 1 " : " 0 ");
	n = put_uint(buf, n, sizeof buf, (unsigned long long)ts.tv_sec, 1);
	n = put_str(buf, n, sizeof buf, "\n");
	n = put_str(buf, n, sizeof buf, msg);
	fd = open(a->exit_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	write_all(fd, buf, n);
	fsync(fd);
	close(fd);
	rename(a->exit_tmp, a->exit_path);
}

static void reset_signals(void)
{
	struct sigaction sa = {.sa_handler = SIG_DFL};
	sigset_t all;
	for (int s = 1; s < NSIG; s++)
		sigaction(s, &sa, NULL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
}


/* Volumes at their mount paths, seen by this process and its children only:
 * a private mount namespace, then one bind mount per volume. Needs root;
 * without it the volumes stay reachable through CAPSTAN_VOLUME_<NAME>. */
static int shim_mount_volumes(const struct shim_args *a)
{
	if (a->n_mounts == 0 || geteuid() != 0)
		return 0;
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return -1;
	for (size_t i = 0; i < a->n_mounts; i++) {
		const struct runtime_mount *m = &a->mounts[i];
		if (dirs_make_all(m->target, 0755) != 0 ||
		    mount(m->source, m->target, NULL, MS_BIND | MS_REC, NULL) != 0)
			return -1;
		if (m->read_only && mount(NULL, m->target, NULL,
					  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL) != 0)
			return -1;
	}
	return 0;
}

static _Noreturn void shim_main(const struct shim_args *a)
{
	struct sigaction ign = {.sa_handler = SIG_IGN};
	struct shim_log l = {.fd = -1, .a = a};
	struct shim_stream so = {.name = "stdout"}, se = {.name = "stderr"};
	int out[2], err[2], ep[2], devnull, status = 0, rerr = 0;
	bool out_open = true, err_open = true, exited = false;
	pid_t child;
	ssize_t n;

	setsid();
	/* ps shows the shim as what it is, not as a copy of the agent. */
	prctl(PR_SET_NAME, "capstan-shim", 0, 0, 0);
	reset_signals();
	/* SIGTERM to the group is for the container; the shim stays to record
	 * how it ended. */
	sigaction(SIGTERM, &ign, NULL);
	sigaction(SIGINT, &ign, NULL);
	sigaction(SIGHUP, &ign, NULL);
	sigaction(SIGPIPE, &ign, NULL);
	devnull = open("/dev/null", O_RDWR);
	if (devnull >= 0) {
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(devnull, 2);
		if (devnull > 2)
			close(devnull);
	}
	/* Nothing of the agent (sockets, the store) leaks into containers. */
	for (int fd = 3; fd < 4096; fd++)
		close(fd);
	l.fd = open(a->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (l.fd >= 0)
		l.size = lseek(l.fd, 0, SEEK_END);
	if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
	    pipe2(ep, O_CLOEXEC) != 0) {
		shim_write_exit(a, 128, 0, true, "cannot create pipes");
		_exit(1);
	}
	if (a->exec_path == NULL) {
		char msg[400];
		size_t m = put_str(msg, 0, sizeof msg, "exec: \"");
		m = put_str(msg, m, sizeof msg, a->argv[0]);
		put_str(msg, m, sizeof msg, "\": executable file not found in $PATH");
		shim_write_exit(a, 128, 0, true, msg);
		kill(0, SIGKILL);
		_exit(1);
	}
	/* _Fork: no atfork handlers. libuv's would close and recreate its
	 * signal pipe in the child, on fd numbers our pipes now use. */
	child = _Fork();
	if (child == 0) {
		struct sigaction dfl = {.sa_handler = SIG_DFL};
		int e;
		sigaction(SIGTERM, &dfl, NULL);
		sigaction(SIGINT, &dfl, NULL);
		sigaction(SIGHUP, &dfl, NULL);
		sigaction(SIGPIPE, &dfl, NULL);
		dup2(out[1], 1);
		dup2(err[1], 2);
		if (a->memory_limit > 0) {
			struct rlimit rl = {.rlim_cur = a->memory_limit,
					    .rlim_max = a->memory_limit};
			setrlimit(RLIMIT_AS, &rl);
		}
		/* The pod's network first: every container of the pod shares it
		 * (its IP, its loopback). */
		if (a->netns != NULL) {
			int nfd = open(a->netns, O_RDONLY | O_CLOEXEC);
			if (nfd < 0 || setns(nfd, CLONE_NEWNET) != 0) {
				e = SHIM_ERR_NETNS;
				write_all(ep[1], (const char *)&e, sizeof e);
				_exit(127);
			}
			close(nfd);
		}
		if (shim_mount_volumes(a) != 0) {
			/* Negative: not the exec's fault (see the reader below). */
			e = SHIM_ERR_VOLUMES;
			write_all(ep[1], (const char *)&e, sizeof e);
			_exit(127);
		}
		if (a->cwd != NULL && chdir(a->cwd) != 0) {
			e = errno;
			write_all(ep[1], (const char *)&e, sizeof e);
			_exit(127);
		}
		execve(a->exec_path, a->argv, a->env);
		e = errno;
		write_all(ep[1], (const char *)&e, sizeof e);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	close(ep[1]);
	if (child < 0) {
		shim_write_exit(a, 128, 0, true, "fork failed");
		kill(0, SIGKILL);
		_exit(1);
	}
	n = read(ep[0], &rerr, sizeof rerr);
	close(ep[0]);
	if (n == (ssize_t)sizeof rerr) {
		char msg[400];
		size_t m = put_str(msg, 0, sizeof msg, "exec: \"");
		m = put_str(msg, m, sizeof msg, a->argv[0]);
		m = put_str(msg, m, sizeof msg, "\": ");
		if (rerr < 0) {
			m = put_str(msg, 0, sizeof msg, rerr == SHIM_ERR_NETNS ?
					"cannot join the pod's network namespace" :
					"cannot mount the container's volumes");
			waitpid(child, &status, 0);
			shim_write_exit(a, 128, 0, true, msg);
			kill(0, SIGKILL);
			_exit(1);
		}
		put_str(msg, m, sizeof msg, rerr == ENOENT ? "no such file or directory" :
					    rerr == EACCES ? "permission denied" :
					    "cannot execute");
		waitpid(child, &status, 0);
		shim_write_exit(a, 128, 0, true, msg);
		kill(0, SIGKILL);
		_exit(1);
	}
	so.fd = out[0];
	se.fd = err[0];
	fcntl(so.fd, F_SETFL, O_NONBLOCK);
	fcntl(se.fd, F_SETFL, O_NONBLOCK);
	while (!exited || out_open || err_open) {
		struct pollfd pf[2];
		int np = 0;
		if (out_open)
			pf[np++] = (struct pollfd){.fd = so.fd, .events = POLLIN};
		if (err_open)
			pf[np++] = (struct pollfd){.fd = se.fd, .events = POLLIN};
		if (np > 0)
			poll(pf, (nfds_t)np, exited ? 50 : 200);
		else
			break;
		for (int i = 0; i < np; i++) {
			if (pf[i].revents == 0)
				continue;
			if (pf[i].fd == so.fd)
				out_open = shim_pump(&l, &so);
			else
				err_open = shim_pump(&l, &se);
		}
		if (!exited && waitpid(child, &status, WNOHANG) == child) {
			exited = true;
			/* Children the container left holding the pipes would keep
			 * them open forever: read what is buffered, then stop. */
			for (int i = 0; i < 64 && (out_open || err_open); i++) {
				if (out_open)
					out_open = shim_pump(&l, &so) && i < 63;
				if (err_open)
					err_open = shim_pump(&l, &se) && i < 63;
			}
			break;
		}
	}
	if (!exited)
		waitpid(child, &status, 0);
	if (WIFSIGNALED(status))
		shim_write_exit(a, 128 + WTERMSIG(status), WTERMSIG(status), false, "");
	else
		shim_write_exit(a, WEXITSTATUS(status), 0, false, "");
	if (l.fd >= 0)
		fsync(l.fd);
	/* The whole group goes, the shim last: no orphans. */
	kill(0, SIGKILL);
	_exit(0);
}

/* ---- agent side ---- */

/* Finds argv0 in the PATH of env (the container's, not the agent's). */
static char *resolve_exec(const char *argv0, char *const *env)
{
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	char buf[PATH_MAX];
	if (strchr(argv0, '/') != NULL)
		return access(argv0, X_OK) == 0 ? strdup(argv0) : NULL;
	for (size_t i = 0; env != NULL && env[i] != NULL; i++)
		if (strncmp(env[i], "PATH=", 5) == 0)
			path = env[i] + 5;
	while (*path != '\0') {
		size_t n = strcspn(path, ":");
		if (n > 0 && (size_t)snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, argv0) <
				     sizeof buf &&
		    access(buf, X_OK) == 0) {
			struct stat st;
			if (stat(buf, &st) == 0 && S_ISREG(st.st_mode))
				return strdup(buf);
		}
		path += n;
		if (*path == ':')
			path++;
	}
	return NULL;
}

static struct proc_container *container_new(struct proc_runtime *rt, const char *uid,
					    const char *ns, const char *pod, const char *name)
{
	struct proc_container *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->rt = rt;
	snprintf(c->uid, sizeof c->uid, "%s", uid);
	snprintf(c->ns, sizeof c->ns, "%s", ns);
	snprintf(c->pod, sizeof c->pod, "%s", pod);
	snprintf(c->name, sizeof c->name, "%s", name);
	if ((size_t)snprintf(c->dir, sizeof c->dir, "%s/%s/%s", rt->root, uid, name) >=
	    sizeof c->dir) {
		free(c);
		return NULL;
	}
	c->next = rt->list;
	rt->list = c;
	return c;
}

static void container_unlink(struct proc_container *c)
{
	for (struct proc_container **p = &c->rt->list; *p != NULL; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			return;
		}
	}
}

static int proc_start(struct runtime *base, const struct runtime_spec *spec, runtime_exit_cb cb,
		      void *data, struct runtime_container **out, int64_t *started_at,
		      char *errmsg)
{
	struct proc_runtime *rt = (struct proc_runtime *)base;
	char log_path[PATH_MAX + 32], log_rot[PATH_MAX + 32], exit_path[PATH_MAX + 32];
	char exit_tmp[PATH_MAX + 40], meta[PATH_MAX + 32], text[1024];
	struct shim_args a = {0};
	struct proc_container *c;
	bool zombie;
	pid_t pid;

	c = container_new(rt, spec->pod_uid, spec->pod_ns, spec->pod_name, spec->name);
	if (c == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		return -1;
	}
	c->attempt = spec->attempt;
	if (dirs_make_all(c->dir, 0700) != 0) {
		cap_errmsg_printf(errmsg, "cannot create %s: %s", c->dir, strerror(errno));
		goto err_unlink;
	}
	snprintf(meta, sizeof meta, "%s/%s/pod", rt->root, spec->pod_uid);
	snprintf(text, sizeof text, "%s\n%s\n", spec->pod_ns, spec->pod_name);
	write_file_atomic(meta, text);
	snprintf(log_path, sizeof log_path, "%s/%u.log", c->dir, spec->attempt);
	snprintf(log_rot, sizeof log_rot, "%s/%u.log.1", c->dir, spec->attempt);
	snprintf(exit_path, sizeof exit_path, "%s/%u.exit", c->dir, spec->attempt);
	snprintf(exit_tmp, sizeof exit_tmp, "%s/%u.exit.tmp", c->dir, spec->attempt);
	unlink(exit_path);
	/* The attempt before the previous one is no longer wanted (kubectl
	 * logs --previous reads only the last one). */
	if (spec->attempt >= 2) {
		char old[PATH_MAX + 32];
		snprintf(old, sizeof old, "%s/%u.log", c->dir, spec->attempt - 2);
		unlink(old);
		snprintf(old, sizeof old, "%s/%u.log.1", c->dir, spec->attempt - 2);
		unlink(old);
		snprintf(old, sizeof old, "%s/%u.exit", c->dir, spec->attempt - 2);
		unlink(old);
	}
	a.log_path = log_path;
	a.log_rotated = log_rot;
	a.exit_path = exit_path;
	a.exit_tmp = exit_tmp;
	a.argv = spec->argv;
	a.env = spec->env;
	a.cwd = spec->cwd != NULL ? spec->cwd : c->dir;
	a.memory_limit = spec->memory_limit;
	a.mounts = spec->mounts;
	a.n_mounts = spec->n_mounts;
	a.netns = spec->netns;
	a.exec_path = resolve_exec(spec->argv[0], spec->env);
	*started_at = (int64_t)time(NULL);
	pid = _Fork();
	if (pid == 0)
		shim_main(&a);
	free((char *)a.exec_path);
	if (pid < 0) {
		cap_errmsg_printf(errmsg, "fork: %s", strerror(errno));
		goto err_unlink;
	}
	/* No setpgid from here: the shim's setsid would then fail (a group
	 * leader cannot start a session). A kill before the shim ran finds no
	 * group and no container yet, so the next one does the work. */
	c->pid = pid;
	c->our_child = true;
	c->started_at = *started_at;
	if (proc_stat(pid, &c->start_ticks, &zombie) != 0)
		c->start_ticks = 0;
	snprintf(meta, sizeof meta, "%s/current", c->dir);
	snprintf(text, sizeof text, "%d %llu %u %lld\n", (int)pid, c->start_ticks, spec->attempt,
		 (long long)c->started_at);
	if (write_file_atomic(meta, text) != 0)
		log_warn("cannot record %s: %s", meta, strerror(errno));
	c->cb = cb;
	c->data = data;
	c->watching = true;
	*out = (struct runtime_container *)c;
	return 0;

err_unlink:
	container_unlink(c);
	free(c);
	return -1;
}

static int proc_kill(struct runtime_container *rc, int sig)
{
	struct proc_container *c = (struct proc_container *)rc;
	if (c->exited || c->pid <= 1)
		return 0;
	if (kill(-c->pid, sig) != 0 && errno != ESRCH)
		return -1;
	return 0;
}

static void proc_release(struct runtime_container *rc)
{
	struct proc_container *c = (struct proc_container *)rc;
	if (c == NULL)
		return;
	container_unlink(c);
	free(c);
}

/* How an attempt ended, from its exit file (or a guess when the group was
 * killed before the shim wrote one). */
static void read_exit(struct proc_container *c, int wait_status, bool have_status,
		      struct runtime_exit *e)
{
	char path[PATH_MAX + 32], buf[600];
	int code = 0, sig = 0, cr = 0;
	long long fin = 0;
	memset(e, 0, sizeof *e);
	snprintf(path, sizeof path, "%s/%u.exit", c->dir, c->attempt);
	if (read_file(path, buf, sizeof buf) == 0 &&
	    sscanf(buf, "%d %d %d %lld", &code, &sig, &cr, &fin) == 4) {
		char *nl = strchr(buf, '\n');
		e->exit_code = code;
		e->signal = sig;
		e->cannot_run = cr != 0;
		e->finished_at = fin;
		if (nl != NULL)
			snprintf(e->message, sizeof e->message, "%s", nl + 1);
		return;
	}
	/* The shim died before recording: the group was killed (by us, or
	 * by someone with SIGKILL). */
	e->signal = have_status && WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : SIGKILL;
	e->exit_code = 128 + e->signal;
	e->finished_at = (int64_t)time(NULL);
}

static bool shim_gone(struct proc_container *c, int *status, bool *have_status)
{
	unsigned long long ticks;
	bool zombie;
	*have_status = false;
	if (c->our_child) {
		pid_t r = waitpid(c->pid, status, WNOHANG);
		if (r == c->pid) {
			*have_status = true;
			return true;
		}
		if (r < 0 && errno == ECHILD)
			return true;
		return false;
	}
	if (proc_stat(c->pid, &ticks, &zombie) != 0)
		return true;
	return zombie || (c->start_ticks != 0 && ticks != c->start_ticks);
}

static void on_poll(uv_timer_t *t)
{
	struct proc_runtime *rt = t->data;
	struct proc_container *c;
restart:
	for (c = rt->list; c != NULL; c = c->next) {
		struct runtime_exit e;
		char cur[PATH_MAX + 16];
		int status = 0;
		bool have;
		if (!c->watching || c->exited || !shim_gone(c, &status, &have))
			continue;
		c->exited = true;
		read_exit(c, status, have, &e);
		snprintf(cur, sizeof cur, "%s/current", c->dir);
		unlink(cur);
		/* The callback may release c or others: walk again from the head
		 * (exited ones are skipped, so this ends). */
		c->cb(c->data, (struct runtime_container *)c, &e);
		goto restart;
	}
}

static void proc_recover(struct runtime *base, runtime_found_fn fn, void *data)
{
	struct proc_runtime *rt = (struct proc_runtime *)base;
	DIR *pods = opendir(rt->root);
	struct dirent *pe;
	if (pods == NULL)
		return;
	while ((pe = readdir(pods)) != NULL) {
		char pdir[PATH_MAX], meta[PATH_MAX + 8], text[600], ns[256] = "", pod[256] = "";
		DIR *cs;
		struct dirent *ce;
		if (pe->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(pdir, sizeof pdir, "%s/%s", rt->root, pe->d_name) >= sizeof pdir)
			continue;
		snprintf(meta, sizeof meta, "%s/pod", pdir);
		if (read_file(meta, text, sizeof text) == 0)
			sscanf(text, "%255s %255s", ns, pod);
		cs = opendir(pdir);
		if (cs == NULL)
			continue;
		while ((ce = readdir(cs)) != NULL) {
			char cur[PATH_MAX + 300];
			struct proc_container *c;
			struct runtime_found f = {0};
			int pid = 0;
			unsigned long long ticks = 0, now_ticks;
			unsigned attempt = 0;
			long long started = 0;
			bool zombie;
			if (ce->d_name[0] == '.' || strcmp(ce->d_name, "volumes") == 0)
				continue;
			snprintf(cur, sizeof cur, "%s/%s/current", pdir, ce->d_name);
			if (read_file(cur, text, sizeof text) != 0 ||
			    sscanf(text, "%d %llu %u %lld", &pid, &ticks, &attempt, &started) != 4)
				continue;
			c = container_new(rt, pe->d_name, ns, pod, ce->d_name);
			if (c == NULL)
				continue;
			c->pid = pid;
			c->start_ticks = ticks;
			c->attempt = attempt;
			c->started_at = started;
			c->our_child = false;
			f.pod_uid = c->uid;
			f.pod_ns = c->ns;
			f.pod_name = c->pod;
			f.name = c->name;
			f.attempt = attempt;
			f.started_at = started;
			f.running = pid > 1 && proc_stat(pid, &now_ticks, &zombie) == 0 && !zombie &&
				    now_ticks == ticks;
			if (!f.running) {
				c->exited = true;
				read_exit(c, 0, false, &f.exit);
				unlink(cur);
			}
			fn(data, (struct runtime_container *)c, &f);
		}
		closedir(cs);
	}
	closedir(pods);
}

static void proc_adopt(struct runtime_container *rc, runtime_exit_cb cb, void *data)
{
	struct proc_container *c = (struct proc_container *)rc;
	c->cb = cb;
	c->data = data;
	c->watching = true;
}

static void proc_discard(struct runtime_container *rc)
{
	struct proc_container *c = (struct proc_container *)rc;
	char cur[PATH_MAX + 16];
	if (!c->exited && c->pid > 1)
		kill(-c->pid, SIGKILL);
	snprintf(cur, sizeof cur, "%s/current", c->dir);
	unlink(cur);
	proc_release(rc);
}

static int proc_log_path(struct runtime *base, const char *uid, const char *name,
			 unsigned attempt, char *buf, size_t size)
{
	struct proc_runtime *rt = (struct proc_runtime *)base;
	if ((size_t)snprintf(buf, size, "%s/%s/%s/%u.log", rt->root, uid, name, attempt) >= size)
		return -1;
	return 0;
}

static void proc_forget_pod(struct runtime *base, const char *uid)
{
	struct proc_runtime *rt = (struct proc_runtime *)base;
	char dir[PATH_MAX];
	if (strchr(uid, '/') != NULL || uid[0] == '.' || uid[0] == '\0')
		return;
	if ((size_t)snprintf(dir, sizeof dir, "%s/%s", rt->root, uid) < sizeof dir)
		rm_rf(dir);
}

/* ---- kubectl exec: the process whose namespaces it joins ---- */

/* The shim's only child is the container process. The kernel lists it in
 * /proc/<shim>/task/<shim>/children; without that file (a kernel built
 * without CONFIG_PROC_CHILDREN) /proc is searched for it. */
static pid_t shim_child(pid_t shim)
{
	char path[300], text[64];
	DIR *d;
	struct dirent *e;
	pid_t found = -1;

	snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)shim, (int)shim);
	if (read_file(path, text, sizeof text) == 0)
		return atoi(text) > 0 ? (pid_t)atoi(text) : -1;
	d = opendir("/proc");
	while (d != NULL && found < 0 && (e = readdir(d)) != NULL) {
		char stat[512], *rp;
		int ppid;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		if (read_file(path, stat, sizeof stat) != 0 || (rp = strrchr(stat, ')')) == NULL)
			continue;
		if (sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == shim)
			found = (pid_t)atoi(e->d_name);
	}
	if (d != NULL)
		closedir(d);
	return found;
}

static pid_t proc_exec_pid(struct runtime_container *base)
{
	struct proc_container *c = (struct proc_container *)base;
	char path[64];
	struct stat child_exe, shim_exe;
	pid_t pid;

	if (c->exited || c->pid <= 1 || (pid = shim_child(c->pid)) <= 0)
		return -1;
	/* Until it has exec'd, the child is a copy of the shim (its volumes
	 * not mounted yet): its executable is still the agent's. */
	snprintf(path, sizeof path, "/proc/%d/exe", (int)c->pid);
	if (stat(path, &shim_exe) != 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
	if (stat(path, &child_exe) != 0 ||
	    (child_exe.st_dev == shim_exe.st_dev && child_exe.st_ino == shim_exe.st_ino))
		return -1;
	return pid;
}

static void on_poll_closed(uv_handle_t *h)
{
	free(h->data);
}

static void proc_close(struct runtime *base)
{
	struct proc_runtime *rt = (struct proc_runtime *)base;
	while (rt->list != NULL)
		proc_release((struct runtime_container *)rt->list);
	uv_close((uv_handle_t *)&rt->poll, on_poll_closed);
}

static const struct runtime_ops proc_ops = {
	.start = proc_start,
	.kill = proc_kill,
	.release = proc_release,
	.recover = proc_recover,
	.adopt = proc_adopt,
	.discard = proc_discard,
	.log_path = proc_log_path,
	.forget_pod = proc_forget_pod,
	.exec_pid = proc_exec_pid,
	.close = proc_close,
};

int runtime_process_new(uv_loop_t *loop, const char *data_dir, struct runtime **out,
			char *errmsg)
{
	struct proc_runtime *rt = calloc(1, sizeof *rt);
	if (rt == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		return -1;
	}
	rt->base.ops = &proc_ops;
	rt->base.version = "capstan-process://0.1";
	rt->loop = loop;
	if ((size_t)snprintf(rt->root, sizeof rt->root, "%s/pods", data_dir) >= sizeof rt->root - 600 ||
	    dirs_make_all(rt->root, 0700) != 0) {
		cap_errmsg_printf(errmsg, "cannot create %s: %s", rt->root, strerror(errno));
		free(rt);
		return -1;
	}
	uv_timer_init(loop, &rt->poll);
	rt->poll.data = rt;
	uv_timer_start(&rt->poll, on_poll, POLL_MS, POLL_MS);
	*out = &rt->base;
	return 0;
}
