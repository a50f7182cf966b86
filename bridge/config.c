/*
 * The configuration loader (see config.h; keys in conf/README.md).
 *
 * Reading, parsing and placing errors is jsonstrict's (see jsonstrict.h):
 * validation is strict, and the first problem ends the load with one
 * message naming file:line:column and the key path. This file holds the
 * schema. A config is built in a local copy and handed over only when
 * complete, so a failed load leaves nothing half-set.
 */
#include "bridge/config.h"

#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/jsonstrict.h"

#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_RESOURCES_MAX 256
#define SECRET_FILE_MAX (64 * 1024)

/* ---- typed members ------------------------------------------------------------ */

typedef struct uint_field {
	const char *key;
	unsigned min, max, def;
	size_t offset; /* into config */
} uint_field;

static int get_uint(jsonstrict *x, json_t *parent, const uint_field *f, config *c)
{
	return jsonstrict_get_uint(x, parent, f->key, f->min, f->max, f->def,
				   (unsigned *)(void *)((char *)c + f->offset));
}

/*
 * A non-empty string without control characters, strdup'd into *out; NULL
 * when absent and !required. what names the expected value in messages.
 */
static int get_string(jsonstrict *x, json_t *parent, const char *key, bool required, const char *what, char **out)
{
	const char *s;
	int r = jsonstrict_get_str(x, parent, key, required, what, &s);

	*out = NULL;
	if (r || !s)
		return r;
	*out = strdup(s);
	if (!*out)
		return jsonstrict_fail_key(x, key, "out of memory");
	return 0;
}

/* A path: relative ones are joined to the config file's directory. */
static int get_path(jsonstrict *x, json_t *parent, const char *key, bool required, char **out)
{
	const char *s;
	int r = jsonstrict_get_str(x, parent, key, required, "a file path (a string)", &s);

	*out = NULL;
	if (r || !s)
		return r;
	*out = jsonstrict_resolve(x, s);
	if (!*out)
		return jsonstrict_fail_key(x, key, "out of memory");
	return 0;
}

/*
 * What is wrong with an http(s) URL, or NULL. URLs are never echoed in
 * messages: they could hold a credential.
 */
static const char *url_problem(const char *u, bool allow_query, size_t *authority_end)
{
	size_t skip;

	if (strncasecmp(u, "https://", 8) == 0)
		skip = 8;
	else if (strncasecmp(u, "http://", 7) == 0)
		skip = 7;
	else
		return "must start with http:// or https://";
	for (const unsigned char *p = (const unsigned char *)u; *p; p++) {
		if (*p <= 0x20 || *p == 0x7f)
			return "must not contain spaces or control characters";
	}
	size_t end = skip + strcspn(u + skip, "/?#");
	if (end == skip)
		return "has no host after the scheme";
	if (memchr(u + skip, '@', end - skip))
		return "must not contain a user name or password (credentials belong in fhir.auth)";
	if (strchr(u, '#'))
		return "must not contain a fragment (#)";
	if (!allow_query && strchr(u, '?'))
		return "must not contain a query (?)";
	if (authority_end)
		*authority_end = end;
	return NULL;
}

static int get_url(jsonstrict *x, json_t *parent, const char *key, bool allow_query, bool strip_slash, char **out)
{
	char *s;
	int r = get_string(x, parent, key, true, "an http:// or https:// URL (a string)", &s);
	size_t end = 0;

	*out = NULL;
	if (r)
		return r;
	const char *why = url_problem(s, allow_query, &end);
	if (why) {
		free(s);
		return jsonstrict_fail_key(x, key, "%s", why);
	}
	if (strip_slash) {
		size_t n = strlen(s);
		while (n > end && s[n - 1] == '/')
			s[--n] = '\0';
	}
	*out = s;
	return 0;
}

/*
 * One of words (NULL-terminated), strdup'd into *out; the message lists the
 * words. NULL when absent and !required.
 */
/*
 * One of words (NULL-terminated), strdup'd into *out; the message lists the
 * words. NULL when absent and !required.
 */
