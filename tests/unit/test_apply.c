/* test_apply.c — unit tests of etcd's request semantics (store/apply.c):
 * parsing and validation of the gateway's JSON, and execution against a
 * real MVCC store in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/b64.h"
#include "lib/err.h"
#include "lib/jsonx.h"
#include "lib/kv.h"
#include "store/apply.h"
#include "store/mvcc.h"

struct fx {
	char dir[64];
	char path[128];
	struct mvcc *m;
	struct mvcc_events evs;   /* events of the last run() */
	bool skip_prev;           /* run() applies with evs.skip_prev_values */
	bool skip_events;         /* run() applies with evs.skip */
};

static void remove_db_files(const char *path)
{
	static const char *const sfx[] = {"", "-wal", "-shm", ".restore", "-journal"};
	char p[256];
	for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
		snprintf(p, sizeof p, "%s%s", path, sfx[i]);
		unlink(p);
	}
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	char errmsg[CAP_ERRMSG_SIZE];
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/test_apply.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof f->path, "%s/db", f->dir);
	if (mvcc_open(f->path, &f->m, errmsg) != CAP_OK) {
		fprintf(stderr, "open: %s\n", errmsg);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	mvcc_events_clear(&f->evs);
	mvcc_close(f->m);
	remove_db_files(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ---- building requests ---- */

/* base64 of a string, in one of a few rotating static buffers (enough for
 * the arguments of one J() call). */
static const char *B(const char *s)
{
	static char bufs[16][512];
	static unsigned next;
	char *b = bufs[next++ % 16];
	size_t n = b64_encode((const uint8_t *)s, strlen(s), b);
	b[n] = '\0';
	return b;
}

/* A JSON body from a printf format. The caller decrefs. */
static json_t *J(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *J(const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	json_error_t jerr;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof buf);
	json_t *j = json_loads(buf, JSON_DECODE_ANY, &jerr);
	if (j == NULL)
		fail_msg("bad test JSON %s: %s", buf, jerr.text);
	return j;
}

/* Parses body (consumed) as op; returns the cap_err of apply_parse. */
static int parse(enum kv_op op, json_t *body)
{
	struct apply_req *req = NULL;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	int rv = apply_parse(op, body, &req, errmsg);
	json_decref(body);
	if (rv == CAP_OK)
		assert_non_null(req);
	apply_req_free(req);
	return rv;
}

/* Parses body (consumed, must be valid) and applies it as one etcd txn in its
 * own batch; on success *ans (may be NULL to drop it) and *rev are set and
 * the events are left in f->evs. Returns the cap_err of apply_exec. */
static int run(struct fx *f, enum kv_op op, json_t *body, json_t **ans, int64_t *rev)
{
	struct apply_req *req = NULL;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_t *a = NULL;
	int64_t r = -1;
	int rv = apply_parse(op, body, &req, errmsg);
	json_decref(body);
	if (rv != CAP_OK)
		fail_msg("parse: %s %s", cap_strerror(rv), errmsg);
	mvcc_events_clear(&f->evs);
	f->evs.skip_prev_values = f->skip_prev;
	f->evs.skip = f->skip_events;
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	rv = apply_exec(f->m, req, &a, &f->evs, &r, errmsg);
	if (rv == CAP_OK)
		assert_int_equal(mvcc_commit(f->m, mvcc_applied_index(f->m) + 1), CAP_OK);
	else
		mvcc_rollback(f->m);
	apply_req_free(req);
	if (rv == CAP_OK) {
		assert_non_null(a);
		if (rev)
			*rev = r;
		if (ans)
			*ans = a;
		else
			json_decref(a);
	}
	return rv;
}

static int64_t put(struct fx *f, const char *key, const char *value)
{
	int64_t rev;
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\"}", B(key), B(value)),
			     NULL, &rev),
			 CAP_OK);
	return rev;
}

static int64_t put_lease(struct fx *f, const char *key, const char *value, int64_t lease)
{
	int64_t rev;
	assert_int_equal(run(f, KV_PUT,
			     J("{\"key\":\"%s\",\"value\":\"%s\",\"lease\":\"%" PRId64 "\"}",
			       B(key), B(value), lease),
			     NULL, &rev),
			 CAP_OK);
	return rev;
}

static void grant(struct fx *f, int64_t id, int64_t ttl)
{
	json_t *a;
	int64_t rev;
	assert_int_equal(run(f, KV_LEASE_GRANT,
			     J("{\"ID\":%" PRId64 ",\"TTL\":%" PRId64 "}", id, ttl), &a, &rev),
			 CAP_OK);
	json_decref(a);
}

/* ---- reading answers ---- */

/* The value at a '/'-separated path ("responses/0/response_put/header");
 * numeric parts index arrays. NULL when absent. Borrowed. */
static json_t *jpath(json_t *j, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *save = NULL, *part = strtok_r(buf, "/", &save); part && j;
	     part = strtok_r(NULL, "/", &save)) {
		if (json_is_array(j))
			j = json_array_get(j, strtoul(part, NULL, 10));
		else
			j = json_object_get(j, part);
	}
	return j;
}

/* A 64-bit integer field, which the gateway writes as a string and omits
 * when zero. */
static int64_t jint(json_t *j, const char *path)
{
	json_t *v = jpath(j, path);
	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		fail_msg("%s is not a string", path);
	return strtoll(json_string_value(v), NULL, 10);
}

/* A bytes field decoded from base64 equals s. */
static void assert_jbytes(json_t *j, const char *path, const char *s)
{
	json_t *v = jpath(j, path);
	uint8_t out[512];
	if (v == NULL) {
		if (s[0] != '\0')
			fail_msg("%s missing, want %s", path, s);
		return;
	}
	assert_true(json_is_string(v));
	long n = b64_decode(json_string_value(v), json_string_length(v), out);
	assert_int_equal(n, (long)strlen(s));
	assert_memory_equal(out, s, (size_t)n);
}

static bool succeeded(json_t *ans)
{
	json_t *v = json_object_get(ans, "succeeded");
	assert_true(v == NULL || json_is_true(v));
	return v != NULL;
}

/* Reads key now: returns count, fills value/lease/version of the first kv. */
static int64_t get(struct fx *f, const char *key, json_t **ans)
{
	json_t *a;
	assert_int_equal(run(f, KV_RANGE, J("{\"key\":\"%s\"}", B(key)), &a, NULL), CAP_OK);
	int64_t count = jint(a, "count");
	if (ans)
		*ans = a;
	else
		json_decref(a);
	return count;
}

static void assert_event(const struct mvcc_event *ev, enum mvcc_event_type type,
			 const char *key, int64_t mod_rev)
{
	assert_int_equal(ev->type, type);
	assert_int_equal(ev->kv.key_len, strlen(key));
	assert_memory_equal(ev->kv.key, key, ev->kv.key_len);
	assert_int_equal(ev->kv.mod_rev, mod_rev);
}

/* ================= parsing and validation ================= */

/* A request without a key is refused as etcd refuses it, for every op that
 * takes a key, also inside a txn. */
static void test_parse_key_empty(void **state)
{
	(void)state;
	assert_int_equal(parse(KV_PUT, J("{\"value\":\"%s\"}", B("v"))), CAP_EKEYEMPTY);
	assert_int_equal(parse(KV_PUT, J("{\"key\":\"\",\"value\":\"%s\"}", B("v"))),
			 CAP_EKEYEMPTY);
	assert_int_equal(parse(KV_RANGE, J("{}")), CAP_EKEYEMPTY);
	assert_int_equal(parse(KV_DELETE_RANGE, J("{\"range_end\":\"%s\"}", B("z"))),
			 CAP_EKEYEMPTY);
	assert_int_equal(parse(KV_TXN, J("{\"success\":[{\"request_put\":{\"value\":\"%s\"}}]}",
					 B("v"))),
			 CAP_EKEYEMPTY);
	assert_int_equal(parse(KV_TXN, J("{\"failure\":[{\"request_range\":{}}]}")),
			 CAP_EKEYEMPTY);
}

/* ignore_lease with a lease is "lease is provided"; ignore_value with a value
 * is refused too; either flag alone parses. */
static void test_parse_ignore_flags(void **state)
{
	(void)state;
	assert_int_equal(parse(KV_PUT, J("{\"key\":\"%s\",\"lease\":7,\"ignore_lease\":true}",
					 B("k"))),
			 CAP_ELEASEPROVIDED);
	assert_int_equal(parse(KV_TXN, J("{\"success\":[{\"request_put\":{\"key\":\"%s\","
					 "\"lease\":\"7\",\"ignore_lease\":true}}]}",
					 B("k"))),
			 CAP_ELEASEPROVIDED);
	assert_int_equal(parse(KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\",\"ignore_value\":true}",
					 B("k"), B("v"))),
			 CAP_EINVAL);
	assert_int_equal(parse(KV_PUT, J("{\"key\":\"%s\",\"ignore_value\":true}", B("k"))),
			 CAP_OK);
	assert_int_equal(parse(KV_PUT, J("{\"key\":\"%s\",\"ignore_lease\":true}", B("k"))),
			 CAP_OK);
}

