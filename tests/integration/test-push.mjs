// FHIR server -> bridge -> REDCap emulator, with the example study
// (conf/example-project). The records REDCap ends up with are compared,
// field by field and instance by instance, with an independent computation
// from the same generated FHIR data (expected.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  startFhirServer, startRedcapEmulator, writeExampleConfig, runBridge, syncOnce, status, tempDir, cleanup,
  sourceRoot, bridgeBin, exampleDir, sleep, EXAMPLE_TOKEN, generateData,
} from './lib.mjs';
import { expectedProject, compareProject } from './expected.mjs';

const MRN_SYSTEM = 'urn:oid:1.2.36.146.595.217.0.1';


// One world: FHIR server loaded with a data set, an emulator, a config.
async function world(t, { genArgs, mapping = 'mapping.json', emulatorArgs, cfg = {} }) {
  const dir = tempDir('frb-push-');
  const data = await generateData(dir, genArgs);
  const fhir = await startFhirServer(['--load', data.file]);
  const redcap = await startRedcapEmulator(emulatorArgs);
  if (mapping === 'mapping-hmac.json')
    writeFileSync(join(dir, 'study-id.key'), 'an example study key of at least 32 bytes, for tests only\n', { mode: 0o600 });
  const cfgPath = writeExampleConfig(dir, fhir.base, redcap.url, { mapping, ...cfg });
  t.after(async () => {
    await fhir.stop();
    await redcap.stop();
    cleanup(dir);
  });
  return { dir, data, fhir, redcap, cfgPath };
}

function expectedFor(w, extra = {}) {
  return expectedProject(w.data.resources, { recordId: 'mrn', mrnSystem: MRN_SYSTEM, siteTimeZone: 'UTC', ...extra });
}

async function assertMatches(w, expected) {
  const dump = await w.redcap.records();
  const diffs = compareProject(expected, dump);
  assert.deepEqual(diffs.slice(0, 20), [], `REDCap differs from the expected records (${diffs.length} differences)`);
  return dump;
}

function pushOf(r, project = 'example') {
  assert.ok(r.result, `no JSON result; exit ${r.code}; stderr:\n${r.stderr}`);
  return r.result.push.projects[project];
}

test('the example study lands in REDCap exactly as computed independently; a rerun sends nothing', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '30', '--seed', '11'] });
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 0, r.stderr);
  const p = pushOf(r);
  assert.equal(p.ok, true);
  assert.ok(p.sent > 30, `rows sent: ${p.sent}`);
  const expected = expectedFor(w);
  const before = await assertMatches(w, expected);

  const stats0 = await w.redcap.control('stats');
  const r2 = await syncOnce(w.cfgPath);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(pushOf(r2).sent, 0);
  assert.equal(pushOf(r2).requests, 0, 'a cycle with nothing to send makes no REDCap request');
  const stats1 = await w.redcap.control('stats');
  assert.deepEqual(stats1.records, stats0.records);
  assert.deepEqual(await w.redcap.records(), before);

  const st = await status(w.cfgPath);
  assert.equal(st.outbox.example.pending, 0);
  assert.equal(st.outbox.example.held, 0);
  assert.ok(st.outbox.example.done >= p.sent);
});

test('an updated Observation updates its instance, no new instance', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '8', '--seed', '12'] });
  assert.equal((await syncOnce(w.cfgPath)).code, 0);
  // A lab that no window field reads (creatinine feeds creat_max_48h: its
  // change would update the demographics row too).
  const obs = w.data.resources.find((x) => x.resourceType === 'Observation' && x.valueQuantity &&
    x.category?.[0]?.coding?.[0]?.code === 'laboratory' && x.code.coding[0].code !== '2160-0');
  const res = await w.fhir.fhir(`Observation/${obs.id}`);
  const changed = { ...res.body, valueQuantity: { ...res.body.valueQuantity, value: 777.5 } };
  const put = await w.fhir.fhir(`Observation/${obs.id}`, {
    method: 'PUT', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(changed),
  });
  assert.equal(put.status, 200);
  await sleep(1100); // past the one-second watermark overlap
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(pushOf(r).sent, 1, 'exactly the one changed row is sent');
  const idx = w.data.resources.findIndex((x) => x.id === obs.id);
  w.data.resources[idx] = changed;
  await assertMatches(w, expectedFor(w));
});

// Run a sync and kill -9 it when trigger(proc, stderrSoFar) says so;
// resolves to the run's result.
function syncKilledWhen(cfgPath, trigger) {
  return runBridge(['sync', '--once', '--log-level', 'debug', '--config', cfgPath], {
    onSpawn: (proc) => {
      let err = '';
      let done = false;
      const fire = () => { if (!done) { done = true; proc.kill('SIGKILL'); } };
      proc.stderr.on('data', (d) => { err += d; trigger(err, fire); });
      const poll = setInterval(() => { if (done || proc.exitCode !== null) clearInterval(poll); else trigger(err, fire); }, 5);
    },
  });
}

test('kill -9 during curation and during the push, then rerun: nothing lost, no duplicate instance', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '150', '--seed', '13'], cfg: { batch_size: 10 } });
  const total = w.data.resources.filter((x) => x.resourceType === 'Patient').length;
  // 1: while the patients are being curated: right after the first batch
  // of 100 committed, before the last 50 did.
  const k1 = await syncKilledWhen(w.cfgPath, (err, fire) => { if (/a batch of \d+ patients committed/.test(err)) fire(); });
  assert.equal(k1.signal, 'SIGKILL', 'the first run was killed before it ended');
  const mid = await status(w.cfgPath);
  assert.ok(mid.curation.waiting >= 1 && mid.curation.waiting <= total - 1,
    `the kill landed mid-curation: ${mid.curation.waiting} of ${total} patients still waiting`);
  assert.equal(mid.outbox.example.done, 0, 'nothing was pushed before the kill');
  // 2 and 3: in the middle of the push, after n imports reached REDCap.
  for (const n of [5, 40]) {
    const start = (await w.redcap.control('stats')).imports.requests;
    let polling = false;
    const k = await syncKilledWhen(w.cfgPath, (err, fire) => {
      if (polling) return;
      polling = true;
      w.redcap.control('stats').then((s) => { if (s.imports.requests - start >= n) fire(); polling = false; }, () => { polling = false; });
    });
    assert.equal(k.signal, 'SIGKILL', `run killed after ${n} imports`);
  }
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 0, r.stderr);
  await assertMatches(w, expectedFor(w));
  // The rerun after the kills re-sent at most the rows whose import was in flight.
  const st = await status(w.cfgPath);
  assert.equal(st.outbox.example.pending, 0);
});

