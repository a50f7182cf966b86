/*
 * redcap/dictionary.c — the data dictionary model: parsing content=metadata
 * JSON and the data dictionary CSV, typing fields, the implicit
 * <form>_complete fields, checkbox columns, events, the form/event mapping
 * and repeating instruments/events, and sorted lookup indexes.
 *
 * The checks mirror what REDCap's dictionary upload refuses (REDCap 15.7.6
 * English.ini, database_mods_16..40, 154): field names of lower-case
 * letters, digits and '_' starting with a letter, no "___", at most 100
 * characters; form names of the same alphabet, at most 64 characters, one
 * contiguous run per form; choices "code, label" separated by '|' (or line
 * breaks, as REDCap's parseEnum also accepts) with unique codes.
 */
#include "redcap/dictionary.h"
#include "redcap/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const col_keys[REDCAP_DD_COLUMNS] = {
	"field_name", "form_name", "section_header", "field_type", "field_label",
	"select_choices_or_calculations", "field_note", "text_validation_type_or_show_slider_number",
	"text_validation_min", "text_validation_max", "identifier", "branching_logic", "required_field",
	"custom_alignment", "question_number", "matrix_group_name", "matrix_ranking", "field_annotation",
};

static const char *const col_headers[REDCAP_DD_COLUMNS] = {
	"Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
	"Choices, Calculations, OR Slider Labels", "Field Note", "Text Validation Type OR Show Slider Number",
	"Text Validation Min", "Text Validation Max", "Identifier?", "Branching Logic (Show field only if...)",
	"Required Field?", "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name",
	"Matrix Ranking?", "Field Annotation",
};

/* Static snake_case key of a column, NULL when out of range. */
const char *redcap_dd_column_key(int col)
{
	return col >= 0 && col < REDCAP_DD_COLUMNS ? col_keys[col] : NULL;
}

/* Static CSV header of a column, NULL when out of range. */
const char *redcap_dd_column_header(int col)
{
	return col >= 0 && col < REDCAP_DD_COLUMNS ? col_headers[col] : NULL;
}

static const char *const type_names[] = {
	[REDCAP_FIELD_TEXT] = "text",       [REDCAP_FIELD_NOTES] = "notes",
	[REDCAP_FIELD_RADIO] = "radio",     [REDCAP_FIELD_DROPDOWN] = "dropdown",
	[REDCAP_FIELD_CHECKBOX] = "checkbox", [REDCAP_FIELD_YESNO] = "yesno",
	[REDCAP_FIELD_TRUEFALSE] = "truefalse", [REDCAP_FIELD_CALC] = "calc",
	[REDCAP_FIELD_FILE] = "file",       [REDCAP_FIELD_DESCRIPTIVE] = "descriptive",
	[REDCAP_FIELD_SLIDER] = "slider",   [REDCAP_FIELD_SQL] = "sql",
};

/* Static dictionary name of a field type, NULL when out of range. */
const char *redcap_field_type_name(redcap_field_type t)
{
	if ((unsigned)t >= sizeof(type_names) / sizeof(type_names[0]))
		return NULL;
	return type_names[t];
}

static bool field_type_parse(const char *s, redcap_field_type *t)
{
	for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++) {
		if (strcmp(s, type_names[i]) == 0) {
			*t = (redcap_field_type)i;
			return true;
		}
	}
	if (strcmp(s, "select") == 0) {  /* REDCap's internal name for dropdown */
		*t = REDCAP_FIELD_DROPDOWN;
		return true;
	}
	return false;
}

/* Validation type names (REDCap 15.7.6 install_data.sql, redcap_validation_types;
 * legacy_value column for the old names). */
static const struct {
	const char *name;
	redcap_vtype t;
	unsigned decimals;
} vtypes[] = {
	{ "date_ymd", REDCAP_V_DATE_YMD, 0 },
	{ "date", REDCAP_V_DATE_YMD, 0 },
	{ "date_mdy", REDCAP_V_DATE_MDY, 0 },
	{ "date_dmy", REDCAP_V_DATE_DMY, 0 },
	{ "datetime_ymd", REDCAP_V_DATETIME_YMD, 0 },
	{ "datetime", REDCAP_V_DATETIME_YMD, 0 },
	{ "datetime_mdy", REDCAP_V_DATETIME_MDY, 0 },
	{ "datetime_dmy", REDCAP_V_DATETIME_DMY, 0 },
	{ "datetime_seconds_ymd", REDCAP_V_DATETIME_SECONDS_YMD, 0 },
	{ "datetime_seconds", REDCAP_V_DATETIME_SECONDS_YMD, 0 },
	{ "datetime_seconds_mdy", REDCAP_V_DATETIME_SECONDS_MDY, 0 },
	{ "datetime_seconds_dmy", REDCAP_V_DATETIME_SECONDS_DMY, 0 },
	{ "time", REDCAP_V_TIME, 0 },
	{ "time_hh_mm_ss", REDCAP_V_TIME_HH_MM_SS, 0 },
	{ "time_mm_ss", REDCAP_V_TIME_MM_SS, 0 },
	{ "integer", REDCAP_V_INTEGER, 0 },
	{ "int", REDCAP_V_INTEGER, 0 },
	{ "number", REDCAP_V_NUMBER, 0 },
	{ "float", REDCAP_V_NUMBER, 0 },
	{ "number_1dp", REDCAP_V_NUMBER_DP, 1 },
	{ "number_2dp", REDCAP_V_NUMBER_DP, 2 },
	{ "number_3dp", REDCAP_V_NUMBER_DP, 3 },
	{ "number_4dp", REDCAP_V_NUMBER_DP, 4 },
	{ "number_comma_decimal", REDCAP_V_NUMBER_COMMA, 0 },
	{ "number_1dp_comma_decimal", REDCAP_V_NUMBER_DP_COMMA, 1 },
	{ "number_2dp_comma_decimal", REDCAP_V_NUMBER_DP_COMMA, 2 },
	{ "number_3dp_comma_decimal", REDCAP_V_NUMBER_DP_COMMA, 3 },
	{ "number_4dp_comma_decimal", REDCAP_V_NUMBER_DP_COMMA, 4 },
	{ "email", REDCAP_V_EMAIL, 0 },
	{ "phone", REDCAP_V_PHONE, 0 },
	{ "phone_australia", REDCAP_V_PHONE_AUSTRALIA, 0 },
	{ "phone_uk", REDCAP_V_PHONE_UK, 0 },
	{ "phone_france", REDCAP_V_PHONE_FRANCE, 0 },
	{ "zipcode", REDCAP_V_ZIPCODE, 0 },
	{ "postalcode_australia", REDCAP_V_POSTALCODE_AUSTRALIA, 0 },
	{ "postalcode_canada", REDCAP_V_POSTALCODE_CANADA, 0 },
	{ "postalcode_french", REDCAP_V_POSTALCODE_FRENCH, 0 },
	{ "postalcode_germany", REDCAP_V_POSTALCODE_GERMANY, 0 },
	{ "postalcode_uk", REDCAP_V_POSTALCODE_UK, 0 },
	{ "alpha_only", REDCAP_V_ALPHA_ONLY, 0 },
	{ "mrn_10d", REDCAP_V_MRN_10D, 0 },
	{ "mrn_generic", REDCAP_V_MRN_GENERIC, 0 },
	{ "vmrn", REDCAP_V_VMRN, 0 },
	{ "ssn", REDCAP_V_SSN, 0 },
};

