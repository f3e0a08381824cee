/* svcalloc.c — Service cluster IP and node port allocation against the
 * store, the `kubernetes` Service, and the repair pass (see svcalloc.h).
 *
 * Keeper happy path: create default/kubernetes with the range's first
 * address (create-if-absent, together with its IP record) → its Endpoints →
 * its EndpointSlice (created, or rewritten when they point elsewhere) →
 * repair now and every REPAIR_MS. Failure modes: a store error retries the
 * step after RETRY_MS; a repair txn that loses a race is simply left to the
 * next pass, since the record changed under it and may be legitimate. */
#include "orchestrator/api/svcalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "lib/jsonx.h"
#include "lib/log.h"
#include "orchestrator/api/status.h"

#define REPAIR_MS 60000
#define RETRY_MS 500
#define KUBERNETES_SVC_KEY "/registry/services/default/kubernetes"
#define KUBERNETES_EP_KEY "/registry/endpoints/default/kubernetes"
#define KUBERNETES_SLICE_KEY "/registry/endpointslices/default/kubernetes"

/* ---- reading Services ---- */

static json_t *spec_of(json_t *svc)
{
	return json_object_get(svc, "spec");
}

static const char *str_of(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static const char *type_of(json_t *svc)
{
	const char *t = str_of(spec_of(svc), "type");
	return t != NULL && t[0] != '\0' ? t : "ClusterIP";
}

static bool is_external_name(json_t *svc)
{
	return strcmp(type_of(svc), "ExternalName") == 0;
}

static bool wants_node_ports(json_t *svc)
{
	const char *t = type_of(svc);
	if (strcmp(t, "NodePort") == 0)
		return true;
	return strcmp(t, "LoadBalancer") == 0 &&
	       !json_is_false(json_object_get(spec_of(svc), "allocateLoadBalancerNodePorts"));
}

static bool may_have_node_ports(json_t *svc)
{
	const char *t = type_of(svc);
	return strcmp(t, "NodePort") == 0 || strcmp(t, "LoadBalancer") == 0;
}

/* The cluster IP svc holds (an address, not "" or "None"). */
static bool held_ip(json_t *svc, uint32_t *ip)
{
	if (svc == NULL || is_external_name(svc))
		return false;
	return ipv4_parse(str_of(spec_of(svc), "clusterIP"), ip) == 0;
}

static int node_port_of(json_t *port)
{
	json_t *np = json_object_get(port, "nodePort");
	return json_is_integer(np) ? (int)json_integer_value(np) : 0;
}

static bool wants_health_check_port(json_t *svc)
{
	const char *etp = str_of(spec_of(svc), "externalTrafficPolicy");
	return strcmp(type_of(svc), "LoadBalancer") == 0 && etp != NULL &&
	       strcmp(etp, "Local") == 0;
}

static int health_check_port_of(json_t *svc)
{
	json_t *v = json_object_get(spec_of(svc), "healthCheckNodePort");
	return json_is_integer(v) ? (int)json_integer_value(v) : 0;
}

/* How many node ports svc can hold at most (room for held_ports). */
static size_t max_ports(json_t *svc)
{
	return json_array_size(json_object_get(spec_of(svc), "ports")) + 1;
}

/* The distinct node ports svc holds: its ports' nodePorts (one number for
 * TCP and UDP is one) and its healthCheckNodePort. out has max_ports(svc)
 * room. Returns the count. */
static size_t held_ports(json_t *svc, int *out)
{
	json_t *p;
	size_t i, n = 0;
	int v;
	if (svc == NULL || !may_have_node_ports(svc))
		return 0;
	json_array_foreach(json_object_get(spec_of(svc), "ports"), i, p) {
		bool dup = false;
		v = node_port_of(p);
		for (size_t k = 0; k < n; k++)
			dup = dup || out[k] == v;
		if (v > 0 && !dup)
			out[n++] = v;
	}
	v = health_check_port_of(svc);
	if (v > 0) {
		bool dup = false;
		for (size_t k = 0; k < n; k++)
			dup = dup || out[k] == v;
		if (!dup)
			out[n++] = v;
	}
	return n;
}

/* Whether svc holds node port np. */
static bool holds_port(json_t *svc, int np)
{
	int buf[64], *held;
	size_t n, m;
	bool found = false;
	if (svc == NULL || np <= 0)
		return false;
	m = max_ports(svc);
	held = m <= 64 ? buf : calloc(m, sizeof *held);
	if (held == NULL)
		return false;
	n = held_ports(svc, held);
	for (size_t i = 0; i < n; i++)
		found = found || held[i] == np;
	if (held != buf)
		free(held);
	return found;
}

static bool empty_str(const char *s)
{
	return s == NULL || s[0] == '\0';
}

/* ---- update carry-over ---- */

static json_t *find_port(json_t *ports, json_t *want)
{
	json_t *p;
	size_t i;
	const char *proto = str_of(want, "protocol") ?: "TCP";
	json_array_foreach(ports, i, p) {
		const char *pp = str_of(p, "protocol") ?: "TCP";
		if (json_equal(json_object_get(p, "port"), json_object_get(want, "port")) &&
		    strcmp(pp, proto) == 0)
			return p;
	}
	return NULL;
}

void svcalloc_patch_update(json_t *next, json_t *cur)
{
	json_t *ns = spec_of(next), *cs = spec_of(cur), *p;
	const char *ncip, *ccip;
	size_t i;
	if (!json_is_object(ns) || !json_is_object(cs))
		return;
	ncip = str_of(ns, "clusterIP");
	ccip = str_of(cs, "clusterIP");
	if (is_external_name(next)) {
		/* Becoming ExternalName drops what the old type had allocated,
		 * unless the client changed it on purpose (then validation
		 * speaks). */
		if (!is_external_name(cur) && json_equal(json_object_get(ns, "clusterIP"),
							  json_object_get(cs, "clusterIP"))) {
			json_object_del(ns, "clusterIP");
			json_object_del(ns, "clusterIPs");
			json_object_del(ns, "ipFamilies");
			json_object_del(ns, "ipFamilyPolicy");
			json_object_del(ns, "internalTrafficPolicy");
		}
	} else if (!is_external_name(cur) && !empty_str(ccip)) {
		json_t *nips = json_object_get(ns, "clusterIPs");
		if (empty_str(ncip)) {
			json_object_set_new(ns, "clusterIP", json_string(ccip));
			if (json_array_size(nips) == 0 && json_object_get(cs, "clusterIPs") != NULL)
				json_object_set(ns, "clusterIPs", json_object_get(cs, "clusterIPs"));
		} else if (strcmp(ncip, ccip) != 0 &&
			   (json_array_size(nips) == 0 ||
			    json_equal(nips, json_object_get(cs, "clusterIPs")))) {
			/* The client changed clusterIP only: clusterIPs follows, so
			 * the immutability check names the change. */
			json_object_set_new(ns, "clusterIPs", json_pack("[s]", ncip));
		} else if (json_array_size(nips) == 0 && json_object_get(cs, "clusterIPs") != NULL) {
			json_object_set(ns, "clusterIPs", json_object_get(cs, "clusterIPs"));
		}
	}
	if (may_have_node_ports(cur) && !may_have_node_ports(next)) {
		/* Back to ClusterIP (or ExternalName): the node ports the client
		 * left as they were go, and are released. */
		json_array_foreach(json_object_get(ns, "ports"), i, p) {
			json_t *old = find_port(json_object_get(cs, "ports"), p);
			int np = node_port_of(p);
			if (np != 0 && old != NULL && node_port_of(old) == np)
				json_object_del(p, "nodePort");
		}
		/* So does what only externally reachable types have. */
		if (json_equal(json_object_get(ns, "externalTrafficPolicy"),
			       json_object_get(cs, "externalTrafficPolicy")))
			json_object_del(ns, "externalTrafficPolicy");
		if (json_equal(json_object_get(ns, "allocateLoadBalancerNodePorts"),
			       json_object_get(cs, "allocateLoadBalancerNodePorts")))
			json_object_del(ns, "allocateLoadBalancerNodePorts");
	} else if (may_have_node_ports(cur) && may_have_node_ports(next)) {
		json_array_foreach(json_object_get(ns, "ports"), i, p) {
			json_t *old;
			if (!json_is_object(p) || node_port_of(p) != 0)
				continue;
			old = find_port(json_object_get(cs, "ports"), p);
			if (old != NULL && node_port_of(old) > 0)
				json_object_set_new(p, "nodePort", json_integer(node_port_of(old)));
		}
	}
	if (wants_health_check_port(cur) && wants_health_check_port(next) &&
	    health_check_port_of(next) == 0 && health_check_port_of(cur) > 0)
		json_object_set_new(ns, "healthCheckNodePort",
				    json_integer(health_check_port_of(cur)));
	else if (wants_health_check_port(cur) && !wants_health_check_port(next) &&
		 health_check_port_of(next) == health_check_port_of(cur))
		json_object_del(ns, "healthCheckNodePort");
}

/* ---- planning ---- */

struct used {
	struct rangealloc *a;
	size_t prefix_len;
	bool ip;
};

static bool mark_used(void *data, const char *key, json_t *obj, int64_t rev)
{
	struct used *u = data;
	const char *v = key + u->prefix_len;
	(void)obj;
	(void)rev;
	if (u->ip) {
		uint32_t ip;
		if (ipv4_parse(v, &ip) == 0)
			rangealloc_allocate(u->a, ip);
	} else {
		char *end;
		long p = strtol(v, &end, 10);
		if (*end == '\0' && p > 0 && p < 65536)
			rangealloc_allocate(u->a, (uint32_t)p);
	}
	return true;
}

static uint32_t seed(void)
{
	uint32_t s = 0;
	if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
		s = (uint32_t)time(NULL) ^ (uint32_t)clock();
	return s;
}

static json_t *b64_str(const char *s)
{
	return jsonx_bytes((const uint8_t *)s, strlen(s));
}

static json_t *b64_obj(json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT);
	json_t *j = text != NULL ? b64_str(text) : NULL;
	free(text);
	return j;
}

