/* selector.h — not written yet. */
