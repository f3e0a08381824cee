/* strategic.c — Kubernetes strategic merge patch. */
#include "orchestrator/api/strategic.h"

#include "lib/err.h"

int patch_strategic(json_t *target, json_t *patch, const char *kind, json_t **out, char *errmsg)
{
	cap_errmsg_printf(errmsg, "strategic merge patch is not supported yet");
	return CAP_EINVAL;
}
