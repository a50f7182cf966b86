// The two sides that speak for REDCap must say the same thing: the C
// validator (redcap/validate.c, run through redcap/redcap-validate-cli) and the
// REDCap emulator (tests/servers/redcap-emulator.mjs, a real import). One set
// of bad rows goes through both; for every row the emulator's error text and
// the validator's text (its first whole-request message, else its per-value
// lines) must be identical, and a good row must pass both.
//   VALIDATE_CLI=build/redcap/redcap-validate-cli node --test tests/integration/test-validate-crosscheck.mjs
// The validator loads each project the way the bridge does: from the
// emulator's own metadata, project, event, arm, formEventMapping and
// repeatingFormsEvents answers.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startRedcapEmulator } from '../servers/redcap-emulator.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const CLI = process.env.VALIDATE_CLI || path.join(repo, 'build/redcap/redcap-validate-cli');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'validate-crosscheck-'));

const H =
  '"Variable / Field Name","Form Name","Section Header","Field Type","Field Label","Choices, Calculations, OR Slider Labels","Field Note","Text Validation Type OR Show Slider Number","Text Validation Min","Text Validation Max","Identifier?","Branching Logic (Show field only if...)","Required Field?","Custom Alignment","Question Number (surveys only)","Matrix Group Name","Matrix Ranking?","Field Annotation"';

/* Every kind of field the validator checks; ae repeats. */
const DICT = [
  H,
  'record_id,demo,,text,"ID",,,,,,,,,,,,,',
  'sex,demo,,radio,"Sex","1, Female | 2, Male | 3, Unknown",,,,,,,,,,,,',
  'color,demo,,dropdown,"Color","r, Red | g, Green",,,,,,,,,,,,',
  'smoker,demo,,yesno,"Smoker",,,,,,,,,,,,,',
  'alert,demo,,truefalse,"Alert",,,,,,,,,,,,,',
  'race,demo,,checkbox,"Race","1, White | 2, Black | -99, Unknown | A.b, Other",,,,,,,,,,,,',
  'age,demo,,text,"Age",,,integer,,,,,,,,,,',
  'hr,demo,,text,"Heart rate",,,integer,20,250,,,,,,,,@FORCE-MINMAX',
  'weight,demo,,text,"Weight",,,number,0.5,500,,,,,,,,',
  'creat,demo,,text,"Creatinine",,,number,,,,,,,,,,',
  'temp,demo,,text,"Temperature",,,number_1dp,,,,,,,,,,',
  'glucose,demo,,text,"Glucose",,,number_2dp_comma_decimal,,,,,,,,,,',
  'dob,demo,,text,"DOB",,,date_ymd,,,,,,,,,,',
  'visit,demo,,text,"Visit",,,date_mdy,,,,,,,,,,',
  'seen,demo,,text,"Seen",,,datetime_ymd,,,,,,,,,,',
  'seen_s,demo,,text,"Seen (s)",,,datetime_seconds_ymd,,,,,,,,,,',
  'enrolled,demo,,text,"Enrolled",,,date_ymd,2000-01-01,2030-12-31,,,,,,,,@FORCE-MINMAX',
  'email,demo,,text,"Email",,,email,,,,,,,,,,',
  'pain,demo,,slider,"Pain","None | | Worst",,,,,,,,,,,,',
  'score,demo,,slider,"Score","Low | | High",,,1,10,,,,,,,,',
  'notes,demo,,notes,"Notes",,,,,,,,,,,,,',
  'bmi,demo,,calc,"BMI","[weight]/4",,,,,,,,,,,,',
  'intro,demo,,descriptive,"Read this",,,,,,,,,,,,,',
  'ae_term,ae,,text,"AE term",,,,,,,,,,,,,',
  'ae_grade,ae,,radio,"Grade","1, Mild | 2, Moderate | 3, Severe",,,,,,,,,,,,',
  'ae_kind,ae,,checkbox,"Kind","1, Local | 2, Systemic",,,,,,,,,,,,',
].join('\n');

