/* test_strategic.c — strategic merge patches give the objects kubectl users
 * get from a real API server (cases from "Update API Objects in Place Using
 * kubectl patch" and the strategic-merge-patch design document). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/err.h"
#include "orchestrator/api/patch.h"
#include "orchestrator/api/strategic.h"
#include "orchestrator/api/yaml.h"

/* Test documents are written in YAML, as the docs write them. */
static json_t *y(const char *text)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_t *v = yaml_to_json(text, strlen(text), errmsg);

	if (v == NULL)
		fail_msg("bad test YAML: %s", errmsg);
	return v;
}

static json_t *smp(const char *kind, const char *target, const char *patch)
{
	char errmsg[CAP_ERRMSG_SIZE] = "";
	json_t *t = y(target), *p = y(patch), *out = NULL;
	json_t *before = json_deep_copy(t);

	if (patch_strategic(t, p, kind, &out, errmsg) != CAP_OK)
		fail_msg("patch failed: %s", errmsg);
	/* The target is borrowed and must not change. */
	assert_true(json_equal(t, before));
	json_decref(t);
	json_decref(p);
	json_decref(before);
	return out;
}

static void expect(const char *kind, const char *target, const char *patch, const char *want)
{
	json_t *got = smp(kind, target, patch);
	json_t *w = y(want);

	if (!json_equal(got, w)) {
		char *g = json_dumps(got, JSON_SORT_KEYS);
		char *e = json_dumps(w, JSON_SORT_KEYS);
		fail_msg("got  %s\nwant %s", g, e);
	}
	json_decref(got);
	json_decref(w);
}

#define PATCH_DEMO                                          \
	"apiVersion: apps/v1\n"                             \
	"kind: Deployment\n"                                \
	"metadata:\n"                                       \
	"  name: patch-demo\n"                              \
	"spec:\n"                                           \
	"  replicas: 2\n"                                   \
	"  selector:\n"                                     \
	"    matchLabels:\n"                                \
	"      app: nginx\n"                                \
	"  template:\n"                                     \
	"    metadata:\n"                                   \
	"      labels:\n"                                   \
	"        app: nginx\n"                              \
	"    spec:\n"                                       \
	"      containers:\n"                               \
	"      - name: patch-demo-ctr\n"                    \
	"        image: nginx\n"                            \
	"      tolerations:\n"                              \
	"      - effect: NoSchedule\n"                      \
	"        key: dedicated\n"                          \
	"        value: test-team\n"

/* Docs: patching the containers list adds a container, keeping the old one. */
static void test_docs_containers_merged_by_name(void **state)
{
	(void)state;
	json_t *got = smp("Deployment", PATCH_DEMO,
			  "spec:\n  template:\n    spec:\n      containers:\n"
			  "      - name: patch-demo-ctr-2\n        image: redis\n");
	json_t *want = y("- name: patch-demo-ctr\n  image: nginx\n- name: patch-demo-ctr-2\n  image: redis\n");

	assert_true(json_equal(patch_pointer_get(got, "/spec/template/spec/containers"), want));
	assert_int_equal(json_integer_value(patch_pointer_get(got, "/spec/replicas")), 2);
	json_decref(got);
	json_decref(want);
}

/* Docs: tolerations have no patch strategy, so the list is replaced. */
static void test_docs_tolerations_replaced(void **state)
{
	(void)state;
	json_t *got = smp("Deployment", PATCH_DEMO,
			  "spec:\n  template:\n    spec:\n      tolerations:\n"
			  "      - effect: NoSchedule\n        key: disktype\n        value: ssd\n");
	json_t *want = y("- effect: NoSchedule\n  key: disktype\n  value: ssd\n");

	assert_true(json_equal(patch_pointer_get(got, "/spec/template/spec/tolerations"), want));
	assert_int_equal(json_array_size(patch_pointer_get(got, "/spec/template/spec/containers")), 1);
	json_decref(got);
	json_decref(want);
}

