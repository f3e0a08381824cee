/* runtime_sim.c — not written yet. */
