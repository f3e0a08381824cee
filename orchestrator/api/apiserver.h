/* apiserver.h — not written yet. */
