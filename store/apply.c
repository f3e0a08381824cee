/* apply.c — etcd's request semantics over the MVCC store: see apply.h. */
#include "store/apply.h"

#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "lib/jsonx.h"

enum op_type { OP_RANGE, OP_PUT, OP_DELETE, OP_TXN };

struct range_req {
	uint8_t *key, *end;
	size_t key_len, end_len;
	struct mvcc_range_opts opts;
	bool serializable;
};

struct put_req {
	uint8_t *key, *value;
	size_t key_len, value_len;
	int64_t lease;
	bool prev_kv, ignore_value, ignore_lease;
};

struct delete_req {
	uint8_t *key, *end;
	size_t key_len, end_len;
	bool prev_kv;
};

enum cmp_target { CMP_VERSION = 0, CMP_CREATE, CMP_MOD, CMP_VALUE, CMP_LEASE };
enum cmp_result { CMP_EQUAL = 0, CMP_GREATER, CMP_LESS, CMP_NOT_EQUAL };

struct compare {
	uint8_t *key, *end, *value;
	size_t key_len, end_len, value_len;
	int target;
	int result;
	int64_t number;
};

struct txn_req;

struct op {
	enum op_type type;
	union {
		struct range_req range;
		struct put_req put;
		struct delete_req del;
		struct txn_req *txn;
	} u;
};

struct txn_req {
	struct compare *cmp;
	size_t n_cmp;
	struct op *success, *failure;
	size_t n_success, n_failure;
};

struct apply_req {
	enum kv_op op;
	union {
		struct range_req range;
		struct put_req put;
		struct delete_req del;
		struct txn_req *txn;
		struct {
			int64_t rev;
			bool physical;
		} compact;
		struct {
			int64_t id, ttl;
		} lease;
	} u;
};

static const char *const sort_orders[] = {"NONE", "ASCEND", "DESCEND", NULL};
static const char *const sort_targets[] = {"KEY", "VERSION", "CREATE", "MOD", "VALUE", NULL};
static const char *const cmp_targets[] = {"VERSION", "CREATE", "MOD", "VALUE", "LEASE", NULL};
static const char *const cmp_results[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL", NULL};

/* ---- freeing ---- */

static void txn_free(struct txn_req *t);

static void op_clear(struct op *o)
{
	switch (o->type) {
	case OP_RANGE:
		free(o->u.range.key);
		free(o->u.range.end);
		break;
	case OP_PUT:
		free(o->u.put.key);
		free(o->u.put.value);
		break;
	case OP_DELETE:
		free(o->u.del.key);
		free(o->u.del.end);
		break;
	case OP_TXN:
		txn_free(o->u.txn);
		break;
	}
}

static void txn_free(struct txn_req *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_cmp; i++) {
		free(t->cmp[i].key);
		free(t->cmp[i].end);
		free(t->cmp[i].value);
	}
	free(t->cmp);
	for (size_t i = 0; i < t->n_success; i++)
		op_clear(&t->success[i]);
	for (size_t i = 0; i < t->n_failure; i++)
		op_clear(&t->failure[i]);
	free(t->success);
	free(t->failure);
	free(t);
}

void apply_req_free(struct apply_req *req)
{
	if (req == NULL)
		return;
	switch (req->op) {
	case KV_RANGE:
		free(req->u.range.key);
		free(req->u.range.end);
		break;
	case KV_PUT:
		free(req->u.put.key);
		free(req->u.put.value);
		break;
	case KV_DELETE_RANGE:
		free(req->u.del.key);
		free(req->u.del.end);
		break;
	case KV_TXN:
		txn_free(req->u.txn);
		break;
	default:
		break;
	}
	free(req);
}

/* ---- parsing ---- */

static int need_object(json_t *body, char *errmsg)
{
	if (!json_is_object(body)) {
		cap_errmsg_printf(errmsg, "json: cannot unmarshal into a request object");
		return CAP_EINVAL;
	}
	return CAP_OK;
}

static int parse_range(json_t *o, struct range_req *r, char *errmsg)
{
	int rv;
	int order = 0, target = 0;
	if ((rv = need_object(o, errmsg)) != 0 ||
	    (rv = jsonx_get_bytes(o, "key", &r->key, &r->key_len, errmsg)) != 0 ||
	    (rv = jsonx_get_bytes(o, "range_end", &r->end, &r->end_len, errmsg)) != 0 ||
	    (rv = jsonx_get_i64(o, "limit", &r->opts.limit, errmsg)) != 0 ||
	    (rv = jsonx_get_i64(o, "revision", &r->opts.rev, errmsg)) != 0 ||
	    (rv = jsonx_get_enum(o, "sort_order", sort_orders, &order, errmsg)) != 0 ||
	    (rv = jsonx_get_enum(o, "sort_target", sort_targets, &target, errmsg)) != 0 ||
	    (rv = jsonx_get_bool(o, "serializable", &r->serializable, errmsg)) != 0 ||
	    (rv = jsonx_get_bool(o, "keys_only", &r->opts.keys_only, errmsg)) != 0 ||
	    (rv = jsonx_get_bool(o, "count_only", &r->opts.count_only, errmsg)) != 0 ||
	    (rv = jsonx_get_i64(o, "min_mod_revision", &r->opts.min_mod_rev, errmsg)) != 0 ||
	    (rv = jsonx_get_i64(o, "max_mod_revision", &r->opts.max_mod_rev, errmsg)) != 0 ||
	    (rv = jsonx_get_i64(o, "min_create_revision", &r->opts.min_create_rev, errmsg)) != 0 ||
	    (rv = jsonx_get_i64(o, "max_create_revision", &r->opts.max_create_rev, errmsg)) != 0)
		return rv;
	r->opts.sort_order = (enum mvcc_sort_order)order;
	r->opts.sort_target = (enum mvcc_sort_target)target;
	if (r->key_len == 0)
		return CAP_EKEYEMPTY;
	if (r->opts.limit < 0)
		r->opts.limit = 0;
	return CAP_OK;
}

