/* url.c — see url.h. */
#include "lib/url.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The host:port part of the first URL: [start, start + len). */
static int authority(const char *url, const char **start, size_t *len)
{
	const char *p = strstr(url, "://");
	const char *comma = strchr(url, ',');
	if (p != NULL && (comma == NULL || p < comma))
		p += 3;
	else
		p = url;
	*start = p;
	*len = strcspn(p, "/,");
	return *len == 0 ? -1 : 0;
}

int url_host_port(const char *url, char *host, size_t size, int *port)
{
	const char *p, *colon = NULL;
	size_t len;
	char digits[8];
	char *end;
	long v;

	if (authority(url, &p, &len) != 0)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (p[i] == ':')
			colon = p + i;
	if (colon == NULL || colon == p || (size_t)(colon - p) >= size)
		return -1;
	size_t plen = len - (size_t)(colon + 1 - p);
	if (plen == 0 || plen >= sizeof digits)
		return -1;
	memcpy(digits, colon + 1, plen);
	digits[plen] = '\0';
	errno = 0;
	v = strtol(digits, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > 65535)
		return -1;
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	*port = (int)v;
	return 0;
}

int url_address(const char *url, char *out, size_t size)
{
	char host[256];
	int port;
	if (url_host_port(url, host, sizeof host, &port) != 0)
		return -1;
	if ((size_t)snprintf(out, size, "%s:%d", host, port) >= size)
		return -1;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *url_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	size_t o = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			out[o++] = ' ';
		} else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
			   hexval(s[i + 2]) >= 0) {
			out[o++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return out;
}
