// REDCap's own answer texts, in one place, each with where it was checked.
// Keep them verbatim: users and clients search for them.
//
// Sources (quoted in comments below as [S1]... ):
//  [S1] REDCap source, API/index.php + Classes/RestUtility.php of a recent
//       release (the 13.x-15.x line; same texts in 15.7.6's API/* files that
//       are public, e.g. xOops4/redcap html/redcap_v15.7.6/API/project/export.php)
//       — found by exact-string search of public copies of the REDCap source.
//  [S2] REDCap source, Classes/Logging.php (checkBannedIp / storeHashedIp).
//  [S3] REDCap source, Config/init: "Specific message for API requests" out of
//       memory handler.
//  [S4] ../../shared/REDCAP-API.md (the project's reference; REDCap's English
//       language file texts).
//  [S5] medizininformatik-initiative/INTERPOLAR issue #308 (a real REDCap 14
//       answer, quoted in full).
//  [S6] redcap-tools/PyCap issue #142 and #154 (real REDCap answers).
//  [S7] redcap-tools/PyCap tests/unit/callback_utils.py (mock answers written
//       from a real server).
//  [S8] A public script recording real REDCap answers to bad imports
//       (json_data_bad1..5: invalid events, unknown fields, bad categories).
//  [S9] Old REDCap API/record/import.php (v5/6 era), still the only public
//       text for a few whole-request errors; marked where used.
//  [S10] REDCap 15.7.6's English language file, LanguageUpdater/English.ini
//       (public copy: xOops4/redcap, redcap_v15.7.6/LanguageUpdater/English.ini),
//       quoted by key (data_import_tool_NNN). Where REDCap builds a message
//       from several keys, the join is as a real answer shows it ([S5] [S6])
//       or, when none is public, a single space (marked "join unverified").
//  [S11] REDCap's own UI feature tests, vanderbilt-redcap/redcap_rsvc,
//       "Feature Tests/B/..." data import scenarios (B.3.16.x): the M/D/Y
//       variants of the date/datetime messages as REDCap shows them.
//  [S12] REDCap 15.7.6's Classes/Records.php (saveData) and API/index.php,
//       public copy xOops4/redcap redcap_v15.7.6/: which column a message
//       quotes, slider checks, the order of the instance checks, the
//       escaping of per-value error lines, returnContent defaults.
// Texts marked UNVERIFIED had no public source; they follow the pattern of
// their neighbours and are listed in tests/servers/README.md.

