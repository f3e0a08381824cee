/* defaults.h — not written yet. */
