/* b64.h — standard base64 (RFC 4648, with padding), as etcd's gateway uses
 * for keys and values. Pure functions; the caller owns every buffer. */
#ifndef CAPSTAN_B64_H
#define CAPSTAN_B64_H

#include <stddef.h>
#include <stdint.h>

/* Bytes needed to encode n bytes, including the terminating NUL. */
size_t b64_encoded_size(size_t n);
/* Encodes src[0..n) into dst (b64_encoded_size(n) bytes), NUL-terminated.
 * Returns the length written, without the NUL. */
size_t b64_encode(const uint8_t *src, size_t n, char *dst);
/* Upper bound of the decoded size of n characters. */
size_t b64_decoded_max(size_t n);
/* Decodes src[0..n) into dst (b64_decoded_max(n) bytes). Accepts standard
 * and URL-safe alphabets, with or without padding, as Go's protobuf JSON
 * decoding does. Returns the number of bytes written, or -1 if src is not
 * valid base64. Never reads past src[n-1]. */
long b64_decode(const char *src, size_t n, uint8_t *dst);

#endif
