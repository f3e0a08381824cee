/* apply.h — etcd's request semantics: parsing and validating the gateway's
 * JSON requests into typed form, and executing them against the MVCC store.
 *
 * Parsing happens twice for a write: once when the request arrives (so an
 * invalid request is answered at once and never enters the raft log) and
 * once when its log entry applies, on every replica. Execution is
 * deterministic: every replica produces the same state and answer.
 *
 * Ownership: apply_parse allocates a struct apply_req the caller frees with
 * apply_req_free. apply_exec returns a new JSON answer (without the "header"
 * member: the caller adds it) and appends the watch events of the writes it
 * made to *events (owned by the caller). */
#ifndef CAPSTAN_APPLY_H
#define CAPSTAN_APPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/kv.h"
#include "store/mvcc.h"

/* etcd's limit on operations per txn branch. */
#define APPLY_MAX_TXN_OPS 128
/* etcd's MaxLeaseTTL. */
#define APPLY_MAX_LEASE_TTL 9000000000LL

struct apply_req;

/* Parses and validates a request of kind op. On failure returns a cap_err
 * code with detail in errmsg (CAP_ERRMSG_SIZE). */
int apply_parse(enum kv_op op, json_t *body, struct apply_req **out, char *errmsg);
void apply_req_free(struct apply_req *req);
/* A put's request text parsed straight into its request, without a JSON
 * tree: true with *out set when text is a valid put made only of a put's
 * members as plain strings, integers and booleans (what clients send);
 * false for anything else, valid or not, which then goes through
 * jsonx_loadb and apply_parse as any request (and gets their answer or
 * error). Either way the outcome is what that path gives. */
bool apply_parse_put_text(const char *text, size_t len, struct apply_req **out);

/* The compact binary form of a request for the raft log (raw key and value
 * bytes, varints; layout in apply.c), for puts: *out is malloc'd.
 * CAP_EINVAL for a kind of request it does not cover (those go as JSON). */
int apply_encode_bin(const struct apply_req *req, uint8_t **out, size_t *len);
/* The same bytes after one leading tag byte (a log command's kind), in one
 * buffer: *len counts the tag. */
int apply_encode_bin_tagged(const struct apply_req *req, uint8_t tag, uint8_t **out, size_t *len);
/* Decodes what apply_encode_bin made, from bytes read from the log or a
 * peer: never reads outside buf; CAP_ECORRUPT for malformed bytes, else
 * the same validation errors as apply_parse. */
int apply_decode_bin(const uint8_t *buf, size_t len, struct apply_req **out, char *errmsg);
enum kv_op apply_req_op(const struct apply_req *req);

/* True when the request only reads (a range, or a txn whose every branch
 * only reads): it can be answered without a log entry. */
bool apply_req_readonly(const struct apply_req *req);
/* True for a range (or read-only txn) that asked for serializable reads. */
bool apply_req_serializable(const struct apply_req *req);

/* For lease grant: the ID asked for (0 = let the leader pick) and TTL. */
int64_t apply_lease_id(const struct apply_req *req);
int64_t apply_lease_ttl(const struct apply_req *req);

/* Executes req inside an open mvcc batch, as one etcd transaction (one
 * revision at most). On success *answer is a new object and *rev the
 * revision for the answer's header. On failure nothing the request did is
 * left in the batch (checks precede writes) and the cap_err is returned. */
int apply_exec(struct mvcc *m, const struct apply_req *req, json_t **answer,
	       struct mvcc_events *events, int64_t *rev, char *errmsg);

/* For a range (KV_RANGE; CAP_EINVAL for any other request): what
 * apply_exec answers, as text, without building the answer as a tree.
 * Appends the answer's members, each after a comma
 * (,"kvs":[...],"more":true,"count":"N", defaults left out as always),
 * so the caller writes {"header":{...} before and } after, and gets byte
 * for byte the text jsonx_dumps makes of apply_exec's answer with its
 * header first. *rev gets the revision for the header (as apply_exec's).
 * On failure returns the cap_err; out may then hold part of the text. */
struct jsonx_out;
int apply_range_text(struct mvcc *m, const struct apply_req *req, struct jsonx_out *out,
		     int64_t *rev);

/* Encodes a kv as the gateway does (defaults omitted); NULL on ENOMEM. */
json_t *apply_kv_json(const struct mvcc_kv *kv, bool keys_only);

#endif
