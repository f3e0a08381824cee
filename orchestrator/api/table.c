/* table.c — meta.k8s.io/v1 Table rendering for `kubectl get`: the column
 * sets and cell texts of kubectl's built-in printers, resource by resource. */
#include "orchestrator/api/table.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orchestrator/api/selector.h"

struct column {
	const char *name;
	const char *type;   /* "string" or "integer" */
	const char *format; /* "name" for the object's name, else "" */
	int priority;       /* 1: only with -o wide */
};

typedef void (*row_fn)(json_t *obj, json_t *cells, time_t now);

struct printer {
	const char *resource;
	const struct column *cols;
	row_fn row;
};

/* ---- small readers over the object ---- */

static json_t *path_get(json_t *obj, const char *path)
{
	char key[128];
	const char *p = path;
	json_t *v = obj;

	while (v != NULL && *p != '\0') {
		const char *dot = strchr(p, '.');
		size_t n = dot == NULL ? strlen(p) : (size_t)(dot - p);
		if (!json_is_object(v) || n >= sizeof(key))
			return NULL;
		memcpy(key, p, n);
		key[n] = '\0';
		v = json_object_get(v, key);
		p = dot == NULL ? "" : dot + 1;
	}
	return v;
}

static const char *str_at(json_t *obj, const char *path, const char *dflt)
{
	const char *s = json_string_value(path_get(obj, path));

	return s != NULL && *s != '\0' ? s : dflt;
}

static json_int_t int_at(json_t *obj, const char *path)
{
	return json_integer_value(path_get(obj, path));
}

static void add_str(json_t *cells, const char *s)
{
	json_array_append_new(cells, json_string(s != NULL ? s : ""));
}

static void add_int(json_t *cells, json_int_t v)
{
	json_array_append_new(cells, json_integer(v));
}

/* A growable text for joined cells ("a,b,c"). */
struct text {
	char buf[4096];
	size_t len;
};

static void text_add(struct text *t, const char *sep, const char *s)
{
	int n;

	if (t->len > 0 && sep != NULL)
		text_add(t, NULL, sep);
	if (t->len >= sizeof(t->buf) - 1)
		return;
	n = snprintf(t->buf + t->len, sizeof(t->buf) - t->len, "%s", s);
	if (n > 0)
		t->len += (size_t)n < sizeof(t->buf) - t->len ? (size_t)n : sizeof(t->buf) - t->len - 1;
}

/* ---- times ---- */

time_t table_parse_time(const char *ts)
{
	struct tm tm;
	int n = 0;

	if (ts == NULL)
		return -1;
	memset(&tm, 0, sizeof(tm));
	if (sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	const char *p = ts + n;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	if ((*p == '+' || *p == '-') && strlen(p) >= 6) {
		int hh = 0, mm = 0;
		if (sscanf(p + 1, "%2d:%2d", &hh, &mm) == 2)
			t -= (*p == '+' ? 1 : -1) * (hh * 3600 + mm * 60);
	}
	return t;
}

void table_human_duration(long long d, char *buf, size_t len)
{
	long long minutes, hours;

	if (d < -1) {
		snprintf(buf, len, "<invalid>");
		return;
	}
	if (d < 0) {
		snprintf(buf, len, "0s");
		return;
	}
	if (d < 60 * 2) {
		snprintf(buf, len, "%llds", d);
		return;
	}
	minutes = d / 60;
	if (minutes < 10) {
		if (d % 60 == 0)
			snprintf(buf, len, "%lldm", minutes);
		else
			snprintf(buf, len, "%lldm%llds", minutes, d % 60);
		return;
	}
	if (minutes < 60 * 3) {
		snprintf(buf, len, "%lldm", minutes);
		return;
	}
	hours = d / 3600;
	if (hours < 8) {
		if (minutes % 60 == 0)
			snprintf(buf, len, "%lldh", hours);
		else
			snprintf(buf, len, "%lldh%lldm", hours, minutes % 60);
	} else if (hours < 48) {
		snprintf(buf, len, "%lldh", hours);
	} else if (hours < 24 * 8) {
		if (hours % 24 == 0)
			snprintf(buf, len, "%lldd", hours / 24);
		else
			snprintf(buf, len, "%lldd%lldh", hours / 24, hours % 24);
	} else if (hours < 24 * 365 * 2) {
		snprintf(buf, len, "%lldd", hours / 24);
	} else if (hours < 24 * 365 * 8) {
		long long dy = (hours / 24) % 365;
		if (dy == 0)
			snprintf(buf, len, "%lldy", hours / 24 / 365);
		else
			snprintf(buf, len, "%lldy%lldd", hours / 24 / 365, dy);
	} else {
		snprintf(buf, len, "%lldy", hours / 24 / 365);
	}
}

/* translateTimestampSince: "<unknown>" for a missing time. */
static void since(const char *ts, time_t now, char *buf, size_t len)
{
	time_t t = table_parse_time(ts);

	if (t == -1) {
		snprintf(buf, len, "<unknown>");
		return;
	}
	table_human_duration((long long)(now - t), buf, len);
}

static void add_age(json_t *obj, json_t *cells, time_t now)
{
	char age[32];

	since(str_at(obj, "metadata.creationTimestamp", NULL), now, age, sizeof(age));
	add_str(cells, age);
}

/* labels.FormatLabels: "k=v,..." sorted by key, "<none>" when empty. */
static void format_labels(json_t *m, struct text *t)
{
	const char *keys[256];
	size_t n = 0;
	const char *k;
	json_t *v;

	json_object_foreach(m, k, v)
		if (n < 256)
			keys[n++] = k;
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
			const char *x = keys[j];
			keys[j] = keys[j - 1];
			keys[j - 1] = x;
		}
	for (size_t i = 0; i < n; i++) {
		char kv[512];
		snprintf(kv, sizeof(kv), "%s=%s", keys[i],
			 str_at(json_object_get(m, keys[i]), "", ""));
		text_add(t, ",", kv);
	}
	if (t->len == 0)
		text_add(t, NULL, "<none>");
}

