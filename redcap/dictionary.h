/*
 * redcap/dictionary.h — the data dictionary of a REDCap project as a typed
 * model: fields in order, forms (instruments) in order, the record id
 * field, the implicit <form>_complete fields, checkbox export columns, and
 * — when loaded — events, the form/event mapping and the repeating
 * instruments and events.
 *
 * Built from either form REDCap offers:
 *   - content=metadata as JSON: an array of objects with 18 snake_case keys
 *     (field_name, form_name, ..., field_annotation);
 *   - the data dictionary CSV users download and upload (18 columns under
 *     human headers "Variable / Field Name", ...; RFC 4180 with quoted
 *     commas and newlines; a UTF-8 BOM is skipped; comma, semicolon or tab
 *     delimited), or content=metadata&format=csv (snake_case headers).
 * Then, optionally, content=project, content=event, content=formEventMapping
 * and content=repeatingFormsEvents answers.
 *
 * Sans-IO like the rest of redcap/: bytes in, a model out. Lookups are by
 * binary search over sorted indexes (no hash to flood).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redcap/redcap.h"

/* The 18 dictionary columns, in REDCap's order. */
enum {
	REDCAP_COL_FIELD_NAME = 0,
	REDCAP_COL_FORM_NAME,
	REDCAP_COL_SECTION_HEADER,
	REDCAP_COL_FIELD_TYPE,
	REDCAP_COL_FIELD_LABEL,
	REDCAP_COL_CHOICES,            /* choices, calculations or slider labels */
	REDCAP_COL_FIELD_NOTE,
	REDCAP_COL_VALIDATION,         /* text validation type or show slider number */
	REDCAP_COL_VALIDATION_MIN,
	REDCAP_COL_VALIDATION_MAX,
	REDCAP_COL_IDENTIFIER,
	REDCAP_COL_BRANCHING_LOGIC,
	REDCAP_COL_REQUIRED,
	REDCAP_COL_CUSTOM_ALIGNMENT,
	REDCAP_COL_QUESTION_NUMBER,
	REDCAP_COL_MATRIX_GROUP,
	REDCAP_COL_MATRIX_RANKING,
	REDCAP_COL_ANNOTATION,
	REDCAP_DD_COLUMNS              /* 18 */
};

/* "field_name" ... "field_annotation" (metadata JSON keys, API CSV headers). */
const char *redcap_dd_column_key(int col);
/* "Variable / Field Name" ... "Field Annotation" (data dictionary CSV). */
const char *redcap_dd_column_header(int col);

typedef enum redcap_field_type {
	REDCAP_FIELD_TEXT = 0,
	REDCAP_FIELD_NOTES,
	REDCAP_FIELD_RADIO,
	REDCAP_FIELD_DROPDOWN,         /* "dropdown" in dictionaries, "select" internally */
	REDCAP_FIELD_CHECKBOX,
	REDCAP_FIELD_YESNO,
	REDCAP_FIELD_TRUEFALSE,
	REDCAP_FIELD_CALC,
	REDCAP_FIELD_FILE,
	REDCAP_FIELD_DESCRIPTIVE,
	REDCAP_FIELD_SLIDER,
	REDCAP_FIELD_SQL,
} redcap_field_type;

/* "text", "notes", "radio", "dropdown", ... */
const char *redcap_field_type_name(redcap_field_type t);

/* Text validation types (REDCap 15's redcap_validation_types table, plus
 * the legacy names int, float, date, datetime, datetime_seconds which
 * REDCap maps to integer, number, date_ymd, datetime_ymd,
 * datetime_seconds_ymd). */
typedef enum redcap_vtype {
	REDCAP_V_NONE = 0,
	REDCAP_V_DATE_YMD, REDCAP_V_DATE_MDY, REDCAP_V_DATE_DMY,
	REDCAP_V_DATETIME_YMD, REDCAP_V_DATETIME_MDY, REDCAP_V_DATETIME_DMY,
	REDCAP_V_DATETIME_SECONDS_YMD, REDCAP_V_DATETIME_SECONDS_MDY, REDCAP_V_DATETIME_SECONDS_DMY,
	REDCAP_V_TIME,                 /* HH:MM */
	REDCAP_V_TIME_HH_MM_SS,
	REDCAP_V_TIME_MM_SS,
	REDCAP_V_INTEGER,
	REDCAP_V_NUMBER,
	REDCAP_V_NUMBER_DP,            /* number_1dp .. number_4dp (decimals) */
	REDCAP_V_NUMBER_COMMA,         /* number_comma_decimal */
	REDCAP_V_NUMBER_DP_COMMA,      /* number_1dp_comma_decimal .. _4dp_ */
	REDCAP_V_EMAIL,
	REDCAP_V_PHONE,                /* North America */
	REDCAP_V_PHONE_AUSTRALIA,
	REDCAP_V_PHONE_UK,
	REDCAP_V_PHONE_FRANCE,
	REDCAP_V_ZIPCODE,
	REDCAP_V_POSTALCODE_AUSTRALIA,
	REDCAP_V_POSTALCODE_CANADA,
	REDCAP_V_POSTALCODE_FRENCH,
	REDCAP_V_POSTALCODE_GERMANY,
	REDCAP_V_POSTALCODE_UK,
	REDCAP_V_ALPHA_ONLY,
	REDCAP_V_MRN_10D,
	REDCAP_V_MRN_GENERIC,
	REDCAP_V_VMRN,
	REDCAP_V_SSN,
	REDCAP_V_OTHER,                /* a site-specific type this module does not know:
					  values are not checked (REDCap will) */
} redcap_vtype;

