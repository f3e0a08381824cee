/* proxy_sync.c — how long one Service proxy sync takes at a given number
 * of Services (NodePort, three endpoints each): rendering the nftables
 * table (on the agent's loop thread) and applying it through libnftables
 * (on the thread pool), both the first sync (whole-table replace) and a
 * later one (in-place update after one endpoint went away).
 *
 * It runs in a network namespace of its own (unshare), so it never touches
 * the host's rules; that needs root. Usage: bench/proxy-sync [N ...]
 * (default 10 100 1000). */
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orchestrator/agent/proxy_rules.h"

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int build(struct proxy_model *m, int n)
{
	proxy_model_init(m);
	for (int i = 0; i < n; i++) {
		char s[512], e[512];
		json_t *sj, *ej;
		snprintf(s, sizeof s,
			 "{\"metadata\":{\"namespace\":\"default\",\"name\":\"svc%d\"},\"spec\":{"
			 "\"type\":\"NodePort\",\"clusterIP\":\"10.96.%d.%d\",\"ports\":[{\"port\":80,"
			 "\"nodePort\":%d}]}}", i, i / 250, i % 250 + 1, 30000 + i % 2768);
		snprintf(e, sizeof e,
			 "[{\"addressType\":\"IPv4\",\"ports\":[{\"port\":8080}],\"endpoints\":["
			 "{\"addresses\":[\"10.%d.%d.1\"]},{\"addresses\":[\"10.%d.%d.2\"]},"
			 "{\"addresses\":[\"10.%d.%d.3\"]}]}]", 100 + i / 256, i % 256, 100 + i / 256,
			 i % 256, 100 + i / 256, i % 256);
		sj = json_loads(s, 0, NULL);
		ej = json_loads(e, 0, NULL);
		if (sj == NULL || ej == NULL || proxy_model_add_slices(m, sj, ej) < 0)
			return -1;
		json_decref(sj);
		json_decref(ej);
	}
	proxy_model_sort(m);
	return 0;
}

static int run(struct nft_ctx *c, int n)
{
	struct proxy_model a, b;
	char **chains, *full, *up;
	size_t nc;
	double t0, t1, t2, t3, t4, t5;
	int rc;

	if (build(&a, n) != 0 || build(&b, n) != 0)
		return -1;
	b.v[n / 2].n_eps = 2;    /* one endpoint went away */
	t0 = now_ms();
	full = proxy_nft_render(&a, NULL);
	t1 = now_ms();
	rc = nft_run_cmd_from_buffer(c, full);
	t2 = now_ms();
	if (rc != 0 || proxy_nft_chains(&a, &chains, &nc) != 0)
		return -1;
	struct proxy_nft_opts u = {.update = true, .prev_chains = chains, .n_prev = nc};
	t3 = now_ms();
	up = proxy_nft_render(&b, &u);
	t4 = now_ms();
	rc = nft_run_cmd_from_buffer(c, up);
	t5 = now_ms();
	if (rc != 0)
		return -1;
	printf("| %5d | %6zu | %7.1f | %7.1f | %7.1f | %7.1f |\n", n, strlen(full) / 1024,
	       t1 - t0, t2 - t1, t4 - t3, t5 - t4);
	free(full);
	free(up);
	proxy_nft_chains_free(chains, nc);
	proxy_model_free(&a);
	proxy_model_free(&b);
	return nft_run_cmd_from_buffer(c, "delete table ip " PROXY_NFT_TABLE);
}

int main(int argc, char **argv)
{
	static const int defaults[] = {10, 100, 1000};
	struct nft_ctx *c;

	if (unshare(CLONE_NEWNET) != 0) {
		perror("proxy-sync: unshare(CLONE_NEWNET) (run as root)");
		return 1;
	}
	c = nft_ctx_new(NFT_CTX_DEFAULT);
	if (c == NULL)
		return 1;
	nft_ctx_buffer_output(c);
	nft_ctx_buffer_error(c);
	printf("| services | table KiB | first render ms | first apply ms | update render ms | update apply ms |\n"
	       "|---|---|---|---|---|---|\n");
	for (int i = 1; i < argc || (argc == 1 && i <= 3); i++) {
		int n = argc > 1 ? atoi(argv[i]) : defaults[i - 1];
		if (n < 2 || n > 60000 || run(c, n) != 0) {
			fprintf(stderr, "proxy-sync: %d services failed: %s\n", n,
				nft_ctx_get_error_buffer(c));
			return 1;
		}
	}
	nft_ctx_free(c);
	return 0;
}
