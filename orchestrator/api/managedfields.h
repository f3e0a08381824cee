/* managedfields.h — field ownership (metadata.managedFields, FieldsV1) and
 * server-side apply, as the Kubernetes API server keeps them.
 *
 * Every write records who changed which fields: a create, update or patch
 * adds the fields it changed to its manager's "Update" entry and takes them
 * from everyone else; an apply makes the fields of the applied configuration
 * its manager's "Apply" set, removes the fields it applied before and no
 * longer applies (unless someone else owns them), and refuses (409 Conflict)
 * to change a field another manager owns, unless forced.
 *
 * Field sets are FieldsV1 trees: "f:<name>" for a map field, "k:<json>" for
 * an item of a list merged by key (containers by name, ports by
 * containerPort and protocol, ...), "v:<json>" for an item of a set
 * (finalizers), "." for the node itself when it has children.
 *
 * Objects are borrowed unless said otherwise. Nothing here keeps state, so
 * every function may be called from any thread on distinct objects. */
#ifndef CAPSTAN_ORCH_MANAGEDFIELDS_H
#define CAPSTAN_ORCH_MANAGEDFIELDS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Who is writing: the identity a managedFields entry records. */
struct managedfields_writer {
	char manager[129];     /* at most 128 bytes, as Kubernetes allows */
	char api_version[96];  /* of the object: "v1", "apps/v1" */
	char subresource[32];  /* "" for the main resource, "status", "scale" */
	char time[32];         /* RFC 3339, UTC, seconds */
};

/* Fills w. The manager is field_manager when given, else the user agent's
 * first token before '/' (what Kubernetes derives: "kubectl" from
 * "kubectl/v1.31.0 (linux/amd64) ..."), else "unknown". subresource may be
 * NULL. */
void managedfields_writer_init(struct managedfields_writer *w, const char *field_manager,
			       const char *user_agent, const char *api_version,
			       const char *subresource, const char *time);

/* The FieldsV1 set an applied configuration claims: its leaves, atomic
 * values and list items, without the fields the server owns (apiVersion,
 * kind, metadata.name, uid, resourceVersion, ...; status too when
 * ignore_status). A new reference; {} for an object that claims nothing. */
json_t *managedfields_set_of(json_t *obj, bool ignore_status);

/* The FieldsV1 set of the fields that differ from before to after (added
 * or changed; a new map or list item is itself a member). before may be
 * NULL (a create). A new reference. */
json_t *managedfields_changed(json_t *before, json_t *after);

/* Records a non-apply write of after over before (NULL for a create) into
 * after's metadata.managedFields. The starting entries are after's own when
 * it carries some (a client may set them; [] resets them), else before's. A
 * write that changes no field leaves the entries as they were. */
void managedfields_update(json_t *before, json_t *after, const struct managedfields_writer *w);

/* Records on a new object (obj, being created by an apply of config) that
 * the applier owns what config sets. */
void managedfields_apply_new(json_t *obj, json_t *config, const struct managedfields_writer *w,
			    bool ignore_status);

/* Server-side apply of config over the live object. Returns the new object (a new
 * reference) with its metadata.managedFields, or NULL with *status set to a
 * Status to answer: 409 Conflict listing every field another manager owns
 * and the apply would change, unless force, in which case their ownership
 * moves to the applier. ignore_status leaves status out of what the
 * applier claims (the main resource of a kind with a /status).
 *
 * As in Kubernetes, the manager "kubectl" takes over without a conflict the
 * fields of the object's kubectl.kubernetes.io/last-applied-configuration
 * that still hold their last-applied values (moving from client-side to
 * server-side apply), and keeps that annotation, when there is one, equal
 * to what it applies. */
json_t *managedfields_apply(json_t *live, json_t *config, const struct managedfields_writer *w,
			    bool force, bool ignore_status, json_t **status);

#endif
