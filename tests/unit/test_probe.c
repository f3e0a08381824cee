/* test_probe.c — exec, httpGet and tcpSocket probes against real processes
 * and sockets on 127.0.0.1, and the success/failure thresholds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/err.h"
#include "lib/http.h"
#include "orchestrator/agent/probe.h"

struct outcome {
	int calls;
	enum probe_result result;
	char msg[300];
};

static void on_result(void *data, enum probe_result r, const char *msg)
{
	struct outcome *o = data;
	o->calls++;
	o->result = r;
	snprintf(o->msg, sizeof o->msg, "%s", msg);
}

/* Runs one probe to completion and checks that no handle is left behind. */
static struct outcome run_probe(const struct probe_spec *s)
{
	uv_loop_t loop;
	struct outcome o = {0};
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(probe_once(&loop, s, on_result, &o), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(o.calls, 1);
	return o;
}

static struct probe_spec exec_spec(char **argv)
{
	struct probe_spec s = {.kind = PROBE_EXEC, .argv = argv, .timeout_s = 1,
			       .period_s = 10, .success_threshold = 1, .failure_threshold = 3};
	return s;
}

/* An exec probe whose command exits 0 succeeds. */
static void test_exec_success(void **state)
{
	char *argv[] = {"/bin/sh", "-c", "exit 0", NULL};
	struct probe_spec s = exec_spec(argv);
	(void)state;
	assert_int_equal(run_probe(&s).result, PROBE_SUCCESS);
}

/* An exec probe whose command exits non-zero fails, and says with what. */
static void test_exec_failure(void **state)
{
	char *argv[] = {"/bin/sh", "-c", "exit 3", NULL};
	struct probe_spec s = exec_spec(argv);
	struct outcome o;
	(void)state;
	o = run_probe(&s);
	assert_int_equal(o.result, PROBE_FAILURE);
	assert_non_null(strstr(o.msg, "exited with 3"));
}

/* A missing probe command is a failed attempt, not an error. */
static void test_exec_missing_command(void **state)
{
	char *argv[] = {"/nonexistent/probe-cmd", NULL};
	struct probe_spec s = exec_spec(argv);
	(void)state;
	assert_int_equal(run_probe(&s).result, PROBE_FAILURE);
}

/* A hanging exec probe fails on timeout and its whole process group is
 * killed: the background child it started is gone too. */
static void test_exec_timeout_kills_group(void **state)
{
	char path[] = "/tmp/capstan-probe-XXXXXX";
	char script[512];
	char *argv[] = {"/bin/sh", "-c", script, NULL};
	struct probe_spec s = exec_spec(argv);
	struct outcome o;
	FILE *f;
	int fd, pid = 0, alive = 1;
	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	snprintf(script, sizeof script, "sleep 30 & echo $! > %s; wait", path);
	o = run_probe(&s);
	assert_int_equal(o.result, PROBE_FAILURE);
	assert_non_null(strstr(o.msg, "timed out"));
	f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d", &pid), 1);
	fclose(f);
	unlink(path);
	assert_true(pid > 1);
	/* SIGKILL was sent before the callback; allow the kernel to finish. */
	for (int i = 0; i < 200 && alive; i++) {
		char st[64], buf[256];
		FILE *sf;
		snprintf(st, sizeof st, "/proc/%d/stat", pid);
		sf = fopen(st, "r");
		if (sf == NULL) {
			alive = 0;
			break;
		}
		/* A zombie waiting for init counts as gone. */
		if (fgets(buf, sizeof buf, sf) != NULL && strstr(buf, ") Z ") != NULL)
			alive = 0;
		fclose(sf);
		if (alive)
			usleep(10000);
	}
	assert_int_equal(alive, 0);
}

/* ---- httpGet and tcpSocket against a local server ---- */

static void handler(struct http_req *req, void *data)
{
	(void)data;
	if (strcmp(req->path, "/healthz") == 0)
		http_reply(req, 200, "text/plain", "ok", 2);
	else if (strcmp(req->path, "/redirect") == 0)
		http_reply(req, 302, "text/plain", "", 0);
	else
		http_reply(req, 500, "text/plain", "boom", 4);
}

struct http_fixture {
	uv_loop_t loop;
	struct http_server *srv;
	struct outcome o;
	struct probe_spec s;
};

static void server_closed(void *data)
{
	(void)data;
}

static void on_result_then_stop(void *data, enum probe_result r, const char *msg)
{
	struct http_fixture *fx = data;
	on_result(&fx->o, r, msg);
	http_server_close(fx->srv, server_closed, NULL);
}

static struct outcome probe_local_server(enum probe_kind kind, char *path)
{
	struct http_fixture fx = {0};
	char errmsg[CAP_ERRMSG_SIZE];
	struct http_server_config cfg = {.host = "127.0.0.1", .port = 0, .max_body = 1024,
					 .handler = handler};
	assert_int_equal(uv_loop_init(&fx.loop), 0);
	assert_int_equal(http_server_start(&fx.loop, &cfg, &fx.srv, errmsg), 0);
	fx.s = (struct probe_spec){.kind = kind, .host = "127.0.0.1",
				   .port = http_server_port(fx.srv), .path = path,
				   .timeout_s = 2, .success_threshold = 1, .failure_threshold = 3};
	assert_int_equal(probe_once(&fx.loop, &fx.s, on_result_then_stop, &fx), 0);
	uv_run(&fx.loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&fx.loop), 0);
	assert_int_equal(fx.o.calls, 1);
	return fx.o;
}

