/* pod_json.c — see pod_json.h.
 *
 * The object is built as a tree, section by section in the order a real
 * pod gains them as it goes from a bare spec to a running, managed object,
 * until it is as large as asked; the environment then grows it the rest of
 * the way. Every string that differs between real pods differs here too. */
#include "client/pod_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* splitmix64: a seed in, well-spread numbers out. */
static uint64_t next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static void hex(uint64_t *s, char *out, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++)
		out[i] = digits[next(s) & 15];
	out[n] = '\0';
}

/* The letters and digits Kubernetes uses for generated name suffixes. */
static void suffix(uint64_t *s, char *out, size_t n)
{
	static const char alnum[] = "bcdfghjklmnpqrstvwxz2456789";
	for (size_t i = 0; i < n; i++)
		out[i] = alnum[next(s) % (sizeof(alnum) - 1)];
	out[n] = '\0';
}

static void uuid(uint64_t *s, char out[37])
{
	char h[33];
	hex(s, h, 32);
	snprintf(out, 37, "%.8s-%.4s-4%.3s-a%.3s-%.12s", h, h + 8, h + 13, h + 17, h + 20);
}

static void timestamp(uint64_t *s, char out[21])
{
	uint64_t v = next(s);
	snprintf(out, 21, "2026-%02u-%02uT%02u:%02u:%02uZ", (unsigned)(v % 12 + 1),
		 (unsigned)(v / 12 % 28 + 1), (unsigned)(v / 336 % 24), (unsigned)(v / 8064 % 60),
		 (unsigned)(v / 483840 % 60));
}

