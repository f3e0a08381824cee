/* selector.c — parsing and matching of Kubernetes label and field selectors,
 * following k8s.io/apimachinery's labels and fields packages. */
#include "orchestrator/api/selector.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "orchestrator/api/validate.h"

enum lop { OP_EXISTS, OP_NOT_EXISTS, OP_EQ, OP_NE, OP_IN, OP_NOTIN, OP_GT, OP_LT };

struct lreq {
	char *key;
	enum lop op;
	char **vals; /* sorted, for String() and printing */
	size_t nvals;
};

struct label_selector {
	struct lreq *reqs; /* sorted by key, as Kubernetes keeps them */
	size_t n;
};

static void lreq_clear(struct lreq *r)
{
	free(r->key);
	for (size_t i = 0; i < r->nvals; i++)
		free(r->vals[i]);
	free(r->vals);
}

void label_selector_free(struct label_selector *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		lreq_clear(&s->reqs[i]);
	free(s->reqs);
	free(s);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_req(const void *a, const void *b)
{
	return strcmp(((const struct lreq *)a)->key, ((const struct lreq *)b)->key);
}

static int add_value(struct lreq *r, const char *v, size_t n)
{
	/* A set: a repeated value is kept once. */
	for (size_t i = 0; i < r->nvals; i++)
		if (strlen(r->vals[i]) == n && memcmp(r->vals[i], v, n) == 0)
			return CAP_OK;
	char **vals = realloc(r->vals, (r->nvals + 1) * sizeof(*vals));
	if (vals == NULL)
		return CAP_ENOMEM;
	r->vals = vals;
	r->vals[r->nvals] = strndup(v, n);
	if (r->vals[r->nvals] == NULL)
		return CAP_ENOMEM;
	r->nvals++;
	return CAP_OK;
}

/* Checks a finished requirement as labels.NewRequirement does, then adds it
 * to s (taking ownership of r's memory, which is released on error). */
static int add_req(struct label_selector *s, struct lreq *r, char *errmsg)
{
	const char *m = validate_qualified_name(r->key);

	if (m != NULL) {
		cap_errmsg_printf(errmsg, "key: Invalid value: \"%s\": %s", r->key, m);
		goto err;
	}
	switch (r->op) {
	case OP_IN:
	case OP_NOTIN:
		if (r->nvals == 0) {
			cap_errmsg_printf(errmsg, "values: Invalid value: []string{}: for 'in', "
						  "'notin' operators, values set can't be empty");
			goto err;
		}
		break;
	case OP_EQ:
	case OP_NE:
		if (r->nvals != 1) {
			cap_errmsg_printf(errmsg, "values: Invalid value: exact-match compatibility "
						  "requires one single value");
			goto err;
		}
		break;
	case OP_GT:
	case OP_LT: {
		char *end;
		if (r->nvals != 1) {
			cap_errmsg_printf(errmsg, "values: Invalid value: for 'Gt', 'Lt' operators, "
						  "exactly one value is required");
			goto err;
		}
		errno = 0;
		(void)strtoll(r->vals[0], &end, 10);
		if (r->vals[0][0] == '\0' || *end != '\0' || errno != 0) {
			cap_errmsg_printf(errmsg, "values[0]: Invalid value: \"%s\": for 'Gt', 'Lt' "
						  "operators, the value must be an integer", r->vals[0]);
			goto err;
		}
		break;
	}
	default:
		if (r->nvals != 0) {
			cap_errmsg_printf(errmsg, "values: Forbidden: values set must be empty for "
						  "exists and does not exist");
			goto err;
		}
	}
	for (size_t i = 0; i < r->nvals; i++) {
		m = validate_label_value(r->vals[i]);
		if (m != NULL) {
			cap_errmsg_printf(errmsg, "values[%zu][%s]: Invalid value: \"%s\": %s", i,
					  r->key, r->vals[i], m);
			goto err;
		}
	}
	if (r->nvals > 1)
		qsort(r->vals, r->nvals, sizeof(*r->vals), cmp_str);
	struct lreq *reqs = realloc(s->reqs, (s->n + 1) * sizeof(*reqs));
	if (reqs == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		lreq_clear(r);
		return CAP_ENOMEM;
	}
	s->reqs = reqs;
	s->reqs[s->n++] = *r;
	return CAP_OK;
err:
	lreq_clear(r);
	return CAP_EINVAL;
}

/* ---- the query syntax ---- */

enum tok { T_END, T_IDENT, T_COMMA, T_EQ, T_DEQ, T_NE, T_NOT, T_LPAREN, T_RPAREN, T_IN,
	   T_NOTIN, T_GT, T_LT };

struct lexer {
	const char *p;
	const char *tok;
	size_t toklen;
};

static bool special(char c)
{
	return c == ',' || c == '=' || c == '!' || c == '(' || c == ')' || c == '<' || c == '>';
}

static enum tok next_tok(struct lexer *lx)
{
	while (isspace((unsigned char)*lx->p))
		lx->p++;
	lx->tok = lx->p;
	if (*lx->p == '\0') {
		lx->toklen = 0;
		return T_END;
	}
	char c = *lx->p;
	if (special(c)) {
		lx->toklen = 1;
		lx->p++;
		if ((c == '=' || c == '!') && *lx->p == '=') {
			lx->toklen = 2;
			lx->p++;
			return c == '=' ? T_DEQ : T_NE;
		}
		switch (c) {
		case ',': return T_COMMA;
		case '=': return T_EQ;
		case '!': return T_NOT;
		case '(': return T_LPAREN;
		case ')': return T_RPAREN;
		case '<': return T_LT;
		default: return T_GT;
		}
	}
	while (*lx->p != '\0' && !special(*lx->p) && !isspace((unsigned char)*lx->p))
		lx->p++;
	lx->toklen = (size_t)(lx->p - lx->tok);
	if (lx->toklen == 2 && memcmp(lx->tok, "in", 2) == 0)
		return T_IN;
	if (lx->toklen == 5 && memcmp(lx->tok, "notin", 5) == 0)
		return T_NOTIN;
	return T_IDENT;
}

static void syntax_error(struct lexer *lx, const char *expected, char *errmsg)
{
	if (lx->toklen == 0)
		cap_errmsg_printf(errmsg, "found '', expected: %s", expected);
	else
		cap_errmsg_printf(errmsg, "found '%.*s', expected: %s", (int)lx->toklen, lx->tok,
				  expected);
}

/* values: '(' [ident {',' ident}] ')', where an empty entry is the value "". */
static int parse_set(struct lexer *lx, struct lreq *r, char *errmsg)
{
	enum tok t = next_tok(lx);

	if (t != T_LPAREN) {
		syntax_error(lx, "left parenthesis", errmsg);
		return CAP_EINVAL;
	}
	for (;;) {
		t = next_tok(lx);
		if (t == T_RPAREN && r->nvals == 0)
			return CAP_OK;
		if (t == T_IDENT || t == T_IN || t == T_NOTIN) {
			if (add_value(r, lx->tok, lx->toklen) != CAP_OK)
				return CAP_ENOMEM;
			t = next_tok(lx);
		} else if (add_value(r, "", 0) != CAP_OK) {
			return CAP_ENOMEM;
		}
		if (t == T_RPAREN)
			return CAP_OK;
		if (t != T_COMMA) {
			syntax_error(lx, "',' or ')'", errmsg);
			return CAP_EINVAL;
		}
	}
}

static int parse_requirement(struct lexer *lx, enum tok t, struct label_selector *s,
			     char *errmsg)
{
	struct lreq r = { 0 };
	int rv;

	if (t == T_NOT) {
		t = next_tok(lx);
		if (t != T_IDENT) {
			syntax_error(lx, "identifier", errmsg);
			return CAP_EINVAL;
		}
		r.key = strndup(lx->tok, lx->toklen);
		r.op = OP_NOT_EXISTS;
		if (r.key == NULL)
			return CAP_ENOMEM;
		return add_req(s, &r, errmsg);
	}
	if (t != T_IDENT) {
		syntax_error(lx, "!, identifier", errmsg);
		return CAP_EINVAL;
	}
	r.key = strndup(lx->tok, lx->toklen);
	if (r.key == NULL)
		return CAP_ENOMEM;
	const char *save = lx->p;
	t = next_tok(lx);
	switch (t) {
	case T_END:
	case T_COMMA:
		lx->p = save; /* the separator belongs to the caller */
		r.op = OP_EXISTS;
		return add_req(s, &r, errmsg);
	case T_EQ:
	case T_DEQ:
	case T_NE:
	case T_GT:
	case T_LT:
		r.op = t == T_NE ? OP_NE : t == T_GT ? OP_GT : t == T_LT ? OP_LT : OP_EQ;
		save = lx->p;
		t = next_tok(lx);
		if (t == T_IDENT || t == T_IN || t == T_NOTIN) {
			rv = add_value(&r, lx->tok, lx->toklen);
		} else if (t == T_END || t == T_COMMA) {
			lx->p = save; /* "a=" asks for the empty value */
			rv = add_value(&r, "", 0);
		} else {
			syntax_error(lx, "identifier", errmsg);
			rv = CAP_EINVAL;
		}
		break;
	case T_IN:
	case T_NOTIN:
		r.op = t == T_IN ? OP_IN : OP_NOTIN;
		rv = parse_set(lx, &r, errmsg);
		break;
	default:
		syntax_error(lx, "=, !=, ==, in, notin", errmsg);
		rv = CAP_EINVAL;
	}
	if (rv != CAP_OK) {
		lreq_clear(&r);
		return rv;
	}
	return add_req(s, &r, errmsg);
}

int label_selector_parse(const char *text, struct label_selector **out, char *errmsg)
{
	struct label_selector *s = calloc(1, sizeof(*s));
	struct lexer lx = { .p = text == NULL ? "" : text };
	enum tok t;
	int rv;

	if (s == NULL)
		return CAP_ENOMEM;
	t = next_tok(&lx);
	while (t != T_END) {
		rv = parse_requirement(&lx, t, s, errmsg);
		if (rv != CAP_OK)
			goto err;
		t = next_tok(&lx);
		if (t == T_END)
			break;
		if (t != T_COMMA) {
			syntax_error(&lx, "',' or 'end of string'", errmsg);
			rv = CAP_EINVAL;
			goto err;
		}
		t = next_tok(&lx);
		if (t == T_END) {
			syntax_error(&lx, "identifier", errmsg);
			rv = CAP_EINVAL;
			goto err;
		}
	}
	if (s->n > 1)
		qsort(s->reqs, s->n, sizeof(*s->reqs), cmp_req);
	*out = s;
	return CAP_OK;
err:
	if (rv == CAP_ENOMEM)
		cap_errmsg_printf(errmsg, "out of memory");
	cap_errmsg_wrapf(errmsg, "unable to parse requirement");
	label_selector_free(s);
	return rv;
}

int label_selector_from_json(json_t *sel, struct label_selector **out, char *errmsg)
{
	struct label_selector *s = calloc(1, sizeof(*s));
	json_t *ml, *me, *e;
	const char *k;
	size_t i;
	int rv = CAP_EINVAL;

	if (s == NULL)
		return CAP_ENOMEM;
	if (sel == NULL || json_is_null(sel))
		goto done;
	if (!json_is_object(sel)) {
		cap_errmsg_printf(errmsg, "selector: must be an object");
		goto err;
	}
	ml = json_object_get(sel, "matchLabels");
	if (ml != NULL && !json_is_null(ml)) {
		if (!json_is_object(ml)) {
			cap_errmsg_printf(errmsg, "matchLabels: must be an object");
			goto err;
		}
		json_object_foreach(ml, k, e) {
			struct lreq r = { .op = OP_EQ };
			if (!json_is_string(e)) {
				cap_errmsg_printf(errmsg, "matchLabels[%s]: must be a string", k);
				goto err;
			}
			r.key = strdup(k);
			if (r.key == NULL || add_value(&r, json_string_value(e),
						       json_string_length(e)) != CAP_OK) {
				lreq_clear(&r);
				rv = CAP_ENOMEM;
				goto err;
			}
			rv = add_req(s, &r, errmsg);
			if (rv != CAP_OK)
				goto err;
			rv = CAP_EINVAL;
		}
	}
	me = json_object_get(sel, "matchExpressions");
	if (me != NULL && !json_is_null(me)) {
		if (!json_is_array(me)) {
			cap_errmsg_printf(errmsg, "matchExpressions: must be an array");
			goto err;
		}
		json_array_foreach(me, i, e) {
			struct lreq r = { 0 };
			const char *key = json_string_value(json_object_get(e, "key"));
			const char *op = json_string_value(json_object_get(e, "operator"));
			json_t *vals = json_object_get(e, "values");
			json_t *v;
			size_t j;

			if (key == NULL || op == NULL) {
				cap_errmsg_printf(errmsg, "matchExpressions[%zu]: key and operator are "
							  "required", i);
				goto err;
			}
			if (strcmp(op, "In") == 0) {
				r.op = OP_IN;
			} else if (strcmp(op, "NotIn") == 0) {
				r.op = OP_NOTIN;
			} else if (strcmp(op, "Exists") == 0) {
				r.op = OP_EXISTS;
			} else if (strcmp(op, "DoesNotExist") == 0) {
				r.op = OP_NOT_EXISTS;
			} else {
				cap_errmsg_printf(errmsg, "\"%s\" is not a valid label selector operator",
						  op);
				goto err;
			}
			r.key = strdup(key);
			if (r.key == NULL) {
				rv = CAP_ENOMEM;
				goto err;
			}
			json_array_foreach(vals, j, v) {
				if (!json_is_string(v) ||
				    add_value(&r, json_string_value(v), json_string_length(v)) != CAP_OK) {
					cap_errmsg_printf(errmsg, "matchExpressions[%zu].values[%zu]: "
								  "must be a string", i, j);
					lreq_clear(&r);
					goto err;
				}
			}
			rv = add_req(s, &r, errmsg);
			if (rv != CAP_OK)
				goto err;
			rv = CAP_EINVAL;
		}
	}
done:
	if (s->n > 1)
		qsort(s->reqs, s->n, sizeof(*s->reqs), cmp_req);
	*out = s;
	return CAP_OK;
err:
	label_selector_free(s);
	return rv;
}

static bool has_value(const struct lreq *r, const char *v)
{
	for (size_t i = 0; i < r->nvals; i++)
		if (strcmp(r->vals[i], v) == 0)
			return true;
	return false;
}

bool label_selector_matches(const struct label_selector *s, json_t *labels)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct lreq *r = &s->reqs[i];
		json_t *jv = json_is_object(labels) ? json_object_get(labels, r->key) : NULL;
		const char *v = json_string_value(jv);
		bool ok;

		switch (r->op) {
		case OP_EXISTS:
			ok = jv != NULL;
			break;
		case OP_NOT_EXISTS:
			ok = jv == NULL;
			break;
		case OP_EQ:
		case OP_IN:
			ok = v != NULL && has_value(r, v);
			break;
		case OP_NE:
		case OP_NOTIN:
			ok = v == NULL || !has_value(r, v);
			break;
		default: {
			char *end;
			long long have, want = strtoll(r->vals[0], NULL, 10);
			if (v == NULL)
				return false;
			errno = 0;
			have = strtoll(v, &end, 10);
			if (*v == '\0' || *end != '\0' || errno != 0)
				return false;
			ok = r->op == OP_GT ? have > want : have < want;
		}
		}
		if (!ok)
			return false;
	}
	return true;
}

