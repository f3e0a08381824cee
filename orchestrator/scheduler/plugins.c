/* plugins.c — filter and score plugins and quantity parsing for the
 * scheduler (see plugins.h). */
#include "orchestrator/scheduler/plugins.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* kube-scheduler's defaults for pods that request nothing, so that scoring
 * still spreads them (non-zero requests). */
#define SCHED_DEFAULT_MILLI_CPU 100
#define SCHED_DEFAULT_MEMORY (200LL * 1024 * 1024)
#define SCHED_DEFAULT_MAX_PODS 110

/* ---- quantities ---- */

static int mul_check(int64_t a, int64_t b, int64_t *out)
{
	return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

/* value = mantissa * 10^exp10 * bin, then scaled by 10^scale, rounded up. */
static int quantity(const char *s, int scale, int64_t *out)
{
	int64_t mant = 0, bin = 1, v;
	int exp10 = 0, digits = 0;
	bool neg = false, frac = false;
	const char *p = s;

	if (s == NULL || *s == '\0')
		return -1;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	for (; isdigit((unsigned char)*p) || (*p == '.' && !frac); p++) {
		if (*p == '.') {
			frac = true;
			continue;
		}
		if (mant > (INT64_MAX - 9) / 10) {
			/* Digits past int64's precision: keep the magnitude. */
			if (!frac)
				exp10++;
			continue;
		}
		mant = mant * 10 + (*p - '0');
		digits++;
		if (frac)
			exp10--;
	}
	if (digits == 0)
		return -1;
	if ((*p == 'e' || *p == 'E') &&
	    (isdigit((unsigned char)p[1]) || ((p[1] == '+' || p[1] == '-') &&
					      isdigit((unsigned char)p[2])))) {
		char *end;
		long e;

		errno = 0;
		e = strtol(p + 1, &end, 10);
		if (errno != 0 || e > 100 || e < -100 || *end != '\0')
			return -1;
		exp10 += (int)e;
		p = end;
	} else if (*p != '\0') {
		static const struct { const char *sfx; int exp10; int bin; } sfx[] = {
			{"Ki", 0, 10}, {"Mi", 0, 20}, {"Gi", 0, 30}, {"Ti", 0, 40}, {"Pi", 0, 50},
			{"Ei", 0, 60}, {"n", -9, 0}, {"u", -6, 0}, {"m", -3, 0}, {"k", 3, 0},
			{"M", 6, 0}, {"G", 9, 0}, {"T", 12, 0}, {"P", 15, 0}, {"E", 18, 0},
		};
		size_t i;

		for (i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
			if (strcmp(p, sfx[i].sfx) == 0)
				break;
		if (i == sizeof sfx / sizeof sfx[0])
			return -1;
		exp10 += sfx[i].exp10;
		bin = (int64_t)1 << sfx[i].bin;
	}
	exp10 += scale;
	if (mul_check(mant, bin, &v) != 0)
		return -1;
	for (; exp10 > 0; exp10--)
		if (mul_check(v, 10, &v) != 0)
			return -1;
	if (exp10 < 0) {
		int64_t div = 1;
		bool rem = false;

		for (; exp10 < 0 && div <= INT64_MAX / 10; exp10++)
			div *= 10;
		if (exp10 < 0) {
			v = 0;
			rem = mant != 0;
		} else {
			rem = v % div != 0;
			v /= div;
		}
		/* Rounded up, away from zero as the magnitude is taken before the sign. */
		if (rem)
			v += neg ? 0 : 1;
	}
	*out = neg ? -v : v;
	return 0;
}

int sched_quantity_milli(const char *s, int64_t *out)
{
	return quantity(s, 3, out);
}

int sched_quantity_value(const char *s, int64_t *out)
{
	return quantity(s, 0, out);
}

/* A quantity may come as a JSON string or a number. */
static int64_t json_quantity(json_t *q, bool milli)
{
	char buf[64];
	int64_t v = 0;

	if (json_is_integer(q))
		return milli ? json_integer_value(q) * 1000 : json_integer_value(q);
	if (json_is_real(q)) {
		snprintf(buf, sizeof buf, "%.6f", json_real_value(q));
	} else if (json_is_string(q)) {
		snprintf(buf, sizeof buf, "%s", json_string_value(q));
	} else {
		return 0;
	}
	if ((milli ? sched_quantity_milli(buf, &v) : sched_quantity_value(buf, &v)) != 0)
		return 0;
	return v;
}

void sched_node_allocatable(json_t *node, struct sched_resources *out)
{
	json_t *st = json_object_get(node, "status");
	json_t *a = json_object_get(st, "allocatable");

	if (!json_is_object(a) || json_object_size(a) == 0)
		a = json_object_get(st, "capacity");
	out->milli_cpu = json_quantity(json_object_get(a, "cpu"), true);
	out->memory = json_quantity(json_object_get(a, "memory"), false);
	out->pods = json_object_get(a, "pods") ? json_quantity(json_object_get(a, "pods"), false)
					      : SCHED_DEFAULT_MAX_PODS;
}

static void container_requests(json_t *c, struct sched_resources *r)
{
	json_t *res = json_object_get(c, "resources");
	json_t *req = json_object_get(res, "requests");
	json_t *lim = json_object_get(res, "limits");
	json_t *q;

	q = json_object_get(req, "cpu");
	r->milli_cpu = json_quantity(q ? q : json_object_get(lim, "cpu"), true);
	q = json_object_get(req, "memory");
	r->memory = json_quantity(q ? q : json_object_get(lim, "memory"), false);
}

void sched_pod_init(struct sched_pod *p, json_t *pod)
{
	json_t *spec = json_object_get(pod, "spec");
	json_t *c, *port, *overhead;
	struct sched_resources r, init = {0, 0, 0};
	size_t i, j;

	memset(p, 0, sizeof(*p));
	p->pod = pod;
	p->ports = json_array();
	json_array_foreach(json_object_get(spec, "containers"), i, c) {
		container_requests(c, &r);
		p->req.milli_cpu += r.milli_cpu;
		p->req.memory += r.memory;
		p->nonzero.milli_cpu += r.milli_cpu ? r.milli_cpu : SCHED_DEFAULT_MILLI_CPU;
		p->nonzero.memory += r.memory ? r.memory : SCHED_DEFAULT_MEMORY;
		json_array_foreach(json_object_get(c, "ports"), j, port) {
			json_int_t hp = json_integer_value(json_object_get(port, "hostPort"));
			const char *proto = json_string_value(json_object_get(port, "protocol"));
			const char *ip = json_string_value(json_object_get(port, "hostIP"));

			if (hp <= 0)
				continue;
			json_array_append_new(p->ports, json_pack("{s:s, s:s, s:I}", "p",
								  proto ? proto : "TCP", "i",
								  ip ? ip : "", "n", hp));
		}
	}
	/* Init containers run one at a time, before the others. */
	json_array_foreach(json_object_get(spec, "initContainers"), i, c) {
		container_requests(c, &r);
		if (r.milli_cpu > init.milli_cpu)
			init.milli_cpu = r.milli_cpu;
		if (r.memory > init.memory)
			init.memory = r.memory;
	}
	if (init.milli_cpu > p->req.milli_cpu)
		p->req.milli_cpu = init.milli_cpu;
	if (init.memory > p->req.memory)
		p->req.memory = init.memory;
	overhead = json_object_get(spec, "overhead");
	p->req.milli_cpu += json_quantity(json_object_get(overhead, "cpu"), true);
	p->req.memory += json_quantity(json_object_get(overhead, "memory"), false);
	p->req.pods = 1;
	p->nonzero.pods = 1;
	p->node_selector = json_object_get(spec, "nodeSelector");
	p->required_affinity = json_object_get(
		json_object_get(json_object_get(spec, "affinity"), "nodeAffinity"),
		"requiredDuringSchedulingIgnoredDuringExecution");
	p->node_name = json_string_value(json_object_get(spec, "nodeName"));
}

void sched_pod_free(struct sched_pod *p)
{
	json_decref(p->ports);
	p->ports = NULL;
}

/* ---- filters ---- */

static bool reason(struct sched_verdict *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool reason(struct sched_verdict *v, const char *fmt, ...)
{
	va_list ap;

	if (v != NULL && v->n < SCHED_MAX_REASONS) {
		va_start(ap, fmt);
		vsnprintf(v->reasons[v->n++], SCHED_REASON_SIZE, fmt, ap);
		va_end(ap);
	}
	return false;
}

static const char *sget(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

bool sched_tolerates(json_t *tol, json_t *taint)
{
	const char *tk = sget(tol, "key"), *op = sget(tol, "operator"), *te = sget(tol, "effect");
	const char *tv = sget(tol, "value");
	const char *k = sget(taint, "key"), *e = sget(taint, "effect"), *v = sget(taint, "value");

	if (te != NULL && te[0] != '\0' && (e == NULL || strcmp(te, e) != 0))
		return false;
	if (tk == NULL || tk[0] == '\0')
		return op != NULL && strcmp(op, "Exists") == 0;
	if (k == NULL || strcmp(tk, k) != 0)
		return false;
	if (op != NULL && strcmp(op, "Exists") == 0)
		return true;
	return strcmp(tv ? tv : "", v ? v : "") == 0;
}

static bool tolerated(json_t *pod, json_t *taint)
{
	json_t *tol;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(pod, "spec"), "tolerations"), i, tol)
		if (sched_tolerates(tol, taint))
			return true;
	return false;
}

bool sched_filter_unschedulable(const struct sched_node *n, const struct sched_pod *p,
				struct sched_verdict *v)
{
	json_t *taint;
	bool ok;

	if (!json_is_true(json_object_get(json_object_get(n->node, "spec"), "unschedulable")))
		return true;
	taint = json_pack("{s:s, s:s}", "key", "node.kubernetes.io/unschedulable", "effect",
			  "NoSchedule");
	ok = tolerated(p->pod, taint);
	json_decref(taint);
	return ok ? true : reason(v, "node(s) were unschedulable");
}

bool sched_filter_node_name(const struct sched_node *n, const struct sched_pod *p,
			    struct sched_verdict *v)
{
	const char *want = p->node_name;

	if (want == NULL || want[0] == '\0' || strcmp(want, n->name) == 0)
		return true;
	return reason(v, "node(s) didn't match the requested node name");
}

bool sched_filter_taints(const struct sched_node *n, const struct sched_pod *p,
			 struct sched_verdict *v)
{
	json_t *taint;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(n->node, "spec"), "taints"), i, taint) {
		const char *e = sget(taint, "effect");
		const char *val = sget(taint, "value");

		if (e == NULL || (strcmp(e, "NoSchedule") != 0 && strcmp(e, "NoExecute") != 0))
			continue;
		if (!tolerated(p->pod, taint))
			return reason(v, "node(s) had untolerated taint {%s: %s}",
				      sget(taint, "key") ? sget(taint, "key") : "", val ? val : "");
	}
	return true;
}