const LONG_DICT = [
  H,
  'record_id,baseline,,text,"ID",,,,,,,,,,,,,',
  'age,baseline,,text,"Age",,,integer,,,,,,,,,,',
  'hx,baseline,,checkbox,"History","1, Asthma | 2, Diabetes",,,,,,,,,,,,',
  'v_date,visit,,text,"Visit date",,,date_ymd,,,,,,,,,,',
  'v_sbp,visit,,text,"SBP",,,integer,,,,,,,,,,',
  'med_name,meds,,text,"Medication",,,,,,,,,,,,,',
].join('\n');

const TOKENS = { cc: 'C0C0C0C0000000000000000000000001', plain: 'C0C0C0C0000000000000000000000002', lg: 'C0C0C0C0000000000000000000000003' };

const PROJECTS = [
  { name: 'cc', dictionary_csv: DICT, repeating: ['ae'] },
  { name: 'plain', dictionary_csv: DICT },
  {
    name: 'lg',
    dictionary_csv: LONG_DICT,
    arms: [{ arm_num: 1, name: 'Arm One' }],
    events: [{ event_name: 'Baseline', arm_num: 1 }, { event_name: 'Visit 1', arm_num: 1 }, { event_name: 'Visit 2', arm_num: 1 }],
    formEventMapping: [
      { arm_num: 1, unique_event_name: 'baseline_arm_1', form: 'baseline' },
      { arm_num: 1, unique_event_name: 'visit_1_arm_1', form: 'visit' },
      { arm_num: 1, unique_event_name: 'visit_1_arm_1', form: 'meds' },
      { arm_num: 1, unique_event_name: 'visit_2_arm_1', form: 'visit' },
    ],
    repeating: [
      { event_name: 'visit_1_arm_1', form_name: 'meds', custom_form_label: '' },
      { event_name: 'visit_2_arm_1', form_name: '' },
    ],
  },
];

const LONG_NAME = 'x'.repeat(101);

/*
 * [project, row (record_id added when absent and not null), good?, options].
 * Each bad row has one defect, so that the order in which either side checks
 * does not matter. Rows are imported one at a time; options.overwrite imports
 * with overwriteBehavior=overwrite (the validator: --overwrite). The
 * validator judges as REDCap does (pad_time; the bridge itself refuses a
 * datetime without its time).
 */
