/* test_raft_prealloc.c — unit tests of store/raft_prealloc.c: a new file in
 * the started directory is written with zeros, so that a non-blocking
 * direct write into it (libraft's appends) goes through at once; every
 * other posix_fallocate keeps libc's meaning. The files live under the
 * current directory (the build tree), on the disk the store would use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "store/raft_prealloc.h"

#define SEG (256 * 1024)

static char dir_in[64], dir_out[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir_in, sizeof dir_in, "raft-prealloc-in.XXXXXX");
	snprintf(dir_out, sizeof dir_out, "raft-prealloc-out.XXXXXX");
	if (mkdtemp(dir_in) == NULL || mkdtemp(dir_out) == NULL)
		return -1;
	return 0;
}

static void rm_dir(const char *dir)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static int teardown(void **state)
{
	(void)state;
	rm_dir(dir_in);
	rm_dir(dir_out);
	return 0;
}

/* Opens DIR/NAME as libraft opens a new segment. */
static int make_file(const char *dir, const char *name)
{
	char path[160];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_DSYNC, 0600);
	assert_true(fd >= 0);
	return fd;
}

static off_t size_of(int fd)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	return st.st_size;
}

/* Extents of the file the filesystem reports unwritten. */
static unsigned unwritten_extents(int fd)
{
	enum { N = 64 };
	struct fiemap *fm = calloc(1, sizeof *fm + N * sizeof(struct fiemap_extent));
	unsigned n = 0;
	assert_non_null(fm);
	fm->fm_length = FIEMAP_MAX_OFFSET;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = N;
	assert_int_equal(ioctl(fd, FS_IOC_FIEMAP, fm), 0);
	assert_true(fm->fm_mapped_extents > 0);
	for (unsigned i = 0; i < fm->fm_mapped_extents; i++)
		if (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN)
			n++;
	free(fm);
	return n;
}

/* A new file in the directory is zeros on disk, one written extent: an
 * O_DIRECT write with RWF_NOWAIT that rewrites the first block and goes on
 * into the next (libraft's append to a partly filled block) succeeds. After
 * libc's posix_fallocate the same write meets a written and an unwritten
 * extent and fails with EAGAIN on ext4. */
static void test_new_file_in_dir_is_written(void **state)
{
	(void)state;
	unsigned long before = raft_prealloc_filled();
	assert_int_equal(raft_prealloc_start(dir_in), 0);
	int fd = make_file(dir_in, "open-1");
	assert_int_equal(posix_fallocate(fd, 0, SEG), 0);
	assert_int_equal(raft_prealloc_filled(), before + 1);
	assert_int_equal(size_of(fd), SEG);
	assert_int_equal(unwritten_extents(fd), 0);

	assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_DIRECT), 0);
	void *block;
	assert_int_equal(posix_memalign(&block, 4096, 8192), 0);
	memset(block, 'x', 8192);
	struct iovec iov = {block, 8192};
	struct iovec first = {block, 4096};
	assert_int_equal(pwritev2(fd, &first, 1, 0, RWF_NOWAIT), 4096);
	assert_int_equal(pwritev2(fd, &iov, 1, 0, RWF_NOWAIT), 8192);
	free(block);
	close(fd);

	/* What a reader sees: the bytes written, zeros where nothing was. */
	char path[160], buf[4096], zero[4096] = {0}, xs[4096];
	memset(xs, 'x', sizeof xs);
	snprintf(path, sizeof path, "%s/open-1", dir_in);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, sizeof buf, 4096), (ssize_t)sizeof buf);
	assert_memory_equal(buf, xs, sizeof buf);
	assert_int_equal(pread(fd, buf, sizeof buf, 8192), (ssize_t)sizeof buf);
	assert_memory_equal(buf, zero, sizeof buf);
	assert_int_equal(pread(fd, buf, sizeof buf, SEG - 4096), (ssize_t)sizeof buf);
	assert_memory_equal(buf, zero, sizeof buf);
	close(fd);
}

/* Files elsewhere, files with data, and ranges past the start keep libc's
 * posix_fallocate: the size grows, nothing is overwritten, nothing is
 * counted as filled. */
static void test_other_calls_are_libc(void **state)
{
	(void)state;
	assert_int_equal(raft_prealloc_start(dir_in), 0);
	unsigned long before = raft_prealloc_filled();

	int fd = make_file(dir_out, "elsewhere");
	assert_int_equal(posix_fallocate(fd, 0, SEG), 0);
	assert_int_equal(size_of(fd), SEG);
	close(fd);

	fd = make_file(dir_in, "has-data");
	assert_int_equal(write(fd, "abc", 3), 3);
	assert_int_equal(posix_fallocate(fd, 0, SEG), 0);
	assert_int_equal(size_of(fd), SEG);
	close(fd);
	char path[160], buf[3];
	snprintf(path, sizeof path, "%s/has-data", dir_in);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, 3, 0), 3);
	assert_memory_equal(buf, "abc", 3);
	close(fd);

	fd = make_file(dir_in, "offset");
	assert_int_equal(posix_fallocate(fd, 4096, 4096), 0);
	assert_int_equal(size_of(fd), 8192);
	close(fd);

	assert_int_equal(raft_prealloc_filled(), before);
}

/* A directory that does not exist is refused, and the one before stays. */
static void test_bad_dir(void **state)
{
	(void)state;
	assert_int_equal(raft_prealloc_start(dir_in), 0);
	assert_int_equal(raft_prealloc_start("no/such/dir"), ENOENT);
	unsigned long before = raft_prealloc_filled();
	int fd = make_file(dir_in, "open-2");
	assert_int_equal(posix_fallocate(fd, 0, 8192), 0);
	assert_int_equal(raft_prealloc_filled(), before + 1);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_file_in_dir_is_written),
		cmocka_unit_test(test_other_calls_are_libc),
		cmocka_unit_test(test_bad_dir),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