static json_t *cmp_absent(const char *key)
{
	return json_pack("{s:o, s:s, s:s, s:o}", "key", b64_str(key), "target", "CREATE", "result",
			 "EQUAL", "create_revision", jsonx_i64(0));
}

static json_t *op_put(const char *key, json_t *value)
{
	return json_pack("{s:{s:o, s:o}}", "request_put", "key", b64_str(key), "value",
			 b64_obj(value));
}

static json_t *op_del(const char *key)
{
	return json_pack("{s:{s:o}}", "request_delete_range", "key", b64_str(key));
}

static json_t *parent_ref(const char *ns, const char *name)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "group", "", "resource", "services", "namespace",
			 ns, "name", name);
}

static void ip_key(uint32_t ip, char *buf, size_t len)
{
	char a[20];
	ipv4_format(ip, a, sizeof a);
	snprintf(buf, len, SVCALLOC_IP_PREFIX "%s", a);
}

static void port_key(int port, char *buf, size_t len)
{
	snprintf(buf, len, SVCALLOC_PORT_PREFIX "%d", port);
}

static json_t *ip_record(uint32_t ip, const char *ns, const char *name)
{
	char a[20];
	ipv4_format(ip, a, sizeof a);
	return json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}}, s:{s:o}}", "apiVersion",
			 "networking.k8s.io/v1", "kind", "IPAddress", "metadata", "name", a,
			 "labels", "ipaddress.kubernetes.io/managed-by", "ipallocator.k8s.io",
			 "ipaddress.kubernetes.io/ip-family", "IPv4", "spec", "parentRef",
			 parent_ref(ns, name));
}

