/* protobuf.h — the little of Kubernetes' protobuf wire format the API server
 * reads: the "k8s\0" envelope (runtime.Unknown), DeleteOptions, and the
 * objects `kubectl create <kind>` sends as protobuf from 1.32 on (Service,
 * Namespace, ConfigMap, Secret, ServiceAccount, Deployment: the fields
 * kubectl fills and the common ones beside them). Anything else answers
 * 415.
 *
 * Parsing untrusted bytes: every length is checked against the buffer and
 * nothing is read past it (tests/fuzz/fuzz_protobuf.c). */
#ifndef CAPSTAN_PROTOBUF_H
#define CAPSTAN_PROTOBUF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PB_CONTENT_TYPE "application/vnd.kubernetes.protobuf"

/* Whether a Content-Type names Kubernetes' protobuf encoding. */
bool pb_is_protobuf(const char *content_type);

/* Unwraps the envelope: *raw points into buf (the object's own bytes), and
 * kind/api_version (NUL-terminated, truncated to size) name its type.
 * Returns 0, or -1 if buf is not a well-formed envelope. */
int pb_unwrap(const uint8_t *buf, size_t len, const uint8_t **raw, size_t *raw_len,
	      char *kind, size_t kind_size, char *api_version, size_t api_version_size);

/* A DeleteOptions message (the envelope's raw bytes) as its JSON form; NULL
 * with a message in errmsg (CAP_ERRMSG_SIZE) if malformed. New reference. */
json_t *pb_delete_options_to_json(const uint8_t *raw, size_t len, char *errmsg);

/* Whether pb_object_to_json decodes this type. */
bool pb_object_known(const char *api_version, const char *kind);
/* An object (the envelope's raw bytes) of the given type as its JSON form,
 * with apiVersion and kind set; NULL with a message in errmsg
 * (CAP_ERRMSG_SIZE) if malformed or of an unknown type. New reference. */
json_t *pb_object_to_json(const char *api_version, const char *kind, const uint8_t *raw,
			  size_t len, char *errmsg);

#endif
