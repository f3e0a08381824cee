/* cli_main.c — `capstan`, an etcdctl-like command line over the kv client.
 *
 * Each command builds one gateway request, runs the uv loop until its
 * callbacks are done, and prints the answer as etcdctl does (or the raw
 * gateway JSON with -w json). Exit codes are part of the contract scripts
 * rely on; see cli_usage(). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "client/bench.h"
#include "client/kv_http.h"
#include "lib/b64.h"
#include "lib/err.h"
#include "lib/kv.h"

#define CLI_OK 0
#define CLI_ESERVER 1
#define CLI_EUSAGE 2
#define CLI_EUNREACHABLE 3

#define CLI_MAX_POS 8

enum cli_out { CLI_OUT_SIMPLE, CLI_OUT_JSON, CLI_OUT_TABLE };

/* Per-invocation state: one command runs per process. */
static struct {
	uv_loop_t loop;
	struct kv *kv;
	const char *endpoints;
	enum cli_out out;
	unsigned timeout_ms;
	int rc;
	bool finishing;
	uv_timer_t finish_timer;
	uv_signal_t sigint;
	uv_signal_t sigterm;
	bool signals_on;
	uv_timer_t tick;              /* lease keepalive period */
	bool tick_on;
	struct kv_watch *watch;       /* watch or snapshot stream in flight */
	/* command parameters */
	bool prev_kv;
	bool keys_only;
	bool value_only;
	bool count_only;
	long long count_left;         /* watch --count; 0 = forever */
	long long lease_id;
	bool once;
	bool lease_keys;
	long long compact_rev;
	const char *snap_path;
	char *snap_part;
	int snap_fd;
	/* status: one row and one client per endpoint */
	char **st_urls;               /* NULL for a member with no client URL */
	size_t st_n;
	struct kv **st_kvs;
	size_t st_pending;
	json_t *st_given;             /* the --endpoints list */
	json_t *st_members;           /* member list, when it answered */
	json_t *st_answers;           /* rows: {endpoint, member?, answer | error} */
	bool st_cluster;
	bool st_discover;
	bool st_failed;
	bool st_server_error;
	/* member add / remove */
	const char *member_name;
	uint64_t member_id;
} g;

/* ---- small helpers ---- */

static void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("Error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(see capstan --help)\n", stderr);
}

/* A 64-bit integer field given as a string or a number; 0 when absent. */
static long long cli_int(json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);
	if (json_is_integer(v))
		return (long long)json_integer_value(v);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	return 0;
}

static json_t *cli_bytes(const char *s, size_t n)
{
	char *enc = malloc(b64_encoded_size(n));
	json_t *j;
	if (enc == NULL)
		return NULL;
	b64_encode((const uint8_t *)s, n, enc);
	j = json_string(enc);
	free(enc);
	return j;
}

static json_t *cli_int_json(long long v)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%lld", v);
	return json_string(buf);
}

/* Writes a base64 field decoded, followed by a newline. */
static void cli_print_bytes(json_t *obj, const char *name)
{
	const char *s = json_string_value(json_object_get(obj, name));
	if (s != NULL) {
		size_t n = strlen(s);
		uint8_t *buf = malloc(b64_decoded_max(n) + 1);
		long m = buf != NULL ? b64_decode(s, n, buf) : -1;
		if (m > 0)
			fwrite(buf, 1, (size_t)m, stdout);
		free(buf);
	}
	putchar('\n');
}

static void cli_print_kv(json_t *kv)
{
	if (!g.value_only)
		cli_print_bytes(kv, "key");
	if (!g.keys_only)
		cli_print_bytes(kv, "value");
	else if (!g.value_only)
		putchar('\n');
}

static void cli_print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	if (s != NULL) {
		puts(s);
		free(s);
	}
}

/* Parses etcdctl-style hex lease IDs ("694d77aa9e38260f"). */
static int cli_parse_hex(const char *s, long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 16);
	if (*s == '\0' || *end != '\0' || errno != 0)
		return -1;
	*out = (long long)v;
	return 0;
}

static int cli_parse_int(const char *s, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0)
		return -1;
	*out = v;
	return 0;
}

/* "5s", "500ms", "1m", "2" (seconds). */
static int cli_parse_duration_ms(const char *s, unsigned *out)
{
	char *end;
	double v = strtod(s, &end);
	double mul;
	if (end == s || v < 0)
		return -1;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else
		return -1;
	if (v * mul > 4e9)
		return -1;
	*out = (unsigned)(v * mul);
	return 0;
}

/* The end of the range of every key starting with key[0..n): key with its
 * last byte below 0xff incremented; "\0" (everything) when there is none. */
static json_t *cli_prefix_end(const char *key, size_t n)
{
	char *end = malloc(n + 1);
	json_t *j;
	if (end == NULL)
		return NULL;
	memcpy(end, key, n);
	while (n > 0 && (unsigned char)end[n - 1] == 0xff)
		n--;
	if (n == 0) {
		free(end);
		return cli_bytes("\0", 1);
	}
	end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
	j = cli_bytes(end, n);
	free(end);
	return j;
}

/* ---- flags ---- */

struct cli_flag {
	const char *name;     /* without the leading "--" */
	bool takes_value;
	const char **value;   /* set when takes_value */
	bool *set;            /* set when seen (may be NULL for valued flags) */
};

/* Splits args into flags (per spec) and positionals. Returns the number of
 * positionals, or -1 after printing a usage error. */
static int cli_parse_flags(int argc, char **argv, const struct cli_flag *spec,
			   const char **pos, int max_pos)
{
	int npos = 0;
	bool only_pos = false;
	int i;

	for (i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!only_pos && strcmp(a, "--") == 0) {
			only_pos = true;
			continue;
		}
		if (only_pos || strncmp(a, "--", 2) != 0 || a[2] == '\0') {
			if (npos == max_pos) {
				cli_usage_error("too many arguments");
				return -1;
			}
			pos[npos++] = a;
			continue;
		}
		const char *name = a + 2;
		const char *eq = strchr(name, '=');
		size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
		const struct cli_flag *f;
		for (f = spec; f->name != NULL; f++)
			if (strlen(f->name) == len && strncmp(f->name, name, len) == 0)
				break;
		if (f->name == NULL) {
			cli_usage_error("unknown flag: --%.*s", (int)len, name);
			return -1;
		}
		if (f->takes_value) {
			if (eq != NULL) {
				*f->value = eq + 1;
			} else if (i + 1 < argc) {
				*f->value = argv[++i];
			} else {
				cli_usage_error("flag needs an argument: --%s", f->name);
				return -1;
			}
		} else if (eq != NULL && f->set != NULL) {
			*f->set = strcmp(eq + 1, "false") != 0 && strcmp(eq + 1, "0") != 0;
			continue;
		}
		if (f->set != NULL)
			*f->set = true;
	}
	return npos;
}

/* ---- finishing ---- */

static void cli_on_handle_closed(uv_handle_t *h)
{
	(void)h;
}

static void cli_on_finish(uv_timer_t *t)
{
	(void)t;
	if (g.watch != NULL) {
		struct kv_watch *w = g.watch;
		g.watch = NULL;
		kv_watch_cancel(g.kv, w);
	}
	if (g.kv != NULL) {
		kv_close(g.kv);
		g.kv = NULL;
	}
	for (size_t i = 0; g.st_kvs != NULL && i < g.st_n; i++) {
		if (g.st_kvs[i] != NULL)
			kv_close(g.st_kvs[i]);
		g.st_kvs[i] = NULL;
	}
	if (g.signals_on) {
		uv_close((uv_handle_t *)&g.sigint, cli_on_handle_closed);
		uv_close((uv_handle_t *)&g.sigterm, cli_on_handle_closed);
		g.signals_on = false;
	}
	if (g.tick_on) {
		uv_close((uv_handle_t *)&g.tick, cli_on_handle_closed);
		g.tick_on = false;
	}
	uv_close((uv_handle_t *)&g.finish_timer, cli_on_handle_closed);
}

/* Ends the command with rc; the loop winds down from a clean stack. */
static void cli_done(int rc)
{
	if (g.finishing)
		return;
	g.finishing = true;
	g.rc = rc;
	uv_timer_start(&g.finish_timer, cli_on_finish, 0, 0);
}

