/* test_url.c — host and port of the URLs the command lines take. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/url.h"

/* The forms etcd's flags take all give the same host and port. */
static void test_forms(void **state)
{
	(void)state;
	static const char *const forms[] = {
		"http://127.0.0.1:2379", "127.0.0.1:2379", "http://127.0.0.1:2379/",
		"http://127.0.0.1:2379/v3", "http://127.0.0.1:2379,http://10.0.0.1:2379",
	};
	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		char host[64];
		int port = -1;
		assert_int_equal(url_host_port(forms[i], host, sizeof host, &port), 0);
		assert_string_equal(host, "127.0.0.1");
		assert_int_equal(port, 2379);
	}
}

/* Only the first URL of a list counts, even when a later one has a colon
 * elsewhere. */
static void test_first_of_a_list(void **state)
{
	(void)state;
	char addr[64];
	assert_int_equal(url_address("http://a:1,http://b:2", addr, sizeof addr), 0);
	assert_string_equal(addr, "a:1");
}

/* Port 0 (any free port) is allowed; anything that is not a port is not. */
static void test_ports(void **state)
{
	(void)state;
	char host[64];
	int port;
	assert_int_equal(url_host_port("127.0.0.1:0", host, sizeof host, &port), 0);
	assert_int_equal(port, 0);
	assert_int_equal(url_host_port("127.0.0.1:65536", host, sizeof host, &port), -1);
	assert_int_equal(url_host_port("127.0.0.1:-1", host, sizeof host, &port), -1);
	assert_int_equal(url_host_port("127.0.0.1:80x", host, sizeof host, &port), -1);
	assert_int_equal(url_host_port("127.0.0.1:", host, sizeof host, &port), -1);
	assert_int_equal(url_host_port("http://127.0.0.1", host, sizeof host, &port), -1);
	assert_int_equal(url_host_port(":2379", host, sizeof host, &port), -1);
	assert_int_equal(url_host_port("", host, sizeof host, &port), -1);
}

/* A host longer than the caller's buffer is refused, not truncated. */
static void test_small_buffer(void **state)
{
	(void)state;
	char host[4];
	char addr[6];
	int port;
	assert_int_equal(url_host_port("http://localhost:1", host, sizeof host, &port), -1);
	assert_int_equal(url_address("http://abc:12345", addr, sizeof addr), -1);
}

/* Query values decode as Go's url.ParseQuery does: %XX and '+', and a
 * stray '%' stays as it is. */
static void test_decode(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"echo+hi", "echo hi"}, {"a%2Fb%3d", "a/b="}, {"100%", "100%"},
		{"%zz", "%zz"}, {"%4", "%4"}, {"", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *d = url_decode(cases[i].in, strlen(cases[i].in));
		assert_non_null(d);
		assert_string_equal(d, cases[i].out);
		free(d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_first_of_a_list),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_small_buffer),
		cmocka_unit_test(test_decode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