/* ------------------------------------------------------------------------
 * Indexes.
 */

typedef struct name_ref {
	const char *name;
	size_t idx;       /* field, form or event */
	size_t choice;    /* checkbox columns: choice index */
} name_ref;

struct redcap_dict_index {
	name_ref *fields;     /* every field by name */
	name_ref *columns;    /* checkbox columns */
	size_t n_columns;
	name_ref *forms;
	name_ref *events;
	size_t n_events;
	regex_t rx[REDCAP_V_OTHER];   /* compiled for the regex types in use */
	bool rx_ok[REDCAP_V_OTHER];
};

static int ref_cmp(const void *a, const void *b)
{
	return strcmp(((const name_ref *)a)->name, ((const name_ref *)b)->name);
}

static const name_ref *ref_find(const name_ref *v, size_t n, const char *name)
{
	if (!v || !name)
		return NULL;
	name_ref key = { .name = name };
	return bsearch(&key, v, n, sizeof(*v), ref_cmp);
}

static void index_free(redcap_dict_index *x)
{
	if (!x)
		return;
	for (int t = 0; t < REDCAP_V_OTHER; t++)
		if (x->rx_ok[t])
			regfree(&x->rx[t]);
	free(x->fields);
	free(x->columns);
	free(x->forms);
	free(x->events);
	free(x);
}

static int index_events(redcap_dict *d)
{
	redcap_dict_index *x = d->index;
	name_ref *ev = calloc(d->n_events ? d->n_events : 1, sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	for (size_t i = 0; i < d->n_events; i++)
		ev[i] = (name_ref){ d->events[i].unique_name, i, 0 };
	qsort(ev, d->n_events, sizeof(*ev), ref_cmp);
	free(x->events);
	x->events = ev;
	x->n_events = d->n_events;
	return 0;
}

/* Build the field/column/form indexes. */
static int index_build(redcap_dict *d)
{
	redcap_dict_index *x = calloc(1, sizeof(*x));
	size_t nc = 0;

	if (!x)
		return -ENOMEM;
	for (size_t i = 0; i < d->n_fields; i++)
		if (d->fields[i].type == REDCAP_FIELD_CHECKBOX)
			nc += d->fields[i].n_choices;
	x->fields = calloc(d->n_fields ? d->n_fields : 1, sizeof(*x->fields));
	x->columns = calloc(nc ? nc : 1, sizeof(*x->columns));
	x->forms = calloc(d->n_forms ? d->n_forms : 1, sizeof(*x->forms));
	if (!x->fields || !x->columns || !x->forms) {
		index_free(x);
		return -ENOMEM;
	}
	for (size_t i = 0; i < d->n_fields; i++) {
		const redcap_field *f = &d->fields[i];
		x->fields[i] = (name_ref){ f->name, i, 0 };
		if (f->type == REDCAP_FIELD_CHECKBOX)
			for (size_t c = 0; c < f->n_choices; c++)
				x->columns[x->n_columns++] = (name_ref){ f->choices[c].column, i, c };
	}
	for (size_t i = 0; i < d->n_forms; i++)
		x->forms[i] = (name_ref){ d->forms[i].name, i, 0 };
	qsort(x->fields, d->n_fields, sizeof(*x->fields), ref_cmp);
	qsort(x->columns, x->n_columns, sizeof(*x->columns), ref_cmp);
	qsort(x->forms, d->n_forms, sizeof(*x->forms), ref_cmp);
	for (size_t i = 0; i < d->n_fields; i++) {
		redcap_vtype t = d->fields[i].vtype;
		int flags;
		const char *re = rc_vtype_regex(t, &flags);
		if (!re || x->rx_ok[t])
			continue;
		if (regcomp(&x->rx[t], re, flags) != 0) {
			index_free(x);
			return -ENOMEM;  /* the patterns are fixed: only memory can fail */
		}
		x->rx_ok[t] = true;
	}
	index_free(d->index);
	d->index = x;
	return index_events(d);
}

/* ------------------------------------------------------------------------
 * Lookups.
 */

const regex_t *rc_dict_regex(const redcap_dict *d, redcap_vtype t)
{
	if (!d || !d->index || (unsigned)t >= REDCAP_V_OTHER || !d->index->rx_ok[t])
		return NULL;
	return &d->index->rx[t];
}

/* Borrowed: the first field, or NULL for an empty dictionary. */
const redcap_field *redcap_dict_record_id(const redcap_dict *d)
{
	return d && d->n_fields ? &d->fields[0] : NULL;
}

/* Borrowed: the field named name (binary search), or NULL. */
const redcap_field *redcap_dict_field(const redcap_dict *d, const char *name)
{
	if (!d || !d->index)
		return NULL;
	const name_ref *r = ref_find(d->index->fields, d->n_fields, name);
	return r ? &d->fields[r->idx] : NULL;
}

/*
 * Borrowed: the field behind an import/export column, and the checkbox
 * choice for field___code columns; NULL if none.
 */
const redcap_field *redcap_dict_column(const redcap_dict *d, const char *column,
				       const redcap_choice **choice)
{
	if (choice)
		*choice = NULL;
	const redcap_field *f = redcap_dict_field(d, column);
	if (f)
		return f;
	if (!d || !d->index || !column || !strstr(column, "___"))
		return NULL;
	const name_ref *r = ref_find(d->index->columns, d->index->n_columns, column);
	if (!r)
		return NULL;
	if (choice)
		*choice = &d->fields[r->idx].choices[r->choice];
	return &d->fields[r->idx];
}

/* Borrowed: the form named name, or NULL. */
const redcap_form *redcap_dict_form(const redcap_dict *d, const char *name)
{
	if (!d || !d->index)
		return NULL;
	const name_ref *r = ref_find(d->index->forms, d->n_forms, name);
	return r ? &d->forms[r->idx] : NULL;
}

/* Borrowed: the event with this unique name, or NULL. */
const redcap_event *redcap_dict_event(const redcap_dict *d, const char *unique_name)
{
	if (!d || !d->index)
		return NULL;
	const name_ref *r = ref_find(d->index->events, d->index->n_events, unique_name);
	return r ? &d->events[r->idx] : NULL;
}

/* Index of f in d->forms (f must point into it). */
size_t redcap_dict_form_index(const redcap_dict *d, const redcap_form *f)
{
	return (size_t)(f - d->forms);
}

static bool in_list(const size_t *v, size_t n, size_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/* Designated, or nothing known that says otherwise (no mapping, no event). */
bool redcap_dict_form_in_event(const redcap_dict *d, const redcap_event *ev, size_t form)
{
	if (!d->have_mapping || !ev)
		return true;
	return in_list(ev->forms, ev->n_forms, form);
}

/* A repeating instrument in ev, or in the classic project when ev is NULL. */
bool redcap_dict_form_repeats(const redcap_dict *d, const redcap_event *ev, size_t form)
{
	if (form >= d->n_forms)
		return false;
	if (!ev)
		return d->forms[form].repeating;
	return in_list(ev->repeat_forms, ev->n_repeat_forms, form);
}

/* field___code with REDCap's code formatting; malloc'd or NULL (ENOMEM). */
char *redcap_checkbox_column(const char *field, const char *code)
{
	rc_str b = RC_STR_NULL;

	rc_str_add(&b, field);
	rc_str_add(&b, "___");
	for (const char *p = code; *p; p++) {
		char c = *p;
		if (c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		else if (c == '-' || c == '.')
			c = '_';
		rc_str_addc(&b, c);
	}
	return rc_str_take(&b);
}

/* ------------------------------------------------------------------------
 * Freeing.
 */

static void choices_free(redcap_choice *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(c[i].code);
		free(c[i].label);
		free(c[i].column);
	}
	free(c);
}

static void field_free(redcap_field *f)
{
	for (int i = 0; i < REDCAP_DD_COLUMNS; i++)
		free(f->raw[i]);
	choices_free(f->choices, f->n_choices);
	*f = (redcap_field){ 0 };
}

static void events_free(redcap_event *ev, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ev[i].unique_name);
		free(ev[i].name);
		free(ev[i].forms);
		free(ev[i].repeat_forms);
	}
	free(ev);
}

