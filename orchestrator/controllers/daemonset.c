/* daemonset.c — not written yet. */