static json_t *port_record(int port, const char *ns, const char *name)
{
	char n[16];
	snprintf(n, sizeof n, "%d", port);
	return json_pack("{s:s, s:s, s:{s:s}, s:i, s:o}", "apiVersion", "v1", "kind",
			 "ServiceNodePort", "metadata", "name", n, "port", port, "parentRef",
			 parent_ref(ns, name));
}

static json_t *invalid(const struct api_resource *res, const char *name, const char *field,
		       const char *message)
{
	json_t *causes = json_pack("[{s:s, s:s, s:s}]", "reason", "FieldValueInvalid", "message",
				   message, "field", field);
	return api_status_invalid(res, name, causes);
}

static bool is_kubernetes(const char *ns, const char *name)
{
	return strcmp(ns, "default") == 0 && strcmp(name, "kubernetes") == 0;
}

/* Fills next's cluster IP; adds to cmp/ops; NULL or a Status. */
static json_t *plan_ip(const struct svc_ranges *r, struct wc *cache,
		       const struct api_resource *res, const char *ns, const char *name,
		       json_t *cur, json_t *next, json_t *cmp, json_t *ops)
{
	json_t *spec = spec_of(next), *st = NULL;
	const char *cip = str_of(spec, "clusterIP");
	uint32_t old_ip = 0, ip = 0;
	bool had = held_ip(cur, &old_ip), take = false;
	struct used u = {rangealloc_new_ips(r), strlen(SVCALLOC_IP_PREFIX), true};
	char key[128], a[20], msg[512];

	if (u.a == NULL)
		return api_status_printf(500, "InternalError", "out of memory");
	wc_range(cache, SVCALLOC_IP_PREFIX, NULL, mark_used, &u);
	/* The first address belongs to the kubernetes Service. */
	if (!is_kubernetes(ns, name))
		rangealloc_allocate(u.a, svc_ranges_first_ip(r));
	if (is_external_name(next) || (cip != NULL && strcmp(cip, "None") == 0)) {
		if (cip != NULL && strcmp(cip, "None") == 0)
			json_object_set_new(spec, "clusterIPs", json_pack("[s]", "None"));
	} else if (empty_str(cip)) {
		if (rangealloc_allocate_next(u.a, seed(), &ip) != RANGEALLOC_OK) {
			st = api_status_printf(500, "InternalError",
					       "Internal error occurred: failed to allocate a "
					       "serviceIP: range is full");
			goto out;
		}
		ipv4_format(ip, a, sizeof a);
		json_object_set_new(spec, "clusterIP", json_string(a));
		json_object_set_new(spec, "clusterIPs", json_pack("[s]", a));
		take = true;
	} else if (ipv4_parse(cip, &ip) != 0) {
		/* Validation has already named a malformed address. */
	} else if (!(had && ip == old_ip)) {
		enum rangealloc_result res_ = rangealloc_allocate(u.a, ip);
		if (res_ == RANGEALLOC_OUT_OF_RANGE) {
			snprintf(msg, sizeof msg,
				 "Invalid value: []string{\"%s\"}: failed to allocate IP %s: the "
				 "provided IP (%s) is not in the valid range. The range of valid IPs "
				 "is %s", cip, cip, cip, r->cidr);
			st = invalid(res, name, "spec.clusterIPs", msg);
			goto out;
		}
		if (res_ == RANGEALLOC_TAKEN) {
			snprintf(msg, sizeof msg,
				 "Invalid value: []string{\"%s\"}: failed to allocate IP %s: provided "
				 "IP is already allocated", cip, cip);
			st = invalid(res, name, "spec.clusterIPs", msg);
			goto out;
		}
		if (json_array_size(json_object_get(spec, "clusterIPs")) == 0)
			json_object_set_new(spec, "clusterIPs", json_pack("[s]", cip));
		take = true;
	}
	if (take) {
		json_t *rec = ip_record(ip, ns, name);
		ip_key(ip, key, sizeof key);
		json_array_append_new(cmp, cmp_absent(key));
		json_array_append_new(ops, op_put(key, rec));
		json_decref(rec);
	}
	if (had && !(held_ip(next, &ip) && ip == old_ip)) {
		ip_key(old_ip, key, sizeof key);
		json_array_append_new(ops, op_del(key));
	}
out:
	rangealloc_free(u.a);
	return st;
}

