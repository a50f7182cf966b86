// Tests of the REDCap API emulator (redcap-emulator.mjs).
//   node --test tests/servers/test-redcap-emulator.mjs
// The emulator runs as a child process on a free loopback port (TZ=UTC, so
// the local timestamps REDCap works in are predictable). Expected answers are
// written out literally here: they are REDCap's texts, not the emulator's
// table of them.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'redcap-emulator-test-'));
const children = [];

/* ------------------------------------------------------------ fixtures */

const STUDY_DICT = fs.readFileSync(path.join(repo, 'conf/example-project/dictionary.csv'), 'utf8');
const STUDY_REPEATING = ['vitals', 'labs', 'conditions', 'medications', 'allergies'];

const H =
  '"Variable / Field Name","Form Name","Section Header","Field Type","Field Label","Choices, Calculations, OR Slider Labels","Field Note","Text Validation Type OR Show Slider Number","Text Validation Min","Text Validation Max","Identifier?","Branching Logic (Show field only if...)","Required Field?","Custom Alignment","Question Number (surveys only)","Matrix Group Name","Matrix Ranking?","Field Annotation"';
const TEST_DICT = [
  H,
  'record_id,demo,,text,"Record ID",,,,,,,,,,,,,',
  'name,demo,,text,"Name",,,,,,,,,,,,,',
  'color,demo,,dropdown,"Color","1, Red | 2, Green | 3, Blue",,,,,,,,,,,,',
  'meds,demo,,checkbox,"Medications","1, Aspirin | 2, Heparin | A-1.x, Other",,,,,,,,,,,,',
  'smoker,demo,,yesno,"Smoker",,,,,,,,,,,,,',
  'consent,demo,,truefalse,"Consent",,,,,,,,,,,,,',
  'visit_mdy,demo,,text,"Visit date",,,date_mdy,,,,,,,,,,',
  'seen_at,demo,,text,"Seen at",,,datetime_ymd,,,,,,,,,,',
  'email,demo,,text,"Email",,,email,,,,,,,,,,',
  'score,demo,,text,"Score",,,integer,0,10,,,,,,,,@FORCE-MINMAX',
  'weight,demo,,text,"Weight",,,number,0,500,,,,,,,,',
  'bmi,demo,,calc,"BMI","[weight]/2",,,,,,,,,,,,',
  'note_desc,demo,,descriptive,"Please read",,,,,,,,,,,,,',
  'ae_term,ae,,text,"AE term",,,,,,,,,,,,,',
  'ae_grade,ae,,radio,"Grade","1, Mild | 2, Moderate | 3, Severe",,,,,,,,,,,,',
  'ae_onset,ae,,text,"AE onset",,,datetime_seconds_ymd,,,,,,,,,,',
].join('\n');
const TEST_COLUMNS = [
  'record_id', 'redcap_repeat_instrument', 'redcap_repeat_instance', 'name', 'color', 'meds___1', 'meds___2', 'meds___a_1_x',
  'smoker', 'consent', 'visit_mdy', 'seen_at', 'email', 'score', 'weight', 'bmi', 'demo_complete', 'ae_term', 'ae_grade',
  'ae_onset', 'ae_complete',
];

const LONG_DICT = [
  H,
  'record_id,baseline,,text,"Record ID",,,,,,,,,,,,,',
  'age,baseline,,text,"Age",,,integer,,,,,,,,,,',
  'v_date,visit,,text,"Visit date",,,date_ymd,,,,,,,,,,',
  'v_sbp,visit,,text,"Systolic BP",,,integer,,,,,,,,,,',
  'med_name,meds,,text,"Medication",,,,,,,,,,,,,',
].join('\n');
const LONG_DEF = {
  name: 'long',
  dictionary_csv: LONG_DICT,
  arms: [
    { arm_num: 1, name: 'Arm One' },
    { arm_num: 2, name: 'Arm Two' },
  ],
  events: [
    { event_name: 'Baseline', arm_num: 1 },
    { event_name: 'Visit 1', arm_num: 1 },
    { event_name: 'Visit 2', arm_num: 1 },
    { event_name: 'Screening', arm_num: 2 },
  ],
  formEventMapping: [
    { arm_num: 1, unique_event_name: 'baseline_arm_1', form: 'baseline' },
    { arm_num: 1, unique_event_name: 'visit_1_arm_1', form: 'visit' },
    { arm_num: 1, unique_event_name: 'visit_1_arm_1', form: 'meds' },
    { arm_num: 1, unique_event_name: 'visit_2_arm_1', form: 'visit' },
    { arm_num: 2, unique_event_name: 'screening_arm_2', form: 'baseline' },
  ],
  repeating: [
    { event_name: 'visit_1_arm_1', form_name: 'meds', custom_form_label: '' },
    { event_name: 'visit_2_arm_1', form_name: '' },
  ],
};

const TOK = {
  study: 'A1B2C3D4E5F60718293A4B5C6D7E8F90',
  test: '11111111111111111111111111111111',
  plain: '22222222222222222222222222222222',
  long: '33333333333333333333333333333333',
  exportOnly: '44444444444444444444444444444444',
  importOnly: '55555555555555555555555555555555',
};

/* ------------------------------------------------------------ helpers */

/* Starts the emulator; resolves { child, api, origin } once it prints LISTENING. */
function spawnEmulator(args) {
  const child = spawn(process.execPath, [path.join(here, 'redcap-emulator.mjs'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TZ: 'UTC' },
  });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`emulator did not start: ${stderr}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^LISTENING (http:\/\/127\.0\.0\.1:\d+\/api\/)\n/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, api: m[1], origin: new URL(m[1]).origin });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`emulator exited with ${code}: ${stderr}`));
    });
  });
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.removeAllListeners('exit');
    child.once('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

/* One request on a fresh connection; resolves { status, headers, text, json() }. */
function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/* Form-encodes params; arrays become name[0], name[1], ... */
function form(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) v.forEach((x, i) => u.append(`${k}[${i}]`, x));
    else u.append(k, String(v));
  }
  return u.toString();
}

let E; // the shared emulator
const post = (params, base = E.api) =>
  request(base, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form(params) });
const control = (name, method = 'GET', body) =>
  request(`${E.origin}/__control/${name}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
const importJson = (token, rows, extra = {}) =>
  post({ token, content: 'record', format: 'json', type: 'flat', data: JSON.stringify(rows), returnFormat: 'json', ...extra });
const exportJson = async (token, extra = {}) => {
  const r = await post({ token, content: 'record', format: 'json', ...extra });
  assert.equal(r.status, 200, r.text);
  return r.json();
};
const stored = async (project) => (await control(`records?project=${project}`)).json();
const clear = (project) => control(`records?project=${project}`, 'DELETE');
const errJson = (r) => r.json().error;

/* ------------------------------------------------------------ setup */

before(async () => {
  E = await spawnEmulator([
    '--port', '0',
    '--project', `study=${path.join(repo, 'conf/example-project/dictionary.csv')},repeating=${STUDY_REPEATING.join(';')}`,
    '--token', `${TOK.study}=study`,
    '--rate-limit', '0',
  ]);
  const r = await control('projects', 'POST', [
    { name: 'test', dictionary_csv: TEST_DICT, repeating: ['ae'], tokens: [{ token: TOK.test }] },
    { name: 'plain', dictionary_csv: TEST_DICT, autonumbering: true, tokens: [{ token: TOK.plain }] },
    { ...LONG_DEF, tokens: [{ token: TOK.long }] },
  ]);
  assert.equal(r.status, 201, r.text);
  const t = await control('tokens', 'POST', [
    { token: TOK.exportOnly, project: 'test', export: true, import: false },
    { token: TOK.importOnly, project: 'test', export: false, import: true },
  ]);
  assert.equal(t.status, 201, t.text);
});

after(async () => {
  for (const c of children) await stop(c);
  fs.rmSync(tmp, { recursive: true, force: true });
});

/* ------------------------------------------------------------ requests, tokens, rights */

test('only POST: other methods answer 501 with the XML error body', async () => {
  for (const method of ['GET', 'PUT', 'DELETE']) {
    const r = await request(`${E.api}?token=${TOK.study}&content=version&format=json`, { method });
    assert.equal(r.status, 501);
    assert.equal(r.headers['content-type'], 'text/xml; charset=utf-8');
    assert.equal(r.text, '<?xml version="1.0" encoding="UTF-8" ?><hash><error>The requested method is not implemented.</error></hash>');
  }
  const other = await request(`${E.origin}/redcap/api/`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form({ token: TOK.study, content: 'version' }) });
  assert.equal(other.status, 200);
  assert.equal(other.text, '15.7.6');
  assert.equal((await request(`${E.origin}/elsewhere`, { method: 'POST' })).status, 404);
});

test('tokens: missing, malformed, unknown -> 403 in json, csv and xml', async () => {
  const msg = 'You do not have permissions to use the API';
  for (const token of [undefined, 'abc-def', '', 'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF']) {
    const r = await post({ token, content: 'record', format: 'json' });
    assert.equal(r.status, 403);
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(r.text, `{"error":"${msg}"}`);
  }
  const csv = await post({ token: 'nope', content: 'record', format: 'json', returnFormat: 'csv' });
  assert.equal(csv.status, 403);
  assert.equal(csv.headers['content-type'], 'text/csv; charset=utf-8');
  assert.equal(csv.text, `ERROR: ${msg}`);
  const xml = await post({ token: 'nope', content: 'record' });
  assert.equal(xml.text, `<?xml version="1.0" encoding="UTF-8" ?><hash><error>${msg}</error></hash>`);
  // A JSON body is not a form: PHP's $_POST stays empty, so no token.
  const js = await request(E.api, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOK.study, content: 'version' }) });
  assert.equal(js.status, 403);
});

