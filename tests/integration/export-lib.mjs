// Helpers for the `fhir-redcap-bridge export` tests and benchmark: project
// definitions, deterministic records, loading them into the REDCap emulator,
// the emulator's own single-request exports (the reference a batched export
// must equal byte for byte), an export-only config, and running the command.
//
// Run directly for a self-check of the data and the reference exports (no
// bridge needed):
//
//   node tests/integration/export-lib.mjs [--records 10000,100000] [--density 1]
import { spawn } from 'node:child_process';
import { writeFileSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { startRedcapEmulator, writeConfig, bridgeBin, exampleDir, tempDir, cleanup } from './lib.mjs';

export const CLASSIC_TOKEN = 'C1A55100000000000000000000000001';
export const LONG_TOKEN = 'B0A55200000000000000000000000002';
export const DELETE_TOKEN = 'DE1E7E00000000000000000000000003'; // classic project, all rights (record delete)
export const BAD_TOKEN = 'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF';
export const CLASSIC_REPEATING = ['vitals', 'labs', 'conditions', 'medications', 'allergies'];
// The summary line when stderr is not a terminal.
export const SUMMARY_RE = /exported (\d+) records \((\d+) rows\) in (\d+) requests/;

/* ------------------------------------------------------------ random */

/* mulberry32: a small deterministic PRNG; returns () => [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

function tools(rnd) {
  const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = (list) => list[Math.floor(rnd() * list.length)];
  const date = (y0, y1) => `${int(y0, y1)}-${pad(int(1, 12))}-${pad(int(1, 28))}`;
  const datetime = (y0, y1, seconds = true) =>
    `${date(y0, y1)} ${pad(int(0, 23))}:${pad(int(0, 59))}${seconds ? `:${pad(int(0, 59))}` : ''}`;
  const maybe = (p, v) => (rnd() < p ? v : '');
  return { int, pick, date, datetime, maybe };
}

// Texts that exercise CSV quoting (comma, quote, line break), PHP's JSON
// escaping ("/" and non-ASCII), and UTF-8.
const LAB_NAMES = ['Glucose', 'Hemoglobin A1c', 'Sodium, serum', 'Creatinine "enzymatic"', 'Potassium\nwhole blood',
  'Müller ratio', '東京 panel', 'Ratio a/b', 'C-reactive protein', 'Lactate; arterial'];
const UNITS = ['mg/dL', 'mmol/L', '/min', '%', 'µmol/L', 'mm[Hg]', 'kg/m2', 'g/L'];
const LOINC = ['8867-4', '8480-6', '8462-4', '8310-5', '9279-1', '2708-6', '29463-7'];
const CONDITIONS = [['44054006', 'Type 2 diabetes mellitus'], ['59621000', 'Hypertension, essential'],
  ['195967001', 'Asthma "mild"'], ['13645005', 'COPD / chronic obstructive'], ['35489007', 'Dépression'],
  ['73211009', 'Diabetes\r\nunspecified']];
const MEDS = [['860975', 'Metformin 500 MG Oral Tablet'], ['197361', 'Amlodipine 5 MG, tablet'], ['310965', 'Ibuprofen "200 mg"'],
  ['1049621', 'Oxycodone / Acetaminophen'], ['']];
const ALLERGIES = [['91936005', 'Penicillin', 'high'], ['300916003', 'Latex, natural rubber', 'low'], ['418689008', 'Grass pollen', ''],
  ['227493005', 'Cashew nuts — severe', 'unable-to-assess']];

/* ------------------------------------------------------------ classic */

/*
 * Rows (REDCap flat import rows) for the example study
 * (conf/example-project/dictionary.csv: demographics + repeating vitals,
 * labs, conditions, medications, allergies) for records start..start+n-1.
 * Record names from name(i) (default the number: REDCap's natural order puts
 * 2 before 10). density scales the number of repeat instances (about
 * 6 rows per record at 1). Every field type and validation of that
 * dictionary gets values, some blank; every form status 0/1/2.
 */
export function classicRows(n, { seed = 1, density = 1, start = 1, name = (i) => String(i) } = {}) {
  const rows = [];
  for (let i = start; i < start + n; i++) {
    const rnd = prng(seed * 1000003 + i);
    const t = tools(rnd);
    const rid = name(i);
    rows.push({
      record_id: rid,
      mrn: `MRN${pad(i, 8)}`,
      dob: t.maybe(0.95, t.date(1930, 2010)),
      sex: t.pick(['1', '2', '3', '']),
      enroll_date: t.maybe(0.9, t.date(2019, 2024)),
      hr_baseline: t.maybe(0.8, String(t.int(35, 180))),
      creat_max_48h: t.maybe(0.7, (t.int(30, 900) / 100).toString()),
      demographics_complete: String(t.int(0, 2)),
    });
    const count = (max) => Math.floor(rnd() * (max * density + 1));
    const rep = (form, k, fields) => rows.push({ record_id: rid, redcap_repeat_instrument: form, redcap_repeat_instance: String(k), ...fields, [`${form}_complete`]: String(t.int(0, 2)) });
    for (let k = 1, m = count(4); k <= m; k++) {
      rep('vitals', k, { vs_datetime: t.datetime(2019, 2024), vs_loinc: t.pick(LOINC), vs_value: String(t.int(300, 2000) / 10), vs_unit: t.pick(UNITS) });
    }
    for (let k = 1, m = count(3); k <= m; k++) {
      rep('labs', k, { lab_datetime: t.maybe(0.9, t.datetime(2019, 2024)), lab_loinc: t.pick(LOINC), lab_name: t.pick(LAB_NAMES),
        lab_value: t.maybe(0.9, String(t.int(1, 99999) / 100)), lab_unit: t.pick(UNITS) });
    }
    for (let k = 1, m = count(2); k <= m; k++) {
      const [code, display] = t.pick(CONDITIONS);
      rep('conditions', k, { cond_code: code, cond_system: 'http://snomed.info/sct', cond_display: display,
        cond_onset: t.maybe(0.7, t.date(1990, 2024)), cond_status: t.pick(['active', 'resolved', 'inactive', '']) });
    }
    for (let k = 1, m = count(2); k <= m; k++) {
      const [code, display = ''] = t.pick(MEDS);
      rep('medications', k, { med_code: code, med_display: display, med_status: t.pick(['active', 'stopped', 'completed']),
        med_authored: t.date(2015, 2024) });
    }
    for (let k = 1, m = count(1); k <= m; k++) {
      const [code, display, crit] = t.pick(ALLERGIES);
      rep('allergies', k, { allergy_code: code, allergy_display: display, allergy_criticality: crit });
    }
  }
  return rows;
}

/* The emulator's --project value for the example study as project NAME. */
export function classicProjectArg(name = 'classic', title = 'Export test / classic, Zürich') {
  return `${name}=${join(exampleDir, 'dictionary.csv')},repeating=${CLASSIC_REPEATING.join(';')},title=${title.replace(/,/g, '')}`;
}

/* ------------------------------------------------------------ longitudinal */

// Two arms; a repeating instrument (adverse_events) in one event, a
// repeating event (weekly calls), checkboxes (one with codes REDCap rewrites
// in column names), every field type that holds data, a descriptive and a
// calc field (left out / blank in exports).
const LONG_DICT = [
  '"Variable / Field Name","Form Name","Section Header","Field Type","Field Label","Choices, Calculations, OR Slider Labels","Field Note","Text Validation Type OR Show Slider Number","Text Validation Min","Text Validation Max","Identifier?","Branching Logic (Show field only if...)","Required Field?","Custom Alignment","Question Number (surveys only)","Matrix Group Name","Matrix Ranking?","Field Annotation"',
  'study_id,enrollment,,text,"Study ID",,,,,,,,,,,,,',
  'initials,enrollment,,text,"Initials",,,,,,y,,,,,,,',
  'enroll_date,enrollment,,text,"Enrollment date",,,date_ymd,,,,,,,,,,',
  'sex,enrollment,,dropdown,"Sex","F, Female | M, Male | U, Unknown",,,,,,,,,,,,',
  'race,enrollment,,checkbox,"Race","1, White | 2, Black or African American | 3, Asian | 98, Other | UNK-X, Not reported",,,,,,,,,,,,',
  'consent,enrollment,,yesno,"Consented",,,,,,,,,,,,,',
  'consent_info,enrollment,,descriptive,"Check the signed form.",,,,,,,,,,,,,',
  'visit_date,visit,,text,"Visit date",,,date_ymd,,,,,,,,,,',
  'weight,visit,,text,"Weight (kg)",,,number,,,,,,,,,,',
  'bmi,visit,,calc,"BMI","[weight]/3",,,,,,,,,,,,',
  'symptoms,visit,,checkbox,"Symptoms","1, Fever | 2, Cough | 3, Headache | 4, Fatigue, tiredness",,,,,,,,,,,,',
  'pain,visit,,slider,"Pain","None | | Worst",,,,,,,,,,,,',
  'visit_notes,visit,,notes,"Notes",,,,,,,,,,,,,',
  'ae_term,adverse_events,,text,"Adverse event",,,,,,,,,,,,,',
  'ae_grade,adverse_events,,radio,"Grade","1, Mild | 2, Moderate | 3, Severe",,,,,,,,,,,,',
  'ae_ongoing,adverse_events,,truefalse,"Ongoing",,,,,,,,,,,,,',
  'ae_start,adverse_events,,text,"Start",,,datetime_ymd,,,,,,,,,,',
  'call_date,weekly_call,,text,"Call date",,,date_ymd,,,,,,,,,,',
  'call_ok,weekly_call,,yesno,"Reached",,,,,,,,,,,,,',
  'done_date,closeout,,text,"Completion date",,,date_ymd,,,,,,,,,,',
  'done_reason,closeout,,radio,"Reason","1, Completed | 2, Withdrew | 3, Lost to follow-up",,,,,,,,,,,,',
].join('\n') + '\n';

const LONG_EVENTS = {
  arms: [{ arm_num: 1, name: 'Treatment' }, { arm_num: 2, name: 'Observation' }],
  events: [
    { event_name: 'Baseline', arm_num: 1, unique_event_name: 'baseline_arm_1' },
    { event_name: 'Follow up', arm_num: 1, unique_event_name: 'follow_up_arm_1' },
    { event_name: 'Weekly call', arm_num: 1, unique_event_name: 'weekly_call_arm_1' },
    { event_name: 'Closeout', arm_num: 1, unique_event_name: 'closeout_arm_1' },
    { event_name: 'Baseline', arm_num: 2, unique_event_name: 'baseline_arm_2' },
    { event_name: 'Visit', arm_num: 2, unique_event_name: 'visit_arm_2' },
  ],
  formEventMapping: [
    { arm_num: 1, unique_event_name: 'baseline_arm_1', form: 'enrollment' },
    { arm_num: 1, unique_event_name: 'baseline_arm_1', form: 'visit' },
    { arm_num: 1, unique_event_name: 'follow_up_arm_1', form: 'visit' },
    { arm_num: 1, unique_event_name: 'follow_up_arm_1', form: 'adverse_events' },
    { arm_num: 1, unique_event_name: 'weekly_call_arm_1', form: 'weekly_call' },
    { arm_num: 1, unique_event_name: 'closeout_arm_1', form: 'closeout' },
    { arm_num: 2, unique_event_name: 'baseline_arm_2', form: 'enrollment' },
    { arm_num: 2, unique_event_name: 'visit_arm_2', form: 'visit' },
  ],
  repeating: [
    { event_name: 'follow_up_arm_1', form_name: 'adverse_events' },
    { event_name: 'weekly_call_arm_1', form_name: '' },
  ],
};
export const LONG_EVENT_NAMES = LONG_EVENTS.events.map((e) => e.unique_event_name);

/* Writes the longitudinal dictionary and events into dir; returns the emulator's --project value. */
export function longitudinalProjectArg(dir, name = 'long') {
  writeFileSync(join(dir, 'long-dict.csv'), LONG_DICT);
  writeFileSync(join(dir, 'long-events.json'), JSON.stringify(LONG_EVENTS));
  return `${name}=${join(dir, 'long-dict.csv')},longitudinal=${join(dir, 'long-events.json')},title=Export test / longitudinal`;
}

/* Import rows for the longitudinal project: records start..start+n-1 ("L-0001"...); every 5th in arm 2. */
export function longitudinalRows(n, { seed = 2, start = 1 } = {}) {
  const rows = [];
  const checks = (codes, p, rnd) => Object.fromEntries(codes.map((c) => [c, rnd() < p ? '1' : '0']));
  const RACE = ['race___1', 'race___2', 'race___3', 'race___98', 'race___unk_x'];
  const SYMPTOMS = ['symptoms___1', 'symptoms___2', 'symptoms___3', 'symptoms___4'];
  const NOTES = ['Felt well', 'Reports dizziness, "on and off"', 'Line one\nline two', 'Überweisung / referral', ''];
  for (let i = start; i < start + n; i++) {
    const rnd = prng(seed * 7919 + i);
    const t = tools(rnd);
    const id = `L-${pad(i, 5)}`;
    const arm2 = i % 5 === 0;
    const ev = (e, fields) => rows.push({ study_id: id, redcap_event_name: e, ...fields });
    const enrollment = () => ({ initials: t.pick(['AB', 'CD', 'ÉF', 'G,H', '']), enroll_date: t.date(2020, 2024),
      sex: t.pick(['F', 'M', 'U', '']), ...checks(RACE, 0.3, rnd), consent: t.pick(['1', '0']), enrollment_complete: String(t.int(0, 2)) });
    const visit = () => ({ visit_date: t.date(2020, 2024), weight: t.maybe(0.9, String(t.int(400, 1400) / 10)),
      ...checks(SYMPTOMS, 0.4, rnd), pain: t.maybe(0.7, String(t.int(0, 100))), visit_notes: t.pick(NOTES), visit_complete: String(t.int(0, 2)) });
    if (arm2) {
      ev('baseline_arm_2', enrollment());
      if (rnd() < 0.7) ev('visit_arm_2', visit());
      continue;
    }
    ev('baseline_arm_1', { ...enrollment(), ...visit() });
    if (rnd() < 0.85) ev('follow_up_arm_1', visit());
    for (let k = 1, m = Math.floor(rnd() * 4); k <= m; k++) {
      ev('follow_up_arm_1', { redcap_repeat_instrument: 'adverse_events', redcap_repeat_instance: String(k),
        ae_term: t.pick(['Nausea', 'Rash, mild', 'Headache "severe"', 'Fatigue']), ae_grade: t.pick(['1', '2', '3']),
        ae_ongoing: t.pick(['1', '0', '']), ae_start: t.datetime(2020, 2024, false), adverse_events_complete: String(t.int(0, 2)) });
    }
    for (let k = 1, m = Math.floor(rnd() * 3); k <= m; k++) {
      ev('weekly_call_arm_1', { redcap_repeat_instrument: '', redcap_repeat_instance: String(k), call_date: t.date(2020, 2024),
        call_ok: t.pick(['1', '0']), weekly_call_complete: String(t.int(0, 2)) });
    }
    if (rnd() < 0.5) ev('closeout_arm_1', { done_date: t.date(2022, 2025), done_reason: t.pick(['1', '2', '3']), closeout_complete: '2' });
  }
  return rows;
}

/* ------------------------------------------------------------ emulator */

/*
 * Starts the emulator with the classic project ("classic", tokens
 * CLASSIC_TOKEN and DELETE_TOKEN) and, with longDir, the longitudinal one
 * ("long", LONG_TOKEN). extra: more emulator arguments (--rate-limit,
 * --max-export-records, --verbose). Resolves like lib.mjs startRedcapEmulator.
 */
export async function startExportEmulator({ longDir = null, extra = [] } = {}) {
  const args = ['--project', classicProjectArg('classic'), '--token', `${CLASSIC_TOKEN}=classic`, '--token', `${DELETE_TOKEN}=classic:all`];
  if (longDir) args.push('--project', longitudinalProjectArg(longDir, 'long'), '--token', `${LONG_TOKEN}=long`);
  return startRedcapEmulator([...args, ...extra]);
}

/* Form parameters with arrays as name[0]=..., name[1]=... (as REDCap clients send them). */
export function formBody(params) {
  const f = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null) continue;
    if (Array.isArray(v)) v.forEach((x, i) => f.append(`${k}[${i}]`, String(x)));
    else f.append(k, String(v));
  }
  return f;
}