static json_t *plan_ports(const struct svc_ranges *r, struct wc *cache,
			  const struct api_resource *res, const char *ns, const char *name,
			  json_t *cur, json_t *next, json_t *cmp, json_t *ops)
{
	json_t *ports = json_object_get(spec_of(next), "ports"), *p, *st = NULL, *cp;
	struct used u = {rangealloc_new_ports(r), strlen(SVCALLOC_PORT_PREFIX), false};
	int *taken = NULL;   /* node ports this write takes anew */
	size_t ntaken = 0, i, j;
	char key[128], field[64], msg[256];

	if (u.a == NULL)
		return api_status_printf(500, "InternalError", "out of memory");
	wc_range(cache, SVCALLOC_PORT_PREFIX, NULL, mark_used, &u);
	taken = calloc(json_array_size(ports) + 2, sizeof *taken);
	if (taken == NULL) {
		rangealloc_free(u.a);
		return api_status_printf(500, "InternalError", "out of memory");
	}
	if (may_have_node_ports(next)) {
		json_array_foreach(ports, i, p) {
			int np = node_port_of(p);
			bool mine = false;
			if (!json_is_object(p))
				continue;
			snprintf(field, sizeof field, "spec.ports[%zu].nodePort", i);
			/* The same number for TCP and UDP of one Service is one
			 * allocation. */
			json_array_foreach(ports, j, cp) {
				if (j >= i)
					break;
				if (np > 0 && node_port_of(cp) == np)
					mine = true;
			}
			if (np > 0 && (mine || holds_port(cur, np)))
				continue;
			if (np > 0) {
				enum rangealloc_result rr = rangealloc_allocate(u.a, (uint32_t)np);
				if (rr == RANGEALLOC_OUT_OF_RANGE) {
					snprintf(msg, sizeof msg,
						 "Invalid value: %d: provided port is not in the valid "
						 "range. The range of valid ports is %s", np, r->ports);
					st = invalid(res, name, field, msg);
					goto out;
				}
				if (rr == RANGEALLOC_TAKEN) {
					snprintf(msg, sizeof msg,
						 "Invalid value: %d: provided port is already allocated",
						 np);
					st = invalid(res, name, field, msg);
					goto out;
				}
			} else if (wants_node_ports(next)) {
				uint32_t v;
				if (rangealloc_allocate_next(u.a, seed(), &v) != RANGEALLOC_OK) {
					st = api_status_printf(500, "InternalError",
							       "Internal error occurred: failed to "
							       "allocate a nodePort: range is full");
					goto out;
				}
				np = (int)v;
				json_object_set_new(p, "nodePort", json_integer(np));
			} else {
				continue;
			}
			taken[ntaken++] = np;
		}
	}
	if (wants_health_check_port(next)) {
		/* externalTrafficPolicy Local: a port for load balancers to ask
		 * nodes whether they have endpoints. */
		int hc = health_check_port_of(next);
		bool mine = holds_port(cur, hc);
		for (i = 0; i < ntaken; i++)
			mine = mine || taken[i] == hc;
		if (hc > 0 && !mine) {
			enum rangealloc_result rr = rangealloc_allocate(u.a, (uint32_t)hc);
			if (rr != RANGEALLOC_OK) {
				snprintf(msg, sizeof msg, "Invalid value: %d: %s", hc,
					 rr == RANGEALLOC_TAKEN ? "provided port is already allocated"
								: "provided port is not in the valid "
								  "range");
				st = invalid(res, name, "spec.healthCheckNodePort", msg);
				goto out;
			}
			taken[ntaken++] = hc;
		} else if (hc <= 0) {
			uint32_t v;
			if (rangealloc_allocate_next(u.a, seed(), &v) != RANGEALLOC_OK) {
				st = api_status_printf(500, "InternalError",
						       "Internal error occurred: failed to allocate a "
						       "healthCheckNodePort: range is full");
				goto out;
			}
			json_object_set_new(spec_of(next), "healthCheckNodePort",
					    json_integer((int)v));
			taken[ntaken++] = (int)v;
		}
	}
	for (i = 0; i < ntaken; i++) {
		json_t *rec = port_record(taken[i], ns, name);
		port_key(taken[i], key, sizeof key);
		json_array_append_new(cmp, cmp_absent(key));
		json_array_append_new(ops, op_put(key, rec));
		json_decref(rec);
	}
	/* What cur held and next does not is released. */
	if (cur != NULL) {
		int *held = calloc(max_ports(cur), sizeof *held);
		size_t n = held != NULL ? held_ports(cur, held) : 0;
		for (i = 0; i < n; i++) {
			if (holds_port(next, held[i]))
				continue;
			port_key(held[i], key, sizeof key);
			json_array_append_new(ops, op_del(key));
		}
		free(held);
	}
out:
	free(taken);
	rangealloc_free(u.a);
	return st;
}

