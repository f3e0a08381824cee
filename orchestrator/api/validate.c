/* validate.c — Kubernetes API validation: names, labels and the field rules
 * of the built-in resources, worded as the API server words them. */
#include "orchestrator/api/validate.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "lib/cidr.h"
#include "orchestrator/api/selector.h"

/* ---- names (k8s.io/apimachinery/pkg/util/validation) ---- */

#define DNS1123_LABEL_FMT "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
#define DNS1123_SUBDOMAIN_FMT DNS1123_LABEL_FMT "(\\." DNS1123_LABEL_FMT ")*"
#define QUALIFIED_NAME_FMT "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
#define LABEL_VALUE_FMT "(" QUALIFIED_NAME_FMT ")?"

/* Kubernetes joins its examples with "', " and " or ", which leaves two
 * spaces between them; kubectl users see exactly this text. */
static const char dns1123_label_msg[] =
	"a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
	"and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
	"regex used for validation is '" DNS1123_LABEL_FMT "')";
static const char dns1123_subdomain_msg[] =
	"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
	"'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
	"regex used for validation is '" DNS1123_SUBDOMAIN_FMT "')";
#define QUALIFIED_NAME_ERR \
	"must consist of alphanumeric characters, '-', '_' or '.', and must start and end with " \
	"an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "  \
	"for validation is '" QUALIFIED_NAME_FMT "')"
static const char label_value_msg[] =
	"a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
	"or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
	"'my_value',  or '12345', regex used for validation is '" LABEL_VALUE_FMT "')";

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return isalnum((unsigned char)c) != 0;
}

