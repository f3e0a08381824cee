/* raft_aio.c — see raft_aio.h. */
#include "store/raft_aio.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Contexts waiting for the thread. One closes per log segment, so a
 * backlog this long means the thread is stuck: later ones run inline. */
#define PENDING_MAX 64

typedef long (*syscall_fn)(long number, ...);

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;
static syscall_fn libc_syscall;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static long pending[PENDING_MAX];
static unsigned n_pending;
static bool started;
static unsigned long n_deferred;

static void resolve(void)
{
	libc_syscall = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
	if (libc_syscall == NULL) {
		/* Nothing could be forwarded: there is no way on. */
		fprintf(stderr, "raft_aio: libc's syscall not found: %s\n", dlerror());
		abort();
	}
}

static void *destroyer(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&lock);
		while (n_pending == 0)
			pthread_cond_wait(&wake, &lock);
		long ctx = pending[--n_pending];
		pthread_mutex_unlock(&lock);
		libc_syscall(SYS_io_destroy, ctx);
	}
	return NULL;
}

int raft_aio_start(void)
{
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;
	int rv = 0;

	pthread_once(&resolve_once, resolve);
	pthread_mutex_lock(&lock);
	if (started)
		goto out;
	/* The thread takes no signals: the loop thread handles them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	rv = pthread_create(&t, &attr, destroyer, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	started = rv == 0;
out:
	pthread_mutex_unlock(&lock);
	return rv;
}

unsigned long raft_aio_deferred(void)
{
	pthread_mutex_lock(&lock);
	unsigned long n = n_deferred;
	pthread_mutex_unlock(&lock);
	return n;
}

static bool defer(long ctx)
{
	bool taken = false;
	pthread_mutex_lock(&lock);
	if (started && n_pending < PENDING_MAX) {
		pending[n_pending++] = ctx;
		n_deferred++;
		taken = true;
		pthread_cond_signal(&wake);
	}
	pthread_mutex_unlock(&lock);
	return taken;
}

/* Replaces libc's syscall(3) for the whole process (see raft_aio.h). Like
 * libc's, it passes six argument registers on whatever the caller gave. */
long syscall(long number, ...)
{
	va_list ap;
	long a[6];

	va_start(ap, number);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	pthread_once(&resolve_once, resolve);
	if (number == SYS_io_destroy && defer(a[0]))
		return 0;
	return libc_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