/* Reports an error object and ends the command. */
static void cli_fail(json_t *err)
{
	const char *msg = json_string_value(json_object_get(err, "message"));
	if (msg == NULL)
		msg = json_string_value(json_object_get(err, "error"));
	fprintf(stderr, "Error: %s\n", msg != NULL ? msg : "unknown error");
	cli_done(kv_http_is_transport_error(err) ? CLI_EUNREACHABLE : CLI_ESERVER);
}

/* A call that could not even start. */
static void cli_start_failed(int rv)
{
	fprintf(stderr, "Error: could not send the request (%s)\n", cap_strerror(rv));
	cli_done(rv == CAP_EUNAVAILABLE ? CLI_EUNREACHABLE : CLI_ESERVER);
}

static void cli_call(enum kv_op op, json_t *req, kv_cb cb)
{
	int rv = kv_call(g.kv, op, req, cb, NULL);
	json_decref(req);
	if (rv != 0)
		cli_start_failed(rv);
}

static void cli_on_signal(uv_signal_t *s, int signum)
{
	(void)s;
	(void)signum;
	cli_done(CLI_OK);
}

static void cli_signals_start(void)
{
	uv_signal_init(&g.loop, &g.sigint);
	uv_signal_init(&g.loop, &g.sigterm);
	uv_signal_start(&g.sigint, cli_on_signal, SIGINT);
	uv_signal_start(&g.sigterm, cli_on_signal, SIGTERM);
	g.signals_on = true;
}

/* ---- kv put / get / del: request builders shared with txn ---- */

static json_t *cli_build_put(int argc, char **argv)
{
	const char *lease = NULL, *pos[2];
	bool prev = false, ign_val = false, ign_lease = false;
	const struct cli_flag spec[] = {
		{"lease", true, &lease, NULL},
		{"prev-kv", false, NULL, &prev},
		{"ignore-value", false, NULL, &ign_val},
		{"ignore-lease", false, NULL, &ign_lease},
		{NULL, false, NULL, NULL},
	};
	int n = cli_parse_flags(argc, argv, spec, pos, 2);
	long long id = 0;
	if (n < 0)
		return NULL;
	if (n < 1 || (n < 2 && !ign_val)) {
		cli_usage_error("put needs KEY and VALUE");
		return NULL;
	}
	if (n == 2 && ign_val) {
		cli_usage_error("put with --ignore-value takes no VALUE");
		return NULL;
	}
	if (lease != NULL && cli_parse_hex(lease, &id) != 0) {
		cli_usage_error("bad lease ID %s (hex expected)", lease);
		return NULL;
	}
	json_t *req = json_object();
	json_object_set_new(req, "key", cli_bytes(pos[0], strlen(pos[0])));
	if (!ign_val)
		json_object_set_new(req, "value", cli_bytes(pos[1], strlen(pos[1])));
	if (id != 0)
		json_object_set_new(req, "lease", cli_int_json(id));
	if (prev)
		json_object_set_new(req, "prev_kv", json_true());
	if (ign_val)
		json_object_set_new(req, "ignore_value", json_true());
	if (ign_lease)
		json_object_set_new(req, "ignore_lease", json_true());
	g.prev_kv = prev;
	return req;
}

/* Adds key and range_end for KEY [RANGE_END] [--prefix] [--from-key]. */
static int cli_set_range(json_t *req, const char **pos, int n, bool prefix, bool from_key)
{
	if (n < 1) {
		cli_usage_error("a KEY is needed");
		return -1;
	}
	if ((prefix || from_key) && n > 1) {
		cli_usage_error("RANGE_END cannot be given with --prefix or --from-key");
		return -1;
	}
	if (prefix && from_key) {
		cli_usage_error("--prefix and --from-key cannot both be given");
		return -1;
	}
	size_t klen = strlen(pos[0]);
	if (klen == 0 && (prefix || from_key)) {
		/* Every key: etcd's "\0" .. "\0". */
		json_object_set_new(req, "key", cli_bytes("\0", 1));
		json_object_set_new(req, "range_end", cli_bytes("\0", 1));
		return 0;
	}
	json_object_set_new(req, "key", cli_bytes(pos[0], klen));
	if (prefix)
		json_object_set_new(req, "range_end", cli_prefix_end(pos[0], klen));
	else if (from_key)
		json_object_set_new(req, "range_end", cli_bytes("\0", 1));
	else if (n > 1)
		json_object_set_new(req, "range_end", cli_bytes(pos[1], strlen(pos[1])));
	return 0;
}

static json_t *cli_build_get(int argc, char **argv)
{
	const char *limit = NULL, *rev = NULL, *sort_by = NULL, *order = NULL;
	const char *consistency = NULL, *pos[2];
	bool prefix = false, from_key = false, keys_only = false, count_only = false;
	bool value_only = false;
	const struct cli_flag spec[] = {
		{"prefix", false, NULL, &prefix},
		{"from-key", false, NULL, &from_key},
		{"limit", true, &limit, NULL},
		{"rev", true, &rev, NULL},
		{"keys-only", false, NULL, &keys_only},
		{"count-only", false, NULL, &count_only},
		{"sort-by", true, &sort_by, NULL},
		{"order", true, &order, NULL},
		{"consistency", true, &consistency, NULL},
		{"print-value-only", false, NULL, &value_only},
		{NULL, false, NULL, NULL},
	};
	int n = cli_parse_flags(argc, argv, spec, pos, 2);
	long long v;
	json_t *req;

	if (n < 0)
		return NULL;
	req = json_object();
	if (cli_set_range(req, pos, n, prefix, from_key) != 0)
		goto err;
	if (limit != NULL) {
		if (cli_parse_int(limit, &v) != 0 || v < 0) {
			cli_usage_error("bad --limit %s", limit);
			goto err;
		}
		if (v > 0)
			json_object_set_new(req, "limit", cli_int_json(v));
	}
	if (rev != NULL) {
		if (cli_parse_int(rev, &v) != 0 || v < 0) {
			cli_usage_error("bad --rev %s", rev);
			goto err;
		}
		if (v > 0)
			json_object_set_new(req, "revision", cli_int_json(v));
	}
	if (sort_by != NULL || order != NULL) {
		static const char *const by_in[] = {"KEY", "VERSION", "CREATE", "MODIFY", "VALUE", NULL};
		static const char *const by_out[] = {"KEY", "VERSION", "CREATE", "MOD", "VALUE"};
		const char *target = "KEY", *ord = "ASCEND";
		if (sort_by != NULL) {
			int k;
			for (k = 0; by_in[k] != NULL; k++)
				if (strcasecmp(sort_by, by_in[k]) == 0 ||
				    (k == 3 && strcasecmp(sort_by, "MOD") == 0))
					break;
			if (by_in[k] == NULL) {
				cli_usage_error("bad --sort-by %s (KEY, VERSION, CREATE, MODIFY or VALUE)",
						sort_by);
				goto err;
			}
			target = by_out[k];
		}
		if (order != NULL) {
			if (strcasecmp(order, "ASCEND") == 0)
				ord = "ASCEND";
			else if (strcasecmp(order, "DESCEND") == 0)
				ord = "DESCEND";
			else {
				cli_usage_error("bad --order %s (ASCEND or DESCEND)", order);
				goto err;
			}
		}
		json_object_set_new(req, "sort_order", json_string(ord));
		json_object_set_new(req, "sort_target", json_string(target));
	}
	if (consistency != NULL) {
		if (strcmp(consistency, "s") == 0)
			json_object_set_new(req, "serializable", json_true());
		else if (strcmp(consistency, "l") != 0) {
			cli_usage_error("bad --consistency %s (l or s)", consistency);
			goto err;
		}
	}
	if (keys_only)
		json_object_set_new(req, "keys_only", json_true());
	if (count_only)
		json_object_set_new(req, "count_only", json_true());
	g.keys_only = keys_only;
	g.count_only = count_only;
	g.value_only = value_only;
	return req;
err:
	json_decref(req);
	return NULL;
}

static json_t *cli_build_del(int argc, char **argv)
{
	const char *pos[2];
	bool prefix = false, from_key = false, prev = false;
	const struct cli_flag spec[] = {
		{"prefix", false, NULL, &prefix},
		{"from-key", false, NULL, &from_key},
		{"prev-kv", false, NULL, &prev},
		{NULL, false, NULL, NULL},
	};
	int n = cli_parse_flags(argc, argv, spec, pos, 2);
	json_t *req;

	if (n < 0)
		return NULL;
	req = json_object();
	if (cli_set_range(req, pos, n, prefix, from_key) != 0) {
		json_decref(req);
		return NULL;
	}
	if (prev)
		json_object_set_new(req, "prev_kv", json_true());
	g.prev_kv = prev;
	return req;
}