static int parse_put(json_t *o, struct put_req *p, char *errmsg)
{
	int rv;
	if ((rv = need_object(o, errmsg)) != 0 ||
	    (rv = jsonx_get_bytes(o, "key", &p->key, &p->key_len, errmsg)) != 0 ||
	    (rv = jsonx_get_bytes(o, "value", &p->value, &p->value_len, errmsg)) != 0 ||
	    (rv = jsonx_get_i64(o, "lease", &p->lease, errmsg)) != 0 ||
	    (rv = jsonx_get_bool(o, "prev_kv", &p->prev_kv, errmsg)) != 0 ||
	    (rv = jsonx_get_bool(o, "ignore_value", &p->ignore_value, errmsg)) != 0 ||
	    (rv = jsonx_get_bool(o, "ignore_lease", &p->ignore_lease, errmsg)) != 0)
		return rv;
	if (p->key_len == 0)
		return CAP_EKEYEMPTY;
	if (p->ignore_value && p->value_len != 0) {
		cap_errmsg_printf(errmsg, "etcdserver: value is provided");
		return CAP_EINVAL;
	}
	if (p->ignore_lease && p->lease != 0)
		return CAP_ELEASEPROVIDED;
	return CAP_OK;
}

static int parse_delete(json_t *o, struct delete_req *d, char *errmsg)
{
	int rv;
	if ((rv = need_object(o, errmsg)) != 0 ||
	    (rv = jsonx_get_bytes(o, "key", &d->key, &d->key_len, errmsg)) != 0 ||
	    (rv = jsonx_get_bytes(o, "range_end", &d->end, &d->end_len, errmsg)) != 0 ||
	    (rv = jsonx_get_bool(o, "prev_kv", &d->prev_kv, errmsg)) != 0)
		return rv;
	if (d->key_len == 0)
		return CAP_EKEYEMPTY;
	return CAP_OK;
}

static int parse_txn(json_t *o, struct txn_req **out, char *errmsg);

static int parse_op(json_t *o, struct op *op, char *errmsg)
{
	json_t *v;
	int rv;
	if ((rv = need_object(o, errmsg)) != 0)
		return rv;
	if ((v = json_object_get(o, "request_range")) != NULL) {
		op->type = OP_RANGE;
		return parse_range(v, &op->u.range, errmsg);
	}
	if ((v = json_object_get(o, "request_put")) != NULL) {
		op->type = OP_PUT;
		return parse_put(v, &op->u.put, errmsg);
	}
	if ((v = json_object_get(o, "request_delete_range")) != NULL) {
		op->type = OP_DELETE;
		return parse_delete(v, &op->u.del, errmsg);
	}
	if ((v = json_object_get(o, "request_txn")) != NULL) {
		op->type = OP_TXN;
		op->u.txn = NULL;
		return parse_txn(v, &op->u.txn, errmsg);
	}
	/* An empty RequestOp is what Go decodes too; etcd then fails it. */
	cap_errmsg_printf(errmsg, "etcdserver: request is empty");
	op->type = OP_RANGE;
	return CAP_EINVAL;
}

static int parse_ops(json_t *arr, struct op **out, size_t *n, char *errmsg)
{
	size_t count;
	int rv;
	if (arr == NULL)
		return CAP_OK;
	count = json_array_size(arr);
	if (count > APPLY_MAX_TXN_OPS)
		return CAP_ETOOMANYOPS;
	if (count == 0)
		return CAP_OK;
	*out = calloc(count, sizeof **out);
	if (*out == NULL)
		return CAP_ENOMEM;
	for (size_t i = 0; i < count; i++) {
		*n = i + 1;
		rv = parse_op(json_array_get(arr, i), &(*out)[i], errmsg);
		if (rv != 0)
			return rv;
	}
	return CAP_OK;
}

static int parse_compare(json_t *o, struct compare *c, char *errmsg)
{
	int rv;
	if ((rv = need_object(o, errmsg)) != 0 ||
	    (rv = jsonx_get_bytes(o, "key", &c->key, &c->key_len, errmsg)) != 0 ||
	    (rv = jsonx_get_bytes(o, "range_end", &c->end, &c->end_len, errmsg)) != 0 ||
	    (rv = jsonx_get_enum(o, "target", cmp_targets, &c->target, errmsg)) != 0 ||
	    (rv = jsonx_get_enum(o, "result", cmp_results, &c->result, errmsg)) != 0)
		return rv;
	switch (c->target) {
	case CMP_VERSION:
		return jsonx_get_i64(o, "version", &c->number, errmsg);
	case CMP_CREATE:
		return jsonx_get_i64(o, "create_revision", &c->number, errmsg);
	case CMP_MOD:
		return jsonx_get_i64(o, "mod_revision", &c->number, errmsg);
	case CMP_LEASE:
		return jsonx_get_i64(o, "lease", &c->number, errmsg);
	default:
		return jsonx_get_bytes(o, "value", &c->value, &c->value_len, errmsg);
	}
}

static int parse_txn(json_t *o, struct txn_req **out, char *errmsg)
{
	json_t *cmp = NULL, *succ = NULL, *fail = NULL;
	struct txn_req *t;
	int rv;
	if ((rv = need_object(o, errmsg)) != 0 ||
	    (rv = jsonx_get_array(o, "compare", &cmp, errmsg)) != 0 ||
	    (rv = jsonx_get_array(o, "success", &succ, errmsg)) != 0 ||
	    (rv = jsonx_get_array(o, "failure", &fail, errmsg)) != 0)
		return rv;
	if (json_array_size(cmp) > APPLY_MAX_TXN_OPS)
		return CAP_ETOOMANYOPS;
	t = calloc(1, sizeof *t);
	if (t == NULL)
		return CAP_ENOMEM;
	*out = t;
	if (json_array_size(cmp) > 0) {
		t->cmp = calloc(json_array_size(cmp), sizeof *t->cmp);
		if (t->cmp == NULL)
			return CAP_ENOMEM;
		for (size_t i = 0; i < json_array_size(cmp); i++) {
			t->n_cmp = i + 1;
			rv = parse_compare(json_array_get(cmp, i), &t->cmp[i], errmsg);
			if (rv != 0)
				return rv;
		}
	}
	if ((rv = parse_ops(succ, &t->success, &t->n_success, errmsg)) != 0)
		return rv;
	return parse_ops(fail, &t->failure, &t->n_failure, errmsg);
}

