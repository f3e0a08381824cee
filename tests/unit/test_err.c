/* test_err.c — unit tests of the error table and errmsg helpers (lib/err.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lib/err.h"

/* What etcd answers for each error: its message and gRPC code
 * (api/v3rpc/rpctypes/error.go), and what the gateway's HTTP status is. */
static const struct {
	int err;
	const char *msg;
	int grpc;
	int http;
} etcd_errors[] = {
	{CAP_EKEYEMPTY, "etcdserver: key is not provided", GRPC_INVALID_ARGUMENT, 400},
	{CAP_EKEYNOTFOUND, "etcdserver: key not found", GRPC_INVALID_ARGUMENT, 400},
	{CAP_ELEASENOTFOUND, "etcdserver: requested lease not found", GRPC_NOT_FOUND, 404},
	{CAP_ELEASEEXISTS, "etcdserver: lease already exists", GRPC_FAILED_PRECONDITION, 412},
	{CAP_ELEASEPROVIDED, "etcdserver: lease is provided", GRPC_INVALID_ARGUMENT, 400},
	{CAP_ECOMPACTED, "etcdserver: mvcc: required revision has been compacted",
	 GRPC_OUT_OF_RANGE, 400},
	{CAP_EFUTUREREV, "etcdserver: mvcc: required revision is a future revision",
	 GRPC_OUT_OF_RANGE, 400},
	{CAP_ETOOLARGE, "etcdserver: request is too large", GRPC_INVALID_ARGUMENT, 400},
	{CAP_ETOOMANYOPS, "etcdserver: too many operations in txn request",
	 GRPC_INVALID_ARGUMENT, 400},
	{CAP_EDUPKEY, "etcdserver: duplicate key given in txn request", GRPC_INVALID_ARGUMENT,
	 400},
	{CAP_ENOLEADER, "etcdserver: no leader", GRPC_UNAVAILABLE, 503},
	{CAP_ESTOPPED, "etcdserver: server stopped", GRPC_UNAVAILABLE, 503},
	{CAP_ETIMEOUT, "etcdserver: request timed out", GRPC_UNAVAILABLE, 503},
	{CAP_ENOSPACE, "etcdserver: mvcc: database space exceeded", GRPC_RESOURCE_EXHAUSTED,
	 429},
	{CAP_EMEMBERNOTFOUND, "etcdserver: member not found", GRPC_NOT_FOUND, 404},
	{CAP_EBADTRANSFEREE, "etcdserver: bad leader transferee", GRPC_FAILED_PRECONDITION,
	 412},
	{CAP_ECORRUPT, "etcdserver: corrupt cluster", GRPC_DATA_LOSS, 500},
};

/* Every error etcd has an equivalent for is worded as etcd words it, with
 * etcd's gRPC code and the gateway's HTTP status. */
static void test_etcd_words_and_codes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof etcd_errors / sizeof etcd_errors[0]; i++) {
		int e = etcd_errors[i].err;
		assert_string_equal(cap_strerror(e), etcd_errors[i].msg);
		assert_int_equal(cap_err_grpc(e), etcd_errors[i].grpc);
		assert_int_equal(cap_grpc_http_status(cap_err_grpc(e)), etcd_errors[i].http);
	}
}

/* Every code of the enum has its own real message and a gRPC code that is not
 * OK, so no error ever reaches a client as "unknown" or as success. */
static void test_every_code_has_message_and_code(void **state)
{
	const char *unknown = cap_strerror(-1);
	(void)state;
	assert_string_equal(cap_strerror(CAP_OK), "ok");
	assert_int_equal(cap_err_grpc(CAP_OK), GRPC_OK);
	for (int e = 1; e < CAP_ERR_COUNT; e++) {
		const char *m = cap_strerror(e);
		assert_non_null(m);
		assert_true(strlen(m) > 0);
		assert_string_not_equal(m, unknown);
		assert_int_not_equal(cap_err_grpc(e), GRPC_OK);
		assert_true(cap_err_grpc(e) > GRPC_OK && cap_err_grpc(e) <= GRPC_DATA_LOSS);
		int st = cap_grpc_http_status(cap_err_grpc(e));
		assert_true(st >= 400 && st < 600);
		for (int f = 1; f < e; f++)
			assert_string_not_equal(m, cap_strerror(f));
	}
}

/* Codes outside the enum do not crash and read as unknown. */
static void test_out_of_range(void **state)
{
	(void)state;
	assert_string_equal(cap_strerror(-1), "etcdserver: unknown error");
	assert_string_equal(cap_strerror(CAP_ERR_COUNT), "etcdserver: unknown error");
	assert_string_equal(cap_strerror(1 << 30), "etcdserver: unknown error");
	assert_int_equal(cap_err_grpc(-5), GRPC_UNKNOWN);
	assert_int_equal(cap_err_grpc(CAP_ERR_COUNT), GRPC_UNKNOWN);
	assert_int_equal(cap_grpc_http_status(-1), 500);
	assert_int_equal(cap_grpc_http_status(99), 500);
}