/* One API request; resolves to {status, text, contentType}. */
export async function api(url, params) {
  const r = await fetch(url, { method: 'POST', body: formBody(params) });
  return { status: r.status, text: await r.text(), contentType: r.headers.get('content-type') };
}

/*
 * Imports rows through the API in chunks (json, normal overwrite). Throws
 * on the first refused chunk. Resolves to {requests, rows, ms}. The
 * emulator's request counts for the ban are forgotten afterwards, so the
 * load does not count against a test's rate limit.
 */
export async function importRows(srv, token, rows, { chunk = 2000 } = {}) {
  const t0 = performance.now();
  let requests = 0;
  for (let i = 0; i < rows.length; i += chunk) {
    const r = await api(srv.url, { token, content: 'record', format: 'json', type: 'flat', overwriteBehavior: 'normal',
      returnContent: 'count', data: JSON.stringify(rows.slice(i, i + chunk)) });
    requests++;
    if (r.status !== 200) throw new Error(`import chunk ${i / chunk} refused: HTTP ${r.status}: ${r.text.slice(0, 500)}`);
  }
  await srv.control('reset-ban', {});
  return { requests, rows: rows.length, ms: performance.now() - t0 };
}

/*
 * The emulator's own single-request record export of a selection:
 * sel {format: csv|json|ndjson (json asked), label, fields, forms, events,
 * records, since}. Resolves to the body text; throws unless 200.
 */
