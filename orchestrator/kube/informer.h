/* informer.h — not written yet. */
