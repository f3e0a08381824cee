/* network.c — the pod network of one node (network.h): a bridge, one
 * network namespace and veth pair per pod, host-local addresses (ipam.c),
 * host-gateway routes to the other nodes' pod ranges, and the routes that
 * keep the cluster's ranges on the machine (pods: unreachable, services:
 * local).
 *
 * Happy path (BRIDGE mode): start → a Node informer → our Node shows its
 * spec.podCIDR → the bridge cbr0 gets the range's first address and comes
 * up, IPv4 forwarding is turned on, the cluster pod range gets an
 * `unreachable` route and the service range a `local` one → ready. Each pod: a namespace (created by
 * unsharing on the loop thread, bind-mounted at DATA/network/netns/<uid> so
 * it outlives the agent, then back to ours), an address, a veth pair whose
 * pod end is eth0 inside it, on the bridge; lo and eth0 up, a default route
 * via the bridge. Every other Node with a pod range and an InternalIP gets a
 * route to that range via that address.
 *
 * Failure modes: not root, or the bridge cannot be made → HOST mode with
 * the reason in the NetworkUnavailable condition; a pod whose setup fails
 * gets the error back (the agent retries); a route that cannot be installed
 * is logged and tried again on the Node's next update. Every step is
 * idempotent, so a setup interrupted by a crash is completed by the next
 * agent. Netlink is used through libnl-route (requests to the kernel are
 * answered at once: fine on the loop); nothing is spawned. */
#include "orchestrator/agent/network.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <sched.h>
#include <sys/random.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "lib/cidr.h"
#include "lib/err.h"
#include "lib/log.h"
#include "orchestrator/agent/ipam.h"
#include "orchestrator/kube/informer.h"
#include "lib/dirs.h"

#define BRIDGE_NAME "cbr0"
#define POD_IFNAME "eth0"
#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

/* Our routes carry a protocol number of their own, so that a later agent
 * tells them from anyone else's (`ip route` shows "proto 99"). */
#define RTPROT_CAPSTAN 99

enum net_state { NET_HOST, NET_WAITING, NET_READY };

struct network {
	uv_loop_t *loop;
	struct kclient *kc;
	char *node;
	char node_ip[16];
	char dir[PATH_MAX - 320], ipam_dir[PATH_MAX - 300], netns_dir[PATH_MAX - 300];
	struct cidr cluster, service, pod_cidr;
	uint32_t gateway;
	enum net_state state;
	char reason[64], message[256], since[32];
	struct nl_sock *sk;          /* NETLINK_ROUTE in the agent's namespace */
	struct informer *nodes;
	json_t *routes;              /* node name -> "cidr via ip" installed */
	uv_timer_t sweep_timer;      /* until the Node informer has synced */
	bool sweep_timer_init;
	void (*changed)(void *data);
	void *data;
};

/* ---- netlink helpers (libnl errors are negative NLE_ codes) ---- */

static struct nl_sock *nl_open(void)
{
	struct nl_sock *sk = nl_socket_alloc();
	if (sk == NULL)
		return NULL;
	if (nl_connect(sk, NETLINK_ROUTE) != 0) {
		nl_socket_free(sk);
		return NULL;
	}
	return sk;
}

static int link_index(struct nl_sock *sk, const char *name)
{
	struct rtnl_link *l = NULL;
	int idx, rv = rtnl_link_get_kernel(sk, 0, name, &l);
	if (rv < 0)
		return rv;
	idx = rtnl_link_get_ifindex(l);
	rtnl_link_put(l);
	return idx;
}

static int link_up(struct nl_sock *sk, int ifindex)
{
	struct rtnl_link *orig = rtnl_link_alloc(), *chg = rtnl_link_alloc();
	int rv = -NLE_NOMEM;
	if (orig != NULL && chg != NULL) {
		rtnl_link_set_ifindex(orig, ifindex);
		rtnl_link_set_flags(chg, IFF_UP);
		rv = rtnl_link_change(sk, orig, chg, 0);
	}
	rtnl_link_put(orig);
	rtnl_link_put(chg);
	return rv;
}

/* Hairpin mode on a bridge port: a frame may go back out the port it came
 * in, so a pod reaches itself through an address the host rewrites to its
 * own (a Service's, by the service proxy). */