/* A txn with n puts of distinct keys in the named branch. */
static json_t *txn_of_puts(const char *branch, int n)
{
	char buf[8192];
	size_t off = (size_t)snprintf(buf, sizeof buf, "{\"%s\":[", branch);
	for (int i = 0; i < n; i++) {
		char key[16];
		snprintf(key, sizeof key, "k%d", i);
		off += (size_t)snprintf(buf + off, sizeof buf - off,
					"%s{\"request_put\":{\"key\":\"%s\"}}", i ? "," : "", B(key));
	}
	snprintf(buf + off, sizeof buf - off, "]}");
	return J("%s", buf);
}

/* 128 operations per branch are allowed, 129 are "too many", in either
 * branch and for compares. */
static void test_parse_too_many_ops(void **state)
{
	(void)state;
	assert_int_equal(parse(KV_TXN, txn_of_puts("success", APPLY_MAX_TXN_OPS)), CAP_OK);
	assert_int_equal(parse(KV_TXN, txn_of_puts("success", APPLY_MAX_TXN_OPS + 1)),
			 CAP_ETOOMANYOPS);
	assert_int_equal(parse(KV_TXN, txn_of_puts("failure", APPLY_MAX_TXN_OPS + 1)),
			 CAP_ETOOMANYOPS);
	char buf[16384];
	size_t off = (size_t)snprintf(buf, sizeof buf, "{\"compare\":[");
	for (int i = 0; i <= APPLY_MAX_TXN_OPS; i++)
		off += (size_t)snprintf(buf + off, sizeof buf - off,
					"%s{\"key\":\"%s\",\"target\":\"VERSION\",\"version\":1}",
					i ? "," : "", B("k"));
	snprintf(buf + off, sizeof buf - off, "]}");
	assert_int_equal(parse(KV_TXN, J("%s", buf)), CAP_ETOOMANYOPS);
}

#define PUT(k) "{\"request_put\":{\"key\":\"%s\"}}"
#define DEL(k) "{\"request_delete_range\":{\"key\":\"%s\"}}"
#define DELR(k, e) "{\"request_delete_range\":{\"key\":\"%s\",\"range_end\":\"%s\"}}"

/* etcd's duplicate-key rule: a key put twice in one branch, a put inside a
 * range deleted in the same branch (either order), and the same through
 * nested txns, are refused. */
static void test_parse_duplicate_keys(void **state)
{
	(void)state;
	assert_int_equal(parse(KV_TXN, J("{\"success\":[" PUT(a) "," PUT(a) "]}", B("a"), B("a"))),
			 CAP_EDUPKEY);
	assert_int_equal(parse(KV_TXN, J("{\"failure\":[" PUT(a) "," PUT(b) "," PUT(a) "]}",
					 B("a"), B("b"), B("a"))),
			 CAP_EDUPKEY);
	/* put inside a deleted range, the delete before or after it */
	assert_int_equal(parse(KV_TXN, J("{\"success\":[" DELR(a, c) "," PUT(b) "]}", B("a"),
					 B("c"), B("b"))),
			 CAP_EDUPKEY);
	assert_int_equal(parse(KV_TXN, J("{\"success\":[" PUT(b) "," DELR(a, c) "]}", B("b"),
					 B("a"), B("c"))),
			 CAP_EDUPKEY);
	assert_int_equal(parse(KV_TXN, J("{\"success\":[" PUT(a) "," DEL(a) "]}", B("a"), B("a"))),
			 CAP_EDUPKEY);
	/* nested txn putting a key the outer branch puts */
	assert_int_equal(parse(KV_TXN, J("{\"success\":[" PUT(a) ",{\"request_txn\":{\"success\":["
					 PUT(a) "]}}]}",
					 B("a"), B("a"))),
			 CAP_EDUPKEY);
	/* nested txn putting inside a range the outer branch deletes */
	assert_int_equal(parse(KV_TXN, J("{\"success\":[" DELR(a, c) ",{\"request_txn\":{\"failure\":["
					 PUT(b) "]}}]}",
					 B("a"), B("c"), B("b"))),
			 CAP_EDUPKEY);
	/* outer put inside a range a nested txn deletes */
	assert_int_equal(parse(KV_TXN, J("{\"success\":[{\"request_txn\":{\"success\":[" DELR(a, c)
					 "]}}," PUT(b) "]}",
					 B("a"), B("c"), B("b"))),
			 CAP_EDUPKEY);
	/* two sibling nested txns putting the same key */
	assert_int_equal(parse(KV_TXN, J("{\"success\":[{\"request_txn\":{\"success\":[" PUT(a)
					 "]}},{\"request_txn\":{\"failure\":[" PUT(a) "]}}]}",
					 B("a"), B("a"))),
			 CAP_EDUPKEY);
	/* a duplicate two levels down */
	assert_int_equal(parse(KV_TXN, J("{\"success\":[{\"request_txn\":{\"success\":["
					 "{\"request_txn\":{\"success\":[" PUT(x) "," PUT(x) "]}}]}}]}",
					 B("x"), B("x"))),
			 CAP_EDUPKEY);
}

/* What etcd's rule allows: overlapping deletes, a put at a deleted range's
 * (exclusive) end, the same key in both branches of a txn, and the same key
 * in the then and else branches of a nested txn. */
static void test_parse_duplicate_allowed(void **state)
{
	(void)state;
	assert_int_equal(parse(KV_TXN, J("{\"success\":[" DELR(a, d) "," DELR(b, e) "," DEL(c) "]}",
					 B("a"), B("d"), B("b"), B("e"), B("c"))),
			 CAP_OK);
	assert_int_equal(parse(KV_TXN, J("{\"success\":[" DELR(a, c) "," PUT(c) "]}", B("a"),
					 B("c"), B("c"))),
			 CAP_OK);
	assert_int_equal(parse(KV_TXN, J("{\"success\":[" PUT(a) "],\"failure\":[" PUT(a) "]}",
					 B("a"), B("a"))),
			 CAP_OK);
	assert_int_equal(parse(KV_TXN, J("{\"success\":[{\"request_txn\":{\"success\":[" PUT(a)
					 "],\"failure\":[" PUT(a) "]}}]}",
					 B("a"), B("a"))),
			 CAP_OK);
	/* then and else of a nested txn exclude each other, deletes included */
	assert_int_equal(parse(KV_TXN, J("{\"success\":[{\"request_txn\":{\"success\":[" PUT(a)
					 "],\"failure\":[" DEL(a) "]}}]}",
					 B("a"), B("a"))),
			 CAP_OK);
	assert_int_equal(parse(KV_TXN, J("{\"success\":[{\"request_txn\":{\"success\":[" DEL(a)
					 "],\"failure\":[" PUT(a) "]}}]}",
					 B("a"), B("a"))),
			 CAP_OK);
	/* the same key read twice is not a write */
	assert_int_equal(parse(KV_TXN, J("{\"success\":[{\"request_range\":{\"key\":\"%s\"}},"
					 "{\"request_range\":{\"key\":\"%s\"}}," PUT(a) "]}",
					 B("a"), B("a"), B("a"))),
			 CAP_OK);
}

/* Malformed bodies are refused with CAP_EINVAL, not crashes: a non-object,
 * fields of the wrong type, an unknown enum name, an empty RequestOp,
 * non-standard base64. */
static void test_parse_malformed(void **state)
{
	(void)state;
	assert_int_equal(parse(KV_PUT, J("[1,2]")), CAP_EINVAL);
	assert_int_equal(parse(KV_RANGE, J("\"x\"")), CAP_EINVAL);
	assert_int_equal(parse(KV_PUT, J("{\"key\":5}")), CAP_EINVAL);
	assert_int_equal(parse(KV_PUT, J("{\"key\":\"%s\",\"lease\":\"abc\"}", B("k"))),
			 CAP_EINVAL);
	assert_int_equal(parse(KV_PUT, J("{\"key\":\"%s\",\"prev_kv\":\"yes\"}", B("k"))),
			 CAP_EINVAL);
	assert_int_equal(parse(KV_RANGE, J("{\"key\":\"%s\",\"sort_order\":\"SIDEWAYS\"}", B("k"))),
			 CAP_EINVAL);
	assert_int_equal(parse(KV_TXN, J("{\"success\":[{}]}")), CAP_EINVAL);
	assert_int_equal(parse(KV_TXN, J("{\"success\":[5]}")), CAP_EINVAL);
	assert_int_equal(parse(KV_TXN, J("{\"success\":{}}")), CAP_EINVAL);
	assert_int_equal(parse(KV_TXN, J("{\"compare\":[{\"key\":\"%s\",\"target\":\"COLOR\"}]}",
					 B("k"))),
			 CAP_EINVAL);
	assert_int_equal(parse(KV_PUT, J("{\"key\":\"a2V5\",\"value\":\"a-_b\"}")), CAP_EINVAL);
	assert_int_equal(parse(KV_PUT, J("{\"key\":\"a2V\"}")), CAP_EINVAL);
	assert_int_equal(parse(KV_LEASE_GRANT, J("{\"TTL\":9000000001}")), CAP_EINVAL);
	assert_int_equal(parse(KV_LEASE_KEEPALIVE, J("{\"ID\":1}")), CAP_EINVAL);
}

