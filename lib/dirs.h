/* dirs.h — creating the directories a data or state directory lives in.
 * The servers and the node agent each keep files under a directory given on
 * the command line that may not exist yet. */
#ifndef CAPSTAN_DIRS_H
#define CAPSTAN_DIRS_H

#include <sys/types.h>

/* Creates dir and every missing parent with the given mode (0700 for data
 * and state directories: they hold credentials and the cluster's contents).
 * Existing directories are fine. System calls only, no allocation, so a
 * forked child may call it before exec. Returns 0, or -1 with errno set
 * (ENAMETOOLONG for a path of PATH_MAX or more). */
int dirs_make_all(const char *dir, mode_t mode);

#endif
