// Downtime charting against the real FHIR server and the REDCap emulator:
// outage detection, charting by CLI while the EHR is dark, exactly-once
// writes back (conditional create + Provenance with a client id), kill -9
// during the resync, the 412 path, downtime registration and linking.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import {
  startFhirServer, startRedcapEmulator, writeExampleConfig, runBridge, syncOnce, status, tempDir, cleanup,
  bridgeBin, sleep, generateData,
} from './lib.mjs';

const MRN_SYSTEM = 'urn:oid:1.2.36.146.595.217.0.1';
const DT_SYSTEM = 'urn:oid:2.16.840.1.113883.3.9999.1';
const PASSWORD = 'correct horse battery staple\n';


// FHIR server with generated patients, REDCap emulator, a config with
// charting on, a first sync, and a clinician "nurse1".
async function world(t, { patients = 5, seed = '41', downtime = {}, redcap = true } = {}) {
  const dir = tempDir('frb-downtime-');
  const data = await generateData(dir, ['--patients', String(patients), '--seed', seed]);
  const fhir = await startFhirServer(['--load', data.file]);
  const rc = redcap ? await startRedcapEmulator() : null;
  const cfgPath = writeExampleConfig(dir, fhir.base, rc ? rc.url : 'http://127.0.0.1:9/api/', {
    fhir: { poll_interval_s: 2, timeout_s: 5 },
    downtime: { identifier_system: DT_SYSTEM, ...downtime },
    ui: { password_log2n: 10, listen: '127.0.0.1:0' },
  });
  t.after(async () => {
    await fhir.stop();
    if (rc) await rc.stop();
    cleanup(dir);
  });
  const s = await syncOnce(cfgPath);
  assert.equal(s.code, rc ? 0 : 1, s.stderr);
  const u = await bridge(cfgPath, ['users', 'add', 'nurse1', '--display', 'Nurse One'], { input: PASSWORD });
  assert.equal(u.code, 0, u.stderr);
  const patientsList = data.resources.filter((r) => r.resourceType === 'Patient');
  return { dir, data, fhir, redcap: rc, cfgPath, patients: patientsList };
}

const mrnOf = (p) => p.identifier.find((i) => i.system === MRN_SYSTEM).value;

function bridge(cfgPath, args, opts) {
  return runBridge([...args, '--config', cfgPath], opts);
}