json_t *svcalloc_plan(const struct svc_ranges *r, struct wc *cache,
		      const struct api_resource *res, const char *ns, const char *name,
		      json_t *cur, json_t *next, json_t *cmp, json_t *ops)
{
	json_t *mc = json_array(), *mo = json_array(), *st, *v;
	size_t i;
	if (!json_is_object(spec_of(next))) {
		json_decref(mc);
		json_decref(mo);
		return NULL;
	}
	st = plan_ip(r, cache, res, ns, name, cur, next, mc, mo);
	if (st == NULL)
		st = plan_ports(r, cache, res, ns, name, cur, next, mc, mo);
	if (st == NULL) {
		json_array_foreach(mc, i, v)
			json_array_append(cmp, v);
		json_array_foreach(mo, i, v)
			json_array_append(ops, v);
	}
	json_decref(mc);
	json_decref(mo);
	return st;
}

void svcalloc_release(json_t *svc, json_t *ops)
{
	int *held;
	size_t n;
	uint32_t ip;
	char key[128];
	if (held_ip(svc, &ip)) {
		ip_key(ip, key, sizeof key);
		json_array_append_new(ops, op_del(key));
	}
	held = calloc(max_ports(svc), sizeof *held);
	n = held != NULL ? held_ports(svc, held) : 0;
	for (size_t i = 0; i < n; i++) {
		port_key(held[i], key, sizeof key);
		json_array_append_new(ops, op_del(key));
	}
	free(held);
}

/* ---- the keeper ---- */

enum keeper_step { K_SERVICE = 0, K_ENDPOINTS, K_SLICE, K_REPAIR };

struct svc_keeper {
	uv_loop_t *loop;
	struct kv *kv;
	struct wc *cache;
	const struct svc_ranges *ranges;
	char host[64];
	int port;
	uv_timer_t timer;
	enum keeper_step step;
	int inflight;
	bool ready;
	bool started;      /* the first pass is done: stop rewriting */
	bool closing;
	bool timer_closed;
	void (*close_cb)(void *data);
	void *close_data;
};

static void keeper_run(struct svc_keeper *k);

static void maybe_free(struct svc_keeper *k)
{
	void (*cb)(void *);
	void *data;
	if (!k->closing || k->inflight > 0 || !k->timer_closed)
		return;
	cb = k->close_cb;
	data = k->close_data;
	free(k);
	if (cb != NULL)
		cb(data);
}

static void on_timer(uv_timer_t *t)
{
	struct svc_keeper *k = t->data;
	if (!k->closing)
		keeper_run(k);
}

static void again_in(struct svc_keeper *k, unsigned ms)
{
	if (!k->closing)
		uv_timer_start(&k->timer, on_timer, ms, 0);
}

static void new_uid(char *buf, size_t len)
{
	uint8_t b[16] = {0};
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		for (size_t i = 0; i < sizeof b; i++)
			b[i] = (uint8_t)rand();
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(buf, len,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
}

static json_t *new_meta(const char *name, json_t *labels)
{
	char uid[40], ts[32];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
	new_uid(uid, sizeof uid);
	return json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", name, "namespace", "default", "uid",
			 uid, "creationTimestamp", ts, "labels", labels);
}

static int call(struct svc_keeper *k, enum kv_op op, json_t *req, kv_cb cb)
{
	int rv;
	k->inflight++;
	rv = kv_call(k->kv, op, req, cb, k);
	json_decref(req);
	if (rv != 0)
		k->inflight--;
	return rv;
}

/* The object wanted at the current step, with the fields compared to
 * decide whether an existing one must be rewritten (NULL: never). */
