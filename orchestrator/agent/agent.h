/* agent.h — not written yet. */
