/* backoff.h — the restart back-off of one container: 10 s after the first
 * crash, doubling per crash up to 300 s, back to the start once the container
 * has run cleanly for 10 minutes (the kubelet's numbers).
 *
 * Time is passed in by the caller (milliseconds on any monotonic clock), so
 * tests drive it with a fake clock and the agent with uv_now(). The struct is
 * plain data owned by the caller; no threading concerns. */
#ifndef CAPSTAN_AGENT_BACKOFF_H
#define CAPSTAN_AGENT_BACKOFF_H

#include <stdint.h>

#define BACKOFF_INITIAL_MS 10000u
#define BACKOFF_MAX_MS 300000u
#define BACKOFF_RESET_MS 600000u

struct backoff {
	uint64_t initial_ms;
	uint64_t max_ms;
	uint64_t reset_ms;     /* a run at least this long forgets earlier crashes */
	uint64_t delay_ms;     /* the last delay handed out; 0 before the first crash */
};

/* The kubelet's defaults (10 s, 300 s, 10 min). */
void backoff_init(struct backoff *b);
/* Custom values, for tests and simulated nodes. */
void backoff_init_custom(struct backoff *b, uint64_t initial_ms, uint64_t max_ms,
			 uint64_t reset_ms);
/* A container that started at started_ms exited at now_ms: returns how long
 * to wait before starting it again, and remembers it. */
uint64_t backoff_next(struct backoff *b, uint64_t started_ms, uint64_t now_ms);
/* Forgets every crash (the container was replaced). */
void backoff_reset(struct backoff *b);

#endif