/* ---- etcd's duplicate-key rule: within one branch (nested txns included),
 * no key may be put twice, and no put may fall inside a deleted range. ---- */

struct interval {
	const uint8_t *key, *end;
	size_t key_len, end_len;
};

struct intervals {
	struct interval *v;
	size_t n, cap;
};

static int intervals_push(struct intervals *s, const uint8_t *key, size_t key_len,
			  const uint8_t *end, size_t end_len)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct interval *v = realloc(s->v, cap * sizeof *v);
		if (v == NULL)
			return CAP_ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = (struct interval){key, end, key_len, end_len};
	return CAP_OK;
}

static int bytes_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
	size_t n = an < bn ? an : bn;
	int c = n ? memcmp(a, b, n) : 0;
	if (c != 0)
		return c;
	return an < bn ? -1 : an > bn ? 1 : 0;
}

/* Is key inside the interval? An empty end is the single key; a one-zero-byte
 * end means "to the end of the key space". */
static bool interval_has(const struct interval *iv, const uint8_t *key, size_t key_len)
{
	if (iv->end_len == 0)
		return bytes_cmp(iv->key, iv->key_len, key, key_len) == 0;
	if (bytes_cmp(key, key_len, iv->key, iv->key_len) < 0)
		return false;
	if (iv->end_len == 1 && iv->end[0] == 0)
		return true;
	return bytes_cmp(key, key_len, iv->end, iv->end_len) < 0;
}

static bool puts_have(const struct intervals *puts, const uint8_t *key, size_t key_len)
{
	for (size_t i = 0; i < puts->n; i++)
		if (bytes_cmp(puts->v[i].key, puts->v[i].key_len, key, key_len) == 0)
			return true;
	return false;
}

static bool dels_have(const struct intervals *dels, const uint8_t *key, size_t key_len)
{
	for (size_t i = 0; i < dels->n; i++)
		if (interval_has(&dels->v[i], key, key_len))
			return true;
	return false;
}

static int check_intervals(const struct op *ops, size_t n, struct intervals *puts,
			   struct intervals *dels)
{
	int rv;
	for (size_t i = 0; i < n; i++) {
		const struct op *o = &ops[i];
		if (o->type == OP_DELETE &&
		    (rv = intervals_push(dels, o->u.del.key, o->u.del.key_len, o->u.del.end,
					 o->u.del.end_len)) != 0)
			return rv;
	}
	for (size_t i = 0; i < n; i++) {
		const struct op *o = &ops[i];
		struct intervals then_puts = {0}, else_puts = {0};
		if (o->type != OP_TXN)
			continue;
		/* Each branch sees the deletes above it but not the other branch's:
		 * only one of them runs. Both branches' deletes then count for
		 * what follows. */
		size_t base = dels->n;
		struct intervals then_dels = {0};
		rv = check_intervals(o->u.txn->success, o->u.txn->n_success, &then_puts, dels);
		for (size_t j = base; rv == 0 && j < dels->n; j++)
			rv = intervals_push(&then_dels, dels->v[j].key, dels->v[j].key_len,
					    dels->v[j].end, dels->v[j].end_len);
		dels->n = base;
		if (rv == 0)
			rv = check_intervals(o->u.txn->failure, o->u.txn->n_failure, &else_puts, dels);
		for (size_t j = 0; rv == 0 && j < then_dels.n; j++)
			rv = intervals_push(dels, then_dels.v[j].key, then_dels.v[j].key_len,
					    then_dels.v[j].end, then_dels.v[j].end_len);
		free(then_dels.v);
		/* Only one branch of a nested txn runs, so they may share keys. */
		for (size_t j = 0; rv == 0 && j < then_puts.n + else_puts.n; j++) {
			const struct interval *p = j < then_puts.n ? &then_puts.v[j]
								   : &else_puts.v[j - then_puts.n];
			if (j >= then_puts.n && puts_have(&then_puts, p->key, p->key_len))
				continue;
			if (puts_have(puts, p->key, p->key_len))
				rv = CAP_EDUPKEY;
			else
				rv = intervals_push(puts, p->key, p->key_len, NULL, 0);
		}
		free(then_puts.v);
		free(else_puts.v);
		if (rv != 0)
			return rv;
	}
	for (size_t i = 0; i < n; i++) {
		const struct op *o = &ops[i];
		if (o->type != OP_PUT)
			continue;
		if (puts_have(puts, o->u.put.key, o->u.put.key_len) ||
		    dels_have(dels, o->u.put.key, o->u.put.key_len))
			return CAP_EDUPKEY;
		if ((rv = intervals_push(puts, o->u.put.key, o->u.put.key_len, NULL, 0)) != 0)
			return rv;
	}
	return CAP_OK;
}

static int check_txn(const struct txn_req *t)
{
	int rv = CAP_OK;
	for (int branch = 0; branch < 2 && rv == 0; branch++) {
		struct intervals puts = {0}, dels = {0};
		if (branch == 0)
			rv = check_intervals(t->success, t->n_success, &puts, &dels);
		else
			rv = check_intervals(t->failure, t->n_failure, &puts, &dels);
		free(puts.v);
		free(dels.v);
	}
	return rv;
}

/* ---- binary encoding (raft log commands) ----
 *
 *   op u8 | flags u8 | lease varint (zigzag) | key_len varint | key |
 *   value_len varint | value
 *
 * for a put (op KV_PUT; flags: 1 prev_kv, 2 ignore_value, 4 ignore_lease).
 * Varints are LEB128, at most 10 bytes, minimal. */

