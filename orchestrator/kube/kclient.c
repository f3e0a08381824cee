/* kclient.c — the Kubernetes REST client of kclient.h over lib/http's
 * keep-alive pool: paths from resource descriptions, JSON bodies, watch
 * streams split into lines of {"type","object"}.
 *
 * Happy path: a request becomes one pooled HTTP call → the answer is parsed
 * as JSON → the callback gets the status and the object (or a Status).
 * A watch is a GET ?watch=1 on a connection of its own; every complete line
 * of the chunked answer is one event.
 *
 * Failure modes: transport errors reach the callback as a negative status
 * (HTTP_CLIENT_E*) with a NULL body; an answer that is not JSON gives a NULL
 * body with its HTTP status; a watch refused by the server (e.g. 410 Gone)
 * gives one KCLIENT_ERROR with the Status, then KCLIENT_WATCH_END; a watch
 * whose stream breaks or ends gives KCLIENT_WATCH_END, and the caller decides
 * whether to resume from its last resourceVersion or relist. */
#include "orchestrator/kube/kclient.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http.h"
#include "lib/log.h"

#define KCLIENT_PATH_MAX 2048
#define KCLIENT_DEFAULT_TIMEOUT_MS 30000

const struct kres KRES_PODS = {"", "v1", "pods"};
const struct kres KRES_NODES = {"", "v1", "nodes"};
const struct kres KRES_SERVICES = {"", "v1", "services"};
const struct kres KRES_ENDPOINTS = {"", "v1", "endpoints"};
const struct kres KRES_EVENTS = {"", "v1", "events"};
const struct kres KRES_NAMESPACES = {"", "v1", "namespaces"};
const struct kres KRES_CONFIGMAPS = {"", "v1", "configmaps"};
const struct kres KRES_SECRETS = {"", "v1", "secrets"};
const struct kres KRES_REPLICASETS = {"apps", "v1", "replicasets"};
const struct kres KRES_DEPLOYMENTS = {"apps", "v1", "deployments"};
const struct kres KRES_DAEMONSETS = {"apps", "v1", "daemonsets"};
const struct kres KRES_LEASES = {"coordination.k8s.io", "v1", "leases"};
const struct kres KRES_PVS = {"", "v1", "persistentvolumes"};
const struct kres KRES_PVCS = {"", "v1", "persistentvolumeclaims"};
const struct kres KRES_ENDPOINTSLICES = {"discovery.k8s.io", "v1", "endpointslices"};

struct kclient {
	uv_loop_t *loop;
	struct http_client *http;
	unsigned timeout_ms;
	bool closing;
};

struct kcall {
	kclient_cb cb;
	void *data;
};

struct kclient_watch {
	struct kclient *client;
	struct http_call *call;
	kclient_watch_cb cb;
	void *data;
	char *buf;              /* bytes of an incomplete line */
	size_t len;
	size_t cap;
	int depth;              /* > 0 while events are being delivered */
	bool ended;             /* the HTTP call is done: end after delivering */
	bool stopped;           /* no more events but WATCH_END */
	bool got_error;         /* a KCLIENT_ERROR was delivered */
};

int kclient_new(uv_loop_t *loop, const char *server, struct kclient **out)
{
	struct kclient *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return -1;
	c->loop = loop;
	c->timeout_ms = KCLIENT_DEFAULT_TIMEOUT_MS;
	if (http_client_new(loop, server, &c->http) != 0) {
		free(c);
		return -1;
	}
	*out = c;
	return 0;
}

/* The server: line of the first cluster in a kubeconfig written by
 * capstan-server or kubectl (one cluster, plain http). */
