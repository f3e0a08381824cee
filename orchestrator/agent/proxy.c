/* proxy.c — the Service proxy: informers on Services and EndpointSlices, a
 * coalescing sync timer, and the two ways of programming the node.
 *
 * Happy path: proxy_start picks the mode and starts the two informers.
 * Every event marks the proxy dirty and arms a 100 ms timer (unless one is
 * armed or a transaction is running), so a burst of endpoint changes makes
 * one sync. Once both informers have listed, a sync builds the model
 * (proxy_rules.h) from the caches; in nftables mode it renders the table
 * and, when the text differs from what was last applied, runs it through
 * libnftables on the thread pool (one atomic transaction); in userspace
 * mode it hands the model to the listeners. The first transaction replaces
 * the table whole; later ones update it in place (proxy_rules.h), so the
 * nat hooks stay registered. Every 60 s the table is applied again even
 * when unchanged, which repairs rules someone flushed.
 *
 * Failure modes: a transaction that fails is logged and retried with
 * back-off (1 s doubling to 30 s). When the very first transaction fails
 * because nftables is unusable here (no permission, no kernel support) and
 * the mode was chosen automatically, the proxy switches to userspace. When
 * the model is empty (no service to proxy) the table is deleted rather
 * than created, so a node without Services carries no rules of ours. */
#include <errno.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/err.h"
#include "lib/log.h"
#include "orchestrator/agent/proxy.h"
#include "orchestrator/agent/proxy_rules.h"
#include "orchestrator/agent/proxy_userspace.h"
#include "orchestrator/kube/informer.h"

#define SYNC_DELAY_MS 100
#define RESYNC_MS 60000
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000

struct nft_job {
	uv_work_t req;
	struct proxy *p;
	char *text;                  /* the ruleset, or NULL: delete the table */
	char *sig;                   /* its whole-table form, to compare syncs */
	char **chains;               /* its per-service chains */
	size_t n_chains;
	int rc;
	char err[512];
};

struct proxy {
	uv_loop_t *loop;
	enum proxy_mode mode;        /* PROXY_NFTABLES or PROXY_USERSPACE */
	bool auto_mode;
	char cidrs[1024];            /* canonical --nodeport-addresses */
	struct informer *svc_inf, *ep_inf;   /* Services, EndpointSlices */
	uv_timer_t timer, resync;
	int open_handles;
	bool dirty, force;
	bool inflight;               /* an nft job is on the thread pool */
	bool applied_once;           /* a transaction has succeeded */
	char *applied;               /* the whole-table text last applied ("" = none) */
	bool table_known;            /* the kernel's table is ours as last applied */
	char **chains;               /* ... with these per-service chains */
	size_t n_chains;
	unsigned retry_ms;
	struct proxy_us *us;
	bool closing;
	void (*close_cb)(void *data);
	void *close_data;
};

static void proxy_schedule(struct proxy *p, unsigned ms);

int proxy_parse_mode(const char *s, enum proxy_mode *out)
{
	if (s == NULL || s[0] == '\0')
		*out = PROXY_AUTO;
	else if (strcmp(s, "nftables") == 0)
		*out = PROXY_NFTABLES;
	else if (strcmp(s, "userspace") == 0)
		*out = PROXY_USERSPACE;
	else if (strcmp(s, "none") == 0)
		*out = PROXY_NONE;
	else
		return -1;
	return 0;
}

const char *proxy_mode_name(const struct proxy *p)
{
	return p->mode == PROXY_NFTABLES ? "nftables" : "userspace";
}

/* ---- the model from the informers' caches ---- */

struct build {
	struct proxy *p;
	struct proxy_model *m;
	json_t *slices;              /* "ns/service" -> [EndpointSlice, ...] */
	bool oom;
};

/* Groups the slices by the Service they belong to (their
 * kubernetes.io/service-name label), as kube-proxy does. */