#define BIN_PREV_KV 1u
#define BIN_IGNORE_VALUE 2u
#define BIN_IGNORE_LEASE 4u

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Reads a varint at *off; -1 if it runs past len, is longer than 10 bytes,
 * overflows 64 bits or is not minimal (so every value has one encoding). */
static int get_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned i = 0; i < 10; i++) {
		if (*off >= len)
			return -1;
		uint8_t b = p[(*off)++];
		if (i == 9 && b > 1)
			return -1;
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if ((b & 0x80) == 0) {
			if (b == 0 && i > 0)
				return -1;
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* The binary form after lead bytes left to the caller, in one buffer. */
static int encode_bin(const struct apply_req *req, size_t lead, uint8_t **out, size_t *len)
{
	const struct put_req *p;
	uint8_t *buf;
	size_t n = lead;

	if (req->op != KV_PUT)
		return CAP_EINVAL;
	p = &req->u.put;
	buf = malloc(lead + 2 + 3 * 10 + p->key_len + p->value_len);
	if (buf == NULL)
		return CAP_ENOMEM;
	buf[n++] = KV_PUT;
	buf[n++] = (uint8_t)((p->prev_kv ? BIN_PREV_KV : 0) | (p->ignore_value ? BIN_IGNORE_VALUE : 0) |
			     (p->ignore_lease ? BIN_IGNORE_LEASE : 0));
	n += put_varint(buf + n, ((uint64_t)p->lease << 1) ^ (uint64_t)(p->lease >> 63));
	n += put_varint(buf + n, p->key_len);
	if (p->key_len)
		memcpy(buf + n, p->key, p->key_len);
	n += p->key_len;
	n += put_varint(buf + n, p->value_len);
	if (p->value_len)
		memcpy(buf + n, p->value, p->value_len);
	n += p->value_len;
	*out = buf;
	*len = n;
	return CAP_OK;
}

int apply_encode_bin(const struct apply_req *req, uint8_t **out, size_t *len)
{
	return encode_bin(req, 0, out, len);
}

int apply_encode_bin_tagged(const struct apply_req *req, uint8_t tag, uint8_t **out, size_t *len)
{
	int rv = encode_bin(req, 1, out, len);
	if (rv == CAP_OK)
		(*out)[0] = tag;
	return rv;
}

static int get_bytes(const uint8_t *buf, size_t len, size_t *off, uint8_t **out, size_t *out_len)
{
	uint64_t n;
	if (get_varint(buf, len, off, &n) != 0 || n > len - *off)
		return CAP_ECORRUPT;
	*out = NULL;
	*out_len = (size_t)n;
	if (n > 0) {
		if ((*out = malloc((size_t)n)) == NULL)
			return CAP_ENOMEM;
		memcpy(*out, buf + *off, (size_t)n);
		*off += (size_t)n;
	}
	return CAP_OK;
}

int apply_decode_bin(const uint8_t *buf, size_t len, struct apply_req **out, char *errmsg)
{
	struct apply_req *req;
	struct put_req *p;
	size_t off = 2;
	uint64_t zz;
	int rv;

	if (len < 2 || buf[0] != KV_PUT ||
	    (buf[1] & ~(BIN_PREV_KV | BIN_IGNORE_VALUE | BIN_IGNORE_LEASE)) != 0) {
		cap_errmsg_printf(errmsg, "bad binary command");
		return CAP_ECORRUPT;
	}
	if ((req = calloc(1, sizeof *req)) == NULL)
		return CAP_ENOMEM;
	req->op = KV_PUT;
	p = &req->u.put;
	p->prev_kv = (buf[1] & BIN_PREV_KV) != 0;
	p->ignore_value = (buf[1] & BIN_IGNORE_VALUE) != 0;
	p->ignore_lease = (buf[1] & BIN_IGNORE_LEASE) != 0;
	if (get_varint(buf, len, &off, &zz) != 0) {
		rv = CAP_ECORRUPT;
		goto err;
	}
	p->lease = (int64_t)(zz >> 1) ^ -(int64_t)(zz & 1);
	if ((rv = get_bytes(buf, len, &off, &p->key, &p->key_len)) != 0 ||
	    (rv = get_bytes(buf, len, &off, &p->value, &p->value_len)) != 0)
		goto err;
	if (off != len) {
		rv = CAP_ECORRUPT;
		goto err;
	}
	/* The same checks as a put parsed from JSON. */
	if (p->key_len == 0) {
		rv = CAP_EKEYEMPTY;
		goto err;
	}
	if (p->ignore_value && p->value_len != 0) {
		cap_errmsg_printf(errmsg, "etcdserver: value is provided");
		rv = CAP_EINVAL;
		goto err;
	}
	if (p->ignore_lease && p->lease != 0) {
		rv = CAP_ELEASEPROVIDED;
		goto err;
	}
	*out = req;
	return CAP_OK;
err:
	if (rv == CAP_ECORRUPT)
		cap_errmsg_printf(errmsg, "bad binary command");
	apply_req_free(req);
	return rv;
}

int apply_parse(enum kv_op op, json_t *body, struct apply_req **out, char *errmsg)
{
	struct apply_req *req = calloc(1, sizeof *req);
	int rv;
	if (req == NULL)
		return CAP_ENOMEM;
	req->op = op;
	switch (op) {
	case KV_RANGE:
		rv = parse_range(body, &req->u.range, errmsg);
		break;
	case KV_PUT:
		rv = parse_put(body, &req->u.put, errmsg);
		break;
	case KV_DELETE_RANGE:
		rv = parse_delete(body, &req->u.del, errmsg);
		break;
	case KV_TXN:
		rv = parse_txn(body, &req->u.txn, errmsg);
		if (rv == 0)
			rv = check_txn(req->u.txn);
		break;
	case KV_COMPACT:
		if ((rv = need_object(body, errmsg)) == 0 &&
		    (rv = jsonx_get_i64(body, "revision", &req->u.compact.rev, errmsg)) == 0)
			rv = jsonx_get_bool(body, "physical", &req->u.compact.physical, errmsg);
		break;
	case KV_LEASE_GRANT:
		if ((rv = need_object(body, errmsg)) == 0 &&
		    (rv = jsonx_get_i64(body, "TTL", &req->u.lease.ttl, errmsg)) == 0)
			rv = jsonx_get_i64(body, "ID", &req->u.lease.id, errmsg);
		if (rv == 0 && req->u.lease.ttl > APPLY_MAX_LEASE_TTL) {
			cap_errmsg_printf(errmsg, "etcdserver: too large lease TTL");
			rv = CAP_EINVAL;
		}
		break;
	case KV_LEASE_REVOKE:
		if ((rv = need_object(body, errmsg)) == 0)
			rv = jsonx_get_i64(body, "ID", &req->u.lease.id, errmsg);
		break;
	default:
		cap_errmsg_printf(errmsg, "operation not applicable");
		rv = CAP_EINVAL;
	}
	if (rv != 0) {
		apply_req_free(req);
		return rv;
	}
	*out = req;
	return CAP_OK;
}

/* The members of a put, by name. */
static const char *const put_fields[] = {"key", "value", "lease", "prev_kv", "ignore_value",
					 "ignore_lease"};
enum { PF_KEY, PF_VALUE, PF_LEASE, PF_PREV_KV, PF_IGNORE_VALUE, PF_IGNORE_LEASE, PF_COUNT };

static int put_field(const char *name, size_t len)
{
	for (int i = 0; i < PF_COUNT; i++)
		if (strlen(put_fields[i]) == len && memcmp(put_fields[i], name, len) == 0)
			return i;
	return -1;
}

bool apply_parse_put_text(const char *text, size_t len, struct apply_req **out)
{
	struct apply_req *req = calloc(1, sizeof *req);
	struct put_req *p;
	struct jsonx_flat f;
	struct jsonx_member m;
	unsigned seen = 0;
	int rv;

	if (req == NULL)
		return false;
	req->op = KV_PUT;
	p = &req->u.put;
	jsonx_flat_begin(&f, text, len);
	while ((rv = jsonx_flat_next(&f, &m)) == 1) {
		int field = put_field(m.name, m.name_len);
		bool flag = m.type == JSONX_FLAT_TRUE;
		/* Unknown and repeated members, and other types, are the tree
		 * path's to judge. */
		if (field < 0 || (seen & (1u << field)) != 0)
			goto other;
		seen |= 1u << field;
		switch (field) {
		case PF_KEY:
		case PF_VALUE:
			if (m.type != JSONX_FLAT_STRING ||
			    jsonx_b64_field(m.str, m.str_len, field == PF_KEY ? &p->key : &p->value,
					    field == PF_KEY ? &p->key_len : &p->value_len) != CAP_OK)
				goto other;
			break;
		case PF_LEASE:
			if (m.type != JSONX_FLAT_INT)
				goto other;
			p->lease = m.num;
			break;
		default:
			if (m.type != JSONX_FLAT_TRUE && m.type != JSONX_FLAT_FALSE)
				goto other;
			if (field == PF_PREV_KV)
				p->prev_kv = flag;
			else if (field == PF_IGNORE_VALUE)
				p->ignore_value = flag;
			else
				p->ignore_lease = flag;
			break;
		}
	}
	/* What parse_put refuses is refused there, with its error. */
	if (rv != 0 || p->key_len == 0 || (p->ignore_value && p->value_len != 0) ||
	    (p->ignore_lease && p->lease != 0))
		goto other;
	*out = req;
	return true;
other:
	apply_req_free(req);
	return false;
}

enum kv_op apply_req_op(const struct apply_req *req)
{
	return req->op;
}

static bool ops_readonly(const struct op *ops, size_t n);

static bool txn_readonly(const struct txn_req *t)
{
	return ops_readonly(t->success, t->n_success) && ops_readonly(t->failure, t->n_failure);
}

static bool ops_readonly(const struct op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ops[i].type == OP_PUT || ops[i].type == OP_DELETE)
			return false;
		if (ops[i].type == OP_TXN && !txn_readonly(ops[i].u.txn))
			return false;
	}
	return true;
}