/* Ranges and txns that only read are known as read-only (answered without a
 * log entry); any write, however deeply nested, makes a txn a write. */
static void test_parse_readonly(void **state)
{
	struct apply_req *r = NULL;
	char errmsg[CAP_ERRMSG_SIZE];
	json_t *b;
	(void)state;

	b = J("{\"key\":\"%s\",\"serializable\":true}", B("k"));
	assert_int_equal(apply_parse(KV_RANGE, b, &r, errmsg), CAP_OK);
	assert_true(apply_req_readonly(r));
	assert_true(apply_req_serializable(r));
	assert_int_equal(apply_req_op(r), KV_RANGE);
	apply_req_free(r);
	json_decref(b);

	b = J("{\"success\":[{\"request_range\":{\"key\":\"%s\"}}],\"failure\":[{\"request_txn\":"
	      "{\"success\":[{\"request_range\":{\"key\":\"%s\"}}]}}]}",
	      B("k"), B("k"));
	assert_int_equal(apply_parse(KV_TXN, b, &r, errmsg), CAP_OK);
	assert_true(apply_req_readonly(r));
	assert_false(apply_req_serializable(r));
	apply_req_free(r);
	json_decref(b);

	b = J("{\"success\":[{\"request_range\":{\"key\":\"%s\"}}],\"failure\":[{\"request_txn\":"
	      "{\"failure\":[" DEL(k) "]}}]}",
	      B("k"), B("k"));
	assert_int_equal(apply_parse(KV_TXN, b, &r, errmsg), CAP_OK);
	assert_false(apply_req_readonly(r));
	apply_req_free(r);
	json_decref(b);

	b = J("{\"key\":\"%s\"}", B("k"));
	assert_int_equal(apply_parse(KV_PUT, b, &r, errmsg), CAP_OK);
	assert_false(apply_req_readonly(r));
	apply_req_free(r);
	json_decref(b);

	b = J("{\"ID\":\"12345\",\"TTL\":\"60\"}");
	assert_int_equal(apply_parse(KV_LEASE_GRANT, b, &r, errmsg), CAP_OK);
	assert_int_equal(apply_lease_id(r), 12345);
	assert_int_equal(apply_lease_ttl(r), 60);
	apply_req_free(r);
	json_decref(b);
}

/* ================= execution ================= */

/* Puts advance the revision by one each; a range sees the key with etcd's
 * create/mod/version and the header revision. */
/* A put survives the raft log's binary form unchanged (flags, a negative
 * lease, an empty value), is refused on the same grounds as its JSON, and
 * other requests are left to JSON. */
static void test_binary_put_roundtrip(void **state)
{
	(void)state;
	struct apply_req *req = NULL, *back = NULL;
	char errmsg[CAP_ERRMSG_SIZE];
	uint8_t *bin, *bin2;
	size_t len, len2;
	json_t *b;

	b = J("{\"key\":\"%s\",\"prev_kv\":true,\"ignore_value\":true,\"lease\":\"-5\"}", B("k\xff"));
	assert_int_equal(apply_parse(KV_PUT, b, &req, errmsg), CAP_OK);
	json_decref(b);
	assert_int_equal(apply_encode_bin(req, &bin, &len), CAP_OK);
	/* With a leading tag: the tag, then the very same bytes. */
	uint8_t *tagged;
	size_t tagged_len;
	assert_int_equal(apply_encode_bin_tagged(req, 0x41, &tagged, &tagged_len), CAP_OK);
	assert_int_equal(tagged_len, len + 1);
	assert_int_equal(tagged[0], 0x41);
	assert_memory_equal(tagged + 1, bin, len);
	free(tagged);
	assert_int_equal(apply_decode_bin(bin, len, &back, errmsg), CAP_OK);
	assert_int_equal(apply_req_op(back), KV_PUT);
	assert_int_equal(apply_encode_bin(back, &bin2, &len2), CAP_OK);
	assert_int_equal(len2, len);
	assert_memory_equal(bin2, bin, len);
	/* Truncated or with a byte too many: malformed. */
	apply_req_free(back);
	back = NULL;
	assert_int_equal(apply_decode_bin(bin, len - 1, &back, errmsg), CAP_ECORRUPT);
	uint8_t longer[64];
	memcpy(longer, bin, len);
	longer[len] = 0;
	assert_int_equal(apply_decode_bin(longer, len + 1, &back, errmsg), CAP_ECORRUPT);
	assert_null(back);
	free(bin);
	free(bin2);
	apply_req_free(req);

	/* An empty key, as from JSON. */
	const uint8_t empty_key[] = {KV_PUT, 0, 0, 0, 1, 'v'};
	assert_int_equal(apply_decode_bin(empty_key, sizeof empty_key, &back, errmsg), CAP_EKEYEMPTY);
	/* A non-minimal varint (key length 1 written in two bytes). */
	const uint8_t padded[] = {KV_PUT, 0, 0, 0x81, 0x00, 'k', 0};
	assert_int_equal(apply_decode_bin(padded, sizeof padded, &back, errmsg), CAP_ECORRUPT);

	b = J("{\"key\":\"%s\"}", B("k"));
	assert_int_equal(apply_parse(KV_DELETE_RANGE, b, &req, errmsg), CAP_OK);
	json_decref(b);
	assert_int_equal(apply_encode_bin(req, &bin, &len), CAP_EINVAL);
	apply_req_free(req);
}

/* The put's log entry from text (apply_parse_put_text) when it takes the
 * text, else the tree path's own verdict stands. */
static void put_text_same(const char *text, bool taken)
{
	struct apply_req *fast = NULL, *tree = NULL;
	char errmsg[CAP_ERRMSG_SIZE];
	json_error_t jerr;
	uint8_t *a, *b;
	size_t alen, blen;

	assert_int_equal(apply_parse_put_text(text, strlen(text), &fast), taken);
	if (!taken) {
		assert_null(fast);
		return;
	}
	json_t *body = json_loads(text, 0, &jerr);
	assert_non_null(body);
	assert_int_equal(apply_parse(KV_PUT, body, &tree, errmsg), CAP_OK);
	assert_int_equal(apply_encode_bin(fast, &a, &alen), CAP_OK);
	assert_int_equal(apply_encode_bin(tree, &b, &blen), CAP_OK);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(a);
	free(b);
	apply_req_free(fast);
	apply_req_free(tree);
	json_decref(body);
}

/* A put read straight from its text carries the same key, value, lease and
 * flags as the tree path's; whatever is unusual (unknown or repeated
 * members, strings for numbers or flags, null, base64 etcd refuses, a key
 * missing, flags that contradict, trailing bytes) is left to the tree
 * path, which answers it as before. */
static void test_put_text_same_as_tree(void **state)
{
	(void)state;
	put_text_same("{\"key\":\"Zm9v\",\"value\":\"YmFy\"}", true);
	put_text_same(" {\"value\" : \"\" ,\n\t\"key\":\"AA==\"} \n", true);
	put_text_same("{\"key\":\"Zm9v\",\"lease\":-7,\"prev_kv\":true,\"ignore_value\":true}", true);
	put_text_same("{\"key\":\"Zm9v\",\"value\":\"YmFy\",\"ignore_lease\":true,\"prev_kv\":false}", true);
	put_text_same("{\"key\":\"Zm9v\",\"lease\":123456789012345678}", true);
	put_text_same("{\"key\":\"Zm9v\",\"lease\":\"7\"}", false);
	put_text_same("{\"key\":\"Zm9v\",\"prev_kv\":\"true\"}", false);
	put_text_same("{\"key\":\"Zm9v\",\"value\":null}", false);
	put_text_same("{\"key\":\"Zm9v\",\"other\":1}", false);
	put_text_same("{\"key\":\"Zm9v\",\"key\":\"YmFy\"}", false);
	put_text_same("{\"key\":\"Zm9v\",\"value\":\"YmF\"}", false);
	put_text_same("{\"key\":\"Zm9-\"}", false);
	put_text_same("{\"key\":\"Zm9\\u0076\"}", false);
	put_text_same("{\"value\":\"YmFy\"}", false);
	put_text_same("{\"key\":\"\"}", false);
	put_text_same("{\"key\":\"Zm9v\",\"value\":\"YmFy\",\"ignore_value\":true}", false);
	put_text_same("{\"key\":\"Zm9v\",\"lease\":5,\"ignore_lease\":true}", false);
	put_text_same("{\"key\":\"Zm9v\",\"lease\":1.5}", false);
	put_text_same("{\"key\":\"Zm9v\"} x", false);
	put_text_same("{\"key\":\"Zm9v\",}", false);
	put_text_same("[{\"key\":\"Zm9v\"}]", false);
	put_text_same("", false);
}