static void cli_print_put(json_t *a)
{
	json_t *prev = json_object_get(a, "prev_kv");
	puts("OK");
	if (g.prev_kv && json_is_object(prev))
		cli_print_kv(prev);
}

static void cli_print_range(json_t *a)
{
	json_t *kvs = json_object_get(a, "kvs");
	size_t i;
	json_t *kv;
	if (g.count_only) {
		printf("%lld\n", cli_int(a, "count"));
		return;
	}
	json_array_foreach(kvs, i, kv)
		cli_print_kv(kv);
}

static void cli_print_del(json_t *a)
{
	json_t *prevs = json_object_get(a, "prev_kvs");
	size_t i;
	json_t *kv;
	printf("%lld\n", cli_int(a, "deleted"));
	json_array_foreach(prevs, i, kv)
		cli_print_kv(kv);
}

static void cli_on_put(void *data, json_t *a, json_t *err)
{
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON)
		cli_print_json(a);
	else
		cli_print_put(a);
	cli_done(CLI_OK);
}

static void cli_on_get(void *data, json_t *a, json_t *err)
{
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON)
		cli_print_json(a);
	else
		cli_print_range(a);
	cli_done(CLI_OK);
}

static void cli_on_del(void *data, json_t *a, json_t *err)
{
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON)
		cli_print_json(a);
	else
		cli_print_del(a);
	cli_done(CLI_OK);
}

/* ---- kv txn ---- */

/* Reads a Go-style quoted string ("..." with \" \\ \n \t \r \xHH) at *p into
 * a malloc'd buffer; advances *p past it. */
static char *cli_unquote(const char **p, size_t *len)
{
	const char *s = *p;
	char *out, *o;
	if (*s != '"')
		return NULL;
	s++;
	out = malloc(strlen(s) + 1);
	if (out == NULL)
		return NULL;
	o = out;
	while (*s != '\0' && *s != '"') {
		if (*s == '\\' && s[1] != '\0') {
			s++;
			switch (*s) {
			case 'n': *o++ = '\n'; break;
			case 't': *o++ = '\t'; break;
			case 'r': *o++ = '\r'; break;
			case '0': *o++ = '\0'; break;
			case 'x':
				if (s[1] != '\0' && s[2] != '\0') {
					char hex[3] = {s[1], s[2], '\0'};
					*o++ = (char)strtol(hex, NULL, 16);
					s += 2;
				}
				break;
			default: *o++ = *s; break;
			}
			s++;
		} else {
			*o++ = *s++;
		}
	}
	if (*s != '"') {
		free(out);
		return NULL;
	}
	*o = '\0';
	*p = s + 1;
	*len = (size_t)(o - out);
	return out;
}

/* value("k") = "v", mod("k") > "0", create/version/lease, as etcdctl reads. */
static json_t *cli_parse_compare(const char *line)
{
	static const struct {
		const char *name;
		const char *target;
		const char *field;
	} targets[] = {
		{"val", "VALUE", "value"}, {"value", "VALUE", "value"},
		{"ver", "VERSION", "version"}, {"version", "VERSION", "version"},
		{"c", "CREATE", "create_revision"}, {"create", "CREATE", "create_revision"},
		{"m", "MOD", "mod_revision"}, {"mod", "MOD", "mod_revision"},
		{"lease", "LEASE", "lease"},
	};
	const char *lp = strchr(line, '(');
	const char *p, *result;
	char *key = NULL, *val = NULL;
	size_t klen, vlen, i, tlen;
	json_t *cmp = NULL;

	if (lp == NULL)
		goto bad;
	tlen = (size_t)(lp - line);
	while (tlen > 0 && line[tlen - 1] == ' ')
		tlen--;
	for (i = 0; i < sizeof targets / sizeof targets[0]; i++)
		if (strlen(targets[i].name) == tlen && strncmp(line, targets[i].name, tlen) == 0)
			break;
	if (i == sizeof targets / sizeof targets[0])
		goto bad;
	p = lp + 1;
	key = cli_unquote(&p, &klen);
	if (key == NULL || *p != ')')
		goto bad;
	p++;
	while (*p == ' ')
		p++;
	if (strncmp(p, "!=", 2) == 0) {
		result = "NOT_EQUAL";
		p += 2;
	} else if (strncmp(p, "==", 2) == 0) {
		result = "EQUAL";
		p += 2;
	} else if (*p == '=') {
		result = "EQUAL";
		p++;
	} else if (*p == '>') {
		result = "GREATER";
		p++;
	} else if (*p == '<') {
		result = "LESS";
		p++;
	} else {
		goto bad;
	}
	while (*p == ' ')
		p++;
	val = cli_unquote(&p, &vlen);
	if (val == NULL)
		goto bad;
	while (*p == ' ' || *p == '\r')
		p++;
	if (*p != '\0')
		goto bad;

	cmp = json_object();
	json_object_set_new(cmp, "key", cli_bytes(key, klen));
	json_object_set_new(cmp, "target", json_string(targets[i].target));
	json_object_set_new(cmp, "result", json_string(result));
	if (strcmp(targets[i].target, "VALUE") == 0) {
		json_object_set_new(cmp, "value", cli_bytes(val, vlen));
	} else {
		long long v;
		int rv = strcmp(targets[i].target, "LEASE") == 0 ? cli_parse_hex(val, &v)
								 : cli_parse_int(val, &v);
		if (rv != 0) {
			json_decref(cmp);
			cmp = NULL;
			goto bad;
		}
		json_object_set_new(cmp, targets[i].field, cli_int_json(v));
	}
	free(key);
	free(val);
	return cmp;
bad:
	cli_usage_error("bad compare in txn: %s", line);
	free(key);
	free(val);
	return NULL;
}

/* Splits an op line into words; "..." (with escapes) and '...' quote. The
 * words point into *storage, which the caller frees. */
static int cli_split_words(const char *line, char **words, int max, char **storage)
{
	size_t n = strlen(line);
	char *buf = malloc(n + 1), *o = buf;
	int count = 0;
	const char *p = line;

	*storage = buf;
	if (buf == NULL)
		return -1;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == '\r')
			p++;
		if (*p == '\0')
			break;
		if (count == max)
			return -1;
		words[count++] = o;
		while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\r') {
			if (*p == '"') {
				size_t len;
				char *q = cli_unquote(&p, &len);
				if (q == NULL)
					return -1;
				memcpy(o, q, len);
				o += len;
				free(q);
			} else if (*p == '\'') {
				const char *e = strchr(p + 1, '\'');
				if (e == NULL)
					return -1;
				memcpy(o, p + 1, (size_t)(e - p - 1));
				o += e - p - 1;
				p = e + 1;
			} else {
				*o++ = *p++;
			}
		}
		*o++ = '\0';
	}
	return count;
}

static json_t *cli_parse_op(const char *line)
{
	char *words[16], *storage = NULL;
	int n = cli_split_words(line, words, 16, &storage);
	json_t *req = NULL, *op = NULL;
	const char *kind = NULL;

	if (n < 1) {
		cli_usage_error("bad operation in txn: %s", line);
		goto out;
	}
	if (strcmp(words[0], "put") == 0) {
		req = cli_build_put(n - 1, words + 1);
		kind = "request_put";
	} else if (strcmp(words[0], "get") == 0) {
		req = cli_build_get(n - 1, words + 1);
		kind = "request_range";
	} else if (strcmp(words[0], "del") == 0 || strcmp(words[0], "delete") == 0) {
		req = cli_build_del(n - 1, words + 1);
		kind = "request_delete_range";
	} else {
		cli_usage_error("unknown operation in txn: %s", words[0]);
	}
	if (req != NULL)
		op = json_pack("{s:o}", kind, req);
out:
	free(storage);
	return op;
}

