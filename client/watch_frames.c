/* watch_frames.c — see watch_frames.h. */
#include "client/watch_frames.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int watch_splitter_feed(struct watch_splitter *sp, const char *bytes, size_t len,
			watch_frame_cb frame, void *data)
{
	size_t i, start = 0;
	int depth = 0;
	bool in_str = false, esc = false;

	if (len > SIZE_MAX / 2 - sp->len)
		return -1;
	if (sp->len + len > sp->cap) {
		size_t cap = sp->cap ? sp->cap : 1024;
		char *p;
		while (cap < sp->len + len)
			cap *= 2;
		p = realloc(sp->buf, cap);
		if (p == NULL)
			return -1;
		sp->buf = p;
		sp->cap = cap;
	}
	if (len > 0)
		memcpy(sp->buf + sp->len, bytes, len);
	sp->len += len;
	/* The scan starts over at the unfinished object on every feed: its
	 * depth and string state are not kept between calls. Frames are small
	 * and arrive whole nearly always, so this costs little. */
	for (i = 0; i < sp->len; i++) {
		char ch = sp->buf[i];
		if (in_str) {
			if (esc)
				esc = false;
			else if (ch == '\\')
				esc = true;
			else if (ch == '"')
				in_str = false;
			continue;
		}
		if (ch == '"') {
			in_str = true;
		} else if (ch == '{') {
			if (depth++ == 0)
				start = i;
		} else if (ch == '}' && depth > 0 && --depth == 0) {
			if (!frame(data, sp->buf + start, i + 1 - start))
				return 1;
			start = i + 1;
		} else if (depth == 0) {
			start = i + 1;
		}
	}
	if (start > 0) {
		memmove(sp->buf, sp->buf + start, sp->len - start);
		sp->len -= start;
	}
	return 0;
}

void watch_splitter_clear(struct watch_splitter *sp)
{
	free(sp->buf);
	sp->buf = NULL;
	sp->len = sp->cap = 0;
}

/* A decimal number, quoted (int64 in the gateway's JSON) or not. */
static long long scan_int(const char **pp, const char *end)
{
	const char *p = *pp;
	long long v = 0;

	if (p < end && *p == '"')
		p++;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		int d = *p - '0';
		v = v > (LLONG_MAX - d) / 10 ? LLONG_MAX : v * 10 + d;
	}
	*pp = p;
	return v;
}

bool watch_frame_id(const char *frame, size_t len, long long *watch_id)
{
	static const char res[] = "{\"result\":";
	static const char wid[] = "\"watch_id\":";
	const char *q;

	if (len < sizeof(res) - 1 || memcmp(frame, res, sizeof(res) - 1) != 0)
		return false;
	*watch_id = 0;
	q = memmem(frame, len, wid, sizeof(wid) - 1);
	if (q != NULL) {
		q += sizeof(wid) - 1;
		*watch_id = scan_int(&q, frame + len);
	}
	return true;
}

bool watch_frame_next_rev(const char **p, const char *end, long long *rev)
{
	static const char lit[] = "\"mod_revision\":";
	const char *q;

	if (*p >= end)
		return false;
	q = memmem(*p, (size_t)(end - *p), lit, sizeof(lit) - 1);
	if (q == NULL)
		return false;
	q += sizeof(lit) - 1;
	*rev = scan_int(&q, end);
	*p = q;
	return true;
}