/* metav1.FormatLabelSelector. */
static void format_selector(json_t *sel, struct text *t)
{
	struct label_selector *s = NULL;
	char errmsg[256];

	if (sel == NULL || json_is_null(sel)) {
		text_add(t, NULL, "<none>");
		return;
	}
	if (label_selector_from_json(sel, &s, errmsg) != 0) {
		text_add(t, NULL, "<error>");
		return;
	}
	char *str = label_selector_string(s);
	text_add(t, NULL, str != NULL && *str != '\0' ? str : "<none>");
	free(str);
	label_selector_free(s);
}

/* The CONTAINERS, IMAGES and SELECTOR wide columns of workloads. */
static void add_workload_wide(json_t *obj, json_t *cells)
{
	struct text names = { .len = 0 }, images = { .len = 0 }, sel = { .len = 0 };
	json_t *c;
	size_t i;

	json_array_foreach(path_get(obj, "spec.template.spec.containers"), i, c) {
		text_add(&names, ",", str_at(c, "name", ""));
		text_add(&images, ",", str_at(c, "image", ""));
	}
	add_str(cells, names.buf);
	add_str(cells, images.buf);
	format_selector(path_get(obj, "spec.selector"), &sel);
	add_str(cells, sel.buf);
}

static void add_name(json_t *obj, json_t *cells)
{
	add_str(cells, str_at(obj, "metadata.name", ""));
}

/* ---- pods ---- */

static bool condition_true(json_t *obj, const char *type)
{
	json_t *c;
	size_t i;

	json_array_foreach(path_get(obj, "status.conditions"), i, c)
		if (strcmp(str_at(c, "type", ""), type) == 0)
			return strcmp(str_at(c, "status", ""), "True") == 0;
	return false;
}

static bool restartable_init(json_t *pod, const char *name)
{
	json_t *c;
	size_t i;

	json_array_foreach(path_get(pod, "spec.initContainers"), i, c)
		if (strcmp(str_at(c, "name", ""), name) == 0)
			return strcmp(str_at(c, "restartPolicy", ""), "Always") == 0;
	return false;
}

struct pod_summary {
	char reason[128];
	int ready;
	int total;
	long long restarts;
	time_t last_restart; /* -1: none */
};

static void note_restart(struct pod_summary *s, json_t *cs)
{
	time_t t = table_parse_time(str_at(cs, "lastState.terminated.finishedAt", NULL));

	s->restarts += int_at(cs, "restartCount");
	if (t != -1 && t > s->last_restart)
		s->last_restart = t;
}

/* kubectl's printPod, which derives the STATUS text from the phase, the
 * pod's reason and each container's state. */
