/* rangealloc.h — the Service allocators' arithmetic: a bitmap over a range
 * of integers (cluster IPs of the service CIDR, node ports of the node-port
 * range), as kube-apiserver's ipallocator and portallocator keep it.
 *
 * Like Kubernetes, a range is split in two bands: the lowest part (the
 * "static" band: for IPs min(max(16, size/16), 256) addresses, for ports
 * min(max(16, size/32), 128) ports) is where users are expected to ask for
 * fixed values, so dynamic allocation takes the upper band first and the
 * static band only when the upper one is full.
 *
 * The bitmap is only a view: the API server rebuilds it from the allocation
 * records in the store before each Service write (svcalloc.h), and the
 * store's transaction decides who wins a race.
 *
 * Ownership: a rangealloc owns its bitmap; rangealloc_free releases both.
 * Pure functions otherwise, no I/O, any thread. */
#ifndef CAPSTAN_ORCH_RANGEALLOC_H
#define CAPSTAN_ORCH_RANGEALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum rangealloc_result {
	RANGEALLOC_OK = 0,
	RANGEALLOC_TAKEN,         /* "provided ... is already allocated" */
	RANGEALLOC_OUT_OF_RANGE,  /* "... is not in the valid range" */
	RANGEALLOC_FULL,          /* "range is full" */
};

/* The configured ranges, parsed from the server's flags. */
struct svc_ranges {
	uint32_t net;             /* network address of the service CIDR, host order */
	unsigned prefix;          /* its prefix length (12..30) */
	char cidr[32];            /* as given, normalised: "10.96.0.0/12" */
	int port_lo, port_hi;     /* node-port range, inclusive */
	char ports[16];           /* "30000-32767" */
};

/* "10.96.0.0/12": IPv4, prefix 12 to 30 (Kubernetes refuses service CIDRs
 * larger than /12 for its bitmap). Host bits set are an error, as for
 * kube-apiserver. Returns 0, or -1 with errmsg (size >= 128) filled. */
int svc_ranges_parse_cidr(struct svc_ranges *r, const char *s, char *errmsg, size_t len);
/* "30000-32767" (or one port "30000"): 1 <= lo <= hi <= 65535. */
int svc_ranges_parse_ports(struct svc_ranges *r, const char *s, char *errmsg, size_t len);
/* The defaults: 10.96.0.0/12 and 30000-32767. */
void svc_ranges_default(struct svc_ranges *r);
/* The first usable address of the CIDR (the `kubernetes` Service's). */
uint32_t svc_ranges_first_ip(const struct svc_ranges *r);

/* Dotted quad <-> host-order integer. parse returns -1 on anything but a
 * plain IPv4 address. */
int ipv4_parse(const char *s, uint32_t *out);
void ipv4_format(uint32_t ip, char *buf, size_t len);

struct rangealloc;

/* A bitmap of size values starting at base; static_band values at the
 * bottom are handed out dynamically only last. NULL on allocation failure. */
struct rangealloc *rangealloc_new(uint32_t base, uint32_t size, uint32_t static_band);
/* Cluster IPs of r: every address but the network and broadcast ones. */
struct rangealloc *rangealloc_new_ips(const struct svc_ranges *r);
/* Node ports of r. */
struct rangealloc *rangealloc_new_ports(const struct svc_ranges *r);
void rangealloc_free(struct rangealloc *a);

/* Marks value v used. */
enum rangealloc_result rangealloc_allocate(struct rangealloc *a, uint32_t v);
/* Picks a free value (upper band first, starting at a point chosen from
 * seed so that concurrent servers rarely pick the same one). */
enum rangealloc_result rangealloc_allocate_next(struct rangealloc *a, uint32_t seed,
						uint32_t *out);
void rangealloc_release(struct rangealloc *a, uint32_t v);
bool rangealloc_has(const struct rangealloc *a, uint32_t v);
bool rangealloc_contains(const struct rangealloc *a, uint32_t v);
uint32_t rangealloc_free_count(const struct rangealloc *a);

#endif