/* A port that was just free: nothing listens on it. */
static int closed_port(void)
{
	uv_loop_t loop;
	uv_tcp_t t;
	struct sockaddr_in sa;
	struct sockaddr_storage got;
	int len = sizeof got;
	assert_int_equal(uv_loop_init(&loop), 0);
	uv_tcp_init(&loop, &t);
	uv_ip4_addr("127.0.0.1", 0, &sa);
	assert_int_equal(uv_tcp_bind(&t, (const struct sockaddr *)&sa, 0), 0);
	uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return ntohs(((struct sockaddr_in *)&got)->sin_port);
}

/* httpGet answered 200 succeeds. */
static void test_http_200(void **state)
{
	(void)state;
	assert_int_equal(probe_local_server(PROBE_HTTP, "/healthz").result, PROBE_SUCCESS);
}

/* httpGet answered 302 succeeds (200-399 is healthy). */
static void test_http_redirect(void **state)
{
	(void)state;
	assert_int_equal(probe_local_server(PROBE_HTTP, "/redirect").result, PROBE_SUCCESS);
}

/* httpGet answered 500 fails with the kubelet's wording. */
static void test_http_500(void **state)
{
	struct outcome o;
	(void)state;
	o = probe_local_server(PROBE_HTTP, "/broken");
	assert_int_equal(o.result, PROBE_FAILURE);
	assert_non_null(strstr(o.msg, "statuscode: 500"));
}

/* httpGet to a closed port fails with connection refused. */
static void test_http_refused(void **state)
{
	struct probe_spec s = {.kind = PROBE_HTTP, .host = "127.0.0.1", .path = "/",
			       .timeout_s = 2, .success_threshold = 1, .failure_threshold = 3};
	struct outcome o;
	(void)state;
	s.port = closed_port();
	o = run_probe(&s);
	assert_int_equal(o.result, PROBE_FAILURE);
	assert_non_null(strstr(o.msg, "connection refused"));
}

/* tcpSocket to a listening port succeeds. */
static void test_tcp_open(void **state)
{
	(void)state;
	assert_int_equal(probe_local_server(PROBE_TCP, NULL).result, PROBE_SUCCESS);
}

/* tcpSocket to a closed port fails. */
static void test_tcp_closed(void **state)
{
	struct probe_spec s = {.kind = PROBE_TCP, .host = "127.0.0.1", .timeout_s = 2,
			       .success_threshold = 1, .failure_threshold = 3};
	(void)state;
	s.port = closed_port();
	assert_int_equal(run_probe(&s).result, PROBE_FAILURE);
}

/* The verdict flips only after failureThreshold failures in a row, and back
 * after successThreshold successes in a row. */