static void pod_summary(json_t *pod, struct pod_summary *s)
{
	json_t *cs;
	size_t i, n;
	bool initializing = false;
	int ninit = (int)json_array_size(path_get(pod, "spec.initContainers"));

	memset(s, 0, sizeof(*s));
	s->last_restart = -1;
	s->total = (int)json_array_size(path_get(pod, "spec.containers"));
	snprintf(s->reason, sizeof(s->reason), "%s",
		 str_at(pod, "status.reason", str_at(pod, "status.phase", "")));
	json_array_foreach(path_get(pod, "status.conditions"), i, cs)
		if (strcmp(str_at(cs, "type", ""), "PodScheduled") == 0 &&
		    strcmp(str_at(cs, "reason", ""), "SchedulingGated") == 0)
			snprintf(s->reason, sizeof(s->reason), "SchedulingGated");

	/* Sidecars (restartable init containers) count among the containers. */
	json_array_foreach(path_get(pod, "spec.initContainers"), i, cs)
		if (strcmp(str_at(cs, "restartPolicy", ""), "Always") == 0)
			s->total++;

	json_array_foreach(path_get(pod, "status.initContainerStatuses"), i, cs) {
		json_t *term = path_get(cs, "state.terminated");
		json_t *wait = path_get(cs, "state.waiting");
		bool sidecar = restartable_init(pod, str_at(cs, "name", ""));

		note_restart(s, cs);
		if (sidecar) {
			if (json_is_true(json_object_get(cs, "started")) &&
			    json_is_true(json_object_get(cs, "ready")))
				s->ready++;
		}
		if (term != NULL && int_at(term, "exitCode") == 0)
			continue;
		if (sidecar && json_is_true(json_object_get(cs, "started")))
			continue;
		if (term != NULL) {
			const char *r = str_at(term, "reason", NULL);
			if (r == NULL && int_at(term, "signal") != 0)
				snprintf(s->reason, sizeof(s->reason), "Init:Signal:%lld",
					 (long long)int_at(term, "signal"));
			else if (r == NULL)
				snprintf(s->reason, sizeof(s->reason), "Init:ExitCode:%lld",
					 (long long)int_at(term, "exitCode"));
			else
				snprintf(s->reason, sizeof(s->reason), "Init:%s", r);
		} else if (wait != NULL && str_at(wait, "reason", NULL) != NULL &&
			   strcmp(str_at(wait, "reason", ""), "PodInitializing") != 0) {
			snprintf(s->reason, sizeof(s->reason), "Init:%s", str_at(wait, "reason", ""));
		} else {
			snprintf(s->reason, sizeof(s->reason), "Init:%zu/%d", i, ninit);
		}
		initializing = true;
		break;
	}

	if (!initializing || condition_true(pod, "Initialized")) {
		bool has_running = false;
		json_t *list = path_get(pod, "status.containerStatuses");

		s->restarts = 0;
		s->last_restart = -1;
		json_array_foreach(path_get(pod, "status.initContainerStatuses"), i, cs)
			if (restartable_init(pod, str_at(cs, "name", "")))
				note_restart(s, cs);
		n = json_array_size(list);
		for (i = n; i-- > 0;) {
			json_t *term, *wait;
			cs = json_array_get(list, i);
			term = path_get(cs, "state.terminated");
			wait = path_get(cs, "state.waiting");
			note_restart(s, cs);
			if (wait != NULL && str_at(wait, "reason", NULL) != NULL) {
				snprintf(s->reason, sizeof(s->reason), "%s", str_at(wait, "reason", ""));
			} else if (term != NULL && str_at(term, "reason", NULL) != NULL) {
				snprintf(s->reason, sizeof(s->reason), "%s", str_at(term, "reason", ""));
			} else if (term != NULL) {
				if (int_at(term, "signal") != 0)
					snprintf(s->reason, sizeof(s->reason), "Signal:%lld",
						 (long long)int_at(term, "signal"));
				else
					snprintf(s->reason, sizeof(s->reason), "ExitCode:%lld",
						 (long long)int_at(term, "exitCode"));
			} else if (json_is_true(json_object_get(cs, "ready")) &&
				   path_get(cs, "state.running") != NULL) {
				has_running = true;
				s->ready++;
			}
		}
		/* A pod whose containers completed but one still runs is shown
		 * as Running (or NotReady), not Completed. */
		if (strcmp(s->reason, "Completed") == 0 && has_running)
			snprintf(s->reason, sizeof(s->reason), "%s",
				 condition_true(pod, "Ready") ? "Running" : "NotReady");
	}

	if (path_get(pod, "metadata.deletionTimestamp") != NULL) {
		if (strcmp(s->reason, "NodeLost") == 0)
			snprintf(s->reason, sizeof(s->reason), "Unknown");
		else
			snprintf(s->reason, sizeof(s->reason), "Terminating");
	}
}

void table_pod_status(json_t *pod, char *buf, size_t len)
{
	struct pod_summary s;

	pod_summary(pod, &s);
	snprintf(buf, len, "%s", s.reason);
}

static void pod_row(json_t *pod, json_t *cells, time_t now)
{
	struct pod_summary s;
	char buf[160], age[32];
	json_t *gates = path_get(pod, "spec.readinessGates");

	pod_summary(pod, &s);
	add_name(pod, cells);
	snprintf(buf, sizeof(buf), "%d/%d", s.ready, s.total);
	add_str(cells, buf);
	add_str(cells, s.reason);
	if (s.restarts != 0 && s.last_restart != -1) {
		table_human_duration((long long)(now - s.last_restart), age, sizeof(age));
		snprintf(buf, sizeof(buf), "%lld (%s ago)", s.restarts, age);
		add_str(cells, buf);
	} else {
		add_int(cells, s.restarts);
	}
	add_age(pod, cells, now);
	add_str(cells, str_at(pod, "status.podIP", "<none>"));
	add_str(cells, str_at(pod, "spec.nodeName", "<none>"));
	add_str(cells, str_at(pod, "status.nominatedNodeName", "<none>"));
	if (json_array_size(gates) == 0) {
		add_str(cells, "<none>");
	} else {
		json_t *g;
		size_t i;
		int ok = 0;
		json_array_foreach(gates, i, g)
			if (condition_true(pod, str_at(g, "conditionType", "")))
				ok++;
		snprintf(buf, sizeof(buf), "%d/%zu", ok, json_array_size(gates));
		add_str(cells, buf);
	}
}

