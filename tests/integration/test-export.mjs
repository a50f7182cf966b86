// `fhir-redcap-bridge export` against the REDCap emulator: a batched,
// resumable export must give byte for byte what REDCap gives for ONE export
// of the same selection (records.csv / records.json; records.ndjson = the
// json rows one per line), with the project's dictionary, info, events and
// form-event mapping beside it, in a known number of requests, under the
// request-rate cap; kill -9 and rerun, the out-of-memory split, --since,
// --label, filters, REDCap's errors passed through.
//
// Data: tests/integration/export-lib.mjs (deterministic records for the
// example study and for a longitudinal project made here).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, existsSync, mkdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

import { tempDir, cleanup, bridgeBin, exampleDir } from './lib.mjs';
import {
  CLASSIC_TOKEN, CLASSIC_REPEATING, LONG_TOKEN, DELETE_TOKEN, BAD_TOKEN, SUMMARY_RE, classicRows, longitudinalRows, startExportEmulator,
  api, importRows, referenceExport, referenceFiles, writeExportConfig, runExport, listOut,
} from './export-lib.mjs';

// EXPORT_TEST_RECORDS lowers the size of the big classic project (e.g. under valgrind).
const N_CLASSIC = Number(process.env.EXPORT_TEST_RECORDS || 10000);
const N_LONG = N_CLASSIC;
const RID = { classic: 'record_id', long: 'study_id' };
const TOKENS = { classic: CLASSIC_TOKEN, long: LONG_TOKEN };
const EXT = { csv: 'csv', json: 'json', ndjson: 'ndjson' };

/* ------------------------------------------------------------ helpers */

/*
 * A world: an emulator with the classic project (and with long, the
 * longitudinal one) loaded, a config dir (store) for the bridge, and a
 * cache of reference exports. Stopped by the test's (or the file's) after.
 */
async function makeWorld({ classic = 0, classicOpts = {}, long = 0, extra = [], cfg = {} } = {}) {
  const dir = tempDir('frb-export-');
  const srv = await startExportEmulator({ longDir: dir, extra });
  try {
    if (classic) await importRows(srv, CLASSIC_TOKEN, classicRows(classic, classicOpts));
    if (long) await importRows(srv, LONG_TOKEN, longitudinalRows(long));
  } catch (err) {
    await srv.stop();
    cleanup(dir);
    throw err;
  }
  const cfgPath = writeExportConfig(dir, [
    { name: 'classic', url: srv.url, token: CLASSIC_TOKEN },
    { name: 'long', url: srv.url, token: LONG_TOKEN },
  ], cfg);
  let outN = 0;
  const refs = new Map();
  const w = {
    dir, srv, cfgPath,
    out: (tag = 'out') => join(dir, `${tag}-${++outN}`),
    async ref(project, sel) {
      const key = JSON.stringify([project, sel]);
      if (!refs.has(key)) refs.set(key, await referenceExport(srv, TOKENS[project], sel));
      return refs.get(key);
    },
    forget() { refs.clear(); },
    async stop() { await srv.stop(); cleanup(dir); },
  };
  return w;
}

/* Export arguments for a selection sel {format, label, fields, forms, events, records, since, batch}. */
function argsFor(w, project, sel, out) {
  const a = ['--config', w.cfgPath, '--project', project];
  if (out) a.push('--out', out);
  if (sel.format) a.push('--format', sel.format);
  if (sel.fields) a.push('--fields', [].concat(sel.fields).join(','));
  if (sel.forms) a.push('--forms', [].concat(sel.forms).join(','));
  if (sel.events) a.push('--events', [].concat(sel.events).join(','));
  if (sel.records) a.push('--records', [].concat(sel.records).join(','));
  if (sel.label) a.push('--label');
  if (sel.since) a.push('--since', sel.since);
  if (sel.batch) a.push('--batch-size', String(sel.batch));
  return a;
}

/*
 * The emulator's stats difference over fn(); resolves to {result, total,
 * byContent, byStatus, recordExports, stats (after), t0, t1 (ms)}.
 */
async function measured(w, fn) {
  await w.srv.control('reset-ban', {});
  const s0 = await w.srv.control('stats');
  const t0 = Date.now();
  const result = await fn();
  const t1 = Date.now();
  const s1 = await w.srv.control('stats');
  // Every request of the run was closed (and logged) before this answer.
  const tStats = Date.now();
  // The checks that follow ask the emulator too: they must not count against the run.
  await w.srv.control('reset-ban', {});
  const diff = (a = {}, b = {}) => Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - (a[k] ?? 0)]).filter(([, v]) => v !== 0));
  return {
    result,
    total: s1.requests.total - s0.requests.total,
    byContent: diff(s0.requests.byContent, s1.requests.byContent),
    byStatus: diff(s0.requests.byStatus, s1.requests.byStatus),
    recordExports: s1.exports.requests - s0.exports.requests,
    stats: s1, t0, t1, tStats,
  };
}

/* Byte comparison of a file with the text it must hold; on a difference, shows where. */
function assertFileIs(path, want, what) {
  assert.ok(existsSync(path), `${what}: ${path} is missing`);
  const got = readFileSync(path);
  const exp = Buffer.from(want, 'utf8');
  if (got.equals(exp)) return;
  let i = 0;
  while (i < got.length && i < exp.length && got[i] === exp[i]) i++;
  const ctx = (b) => JSON.stringify(b.subarray(Math.max(0, i - 120), i + 120).toString('utf8'));
  assert.fail(`${what}: differs at byte ${i} (file ${got.length} bytes, expected ${exp.length})\n` +
    `  file:     ${ctx(got)}\n  expected: ${ctx(exp)}`);
}