export async function referenceExport(srv, token, sel = {}) {
  const fmt = sel.format === 'csv' ? 'csv' : 'json';
  const list = (v) => (v === undefined ? undefined : Array.isArray(v) ? v : String(v).split(','));
  const r = await api(srv.url, {
    token, content: 'record', action: 'export', format: fmt, type: 'flat', rawOrLabel: sel.label ? 'label' : 'raw',
    rawOrLabelHeaders: 'raw', exportCheckboxLabel: 'false', exportSurveyFields: 'false', exportDataAccessGroups: 'false',
    returnFormat: 'json',
    fields: list(sel.fields), forms: list(sel.forms), events: list(sel.events), records: list(sel.records),
    dateRangeBegin: sel.since,
  });
  if (r.status !== 200) throw new Error(`reference export: HTTP ${r.status}: ${r.text.slice(0, 300)}`);
  return r.text;
}

/* What a records.ndjson must hold: the json rows, parsed (order of keys kept). */
export function ndjsonRowsOf(jsonText) {
  return JSON.parse(jsonText);
}

/* The other files of an export as the emulator returns them: {dictionary, project, events?, fem?}. */
export async function referenceFiles(srv, token, longitudinal = false) {
  const get = async (params) => {
    const r = await api(srv.url, { token, returnFormat: 'json', ...params });
    if (r.status !== 200) throw new Error(`${params.content}: HTTP ${r.status}: ${r.text}`);
    return r.text;
  };
  const out = {
    'dictionary.csv': await get({ content: 'metadata', format: 'csv' }),
    'project.json': await get({ content: 'project', format: 'json' }),
  };
  if (longitudinal) {
    out['events.json'] = await get({ content: 'event', format: 'json' });
    out['form-event-mapping.json'] = await get({ content: 'formEventMapping', format: 'json' });
  }
  return out;
}