test('values REDCap would refuse are held back with its messages; the rest lands', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '15', '--seed', '14', '--bad-values', '3'] });
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 0, `held rows do not fail the sync\n${r.stderr}`);
  assert.match(r.stderr, /held back/);
  const expected = expectedFor(w);
  assert.ok(expected.heldBack.length >= 3, 'the data set has bad values');
  await assertMatches(w, expected);
  const st = await status(w.cfgPath);
  assert.equal(st.outbox.example.held, expected.heldBack.length);
  const msgs = st.outbox.example.held_rows.flatMap((h) => h.reasons.map((x) => x.message));
  assert.ok(msgs.every((m) => /Invalid date(time)? format/.test(m)), JSON.stringify(msgs));
});

test('REDCap offline and 5xx answers are retried; the data lands', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '6', '--seed', '15'] });
  await w.redcap.control('faults', { kind: 'status', status: 503, times: 2, content: 'record' });
  await w.redcap.control('offline', { project: 'example', offline: true });
  const run = syncOnce(w.cfgPath);
  // Back online once REDCap has answered "offline" at least once.
  let s;
  for (let i = 0; i < 500; i++) {
    s = await w.redcap.control('stats');
    if ((s.requests.byStatus['400'] ?? 0) >= 1) break;
    await sleep(10);
  }
  await w.redcap.control('offline', { project: 'example', offline: false });
  const r = await run;
  assert.equal(r.code, 0, r.stderr);
  const after = await w.redcap.control('stats');
  assert.ok(after.requests.byStatus['400'] >= 1, `REDCap answered "offline": ${JSON.stringify(after.requests.byStatus)}`);
  assert.ok(after.requests.byStatus['503'] >= 2, `REDCap answered 503 twice: ${JSON.stringify(after.requests.byStatus)}`);
  assert.equal(after.faults.injected, 2);
  assert.ok(pushOf(r).retries >= 3, JSON.stringify(pushOf(r)));
  await assertMatches(w, expectedFor(w));
});

test('imports REDCap applied but whose answers were lost (cut mid-answer) are sent again: no second record or instance', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '6', '--seed', '16'], cfg: { batch_size: 25 } });
  // The emulator applies each of these imports, then cuts its answer in half.
  await w.redcap.control('faults', { content: 'record', action: 'import', kind: 'truncate', times: 3 });
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 0, r.stderr);
  const s = await w.redcap.control('stats');
  assert.equal(s.faults.injected, 3, 'three answers were lost');
  assert.ok(pushOf(r).retries >= 3, JSON.stringify(pushOf(r)));
  // Every instance once, every value as computed: the resent rows overwrote themselves.
  await assertMatches(w, expectedFor(w));
  const again = await syncOnce(w.cfgPath);
  assert.equal(pushOf(again).sent, 0, 'nothing left to send');
});

test('a ban stops all traffic to that REDCap until push-resume', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '10', '--seed', '16'], cfg: { batch_size: 5 } });
  await w.redcap.control('config', { rateLimit: 4 });
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /banned/i);
  const s0 = await w.redcap.control('stats');
  const r2 = await syncOnce(w.cfgPath);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /halted/);
  const s1 = await w.redcap.control('stats');
  assert.equal(s1.requests.total, s0.requests.total, 'no request after the ban');
  const st = await status(w.cfgPath);
  assert.match(st.outbox.example.halted, /banned/);
  await w.redcap.control('reset-ban', {});
  await w.redcap.control('config', { rateLimit: 600 });
  const rr = await runBridge(['push-resume', '--config', w.cfgPath, '--project', 'example']);
  assert.equal(rr.code, 0, rr.stderr);
  const r3 = await syncOnce(w.cfgPath);
  assert.equal(r3.code, 0, r3.stderr);
  await assertMatches(w, expectedFor(w));
});

test('a patient whose MRN two Patient resources carry is refused, never guessed', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '10', '--seed', '17', '--duplicate-mrn', '1'] });
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 0, r.stderr);
  const expected = expectedFor(w);
  assert.ok(expected.refused.length >= 2);
  await assertMatches(w, expected);
  const st = await status(w.cfgPath);
  const refused = st.outbox.example.refused.map((x) => x.patient).sort();
  assert.deepEqual(refused, [...expected.refused].sort());
  assert.ok(st.outbox.example.refused.every((x) => /ambiguous MRN/.test(x.reason)));
});

test('HMAC study ids: records are named by the study id and no MRN reaches REDCap', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '6', '--seed', '18'], mapping: 'mapping-hmac.json' });
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 0, r.stderr);
  const key = readFileSync(join(w.dir, 'study-id.key'));
  const m = JSON.parse(readFileSync(join(exampleDir, 'mapping-hmac.json'), 'utf8'));
  const expected = expectedFor(w, {
    recordId: { hmacKey: key.subarray(0, key.length - 1), prefix: m.record_id.prefix ?? '', hexDigits: m.record_id.hex_digits ?? 16 },
  });
  const dump = await assertMatches(w, expected);
  const text = JSON.stringify(dump);
  assert.doesNotMatch(text, /MRN\d{8}/, 'an MRN reached REDCap');
});

test('explain names the resource, version and rule behind a value', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '3', '--seed', '19'] });
  assert.equal((await syncOnce(w.cfgPath)).code, 0);
  const pat = w.data.resources.find((x) => x.resourceType === 'Patient');
  const mrn = pat.identifier.find((i) => i.system === MRN_SYSTEM).value;
  const r = await runBridge(['explain', '--config', w.cfgPath, '--project', 'example', '--record', mrn, '--field', 'dob', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const e = JSON.parse(r.stdout);
  assert.equal(e.length, 1);
  assert.equal(e[0].resource_type, 'Patient');
  assert.equal(e[0].resource_id, pat.id);
  assert.equal(e[0].resource_version, '1');
  const r2 = await runBridge(['explain', '--config', w.cfgPath, '--project', 'example', '--record', mrn, '--field', 'vs_value', '--json']);
  assert.equal(r2.code, 0, r2.stderr);
  const e2 = JSON.parse(r2.stdout);
  assert.ok(e2.length > 1 && e2.every((x) => x.resource_type === 'Observation' && x.instrument === 'vitals'));
});

