/* table.h — not written yet. */