// Chart a heart rate; resolves to the uuid.
async function chartHr(w, patient, value, at) {
  const r = await bridge(w.cfgPath, ['chart', 'vitals', '--user', 'nurse1', '--patient', mrnOf(patient), '--code',
    '8867-4', '--value', String(value), '--unit', '/min', '--at', at]);
  assert.equal(r.code, 0, r.stderr);
  const uuid = r.stdout.trim();
  assert.match(uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  return uuid;
}

// The daemon; its stderr is kept (t.after kills it).
function startDaemon(t, cfgPath) {
  const proc = spawn(bridgeBin, ['run', '--config', cfgPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  const d = { proc, log: '', exited: null };
  proc.stderr.on('data', (x) => { d.log += x; });
  d.exit = new Promise((res) => proc.on('close', (code, signal) => { d.exited = { code, signal }; res(d.exited); }));
  t.after(async () => {
    if (!d.exited) {
      proc.kill('SIGKILL');
      await d.exit;
    }
  });
  return d;
}

async function waitFor(what, fn, timeoutMs = 60000, stepMs = 250) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return { value: v, ms: Date.now() - t0 };
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

// Every resource of a type in the EHR (paged).
async function allOf(fhir, type) {
  const out = [];
  let url = `${type}?_count=1000`;
  while (url) {
    const r = await fhir.fhir(url);
    assert.equal(r.status, 200);
    for (const e of r.body.entry || []) out.push(e.resource);
    const next = (r.body.link || []).find((l) => l.relation === 'next');
    url = next ? next.url.slice(fhir.base.length + 1) : null;
  }
  return out;
}

// The EHR's copies of the entries: uuid -> [resources with that identifier].
async function ehrEntries(fhir, type) {
  const by = new Map();
  for (const r of await allOf(fhir, type)) {
    for (const id of r.identifier || []) {
      if (id.system !== DT_SYSTEM) continue;
      if (!by.has(id.value)) by.set(id.value, []);
      by.get(id.value).push(r);
    }
  }
  return by;
}

async function assertExactlyOnce(w, uuids, type = 'Observation') {
  const by = await ehrEntries(w.fhir, type);
  const provs = new Map((await allOf(w.fhir, 'Provenance')).map((p) => [p.id, p]));
  for (const u of uuids) {
    const copies = by.get(u) || [];
    assert.equal(copies.length, 1, `entry ${u}: ${copies.length} copies in the EHR`);
    const prov = provs.get(`dt-${u}`);
    assert.ok(prov, `entry ${u}: no Provenance dt-${u}`);
    assert.equal(prov.target[0].reference, `${type}/${copies[0].id}`, `entry ${u}: Provenance target`);
    assert.ok(prov.meta.tag.some((g) => g.code === 'downtime-entry'), 'Provenance tagged as a downtime entry');
    assert.ok(prov.recorded && prov.occurredDateTime, 'Provenance recorded and occurred');
    assert.equal(prov.agent[0].who.identifier.value, 'nurse1');
  }
  const ours = [...by.keys()].filter((k) => !uuids.includes(k));
  assert.deepEqual(ours, [], 'no entry in the EHR that was not charted');
}

// Each entry (an Observation in the EHR) is one vitals instance in REDCap,
// exactly once: waits until it is so.
async function assertInRedcapOnce(w, uuids, daemon = null) {
  const ehr = await ehrEntries(w.fhir, 'Observation');
  const mrnById = new Map(w.patients.map((p) => [p.id, mrnOf(p)]));
  const want = new Map();
  for (const u of uuids) {
    const [o] = ehr.get(u);
    const key = [mrnById.get(o.subject.reference.slice('Patient/'.length)),
      o.effectiveDateTime.replace('T', ' ').replace(/(\.\d+)?Z$/, ''), String(o.valueQuantity.value)].join('|');
    want.set(key, (want.get(key) || 0) + 1);
  }
  let last = null;
  try {
    await waitFor('the entries in REDCap', async () => {
      const dump = await w.redcap.records();
      const got = new Map();
      for (const row of dump.rows || []) {
        if (row.redcap_repeat_instrument !== 'vitals' || row.vs_loinc !== '8867-4') continue;
        const key = [row.record_id, row.vs_datetime, row.vs_value].join('|');
        if (want.has(key)) got.set(key, (got.get(key) || 0) + 1);
      }
      last = got;
      return [...want].every(([k, v]) => got.get(k) === v);
    }, 60000, 1000);
  } catch (err) {
    const diff = [...want].filter(([k, v]) => last?.get(k) !== v).slice(0, 5);
    throw new Error(`${err.message}; e.g. ${JSON.stringify(diff.map(([k, v]) => [k, v, last?.get(k) ?? 0]))}` +
      (daemon ? `\ndaemon log (end):\n${daemon.log.slice(-6000)}` : ''));
  }
}

const isoMinus = (min) => new Date(Date.now() - min * 60000).toISOString().replace(/\.\d{3}Z$/, 'Z');

test('users: the password comes from stdin and is checked; list, disable; chart refuses unknown and disabled users', async (t) => {
  const w = await world(t, { patients: 2, redcap: false });
  const short = await bridge(w.cfgPath, ['users', 'add', 'doc2'], { input: 'short\n' });
  assert.equal(short.code, 1);
  assert.match(short.stderr, /at least 10 characters/);
  const dup = await bridge(w.cfgPath, ['users', 'add', 'nurse1'], { input: PASSWORD });
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /exists/);
  const admin = await bridge(w.cfgPath, ['users', 'add', 'admin1', '--role', 'admin'], { input: PASSWORD });
  assert.equal(admin.code, 0, admin.stderr);
  const list = await bridge(w.cfgPath, ['users', 'list', '--json']);
  const users = JSON.parse(list.stdout);
  assert.deepEqual(users.map((u) => [u.name, u.role, u.disabled]), [['admin1', 'admin', false], ['nurse1', 'clinician', false]]);
  assert.ok(!list.stdout.includes('scrypt'), 'no password hash in the listing');

  const p = w.patients[0];
  const unknown = await bridge(w.cfgPath, ['chart', 'vitals', '--user', 'nobody', '--patient', mrnOf(p), '--code', 'hr', '--value', '70']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no user 'nobody'/);
  const dis = await bridge(w.cfgPath, ['users', 'disable', 'nurse1']);
  assert.equal(dis.code, 0, dis.stderr);
  const refused = await bridge(w.cfgPath, ['chart', 'vitals', '--user', 'nurse1', '--patient', mrnOf(p), '--code', 'hr', '--value', '70']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /disabled/);
  const en = await bridge(w.cfgPath, ['users', 'enable', 'nurse1']);
  assert.equal(en.code, 0);
  const ok = await bridge(w.cfgPath, ['chart', 'vitals', '--user', 'nurse1', '--patient', mrnOf(p), '--code', 'hr', '--value', '70']);
  assert.equal(ok.code, 0, ok.stderr);
});

test('chart: bad values are refused naming the field, implausible ones need --confirm, nothing is stored for either', async (t) => {
  const w = await world(t, { patients: 2, redcap: false });
  const p = w.patients[0];
  const run = (args) => bridge(w.cfgPath, ['chart', 'vitals', '--user', 'nurse1', '--patient', mrnOf(p), ...args]);
  const abc = await run(['--code', 'hr', '--value', 'abc']);
  assert.equal(abc.code, 1);
  assert.match(abc.stderr, /value: heart rate must be a number/);
  const unit = await run(['--code', 'hr', '--value', '70', '--unit', 'mmHg']);
  assert.equal(unit.code, 1);
  assert.match(unit.stderr, /unit: /);
  const high = await run(['--code', 'hr', '--value', '260']);
  assert.equal(high.code, 1);
  assert.match(high.stderr, /confirm/);
  const noOffset = await run(['--code', 'hr', '--value', '70', '--at', '2026-01-01T10:00:00']);
  assert.equal(noOffset.code, 1);
  assert.match(noOffset.stderr, /at: /);
  const unknownPatient = await bridge(w.cfgPath, ['chart', 'vitals', '--user', 'nurse1', '--patient', 'MRN99999999', '--code', 'hr', '--value', '70']);
  assert.equal(unknownPatient.code, 1);
  assert.match(unknownPatient.stderr, /no cached patient has this MRN/);
  let list = JSON.parse((await bridge(w.cfgPath, ['chart', 'list', '--json'])).stdout);
  assert.equal(list.length, 0, 'nothing stored for refused input');
  const confirmed = await run(['--code', 'hr', '--value', '260', '--confirm']);
  assert.equal(confirmed.code, 0, confirmed.stderr);
  const bp = await run(['--code', 'bp', '--value', '120/80']);
  assert.equal(bp.code, 0, bp.stderr);
  list = JSON.parse((await bridge(w.cfgPath, ['chart', 'list', '--json'])).stdout);
  assert.equal(list.length, 2);
  assert.ok(list.every((e) => e.state === 'pending' && e.author === 'nurse1'));
});

test('summary from the cache: demographics, allergies, active medications, problems, latest vitals; search; audited', async (t) => {
  const w = await world(t, { patients: 6, redcap: false });
  const p = w.patients.find((x) => w.data.resources.some((r) => r.resourceType === 'MedicationRequest' && r.status === 'active' && r.subject.reference === `Patient/${x.id}`)) || w.patients[0];
  const r = await bridge(w.cfgPath, ['summary', '--patient', mrnOf(p), '--json', '--user', 'nurse1']);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.patient.id, p.id);
  assert.equal(s.patient.mrn, mrnOf(p));
  assert.equal(s.patient.birth_date, p.birthDate);
  assert.ok(s.data_as_of, 'data as of the last sync');
  const mine = (type) => w.data.resources.filter((x) => x.resourceType === type && ((x.subject || x.patient || {}).reference === `Patient/${p.id}`));
  const activeMeds = mine('MedicationRequest').filter((m) => m.status === 'active' || m.status === 'on-hold');
  assert.deepEqual(s.medications.map((m) => m.id).sort(), activeMeds.map((m) => m.id).sort());
  assert.deepEqual(s.allergies.map((a) => a.id).sort(), mine('AllergyIntolerance').map((a) => a.id).sort());
  const text = await bridge(w.cfgPath, ['summary', '--patient', mrnOf(p)]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /data as of/i);

  const family = p.name[0].family;
  const found = await bridge(w.cfgPath, ['summary', '--search', `${family} ${p.birthDate}`, '--json']);
  assert.equal(found.code, 0, found.stderr);
  assert.ok(JSON.parse(found.stdout).some((x) => x.id === p.id), 'found by family name and birth date');

  const audit = JSON.parse((await bridge(w.cfgPath, ['audit', '--json'])).stdout);
  assert.ok(audit.some((a) => a.actor === 'nurse1' && a.action === 'view' && a.subject === p.id), 'the view is audited');
  assert.ok(audit.some((a) => a.action === 'search'), 'the search is audited');
  assert.ok(!JSON.stringify(audit).includes(family), 'no name in the audit log');
  const verify = await bridge(w.cfgPath, ['audit', '--verify']);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, /intact/);

  // No plaintext family name in any store file (the index holds keyed hashes).
  for (const f of readdirSync(w.dir).filter((n) => n.startsWith('bridge.db'))) {
    const bytes = readFileSync(join(w.dir, f));
    assert.ok(!bytes.includes(Buffer.from(family)), `${f} holds the family name in clear`);
    assert.ok(!bytes.includes(Buffer.from(mrnOf(p))), `${f} holds the MRN in clear`);
  }
});

