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

/* json_loadb(buf, len, flags, err), faster on the requests clients send:
 * an object whose strings are printable ASCII without escapes (base64
 * keys and values), with integers, literals, arrays and objects, is built
 * directly; anything else (escapes, non-ASCII, reals, errors) goes to
 * jansson, so the value, and the error text of a bad request, are always
 * jansson's. flags are json_loadb's; any flag but JSON_DECODE_ANY sends
 * every input to jansson. */
json_t *jsonx_loadb(const char *buf, size_t len, size_t flags, json_error_t *err);

#endif
