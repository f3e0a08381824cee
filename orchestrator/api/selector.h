/* selector.h — Kubernetes label selectors (the labelSelector query syntax and
 * the LabelSelector object) and field selectors.
 *
 * Selectors are parsed once into an opaque value the caller owns and frees
 * with the matching _free. Matching borrows its JSON arguments and never
 * keeps them. errmsg is a caller-owned buffer of CAP_ERRMSG_SIZE bytes;
 * parse errors return CAP_EINVAL with a message worded as the API server's. */
#ifndef CAPSTAN_ORCH_SELECTOR_H
#define CAPSTAN_ORCH_SELECTOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct label_selector;

/* "a=b,c==d,e!=f,g in (x,y),h notin (z),i,!j"; "" (or NULL) matches
 * everything. On success *out is a new selector the caller frees. */
int label_selector_parse(const char *text, struct label_selector **out, char *errmsg);
/* A metav1.LabelSelector {matchLabels, matchExpressions[{key, operator
 * (In|NotIn|Exists|DoesNotExist), values}]}. NULL or {} gives the empty
 * selector, which matches everything (callers that must treat an empty
 * workload selector as "nothing" check label_selector_empty). */
int label_selector_from_json(json_t *sel, struct label_selector **out, char *errmsg);
/* labels: an object of string values, or NULL (no labels). */
bool label_selector_matches(const struct label_selector *s, json_t *labels);
bool label_selector_empty(const struct label_selector *s);
/* The selector in query syntax ("a=b,c in (x,y)"), malloc'd; the caller
 * frees it. NULL on allocation failure. */
char *label_selector_string(const struct label_selector *s);
void label_selector_free(struct label_selector *s);

struct field_selector;

/* "metadata.name=x,spec.nodeName!=y,status.phase==Running"; "" (or NULL)
 * matches everything. Values may escape ',', '=' and '\' with a backslash. */
int field_selector_parse(const char *text, struct field_selector **out, char *errmsg);
/* Looks up each dotted path in obj (borrowed); a missing field reads as "",
 * numbers and booleans as their text. */
bool field_selector_matches(const struct field_selector *s, json_t *obj);
/* The value a requirement "path=value" asks for, borrowed from s, or NULL if
 * the selector has no equality requirement on path (lets a caller narrow a
 * list by metadata.name or metadata.namespace before matching). */
const char *field_selector_equals(const struct field_selector *s, const char *path);
/* The number of requirements, and the dotted path of the i-th (borrowed
 * from s): lets a caller tell whether a partial copy of an object holds
 * every field the selector reads. */
size_t field_selector_size(const struct field_selector *s);
const char *field_selector_path(const struct field_selector *s, size_t i);
void field_selector_free(struct field_selector *s);

#endif