static int get_word(jsonstrict *x, json_t *parent, const char *key, bool required, const char *const *words, char **out)
{
	int i;
	int r = jsonstrict_get_word(x, parent, key, required, words, &i);

	*out = NULL;
	if (r || i < 0)
		return r;
	*out = strdup(words[i]);
	if (!*out)
		return jsonstrict_fail_key(x, key, "out of memory");
	return 0;
}

/* ---- sections --------------------------------------------------------------- */

static int load_store(jsonstrict *x, json_t *root, config *c)
{
	static const char *const keys[] = { "path", "key_file", NULL };
	json_t *o;
	int r;

	if ((r = jsonstrict_get_object(x, root, "store", true, &o)))
		return r;
	jsonstrict_push_key(x, "store");
	if ((r = jsonstrict_check_keys(x, o, keys, NULL, NULL)) || (r = get_path(x, o, "path", true, &c->store_path)) ||
	    (r = get_path(x, o, "key_file", true, &c->store_key_file)))
		return r;
	jsonstrict_pop(x);
	return 0;
}

static bool resource_name_ok(const char *s, size_t n)
{
	if (n < 2 || n > 64 || !(s[0] >= 'A' && s[0] <= 'Z'))
		return false;
	for (size_t i = 1; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')))
			return false;
	}
	return true;
}

static int load_resources(jsonstrict *x, json_t *fhir, config *c)
{
	json_t *a = json_object_get(fhir, "resources");

	if (!a)
		return jsonstrict_fail_missing(x, "resources", "required key is missing");
	if (!json_is_array(a))
		return jsonstrict_fail_key(x, "resources", "expected an array of resource type names, got %s",
					   jsonstrict_kind(a));
	size_t n = json_array_size(a);
	if (n == 0)
		return jsonstrict_fail_key(x, "resources", "must list at least one resource type");
	if (n > CONFIG_RESOURCES_MAX)
		return jsonstrict_fail_key(x, "resources", "lists %zu types; at most %d are allowed", n,
					   CONFIG_RESOURCES_MAX);
	c->fhir_resources = calloc(n + 1, sizeof(char *));
	if (!c->fhir_resources)
		return jsonstrict_fail_key(x, "resources", "out of memory");
	jsonstrict_push_key(x, "resources");
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_array_get(a, i);
		char shown[96];
		jsonstrict_push_index(x, i);
		if (!json_is_string(v))
			return jsonstrict_fail_here(x, "expected a resource type name (a string), got %s",
						    jsonstrict_kind(v));
		const char *s = json_string_value(v);
		if (!resource_name_ok(s, json_string_length(v)))
			return jsonstrict_fail_here(
				x, "%s is not a resource type name (like \"Patient\": ^[A-Z][A-Za-z]{1,63}$)",
				jsonstrict_show(s, shown, sizeof(shown)));
		for (size_t j = 0; j < i; j++) {
			if (strcmp(c->fhir_resources[j], s) == 0)
				return jsonstrict_fail_here(x, "%s is listed twice (first at [%zu])",
							    jsonstrict_show(s, shown, sizeof(shown)), j);
		}
		c->fhir_resources[i] = strdup(s);
		if (!c->fhir_resources[i])
			return jsonstrict_fail_here(x, "out of memory");
		c->n_fhir_resources = i + 1;
		jsonstrict_pop(x);
	}
	jsonstrict_pop(x);
	return 0;
}

static bool env_name_ok(const char *s)
{
	if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (s++; *s; s++) {
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	}
	return true;
}