/* Docs: the same patch as a JSON merge patch replaces the containers list. */
static void test_docs_merge_patch_contrast(void **state)
{
	(void)state;
	char errmsg[CAP_ERRMSG_SIZE];
	json_t *t = y(PATCH_DEMO), *out = NULL;
	json_t *p = y("spec:\n  template:\n    spec:\n      containers:\n"
		      "      - name: patch-demo-ctr-3\n        image: gcr.io/google-samples/hello-app:2.0\n");

	assert_int_equal(patch_merge(t, p, &out, errmsg), CAP_OK);
	assert_int_equal(json_array_size(patch_pointer_get(out, "/spec/template/spec/containers")), 1);
	json_decref(out);
	assert_int_equal(patch_strategic(t, p, "Deployment", &out, errmsg), CAP_OK);
	assert_int_equal(json_array_size(patch_pointer_get(out, "/spec/template/spec/containers")), 2);
	json_decref(out);
	json_decref(t);
	json_decref(p);
}

/* Docs: $retainKeys with a strategy change drops rollingUpdate. */
static void test_docs_retain_keys(void **state)
{
	(void)state;
	expect("Deployment",
	       "spec:\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 30%\n"
	       "  replicas: 1\n",
	       "spec:\n  strategy:\n    $retainKeys:\n    - type\n    type: Recreate\n",
	       "spec:\n  strategy:\n    type: Recreate\n  replicas: 1\n");
}

/* Design doc: "$patch: delete" removes one element of a merged list. */
static void test_patch_delete_element(void **state)
{
	(void)state;
	expect("Pod",
	       "spec:\n  containers:\n  - name: nginx\n    image: nginx-1.0\n"
	       "  - name: log-tailer\n    image: log-tailer-1.0\n",
	       "spec:\n  containers:\n  - name: log-tailer\n    $patch: delete\n",
	       "spec:\n  containers:\n  - name: nginx\n    image: nginx-1.0\n");
}

/* Design doc: "$patch: replace" inside a list makes the patch the whole list. */
static void test_patch_replace_list(void **state)
{
	(void)state;
	expect("Pod",
	       "spec:\n  containers:\n  - name: nginx\n    image: nginx-1.0\n  - name: log\n    image: l\n",
	       "spec:\n  containers:\n  - name: other\n    image: o\n  - $patch: replace\n",
	       "spec:\n  containers:\n  - name: other\n    image: o\n");
}

/* Design doc: "$patch: replace" on a map replaces the map; on delete the map goes. */
static void test_patch_replace_and_delete_map(void **state)
{
	(void)state;
	expect("Pod",
	       "metadata:\n  name: p\n  labels:\n    a: '1'\n    b: '2'\n",
	       "metadata:\n  labels:\n    $patch: replace\n    c: '3'\n",
	       "metadata:\n  name: p\n  labels:\n    c: '3'\n");
	expect("Pod", "spec:\n  securityContext:\n    runAsUser: 1000\n  nodeName: n\n",
	       "spec:\n  securityContext:\n    $patch: delete\n", "spec:\n  nodeName: n\n");
}

/* Design doc: $deleteFromPrimitiveList removes values from a merged primitive list. */
static void test_delete_from_primitive_list(void **state)
{
	(void)state;
	expect("Pod", "metadata:\n  finalizers: [a, b, c]\n",
	       "metadata:\n  $deleteFromPrimitiveList/finalizers: [a]\n",
	       "metadata:\n  finalizers: [b, c]\n");
}

/* Finalizers merge as a set: new values join, existing ones stay once. */
static void test_finalizers_set(void **state)
{
	(void)state;
	expect("ConfigMap", "metadata:\n  finalizers: [a]\n", "metadata:\n  finalizers: [b, a]\n",
	       "metadata:\n  finalizers: [a, b]\n");
}

/* $setElementOrder sorts merged lists as kubectl apply asks, and keeps
 * elements the patch does not name (server-side additions) in place. */
