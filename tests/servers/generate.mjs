#!/usr/bin/env node
// Deterministic synthetic FHIR R4 data for tests and the demo.
//
//   node generate.mjs --patients N --seed S [--obs-per-patient K] [--out FILE.ndjson]
//   node generate.mjs --observations-only N --seed S [--out FILE.ndjson]
//   (either form also takes [--duplicate-mrn K] [--bad-values K], see below)
//
// Writes NDJSON (one resource per line). The same options give byte-identical
// output: all randomness comes from one seeded PRNG (sfc32) and no clock,
// locale or environment is consulted.
//
// Per patient (ids are derived from the patient number, e.g. pat-000001):
//   Patient            identifier urn:oid:1.2.36.146.595.217.0.1 "MRN00000001",
//                      name, gender, birthDate, address, telecom
//   Encounter x1..4    enc-000001-01, period.start/end with explicit offsets
//                      (Z, +00:00, +01:00, +02:00, -05:00, -04:00, +05:30, +10:00)
//   Observation x K    obs-000001-0001, vital signs (8867-4, 85354-9 with
//                      8480-6/8462-4, 9279-1, 8310-5, 59408-5, 29463-7) and
//                      labs (2160-0, 2345-7, 718-7, 6690-2, 2823-3, 2951-2),
//                      effectiveDateTime in the encounter's offset, UCUM units
//   Condition x0..3    cond-000001-01 (SNOMED)
//   MedicationRequest x0..3  medrx-000001-01 (RxNorm)
//   AllergyIntolerance x0..2 allergy-000001-01 (SNOMED)
// Clinical resources reference the patient as "Patient/<id>".
//
// --observations-only N: a few patients (min(10, N), listed first) followed
// by N vital-sign Observations of ~550 bytes each, for throughput tests.
//
// Defects for the curation tests (both off by default; without them, or
// with 0, the output is byte-identical to what it was before they existed,
// and with them only the values named here change — the PRNG draws the
// same numbers, so every other byte stays as it was):
//
// --duplicate-mrn K: with P patients (P = --patients, or min(10, N) for
//   --observations-only), the last K patients carry the MRN of the first K:
//   patient number P-K+i gets identifier.value "MRN" + i in 8 digits, for
//   i = 1..K (e.g. P=10, K=2: pat-000009 carries MRN00000001 and
//   pat-000010 MRN00000002). Exactly K MRNs (those of patients 1..K) are
//   then each held by two Patient resources, and the MRNs of patients
//   P-K+1..P are held by none. Resource ids do not change. Needs 2K <= P.
//
// --bad-values K: K Observations of the data set get an effectiveDateTime
//   that is valid FHIR but no valid REDCap datetime: the partial date
//   "YYYY-MM" (the first 7 characters of the value it would have had).
//   Heart rate (8867-4) and creatinine (2160-0) Observations are never
//   chosen, so that the example study's window fields (hr_baseline,
//   creat_max_48h) do not depend on how a partial time is treated. Number
//   the other Observations 0..E-1 in output order; the ones changed are
//   numbers floor(i*E/K) + (i mod max(1, floor(E/K))) for i = 0..K-1: the
//   i-th of K equal slices, i places into it, so that successive picks land
//   on different kinds of Observation (badValueIndices(E, K); e.g. 10
//   patients x 12 Observations, K = 3: E = 100, numbers 0, 34, 68, i.e.
//   obs-000001-0002, obs-000004-0006, obs-000007-0011). Nothing else in them changes (issued
//   keeps its instant). A bridge must hold these instances back (vs_datetime
//   and lab_datetime are datetime_seconds_ymd) and push the rest. Needs
//   K <= E.
//
// The names and numbers are invented; no real person is described.

import fs from 'node:fs';
import { once } from 'node:events';
import { pathToFileURL } from 'node:url';

/* ---------------------------------------------------------------- PRNG */