static json_t *wanted(struct svc_keeper *k, const char **key, const char **field)
{
	char ip[20];
	ipv4_format(svc_ranges_first_ip(k->ranges), ip, sizeof ip);
	switch (k->step) {
	case K_SERVICE:
		*key = KUBERNETES_SVC_KEY;
		*field = NULL;
		return json_pack("{s:s, s:s, s:o, s:{s:s, s:s, s:[s], s:[s], s:s, s:s, s:s, "
				 "s:[{s:s, s:i, s:s, s:i}]}, s:{s:{}}}",
				 "apiVersion", "v1", "kind", "Service", "metadata",
				 new_meta("kubernetes", json_pack("{s:s, s:s}", "component",
								  "apiserver", "provider",
								  "kubernetes")),
				 "spec", "type", "ClusterIP", "clusterIP", ip, "clusterIPs", ip,
				 "ipFamilies", "IPv4", "ipFamilyPolicy", "SingleStack",
				 "internalTrafficPolicy", "Cluster", "sessionAffinity", "None",
				 "ports", "name", "https", "port", 443, "protocol", "TCP",
				 "targetPort", k->port, "status", "loadBalancer");
	case K_ENDPOINTS:
		*key = KUBERNETES_EP_KEY;
		*field = "subsets";
		return json_pack("{s:s, s:s, s:o, s:[{s:[{s:s}], s:[{s:s, s:i, s:s}]}]}",
				 "apiVersion", "v1", "kind", "Endpoints", "metadata",
				 new_meta("kubernetes",
					  json_pack("{s:s}", "endpointslice.kubernetes.io/skip-mirror",
						    "true")),
				 "subsets", "addresses", "ip", k->host, "ports", "name", "https",
				 "port", k->port, "protocol", "TCP");
	case K_SLICE:
		*key = KUBERNETES_SLICE_KEY;
		*field = "endpoints";
		return json_pack("{s:s, s:s, s:o, s:s, s:[{s:[s], s:{s:b}}], s:[{s:s, s:i, s:s}]}",
				 "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice",
				 "metadata",
				 new_meta("kubernetes", json_pack("{s:s}", "kubernetes.io/service-name",
								  "kubernetes")),
				 "addressType", "IPv4", "endpoints", "addresses", k->host,
				 "conditions", "ready", 1, "ports", "name", "https", "port", k->port,
				 "protocol", "TCP");
	default:
		return NULL;
	}
}

static void on_fix(void *data, json_t *answer, json_t *err)
{
	struct svc_keeper *k = data;
	(void)answer;
	k->inflight--;
	if (k->closing) {
		maybe_free(k);
		return;
	}
	if (err != NULL) {
		again_in(k, RETRY_MS);
		return;
	}
	k->step++;
	keeper_run(k);
}

static void on_ensure(void *data, json_t *answer, json_t *err)
{
	struct svc_keeper *k = data;
	json_t *kvo, *cur = NULL, *want;
	const char *key, *field;
	uint8_t *v = NULL;
	size_t n = 0;
	int64_t mod = 0;
	char errmsg[256];
	k->inflight--;
	if (k->closing) {
		maybe_free(k);
		return;
	}
	if (err != NULL) {
		again_in(k, RETRY_MS);
		return;
	}
	if (k->step == K_SERVICE)
		k->ready = true;
	if (json_is_true(json_object_get(answer, "succeeded"))) {
		if (k->step == K_SERVICE)
			log_info("API server: created the kubernetes Service");
		k->step++;
		keeper_run(k);
		return;
	}
	/* It exists: a Service is the user's now; Endpoints and slices are
	 * rewritten when they point elsewhere (another address or port), on
	 * the first pass only, so that API servers sharing a store each
	 * claim them once at start rather than take turns every minute. */
	want = wanted(k, &key, &field);
	kvo = json_array_get(json_object_get(json_object_get(
		json_array_get(json_object_get(answer, "responses"), 0), "response_range"), "kvs"), 0);
	if (field != NULL && kvo != NULL &&
	    jsonx_get_bytes(kvo, "value", &v, &n, errmsg) == 0 && v != NULL)
		cur = json_loadb((const char *)v, n, 0, NULL);
	free(v);
	jsonx_get_i64(kvo, "mod_revision", &mod, errmsg);
	if (k->step == K_SERVICE && kvo == NULL)
		log_warn("API server: the kubernetes Service cannot take %s: the address is held "
			 "by another Service", str_of(spec_of(want), "clusterIP"));
	if (field == NULL || k->started || !json_is_object(cur) ||
	    json_equal(json_object_get(cur, field), json_object_get(want, field))) {
		json_decref(cur);
		json_decref(want);
		k->step++;
		keeper_run(k);
		return;
	}
	{
		json_t *meta = json_object_get(want, "metadata");
		json_t *cmeta = json_object_get(cur, "metadata");
		json_object_set(meta, "uid", json_object_get(cmeta, "uid"));
		json_object_set(meta, "creationTimestamp",
				json_object_get(cmeta, "creationTimestamp"));
		json_t *txn = json_pack("{s:[{s:o, s:s, s:s, s:o}], s:[o]}", "compare", "key",
					b64_str(key), "target", "MOD", "result", "EQUAL",
					"mod_revision", jsonx_i64(mod), "success", op_put(key, want));
		json_decref(cur);
		json_decref(want);
		if (call(k, KV_TXN, txn, on_fix) != 0)
			again_in(k, RETRY_MS);
	}
}