const CASES = [
  // Good rows pass both.
  ['cc', { sex: '1', color: 'g', smoker: '0', alert: '1', race___1: '1', race____99: '0', race___a_b: '1', age: '-3', hr: '+80', weight: '.5', temp: '-37.5', glucose: '5,40', dob: '2024-02-29', visit: '2024-02-29', seen: '2024-01-02 3:04', seen_s: '2024-01-02T03:04:05', enrolled: '2000-01-01', email: 'a.b@example.org', pain: '0', score: '10', notes: 'free "text"', bmi: 'ignored', demo_complete: '2' }, true],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1', ae_term: 'x', ae_grade: '3', ae_kind___2: '1', ae_complete: '0' }, true],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: 'new', ae_term: 'y' }, true],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '32767', ae_term: 'z' }, true],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '0000032767', ae_term: 'z' }, true],
  ['cc', { weight: '900', dob: '1850-01-01' }, true], // min/max without @FORCE-MINMAX: saved
  ['cc', { seen_s: '2024-01-02 10:00' }, true], // datetime_seconds without seconds: :00
  ['cc', { demo_timestamp: '2024-01-01 00:00:00', redcap_survey_identifier: '' }, true],
  // Dates as REDCap 15.7.6 turns them before it checks them (Records.php
  // saveData, clean_date_ymd): one-digit months and days, '/' separators
  // (saved as written), a 2-character year; a datetime's missing time is
  // 00:00, an hour alone is lost (00:00), extra seconds are dropped.
  ['cc', { dob: '2024-1-2' }, true],
  ['cc', { dob: '2024/02/29' }, true],
  ['cc', { dob: '24-1-2' }, true],
  ['cc', { seen: '2024-01-02' }, true],
  ['cc', { seen: '2024-01-02 13' }, true],
  ['cc', { seen: '2024-01-02 10:00:00' }, true],
  ['cc', { seen: '2024-1-2T9:5' }, true],
  ['cc', { seen_s: '2024-01-02' }, true],
  // A checkbox "0" is a box REDCap leaves alone: no placement error.
  ['cc', { ae_kind___1: '0' }, true],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1', ae_term: 'x', race___1: '0' }, true],
  ['lg', { redcap_event_name: 'visit_2_arm_1', redcap_repeat_instance: '1', v_sbp: '1', hx___1: '0' }, true, { overwrite: true }],
  // A blank data access group; an instrument without an instance (the row is
  // not a repeating one); 100 bytes of record name; a "<br" that is no tag.
  ['cc', { redcap_data_access_group: '', sex: '1' }, true],
  ['cc', { redcap_repeat_instrument: 'ae', sex: '1' }, true],
  ['cc', { record_id: 'é'.repeat(50) }, true],
  ['cc', { record_id: 'a<bra>b' }, true],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '9' }, true, { overwrite: true }],
  // redcap_event_name on a classic project: taken and ignored.
  ['cc', { redcap_event_name: 'no_such_event_arm_1', sex: '2' }, true],
  ['lg', { redcap_event_name: 'baseline_arm_1', age: '40', hx___2: '1' }, true],
  ['lg', { redcap_event_name: 'visit_1_arm_1', redcap_repeat_instrument: 'meds', redcap_repeat_instance: '2', med_name: 'x' }, true],
  ['lg', { redcap_event_name: 'visit_2_arm_1', redcap_repeat_instance: '3', v_sbp: '120' }, true],

  // Invalid choices.
  ['cc', { sex: '4' }],
  ['cc', { sex: 'Female' }],
  ['cc', { color: 'R' }],
  ['cc', { smoker: '2' }],
  ['cc', { alert: 'true' }],
  ['cc', { demo_complete: '3' }],
  // Checkboxes.
  ['cc', { race___1: '2' }],
  ['cc', { race____99: 'yes' }],
  ['cc', { race___a_b: 'checked' }],
  // integer / number / number_Ndp.
  ['cc', { age: '1.5' }],
  ['cc', { age: '1e2' }],
  ['cc', { age: 'ten' }],
  ['cc', { weight: 'abc' }],
  ['cc', { weight: '72.' }],
  ['cc', { creat: '1,2' }],
  ['cc', { temp: '+37.5' }],
  ['cc', { temp: '37' }],
  ['cc', { temp: '37.55' }],
  ['cc', { glucose: '5.40' }],
  ['cc', { glucose: '+5,40' }],
  // Dates and datetimes (import with dateFormat YMD).
  ['cc', { dob: '2023-02-29' }],
  ['cc', { dob: '02/28/2023' }],
  ['cc', { dob: '2024-13-01' }],
  ['cc', { dob: '2024-01-02 10:00' }],
  ['cc', { visit: '12/31/2024' }],
  ['cc', { seen: '2024-01-02 25:00' }],
  ['cc', { seen: '2024-01-02 10:60' }],
  ['cc', { seen_s: '2024-02-30 10:00:00' }],
  ['cc', { seen_s: '2024-01-02 10:00:61' }],
  ['cc', { dob: '2024-13-1' }], // quoted as REDCap turned it: 2024-13-01
  ['cc', { seen: '2024-1-2T25:00' }], // quoted: 2024-01-02 25:00
  ['cc', { dob: '2024.02.29' }],
  ['cc', { dob: '2024/2/29' }],
  ['cc', { email: 'x@' }],
  // @FORCE-MINMAX.
  ['cc', { hr: '19' }],
  ['cc', { hr: '251' }],
  ['cc', { enrolled: '1999-12-31' }],
  ['cc', { enrolled: '2031-01-01' }],
  // Sliders.
  ['cc', { pain: '5.5' }],
  ['cc', { pain: 'a lot' }],
  ['cc', { pain: '101' }],
  ['cc', { pain: '-1' }],
  ['cc', { score: '0' }],
  ['cc', { score: '11' }],
  // Unknown fields (one whole-request error listing them).
  ['cc', { nope: '1' }],
  ['cc', { race: '1' }],
  ['cc', { race___9: '1' }],
  ['cc', { intro: 'x' }],
  ['cc', { nope: '1', other: '' }],
  ['cc', { 'a&b': '1' }], // listed htmlspecialchars'd
  // Data access groups: the emulator has none, any name is invalid.
  ['cc', { redcap_data_access_group: 'dag_1', sex: '1' }],
  // Record names.
  ['cc', { record_id: null, sex: '1' }],
  ['cc', { record_id: '', sex: '1' }],
  ['cc', { record_id: ' ', sex: '1' }],
  ['cc', { record_id: 'é'.repeat(51) }],
  ['cc', { record_id: 'a+b' }],
  ['cc', { record_id: "o'neil" }],
  ['cc', { record_id: 'a&b' }],
  ['cc', { record_id: 'r#1' }],
  ['cc', { record_id: 'a<br>b' }],
  ['cc', { record_id: LONG_NAME }],
  // Repeat columns.
  ['cc', { ae_term: 'headache' }],
  ['cc', { ae_kind___1: '1' }],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '0', ae_term: 'x' }],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '00', ae_term: 'x' }],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: 'next', ae_term: 'x' }],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '-1', ae_term: 'x' }],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1.5', ae_term: 'x' }],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '32768', ae_term: 'x' }],
  ['cc', { redcap_repeat_instrument: 'demo', redcap_repeat_instance: '2', sex: '1' }],
  ['cc', { redcap_repeat_instrument: 'nope' }],
  ['cc', { redcap_repeat_instance: '2', sex: '1' }],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '2', sex: '1' }],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '2', race___2: '1' }],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '3' }], // nothing on the row repeats
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '40000' }], // the same text replaces the range's
  ['cc', { redcap_repeat_instrument: 'demo', redcap_repeat_instance: '2', ae_term: 'x' }],
  ['cc', { redcap_repeat_instrument: 'ae', ae_term: 'x' }],
  ['cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1', ae_term: 'x', redcap_survey_identifier: 's' }],
  ['plain', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1', ae_term: 'x' }],
  ['plain', { redcap_repeat_instance: '' }],
  // Longitudinal: events, designations, repeating events.
  ['lg', { redcap_event_name: 'nope_arm_1', age: '1' }],
  ['lg', { redcap_event_name: 'visit_1_arm_1', redcap_repeat_instrument: 'meds', redcap_repeat_instance: '1', age: '3' }],
  ['lg', { redcap_event_name: 'baseline_arm_1', v_sbp: '120' }],
  ['lg', { redcap_event_name: 'visit_2_arm_1', redcap_repeat_instance: '1', hx___1: '1' }],
  ['lg', { redcap_event_name: 'visit_2_arm_1', redcap_repeat_instrument: 'visit', redcap_repeat_instance: '1', v_sbp: '1' }],
  ['lg', { age: 'x' }],
  ['lg', { redcap_event_name: 'visit_1_arm_1', redcap_repeat_instrument: 'meds', redcap_repeat_instance: '40000', med_name: 'x' }],
  ['lg', { redcap_event_name: 'visit_2_arm_1', v_sbp: '1' }], // a repeating event's row without an instance column
  ['lg', { redcap_event_name: '', age: '1' }],
  ['lg', { redcap_event_name: 'visit_2_arm_1', redcap_repeat_instance: '1', hx___1: '0' }], // "0" still meets the form/event check
  ['lg', { redcap_event_name: 'baseline_arm_1', v_sbp: 'abc' }], // the placement text replaces the format's
  ['lg', { redcap_event_name: 'bad&event' }],
];

