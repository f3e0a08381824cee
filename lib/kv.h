/* kv.h — the one C interface over the store's operations.
 *
 * Requests and answers are the etcd v3 gateway's JSON objects (the protobuf
 * JSON mapping: keys and values base64, 64-bit integers as strings), so the
 * two implementations are the same shape: the in-process store
 * (store/store_kv.c) and the HTTP client (client/kv_http.c). The API server,
 * the tests and the benchmarks run against either.
 *
 * Threading: every call and callback on the loop thread of the kv.
 * Contract (libuv's): if a call returns non-zero, its callback is never
 * called; otherwise the callback is called exactly once.
 * Ownership: the request is borrowed for the duration of the call. The answer
 * passed to a callback is borrowed for the duration of the callback (json_incref
 * it to keep it). */
#ifndef CAPSTAN_KV_H
#define CAPSTAN_KV_H

#include <jansson.h>

enum kv_op {
	KV_RANGE = 0,          /* /v3/kv/range */
	KV_PUT,                /* /v3/kv/put */
	KV_DELETE_RANGE,       /* /v3/kv/deleterange */
	KV_TXN,                /* /v3/kv/txn */
	KV_COMPACT,            /* /v3/kv/compaction */
	KV_LEASE_GRANT,        /* /v3/lease/grant */
	KV_LEASE_REVOKE,       /* /v3/lease/revoke */
	KV_LEASE_KEEPALIVE,    /* /v3/lease/keepalive (answer unwrapped from "result") */
	KV_LEASE_TIMETOLIVE,   /* /v3/lease/timetolive */
	KV_LEASE_LEASES,       /* /v3/lease/leases */
	KV_STATUS,             /* /v3/maintenance/status */
	KV_HASH,               /* /v3/maintenance/hash */
	KV_MEMBER_LIST,        /* /v3/cluster/member/list */
	KV_MEMBER_ADD,         /* /v3/cluster/member/add */
	KV_MEMBER_REMOVE,      /* /v3/cluster/member/remove */
	KV_MEMBER_UPDATE,      /* /v3/cluster/member/update */
	KV_MEMBER_PROMOTE,     /* /v3/cluster/member/promote */
	KV_MOVE_LEADER,        /* /v3/maintenance/transfer-leadership */
	KV_OP_COUNT
};

/* The gateway path of an operation ("/v3/kv/range", ...). */
const char *kv_op_path(enum kv_op op);

/* err is NULL on success; on failure it is etcd's error object
 * {"error","message","code"} (also for transport failures, with code 14). */
typedef void (*kv_cb)(void *data, json_t *answer, json_t *err);
/* One watch frame: the object inside {"result": ...}; NULL with err set when
 * the stream ends abnormally; NULL, NULL when it ends after a cancel. */
typedef void (*kv_watch_cb)(void *data, json_t *frame, json_t *err);

struct kv;
struct kv_watch;

struct kv_ops {
	int (*call)(struct kv *kv, enum kv_op op, json_t *req, kv_cb cb, void *data);
	/* create is the create_request object of /v3/watch. Frames arrive until
	 * kv_watch_cancel (after which one final cb(NULL, NULL) comes). */
	int (*watch)(struct kv *kv, json_t *create, kv_watch_cb cb, void *data,
		     struct kv_watch **out);
	void (*watch_cancel)(struct kv_watch *w);
	void (*close)(struct kv *kv);
};

struct kv {
	const struct kv_ops *ops;
	void *impl;
};

static inline int kv_call(struct kv *kv, enum kv_op op, json_t *req, kv_cb cb, void *data)
{
	return kv->ops->call(kv, op, req, cb, data);
}
static inline int kv_watch(struct kv *kv, json_t *create, kv_watch_cb cb, void *data,
			   struct kv_watch **out)
{
	return kv->ops->watch(kv, create, cb, data, out);
}
/* Stops a watch; its callback then runs once more with (NULL, NULL). */
static inline void kv_watch_cancel(struct kv *kv, struct kv_watch *w)
{
	kv->ops->watch_cancel(w);
}
/* Cancels what is outstanding (callbacks still run once each) and frees kv. */
static inline void kv_close(struct kv *kv)
{
	kv->ops->close(kv);
}

/* Build etcd's error object; the caller owns the result. */
json_t *kv_error_new(int grpc_code, const char *message);

#endif