/* Reads compares, blank line, success ops, blank line, failure ops. */
static json_t *cli_read_txn(FILE *in)
{
	json_t *lists[3] = {json_array(), json_array(), json_array()};
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int phase = 0;
	json_t *req = NULL;

	while (phase < 3 && (len = getline(&line, &cap, in)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0) {
			phase++;
			continue;
		}
		json_t *item = phase == 0 ? cli_parse_compare(line) : cli_parse_op(line);
		if (item == NULL)
			goto out;
		json_array_append_new(lists[phase], item);
	}
	req = json_pack("{s:O, s:O, s:O}", "compare", lists[0], "success", lists[1],
			"failure", lists[2]);
out:
	free(line);
	json_decref(lists[0]);
	json_decref(lists[1]);
	json_decref(lists[2]);
	return req;
}

static void cli_on_txn(void *data, json_t *a, json_t *err)
{
	json_t *resps, *r;
	size_t i;
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON) {
		cli_print_json(a);
		cli_done(CLI_OK);
		return;
	}
	puts(json_is_true(json_object_get(a, "succeeded")) ? "SUCCESS" : "FAILURE");
	/* Ops print without their own flags, as etcdctl does. */
	g.prev_kv = true;
	g.keys_only = g.value_only = g.count_only = false;
	resps = json_object_get(a, "responses");
	json_array_foreach(resps, i, r) {
		json_t *v;
		putchar('\n');
		if ((v = json_object_get(r, "response_put")) != NULL)
			cli_print_put(v);
		else if ((v = json_object_get(r, "response_range")) != NULL)
			cli_print_range(v);
		else if ((v = json_object_get(r, "response_delete_range")) != NULL)
			cli_print_del(v);
		else
			cli_print_json(r);
	}
	cli_done(CLI_OK);
}

/* ---- kv watch ---- */

static void cli_on_watch(void *data, json_t *frame, json_t *err)
{
	json_t *events, *ev;
	size_t i;
	(void)data;

	if (frame == NULL) {
		g.watch = NULL;
		if (err != NULL)
			cli_fail(err);
		else
			cli_done(CLI_OK);
		return;
	}
	if (g.finishing)
		return;
	if (json_is_true(json_object_get(frame, "canceled"))) {
		long long crev = cli_int(frame, "compact_revision");
		const char *reason = json_string_value(json_object_get(frame, "cancel_reason"));
		if (g.out == CLI_OUT_JSON) {
			json_t *wrapped = json_pack("{s:O}", "result", frame);
			cli_print_json(wrapped);
			json_decref(wrapped);
		}
		if (crev != 0)
			fprintf(stderr, "Error: %s (compact revision %lld)\n",
				cap_strerror(CAP_ECOMPACTED), crev);
		else
			fprintf(stderr, "Error: watch canceled%s%s\n", reason ? ": " : "",
				reason ? reason : "");
		cli_done(CLI_ESERVER);
		return;
	}
	events = json_object_get(frame, "events");
	if (g.out == CLI_OUT_JSON) {
		json_t *wrapped = json_pack("{s:O}", "result", frame);
		cli_print_json(wrapped);
		json_decref(wrapped);
	}
	json_array_foreach(events, i, ev) {
		if (g.out != CLI_OUT_JSON) {
			const char *type = json_string_value(json_object_get(ev, "type"));
			json_t *prev = json_object_get(ev, "prev_kv");
			puts(type != NULL ? type : "PUT");
			if (json_is_object(prev))
				cli_print_kv(prev);
			cli_print_kv(json_object_get(ev, "kv"));
		}
		if (g.count_left > 0 && --g.count_left == 0)
			break;
	}
	fflush(stdout);
	if (json_array_size(events) > 0 && g.count_left == 0 && g.once)
		cli_done(CLI_OK);
}

/* ---- lease ---- */

static void cli_on_lease_grant(void *data, json_t *a, json_t *err)
{
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON)
		cli_print_json(a);
	else
		printf("lease %016llx granted with TTL(%llds)\n", cli_int(a, "ID"), cli_int(a, "TTL"));
	cli_done(CLI_OK);
}

static void cli_on_lease_revoke(void *data, json_t *a, json_t *err)
{
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON)
		cli_print_json(a);
	else
		printf("lease %016llx revoked\n", g.lease_id);
	cli_done(CLI_OK);
}

static void cli_on_lease_ttl(void *data, json_t *a, json_t *err)
{
	json_t *keys, *k;
	size_t i;
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON) {
		cli_print_json(a);
		cli_done(CLI_OK);
		return;
	}
	if (cli_int(a, "TTL") == -1) {
		printf("lease %016llx already expired\n", g.lease_id);
		cli_done(CLI_OK);
		return;
	}
	printf("lease %016llx granted with TTL(%llds), remaining(%llds)", g.lease_id,
	       cli_int(a, "grantedTTL"), cli_int(a, "TTL"));
	if (g.lease_keys) {
		fputs(", attached keys([", stdout);
		keys = json_object_get(a, "keys");
		json_array_foreach(keys, i, k) {
			const char *s = json_string_value(k);
			size_t n = s != NULL ? strlen(s) : 0;
			uint8_t *buf = malloc(b64_decoded_max(n) + 1);
			long m = buf != NULL && s != NULL ? b64_decode(s, n, buf) : -1;
			if (i > 0)
				putchar(' ');
			if (m > 0)
				fwrite(buf, 1, (size_t)m, stdout);
			free(buf);
		}
		fputs("])", stdout);
	}
	putchar('\n');
	cli_done(CLI_OK);
}

static void cli_on_lease_list(void *data, json_t *a, json_t *err)
{
	json_t *leases, *l;
	size_t i;
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON) {
		cli_print_json(a);
		cli_done(CLI_OK);
		return;
	}
	leases = json_object_get(a, "leases");
	printf("found %zu leases\n", json_array_size(leases));
	json_array_foreach(leases, i, l)
		printf("%016llx\n", cli_int(l, "ID"));
	cli_done(CLI_OK);
}

static void cli_keepalive_send(void);

static void cli_on_tick(uv_timer_t *t)
{
	(void)t;
	cli_keepalive_send();
}

static void cli_on_keepalive(void *data, json_t *a, json_t *err)
{
	long long ttl;
	(void)data;
	if (g.finishing)
		return;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	ttl = cli_int(a, "TTL");
	if (ttl <= 0) {
		/* The gateway answers a lease it does not know with TTL 0. */
		if (g.once) {
			fprintf(stderr, "Error: %s\n", cap_strerror(CAP_ELEASENOTFOUND));
			cli_done(CLI_ESERVER);
			return;
		}
		printf("lease %016llx expired or revoked.\n", g.lease_id);
		cli_done(CLI_OK);
		return;
	}
	if (g.out == CLI_OUT_JSON)
		cli_print_json(a);
	else
		printf("lease %016llx keepalived with TTL(%lld)\n", g.lease_id, ttl);
	fflush(stdout);
	if (g.once) {
		cli_done(CLI_OK);
		return;
	}
	/* Renew at a third of the TTL, as etcd's client does. */
	uint64_t period = (uint64_t)ttl * 1000 / 3;
	uv_timer_start(&g.tick, cli_on_tick, period > 0 ? period : 500, 0);
}

static void cli_keepalive_send(void)
{
	json_t *req = json_pack("{s:o}", "ID", cli_int_json(g.lease_id));
	cli_call(KV_LEASE_KEEPALIVE, req, cli_on_keepalive);
}

/* ---- kv compact, member list ---- */

static void cli_on_compact(void *data, json_t *a, json_t *err)
{
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON)
		cli_print_json(a);
	else
		printf("compacted revision %lld\n", g.compact_rev);
	cli_done(CLI_OK);
}

static void cli_table(size_t ncols, const char *const *head, char ***rows, size_t nrows)
{
	size_t w[16] = {0}, c, r;
	for (c = 0; c < ncols; c++) {
		w[c] = strlen(head[c]);
		for (r = 0; r < nrows; r++)
			if (strlen(rows[r][c]) > w[c])
				w[c] = strlen(rows[r][c]);
	}
	/* Rule, header, rule, rows, rule: etcdctl's table layout. */
	for (int pass = 0; pass < 4; pass++) {
		if (pass == 0 || pass == 2 || pass == 3) {
			putchar('+');
			for (c = 0; c < ncols; c++) {
				for (size_t k = 0; k < w[c] + 2; k++)
					putchar('-');
				putchar('+');
			}
			putchar('\n');
		}
		if (pass == 1) {
			putchar('|');
			for (c = 0; c < ncols; c++) {
				size_t len = strlen(head[c]), left = (w[c] - len) / 2;
				printf(" %*s%s%*s |", (int)left, "", head[c], (int)(w[c] - len - left), "");
			}
			putchar('\n');
		}
		if (pass == 2) {
			for (r = 0; r < nrows; r++) {
				putchar('|');
				for (c = 0; c < ncols; c++)
					printf(" %*s |", (int)w[c], rows[r][c]);
				putchar('\n');
			}
		}
	}
}