test('check: the shipped mapping fits; a missing field, a bad choice map and a non-repeating target are caught', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '1', '--seed', '20'] });
  const ok = await runBridge(['check', '--config', w.cfgPath]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /fits/);

  const m = JSON.parse(readFileSync(join(exampleDir, 'mapping.json'), 'utf8'));
  const bad = structuredClone(m);
  const sexAt = bad.rules.findIndex((r) => r.fields && r.fields.sex);
  bad.rules[sexAt].fields.sex.map.female = '9';
  const hrAt = bad.rules.findIndex((r) => r.fields && r.fields.hr_baseline);
  const hr = bad.rules[hrAt];
  hr.fields.hr_beseline = hr.fields.hr_baseline;
  delete hr.fields.hr_baseline;
  const vitAt = bad.rules.findIndex((r) => r.instrument === 'vitals');
  const vit = bad.rules[vitAt];
  delete vit.instrument;
  vit.select = 'LAST';
  // A rule whose instrument is the non-repeating demographics form.
  const demo = structuredClone(bad.rules[sexAt]);
  demo.name = 'dob-as-instances';
  demo.instrument = 'demographics';
  demo.fields = { dob: demo.fields.dob };
  bad.rules.push(demo);
  const demoAt = bad.rules.length - 1;
  writeFileSync(join(w.dir, 'mapping.json'), JSON.stringify(bad, null, 2));
  const r = await runBridge(['check', '--config', w.cfgPath]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const rule = (i) => `rules\\[${i}\\] "${bad.rules[i].name}"`;
  assert.match(r.stdout, new RegExp(`^example: \\S+mapping\\.json:\\d+:\\d+: ${rule(sexAt)}: field sex: the map gives "9" \\(for "female"\\), not a code of the field \\(1, 2, 3\\)$`, 'm'));
  assert.match(r.stdout, new RegExp(`^example: \\S+mapping\\.json:\\d+:\\d+: ${rule(hrAt)}: field hr_beseline: is not in the data dictionary$`, 'm'));
  for (const f of ['vs_datetime', 'vs_loinc', 'vs_value', 'vs_unit'])
    assert.match(r.stdout, new RegExp(`^example: \\S+mapping\\.json:\\d+:\\d+: ${rule(vitAt)}: field ${f}: is on the repeating instrument vitals \\(a rule without "instrument" fills non-repeating forms\\)$`, 'm'));
  assert.match(r.stdout, new RegExp(`^example: \\S+mapping\\.json:\\d+:\\d+: ${rule(demoAt)}: instrument demographics: is not a repeating instrument$`, 'm'));
  assert.match(r.stdout, /^7 problems found$/m);
});

test('a 403 (wrong token) stops the push with a clear error', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '2', '--seed', '21'] });
  writeFileSync(join(w.dir, 'redcap.token'), 'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF\n', { mode: 0o600 });
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /permissions to use the API|403/);
  const st = await status(w.cfgPath);
  assert.ok(st.outbox.example.pending > 0, 'rows wait for the next cycle');
});

test('an import REDCap refuses for one value: that row is held with the message, the rest is resent', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '4', '--seed', '22'], cfg: { batch_size: 500 } });
  // A value the local validation passes but this REDCap refuses (as a
  // project-specific rule would): REDCap names record, field and value.
  const rec = 'MRN00000002';
  const vital = w.data.resources.find((x) => x.resourceType === 'Observation' && x.subject.reference === 'Patient/pat-000002' &&
    x.valueQuantity && x.category[0].coding[0].code === 'vital-signs');
  const value = String(vital.valueQuantity.value);
  const msg = 'The value you provided could not be validated because it does not follow the expected format. Please try again.';
  await w.redcap.control('faults', {
    kind: 'status', status: 400, content: 'record', action: 'import', times: 1,
    body: { error: `"${rec}","vs_value","${value}","${msg}"` },
  });
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 0, r.stderr);
  const p = pushOf(r);
  assert.ok(p.held >= 1, JSON.stringify(p));
  const st = await status(w.cfgPath);
  const held = st.outbox.example.held_rows;
  assert.ok(held.length >= 1 && held.every((h) => h.record === rec && h.instrument === 'vitals'), JSON.stringify(held));
  assert.ok(held.every((h) => h.reasons.some((x) => x.field === 'vs_value' && x.message === msg)));
  // Everything else is in REDCap: the held instances are exactly those whose vs_value is that value.
  const dump = await w.redcap.records();
  const expected = expectedFor(w);
  const heldIds = new Set(w.data.resources.filter((x) => x.resourceType === 'Observation' &&
    x.subject.reference === 'Patient/pat-000002' && x.category[0].coding[0].code === 'vital-signs' &&
    x.valueQuantity && String(x.valueQuantity.value) === value).map((x) => x.id));
  assert.equal(held.length, heldIds.size);
  // A held instance keeps its number: REDCap shows a gap there until the
  // row is fixed and sent.
  const diffs = compareProject(expected, dump).filter((d) => !/instance numbers have gaps/.test(d));
  assert.equal(diffs.length, heldIds.size, diffs.join('\n'));
  assert.ok(diffs.every((d) => /missing instance/.test(d) && [...heldIds].some((id) => d.includes(id))), diffs.join('\n'));
});

test('REDCap running out of memory: the import is split until it fits; everything lands', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '12', '--seed', '23'], cfg: { batch_size: 400 } });
  await w.redcap.control('config', { maxImportRecords: 3 });
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(pushOf(r).splits >= 2, JSON.stringify(pushOf(r)));
  await assertMatches(w, expectedFor(w));
});

test('an anchor typed into REDCap (site time zone) drives the window fields; changing it re-curates that patient', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '5', '--seed', '24'], cfg: { timezone: 'Asia/Kolkata' } });
  // The example mapping with its anchor taken from REDCap's enroll_date instead of FHIR.
  const m = JSON.parse(readFileSync(join(exampleDir, 'mapping.json'), 'utf8'));
  m.anchors = { enroll: { field: 'enroll_date' } };
  m.rules = m.rules.filter((r) => !r.anchor);
  writeFileSync(join(w.dir, 'mapping.json'), JSON.stringify(m, null, 2));
  const r1 = await syncOnce(w.cfgPath);
  assert.equal(r1.code, 0, r1.stderr);
  const row = async () => (await w.redcap.records()).rows.find((x) => x.record_id === 'MRN00000003' && !x.redcap_repeat_instrument);
  assert.equal((await row()).hr_baseline, '', 'nothing is pulled until the anchor has a value');

  // A person types the enrollment date: the local date (UTC+05:30) of one heart rate of patient 3.
  const hr = w.data.resources.filter((x) => x.resourceType === 'Observation' && x.subject.reference === 'Patient/pat-000003' &&
    x.code.coding[0].code === '8867-4');
  assert.ok(hr.length > 0);
  const local = new Date(Date.parse(hr[0].effectiveDateTime) + 330 * 60000).toISOString().slice(0, 10);
  const form = new URLSearchParams({ token: EXAMPLE_TOKEN, content: 'record', format: 'json', type: 'flat',
    data: JSON.stringify([{ record_id: 'MRN00000003', enroll_date: local }]) });
  const imp = await fetch(w.redcap.url, { method: 'POST', body: form });
  assert.equal(imp.status, 200, await imp.text());

  const anchorMs = Date.parse(`${local}T00:00:00+05:30`);
  const day = 86400000;
  const near = hr.map((x) => ({ x, d: Math.abs(Date.parse(x.effectiveDateTime) - anchorMs), t: Date.parse(x.effectiveDateTime) }))
    .filter((c) => c.d <= day).sort((a, b) => a.d - b.d || a.t - b.t)[0];
  assert.ok(near, 'a heart rate lies within a day of the typed date');
  const r2 = await syncOnce(w.cfgPath);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(r2.result.curate.patients, 1, 'only the patient whose anchor changed is curated again');
  const got = await row();
  assert.equal(got.enroll_date, local);
  assert.equal(got.hr_baseline, String(Math.floor(near.x.valueQuantity.value + 0.5)));
  const creat = w.data.resources.filter((x) => x.resourceType === 'Observation' && x.subject.reference === 'Patient/pat-000003' &&
    x.code.coding[0].code === '2160-0').filter((x) => { const ts = Date.parse(x.effectiveDateTime); return ts >= anchorMs && ts <= anchorMs + 2 * day; });
  assert.equal(got.creat_max_48h, creat.length ? String(Math.max(...creat.map((x) => x.valueQuantity.value))) : '');

  const r3 = await syncOnce(w.cfgPath);
  assert.equal(r3.code, 0, r3.stderr);
  assert.equal(r3.result.curate.patients, 0);
  assert.equal(pushOf(r3).sent, 0);
});

