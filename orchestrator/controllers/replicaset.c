/* replicaset.c — not written yet. */
