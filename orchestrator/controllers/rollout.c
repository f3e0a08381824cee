/* rollout.c — the pure arithmetic of Deployment rollouts and ReplicaSet
 * scale-down, as Kubernetes' controllers compute it. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/err.h"
#include "orchestrator/controllers/rollout.h"

int rollout_scaled_value(json_t *v, int total, bool round_up, int *out, char *errmsg)
{
	const char *s;
	char *end;
	long pct;
	double x;

	if (v == NULL || json_is_null(v)) {
		*out = 0;
		return CAP_OK;
	}
	if (json_is_integer(v)) {
		*out = (int)json_integer_value(v);
		return CAP_OK;
	}
	if (!json_is_string(v))
		goto bad;
	s = json_string_value(v);
	if (!isdigit((unsigned char)s[0]))
		goto bad;
	errno = 0;
	pct = strtol(s, &end, 10);
	if (errno != 0 || end[0] != '%' || end[1] != '\0' || pct > 1000000)
		goto bad;
	x = (double)pct * (double)total / 100.0;
	*out = (int)(round_up ? ceil(x) : floor(x));
	return CAP_OK;
bad:
	cap_errmsg_printf(errmsg, "invalid value for IntOrString: must be an integer or a percentage");
	return CAP_EINVAL;
}

int rollout_fenceposts(json_t *max_surge, json_t *max_unavailable, int replicas,
		       int *surge, int *unavailable, char *errmsg)
{
	int rc;

	rc = rollout_scaled_value(max_surge, replicas, true, surge, errmsg);
	if (rc != CAP_OK)
		return rc;
	rc = rollout_scaled_value(max_unavailable, replicas, false, unavailable, errmsg);
	if (rc != CAP_OK)
		return rc;
	/* Both zero would let nothing move; Kubernetes allows one unavailable. */
	if (*surge == 0 && *unavailable == 0)
		*unavailable = 1;
	return CAP_OK;
}

int rollout_new_rs_size(int replicas, int surge, int total, int new_size)
{
	int max_total = replicas + surge;
	int up;

	if (new_size >= replicas)
		return replicas;
	if (total >= max_total)
		return new_size;
	up = max_total - total;
	if (up > replicas - new_size)
		up = replicas - new_size;
	return new_size + up;
}

static int cmp_oldest(const void *pa, const void *pb)
{
	const struct rollout_rs *a = pa, *b = pb;

	if (a->created != b->created)
		return a->created < b->created ? -1 : 1;
	return strcmp(a->name ? a->name : "", b->name ? b->name : "");
}

void rollout_sort_oldest_first(struct rollout_rs *rs, size_t n)
{
	if (n > 1)
		qsort(rs, n, sizeof(*rs), cmp_oldest);
}

int rollout_scale_down_old(struct rollout_rs *old, size_t n, int new_size, int new_available,
			   int replicas, int unavailable)
{
	int old_total = 0, all_total = new_size, min_available, max_down, done = 0;
	int available = new_available, want, cleaned = 0;
	size_t i;

	for (i = 0; i < n; i++)
		old_total += old[i].replicas;
	if (old_total == 0)
		return 0;
	all_total += old_total;
	min_available = replicas - unavailable;
	/* Pods of the new set that are not yet available already use up part
	 * of the budget: scaling old ones down on top of them could leave
	 * fewer than minAvailable. */
	max_down = all_total - min_available - (new_size - new_available);
	if (max_down <= 0)
		return 0;

	rollout_sort_oldest_first(old, n);
	/* Unhealthy old pods go first: removing them costs no availability. */
	for (i = 0; i < n && cleaned < max_down; i++) {
		int bad = old[i].replicas - old[i].available, k;

		if (bad <= 0)
			continue;
		k = bad < max_down - cleaned ? bad : max_down - cleaned;
		old[i].replicas -= k;
		cleaned += k;
	}
	done = cleaned;

	for (i = 0; i < n; i++)
		available += old[i].available;
	if (available <= min_available)
		return done;
	want = available - min_available;
	for (i = 0; i < n && want > 0; i++) {
		int k;

		if (old[i].replicas == 0)
			continue;
		k = old[i].replicas < want ? old[i].replicas : want;
		old[i].replicas -= k;
		want -= k;
		done += k;
	}
	return done;
}

/* Larger first; on equal sizes newer first (growing) or older first
 * (shrinking), as Kubernetes' ReplicaSetsBySizeNewer/Older. */
