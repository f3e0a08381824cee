/* agent.c — the node agent: node registration, lease heartbeat, the pod
 * loop (container lifecycles, restarts, probes, termination), status and
 * Events, and the log endpoint.
 *
 * Happy path: agent_start registers the Node (create, or patch the status
 * of an existing one), creates or renews its Lease every 10 s, recovers the
 * containers an earlier agent left running, and starts an informer on pods
 * with fieldSelector spec.nodeName=<node>. Once the informer has synced,
 * recovered containers are adopted by their pods (or killed when their pod
 * is gone) and every pod is synced: its containers are started through the
 * runtime, probed, restarted with back-off per restartPolicy, and the pod's
 * status is patched whenever it changes. A pod with deletionTimestamp is
 * terminated (preStop, SIGTERM, SIGKILL after the grace period) and then
 * deleted for good with gracePeriodSeconds=0.
 *
 * Failure modes: API calls that fail are retried from timers (registration,
 * lease) or by the next sync (status is re-sent when dirty); a container
 * that cannot start stays Waiting with the reason (ErrImagePull,
 * CreateContainerConfigError, ContainerCannotRun) and the other pods run
 * on. A pod deleted without a grace period (--force) has its containers
 * killed at once.
 *
 * The endpoint also serves exec (exec.c): the command runs with the
 * environment and working directory its container got. */
#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "lib/b64.h"
#include "lib/err.h"
#include "lib/http.h"
#include "lib/log.h"
#include "orchestrator/agent/agent.h"
#include "orchestrator/agent/backoff.h"
#include "orchestrator/agent/exec.h"
#include "orchestrator/agent/network.h"
#include "orchestrator/agent/probe.h"
#include "orchestrator/agent/proxy.h"
#include "orchestrator/agent/runtime.h"
#include "orchestrator/kube/informer.h"
#include "orchestrator/kube/kclient.h"

#define FORCED_GRACE_S 1
#define LOG_FOLLOW_MS 250

/* ---- container state machine ---- */

enum ctr_state { CTR_WAITING, CTR_RUNNING, CTR_TERMINATED };

/* Waiting may change its reason, start, or fail to run; Running only ends;
 * Terminated waits (back-off) or restarts. Nothing else is legal. */
static const bool ctr_transition_ok[3][3] = {
	[CTR_WAITING] = {[CTR_WAITING] = true, [CTR_RUNNING] = true, [CTR_TERMINATED] = true},
	[CTR_RUNNING] = {[CTR_TERMINATED] = true},
	[CTR_TERMINATED] = {[CTR_WAITING] = true, [CTR_RUNNING] = true},
};

struct term_info {
	bool set;
	int exit_code;
	int signal;
	char reason[32];
	char message[256];
	int64_t started_at, finished_at;
};

struct apod;

struct actr {
	struct apod *p;
	size_t index;
	char name[256];
	char image[512];
	enum ctr_state st;
	char reason[64];             /* waiting reason */
	char message[512];           /* waiting message */
	struct term_info term;       /* when CTR_TERMINATED */
	struct term_info last;       /* lastState */
	int64_t started_at;          /* of the running attempt (unix s) */
	uint64_t started_mono;       /* uv_now at start, for the back-off reset */
	unsigned restarts;
	bool ever_started;
	bool done;                   /* terminated for good (policy says no restart) */
	bool ready;
	bool started;                /* startup probe passed (or none) */
	bool restart_pending;
	bool liveness_kill;          /* being killed because liveness failed */
	struct backoff bo;
	uv_timer_t restart_timer;
	struct runtime_container *rc;
	struct probe_worker *liveness, *readiness, *startup;
};

struct apod {
	struct agent *a;
	struct apod *next;
	char uid[128], ns[256], name[256];
	json_t *pod;                 /* latest object from the informer */
	struct actr *ctrs;
	size_t n;
	int refs;                    /* outstanding API calls and handles */
	bool freed;                  /* unlinked: free when refs reach 0 */
	bool started;                /* first sync done (startTime set) */
	int64_t start_time;
	bool gone_from_api;          /* DELETED seen */
	bool terminating;
	bool final_delete_sent;
	int delete_attempts;
	bool kill_sent;
	uv_timer_t kill_timer;
	/* configMaps and secrets the env refers to */
	json_t *refs_data;           /* "configmap/<name>" or "secret/<name>" -> data|null */
	int refs_pending;
	bool refs_fetched;
	uv_timer_t retry_timer;
	/* status */
	char *last_status;           /* the last status sent, dumped */
	bool status_inflight;
	bool status_dirty;
	char ready_since[32], containers_ready_since[32], init_since[32];
	bool last_ready, last_containers_ready;
	char last_phase[16];
	/* the pod network (network.c): hostNetwork pods and HOST mode use the
	 * node's IP and no namespace */
	char ip[16];                 /* "" until the pod's network is set up */
	char netns[PATH_MAX];        /* "" for the node's network */
};

struct recovered {
	struct recovered *next;
	struct runtime_container *rc;
	char uid[128], name[256];
	unsigned attempt;
	int64_t started_at;
	bool running;
	struct runtime_exit exit;
};

struct log_follow;

struct agent {
	uv_loop_t *loop;
	char *server, *kubeconfig, *node, *data_dir, *image_dir, *token, *listen_host;
	int listen_port;
	bool simulate;
	unsigned lease_ms, status_ms;
	struct kclient *kc;
	struct runtime *rt;
	struct informer *inf;
	struct http_server *http;
	struct proxy *proxy;         /* the Service proxy, or NULL */
	uv_timer_t lease_timer, status_timer, sync_timer;
	bool node_registered;
	bool lease_exists;
	char node_uid[128];
	char ready_since[32];
	struct apod *pods;
	struct recovered *found;
	bool recovered;              /* found containers handed to their pods */
	struct log_follow *follows;
	struct exec_group execs;
	struct network *net;         /* NULL on hollow nodes */
	char node_ip[16];
	bool closing;
	int open_handles;
	void (*close_cb)(void *data);
	void *close_data;
};

