/* yaml.c — YAML documents to JSON values and back, on libyaml's document
 * loader and event emitter. */
#include "orchestrator/api/yaml.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "lib/err.h"

/* Aliases let a small document expand into a huge one ("billion laughs");
 * a manifest never needs more than this many values, nor this depth. */
#define YAML_MAX_VALUES 1000000
#define YAML_MAX_DEPTH 512

struct conv {
	yaml_document_t *doc;
	size_t values;
	char *errmsg;
};

static bool all_digits(const char *s, const char *digits)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (strchr(digits, *s) == NULL && *s != '_')
			return false;
	return true;
}

/* A plain integer as YAML (and sigs.k8s.io/yaml) reads it: decimal with an
 * optional sign, 0x hex, 0o octal. Anything beyond int64 becomes a float. */
static json_t *resolve_int(const char *s)
{
	const char *p = s;
	int base = 10;
	bool neg = false;
	char clean[128];
	size_t n = 0;

	if (*p == '-' || *p == '+') {
		neg = *p == '-';
		p++;
	}
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
		if (!all_digits(p, "0123456789abcdefABCDEF"))
			return NULL;
	} else if (p[0] == '0' && p[1] == 'o') {
		base = 8;
		p += 2;
		if (!all_digits(p, "01234567"))
			return NULL;
	} else if (!all_digits(p, "0123456789") || *p == '_') {
		return NULL;
	}
	if (neg)
		clean[n++] = '-';
	for (; *p != '\0' && n + 1 < sizeof(clean); p++)
		if (*p != '_')
			clean[n++] = *p;
	if (*p != '\0')
		return NULL;
	clean[n] = '\0';
	errno = 0;
	char *end;
	long long v = strtoll(clean, &end, base);
	if (*end != '\0')
		return NULL;
	if (errno == ERANGE)
		return base == 10 ? json_real(strtod(clean, NULL)) : NULL;
	return json_integer(v);
}

/* A plain float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?.
 * .inf and .nan have no JSON form, so they stay strings. */
static json_t *resolve_float(const char *s)
{
	const char *p = s;
	bool digits = false;

	if (*p == '-' || *p == '+')
		p++;
	while (*p >= '0' && *p <= '9') {
		p++;
		digits = true;
	}
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9') {
			p++;
			digits = true;
		}
	}
	if (!digits)
		return NULL;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return NULL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p != '\0')
		return NULL;
	double d = strtod(s, NULL);
	if (!isfinite(d))
		return NULL;
	return json_real(d);
}

static bool is_null_word(const char *s)
{
	return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	       strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int bool_word(const char *s)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
		return 1;
	if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
		return 0;
	return -1;
}

/* What a plain (unquoted, untagged) scalar means; a new reference. */
static json_t *resolve_plain(const char *s)
{
	json_t *v;
	int b;

	if (is_null_word(s))
		return json_null();
	b = bool_word(s);
	if (b >= 0)
		return json_boolean(b);
	v = resolve_int(s);
	if (v != NULL)
		return v;
	v = resolve_float(s);
	if (v != NULL)
		return v;
	return json_string(s);
}

static json_t *scalar_to_json(yaml_node_t *node, char *errmsg)
{
	const char *s = (const char *)node->data.scalar.value;
	const char *tag = (const char *)node->tag;
	json_t *v;

	/* libyaml gives every node a tag; plain scalars carry the default
	 * "tag:yaml.org,2002:str" unless the document wrote one explicitly,
	 * which we cannot tell apart, so only non-str tags are honoured. */
	if (tag != NULL && strcmp(tag, YAML_INT_TAG) == 0) {
		v = resolve_int(s);
		goto tagged;
	}
	if (tag != NULL && strcmp(tag, YAML_FLOAT_TAG) == 0) {
		v = resolve_float(s);
		if (v == NULL)
			v = resolve_int(s);
		goto tagged;
	}
	if (tag != NULL && strcmp(tag, YAML_BOOL_TAG) == 0) {
		int b = bool_word(s);
		v = b < 0 ? NULL : json_boolean(b);
		goto tagged;
	}
	if (tag != NULL && strcmp(tag, YAML_NULL_TAG) == 0)
		return json_null();
	if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
		return resolve_plain(s);
	return json_stringn(s, node->data.scalar.length);
tagged:
	if (v == NULL)
		cap_errmsg_printf(errmsg, "cannot read \"%.64s\" as %s", s, tag);
	return v;
}

static json_t *node_to_json(struct conv *c, yaml_node_t *node, int depth);

/* Adds the pairs of a merge ("<<") value to obj where obj lacks the key:
 * explicit keys of the mapping win over merged ones. */