function hashSeed(seed) {
  // cyrb128: four 32-bit words from a string.
  const str = String(seed);
  let h1 = 1779033703;
  let h2 = 3144134277;
  let h3 = 1013904242;
  let h4 = 2773480762;
  for (let i = 0; i < str.length; i++) {
    const k = str.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  return [(h1 ^ h2 ^ h3 ^ h4) >>> 0, (h2 ^ h1) >>> 0, (h3 ^ h1) >>> 0, (h4 ^ h1) >>> 0];
}

/* A seeded PRNG (sfc32) with the helpers the generator needs. */
export function makeRng(seed) {
  let [a, b, c, d] = hashSeed(seed);
  const next = () => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 15; i++) next();
  const rng = {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    chance: (p) => next() < p,
    dec: (lo, hi, places) => {
      const f = 10 ** places;
      return Math.round((lo + next() * (hi - lo)) * f) / f;
    },
    weighted: (pairs) => {
      let total = 0;
      for (const [, w] of pairs) total += w;
      let x = next() * total;
      for (const [v, w] of pairs) {
        x -= w;
        if (x < 0) return v;
      }
      return pairs[pairs.length - 1][0];
    },
  };
  return rng;
}

/* ------------------------------------------------------------- vocab */

const LOINC = 'http://loinc.org';
const SNOMED = 'http://snomed.info/sct';
const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
const UCUM = 'http://unitsofmeasure.org';
const OBS_CAT = 'http://terminology.hl7.org/CodeSystem/observation-category';
const INTERP = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
export const MRN_SYSTEM = 'urn:oid:1.2.36.146.595.217.0.1';

const GIVEN_F = ['Anna', 'Maria', 'Sofía', 'Emma', 'Léa', 'Chloé', 'Mia', 'Aiko', 'Zoë', 'Ingrid', 'Fatima', 'Grace'];
const GIVEN_M = ['Jonas', 'Liam', 'José', 'Noah', 'Mateo', 'Lukas', 'Björn', 'Omar', 'Kenji', 'Élie', 'Arjun', 'Tom'];
const FAMILY = [
  'Testperson',
  'Example',
  'Müller',
  'García',
  'Nguyễn',
  'Ødegaard',
  "O'Neill",
  'Smith-Jones',
  'Kowalski',
  'Van der Berg',
  'Dubois',
  'Rossi',
  'Yamada',
  'Papadopoulos',
];
const CITIES = [
  ['Springfield', '00001'],
  ['Rivertown', '00002'],
  ['Lakeside', '00003'],
  ['Hilldale', '00004'],
  ['Zürichsee', '00005'],
];

const OFFSETS = [
  ['Z', 0, 4],
  ['+00:00', 0, 1],
  ['+01:00', 60, 2],
  ['+02:00', 120, 2],
  ['-05:00', -300, 2],
  ['-04:00', -240, 1],
  ['+05:30', 330, 1],
  ['+10:00', 600, 1],
];

const VITALS = [
  { code: '8867-4', display: 'Heart rate', unit: 'beats/minute', ucum: '/min', lo: 48, hi: 118, places: 0 },
  {
    code: '85354-9',
    display: 'Blood pressure panel with all children optional',
    components: [
      { code: '8480-6', display: 'Systolic blood pressure', lo: 95, hi: 170 },
      { code: '8462-4', display: 'Diastolic blood pressure', lo: 55, hi: 105 },
    ],
  },
  { code: '9279-1', display: 'Respiratory rate', unit: 'breaths/minute', ucum: '/min', lo: 10, hi: 24, places: 0 },
  { code: '8310-5', display: 'Body temperature', unit: '°C', ucum: 'Cel', lo: 35.8, hi: 39.2, places: 1 },
  {
    code: '59408-5',
    display: 'Oxygen saturation in Arterial blood by Pulse oximetry',
    unit: '%',
    ucum: '%',
    lo: 89,
    hi: 100,
    places: 0,
  },
  { code: '29463-7', display: 'Body weight', unit: 'kg', ucum: 'kg', lo: 42, hi: 128, places: 1 },
];