test('the EHR goes dark: down within 30 s; 100 entries charted meanwhile; up within 30 s of its return; each entry exactly once in the EHR with its Provenance, and in REDCap', async (t) => {
  const w = await world(t, { patients: 5, seed: '43' });
  const d = startDaemon(t, w.cfgPath);
  await waitFor('the daemon up', async () => (await status(w.cfgPath)).ehr.state === 'up' && /sync complete/.test(d.log));

  const obsBefore = (await w.fhir.control('ids?type=Observation')).length;
  const t0 = Date.now();
  await w.fhir.control('outage', { mode: 'drop' });
  const down = await waitFor('ehr.state down', async () => (await status(w.cfgPath)).ehr.state === 'down', 45000);
  const downMs = Date.now() - t0;
  assert.ok(downMs <= 30000, `down after ${downMs} ms`);
  assert.match(d.log, /EHR DOWN/);

  const uuids = [];
  for (let i = 0; i < 100; i++) {
    const p = w.patients[i % w.patients.length];
    uuids.push(await chartHr(w, p, 60 + (i % 40), isoMinus(200 - i)));
  }
  let st = await status(w.cfgPath);
  assert.equal(st.downtime.pending, 100);
  assert.equal((await w.fhir.control('ids?type=Observation')).length, obsBefore, 'nothing reached the EHR during the outage');

  const tx0 = (await w.fhir.control('stats')).requests.byKind.transaction || 0;
  const t1 = Date.now();
  await w.fhir.control('outage', { mode: 'off' });
  await waitFor('ehr.state up', async () => (await status(w.cfgPath)).ehr.state === 'up', 45000);
  const upMs = Date.now() - t1;
  assert.ok(upMs <= 30000, `up after ${upMs} ms`);
  await waitFor('all entries written', async () => (await status(w.cfgPath)).downtime.written === 100, 60000);
  await assertExactlyOnce(w, uuids);
  // The test server takes at most 4 entries with conditional creates per
  // transaction: the Bundles of 50 are refused and halved until taken.
  const txs = ((await w.fhir.control('stats')).requests.byKind.transaction || 0) - tx0;
  assert.match(d.log, /refused a Bundle of 50 entries .*sending 25 at a time/);
  assert.ok(txs < 60, `${txs} transactions for 100 entries: the Bundle size adapted instead of falling to one entry each`);

  // Then on to REDCap through the normal curation: one vitals instance per entry.
  await assertInRedcapOnce(w, uuids, d);
  st = await status(w.cfgPath);
  assert.equal(st.downtime.pending, 0);
  d.proc.kill('SIGTERM');
  const ex = await d.exit;
  assert.equal(ex.code, 0, d.log.slice(-2000));
  t.diagnostic(`down after ${downMs} ms (${down.ms} ms of polling), up after ${upMs} ms; ${txs} transactions for 100 entries`);
});