static void test_exec_put_range(void **state)
{
	struct fx *f = *state;
	json_t *a;
	int64_t rev;
	int64_t r1 = put(f, "foo", "bar");
	assert_int_equal(r1, mvcc_rev(f->m));
	int64_t r2 = put(f, "foo", "baz");
	assert_int_equal(r2, r1 + 1);
	assert_int_equal(run(f, KV_RANGE, J("{\"key\":\"%s\"}", B("foo")), &a, &rev), CAP_OK);
	assert_int_equal(rev, r2);
	assert_int_equal(jint(a, "count"), 1);
	assert_jbytes(a, "kvs/0/key", "foo");
	assert_jbytes(a, "kvs/0/value", "baz");
	assert_int_equal(jint(a, "kvs/0/create_revision"), r1);
	assert_int_equal(jint(a, "kvs/0/mod_revision"), r2);
	assert_int_equal(jint(a, "kvs/0/version"), 2);
	assert_null(jpath(a, "kvs/0/lease"));
	assert_null(jpath(a, "more"));
	json_decref(a);
	/* a read is not a write */
	assert_int_equal(mvcc_rev(f->m), r2);
	assert_int_equal(f->evs.n, 0);
}

/* prev_kv on a put answers the version it replaced, and nothing for a new key. */
static void test_exec_put_prev_kv(void **state)
{
	struct fx *f = *state;
	json_t *a;
	int64_t r1;
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\",\"prev_kv\":true}",
					  B("k"), B("v1")),
			     &a, &r1),
			 CAP_OK);
	assert_null(json_object_get(a, "prev_kv"));
	json_decref(a);
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\",\"prev_kv\":true}",
					  B("k"), B("v2")),
			     &a, NULL),
			 CAP_OK);
	assert_jbytes(a, "prev_kv/value", "v1");
	assert_int_equal(jint(a, "prev_kv/mod_revision"), r1);
	assert_int_equal(jint(a, "prev_kv/version"), 1);
	json_decref(a);
	/* without prev_kv, no prev_kv */
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\"}", B("k"), B("v3")),
			     &a, NULL),
			 CAP_OK);
	assert_null(json_object_get(a, "prev_kv"));
	json_decref(a);
}

/* With nobody wanting previous values, a put's event keeps the previous
 * version's metadata without its value, and prev_kv still answers it whole. */
static void test_exec_put_skips_prev_value(void **state)
{
	struct fx *f = *state;
	json_t *a;
	int64_t r1 = put(f, "k", "v1");
	f->skip_prev = true;
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\"}", B("k"), B("v2")),
			     NULL, NULL),
			 CAP_OK);
	assert_int_equal(f->evs.n, 1);
	assert_int_equal(f->evs.v[0].prev.mod_rev, r1);
	assert_int_equal(f->evs.v[0].prev.version, 1);
	assert_int_equal(f->evs.v[0].prev.key_len, 1);
	assert_null(f->evs.v[0].prev.value);
	assert_int_equal(f->evs.v[0].prev.value_len, 0);
	assert_int_equal(f->evs.v[0].kv.version, 2);
	assert_memory_equal(f->evs.v[0].kv.value, "v2", 2);
	/* the request's own prev_kv still reads the value */
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\",\"prev_kv\":true}",
					  B("k"), B("v3")),
			     &a, NULL),
			 CAP_OK);
	assert_jbytes(a, "prev_kv/value", "v2");
	assert_int_equal(f->evs.v[0].prev.value_len, 2);
	json_decref(a);
	/* and the store still has every version's value */
	f->skip_prev = false;
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\"}", B("k"), B("v4")),
			     NULL, NULL),
			 CAP_OK);
	assert_int_equal(f->evs.v[0].prev.value_len, 2);
	assert_memory_equal(f->evs.v[0].prev.value, "v3", 2);
}

/* With nobody watching, writes record no events and answer as before. */
static void test_exec_skips_events(void **state)
{
	struct fx *f = *state;
	json_t *a;
	int64_t r1 = put(f, "k", "v1");
	assert_int_equal(f->evs.n, 1);
	f->skip_events = true;
	int64_t r2 = put(f, "k", "v2");
	assert_int_equal(r2, r1 + 1);
	assert_int_equal(f->evs.n, 0);
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\",\"prev_kv\":true}",
					  B("k"), B("v3")),
			     &a, NULL),
			 CAP_OK);
	assert_int_equal(f->evs.n, 0);
	assert_jbytes(a, "prev_kv/value", "v2");
	assert_int_equal(jint(a, "prev_kv/version"), 2);
	json_decref(a);
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"ignore_value\":true}", B("k")),
			     NULL, NULL),
			 CAP_OK);
	assert_int_equal(f->evs.n, 0);
	assert_int_equal(run(f, KV_DELETE_RANGE, J("{\"key\":\"%s\",\"prev_kv\":true}", B("k")),
			     &a, NULL),
			 CAP_OK);
	assert_int_equal(f->evs.n, 0);
	assert_int_equal(jint(a, "deleted"), 1);
	assert_jbytes(a, "prev_kvs/0/value", "v3");
	assert_int_equal(jint(a, "prev_kvs/0/version"), 4);
	json_decref(a);
	/* the history holds every write all the same */
	f->skip_events = false;
	struct mvcc_events h = {0};
	int64_t next = 0;
	assert_int_equal(mvcc_events(f->m, r2, mvcc_rev(f->m), (const uint8_t *)"k", 1, NULL, 0,
				     true, 100, &h, &next),
			 CAP_OK);
	assert_int_equal(h.n, 4);
	assert_int_equal(h.v[3].type, MVCC_EVENT_DELETE);
	assert_memory_equal(h.v[3].prev.value, "v3", 2);
	mvcc_events_clear(&h);
}

/* A put records a PUT event with the new version and the previous one; a
 * delete a DELETE event at the delete's revision with the deleted version. */
static void test_exec_events(void **state)
{
	struct fx *f = *state;
	int64_t r1 = put(f, "e", "one");
	assert_int_equal(f->evs.n, 1);
	assert_event(&f->evs.v[0], MVCC_EVENT_PUT, "e", r1);
	assert_int_equal(f->evs.v[0].kv.create_rev, r1);
	assert_int_equal(f->evs.v[0].kv.version, 1);
	assert_int_equal(f->evs.v[0].kv.value_len, 3);
	assert_memory_equal(f->evs.v[0].kv.value, "one", 3);
	assert_int_equal(f->evs.v[0].prev.mod_rev, 0);

	int64_t r2 = put(f, "e", "two");
	assert_int_equal(f->evs.n, 1);
	assert_event(&f->evs.v[0], MVCC_EVENT_PUT, "e", r2);
	assert_int_equal(f->evs.v[0].kv.create_rev, r1);
	assert_int_equal(f->evs.v[0].kv.version, 2);
	assert_int_equal(f->evs.v[0].prev.mod_rev, r1);
	assert_int_equal(f->evs.v[0].prev.value_len, 3);
	assert_memory_equal(f->evs.v[0].prev.value, "one", 3);

	int64_t r3;
	assert_int_equal(run(f, KV_DELETE_RANGE, J("{\"key\":\"%s\"}", B("e")), NULL, &r3), CAP_OK);
	assert_int_equal(r3, r2 + 1);
	assert_int_equal(f->evs.n, 1);
	assert_event(&f->evs.v[0], MVCC_EVENT_DELETE, "e", r3);
	assert_int_equal(f->evs.v[0].prev.mod_rev, r2);
	assert_int_equal(f->evs.v[0].prev.value_len, 3);
	assert_memory_equal(f->evs.v[0].prev.value, "two", 3);

	/* a txn writing two keys: two events at one revision, in op order */
	int64_t r4;
	json_t *a;
	assert_int_equal(run(f, KV_TXN, J("{\"success\":[" PUT(y) "," PUT(x) "]}", B("y"), B("x")),
			     &a, &r4),
			 CAP_OK);
	json_decref(a);
	assert_int_equal(r4, r3 + 1);
	assert_int_equal(f->evs.n, 2);
	assert_event(&f->evs.v[0], MVCC_EVENT_PUT, "y", r4);
	assert_event(&f->evs.v[1], MVCC_EVENT_PUT, "x", r4);
}

