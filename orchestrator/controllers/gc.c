/* gc.c — not written yet. */