static void pod_sync(struct apod *p);
static void node_patch_status(struct agent *a);
static void on_retry_timer(uv_timer_t *t);
static void pod_publish(struct apod *p);
static void pod_unref(struct apod *p);
static void ctr_on_exit(void *data, struct runtime_container *rc, const struct runtime_exit *e);

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static void fmt_time(int64_t secs, char *buf, size_t size)
{
	time_t t = (time_t)secs;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void now_rfc3339(char *buf, size_t size)
{
	fmt_time((int64_t)time(NULL), buf, size);
}

static void now_micro(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char base[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
	if ((size_t)snprintf(buf, size, "%s.%06ldZ", base, ts.tv_nsec / 1000) >= size)
		buf[0] = '\0';
}

static const char *jstr(json_t *o, const char *path)
{
	/* "a.b.c" through nested objects. */
	char key[128];
	const char *p = path;
	while (o != NULL) {
		size_t n = strcspn(p, ".");
		if (n >= sizeof key)
			return NULL;
		memcpy(key, p, n);
		key[n] = '\0';
		o = json_object_get(o, key);
		if (p[n] == '\0')
			return json_string_value(o);
		p += n + 1;
	}
	return NULL;
}

static json_t *jget(json_t *o, const char *a, const char *b)
{
	o = json_object_get(o, a);
	return b != NULL ? json_object_get(o, b) : o;
}

static void strv_free(char **v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* A growable NULL-terminated string vector. */
struct strv {
	char **v;
	size_t n, cap;
	bool oom;
};

static void strv_push(struct strv *s, const char *str)
{
	if (s->oom)
		return;
	if (s->n + 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		char **v = realloc(s->v, cap * sizeof *v);
		if (v == NULL) {
			s->oom = true;
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n] = strdup(str);
	if (s->v[s->n] == NULL) {
		s->oom = true;
		return;
	}
	s->n++;
	s->v[s->n] = NULL;
}

static void strv_set_env(struct strv *s, const char *name, const char *value)
{
	size_t nl = strlen(name);
	char *kv = malloc(nl + strlen(value) + 2);
	if (kv == NULL) {
		s->oom = true;
		return;
	}
	sprintf(kv, "%s=%s", name, value);
	for (size_t i = 0; i < s->n; i++) {
		if (strncmp(s->v[i], name, nl) == 0 && s->v[i][nl] == '=') {
			free(s->v[i]);
			s->v[i] = kv;
			return;
		}
	}
	strv_push(s, kv);
	free(kv);
}

static const char *strv_get_env(const struct strv *s, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < s->n; i++)
		if (strncmp(s->v[i], name, nl) == 0 && s->v[i][nl] == '=')
			return s->v[i] + nl + 1;
	return NULL;
}

/* Kubernetes' $(VAR) expansion in command and args; $$ escapes. */
static char *expand_vars(const char *in, const struct strv *env)
{
	size_t cap = strlen(in) + 64, n = 0;
	char *out = malloc(cap);
	if (out == NULL)
		return NULL;
	for (const char *p = in; *p != '\0';) {
		const char *val = NULL;
		size_t vl = 0, adv = 1;
		if (p[0] == '$' && p[1] == '$') {
			val = "$";
			vl = 1;
			adv = 2;
		} else if (p[0] == '$' && p[1] == '(') {
			const char *end = strchr(p + 2, ')');
			if (end != NULL) {
				char name[256];
				size_t len = (size_t)(end - p - 2);
				if (len < sizeof name) {
					memcpy(name, p + 2, len);
					name[len] = '\0';
					val = strv_get_env(env, name);
					if (val != NULL) {
						vl = strlen(val);
						adv = len + 3;
					}
				}
			}
		}
		if (val == NULL) {
			val = p;
			vl = 1;
		}
		if (n + vl + 1 > cap) {
			char *o;
			cap = (n + vl + 1) * 2;
			o = realloc(out, cap);
			if (o == NULL) {
				free(out);
				return NULL;
			}
			out = o;
		}
		memcpy(out + n, val, vl);
		n += vl;
		p += adv;
	}
	out[n] = '\0';
	return out;
}

/* ---- API calls with pod references ---- */

static void pod_ref(struct apod *p)
{
	p->refs++;
}

static void ignore_answer(void *data, int status, json_t *body)
{
	(void)data;
	(void)status;
	(void)body;
}

/* An Event about a pod (or one of its containers), as the kubelet posts. */
static void pod_event(struct apod *p, struct actr *c, const char *type, const char *reason,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void pod_event(struct apod *p, struct actr *c, const char *type, const char *reason,
		      const char *fmt, ...)
{
	char msg[1024], ts[32], name[400], fp[300];
	va_list ap;
	json_t *ev, *inv;
	unsigned long long r = ((unsigned long long)rand() << 32) ^ (unsigned long long)rand();
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	now_rfc3339(ts, sizeof ts);
	snprintf(name, sizeof name, "%s.%016llx", p->name, r);
	inv = json_pack("{s:s,s:s,s:s,s:s,s:s}", "kind", "Pod", "apiVersion", "v1", "namespace",
			p->ns, "name", p->name, "uid", p->uid);
	if (c != NULL) {
		snprintf(fp, sizeof fp, "spec.containers{%s}", c->name);
		json_object_set_new(inv, "fieldPath", json_string(fp));
	}
	ev = json_pack("{s:s,s:s,s:{s:s,s:s},s:o,s:s,s:s,s:s,s:{s:s,s:s},s:s,s:s,s:i,s:s,s:s}",
		       "apiVersion", "v1", "kind", "Event", "metadata", "name", name, "namespace",
		       p->ns, "involvedObject", inv, "reason", reason, "message", msg, "type",
		       type, "source", "component", "kubelet", "host", p->a->node,
		       "firstTimestamp", ts, "lastTimestamp", ts, "count", 1,
		       "reportingComponent", "kubelet", "reportingInstance", p->a->node);
	if (ev == NULL)
		return;
	if (kclient_create(p->a->kc, &KRES_EVENTS, p->ns, ev, ignore_answer, NULL) != 0)
		log_debug("cannot post event %s for %s/%s", reason, p->ns, p->name);
	json_decref(ev);
}

/* ---- the image catalog ---- */

/* "docker.io/library/busybox:1.36" -> "busybox". */
static void image_short_name(const char *image, char *out, size_t size)
{
	const char *slash = strrchr(image, '/');
	const char *base = slash ? slash + 1 : image;
	size_t n = strcspn(base, ":@");
	if (n >= size)
		n = size - 1;
	memcpy(out, base, n);
	out[n] = '\0';
}

static json_t *builtin_image(const char *name)
{
	if (strcmp(name, "busybox") == 0)
		return json_pack("{s:s,s:[s],s:[],s:[s],s:[s]}", "requires", "/bin/busybox", "wrap",
				 "/bin/busybox", "entrypoint", "cmd", "sh", "env",
				 "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	if (strcmp(name, "pause") == 0)
		return json_pack("{s:s,s:[],s:[s,s,s],s:[],s:[]}", "requires", "/bin/busybox",
				 "wrap", "entrypoint", "/bin/busybox", "sleep", "2147483647",
				 "cmd", "env");
	return NULL;
}

/* The catalog entry of an image: DIR/<name>.json from the image directory,
 * else the images/ directory next to the binary's source tree or install
 * prefix, else the built-in busybox and pause entries. New reference. */
static json_t *image_lookup(struct agent *a, const char *image)
{
	char name[256], path[PATH_MAX + 300], exe[PATH_MAX];
	const char *dirs[4];
	size_t nd = 0;
	ssize_t n;
	image_short_name(image, name, sizeof name);
	if (name[0] == '\0' || name[0] == '.')
		return NULL;
	if (a->image_dir != NULL)
		dirs[nd++] = a->image_dir;
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		char *slash;
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash != NULL)
			*slash = '\0';
	} else {
		exe[0] = '\0';
	}
	for (size_t i = 0; i < nd; i++) {
		json_t *j;
		snprintf(path, sizeof path, "%s/%s.json", dirs[i], name);
		j = json_load_file(path, 0, NULL);
		if (j != NULL)
			return j;
	}
	if (exe[0] != '\0') {
		static const char *const rel[] = {"../images", "../share/capstan/images",
						  "../../images"};
		for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
			json_t *j;
			snprintf(path, sizeof path, "%s/%s/%s.json", exe, rel[i], name);
			j = json_load_file(path, 0, NULL);
			if (j != NULL)
				return j;
		}
	}
	return builtin_image(name);
}

/* ---- env, command, volumes ---- */

static json_t *ref_data(struct apod *p, const char *kind, const char *name)
{
	char key[400];
	snprintf(key, sizeof key, "%s/%s", kind, name);
	return json_object_get(p->refs_data, key);
}

/* Builds the container's environment. Returns 0, or -1 with a message
 * (CreateContainerConfigError). */
static int build_env(struct apod *p, json_t *ctr, json_t *img, struct strv *env, char *msg,
		     size_t msize)
{
	size_t i;
	json_t *e;
	strv_set_env(env, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	json_array_foreach(json_object_get(img, "env"), i, e) {
		const char *s = json_string_value(e);
		const char *eq = s ? strchr(s, '=') : NULL;
		char name[256];
		if (eq == NULL || (size_t)(eq - s) >= sizeof name)
			continue;
		memcpy(name, s, (size_t)(eq - s));
		name[eq - s] = '\0';
		strv_set_env(env, name, eq + 1);
	}
	strv_set_env(env, "HOSTNAME", p->name);
	strv_set_env(env, "HOME", "/root");
	json_array_foreach(json_object_get(ctr, "envFrom"), i, e) {
		json_t *cm = json_object_get(e, "configMapRef"), *sec = json_object_get(e, "secretRef");
		const char *prefix = json_string_value(json_object_get(e, "prefix")) ?: "";
		bool optional = json_is_true(json_object_get(cm ? cm : sec, "optional"));
		const char *rname = jstr(cm ? cm : sec, "name");
		json_t *data;
		const char *k;
		json_t *v;
		if (rname == NULL)
			continue;
		data = ref_data(p, cm ? "configmap" : "secret", rname);
		if (!json_is_object(data)) {
			if (optional)
				continue;
			snprintf(msg, msize, "%s \"%s\" not found", cm ? "configmap" : "secret", rname);
			return -1;
		}
		json_object_foreach(data, k, v) {
			char name[512];
			snprintf(name, sizeof name, "%s%s", prefix, k);
			strv_set_env(env, name, json_string_value(v) ?: "");
		}
	}
	json_array_foreach(json_object_get(ctr, "env"), i, e) {
		const char *name = json_string_value(json_object_get(e, "name"));
		json_t *vf = json_object_get(e, "valueFrom");
		if (name == NULL)
			continue;
		if (json_is_object(vf)) {
			json_t *cmk = json_object_get(vf, "configMapKeyRef");
			json_t *sk = json_object_get(vf, "secretKeyRef");
			json_t *fr = json_object_get(vf, "fieldRef");
			if (cmk != NULL || sk != NULL) {
				json_t *ref = cmk ? cmk : sk;
				const char *kind = cmk ? "configmap" : "secret";
				const char *rname = jstr(ref, "name"), *key = jstr(ref, "key");
				json_t *data = rname ? ref_data(p, kind, rname) : NULL;
				const char *val = json_string_value(json_object_get(data, key ?: ""));
				if (val == NULL) {
					if (json_is_true(json_object_get(ref, "optional")))
						continue;
					if (!json_is_object(data))
						snprintf(msg, msize, "%s \"%s\" not found", kind,
							 rname ?: "");
					else
						snprintf(msg, msize,
							 "couldn't find key %s in %s %s/%s",
							 key ?: "", cmk ? "ConfigMap" : "Secret", p->ns,
							 rname);
					return -1;
				}
				strv_set_env(env, name, val);
			} else if (fr != NULL) {
				const char *fp = jstr(fr, "fieldPath") ?: "";
				const char *val = NULL;
				if (strcmp(fp, "metadata.name") == 0)
					val = p->name;
				else if (strcmp(fp, "metadata.namespace") == 0)
					val = p->ns;
				else if (strcmp(fp, "metadata.uid") == 0)
					val = p->uid;
				else if (strcmp(fp, "status.podIP") == 0 ||
					 strcmp(fp, "status.hostIP") == 0)
					val = fp[7] == 'p' ? p->ip : p->a->node_ip;
				else if (strcmp(fp, "spec.nodeName") == 0)
					val = p->a->node;
				else if (strcmp(fp, "spec.serviceAccountName") == 0)
					val = jstr(p->pod, "spec.serviceAccountName") ?: "default";
				else if (strncmp(fp, "metadata.labels['", 17) == 0 ||
					 strncmp(fp, "metadata.annotations['", 22) == 0) {
					bool lab = fp[9] == 'l';
					char key[256];
					const char *s = fp + (lab ? 17 : 22);
					size_t kl = strcspn(s, "'");
					if (kl < sizeof key) {
						memcpy(key, s, kl);
						key[kl] = '\0';
						val = json_string_value(json_object_get(
							jget(p->pod, "metadata",
							     lab ? "labels" : "annotations"), key));
					}
					if (val == NULL)
						val = "";
				}
				if (val == NULL) {
					snprintf(msg, msize, "unsupported fieldPath %s", fp);
					return -1;
				}
				strv_set_env(env, name, val);
			}
			continue;
		}
		{
			char *v = expand_vars(json_string_value(json_object_get(e, "value")) ?: "", env);
			if (v == NULL) {
				env->oom = true;
				break;
			}
			strv_set_env(env, name, v);
			free(v);
		}
	}
	/* Volumes are mounted at their mountPath when the agent runs as root
	 * (volume_mounts); each mount's host directory is also given to the
	 * container in CAPSTAN_VOLUME_<NAME>, which is what works without root. */
	json_array_foreach(json_object_get(ctr, "volumeMounts"), i, e) {
		const char *vname = jstr(e, "name");
		size_t j;
		json_t *v;
		if (vname == NULL)
			continue;
		json_array_foreach(jget(p->pod, "spec", "volumes"), j, v) {
			char dir[PATH_MAX], var[300];
			const char *hp = jstr(v, "hostPath.path");
			if (jstr(v, "name") == NULL || strcmp(jstr(v, "name"), vname) != 0)
				continue;
			if (hp != NULL) {
				snprintf(dir, sizeof dir, "%s", hp);
			} else if (json_object_get(v, "emptyDir") != NULL && p->a->data_dir) {
				snprintf(dir, sizeof dir, "%s/pods/%s/volumes/%s", p->a->data_dir,
					 p->uid, vname);
			} else {
				continue;
			}
			snprintf(var, sizeof var, "CAPSTAN_VOLUME_%s", vname);
			for (char *c = var; *c != '\0'; c++)
				*c = *c == '-' || *c == '.' ? '_' : (char)toupper((unsigned char)*c);
			strv_set_env(env, var, dir);
		}
	}
	return env->oom ? -1 : 0;
}

/* The container's volumeMounts as runtime mounts: emptyDir volumes from
 * the pod's directory, hostPath volumes from the host. sources holds the
 * paths; both arrays must outlive the start of the container. */
static size_t volume_mounts(struct apod *p, json_t *ctr, struct runtime_mount *out,
			    char (*sources)[PATH_MAX], size_t max)
{
	size_t n = 0, i;
	json_t *e;
	json_array_foreach(json_object_get(ctr, "volumeMounts"), i, e) {
		const char *vname = jstr(e, "name"), *target = jstr(e, "mountPath");
		size_t j;
		json_t *v;
		if (vname == NULL || target == NULL || target[0] != '/' || n == max)
			continue;
		json_array_foreach(jget(p->pod, "spec", "volumes"), j, v) {
			const char *hp = jstr(v, "hostPath.path");
			if (jstr(v, "name") == NULL || strcmp(jstr(v, "name"), vname) != 0)
				continue;
			if (hp != NULL)
				snprintf(sources[n], PATH_MAX, "%s", hp);
			else if (json_object_get(v, "emptyDir") != NULL && p->a->data_dir)
				snprintf(sources[n], PATH_MAX, "%s/pods/%s/volumes/%s", p->a->data_dir,
					 p->uid, vname);
			else
				break;
			out[n].source = sources[n];
			out[n].target = target;
			out[n].read_only = json_is_true(json_object_get(e, "readOnly"));
			n++;
			break;
		}
	}
	return n;
}

static void make_volumes(struct apod *p)
{
	size_t i;
	json_t *v;
	if (p->a->simulate || p->a->data_dir == NULL)
		return;
	json_array_foreach(jget(p->pod, "spec", "volumes"), i, v) {
		char dir[PATH_MAX];
		const char *name = jstr(v, "name");
		const char *type = jstr(v, "hostPath.type");
		if (name == NULL || strchr(name, '/') != NULL)
			continue;
		if (json_object_get(v, "emptyDir") != NULL) {
			snprintf(dir, sizeof dir, "%s/pods/%s", p->a->data_dir, p->uid);
			mkdir(dir, 0700);
			snprintf(dir, sizeof dir, "%s/pods/%s/volumes", p->a->data_dir, p->uid);
			mkdir(dir, 0700);
			snprintf(dir, sizeof dir, "%s/pods/%s/volumes/%s", p->a->data_dir, p->uid,
				 name);
			mkdir(dir, 0777);
		} else if (type != NULL && strcmp(type, "DirectoryOrCreate") == 0) {
			mkdir(jstr(v, "hostPath.path"), 0755);
		}
	}
}

/* Fetches the configMaps and secrets the pod's env refers to. */
static void on_ref_fetched(void *data, int status, json_t *body);

struct ref_fetch {
	struct apod *p;
	char key[400];
};

static void fetch_refs(struct apod *p)
{
	size_t i, j;
	json_t *ctr, *e;
	if (p->refs_data == NULL)
		p->refs_data = json_object();
	p->refs_fetched = true;
	json_array_foreach(jget(p->pod, "spec", "containers"), i, ctr) {
		const char *lists[] = {"env", "envFrom"};
		for (size_t l = 0; l < 2; l++) {
			json_array_foreach(json_object_get(ctr, lists[l]), j, e) {
				json_t *vf = l == 0 ? json_object_get(e, "valueFrom") : e;
				json_t *cm = json_object_get(vf, l == 0 ? "configMapKeyRef" : "configMapRef");
				json_t *sk = json_object_get(vf, l == 0 ? "secretKeyRef" : "secretRef");
				const char *name = jstr(cm ? cm : sk, "name");
				struct ref_fetch *f;
				if (name == NULL)
					continue;
				f = calloc(1, sizeof *f);
				if (f == NULL)
					continue;
				snprintf(f->key, sizeof f->key, "%s/%s", cm ? "configmap" : "secret",
					 name);
				if (json_object_get(p->refs_data, f->key) != NULL) {
					free(f);
					continue;
				}
				json_object_set_new(p->refs_data, f->key, json_null());
				f->p = p;
				if (kclient_get(p->a->kc, cm ? &KRES_CONFIGMAPS : &KRES_SECRETS, p->ns,
						name, on_ref_fetched, f) != 0) {
					free(f);
					continue;
				}
				pod_ref(p);
				p->refs_pending++;
			}
		}
	}
}

static void on_ref_fetched(void *data, int status, json_t *body)
{
	struct ref_fetch *f = data;
	struct apod *p = f->p;
	p->refs_pending--;
	if (!p->freed && status == 200) {
		json_t *d = json_object_get(body, "data");
		json_t *out = json_object();
		const char *k;
		json_t *v;
		bool secret = strncmp(f->key, "secret/", 7) == 0;
		json_object_foreach(d, k, v) {
			const char *s = json_string_value(v);
			if (s == NULL)
				continue;
			if (secret) {
				size_t n = strlen(s);
				uint8_t *buf = malloc(b64_decoded_max(n) + 1);
				long m = buf ? b64_decode(s, n, buf) : -1;
				if (m >= 0) {
					buf[m] = '\0';
					json_object_set_new(out, k, json_string((char *)buf));
				}
				free(buf);
			} else {
				json_object_set_new(out, k, json_string(s));
			}
		}
		json_object_foreach(json_object_get(body, "stringData"), k, v)
			json_object_set(out, k, v);
		json_object_set_new(p->refs_data, f->key, out);
	}
	free(f);
	if (!p->freed && p->refs_pending == 0)
		pod_sync(p);
	pod_unref(p);
}

/* ---- containers ---- */

static void ctr_set_state(struct actr *c, enum ctr_state st)
{
	assert(ctr_transition_ok[c->st][st]);
	c->st = st;
}

static void ctr_wait(struct actr *c, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void ctr_wait(struct actr *c, const char *reason, const char *fmt, ...)
{
	va_list ap;
	ctr_set_state(c, CTR_WAITING);
	snprintf(c->reason, sizeof c->reason, "%s", reason);
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof c->message, fmt, ap);
	va_end(ap);
}

static void ctr_stop_probes(struct actr *c)
{
	probe_worker_stop(c->liveness);
	probe_worker_stop(c->readiness);
	probe_worker_stop(c->startup);
	c->liveness = c->readiness = c->startup = NULL;
}

static json_t *ctr_spec(struct actr *c)
{
	return json_array_get(jget(c->p->pod, "spec", "containers"), c->index);
}

static void ctr_kill(struct actr *c, unsigned grace_s, const char *why);

static void on_probe(void *data, enum probe_result r, bool healthy, bool changed,
		     const char *msg, const char *kind)
{
	struct actr *c = data;
	struct apod *p = c->p;
	if (r == PROBE_FAILURE)
		pod_event(p, c, "Warning", "Unhealthy", "%s probe failed: %s", kind, msg);
	if (!changed)
		return;
	if (strcmp(kind, "Readiness") == 0) {
		c->ready = healthy;
		pod_publish(p);
	} else if (strcmp(kind, "Startup") == 0 && healthy) {
		c->started = true;
		probe_worker_stop(c->startup);
		c->startup = NULL;
		/* Liveness and readiness start only now. */
		pod_sync(p);
	} else if (!healthy && c->st == CTR_RUNNING && !p->terminating) {
		pod_event(p, c, "Normal", "Killing", "Container %s failed %s probe, will be restarted",
			  c->name, strcmp(kind, "Startup") == 0 ? "startup" : "liveness");
		c->liveness_kill = true;
		ctr_stop_probes(c);
		{
			json_t *g = jget(p->pod, "spec", "terminationGracePeriodSeconds");
			ctr_kill(c, json_is_integer(g) ? (unsigned)json_integer_value(g) : 30,
				 "liveness");
		}
	}
}

static void on_liveness(void *data, enum probe_result r, bool healthy, bool changed,
			const char *msg)
{
	on_probe(data, r, healthy, changed, msg, "Liveness");
}

static void on_readiness(void *data, enum probe_result r, bool healthy, bool changed,
			 const char *msg)
{
	on_probe(data, r, healthy, changed, msg, "Readiness");
}

static void on_startup(void *data, enum probe_result r, bool healthy, bool changed,
		       const char *msg)
{
	on_probe(data, r, healthy, changed, msg, "Startup");
}

/* Starts the probes that apply now: the startup probe first; liveness and
 * readiness once it passed. Exec probes run with the container's env. */
static void ctr_start_probes(struct actr *c, char *const *env, const char *cwd)
{
	struct apod *p = c->p;
	json_t *spec = ctr_spec(c);
	struct {
		const char *field;
		struct probe_worker **w;
		probe_worker_cb cb;
		bool healthy;
	} kinds[] = {
		{"startupProbe", &c->startup, on_startup, false},
		{"livenessProbe", &c->liveness, on_liveness, true},
		/* Not ready until it passes, except a container adopted after a
		 * restart, which keeps the readiness it had (adopt_found). */
		{"readinessProbe", &c->readiness, on_readiness, c->ready},
	};
	if (p->a->simulate)
		return;
	for (size_t i = 0; i < 3; i++) {
		json_t *pr = json_object_get(spec, kinds[i].field);
		struct probe_spec ps;
		char errmsg[CAP_ERRMSG_SIZE];
		if (!json_is_object(pr) || *kinds[i].w != NULL)
			continue;
		if (i == 0 && c->started)
			continue;
		if (i > 0 && !c->started)
			continue;
		if (probe_spec_from_json(pr, spec, env, cwd, &ps, errmsg) != 0) {
			pod_event(p, c, "Warning", "Unhealthy", "%s: %s", kinds[i].field, errmsg);
			continue;
		}
		if (ps.kind == PROBE_EXEC && p->netns[0] != '\0' &&
		    (ps.netns = strdup(p->netns)) == NULL) {
			probe_spec_free(&ps);
			continue;
		}
		if ((ps.kind == PROBE_HTTP || ps.kind == PROBE_TCP) && p->netns[0] != '\0' &&
		    json_object_get(json_object_get(pr, ps.kind == PROBE_HTTP ? "httpGet" :
						    "tcpSocket"), "host") == NULL) {
			/* The kubelet probes the pod's IP: a pod's loopback is its own. */
			char *ip = strdup(p->ip);
			if (ip != NULL) {
				free(ps.host);
				ps.host = ip;
			}
		}
		if (probe_worker_start(p->a->loop, &ps, kinds[i].healthy, kinds[i].cb, c,
				       kinds[i].w) != 0)
			log_warn("%s/%s: cannot start %s", p->ns, p->name, kinds[i].field);
		probe_spec_free(&ps);
	}
}

/* The argv of a container: command/args over the image's entrypoint/cmd,
 * with $(VAR) expanded. Returns 0, or -1 with a waiting reason. */
static int build_argv(struct actr *c, json_t *spec, json_t *img, const struct strv *env,
		      struct strv *argv, char *reason, size_t rsize, char *msg, size_t msize)
{
	json_t *cmd = json_object_get(spec, "command");
	json_t *args = json_object_get(spec, "args");
	struct strv raw = {0};
	size_t i;
	json_t *v;
	if (json_array_size(cmd) == 0 && img == NULL) {
		snprintf(reason, rsize, "ErrImagePull");
		snprintf(msg, msize,
			 "Failed to pull image \"%.200s\": image is not in the node's local catalog "
			 "(images/*.json) and the container has no command", c->image);
		return -1;
	}
	if (img != NULL && jstr(img, "requires") != NULL && access(jstr(img, "requires"), X_OK) != 0) {
		snprintf(reason, rsize, "ErrImagePull");
		snprintf(msg, msize, "Failed to pull image \"%.200s\": %.200s is not installed on the node",
			 c->image, jstr(img, "requires"));
		return -1;
	}
	if (json_array_size(cmd) > 0) {
		json_array_foreach(cmd, i, v)
			strv_push(&raw, json_string_value(v) ?: "");
	} else {
		json_array_foreach(json_object_get(img, "entrypoint"), i, v)
			strv_push(&raw, json_string_value(v) ?: "");
	}
	if (json_array_size(args) > 0 || json_array_size(cmd) > 0) {
		json_array_foreach(args, i, v)
			strv_push(&raw, json_string_value(v) ?: "");
	} else {
		json_array_foreach(json_object_get(img, "cmd"), i, v)
			strv_push(&raw, json_string_value(v) ?: "");
	}
	if (raw.n == 0) {
		strv_free(raw.v);
		snprintf(reason, rsize, "CreateContainerError");
		snprintf(msg, msize, "no command specified");
		return -1;
	}
	/* An image that wraps commands (busybox: every command is an applet)
	 * prefixes bare command names. */
	if (json_array_size(json_object_get(img, "wrap")) > 0 && strchr(raw.v[0], '/') == NULL)
		json_array_foreach(json_object_get(img, "wrap"), i, v)
			strv_push(argv, json_string_value(v) ?: "");
	for (i = 0; i < raw.n; i++) {
		char *x = expand_vars(raw.v[i], env);
		if (x == NULL) {
			argv->oom = true;
			break;
		}
		strv_push(argv, x);
		free(x);
	}
	strv_free(raw.v);
	return argv->oom ? -1 : 0;
}

static uint64_t parse_quantity(const char *s)
{
	char *end;
	double v;
	static const struct {
		const char *suf;
		double mul;
	} sfx[] = {{"Ki", 1024.0}, {"Mi", 1048576.0}, {"Gi", 1073741824.0},
		   {"Ti", 1099511627776.0}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
		   {"", 1.0}};
	if (s == NULL)
		return 0;
	v = strtod(s, &end);
	for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
		if (strcmp(end, sfx[i].suf) == 0)
			return (uint64_t)(v * sfx[i].mul);
	return 0;
}

static void on_restart_timer(uv_timer_t *t)
{
	struct actr *c = t->data;
	c->restart_pending = false;
	pod_sync(c->p);
}

/* Starts one attempt of a container (state Waiting, no process). */
static void ctr_start(struct actr *c)
{
	struct apod *p = c->p;
	struct agent *a = p->a;
	json_t *spec = ctr_spec(c);
	json_t *img = NULL;
	struct strv env = {0}, argv = {0};
	char reason[64] = "", msg[512] = "", errmsg[CAP_ERRMSG_SIZE] = "";
	const char *wd;
	struct runtime_spec rs = {0};
	struct runtime_mount mounts[16];
	char mount_src[16][PATH_MAX];
	int64_t started_at = 0;
	bool first_start = !c->ever_started && c->restarts == 0;

	if (!a->simulate) {
		img = image_lookup(a, c->image);
		if (build_env(p, spec, img, &env, msg, sizeof msg) != 0) {
			ctr_wait(c, "CreateContainerConfigError", "%s",
				 env.oom ? "out of memory" : msg);
			pod_event(p, c, "Warning", "Failed", "Error: %s", c->message);
			goto out;
		}
		if (build_argv(c, spec, img, &env, &argv, reason, sizeof reason, msg, sizeof msg) != 0) {
			bool again = strcmp(c->reason, reason) == 0;
			ctr_wait(c, reason, "%s", argv.oom ? "out of memory" : msg);
			if (!again) {
				pod_event(p, c, "Warning", "Failed", "%s", msg);
				pod_event(p, c, "Warning", "Failed", "Error: %s", reason);
			}
			goto out;
		}
		if (first_start)
			pod_event(p, c, "Normal", "Pulled",
				  "Container image \"%s\" already present on machine", c->image);
	} else {
		strv_push(&argv, "sim");
	}
	wd = jstr(spec, "workingDir");
	if ((wd == NULL || *wd == '\0') && img != NULL && jstr(img, "workingDir") != NULL &&
	    *jstr(img, "workingDir") != '\0')
		wd = jstr(img, "workingDir");
	rs.pod_uid = p->uid;
	rs.pod_ns = p->ns;
	rs.pod_name = p->name;
	rs.name = c->name;
	rs.attempt = c->restarts;
	rs.argv = argv.v;
	rs.env = env.v;
	rs.cwd = wd != NULL && *wd != '\0' ? wd : NULL;
	rs.memory_limit = parse_quantity(jstr(spec, "resources.limits.memory"));
	rs.n_mounts = volume_mounts(p, spec, mounts, mount_src, sizeof mounts / sizeof mounts[0]);
	rs.mounts = mounts;
	rs.netns = p->netns[0] != '\0' ? p->netns : NULL;
	rs.sim_run_ms = -1;
	{
		json_t *ann = jget(p->pod, "metadata", "annotations");
		const char *run = json_string_value(json_object_get(ann, "sim.capstan.io/run-seconds"));
		const char *code = json_string_value(json_object_get(ann, "sim.capstan.io/exit-code"));
		if (run != NULL)
			rs.sim_run_ms = (int64_t)(atof(run) * 1000);
		if (code != NULL)
			rs.sim_exit_code = atoi(code);
	}
	if (runtime_start(a->rt, &rs, ctr_on_exit, c, &c->rc, &started_at, errmsg) != 0) {
		ctr_wait(c, "CreateContainerError", "%s", errmsg);
		pod_event(p, c, "Warning", "Failed", "Error: %s", errmsg);
		goto out;
	}
	ctr_set_state(c, CTR_RUNNING);
	c->reason[0] = c->message[0] = '\0';
	c->started_at = started_at;
	c->started_mono = uv_now(a->loop);
	c->ever_started = true;
	c->ready = json_object_get(spec, "readinessProbe") == NULL;
	c->started = json_object_get(spec, "startupProbe") == NULL;
	c->liveness_kill = false;
	if (!a->simulate) {
		pod_event(p, c, "Normal", "Created", "Created container %s", c->name);
		pod_event(p, c, "Normal", "Started", "Started container %s", c->name);
	}
	ctr_start_probes(c, env.v, rs.cwd);
out:
	json_decref(img);
	strv_free(env.v);
	strv_free(argv.v);
}

static bool policy_restarts(struct apod *p, int exit_code)
{
	const char *pol = jstr(p->pod, "spec.restartPolicy") ?: "Always";
	if (strcmp(pol, "Never") == 0)
		return false;
	if (strcmp(pol, "OnFailure") == 0)
		return exit_code != 0;
	return true;
}

static void ctr_on_exit(void *data, struct runtime_container *rc, const struct runtime_exit *e)
{
	struct actr *c = data;
	struct apod *p = c->p;
	struct agent *a = p->a;
	assert(rc == c->rc);
	runtime_release(a->rt, rc);
	c->rc = NULL;
	ctr_stop_probes(c);
	c->ready = false;
	ctr_set_state(c, CTR_TERMINATED);
	memset(&c->term, 0, sizeof c->term);
	c->term.set = true;
	c->term.exit_code = e->cannot_run ? 128 : e->exit_code;
	c->term.signal = e->signal;
	c->term.started_at = c->started_at;
	c->term.finished_at = e->finished_at;
	snprintf(c->term.reason, sizeof c->term.reason, "%s",
		 e->cannot_run ? "ContainerCannotRun" : e->exit_code == 0 ? "Completed" : "Error");
	snprintf(c->term.message, sizeof c->term.message, "%s", e->message);
	if (e->cannot_run)
		pod_event(p, c, "Warning", "Failed", "Error: %s", e->message);
	log_info("%s/%s: container %s exited with %d%s", p->ns, p->name, c->name,
		 c->term.exit_code, e->cannot_run ? " (cannot run)" : "");
	if (p->terminating || p->gone_from_api || !policy_restarts(p, c->term.exit_code)) {
		c->done = true;
	} else {
		uint64_t delay = backoff_next(&c->bo, c->started_mono, uv_now(a->loop));
		c->last = c->term;
		c->restart_pending = true;
		ctr_wait(c, "CrashLoopBackOff", "back-off %us restarting failed container=%s pod=%s_%s(%s)",
			 (unsigned)(delay / 1000), c->name, p->name, p->ns, p->uid);
		c->restarts++;
		pod_event(p, c, "Warning", "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)",
			  c->name, p->name, p->ns, p->uid);
		uv_timer_start(&c->restart_timer, on_restart_timer, delay, 0);
	}
	pod_sync(p);
}

/* ---- termination ---- */

struct prestop {
	struct actr *c;
	struct probe_spec spec;
	unsigned grace;
};

static void ctr_term(struct actr *c)
{
	if (c->rc != NULL)
		runtime_kill(c->p->a->rt, c->rc, SIGTERM);
}

static void on_prestop_done(void *data, enum probe_result r, const char *msg)
{
	struct prestop *ps = data;
	struct apod *p = ps->c->p;
	if (r != PROBE_SUCCESS && !p->freed)
		pod_event(p, ps->c, "Warning", "FailedPreStopHook", "PreStopHook failed: %s", msg);
	if (!p->freed)
		ctr_term(ps->c);
	probe_spec_free(&ps->spec);
	free(ps);
	pod_unref(p);
}

static void on_kill_timer(uv_timer_t *t)
{
	struct apod *p = t->data;
	for (size_t i = 0; i < p->n; i++)
		if (p->ctrs[i].rc != NULL)
			runtime_kill(p->a->rt, p->ctrs[i].rc, SIGKILL);
}

/* preStop (exec), then SIGTERM to the group; SIGKILL after grace_s. */
static void ctr_kill(struct actr *c, unsigned grace_s, const char *why)
{
	struct apod *p = c->p;
	json_t *pre = jget(jget(ctr_spec(c), "lifecycle", NULL), "preStop", NULL);
	json_t *ex = json_object_get(pre, "exec");
	if (c->rc == NULL)
		return;
	if (strcmp(why, "liveness") != 0)
		pod_event(p, c, "Normal", "Killing", "Stopping container %s", c->name);
	if (json_is_object(ex) && grace_s > 0 && !p->a->simulate) {
		struct prestop *ps = calloc(1, sizeof *ps);
		char errmsg[CAP_ERRMSG_SIZE];
		json_t *probe = json_pack("{s:O,s:i}", "exec", ex, "timeoutSeconds", (int)grace_s);
		if (ps != NULL && probe != NULL &&
		    probe_spec_from_json(probe, ctr_spec(c), NULL, NULL, &ps->spec, errmsg) == 0) {
			ps->c = c;
			if (probe_once(p->a->loop, &ps->spec, on_prestop_done, ps) == 0) {
				pod_ref(p);
				json_decref(probe);
				goto arm;
			}
			probe_spec_free(&ps->spec);
		}
		free(ps);
		json_decref(probe);
	}
	ctr_term(c);
arm:
	if (!uv_is_active((uv_handle_t *)&p->kill_timer))
		uv_timer_start(&p->kill_timer, on_kill_timer, (uint64_t)grace_s * 1000, 0);
}

static void on_final_delete(void *data, int status, json_t *body)
{
	struct apod *p = data;
	(void)body;
	if (!p->freed && status != 200 && status != 202 && status != 404 && !p->a->closing) {
		/* A write raced ours (409) or the server failed: try again in a
		 * second, a few times; a uid mismatch means the pod was replaced
		 * and this one is gone anyway. */
		log_warn("%s/%s: final delete answered %d", p->ns, p->name, status);
		if (++p->delete_attempts < 10) {
			p->final_delete_sent = false;
			uv_timer_start(&p->retry_timer, on_retry_timer, 1000, 0);
		}
	}
	pod_unref(p);
}

static bool all_stopped(struct apod *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->ctrs[i].rc != NULL)
			return false;
	return true;
}

static void pod_forget(struct apod *p);

static void pod_terminate(struct apod *p)
{
	struct agent *a = p->a;
	if (!p->terminating) {
		json_t *g = jget(jget(p->pod, "metadata", NULL), "deletionGracePeriodSeconds", NULL);
		json_t *sg = jget(p->pod, "spec", "terminationGracePeriodSeconds");
		unsigned grace = json_is_integer(g) ? (unsigned)json_integer_value(g) :
				 json_is_integer(sg) ? (unsigned)json_integer_value(sg) : 30;
		if (p->gone_from_api)
			grace = FORCED_GRACE_S;
		p->terminating = true;
		for (size_t i = 0; i < p->n; i++) {
			struct actr *c = &p->ctrs[i];
			uv_timer_stop(&c->restart_timer);
			c->restart_pending = false;
			ctr_stop_probes(c);
			c->ready = false;
			ctr_kill(c, grace, "delete");
		}
	}
	if (!all_stopped(p))
		return;
	uv_timer_stop(&p->kill_timer);
	/* As the kubelet reclaims the sandbox before the final delete: once
	 * the pod is gone from the API its address is free again. */
	network_pod_teardown(a->net, p->uid);
	if (p->gone_from_api) {
		pod_forget(p);
		return;
	}
	if (!p->final_delete_sent) {
		json_t *opts = json_pack("{s:s,s:s,s:i,s:{s:s}}", "kind", "DeleteOptions",
					 "apiVersion", "v1", "gracePeriodSeconds", 0,
					 "preconditions", "uid", p->uid);
		pod_publish(p);
		p->final_delete_sent = true;
		if (kclient_delete(a->kc, &KRES_PODS, p->ns, p->name, opts, on_final_delete, p) == 0)
			pod_ref(p);
		else
			p->final_delete_sent = false;
		json_decref(opts);
	}
}

/* ---- status ---- */

static json_t *term_json(const struct term_info *t)
{
	char s[32], f[32];
	json_t *o;
	fmt_time(t->started_at, s, sizeof s);
	fmt_time(t->finished_at, f, sizeof f);
	o = json_pack("{s:i,s:s,s:s,s:s}", "exitCode", t->exit_code, "reason", t->reason,
		      "startedAt", s, "finishedAt", f);
	if (t->signal != 0)
		json_object_set_new(o, "signal", json_integer(t->signal));
	if (t->message[0] != '\0')
		json_object_set_new(o, "message", json_string(t->message));
	return o;
}

static json_t *ctr_status(struct actr *c)
{
	json_t *st, *state;
	char ts[32], cid[400];
	state = json_object();
	if (c->st == CTR_RUNNING) {
		fmt_time(c->started_at, ts, sizeof ts);
		json_object_set_new(state, "running", json_pack("{s:s}", "startedAt", ts));
	} else if (c->st == CTR_TERMINATED) {
		json_object_set_new(state, "terminated", term_json(&c->term));
	} else {
		json_t *w = json_pack("{s:s}", "reason", c->reason[0] ? c->reason : "ContainerCreating");
		if (c->message[0] != '\0')
			json_object_set_new(w, "message", json_string(c->message));
		json_object_set_new(state, "waiting", w);
	}
	st = json_pack("{s:s,s:s,s:s,s:b,s:b,s:i,s:o,s:{}}", "name", c->name, "image", c->image,
		       "imageID", "", "ready", c->ready && c->st == CTR_RUNNING, "started",
		       c->st == CTR_RUNNING && c->started, "restartCount", (int)c->restarts,
		       "state", state, "lastState");
	if (c->last.set)
		json_object_set_new(json_object_get(st, "lastState"), "terminated",
				    term_json(&c->last));
	if (c->ever_started) {
		snprintf(cid, sizeof cid, "capstan://%s/%s/%u", c->p->uid, c->name, c->restarts);
		json_object_set_new(st, "containerID", json_string(cid));
	}
	return st;
}

static const char *pod_phase(struct apod *p)
{
	bool all_done = p->n > 0, any_failed = false, all_started = true;
	for (size_t i = 0; i < p->n; i++) {
		struct actr *c = &p->ctrs[i];
		if (!c->done)
			all_done = false;
		if (c->done && c->term.exit_code != 0)
			any_failed = true;
		if (!c->ever_started)
			all_started = false;
	}
	if (all_done)
		return any_failed ? "Failed" : "Succeeded";
	if (!all_started)
		return "Pending";
	return "Running";
}

static json_t *condition(const char *type, bool ok, const char *since, const char *reason)
{
	json_t *c = json_pack("{s:s,s:s,s:n,s:s}", "type", type, "status", ok ? "True" : "False",
			      "lastProbeTime", "lastTransitionTime", since);
	if (reason != NULL)
		json_object_set_new(c, "reason", json_string(reason));
	return c;
}

static json_t *pod_status(struct apod *p)
{
	json_t *st, *conds, *cs;
	char st_time[32], now[32];
	const char *phase = pod_phase(p);
	bool ready = true, terminal = strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0;
	/* A pod in a terminal phase never leaves it. */
	if (strcmp(p->last_phase, "Succeeded") == 0 || strcmp(p->last_phase, "Failed") == 0)
		phase = p->last_phase;
	else
		snprintf(p->last_phase, sizeof p->last_phase, "%s", phase);
	now_rfc3339(now, sizeof now);
	fmt_time(p->start_time, st_time, sizeof st_time);
	cs = json_array();
	for (size_t i = 0; i < p->n; i++) {
		json_array_append_new(cs, ctr_status(&p->ctrs[i]));
		if (!(p->ctrs[i].ready && p->ctrs[i].st == CTR_RUNNING))
			ready = false;
	}
	if (p->init_since[0] == '\0')
		snprintf(p->init_since, sizeof p->init_since, "%s", now);
	if (ready != p->last_ready || p->ready_since[0] == '\0') {
		snprintf(p->ready_since, sizeof p->ready_since, "%s", now);
		p->last_ready = ready;
	}
	conds = json_array();
	json_array_append_new(conds, condition("PodReadyToStartContainers", !terminal, p->init_since,
					       NULL));
	json_array_append_new(conds, condition("Initialized", true, p->init_since, NULL));
	json_array_append_new(conds, condition("Ready", ready, p->ready_since,
					       ready ? NULL : terminal ? "PodCompleted" :
					       "ContainersNotReady"));
	json_array_append_new(conds, condition("ContainersReady", ready, p->ready_since,
					       ready ? NULL : terminal ? "PodCompleted" :
					       "ContainersNotReady"));
	json_array_append_new(conds, condition("PodScheduled", true, p->init_since, NULL));
	st = json_pack("{s:s,s:o,s:s,s:[{s:s}],s:s,s:o}", "phase", phase,
		       "conditions", conds, "hostIP", p->a->node_ip, "hostIPs", "ip", p->a->node_ip,
		       "startTime", st_time, "containerStatuses", cs);
	/* No podIP before the pod's network exists, as in Kubernetes. */
	if (p->ip[0] != '\0') {
		json_object_set_new(st, "podIP", json_string(p->ip));
		json_object_set_new(st, "podIPs", json_pack("[{s:s}]", "ip", p->ip));
	}
	return st;
}

static void on_status_patched(void *data, int status, json_t *body)
{
	struct apod *p = data;
	(void)body;
	p->status_inflight = false;
	if (!p->freed && status != 200 && status != 404 && !p->a->closing) {
		log_warn("%s/%s: status update answered %d", p->ns, p->name, status);
		free(p->last_status);
		p->last_status = NULL;
		p->status_dirty = true;
	}
	if (!p->freed && p->status_dirty) {
		p->status_dirty = false;
		pod_publish(p);
	}
	pod_unref(p);
}

/* Sends the pod's status when it changed; one update in flight per pod. */
static void pod_publish(struct apod *p)
{
	json_t *st, *patch;
	char *dump;
	if (p->freed || !p->started || p->a->closing)
		return;
	/* No status writes once deletion started: the API server removes a
	 * pod with deletionTimestamp on its next write, which would end the
	 * grace period early. The final delete ends it properly. */
	if (jstr(p->pod, "metadata.deletionTimestamp") != NULL || p->gone_from_api)
		return;
	if (p->status_inflight) {
		p->status_dirty = true;
		return;
	}
	st = pod_status(p);
	/* Timestamps of "now" aside, compare what would be sent. */
	dump = json_dumps(st, JSON_SORT_KEYS | JSON_COMPACT);
	if (dump != NULL && p->last_status != NULL && strcmp(dump, p->last_status) == 0) {
		free(dump);
		json_decref(st);
		return;
	}
	free(p->last_status);
	p->last_status = dump;
	patch = json_pack("{s:o}", "status", st);
	if (kclient_patch(p->a->kc, &KRES_PODS, p->ns, p->name, "status",
			  "application/merge-patch+json", patch, on_status_patched, p) == 0) {
		pod_ref(p);
		p->status_inflight = true;
	}
	json_decref(patch);
}

/* ---- pods ---- */

static struct apod *pod_find_uid(struct agent *a, const char *uid)
{
	for (struct apod *p = a->pods; p != NULL; p = p->next)
		if (strcmp(p->uid, uid) == 0)
			return p;
	return NULL;
}

static struct apod *pod_find_name(struct agent *a, const char *ns, const char *name)
{
	for (struct apod *p = a->pods; p != NULL; p = p->next)
		if (strcmp(p->ns, ns) == 0 && strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

static void on_pod_handle_closed(uv_handle_t *h)
{
	pod_unref(h->data);
}

static void on_ctr_handle_closed(uv_handle_t *h)
{
	struct actr *c = h->data;
	pod_unref(c->p);
}

static void pod_free(struct apod *p)
{
	for (size_t i = 0; i < p->n; i++)
		assert(p->ctrs[i].rc == NULL);
	json_decref(p->pod);
	json_decref(p->refs_data);
	free(p->last_status);
	free(p->ctrs);
	free(p);
}

static void pod_unref(struct apod *p)
{
	assert(p->refs > 0);
	if (--p->refs == 0 && p->freed)
		pod_free(p);
}

/* Unlinks the pod and releases its handles; memory goes when the last
 * outstanding call returns. Running containers are left to the runtime
 * (agent shutdown) or must have stopped (deletion). */
static void pod_release(struct apod *p)
{
	struct agent *a = p->a;
	for (struct apod **pp = &a->pods; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	p->freed = true;
	for (size_t i = 0; i < p->n; i++) {
		struct actr *c = &p->ctrs[i];
		ctr_stop_probes(c);
		if (c->rc != NULL) {
			runtime_release(a->rt, c->rc);
			c->rc = NULL;
		}
		uv_close((uv_handle_t *)&c->restart_timer, on_ctr_handle_closed);
	}
	uv_close((uv_handle_t *)&p->kill_timer, on_pod_handle_closed);
	uv_close((uv_handle_t *)&p->retry_timer, on_pod_handle_closed);
	pod_unref(p);   /* the list's reference */
}

/* The pod is gone for good: its logs and volumes go too. */
static void pod_forget(struct apod *p)
{
	struct agent *a = p->a;
	log_info("%s/%s: removed", p->ns, p->name);
	runtime_forget_pod(a->rt, p->uid);
	network_pod_teardown(a->net, p->uid);
	pod_release(p);
}

static struct apod *pod_new(struct agent *a, json_t *obj)
{
	struct apod *p = calloc(1, sizeof *p);
	json_t *ctrs = jget(obj, "spec", "containers");
	if (p == NULL)
		return NULL;
	p->a = a;
	snprintf(p->uid, sizeof p->uid, "%s", jstr(obj, "metadata.uid") ?: "");
	snprintf(p->ns, sizeof p->ns, "%s", jstr(obj, "metadata.namespace") ?: "default");
	snprintf(p->name, sizeof p->name, "%s", jstr(obj, "metadata.name") ?: "");
	p->pod = json_incref(obj);
	p->n = json_array_size(ctrs);
	p->ctrs = calloc(p->n ? p->n : 1, sizeof *p->ctrs);
	if (p->ctrs == NULL) {
		json_decref(p->pod);
		free(p);
		return NULL;
	}
	p->refs = 1;
	for (size_t i = 0; i < p->n; i++) {
		struct actr *c = &p->ctrs[i];
		json_t *cj = json_array_get(ctrs, i);
		c->p = p;
		c->index = i;
		snprintf(c->name, sizeof c->name, "%s", jstr(cj, "name") ?: "");
		snprintf(c->image, sizeof c->image, "%s", jstr(cj, "image") ?: "");
		c->st = CTR_WAITING;
		snprintf(c->reason, sizeof c->reason, "ContainerCreating");
		backoff_init(&c->bo);
		if (a->simulate)
			backoff_init_custom(&c->bo, 1000, 10000, BACKOFF_RESET_MS);
		uv_timer_init(a->loop, &c->restart_timer);
		c->restart_timer.data = c;
		pod_ref(p);
	}
	uv_timer_init(a->loop, &p->kill_timer);
	p->kill_timer.data = p;
	pod_ref(p);
	uv_timer_init(a->loop, &p->retry_timer);
	p->retry_timer.data = p;
	pod_ref(p);
	p->next = a->pods;
	a->pods = p;
	return p;
}

static void on_retry_timer(uv_timer_t *t)
{
	struct apod *p = t->data;
	/* Missing configMaps or secrets may exist by now. */
	json_decref(p->refs_data);
	p->refs_data = NULL;
	p->refs_fetched = false;
	pod_sync(p);
}

/* ---- the pod network (network.c) ---- */

/* The pod's address and namespace: the node's for hostNetwork pods, hollow
 * nodes and HOST mode; otherwise its own, which waits for the node's pod
 * range. Returns false while the pod has to wait (its containers stay
 * ContainerCreating; a failure is retried from the retry timer). */
static bool pod_network_up(struct apod *p)
{
	struct agent *a = p->a;
	char errmsg[CAP_ERRMSG_SIZE] = "";
	int rv;
	if (p->ip[0] != '\0')
		return true;
	if (!network_per_pod(a->net) || json_is_true(jget(p->pod, "spec", "hostNetwork"))) {
		snprintf(p->ip, sizeof p->ip, "%s", a->node_ip);
		p->netns[0] = '\0';
		return true;
	}
	{
		/* Set up on the loop: say how long it held it. */
		uint64_t t0 = uv_hrtime();
		rv = network_pod_setup(a->net, p->uid, p->ip, p->netns, errmsg);
		if (rv == 0) {
			log_info("%s/%s: pod IP %s (network set up in %.1f ms)", p->ns, p->name,
				 p->ip, (double)(uv_hrtime() - t0) / 1e6);
			return true;
		}
	}
	p->ip[0] = p->netns[0] = '\0';
	if (rv < 0) {
		pod_event(p, NULL, "Warning", "FailedCreatePodSandBox",
			  "Failed to create pod sandbox: %s", errmsg);
		if (!uv_is_active((uv_handle_t *)&p->retry_timer))
			uv_timer_start(&p->retry_timer, on_retry_timer, 10000, 0);
	}
	pod_publish(p);
	return false;
}

static bool pod_alive(void *data, const char *uid)
{
	return pod_find_uid(data, uid) != NULL;
}

/* The network's readiness or condition changed. */
static void on_network_changed(void *data)
{
	struct agent *a = data;
	if (a->closing)
		return;
	if (a->node_registered)
		node_patch_status(a);
	for (struct apod *p = a->pods, *next; p != NULL; p = next) {
		next = p->next;
		pod_sync(p);
	}
}

static void pod_sync(struct apod *p)
{
	struct agent *a = p->a;
	bool config_error = false;
	if (p->freed || !a->recovered || a->closing)
		return;
	if (!p->started) {
		p->started = true;
		p->start_time = (int64_t)time(NULL);
		make_volumes(p);
	}
	if (p->gone_from_api || jstr(p->pod, "metadata.deletionTimestamp") != NULL) {
		pod_terminate(p);
		if (!p->freed)
			pod_publish(p);
		return;
	}
	if (!pod_network_up(p))
		return;
	if (!a->simulate && !p->refs_fetched)
		fetch_refs(p);
	if (p->refs_pending > 0)
		return;
	for (size_t i = 0; i < p->n; i++) {
		struct actr *c = &p->ctrs[i];
		if (c->st == CTR_RUNNING) {
			/* Probes held back by a startup probe start now. */
			if (c->started && c->liveness == NULL && c->readiness == NULL)
				ctr_start_probes(c, NULL, NULL);
			continue;
		}
		if (c->done || c->restart_pending || c->rc != NULL)
			continue;
		if (c->st == CTR_TERMINATED)
			ctr_set_state(c, CTR_WAITING);
		ctr_start(c);
		if (c->st == CTR_WAITING && strcmp(c->reason, "CreateContainerConfigError") == 0)
			config_error = true;
		else if (c->st == CTR_WAITING && strcmp(c->reason, "ErrImagePull") == 0)
			config_error = true;
	}
	/* Unstartable containers are retried (the kubelet's ImagePullBackOff,
	 * simplified): a catalog entry or a configMap may appear. */
	if (config_error && !uv_is_active((uv_handle_t *)&p->retry_timer))
		uv_timer_start(&p->retry_timer, on_retry_timer, 10000, 0);
	pod_publish(p);
}

/* ---- adoption after a restart ---- */

static void on_found(void *data, struct runtime_container *rc, const struct runtime_found *f)
{
	struct agent *a = data;
	struct recovered *r = calloc(1, sizeof *r);
	if (r == NULL) {
		runtime_discard(a->rt, rc);
		return;
	}
	r->rc = rc;
	snprintf(r->uid, sizeof r->uid, "%s", f->pod_uid);
	snprintf(r->name, sizeof r->name, "%s", f->name);
	r->attempt = f->attempt;
	r->started_at = f->started_at;
	r->running = f->running;
	r->exit = f->exit;
	r->next = a->found;
	a->found = r;
	log_info("found container %s of pod %s from an earlier run (%s)", f->name, f->pod_uid,
		 f->running ? "running" : "exited");
}

/* Whether the pod's last published status had the container ready. */
static bool status_ready(const struct apod *p, const char *name)
{
	json_t *cs = jget(p->pod, "status", "containerStatuses");
	size_t i;
	json_t *v;
	json_array_foreach(cs, i, v) {
		const char *n = json_string_value(json_object_get(v, "name"));
		if (n != NULL && strcmp(n, name) == 0)
			return json_is_true(json_object_get(v, "ready"));
	}
	return false;
}

/* Hands each container found on disk to its pod, or kills it when the pod
 * is gone; then lets every pod sync. */
static void adopt_found(struct agent *a)
{
	while (a->found != NULL) {
		struct recovered *r = a->found;
		struct apod *p = pod_find_uid(a, r->uid);
		struct actr *c = NULL;
		a->found = r->next;
		for (size_t i = 0; p != NULL && i < p->n; i++)
			if (strcmp(p->ctrs[i].name, r->name) == 0)
				c = &p->ctrs[i];
		if (c == NULL || c->rc != NULL) {
			log_info("killing container %s of pod %s: the pod is gone", r->name, r->uid);
			runtime_discard(a->rt, r->rc);
			if (p == NULL) {
				runtime_forget_pod(a->rt, r->uid);
				network_pod_teardown(a->net, r->uid);
			}
			free(r);
			continue;
		}
		/* Its probes target the pod's address: find it first. */
		if (p->ip[0] == '\0')
			pod_network_up(p);
		c->restarts = r->attempt;
		c->ever_started = true;
		c->started_at = r->started_at;
		c->started_mono = uv_now(a->loop);
		if (!p->started) {
			p->started = true;
			p->start_time = r->started_at;
		}
		if (r->running) {
			c->rc = r->rc;
			ctr_set_state(c, CTR_RUNNING);
			c->reason[0] = '\0';
			/* A restarted agent keeps the readiness the pod had until
			 * its probe says otherwise: starting from "not ready"
			 * would take every probed pod out of its Services until
			 * the first probe, an outage for an agent restart. */
			c->started = json_object_get(ctr_spec(c), "startupProbe") == NULL;
			c->ready = json_object_get(ctr_spec(c), "readinessProbe") == NULL ||
				   (c->started && status_ready(p, c->name));
			runtime_adopt(a->rt, r->rc, ctr_on_exit, c);
			ctr_start_probes(c, NULL, NULL);
		} else {
			/* It ended while no agent watched: report it as if seen now. */
			c->rc = r->rc;
			ctr_set_state(c, CTR_RUNNING);
			a->recovered = true;
			ctr_on_exit(c, r->rc, &r->exit);
		}
		free(r);
	}
}

/* ---- informer handlers ---- */

static void on_pod_add(void *data, json_t *obj)
{
	struct agent *a = data;
	const char *uid = jstr(obj, "metadata.uid");
	struct apod *p;
	if (uid == NULL || pod_find_uid(a, uid) != NULL)
		return;
	/* A pod already finished before we saw it (an agent restart after a
	 * completed pod): nothing to run. */
	{
		const char *ph = jstr(obj, "status.phase");
		if (ph != NULL && (strcmp(ph, "Succeeded") == 0 || strcmp(ph, "Failed") == 0) &&
		    jstr(obj, "metadata.deletionTimestamp") == NULL)
			return;
	}
	p = pod_new(a, obj);
	if (p == NULL)
		return;
	log_info("%s/%s: bound to this node", p->ns, p->name);
	pod_sync(p);
}

static void on_pod_update(void *data, json_t *old, json_t *obj)
{
	struct agent *a = data;
	const char *uid = jstr(obj, "metadata.uid");
	struct apod *p = uid ? pod_find_uid(a, uid) : NULL;
	(void)old;
	if (p == NULL) {
		on_pod_add(a, obj);
		return;
	}
	json_decref(p->pod);
	p->pod = json_incref(obj);
	pod_sync(p);
}

static void on_pod_delete(void *data, json_t *obj)
{
	struct agent *a = data;
	const char *uid = jstr(obj, "metadata.uid");
	struct apod *p = uid ? pod_find_uid(a, uid) : NULL;
	if (p == NULL)
		return;
	p->gone_from_api = true;
	pod_sync(p);
}

static void on_sync_timer(uv_timer_t *t)
{
	struct agent *a = t->data;
	if (a->inf == NULL || !informer_synced(a->inf))
		return;
	uv_timer_stop(t);
	a->recovered = true;
	adopt_found(a);
	network_gc(a->net, pod_alive, a);
	for (struct apod *p = a->pods, *next; p != NULL; p = next) {
		next = p->next;
		pod_sync(p);
	}
	log_info("node %s: %zu pods", a->node, informer_count(a->inf));
}

/* ---- node and lease ---- */

static long long mem_total_bytes(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long long kb = 0;
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "MemTotal: %lld kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

static void os_image(char *buf, size_t size)
{
	FILE *f = fopen("/etc/os-release", "r");
	char line[512];
	snprintf(buf, size, "Linux");
	if (f == NULL)
		return;
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "PRETTY_NAME=", 12) == 0) {
			char *v = line + 12;
			size_t n;
			if (*v == '"')
				v++;
			n = strcspn(v, "\"\n");
			snprintf(buf, size, "%.*s", (int)n, v);
			break;
		}
	}
	fclose(f);
}

static json_t *node_status(struct agent *a)
{
	char now[32], mem[64], cpu[32], osimg[256];
	struct utsname u;
	const char *arch;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	json_t *conds;
	now_rfc3339(now, sizeof now);
	if (a->ready_since[0] == '\0')
		snprintf(a->ready_since, sizeof a->ready_since, "%s", now);
	snprintf(cpu, sizeof cpu, "%ld", ncpu > 0 ? ncpu : 1);
	snprintf(mem, sizeof mem, "%lldKi", mem_total_bytes() / 1024);
	os_image(osimg, sizeof osimg);
	uname(&u);
	arch = strcmp(u.machine, "x86_64") == 0 ? "amd64" :
	       strcmp(u.machine, "aarch64") == 0 ? "arm64" : u.machine;
	conds = json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s,s:s,s:s},"
			  "{s:s,s:s,s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s,s:s,s:s}]",
			  "type", "MemoryPressure", "status", "False", "reason",
			  "KubeletHasSufficientMemory", "message", "kubelet has sufficient memory available",
			  "lastHeartbeatTime", now, "lastTransitionTime", a->ready_since,
			  "type", "DiskPressure", "status", "False", "reason", "KubeletHasNoDiskPressure",
			  "message", "kubelet has no disk pressure", "lastHeartbeatTime", now,
			  "lastTransitionTime", a->ready_since,
			  "type", "PIDPressure", "status", "False", "reason", "KubeletHasSufficientPID",
			  "message", "kubelet has sufficient PID available", "lastHeartbeatTime", now,
			  "lastTransitionTime", a->ready_since,
			  "type", "Ready", "status", "True", "reason", "KubeletReady", "message",
			  "kubelet is posting ready status", "lastHeartbeatTime", now,
			  "lastTransitionTime", a->ready_since);
	if (a->net != NULL) {
		json_t *nc = network_condition(a->net, now);
		if (nc != NULL)
			json_array_append_new(conds, nc);
	}
	return json_pack("{s:{s:s,s:s,s:s,s:s},s:{s:s,s:s,s:s,s:s},"
			 "s:[{s:s,s:s},{s:s,s:s}],s:o,"
			 "s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s},"
			 "s:{s:{s:i}}}",
			 "capacity", "cpu", cpu, "memory", mem, "pods", "110", "ephemeral-storage",
			 "10Gi",
			 "allocatable", "cpu", cpu, "memory", mem, "pods", "110", "ephemeral-storage",
			 "10Gi",
			 "addresses", "type", "InternalIP", "address", a->node_ip, "type", "Hostname",
			 "address", a->node,
			 "conditions", conds,
			 "nodeInfo", "kubeletVersion", "v1.31.0-capstan", "kubeProxyVersion",
			 "v1.31.0-capstan", "containerRuntimeVersion", a->rt->version, "osImage",
			 osimg, "kernelVersion", u.release, "architecture", arch,
			 "operatingSystem", "linux", "machineID", a->node, "systemUUID", a->node,
			 "bootID", "",
			 "daemonEndpoints", "kubeletEndpoint", "Port", agent_port(a));
}

static void on_node_status(void *data, int status, json_t *body)
{
	struct agent *a = data;
	(void)body;
	if (status != 200 && !a->closing)
		log_warn("node %s: status update answered %d", a->node, status);
}

static void node_patch_status(struct agent *a)
{
	json_t *patch = json_pack("{s:o}", "status", node_status(a));
	kclient_patch(a->kc, &KRES_NODES, NULL, a->node, "status", "application/merge-patch+json",
		      patch, on_node_status, a);
	json_decref(patch);
}

static void register_node(struct agent *a);
static void lease_renew(struct agent *a);

static void on_node_created(void *data, int status, json_t *body)
{
	struct agent *a = data;
	if (a->closing)
		return;
	if (status == 201 || status == 200 || status == 409) {
		if (jstr(body, "metadata.uid") != NULL)
			snprintf(a->node_uid, sizeof a->node_uid, "%s", jstr(body, "metadata.uid"));
		if (status == 409) {
			register_node(a);
			return;
		}
		a->node_registered = true;
		log_info("node %s registered", a->node);
		node_patch_status(a);
		lease_renew(a);
		return;
	}
	log_warn("node %s: create answered %d; retrying", a->node, status);
}

static void on_node_get(void *data, int status, json_t *body)
{
	struct agent *a = data;
	if (a->closing)
		return;
	if (status == 200) {
		snprintf(a->node_uid, sizeof a->node_uid, "%s", jstr(body, "metadata.uid") ?: "");
		a->node_registered = true;
		log_info("node %s registered (existing)", a->node);
		node_patch_status(a);
		lease_renew(a);
	} else if (status == 404) {
		char host[300];
		json_t *node;
		struct utsname u;
		uname(&u);
		snprintf(host, sizeof host, "%s", a->node);
		node = json_pack("{s:s,s:s,s:{s:s,s:{s:s,s:s,s:s,s:s,s:s}},s:{},s:o}", "apiVersion",
				 "v1", "kind", "Node", "metadata", "name", a->node, "labels",
				 "kubernetes.io/hostname", host, "kubernetes.io/os", "linux",
				 "kubernetes.io/arch",
				 strcmp(u.machine, "aarch64") == 0 ? "arm64" : "amd64",
				 "beta.kubernetes.io/os", "linux", "node.capstan.io/runtime",
				 a->simulate ? "simulated" : "process",
				 "spec", "status", node_status(a));
		if (kclient_create(a->kc, &KRES_NODES, NULL, node, on_node_created, a) != 0)
			log_warn("node %s: cannot send the create", a->node);
		json_decref(node);
	} else {
		log_warn("node %s: get answered %d; retrying", a->node, status);
	}
}

static void register_node(struct agent *a)
{
	if (kclient_get(a->kc, &KRES_NODES, NULL, a->node, on_node_get, a) != 0)
		log_warn("node %s: cannot send the get", a->node);
}

static void on_lease_created(void *data, int status, json_t *body);

static json_t *lease_object(struct agent *a)
{
	char now[48];
	json_t *l;
	now_micro(now, sizeof now);
	l = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:i,s:s,s:s}}", "apiVersion",
		      "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", a->node,
		      "namespace", "kube-node-lease", "spec", "holderIdentity", a->node,
		      "leaseDurationSeconds", 40, "renewTime", now, "acquireTime", now);
	if (a->node_uid[0] != '\0')
		json_object_set_new(json_object_get(l, "metadata"), "ownerReferences",
				    json_pack("[{s:s,s:s,s:s,s:s}]", "apiVersion", "v1", "kind",
					      "Node", "name", a->node, "uid", a->node_uid));
	return l;
}