static int load_auth(jsonstrict *x, json_t *fhir, config *c)
{
	static const char *const types[] = { "none", "bearer", "smart-backend", NULL };
	static const char *const k_none[] = { "type", NULL };
	static const char *const k_bearer[] = { "type", "token_file", "token_env", NULL };
	static const char *const k_smart[] = { "type", "token_url", "client_id", "private_key_file",
					       "alg", "kid", "scope", NULL };
	static const char *const k_all[] = { "token_file", "token_env", "token_url", "client_id",
					     "private_key_file", "alg", "kid", "scope", NULL };
	static const char *const algs[] = { "RS384", "ES384", NULL };
	config_auth *a = &c->fhir_auth;
	const char *const *allowed;
	char *type = NULL;
	char list[512], why[600];
	json_t *o;
	int r;

	if ((r = jsonstrict_get_object(x, fhir, "auth", false, &o)))
		return r;
	if (!o) {
		a->type = CONFIG_AUTH_NONE;
		return 0;
	}
	jsonstrict_push_key(x, "auth");
	if ((r = get_word(x, o, "type", true, types, &type)))
		return r;
	if (strcmp(type, "none") == 0) {
		a->type = CONFIG_AUTH_NONE;
		allowed = k_none;
	} else if (strcmp(type, "bearer") == 0) {
		a->type = CONFIG_AUTH_BEARER;
		allowed = k_bearer;
	} else {
		a->type = CONFIG_AUTH_SMART_BACKEND;
		allowed = k_smart;
	}
	/* A key of another auth type: say which type refuses it, and what it takes. */
	jsonstrict_names_join(allowed, list, sizeof(list));
	snprintf(why, sizeof(why), "not used with auth type \"%s\" (allowed: %s)", type, list);
	free(type);
	if ((r = jsonstrict_check_keys(x, o, allowed, k_all, why)))
		return r;
	if (a->type == CONFIG_AUTH_BEARER) {
		if (json_object_get(o, "token_file") && json_object_get(o, "token_env"))
			r = jsonstrict_fail_key(x, "token_env", "give token_file or token_env, not both");
		if (!r && !json_object_get(o, "token_file") && !json_object_get(o, "token_env"))
			r = jsonstrict_fail_missing(x, "token_file",
						    "required key is missing (or token_env) for auth type \"bearer\"");
		if (!r)
			r = get_path(x, o, "token_file", false, &a->token_file);
		if (!r)
			r = get_string(x, o, "token_env", false, "an environment variable name (a string)",
				       &a->token_env);
		if (!r && a->token_env && !env_name_ok(a->token_env))
			r = jsonstrict_fail_key(x, "token_env",
						"expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
	} else if (a->type == CONFIG_AUTH_SMART_BACKEND) {
		r = get_url(x, o, "token_url", true, false, &a->token_url);
		if (!r)
			r = get_string(x, o, "client_id", true, "a client id (a string)", &a->client_id);
		if (!r)
			r = get_path(x, o, "private_key_file", true, &a->private_key_file);
		if (!r)
			r = get_word(x, o, "alg", true, algs, &a->alg);
		if (!r)
			r = get_string(x, o, "kid", false, "a key id (a string)", &a->kid);
		if (!r)
			r = get_string(x, o, "scope", false, "a scope list (a string)", &a->scope);
		if (!r && !a->scope && !(a->scope = strdup("system/*.read")))
			r = jsonstrict_fail_here(x, "out of memory");
	}
	if (r)
		return r;
	jsonstrict_pop(x);
	return 0;
}

/* A "retry" object {max_attempts, base_ms, max_ms} inside o, or its
 * defaults when absent. rf lists the three fields in that order. */
static int load_retry(jsonstrict *x, json_t *o, const uint_field rf[3], config *c)
{
	static const char *const retry_keys[] = { "max_attempts", "base_ms", "max_ms", NULL };
	json_t *retry;
	int r;

	if ((r = jsonstrict_get_object(x, o, "retry", false, &retry)))
		return r;
	if (!retry) {
		for (size_t i = 0; i < 3; i++)
			*(unsigned *)(void *)((char *)c + rf[i].offset) = rf[i].def;
		return 0;
	}
	jsonstrict_push_key(x, "retry");
	if ((r = jsonstrict_check_keys(x, retry, retry_keys, NULL, NULL)))
		return r;
	for (size_t i = 0; i < 3; i++)
		if ((r = get_uint(x, retry, &rf[i], c)))
			return r;
	unsigned base = *(unsigned *)(void *)((char *)c + rf[1].offset);
	unsigned max = *(unsigned *)(void *)((char *)c + rf[2].offset);
	if (max < base) {
		if (json_object_get(retry, "max_ms"))
			return jsonstrict_fail_key(x, "max_ms", "must be at least base_ms (%u), got %u", base, max);
		return jsonstrict_fail_key(x, "base_ms", "must be at most max_ms (%u), got %u", max, base);
	}
	jsonstrict_pop(x);
	return 0;
}

static int load_fhir(jsonstrict *x, json_t *root, config *c)
{
	static const char *const keys[] = { "base_url", "resources", "page_size", "max_concurrency",
					    "poll_interval_s", "timeout_s", "watermark_skew_s", "retry",
					    "ca_file", "auth", "mrn_system", NULL };
	static const uint_field fields[] = {
		{ "page_size", 1, 10000, 500, offsetof(config, fhir_page_size) },
		{ "max_concurrency", 1, 64, 4, offsetof(config, fhir_max_concurrency) },
		{ "poll_interval_s", 1, 86400, 300, offsetof(config, fhir_poll_interval_s) },
		{ "timeout_s", 1, 3600, 60, offsetof(config, fhir_timeout_s) },
		{ "watermark_skew_s", 0, 3600, 30, offsetof(config, fhir_watermark_skew_s) },
	};
	static const uint_field retry_fields[] = {
		{ "max_attempts", 1, 100, 6, offsetof(config, fhir_retry_max_attempts) },
		{ "base_ms", 1, 600000, 500, offsetof(config, fhir_retry_base_ms) },
		{ "max_ms", 1, 3600000, 30000, offsetof(config, fhir_retry_max_ms) },
	};
	json_t *o;
	int r;

	if ((r = jsonstrict_get_object(x, root, "fhir", true, &o)))
		return r;
	jsonstrict_push_key(x, "fhir");
	if ((r = jsonstrict_check_keys(x, o, keys, NULL, NULL)) ||
	    (r = get_url(x, o, "base_url", false, true, &c->fhir_base_url)) || (r = load_resources(x, o, c)))
		return r;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if ((r = get_uint(x, o, &fields[i], c)))
			return r;

	if ((r = load_retry(x, o, retry_fields, c)))
		return r;

	if ((r = get_path(x, o, "ca_file", false, &c->fhir_ca_file)) || (r = load_auth(x, o, c)) ||
	    (r = get_string(x, o, "mrn_system", false, "a system URI", &c->fhir_mrn_system)))
		return r;
	jsonstrict_pop(x);
	return 0;
}

static bool zone_name_ok(const char *s)
{
	/* IANA names: Area/Location[/Sub], letters, digits, '_', '-', '+'; or UTC. */
	size_t n = strlen(s);
	if (n == 0 || n > 64 || s[0] == '/' || s[n - 1] == '/' || strstr(s, "..") || strstr(s, "//"))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
		      *p == '-' || *p == '+' || *p == '/'))
			return false;
	return true;
}