test('review: a rule marked for review queues its values; accept sends them, reject keeps them out', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '6', '--seed', '25'] });
  const m = JSON.parse(readFileSync(join(exampleDir, 'mapping.json'), 'utf8'));
  const cond = m.rules.find((r) => r.instrument === 'conditions');
  cond.review = true;
  writeFileSync(join(w.dir, 'mapping.json'), JSON.stringify(m, null, 2));
  const r1 = await syncOnce(w.cfgPath);
  assert.equal(r1.code, 0, r1.stderr);
  const conditions = w.data.resources.filter((x) => x.resourceType === 'Condition');
  assert.ok(conditions.length >= 2);
  const inRedcap = async () => (await w.redcap.records()).rows.filter((x) => x.redcap_repeat_instrument === 'conditions');
  assert.equal((await inRedcap()).length, 0, 'nothing of a review rule goes to REDCap by itself');

  const list = await runBridge(['review', 'list', '--json', '--config', w.cfgPath]);
  assert.equal(list.code, 0, list.stderr);
  const entries = JSON.parse(list.stdout);
  assert.equal(entries.length, conditions.length);
  assert.ok(entries.every((e) => e.state === 'pending' && e.instrument === 'conditions' && e.values.cond_code));
  assert.ok(entries.every((e) => e.provenance.some((p) => p.resource_type === 'Condition')));

  const [a, b] = entries;
  const acc = await runBridge(['review', 'accept', String(a.id), '--by', 'dr.test', '--config', w.cfgPath]);
  assert.equal(acc.code, 0, acc.stderr);
  const rej = await runBridge(['review', 'reject', String(b.id), '--config', w.cfgPath]);
  assert.equal(rej.code, 0, rej.stderr);
  const again = await runBridge(['review', 'accept', String(b.id), '--config', w.cfgPath]);
  assert.equal(again.code, 1, 'a decided entry cannot be decided again');

  const r2 = await syncOnce(w.cfgPath);
  assert.equal(r2.code, 0, r2.stderr);
  const rows = await inRedcap();
  assert.equal(rows.length, 1);
  assert.equal(rows[0].record_id, a.record);
  assert.equal(rows[0].cond_code, a.values.cond_code);
  const ex = await runBridge(['explain', '--json', '--config', w.cfgPath, '--project', 'example', '--record', a.record, '--field', 'cond_code']);
  assert.equal(ex.code, 0, ex.stderr);
  assert.ok(JSON.parse(ex.stdout).some((p) => p.resource_type === 'Condition'));

  // Nothing is queued again for the same values.
  const left = JSON.parse((await runBridge(['review', 'list', '--json', '--config', w.cfgPath])).stdout);
  assert.equal(left.length, entries.length - 2);
});

test('a longitudinal project: rows go to their events; check wants an event on every rule', async (t) => {
  const dir = tempDir('frb-long-');
  const dict = [
    '"Variable / Field Name","Form Name","Section Header","Field Type","Field Label","Choices, Calculations, OR Slider Labels","Field Note","Text Validation Type OR Show Slider Number"',
    'record_id,demographics,,text,"Record ID",,,',
    'dob,demographics,,text,"Date of birth",,,date_ymd',
    'sex,demographics,,radio,"Sex","1, Female | 2, Male | 3, Unknown",,',
    'vs_datetime,vitals,,text,"When",,,datetime_seconds_ymd',
    'vs_loinc,vitals,,text,"LOINC",,,',
    'vs_value,vitals,,text,"Value",,,number',
  ].join('\n') + '\n';
  writeFileSync(join(dir, 'dict.csv'), dict);
  writeFileSync(join(dir, 'events.json'), JSON.stringify({
    arms: [{ arm_num: 1, name: 'Arm 1' }],
    events: [{ event_name: 'Baseline', arm_num: 1 }, { event_name: 'Follow up', arm_num: 1 }],
    formEventMapping: [
      { arm_num: 1, unique_event_name: 'baseline_arm_1', form: 'demographics' },
      { arm_num: 1, unique_event_name: 'follow_up_arm_1', form: 'vitals' },
    ],
    repeating: [{ event_name: 'follow_up_arm_1', form_name: 'vitals' }],
  }));
  const mapping = {
    format: 'fhir-redcap-bridge/mapping/1',
    record_id: { from: 'mrn' },
    rules: [
      { name: 'demographics', resource: 'Patient', event: 'baseline_arm_1',
        fields: { dob: { value: 'birthDate', transform: 'date' }, sex: { value: 'gender', map: { female: '1', male: '2' }, default: '3' } } },
      { name: 'vitals', resource: 'Observation', filter: { category: ['vital-signs'] }, event: 'follow_up_arm_1', instrument: 'vitals',
        fields: { vs_datetime: { value: 'effective', transform: 'datetime_seconds' },
          vs_loinc: { value: "code.coding.where(system = 'http://loinc.org').code.first()" },
          vs_value: { value: 'valueQuantity.value', transform: 'number' } } },
    ],
  };
  writeFileSync(join(dir, 'long.json'), JSON.stringify(mapping, null, 2));
  const data = await generateData(dir, ['--patients', '4', '--seed', '26']);
  const fhir = await startFhirServer(['--load', data.file]);
  const redcap = await startRedcapEmulator([
    '--project', `long=${join(dir, 'dict.csv')},longitudinal=${join(dir, 'events.json')}`,
    '--token', `${EXAMPLE_TOKEN}=long`,
  ]);
  t.after(async () => { await fhir.stop(); await redcap.stop(); cleanup(dir); });
  writeFileSync(join(dir, 'redcap.token'), EXAMPLE_TOKEN + '\n', { mode: 0o600 });
  const cfgPath = writeExampleConfig(dir, fhir.base, redcap.url, {
    redcap: { projects: [{ name: 'long', url: redcap.url, token_file: 'redcap.token', mapping: 'long.json' }] },
  });
  const chk = await runBridge(['check', '--config', cfgPath]);
  assert.equal(chk.code, 0, chk.stdout + chk.stderr);
  const r = await syncOnce(cfgPath);
  assert.equal(r.code, 0, r.stderr);
  const rows = (await redcap.records('long')).rows;
  const patients = data.resources.filter((x) => x.resourceType === 'Patient');
  const vitals = data.resources.filter((x) => x.resourceType === 'Observation' && x.category[0].coding[0].code === 'vital-signs');
  const base = rows.filter((x) => x.redcap_event_name === 'baseline_arm_1');
  assert.equal(base.length, patients.length);
  for (const p of patients) {
    const row = base.find((x) => x.record_id === p.identifier[0].value);
    assert.ok(row, p.id);
    assert.equal(row.dob, p.birthDate);
    assert.equal(row.sex, { female: '1', male: '2' }[p.gender] ?? '3');
  }
  const fu = rows.filter((x) => x.redcap_event_name === 'follow_up_arm_1' && x.redcap_repeat_instrument === 'vitals');
  assert.equal(fu.length, vitals.length);

  // Without an event on a rule, check refuses the mapping for this project.
  delete mapping.rules[0].event;
  writeFileSync(join(dir, 'long.json'), JSON.stringify(mapping, null, 2));
  const bad = await runBridge(['check', '--config', cfgPath]);
  assert.equal(bad.code, 1, bad.stdout);
  assert.match(bad.stdout, /event/);
});

