/* proxy_rules.c — the Service proxy's model (service ports and their ready
 * endpoints) and the nftables table it becomes.
 *
 * The table follows kube-proxy's nftables mode, so the packet path is the
 * one Kubernetes users know:
 *
 *   nat prerouting (pods, other hosts) and nat output (node processes)
 *     -> chain services: (daddr, l4proto, dport) vmap @service-ips, and for
 *        local destinations (l4proto, dport) vmap @service-nodeports
 *     -> svc-*: numgen random mod N vmap -> one ep-* chain per endpoint
 *     -> ep-*: hairpin traffic (the endpoint reaching itself) is marked for
 *        masquerade; dnat to endpointIP:targetPort
 *   ext-* (nodePorts): every connection is marked for masquerade, so that
 *     replies come back through this node, then goes to the svc-* chain.
 *   nat postrouting: marked packets are masqueraded.
 *   filter input/forward/output (before DNAT): new connections to a
 *     service port without ready endpoints are rejected (TCP reset, ICMP
 *     port unreachable otherwise), as kube-proxy does, instead of leaving
 *     clients to time out.
 *
 * IPv4 only: the table is "ip capstan". */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "orchestrator/agent/proxy_rules.h"

/* ---- model ---- */

void proxy_model_init(struct proxy_model *m)
{
	memset(m, 0, sizeof *m);
}

void proxy_model_free(struct proxy_model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->v[i].key);
		free(m->v[i].eps);
	}
	free(m->v);
	memset(m, 0, sizeof *m);
}

static const char *jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* Canonical dotted IPv4 text of s into out[16], or false. */
static bool ipv4_canon(const char *s, char out[16])
{
	struct in_addr a;
	if (s == NULL || inet_pton(AF_INET, s, &a) != 1)
		return false;
	return inet_ntop(AF_INET, &a, out, 16) != NULL;
}

static int json_port(json_t *v)
{
	json_int_t p = json_integer_value(v);
	return json_is_integer(v) && p >= 1 && p <= 65535 ? (int)p : 0;
}

/* "TCP" -> "tcp"; NULL for what the proxy does not carry. */
static const char *proto_name(const char *p)
{
	if (p == NULL || strcmp(p, "TCP") == 0)
		return "tcp";
	if (strcmp(p, "UDP") == 0)
		return "udp";
	if (strcmp(p, "SCTP") == 0)
		return "sctp";
	return NULL;
}

static int cmp_ep(const void *a, const void *b)
{
	const struct proxy_endpoint *x = a, *y = b;
	struct in_addr p, q;
	inet_pton(AF_INET, x->ip, &p);
	inet_pton(AF_INET, y->ip, &q);
	if (ntohl(p.s_addr) != ntohl(q.s_addr))
		return ntohl(p.s_addr) < ntohl(q.s_addr) ? -1 : 1;
	return x->port - y->port;
}

/* The port of ports (an Endpoints subset's or an EndpointSlice's) named
 * pname with sp's protocol, or 0. */
static int match_port(const struct proxy_svc_port *sp, json_t *ports, const char *pname)
{
	json_t *port;
	size_t j;
	json_array_foreach(ports, j, port) {
		const char *n = jstr(port, "name");
		const char *pr = proto_name(jstr(port, "protocol"));
		if (strcmp(n ? n : "", pname) == 0 && pr != NULL && strcmp(pr, sp->proto) == 0)
			return json_port(json_object_get(port, "port"));
	}
	return 0;
}

static int push_ep(struct proxy_svc_port *sp, const char *ip, int port)
{
	struct proxy_endpoint e = {.port = port};
	struct proxy_endpoint *nv;
	if (!ipv4_canon(ip, e.ip))
		return 0;
	nv = realloc(sp->eps, (sp->n_eps + 1) * sizeof *nv);
	if (nv == NULL)
		return -1;
	sp->eps = nv;
	sp->eps[sp->n_eps++] = e;
	return 0;
}

/* The ready endpoints of the service port named pname, from an Endpoints
 * object (ep) or from EndpointSlices (slices: an array). */