/* ------------------------------------------------------------ config and command */

/*
 * An export-only config in dir: projects [{name, url, token}] (token files
 * written beside the config, no mapping). opts: batch_size,
 * max_requests_per_minute, retry, timeout_s. Returns the config path.
 */
export function writeExportConfig(dir, projects, opts = {}) {
  const list = projects.map((p) => {
    const file = `${p.name}.token`;
    writeFileSync(join(dir, file), p.token + '\n', { mode: 0o600 });
    return { name: p.name, url: p.url, token_file: file };
  });
  return writeConfig(dir, 'http://127.0.0.1:9/fhir/R4', {
    site: { timezone: 'UTC' },
    redcap: {
      batch_size: opts.batch_size ?? 100,
      max_requests_per_minute: opts.max_requests_per_minute ?? 600,
      timeout_s: opts.timeout_s ?? 30,
      retry: opts.retry ?? { max_attempts: 6, base_ms: 50, max_ms: 500 },
      projects: list,
    },
    log: opts.log,
  });
}

const wrapper = (process.env.BRIDGE_WRAPPER || '').split(' ').filter(Boolean);

/*
 * Runs `fhir-redcap-bridge export ...args` (under BRIDGE_WRAPPER if set);
 * opts {cwd, env, onSpawn(proc)}. Resolves to {code, signal, stdout, stderr, ms}.
 */