export const MSG = {
  // [S1] RestUtility::sendResponse default bodies.
  notImplemented: 'The requested method is not implemented.',
  noPermission: 'You do not have permissions to use the API',
  // [S1] API/index.php rights checks.
  noExport: 'You do not have API Export privileges',
  noImport: 'You do not have API Import/Update privileges',
  badContent: 'The value of the parameter "content" is not valid',
  // [S4] $lang['info_65'] (project offline) and the system-offline text (also
  // checked against REDCap's UI tests, vanderbilt-redcap/redcap_rsvc).
  projectOffline: 'This project is currently OFFLINE and is not accessible to normal users.',
  systemOffline: 'REDCap is currently offline. Please return at another time. We apologize for any inconvenience.',
  // [S3] exact text, sent with status 500.
  outOfMemory:
    'REDCap ran out of server memory. The request cannot be processed. Please try importing/exporting a smaller amount of data.',
  // [S2] plain text, no error envelope, HTTP 429.
  banned: (ip) => `Your IP address (${ip}) has been banned due to suspected abuse.`,
  // [S1] RestUtility::processRequest, json_last_error_msg() in the middle
  // ("Syntax error" for bad JSON; "No error" when the JSON is valid but not
  // an array of objects — the emulator's choice for that case).
  jsonFormat: (phpError) =>
    `The data being imported is not formatted correctly. PHP error from JSON decoder: ${phpError}. The JSON must be in an array, as in [{ ... }].`,
  // [S4]; [S12] data_import_tool_212 + the record id field + 213: a flat
  // row without the record id column OR with a blank record name (saveData's
  // flat-row loop: "if ($studyId == '') throw ...212.table_pk.213").
  recordIdMissing: (field) => `The record id field (${field}) is missing.`,
  // [S10] data_import_tool_211: the EAV path's text for a blank record name
  // ([S12]: type=eav only; flat rows get recordIdMissing).
  recordEmpty: 'The record name cannot be empty.',
  // [S12] data_import_tool_214: a blank redcap_event_name (the column is
  // there) on a longitudinal project.
  eventNameMissing: 'The record event name is missing.',
  // [S8] real answer: "...real data fields: foo, baz"; [S12] 218 + " " +
  // htmlspecialchars(implode(", ", ...), ENT_QUOTES).
  unknownFields: (list) => `The following fields were not found in the project as real data fields: ${htmlSpecialChars(list.join(', '))}`,
  // [S8] real answer: "...redcap_event_name are invalid: visit_11_arm_1, visit_12_arm_1";
  // [S12] 219 + " " + htmlspecialchars(implode(", ", ...), ENT_QUOTES).
  invalidEvents: (list) => `The following values of redcap_event_name are invalid: ${htmlSpecialChars(list.join(', '))}`,
  // [S12] data_import_tool_220 + " " + implode(", ", names): a data access
  // group name the project does not have (the emulator has no groups).
  invalidDags: (list) => `The following Data Access Group are invalid for the redcap_data_access_group field: ${list.join(', ')}`,
  // [S4] gives the text up to "are reserved ..."; [S10] "ERROR: " +
  // data_import_tool_252 + " " + 253 (253 verbatim, with REDCap's double
  // space in "been  enabled"; the join is as REDCAP-API.md shows it).
  repeatFieldsNotEnabled:
    "ERROR: Trying to import repeat instance/instrument fields! The fields 'redcap_repeat_instrument' and 'redcap_repeat_instance' are reserved for when 'Repeating Instruments and Events' have been  enabled on the Project Setup page. This project does not have that feature enabled, so you may not import data with those fields.",
  // [S4] and [S9] (same text in the old import.php).
  badRecordChars: (record) =>
    `The record name (${record}) cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe.`,
  // [S10] data_import_tool_233; [S12] + " " + the name, when the name is
  // longer than 100 bytes (PHP strlen).
  recordTooLong: (record) =>
    `Record names must be 100 characters or less in length. The following record name is too long and thus cannot be imported: ${record}`,
  // [S10] data_import_tool_384; [S12] + " " + the name once br2nl() turned
  // its <br> tags into line breaks.
  recordLineBreak: (record) =>
    `Record names cannot contain BR tags, line breaks, or carriage return characters. The following record name contains a BR tag, line break, or carriage return, and thus cannot be imported: ${record}`,
  // [S4]; [S10] data_import_tool_215 + record + data_import_tool_406 + " " + value.
  // [S12] also for "0": the flat-row check (not an integer, or below 1) comes
  // before the one that would give data_import_tool_279 ("... cannot have the
  // 'redcap_repeat_instance' field with a value of '0' ..."), which flat
  // imports never reach.
  badInstance: (record, value) =>
    `The record name (${record}) has an invalid value for 'redcap_repeat_instance'. The value must either be a positive integer or the value 'new'. Value provided: ${value}`,
  // [S12] a per-value line, not a whole-request error: "(" + where + ") " +
  // "redcap_repeat_instance " + data_import_tool_286, where is
  // redcap_event_name="e" on a longitudinal project, else
  // redcap_repeat_instrument="i". (An instance above 32767.)
  instanceRange: (where) =>
    `(${where}) redcap_repeat_instance must have a numeric value between '1' and '32767' for any Repeating Event or Repeating Instrument.  Please add a valid numeric value to redcap_repeat_instance in the data import file and try again.`,
  // [S12] 215 + record + 282 + ' "event" ' + 283: a repeating event's row
  // without a redcap_repeat_instance column.
  repeatingEventNoInstance: (record, event) =>
    `The record name (${record}) with event "${event}" cannot be imported. This is because this event is a repeating event, but the field 'redcap_repeat_instance' could not be found in the data import fields.  In order to import data for a repeating event, the field 'redcap_repeat_instance' is required in the imported data set.`,
  // [S12] 215 + record + 284 + ' "instance" ' + 285: a classic project's
  // numeric instance without an instrument.
  instanceNoInstrument: (record, instance) =>
    `The record name (${record}) with redcap_repeat_instance "${instance}" cannot be imported. This is because the field 'redcap_repeat_instrument' could not be found in the data import fields or because it has a blank value.  In order to import data for a repeating instrument, the field 'redcap_repeat_instrument' is required in the imported data set.`,
  // [S4] / [S1]-style message for unknown export names. REDCapR's docs quote
  // an older variant without the quotes around fields ("parameter fields").
  invalidParamValues: (param, list) =>
    `The following values in the parameter "${param}" are not valid: ${list.map((v) => `'${v}'`).join(', ')}`,
  // UNVERIFIED: REDCap's answers to a malformed dateRangeBegin/End or an
  // unsupported filterLogic.
  invalidParam: (param) => `The value of the parameter "${param}" is not valid`,
  // [S4] (events) and [S7] (arms, form/event mappings), 400 on classic projects.
  classicEvents: 'You cannot export events for classic projects',
  classicArms: 'You cannot export arms for classic projects',
  classicMappings: 'You cannot export form/event mappings for classic projects',

  // Per-value errors (one CSV-like line each, see valueError below).
  // [S4] [S8] "The value is not a valid category for maristat"
  badCategory: (field) => `The value is not a valid category for ${field}`,
  // [S4] and REDCap's UI tests (redcap_rsvc B.3.16.x)
  badFormat: 'The value you provided could not be validated because it does not follow the expected format. Please try again.',
  // [S4]; [S10] data_import_tool_190 (date_* with dateFormat=YMD).
  badDate:
    'Invalid date format. (NOTE: Dates must be imported here only in Y-M-D format, regardless of the specific date format designated for this field.)',
  // [S10] data_import_tool_238 / 239: date_* with dateFormat=MDY / DMY;
  // [S11] shows 238 verbatim in REDCap's UI.
  badDateMdy:
    'Invalid date format. (NOTE: Dates must be imported here only in M/D/Y format or Y-M-D format, regardless of the specific date format designated for this field.)',
  badDateDmy:
    'Invalid date format. (NOTE: Dates must be imported here only in D/M/Y format or Y-M-D format, regardless of the specific date format designated for this field.)',
  // [S10] data_import_tool_193: ONE text for every datetime_* and
  // datetime_seconds_* type with dateFormat=YMD, "Y-M-D H:M[:S]" literally
  // (the same "Invalid date format." / "Dates" wording as the date text).
  // REDCAP-API.md's "Y-M-D H:M / Y-M-D H:M:S" only says which formats are
  // accepted; the emulator had one invented text per variant before. The C
  // validator (REDCAP_MSG_DATETIME) has this text. An "Invalid datetime
  // format. (NOTE: Dates must ... Y-M-D H:M[:S] or M/D/Y H:M[:S] ...)" text
  // exists (data_import_tool_150) but is the old Data Import Tool's, not
  // chosen by dateFormat.
  badDatetime:
    'Invalid date format. (NOTE: Dates must be imported here only in Y-M-D H:M[:S] format, regardless of the specific date format designated for this field.)',
  // [S10] data_import_tool_194 / 195 (dateFormat=MDY / DMY); [S11] shows 194
  // verbatim.
  badDatetimeMdy:
    'Invalid date format. (NOTE: Dates must be imported here only in M/D/Y H:M[:S] format, regardless of the specific date format designated for this field.)',
  badDatetimeDmy:
    'Invalid date format. (NOTE: Dates must be imported here only in D/M/Y H:M[:S] format, regardless of the specific date format designated for this field.)',
  // [S4]
  badCheckbox: (column) =>
    `${column} is a checkbox field and thus can only have a value of '1' (checked) or '0' (unchecked).`,
  // [S12] "<field> " + data_import_tool_299: a slider value that is not an integer.
  notInteger: (field) => `${field} must be an integer`,
  // [S4]; [S10] data_import_tool_223 / 225, "field key (bound)" as [S9];
  // [S12] also for sliders (always a hard check, 0..100 by default).
  belowMin: (field, min) => `${field} should not be less than the field minimum (${min})`,
  aboveMax: (field, max) => `${field} should not be greater than the field maximum (${max})`,
  // [S5] verbatim, including the two spaces before "You are".
  repeatingWithoutColumns: (field, form) =>
    `This field ('${field}') exists on a Repeating Instrument named '${form}'. However, the fields 'redcap_repeat_instance' and/or 'redcap_repeat_instrument' for this row of data have no value, which are both required for importing data into a Repeating Instrument.  You are not allowed to import data for this field into a non-repeating instrument.`,
  // [S10] data_import_tool_162 + " ('field') " + 260 + " 'form'. " + 261,
  // joined like its neighbours 262/263 ([S5]); no real answer is public.
  // The C validator reports the same text.
  notOnRepeatingInstrument: (field, form) =>
    `This field ('${field}') does not exist on the Repeating Instrument named '${form}'. You are not allowed to import data for this field into this Repeating Instrument.`,
  // [S6] #142 verbatim; the event is named by its label and arm
  // ("Screening (Arm 1: HeiSIS Screening)").
  notDesignated: (field, eventLabel) =>
    `This field ('${field}') exists on an instrument that is not designated for the event named '${eventLabel}'. You are not allowed to import data for this field into this event.`,
  // [S6] #154 verbatim (spacing as in the answer); [S10] 259 and 281.
  notRepeatingInstrument:
    'redcap_repeat_instrument must be the unique form name of a Repeating Instrument. It currently does not match the unique form name of any Repeating Instruments.  Please fix this in the data import file and try again.',
  // [S12] '(redcap_event_name="e") redcap_repeat_instrument ' +
  // data_import_tool_255: an instrument given on a row of a repeating event.
  repeatEventInstrument: (event) =>
    `(redcap_event_name="${event}") redcap_repeat_instrument should not have a value. This is a Repeating Event, which must always have a blank value for the redcap_repeat_instrument field.  Please remove this value from the data import file and try again.`,
  notRepeatingInstance:
    'redcap_repeat_instance cannot have a value since this instrument or event is not a repeating instrument or repeating event, respectively.  The redcap_repeat_instance field must be left blank for this row of data.',
};

/* PHP's htmlspecialchars($s, ENT_QUOTES). */
export function htmlSpecialChars(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#039;');
}

/*
 * One per-value error line, as REDCap joins them: "record","field","value","message".
 * [S12]: record, value and message have their double quotes doubled (CSV
 * style), the message's line breaks and tabs become spaces; the field name is
 * written as is. ([S5] [S6] [S8] show answers without quotes to escape.) The
 * C side renders its lines the same way (redcap_errors_format).
 */
export function valueError(record, field, value, message) {
  const q = (s) => String(s).replace(/"/g, '""');
  return `"${q(record)}","${field}","${q(value)}","${q(String(message).replace(/\r\n|\n|\t/g, ' '))}"`;
}