static int collect_eps(struct proxy_svc_port *sp, json_t *ep, json_t *slices, const char *pname)
{
	json_t *subset, *addr, *slice, *e;
	size_t i, k;

	json_array_foreach(json_object_get(ep, "subsets"), i, subset) {
		int target = match_port(sp, json_object_get(subset, "ports"), pname);
		if (target == 0)
			continue;
		json_array_foreach(json_object_get(subset, "addresses"), k, addr)
			if (push_ep(sp, jstr(addr, "ip"), target) != 0)
				return -1;
	}
	json_array_foreach(slices, i, slice) {
		const char *type = jstr(slice, "addressType");
		int target = match_port(sp, json_object_get(slice, "ports"), pname);
		if (target == 0 || (type != NULL && strcmp(type, "IPv4") != 0))
			continue;
		json_array_foreach(json_object_get(slice, "endpoints"), k, e) {
			/* discovery.k8s.io/v1: an absent ready condition means ready;
			 * not-ready and terminating endpoints have ready false. */
			json_t *ready = json_object_get(json_object_get(e, "conditions"), "ready");
			if (json_is_false(ready))
				continue;
			if (push_ep(sp, json_string_value(json_array_get(json_object_get(e, "addresses"),
									 0)), target) != 0)
				return -1;
		}
	}
	if (sp->n_eps > 1) {
		size_t w = 1;
		qsort(sp->eps, sp->n_eps, sizeof *sp->eps, cmp_ep);
		for (size_t r = 1; r < sp->n_eps; r++)
			if (cmp_ep(&sp->eps[r], &sp->eps[w - 1]) != 0)
				sp->eps[w++] = sp->eps[r];
		sp->n_eps = w;
	}
	return 0;
}

static int model_add(struct proxy_model *m, json_t *svc, json_t *ep, json_t *slices)
{
	json_t *meta = json_object_get(svc, "metadata"), *spec = json_object_get(svc, "spec");
	const char *ns = jstr(meta, "namespace"), *name = jstr(meta, "name");
	const char *type = jstr(spec, "type");
	char cip[16] = "";
	json_t *port;
	size_t i;
	int added = 0;

	if (ns == NULL || name == NULL)
		return 0;
	if (type != NULL && strcmp(type, "ExternalName") == 0)
		return 0;
	/* "None" (headless) and IPv6 clusterIPs fail to parse: no clusterIP rules. */
	if (!ipv4_canon(jstr(spec, "clusterIP"), cip))
		cip[0] = '\0';
	if (jstr(spec, "clusterIP") != NULL && strcmp(jstr(spec, "clusterIP"), "None") == 0)
		return 0;
	json_array_foreach(json_object_get(spec, "ports"), i, port) {
		const char *pname = jstr(port, "name");
		const char *proto = proto_name(jstr(port, "protocol"));
		int sport = json_port(json_object_get(port, "port"));
		int nport = 0;
		struct proxy_svc_port sp = {0};
		char key[1024];

		if (type != NULL && (strcmp(type, "NodePort") == 0 || strcmp(type, "LoadBalancer") == 0))
			nport = json_port(json_object_get(port, "nodePort"));
		if (proto == NULL || sport == 0 || (cip[0] == '\0' && nport == 0))
			continue;
		snprintf(key, sizeof key, "%s/%s/%s/%s", ns, name, proto, pname ? pname : "");
		if (proxy_model_find(m, key) != NULL)
			continue;   /* a duplicate port: validation should have refused it */
		sp.key = strdup(key);
		if (sp.key == NULL)
			return -1;
		snprintf(sp.proto, sizeof sp.proto, "%s", proto);
		memcpy(sp.cluster_ip, cip, sizeof cip);
		sp.port = sport;
		sp.node_port = nport;
		if (collect_eps(&sp, ep, slices, pname ? pname : "") != 0)
			goto err_sp;
		if (m->n == m->cap) {
			size_t cap = m->cap ? m->cap * 2 : 16;
			struct proxy_svc_port *nv = realloc(m->v, cap * sizeof *nv);
			if (nv == NULL)
				goto err_sp;
			m->v = nv;
			m->cap = cap;
		}
		m->v[m->n++] = sp;
		added++;
		continue;
err_sp:
		free(sp.key);
		free(sp.eps);
		return -1;
	}
	return added;
}

int proxy_model_add(struct proxy_model *m, json_t *svc, json_t *ep)
{
	return model_add(m, svc, ep, NULL);
}

int proxy_model_add_slices(struct proxy_model *m, json_t *svc, json_t *slices)
{
	return model_add(m, svc, NULL, slices);
}

