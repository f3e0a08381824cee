/* apiserver.c — not written yet. */
