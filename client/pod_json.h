/* pod_json.h — Kubernetes-like values for the store's benchmarks: a Pod
 * object as an API server keeps it (metadata with labels, annotations,
 * owner and managed fields; a spec with a container, its environment,
 * volumes and tolerations; a status with conditions and container state),
 * varied by a seed in everything that varies between real pods (names,
 * UIDs, hashes, addresses, times, image digests), and grown to a wanted size
 * with more environment variables, as real pods differ in size.
 *
 * What a store does with such values (compression, in particular) should
 * be judged on them rather than on random bytes, which no store can
 * compress. */
#ifndef CAPSTAN_CLIENT_POD_JSON_H
#define CAPSTAN_CLIENT_POD_JSON_H

#include <stddef.h>
#include <stdint.h>

/* Writes one compact JSON object of at least `target` bytes into a new
 * buffer the caller frees; NUL-terminated, length in *len. Sections go in
 * whole, so it may be up to about 1 KiB larger (and a bare pod, ~550
 * bytes, is the least it makes). The same seed and target give the same
 * bytes. NULL when out of memory. */
char *pod_json(uint64_t seed, size_t target, size_t *len);

#endif