/* ---- repair ---- */

struct repair {
	struct svc_keeper *k;
	json_t *ips;     /* ip text -> "ns/name" of the Service holding it */
	json_t *ports;   /* port text -> "ns/name" */
	json_t *revs;    /* "ns/name" -> mod_revision of every Service */
	json_t *ops;     /* txns to send */
};

static bool collect_service(void *data, const char *key, json_t *svc, int64_t rev)
{
	struct repair *rp = data;
	json_t *meta = json_object_get(svc, "metadata");
	char owner[600], a[20], pn[16];
	uint32_t ip;
	int *held;
	size_t n;
	(void)key;
	snprintf(owner, sizeof owner, "%s/%s", str_of(meta, "namespace") ?: "",
		 str_of(meta, "name") ?: "");
	json_object_set_new(rp->revs, owner, jsonx_i64(rev));
	if (held_ip(svc, &ip)) {
		ipv4_format(ip, a, sizeof a);
		json_object_set_new(rp->ips, a, json_string(owner));
	}
	held = calloc(max_ports(svc), sizeof *held);
	n = held != NULL ? held_ports(svc, held) : 0;
	for (size_t i = 0; i < n; i++) {
		snprintf(pn, sizeof pn, "%d", held[i]);
		json_object_set_new(rp->ports, pn, json_string(owner));
	}
	free(held);
	return true;
}

static bool check_record(struct repair *rp, json_t *holders, const char *key, const char *v,
			 json_t *rec, int64_t rev, bool ip)
{
	json_t *ref = ip ? json_object_get(spec_of(rec), "parentRef")
			 : json_object_get(rec, "parentRef");
	const char *holder = json_string_value(json_object_get(holders, v));
	char owner[600];
	snprintf(owner, sizeof owner, "%s/%s", str_of(ref, "namespace") ?: "",
		 str_of(ref, "name") ?: "");
	if (holder != NULL && strcmp(holder, owner) == 0) {
		json_object_del(holders, v);
		return true;
	}
	/* Nobody holds it, or the record names someone else: drop it if
	 * neither it nor the Service it names changed since read (so a write
	 * the cache has not shown yet cannot lose its record). A holder (if
	 * any) gets a fresh record below. */
	{
		char skey[700];
		json_t *srev = json_object_get(rp->revs, owner), *cmp;
		const char *ons = str_of(ref, "namespace") ?: "", *oname = str_of(ref, "name") ?: "";
		snprintf(skey, sizeof skey, "/registry/services/%s/%s", ons, oname);
		cmp = json_pack("[{s:o, s:s, s:s, s:o}]", "key", b64_str(key), "target", "MOD",
				"result", "EQUAL", "mod_revision", jsonx_i64(rev));
		if (srev != NULL)
			json_array_append_new(cmp, json_pack("{s:o, s:s, s:s, s:O}", "key",
							     b64_str(skey), "target", "MOD",
							     "result", "EQUAL", "mod_revision",
							     srev));
		else
			json_array_append_new(cmp, cmp_absent(skey));
		log_warn("service allocations: dropping the leaked record %s (names %s)", key,
			 owner);
		json_array_append_new(rp->ops, json_pack("{s:o, s:[o]}", "compare", cmp, "success",
							 op_del(key)));
	}
	return true;
}

static bool check_ip(void *data, const char *key, json_t *rec, int64_t rev)
{
	struct repair *rp = data;
	return check_record(rp, rp->ips, key, key + strlen(SVCALLOC_IP_PREFIX), rec, rev, true);
}

static bool check_port(void *data, const char *key, json_t *rec, int64_t rev)
{
	struct repair *rp = data;
	return check_record(rp, rp->ports, key, key + strlen(SVCALLOC_PORT_PREFIX), rec, rev,
			    false);
}

static void split_owner(const char *owner, char *ns, size_t len, const char **name)
{
	const char *slash = strchr(owner, '/');
	size_t n = slash ? (size_t)(slash - owner) : 0;
	if (n >= len)
		n = len - 1;
	memcpy(ns, owner, n);
	ns[n] = '\0';
	*name = slash ? slash + 1 : owner;
}

static void on_repair_txn(void *data, json_t *answer, json_t *err)
{
	struct svc_keeper *k = data;
	(void)answer;
	(void)err;
	k->inflight--;
	maybe_free(k);
}

/* Queues "create key with rec (taken) if it is still absent" for a Service
 * that holds a value without its record. */
