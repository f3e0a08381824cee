/* strategic.c — not written yet. */
