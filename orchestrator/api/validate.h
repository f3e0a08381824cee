/* validate.h — not written yet. */
