/* protobuf.c — Kubernetes' protobuf envelope and DeleteOptions: see
 * protobuf.h. */
#include "orchestrator/api/protobuf.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/err.h"

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

struct pb_field {
	uint32_t number;
	int wire;
	uint64_t varint;
	const uint8_t *bytes;
	size_t len;
};

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return -1;
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*out = v;
			return 0;
		}
	}
	return -1;
}

/* Reads the next field; returns 1 with f filled, 0 at the end, -1 if
 * malformed. Groups (wire types 3, 4) are not used by Kubernetes. */
static int next_field(const uint8_t **p, const uint8_t *end, struct pb_field *f)
{
	uint64_t key, n;
	if (*p == end)
		return 0;
	if (read_varint(p, end, &key) != 0 || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
		return -1;
	f->number = (uint32_t)(key >> 3);
	f->wire = (int)(key & 7);
	f->bytes = NULL;
	f->len = 0;
	f->varint = 0;
	switch (f->wire) {
	case WIRE_VARINT:
		return read_varint(p, end, &f->varint) == 0 ? 1 : -1;
	case WIRE_I64:
	case WIRE_I32:
		n = f->wire == WIRE_I64 ? 8 : 4;
		if ((uint64_t)(end - *p) < n)
			return -1;
		*p += n;
		return 1;
	case WIRE_LEN:
		if (read_varint(p, end, &n) != 0 || n > (uint64_t)(end - *p))
			return -1;
		f->bytes = *p;
		f->len = (size_t)n;
		*p += n;
		return 1;
	default:
		return -1;
	}
}

static void copy_string(const struct pb_field *f, char *out, size_t size)
{
	size_t n = f->len < size - 1 ? f->len : size - 1;
	memcpy(out, f->bytes, n);
	out[n] = '\0';
}

bool pb_is_protobuf(const char *content_type)
{
	return content_type != NULL &&
	       strncasecmp(content_type, PB_CONTENT_TYPE, strlen(PB_CONTENT_TYPE)) == 0;
}

int pb_unwrap(const uint8_t *buf, size_t len, const uint8_t **raw, size_t *raw_len,
	      char *kind, size_t kind_size, char *api_version, size_t api_version_size)
{
	static const uint8_t magic[4] = {'k', '8', 's', 0};
	const uint8_t *p, *end;
	struct pb_field f;
	int rv;

	kind[0] = api_version[0] = '\0';
	*raw = NULL;
	*raw_len = 0;
	if (len < 4 || memcmp(buf, magic, 4) != 0)
		return -1;
	p = buf + 4;
	end = buf + len;
	while ((rv = next_field(&p, end, &f)) == 1) {
		if (f.number == 1 && f.wire == WIRE_LEN) {
			/* TypeMeta: apiVersion = 1, kind = 2 */
			const uint8_t *q = f.bytes, *qend = f.bytes + f.len;
			struct pb_field g;
			int r;
			while ((r = next_field(&q, qend, &g)) == 1) {
				if (g.wire != WIRE_LEN)
					continue;
				if (g.number == 1)
					copy_string(&g, api_version, api_version_size);
				else if (g.number == 2)
					copy_string(&g, kind, kind_size);
			}
			if (r < 0)
				return -1;
		} else if (f.number == 2 && f.wire == WIRE_LEN) {
			*raw = f.bytes;
			*raw_len = f.len;
		}
	}
	return rv < 0 ? -1 : 0;
}

/* A string member; -1 if the bytes are not UTF-8 (jansson refuses them). */
static int set_string(json_t *o, const char *name, const struct pb_field *f)
{
	json_t *s = json_stringn(f->len ? (const char *)f->bytes : "", f->len);
	return s == NULL ? -1 : json_object_set_new(o, name, s);
}

json_t *pb_delete_options_to_json(const uint8_t *raw, size_t len, char *errmsg)
{
	const uint8_t *p = raw, *end = raw + len;
	struct pb_field f;
	json_t *o = json_object();
	json_t *dry = NULL;
	int rv;

	while ((rv = next_field(&p, end, &f)) == 1) {
		switch (f.number) {
		case 1: /* gracePeriodSeconds */
			if (f.wire != WIRE_VARINT)
				goto bad;
			json_object_set_new(o, "gracePeriodSeconds", json_integer((json_int_t)f.varint));
			break;
		case 2: { /* preconditions: uid = 1, resourceVersion = 2 */
			if (f.wire != WIRE_LEN)
				goto bad;
			const uint8_t *q = f.bytes, *qend = f.bytes + f.len;
			struct pb_field g;
			json_t *pre = json_object();
			int r;
			while ((r = next_field(&q, qend, &g)) == 1) {
				if (g.wire == WIRE_LEN && (g.number == 1 || g.number == 2) &&
				    set_string(pre, g.number == 1 ? "uid" : "resourceVersion", &g) != 0)
					r = -1;
				if (r < 0)
					break;
			}
			json_object_set_new(o, "preconditions", pre);
			if (r < 0)
				goto bad;
			break;
		}
		case 3: /* orphanDependents */
			if (f.wire != WIRE_VARINT)
				goto bad;
			json_object_set_new(o, "orphanDependents", json_boolean(f.varint != 0));
			break;
		case 4: /* propagationPolicy */
			if (f.wire != WIRE_LEN)
				goto bad;
			if (set_string(o, "propagationPolicy", &f) != 0)
				goto bad;
			break;
		case 5: /* dryRun (repeated) */
			if (f.wire != WIRE_LEN)
				goto bad;
			if (dry == NULL) {
				dry = json_array();
				json_object_set_new(o, "dryRun", dry);
			}
			{
				json_t *s = json_stringn(f.len ? (const char *)f.bytes : "", f.len);
				if (s == NULL)
					goto bad;
				json_array_append_new(dry, s);
			}
			break;
		default:
			break;  /* fields of newer versions are ignored, as Go does */
		}
	}
	if (rv < 0)
		goto bad;
	return o;
bad:
	json_decref(o);
	cap_errmsg_printf(errmsg, "malformed DeleteOptions protobuf body");
	return NULL;
}
