/* table.c — not written yet. */
