/* test_validate.c — objects the API server would refuse are refused with
 * its field paths and wording, and defaulting fills what it fills. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/err.h"
#include "orchestrator/api/defaults.h"
#include "orchestrator/api/validate.h"
#include "orchestrator/api/yaml.h"

static json_t *y(const char *text)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_t *v = yaml_to_json(text, strlen(text), errmsg);

	if (v == NULL)
		fail_msg("bad test YAML: %s", errmsg);
	return v;
}

/* Whether causes hold one with this field, reason and message prefix. */
static bool has_cause(json_t *causes, const char *field, const char *reason, const char *msg)
{
	json_t *c;
	size_t i;

	json_array_foreach(causes, i, c) {
		const char *f = json_string_value(json_object_get(c, "field"));
		const char *r = json_string_value(json_object_get(c, "reason"));
		const char *m = json_string_value(json_object_get(c, "message"));
		if (strcmp(f, field) == 0 && strcmp(r, reason) == 0 &&
		    strncmp(m, msg, strlen(msg)) == 0)
			return true;
	}
	return false;
}

static void expect_cause(const char *resource, const char *obj_yaml, const char *old_yaml,
			 const char *field, const char *reason, const char *msg)
{
	json_t *obj = y(obj_yaml);
	json_t *old = old_yaml != NULL ? y(old_yaml) : NULL;
	json_t *causes = validate_object(resource, obj, old);

	if (causes == NULL || !has_cause(causes, field, reason, msg)) {
		char *d = causes != NULL ? json_dumps(causes, 0) : NULL;
		fail_msg("want %s %s \"%s\", got %s", field, reason, msg, d != NULL ? d : "valid");
	}
	json_decref(causes);
	json_decref(obj);
	json_decref(old);
}

static void expect_valid(const char *resource, const char *obj_yaml, const char *old_yaml)
{
	json_t *obj = y(obj_yaml);
	json_t *old = old_yaml != NULL ? y(old_yaml) : NULL;
	json_t *causes = validate_object(resource, obj, old);

	if (causes != NULL) {
		char *d = json_dumps(causes, 0);
		fail_msg("unexpectedly invalid: %s", d);
	}
	json_decref(obj);
	json_decref(old);
}

