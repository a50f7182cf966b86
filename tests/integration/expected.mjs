// What the example study (conf/example-project/) must hold in REDCap for a
// set of FHIR resources: an independent computation of issue #3's "The
// example study" rules in plain JavaScript. It shares no code with the
// bridge (C) on purpose: the integration tests compare what the bridge
// pushed into the REDCap emulator with what this module expects.
//
//   import { expectedProject, compareProject } from './expected.mjs';
//   const exp = expectedProject(resources, { recordId: 'mrn', mrnSystem, siteTimeZone: 'UTC' });
//   const dump = await (await fetch(`${origin}/__control/records?project=study`)).json();
//   assert.deepEqual(compareProject(exp, dump), []);
//
// The rules, and the choices where the issue leaves a case open (marked
// CHOICE; the generator, tests/servers/generate.mjs, never produces those
// cases unless noted):
//
// Input: an array of FHIR resources or NDJSON text. When a type/id occurs
// twice the later one wins (a newer version). Statuses are only filtered
// for the window fields (final, amended, corrected, as
// conf/example-project/mapping.json does); the instruments take every
// resource. Units are checked for the window fields only (as mapping.json
// does); the instruments take the unit as written.
//
// Patients and record names
// - The MRN is the value of the Patient identifier whose system is
//   `mrnSystem`. A Patient without one gets no record (refused, "no MRN");
//   one with two different values in that system is refused ("MRN
//   conflict"). An MRN carried by two or more Patient resources: every one
//   of them is refused ("ambiguous MRN", issue #3: never the first hit) and
//   nothing of theirs reaches REDCap (generate.mjs --duplicate-mrn).
//   `refused` lists the refused Patient ids (sorted), `refusals` says why.
// - record_id: the MRN (recordId 'mrn'), or prefix + the first hexDigits
//   lower-case hex digits of HMAC-SHA256(hmacKey, MRN as UTF-8)
//   (recordId {hmacKey: Buffer, prefix, hexDigits}). An MRN that is no valid
//   REDCap record name (blank, + & # ', line breaks, > 100 characters) is
//   refused ("invalid record name").
// - `mrn` field: the MRN; CHOICE: left blank with an HMAC record id (so no
//   MRN reaches REDCap) unless options.mrnField is true.
//
// Times
// - An instant is taken from a FHIR dateTime with a time (its own offset),
//   or from a date-only value read as 00:00 in `siteTimeZone` (IANA name,
//   default UTC) — the rule issue #3 gives for dates typed into REDCap;
//   CHOICE for FHIR date-only values. A partial date (YYYY or YYYY-MM) has
//   no instant: it is never an anchor or a window candidate
//   (generate.mjs --bad-values makes such Observations).
// - An Observation's time: effectiveDateTime, else effectiveInstant, else
//   effectivePeriod.start.
//
// demographics (non-repeating; one row)
// - dob = birthDate; sex: female 1, male 2, anything else or missing 3.
// - enroll_date: the anchor is the Encounter (subject = the patient) with
//   the earliest period.start compared as instants (CHOICE on a tie: the
//   smallest Encounter id); the field is the date part of that period.start
//   as written (its first 10 characters, not converted).
// - hr_baseline: Observations with a coding http://loinc.org|8867-4, status
//   final|amended|corrected, time within [anchor - 24 h, anchor + 24 h]
//   (inclusive) and a usable value: valueQuantity.value a number in /min
//   (valueQuantity.code, else .unit). The smallest |time - anchor| among
//   the usable ones wins, the earlier one on a tie (CHOICE for the same
//   instant: the smallest Observation id); the value rounded half up
//   (toward +infinity at .5) to an integer.
// - creat_max_48h: the largest usable value (a number in mg/dL) of
//   http://loinc.org|2160-0 (same status filter) with time within
//   [anchor, anchor + 48 h] (inclusive).
// - A window candidate without valueQuantity.value is passed over as if it
//   did not match. One whose value is refused (another unit or none, not a
//   number, a number too large to round) is skipped too; when the window
//   holds only refused ones (and no usable one), the field gets an error and
//   the demographics row is held back (CHOICE, the mapping's documented
//   rule: a wrong unit is a data problem to show, not a blank). A number
//   written as a JSON string (not valid FHIR) is refused here.
// - Numbers are written as JavaScript's String(Number) (shortest form that
//   reads back the same). A field without a value is blank (never sent).
// - No anchor (no Encounter with an instant): enroll_date, hr_baseline and
//   creat_max_48h stay blank.
//
// Repeating instruments (one instance per resource of the patient)
// - vitals: Observation with a category coding
//   http://terminology.hl7.org/CodeSystem/observation-category|vital-signs.
//   vs_datetime = the time as written turned into "YYYY-MM-DD HH:MM:SS"
//   (offset dropped, not converted; fractions of a second dropped);
//   vs_loinc = the code of the first http://loinc.org coding; vs_value =
//   valueQuantity.value (blank for panels without one); vs_unit =
//   valueQuantity.code.
// - labs: category laboratory; lab_datetime, lab_loinc, lab_value, lab_unit
//   as for vitals; lab_name = code.text, else code.coding[0].display (the
//   fallback mapping.json has).
// - conditions: cond_code / cond_system / cond_display from
//   code.coding[0]; cond_onset = the date part of onsetDateTime;
//   cond_status = clinicalStatus.coding[0].code.
// - medications (MedicationRequest): med_code / med_display from
//   medicationCodeableConcept.coding[0]; med_status = status; med_authored
//   = the date part of authoredOn.
// - allergies (AllergyIntolerance, patient = the patient): allergy_code /
//   allergy_display from code.coding[0]; allergy_criticality = criticality.
//
// An instance whose fields would all be blank is not expected (REDCap
// stores nothing for such a row).
//
// Held back: a value REDCap would refuse (a partial date for a date field
// or a datetime field, a non-number for a number field), or a date without
// a time for a datetime field (REDCap would save it at 00:00; the bridge
// never invents a time: conf/README.md, redcap/validate.h pad_time), holds
// back the whole row it belongs to (issue #3: a bad row is held
// back, the good rows go on; the bridge builds one row per instance and one
// row of demographics). A held-back instance is ABSENT from the expected
// records and listed in `heldBack`; a held-back demographics row leaves
// every demographics field blank (CHOICE: the record still exists when one
// of its instances lands; otherwise it is absent).
//
// Instance numbers are not predicted: compareProject() matches instances by
// content (a multiset per record and instrument) and checks that each
// record's instances of an instrument are numbered 1..n.