static void test_thresholds(void **state)
{
	struct probe_spec s = {.success_threshold = 2, .failure_threshold = 3};
	struct probe_counter c = {.healthy = true};
	(void)state;
	assert_false(probe_counter_add(&c, &s, PROBE_FAILURE));
	assert_false(probe_counter_add(&c, &s, PROBE_FAILURE));
	assert_false(probe_counter_add(&c, &s, PROBE_SUCCESS));   /* resets the run */
	assert_false(probe_counter_add(&c, &s, PROBE_FAILURE));
	assert_false(probe_counter_add(&c, &s, PROBE_FAILURE));
	assert_true(c.healthy);
	assert_true(probe_counter_add(&c, &s, PROBE_FAILURE));
	assert_false(c.healthy);
	assert_false(probe_counter_add(&c, &s, PROBE_SUCCESS));
	assert_true(probe_counter_add(&c, &s, PROBE_SUCCESS));
	assert_true(c.healthy);
}

/* Probe objects get the Kubernetes defaults, and named ports resolve. */
static void test_spec_defaults(void **state)
{
	char errmsg[CAP_ERRMSG_SIZE];
	struct probe_spec s;
	json_t *ctr = json_pack("{s:[{s:s,s:i}]}", "ports", "name", "web", "containerPort", 8080);
	json_t *probe = json_pack("{s:{s:s,s:s}}", "httpGet", "path", "/ready", "port", "web");
	json_t *bad = json_pack("{s:{s:s}}", "tcpSocket", "port", "nope");
	(void)state;
	assert_int_equal(probe_spec_from_json(probe, ctr, NULL, NULL, &s, errmsg), 0);
	assert_int_equal(s.kind, PROBE_HTTP);
	assert_int_equal(s.port, 8080);
	assert_string_equal(s.host, "127.0.0.1");
	assert_string_equal(s.path, "/ready");
	assert_int_equal(s.period_s, 10);
	assert_int_equal(s.timeout_s, 1);
	assert_int_equal(s.success_threshold, 1);
	assert_int_equal(s.failure_threshold, 3);
	assert_int_equal(s.initial_delay_s, 0);
	probe_spec_free(&s);
	assert_int_equal(probe_spec_from_json(bad, ctr, NULL, NULL, &s, errmsg), -1);
	assert_non_null(strstr(errmsg, "nope"));
	json_decref(ctr);
	json_decref(probe);
	json_decref(bad);
}

struct worker_fixture {
	struct probe_worker *w;
	int results;
	int flips;
	bool healthy;
};

static void on_worker(void *data, enum probe_result r, bool healthy, bool changed,
		      const char *msg)
{
	struct worker_fixture *fx = data;
	(void)r;
	(void)msg;
	fx->results++;
	fx->healthy = healthy;
	if (changed)
		fx->flips++;
	if (fx->results == 3)
		probe_worker_stop(fx->w);
}

/* The worker probes periodically and turns unhealthy after failureThreshold
 * failures; stopping it leaves no handle behind. */
static void test_worker_flips(void **state)
{
	char *argv[] = {"/bin/sh", "-c", "exit 1", NULL};
	struct probe_spec s = exec_spec(argv);
	struct worker_fixture fx = {0};
	uv_loop_t loop;
	(void)state;
	s.period_s = 1;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(probe_worker_start(&loop, &s, true, on_worker, &fx, &fx.w), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(fx.results, 3);
	assert_int_equal(fx.flips, 1);
	assert_false(fx.healthy);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exec_success),
		cmocka_unit_test(test_exec_failure),
		cmocka_unit_test(test_exec_missing_command),
		cmocka_unit_test(test_exec_timeout_kills_group),
		cmocka_unit_test(test_http_200),
		cmocka_unit_test(test_http_redirect),
		cmocka_unit_test(test_http_500),
		cmocka_unit_test(test_http_refused),
		cmocka_unit_test(test_tcp_open),
		cmocka_unit_test(test_tcp_closed),
		cmocka_unit_test(test_thresholds),
		cmocka_unit_test(test_spec_defaults),
		cmocka_unit_test(test_worker_flips),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