/* records.ndjson: one compact object per line (LF-terminated), keys and values as in the json export. */
function assertNdjson(path, refJson, what) {
  assert.ok(existsSync(path), `${what}: ${path} is missing`);
  const text = readFileSync(path, 'utf8');
  const want = JSON.parse(refJson);
  if (want.length === 0) {
    assert.equal(text, '', `${what}: an empty export is an empty file`);
    return;
  }
  assert.ok(text.endsWith('\n'), `${what}: the last line ends with a line feed`);
  const lines = text.slice(0, -1).split('\n');
  assert.equal(lines.length, want.length, `${what}: one line per row`);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const outside = line.replace(/"(?:[^"\\]|\\.)*"/g, '""');
    assert.doesNotMatch(outside, /\s/, `${what}: line ${i + 1} is not compact: ${line.slice(0, 200)}`);
    let row;
    try { row = JSON.parse(line); } catch (err) { assert.fail(`${what}: line ${i + 1} is not JSON (${err.message}): ${line.slice(0, 200)}`); }
    const a = JSON.stringify(row), b = JSON.stringify(want[i]);
    if (a !== b) assert.fail(`${what}: line ${i + 1} differs (keys, their order or values)\n  file:     ${a.slice(0, 400)}\n  expected: ${b.slice(0, 400)}`);
  }
}

/* Records and rows of a json reference (the record-id column must be selected). */
function countsOf(refJson, project) {
  const rows = JSON.parse(refJson);
  return { rows: rows.length, records: new Set(rows.map((r) => r[RID[project]])).size };
}

function summaryLines(stderr) {
  return stderr.split('\n').filter((l) => SUMMARY_RE.test(l));
}

/*
 * The single exports a selection is compared with. Fetch them before
 * queueing faults: the fault rules match the reference requests too.
 */
async function references(w, project, sel) {
  const refJson = await w.ref(project, { ...sel, format: 'json', batch: undefined });
  const refCsv = (sel.format || 'csv') === 'csv' ? await w.ref(project, { ...sel, format: 'csv', batch: undefined }) : null;
  return { refJson, refCsv };
}

/*
 * Runs an export of a selection and checks everything the contract says
 * about a successful one: exit 0, the one summary line (records, rows,
 * requests), the files (records byte-identical to the single export,
 * dictionary, project info, events and form-event mapping as returned, no
 * .partial left), and, unless exactRequests is false, the requests made.
 */
async function exportAndCheck(w, project, sel, { exactRequests = true, out = w.out(), extraArgs = [] } = {}) {
  const format = sel.format || 'csv';
  const { refJson, refCsv } = await references(w, project, sel);
  const m = await measured(w, () => runExport([...argsFor(w, project, { ...sel, format }, out), ...extraArgs]));
  const r = m.result;
  const what = `${project} ${JSON.stringify(sel)}`;
  assert.equal(r.code, 0, `${what}: exit ${r.code} ${r.signal ?? ''}\n${r.stderr}`);
  const { records, rows } = countsOf(refJson, project);

  const sum = summaryLines(r.stderr);
  assert.equal(sum.length, 1, `${what}: one summary line on stderr, got:\n${r.stderr}`);
  const [, nRec, nRows, nReq] = SUMMARY_RE.exec(sum[0]).map(Number);
  assert.equal(nRec, records, `${what}: records in the summary`);
  assert.equal(nRows, rows, `${what}: rows in the summary`);
  if (exactRequests) assert.equal(nReq, m.total, `${what}: requests in the summary vs requests REDCap saw`);
  // A connection dropped before any answer is retried by libcurl itself on a
  // new connection (an export is idempotent): REDCap may see one more.
  else assert.ok(m.total >= nReq && m.total <= nReq + 1, `${what}: requests ${nReq} in the summary, ${m.total} seen by REDCap`);

  const longitudinal = project === 'long';
  const listing = listOut(out);
  const expectFiles = ['dictionary.csv', 'project.json', `records.${EXT[format]}`];
  if (longitudinal) expectFiles.push('events.json', 'form-event-mapping.json');
  assert.deepEqual(listing.files, expectFiles.sort(), `${what}: files in ${out}`);
  assert.deepEqual(listing.hidden, [], `${what}: nothing temporary left`);
  const recPath = join(out, `records.${EXT[format]}`);
  if (format === 'csv') assertFileIs(recPath, refCsv, `${what}: records.csv`);
  else if (format === 'json') assertFileIs(recPath, refJson, `${what}: records.json`);
  else assertNdjson(recPath, refJson, `${what}: records.ndjson`);
  const files = await referenceFiles(w.srv, TOKENS[project], longitudinal);
  for (const [name, text] of Object.entries(files)) assertFileIs(join(out, name), text, `${what}: ${name}`);

  if (exactRequests) {
    const batch = sel.batch ?? 100;
    const want = { project: 1, metadata: 1, record: 1 + Math.ceil(records / batch) };
    if (longitudinal) {
      want.event = 1;
      want.formEventMapping = 1;
      if (m.byContent.arm) want.arm = 1;
    }
    assert.deepEqual(m.byContent, want, `${what}: requests by content`);
    assert.deepEqual(Object.keys(m.byStatus), ['200'], `${what}: every answer a 200`);
  }
  return { ...m, out, records, rows };
}

/* Polls the emulator until pred(stats) holds (or the process p ended); then calls fire(). */
function whenStats(w, pred, fire, { every = 5, isDone = () => false } = {}) {
  let busy = false, fired = false;
  const timer = setInterval(() => {
    if (fired || isDone()) { clearInterval(timer); return; }
    if (busy) return;
    busy = true;
    w.srv.control('stats').then((s) => {
      busy = false;
      if (!fired && pred(s)) { fired = true; clearInterval(timer); fire(s); }
    }, () => { busy = false; });
  }, every);
  return () => clearInterval(timer);
}

