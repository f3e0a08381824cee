/* workqueue.h — not written yet. */