static bool parse_int(const char *s, long long *out)
{
	char *end;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno == 0 && *end == '\0';
}

static bool value_in(json_t *values, const char *s)
{
	json_t *x;
	size_t i;

	json_array_foreach(values, i, x)
		if (json_is_string(x) && strcmp(json_string_value(x), s) == 0)
			return true;
	return false;
}

/* One node selector requirement against a set of labels (or fields). */
static bool requirement_matches(json_t *req, json_t *labels)
{
	const char *key = sget(req, "key"), *op = sget(req, "operator");
	json_t *values = json_object_get(req, "values");
	const char *have;
	long long a, b;

	if (key == NULL || op == NULL)
		return false;
	have = sget(labels, key);
	if (strcmp(op, "In") == 0)
		return have != NULL && value_in(values, have);
	if (strcmp(op, "NotIn") == 0)
		return have == NULL || !value_in(values, have);
	if (strcmp(op, "Exists") == 0)
		return have != NULL;
	if (strcmp(op, "DoesNotExist") == 0)
		return have == NULL;
	if (strcmp(op, "Gt") == 0 || strcmp(op, "Lt") == 0) {
		if (json_array_size(values) != 1 || !parse_int(have, &a) ||
		    !parse_int(json_string_value(json_array_get(values, 0)), &b))
			return false;
		return strcmp(op, "Gt") == 0 ? a > b : a < b;
	}
	return false;
}