static int merge_into(struct conv *c, json_t *obj, yaml_node_t *src, int depth)
{
	json_t *m = node_to_json(c, src, depth + 1);
	const char *k;
	json_t *v;
	size_t i;
	json_t *e;

	if (m == NULL)
		return -1;
	if (json_is_array(m)) {
		json_array_foreach(m, i, e) {
			if (!json_is_object(e))
				goto bad;
			json_object_foreach(e, k, v)
				if (json_object_get(obj, k) == NULL)
					json_object_set(obj, k, v);
		}
	} else if (json_is_object(m)) {
		json_object_foreach(m, k, v)
			if (json_object_get(obj, k) == NULL)
				json_object_set(obj, k, v);
	} else {
		goto bad;
	}
	json_decref(m);
	return 0;
bad:
	cap_errmsg_printf(c->errmsg, "map merge requires map or sequence of maps as the value");
	json_decref(m);
	return -1;
}

/* The text a mapping key stands for: JSON object keys are strings, so a
 * key like 80 or true is kept as written. */
static const char *key_text(yaml_node_t *k)
{
	if (k->type != YAML_SCALAR_NODE)
		return NULL;
	return (const char *)k->data.scalar.value;
}

static json_t *mapping_to_json(struct conv *c, yaml_node_t *node, int depth)
{
	json_t *obj = json_object();
	yaml_node_pair_t *pair;
	yaml_node_t *merges[64];
	size_t nmerges = 0;

	if (obj == NULL)
		goto nomem;
	for (pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, pair->value);
		const char *key = k == NULL ? NULL : key_text(k);
		json_t *jv;

		if (key == NULL || v == NULL) {
			cap_errmsg_printf(c->errmsg, "mapping keys must be scalars (line %zu)",
					  node->start_mark.line + 1);
			goto err;
		}
		if (strcmp(key, "<<") == 0 && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
			if (nmerges == sizeof(merges) / sizeof(merges[0])) {
				cap_errmsg_printf(c->errmsg, "too many merge keys");
				goto err;
			}
			merges[nmerges++] = v;
			continue;
		}
		jv = node_to_json(c, v, depth + 1);
		if (jv == NULL)
			goto err;
		if (json_object_set_new(obj, key, jv) != 0)
			goto nomem;
	}
	for (size_t i = 0; i < nmerges; i++)
		if (merge_into(c, obj, merges[i], depth) != 0)
			goto err;
	return obj;
nomem:
	cap_errmsg_printf(c->errmsg, "out of memory");
err:
	json_decref(obj);
	return NULL;
}

static json_t *node_to_json(struct conv *c, yaml_node_t *node, int depth)
{
	json_t *arr;
	yaml_node_item_t *it;

	if (depth > YAML_MAX_DEPTH) {
		cap_errmsg_printf(c->errmsg, "document nested too deeply");
		return NULL;
	}
	if (++c->values > YAML_MAX_VALUES) {
		cap_errmsg_printf(c->errmsg, "document expands to too many values");
		return NULL;
	}
	switch (node->type) {
	case YAML_SCALAR_NODE:
		return scalar_to_json(node, c->errmsg);
	case YAML_MAPPING_NODE:
		return mapping_to_json(c, node, depth);
	case YAML_SEQUENCE_NODE:
		arr = json_array();
		if (arr == NULL)
			return NULL;
		for (it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++) {
			yaml_node_t *n = yaml_document_get_node(c->doc, *it);
			json_t *v = n == NULL ? NULL : node_to_json(c, n, depth + 1);
			if (v == NULL || json_array_append_new(arr, v) != 0) {
				json_decref(arr);
				return NULL;
			}
		}
		return arr;
	default:
		cap_errmsg_printf(c->errmsg, "unexpected YAML node");
		return NULL;
	}
}

/* Loads every document; stops after the first non-empty one when first is
 * set. Returns an array of documents (new reference) or NULL. */