static void test_set_element_order(void **state)
{
	(void)state;
	expect("Pod", "spec:\n  containers:\n  - name: a\n  - name: b\n",
	       "spec:\n  $setElementOrder/containers:\n  - name: b\n  - name: a\n"
	       "  containers:\n  - name: a\n    image: x\n",
	       "spec:\n  containers:\n  - name: b\n  - name: a\n    image: x\n");
	expect("Pod", "spec:\n  containers:\n  - name: a\n  - name: s\n  - name: b\n",
	       "spec:\n  $setElementOrder/containers:\n  - name: b\n  - name: a\n",
	       "spec:\n  containers:\n  - name: b\n  - name: s\n  - name: a\n");
	expect("Pod", "metadata:\n  finalizers: [a, b, c]\n",
	       "metadata:\n  $setElementOrder/finalizers: [c, a, b, d]\n  finalizers: [d]\n",
	       "metadata:\n  finalizers: [c, a, b, d]\n");
}

/* The body kubectl apply sends on a changed image (kubectl-wire.md). */
static void test_kubectl_apply_body(void **state)
{
	(void)state;
	json_t *t = y("kind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n  - name: main\n"
		      "    image: nginx:1.25\n    ports:\n    - containerPort: 80\n      protocol: TCP\n"
		      "  restartPolicy: Always\n");
	json_t *p = json_loads("{\"spec\":{\"$setElementOrder/containers\":[{\"name\":\"main\"}],"
			       "\"containers\":[{\"image\":\"nginx:1.26\",\"name\":\"main\"}]}}", 0, NULL);
	json_t *out = NULL;
	char errmsg[CAP_ERRMSG_SIZE];

	assert_int_equal(patch_strategic(t, p, "Pod", &out, errmsg), CAP_OK);
	assert_string_equal(json_string_value(patch_pointer_get(out, "/spec/containers/0/image")),
			    "nginx:1.26");
	assert_int_equal(json_integer_value(patch_pointer_get(out, "/spec/containers/0/ports/0/containerPort")),
			 80);
	assert_string_equal(json_string_value(patch_pointer_get(out, "/spec/restartPolicy")), "Always");
	assert_null(patch_pointer_get(out, "/spec/$setElementOrder~1containers"));
	json_decref(out);
	json_decref(t);
	json_decref(p);
}

/* kubectl rollout restart adds a template annotation; kubectl set image patches one container. */
static void test_kubectl_rollout_restart_and_set_image(void **state)
{
	(void)state;
	expect("Deployment",
	       "spec:\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n"
	       "      containers:\n      - {name: web, image: nginx:1}\n      - {name: side, image: busybox}\n",
	       "spec:\n  template:\n    metadata:\n      annotations:\n"
	       "        kubectl.kubernetes.io/restartedAt: '2026-11-27T00:00:00Z'\n"
	       "    spec:\n      containers:\n      - {name: web, image: nginx:2}\n",
	       "spec:\n  template:\n    metadata:\n      labels: {app: web}\n      annotations:\n"
	       "        kubectl.kubernetes.io/restartedAt: '2026-11-27T00:00:00Z'\n    spec:\n"
	       "      containers:\n      - {name: web, image: nginx:2}\n      - {name: side, image: busybox}\n");
}

/* Nested lists merge by their own keys: ports by containerPort, env by name,
 * volumeMounts by mountPath; args have no strategy and are replaced. */
static void test_nested_keys(void **state)
{
	(void)state;
	expect("Pod",
	       "spec:\n  containers:\n  - name: c\n    args: [a, b]\n    ports:\n    - {containerPort: 80, name: http}\n"
	       "    env:\n    - {name: A, value: '1'}\n    - {name: B, value: '2'}\n"
	       "    volumeMounts:\n    - {mountPath: /data, name: d}\n",
	       "spec:\n  containers:\n  - name: c\n    args: [z]\n    ports:\n    - {containerPort: 443}\n"
	       "    - {containerPort: 80, name: web}\n    env:\n    - {name: B, value: '3'}\n"
	       "    - {name: A, $patch: delete}\n    volumeMounts:\n    - {mountPath: /data, readOnly: true}\n",
	       "spec:\n  containers:\n  - name: c\n    args: [z]\n    ports:\n    - {containerPort: 80, name: web}\n"
	       "    - {containerPort: 443}\n    env:\n    - {name: B, value: '3'}\n"
	       "    volumeMounts:\n    - {mountPath: /data, name: d, readOnly: true}\n");
}