static void index_slice(void *data, json_t *slice)
{
	struct build *b = data;
	json_t *meta = json_object_get(slice, "metadata"), *list;
	const char *ns = json_string_value(json_object_get(meta, "namespace"));
	const char *svc = json_string_value(
		json_object_get(json_object_get(meta, "labels"), "kubernetes.io/service-name"));
	char key[600];
	if (ns == NULL || svc == NULL)
		return;
	snprintf(key, sizeof key, "%s/%s", ns, svc);
	list = json_object_get(b->slices, key);
	if (list == NULL) {
		list = json_array();
		if (list == NULL || json_object_set_new(b->slices, key, list) != 0) {
			b->oom = true;
			return;
		}
	}
	if (json_array_append(list, slice) != 0)
		b->oom = true;
}

static void add_service(void *data, json_t *svc)
{
	struct build *b = data;
	char key[600];
	json_t *slices = json_object_get(b->slices, informer_key(svc, key, sizeof key));
	if (proxy_model_add_slices(b->m, svc, slices) < 0)
		b->oom = true;
}

/* ---- nftables on the thread pool ---- */

static int nft_run(struct nft_ctx *ctx, const char *cmd, char *err, size_t size)
{
	int rc = nft_run_cmd_from_buffer(ctx, cmd);
	const char *e = nft_ctx_get_error_buffer(ctx);
	snprintf(err, size, "%s", rc != 0 && e != NULL ? e : "");
	return rc;
}

/* Worker thread: its own nft context, nothing shared with the loop but the
 * job. libnftables blocks for the netlink round trips. */
static void nft_work(uv_work_t *req)
{
	struct nft_job *j = req->data;
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (ctx == NULL) {
		j->rc = -1;
		snprintf(j->err, sizeof j->err, "cannot create an nftables context");
		return;
	}
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	if (j->text != NULL) {
		j->rc = nft_run(ctx, j->text, j->err, sizeof j->err);
	} else {
		/* Nothing to proxy: remove our table if an earlier run left one. */
		char ignored[64];
		j->rc = 0;
		if (nft_run(ctx, "list table ip " PROXY_NFT_TABLE, ignored, sizeof ignored) == 0)
			j->rc = nft_run(ctx, "delete table ip " PROXY_NFT_TABLE, j->err,
					sizeof j->err);
	}
	nft_ctx_free(ctx);
}

static void proxy_maybe_free(struct proxy *p);

static void switch_to_userspace(struct proxy *p, const char *why)
{
	log_warn("service proxy: nftables unusable (%s): userspace mode", why);
	p->mode = PROXY_USERSPACE;
	if (proxy_us_new(p->loop, p->cidrs, &p->us) != 0) {
		log_error("service proxy: cannot start the userspace proxy");
		p->us = NULL;
	}
	p->dirty = true;
	proxy_schedule(p, 0);
}

static void nft_after(uv_work_t *req, int status)
{
	struct nft_job *j = req->data;
	struct proxy *p = j->p;
	bool programmed = j->text != NULL;   /* a table, not a deletion */

	p->inflight = false;
	free(j->text);
	if (p->closing) {
		free(j->sig);
		proxy_nft_chains_free(j->chains, j->n_chains);
		free(j);
		proxy_maybe_free(p);
		return;
	}
	if (status == 0 && j->rc == 0) {
		if (!p->applied_once || !programmed != (p->applied == NULL || !p->applied[0]))
			log_info("service proxy: %s", programmed ? "table ip " PROXY_NFT_TABLE
								   " programmed" : "no services: no table");
		free(p->applied);
		p->applied = j->sig != NULL ? j->sig : strdup("");
		proxy_nft_chains_free(p->chains, p->n_chains);
		p->chains = j->chains;
		p->n_chains = j->n_chains;
		p->table_known = programmed;
		p->applied_once = true;
		p->retry_ms = 0;
		if (p->dirty)
			proxy_schedule(p, SYNC_DELAY_MS);
	} else {
		free(j->sig);
		proxy_nft_chains_free(j->chains, j->n_chains);
		/* Whatever the kernel holds now, the next try replaces it whole. */
		p->table_known = false;
		/* The first transaction tells whether nftables works here at all. */
		if (!p->applied_once && p->auto_mode &&
		    (strstr(j->err, "Operation not permitted") != NULL ||
		     strstr(j->err, "not supported") != NULL ||
		     strstr(j->err, "No such file or directory") != NULL ||
		     strstr(j->err, "nftables context") != NULL)) {
			switch_to_userspace(p, j->err);
			free(j);
			return;
		}
		p->retry_ms = p->retry_ms ? p->retry_ms * 2 : RETRY_MIN_MS;
		if (p->retry_ms > RETRY_MAX_MS)
			p->retry_ms = RETRY_MAX_MS;
		log_error("service proxy: nft transaction failed (retry in %u ms): %s", p->retry_ms,
			  j->err);
		p->dirty = p->force = true;
		proxy_schedule(p, p->retry_ms);
	}
	free(j);
}

