/* rangealloc.c — bitmaps over the service CIDR and the node-port range. */
#include "orchestrator/api/rangealloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rangealloc {
	uint32_t base;
	uint32_t size;
	uint32_t band;      /* static band: offsets [0, band) */
	uint32_t used;
	uint8_t *bits;
};

int ipv4_parse(const char *s, uint32_t *out)
{
	uint32_t ip = 0;
	int parts = 0;
	const char *p = s;

	if (s == NULL)
		return -1;
	while (parts < 4) {
		unsigned v = 0;
		int digits = 0;
		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (unsigned)(*p - '0');
			/* No leading zeros: Go's net.ParseIP refuses them too. */
			if (++digits > 3 || v > 255 || (digits == 2 && p[-1] == '0' && v < 10))
				return -1;
			p++;
		}
		if (digits == 0)
			return -1;
		ip = (ip << 8) | v;
		parts++;
		if (parts < 4) {
			if (*p != '.')
				return -1;
			p++;
		}
	}
	if (*p != '\0')
		return -1;
	*out = ip;
	return 0;
}

void ipv4_format(uint32_t ip, char *buf, size_t len)
{
	snprintf(buf, len, "%u.%u.%u.%u", (ip >> 24) & 255u, (ip >> 16) & 255u, (ip >> 8) & 255u,
		 ip & 255u);
}

int svc_ranges_parse_cidr(struct svc_ranges *r, const char *s, char *errmsg, size_t len)
{
	char buf[64], *slash, *end;
	uint32_t ip, mask;
	long prefix;

	if (s == NULL || strlen(s) >= sizeof buf)
		goto bad;
	memcpy(buf, s, strlen(s) + 1);
	slash = strchr(buf, '/');
	if (slash == NULL)
		goto bad;
	*slash = '\0';
	if (ipv4_parse(buf, &ip) != 0)
		goto bad;
	prefix = strtol(slash + 1, &end, 10);
	if (*end != '\0' || slash[1] == '\0' || prefix < 0 || prefix > 32)
		goto bad;
	if (prefix < 12 || prefix > 30) {
		snprintf(errmsg, len, "service CIDR %s: the prefix must be /12 to /30", s);
		return -1;
	}
	mask = ~((1u << (32 - prefix)) - 1u);
	if ((ip & ~mask) != 0) {
		snprintf(errmsg, len, "service CIDR %s has host bits set", s);
		return -1;
	}
	r->net = ip;
	r->prefix = (unsigned)prefix;
	snprintf(r->cidr, sizeof r->cidr, "%s/%ld", buf, prefix);
	return 0;
bad:
	snprintf(errmsg, len, "bad service CIDR \"%s\" (want an IPv4 CIDR such as 10.96.0.0/12)",
		 s ? s : "");
	return -1;
}

int svc_ranges_parse_ports(struct svc_ranges *r, const char *s, char *errmsg, size_t len)
{
	char *end;
	long lo, hi;

	if (s == NULL)
		goto bad;
	lo = strtol(s, &end, 10);
	if (end == s)
		goto bad;
	if (*end == '-') {
		const char *h = end + 1;
		hi = strtol(h, &end, 10);
		if (end == h)
			goto bad;
	} else {
		hi = lo;
	}
	if (*end != '\0' || lo < 1 || hi > 65535 || lo > hi)
		goto bad;
	r->port_lo = (int)lo;
	r->port_hi = (int)hi;
	snprintf(r->ports, sizeof r->ports, "%d-%d", (int)lo & 0xffff, (int)hi & 0xffff);
	return 0;
bad:
	snprintf(errmsg, len, "bad node-port range \"%s\" (want LOW-HIGH, e.g. 30000-32767)",
		 s ? s : "");
	return -1;
}

void svc_ranges_default(struct svc_ranges *r)
{
	char e[128];
	memset(r, 0, sizeof *r);
	svc_ranges_parse_cidr(r, "10.96.0.0/12", e, sizeof e);
	svc_ranges_parse_ports(r, "30000-32767", e, sizeof e);
}