static int cmp_port(const void *a, const void *b)
{
	return strcmp(((const struct proxy_svc_port *)a)->key,
		      ((const struct proxy_svc_port *)b)->key);
}

void proxy_model_sort(struct proxy_model *m)
{
	if (m->n > 1)
		qsort(m->v, m->n, sizeof *m->v, cmp_port);
}

const struct proxy_svc_port *proxy_model_find(const struct proxy_model *m, const char *key)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->v[i].key, key) == 0)
			return &m->v[i];
	return NULL;
}

/* ---- CIDR lists ---- */

int proxy_parse_cidrs(const char *list, char *out, size_t size, char *errmsg)
{
	char buf[1024], *save = NULL, *tok;
	size_t used = 0;

	if (size > 0)
		out[0] = '\0';
	if (list == NULL || list[0] == '\0')
		return 0;
	if (strlen(list) >= sizeof buf) {
		cap_errmsg_printf(errmsg, "address list too long");
		return -1;
	}
	memcpy(buf, list, strlen(list) + 1);
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char ip[16], *slash = strchr(tok, '/'), *end;
		long bits = 32;
		struct in_addr a;
		uint32_t mask;
		int n;

		while (*tok == ' ')
			tok++;
		if (slash != NULL) {
			*slash = '\0';
			bits = strtol(slash + 1, &end, 10);
			if (slash[1] == '\0' || *end != '\0' || bits < 0 || bits > 32) {
				cap_errmsg_printf(errmsg, "bad prefix length in \"%s/%s\"", tok, slash + 1);
				return -1;
			}
		}
		if (inet_pton(AF_INET, tok, &a) != 1) {
			cap_errmsg_printf(errmsg, "\"%s\" is not an IPv4 address", tok);
			return -1;
		}
		/* nft refuses a prefix with host bits set: keep the network. */
		mask = bits == 0 ? 0 : htonl(0xffffffffu << (32 - bits));
		a.s_addr &= mask;
		inet_ntop(AF_INET, &a, ip, sizeof ip);
		n = snprintf(out + used, size - used, "%s%s/%ld", used ? ", " : "", ip, bits);
		if (n < 0 || (size_t)n >= size - used) {
			cap_errmsg_printf(errmsg, "address list too long");
			return -1;
		}
		used += (size_t)n;
	}
	return 0;
}

/* ---- rendering ---- */

struct sb {
	char *s;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	if (b->s == NULL) {
		b->cap = 4096;
		b->s = malloc(b->cap);
		if (b->s == NULL) {
			b->oom = true;
			return;
		}
	}
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = (b->cap + (size_t)n + 1) * 2;
		char *ns = realloc(b->s, cap);
		if (ns == NULL) {
			b->oom = true;
			return;
		}
		b->s = ns;
		b->cap = cap;
	}
}

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* A chain name: prefix, a hash of the full identity (so two names that
 * differ only in characters nft refuses stay apart), and the readable
 * identity with those characters replaced. nft identifiers take letters,
 * digits and "/-_." after the first letter. */
static void chain_name(char *out, size_t size, const char *prefix, const char *id)
{
	int n = snprintf(out, size, "%s-%08x-", prefix, fnv1a(id));
	size_t i = n > 0 ? (size_t)n : 0;
	for (; *id != '\0' && i + 1 < size && i < 200; id++) {
		char c = *id;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '/' || c == '-' || c == '_' || c == '.';
		out[i++] = ok ? c : '_';
	}
	out[i] = '\0';
}

static void ep_chain_name(char *out, size_t size, const struct proxy_svc_port *sp,
			  const struct proxy_endpoint *e)
{
	char id[1100];
	snprintf(id, sizeof id, "%s__%s/%d", sp->key, e->ip, e->port);
	chain_name(out, size, "ep", id);
}

/* One map, its elements produced by emit (skipped when there are none, as
 * nft refuses an empty element list). */
static void render_map(struct sb *b, const struct proxy_model *m, const char *name,
		       const char *type,
		       bool (*emit)(struct sb *b, const struct proxy_svc_port *sp, bool first))
{
	bool first = true;
	sb_printf(b, "\tmap %s {\n\t\ttype %s : verdict\n", name, type);
	for (size_t i = 0; i < m->n; i++) {
		if (emit(NULL, &m->v[i], first)) {
			if (first)
				sb_printf(b, "\t\telements = {\n");
			emit(b, &m->v[i], first);
			first = false;
		}
	}
	if (!first)
		sb_printf(b, "\n\t\t}\n");
	sb_printf(b, "\t}\n\n");
}

