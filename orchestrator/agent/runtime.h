/* runtime.h — not written yet. */