static char *cli_urls(json_t *arr)
{
	size_t i, n = 1;
	json_t *u;
	json_array_foreach(arr, i, u)
		n += strlen(json_string_value(u) ? json_string_value(u) : "") + 1;
	char *s = calloc(1, n);
	if (s == NULL)
		return NULL;
	json_array_foreach(arr, i, u) {
		if (i > 0)
			strcat(s, ",");
		strcat(s, json_string_value(u) ? json_string_value(u) : "");
	}
	return s;
}

static void cli_on_member_list(void *data, json_t *a, json_t *err)
{
	json_t *members, *m;
	size_t i, n;
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON) {
		cli_print_json(a);
		cli_done(CLI_OK);
		return;
	}
	members = json_object_get(a, "members");
	n = json_array_size(members);
	char ***rows = calloc(n + 1, sizeof *rows);
	json_array_foreach(members, i, m) {
		const char *name = json_string_value(json_object_get(m, "name"));
		char **row = calloc(6, sizeof *row);
		row[0] = malloc(24);
		snprintf(row[0], 24, "%llx", (unsigned long long)strtoull(
			json_string_value(json_object_get(m, "ID")) ?
			json_string_value(json_object_get(m, "ID")) : "0", NULL, 10));
		row[1] = strdup(name != NULL && *name ? "started" : "unstarted");
		row[2] = strdup(name != NULL ? name : "");
		row[3] = cli_urls(json_object_get(m, "peerURLs"));
		row[4] = cli_urls(json_object_get(m, "clientURLs"));
		row[5] = strdup(json_is_true(json_object_get(m, "isLearner")) ? "true" : "false");
		rows[i] = row;
	}
	if (g.out == CLI_OUT_TABLE) {
		static const char *const head[] = {"ID", "STATUS", "NAME", "PEER ADDRS",
						   "CLIENT ADDRS", "IS LEARNER"};
		cli_table(6, head, rows, n);
	} else {
		for (i = 0; i < n; i++)
			printf("%s, %s, %s, %s, %s, %s\n", rows[i][0], rows[i][1], rows[i][2],
			       rows[i][3], rows[i][4], rows[i][5]);
	}
	for (i = 0; i < n; i++) {
		for (int c = 0; c < 6; c++)
			free(rows[i][c]);
		free(rows[i]);
	}
	free(rows);
	cli_done(CLI_OK);
}

/* ---- status ---- */

/* Sizes as etcdctl shows them (SI units, "20 kB"). */
static void cli_human_bytes(long long b, char *buf, size_t len)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
	double v = (double)b;
	int u = 0;
	if (b < 10) {
		snprintf(buf, len, "%lld B", b);
		return;
	}
	while (v >= 1000 && u < 5) {
		v /= 1000;
		u++;
	}
	v = (double)(long long)(v * 10 + 0.5) / 10;
	snprintf(buf, len, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* Member IDs are unsigned 64-bit: strtoll would clamp the upper half. */
static unsigned long long cli_u64(json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);
	if (json_is_integer(v))
		return (unsigned long long)json_integer_value(v);
	if (json_is_string(v))
		return strtoull(json_string_value(v), NULL, 10);
	return 0;
}

/* The member-list entry with this ID, or NULL. */
static json_t *cli_member_by_id(unsigned long long id)
{
	size_t i;
	json_t *m;
	json_array_foreach(g.st_members, i, m)
		if (cli_u64(m, "ID") == id)
			return m;
	return NULL;
}

static char *cli_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *cli_fmt(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	return strdup(buf);
}

#define CLI_STATUS_COLS 11

static void cli_status_print(void)
{
	size_t n = json_array_size(g.st_answers), i;
	json_t *a;
	if (g.out == CLI_OUT_JSON) {
		json_array_foreach(g.st_answers, i, a)
			if (json_object_get(a, "answer") != NULL)
				cli_print_json(json_object_get(a, "answer"));
		return;
	}
	char ***rows = calloc(n + 1, sizeof *rows);
	if (rows == NULL)
		return;
	json_array_foreach(g.st_answers, i, a) {
		json_t *s = json_object_get(a, "answer");
		json_t *hdr = json_object_get(s, "header");
		json_t *m = json_object_get(a, "member");
		char **row = calloc(CLI_STATUS_COLS, sizeof *row);
		char tmp[64];
		unsigned long long id = s != NULL ? cli_u64(hdr, "member_id") : cli_u64(m, "ID");
		if (s != NULL && (m == NULL || cli_u64(m, "ID") != id))
			m = cli_member_by_id(id);
		const char *name = json_string_value(json_object_get(m, "name"));
		row[0] = strdup(json_string_value(json_object_get(a, "endpoint")));
		row[1] = id != 0 ? cli_fmt("%llx", id) : strdup("");
		row[2] = strdup(name != NULL ? name : "");
		row[6] = strdup(m == NULL ? "" : json_is_true(json_object_get(m, "isLearner")) ?
				"true" : "false");
		if (s == NULL) {
			/* An unreachable member keeps its row: a table that silently
			 * shrinks hides exactly the member an operator looks for. */
			for (int c = 3; c < CLI_STATUS_COLS - 1; c++)
				if (row[c] == NULL)
					row[c] = strdup("-");
			row[10] = strdup(json_string_value(json_object_get(a, "error")));
			rows[i] = row;
			continue;
		}
		row[3] = strdup(json_string_value(json_object_get(s, "version")) ?
				json_string_value(json_object_get(s, "version")) : "");
		cli_human_bytes(cli_int(s, "dbSize"), tmp, sizeof tmp);
		row[4] = strdup(tmp);
		row[5] = strdup(cli_u64(s, "leader") != 0 && cli_u64(s, "leader") == id ? "true"
										     : "false");
		row[7] = cli_fmt("%lld", cli_int(s, "raftTerm"));
		row[8] = cli_fmt("%lld", cli_int(s, "raftIndex"));
		row[9] = cli_fmt("%lld", cli_int(s, "raftAppliedIndex"));
		row[10] = strdup("");
		rows[i] = row;
	}
	static const char *const head[CLI_STATUS_COLS] = {
		"ENDPOINT", "ID", "NAME", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER",
		"RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"};
	cli_table(CLI_STATUS_COLS, head, rows, n);
	for (i = 0; i < n; i++) {
		for (int c = 0; c < CLI_STATUS_COLS; c++)
			free(rows[i][c]);
		free(rows[i]);
	}
	free(rows);
}

static void cli_status_finish(void)
{
	cli_status_print();
	if (!g.st_failed)
		cli_done(CLI_OK);
	else
		cli_done(g.st_server_error ? CLI_ESERVER : CLI_EUNREACHABLE);
}

/* One answer per endpoint; data is the endpoint's index. */
static void cli_on_status(void *data, json_t *a, json_t *err)
{
	size_t i = (size_t)(uintptr_t)data;
	json_t *row = json_array_get(g.st_answers, i);
	if (err != NULL) {
		const char *msg = json_string_value(json_object_get(err, "message"));
		g.st_failed = true;
		/* Transport messages already name the endpoint. */
		if (kv_http_is_transport_error(err)) {
			fprintf(stderr, "Error: %s\n", msg != NULL ? msg : "failed");
		} else {
			fprintf(stderr, "Error: %s: %s\n", g.st_urls[i], msg != NULL ? msg : "failed");
			g.st_server_error = true;
		}
		json_object_set_new(row, "error", json_string(msg != NULL ? msg : "failed"));
	} else {
		json_object_set(row, "answer", a);
	}
	if (--g.st_pending > 0)
		return;
	cli_status_finish();
}

/* Adds a row for url (NULL: a member with no client URL); member is its
 * member-list entry when known. Returns the row's index. */
static size_t cli_status_row(const char *url, json_t *member)
{
	json_t *row = json_pack("{s:s}", "endpoint", url != NULL ? url : "-");
	if (member != NULL)
		json_object_set(row, "member", member);
	g.st_urls = realloc(g.st_urls, (g.st_n + 1) * sizeof *g.st_urls);
	g.st_urls[g.st_n++] = url != NULL ? strdup(url) : NULL;
	json_array_append_new(g.st_answers, row);
	return g.st_n - 1;
}

