/* replay.c — a fuzz target (LLVMFuzzerTestOneInput) as an ordinary program:
 * it runs the target on each seed file named on the command line and on a
 * fixed set of variations of each (bytes changed, cut short, repeated), so
 * that the test suite builds every target and runs it, under the
 * sanitizers too, without clang or libFuzzer. tests/fuzz/run is for the
 * real fuzzing. Exits non-zero if a file cannot be read; a target that
 * finds a fault aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Variations per seed: enough to reach past the first checks of each
 * parser, few enough that the suite stays quick. */
#define VARIANTS 2000

static uint64_t next(uint64_t *s)
{
	/* xorshift64: the same variations on every run. */
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Runs the target on a copy of exactly n bytes, so a read past the end is
 * the sanitizer's to see. */
static void run(const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n ? n : 1);

	if (copy == NULL)
		abort();
	if (n > 0)
		memcpy(copy, p, n);
	LLVMFuzzerTestOneInput(copy, n);
	free(copy);
}

static void vary(const uint8_t *seed, size_t n, uint64_t *rng)
{
	size_t cap = 2 * n + 16;
	uint8_t *buf = malloc(cap);
	size_t len = n;

	if (buf == NULL)
		abort();
	memcpy(buf, seed, n);
	switch (next(rng) % 4) {
	case 0: /* a few bytes changed */
		for (int k = 1 + (int)(next(rng) % 3); k > 0 && len > 0; k--)
			buf[next(rng) % len] = (uint8_t)next(rng);
		break;
	case 1: /* cut short */
		len = n > 0 ? next(rng) % n : 0;
		break;
	case 2: /* a byte inserted */
		if (len < cap) {
			size_t at = len > 0 ? next(rng) % (len + 1) : 0;
			memmove(buf + at + 1, buf + at, len - at);
			buf[at] = (uint8_t)next(rng);
			len++;
		}
		break;
	default: /* a stretch repeated */
		if (n > 0) {
			size_t from = next(rng) % n, k = 1 + next(rng) % (n - from);
			if (len + k <= cap) {
				memcpy(buf + len, seed + from, k);
				len += k;
			}
		}
		break;
	}
	run(buf, len);
	free(buf);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		uint8_t data[65536];
		size_t n;
		uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)i;

		if (f == NULL) {
			perror(argv[i]);
			return 1;
		}
		n = fread(data, 1, sizeof data, f);
		fclose(f);
		run(data, n);
		for (int k = 0; k < VARIANTS; k++)
			vary(data, n, &rng);
	}
	printf("replayed %d seed(s), %d variations each\n", argc - 1, VARIANTS);
	return 0;
}
