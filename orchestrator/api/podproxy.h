/* podproxy.h — the API server's pods/log and pods/exec subresources: GET
 * /api/v1/namespaces/<ns>/pods/<name>/log is answered by the node agent of
 * the pod's node (Node.status.addresses InternalIP, daemonEndpoints
 * kubeletEndpoint Port), streamed through as it arrives.
 *
 * The agent endpoint requires "Authorization: Bearer <token>": the token the
 * server keeps in DATA-DIR/agent-token and its agents read from there.
 *
 * Threading: loop thread only. Ownership: the request is answered exactly
 * once (or dropped if the client goes away); the kv is borrowed and must
 * outlive every proxied request. */
#ifndef CAPSTAN_ORCH_PODPROXY_H
#define CAPSTAN_ORCH_PODPROXY_H

#include "lib/http.h"
#include "lib/kv.h"

/* The token sent to agents (copied); NULL sends none. */
void podproxy_set_token(const char *token);
/* Answers GET pods/<name>/log (query: container, follow, tailLines,
 * sinceSeconds, sinceTime, timestamps, previous). */
void podproxy_log(struct http_req *req, struct kv *kv, const char *ns, const char *name);
/* Answers GET or POST pods/<name>/exec (query: command (repeated), stdin,
 * stdout, stderr, tty, container): a websocket upgrade relayed to the
 * agent's /exec/<ns>/<pod>/<container>, which runs the command; 400 for
 * anything but a websocket upgrade. */
void podproxy_exec(struct http_req *req, struct kv *kv, const char *ns, const char *name);

#endif
