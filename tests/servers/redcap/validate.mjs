// Per-value checks of the REDCap emulator's record import: choices, text
// validation types, dates, @FORCE-MINMAX ranges. Dates and datetimes are
// turned the way REDCap 15.7.6 turns them before it validates and saves
// them (Classes/Records.php, saveData, "Ensure all dates are in correct
// format"; see normalizeDate below); the C validator does the same
// (redcap/validate.c, redcap_normalize_date).
// Sources: ../../shared/REDCAP-API.md; REDCap 15.7.6 Classes/Records.php
// and Resources/sql/install_data.sql (public copy xOops4/redcap,
// redcap_v15.7.6/), REDCap 5.2.3 Config/init_functions.php for
// clean_date_ymd() (15.7.6's copy of that file is not public).

import { MSG } from './messages.mjs';

const NUM = /^[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$/;
const NUM_COMMA = /^[-+]?[0-9]*,?[0-9]+([eE][-+]?[0-9]+)?$/;
const INT = /^[-+]?\d+$/;
const EMAIL = /^([_a-z0-9\-']+)(\.[_a-z0-9\-']+)*@([a-z0-9-]+)(\.[a-z0-9-]+)*(\.[a-z]{2,63})$/i;

// install_data.sql, redcap_validation_types, regex_php of date_ymd,
// datetime_ymd and datetime_seconds_ymd (every date type is checked as its
// _ymd form on import: saveData's convertDateValidtionToYMD).
const DATE_YMD = String.raw`(((\d{2}([13579][26]|[2468][048]|04|08)|(1600|2[048]00))([-\/])02(\6)29)|(\d{4}([-\/])((0[1-9]|1[012])(\9)(0[1-9]|1\d|2[0-8])|((0[13-9]|1[012])(\9)(29|30))|((0[13578]|1[02])(\9)31))))`;
const RX_DATE = new RegExp(`^${DATE_YMD}$`);
const RX_DATETIME = new RegExp(`^${DATE_YMD} (\\d|[0-1]\\d|[2][0-3]):[0-5]\\d$`);
const RX_DATETIME_SECONDS = new RegExp(`^${DATE_YMD} (\\d|[0-1]\\d|[2][0-3])(:[0-5]\\d){2}$`);

const SIMPLE = {
  integer: INT,
  number: NUM,
  number_comma_decimal: NUM_COMMA,
  time_hh_mm_ss: /^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$/,
  time_mm_ss: /^[0-5][0-9]:[0-5][0-9]$/,
  email: EMAIL,
  zipcode: /^\d{5}(-\d{4})?$/,
  alpha_only: /^[a-z]+$/i,
  mrn_10d: /^\d{10}$/,
  mrn_generic: /^[a-z0-9_-]+$/i,
  ssn: /^\d{3}-\d\d-\d{4}$/,
  postalcode_canada: /^[ABCEGHJKLMNPRSTVXY]\d[A-Z]\s?\d[A-Z]\d$/i,
};

const PHP_SPACE = '[ \\t\\n\\r\\v\\f]';
const PHP_NUMBER = new RegExp(`^${PHP_SPACE}*([+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?)`);
const PHP_NUMERIC = new RegExp(`^${PHP_SPACE}*[+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?${PHP_SPACE}*$`);

/*
 * PHP's (int) of a string (PHP >= 7.1; sprintf's %d takes it): leading
 * white space, the numeric prefix, truncated toward zero; 0 without one.
 * undefined beyond +-2^53 (PHP's result is not modelled: refused).
 */
export function phpInt(s) {
  const m = PHP_NUMBER.exec(String(s ?? ''));
  if (!m) return 0;
  const v = Math.trunc(Number(m[1]));
  if (!(Math.abs(v) < 2 ** 53)) return undefined;
  return v === 0 ? 0 : v;
}

/* sprintf("%0<w>d", n): the sign counts in the width. */
function pad(n, w) {
  return n < 0 ? `-${String(-n).padStart(w - 1, '0')}` : String(n).padStart(w, '0');
}

/* PHP 8's ($year < lim): a numeric string compares as a number, another as text. */
function phpLess(s, lim) {
  return PHP_NUMERIC.test(s) ? Number(s.trim()) < lim : s < String(lim);
}

/* A 2-character year: 20yy below this year's two digits + 10, else 19yy. */
function century(year) {
  if (Buffer.byteLength(year) !== 2) return year;
  return (phpLess(year, (new Date().getFullYear() % 100) + 10) ? '20' : '19') + year;
}

/*
 * REDCap's clean_date_ymd() (REDCap 5.2.3 Config/init_functions.php;
 * UNVERIFIED for 15.7.6): trimmed; with exactly two '-' and shorter than
 * 10 bytes, rebuilt as sprintf("%04d-%02d-%02d") with a 2-character year
 * first given its century. undefined when a piece is beyond phpInt().
 */
export function cleanDateYmd(date) {
  const d = String(date).replace(/^[ \t\n\r\0\x0B]+|[ \t\n\r\0\x0B]+$/g, '');
  if ((d.match(/-/g) ?? []).length !== 2 || Buffer.byteLength(d) >= 10) return d;
  const [y, m, day] = d.split('-');
  const n = [phpInt(century(y)), phpInt(m), phpInt(day)];
  if (n.includes(undefined)) return undefined;
  return `${pad(n[0], 4)}-${pad(n[1], 2)}-${pad(n[2], 2)}`;
}

/* M/D/Y or D/M/Y (dateFormat MDY/DMY, a value with '/') as Y-M-D. */
function slashDate(s, dateFormat) {
  const parts = s.split('/');
  const [day, month, year] = dateFormat === 'DMY' ? parts : [parts[1], parts[0], parts[2]];
  const n = [phpInt(century(year ?? '')), phpInt(month ?? ''), phpInt(day ?? '')];
  if (n.includes(undefined)) return undefined;
  return `${pad(n[0], 4)}-${pad(n[1], 2)}-${pad(n[2], 2)}`;
}

/*
 * A date_* / datetime_* value as REDCap 15.7.6 saves it (saveData):
 *   datetime: every 'T' becomes ' ', the value is split at its first ' '
 *   into a date (M/D/Y or D/M/Y with dateFormat MDY/DMY when it has a '/',
 *   else clean_date_ymd()) and a time rebuilt with sprintf("%02d:%02d") or
 *   ("%02d:%02d:%02d") from its first pieces between ':' (without any ':'
 *   all are empty): a date alone becomes "date 00:00", an hour alone is
 *   lost (00:00), seconds are dropped for a datetime without seconds;
 *   date: M/D/Y or D/M/Y as above, else clean_date_ymd().
 * Returns the text, or undefined for a piece beyond phpInt().
 */
export function normalizeDate(validation, value, dateFormat = 'YMD') {
  const slashes = value.includes('/') && (dateFormat === 'MDY' || dateFormat === 'DMY');
  if (!validation.startsWith('datetime')) return slashes ? slashDate(value, dateFormat) : cleanDateYmd(value);
  const s = value.replace(/T/g, ' ');
  const sp = s.indexOf(' ');
  const date = sp < 0 ? s : s.slice(0, sp);
  const time = sp < 0 ? '' : s.slice(sp + 1);
  const d = slashes ? slashDate(date, dateFormat) : cleanDateYmd(date);
  const [h, mi, se] = time.includes(':') ? time.split(':') : ['', '', ''];
  const t = [phpInt(h), phpInt(mi ?? ''), phpInt(se ?? '')];
  if (d === undefined || t.includes(undefined)) return undefined;
  const clock = validation.startsWith('datetime_seconds') ? `${pad(t[0], 2)}:${pad(t[1], 2)}:${pad(t[2], 2)}` : `${pad(t[0], 2)}:${pad(t[1], 2)}`;
  return `${cleanDateYmd(d)} ${clock}`;
}

/* A plain "time" (HH:MM) value: both parts required. */
function normalizeClock(s) {
  const mt = /^(\d{1,2}):([0-5]\d)$/.exec(s);
  if (!mt || Number(mt[1]) > 23) return undefined;
  return `${mt[1].padStart(2, '0')}:${mt[2]}`;
}

/*
 * REDCap's message for a bad date/datetime by the import's dateFormat
 * (English.ini data_import_tool_190/238/239 and 193/194/195; see messages.mjs).
 */
function dateMessage(isDatetime, dateFormat) {
  if (isDatetime) return dateFormat === 'MDY' ? MSG.badDatetimeMdy : dateFormat === 'DMY' ? MSG.badDatetimeDmy : MSG.badDatetime;
  return dateFormat === 'MDY' ? MSG.badDateMdy : dateFormat === 'DMY' ? MSG.badDateDmy : MSG.badDate;
}

/*
 * Validates and normalizes one value of a text field with a validation type.
 * Returns { value } or { error, shown } (shown: the value as the error line
 * quotes it -- a date as REDCap turned it).
 */
function checkValidated(validation, v, dateFormat) {
  if (validation.startsWith('date')) {
    const datetime = validation.startsWith('datetime');
    const d = normalizeDate(validation, v, dateFormat);
    const rx = !datetime ? RX_DATE : validation.startsWith('datetime_seconds') ? RX_DATETIME_SECONDS : RX_DATETIME;
    if (d === undefined) return { error: dateMessage(datetime, dateFormat) }; // UNVERIFIED (a piece beyond 2^53)
    return rx.test(d) ? { value: d } : { error: dateMessage(datetime, dateFormat), shown: d };
  }
  if (validation === 'time') {
    const t = normalizeClock(v);
    return t === undefined ? { error: MSG.badFormat } : { value: t };
  }
  // No leading '+': redcap_validation_types (REDCap's install_data.sql),
  // number_1dp regex_php '/^-?\d+\.\d$/', the same for 2dp..4dp and the
  // comma variants; the C validator has the same.
  const dp = /^number_(\d)dp(_comma_decimal)?$/.exec(validation);
  if (dp) {
    const re = new RegExp(`^-?\\d+${dp[2] ? ',' : '\\.'}\\d{${dp[1]}}$`);
    return re.test(v) ? { value: v } : { error: MSG.badFormat };
  }
  if (validation === 'phone') {
    const digits = v.replace(/[\s().-]/g, '');
    const mt = /^([2-9]\d{2})([2-9]\d{2})(\d{4})(.*)$/.exec(digits);
    if (!mt || (mt[4] && !/^(x|ext\.?)\d+$/i.test(mt[4]))) return { error: MSG.badFormat };
    return { value: `(${mt[1]}) ${mt[2]}-${mt[3]}${mt[4] ? ` ${mt[4]}` : ''}` };
  }
  if (validation === 'vmrn') {
    const digits = v.replace(/\D/g, '');
    return digits.length === 0 || digits.length > 9 ? { error: MSG.badFormat } : { value: digits.padStart(9, '0') };
  }
  const re = SIMPLE[validation];
  if (re) return re.test(v) ? { value: v } : { error: MSG.badFormat };
  return { value: v }; // a validation type the emulator does not know: accepted
}

function numericKind(validation) {
  return validation === 'integer' || validation.startsWith('number');
}

/* Compares a value to a bound: numbers numerically, dates/times as text. */
function compareBound(validation, value, bound) {
  if (numericKind(validation)) {
    const a = Number(value.replace(',', '.'));
    const b = Number(String(bound).replace(',', '.'));
    if (!Number.isFinite(a) || !Number.isFinite(b)) return 0;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  return value < bound ? -1 : value > bound ? 1 : 0;
}

/*
 * Checks one non-blank value for a (non-checkbox, non-status) field.
 * Returns { value } with the value to store, or { error: message, shown }
 * (shown, when set: the value as REDCap's error line quotes it).
 * `field` comes from dictionary.buildStructure.
 */
export function checkFieldValue(field, raw, dateFormat = 'YMD') {
  const v = raw;
  switch (field.type) {
    case 'radio':
    case 'dropdown':
    case 'yesno':
    case 'truefalse':
      return field.choices.has(v) ? { value: v } : { error: MSG.badCategory(field.name) };
    case 'slider': {
      // REDCap 15.7.6 Classes/Records.php (saveData): a slider is an integer
      // ("<field> must be an integer", data_import_tool_299) within its
      // min..max (the dictionary's text validation min/max, 0 and 100 when
      // blank), always a hard check (data_import_tool_223/225), with the
      // bound printed as the dictionary has it. The integer test is the
      // integer type's [-+]?digits (REDCap's isinteger() is not in the
      // sources used: UNVERIFIED for signed values); the C validator does the
      // same. The value is stored as sent.
      if (!INT.test(v)) return { error: MSG.notInteger(field.name) };
      const min = field.min === '' || field.min === undefined ? '0' : field.min;
      const max = field.max === '' || field.max === undefined ? '100' : field.max;
      if (Number.isFinite(Number(min)) && Number(v) < Number(min)) return { error: MSG.belowMin(field.name, min) };
      if (Number.isFinite(Number(max)) && Number(v) > Number(max)) return { error: MSG.aboveMax(field.name, max) };
      return { value: v };
    }
    case 'text': {
      if (!field.validation) return { value: v };
      const r = checkValidated(field.validation, v, dateFormat);
      if (r.error) return r;
      // Min/max: only @FORCE-MINMAX rejects (../../shared/REDCAP-API.md);
      // otherwise REDCap saves the value with a warning the API does not return.
      if (field.forceMinMax) {
        const isRel = (b) => b === '' || b === 'today' || b === 'now';
        if (!isRel(field.min) && compareBound(field.validation, r.value, field.min) < 0) {
          return { error: MSG.belowMin(field.name, field.min), shown: r.value };
        }
        if (!isRel(field.max) && compareBound(field.validation, r.value, field.max) > 0) {
          return { error: MSG.aboveMax(field.name, field.max), shown: r.value };
        }
      }
      return r;
    }
    default:
      return { value: v };
  }
}