/* Each emitter answers "do I have an element for sp" when b is NULL. */
static bool emit_service_ip(struct sb *b, const struct proxy_svc_port *sp, bool first)
{
	char c[300];
	if (sp->cluster_ip[0] == '\0' || sp->n_eps == 0)
		return false;
	if (b == NULL)
		return true;
	chain_name(c, sizeof c, "svc", sp->key);
	sb_printf(b, "%s\t\t\t%s . %s . %d : goto %s", first ? "" : ",\n", sp->cluster_ip,
		  sp->proto, sp->port, c);
	return true;
}

static bool emit_service_nodeport(struct sb *b, const struct proxy_svc_port *sp, bool first)
{
	char c[300];
	if (sp->node_port == 0 || sp->n_eps == 0)
		return false;
	if (b == NULL)
		return true;
	chain_name(c, sizeof c, "ext", sp->key);
	sb_printf(b, "%s\t\t\t%s . %d : goto %s", first ? "" : ",\n", sp->proto, sp->node_port, c);
	return true;
}

static bool emit_noep_ip(struct sb *b, const struct proxy_svc_port *sp, bool first)
{
	if (sp->cluster_ip[0] == '\0' || sp->n_eps > 0)
		return false;
	if (b != NULL)
		sb_printf(b, "%s\t\t\t%s . %s . %d : goto reject-chain", first ? "" : ",\n",
			  sp->cluster_ip, sp->proto, sp->port);
	return true;
}

static bool emit_noep_nodeport(struct sb *b, const struct proxy_svc_port *sp, bool first)
{
	if (sp->node_port == 0 || sp->n_eps > 0)
		return false;
	if (b != NULL)
		sb_printf(b, "%s\t\t\t%s . %d : goto reject-chain", first ? "" : ",\n", sp->proto,
			  sp->node_port);
	return true;
}

/* Calls fn with the name of every per-service chain the model's table
 * has (svc-, ext- and ep- chains), in rendering order. */
static void each_chain(const struct proxy_model *m, void (*fn)(void *data, const char *name),
		       void *data)
{
	char c[300];
	for (size_t i = 0; i < m->n; i++) {
		const struct proxy_svc_port *sp = &m->v[i];
		if (sp->n_eps == 0)
			continue;
		chain_name(c, sizeof c, "svc", sp->key);
		fn(data, c);
		if (sp->node_port != 0) {
			chain_name(c, sizeof c, "ext", sp->key);
			fn(data, c);
		}
		for (size_t j = 0; j < sp->n_eps; j++) {
			ep_chain_name(c, sizeof c, sp, &sp->eps[j]);
			fn(data, c);
		}
	}
}

struct chain_list {
	char **v;
	size_t n;
	bool oom;
};

static void collect_chain(void *data, const char *name)
{
	struct chain_list *l = data;
	char **nv;
	if (l->oom)
		return;
	nv = realloc(l->v, (l->n + 1) * sizeof *nv);
	if (nv == NULL) {
		l->oom = true;
		return;
	}
	l->v = nv;
	if ((nv[l->n] = strdup(name)) == NULL) {
		l->oom = true;
		return;
	}
	l->n++;
}

int proxy_nft_chains(const struct proxy_model *m, char ***out, size_t *n)
{
	struct chain_list l = {0};
	each_chain(m, collect_chain, &l);
	if (l.oom) {
		proxy_nft_chains_free(l.v, l.n);
		return -1;
	}
	*out = l.v;
	*n = l.n;
	return 0;
}

void proxy_nft_chains_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void declare_chain(void *data, const char *name)
{
	sb_printf(data, "\tchain %s {\n\t}\n", name);
}

/* The in-place update's prologue: every object of the new table declared
 * (existing ones are left as they are), then every rule and element
 * flushed, so that the body that follows fills them afresh. */