/* deleterange counts what it deleted, answers prev_kvs only when asked,
 * honours the exclusive range end, and a delete of nothing is no write. */
static void test_exec_deleterange(void **state)
{
	struct fx *f = *state;
	json_t *a;
	int64_t rev;
	put(f, "a", "1");
	put(f, "b", "2");
	int64_t rc = put(f, "c", "3");

	assert_int_equal(run(f, KV_DELETE_RANGE, J("{\"key\":\"%s\"}", B("zzz")), &a, &rev),
			 CAP_OK);
	assert_int_equal(rev, rc);
	assert_null(json_object_get(a, "deleted"));
	assert_int_equal(f->evs.n, 0);
	json_decref(a);

	assert_int_equal(run(f, KV_DELETE_RANGE,
			     J("{\"key\":\"%s\",\"range_end\":\"%s\",\"prev_kv\":true}", B("a"),
			       B("c")),
			     &a, &rev),
			 CAP_OK);
	assert_int_equal(rev, rc + 1);
	assert_int_equal(jint(a, "deleted"), 2);
	assert_int_equal(json_array_size(json_object_get(a, "prev_kvs")), 2);
	assert_jbytes(a, "prev_kvs/0/key", "a");
	assert_jbytes(a, "prev_kvs/0/value", "1");
	assert_jbytes(a, "prev_kvs/1/key", "b");
	assert_jbytes(a, "prev_kvs/1/value", "2");
	json_decref(a);
	assert_int_equal(f->evs.n, 2);
	assert_event(&f->evs.v[0], MVCC_EVENT_DELETE, "a", rc + 1);
	assert_event(&f->evs.v[1], MVCC_EVENT_DELETE, "b", rc + 1);
	assert_int_equal(get(f, "c", NULL), 1);

	/* without prev_kv: count only */
	assert_int_equal(run(f, KV_DELETE_RANGE, J("{\"key\":\"%s\"}", B("c")), &a, &rev), CAP_OK);
	assert_int_equal(jint(a, "deleted"), 1);
	assert_null(json_object_get(a, "prev_kvs"));
	json_decref(a);
}

/* A txn with one compare; returns whether it succeeded. */
static bool cmp1(struct fx *f, const char *key, const char *target, const char *result,
		 const char *field, const char *operand)
{
	json_t *a;
	int64_t before = mvcc_rev(f->m), rev;
	assert_int_equal(run(f, KV_TXN,
			     J("{\"compare\":[{\"key\":\"%s\",\"target\":\"%s\",\"result\":\"%s\","
			       "\"%s\":\"%s\"}]}",
			       B(key), target, result, field, operand),
			     &a, &rev),
			 CAP_OK);
	bool ok = succeeded(a);
	json_decref(a);
	/* a txn without writes is answered at, and leaves, the same revision */
	assert_int_equal(rev, before);
	assert_int_equal(mvcc_rev(f->m), before);
	return ok;
}

/* Every compare target against every result: the answer follows the order
 * of the key's actual field against the operand (below, equal, above). */