int kclient_new_from_kubeconfig(uv_loop_t *loop, const char *path, struct kclient **out)
{
	char line[1024], server[1024] = "";
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL) {
		char *p = strstr(line, "server:");
		size_t n;

		if (p == NULL)
			continue;
		p += strlen("server:");
		p += strspn(p, " \t\"'");
		n = strcspn(p, " \t\"'\r\n");
		if (n == 0 || n >= sizeof server)
			continue;
		memcpy(server, p, n);
		server[n] = '\0';
		break;
	}
	fclose(f);
	if (server[0] == '\0')
		return -1;
	return kclient_new(loop, server, out);
}

void kclient_close(struct kclient *c)
{
	if (c == NULL)
		return;
	c->closing = true;
	/* Runs every outstanding callback (ECANCELED) before returning. */
	http_client_close(c->http);
	free(c);
}

uv_loop_t *kclient_loop(const struct kclient *c)
{
	return c->loop;
}

void kclient_set_timeout(struct kclient *c, unsigned ms)
{
	c->timeout_ms = ms;
}

/* ---- paths ---- */

static void url_escape(char *out, size_t size, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *s != '\0' && n + 4 < size; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			out[n++] = (char)ch;
		} else {
			out[n++] = '%';
			out[n++] = hex[ch >> 4];
			out[n++] = hex[ch & 15];
		}
	}
	out[n] = '\0';
}

static int build_path(char *out, size_t size, const struct kres *r, const char *ns,
		      const char *name, const char *sub)
{
	int n;

	if (r->group == NULL || r->group[0] == '\0')
		n = snprintf(out, size, "/api/%s", r->version);
	else
		n = snprintf(out, size, "/apis/%s/%s", r->group, r->version);
	if (ns != NULL && ns[0] != '\0')
		n += snprintf(out + n, size - (size_t)n, "/namespaces/%s", ns);
	n += snprintf(out + n, size - (size_t)n, "/%s", r->resource);
	if (name != NULL && name[0] != '\0')
		n += snprintf(out + n, size - (size_t)n, "/%s", name);
	if (sub != NULL && sub[0] != '\0')
		n += snprintf(out + n, size - (size_t)n, "/%s", sub);
	return n > 0 && (size_t)n < size ? 0 : -1;
}

static void add_param(char *out, size_t size, const char *name, const char *value)
{
	char esc[1024];
	size_t n = strlen(out);

	if (value == NULL || value[0] == '\0')
		return;
	url_escape(esc, sizeof esc, value);
	snprintf(out + n, size - n, "%c%s=%s", strchr(out, '?') ? '&' : '?', name, esc);
}

static int build_list_path(char *out, size_t size, const struct kres *r, const char *ns,
			   const struct kclient_list_opts *o, bool watch)
{
	char num[32];

	if (build_path(out, size, r, ns, NULL, NULL) != 0)
		return -1;
	if (watch) {
		add_param(out, size, "watch", "1");
		add_param(out, size, "allowWatchBookmarks", "true");
	}
	if (o == NULL)
		return 0;
	add_param(out, size, "labelSelector", o->label_selector);
	add_param(out, size, "fieldSelector", o->field_selector);
	add_param(out, size, "resourceVersion", o->resource_version);
	if (o->limit > 0 && !watch) {
		snprintf(num, sizeof num, "%ld", o->limit);
		add_param(out, size, "limit", num);
	}
	if (!watch)
		add_param(out, size, "continue", o->continue_token);
	return strlen(out) + 1 < size ? 0 : -1;
}

/* ---- plain requests ---- */

static void on_response(void *data, int status, const char *body, size_t len)
{
	struct kcall *k = data;
	json_t *obj = NULL;

	if (status >= 100 && len > 0)
		obj = json_loadb(body, len, 0, NULL);
	k->cb(k->data, status, obj);
	json_decref(obj);
	free(k);
}