bool apply_req_readonly(const struct apply_req *req)
{
	if (req->op == KV_RANGE)
		return true;
	if (req->op == KV_TXN)
		return txn_readonly(req->u.txn);
	return false;
}

bool apply_req_serializable(const struct apply_req *req)
{
	return req->op == KV_RANGE && req->u.range.serializable;
}

int64_t apply_lease_id(const struct apply_req *req)
{
	return req->u.lease.id;
}

int64_t apply_lease_ttl(const struct apply_req *req)
{
	return req->u.lease.ttl;
}

/* ---- execution ---- */

json_t *apply_kv_json(const struct mvcc_kv *kv, bool keys_only)
{
	json_t *o = json_object();
	if (o == NULL)
		return NULL;
	json_object_set_new_nocheck(o, "key", jsonx_bytes(kv->key, kv->key_len));
	jsonx_set_i64_nz(o, "create_revision", kv->create_rev);
	jsonx_set_i64_nz(o, "mod_revision", kv->mod_rev);
	jsonx_set_i64_nz(o, "version", kv->version);
	if (!keys_only)
		jsonx_set_bytes_ne(o, "value", kv->value, kv->value_len);
	jsonx_set_i64_nz(o, "lease", kv->lease);
	return o;
}

static int exec_range(struct mvcc *m, const struct range_req *r, json_t *ans)
{
	struct mvcc_kvs kvs = {0};
	int64_t count = 0;
	bool more = false;
	int rv = mvcc_range(m, r->key, r->key_len, r->end, r->end_len, &r->opts, &kvs, &count,
			    &more);
	if (rv != 0)
		return rv;
	if (kvs.n > 0) {
		json_t *arr = json_array();
		for (size_t i = 0; i < kvs.n; i++)
			json_array_append_new(arr, apply_kv_json(&kvs.v[i], r->opts.keys_only));
		json_object_set_new_nocheck(ans, "kvs", arr);
	}
	jsonx_set_true(ans, "more", more);
	jsonx_set_i64_nz(ans, "count", count);
	mvcc_kvs_clear(&kvs);
	return CAP_OK;
}

