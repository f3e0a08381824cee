/* jsonx.c — see jsonx.h. Parsing follows Go's protobuf JSON rules as etcd's
 * gateway applies them: integers may be JSON numbers or decimal strings. */
#include "lib/jsonx.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/b64.h"
#include "lib/err.h"

int jsonx_get_bytes(json_t *obj, const char *name, uint8_t **out, size_t *len, char *errmsg)
{
	json_t *v = json_object_get(obj, name);
	const char *s;
	size_t n;

	if (v == NULL || json_is_null(v))
		return CAP_OK;
	if (!json_is_string(v)) {
		cap_errmsg_printf(errmsg, "json: cannot unmarshal %s into Go value of type []uint8 (field \"%s\")",
				  json_is_number(v) ? "number" : json_is_boolean(v) ? "bool" : json_is_array(v) ? "array" : "object",
				  name);
		return CAP_EINVAL;
	}
	s = json_string_value(v);
	n = json_string_length(v);
	int rv = jsonx_b64_field(s, n, out, len);
	if (rv != CAP_EINVAL)
		return rv;
	/* Refused: Go's message names the byte where the length or the
	 * alphabet went wrong (a NUL counts as one), else the field. */
	size_t at = strcspn(s, "-_");
	if (n % 4 != 0 || at != n)
		cap_errmsg_printf(errmsg, "illegal base64 data at input byte %zu",
				  n % 4 != 0 ? (n / 4) * 4 : at);
	else
		cap_errmsg_printf(errmsg, "illegal base64 data in field \"%s\"", name);
	return rv;
}

int jsonx_b64_field(const char *s, size_t n, uint8_t **out, size_t *len)
{
	uint8_t *buf;
	long got;

	/* Go's encoding/json decodes []byte with the padded standard alphabet
	 * only: etcd refuses the URL-safe and unpadded forms, and so do we. */
	if (n % 4 != 0 || memchr(s, '-', n) != NULL || memchr(s, '_', n) != NULL)
		return CAP_EINVAL;
	buf = malloc(b64_decoded_max(n) + 1);
	if (buf == NULL)
		return CAP_ENOMEM;
	got = b64_decode(s, n, buf);
	if (got < 0) {
		free(buf);
		return CAP_EINVAL;
	}
	buf[got] = 0;
	free(*out);
	*out = buf;
	*len = (size_t)got;
	return CAP_OK;
}

static int parse_int_string(const char *s, bool is_signed, int64_t *sv, uint64_t *uv)
{
	char *end;
	errno = 0;
	if (*s == '\0' || *s == ' ' || *s == '+')
		return -1;
	if (is_signed)
		*sv = strtoll(s, &end, 10);
	else {
		if (*s == '-')
			return -1;
		*uv = strtoull(s, &end, 10);
	}
	if (errno != 0 || *end != '\0')
		return -1;
	return 0;
}

static int get_int(json_t *obj, const char *name, bool is_signed, int64_t *sv, uint64_t *uv,
		   char *errmsg)
{
	json_t *v = json_object_get(obj, name);
	if (v == NULL || json_is_null(v))
		return CAP_OK;
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (!is_signed && i < 0)
			goto bad;
		if (is_signed)
			*sv = i;
		else
			*uv = (uint64_t)i;
		return CAP_OK;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		/* Go accepts 1e3 but not 1.5 for an integer field, nor a number
		 * out of the field's range (converting one would be undefined). */
		if (is_signed) {
			if (!(d >= -0x1p63 && d < 0x1p63) || d != (double)(int64_t)d)
				goto bad;
			*sv = (int64_t)d;
		} else {
			if (!(d >= 0 && d < 0x1p64) || d != (double)(uint64_t)d)
				goto bad;
			*uv = (uint64_t)d;
		}
		return CAP_OK;
	}
	if (json_is_string(v)) {
		int64_t s64 = 0;
		uint64_t u64 = 0;
		if (parse_int_string(json_string_value(v), is_signed, &s64, &u64) != 0)
			goto bad;
		if (is_signed)
			*sv = s64;
		else
			*uv = u64;
		return CAP_OK;
	}
bad:
	cap_errmsg_printf(errmsg, "json: invalid value for %s field \"%s\"",
			  is_signed ? "int64" : "uint64", name);
	return CAP_EINVAL;
}

int jsonx_get_i64(json_t *obj, const char *name, int64_t *out, char *errmsg)
{
	uint64_t unused;
	return get_int(obj, name, true, out, &unused, errmsg);
}