test('the daemon carries new data to REDCap cycle after cycle and stops cleanly on SIGTERM', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '5', '--seed', '27'], cfg: { fhir: { poll_interval_s: 1 } } });
  let proc;
  const done = runBridge(['run', '--config', w.cfgPath], { onSpawn: (p) => { proc = p; } });
  const waitFor = async (pred, what) => {
    for (let i = 0; i < 300; i++) {
      if (await pred()) return;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  await waitFor(async () => compareProject(expectedFor(w), await w.redcap.records()).length === 0, 'the first cycle');
  // A new lab result for patient 2 arrives in the EHR.
  const obs = {
    resourceType: 'Observation', status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '2345-7', display: 'Glucose' }], text: 'Glucose' },
    subject: { reference: 'Patient/pat-000002' }, effectiveDateTime: '2024-05-06T07:08:09+02:00',
    valueQuantity: { value: 5.4, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' },
  };
  const created = await w.fhir.fhir('Observation', { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(obs) });
  assert.equal(created.status, 201);
  w.data.resources.push(created.body);
  await waitFor(async () => (await w.redcap.records()).rows.some((r) => r.lab_datetime === '2024-05-06 07:08:09'), 'the new lab in REDCap');
  assert.deepEqual(compareProject(expectedFor(w), await w.redcap.records()), []);
  proc.kill('SIGTERM');
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
});

test('values the source no longer gives are cleared in REDCap: a removed value, a baseline that no longer qualifies', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '6', '--seed', '28'] });
  assert.equal((await syncOnce(w.cfgPath)).code, 0);
  const expected0 = expectedFor(w);
  // The record whose hr_baseline was filled; its source Observation becomes entered-in-error.
  const prov = async (rec, field) => JSON.parse((await runBridge(['explain', '--json', '--config', w.cfgPath,
    '--project', 'example', '--record', rec, '--field', field])).stdout || '[]');
  const rec = Object.keys(expected0.records).find((r) => expected0.records[r].demographics?.hr_baseline) ??
    (await w.redcap.records()).rows.find((x) => !x.redcap_repeat_instrument && x.hr_baseline).record_id;
  const [p] = await prov(rec, 'hr_baseline');
  assert.ok(p, 'hr_baseline has provenance');
  const put = async (res) => {
    const r = await w.fhir.fhir(`${res.resourceType}/${res.id}`, {
      method: 'PUT', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(res),
    });
    assert.equal(r.status, 200);
    const i = w.data.resources.findIndex((x) => x.resourceType === res.resourceType && x.id === res.id);
    w.data.resources[i] = r.body;
  };
  const hr = (await w.fhir.fhir(`Observation/${p.resource_id}`)).body;
  await put({ ...hr, status: 'entered-in-error' });
  // Another patient's vital sign loses its value (the device reading was void).
  const vital = w.data.resources.find((x) => x.resourceType === 'Observation' && x.valueQuantity &&
    x.category[0].coding[0].code === 'vital-signs' && x.subject.reference !== hr.subject.reference);
  const v2 = (await w.fhir.fhir(`Observation/${vital.id}`)).body;
  delete v2.valueQuantity;
  v2.dataAbsentReason = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'error' }] };
  await put(v2);
  await sleep(1100);
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 0, r.stderr);
  await assertMatches(w, expectedFor(w));
  const rows = (await w.redcap.records()).rows;
  const inst = rows.find((x) => x.redcap_repeat_instrument === 'vitals' && x.vs_datetime === vital.effectiveDateTime.slice(0, 19).replace('T', ' '));
  assert.ok(inst);
  assert.equal(inst.vs_value, '');
  assert.equal(inst.vs_unit, '');
  const after = await prov(rec, 'hr_baseline');
  assert.ok(after.every((x) => x.resource_id !== p.resource_id), 'the entered-in-error Observation no longer explains the value');
});

test('a record name REDCap refuses (an MRN with "+") is held with the message, the name kept out of it', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '2', '--seed', '29'] });
  const pat = {
    resourceType: 'Patient', gender: 'other', birthDate: '1990-02-03',
    identifier: [{ system: MRN_SYSTEM, value: 'AB+1234' }],
  };
  const c = await w.fhir.fhir('Patient', { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(pat) });
  assert.equal(c.status, 201);
  const r = await syncOnce(w.cfgPath);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /AB\+1234/, 'no MRN in the log');
  const st = await status(w.cfgPath);
  const held = st.outbox.example.held_rows;
  assert.equal(held.length, 1);
  assert.equal(held[0].record, 'AB+1234');
  const msg = held[0].reasons.map((x) => x.message).join('\n');
  assert.match(msg, /The record name \(\[record\]\) cannot contain a plus sign/);
  assert.doesNotMatch(msg, /AB\+1234/);
  const rows = (await w.redcap.records()).rows;
  assert.ok(!rows.some((x) => x.record_id === 'AB+1234'));
  assert.equal(new Set(rows.map((x) => x.record_id)).size, 2, 'the other records landed');
});

// ---- held rows: tried again, re-checked, released ----------------------------

