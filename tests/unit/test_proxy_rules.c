/* test_proxy_rules.c — the Service proxy's model and nftables text: from
 * Service and Endpoints objects to the rules a connection would traverse
 * (which address and port lead where, what is rejected, what is
 * masqueraded), and what hostile input cannot inject. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/err.h"
#include "orchestrator/agent/proxy_rules.h"

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (j == NULL)
		fail_msg("bad test JSON: %s", e.text);
	return j;
}

/* Renders the table for one service and its endpoints (ep may be NULL). */
static char *render1(const char *svc, const char *ep, const char *cidrs, int *added)
{
	struct proxy_model m;
	struct proxy_nft_opts o = {.nodeport_cidrs = cidrs};
	json_t *s = parse(svc), *e = ep ? parse(ep) : NULL;
	char *text;
	proxy_model_init(&m);
	*added = proxy_model_add(&m, s, e);
	proxy_model_sort(&m);
	text = proxy_nft_render(&m, &o);
	proxy_model_free(&m);
	json_decref(s);
	json_decref(e);
	assert_non_null(text);
	return text;
}

/* The body of the chain whose name contains part (malloc'd), or NULL. */
static char *chain_body(const char *text, const char *part)
{
	const char *p = text;
	while ((p = strstr(p, "\tchain ")) != NULL) {
		const char *eol = strchr(p, '\n'), *end;
		p += 7;
		if (eol == NULL)
			return NULL;
		if (memmem(p, (size_t)(eol - p), part, strlen(part)) == NULL)
			continue;
		end = strstr(eol, "\n\t}");
		return end ? strndup(eol + 1, (size_t)(end - eol - 1)) : NULL;
	}
	return NULL;
}

/* The chain a map element "<match> : goto <chain>" leads to (static buffer). */
static const char *goto_target(const char *text, const char *match)
{
	static char name[300];
	const char *p = strstr(text, match), *g, *end;
	if (p == NULL)
		return NULL;
	g = strstr(p, ": goto ");
	if (g == NULL)
		return NULL;
	g += 7;
	end = g + strcspn(g, ",\n ");
	snprintf(name, sizeof name, "%.*s", (int)(end - g), g);
	return name;
}