static void render_update_prologue(struct sb *b, const struct proxy_model *m, bool cidrs)
{
	static const char *const maps[][2] = {
		{"service-ips", "ipv4_addr . inet_proto . inet_service"},
		{"service-nodeports", "inet_proto . inet_service"},
		{"no-endpoint-services", "ipv4_addr . inet_proto . inet_service"},
		{"no-endpoint-nodeports", "inet_proto . inet_service"},
	};
	static const char *const base[][2] = {
		{"filter-input", "filter hook input priority -110"},
		{"filter-forward", "filter hook forward priority -110"},
		{"filter-output", "filter hook output priority -110"},
		{"nat-prerouting", "nat hook prerouting priority -100"},
		{"nat-output", "nat hook output priority -100"},
		{"nat-postrouting", "nat hook postrouting priority 100"},
	};
	static const char *const plain[] = {"service-endpoints-check", "nodeport-endpoints-check",
					    "services", "reject-chain", "mark-for-masquerade",
					    "masquerading"};
	size_t i;

	sb_printf(b, "table ip " PROXY_NFT_TABLE " {\n");
	for (i = 0; i < sizeof maps / sizeof maps[0]; i++)
		sb_printf(b, "\tmap %s {\n\t\ttype %s : verdict\n\t}\n", maps[i][0], maps[i][1]);
	if (cidrs)
		sb_printf(b, "\tset nodeport-ips {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t}\n");
	for (i = 0; i < sizeof base / sizeof base[0]; i++)
		sb_printf(b, "\tchain %s {\n\t\ttype %s; policy accept;\n\t}\n", base[i][0],
			  base[i][1]);
	for (i = 0; i < sizeof plain / sizeof plain[0]; i++)
		declare_chain(b, plain[i]);
	each_chain(m, declare_chain, b);
	sb_printf(b, "}\nflush table ip " PROXY_NFT_TABLE "\n");
	for (i = 0; i < sizeof maps / sizeof maps[0]; i++)
		sb_printf(b, "flush map ip " PROXY_NFT_TABLE " %s\n", maps[i][0]);
	if (cidrs)
		sb_printf(b, "flush set ip " PROXY_NFT_TABLE " nodeport-ips\n");
}