import { createHmac } from 'node:crypto';

export const LOINC = 'http://loinc.org';
const OBS_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const HOUR = 3600000;
const CLINICAL_TYPES = new Set(['Encounter', 'Observation', 'Condition', 'MedicationRequest', 'AllergyIntolerance']);
const WINDOW_STATUS = new Set(['final', 'amended', 'corrected']);

/* The example project's fields: conf/example-project/dictionary.csv. */
export const DEMOGRAPHICS = ['record_id', 'mrn', 'dob', 'sex', 'enroll_date', 'hr_baseline', 'creat_max_48h'];
export const INSTRUMENTS = {
  vitals: ['vs_datetime', 'vs_loinc', 'vs_value', 'vs_unit'],
  labs: ['lab_datetime', 'lab_loinc', 'lab_name', 'lab_value', 'lab_unit'],
  conditions: ['cond_code', 'cond_system', 'cond_display', 'cond_onset', 'cond_status'],
  medications: ['med_code', 'med_display', 'med_status', 'med_authored'],
  allergies: ['allergy_code', 'allergy_display', 'allergy_criticality'],
};
/* REDCap validation of the fields that have one (dictionary.csv). */
const VALIDATION = {
  dob: 'date',
  enroll_date: 'date',
  hr_baseline: 'integer',
  creat_max_48h: 'number',
  vs_datetime: 'datetime_seconds',
  vs_value: 'number',
  lab_datetime: 'datetime_seconds',
  lab_value: 'number',
  cond_onset: 'date',
  med_authored: 'date',
};

/* ------------------------------------------------------------ values */

const FHIR_DATETIME = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2}))?)?)?$/;

