/* leaderelect.c — not written yet. */
