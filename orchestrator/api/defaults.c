/* defaults.c — Kubernetes defaulting of the built-in resources: what the
 * SetDefaults_* functions and the DefaultTolerationSeconds admission plugin
 * fill in, so that objects read back as they do from a real API server. */
#include "orchestrator/api/defaults.h"

#include <stdbool.h>
#include <string.h>

/* Sets obj[key] to v (a new reference, consumed) unless obj already has a
 * non-null value there. */
static void set_default(json_t *obj, const char *key, json_t *v)
{
	json_t *have = json_object_get(obj, key);

	if (!json_is_object(obj) || (have != NULL && !json_is_null(have))) {
		json_decref(v);
		return;
	}
	json_object_set_new(obj, key, v);
}

/* obj[key] as an object, created empty when absent; NULL if obj is not an
 * object or the member has another type. Borrowed. */
static json_t *child(json_t *obj, const char *key)
{
	json_t *c;

	if (!json_is_object(obj))
		return NULL;
	c = json_object_get(obj, key);
	if (c == NULL || json_is_null(c)) {
		c = json_object();
		json_object_set_new(obj, key, c);
	}
	return json_is_object(c) ? c : NULL;
}

/* Always for ":latest" or no tag, IfNotPresent otherwise (a digest counts
 * as pinned). A registry port ("host:5000/app") is not a tag. */
static const char *pull_policy(const char *image)
{
	const char *slash, *colon;

	if (image == NULL)
		return "IfNotPresent";
	if (strchr(image, '@') != NULL)
		return "IfNotPresent";
	slash = strrchr(image, '/');
	colon = strrchr(slash != NULL ? slash : image, ':');
	if (colon == NULL || strcmp(colon, ":latest") == 0)
		return "Always";
	return "IfNotPresent";
}

static void probe_defaults(json_t *probe)
{
	json_t *http;

	if (!json_is_object(probe))
		return;
	set_default(probe, "timeoutSeconds", json_integer(1));
	set_default(probe, "periodSeconds", json_integer(10));
	set_default(probe, "successThreshold", json_integer(1));
	set_default(probe, "failureThreshold", json_integer(3));
	http = json_object_get(probe, "httpGet");
	if (json_is_object(http)) {
		set_default(http, "scheme", json_string("HTTP"));
		set_default(http, "path", json_string("/"));
	}
}

static void container_defaults(json_t *c)
{
	json_t *p, *e;
	size_t i;

	if (!json_is_object(c))
		return;
	set_default(c, "imagePullPolicy",
		    json_string(pull_policy(json_string_value(json_object_get(c, "image")))));
	set_default(c, "terminationMessagePath", json_string("/dev/termination-log"));
	set_default(c, "terminationMessagePolicy", json_string("File"));
	set_default(c, "resources", json_object());
	json_array_foreach(json_object_get(c, "ports"), i, p)
		if (json_is_object(p))
			set_default(p, "protocol", json_string("TCP"));
	json_array_foreach(json_object_get(c, "env"), i, e) {
		json_t *fr = json_object_get(json_object_get(e, "valueFrom"), "fieldRef");
		if (json_is_object(fr))
			set_default(fr, "apiVersion", json_string("v1"));
	}
	probe_defaults(json_object_get(c, "livenessProbe"));
	probe_defaults(json_object_get(c, "readinessProbe"));
	probe_defaults(json_object_get(c, "startupProbe"));
}

static void volume_defaults(json_t *v)
{
	static const char *const modes[] = { "secret", "configMap", "downwardAPI", "projected" };
	json_t *src;

	if (!json_is_object(v))
		return;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		src = json_object_get(v, modes[i]);
		if (json_is_object(src))
			set_default(src, "defaultMode", json_integer(420));
	}
	src = json_object_get(v, "hostPath");
	if (json_is_object(src))
		set_default(src, "type", json_string(""));
}

void defaults_pod_spec(json_t *spec)
{
	json_t *c;
	size_t i;

	if (!json_is_object(spec))
		return;
	set_default(spec, "restartPolicy", json_string("Always"));
	set_default(spec, "dnsPolicy", json_string("ClusterFirst"));
	set_default(spec, "schedulerName", json_string("default-scheduler"));
	set_default(spec, "terminationGracePeriodSeconds", json_integer(30));
	set_default(spec, "securityContext", json_object());
	set_default(spec, "enableServiceLinks", json_true());
	json_array_foreach(json_object_get(spec, "containers"), i, c)
		container_defaults(c);
	json_array_foreach(json_object_get(spec, "initContainers"), i, c)
		container_defaults(c);
	json_array_foreach(json_object_get(spec, "volumes"), i, c)
		volume_defaults(c);
}

/* Whether a toleration already covers the NoExecute taint with this key. */
static bool tolerates(json_t *tolerations, const char *key)
{
	json_t *t;
	size_t i;

	json_array_foreach(tolerations, i, t) {
		const char *k = json_string_value(json_object_get(t, "key"));
		const char *op = json_string_value(json_object_get(t, "operator"));
		const char *eff = json_string_value(json_object_get(t, "effect"));
		bool key_ok = (k == NULL || *k == '\0') ? (op != NULL && strcmp(op, "Exists") == 0) :
							 strcmp(k, key) == 0;
		bool eff_ok = eff == NULL || *eff == '\0' || strcmp(eff, "NoExecute") == 0;
		if (key_ok && eff_ok)
			return true;
	}
	return false;
}

