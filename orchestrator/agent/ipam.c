/* ipam.c — host-local pod address allocation on a state directory
 * (ipam.h). */
#include "orchestrator/agent/ipam.h"
#include "lib/dirs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IPAM_OWNER_MAX 256


int ipam_open(struct ipam *m, const char *dir, const struct cidr *range)
{
	if ((size_t)snprintf(m->dir, sizeof m->dir, "%s", dir) >= sizeof m->dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	m->range = *range;
	return dirs_make_all(dir, 0700);
}

/* Reads the owner recorded in one address file; 0 or -1. */
static int read_owner(const char *dir, const char *name, char *owner, size_t size)
{
	char path[PATH_MAX + 32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, owner, size - 1);
	close(fd);
	if (n <= 0)
		return -1;
	owner[n] = '\0';
	owner[strcspn(owner, "\n")] = '\0';
	return 0;
}

void ipam_foreach(const char *dir, void (*fn)(void *data, uint32_t ip, const char *owner),
		  void *data)
{
	char owner[IPAM_OWNER_MAX];
	struct dirent *e;
	uint32_t ip;
	DIR *d = opendir(dir);

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		/* Only dotted addresses are allocations; "last_reserved" and
		 * temporary files are not. */
		if (cidr_parse_ip(e->d_name, &ip) != 0)
			continue;
		if (read_owner(dir, e->d_name, owner, sizeof owner) == 0)
			fn(data, ip, owner);
	}
	closedir(d);
}

struct find {
	const char *owner;
	uint32_t ip;
	int found;
};

static void find_one(void *data, uint32_t ip, const char *owner)
{
	struct find *f = data;
	if (strcmp(owner, f->owner) == 0 && f->found == 0) {
		f->ip = ip;
		f->found = 1;
	}
}

int ipam_find(const char *dir, const char *owner, uint32_t *ip)
{
	struct find f = {owner, 0, 0};
	ipam_foreach(dir, find_one, &f);
	if (!f.found)
		return -1;
	*ip = f.ip;
	return 0;
}

int ipam_release(const char *dir, const char *owner)
{
	char owner_buf[IPAM_OWNER_MAX], path[PATH_MAX + 32];
	struct dirent *e;
	uint32_t ip;
	int rv = 0;
	DIR *d = opendir(dir);

	if (d == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d)) != NULL) {
		if (cidr_parse_ip(e->d_name, &ip) != 0)
			continue;
		if (read_owner(dir, e->d_name, owner_buf, sizeof owner_buf) != 0 ||
		    strcmp(owner_buf, owner) != 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (unlink(path) != 0 && errno != ENOENT)
			rv = -1;
	}
	closedir(d);
	return rv;
}

static uint32_t last_reserved(const struct ipam *m)
{
	char buf[32] = "";
	uint32_t ip;
	if (read_owner(m->dir, "last_reserved", buf, sizeof buf) != 0 ||
	    cidr_parse_ip(buf, &ip) != 0 || !cidr_contains_ip(&m->range, ip))
		return m->range.addr + 1;   /* the gateway: start right after it */
	return ip;
}

static void set_last_reserved(const struct ipam *m, uint32_t ip)
{
	char path[PATH_MAX + 32], tmp[PATH_MAX + 40], buf[16];
	FILE *f;
	snprintf(path, sizeof path, "%s/last_reserved", m->dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		return;
	fprintf(f, "%s\n", cidr_format_ip(ip, buf, sizeof buf));
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		unlink(tmp);
}

int ipam_alloc(struct ipam *m, const char *owner, uint32_t *ip)
{
	uint64_t size = cidr_size(&m->range), span, base;
	uint32_t first, start;
	char path[PATH_MAX + 32], buf[16];

	if (ipam_find(m->dir, owner, ip) == 0 && cidr_contains_ip(&m->range, *ip))
		return 0;
	if (size < 4) {
		errno = ENOSPC;   /* no room beside network, gateway and broadcast */
		return -1;
	}
	first = m->range.addr + 2;
	span = size - 3;
	start = last_reserved(m);
	base = start >= first && start - first < span ? start - first : span - 1;
	for (uint64_t k = 1; k <= span; k++) {
		/* Round-robin from the address after the last one handed out. */
		uint32_t cand = first + (uint32_t)((base + k) % span);
		int fd;
		snprintf(path, sizeof path, "%s/%s", m->dir, cidr_format_ip(cand, buf, sizeof buf));
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			if (errno == EEXIST)
				continue;
			return -1;
		}
		if (write(fd, owner, strlen(owner)) != (ssize_t)strlen(owner) || fsync(fd) != 0) {
			int e = errno;
			close(fd);
			unlink(path);
			errno = e;
			return -1;
		}
		close(fd);
		set_last_reserved(m, cand);
		*ip = cand;
		return 0;
	}
	errno = ENOSPC;
	return -1;
}
