/*
 * mapping-check.c — check a loaded mapping against a project's data
 * dictionary (see mapping_check() in mapping.h for the list).
 *
 * Every problem is reported, not only the first: `check` shows them all
 * at once. Each message starts with the mapping file's line:column of the
 * rule, field or anchor concerned (found again in the kept file text).
 */
#include "bridge/mapping-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redcap/validate.h"

typedef struct chk {
	const mapping *m;
	const redcap_dict *d;
	char **msgs;
	size_t n, cap;
	int err;
	bool longitudinal;
} chk;

/* Append "file:L:C: prefix: message", placed at path. */
static void report(chk *k, const jsonloc_step *path, size_t depth, const char *prefix, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void report(chk *k, const jsonloc_step *path, size_t depth, const char *prefix, const char *fmt, ...)
{
	unsigned long line = 0, col = 0;
	char *msg = NULL, *full = NULL;
	va_list ap;
	int r;

	if (k->err)
		return;
	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0) {
		k->err = -ENOMEM;
		return;
	}
	if (mapping_locate(k->m, path, depth, &line, &col) == 0)
		r = asprintf(&full, "%s:%lu:%lu: %s: %s", k->m->path, line, col, prefix, msg);
	else
		r = asprintf(&full, "%s: %s: %s", k->m->path, prefix, msg);
	free(msg);
	if (r < 0) {
		k->err = -ENOMEM;
		return;
	}
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 8;
		char **v = realloc(k->msgs, cap * sizeof(*v));
		if (!v) {
			free(full);
			k->err = -ENOMEM;
			return;
		}
		k->msgs = v;
		k->cap = cap;
	}
	k->msgs[k->n++] = full;
}

/* The field's codes, "1, 2, 3" (cut short when long). */
static void codes_list(const redcap_field *fl, char *out, size_t size)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < fl->n_choices; i++) {
		int n = snprintf(out + o, size - o, "%s%s", i ? ", " : "", fl->choices[i].code);
		if (n < 0 || (size_t)n >= size - o) {
			snprintf(out + (size > 4 ? size - 4 : 0), size > 4 ? 4 : size, "...");
			return;
		}
		o += (size_t)n;
	}
}

static bool is_code(const redcap_field *fl, const char *s)
{
	for (size_t i = 0; i < fl->n_choices; i++)
		if (strcmp(fl->choices[i].code, s) == 0)
			return true;
	return false;
}

static bool choice_type(const redcap_field *fl)
{
	return fl->type == REDCAP_FIELD_RADIO || fl->type == REDCAP_FIELD_DROPDOWN || fl->type == REDCAP_FIELD_YESNO ||
	       fl->type == REDCAP_FIELD_TRUEFALSE;
}

static const char *const transform_names[] = { "string", "number", "round", "date", "datetime", "datetime_seconds" };

/* Does transform t make values the field's validation accepts? *need names
 * what it accepts, for the message. */
static bool transform_fits(const redcap_field *fl, mtransform t, const char **need)
{
	*need = NULL;
	if (fl->type == REDCAP_FIELD_SLIDER) {
		*need = "\"round\"";
		return t == MT_ROUND;
	}
	switch (fl->vtype) {
	case REDCAP_V_NONE:
		return true;
	case REDCAP_V_DATE_YMD:
	case REDCAP_V_DATE_MDY:
	case REDCAP_V_DATE_DMY:
		*need = "\"date\"";
		return t == MT_DATE;
	case REDCAP_V_DATETIME_YMD:
	case REDCAP_V_DATETIME_MDY:
	case REDCAP_V_DATETIME_DMY:
		*need = "\"datetime\"";
		return t == MT_DATETIME;
	case REDCAP_V_DATETIME_SECONDS_YMD:
	case REDCAP_V_DATETIME_SECONDS_MDY:
	case REDCAP_V_DATETIME_SECONDS_DMY:
		*need = "\"datetime_seconds\"";
		return t == MT_DATETIME_SECONDS;
	case REDCAP_V_INTEGER:
		*need = "\"round\"";
		return t == MT_ROUND;
	case REDCAP_V_NUMBER:
		*need = "\"number\" or \"round\"";
		return t == MT_NUMBER || t == MT_ROUND;
	case REDCAP_V_NUMBER_DP:
	case REDCAP_V_NUMBER_COMMA:
	case REDCAP_V_NUMBER_DP_COMMA:
	case REDCAP_V_TIME:
	case REDCAP_V_TIME_HH_MM_SS:
	case REDCAP_V_TIME_MM_SS:
		*need = "a map (no transform writes this format)";
		return false;
	default:
		*need = "\"string\"";
		return t == MT_STRING;
	}
}

static const char *validation_name(const redcap_field *fl)
{
	if (fl->type == REDCAP_FIELD_SLIDER)
		return "slider";
	return fl->raw[REDCAP_COL_VALIDATION];
}

