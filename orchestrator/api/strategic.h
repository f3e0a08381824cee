/* strategic.h — not written yet. */