int jsonx_get_u64(json_t *obj, const char *name, uint64_t *out, char *errmsg)
{
	int64_t unused;
	return get_int(obj, name, false, &unused, out, errmsg);
}

int jsonx_get_bool(json_t *obj, const char *name, bool *out, char *errmsg)
{
	json_t *v = json_object_get(obj, name);
	if (v == NULL || json_is_null(v))
		return CAP_OK;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return CAP_OK;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
			*out = s[0] == 't';
			return CAP_OK;
		}
	}
	cap_errmsg_printf(errmsg, "json: invalid value for bool field \"%s\"", name);
	return CAP_EINVAL;
}

int jsonx_get_enum(json_t *obj, const char *name, const char *const names[], int *out,
		   char *errmsg)
{
	json_t *v = json_object_get(obj, name);
	int n = 0;
	while (names[n] != NULL)
		n++;
	if (v == NULL || json_is_null(v))
		return CAP_OK;
	if (json_is_string(v)) {
		for (int i = 0; i < n; i++) {
			if (strcmp(json_string_value(v), names[i]) == 0) {
				*out = i;
				return CAP_OK;
			}
		}
	} else if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i >= 0 && i < n) {
			*out = (int)i;
			return CAP_OK;
		}
	}
	cap_errmsg_printf(errmsg, "json: invalid value for enum field \"%s\"", name);
	return CAP_EINVAL;
}

int jsonx_get_object(json_t *obj, const char *name, json_t **out, char *errmsg)
{
	json_t *v = json_object_get(obj, name);
	if (v == NULL || json_is_null(v))
		return CAP_OK;
	if (!json_is_object(v)) {
		cap_errmsg_printf(errmsg, "json: field \"%s\" must be an object", name);
		return CAP_EINVAL;
	}
	*out = v;
	return CAP_OK;
}

int jsonx_get_array(json_t *obj, const char *name, json_t **out, char *errmsg)
{
	json_t *v = json_object_get(obj, name);
	if (v == NULL || json_is_null(v))
		return CAP_OK;
	if (!json_is_array(v)) {
		cap_errmsg_printf(errmsg, "json: field \"%s\" must be an array", name);
		return CAP_EINVAL;
	}
	*out = v;
	return CAP_OK;
}

/* Decimal digits of v, written backwards from end; returns the start. */
static char *u64_digits(uint64_t v, char *end)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return end;
}

json_t *jsonx_i64(int64_t v)
{
	char buf[24];
	char *end = buf + sizeof buf;
	char *p = u64_digits(v < 0 ? 0 - (uint64_t)v : (uint64_t)v, end);
	if (v < 0)
		*--p = '-';
	return json_stringn_nocheck(p, (size_t)(end - p));
}

json_t *jsonx_u64(uint64_t v)
{
	char buf[24];
	char *end = buf + sizeof buf;
	char *p = u64_digits(v, end);
	return json_stringn_nocheck(p, (size_t)(end - p));
}

json_t *jsonx_bytes(const uint8_t *p, size_t n)
{
	char stackbuf[256];
	size_t need = b64_encoded_size(n);
	char *buf = need <= sizeof stackbuf ? stackbuf : malloc(need);
	json_t *s;
	if (buf == NULL)
		return NULL;
	size_t len = b64_encode(p, n, buf);
	s = json_stringn_nocheck(buf, len);
	if (buf != stackbuf)
		free(buf);
	return s;
}

void jsonx_set_i64_nz(json_t *obj, const char *name, int64_t v)
{
	if (v != 0)
		json_object_set_new_nocheck(obj, name, jsonx_i64(v));
}

void jsonx_set_true(json_t *obj, const char *name, bool v)
{
	if (v)
		json_object_set_new_nocheck(obj, name, json_true());
}

void jsonx_set_bytes_ne(json_t *obj, const char *name, const uint8_t *p, size_t n)
{
	if (n > 0)
		json_object_set_new_nocheck(obj, name, jsonx_bytes(p, n));
}

/* ---- compact text ---- */