/* Maps into choice fields: every code valid, a default for the rest. */
static void check_choices(chk *k, const jsonloc_step *p, const char *pre, const mfield *f, const redcap_field *fl)
{
	char codes[256];

	codes_list(fl, codes, sizeof(codes));
	if (!f->n_map) {
		report(k, p, 4, pre, "field %s: a %s field needs a map to its codes (%s)", f->name,
		       redcap_field_type_name(fl->type), codes);
		return;
	}
	for (size_t i = 0; i < f->n_map; i++)
		if (!is_code(fl, f->map_to[i]))
			report(k, p, 4, pre, "field %s: the map gives \"%s\" (for \"%s\"), not a code of the field "
				"(%s)",
			       f->name, f->map_to[i], f->map_from[i], codes);
	if (f->def && !is_code(fl, f->def))
		report(k, p, 4, pre, "field %s: the default \"%s\" is not a code of the field (%s)", f->name, f->def,
		       codes);
	if (!f->def)
		report(k, p, 4, pre,
		       "field %s: the map has no default: a code it does not name would be held back (add \"default\")",
		       f->name);
}

/* Transforms (or map outputs) against the field's validation. */
static void check_format(chk *k, const jsonloc_step *p, const char *pre, const mfield *f, const redcap_field *fl)
{
	const char *need;

	if (f->n_map) {
		for (size_t i = 0; i < f->n_map; i++)
			if (fl->vtype != REDCAP_V_NONE && !redcap_check_vtype(fl->vtype, fl->decimals, f->map_to[i]))
				report(k, p, 4, pre, "field %s: the map gives \"%s\", which %s validation refuses",
				       f->name, f->map_to[i], validation_name(fl));
		if (f->def && fl->vtype != REDCAP_V_NONE && !redcap_check_vtype(fl->vtype, fl->decimals, f->def))
			report(k, p, 4, pre, "field %s: the default \"%s\" is refused by %s validation", f->name,
			       f->def, validation_name(fl));
		return;
	}
	if (!transform_fits(fl, f->transform, &need))
		report(k, p, 4, pre, "field %s: %s validation needs transform %s, not \"%s\"", f->name,
		       validation_name(fl), need, transform_names[f->transform]);
}

static const char *unusable_type(const redcap_dict *d, const redcap_field *fl)
{
	if (fl == redcap_dict_record_id(d))
		return "is the record id field (the record name fills it)";
	if (fl->type == REDCAP_FIELD_CALC || fl->pseudo_calc)
		return "is a calculated field (REDCap computes it)";
	switch (fl->type) {
	case REDCAP_FIELD_DESCRIPTIVE: return "is a descriptive field (it holds no data)";
	case REDCAP_FIELD_FILE: return "is a file upload field (values cannot be imported)";
	case REDCAP_FIELD_SQL: return "is an sql field (not supported)";
	case REDCAP_FIELD_CHECKBOX: return "is a checkbox field (not supported: use a radio or dropdown field)";
	default: return NULL;
	}
}

/* The field's form against the rule's: instrument, one form, repeating. */
static void check_form(chk *k, const jsonloc_step *p, const char *pre, const mrule *rl, const mfield *f,
		       const redcap_field *fl, const redcap_event *ev, size_t *rule_form)
{
	const redcap_dict *d = k->d;
	const char *form = d->forms[fl->form].name;

	if (rl->instrument) {
		if (strcmp(form, rl->instrument) != 0)
			report(k, p, 4, pre, "field %s: is on instrument %s, not on %s", f->name, form, rl->instrument);
		return;
	}
	if (*rule_form == SIZE_MAX)
		*rule_form = fl->form;
	else if (*rule_form != fl->form)
		report(k, p, 4, pre, "field %s: is on instrument %s, the rule's first field on %s (a rule fills one "
			"form)",
		       f->name, form, d->forms[*rule_form].name);
	if (redcap_dict_form_repeats(d, ev, fl->form))
		report(k, p, 4, pre,
		       "field %s: is on the repeating instrument %s (a rule without \"instrument\" fills "
			"non-repeating forms)",
		       f->name, form);
	if (ev && !redcap_dict_form_in_event(d, ev, fl->form))
		report(k, p, 4, pre, "field %s: instrument %s is not designated for event %s", f->name, form,
		       ev->unique_name);
}

static void check_field(chk *k, size_t i, const mrule *rl, const mfield *f, const redcap_event *ev, size_t *rule_form,
			const char *pre)
{
	jsonloc_step p[5] = { JSONLOC_KEY("rules"), JSONLOC_INDEX(i), JSONLOC_KEY("fields"), JSONLOC_KEY(f->name) };
	const redcap_field *fl = redcap_dict_field(k->d, f->name);
	const char *why;

	if (!fl) {
		report(k, p, 4, pre, "field %s: is not in the data dictionary", f->name);
		return;
	}
	if ((why = unusable_type(k->d, fl))) {
		report(k, p, 4, pre, "field %s: %s", f->name, why);
		return;
	}
	check_form(k, p, pre, rl, f, fl, ev, rule_form);
	if (choice_type(fl))
		check_choices(k, p, pre, f, fl);
	else
		check_format(k, p, pre, f, fl);
}