static void test_exec_compare_matrix(void **state)
{
	struct fx *f = *state;
	int64_t create = put(f, "k", "v4");
	grant(f, 50, 60);
	int64_t mod = put_lease(f, "k", "v5", 50);
	const struct {
		const char *target, *field;
		int64_t actual;
	} num[] = {
		{"VERSION", "version", 2},
		{"CREATE", "create_revision", create},
		{"MOD", "mod_revision", mod},
		{"LEASE", "lease", 50},
	};
	static const char *const results[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
	for (size_t t = 0; t < sizeof num / sizeof num[0]; t++) {
		for (int64_t d = -1; d <= 1; d++) {
			char operand[32];
			snprintf(operand, sizeof operand, "%" PRId64, num[t].actual + d);
			/* actual vs operand: operand = actual + d */
			bool want[4] = {d == 0, d != 0, d < 0, d > 0};
			for (int r = 0; r < 4; r++) {
				bool got = cmp1(f, "k", num[t].target, results[r], num[t].field,
						operand);
				if (got != want[r])
					fail_msg("%s %s %s: got %d", num[t].target, results[r], operand,
						 got);
			}
		}
	}
	const char *values[] = {"v4", "v5", "v6"};
	for (int d = -1; d <= 1; d++) {
		bool want[4] = {d == 0, d != 0, d < 0, d > 0};
		for (int r = 0; r < 4; r++) {
			bool got = cmp1(f, "k", "VALUE", results[r], "value", B(values[d + 1]));
			if (got != want[r])
				fail_msg("VALUE %s %s: got %d", results[r], values[d + 1], got);
		}
	}
	/* bytes compare as bytes: a prefix is less */
	assert_true(cmp1(f, "k", "VALUE", "GREATER", "value", B("v")));
	assert_true(cmp1(f, "k", "VALUE", "LESS", "value", B("v50")));
}

/* On a missing key a VALUE compare fails whatever it asks, while the numeric
 * targets compare against zero (CREATE == 0 is "does not exist"). */
static void test_exec_compare_missing_key(void **state)
{
	struct fx *f = *state;
	put(f, "other", "x");
	assert_false(cmp1(f, "nope", "VALUE", "EQUAL", "value", ""));
	assert_false(cmp1(f, "nope", "VALUE", "NOT_EQUAL", "value", B("x")));
	assert_false(cmp1(f, "nope", "VALUE", "LESS", "value", B("x")));
	assert_true(cmp1(f, "nope", "CREATE", "EQUAL", "create_revision", "0"));
	assert_false(cmp1(f, "nope", "CREATE", "GREATER", "create_revision", "0"));
	assert_true(cmp1(f, "nope", "VERSION", "EQUAL", "version", "0"));
	assert_true(cmp1(f, "nope", "MOD", "LESS", "mod_revision", "1"));
	assert_true(cmp1(f, "nope", "LEASE", "EQUAL", "lease", "0"));
	/* the existing key fails CREATE == 0 */
	assert_false(cmp1(f, "other", "CREATE", "EQUAL", "create_revision", "0"));
}

/* A compare with range_end holds only if it holds for every key in the range. */
static void test_exec_compare_range(void **state)
{
	struct fx *f = *state;
	json_t *a;
	put(f, "r/1", "x");
	int64_t m2 = put(f, "r/2", "y");
	put(f, "s", "z");
	char m2s[32], m2p[32];
	snprintf(m2s, sizeof m2s, "%" PRId64, m2);
	snprintf(m2p, sizeof m2p, "%" PRId64, m2 + 1);
	const struct {
		const char *result, *operand;
		bool want;
	} cases[] = {
		{"GREATER", "0", true},
		{"LESS", m2s, false},    /* r/2 is not below itself */
		{"LESS", m2p, true},     /* s (above m2) is outside the range */
		{"EQUAL", m2s, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(run(f, KV_TXN,
				     J("{\"compare\":[{\"key\":\"%s\",\"range_end\":\"%s\","
				       "\"target\":\"MOD\",\"result\":\"%s\",\"mod_revision\":\"%s\"}]}",
				       B("r/"), B("r0"), cases[i].result, cases[i].operand),
				     &a, NULL),
				 CAP_OK);
		assert_int_equal(succeeded(a), cases[i].want);
		json_decref(a);
	}
	/* a range with no keys compares as a zero key, except VALUE */
	assert_int_equal(run(f, KV_TXN,
			     J("{\"compare\":[{\"key\":\"%s\",\"range_end\":\"%s\",\"target\":"
			       "\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":\"0\"}]}",
			       B("q/"), B("q0")),
			     &a, NULL),
			 CAP_OK);
	assert_true(succeeded(a));
	json_decref(a);
}

/* Compares are all-of: one false compare sends the txn to failure, whose ops
 * run and are answered. */
static void test_exec_txn_branches(void **state)
{
	struct fx *f = *state;
	json_t *a;
	int64_t rev;
	int64_t r1 = put(f, "foo", "bar2");
	assert_int_equal(run(f, KV_TXN,
			     J("{\"compare\":[{\"key\":\"%s\",\"target\":\"VALUE\",\"result\":"
			       "\"EQUAL\",\"value\":\"%s\"},{\"key\":\"%s\",\"target\":\"VERSION\","
			       "\"result\":\"EQUAL\",\"version\":\"2\"}],"
			       "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}],"
			       "\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
			       B("foo"), B("bar2"), B("foo"), B("foo"), B("won"), B("foo")),
			     &a, &rev),
			 CAP_OK);
	assert_false(succeeded(a));
	assert_int_equal(rev, r1);
	assert_jbytes(a, "responses/0/response_range/kvs/0/value", "bar2");
	assert_int_equal(jint(a, "responses/0/response_range/header/revision"), r1);
	assert_int_equal(f->evs.n, 0);
	json_decref(a);

	/* the successful path, with etcd's answer shape (txn.txt) */
	assert_int_equal(run(f, KV_TXN,
			     J("{\"compare\":[{\"key\":\"%s\",\"target\":\"VALUE\",\"result\":"
			       "\"EQUAL\",\"value\":\"%s\"}],"
			       "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}},"
			       "{\"request_range\":{\"key\":\"%s\"}}],"
			       "\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
			       B("foo"), B("bar2"), B("foo"), B("bar3"), B("foo"), B("foo")),
			     &a, &rev),
			 CAP_OK);
	assert_true(succeeded(a));
	assert_int_equal(rev, r1 + 1);
	assert_int_equal(json_array_size(json_object_get(a, "responses")), 2);
	assert_int_equal(jint(a, "responses/0/response_put/header/revision"), rev);
	assert_int_equal(jint(a, "responses/1/response_range/header/revision"), rev);
	/* the range in the txn sees the put before it */
	assert_jbytes(a, "responses/1/response_range/kvs/0/value", "bar3");
	assert_int_equal(jint(a, "responses/1/response_range/kvs/0/mod_revision"), rev);
	assert_int_equal(jint(a, "responses/1/response_range/count"), 1);
	json_decref(a);
}

/* A nested txn's compares are decided before any write of the outer txn, as
 * etcd decides the whole path first; nested sub-answers carry an empty
 * header and their own ops the txn's revision. */
static void test_exec_nested_decided_first(void **state)
{
	struct fx *f = *state;
	json_t *a;
	int64_t rev;
	put(f, "k", "old");
	assert_int_equal(run(f, KV_TXN,
			     J("{\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}},"
			       "{\"request_txn\":{\"compare\":[{\"key\":\"%s\",\"target\":\"VALUE\","
			       "\"result\":\"EQUAL\",\"value\":\"%s\"}],"
			       "\"success\":[" PUT(x) ",{\"request_range\":{\"key\":\"%s\"}}],"
			       "\"failure\":[" PUT(y) "]}}]}",
			       B("k"), B("new"), B("k"), B("old"), B("x"), B("k"), B("y")),
			     &a, &rev),
			 CAP_OK);
	assert_true(succeeded(a));
	assert_non_null(jpath(a, "responses/1/response_txn"));
	assert_true(json_is_true(jpath(a, "responses/1/response_txn/succeeded")));
	json_t *hdr = jpath(a, "responses/1/response_txn/header");
	assert_non_null(hdr);
	assert_int_equal(json_object_size(hdr), 0);
	assert_int_equal(jint(a, "responses/0/response_put/header/revision"), rev);
	assert_int_equal(
		jint(a, "responses/1/response_txn/responses/0/response_put/header/revision"), rev);
	assert_int_equal(
		jint(a, "responses/1/response_txn/responses/1/response_range/header/revision"),
		rev);
	/* but a read inside it sees the outer write */
	assert_jbytes(a, "responses/1/response_txn/responses/1/response_range/kvs/0/value", "new");
	json_decref(a);
	assert_int_equal(f->evs.n, 2);
	assert_event(&f->evs.v[0], MVCC_EVENT_PUT, "k", rev);
	assert_event(&f->evs.v[1], MVCC_EVENT_PUT, "x", rev);
	assert_int_equal(get(f, "x", NULL), 1);
	assert_int_equal(get(f, "y", NULL), 0);
	assert_int_equal(mvcc_rev(f->m), rev);
}

/* A read-only txn does not advance the revision and its sub-answers carry
 * the current revision. */
static void test_exec_readonly_txn(void **state)
{
	struct fx *f = *state;
	json_t *a;
	int64_t rev;
	int64_t r = put(f, "k", "v");
	assert_int_equal(run(f, KV_TXN,
			     J("{\"success\":[{\"request_range\":{\"key\":\"%s\"}},"
			       "{\"request_txn\":{\"success\":[{\"request_range\":{\"key\":\"%s\","
			       "\"count_only\":true}}]}}]}",
			       B("k"), B("k")),
			     &a, &rev),
			 CAP_OK);
	assert_int_equal(rev, r);
	assert_int_equal(mvcc_rev(f->m), r);
	assert_int_equal(f->evs.n, 0);
	assert_int_equal(jint(a, "responses/0/response_range/header/revision"), r);
	assert_int_equal(
		jint(a, "responses/1/response_txn/responses/0/response_range/header/revision"), r);
	assert_int_equal(jint(a, "responses/1/response_txn/responses/0/response_range/count"), 1);
	assert_null(jpath(a, "responses/1/response_txn/responses/0/response_range/kvs"));
	json_decref(a);
	/* a failed compare with no failure ops is no write either */
	assert_false(cmp1(f, "k", "VALUE", "EQUAL", "value", B("w")));
	assert_int_equal(mvcc_rev(f->m), r);
}

/* ignore_value keeps the stored value and (without a lease) drops the
 * lease; ignore_lease keeps the lease; both keep both (lease.txt). */
static void test_exec_ignore_value_lease(void **state)
{
	struct fx *f = *state;
	json_t *a;
	int64_t rev;
	grant(f, 12345, 60);
	int64_t r1 = put_lease(f, "lk", "lv", 12345);
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"ignore_value\":true,\"prev_kv\":true}",
					  B("lk")),
			     &a, &rev),
			 CAP_OK);
	assert_int_equal(rev, r1 + 1);
	assert_jbytes(a, "prev_kv/value", "lv");
	assert_int_equal(jint(a, "prev_kv/lease"), 12345);
	assert_int_equal(jint(a, "prev_kv/mod_revision"), r1);
	json_decref(a);
	/* the event carries the kept value */
	assert_int_equal(f->evs.n, 1);
	assert_int_equal(f->evs.v[0].kv.value_len, 2);
	assert_memory_equal(f->evs.v[0].kv.value, "lv", 2);
	assert_int_equal(f->evs.v[0].kv.lease, 0);
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\",\"ignore_lease\":true}",
					  B("lk"), B("lv2")),
			     NULL, NULL),
			 CAP_OK);
	assert_int_equal(get(f, "lk", &a), 1);
	assert_jbytes(a, "kvs/0/value", "lv2");
	assert_int_equal(jint(a, "kvs/0/version"), 3);
	assert_int_equal(jint(a, "kvs/0/create_revision"), r1);
	assert_null(jpath(a, "kvs/0/lease"));
	json_decref(a);

	grant(f, 777, 60);
	put_lease(f, "lk2", "a", 777);
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\",\"ignore_lease\":true}",
					  B("lk2"), B("b")),
			     NULL, NULL),
			 CAP_OK);
	assert_int_equal(f->evs.v[0].kv.lease, 777);
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"ignore_value\":true,"
					  "\"ignore_lease\":true,\"prev_kv\":true}",
					  B("lk2")),
			     &a, &rev),
			 CAP_OK);
	assert_jbytes(a, "prev_kv/value", "b");
	json_decref(a);
	assert_int_equal(get(f, "lk2", &a), 1);
	assert_jbytes(a, "kvs/0/value", "b");
	assert_int_equal(jint(a, "kvs/0/lease"), 777);
	assert_int_equal(jint(a, "kvs/0/version"), 3);
	assert_int_equal(jint(a, "kvs/0/mod_revision"), rev);
	json_decref(a);

	/* revoking the lease deletes lk2 (still attached), not lk (detached) */
	int64_t before = mvcc_rev(f->m);
	assert_int_equal(run(f, KV_LEASE_REVOKE, J("{\"ID\":777}"), &a, &rev), CAP_OK);
	json_decref(a);
	assert_int_equal(rev, before + 1);
	assert_int_equal(f->evs.n, 1);
	assert_event(&f->evs.v[0], MVCC_EVENT_DELETE, "lk2", rev);
	assert_int_equal(f->evs.v[0].prev.lease, 777);
	assert_int_equal(get(f, "lk2", NULL), 0);
	assert_int_equal(run(f, KV_LEASE_REVOKE, J("{\"ID\":12345}"), NULL, &rev), CAP_OK);
	assert_int_equal(get(f, "lk", NULL), 1);
}

/* ignore_value or ignore_lease on a missing key is "key not found", and
 * writes nothing. */
static void test_exec_ignore_missing(void **state)
{
	struct fx *f = *state;
	int64_t before = put(f, "k", "v");
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"ignore_value\":true}", B("missing")),
			     NULL, NULL),
			 CAP_EKEYNOTFOUND);
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\",\"ignore_lease\":true}",
					  B("missing"), B("v")),
			     NULL, NULL),
			 CAP_EKEYNOTFOUND);
	/* in a txn, after another put: the whole txn fails, the other put too */
	assert_int_equal(run(f, KV_TXN,
			     J("{\"success\":[" PUT(k) ",{\"request_put\":{\"key\":\"%s\","
			       "\"ignore_value\":true}}]}",
			       B("k"), B("missing")),
			     NULL, NULL),
			 CAP_EKEYNOTFOUND);
	assert_int_equal(mvcc_rev(f->m), before);
	assert_int_equal(get(f, "missing", NULL), 0);
}