/* ---- the other resources ---- */

static void namespace_row(json_t *o, json_t *cells, time_t now)
{
	add_name(o, cells);
	add_str(cells, str_at(o, "status.phase", ""));
	add_age(o, cells, now);
}

static const char *node_address(json_t *node, const char *type)
{
	json_t *a;
	size_t i;

	json_array_foreach(path_get(node, "status.addresses"), i, a)
		if (strcmp(str_at(a, "type", ""), type) == 0)
			return str_at(a, "address", "<none>");
	return "<none>";
}

static void node_row(json_t *o, json_t *cells, time_t now)
{
	struct text status = { .len = 0 }, roles = { .len = 0 };
	const char *rl[64];
	size_t nroles = 0;
	const char *k;
	json_t *v, *c;
	size_t i;

	add_name(o, cells);
	json_array_foreach(path_get(o, "status.conditions"), i, c)
		if (strcmp(str_at(c, "type", ""), "Ready") == 0)
			text_add(&status, ",", strcmp(str_at(c, "status", ""), "True") == 0 ?
						       "Ready" : "NotReady");
	if (status.len == 0)
		text_add(&status, NULL, "Unknown");
	if (json_is_true(path_get(o, "spec.unschedulable")))
		text_add(&status, ",", "SchedulingDisabled");
	add_str(cells, status.buf);

	/* Roles come from node-role.kubernetes.io/<role> keys and the older
	 * kubernetes.io/role value, sorted. */
	json_object_foreach(path_get(o, "metadata.labels"), k, v) {
		const char *role = NULL;
		if (strncmp(k, "node-role.kubernetes.io/", 24) == 0 && k[24] != '\0')
			role = k + 24;
		else if (strcmp(k, "kubernetes.io/role") == 0 && str_at(v, "", NULL) != NULL)
			role = json_string_value(v);
		if (role != NULL && nroles < 64)
			rl[nroles++] = role;
	}
	for (i = 1; i < nroles; i++)
		for (size_t j = i; j > 0 && strcmp(rl[j - 1], rl[j]) > 0; j--) {
			const char *x = rl[j];
			rl[j] = rl[j - 1];
			rl[j - 1] = x;
		}
	for (i = 0; i < nroles; i++)
		if (i == 0 || strcmp(rl[i], rl[i - 1]) != 0)
			text_add(&roles, ",", rl[i]);
	add_str(cells, roles.len > 0 ? roles.buf : "<none>");
	add_age(o, cells, now);
	add_str(cells, str_at(o, "status.nodeInfo.kubeletVersion", ""));
	add_str(cells, node_address(o, "InternalIP"));
	add_str(cells, node_address(o, "ExternalIP"));
	add_str(cells, str_at(o, "status.nodeInfo.osImage", "<unknown>"));
	add_str(cells, str_at(o, "status.nodeInfo.kernelVersion", "<unknown>"));
	add_str(cells, str_at(o, "status.nodeInfo.containerRuntimeVersion", "<unknown>"));
}

static void service_row(json_t *o, json_t *cells, time_t now)
{
	const char *type = str_at(o, "spec.type", "ClusterIP");
	struct text ext = { .len = 0 }, ports = { .len = 0 }, sel = { .len = 0 };
	json_t *p;
	size_t i;

	add_name(o, cells);
	add_str(cells, type);
	add_str(cells, str_at(o, "spec.clusterIP", "<none>"));
	if (strcmp(type, "ExternalName") == 0) {
		text_add(&ext, NULL, str_at(o, "spec.externalName", ""));
	} else {
		if (strcmp(type, "LoadBalancer") == 0)
			json_array_foreach(path_get(o, "status.loadBalancer.ingress"), i, p) {
				if (str_at(p, "ip", NULL) != NULL)
					text_add(&ext, ",", str_at(p, "ip", ""));
				else if (str_at(p, "hostname", NULL) != NULL)
					text_add(&ext, ",", str_at(p, "hostname", ""));
			}
		json_array_foreach(path_get(o, "spec.externalIPs"), i, p)
			text_add(&ext, ",", str_at(p, "", ""));
		if (ext.len == 0)
			text_add(&ext, NULL, strcmp(type, "LoadBalancer") == 0 ? "<pending>" : "<none>");
	}
	add_str(cells, ext.buf);
	json_array_foreach(path_get(o, "spec.ports"), i, p) {
		char buf[64];
		const char *proto = str_at(p, "protocol", "TCP");
		if (int_at(p, "nodePort") != 0)
			snprintf(buf, sizeof(buf), "%lld:%lld/%s", (long long)int_at(p, "port"),
				 (long long)int_at(p, "nodePort"), proto);
		else
			snprintf(buf, sizeof(buf), "%lld/%s", (long long)int_at(p, "port"), proto);
		text_add(&ports, ",", buf);
	}
	add_str(cells, ports.len > 0 ? ports.buf : "<none>");
	add_age(o, cells, now);
	format_labels(path_get(o, "spec.selector"), &sel);
	add_str(cells, sel.buf);
}