static bool dns1123_label_ok(const char *s, size_t n)
{
	if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool dns1123_subdomain_ok(const char *s, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (!dns1123_label_ok(s + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

/* ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], over n bytes. */
static bool qualified_part_ok(const char *s, size_t n)
{
	if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

const char *validate_dns1123_label(const char *name)
{
	size_t n = strlen(name);

	if (n > 63)
		return "must be no more than 63 characters";
	if (!dns1123_label_ok(name, n))
		return dns1123_label_msg;
	return NULL;
}

const char *validate_dns1123_subdomain(const char *name)
{
	size_t n = strlen(name);

	if (n > 253)
		return "must be no more than 253 characters";
	if (!dns1123_subdomain_ok(name, n))
		return dns1123_subdomain_msg;
	return NULL;
}

static char name_msg[1024];

const char *validate_qualified_name(const char *name)
{
	const char *slash = strchr(name, '/');
	const char *part = name;

	if (slash != NULL) {
		if (strchr(slash + 1, '/') != NULL)
			return "a qualified name " QUALIFIED_NAME_ERR
			       " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
		size_t plen = (size_t)(slash - name);
		if (plen == 0)
			return "prefix part must be non-empty";
		if (plen > 253)
			return "prefix part must be no more than 253 characters";
		if (!dns1123_subdomain_ok(name, plen)) {
			snprintf(name_msg, sizeof(name_msg), "prefix part %s", dns1123_subdomain_msg);
			return name_msg;
		}
		part = slash + 1;
	}
	size_t n = strlen(part);
	if (n == 0)
		return "name part must be non-empty";
	if (n > 63)
		return "name part must be no more than 63 characters";
	if (!qualified_part_ok(part, n))
		return "name part " QUALIFIED_NAME_ERR;
	return NULL;
}

const char *validate_label_value(const char *value)
{
	size_t n = strlen(value);

	if (n > 63)
		return "must be no more than 63 characters";
	if (n > 0 && !qualified_part_ok(value, n))
		return label_value_msg;
	return NULL;
}

/* ---- causes ---- */

struct errs {
	json_t *causes; /* array, created on the first error */
};

static void add_cause(struct errs *e, const char *reason, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void add_cause(struct errs *e, const char *reason, const char *field, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e->causes == NULL)
		e->causes = json_array();
	json_array_append_new(e->causes, json_pack("{s:s, s:s, s:s}", "reason", reason, "message",
						   msg, "field", field));
}

/* A value as the API server quotes it in "Invalid value: ...": strings in
 * double quotes, numbers bare, anything else as JSON. */
static void quote_value(json_t *v, char *buf, size_t len)
{
	if (json_is_string(v)) {
		snprintf(buf, len, "\"%s\"", json_string_value(v));
	} else if (json_is_integer(v)) {
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	} else {
		char *d = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
		snprintf(buf, len, "%s", d != NULL ? d : "null");
		free(d);
	}
}

static void invalid(struct errs *e, const char *field, json_t *v, const char *detail)
{
	char q[512];

	quote_value(v, q, sizeof(q));
	add_cause(e, "FieldValueInvalid", field, "Invalid value: %s: %s", q, detail);
}

static void invalid_str(struct errs *e, const char *field, const char *v, const char *detail)
{
	add_cause(e, "FieldValueInvalid", field, "Invalid value: \"%s\": %s", v, detail);
}

static void required(struct errs *e, const char *field, const char *detail)
{
	if (detail != NULL)
		add_cause(e, "FieldValueRequired", field, "Required value: %s", detail);
	else
		add_cause(e, "FieldValueRequired", field, "Required value");
}

static void forbidden(struct errs *e, const char *field, const char *detail)
{
	add_cause(e, "FieldValueForbidden", field, "Forbidden: %s", detail);
}

/* Unsupported value: "X": supported values: "A", "B" (sorted, as Go sorts). */
static void not_supported(struct errs *e, const char *field, const char *v,
			  const char *const supported[])
{
	char list[512] = "";
	size_t n = 0;

	for (int i = 0; supported[i] != NULL; i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s\"%s\"", i == 0 ? "" : ", ",
				      supported[i]);
	add_cause(e, "FieldValueNotSupported", field, "Unsupported value: \"%s\": supported values: %s",
		  v, list);
}

/* Checks an optional string field against an enum. */
static void check_enum(struct errs *e, json_t *obj, const char *key, const char *field,
		       const char *const supported[])
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL || json_is_null(v))
		return;
	for (int i = 0; supported[i] != NULL; i++)
		if (json_is_string(v) && strcmp(json_string_value(v), supported[i]) == 0)
			return;
	not_supported(e, field, json_is_string(v) ? json_string_value(v) : "", supported);
}

static void check_port(struct errs *e, json_t *v, const char *field, bool zero_ok)
{
	if (v == NULL || json_is_null(v))
		return;
	if (!json_is_integer(v) || json_integer_value(v) > 65535 || json_integer_value(v) < 0 ||
	    (!zero_ok && json_integer_value(v) == 0))
		invalid(e, field, v, "must be between 1 and 65535, inclusive");
}

static void check_nonneg(struct errs *e, json_t *obj, const char *key, const char *field)
{
	json_t *v = json_object_get(obj, key);

	if (v != NULL && !json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) < 0))
		invalid(e, field, v, "must be greater than or equal to 0");
}

/* ---- metadata ---- */

static const char dns1035_label_msg[] =
	"a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
	"an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
	"'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

static const char *validate_dns1035_label(const char *name)
{
	size_t n = strlen(name);

	if (n > 63)
		return "must be no more than 63 characters";
	if (n == 0 || !(name[0] >= 'a' && name[0] <= 'z') || !dns1123_label_ok(name, n))
		return dns1035_label_msg;
	return NULL;
}

enum name_rule { NAME_SUBDOMAIN, NAME_LABEL, NAME_DNS1035 };

static void check_labels(struct errs *e, json_t *labels, const char *field)
{
	const char *k;
	json_t *v;
	const char *m;

	json_object_foreach(labels, k, v) {
		m = validate_qualified_name(k);
		if (m != NULL)
			invalid_str(e, field, k, m);
		if (!json_is_string(v)) {
			invalid(e, field, v, "label values must be strings");
			continue;
		}
		m = validate_label_value(json_string_value(v));
		if (m != NULL)
			invalid_str(e, field, json_string_value(v), m);
	}
}

static void check_annotations(struct errs *e, json_t *ann, const char *field)
{
	const char *k;
	json_t *v;
	size_t total = 0;

	json_object_foreach(ann, k, v) {
		const char *m = validate_qualified_name(k);
		if (m != NULL)
			invalid_str(e, field, k, m);
		total += strlen(k) + (json_is_string(v) ? json_string_length(v) : 0);
	}
	if (total > 256 * 1024)
		add_cause(e, "FieldValueTooLong", field, "Too long: must have at most %d bytes",
			  256 * 1024);
}

static void check_meta(struct errs *e, json_t *obj, enum name_rule rule)
{
	json_t *meta = json_object_get(obj, "metadata");
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *gen = json_string_value(json_object_get(meta, "generateName"));
	const char *m = NULL;

	if (name == NULL || *name == '\0') {
		if (gen == NULL || *gen == '\0')
			required(e, "metadata.name", "name or generateName is required");
	} else {
		if (rule == NAME_SUBDOMAIN)
			m = validate_dns1123_subdomain(name);
		else if (rule == NAME_LABEL)
			m = validate_dns1123_label(name);
		else
			m = validate_dns1035_label(name);
		if (m != NULL)
			invalid_str(e, "metadata.name", name, m);
	}
	check_labels(e, json_object_get(meta, "labels"), "metadata.labels");
	check_annotations(e, json_object_get(meta, "annotations"), "metadata.annotations");
}

/* ---- pods ---- */

static const char *const restart_policies[] = { "Always", "Never", "OnFailure", NULL };
static const char *const pull_policies[] = { "Always", "IfNotPresent", "Never", NULL };
static const char *const protocols[] = { "SCTP", "TCP", "UDP", NULL };
static const char *const dns_policies[] = { "ClusterFirst", "ClusterFirstWithHostNet", "Default",
					    "None", NULL };

static void check_containers(struct errs *e, json_t *list, const char *path, json_t *seen)
{
	json_t *c, *p;
	size_t i, j;
	char f[256], g[320];

	json_array_foreach(list, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		const char *image = json_string_value(json_object_get(c, "image"));

		snprintf(f, sizeof(f), "%s[%zu].name", path, i);
		if (name == NULL || *name == '\0') {
			required(e, f, NULL);
		} else {
			const char *m = validate_dns1123_label(name);
			if (m != NULL)
				invalid_str(e, f, name, m);
			if (json_object_get(seen, name) != NULL)
				add_cause(e, "FieldValueDuplicate", f, "Duplicate value: \"%s\"", name);
			json_object_set_new(seen, name, json_true());
		}
		snprintf(f, sizeof(f), "%s[%zu].image", path, i);
		if (image == NULL || *image == '\0')
			required(e, f, NULL);
		snprintf(f, sizeof(f), "%s[%zu].imagePullPolicy", path, i);
		check_enum(e, c, "imagePullPolicy", f, pull_policies);
		json_array_foreach(json_object_get(c, "ports"), j, p) {
			snprintf(g, sizeof(g), "%s[%zu].ports[%zu].containerPort", path, i, j);
			if (json_object_get(p, "containerPort") == NULL)
				required(e, g, NULL);
			check_port(e, json_object_get(p, "containerPort"), g, false);
			snprintf(g, sizeof(g), "%s[%zu].ports[%zu].hostPort", path, i, j);
			check_port(e, json_object_get(p, "hostPort"), g, true);
			snprintf(g, sizeof(g), "%s[%zu].ports[%zu].protocol", path, i, j);
			check_enum(e, p, "protocol", g, protocols);
		}
	}
}

/* path is "spec" for a Pod, "spec.template.spec" for a template. */
static void check_pod_spec(struct errs *e, json_t *spec, const char *path)
{
	json_t *seen = json_object();
	char f[256];

	snprintf(f, sizeof(f), "%s.containers", path);
	if (json_array_size(json_object_get(spec, "containers")) == 0)
		required(e, f, NULL);
	check_containers(e, json_object_get(spec, "containers"), f, seen);
	snprintf(f, sizeof(f), "%s.initContainers", path);
	check_containers(e, json_object_get(spec, "initContainers"), f, seen);
	json_decref(seen);
	snprintf(f, sizeof(f), "%s.restartPolicy", path);
	check_enum(e, spec, "restartPolicy", f, restart_policies);
	snprintf(f, sizeof(f), "%s.dnsPolicy", path);
	check_enum(e, spec, "dnsPolicy", f, dns_policies);
	snprintf(f, sizeof(f), "%s.terminationGracePeriodSeconds", path);
	check_nonneg(e, spec, "terminationGracePeriodSeconds", f);
	snprintf(f, sizeof(f), "%s.activeDeadlineSeconds", path);
	json_t *ads = json_object_get(spec, "activeDeadlineSeconds");
	if (ads != NULL && !json_is_null(ads) && (!json_is_integer(ads) || json_integer_value(ads) < 1))
		invalid(e, f, ads, "must be between 1 and 2147483647, inclusive");
}

/* Only images, activeDeadlineSeconds and added tolerations may change in
 * a pod's spec after creation (plus nodeName set once by binding). */
static void check_pod_update(struct errs *e, json_t *spec, json_t *old_spec)
{
	json_t *a = json_deep_copy(old_spec), *b = json_deep_copy(spec);
	json_t *c;
	size_t i;
	const char *lists[] = { "containers", "initContainers" };

	if (a == NULL || b == NULL)
		goto done;
	for (size_t l = 0; l < 2; l++) {
		json_array_foreach(json_object_get(a, lists[l]), i, c)
			json_object_del(c, "image");
		json_array_foreach(json_object_get(b, lists[l]), i, c)
			json_object_del(c, "image");
	}
	json_object_del(a, "activeDeadlineSeconds");
	json_object_del(b, "activeDeadlineSeconds");
	if (json_object_get(a, "nodeName") == NULL)
		json_object_del(b, "nodeName");
	/* Tolerations may only grow: every old one must still be there. */
	json_t *old_tol = json_object_get(a, "tolerations");
	json_t *new_tol = json_object_get(b, "tolerations");
	bool kept = true;
	json_array_foreach(old_tol, i, c) {
		bool found = false;
		json_t *t;
		size_t j;
		json_array_foreach(new_tol, j, t)
			if (json_equal(t, c))
				found = true;
		kept = kept && found;
	}
	if (kept) {
		json_object_del(a, "tolerations");
		json_object_del(b, "tolerations");
	}
	if (!json_equal(a, b))
		forbidden(e, "spec",
			  "pod updates may not change fields other than `spec.containers[*].image`,"
			  "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
			  "`spec.tolerations` (only additions to existing tolerations),"
			  "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
			  "previously negative)");
done:
	json_decref(a);
	json_decref(b);
}

static void validate_pod(struct errs *e, json_t *obj, json_t *old)
{
	json_t *spec = json_object_get(obj, "spec");

	check_meta(e, obj, NAME_SUBDOMAIN);
	check_pod_spec(e, spec, "spec");
	if (old != NULL)
		check_pod_update(e, spec, json_object_get(old, "spec"));
}

/* ---- workloads ---- */

/* Go's %#v of a map[string]string, which the API server prints for labels:
 * map[string]string{"app":"web", "tier":"fe"} with sorted keys. */
static void go_map(json_t *m, char *buf, size_t len)
{
	const char *keys[128];
	size_t n = 0, off;
	const char *k;
	json_t *v;

	json_object_foreach(m, k, v)
		if (n < 128)
			keys[n++] = k;
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
			const char *x = keys[j];
			keys[j] = keys[j - 1];
			keys[j - 1] = x;
		}
	off = (size_t)snprintf(buf, len, "map[string]string{");
	for (size_t i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s\"%s\":\"%s\"", i == 0 ? "" : ", ",
					keys[i], json_string_value(json_object_get(m, keys[i])));
	if (off < len)
		snprintf(buf + off, len - off, "}");
}

