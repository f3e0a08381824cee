/* raft_prealloc.h — libraft's log segments written with zeros when made.
 *
 * libraft 0.15 makes each log segment with posix_fallocate(3), which on
 * ext4 reserves unwritten extents, and appends to it with O_DIRECT writes
 * submitted with RWF_NOWAIT. Such a write must be served by one extent
 * mapping, or it fails with EAGAIN; an append rewrites the segment's last,
 * partly filled block (written by the previous append) and goes on into
 * blocks still unwritten, so under load, when appends span blocks, nearly
 * every one failed so, and libraft wrote it again from its thread pool
 * (strace: res=-11, then the same write from a pool thread): a loop round
 * and two thread hand-offs between one disk write and the next. Bare
 * libraft does ~50% more entries/s at 16 and 64 in flight on segments
 * written ahead (bench/raft-floor --zero-fill; docs/benchmarks.md).
 *
 * raft_prealloc.c defines posix_fallocate, which the dynamic linker
 * prefers to libc's for every library of the process. Once
 * raft_prealloc_start(dir) has run, a call for the start of a new, empty
 * regular file directly in DIR (libraft's segments, and the file with which
 * it probes the disk's I/O capabilities) writes zeros over the range and
 * syncs them instead, so that the blocks are written extents before the
 * first append; every other call goes to libc's unchanged.
 *
 * Cost: each segment's bytes are written twice, once as zeros when libraft
 * prepares it (on its thread pool, ahead of use) and once by the appends.
 * What a reader of the file sees is the same: zeros where nothing was
 * appended.
 *
 * Threading: raft_prealloc_start on the loop thread before raft_uv_init;
 * posix_fallocate from any thread. */
#ifndef CAPSTAN_RAFT_PREALLOC_H
#define CAPSTAN_RAFT_PREALLOC_H

/* Fills files made in DIR from now on (DIR replaces an earlier one). 0, or
 * an errno value when DIR cannot be resolved (then nothing is filled). */
int raft_prealloc_start(const char *dir);

/* Files filled with zeros so far, for tests. */
unsigned long raft_prealloc_filled(void);

#endif