/* formatEndpoints: the first three ip:port pairs, then "+ N more...". */
/* At most three values, then " + N more..."; "<unset>" when empty (as
 * kubectl's printers list ports and addresses of an EndpointSlice). */
static void add_list3(json_t *cells, struct text *t, int count)
{
	char more[64];
	if (count == 0) {
		add_str(cells, "<unset>");
		return;
	}
	if (count > 3) {
		snprintf(more, sizeof(more), " + %d more...", count - 3);
		text_add(t, NULL, more);
	}
	add_str(cells, t->buf);
}

static void endpointslice_row(json_t *o, json_t *cells, time_t now)
{
	struct text ports = { .len = 0 }, eps = { .len = 0 };
	json_t *p, *ep, *a;
	size_t i, j;
	int np = 0, ne = 0;

	add_name(o, cells);
	add_str(cells, str_at(o, "addressType", ""));
	json_array_foreach(path_get(o, "ports"), i, p) {
		char buf[32];
		if (np++ >= 3)
			continue;
		if (json_is_integer(json_object_get(p, "port")))
			snprintf(buf, sizeof(buf), "%lld", (long long)int_at(p, "port"));
		else
			snprintf(buf, sizeof(buf), "%s", str_at(p, "name", "*"));
		text_add(&ports, ",", buf);
	}
	add_list3(cells, &ports, np);
	json_array_foreach(path_get(o, "endpoints"), i, ep)
		json_array_foreach(json_object_get(ep, "addresses"), j, a) {
			if (ne++ < 3)
				text_add(&eps, ",", json_string_value(a) ? json_string_value(a) : "");
		}
	add_list3(cells, &eps, ne);
	add_age(o, cells, now);
}

static void endpoints_row(json_t *o, json_t *cells, time_t now)
{
	struct text t = { .len = 0 };
	json_t *subsets = path_get(o, "subsets");
	json_t *ss, *port, *addr;
	size_t i, j, k;
	int count = 0, shown = 0;

	add_name(o, cells);
	json_array_foreach(subsets, i, ss) {
		json_t *ports = json_object_get(ss, "ports");
		if (json_array_size(ports) == 0) {
			json_array_foreach(json_object_get(ss, "addresses"), k, addr) {
				if (shown < 3) {
					text_add(&t, ",", str_at(addr, "ip", ""));
					shown++;
				}
				count++;
			}
			continue;
		}
		json_array_foreach(ports, j, port) {
			json_array_foreach(json_object_get(ss, "addresses"), k, addr) {
				if (shown < 3) {
					char hp[128];
					const char *ip = str_at(addr, "ip", "");
					snprintf(hp, sizeof(hp), strchr(ip, ':') != NULL ? "[%s]:%lld" :
											 "%s:%lld",
						 ip, (long long)int_at(port, "port"));
					text_add(&t, ",", hp);
					shown++;
				}
				count++;
			}
		}
	}
	if (json_array_size(subsets) == 0) {
		add_str(cells, "<none>");
	} else if (count > 3) {
		char more[64];
		snprintf(more, sizeof(more), " + %d more...", count - 3);
		text_add(&t, NULL, more);
		add_str(cells, t.buf);
	} else {
		add_str(cells, t.buf);
	}
	add_age(o, cells, now);
}

