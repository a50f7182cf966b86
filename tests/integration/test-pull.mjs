// The pull against the real FHIR server: first sync, incremental sync,
// resources created during a crawl, kill -9 and resume, faults.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  startFhirServer, tempDir, writeConfig, syncOnce, storeIds, status, cleanup, runBridge, TYPES, sleep,
} from './lib.mjs';

let srv;
before(async () => {
  srv = await startFhirServer(['--generate', '12', '--seed', '7']);
});
after(async () => { await srv?.stop(); });

async function assertStoreEqualsServer(cfg, types = TYPES) {
  for (const t of types) {
    const want = await srv.ids(t);
    const got = await storeIds(cfg, t);
    assert.deepEqual(got, want, `store vs server for ${t}`);
  }
}

test('first sync stores exactly what the server holds; status counts it', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base);
    const r = await syncOnce(cfg);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.result.ok, true);
    await assertStoreEqualsServer(cfg);
    const st = await status(cfg);
    for (const t of TYPES) {
      const n = (await srv.ids(t)).length;
      assert.ok(n > 0, `generator made ${t}`);
      assert.equal(st.resources[t], n, `status count for ${t}`);
    }
    assert.equal(st.cursors.length, TYPES.length);
    for (const c of st.cursors) {
      assert.equal(c.crawl_in_progress, false);
      assert.match(c.watermark, /^\d{4}-\d\d-\d\dT/);
    }
    assert.ok(st.last_sync);
    // The key file was generated with mode 0600; the database holds no plaintext body.
    assert.equal(statSync(join(dir, 'store.key')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'bridge.db')).mode & 0o077, 0, 'the database is private to its owner');
    const anyPatient = (await srv.fhir('Patient?_count=1')).body.entry[0].resource;
    const family = anyPatient.name[0].family;
    for (const f of readdirSync(dir).filter((x) => x.startsWith('bridge.db'))) {
      assert.equal(readFileSync(join(dir, f)).includes(Buffer.from(family)), false, `plaintext name in ${f}`);
    }
  } finally { cleanup(dir); }
});

test('a second sync pulls only what changed', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base);
    // The watermark comes from the server's Date header (whole seconds), so
    // a crawl re-reads up to a second before it started: let the generated
    // data age past that.
    await sleep(1100);
    assert.equal((await syncOnce(cfg)).code, 0);
    await sleep(20);
    const touched = await srv.control('touch', { type: 'Observation', count: 7 });
    assert.ok(touched);
    const r = await syncOnce(cfg);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.result.types.Observation.fetched, 7);
    assert.equal(r.result.types.Observation.new, 7);
    assert.equal(r.result.types.Observation.full_crawl, false);
    for (const t of TYPES.filter((x) => x !== 'Observation')) assert.equal(r.result.types[t].fetched, 0, t);
    await assertStoreEqualsServer(cfg);
    const st = await status(cfg);
    assert.equal(st.versions.Observation, st.resources.Observation + 7);
  } finally { cleanup(dir); }
});

test('resources created during a crawl are not missed', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { page_size: 5, resources: ['Observation'] } });
    // Slow down the second page of the crawl, and create resources meanwhile.
    await srv.control('faults', { match: '_getpages', times: 1, kind: 'delay', ms: 1500 });
    const run = syncOnce(cfg);
    await sleep(500);
    const pat = (await srv.ids('Patient'))[0].id;
    const created = [];
    for (let i = 0; i < 3; i++) {
      const r = await srv.fhir('Observation', {
        method: 'POST',
        headers: { 'content-type': 'application/fhir+json' },
        body: JSON.stringify({
          resourceType: 'Observation', status: 'final',
          code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
          subject: { reference: `Patient/${pat}` }, valueQuantity: { value: 70 + i, unit: '/min' },
        }),
      });
      assert.equal(r.status, 201);
      created.push(r.body.id);
    }
    const r1 = await run;
    assert.equal(r1.code, 0, r1.stderr);
    const r2 = await syncOnce(cfg);
    assert.equal(r2.code, 0, r2.stderr);
    const ids = (await storeIds(cfg, 'Observation')).map((x) => x.id);
    for (const id of created) assert.ok(ids.includes(id), `created ${id} in store`);
    await assertStoreEqualsServer(cfg, ['Observation']);
  } finally { await srv.control('faults', undefined, 'DELETE'); cleanup(dir); }
});

