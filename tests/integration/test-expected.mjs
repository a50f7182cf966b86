// Unit tests of expected.mjs (the independent expectation of the example
// study's REDCap records) and of compareProject().
//   node --test tests/integration/test-expected.mjs
// Small hand-written resources, one rule at a time; then a round trip
// through the REDCap emulator (in-process) with generated data, which also
// checks that every expected value passes REDCap's validation.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { compareProject, datePart, expectedProject, fhirInstant, recordName, redcapDatetime, roundHalfUp } from './expected.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const SYS = 'urn:example:mrn';
const OPTS = { recordId: 'mrn', mrnSystem: SYS, siteTimeZone: 'UTC' };
const CAT = 'http://terminology.hl7.org/CodeSystem/observation-category';

/* ------------------------------------------------------------ resource builders */

const patient = (id, mrn, extra = {}) => ({
  resourceType: 'Patient',
  id,
  identifier: mrn === undefined ? [] : [{ system: SYS, value: mrn }, { system: 'urn:other', value: `X-${id}` }],
  gender: 'female',
  birthDate: '1950-02-03',
  ...extra,
});
const encounter = (id, pid, start) => ({ resourceType: 'Encounter', id, status: 'finished', subject: { reference: `Patient/${pid}` }, period: { start } });
const obs = (id, pid, code, value, time, { category = 'vital-signs', unit = '/min', text, extra = {} } = {}) => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  category: [{ coding: [{ system: CAT, code: category }] }],
  code: { coding: [{ system: 'http://loinc.org', code, display: `d${code}` }], ...(text === undefined ? {} : { text }) },
  subject: { reference: `Patient/${pid}` },
  effectiveDateTime: time,
  ...(value === undefined ? {} : { valueQuantity: { value, unit: 'u', system: 'http://unitsofmeasure.org', code: unit } }),
  ...extra,
});
const hr = (id, pid, value, time) => obs(id, pid, '8867-4', value, time);
const creat = (id, pid, value, time) => obs(id, pid, '2160-0', value, time, { category: 'laboratory', unit: 'mg/dL', text: 'Creatinine' });

const one = (resources, opts = OPTS) => {
  const e = expectedProject(resources, opts);
  const recs = Object.values(e.records);
  assert.equal(recs.length, 1, `one record expected, got ${Object.keys(e.records)}`);
  return { e, r: recs[0] };
};

/* ------------------------------------------------------------ helpers */

test('helpers: instants, REDCap datetimes, date parts, rounding', () => {
  assert.equal(fhirInstant('2020-01-02T00:30:00+02:00'), Date.UTC(2020, 0, 1, 22, 30));
  assert.equal(fhirInstant('2020-01-01T22:30:00.250Z'), Date.UTC(2020, 0, 1, 22, 30, 0, 250));
  assert.equal(fhirInstant('2020-01-01T22:30:00-05:30'), Date.UTC(2020, 0, 2, 4, 0));
  assert.equal(fhirInstant('2020-06-01', 'America/New_York'), Date.UTC(2020, 5, 1, 4, 0), 'a date is 00:00 in the site zone (EDT)');
  assert.equal(fhirInstant('2020-01-15', 'Europe/Berlin'), Date.UTC(2020, 0, 14, 23, 0));
  for (const partial of ['2020', '2020-03', '2020-02-30', 'x', undefined]) assert.equal(fhirInstant(partial), undefined, String(partial));
  assert.equal(redcapDatetime('2020-03-05T10:11:12.345+05:30'), '2020-03-05 10:11:12');
  assert.equal(redcapDatetime('2020-03-05T23:59:59-10:00'), '2020-03-05 23:59:59', 'never converted');
  assert.equal(redcapDatetime('2020-03'), '2020-03');
  assert.equal(redcapDatetime(undefined), '');
  assert.equal(datePart('2021-09-02T23:30:00-05:00'), '2021-09-02');
  assert.equal(datePart('2021-09-02'), '2021-09-02');
  assert.equal(datePart('2021'), '2021');
  assert.equal(roundHalfUp(72.5), 73);
  assert.equal(roundHalfUp(72.49), 72);
  assert.equal(roundHalfUp(0.49999999999999994), 0, 'no x + 0.5 rounding error');
  assert.equal(roundHalfUp(-2.5), -2);
  assert.equal(roundHalfUp(-2.6), -3);
  assert.ok(Object.is(roundHalfUp(-0.4), 0), 'no -0');
});

