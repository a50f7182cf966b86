/*
 * The configuration loader (see config.h; keys in conf/README.md).
 *
 * The file is read into memory once; Jansson parses that text with
 * JSON_REJECT_DUPLICATES, and every later error is placed by jsonloc
 * scanning the same text along the key path. Validation is strict: the
 * first problem ends the load with one message naming file:line:column and
 * the key path. A config is built in a local copy and handed over only when
 * complete, so a failed load leaves nothing half-set.
 */
#include "bridge/config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/jsonloc.h"

#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_RESOURCES_MAX 256
#define CONFIG_PATH_DEPTH 8
#define SECRET_FILE_MAX (64 * 1024)

/* ---- load context and error messages ------------------------------------ */

typedef struct cctx {
	const char *file;   /* the config path as given, for messages */
	const char *text;
	size_t len;
	char *dir;          /* directory part of file ("" when none) */
	char *err;
	size_t err_size;
	jsonloc_step path[CONFIG_PATH_DEPTH];
	size_t depth;
} cctx;

static void cctx_push_key(cctx *x, const char *key)
{
	/* The schema is 4 deep at most; a deeper push is a bug here. */
	if (x->depth < CONFIG_PATH_DEPTH)
		x->path[x->depth++] = (jsonloc_step)JSONLOC_KEY(key);
}

static void cctx_push_index(cctx *x, size_t i)
{
	if (x->depth < CONFIG_PATH_DEPTH)
		x->path[x->depth++] = (jsonloc_step)JSONLOC_INDEX(i);
}

static void cctx_pop(cctx *x)
{
	if (x->depth > 0)
		x->depth--;
}

static void err_printf(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void err_printf(char *err, size_t err_size, const char *fmt, ...)
{
	va_list ap;

	if (!err || err_size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_size, fmt, ap);
	va_end(ap);
}

/*
 * The error for the node at x->path[0..depth): "file:L:C: path: message",
 * placed at the name (or, with at_value, the value) of x->path[0..n_pos).
 * Returns -1 for the caller to pass on.
 */
static int cctx_vfail(cctx *x, size_t n_pos, bool at_value, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));
static int cctx_vfail(cctx *x, size_t n_pos, bool at_value, const char *fmt, va_list ap)
{
	jsonloc_pos name, value;
	char *p;
	int n;

	if (!x->err || x->err_size == 0)
		return -1;
	p = jsonloc_path_str(x->path, x->depth);
	if (n_pos > x->depth)
		n_pos = x->depth;
	if (jsonloc_find(x->text, x->len, x->path, n_pos, &name, &value) == 0) {
		const jsonloc_pos *at = at_value ? &value : &name;
		n = snprintf(x->err, x->err_size, "%s:%lu:%lu: %s: ", x->file, at->line, at->column,
			     p ? p : "?");
	} else {
		n = snprintf(x->err, x->err_size, "%s: %s: ", x->file, p ? p : "?");
	}
	free(p);
	if (n >= 0 && (size_t)n < x->err_size)
		vsnprintf(x->err + n, x->err_size - (size_t)n, fmt, ap);
	return -1;
}

