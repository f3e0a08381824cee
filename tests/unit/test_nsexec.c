/* test_nsexec.c — starting a command for kubectl exec: it gets the
 * environment, working directory and pipes asked for, runs in a session of
 * its own, finds its command along the given PATH (not the agent's), and a
 * command or directory that does not exist is reported in kubectl's words
 * with nothing left open. (Joining a container's namespaces needs root and
 * a container: tests/e2e/test_exec.py.) */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "orchestrator/agent/nsexec.h"

static size_t read_all(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r;

	while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	return n;
}

static int wait_exit(pid_t pid)
{
	int st;

	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The command sees the env and directory given, reads the stdin pipe, writes
 * both output pipes apart, leads its own process group, and exits with its
 * code. */
static void test_env_cwd_pipes_session(void **state)
{
	char *argv[] = {"sh", "-c",
			"echo \"$GREETING $(pwd)\"; cat; echo oops >&2; "
			"read -r _ _ _ _ pgrp _ < /proc/$$/stat; [ \"$pgrp\" = $$ ] && exit 7; "
			"exit 1", NULL};
	char *env[] = {"GREETING=hello", "PATH=/usr/bin:/bin", NULL};
	struct nsexec_spec spec = {.argv = argv, .env = env, .cwd = "/tmp",
				   .pipe = {true, true, true}};
	char err[256], out[256];
	int fds[3];
	pid_t pid;

	(void)state;
	pid = nsexec_start(&spec, fds, err, sizeof err);
	assert_true(pid > 0);
	assert_true(fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0);
	assert_int_equal(write(fds[0], "in\n", 3), 3);
	close(fds[0]);
	read_all(fds[1], out, sizeof out);
	assert_string_equal(out, "hello /tmp\nin\n");
	read_all(fds[2], out, sizeof out);
	assert_string_equal(out, "oops\n");
	close(fds[1]);
	close(fds[2]);
	assert_int_equal(wait_exit(pid), 7);
}

/* Streams not asked for are /dev/null and have no pipe. */
static void test_streams_not_asked_for(void **state)
{
	char *argv[] = {"sh", "-c", "echo lost; read x; exit $?", NULL};
	char *env[] = {"PATH=/usr/bin:/bin", NULL};
	struct nsexec_spec spec = {.argv = argv, .env = env, .cwd = "/",
				   .pipe = {false, false, false}};
	char err[256];
	int fds[3];
	pid_t pid;

	(void)state;
	pid = nsexec_start(&spec, fds, err, sizeof err);
	assert_true(pid > 0);
	assert_int_equal(fds[0], -1);
	assert_int_equal(fds[1], -1);
	assert_int_equal(fds[2], -1);
	/* stdin is at EOF at once: read fails (1) instead of blocking. */
	assert_int_equal(wait_exit(pid), 1);
}

/* With err_to_out (a terminal was asked for), stderr comes on the stdout
 * pipe, in order. */
static void test_err_to_out(void **state)
{
	char *argv[] = {"sh", "-c", "echo out; echo err >&2; echo out2", NULL};
	char *env[] = {"PATH=/usr/bin:/bin", NULL};
	struct nsexec_spec spec = {.argv = argv, .env = env, .cwd = "/",
				   .pipe = {false, true, false}, .err_to_out = true};
	char err[256], out[256];
	int fds[3];
	pid_t pid;

	(void)state;
	pid = nsexec_start(&spec, fds, err, sizeof err);
	assert_true(pid > 0);
	assert_int_equal(fds[2], -1);
	read_all(fds[1], out, sizeof out);
	close(fds[1]);
	assert_string_equal(out, "out\nerr\nout2\n");
	assert_int_equal(wait_exit(pid), 0);
}

/* With tty the command gets a new terminal as its controlling one on 0-2:
 * what is written to the master is its input (echoed), its output and
 * errors come back on the master, and no other descriptor is made. */
static void test_tty(void **state)
{
	char *argv[] = {"/bin/sh", "-c", "read x; tty >/dev/null && echo \"tty $x\"; "
			"echo err >&2; [ -t 0 ] && [ -t 2 ] && exit 4", NULL};
	char *env[] = {"PATH=/usr/bin:/bin", NULL};
	struct nsexec_spec spec = {.argv = argv, .env = env, .cwd = "/", .tty = true};
	char err[256], out[512];
	size_t n = 0;
	ssize_t r;
	int fds[3];
	pid_t pid;

	(void)state;
	pid = nsexec_start(&spec, fds, err, sizeof err);
	assert_true(pid > 0);
	assert_int_equal(fds[0], -1);
	assert_true(fds[1] >= 0);
	assert_int_equal(fds[2], -1);
	assert_int_equal(write(fds[1], "yes\n", 4), 4);
	/* EIO once the command has exited and the terminal is closed. */
	while (n + 1 < sizeof out && (r = read(fds[1], out + n, sizeof out - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	close(fds[1]);
	assert_non_null(strstr(out, "tty yes\r\n"));
	assert_non_null(strstr(out, "err\r\n"));
	assert_int_equal(wait_exit(pid), 4);
}

/* A bare name is searched in the command's PATH, not the agent's. */
static void test_path_is_the_containers(void **state)
{
	char *argv[] = {"sh", "-c", "exit 0", NULL};
	char *env[] = {"PATH=/nonexistent", NULL};
	struct nsexec_spec spec = {.argv = argv, .env = env, .cwd = "/"};
	char err[512];
	int fds[3];

	(void)state;
	assert_int_equal(nsexec_start(&spec, fds, err, sizeof err), -1);
	assert_non_null(strstr(err, "exec: \"sh\": executable file not found in $PATH"));
	assert_int_equal(fds[0], -1);
	assert_int_equal(fds[1], -1);
	assert_int_equal(fds[2], -1);
}

/* A path that does not exist and a directory that does not exist are
 * reported with the path. */
static void test_missing_binary_and_directory(void **state)
{
	char *missing[] = {"/no/such/binary", NULL};
	char *sh[] = {"sh", "-c", "exit 0", NULL};
	char *env[] = {"PATH=/usr/bin:/bin", NULL};
	struct nsexec_spec spec = {.argv = missing, .env = env, .cwd = "/",
				   .pipe = {true, true, true}};
	char err[512];
	int fds[3];

	(void)state;
	assert_int_equal(nsexec_start(&spec, fds, err, sizeof err), -1);
	assert_non_null(strstr(err, "stat /no/such/binary: no such file or directory"));
	assert_int_equal(fds[1], -1);
	spec.argv = sh;
	spec.cwd = "/no/such/dir";
	assert_int_equal(nsexec_start(&spec, fds, err, sizeof err), -1);
	assert_non_null(strstr(err, "chdir to /no/such/dir"));
}

/* A process that is gone has no namespaces to join: a clear error. */
static void test_gone_process(void **state)
{
	char *argv[] = {"true", NULL};
	char *env[] = {"PATH=/usr/bin:/bin", NULL};
	struct nsexec_spec spec = {.argv = argv, .env = env, .cwd = "/"};
	char err[512];
	int fds[3];
	pid_t gone = fork();

	(void)state;
	if (gone == 0)
		_exit(0);
	assert_int_equal(waitpid(gone, NULL, 0), gone);
	spec.ns_pid = gone;
	assert_int_equal(nsexec_start(&spec, fds, err, sizeof err), -1);
	assert_non_null(strstr(err, "namespaces of process"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_env_cwd_pipes_session),
		cmocka_unit_test(test_streams_not_asked_for),
		cmocka_unit_test(test_err_to_out),
		cmocka_unit_test(test_tty),
		cmocka_unit_test(test_path_is_the_containers),
		cmocka_unit_test(test_missing_binary_and_directory),
		cmocka_unit_test(test_gone_process),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
