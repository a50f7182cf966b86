/*
 * redcap/validate.h — check import rows against the data dictionary before
 * they are sent, with REDCap's own messages, so that bad rows can be held
 * back (and shown to a human) while the good ones are sent: REDCap saves
 * nothing from a request with a single bad value.
 *
 * Messages are REDCap 15.7.6's (English language file,
 * LanguageUpdater/English.ini; how they are put together follows
 * API/record/import.php of REDCap 5.2.3 and the REDCap 15 data import
 * tests). Where REDCap joins several language strings, the joins are as
 * REDCAP-API.md gives them. The texts are also exported below as
 * REDCAP_MSG_* so that tests and the REDCap emulator can share them.
 *
 * What is checked, per row (a JSON object column -> value):
 *   - the record id column is present (REDCAP_ERR_REQUEST) and not blank;
 *     the record name (trimmed) has no + & # ' nor line breaks / <br> and is
 *     at most 100 characters;
 *   - every column is a real data field (fields, checkbox columns,
 *     <form>_complete, redcap_event_name, redcap_repeat_instrument,
 *     redcap_repeat_instance, redcap_data_access_group,
 *     redcap_survey_identifier, <form>_timestamp); the others are listed in
 *     one REDCAP_ERR_REQUEST error;
 *   - redcap_event_name names a known event (when events are loaded);
 *   - redcap_repeat_* columns only in projects with repeating
 *     instruments/events; redcap_repeat_instance a positive integer (at
 *     most 32767) or "new"; with the repeating setup loaded:
 *     redcap_repeat_instrument a form that repeats in the row's event, an
 *     instance only for a repeating instrument or event (a row that fails
 *     these is not checked further, like REDCap does);
 *   - per value (blank values are always fine; values are trimmed like
 *     REDCap does): choices, checkbox 0/1, validation types (dates must be
 *     Y-M-D whatever the field's display format, real calendar dates),
 *     @FORCE-MINMAX ranges, sliders (an integer within min..max, 0..100 by
 *     default, always enforced), fields of repeating instruments need repeat
 *     columns, fields must be on a form designated for the row's event
 *     (named as redcap_event_label() does).
 *   Calculated fields (calc, @CALCTEXT, @CALCDATE), file fields and sql
 *   fields are not checked (REDCap ignores or cannot check them); soft
 *   range violations and ignored columns are reported as warnings when the
 *   caller asks for them.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "redcap/dictionary.h"
#include "redcap/redcap.h"

/*
 * Messages without parameters, verbatim from REDCap 15.7.6's English.ini:
 * VALIDATION is config_functions_77 (every validated text type but dates),
 * DATE data_import_tool_190 (date_* with dateFormat=YMD), DATETIME
 * data_import_tool_193 (every datetime and datetime_seconds type; REDCap
 * has one text "Y-M-D H:M[:S]" for both, not one per variant),
 * RECORD_EMPTY data_import_tool_211, REPEAT_NOT_ENABLED "ERROR: " +
 * data_import_tool_252 + 253 (with REDCap's double space after "been"),
 * CALC_IGNORED data_import_tool_197 (reported as a warning).
 * NOT_REPEATING_INSTRUMENT and _INSTANCE are "redcap_repeat_instrument " +
 * data_import_tool_259 and "redcap_repeat_instance " + 281, as a real
 * answer shows them (PyCap issue #154); REPEAT_EVENT_INSTRUMENT is 255
 * joined the same way (not seen in a real answer).
 */
#define REDCAP_MSG_VALIDATION \
	"The value you provided could not be validated because it does not follow the expected format. Please try again."
#define REDCAP_MSG_DATE \
	"Invalid date format. (NOTE: Dates must be imported here only in Y-M-D format, regardless of the specific date format designated for this field.)"
#define REDCAP_MSG_DATETIME \
	"Invalid date format. (NOTE: Dates must be imported here only in Y-M-D H:M[:S] format, regardless of the specific date format designated for this field.)"