/* DNS names: Kubernetes' exact messages, including its double spaces. */
static void test_dns_names(void **state)
{
	(void)state;
	assert_null(validate_dns1123_subdomain("example.com"));
	assert_null(validate_dns1123_subdomain("a-b.c-d"));
	assert_string_equal(validate_dns1123_subdomain("Foo_bar"),
			    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
			    "characters, '-' or '.', and must start and end with an alphanumeric "
			    "character (e.g. 'example.com', regex used for validation is "
			    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
	assert_non_null(validate_dns1123_subdomain("a..b"));
	assert_non_null(validate_dns1123_subdomain("-a"));
	assert_non_null(validate_dns1123_subdomain(""));
	char longname[300];
	memset(longname, 'a', 254);
	longname[254] = '\0';
	assert_string_equal(validate_dns1123_subdomain(longname), "must be no more than 253 characters");
	assert_null(validate_dns1123_label("my-name"));
	assert_null(validate_dns1123_label("123-abc"));
	assert_string_equal(validate_dns1123_label("my.name"),
			    "a lowercase RFC 1123 label must consist of lower case alphanumeric "
			    "characters or '-', and must start and end with an alphanumeric character "
			    "(e.g. 'my-name',  or '123-abc', regex used for validation is "
			    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')");
	longname[64] = '\0';
	assert_string_equal(validate_dns1123_label(longname), "must be no more than 63 characters");
}

/* Label keys and values follow the qualified-name and label-value rules. */
static void test_label_rules(void **state)
{
	(void)state;
	assert_null(validate_qualified_name("app"));
	assert_null(validate_qualified_name("app.kubernetes.io/name"));
	assert_string_equal(validate_qualified_name("/a"), "prefix part must be non-empty");
	assert_string_equal(validate_qualified_name("a/"), "name part must be non-empty");
	assert_non_null(strstr(validate_qualified_name("bad key"), "name part must consist of"));
	assert_non_null(strstr(validate_qualified_name("a/b/c"), "a qualified name must consist"));
	assert_non_null(strstr(validate_qualified_name("Bad_Prefix/a"), "prefix part a lowercase RFC 1123"));
	assert_null(validate_label_value(""));
	assert_null(validate_label_value("My_value.1"));
	assert_non_null(strstr(validate_label_value("-x"), "a valid label must be an empty string"));
	expect_cause("pods", "metadata:\n  name: p\n  labels:\n    'bad key': v\n"
			     "spec:\n  containers: [{name: c, image: i}]\n",
		     NULL, "metadata.labels", "FieldValueInvalid", "Invalid value: \"bad key\": name part");
	expect_cause("configmaps", "metadata:\n  name: c\n  labels:\n    a: 'no spaces'\n", NULL,
		     "metadata.labels", "FieldValueInvalid", "Invalid value: \"no spaces\": a valid label");
	expect_cause("configmaps", "metadata:\n  name: c\n  annotations:\n    'a/b/c': x\n", NULL,
		     "metadata.annotations", "FieldValueInvalid", "Invalid value: \"a/b/c\"");
}

/* Object names: required, subdomain for most kinds, label for namespaces,
 * DNS-1035 for services. */
static void test_object_names(void **state)
{
	(void)state;
	expect_cause("pods", "metadata:\n  name: Foo_bar\nspec:\n  containers: [{name: c, image: i}]\n",
		     NULL, "metadata.name", "FieldValueInvalid",
		     "Invalid value: \"Foo_bar\": a lowercase RFC 1123 subdomain must consist of");
	expect_cause("configmaps", "metadata: {}\n", NULL, "metadata.name", "FieldValueRequired",
		     "Required value: name or generateName is required");
	expect_valid("configmaps", "metadata:\n  generateName: cm-\n", NULL);
	expect_cause("namespaces", "metadata:\n  name: a.b\n", NULL, "metadata.name",
		     "FieldValueInvalid", "Invalid value: \"a.b\": a lowercase RFC 1123 label");
	expect_cause("services", "metadata:\n  name: 1web\nspec:\n  ports: [{port: 80}]\n", NULL,
		     "metadata.name", "FieldValueInvalid", "Invalid value: \"1web\": a DNS-1035 label");
	expect_valid("nodes", "metadata:\n  name: node-1.example.com\n", NULL);
}

#define GOOD_POD "metadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx\n"

/* Pods: containers, names, images, ports and enums, each reported. */
static void test_pod_rules(void **state)
{
	(void)state;
	expect_valid("pods", GOOD_POD, NULL);
	expect_cause("pods", "metadata:\n  name: p\nspec: {}\n", NULL, "spec.containers",
		     "FieldValueRequired", "Required value");
	expect_cause("pods", "metadata:\n  name: p\nspec:\n  containers: [{name: c}]\n", NULL,
		     "spec.containers[0].image", "FieldValueRequired", "Required value");
	expect_cause("pods", "metadata:\n  name: p\nspec:\n  containers: [{image: i}]\n", NULL,
		     "spec.containers[0].name", "FieldValueRequired", "Required value");
	expect_cause("pods", "metadata:\n  name: p\nspec:\n  containers: [{name: Web_1, image: i}]\n",
		     NULL, "spec.containers[0].name", "FieldValueInvalid",
		     "Invalid value: \"Web_1\": a lowercase RFC 1123 label");
	expect_cause("pods", "metadata:\n  name: p\nspec:\n  containers: [{name: a, image: i}, {name: a, image: j}]\n",
		     NULL, "spec.containers[1].name", "FieldValueDuplicate", "Duplicate value: \"a\"");
	expect_cause("pods", "metadata:\n  name: p\nspec:\n  initContainers: [{name: a, image: i}]\n"
			     "  containers: [{name: a, image: j}]\n",
		     NULL, "spec.initContainers[0].name", "FieldValueDuplicate", "Duplicate value: \"a\"");
	expect_cause("pods", "metadata:\n  name: p\nspec:\n  containers: [{name: a, image: i, ports: [{containerPort: 70000}]}]\n",
		     NULL, "spec.containers[0].ports[0].containerPort", "FieldValueInvalid",
		     "Invalid value: 70000: must be between 1 and 65535, inclusive");
	expect_cause("pods", "metadata:\n  name: p\nspec:\n  containers: [{name: a, image: i, ports: [{containerPort: 80, protocol: HTTP}]}]\n",
		     NULL, "spec.containers[0].ports[0].protocol", "FieldValueNotSupported",
		     "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"");
	expect_cause("pods", "metadata:\n  name: p\nspec:\n  restartPolicy: Sometimes\n  containers: [{name: a, image: i}]\n",
		     NULL, "spec.restartPolicy", "FieldValueNotSupported",
		     "Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"");
	expect_cause("pods", "metadata:\n  name: p\nspec:\n  containers: [{name: a, image: i, imagePullPolicy: Maybe}]\n",
		     NULL, "spec.containers[0].imagePullPolicy", "FieldValueNotSupported",
		     "Unsupported value: \"Maybe\"");
	expect_cause("pods", "metadata:\n  name: p\nspec:\n  terminationGracePeriodSeconds: -5\n  containers: [{name: a, image: i}]\n",
		     NULL, "spec.terminationGracePeriodSeconds", "FieldValueInvalid",
		     "Invalid value: -5: must be greater than or equal to 0");

	/* Every bad field is reported, not just the first. */
	json_t *bad = y("metadata:\n  name: Bad\nspec:\n  restartPolicy: x\n  containers: [{name: c}]\n");
	json_t *causes = validate_object("pods", bad, NULL);
	assert_int_equal(json_array_size(causes), 3);
	char *msg = validate_status_message("Pod", "Bad", causes);
	assert_non_null(strstr(msg, "Pod \"Bad\" is invalid: [metadata.name: Invalid value: \"Bad\""));
	assert_non_null(strstr(msg, ", spec.containers[0].image: Required value"));
	assert_int_equal(msg[strlen(msg) - 1], ']');
	free(msg);
	json_decref(causes);
	json_decref(bad);
}

/* A single cause prints without brackets, as kubectl shows it. */
static void test_status_message_single(void **state)
{
	(void)state;
	json_t *obj = y("metadata:\n  name: bad\nspec:\n  containers: [{name: c}]\n");
	json_t *causes = validate_object("pods", obj, NULL);
	char *msg = validate_status_message("Pod", "bad", causes);

	assert_string_equal(msg, "Pod \"bad\" is invalid: spec.containers[0].image: Required value");
	free(msg);
	json_decref(causes);
	json_decref(obj);
}

/* Pod updates may change images and add tolerations, nothing else in spec. */
static void test_pod_update(void **state)
{
	(void)state;
	expect_valid("pods", "metadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx:2\n",
		     GOOD_POD);
	expect_valid("pods", GOOD_POD "  tolerations: [{key: a, operator: Exists}]\n", GOOD_POD);
	expect_cause("pods", GOOD_POD "  restartPolicy: Never\n", GOOD_POD "  restartPolicy: Always\n",
		     "spec", "FieldValueForbidden",
		     "Forbidden: pod updates may not change fields other than `spec.containers[*].image`");
	expect_cause("pods", GOOD_POD, GOOD_POD "  tolerations: [{key: a, operator: Exists}]\n",
		     "spec", "FieldValueForbidden", "Forbidden: pod updates");
}

#define DEPLOY(sel, tlabels, extra)                                                   \
	"metadata:\n  name: web\nspec:\n" extra "  selector:\n    matchLabels: " sel "\n" \
	"  template:\n    metadata:\n      labels: " tlabels "\n    spec:\n"              \
	"      containers: [{name: web, image: nginx}]\n"

/* Workloads: the selector is required, must match the template, and is immutable. */
static void test_workload_rules(void **state)
{
	(void)state;
	expect_valid("deployments", DEPLOY("{app: web}", "{app: web, tier: fe}", ""), NULL);
	expect_cause("deployments",
		     "metadata:\n  name: web\nspec:\n  template:\n    metadata:\n      labels: {app: web}\n"
		     "    spec:\n      containers: [{name: web, image: nginx}]\n",
		     NULL, "spec.selector", "FieldValueRequired", "Required value");
	expect_cause("deployments", DEPLOY("{app: web}", "{app: api, tier: fe}", ""), NULL,
		     "spec.template.metadata.labels", "FieldValueInvalid",
		     "Invalid value: map[string]string{\"app\":\"api\", \"tier\":\"fe\"}: `selector` does not "
		     "match template `labels`");
	expect_cause("deployments", DEPLOY("{}", "{app: web}", ""), NULL, "spec.selector",
		     "FieldValueInvalid", "Invalid value: {\"matchLabels\":{}}: empty selector is invalid "
					  "for deployment");
	expect_cause("replicasets", DEPLOY("{app: web}", "{app: web}", "  replicas: -1\n"), NULL,
		     "spec.replicas", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0");
	expect_cause("daemonsets",
		     "metadata:\n  name: ds\nspec:\n  selector:\n    matchLabels: {app: ds}\n  template:\n"
		     "    metadata:\n      labels: {app: ds}\n    spec:\n      restartPolicy: Never\n"
		     "      containers: [{name: c, image: i}]\n",
		     NULL, "spec.template.spec.restartPolicy", "FieldValueNotSupported",
		     "Unsupported value: \"Never\": supported values: \"Always\"");
	expect_cause("deployments", DEPLOY("{app: web, v: '2'}", "{app: web, v: '2'}", ""),
		     DEPLOY("{app: web}", "{app: web}", ""), "spec.selector", "FieldValueInvalid",
		     "Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable");
	expect_valid("deployments", DEPLOY("{app: web}", "{app: web}", "  replicas: 5\n"),
		     DEPLOY("{app: web}", "{app: web}", "  replicas: 3\n"));
	expect_cause("deployments", DEPLOY("{app: web}", "{app: web}",
					   "  strategy:\n    type: Recreate\n    rollingUpdate: {maxSurge: 1}\n"),
		     NULL, "spec.strategy.rollingUpdate", "FieldValueForbidden",
		     "Forbidden: may not be specified when strategy `type` is 'Recreate'");
	expect_cause("deployments", DEPLOY("{app: web}", "{app: web}",
					   "  strategy:\n    rollingUpdate: {maxSurge: 0, maxUnavailable: 0}\n"),
		     NULL, "spec.strategy.rollingUpdate.maxUnavailable", "FieldValueInvalid",
		     "Invalid value: 0: may not be 0 when `maxSurge` is 0");
}

/* Services: ports required, ranges, type enum, node ports, cluster IP forms, ExternalName, immutable clusterIPs. */
static void test_service_rules(void **state)
{
	(void)state;
	expect_valid("services", "metadata:\n  name: web\nspec:\n  ports: [{port: 80, targetPort: 8080}]\n", NULL);
	expect_cause("services", "metadata:\n  name: web\nspec: {}\n", NULL, "spec.ports",
		     "FieldValueRequired", "Required value");
	expect_valid("services", "metadata:\n  name: db\nspec:\n  type: ExternalName\n  externalName: db.example.com\n",
		     NULL);
	expect_cause("services", "metadata:\n  name: db\nspec:\n  type: ExternalName\n", NULL,
		     "spec.externalName", "FieldValueRequired", "Required value");
	expect_cause("services", "metadata:\n  name: web\nspec:\n  ports: [{port: 0}]\n", NULL,
		     "spec.ports[0].port", "FieldValueInvalid", "Invalid value: 0: must be between 1 and 65535");
	expect_cause("services", "metadata:\n  name: web\nspec:\n  type: Magic\n  ports: [{port: 80}]\n",
		     NULL, "spec.type", "FieldValueNotSupported",
		     "Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", "
		     "\"LoadBalancer\", \"NodePort\"");
	expect_cause("services", "metadata:\n  name: web\nspec:\n  ports: [{port: 80, name: a}, {port: 80, name: b}]\n",
		     NULL, "spec.ports[1]", "FieldValueDuplicate",
		     "Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, ");
	expect_valid("services", "metadata:\n  name: web\nspec:\n  ports: [{port: 53, name: a}, {port: 53, name: b, protocol: UDP}]\n",
		     NULL);
	expect_cause("services", "metadata:\n  name: web\nspec:\n  selector: {\"a b\": x}\n  ports: [{port: 80}]\n",
		     NULL, "spec.selector", "FieldValueInvalid", "Invalid value: \"a b\"");
	/* The node-port range is the allocator's (it is configurable). */
	expect_valid("services", "metadata:\n  name: web\nspec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 8080}]\n",
		     NULL);
	expect_cause("services", "metadata:\n  name: web\nspec:\n  type: NodePort\n  ports: [{port: 80, name: a, nodePort: 30080}, {port: 81, name: b, nodePort: 30080}]\n",
		     NULL, "spec.ports[1].nodePort", "FieldValueDuplicate", "Duplicate value: 30080");
	expect_valid("services", "metadata:\n  name: web\nspec:\n  type: NodePort\n  ports: [{port: 80, name: a, nodePort: 30080}, {port: 80, name: b, protocol: UDP, nodePort: 30080}]\n",
		     NULL);
	expect_cause("services", "metadata:\n  name: web\nspec:\n  clusterIP: 10.96.0.256\n  ports: [{port: 80}]\n",
		     NULL, "spec.clusterIPs[0]", "FieldValueInvalid",
		     "Invalid value: \"10.96.0.256\": must be empty, 'None', or a valid IP address");
	expect_cause("services", "metadata:\n  name: web\nspec:\n  type: NodePort\n  clusterIP: None\n  ports: [{port: 80}]\n",
		     NULL, "spec.clusterIPs[0]", "FieldValueInvalid",
		     "Invalid value: \"None\": may not be set to 'None' for NodePort services");
	expect_cause("services", "metadata:\n  name: db\nspec:\n  type: ExternalName\n  externalName: db_1.example.com\n", NULL,
		     "spec.externalName", "FieldValueInvalid", "Invalid value: \"db_1.example.com\": a lowercase RFC 1123 subdomain");
	expect_valid("services", "metadata:\n  name: db\nspec:\n  type: ExternalName\n  externalName: db.example.com.\n",
		     NULL);
	expect_cause("services", "metadata:\n  name: db\nspec:\n  type: ExternalName\n  externalName: db.example.com\n  clusterIP: 10.96.0.9\n", NULL,
		     "spec.clusterIPs", "FieldValueForbidden", "Forbidden: may not be set for ExternalName services");
	expect_valid("services", "metadata:\n  name: web\nspec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n",
		     NULL);
	expect_cause("services", "metadata:\n  name: web\nspec:\n  ports: [{port: 80, nodePort: 30080}]\n",
		     NULL, "spec.ports[0].nodePort", "FieldValueForbidden",
		     "Forbidden: may not be used when `type` is 'ClusterIP'");
	expect_cause("services", "metadata:\n  name: web\nspec:\n  ports: [{port: 80}, {port: 81}]\n", NULL,
		     "spec.ports[0].name", "FieldValueRequired", "Required value");
	expect_cause("services", "metadata:\n  name: web\nspec:\n  clusterIP: 10.96.0.2\n  clusterIPs: [10.96.0.2]\n  ports: [{port: 80}]\n",
		     "metadata:\n  name: web\nspec:\n  clusterIP: 10.96.0.1\n  clusterIPs: [10.96.0.1]\n  ports: [{port: 80}]\n",
		     "spec.clusterIPs[0]", "FieldValueInvalid",
		     "Invalid value: []string{\"10.96.0.2\"}: may not change once set");
}

/* ConfigMap and Secret keys, immutable objects and the Secret type. */
static void test_config_rules(void **state)
{
	(void)state;
	expect_cause("configmaps", "metadata:\n  name: c\ndata:\n  'a b': x\n", NULL, "data[a b]",
		     "FieldValueInvalid", "Invalid value: \"a b\": a valid config key must consist");
	expect_valid("configmaps", "metadata:\n  name: c\ndata:\n  game.properties: x\n  KEY_1: y\n", NULL);
	expect_cause("configmaps", "metadata:\n  name: c\nimmutable: true\ndata: {a: '2'}\n",
		     "metadata:\n  name: c\nimmutable: true\ndata: {a: '1'}\n", "data",
		     "FieldValueForbidden", "Forbidden: field is immutable when `immutable` is set");
	expect_cause("secrets", "metadata:\n  name: s\ntype: kubernetes.io/tls\n",
		     "metadata:\n  name: s\ntype: Opaque\n", "type", "FieldValueInvalid",
		     "Invalid value: \"kubernetes.io/tls\": field is immutable");
}

/* A Node's pod ranges are CIDRs, set once: the node IPAM controller may set
 * them on a Node without one, nobody may change them after. */
static void test_node_pod_cidrs(void **state)
{
	(void)state;
	expect_valid("nodes", "metadata:\n  name: n\nspec:\n  podCIDR: 10.244.1.0/24\n"
		     "  podCIDRs: [10.244.1.0/24, 'fd00:10:244:1::/64']\n", NULL);
	expect_cause("nodes", "metadata:\n  name: n\nspec:\n  podCIDRs: [10.244.1.0]\n", NULL,
		     "spec.podCIDRs[0]", "FieldValueInvalid",
		     "Invalid value: \"10.244.1.0\": must be a valid CIDR");
	expect_cause("nodes", "metadata:\n  name: n\nspec:\n  podCIDR: 10.244.1.0/33\n", NULL,
		     "spec.podCIDR", "FieldValueInvalid", "Invalid value: \"10.244.1.0/33\"");
	expect_valid("nodes", "metadata:\n  name: n\nspec:\n  podCIDR: 10.244.1.0/24\n"
		     "  podCIDRs: [10.244.1.0/24]\n", "metadata:\n  name: n\nspec: {}\n");
	expect_cause("nodes", "metadata:\n  name: n\nspec:\n  podCIDR: 10.244.2.0/24\n"
		     "  podCIDRs: [10.244.2.0/24]\n",
		     "metadata:\n  name: n\nspec:\n  podCIDR: 10.244.1.0/24\n"
		     "  podCIDRs: [10.244.1.0/24]\n", "spec.podCIDRs", "FieldValueForbidden",
		     "Forbidden: node updates may not change podCIDR");
	expect_cause("nodes", "metadata:\n  name: n\nspec: {}\n",
		     "metadata:\n  name: n\nspec:\n  podCIDR: 10.244.1.0/24\n"
		     "  podCIDRs: [10.244.1.0/24]\n", "spec.podCIDRs", "FieldValueForbidden",
		     "Forbidden: node updates may not change podCIDR");
}

static json_t *defaulted(const char *resource, const char *obj_yaml)
{
	json_t *o = y(obj_yaml);

	defaults_apply(resource, o);
	return o;
}

static void expect_at(json_t *o, const char *want_yaml)
{
	json_t *want = y(want_yaml);
	const char *k;
	json_t *v;

	/* Each top-level key of want must equal the object's. */
	json_object_foreach(want, k, v) {
		if (!json_equal(json_object_get(o, k), v)) {
			char *g = json_dumps(json_object_get(o, k), JSON_SORT_KEYS | JSON_ENCODE_ANY);
			char *w = json_dumps(v, JSON_SORT_KEYS | JSON_ENCODE_ANY);
			fail_msg("%s: got %s, want %s", k, g, w);
		}
	}
	json_decref(want);
}

/* A bare pod comes back with the fields `kubectl get pod -o yaml` shows. */
static void test_defaults_pod(void **state)
{
	(void)state;
	json_t *p = defaulted("pods", "metadata:\n  name: web\nspec:\n  containers:\n"
				      "  - name: web\n    image: nginx\n    ports: [{containerPort: 80}]\n"
				      "  - name: side\n    image: busybox:1.36\n");
	json_t *spec = json_object_get(p, "spec");

	expect_at(spec, "restartPolicy: Always\ndnsPolicy: ClusterFirst\nschedulerName: default-scheduler\n"
			"terminationGracePeriodSeconds: 30\nsecurityContext: {}\nenableServiceLinks: true\n"
			"tolerations:\n- {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute,"
			" tolerationSeconds: 300}\n- {key: node.kubernetes.io/unreachable, operator: Exists, "
			"effect: NoExecute, tolerationSeconds: 300}\n");
	expect_at(json_array_get(json_object_get(spec, "containers"), 0),
		  "imagePullPolicy: Always\nterminationMessagePath: /dev/termination-log\n"
		  "terminationMessagePolicy: File\nresources: {}\nports: [{containerPort: 80, protocol: TCP}]\n");
	expect_at(json_array_get(json_object_get(spec, "containers"), 1), "imagePullPolicy: IfNotPresent\n");
	expect_at(json_object_get(p, "status"), "phase: Pending\nqosClass: BestEffort\n");
	json_decref(p);

	/* User values are kept; a toleration of the taint already present is not doubled. */
	p = defaulted("pods", "metadata:\n  name: web\nspec:\n  restartPolicy: Never\n"
			      "  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, "
			      "tolerationSeconds: 10}]\n  containers:\n"
			      "  - {name: a, image: 'reg:5000/app', imagePullPolicy: Never,"
			      " resources: {limits: {cpu: '1', memory: 1Gi}}}\n");
	spec = json_object_get(p, "spec");
	assert_string_equal(json_string_value(json_object_get(spec, "restartPolicy")), "Never");
	assert_int_equal(json_array_size(json_object_get(spec, "tolerations")), 2);
	expect_at(json_array_get(json_object_get(spec, "containers"), 0),
		  "imagePullPolicy: Never\nresources: {limits: {cpu: '1', memory: 1Gi}, requests: {cpu: '1', memory: 1Gi}}\n");
	expect_at(json_object_get(p, "status"), "qosClass: Guaranteed\n");
	json_decref(p);
}

/* Image pull policy: Always for :latest or no tag, IfNotPresent for a tag or digest. */
static void test_defaults_pull_policy(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{ "nginx", "Always" }, { "nginx:latest", "Always" }, { "nginx:1.27", "IfNotPresent" },
		{ "localhost:5000/app", "Always" }, { "localhost:5000/app:v1", "IfNotPresent" },
		{ "nginx@sha256:abc", "IfNotPresent" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *p = json_pack("{s:{s:[{s:s, s:s}]}}", "spec", "containers", "name", "c", "image",
				      cases[i][0]);
		defaults_apply("pods", p);
		const char *got = json_string_value(json_object_get(
			json_array_get(json_object_get(json_object_get(p, "spec"), "containers"), 0),
			"imagePullPolicy"));
		if (strcmp(got, cases[i][1]) != 0)
			fail_msg("%s: got %s, want %s", cases[i][0], got, cases[i][1]);
		json_decref(p);
	}
}

/* Deployments, DaemonSets and their templates get the documented defaults. */
static void test_defaults_workloads(void **state)
{
	(void)state;
	json_t *d = defaulted("deployments", DEPLOY("{app: web}", "{app: web}", ""));
	json_t *spec = json_object_get(d, "spec");

	expect_at(spec, "replicas: 1\nrevisionHistoryLimit: 10\nprogressDeadlineSeconds: 600\n"
			"strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 25%, maxSurge: 25%}}\n");
	expect_at(json_object_get(json_object_get(spec, "template"), "spec"),
		  "restartPolicy: Always\ndnsPolicy: ClusterFirst\n");
	/* Templates get no admission tolerations: those are added to pods. */
	assert_null(json_object_get(json_object_get(json_object_get(spec, "template"), "spec"), "tolerations"));
	json_decref(d);

	d = defaulted("deployments", DEPLOY("{app: web}", "{app: web}", "  strategy: {type: Recreate}\n"));
	expect_at(json_object_get(d, "spec"), "strategy: {type: Recreate}\n");
	json_decref(d);

	d = defaulted("daemonsets", DEPLOY("{app: web}", "{app: web}", ""));
	expect_at(json_object_get(d, "spec"), "revisionHistoryLimit: 10\n"
					      "updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1, maxSurge: 0}}\n");
	json_decref(d);
	d = defaulted("replicasets", DEPLOY("{app: web}", "{app: web}", "  replicas: 0\n"));
	expect_at(json_object_get(d, "spec"), "replicas: 0\n");
	json_decref(d);
}

/* Services, namespaces, secrets and claims get their defaults. */
static void test_defaults_others(void **state)
{
	(void)state;
	json_t *o = defaulted("services", "metadata:\n  name: web\nspec:\n  ports: [{port: 80}, {port: 53, protocol: UDP, targetPort: dns}]\n");
	expect_at(json_object_get(o, "spec"),
		  "type: ClusterIP\nsessionAffinity: None\nipFamilies: [IPv4]\nipFamilyPolicy: SingleStack\n"
		  "internalTrafficPolicy: Cluster\nports: [{port: 80, protocol: TCP, targetPort: 80},"
		  " {port: 53, protocol: UDP, targetPort: dns}]\n");
	json_decref(o);
	o = defaulted("services", "metadata:\n  name: web\nspec:\n  type: NodePort\n  ports: [{port: 80}]\n");
	expect_at(json_object_get(o, "spec"), "externalTrafficPolicy: Cluster\n");
	json_decref(o);
	o = defaulted("namespaces", "metadata:\n  name: team-a\n");
	expect_at(o, "spec: {finalizers: [kubernetes]}\nstatus: {phase: Active}\n"
		     "metadata: {name: team-a, labels: {kubernetes.io/metadata.name: team-a}}\n");
	json_decref(o);
	o = defaulted("secrets", "metadata:\n  name: s\n");
	expect_at(o, "type: Opaque\n");
	json_decref(o);
	o = defaulted("persistentvolumeclaims", "metadata:\n  name: c\nspec: {}\n");
	expect_at(json_object_get(o, "spec"), "volumeMode: Filesystem\n");
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dns_names),
		cmocka_unit_test(test_label_rules),
		cmocka_unit_test(test_object_names),
		cmocka_unit_test(test_pod_rules),
		cmocka_unit_test(test_status_message_single),
		cmocka_unit_test(test_pod_update),
		cmocka_unit_test(test_workload_rules),
		cmocka_unit_test(test_node_pod_cidrs),
		cmocka_unit_test(test_service_rules),
		cmocka_unit_test(test_config_rules),
		cmocka_unit_test(test_defaults_pod),
		cmocka_unit_test(test_defaults_pull_policy),
		cmocka_unit_test(test_defaults_workloads),
		cmocka_unit_test(test_defaults_others),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