static bool dbuf_reserve(struct jsonx_out *b, size_t more)
{
	size_t cap;
	char *p;
	if (b->failed)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->failed = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void dbuf_put(struct jsonx_out *b, const char *s, size_t n)
{
	if (!dbuf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void dbuf_ch(struct jsonx_out *b, char c)
{
	if (dbuf_reserve(b, 1))
		b->p[b->len++] = c;
}

/* A value jansson itself must write (non-ASCII strings, whose UTF-8 it
 * validates, and reals, whose formatting is its own). */
static void dump_by_jansson(struct jsonx_out *b, const json_t *v)
{
	char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (t == NULL) {
		b->failed = true;
		return;
	}
	dbuf_put(b, t, strlen(t));
	free(t);
}

/* Whether s[0..n) needs no escape and is ASCII, eight bytes at a time
 * (base64 values are most of what is written): a byte below 0x20, a quote,
 * a backslash or a high bit anywhere says no. */
static bool plain_ascii(const char *s, size_t n)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t x, q, bs;
		memcpy(&x, s + i, 8);
		q = x ^ (ones * '"');
		bs = x ^ (ones * '\\');
		if ((((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs) | x) & highs)
			return false;
	}
	for (; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
			return false;
	}
	return true;
}

static void dump_string(struct jsonx_out *b, const char *s, size_t n, const json_t *v)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, run = 0;

	if (plain_ascii(s, n)) {
		if (!dbuf_reserve(b, n + 2))
			return;
		b->p[b->len++] = '"';
		memcpy(b->p + b->len, s, n);
		b->len += n;
		b->p[b->len++] = '"';
		return;
	}
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80) {
			if (v != NULL) {
				dump_by_jansson(b, v);
			} else {
				json_t *t = json_stringn(s, n);
				if (t == NULL)
					b->failed = true;
				else
					dump_by_jansson(b, t);
				json_decref(t);
			}
			return;
		}
	if (!dbuf_reserve(b, n + 2))
		return;
	b->p[b->len++] = '"';
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		char u[6];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		dbuf_put(b, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		default:
			memcpy(u, "\\u00", 4);
			u[4] = hex[c >> 4];
			u[5] = hex[c & 15];
			dbuf_put(b, u, 6);
			continue;
		}
		dbuf_put(b, esc, 2);
	}
	dbuf_put(b, s + run, n - run);
	dbuf_ch(b, '"');
}

static void dump_value(struct jsonx_out *b, const json_t *v, int depth)
{
	char num[32];
	int n;

	if (b->failed)
		return;
	if (depth > 2048) {
		/* jansson refuses deeper nesting too */
		b->failed = true;
		return;
	}
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *key;
		json_t *m;
		bool first = true;
		dbuf_ch(b, '{');
		json_object_foreach((json_t *)(uintptr_t)v, key, m) {
			if (!first)
				dbuf_ch(b, ',');
			first = false;
			dump_string(b, key, strlen(key), NULL);
			dbuf_ch(b, ':');
			dump_value(b, m, depth + 1);
		}
		dbuf_ch(b, '}');
		break;
	}
	case JSON_ARRAY:
		dbuf_ch(b, '[');
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (i > 0)
				dbuf_ch(b, ',');
			dump_value(b, json_array_get(v, i), depth + 1);
		}
		dbuf_ch(b, ']');
		break;
	case JSON_STRING:
		dump_string(b, json_string_value(v), json_string_length(v), v);
		break;
	case JSON_INTEGER:
		n = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		dbuf_put(b, num, (size_t)n);
		break;
	case JSON_REAL:
		dump_by_jansson(b, v);
		break;
	case JSON_TRUE:
		dbuf_put(b, "true", 4);
		break;
	case JSON_FALSE:
		dbuf_put(b, "false", 5);
		break;
	case JSON_NULL:
		dbuf_put(b, "null", 4);
		break;
	}
}

/* ---- writing answers without a tree ---- */

void jsonx_out_raw(struct jsonx_out *o, const char *s, size_t n)
{
	dbuf_put(o, s, n);
}

void jsonx_out_bytes(struct jsonx_out *o, const uint8_t *p, size_t n)
{
	/* b64_encoded_size counts a NUL, which dbuf_reserve's spare byte
	 * also covers: the quotes and the text fit in what is reserved. */
	if (!dbuf_reserve(o, b64_encoded_size(n) + 2))
		return;
	o->p[o->len++] = '"';
	o->len += b64_encode(p, n, o->p + o->len);
	o->p[o->len++] = '"';
}

void jsonx_out_i64(struct jsonx_out *o, int64_t v)
{
	char buf[24];
	char *end = buf + sizeof buf - 1;
	char *p;
	*end = '"';
	p = u64_digits(v < 0 ? 0 - (uint64_t)v : (uint64_t)v, end);
	if (v < 0)
		*--p = '-';
	*--p = '"';
	dbuf_put(o, p, (size_t)(end + 1 - p));
}