bool label_selector_empty(const struct label_selector *s)
{
	return s == NULL || s->n == 0;
}

/* Appends to a growing malloc'd string; false on allocation failure. */
static bool sappend(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t n = strlen(s);

	if (*len + n + 1 > *cap) {
		size_t c = *cap == 0 ? 64 : *cap;
		while (c < *len + n + 1)
			c *= 2;
		char *p = realloc(*buf, c);
		if (p == NULL)
			return false;
		*buf = p;
		*cap = c;
	}
	memcpy(*buf + *len, s, n + 1);
	*len += n;
	return true;
}

char *label_selector_string(const struct label_selector *s)
{
	static const char *const ops[] = { "", "!", "=", "!=", " in ", " notin ", ">", "<" };
	char *buf = NULL;
	size_t len = 0, cap = 0;
	bool ok = sappend(&buf, &len, &cap, "");

	for (size_t i = 0; ok && i < s->n; i++) {
		const struct lreq *r = &s->reqs[i];
		if (i > 0)
			ok = ok && sappend(&buf, &len, &cap, ",");
		if (r->op == OP_NOT_EXISTS)
			ok = ok && sappend(&buf, &len, &cap, "!");
		ok = ok && sappend(&buf, &len, &cap, r->key);
		if (r->op == OP_EXISTS || r->op == OP_NOT_EXISTS)
			continue;
		ok = ok && sappend(&buf, &len, &cap, ops[r->op]);
		if (r->op == OP_IN || r->op == OP_NOTIN) {
			ok = ok && sappend(&buf, &len, &cap, "(");
			for (size_t j = 0; j < r->nvals; j++) {
				if (j > 0)
					ok = ok && sappend(&buf, &len, &cap, ",");
				ok = ok && sappend(&buf, &len, &cap, r->vals[j]);
			}
			ok = ok && sappend(&buf, &len, &cap, ")");
		} else {
			ok = ok && sappend(&buf, &len, &cap, r->vals[0]);
		}
	}
	if (!ok) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- field selectors ---- */

struct freq {
	char *path;
	char *value;
	bool negate;
};

struct field_selector {
	struct freq *reqs;
	size_t n;
};

void field_selector_free(struct field_selector *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->reqs[i].path);
		free(s->reqs[i].value);
	}
	free(s->reqs);
	free(s);
}