/* A Service's ports merge by port; a Pod's status conditions merge by type. */
static void test_service_ports_and_conditions(void **state)
{
	(void)state;
	expect("Service", "spec:\n  ports:\n  - {port: 80, targetPort: 8080}\n  - {port: 443}\n",
	       "spec:\n  ports:\n  - {port: 80, targetPort: 9090}\n",
	       "spec:\n  ports:\n  - {port: 80, targetPort: 9090}\n  - {port: 443}\n");
	expect("Pod",
	       "status:\n  conditions:\n  - {type: PodScheduled, status: 'True'}\n  - {type: Ready, status: 'False'}\n",
	       "status:\n  conditions:\n  - {type: Ready, status: 'True'}\n",
	       "status:\n  conditions:\n  - {type: PodScheduled, status: 'True'}\n  - {type: Ready, status: 'True'}\n");
	/* A Service has no containers: its "ports" key differs from a container's. */
	expect("Service", "spec:\n  ports:\n  - {port: 80}\n", "spec:\n  ports:\n  - {port: 81}\n",
	       "spec:\n  ports:\n  - {port: 80}\n  - {port: 81}\n");
}

/* null deletes a key at any depth; maps of unknown kinds merge like merge patch. */
static void test_null_deletes(void **state)
{
	(void)state;
	expect("ConfigMap", "metadata:\n  labels: {a: '1', b: '2'}\ndata: {x: '1', y: '2'}\n",
	       "metadata:\n  labels: {a: null}\ndata: {y: null, z: '3'}\n",
	       "metadata:\n  labels: {b: '2'}\ndata: {x: '1', z: '3'}\n");
}

/* Owner references merge by uid; CronJob pod templates sit deeper. */
static void test_owner_refs_and_cronjob(void **state)
{
	(void)state;
	expect("ReplicaSet", "metadata:\n  ownerReferences:\n  - {uid: u1, name: a}\n",
	       "metadata:\n  ownerReferences:\n  - {uid: u2, name: b}\n",
	       "metadata:\n  ownerReferences:\n  - {uid: u1, name: a}\n  - {uid: u2, name: b}\n");
	expect("CronJob",
	       "spec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n"
	       "          - {name: a, image: x}\n",
	       "spec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n"
	       "          - {name: b, image: y}\n",
	       "spec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n"
	       "          - {name: a, image: x}\n          - {name: b, image: y}\n");
}

/* Malformed directives are refused with a message. */
static void test_errors(void **state)
{
	(void)state;
	const char *bad[] = {
		"spec:\n  containers:\n  - image: nginx\n",
		"spec:\n  $patch: frobnicate\n",
		"spec:\n  $retainKeys: type\n",
		"spec:\n  $setElementOrder/containers: x\n",
		NULL,
	};
	for (int i = 0; bad[i] != NULL; i++) {
		char errmsg[CAP_ERRMSG_SIZE] = "";
		json_t *t = y("spec:\n  containers:\n  - {name: a}\n"), *p = y(bad[i]), *out = NULL;
		if (patch_strategic(t, p, "Pod", &out, errmsg) != CAP_EINVAL)
			fail_msg("accepted %s", bad[i]);
		assert_true(errmsg[0] != '\0');
		assert_null(out);
		json_decref(t);
		json_decref(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_docs_containers_merged_by_name),
		cmocka_unit_test(test_docs_tolerations_replaced),
		cmocka_unit_test(test_docs_merge_patch_contrast),
		cmocka_unit_test(test_docs_retain_keys),
		cmocka_unit_test(test_patch_delete_element),
		cmocka_unit_test(test_patch_replace_list),
		cmocka_unit_test(test_patch_replace_and_delete_map),
		cmocka_unit_test(test_delete_from_primitive_list),
		cmocka_unit_test(test_finalizers_set),
		cmocka_unit_test(test_set_element_order),
		cmocka_unit_test(test_kubectl_apply_body),
		cmocka_unit_test(test_kubectl_rollout_restart_and_set_image),
		cmocka_unit_test(test_nested_keys),
		cmocka_unit_test(test_service_ports_and_conditions),
		cmocka_unit_test(test_null_deletes),
		cmocka_unit_test(test_owner_refs_and_cronjob),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
