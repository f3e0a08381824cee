/* controllers.h — not written yet. */