static int port_hairpin(struct nl_sock *sk, int ifindex)
{
	struct rtnl_link *chg = rtnl_link_alloc();
	int rv = -NLE_NOMEM;
	if (chg != NULL) {
		rtnl_link_set_family(chg, AF_BRIDGE);
		rtnl_link_set_ifindex(chg, ifindex);
		rv = rtnl_link_bridge_set_flags(chg, RTNL_BRIDGE_HAIRPIN_MODE);
		if (rv == 0)
			rv = rtnl_link_change(sk, chg, chg, 0);
	}
	rtnl_link_put(chg);
	return rv;
}

static struct nl_addr *nl_ip(uint32_t ip, unsigned prefix)
{
	uint32_t be = htonl(ip);
	struct nl_addr *a = nl_addr_build(AF_INET, &be, sizeof be);
	if (a != NULL)
		nl_addr_set_prefixlen(a, (int)prefix);
	return a;
}

/* Adds ip/prefix to the link; an address already there is fine. */
static int addr_add(struct nl_sock *sk, int ifindex, uint32_t ip, unsigned prefix)
{
	struct rtnl_addr *a = rtnl_addr_alloc();
	struct nl_addr *local = nl_ip(ip, prefix);
	int rv = -NLE_NOMEM;
	if (a != NULL && local != NULL) {
		rtnl_addr_set_ifindex(a, ifindex);
		rtnl_addr_set_family(a, AF_INET);
		rtnl_addr_set_local(a, local);
		rv = rtnl_addr_add(sk, a, 0);
		if (rv == -NLE_EXIST)
			rv = 0;
	}
	nl_addr_put(local);
	rtnl_addr_put(a);
	return rv;
}

/* Creates or replaces the route to dst: unreachable or local on oif
 * (type), or via gw (0: none) out of oif (0: any). */
static int route_set(struct nl_sock *sk, const struct cidr *dst, uint8_t type, uint32_t gw,
		     int oif)
{
	struct rtnl_route *r = rtnl_route_alloc();
	struct nl_addr *d = nl_ip(dst->addr, dst->prefix), *g = NULL;
	struct rtnl_nexthop *nh = NULL;
	int rv = -NLE_NOMEM;
	if (r == NULL || d == NULL)
		goto out;
	rtnl_route_set_family(r, AF_INET);
	rtnl_route_set_table(r, RT_TABLE_MAIN);
	rtnl_route_set_protocol(r, RTPROT_CAPSTAN);
	rtnl_route_set_type(r, type);
	rtnl_route_set_scope(r, type == RTN_LOCAL ? RT_SCOPE_HOST :
				type == RTN_UNICAST && gw == 0 ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE);
	if (rtnl_route_set_dst(r, d) != 0)
		goto out;
	if (type == RTN_UNICAST || type == RTN_LOCAL) {
		nh = rtnl_route_nh_alloc();
		if (nh == NULL)
			goto out;
		if (gw != 0) {
			g = nl_ip(gw, 32);
			if (g == NULL) {
				rtnl_route_nh_free(nh);
				goto out;
			}
			rtnl_route_nh_set_gateway(nh, g);
		}
		if (oif > 0)
			rtnl_route_nh_set_ifindex(nh, oif);
		rtnl_route_add_nexthop(r, nh);   /* the route owns nh now */
	}
	rv = rtnl_route_add(sk, r, NLM_F_CREATE | NLM_F_REPLACE);
out:
	nl_addr_put(g);
	nl_addr_put(d);
	rtnl_route_put(r);
	return rv;
}

static int route_del(struct nl_sock *sk, const struct cidr *dst)
{
	struct rtnl_route *r = rtnl_route_alloc();
	struct nl_addr *d = nl_ip(dst->addr, dst->prefix);
	int rv = -NLE_NOMEM;
	if (r != NULL && d != NULL) {
		rtnl_route_set_family(r, AF_INET);
		rtnl_route_set_table(r, RT_TABLE_MAIN);
		rtnl_route_set_scope(r, RT_SCOPE_NOWHERE);
		rtnl_route_set_dst(r, d);
		rv = rtnl_route_delete(sk, r, 0);
	}
	nl_addr_put(d);
	rtnl_route_put(r);
	return rv;
}