/* gRPC codes map to HTTP statuses as etcd's gateway (grpc-gateway v1's
 * HTTPStatusFromCode) maps them. */
static void test_grpc_to_http(void **state)
{
	static const int want[][2] = {
		{GRPC_OK, 200},
		{GRPC_CANCELED, 408},
		{GRPC_UNKNOWN, 500},
		{GRPC_INVALID_ARGUMENT, 400},
		{GRPC_DEADLINE_EXCEEDED, 504},
		{GRPC_NOT_FOUND, 404},
		{GRPC_ALREADY_EXISTS, 409},
		{GRPC_PERMISSION_DENIED, 403},
		{GRPC_RESOURCE_EXHAUSTED, 429},
		{GRPC_FAILED_PRECONDITION, 412},
		{GRPC_ABORTED, 409},
		{GRPC_OUT_OF_RANGE, 400},
		{GRPC_UNIMPLEMENTED, 501},
		{GRPC_INTERNAL, 500},
		{GRPC_UNAVAILABLE, 503},
		{GRPC_DATA_LOSS, 500},
	};
	(void)state;
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		assert_int_equal(cap_grpc_http_status(want[i][0]), want[i][1]);
}

/* An exactly sized heap buffer, so ASan sees any write past it. */
static char *errbuf(void)
{
	char *b = malloc(CAP_ERRMSG_SIZE);
	assert_non_null(b);
	memset(b, 'Z', CAP_ERRMSG_SIZE);
	return b;
}

/* printf fills the buffer and cuts an overlong message at its size. */
static void test_printf_truncates(void **state)
{
	char *b = errbuf();
	char big[1000];
	(void)state;
	cap_errmsg_printf(b, "open %s: %d", "db", 5);
	assert_string_equal(b, "open db: 5");
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	cap_errmsg_printf(b, "%s", big);
	assert_int_equal(strlen(b), CAP_ERRMSG_SIZE - 1);
	free(b);
}

/* Wrapping adds "context: " in front, and can be repeated. */
static void test_wrap_prefixes(void **state)
{
	char *b = errbuf();
	(void)state;
	cap_errmsg_printf(b, "disk full");
	cap_errmsg_wrapf(b, "write %s", "wal");
	assert_string_equal(b, "write wal: disk full");
	cap_errmsg_wrapf(b, "apply %d", 7);
	assert_string_equal(b, "apply 7: write wal: disk full");
	free(b);
}

/* Wrapping an empty message leaves "context: ". */
static void test_wrap_empty(void **state)
{
	char *b = errbuf();
	(void)state;
	b[0] = '\0';
	cap_errmsg_wrapf(b, "ctx");
	assert_string_equal(b, "ctx: ");
	free(b);
}

/* A long message under a short context keeps the context and as much of the
 * message as fits, NUL-terminated inside the buffer. */
static void test_wrap_truncates_message(void **state)
{
	char *b = errbuf();
	(void)state;
	memset(b, 'm', CAP_ERRMSG_SIZE - 1);
	b[CAP_ERRMSG_SIZE - 1] = '\0';
	cap_errmsg_wrapf(b, "ctx");
	assert_int_equal(strlen(b), CAP_ERRMSG_SIZE - 1);
	assert_memory_equal(b, "ctx: mmm", 8);
	free(b);
}

/* A context longer than the buffer is cut, and the result still ends inside
 * the buffer. */
static void test_wrap_truncates_context(void **state)
{
	char *b = errbuf();
	char big[600];
	(void)state;
	memset(big, 'c', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	cap_errmsg_printf(b, "detail");
	cap_errmsg_wrapf(b, "%s", big);
	assert_true(strlen(b) <= CAP_ERRMSG_SIZE - 1);
	assert_true(b[0] == 'c');
	free(b);
}

/* An errmsg buffer that was never terminated (garbage) is wrapped without
 * reading or writing past its end. */
static void test_wrap_unterminated(void **state)
{
	char *b = errbuf();
	(void)state;
	cap_errmsg_wrapf(b, "ctx");
	assert_true(strlen(b) <= CAP_ERRMSG_SIZE - 1);
	assert_memory_equal(b, "ctx: ZZ", 7);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_etcd_words_and_codes),
		cmocka_unit_test(test_every_code_has_message_and_code),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_grpc_to_http),
		cmocka_unit_test(test_printf_truncates),
		cmocka_unit_test(test_wrap_prefixes),
		cmocka_unit_test(test_wrap_empty),
		cmocka_unit_test(test_wrap_truncates_message),
		cmocka_unit_test(test_wrap_truncates_context),
		cmocka_unit_test(test_wrap_unterminated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
