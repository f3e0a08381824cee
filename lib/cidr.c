/* cidr.c — IPv4 CIDR parsing, arithmetic and a subnet allocator (cidr.h). */
#include "lib/cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CIDR_SET_MAX (1u << 20)

int cidr_parse_ip(const char *s, uint32_t *out)
{
	struct in_addr in;
	if (s == NULL || inet_pton(AF_INET, s, &in) != 1)
		return -1;
	*out = ntohl(in.s_addr);
	return 0;
}

uint32_t cidr_mask(unsigned prefix)
{
	return prefix == 0 ? 0 : prefix >= 32 ? 0xffffffffu : ~((1u << (32 - prefix)) - 1);
}

int cidr_parse_host(const char *s, struct cidr *out, uint32_t *addr)
{
	char ip[16];
	const char *slash, *p;
	unsigned prefix = 0;
	uint32_t a;

	if (s == NULL)
		return -1;
	slash = strchr(s, '/');
	if (slash == NULL || (size_t)(slash - s) >= sizeof ip || slash == s)
		return -1;
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	if (cidr_parse_ip(ip, &a) != 0)
		return -1;
	/* The prefix: 1 or 2 digits, no leading zero, at most 32. */
	p = slash + 1;
	if (p[0] < '0' || p[0] > '9' || (p[0] == '0' && p[1] != '\0'))
		return -1;
	for (size_t i = 0; p[i] != '\0'; i++) {
		if (i >= 2 || p[i] < '0' || p[i] > '9')
			return -1;
		prefix = prefix * 10 + (unsigned)(p[i] - '0');
	}
	if (prefix > 32)
		return -1;
	out->addr = a & cidr_mask(prefix);
	out->prefix = prefix;
	if (addr != NULL)
		*addr = a;
	return 0;
}

int cidr_parse(const char *s, struct cidr *out)
{
	uint32_t a;
	struct cidr c;
	if (cidr_parse_host(s, &c, &a) != 0 || a != c.addr)
		return -1;
	*out = c;
	return 0;
}

const char *cidr_format_ip(uint32_t addr, char *buf, size_t size)
{
	snprintf(buf, size, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 0xff, (addr >> 8) & 0xff,
		 addr & 0xff);
	return buf;
}

const char *cidr_format(const struct cidr *c, char *buf, size_t size)
{
	char ip[16];
	snprintf(buf, size, "%s/%u", cidr_format_ip(c->addr, ip, sizeof ip), c->prefix);
	return buf;
}

uint64_t cidr_size(const struct cidr *c)
{
	return (uint64_t)1 << (32 - c->prefix);
}

bool cidr_contains_ip(const struct cidr *c, uint32_t addr)
{
	return (addr & cidr_mask(c->prefix)) == c->addr;
}

bool cidr_contains(const struct cidr *outer, const struct cidr *inner)
{
	return inner->prefix >= outer->prefix && cidr_contains_ip(outer, inner->addr);
}

bool cidr_overlaps(const struct cidr *a, const struct cidr *b)
{
	return cidr_contains(a, b) || cidr_contains(b, a);
}

uint32_t cidr_nth_ip(const struct cidr *c, uint64_t i)
{
	return c->addr + (uint32_t)i;
}

uint64_t cidr_subnet_count(const struct cidr *outer, unsigned sub_prefix)
{
	if (sub_prefix < outer->prefix || sub_prefix > 32)
		return 0;
	return (uint64_t)1 << (sub_prefix - outer->prefix);
}

struct cidr cidr_subnet(const struct cidr *outer, unsigned sub_prefix, uint64_t i)
{
	struct cidr c = {outer->addr, sub_prefix};
	if (sub_prefix < 32)
		c.addr = outer->addr + (uint32_t)(i << (32 - sub_prefix));
	else
		c.addr = outer->addr + (uint32_t)i;
	return c;
}

/* ---- the subnet allocator ---- */

int cidr_set_init(struct cidr_set *s, const struct cidr *range, unsigned sub_prefix)
{
	uint64_t n = cidr_subnet_count(range, sub_prefix);
	memset(s, 0, sizeof *s);
	if (n == 0 || n > CIDR_SET_MAX)
		return -1;
	s->bits = calloc((size_t)((n + 7) / 8), 1);
	if (s->bits == NULL)
		return -1;
	s->range = *range;
	s->sub_prefix = sub_prefix;
	s->count = n;
	return 0;
}

void cidr_set_free(struct cidr_set *s)
{
	free(s->bits);
	s->bits = NULL;
}

/* The index of c in the set, or -1 when c is not one of its subnets. */
static int64_t set_index(const struct cidr_set *s, const struct cidr *c)
{
	if (c->prefix != s->sub_prefix || !cidr_contains(&s->range, c))
		return -1;
	if (s->sub_prefix == 32)
		return (int64_t)(c->addr - s->range.addr);
	return (int64_t)((c->addr - s->range.addr) >> (32 - s->sub_prefix));
}

static bool bit_get(const struct cidr_set *s, uint64_t i)
{
	return (s->bits[i / 8] >> (i % 8)) & 1;
}

static void bit_set(struct cidr_set *s, uint64_t i, bool on)
{
	if (bit_get(s, i) == on)
		return;
	if (on) {
		s->bits[i / 8] |= (uint8_t)(1u << (i % 8));
		s->used++;
	} else {
		s->bits[i / 8] &= (uint8_t)~(1u << (i % 8));
		s->used--;
	}
}

int cidr_set_alloc(struct cidr_set *s, struct cidr *out)
{
	if (s->used >= s->count)
		return -1;
	for (uint64_t k = 0; k < s->count; k++) {
		uint64_t i = (s->next + k) % s->count;
		if (!bit_get(s, i)) {
			bit_set(s, i, true);
			s->next = (i + 1) % s->count;
			*out = cidr_subnet(&s->range, s->sub_prefix, i);
			return 0;
		}
	}
	return -1;
}

int cidr_set_occupy(struct cidr_set *s, const struct cidr *c)
{
	int64_t i = set_index(s, c);
	if (i < 0)
		return -1;
	bit_set(s, (uint64_t)i, true);
	return 0;
}

int cidr_set_release(struct cidr_set *s, const struct cidr *c)
{
	int64_t i = set_index(s, c);
	if (i < 0)
		return -1;
	bit_set(s, (uint64_t)i, false);
	return 0;
}

bool cidr_set_is_used(const struct cidr_set *s, const struct cidr *c)
{
	int64_t i = set_index(s, c);
	return i >= 0 && bit_get(s, (uint64_t)i);
}