#define REDCAP_MSG_RECORD_EMPTY "The record name cannot be empty."
#define REDCAP_MSG_REPEAT_NOT_ENABLED                                                              \
	"ERROR: Trying to import repeat instance/instrument fields! The fields 'redcap_repeat_instrument' and " \
	"'redcap_repeat_instance' are reserved for when 'Repeating Instruments and Events' have been  enabled on " \
	"the Project Setup page. This project does not have that feature enabled, so you may not import data with " \
	"those fields."
#define REDCAP_MSG_NOT_REPEATING_INSTRUMENT \
	"redcap_repeat_instrument must be the unique form name of a Repeating Instrument. It currently does not match the unique form name of any Repeating Instruments.  Please fix this in the data import file and try again."
#define REDCAP_MSG_NOT_REPEATING_INSTANCE \
	"redcap_repeat_instance cannot have a value since this instrument or event is not a repeating instrument or repeating event, respectively.  The redcap_repeat_instance field must be left blank for this row of data."
#define REDCAP_MSG_REPEAT_EVENT_INSTRUMENT \
	"redcap_repeat_instrument should not have a value. This is a Repeating Event, which must always have a blank value for the redcap_repeat_instrument field.  Please remove this value from the data import file and try again."
#define REDCAP_MSG_CALC_IGNORED \
	"Calculated fields cannot be imported because they will be calculated automatically during the import process.  All calculated fields will simply be ignored during the import."

typedef struct redcap_validate_opts {
	/* overwriteBehavior=overwrite: blank values erase saved data. Blank
	 * values stay valid either way; kept for callers that report it. */
	bool overwrite;
	/* Optional: soft findings REDCap accepts but warns about (range
	 * violations without @FORCE-MINMAX, calculated/file columns that will be
	 * ignored). NULL: not collected. */
	redcap_errors *warnings;
} redcap_validate_opts;

/*
 * Validate one row (a JSON object: column -> string; JSON integers and
 * reals are read as their text, null as blank; other JSON types are an
 * error). Appends every problem to errs with row = row_index. Returns 0 if
 * the row is fine, REDCAP_E_INVALID if at least one error was appended,
 * -ENOMEM (errs may hold part of the errors), -EINVAL if d or row is NULL
 * or row is not an object.
 */
int redcap_validate_row(const redcap_dict *d, const json_t *row, size_t row_index,
			const redcap_validate_opts *o, redcap_errors *errs);

/*
 * Validate every row of a JSON array. bad, when non-NULL, must hold
 * json_array_size(rows) entries: bad[i] is set to whether row i has an
 * error. Returns the number of bad rows (>= 0), or -ENOMEM / -EINVAL.
 * A non-object element is a bad row (message "The row is not a JSON
 * object.", a local message: REDCap would refuse the whole request).
 */
long redcap_validate_rows(const redcap_dict *d, const json_t *rows, const redcap_validate_opts *o,
			  redcap_errors *errs, bool *bad);

/*
 * Check one value for one column (a field, a checkbox column field___code,
 * or <form>_complete) without record context — for forms that capture a
 * single value (downtime charting). Blank is fine. Returns 0,
 * REDCAP_E_INVALID with *message set to REDCap's message (malloc'd),
 * REDCAP_E_UNKNOWN_FIELD if the column is not a real data field, -ENOMEM.
 * *message is NULL unless REDCAP_E_INVALID.
 */
int redcap_validate_value(const redcap_dict *d, const char *column, const char *value,
			  char **message);

/*
 * The value checks on their own, exposed for tests and the emulator. Each
 * takes the trimmed value and returns true if REDCap would accept it.
 */
bool redcap_check_date_ymd(const char *s);          /* YYYY-MM-DD or YYYY/MM/DD, real date */
bool redcap_check_datetime_ymd(const char *s, bool seconds); /* + " H:MM" / " H:MM:SS" ('T' allowed) */
bool redcap_check_integer(const char *s);           /* [-+]?digits */
bool redcap_check_number(const char *s);            /* [-+]?[0-9]*.?[0-9]+([eE][-+]?[0-9]+)? */
bool redcap_check_email(const char *s);
bool redcap_check_vtype(redcap_vtype t, unsigned decimals, const char *s);