static void validate_workload(struct errs *e, const char *what, json_t *obj, json_t *old,
			      bool has_replicas)
{
	json_t *spec = json_object_get(obj, "spec");
	json_t *sel = json_object_get(spec, "selector");
	json_t *tmpl = json_object_get(spec, "template");
	json_t *tlabels = json_object_get(json_object_get(tmpl, "metadata"), "labels");
	struct label_selector *s = NULL;
	char errmsg[256];
	char detail[128];

	check_meta(e, obj, NAME_SUBDOMAIN);
	if (sel == NULL || json_is_null(sel)) {
		required(e, "spec.selector", NULL);
	} else if (label_selector_from_json(sel, &s, errmsg) != 0) {
		invalid(e, "spec.selector", sel, errmsg);
	} else if (label_selector_empty(s)) {
		snprintf(detail, sizeof(detail), "empty selector is invalid for %s", what);
		invalid(e, "spec.selector", sel, detail);
	} else if (!label_selector_matches(s, tlabels)) {
		char m[1024];
		go_map(tlabels, m, sizeof(m));
		add_cause(e, "FieldValueInvalid", "spec.template.metadata.labels",
			  "Invalid value: %s: `selector` does not match template `labels`", m);
	}
	label_selector_free(s);
	if (has_replicas)
		check_nonneg(e, spec, "replicas", "spec.replicas");
	check_nonneg(e, spec, "revisionHistoryLimit", "spec.revisionHistoryLimit");
	check_nonneg(e, spec, "minReadySeconds", "spec.minReadySeconds");
	check_labels(e, tlabels, "spec.template.metadata.labels");
	if (tmpl == NULL || json_is_null(tmpl)) {
		required(e, "spec.template", NULL);
	} else {
		json_t *ps = json_object_get(tmpl, "spec");
		static const char *const always[] = { "Always", NULL };
		check_pod_spec(e, ps, "spec.template.spec");
		/* Controllers restart pods themselves: templates accept only Always. */
		json_t *rp = json_object_get(ps, "restartPolicy");
		if (json_is_string(rp) && strcmp(json_string_value(rp), "Always") != 0 &&
		    strcmp(what, "job") != 0)
			not_supported(e, "spec.template.spec.restartPolicy", json_string_value(rp),
				      always);
	}
	if (old != NULL) {
		json_t *old_sel = json_object_get(json_object_get(old, "spec"), "selector");
		if (old_sel != NULL && sel != NULL && !json_equal(old_sel, sel))
			invalid(e, "spec.selector", sel, "field is immutable");
	}
}

