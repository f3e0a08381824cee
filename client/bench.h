/* bench.h — `capstan bench`, a load generator for etcd's v3 JSON gateway.
 *
 * It speaks plain HTTP/1.1 keep-alive through lib/http.h, one connection per
 * simulated client, so the very same generator drives capstan-store and etcd
 * and their numbers can be compared.
 *
 * Threading: runs its own uv loop on the calling thread until the workload
 * ends; nothing is shared with the rest of the CLI. */
#ifndef CAPSTAN_BENCH_H
#define CAPSTAN_BENCH_H

#include <stdbool.h>

/* argv[0] is the workload name (argc may be 0: usage error). endpoints is the
 * comma-separated URL list of the global --endpoints flag (borrowed); json
 * selects machine-readable output on stdout; timeout_ms bounds each request.
 * Returns the CLI's exit status: 0 done (even with request errors, which are
 * reported), 1 the run could not be made (no server, setup failed), 2 usage. */
int bench_main(int argc, char **argv, const char *endpoints, bool json, unsigned timeout_ms);

/* The bench section of `capstan --help`. */
extern const char bench_usage[];

#endif