/* Drops the backslashes of "\,", "\=" and "\\"; a lone backslash before
 * anything else is an error, as in fields.UnescapeValue. */
static char *unescape(const char *p, size_t n, char *errmsg)
{
	char *out = malloc(n + 1);
	size_t j = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\\') {
			if (i + 1 >= n || (p[i + 1] != ',' && p[i + 1] != '=' && p[i + 1] != '\\')) {
				cap_errmsg_printf(errmsg, "invalid field selector: invalid escape "
							  "sequence: %.*s", (int)n, p);
				free(out);
				return NULL;
			}
			i++;
		} else if (p[i] == ',' || p[i] == '=') {
			cap_errmsg_printf(errmsg, "invalid field selector: unescaped %c in %.*s",
					  p[i], (int)n, p);
			free(out);
			return NULL;
		}
		out[j++] = p[i];
	}
	out[j] = '\0';
	return out;
}

static int add_field_term(struct field_selector *s, const char *p, size_t n, char *errmsg)
{
	struct freq r = { 0 };
	size_t i, oplen = 0;

	for (i = 0; i < n; i++) {
		if (p[i] == '\\') {
			i++;
			continue;
		}
		if (i + 1 < n && (p[i] == '!' || p[i] == '=') && p[i + 1] == '=') {
			oplen = 2;
			r.negate = p[i] == '!';
			break;
		}
		if (p[i] == '=') {
			oplen = 1;
			break;
		}
	}
	if (oplen == 0) {
		cap_errmsg_printf(errmsg, "invalid selector: '%.*s'; can't understand '%.*s'", (int)n,
				  p, (int)n, p);
		return CAP_EINVAL;
	}
	r.path = strndup(p, i);
	while (r.path != NULL && r.path[0] != '\0' && isspace((unsigned char)r.path[strlen(r.path) - 1]))
		r.path[strlen(r.path) - 1] = '\0';
	r.value = unescape(p + i + oplen, n - i - oplen, errmsg);
	if (r.path == NULL || r.value == NULL)
		goto err;
	struct freq *reqs = realloc(s->reqs, (s->n + 1) * sizeof(*reqs));
	if (reqs == NULL)
		goto err;
	s->reqs = reqs;
	s->reqs[s->n++] = r;
	return CAP_OK;
err:
	free(r.path);
	free(r.value);
	return CAP_EINVAL;
}