test('while the EHR is down, REDCap pushes of what is already curated go on', async (t) => {
  const w = await world(t, { patients: 3, seed: '49' });
  // New data is pulled and curated while REDCap is offline: it waits in the outbox.
  await w.redcap.control('offline', { system: true });
  for (let i = 0; i < 3; i++) await chartHr(w, w.patients[i], 70 + i, isoMinus(30 - i));
  const s1 = await syncOnce(w.cfgPath);
  assert.equal(s1.result.downtime.written, 3, s1.stderr);
  assert.equal(s1.code, 1, 'the push could not complete');
  const pending0 = (await status(w.cfgPath)).outbox.example.pending;
  assert.ok(pending0 > 0, `rows wait in the outbox (${pending0})`);
  // The EHR goes dark, the daemon knows it; then REDCap comes back.
  await w.fhir.control('outage', { mode: 'drop' });
  const d = startDaemon(t, w.cfgPath);
  await waitFor('ehr.state down', async () => (await status(w.cfgPath)).ehr.state === 'down', 45000);
  // A cycle that knows the EHR is down skips the pull and still pushes
  // (REDCap comes back only then: the first cycle's push, whose pull failed,
  // could otherwise get it done before any such cycle).
  await waitFor('a cycle without a pull', async () => /no pull this cycle; pushing what is curated/.test(d.log), 45000, 100);
  await w.redcap.control('offline', { system: false });
  await waitFor('the outbox sent', async () => (await status(w.cfgPath)).outbox.example.pending === 0, 60000, 500);
  const st = await status(w.cfgPath);
  assert.equal(st.ehr.state, 'down', 'still down: the rows went to REDCap during the outage');
  d.proc.kill('SIGTERM');
  assert.equal((await d.exit).code, 0, d.log.slice(-2000));
});

