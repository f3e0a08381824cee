/* yaml.h — YAML text (one or more documents) to JSON and back, with libyaml.
 *
 * Scalars are resolved the way Kubernetes' sigs.k8s.io/yaml resolves them on
 * the way to JSON: plain true/false, null/~/empty, integers and floats become
 * JSON values; quoted, block and anything else stays a string. "yes", "no",
 * "on" and "off" stay strings, as YAML 1.2 and Kubernetes read them.
 * Anchors and aliases are expanded; merge keys ("<<") are honoured.
 * Mapping keys are always strings (a non-string key is written as its text).
 * errmsg is a caller-owned buffer of CAP_ERRMSG_SIZE bytes. */
#ifndef CAPSTAN_ORCH_YAML_H
#define CAPSTAN_ORCH_YAML_H

#include <jansson.h>
#include <stddef.h>

/* The first document as a new reference, or NULL with errmsg set (a syntax
 * error, or no document at all). */
json_t *yaml_to_json(const char *buf, size_t len, char *errmsg);
/* Every document, as a new array (empty documents, e.g. between two "---",
 * are skipped, as kubectl skips them); NULL with errmsg set on error. */
json_t *yaml_to_json_all(const char *buf, size_t len, char *errmsg);
/* v (borrowed) as block-style YAML text, malloc'd and NUL-terminated; the
 * caller frees it. Strings that would read back as another type are quoted.
 * NULL on allocation failure. */
char *json_to_yaml(json_t *v);

#endif