static int cmp_size_newer(const void *pa, const void *pb)
{
	const struct rollout_rs *a = *(struct rollout_rs *const *)pa;
	const struct rollout_rs *b = *(struct rollout_rs *const *)pb;

	if (a->replicas != b->replicas)
		return a->replicas > b->replicas ? -1 : 1;
	return -cmp_oldest(a, b);
}

static int cmp_size_older(const void *pa, const void *pb)
{
	const struct rollout_rs *a = *(struct rollout_rs *const *)pa;
	const struct rollout_rs *b = *(struct rollout_rs *const *)pb;

	if (a->replicas != b->replicas)
		return a->replicas > b->replicas ? -1 : 1;
	return cmp_oldest(a, b);
}

/* Go's math.Round: halves away from zero. */
static int round_half_away(double x)
{
	return (int)(x < 0 ? -floor(-x + 0.5) : floor(x + 0.5));
}

static int fraction(const struct rollout_rs *rs, int replicas, int surge, int status_replicas)
{
	int allowed, annotated;

	if (replicas == 0)
		return -rs->replicas;
	allowed = replicas + surge;
	annotated = rs->max_replicas >= 0 ? rs->max_replicas : status_replicas;
	if (annotated <= 0)
		return 0;
	return round_half_away((double)rs->replicas * allowed / annotated) - rs->replicas;
}

void rollout_proportional(struct rollout_rs *rs, size_t n, int replicas, int surge,
			  int status_replicas)
{
	struct rollout_rs **act;
	int *sizes = NULL;
	int total = 0, allowed, to_add, added = 0;
	size_t i, m = 0;

	act = malloc((n ? n : 1) * sizeof(*act));
	if (act == NULL)
		return;
	for (i = 0; i < n; i++) {
		total += rs[i].replicas;
		if (rs[i].replicas > 0)
			act[m++] = &rs[i];
	}
	allowed = replicas > 0 ? replicas + surge : 0;
	to_add = allowed - total;
	if (m == 0 || to_add == 0)
		goto out;
	qsort(act, m, sizeof(*act), to_add > 0 ? cmp_size_newer : cmp_size_older);

	sizes = malloc(m * sizeof(*sizes));
	if (sizes == NULL)
		goto out;
	for (i = 0; i < m; i++) {
		int p = 0;

		sizes[i] = act[i]->replicas;
		if (to_add != added) {
			int f = fraction(act[i], replicas, surge, status_replicas);
			int left = to_add - added;

			p = to_add > 0 ? (f < left ? f : left) : (f > left ? f : left);
		}
		sizes[i] += p;
		added += p;
	}
	/* Rounding leaves a remainder: the largest set takes it. */
	sizes[0] += to_add - added;
	if (sizes[0] < 0)
		sizes[0] = 0;
	for (i = 0; i < m; i++)
		act[i]->replicas = sizes[i] < 0 ? 0 : sizes[i];
out:
	free(sizes);
	free(act);
}

