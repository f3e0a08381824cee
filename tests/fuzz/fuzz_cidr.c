/* fuzz_cidr.c — libFuzzer target: the CIDR parser on arbitrary bytes (the
 * ranges come from flags and from Node objects anyone may write). Anything
 * it accepts prints back to a string that parses to the same range, and
 * its host bits are zero. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cidr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), buf[32];
	struct cidr c, back;
	uint32_t a;

	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	if (cidr_parse(s, &c) == 0) {
		if (c.prefix > 32 || (c.addr & ~cidr_mask(c.prefix)) != 0)
			abort();
		cidr_format(&c, buf, sizeof buf);
		if (cidr_parse(buf, &back) != 0 || back.addr != c.addr || back.prefix != c.prefix)
			abort();
	}
	if (cidr_parse_host(s, &c, &a) == 0 && (a & cidr_mask(c.prefix)) != c.addr)
		abort();
	free(s);
	return 0;
}
