/* keycache.c — the live rows of recently written keys: see keycache.h. */
#include "store/keycache.h"

#include <stdlib.h>
#include <string.h>

struct slot {
	uint64_t gen;          /* valid while equal to the cache's */
	uint64_t hash;
	uint64_t used;         /* the cache's tick at the last get or put */
	struct keycache_row row;
	uint16_t len;
	uint8_t key[KEYCACHE_KEY_MAX];
};

struct keycache {
	uint64_t gen;          /* bumped by keycache_clear */
	uint64_t tick;
	size_t mask;           /* sets - 1; a set is two adjacent slots */
	struct slot *slots;
};

/* FNV-1a: keys are short, and this is cheaper than the seek it saves. */
static uint64_t hash_of(const uint8_t *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= key[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

struct keycache *keycache_new(size_t bytes)
{
	size_t sets = 1;
	if (bytes < 2 * sizeof(struct slot))
		return NULL;
	while (sets * 2 <= bytes / (2 * sizeof(struct slot)))
		sets *= 2;
	struct keycache *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	/* calloc: slots of generation 0 are empty, and the cache starts at 1. */
	c->slots = calloc(sets * 2, sizeof *c->slots);
	if (c->slots == NULL) {
		free(c);
		return NULL;
	}
	c->gen = 1;
	c->mask = sets - 1;
	return c;
}

void keycache_free(struct keycache *c)
{
	if (c == NULL)
		return;
	free(c->slots);
	free(c);
}

static struct slot *set_of(struct keycache *c, uint64_t h)
{
	return &c->slots[(h & c->mask) * 2];
}

static bool holds(const struct keycache *c, const struct slot *s, uint64_t h,
		  const uint8_t *key, size_t len)
{
	return s->gen == c->gen && s->hash == h && s->len == len && memcmp(s->key, key, len) == 0;
}

static struct slot *find(struct keycache *c, const uint8_t *key, size_t len, uint64_t h)
{
	struct slot *set = set_of(c, h);
	for (int i = 0; i < 2; i++)
		if (holds(c, &set[i], h, key, len))
			return &set[i];
	return NULL;
}

bool keycache_get(struct keycache *c, const uint8_t *key, size_t len, struct keycache_row *row)
{
	if (c == NULL || len > KEYCACHE_KEY_MAX)
		return false;
	struct slot *s = find(c, key, len, hash_of(key, len));
	if (s == NULL)
		return false;
	s->used = ++c->tick;
	*row = s->row;
	return true;
}

void keycache_put(struct keycache *c, const uint8_t *key, size_t len,
		  const struct keycache_row *row)
{
	if (c == NULL || len > KEYCACHE_KEY_MAX)
		return;
	uint64_t h = hash_of(key, len);
	struct slot *s = find(c, key, len, h);
	if (s == NULL) {
		struct slot *set = set_of(c, h);
		if (set[0].gen != c->gen)
			s = &set[0];
		else if (set[1].gen != c->gen)
			s = &set[1];
		else
			s = set[0].used <= set[1].used ? &set[0] : &set[1];
		s->gen = c->gen;
		s->hash = h;
		s->len = (uint16_t)len;
		memcpy(s->key, key, len);
	}
	s->row = *row;
	s->used = ++c->tick;
}

void keycache_drop(struct keycache *c, const uint8_t *key, size_t len)
{
	if (c == NULL || len > KEYCACHE_KEY_MAX)
		return;
	struct slot *s = find(c, key, len, hash_of(key, len));
	if (s != NULL)
		s->gen = 0;
}

void keycache_clear(struct keycache *c)
{
	if (c != NULL)
		c->gen++;
}

size_t keycache_capacity(const struct keycache *c)
{
	return c ? (c->mask + 1) * 2 : 0;
}