static void record_holder(struct repair *rp, const char *key, json_t *rec, json_t *owner,
			  const char *what, const char *value)
{
	log_warn("service allocations: %s holds %s%s without a record; recording it",
		 json_string_value(owner), what, value);
	json_array_append_new(rp->ops, json_pack("{s:[o], s:[o]}", "compare", cmp_absent(key),
						 "success", op_put(key, rec)));
	json_decref(rec);
}

static void repair(struct svc_keeper *k)
{
	struct repair rp = {k, json_object(), json_object(), json_object(), json_array()};
	struct rangealloc *all;
	char key[128], ns[256];
	const char *v, *name;
	json_t *owner, *txn;
	size_t i;
	wc_range(k->cache, "/registry/services/", NULL, collect_service, &rp);
	wc_range(k->cache, SVCALLOC_IP_PREFIX, NULL, check_ip, &rp);
	wc_range(k->cache, SVCALLOC_PORT_PREFIX, NULL, check_port, &rp);
	/* Holders left have no record: give them one, if still free. */
	all = rangealloc_new_ips(k->ranges);
	json_object_foreach(rp.ips, v, owner) {
		uint32_t ip;
		if (ipv4_parse(v, &ip) != 0 || all == NULL || !rangealloc_contains(all, ip))
			continue;
		ip_key(ip, key, sizeof key);
		split_owner(json_string_value(owner), ns, sizeof ns, &name);
		record_holder(&rp, key, ip_record(ip, ns, name), owner, "", v);
	}
	rangealloc_free(all);
	json_object_foreach(rp.ports, v, owner) {
		int port = atoi(v);
		if (port < k->ranges->port_lo || port > k->ranges->port_hi)
			continue;
		port_key(port, key, sizeof key);
		split_owner(json_string_value(owner), ns, sizeof ns, &name);
		record_holder(&rp, key, port_record(port, ns, name), owner, "node port ", v);
	}
	json_array_foreach(rp.ops, i, txn)
		call(k, KV_TXN, json_incref(txn), on_repair_txn);
	json_decref(rp.ips);
	json_decref(rp.ports);
	json_decref(rp.revs);
	json_decref(rp.ops);
}

static void keeper_run(struct svc_keeper *k)
{
	const char *key, *field;
	json_t *want, *txn, *cmp, *succ;
	if (k->closing)
		return;
	if (!wc_ready(k->cache)) {
		again_in(k, RETRY_MS);
		return;
	}
	if (k->step == K_REPAIR) {
		/* Next time round, the kubernetes Service (and its Endpoints and
		 * slice) are re-created if someone deleted them. */
		repair(k);
		k->started = true;
		k->step = K_SERVICE;
		again_in(k, REPAIR_MS);
		return;
	}
	want = wanted(k, &key, &field);
	cmp = json_pack("[o]", cmp_absent(key));
	succ = json_pack("[o]", op_put(key, want));
	if (k->step == K_SERVICE) {
		uint32_t ip = svc_ranges_first_ip(k->ranges);
		char ikey[128];
		json_t *rec = ip_record(ip, "default", "kubernetes");
		ip_key(ip, ikey, sizeof ikey);
		json_array_append_new(cmp, cmp_absent(ikey));
		json_array_append_new(succ, op_put(ikey, rec));
		json_decref(rec);
	}
	txn = json_pack("{s:o, s:o, s:[{s:{s:o}}]}", "compare", cmp, "success", succ, "failure",
			"request_range", "key", b64_str(key));
	json_decref(want);
	if (call(k, KV_TXN, txn, on_ensure) != 0)
		again_in(k, RETRY_MS);
}

int svc_keeper_start(uv_loop_t *loop, struct kv *kv, struct wc *cache,
		     const struct svc_ranges *r, const char *host, int port,
		     struct svc_keeper **out)
{
	struct svc_keeper *k = calloc(1, sizeof *k);
	uint32_t ip;
	if (k == NULL)
		return -1;
	k->loop = loop;
	k->kv = kv;
	k->cache = cache;
	k->ranges = r;
	/* Endpoints hold addresses, not names or the wildcard. */
	if (ipv4_parse(host, &ip) != 0 || ip == 0)
		host = "127.0.0.1";
	snprintf(k->host, sizeof k->host, "%s", host);
	k->port = port;
	uv_timer_init(loop, &k->timer);
	k->timer.data = k;
	keeper_run(k);
	*out = k;
	return 0;
}

bool svc_keeper_ready(const struct svc_keeper *k)
{
	return k != NULL && k->ready;
}

static void timer_closed(uv_handle_t *h)
{
	struct svc_keeper *k = h->data;
	k->timer_closed = true;
	maybe_free(k);
}

void svc_keeper_close(struct svc_keeper *k, void (*cb)(void *data), void *data)
{
	k->closing = true;
	k->close_cb = cb;
	k->close_data = data;
	uv_timer_stop(&k->timer);
	uv_close((uv_handle_t *)&k->timer, timer_closed);
}
