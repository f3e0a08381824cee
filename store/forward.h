/* forward.h — requests from a follower to the leader, over the leader's
 * client URL: proposals (so any member accepts writes) and read index
 * requests (so any member serves linearizable reads).
 *
 * One keep-alive HTTP client per leader URL is kept. Threading: loop thread
 * only. Contract: libuv's (an error return means cb is never called). */
#ifndef CAPSTAN_FORWARD_H
#define CAPSTAN_FORWARD_H

#include <jansson.h>
#include <uv.h>

struct forwarder;

/* status: the HTTP status, or a negative HTTP_CLIENT_E* code; answer: the
 * parsed JSON body (borrowed for the call), or NULL. */
typedef void (*forward_cb)(void *data, int status, json_t *answer);

int forwarder_new(uv_loop_t *loop, struct forwarder **out);
/* Cancels outstanding requests (their callbacks run) and frees. */
void forwarder_close(struct forwarder *fw);
int forwarder_post(struct forwarder *fw, const char *url, const char *path, json_t *body,
		   unsigned timeout_ms, forward_cb cb, void *data);

#endif
