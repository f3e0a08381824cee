/* leaderelect.c — leader election on a coordination.k8s.io/v1 Lease (see
 * leaderelect.h).
 *
 * Happy path: every retry period, GET the Lease → missing: create it with us
 * as holder → held by us: PUT a fresh renewTime → held by another whose
 * record we have not seen change for leaseDurationSeconds, or by nobody:
 * PUT us as holder (leaseTransitions + 1). A successful create or PUT makes
 * us leader (on_start once).
 *
 * Failure modes: a PUT that loses the race answers 409 (the resourceVersion
 * moved): we stay or become follower. A leader whose last successful renewal
 * is older than the renew deadline (API server down, partition) calls
 * on_stop and campaigns again like anyone else; since its deadline is
 * shorter than the lease duration, it stops before anyone may take over. */
#include "orchestrator/kube/leaderelect.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

struct leaderelect {
	struct kclient *client;
	uv_loop_t *loop;
	struct leaderelect_config cfg;
	char identity[256];
	char ns[254];
	char name[254];
	uv_timer_t timer;
	char seen_holder[256];
	char seen_renew[64];
	uint64_t seen_at;          /* loop ms when the record last changed */
	uint64_t renewed_at;       /* loop ms of our last successful write */
	int refs;                  /* the timer, a request in flight */
	bool inflight;
	bool leader;
	bool stopping;
};

static void micro_time(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 ts.tv_nsec / 1000);
}

void leaderelect_identity(char *buf, size_t size)
{
	char host[128] = "localhost";
	struct timespec ts;

	gethostname(host, sizeof host - 1);
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(buf, size, "%s_%ld_%06lx", host, (long)getpid(),
		 (unsigned long)((ts.tv_nsec ^ (long)getpid() * 7919) & 0xffffff));
}

static void maybe_free(struct leaderelect *le)
{
	if (le->stopping && le->refs == 0)
		free(le);
}

static void lose(struct leaderelect *le, const char *why)
{
	if (!le->leader)
		return;
	le->leader = false;
	log_warn("leader election %s/%s: %s lost leadership: %s", le->ns, le->name,
		 le->identity, why);
	if (le->cfg.on_stop != NULL)
		le->cfg.on_stop(le->cfg.data);
}

static void check_deadline(struct leaderelect *le)
{
	if (le->leader && uv_now(le->loop) - le->renewed_at > le->cfg.renew_deadline_ms)
		lose(le, "could not renew within the deadline");
}

static void on_write(void *data, int status, json_t *body)
{
	struct leaderelect *le = data;

	(void)body;
	le->inflight = false;
	le->refs--;
	if (le->stopping) {
		maybe_free(le);
		return;
	}
	if (status == 200 || status == 201) {
		le->renewed_at = uv_now(le->loop);
		if (!le->leader) {
			le->leader = true;
			log_info("leader election %s/%s: %s became leader", le->ns, le->name,
				 le->identity);
			if (le->cfg.on_start != NULL)
				le->cfg.on_start(le->cfg.data);
		}
		return;
	}
	if (status == 409)
		lose(le, "the lease was taken over");
	check_deadline(le);
}

static json_t *record(struct leaderelect *le, json_t *spec, bool acquire)
{
	char now[64];
	json_t *s = spec ? json_deep_copy(spec) : json_object();
	json_int_t transitions = json_integer_value(json_object_get(s, "leaseTransitions"));

	micro_time(now, sizeof now);
	json_object_set_new(s, "holderIdentity", json_string(le->identity));
	json_object_set_new(s, "leaseDurationSeconds",
			    json_integer((json_int_t)(le->cfg.lease_duration_ms + 999) / 1000));
	json_object_set_new(s, "renewTime", json_string(now));
	if (acquire) {
		json_object_set_new(s, "acquireTime", json_string(now));
		json_object_set_new(s, "leaseTransitions",
				    json_integer(spec != NULL ? transitions + 1 : 0));
	}
	return s;
}

static void write_lease(struct leaderelect *le, json_t *cur, bool acquire)
{
	json_t *obj;
	int rv;

	if (cur == NULL) {
		obj = json_pack("{s:s, s:s, s:{s:s, s:s}}", "apiVersion", "coordination.k8s.io/v1",
				"kind", "Lease", "metadata", "name", le->name, "namespace", le->ns);
		json_object_set_new(obj, "spec", record(le, NULL, true));
		rv = kclient_create(le->client, &KRES_LEASES, le->ns, obj, on_write, le);
	} else {
		obj = json_deep_copy(cur);
		json_object_set_new(obj, "spec", record(le, json_object_get(cur, "spec"), acquire));
		rv = kclient_update(le->client, &KRES_LEASES, le->ns, le->name, NULL, obj,
				    on_write, le);
	}
	json_decref(obj);
	if (rv == 0) {
		le->inflight = true;
		le->refs++;
	}
}