/*
 * Rows the two sides answer differently today. Each is asserted to differ, so
 * that fixing one side makes this test fail until the case moves to CASES.
 * Why they differ, and who is right, is in the comment of each. (None left:
 * the last ones -- one-digit months and days, '/' in a Y-M-D date, an hour
 * without minutes -- were settled from REDCap 15.7.6's Records.php.)
 */
const KNOWN_DIFFERENCES = [];

let srv;
const files = {}; // project -> CLI arguments

async function api(token, params) {
  const body = new URLSearchParams({ token, format: 'json', returnFormat: 'json', ...params });
  const r = await fetch(srv.url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  return { status: r.status, text: await r.text() };
}

/* The emulator's answers the bridge loads a project from, as CLI arguments. */
async function projectFiles(name, token) {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  const args = [];
  const fetchTo = async (content, flag, optional) => {
    const r = await api(token, { content });
    if (r.status !== 200) {
      assert.ok(optional, `${name} ${content}: ${r.status} ${r.text}`);
      return;
    }
    const f = path.join(dir, `${content}.json`);
    fs.writeFileSync(f, r.text);
    args.push(flag, f);
  };
  await fetchTo('metadata', '--metadata');
  await fetchTo('project', '--project');
  const proj = JSON.parse(fs.readFileSync(path.join(dir, 'project.json'), 'utf8'));
  if (String(proj.is_longitudinal) === '1') {
    await fetchTo('event', '--events');
    await fetchTo('arm', '--arms');
    await fetchTo('formEventMapping', '--mapping');
  }
  if (String(proj.has_repeating_instruments_or_events) === '1') await fetchTo('repeatingFormsEvents', '--repeating');
  return args;
}

const withRecord = (row, i) => (row.record_id === null ? Object.fromEntries(Object.entries(row).filter(([k]) => k !== 'record_id')) : { record_id: `r${i}`, ...row });

/* The emulator's answer to importing row alone: '' when saved, else the error text. */
async function emulatorText(project, row, opts = {}) {
  const params = { content: 'record', type: 'flat', data: JSON.stringify([row]) };
  if (opts.overwrite) params.overwriteBehavior = 'overwrite';
  const r = await api(TOKENS[project], params);
  if (r.status === 200) {
    await fetch(`${srv.origin}/__control/records?project=${project}`, { method: 'DELETE' });
    return '';
  }
  assert.equal(r.status, 400, r.text);
  return JSON.parse(r.text).error;
}

/* The validator's texts for rows of one project, in order. */
function validatorTexts(project, rows, opts = {}) {
  const f = path.join(tmp, `${project}-rows-${rows.length}.json`);
  fs.writeFileSync(f, JSON.stringify(rows));
  const p = spawnSync(CLI, [...files[project], ...(opts.overwrite ? ['--overwrite'] : []), '--rows', f], { encoding: 'utf8' });
  assert.equal(p.status, 0, `${CLI}: ${p.stderr}`);
  return JSON.parse(p.stdout).map((x) => x.text);
}

async function bothSides(cases) {
  const out = [];
  for (const project of Object.keys(TOKENS)) {
    for (const overwrite of [false, true]) {
      const mine = cases.map((c, i) => [c, i]).filter(([c]) => c[0] === project && !!c[3]?.overwrite === overwrite);
      if (!mine.length) continue;
      const rows = mine.map(([c, i]) => withRecord(c[1], i));
      const c = validatorTexts(project, rows, { overwrite });
      for (let k = 0; k < rows.length; k++) {
        const [kase, i] = mine[k];
        const emulator = await emulatorText(project, rows[k], { overwrite });
        out.push({ i, project, row: rows[k], good: kase[2] === true, emulator, validator: c[k] });
      }
    }
  }
  return out.sort((a, b) => a.i - b.i);
}

before(async () => {
  assert.ok(fs.existsSync(CLI), `${CLI} missing: build it (meson compile) or set VALIDATE_CLI`);
  srv = await startRedcapEmulator({
    port: 0,
    projects: PROJECTS,
    tokens: Object.entries(TOKENS).map(([project, token]) => ({ token, project })),
    rateLimit: 0,
  });
  for (const [name, token] of Object.entries(TOKENS)) files[name] = await projectFiles(name, token);
});

after(async () => {
  await srv?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('the C validator and the REDCap emulator give identical texts for every case', async () => {
  const results = await bothSides(CASES);
  const diffs = [];
  for (const r of results) {
    const label = `case ${r.i} (${r.project} ${JSON.stringify(r.row)})`;
    if (r.emulator !== r.validator) diffs.push(`${label}:\n  emulator:  ${JSON.stringify(r.emulator)}\n  validator: ${JSON.stringify(r.validator)}`);
    else if (r.good !== (r.emulator === '')) diffs.push(`${label}: ${r.good ? 'refused by both' : 'accepted by both'}: ${JSON.stringify(r.emulator)}`);
  }
  assert.deepEqual(diffs, []);
  assert.equal(results.length, CASES.length);
});

test('texts the cross-check relies on are REDCap 15.7.6 texts', async () => {
  // A few written out here, so that both sides cannot drift together.
  const results = await bothSides(CASES);
  const at = (project, row) => {
    const i = CASES.findIndex((c) => c[0] === project && JSON.stringify(c[1]) === JSON.stringify(row));
    assert.ok(i >= 0, JSON.stringify(row));
    return { r: `r${i}`, text: results.find((x) => x.i === i).validator };
  };
  let x = at('cc', { pain: '5.5' });
  assert.equal(x.text, `"${x.r}","pain","5.5","pain must be an integer"`);
  x = at('cc', { score: '11' });
  assert.equal(x.text, `"${x.r}","score","11","score should not be greater than the field maximum (10)"`);
  x = at('cc', { temp: '+37.5' });
  assert.equal(x.text, `"${x.r}","temp","+37.5","The value you provided could not be validated because it does not follow the expected format. Please try again."`);
  x = at('cc', { ae_kind___1: '1' });
  assert.equal(x.text, `"${x.r}","ae_kind___1","1","This field ('ae_kind___1') exists on a Repeating Instrument named ''. However, the fields 'redcap_repeat_instance' and/or 'redcap_repeat_instrument' for this row of data have no value, which are both required for importing data into a Repeating Instrument.  You are not allowed to import data for this field into a non-repeating instrument."`);
  x = at('lg', { redcap_event_name: 'visit_2_arm_1', redcap_repeat_instance: '1', hx___1: '1' });
  assert.equal(x.text, `"${x.r}","hx___1","1","This field ('hx___1') exists on an instrument that is not designated for the event named 'Visit 2 (Arm 1: Arm One)'. You are not allowed to import data for this field into this event."`);
  x = at('cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '0', ae_term: 'x' });
  assert.equal(x.text, `The record name (${x.r}) has an invalid value for 'redcap_repeat_instance'. The value must either be a positive integer or the value 'new'. Value provided: 0`);
  x = at('cc', { redcap_event_name: 'no_such_event_arm_1', sex: '2' });
  assert.equal(x.text, '');
  // REDCap 15.7.6 Classes/Records.php, saveData (flat rows): a blank record
  // name names the record id field (212 + field + 213), not 211 (EAV).
  x = at('cc', { record_id: ' ', sex: '1' });
  assert.equal(x.text, 'The record id field (record_id) is missing.');
  // An instance above 32767: a per-value line, "(where) " + column + 286.
  x = at('cc', { redcap_repeat_instrument: 'ae', redcap_repeat_instance: '32768', ae_term: 'x' });
  assert.equal(x.text, `"${x.r}","redcap_repeat_instance","32768","(redcap_repeat_instrument=""ae"") redcap_repeat_instance must have a numeric value between '1' and '32767' for any Repeating Event or Repeating Instrument.  Please add a valid numeric value to redcap_repeat_instance in the data import file and try again."`);
  x = at('lg', { redcap_event_name: 'visit_1_arm_1', redcap_repeat_instrument: 'meds', redcap_repeat_instance: '40000', med_name: 'x' });
  assert.match(x.text, /^"r\d+","redcap_repeat_instance","40000","\(redcap_event_name=""visit_1_arm_1""\) redcap_repeat_instance must have /);
  // An instrument on a repeating event's row: "(redcap_event_name=...) " + column + 255.
  x = at('lg', { redcap_event_name: 'visit_2_arm_1', redcap_repeat_instrument: 'visit', redcap_repeat_instance: '1', v_sbp: '1' });
  assert.equal(x.text, `"${x.r}","redcap_repeat_instrument","visit","(redcap_event_name=""visit_2_arm_1"") redcap_repeat_instrument should not have a value. This is a Repeating Event, which must always have a blank value for the redcap_repeat_instrument field.  Please remove this value from the data import file and try again."`);
  // Data access groups (220 + " " + names).
  x = at('cc', { redcap_data_access_group: 'dag_1', sex: '1' });
  assert.equal(x.text, 'The following Data Access Group are invalid for the redcap_data_access_group field: dag_1');
  // A date turned before it is checked is quoted turned.
  x = at('cc', { dob: '2024-13-1' });
  assert.equal(x.text, `"${x.r}","dob","2024-13-01","Invalid date format. (NOTE: Dates must be imported here only in Y-M-D format, regardless of the specific date format designated for this field.)"`);
  // A date alone in a datetime field: REDCap saves 00:00 (the bridge refuses it, see redcap/validate.h).
  assert.equal(at('cc', { seen: '2024-01-02' }).text, '');
});

test('the emulator saves dates as REDCap turns them', async () => {
  const row = { record_id: 'dates1', dob: '2024-1-2', visit: '2024/02/29', seen: '2024-01-02', seen_s: '2024-1-2T9:5', enrolled: '24-1-2' };
  const r = await api(TOKENS.cc, { content: 'record', type: 'flat', data: JSON.stringify([row]) });
  assert.equal(r.status, 200, r.text);
  const e = await api(TOKENS.cc, { content: 'record', type: 'flat', 'records[0]': 'dates1', 'fields[0]': 'dob', 'fields[1]': 'visit', 'fields[2]': 'seen', 'fields[3]': 'seen_s', 'fields[4]': 'enrolled' });
  assert.equal(e.status, 200, e.text);
  const [got] = JSON.parse(e.text);
  assert.deepEqual(
    { dob: got.dob, visit: got.visit, seen: got.seen, seen_s: got.seen_s, enrolled: got.enrolled },
    { dob: '2024-01-02', visit: '2024/02/29', seen: '2024-01-02 00:00', seen_s: '2024-01-02 09:05:00', enrolled: '2024-01-02' },
  );
  await fetch(`${srv.origin}/__control/records?project=cc`, { method: 'DELETE' });
});

test('known differences still differ (move a case to CASES once both sides agree)', async () => {
  for (const r of await bothSides(KNOWN_DIFFERENCES)) {
    assert.notEqual(r.emulator, r.validator, `case ${r.i} ${JSON.stringify(r.row)} now agrees: ${JSON.stringify(r.emulator)}`);
  }
});
