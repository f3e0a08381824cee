/* heap.c — allocator settings for JSON-heavy processes (see heap.h).
 *
 * Why: glibc keeps freed chunks up to 128 bytes in "fast bins" without
 * merging them, and merges them all (malloc_consolidate) whenever a request
 * of 1 KiB or more arrives. A JSON tree is hundreds of such small chunks,
 * and the API server frees trees and then allocates a serialization buffer
 * or a request many times a second, so every large allocation walked and
 * merged thousands of chunks: 15-17% of capstan-server's CPU during a
 * binding storm (bench/sched-bench, perf). With fast bins off, small
 * chunks still go through the per-thread cache first, and the rest are
 * merged as they are freed, a little at a time. */
#include <malloc.h>

#include "lib/heap.h"

void heap_tune(void)
{
#ifdef M_MXFAST
	mallopt(M_MXFAST, 0);
#endif
}