int field_selector_parse(const char *text, struct field_selector **out, char *errmsg)
{
	struct field_selector *s = calloc(1, sizeof(*s));
	const char *p = text == NULL ? "" : text;
	size_t start = 0, i;

	if (s == NULL)
		return CAP_ENOMEM;
	if (*p != '\0') {
		for (i = 0;; i++) {
			if (p[i] == '\\' && p[i + 1] != '\0') {
				i++;
				continue;
			}
			if (p[i] == ',' || p[i] == '\0') {
				if (add_field_term(s, p + start, i - start, errmsg) != CAP_OK) {
					field_selector_free(s);
					return CAP_EINVAL;
				}
				start = i + 1;
				if (p[i] == '\0')
					break;
			}
		}
	}
	*out = s;
	return CAP_OK;
}

/* The text of obj's field at a dotted path; "" when missing or null. */
static void field_text(json_t *obj, const char *path, char *buf, size_t len)
{
	const char *p = path;
	json_t *v = obj;

	buf[0] = '\0';
	while (v != NULL && *p != '\0') {
		const char *dot = strchr(p, '.');
		size_t n = dot == NULL ? strlen(p) : (size_t)(dot - p);
		char key[256];

		if (!json_is_object(v) || n >= sizeof(key))
			return;
		memcpy(key, p, n);
		key[n] = '\0';
		v = json_object_get(v, key);
		p = dot == NULL ? "" : dot + 1;
	}
	if (v == NULL)
		return;
	if (json_is_string(v))
		snprintf(buf, len, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_boolean(v))
		snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
	else if (json_is_real(v))
		snprintf(buf, len, "%g", json_real_value(v));
}

bool field_selector_matches(const struct field_selector *s, json_t *obj)
{
	char buf[1024];

	for (size_t i = 0; i < s->n; i++) {
		field_text(obj, s->reqs[i].path, buf, sizeof(buf));
		if ((strcmp(buf, s->reqs[i].value) == 0) == s->reqs[i].negate)
			return false;
	}
	return true;
}

size_t field_selector_size(const struct field_selector *s)
{
	return s->n;
}

const char *field_selector_path(const struct field_selector *s, size_t i)
{
	return s->reqs[i].path;
}

const char *field_selector_equals(const struct field_selector *s, const char *path)
{
	for (size_t i = 0; i < s->n; i++)
		if (!s->reqs[i].negate && strcmp(s->reqs[i].path, path) == 0)
			return s->reqs[i].value;
	return NULL;
}
