/* fuzz_proxy_rules.c — libFuzzer target: arbitrary bytes as the Service
 * proxy's input. The first line is a --nodeport-addresses list; the rest,
 * if it parses as JSON, is an array of [Service, Endpoints, [EndpointSlice]]
 * triples. The model and the nftables text built from them must never
 * crash, and the text must never carry a quote, a comment or a statement separator that
 * hostile names or addresses could have smuggled in. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "orchestrator/agent/proxy_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t first = nl ? (size_t)(nl - data) : size;
	char cidrs_in[512], cidrs[1024], err[CAP_ERRMSG_SIZE];
	struct proxy_model m;
	struct proxy_nft_opts o = {.nodeport_cidrs = NULL};
	json_t *pairs, *pair;
	size_t i;
	char *text;

	if (first < sizeof cidrs_in && memchr(data, '\0', first) == NULL) {
		memcpy(cidrs_in, data, first);
		cidrs_in[first] = '\0';
		if (proxy_parse_cidrs(cidrs_in, cidrs, sizeof cidrs, err) == 0)
			o.nodeport_cidrs = cidrs;
	}
	if (nl == NULL)
		return 0;
	pairs = json_loadb((const char *)nl + 1, size - first - 1, JSON_DECODE_ANY, NULL);
	proxy_model_init(&m);
	json_array_foreach(pairs, i, pair) {
		json_t *ep = json_array_get(pair, 1);
		proxy_model_add(&m, json_array_get(pair, 0), json_is_object(ep) ? ep : NULL);
		/* A third element: the Service's EndpointSlices. */
		proxy_model_add_slices(&m, json_array_get(pair, 0), json_array_get(pair, 2));
	}
	proxy_model_sort(&m);
	text = proxy_nft_render(&m, &o);
	if (text != NULL) {
		/* The six base chains' "priority N; policy accept;" are the only
		 * separators; a comment sign would hide the rest of a line. */
		size_t semis = 0;
		for (const char *p = text; *p; p++)
			semis += *p == ';';
		if (semis != 12 || strchr(text, '"') != NULL || strchr(text, '#') != NULL)
			abort();
	}
	free(text);
	proxy_model_free(&m);
	json_decref(pairs);
	return 0;
}
