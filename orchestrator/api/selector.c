/* selector.c — not written yet. */