function leapYear(y) {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

function realDate(y, m, d) {
  const days = [31, leapYear(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  return m >= 1 && m <= 12 && d >= 1 && d <= days[m - 1];
}

/* True for a REDCap date_ymd value (YYYY-MM-DD, a real date). */
export function isRedcapDate(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  return !!m && realDate(Number(m[1]), Number(m[2]), Number(m[3]));
}

/* True for a REDCap datetime_seconds_ymd value (YYYY-MM-DD HH:MM:SS). */
export function isRedcapDatetimeSeconds(s) {
  const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(s);
  return !!m && isRedcapDate(m[1]) && Number(m[2]) <= 23 && Number(m[3]) <= 59 && Number(m[4]) <= 59;
}

const NUMBER = /^[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$/;

/* Why the bridge holds value for field back (REDCap would refuse it, or it
 * is a datetime without its time), or undefined. Blank is fine. */
function refusal(field, value) {
  if (value === '') return undefined;
  switch (VALIDATION[field]) {
    case 'date':
      return isRedcapDate(value) ? undefined : 'not a full date (YYYY-MM-DD)';
    case 'datetime_seconds':
      return isRedcapDatetimeSeconds(value) ? undefined : 'not a full date and time';
    case 'integer':
      return /^[-+]?\d+$/.test(value) ? undefined : 'not an integer';
    case 'number':
      return NUMBER.test(value) ? undefined : 'not a number';
    default:
      return undefined;
  }
}

/* String(Number) of a finite JSON number, else undefined. */
function numberText(v) {
  return typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined;
}

/* Rounds half up (toward +infinity at exactly .5), without the x + 0.5 error. */
export function roundHalfUp(v) {
  const f = Math.floor(v);
  const r = v - f >= 0.5 ? f + 1 : f;
  return r === 0 ? 0 : r; // no -0
}

/*
 * A FHIR date/dateTime as REDCap's "YYYY-MM-DD HH:MM:SS", clock time as
 * written (offset and fraction dropped); the text itself when it has no time
 * (the caller then holds it back); '' when absent.
 */
export function redcapDatetime(text) {
  if (typeof text !== 'string') return '';
  const m = FHIR_DATETIME.exec(text);
  if (!m || m[4] === undefined) return text;
  return `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]}`;
}

/* The date part of a FHIR date/dateTime as written ('' when absent). */
export function datePart(text) {
  if (typeof text !== 'string') return '';
  const m = FHIR_DATETIME.exec(text);
  if (!m || m[3] === undefined) return text; // partial or malformed: held back by refusal()
  return text.slice(0, 10);
}

/* Offset of tz at epoch ms, in ms (wall clock - UTC). */
function zoneOffset(ms, tz) {
  const f = new Intl.DateTimeFormat('en-US', {
    timeZone: tz,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
  const p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  const wall = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second));
  return wall - Math.floor(ms / 1000) * 1000;
}

/* Epoch ms of a wall-clock time in tz; undefined if that time does not exist there. */
export function zonedToInstant(y, mo, d, h, mi, s, tz) {
  const wall = Date.UTC(y, mo - 1, d, h, mi, s);
  let t = wall - zoneOffset(wall, tz);
  t = wall - zoneOffset(t, tz);
  return wall - zoneOffset(t, tz) === t ? t : undefined;
}

/*
 * The instant (epoch ms) of a FHIR date/dateTime: with a time, in its own
 * offset; a date alone, 00:00 in siteTimeZone; undefined for a partial or
 * malformed value.
 */
export function fhirInstant(text, siteTimeZone = 'UTC') {
  if (typeof text !== 'string') return undefined;
  const m = FHIR_DATETIME.exec(text);
  if (!m || m[3] === undefined) return undefined;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (!realDate(y, mo, d)) return undefined;
  if (m[4] === undefined) return zonedToInstant(y, mo, d, 0, 0, 0, siteTimeZone);
  const [h, mi, s] = [Number(m[4]), Number(m[5]), Number(m[6])];
  if (h > 23 || mi > 59 || s > 59) return undefined; // (leap seconds are not expected)
  const ms = m[7] ? Number(`0${m[7]}`) * 1000 : 0;
  let off = 0;
  if (m[8] !== 'Z') {
    const sign = m[8][0] === '-' ? -1 : 1;
    off = sign * (Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(4, 6))) * 60000;
  }
  return Date.UTC(y, mo - 1, d, h, mi, s) + ms - off;
}

/* ------------------------------------------------------------ record names */

/* REDCap's refusal of a record name (English.ini data_import_tool_211/216/233/384), or undefined. */
export function recordNameProblem(name) {
  const t = name.trim();
  if (t === '') return 'blank record name';
  if (/[+&#']/.test(t)) return 'record name with + & # or apostrophe';
  if (/[\r\n]/.test(t) || /<br/i.test(t)) return 'record name with a line break';
  if ([...t].length > 100) return 'record name longer than 100 characters';
  return undefined;
}

/* The REDCap record name for an MRN (see the header). */
export function recordName(mrn, recordId = 'mrn') {
  if (recordId === 'mrn') return mrn;
  const { hmacKey, prefix = '', hexDigits = 64 } = recordId;
  if (!Buffer.isBuffer(hmacKey)) throw new TypeError('recordId.hmacKey must be a Buffer');
  if (!Number.isInteger(hexDigits) || hexDigits < 1 || hexDigits > 64) throw new RangeError('recordId.hexDigits must be 1..64');
  return prefix + createHmac('sha256', hmacKey).update(mrn, 'utf8').digest('hex').slice(0, hexDigits);
}

/* ------------------------------------------------------------ resources */

/* An array of resources from an array or NDJSON text; later versions of a type/id win. */
function readResources(input) {
  const list = typeof input === 'string' ? input.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l)) : input;
  if (!Array.isArray(list)) throw new TypeError('resources must be an array or NDJSON text');
  const byKey = new Map();
  for (const r of list) {
    if (!r || typeof r !== 'object' || typeof r.resourceType !== 'string') continue;
    byKey.set(`${r.resourceType}/${r.id}`, r);
  }
  return [...byKey.values()];
}

const codings = (cc) => (cc && Array.isArray(cc.coding) ? cc.coding : []);
const hasCoding = (cc, system, code) => codings(cc).some((c) => c && c.system === system && c.code === code);
const str = (v) => (typeof v === 'string' ? v : '');
const idCompare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

function patientRefOf(r) {
  const ref = r.resourceType === 'AllergyIntolerance' ? r.patient : r.subject;
  const s = ref && typeof ref.reference === 'string' ? ref.reference : '';
  return s.startsWith('Patient/') ? s.slice(8) : undefined;
}

function observationTime(o) {
  if (typeof o.effectiveDateTime === 'string') return o.effectiveDateTime;
  if (typeof o.effectiveInstant === 'string') return o.effectiveInstant;
  if (o.effectivePeriod && typeof o.effectivePeriod.start === 'string') return o.effectivePeriod.start;
  return undefined;
}

function isCategory(o, code) {
  return Array.isArray(o.category) && o.category.some((cc) => hasCoding(cc, OBS_CATEGORY, code));
}

/*
 * Window candidates of one LOINC code: [{ t, v, id, usable }]. usable: the
 * value is a finite number in `unit` (valueQuantity.code, else .unit) and,
 * with `round`, small enough to round (|v| <= 1e15). Observations without a
 * value or without an instant are no candidates.
 */
function candidates(observations, code, unit, siteTimeZone, { round = false } = {}) {
  const out = [];
  for (const o of observations) {
    if (!hasCoding(o.code, LOINC, code) || !WINDOW_STATUS.has(o.status)) continue;
    const q = o.valueQuantity && typeof o.valueQuantity === 'object' ? o.valueQuantity : {};
    const v = q.value;
    if (v === undefined || v === null) continue;
    const t = fhirInstant(observationTime(o), siteTimeZone);
    if (t === undefined) continue;
    const u = typeof q.code === 'string' ? q.code : q.unit;
    const usable = u === unit && typeof v === 'number' && Number.isFinite(v) && (!round || Math.abs(v) <= 1e15);
    out.push({ t, v, id: String(o.id), usable });
  }
  return out;
}

/* The usable candidates within [from, to]; `refused` when the window holds only refused ones. */
function inWindow(cands, from, to) {
  const all = cands.filter((c) => c.t >= from && c.t <= to);
  const usable = all.filter((c) => c.usable);
  return { usable, refused: usable.length === 0 && all.length > 0 };
}

function near(cands, anchor) {
  let best;
  for (const c of cands) {
    const d = Math.abs(c.t - anchor);
    if (!best) best = { c, d };
    else {
      const bd = best.d;
      if (d < bd || (d === bd && (c.t < best.c.t || (c.t === best.c.t && idCompare(c.id, best.c.id) < 0)))) best = { c, d };
    }
  }
  return best ? best.c : undefined;
}

function max(cands) {
  let best;
  for (const c of cands) if (best === undefined || c.v > best.v) best = c;
  return best;
}

/* The instances of one instrument from the patient's resources: [{ source, values }]. */
function instancesOf(instrument, res) {
  const out = [];
  const push = (r, values) => out.push({ source: `${r.resourceType}/${r.id}`, values });
  const loincCode = (o) => str((codings(o.code).find((c) => c && c.system === LOINC) ?? {}).code);
  const qty = (o) => o.valueQuantity ?? {};
  switch (instrument) {
    case 'vitals':
      for (const o of res.Observation) {
        if (!isCategory(o, 'vital-signs')) continue;
        push(o, {
          vs_datetime: redcapDatetime(observationTime(o)),
          vs_loinc: loincCode(o),
          vs_value: numberText(qty(o).value) ?? '',
          vs_unit: str(qty(o).code),
        });
      }
      break;
    case 'labs':
      for (const o of res.Observation) {
        if (!isCategory(o, 'laboratory')) continue;
        push(o, {
          lab_datetime: redcapDatetime(observationTime(o)),
          lab_loinc: loincCode(o),
          lab_name: str(o.code && o.code.text) || str((codings(o.code)[0] ?? {}).display),
          lab_value: numberText(qty(o).value) ?? '',
          lab_unit: str(qty(o).code),
        });
      }
      break;
    case 'conditions':
      for (const c of res.Condition) {
        const k = codings(c.code)[0] ?? {};
        push(c, {
          cond_code: str(k.code),
          cond_system: str(k.system),
          cond_display: str(k.display),
          cond_onset: datePart(c.onsetDateTime),
          cond_status: str((codings(c.clinicalStatus)[0] ?? {}).code),
        });
      }
      break;
    case 'medications':
      for (const m of res.MedicationRequest) {
        const k = codings(m.medicationCodeableConcept)[0] ?? {};
        push(m, { med_code: str(k.code), med_display: str(k.display), med_status: str(m.status), med_authored: datePart(m.authoredOn) });
      }
      break;
    case 'allergies':
      for (const a of res.AllergyIntolerance) {
        const k = codings(a.code)[0] ?? {};
        push(a, { allergy_code: str(k.code), allergy_display: str(k.display), allergy_criticality: str(a.criticality) });
      }
      break;
    default:
      throw new Error(`unknown instrument ${instrument}`);
  }
  return out;
}

/*
 * The demographics values (without record_id) of one patient: { f, refused }
 * where refused names a window field whose candidates were all refused.
 */
function demographicsOf(patient, mrn, res, o) {
  const g = patient.gender;
  const f = {
    mrn: o.mrnField ? mrn : '',
    dob: str(patient.birthDate),
    sex: g === 'female' ? '1' : g === 'male' ? '2' : '3',
    enroll_date: '',
    hr_baseline: '',
    creat_max_48h: '',
  };
  let anchor;
  for (const e of res.Encounter) {
    const start = e.period && typeof e.period.start === 'string' ? e.period.start : undefined;
    const t = fhirInstant(start, o.siteTimeZone);
    if (t === undefined) continue;
    if (!anchor || t < anchor.t || (t === anchor.t && idCompare(String(e.id), anchor.id) < 0)) anchor = { t, id: String(e.id), start };
  }
  if (!anchor) return { f };
  f.enroll_date = anchor.start.slice(0, 10);
  let refused;
  const hrs = inWindow(candidates(res.Observation, '8867-4', '/min', o.siteTimeZone, { round: true }), anchor.t - 24 * HOUR, anchor.t + 24 * HOUR);
  const hr = near(hrs.usable, anchor.t);
  if (hr) f.hr_baseline = String(roundHalfUp(hr.v));
  else if (hrs.refused) refused = 'hr_baseline';
  const crs = inWindow(candidates(res.Observation, '2160-0', 'mg/dL', o.siteTimeZone), anchor.t, anchor.t + 48 * HOUR);
  const cr = max(crs.usable);
  if (cr) f.creat_max_48h = String(cr.v);
  else if (crs.refused && !refused) refused = 'creat_max_48h';
  return { f, refused };
}

/* The first refused value of a row: { field, value, reason } or undefined. */
function rowRefusal(values) {
  for (const [field, value] of Object.entries(values)) {
    const reason = refusal(field, value);
    if (reason) return { field, value, reason };
  }
  return undefined;
}

/*
 * The records the example study must hold.
 * options: { recordId: 'mrn' | { hmacKey: Buffer, prefix, hexDigits },
 *            mrnSystem (required), siteTimeZone ('UTC'), mrnField }
 * Returns {
 *   records: { [record]: { mrn, patient, fields: {record_id, mrn, dob, ...},
 *                          instances: { vitals: [{ source, values }], ... } } },
 *   heldBack: [{ record, patient, instrument, source, field, value, reason }]
 *             (one entry per held-back row, naming its first bad value),
 *   refused: [patient id, ...] (sorted),
 *   refusals: [{ patient, mrn, reason }] (same order),
 * }
 */
export function expectedProject(input, options = {}) {
  const o = {
    recordId: options.recordId ?? 'mrn',
    mrnSystem: options.mrnSystem,
    siteTimeZone: options.siteTimeZone ?? 'UTC',
    mrnField: options.mrnField ?? (options.recordId ?? 'mrn') === 'mrn',
  };
  if (typeof o.mrnSystem !== 'string' || o.mrnSystem === '') throw new TypeError('options.mrnSystem is required');
  zoneOffset(0, o.siteTimeZone); // throws RangeError for an unknown zone
  const resources = readResources(input);

  // Resources per patient id.
  const byPatient = new Map();
  const bucket = (pid) => {
    let b = byPatient.get(pid);
    if (!b) byPatient.set(pid, (b = { Encounter: [], Observation: [], Condition: [], MedicationRequest: [], AllergyIntolerance: [] }));
    return b;
  };
  const patients = [];
  for (const r of resources) {
    if (r.resourceType === 'Patient') patients.push(r);
    else if (CLINICAL_TYPES.has(r.resourceType)) {
      const pid = patientRefOf(r);
      if (pid !== undefined) bucket(pid)[r.resourceType].push(r);
    }
  }
  for (const b of byPatient.values()) for (const list of Object.values(b)) list.sort((a, c) => idCompare(String(a.id), String(c.id)));

  // MRNs; an MRN held by several Patients refuses all of them.
  const refusals = [];
  const byMrn = new Map();
  for (const p of patients) {
    const values = [...new Set((Array.isArray(p.identifier) ? p.identifier : []).filter((i) => i && i.system === o.mrnSystem && typeof i.value === 'string').map((i) => i.value))];
    if (values.length === 0) refusals.push({ patient: p.id, mrn: null, reason: 'no MRN' });
    else if (values.length > 1) refusals.push({ patient: p.id, mrn: null, reason: 'MRN conflict' });
    else {
      if (!byMrn.has(values[0])) byMrn.set(values[0], []);
      byMrn.get(values[0]).push(p);
    }
  }

  const records = Object.create(null);
  const heldBack = [];
  for (const [mrn, ps] of byMrn) {
    if (ps.length > 1) {
      for (const p of ps) refusals.push({ patient: p.id, mrn, reason: 'ambiguous MRN' });
      continue;
    }
    const p = ps[0];
    const record = recordName(mrn, o.recordId);
    const bad = recordNameProblem(record);
    if (bad) {
      refusals.push({ patient: p.id, mrn, reason: bad });
      continue;
    }
    const res = byPatient.get(p.id) ?? bucket(p.id);
    const rec = { mrn, patient: p.id, fields: null, instances: {} };
    let landed = false;

    const { f: demo, refused: noUsable } = demographicsOf(p, mrn, res, o);
    const demoBad = noUsable ? { field: noUsable, value: '', reason: 'no usable value in the window' } : rowRefusal(demo);
    if (demoBad) {
      heldBack.push({ record, patient: p.id, instrument: 'demographics', source: `Patient/${p.id}`, ...demoBad });
      rec.fields = Object.fromEntries(DEMOGRAPHICS.map((f) => [f, f === 'record_id' ? record : '']));
    } else {
      rec.fields = { record_id: record, ...demo };
      landed = true;
    }
    for (const instrument of Object.keys(INSTRUMENTS)) {
      const list = [];
      for (const inst of instancesOf(instrument, res)) {
        // A row without a single value stores nothing in REDCap: no instance.
        if (Object.values(inst.values).every((v) => v === '')) continue;
        const why = rowRefusal(inst.values);
        if (why) heldBack.push({ record, patient: p.id, instrument, source: inst.source, ...why });
        else list.push(inst);
      }
      rec.instances[instrument] = list;
      if (list.length) landed = true;
    }
    if (landed) records[record] = rec;
  }
  refusals.sort((a, b) => idCompare(String(a.patient), String(b.patient)));
  return { records, heldBack, refused: refusals.map((x) => x.patient), refusals };
}

/* The same function under its first name. */
export const expectProject = expectedProject;

/* ------------------------------------------------------------ comparison */

const isRepeatColumn = (c) => c === 'redcap_repeat_instrument' || c === 'redcap_repeat_instance' || c === 'redcap_event_name';
const tupleKey = (instrument, values) => JSON.stringify(INSTRUMENTS[instrument].map((f) => values[f] ?? ''));
const show = (instrument, key) => JSON.stringify(Object.fromEntries(INSTRUMENTS[instrument].map((f, i) => [f, JSON.parse(key)[i]])));

/*
 * Compares an expectation (expectProject) with the emulator's stored data
 * (GET /__control/records?project=NAME: { columns, rows: [{column: value}],
 * records: [{record, ...}] }). Instances are matched by content: per
 * record and instrument the multiset of field tuples must be equal, and the
 * instance numbers must be 1..n without gaps or duplicates. <form>_complete
 * columns are ignored unless options.checkComplete (then every form with
 * data must be 0, Incomplete). Returns human-readable differences; [] when
 * REDCap holds exactly what is expected.
 */
export function compareProject(expected, dump, options = {}) {
  const diffs = [];
  const rows = Array.isArray(dump && dump.rows) ? dump.rows : [];
  const byRecord = new Map();
  for (const r of rows) {
    const id = String(r.record_id ?? '');
    if (!byRecord.has(id)) byRecord.set(id, []);
    byRecord.get(id).push(r);
  }
  const ignored = (c) => c === 'record_id' || isRepeatColumn(c) || (!options.checkComplete && c.endsWith('_complete'));

  for (const [record, exp] of Object.entries(expected.records)) {
    const got = byRecord.get(record);
    if (!got) {
      diffs.push(`record ${record}: missing in REDCap`);
      continue;
    }
    byRecord.delete(record);
    const base = got.filter((r) => (r.redcap_repeat_instrument ?? '') === '' && (r.redcap_repeat_instance ?? '') === '');
    if (base.length > 1) diffs.push(`record ${record}: ${base.length} non-repeating rows`);
    const b = base[0] ?? {};
    for (const f of DEMOGRAPHICS) {
      if (f === 'record_id') continue;
      const want = exp.fields[f] ?? '';
      const have = b[f] ?? '';
      if (want !== have) diffs.push(`record ${record}: ${f} is ${JSON.stringify(have)}, expected ${JSON.stringify(want)}`);
    }
    for (const [c, v] of Object.entries(b)) {
      if (ignored(c) || DEMOGRAPHICS.includes(c) || c === 'demographics_complete' || v === '' || v === undefined) continue;
      diffs.push(`record ${record}: unexpected value ${JSON.stringify(v)} in ${c} of the non-repeating row`);
    }
    if (options.checkComplete) checkComplete(diffs, `record ${record}`, b, 'demographics', DEMOGRAPHICS);

    const repeating = got.filter((r) => !base.includes(r));
    const byInstr = new Map();
    for (const r of repeating) {
      const instr = r.redcap_repeat_instrument ?? '';
      if (!(instr in INSTRUMENTS)) {
        diffs.push(`record ${record}: row of unknown repeating instrument ${JSON.stringify(instr)} instance ${JSON.stringify(r.redcap_repeat_instance)}`);
        continue;
      }
      if (!byInstr.has(instr)) byInstr.set(instr, []);
      byInstr.get(instr).push(r);
    }
    for (const instrument of Object.keys(INSTRUMENTS)) {
      compareInstances(diffs, record, instrument, exp.instances[instrument] ?? [], byInstr.get(instrument) ?? [], ignored, options);
    }
  }
  for (const [record, got] of byRecord) {
    const kinds = [...new Set(got.map((r) => r.redcap_repeat_instrument || 'demographics'))].join(', ');
    diffs.push(`record ${record}: in REDCap but not expected (${got.length} rows: ${kinds})`);
  }
  return diffs;
}

/* With checkComplete: a form holding data has status 0 (Incomplete), as REDCap sets it for imported data. */
function checkComplete(diffs, where, row, form, fields) {
  const hasData = fields.some((f) => f !== 'record_id' && (row[f] ?? '') !== '');
  const st = row[`${form}_complete`] ?? '';
  if (hasData && st !== '0') diffs.push(`${where}: ${form}_complete is ${JSON.stringify(st)}, expected "0"`);
}

function compareInstances(diffs, record, instrument, want, got, ignored, options) {
  const fields = INSTRUMENTS[instrument];
  // Numbering: 1..n, no gaps, no duplicates.
  const nums = got.map((r) => String(r.redcap_repeat_instance ?? ''));
  const seen = new Map();
  for (const n of nums) seen.set(n, (seen.get(n) ?? 0) + 1);
  for (const [n, k] of seen) if (k > 1) diffs.push(`record ${record}, ${instrument}: instance ${n} appears ${k} times`);
  const bad = nums.filter((n) => !/^[1-9]\d*$/.test(n));
  for (const n of bad) diffs.push(`record ${record}, ${instrument}: instance number ${JSON.stringify(n)} is not a positive integer`);
  const distinct = [...seen.keys()].filter((n) => /^[1-9]\d*$/.test(n)).map(Number).sort((a, b) => a - b);
  const missingNums = [];
  for (let i = 1, j = 0; j < distinct.length; i++) {
    if (distinct[j] === i) j++;
    else missingNums.push(i);
  }
  if (missingNums.length) diffs.push(`record ${record}, ${instrument}: instance numbers have gaps (missing ${missingNums.join(', ')}; present ${distinct.join(', ')})`);

  // Content: multiset equality of the field tuples.
  const wantCount = new Map();
  const sources = new Map();
  for (const w of want) {
    const k = tupleKey(instrument, w.values);
    wantCount.set(k, (wantCount.get(k) ?? 0) + 1);
    if (!sources.has(k)) sources.set(k, []);
    sources.get(k).push(w.source);
  }
  const gotCount = new Map();
  const gotNums = new Map();
  for (const r of got) {
    const k = tupleKey(instrument, r);
    gotCount.set(k, (gotCount.get(k) ?? 0) + 1);
    if (!gotNums.has(k)) gotNums.set(k, []);
    gotNums.get(k).push(r.redcap_repeat_instance);
    for (const [c, v] of Object.entries(r)) {
      if (ignored(c) || fields.includes(c) || c === `${instrument}_complete` || v === '' || v === undefined) continue;
      diffs.push(`record ${record}, ${instrument} instance ${r.redcap_repeat_instance}: unexpected value ${JSON.stringify(v)} in ${c}`);
    }
    if (options.checkComplete) checkComplete(diffs, `record ${record}, ${instrument} instance ${r.redcap_repeat_instance}`, r, instrument, fields);
  }
  for (const [k, n] of wantCount) {
    const g = gotCount.get(k) ?? 0;
    if (g < n) diffs.push(`record ${record}, ${instrument}: missing instance ${show(instrument, k)} (expected ${n}, found ${g}; from ${sources.get(k).join(', ')})`);
    else if (g > n) diffs.push(`record ${record}, ${instrument}: instance ${show(instrument, k)} found ${g} times (instances ${gotNums.get(k).join(', ')}), expected ${n}`);
  }
  for (const [k, g] of gotCount) {
    if (!wantCount.has(k)) diffs.push(`record ${record}, ${instrument}: unexpected instance ${show(instrument, k)} (instances ${gotNums.get(k).join(', ')}${g > 1 ? `, ${g} times` : ''})`);
  }
}

/* Fetches the emulator's stored data of a project (GET /__control/records). */
export async function emulatorDump(origin, project) {
  const r = await fetch(`${origin}/__control/records?project=${encodeURIComponent(project)}`);
  if (!r.ok) throw new Error(`emulator dump of ${project}: HTTP ${r.status}: ${await r.text()}`);
  return r.json();
}