/* ---- namespaces ---- */

static bool is_netns(const char *path)
{
	struct statfs fs;
	return statfs(path, &fs) == 0 && (unsigned long)fs.f_type == (unsigned long)NSFS_MAGIC;
}

/* Back to the agent's own namespace: if this fails, every later netlink
 * request of this thread would act on a pod's namespace, so stop. */
static void setns_back(int self)
{
	if (setns(self, CLONE_NEWNET) != 0) {
		log_error("network: cannot return to the agent's network namespace: %s",
			  strerror(errno));
		abort();
	}
}

int network_enter(const char *path)
{
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), fd, e;
	if (self < 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
		e = errno;
		if (fd >= 0)
			close(fd);
		close(self);
		errno = e;
		return -1;
	}
	close(fd);
	return self;
}

void network_leave(int saved)
{
	setns_back(saved);
	close(saved);
}

/* A new namespace bind-mounted at path (what `ip netns add` does), made
 * from the loop thread and left at once. */
static int netns_create(const char *path, char *errmsg)
{
	int self, fd, rv = -1;

	fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0400);
	if (fd < 0) {
		cap_errmsg_printf(errmsg, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	close(fd);
	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0) {
		cap_errmsg_printf(errmsg, "cannot open our network namespace: %s", strerror(errno));
		return -1;
	}
	if (unshare(CLONE_NEWNET) != 0) {
		cap_errmsg_printf(errmsg, "cannot create a network namespace: %s",
				  strerror(errno));
		goto out;
	}
	if (mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL) != 0)
		cap_errmsg_printf(errmsg, "cannot bind-mount the namespace at %s: %s", path,
				  strerror(errno));
	else
		rv = 0;
	setns_back(self);
out:
	close(self);
	if (rv != 0)
		unlink(path);
	return rv;
}

/* Whether this process may make network namespaces at all (root in a
 * container without CAP_SYS_ADMIN may not): a throwaway one, left at once. */
static int netns_probe(char *errmsg)
{
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0) {
		cap_errmsg_printf(errmsg, "cannot open our network namespace: %s", strerror(errno));
		return -1;
	}
	if (unshare(CLONE_NEWNET) != 0) {
		cap_errmsg_printf(errmsg, "cannot create network namespaces: %s", strerror(errno));
		close(self);
		return -1;
	}
	setns_back(self);
	close(self);
	return 0;
}

/* A netlink socket inside the namespace nsfd. */
static struct nl_sock *nl_open_in(int nsfd)
{
	struct nl_sock *sk = NULL;
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return NULL;
	if (setns(nsfd, CLONE_NEWNET) == 0) {
		sk = nl_open();   /* a netlink socket belongs to the namespace it was made in */
		setns_back(self);
	}
	close(self);
	return sk;
}

/* The host end of a pod's veth pair: "veth" and 11 hex digits of a hash of
 * the uid (interface names have 15 characters at most). */
static void host_ifname(const char *uid, char *buf, size_t size)
{
	uint64_t h = 1469598103934665603ULL;
	for (const char *p = uid; *p != '\0'; p++) {
		h ^= (unsigned char)*p;
		h *= 1099511628211ULL;
	}
	snprintf(buf, size, "veth%011llx", (unsigned long long)(h & 0xfffffffffffULL));
}

static int write_sysctl(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), rv = -1;
	if (fd < 0)
		return -1;
	if (write(fd, value, strlen(value)) == (ssize_t)strlen(value))
		rv = 0;
	close(fd);
	return rv;
}


/* ---- state ---- */

static void now_rfc3339(char *buf, size_t size)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void set_state(struct network *n, enum net_state st, const char *reason, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5)));
static void set_state(struct network *n, enum net_state st, const char *reason, const char *fmt,
		      ...)
{
	va_list ap;
	bool same = n->state == st && strcmp(n->reason, reason) == 0;
	n->state = st;
	snprintf(n->reason, sizeof n->reason, "%s", reason);
	va_start(ap, fmt);
	vsnprintf(n->message, sizeof n->message, fmt, ap);
	va_end(ap);
	if (!same)
		now_rfc3339(n->since, sizeof n->since);
}