/* One choice of a radio/dropdown/checkbox/yesno/truefalse field. */
typedef struct redcap_choice {
	char *code;      /* raw value, as written ("1", "-1", "A.b") */
	char *label;
	char *column;    /* checkbox export column field___code (code lower-cased,
			    '-' and '.' as '_'); NULL for other types */
} redcap_choice;

typedef struct redcap_field {
	char *name;
	size_t form;                   /* index into redcap_dict.forms */
	redcap_field_type type;
	char *raw[REDCAP_DD_COLUMNS];  /* every column as given ("" when empty); for
					  implicit fields as REDCap would export them */
	redcap_vtype vtype;            /* text fields only; NONE otherwise */
	unsigned decimals;             /* NUMBER_DP / NUMBER_DP_COMMA: 1..4 */
	const char *min, *max;         /* = raw[VALIDATION_MIN/MAX] */
	redcap_choice *choices;        /* parsed for radio, dropdown, checkbox; fixed for
					  yesno (1 Yes, 0 No), truefalse (1 True, 0 False)
					  and <form>_complete (0, 1, 2) */
	size_t n_choices;
	bool identifier;               /* Identifier? = y */
	bool required;                 /* Required Field? = y */
	bool force_minmax;             /* @FORCE-MINMAX in the annotation */
	bool pseudo_calc;              /* @CALCTEXT / @CALCDATE: calculated, import ignored */
	bool implicit;                 /* a <form>_complete field added by the model */
	unsigned line;                 /* CSV line the field starts on; 0 otherwise */
} redcap_field;

typedef struct redcap_form {
	char *name;
	size_t first;                  /* index of its first field */
	size_t n_fields;               /* its fields, the <form>_complete field last */
	size_t complete;               /* index of <form>_complete */
	bool repeating;                /* classic projects: a repeating instrument */
} redcap_form;

typedef struct redcap_event {
	char *unique_name;             /* "baseline_arm_1" */
	char *name;                    /* "Baseline" ("" if only known from the mapping) */
	unsigned arm;                  /* arm_num, 0 if unknown */
	size_t *forms;                 /* designated forms (indexes), from formEventMapping */
	size_t n_forms;
	size_t *repeat_forms;          /* repeating instruments in this event */
	size_t n_repeat_forms;
	bool repeat_whole;             /* a repeating event (all its forms together) */
} redcap_event;

typedef struct redcap_arm {
	unsigned num;                  /* arm_num */
	char *name;                    /* "Arm 1" */
} redcap_arm;

typedef struct redcap_dict_index redcap_dict_index;

typedef struct redcap_dict {
	redcap_field *fields;          /* dictionary order; <form>_complete after each form */
	size_t n_fields;
	redcap_form *forms;            /* first-appearance order */
	size_t n_forms;
	redcap_event *events;          /* content=event order, then any only seen in the mapping */
	size_t n_events;
	redcap_arm *arms;              /* content=arm, when loaded */
	size_t n_arms;
	int longitudinal;              /* -1 unknown, 0 classic, 1 longitudinal */
	int repeating;                 /* -1 unknown, 0 none, 1 repeating instruments/events exist */
	bool have_mapping;             /* formEventMapping loaded */
	redcap_dict_index *index;      /* private lookup tables */
} redcap_dict;

#define REDCAP_DICT_NULL { .longitudinal = -1, .repeating = -1 }

/* Hard limits; larger inputs give REDCAP_E_TOO_LARGE. */
#define REDCAP_DICT_MAX_BYTES ((size_t)256 << 20)
#define REDCAP_DICT_MAX_FIELDS 100000
#define REDCAP_NAME_MAX 100            /* field names (REDCap's limit) */

/*
 * Parse content=metadata JSON into d (which is reset first; on failure it is
 * left empty). Every element must be an object with string values (numbers
 * are rendered, null is ""); field_name, form_name and field_type are
 * required, other keys default to "", unknown keys are ignored.
 * Returns 0, REDCAP_E_JSON (err has line:column), REDCAP_E_SHAPE (err names
 * "metadata[i].key"), REDCAP_E_DICT (see below), REDCAP_E_TOO_LARGE, -ENOMEM.
 */
int redcap_dict_parse_json(redcap_dict *d, const char *buf, size_t len, redcap_error *err);

/*
 * Parse a data dictionary CSV into d (reset first; left empty on failure).
 * The header row names the columns (human or snake_case headers, any
 * order, case-insensitive); Variable / Field Name, Form Name and Field Type
 * are required, the others optional, an unknown header is an error. Blank
 * lines are skipped; a row with more cells than the header is an error.
 * Returns 0, REDCAP_E_CSV (syntax; err has line:column), REDCAP_E_DICT
 * (err has the line:column of the offending cell), REDCAP_E_TOO_LARGE,
 * -ENOMEM.
 */
