/* workqueue.c — not written yet. */
