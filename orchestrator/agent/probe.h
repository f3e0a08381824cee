/* probe.h — not written yet. */
