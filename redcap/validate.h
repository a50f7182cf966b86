/*
 * redcap/validate.h — check import rows against the data dictionary before
 * they are sent, with REDCap's own messages, so that bad rows can be held
 * back (and shown to a human) while the good ones are sent: REDCap saves
 * nothing from a request with a single bad value.
 *
 * Messages are REDCap 15.7.6's (English language file,
 * LanguageUpdater/English.ini), put together as its Classes/Records.php
 * (saveData) does; where no public source shows a join, it is marked
 * UNVERIFIED. The texts are also exported below as REDCAP_MSG_* so that
 * tests and the REDCap emulator can share them.
 *
 * What is checked, per row (a JSON object column -> value), the way REDCap
 * 15.7.6 imports a flat row (Classes/Records.php, saveData):
 *   - whole-request errors (REDCAP_ERR_REQUEST; REDCap throws at the first,
 *     so a row keeps only its first), in REDCap's order: repeat columns on
 *     a project without repeating instruments/events; the record name
 *     (trimmed): blank or missing ("The record id field (x) is missing."),
 *     more than 100 bytes, a line break or <br> tag, + & # or '; a blank
 *     redcap_event_name on a longitudinal project; an instance that is not
 *     a positive integer or "new"; a repeating event's row without a
 *     redcap_repeat_instance column; a classic project's numeric instance
 *     without an instrument; columns that are no real data fields (fields,
 *     checkbox columns, <form>_complete, redcap_event_name,
 *     redcap_repeat_instrument, redcap_repeat_instance,
 *     redcap_data_access_group, redcap_survey_identifier, <form>_timestamp
 *     are); an unknown event; a non-blank redcap_data_access_group (the
 *     dictionary holds no data access groups: every name is refused, as on
 *     a project without them);
 *   - per-column lines (REDCAP_ERR_VALUE), in the row's order, one per
 *     column with the last message REDCap would give it: the instrument of
 *     a repeating event's row or one that does not repeat; an instance
 *     above 32767 or where nothing repeats; values (blank values are always
 *     fine; values are trimmed): choices, checkbox 0/1, validation types
 *     (dates as REDCap turns them first -- one-digit months and days, a
 *     2-digit year, '-' or '/', a datetime's missing time -- see
 *     redcap_normalize_date; real calendar dates), @FORCE-MINMAX ranges,
 *     sliders (an integer within min..max, 0..100 by default, always
 *     enforced); then placement, which replaces a value's message: a field
 *     of another form on a repeating instrument's row, a field of a
 *     repeating instrument without both repeat columns, a field on a form
 *     not designated for the row's event (named as redcap_event_label()
 *     does). A checkbox "0" is not checked (REDCap leaves a box never
 *     checked alone), except against the event's forms without
 *     overwriteBehavior=overwrite.
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
 * RECORD_EMPTY data_import_tool_211 (EAV imports only: a flat row with a
 * blank record name gets "The record id field (x) is missing.", 212 + the
 * record id field + 213), REPEAT_NOT_ENABLED "ERROR: " +
 * data_import_tool_252 + 253 (with REDCap's double space after "been"),
 * CALC_IGNORED data_import_tool_197 (reported as a warning).
 * NOT_REPEATING_INSTRUMENT and _INSTANCE are "redcap_repeat_instrument " +
 * data_import_tool_259 and "redcap_repeat_instance " + 281, as a real
 * answer shows them (PyCap issue #154); REPEAT_EVENT_INSTRUMENT and
 * INSTANCE_RANGE are 255 and 286 joined the same way, and REDCap puts
 * "(redcap_event_name=\"e\") " (or, for the range on a classic project,
 * "(redcap_repeat_instrument=\"i\") ") before them (saveData).
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
#define REDCAP_MSG_INSTANCE_RANGE \
	"redcap_repeat_instance must have a numeric value between '1' and '32767' for any Repeating Event or Repeating Instrument.  Please add a valid numeric value to redcap_repeat_instance in the data import file and try again."
#define REDCAP_MSG_CALC_IGNORED \
	"Calculated fields cannot be imported because they will be calculated automatically during the import process.  All calculated fields will simply be ignored during the import."

typedef struct redcap_validate_opts {
	/* overwriteBehavior=overwrite: blank values erase saved data. Blank
	 * values stay valid either way; REDCap then does not check an instance
	 * where nothing repeats, nor a checkbox "0" against the event's forms. */
	bool overwrite;
	/* A datetime without its time -- a date alone, an hour without
	 * minutes -- as REDCap 15.7.6 takes it: accepted and saved as 00:00
	 * (also seconds dropped from a datetime without seconds). false (the
	 * default, and what the bridge uses): refused with REDCap's datetime
	 * message. The bridge never lets REDCap invent a time (conf/README.md,
	 * transforms): a FHIR date sent for a datetime field is held back. */
	bool pad_time;
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
 * takes the value and returns true if REDCap would accept it.
 */
bool redcap_check_date_ymd(const char *s);          /* after redcap_normalize_date */
bool redcap_check_datetime_ymd(const char *s, bool seconds, bool pad_time); /* the same */
bool redcap_check_integer(const char *s);           /* [-+]?digits */
bool redcap_check_number(const char *s);            /* [-+]?[0-9]*.?[0-9]+([eE][-+]?[0-9]+)? */
bool redcap_check_email(const char *s);
/* Dates and datetimes with pad_time false. */
bool redcap_check_vtype(redcap_vtype t, unsigned decimals, const char *s);

/*
 * A value of a date_* or datetime_* field as REDCap 15.7.6 turns it before
 * it checks and saves it (dateFormat=YMD): one-digit months and days get
 * their 0, a 2-character year its century, a datetime's 'T' becomes ' ',
 * its time is rebuilt as HH:MM (or HH:MM:SS) from its first pieces -- a
 * missing time is 00:00 -- and the date part must then be YYYY-MM-DD or
 * YYYY/MM/DD, a real date, the time 0..23:00..59[:00..59]. Returns the
 * value REDCap would save (malloc'd; NULL on ENOMEM) and sets *ok to
 * whether REDCap accepts it. pad_time false: a datetime needs its time
 * (see redcap_validate_opts); without it *ok is false and s is returned.
 */
char *redcap_normalize_date(redcap_vtype t, const char *s, bool pad_time, bool *ok);