const LABS = [
  {
    code: '2160-0',
    display: 'Creatinine [Mass/volume] in Serum or Plasma',
    unit: 'mg/dL',
    ucum: 'mg/dL',
    lo: 0.45,
    hi: 2.4,
    places: 2,
    ref: [0.7, 1.3],
  },
  {
    code: '2345-7',
    display: 'Glucose [Mass/volume] in Serum or Plasma',
    unit: 'mg/dL',
    ucum: 'mg/dL',
    lo: 62,
    hi: 240,
    places: 0,
    ref: [70, 99],
  },
  {
    code: '718-7',
    display: 'Hemoglobin [Mass/volume] in Blood',
    unit: 'g/dL',
    ucum: 'g/dL',
    lo: 8.5,
    hi: 17.9,
    places: 1,
    ref: [12, 17.5],
  },
  {
    code: '6690-2',
    display: 'Leukocytes [#/volume] in Blood by Automated count',
    unit: '10*3/uL',
    ucum: '10*3/uL',
    lo: 2.8,
    hi: 16.5,
    places: 1,
    ref: [4.5, 11],
  },
  {
    code: '2823-3',
    display: 'Potassium [Moles/volume] in Serum or Plasma',
    unit: 'mmol/L',
    ucum: 'mmol/L',
    lo: 3.0,
    hi: 5.9,
    places: 1,
    ref: [3.5, 5.1],
  },
  {
    code: '2951-2',
    display: 'Sodium [Moles/volume] in Serum or Plasma',
    unit: 'mmol/L',
    ucum: 'mmol/L',
    lo: 128,
    hi: 149,
    places: 0,
    ref: [136, 145],
  },
];

const CONDITIONS = [
  ['44054006', 'Diabetes mellitus type 2'],
  ['38341003', 'Hypertensive disorder, systemic arterial'],
  ['195967001', 'Asthma'],
  ['13645005', 'Chronic obstructive lung disease'],
  ['49436004', 'Atrial fibrillation'],
  ['55822004', 'Hyperlipidemia'],
  ['709044004', 'Chronic kidney disease'],
  ['35489007', 'Depressive disorder'],
  ['414545008', 'Ischemic heart disease'],
  ['40055000', 'Chronic sinusitis'],
];

const MEDICATIONS = [
  ['860975', '24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet', '1 tablet once daily with evening meal'],
  ['314076', 'lisinopril 10 MG Oral Tablet', '1 tablet once daily'],
  ['197361', 'amlodipine 5 MG Oral Tablet', '1 tablet once daily'],
  ['617312', 'atorvastatin 10 MG Oral Tablet', '1 tablet at bedtime'],
  ['745679', 'albuterol 0.09 MG/ACTUAT Metered Dose Inhaler', '2 puffs every 4 to 6 hours as needed'],
  ['313782', 'acetaminophen 325 MG Oral Tablet', '2 tablets every 6 hours as needed'],
  ['855332', 'warfarin sodium 5 MG Oral Tablet', 'as directed by anticoagulation clinic'],
  ['310798', 'hydrochlorothiazide 25 MG Oral Tablet', '1 tablet every morning'],
];

const ALLERGIES = [
  ['91936005', 'Allergy to penicillin', 'medication'],
  ['294505008', 'Allergy to sulfonamide', 'medication'],
  ['91935009', 'Allergy to peanut', 'food'],
  ['300913006', 'Shellfish allergy', 'food'],
  ['418689008', 'Allergy to grass pollen', 'environment'],
  ['232347008', 'Dander (animal) allergy', 'environment'],
];

const ENCOUNTER_TYPES = [
  ['AMB', 'ambulatory', '185349003', 'Encounter for check up'],
  ['AMB', 'ambulatory', '390906007', 'Follow-up encounter'],
  ['EMER', 'emergency', '50849002', 'Emergency room admission'],
  ['IMP', 'inpatient encounter', '32485007', 'Hospital admission'],
];

/* ----------------------------------------------------------- helpers */

const T0 = Date.UTC(2019, 0, 1);
const T1 = Date.UTC(2024, 11, 31);

function pad(n, width) {
  return String(n).padStart(width, '0');
}

/* Formats epoch ms as a dateTime in the given offset ('Z' or '+hh:mm'). */
export function formatLocal(ms, offset) {
  const [label, minutes] = offset;
  const local = new Date(ms + minutes * 60000).toISOString().slice(0, 19);
  return local + label;
}

function codeable(system, code, display, text) {
  const cc = { coding: [{ system, code, display }] };
  if (text !== undefined) cc.text = text;
  return cc;
}