/* A term matches when all its expressions and fields do; an empty term
 * matches nothing (Kubernetes' rule). */
static bool term_matches(json_t *term, json_t *labels, json_t *fields)
{
	json_t *exprs = json_object_get(term, "matchExpressions");
	json_t *mf = json_object_get(term, "matchFields");
	json_t *r;
	size_t i;

	if (json_array_size(exprs) == 0 && json_array_size(mf) == 0)
		return false;
	json_array_foreach(exprs, i, r)
		if (!requirement_matches(r, labels))
			return false;
	json_array_foreach(mf, i, r)
		if (!requirement_matches(r, fields))
			return false;
	return true;
}

bool sched_filter_affinity(const struct sched_node *n, const struct sched_pod *p,
			   struct sched_verdict *v)
{
	json_t *labels, *sel = p->node_selector, *req = p->required_affinity;
	json_t *terms, *term, *fields, *val;
	const char *k;
	size_t i;
	bool any = false;

	/* Most pods constrain nothing: skip the node's labels. */
	if (json_object_size(sel) == 0 && req == NULL)
		return true;
	labels = json_object_get(json_object_get(n->node, "metadata"), "labels");
	json_object_foreach(sel, k, val) {
		const char *have = sget(labels, k);

		if (have == NULL || !json_is_string(val) || strcmp(have, json_string_value(val)) != 0)
			return reason(v, "node(s) didn't match Pod's node affinity/selector");
	}
	if (req == NULL)
		return true;
	terms = json_object_get(req, "nodeSelectorTerms");
	fields = json_pack("{s:s}", "metadata.name", n->name);
	json_array_foreach(terms, i, term) {
		if (term_matches(term, labels, fields)) {
			any = true;
			break;
		}
	}
	json_decref(fields);
	return any ? true : reason(v, "node(s) didn't match Pod's node affinity/selector");
}