/* apply_kv_json's object as text, member for member. */
static void kv_text(struct jsonx_out *o, const struct mvcc_kv *kv, bool keys_only)
{
	JSONX_OUT_LIT(o, "{\"key\":");
	jsonx_out_bytes(o, kv->key, kv->key_len);
	if (kv->create_rev != 0) {
		JSONX_OUT_LIT(o, ",\"create_revision\":");
		jsonx_out_i64(o, kv->create_rev);
	}
	if (kv->mod_rev != 0) {
		JSONX_OUT_LIT(o, ",\"mod_revision\":");
		jsonx_out_i64(o, kv->mod_rev);
	}
	if (kv->version != 0) {
		JSONX_OUT_LIT(o, ",\"version\":");
		jsonx_out_i64(o, kv->version);
	}
	if (!keys_only && kv->value_len > 0) {
		JSONX_OUT_LIT(o, ",\"value\":");
		jsonx_out_bytes(o, kv->value, kv->value_len);
	}
	if (kv->lease != 0) {
		JSONX_OUT_LIT(o, ",\"lease\":");
		jsonx_out_i64(o, kv->lease);
	}
	JSONX_OUT_LIT(o, "}");
}

struct range_text {
	struct jsonx_out *out;
	bool keys_only;
	size_t n;
};

static int range_text_kv(void *arg, const struct mvcc_kv *kv)
{
	struct range_text *rt = arg;
	if (rt->n++ == 0)
		JSONX_OUT_LIT(rt->out, ",\"kvs\":[");
	else
		JSONX_OUT_LIT(rt->out, ",");
	kv_text(rt->out, kv, rt->keys_only);
	return rt->out->failed ? CAP_ENOMEM : CAP_OK;
}

int apply_range_text(struct mvcc *m, const struct apply_req *req, struct jsonx_out *out,
		     int64_t *rev)
{
	const struct range_req *r = &req->u.range;
	struct range_text rt = {.out = out, .keys_only = r->opts.keys_only};
	int64_t count = 0;
	bool more = false;
	int rv;

	if (req->op != KV_RANGE)
		return CAP_EINVAL;
	/* As apply_exec: a range is an etcd txn that writes nothing. The rows
	 * go from the database to the text without copies. */
	mvcc_txn_begin(m);
	rv = mvcc_range_each(m, r->key, r->key_len, r->end, r->end_len, &r->opts, range_text_kv,
			     &rt, &count, &more);
	*rev = mvcc_txn_end(m);
	if (rv != 0)
		return rv;
	if (rt.n > 0)
		JSONX_OUT_LIT(out, "]");
	if (more)
		JSONX_OUT_LIT(out, ",\"more\":true");
	if (count != 0) {
		JSONX_OUT_LIT(out, ",\"count\":");
		jsonx_out_i64(out, count);
	}
	return out->failed ? CAP_ENOMEM : CAP_OK;
}

static int events_push(struct mvcc_events *evs, struct mvcc_event *ev)
{
	if (evs->n == evs->cap) {
		size_t cap = evs->cap ? evs->cap * 2 : 16;
		struct mvcc_event *v = realloc(evs->v, cap * sizeof *v);
		if (v == NULL)
			return CAP_ENOMEM;
		evs->v = v;
		evs->cap = cap;
	}
	evs->v[evs->n++] = *ev;
	return CAP_OK;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n + 1);
	if (d == NULL)
		return NULL;
	if (n)
		memcpy(d, p, n);
	d[n] = 0;
	return d;
}

/* Pre-checks of a put that etcd makes before any write of the request. */
static int check_put(struct mvcc *m, const struct put_req *p)
{
	int64_t ttl;
	int rv;
	if (p->lease != 0 && (rv = mvcc_lease_get(m, p->lease, &ttl)) != 0)
		return rv;
	if (p->ignore_value || p->ignore_lease) {
		struct mvcc_kvs kvs = {0};
		struct mvcc_range_opts o = {.keys_only = true};
		int64_t count = 0;
		bool more;
		rv = mvcc_range(m, p->key, p->key_len, NULL, 0, &o, &kvs, &count, &more);
		mvcc_kvs_clear(&kvs);
		if (rv != 0)
			return rv;
		if (count == 0)
			return CAP_EKEYNOTFOUND;
	}
	return CAP_OK;
}

static int exec_put(struct mvcc *m, const struct put_req *p, json_t *ans,
		    struct mvcc_events *evs)
{
	struct mvcc_kv prev = {0}, cur = {0};
	const uint8_t *value = p->value;
	size_t value_len = p->value_len;
	int64_t lease = p->lease;
	struct mvcc_event ev = {0};
	struct mvcc_kvs kvs = {0};
	int rv;