test('tokens: only 32 upper-case hex digits can be registered; any other shape gets the 403 of an unknown token', async () => {
  // REDCap issues 32 upper-case hex digits; RestUtility::processRequest answers
  // 403 "You do not have permissions to use the API" for a token that is not
  // [A-Za-z0-9]+ or matches no user (REDCap 15.7.6).
  for (const token of ['abc', 'G1B2C3D4E5F60718293A4B5C6D7E8F90', 'a1b2c3d4e5f60718293a4b5c6d7e8f90', `${TOK.test}0`, 'ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ']) {
    const reg = await control('tokens', 'POST', [{ token, project: 'test' }]);
    assert.equal(reg.status, 400, token);
    assert.match(reg.text, /32 upper-case hex digits/);
    const r = await post({ token, content: 'version', format: 'json' });
    assert.equal(r.status, 403, token);
    assert.equal(r.text, '{"error":"You do not have permissions to use the API"}');
  }
  const inProject = await control('projects', 'POST', [{ name: 'tokshape', dictionary_csv: TEST_DICT, tokens: [{ token: 'not-hex' }] }]);
  assert.equal(inProject.status, 400);
  // A lower-case spelling of a registered token is another token.
  assert.equal((await post({ token: TOK.study.toLowerCase(), content: 'version', format: 'json' })).status, 403);
  assert.equal((await post({ token: TOK.study, content: 'version', format: 'json' })).status, 200);
  // The command line refuses such a token too.
  await assert.rejects(spawnEmulator(['--port', '0', '--project', `p=${path.join(repo, 'conf/example-project/dictionary.csv')}`, '--token', 'short=p']), /32 upper-case hex digits/);
});

test('content and rights: 400 for a bad content, 403 without export or import rights', async () => {
  const bad = await post({ token: TOK.test, content: 'records', format: 'json' });
  assert.equal(bad.status, 400);
  assert.equal(bad.text, '{"error":"The value of the parameter \\"content\\" is not valid"}');
  const badCsv = await post({ token: TOK.test, content: 'nothing', format: 'json', returnFormat: 'csv' });
  assert.equal(badCsv.text, 'ERROR: The value of the parameter "content" is not valid');

  const imp = await importJson(TOK.exportOnly, [{ record_id: '1' }]);
  assert.equal(imp.status, 403);
  assert.equal(errJson(imp), 'You do not have API Import/Update privileges');
  const exp = await post({ token: TOK.importOnly, content: 'record', format: 'json' });
  assert.equal(exp.status, 403);
  assert.equal(errJson(exp), 'You do not have API Export privileges');
  const ver = await post({ token: TOK.importOnly, content: 'version', format: 'json' });
  assert.equal(ver.status, 403, 'version is an export');
  assert.equal((await post({ token: TOK.importOnly, content: 'record', format: 'json', data: '[{"record_id":"io"}]', returnFormat: 'json' })).text, '{"count": 1}');
  await clear('test');
});

test('multipart/form-data bodies are read like form posts', async () => {
  const boundary = '----rcEmulatorBoundary';
  const parts = [['token', TOK.test], ['content', 'version'], ['format', 'json']];
  const body = parts.map(([k, v]) => `--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`).join('') + `--${boundary}--\r\n`;
  const r = await request(E.api, { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, body });
  assert.equal(r.status, 200);
  assert.equal(r.text, '15.7.6');
});

/* ------------------------------------------------------------ import: whole-request errors */