static int load_site(jsonstrict *x, json_t *root, config *c)
{
	static const char *const keys[] = { "timezone", NULL };
	json_t *o;
	int r;

	if ((r = jsonstrict_get_object(x, root, "site", false, &o)))
		return r;
	if (o) {
		jsonstrict_push_key(x, "site");
		if ((r = jsonstrict_check_keys(x, o, keys, NULL, NULL)) ||
		    (r = get_string(x, o, "timezone", false, "an IANA time zone name", &c->site_timezone)))
			return r;
		if (c->site_timezone) {
			char shown[96];
			if (!zone_name_ok(c->site_timezone))
				return jsonstrict_fail_key(x, "timezone",
							   "%s is not an IANA time zone name (like \"Europe/Zurich\")",
							   jsonstrict_show(c->site_timezone, shown, sizeof(shown)));
			char zp[128];
			snprintf(zp, sizeof(zp), "/usr/share/zoneinfo/%s", c->site_timezone);
			if (strcmp(c->site_timezone, "UTC") != 0 && access(zp, R_OK) != 0)
				return jsonstrict_fail_key(x, "timezone", "unknown time zone %s (no %s)",
							   jsonstrict_show(c->site_timezone, shown, sizeof(shown)), zp);
		}
		jsonstrict_pop(x);
	}
	if (!c->site_timezone && !(c->site_timezone = strdup("UTC")))
		return jsonstrict_fail_here(x, "out of memory");
	return 0;
}