/* Faults that let the id-list export through and hold the first batch export for ms. */
const HOLD_FIRST_BATCH = (ms) => [
  { content: 'record', action: 'export', kind: 'delay', ms: 0, times: 1 },
  { content: 'record', action: 'export', kind: 'delay', ms, times: 1 },
];

/* ------------------------------------------------------------ the big shared world */

let big;
before(async () => {
  big = await makeWorld({ classic: N_CLASSIC, long: N_LONG });
});
after(async () => { await big?.stop(); });

test(`${N_CLASSIC} records with repeating instruments: batched csv, json, ndjson are byte-identical to one export`, async () => {
  const nBatches = [];
  for (const batch of [100, 337]) {
    for (const format of ['csv', 'json', 'ndjson']) {
      const m = await exportAndCheck(big, 'classic', { format, batch });
      assert.equal(m.records, N_CLASSIC);
      assert.ok(m.rows > N_CLASSIC * 3, 'the data has repeat instances');
      nBatches.push(m.byContent.record - 1);
    }
  }
  assert.deepEqual(nBatches, [100, 100, 100, 337, 337, 337].map((b) => Math.ceil(N_CLASSIC / b)));
});

test('the data set covers what the files must carry: quoting, line breaks, UTF-8, "/" and blanks', async () => {
  // A check on the test data itself, so the comparisons above mean something.
  const csv = await big.ref('classic', { format: 'csv' });
  const json = await big.ref('classic', { format: 'json' });
  assert.match(csv, /"Sodium, serum"/);
  assert.match(csv, /"Creatinine ""enzymatic"""/);
  assert.match(csv, /"Potassium\nwhole blood"/);
  assert.match(csv, /東京 panel/);
  assert.match(json, /mg\\\/dL/, 'PHP escapes "/" in json');
  assert.match(json, /\\u00fc/, 'PHP escapes non-ASCII in json');
  const rows = JSON.parse(json);
  assert.ok(rows.some((r) => r.redcap_repeat_instrument === 'vitals' && Number(r.redcap_repeat_instance) >= 4));
  assert.ok(rows.some((r) => r.record_id === '2') && rows.findIndex((r) => r.record_id === '2') < rows.findIndex((r) => r.record_id === '10'),
    'natural record order (2 before 10)');
});

test(`a longitudinal project (${N_LONG} records, two arms, a repeating instrument and a repeating event, checkboxes)`, async () => {
  for (const [format, batch] of [['csv', 100], ['json', 100], ['ndjson', 251]]) {
    const m = await exportAndCheck(big, 'long', { format, batch });
    assert.equal(m.records, N_LONG);
  }
  const json = JSON.parse(await big.ref('long', { format: 'json' }));
  assert.ok(json.some((r) => r.redcap_event_name === 'weekly_call_arm_1' && r.redcap_repeat_instrument === '' && r.redcap_repeat_instance === '2'));
  assert.ok(json.some((r) => r.redcap_repeat_instrument === 'adverse_events'));
  assert.ok(json.some((r) => r.race___unk_x === '1'));
  assert.ok(json.some((r) => r.redcap_event_name === 'visit_arm_2'));
});

test('--label gives choice labels, like the single export with rawOrLabel=label', async () => {
  await exportAndCheck(big, 'classic', { format: 'csv', label: true, batch: 500 });
  await exportAndCheck(big, 'classic', { format: 'json', label: true, batch: 1000 });
  await exportAndCheck(big, 'long', { format: 'csv', label: true, batch: 300 });
  const lab = await big.ref('long', { format: 'csv', label: true });
  assert.match(lab, /Baseline \(Arm 1: Treatment\)/);
  assert.match(lab, /,Checked,/);
  assert.match(lab, /Adverse Events/);
});

test('--fields, --forms, --events and --records select like REDCap', async () => {
  const ids = ['2', '10', '100', '101', '1000', '9', String(N_CLASSIC), '77', '5000', '4999'].filter((x) => Number(x) <= N_CLASSIC);
  await exportAndCheck(big, 'classic', { format: 'csv', fields: ['record_id', 'dob', 'sex', 'vs_value', 'labs_complete'], batch: 250 });
  await exportAndCheck(big, 'classic', { format: 'json', forms: ['labs', 'conditions'], fields: ['record_id'], records: ids, batch: 3 });
  await exportAndCheck(big, 'classic', { format: 'ndjson', forms: ['demographics', 'allergies'], batch: 1000 });
  await exportAndCheck(big, 'long', { format: 'csv', events: ['follow_up_arm_1', 'weekly_call_arm_1'], batch: 150 });
  await exportAndCheck(big, 'long', { format: 'json', forms: ['adverse_events'], fields: ['study_id'], batch: 100 });
  await exportAndCheck(big, 'long', { format: 'csv', fields: ['study_id', 'race', 'symptoms'], events: ['baseline_arm_2'], records: ['L-00005', 'L-00010', 'L-00003'] });
});

