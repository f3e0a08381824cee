/* patch.c — not written yet. */