test('an EHR that hangs in the middle of a long pull: down within 30 s, the pull stops; back up and the crawl completes', async (t) => {
  const w = await world(t, { patients: 40, seed: '47', redcap: false });
  // New data and slow pages: the daemon's next pull takes a while.
  await w.fhir.control('touch', { type: 'Observation', count: 1000 });
  await w.fhir.control('faults', { kind: 'delay', ms: 500, times: 100000 });
  const d = startDaemon(t, w.cfgPath);
  await waitFor('a pull in progress', async () => {
    const st = await status(w.cfgPath);
    return st.cursors.some((c) => c.type === 'Observation' && c.crawl_in_progress);
  }, 60000, 100);
  const t0 = Date.now();
  await w.fhir.control('outage', { mode: 'hang' });
  await waitFor('ehr.state down', async () => (await status(w.cfgPath)).ehr.state === 'down', 45000);
  const downMs = Date.now() - t0;
  assert.ok(downMs <= 30000, `down after ${downMs} ms`);
  const held = (await w.fhir.control('outage')).requests;
  await sleep(6000);
  const later = (await w.fhir.control('outage')).requests;
  assert.ok(later - held <= 3, `while down only probes reach the EHR (${later - held} requests in 6 s)`);
  await w.fhir.control('faults', undefined, 'DELETE');
  await w.fhir.control('outage', { mode: 'off' });
  await waitFor('ehr.state up', async () => (await status(w.cfgPath)).ehr.state === 'up', 45000);
  await waitFor('the crawl complete', async () => {
    const st = await status(w.cfgPath);
    return st.cursors.every((c) => !c.crawl_in_progress && !c.last_error);
  }, 60000);
  t.diagnostic(`down ${downMs} ms after the EHR started hanging`);
  d.proc.kill('SIGTERM');
  assert.equal((await d.exit).code, 0, d.log.slice(-2000));
});

