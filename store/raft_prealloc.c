/* raft_prealloc.c — see raft_prealloc.h. */
#include "store/raft_prealloc.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Zeros per write: large enough that an O_DSYNC file (libraft opens its
 * segments so) syncs a few times per segment, not per block. */
#define ZERO_CHUNK (1u << 20)

typedef int (*fallocate_fn)(int fd, off_t offset, off_t len);

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;
static fallocate_fn libc_fallocate;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;   /* guards dir_path */
static char dir_path[PATH_MAX];   /* resolved; empty until started */
static atomic_ulong n_filled;

/* Never written: in .bss, not a megabyte of the binary. */
static _Alignas(4096) char zeros[ZERO_CHUNK];

static void resolve(void)
{
	libc_fallocate = (fallocate_fn)dlsym(RTLD_NEXT, "posix_fallocate");
	if (libc_fallocate == NULL) {
		/* Nothing could be forwarded: there is no way on. */
		fprintf(stderr, "raft_prealloc: libc's posix_fallocate not found: %s\n", dlerror());
		abort();
	}
}

int raft_prealloc_start(const char *dir)
{
	char resolved[PATH_MAX];

	pthread_once(&resolve_once, resolve);
	if (realpath(dir, resolved) == NULL)
		return errno;
	pthread_mutex_lock(&lock);
	snprintf(dir_path, sizeof dir_path, "%s", resolved);
	pthread_mutex_unlock(&lock);
	return 0;
}

unsigned long raft_prealloc_filled(void)
{
	return atomic_load(&n_filled);
}

/* Whether fd is an empty regular file directly in the started directory. */
static bool is_new_segment(int fd)
{
	char link[64], path[PATH_MAX], *slash;
	struct stat st;
	ssize_t n;
	bool match;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != 0)
		return false;
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof path - 1);
	if (n <= 0)
		return false;
	path[n] = '\0';
	slash = strrchr(path, '/');
	if (slash == NULL)
		return false;
	*slash = '\0';
	pthread_mutex_lock(&lock);
	match = dir_path[0] != '\0' && strcmp(path, dir_path) == 0;
	pthread_mutex_unlock(&lock);
	return match;
}

static int fill(int fd, off_t offset, off_t len)
{
	while (len > 0) {
		size_t want = len > (off_t)ZERO_CHUNK ? ZERO_CHUNK : (size_t)len;
		ssize_t k = pwrite(fd, zeros, want, offset);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		offset += k;
		len -= k;
	}
	if (fdatasync(fd) != 0)
		return errno;
	/* The pages are clean now; dropping them leaves the appends' O_DIRECT
	 * writes nothing cached to invalidate. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	atomic_fetch_add(&n_filled, 1);
	return 0;
}

/* Replaces libc's posix_fallocate(3) for the whole process (see
 * raft_prealloc.h). Like libc's, it returns an error number, not -1. */
int posix_fallocate(int fd, off_t offset, off_t len)
{
	pthread_once(&resolve_once, resolve);
	if (offset == 0 && len > 0 && is_new_segment(fd))
		return fill(fd, offset, len);
	return libc_fallocate(fd, offset, len);
}