static bool project_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
		      *p == '-' || *p == '.'))
			return false;
	return true;
}

static int load_project(jsonstrict *x, json_t *o, config_redcap_project *p, const config *c, size_t i)
{
	static const char *const keys[] = { "name", "url", "token_file", "token_env", "mapping", NULL };
	char shown[96];
	int r;

	if (!json_is_object(o))
		return jsonstrict_fail_here(x, "expected an object (name, url, token_file, mapping), got %s",
					    jsonstrict_kind(o));
	if ((r = jsonstrict_check_keys(x, o, keys, NULL, NULL)) ||
	    (r = get_string(x, o, "name", true, "a project name", &p->name)))
		return r;
	if (!project_name_ok(p->name))
		return jsonstrict_fail_key(x, "name",
					   "%s is not a project name (letters, digits, '_', '-', '.'; at most 64)",
					   jsonstrict_show(p->name, shown, sizeof(shown)));
	if (p->name[0] == '_')
		return jsonstrict_fail_key(x, "name", "%s: names that start with '_' are the bridge's own",
					   jsonstrict_show(p->name, shown, sizeof(shown)));
	for (size_t j = 0; j < i; j++)
		if (strcmp(c->redcap_projects[j].name, p->name) == 0)
			return jsonstrict_fail_key(x, "name", "%s is used twice (first at redcap.projects[%zu])",
						   jsonstrict_show(p->name, shown, sizeof(shown)), j);
	if ((r = get_url(x, o, "url", true, false, &p->url)) ||
	    (r = get_path(x, o, "token_file", false, &p->token_file)) ||
	    (r = get_string(x, o, "token_env", false, "an environment variable name", &p->token_env)) ||
	    (r = get_path(x, o, "mapping", false, &p->mapping)))
		return r;
	if (p->token_env && !env_name_ok(p->token_env))
		return jsonstrict_fail_key(x, "token_env", "%s is not an environment variable name",
					   jsonstrict_show(p->token_env, shown, sizeof(shown)));
	if (!p->token_file == !p->token_env)
		return jsonstrict_fail_here(x, "give the API token as token_file or token_env (exactly one)");
	return 0;
}

static int load_redcap(jsonstrict *x, json_t *root, config *c)
{
	static const char *const keys[] = { "projects", "batch_size", "max_requests_per_minute", "timeout_s",
					    "retry", "ca_file", NULL };
	static const uint_field fields[] = {
		{ "batch_size", 1, 10000, 100, offsetof(config, redcap_batch_size) },
		{ "max_requests_per_minute", 1, 600, 120, offsetof(config, redcap_max_requests_per_minute) },
		{ "timeout_s", 1, 3600, 120, offsetof(config, redcap_timeout_s) },
	};
	static const uint_field retry_fields[] = {
		{ "max_attempts", 1, 100, 6, offsetof(config, redcap_retry_max_attempts) },
		{ "base_ms", 1, 600000, 1000, offsetof(config, redcap_retry_base_ms) },
		{ "max_ms", 1, 3600000, 60000, offsetof(config, redcap_retry_max_ms) },
	};
	json_t *o, *a;
	int r;

	if ((r = jsonstrict_get_object(x, root, "redcap", false, &o)))
		return r;
	if (!o) {
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
			*(unsigned *)(void *)((char *)c + fields[i].offset) = fields[i].def;
		for (size_t i = 0; i < sizeof(retry_fields) / sizeof(retry_fields[0]); i++)
			*(unsigned *)(void *)((char *)c + retry_fields[i].offset) = retry_fields[i].def;
		return 0;
	}
	jsonstrict_push_key(x, "redcap");
	if ((r = jsonstrict_check_keys(x, o, keys, NULL, NULL)))
		return r;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if ((r = get_uint(x, o, &fields[i], c)))
			return r;
	if ((r = load_retry(x, o, retry_fields, c)))
		return r;
	if ((r = get_path(x, o, "ca_file", false, &c->redcap_ca_file)))
		return r;
	a = json_object_get(o, "projects");
	if (a) {
		if (!json_is_array(a))
			return jsonstrict_fail_key(x, "projects", "expected an array of projects, got %s",
						   jsonstrict_kind(a));
		size_t n = json_array_size(a);
		c->redcap_projects = calloc(n ? n : 1, sizeof(*c->redcap_projects));
		if (!c->redcap_projects)
			return jsonstrict_fail_key(x, "projects", "out of memory");
		jsonstrict_push_key(x, "projects");
		for (size_t i = 0; i < n; i++) {
			jsonstrict_push_index(x, i);
			c->n_redcap_projects = i + 1;
			if ((r = load_project(x, json_array_get(a, i), &c->redcap_projects[i], c, i)))
				return r;
			jsonstrict_pop(x);
		}
		jsonstrict_pop(x);
	}
	jsonstrict_pop(x);
	return 0;
}