function quantity(value, unit, code) {
  return { value, unit, system: UCUM, code };
}

function interpretation(value, ref) {
  const code = value < ref[0] ? 'L' : value > ref[1] ? 'H' : 'N';
  const display = code === 'L' ? 'Low' : code === 'H' ? 'High' : 'Normal';
  return [codeable(INTERP, code, display)];
}

function observation({ id, patientRef, encounterRef, def, category, effective, issued, rng, profile = true, codeText = true }) {
  const isVital = category === 'vital-signs';
  const obs = { resourceType: 'Observation', id };
  if (isVital && profile) obs.meta = { profile: ['http://hl7.org/fhir/StructureDefinition/vitalsigns'] };
  obs.status = 'final';
  obs.category = [codeable(OBS_CAT, category, isVital ? 'Vital Signs' : 'Laboratory')];
  obs.code = codeable(LOINC, def.code, def.display, codeText ? def.display : undefined);
  obs.subject = { reference: patientRef };
  if (encounterRef) obs.encounter = { reference: encounterRef };
  obs.effectiveDateTime = effective;
  obs.issued = issued;
  if (def.components) {
    obs.component = def.components.map((c) => ({
      code: codeable(LOINC, c.code, c.display),
      valueQuantity: quantity(rng.int(c.lo, c.hi), 'mmHg', 'mm[Hg]'),
    }));
  } else {
    const v = def.places ? rng.dec(def.lo, def.hi, def.places) : rng.int(def.lo, def.hi);
    obs.valueQuantity = quantity(v, def.unit, def.ucum);
    if (def.ref) {
      obs.interpretation = interpretation(v, def.ref);
      obs.referenceRange = [
        { low: quantity(def.ref[0], def.unit, def.ucum), high: quantity(def.ref[1], def.unit, def.ucum) },
      ];
    }
  }
  return obs;
}

function patientResource(rng, n, width) {
  const female = rng.chance(0.5);
  const gender = rng.weighted([
    [female ? 'female' : 'male', 97],
    ['other', 2],
    ['unknown', 1],
  ]);
  const given = [rng.pick(female ? GIVEN_F : GIVEN_M)];
  if (rng.chance(0.3)) given.push(rng.pick(female ? GIVEN_F : GIVEN_M));
  const birth = new Date(Date.UTC(1930, 0, 1) + rng.int(0, 85 * 365) * 86400000).toISOString().slice(0, 10);
  const [city, postalCode] = rng.pick(CITIES);
  return {
    resourceType: 'Patient',
    id: `pat-${pad(n, width)}`,
    identifier: [
      {
        use: 'usual',
        type: codeable('http://terminology.hl7.org/CodeSystem/v2-0203', 'MR', 'Medical record number'),
        system: MRN_SYSTEM,
        value: `MRN${pad(n, 8)}`,
      },
    ],
    active: true,
    name: [{ use: 'official', family: rng.pick(FAMILY), given }],
    telecom: [{ system: 'phone', value: `555-01${pad(rng.int(0, 99), 2)}`, use: 'home' }],
    gender,
    birthDate: birth,
    address: [{ use: 'home', city, postalCode, country: 'XX' }],
  };
}

/* ------------------------------------------------------------ public */

/* Observations --bad-values may change (not the example study's window codes). */
function badValueEligible(def) {
  return def.code !== '8867-4' && def.code !== '2160-0';
}

/*
 * The positions (0-based, among the `total` eligible Observations in output
 * order) that --bad-values K changes: i places into the i-th of K equal
 * slices; ascending and distinct for 0 <= K <= total.
 */
export function badValueIndices(total, k) {
  if (!Number.isInteger(k) || k < 0) throw new Error('badValues must be a non-negative integer');
  if (k > total) throw new Error(`badValues (${k}) exceeds the number of Observations it may change (${total})`);
  const out = [];
  const width = k > 0 ? Math.max(1, Math.floor(total / k)) : 1;
  for (let i = 0; i < k; i++) out.push(Math.floor((i * total) / k) + (i % width));
  return out;
}

/* The MRN patient n carries: its own, or with --duplicate-mrn K that of patient n-(P-K). */
function mrnNumber(n, patients, duplicateMrn) {
  return n > patients - duplicateMrn ? n - (patients - duplicateMrn) : n;
}

