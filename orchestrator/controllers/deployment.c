/* deployment.c — not written yet. */
