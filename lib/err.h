/* err.h — capstan's one error enum, its messages, and how each maps to etcd's
 * gRPC code and the gateway's HTTP status.
 *
 * Every module returns these codes. Lower layers (libuv, sqlite, raft) are
 * translated into them at the boundary, with detail in an errmsg buffer of
 * CAP_ERRMSG_SIZE bytes owned by the caller. The gateway turns them into
 * etcd's error body {"error","message","code"} with the matching HTTP status. */
#ifndef CAPSTAN_ERR_H
#define CAPSTAN_ERR_H

#include <stddef.h>

#define CAP_ERRMSG_SIZE 256

enum cap_err {
	CAP_OK = 0,
	CAP_ENOMEM,           /* allocation failed */
	CAP_EINVAL,           /* a request is malformed (message in errmsg) */
	CAP_EKEYEMPTY,        /* etcdserver: key is not provided */
	CAP_EKEYNOTFOUND,     /* etcdserver: key not found (ignore_value on a missing key) */
	CAP_ELEASENOTFOUND,   /* etcdserver: requested lease not found */
	CAP_ELEASEEXISTS,     /* etcdserver: lease already exists */
	CAP_ELEASEPROVIDED,   /* etcdserver: lease is provided (with ignore_lease) */
	CAP_ECOMPACTED,       /* mvcc: required revision has been compacted */
	CAP_EFUTUREREV,       /* mvcc: required revision is a future revision */
	CAP_ETOOLARGE,        /* etcdserver: request is too large */
	CAP_ETOOMANYOPS,      /* etcdserver: too many operations in txn request */
	CAP_EDUPKEY,          /* etcdserver: duplicate key given in txn request */
	CAP_ENOLEADER,        /* etcdserver: no leader */
	CAP_ESTOPPED,         /* etcdserver: server stopped */
	CAP_ETIMEOUT,         /* etcdserver: request timed out */
	CAP_ENOSPACE,         /* etcdserver: mvcc: database space exceeded */
	CAP_EMEMBERNOTFOUND,  /* etcdserver: member not found */
	CAP_EBADTRANSFEREE,   /* etcdserver: bad leader transferee */
	CAP_EIO,              /* disk or network I/O failed */
	CAP_ECORRUPT,         /* stored data failed a check: never served */
	CAP_ENOTFOUND,        /* a path or object that does not exist (HTTP 404) */
	CAP_EMETHOD,          /* method not allowed (HTTP 405) */
	CAP_EUNAVAILABLE,     /* generic unavailable (HTTP 503) */
	CAP_ELEADERCHANGED,   /* etcdserver: leader changed (outcome unknown) */
	CAP_EREMOVED,         /* etcdserver: the member has been permanently removed from the cluster */
	CAP_EUNHEALTHY,       /* etcdserver: unhealthy cluster (a change would lose quorum) */
	CAP_ERR_COUNT
};

/* gRPC status codes used by etcd. */
enum {
	GRPC_OK = 0,
	GRPC_CANCELED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_ABORTED = 10,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_DATA_LOSS = 15,
	GRPC_UNAUTHENTICATED = 16,
};

/* The etcd-worded message of an error ("etcdserver: ..."), never NULL. */
const char *cap_strerror(int err);
/* The gRPC code etcd answers with for this error. */
int cap_err_grpc(int err);
/* The HTTP status the gateway answers with for a gRPC code. */
int cap_grpc_http_status(int grpc_code);

/* printf into an errmsg buffer of CAP_ERRMSG_SIZE bytes. */
void cap_errmsg_printf(char *errmsg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Prefix an existing errmsg with "context: ". */
void cap_errmsg_wrapf(char *errmsg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