void jsonx_out_u64(struct jsonx_out *o, uint64_t v)
{
	char buf[24];
	char *end = buf + sizeof buf - 1;
	char *p;
	*end = '"';
	p = u64_digits(v, end);
	*--p = '"';
	dbuf_put(o, p, (size_t)(end + 1 - p));
}

void jsonx_out_free(struct jsonx_out *o)
{
	free(o->p);
	o->p = NULL;
	o->len = o->cap = 0;
	o->failed = false;
}

char *jsonx_dumps(const json_t *v, size_t *len)
{
	struct jsonx_out b = {0};
	if (v == NULL)
		return NULL;
	dump_value(&b, v, 0);
	if (!dbuf_reserve(&b, 0)) {
		free(b.p);
		return NULL;
	}
	b.p[b.len] = '\0';
	if (len != NULL)
		*len = b.len;
	return b.p;
}

/* ---- quick parse ---- */

struct qp {
	const char *p, *end;
	int depth;
};

static void qp_ws(struct qp *q)
{
	while (q->p < q->end && (*q->p == ' ' || *q->p == '\n' || *q->p == '\r' || *q->p == '\t'))
		q->p++;
}

/* Byte-wise masks, eight bytes at a time: the high bit of each byte of the
 * result is set where the byte is below 0x20, above 0x7e, '"' or '\\'.
 * A put's value is hundreds of base64 characters, and this scan was the
 * biggest part of parsing its request. */
#define QP_ONES 0x0101010101010101ull
#define QP_HIGHS 0x8080808080808080ull

static uint64_t qp_special(uint64_t x)
{
	uint64_t below = (x - QP_ONES * 0x20) & ~x;            /* < 0x20 (or >= 0x80) */
	uint64_t above = (x + QP_ONES * (0x7f - 0x7e)) | x;    /* > 0x7e */
	uint64_t q = x ^ (QP_ONES * '"'), b = x ^ (QP_ONES * '\\');
	uint64_t quote = (q - QP_ONES) & ~q, bslash = (b - QP_ONES) & ~b;
	return (below | above | quote | bslash) & QP_HIGHS;
}

/* A string without escapes or bytes outside printable ASCII; false sends
 * the whole input to jansson. */
static bool qp_string(struct qp *q, const char **s, size_t *n)
{
	const char *p = q->p + 1;
	if (q->p >= q->end || *q->p != '"')
		return false;
	/* Whole words of plain characters; the word with anything else in it,
	 * and the tail, go through the byte loop below. */
	while (q->end - p >= 8) {
		uint64_t x;
		memcpy(&x, p, 8);
		if (qp_special(x) != 0)
			break;
		p += 8;
	}
	while (p < q->end && *p != '"') {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c > 0x7e || c == '\\')
			return false;
		p++;
	}
	if (p >= q->end)
		return false;
	*s = q->p + 1;
	*n = (size_t)(p - *s);
	q->p = p + 1;
	return true;
}

/* Integers of up to 18 digits; reals, leading zeros and anything longer
 * are jansson's (false). */
