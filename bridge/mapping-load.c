/*
 * mapping-load.c — load and validate a mapping file (format in mapping.h
 * and conf/README.md, "Mapping files"), the record id (MRN or HMAC study
 * id), and the small accessors.
 *
 * Like the config loader, it reads and checks the file with jsonstrict
 * (see jsonstrict.h): the first problem ends the load with
 * "file:line:col: key.path: what". A problem inside a value path is placed
 * at the character where the path goes wrong. The mapping is built in
 * place and freed whole on failure.
 */
#include "bridge/mapping-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "bridge/config.h"
#include "bridge/jsonloc.h"
#include "bridge/jsonstrict.h"

#define MAPPING_FORMAT "fhir-redcap-bridge/mapping/1"
#define WINDOW_MAX_MINUTES (36500LL * 24 * 60) /* a hundred years */

/* ---- load context ----------------------------------------------------------- */

typedef struct lctx {
	jsonstrict js;       /* the file, the key path, the message */
	mapping *m;
	const mapping_env *env;
} lctx;

/*
 * The position of byte off of the decoded string value of member key:
 * the raw text is walked from the opening quote, escapes counted as the
 * characters they take in the file (a string holds no raw newline).
 */
static const jsonloc_pos *string_char_pos(lctx *x, size_t off, jsonloc_pos *buf)
{
	const char *text = x->js.text;
	size_t len = x->js.len;
	jsonloc_pos v;

	if (!jsonstrict_locate(&x->js, x->js.depth, true, &v) || v.offset >= len || text[v.offset] != '"')
		return NULL;
	size_t i = v.offset + 1, dec = 0;
	unsigned long col = v.column + 1;
	while (dec < off && i < len && text[i] != '"') {
		unsigned char c = (unsigned char)text[i];
		if (c == '\\' && i + 1 < len && text[i + 1] == 'u') {
			char hex[5] = { text[i + 2], text[i + 3], text[i + 4], text[i + 5], 0 };
			unsigned cp = (unsigned)strtoul(hex, NULL, 16);
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

/* ---- members -------------------------------------------------------------------- */

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
	int r = jsonstrict_get_word(&x->js, parent, key, false, words, out);

	if (!r && *out < 0)
		*out = def;
	return r;
}

static int get_comment(lctx *x, const json_t *obj)
{
	json_t *v = json_object_get(obj, "comment");

	if (v && !json_is_string(v))
		return jsonstrict_fail_key(&x->js, "comment", "expected a string, got %s", jsonstrict_kind(v));
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
		return jsonstrict_fail_at(&x->js, string_char_pos(x, off, &buf), "%s (at character %zu of the path)",
					  msg, off + 1);
	if (r < 0)
		return r;
	if (fhirpath_uses_mrn_system(*out) && !x->env->mrn_system) {
		fhirpath_free(*out);
		*out = NULL;
		return jsonstrict_fail_here(&x->js, "uses %%mrn_system, but fhir.mrn_system is not configured");
	}
	return 0;
}

/* A value path (member key of obj), compiled into *out. */
static int get_path(lctx *x, const json_t *obj, const char *key, bool required, fhirpath **out)
{
	const char *s;
	int r;

	*out = NULL;
	if ((r = jsonstrict_get_str(&x->js, obj, key, required, "a value path (a string)", &s)) || !s)
		return r;
	jsonstrict_push_key(&x->js, key);
	r = compile_here(x, s, out);
	jsonstrict_pop(&x->js);
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
		return jsonstrict_fail_key(&x->js, "value",
					   "expected a value path or an array of 1 to 8 alternative paths, got %s",
					   json_is_array(v) ? "an array of another size" : jsonstrict_kind(v));
	f->value = calloc(json_array_size(v), sizeof(fhirpath *));
	if (!f->value)
		return -ENOMEM;
	jsonstrict_push_key(&x->js, "value");
	json_array_foreach(v, i, e) {
		jsonstrict_push_index(&x->js, i);
		if (!json_is_string(e))
			return jsonstrict_fail_here(&x->js, "expected a value path (a string), got %s",
						    jsonstrict_kind(e));
		if (json_string_length(e) == 0 || jsonstrict_has_control(json_string_value(e), json_string_length(e)))
			return jsonstrict_fail_here(
				&x->js, "expected a value path (a non-empty string without control characters)");
		f->n_value++;
		if ((r = compile_here(x, json_string_value(e), &f->value[i])))
			return r;
		jsonstrict_pop(&x->js);
	}
	jsonstrict_pop(&x->js);
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
		return jsonstrict_fail_key(&x->js, key, "expected an array of strings, got %s", jsonstrict_kind(a));
	if (json_array_size(a) == 0)
		return jsonstrict_fail_key(&x->js, key, "must list at least one value");
	jsonstrict_push_key(&x->js, key);
	for (size_t i = 0; i < json_array_size(a) && !r; i++) {
		json_t *v = json_array_get(a, i);
		jsonstrict_push_index(&x->js, i);
		if (!json_is_string(v))
			r = jsonstrict_fail_here(&x->js, "expected a string, got %s", jsonstrict_kind(v));
		else if (json_string_length(v) == 0)
			r = jsonstrict_fail_here(&x->js, "expected a non-empty string");
		else if (jsonstrict_has_control(json_string_value(v), json_string_length(v)))
			r = jsonstrict_fail_here(&x->js, "must not contain control characters");
		else
			r = cb(x, json_string_value(v), i, ud);
		jsonstrict_pop(&x->js);
	}
	jsonstrict_pop(&x->js);
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
		return jsonstrict_fail_here(&x->js,
					    "\"|\" alone matches nothing (give system|code, code, system| or |code)");
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

	if ((r = jsonstrict_get_object(&x->js, obj, "filter", false, &f)) || !f)
		return r;
	jsonstrict_push_key(&x->js, "filter");
	if ((r = jsonstrict_check_keys(&x->js, f, keys, NULL, NULL)) || (r = get_comment(x, f)) ||
	    (r = get_filter_list(x, f, "code", sizeof(mtoken), (void **)&flt->code, &flt->n_code, token_cb)) ||
	    (r = get_filter_list(x, f, "category", sizeof(mtoken), (void **)&flt->category, &flt->n_category,
				 token_cb)) ||
	    (r = get_filter_list(x, f, "status", sizeof(char *), (void **)&flt->status, &flt->n_status, status_cb)))
		return r;
	jsonstrict_pop(&x->js);
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

	if ((r = jsonstrict_get_str(&x->js, obj, key, true, "an anchor name", &s)))
		return r;
	*out = anchor_find(x->m, s);
	if (*out == SIZE_MAX) {
		anchor_names(x->m, list, sizeof(list));
		return jsonstrict_fail_key(&x->js, key, "no anchor named %s (%s)",
					   jsonstrict_show(s, shown, sizeof(shown)), list);
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

	if ((r = jsonstrict_get_object(&x->js, obj, "window", false, &w)) || !w)
		return r;
	jsonstrict_push_key(&x->js, "window");
	if ((r = jsonstrict_check_keys(&x->js, w, keys, NULL, NULL)) || (r = get_comment(x, w)) ||
	    (r = get_anchor_ref(x, w, "anchor", &rl->win_anchor)) ||
	    (r = jsonstrict_get_str(&x->js, w, "from", true, "an offset like \"-1d\"", &from)) ||
	    (r = jsonstrict_get_str(&x->js, w, "to", true, "an offset like \"+1d\"", &to)))
		return r;
	if (!window_offset(from, &rl->win_from))
		return jsonstrict_fail_key(&x->js, "from",
					   "%s is not an offset (\"0\", or a sign, a number and d, h or m: \"-1d\", "
					   "\"+12h\", \"-30m\"; at most 100 years)",
					   jsonstrict_show(from, shown, sizeof(shown)));
	if (!window_offset(to, &rl->win_to))
		return jsonstrict_fail_key(&x->js, "to",
					   "%s is not an offset (\"0\", or a sign, a number and d, h or m: \"-1d\", "
					   "\"+12h\", \"-30m\"; at most 100 years)",
					   jsonstrict_show(to, shown, sizeof(shown)));
	if (rl->win_from > rl->win_to)
		return jsonstrict_fail_key(&x->js, "to", "the window ends before it starts (from %s)",
					   jsonstrict_show(from, shown, sizeof(shown)));
	rl->window = true;
	jsonstrict_pop(&x->js);
	return 0;
}

/* ---- fields ---------------------------------------------------------------------- */

static const char *const transforms[] = { "string", "number", "round", "date", "datetime", "datetime_seconds", NULL };

static int get_map(lctx *x, const json_t *spec, mfield *f)
{
	const char *key;
	json_t *map, *v;
	int r;

	if ((r = jsonstrict_get_object(&x->js, spec, "map", false, &map)) || !map)
		return r;
	if (json_object_size(map) == 0)
		return jsonstrict_fail_key(&x->js, "map", "must map at least one code");
	f->map_from = calloc(json_object_size(map), sizeof(char *));
	f->map_to = calloc(json_object_size(map), sizeof(char *));
	if (!f->map_from || !f->map_to)
		return -ENOMEM;
	jsonstrict_push_key(&x->js, "map");
	json_object_foreach(map, key, v) {
		if (!json_is_string(v))
			return jsonstrict_fail_key(&x->js, key, "expected a REDCap code (a string), got %s",
						   jsonstrict_kind(v));
		if (json_string_length(v) == 0 || jsonstrict_has_control(json_string_value(v), json_string_length(v)))
			return jsonstrict_fail_key(&x->js, key,
						   "expected a REDCap code (a non-empty string without control "
						   "characters)");
		f->map_from[f->n_map] = strdup(key);
		f->map_to[f->n_map] = strdup(json_string_value(v));
		f->n_map++;
		if (!f->map_from[f->n_map - 1] || !f->map_to[f->n_map - 1])
			return -ENOMEM;
	}
	jsonstrict_pop(&x->js);
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
		return jsonstrict_fail_here(
			&x->js,
			"%s is not a REDCap field name (lower-case letters, digits and '_', starting with "
			"a letter; at most 100)",
			jsonstrict_show(name, shown, sizeof(shown)));
	if (!json_is_object(spec))
		return jsonstrict_fail_here(&x->js, "expected an object (value, unit, transform, map, default), got %s",
					    jsonstrict_kind(spec));
	if ((r = jsonstrict_check_keys(&x->js, spec, keys, NULL, NULL)) || (r = get_comment(x, spec)))
		return r;
	if (a && a->field && json_object_get(spec, "value"))
		return jsonstrict_fail_key(&x->js, "value",
					   "not used with an anchor typed into REDCap (the field takes its value)");
	if ((r = get_value_paths(x, spec, !a, f)))
		return r;
	if ((r = jsonstrict_get_str(&x->js, spec, "unit", false, "a unit (a string)", &s)) ||
	    (r = dup_str(s, &f->unit)))
		return r;
	if (f->unit && !f->n_value)
		return jsonstrict_fail_key(&x->js, "unit",
					   "needs a value path (the unit belongs to the Quantity that holds the "
					   "value)");
	if ((r = get_word(x, spec, "transform", transforms, MT_STRING, &t)))
		return r;
	f->transform = (mtransform)t;
	f->transform_given = json_object_get(spec, "transform") != NULL;
	if ((r = get_map(x, spec, f)))
		return r;
	if ((r = jsonstrict_get_str(&x->js, spec, "default", false, "a REDCap code (a string)", &s)) ||
	    (r = dup_str(s, &f->def)))
		return r;
	if (f->def && !f->n_map)
		return jsonstrict_fail_key(&x->js, "default",
					   "needs a map (the default is the code for values the map does not name)");
	if (f->n_map && f->transform_given)
		return jsonstrict_fail_key(&x->js, "transform", "not used with a map (the map gives the value)");
	return 0;
}

static int get_fields(lctx *x, const json_t *obj, mrule *rl)
{
	const char *key;
	json_t *o, *v;
	int r;

	if ((r = jsonstrict_get_object(&x->js, obj, "fields", true, &o)))
		return r;
	if (json_object_size(o) == 0)
		return jsonstrict_fail_key(&x->js, "fields", "must name at least one REDCap field");
	rl->fields = calloc(json_object_size(o), sizeof(mfield));
	if (!rl->fields)
		return -ENOMEM;
	jsonstrict_push_key(&x->js, "fields");
	json_object_foreach(o, key, v) {
		jsonstrict_push_key(&x->js, key);
		rl->n_fields++;
		if ((r = get_field(x, key, v, rl, &rl->fields[rl->n_fields - 1])))
			return r;
		jsonstrict_pop(&x->js);
	}
	jsonstrict_pop(&x->js);
	return 0;
}

/* ---- rules ------------------------------------------------------------------------ */

static const char *const selects[] = { "", "FIRST", "LAST", "MIN", "MAX", "NEAR", NULL };

/* The combinations a rule may not have (its members are loaded). */
static int rule_combination(lctx *x, const json_t *o, mrule *rl)
{
	bool needs_time = rl->select == MS_FIRST || rl->select == MS_LAST || rl->select == MS_NEAR;

	if (rl->window && !rl->time)
		return jsonstrict_fail_key(&x->js, "window", "needs \"time\" (the path to when the resource happened)");
	if (needs_time && !rl->time)
		return jsonstrict_fail_key(&x->js, "select",
					   "%s needs \"time\" (the path to when the resource happened)",
					   selects[rl->select]);
	if (rl->select == MS_NEAR && !rl->window)
		return jsonstrict_fail_key(&x->js, "select",
					   "NEAR needs a window (its anchor is what NEAR is near to)");
	if ((rl->select == MS_MIN || rl->select == MS_MAX) && rl->n_fields != 1)
		return jsonstrict_fail_key(&x->js, "select",
					   "%s needs exactly one field (the number compared), got %zu",
					   selects[rl->select], rl->n_fields);
	if ((rl->select == MS_MIN || rl->select == MS_MAX) && rl->fields[0].n_map)
		return jsonstrict_fail_key(&x->js, "select",
					   "%s compares the field's value as a number: the field cannot have a map",
					   selects[rl->select]);
	if (rl->instrument && rl->select != MS_NONE)
		return jsonstrict_fail_key(&x->js, "select",
					   "not used with \"instrument\" (a repeating rule makes one instance per "
					   "resource)");
	if (!rl->instrument && rl->resource && rl->select == MS_NONE && strcmp(rl->resource, "Patient") != 0)
		return jsonstrict_fail_missing(
			&x->js, "select",
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
			return jsonstrict_fail_key(&x->js, not_here[i],
						   "not used in an anchor rule (its fields take the anchor's "
						   "value)");
	return get_anchor_ref(x, o, "anchor", &rl->anchor);
}

static int get_resource_rule(lctx *x, const json_t *o, mrule *rl)
{
	char shown[96];
	const char *s;
	int r, sel;

	if ((r = jsonstrict_get_str(&x->js, o, "resource", true, "a resource type name", &s)))
		return r;
	if (!resource_name_ok(s))
		return jsonstrict_fail_key(&x->js, "resource",
					   "%s is not a resource type name (like \"Observation\": "
					   "^[A-Z][A-Za-z]{1,63}$)",
					   jsonstrict_show(s, shown, sizeof(shown)));
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
		return jsonstrict_fail_here(&x->js, "expected a rule (an object), got %s", jsonstrict_kind(o));
	if ((r = jsonstrict_check_keys(&x->js, o, keys, NULL, NULL)) || (r = get_comment(x, o)) ||
	    (r = jsonstrict_get_str(&x->js, o, "name", false, "a rule name", &s)))
		return r;
	if (s && strlen(s) > 100)
		return jsonstrict_fail_key(&x->js, "name", "longer than 100 bytes");
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
			return jsonstrict_fail_key(&x->js, "name",
						   "the rule name %s is used twice (first at rules[%zu])",
						   jsonstrict_show(rl->name, shown, sizeof(shown)), j);
		return jsonstrict_fail_here(&x->js, "the default name %s is taken by rules[%zu]",
					    jsonstrict_show(rl->name, shown, sizeof(shown)), j);
	}
	if (!json_object_get(o, "resource") == !json_object_get(o, "anchor"))
		return jsonstrict_fail_here(
			&x->js, "give \"resource\" (a FHIR resource type) or \"anchor\" (an anchor's name), "
				"exactly one");
	r = json_object_get(o, "anchor") ? get_anchor_rule(x, o, rl) : get_resource_rule(x, o, rl);
	if (r)
		return r;
	if ((r = jsonstrict_get_str(&x->js, o, "event", false, "a unique event name", &s)) ||
	    (r = dup_str(s, &rl->event)))
		return r;
	if (s && !event_name_ok(s))
		return jsonstrict_fail_key(&x->js, "event", "%s is not a unique event name (like \"baseline_arm_1\")",
					   jsonstrict_show(s, shown, sizeof(shown)));
	if ((r = jsonstrict_get_str(&x->js, o, "instrument", false, "an instrument name", &s)) ||
	    (r = dup_str(s, &rl->instrument)))
		return r;
	if (s && !lower_name_ok(s, 64))
		return jsonstrict_fail_key(&x->js, "instrument", "%s is not an instrument name (like \"vitals\")",
					   jsonstrict_show(s, shown, sizeof(shown)));
	v = json_object_get(o, "review");
	if (v && !json_is_boolean(v))
		return jsonstrict_fail_key(&x->js, "review", "expected true or false, got %s", jsonstrict_kind(v));
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
				jsonstrict_push_key(&x->js, "fields");
				const char *same = rl->event ? " in the same event" : "";
				int r = jsonstrict_fail_key(&x->js, rl->fields[k].name,
							    "already filled by rules[%zu] %s%s", j,
							    jsonstrict_show(o->name, shown, sizeof(shown)), same);
				jsonstrict_pop(&x->js);
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
		return jsonstrict_fail_missing(&x->js, "rules", "required key is missing");
	if (!json_is_array(a))
		return jsonstrict_fail_key(&x->js, "rules", "expected an array of rules, got %s", jsonstrict_kind(a));
	if (json_array_size(a) == 0)
		return jsonstrict_fail_key(&x->js, "rules", "must hold at least one rule");
	x->m->rules = calloc(json_array_size(a), sizeof(mrule));
	if (!x->m->rules)
		return -ENOMEM;
	jsonstrict_push_key(&x->js, "rules");
	for (size_t i = 0; i < json_array_size(a); i++) {
		jsonstrict_push_index(&x->js, i);
		x->m->n_rules++;
		if ((r = get_rule(x, json_array_get(a, i), i, &x->m->rules[i])) || (r = unique_fields(x, i)))
			return r;
		jsonstrict_pop(&x->js);
	}
	jsonstrict_pop(&x->js);
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
		return jsonstrict_fail_here(&x->js,
					    "%s is not an anchor name (letters, digits, '_' and '-'; at most 64)",
					    jsonstrict_show(name, shown, sizeof(shown)));
	if (!json_is_object(o))
		return jsonstrict_fail_here(&x->js, "expected an anchor (an object), got %s", jsonstrict_kind(o));
	if (get_comment(x, o))
		return MAPPING_E_SYNTAX;
	if (json_object_get(o, "field")) {
		if ((r = jsonstrict_check_keys(&x->js, o, k_field, k_fhir,
					       "not used with an anchor typed into REDCap (\"field\")")) ||
		    (r = jsonstrict_get_str(&x->js, o, "field", true, "a REDCap field name", &s)) ||
		    (r = dup_str(s, &a->field)))
			return r;
		if (!lower_name_ok(s, 100))
			return jsonstrict_fail_key(&x->js, "field", "%s is not a REDCap field name",
						   jsonstrict_show(s, shown, sizeof(shown)));
		return 0;
	}
	if ((r = jsonstrict_check_keys(&x->js, o, k_fhir, NULL, NULL)) ||
	    (r = jsonstrict_get_str(&x->js, o, "resource", true, "a resource type name", &s)))
		return r;
	if (!resource_name_ok(s))
		return jsonstrict_fail_key(&x->js, "resource",
					   "%s is not a resource type name (like \"Encounter\": "
					   "^[A-Z][A-Za-z]{1,63}$)",
					   jsonstrict_show(s, shown, sizeof(shown)));
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

	if ((r = jsonstrict_get_object(&x->js, root, "anchors", false, &o)) || !o)
		return r;
	x->m->anchors = calloc(json_object_size(o) ? json_object_size(o) : 1, sizeof(manchor));
	if (!x->m->anchors)
		return -ENOMEM;
	jsonstrict_push_key(&x->js, "anchors");
	json_object_foreach(o, key, v) {
		jsonstrict_push_key(&x->js, key);
		x->m->n_anchors++;
		if ((r = get_anchor(x, key, v, &x->m->anchors[x->m->n_anchors - 1])))
			return r;
		jsonstrict_pop(&x->js);
	}
	jsonstrict_pop(&x->js);
	return 0;
}

/* ---- record id ------------------------------------------------------------------------ */

static int read_key(lctx *x, const char *file)
{
	char *path = jsonstrict_resolve(&x->js, file), msg[512];
	int r = 0;

	if (!path)
		return -ENOMEM;
	msg[0] = '\0';
	x->m->key = secret_read_file(path, &x->m->key_len, msg, sizeof(msg));
	if (!x->m->key) {
		jsonstrict_fail_key(&x->js, "key_file", "%s", msg);
		r = MAPPING_E_FILE;
	} else if (x->m->key_len < MAPPING_KEY_MIN) {
		jsonstrict_fail_key(&x->js, "key_file", "%s: the key must hold at least %d bytes", path,
				    MAPPING_KEY_MIN);
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

	if ((r = jsonstrict_get_object(&x->js, root, "record_id", true, &o)))
		return r;
	jsonstrict_push_key(&x->js, "record_id");
	if ((r = get_comment(x, o)))
		return r;
	if (!json_object_get(o, "from"))
		return jsonstrict_fail_missing(&x->js, "from", "required key is missing");
	if ((r = get_word(x, o, "from", froms, 0, &from)))
		return r;
	x->m->hmac = from == 1;
	if (!x->m->hmac)
		r = jsonstrict_check_keys(&x->js, o, k_mrn, k_hmac,
					  "not used with from \"mrn\" (the record id is the MRN)");
	else
		r = jsonstrict_check_keys(&x->js, o, k_hmac, NULL, NULL);
	if (r)
		return r;
	if (!x->env->mrn_system)
		return jsonstrict_fail_here(
			&x->js, "needs fhir.mrn_system in the configuration (the record id is made from the MRN)");
	if (!x->m->hmac) {
		jsonstrict_pop(&x->js);
		return 0;
	}
	v = json_object_get(o, "prefix");
	if (v && !json_is_string(v))
		return jsonstrict_fail_key(&x->js, "prefix", "expected a prefix (a string), got %s",
					   jsonstrict_kind(v));
	s = v ? json_string_value(v) : "";
	if (!word_ok(s, 0, 16))
		return jsonstrict_fail_key(&x->js, "prefix",
					   "%s is not a prefix (letters, digits, '_' and '-'; at most 16)",
					   jsonstrict_show(s, shown, sizeof(shown)));
	if ((r = dup_str(s, &x->m->prefix)))
		return r;
	if ((r = jsonstrict_get_uint(&x->js, o, "hex_digits", 8, 64, 16, &x->m->hex_digits)))
		return r;
	if ((r = jsonstrict_get_str(&x->js, o, "key_file", true, "a file path (a string)", &s)) || (r = read_key(x, s)))
		return r;
	jsonstrict_pop(&x->js);
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
	json_t *root = NULL;
	const char *s;
	int r;

	if ((r = jsonstrict_parse(&x->js, &root)) || (r = jsonstrict_check_keys(&x->js, root, keys, NULL, NULL)) ||
	    (r = get_comment(x, root)) ||
	    (r = jsonstrict_get_str(&x->js, root, "format", true, "\"" MAPPING_FORMAT "\"", &s)))
		goto out;
	if (strcmp(s, MAPPING_FORMAT) != 0) {
		r = jsonstrict_fail_key(&x->js, "format", "expected \"" MAPPING_FORMAT "\", got %s",
					jsonstrict_show(s, shown, sizeof(shown)));
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
	lctx x = {
		.js = { .file = path, .err = err, .err_size = err_size, .fail_code = MAPPING_E_SYNTAX },
		.env = env,
	};
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
	if ((r = jsonstrict_read(&x.js, MAPPING_FILE_MAX, &x.m->text))) {
		if (r == JSONSTRICT_E_FILE)
			r = MAPPING_E_FILE;
		goto fail;
	}
	x.m->len = x.js.len;
	if ((r = digest_hex(x.m->text, x.m->len, x.m->digest)) || (r = load_root(&x)))
		goto fail;
	if (x.m->key && (r = digest_with_key(x.m)))
		goto fail;
	jsonstrict_deinit(&x.js);
	*out = x.m;
	return 0;
fail:
	if (r == -ENOMEM)
		jsonstrict_errf(err, err_size, "%s: out of memory", path);
	jsonstrict_deinit(&x.js);
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