bool sched_filter_ports(const struct sched_node *n, const struct sched_pod *p,
			struct sched_verdict *v)
{
	json_t *want, *used;
	size_t i, j;

	json_array_foreach(p->ports, i, want) {
		const char *wi = sget(want, "i");

		json_array_foreach(n->ports, j, used) {
			const char *ui = sget(used, "i");
			bool any_ip = wi[0] == '\0' || strcmp(wi, "0.0.0.0") == 0 || ui[0] == '\0' ||
				      strcmp(ui, "0.0.0.0") == 0;

			if (json_integer_value(json_object_get(want, "n")) ==
				    json_integer_value(json_object_get(used, "n")) &&
			    strcmp(sget(want, "p"), sget(used, "p")) == 0 &&
			    (any_ip || strcmp(wi, ui) == 0))
				return reason(v, "node(s) didn't have free ports for the requested pod ports");
		}
	}
	return true;
}

bool sched_filter_resources(const struct sched_node *n, const struct sched_pod *p,
			    struct sched_verdict *v)
{
	bool ok = true;

	if (n->requested.pods + 1 > n->alloc.pods)
		ok = reason(v, "Too many pods");
	if (p->req.milli_cpu > 0 && n->requested.milli_cpu + p->req.milli_cpu > n->alloc.milli_cpu)
		ok = reason(v, "Insufficient cpu");
	if (p->req.memory > 0 && n->requested.memory + p->req.memory > n->alloc.memory)
		ok = reason(v, "Insufficient memory");
	return ok;
}

bool sched_filter(const struct sched_node *n, const struct sched_pod *p,
		  struct sched_verdict *v)
{
	return sched_filter_unschedulable(n, p, v) && sched_filter_node_name(n, p, v) &&
	       sched_filter_taints(n, p, v) && sched_filter_affinity(n, p, v) &&
	       sched_filter_ports(n, p, v) && sched_filter_resources(n, p, v);
}

/* ---- scores ---- */

static int64_t resource_score(int64_t requested, int64_t capacity, enum sched_score_mode mode)
{
	if (capacity <= 0 || requested > capacity)
		return 0;
	if (mode == SCHED_SCORE_MOST)
		return requested * 100 / capacity;
	return (capacity - requested) * 100 / capacity;
}

int sched_score(const struct sched_node *n, const struct sched_pod *p,
		enum sched_score_mode mode)
{
	int64_t cpu = resource_score(n->nonzero.milli_cpu + p->nonzero.milli_cpu,
				     n->alloc.milli_cpu, mode);
	int64_t mem = resource_score(n->nonzero.memory + p->nonzero.memory, n->alloc.memory, mode);

	return (int)((cpu + mem) / 2);
}

/* ---- the FailedScheduling message ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void sched_fit_message(int nnodes, json_t *counts, char *buf, size_t size)
{
	size_t n = json_object_size(counts), i = 0, off;
	char **parts;
	const char *k;
	json_t *c;

	if (nnodes == 0) {
		snprintf(buf, size, "no nodes available to schedule pods");
		return;
	}
	off = (size_t)snprintf(buf, size, "0/%d nodes are available", nnodes);
	parts = calloc(n ? n : 1, sizeof(*parts));
	if (parts == NULL)
		return;
	json_object_foreach(counts, k, c) {
		size_t len = strlen(k) + 24;

		parts[i] = malloc(len);
		if (parts[i] == NULL)
			break;
		snprintf(parts[i], len, "%lld %s", (long long)json_integer_value(c), k);
		i++;
	}
	/* kube-scheduler sorts the "N reason" strings. */
	qsort(parts, i, sizeof(*parts), cmp_str);
	for (size_t j = 0; j < i; j++) {
		if (off < size)
			off += (size_t)snprintf(buf + off, size - off, "%s%s", j ? ", " : ": ",
						parts[j]);
		free(parts[j]);
	}
	if (off < size)
		snprintf(buf + off, size - off, ".");
	free(parts);
}
