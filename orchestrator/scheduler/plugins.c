/* plugins.c — not written yet. */