const GENERIC_400 = 'There were errors with your request. If you are sending data, then it might be due to the data being misformatted.';

test('a single row REDCap refuses without saying why is tried again next cycle, not held for good', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '2', '--seed', '30'], cfg: { batch_size: 1 } });
  // One plain 400 (no per-value errors, no message about the row).
  await w.redcap.control('faults', { kind: 'status', status: 400, content: 'record', action: 'import', times: 1 });
  const r1 = await syncOnce(w.cfgPath);
  assert.equal(r1.code, 0, r1.stderr);
  assert.equal(pushOf(r1).deferred, 1, JSON.stringify(pushOf(r1)));
  assert.equal(pushOf(r1).held, 0);
  assert.match(r1.stderr, /REDCap refused a row without saying why \(bad-request \(HTTP 400\): \d+-byte message\); it is tried again in a later cycle \(refusal 1 of 3/);
  const st1 = await status(w.cfgPath);
  assert.equal(st1.outbox.example.held, 0);
  assert.equal(st1.outbox.example.pending, 1, 'the refused row waits for the next cycle');
  assert.equal((await w.redcap.control('stats')).faults.injected, 1);
  // The next cycle sends it; everything is in REDCap.
  const r2 = await syncOnce(w.cfgPath);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(pushOf(r2).sent, 1);
  await assertMatches(w, expectedFor(w));
  const st2 = await status(w.cfgPath);
  assert.equal(st2.outbox.example.pending, 0);
  assert.equal(st2.outbox.example.held, 0);
});

test('a row REDCap keeps refusing without a reason is held after the third cycle; push-release sends it again', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '2', '--seed', '31'], cfg: { batch_size: 1 } });
  // One plain 400 for the first import of each cycle: in the first, the
  // oldest row; after that the same row, the only one due.
  const refuseOnce = () => w.redcap.control('faults', { kind: 'status', status: 400, content: 'record', action: 'import', times: 1 });
  for (const n of [1, 2]) {
    await refuseOnce();
    const r = await syncOnce(w.cfgPath);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(pushOf(r).deferred, 1, `cycle ${n}: ${JSON.stringify(pushOf(r))}`);
    assert.equal((await w.redcap.control('stats')).faults.injected, n);
    if (n === 2)
      assert.equal(pushOf(r).requests - 3, 1, 'the deferred row alone, after the dictionary requests');
  }
  await refuseOnce();
  const r3 = await syncOnce(w.cfgPath);
  assert.equal(r3.code, 0, r3.stderr);
  assert.equal(pushOf(r3).held, 1, JSON.stringify(pushOf(r3)));
  assert.match(r3.stderr, /example: 1 row held back: REDCap refused the row without saying why, 3 tries \(bad-request \(HTTP 400\): \d+-byte message\) \(see `status`\)/);
  const st = await status(w.cfgPath);
  assert.equal(st.outbox.example.held, 1);
  const [h] = st.outbox.example.held_rows;
  assert.equal(h.reasons.length, 1);
  assert.equal(h.reasons[0].source, 'redcap');
  // The emulator's generic 400 body, as the bridge reads it (trimmed).
  assert.equal(h.reasons[0].message, `REDCap refused this row without saying why, 3 tries (bad-request (HTTP 400): ${GENERIC_400.length}-byte message): ${GENERIC_400}`);
  // Held: a rerun sends nothing.
  const r4 = await syncOnce(w.cfgPath);
  assert.equal(r4.code, 0, r4.stderr);
  assert.equal(pushOf(r4).requests, 0, 'no request for a held row');
  // push-release: another record first (nothing), then the project.
  const other = await runBridge(['push-release', '--config', w.cfgPath, '--project', 'example', '--record', 'NO-SUCH-RECORD']);
  assert.equal(other.code, 0, other.stderr);
  assert.match(other.stdout, /^example: 0 held rows released for the record; nothing to do$/m);
  const bad = await runBridge(['push-release', '--config', w.cfgPath, '--project', 'nope']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /no project nope/);
  const rel = await runBridge(['push-release', '--config', w.cfgPath, '--project', 'example', '--record', h.record]);
  assert.equal(rel.code, 0, rel.stderr);
  assert.match(rel.stdout, /^example: 1 held row released for the record; they are sent with the next sync$/m);
  const r5 = await syncOnce(w.cfgPath);
  assert.equal(r5.code, 0, r5.stderr);
  assert.equal(pushOf(r5).sent, 1);
  await assertMatches(w, expectedFor(w));
  assert.equal((await status(w.cfgPath)).outbox.example.held, 0);
  const help = await runBridge(['push-release', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /usage: fhir-redcap-bridge push-release --config FILE --project P \[--record R\]/);
  assert.match((await runBridge(['--help'])).stdout, /push-release --config FILE --project P \[--record R\]/);
});