static void on_lease_ns_created(void *data, int status, json_t *body)
{
	struct agent *a = data;
	json_t *l;
	(void)body;
	if (a->closing || (status != 201 && status != 409))
		return;
	l = lease_object(a);
	kclient_create(a->kc, &KRES_LEASES, "kube-node-lease", l, on_lease_created, a);
	json_decref(l);
}

static void on_lease_created(void *data, int status, json_t *body)
{
	struct agent *a = data;
	(void)body;
	if (a->closing)
		return;
	if (status == 201 || status == 409) {
		a->lease_exists = true;
		return;
	}
	if (status == 404) {
		/* The namespace is missing: create it, then the lease. */
		json_t *ns = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
				       "metadata", "name", "kube-node-lease");
		kclient_create(a->kc, &KRES_NAMESPACES, NULL, ns, on_lease_ns_created, a);
		json_decref(ns);
		return;
	}
	log_warn("node %s: lease create answered %d", a->node, status);
}

static void on_lease_patched(void *data, int status, json_t *body)
{
	struct agent *a = data;
	json_t *l;
	(void)body;
	if (a->closing || status == 200)
		return;
	if (status == 404) {
		l = lease_object(a);
		kclient_create(a->kc, &KRES_LEASES, "kube-node-lease", l, on_lease_created, a);
		json_decref(l);
		return;
	}
	log_warn("node %s: lease renewal answered %d", a->node, status);
}

