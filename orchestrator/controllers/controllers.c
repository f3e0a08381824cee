/* controllers.c — not written yet. */