test('a row held by the bridge\'s own check goes once REDCap\'s dictionary has the missing choice; logs carry no PHI', async (t) => {
  const dir0 = tempDir('frb-dict-');
  t.after(() => cleanup(dir0));
  // The example study without sex's "3, Unknown".
  const full = readFileSync(join(exampleDir, 'dictionary.csv'), 'utf8');
  const narrow = full.replace('1, Female | 2, Male | 3, Unknown', '1, Female | 2, Male');
  assert.notEqual(narrow, full);
  writeFileSync(join(dir0, 'dict.csv'), narrow);
  const repeating = 'vitals;labs;conditions;medications;allergies';
  const w = await world(t, {
    genArgs: ['--patients', '3', '--seed', '32'],
    emulatorArgs: ['--project', `example=${join(dir0, 'dict.csv')},repeating=${repeating}`, '--token', `${EXAMPLE_TOKEN}=example`],
  });
  const pats = w.data.resources.filter((x) => x.resourceType === 'Patient');
  const unknown = pats.filter((p) => p.gender !== 'male' && p.gender !== 'female');
  // One more patient whose sex maps to 3.
  const mrn = 'MRN07777777';
  const c = await w.fhir.fhir('Patient', { method: 'POST', headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient', gender: 'unknown', birthDate: '1971-07-07', identifier: [{ system: MRN_SYSTEM, value: mrn }] }) });
  assert.equal(c.status, 201);
  const r1 = await syncOnce(w.cfgPath);
  assert.equal(r1.code, 0, r1.stderr);
  const heldN = unknown.length + 1;
  assert.equal(pushOf(r1).held, heldN);
  const msg = 'The value is not a valid category for sex';
  assert.match(r1.stderr, new RegExp(`warn +redcap +example: ${heldN} rows? held back: sex: ${msg} \\(see \`status\`\\)`));
  assert.doesNotMatch(r1.stderr, /MRN\d{8}/, 'no record name in the log');
  const st1 = await status(w.cfgPath);
  assert.equal(st1.outbox.example.held, heldN);
  assert.ok(st1.outbox.example.held_rows.every((h) => h.reasons.length === 1 && h.reasons[0].field === 'sex' &&
    h.reasons[0].message === msg && h.reasons[0].source === 'validation'), JSON.stringify(st1.outbox.example.held_rows));
  assert.ok(st1.outbox.example.held_rows.some((h) => h.record === mrn));
  // Nothing changes by itself while the dictionary lacks the choice.
  const r2 = await syncOnce(w.cfgPath);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(pushOf(r2).released, 0);
  assert.equal((await status(w.cfgPath)).outbox.example.held, heldN);
  // The full detail only at debug level.
  const rd = await syncOnce(w.cfgPath, ['--log-level', 'debug']);
  assert.equal(rd.code, 0, rd.stderr);
  assert.match(rd.stderr, new RegExp(`debug +redcap +example: still held back: record ${mrn}, instrument -, instance 0: .*${msg}`));

  // An administrator adds the choice (the emulator's project is defined again: its records go).
  await w.redcap.control('projects', { name: 'example', dictionary_csv: full, repeating: repeating.split(';') });
  const r3 = await syncOnce(w.cfgPath);
  assert.equal(r3.code, 0, r3.stderr);
  assert.equal(pushOf(r3).released, heldN, JSON.stringify(pushOf(r3)));
  assert.equal(pushOf(r3).sent, heldN);
  assert.equal(pushOf(r3).held, 0);
  const st3 = await status(w.cfgPath);
  assert.equal(st3.outbox.example.held, 0);
  const rows = (await w.redcap.records()).rows;
  const row = rows.find((x) => x.record_id === mrn && !x.redcap_repeat_instrument);
  assert.ok(row, 'the released row is in REDCap');
  assert.equal(row.sex, '3');
  assert.equal(row.dob, '1971-07-07');
});

test('queued rows of a patient whose MRN becomes ambiguous are held, never sent; they go once it is alone again', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '4', '--seed', '33'] });
  assert.equal((await syncOnce(w.cfgPath)).code, 0);
  const mrn = 'MRN00000002';
  const lab = w.data.resources.find((x) => x.resourceType === 'Observation' && x.subject.reference === 'Patient/pat-000002' &&
    x.valueQuantity && x.category[0].coding[0].code === 'laboratory' && x.code.coding[0].code !== '2160-0');
  assert.ok(lab);
  const labInRedcap = async () => (await w.redcap.records()).rows.filter((x) => x.record_id === mrn &&
    x.redcap_repeat_instrument === 'labs' && x.lab_value === '777.5');
  // The lab value changes while REDCap is offline: the row is queued.
  const cur = (await w.fhir.fhir(`Observation/${lab.id}`)).body;
  const put = await w.fhir.fhir(`Observation/${lab.id}`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ ...cur, valueQuantity: { ...cur.valueQuantity, value: 777.5 } }) });
  assert.equal(put.status, 200);
  await sleep(1100);
  await w.redcap.control('offline', { project: 'example', offline: true });
  const r1 = await syncOnce(w.cfgPath);
  assert.equal(r1.code, 1, 'REDCap is offline: the push did not complete');
  assert.equal(r1.result.curate.rows_queued, 1);
  assert.equal((await status(w.cfgPath)).outbox.example.pending, 1);
  // A second Patient with the same MRN appears; REDCap is back.
  const dup = await w.fhir.fhir('Patient', { method: 'POST', headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient', gender: 'male', birthDate: '1950-05-05', identifier: [{ system: MRN_SYSTEM, value: mrn }] }) });
  assert.equal(dup.status, 201);
  await sleep(1100);
  await w.redcap.control('offline', { project: 'example', offline: false });
  const r2 = await syncOnce(w.cfgPath);
  assert.equal(r2.code, 0, r2.stderr);
  const st2 = await status(w.cfgPath);
  assert.deepEqual(st2.outbox.example.refused.map((x) => x.patient).sort(), ['pat-000002', dup.body.id].sort());
  assert.ok(st2.outbox.example.refused.every((x) => /^ambiguous MRN: 2 Patient resources carry it/.test(x.reason)));
  assert.equal(st2.outbox.example.pending, 0);
  assert.equal(st2.outbox.example.held, 1);
  const [h] = st2.outbox.example.held_rows;
  assert.equal(h.record, mrn);
  assert.equal(h.instrument, 'labs');
  assert.equal(h.reasons[0].source, 'curation');
  assert.match(h.reasons[0].message, /^ambiguous MRN/);
  assert.deepEqual(await labInRedcap(), [], 'the queued value did not reach REDCap while the MRN is ambiguous');
  // push-release does not let it go while the refusal stands.
  const rel = await runBridge(['push-release', '--config', w.cfgPath, '--project', 'example']);
  assert.match(rel.stdout, /0 held rows released/);
  // The duplicate gets its own MRN: pat-000002 is alone again and curated as usual.
  const fixed = await w.fhir.fhir(`Patient/${dup.body.id}`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ ...dup.body, identifier: [{ system: MRN_SYSTEM, value: 'MRN09999999' }] }) });
  assert.equal(fixed.status, 200);
  await sleep(1100);
  const r3 = await syncOnce(w.cfgPath);
  assert.equal(r3.code, 0, r3.stderr);
  const st3 = await status(w.cfgPath);
  assert.deepEqual(st3.outbox.example.refused, []);
  assert.equal(st3.outbox.example.held, 0);
  assert.equal(st3.outbox.example.pending, 0);
  assert.equal((await labInRedcap()).length, 1, 'the value landed once the patient was alone again');
  const rows = (await w.redcap.records()).rows;
  assert.ok(rows.some((x) => x.record_id === 'MRN09999999' && !x.redcap_repeat_instrument));
});