static bool qp_int(struct qp *q, int64_t *out)
{
	const char *p = q->p;
	bool neg = false;
	int64_t x = 0;
	int digits = 0;
	if (p < q->end && *p == '-') {
		neg = true;
		p++;
	}
	while (p < q->end && *p >= '0' && *p <= '9' && digits < 18) {
		x = x * 10 + (*p++ - '0');
		digits++;
	}
	if (digits == 0 || (digits > 1 && p[-digits] == '0'))
		return false;
	if (p < q->end && (*p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9')))
		return false;
	q->p = p;
	*out = neg ? -x : x;
	return true;
}

static bool qp_lit(struct qp *q, const char *lit, size_t n);
static json_t *qp_value(struct qp *q);

static json_t *qp_object(struct qp *q)
{
	json_t *o = json_object();
	if (o == NULL)
		return NULL;
	q->p++;
	qp_ws(q);
	if (q->p < q->end && *q->p == '}') {
		q->p++;
		return o;
	}
	for (;;) {
		const char *k;
		size_t kn;
		json_t *v;
		qp_ws(q);
		if (!qp_string(q, &k, &kn))
			goto bail;
		qp_ws(q);
		if (q->p >= q->end || *q->p != ':')
			goto bail;
		q->p++;
		qp_ws(q);
		v = qp_value(q);
		if (v == NULL || json_object_setn_new_nocheck(o, k, kn, v) != 0)
			goto bail;
		qp_ws(q);
		if (q->p < q->end && *q->p == ',') {
			q->p++;
			continue;
		}
		if (q->p < q->end && *q->p == '}') {
			q->p++;
			return o;
		}
		goto bail;
	}
bail:
	json_decref(o);
	return NULL;
}

static json_t *qp_array(struct qp *q)
{
	json_t *a = json_array();
	if (a == NULL)
		return NULL;
	q->p++;
	qp_ws(q);
	if (q->p < q->end && *q->p == ']') {
		q->p++;
		return a;
	}
	for (;;) {
		json_t *v;
		qp_ws(q);
		v = qp_value(q);
		if (v == NULL || json_array_append_new(a, v) != 0)
			goto bail;
		qp_ws(q);
		if (q->p < q->end && *q->p == ',') {
			q->p++;
			continue;
		}
		if (q->p < q->end && *q->p == ']') {
			q->p++;
			return a;
		}
		goto bail;
	}
bail:
	json_decref(a);
	return NULL;
}

static bool qp_lit(struct qp *q, const char *lit, size_t n)
{
	if ((size_t)(q->end - q->p) < n || memcmp(q->p, lit, n) != 0)
		return false;
	q->p += n;
	return true;
}

static json_t *qp_value(struct qp *q)
{
	json_t *v = NULL;
	if (q->p >= q->end || ++q->depth > 64)
		return NULL;
	switch (*q->p) {
	case '{':
		v = qp_object(q);
		break;
	case '[':
		v = qp_array(q);
		break;
	case '"': {
		const char *s;
		size_t n;
		if (qp_string(q, &s, &n))
			v = json_stringn_nocheck(s, n);
		break;
	}
	case 't':
		v = qp_lit(q, "true", 4) ? json_true() : NULL;
		break;
	case 'f':
		v = qp_lit(q, "false", 5) ? json_false() : NULL;
		break;
	case 'n':
		v = qp_lit(q, "null", 4) ? json_null() : NULL;
		break;
	default: {
		int64_t x;
		if (qp_int(q, &x))
			v = json_integer(x);
		break;
	}
	}
	q->depth--;
	return v;
}

json_t *jsonx_loadb(const char *buf, size_t len, size_t flags, json_error_t *err)
{
	if ((flags & ~(size_t)JSON_DECODE_ANY) == 0) {
		struct qp q = {buf, buf + len, 0};
		json_t *v;
		qp_ws(&q);
		if (q.p < q.end && *q.p == '{' && (v = qp_object(&q)) != NULL) {
			qp_ws(&q);
			if (q.p == q.end)
				return v;
			json_decref(v);
		}
	}
	return json_loadb(buf, len, flags, err);
}

/* ---- flat objects, member by member ---- */

void jsonx_flat_begin(struct jsonx_flat *f, const char *buf, size_t len)
{
	f->p = buf;
	f->end = buf + len;
	f->started = false;
}

int jsonx_flat_next(struct jsonx_flat *f, struct jsonx_member *m)
{
	struct qp q = {f->p, f->end, 0};

	qp_ws(&q);
	if (!f->started) {
		if (q.p >= q.end || *q.p != '{')
			return -1;
		q.p++;
		qp_ws(&q);
		f->started = true;
		if (q.p < q.end && *q.p == '}')
			goto end;
	} else if (q.p < q.end && *q.p == ',') {
		q.p++;
		qp_ws(&q);
	} else if (q.p < q.end && *q.p == '}') {
		goto end;
	} else {
		return -1;
	}
	if (!qp_string(&q, &m->name, &m->name_len))
		return -1;
	qp_ws(&q);
	if (q.p >= q.end || *q.p != ':')
		return -1;
	q.p++;
	qp_ws(&q);
	if (q.p >= q.end)
		return -1;
	switch (*q.p) {
	case '"':
		if (!qp_string(&q, &m->str, &m->str_len))
			return -1;
		m->type = JSONX_FLAT_STRING;
		break;
	case 't':
		if (!qp_lit(&q, "true", 4))
			return -1;
		m->type = JSONX_FLAT_TRUE;
		break;
	case 'f':
		if (!qp_lit(&q, "false", 5))
			return -1;
		m->type = JSONX_FLAT_FALSE;
		break;
	default:
		if (!qp_int(&q, &m->num))
			return -1;
		m->type = JSONX_FLAT_INT;
		break;
	}
	f->p = q.p;
	return 1;
end:
	q.p++;
	qp_ws(&q);
	f->p = q.p;
	return q.p == q.end ? 0 : -1;
}