/* Asks every row's endpoint at once, each through a client of its own, as
 * etcdctl's endpoint status does. */
static void cli_status_query(void)
{
	size_t i;
	g.st_kvs = calloc(g.st_n + 1, sizeof *g.st_kvs);
	g.st_pending = g.st_n + 1;   /* held until every call has started */
	for (i = 0; i < g.st_n; i++) {
		json_t *err = NULL;
		int rv;
		if (g.st_urls[i] == NULL) {
			/* Added but never started: nothing to ask. */
			const char *msg = "member has no client URL (not started yet)";
			json_t *row = json_array_get(g.st_answers, i);
			g.st_failed = true;
			fprintf(stderr, "Error: member %llx: %s\n",
				cli_u64(json_object_get(row, "member"), "ID"), msg);
			json_object_set_new(row, "error", json_string(msg));
			g.st_pending--;
		} else if ((rv = kv_http_new(&g.loop, g.st_urls[i], g.timeout_ms, &g.st_kvs[i])) != 0) {
			err = kv_error_new(GRPC_INVALID_ARGUMENT, "bad client URL");
		} else if ((rv = kv_call(g.st_kvs[i], KV_STATUS, NULL, cli_on_status,
					 (void *)(uintptr_t)i)) != 0) {
			err = kv_error_new(GRPC_UNAVAILABLE, cap_strerror(rv));
			json_object_set_new(err, "transport", json_true());
		}
		if (err != NULL) {
			cli_on_status((void *)(uintptr_t)i, NULL, err);
			json_decref(err);
		}
	}
	if (--g.st_pending == 0)
		cli_status_finish();
}

/* The member list decides the rows with --cluster or a single endpoint
 * (every member, at its first client URL); otherwise the rows are the
 * endpoints given, and the list only supplies names and learner flags. */
static void cli_on_status_members(void *data, json_t *a, json_t *err)
{
	size_t i;
	json_t *m;
	(void)data;
	if (err == NULL)
		g.st_members = json_incref(json_object_get(a, "members"));
	if (g.st_discover && err == NULL && json_array_size(g.st_members) > 0) {
		json_array_foreach(g.st_members, i, m) {
			json_t *urls = json_object_get(m, "clientURLs");
			cli_status_row(json_string_value(json_array_get(urls, 0)), m);
		}
	} else if (g.st_cluster && err != NULL) {
		cli_fail(err);
		return;
	} else {
		for (i = 0; i < json_array_size(g.st_given); i++)
			cli_status_row(json_string_value(json_array_get(g.st_given, i)), NULL);
	}
	cli_status_query();
}

static int cli_cmd_status(int argc, char **argv)
{
	const char *pos[1];
	const char *p = g.endpoints;
	bool cluster = false;
	const struct cli_flag spec[] = {
		{"cluster", false, NULL, &cluster},
		{NULL, false, NULL, NULL},
	};
	if (cli_parse_flags(argc, argv, spec, pos, 0) < 0)
		return CLI_EUSAGE;
	g.st_given = json_array();
	g.st_answers = json_array();
	while (*p != '\0') {
		const char *e = strchr(p, ',');
		size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
		if (n > 0)
			json_array_append_new(g.st_given, json_stringn(p, n));
		p += n;
		if (*p == ',')
			p++;
	}
	g.st_cluster = cluster;
	g.st_discover = cluster || json_array_size(g.st_given) == 1;
	cli_call(KV_MEMBER_LIST, json_object(), cli_on_status_members);
	return CLI_OK;
}

/* ---- member add, remove ---- */

static void cli_on_member_add(void *data, json_t *a, json_t *err)
{
	json_t *nm, *members, *m, *u;
	size_t i, j;
	unsigned long long id;
	bool first = true;
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON) {
		cli_print_json(a);
		cli_done(CLI_OK);
		return;
	}
	nm = json_object_get(a, "member");
	id = cli_u64(nm, "ID");
	printf("Member %16llx added to cluster %16llx\n\n", id,
	       cli_u64(json_object_get(a, "header"), "cluster_id"));
	/* What the new member is started with, ready to paste. */
	printf("--name=%s --initial-cluster=", g.member_name);
	members = json_object_get(a, "members");
	json_array_foreach(members, i, m) {
		const char *name = json_string_value(json_object_get(m, "name"));
		if (cli_u64(m, "ID") == id)
			name = g.member_name;
		json_array_foreach(json_object_get(m, "peerURLs"), j, u) {
			printf("%s%s=%s", first ? "" : ",", name != NULL ? name : "",
			       json_string_value(u) ? json_string_value(u) : "");
			first = false;
		}
	}
	char *peers = cli_urls(json_object_get(nm, "peerURLs"));
	printf(" --initial-advertise-peer-urls=%s --initial-cluster-state=existing\n",
	       peers != NULL ? peers : "");
	free(peers);
	cli_done(CLI_OK);
}

static void cli_on_member_remove(void *data, json_t *a, json_t *err)
{
	(void)data;
	if (err != NULL) {
		cli_fail(err);
		return;
	}
	if (g.out == CLI_OUT_JSON)
		cli_print_json(a);
	else
		printf("Member %16llx removed from cluster %16llx\n", (unsigned long long)g.member_id,
		       cli_u64(json_object_get(a, "header"), "cluster_id"));
	cli_done(CLI_OK);
}

static int cli_cmd_member(int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "";
	const char *pos[2];
	const char *peer_urls = NULL;
	bool learner = false;
	int npos;
	argc--;
	argv++;
	if (strcmp(sub, "list") == 0 && argc == 0) {
		cli_call(KV_MEMBER_LIST, json_object(), cli_on_member_list);
		return CLI_OK;
	}
	if (strcmp(sub, "add") == 0) {
		const struct cli_flag spec[] = {
			{"peer-urls", true, &peer_urls, NULL},
			{"learner", false, NULL, &learner},
			{NULL, false, NULL, NULL},
		};
		npos = cli_parse_flags(argc, argv, spec, pos, 1);
		if (npos < 0)
			return CLI_EUSAGE;
		if (npos != 1 || peer_urls == NULL || *peer_urls == '\0') {
			cli_usage_error("usage: member add NAME --peer-urls URL[,URL...] [--learner]");
			return CLI_EUSAGE;
		}
		g.member_name = pos[0];
		json_t *urls = json_array();
		for (const char *p = peer_urls; *p != '\0';) {
			size_t n = strcspn(p, ",");
			if (n > 0)
				json_array_append_new(urls, json_stringn(p, n));
			p += n;
			if (*p == ',')
				p++;
		}
		json_t *req = json_pack("{s:o}", "peerURLs", urls);
		if (learner)
			json_object_set_new(req, "isLearner", json_true());
		cli_call(KV_MEMBER_ADD, req, cli_on_member_add);
		return CLI_OK;
	}
	if (strcmp(sub, "remove") == 0) {
		char *end = NULL;
		const struct cli_flag none[] = {{NULL, false, NULL, NULL}};
		npos = cli_parse_flags(argc, argv, none, pos, 1);
		if (npos < 0)
			return CLI_EUSAGE;
		if (npos == 1) {
			errno = 0;
			g.member_id = strtoull(pos[0], &end, 16);
		}
		if (npos != 1 || *pos[0] == '\0' || *end != '\0' || errno != 0) {
			cli_usage_error("usage: member remove ID (hexadecimal, as member list prints it)");
			return CLI_EUSAGE;
		}
		char buf[32];
		snprintf(buf, sizeof buf, "%llu", (unsigned long long)g.member_id);
		cli_call(KV_MEMBER_REMOVE, json_pack("{s:s}", "ID", buf), cli_on_member_remove);
		return CLI_OK;
	}
	cli_usage_error("usage: member list | add NAME --peer-urls URLS [--learner] | remove ID");
	return CLI_EUSAGE;
}

/* ---- snapshot save ---- */