/* FNV-1a, 32 bits. */
static uint32_t fnv32a(uint32_t h, const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

/* Drops null members at every depth: to Kubernetes (Go structs) a null
 * field is the zero value, so {"creationTimestamp": null}, which kubectl
 * sends in templates, equals its absence. */
static void drop_nulls(json_t *v)
{
	const char *k;
	json_t *x;
	void *tmp;
	size_t i;

	if (json_is_object(v)) {
		json_object_foreach_safe(v, tmp, k, x) {
			if (json_is_null(x))
				json_object_del(v, k);
			else
				drop_nulls(x);
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			drop_nulls(x);
	}
}

static json_t *without_hash(json_t *template)
{
	json_t *t = json_deep_copy(template);
	json_t *labels;

	if (t == NULL)
		return NULL;
	drop_nulls(t);
	labels = json_object_get(json_object_get(t, "metadata"), "labels");
	if (json_is_object(labels))
		json_object_del(labels, ROLLOUT_HASH_LABEL);
	return t;
}

void rollout_template_hash(json_t *template, int64_t collision_count, char out[static 11])
{
	static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
	json_t *t = without_hash(template);
	char *text = t ? json_dumps(t, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
	uint32_t h = 2166136261u;
	char dec[16];
	size_t i;

	if (text != NULL)
		h = fnv32a(h, (const unsigned char *)text, strlen(text));
	if (collision_count >= 0) {
		uint32_t c = (uint32_t)collision_count;
		unsigned char le[4] = { c & 0xff, (c >> 8) & 0xff, (c >> 16) & 0xff, c >> 24 };

		h = fnv32a(h, le, 4);
	}
	snprintf(dec, sizeof(dec), "%u", (unsigned)h);
	/* Kubernetes' SafeEncodeString: no vowels, no 0/1/3, so a hash never
	 * spells a word or looks like a number. */
	for (i = 0; dec[i] != '\0' && i < 10; i++)
		out[i] = alphabet[(unsigned char)dec[i] % (sizeof(alphabet) - 1)];
	out[i] = '\0';
	free(text);
	json_decref(t);
}

bool rollout_templates_equal(json_t *a, json_t *b)
{
	json_t *x = without_hash(a), *y = without_hash(b);
	bool eq = x != NULL && y != NULL && json_equal(x, y);

	json_decref(x);
	json_decref(y);
	return eq;
}

static int cmp_victims(const void *pa, const void *pb)
{
	const struct rollout_pod *a = pa, *b = pb;

	if (a->assigned != b->assigned)
		return a->assigned ? 1 : -1;
	if (a->phase_rank != b->phase_rank)
		return a->phase_rank < b->phase_rank ? -1 : 1;
	if (a->ready != b->ready)
		return a->ready ? 1 : -1;
	if (a->deletion_cost != b->deletion_cost)
		return a->deletion_cost < b->deletion_cost ? -1 : 1;
	if (a->colocated != b->colocated)
		return a->colocated > b->colocated ? -1 : 1;
	/* Ready for less time goes first: it has proved itself the least. */
	if (a->ready && b->ready && a->ready_since != b->ready_since)
		return a->ready_since > b->ready_since ? -1 : 1;
	if (a->restarts != b->restarts)
		return a->restarts > b->restarts ? -1 : 1;
	if (a->created != b->created)
		return a->created > b->created ? -1 : 1;
	return strcmp(a->name ? a->name : "", b->name ? b->name : "");
}

void rollout_sort_victims(struct rollout_pod *pods, size_t n)
{
	if (n > 1)
		qsort(pods, n, sizeof(*pods), cmp_victims);
}

int64_t rollout_parse_time(const char *s)
{
	struct tm tm;
	const char *p;
	int64_t t;

	if (s == NULL)
		return -1;
	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		   &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	t = (int64_t)timegm(&tm);
	p = s + 19;
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++)
			;
	if (*p == '+' || *p == '-') {
		int hh = 0, mm = 0;

		if (sscanf(p + 1, "%2d:%2d", &hh, &mm) == 2)
			t -= (*p == '+' ? 1 : -1) * (int64_t)(hh * 3600 + mm * 60);
	}
	return t;
}

void rollout_pod_from_json(json_t *pod, struct rollout_pod *out)
{
	json_t *meta = json_object_get(pod, "metadata");
	json_t *spec = json_object_get(pod, "spec");
	json_t *status = json_object_get(pod, "status");
	const char *phase = json_string_value(json_object_get(status, "phase"));
	const char *cost;
	json_t *c, *cs;
	size_t i;

	memset(out, 0, sizeof(*out));
	out->name = json_string_value(json_object_get(meta, "name"));
	out->assigned = json_string_length(json_object_get(spec, "nodeName")) > 0;
	if (phase != NULL && strcmp(phase, "Unknown") == 0)
		out->phase_rank = 1;
	else if (phase != NULL && strcmp(phase, "Running") == 0)
		out->phase_rank = 2;
	json_array_foreach(json_object_get(status, "conditions"), i, c) {
		const char *type = json_string_value(json_object_get(c, "type"));
		const char *st = json_string_value(json_object_get(c, "status"));

		if (type != NULL && strcmp(type, "Ready") == 0 && st != NULL &&
		    strcmp(st, "True") == 0) {
			out->ready = true;
			out->ready_since = rollout_parse_time(json_string_value(
				json_object_get(c, "lastTransitionTime")));
		}
	}
	cost = json_string_value(json_object_get(json_object_get(meta, "annotations"),
						 "controller.kubernetes.io/pod-deletion-cost"));
	if (cost != NULL)
		out->deletion_cost = strtoll(cost, NULL, 10);
	json_array_foreach(json_object_get(status, "containerStatuses"), i, cs) {
		int r = (int)json_integer_value(json_object_get(cs, "restartCount"));

		if (r > out->restarts)
			out->restarts = r;
	}
	out->created = rollout_parse_time(json_string_value(
		json_object_get(meta, "creationTimestamp")));
}
