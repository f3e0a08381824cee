/* leaderelect.h — not written yet. */
