/* cidr.h — IPv4 CIDR ranges: parsing "a.b.c.d/n", the arithmetic the pod
 * network needs (the i-th subnet of a given size, the i-th address, what
 * contains what), and a bitmap allocator of equal-sized subnets of a range
 * (the node IPAM controller's set of pod ranges).
 *
 * Addresses are host-order uint32_t. Parsing is strict: four dotted decimal
 * octets (inet_pton's rules), a slash, and a prefix length 0..32 without
 * sign, spaces or leading zeros; host bits must be zero unless the caller
 * asks for the masked form (cidr_parse_host, for "10.244.1.1/24" addresses
 * with their prefix).
 *
 * Threading: none (pure functions and caller-owned structs). Ownership: a
 * cidr_set owns its bitmap; cidr_set_free releases it. */
#ifndef CAPSTAN_CIDR_H
#define CAPSTAN_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cidr {
	uint32_t addr;   /* network address (host bits zero) */
	unsigned prefix; /* 0..32 */
};

/* Returns 0 and fills out, or -1 when s is not a CIDR with zero host bits. */
int cidr_parse(const char *s, struct cidr *out);
/* "a.b.c.d/n" with any host bits: *addr gets the address, out the network. */
int cidr_parse_host(const char *s, struct cidr *out, uint32_t *addr);
/* Parses a dotted IPv4 address; 0 or -1. */
int cidr_parse_ip(const char *s, uint32_t *out);

/* "a.b.c.d/n" into buf (at least 19 bytes); returns buf. */
const char *cidr_format(const struct cidr *c, char *buf, size_t size);
/* "a.b.c.d" into buf (at least 16 bytes); returns buf. */
const char *cidr_format_ip(uint32_t addr, char *buf, size_t size);

uint32_t cidr_mask(unsigned prefix);
/* Number of addresses in c (2^(32-prefix)), as 64 bits so /0 fits. */
uint64_t cidr_size(const struct cidr *c);
bool cidr_contains_ip(const struct cidr *c, uint32_t addr);
/* inner lies wholly inside outer. */
bool cidr_contains(const struct cidr *outer, const struct cidr *inner);
bool cidr_overlaps(const struct cidr *a, const struct cidr *b);
/* The i-th address of c (i < cidr_size). */
uint32_t cidr_nth_ip(const struct cidr *c, uint64_t i);

/* Subnets of size /sub_prefix of a range: the i-th, and how many. Both
 * need outer->prefix <= sub_prefix <= 32. */
uint64_t cidr_subnet_count(const struct cidr *outer, unsigned sub_prefix);
struct cidr cidr_subnet(const struct cidr *outer, unsigned sub_prefix, uint64_t i);

/* Allocates subnets of one size from a range, lowest free first after the
 * last one handed out (so a released range is not the next one given), the
 * way Kubernetes' node IPAM cidrset does. At most 2^20 subnets. */
struct cidr_set {
	struct cidr range;
	unsigned sub_prefix;
	uint64_t count;
	uint64_t used;
	uint64_t next;           /* where the next search starts */
	uint8_t *bits;
};

/* 0, or -1 when sub_prefix does not fit the range (smaller than the
 * range's own prefix, over 32, or more than 2^20 subnets). */
int cidr_set_init(struct cidr_set *s, const struct cidr *range, unsigned sub_prefix);
void cidr_set_free(struct cidr_set *s);
/* 0 and *out, or -1 when every subnet is taken. */
int cidr_set_alloc(struct cidr_set *s, struct cidr *out);
/* Marks c used (0), or -1 when c is not exactly one subnet of the set. */
int cidr_set_occupy(struct cidr_set *s, const struct cidr *c);
/* Frees c (0), or -1 when c is not exactly one subnet of the set. */
int cidr_set_release(struct cidr_set *s, const struct cidr *c);
bool cidr_set_is_used(const struct cidr_set *s, const struct cidr *c);

#endif