static void event_row(json_t *o, json_t *cells, time_t now)
{
	char first[32], last[32], target[512], source[256];
	const char *ft = str_at(o, "firstTimestamp", NULL);
	json_int_t count = int_at(o, "count");
	const char *kind = str_at(o, "involvedObject.kind", "");
	const char *msg = str_at(o, "message", "");
	char lower[128];
	size_t i;

	since(ft != NULL ? ft : str_at(o, "eventTime", NULL), now, first, sizeof(first));
	if (str_at(o, "lastTimestamp", NULL) != NULL)
		since(str_at(o, "lastTimestamp", NULL), now, last, sizeof(last));
	else
		snprintf(last, sizeof(last), "%s", first);
	if (path_get(o, "series") != NULL) {
		since(str_at(o, "series.lastObservedTime", NULL), now, last, sizeof(last));
		count = int_at(o, "series.count");
	} else if (count == 0) {
		count = 1;
	}
	for (i = 0; kind[i] != '\0' && i + 1 < sizeof(lower); i++)
		lower[i] = (char)(kind[i] >= 'A' && kind[i] <= 'Z' ? kind[i] - 'A' + 'a' : kind[i]);
	lower[i] = '\0';
	if (str_at(o, "involvedObject.name", NULL) != NULL)
		snprintf(target, sizeof(target), "%s/%s", lower, str_at(o, "involvedObject.name", ""));
	else
		snprintf(target, sizeof(target), "%s", lower);
	const char *comp = str_at(o, "source.component", str_at(o, "reportingController", ""));
	const char *host = str_at(o, "source.host", str_at(o, "reportingInstance", ""));
	if (*host != '\0')
		snprintf(source, sizeof(source), "%s, %s", comp, host);
	else
		snprintf(source, sizeof(source), "%s", comp);
	/* The message is trimmed of surrounding white space. */
	while (*msg == ' ' || *msg == '\n' || *msg == '\t')
		msg++;
	size_t mlen = strlen(msg);
	while (mlen > 0 && (msg[mlen - 1] == ' ' || msg[mlen - 1] == '\n' || msg[mlen - 1] == '\t'))
		mlen--;

	add_str(cells, last);
	add_str(cells, str_at(o, "type", ""));
	add_str(cells, str_at(o, "reason", ""));
	add_str(cells, target);
	add_str(cells, str_at(o, "involvedObject.fieldPath", ""));
	add_str(cells, source);
	json_array_append_new(cells, json_stringn(msg, mlen));
	add_str(cells, first);
	add_int(cells, count);
	add_name(o, cells);
}

static void configmap_row(json_t *o, json_t *cells, time_t now)
{
	add_name(o, cells);
	add_int(cells, (json_int_t)(json_object_size(json_object_get(o, "data")) +
				    json_object_size(json_object_get(o, "binaryData"))));
	add_age(o, cells, now);
}

static void secret_row(json_t *o, json_t *cells, time_t now)
{
	add_name(o, cells);
	add_str(cells, str_at(o, "type", ""));
	add_int(cells, (json_int_t)json_object_size(json_object_get(o, "data")));
	add_age(o, cells, now);
}

static void serviceaccount_row(json_t *o, json_t *cells, time_t now)
{
	add_name(o, cells);
	add_int(cells, (json_int_t)json_array_size(json_object_get(o, "secrets")));
	add_age(o, cells, now);
}

static void replicaset_row(json_t *o, json_t *cells, time_t now)
{
	add_name(o, cells);
	add_int(cells, path_get(o, "spec.replicas") != NULL ? int_at(o, "spec.replicas") : 1);
	add_int(cells, int_at(o, "status.replicas"));
	add_int(cells, int_at(o, "status.readyReplicas"));
	add_age(o, cells, now);
	add_workload_wide(o, cells);
}

static void deployment_row(json_t *o, json_t *cells, time_t now)
{
	char ready[64];

	add_name(o, cells);
	snprintf(ready, sizeof(ready), "%lld/%lld", (long long)int_at(o, "status.readyReplicas"),
		 path_get(o, "spec.replicas") != NULL ? (long long)int_at(o, "spec.replicas") : 1LL);
	add_str(cells, ready);
	add_int(cells, int_at(o, "status.updatedReplicas"));
	add_int(cells, int_at(o, "status.availableReplicas"));
	add_age(o, cells, now);
	add_workload_wide(o, cells);
}

static void daemonset_row(json_t *o, json_t *cells, time_t now)
{
	struct text ns = { .len = 0 };

	add_name(o, cells);
	add_int(cells, int_at(o, "status.desiredNumberScheduled"));
	add_int(cells, int_at(o, "status.currentNumberScheduled"));
	add_int(cells, int_at(o, "status.numberReady"));
	add_int(cells, int_at(o, "status.updatedNumberScheduled"));
	add_int(cells, int_at(o, "status.numberAvailable"));
	format_labels(path_get(o, "spec.template.spec.nodeSelector"), &ns);
	add_str(cells, ns.buf);
	add_age(o, cells, now);
	add_workload_wide(o, cells);
}

/* GetAccessModesAsString: a fixed order, not the order given. */
static void access_modes(json_t *modes, struct text *t)
{
	static const char *const names[][2] = { { "ReadWriteOnce", "RWO" },
						{ "ReadOnlyMany", "ROX" },
						{ "ReadWriteMany", "RWX" },
						{ "ReadWriteOncePod", "RWOP" } };
	for (size_t n = 0; n < 4; n++) {
		json_t *m;
		size_t i;
		json_array_foreach(modes, i, m)
			if (strcmp(str_at(m, "", ""), names[n][0]) == 0) {
				text_add(t, ",", names[n][1]);
				break;
			}
	}
}