/* ---- sync ---- */

static void proxy_sync(struct proxy *p)
{
	struct proxy_model m;
	struct build b = {.p = p, .m = &m};
	struct proxy_nft_opts o = {.nodeport_cidrs = p->cidrs, .update = p->table_known,
				   .prev_chains = p->chains, .n_prev = p->n_chains};
	struct proxy_nft_opts whole = {.nodeport_cidrs = p->cidrs};
	struct nft_job *j;
	char *text = NULL, *sig = NULL, **chains = NULL;
	size_t n_chains = 0;

	if (!informer_synced(p->svc_inf) || !informer_synced(p->ep_inf)) {
		proxy_schedule(p, SYNC_DELAY_MS);
		return;
	}
	proxy_model_init(&m);
	b.slices = json_object();
	if (b.slices == NULL)
		goto err_retry;
	informer_foreach(p->ep_inf, index_slice, &b);
	informer_foreach(p->svc_inf, add_service, &b);
	json_decref(b.slices);
	if (b.oom)
		goto err_retry;
	proxy_model_sort(&m);
	if (p->mode == PROXY_USERSPACE) {
		if (p->us != NULL)
			proxy_us_update(p->us, &m);
		p->dirty = p->force = false;
		proxy_model_free(&m);
		return;
	}
	if (m.n > 0 && ((sig = proxy_nft_render(&m, &whole)) == NULL ||
			(text = proxy_nft_render(&m, &o)) == NULL ||
			proxy_nft_chains(&m, &chains, &n_chains) != 0))
		goto err_texts;
	proxy_model_free(&m);
	if (!p->force && p->applied_once &&
	    strcmp(sig ? sig : "", p->applied ? p->applied : "") == 0) {
		free(text);
		free(sig);
		proxy_nft_chains_free(chains, n_chains);
		p->dirty = false;
		return;
	}
	j = calloc(1, sizeof *j);
	if (j == NULL)
		goto err_texts_nomodel;
	j->p = p;
	j->text = text;
	j->sig = sig;
	j->chains = chains;
	j->n_chains = n_chains;
	j->req.data = j;
	if (uv_queue_work(p->loop, &j->req, nft_work, nft_after) != 0) {
		free(j);
		goto err_texts_nomodel;
	}
	p->inflight = true;
	p->dirty = p->force = false;
	return;

err_texts:
	proxy_model_free(&m);
err_texts_nomodel:
	free(text);
	free(sig);
	proxy_nft_chains_free(chains, n_chains);
	goto err_retry_nomodel;
err_retry:
	proxy_model_free(&m);
err_retry_nomodel:
	log_error("service proxy: out of memory; retrying");
	proxy_schedule(p, RETRY_MIN_MS);
}

static void on_timer(uv_timer_t *t)
{
	struct proxy *p = t->data;
	if (p->inflight)
		return;   /* nft_after schedules again when dirty */
	proxy_sync(p);
}

static void proxy_schedule(struct proxy *p, unsigned ms)
{
	if (p->closing || p->inflight)
		return;
	/* An armed timer already covers this change: coalesce. A retry or a
	 * mode switch may move it (0 ms) but never postpones it. */
	if (uv_is_active((uv_handle_t *)&p->timer) && ms >= uv_timer_get_due_in(&p->timer))
		return;
	uv_timer_start(&p->timer, on_timer, ms, 0);
}

static void on_resync(uv_timer_t *t)
{
	struct proxy *p = t->data;
	p->dirty = p->force = true;
	proxy_schedule(p, 0);
}

static void mark_dirty(struct proxy *p)
{
	p->dirty = true;
	proxy_schedule(p, SYNC_DELAY_MS);
}

static void on_add(void *data, json_t *obj)
{
	mark_dirty(data);
}

static void on_update(void *data, json_t *old, json_t *obj)
{
	mark_dirty(data);
}