test('kill -9 during the resync at several points, restart: every entry exactly once in the EHR', async (t) => {
  const w = await world(t, { patients: 4, seed: '44', downtime: { resync_batch: 5 } });
  await w.fhir.control('outage', { mode: 'drop' });
  const uuids = [];
  for (let i = 0; i < 60; i++) uuids.push(await chartHr(w, w.patients[i % 4], 70 + (i % 20), isoMinus(100 - i)));
  await w.fhir.control('outage', { mode: 'off' });
  // Transactions answer slowly: a kill lands while one is in flight (the EHR
  // has written it, the bridge has not recorded it).
  await w.fhir.control('faults', { kind: 'delay', ms: 400, method: 'POST', times: 1000 });
  for (let round = 0; round < 4; round++) {
    const d = startDaemon(t, w.cfgPath);
    const before = (await status(w.cfgPath)).downtime.written;
    await waitFor('some progress', async () => (await status(w.cfgPath)).downtime.written > before || (await status(w.cfgPath)).downtime.pending === 0, 60000, 100);
    await sleep(150 + round * 170);
    d.proc.kill('SIGKILL');
    await d.exit;
  }
  await w.fhir.control('faults', undefined, 'DELETE');
  const d = startDaemon(t, w.cfgPath);
  await waitFor('all written', async () => (await status(w.cfgPath)).downtime.written === 60, 90000);
  await assertExactlyOnce(w, uuids);
  await assertInRedcapOnce(w, uuids, d);
  d.proc.kill('SIGTERM');
  await d.exit;
});

