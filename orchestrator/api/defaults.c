/* defaults.c — not written yet. */