int redcap_dict_parse_csv(redcap_dict *d, const char *buf, size_t len, redcap_error *err);

/*
 * REDCAP_E_DICT is returned for what REDCap's dictionary upload refuses:
 * a missing or malformed field name (lower-case letters, digits and '_',
 * starting with a letter, no "___", at most 100 bytes) or form name (same
 * alphabet, at most 64 bytes), a duplicated field name, a form that comes
 * back after another form started, an unknown field type, a validation
 * type on a non-text field, a radio/dropdown/checkbox field without
 * choices, an empty or duplicated choice code, a field named like an
 * implicit <form>_complete field, and a dictionary without fields. Unknown
 * validation type names are accepted as REDCAP_V_OTHER.
 */

/*
 * Optional extras, each after the dictionary was parsed (-EINVAL before).
 * All return 0,
 * REDCAP_E_JSON, REDCAP_E_SHAPE (err names the element), -ENOMEM; on
 * failure d keeps what it had before the call.
 */

/* From content=project: sets d->longitudinal and d->repeating when known. */
void redcap_dict_set_project(redcap_dict *d, const redcap_project *p);

/* content=event: [{"event_name","arm_num","unique_event_name",...}].
 * Replaces the event list (and any mapping); sets longitudinal = 1. */
int redcap_dict_load_events(redcap_dict *d, const char *buf, size_t len, redcap_error *err);

/* content=arm: [{"arm_num","name"}]. Replaces the arms (used to name
 * events in messages). */
int redcap_dict_load_arms(redcap_dict *d, const char *buf, size_t len, redcap_error *err);

/* content=formEventMapping: [{"arm_num","unique_event_name","form"}].
 * Events not loaded before are added (name ""). An unknown form is
 * REDCAP_E_SHAPE. Sets have_mapping and longitudinal = 1. */
int redcap_dict_load_form_event_mapping(redcap_dict *d, const char *buf, size_t len,
					redcap_error *err);

/* content=repeatingFormsEvents: [{"event_name","form_name","custom_form_label"}].
 * event_name "" (classic projects) marks forms repeating in the one event;
 * form_name "" marks the event as a repeating event. Sets repeating to 1
 * if any entry, else 0. An unknown form or event is REDCAP_E_SHAPE. */
int redcap_dict_load_repeating(redcap_dict *d, const char *buf, size_t len, redcap_error *err);

/* Free everything; d is reset to REDCAP_DICT_NULL. Idempotent. */
void redcap_dict_deinit(redcap_dict *d);

/* The record id field: the first field of the dictionary (NULL if empty). */
const redcap_field *redcap_dict_record_id(const redcap_dict *d);

/* A field by name (implicit <form>_complete fields included), or NULL. */
const redcap_field *redcap_dict_field(const redcap_dict *d, const char *name);

/*
 * An import/export column: a field name, or a checkbox column
 * field___code (matched as REDCap formats codes: lower-cased, '-' and '.'
 * as '_'). Returns the field, with *choice (when non-NULL) set to the
 * checkbox choice or NULL; NULL if the column is not a field. A bare
 * checkbox field name resolves to the field with *choice NULL.
 */
const redcap_field *redcap_dict_column(const redcap_dict *d, const char *column,
				       const redcap_choice **choice);

const redcap_form *redcap_dict_form(const redcap_dict *d, const char *name);
const redcap_event *redcap_dict_event(const redcap_dict *d, const char *unique_name);

/*
 * The event as REDCap names it in messages: "Screening (Arm 1: Main)" —
 * the event name (its unique name if only that is known), the arm number
 * and the arm's name ("Arm N", REDCap's default, if arms were not loaded).
 * malloc'd or NULL on ENOMEM.
 */
char *redcap_event_label(const redcap_dict *d, const redcap_event *ev);

/* Index of a form pointer within d. */
size_t redcap_dict_form_index(const redcap_dict *d, const redcap_form *f);

/* Is the form designated for the event? True when the mapping is not loaded. */
bool redcap_dict_form_in_event(const redcap_dict *d, const redcap_event *ev, size_t form);

/* Does the form repeat in this event (ev NULL: classic project)? */
bool redcap_dict_form_repeats(const redcap_dict *d, const redcap_event *ev, size_t form);

/*
 * The columns of a flat export, in REDCap's order: record id, then (when
 * known) redcap_event_name, redcap_repeat_instrument,
 * redcap_repeat_instance, then every field's columns (checkbox fields one
 * per choice; descriptive fields none). Returns a new JSON array of strings
 * or NULL on ENOMEM.
 */
json_t *redcap_dict_export_columns(const redcap_dict *d);

/* The checkbox column name for field + code: field___code with the code
 * lower-cased and '-' / '.' replaced by '_'. malloc'd or NULL. */
char *redcap_checkbox_column(const char *field, const char *code);