function checkDuplicateMrn(k, patients) {
  if (!Number.isInteger(k) || k < 0) throw new Error('duplicateMrn must be a non-negative integer');
  if (2 * k > patients) throw new Error(`duplicateMrn (${k}) needs at least ${2 * k} patients (have ${patients})`);
}

/* Applies --duplicate-mrn to a generated Patient (number n of `patients`). */
function withMrn(patient, n, patients, duplicateMrn) {
  if (duplicateMrn > 0) {
    const m = mrnNumber(n, patients, duplicateMrn);
    if (m !== n) patient.identifier[0].value = `MRN${pad(m, 8)}`;
  }
  return patient;
}

/*
 * --bad-values state: `bad` holds the eligible positions to change; apply()
 * counts the eligible Observations as they are generated.
 */
function badValueState(total, k) {
  const bad = new Set(badValueIndices(total, k));
  let e = 0;
  return {
    apply(obs, def) {
      if (!badValueEligible(def)) return obs;
      if (bad.has(e)) obs.effectiveDateTime = obs.effectiveDateTime.slice(0, 7);
      e++;
      return obs;
    },
  };
}

/* How many of `count` Observations cycling through `defs` (from position 0) are eligible. */
function eligibleCount(count, defs) {
  let n = 0;
  for (let j = 0; j < count; j++) if (badValueEligible(defs[j % defs.length])) n++;
  return n;
}

/*
 * Yields the resources for the options, in output order:
 *   { patients, seed, obsPerPatient = 12, observationsOnly,
 *     duplicateMrn = 0, badValues = 0 }
 * (observationsOnly = N switches to the throughput data set and ignores
 * patients/obsPerPatient; duplicateMrn and badValues as --duplicate-mrn and
 * --bad-values in the header comment).
 */