/* Free fields, forms, events and indexes; d is reset. Idempotent. */
void redcap_dict_deinit(redcap_dict *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n_fields; i++)
		field_free(&d->fields[i]);
	free(d->fields);
	for (size_t i = 0; i < d->n_forms; i++)
		free(d->forms[i].name);
	free(d->forms);
	events_free(d->events, d->n_events);
	for (size_t i = 0; i < d->n_arms; i++)
		free(d->arms[i].name);
	free(d->arms);
	index_free(d->index);
	*d = (redcap_dict)REDCAP_DICT_NULL;
}

/* ------------------------------------------------------------------------
 * Building the model from raw rows (both input forms).
 */

typedef struct raw_row {
	char *col[REDCAP_DD_COLUMNS];   /* NULL = absent = "" (moved into the field by make_field) */
	const char *name;               /* the field's name once made (borrowed) */
	unsigned line[REDCAP_DD_COLUMNS], column[REDCAP_DD_COLUMNS];
	size_t index;                   /* element / data row number (0-based) */
} raw_row;

typedef struct builder {
	bool csv;
	redcap_error *err;
	raw_row *rows;
	size_t n, cap;
} builder;

static void builder_free(builder *b)
{
	for (size_t i = 0; i < b->n; i++)
		for (int c = 0; c < REDCAP_DD_COLUMNS; c++)
			free(b->rows[i].col[c]);
	free(b->rows);
	b->rows = NULL;
	b->n = b->cap = 0;
}

static raw_row *builder_row(builder *b)
{
	if (b->n == REDCAP_DICT_MAX_FIELDS)
		return NULL;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		raw_row *r = realloc(b->rows, cap * sizeof(*r));
		if (!r)
			return NULL;
		b->rows = r;
		b->cap = cap;
	}
	raw_row *r = &b->rows[b->n++];
	*r = (raw_row){ .index = b->n - 1 };
	return r;
}

/* Report a problem in cell col of row r: "line L, column C (Header): ..."
 * for CSV, "metadata[i].key: ..." for JSON. Returns REDCAP_E_DICT. */
__attribute__((format(printf, 4, 5))) static int bad(builder *b, const raw_row *r, int col, const char *fmt,
						     ...)
{
	char what[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (!b->err)
		return REDCAP_E_DICT;
	if (b->csv) {
		b->err->line = r->line[col];
		b->err->column = r->column[col];
		rc_err(b->err, "line %u, column %u (%s): %s", r->line[col], r->column[col], col_headers[col], what);
	} else {
		b->err->line = b->err->column = 0;
		rc_err(b->err, "metadata[%zu].%s: %s", r->index, col_keys[col], what);
	}
	return REDCAP_E_DICT;
}

static const char *cell(const raw_row *r, int col)
{
	return r->col[col] ? r->col[col] : "";
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* NULL if fine, else why not. */
static const char *field_name_problem(const char *s)
{
	size_t n = strlen(s);
	if (n == 0)
		return "the field name is missing";
	if (n > REDCAP_NAME_MAX)
		return "field names cannot be more than 100 characters in length";
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return "field names must consist of ONLY lower-case letters, numbers, and underscores";
	if (s[0] >= '0' && s[0] <= '9')
		return "field names cannot begin with a number";
	if (s[0] == '_')
		return "field names cannot begin with an underscore";
	if (strstr(s, "___"))
		return "field names cannot have a triple underscore (___)";
	return NULL;
}

static const char *form_name_problem(const char *s)
{
	size_t n = strlen(s);
	if (n == 0)
		return "the form name is missing";
	if (n > 64)
		return "form names cannot be more than 64 characters in length";
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return "form names must consist of ONLY lower-case letters, numbers, and underscores";
	if (s[0] >= '0' && s[0] <= '9')
		return "form names cannot begin with a number";
	return NULL;
}

/* Case-insensitive search for an action tag as a whole word. */
static bool has_tag(const char *s, const char *tag)
{
	size_t n = strlen(tag);
	for (const char *p = s; *p; p++) {
		if (*p != '@' || strncasecmp(p, tag, n) != 0)
			continue;
		char before = p > s ? p[-1] : ' ';
		char after = p[n];
		bool wb = !((before >= 'A' && before <= 'Z') || (before >= 'a' && before <= 'z') ||
			    (before >= '0' && before <= '9') || before == '_' || before == '-');
		bool wa = !((after >= 'A' && after <= 'Z') || (after >= 'a' && after <= 'z') ||
			    (after >= '0' && after <= '9') || after == '_' || after == '-');
		if (wb && wa)
			return true;
	}
	return false;
}

static bool is_y(const char *s)
{
	return (s[0] == 'y' || s[0] == 'Y') && s[1] == 0;
}

static int add_choice(redcap_field *f, size_t *cap, const char *code, size_t cl, const char *label, size_t ll)
{
	if (f->n_choices == *cap) {
		size_t c = *cap ? *cap * 2 : 8;
		redcap_choice *v = realloc(f->choices, c * sizeof(*v));
		if (!v)
			return -ENOMEM;
		f->choices = v;
		*cap = c;
	}
	redcap_choice *ch = &f->choices[f->n_choices];
	*ch = (redcap_choice){ rc_strndup(code, cl), rc_strndup(label, ll), NULL };
	if (ch->code && ch->label && f->type == REDCAP_FIELD_CHECKBOX)
		ch->column = redcap_checkbox_column(f->name, ch->code);
	if (!ch->code || !ch->label || (f->type == REDCAP_FIELD_CHECKBOX && !ch->column)) {
		free(ch->code);
		free(ch->label);
		free(ch->column);
		return -ENOMEM;
	}
	f->n_choices++;
	return 0;
}

/* Parse "1, Female | 2, Male" (items also split at line breaks). */
static int parse_choices(builder *b, const raw_row *r, redcap_field *f)
{
	const char *s = f->raw[REDCAP_COL_CHOICES];
	size_t cap = 0;

	for (const char *p = s;;) {
		const char *e = p;
		while (*e && *e != '|' && *e != '\n' && *e != '\r')
			e++;
		size_t st, n;
		rc_trim(p, (size_t)(e - p), &st, &n);
		if (n) {
			const char *item = p + st;
			const char *comma = memchr(item, ',', n);
			if (!comma)
				return bad(b, r, REDCAP_COL_CHOICES, "choice '%.*s' has no code (write 'code, label')",
					   (int)(n > 40 ? 40 : n), item);
			size_t cs, cl, ls, ll;
			rc_trim(item, (size_t)(comma - item), &cs, &cl);
			rc_trim(comma + 1, n - (size_t)(comma + 1 - item), &ls, &ll);
			if (cl == 0)
				return bad(b, r, REDCAP_COL_CHOICES, "a choice has an empty code");
			/* database_mods_154: codes are numbers or letters, digits and '_';
			 * '-' and '.' occur too (REDCap maps them in checkbox columns). */
			for (size_t i = 0; i < cl; i++) {
				char ch = item[cs + i];
				if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
				      ch == '_' || ch == '-' || ch == '.'))
					return bad(b, r, REDCAP_COL_CHOICES,
						   "choice code '%.*s' may only hold letters, digits, '_', '-' and '.'",
						   (int)(cl > 40 ? 40 : cl), item + cs);
			}
			for (size_t i = 0; i < f->n_choices; i++) {
				if (strlen(f->choices[i].code) == cl && memcmp(f->choices[i].code, item + cs, cl) == 0)
					return bad(b, r, REDCAP_COL_CHOICES, "choice code '%.*s' is duplicated",
						   (int)(cl > 40 ? 40 : cl), item + cs);
			}
			int rc = add_choice(f, &cap, item + cs, cl, comma + 1 + ls, ll);
			if (rc)
				return rc;
			if (f->type == REDCAP_FIELD_CHECKBOX) {
				const char *col = f->choices[f->n_choices - 1].column;
				for (size_t i = 0; i + 1 < f->n_choices; i++)
					if (strcmp(f->choices[i].column, col) == 0)
						return bad(b, r, REDCAP_COL_CHOICES,
							   "choice codes '%.40s' and '%.40s' give the same checkbox column",
							   f->choices[i].code, f->choices[f->n_choices - 1].code);
			}
		}
		if (!*e)
			break;
		p = e + 1;
	}
	if (f->n_choices == 0)
		return bad(b, r, REDCAP_COL_CHOICES, "%s fields must have choices", type_names[f->type]);
	return 0;
}