static void on_delete(void *data, json_t *obj)
{
	mark_dirty(data);
}

/* ---- lifecycle ---- */

int proxy_start(uv_loop_t *loop, struct kclient *kc, const struct proxy_config *cfg,
		struct proxy **out, char *errmsg)
{
	struct proxy *p;
	struct informer_handlers h = {on_add, on_update, on_delete, NULL};
	const char *why;

	*out = NULL;
	if (cfg->mode == PROXY_NONE) {
		log_info("service proxy: off (--proxy-mode=none)");
		return 0;
	}
	p = calloc(1, sizeof *p);
	if (p == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		return -1;
	}
	p->loop = loop;
	if (proxy_parse_cidrs(cfg->nodeport_addresses, p->cidrs, sizeof p->cidrs, errmsg) != 0) {
		cap_errmsg_wrapf(errmsg, "--nodeport-addresses");
		goto err_free;
	}
	p->auto_mode = cfg->mode == PROXY_AUTO;
	if (cfg->mode == PROXY_AUTO) {
		p->mode = geteuid() == 0 ? PROXY_NFTABLES : PROXY_USERSPACE;
		why = geteuid() == 0 ? "running as root" : "not root: no kernel rules";
	} else {
		p->mode = cfg->mode;
		why = "--proxy-mode";
	}
	if (p->mode == PROXY_USERSPACE && proxy_us_new(loop, p->cidrs, &p->us) != 0) {
		cap_errmsg_printf(errmsg, "cannot start the userspace proxy");
		goto err_free;
	}
	h.data = p;
	if (informer_new(kc, &KRES_SERVICES, NULL, NULL, NULL, 0, &p->svc_inf) != 0 ||
	    informer_add_handlers(p->svc_inf, &h) != 0 ||
	    informer_new(kc, &KRES_ENDPOINTSLICES, NULL, NULL, NULL, 0, &p->ep_inf) != 0 ||
	    informer_add_handlers(p->ep_inf, &h) != 0 || informer_start(p->svc_inf) != 0 ||
	    informer_start(p->ep_inf) != 0) {
		cap_errmsg_printf(errmsg, "cannot start the Service and EndpointSlice informers");
		goto err_informers;
	}
	uv_timer_init(loop, &p->timer);
	uv_timer_init(loop, &p->resync);
	p->timer.data = p->resync.data = p;
	p->open_handles = 2;
	uv_timer_start(&p->resync, on_resync, RESYNC_MS, RESYNC_MS);
	p->dirty = true;
	proxy_schedule(p, SYNC_DELAY_MS);
	log_info("service proxy: %s mode (%s)%s%s", proxy_mode_name(p), why,
		 p->cidrs[0] ? "; nodePorts on " : "", p->cidrs);
	*out = p;
	return 0;

err_informers:
	if (p->svc_inf != NULL)
		informer_stop(p->svc_inf);
	if (p->ep_inf != NULL)
		informer_stop(p->ep_inf);
	if (p->us != NULL)
		proxy_us_close(p->us, NULL, NULL);
err_free:
	free(p);
	return -1;
}

static void proxy_maybe_free(struct proxy *p)
{
	if (p->open_handles > 0 || p->inflight)
		return;
	if (p->close_cb != NULL)
		p->close_cb(p->close_data);
	free(p->applied);
	proxy_nft_chains_free(p->chains, p->n_chains);
	free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct proxy *p = h->data;
	p->open_handles--;
	proxy_maybe_free(p);
}

static void on_us_closed(void *data)
{
	struct proxy *p = data;
	p->open_handles--;
	proxy_maybe_free(p);
}

void proxy_close(struct proxy *p, void (*cb)(void *data), void *data)
{
	p->closing = true;
	p->close_cb = cb;
	p->close_data = data;
	informer_stop(p->svc_inf);
	informer_stop(p->ep_inf);
	p->svc_inf = p->ep_inf = NULL;
	if (p->us != NULL) {
		p->open_handles++;
		proxy_us_close(p->us, on_us_closed, p);
		p->us = NULL;
	}
	uv_close((uv_handle_t *)&p->timer, on_handle_closed);
	uv_close((uv_handle_t *)&p->resync, on_handle_closed);
}
