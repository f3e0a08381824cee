/* err.c — the message and code table behind err.h. */
#include "lib/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
	const char *msg;
	int grpc;
} err_table[CAP_ERR_COUNT] = {
	[CAP_OK] = {"ok", GRPC_OK},
	[CAP_ENOMEM] = {"etcdserver: out of memory", GRPC_RESOURCE_EXHAUSTED},
	[CAP_EINVAL] = {"etcdserver: invalid request", GRPC_INVALID_ARGUMENT},
	[CAP_EKEYEMPTY] = {"etcdserver: key is not provided", GRPC_INVALID_ARGUMENT},
	[CAP_EKEYNOTFOUND] = {"etcdserver: key not found", GRPC_INVALID_ARGUMENT},
	[CAP_ELEASENOTFOUND] = {"etcdserver: requested lease not found", GRPC_NOT_FOUND},
	[CAP_ELEASEEXISTS] = {"etcdserver: lease already exists", GRPC_FAILED_PRECONDITION},
	[CAP_ELEASEPROVIDED] = {"etcdserver: lease is provided", GRPC_INVALID_ARGUMENT},
	[CAP_ECOMPACTED] = {"etcdserver: mvcc: required revision has been compacted", GRPC_OUT_OF_RANGE},
	[CAP_EFUTUREREV] = {"etcdserver: mvcc: required revision is a future revision", GRPC_OUT_OF_RANGE},
	[CAP_ETOOLARGE] = {"etcdserver: request is too large", GRPC_INVALID_ARGUMENT},
	[CAP_ETOOMANYOPS] = {"etcdserver: too many operations in txn request", GRPC_INVALID_ARGUMENT},
	[CAP_EDUPKEY] = {"etcdserver: duplicate key given in txn request", GRPC_INVALID_ARGUMENT},
	[CAP_ENOLEADER] = {"etcdserver: no leader", GRPC_UNAVAILABLE},
	[CAP_ESTOPPED] = {"etcdserver: server stopped", GRPC_UNAVAILABLE},
	[CAP_ETIMEOUT] = {"etcdserver: request timed out", GRPC_UNAVAILABLE},
	[CAP_ENOSPACE] = {"etcdserver: mvcc: database space exceeded", GRPC_RESOURCE_EXHAUSTED},
	[CAP_EMEMBERNOTFOUND] = {"etcdserver: member not found", GRPC_NOT_FOUND},
	[CAP_EBADTRANSFEREE] = {"etcdserver: bad leader transferee", GRPC_FAILED_PRECONDITION},
	[CAP_EIO] = {"etcdserver: i/o error", GRPC_INTERNAL},
	[CAP_ECORRUPT] = {"etcdserver: corrupt cluster", GRPC_DATA_LOSS},
	[CAP_ENOTFOUND] = {"Not Found", GRPC_NOT_FOUND},
	[CAP_EMETHOD] = {"Method Not Allowed", GRPC_UNIMPLEMENTED},
	[CAP_EUNAVAILABLE] = {"etcdserver: unavailable", GRPC_UNAVAILABLE},
	[CAP_ELEADERCHANGED] = {"etcdserver: leader changed", GRPC_UNAVAILABLE},
	[CAP_EREMOVED] = {"etcdserver: the member has been permanently removed from the cluster", GRPC_FAILED_PRECONDITION},
	[CAP_EUNHEALTHY] = {"etcdserver: unhealthy cluster", GRPC_UNAVAILABLE},
};

const char *cap_strerror(int err)
{
	if (err < 0 || err >= CAP_ERR_COUNT || err_table[err].msg == NULL)
		return "etcdserver: unknown error";
	return err_table[err].msg;
}

int cap_err_grpc(int err)
{
	if (err < 0 || err >= CAP_ERR_COUNT)
		return GRPC_UNKNOWN;
	return err_table[err].grpc;
}

int cap_grpc_http_status(int grpc_code)
{
	/* grpc-gateway's HTTPStatusFromCode. */
	switch (grpc_code) {
	case GRPC_OK: return 200;
	case GRPC_CANCELED: return 408;
	case GRPC_UNKNOWN: return 500;
	case GRPC_INVALID_ARGUMENT: return 400;
	case GRPC_DEADLINE_EXCEEDED: return 504;
	case GRPC_NOT_FOUND: return 404;
	case GRPC_ALREADY_EXISTS: return 409;
	case GRPC_PERMISSION_DENIED: return 403;
	case GRPC_RESOURCE_EXHAUSTED: return 429;
	case GRPC_FAILED_PRECONDITION: return 412;
	case GRPC_ABORTED: return 409;
	case GRPC_OUT_OF_RANGE: return 400;
	case GRPC_UNIMPLEMENTED: return 501;
	case GRPC_INTERNAL: return 500;
	case GRPC_UNAVAILABLE: return 503;
	case GRPC_DATA_LOSS: return 500;
	case GRPC_UNAUTHENTICATED: return 401;
	default: return 500;
	}
}

void cap_errmsg_printf(char *errmsg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, CAP_ERRMSG_SIZE, fmt, ap);
	va_end(ap);
}

void cap_errmsg_wrapf(char *errmsg, const char *fmt, ...)
{
	char prefix[CAP_ERRMSG_SIZE];
	char rest[CAP_ERRMSG_SIZE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(rest, errmsg, CAP_ERRMSG_SIZE);
	rest[CAP_ERRMSG_SIZE - 1] = '\0';
	/* Truncation is acceptable: the message is for people. */
	size_t n = strlen(prefix);
	if (n > CAP_ERRMSG_SIZE - 3)
		n = CAP_ERRMSG_SIZE - 3;
	memcpy(errmsg, prefix, n);
	memcpy(errmsg + n, ": ", 2);
	size_t room = CAP_ERRMSG_SIZE - n - 3;
	size_t m = strlen(rest);
	if (m > room)
		m = room;
	memcpy(errmsg + n + 2, rest, m);
	errmsg[n + 2 + m] = '\0';
}