static json_t *load(const char *buf, size_t len, bool first, char *errmsg)
{
	yaml_parser_t parser;
	json_t *docs = json_array();

	if (docs == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		return NULL;
	}
	if (!yaml_parser_initialize(&parser)) {
		cap_errmsg_printf(errmsg, "out of memory");
		goto err_docs;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	for (;;) {
		yaml_document_t doc;
		yaml_node_t *root;
		struct conv c = { .doc = &doc, .values = 0, .errmsg = errmsg };
		json_t *v;

		if (!yaml_parser_load(&parser, &doc)) {
			cap_errmsg_printf(errmsg, "yaml: line %zu: %s",
					  parser.problem_mark.line + 1,
					  parser.problem != NULL ? parser.problem : "syntax error");
			goto err_parser;
		}
		root = yaml_document_get_root_node(&doc);
		if (root == NULL) {
			yaml_document_delete(&doc);
			break;
		}
		v = node_to_json(&c, root, 0);
		yaml_document_delete(&doc);
		if (v == NULL)
			goto err_parser;
		/* An empty document ("---" followed by nothing, or only
		 * comments) is skipped, as kubectl skips it. */
		if (json_is_null(v)) {
			json_decref(v);
			continue;
		}
		json_array_append_new(docs, v);
		if (first)
			break;
	}
	yaml_parser_delete(&parser);
	return docs;
err_parser:
	yaml_parser_delete(&parser);
err_docs:
	json_decref(docs);
	return NULL;
}

json_t *yaml_to_json(const char *buf, size_t len, char *errmsg)
{
	json_t *docs = load(buf, len, true, errmsg);
	json_t *v;

	if (docs == NULL)
		return NULL;
	if (json_array_size(docs) == 0) {
		cap_errmsg_printf(errmsg, "no YAML document in the input");
		json_decref(docs);
		return NULL;
	}
	v = json_incref(json_array_get(docs, 0));
	json_decref(docs);
	return v;
}

json_t *yaml_to_json_all(const char *buf, size_t len, char *errmsg)
{
	return load(buf, len, false, errmsg);
}

/* ---- emitting ---- */

struct outbuf {
	char *p;
	size_t len;
	size_t cap;
	bool failed;
};

static int out_write(void *data, unsigned char *buffer, size_t size)
{
	struct outbuf *o = data;

	if (o->len + size + 1 > o->cap) {
		size_t cap = o->cap == 0 ? 256 : o->cap;
		while (cap < o->len + size + 1)
			cap *= 2;
		char *p = realloc(o->p, cap);
		if (p == NULL) {
			o->failed = true;
			return 0;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, buffer, size);
	o->len += size;
	o->p[o->len] = '\0';
	return 1;
}

static int emit_scalar(yaml_emitter_t *em, const char *s, size_t n, bool plain_ok)
{
	yaml_event_t ev;
	yaml_scalar_style_t style = plain_ok ? YAML_ANY_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE;

	if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)n, plain_ok, 1,
					  style))
		return -1;
	return yaml_emitter_emit(em, &ev) ? 0 : -1;
}

/* A string that a reader would take for a null, bool or number must be
 * quoted to stay a string. */
static bool string_reads_as_other(const char *s)
{
	json_t *v = resolve_plain(s);
	bool other = !json_is_string(v);

	json_decref(v);
	return other || strcmp(s, "yes") == 0 || strcmp(s, "no") == 0 ||
	       strcmp(s, "on") == 0 || strcmp(s, "off") == 0 || strcmp(s, "y") == 0 ||
	       strcmp(s, "n") == 0;
}

static int emit_value(yaml_emitter_t *em, json_t *v)
{
	yaml_event_t ev;
	char num[64];
	const char *k;
	json_t *e;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
							 YAML_BLOCK_MAPPING_STYLE) ||
		    !yaml_emitter_emit(em, &ev))
			return -1;
		json_object_foreach(v, k, e) {
			if (emit_scalar(em, k, strlen(k), !string_reads_as_other(k)) != 0 ||
			    emit_value(em, e) != 0)
				return -1;
		}
		if (!yaml_mapping_end_event_initialize(&ev) || !yaml_emitter_emit(em, &ev))
			return -1;
		return 0;
	case JSON_ARRAY:
		if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
							  YAML_BLOCK_SEQUENCE_STYLE) ||
		    !yaml_emitter_emit(em, &ev))
			return -1;
		json_array_foreach(v, i, e)
			if (emit_value(em, e) != 0)
				return -1;
		if (!yaml_sequence_end_event_initialize(&ev) || !yaml_emitter_emit(em, &ev))
			return -1;
		return 0;
	case JSON_STRING:
		return emit_scalar(em, json_string_value(v), json_string_length(v),
				   !string_reads_as_other(json_string_value(v)));
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return emit_scalar(em, num, strlen(num), true);
	case JSON_REAL:
		snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		/* Keep it a float when read back. */
		if (strpbrk(num, ".eEn") == NULL)
			strcat(num, ".0");
		return emit_scalar(em, num, strlen(num), true);
	case JSON_TRUE:
		return emit_scalar(em, "true", 4, true);
	case JSON_FALSE:
		return emit_scalar(em, "false", 5, true);
	case JSON_NULL:
	default:
		return emit_scalar(em, "null", 4, true);
	}
}

char *json_to_yaml(json_t *v)
{
	yaml_emitter_t em;
	yaml_event_t ev;
	struct outbuf o = { 0 };
	int ok = 0;

	if (v == NULL || !yaml_emitter_initialize(&em))
		return NULL;
	yaml_emitter_set_output(&em, out_write, &o);
	yaml_emitter_set_unicode(&em, 1);
	yaml_emitter_set_width(&em, -1);
	if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) ||
	    !yaml_emitter_emit(&em, &ev))
		goto done;
	if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) ||
	    !yaml_emitter_emit(&em, &ev))
		goto done;
	if (emit_value(&em, v) != 0)
		goto done;
	if (!yaml_document_end_event_initialize(&ev, 1) || !yaml_emitter_emit(&em, &ev))
		goto done;
	if (!yaml_stream_end_event_initialize(&ev) || !yaml_emitter_emit(&em, &ev))
		goto done;
	ok = 1;
done:
	yaml_emitter_delete(&em);
	if (!ok || o.failed) {
		free(o.p);
		return NULL;
	}
	return o.p;
}