static void pv_row(json_t *o, json_t *cells, time_t now)
{
	struct text modes = { .len = 0 };
	char claim[512] = "";

	add_name(o, cells);
	add_str(cells, str_at(o, "spec.capacity.storage", ""));
	access_modes(path_get(o, "spec.accessModes"), &modes);
	add_str(cells, modes.buf);
	add_str(cells, str_at(o, "spec.persistentVolumeReclaimPolicy", ""));
	add_str(cells, path_get(o, "metadata.deletionTimestamp") != NULL ?
			       "Terminating" : str_at(o, "status.phase", ""));
	if (path_get(o, "spec.claimRef") != NULL)
		snprintf(claim, sizeof(claim), "%s/%s", str_at(o, "spec.claimRef.namespace", ""),
			 str_at(o, "spec.claimRef.name", ""));
	add_str(cells, claim);
	add_str(cells, str_at(o, "spec.storageClassName", ""));
	add_str(cells, str_at(o, "spec.volumeAttributesClassName", "<unset>"));
	add_str(cells, str_at(o, "status.reason", ""));
	add_age(o, cells, now);
	add_str(cells, str_at(o, "spec.volumeMode", "<unset>"));
}

static void pvc_row(json_t *o, json_t *cells, time_t now)
{
	struct text modes = { .len = 0 };
	bool bound = str_at(o, "spec.volumeName", NULL) != NULL;

	add_name(o, cells);
	add_str(cells, path_get(o, "metadata.deletionTimestamp") != NULL ?
			       "Terminating" : str_at(o, "status.phase", ""));
	add_str(cells, str_at(o, "spec.volumeName", ""));
	add_str(cells, bound ? str_at(o, "status.capacity.storage", "") : "");
	if (bound)
		access_modes(path_get(o, "status.accessModes"), &modes);
	add_str(cells, modes.buf);
	add_str(cells, str_at(o, "spec.storageClassName", ""));
	add_str(cells, str_at(o, "spec.volumeAttributesClassName", "<unset>"));
	add_age(o, cells, now);
	add_str(cells, str_at(o, "spec.volumeMode", "<unset>"));
}

static void lease_row(json_t *o, json_t *cells, time_t now)
{
	add_name(o, cells);
	add_str(cells, str_at(o, "spec.holderIdentity", ""));
	add_age(o, cells, now);
}

static void default_row(json_t *o, json_t *cells, time_t now)
{
	add_name(o, cells);
	add_age(o, cells, now);
}

#define COL_NAME { "Name", "string", "name", 0 }
#define COL_AGE { "Age", "string", "", 0 }
#define COL(n, t, p) { n, t, "", p }
#define COL_END { NULL, NULL, NULL, 0 }
#define WORKLOAD_WIDE COL("Containers", "string", 1), COL("Images", "string", 1), \
		      COL("Selector", "string", 1)

static const struct column pod_cols[] = {
	COL_NAME, COL("Ready", "string", 0), COL("Status", "string", 0),
	COL("Restarts", "string", 0), COL_AGE, COL("IP", "string", 1), COL("Node", "string", 1),
	COL("Nominated Node", "string", 1), COL("Readiness Gates", "string", 1), COL_END
};
static const struct column namespace_cols[] = { COL_NAME, COL("Status", "string", 0), COL_AGE,
						 COL_END };
static const struct column node_cols[] = {
	COL_NAME, COL("Status", "string", 0), COL("Roles", "string", 0), COL_AGE,
	COL("Version", "string", 0), COL("Internal-IP", "string", 1),
	COL("External-IP", "string", 1), COL("OS-Image", "string", 1),
	COL("Kernel-Version", "string", 1), COL("Container-Runtime", "string", 1), COL_END
};
static const struct column service_cols[] = {
	COL_NAME, COL("Type", "string", 0), COL("Cluster-IP", "string", 0),
	COL("External-IP", "string", 0), COL("Port(s)", "string", 0), COL_AGE,
	COL("Selector", "string", 1), COL_END
};
static const struct column endpoints_cols[] = { COL_NAME, COL("Endpoints", "string", 0),
						 COL_AGE, COL_END };
static const struct column endpointslice_cols[] = {
	COL_NAME, COL("AddressType", "string", 0), COL("Ports", "string", 0),
	COL("Endpoints", "string", 0), COL_AGE, COL_END
};
static const struct column event_cols[] = {
	COL("Last Seen", "string", 0), COL("Type", "string", 0), COL("Reason", "string", 0),
	COL("Object", "string", 0), COL("Subobject", "string", 1), COL("Source", "string", 1),
	COL("Message", "string", 0), COL("First Seen", "string", 1),
	COL("Count", "integer", 1), { "Name", "string", "name", 1 }, COL_END
};
static const struct column configmap_cols[] = { COL_NAME, COL("Data", "integer", 0), COL_AGE,
						 COL_END };
static const struct column secret_cols[] = { COL_NAME, COL("Type", "string", 0),
					      COL("Data", "integer", 0), COL_AGE, COL_END };
static const struct column serviceaccount_cols[] = { COL_NAME, COL("Secrets", "integer", 0),
						      COL_AGE, COL_END };