/* A put with a lease that does not exist is refused at apply, and a txn
 * carrying one writes none of its other ops. */
static void test_exec_lease_not_found(void **state)
{
	struct fx *f = *state;
	json_t *a;
	int64_t before = put(f, "k", "v");
	assert_int_equal(run(f, KV_PUT, J("{\"key\":\"%s\",\"value\":\"%s\",\"lease\":999}",
					  B("k"), B("w")),
			     NULL, NULL),
			 CAP_ELEASENOTFOUND);
	assert_int_equal(run(f, KV_TXN,
			     J("{\"success\":[" PUT(a) ",{\"request_put\":{\"key\":\"%s\","
			       "\"lease\":\"999\"}}]}",
			       B("a"), B("b")),
			     NULL, NULL),
			 CAP_ELEASENOTFOUND);
	assert_int_equal(mvcc_rev(f->m), before);
	assert_int_equal(get(f, "a", &a), 0);
	json_decref(a);
	assert_int_equal(get(f, "k", &a), 1);
	assert_jbytes(a, "kvs/0/value", "v");
	json_decref(a);
	/* the failure branch is not checked when success runs */
	assert_int_equal(run(f, KV_TXN,
			     J("{\"success\":[" PUT(a) "],\"failure\":[{\"request_put\":{\"key\":"
			       "\"%s\",\"lease\":\"999\"}}]}",
			       B("a"), B("b")),
			     NULL, NULL),
			 CAP_OK);
	/* revoking an unknown lease */
	assert_int_equal(run(f, KV_LEASE_REVOKE, J("{\"ID\":999}"), NULL, NULL), CAP_ELEASENOTFOUND);
}

/* Lease grant answers ID and TTL as strings, refuses an existing ID and a
 * missing one (the proposer must pick it), and writes no revision. */
static void test_exec_lease_grant(void **state)
{
	struct fx *f = *state;
	json_t *a;
	int64_t rev, before = mvcc_rev(f->m);
	assert_int_equal(run(f, KV_LEASE_GRANT, J("{\"TTL\":60,\"ID\":12345}"), &a, &rev), CAP_OK);
	assert_int_equal(jint(a, "ID"), 12345);
	assert_int_equal(jint(a, "TTL"), 60);
	json_decref(a);
	assert_int_equal(rev, before);
	assert_int_equal(run(f, KV_LEASE_GRANT, J("{\"TTL\":60,\"ID\":12345}"), NULL, NULL),
			 CAP_ELEASEEXISTS);
	assert_int_equal(run(f, KV_LEASE_GRANT, J("{\"TTL\":60}"), NULL, NULL), CAP_EINVAL);
}

/* A past-revision read inside a txn fails the whole txn if that revision is
 * compacted or in the future; a compaction is refused twice. */
static void test_exec_txn_revisions(void **state)
{
	struct fx *f = *state;
	int64_t r1 = put(f, "k", "1");
	int64_t r2 = put(f, "k", "2");
	put(f, "k", "3");
	assert_int_equal(run(f, KV_COMPACT, J("{\"revision\":%" PRId64 "}", r2), NULL, NULL), CAP_OK);
	assert_int_equal(run(f, KV_COMPACT, J("{\"revision\":%" PRId64 "}", r2), NULL, NULL),
			 CAP_ECOMPACTED);
	int64_t cur = mvcc_rev(f->m);
	assert_int_equal(run(f, KV_TXN,
			     J("{\"success\":[" PUT(w) ",{\"request_range\":{\"key\":\"%s\","
			       "\"revision\":%" PRId64 "}}]}",
			       B("w"), B("k"), r1),
			     NULL, NULL),
			 CAP_ECOMPACTED);
	assert_int_equal(run(f, KV_TXN,
			     J("{\"success\":[" PUT(w) ",{\"request_range\":{\"key\":\"%s\","
			       "\"revision\":%" PRId64 "}}]}",
			       B("w"), B("k"), cur + 5),
			     NULL, NULL),
			 CAP_EFUTUREREV);
	assert_int_equal(mvcc_rev(f->m), cur);
	assert_int_equal(get(f, "w", NULL), 0);
	json_t *a;
	assert_int_equal(run(f, KV_TXN,
			     J("{\"success\":[{\"request_range\":{\"key\":\"%s\","
			       "\"revision\":%" PRId64 "}}]}",
			       B("k"), r2),
			     &a, NULL),
			 CAP_OK);
	assert_jbytes(a, "responses/0/response_range/kvs/0/value", "2");
	json_decref(a);
}

/* ---- range answers as text ---- */

/* Parses a range body (consumed) and answers it both ways, outside a
 * batch as reads are served: apply_exec's tree, after a header, through
 * jsonx_dumps; and apply_range_text between the same header's text and
 * the closing brace. The two texts must be the same bytes, and a failure
 * the same error. Returns the text's length (0 on an error). */
static size_t range_both_ways(struct fx *f, json_t *body)
{
	struct apply_req *req = NULL;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	struct mvcc_events evs = {0};
	struct jsonx_out out = {0};
	json_t *ans = NULL;
	int64_t rev = -1, trev = -1, before = mvcc_rev(f->m);
	char *body_text = jsonx_dumps(body, NULL);
	int rv = apply_parse(KV_RANGE, body, &req, errmsg);
	json_decref(body);
	if (rv != CAP_OK)
		fail_msg("parse %s: %s %s", body_text, cap_strerror(rv), errmsg);

	int erv = apply_exec(f->m, req, &ans, &evs, &rev, errmsg);
	JSONX_OUT_LIT(&out, "{\"header\":{\"revision\":");
	jsonx_out_i64(&out, mvcc_rev(f->m));
	JSONX_OUT_LIT(&out, "}");
	int trv = apply_range_text(f->m, req, &out, &trev);
	JSONX_OUT_LIT(&out, "}");
	if (erv != trv)
		fail_msg("%s: tree %s, text %s", body_text, cap_strerror(erv), cap_strerror(trv));
	assert_false(out.failed);
	size_t len = 0;
	if (erv == CAP_OK) {
		json_t *whole = json_object();
		json_t *hdr = json_object();
		size_t tlen;
		json_object_set_new(hdr, "revision", jsonx_i64(rev));
		json_object_set_new(whole, "header", hdr);
		json_object_update(whole, ans);
		char *tree = jsonx_dumps(whole, &tlen);
		assert_non_null(tree);
		assert_int_equal(trev, rev);
		assert_int_equal(rev, before);
		if (tlen != out.len || memcmp(tree, out.p, tlen) != 0)
			fail_msg("%s:\ntree %.300s\ntext %.*s", body_text, tree,
				 (int)(out.len < 300 ? out.len : 300), out.p);
		len = tlen;
		free(tree);
		json_decref(whole);
		json_decref(ans);
	}
	assert_int_equal(evs.n, 0);
	assert_int_equal(mvcc_rev(f->m), before);
	jsonx_out_free(&out);
	apply_req_free(req);
	free(body_text);
	return len;
}

/* base64 of n bytes, malloc'd. */
static char *Bn(const uint8_t *p, size_t n)
{
	char *b = malloc(b64_encoded_size(n));
	assert_non_null(b);
	b64_encode(p, n, b);
	return b;
}

static void raw_put(struct fx *f, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn,
		    int64_t lease)
{
	assert_int_equal(mvcc_begin(f->m), CAP_OK);
	mvcc_txn_begin(f->m);
	assert_int_equal(mvcc_put(f->m, k, kn, v, vn, lease, NULL, NULL), CAP_OK);
	mvcc_txn_end(f->m);
	assert_int_equal(mvcc_commit(f->m, mvcc_applied_index(f->m) + 1), CAP_OK);
}

/* The text answer of a range is the tree's text byte for byte, for every
 * shape of rows (binary and escaped keys, empty, compressed and multi-MiB
 * values, leases, several versions, deleted keys) and of requests (one
 * key, prefixes, all keys, from a key, limits with and without more,
 * keys_only, count_only, every sort, past revisions, filters, errors). */
