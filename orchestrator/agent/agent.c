/* agent.c — not written yet. */