static const struct column replicaset_cols[] = {
	COL_NAME, COL("Desired", "integer", 0), COL("Current", "integer", 0),
	COL("Ready", "integer", 0), COL_AGE, WORKLOAD_WIDE, COL_END
};
static const struct column deployment_cols[] = {
	COL_NAME, COL("Ready", "string", 0), COL("Up-to-date", "integer", 0),
	COL("Available", "integer", 0), COL_AGE, WORKLOAD_WIDE, COL_END
};
static const struct column daemonset_cols[] = {
	COL_NAME, COL("Desired", "integer", 0), COL("Current", "integer", 0),
	COL("Ready", "integer", 0), COL("Up-to-date", "integer", 0),
	COL("Available", "integer", 0), COL("Node Selector", "string", 0), COL_AGE,
	WORKLOAD_WIDE, COL_END
};
static const struct column pv_cols[] = {
	COL_NAME, COL("Capacity", "string", 0), COL("Access Modes", "string", 0),
	COL("Reclaim Policy", "string", 0), COL("Status", "string", 0),
	COL("Claim", "string", 0), COL("StorageClass", "string", 0),
	COL("VolumeAttributesClass", "string", 0), COL("Reason", "string", 0), COL_AGE,
	COL("VolumeMode", "string", 1), COL_END
};
static const struct column pvc_cols[] = {
	COL_NAME, COL("Status", "string", 0), COL("Volume", "string", 0),
	COL("Capacity", "string", 0), COL("Access Modes", "string", 0),
	COL("StorageClass", "string", 0), COL("VolumeAttributesClass", "string", 0), COL_AGE,
	COL("VolumeMode", "string", 1), COL_END
};
static const struct column lease_cols[] = { COL_NAME, COL("Holder", "string", 0), COL_AGE,
					     COL_END };
static const struct column default_cols[] = { COL_NAME, COL_AGE, COL_END };

static const struct printer printers[] = {
	{ "pods", pod_cols, pod_row },
	{ "namespaces", namespace_cols, namespace_row },
	{ "nodes", node_cols, node_row },
	{ "services", service_cols, service_row },
	{ "endpoints", endpoints_cols, endpoints_row },
	{ "endpointslices", endpointslice_cols, endpointslice_row },
	{ "events", event_cols, event_row },
	{ "configmaps", configmap_cols, configmap_row },
	{ "secrets", secret_cols, secret_row },
	{ "serviceaccounts", serviceaccount_cols, serviceaccount_row },
	{ "replicasets", replicaset_cols, replicaset_row },
	{ "deployments", deployment_cols, deployment_row },
	{ "daemonsets", daemonset_cols, daemonset_row },
	{ "persistentvolumes", pv_cols, pv_row },
	{ "persistentvolumeclaims", pvc_cols, pvc_row },
	{ "leases", lease_cols, lease_row },
};

static const struct printer default_printer = { "", default_cols, default_row };

static const struct printer *find_printer(const char *resource)
{
	for (size_t i = 0; i < sizeof(printers) / sizeof(printers[0]); i++)
		if (resource != NULL && strcmp(printers[i].resource, resource) == 0)
			return &printers[i];
	return &default_printer;
}

json_t *table_row_cells(const char *resource, json_t *obj, time_t now)
{
	json_t *cells = json_array();

	if (cells != NULL)
		find_printer(resource)->row(obj, cells, now);
	return cells;
}

json_t *table_build(const char *resource, json_t *items, const char *resource_version, time_t now)
{
	const struct printer *p = find_printer(resource);
	json_t *t, *cols, *rows, *meta, *obj;
	size_t i;

	t = json_pack("{s:s, s:s}", "kind", "Table", "apiVersion", "meta.k8s.io/v1");
	cols = json_array();
	rows = json_array();
	meta = json_object();
	if (t == NULL || cols == NULL || rows == NULL || meta == NULL)
		goto nomem;
	if (resource_version != NULL)
		json_object_set_new(meta, "resourceVersion", json_string(resource_version));
	json_object_set_new(t, "metadata", meta);
	meta = NULL;
	for (const struct column *c = p->cols; c->name != NULL; c++) {
		char desc[64];
		snprintf(desc, sizeof(desc), "%s column", c->name);
		json_array_append_new(cols, json_pack("{s:s, s:s, s:s, s:s, s:i}", "name", c->name,
						      "type", c->type, "format", c->format,
						      "description", desc, "priority", c->priority));
	}
	json_object_set_new(t, "columnDefinitions", cols);
	cols = NULL;
	json_array_foreach(items, i, obj) {
		json_t *md = json_object_get(obj, "metadata");
		json_t *row = json_pack("{s:o, s:{s:s, s:s, s:o}}", "cells",
					table_row_cells(resource, obj, now), "object", "kind",
					"PartialObjectMetadata", "apiVersion", "meta.k8s.io/v1",
					"metadata", md != NULL ? json_incref(md) : json_object());
		if (row == NULL || json_array_append_new(rows, row) != 0)
			goto nomem;
	}
	json_object_set_new(t, "rows", rows);
	return t;
nomem:
	json_decref(t);
	json_decref(cols);
	json_decref(rows);
	json_decref(meta);
	return NULL;
}
