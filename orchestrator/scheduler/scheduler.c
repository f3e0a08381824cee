/* scheduler.c — not written yet. */
