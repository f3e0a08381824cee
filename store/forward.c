/* forward.c — follower-to-leader requests: see forward.h. */
#include "store/forward.h"

#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "lib/http.h"
#include "lib/jsonx.h"

#define FORWARD_CLIENTS 8

struct forwarder {
	uv_loop_t *loop;
	struct {
		char *url;
		struct http_client *client;
	} clients[FORWARD_CLIENTS];
	unsigned next_victim;
};

struct forward_req {
	forward_cb cb;
	void *data;
};

int forwarder_new(uv_loop_t *loop, struct forwarder **out)
{
	struct forwarder *fw = calloc(1, sizeof *fw);
	if (fw == NULL)
		return CAP_ENOMEM;
	fw->loop = loop;
	*out = fw;
	return CAP_OK;
}

void forwarder_close(struct forwarder *fw)
{
	for (int i = 0; i < FORWARD_CLIENTS; i++) {
		if (fw->clients[i].client)
			http_client_close(fw->clients[i].client);
		free(fw->clients[i].url);
	}
	free(fw);
}

static struct http_client *client_for(struct forwarder *fw, const char *url)
{
	int slot = -1;
	for (int i = 0; i < FORWARD_CLIENTS; i++) {
		if (fw->clients[i].url && strcmp(fw->clients[i].url, url) == 0)
			return fw->clients[i].client;
		if (slot < 0 && fw->clients[i].url == NULL)
			slot = i;
	}
	if (slot < 0) {
		/* Members change rarely; evicting round-robin is enough. */
		slot = (int)(fw->next_victim++ % FORWARD_CLIENTS);
		http_client_close(fw->clients[slot].client);
		free(fw->clients[slot].url);
		fw->clients[slot].url = NULL;
		fw->clients[slot].client = NULL;
	}
	if (http_client_new(fw->loop, url, &fw->clients[slot].client) != 0)
		return NULL;
	fw->clients[slot].url = strdup(url);
	return fw->clients[slot].client;
}

static void response_cb(void *data, int status, const char *body, size_t len)
{
	struct forward_req *r = data;
	json_t *answer = NULL;
	json_error_t jerr;
	if (status >= 100 && body != NULL && len > 0)
		answer = jsonx_loadb(body, len, 0, &jerr);
	r->cb(r->data, status, answer);
	json_decref(answer);
	free(r);
}

int forwarder_post(struct forwarder *fw, const char *url, const char *path, json_t *body,
		   unsigned timeout_ms, forward_cb cb, void *data)
{
	struct http_client *c = client_for(fw, url);
	struct forward_req *r;
	char *text;
	int rv;
	if (c == NULL)
		return CAP_EIO;
	text = jsonx_dumps(body, NULL);
	r = calloc(1, sizeof *r);
	if (text == NULL || r == NULL) {
		free(text);
		free(r);
		return CAP_ENOMEM;
	}
	r->cb = cb;
	r->data = data;
	rv = http_client_post(c, path, "application/json", text, strlen(text), timeout_ms,
			      response_cb, r);
	free(text);
	if (rv != 0) {
		free(r);
		return CAP_EIO;
	}
	return CAP_OK;
}