	if (p->ignore_value || p->ignore_lease) {
		/* The previous version supplies what the request leaves out. */
		struct mvcc_range_opts o = {0};
		int64_t count;
		bool more;
		rv = mvcc_range(m, p->key, p->key_len, NULL, 0, &o, &kvs, &count, &more);
		if (rv != 0)
			return rv;
		if (kvs.n == 0) {
			mvcc_kvs_clear(&kvs);
			return CAP_EKEYNOTFOUND;
		}
		if (p->ignore_value) {
			/* Keep ownership in kvs until the put is done. */
			value = kvs.v[0].value;
			value_len = kvs.v[0].value_len;
		}
		if (p->ignore_lease)
			lease = kvs.v[0].lease;
	}
	/* The previous version is read only for a reader, the answer or a
	 * watcher, and its value only for one that asked for prev_kv. */
	if (!p->prev_kv && evs->skip)
		rv = mvcc_put(m, p->key, p->key_len, value, value_len, lease, NULL, &cur);
	else if (p->prev_kv || !evs->skip_prev_values)
		rv = mvcc_put(m, p->key, p->key_len, value, value_len, lease, &prev, &cur);
	else
		rv = mvcc_put_prev_meta(m, p->key, p->key_len, value, value_len, lease, &prev, &cur);
	if (rv == 0 && !evs->skip) {
		ev.kv.value = dup_bytes(value, value_len);
		ev.kv.value_len = value_len;
	}
	mvcc_kvs_clear(&kvs);
	if (rv != 0) {
		mvcc_kv_clear(&prev);
		free(ev.kv.value);
		return rv;
	}
	if (p->prev_kv && prev.mod_rev != 0)
		json_object_set_new_nocheck(ans, "prev_kv", apply_kv_json(&prev, false));
	if (evs->skip) {
		mvcc_kv_clear(&prev);
		return CAP_OK;
	}
	ev.type = MVCC_EVENT_PUT;
	ev.kv.key = dup_bytes(p->key, p->key_len);
	ev.kv.key_len = p->key_len;
	ev.kv.create_rev = cur.create_rev;
	ev.kv.mod_rev = cur.mod_rev;
	ev.kv.version = cur.version;
	ev.kv.lease = cur.lease;
	ev.prev = prev;
	if (ev.kv.key == NULL || events_push(evs, &ev) != 0) {
		mvcc_kv_clear(&ev.kv);
		mvcc_kv_clear(&ev.prev);
		return CAP_ENOMEM;
	}
	return CAP_OK;
}

/* Records the deletions of prevs as DELETE events; takes ownership of prevs'
 * entries. */
static int push_deletes(struct mvcc_events *evs, struct mvcc_kvs *prevs, int64_t rev)
{
	int rv = CAP_OK;
	if (evs->skip)
		return CAP_OK;
	for (size_t i = 0; i < prevs->n; i++) {
		struct mvcc_event ev = {0};
		ev.type = MVCC_EVENT_DELETE;
		ev.kv.key = dup_bytes(prevs->v[i].key, prevs->v[i].key_len);
		ev.kv.key_len = prevs->v[i].key_len;
		ev.kv.mod_rev = rev;
		ev.prev = prevs->v[i];
		memset(&prevs->v[i], 0, sizeof prevs->v[i]);
		if (rv == 0 && ev.kv.key != NULL && events_push(evs, &ev) == 0)
			continue;
		rv = CAP_ENOMEM;
		mvcc_kv_clear(&ev.kv);
		mvcc_kv_clear(&ev.prev);
	}
	return rv;
}

static int exec_delete(struct mvcc *m, const struct delete_req *d, json_t *ans,
		       struct mvcc_events *evs)
{
	struct mvcc_kvs prevs = {0};
	int64_t deleted = 0;
	int rv = mvcc_delete_range(m, d->key, d->key_len, d->end, d->end_len, &prevs, &deleted);
	if (rv != 0) {
		mvcc_kvs_clear(&prevs);
		return rv;
	}
	jsonx_set_i64_nz(ans, "deleted", deleted);
	if (d->prev_kv && prevs.n > 0) {
		json_t *arr = json_array();
		for (size_t i = 0; i < prevs.n; i++)
			json_array_append_new(arr, apply_kv_json(&prevs.v[i], false));
		json_object_set_new_nocheck(ans, "prev_kvs", arr);
	}
	rv = push_deletes(evs, &prevs, mvcc_txn_rev(m));
	mvcc_kvs_clear(&prevs);
	return rv;
}

static int cmp_i64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b ? 1 : 0;
}

static bool compare_kv(const struct compare *c, const struct mvcc_kv *kv)
{
	int r;
	switch (c->target) {
	case CMP_VALUE:
		r = bytes_cmp(kv->value, kv->value_len, c->value, c->value_len);
		break;
	case CMP_VERSION:
		r = cmp_i64(kv->version, c->number);
		break;
	case CMP_CREATE:
		r = cmp_i64(kv->create_rev, c->number);
		break;
	case CMP_MOD:
		r = cmp_i64(kv->mod_rev, c->number);
		break;
	default:
		r = cmp_i64(kv->lease, c->number);
		break;
	}
	switch (c->result) {
	case CMP_EQUAL:
		return r == 0;
	case CMP_GREATER:
		return r > 0;
	case CMP_LESS:
		return r < 0;
	default:
		return r != 0;
	}
}

static int eval_compare(struct mvcc *m, const struct compare *c, bool *ok)
{
	struct mvcc_kvs kvs = {0};
	struct mvcc_range_opts o = {0};
	int64_t count;
	bool more;
	int rv;
	/* etcd compares with the range end treated as "from key onwards" when it
	 * is given, and a missing key as a zero key-value (except for VALUE). */
	rv = mvcc_range(m, c->key, c->key_len, c->end, c->end_len, &o, &kvs, &count, &more);
	if (rv != 0)
		return rv;
	if (kvs.n == 0) {
		struct mvcc_kv zero = {0};
		*ok = c->target == CMP_VALUE ? false : compare_kv(c, &zero);
	} else {
		*ok = true;
		for (size_t i = 0; i < kvs.n && *ok; i++)
			*ok = compare_kv(c, &kvs.v[i]);
	}
	mvcc_kvs_clear(&kvs);
	return CAP_OK;
}

/* The path a txn takes: one bool per txn (this one first, then nested ones in
 * execution order), all decided before any write, as etcd does. */
struct txn_path {
	bool *v;
	size_t n, cap;
};

static int path_push(struct txn_path *p, bool b)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		bool *v = realloc(p->v, cap * sizeof *v);
		if (v == NULL)
			return CAP_ENOMEM;
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = b;
	return CAP_OK;
}

