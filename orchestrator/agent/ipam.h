/* ipam.h — the node's pod addresses: a host-local allocator (CNI's
 * host-local plugin, in spirit) on a directory of the agent's state. Each
 * address in use is a file named after it ("10.244.1.7") holding the pod
 * UID that owns it, created with O_EXCL so an address is never handed out
 * twice; "last_reserved" remembers where the previous allocation ended so
 * that a released address is not the next one given. Everything survives an
 * agent restart: the files are the record.
 *
 * The range's network address, its first address (the bridge's, the pods'
 * gateway) and its broadcast address are never handed out.
 *
 * Threading: any, one caller at a time per directory. Ownership: the struct
 * is the caller's; it holds no resources. */
#ifndef CAPSTAN_AGENT_IPAM_H
#define CAPSTAN_AGENT_IPAM_H

#include <limits.h>
#include <stdint.h>

#include "lib/cidr.h"

struct ipam {
	char dir[PATH_MAX];
	struct cidr range;
};

/* Creates dir if needed. Returns 0, or -1 with errno. */
int ipam_open(struct ipam *m, const char *dir, const struct cidr *range);
/* The owner's address: the one it already holds, or a new one. Returns 0,
 * or -1 (errno ENOSPC when the range is full, or the I/O error). */
int ipam_alloc(struct ipam *m, const char *owner, uint32_t *ip);
/* The address owner holds in dir (any range): 0, or -1 when none. */
int ipam_find(const char *dir, const char *owner, uint32_t *ip);
/* Frees every address owner holds in dir; 0 when it held none too. */
int ipam_release(const char *dir, const char *owner);
/* Calls fn for every address in use in dir. */
void ipam_foreach(const char *dir, void (*fn)(void *data, uint32_t ip, const char *owner),
		  void *data);

#endif
