/* scheduler.h — not written yet. */