static int fixed_choices(redcap_field *f, const char *const *pairs, size_t n)
{
	size_t cap = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = add_choice(f, &cap, pairs[2 * i], strlen(pairs[2 * i]), pairs[2 * i + 1],
				    strlen(pairs[2 * i + 1]));
		if (rc)
			return rc;
	}
	return 0;
}

/* Turn one raw row into f (f->name etc. owned by f). */
static int make_field(builder *b, raw_row *r, redcap_field *f)
{
	static const char *const yesno[] = { "1", "Yes", "0", "No" };
	static const char *const truefalse[] = { "1", "True", "0", "False" };
	int rc;

	/* Take the cells; trim the ones that are names or codes. */
	for (int c = 0; c < REDCAP_DD_COLUMNS; c++) {
		f->raw[c] = r->col[c] ? r->col[c] : strdup("");
		r->col[c] = NULL;
		if (!f->raw[c])
			return -ENOMEM;
		if (c == REDCAP_COL_FIELD_NAME || c == REDCAP_COL_FORM_NAME || c == REDCAP_COL_FIELD_TYPE ||
		    c == REDCAP_COL_VALIDATION || c == REDCAP_COL_VALIDATION_MIN || c == REDCAP_COL_VALIDATION_MAX ||
		    c == REDCAP_COL_IDENTIFIER || c == REDCAP_COL_REQUIRED) {
			size_t st, n;
			rc_trim(f->raw[c], strlen(f->raw[c]), &st, &n);
			memmove(f->raw[c], f->raw[c] + st, n);
			f->raw[c][n] = 0;
		}
	}
	f->name = f->raw[REDCAP_COL_FIELD_NAME];
	r->name = f->name;
	f->min = f->raw[REDCAP_COL_VALIDATION_MIN];
	f->max = f->raw[REDCAP_COL_VALIDATION_MAX];
	f->line = b->csv ? r->line[REDCAP_COL_FIELD_NAME] : 0;

	const char *why = field_name_problem(f->name);
	if (why)
		return bad(b, r, REDCAP_COL_FIELD_NAME, "%s", why);
	if ((why = form_name_problem(f->raw[REDCAP_COL_FORM_NAME])))
		return bad(b, r, REDCAP_COL_FORM_NAME, "%s", why);
	if (!field_type_parse(f->raw[REDCAP_COL_FIELD_TYPE], &f->type))
		return bad(b, r, REDCAP_COL_FIELD_TYPE, "'%.40s' is not a valid field type",
			   f->raw[REDCAP_COL_FIELD_TYPE]);

	const char *v = f->raw[REDCAP_COL_VALIDATION];
	if (*v) {
		if (f->type == REDCAP_FIELD_TEXT) {
			f->vtype = REDCAP_V_OTHER;
			for (size_t i = 0; i < sizeof(vtypes) / sizeof(vtypes[0]); i++) {
				if (strcmp(v, vtypes[i].name) == 0) {
					f->vtype = vtypes[i].t;
					f->decimals = vtypes[i].decimals;
					break;
				}
			}
		} else if (!(f->type == REDCAP_FIELD_SLIDER && strcmp(v, "number") == 0) &&
			   !(f->type == REDCAP_FIELD_FILE && strcmp(v, "signature") == 0)) {
			return bad(b, r, REDCAP_COL_VALIDATION, "only text fields may have a validation type");
		}
	}

	switch (f->type) {
	case REDCAP_FIELD_RADIO:
	case REDCAP_FIELD_DROPDOWN:
	case REDCAP_FIELD_CHECKBOX:
		if ((rc = parse_choices(b, r, f)))
			return rc;
		break;
	case REDCAP_FIELD_YESNO:
		if ((rc = fixed_choices(f, yesno, 2)))
			return rc;
		break;
	case REDCAP_FIELD_TRUEFALSE:
		if ((rc = fixed_choices(f, truefalse, 2)))
			return rc;
		break;
	default:
		break;
	}
	f->identifier = is_y(f->raw[REDCAP_COL_IDENTIFIER]);
	f->required = is_y(f->raw[REDCAP_COL_REQUIRED]);
	f->force_minmax = has_tag(f->raw[REDCAP_COL_ANNOTATION], "@FORCE-MINMAX");
	f->pseudo_calc = has_tag(f->raw[REDCAP_COL_ANNOTATION], "@CALCTEXT") ||
			 has_tag(f->raw[REDCAP_COL_ANNOTATION], "@CALCDATE");
	return 0;
}

