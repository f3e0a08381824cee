/* protobuf.c — Kubernetes' protobuf envelope and DeleteOptions: see
 * protobuf.h. */
#include "orchestrator/api/protobuf.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/err.h"
#include "lib/jsonx.h"

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

/* ---- typed objects ----
 *
 * A message is decoded by a table of its fields (numbers from Kubernetes'
 * generated.proto). As Go's JSON encoding omits empty values, empty strings
 * and zero numbers are left out; unknown fields are skipped. */

enum pb_kind {
	PK_STRING,     /* string, omitted when empty */
	PK_INT,        /* int32/int64, omitted when 0 */
	PK_BOOL,       /* bool, omitted when false */
	PK_BOOLPTR,    /* *bool: present means set, false included */
	PK_MSG,        /* a nested message */
	PK_MAP,        /* map<string, string> */
	PK_STRINGS,    /* repeated string */
	PK_MSGS,       /* repeated message */
	PK_INTORSTR,   /* intstr.IntOrString {type=1, intVal=2, strVal=3} */
	PK_INTPTR,     /* pointer int32 or int64: present means set, 0 included */
	PK_BYTESMAP,   /* map<string, bytes>: values base64 in JSON */
};

struct pb_desc {
	uint32_t number;
	const char *name;
	enum pb_kind kind;
	const struct pb_desc *sub;   /* PK_MSG, PK_MSGS */
};

#define PB_MAX_DEPTH 8

static const struct pb_desc owner_ref_desc[] = {
	{5, "apiVersion", PK_STRING, NULL}, {1, "kind", PK_STRING, NULL},
	{3, "name", PK_STRING, NULL}, {4, "uid", PK_STRING, NULL},
	{6, "controller", PK_BOOLPTR, NULL}, {7, "blockOwnerDeletion", PK_BOOLPTR, NULL},
	{0, NULL, PK_STRING, NULL},
};

