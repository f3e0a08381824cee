/* plugins.h — not written yet. */
