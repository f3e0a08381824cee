/* fuzz_json_request.c — libFuzzer target: arbitrary bytes as a gateway JSON
 * body, parsed as every kind of request; whatever passes validation is then
 * applied to a real MVCC store, which must never crash either. A range is
 * also answered as text (apply_range_text), which must be the tree's text
 * byte for byte, or the same error; a put read from its text without a tree
 * (apply_parse_put_text) must be the tree path's put. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/err.h"
#include "lib/jsonx.h"
#include "lib/kv.h"
#include "store/apply.h"
#include "store/mvcc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mvcc *store;
static char dir[256];
static char path[300];

static void cleanup(void)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal", ".restore"};
	char p[320];
	mvcc_close(store);
	for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
		snprintf(p, sizeof p, "%s%s", path, sfx[i]);
		unlink(p);
	}
	rmdir(dir);
}

static void seed_put(const char *key, const char *value, int64_t lease)
{
	mvcc_txn_begin(store);
	if (mvcc_put(store, (const uint8_t *)key, strlen(key), (const uint8_t *)value,
		     strlen(value), lease, NULL, NULL) != CAP_OK)
		abort();
	mvcc_txn_end(store);
}

/* A small store with history, a lease and a compaction, so compares, ranges
 * at past revisions and lease checks have something to find. */
static void open_store(void)
{
	char errmsg[CAP_ERRMSG_SIZE];
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof dir, "%s/fuzz_json_request.XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof path, "%s/db", dir);
	if (mvcc_open(path, &store, errmsg) != CAP_OK)
		abort();
	atexit(cleanup);
	if (mvcc_begin(store) != CAP_OK || mvcc_lease_grant(store, 12345, 60) != CAP_OK)
		abort();
	seed_put("foo", "bar", 0);
	seed_put("foo", "bar2", 0);
	seed_put("foo1", "x", 0);
	seed_put("foo2", "y", 12345);
	seed_put("lk", "lv", 12345);
	seed_put("a", "", 0);
	if (mvcc_compact(store, 3) != CAP_OK || mvcc_commit(store, 1) != CAP_OK)
		abort();
}

/* The text path of a range against the tree path's answer ans (NULL when
 * apply_exec failed with rv). */
static void range_text_check(const struct apply_req *req, int rv, json_t *ans, int64_t rev)
{
	struct jsonx_out out = {0};
	int64_t trev = -1;
	JSONX_OUT_LIT(&out, "{\"header\":{}");
	int trv = apply_range_text(store, req, &out, &trev);
	JSONX_OUT_LIT(&out, "}");
	if (trv != rv)
		abort();
	if (rv == CAP_OK && !out.failed) {
		json_t *whole = json_object();
		size_t len;
		json_object_set_new(whole, "header", json_object());
		json_object_update(whole, ans);
		char *tree = jsonx_dumps(whole, &len);
		if (tree == NULL || trev != rev || len != out.len || memcmp(tree, out.p, len) != 0)
			abort();
		free(tree);
		json_decref(whole);
	}
	jsonx_out_free(&out);
}

static void apply_one(enum kv_op op, json_t *body)
{
	struct apply_req *req = NULL;
	struct mvcc_events evs = {0};
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_t *ans = NULL;
	int64_t rev = -1, before;
	int rv;

	rv = apply_parse(op, body, &req, errmsg);
	if (rv < 0 || rv >= CAP_ERR_COUNT)
		abort();
	if (rv != CAP_OK)
		return;
	if (apply_req_op(req) != op)
		abort();
	/* Only what the log carries is executed; the rest is answered from
	 * the lease clock or the node. */
	if (op > KV_LEASE_REVOKE) {
		apply_req_free(req);
		return;
	}
	before = mvcc_rev(store);
	if (mvcc_begin(store) != CAP_OK)
		abort();
	rv = apply_exec(store, req, &ans, &evs, &rev, errmsg);
	if (rv < 0 || rv >= CAP_ERR_COUNT)
		abort();
	if (rv == CAP_OK) {
		/* one etcd txn writes at most one revision; a read none */
		if (!json_is_object(ans) || rev < before || rev > before + 1)
			abort();
		if (apply_req_readonly(req) && (rev != before || evs.n != 0))
			abort();
		for (size_t i = 0; i < evs.n; i++)
			if (evs.v[i].kv.mod_rev != rev)
				abort();
		if (op == KV_RANGE)
			range_text_check(req, rv, ans, rev);
		json_decref(ans);
	} else if (evs.n != 0) {
		/* a failed request leaves no events behind */
		abort();
	} else if (op == KV_RANGE) {
		range_text_check(req, rv, NULL, rev);
	}
	/* Roll back so every input starts from the same store. */
	mvcc_rollback(store);
	if (mvcc_rev(store) != before)
		abort();
	mvcc_events_clear(&evs);
	apply_req_free(req);
}

/* A put read straight from its text (apply_parse_put_text) is what the
 * tree path makes of the same text, to the byte of its log entry; the
 * text path may decline anything, never accept what the tree refuses. */
static void put_text_check(const uint8_t *data, size_t size)
{
	struct apply_req *fast = NULL, *tree = NULL;
	char errmsg[CAP_ERRMSG_SIZE];
	json_error_t jerr;
	uint8_t *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;

	if (!apply_parse_put_text((const char *)data, size, &fast))
		return;
	json_t *body = jsonx_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
	if (body == NULL || apply_parse(KV_PUT, body, &tree, errmsg) != CAP_OK)
		abort();
	if (apply_encode_bin(fast, &a, &alen) != CAP_OK ||
	    apply_encode_bin(tree, &b, &blen) != CAP_OK || alen != blen || memcmp(a, b, alen) != 0)
		abort();
	free(a);
	free(b);
	apply_req_free(fast);
	apply_req_free(tree);
	json_decref(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t jerr;
	json_t *body;

	if (store == NULL)
		open_store();
	put_text_check(data, size);
	body = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
	if (body == NULL)
		return 0;
	for (int op = 0; op < KV_OP_COUNT; op++)
		apply_one((enum kv_op)op, body);
	json_decref(body);
	return 0;
}