test('import: malformed JSON and non-array JSON', async () => {
  const syntax = await post({ token: TOK.test, content: 'record', format: 'json', data: '[{"record_id":', returnFormat: 'json' });
  assert.equal(syntax.status, 400);
  assert.equal(errJson(syntax), 'The data being imported is not formatted correctly. PHP error from JSON decoder: Syntax error. The JSON must be in an array, as in [{ ... }].');
  const obj = await post({ token: TOK.test, content: 'record', format: 'json', data: '{"record_id":"1"}', returnFormat: 'json' });
  assert.equal(errJson(obj), 'The data being imported is not formatted correctly. PHP error from JSON decoder: No error. The JSON must be in an array, as in [{ ... }].');
  // JSON error bodies are PHP json_encode: "/" is escaped.
  assert.match(obj.text, /as in \[\{ \.\.\. \}\]\."\}$/);
});

test('import: whole-request errors with REDCap messages', async () => {
  const cases = [
    [[{ name: 'x' }], 'The record id field (record_id) is missing.'],
    [[{ record_id: '1', foo: 'a', meds: '1', bar: '', note_desc: 'x' }], 'The following fields were not found in the project as real data fields: foo, meds, bar, note_desc'],
    [[{ record_id: 'a+b' }], 'The record name (a+b) cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe.'],
    [[{ record_id: 'ok' }, { record_id: "o'neil" }], "The record name (o'neil) cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe."],
    [[{ record_id: 'r#1' }], 'The record name (r#1) cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe.'],
    [[{ record_id: 'r1', redcap_repeat_instrument: 'ae', redcap_repeat_instance: '0', ae_term: 'x' }], "The record name (r1) has an invalid value for 'redcap_repeat_instance'. The value must either be a positive integer or the value 'new'. Value provided: 0"],
    [[{ record_id: 'r1', redcap_repeat_instrument: 'ae', redcap_repeat_instance: 'next', ae_term: 'x' }], "The record name (r1) has an invalid value for 'redcap_repeat_instance'. The value must either be a positive integer or the value 'new'. Value provided: next"],
  ];
  for (const [rows, msg] of cases) {
    const r = await importJson(TOK.test, rows);
    assert.equal(r.status, 400, JSON.stringify(rows));
    assert.equal(errJson(r), msg);
  }
  const plain = await importJson(TOK.plain, [{ record_id: '1', redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1' }]);
  assert.equal(plain.status, 400);
  assert.equal(errJson(plain), "ERROR: Trying to import repeat instance/instrument fields! The fields 'redcap_repeat_instrument' and 'redcap_repeat_instance' are reserved for when 'Repeating Instruments and Events' have been  enabled on the Project Setup page. This project does not have that feature enabled, so you may not import data with those fields.");
  const events = await importJson(TOK.long, [
    { record_id: '1', redcap_event_name: 'visit_11_arm_1', age: '3' },
    { record_id: '2', redcap_event_name: 'baseline_arm_1', age: '3' },
    { record_id: '3', redcap_event_name: 'visit_12_arm_1', age: '3' },
  ]);
  assert.equal(errJson(events), 'The following values of redcap_event_name are invalid: visit_11_arm_1, visit_12_arm_1');
  assert.equal((await stored('test')).rows.length, 0);
  assert.equal((await stored('long')).rows.length, 0);
  // redcap_data_access_group: the emulator has no groups, so any name is
  // invalid (REDCap 15.7.6 Records.php, saveData: 220 + " " + the names,
  // after the unknown-field and event checks); blank is fine.
  const dag = await importJson(TOK.test, [{ record_id: 'g1', redcap_data_access_group: 'site_a' }, { record_id: 'g2', redcap_data_access_group: 'site_b' }, { record_id: 'g3', redcap_data_access_group: 'site_a' }]);
  assert.equal(dag.status, 400);
  assert.equal(errJson(dag), 'The following Data Access Group are invalid for the redcap_data_access_group field: site_a, site_b');
  assert.equal((await importJson(TOK.test, [{ record_id: 'g1', redcap_data_access_group: '', name: 'n' }])).status, 200);
  await clear('test');
  // A classic project takes redcap_event_name and ignores it, whatever it says
  // (REDCap 15.7.6 Classes/Records.php: never an unknown field; the first event).
  const classic = await importJson(TOK.test, [{ record_id: 'ev1', redcap_event_name: 'x_arm_1', name: 'n' }]);
  assert.equal(classic.status, 200, classic.text);
  assert.equal(classic.text, '{"count": 1}');
  assert.deepEqual((await exportJson(TOK.test, { records: ['ev1'], fields: ['record_id', 'name'] })).map((r) => [r.record_id, r.name]), [['ev1', 'n']]);
  await clear('test');
});

/* ------------------------------------------------------------ import: per-value errors, all or nothing */

test('import: per-value errors are "record","field","value","message" lines joined by \\n', async () => {
  const rows = [
    { record_id: '1', color: '4', smoker: '2', consent: 'yes', meds___1: '2', visit_mdy: '12/31/2024', seen_at: '2024-01-01 25:00' },
    { record_id: '2', email: 'x@', score: '11', weight: '900', bmi: 'not a number', name: 'ok' },
    { record_id: '3', score: '-1', ae_term: 'headache' },
    { record_id: '4', redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1', ae_grade: '9', ae_onset: '2024-02-30 10:00:00' },
    { record_id: '5', redcap_repeat_instrument: 'demo', redcap_repeat_instance: '2', name: 'x' },
    { record_id: '6', redcap_repeat_instrument: 'ae', redcap_repeat_instance: '3', name: 'x' },
    { record_id: '7', score: '1.5', weight: 'abc', seen_at: '2024-1-2T07:05' },
  ];
  const r = await importJson(TOK.test, rows);
  assert.equal(r.status, 400);
  const expected = [
    '"1","color","4","The value is not a valid category for color"',
    '"1","smoker","2","The value is not a valid category for smoker"',
    '"1","consent","yes","The value is not a valid category for consent"',
    `"1","meds___1","2","meds___1 is a checkbox field and thus can only have a value of '1' (checked) or '0' (unchecked)."`,
    '"1","visit_mdy","12/31/2024","Invalid date format. (NOTE: Dates must be imported here only in Y-M-D format, regardless of the specific date format designated for this field.)"',
    // One text for every datetime type (English.ini data_import_tool_193).
    '"1","seen_at","2024-01-01 25:00","Invalid date format. (NOTE: Dates must be imported here only in Y-M-D H:M[:S] format, regardless of the specific date format designated for this field.)"',
    '"2","email","x@","The value you provided could not be validated because it does not follow the expected format. Please try again."',
    '"2","score","11","score should not be greater than the field maximum (10)"',
    '"3","score","-1","score should not be less than the field minimum (0)"',
    `"3","ae_term","headache","This field ('ae_term') exists on a Repeating Instrument named 'ae'. However, the fields 'redcap_repeat_instance' and/or 'redcap_repeat_instrument' for this row of data have no value, which are both required for importing data into a Repeating Instrument.  You are not allowed to import data for this field into a non-repeating instrument."`,
    '"4","ae_grade","9","The value is not a valid category for ae_grade"',
    '"4","ae_onset","2024-02-30 10:00:00","Invalid date format. (NOTE: Dates must be imported here only in Y-M-D H:M[:S] format, regardless of the specific date format designated for this field.)"',
    '"5","redcap_repeat_instrument","demo","redcap_repeat_instrument must be the unique form name of a Repeating Instrument. It currently does not match the unique form name of any Repeating Instruments.  Please fix this in the data import file and try again."',
    '"5","redcap_repeat_instance","2","redcap_repeat_instance cannot have a value since this instrument or event is not a repeating instrument or repeating event, respectively.  The redcap_repeat_instance field must be left blank for this row of data."',
    // Nothing on row 6 is on a repeating form (REDCap 15.7.6 Records.php, saveData, "isRepeatFormReally").
    '"6","redcap_repeat_instance","3","redcap_repeat_instance cannot have a value since this instrument or event is not a repeating instrument or repeating event, respectively.  The redcap_repeat_instance field must be left blank for this row of data."',
    `"6","name","x","This field ('name') does not exist on the Repeating Instrument named 'ae'. You are not allowed to import data for this field into this Repeating Instrument."`,
    '"7","score","1.5","The value you provided could not be validated because it does not follow the expected format. Please try again."',
    '"7","weight","abc","The value you provided could not be validated because it does not follow the expected format. Please try again."',
  ].join('\n');
  assert.equal(errJson(r), expected);
  // The JSON body escapes quotes and "/" like PHP.
  assert.ok(r.text.startsWith('{"error":"\\"1\\",\\"color\\",\\"4\\",'));
  assert.ok(r.text.includes('and\\/or'));
  // csv and xml error bodies carry the same text.
  const csv = await importJson(TOK.test, rows.slice(0, 1), { returnFormat: 'csv' });
  assert.equal(csv.text, `ERROR: ${expected.split('\n').slice(0, 6).join('\n')}`);
  const xml = await importJson(TOK.test, [{ record_id: '1', color: '4' }], { returnFormat: 'xml' });
  assert.equal(xml.text, '<?xml version="1.0" encoding="UTF-8" ?><hash><error>"1","color","4","The value is not a valid category for color"</error></hash>');
  assert.equal((await stored('test')).rows.length, 0, 'nothing saved');
});

test('import: sliders, number_Ndp without "+", checkbox and repeat messages as REDCap 15.7.6 writes them', async () => {
  const dict = [
    H,
    'record_id,demo,,text,"ID",,,,,,,,,,,,,',
    'pain,demo,,slider,"Pain","None | | Worst",,,,,,,,,,,,',
    'score,demo,,slider,"Score","Low | | High",,,1,10,,,,,,,,',
    'temp,demo,,text,"Temp",,,number_1dp,,,,,,,,,,',
    'visit_kind,demo,,checkbox,"Kind","1, Phone | 2, Clinic",,,,,,,,,,,,',
    'ae_term,ae,,text,"Term",,,,,,,,,,,,,',
    'ae_kind,ae,,checkbox,"Kind","1, Local | 2, Systemic",,,,,,,,,,,,',
  ].join('\n');
  const tok = 'C0FFEE00000000000000000000000001';
  const reg = await control('projects', 'POST', [{ name: 'rc15', dictionary_csv: dict, repeating: ['ae'], tokens: [{ token: tok }] }]);
  assert.equal(reg.status, 201, reg.text);
  const cases = [
    // Sliders: an integer within min..max (0..100 unless the dictionary says), a hard check.
    [{ pain: '5.5' }, '"1","pain","5.5","pain must be an integer"'],
    [{ pain: '101' }, '"1","pain","101","pain should not be greater than the field maximum (100)"'],
    [{ pain: '-1' }, '"1","pain","-1","pain should not be less than the field minimum (0)"'],
    [{ score: '0' }, '"1","score","0","score should not be less than the field minimum (1)"'],
    [{ score: '11' }, '"1","score","11","score should not be greater than the field maximum (10)"'],
    // number_1dp: -?digits.digit, no "+".
    [{ temp: '+37.5' }, '"1","temp","+37.5","The value you provided could not be validated because it does not follow the expected format. Please try again."'],
    // A checkbox column on a repeating form in a non-repeating row: the column is quoted, the form is ''.
    [{ ae_kind___2: '1' }, `"1","ae_kind___2","1","This field ('ae_kind___2') exists on a Repeating Instrument named ''. However, the fields 'redcap_repeat_instance' and/or 'redcap_repeat_instrument' for this row of data have no value, which are both required for importing data into a Repeating Instrument.  You are not allowed to import data for this field into a non-repeating instrument."`],
    [{ redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1', ae_term: 't', visit_kind___1: '1' }, `"1","visit_kind___1","1","This field ('visit_kind___1') does not exist on the Repeating Instrument named 'ae'. You are not allowed to import data for this field into this Repeating Instrument."`],
    // A checkbox "0" is a box REDCap leaves alone (saveData: status 'keep'): no placement error...
    [{ ae_kind___1: '0', temp: 'x' }, '"1","temp","x","The value you provided could not be validated because it does not follow the expected format. Please try again."'],
    // Quotes in a value are doubled in the error line, as in a CSV cell.
    [{ temp: '3"7' }, '"1","temp","3""7","The value you provided could not be validated because it does not follow the expected format. Please try again."'],
  ];
  for (const [row, want] of cases) {
    const r = await importJson(tok, [{ record_id: '1', ...row }]);
    assert.equal(r.status, 400, JSON.stringify(row));
    assert.equal(errJson(r), want);
  }
  const ok = await importJson(tok, [{ record_id: '1', pain: '0', score: '10', temp: '-37.5' }, { record_id: '1', redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1', ae_kind___2: '1' }]);
  assert.equal(ok.status, 200, ok.text);
  const rows = await exportJson(tok, { records: ['1'] });
  assert.deepEqual(rows.map((r) => [r.pain, r.score, r.temp, r.ae_kind___2]), [['0', '10', '-37.5', ''], ['', '', '', '1']]);
  // A longitudinal project quotes a checkbox column as imported too.
  const longCb = await importJson(TOK.long, [{ record_id: 'x', redcap_event_name: 'baseline_arm_1', v_sbp: '120' }]);
  assert.equal(errJson(longCb), `"x","v_sbp","120","This field ('v_sbp') exists on an instrument that is not designated for the event named 'Baseline (Arm 1: Arm One)'. You are not allowed to import data for this field into this event."`);
});

test('import: an unknown returnContent is taken as count, as REDCap 15.7.6 API/index.php does', async () => {
  for (const returnContent of ['bogus', '', 'COUNT']) {
    const r = await importJson(TOK.test, [{ record_id: 'rc1' }, { record_id: 'rc2' }], { returnContent });
    assert.equal(r.status, 200, returnContent);
    assert.equal(r.text, '{"count": 2}', returnContent);
  }
  await clear('test');
});

test('import: all or nothing, a batch with one bad value saves nothing', async () => {
  const good = Array.from({ length: 50 }, (_, i) => ({ record_id: `p${i + 1}`, name: `n${i}`, color: '2' }));
  const bad = [...good.slice(0, 25), { record_id: 'p26', color: '7' }, ...good.slice(25)];
  const r = await importJson(TOK.test, bad);
  assert.equal(r.status, 400);
  assert.equal(errJson(r), '"p26","color","7","The value is not a valid category for color"');
  assert.equal((await stored('test')).records.length, 0);
  const ok = await importJson(TOK.test, good);
  assert.equal(ok.status, 200);
  assert.equal(ok.text, '{"count": 50}');
  assert.equal((await stored('test')).records.length, 50);
  // A later failing batch leaves the earlier data untouched.
  const again = await importJson(TOK.test, [{ record_id: 'p1', name: 'changed' }, { record_id: 'p2', smoker: 'maybe' }]);
  assert.equal(again.status, 400);
  const rows = await exportJson(TOK.test, { records: ['p1'] });
  assert.equal(rows[0].name, 'n0');
  await clear('test');
});

/* ------------------------------------------------------------ import: semantics */

test('import: count is distinct records; ids, csv and xml answers; case-insensitive names', async () => {
  const rows = [
    { record_id: 'A1', name: 'first' },
    { record_id: 'a1', redcap_repeat_instrument: 'ae', redcap_repeat_instance: 'new', ae_term: 'rash' },
    { record_id: ' A1 ', redcap_repeat_instrument: 'ae', redcap_repeat_instance: 'new', ae_term: 'fever' },
    { record_id: 'B2', name: 'second' },
  ];
  const r = await importJson(TOK.test, rows);
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
  assert.equal(r.text, '{"count": 2}');
  const ids = await importJson(TOK.test, [{ record_id: 'b2', name: 'again' }, { record_id: 'C3' }], { returnContent: 'ids' });
  assert.equal(ids.text, '["B2","C3"]');
  const csvCount = await post({ token: TOK.test, content: 'record', format: 'csv', data: 'record_id,name\nD4,x\nD4,y\nE5,z\n' });
  assert.equal(csvCount.status, 200);
  assert.equal(csvCount.headers['content-type'], 'text/csv; charset=utf-8');
  assert.equal(csvCount.text, '2');
  const csvIds = await post({ token: TOK.test, content: 'record', format: 'csv', data: 'record_id,name\nD4,x\n', returnContent: 'ids' });
  assert.equal(csvIds.text, 'id\nD4');
  const xml = await post({ token: TOK.test, content: 'record', format: 'json', data: '[{"record_id":"D4"}]', returnFormat: 'xml' });
  assert.equal(xml.headers['content-type'], 'text/xml; charset=utf-8');
  assert.equal(xml.text, '<?xml version="1.0" encoding="UTF-8" ?><count>1</count>');
  const nothing = await importJson(TOK.test, [{ record_id: 'D4' }], { returnContent: 'nothing' });
  assert.equal(nothing.status, 200);
  assert.equal(nothing.text, '');
  const data = await exportJson(TOK.test, { records: ['a1'] });
  assert.deepEqual(data.map((d) => [d.record_id, d.redcap_repeat_instrument, d.redcap_repeat_instance, d.name, d.ae_term]), [
    ['A1', '', '', 'first', ''],
    ['A1', 'ae', '1', '', 'rash'],
    ['A1', 'ae', '2', '', 'fever'],
  ]);
  await clear('test');
});

test("import: repeat instance 'new' takes the next instance; explicit instances update", async () => {
  const rid = 'R1';
  await importJson(TOK.test, [
    { record_id: rid, redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1', ae_term: 'a' },
    { record_id: rid, redcap_repeat_instrument: 'ae', redcap_repeat_instance: '2', ae_term: 'b' },
  ]);
  const r = await importJson(TOK.test, [
    { record_id: rid, redcap_repeat_instrument: 'ae', redcap_repeat_instance: 'new', ae_term: 'c' },
    { record_id: rid, redcap_repeat_instrument: 'ae', redcap_repeat_instance: 'new', ae_term: 'd' },
    { record_id: rid, redcap_repeat_instrument: 'ae', redcap_repeat_instance: '7', ae_term: 'g' },
    { record_id: rid, redcap_repeat_instrument: 'ae', redcap_repeat_instance: 'new', ae_term: 'h' },
    { record_id: rid, redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1', ae_term: 'A' },
  ]);
  assert.equal(r.text, '{"count": 1}');
  const rows = (await exportJson(TOK.test, { records: [rid], forms: ['ae'], fields: ['record_id'] })).filter((x) => x.redcap_repeat_instrument === 'ae');
  assert.deepEqual(rows.map((x) => [x.redcap_repeat_instance, x.ae_term, x.ae_complete]), [
    ['1', 'A', '0'],
    ['2', 'b', '0'],
    ['3', 'c', '0'],
    ['4', 'd', '0'],
    ['7', 'g', '0'],
    ['8', 'h', '0'],
  ]);
  await clear('test');
});

test('import: normalization (T in datetimes, padded dates, dateFormat MDY/DMY, trimmed names); calc ignored; min/max warns only', async () => {
  const r = await importJson(TOK.test, [
    { record_id: ' N1 ', seen_at: '2024-1-2T7:05', visit_mdy: '2024-2-5', bmi: '99', weight: '900', email: 'a.b@example.org' },
    { record_id: 'N2', redcap_repeat_instrument: 'ae', redcap_repeat_instance: 1, ae_onset: '2024-03-04T05:06:07', ae_grade: 2 },
  ]);
  assert.equal(r.status, 200, r.text);
  const mdy = await importJson(TOK.test, [{ record_id: 'N3', visit_mdy: '12/31/2024', seen_at: '1/2/24 10:30' }], { dateFormat: 'MDY' });
  assert.equal(mdy.status, 200, mdy.text);
  const dmy = await importJson(TOK.test, [{ record_id: 'N4', visit_mdy: '31/12/2024' }], { dateFormat: 'DMY' });
  assert.equal(dmy.status, 200, dmy.text);
  const rows = await exportJson(TOK.test);
  const by = (id, inst = '') => rows.find((x) => x.record_id === id && x.redcap_repeat_instance === inst);
  assert.equal(by('N1').seen_at, '2024-01-02 07:05');
  assert.equal(by('N1').visit_mdy, '2024-02-05');
  assert.equal(by('N1').bmi, '', 'calc fields are not imported');
  assert.equal(by('N1').weight, '900');
  assert.equal(by('N2', '1').ae_onset, '2024-03-04 05:06:07');
  assert.equal(by('N2', '1').ae_grade, '2');
  assert.equal(by('N3').visit_mdy, '2024-12-31');
  assert.equal(by('N3').seen_at, '2024-01-02 10:30');
  assert.equal(by('N4').visit_mdy, '2024-12-31');
  const long = await importJson(TOK.test, [{ record_id: 'x'.repeat(101) }]);
  assert.equal(long.status, 400);
  await clear('test');
});

test('import: overwriteBehavior normal keeps values for blanks, overwrite erases them', async () => {
  await importJson(TOK.test, [{ record_id: 'W1', name: 'kept', color: '1', meds___2: '1', email: 'w@example.org' }]);
  const normal = await importJson(TOK.test, [{ record_id: 'W1', name: '', color: '3', meds___2: '', email: '' }]);
  assert.equal(normal.status, 200);
  let row = (await exportJson(TOK.test, { records: ['W1'] }))[0];
  assert.deepEqual([row.name, row.color, row.meds___2, row.email], ['kept', '3', '1', 'w@example.org']);
  const over = await importJson(TOK.test, [{ record_id: 'W1', name: '', meds___2: '', email: '' }], { overwriteBehavior: 'overwrite' });
  assert.equal(over.status, 200);
  row = (await exportJson(TOK.test, { records: ['W1'] }))[0];
  assert.deepEqual([row.name, row.color, row.meds___2, row.email], ['', '3', '0', '']);
  await clear('test');
});

test('import: forceAutoNumber, generateNextRecordName, EAV rows', async () => {
  const next0 = await post({ token: TOK.plain, content: 'generateNextRecordName' });
  assert.equal(next0.text, '1');
  const r = await importJson(TOK.plain, [{ record_id: 'tmp-a', name: 'x' }, { record_id: 'tmp-b', name: 'y' }], { forceAutoNumber: 'true', returnContent: 'auto_ids' });
  assert.equal(r.text, '["1,tmp-a","2,tmp-b"]');
  assert.equal((await post({ token: TOK.plain, content: 'generateNextRecordName' })).text, '3');
  const eav = await importJson(TOK.plain, [
    { record: '9', field_name: 'name', value: 'eav' },
    { record: '9', field_name: 'meds', value: 'A-1.x' },
  ], { type: 'eav' });
  assert.equal(eav.text, '{"count": 1}');
  const row = (await exportJson(TOK.plain, { records: ['9'] }))[0];
  assert.deepEqual([row.name, row.meds___a_1_x, row.meds___1], ['eav', '1', '0']);
  await clear('plain');
});

/* ------------------------------------------------------------ import: fidelity fixes (REDCap 15.7.6 English.ini) */

const DT_YMD =
  'Invalid date format. (NOTE: Dates must be imported here only in Y-M-D H:M[:S] format, regardless of the specific date format designated for this field.)';

test('import: one datetime message for datetime and datetime_seconds (data_import_tool_193); MDY/DMY variants', async () => {
  // The example study: vs_datetime is datetime_seconds_ymd, dob date_ymd.
  const r = await importJson(TOK.study, [
    { record_id: 'D1', redcap_repeat_instrument: 'vitals', redcap_repeat_instance: '1', vs_datetime: '2020-03', vs_loinc: '8867-4' },
    { record_id: 'D1', redcap_repeat_instrument: 'labs', redcap_repeat_instance: '1', lab_datetime: '2020-03-05' },
  ]);
  assert.equal(r.status, 400);
  // REDCap 15.7.6 Records.php (saveData) adds the missing time before it
  // checks, and quotes the value so turned: "2020-03" fails as
  // "2020-03 00:00:00"; a date alone passes (saved at 00:00:00).
  assert.equal(errJson(r), `"D1","vs_datetime","2020-03 00:00:00","${DT_YMD}"`);
  const t = await importJson(TOK.test, [{ record_id: 'D2', seen_at: '2020-03-05 10:11:12' }]);
  assert.equal(t.status, 200, 'seconds on a datetime_ymd field are dropped');
  assert.equal((await exportJson(TOK.test, { records: ['D2'] }))[0].seen_at, '2020-03-05 10:11');
  await clear('test');
  // dateFormat=MDY / DMY: data_import_tool_238/239 (dates) and 194/195 (datetimes).
  const mdy = await importJson(TOK.test, [{ record_id: 'D3', visit_mdy: '13/31/2024', seen_at: '2024-13-01 10:00' }], { dateFormat: 'MDY' });
  // The error line quotes the value as REDCap turned it (M/D/Y -> Y-M-D).
  assert.equal(errJson(mdy), [
    '"D3","visit_mdy","2024-13-31","Invalid date format. (NOTE: Dates must be imported here only in M/D/Y format or Y-M-D format, regardless of the specific date format designated for this field.)"',
    '"D3","seen_at","2024-13-01 10:00","Invalid date format. (NOTE: Dates must be imported here only in M/D/Y H:M[:S] format, regardless of the specific date format designated for this field.)"',
  ].join('\n'));
  const dmy = await importJson(TOK.test, [{ record_id: 'D4', visit_mdy: '31/13/2024', seen_at: 'x' }], { dateFormat: 'DMY' });
  assert.equal(errJson(dmy), [
    '"D4","visit_mdy","2024-13-31","Invalid date format. (NOTE: Dates must be imported here only in D/M/Y format or Y-M-D format, regardless of the specific date format designated for this field.)"',
    '"D4","seen_at","x 00:00","Invalid date format. (NOTE: Dates must be imported here only in D/M/Y H:M[:S] format, regardless of the specific date format designated for this field.)"',
  ].join('\n'));
  assert.equal((await stored('study')).rows.length, 0);
  assert.equal((await stored('test')).rows.length, 0);
});

// REDCap 15.7.6 Records.php (saveData) rebuilds a datetime's time from the
// pieces between ':' -- without any ':' there are none, so an hour alone is
// lost and becomes 00:00 (REDCap's UI tests, redcap_rsvc B.3.16, show the
// Data Import Tool keeping "13" as 13:00: not what the API's saveData does).
test('import: a datetime\'s missing minutes or seconds are :00; an hour alone or no time at all is 00:00', async () => {
  const r = await importJson(TOK.study, [
    { record_id: 'M1', redcap_repeat_instrument: 'vitals', redcap_repeat_instance: '1', vs_datetime: '2020-03-05 10:11' },
    { record_id: 'M1', redcap_repeat_instrument: 'vitals', redcap_repeat_instance: '2', vs_datetime: '2020-03-05T7' },
  ]);
  assert.equal(r.status, 200, r.text);
  const t = await importJson(TOK.test, [{ record_id: 'M2', seen_at: '2020-03-05 13' }]);
  assert.equal(t.status, 200, t.text);
  const vit = (await exportJson(TOK.study, { records: ['M1'] })).filter((x) => x.redcap_repeat_instrument === 'vitals');
  assert.deepEqual(vit.map((x) => x.vs_datetime), ['2020-03-05 10:11:00', '2020-03-05 00:00:00']);
  assert.equal((await exportJson(TOK.test, { records: ['M2'] }))[0].seen_at, '2020-03-05 00:00');
  const d = await importJson(TOK.test, [{ record_id: 'M3', seen_at: '2020-3-5', visit_mdy: '2020-3-5' }]);
  assert.equal(d.status, 200, d.text);
  const m3 = (await exportJson(TOK.test, { records: ['M3'] }))[0];
  assert.deepEqual([m3.seen_at, m3.visit_mdy], ['2020-03-05 00:00', '2020-03-05']);
  await clear('study');
  await clear('test');
});

test('import: record names: empty, longer than 100 bytes, line breaks (data_import_tool_212/213, 233, 384)', async () => {
  // A flat row: 212 + the record id field + 213 (REDCap 15.7.6 Records.php,
  // saveData); "The record name cannot be empty." (211) is the EAV text.
  for (const name of ['', '   ']) {
    const r = await importJson(TOK.study, [{ record_id: 'ok1' }, { record_id: name, mrn: 'x' }]);
    assert.equal(r.status, 400);
    assert.equal(errJson(r), 'The record id field (record_id) is missing.');
  }
  const eav = await post({ token: TOK.study, content: 'record', format: 'json', type: 'eav', data: JSON.stringify([{ record: ' ', field_name: 'mrn', value: 'x' }]) });
  assert.equal(errJson(eav), 'The record name cannot be empty.');
  // PHP strlen: bytes.
  const wide = 'é'.repeat(51);
  assert.equal(errJson(await importJson(TOK.study, [{ record_id: wide }])), `Record names must be 100 characters or less in length. The following record name is too long and thus cannot be imported: ${wide}`);
  const long = 'x'.repeat(101);
  const r = await importJson(TOK.study, [{ record_id: long }]);
  assert.equal(r.status, 400);
  assert.equal(errJson(r), `Record names must be 100 characters or less in length. The following record name is too long and thus cannot be imported: ${long}`);
  // Quoted once br2nl() made its <br> tags line breaks.
  for (const [name, shown] of [['a\nb', 'a\nb'], ['a\rb', 'a\rb'], ['a<br>b', 'a\nb'], ['a<BR />b', 'a\nb']]) {
    const lb = await importJson(TOK.study, [{ record_id: name }]);
    assert.equal(lb.status, 400);
    assert.equal(errJson(lb), `Record names cannot contain BR tags, line breaks, or carriage return characters. The following record name contains a BR tag, line break, or carriage return, and thus cannot be imported: ${shown}`);
  }
  // Exactly 100 characters (after trimming) is fine.
  const ok = await importJson(TOK.study, [{ record_id: ` ${'y'.repeat(100)} ` }], { returnContent: 'ids' });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.text, `["${'y'.repeat(100)}"]`);
  assert.equal((await stored('study')).records.length, 1, 'only the valid import was stored');
  await clear('study');
});

test('import: repeat columns: instance range, another form in a repeating row, repeating events (data_import_tool_255/260/286)', async () => {
  // A per-value line (REDCap 15.7.6 Records.php, saveData): "(where) " + column + 286.
  const big = await importJson(TOK.study, [{ record_id: 'I1', redcap_repeat_instrument: 'vitals', redcap_repeat_instance: '32768', vs_loinc: 'x' }]);
  assert.equal(big.status, 400);
  assert.equal(errJson(big), `"I1","redcap_repeat_instance","32768","(redcap_repeat_instrument=""vitals"") redcap_repeat_instance must have a numeric value between '1' and '32767' for any Repeating Event or Repeating Instrument.  Please add a valid numeric value to redcap_repeat_instance in the data import file and try again."`);
  const bigLong = await importJson(TOK.long, [{ record_id: 'I1', redcap_event_name: 'visit_2_arm_1', redcap_repeat_instance: '99999', v_sbp: '1' }]);
  assert.match(errJson(bigLong), /^"I1","redcap_repeat_instance","99999","\(redcap_event_name=""visit_2_arm_1""\) redcap_repeat_instance must have /);
  // A classic project: a numeric instance without an instrument (215 + 284 + 285).
  const noInstr = await importJson(TOK.study, [{ record_id: 'I1', redcap_repeat_instance: '2', vs_loinc: 'x' }]);
  assert.equal(errJson(noInstr), `The record name (I1) with redcap_repeat_instance "2" cannot be imported. This is because the field 'redcap_repeat_instrument' could not be found in the data import fields or because it has a blank value.  In order to import data for a repeating instrument, the field 'redcap_repeat_instrument' is required in the imported data set.`);
  const max = await importJson(TOK.study, [{ record_id: 'I1', redcap_repeat_instrument: 'vitals', redcap_repeat_instance: '32767', vs_loinc: 'x' }]);
  assert.equal(max.status, 200, max.text);
  // Another form's field with a value in a repeating row is an error; blank
  // columns of other forms (as REDCap's own exports have them) are not.
  const other = await importJson(TOK.study, [
    { record_id: 'I2', redcap_repeat_instrument: 'vitals', redcap_repeat_instance: '1', vs_loinc: '8867-4', mrn: '', lab_name: '', labs_complete: '' },
    { record_id: 'I2', redcap_repeat_instrument: 'vitals', redcap_repeat_instance: '2', vs_loinc: '8867-4', mrn: 'M', lab_name: 'Creatinine' },
  ]);
  assert.equal(other.status, 400);
  assert.equal(errJson(other), [
    `"I2","mrn","M","This field ('mrn') does not exist on the Repeating Instrument named 'vitals'. You are not allowed to import data for this field into this Repeating Instrument."`,
    `"I2","lab_name","Creatinine","This field ('lab_name') does not exist on the Repeating Instrument named 'vitals'. You are not allowed to import data for this field into this Repeating Instrument."`,
  ].join('\n'));
  // A field of a repeating instrument on the non-repeating row.
  const base = await importJson(TOK.study, [{ record_id: 'I3', mrn: 'M3', vs_value: '72' }]);
  assert.equal(errJson(base), `"I3","vs_value","72","This field ('vs_value') exists on a Repeating Instrument named 'vitals'. However, the fields 'redcap_repeat_instance' and/or 'redcap_repeat_instrument' for this row of data have no value, which are both required for importing data into a Repeating Instrument.  You are not allowed to import data for this field into a non-repeating instrument."`);
  // An instrument named on a row of a repeating event.
  const ev = await importJson(TOK.long, [{ record_id: 'I4', redcap_event_name: 'visit_2_arm_1', redcap_repeat_instrument: 'visit', redcap_repeat_instance: '1', v_sbp: '120' }]);
  assert.equal(errJson(ev), '"I4","redcap_repeat_instrument","visit","(redcap_event_name=""visit_2_arm_1"") redcap_repeat_instrument should not have a value. This is a Repeating Event, which must always have a blank value for the redcap_repeat_instrument field.  Please remove this value from the data import file and try again."');
  const d = await stored('study');
  assert.deepEqual(d.records.map((x) => x.record), ['I1']);
  assert.equal((await stored('long')).records.length, 0);
  await clear('study');
});

test('import: survey identifier and <form>_timestamp columns are accepted and ignored', async () => {
  const r = await importJson(TOK.study, [{ record_id: 'S1', redcap_survey_identifier: '', demographics_timestamp: '2020-01-01 10:00:00', mrn: 'M1' }]);
  assert.equal(r.status, 200, r.text);
  const bad = await importJson(TOK.study, [{ record_id: 'S1', nosuchform_timestamp: 'x' }]);
  assert.equal(errJson(bad), 'The following fields were not found in the project as real data fields: nosuchform_timestamp');
  assert.equal((await exportJson(TOK.study, { records: ['S1'] }))[0].mrn, 'M1');
  await clear('study');
});

test('import (example study): normal ignores blanks, returnContent=ids, explicit and new instances, count of distinct records', async () => {
  const vit = (rid, inst, extra) => ({ record_id: rid, redcap_repeat_instrument: 'vitals', redcap_repeat_instance: inst, ...extra });
  // Explicit instance numbers create exactly those instances (gaps allowed).
  const first = await importJson(TOK.study, [
    { record_id: 'P1', mrn: 'MRN1', sex: '1', hr_baseline: '72' },
    vit('P1', '3', { vs_datetime: '2020-01-01 10:00:00', vs_loinc: '8867-4', vs_value: '72', vs_unit: '/min' }),
    vit('P1', 3, { vs_unit: '/min' }),
    vit('p1', '5', { vs_loinc: '9279-1', vs_value: '16' }),
    { record_id: 'P2', mrn: 'MRN2' },
    vit('P2', 'new', { vs_loinc: '8310-5', vs_value: '36.6' }),
  ], { returnContent: 'ids' });
  assert.equal(first.status, 200, first.text);
  assert.equal(first.text, '["P1","P2"]', 'ids: each record once, in first-seen order');
  // count: distinct records, however many rows (and whatever the case of the name).
  const again = await importJson(TOK.study, [vit('P1', 'new', { vs_loinc: '8867-4' }), vit('p1', 'new', { vs_loinc: '8867-4' }), vit('P2', '1', { vs_unit: 'Cel' })]);
  assert.equal(again.text, '{"count": 2}');
  // overwriteBehavior=normal (the default): blanks change nothing, in the
  // non-repeating row and in an instance; an all-blank 'new' row makes no instance.
  const blanks = await importJson(TOK.study, [
    { record_id: 'P1', mrn: '', sex: '', hr_baseline: '' },
    vit('P1', '3', { vs_datetime: '', vs_loinc: '', vs_value: '', vs_unit: '' }),
    vit('P2', 'new', { vs_loinc: '', vs_value: '' }),
  ], { overwriteBehavior: 'normal' });
  assert.equal(blanks.text, '{"count": 2}');
  const rows = (await stored('study')).rows;
  const pick = (r) => [r.record_id, r.redcap_repeat_instrument, r.redcap_repeat_instance, r.mrn, r.sex, r.hr_baseline, r.vs_datetime, r.vs_loinc, r.vs_value, r.vs_unit];
  assert.deepEqual(rows.map(pick), [
    ['P1', '', '', 'MRN1', '1', '72', '', '', '', ''],
    ['P1', 'vitals', '3', '', '', '', '2020-01-01 10:00:00', '8867-4', '72', '/min'],
    ['P1', 'vitals', '5', '', '', '', '', '9279-1', '16', ''],
    ['P1', 'vitals', '6', '', '', '', '', '8867-4', '', ''],
    ['P1', 'vitals', '7', '', '', '', '', '8867-4', '', ''],
    ['P2', '', '', 'MRN2', '', '', '', '', '', ''],
    ['P2', 'vitals', '1', '', '', '', '', '8310-5', '36.6', 'Cel'],
  ]);
  // overwrite: blanks erase; an instance left without any value disappears.
  const over = await importJson(TOK.study, [vit('P1', '5', { vs_loinc: '', vs_value: '', vitals_complete: '' })], { overwriteBehavior: 'overwrite' });
  assert.equal(over.status, 200, over.text);
  const after = (await stored('study')).rows.filter((r) => r.record_id === 'P1' && r.redcap_repeat_instrument === 'vitals');
  assert.deepEqual(after.map((r) => r.redcap_repeat_instance), ['3', '6', '7']);
  await clear('study');
});

/* ------------------------------------------------------------ export */

async function seedTest() {
  const r = await importJson(TOK.test, [
    { record_id: '10', name: 'ten', color: '1', meds___1: '1', meds___a_1_x: '1', smoker: '1', consent: '0', demo_complete: '2' },
    { record_id: '2', name: 'two', color: '2', smoker: '0' },
    { record_id: '2', redcap_repeat_instrument: 'ae', redcap_repeat_instance: '2', ae_term: 'cough', ae_grade: '1' },
    { record_id: '2', redcap_repeat_instrument: 'ae', redcap_repeat_instance: '1', ae_term: 'rash', ae_grade: '3', ae_complete: '1' },
    { record_id: 'b', name: 'bee', color: '2' },
  ]);
  assert.equal(r.status, 200, r.text);
}

test('export: REDCap column and row order, natural record order, json strings and csv', async () => {
  await seedTest();
  const rows = await exportJson(TOK.test);
  assert.deepEqual(Object.keys(rows[0]), TEST_COLUMNS);
  assert.deepEqual(rows.map((r) => [r.record_id, r.redcap_repeat_instrument, r.redcap_repeat_instance]), [
    ['2', '', ''],
    ['2', 'ae', '1'],
    ['2', 'ae', '2'],
    ['10', '', ''],
    ['b', '', ''],
  ]);
  for (const r of rows) for (const v of Object.values(r)) assert.equal(typeof v, 'string');
  assert.deepEqual(rows[3], {
    record_id: '10', redcap_repeat_instrument: '', redcap_repeat_instance: '', name: 'ten', color: '1', meds___1: '1',
    meds___2: '0', meds___a_1_x: '1', smoker: '1', consent: '0', visit_mdy: '', seen_at: '', email: '', score: '',
    weight: '', bmi: '', demo_complete: '2', ae_term: '', ae_grade: '', ae_onset: '', ae_complete: '',
  });
  // Repeating rows carry only their instrument's values.
  assert.deepEqual([rows[1].name, rows[1].meds___1, rows[1].demo_complete, rows[1].ae_term, rows[1].ae_complete], ['', '', '', 'rash', '1']);
  const csv = await post({ token: TOK.test, content: 'record', format: 'csv', records: ['2'], fields: ['record_id', 'name', 'ae_term'] });
  assert.equal(csv.headers['content-type'], 'text/csv; charset=utf-8');
  assert.equal(csv.text, 'record_id,redcap_repeat_instrument,redcap_repeat_instance,name,ae_term\n2,,,two,\n2,ae,1,,rash\n2,ae,2,,cough\n');
  await clear('test');
});

test('export: records, fields, forms, filterLogic and unknown names', async () => {
  await seedTest();
  const byComma = await exportJson(TOK.test, { records: '10,b', fields: 'record_id,color' });
  assert.deepEqual(byComma, [
    { record_id: '10', redcap_repeat_instrument: '', redcap_repeat_instance: '', color: '1' },
    { record_id: 'b', redcap_repeat_instrument: '', redcap_repeat_instance: '', color: '2' },
  ]);
  const idsOnly = await exportJson(TOK.test, { fields: ['record_id'] });
  assert.deepEqual(idsOnly.map((r) => r.record_id), ['2', '10', 'b']);
  const ae = await exportJson(TOK.test, { forms: ['ae'], fields: ['record_id'] });
  assert.deepEqual(Object.keys(ae[0]), ['record_id', 'redcap_repeat_instrument', 'redcap_repeat_instance', 'ae_term', 'ae_grade', 'ae_onset', 'ae_complete']);
  assert.equal(ae.length, 5);
  const noId = await exportJson(TOK.test, { fields: ['name'] });
  assert.deepEqual(noId, [{ name: 'two' }, { name: 'ten' }, { name: 'bee' }]);
  const filtered = await exportJson(TOK.test, { fields: ['record_id', 'color'], filterLogic: "[color] = '2' and [name] <> 'bee'" });
  assert.deepEqual(filtered.map((r) => r.record_id), ['2']);
  const byAe = await exportJson(TOK.test, { fields: ['record_id'], filterLogic: "[ae_grade] = '3' or [meds(A-1.x)] = '1'" });
  assert.deepEqual(byAe.map((r) => r.record_id), ['2', '10']);
  const bad = [
    [{ fields: ['name', 'nope', 'meds___1'] }, 'The following values in the parameter "fields" are not valid: \'nope\', \'meds___1\''],
    [{ fields: ['redcap_event_name'] }, 'The following values in the parameter "fields" are not valid: \'redcap_event_name\''],
    [{ forms: ['demo', 'zzz'] }, 'The following values in the parameter "forms" are not valid: \'zzz\''],
  ];
  for (const [params, msg] of bad) {
    const r = await post({ token: TOK.test, content: 'record', format: 'json', ...params });
    assert.equal(r.status, 400);
    assert.equal(errJson(r), msg);
  }
  const ev = await post({ token: TOK.long, content: 'record', format: 'json', events: ['baseline_arm_1', 'visit_9_arm_1'] });
  assert.equal(errJson(ev), 'The following values in the parameter "events" are not valid: \'visit_9_arm_1\'');
  await clear('test');
});

test('export: checkbox columns and exportFieldNames', async () => {
  const names = await post({ token: TOK.test, content: 'exportFieldNames', format: 'json' });
  const list = names.json();
  assert.deepEqual(list.filter((x) => x.original_field_name === 'meds'), [
    { original_field_name: 'meds', choice_value: '1', export_field_name: 'meds___1' },
    { original_field_name: 'meds', choice_value: '2', export_field_name: 'meds___2' },
    { original_field_name: 'meds', choice_value: 'A-1.x', export_field_name: 'meds___a_1_x' },
  ]);
  assert.deepEqual(list[0], { original_field_name: 'record_id', choice_value: '', export_field_name: 'record_id' });
  assert.ok(!list.some((x) => ['bmi', 'note_desc'].includes(x.original_field_name)), 'calc and descriptive fields left out');
  const one = await post({ token: TOK.test, content: 'exportFieldNames', format: 'csv', field: 'meds' });
  assert.equal(one.text, 'original_field_name,choice_value,export_field_name\nmeds,1,meds___1\nmeds,2,meds___2\nmeds,A-1.x,meds___a_1_x\n');
});

test('export: rawOrLabel=label, exportCheckboxLabel, rawOrLabelHeaders=label', async () => {
  await seedTest();
  const rows = await exportJson(TOK.test, { rawOrLabel: 'label', records: ['10', '2'] });
  const ten = rows.find((r) => r.record_id === '10');
  assert.deepEqual([ten.color, ten.meds___1, ten.meds___2, ten.smoker, ten.consent, ten.demo_complete], ['Red', 'Checked', 'Unchecked', 'Yes', 'False', 'Complete']);
  const ae = rows.find((r) => r.redcap_repeat_instance === '1');
  assert.deepEqual([ae.redcap_repeat_instrument, ae.ae_grade, ae.ae_complete], ['Ae', 'Severe', 'Unverified']);
  const cb = await exportJson(TOK.test, { rawOrLabel: 'label', exportCheckboxLabel: 'true', records: ['10'], fields: ['meds'] });
  assert.deepEqual(cb, [{ meds___1: 'Aspirin', meds___2: '', meds___a_1_x: 'Other' }]);
  const csv = await post({ token: TOK.test, content: 'record', format: 'csv', rawOrLabelHeaders: 'label', records: ['10'], fields: ['record_id', 'meds', 'demo_complete'] });
  assert.equal(csv.text, '"Record ID",Repeat Instrument,Repeat Instance,Medications (choice=Aspirin),Medications (choice=Heparin),Medications (choice=Other),Complete?\n10,,,1,0,1,2\n'.replace('"Record ID"', 'Record ID'));
  const gray = await exportJson(TOK.test, { records: ['b'], fields: ['record_id', 'ae_complete', 'demo_complete'], exportBlankForGrayFormStatus: 'true' });
  assert.deepEqual(gray, [{ record_id: 'b', redcap_repeat_instrument: '', redcap_repeat_instance: '', demo_complete: '0', ae_complete: '' }]);
  await clear('test');
});

test('export: dateRangeBegin/End select records created or modified in the range', async () => {
  const stamp = (ms) => new Date(ms).toISOString().slice(0, 19).replace('T', ' '); // the emulator runs with TZ=UTC
  await importJson(TOK.test, [{ record_id: 'X', name: 'x' }, { record_id: 'Y', name: 'y' }]);
  const t0 = Date.now();
  assert.equal((await control('clock', 'POST', { offset_ms: 3600000 })).status, 200);
  try {
    const begin = stamp(t0 + 1800000);
    // An import that changes nothing does not count as a modification.
    await importJson(TOK.test, [{ record_id: 'X', name: 'x' }]);
    await importJson(TOK.test, [{ record_id: 'Y', name: 'edited' }]);
    const after = await exportJson(TOK.test, { fields: ['record_id', 'name'], dateRangeBegin: begin });
    assert.deepEqual(after.map((r) => [r.record_id, r.name]), [['Y', 'edited']]);
    const before = await exportJson(TOK.test, { fields: ['record_id'], dateRangeEnd: begin });
    assert.deepEqual(before.map((r) => r.record_id), ['X', 'Y'], 'both were created before');
    const none = await exportJson(TOK.test, { fields: ['record_id'], dateRangeBegin: stamp(t0 + 7200000) });
    assert.deepEqual(none, []);
    const bad = await post({ token: TOK.test, content: 'record', format: 'json', dateRangeBegin: '2024-13-01 00:00:00' });
    assert.equal(bad.status, 400);
  } finally {
    await control('clock', 'POST', { offset_ms: 0 });
    await clear('test');
  }
});

/* ------------------------------------------------------------ classic vs longitudinal */

test('classic project: events, arms and mappings answer 400; structure exports', async () => {
  const cases = [
    ['event', 'You cannot export events for classic projects'],
    ['arm', 'You cannot export arms for classic projects'],
    ['formEventMapping', 'You cannot export form/event mappings for classic projects'],
  ];
  for (const [content, msg] of cases) {
    const r = await post({ token: TOK.study, content, format: 'json' });
    assert.equal(r.status, 400);
    assert.equal(r.text, `{"error":"${msg.replace(/\//g, '\\/')}"}`);
  }
  const inst = await post({ token: TOK.study, content: 'instrument', format: 'csv' });
  assert.equal(inst.text, 'instrument_name,instrument_label\ndemographics,"Demographics"\nvitals,"Vitals"\nlabs,"Labs"\nconditions,"Conditions"\nmedications,"Medications"\nallergies,"Allergies"\n');
  const rep = await post({ token: TOK.study, content: 'repeatingFormsEvents', format: 'json' });
  assert.deepEqual(rep.json(), STUDY_REPEATING.map((f) => ({ form_name: f, custom_form_label: '' })));
  const meta = (await post({ token: TOK.study, content: 'metadata', format: 'json' })).json();
  assert.equal(meta.length, 28);
  assert.deepEqual(Object.keys(meta[0]), [
    'field_name', 'form_name', 'section_header', 'field_type', 'field_label', 'select_choices_or_calculations', 'field_note',
    'text_validation_type_or_show_slider_number', 'text_validation_min', 'text_validation_max', 'identifier', 'branching_logic',
    'required_field', 'custom_alignment', 'question_number', 'matrix_group_name', 'matrix_ranking', 'field_annotation',
  ]);
  const sex = meta.find((m) => m.field_name === 'sex');
  assert.equal(sex.select_choices_or_calculations, '1, Female | 2, Male | 3, Unknown');
  assert.deepEqual(
    meta.filter((m) => m.text_validation_type_or_show_slider_number).map((m) => [m.field_name, m.text_validation_type_or_show_slider_number]),
    [['dob', 'date_ymd'], ['enroll_date', 'date_ymd'], ['hr_baseline', 'integer'], ['creat_max_48h', 'number'], ['vs_datetime', 'datetime_seconds_ymd'],
      ['vs_value', 'number'], ['lab_datetime', 'datetime_seconds_ymd'], ['lab_value', 'number'], ['cond_onset', 'date_ymd'], ['med_authored', 'date_ymd']]
  );
  const metaCsv = await post({ token: TOK.study, content: 'metadata', format: 'csv', fields: ['sex'] });
  assert.equal(metaCsv.text.split('\n')[1], 'sex,demographics,,radio,Sex,"1, Female | 2, Male | 3, Unknown",From Patient.gender,,,,,,,,,,,');
  const proj = (await post({ token: TOK.study, content: 'project', format: 'json' })).json();
  assert.equal(proj.is_longitudinal, 0);
  assert.equal(proj.has_repeating_instruments_or_events, 1);
  assert.equal(proj.project_title, 'study');
});

test('longitudinal project: events, arms, mappings, designations, repeating events', async () => {
  const events = (await post({ token: TOK.long, content: 'event', format: 'json' })).json();
  assert.deepEqual(events, [
    { event_name: 'Baseline', arm_num: 1, unique_event_name: 'baseline_arm_1', custom_event_label: '', event_id: 1 },
    { event_name: 'Visit 1', arm_num: 1, unique_event_name: 'visit_1_arm_1', custom_event_label: '', event_id: 2 },
    { event_name: 'Visit 2', arm_num: 1, unique_event_name: 'visit_2_arm_1', custom_event_label: '', event_id: 3 },
    { event_name: 'Screening', arm_num: 2, unique_event_name: 'screening_arm_2', custom_event_label: '', event_id: 4 },
  ]);
  assert.deepEqual((await post({ token: TOK.long, content: 'arm', format: 'json' })).json(), [{ arm_num: 1, name: 'Arm One' }, { arm_num: 2, name: 'Arm Two' }]);
  const fem = (await post({ token: TOK.long, content: 'formEventMapping', format: 'json', arms: ['2'] })).json();
  assert.deepEqual(fem, [{ arm_num: 2, unique_event_name: 'screening_arm_2', form: 'baseline' }]);
  assert.deepEqual((await post({ token: TOK.long, content: 'repeatingFormsEvents', format: 'json' })).json(), [
    { event_name: 'visit_1_arm_1', form_name: 'meds', custom_form_label: '' },
    { event_name: 'visit_2_arm_1', form_name: '', custom_form_label: '' },
  ]);

  // A repeating event's row needs a redcap_repeat_instance column (215 + 282 + 283).
  const noInst = await importJson(TOK.long, [{ record_id: '1', redcap_event_name: 'visit_2_arm_1', v_sbp: '125' }]);
  assert.equal(errJson(noInst), `The record name (1) with event "visit_2_arm_1" cannot be imported. This is because this event is a repeating event, but the field 'redcap_repeat_instance' could not be found in the data import fields.  In order to import data for a repeating event, the field 'redcap_repeat_instance' is required in the imported data set.`);
  // A blank event name is no first event (data_import_tool_214).
  assert.equal(errJson(await importJson(TOK.long, [{ record_id: '1', redcap_event_name: '', age: '1' }])), 'The record event name is missing.');
  const notDesignated = await importJson(TOK.long, [{ record_id: '1', redcap_event_name: 'visit_1_arm_1', age: '40', v_sbp: '120' }]);
  assert.equal(errJson(notDesignated), `"1","age","40","This field ('age') exists on an instrument that is not designated for the event named 'Visit 1 (Arm 1: Arm One)'. You are not allowed to import data for this field into this event."`);
  const ok = await importJson(TOK.long, [
    { record_id: '1', age: '40' }, // no redcap_event_name: the first event
    { record_id: '1', redcap_event_name: 'visit_1_arm_1', v_sbp: '120' },
    { record_id: '1', redcap_event_name: 'visit_1_arm_1', redcap_repeat_instrument: 'meds', redcap_repeat_instance: 'new', med_name: 'aspirin' },
    { record_id: '1', redcap_event_name: 'visit_2_arm_1', redcap_repeat_instance: '2', v_sbp: '130' },
    { record_id: '1', redcap_event_name: 'visit_2_arm_1', redcap_repeat_instance: '', v_sbp: '125' }, // blank: instance 1
    { record_id: '2', redcap_event_name: 'screening_arm_2', age: '50' },
  ]);
  assert.equal(ok.text, '{"count": 2}', ok.text);
  const rows = await exportJson(TOK.long);
  assert.deepEqual(Object.keys(rows[0]), ['record_id', 'redcap_event_name', 'redcap_repeat_instrument', 'redcap_repeat_instance', 'age', 'baseline_complete', 'v_date', 'v_sbp', 'visit_complete', 'med_name', 'meds_complete']);
  assert.deepEqual(rows.map((r) => [r.record_id, r.redcap_event_name, r.redcap_repeat_instrument, r.redcap_repeat_instance, r.age, r.v_sbp, r.med_name, r.baseline_complete, r.visit_complete]), [
    ['1', 'baseline_arm_1', '', '', '40', '', '', '0', ''],
    ['1', 'visit_1_arm_1', '', '', '', '120', '', '', '0'],
    ['1', 'visit_1_arm_1', 'meds', '1', '', '', 'aspirin', '', ''],
    ['1', 'visit_2_arm_1', '', '1', '', '125', '', '', '0'],
    ['1', 'visit_2_arm_1', '', '2', '', '130', '', '', '0'],
    ['2', 'screening_arm_2', '', '', '50', '', '', '0', ''],
  ]);
  const ev = await exportJson(TOK.long, { events: ['visit_2_arm_1'], fields: ['record_id', 'v_sbp'], rawOrLabel: 'label' });
  assert.deepEqual(ev.map((r) => [r.redcap_event_name, r.redcap_repeat_instance, r.v_sbp]), [['Visit 2 (Arm 1: Arm One)', '1', '125'], ['Visit 2 (Arm 1: Arm One)', '2', '130']]);
  const filt = await exportJson(TOK.long, { fields: ['record_id', 'v_sbp'], filterLogic: '[v_sbp] > 122' });
  assert.deepEqual(filt.map((r) => [r.redcap_event_name, r.redcap_repeat_instance]), [['visit_2_arm_1', '1'], ['visit_2_arm_1', '2']]);
  await clear('long');
});

/* ------------------------------------------------------------ offline, out of memory, faults */

test('offline: project and system offline answer 400 with REDCap messages', async () => {
  await control('offline', 'POST', { project: 'test' });
  const p = await post({ token: TOK.test, content: 'record', format: 'json' });
  assert.equal(p.status, 400);
  assert.equal(errJson(p), 'This project is currently OFFLINE and is not accessible to normal users.');
  const pc = await post({ token: TOK.test, content: 'version', format: 'csv' });
  assert.equal(pc.text, 'ERROR: This project is currently OFFLINE and is not accessible to normal users.');
  assert.equal((await post({ token: TOK.study, content: 'version' })).status, 200, 'other projects stay online');
  await control('offline', 'POST', { project: null, system: true });
  const s = await post({ token: TOK.study, content: 'version', format: 'json' });
  assert.equal(s.status, 400);
  assert.equal(errJson(s), 'REDCap is currently offline. Please return at another time. We apologize for any inconvenience.');
  const sx = await post({ token: TOK.test, content: 'record' });
  assert.equal(sx.text, '<?xml version="1.0" encoding="UTF-8" ?><hash><error>REDCap is currently offline. Please return at another time. We apologize for any inconvenience.</error></hash>');
  await control('offline', 'POST', { system: false });
  assert.equal((await post({ token: TOK.test, content: 'version' })).status, 200);
});

test('out of memory: by fault and by --max-export-records; smaller batches pass', async () => {
  const oom = 'REDCap ran out of server memory. The request cannot be processed. Please try importing/exporting a smaller amount of data.';
  await seedTest();
  await control('faults', 'POST', { content: 'record', action: 'import', kind: 'out-of-memory' });
  const f = await importJson(TOK.test, [{ record_id: 'z' }]);
  assert.equal(f.status, 500);
  assert.equal(errJson(f), oom);
  assert.equal((await importJson(TOK.test, [{ record_id: 'z' }])).status, 200, 'the fault fired once');
  await control('config', 'POST', { maxExportRecords: 2 });
  try {
    const big = await post({ token: TOK.test, content: 'record', format: 'json', returnFormat: 'csv' });
    assert.equal(big.status, 500);
    assert.equal(big.text, `ERROR: ${oom}`);
    const small = await exportJson(TOK.test, { records: ['2', 'b'] });
    assert.equal(small.length, 4);
  } finally {
    await control('config', 'POST', { maxExportRecords: 0 });
  }
  await clear('test');
});

test('faults: status, delay and dropped connections', async () => {
  await control('faults', 'POST', [{ content: 'version', status: 503, times: 2 }, { content: 'metadata', kind: 'drop' }, { content: 'instrument', kind: 'delay', ms: 200 }]);
  const a = await post({ token: TOK.test, content: 'version', format: 'json' });
  assert.equal(a.status, 503);
  assert.equal((await post({ token: TOK.test, content: 'version' })).status, 503);
  assert.equal((await post({ token: TOK.test, content: 'version' })).status, 200);
  await assert.rejects(post({ token: TOK.test, content: 'metadata', format: 'json' }));
  const t = Date.now();
  assert.equal((await post({ token: TOK.test, content: 'instrument', format: 'json' })).status, 200);
  assert.ok(Date.now() - t >= 190);
  const stats = (await control('stats')).json();
  assert.equal(stats.faults.byKind.status, 2);
  assert.equal(stats.requests.byStatus.dropped >= 1, true);
  assert.ok(stats.requests.byContent.record > 0);
  // Unknown keys are refused, not ignored (nothing is queued then).
  const typo = await control('faults', 'POST', [{ content: 'version', status: 503 }, { content: 'record', status: 503, count: 2 }]);
  assert.equal(typo.status, 400);
  assert.equal(typo.json().error, "unknown fault key 'count' (the number of firings is 'times')");
  assert.equal((await post({ token: TOK.test, content: 'version' })).status, 200);
});

/* ------------------------------------------------------------ the ban */

test('ban: more than N requests a minute from one IP -> 429 and banned until reset-ban', async () => {
  const portFile = path.join(tmp, 'port');
  const longCsv = path.join(tmp, 'long.csv');
  const longJson = path.join(tmp, 'events.json');
  fs.writeFileSync(longCsv, LONG_DICT);
  fs.writeFileSync(longJson, JSON.stringify({ arms: LONG_DEF.arms, events: LONG_DEF.events, formEventMapping: LONG_DEF.formEventMapping, repeating: LONG_DEF.repeating }));
  const B = await spawnEmulator([
    '--port', '0', '--port-file', portFile, '--rate-limit', '3',
    '--project', `study=${path.join(repo, 'conf/example-project/dictionary.csv')},repeating=vitals`,
    `--project=long=${longCsv},longitudinal=${longJson}`,
    '--token', `${TOK.study}=study:export`,
    '--token', `${TOK.long}=long`,
  ]);
  assert.equal(fs.readFileSync(portFile, 'utf8'), `${B.api}\n`);
  const projects = (await request(`${B.origin}/__control/projects`)).json().projects;
  assert.deepEqual(projects.map((p) => [p.name, p.longitudinal]), [['study', false], ['long', true]]);
  const v = () => post({ token: TOK.study, content: 'version' }, B.api);
  assert.equal((await v()).status, 200, 'request 1');
  const ev = await post({ token: TOK.long, content: 'event', format: 'json' }, B.api);
  assert.equal(ev.json().length, 4, 'request 2: the longitudinal project from the command line');
  assert.equal((await v()).status, 200, 'request 3');
  // REDCap checks the ban before counting the request (Logging::checkBannedIp,
  // then storeHashedIp): the request that crosses the limit is still served.
  assert.equal((await v()).status, 200, 'request 4 is served and bans the IP');
  const banned = await v();
  assert.equal(banned.status, 429);
  assert.equal(banned.text, 'Your IP address (127.0.0.1) has been banned due to suspected abuse.');
  const bad = await post({ token: 'whatever', content: 'version' }, B.api);
  assert.equal(bad.status, 429, 'before any other check');
  const imp = await post({ token: TOK.study, content: 'record', format: 'json', data: '[]' }, B.api);
  assert.equal(imp.status, 429);
  const stats = await request(`${B.origin}/__control/stats`);
  assert.deepEqual(stats.json().banned, ['127.0.0.1']);
  assert.equal((await request(`${B.origin}/__control/reset-ban`, { method: 'POST' })).status, 200);
  assert.equal((await v()).status, 200);
  // The token has no import right: 403 on import.
  const noImp = await post({ token: TOK.study, content: 'record', format: 'json', data: '[{"record_id":"1"}]', returnFormat: 'json' }, B.api);
  assert.equal(noImp.status, 403);
  assert.equal(await stop(B.child), 0, 'SIGTERM exits 0');
});

test('log, control reset and project listing', async () => {
  await importJson(TOK.test, [{ record_id: 'L1', name: 'a' }]);
  await importJson(TOK.test, [{ record_id: 'L1', name: 'b' }]);
  const log = (await post({ token: TOK.test, content: 'log', format: 'json' })).json();
  assert.deepEqual(log.map((e) => [e.action, e.record]), [['Update record', 'L1'], ['Create record', 'L1']]);
  const before = (await control('projects')).json().projects.find((p) => p.name === 'test');
  assert.equal(before.records, 1);
  assert.equal((await control('reset', 'POST', {})).status, 200);
  const afterReset = (await control('projects')).json().projects.find((p) => p.name === 'test');
  assert.equal(afterReset.records, 0);
  assert.equal((await post({ token: TOK.test, content: 'version' })).text, '15.7.6', 'projects and tokens stay');
  const stats = (await control('stats')).json();
  assert.equal(stats.requests.total, 1);
});

test('hostile parameters get REDCap errors, never a crash', async () => {
  const cases = [
    { token: [TOK.test, TOK.test], content: 'version' },
    { token: TOK.test, content: ['record'] },
    { token: TOK.test, content: 'record', format: 'json', data: '[{"__proto__":"x","record_id":"h1"}]', returnFormat: 'json' },
    { token: TOK.test, content: 'record', format: 'json', data: '[[1,2]]' },
    { token: TOK.test, content: 'record', format: 'json', data: '[{"record_id":{"a":1}}]' },
    { token: TOK.test, content: 'record', format: 'json', data: 'null' },
    { token: TOK.test, content: 'record', format: 'csv', data: 'record_id,name\n"h2,unterminated' },
    { token: TOK.test, content: 'record', format: 'csv', data: '' },
    { token: TOK.test, content: 'record', format: 'json', filterLogic: '('.repeat(5000) + "[name] = 'x'" },
    { token: TOK.test, content: 'record', format: 'json', filterLogic: "datediff([seen_at], 'today', 'd') > 3" },
    { token: TOK.test, content: 'record', format: 'json', filterLogic: "[nope] = '1'" },
    { token: TOK.test, content: 'record', format: 'json', records: 'a'.repeat(100000) },
    { token: TOK.test, content: 'exportFieldNames', format: 'json', field: 'nope' },
    { token: TOK.test, content: 'record', format: 'json', dateRangeEnd: 'yesterday' },
    { token: TOK.test, content: 'file', format: 'json' },
    { token: TOK.test, content: 'record', action: 'delete', format: 'json' },
  ];
  for (const c of cases) {
    const r = await post(c);
    assert.ok(r.status < 500, `${JSON.stringify(c).slice(0, 80)} -> ${r.status} ${r.text.slice(0, 200)}`);
  }
  const fl = await post({ token: TOK.test, content: 'record', format: 'json', filterLogic: "[nope] = '1'" });
  assert.equal(errJson(fl), 'The value of the parameter "filterLogic" is not valid');
  const del = await post({ token: TOK.test, content: 'record', action: 'delete', format: 'json', records: ['h1'] });
  assert.equal(del.status, 403);
  assert.equal(errJson(del), 'You do not have Delete Record privileges');
  assert.equal((await post({ token: TOK.test, content: 'version' })).status, 200);
  await clear('test');
});