static size_t count(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

#define WEB_SVC                                                                              \
	"{\"metadata\":{\"namespace\":\"default\",\"name\":\"web\"},"                        \
	"\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"10.96.0.10\","                      \
	"\"ports\":[{\"port\":80,\"protocol\":\"TCP\",\"targetPort\":8080}]}}"
#define WEB_EP                                                                               \
	"{\"metadata\":{\"namespace\":\"default\",\"name\":\"web\"},\"subsets\":[{"            \
	"\"addresses\":[{\"ip\":\"10.244.0.7\"},{\"ip\":\"10.244.0.5\"},{\"ip\":\"10.244.1.9\"}]," \
	"\"notReadyAddresses\":[{\"ip\":\"10.244.0.66\"}],"                                    \
	"\"ports\":[{\"port\":8080,\"protocol\":\"TCP\"}]}]}"

/* clusterIP:port leads to a chain that picks one of the three ready
 * endpoints at random and DNATs to endpointIP:targetPort. */
static void test_cluster_ip_spreads_over_ready_endpoints(void **state)
{
	int added;
	char *text = render1(WEB_SVC, WEB_EP, NULL, &added), *body;
	const char *svc;
	(void)state;
	assert_int_equal(added, 1);
	svc = goto_target(text, "10.96.0.10 . tcp . 80 : goto ");
	assert_non_null(svc);
	body = chain_body(text, svc);
	assert_non_null(body);
	assert_non_null(strstr(body, "numgen random mod 3 vmap"));
	assert_int_equal(count(body, ": goto ep-"), 3);
	free(body);
	assert_non_null(strstr(text, "dnat to 10.244.0.5:8080"));
	assert_non_null(strstr(text, "dnat to 10.244.0.7:8080"));
	assert_non_null(strstr(text, "dnat to 10.244.1.9:8080"));
	/* Hooks for pods (prerouting) and node processes (output). */
	assert_non_null(strstr(text, "type nat hook prerouting priority -100;"));
	assert_non_null(strstr(text, "type nat hook output priority -100;"));
	/* One atomic whole-table replace. */
	assert_true(strncmp(text, "add table ip capstan\ndelete table ip capstan\n", 44) == 0);
	free(text);
}

/* A not-ready endpoint gets no traffic. */
static void test_not_ready_excluded(void **state)
{
	int added;
	char *text = render1(WEB_SVC, WEB_EP, NULL, &added);
	(void)state;
	assert_null(strstr(text, "10.244.0.66"));
	free(text);
}

/* A service whose endpoints are all not ready (or that has none yet) is
 * rejected instead of being DNATed anywhere. */
static void test_no_ready_endpoint_rejects(void **state)
{
	int added;
	char *text = render1(WEB_SVC,
			     "{\"metadata\":{\"namespace\":\"default\",\"name\":\"web\"},\"subsets\":[{"
			     "\"notReadyAddresses\":[{\"ip\":\"10.244.0.66\"}],"
			     "\"ports\":[{\"port\":8080,\"protocol\":\"TCP\"}]}]}",
			     NULL, &added);
	char *noep = chain_body(text, "service-endpoints-check");
	(void)state;
	assert_int_equal(added, 1);
	assert_string_equal(goto_target(text, "10.96.0.10 . tcp . 80 : goto "), "reject-chain");
	assert_null(strstr(text, "dnat to"));
	assert_non_null(noep);
	assert_non_null(strstr(noep, "vmap @no-endpoint-services"));
	assert_non_null(strstr(text, "reject with tcp reset"));
	free(noep);
	free(text);
	text = render1(WEB_SVC, NULL, NULL, &added);
	assert_string_equal(goto_target(text, "10.96.0.10 . tcp . 80 : goto "), "reject-chain");
	free(text);
}

/* Named target ports: each service port reaches the endpoint port of the
 * same name, which the Endpoints controller resolved per pod. */
static void test_named_ports(void **state)
{
	int added;
	char *text = render1(
		"{\"metadata\":{\"namespace\":\"shop\",\"name\":\"api\"},"
		"\"spec\":{\"clusterIP\":\"10.96.3.4\",\"ports\":["
		"{\"name\":\"http\",\"port\":80,\"targetPort\":\"web\"},"
		"{\"name\":\"metrics\",\"port\":9090,\"targetPort\":\"prom\"}]}}",
		"{\"metadata\":{\"namespace\":\"shop\",\"name\":\"api\"},\"subsets\":[{"
		"\"addresses\":[{\"ip\":\"10.244.2.2\"}],"
		"\"ports\":[{\"name\":\"metrics\",\"port\":9100,\"protocol\":\"TCP\"},"
		"{\"name\":\"http\",\"port\":8081,\"protocol\":\"TCP\"}]}]}",
		NULL, &added);
	char *http, *metrics, *ep;
	(void)state;
	assert_int_equal(added, 2);
	http = chain_body(text, goto_target(text, "10.96.3.4 . tcp . 80 : goto "));
	metrics = chain_body(text, goto_target(text, "10.96.3.4 . tcp . 9090 : goto "));
	assert_non_null(http);
	assert_non_null(metrics);
	ep = chain_body(text, goto_target(http, "0 : goto "));
	assert_non_null(strstr(ep, "dnat to 10.244.2.2:8081"));
	free(ep);
	ep = chain_body(text, goto_target(metrics, "0 : goto "));
	assert_non_null(strstr(ep, "dnat to 10.244.2.2:9100"));
	free(ep);
	free(http);
	free(metrics);
	free(text);
}

/* A nodePort on any local address but loopback leads, through a chain that marks the
 * connection for masquerade, to the service's endpoints. */
static void test_node_port(void **state)
{
	int added;
	char *text = render1(
		"{\"metadata\":{\"namespace\":\"default\",\"name\":\"web\"},"
		"\"spec\":{\"type\":\"NodePort\",\"clusterIP\":\"10.96.0.10\","
		"\"ports\":[{\"port\":80,\"nodePort\":30080,\"protocol\":\"TCP\"}]}}",
		WEB_EP, NULL, &added);
	char *services = chain_body(text, "services {"), *ext, *post;
	const char *extname, *svcname;
	(void)state;
	assert_non_null(services);
	assert_non_null(strstr(services, "fib daddr type local ip daddr != 127.0.0.0/8 meta "
					 "l4proto . th dport vmap @service-nodeports"));
	extname = goto_target(text, "tcp . 30080 : goto ");
	assert_non_null(extname);
	ext = chain_body(text, extname);
	assert_non_null(strstr(ext, "jump mark-for-masquerade"));
	svcname = goto_target(text, "10.96.0.10 . tcp . 80 : goto ");
	assert_non_null(strstr(ext, svcname));
	post = chain_body(text, "masquerading");
	assert_non_null(strstr(post, "masquerade"));
	free(post);
	free(ext);
	free(services);
	free(text);
}

/* --nodeport-addresses limits nodePorts to those local addresses. */
static void test_nodeport_addresses(void **state)
{
	char cidrs[256], err[CAP_ERRMSG_SIZE];
	int added;
	char *text;
	(void)state;
	assert_int_equal(proxy_parse_cidrs("10.1.2.3/8, 192.168.1.5", cidrs, sizeof cidrs, err),
			 0);
	assert_string_equal(cidrs, "10.0.0.0/8, 192.168.1.5/32");
	text = render1("{\"metadata\":{\"namespace\":\"default\",\"name\":\"web\"},"
		       "\"spec\":{\"type\":\"NodePort\",\"ports\":[{\"port\":80,\"nodePort\":30080}]}}",
		       WEB_EP, cidrs, &added);
	assert_int_equal(added, 1);
	assert_non_null(strstr(text, "elements = { 10.0.0.0/8, 192.168.1.5/32 }"));
	assert_non_null(strstr(text, "ip daddr @nodeport-ips fib daddr type local meta l4proto . "
				     "th dport vmap @service-nodeports"));
	/* No clusterIP: only the nodePort is proxied. */
	assert_null(strstr(text, ". tcp . 80 : goto"));
	free(text);
	assert_int_equal(proxy_parse_cidrs("10.0.0.0/33", cidrs, sizeof cidrs, err), -1);
	assert_int_equal(proxy_parse_cidrs("fe80::1/64", cidrs, sizeof cidrs, err), -1);
	assert_int_equal(proxy_parse_cidrs("10.0.0.1/", cidrs, sizeof cidrs, err), -1);
	assert_int_equal(proxy_parse_cidrs("", cidrs, sizeof cidrs, err), 0);
	assert_string_equal(cidrs, "");
}

/* A pod reaching itself through its service is masqueraded (hairpin). */
static void test_hairpin_masquerade(void **state)
{
	int added;
	char *text = render1(WEB_SVC, WEB_EP, NULL, &added);
	char *ep = chain_body(text, "__10.244.0.5/8080");
	(void)state;
	assert_non_null(ep);
	assert_non_null(strstr(ep, "ip saddr 10.244.0.5 jump mark-for-masquerade"));
	free(ep);
	free(text);
}

/* Headless services and ExternalName get no rules; nor do services with
 * neither a clusterIP nor a nodePort. */
static void test_nothing_to_proxy(void **state)
{
	static const char *const svcs[] = {
		"{\"metadata\":{\"namespace\":\"d\",\"name\":\"h\"},\"spec\":{\"clusterIP\":\"None\","
		"\"ports\":[{\"port\":80}]}}",
		"{\"metadata\":{\"namespace\":\"d\",\"name\":\"x\"},\"spec\":{\"type\":\"ExternalName\","
		"\"externalName\":\"example.com\",\"clusterIP\":\"10.96.0.9\",\"ports\":[{\"port\":80}]}}",
		"{\"metadata\":{\"namespace\":\"d\",\"name\":\"n\"},\"spec\":{\"ports\":[{\"port\":80}]}}",
	};
	(void)state;
	for (size_t i = 0; i < sizeof svcs / sizeof svcs[0]; i++) {
		int added;
		char *text = render1(svcs[i], WEB_EP, NULL, &added);
		assert_int_equal(added, 0);
		assert_null(strstr(text, "dnat"));
		assert_null(strstr(text, "goto svc-"));
		free(text);
	}
}

/* Addresses and names from the API cannot inject nft syntax: malformed
 * addresses are dropped, names are reduced to identifier characters. */
static void test_hostile_input(void **state)
{
	int added;
	char *text = render1(
		"{\"metadata\":{\"namespace\":\"d\",\"name\":\"a } flush ruleset\"},"
		"\"spec\":{\"clusterIP\":\"10.96.0.1; flush ruleset\",\"type\":\"NodePort\","
		"\"ports\":[{\"name\":\"p\\\"x\",\"port\":80,\"nodePort\":30001},"
		"{\"port\":70000},{\"port\":81,\"protocol\":\"ICMP\"}]}}",
		"{\"metadata\":{\"namespace\":\"d\",\"name\":\"a\"},\"subsets\":[{"
		"\"addresses\":[{\"ip\":\"10.0.0.1 } flush ruleset\"},{\"ip\":\"10.0.0.2\"},{}],"
		"\"ports\":[{\"name\":\"p\\\"x\",\"port\":8080}]}]}",
		NULL, &added);
	(void)state;
	assert_int_equal(added, 1);   /* the nodePort only: bad clusterIP, bad port, ICMP */
	assert_null(strstr(text, " flush"));   /* only as a_flush_ruleset, a name */
	assert_null(strstr(text, "\""));
	assert_non_null(strstr(text, "dnat to 10.0.0.2:8080"));
	assert_null(strstr(text, "10.0.0.1"));
	free(text);
}

/* The same services in any order render the same text, so an unchanged
 * cluster causes no transaction. */
static void test_deterministic(void **state)
{
	struct proxy_model a, b;
	json_t *s1 = parse(WEB_SVC), *e1 = parse(WEB_EP);
	json_t *s2 = parse("{\"metadata\":{\"namespace\":\"b\",\"name\":\"b\"},"
			   "\"spec\":{\"clusterIP\":\"10.96.0.11\",\"ports\":[{\"port\":53,"
			   "\"protocol\":\"UDP\"}]}}");
	char *ta, *tb;
	(void)state;
	proxy_model_init(&a);
	proxy_model_init(&b);
	proxy_model_add(&a, s1, e1);
	proxy_model_add(&a, s2, NULL);
	proxy_model_add(&b, s2, NULL);
	proxy_model_add(&b, s1, e1);
	proxy_model_sort(&a);
	proxy_model_sort(&b);
	ta = proxy_nft_render(&a, NULL);
	tb = proxy_nft_render(&b, NULL);
	assert_string_equal(ta, tb);
	assert_non_null(strstr(ta, "10.96.0.11 . udp . 53 : goto reject-chain"));
	free(ta);
	free(tb);
	proxy_model_free(&a);
	proxy_model_free(&b);
	json_decref(s1);
	json_decref(e1);
	json_decref(s2);
}

/* A later sync updates the table in place: no table deletion (the nat
 * hooks stay registered, so connections being set up keep their DNAT),
 * rules and map elements flushed and written anew, and the chain of an
 * endpoint that went away deleted. */
static void test_update_in_place(void **state)
{
	struct proxy_model a, b;
	json_t *s = parse(WEB_SVC), *e1 = parse(WEB_EP);
	json_t *e2 = parse("{\"subsets\":[{\"addresses\":[{\"ip\":\"10.244.0.5\"},"
			   "{\"ip\":\"10.244.1.9\"}],\"ports\":[{\"port\":8080}]}]}");
	char **chains, *text, *ep;
	size_t n;
	(void)state;
	proxy_model_init(&a);
	proxy_model_init(&b);
	proxy_model_add(&a, s, e1);
	proxy_model_add(&b, s, e2);
	assert_int_equal(proxy_nft_chains(&a, &chains, &n), 0);
	assert_int_equal(n, 4);   /* svc + three endpoints */
	struct proxy_nft_opts o = {.update = true, .prev_chains = chains, .n_prev = n};
	text = proxy_nft_render(&b, &o);
	assert_non_null(text);
	assert_null(strstr(text, "delete table"));
	assert_non_null(strstr(text, "flush table ip capstan\n"));
	assert_non_null(strstr(text, "flush map ip capstan service-ips\n"));
	/* The flush comes before the rules are written again. */
	assert_true(strstr(text, "flush table") < strstr(text, "numgen random mod 2"));
	ep = strstr(text, "delete chain ip capstan ep-");
	assert_non_null(ep);
	assert_non_null(strstr(ep, "__10.244.0.7/8080\n"));
	assert_int_equal(count(text, "delete chain"), 1);
	assert_null(strstr(text, "dnat to 10.244.0.7"));
	free(text);
	proxy_nft_chains_free(chains, n);
	proxy_model_free(&a);
	proxy_model_free(&b);
	json_decref(s);
	json_decref(e1);
	json_decref(e2);
}

/* From EndpointSlices: endpoints whose ready condition is false (not
 * ready, terminating) get no traffic, an absent condition counts as
 * ready, ports are matched by name, IPv6 slices are left alone. */
static void test_endpoint_slices(void **state)
{
	struct proxy_model m;
	json_t *svc = parse("{\"metadata\":{\"namespace\":\"default\",\"name\":\"web\"},"
			    "\"spec\":{\"clusterIP\":\"10.96.0.10\",\"ports\":[{\"name\":\"http\","
			    "\"port\":80,\"targetPort\":\"web\"}]}}");
	json_t *slices = parse(
		"[{\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":8080,"
		"\"protocol\":\"TCP\"}],\"endpoints\":["
		"{\"addresses\":[\"10.244.0.5\"],\"conditions\":{\"ready\":true}},"
		"{\"addresses\":[\"10.244.0.6\"],\"conditions\":{\"ready\":false}},"
		"{\"addresses\":[\"10.244.0.7\"],\"conditions\":{\"ready\":false,"
		"\"serving\":true,\"terminating\":true}},"
		"{\"addresses\":[\"10.244.0.8\"]}]},"
		"{\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":8081}],"
		"\"endpoints\":[{\"addresses\":[\"10.244.1.2\"],\"conditions\":{\"ready\":true}}]},"
		"{\"addressType\":\"IPv6\",\"ports\":[{\"name\":\"http\",\"port\":8080}],"
		"\"endpoints\":[{\"addresses\":[\"fd00::5\"]}]}]");
	char *text;
	(void)state;
	proxy_model_init(&m);
	assert_int_equal(proxy_model_add_slices(&m, svc, slices), 1);
	text = proxy_nft_render(&m, NULL);
	assert_non_null(strstr(text, "numgen random mod 3 vmap"));
	assert_non_null(strstr(text, "dnat to 10.244.0.5:8080"));
	assert_non_null(strstr(text, "dnat to 10.244.0.8:8080"));
	assert_non_null(strstr(text, "dnat to 10.244.1.2:8081"));
	assert_null(strstr(text, "10.244.0.6"));
	assert_null(strstr(text, "10.244.0.7"));
	assert_null(strstr(text, "fd00"));
	free(text);
	proxy_model_free(&m);
	json_decref(svc);
	json_decref(slices);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cluster_ip_spreads_over_ready_endpoints),
		cmocka_unit_test(test_not_ready_excluded),
		cmocka_unit_test(test_no_ready_endpoint_rejects),
		cmocka_unit_test(test_named_ports),
		cmocka_unit_test(test_node_port),
		cmocka_unit_test(test_nodeport_addresses),
		cmocka_unit_test(test_hairpin_masquerade),
		cmocka_unit_test(test_nothing_to_proxy),
		cmocka_unit_test(test_hostile_input),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_update_in_place),
		cmocka_unit_test(test_endpoint_slices),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