test('record names: MRN, or prefix + HMAC-SHA256 hex (RFC 4231 test case 2 as known answer)', () => {
  assert.equal(recordName('MRN1'), 'MRN1');
  // RFC 4231 4.3: key "Jefe", data "what do ya want for nothing?" ->
  // 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843
  const hmac = { hmacKey: Buffer.from('Jefe'), prefix: 'S', hexDigits: 16 };
  assert.equal(recordName('what do ya want for nothing?', hmac), 'S5bdcc146bf60754e');
  assert.equal(recordName('what do ya want for nothing?', { ...hmac, prefix: '', hexDigits: 64 }), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  assert.throws(() => recordName('x', { hmacKey: 'not a buffer', hexDigits: 8 }), TypeError);
  // In a project: the record is the study id; the MRN is not sent by default.
  const { e, r } = one([patient('p1', 'what do ya want for nothing?')], { ...OPTS, recordId: hmac });
  assert.deepEqual(Object.keys(e.records), ['S5bdcc146bf60754e']);
  assert.equal(r.fields.record_id, 'S5bdcc146bf60754e');
  assert.equal(r.fields.mrn, '');
  assert.equal(one([patient('p1', 'M')], { ...OPTS, recordId: hmac, mrnField: true }).r.fields.mrn, 'M');
});

/* ------------------------------------------------------------ demographics */

test('demographics: mrn, dob, sex map; no encounter leaves the anchored fields blank', () => {
  const cases = [['female', '1'], ['male', '2'], ['other', '3'], ['unknown', '3'], [undefined, '3']];
  for (const [gender, code] of cases) {
    const { r } = one([patient('p1', 'MRN1', { gender })]);
    assert.deepEqual(r.fields, { record_id: 'MRN1', mrn: 'MRN1', dob: '1950-02-03', sex: code, enroll_date: '', hr_baseline: '', creat_max_48h: '' });
  }
  const { r } = one([patient('p1', 'MRN1', { birthDate: undefined }), hr('o1', 'p1', 70, '2020-01-01T10:00:00Z')]);
  assert.equal(r.fields.dob, '');
  assert.equal(r.fields.hr_baseline, '', 'no anchor: nothing pulled');
});

test('enroll_date: earliest Encounter compared as instants, date part as written', () => {
  // B is written with an earlier date, but A starts earlier (22:30Z < 23:00Z).
  const { r } = one([
    patient('p1', 'MRN1'),
    encounter('e-b', 'p1', '2020-01-01T23:00:00Z'),
    encounter('e-a', 'p1', '2020-01-02T00:30:00+02:00'),
    encounter('e-c', 'p1', '2020-01-05T00:00:00Z'),
    encounter('e-partial', 'p1', '2019-12'), // no instant: never the anchor
  ]);
  assert.equal(r.fields.enroll_date, '2020-01-02');
  // A date-only start is 00:00 in the site's zone.
  const ny = one([patient('p1', 'MRN1'), encounter('e1', 'p1', '2020-06-01'), encounter('e2', 'p1', '2020-06-01T03:30:00Z')], { ...OPTS, siteTimeZone: 'America/New_York' });
  assert.equal(ny.r.fields.enroll_date, '2020-06-01', '03:30Z is before 04:00Z (00:00 EDT)');
  const nyAnchor = one([patient('p1', 'MRN1'), encounter('e1', 'p1', '2020-06-01'), hr('o1', 'p1', 80, '2020-06-02T03:30:00Z')], { ...OPTS, siteTimeZone: 'America/New_York' });
  assert.equal(nyAnchor.r.fields.hr_baseline, '80', '23.5 h after 00:00 EDT');
  const utcAnchor = one([patient('p1', 'MRN1'), encounter('e1', 'p1', '2020-06-01'), hr('o1', 'p1', 80, '2020-06-02T03:30:00Z')]);
  assert.equal(utcAnchor.r.fields.hr_baseline, '', '27.5 h after 00:00 UTC');
});

test('hr_baseline: NEAR within +-24 h inclusive, smallest distance, earlier on a tie, rounded half up', () => {
  const base = [patient('p1', 'MRN1'), encounter('e1', 'p1', '2020-03-10T12:00:00+01:00')]; // anchor 11:00Z
  const pick = (...list) => one([...base, ...list]).r.fields.hr_baseline;
  // Edges: exactly 24 h before / after count, a second more does not.
  assert.equal(pick(hr('o1', 'p1', 61, '2020-03-09T11:00:00Z')), '61');
  assert.equal(pick(hr('o1', 'p1', 62, '2020-03-11T12:00:00+01:00')), '62');
  assert.equal(pick(hr('o1', 'p1', 63, '2020-03-09T10:59:59Z'), hr('o2', 'p1', 64, '2020-03-11T11:00:01Z')), '');
  // Smallest |dt| wins, whatever the order and the offsets it is written in.
  assert.equal(pick(hr('o1', 'p1', 70, '2020-03-10T05:00:00Z'), hr('o2', 'p1', 71, '2020-03-10T13:30:00+02:00'), hr('o3', 'p1', 72, '2020-03-10T18:00:00Z')), '71');
  // A tie: the earlier one.
  assert.equal(pick(hr('o9', 'p1', 90, '2020-03-10T12:00:00Z'), hr('o1', 'p1', 80, '2020-03-10T10:00:00Z')), '80');
  assert.equal(pick(hr('o1', 'p1', 80, '2020-03-10T12:00:00Z'), hr('o9', 'p1', 90, '2020-03-10T05:00:00-05:00')), '90');
  // Rounding half up.
  assert.equal(pick(hr('o1', 'p1', 72.5, '2020-03-10T11:00:00Z')), '73');
  assert.equal(pick(hr('o1', 'p1', 72.4999, '2020-03-10T11:00:00Z')), '72');
  // Other codes, values that are not numbers and partial times are no candidates.
  assert.equal(pick(obs('o1', 'p1', '9279-1', 16, '2020-03-10T11:00:00Z'), hr('o2', 'p1', undefined, '2020-03-10T11:00:00Z'), hr('o3', 'p1', 77, '2020-03')), '');
  // Status final, amended, corrected only (as mapping.json filters).
  const st = (id, value, status) => ({ ...hr(id, 'p1', value, '2020-03-10T11:00:00Z'), status });
  assert.equal(pick(st('o1', 50, 'preliminary'), st('o2', 51, 'entered-in-error'), st('o3', 52, 'cancelled')), '');
  assert.equal(pick(st('o1', 53, 'amended')), '53');
  assert.equal(pick(st('o1', 54, 'corrected')), '54');
});

test('creat_max_48h: MAX within [anchor, anchor + 48 h], printed as String(Number)', () => {
  const base = [patient('p1', 'MRN1'), encounter('e1', 'p1', '2020-03-10T11:00:00Z')];
  const pick = (...list) => one([...base, ...list]).r.fields.creat_max_48h;
  assert.equal(pick(creat('c1', 'p1', 9.9, '2020-03-10T10:59:59Z'), creat('c2', 'p1', 1.1, '2020-03-10T11:00:00Z')), '1.1', 'before the anchor: out');
  assert.equal(pick(creat('c1', 'p1', 1.10, '2020-03-12T11:00:00Z'), creat('c2', 'p1', 0.9, '2020-03-11T00:00:00Z')), '1.1', '+48 h exactly is in; 1.10 prints as 1.1');
  assert.equal(pick(creat('c1', 'p1', 3, '2020-03-12T11:00:01Z'), creat('c2', 'p1', 0.95, '2020-03-12T12:00:00+01:00')), '0.95');
  assert.equal(pick(creat('c1', 'p1', 1e21, '2020-03-11T11:00:00Z')), '1e+21');
  assert.equal(pick(creat('c1', 'p1', 2, '2020-03-09T11:00:00Z')), '');
});

test('window fields choose among usable values: no value or another unit never hides a good one', () => {
  const base = [patient('p1', 'MRN1'), encounter('e1', 'p1', '2020-03-10T11:00:00Z')];
  const unit = (o, code, more = {}) => ({ ...o, valueQuantity: { ...o.valueQuantity, code, ...more } });
  const run = (...list) => one([...base, ...list]);
  // The nearest heart rate has no value, the next one is in /s: the one 3 h away counts.
  let { e, r } = run(hr('at', 'p1', undefined, '2020-03-10T11:00:00Z'), unit(hr('n1', 'p1', 1.2, '2020-03-10T12:00:00Z'), '/s'), hr('ok', 'p1', 71.5, '2020-03-10T14:00:00Z'));
  assert.equal(r.fields.hr_baseline, '72');
  assert.deepEqual(e.heldBack, []);
  // No code: the unit counts; neither: refused.
  ({ r } = run({ ...hr('u', 'p1', 66, '2020-03-10T11:00:00Z'), valueQuantity: { value: 66, unit: '/min' } }));
  assert.equal(r.fields.hr_baseline, '66');
  // The largest creatinine is in another unit: the largest in mg/dL counts.
  ({ r } = run(unit(creat('c1', 'p1', 88, '2020-03-10T12:00:00Z'), 'umol/L'), creat('c2', 'p1', 1.1, '2020-03-10T13:00:00Z')));
  assert.equal(r.fields.creat_max_48h, '1.1');
  // Only candidates without a value: blank, nothing held.
  ({ e, r } = run(hr('at', 'p1', undefined, '2020-03-10T11:00:00Z'), creat('c1', 'p1', undefined, '2020-03-10T12:00:00Z')));
  assert.equal(r.fields.hr_baseline, '');
  assert.equal(r.fields.creat_max_48h, '');
  assert.deepEqual(e.heldBack, []);
  // Only refused ones in the window: the demographics row is held back (dob and sex with it).
  const d = one([...base, { ...hr('x', 'p1', 70, '2020-03-10T11:00:00Z'), valueQuantity: { value: 70 } }, hr('far', 'p1', 60, '2020-03-12T11:00:00Z'), hr('v', 'p1', 50, '2020-03-20T00:00:00Z')]);
  assert.deepEqual(d.r.fields, { record_id: 'MRN1', mrn: '', dob: '', sex: '', enroll_date: '', hr_baseline: '', creat_max_48h: '' });
  assert.deepEqual(d.e.heldBack.map((h) => [h.instrument, h.field, h.value]), [['demographics', 'hr_baseline', '']]);
  const c = one([...base, unit(creat('c1', 'p1', 88, '2020-03-10T12:00:00Z'), 'umol/L'), creat('c2', 'p1', 1.1, '2020-03-09T13:00:00Z')]);
  assert.deepEqual(c.e.heldBack.map((h) => [h.instrument, h.field]), [['demographics', 'creat_max_48h']]);
  // A refused one outside the window does not count.
  ({ e, r } = run(unit(hr('out', 'p1', 70, '2020-03-12T11:00:01Z'), '/s')));
  assert.equal(r.fields.hr_baseline, '');
  assert.deepEqual(e.heldBack, []);
  // Too large to round, or a number in a string: refused, so the usable one counts.
  ({ r } = run(hr('big', 'p1', 1e16, '2020-03-10T11:00:00Z'), hr('s', 'p1', '70', '2020-03-10T11:00:00Z'), hr('ok', 'p1', 80, '2020-03-10T20:00:00Z')));
  assert.equal(r.fields.hr_baseline, '80');
});

/* ------------------------------------------------------------ repeating instruments */

test('vitals and labs: one instance per Observation of the category; panels without a value', () => {
  const { r } = one([
    patient('p1', 'MRN1'),
    hr('o1', 'p1', 72, '2020-03-05T10:11:12.345+05:30'),
    obs('o2', 'p1', '85354-9', undefined, '2020-03-05T10:12:00-04:00'),
    obs('o3', 'p1', '8310-5', 36.6, '2020-03-05T10:13:00Z', { unit: 'Cel' }),
    creat('o4', 'p1', 0.82, '2020-03-06T08:00:00+01:00'),
    obs('o5', 'p1', '2345-7', 101, '2020-03-06T08:00:00+01:00', { category: 'laboratory', unit: 'mg/dL', extra: { status: 'preliminary' } }), // no code.text
    obs('o6', 'p1', '1234-5', 1, '2020-03-06T08:00:00Z', { category: 'imaging' }),
  ]);
  assert.deepEqual(r.instances.vitals.map((i) => [i.source, i.values]), [
    ['Observation/o1', { vs_datetime: '2020-03-05 10:11:12', vs_loinc: '8867-4', vs_value: '72', vs_unit: '/min' }],
    ['Observation/o2', { vs_datetime: '2020-03-05 10:12:00', vs_loinc: '85354-9', vs_value: '', vs_unit: '' }],
    ['Observation/o3', { vs_datetime: '2020-03-05 10:13:00', vs_loinc: '8310-5', vs_value: '36.6', vs_unit: 'Cel' }],
  ]);
  assert.deepEqual(r.instances.labs.map((i) => i.values), [
    { lab_datetime: '2020-03-06 08:00:00', lab_loinc: '2160-0', lab_name: 'Creatinine', lab_value: '0.82', lab_unit: 'mg/dL' },
    { lab_datetime: '2020-03-06 08:00:00', lab_loinc: '2345-7', lab_name: 'd2345-7', lab_value: '101', lab_unit: 'mg/dL' }, // no text: the coding's display
  ]);
});

test('conditions, medications, allergies', () => {
  const { r } = one([
    patient('p1', 'MRN1'),
    {
      resourceType: 'Condition', id: 'c1', subject: { reference: 'Patient/p1' },
      clinicalStatus: { coding: [{ system: 'x', code: 'active' }] },
      code: { coding: [{ system: 'http://snomed.info/sct', code: '44054006', display: 'Diabetes' }, { system: 'y', code: 'z' }] },
      onsetDateTime: '2016-04-07T23:30:00-05:00',
    },
    { resourceType: 'Condition', id: 'c2', subject: { reference: 'Patient/p1' }, code: { coding: [{ system: 's', code: '1' }] }, onsetDateTime: '2019-08-10' },
    {
      resourceType: 'MedicationRequest', id: 'm1', status: 'stopped', subject: { reference: 'Patient/p1' },
      medicationCodeableConcept: { coding: [{ system: 'rx', code: '310798', display: 'HCTZ 25 MG' }] }, authoredOn: '2021-09-02T01:00:00+10:00',
    },
    { resourceType: 'AllergyIntolerance', id: 'a1', patient: { reference: 'Patient/p1' }, criticality: 'high', code: { coding: [{ system: 's', code: '91936005', display: 'Penicillin' }] } },
    { resourceType: 'AllergyIntolerance', id: 'a2', patient: { reference: 'Patient/other' }, code: { coding: [{ code: 'x' }] } },
    { resourceType: 'AllergyIntolerance', id: 'a3', patient: { reference: 'Patient/p1' }, code: { text: 'no coding' } }, // nothing to store
  ]);
  assert.deepEqual(r.instances.conditions.map((i) => i.values), [
    { cond_code: '44054006', cond_system: 'http://snomed.info/sct', cond_display: 'Diabetes', cond_onset: '2016-04-07', cond_status: 'active' },
    { cond_code: '1', cond_system: 's', cond_display: '', cond_onset: '2019-08-10', cond_status: '' },
  ]);
  assert.deepEqual(r.instances.medications.map((i) => i.values), [{ med_code: '310798', med_display: 'HCTZ 25 MG', med_status: 'stopped', med_authored: '2021-09-02' }]);
  assert.deepEqual(r.instances.allergies.map((i) => [i.source, i.values]), [['AllergyIntolerance/a1', { allergy_code: '91936005', allergy_display: 'Penicillin', allergy_criticality: 'high' }]]);
});

test('held back: partial dates for datetime and date fields leave the instance out; a bad dob holds the demographics row', () => {
  const { e, r } = one([
    patient('p1', 'MRN1'),
    encounter('e1', 'p1', '2020-03-01T08:00:00Z'),
    hr('o1', 'p1', 70, '2020-03'), // valid FHIR, not a REDCap datetime; also no window candidate
    hr('o2', 'p1', 90, '2020-03-01T09:00:00Z'),
    creat('o3', 'p1', 1.5, '2020-03-01T00:00:00Z'.slice(0, 10)), // date only: no time for lab_datetime
    { resourceType: 'Condition', id: 'c1', subject: { reference: 'Patient/p1' }, code: { coding: [{ code: '1' }] }, onsetDateTime: '2019' },
  ]);
  assert.deepEqual(r.instances.vitals.map((i) => i.source), ['Observation/o2']);
  assert.deepEqual(r.instances.labs, []);
  assert.deepEqual(r.instances.conditions, []);
  assert.equal(r.fields.hr_baseline, '90');
  assert.deepEqual(e.heldBack.map((h) => [h.source, h.instrument, h.field, h.value]), [
    ['Observation/o1', 'vitals', 'vs_datetime', '2020-03'],
    ['Observation/o3', 'labs', 'lab_datetime', '2020-03-01'],
    ['Condition/c1', 'conditions', 'cond_onset', '2019'],
  ]);
  // A partial birthDate holds the whole demographics row; the record stays for its instances.
  const d = one([patient('p1', 'MRN1', { birthDate: '1950-02' }), hr('o2', 'p1', 90, '2020-03-01T09:00:00Z')]);
  assert.deepEqual(d.r.fields, { record_id: 'MRN1', mrn: '', dob: '', sex: '', enroll_date: '', hr_baseline: '', creat_max_48h: '' });
  assert.deepEqual(d.e.heldBack.map((h) => [h.instrument, h.field, h.value]), [['demographics', 'dob', '1950-02']]);
  // ... and without instances there is no record at all.
  assert.deepEqual(Object.keys(expectedProject([patient('p1', 'MRN1', { birthDate: '1950' })], OPTS).records), []);
});

test('refused: an MRN carried by two Patients (both refused, nothing of theirs lands), no MRN, two MRNs', () => {
  const e = expectedProject([
    patient('p1', 'DUP'),
    patient('p2', 'OK'),
    patient('p3', 'DUP'),
    patient('p4', undefined),
    { ...patient('p5', 'A'), identifier: [{ system: SYS, value: 'A' }, { system: SYS, value: 'B' }] },
    { ...patient('p6', 'C'), identifier: [{ system: SYS, value: 'C' }, { system: SYS, value: 'C' }] },
    hr('o1', 'p1', 70, '2020-01-01T00:00:00Z'),
    hr('o3', 'p3', 71, '2020-01-01T00:00:00Z'),
    hr('o2', 'p2', 72, '2020-01-01T00:00:00Z'),
  ], OPTS);
  assert.deepEqual(Object.keys(e.records).sort(), ['C', 'OK']);
  assert.deepEqual(e.refused, ['p1', 'p3', 'p4', 'p5']);
  assert.deepEqual(e.refusals, [
    { patient: 'p1', mrn: 'DUP', reason: 'ambiguous MRN' },
    { patient: 'p3', mrn: 'DUP', reason: 'ambiguous MRN' },
    { patient: 'p4', mrn: null, reason: 'no MRN' },
    { patient: 'p5', mrn: null, reason: 'MRN conflict' },
  ]);
  assert.equal(e.records.OK.instances.vitals.length, 1);
  // An MRN that cannot be a REDCap record name is refused too.
  const bad = expectedProject([patient('p1', 'A+B'), patient('p2', 'x'.repeat(101))], OPTS);
  assert.deepEqual(Object.keys(bad.records), []);
  assert.deepEqual(bad.refusals.map((x) => x.reason), ['record name with + & # or apostrophe', 'record name longer than 100 characters']);
});

test('input: NDJSON text; a later version of the same resource wins', () => {
  const lines = [
    patient('p1', 'MRN1'),
    hr('o1', 'p1', 70, '2020-01-01T00:00:00Z'),
    hr('o1', 'p1', 75, '2020-01-01T00:00:00Z'),
  ].map((r) => JSON.stringify(r)).join('\n') + '\n';
  const e = expectedProject(lines, OPTS);
  assert.deepEqual(e.records.MRN1.instances.vitals.map((i) => i.values.vs_value), ['75']);
  assert.throws(() => expectedProject([], { recordId: 'mrn' }), /mrnSystem/);
  assert.throws(() => expectedProject([], { ...OPTS, siteTimeZone: 'Nowhere/Nothing' }), RangeError);
});

/* ------------------------------------------------------------ compareProject */

const COLUMNS = [
  'record_id', 'redcap_repeat_instrument', 'redcap_repeat_instance', 'mrn', 'dob', 'sex', 'enroll_date', 'hr_baseline', 'creat_max_48h', 'demographics_complete',
  'vs_datetime', 'vs_loinc', 'vs_value', 'vs_unit', 'vitals_complete', 'lab_datetime', 'lab_loinc', 'lab_name', 'lab_value', 'lab_unit', 'labs_complete',
  'cond_code', 'cond_system', 'cond_display', 'cond_onset', 'cond_status', 'conditions_complete', 'med_code', 'med_display', 'med_status', 'med_authored',
  'medications_complete', 'allergy_code', 'allergy_display', 'allergy_criticality', 'allergies_complete',
];

/* The emulator dump of a perfect push of `exp`, instances numbered in `order` (per instrument: index permutation). */
function dumpOf(exp, reorder = (list) => list) {
  const blank = () => Object.fromEntries(COLUMNS.map((c) => [c, '']));
  const rows = [];
  for (const [record, r] of Object.entries(exp.records)) {
    rows.push({ ...blank(), ...r.fields, demographics_complete: '0' });
    for (const [instr, list] of Object.entries(r.instances)) {
      reorder(list).forEach((inst, i) => rows.push({ ...blank(), record_id: record, redcap_repeat_instrument: instr, redcap_repeat_instance: String(i + 1), ...inst.values, [`${instr}_complete`]: '0' }));
    }
  }
  return { project: 'study', columns: COLUMNS, rows, records: Object.keys(exp.records).map((record) => ({ record })) };
}

function smallExpectation() {
  return expectedProject([
    patient('p1', 'MRN1'),
    encounter('e1', 'p1', '2020-03-10T11:00:00Z'),
    hr('o1', 'p1', 72, '2020-03-10T11:00:00Z'),
    hr('o2', 'p1', 80, '2020-03-10T12:00:00Z'),
    obs('o3', 'p1', '9279-1', 16, '2020-03-10T12:01:00Z'),
    creat('o4', 'p1', 1.2, '2020-03-10T13:00:00Z'),
    patient('p2', 'MRN2', { gender: 'male' }),
    hr('o5', 'p2', 60, '2021-01-01T00:00:00Z'),
  ], OPTS);
}

test('compareProject: equal data gives no difference, whatever the instance order; status columns ignored', () => {
  const exp = smallExpectation();
  assert.deepEqual(compareProject(exp, dumpOf(exp)), []);
  assert.deepEqual(compareProject(exp, dumpOf(exp, (l) => [...l].reverse())), []);
  const d = dumpOf(exp);
  for (const row of d.rows) if (row.redcap_repeat_instrument === 'vitals') row.vitals_complete = '2';
  assert.deepEqual(compareProject(exp, d), []);
  assert.deepEqual(compareProject(exp, d, { checkComplete: true }), [
    'record MRN1, vitals instance 1: vitals_complete is "2", expected "0"',
    'record MRN1, vitals instance 2: vitals_complete is "2", expected "0"',
    'record MRN1, vitals instance 3: vitals_complete is "2", expected "0"',
    'record MRN2, vitals instance 1: vitals_complete is "2", expected "0"',
  ]);
});

test('compareProject: detects a missing instance, a duplicate instance, a wrong value, a gap and a duplicate number', () => {
  const exp = smallExpectation();
  const vit = (d) => d.rows.filter((r) => r.record_id === 'MRN1' && r.redcap_repeat_instrument === 'vitals');

  const missing = dumpOf(exp);
  missing.rows.splice(missing.rows.indexOf(vit(missing)[2]), 1);
  const m = compareProject(exp, missing);
  assert.equal(m.length, 1, m.join('\n'));
  assert.match(m[0], /^record MRN1, vitals: missing instance \{"vs_datetime":"2020-03-10 12:01:00","vs_loinc":"9279-1","vs_value":"16","vs_unit":"\/min"\} \(expected 1, found 0; from Observation\/o3\)$/);

  const dup = dumpOf(exp);
  dup.rows.push({ ...vit(dup)[0], redcap_repeat_instance: '4' });
  const du = compareProject(exp, dup);
  assert.equal(du.length, 1, du.join('\n'));
  assert.match(du[0], /^record MRN1, vitals: instance \{.*"vs_value":"72".*\} found 2 times \(instances 1, 4\), expected 1$/);

  const wrong = dumpOf(exp);
  vit(wrong)[1].vs_value = '81';
  const w = compareProject(exp, wrong);
  assert.equal(w.length, 2, w.join('\n'));
  assert.match(w[0], /missing instance .*"vs_value":"80"/);
  assert.match(w[1], /unexpected instance .*"vs_value":"81".* \(instances 2\)/);

  const gap = dumpOf(exp);
  vit(gap)[2].redcap_repeat_instance = '5';
  const g = compareProject(exp, gap);
  assert.deepEqual(g, ['record MRN1, vitals: instance numbers have gaps (missing 3, 4; present 1, 2, 5)']);

  const twice = dumpOf(exp);
  vit(twice)[2].redcap_repeat_instance = '2';
  const t = compareProject(exp, twice);
  assert.deepEqual(t, ['record MRN1, vitals: instance 2 appears 2 times']);
});

test('compareProject: demographics values, unexpected and missing records, values in foreign columns', () => {
  const exp = smallExpectation();
  const d = dumpOf(exp);
  const base1 = d.rows.find((r) => r.record_id === 'MRN1' && r.redcap_repeat_instrument === '');
  base1.hr_baseline = '73';
  base1.vs_value = '5';
  d.rows = d.rows.filter((r) => r.record_id !== 'MRN2');
  d.rows.push({ ...Object.fromEntries(COLUMNS.map((c) => [c, ''])), record_id: 'MRN9', mrn: 'MRN9' });
  const labRow = d.rows.find((r) => r.redcap_repeat_instrument === 'labs');
  labRow.cond_code = 'x';
  const diffs = compareProject(exp, d);
  assert.deepEqual(diffs, [
    'record MRN1: hr_baseline is "73", expected "72"',
    'record MRN1: unexpected value "5" in vs_value of the non-repeating row',
    'record MRN1, labs instance 1: unexpected value "x" in cond_code',
    'record MRN2: missing in REDCap',
    'record MRN9: in REDCap but not expected (1 rows: demographics)',
  ]);
});

/* ------------------------------------------------------------ generate.mjs defects */

test('generate.mjs: --duplicate-mrn and --bad-values change only what they document', async () => {
  const { generate, badValueIndices, MRN_SYSTEM } = await import('../servers/generate.mjs');
  const plain = generate({ patients: 10, seed: 'defects' });
  assert.deepEqual(generate({ patients: 10, seed: 'defects', duplicateMrn: 0, badValues: 0 }), plain);
  const def = generate({ patients: 10, seed: 'defects', duplicateMrn: 2, badValues: 3 });
  assert.equal(def.length, plain.length);
  const changed = [];
  def.forEach((r, i) => {
    const p = plain[i];
    if (JSON.stringify(r) === JSON.stringify(p)) return;
    if (r.resourceType === 'Patient') {
      assert.deepEqual({ ...r, identifier: p.identifier }, p, 'only the identifier changes');
      assert.equal(r.identifier[0].system, MRN_SYSTEM);
      changed.push(`${r.id} ${r.identifier[0].value}`);
    } else {
      assert.equal(r.resourceType, 'Observation');
      assert.deepEqual({ ...r, effectiveDateTime: p.effectiveDateTime }, p, 'only effectiveDateTime changes');
      assert.equal(r.effectiveDateTime, p.effectiveDateTime.slice(0, 7));
      changed.push(`${r.id} ${r.code.coding[0].code} ${r.effectiveDateTime.length}`);
    }
  });
  // The header comment's examples: P=10, K=2 and 10 x 12 Observations, K=3.
  assert.deepEqual(changed.filter((c) => c.startsWith('pat-')), ['pat-000009 MRN00000001', 'pat-000010 MRN00000002']);
  assert.deepEqual(changed.filter((c) => c.startsWith('obs-')), ['obs-000001-0002 85354-9 7', 'obs-000004-0006 29463-7 7', 'obs-000007-0011 2823-3 7']);
  // Observations-only data sets take both options too.
  const only = generate({ observationsOnly: 40, seed: 'o', duplicateMrn: 1, badValues: 2 });
  assert.deepEqual(only.filter((r) => r.resourceType === 'Patient').map((r) => r.identifier[0].value).slice(-1), ['MRN00000001']);
  assert.equal(only.filter((r) => r.resourceType === 'Observation' && r.effectiveDateTime.length === 7).length, 2);
  assert.ok(only.filter((r) => r.effectiveDateTime?.length === 7).every((r) => r.code.coding[0].code !== '8867-4'));
  // Limits.
  assert.throws(() => generate({ patients: 3, seed: 1, duplicateMrn: 2 }), /needs at least 4 patients/);
  assert.throws(() => generate({ patients: 1, seed: 1, obsPerPatient: 2, badValues: 2 }), /exceeds/);
  for (let total = 0; total < 40; total++) {
    for (let k = 0; k <= total; k++) {
      const idx = badValueIndices(total, k);
      assert.equal(idx.length, k);
      assert.ok(idx.every((x, i) => x >= 0 && x < total && (i === 0 || x > idx[i - 1])), `${total} ${k}: ${idx}`);
    }
  }
});

/* ------------------------------------------------------------ round trip through the emulator */

test('round trip: generated data with defects pushed into the REDCap emulator matches the expectation', async () => {
  const { generate, MRN_SYSTEM } = await import('../servers/generate.mjs');
  const { startRedcapEmulator } = await import('../servers/redcap-emulator.mjs');
  const resources = generate({ patients: 40, seed: 'expected', obsPerPatient: 14, duplicateMrn: 3, badValues: 6 });
  const hmac = { hmacKey: Buffer.alloc(32, 7), prefix: 'S', hexDigits: 16 };
  for (const recordId of ['mrn', hmac]) {
    const exp = expectedProject(resources, { recordId, mrnSystem: MRN_SYSTEM, siteTimeZone: 'Europe/Berlin' });
    // --duplicate-mrn 3 of 40: patients 38-40 carry the MRNs of 1-3.
    assert.deepEqual(exp.refused, ['pat-000001', 'pat-000002', 'pat-000003', 'pat-000038', 'pat-000039', 'pat-000040']);
    assert.ok(exp.refusals.every((x) => x.reason === 'ambiguous MRN'));
    // Every partial effectiveDateTime of a patient who is not refused is held back, nothing else.
    const refusedIds = new Set(exp.refused);
    const partial = resources.filter((x) => x.resourceType === 'Observation' && x.effectiveDateTime.length === 7 && !refusedIds.has(x.subject.reference.slice(8)));
    assert.deepEqual(exp.heldBack.map((h) => h.source).sort(), partial.map((x) => `Observation/${x.id}`).sort());
    assert.ok(exp.heldBack.every((h) => h.field === 'vs_datetime' || h.field === 'lab_datetime'));
    assert.ok(exp.heldBack.length >= 3, `held back ${exp.heldBack.length}`);
    assert.equal(Object.keys(exp.records).length, 34);

    const srv = await startRedcapEmulator({
      projects: [{ name: 'study', dictionary_csv: fs.readFileSync(path.join(repo, 'conf/example-project/dictionary.csv'), 'utf8'), repeating: ['vitals', 'labs', 'conditions', 'medications', 'allergies'] }],
      tokens: [{ token: 'ABCDEF0123456789ABCDEF0123456789', project: 'study' }],
      rateLimit: 0,
    });
    try {
      // A perfect push: demographics rows without blanks, one 'new' instance per resource.
      const rows = [];
      for (const [record, r] of Object.entries(exp.records)) {
        rows.push(Object.fromEntries(Object.entries(r.fields).filter(([, v]) => v !== '')));
        for (const [instr, list] of Object.entries(r.instances)) {
          for (const i of list) rows.push({ record_id: record, redcap_repeat_instrument: instr, redcap_repeat_instance: 'new', ...i.values });
        }
      }
      const body = new URLSearchParams({ token: 'ABCDEF0123456789ABCDEF0123456789', content: 'record', format: 'json', data: JSON.stringify(rows), returnFormat: 'json' });
      const r = await fetch(srv.url, { method: 'POST', body });
      assert.equal(r.status, 200, await r.clone().text());
      assert.deepEqual(await r.json(), { count: 34 });
      const dump = await (await fetch(`${srv.origin}/__control/records?project=study`)).json();
      assert.deepEqual(compareProject(exp, dump), []);
      // The same push again duplicates every instance: compareProject says so.
      await fetch(srv.url, { method: 'POST', body });
      const again = compareProject(exp, await (await fetch(`${srv.origin}/__control/records?project=study`)).json());
      assert.ok(again.length > 0 && again.every((x) => / found 2 times /.test(x)), again.slice(0, 3).join('\n'));
      // What was held back (a partial date) is refused by REDCap with its
      // datetime message, quoting the value with the time REDCap 15.7.6 adds
      // before it checks (Classes/Records.php, saveData: "YYYY-MM 00:00:00").
      const h = exp.heldBack[0];
      assert.match(h.value, /^\d{4}-\d{2}$/);
      const bad = { record_id: h.record, redcap_repeat_instrument: h.instrument, redcap_repeat_instance: 'new', [h.field]: h.value };
      const br = await fetch(srv.url, { method: 'POST', body: new URLSearchParams({ token: 'ABCDEF0123456789ABCDEF0123456789', content: 'record', format: 'json', data: JSON.stringify([bad]), returnFormat: 'json' }) });
      assert.equal(br.status, 400);
      assert.equal((await br.json()).error, `"${h.record}","${h.field}","${h.value} 00:00:00","Invalid date format. (NOTE: Dates must be imported here only in Y-M-D H:M[:S] format, regardless of the specific date format designated for this field.)"`);
    } finally {
      await srv.close();
    }
  }
});