static void lease_renew(struct agent *a)
{
	char now[48];
	json_t *patch;
	now_micro(now, sizeof now);
	patch = json_pack("{s:{s:s,s:s,s:i}}", "spec", "renewTime", now, "holderIdentity", a->node,
			  "leaseDurationSeconds", 40);
	kclient_patch(a->kc, &KRES_LEASES, "kube-node-lease", a->node, NULL,
		      "application/merge-patch+json", patch, on_lease_patched, a);
	json_decref(patch);
}

static void on_lease_timer(uv_timer_t *t)
{
	struct agent *a = t->data;
	if (!a->node_registered)
		register_node(a);
	else
		lease_renew(a);
}

static void on_status_timer(uv_timer_t *t)
{
	struct agent *a = t->data;
	if (a->node_registered)
		node_patch_status(a);
}

/* ---- the endpoint: logs ---- */

struct log_follow {
	struct agent *a;
	struct log_follow *next;
	struct http_req *req;
	uv_timer_t timer;
	char path[PATH_MAX];
	char exit_path[PATH_MAX + 16];
	char uid[128];
	off_t offset;
	ino_t ino;
	bool timestamps;
	char partial[16384];         /* a line not complete yet */
	size_t plen;
	bool ended;
};

/* One CRI line -> what kubectl shows. Returns bytes written to out. */
static size_t format_line(const char *line, size_t len, bool timestamps, const char *since,
			  char *out, size_t size)
{
	const char *sp1 = memchr(line, ' ', len), *sp2, *sp3;
	size_t tl, n = 0;
	bool partial;
	if (sp1 == NULL)
		return 0;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(line + len - sp1 - 1));
	if (sp2 == NULL)
		return 0;
	sp3 = memchr(sp2 + 1, ' ', (size_t)(line + len - sp2 - 1));
	partial = sp3 != NULL && sp3 - sp2 == 2 && sp2[1] == 'P';
	if (sp3 == NULL || sp3 - sp2 != 2)
		sp3 = sp2;
	tl = (size_t)(sp1 - line);
	if (since != NULL && tl >= 19 && strncmp(line, since, 19) < 0)
		return 0;
	if (timestamps) {
		if (tl + 1 > size)
			return 0;
		memcpy(out, line, tl);
		out[tl] = ' ';
		n = tl + 1;
	}
	len = (size_t)(line + len - sp3 - 1);
	if (n + len + 1 > size)
		len = size - n - 1;
	memcpy(out + n, sp3 + 1, len);
	n += len;
	if (!partial)
		out[n++] = '\n';
	return n;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, n = 0;
	if (f == NULL)
		return NULL;
	for (;;) {
		size_t r;
		if (n + 65536 > cap) {
			char *b;
			cap = cap ? cap * 2 : 131072;
			b = realloc(buf, cap);
			if (b == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = b;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static void follow_free(struct log_follow *f);

static void follow_pump(struct log_follow *f)
{
	struct stat st;
	int fd;
	char buf[65536];
	ssize_t n;
	if (stat(f->path, &st) != 0)
		return;
	if (st.st_ino != f->ino || st.st_size < f->offset) {
		/* Rotated: the new file is read from its start. */
		f->ino = st.st_ino;
		f->offset = 0;
	}
	fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	while ((n = pread(fd, buf, sizeof buf, f->offset)) > 0) {
		f->offset += n;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (f->plen < sizeof f->partial)
					f->partial[f->plen++] = buf[i];
				continue;
			}
			{
				char out[sizeof f->partial + 64];
				size_t m = format_line(f->partial, f->plen, f->timestamps, NULL, out,
						       sizeof out);
				f->plen = 0;
				if (m > 0 && http_stream_write(f->req, out, m) != 0) {
					f->ended = true;
					close(fd);
					return;
				}
			}
		}
		if (http_stream_pending(f->req) > 4 * 1024 * 1024)
			break;   /* a slow reader: continue on the next tick */
	}
	close(fd);
}

static void on_follow_tick(uv_timer_t *t)
{
	struct log_follow *f = t->data;
	struct agent *a = f->a;
	struct apod *p = pod_find_uid(a, f->uid);
	bool over;
	if (f->ended) {
		follow_free(f);
		return;
	}
	/* Read first, then check the end: the exit file is written after the
	 * last output, so nothing is lost. */
	over = access(f->exit_path, F_OK) == 0 || p == NULL;
	follow_pump(f);
	if (over && !f->ended) {
		follow_pump(f);
		follow_free(f);
	}
}

static void on_follow_closed_handle(uv_handle_t *h)
{
	free(h->data);
}

static void follow_free(struct log_follow *f)
{
	for (struct log_follow **pp = &f->a->follows; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	}
	if (f->req != NULL)
		http_stream_end(f->req);
	f->req = NULL;
	uv_timer_stop(&f->timer);
	uv_close((uv_handle_t *)&f->timer, on_follow_closed_handle);
}

static void on_follow_client_gone(struct http_req *req, void *data)
{
	struct log_follow *f = data;
	(void)req;
	f->ended = true;
}

static void reply_text(struct http_req *req, int status, const char *msg)
{
	http_reply(req, status, "text/plain", msg, strlen(msg));
}

static void serve_logs(struct agent *a, struct http_req *req, const char *ns, const char *pod,
		       const char *ctr)
{
	struct apod *p = pod_find_name(a, ns, pod);
	struct actr *c = NULL;
	const char *q;
	bool follow, previous, timestamps;
	long tail = -1;
	char since[32] = "", path[PATH_MAX], rot[PATH_MAX + 8], msg[600];
	unsigned attempt;
	struct strv lines = {0};
	if (p == NULL) {
		snprintf(msg, sizeof msg, "pod %s/%s is not on node %s", ns, pod, a->node);
		reply_text(req, 404, msg);
		return;
	}
	for (size_t i = 0; i < p->n; i++)
		if (ctr == NULL || ctr[0] == '\0' || strcmp(p->ctrs[i].name, ctr) == 0) {
			c = &p->ctrs[i];
			break;
		}
	if (c == NULL) {
		snprintf(msg, sizeof msg, "container %s is not valid for pod %s", ctr, pod);
		reply_text(req, 400, msg);
		return;
	}
	follow = (q = http_req_query(req, "follow")) != NULL && strcmp(q, "true") == 0;
	previous = (q = http_req_query(req, "previous")) != NULL && strcmp(q, "true") == 0;
	timestamps = (q = http_req_query(req, "timestamps")) != NULL && strcmp(q, "true") == 0;
	if ((q = http_req_query(req, "tailLines")) != NULL)
		tail = strtol(q, NULL, 10);
	if ((q = http_req_query(req, "sinceSeconds")) != NULL)
		fmt_time((int64_t)time(NULL) - strtoll(q, NULL, 10), since, sizeof since);
	if ((q = http_req_query(req, "sinceTime")) != NULL)
		snprintf(since, sizeof since, "%s", q);
	if (previous) {
		if (!c->last.set || c->restarts == 0) {
			snprintf(msg, sizeof msg, "previous terminated container \"%s\" in pod \"%s\" not found",
				 c->name, pod);
			reply_text(req, 400, msg);
			return;
		}
		attempt = c->restarts - 1;
		follow = false;
	} else {
		if (!c->ever_started) {
			snprintf(msg, sizeof msg, "container \"%s\" in pod \"%s\" is waiting to start: %s",
				 c->name, pod, c->reason[0] ? c->reason : "ContainerCreating");
			reply_text(req, 400, msg);
			return;
		}
		attempt = c->restart_pending && c->restarts > 0 ? c->restarts - 1 : c->restarts;
	}
	if (runtime_log_path(a->rt, p->uid, c->name, attempt, path, sizeof path) != 0) {
		reply_text(req, 200, "");
		return;
	}
	snprintf(rot, sizeof rot, "%s.1", path);
	/* The whole history first (rotated file, then current), filtered. */
	for (int k = 0; k < 2; k++) {
		size_t len = 0;
		char *buf = slurp(k == 0 ? rot : path, &len);
		char *s = buf;
		if (buf == NULL)
			continue;
		while (s < buf + len) {
			char *nl = memchr(s, '\n', (size_t)(buf + len - s));
			char out[20000];
			size_t m;
			if (nl == NULL)
				break;
			m = format_line(s, (size_t)(nl - s), timestamps, since[0] ? since : NULL, out,
					sizeof out - 1);
			if (m > 0) {
				out[m] = '\0';
				strv_push(&lines, out);
			}
			s = nl + 1;
		}
		free(buf);
	}
	http_stream_begin(req, 200, "text/plain");
	for (size_t i = tail >= 0 && (size_t)tail < lines.n ? lines.n - (size_t)tail : 0; i < lines.n;
	     i++)
		http_stream_write(req, lines.v[i], strlen(lines.v[i]));
	strv_free(lines.v);
	if (!follow || c->st != CTR_RUNNING) {
		http_stream_end(req);
		return;
	}
	{
		struct log_follow *f = calloc(1, sizeof *f);
		struct stat st;
		if (f == NULL) {
			http_stream_end(req);
			return;
		}
		f->a = a;
		f->req = req;
		f->timestamps = timestamps;
		snprintf(f->path, sizeof f->path, "%s", path);
		snprintf(f->exit_path, sizeof f->exit_path, "%.*s.exit",
			 (int)(strlen(path) - 4), path);
		snprintf(f->uid, sizeof f->uid, "%s", p->uid);
		if (stat(path, &st) == 0) {
			f->ino = st.st_ino;
			f->offset = st.st_size;
		}
		uv_timer_init(a->loop, &f->timer);
		f->timer.data = f;
		uv_timer_start(&f->timer, on_follow_tick, LOG_FOLLOW_MS, LOG_FOLLOW_MS);
		http_req_on_close(req, on_follow_client_gone, f);
		f->next = a->follows;
		a->follows = f;
	}
}

/* exec: a command run inside the container: its namespaces (as root),
 * directory and environment. */
static void serve_exec(struct agent *a, struct http_req *req, const char *ns, const char *pod,
		       const char *ctr)
{
	struct apod *p = pod_find_name(a, ns, pod);
	struct actr *c = NULL;
	json_t *spec, *img = NULL;
	struct strv env = {0}, argv = {0};
	struct exec_spec es = {0};
	char **cmd = NULL, msg[600], dir[PATH_MAX];
	const char *wd;
	size_t i;
	json_t *v;

	if (p == NULL) {
		snprintf(msg, sizeof msg, "pod %s/%s is not on node %s", ns, pod, a->node);
		reply_text(req, 404, msg);
		return;
	}
	for (i = 0; i < p->n; i++)
		if (strcmp(p->ctrs[i].name, ctr) == 0)
			c = &p->ctrs[i];
	if (c == NULL) {
		snprintf(msg, sizeof msg, "container %s is not valid for pod %s", ctr, pod);
		reply_text(req, 400, msg);
		return;
	}
	if (a->simulate) {
		reply_text(req, 400, "exec is not supported on a simulated node");
		return;
	}
	if (c->st != CTR_RUNNING) {
		snprintf(msg, sizeof msg, "unable to upgrade connection: container not found (\"%s\")",
			 c->name);
		reply_text(req, 400, msg);
		return;
	}
	spec = ctr_spec(c);
	img = image_lookup(a, c->image);
	if (build_env(p, spec, img, &env, msg, sizeof msg) != 0) {
		reply_text(req, 500, env.oom ? "out of memory" : msg);
		goto out;
	}
	cmd = exec_query_command(req->query);
	/* An image that wraps commands wraps exec'd ones too (busybox). */
	if (cmd != NULL && strchr(cmd[0], '/') == NULL)
		json_array_foreach(json_object_get(img, "wrap"), i, v)
			strv_push(&argv, json_string_value(v) ?: "");
	for (i = 0; cmd != NULL && cmd[i] != NULL; i++)
		strv_push(&argv, cmd[i]);
	if (argv.oom || env.oom) {
		reply_text(req, 500, "out of memory");
		goto out;
	}
	wd = jstr(spec, "workingDir");
	if ((wd == NULL || *wd == '\0') && img != NULL && jstr(img, "workingDir") != NULL &&
	    *jstr(img, "workingDir") != '\0')
		wd = jstr(img, "workingDir");
	if (wd == NULL || *wd == '\0') {
		/* Where the process runtime starts a container without one. */
		snprintf(dir, sizeof dir, "%s/pods/%s/%s", a->data_dir, p->uid, c->name);
		wd = dir;
	}
	/* Without root the agent cannot join namespaces, and has made none:
	 * containers run in its own, and so does exec. */
	if (geteuid() == 0 && c->rc != NULL) {
		es.ns_pid = runtime_exec_pid(a->rt, c->rc);
		if (es.ns_pid <= 0) {
			snprintf(msg, sizeof msg, "container %s is not running yet: its process "
				 "has not started its command", c->name);
			reply_text(req, 400, msg);
			goto out;
		}
	}
	es.argv = argv.v;
	es.env = env.v;
	es.cwd = wd;
	exec_serve(a->loop, &a->execs, req, &es);
out:
	if (cmd != NULL)
		for (i = 0; cmd[i] != NULL; i++)
			free(cmd[i]);
	free(cmd);
	json_decref(img);
	strv_free(env.v);
	strv_free(argv.v);
}

static bool authorized(struct agent *a, struct http_req *req)
{
	const char *h = http_req_header(req, "Authorization");
	size_t n;
	unsigned diff = 0;
	if (a->token == NULL || h == NULL || strncmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	n = strlen(a->token);
	if (strlen(h) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned)(h[i] ^ a->token[i]);
	return diff == 0;
}

static void on_http(struct http_req *req, void *data)
{
	struct agent *a = data;
	char path[1024], *seg[8];
	size_t n = 0;
	if (strcmp(req->path, "/healthz") == 0) {
		reply_text(req, 200, "ok");
		return;
	}
	if (!authorized(a, req)) {
		reply_text(req, 401, "Unauthorized");
		return;
	}
	snprintf(path, sizeof path, "%s", req->path);
	for (char *s = strtok(path, "/"); s != NULL && n < 8; s = strtok(NULL, "/"))
		seg[n++] = s;
	if (n == 4 && strcmp(seg[0], "exec") == 0 &&
	    (strcmp(req->method, "GET") == 0 || strcmp(req->method, "POST") == 0)) {
		serve_exec(a, req, seg[1], seg[2], seg[3]);
		return;
	}
	if (strcmp(req->method, "GET") != 0) {
		reply_text(req, 405, "method not allowed");
		return;
	}
	if ((n == 4 || n == 3) && strcmp(seg[0], "containerLogs") == 0) {
		serve_logs(a, req, seg[1], seg[2], n == 4 ? seg[3] : NULL);
		return;
	}
	reply_text(req, 404, "not found");
}

/* ---- lifecycle of the agent ---- */

int agent_token_load(const char *path, bool create, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	if (f != NULL) {
		bool ok = fgets(buf, (int)size, f) != NULL;
		fclose(f);
		if (ok) {
			buf[strcspn(buf, "\r\n")] = '\0';
			if (buf[0] != '\0')
				return 0;
		}
	}
	if (!create || size < 33)
		return -1;
	{
		unsigned char rnd[16];
		int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		char tmp[PATH_MAX + 8];
		if (fd < 0 || read(fd, rnd, sizeof rnd) != (ssize_t)sizeof rnd) {
			if (fd >= 0)
				close(fd);
			return -1;
		}
		close(fd);
		for (size_t i = 0; i < sizeof rnd; i++)
			snprintf(buf + 2 * i, 3, "%02x", rnd[i]);
		snprintf(tmp, sizeof tmp, "%s.tmp", path);
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return -1;
		if (write(fd, buf, strlen(buf)) != (ssize_t)strlen(buf) || close(fd) != 0 ||
		    rename(tmp, path) != 0) {
			unlink(tmp);
			return -1;
		}
	}
	return 0;
}

int agent_port(const struct agent *a)
{
	return a->http != NULL ? http_server_port(a->http) : 0;
}

static void agent_free(struct agent *a)
{
	free(a->server);
	free(a->kubeconfig);
	free(a->node);
	free(a->data_dir);
	free(a->image_dir);
	free(a->token);
	free(a->listen_host);
	free(a);
}

int agent_start(uv_loop_t *loop, const struct agent_config *cfg, struct agent **out,
		char *errmsg)
{
	struct agent *a = calloc(1, sizeof *a);
	struct informer_handlers h = {on_pod_add, on_pod_update, on_pod_delete, NULL};
	char sel[400];
	int rv;
	if (a == NULL) {
		cap_errmsg_printf(errmsg, "out of memory");
		return -1;
	}
	a->loop = loop;
	a->server = xstrdup(cfg->server);
	a->kubeconfig = xstrdup(cfg->kubeconfig);
	a->node = xstrdup(cfg->node_name);
	a->data_dir = xstrdup(cfg->data_dir);
	a->image_dir = xstrdup(cfg->image_dir);
	a->token = xstrdup(cfg->token);
	a->listen_host = xstrdup(cfg->listen_host);
	a->listen_port = cfg->listen_port;
	a->simulate = cfg->simulate;
	a->lease_ms = cfg->lease_ms ? cfg->lease_ms : 10000;
	snprintf(a->node_ip, sizeof a->node_ip, "%s", cfg->node_ip ? cfg->node_ip : "127.0.0.1");
	a->status_ms = cfg->status_ms ? cfg->status_ms : 300000;
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	if (a->node == NULL || (!a->simulate && a->data_dir == NULL)) {
		cap_errmsg_printf(errmsg, "a node name and a data directory are required");
		goto err_free;
	}
	rv = a->server != NULL ? kclient_new(loop, a->server, &a->kc) :
	     a->kubeconfig != NULL ? kclient_new_from_kubeconfig(loop, a->kubeconfig, &a->kc) : -1;
	if (rv != 0) {
		cap_errmsg_printf(errmsg, "cannot reach the API server: bad %s",
				  a->server ? "--server" : "--kubeconfig");
		goto err_free;
	}
	rv = a->simulate ? runtime_sim_new(loop, &a->rt) :
			   runtime_process_new(loop, a->data_dir, &a->rt, errmsg);
	if (rv != 0)
		goto err_kclient;
	if (a->listen_host != NULL) {
		struct http_server_config hc = {.host = a->listen_host, .port = a->listen_port,
						.max_body = 4096, .handler = on_http, .data = a};
		if (http_server_start(loop, &hc, &a->http, errmsg) != 0) {
			cap_errmsg_wrapf(errmsg, "node endpoint %s:%d", a->listen_host,
					 a->listen_port);
			goto err_runtime;
		}
	}
	if (!a->simulate) {
		struct network_config nc = {
			.data_dir = a->data_dir, .node_name = a->node, .node_ip = a->node_ip,
			.cluster_cidr = cfg->cluster_cidr, .service_cidr = cfg->service_cidr,
			.host_only = cfg->host_network, .changed = on_network_changed, .data = a,
		};
		if (network_start(loop, a->kc, &nc, &a->net, errmsg) != 0)
			goto err_http;
	}
	/* Containers of an earlier run are found before any pod is seen, and
	 * handed over once the pod list is complete. */
	runtime_recover(a->rt, on_found, a);
	snprintf(sel, sizeof sel, "spec.nodeName=%s", a->node);
	h.data = a;
	if (informer_new(a->kc, &KRES_PODS, NULL, NULL, sel, 0, &a->inf) != 0 ||
	    informer_add_handlers(a->inf, &h) != 0 || informer_start(a->inf) != 0) {
		cap_errmsg_printf(errmsg, "cannot start the pod informer");
		goto err_http;
	}
	if (!a->simulate) {
		struct proxy_config pc = {.nodeport_addresses = cfg->nodeport_addresses};
		if (proxy_parse_mode(cfg->proxy_mode, &pc.mode) != 0) {
			cap_errmsg_printf(errmsg, "unknown proxy mode \"%s\"", cfg->proxy_mode);
			goto err_http;
		}
		if (proxy_start(loop, a->kc, &pc, &a->proxy, errmsg) != 0)
			goto err_http;
	}
	uv_timer_init(loop, &a->lease_timer);
	uv_timer_init(loop, &a->status_timer);
	uv_timer_init(loop, &a->sync_timer);
	a->lease_timer.data = a->status_timer.data = a->sync_timer.data = a;
	a->open_handles = 3;
	uv_timer_start(&a->lease_timer, on_lease_timer, a->lease_ms, a->lease_ms);
	uv_timer_start(&a->status_timer, on_status_timer, a->status_ms, a->status_ms);
	uv_timer_start(&a->sync_timer, on_sync_timer, 50, 50);
	register_node(a);
	log_info("node agent %s: runtime %s, endpoint %s:%d", a->node, a->rt->version,
		 a->listen_host ? a->listen_host : "-", agent_port(a));
	*out = a;
	return 0;

err_http:
	if (a->inf != NULL)
		informer_stop(a->inf);
	network_close(a->net);
	if (a->http != NULL)
		http_server_close(a->http, NULL, NULL);
err_runtime:
	while (a->found != NULL) {
		struct recovered *r = a->found;
		a->found = r->next;
		runtime_release(a->rt, r->rc);
		free(r);
	}
	runtime_close(a->rt);
err_kclient:
	kclient_close(a->kc);
err_free:
	agent_free(a);
	return -1;
}

static void agent_maybe_done(struct agent *a)
{
	if (a->open_handles > 0)
		return;
	if (a->close_cb != NULL)
		a->close_cb(a->close_data);
	agent_free(a);
}

static void on_agent_handle_closed(uv_handle_t *h)
{
	struct agent *a = h->data;
	a->open_handles--;
	agent_maybe_done(a);
}

static void on_agent_execs_drained(void *data)
{
	struct agent *a = data;
	a->open_handles--;
	agent_maybe_done(a);
}

static void on_agent_proxy_closed(void *data)
{
	struct agent *a = data;
	a->open_handles--;
	agent_maybe_done(a);
}

static void on_agent_http_closed(void *data)
{
	struct agent *a = data;
	a->open_handles--;
	agent_maybe_done(a);
}

void agent_close(struct agent *a, void (*cb)(void *data), void *data)
{
	a->closing = true;
	a->close_cb = cb;
	a->close_data = data;
	informer_stop(a->inf);
	a->inf = NULL;
	network_close(a->net);
	a->net = NULL;
	while (a->follows != NULL)
		follow_free(a->follows);
	if (a->execs.live > 0) {
		/* Their processes are killed; their handles close in a moment. */
		a->open_handles++;
		a->execs.drained = on_agent_execs_drained;
		a->execs.data = a;
		exec_group_abort(&a->execs);
	}
	while (a->pods != NULL)
		pod_release(a->pods);
	while (a->found != NULL) {
		struct recovered *r = a->found;
		a->found = r->next;
		runtime_release(a->rt, r->rc);
		free(r);
	}
	/* The proxy's informers use the client: stop them first. */
	if (a->proxy != NULL) {
		a->open_handles++;
		proxy_close(a->proxy, on_agent_proxy_closed, a);
		a->proxy = NULL;
	}
	/* Outstanding calls end here, with their callbacks. */
	kclient_close(a->kc);
	runtime_close(a->rt);
	uv_close((uv_handle_t *)&a->lease_timer, on_agent_handle_closed);
	uv_close((uv_handle_t *)&a->status_timer, on_agent_handle_closed);
	uv_close((uv_handle_t *)&a->sync_timer, on_agent_handle_closed);
	if (a->http != NULL) {
		a->open_handles++;
		http_server_close(a->http, on_agent_http_closed, a);
	}
}
