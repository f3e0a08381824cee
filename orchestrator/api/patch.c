/* patch.c — RFC 7386 JSON merge patch and RFC 6902 JSON patch over jansson
 * values, the application/merge-patch+json and json-patch+json bodies. */
#include "orchestrator/api/patch.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"

/* ---- RFC 7386 ---- */

/* Merges patch into a new value built from target (both borrowed). */
static json_t *merge(json_t *target, json_t *patch)
{
	json_t *res;
	const char *k;
	json_t *v;

	if (!json_is_object(patch))
		return json_deep_copy(patch);
	res = json_is_object(target) ? json_copy(target) : json_object();
	if (res == NULL)
		return NULL;
	json_object_foreach(patch, k, v) {
		if (json_is_null(v)) {
			json_object_del(res, k);
			continue;
		}
		json_t *m = merge(json_object_get(res, k), v);
		if (m == NULL || json_object_set_new(res, k, m) != 0) {
			json_decref(res);
			return NULL;
		}
	}
	return res;
}

int patch_merge(json_t *target, json_t *patch, json_t **out, char *errmsg)
{
	json_t *res;

	if (patch == NULL) {
		cap_errmsg_printf(errmsg, "empty merge patch");
		return CAP_EINVAL;
	}
	res = merge(target, patch);
	if (res == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		return CAP_ENOMEM;
	}
	*out = res;
	return CAP_OK;
}

/* ---- RFC 6901 pointers ---- */

/* Splits a pointer into unescaped reference tokens. Returns the number of
 * tokens, or -1 when the pointer is malformed. *toks is malloc'd (an array
 * of malloc'd strings) and freed with free_tokens. */
static int split_pointer(const char *ptr, char ***toks)
{
	int n = 0;
	char **t = NULL;
	const char *p = ptr;

	*toks = NULL;
	if (*p == '\0')
		return 0;
	if (*p != '/')
		return -1;
	while (*p == '/') {
		const char *end = strchr(p + 1, '/');
		size_t len = end == NULL ? strlen(p + 1) : (size_t)(end - p - 1);
		char *tok = malloc(len + 1);
		size_t j = 0;
		char **nt = realloc(t, (size_t)(n + 1) * sizeof(*t));

		if (tok == NULL || nt == NULL) {
			free(tok);
			free(nt != NULL ? nt : t);
			return -1;
		}
		t = nt;
		for (size_t i = 0; i < len; i++) {
			char c = p[1 + i];
			if (c == '~') {
				char d = i + 1 < len ? p[2 + i] : '\0';
				if (d != '0' && d != '1') {
					free(tok);
					for (int k = 0; k < n; k++)
						free(t[k]);
					free(t);
					return -1;
				}
				c = d == '0' ? '~' : '/';
				i++;
			}
			tok[j++] = c;
		}
		tok[j] = '\0';
		t[n++] = tok;
		p = end == NULL ? p + 1 + len : end;
	}
	*toks = t;
	return n;
}

static void free_tokens(char **toks, int n)
{
	for (int i = 0; i < n; i++)
		free(toks[i]);
	free(toks);
}