/* ObjectMeta: what a client may set; the server fills the rest. */
static const struct pb_desc object_meta_desc[] = {
	{1, "name", PK_STRING, NULL}, {2, "generateName", PK_STRING, NULL},
	{3, "namespace", PK_STRING, NULL}, {6, "resourceVersion", PK_STRING, NULL},
	{11, "labels", PK_MAP, NULL}, {12, "annotations", PK_MAP, NULL},
	{13, "ownerReferences", PK_MSGS, owner_ref_desc}, {14, "finalizers", PK_STRINGS, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc service_port_desc[] = {
	{1, "name", PK_STRING, NULL}, {2, "protocol", PK_STRING, NULL},
	{6, "appProtocol", PK_STRING, NULL}, {3, "port", PK_INT, NULL},
	{4, "targetPort", PK_INTORSTR, NULL}, {5, "nodePort", PK_INT, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc service_spec_desc[] = {
	{1, "ports", PK_MSGS, service_port_desc}, {2, "selector", PK_MAP, NULL},
	{3, "clusterIP", PK_STRING, NULL}, {18, "clusterIPs", PK_STRINGS, NULL},
	{4, "type", PK_STRING, NULL}, {5, "externalIPs", PK_STRINGS, NULL},
	{7, "sessionAffinity", PK_STRING, NULL}, {8, "loadBalancerIP", PK_STRING, NULL},
	{9, "loadBalancerSourceRanges", PK_STRINGS, NULL}, {10, "externalName", PK_STRING, NULL},
	{11, "externalTrafficPolicy", PK_STRING, NULL}, {12, "healthCheckNodePort", PK_INT, NULL},
	{13, "publishNotReadyAddresses", PK_BOOL, NULL}, {19, "ipFamilies", PK_STRINGS, NULL},
	{17, "ipFamilyPolicy", PK_STRING, NULL},
	{20, "allocateLoadBalancerNodePorts", PK_BOOLPTR, NULL},
	{21, "loadBalancerClass", PK_STRING, NULL}, {22, "internalTrafficPolicy", PK_STRING, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc service_desc[] = {
	{1, "metadata", PK_MSG, object_meta_desc}, {2, "spec", PK_MSG, service_spec_desc},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc namespace_spec_desc[] = {
	{1, "finalizers", PK_STRINGS, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc namespace_desc[] = {
	{1, "metadata", PK_MSG, object_meta_desc}, {2, "spec", PK_MSG, namespace_spec_desc},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc config_map_desc[] = {
	{1, "metadata", PK_MSG, object_meta_desc}, {2, "data", PK_MAP, NULL},
	{3, "binaryData", PK_BYTESMAP, NULL}, {4, "immutable", PK_BOOLPTR, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc secret_desc[] = {
	{1, "metadata", PK_MSG, object_meta_desc}, {2, "data", PK_BYTESMAP, NULL},
	{4, "stringData", PK_MAP, NULL}, {3, "type", PK_STRING, NULL},
	{5, "immutable", PK_BOOLPTR, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc service_account_desc[] = {
	{1, "metadata", PK_MSG, object_meta_desc},
	{3, "automountServiceAccountToken", PK_BOOLPTR, NULL},
	{0, NULL, PK_STRING, NULL},
};

/* The pod fields `kubectl create deployment` fills (and the common ones
 * next to them); others are skipped, as for any unknown field. */
static const struct pb_desc container_port_desc[] = {
	{1, "name", PK_STRING, NULL}, {2, "hostPort", PK_INT, NULL},
	{3, "containerPort", PK_INT, NULL}, {4, "protocol", PK_STRING, NULL},
	{5, "hostIP", PK_STRING, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc env_var_desc[] = {
	{1, "name", PK_STRING, NULL}, {2, "value", PK_STRING, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc container_desc[] = {
	{1, "name", PK_STRING, NULL}, {2, "image", PK_STRING, NULL},
	{3, "command", PK_STRINGS, NULL}, {4, "args", PK_STRINGS, NULL},
	{5, "workingDir", PK_STRING, NULL}, {6, "ports", PK_MSGS, container_port_desc},
	{7, "env", PK_MSGS, env_var_desc}, {13, "terminationMessagePath", PK_STRING, NULL},
	{14, "imagePullPolicy", PK_STRING, NULL}, {16, "stdin", PK_BOOL, NULL},
	{17, "stdinOnce", PK_BOOL, NULL}, {18, "tty", PK_BOOL, NULL},
	{20, "terminationMessagePolicy", PK_STRING, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc toleration_desc[] = {
	{1, "key", PK_STRING, NULL}, {2, "operator", PK_STRING, NULL},
	{3, "value", PK_STRING, NULL}, {4, "effect", PK_STRING, NULL},
	{5, "tolerationSeconds", PK_INTPTR, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc pod_spec_desc[] = {
	{20, "initContainers", PK_MSGS, container_desc}, {2, "containers", PK_MSGS, container_desc},
	{3, "restartPolicy", PK_STRING, NULL},
	{4, "terminationGracePeriodSeconds", PK_INTPTR, NULL},
	{5, "activeDeadlineSeconds", PK_INTPTR, NULL}, {6, "dnsPolicy", PK_STRING, NULL},
	{7, "nodeSelector", PK_MAP, NULL}, {8, "serviceAccountName", PK_STRING, NULL},
	{10, "nodeName", PK_STRING, NULL}, {11, "hostNetwork", PK_BOOL, NULL},
	{16, "hostname", PK_STRING, NULL}, {17, "subdomain", PK_STRING, NULL},
	{19, "schedulerName", PK_STRING, NULL}, {22, "tolerations", PK_MSGS, toleration_desc},
	{24, "priorityClassName", PK_STRING, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc pod_template_desc[] = {
	{1, "metadata", PK_MSG, object_meta_desc}, {2, "spec", PK_MSG, pod_spec_desc},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc selector_requirement_desc[] = {
	{1, "key", PK_STRING, NULL}, {2, "operator", PK_STRING, NULL},
	{3, "values", PK_STRINGS, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc label_selector_desc[] = {
	{1, "matchLabels", PK_MAP, NULL},
	{2, "matchExpressions", PK_MSGS, selector_requirement_desc},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc rolling_update_desc[] = {
	{1, "maxUnavailable", PK_INTORSTR, NULL}, {2, "maxSurge", PK_INTORSTR, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc strategy_desc[] = {
	{1, "type", PK_STRING, NULL}, {2, "rollingUpdate", PK_MSG, rolling_update_desc},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc deployment_spec_desc[] = {
	{1, "replicas", PK_INTPTR, NULL}, {2, "selector", PK_MSG, label_selector_desc},
	{3, "template", PK_MSG, pod_template_desc}, {4, "strategy", PK_MSG, strategy_desc},
	{5, "minReadySeconds", PK_INT, NULL}, {6, "revisionHistoryLimit", PK_INTPTR, NULL},
	{7, "paused", PK_BOOL, NULL}, {9, "progressDeadlineSeconds", PK_INTPTR, NULL},
	{0, NULL, PK_STRING, NULL},
};

static const struct pb_desc deployment_desc[] = {
	{1, "metadata", PK_MSG, object_meta_desc}, {2, "spec", PK_MSG, deployment_spec_desc},
	{0, NULL, PK_STRING, NULL},
};

static const struct {
	const char *api_version;
	const char *kind;
	const struct pb_desc *desc;
} pb_types[] = {
	{"v1", "Service", service_desc},
	{"v1", "Namespace", namespace_desc},
	{"v1", "ConfigMap", config_map_desc},
	{"v1", "Secret", secret_desc},
	{"v1", "ServiceAccount", service_account_desc},
	{"apps/v1", "Deployment", deployment_desc},
};

static json_t *pb_string(const struct pb_field *f)
{
	return json_stringn(f->len ? (const char *)f->bytes : "", f->len);
}

static json_t *decode_msg(const struct pb_desc *desc, const uint8_t *p, size_t len, int depth);

/* {key=1, value=2} of a map<string,string> (or map<string,bytes>, values
 * then base64 as JSON has them) entry into o. */
static int decode_map_entry(json_t *o, const struct pb_field *f, bool bytes)
{
	const uint8_t *p = f->bytes, *end = f->bytes + f->len;
	struct pb_field g;
	json_t *key = NULL, *val = NULL;
	int rv;
	while ((rv = next_field(&p, end, &g)) == 1) {
		if (g.wire != WIRE_LEN || (g.number != 1 && g.number != 2))
			continue;
		json_t **slot = g.number == 1 ? &key : &val;
		json_decref(*slot);
		*slot = bytes && g.number == 2 ? jsonx_bytes(g.len ? g.bytes : (const uint8_t *)"", g.len)
					       : pb_string(&g);
		if (*slot == NULL)
			rv = -1;
		if (rv < 0)
			break;
	}
	if (rv == 0 && key != NULL)
		json_object_set_new(o, json_string_value(key),
				    val != NULL ? json_incref(val) : json_string(""));
	json_decref(key);
	json_decref(val);
	return rv < 0 ? -1 : 0;
}

static json_t *decode_int_or_string(const struct pb_field *f)
{
	const uint8_t *p = f->bytes, *end = f->bytes + f->len;
	struct pb_field g;
	uint64_t type = 0;
	int64_t iv = 0;
	json_t *sv = NULL;
	int rv;
	while ((rv = next_field(&p, end, &g)) == 1) {
		if (g.number == 1 && g.wire == WIRE_VARINT) {
			type = g.varint;
		} else if (g.number == 2 && g.wire == WIRE_VARINT) {
			iv = (int64_t)g.varint;
		} else if (g.number == 3 && g.wire == WIRE_LEN) {
			json_decref(sv);
			sv = pb_string(&g);
			if (sv == NULL)
				return NULL;
		}
	}
	if (rv < 0) {
		json_decref(sv);
		return NULL;
	}
	if (type == 1)
		return sv != NULL ? sv : json_string("");
	json_decref(sv);
	return json_integer((json_int_t)(int32_t)iv);
}

static int decode_field(json_t *o, const struct pb_desc *d, const struct pb_field *f, int depth)
{
	json_t *v = NULL, *arr;
	bool want_len = d->kind == PK_STRING || d->kind == PK_MSG || d->kind == PK_MAP ||
			d->kind == PK_STRINGS || d->kind == PK_MSGS || d->kind == PK_INTORSTR ||
			d->kind == PK_BYTESMAP;
	if (want_len != (f->wire == WIRE_LEN))
		return -1;
	switch (d->kind) {
	case PK_STRING:
		if (f->len == 0)
			return 0;
		v = pb_string(f);
		break;
	case PK_INT:
		if (f->varint == 0)
			return 0;
		v = json_integer((json_int_t)(int64_t)f->varint);
		break;
	case PK_BOOL:
		if (f->varint == 0)
			return 0;
		v = json_true();
		break;
	case PK_BOOLPTR:
		v = json_boolean(f->varint != 0);
		break;
	case PK_INTPTR:
		v = json_integer((json_int_t)(int64_t)f->varint);
		break;
	case PK_MSG:
		v = decode_msg(d->sub, f->bytes, f->len, depth + 1);
		break;
	case PK_INTORSTR:
		v = decode_int_or_string(f);
		break;
	case PK_MAP:
	case PK_BYTESMAP:
		v = json_object_get(o, d->name);
		if (v == NULL) {
			v = json_object();
			json_object_set_new(o, d->name, v);
		}
		return decode_map_entry(v, f, d->kind == PK_BYTESMAP);
	case PK_STRINGS:
	case PK_MSGS:
		arr = json_object_get(o, d->name);
		if (arr == NULL) {
			arr = json_array();
			json_object_set_new(o, d->name, arr);
		}
		v = d->kind == PK_STRINGS ? pb_string(f)
					  : decode_msg(d->sub, f->bytes, f->len, depth + 1);
		if (v == NULL)
			return -1;
		json_array_append_new(arr, v);
		return 0;
	}
	if (v == NULL)
		return -1;
	json_object_set_new(o, d->name, v);
	return 0;
}

static json_t *decode_msg(const struct pb_desc *desc, const uint8_t *p, size_t len, int depth)
{
	const uint8_t *end = p + len;
	struct pb_field f;
	json_t *o;
	int rv;
	if (depth > PB_MAX_DEPTH)
		return NULL;
	o = json_object();
	while ((rv = next_field(&p, end, &f)) == 1) {
		const struct pb_desc *d = desc;
		while (d->name != NULL && d->number != f.number)
			d++;
		if (d->name == NULL)
			continue;   /* a field of a newer version */
		if (decode_field(o, d, &f, depth) != 0) {
			rv = -1;
			break;
		}
	}
	if (rv < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

bool pb_object_known(const char *api_version, const char *kind)
{
	for (size_t i = 0; i < sizeof pb_types / sizeof pb_types[0]; i++)
		if (strcmp(pb_types[i].api_version, api_version) == 0 &&
		    strcmp(pb_types[i].kind, kind) == 0)
			return true;
	return false;
}

json_t *pb_object_to_json(const char *api_version, const char *kind, const uint8_t *raw,
			  size_t len, char *errmsg)
{
	for (size_t i = 0; i < sizeof pb_types / sizeof pb_types[0]; i++) {
		json_t *o;
		if (strcmp(pb_types[i].api_version, api_version) != 0 ||
		    strcmp(pb_types[i].kind, kind) != 0)
			continue;
		o = decode_msg(pb_types[i].desc, raw, len, 0);
		if (o == NULL) {
			cap_errmsg_printf(errmsg, "malformed %s protobuf body", kind);
			return NULL;
		}
		json_object_set_new(o, "apiVersion", json_string(api_version));
		json_object_set_new(o, "kind", json_string(kind));
		return o;
	}
	cap_errmsg_printf(errmsg, "no protobuf decoding for %s %s", api_version, kind);
	return NULL;
}