uint32_t svc_ranges_first_ip(const struct svc_ranges *r)
{
	return r->net + 1;
}

static uint32_t clamp_band(uint32_t size, uint32_t div, uint32_t hi)
{
	uint32_t b = size / div;
	if (b < 16)
		b = 16;
	if (b > hi)
		b = hi;
	/* A tiny range has no static band worth the name. */
	return b >= size ? 0 : b;
}

struct rangealloc *rangealloc_new(uint32_t base, uint32_t size, uint32_t static_band)
{
	struct rangealloc *a = calloc(1, sizeof *a);
	if (a == NULL)
		return NULL;
	a->bits = calloc((size_t)size / 8 + 1, 1);
	if (a->bits == NULL) {
		free(a);
		return NULL;
	}
	a->base = base;
	a->size = size;
	a->band = static_band < size ? static_band : 0;
	return a;
}

struct rangealloc *rangealloc_new_ips(const struct svc_ranges *r)
{
	uint32_t size = (1u << (32 - r->prefix)) - 2u;
	return rangealloc_new(r->net + 1, size, clamp_band(size, 16, 256));
}

struct rangealloc *rangealloc_new_ports(const struct svc_ranges *r)
{
	uint32_t size = (uint32_t)(r->port_hi - r->port_lo + 1);
	return rangealloc_new((uint32_t)r->port_lo, size, clamp_band(size, 32, 128));
}

void rangealloc_free(struct rangealloc *a)
{
	if (a == NULL)
		return;
	free(a->bits);
	free(a);
}

bool rangealloc_contains(const struct rangealloc *a, uint32_t v)
{
	return v >= a->base && v - a->base < a->size;
}

bool rangealloc_has(const struct rangealloc *a, uint32_t v)
{
	uint32_t o;
	if (!rangealloc_contains(a, v))
		return false;
	o = v - a->base;
	return (a->bits[o / 8] >> (o % 8)) & 1u;
}

enum rangealloc_result rangealloc_allocate(struct rangealloc *a, uint32_t v)
{
	uint32_t o;
	if (!rangealloc_contains(a, v))
		return RANGEALLOC_OUT_OF_RANGE;
	if (rangealloc_has(a, v))
		return RANGEALLOC_TAKEN;
	o = v - a->base;
	a->bits[o / 8] |= (uint8_t)(1u << (o % 8));
	a->used++;
	return RANGEALLOC_OK;
}

void rangealloc_release(struct rangealloc *a, uint32_t v)
{
	uint32_t o;
	if (!rangealloc_has(a, v))
		return;
	o = v - a->base;
	a->bits[o / 8] &= (uint8_t)~(1u << (o % 8));
	a->used--;
}

uint32_t rangealloc_free_count(const struct rangealloc *a)
{
	return a->size - a->used;
}

/* The first free offset in [lo, hi), scanning from lo + start (wrapping). */
static bool scan(const struct rangealloc *a, uint32_t lo, uint32_t hi, uint32_t start,
		 uint32_t *out)
{
	uint32_t n = hi - lo;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t o = lo + (start + i) % n;
		if (!((a->bits[o / 8] >> (o % 8)) & 1u)) {
			*out = o;
			return true;
		}
	}
	return false;
}

enum rangealloc_result rangealloc_allocate_next(struct rangealloc *a, uint32_t seed,
						uint32_t *out)
{
	uint32_t o;
	bool found = false;
	if (a->used >= a->size)
		return RANGEALLOC_FULL;
	if (a->band < a->size)
		found = scan(a, a->band, a->size, seed % (a->size - a->band), &o);
	if (!found && a->band > 0)
		found = scan(a, 0, a->band, seed % a->band, &o);
	if (!found)
		return RANGEALLOC_FULL;
	a->bits[o / 8] |= (uint8_t)(1u << (o % 8));
	a->used++;
	*out = a->base + o;
	return RANGEALLOC_OK;
}