static int request(struct kclient *c, const char *method, const char *path,
		   const char *content_type, json_t *body, kclient_cb cb, void *data)
{
	struct kcall *k;
	char *text = NULL;
	size_t len = 0;
	int rv;

	if (c->closing || cb == NULL)
		return -1;
	k = malloc(sizeof(*k));
	if (k == NULL)
		return -1;
	k->cb = cb;
	k->data = data;
	if (body != NULL) {
		text = json_dumps(body, JSON_COMPACT);
		if (text == NULL) {
			free(k);
			return -1;
		}
		len = strlen(text);
	}
	rv = http_client_request(c->http, method, path, content_type, text, len,
				 c->timeout_ms, on_response, k);
	free(text);
	if (rv != 0) {
		free(k);
		return -1;
	}
	return 0;
}

int kclient_get(struct kclient *c, const struct kres *r, const char *ns, const char *name,
		kclient_cb cb, void *data)
{
	char path[KCLIENT_PATH_MAX];

	if (build_path(path, sizeof path, r, ns, name, NULL) != 0)
		return -1;
	return request(c, "GET", path, NULL, NULL, cb, data);
}

int kclient_list(struct kclient *c, const struct kres *r, const char *ns,
		 const struct kclient_list_opts *opts, kclient_cb cb, void *data)
{
	char path[KCLIENT_PATH_MAX];

	if (build_list_path(path, sizeof path, r, ns, opts, false) != 0)
		return -1;
	return request(c, "GET", path, NULL, NULL, cb, data);
}

int kclient_create(struct kclient *c, const struct kres *r, const char *ns, json_t *obj,
		   kclient_cb cb, void *data)
{
	char path[KCLIENT_PATH_MAX];

	if (build_path(path, sizeof path, r, ns, NULL, NULL) != 0)
		return -1;
	return request(c, "POST", path, "application/json", obj, cb, data);
}

int kclient_update(struct kclient *c, const struct kres *r, const char *ns, const char *name,
		   const char *subresource, json_t *obj, kclient_cb cb, void *data)
{
	char path[KCLIENT_PATH_MAX];

	if (name == NULL || build_path(path, sizeof path, r, ns, name, subresource) != 0)
		return -1;
	return request(c, "PUT", path, "application/json", obj, cb, data);
}

int kclient_patch(struct kclient *c, const struct kres *r, const char *ns, const char *name,
		  const char *subresource, const char *patch_type, json_t *patch,
		  kclient_cb cb, void *data)
{
	char path[KCLIENT_PATH_MAX];

	if (name == NULL || patch_type == NULL ||
	    build_path(path, sizeof path, r, ns, name, subresource) != 0)
		return -1;
	return request(c, "PATCH", path, patch_type, patch, cb, data);
}

int kclient_post_sub(struct kclient *c, const struct kres *r, const char *ns, const char *name,
		     const char *subresource, json_t *obj, kclient_cb cb, void *data)
{
	char path[KCLIENT_PATH_MAX];

	if (name == NULL || subresource == NULL ||
	    build_path(path, sizeof path, r, ns, name, subresource) != 0)
		return -1;
	return request(c, "POST", path, "application/json", obj, cb, data);
}

int kclient_delete(struct kclient *c, const struct kres *r, const char *ns, const char *name,
		   json_t *options, kclient_cb cb, void *data)
{
	char path[KCLIENT_PATH_MAX];

	if (name == NULL || build_path(path, sizeof path, r, ns, name, NULL) != 0)
		return -1;
	return request(c, "DELETE", path, options ? "application/json" : NULL, options, cb, data);
}

/* ---- watches ---- */

static enum kclient_event event_type(const char *t)
{
	if (t == NULL)
		return KCLIENT_ERROR;
	if (strcmp(t, "ADDED") == 0)
		return KCLIENT_ADDED;
	if (strcmp(t, "MODIFIED") == 0)
		return KCLIENT_MODIFIED;
	if (strcmp(t, "DELETED") == 0)
		return KCLIENT_DELETED;
	if (strcmp(t, "BOOKMARK") == 0)
		return KCLIENT_BOOKMARK;
	return KCLIENT_ERROR;
}