test('a value accepted in review for a patient refused meanwhile waits with the refusal; it goes once the patient is alone', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '4', '--seed', '35'] });
  const m = JSON.parse(readFileSync(join(exampleDir, 'mapping.json'), 'utf8'));
  m.rules.find((r) => r.instrument === 'conditions').review = true;
  writeFileSync(join(w.dir, 'mapping.json'), JSON.stringify(m, null, 2));
  assert.equal((await syncOnce(w.cfgPath)).code, 0);
  const entries = JSON.parse((await runBridge(['review', 'list', '--json', '--config', w.cfgPath])).stdout);
  const e = entries.find((x) => x.state === 'pending');
  assert.ok(e, 'a condition waits for review');
  const condInRedcap = async () => (await w.redcap.records()).rows.filter((x) => x.record_id === e.record &&
    x.redcap_repeat_instrument === 'conditions');
  // A second Patient with the entry's MRN: the record's patient is refused.
  const dup = await w.fhir.fhir('Patient', { method: 'POST', headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient', gender: 'other', birthDate: '1960-06-06', identifier: [{ system: MRN_SYSTEM, value: e.record }] }) });
  assert.equal(dup.status, 201);
  await sleep(1100);
  assert.equal((await syncOnce(w.cfgPath)).code, 0);
  assert.equal((await status(w.cfgPath)).outbox.example.refused.length, 2);
  // A person accepts the value now: it must not reach REDCap while the refusal stands.
  const acc = await runBridge(['review', 'accept', String(e.id), '--by', 'dr.test', '--config', w.cfgPath]);
  assert.equal(acc.code, 0, acc.stderr);
  assert.equal((await syncOnce(w.cfgPath)).code, 0);
  const st = await status(w.cfgPath);
  assert.equal(st.outbox.example.pending, 0);
  const held = st.outbox.example.held_rows.filter((h) => h.record === e.record && h.instrument === 'conditions');
  assert.equal(held.length, 1, JSON.stringify(st.outbox.example.held_rows));
  assert.equal(held[0].reasons[0].source, 'curation');
  assert.deepEqual(await condInRedcap(), [], 'nothing of the refused record reached REDCap');
  // The duplicate gets its own MRN: the accepted value goes.
  const fixed = await w.fhir.fhir(`Patient/${dup.body.id}`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ ...dup.body, identifier: [{ system: MRN_SYSTEM, value: 'MRN08888888' }] }) });
  assert.equal(fixed.status, 200);
  await sleep(1100);
  assert.equal((await syncOnce(w.cfgPath)).code, 0);
  const rows = await condInRedcap();
  assert.equal(rows.length, 1);
  assert.equal(rows[0].cond_code, e.values.cond_code);
});

test('two patients whose record ids differ only in case are both refused, never merged in REDCap', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '2', '--seed', '34'] });
  const mk = async (value, birthDate) => {
    const c = await w.fhir.fhir('Patient', { method: 'POST', headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Patient', gender: 'female', birthDate, identifier: [{ system: MRN_SYSTEM, value }] }) });
    assert.equal(c.status, 201);
    return c.body;
  };
  const a = await mk('CASE0001', '1960-01-01');
  const b = await mk('case0001', '1970-02-02');
  const r1 = await syncOnce(w.cfgPath);
  assert.equal(r1.code, 0, r1.stderr);
  const st = await status(w.cfgPath);
  const refused = st.outbox.example.refused;
  assert.deepEqual(refused.map((x) => x.patient).sort(), [a.id, b.id].sort());
  assert.ok(refused.every((x) => /^ambiguous record: 1 other Patient's record id differs from this one only in case or spaces, which REDCap ignores/.test(x.reason)),
    JSON.stringify(refused));
  assert.doesNotMatch(r1.stderr, /case0001/i, 'no record name in the log');
  let rows = (await w.redcap.records()).rows;
  assert.ok(!rows.some((x) => x.record_id.toLowerCase() === 'case0001'), 'neither reached REDCap');
  assert.equal(new Set(rows.map((x) => x.record_id)).size, 2, 'the other records landed');
  // A rerun refuses them again, sends nothing.
  const r2 = await syncOnce(w.cfgPath);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(pushOf(r2).sent, 0);
  // One of them gets another MRN: both go, each to its own record.
  const put = await w.fhir.fhir(`Patient/${b.id}`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ ...b, identifier: [{ system: MRN_SYSTEM, value: 'OTHER0002' }] }) });
  assert.equal(put.status, 200);
  await sleep(1100);
  const r3 = await syncOnce(w.cfgPath);
  assert.equal(r3.code, 0, r3.stderr);
  assert.deepEqual((await status(w.cfgPath)).outbox.example.refused, []);
  rows = (await w.redcap.records()).rows;
  assert.equal(rows.find((x) => x.record_id === 'CASE0001')?.dob, '1960-01-01');
  assert.equal(rows.find((x) => x.record_id === 'OTHER0002')?.dob, '1970-02-02');
});

test('anchors typed into REDCap are read for this cycle\'s records in batches, split when REDCap runs out of memory', async (t) => {
  const w = await world(t, { genArgs: ['--patients', '6', '--seed', '35'], cfg: { batch_size: 4 } });
  const m = JSON.parse(readFileSync(join(exampleDir, 'mapping.json'), 'utf8'));
  m.anchors = { enroll: { field: 'enroll_date' } };
  m.rules = m.rules.filter((r) => !r.anchor);
  writeFileSync(join(w.dir, 'mapping.json'), JSON.stringify(m, null, 2));
  const e0 = (await w.redcap.control('stats')).exports;
  const r1 = await syncOnce(w.cfgPath);
  assert.equal(r1.code, 0, r1.stderr);
  const e1 = (await w.redcap.control('stats')).exports;
  // The listing (nothing in REDCap yet), then 6 records in batches of 4: 4 + 2.
  assert.equal(e1.requests - e0.requests, 3, JSON.stringify(e1));
  assert.equal(e1.records - e0.records, 0, 'REDCap had none of the records yet');
  assert.equal(r1.result.anchors.projects.example.ok, true);

  // REDCap now runs out of memory on exports of more than 2 records.
  await w.redcap.control('config', { maxExportRecords: 2 });
  // New lab values for three patients.
  const changed = [];
  for (const pid of ['pat-000001', 'pat-000002', 'pat-000003']) {
    const lab = w.data.resources.find((x) => x.resourceType === 'Observation' && x.subject.reference === `Patient/${pid}` &&
      x.valueQuantity && x.category[0].coding[0].code === 'laboratory' && x.code.coding[0].code !== '2160-0');
    const cur = (await w.fhir.fhir(`Observation/${lab.id}`)).body;
    const put = await w.fhir.fhir(`Observation/${lab.id}`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ ...cur, valueQuantity: { ...cur.valueQuantity, value: 555.5 } }) });
    assert.equal(put.status, 200);
    changed.push(pid);
  }
  await sleep(1100);
  const r2 = await syncOnce(w.cfgPath);
  assert.equal(r2.code, 0, r2.stderr);
  // The listing of the 6 changed records runs REDCap out of memory: skipped for this cycle.
  assert.match(r2.stderr, /REDCap could not list the records changed since the last read/);
  // The 3 records of this cycle: 3 is too many, 2 + 1 fit.
  assert.ok(r2.result.anchors.projects.example.splits >= 1, JSON.stringify(r2.result.anchors));
  const e2 = (await w.redcap.control('stats')).exports;
  assert.equal(e2.records - e1.records, 3, 'exactly the records of this cycle were read');
  assert.equal(r2.result.curate.patients, 3);
  assert.equal(r2.result.curate.deferred, 0);
  const rows = (await w.redcap.records()).rows;
  assert.equal(rows.filter((x) => x.redcap_repeat_instrument === 'labs' && x.lab_value === '555.5').length, 3);
});
