/* informer.c — not written yet. */
