/* ctlbase.h — what the workload controllers share: a reference-counted
 * controller base (so that API answers arriving after stop() find live
 * memory), a work queue of "namespace/name" keys, requests whose failure
 * re-queues the key, and creation/deletion expectations so a controller
 * does not act twice while its informers catch up with its own writes.
 *
 * Threading: loop thread only. Ownership: the base is embedded first in each
 * controller's state; ctl_base_release frees it through free_fn when the
 * last reference (stop() or an outstanding request) is dropped. Request
 * bodies are borrowed for the call. */
#ifndef CAPSTAN_CTLBASE_H
#define CAPSTAN_CTLBASE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "orchestrator/controllers/controllers.h"
#include "orchestrator/kube/informer.h"
#include "orchestrator/kube/kclient.h"
#include "orchestrator/kube/workqueue.h"

struct ctl_base {
	struct controller_ctx *ctx;
	struct kclient *client;
	struct workqueue *q;
	const char *name;         /* for logs */
	int refs;
	bool stopped;
	json_t *expect;           /* key -> [adds, dels, deadline_ms] */
	void (*free_fn)(struct ctl_base *b);
};

/* Sets the base up with a queue calling sync(b, key); refs = 1. */
int ctl_base_init(struct ctl_base *b, struct controller_ctx *ctx, const char *name,
		  int (*sync)(void *data, const char *key), void (*free_fn)(struct ctl_base *));
/* Marks stopped, closes the queue and drops the first reference. */
void ctl_base_stop(struct ctl_base *b);
void ctl_base_release(struct ctl_base *b);

/* Queues the object's "ns/name" (or "name"). */
void ctl_enqueue_obj(struct ctl_base *b, json_t *obj);
/* Queues "ns/name" built from parts. */
void ctl_enqueue(struct ctl_base *b, const char *ns, const char *name);
/* Queues every Service in services (an informer of Services) whose selector
 * selects pod: what the Endpoints and EndpointSlice controllers do when a
 * pod comes, goes or changes. A Service without a selector selects nothing
 * (its endpoints are someone else's). */
void ctl_enqueue_services_selecting(struct ctl_base *b, struct informer *services, json_t *pod);

/* Called with the answer of a request (status < 0: transport error). arg is
 * what the caller passed. Not called once the base is stopped. */
typedef void (*ctl_done_fn)(struct ctl_base *b, const char *key, int status, json_t *body,
			    void *arg);

/* Requests that re-queue key (rate limited) when they fail with anything but
 * 404 or 409 (those re-queue at once, as the cache is stale), and call done
 * (if any) with the outcome. Return 0, or non-zero when the request could
 * not be sent (then done is not called, and the key is re-queued). */
int ctl_create(struct ctl_base *b, const struct kres *r, const char *ns, json_t *obj,
	       const char *key, ctl_done_fn done, void *arg);
int ctl_merge_patch(struct ctl_base *b, const struct kres *r, const char *ns, const char *name,
		    const char *sub, json_t *patch, const char *key, ctl_done_fn done, void *arg);
int ctl_update(struct ctl_base *b, const struct kres *r, const char *ns, const char *name,
	       json_t *obj, const char *key, ctl_done_fn done, void *arg);
/* policy: "Background", "Foreground", "Orphan" or NULL; uid: a
 * precondition, or NULL. */
int ctl_delete(struct ctl_base *b, const struct kres *r, const char *ns, const char *name,
	       const char *uid, const char *policy, const char *key, ctl_done_fn done, void *arg);

/* Expectations: a controller that asked for adds creations and dels
 * deletions for key waits until its informers have seen them (or five
 * minutes pass) before it acts on key again. */
void ctl_expect(struct ctl_base *b, const char *key, int adds, int dels);
void ctl_observed_add(struct ctl_base *b, const char *key);
void ctl_observed_del(struct ctl_base *b, const char *key);
bool ctl_satisfied(struct ctl_base *b, const char *key);
void ctl_forget(struct ctl_base *b, const char *key);

/* Helpers on objects (borrowed). */
const char *ctl_ns(json_t *obj);
const char *ctl_name(json_t *obj);
const char *ctl_uid(json_t *obj);
bool ctl_deleting(json_t *obj);
/* Splits "ns/name" into ns (size nsz) and name (points into key). */
const char *ctl_split_key(const char *key, char *ns, size_t nsz);
/* Milliseconds since the epoch, and an RFC 3339 "now" (buf >= 21 bytes). */
int64_t ctl_now_ms(void);
const char *ctl_now_rfc3339(char *buf, size_t size);

#endif