static void fall_back(struct network *n, const char *reason, const char *why)
{
	log_warn("network: %s: pods use the node's network (%s)", why, n->node_ip);
	set_state(n, NET_HOST, reason, "%s: pods share the node's network and IP", why);
}

/* Brings the bridge and the host routes up for the node's pod range. */
static int bridge_setup(struct network *n, const struct cidr *range, char *errmsg)
{
	struct rtnl_link *br = NULL;
	char buf[32];
	int rv, idx;

	if (cidr_size(range) < 4) {
		cap_errmsg_printf(errmsg, "pod range %s is too small",
				  cidr_format(range, buf, sizeof buf));
		return -1;
	}
	br = rtnl_link_bridge_alloc();
	if (br == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		return -1;
	}
	rtnl_link_set_name(br, BRIDGE_NAME);
	/* A bridge without an address of its own takes the lowest of its
	 * ports' and changes it as pods come and go; the pods' ARP entries
	 * for the gateway then name a MAC nobody has, and their replies are
	 * flooded instead of routed (connections through a Service stall).
	 * A fixed, locally administered address stays (set at creation only:
	 * EXCL, so a restarted agent does not change an existing bridge's). */
	{
		unsigned char mac[6];
		struct nl_addr *ll;
		if (getrandom(mac, sizeof mac, 0) == (ssize_t)sizeof mac) {
			mac[0] = (unsigned char)((mac[0] & 0xfe) | 0x02);
			ll = nl_addr_build(AF_LLC, mac, sizeof mac);
			if (ll != NULL) {
				rtnl_link_set_addr(br, ll);
				nl_addr_put(ll);
			}
		}
	}
	rv = rtnl_link_add(n->sk, br, NLM_F_CREATE | NLM_F_EXCL);
	rtnl_link_put(br);
	if (rv < 0 && rv != -NLE_EXIST) {
		cap_errmsg_printf(errmsg, "cannot create bridge %s: %s", BRIDGE_NAME,
				  nl_geterror(rv));
		return -1;
	}
	idx = link_index(n->sk, BRIDGE_NAME);
	if (idx < 0) {
		cap_errmsg_printf(errmsg, "bridge %s: %s", BRIDGE_NAME, nl_geterror(idx));
		return -1;
	}
	n->gateway = range->addr + 1;
	if ((rv = addr_add(n->sk, idx, n->gateway, range->prefix)) < 0 ||
	    (rv = link_up(n->sk, idx)) < 0) {
		cap_errmsg_printf(errmsg, "bridge %s: %s", BRIDGE_NAME, nl_geterror(rv));
		return -1;
	}
	if (write_sysctl("/proc/sys/net/ipv4/ip_forward", "1") != 0) {
		cap_errmsg_printf(errmsg, "cannot enable IPv4 forwarding: %s", strerror(errno));
		return -1;
	}
	/* What no more specific route claims (this node's range is on the
	 * bridge, other nodes' via their addresses) stays here. The service
	 * range is local (every clusterIP an address of this node, on lo):
	 * the node's own processes can connect to a clusterIP, which the
	 * Service proxy's output DNAT then rewrites to an endpoint; a clusterIP
	 * without rules is refused at once; nothing in the range leaves. */
	if ((rv = route_set(n->sk, &n->cluster, RTN_UNREACHABLE, 0, 0)) < 0 ||
	    (rv = route_set(n->sk, &n->service, RTN_LOCAL, 0, (int)if_nametoindex("lo"))) < 0) {
		cap_errmsg_printf(errmsg, "cluster and service range routes: %s",
				  nl_geterror(rv));
		return -1;
	}
	n->pod_cidr = *range;
	return 0;
}

/* ---- other nodes ---- */

static const char *node_internal_ip(json_t *node)
{
	json_t *addrs = json_object_get(json_object_get(node, "status"), "addresses"), *a;
	size_t i;
	json_array_foreach(addrs, i, a) {
		const char *t = json_string_value(json_object_get(a, "type"));
		if (t != NULL && strcmp(t, "InternalIP") == 0)
			return json_string_value(json_object_get(a, "address"));
	}
	return NULL;
}

