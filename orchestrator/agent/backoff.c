/* backoff.c — the container restart back-off: doubling delays with a cap and
 * a reset after a long clean run. */
#include "orchestrator/agent/backoff.h"

void backoff_init_custom(struct backoff *b, uint64_t initial_ms, uint64_t max_ms,
			 uint64_t reset_ms)
{
	b->initial_ms = initial_ms;
	b->max_ms = max_ms < initial_ms ? initial_ms : max_ms;
	b->reset_ms = reset_ms;
	b->delay_ms = 0;
}

void backoff_init(struct backoff *b)
{
	backoff_init_custom(b, BACKOFF_INITIAL_MS, BACKOFF_MAX_MS, BACKOFF_RESET_MS);
}

void backoff_reset(struct backoff *b)
{
	b->delay_ms = 0;
}

uint64_t backoff_next(struct backoff *b, uint64_t started_ms, uint64_t now_ms)
{
	/* A container that ran long enough is healthy again: its next crash is
	 * treated as the first, so one bad hour a week does not leave it waiting
	 * five minutes forever. */
	if (now_ms >= started_ms && now_ms - started_ms >= b->reset_ms)
		b->delay_ms = 0;
	if (b->delay_ms == 0)
		b->delay_ms = b->initial_ms;
	else if (b->delay_ms >= b->max_ms / 2)
		b->delay_ms = b->max_ms;
	else
		b->delay_ms *= 2;
	return b->delay_ms;
}