test('errors: an unknown field, form or event (REDCap\'s message), a bad token, an unknown project, bad usage', async () => {
  const run = (project, extra, out = big.out('err')) => runExport(['--config', big.cfgPath, '--project', project, '--out', out, ...extra]);
  const fieldOut = big.out('err');
  const unknownField = await run('classic', ['--fields', 'record_id,nosuch_field'], fieldOut);
  assert.equal(unknownField.code, 1, unknownField.stderr);
  assert.ok(unknownField.stderr.includes('The following values in the parameter "fields" are not valid: \'nosuch_field\''), unknownField.stderr);
  // A selection REDCap refuses leaves nothing behind (no partial file, no
  // checkpoint: the next run in that directory is a fresh one).
  assert.deepEqual(listOut(fieldOut), { files: [], hidden: [] }, 'nothing left after a refused selection');
  const fixed = await run('classic', ['--fields', 'record_id,dob', '--records', '1,2,3'], fieldOut);
  assert.equal(fixed.code, 0, fixed.stderr);
  assert.doesNotMatch(fixed.stderr, /discarded|continued/, fixed.stderr);
  const unknownForm = await run('classic', ['--forms', 'nosuch_form']);
  assert.equal(unknownForm.code, 1, unknownForm.stderr);
  assert.ok(unknownForm.stderr.includes('The following values in the parameter "forms" are not valid: \'nosuch_form\''), unknownForm.stderr);
  const unknownEvent = await run('long', ['--events', 'nosuch_arm_1']);
  assert.equal(unknownEvent.code, 1, unknownEvent.stderr);
  assert.ok(unknownEvent.stderr.includes('The following values in the parameter "events" are not valid: \'nosuch_arm_1\''), unknownEvent.stderr);

  const dir = tempDir('frb-export-badtoken-');
  try {
    const cfg = writeExportConfig(dir, [{ name: 'classic', url: big.srv.url, token: BAD_TOKEN }]);
    const out = join(dir, 'out');
    const bad = await runExport(['--config', cfg, '--project', 'classic', '--out', out]);
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, /You do not have permissions to use the API/);
    assert.ok(!existsSync(join(out, 'records.csv')));
    assert.ok(!bad.stderr.includes(BAD_TOKEN), 'the token is not printed');
  } finally { cleanup(dir); }

  const unknownProject = await run('no_such_project', []);
  assert.equal(unknownProject.code, 2, unknownProject.stderr);
  assert.match(unknownProject.stderr, /no_such_project/);
  const s0 = await big.srv.control('stats');
  for (const extra of [['--format', 'xml'], ['--batch-size', '0'], ['--batch-size', 'ten'], ['--no-such-option']]) {
    const r = await run('classic', extra);
    assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stderr}`);
  }
  const noProject = await runExport(['--config', big.cfgPath]);
  assert.equal(noProject.code, 2, noProject.stderr);
  const s1 = await big.srv.control('stats');
  assert.equal(s1.requests.total, s0.requests.total, 'a usage error makes no request');
});

test('the default output directory is ./export-<project>; --quiet prints nothing', async () => {
  const cwd = tempDir('frb-export-cwd-');
  try {
    const ids = ['1', '2', '3', '10', '11'];
    const r = await runExport(['--config', big.cfgPath, '--project', 'classic', '--format', 'csv', '--records', ids.join(','), '--quiet'], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'nothing on stderr with --quiet');
    assertFileIs(join(cwd, 'export-classic', 'records.csv'), await big.ref('classic', { format: 'csv', records: ids }), 'records.csv');
  } finally { cleanup(cwd); }
});

/* ------------------------------------------------------------ worlds of their own */

test('kill -9 and Ctrl-C at several points, then rerun: the identical file; the rerun continues; no final file while interrupted', async (t) => {
  const N = 3000, B = 50, full = 1 + Math.ceil(N / B);
  // Record names that look like identifiers: the checkpoint must not hold them in clear.
  const w = await makeWorld({ classic: N, classicOpts: { seed: 31, name: (i) => `ZQ${String(i).padStart(6, '0')}` } });
  t.after(() => w.stop());
  const slow = () => w.srv.control('faults', { content: 'record', action: 'export', kind: 'delay', ms: 30, times: 100000 });
  const killAfter = async (args, n, signal = 'SIGKILL') => {
    const s0 = (await w.srv.control('stats')).exports.requests;
    let proc, done = false;
    const r = await runExport(args, {
      onSpawn: (p) => {
        proc = p;
        p.on('exit', () => { done = true; });
        whenStats(w, (s) => s.exports.requests - s0 >= n, () => proc.kill(signal), { isDone: () => done });
      },
    });
    const s1 = (await w.srv.control('stats')).exports.requests;
    return { ...r, recordExports: s1 - s0 };
  };

  // (n record exports, signal): Ctrl-C is SIGINT, the default action.
  for (const [format, kills] of [['csv', [[2, 'SIGKILL'], [9, 'SIGINT'], [25, 'SIGKILL']]], ['json', [[12, 'SIGINT']]], ['ndjson', [[20, 'SIGKILL']]]]) {
    const out = w.out(format);
    const args = argsFor(w, 'classic', { format, batch: B }, out);
    const name = `records.${EXT[format]}`;
    let spent = 0;
    await slow();
    for (const [n, signal] of kills) {
      const k = await killAfter(args, n, signal);
      assert.equal(k.signal, signal, `${format}: the run was stopped by ${signal} after ${n} record exports (exit ${k.code}): ${k.stderr}`);
      spent += k.recordExports;
      const l = listOut(out);
      assert.ok(!l.files.includes(name), `${format}: no ${name} while interrupted`);
      if (n >= 4) assert.ok(l.hidden.includes(`.${name}.partial`), `${format}: .${name}.partial exists after ${n} exports (${l.hidden})`);
    }
    for (const f of readdirSync(w.dir).filter((x) => x.startsWith('bridge.db'))) {
      assert.equal(readFileSync(join(w.dir, f)).includes(Buffer.from('ZQ000')), false, `a record name in clear in ${f}`);
    }
    await w.srv.control('faults', undefined, 'DELETE');

    if (format === 'csv') {
      // Another selection meanwhile, in another directory, starts over (its
      // own full plan), is right, and leaves the interrupted one alone.
      const other = await exportAndCheck(w, 'classic', { format: 'csv', forms: ['vitals'], fields: ['record_id'], batch: B });
      assert.equal(other.byContent.record, full, 'a different selection does not reuse the interrupted one');
    }
    const m = await measured(w, () => runExport(args));
    assert.equal(m.result.code, 0, m.result.stderr);
    spent += m.recordExports;
    assert.ok(m.recordExports < full, `${format}: the rerun continued (${m.recordExports} record exports, a full one is ${full})`);
    // Nothing redone beyond the batch in flight at each kill (and an id list per run).
    assert.ok(spent <= full + 2 * kills.length + kills.length + 1, `${format}: ${spent} record exports over ${kills.length + 1} runs, full ${full}`);
    assert.match(m.result.stderr, /continued: \d+ of the records in this run/, 'the summary says the run continued');
    const refJson = await w.ref('classic', { format: 'json' });
    if (format === 'csv') assertFileIs(join(out, name), await w.ref('classic', { format: 'csv' }), 'records.csv after the kills');
    else if (format === 'json') assertFileIs(join(out, name), refJson, 'records.json after the kills');
    else assertNdjson(join(out, name), refJson, 'records.ndjson after the kills');
    assert.deepEqual(listOut(out).hidden, [], `${format}: no .partial left`);
    const sum = summaryLines(m.result.stderr);
    assert.equal(sum.length, 1, m.result.stderr);
    assert.equal(Number(SUMMARY_RE.exec(sum[0])[1]), N, 'the summary counts every record of the export');
  }
});

test('out of memory: a batch REDCap cannot hold is split; the result is identical', async (t) => {
  const w = await makeWorld({ classic: 1000, classicOpts: { seed: 41 } });
  t.after(() => w.stop());
  for (const format of ['csv', 'json']) await references(w, 'classic', { format });
  // (a) three out-of-memory answers after the id list.
  await w.srv.control('faults', [
    { content: 'record', action: 'export', kind: 'delay', ms: 0, times: 1 },
    { content: 'record', action: 'export', kind: 'out-of-memory', times: 3 },
  ]);
  const a = await exportAndCheck(w, 'classic', { format: 'csv', batch: 100 }, { exactRequests: false });
  assert.equal(a.byStatus['500'], 3, JSON.stringify(a.byStatus));
  // Each split costs the refused request and one more piece.
  assert.ok(a.byContent.record >= 1 + 10 + 2 * 3, `splits: ${a.byContent.record} record exports`);

  // (b) REDCap holds at most 30 records per export (set once the id list is answered): every batch of 100 splits.
  for (const format of ['json', 'csv']) {
    await w.srv.control('config', { maxExportRecords: 0 });
    await w.srv.control('faults', HOLD_FIRST_BATCH(500));
    const s0 = (await w.srv.control('stats')).exports.requests;
    const stop = whenStats(w, (s) => s.exports.requests - s0 >= 1, () => w.srv.control('config', { maxExportRecords: 30 }).catch(() => {}));
    let b;
    try {
      b = await exportAndCheck(w, 'classic', { format, batch: 100 }, { exactRequests: false });
    } finally {
      stop();
    }
    assert.equal((await w.srv.control('stats')).config.maxExportRecords, 30, 'the limit was on during the export');
    assert.ok(b.byStatus['500'] >= 10, `every batch of 100 got the out-of-memory answer first: ${JSON.stringify(b.byStatus)}`);
  }
  await w.srv.control('config', { maxExportRecords: 0 });
});

test('network errors, 5xx and REDCap offline are retried; the result is identical', async (t) => {
  const w = await makeWorld({ classic: 500, classicOpts: { seed: 43 } });
  t.after(() => w.stop());
  for (const format of ['csv', 'json']) await references(w, 'classic', { format });
  await w.srv.control('faults', [
    { content: 'record', action: 'export', kind: 'delay', ms: 0, times: 1 },
    { content: 'record', action: 'export', kind: 'drop', times: 1 },
    { content: 'record', action: 'export', kind: 'status', status: 503, times: 1 },
    { content: 'record', action: 'export', kind: 'truncate', times: 1 },
    { content: 'record', action: 'export', kind: 'status', status: 502, times: 1 },
  ]);
  const m = await exportAndCheck(w, 'classic', { format: 'json', batch: 50 }, { exactRequests: false });
  assert.equal(m.stats.faults.injected, 5);
  // The project offline at the start, back online once two requests got the offline answer.
  await w.srv.control('offline', { project: 'classic', offline: true });
  const seen = (await w.srv.control('stats')).requests.byStatus['400'] ?? 0;
  const online = () => w.srv.control('offline', { project: 'classic', offline: false }).catch(() => {});
  const stop = whenStats(w, (s) => (s.requests.byStatus['400'] ?? 0) >= seen + 2, online, { every: 20 });
  const fallback = setTimeout(online, 5000);
  let o;
  try {
    o = await exportAndCheck(w, 'classic', { format: 'csv', batch: 50 }, { exactRequests: false });
  } finally {
    stop();
    clearTimeout(fallback);
  }
  assert.ok(o.byStatus['400'] >= 2, `the offline answers were retried: ${JSON.stringify(o.byStatus)}`);
});

test('--since exports exactly the records created or changed after that time', async (t) => {
  const N = 300;
  const w = await makeWorld({ classic: N, classicOpts: { seed: 51 } });
  t.after(() => w.stop());
  await exportAndCheck(w, 'classic', { format: 'csv', batch: 40 });
  // The emulator's clock runs ahead: the edits get later change times than the loaded data.
  const since = (await w.srv.control('clock', { offset_ms: 5000 })).now;
  await w.srv.control('clock', { offset_ms: 10000 });
  const edit = async (rows) => {
    const r = await api(w.srv.url, { token: CLASSIC_TOKEN, content: 'record', format: 'json', data: JSON.stringify(rows) });
    assert.equal(r.status, 200, r.text);
  };
  const dump = await w.srv.records('classic');
  const base = (id) => dump.rows.find((r) => r.record_id === id && !r.redcap_repeat_instrument);
  await edit([{ record_id: '7', hr_baseline: '299' }, { record_id: '150', sex: base('150').sex === '1' ? '2' : '1' }]);
  await edit([{ record_id: '42', redcap_repeat_instrument: 'labs', redcap_repeat_instance: '1', lab_name: 'Changed, "edited"' }]);
  await edit([{ record_id: '99', redcap_repeat_instrument: 'vitals', redcap_repeat_instance: '9', vs_loinc: '8867-4', vs_value: '61' }]);
  await edit([{ record_id: String(N + 1), dob: '2001-02-03' }]);
  // An import that changes nothing is not a modification.
  await edit([{ record_id: '120', sex: base('120').sex, dob: base('120').dob }]);
  const edited = ['7', '42', '99', '150', String(N + 1)];

  for (const format of ['csv', 'json', 'ndjson']) {
    const m = await exportAndCheck(w, 'classic', { format, since, batch: 2 });
    assert.equal(m.records, edited.length);
  }
  const got = JSON.parse(await w.ref('classic', { format: 'json', since }));
  assert.deepEqual([...new Set(got.map((r) => r.record_id))], edited, 'the reference itself holds exactly the edited records');
});

test('an empty selection (--since after the last change) still gives REDCap\'s answer: the csv header, "[]"', async (t) => {
  const w = await makeWorld({ classic: 20, classicOpts: { seed: 53 } });
  t.after(() => w.stop());
  const since = (await w.srv.control('clock', { offset_ms: 5000 })).now;
  for (const format of ['csv', 'json', 'ndjson']) {
    const m = await exportAndCheck(w, 'classic', { format, since }, { exactRequests: false });
    assert.equal(m.records, 0);
  }
  assert.match(await w.ref('classic', { format: 'csv', since }), /^record_id,redcap_repeat_instrument,.*\n$/);
});

test('an id that never comes back (deleted after the id list) fails the export, naming it', async (t) => {
  const names = (i) => `S-${String(i).padStart(4, '0')}`;
  const w = await makeWorld({ classic: 40, classicOpts: { seed: 61, name: names } });
  t.after(() => w.stop());
  await w.srv.control('faults', HOLD_FIRST_BATCH(400));
  const s0 = (await w.srv.control('stats')).exports.requests;
  let deleted = null;
  const stop = whenStats(w, (s) => s.exports.requests - s0 >= 1, () => {
    deleted = api(w.srv.url, { token: DELETE_TOKEN, content: 'record', action: 'delete', format: 'json', records: ['S-0017'] });
  });
  const out = w.out();
  const r = await runExport(argsFor(w, 'classic', { format: 'json', batch: 10 }, out));
  stop();
  assert.ok(deleted, 'the record was deleted during the export');
  assert.equal((await deleted).status, 200);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /1 records did not come back from REDCap: S-0017 .*a rerun starts over/);
  assert.ok(!existsSync(join(out, 'records.json')), 'no records.json for an incomplete export');
  assert.deepEqual(listOut(out).hidden, [], 'no partial file kept for an export that cannot be completed');
  // The rerun lists the ids anew: complete, without the deleted record.
  const again = await exportAndCheck(w, 'classic', { format: 'json', batch: 10 }, { out });
  assert.equal(again.records, 39);
  assert.doesNotMatch(readFileSync(join(out, 'records.json'), 'utf8'), /S-0017/);
});

test('the request-rate cap holds across processes: two exports at once, max_requests_per_minute 5, 9 requests -> never more than 5 in a minute', async (t) => {
  // One minute of waiting is the least a sliding 60-s window allows. The
  // emulator bans above 6 a minute (one of slack: it times a request's
  // arrival, the bridge its start). The two processes share the window
  // through a file beside the store: without it they would send 9 at once.
  const w = await makeWorld({ classic: 20, classicOpts: { seed: 71 }, extra: ['--rate-limit', '6', '--verbose'], cfg: { max_requests_per_minute: 5 } });
  t.after(() => w.stop());
  const selA = { format: 'csv', batch: 10 };                        // project, metadata, ids, 2 batches
  const selB = { format: 'json', batch: 10, records: ['1', '2', '3'] }; // project, metadata, ids, 1 batch
  const refA = await references(w, 'classic', selA), refB = await references(w, 'classic', selB);
  const times = [];
  w.srv.proc.stderr.on('data', (d) => {
    for (const line of String(d).split('\n')) {
      const m = /^(\S+) POST \/api\/ /.exec(line);
      if (m) times.push(Date.parse(m[1]));
    }
  });
  const outA = w.out('a'), outB = w.out('b');
  const m = await measured(w, () => Promise.all([
    runExport(argsFor(w, 'classic', selA, outA)), runExport(argsFor(w, 'classic', selB, outB)),
  ]));
  const [a, b] = m.result;
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  assertFileIs(join(outA, 'records.csv'), refA.refCsv, 'A');
  assertFileIs(join(outB, 'records.json'), refB.refJson, 'B');
  assert.equal(m.total, 9);
  assert.equal(m.stats.bans, 0, 'never banned');
  // The emulator logs a request when its answer is sent (ms resolution): the
  // run's requests are answered after the bridges start (t0) and before the
  // emulator answers the stats request that follows them (tStats).
  const run = times.filter((x) => x >= m.t0 && x <= m.tStats).sort((x, y) => x - y);
  assert.equal(run.length, 9, `the emulator logged ${run.length} API requests during the exports`);
  for (let i = 0; i + 5 < run.length; i++) {
    assert.ok(run[i + 5] - run[i] >= 59000, `requests ${i + 1} and ${i + 6} only ${run[i + 5] - run[i]} ms apart`);
  }
  assert.ok(m.t1 - m.t0 >= 59000, `the exports waited (${m.t1 - m.t0} ms)`);
});

/* Kills `export args` once it has made n record exports (after s0); resolves like runExport. */
async function killAfterExports(w, args, n, signal = 'SIGKILL') {
  const s0 = (await w.srv.control('stats')).exports.requests;
  let proc, done = false;
  return runExport(args, {
    onSpawn: (p) => {
      proc = p;
      p.on('exit', () => { done = true; });
      whenStats(w, (s) => s.exports.requests - s0 >= n, () => proc.kill(signal), { isDone: () => done });
    },
  });
}

test('one directory, other options: the unfinished export is discarded, never mixed; --batch-size may change; --restart', async (t) => {
  const N = 400, B = 10, full = 1 + Math.ceil(N / B);
  const w = await makeWorld({ classic: N, classicOpts: { seed: 33 } });
  t.after(() => w.stop());
  for (const format of ['csv', 'ndjson']) {
    const out = w.out(`mix-${format}`);
    const selA = { format, batch: B }, selB = { format, batch: B, label: true };
    const refA = await references(w, 'classic', selA);
    await references(w, 'classic', selB);
    await w.srv.control('faults', { content: 'record', action: 'export', kind: 'delay', ms: 30, times: 100000 });
    const a1 = await killAfterExports(w, argsFor(w, 'classic', selA, out), 6);
    assert.equal(a1.signal, 'SIGKILL', a1.stderr);
    const b1 = await killAfterExports(w, argsFor(w, 'classic', selB, out), 16);
    assert.equal(b1.signal, 'SIGKILL', b1.stderr);
    assert.match(b1.stderr, /unfinished \w+ export in .* is discarded \(it was started with other options\); starting over/, b1.stderr);
    await w.srv.control('faults', undefined, 'DELETE');
    // A again: B's unfinished bytes are not continued; A starts over, whole.
    const a2 = await exportAndCheck(w, 'classic', selA, { out });
    assert.equal(a2.byContent.record, full, `${format}: the rerun of A started over`);
    assert.match(a2.result.stderr, /discarded \(it was started with other options\)/);
    if (format === 'ndjson') assertNdjson(join(out, 'records.ndjson'), refA.refJson, 'A after B');
  }

  // Another --batch-size continues the same selection; --restart starts over.
  const out = w.out('batch');
  await references(w, 'classic', { format: 'csv' });
  await w.srv.control('faults', { content: 'record', action: 'export', kind: 'delay', ms: 30, times: 100000 });
  const k = await killAfterExports(w, argsFor(w, 'classic', { format: 'csv', batch: B }, out), 11);
  assert.equal(k.signal, 'SIGKILL', k.stderr);
  await w.srv.control('faults', undefined, 'DELETE');
  const c = await exportAndCheck(w, 'classic', { format: 'csv', batch: 7 }, { out, exactRequests: false });
  assert.ok(c.byContent.record < 1 + Math.ceil(N / 7), `batch 7 continued: ${c.byContent.record} record exports`);
  assert.match(c.result.stderr, /continued: \d+ of the records in this run/);

  await w.srv.control('faults', { content: 'record', action: 'export', kind: 'delay', ms: 30, times: 100000 });
  const k2 = await killAfterExports(w, argsFor(w, 'classic', { format: 'csv', batch: B }, out), 11);
  assert.equal(k2.signal, 'SIGKILL', k2.stderr);
  await w.srv.control('faults', undefined, 'DELETE');
  const r = await exportAndCheck(w, 'classic', { format: 'csv', batch: B }, { out, extraArgs: ['--restart'] });
  assert.equal(r.byContent.record, full, '--restart exports everything again');
  assert.match(r.result.stderr, /discarded \(--restart\)/);
});

test('killed while reading the project and dictionary, then rerun: identical', async (t) => {
  const w = await makeWorld({ classic: 120, classicOpts: { seed: 35 } });
  t.after(() => w.stop());
  await references(w, 'classic', { format: 'json' });
  const out = w.out();
  for (const content of ['project', 'metadata']) {
    await w.srv.control('faults', { content, kind: 'delay', ms: 3000, times: 1 });
    let proc, done = false;
    // The answer is held 3 s: the kill at 0.6 s lands while the bridge waits for it.
    const r = await runExport(argsFor(w, 'classic', { format: 'json', batch: 25 }, out), {
      onSpawn: (p) => {
        proc = p;
        p.on('exit', () => { done = true; });
        setTimeout(() => { if (!done) proc.kill('SIGKILL'); }, 600);
      },
    });
    assert.equal(r.signal, 'SIGKILL', `${content}: ${r.stderr}`);
    assert.ok(!existsSync(join(out, 'records.json')));
    await w.srv.control('faults', undefined, 'DELETE');
  }
  await exportAndCheck(w, 'classic', { format: 'json', batch: 25 }, { out });
});

test('a dictionary changed between an interrupted run and its rerun: the rerun starts over against the new one', async (t) => {
  const N = 300, B = 10;
  const w = await makeWorld({ classic: N, classicOpts: { seed: 37 } });
  t.after(() => w.stop());
  const out = w.out();
  await w.srv.control('faults', { content: 'record', action: 'export', kind: 'delay', ms: 30, times: 100000 });
  const k = await killAfterExports(w, argsFor(w, 'classic', { format: 'csv', batch: B }, out), 8);
  assert.equal(k.signal, 'SIGKILL', k.stderr);
  await w.srv.control('faults', undefined, 'DELETE');
  // The project gets one more field (in its last form) and its data back.
  const dict = readFileSync(join(exampleDir, 'dictionary.csv'), 'utf8');
  await w.srv.control('projects', {
    name: 'classic', title: 'Export test / classic, changed',
    dictionary_csv: dict + 'allergy_note,allergies,,text,"Allergy note",,,,,,,,,,,,,\n', repeating: CLASSIC_REPEATING,
  });
  await importRows(w.srv, CLASSIC_TOKEN, classicRows(N, { seed: 37 }).map((r) => (r.redcap_repeat_instrument === 'allergies' ? { ...r, allergy_note: 'seen "again"' } : r)));
  w.forget();
  const m = await exportAndCheck(w, 'classic', { format: 'csv', batch: B }, { out });
  assert.match(m.result.stderr, /discarded \(the project's data dictionary, events or form-event mapping changed since\)/);
  assert.match(readFileSync(join(out, 'records.csv'), 'utf8'), /allergy_note/);
});

test('disk full: the export fails naming the file; once there is room the rerun completes', async (t) => {
  const w = await makeWorld({ classic: 200, classicOpts: { seed: 39 } });
  t.after(() => w.stop());
  await references(w, 'classic', { format: 'csv' });
  const out = w.out();
  mkdirSync(out, { recursive: true });
  // Every write to /dev/full fails with ENOSPC.
  symlinkSync('/dev/full', join(out, '.records.csv.partial'));
  const r = await runExport(argsFor(w, 'classic', { format: 'csv', batch: 50 }, out));
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /writing .*\.records\.csv\.partial: No space left on device/);
  assert.ok(!existsSync(join(out, 'records.csv')));
  unlinkSync(join(out, '.records.csv.partial'));
  await exportAndCheck(w, 'classic', { format: 'csv', batch: 50 }, { out, exactRequests: false });
});

test('on a terminal: a progress bar (records done / total, rate, ETA), then the summary line', async (t) => {
  const w = await makeWorld({ classic: 300, classicOpts: { seed: 45 } });
  t.after(() => w.stop());
  await w.srv.control('faults', { content: 'record', action: 'export', kind: 'delay', ms: 40, times: 100000 });
  const out = w.out();
  const wrapper = (process.env.BRIDGE_WRAPPER || '').split(' ').filter(Boolean);
  const q = (a) => `'${String(a).replace(/'/g, `'\\''`)}'`;
  const cmd = [...wrapper, bridgeBin, 'export', ...argsFor(w, 'classic', { format: 'csv', batch: 10 }, out)].map(q).join(' ');
  // script(1) gives the command a pseudo-terminal; its output is what the terminal shows.
  const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const screen = r.stdout;
  const bars = [...screen.matchAll(/\r?classic \[([#.]{30})\] (\d+)\/300 records  (\d+)\/s  ETA (\d+) s/g)];
  assert.ok(bars.length >= 3, `progress lines drawn: ${bars.length}\n${JSON.stringify(screen.slice(0, 600))}`);
  const done = bars.map((b) => Number(b[2]));
  assert.deepEqual([...done].sort((a, b) => a - b), done, 'the count only grows');
  assert.ok(done.every((d) => d > 0 && d <= 300));
  assert.match(screen, /classic \[#{30}\] 300\/300 records  \d+\/s  done/);
  assert.match(screen, /exported 300 records \(\d+ rows\) in 33 requests/);
  await w.srv.control('faults', undefined, 'DELETE');
});

test('a ban (429) stops the export, is recorded for the whole server, and holds until push-resume; then the export continues', async (t) => {
  const w = await makeWorld({ classic: 100, classicOpts: { seed: 47 } });
  t.after(() => w.stop());
  const sel = { format: 'csv', batch: 10 };
  await references(w, 'classic', sel);
  const out = w.out();
  // REDCap's limit is 5 a minute here and the config allows 600: the 6th request is banned.
  await w.srv.control('reset-ban', {});
  await w.srv.control('config', { rateLimit: 5 });
  const r = await runExport(argsFor(w, 'classic', sel, out));
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /REDCap banned this IP address \(HTTP 429\); ALL TRAFFIC TO \S+ STOPPED until .*push-resume --project classic/);
  assert.equal((await w.srv.control('stats')).bans, 1);
  await w.srv.control('config', { rateLimit: 0 });
  await w.srv.control('reset-ban', {});
  // Recorded for every project on that server: no request at all until an operator clears it.
  const s0 = (await w.srv.control('stats')).requests.total;
  for (const project of ['classic', 'long']) {
    const again = await runExport(argsFor(w, project, sel, w.out('halted')));
    assert.equal(again.code, 1, again.stderr);
    assert.match(again.stderr, new RegExp(`${project}: halted: .*push-resume --project ${project}`));
  }
  assert.equal((await w.srv.control('stats')).requests.total, s0, 'a halted export sends nothing');
  const resume = spawnSync(bridgeBin, ['push-resume', '--config', w.cfgPath, '--project', 'classic'], { encoding: 'utf8' });
  assert.equal(resume.status, 0, resume.stderr);
  const m = await exportAndCheck(w, 'classic', sel, { out, exactRequests: false });
  assert.match(m.result.stderr, /continued: \d+ of the records in this run/);
});