/* An error about the current node, at its name. */
static int fail_here(cctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_here(cctx *x, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cctx_vfail(x, x->depth, false, fmt, ap);
	va_end(ap);
	return -1;
}

/* An error about member key of the current object, at the key. */
static int fail_key(cctx *x, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_key(cctx *x, const char *key, const char *fmt, ...)
{
	va_list ap;

	cctx_push_key(x, key);
	va_start(ap, fmt);
	cctx_vfail(x, x->depth, false, fmt, ap);
	va_end(ap);
	cctx_pop(x);
	return -1;
}

/* A required member that is not there: at the '{' of the current object. */
static int fail_missing(cctx *x, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_missing(cctx *x, const char *key, const char *fmt, ...)
{
	va_list ap;

	cctx_push_key(x, key);
	va_start(ap, fmt);
	cctx_vfail(x, x->depth - 1, true, fmt, ap);
	va_end(ap);
	cctx_pop(x);
	return -1;
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE: return "true";
	case JSON_FALSE: return "false";
	case JSON_NULL: return "null";
	}
	return "an unknown value";
}

/*
 * A string value shown in a message: quoted, control characters and quotes
 * escaped, cut (with "...") to fit out. Only for values that are neither
 * secrets nor PHI (type names, enum words).
 */
static const char *show(const char *s, char *out, size_t size)
{
	size_t o = 0;
	const size_t room = size - 5; /* quote, "...", quote, NUL */

	out[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		size_t n;
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			n = 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *p);
		} else {
			esc[0] = (char)*p;
			n = 1;
		}
		if (o + n > room) {
			/* Do not end inside a UTF-8 sequence. */
			while (o > 1 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
				o--;
			if (o > 1 && ((unsigned char)out[o - 1] & 0xc0) == 0xc0)
				o--;
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, esc, n);
		o += n;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

/* ---- object shape --------------------------------------------------------- */

static bool name_in(const char *key, const char *const *names)
{
	for (size_t i = 0; names[i]; i++)
		if (strcmp(key, names[i]) == 0)
			return true;
	return false;
}

static void names_join(const char *const *names, char *out, size_t size)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; names[i]; i++) {
		int n = snprintf(out + o, size - o, "%s%s", i ? ", " : "", names[i]);
		if (n < 0 || (size_t)n >= size - o)
			return;
		o += (size_t)n;
	}
}

/*
 * Every member of obj must be one of allowed. other, when set, lists keys
 * that exist but not in this variant; other_why says why they are refused.
 */
static int check_keys(cctx *x, json_t *obj, const char *const *allowed, const char *const *other,
		      const char *other_why)
{
	const char *key;
	json_t *v;
	char list[512];

	json_object_foreach(obj, key, v) {
		if (name_in(key, allowed))
			continue;
		names_join(allowed, list, sizeof(list));
		if (other && name_in(key, other))
			return fail_key(x, key, "%s (allowed: %s)", other_why, list);
		return fail_key(x, key, "unknown key (allowed: %s)", list);
	}
	return 0;
}

/* The member key as an object (NULL when absent and !required). */
static int get_object(cctx *x, json_t *parent, const char *key, bool required, json_t **out)
{
	json_t *v = json_object_get(parent, key);

	*out = NULL;
	if (!v)
		return required ? fail_missing(x, key, "required key is missing") : 0;
	if (!json_is_object(v))
		return fail_key(x, key, "expected an object, got %s", json_kind(v));
	*out = v;
	return 0;
}

typedef struct uint_field {
	const char *key;
	unsigned min, max, def;
	size_t offset; /* into config */
} uint_field;

static int get_uint(cctx *x, json_t *parent, const uint_field *f, config *c)
{
	json_t *v = json_object_get(parent, f->key);
	unsigned *out = (unsigned *)(void *)((char *)c + f->offset);

	if (!v) {
		*out = f->def;
		return 0;
	}
	if (!json_is_integer(v))
		return fail_key(x, f->key, "expected an integer from %u to %u, got %s", f->min, f->max,
				json_kind(v));
	json_int_t n = json_integer_value(v);
	if (n < (json_int_t)f->min || n > (json_int_t)f->max)
		return fail_key(x, f->key, "expected an integer from %u to %u, got %" JSON_INTEGER_FORMAT, f->min,
				f->max, n);
	*out = (unsigned)n;
	return 0;
}

/*
 * A non-empty string without control characters, strdup'd into *out; NULL
 * when absent and !required. what names the expected value in messages.
 */
static int get_string(cctx *x, json_t *parent, const char *key, bool required, const char *what, char **out)
{
	json_t *v = json_object_get(parent, key);

	*out = NULL;
	if (!v)
		return required ? fail_missing(x, key, "required key is missing") : 0;
	if (!json_is_string(v))
		return fail_key(x, key, "expected %s, got %s", what, json_kind(v));
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n == 0)
		return fail_key(x, key, "expected %s, got an empty string", what);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f)
			return fail_key(x, key, "must not contain control characters");
	}
	*out = strdup(s);
	if (!*out)
		return fail_key(x, key, "out of memory");
	return 0;
}