static void test_range_text_matches_tree(void **state)
{
	struct fx *f = *state;
	uint8_t bin[256], *huge = malloc(3u << 20), *huge_z = calloc(1, 2u << 20);
	uint32_t x = 12345;
	assert_non_null(huge);
	assert_non_null(huge_z);
	for (size_t i = 0; i < 256; i++)
		bin[i] = (uint8_t)(255 - i);
	for (size_t i = 0; i < (3u << 20); i++) {
		x = x * 1103515245u + 12345u;
		huge[i] = (uint8_t)(x >> 16);
	}
	memset(huge_z, 'z', 2u << 20);

	/* an empty store: no kvs, no count */
	assert_true(range_both_ways(f, J("{\"key\":\"%s\"}", B("a"))) > 0);
	assert_true(range_both_ways(f, J("{\"key\":\"AA==\",\"range_end\":\"AA==\"}")) > 0);
	assert_true(range_both_ways(f, J("{\"key\":\"AA==\",\"range_end\":\"AA==\","
					 "\"count_only\":true}")) > 0);

	grant(f, 7, 60);
	grant(f, INT64_MAX, 60);
	int64_t r_first = put(f, "a", "1");
	put(f, "a/1", "");
	put(f, "a/2", "x");
	put_lease(f, "a/3", "leased", 7);
	put_lease(f, "a/4", "max lease", INT64_MAX);
	put(f, "a/1", "second version");
	int64_t r_mid = put(f, "a/5", "five");
	static const uint8_t k0[] = {0}, kff[] = {0xff, 0xfe}, kmix[] = {0, 1, 0x80, '"', '\\', '\n'};
	static const uint8_t kutf8[] = {'c', 'a', 'f', 0xc3, 0xa9};
	raw_put(f, k0, sizeof k0, bin, sizeof bin, 0);
	raw_put(f, kff, sizeof kff, bin, 1, 0);
	raw_put(f, kmix, sizeof kmix, (const uint8_t *)"\"q\"", 3, 7);
	raw_put(f, kutf8, sizeof kutf8, kutf8, sizeof kutf8, 0);
	/* 300 compressible bytes are stored lz4-compressed */
	raw_put(f, (const uint8_t *)"b/z", 3, huge_z, 300, 0);
	raw_put(f, (const uint8_t *)"b/huge", 6, huge, 3u << 20, 0);
	raw_put(f, (const uint8_t *)"b/hugez", 7, huge_z, 2u << 20, 0);
	int64_t r_before_del = put(f, "c", "deleted later");
	assert_int_equal(run(f, KV_DELETE_RANGE, J("{\"key\":\"%s\"}", B("c")), NULL, NULL), CAP_OK);
	put(f, "d", "after");
	assert_int_equal(run(f, KV_COMPACT, J("{\"revision\":%" PRId64 "}", r_first + 1), NULL,
			     NULL),
			 CAP_OK);
	int64_t now = mvcc_rev(f->m);

	char *key_specs[16];
	size_t nk = 0;
	key_specs[nk++] = strdup("\"key\":\"YQ==\"");                          /* a */
	key_specs[nk++] = strdup("\"key\":\"YS8x\"");                          /* a/1 */
	key_specs[nk++] = strdup("\"key\":\"bm9uZQ==\"");                      /* none */
	key_specs[nk++] = strdup("\"key\":\"YS8=\",\"range_end\":\"YTA=\"");     /* a/ prefix */
	key_specs[nk++] = strdup("\"key\":\"AA==\",\"range_end\":\"AA==\"");     /* all */
	key_specs[nk++] = strdup("\"key\":\"Yg==\",\"range_end\":\"AA==\"");     /* from b */
	key_specs[nk++] = strdup("\"key\":\"Yi8=\",\"range_end\":\"YjA=\"");     /* b/ prefix */
	key_specs[nk++] = strdup("\"key\":\"Yw==\"");                          /* c, deleted */
	char *b;
	char buf[256];
	static const uint8_t *const bins[] = {k0, kff, kmix, kutf8};
	static const size_t bin_lens[] = {sizeof k0, sizeof kff, sizeof kmix, sizeof kutf8};
	for (size_t i = 0; i < 4; i++) {
		b = Bn(bins[i], bin_lens[i]);
		snprintf(buf, sizeof buf, "\"key\":\"%s\"", b);
		key_specs[nk++] = strdup(buf);
		free(b);
	}
	b = Bn(k0, 1);
	char *e = Bn(kff, 1);
	snprintf(buf, sizeof buf, "\"key\":\"%s\",\"range_end\":\"%s\"", b, e);  /* [\0, \xff) */
	key_specs[nk++] = strdup(buf);
	free(b);
	free(e);

	char opt_specs[64][160];
	size_t no = 0;
	snprintf(opt_specs[no++], 160, "%s", "");
	snprintf(opt_specs[no++], 160, "%s", ",\"serializable\":true");
	snprintf(opt_specs[no++], 160, "%s", ",\"keys_only\":true");
	snprintf(opt_specs[no++], 160, "%s", ",\"count_only\":true");
	snprintf(opt_specs[no++], 160, "%s", ",\"count_only\":true,\"limit\":1");
	snprintf(opt_specs[no++], 160, "%s", ",\"keys_only\":true,\"count_only\":true");
	for (int lim = 1; lim <= 4; lim++) {
		snprintf(opt_specs[no++], 160, ",\"limit\":%d", lim);
		snprintf(opt_specs[no++], 160, ",\"limit\":\"%d\",\"keys_only\":true", lim);
	}
	snprintf(opt_specs[no++], 160, "%s", ",\"limit\":1000");
	snprintf(opt_specs[no++], 160, "%s", ",\"limit\":-3");
	static const char *const targets[] = {"KEY", "VERSION", "CREATE", "MOD", "VALUE"};
	for (size_t t = 0; t < 5; t++) {
		snprintf(opt_specs[no++], 160, ",\"sort_target\":\"%s\",\"sort_order\":\"DESCEND\"",
			 targets[t]);
		snprintf(opt_specs[no++], 160,
			 ",\"sort_target\":\"%s\",\"sort_order\":\"ASCEND\",\"limit\":2", targets[t]);
	}
	snprintf(opt_specs[no++], 160, "%s", ",\"sort_target\":\"VALUE\",\"keys_only\":true,\"limit\":3");
	snprintf(opt_specs[no++], 160, ",\"revision\":%" PRId64, r_mid);
	snprintf(opt_specs[no++], 160, ",\"revision\":\"%" PRId64 "\",\"keys_only\":true", r_before_del);
	snprintf(opt_specs[no++], 160, ",\"revision\":%" PRId64 ",\"limit\":1", now);
	snprintf(opt_specs[no++], 160, ",\"revision\":%" PRId64, r_first);        /* compacted */
	snprintf(opt_specs[no++], 160, ",\"revision\":%" PRId64, now + 1);        /* future */
	snprintf(opt_specs[no++], 160, ",\"min_mod_revision\":%" PRId64, r_mid);
	snprintf(opt_specs[no++], 160, ",\"max_mod_revision\":%" PRId64 ",\"limit\":2", r_mid);
	snprintf(opt_specs[no++], 160, ",\"min_create_revision\":%" PRId64 ",\"max_create_revision\":%" PRId64,
		 r_first + 2, r_mid);
	assert_true(no <= 64);

	size_t answers = 0, longest = 0;
	for (size_t k = 0; k < nk; k++) {
		for (size_t o = 0; o < no; o++) {
			size_t len = range_both_ways(f, J("{%s%s}", key_specs[k], opt_specs[o]));
			answers += len > 0;
			if (len > longest)
				longest = len;
		}
		free(key_specs[k]);
	}
	/* The cases reached what they are for: most answered, and the
	 * multi-MiB values made it into an answer. */
	assert_true(answers > nk * no / 2);
	assert_true(longest > (4u << 20));
	free(huge);
	free(huge_z);
}

/* apply_range_text refuses anything but a range. */
static void test_range_text_only_ranges(void **state)
{
	struct fx *f = *state;
	struct apply_req *req = NULL;
	struct jsonx_out out = {0};
	char errmsg[CAP_ERRMSG_SIZE];
	int64_t rev;
	json_t *body = J("{\"key\":\"%s\",\"value\":\"%s\"}", B("k"), B("v"));
	assert_int_equal(apply_parse(KV_PUT, body, &req, errmsg), CAP_OK);
	json_decref(body);
	assert_int_equal(apply_range_text(f->m, req, &out, &rev), CAP_EINVAL);
	assert_int_equal(out.len, 0);
	assert_int_equal(mvcc_rev(f->m), 1);
	apply_req_free(req);
	jsonx_out_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_key_empty),
		cmocka_unit_test(test_parse_ignore_flags),
		cmocka_unit_test(test_parse_too_many_ops),
		cmocka_unit_test(test_parse_duplicate_keys),
		cmocka_unit_test(test_parse_duplicate_allowed),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_parse_readonly),
		cmocka_unit_test(test_binary_put_roundtrip),
		cmocka_unit_test(test_put_text_same_as_tree),
		cmocka_unit_test_setup_teardown(test_exec_put_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_put_prev_kv, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_put_skips_prev_value, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_skips_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_deleterange, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_compare_matrix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_compare_missing_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_compare_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_txn_branches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_nested_decided_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_readonly_txn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_ignore_value_lease, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_ignore_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_lease_not_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_lease_grant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_txn_revisions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_text_matches_tree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_text_only_ranges, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