static void cli_on_snapshot(void *data, json_t *frame, json_t *err)
{
	(void)data;
	if (frame == NULL) {
		g.watch = NULL;
		if (err == NULL && g.snap_fd >= 0) {
			if (fsync(g.snap_fd) != 0 || close(g.snap_fd) != 0) {
				g.snap_fd = -1;
				fprintf(stderr, "Error: %s: %s\n", g.snap_part, strerror(errno));
				unlink(g.snap_part);
				cli_done(CLI_ESERVER);
				return;
			}
			g.snap_fd = -1;
			if (rename(g.snap_part, g.snap_path) != 0) {
				fprintf(stderr, "Error: rename %s: %s\n", g.snap_path, strerror(errno));
				unlink(g.snap_part);
				cli_done(CLI_ESERVER);
				return;
			}
			printf("Snapshot saved at %s\n", g.snap_path);
			cli_done(CLI_OK);
			return;
		}
		if (g.snap_fd >= 0) {
			close(g.snap_fd);
			g.snap_fd = -1;
			unlink(g.snap_part);
		}
		if (err != NULL) {
			cli_fail(err);
			return;
		}
		cli_done(CLI_ESERVER);
		return;
	}
	if (g.snap_fd < 0)
		return;
	const char *blob = json_string_value(json_object_get(frame, "blob"));
	if (blob == NULL)
		return;
	size_t n = strlen(blob);
	uint8_t *buf = malloc(b64_decoded_max(n) + 1);
	long m = buf != NULL ? b64_decode(blob, n, buf) : -1;
	size_t off = 0;
	while (m > 0 && off < (size_t)m) {
		ssize_t w = write(g.snap_fd, buf + off, (size_t)m - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			m = -2;
			break;
		}
		off += (size_t)w;
	}
	free(buf);
	if (m < 0) {
		fprintf(stderr, "Error: %s\n", m == -2 ? strerror(errno) : "bad snapshot data");
		close(g.snap_fd);
		g.snap_fd = -1;
		unlink(g.snap_part);
		cli_done(CLI_ESERVER);
	}
}

/* ---- commands ---- */

static int cli_cmd_kv(int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "";
	json_t *req;
	argc--;
	argv++;

	if (strcmp(sub, "put") == 0) {
		if ((req = cli_build_put(argc, argv)) == NULL)
			return CLI_EUSAGE;
		cli_call(KV_PUT, req, cli_on_put);
	} else if (strcmp(sub, "get") == 0) {
		if ((req = cli_build_get(argc, argv)) == NULL)
			return CLI_EUSAGE;
		cli_call(KV_RANGE, req, cli_on_get);
	} else if (strcmp(sub, "del") == 0 || strcmp(sub, "delete") == 0) {
		if ((req = cli_build_del(argc, argv)) == NULL)
			return CLI_EUSAGE;
		cli_call(KV_DELETE_RANGE, req, cli_on_del);
	} else if (strcmp(sub, "txn") == 0) {
		const char *pos[1];
		bool interactive = false;
		const struct cli_flag spec[] = {
			{"interactive", false, NULL, &interactive},
			{NULL, false, NULL, NULL},
		};
		if (cli_parse_flags(argc, argv, spec, pos, 0) < 0)
			return CLI_EUSAGE;
		if ((req = cli_read_txn(stdin)) == NULL)
			return CLI_EUSAGE;
		cli_call(KV_TXN, req, cli_on_txn);
	} else if (strcmp(sub, "watch") == 0) {
		const char *rev = NULL, *count = NULL, *pos[2];
		bool prefix = false, prev = false, from_key = false;
		const struct cli_flag spec[] = {
			{"prefix", false, NULL, &prefix},
			{"from-key", false, NULL, &from_key},
			{"rev", true, &rev, NULL},
			{"prev-kv", false, NULL, &prev},
			{"count", true, &count, NULL},
			{NULL, false, NULL, NULL},
		};
		int n = cli_parse_flags(argc, argv, spec, pos, 2);
		long long v;
		if (n < 0)
			return CLI_EUSAGE;
		req = json_object();
		if (cli_set_range(req, pos, n, prefix, from_key) != 0)
			goto usage;
		if (rev != NULL) {
			if (cli_parse_int(rev, &v) != 0 || v < 0) {
				cli_usage_error("bad --rev %s", rev);
				goto usage;
			}
			if (v > 0)
				json_object_set_new(req, "start_revision", cli_int_json(v));
		}
		if (count != NULL) {
			if (cli_parse_int(count, &v) != 0 || v <= 0) {
				cli_usage_error("bad --count %s", count);
				goto usage;
			}
			g.count_left = v;
			g.once = true;   /* stop once the count is reached */
		}
		if (prev)
			json_object_set_new(req, "prev_kv", json_true());
		cli_signals_start();
		int rv = kv_watch(g.kv, req, cli_on_watch, NULL, &g.watch);
		json_decref(req);
		if (rv != 0)
			cli_start_failed(rv);
	} else if (strcmp(sub, "compact") == 0 || strcmp(sub, "compaction") == 0) {
		const char *pos[1];
		bool physical = false;
		const struct cli_flag spec[] = {
			{"physical", false, NULL, &physical},
			{NULL, false, NULL, NULL},
		};
		int n = cli_parse_flags(argc, argv, spec, pos, 1);
		if (n < 0)
			return CLI_EUSAGE;
		if (n != 1 || cli_parse_int(pos[0], &g.compact_rev) != 0 || g.compact_rev <= 0) {
			cli_usage_error("compact needs a revision");
			return CLI_EUSAGE;
		}
		req = json_pack("{s:o}", "revision", cli_int_json(g.compact_rev));
		if (physical)
			json_object_set_new(req, "physical", json_true());
		cli_call(KV_COMPACT, req, cli_on_compact);
	} else {
		cli_usage_error("unknown kv command \"%s\" (put, get, del, txn, watch, compact)", sub);
		return CLI_EUSAGE;
	}
	return CLI_OK;
usage:
	json_decref(req);
	return CLI_EUSAGE;
}

static int cli_cmd_lease(int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "";
	const char *pos[1];
	bool once = false, keys = false;
	const struct cli_flag spec[] = {
		{"once", false, NULL, &once},
		{"keys", false, NULL, &keys},
		{NULL, false, NULL, NULL},
	};
	int n = cli_parse_flags(argc - 1, argv + 1, spec, pos, 1);
	long long v;

	if (n < 0)
		return CLI_EUSAGE;
	if (strcmp(sub, "list") == 0) {
		cli_call(KV_LEASE_LEASES, json_object(), cli_on_lease_list);
		return CLI_OK;
	}
	if (strcmp(sub, "grant") == 0) {
		if (n != 1 || cli_parse_int(pos[0], &v) != 0 || v <= 0) {
			cli_usage_error("lease grant needs a TTL in seconds");
			return CLI_EUSAGE;
		}
		cli_call(KV_LEASE_GRANT, json_pack("{s:o}", "TTL", cli_int_json(v)),
			 cli_on_lease_grant);
		return CLI_OK;
	}
	if (n != 1 || cli_parse_hex(pos[0], &g.lease_id) != 0) {
		cli_usage_error("lease %s needs a lease ID (hex)", sub);
		return CLI_EUSAGE;
	}
	if (strcmp(sub, "revoke") == 0) {
		cli_call(KV_LEASE_REVOKE, json_pack("{s:o}", "ID", cli_int_json(g.lease_id)),
			 cli_on_lease_revoke);
	} else if (strcmp(sub, "ttl") == 0 || strcmp(sub, "timetolive") == 0) {
		json_t *req = json_pack("{s:o}", "ID", cli_int_json(g.lease_id));
		g.lease_keys = keys;
		if (keys)
			json_object_set_new(req, "keys", json_true());
		cli_call(KV_LEASE_TIMETOLIVE, req, cli_on_lease_ttl);
	} else if (strcmp(sub, "keepalive") == 0 || strcmp(sub, "keep-alive") == 0) {
		g.once = once;
		if (!once) {
			uv_timer_init(&g.loop, &g.tick);
			g.tick_on = true;
			cli_signals_start();
		}
		cli_keepalive_send();
	} else {
		cli_usage_error("unknown lease command \"%s\" (grant, revoke, keepalive, ttl, list)",
				sub);
		return CLI_EUSAGE;
	}
	return CLI_OK;
}