/* DefaultTolerationSeconds: pods stay 300 s on a node that turned
 * not-ready or unreachable, unless they say otherwise. */
static void default_tolerations(json_t *spec)
{
	static const char *const keys[] = { "node.kubernetes.io/not-ready",
					    "node.kubernetes.io/unreachable" };
	json_t *tols = json_object_get(spec, "tolerations");

	if (tols == NULL || json_is_null(tols)) {
		tols = json_array();
		json_object_set_new(spec, "tolerations", tols);
	}
	if (!json_is_array(tols))
		return;
	for (size_t i = 0; i < 2; i++)
		if (!tolerates(tols, keys[i]))
			json_array_append_new(tols, json_pack("{s:s, s:s, s:s, s:i}", "key", keys[i],
							      "operator", "Exists", "effect",
							      "NoExecute", "tolerationSeconds", 300));
}

/* The QoS class the API server records at creation: Guaranteed when every
 * container limits cpu and memory with requests equal to the limits,
 * BestEffort when none asks for anything, Burstable otherwise. */
static const char *qos_class(json_t *spec)
{
	bool any = false, guaranteed = true;
	json_t *c;
	size_t i;

	json_array_foreach(json_object_get(spec, "containers"), i, c) {
		json_t *res = json_object_get(c, "resources");
		json_t *req = json_object_get(res, "requests");
		json_t *lim = json_object_get(res, "limits");
		if (json_object_size(req) > 0 || json_object_size(lim) > 0)
			any = true;
		const char *names[] = { "cpu", "memory" };
		for (size_t n = 0; n < 2; n++) {
			json_t *l = json_object_get(lim, names[n]);
			json_t *r = json_object_get(req, names[n]);
			if (l == NULL || (r != NULL && !json_equal(l, r)))
				guaranteed = false;
		}
	}
	if (!any)
		return "BestEffort";
	return guaranteed ? "Guaranteed" : "Burstable";
}

static void pod_defaults(json_t *pod)
{
	json_t *spec = child(pod, "spec");
	json_t *status;
	json_t *c;
	size_t i;

	if (spec == NULL)
		return;
	defaults_pod_spec(spec);
	/* Limits without requests imply equal requests. */
	json_array_foreach(json_object_get(spec, "containers"), i, c) {
		json_t *res = json_object_get(c, "resources");
		json_t *lim = json_object_get(res, "limits");
		const char *k;
		json_t *v;
		if (json_object_size(lim) == 0)
			continue;
		json_t *req = child(res, "requests");
		json_object_foreach(lim, k, v)
			set_default(req, k, json_incref(v));
	}
	default_tolerations(spec);
	status = child(pod, "status");
	if (status != NULL) {
		set_default(status, "phase", json_string("Pending"));
		set_default(status, "qosClass", json_string(qos_class(spec)));
	}
}

static void template_defaults(json_t *obj)
{
	json_t *tmpl = json_object_get(json_object_get(obj, "spec"), "template");

	if (json_is_object(tmpl))
		defaults_pod_spec(child(tmpl, "spec"));
}

static void deployment_defaults(json_t *d)
{
	json_t *spec = child(d, "spec");
	json_t *strategy;
	const char *type;

	if (spec == NULL)
		return;
	set_default(spec, "replicas", json_integer(1));
	set_default(spec, "revisionHistoryLimit", json_integer(10));
	set_default(spec, "progressDeadlineSeconds", json_integer(600));
	strategy = child(spec, "strategy");
	if (strategy != NULL) {
		set_default(strategy, "type", json_string("RollingUpdate"));
		type = json_string_value(json_object_get(strategy, "type"));
		if (type != NULL && strcmp(type, "RollingUpdate") == 0) {
			json_t *ru = child(strategy, "rollingUpdate");
			set_default(ru, "maxUnavailable", json_string("25%"));
			set_default(ru, "maxSurge", json_string("25%"));
		}
	}
	template_defaults(d);
}

static void replicaset_defaults(json_t *rs)
{
	json_t *spec = child(rs, "spec");

	if (spec == NULL)
		return;
	set_default(spec, "replicas", json_integer(1));
	template_defaults(rs);
}

static void daemonset_defaults(json_t *ds)
{
	json_t *spec = child(ds, "spec");
	json_t *us;
	const char *type;

	if (spec == NULL)
		return;
	set_default(spec, "revisionHistoryLimit", json_integer(10));
	us = child(spec, "updateStrategy");
	if (us != NULL) {
		set_default(us, "type", json_string("RollingUpdate"));
		type = json_string_value(json_object_get(us, "type"));
		if (type != NULL && strcmp(type, "RollingUpdate") == 0) {
			json_t *ru = child(us, "rollingUpdate");
			set_default(ru, "maxUnavailable", json_integer(1));
			set_default(ru, "maxSurge", json_integer(0));
		}
	}
	template_defaults(ds);
}