static int load_downtime(jsonstrict *x, json_t *root, config *c)
{
	static const char *const keys[] = { "identifier_system", "user_system", "probe_interval_s", "probe_timeout_s",
					    "fail_threshold", "recover_successes", "down_probe_max_s", "resync_batch",
					    NULL };
	static const uint_field fields[] = {
		{ "probe_interval_s", 1, 3600, 5, offsetof(config, downtime_probe_interval_s) },
		{ "probe_timeout_s", 1, 600, 5, offsetof(config, downtime_probe_timeout_s) },
		{ "fail_threshold", 1, 100, 3, offsetof(config, downtime_fail_threshold) },
		{ "recover_successes", 1, 100, 2, offsetof(config, downtime_recover_successes) },
		{ "down_probe_max_s", 1, 3600, 10, offsetof(config, downtime_down_probe_max_s) },
		{ "resync_batch", 1, 500, 50, offsetof(config, downtime_resync_batch) },
	};
	json_t *o;
	int r;

	if ((r = jsonstrict_get_object(x, root, "downtime", false, &o)))
		return r;
	if (!o) {
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
			*(unsigned *)(void *)((char *)c + fields[i].offset) = fields[i].def;
		return 0;
	}
	jsonstrict_push_key(x, "downtime");
	if ((r = jsonstrict_check_keys(x, o, keys, NULL, NULL)) ||
	    (r = get_string(x, o, "identifier_system", false, "a system URI", &c->downtime_identifier_system)) ||
	    (r = get_string(x, o, "user_system", false, "a system URI", &c->downtime_user_system)))
		return r;
	const char *sys[] = { c->downtime_identifier_system, c->downtime_user_system };
	const char *sys_keys[] = { "identifier_system", "user_system" };
	for (size_t i = 0; i < 2; i++) {
		/* An absolute URI (scheme:rest) without spaces or '|' (the token separator in searches). */
		const char *v = sys[i];
		if (!v)
			continue;
		size_t sch = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
		bool bad = sch == 0 || v[sch] != ':' || !v[sch + 1] || strlen(v) > 255;
		for (const unsigned char *p = (const unsigned char *)v; *p && !bad; p++)
			bad = *p <= 0x20 || *p == 0x7f || *p == '|';
		if (bad)
			return jsonstrict_fail_key(x, sys_keys[i],
						   "expected an absolute URI without spaces or '|' (like "
						   "\"urn:oid:1.2.3\" or \"https://hospital.example/downtime\")");
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if ((r = get_uint(x, o, &fields[i], c)))
			return r;
	jsonstrict_pop(x);
	return 0;
}

/* "host:port" with an IPv4 literal, or "[v6]:port"; port 0..65535. */
static bool listen_ok(const char *s)
{
	const char *colon;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb == s + 1 || rb[1] != ':')
			return false;
		for (const char *p = s + 1; p < rb; p++)
			if (!strchr("0123456789abcdefABCDEF:.", *p))
				return false;
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || colon == s)
			return false;
		int dots = 0;
		for (const char *p = s; p < colon; p++) {
			if (*p == '.')
				dots++;
			else if (*p < '0' || *p > '9')
				return false;
		}
		if (dots != 3)
			return false;
	}
	const char *port = colon + 1;
	size_t n = strlen(port);
	if (n == 0 || n > 5 || strspn(port, "0123456789") != n)
		return false;
	return atol(port) <= 65535;
}

