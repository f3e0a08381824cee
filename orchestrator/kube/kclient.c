/* kclient.c — not written yet. */