export function* generateResources({ patients = 10, seed = 1, obsPerPatient = 12, observationsOnly, duplicateMrn = 0, badValues: badValuesK = 0 } = {}) {
  const rng = makeRng(seed);
  if (observationsOnly !== undefined) {
    yield* observationsOnlySet(rng, observationsOnly, duplicateMrn, badValuesK);
    return;
  }
  if (!Number.isInteger(patients) || patients < 0) throw new Error('patients must be a non-negative integer');
  if (!Number.isInteger(obsPerPatient) || obsPerPatient < 0) throw new Error('obsPerPatient must be >= 0');
  checkDuplicateMrn(duplicateMrn, patients);
  const pw = Math.max(6, String(patients).length);
  const ow = Math.max(4, String(obsPerPatient).length);
  const codes = [...VITALS.map((d) => ['vital-signs', d]), ...LABS.map((d) => ['laboratory', d])];
  const bad = badValueState(patients * eligibleCount(obsPerPatient, codes.map(([, d]) => d)), badValuesK);

  for (let n = 1; n <= patients; n++) {
    const patient = withMrn(patientResource(rng, n, pw), n, patients, duplicateMrn);
    const pid = patient.id.slice(4);
    const patientRef = `Patient/${patient.id}`;
    yield patient;

    const nEnc = rng.int(1, 4);
    const starts = [];
    for (let e = 0; e < nEnc; e++) starts.push(T0 + Math.floor(rng.next() * ((T1 - T0) / 300000)) * 300000);
    starts.sort((a, b) => a - b);
    const encounters = starts.map((start, e) => {
      const offset = rng.weighted(OFFSETS.map((o) => [o, o[2]]));
      const [cls, clsDisplay, typeCode, typeDisplay] = rng.pick(ENCOUNTER_TYPES);
      const hours = cls === 'IMP' ? rng.int(24, 120) : rng.int(1, 4);
      const end = start + hours * 3600000;
      return {
        resource: {
          resourceType: 'Encounter',
          id: `enc-${pid}-${pad(e + 1, 2)}`,
          status: 'finished',
          class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: cls, display: clsDisplay },
          type: [codeable(SNOMED, typeCode, typeDisplay)],
          subject: { reference: patientRef },
          period: { start: formatLocal(start, offset), end: formatLocal(end, offset) },
        },
        start,
        offset,
      };
    });
    for (const e of encounters) yield e.resource;

    for (let j = 0; j < obsPerPatient; j++) {
      const enc = encounters[Math.floor((j * nEnc) / obsPerPatient)];
      const [category, def] = codes[j % codes.length];
      const round = Math.floor(j / codes.length);
      const minutes = 10 + (j % codes.length) * 3 + round * 60 + rng.int(0, 2);
      const t = enc.start + minutes * 60000;
      const issuedMs = t + (category === 'laboratory' ? 90 + rng.int(0, 60) : 2) * 60000;
      const obs = observation({
        id: `obs-${pid}-${pad(j + 1, ow)}`,
        patientRef,
        encounterRef: `Encounter/${enc.resource.id}`,
        def,
        category,
        effective: formatLocal(t, enc.offset),
        issued: new Date(issuedMs).toISOString(),
        rng,
      });
      yield bad.apply(obs, def);
    }

    const first = encounters[0];
    const nCond = rng.int(0, 3);
    for (let c = 0; c < nCond; c++) {
      const [code, display] = CONDITIONS[(n + c * 3) % CONDITIONS.length];
      const status = rng.weighted([
        ['active', 6],
        ['resolved', 2],
        ['remission', 1],
      ]);
      const onsetMs = first.start - rng.int(30, 3000) * 86400000;
      const dateOnly = rng.chance(0.3);
      const cond = {
        resourceType: 'Condition',
        id: `cond-${pid}-${pad(c + 1, 2)}`,
        clinicalStatus: codeable('http://terminology.hl7.org/CodeSystem/condition-clinical', status),
        verificationStatus: codeable('http://terminology.hl7.org/CodeSystem/condition-ver-status', 'confirmed'),
        category: [
          codeable('http://terminology.hl7.org/CodeSystem/condition-category', 'problem-list-item', 'Problem List Item'),
        ],
        code: codeable(SNOMED, code, display, display),
        subject: { reference: patientRef },
        onsetDateTime: dateOnly ? new Date(onsetMs).toISOString().slice(0, 10) : formatLocal(onsetMs, first.offset),
        recordedDate: formatLocal(first.start, first.offset),
      };
      if (status === 'resolved') {
        cond.abatementDateTime = formatLocal(first.start + rng.int(5, 200) * 86400000, first.offset);
      }
      yield cond;
    }

    const nMed = rng.int(0, 3);
    for (let m = 0; m < nMed; m++) {
      const [code, display, dosage] = MEDICATIONS[(n * 2 + m) % MEDICATIONS.length];
      const enc = rng.pick(encounters);
      yield {
        resourceType: 'MedicationRequest',
        id: `medrx-${pid}-${pad(m + 1, 2)}`,
        status: rng.weighted([
          ['active', 5],
          ['completed', 3],
          ['stopped', 1],
        ]),
        intent: 'order',
        medicationCodeableConcept: codeable(RXNORM, code, display, display),
        subject: { reference: patientRef },
        encounter: { reference: `Encounter/${enc.resource.id}` },
        authoredOn: formatLocal(enc.start + rng.int(20, 90) * 60000, enc.offset),
        dosageInstruction: [{ text: dosage }],
      };
    }

    const nAll = rng.int(0, 2);
    for (let a = 0; a < nAll; a++) {
      const [code, display, category] = ALLERGIES[(n + a * 2) % ALLERGIES.length];
      yield {
        resourceType: 'AllergyIntolerance',
        id: `allergy-${pid}-${pad(a + 1, 2)}`,
        clinicalStatus: codeable('http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', 'active'),
        verificationStatus: codeable(
          'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification',
          'confirmed'
        ),
        type: 'allergy',
        category: [category],
        criticality: rng.pick(['low', 'high', 'unable-to-assess']),
        code: codeable(SNOMED, code, display, display),
        patient: { reference: patientRef },
        recordedDate: formatLocal(first.start, first.offset),
        reaction: [
          {
            manifestation: [codeable(SNOMED, '247472004', 'Wheal')],
            severity: rng.pick(['mild', 'moderate', 'severe']),
          },
        ],
      };
    }
  }
}