static void node_route_drop(struct network *n, const char *name)
{
	const char *have = json_string_value(json_object_get(n->routes, name));
	char cbuf[32];
	struct cidr c;
	if (have == NULL)
		return;
	snprintf(cbuf, sizeof cbuf, "%.*s", (int)strcspn(have, " "), have);
	if (cidr_parse(cbuf, &c) == 0 && route_del(n->sk, &c) == 0)
		log_info("network: route to %s (node %s) removed", cbuf, name);
	json_object_del(n->routes, name);
}

static void on_node(void *data, json_t *node)
{
	struct network *n = data;
	json_t *meta = json_object_get(node, "metadata");
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *pc = json_string_value(json_object_get(json_object_get(node, "spec"),
							   "podCIDR"));
	const char *ip_s = node_internal_ip(node);
	char want[80], errmsg[CAP_ERRMSG_SIZE];
	struct cidr c;
	uint32_t ip;
	int rv;

	if (name == NULL)
		return;
	if (strcmp(name, n->node) == 0) {
		if (n->state != NET_WAITING || pc == NULL)
			return;
		if (cidr_parse(pc, &c) != 0) {
			log_warn("network: node %s has a bad spec.podCIDR \"%s\"", name, pc);
			return;
		}
		if (bridge_setup(n, &c, errmsg) != 0) {
			fall_back(n, "PodNetworkFailed", errmsg);
		} else {
			log_info("network: pod range %s on bridge %s", pc, BRIDGE_NAME);
			set_state(n, NET_READY, "RouteCreated",
				  "pod network up: range %s on bridge %s", pc, BRIDGE_NAME);
		}
		if (n->changed != NULL)
			n->changed(n->data);
		return;
	}
	/* Host-gateway: another node's pods are behind its InternalIP, which
	 * must be on a network this node reaches directly. */
	if (pc == NULL || ip_s == NULL || cidr_parse(pc, &c) != 0 || cidr_parse_ip(ip_s, &ip) != 0 ||
	    (ip >> 24) == 127 || strcmp(ip_s, n->node_ip) == 0) {
		node_route_drop(n, name);
		return;
	}
	snprintf(want, sizeof want, "%s via %s", pc, ip_s);
	if (json_object_get(n->routes, name) != NULL &&
	    strcmp(json_string_value(json_object_get(n->routes, name)), want) == 0)
		return;
	node_route_drop(n, name);
	rv = route_set(n->sk, &c, RTN_UNICAST, ip, 0);
	if (rv < 0) {
		log_warn("network: route to %s via %s (node %s): %s", pc, ip_s, name,
			 nl_geterror(rv));
		return;
	}
	log_info("network: route to %s via %s (node %s)", pc, ip_s, name);
	json_object_set_new(n->routes, name, json_string(want));
}

/* Routes of ours to a range no Node holds any more (deleted while no agent
 * ran): once the informer has the whole list, they go. */
static void sweep_one(struct nl_object *o, void *arg)
{
	struct network *n = arg;
	struct rtnl_route *r = (struct rtnl_route *)o;
	struct nl_addr *dst = rtnl_route_get_dst(r);
	char buf[32], want[40];
	struct cidr c;
	const char *k;
	json_t *v;

	if (rtnl_route_get_protocol(r) != RTPROT_CAPSTAN || rtnl_route_get_type(r) != RTN_UNICAST ||
	    rtnl_route_get_table(r) != RT_TABLE_MAIN || dst == NULL ||
	    nl_addr_get_family(dst) != AF_INET || nl_addr_get_len(dst) != 4)
		return;
	memcpy(&c.addr, nl_addr_get_binary_addr(dst), 4);
	c.addr = ntohl(c.addr);
	c.prefix = nl_addr_get_prefixlen(dst);
	if (!cidr_contains(&n->cluster, &c))
		return;
	snprintf(want, sizeof want, "%s via ", cidr_format(&c, buf, sizeof buf));
	json_object_foreach(n->routes, k, v)
		if (strncmp(json_string_value(v), want, strlen(want)) == 0)
			return;
	if (rtnl_route_delete(n->sk, r, 0) == 0)
		log_info("network: route to %s removed: no node holds that range", buf);
}