static int plan_txn(struct mvcc *m, const struct txn_req *t, struct txn_path *path)
{
	bool ok = true;
	int rv;
	for (size_t i = 0; i < t->n_cmp && ok; i++)
		if ((rv = eval_compare(m, &t->cmp[i], &ok)) != 0)
			return rv;
	if ((rv = path_push(path, ok)) != 0)
		return rv;
	const struct op *ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;
	for (size_t i = 0; i < n; i++) {
		if (ops[i].type == OP_PUT && (rv = check_put(m, &ops[i].u.put)) != 0)
			return rv;
		if (ops[i].type == OP_RANGE && ops[i].u.range.opts.rev != 0) {
			/* A past-revision read inside a txn fails the whole txn. */
			int64_t rev = ops[i].u.range.opts.rev;
			if (rev > mvcc_rev(m))
				return CAP_EFUTUREREV;
			if (rev < mvcc_compact_rev(m))
				return CAP_ECOMPACTED;
		}
		if (ops[i].type == OP_TXN && (rv = plan_txn(m, ops[i].u.txn, path)) != 0)
			return rv;
	}
	return CAP_OK;
}

static int exec_txn(struct mvcc *m, const struct txn_req *t, const struct txn_path *path,
		    size_t *pos, json_t *ans, struct mvcc_events *evs)
{
	bool ok = path->v[(*pos)++];
	const struct op *ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;
	json_t *responses = json_array();
	int rv = CAP_OK;

	jsonx_set_true(ans, "succeeded", ok);
	for (size_t i = 0; i < n && rv == 0; i++) {
		json_t *sub = json_object();
		json_t *wrap = json_object();
		const char *name;
		switch (ops[i].type) {
		case OP_RANGE:
			name = "response_range";
			rv = exec_range(m, &ops[i].u.range, sub);
			break;
		case OP_PUT:
			name = "response_put";
			rv = exec_put(m, &ops[i].u.put, sub, evs);
			break;
		case OP_DELETE:
			name = "response_delete_range";
			rv = exec_delete(m, &ops[i].u.del, sub, evs);
			break;
		default:
			name = "response_txn";
			rv = exec_txn(m, ops[i].u.txn, path, pos, sub, evs);
			break;
		}
		/* Sub-answers carry a header with the revision only; nested txns an
		 * empty header, as etcd's gateway shows. */
		json_t *hdr = json_object();
		if (ops[i].type != OP_TXN)
			json_object_set_new_nocheck(hdr, "revision", jsonx_i64(mvcc_txn_rev(m)));
		json_object_set_new_nocheck(sub, "header", hdr);
		json_object_set_new_nocheck(wrap, name, sub);
		json_array_append_new(responses, wrap);
	}
	if (json_array_size(responses) > 0)
		json_object_set_new_nocheck(ans, "responses", responses);
	else
		json_decref(responses);
	return rv;
}

/* Sub-answers in a txn show the txn's revision: the pending one if the txn
 * writes, else the current one. Fix them once the txn's revision is known. */
static void fix_sub_revisions(json_t *ans, int64_t rev)
{
	json_t *responses = json_object_get(ans, "responses");
	size_t i;
	json_t *wrap;
	json_array_foreach(responses, i, wrap) {
		const char *k;
		json_t *sub;
		json_object_foreach(wrap, k, sub) {
			json_t *hdr = json_object_get(sub, "header");
			if (strcmp(k, "response_txn") == 0)
				fix_sub_revisions(sub, rev);
			else if (hdr != NULL)
				json_object_set_new_nocheck(hdr, "revision", jsonx_i64(rev));
		}
	}
}

int apply_exec(struct mvcc *m, const struct apply_req *req, json_t **answer,
	       struct mvcc_events *events, int64_t *rev, char *errmsg)
{
	json_t *ans = json_object();
	size_t events_before = events->n;
	int rv = CAP_OK;

	if (ans == NULL)
		return CAP_ENOMEM;
	mvcc_txn_begin(m);
	switch (req->op) {
	case KV_RANGE:
		rv = exec_range(m, &req->u.range, ans);
		break;
	case KV_PUT:
		rv = check_put(m, &req->u.put);
		if (rv == 0)
			rv = exec_put(m, &req->u.put, ans, events);
		break;
	case KV_DELETE_RANGE:
		rv = exec_delete(m, &req->u.del, ans, events);
		break;
	case KV_TXN: {
		struct txn_path path = {0};
		size_t pos = 0;
		rv = plan_txn(m, req->u.txn, &path);
		if (rv == 0)
			rv = exec_txn(m, req->u.txn, &path, &pos, ans, events);
		free(path.v);
		break;
	}
	case KV_COMPACT:
		rv = mvcc_compact(m, req->u.compact.rev);
		break;
	case KV_LEASE_GRANT:
		if (req->u.lease.id == 0) {
			/* The proposer picks an ID before the request enters the log. */
			cap_errmsg_printf(errmsg, "lease grant without an ID");
			rv = CAP_EINVAL;
			break;
		}
		rv = mvcc_lease_grant(m, req->u.lease.id, req->u.lease.ttl);
		if (rv == 0) {
			json_object_set_new_nocheck(ans, "ID", jsonx_i64(req->u.lease.id));
			json_object_set_new_nocheck(ans, "TTL", jsonx_i64(req->u.lease.ttl));
		}
		break;
	case KV_LEASE_REVOKE: {
		struct mvcc_kvs prevs = {0};
		rv = mvcc_lease_revoke(m, req->u.lease.id, &prevs);
		if (rv == 0)
			rv = push_deletes(events, &prevs, mvcc_txn_rev(m));
		mvcc_kvs_clear(&prevs);
		break;
	}
	default:
		rv = CAP_EINVAL;
		cap_errmsg_printf(errmsg, "operation not applicable");
	}
	*rev = mvcc_txn_end(m);
	if (rv != 0) {
		/* Checks precede writes, so a failure here wrote nothing but may
		 * have produced events for writes an error then cut short (an
		 * out-of-memory mid-txn): drop them; the caller rolls back. */
		while (events->n > events_before) {
			events->n--;
			mvcc_kv_clear(&events->v[events->n].kv);
			mvcc_kv_clear(&events->v[events->n].prev);
		}
		json_decref(ans);
		return rv;
	}
	if (req->op == KV_TXN)
		fix_sub_revisions(ans, *rev);
	*answer = ans;
	return CAP_OK;
}
