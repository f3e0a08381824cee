/* nodelifecycle.c — not written yet. */