/* The implicit <form>_complete field of form fi. */
static int make_complete(redcap_field *f, const char *form, size_t fi)
{
	static const char *const status[] = { "0", "Incomplete", "1", "Unverified", "2", "Complete" };
	size_t n = strlen(form);

	*f = (redcap_field){ .type = REDCAP_FIELD_DROPDOWN, .form = fi, .implicit = true };
	for (int c = 0; c < REDCAP_DD_COLUMNS; c++) {
		const char *v = "";
		if (c == REDCAP_COL_FORM_NAME)
			v = form;
		else if (c == REDCAP_COL_FIELD_TYPE)
			v = "dropdown";
		else if (c == REDCAP_COL_FIELD_LABEL)
			v = "Complete?";
		else if (c == REDCAP_COL_CHOICES)
			v = "0, Incomplete | 1, Unverified | 2, Complete";
		if (c == REDCAP_COL_FIELD_NAME) {
			f->raw[c] = malloc(n + 10);
			if (f->raw[c])
				snprintf(f->raw[c], n + 10, "%s_complete", form);
		} else {
			f->raw[c] = strdup(v);
		}
		if (!f->raw[c])
			return -ENOMEM;
	}
	f->name = f->raw[REDCAP_COL_FIELD_NAME];
	f->min = f->raw[REDCAP_COL_VALIDATION_MIN];
	f->max = f->raw[REDCAP_COL_VALIDATION_MAX];
	return fixed_choices(f, status, 3);
}

/* Build d from the builder's rows; d must be empty. On failure d is left
 * empty. */
static int build(redcap_dict *d, builder *b)
{
	int rc = 0;

	if (b->n == 0) {
		rc_err(b->err, "the data dictionary has no fields");
		return REDCAP_E_DICT;
	}
	/* Count forms to size the arrays. */
	size_t nforms = 0;
	for (size_t i = 0; i < b->n; i++)
		if (i == 0 || strcmp(cell(&b->rows[i], REDCAP_COL_FORM_NAME),
				     cell(&b->rows[i - 1], REDCAP_COL_FORM_NAME)) != 0)
			nforms++;
	d->fields = calloc(b->n + nforms, sizeof(*d->fields));
	d->forms = calloc(nforms, sizeof(*d->forms));
	if (!d->fields || !d->forms) {
		redcap_dict_deinit(d);
		return -ENOMEM;
	}
	for (size_t i = 0; i < b->n && !rc; i++) {
		raw_row *r = &b->rows[i];
		redcap_field *f = &d->fields[d->n_fields];
		const char *form = cell(r, REDCAP_COL_FORM_NAME);

		/* Trim the form name now to compare (make_field trims too). */
		size_t st, n;
		rc_trim(form, strlen(form), &st, &n);
		bool new_form = d->n_forms == 0 || strlen(d->forms[d->n_forms - 1].name) != n ||
				memcmp(d->forms[d->n_forms - 1].name, form + st, n) != 0;
		if (new_form && d->n_forms) {
			redcap_form *pf = &d->forms[d->n_forms - 1];
			for (size_t k = 0; k < d->n_forms; k++)
				if (strlen(d->forms[k].name) == n && memcmp(d->forms[k].name, form + st, n) == 0) {
					rc = bad(b, r, REDCAP_COL_FORM_NAME,
						 "form '%.64s' comes back after another form started (form names must be sequential)",
						 d->forms[k].name);
					break;
				}
			if (rc)
				break;
			pf->complete = d->n_fields;
			if ((rc = make_complete(&d->fields[d->n_fields], pf->name, d->n_forms - 1)))
				break;
			d->n_fields++;
			pf->n_fields++;
			f = &d->fields[d->n_fields];
		}
		rc = make_field(b, r, f);
		d->n_fields++;  /* owned even when incomplete, freed by deinit */
		if (rc)
			break;
		if (new_form) {
			redcap_form *nf = &d->forms[d->n_forms];
			*nf = (redcap_form){ .name = strdup(f->raw[REDCAP_COL_FORM_NAME]), .first = d->n_fields - 1 };
			if (!nf->name) {
				rc = -ENOMEM;
				break;
			}
			d->n_forms++;
		}
		f->form = d->n_forms - 1;
		d->forms[d->n_forms - 1].n_fields++;
	}
	if (!rc) {
		redcap_form *pf = &d->forms[d->n_forms - 1];
		pf->complete = d->n_fields;
		rc = make_complete(&d->fields[d->n_fields], pf->name, d->n_forms - 1);
		d->n_fields++;
		pf->n_fields++;
	}
	if (!rc)
		rc = index_build(d);
	/* Duplicated names (real fields first, then collisions with the
	 * implicit <form>_complete fields). */
	for (size_t i = 0; !rc && i + 1 < d->n_fields; i++) {
		const name_ref *x = &d->index->fields[i], *y = &d->index->fields[i + 1];
		if (strcmp(x->name, y->name) != 0)
			continue;
		const redcap_field *fa = &d->fields[x->idx], *fb = &d->fields[y->idx];
		const redcap_field *real = fa->implicit ? fb : fa;
		const redcap_field *later = x->idx > y->idx ? fa : fb;
		if (fa->implicit || fb->implicit)
			later = real;
		raw_row *r = NULL;
		for (size_t k = 0; k < b->n; k++)
			if (b->rows[k].name == later->name)
				r = &b->rows[k];
		if (!r) {
			rc_err(b->err, "field name '%.100s' is duplicated", later->name);
			rc = REDCAP_E_DICT;
		} else if (fa->implicit || fb->implicit) {
			rc = bad(b, r, REDCAP_COL_FIELD_NAME,
				 "'%.100s' is the name of the implicit status field of form '%.64s'", later->name,
				 d->forms[(fa->implicit ? fa : fb)->form].name);
		} else {
			rc = bad(b, r, REDCAP_COL_FIELD_NAME, "field name '%.100s' is duplicated", later->name);
		}
	}
	if (rc)
		redcap_dict_deinit(d);
	return rc;
}

/* ------------------------------------------------------------------------
 * JSON (content=metadata).
 */

int redcap_dict_parse_json(redcap_dict *d, const char *buf, size_t len, redcap_error *err)
{
	builder b = { .csv = false, .err = err };
	int rc = 0;
	size_t i;
	json_t *e;

	if (!d)
		return -EINVAL;
	redcap_dict_deinit(d);
	if (err)
		*err = (redcap_error){ 0 };
	if (len > REDCAP_DICT_MAX_BYTES) {
		rc_err(err, "metadata: larger than %zu bytes", REDCAP_DICT_MAX_BYTES);
		return REDCAP_E_TOO_LARGE;
	}
	json_error_t je;
	json_t *j = json_loadb(buf ? buf : "", buf ? len : 0, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		rc_err_json(err, &je, "metadata");
		return REDCAP_E_JSON;
	}
	if (!json_is_array(j)) {
		rc_err(err, "metadata: not a JSON array");
		json_decref(j);
		return REDCAP_E_SHAPE;
	}
	if (json_array_size(j) > REDCAP_DICT_MAX_FIELDS) {
		rc_err(err, "metadata: more than %d fields", REDCAP_DICT_MAX_FIELDS);
		json_decref(j);
		return REDCAP_E_TOO_LARGE;
	}
	json_array_foreach(j, i, e) {
		if (!json_is_object(e)) {
			rc_err(err, "metadata[%zu]: not an object", i);
			rc = REDCAP_E_SHAPE;
			break;
		}
		raw_row *r = builder_row(&b);
		if (!r) {
			rc = -ENOMEM;
			break;
		}
		for (int c = 0; c < REDCAP_DD_COLUMNS && !rc; c++) {
			const json_t *v = json_object_get(e, col_keys[c]);
			bool badtype;
			if (!v) {
				if (c == REDCAP_COL_FIELD_NAME || c == REDCAP_COL_FORM_NAME || c == REDCAP_COL_FIELD_TYPE) {
					rc_err(err, "metadata[%zu]: %s is missing", i, col_keys[c]);
					rc = REDCAP_E_SHAPE;
				}
				continue;
			}
			r->col[c] = rc_json_text(v, false, &badtype);
			if (badtype) {
				rc_err(err, "metadata[%zu].%s: not a string", i, col_keys[c]);
				rc = REDCAP_E_SHAPE;
			} else if (!r->col[c]) {
				rc = -ENOMEM;
			}
		}
		if (rc)
			break;
	}
	json_decref(j);
	if (!rc)
		rc = build(d, &b);
	builder_free(&b);
	return rc;
}