static void on_sweep_timer(uv_timer_t *t)
{
	struct network *n = t->data;
	struct nl_cache *cache = NULL;

	if (!informer_synced(n->nodes))
		return;
	uv_timer_stop(t);
	if (rtnl_route_alloc_cache(n->sk, AF_INET, 0, &cache) < 0)
		return;
	nl_cache_foreach(cache, sweep_one, n);
	nl_cache_free(cache);
}

static void on_node_update(void *data, json_t *old, json_t *node)
{
	(void)old;
	on_node(data, node);
}

static void on_node_delete(void *data, json_t *node)
{
	struct network *n = data;
	const char *name = json_string_value(json_object_get(json_object_get(node, "metadata"),
							     "name"));
	if (name != NULL && strcmp(name, n->node) != 0)
		node_route_drop(n, name);
}

/* ---- public ---- */

int network_start(uv_loop_t *loop, struct kclient *kc, const struct network_config *cfg,
		  struct network **out, char *errmsg)
{
	struct network *n = calloc(1, sizeof *n);
	struct informer_handlers h = {on_node, on_node_update, on_node_delete, NULL};
	char why[CAP_ERRMSG_SIZE];

	if (n == NULL || (n->node = strdup(cfg->node_name)) == NULL ||
	    (n->routes = json_object()) == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		goto err;
	}
	n->loop = loop;
	n->kc = kc;
	n->changed = cfg->changed;
	n->data = cfg->data;
	snprintf(n->node_ip, sizeof n->node_ip, "%s", cfg->node_ip ? cfg->node_ip : "127.0.0.1");
	snprintf(n->dir, sizeof n->dir, "%s/network", cfg->data_dir ? cfg->data_dir : ".");
	snprintf(n->ipam_dir, sizeof n->ipam_dir, "%s/ipam", n->dir);
	snprintf(n->netns_dir, sizeof n->netns_dir, "%s/netns", n->dir);
	if (cidr_parse(cfg->cluster_cidr ? cfg->cluster_cidr : "10.244.0.0/16", &n->cluster) != 0 ||
	    cidr_parse(cfg->service_cidr ? cfg->service_cidr : "10.96.0.0/12", &n->service) != 0) {
		cap_errmsg_printf(errmsg, "bad cluster or service range");
		goto err;
	}
	if (cfg->host_only) {
		set_state(n, NET_HOST, "PodNetworkDisabled",
			  "--pod-network=host: pods share the node's network and IP");
		log_info("network: host mode (--pod-network=host)");
	} else if (geteuid() != 0) {
		fall_back(n, "NoPodNetwork", "the agent is not root");
	} else if (netns_probe(why) != 0) {
		fall_back(n, "PodNetworkFailed", why);
	} else if ((n->sk = nl_open()) == NULL) {
		fall_back(n, "PodNetworkFailed", "cannot open a netlink socket");
	} else if (dirs_make_all(n->ipam_dir, 0700) != 0 || dirs_make_all(n->netns_dir, 0700) != 0) {
		fall_back(n, "PodNetworkFailed", "cannot create the network state directory");
	} else {
		set_state(n, NET_WAITING, "NoRouteCreated",
			  "waiting for the node's pod range (spec.podCIDR)");
		h.data = n;
		if (informer_new(kc, &KRES_NODES, NULL, NULL, NULL, 0, &n->nodes) != 0 ||
		    informer_add_handlers(n->nodes, &h) != 0 || informer_start(n->nodes) != 0) {
			cap_errmsg_printf(errmsg, "cannot start the node informer");
			goto err;
		}
		uv_timer_init(loop, &n->sweep_timer);
		n->sweep_timer.data = n;
		n->sweep_timer_init = true;
		uv_timer_start(&n->sweep_timer, on_sweep_timer, 200, 200);
	}
	*out = n;
	return 0;
err:
	network_close(n);
	return -1;
}

bool network_per_pod(const struct network *n)
{
	return n != NULL && n->state != NET_HOST;
}

bool network_ready(const struct network *n)
{
	return n != NULL && n->state == NET_READY;
}