static int load_ui(jsonstrict *x, json_t *root, config *c)
{
	static const char *const keys[] = { "listen", "session_idle_s", "lockout_failures", "lockout_s",
					    "password_log2n", "secure_cookies", NULL };
	static const uint_field fields[] = {
		{ "session_idle_s", 60, 86400, 900, offsetof(config, ui_session_idle_s) },
		{ "lockout_failures", 1, 100, 5, offsetof(config, ui_lockout_failures) },
		{ "lockout_s", 1, 86400, 900, offsetof(config, ui_lockout_s) },
		{ "password_log2n", 10, 20, 15, offsetof(config, ui_password_log2n) },
	};
	json_t *o;
	int r;

	if ((r = jsonstrict_get_object(x, root, "ui", false, &o)))
		return r;
	if (!o) {
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
			*(unsigned *)(void *)((char *)c + fields[i].offset) = fields[i].def;
		return 0;
	}
	c->ui_enabled = true;
	jsonstrict_push_key(x, "ui");
	if ((r = jsonstrict_check_keys(x, o, keys, NULL, NULL)) ||
	    (r = get_string(x, o, "listen", false, "\"host:port\" (a string)", &c->ui_listen)))
		return r;
	if (c->ui_listen && !listen_ok(c->ui_listen)) {
		char shown[96];
		return jsonstrict_fail_key(x, "listen",
					   "%s is not \"<IPv4 address>:<port>\" or \"[<IPv6 address>]:<port>\" "
					   "(like \"127.0.0.1:8470\")",
					   jsonstrict_show(c->ui_listen, shown, sizeof(shown)));
	}
	if (!c->ui_listen && !(c->ui_listen = strdup("127.0.0.1:8470")))
		return jsonstrict_fail_here(x, "out of memory");
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if ((r = get_uint(x, o, &fields[i], c)))
			return r;
	json_t *sc = json_object_get(o, "secure_cookies");
	if (sc) {
		if (!json_is_boolean(sc)) {
			jsonstrict_push_key(x, "secure_cookies");
			return jsonstrict_fail_here(x, "expected true or false, got %s", jsonstrict_kind(sc));
		}
		c->ui_secure_cookies = json_is_true(sc);
	}
	jsonstrict_pop(x);
	return 0;
}

static int load_log(jsonstrict *x, json_t *root, config *c)
{
	static const char *const keys[] = { "level", NULL };
	static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
	json_t *o;
	int r;

	if ((r = jsonstrict_get_object(x, root, "log", false, &o)) || !o)
		return r;
	jsonstrict_push_key(x, "log");
	if ((r = jsonstrict_check_keys(x, o, keys, NULL, NULL)) ||
	    (r = get_word(x, o, "level", false, levels, &c->log_level)))
		return r;
	jsonstrict_pop(x);
	return 0;
}


int config_load(config *c, const char *path, char *err, size_t err_size)
{
	static const char *const keys[] = { "store", "fhir", "site", "redcap", "downtime", "ui", "log", NULL };
	config tmp = CONFIG_NULL;
	jsonstrict x = { .file = path, .err = err, .err_size = err_size, .fail_code = -1 };
	char *text = NULL;
	json_t *root = NULL;
	int r = -1;

	config_deinit(c);
	if (err && err_size)
		err[0] = '\0';
	if (!path || !*path) {
		jsonstrict_errf(err, err_size, "no config file given");
		return -1;
	}
	if (jsonstrict_read(&x, CONFIG_FILE_MAX, &text) != 0)
		goto out;
	tmp.path = strdup(path);
	if (!tmp.path) {
		jsonstrict_errf(err, err_size, "%s: out of memory", path);
		goto out;
	}
	if (jsonstrict_parse(&x, &root) || jsonstrict_check_keys(&x, root, keys, NULL, NULL) ||
	    load_store(&x, root, &tmp) || load_fhir(&x, root, &tmp) || load_site(&x, root, &tmp) ||
	    load_redcap(&x, root, &tmp) || load_downtime(&x, root, &tmp) || load_ui(&x, root, &tmp) ||
	    load_log(&x, root, &tmp))
		goto out;
	*c = tmp;
	tmp = (config)CONFIG_NULL;
	r = 0;
out:
	config_deinit(&tmp);
	json_decref(root);
	jsonstrict_deinit(&x);
	free(text);
	return r;
}

