/* backoff.c — not written yet. */
