/* watch_frames.h — reading a /v3/watch answer stream the cheap way: cut it
 * into its top-level JSON objects, and pick out of an event frame what a
 * watcher counts (its watch ID and its events' mod_revisions) without
 * building a JSON tree. `capstan bench watch` reads ten thousand streams on
 * the cores the server runs on, so a full parse per frame would measure the
 * generator.
 *
 * The bytes come from a server: any input is safe (bounded reads, no
 * overflow), malformed frames just yield nothing useful. Fuzz target:
 * tests/fuzz/fuzz_watch_frames.c.
 *
 * Ownership: a splitter owns its buffer (watch_splitter_clear frees it);
 * frame pointers handed to the callback point into it and are valid only
 * during the call. */
#ifndef CAPSTAN_CLIENT_WATCH_FRAMES_H
#define CAPSTAN_CLIENT_WATCH_FRAMES_H

#include <stdbool.h>
#include <stddef.h>

struct watch_splitter {
	char *buf;                    /* bytes of an unfinished object */
	size_t len, cap;
};

/* Called with each complete top-level object; returns false to stop (the
 * stream was ended from inside the call: nothing more is read). */
typedef bool (*watch_frame_cb)(void *data, const char *frame, size_t len);

/* Appends bytes, whatever the chunking, and hands out every top-level
 * object they complete, in order. Bytes between objects are dropped.
 * Returns 0, 1 when frame stopped it, or -1 when out of memory. */
int watch_splitter_feed(struct watch_splitter *sp, const char *bytes, size_t len,
			watch_frame_cb frame, void *data);

void watch_splitter_clear(struct watch_splitter *sp);

/* An answer frame {"result":...}: true, with *watch_id set to its watch_id
 * member (0 when absent, as the gateway leaves out zero values). False for
 * anything else (an error frame). Keys and values in frames are base64, so
 * the only "watch_id" member is the result's own. */
bool watch_frame_id(const char *frame, size_t len, long long *watch_id);

/* Iterates the frame's "mod_revision" members: the next one at or after
 * *p (start with *p = frame, end = frame + len) gives true, its number in
 * *rev and *p moved past it; false when there are no more. With no prev_kv
 * asked for, these are exactly the events' revisions, in order. Numbers
 * too large for a long long read as LLONG_MAX. */
bool watch_frame_next_rev(const char **p, const char *end, long long *rev);

#endif