static size_t size_of(const json_t *o)
{
	return json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

static const char *const apps[] = {"web", "api", "worker", "cache", "gateway", "billing",
				   "search", "auth"};
static const char *const words[] = {"enabled", "primary", "eu-west-1", "json", "info",
				    "https", "postgres", "replica", "v2", "strict"};

/* What every pod shares and what tells it apart. */
struct pod {
	uint64_t s;
	const char *app;
	unsigned team, node, port;
	char uid[37], owner[37], t0[21], t1[21], rs[11], sfx[6], vol[6];
	json_t *obj, *meta, *spec, *ctr, *status;
};

static void sec_owner(struct pod *p)
{
	json_object_set_new(p->meta, "generateName", json_sprintf("%s-%s-", p->app, p->rs));
	json_object_set_new(json_object_get(p->meta, "labels"), "pod-template-hash",
			    json_string(p->rs));
	json_object_set_new(p->meta, "ownerReferences",
			    json_pack("[{s:s, s:s, s:o, s:s, s:b, s:b}]", "apiVersion", "apps/v1",
				      "kind", "ReplicaSet", "name", json_sprintf("%s-%s", p->app, p->rs),
				      "uid", p->owner, "controller", 1, "blockOwnerDeletion", 1));
}

static void sec_spec(struct pod *p)
{
	unsigned cpu = (unsigned)(next(&p->s) % 8 + 1), mem = (unsigned)(next(&p->s) % 8 + 1);
	json_object_set_new(p->ctr, "ports",
			    json_pack("[{s:i, s:s}]", "containerPort", (json_int_t)p->port,
				      "protocol", "TCP"));
	json_object_set_new(p->ctr, "resources",
			    json_pack("{s:{s:o, s:o}, s:{s:o, s:o}}", "limits", "cpu",
				      json_sprintf("%um", cpu * 250), "memory", json_sprintf("%uMi", mem * 256),
				      "requests", "cpu", json_sprintf("%um", cpu * 100), "memory",
				      json_sprintf("%uMi", mem * 128)));
	json_object_set_new(p->ctr, "terminationMessagePath", json_string("/dev/termination-log"));
	json_object_set_new(p->ctr, "terminationMessagePolicy", json_string("File"));
	json_object_set_new(p->spec, "terminationGracePeriodSeconds", json_integer(30));
	json_object_set_new(p->spec, "dnsPolicy", json_string("ClusterFirst"));
	json_object_set_new(p->spec, "serviceAccountName", json_string("default"));
	json_object_set_new(p->spec, "serviceAccount", json_string("default"));
	json_object_set_new(p->spec, "securityContext", json_object());
	json_object_set_new(p->spec, "schedulerName", json_string("default-scheduler"));
	json_object_set_new(p->spec, "priority", json_integer(0));
	json_object_set_new(p->spec, "enableServiceLinks", json_true());
	json_object_set_new(p->spec, "preemptionPolicy", json_string("PreemptLowerPriority"));
}

static void sec_status(struct pod *p)
{
	char digest[65], cid[65];
	json_t *conds = json_array();
	static const char *const types[] = {"Initialized", "Ready", "ContainersReady",
					    "PodScheduled"};
	hex(&p->s, digest, 64);
	hex(&p->s, cid, 64);
	for (size_t i = 0; i < 4; i++)
		json_array_append_new(conds, json_pack("{s:s, s:s, s:n, s:s}", "type", types[i],
						       "status", "True", "lastProbeTime",
						       "lastTransitionTime", i % 2 ? p->t1 : p->t0));
	json_object_set_new(p->status, "conditions", conds);
	json_object_set_new(
		p->status, "containerStatuses",
		json_pack("[{s:s, s:{s:{s:s}}, s:{}, s:b, s:i, s:o, s:o, s:o, s:b}]", "name", p->app,
			  "state", "running", "startedAt", p->t1, "lastState", "ready", 1,
			  "restartCount", (json_int_t)(next(&p->s) % 3), "image",
			  json_sprintf("registry.example.com/team-%u/%s:v%u.%u", p->team, p->app,
			      (unsigned)(p->s % 4), (unsigned)(p->s / 4 % 30)),
			  "imageID",
			  json_sprintf("registry.example.com/team-%u/%s@sha256:%s", p->team, p->app, digest),
			  "containerID", json_sprintf("containerd://%s", cid), "started", 1));
	json_object_set_new(p->status, "qosClass", json_string("Burstable"));
}

static void sec_volumes(struct pod *p)
{
	json_object_set_new(
		p->spec, "volumes",
		json_pack("[{s:o, s:{s:[{s:{s:i, s:s}}, {s:{s:s, s:[{s:s, s:s}]}}], s:i}}]",
			  "name", json_sprintf("kube-api-access-%s", p->vol), "projected", "sources",
			  "serviceAccountToken", "expirationSeconds", (json_int_t)3607, "path",
			  "token", "configMap", "name", "kube-root-ca.crt", "items", "key", "ca.crt",
			  "path", "ca.crt", "defaultMode", (json_int_t)420));
	json_object_set_new(p->ctr, "volumeMounts",
			    json_pack("[{s:o, s:b, s:s}]", "name",
				      json_sprintf("kube-api-access-%s", p->vol), "readOnly", 1, "mountPath",
				      "/var/run/secrets/kubernetes.io/serviceaccount"));
	json_object_set_new(
		p->spec, "tolerations",
		json_pack("[{s:s, s:s, s:s, s:i}, {s:s, s:s, s:s, s:i}]", "key",
			  "node.kubernetes.io/not-ready", "operator", "Exists", "effect",
			  "NoExecute", "tolerationSeconds", (json_int_t)300, "key",
			  "node.kubernetes.io/unreachable", "operator", "Exists", "effect",
			  "NoExecute", "tolerationSeconds", (json_int_t)300));
}

/* managedFields as the API server records them: the controller that made
 * the pod owns its spec, the kubelet its status. */
static void sec_managed(struct pod *p)
{
	char ctr[96];
	snprintf(ctr, sizeof ctr, "k:{\"name\":\"%s\"}", p->app);
	json_t *spec_fields = json_pack(
		"{s:{s:{s:{}, s:{}, s:{}, s:{s:{}, s:{}}, s:{}, s:{}, s:{}, s:{}}}, s:{}, s:{}, "
		"s:{}, s:{}, s:{}, s:{}, s:{}, s:{}}",
		"f:containers", ctr, ".", "f:image", "f:imagePullPolicy", "f:ports", "f:resources",
		"f:limits", "f:requests", "f:terminationMessagePath", "f:terminationMessagePolicy",
		"f:volumeMounts", "f:name", "f:dnsPolicy", "f:enableServiceLinks",
		"f:restartPolicy", "f:schedulerName", "f:securityContext",
		"f:terminationGracePeriodSeconds", "f:tolerations", "f:volumes");
	json_t *meta_fields = json_pack("{s:{}, s:{s:{}, s:{}}, s:{s:{}}}", "f:generateName",
					"f:labels", "f:app", "f:pod-template-hash",
					"f:ownerReferences", "k:{\"uid\":\"owner\"}");
	json_t *status_fields = json_pack(
		"{s:{s:{s:{}, s:{}, s:{}}, s:{s:{}, s:{}, s:{}}}, s:{}, s:{}, s:{}, s:{}, s:{}}",
		"f:conditions", "k:{\"type\":\"Ready\"}", ".", "f:lastTransitionTime", "f:status",
		"k:{\"type\":\"PodScheduled\"}", ".", "f:lastTransitionTime", "f:status",
		"f:containerStatuses", "f:hostIP", "f:phase", "f:podIP", "f:startTime");
	json_object_set_new(
		p->meta, "managedFields",
		json_pack("[{s:s, s:s, s:s, s:s, s:s, s:{s:o, s:o}}, "
			  "{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:o}}]",
			  "manager", "kube-controller-manager", "operation", "Update", "apiVersion",
			  "v1", "time", p->t0, "fieldsType", "FieldsV1", "fieldsV1", "f:metadata",
			  meta_fields, "f:spec", spec_fields, "manager", "kubelet", "operation",
			  "Update", "apiVersion", "v1", "time", p->t1, "fieldsType", "FieldsV1",
			  "subresource", "status", "fieldsV1", "f:status", status_fields));
}

static void add_env(struct pod *p, json_t *env, unsigned i)
{
	uint64_t v = next(&p->s);
	const char *w = words[v % (sizeof(words) / sizeof(words[0]))];
	char tok[17];
	switch (v / 16 % 4) {
	case 0:
		json_array_append_new(
			env, json_pack("{s:o, s:o}", "name", json_sprintf("%s_%u_URL", p->app, i), "value",
				       json_sprintf("https://%s-%u.team-%u.svc.cluster.local:%u/%s", w,
					   (unsigned)(v / 64 % 100), p->team,
					   (unsigned)(v / 6400 % 10000), w)));
		break;
	case 1:
		json_array_append_new(env, json_pack("{s:o, s:o}", "name",
						     json_sprintf("%s_%u_LIMIT", p->app, i), "value",
						     json_sprintf("%u", (unsigned)(v / 64 % 100000))));
		break;
	case 2:
		hex(&p->s, tok, 16);
		json_array_append_new(env, json_pack("{s:o, s:{s:{s:o, s:s}}}", "name",
						     json_sprintf("%s_%u_KEY", p->app, i), "valueFrom",
						     "secretKeyRef", "name",
						     json_sprintf("%s-%s", p->app, tok), "key", w));
		break;
	default:
		json_array_append_new(env, json_pack("{s:o, s:s}", "name",
						     json_sprintf("%s_%u_MODE", p->app, i), "value", w));
		break;
	}
}

char *pod_json(uint64_t seed, size_t target, size_t *len)
{
	static void (*const sections[])(struct pod *) = {sec_owner, sec_spec, sec_status,
							 sec_volumes, sec_managed};
	struct pod p = {.s = seed};
	json_t *env;
	char *text;

	p.app = apps[next(&p.s) % (sizeof(apps) / sizeof(apps[0]))];
	p.team = (unsigned)(next(&p.s) % 40);
	p.node = (unsigned)(next(&p.s) % 200);
	p.port = 8000 + (unsigned)(next(&p.s) % 1000);
	uuid(&p.s, p.uid);
	uuid(&p.s, p.owner);
	timestamp(&p.s, p.t0);
	timestamp(&p.s, p.t1);
	suffix(&p.s, p.rs, 10);
	suffix(&p.s, p.sfx, 5);
	suffix(&p.s, p.vol, 5);

	p.ctr = json_pack("{s:s, s:o, s:s}", "name", p.app, "image",
			  json_sprintf("registry.example.com/team-%u/%s:v%u.%u", p.team, p.app,
			      (unsigned)(p.s % 4), (unsigned)(p.s / 4 % 30)),
			  "imagePullPolicy", "IfNotPresent");
	p.meta = json_pack("{s:o, s:o, s:s, s:o, s:s, s:{s:s, s:o}}", "name",
			   json_sprintf("%s-%s-%s", p.app, p.rs, p.sfx), "namespace", json_sprintf("team-%u", p.team),
			   "uid", p.uid, "resourceVersion",
			   json_sprintf("%llu", (unsigned long long)(next(&p.s) % 90000000 + 1000)),
			   "creationTimestamp", p.t0, "labels", "app", p.app, "team",
			   json_sprintf("team-%u", p.team));
	p.spec = json_pack("{s:[O], s:s, s:o}", "containers", p.ctr, "restartPolicy", "Always",
			   "nodeName", json_sprintf("node-%u", p.node));
	p.status = json_pack("{s:s, s:o, s:o, s:s}", "phase", "Running", "hostIP",
			     json_sprintf("10.0.%u.%u", p.node / 250, p.node % 250 + 2), "podIP",
			     json_sprintf("10.244.%u.%u", (unsigned)(next(&p.s) % 250),
				 (unsigned)(next(&p.s) % 250 + 2)),
			     "startTime", p.t0);
	p.obj = json_pack("{s:s, s:s, s:O, s:O, s:O}", "kind", "Pod", "apiVersion", "v1",
			  "metadata", p.meta, "spec", p.spec, "status", p.status);
	if (p.obj == NULL || p.ctr == NULL || p.meta == NULL || p.spec == NULL ||
	    p.status == NULL)
		goto fail;
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		if (size_of(p.obj) < target)
			sections[i](&p);
	env = json_array();
	json_object_set_new(p.ctr, "env", env);
	/* The environment grows the object to its size, a variable at a time;
	 * the serialised size is checked every few, as it costs a dump. */
	for (unsigned i = 0; size_of(p.obj) < target; ) {
		for (unsigned k = 0; k < 4; k++)
			add_env(&p, env, i++);
	}
	text = json_dumps(p.obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (text == NULL)
		goto fail;
	*len = strlen(text);
	json_decref(p.ctr);
	json_decref(p.meta);
	json_decref(p.spec);
	json_decref(p.status);
	json_decref(p.obj);
	return text;
fail:
	json_decref(p.ctr);
	json_decref(p.meta);
	json_decref(p.spec);
	json_decref(p.status);
	json_decref(p.obj);
	return NULL;
}