test('kill -9 at several points mid-pull, then rerun: store equals server, no duplicates', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { page_size: 2, max_concurrency: 2 } });
    // Slow every page so that the whole pull takes several seconds and each
    // kill lands mid-crawl; every rerun resumes where the last one stopped.
    await srv.control('faults', { times: 100000, kind: 'delay', ms: 40 });
    for (const ms of [150, 400, 700, 1100]) {
      let child;
      const run = runBridge(['sync', '--once', '--config', cfg], { onSpawn: (p) => { child = p; } });
      await sleep(ms);
      child.kill('SIGKILL');
      const r = await run;
      assert.equal(r.signal, 'SIGKILL', `killed at ${ms} ms (exit ${r.code}: ${r.stderr.slice(-400)})`);
    }
    const mid = await status(cfg);
    assert.ok(mid.cursors.some((c) => c.crawl_in_progress) || Object.keys(mid.resources).length > 0,
      'the kills left partial progress');
    await srv.control('faults', undefined, 'DELETE');
    const r = await syncOnce(cfg);
    assert.equal(r.code, 0, r.stderr);
    await assertStoreEqualsServer(cfg);
    const st = await status(cfg);
    for (const t of TYPES) assert.equal(st.versions[t], st.resources[t], `one version per resource for ${t}`);
  } finally { await srv.control('faults', undefined, 'DELETE'); cleanup(dir); }
});

test('429 with Retry-After and 503 are retried; the sync completes', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { resources: ['Patient'] } });
    await srv.control('faults', { match: 'Patient', times: 1, status: 429, headers: { 'Retry-After': '1' } });
    await srv.control('faults', { match: 'Patient', times: 2, status: 503 });
    const t0 = Date.now();
    const r = await syncOnce(cfg);
    const took = Date.now() - t0;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(took >= 1000, `waited for Retry-After (took ${took} ms)`);
    assert.match(r.stderr, /HTTP 429, Retry-After: 1/);
    assert.match(r.stderr, /HTTP 503/);
    assert.equal(r.result.requests, 4);
    await assertStoreEqualsServer(cfg, ['Patient']);
  } finally { await srv.control('faults', undefined, 'DELETE'); cleanup(dir); }
});

test('a dropped connection and a truncated body are retried', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { resources: ['Condition'], page_size: 5 } });
    await srv.control('faults', { match: 'Condition', times: 1, kind: 'drop' });
    await srv.control('faults', { match: '_getpages', times: 1, kind: 'truncate' });
    const r = await syncOnce(cfg);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.result.requests >= 3);
    await assertStoreEqualsServer(cfg, ['Condition']);
  } finally { await srv.control('faults', undefined, 'DELETE'); cleanup(dir); }
});

test('an invalid-JSON page fails that type with the URL and position; nothing stored is lost; rerun completes', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { resources: ['Observation', 'Patient'], page_size: 10 } });
    await srv.control('faults', { match: '_getpagesoffset=20&', times: 1, kind: 'invalid-json' });
    const r = await syncOnce(cfg);
    assert.equal(r.code, 1);
    assert.equal(r.result.types.Patient.ok, true, 'the other type goes on');
    assert.equal(r.result.types.Observation.ok, false);
    assert.match(r.result.types.Observation.error, /bad page from http:\/\/127\.0\.0\.1:\d+\/fhir\/R4.*_getpagesoffset=20/);
    assert.match(r.result.types.Observation.error, /line \d+ column \d+/);
    assert.equal((await storeIds(cfg, 'Observation')).length, 20, 'the two pages before stay stored');
    const st = await status(cfg);
    const c = st.cursors.find((x) => x.type === 'Observation');
    assert.equal(c.crawl_in_progress, true);
    assert.match(c.last_error, /bad page/);
    const r2 = await syncOnce(cfg);
    assert.equal(r2.code, 0, r2.stderr);
    await assertStoreEqualsServer(cfg, ['Observation', 'Patient']);
  } finally { await srv.control('faults', undefined, 'DELETE'); cleanup(dir); }
});

test('a 4xx with an OperationOutcome fails the type with its diagnostics', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { resources: ['Patient'] } });
    const oo = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'forbidden', diagnostics: 'access to Patient denied by policy' }] };
    await srv.control('faults', { match: 'Patient', times: 1, status: 403, body: JSON.stringify(oo) });
    const r = await syncOnce(cfg);
    assert.equal(r.code, 1);
    assert.match(r.result.types.Patient.error, /HTTP 403.*access to Patient denied by policy/);
  } finally { await srv.control('faults', undefined, 'DELETE'); cleanup(dir); }
});

