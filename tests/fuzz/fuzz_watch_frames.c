/* fuzz_watch_frames.c — libFuzzer target: the watch stream reader of
 * `capstan bench` on arbitrary bytes, fed whole and in two pieces. Every
 * object it hands out starts with '{' and ends with '}', both feedings give
 * the same objects, and scanning each one stays inside it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/watch_frames.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	uint64_t hash;
	size_t n;
};

static bool frame(void *data, const char *f, size_t len)
{
	struct seen *s = data;
	/* An exactly sized copy, so a scan past the frame is caught. */
	char *copy = malloc(len ? len : 1);
	const char *p;
	long long id, rev;

	if (copy == NULL || len < 2 || f[0] != '{' || f[len - 1] != '}')
		abort();
	memcpy(copy, f, len);
	p = copy;
	if (watch_frame_id(copy, len, &id) && id < 0)
		abort();
	while (watch_frame_next_rev(&p, copy + len, &rev))
		if (rev < 0 || p > copy + len)
			abort();
	free(copy);
	for (size_t i = 0; i < len; i++)
		s->hash = (s->hash ^ (uint8_t)f[i]) * 1099511628211ull;
	s->hash = (s->hash ^ len) * 1099511628211ull;
	s->n++;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct watch_splitter a = {0}, b = {0};
	struct seen whole = {14695981039346656037ull, 0}, split = whole;
	size_t cut = size ? data[0] % (size + 1) : 0;

	if (watch_splitter_feed(&a, (const char *)data, size, frame, &whole) != 0)
		abort();
	if (watch_splitter_feed(&b, (const char *)data, cut, frame, &split) != 0 ||
	    watch_splitter_feed(&b, (const char *)data + cut, size - cut, frame, &split) != 0)
		abort();
	if (whole.n != split.n || whole.hash != split.hash || a.len != b.len)
		abort();
	watch_splitter_clear(&a);
	watch_splitter_clear(&b);
	return 0;
}
