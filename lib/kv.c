/* kv.c — the gateway path of each kv operation and etcd's error object. */
#include "lib/kv.h"

#include <stddef.h>

static const char *const kv_paths[KV_OP_COUNT] = {
	[KV_RANGE] = "/v3/kv/range",
	[KV_PUT] = "/v3/kv/put",
	[KV_DELETE_RANGE] = "/v3/kv/deleterange",
	[KV_TXN] = "/v3/kv/txn",
	[KV_COMPACT] = "/v3/kv/compaction",
	[KV_LEASE_GRANT] = "/v3/lease/grant",
	[KV_LEASE_REVOKE] = "/v3/lease/revoke",
	[KV_LEASE_KEEPALIVE] = "/v3/lease/keepalive",
	[KV_LEASE_TIMETOLIVE] = "/v3/lease/timetolive",
	[KV_LEASE_LEASES] = "/v3/lease/leases",
	[KV_STATUS] = "/v3/maintenance/status",
	[KV_HASH] = "/v3/maintenance/hash",
	[KV_MEMBER_LIST] = "/v3/cluster/member/list",
	[KV_MEMBER_ADD] = "/v3/cluster/member/add",
	[KV_MEMBER_REMOVE] = "/v3/cluster/member/remove",
	[KV_MEMBER_UPDATE] = "/v3/cluster/member/update",
	[KV_MEMBER_PROMOTE] = "/v3/cluster/member/promote",
	[KV_MOVE_LEADER] = "/v3/maintenance/transfer-leadership",
};

const char *kv_op_path(enum kv_op op)
{
	if ((int)op < 0 || op >= KV_OP_COUNT)
		return NULL;
	return kv_paths[op];
}

json_t *kv_error_new(int grpc_code, const char *message)
{
	/* etcd repeats the message under "error" and "message": clients read either. */
	return json_pack("{s:s, s:s, s:i}", "error", message, "message", message,
			 "code", grpc_code);
}