export function runExport(args, opts = {}) {
  return new Promise((res) => {
    const cmd = wrapper.length ? wrapper[0] : bridgeBin;
    const argv = wrapper.length ? [...wrapper.slice(1), bridgeBin, 'export', ...args] : ['export', ...args];
    const t0 = performance.now();
    const proc = spawn(cmd, argv, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env || {}) } });
    let stdout = '', stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    if (opts.onSpawn) opts.onSpawn(proc);
    proc.on('error', (err) => { stderr += String(err); });
    proc.on('close', (code, signal) => res({ code, signal, stdout, stderr, ms: performance.now() - t0 }));
  });
}

/* Non-hidden and hidden file names in an export directory. */
export function listOut(dir) {
  if (!existsSync(dir)) return { files: [], hidden: [] };
  const all = readdirSync(dir).sort();
  return { files: all.filter((f) => !f.startsWith('.')), hidden: all.filter((f) => f.startsWith('.')) };
}

export const readText = (p) => readFileSync(p, 'utf8');

/* ------------------------------------------------------------ self-check */

async function selfCheck() {
  const argv = process.argv.slice(2);
  const opt = (n, d) => { const i = argv.indexOf(n); return i >= 0 ? argv[i + 1] : d; };
  const sizes = opt('--records', '10000,100000').split(',').map(Number);
  const density = Number(opt('--density', '1'));
  const mb = (s) => (Buffer.byteLength(s) / 1048576).toFixed(1);
  for (const n of sizes) {
    const dir = tempDir('frb-export-selfcheck-');
    const srv = await startExportEmulator({ longDir: dir });
    try {
      let t = performance.now();
      const rows = classicRows(n, { density });
      const genMs = performance.now() - t;
      const load = await importRows(srv, CLASSIC_TOKEN, rows);
      t = performance.now();
      const csv = await referenceExport(srv, CLASSIC_TOKEN, { format: 'csv' });
      const csvMs = performance.now() - t;
      t = performance.now();
      const json = await referenceExport(srv, CLASSIC_TOKEN, { format: 'json' });
      const jsonMs = performance.now() - t;
      const parsed = JSON.parse(json);
      const ids = new Set(parsed.map((r) => r.record_id));
      if (ids.size !== n) throw new Error(`expected ${n} records, the export has ${ids.size}`);
      if (parsed.length !== rows.length) throw new Error(`expected ${rows.length} rows, the export has ${parsed.length}`);
      const files = await referenceFiles(srv, CLASSIC_TOKEN);
      console.log(JSON.stringify({
        project: 'classic', records: n, rows: rows.length, generate_s: +(genMs / 1000).toFixed(2),
        load_s: +(load.ms / 1000).toFixed(2), load_requests: load.requests, load_rows_per_s: Math.round(rows.length / (load.ms / 1000)),
        csv_mb: +mb(csv), csv_export_s: +(csvMs / 1000).toFixed(2), json_mb: +mb(json), json_export_s: +(jsonMs / 1000).toFixed(2),
        dictionary_bytes: Buffer.byteLength(files['dictionary.csv']), project_json: files['project.json'].slice(0, 80),
      }));
      if (n <= 20000) {
        const lrows = longitudinalRows(Math.min(n, 2000));
        const l = await importRows(srv, LONG_TOKEN, lrows);
        const lcsv = await referenceExport(srv, LONG_TOKEN, { format: 'csv' });
        const ljson = JSON.parse(await referenceExport(srv, LONG_TOKEN, { format: 'json' }));
        const lfiles = await referenceFiles(srv, LONG_TOKEN, true);
        console.log(JSON.stringify({
          project: 'long', records: new Set(ljson.map((r) => r.study_id)).size, rows: ljson.length, load_s: +(l.ms / 1000).toFixed(2),
          csv_kb: Math.round(Buffer.byteLength(lcsv) / 1024), columns: Object.keys(ljson[0]).length,
          events: JSON.parse(lfiles['events.json']).length, fem: JSON.parse(lfiles['form-event-mapping.json']).length,
          header: lcsv.slice(0, lcsv.indexOf('\n')),
        }));
      }
    } finally {
      await srv.stop();
      cleanup(dir);
    }
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  selfCheck().catch((err) => { console.error(err); process.exit(1); });
}