/* An array index token: digits without a leading zero. -1 if not one. */
static long array_index(const char *tok)
{
	long v = 0;

	if (tok[0] == '\0' || (tok[0] == '0' && tok[1] != '\0'))
		return -1;
	for (const char *p = tok; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || v > 100000000)
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

/* Walks n tokens down from doc; NULL when something is missing. */
static json_t *walk(json_t *doc, char **toks, int n)
{
	json_t *v = doc;

	for (int i = 0; i < n && v != NULL; i++) {
		if (json_is_object(v)) {
			v = json_object_get(v, toks[i]);
		} else if (json_is_array(v)) {
			long idx = array_index(toks[i]);
			v = idx < 0 ? NULL : json_array_get(v, (size_t)idx);
		} else {
			v = NULL;
		}
	}
	return v;
}

json_t *patch_pointer_get(json_t *doc, const char *pointer)
{
	char **toks;
	int n = split_pointer(pointer, &toks);
	json_t *v;

	if (n < 0)
		return NULL;
	v = walk(doc, toks, n);
	free_tokens(toks, n);
	return v;
}

/* ---- RFC 6902 ---- */

/* Numbers compare by value (1 equals 1.0), objects regardless of order. */
static bool value_equal(json_t *a, json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	if (json_is_array(a) && json_is_array(b)) {
		if (json_array_size(a) != json_array_size(b))
			return false;
		for (size_t i = 0; i < json_array_size(a); i++)
			if (!value_equal(json_array_get(a, i), json_array_get(b, i)))
				return false;
		return true;
	}
	if (json_is_object(a) && json_is_object(b)) {
		const char *k;
		json_t *v;
		if (json_object_size(a) != json_object_size(b))
			return false;
		json_object_foreach(a, k, v) {
			json_t *w = json_object_get(b, k);
			if (w == NULL || !value_equal(v, w))
				return false;
		}
		return true;
	}
	return json_equal(a, b);
}

/* Where an operation's path points: the container and the last token. */
struct loc {
	char **toks;
	int n;
	json_t *parent; /* borrowed; NULL when the path is the root */
};

static int locate(json_t *doc, const char *op, const char *path, struct loc *l, char *errmsg)
{
	l->n = split_pointer(path, &l->toks);
	if (l->n < 0) {
		cap_errmsg_printf(errmsg, "%s operation does not apply: invalid JSON pointer \"%s\"",
				  op, path);
		return CAP_EINVAL;
	}
	l->parent = NULL;
	if (l->n == 0)
		return CAP_OK;
	l->parent = walk(doc, l->toks, l->n - 1);
	if (l->parent == NULL || (!json_is_object(l->parent) && !json_is_array(l->parent))) {
		cap_errmsg_printf(errmsg, "%s operation does not apply: doc is missing path: \"%s\"",
				  op, path);
		free_tokens(l->toks, l->n);
		return CAP_EINVAL;
	}
	return CAP_OK;
}

/* Adds v (a new reference, consumed) at path; *doc may be replaced when the
 * path is the root. */
static int op_add(json_t **doc, const char *path, json_t *v, const char *opname, char *errmsg)
{
	struct loc l;
	int rv = locate(*doc, opname, path, &l, errmsg);

	if (rv != CAP_OK) {
		json_decref(v);
		return rv;
	}
	if (l.parent == NULL) {
		json_decref(*doc);
		*doc = v;
		return CAP_OK;
	}
	const char *last = l.toks[l.n - 1];
	if (json_is_object(l.parent)) {
		json_object_set_new(l.parent, last, v);
	} else {
		size_t size = json_array_size(l.parent);
		long idx = strcmp(last, "-") == 0 ? (long)size : array_index(last);
		if (idx < 0 || (size_t)idx > size) {
			cap_errmsg_printf(errmsg, "%s operation does not apply: index out of range in "
						  "\"%s\"", opname, path);
			json_decref(v);
			rv = CAP_EINVAL;
		} else {
			json_array_insert_new(l.parent, (size_t)idx, v);
		}
	}
	free_tokens(l.toks, l.n);
	return rv;
}

/* Removes the value at path; its reference goes to *removed when asked. */
static int op_remove(json_t *doc, const char *path, json_t **removed, const char *opname,
		     char *errmsg)
{
	struct loc l;
	int rv = locate(doc, opname, path, &l, errmsg);
	json_t *v = NULL;

	if (rv != CAP_OK)
		return rv;
	if (l.parent == NULL) {
		cap_errmsg_printf(errmsg, "%s operation does not apply: cannot remove the whole "
					  "document", opname);
		free_tokens(l.toks, l.n);
		return CAP_EINVAL;
	}
	const char *last = l.toks[l.n - 1];
	if (json_is_object(l.parent)) {
		v = json_object_get(l.parent, last);
		if (v != NULL) {
			json_incref(v);
			json_object_del(l.parent, last);
		}
	} else {
		long idx = array_index(last);
		if (idx >= 0 && (size_t)idx < json_array_size(l.parent)) {
			v = json_incref(json_array_get(l.parent, (size_t)idx));
			json_array_remove(l.parent, (size_t)idx);
		}
	}
	if (v == NULL) {
		cap_errmsg_printf(errmsg, "%s operation does not apply: doc is missing path: \"%s\"",
				  opname, path);
		rv = CAP_EINVAL;
	} else if (removed != NULL) {
		*removed = v;
	} else {
		json_decref(v);
	}
	free_tokens(l.toks, l.n);
	return rv;
}

static const char *str_member(json_t *op, const char *name)
{
	return json_string_value(json_object_get(op, name));
}

static int apply_op(json_t **doc, json_t *op, size_t i, char *errmsg)
{
	const char *name = str_member(op, "op");
	const char *path = str_member(op, "path");
	const char *from = str_member(op, "from");
	json_t *value = json_object_get(op, "value");
	json_t *v = NULL;
	int rv;

	if (!json_is_object(op) || name == NULL) {
		cap_errmsg_printf(errmsg, "operation %zu: missing \"op\"", i);
		return CAP_EINVAL;
	}
	if (path == NULL) {
		cap_errmsg_printf(errmsg, "%s operation: missing \"path\"", name);
		return CAP_EINVAL;
	}
	if (strcmp(name, "add") == 0 || strcmp(name, "replace") == 0 ||
	    strcmp(name, "test") == 0) {
		if (value == NULL) {
			cap_errmsg_printf(errmsg, "%s operation: missing \"value\"", name);
			return CAP_EINVAL;
		}
	} else if (strcmp(name, "move") == 0 || strcmp(name, "copy") == 0) {
		if (from == NULL) {
			cap_errmsg_printf(errmsg, "%s operation: missing \"from\"", name);
			return CAP_EINVAL;
		}
	} else if (strcmp(name, "remove") != 0) {
		cap_errmsg_printf(errmsg, "Unexpected kind: %s", name);
		return CAP_EINVAL;
	}

	if (strcmp(name, "add") == 0)
		return op_add(doc, path, json_deep_copy(value), name, errmsg);
	if (strcmp(name, "remove") == 0)
		return op_remove(*doc, path, NULL, name, errmsg);
	if (strcmp(name, "replace") == 0) {
		if (path[0] != '\0') {
			rv = op_remove(*doc, path, NULL, name, errmsg);
			if (rv != CAP_OK)
				return rv;
		}
		return op_add(doc, path, json_deep_copy(value), name, errmsg);
	}
	if (strcmp(name, "test") == 0) {
		json_t *have = patch_pointer_get(*doc, path);
		if (have == NULL || !value_equal(have, value)) {
			cap_errmsg_printf(errmsg, "testing value %s failed: test failed", path);
			return CAP_EINVAL;
		}
		return CAP_OK;
	}
	if (strcmp(name, "copy") == 0) {
		json_t *src = patch_pointer_get(*doc, from);
		if (src == NULL) {
			cap_errmsg_printf(errmsg, "copy operation does not apply: doc is missing from "
						  "path: \"%s\"", from);
			return CAP_EINVAL;
		}
		return op_add(doc, path, json_deep_copy(src), name, errmsg);
	}
	/* move: a value cannot move into one of its own children. */
	size_t flen = strlen(from);
	if (strncmp(path, from, flen) == 0 && path[flen] == '/') {
		cap_errmsg_printf(errmsg, "move operation does not apply: \"%s\" is a child of "
					  "\"%s\"", path, from);
		return CAP_EINVAL;
	}
	if (strcmp(path, from) == 0) {
		if (patch_pointer_get(*doc, from) != NULL)
			return CAP_OK;
		cap_errmsg_printf(errmsg, "move operation does not apply: doc is missing from "
					  "path: \"%s\"", from);
		return CAP_EINVAL;
	}
	if (from[0] == '\0') {
		cap_errmsg_printf(errmsg, "move operation does not apply: cannot move the whole "
					  "document");
		return CAP_EINVAL;
	}
	rv = op_remove(*doc, from, &v, name, errmsg);
	if (rv != CAP_OK)
		return rv;
	return op_add(doc, path, v, name, errmsg);
}

int patch_json(json_t *target, json_t *ops, json_t **out, char *errmsg)
{
	json_t *doc, *op;
	size_t i;
	int rv;

	if (!json_is_array(ops)) {
		cap_errmsg_printf(errmsg, "a JSON patch must be an array of operations");
		return CAP_EINVAL;
	}
	/* Work on a copy so that a failing operation leaves nothing half done. */
	doc = target == NULL ? json_null() : json_deep_copy(target);
	if (doc == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		return CAP_ENOMEM;
	}
	json_array_foreach(ops, i, op) {
		rv = apply_op(&doc, op, i, errmsg);
		if (rv != CAP_OK) {
			json_decref(doc);
			return rv;
		}
	}
	*out = doc;
	return CAP_OK;
}