test('a server that rejects _lastUpdated gets a full crawl with a warning', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { resources: ['AllergyIntolerance'] } });
    assert.equal((await syncOnce(cfg)).code, 0);
    await srv.control('reject-lastupdated', { on: true });
    const r = await syncOnce(cfg);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /rejected the _lastUpdated search.*falling back to a full crawl/);
    assert.equal(r.result.types.AllergyIntolerance.full_crawl, true);
    assert.equal(r.result.types.AllergyIntolerance.new, 0, 'a full crawl re-reads but stores nothing twice');
    await assertStoreEqualsServer(cfg, ['AllergyIntolerance']);
  } finally { await srv.control('reject-lastupdated', { on: false }); cleanup(dir); }
});

test('run: the daemon syncs, status works while it runs, SIGTERM stops it cleanly', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { poll_interval_s: 1 } });
    let child;
    const run = runBridge(['run', '--config', cfg], { onSpawn: (p) => { child = p; } });
    let st;
    for (let i = 0; i < 100; i++) {
      await sleep(100);
      try { st = await status(cfg); } catch { continue; }
      if (st.last_sync && st.cursors.length === TYPES.length && st.cursors.every((c) => c.last_success)) break;
    }
    assert.ok(st && st.cursors.every((c) => c.last_success), 'a cycle completed');
    await srv.control('touch', { type: 'Patient', count: 2 });
    await sleep(2500); // at least one more cycle
    child.kill('SIGTERM');
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /stopping after the transaction in flight/);
    await assertStoreEqualsServer(cfg);
  } finally { cleanup(dir); }
});

test('SIGTERM mid-crawl commits the page in flight and stops; a second signal exits at once', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { page_size: 2, max_concurrency: 1 } });
    await srv.control('faults', { times: 100000, kind: 'delay', ms: 30 });
    let child;
    let run = runBridge(['run', '--config', cfg], { onSpawn: (p) => { child = p; } });
    await sleep(700);
    child.kill('SIGTERM');
    let r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /stopping after the transaction in flight/);
    const st = await status(cfg);
    assert.ok(st.cursors.some((c) => c.crawl_in_progress), 'stopped mid-crawl');
    for (const t of Object.keys(st.resources)) assert.equal(st.versions[t], st.resources[t]);

    run = runBridge(['run', '--config', cfg], { onSpawn: (p) => { child = p; } });
    await sleep(500);
    child.kill('SIGTERM');
    child.kill('SIGTERM');
    const t0 = Date.now();
    r = await run;
    // Exits at once: 143 from the second signal's handler, or the default
    // action if the first stop had already closed the handlers.
    assert.ok(r.code === 143 || r.signal === 'SIGTERM' || r.code === 0, `exit ${r.code} ${r.signal}`);
    assert.ok(Date.now() - t0 < 2000, 'no waiting for the crawl');

    await srv.control('faults', undefined, 'DELETE');
    const done = await syncOnce(cfg);
    assert.equal(done.code, 0, done.stderr);
    await assertStoreEqualsServer(cfg);
  } finally { await srv.control('faults', undefined, 'DELETE'); cleanup(dir); }
});

test('the watermark follows the server clock when it runs behind ours', async () => {
  const own = await startFhirServer([]);
  const dir = tempDir();
  try {
    await own.control('clock', { offset_ms: -10 * 60 * 1000 });
    for (const family of ['Alpha', 'Beta']) {
      const r = await own.fhir('Patient', { method: 'POST', headers: { 'content-type': 'application/fhir+json' },
        body: JSON.stringify({ resourceType: 'Patient', name: [{ family }] }) });
      assert.equal(r.status, 201);
    }
    await sleep(1100); // the Date header has whole seconds: keep the two out of the overlap
    const cfg = writeConfig(dir, own.base, { fhir: { resources: ['Patient'] } });
    const r1 = await syncOnce(cfg);
    assert.equal(r1.code, 0, r1.stderr);
    assert.match(r1.stderr, /server's clock is about \d+ s behind ours/);
    await sleep(20);
    await own.control('touch', { type: 'Patient', count: 1 });
    const r2 = await syncOnce(cfg);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(r2.result.types.Patient.fetched, 1, 'the update stamped by the slow clock is pulled');
    assert.equal(r2.result.types.Patient.new, 1);
    assert.deepEqual(await storeIds(cfg, 'Patient'), await own.ids('Patient'));
  } finally { cleanup(dir); await own.stop(); }
});