function* observationsOnlySet(rng, count, duplicateMrn, badValuesK) {
  if (!Number.isInteger(count) || count < 0) throw new Error('observationsOnly must be a non-negative integer');
  const nPat = Math.max(1, Math.min(10, count));
  checkDuplicateMrn(duplicateMrn, nPat);
  const bad = badValueState(eligibleCount(count, VITALS), badValuesK);
  const pw = 6;
  const sw = Math.max(4, String(Math.ceil(count / nPat)).length);
  for (let n = 1; n <= nPat; n++) yield withMrn(patientResource(rng, n, pw), n, nPat, duplicateMrn);
  const start = Date.UTC(2020, 0, 1, 8, 0, 0);
  for (let j = 0; j < count; j++) {
    const p = (j % nPat) + 1;
    const seq = Math.floor(j / nPat) + 1;
    const def = VITALS[j % VITALS.length];
    const offset = OFFSETS[p % OFFSETS.length];
    const t = start + j * 60000 + rng.int(0, 59) * 1000;
    const obs = observation({
      id: `obs-${pad(p, pw)}-${pad(seq, sw)}`,
      patientRef: `Patient/pat-${pad(p, pw)}`,
      def,
      category: 'vital-signs',
      effective: formatLocal(t, offset),
      issued: new Date(t + 120000).toISOString(),
      rng,
      profile: false,
      codeText: false,
    });
    yield bad.apply(obs, def);
  }
}

/* All resources for the options as an array (see generateResources). */
export function generate(options) {
  return [...generateResources(options)];
}

/* ---------------------------------------------------------------- CLI */

function parseArgs(argv) {
  const opts = {};
  const need = (i) => {
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  const int = (s, name) => {
    if (!/^\d+$/.test(s)) throw new Error(`${name} must be a non-negative integer`);
    return Number(s);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--patients':
        opts.patients = int(need(i), a);
        i++;
        break;
      case '--seed':
        opts.seed = need(i);
        i++;
        break;
      case '--obs-per-patient':
        opts.obsPerPatient = int(need(i), a);
        i++;
        break;
      case '--observations-only':
        opts.observationsOnly = int(need(i), a);
        i++;
        break;
      case '--out':
        opts.out = need(i);
        i++;
        break;
      case '--duplicate-mrn':
        opts.duplicateMrn = int(need(i), a);
        i++;
        break;
      case '--bad-values':
        opts.badValues = int(need(i), a);
        i++;
        break;
      case '-h':
      case '--help':
        opts.help = true;
        break;
      default:
        throw new Error(`unknown argument ${a}`);
    }
  }
  return opts;
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`generate.mjs: ${err.message}\n`);
    process.exit(2);
  }
  if (opts.help || (opts.patients === undefined && opts.observationsOnly === undefined)) {
    process.stderr.write(
      'usage: node generate.mjs --patients N --seed S [--obs-per-patient K] [--out FILE.ndjson]\n' +
        '       node generate.mjs --observations-only N --seed S [--out FILE.ndjson]\n' +
        '       either with [--duplicate-mrn K] [--bad-values K]\n'
    );
    process.exit(opts.help ? 0 : 2);
  }
  // Options are checked before anything is written or created
  // (generateResources throws on its first step).
  const it = generateResources({
    patients: opts.patients,
    seed: opts.seed ?? 1,
    obsPerPatient: opts.obsPerPatient,
    observationsOnly: opts.observationsOnly,
    duplicateMrn: opts.duplicateMrn,
    badValues: opts.badValues,
  });
  let first;
  try {
    first = it.next();
  } catch (err) {
    process.stderr.write(`generate.mjs: ${err.message}\n`);
    process.exit(2);
  }
  const all = (function* () {
    if (!first.done) yield first.value;
    yield* it;
  })();
  const out = opts.out ? fs.createWriteStream(opts.out) : process.stdout;
  let buf = '';
  for (const r of all) {
    buf += JSON.stringify(r) + '\n';
    if (buf.length > 1 << 20) {
      if (!out.write(buf)) await once(out, 'drain');
      buf = '';
    }
  }
  if (buf) out.write(buf);
  if (opts.out) {
    out.end();
    await once(out, 'finish');
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`generate.mjs: ${err.stack || err}\n`);
    process.exit(1);
  });
}