/* A path: relative ones are joined to the config file's directory. */
static int get_path(cctx *x, json_t *parent, const char *key, bool required, char **out)
{
	char *s;
	int r = get_string(x, parent, key, required, "a file path (a string)", &s);

	*out = NULL;
	if (r || !s)
		return r;
	if (s[0] == '/' || !x->dir[0]) {
		*out = s;
		return 0;
	}
	size_t dl = strlen(x->dir);
	bool slash = x->dir[dl - 1] == '/';
	char *joined = NULL;
	if (asprintf(&joined, "%s%s%s", x->dir, slash ? "" : "/", s) < 0)
		joined = NULL;
	free(s);
	if (!joined)
		return fail_key(x, key, "out of memory");
	*out = joined;
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

static int get_url(cctx *x, json_t *parent, const char *key, bool allow_query, bool strip_slash, char **out)
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
		return fail_key(x, key, "%s", why);
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
static int get_word(cctx *x, json_t *parent, const char *key, bool required, const char *const *words, char **out)
{
	json_t *v = json_object_get(parent, key);
	char list[256];
	size_t o = 0;

	*out = NULL;
	for (size_t i = 0; words[i]; i++) {
		int n = snprintf(list + o, sizeof(list) - o, "%s\"%s\"", i == 0 ? "" : words[i + 1] ? ", " : " or ",
				 words[i]);
		if (n < 0 || (size_t)n >= sizeof(list) - o)
			break;
		o += (size_t)n;
	}
	if (!v)
		return required ? fail_missing(x, key, "required key is missing") : 0;
	if (!json_is_string(v))
		return fail_key(x, key, "expected %s, got %s", list, json_kind(v));
	const char *s = json_string_value(v);
	if (!name_in(s, words)) {
		char shown[96];
		return fail_key(x, key, "expected %s, got %s", list, show(s, shown, sizeof(shown)));
	}
	*out = strdup(s);
	if (!*out)
		return fail_key(x, key, "out of memory");
	return 0;
}

/* ---- sections --------------------------------------------------------------- */

static int load_store(cctx *x, json_t *root, config *c)
{
	static const char *const keys[] = { "path", "key_file", NULL };
	json_t *o;
	int r;

	if ((r = get_object(x, root, "store", true, &o)))
		return r;
	cctx_push_key(x, "store");
	if ((r = check_keys(x, o, keys, NULL, NULL)) || (r = get_path(x, o, "path", true, &c->store_path)) ||
	    (r = get_path(x, o, "key_file", true, &c->store_key_file)))
		return r;
	cctx_pop(x);
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

static int load_resources(cctx *x, json_t *fhir, config *c)
{
	json_t *a = json_object_get(fhir, "resources");

	if (!a)
		return fail_missing(x, "resources", "required key is missing");
	if (!json_is_array(a))
		return fail_key(x, "resources", "expected an array of resource type names, got %s", json_kind(a));
	size_t n = json_array_size(a);
	if (n == 0)
		return fail_key(x, "resources", "must list at least one resource type");
	if (n > CONFIG_RESOURCES_MAX)
		return fail_key(x, "resources", "lists %zu types; at most %d are allowed", n, CONFIG_RESOURCES_MAX);
	c->fhir_resources = calloc(n + 1, sizeof(char *));
	if (!c->fhir_resources)
		return fail_key(x, "resources", "out of memory");
	cctx_push_key(x, "resources");
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_array_get(a, i);
		char shown[96];
		cctx_push_index(x, i);
		if (!json_is_string(v))
			return fail_here(x, "expected a resource type name (a string), got %s", json_kind(v));
		const char *s = json_string_value(v);
		if (!resource_name_ok(s, json_string_length(v)))
			return fail_here(x, "%s is not a resource type name (like \"Patient\": ^[A-Z][A-Za-z]{1,63}$)",
					 show(s, shown, sizeof(shown)));
		for (size_t j = 0; j < i; j++) {
			if (strcmp(c->fhir_resources[j], s) == 0)
				return fail_here(x, "%s is listed twice (first at [%zu])", show(s, shown, sizeof(shown)),
						 j);
		}
		c->fhir_resources[i] = strdup(s);
		if (!c->fhir_resources[i])
			return fail_here(x, "out of memory");
		c->n_fhir_resources = i + 1;
		cctx_pop(x);
	}
	cctx_pop(x);
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

static int load_auth(cctx *x, json_t *fhir, config *c)
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
	char *type = NULL;
	char why[64];
	json_t *o;
	int r;

	if ((r = get_object(x, fhir, "auth", false, &o)))
		return r;
	if (!o) {
		a->type = CONFIG_AUTH_NONE;
		return 0;
	}
	cctx_push_key(x, "auth");
	if ((r = get_word(x, o, "type", true, types, &type)))
		return r;
	snprintf(why, sizeof(why), "not used with auth type \"%s\"", type);
	if (strcmp(type, "none") == 0) {
		a->type = CONFIG_AUTH_NONE;
		r = check_keys(x, o, k_none, k_all, why);
	} else if (strcmp(type, "bearer") == 0) {
		a->type = CONFIG_AUTH_BEARER;
		r = check_keys(x, o, k_bearer, k_all, why);
		if (!r && json_object_get(o, "token_file") && json_object_get(o, "token_env"))
			r = fail_key(x, "token_env", "give token_file or token_env, not both");
		if (!r && !json_object_get(o, "token_file") && !json_object_get(o, "token_env"))
			r = fail_missing(x, "token_file", "required key is missing (or token_env) for auth type \"bearer\"");
		if (!r)
			r = get_path(x, o, "token_file", false, &a->token_file);
		if (!r)
			r = get_string(x, o, "token_env", false, "an environment variable name (a string)",
				       &a->token_env);
		if (!r && a->token_env && !env_name_ok(a->token_env))
			r = fail_key(x, "token_env", "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
	} else {
		a->type = CONFIG_AUTH_SMART_BACKEND;
		r = check_keys(x, o, k_smart, k_all, why);
		if (!r)
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
			r = fail_here(x, "out of memory");
	}
	free(type);
	if (r)
		return r;
	cctx_pop(x);
	return 0;
}

/* A "retry" object {max_attempts, base_ms, max_ms} inside o, or its
 * defaults when absent. rf lists the three fields in that order. */
static int load_retry(cctx *x, json_t *o, const uint_field rf[3], config *c)
{
	static const char *const retry_keys[] = { "max_attempts", "base_ms", "max_ms", NULL };
	json_t *retry;
	int r;

	if ((r = get_object(x, o, "retry", false, &retry)))
		return r;
	if (!retry) {
		for (size_t i = 0; i < 3; i++)
			*(unsigned *)(void *)((char *)c + rf[i].offset) = rf[i].def;
		return 0;
	}
	cctx_push_key(x, "retry");
	if ((r = check_keys(x, retry, retry_keys, NULL, NULL)))
		return r;
	for (size_t i = 0; i < 3; i++)
		if ((r = get_uint(x, retry, &rf[i], c)))
			return r;
	unsigned base = *(unsigned *)(void *)((char *)c + rf[1].offset);
	unsigned max = *(unsigned *)(void *)((char *)c + rf[2].offset);
	if (max < base) {
		if (json_object_get(retry, "max_ms"))
			return fail_key(x, "max_ms", "must be at least base_ms (%u), got %u", base, max);
		return fail_key(x, "base_ms", "must be at most max_ms (%u), got %u", max, base);
	}
	cctx_pop(x);
	return 0;
}

static int load_fhir(cctx *x, json_t *root, config *c)
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

	if ((r = get_object(x, root, "fhir", true, &o)))
		return r;
	cctx_push_key(x, "fhir");
	if ((r = check_keys(x, o, keys, NULL, NULL)) ||
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
	cctx_pop(x);
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

static int load_site(cctx *x, json_t *root, config *c)
{
	static const char *const keys[] = { "timezone", NULL };
	json_t *o;
	int r;

	if ((r = get_object(x, root, "site", false, &o)))
		return r;
	if (o) {
		cctx_push_key(x, "site");
		if ((r = check_keys(x, o, keys, NULL, NULL)) ||
		    (r = get_string(x, o, "timezone", false, "an IANA time zone name", &c->site_timezone)))
			return r;
		if (c->site_timezone) {
			char shown[96];
			if (!zone_name_ok(c->site_timezone))
				return fail_key(x, "timezone", "%s is not an IANA time zone name (like \"Europe/Zurich\")",
						show(c->site_timezone, shown, sizeof(shown)));
			char zp[128];
			snprintf(zp, sizeof(zp), "/usr/share/zoneinfo/%s", c->site_timezone);
			if (strcmp(c->site_timezone, "UTC") != 0 && access(zp, R_OK) != 0)
				return fail_key(x, "timezone", "unknown time zone %s (no %s)",
						show(c->site_timezone, shown, sizeof(shown)), zp);
		}
		cctx_pop(x);
	}
	if (!c->site_timezone && !(c->site_timezone = strdup("UTC")))
		return fail_here(x, "out of memory");
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

static int load_project(cctx *x, json_t *o, config_redcap_project *p, const config *c, size_t i)
{
	static const char *const keys[] = { "name", "url", "token_file", "token_env", "mapping", NULL };
	char shown[96];
	int r;

	if (!json_is_object(o))
		return fail_here(x, "expected an object (name, url, token_file, mapping), got %s", json_kind(o));
	if ((r = check_keys(x, o, keys, NULL, NULL)) ||
	    (r = get_string(x, o, "name", true, "a project name", &p->name)))
		return r;
	if (!project_name_ok(p->name))
		return fail_key(x, "name", "%s is not a project name (letters, digits, '_', '-', '.'; at most 64)",
				show(p->name, shown, sizeof(shown)));
	for (size_t j = 0; j < i; j++)
		if (strcmp(c->redcap_projects[j].name, p->name) == 0)
			return fail_key(x, "name", "%s is used twice (first at redcap.projects[%zu])",
					show(p->name, shown, sizeof(shown)), j);
	if ((r = get_url(x, o, "url", true, false, &p->url)) ||
	    (r = get_path(x, o, "token_file", false, &p->token_file)) ||
	    (r = get_string(x, o, "token_env", false, "an environment variable name", &p->token_env)) ||
	    (r = get_path(x, o, "mapping", false, &p->mapping)))
		return r;
	if (p->token_env && !env_name_ok(p->token_env))
		return fail_key(x, "token_env", "%s is not an environment variable name",
				show(p->token_env, shown, sizeof(shown)));
	if (!p->token_file == !p->token_env)
		return fail_here(x, "give the API token as token_file or token_env (exactly one)");
	return 0;
}

static int load_redcap(cctx *x, json_t *root, config *c)
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

	if ((r = get_object(x, root, "redcap", false, &o)))
		return r;
	if (!o) {
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
			*(unsigned *)(void *)((char *)c + fields[i].offset) = fields[i].def;
		for (size_t i = 0; i < sizeof(retry_fields) / sizeof(retry_fields[0]); i++)
			*(unsigned *)(void *)((char *)c + retry_fields[i].offset) = retry_fields[i].def;
		return 0;
	}
	cctx_push_key(x, "redcap");
	if ((r = check_keys(x, o, keys, NULL, NULL)))
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
			return fail_key(x, "projects", "expected an array of projects, got %s", json_kind(a));
		size_t n = json_array_size(a);
		c->redcap_projects = calloc(n ? n : 1, sizeof(*c->redcap_projects));
		if (!c->redcap_projects)
			return fail_key(x, "projects", "out of memory");
		cctx_push_key(x, "projects");
		for (size_t i = 0; i < n; i++) {
			cctx_push_index(x, i);
			c->n_redcap_projects = i + 1;
			if ((r = load_project(x, json_array_get(a, i), &c->redcap_projects[i], c, i)))
				return r;
			cctx_pop(x);
		}
		cctx_pop(x);
	}
	cctx_pop(x);
	return 0;
}

static int load_log(cctx *x, json_t *root, config *c)
{
	static const char *const keys[] = { "level", NULL };
	static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
	json_t *o;
	int r;

	if ((r = get_object(x, root, "log", false, &o)) || !o)
		return r;
	cctx_push_key(x, "log");
	if ((r = check_keys(x, o, keys, NULL, NULL)) || (r = get_word(x, o, "level", false, levels, &c->log_level)))
		return r;
	cctx_pop(x);
	return 0;
}

/* ---- file --------------------------------------------------------------------- */

/* Read a whole file of at most max bytes; *out is NUL-terminated. */
static int read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t err_size)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		err_printf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		err_printf(err, err_size, "%s: cannot stat: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		err_printf(err, err_size, "%s: not a regular file", path);
		goto fail;
	}
	if (st.st_size < 0 || (uintmax_t)st.st_size > max) {
		err_printf(err, err_size, "%s: larger than %zu bytes", path, max);
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		err_printf(err, err_size, "%s: out of memory", path);
		goto fail;
	}
	/* Read what fstat promised; a file that grew meanwhile is refused. */
	for (;;) {
		char extra;
		ssize_t r;
		if (n < (size_t)st.st_size)
			r = read(fd, buf + n, (size_t)st.st_size - n);
		else
			r = read(fd, &extra, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err_printf(err, err_size, "%s: cannot read: %s", path, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		if (n >= (size_t)st.st_size) {
			err_printf(err, err_size, "%s: changed while being read", path);
			goto fail;
		}
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
fail:
	free(buf);
	close(fd);
	return -1;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup("");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

int config_load(config *c, const char *path, char *err, size_t err_size)
{
	config tmp = CONFIG_NULL;
	cctx x = { .file = path, .err = err, .err_size = err_size };
	char *text = NULL;
	json_error_t jerr;
	json_t *root = NULL;
	int r = -1;

	config_deinit(c);
	if (err && err_size)
		err[0] = '\0';
	if (!path || !*path) {
		err_printf(err, err_size, "no config file given");
		return -1;
	}
	if (read_file(path, CONFIG_FILE_MAX, &text, &x.len, err, err_size) != 0)
		return -1;
	x.text = text;
	x.dir = dir_of(path);
	tmp.path = strdup(path);
	if (!x.dir || !tmp.path) {
		err_printf(err, err_size, "%s: out of memory", path);
		goto out;
	}

	root = json_loadb(text, x.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		err_printf(err, err_size, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
		goto out;
	}
	if (!json_is_object(root)) {
		fail_here(&x, "expected an object, got %s", json_kind(root));
		goto out;
	}
	static const char *const keys[] = { "store", "fhir", "site", "redcap", "log", NULL };
	if (check_keys(&x, root, keys, NULL, NULL) || load_store(&x, root, &tmp) || load_fhir(&x, root, &tmp) ||
	    load_site(&x, root, &tmp) || load_redcap(&x, root, &tmp) || load_log(&x, root, &tmp))
		goto out;
	*c = tmp;
	tmp = (config)CONFIG_NULL;
	r = 0;
out:
	config_deinit(&tmp);
	json_decref(root);
	free(x.dir);
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
		err_printf(err, err_size, "no secret file given");
		return NULL;
	}
	/* O_NONBLOCK: a FIFO planted at path must not hang us before fstat. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		err_printf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0) {
		err_printf(err, err_size, "%s: cannot stat: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		err_printf(err, err_size, "%s: not a regular file", path);
		goto fail;
	}
	if (st.st_mode & 077) {
		err_printf(err, err_size, "%s: permissions %04o are too open (group/others can %s it); run chmod 600 %s",
			   path, (unsigned)(st.st_mode & 07777), (st.st_mode & 044) ? "read" : "write or execute",
			   path);
		goto fail;
	}
	/* The limit is on the secret: a final "\r\n" may come on top. */
	if (st.st_size > SECRET_FILE_MAX + 2) {
		err_printf(err, err_size, "%s: larger than %d bytes", path, SECRET_FILE_MAX);
		goto fail;
	}
	/* One allocation of the largest size: no realloc leaving copies behind. */
	buf = malloc(SECRET_FILE_MAX + 4);
	if (!buf) {
		err_printf(err, err_size, "%s: out of memory", path);
		goto fail;
	}
	for (;;) {
		ssize_t r = read(fd, buf + n, SECRET_FILE_MAX + 3 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err_printf(err, err_size, "%s: cannot read: %s", path, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > SECRET_FILE_MAX + 2)
			break; /* grew since fstat: refused below */
	}
	close(fd);
	fd = -1;
	if (n > 0 && buf[n - 1] == '\n') {
		n--;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
	}
	if (n > SECRET_FILE_MAX) {
		err_printf(err, err_size, "%s: larger than %d bytes", path, SECRET_FILE_MAX);
		goto fail;
	}
	if (n == 0) {
		err_printf(err, err_size, "%s: is empty", path);
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
