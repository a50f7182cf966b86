/*
 * mapping-load.c — load and validate a mapping file (format in mapping.h
 * and conf/README.md, "Mapping files"), the record id (MRN or HMAC study
 * id), and the small accessors.
 *
 * Like the config loader: the file is read once, Jansson parses it with
 * JSON_REJECT_DUPLICATES, and every later problem is placed by jsonloc
 * scanning the same text along the key path; the first problem ends the
 * load with "file:line:col: key.path: what". A problem inside a value path
 * is placed at the character where the path goes wrong. The mapping is
 * built in place and freed whole on failure.
 */
#include "bridge/mapping-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "bridge/config.h"
#include "bridge/jsonloc.h"

#define MAPPING_FORMAT "fhir-redcap-bridge/mapping/1"
#define PATH_DEPTH 12
#define WINDOW_MAX_MINUTES (36500LL * 24 * 60) /* a hundred years */

/* ---- load context and error messages ------------------------------------ */

typedef struct lctx {
	const char *file;
	const char *text;
	size_t len;
	char *dir;
	char *err;
	size_t err_size;
	jsonloc_step path[PATH_DEPTH];
	size_t depth;
	mapping *m;
	const mapping_env *env;
} lctx;

static void push_key(lctx *x, const char *key)
{
	/* The schema is 6 deep at most; a deeper push is a bug here. */
	if (x->depth < PATH_DEPTH)
		x->path[x->depth++] = (jsonloc_step)JSONLOC_KEY(key);
}

static void push_index(lctx *x, size_t i)
{
	if (x->depth < PATH_DEPTH)
		x->path[x->depth++] = (jsonloc_step)JSONLOC_INDEX(i);
}

static void pop(lctx *x)
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
 * "file:L:C: path: message" for the node at x->path[0..depth), placed at
 * *at (NULL: without a position). Returns MAPPING_E_SYNTAX.
 */