static int cli_cmd_snapshot(int argc, char **argv)
{
	const char *pos[2];
	const struct cli_flag spec[] = {{NULL, false, NULL, NULL}};
	int n = cli_parse_flags(argc, argv, spec, pos, 2);
	json_t *body;
	int rv;

	if (n < 0)
		return CLI_EUSAGE;
	if (n != 2 || strcmp(pos[0], "save") != 0) {
		cli_usage_error("usage: snapshot save FILE");
		return CLI_EUSAGE;
	}
	g.snap_path = pos[1];
	if (asprintf(&g.snap_part, "%s.part", g.snap_path) < 0)
		return CLI_ESERVER;
	g.snap_fd = open(g.snap_part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (g.snap_fd < 0) {
		fprintf(stderr, "Error: %s: %s\n", g.snap_part, strerror(errno));
		return CLI_ESERVER;
	}
	body = json_object();
	rv = kv_http_stream(g.kv, "/v3/maintenance/snapshot", body, cli_on_snapshot, NULL, &g.watch);
	json_decref(body);
	if (rv != 0) {
		close(g.snap_fd);
		g.snap_fd = -1;
		unlink(g.snap_part);
		cli_start_failed(rv);
	}
	return CLI_OK;
}

static void cli_usage(FILE *f)
{
	fputs("capstan — command line for the capstan store (etcd v3 gateway compatible)\n"
	      "\n"
	      "Usage: capstan [global flags] COMMAND [args]\n"
	      "\n"
	      "Commands:\n"
	      "  kv put KEY VALUE [--lease ID] [--prev-kv] [--ignore-value] [--ignore-lease]\n"
	      "  kv get KEY [RANGE_END] [--prefix] [--from-key] [--limit N] [--rev N]\n"
	      "         [--keys-only] [--count-only] [--sort-by KEY|VERSION|CREATE|MODIFY|VALUE]\n"
	      "         [--order ASCEND|DESCEND] [--consistency l|s] [--print-value-only]\n"
	      "  kv del KEY [RANGE_END] [--prefix] [--from-key] [--prev-kv]\n"
	      "  kv txn                 reads compares, blank line, success ops, blank line,\n"
	      "                         failure ops from stdin (etcdctl's txn format)\n"
	      "  kv watch KEY [RANGE_END] [--prefix] [--from-key] [--rev N] [--prev-kv] [--count N]\n"
	      "  kv compact REV [--physical]\n"
	      "  lease grant TTL | revoke ID | keepalive ID [--once] | ttl ID [--keys] | list\n"
	      "  member list | add NAME --peer-urls URLS [--learner] | remove ID\n"
	      "  status [--cluster]     every member when --cluster is given or a single\n"
	      "                         endpoint is, otherwise the endpoints given\n"
	      "  snapshot save FILE\n", f);
	fputs(bench_usage, f);
	fputs("\n"
	      "Global flags:\n"
	      "  --endpoints URLS       comma-separated, default $CAPSTAN_ENDPOINTS or\n"
	      "                         http://127.0.0.1:2379\n"
	      "  -w, --write-out FMT    simple (default), json (raw gateway answers), table\n"
	      "  --timeout DURATION     per request, e.g. 5s, 500ms (default 5s)\n"
	      "  --help, --version\n"
	      "\n"
	      "Lease IDs are hexadecimal, as printed by lease grant.\n"
	      "\n"
	      "Exit status:\n"
	      "  0  success (kv txn: whether SUCCESS or FAILURE)\n"
	      "  1  the server reported an error (printed as \"Error: <message>\")\n"
	      "  2  usage error\n"
	      "  3  no endpoint could be reached, or the request timed out\n", f);
}

/* Takes the global flags out of argv wherever they are; returns the new argc
 * or -1 on a usage error, -2 when --help/--version was answered. */
static int cli_globals(int argc, char **argv)
{
	int out = 1, i;
	bool only_pos = false;

	for (i = 1; i < argc; i++) {
		char *a = argv[i];
		const char *val = NULL;
		const char *name = NULL;
		if (only_pos || strcmp(a, "--") == 0) {
			only_pos = true;
			argv[out++] = a;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			cli_usage(stdout);
			return -2;
		}
		if (strcmp(a, "--version") == 0) {
			printf("capstan %s\n", PACKAGE_VERSION);
			return -2;
		}
		static const char *const names[] = {"--endpoints", "--write-out", "-w", "--timeout",
						    "--command-timeout", NULL};
		for (int k = 0; names[k] != NULL; k++) {
			size_t len = strlen(names[k]);
			if (strncmp(a, names[k], len) == 0 && (a[len] == '\0' || a[len] == '=')) {
				name = names[k];
				if (a[len] == '=') {
					val = a + len + 1;
				} else if (i + 1 < argc) {
					val = argv[++i];
				} else {
					cli_usage_error("flag needs an argument: %s", name);
					return -1;
				}
				break;
			}
		}
		if (name == NULL) {
			argv[out++] = a;
			continue;
		}
		if (strcmp(name, "--endpoints") == 0) {
			g.endpoints = val;
		} else if (strcmp(name, "--timeout") == 0 || strcmp(name, "--command-timeout") == 0) {
			if (cli_parse_duration_ms(val, &g.timeout_ms) != 0) {
				cli_usage_error("bad duration %s", val);
				return -1;
			}
		} else if (strcmp(val, "json") == 0) {
			g.out = CLI_OUT_JSON;
		} else if (strcmp(val, "simple") == 0) {
			g.out = CLI_OUT_SIMPLE;
		} else if (strcmp(val, "table") == 0) {
			g.out = CLI_OUT_TABLE;
		} else {
			cli_usage_error("unknown output format %s (simple, json, table)", val);
			return -1;
		}
	}
	return out;
}

int main(int argc, char **argv)
{
	int rc, rv;

	g.timeout_ms = 5000;
	g.snap_fd = -1;
	g.endpoints = getenv("CAPSTAN_ENDPOINTS");
	if (g.endpoints == NULL || *g.endpoints == '\0')
		g.endpoints = "http://127.0.0.1:2379";
	signal(SIGPIPE, SIG_IGN);

	argc = cli_globals(argc, argv);
	if (argc == -2)
		return CLI_OK;
	if (argc < 0)
		return CLI_EUSAGE;
	if (argc < 2) {
		cli_usage(stderr);
		return CLI_EUSAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "help") == 0) {
		cli_usage(stdout);
		return CLI_OK;
	}
	if (strcmp(cmd, "bench") == 0)
		return bench_main(argc - 2, argv + 2, g.endpoints, g.out == CLI_OUT_JSON, g.timeout_ms);
	if (strcmp(cmd, "kv") != 0 && strcmp(cmd, "lease") != 0 && strcmp(cmd, "member") != 0 &&
	    strcmp(cmd, "status") != 0 && strcmp(cmd, "snapshot") != 0) {
		cli_usage_error("unknown command \"%s\"", cmd);
		return CLI_EUSAGE;
	}

	if (uv_loop_init(&g.loop) != 0) {
		fprintf(stderr, "Error: cannot start the event loop\n");
		return CLI_ESERVER;
	}
	uv_timer_init(&g.loop, &g.finish_timer);
	rv = kv_http_new(&g.loop, g.endpoints, g.timeout_ms, &g.kv);
	if (rv != 0) {
		cli_usage_error("bad --endpoints \"%s\" (%s)", g.endpoints, cap_strerror(rv));
		rc = CLI_EUSAGE;
		goto out_loop;
	}

	if (strcmp(cmd, "kv") == 0) {
		rc = cli_cmd_kv(argc - 2, argv + 2);
	} else if (strcmp(cmd, "lease") == 0) {
		rc = cli_cmd_lease(argc - 2, argv + 2);
	} else if (strcmp(cmd, "member") == 0) {
		rc = cli_cmd_member(argc - 2, argv + 2);
	} else if (strcmp(cmd, "status") == 0) {
		rc = cli_cmd_status(argc - 2, argv + 2);
	} else {
		rc = cli_cmd_snapshot(argc - 2, argv + 2);
	}
	if (rc != CLI_OK)
		cli_done(rc);
	uv_run(&g.loop, UV_RUN_DEFAULT);
	rc = g.rc;
	fflush(stdout);

out_loop:
	if (!g.finishing)
		uv_close((uv_handle_t *)&g.finish_timer, cli_on_handle_closed);
	uv_run(&g.loop, UV_RUN_DEFAULT);
	uv_loop_close(&g.loop);
	json_decref(g.st_given);
	json_decref(g.st_members);
	json_decref(g.st_answers);
	free(g.st_kvs);
	for (size_t i = 0; i < g.st_n; i++)
		free(g.st_urls[i]);
	free(g.st_urls);
	free(g.snap_part);
	return rc;
}
