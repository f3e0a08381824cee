/* runtime_process.c — not written yet. */
