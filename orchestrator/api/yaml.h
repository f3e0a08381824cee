/* yaml.h — not written yet. */
