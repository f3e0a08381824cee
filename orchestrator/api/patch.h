/* patch.h — not written yet. */