static void statefulset_defaults(json_t *ss)
{
	json_t *spec = child(ss, "spec");
	json_t *us;

	if (spec == NULL)
		return;
	set_default(spec, "replicas", json_integer(1));
	set_default(spec, "podManagementPolicy", json_string("OrderedReady"));
	set_default(spec, "revisionHistoryLimit", json_integer(10));
	us = child(spec, "updateStrategy");
	if (us != NULL) {
		set_default(us, "type", json_string("RollingUpdate"));
		const char *type = json_string_value(json_object_get(us, "type"));
		if (type != NULL && strcmp(type, "RollingUpdate") == 0)
			set_default(child(us, "rollingUpdate"), "partition", json_integer(0));
	}
	json_t *ret = child(spec, "persistentVolumeClaimRetentionPolicy");
	set_default(ret, "whenDeleted", json_string("Retain"));
	set_default(ret, "whenScaled", json_string("Retain"));
	template_defaults(ss);
}

static void job_defaults(json_t *job)
{
	json_t *spec = child(job, "spec");

	if (spec == NULL)
		return;
	set_default(spec, "completions", json_integer(1));
	set_default(spec, "parallelism", json_integer(1));
	set_default(spec, "backoffLimit", json_integer(6));
	set_default(spec, "completionMode", json_string("NonIndexed"));
	set_default(spec, "suspend", json_false());
	template_defaults(job);
}

static void service_defaults(json_t *svc)
{
	json_t *spec = child(svc, "spec");
	json_t *p;
	size_t i;
	const char *type;

	if (spec == NULL)
		return;
	set_default(spec, "type", json_string("ClusterIP"));
	type = json_string_value(json_object_get(spec, "type"));
	if (type == NULL)
		type = "";
	set_default(spec, "sessionAffinity", json_string("None"));
	json_array_foreach(json_object_get(spec, "ports"), i, p) {
		if (!json_is_object(p))
			continue;
		set_default(p, "protocol", json_string("TCP"));
		/* targetPort defaults to the port itself. */
		json_t *port = json_object_get(p, "port");
		if (json_is_integer(port))
			set_default(p, "targetPort", json_incref(port));
	}
	if (strcmp(type, "ExternalName") == 0)
		return;
	set_default(spec, "ipFamilies", json_pack("[s]", "IPv4"));
	set_default(spec, "ipFamilyPolicy", json_string("SingleStack"));
	set_default(spec, "internalTrafficPolicy", json_string("Cluster"));
	if (strcmp(type, "NodePort") == 0 || strcmp(type, "LoadBalancer") == 0)
		set_default(spec, "externalTrafficPolicy", json_string("Cluster"));
	if (strcmp(type, "LoadBalancer") == 0)
		set_default(spec, "allocateLoadBalancerNodePorts", json_true());
}

static void namespace_defaults(json_t *ns)
{
	json_t *meta = child(ns, "metadata");
	json_t *name = json_object_get(meta, "name");

	set_default(child(ns, "spec"), "finalizers", json_pack("[s]", "kubernetes"));
	set_default(child(ns, "status"), "phase", json_string("Active"));
	/* Since 1.21 every namespace carries its own name as a label, so
	 * selectors can pick namespaces by name. */
	if (json_is_string(name))
		set_default(child(meta, "labels"), "kubernetes.io/metadata.name", json_incref(name));
}

static void pv_defaults(json_t *pv)
{
	json_t *spec = child(pv, "spec");

	set_default(spec, "persistentVolumeReclaimPolicy", json_string("Retain"));
	set_default(spec, "volumeMode", json_string("Filesystem"));
	set_default(child(pv, "status"), "phase", json_string("Pending"));
}

static void pvc_defaults(json_t *pvc)
{
	set_default(child(pvc, "spec"), "volumeMode", json_string("Filesystem"));
	set_default(child(pvc, "status"), "phase", json_string("Pending"));
}

void defaults_apply(const char *resource, json_t *obj)
{
	if (resource == NULL || !json_is_object(obj))
		return;
	if (strcmp(resource, "pods") == 0)
		pod_defaults(obj);
	else if (strcmp(resource, "deployments") == 0)
		deployment_defaults(obj);
	else if (strcmp(resource, "replicasets") == 0)
		replicaset_defaults(obj);
	else if (strcmp(resource, "daemonsets") == 0)
		daemonset_defaults(obj);
	else if (strcmp(resource, "statefulsets") == 0)
		statefulset_defaults(obj);
	else if (strcmp(resource, "jobs") == 0)
		job_defaults(obj);
	else if (strcmp(resource, "services") == 0)
		service_defaults(obj);
	else if (strcmp(resource, "namespaces") == 0)
		namespace_defaults(obj);
	else if (strcmp(resource, "secrets") == 0)
		set_default(obj, "type", json_string("Opaque"));
	else if (strcmp(resource, "persistentvolumes") == 0)
		pv_defaults(obj);
	else if (strcmp(resource, "persistentvolumeclaims") == 0)
		pvc_defaults(obj);
}