/* ------------------------------------------------------------------------
 * CSV.
 */

static int header_column(const char *h)
{
	for (int c = 0; c < REDCAP_DD_COLUMNS; c++)
		if (rc_strcasecmp(h, col_headers[c]) == 0 || rc_strcasecmp(h, col_keys[c]) == 0)
			return c;
	return -1;
}

/*
 * A data dictionary CSV into d (reset first, left empty on failure); d
 * owns copies of every cell. Returns 0, REDCAP_E_CSV, REDCAP_E_DICT,
 * REDCAP_E_TOO_LARGE or -ENOMEM (see dictionary.h).
 */
int redcap_dict_parse_csv(redcap_dict *d, const char *buf, size_t len, redcap_error *err)
{
	builder b = { .csv = true, .err = err };
	rc_csv csv;
	rc_csv_row row = { 0 };
	int map[REDCAP_DD_COLUMNS * 4];
	size_t ncols = 0;
	int rc;

	if (!d)
		return -EINVAL;
	redcap_dict_deinit(d);
	if (err)
		*err = (redcap_error){ 0 };
	if (len > REDCAP_DICT_MAX_BYTES) {
		rc_err(err, "data dictionary: larger than %zu bytes", REDCAP_DICT_MAX_BYTES);
		return REDCAP_E_TOO_LARGE;
	}
	rc_csv_init(&csv, buf, len, 0);

	/* The header row. */
	rc = rc_csv_next(&csv, &row, err);
	if (rc == 0) {
		rc_err(err, "the data dictionary is empty");
		rc = REDCAP_E_DICT;
	}
	if (rc == 1) {
		bool seen[REDCAP_DD_COLUMNS] = { false };
		rc = 0;
		if (row.n > sizeof(map) / sizeof(map[0])) {
			if (err) {
				err->line = row.line;
				err->column = 1;
			}
			rc_err(err, "line %u: %zu columns in the header, REDCap has %d", row.line, row.n,
			       REDCAP_DD_COLUMNS);
			rc = REDCAP_E_DICT;
		}
		for (size_t i = 0; i < row.n && !rc; i++) {
			size_t st, n;
			const char *h = rc_csv_text(&row, i);
			rc_trim(h, row.cells[i].len, &st, &n);
			char *t = rc_strndup(h + st, n);
			if (!t) {
				rc = -ENOMEM;
				break;
			}
			int c = n ? header_column(t) : -1;
			if (n == 0) {
				/* An empty header cell (trailing separators): ignored. */
				map[i] = -1;
				free(t);
				continue;
			}
			if (err && (c < 0 || seen[c])) {
				err->line = row.cells[i].line;
				err->column = row.cells[i].column;
			}
			if (c < 0)
				rc_err(err, "line %u, column %u: unknown column header '%.60s'", row.cells[i].line,
				       row.cells[i].column, t);
			else if (seen[c])
				rc_err(err, "line %u, column %u: column '%s' appears twice", row.cells[i].line,
				       row.cells[i].column, col_headers[c]);
			if (c < 0 || seen[c])
				rc = REDCAP_E_DICT;
			else
				seen[c] = true;
			map[i] = c;
			free(t);
		}
		ncols = row.n;
		static const int required[] = { REDCAP_COL_FIELD_NAME, REDCAP_COL_FORM_NAME, REDCAP_COL_FIELD_TYPE };
		for (size_t k = 0; k < 3 && !rc; k++) {
			if (!seen[required[k]]) {
				if (err) {
					err->line = row.line;
					err->column = 1;
				}
				rc_err(err, "line %u: the header has no '%s' column", row.line, col_headers[required[k]]);
				rc = REDCAP_E_DICT;
			}
		}
	}

	/* The data rows. */
	while (!rc) {
		rc = rc_csv_next(&csv, &row, err);
		if (rc != 1)
			break;
		rc = 0;
		bool blank = true;
		for (size_t i = 0; i < row.n && blank; i++) {
			size_t st, n;
			rc_trim(rc_csv_text(&row, i), row.cells[i].len, &st, &n);
			blank = n == 0;
		}
		if (blank)
			continue;
		if (row.n > ncols) {
			for (size_t i = ncols; i < row.n && !rc; i++) {
				size_t st, n;
				rc_trim(rc_csv_text(&row, i), row.cells[i].len, &st, &n);
				if (n) {
					if (err) {
						err->line = row.cells[i].line;
						err->column = row.cells[i].column;
					}
					rc_err(err, "line %u, column %u: more cells than the header has columns",
					       row.cells[i].line, row.cells[i].column);
					rc = REDCAP_E_DICT;
				}
			}
			if (rc)
				break;
		}
		raw_row *r = builder_row(&b);
		if (!r) {
			if (b.n == REDCAP_DICT_MAX_FIELDS) {
				rc_err(err, "data dictionary: more than %d fields", REDCAP_DICT_MAX_FIELDS);
				rc = REDCAP_E_TOO_LARGE;
			} else {
				rc = -ENOMEM;
			}
			break;
		}
		for (int c = 0; c < REDCAP_DD_COLUMNS; c++) {
			r->line[c] = row.line;
			r->column[c] = 1;
		}
		for (size_t i = 0; i < row.n && i < ncols; i++) {
			int c = map[i];
			if (c < 0)
				continue;
			r->col[c] = rc_strndup(rc_csv_text(&row, i), row.cells[i].len);
			r->line[c] = row.cells[i].line;
			r->column[c] = row.cells[i].column;
			if (!r->col[c]) {
				rc = -ENOMEM;
				break;
			}
		}
	}
	rc_csv_row_free(&row);
	if (!rc)
		rc = build(d, &b);
	builder_free(&b);
	return rc;
}

/* ------------------------------------------------------------------------
 * Project, events, mapping, repeating.
 */

void redcap_dict_set_project(redcap_dict *d, const redcap_project *p)
{
	if (!d || !p)
		return;
	if (p->longitudinal >= 0)
		d->longitudinal = p->longitudinal;
	if (p->repeating >= 0)
		d->repeating = p->repeating;
}