json_t *network_condition(struct network *n, const char *now)
{
	/* The host network by the operator's choice is no fault to report. */
	if (n->state == NET_HOST && strcmp(n->reason, "PodNetworkDisabled") == 0)
		return NULL;
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "type", "NetworkUnavailable", "status",
			 n->state == NET_READY ? "False" : "True", "reason", n->reason, "message",
			 n->message, "lastHeartbeatTime", now, "lastTransitionTime", n->since);
}

int network_pod_find(struct network *n, const char *uid, char *ip, char *netns)
{
	uint32_t a;
	if (!network_per_pod(n))
		return -1;
	snprintf(netns, PATH_MAX, "%s/%s", n->netns_dir, uid);
	if (!is_netns(netns) || ipam_find(n->ipam_dir, uid, &a) != 0)
		return -1;
	cidr_format_ip(a, ip, 16);
	return 0;
}

/* Inside the pod's namespace: lo and eth0 up, the address, the default
 * route via the bridge. */
static int pod_side(struct network *n, int nsfd, uint32_t ip, char *errmsg)
{
	struct nl_sock *sk = nl_open_in(nsfd);
	struct cidr all = {0, 0};
	int rv, lo, eth;

	if (sk == NULL) {
		cap_errmsg_printf(errmsg, "cannot open netlink in the pod's namespace");
		return -1;
	}
	if ((lo = rv = link_index(sk, "lo")) < 0 || (rv = link_up(sk, lo)) < 0 ||
	    (eth = rv = link_index(sk, POD_IFNAME)) < 0 ||
	    (rv = addr_add(sk, eth, ip, n->pod_cidr.prefix)) < 0 || (rv = link_up(sk, eth)) < 0 ||
	    (rv = route_set(sk, &all, RTN_UNICAST, n->gateway, eth)) < 0) {
		cap_errmsg_printf(errmsg, "pod interface: %s", nl_geterror(rv));
		nl_socket_free(sk);
		return -1;
	}
	nl_socket_free(sk);
	return 0;
}

int network_pod_setup(struct network *n, const char *uid, char *ip, char *netns,
		      char *errmsg)
{
	struct ipam m;
	char host_if[16];
	uint32_t addr;
	int nsfd = -1, br, rv;

	if (!network_per_pod(n))
		return -1;
	if (n->state != NET_READY)
		return network_pod_find(n, uid, ip, netns) == 0 ? 0 : 1;
	if (strchr(uid, '/') != NULL || uid[0] == '\0' || uid[0] == '.') {
		cap_errmsg_printf(errmsg, "bad pod uid");
		return -1;
	}
	snprintf(netns, PATH_MAX, "%s/%s", n->netns_dir, uid);
	if (!is_netns(netns) && netns_create(netns, errmsg) != 0)
		return -1;
	if (ipam_open(&m, n->ipam_dir, &n->pod_cidr) != 0 || ipam_alloc(&m, uid, &addr) != 0) {
		cap_errmsg_printf(errmsg, "no address for the pod in %s: %s",
				  cidr_format(&n->pod_cidr, host_if, sizeof host_if),
				  errno == ENOSPC ? "the range is full" : strerror(errno));
		return -1;
	}
	nsfd = open(netns, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0) {
		cap_errmsg_printf(errmsg, "cannot open %s: %s", netns, strerror(errno));
		return -1;
	}
	host_ifname(uid, host_if, sizeof host_if);
	br = link_index(n->sk, BRIDGE_NAME);
	if (br < 0) {
		cap_errmsg_printf(errmsg, "bridge %s: %s", BRIDGE_NAME, nl_geterror(br));
		goto err;
	}
	if (link_index(n->sk, host_if) < 0) {
		struct rtnl_link *veth = rtnl_link_veth_alloc(), *peer;
		if (veth == NULL) {
			cap_errmsg_printf(errmsg, "out of memory");
			goto err;
		}
		/* The pod's end is made right inside its namespace as eth0. */
		peer = rtnl_link_veth_get_peer(veth);
		rtnl_link_set_name(veth, host_if);
		rtnl_link_set_master(veth, br);
		rtnl_link_set_flags(veth, IFF_UP);
		rtnl_link_set_name(peer, POD_IFNAME);
		rtnl_link_set_ns_fd(peer, nsfd);
		rtnl_link_put(peer);
		rv = rtnl_link_add(n->sk, veth, NLM_F_CREATE | NLM_F_EXCL);
		rtnl_link_veth_release(veth);
		if (rv < 0) {
			cap_errmsg_printf(errmsg, "cannot create veth %s: %s", host_if,
					  nl_geterror(rv));
			goto err;
		}
	} else {
		/* Found after a restart: make sure it is on the bridge and up. */
		struct rtnl_link *orig = rtnl_link_alloc(), *chg = rtnl_link_alloc();
		if (orig != NULL && chg != NULL) {
			rtnl_link_set_name(orig, host_if);
			rtnl_link_set_ifindex(orig, link_index(n->sk, host_if));
			rtnl_link_set_master(chg, br);
			rtnl_link_set_flags(chg, IFF_UP);
			rtnl_link_change(n->sk, orig, chg, 0);
		}
		rtnl_link_put(orig);
		rtnl_link_put(chg);
	}
	rv = link_index(n->sk, host_if);
	if (rv < 0 || (rv = port_hairpin(n->sk, rv)) < 0) {
		cap_errmsg_printf(errmsg, "veth %s: %s", host_if, nl_geterror(rv));
		goto err;
	}
	if (pod_side(n, nsfd, addr, errmsg) != 0)
		goto err;
	close(nsfd);
	cidr_format_ip(addr, ip, 16);
	return 0;
err:
	close(nsfd);
	return -1;
}

