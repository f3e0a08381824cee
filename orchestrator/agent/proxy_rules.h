/* proxy_rules.h — what the Service proxy programs, and its nftables text.
 *
 * The model is a flat list of service ports: one per (Service, port) that
 * has a clusterIP or a nodePort, with the ready endpoints (IP and resolved
 * target port) behind it. It is built from Service and Endpoints objects
 * as the API server stores them: an endpoint port is the one whose name
 * matches the service port's name (the Endpoints and EndpointSlice
 * controllers have already resolved named and numeric targetPorts per
 * pod), ready endpoints are the subsets' addresses (or the slices'
 * endpoints whose ready condition holds), and not-ready ones are left out. Headless
 * services (clusterIP None) and ExternalName get nothing.
 *
 * proxy_nft_render turns a model into the text of one nftables table,
 * modelled on kube-proxy's nftables mode; see proxy_rules.c for its shape.
 * Either way the text is one atomic transaction. Replacing: it starts with
 * "add table" + "delete table" (for the first sync, when what the kernel
 * holds is unknown). Updating (every later sync): the table and its base
 * chains stay, their rules and map elements are flushed and written anew,
 * and the per-service chains that are gone are deleted — the nat hooks are
 * never unregistered, so connections being set up meanwhile keep their
 * translation, as with kube-proxy's partial syncs.
 *
 * Everything from the API is untrusted: addresses are parsed with
 * inet_pton and re-printed, ports range-checked, names reduced to the
 * characters nft accepts in a chain name.
 *
 * Pure code: no I/O, no libuv. Ownership: a model owns its strings and
 * arrays; proxy_nft_render returns malloc'd text the caller frees. */
#ifndef CAPSTAN_PROXY_RULES_H
#define CAPSTAN_PROXY_RULES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct proxy_endpoint {
	char ip[16];                 /* dotted IPv4 */
	int port;
};

struct proxy_svc_port {
	char *key;                   /* "ns/name/proto/portname", unique in a model */
	char proto[8];               /* "tcp", "udp" or "sctp" */
	char cluster_ip[16];         /* "" when the service has none */
	int port;                    /* the service port */
	int node_port;               /* 0 when none */
	struct proxy_endpoint *eps;  /* ready endpoints, sorted, no duplicates */
	size_t n_eps;
};

struct proxy_model {
	struct proxy_svc_port *v;
	size_t n, cap;
};

void proxy_model_init(struct proxy_model *m);
void proxy_model_free(struct proxy_model *m);
/* Adds the ports of one Service with its Endpoints (ep may be NULL: no
 * endpoints yet). Returns the number of ports added, or -1 out of memory.
 * Services that proxy nothing add 0. */
int proxy_model_add(struct proxy_model *m, json_t *svc, json_t *ep);
/* The same from the Service's EndpointSlices (discovery.k8s.io/v1; slices
 * is an array of them, or NULL): IPv4 slices only; an endpoint counts
 * unless its conditions.ready is false (absent means ready), so not-ready
 * and terminating endpoints are left out. */
int proxy_model_add_slices(struct proxy_model *m, json_t *svc, json_t *slices);
/* Sorts by key so equal inputs render equal text. */
void proxy_model_sort(struct proxy_model *m);
/* The service port with this key, or NULL. */
const struct proxy_svc_port *proxy_model_find(const struct proxy_model *m, const char *key);

#define PROXY_NFT_TABLE "capstan"
#define PROXY_MASQ_MARK 0x4000

/* A CIDR list of where nodePorts listen: "10.0.0.0/8,192.168.1.5/32" (a bare
 * address means /32). Returns 0, or -1 for a malformed list (errmsg says
 * which entry; CAP_ERRMSG_SIZE). The parsed form is canonical text, written
 * into out (size bytes) as "a.b.c.d/n, ..." for the nft set. */
int proxy_parse_cidrs(const char *list, char *out, size_t size, char *errmsg);

struct proxy_nft_opts {
	/* Canonical CIDR text from proxy_parse_cidrs, or NULL / "": nodePorts
	 * answer on every local address (fib daddr type local). */
	const char *nodeport_cidrs;
	/* Update the table in place (it exists and was last written from a
	 * model whose per-service chains are prev_chains), else replace it. */
	bool update;
	char *const *prev_chains;
	size_t n_prev;
};

/* The per-service chains of the model's table: *out gets a malloc'd array
 * of *n malloc'd names (proxy_nft_chains_free). 0, or -1 out of memory. */
int proxy_nft_chains(const struct proxy_model *m, char ***out, size_t *n);
void proxy_nft_chains_free(char **v, size_t n);

/* The whole table as nft command text, or NULL out of memory. */
char *proxy_nft_render(const struct proxy_model *m, const struct proxy_nft_opts *o);

#endif