static int events_copy(const redcap_event *src, size_t n, redcap_event **out)
{
	redcap_event *ev = calloc(n ? n : 1, sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		ev[i].unique_name = strdup(src[i].unique_name);
		ev[i].name = strdup(src[i].name);
		ev[i].arm = src[i].arm;
		ev[i].repeat_whole = src[i].repeat_whole;
		ev[i].forms = malloc((src[i].n_forms ? src[i].n_forms : 1) * sizeof(size_t));
		ev[i].repeat_forms = malloc((src[i].n_repeat_forms ? src[i].n_repeat_forms : 1) * sizeof(size_t));
		if (!ev[i].unique_name || !ev[i].name || !ev[i].forms || !ev[i].repeat_forms) {
			events_free(ev, i + 1);
			return -ENOMEM;
		}
		if (src[i].n_forms)
			memcpy(ev[i].forms, src[i].forms, src[i].n_forms * sizeof(size_t));
		if (src[i].n_repeat_forms)
			memcpy(ev[i].repeat_forms, src[i].repeat_forms, src[i].n_repeat_forms * sizeof(size_t));
		ev[i].n_forms = src[i].n_forms;
		ev[i].n_repeat_forms = src[i].n_repeat_forms;
	}
	*out = ev;
	return 0;
}

/* Working copy of the events, swapped in on success. */
typedef struct evset {
	redcap_event *v;
	size_t n, cap;
} evset;

static size_t evset_find(const evset *s, const char *unique)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].unique_name, unique) == 0)
			return i;
	return SIZE_MAX;
}

static int evset_add(evset *s, const char *unique, const char *name, unsigned arm)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		redcap_event *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	redcap_event *e = &s->v[s->n];
	*e = (redcap_event){ .unique_name = strdup(unique), .name = strdup(name), .arm = arm };
	if (!e->unique_name || !e->name) {
		free(e->unique_name);
		free(e->name);
		return -ENOMEM;
	}
	s->n++;
	return 0;
}

static int list_add(size_t **v, size_t *n, size_t x)
{
	if (in_list(*v, *n, x))
		return 0;
	size_t *nv = realloc(*v, (*n + 1) * sizeof(size_t));
	if (!nv)
		return -ENOMEM;
	nv[(*n)++] = x;
	*v = nv;
	return 0;
}

static int evset_from(const redcap_dict *d, evset *s)
{
	*s = (evset){ 0 };
	int rc = events_copy(d->events, d->n_events, &s->v);
	if (!rc) {
		s->cap = d->n_events ? d->n_events : 1;
		s->n = d->n_events;
	}
	return rc;
}

/* Install s as d's events. */
static int evset_commit(redcap_dict *d, evset *s)
{
	redcap_event *old = d->events;
	size_t oldn = d->n_events;
	d->events = s->v;
	d->n_events = s->n;
	if (d->index) {
		int rc = index_events(d);
		if (rc) {
			d->events = old;
			d->n_events = oldn;
			return rc;
		}
	}
	events_free(old, oldn);
	*s = (evset){ 0 };
	return 0;
}

/* An unsigned arm number from a number or numeric string; 0 if absent. */
static bool arm_of(const json_t *v, unsigned *arm)
{
	*arm = 0;
	if (!v || json_is_null(v))
		return true;
	if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < 100000) {
		*arm = (unsigned)json_integer_value(v);
		return true;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		unsigned a = 0;
		size_t n = strlen(s);
		if (n == 0 || n > 5)
			return false;
		for (size_t i = 0; i < n; i++) {
			if (s[i] < '0' || s[i] > '9')
				return false;
			a = a * 10 + (unsigned)(s[i] - '0');
		}
		*arm = a;
		return true;
	}
	return false;
}