void network_pod_teardown(struct network *n, const char *uid)
{
	char host_if[16], path[PATH_MAX + 300];
	if (!network_per_pod(n) || uid[0] == '\0' || strchr(uid, '/') != NULL)
		return;
	host_ifname(uid, host_if, sizeof host_if);
	if (n->sk != NULL) {
		struct rtnl_link *l = rtnl_link_alloc();
		if (l != NULL) {
			/* Deleting one end deletes the pair. */
			rtnl_link_set_name(l, host_if);
			rtnl_link_delete(n->sk, l);
			rtnl_link_put(l);
		}
	}
	snprintf(path, sizeof path, "%s/%s", n->netns_dir, uid);
	/* The namespace itself goes when nothing holds it any more (its
	 * containers are gone by now). */
	umount2(path, MNT_DETACH);
	unlink(path);
	ipam_release(n->ipam_dir, uid);
}

struct gc_scan {
	struct network *n;
	bool (*alive)(void *data, const char *uid);
	void *data;
	json_t *dead;
};

static void gc_ipam(void *data, uint32_t ip, const char *owner)
{
	struct gc_scan *g = data;
	(void)ip;
	if (!g->alive(g->data, owner))
		json_object_set_new(g->dead, owner, json_true());
}

void network_gc(struct network *n, bool (*alive)(void *data, const char *uid), void *data)
{
	struct gc_scan g = {n, alive, data, json_object()};
	const char *uid;
	struct dirent *e;
	json_t *v;
	DIR *d;

	if (!network_per_pod(n) || g.dead == NULL)
		goto out;
	ipam_foreach(n->ipam_dir, gc_ipam, &g);
	d = opendir(n->netns_dir);
	while (d != NULL && (e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && !alive(data, e->d_name))
			json_object_set_new(g.dead, e->d_name, json_true());
	if (d != NULL)
		closedir(d);
	json_object_foreach(g.dead, uid, v) {
		log_info("network: pod %s is gone: removing its namespace and address", uid);
		network_pod_teardown(n, uid);
	}
out:
	json_decref(g.dead);
}

static void network_free(struct network *n)
{
	if (n->sk != NULL)
		nl_socket_free(n->sk);
	json_decref(n->routes);
	free(n->node);
	free(n);
}

static void on_sweep_timer_closed(uv_handle_t *h)
{
	network_free(h->data);
}

void network_close(struct network *n)
{
	if (n == NULL)
		return;
	if (n->nodes != NULL)
		informer_stop(n->nodes);
	n->nodes = NULL;
	if (n->sweep_timer_init)
		uv_close((uv_handle_t *)&n->sweep_timer, on_sweep_timer_closed);
	else
		network_free(n);
}