/* The rule's event and instrument; *ev is the event when it is known. */
static void check_target(chk *k, size_t i, const mrule *rl, const char *pre, const redcap_event **ev)
{
	const redcap_dict *d = k->d;
	jsonloc_step p[3] = { JSONLOC_KEY("rules"), JSONLOC_INDEX(i), JSONLOC_KEY("event") };

	*ev = NULL;
	if (rl->event && !k->longitudinal)
		report(k, p, 3, pre, "event %s: the project is not longitudinal (it has no events)", rl->event);
	else if (rl->event && !(*ev = redcap_dict_event(d, rl->event)))
		report(k, p, 3, pre, "event %s: is not an event of the project", rl->event);
	else if (!rl->event && k->longitudinal)
		report(k, p, 2, pre, "the project is longitudinal: the rule needs an \"event\"");
	if (!rl->instrument)
		return;
	p[2] = (jsonloc_step)JSONLOC_KEY("instrument");
	const redcap_form *form = redcap_dict_form(d, rl->instrument);
	if (!form) {
		report(k, p, 3, pre, "instrument %s: is not an instrument of the project", rl->instrument);
		return;
	}
	size_t fi = redcap_dict_form_index(d, form);
	if (*ev && !redcap_dict_form_in_event(d, *ev, fi))
		report(k, p, 3, pre, "instrument %s: is not designated for event %s", rl->instrument, rl->event);
	else if ((*ev || !k->longitudinal) && !redcap_dict_form_repeats(d, *ev, fi))
		report(k, p, 3, pre, "instrument %s: is not a repeating instrument%s%s", rl->instrument,
		       *ev ? " in event " : "", *ev ? rl->event : "");
}

static void check_rule(chk *k, size_t i)
{
	const mrule *rl = &k->m->rules[i];
	const redcap_event *ev;
	size_t rule_form = SIZE_MAX;
	char *pre = NULL;

	if (asprintf(&pre, "rules[%zu] \"%s\"", i, rl->name) < 0) {
		k->err = -ENOMEM;
		return;
	}
	check_target(k, i, rl, pre, &ev);
	for (size_t j = 0; j < rl->n_fields; j++)
		check_field(k, i, rl, &rl->fields[j], ev, &rule_form, pre);
	free(pre);
}

static void check_anchor(chk *k, const manchor *a)
{
	jsonloc_step p[3] = { JSONLOC_KEY("anchors"), JSONLOC_KEY(a->name), JSONLOC_KEY("field") };
	const redcap_field *fl = redcap_dict_field(k->d, a->field);
	char *pre = NULL;

	if (asprintf(&pre, "anchors.%s", a->name) < 0) {
		k->err = -ENOMEM;
		return;
	}
	if (!fl) {
		report(k, p, 3, pre, "field %s: is not in the data dictionary", a->field);
	} else if (fl->type != REDCAP_FIELD_TEXT ||
		   !(fl->vtype >= REDCAP_V_DATE_YMD && fl->vtype <= REDCAP_V_DATETIME_SECONDS_DMY)) {
		report(k, p, 3, pre, "field %s: is not a date or datetime field (text with date_* or datetime_* "
			"validation)",
		       a->field);
	} else if (!k->longitudinal && redcap_dict_form_repeats(k->d, NULL, fl->form)) {
		report(k, p, 3, pre, "field %s: is on the repeating instrument %s (an anchor has one value per record)",
		       a->field, k->d->forms[fl->form].name);
	}
	free(pre);
}

int mapping_check(const mapping *m, const redcap_dict *d, char ***msgs, size_t *n)
{
	chk k = { .m = m, .d = d };

	if (!msgs || !n)
		return -EINVAL;
	*msgs = NULL;
	*n = 0;
	if (!m || !d)
		return -EINVAL;
	k.longitudinal = d->longitudinal == 1 || (d->longitudinal == -1 && d->n_events > 0);
	for (size_t i = 0; i < m->n_anchors; i++)
		if (m->anchors[i].field)
			check_anchor(&k, &m->anchors[i]);
	for (size_t i = 0; i < m->n_rules; i++)
		check_rule(&k, i);
	if (k.err) {
		mapping_msgs_free(k.msgs, k.n);
		return k.err;
	}
	*msgs = k.msgs;
	*n = k.n;
	return k.n ? MAPPING_E_CHECK : 0;
}

void mapping_msgs_free(char **msgs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(msgs[i]);
	free(msgs);
}
