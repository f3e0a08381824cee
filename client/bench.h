/* bench.h — not written yet. */
