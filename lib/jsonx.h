/* jsonx.h — reading and writing the protobuf-JSON fields of etcd's gateway
 * with jansson: base64 byte fields, 64-bit integers given as numbers or
 * strings and answered as strings, enums given by name or number.
 *
 * Every getter leaves *out untouched and returns CAP_OK when the field is
 * absent or null; returns CAP_EINVAL with a message in errmsg (CAP_ERRMSG_SIZE)
 * when it has the wrong type. Byte outputs are malloc'd and NUL-terminated
 * for convenience (the length excludes the NUL); the caller frees them. */
#ifndef CAPSTAN_JSONX_H
#define CAPSTAN_JSONX_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int jsonx_get_bytes(json_t *obj, const char *name, uint8_t **out, size_t *len, char *errmsg);
/* The bytes of a base64 field's text s[0..n) as jsonx_get_bytes decodes
 * them (padded standard alphabet only): *out malloc'd (NUL-terminated,
 * replacing what it held), or CAP_EINVAL / CAP_ENOMEM. */
int jsonx_b64_field(const char *s, size_t n, uint8_t **out, size_t *len);
int jsonx_get_i64(json_t *obj, const char *name, int64_t *out, char *errmsg);
int jsonx_get_u64(json_t *obj, const char *name, uint64_t *out, char *errmsg);
int jsonx_get_bool(json_t *obj, const char *name, bool *out, char *errmsg);
/* names[] is NULL-terminated; the enum's value is its index. */
int jsonx_get_enum(json_t *obj, const char *name, const char *const names[], int *out,
		   char *errmsg);
/* An object member that must be an object (or absent); *out borrowed. */
int jsonx_get_object(json_t *obj, const char *name, json_t **out, char *errmsg);
int jsonx_get_array(json_t *obj, const char *name, json_t **out, char *errmsg);

/* New references, NULL on allocation failure. */
json_t *jsonx_i64(int64_t v);
json_t *jsonx_u64(uint64_t v);
json_t *jsonx_bytes(const uint8_t *p, size_t n);

/* Sets obj[name] only when v is not the protobuf default (0, false, empty),
 * as the gateway omits defaults. */
void jsonx_set_i64_nz(json_t *obj, const char *name, int64_t v);
void jsonx_set_true(json_t *obj, const char *name, bool v);
void jsonx_set_bytes_ne(json_t *obj, const char *name, const uint8_t *p, size_t n);

/* The text json_dumps(v, JSON_COMPACT) gives, byte for byte, made without
 * jansson's per-character callbacks (answers of range reads spent more than
 * half their CPU in it). Any value may be given. Returns malloc'd text,
 * NUL-terminated, its length in *len if len is not NULL; NULL when out of
 * memory or when a string is not valid UTF-8 (as json_dumps). */
char *jsonx_dumps(const json_t *v, size_t *len);

/* Writing the gateway's answers straight from bytes, without a jansson
 * tree (range answers: keys and values go from the rows to the text).
 * An append-only text buffer: zero-initialize it; after an allocation
 * fails every later call does nothing and failed stays set. The caller
 * writes the punctuation and member names with jsonx_out_raw; the others
 * write one JSON value each, as jsonx_dumps writes what jsonx_bytes,
 * jsonx_i64 and jsonx_u64 make. Reuse a buffer by setting len to 0;
 * jsonx_out_free releases it. */
struct jsonx_out {
	char *p;
	size_t len, cap;
	bool failed;
};
void jsonx_out_raw(struct jsonx_out *o, const char *s, size_t n);
#define JSONX_OUT_LIT(o, lit) jsonx_out_raw((o), (lit), sizeof(lit) - 1)
/* "base64 of p[0..n)" */
void jsonx_out_bytes(struct jsonx_out *o, const uint8_t *p, size_t n);
/* "decimal", as the gateway writes 64-bit integers */
void jsonx_out_i64(struct jsonx_out *o, int64_t v);
void jsonx_out_u64(struct jsonx_out *o, uint64_t v);
void jsonx_out_free(struct jsonx_out *o);

/* json_loadb(buf, len, flags, err), faster on the requests clients send:
 * an object whose strings are printable ASCII without escapes (base64
 * keys and values), with integers, literals, arrays and objects, is built
 * directly; anything else (escapes, non-ASCII, reals, errors) goes to
 * jansson, so the value, and the error text of a bad request, are always
 * jansson's. flags are json_loadb's; any flag but JSON_DECODE_ANY sends
 * every input to jansson. */
json_t *jsonx_loadb(const char *buf, size_t len, size_t flags, json_error_t *err);

/* A flat object read member by member, without a tree: for the hottest
 * request (a put) its members are taken as they come. Only what
 * jsonx_loadb builds itself is read: names and strings of printable ASCII
 * without escapes, integers of up to 18 digits, true and false. Anything
 * else (null, reals, arrays, nested objects, escapes, bad JSON) makes
 * jsonx_flat_next return -1, and the caller parses the whole text with
 * jsonx_loadb instead, which also gives the error of a bad request. The
 * member's pointers are into the text, which the caller keeps. */
struct jsonx_flat {
	const char *p, *end;
	bool started;
};
enum jsonx_flat_type { JSONX_FLAT_STRING, JSONX_FLAT_INT, JSONX_FLAT_TRUE, JSONX_FLAT_FALSE };
struct jsonx_member {
	const char *name;
	size_t name_len;
	enum jsonx_flat_type type;
	const char *str;            /* JSONX_FLAT_STRING: the string's bytes */
	size_t str_len;
	int64_t num;                /* JSONX_FLAT_INT */
};
void jsonx_flat_begin(struct jsonx_flat *f, const char *buf, size_t len);
/* 1: *m is the next member; 0: the object has ended, with nothing after it
 * but white space; -1: not a flat object, or not JSON. */
int jsonx_flat_next(struct jsonx_flat *f, struct jsonx_member *m);

#endif