static void auth_deinit(config_auth *a)
{
	free(a->token_file);
	free(a->token_env);
	free(a->token_url);
	free(a->client_id);
	free(a->private_key_file);
	free(a->alg);
	free(a->kid);
	free(a->scope);
	*a = (config_auth){ 0 };
}

void config_deinit(config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->store_path);
	free(c->store_key_file);
	free(c->fhir_base_url);
	if (c->fhir_resources)
		for (size_t i = 0; c->fhir_resources[i]; i++)
			free(c->fhir_resources[i]);
	free(c->fhir_resources);
	free(c->fhir_ca_file);
	auth_deinit(&c->fhir_auth);
	free(c->fhir_mrn_system);
	free(c->site_timezone);
	for (size_t i = 0; i < c->n_redcap_projects; i++) {
		config_redcap_project *p = &c->redcap_projects[i];
		free(p->name);
		free(p->url);
		free(p->token_file);
		free(p->token_env);
		free(p->mapping);
	}
	free(c->redcap_projects);
	free(c->redcap_ca_file);
	free(c->downtime_identifier_system);
	free(c->downtime_user_system);
	free(c->ui_listen);
	free(c->log_level);
	*c = (config)CONFIG_NULL;
}

/* ---- secrets ---------------------------------------------------------------- */

char *secret_read_file(const char *path, size_t *len, char *err, size_t err_size)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int fd;

	if (len)
		*len = 0;
	if (!path || !*path) {
		jsonstrict_errf(err, err_size, "no secret file given");
		return NULL;
	}
	fd = jsonstrict_file_open(path, &st, err, err_size);
	if (fd < 0)
		return NULL;
	if (st.st_mode & 077) {
		jsonstrict_errf(err, err_size,
				"%s: permissions %04o are too open (group/others can %s it); run chmod 600 %s", path,
				(unsigned)(st.st_mode & 07777), (st.st_mode & 044) ? "read" : "write or execute", path);
		goto fail;
	}
	/* The limit is on the secret: a final "\r\n" may come on top. */
	if (st.st_size > SECRET_FILE_MAX + 2) {
		jsonstrict_errf(err, err_size, "%s: larger than %d bytes", path, SECRET_FILE_MAX);
		goto fail;
	}
	/* One allocation of the largest size: no realloc leaving copies behind. */
	buf = malloc(SECRET_FILE_MAX + 4);
	if (!buf) {
		jsonstrict_errf(err, err_size, "%s: out of memory", path);
		goto fail;
	}
	/* One byte more than a secret and its "\r\n": a file grown since fstat is refused below. */
	if (jsonstrict_file_read(fd, path, buf, SECRET_FILE_MAX + 3, &n, err, err_size) != 0)
		goto fail;
	close(fd);
	fd = -1;
	if (n > 0 && buf[n - 1] == '\n') {
		n--;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
	}
	if (n > SECRET_FILE_MAX) {
		jsonstrict_errf(err, err_size, "%s: larger than %d bytes", path, SECRET_FILE_MAX);
		goto fail;
	}
	if (n == 0) {
		jsonstrict_errf(err, err_size, "%s: is empty", path);
		goto fail;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
fail:
	secret_free(buf);
	if (fd >= 0)
		close(fd);
	return NULL;
}

void secret_free(char *secret)
{
	if (!secret)
		return;
	/* The whole block, not just up to the first NUL or the stripped newline. */
	explicit_bzero(secret, malloc_usable_size(secret));
	free(secret);
}
