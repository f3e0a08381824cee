/* backoff.h — not written yet. */
