/* kclient.h — a Kubernetes REST client on libuv, for the controllers, the
 * scheduler and the node agent: they reach the API server the way any
 * outside program would, over HTTP, with list + watch.
 *
 * Paths are built from a resource description: group/version, plural,
 * namespace (NULL for cluster-scoped or all namespaces), name, subresource.
 *
 * Threading: loop thread only. Contract (libuv's): a call that returns
 * non-zero never calls its callback; otherwise the callback runs exactly
 * once (for watches: until kclient_watch_stop, after which one final call
 * with type KCLIENT_WATCH_END comes). Ownership: objects passed to callbacks
 * are borrowed for the call (json_incref to keep them); request bodies are
 * borrowed for the call. */
#ifndef CAPSTAN_KCLIENT_H
#define CAPSTAN_KCLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

struct kclient;
struct kclient_watch;

struct kres {
	const char *group;        /* "" for core, "apps", "coordination.k8s.io", ... */
	const char *version;      /* "v1" */
	const char *resource;     /* plural: "pods", "nodes", "leases", ... */
};

/* Well-known resources. */
extern const struct kres KRES_PODS, KRES_NODES, KRES_SERVICES, KRES_ENDPOINTS, KRES_EVENTS,
	KRES_NAMESPACES, KRES_CONFIGMAPS, KRES_SECRETS, KRES_REPLICASETS, KRES_DEPLOYMENTS,
	KRES_DAEMONSETS, KRES_LEASES, KRES_PVS, KRES_PVCS, KRES_ENDPOINTSLICES;

/* status: the HTTP status (>= 100), or a negative transport error. body: the
 * parsed answer (an object, or a Status on errors), or NULL. */
typedef void (*kclient_cb)(void *data, int status, json_t *body);

/* server: "http://host:port". */
int kclient_new(uv_loop_t *loop, const char *server, struct kclient **out);
/* Reads server: from a kubeconfig file (the cluster of its current context). */
int kclient_new_from_kubeconfig(uv_loop_t *loop, const char *path, struct kclient **out);
/* Cancels everything outstanding (callbacks run) and frees the client. */
void kclient_close(struct kclient *c);
uv_loop_t *kclient_loop(const struct kclient *c);
/* Times out plain requests (not watches) after ms (default 30000). */
void kclient_set_timeout(struct kclient *c, unsigned ms);

struct kclient_list_opts {
	const char *label_selector;   /* NULL: none */
	const char *field_selector;
	const char *resource_version;
	long limit;
	const char *continue_token;
};

int kclient_get(struct kclient *c, const struct kres *r, const char *ns, const char *name,
		kclient_cb cb, void *data);
int kclient_list(struct kclient *c, const struct kres *r, const char *ns,
		 const struct kclient_list_opts *opts, kclient_cb cb, void *data);
int kclient_create(struct kclient *c, const struct kres *r, const char *ns, json_t *obj,
		   kclient_cb cb, void *data);
/* PUT; subresource NULL or "status", "scale", "binding". */
int kclient_update(struct kclient *c, const struct kres *r, const char *ns, const char *name,
		   const char *subresource, json_t *obj, kclient_cb cb, void *data);
/* patch_type: "application/merge-patch+json", "application/strategic-merge-patch+json",
 * "application/json-patch+json". */
int kclient_patch(struct kclient *c, const struct kres *r, const char *ns, const char *name,
		  const char *subresource, const char *patch_type, json_t *patch,
		  kclient_cb cb, void *data);
/* POST to a subresource (pods/binding, pods/eviction). */
int kclient_post_sub(struct kclient *c, const struct kres *r, const char *ns, const char *name,
		     const char *subresource, json_t *obj, kclient_cb cb, void *data);
/* options: a DeleteOptions object or NULL. */
int kclient_delete(struct kclient *c, const struct kres *r, const char *ns, const char *name,
		   json_t *options, kclient_cb cb, void *data);

enum kclient_event {
	KCLIENT_ADDED, KCLIENT_MODIFIED, KCLIENT_DELETED, KCLIENT_BOOKMARK,
	KCLIENT_ERROR,       /* obj is the Status (410 Expired: relist) */
	KCLIENT_WATCH_END,   /* the stream ended or was stopped; obj NULL */
};
typedef void (*kclient_watch_cb)(void *data, enum kclient_event type, json_t *obj);

/* Watches from resource_version (NULL: now), with bookmarks asked for. */
int kclient_watch(struct kclient *c, const struct kres *r, const char *ns,
		  const struct kclient_list_opts *opts, kclient_watch_cb cb, void *data,
		  struct kclient_watch **out);
void kclient_watch_stop(struct kclient_watch *w);

#endif