static void validate_deployment(struct errs *e, json_t *obj, json_t *old)
{
	json_t *spec = json_object_get(obj, "spec");
	json_t *strategy = json_object_get(spec, "strategy");
	static const char *const types[] = { "Recreate", "RollingUpdate", NULL };

	validate_workload(e, "deployment", obj, old, true);
	check_enum(e, strategy, "type", "spec.strategy.type", types);
	const char *type = json_string_value(json_object_get(strategy, "type"));
	json_t *ru = json_object_get(strategy, "rollingUpdate");
	if (type != NULL && strcmp(type, "Recreate") == 0 && ru != NULL && !json_is_null(ru))
		forbidden(e, "spec.strategy.rollingUpdate",
			  "may not be specified when strategy `type` is 'Recreate'");
	if (json_is_object(ru)) {
		json_t *mu = json_object_get(ru, "maxUnavailable");
		json_t *ms = json_object_get(ru, "maxSurge");
		bool mu0 = (json_is_integer(mu) && json_integer_value(mu) == 0) ||
			   (json_is_string(mu) && strcmp(json_string_value(mu), "0%") == 0);
		bool ms0 = (json_is_integer(ms) && json_integer_value(ms) == 0) ||
			   (json_is_string(ms) && strcmp(json_string_value(ms), "0%") == 0);
		if (mu0 && ms0)
			invalid(e, "spec.strategy.rollingUpdate.maxUnavailable", mu,
				"may not be 0 when `maxSurge` is 0");
	}
	json_t *pds = json_object_get(spec, "progressDeadlineSeconds");
	json_t *mrs = json_object_get(spec, "minReadySeconds");
	if (json_is_integer(pds) && json_integer_value(pds) <= json_integer_value(mrs))
		invalid(e, "spec.progressDeadlineSeconds", pds,
			"must be greater than minReadySeconds");
}