static int vfail_at(lctx *x, const jsonloc_pos *at, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
static int vfail_at(lctx *x, const jsonloc_pos *at, const char *fmt, va_list ap)
{
	char *p;
	int n;

	if (!x->err || x->err_size == 0)
		return MAPPING_E_SYNTAX;
	p = jsonloc_path_str(x->path, x->depth);
	if (at)
		n = snprintf(x->err, x->err_size, "%s:%lu:%lu: %s: ", x->file, at->line, at->column, p ? p : "?");
	else
		n = snprintf(x->err, x->err_size, "%s: %s: ", x->file, p ? p : "?");
	free(p);
	if (n >= 0 && (size_t)n < x->err_size)
		vsnprintf(x->err + n, x->err_size - (size_t)n, fmt, ap);
	return MAPPING_E_SYNTAX;
}

static int fail_at(lctx *x, const jsonloc_pos *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(lctx *x, const jsonloc_pos *at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail_at(x, at, fmt, ap);
	va_end(ap);
	return MAPPING_E_SYNTAX;
}

/* The name (or value) position of x->path[0..n). */
static const jsonloc_pos *locate(lctx *x, size_t n, bool value, jsonloc_pos *buf)
{
	jsonloc_pos name, val;

	if (n > x->depth)
		n = x->depth;
	if (jsonloc_find(x->text, x->len, x->path, n, &name, &val) != 0)
		return NULL;
	*buf = value ? val : name;
	return buf;
}

/* An error about the current node, at its name. */
static int fail_here(lctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_here(lctx *x, const char *fmt, ...)
{
	jsonloc_pos buf;
	va_list ap;

	va_start(ap, fmt);
	vfail_at(x, locate(x, x->depth, false, &buf), fmt, ap);
	va_end(ap);
	return MAPPING_E_SYNTAX;
}

/* An error about member key of the current object, at the key. */
static int fail_key(lctx *x, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_key(lctx *x, const char *key, const char *fmt, ...)
{
	jsonloc_pos buf;
	va_list ap;

	push_key(x, key);
	va_start(ap, fmt);
	vfail_at(x, locate(x, x->depth, false, &buf), fmt, ap);
	va_end(ap);
	pop(x);
	return MAPPING_E_SYNTAX;
}

/* A required member that is not there: at the '{' of the current object. */
static int fail_missing(lctx *x, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_missing(lctx *x, const char *key, const char *fmt, ...)
{
	jsonloc_pos buf;
	va_list ap;

	push_key(x, key);
	va_start(ap, fmt);
	vfail_at(x, locate(x, x->depth - 1, true, &buf), fmt, ap);
	va_end(ap);
	pop(x);
	return MAPPING_E_SYNTAX;
}

/*
 * The position of byte off of the decoded string value of member key:
 * the raw text is walked from the opening quote, escapes counted as the
 * characters they take in the file (a string holds no raw newline).
 */
static const jsonloc_pos *string_char_pos(lctx *x, size_t off, jsonloc_pos *buf)
{
	jsonloc_pos v;

	if (!locate(x, x->depth, true, &v) || v.offset >= x->len || x->text[v.offset] != '"')
		return NULL;
	size_t i = v.offset + 1, dec = 0;
	unsigned long col = v.column + 1;
	while (dec < off && i < x->len && x->text[i] != '"') {
		unsigned char c = (unsigned char)x->text[i];
		if (c == '\\' && i + 1 < x->len && x->text[i + 1] == 'u') {
			unsigned cp = (unsigned)strtoul((char[5]){ x->text[i + 2], x->text[i + 3], x->text[i + 4],
								   x->text[i + 5], 0 },
							 NULL, 16);
			if (cp >= 0xd800 && cp < 0xdc00) {
				dec += 4;
				i += 12;
				col += 12;
			} else {
				dec += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
				i += 6;
				col += 6;
			}
		} else if (c == '\\') {
			dec++;
			i += 2;
			col += 2;
		} else {
			dec++;
			i++;
			if ((c & 0xc0) != 0x80)
				col++;
		}
	}
	*buf = v;
	buf->column = col;
	buf->offset = i;
	return buf;
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
 * A string from the mapping file shown in a message: quoted, control
 * characters and quotes escaped, cut with "..." to fit. Mapping files hold
 * no PHI and no secrets (the key is in its own file).
 */
static const char *show(const char *s, char *out, size_t size)
{
	size_t o = 0;
	const size_t room = size - 5;

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

/* ---- object shape ---------------------------------------------------------- */

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

/* Every member of obj is one of allowed; other lists keys that exist but
 * not in this variant, other_why says why they are refused. */
static int check_keys(lctx *x, const json_t *obj, const char *const *allowed, const char *const *other,
		      const char *other_why)
{
	const char *key;
	json_t *v;
	char list[512];

	json_object_foreach((json_t *)obj, key, v) {
		if (name_in(key, allowed))
			continue;
		names_join(allowed, list, sizeof(list));
		if (other && name_in(key, other))
			return fail_key(x, key, "%s", other_why);
		return fail_key(x, key, "unknown key (allowed: %s)", list);
	}
	return 0;
}

static int get_object(lctx *x, const json_t *parent, const char *key, bool required, json_t **out)
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

static bool has_control(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

/* A non-empty string without control characters (borrowed); NULL when
 * absent and !required. */
static int get_str(lctx *x, const json_t *parent, const char *key, bool required, const char *what, const char **out)
{
	json_t *v = json_object_get(parent, key);

	*out = NULL;
	if (!v)
		return required ? fail_missing(x, key, "required key is missing") : 0;
	if (!json_is_string(v))
		return fail_key(x, key, "expected %s, got %s", what, json_kind(v));
	if (json_string_length(v) == 0)
		return fail_key(x, key, "expected %s, got an empty string", what);
	if (has_control(json_string_value(v), json_string_length(v)))
		return fail_key(x, key, "must not contain control characters");
	*out = json_string_value(v);
	return 0;
}

static int dup_str(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

/* One of words; *out its index, or def when absent. */
static int get_word(lctx *x, const json_t *parent, const char *key, const char *const *words, int def, int *out)
{
	json_t *v = json_object_get(parent, key);
	char list[256], shown[96];
	size_t o = 0;

	*out = def;
	if (!v)
		return 0;
	for (size_t i = 0; words[i]; i++) {
		int n = snprintf(list + o, sizeof(list) - o, "%s\"%s\"", i == 0 ? "" : words[i + 1] ? ", " : " or ",
				 words[i]);
		if (n < 0 || (size_t)n >= sizeof(list) - o)
			break;
		o += (size_t)n;
	}
	if (!json_is_string(v))
		return fail_key(x, key, "expected %s, got %s", list, json_kind(v));
	for (size_t i = 0; words[i]; i++) {
		if (strcmp(json_string_value(v), words[i]) == 0) {
			*out = (int)i;
			return 0;
		}
	}
	return fail_key(x, key, "expected %s, got %s", list, show(json_string_value(v), shown, sizeof(shown)));
}

static int get_comment(lctx *x, const json_t *obj)
{
	json_t *v = json_object_get(obj, "comment");

	if (v && !json_is_string(v))
		return fail_key(x, "comment", "expected a string, got %s", json_kind(v));
	return 0;
}

/* ---- names -------------------------------------------------------------------- */

static bool lower_name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

static bool event_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 100)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

static bool resource_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 2 || n > 64 || !(s[0] >= 'A' && s[0] <= 'Z'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z')))
			return false;
	return true;
}

static bool word_ok(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

/* ---- pieces --------------------------------------------------------------------- */

/* The string at the current path compiled as a value path. */
static int compile_here(lctx *x, const char *s, fhirpath **out)
{
	const char *msg = NULL;
	size_t off = 0;
	jsonloc_pos buf;
	int r;

	r = fhirpath_parse(s, out, &off, &msg);
	if (r > 0)
		return fail_at(x, string_char_pos(x, off, &buf), "%s (at character %zu of the path)", msg, off + 1);
	if (r < 0)
		return r;
	if (fhirpath_uses_mrn_system(*out) && !x->env->mrn_system) {
		fhirpath_free(*out);
		*out = NULL;
		return fail_here(x, "uses %%mrn_system, but fhir.mrn_system is not configured");
	}
	return 0;
}

/* A value path (member key of obj), compiled into *out. */
static int get_path(lctx *x, const json_t *obj, const char *key, bool required, fhirpath **out)
{
	const char *s;
	int r;

	*out = NULL;
	if ((r = get_str(x, obj, key, required, "a value path (a string)", &s)) || !s)
		return r;
	push_key(x, key);
	r = compile_here(x, s, out);
	pop(x);
	return r;
}

/* "value": a path, or an array of alternative paths (at most 8). */
static int get_value_paths(lctx *x, const json_t *spec, bool required, mfield *f)
{
	json_t *v = json_object_get(spec, "value"), *e;
	size_t i;
	int r;

	if (!v || json_is_string(v)) {
		f->value = calloc(1, sizeof(fhirpath *));
		if (!f->value)
			return -ENOMEM;
		if ((r = get_path(x, spec, "value", required, &f->value[0])))
			return r;
		f->n_value = f->value[0] ? 1 : 0;
		return 0;
	}
	if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 8)
		return fail_key(x, "value", "expected a value path or an array of 1 to 8 alternative paths, got %s",
				json_is_array(v) ? "an array of another size" : json_kind(v));
	f->value = calloc(json_array_size(v), sizeof(fhirpath *));
	if (!f->value)
		return -ENOMEM;
	push_key(x, "value");
	json_array_foreach(v, i, e) {
		push_index(x, i);
		if (!json_is_string(e))
			return fail_here(x, "expected a value path (a string), got %s", json_kind(e));
		if (json_string_length(e) == 0 || has_control(json_string_value(e), json_string_length(e)))
			return fail_here(x, "expected a value path (a non-empty string without control characters)");
		f->n_value++;
		if ((r = compile_here(x, json_string_value(e), &f->value[i])))
			return r;
		pop(x);
	}
	pop(x);
	return 0;
}

/* An array of non-empty strings (member key), each passed to cb. */
static int get_str_list(lctx *x, const json_t *obj, const char *key, size_t *n_out,
			int (*cb)(lctx *x, const char *s, size_t i, void *ud), void *ud)
{
	json_t *a = json_object_get(obj, key);
	int r = 0;

	*n_out = 0;
	if (!a)
		return 0;
	if (!json_is_array(a))
		return fail_key(x, key, "expected an array of strings, got %s", json_kind(a));
	if (json_array_size(a) == 0)
		return fail_key(x, key, "must list at least one value");
	push_key(x, key);
	for (size_t i = 0; i < json_array_size(a) && !r; i++) {
		json_t *v = json_array_get(a, i);
		push_index(x, i);
		if (!json_is_string(v))
			r = fail_here(x, "expected a string, got %s", json_kind(v));
		else if (json_string_length(v) == 0)
			r = fail_here(x, "expected a non-empty string");
		else if (has_control(json_string_value(v), json_string_length(v)))
			r = fail_here(x, "must not contain control characters");
		else
			r = cb(x, json_string_value(v), i, ud);
		pop(x);
	}
	pop(x);
	if (!r)
		*n_out = json_array_size(a);
	return r;
}

/* "system|code", "code", "system|", "|code" into tokens[i]. */
static int token_cb(lctx *x, const char *s, size_t i, void *ud)
{
	mtoken *t = &((mtoken *)ud)[i];
	const char *bar = strchr(s, '|');

	if (!bar)
		return dup_str(s, &t->code);
	if (bar == s && !bar[1])
		return fail_here(x, "\"|\" alone matches nothing (give system|code, code, system| or |code)");
	t->system = strndup(s, (size_t)(bar - s));
	if (!t->system)
		return -ENOMEM;
	return bar[1] ? dup_str(bar + 1, &t->code) : 0;
}

static int status_cb(lctx *x, const char *s, size_t i, void *ud)
{
	return dup_str(s, &((char **)ud)[i]);
}

static void filter_deinit(mfilter *f)
{
	for (size_t i = 0; f->code && i < f->n_code; i++) {
		free(f->code[i].system);
		free(f->code[i].code);
	}
	for (size_t i = 0; f->category && i < f->n_category; i++) {
		free(f->category[i].system);
		free(f->category[i].code);
	}
	for (size_t i = 0; f->status && i < f->n_status; i++)
		free(f->status[i]);
	free(f->code);
	free(f->category);
	free(f->status);
	*f = (mfilter){ 0 };
}

/*
 * One list of a filter. It is allocated (zeroed, n set) before it is
 * filled, so that filter_deinit frees a half-filled list.
 */
static int get_filter_list(lctx *x, const json_t *f, const char *key, size_t elem, void **list, size_t *n,
			   int (*cb)(lctx *x, const char *s, size_t i, void *ud))
{
	json_t *a = json_object_get(f, key);
	size_t got;

	if (json_is_array(a) && json_array_size(a)) {
		*list = calloc(json_array_size(a), elem);
		if (!*list)
			return -ENOMEM;
		*n = json_array_size(a);
	}
	return get_str_list(x, f, key, &got, cb, *list);
}

/* "filter": { "code": [...], "category": [...], "status": [...] }. */
static int get_filter(lctx *x, const json_t *obj, mfilter *flt)
{
	static const char *const keys[] = { "code", "category", "status", "comment", NULL };
	json_t *f;
	int r;

	if ((r = get_object(x, obj, "filter", false, &f)) || !f)
		return r;
	push_key(x, "filter");
	if ((r = check_keys(x, f, keys, NULL, NULL)) || (r = get_comment(x, f)) ||
	    (r = get_filter_list(x, f, "code", sizeof(mtoken), (void **)&flt->code, &flt->n_code, token_cb)) ||
	    (r = get_filter_list(x, f, "category", sizeof(mtoken), (void **)&flt->category, &flt->n_category,
				 token_cb)) ||
	    (r = get_filter_list(x, f, "status", sizeof(char *), (void **)&flt->status, &flt->n_status, status_cb)))
		return r;
	pop(x);
	return 0;
}

/* "-1d", "+2d", "0", "+12h", "-30m" into microseconds. */
static bool window_offset(const char *s, int64_t *us)
{
	int64_t v = 0, unit;
	size_t i = 1;

	if (strcmp(s, "0") == 0) {
		*us = 0;
		return true;
	}
	if (s[0] != '+' && s[0] != '-')
		return false;
	if (!(s[i] >= '0' && s[i] <= '9'))
		return false;
	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		v = v * 10 + (s[i] - '0');
		if (v > WINDOW_MAX_MINUTES)
			return false;
	}
	switch (s[i]) {
	case 'd': unit = 24 * 60; break;
	case 'h': unit = 60; break;
	case 'm': unit = 1; break;
	default: return false;
	}
	if (s[i + 1] || v * unit > WINDOW_MAX_MINUTES)
		return false;
	*us = (s[0] == '-' ? -1 : 1) * v * unit * 60 * 1000000;
	return true;
}

static size_t anchor_find(const mapping *m, const char *name)
{
	for (size_t i = 0; i < m->n_anchors; i++)
		if (strcmp(m->anchors[i].name, name) == 0)
			return i;
	return SIZE_MAX;
}

static void anchor_names(const mapping *m, char *out, size_t size)
{
	size_t o = 0;

	snprintf(out, size, "none are defined");
	for (size_t i = 0; i < m->n_anchors; i++) {
		int n = snprintf(out + o, size - o, "%s%s", i ? ", " : "anchors: ", m->anchors[i].name);
		if (n < 0 || (size_t)n >= size - o)
			return;
		o += (size_t)n;
	}
}

static int get_anchor_ref(lctx *x, const json_t *obj, const char *key, size_t *out)
{
	const char *s;
	char shown[96], list[256];
	int r;

	if ((r = get_str(x, obj, key, true, "an anchor name", &s)))
		return r;
	*out = anchor_find(x->m, s);
	if (*out == SIZE_MAX) {
		anchor_names(x->m, list, sizeof(list));
		return fail_key(x, key, "no anchor named %s (%s)", show(s, shown, sizeof(shown)), list);
	}
	return 0;
}

static int get_window(lctx *x, const json_t *obj, mrule *rl)
{
	static const char *const keys[] = { "anchor", "from", "to", "comment", NULL };
	const char *from, *to;
	char shown[96];
	json_t *w;
	int r;

	if ((r = get_object(x, obj, "window", false, &w)) || !w)
		return r;
	push_key(x, "window");
	if ((r = check_keys(x, w, keys, NULL, NULL)) || (r = get_comment(x, w)) ||
	    (r = get_anchor_ref(x, w, "anchor", &rl->win_anchor)) ||
	    (r = get_str(x, w, "from", true, "an offset like \"-1d\"", &from)) ||
	    (r = get_str(x, w, "to", true, "an offset like \"+1d\"", &to)))
		return r;
	if (!window_offset(from, &rl->win_from))
		return fail_key(x, "from", "%s is not an offset (\"0\", or a sign, a number and d, h or m: \"-1d\", "
			"\"+12h\", \"-30m\"; at most 100 years)",
				show(from, shown, sizeof(shown)));
	if (!window_offset(to, &rl->win_to))
		return fail_key(x, "to", "%s is not an offset (\"0\", or a sign, a number and d, h or m: \"-1d\", "
			"\"+12h\", \"-30m\"; at most 100 years)",
				show(to, shown, sizeof(shown)));
	if (rl->win_from > rl->win_to)
		return fail_key(x, "to", "the window ends before it starts (from %s)",
				show(from, shown, sizeof(shown)));
	rl->window = true;
	pop(x);
	return 0;
}

/* ---- fields ---------------------------------------------------------------------- */

static const char *const transforms[] = { "string", "number", "round", "date", "datetime", "datetime_seconds", NULL };

static int get_map(lctx *x, const json_t *spec, mfield *f)
{
	const char *key;
	json_t *map, *v;
	int r;

	if ((r = get_object(x, spec, "map", false, &map)) || !map)
		return r;
	if (json_object_size(map) == 0)
		return fail_key(x, "map", "must map at least one code");
	f->map_from = calloc(json_object_size(map), sizeof(char *));
	f->map_to = calloc(json_object_size(map), sizeof(char *));
	if (!f->map_from || !f->map_to)
		return -ENOMEM;
	push_key(x, "map");
	json_object_foreach(map, key, v) {
		if (!json_is_string(v))
			return fail_key(x, key, "expected a REDCap code (a string), got %s", json_kind(v));
		if (json_string_length(v) == 0 || has_control(json_string_value(v), json_string_length(v)))
			return fail_key(x, key, "expected a REDCap code (a non-empty string without control "
				"characters)");
		f->map_from[f->n_map] = strdup(key);
		f->map_to[f->n_map] = strdup(json_string_value(v));
		f->n_map++;
		if (!f->map_from[f->n_map - 1] || !f->map_to[f->n_map - 1])
			return -ENOMEM;
	}
	pop(x);
	return 0;
}

static int get_field(lctx *x, const char *name, const json_t *spec, mrule *rl, mfield *f)
{
	static const char *const keys[] = { "value", "unit", "transform", "map", "default", "comment", NULL };
	const manchor *a = rl->anchor != SIZE_MAX ? &x->m->anchors[rl->anchor] : NULL;
	char shown[96];
	const char *s;
	int r, t;

	if ((r = dup_str(name, &f->name)))
		return r;
	if (!lower_name_ok(name, 100))
		return fail_here(x, "%s is not a REDCap field name (lower-case letters, digits and '_', starting with "
			"a letter; at most 100)",
				 show(name, shown, sizeof(shown)));
	if (!json_is_object(spec))
		return fail_here(x, "expected an object (value, unit, transform, map, default), got %s",
				 json_kind(spec));
	if ((r = check_keys(x, spec, keys, NULL, NULL)) || (r = get_comment(x, spec)))
		return r;
	if (a && a->field && json_object_get(spec, "value"))
		return fail_key(x, "value", "not used with an anchor typed into REDCap (the field takes its value)");
	if ((r = get_value_paths(x, spec, !a, f)))
		return r;
	if ((r = get_str(x, spec, "unit", false, "a unit (a string)", &s)) || (r = dup_str(s, &f->unit)))
		return r;
	if (f->unit && !f->n_value)
		return fail_key(x, "unit", "needs a value path (the unit belongs to the Quantity that holds the "
			"value)");
	if ((r = get_word(x, spec, "transform", transforms, MT_STRING, &t)))
		return r;
	f->transform = (mtransform)t;
	f->transform_given = json_object_get(spec, "transform") != NULL;
	if ((r = get_map(x, spec, f)))
		return r;
	if ((r = get_str(x, spec, "default", false, "a REDCap code (a string)", &s)) || (r = dup_str(s, &f->def)))
		return r;
	if (f->def && !f->n_map)
		return fail_key(x, "default", "needs a map (the default is the code for values the map does not name)");
	if (f->n_map && f->transform_given)
		return fail_key(x, "transform", "not used with a map (the map gives the value)");
	return 0;
}

static int get_fields(lctx *x, const json_t *obj, mrule *rl)
{
	const char *key;
	json_t *o, *v;
	int r;

	if ((r = get_object(x, obj, "fields", true, &o)))
		return r;
	if (json_object_size(o) == 0)
		return fail_key(x, "fields", "must name at least one REDCap field");
	rl->fields = calloc(json_object_size(o), sizeof(mfield));
	if (!rl->fields)
		return -ENOMEM;
	push_key(x, "fields");
	json_object_foreach(o, key, v) {
		push_key(x, key);
		rl->n_fields++;
		if ((r = get_field(x, key, v, rl, &rl->fields[rl->n_fields - 1])))
			return r;
		pop(x);
	}
	pop(x);
	return 0;
}

/* ---- rules ------------------------------------------------------------------------ */

static const char *const selects[] = { "", "FIRST", "LAST", "MIN", "MAX", "NEAR", NULL };

/* The combinations a rule may not have (its members are loaded). */
static int rule_combination(lctx *x, const json_t *o, mrule *rl)
{
	bool needs_time = rl->select == MS_FIRST || rl->select == MS_LAST || rl->select == MS_NEAR;

	if (rl->window && !rl->time)
		return fail_key(x, "window", "needs \"time\" (the path to when the resource happened)");
	if (needs_time && !rl->time)
		return fail_key(x, "select", "%s needs \"time\" (the path to when the resource happened)",
				selects[rl->select]);
	if (rl->select == MS_NEAR && !rl->window)
		return fail_key(x, "select", "NEAR needs a window (its anchor is what NEAR is near to)");
	if ((rl->select == MS_MIN || rl->select == MS_MAX) && rl->n_fields != 1)
		return fail_key(x, "select", "%s needs exactly one field (the number compared), got %zu",
				selects[rl->select], rl->n_fields);
	if ((rl->select == MS_MIN || rl->select == MS_MAX) && rl->fields[0].n_map)
		return fail_key(x, "select", "%s compares the field's value as a number: the field cannot have a map",
				selects[rl->select]);
	if (rl->instrument && rl->select != MS_NONE)
		return fail_key(x, "select", "not used with \"instrument\" (a repeating rule makes one instance per "
			"resource)");
	if (!rl->instrument && rl->resource && rl->select == MS_NONE && strcmp(rl->resource, "Patient") != 0)
		return fail_missing(x, "select",
				    "a non-repeating rule on %s needs select (FIRST, LAST, MIN, MAX or NEAR): one "
					"resource fills the fields",
				    rl->resource);
	(void)o;
	return 0;
}

static int get_anchor_rule(lctx *x, const json_t *o, mrule *rl)
{
	static const char *const not_here[] = { "resource", "filter", "time", "window", "select", "instrument", NULL };

	for (size_t i = 0; not_here[i]; i++)
		if (json_object_get(o, not_here[i]))
			return fail_key(x, not_here[i], "not used in an anchor rule (its fields take the anchor's "
				"value)");
	return get_anchor_ref(x, o, "anchor", &rl->anchor);
}

static int get_resource_rule(lctx *x, const json_t *o, mrule *rl)
{
	char shown[96];
	const char *s;
	int r, sel;

	if ((r = get_str(x, o, "resource", true, "a resource type name", &s)))
		return r;
	if (!resource_name_ok(s))
		return fail_key(x, "resource", "%s is not a resource type name (like \"Observation\": "
			"^[A-Z][A-Za-z]{1,63}$)",
				show(s, shown, sizeof(shown)));
	if ((r = dup_str(s, &rl->resource)) || (r = get_filter(x, o, &rl->filter)) ||
	    (r = get_path(x, o, "time", false, &rl->time)) || (r = get_window(x, o, rl)) ||
	    (r = get_word(x, o, "select", selects + 1, -1, &sel)))
		return r;
	rl->select = (mselect)(sel + 1);
	return 0;
}

static int get_rule(lctx *x, const json_t *o, size_t i, mrule *rl)
{
	static const char *const keys[] = { "name", "resource", "anchor", "filter", "event", "instrument", "time",
					    "window", "select", "review", "fields", "comment", NULL };
	char shown[96];
	const char *s;
	json_t *v;
	int r;

	rl->anchor = SIZE_MAX;
	rl->win_anchor = SIZE_MAX;
	if (!json_is_object(o))
		return fail_here(x, "expected a rule (an object), got %s", json_kind(o));
	if ((r = check_keys(x, o, keys, NULL, NULL)) || (r = get_comment(x, o)) ||
	    (r = get_str(x, o, "name", false, "a rule name", &s)))
		return r;
	if (s && strlen(s) > 100)
		return fail_key(x, "name", "longer than 100 bytes");
	if (s) {
		if ((r = dup_str(s, &rl->name)))
			return r;
	} else if (asprintf(&rl->name, "rules[%zu]", i) < 0) {
		rl->name = NULL;
		return -ENOMEM;
	}
	for (size_t j = 0; j < i; j++) {
		if (strcmp(x->m->rules[j].name, rl->name) != 0)
			continue;
		if (s)
			return fail_key(x, "name", "the rule name %s is used twice (first at rules[%zu])",
					show(rl->name, shown, sizeof(shown)), j);
		return fail_here(x, "the default name %s is taken by rules[%zu]", show(rl->name, shown, sizeof(shown)),
				 j);
	}
	if (!json_object_get(o, "resource") == !json_object_get(o, "anchor"))
		return fail_here(x, "give \"resource\" (a FHIR resource type) or \"anchor\" (an anchor's name), "
			"exactly one");
	r = json_object_get(o, "anchor") ? get_anchor_rule(x, o, rl) : get_resource_rule(x, o, rl);
	if (r)
		return r;
	if ((r = get_str(x, o, "event", false, "a unique event name", &s)) || (r = dup_str(s, &rl->event)))
		return r;
	if (s && !event_name_ok(s))
		return fail_key(x, "event", "%s is not a unique event name (like \"baseline_arm_1\")",
				show(s, shown, sizeof(shown)));
	if ((r = get_str(x, o, "instrument", false, "an instrument name", &s)) || (r = dup_str(s, &rl->instrument)))
		return r;
	if (s && !lower_name_ok(s, 64))
		return fail_key(x, "instrument", "%s is not an instrument name (like \"vitals\")",
				show(s, shown, sizeof(shown)));
	v = json_object_get(o, "review");
	if (v && !json_is_boolean(v))
		return fail_key(x, "review", "expected true or false, got %s", json_kind(v));
	rl->review = json_is_true(v);
	if ((r = get_fields(x, o, rl)))
		return r;
	return rule_combination(x, o, rl);
}

/* A field of a non-repeating form is filled by one rule only (per event). */
static int unique_fields(lctx *x, size_t i)
{
	const mrule *rl = &x->m->rules[i];
	char shown[96];

	if (rl->instrument)
		return 0;
	for (size_t j = 0; j < i; j++) {
		const mrule *o = &x->m->rules[j];
		if (o->instrument || !rl->event != !o->event || (rl->event && strcmp(rl->event, o->event) != 0))
			continue;
		for (size_t k = 0; k < rl->n_fields; k++) {
			for (size_t l = 0; l < o->n_fields; l++) {
				if (strcmp(rl->fields[k].name, o->fields[l].name) != 0)
					continue;
				push_key(x, "fields");
				const char *same = rl->event ? " in the same event" : "";
				int r = fail_key(x, rl->fields[k].name, "already filled by rules[%zu] %s%s", j,
						 show(o->name, shown, sizeof(shown)), same);
				pop(x);
				return r;
			}
		}
	}
	return 0;
}

static int load_rules(lctx *x, const json_t *root)
{
	json_t *a = json_object_get(root, "rules");
	int r;

	if (!a)
		return fail_missing(x, "rules", "required key is missing");
	if (!json_is_array(a))
		return fail_key(x, "rules", "expected an array of rules, got %s", json_kind(a));
	if (json_array_size(a) == 0)
		return fail_key(x, "rules", "must hold at least one rule");
	x->m->rules = calloc(json_array_size(a), sizeof(mrule));
	if (!x->m->rules)
		return -ENOMEM;
	push_key(x, "rules");
	for (size_t i = 0; i < json_array_size(a); i++) {
		push_index(x, i);
		x->m->n_rules++;
		if ((r = get_rule(x, json_array_get(a, i), i, &x->m->rules[i])) || (r = unique_fields(x, i)))
			return r;
		pop(x);
	}
	pop(x);
	return 0;
}

/* ---- anchors ----------------------------------------------------------------------- */

static int get_anchor(lctx *x, const char *name, const json_t *o, manchor *a)
{
	static const char *const k_field[] = { "field", "comment", NULL };
	static const char *const k_fhir[] = { "resource", "time", "select", "filter", "comment", NULL };
	static const char *const first_last[] = { "FIRST", "LAST", NULL };
	char shown[96];
	const char *s;
	int r, sel;

	if ((r = dup_str(name, &a->name)))
		return r;
	if (!word_ok(name, 1, 64))
		return fail_here(x, "%s is not an anchor name (letters, digits, '_' and '-'; at most 64)",
				 show(name, shown, sizeof(shown)));
	if (!json_is_object(o))
		return fail_here(x, "expected an anchor (an object), got %s", json_kind(o));
	if (get_comment(x, o))
		return MAPPING_E_SYNTAX;
	if (json_object_get(o, "field")) {
		if ((r = check_keys(x, o, k_field, k_fhir, "not used with an anchor typed into REDCap (\"field\")")) ||
		    (r = get_str(x, o, "field", true, "a REDCap field name", &s)) || (r = dup_str(s, &a->field)))
			return r;
		if (!lower_name_ok(s, 100))
			return fail_key(x, "field", "%s is not a REDCap field name", show(s, shown, sizeof(shown)));
		return 0;
	}
	if ((r = check_keys(x, o, k_fhir, NULL, NULL)) ||
	    (r = get_str(x, o, "resource", true, "a resource type name", &s)))
		return r;
	if (!resource_name_ok(s))
		return fail_key(x, "resource", "%s is not a resource type name (like \"Encounter\": "
			"^[A-Z][A-Za-z]{1,63}$)",
				show(s, shown, sizeof(shown)));
	if ((r = dup_str(s, &a->resource)) || (r = get_path(x, o, "time", true, &a->time)) ||
	    (r = get_word(x, o, "select", first_last, 0, &sel)) || (r = get_filter(x, o, &a->filter)))
		return r;
	a->select = sel == 0 ? MS_FIRST : MS_LAST;
	return 0;
}

static int load_anchors(lctx *x, const json_t *root)
{
	const char *key;
	json_t *o, *v;
	int r;

	if ((r = get_object(x, root, "anchors", false, &o)) || !o)
		return r;
	x->m->anchors = calloc(json_object_size(o) ? json_object_size(o) : 1, sizeof(manchor));
	if (!x->m->anchors)
		return -ENOMEM;
	push_key(x, "anchors");
	json_object_foreach(o, key, v) {
		push_key(x, key);
		x->m->n_anchors++;
		if ((r = get_anchor(x, key, v, &x->m->anchors[x->m->n_anchors - 1])))
			return r;
		pop(x);
	}
	pop(x);
	return 0;
}

/* ---- record id ------------------------------------------------------------------------ */

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup("");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static int read_key(lctx *x, const char *file)
{
	char *path = NULL, msg[512];
	int r = 0;

	if (file[0] == '/' || !x->dir[0])
		path = strdup(file);
	else if (asprintf(&path, "%s%s%s", x->dir, x->dir[strlen(x->dir) - 1] == '/' ? "" : "/", file) < 0)
		path = NULL;
	if (!path)
		return -ENOMEM;
	msg[0] = '\0';
	x->m->key = secret_read_file(path, &x->m->key_len, msg, sizeof(msg));
	if (!x->m->key) {
		fail_key(x, "key_file", "%s", msg);
		r = MAPPING_E_FILE;
	} else if (x->m->key_len < MAPPING_KEY_MIN) {
		fail_key(x, "key_file", "%s: the key must hold at least %d bytes", path, MAPPING_KEY_MIN);
		r = MAPPING_E_FILE;
	}
	free(path);
	return r;
}

static int load_record_id(lctx *x, const json_t *root)
{
	static const char *const k_mrn[] = { "from", "comment", NULL };
	static const char *const k_hmac[] = { "from", "key_file", "prefix", "hex_digits", "comment", NULL };
	static const char *const froms[] = { "mrn", "hmac", NULL };
	char shown[96];
	const char *s;
	json_t *o, *v;
	int r, from;

	if ((r = get_object(x, root, "record_id", true, &o)))
		return r;
	push_key(x, "record_id");
	if ((r = get_comment(x, o)))
		return r;
	if (!json_object_get(o, "from"))
		return fail_missing(x, "from", "required key is missing");
	if ((r = get_word(x, o, "from", froms, 0, &from)))
		return r;
	x->m->hmac = from == 1;
	if (!x->m->hmac)
		r = check_keys(x, o, k_mrn, k_hmac, "not used with from \"mrn\" (the record id is the MRN)");
	else
		r = check_keys(x, o, k_hmac, NULL, NULL);
	if (r)
		return r;
	if (!x->env->mrn_system)
		return fail_here(x, "needs fhir.mrn_system in the configuration (the record id is made from the MRN)");
	if (!x->m->hmac) {
		pop(x);
		return 0;
	}
	v = json_object_get(o, "prefix");
	if (v && !json_is_string(v))
		return fail_key(x, "prefix", "expected a prefix (a string), got %s", json_kind(v));
	s = v ? json_string_value(v) : "";
	if (!word_ok(s, 0, 16))
		return fail_key(x, "prefix", "%s is not a prefix (letters, digits, '_' and '-'; at most 16)",
				show(s, shown, sizeof(shown)));
	if ((r = dup_str(s, &x->m->prefix)))
		return r;
	v = json_object_get(o, "hex_digits");
	x->m->hex_digits = 16;
	if (v && !json_is_integer(v))
		return fail_key(x, "hex_digits", "expected an integer from 8 to 64, got %s", json_kind(v));
	if (v && (json_integer_value(v) < 8 || json_integer_value(v) > 64))
		return fail_key(x, "hex_digits", "expected an integer from 8 to 64, got %" JSON_INTEGER_FORMAT,
				json_integer_value(v));
	if (v)
		x->m->hex_digits = (unsigned)json_integer_value(v);
	if ((r = get_str(x, o, "key_file", true, "a file path (a string)", &s)) || (r = read_key(x, s)))
		return r;
	pop(x);
	return 0;
}

/* ---- lists for the caller ----------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_unique(char ***v, size_t *n, const char *s)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i], s) == 0)
			return 0;
	char *d = strdup(s);
	if (!d)
		return -ENOMEM;
	(*v)[(*n)++] = d;
	return 0;
}

static int make_lists(mapping *m)
{
	int r;

	m->types = calloc(m->n_rules + m->n_anchors + 1, sizeof(char *));
	m->anchor_fields = calloc(m->n_anchors + 1, sizeof(char *));
	if (!m->types || !m->anchor_fields)
		return -ENOMEM;
	if ((r = add_unique(&m->types, &m->n_types, "Patient")))
		return r;
	for (size_t i = 0; i < m->n_rules; i++)
		if (m->rules[i].resource && (r = add_unique(&m->types, &m->n_types, m->rules[i].resource)))
			return r;
	for (size_t i = 0; i < m->n_anchors; i++) {
		manchor *a = &m->anchors[i];
		if (a->resource && (r = add_unique(&m->types, &m->n_types, a->resource)))
			return r;
		if (!a->field)
			continue;
		if ((r = add_unique(&m->anchor_fields, &m->n_anchor_fields, a->field)))
			return r;
		for (a->field_index = 0; strcmp(m->anchor_fields[a->field_index], a->field) != 0; a->field_index++)
			;
	}
	qsort(m->types, m->n_types, sizeof(char *), cmp_str);
	return 0;
}

/* ---- file ------------------------------------------------------------------------------- */

static int read_file(const char *path, char **out, size_t *len, char *err, size_t err_size)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		err_printf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
		return MAPPING_E_FILE;
	}
	if (fstat(fd, &st) != 0) {
		err_printf(err, err_size, "%s: cannot stat: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		err_printf(err, err_size, "%s: not a regular file", path);
		goto fail;
	}
	if (st.st_size < 0 || st.st_size > MAPPING_FILE_MAX) {
		err_printf(err, err_size, "%s: larger than %d bytes", path, MAPPING_FILE_MAX);
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
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
	return MAPPING_E_FILE;
}

/* With an HMAC study-id key, the digest covers the key too (through a MAC
 * of a fixed label, so the stored digest reveals nothing of the key): a
 * new key renames every record, and everything must be curated again. */
static int digest_with_key(mapping *m)
{
	static const char label[] = "fhir-redcap-bridge mapping digest";
	unsigned char tag[EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
	unsigned int tn = 0, n = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = c && HMAC(EVP_sha256(), m->key, (int)m->key_len, (const unsigned char *)label, sizeof(label) - 1,
			   tag, &tn) &&
		 EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(c, m->text, m->len) == 1 &&
		 EVP_DigestUpdate(c, tag, tn) == 1 && EVP_DigestFinal_ex(c, md, &n) == 1 && n == 32;
	EVP_MD_CTX_free(c);
	OPENSSL_cleanse(tag, sizeof(tag));
	if (!ok)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++)
		snprintf(m->digest + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static int digest_hex(const char *text, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (EVP_Digest(text, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static int load_root(lctx *x)
{
	static const char *const keys[] = { "format", "record_id", "anchors", "rules", "comment", NULL };
	char shown[96];
	json_error_t jerr;
	json_t *root;
	const char *s;
	int r;

	root = json_loadb(x->text, x->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		err_printf(x->err, x->err_size, "%s:%d:%d: %s", x->file, jerr.line, jerr.column, jerr.text);
		return MAPPING_E_SYNTAX;
	}
	if (!json_is_object(root)) {
		r = fail_here(x, "expected an object, got %s", json_kind(root));
		goto out;
	}
	if ((r = check_keys(x, root, keys, NULL, NULL)) || (r = get_comment(x, root)) ||
	    (r = get_str(x, root, "format", true, "\"" MAPPING_FORMAT "\"", &s)))
		goto out;
	if (strcmp(s, MAPPING_FORMAT) != 0) {
		r = fail_key(x, "format", "expected \"" MAPPING_FORMAT "\", got %s", show(s, shown, sizeof(shown)));
		goto out;
	}
	if ((r = load_record_id(x, root)) || (r = load_anchors(x, root)) || (r = load_rules(x, root)) ||
	    (r = make_lists(x->m)))
		goto out;
out:
	json_decref(root);
	return r;
}

int mapping_load(mapping **out, const char *path, const mapping_env *env, char *err, size_t err_size)
{
	lctx x = { .file = path, .err = err, .err_size = err_size, .env = env };
	int r;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (err && err_size)
		err[0] = '\0';
	if (!path || !*path || !env)
		return -EINVAL;
	x.m = calloc(1, sizeof(*x.m));
	if (!x.m)
		return -ENOMEM;
	x.m->local_to_utc = env->local_to_utc;
	x.m->local_ud = env->local_ud;
	if ((r = dup_str(path, &x.m->path)) || (r = dup_str(env->mrn_system, &x.m->mrn_system)))
		goto fail;
	if ((r = read_file(path, &x.m->text, &x.m->len, err, err_size)))
		goto fail;
	x.text = x.m->text;
	x.len = x.m->len;
	x.dir = dir_of(path);
	if (!x.dir || (r = digest_hex(x.text, x.len, x.m->digest))) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = load_root(&x)))
		goto fail;
	if (x.m->key && (r = digest_with_key(x.m)))
		goto fail;
	free(x.dir);
	*out = x.m;
	return 0;
fail:
	if (r == -ENOMEM)
		err_printf(err, err_size, "%s: out of memory", path);
	free(x.dir);
	mapping_free(x.m);
	return r;
}

/* ---- freeing and accessors ------------------------------------------------------------------ */

static void field_deinit(mfield *f)
{
	free(f->name);
	for (size_t i = 0; i < f->n_value; i++)
		fhirpath_free(f->value[i]);
	free(f->value);
	free(f->unit);
	for (size_t i = 0; i < f->n_map; i++) {
		free(f->map_from[i]);
		free(f->map_to[i]);
	}
	free(f->map_from);
	free(f->map_to);
	free(f->def);
}

static void rule_deinit(mrule *rl)
{
	free(rl->name);
	free(rl->resource);
	filter_deinit(&rl->filter);
	free(rl->event);
	free(rl->instrument);
	fhirpath_free(rl->time);
	for (size_t i = 0; i < rl->n_fields; i++)
		field_deinit(&rl->fields[i]);
	free(rl->fields);
}

void mapping_free(mapping *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_rules; i++)
		rule_deinit(&m->rules[i]);
	free(m->rules);
	for (size_t i = 0; i < m->n_anchors; i++) {
		manchor *a = &m->anchors[i];
		free(a->name);
		free(a->field);
		free(a->resource);
		fhirpath_free(a->time);
		filter_deinit(&a->filter);
	}
	free(m->anchors);
	for (size_t i = 0; i < m->n_types; i++)
		free(m->types[i]);
	free(m->types);
	for (size_t i = 0; i < m->n_anchor_fields; i++)
		free(m->anchor_fields[i]);
	free(m->anchor_fields);
	secret_free(m->key);
	free(m->prefix);
	free(m->mrn_system);
	free(m->text);
	free(m->path);
	free(m);
}

const char *mapping_digest(const mapping *m)
{
	return m->digest;
}

size_t mapping_resource_types(const mapping *m, const char *const **types)
{
	*types = (const char *const *)m->types;
	return m->n_types;
}

size_t mapping_redcap_anchor_fields(const mapping *m, const char *const **fields)
{
	*fields = (const char *const *)m->anchor_fields;
	return m->n_anchor_fields;
}

int mapping_locate(const mapping *m, const jsonloc_step *path, size_t n, unsigned long *line, unsigned long *col)
{
	jsonloc_pos at;

	if (jsonloc_find(m->text, m->len, path, n, &at, NULL) != 0)
		return -1;
	*line = at.line;
	*col = at.column;
	return 0;
}

/* ---- MRN and record names ----------------------------------------------------------------------- */

int mapping_patient_mrn(const json_t *patient, const char *mrn_system, char **mrn)
{
	const char *found = NULL;
	json_t *ids, *id;
	size_t i;

	*mrn = NULL;
	if (!mrn_system)
		return MAPPING_NO_MRN;
	ids = json_object_get(patient, "identifier");
	json_array_foreach(ids, i, id) {
		const char *sys = json_string_value(json_object_get(id, "system"));
		const char *val = json_string_value(json_object_get(id, "value"));
		if (!sys || !val || !*val || strcmp(sys, mrn_system) != 0)
			continue;
		if (found && strcmp(found, val) != 0)
			return MAPPING_MRN_CONFLICT;
		found = val;
	}
	if (!found)
		return MAPPING_NO_MRN;
	*mrn = strdup(found);
	return *mrn ? MAPPING_OK : -ENOMEM;
}

char *mapping_record_name(const mapping *m, const char *mrn)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	char *out;

	if (!m->hmac)
		return strdup(mrn);
	if (!HMAC(EVP_sha256(), m->key, (int)m->key_len, (const unsigned char *)mrn, strlen(mrn), md, &n))
		return NULL;
	size_t pl = strlen(m->prefix);
	out = malloc(pl + m->hex_digits + 1);
	if (out) {
		memcpy(out, m->prefix, pl);
		for (unsigned i = 0; i < m->hex_digits; i++)
			out[pl + i] = "0123456789abcdef"[(md[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
		out[pl + m->hex_digits] = '\0';
	}
	OPENSSL_cleanse(md, sizeof(md));
	return out;
}