test('412: a medication stopped during downtime that the EHR changed meanwhile becomes a conflict; review shows both and reapplies', async (t) => {
  const w = await world(t, { patients: 8, seed: '45', redcap: false });
  const mr = w.data.resources.find((r) => r.resourceType === 'MedicationRequest' && r.status === 'active');
  assert.ok(mr, 'the data has an active MedicationRequest');
  const patient = w.patients.find((p) => `Patient/${p.id}` === mr.subject.reference);
  await w.fhir.control('outage', { mode: 'drop' });
  const r = await bridge(w.cfgPath, ['chart', 'med-stop', '--user', 'nurse1', '--patient', mrnOf(patient), '--request', mr.id, '--reason', 'adverse reaction']);
  assert.equal(r.code, 0, r.stderr);
  const uuid = r.stdout.trim();
  await w.fhir.control('outage', { mode: 'off' });
  // Someone changes the order in the EHR meanwhile: a new version.
  await w.fhir.control('touch', { type: 'MedicationRequest', ids: [mr.id] });

  const s1 = await syncOnce(w.cfgPath);
  assert.equal(s1.result.downtime.conflicts, 1, s1.stderr);
  const cur = await w.fhir.fhir(`MedicationRequest/${mr.id}`);
  assert.equal(cur.body.status, 'active', 'no overwrite');
  const list = await bridge(w.cfgPath, ['review', 'entries', '--json']);
  const entries = JSON.parse(list.stdout);
  assert.deepEqual(entries.map((e) => [e.uuid, e.state]), [[uuid, 'conflict']]);
  const show = await bridge(w.cfgPath, ['review', 'show', uuid]);
  assert.match(show.stdout, /the bridge's version/);
  assert.match(show.stdout, /the EHR's current version/);
  const re = await bridge(w.cfgPath, ['review', 'reapply', uuid, '--by', 'pharmacist']);
  assert.equal(re.code, 0, re.stderr);
  const s2 = await syncOnce(w.cfgPath);
  assert.equal(s2.result.downtime.written, 1, s2.stderr);
  const after = await w.fhir.fhir(`MedicationRequest/${mr.id}`);
  assert.equal(after.body.status, 'stopped');
  assert.ok(after.body.extension.some((e) => e.url && e.url.includes('touch')), 'the EHR change was kept');
  assert.equal((await w.fhir.fhir(`Provenance/dt-${uuid}`)).status, 200);
});

test('a note and a medication administration reach the EHR as DocumentReference and MedicationAdministration', async (t) => {
  const w = await world(t, { patients: 8, seed: '48', redcap: false });
  const mr = w.data.resources.find((r) => r.resourceType === 'MedicationRequest' && r.status === 'active');
  const patient = w.patients.find((p) => `Patient/${p.id}` === mr.subject.reference);
  const note = await bridge(w.cfgPath, ['chart', 'note', '--user', 'nurse1', '--patient', mrnOf(patient), '--text', 'Pt comfortable, no distress.\nSecond line: ü, 100%']);
  assert.equal(note.code, 0, note.stderr);
  const adm = await bridge(w.cfgPath, ['chart', 'med-admin', '--user', 'nurse1', '--patient', mrnOf(patient), '--request', mr.id, '--dose', '500', '--dose-unit', 'mg', '--route', 'oral']);
  assert.equal(adm.code, 0, adm.stderr);
  const other = w.patients.find((p) => p.id !== patient.id);
  const wrong = await bridge(w.cfgPath, ['chart', 'med-admin', '--user', 'nurse1', '--patient', mrnOf(other), '--request', mr.id]);
  assert.equal(wrong.code, 1, 'an order of another patient is refused');
  const s = await syncOnce(w.cfgPath);
  assert.equal(s.result.downtime.written, 2, s.stderr);
  const [doc] = (await ehrEntries(w.fhir, 'DocumentReference')).get(note.stdout.trim());
  assert.equal(Buffer.from(doc.content[0].attachment.data, 'base64').toString('utf8'), 'Pt comfortable, no distress.\nSecond line: ü, 100%');
  assert.equal(doc.subject.reference, `Patient/${patient.id}`);
  const [ma] = (await ehrEntries(w.fhir, 'MedicationAdministration')).get(adm.stdout.trim());
  assert.equal(ma.request.reference, `MedicationRequest/${mr.id}`);
  assert.deepEqual(ma.medicationCodeableConcept, mr.medicationCodeableConcept);
  assert.equal(ma.dosage.dose.value, 500);
  assert.equal((await w.fhir.fhir(`Provenance/dt-${adm.stdout.trim()}`)).status, 200);
});

test('a patient registered during downtime: entries wait until a person links it, then go to the EHR', async (t) => {
  const w = await world(t, { patients: 3, seed: '46', redcap: false });
  const reg = await bridge(w.cfgPath, ['chart', 'register', '--user', 'nurse1', '--family', 'Doe', '--given', 'Jane', '--birth-date', '1980-02-03', '--gender', 'female']);
  assert.equal(reg.code, 0, reg.stderr);
  const temp = reg.stdout.trim();
  assert.match(temp, /^DT-[A-Z0-9]{10}$/);
  const r = await bridge(w.cfgPath, ['chart', 'vitals', '--user', 'nurse1', '--patient', temp, '--code', 'hr', '--value', '88']);
  assert.equal(r.code, 0, r.stderr);
  const uuid = r.stdout.trim();
  const s1 = await syncOnce(w.cfgPath);
  assert.equal(s1.result.downtime.written, 0);
  assert.equal((await status(w.cfgPath)).downtime.waiting_link, 1);
  assert.equal((await ehrEntries(w.fhir, 'Observation')).size, 0, 'nothing written for an unlinked patient');
  const sum = await bridge(w.cfgPath, ['summary', '--patient', temp]);
  assert.match(sum.stdout, /TEMPORARY PATIENT/);

  const real = w.patients[1];
  const link = await bridge(w.cfgPath, ['review', 'link', temp, '--patient', mrnOf(real), '--by', 'registrar']);
  assert.equal(link.code, 0, link.stderr);
  assert.match(link.stdout, /1 entry will be written/);
  const again = await bridge(w.cfgPath, ['review', 'link', temp, '--patient', mrnOf(w.patients[2])]);
  assert.equal(again.code, 1, 'a link is made once');
  const s2 = await syncOnce(w.cfgPath);
  assert.equal(s2.result.downtime.written, 1, s2.stderr);
  const [obs] = (await ehrEntries(w.fhir, 'Observation')).get(uuid);
  assert.equal(obs.subject.reference, `Patient/${real.id}`);
});
