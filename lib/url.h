/* url.h — the host and port of the URLs the command lines take
 * ("http://127.0.0.1:2379", "127.0.0.1:6443", "http://a:1,http://b:2").
 * Pure functions; the caller owns every buffer (url_decode's result is
 * malloc'd: the caller frees it). */
#ifndef CAPSTAN_URL_H
#define CAPSTAN_URL_H

#include <stddef.h>

/* Splits the first URL of a comma-separated list into host and port (0 to
 * 65535; a port of 0 asks for any free port). The scheme and any path are
 * ignored. Returns 0, or -1 if there is no host:port. */
int url_host_port(const char *url, char *host, size_t size, int *port);

/* "host:port" of the first URL, as libraft addresses peers. */
int url_address(const char *url, char *out, size_t size);

/* URL-decodes s[0..n) ('+' is a space, as in HTML forms and Go's
 * url.ParseQuery); a '%' not followed by two hex digits stays literal.
 * NULL on allocation failure. */
char *url_decode(const char *s, size_t n);

#endif