char *proxy_nft_render(const struct proxy_model *m, const struct proxy_nft_opts *o)
{
	struct sb b = {0};
	bool cidrs = o != NULL && o->nodeport_cidrs != NULL && o->nodeport_cidrs[0] != '\0';
	/* nodePorts answer on the node's own addresses only, and not on
	 * loopback: a connection from 127.0.0.1 cannot be routed to a pod (the
	 * kernel refuses a loopback source off lo), as in kube-proxy's
	 * nftables mode. */
	const char *local = cidrs ? "ip daddr @nodeport-ips fib daddr type local" :
				    "fib daddr type local ip daddr != 127.0.0.0/8";
	char c[300], e[300];

	if (o != NULL && o->update)
		render_update_prologue(&b, m, cidrs);
	else
		sb_printf(&b, "add table ip " PROXY_NFT_TABLE "\n"
			      "delete table ip " PROXY_NFT_TABLE "\n");
	sb_printf(&b, "table ip " PROXY_NFT_TABLE " {\n");
	render_map(&b, m, "service-ips", "ipv4_addr . inet_proto . inet_service", emit_service_ip);
	render_map(&b, m, "service-nodeports", "inet_proto . inet_service", emit_service_nodeport);
	render_map(&b, m, "no-endpoint-services", "ipv4_addr . inet_proto . inet_service",
		   emit_noep_ip);
	render_map(&b, m, "no-endpoint-nodeports", "inet_proto . inet_service", emit_noep_nodeport);
	if (cidrs)
		sb_printf(&b, "\tset nodeport-ips {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
			      "\t\telements = { %s }\n\t}\n\n", o->nodeport_cidrs);

	/* Base chains. The filter ones run before DNAT (priority -110 < -100). */
	sb_printf(&b,
		  "\tchain filter-input {\n"
		  "\t\ttype filter hook input priority -110; policy accept;\n"
		  "\t\tct state new jump nodeport-endpoints-check\n"
		  "\t\tct state new jump service-endpoints-check\n"
		  "\t}\n\n"
		  "\tchain filter-forward {\n"
		  "\t\ttype filter hook forward priority -110; policy accept;\n"
		  "\t\tct state new jump service-endpoints-check\n"
		  "\t}\n\n"
		  "\tchain filter-output {\n"
		  "\t\ttype filter hook output priority -110; policy accept;\n"
		  "\t\tct state new jump service-endpoints-check\n"
		  "\t\tct state new jump nodeport-endpoints-check\n"
		  "\t}\n\n"
		  "\tchain nat-prerouting {\n"
		  "\t\ttype nat hook prerouting priority -100; policy accept;\n"
		  "\t\tjump services\n"
		  "\t}\n\n"
		  "\tchain nat-output {\n"
		  "\t\ttype nat hook output priority -100; policy accept;\n"
		  "\t\tjump services\n"
		  "\t}\n\n"
		  "\tchain nat-postrouting {\n"
		  "\t\ttype nat hook postrouting priority 100; policy accept;\n"
		  "\t\tjump masquerading\n"
		  "\t}\n\n");
	sb_printf(&b,
		  "\tchain service-endpoints-check {\n"
		  "\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services\n"
		  "\t}\n\n"
		  "\tchain nodeport-endpoints-check {\n"
		  "\t\t%s meta l4proto . th dport vmap @no-endpoint-nodeports\n"
		  "\t}\n\n"
		  "\tchain services {\n"
		  "\t\tip daddr . meta l4proto . th dport vmap @service-ips\n"
		  "\t\t%s meta l4proto . th dport vmap @service-nodeports\n"
		  "\t}\n\n"
		  "\tchain reject-chain {\n"
		  "\t\tmeta l4proto tcp reject with tcp reset\n"
		  "\t\treject\n"
		  "\t}\n\n"
		  "\tchain mark-for-masquerade {\n"
		  "\t\tmeta mark set meta mark | 0x%x\n"
		  "\t}\n\n"
		  "\tchain masquerading {\n"
		  "\t\tmeta mark & 0x%x == 0 return\n"
		  "\t\tmeta mark set meta mark ^ 0x%x\n"
		  "\t\tmasquerade fully-random\n"
		  "\t}\n",
		  local, local, PROXY_MASQ_MARK, PROXY_MASQ_MARK, PROXY_MASQ_MARK);

	for (size_t i = 0; i < m->n; i++) {
		const struct proxy_svc_port *sp = &m->v[i];
		if (sp->n_eps == 0)
			continue;
		chain_name(c, sizeof c, "svc", sp->key);
		sb_printf(&b, "\n\tchain %s {\n\t\tnumgen random mod %zu vmap {", c, sp->n_eps);
		for (size_t j = 0; j < sp->n_eps; j++) {
			ep_chain_name(e, sizeof e, sp, &sp->eps[j]);
			sb_printf(&b, "%s %zu : goto %s", j ? "," : "", j, e);
		}
		sb_printf(&b, " }\n\t}\n");
		if (sp->node_port != 0) {
			chain_name(e, sizeof e, "ext", sp->key);
			sb_printf(&b, "\n\tchain %s {\n\t\tjump mark-for-masquerade\n"
				      "\t\tgoto %s\n\t}\n", e, c);
		}
		for (size_t j = 0; j < sp->n_eps; j++) {
			ep_chain_name(e, sizeof e, sp, &sp->eps[j]);
			sb_printf(&b, "\n\tchain %s {\n"
				      "\t\tip saddr %s jump mark-for-masquerade\n"
				      "\t\tmeta l4proto %s dnat to %s:%d\n\t}\n",
				  e, sp->eps[j].ip, sp->proto, sp->eps[j].ip, sp->eps[j].port);
		}
	}
	sb_printf(&b, "}\n");
	/* Chains of services and endpoints that are gone: nothing refers to
	 * them any more (their rules and map elements were flushed above). */
	if (o != NULL && o->update && o->n_prev > 0) {
		struct chain_list now = {0};
		each_chain(m, collect_chain, &now);
		if (now.oom)
			b.oom = true;
		else if (now.n > 1)
			qsort(now.v, now.n, sizeof *now.v, cmp_str);
		for (size_t i = 0; i < o->n_prev && !b.oom; i++) {
			bool keep = now.n > 0 && bsearch(&o->prev_chains[i], now.v, now.n,
							  sizeof *now.v, cmp_str) != NULL;
			if (!keep)
				sb_printf(&b, "delete chain ip " PROXY_NFT_TABLE " %s\n",
					  o->prev_chains[i]);
		}
		proxy_nft_chains_free(now.v, now.n);
	}
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	return b.s;
}