/* ---- services ---- */

/* A plain dotted-quad IPv4 address (Services are single-stack IPv4 here). */
static bool ipv4_ok(const char *s)
{
	int parts = 0;
	while (parts < 4) {
		int digits = 0, v = 0;
		const char *start = s;
		while (*s >= '0' && *s <= '9' && digits < 4) {
			v = v * 10 + (*s - '0');
			digits++;
			s++;
		}
		if (digits == 0 || digits > 3 || v > 255 || (digits > 1 && *start == '0'))
			return false;
		if (++parts < 4 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

static void validate_service(struct errs *e, json_t *obj, json_t *old)
{
	static const char *const types[] = { "ClusterIP", "ExternalName", "LoadBalancer",
					     "NodePort", NULL };
	static const char *const affinities[] = { "ClientIP", "None", NULL };
	json_t *spec = json_object_get(obj, "spec");
	json_t *ports = json_object_get(spec, "ports");
	const char *type = json_string_value(json_object_get(spec, "type"));
	const char *cip = json_string_value(json_object_get(spec, "clusterIP"));
	json_t *p;
	size_t i;
	char f[128];

	check_meta(e, obj, NAME_DNS1035);
	if (type == NULL)
		type = "ClusterIP";
	check_enum(e, spec, "type", "spec.type", types);
	check_enum(e, spec, "sessionAffinity", "spec.sessionAffinity", affinities);
	bool external_name = strcmp(type, "ExternalName") == 0;
	bool headless = cip != NULL && strcmp(cip, "None") == 0;
	if (json_array_size(ports) == 0 && !external_name && !headless)
		required(e, "spec.ports", NULL);
	if (external_name) {
		const char *en = json_string_value(json_object_get(spec, "externalName"));
		size_t n = en != NULL ? strlen(en) : 0;
		if (en == NULL || *en == '\0') {
			required(e, "spec.externalName", NULL);
		} else {
			/* A DNS name; one trailing dot (fully qualified) is allowed. */
			if (n > 1 && en[n - 1] == '.')
				n--;
			if (n > 253 || !dns1123_subdomain_ok(en, n))
				invalid_str(e, "spec.externalName", en, dns1123_subdomain_msg);
		}
		if ((cip != NULL && *cip != '\0') ||
		    json_array_size(json_object_get(spec, "clusterIPs")) > 0)
			forbidden(e, "spec.clusterIPs", "may not be set for ExternalName services");
	} else if (cip != NULL && *cip != '\0' && strcmp(cip, "None") != 0 && !ipv4_ok(cip)) {
		invalid_str(e, "spec.clusterIPs[0]", cip,
			    "must be empty, 'None', or a valid IP address");
	} else if (headless && (strcmp(type, "NodePort") == 0 ||
				strcmp(type, "LoadBalancer") == 0)) {
		char m[96];
		snprintf(m, sizeof m, "may not be set to 'None' for %s services", type);
		invalid_str(e, "spec.clusterIPs[0]", cip, m);
	}
	check_labels(e, json_object_get(spec, "selector"), "spec.selector");
	json_array_foreach(ports, i, p) {
		json_t *np = json_object_get(p, "nodePort");
		const char *name = json_string_value(json_object_get(p, "name"));
		const char *proto = json_string_value(json_object_get(p, "protocol"));

		/* One Service port per (port, protocol); Kubernetes prints the
		 * key as Go's %#v of a ServicePort holding just those two. */
		for (size_t j = 0; j < i; j++) {
			json_t *o = json_array_get(ports, j);
			const char *op = json_string_value(json_object_get(o, "protocol"));
			if (json_is_integer(json_object_get(p, "port")) &&
			    json_equal(json_object_get(o, "port"), json_object_get(p, "port")) &&
			    strcmp(op ? op : "TCP", proto ? proto : "TCP") == 0) {
				snprintf(f, sizeof(f), "spec.ports[%zu]", i);
				add_cause(e, "FieldValueDuplicate", f,
					  "Duplicate value: core.ServicePort{Name:\"\", Protocol:\"%s\", "
					  "AppProtocol:(*string)(nil), Port:%" JSON_INTEGER_FORMAT ", "
					  "TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, "
					  "NodePort:0}", proto ? proto : "TCP",
					  json_integer_value(json_object_get(p, "port")));
				break;
			}
		}

		snprintf(f, sizeof(f), "spec.ports[%zu].name", i);
		if (json_array_size(ports) > 1 && (name == NULL || *name == '\0'))
			required(e, f, NULL);
		if (name != NULL && *name != '\0') {
			const char *m = validate_dns1123_label(name);
			if (m != NULL)
				invalid_str(e, f, name, m);
			for (size_t j = 0; j < i; j++)
				if (json_equal(json_object_get(json_array_get(ports, j), "name"),
					       json_object_get(p, "name")))
					add_cause(e, "FieldValueDuplicate", f, "Duplicate value: \"%s\"",
						  name);
		}
		snprintf(f, sizeof(f), "spec.ports[%zu].port", i);
		if (json_object_get(p, "port") == NULL)
			required(e, f, NULL);
		check_port(e, json_object_get(p, "port"), f, false);
		snprintf(f, sizeof(f), "spec.ports[%zu].protocol", i);
		check_enum(e, p, "protocol", f, protocols);
		snprintf(f, sizeof(f), "spec.ports[%zu].targetPort", i);
		if (json_is_integer(json_object_get(p, "targetPort")))
			check_port(e, json_object_get(p, "targetPort"), f, false);
		snprintf(f, sizeof(f), "spec.ports[%zu].nodePort", i);
		if (np != NULL && !json_is_null(np) && json_integer_value(np) != 0) {
			/* The configured range is the allocator's to check. */
			if (strcmp(type, "NodePort") != 0 && strcmp(type, "LoadBalancer") != 0)
				forbidden(e, f, strcmp(type, "ClusterIP") == 0 ?
							"may not be used when `type` is 'ClusterIP'" :
							"may not be used when `type` is 'ExternalName'");
			else if (!json_is_integer(np) || json_integer_value(np) < 0 ||
				 json_integer_value(np) > 65535)
				invalid(e, f, np, "must be between 1 and 65535, inclusive");
			else
				for (size_t j = 0; j < i; j++) {
					json_t *o = json_array_get(ports, j);
					const char *op = json_string_value(
						json_object_get(o, "protocol"));
					const char *pp = json_string_value(
						json_object_get(p, "protocol"));
					if (json_equal(json_object_get(o, "nodePort"), np) &&
					    strcmp(op ? op : "TCP", pp ? pp : "TCP") == 0) {
						add_cause(e, "FieldValueDuplicate", f,
							  "Duplicate value: %" JSON_INTEGER_FORMAT,
							  json_integer_value(np));
						break;
					}
				}
		}
	}
	{
		json_t *hc = json_object_get(spec, "healthCheckNodePort");
		const char *etp = json_string_value(json_object_get(spec, "externalTrafficPolicy"));
		if (json_is_integer(hc) && json_integer_value(hc) != 0 &&
		    (strcmp(type, "LoadBalancer") != 0 || etp == NULL || strcmp(etp, "Local") != 0))
			invalid(e, "spec.healthCheckNodePort", hc,
				"may only be set when `type` is 'LoadBalancer' and "
				"`externalTrafficPolicy` is 'Local'");
	}
	if (old != NULL) {
		/* The primary cluster IP never changes once set, unless the
		 * Service becomes or stops being ExternalName (Kubernetes words
		 * it on clusterIPs, which follows clusterIP). */
		json_t *oips = json_object_get(json_object_get(old, "spec"), "clusterIPs");
		json_t *nips = json_object_get(spec, "clusterIPs");
		const char *old_type = json_string_value(
			json_object_get(json_object_get(old, "spec"), "type"));
		bool was_external = old_type != NULL && strcmp(old_type, "ExternalName") == 0;
		if (!was_external && !external_name && json_array_size(oips) > 0 &&
		    !json_equal(json_array_get(oips, 0), json_array_get(nips, 0))) {
			char v[512];
			size_t k, len = 0;
			json_t *ip;
			len += (size_t)snprintf(v, sizeof v, "[]string{");
			json_array_foreach(nips, k, ip)
				if (len < sizeof v)
					len += (size_t)snprintf(v + len, sizeof v - len, "%s\"%s\"",
								k ? ", " : "",
								json_string_value(ip) ?: "");
			if (len < sizeof v)
				snprintf(v + len, sizeof v - len, "}");
			add_cause(e, "FieldValueInvalid", "spec.clusterIPs[0]",
				  "Invalid value: %s: may not change once set", v);
		}
	}
}

/* ---- endpoint slices ---- */

static void validate_endpointslice(struct errs *e, json_t *obj, json_t *old)
{
	static const char *const address_types[] = { "FQDN", "IPv4", "IPv6", NULL };
	json_t *at = json_object_get(obj, "addressType"), *ep;
	size_t i;
	char f[96];

	check_meta(e, obj, NAME_SUBDOMAIN);
	if (!json_is_string(at) || json_string_length(at) == 0)
		required(e, "addressType", NULL);
	else
		check_enum(e, obj, "addressType", "addressType", address_types);
	json_array_foreach(json_object_get(obj, "endpoints"), i, ep) {
		size_t n = json_array_size(json_object_get(ep, "addresses"));
		snprintf(f, sizeof(f), "endpoints[%zu].addresses", i);
		if (n == 0)
			required(e, f, "must contain at least 1 address");
		else if (n > 100)
			add_cause(e, "FieldValueTooMany", f, "Too many: %zu: must have at most 100 items",
				  n);
	}
	if (old != NULL && json_is_string(at) &&
	    !json_equal(at, json_object_get(old, "addressType")))
		invalid(e, "addressType", at, "field is immutable");
}

/* ---- nodes ---- */

/* "a.b.c.d/n" or an IPv6 address with a prefix up to 128; host bits may be
 * set, as Go's net.ParseCIDR allows. */
static bool cidr_ok(const char *s)
{
	struct cidr c;
	char ip[64];
	const char *slash = strchr(s, '/');
	unsigned char buf[16];
	char *end;
	long n;

	if (cidr_parse_host(s, &c, NULL) == 0)
		return true;
	if (slash == NULL || (size_t)(slash - s) >= sizeof ip || slash[1] == '\0')
		return false;
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	n = strtol(slash + 1, &end, 10);
	return *end == '\0' && isdigit((unsigned char)slash[1]) && n >= 0 && n <= 128 &&
	       inet_pton(AF_INET6, ip, buf) == 1;
}

/* A Node's pod ranges (set by the node IPAM controller) must be CIDRs, and
 * once set they stay: the node's pods hold addresses from them. */
static void validate_node(struct errs *e, json_t *obj, json_t *old)
{
	json_t *spec = json_object_get(obj, "spec"), *ospec = json_object_get(old, "spec");
	json_t *pc = json_object_get(spec, "podCIDR"), *pcs = json_object_get(spec, "podCIDRs"), *v;
	json_t *opcs = json_object_get(ospec, "podCIDRs"), *opc = json_object_get(ospec, "podCIDR");
	char f[64];
	size_t i;

	check_meta(e, obj, NAME_SUBDOMAIN);
	if (pc != NULL && !json_is_null(pc) &&
	    (!json_is_string(pc) || (json_string_length(pc) > 0 && !cidr_ok(json_string_value(pc)))))
		invalid(e, "spec.podCIDR", pc, "must be a valid CIDR (e.g. 10.244.1.0/24)");
	json_array_foreach(pcs, i, v) {
		snprintf(f, sizeof f, "spec.podCIDRs[%zu]", i);
		if (!json_is_string(v) || !cidr_ok(json_string_value(v)))
			invalid(e, f, v, "must be a valid CIDR (e.g. 10.244.1.0/24)");
	}
	if (json_array_size(pcs) > 2)
		add_cause(e, "FieldValueTooMany", "spec.podCIDRs",
			  "Too many: %zu: must have at most 2 items", json_array_size(pcs));
	if (old == NULL)
		return;
	if ((json_array_size(opcs) > 0 && !json_equal(opcs, pcs)) ||
	    (json_is_string(opc) && json_string_length(opc) > 0 && !json_equal(opc, pc)))
		forbidden(e, "spec.podCIDRs", "node updates may not change podCIDR except from \"\" "
			  "to valid");
}

/* ---- config maps and secrets ---- */

static const char config_key_msg[] =
	"a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
	"'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
	"'[-._a-zA-Z0-9]+')";

static void check_config_keys(struct errs *e, json_t *data, const char *field)
{
	const char *k;
	json_t *v;

	json_object_foreach(data, k, v) {
		bool ok = *k != '\0' && strlen(k) <= 253;
		for (const char *p = k; ok && *p != '\0'; p++)
			ok = is_alnum(*p) || *p == '-' || *p == '_' || *p == '.';
		if (strcmp(k, ".") == 0 || strcmp(k, "..") == 0 || strncmp(k, "..", 2) == 0)
			ok = false;
		if (!ok) {
			char f[320];
			snprintf(f, sizeof(f), "%s[%s]", field, k);
			invalid_str(e, f, k, config_key_msg);
		}
	}
}

static void validate_config(struct errs *e, json_t *obj, json_t *old, bool secret)
{
	check_meta(e, obj, NAME_SUBDOMAIN);
	check_config_keys(e, json_object_get(obj, "data"), "data");
	check_config_keys(e, json_object_get(obj, secret ? "stringData" : "binaryData"),
			  secret ? "stringData" : "binaryData");
	if (old == NULL)
		return;
	if (json_is_true(json_object_get(old, "immutable"))) {
		if (!json_equal(json_object_get(obj, "data"), json_object_get(old, "data")))
			forbidden(e, "data", "field is immutable when `immutable` is set");
		if (!json_is_true(json_object_get(obj, "immutable")))
			forbidden(e, "immutable", "field is immutable when `immutable` is set");
	}
	if (secret) {
		json_t *t = json_object_get(obj, "type");
		json_t *ot = json_object_get(old, "type");
		if (ot != NULL && t != NULL && !json_equal(t, ot))
			invalid(e, "type", t, "field is immutable");
	}
}

/* ---- entry points ---- */

json_t *validate_object(const char *resource, json_t *obj, json_t *old)
{
	struct errs e = { NULL };

	if (resource == NULL || !json_is_object(obj))
		return NULL;
	if (strcmp(resource, "pods") == 0)
		validate_pod(&e, obj, old);
	else if (strcmp(resource, "deployments") == 0)
		validate_deployment(&e, obj, old);
	else if (strcmp(resource, "replicasets") == 0)
		validate_workload(&e, "replicaset", obj, old, true);
	else if (strcmp(resource, "statefulsets") == 0)
		validate_workload(&e, "statefulset", obj, old, true);
	else if (strcmp(resource, "daemonsets") == 0)
		validate_workload(&e, "daemonset", obj, old, false);
	else if (strcmp(resource, "services") == 0)
		validate_service(&e, obj, old);
	else if (strcmp(resource, "namespaces") == 0)
		check_meta(&e, obj, NAME_LABEL);
	else if (strcmp(resource, "endpointslices") == 0)
		validate_endpointslice(&e, obj, old);
	else if (strcmp(resource, "nodes") == 0)
		validate_node(&e, obj, old);
	else if (strcmp(resource, "configmaps") == 0)
		validate_config(&e, obj, old, false);
	else if (strcmp(resource, "secrets") == 0)
		validate_config(&e, obj, old, true);
	else
		check_meta(&e, obj, NAME_SUBDOMAIN);
	return e.causes;
}

char *validate_status_message(const char *kind, const char *name, json_t *causes)
{
	size_t n = json_array_size(causes);
	size_t cap, len = 0;
	char *buf;
	json_t *c;
	size_t i;

	cap = strlen(kind) + (name != NULL ? strlen(name) : 0) + 64;
	buf = malloc(cap);
	if (buf == NULL)
		return NULL;
	len = (size_t)snprintf(buf, cap, "%s \"%s\" is invalid: %s", kind, name != NULL ? name : "",
			       n > 1 ? "[" : "");
	json_array_foreach(causes, i, c) {
		const char *f = json_string_value(json_object_get(c, "field"));
		const char *m = json_string_value(json_object_get(c, "message"));
		size_t need = strlen(f != NULL ? f : "") + strlen(m != NULL ? m : "") + 8;
		if (len + need >= cap) {
			while (len + need >= cap)
				cap *= 2;
			char *nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				return NULL;
			}
			buf = nb;
		}
		len += (size_t)snprintf(buf + len, cap - len, "%s%s%s%s", i == 0 ? "" : ", ",
					f != NULL && *f != '\0' ? f : "",
					f != NULL && *f != '\0' ? ": " : "", m != NULL ? m : "");
	}
	if (n > 1)
		snprintf(buf + len, cap - len, "]");
	return buf;
}