static void watch_finish(struct kclient_watch *w)
{
	w->cb(w->data, KCLIENT_WATCH_END, NULL);
	free(w->buf);
	free(w);
}

/* One line: an event, or (on a refused watch) the Status itself. */
static void watch_line(struct kclient_watch *w, const char *line, size_t len)
{
	json_t *ev;
	const char *type;
	json_t *obj;

	if (len == 0)
		return;
	ev = json_loadb(line, len, 0, NULL);
	if (ev == NULL) {
		log_warn("kclient: undecodable watch line (%zu bytes)", len);
		return;
	}
	type = json_string_value(json_object_get(ev, "type"));
	obj = json_object_get(ev, "object");
	if (type == NULL && json_object_get(ev, "kind") != NULL) {
		/* A Status answered instead of a stream. */
		w->got_error = true;
		w->cb(w->data, KCLIENT_ERROR, ev);
	} else if (obj != NULL) {
		enum kclient_event t = event_type(type);

		if (t == KCLIENT_ERROR)
			w->got_error = true;
		w->cb(w->data, t, obj);
	}
	json_decref(ev);
}

static void watch_chunk(void *data, const char *bytes, size_t len)
{
	struct kclient_watch *w = data;
	size_t start = 0;

	if (w->stopped)
		return;
	if (w->len + len + 1 > w->cap) {
		size_t cap = (w->len + len + 1) * 2;
		char *p = realloc(w->buf, cap);

		if (p == NULL) {
			log_error("kclient: out of memory in a watch");
			return;
		}
		w->buf = p;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, bytes, len);
	w->len += len;
	w->depth++;
	for (size_t i = 0; i < w->len && !w->stopped; i++) {
		if (w->buf[i] != '\n')
			continue;
		watch_line(w, w->buf + start, i - start);
		start = i + 1;
	}
	w->depth--;
	if (w->stopped) {
		w->len = 0;
	} else {
		memmove(w->buf, w->buf + start, w->len - start);
		w->len -= start;
	}
	if (w->ended && w->depth == 0)
		watch_finish(w);
}

static void watch_done(void *data, int status, const char *body, size_t len)
{
	struct kclient_watch *w = data;

	(void)body;
	(void)len;
	w->call = NULL;
	if (!w->stopped && w->len > 0 && w->depth == 0) {
		/* A last line without newline: a Status body of a refused watch. */
		w->depth++;
		watch_line(w, w->buf, w->len);
		w->depth--;
		w->len = 0;
	}
	if (!w->stopped && status != 200 && !w->got_error && status >= 100) {
		json_t *st = json_pack("{s:s, s:s, s:s, s:i}", "kind", "Status", "status",
				       "Failure", "message", "watch refused", "code", status);

		w->cb(w->data, KCLIENT_ERROR, st);
		json_decref(st);
	}
	w->stopped = true;
	if (w->depth > 0) {
		w->ended = true;    /* cancelled from inside an event */
		return;
	}
	watch_finish(w);
}

int kclient_watch(struct kclient *c, const struct kres *r, const char *ns,
		  const struct kclient_list_opts *opts, kclient_watch_cb cb, void *data,
		  struct kclient_watch **out)
{
	char path[KCLIENT_PATH_MAX];
	struct kclient_watch *w;

	if (c->closing || cb == NULL ||
	    build_list_path(path, sizeof path, r, ns, opts, true) != 0)
		return -1;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->client = c;
	w->cb = cb;
	w->data = data;
	if (http_client_stream_method(c->http, "GET", path, NULL, 0, watch_chunk, watch_done,
				      w, &w->call) != 0) {
		free(w);
		return -1;
	}
	if (out != NULL)
		*out = w;
	return 0;
}

void kclient_watch_stop(struct kclient_watch *w)
{
	if (w->stopped)
		return;
	w->stopped = true;
	if (w->call != NULL)
		http_call_cancel(w->call);   /* watch_done runs now */
}
