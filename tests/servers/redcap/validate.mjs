// Per-value checks of the REDCap emulator's record import: choices, text
// validation types, dates (only Y-M-D on import, unless dateFormat=MDY/DMY
// and the value has slashes), @FORCE-MINMAX ranges. Values are normalized
// the way REDCap's import does before it validates: a "T" between date and
// time becomes a space, a one-digit month/day/hour gets its leading zero.
// Sources: ../../shared/REDCAP-API.md; REDCap's import.php (date/time
// normalization, 2-digit years: below this year's 2 digits + 10 -> 20xx);
// REDCap's validation regexes (redcap_validation_types) as shipped in its
// data entry pages.

import { MSG } from './messages.mjs';

const NUM = /^[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$/;
const NUM_COMMA = /^[-+]?[0-9]*,?[0-9]+([eE][-+]?[0-9]+)?$/;
const INT = /^[-+]?\d+$/;
const EMAIL = /^([_a-z0-9\-']+)(\.[_a-z0-9\-']+)*@([a-z0-9-]+)(\.[a-z0-9-]+)*(\.[a-z]{2,63})$/i;

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

function isLeap(y) {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

/* True for an existing calendar date. */
export function validYmd(y, m, d) {
  if (!(y >= 1 && m >= 1 && m <= 12 && d >= 1)) return false;
  const days = [31, isLeap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1];
  return d <= days;
}

function fourDigitYear(y) {
  if (y.length !== 2) return y;
  const now2 = new Date().getFullYear() % 100;
  return Number(y) < now2 + 10 ? `20${y}` : `19${y}`;
}

/*
 * A date part in Y-M-D (zero-padded) or undefined. With dateFormat MDY/DMY a
 * value holding "/" is read as M/D/Y or D/M/Y.
 */
function normalizeDatePart(s, dateFormat) {
  let y;
  let m;
  let d;
  let mt;
  if (s.includes('/') && (dateFormat === 'MDY' || dateFormat === 'DMY')) {
    mt = /^(\d{1,2})\/(\d{1,2})\/(\d{2}|\d{4})$/.exec(s);
    if (!mt) return undefined;
    [m, d] = dateFormat === 'MDY' ? [mt[1], mt[2]] : [mt[2], mt[1]];
    y = fourDigitYear(mt[3]);
  } else {
    mt = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(s);
    if (!mt) return undefined;
    [, y, m, d] = mt;
  }
  if (!validYmd(Number(y), Number(m), Number(d))) return undefined;
  return `${y}-${m.padStart(2, '0')}-${d.padStart(2, '0')}`;
}

/*
 * The time part of a datetime. Missing minutes (and, for the seconds types,
 * missing seconds) are taken as :00, as REDCap 15 does: English.ini keys
 * data_import_tool_292-294 ("Minutes missing and assumed to be :00 for",
 * "Seconds missing and assumed to be :00 for") and REDCap's UI tests
 * (vanderbilt-redcap/redcap_rsvc, data import scenario 18: "13" saved as
 * "13:00", "13:55" in a datetime_seconds field as "13:55:00"). Seconds on a
 * datetime without seconds are an error.
 */
function normalizeTime(s, withSeconds) {
  const mt = /^(\d{1,2})(?::([0-5]\d))?(?::([0-5]\d))?$/.exec(s);
  if (!mt || Number(mt[1]) > 23) return undefined;
  if (mt[2] === undefined && mt[3] !== undefined) return undefined;
  const hh = mt[1].padStart(2, '0');
  const mm = mt[2] ?? '00';
  if (!withSeconds) return mt[3] === undefined ? `${hh}:${mm}` : undefined;
  return `${hh}:${mm}:${mt[3] ?? '00'}`;
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
 * Returns { value } or { error }.
 */
function checkValidated(validation, v, dateFormat) {
  if (validation.startsWith('date_')) {
    const d = normalizeDatePart(v, dateFormat);
    return d === undefined ? { error: dateMessage(false, dateFormat) } : { value: d };
  }
  if (validation.startsWith('datetime_')) {
    const seconds = validation.startsWith('datetime_seconds_');
    const errMsg = dateMessage(true, dateFormat);
    const s = v.replace(/^(\S+)T/, '$1 ');
    const sp = s.indexOf(' ');
    if (sp < 0) return { error: errMsg };
    const d = normalizeDatePart(s.slice(0, sp), dateFormat);
    const t = normalizeTime(s.slice(sp + 1), seconds);
    return d === undefined || t === undefined ? { error: errMsg } : { value: `${d} ${t}` };
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
 * Returns { value } with the value to store, or { error: message }.
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
          return { error: MSG.belowMin(field.name, field.min) };
        }
        if (!isRel(field.max) && compareBound(field.validation, r.value, field.max) > 0) {
          return { error: MSG.aboveMax(field.name, field.max) };
        }
      }
      return r;
    }
    default:
      return { value: v };
  }
}