static void on_get(void *data, int status, json_t *body)
{
	struct leaderelect *le = data;
	json_t *spec;
	const char *holder, *renew;
	uint64_t now;

	le->inflight = false;
	le->refs--;
	if (le->stopping) {
		maybe_free(le);
		return;
	}
	if (status == 404) {
		write_lease(le, NULL, true);
		return;
	}
	if (status != 200 || body == NULL) {
		check_deadline(le);
		return;
	}
	now = uv_now(le->loop);
	spec = json_object_get(body, "spec");
	holder = json_string_value(json_object_get(spec, "holderIdentity"));
	renew = json_string_value(json_object_get(spec, "renewTime"));
	holder = holder ? holder : "";
	renew = renew ? renew : "";
	if (strcmp(holder, le->seen_holder) != 0 || strcmp(renew, le->seen_renew) != 0) {
		snprintf(le->seen_holder, sizeof le->seen_holder, "%s", holder);
		snprintf(le->seen_renew, sizeof le->seen_renew, "%s", renew);
		le->seen_at = now;
	}
	if (strcmp(holder, le->identity) == 0) {
		write_lease(le, body, false);
		return;
	}
	lose(le, "another candidate holds the lease");
	if (holder[0] == '\0' || now - le->seen_at > le->cfg.lease_duration_ms)
		write_lease(le, body, true);
}

static void tick(uv_timer_t *t)
{
	struct leaderelect *le = t->data;

	if (le->inflight || le->stopping)
		return;
	check_deadline(le);
	if (kclient_get(le->client, &KRES_LEASES, le->ns, le->name, on_get, le) == 0) {
		le->inflight = true;
		le->refs++;
	}
}

static void timer_closed(uv_handle_t *h)
{
	struct leaderelect *le = h->data;

	le->refs--;
	maybe_free(le);
}

int leaderelect_start(struct kclient *c, const struct leaderelect_config *cfg,
		      struct leaderelect **out)
{
	struct leaderelect *le;

	if (cfg->ns == NULL || cfg->name == NULL || cfg->identity == NULL)
		return -1;
	le = calloc(1, sizeof(*le));
	if (le == NULL)
		return -1;
	le->client = c;
	le->loop = kclient_loop(c);
	le->cfg = *cfg;
	if (le->cfg.lease_duration_ms == 0)
		le->cfg.lease_duration_ms = 15000;
	if (le->cfg.renew_deadline_ms == 0)
		le->cfg.renew_deadline_ms = le->cfg.lease_duration_ms * 2 / 3;
	if (le->cfg.retry_period_ms == 0)
		le->cfg.retry_period_ms = 2000;
	snprintf(le->identity, sizeof le->identity, "%s", cfg->identity);
	snprintf(le->ns, sizeof le->ns, "%s", cfg->ns);
	snprintf(le->name, sizeof le->name, "%s", cfg->name);
	le->cfg.identity = le->identity;
	le->cfg.ns = le->ns;
	le->cfg.name = le->name;
	le->seen_at = uv_now(le->loop);
	uv_timer_init(le->loop, &le->timer);
	le->timer.data = le;
	le->refs = 1;
	uv_timer_start(&le->timer, tick, 0, le->cfg.retry_period_ms);
	*out = le;
	return 0;
}

bool leaderelect_is_leader(const struct leaderelect *le)
{
	return le->leader;
}

static void on_released(void *data, int status, json_t *body)
{
	(void)data;
	(void)body;
	if (status != 200)
		log_debug("leader election: releasing the lease answered %d", status);
}

struct release {
	struct kclient *client;
	char identity[256];
};

static void on_get_release(void *data, int status, json_t *body)
{
	struct release *r = data;
	json_t *obj, *spec, *md;
	const char *holder;

	holder = json_string_value(json_object_get(json_object_get(body, "spec"),
						   "holderIdentity"));
	/* Only our own hold is given up. */
	if (status != 200 || holder == NULL || strcmp(holder, r->identity) != 0) {
		free(r);
		return;
	}
	obj = json_deep_copy(body);
	spec = json_object_get(obj, "spec");
	md = json_object_get(obj, "metadata");
	json_object_set_new(spec, "holderIdentity", json_string(""));
	json_object_set_new(spec, "leaseDurationSeconds", json_integer(1));
	kclient_update(r->client, &KRES_LEASES,
		       json_string_value(json_object_get(md, "namespace")),
		       json_string_value(json_object_get(md, "name")), NULL, obj, on_released,
		       NULL);
	json_decref(obj);
	free(r);
}

void leaderelect_stop(struct leaderelect *le)
{
	if (le == NULL || le->stopping)
		return;
	le->stopping = true;
	/* Give the lease up so a standby takes over without waiting it out:
	 * the GET's answer carries the resourceVersion the PUT needs. */
	if (le->leader) {
		struct release *r = malloc(sizeof(*r));

		if (r != NULL) {
			r->client = le->client;
			snprintf(r->identity, sizeof r->identity, "%s", le->identity);
			if (kclient_get(le->client, &KRES_LEASES, le->ns, le->name,
					on_get_release, r) != 0)
				free(r);
		}
	}
	uv_close((uv_handle_t *)&le->timer, timer_closed);
}