/* A string member ("" if absent or null); NULL if another type. */
static const char *str_member(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return "";
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_t *load_array(const char *buf, size_t len, const char *what, redcap_error *err, int *rc)
{
	json_error_t je;
	json_t *j = json_loadb(buf ? buf : "", buf ? len : 0, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		rc_err_json(err, &je, what);
		*rc = REDCAP_E_JSON;
		return NULL;
	}
	if (!json_is_array(j)) {
		rc_err(err, "%s: not a JSON array", what);
		json_decref(j);
		*rc = REDCAP_E_SHAPE;
		return NULL;
	}
	return j;
}

/*
 * content=event: replaces d's events (built aside, swapped in on success).
 * Returns 0, REDCAP_E_JSON, REDCAP_E_SHAPE, -ENOMEM, -EINVAL.
 */
int redcap_dict_load_events(redcap_dict *d, const char *buf, size_t len, redcap_error *err)
{
	evset s = { 0 };
	int rc = 0;
	size_t i;
	json_t *e;

	if (!d || !d->index)
		return -EINVAL;
	json_t *j = load_array(buf, len, "event", err, &rc);
	if (!j)
		return rc;
	json_array_foreach(j, i, e) {
		const char *u = json_is_object(e) ? str_member(e, "unique_event_name") : NULL;
		const char *name = json_is_object(e) ? str_member(e, "event_name") : NULL;
		unsigned arm;
		if (!u || !*u || !name || !arm_of(json_object_get(e, "arm_num"), &arm)) {
			rc_err(err, "event[%zu]: needs unique_event_name, event_name and arm_num", i);
			rc = REDCAP_E_SHAPE;
			break;
		}
		if (evset_find(&s, u) != SIZE_MAX) {
			rc_err(err, "event[%zu]: unique_event_name '%.100s' appears twice", i, u);
			rc = REDCAP_E_SHAPE;
			break;
		}
		if ((rc = evset_add(&s, u, name, arm)))
			break;
	}
	json_decref(j);
	if (!rc && !(rc = evset_commit(d, &s))) {
		d->longitudinal = 1;
		d->have_mapping = false;
	}
	events_free(s.v, s.n);
	return rc;
}

/*
 * content=formEventMapping: replaces the designations (built on a copy of
 * the events, swapped in on success). Returns as redcap_dict_load_events().
 */
/*
 * content=arm: replaces d's arms (built aside, swapped in on success).
 * Returns 0, REDCAP_E_JSON, REDCAP_E_SHAPE, -ENOMEM, -EINVAL.
 */
int redcap_dict_load_arms(redcap_dict *d, const char *buf, size_t len, redcap_error *err)
{
	int rc = 0;
	size_t i, n = 0;
	json_t *e;

	if (!d || !d->index)
		return -EINVAL;
	json_t *j = load_array(buf, len, "arm", err, &rc);
	if (!j)
		return rc;
	redcap_arm *arms = calloc(json_array_size(j) ? json_array_size(j) : 1, sizeof(*arms));
	if (!arms) {
		json_decref(j);
		return -ENOMEM;
	}
	json_array_foreach(j, i, e) {
		const char *name = json_is_object(e) ? str_member(e, "name") : NULL;
		unsigned num;
		if (!name || !arm_of(json_object_get(e, "arm_num"), &num) || num == 0) {
			rc_err(err, "arm[%zu]: needs arm_num and name", i);
			rc = REDCAP_E_SHAPE;
			break;
		}
		if (!(arms[n].name = strdup(name))) {
			rc = -ENOMEM;
			break;
		}
		arms[n++].num = num;
	}
	json_decref(j);
	if (rc) {
		for (size_t k = 0; k < n; k++)
			free(arms[k].name);
		free(arms);
		return rc;
	}
	for (size_t k = 0; k < d->n_arms; k++)
		free(d->arms[k].name);
	free(d->arms);
	d->arms = arms;
	d->n_arms = n;
	return 0;
}

/*
 * "name (Arm N: arm name)" for messages (see dictionary.h); malloc'd or
 * NULL on ENOMEM.
 */
char *redcap_event_label(const redcap_dict *d, const redcap_event *ev)
{
	rc_str b = RC_STR_NULL;
	const char *arm = NULL;

	for (size_t i = 0; d && i < d->n_arms && !arm; i++)
		if (d->arms[i].num == ev->arm)
			arm = d->arms[i].name;
	rc_str_add(&b, *ev->name ? ev->name : ev->unique_name);
	if (arm)
		rc_str_addf(&b, " (Arm %u: %s)", ev->arm, arm);
	else
		rc_str_addf(&b, " (Arm %u: Arm %u)", ev->arm ? ev->arm : 1, ev->arm ? ev->arm : 1);
	return rc_str_take(&b);
}

int redcap_dict_load_form_event_mapping(redcap_dict *d, const char *buf, size_t len, redcap_error *err)
{
	evset s;
	int rc = 0;
	size_t i;
	json_t *e;

	if (!d || !d->index)
		return -EINVAL;
	json_t *j = load_array(buf, len, "formEventMapping", err, &rc);
	if (!j)
		return rc;
	if ((rc = evset_from(d, &s))) {
		json_decref(j);
		return rc;
	}
	/* The mapping replaces the designations. */
	for (size_t k = 0; k < s.n; k++)
		s.v[k].n_forms = 0;
	json_array_foreach(j, i, e) {
		const char *u = json_is_object(e) ? str_member(e, "unique_event_name") : NULL;
		const char *form = json_is_object(e) ? str_member(e, "form") : NULL;
		unsigned arm;
		if (!u || !*u || !form || !*form || !arm_of(json_object_get(e, "arm_num"), &arm)) {
			rc_err(err, "formEventMapping[%zu]: needs unique_event_name, form and arm_num", i);
			rc = REDCAP_E_SHAPE;
			break;
		}
		const redcap_form *f = redcap_dict_form(d, form);
		if (!f) {
			rc_err(err, "formEventMapping[%zu]: form '%.64s' is not in the data dictionary", i, form);
			rc = REDCAP_E_SHAPE;
			break;
		}
		size_t ei = evset_find(&s, u);
		if (ei == SIZE_MAX) {
			if ((rc = evset_add(&s, u, "", arm)))
				break;
			ei = s.n - 1;
		}
		if ((rc = list_add(&s.v[ei].forms, &s.v[ei].n_forms, redcap_dict_form_index(d, f))))
			break;
	}
	json_decref(j);
	if (!rc && !(rc = evset_commit(d, &s))) {
		d->have_mapping = true;
		d->longitudinal = 1;
	}
	events_free(s.v, s.n);
	return rc;
}

/*
 * content=repeatingFormsEvents: replaces the repeating setup (on a copy,
 * swapped in on success). Returns as redcap_dict_load_events().
 */
int redcap_dict_load_repeating(redcap_dict *d, const char *buf, size_t len, redcap_error *err)
{
	evset s;
	int rc = 0;
	size_t i;
	json_t *e;

	if (!d || !d->index)
		return -EINVAL;
	json_t *j = load_array(buf, len, "repeatingFormsEvents", err, &rc);
	if (!j)
		return rc;
	bool *classic = calloc(d->n_forms ? d->n_forms : 1, sizeof(bool));
	if (!classic || (rc = evset_from(d, &s))) {
		free(classic);
		json_decref(j);
		return classic ? rc : -ENOMEM;
	}
	for (size_t k = 0; k < s.n; k++) {
		s.v[k].n_repeat_forms = 0;
		s.v[k].repeat_whole = false;
	}
	json_array_foreach(j, i, e) {
		const char *ev = json_is_object(e) ? str_member(e, "event_name") : NULL;
		const char *form = json_is_object(e) ? str_member(e, "form_name") : NULL;
		if (!ev || !form || (!*ev && !*form)) {
			rc_err(err, "repeatingFormsEvents[%zu]: needs event_name or form_name", i);
			rc = REDCAP_E_SHAPE;
			break;
		}
		size_t fi = SIZE_MAX;
		if (*form) {
			const redcap_form *f = redcap_dict_form(d, form);
			if (!f) {
				rc_err(err, "repeatingFormsEvents[%zu]: form '%.64s' is not in the data dictionary", i,
				       form);
				rc = REDCAP_E_SHAPE;
				break;
			}
			fi = redcap_dict_form_index(d, f);
		}
		if (!*ev || d->longitudinal == 0) {
			/* Classic project: the form repeats in its one event. */
			if (fi == SIZE_MAX) {
				rc_err(err, "repeatingFormsEvents[%zu]: a repeating event in a classic project", i);
				rc = REDCAP_E_SHAPE;
				break;
			}
			classic[fi] = true;
			continue;
		}
		size_t ei = evset_find(&s, ev);
		if (ei == SIZE_MAX) {
			if (d->n_events) {
				rc_err(err, "repeatingFormsEvents[%zu]: event '%.100s' is not a known event", i, ev);
				rc = REDCAP_E_SHAPE;
				break;
			}
			if ((rc = evset_add(&s, ev, "", 0)))
				break;
			ei = s.n - 1;
		}
		if (fi == SIZE_MAX)
			s.v[ei].repeat_whole = true;
		else if ((rc = list_add(&s.v[ei].repeat_forms, &s.v[ei].n_repeat_forms, fi)))
			break;
	}
	size_t entries = json_array_size(j);
	json_decref(j);
	if (!rc && !(rc = evset_commit(d, &s))) {
		for (size_t k = 0; k < d->n_forms; k++)
			d->forms[k].repeating = classic[k];
		d->repeating = entries > 0;
	}
	events_free(s.v, s.n);
	free(classic);
	return rc;
}

/* A new array of the flat export column names (caller owns it), NULL on ENOMEM. */
json_t *redcap_dict_export_columns(const redcap_dict *d)
{
	json_t *a = json_array();
	bool ok = a != NULL;

	if (!d || !d->n_fields)
		return a;
	ok = ok && !json_array_append_new(a, json_string(d->fields[0].name));
	if (d->longitudinal == 1 || d->n_events)
		ok = ok && !json_array_append_new(a, json_string("redcap_event_name"));
	if (d->repeating == 1) {
		ok = ok && !json_array_append_new(a, json_string("redcap_repeat_instrument"));
		ok = ok && !json_array_append_new(a, json_string("redcap_repeat_instance"));
	}
	for (size_t i = 1; i < d->n_fields && ok; i++) {
		const redcap_field *f = &d->fields[i];
		if (f->type == REDCAP_FIELD_DESCRIPTIVE)
			continue;
		if (f->type == REDCAP_FIELD_CHECKBOX) {
			for (size_t c = 0; c < f->n_choices && ok; c++)
				ok = !json_array_append_new(a, json_string(f->choices[c].column));
		} else {
			ok = !json_array_append_new(a, json_string(f->name));
		}
	}
	if (!ok) {
		json_decref(a);
		return NULL;
	}
	return a;
}
