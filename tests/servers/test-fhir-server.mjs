// Tests of the test FHIR server, the generator and the static page server.
//   node --test tests/servers/test-fhir-server.mjs
// Servers run as child processes on free loopback ports.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, randomUUID, sign as cryptoSign } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generate } from './generate.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fhir-server-test-'));
const children = [];

/* ------------------------------------------------------------ helpers */

/* Starts a script as a child; resolves once it prints LISTENING. */
function spawnServer(script, args) {
  const child = spawn(process.execPath, [path.join(here, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${script} did not start: ${stderr}`)), 30000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^LISTENING (http:\/\/127\.0\.0\.1:\d+\/fhir\/R4)\n/m.exec(out);
      if (m) {
        clearTimeout(timer);
        const base = m[1];
        resolve({ child, base, origin: new URL(base).origin, stderr: () => stderr });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited with ${code}: ${stderr}`));
    });
  });
}

/* Stops a child with SIGTERM; resolves to its exit code. */
function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.removeAllListeners('exit');
    child.once('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

/*
 * One HTTP request on a fresh connection (no keep-alive, no retries), so
 * each injected fault hits exactly one request. Resolves
 * {status, headers, text, json()}; rejects on a connection error or an
 * incomplete body (err.partial = {status, headers, received}).
 */
function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const payload =
      body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const h = { ...headers };
    if (payload !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
      h['content-type'] = 'application/fhir+json';
    }
    const req = http.request(url, { method, headers: h, agent: false }, (res) => {
      const chunks = [];
      let failed = false;
      const fail = () => {
        if (failed) return;
        failed = true;
        const received = Buffer.concat(chunks).length;
        reject(Object.assign(new Error('incomplete response'), { partial: { status: res.statusCode, headers: res.headers, received } }));
      };
      res.on('data', (c) => chunks.push(c));
      res.on('error', fail);
      res.on('aborted', fail);
      res.on('close', () => {
        if (!res.complete) fail();
      });
      res.on('end', () => {
        if (!res.complete) return fail();
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const control = async (origin, name, body, method = 'POST') => {
  const r = await request(`${origin}/__control/${name}`, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
  assert.ok(r.status < 300, `control ${name}: ${r.status} ${r.text}`);
  return r.json();
};

const loadNdjson = async (origin, resources, query = '') => {
  const r = await request(`${origin}/__control/load${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body: resources.map((x) => JSON.stringify(x)).join('\n') + '\n',
  });
  assert.equal(r.status, 200, r.text);
  return r.json();
};

/* Follows next links from `url`; returns {ids (in order), pages, bundles}. */
async function crawl(url, { onPage } = {}) {
  const ids = [];
  const bundles = [];
  let pages = 0;
  while (url) {
    const r = await request(url);
    assert.equal(r.status, 200, r.text);
    const b = r.json();
    bundles.push(b);
    pages++;
    for (const e of b.entry ?? []) {
      assert.equal(e.search?.mode, 'match');
      ids.push(e.resource.id);
    }
    if (onPage) await onPage(b, pages);
    url = b.link?.find((l) => l.relation === 'next')?.url;
  }
  return { ids, pages, bundles };
}

const searchIds = async (url) => {
  const r = await request(url);
  assert.equal(r.status, 200, r.text);
  return (r.json().entry ?? []).map((e) => e.resource.id);
};

/* ------------------------------------------------------------ JWT */

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function signJwt(header, claims, privateKey) {
  const data = `${b64url(header)}.${b64url(claims)}`;
  let sig;
  if (header.alg === 'RS384') sig = cryptoSign('sha384', Buffer.from(data), privateKey);
  else if (header.alg === 'ES384') sig = cryptoSign('sha384', Buffer.from(data), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  else sig = Buffer.from('x');
  return `${data}.${sig.toString('base64url')}`;
}

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const rogue = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = (pair, kid) => ({ ...pair.publicKey.export({ format: 'jwk' }), kid });

/* ----------------------------------------------------- main server */

let main;

before(async () => {
  const portFile = path.join(tmp, 'port');
  main = await spawnServer('fhir-server.mjs', ['--port', '0', '--port-file', portFile, '--default-count', '50']);
  main.portFile = portFile;
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('metadata is a CapabilityStatement and the port file names the base', async () => {
  assert.equal(fs.readFileSync(main.portFile, 'utf8'), main.base + '\n');
  const r = await request(`${main.base}/metadata`);
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /application\/fhir\+json/);
  const cs = r.json();
  assert.equal(cs.resourceType, 'CapabilityStatement');
  assert.equal(cs.fhirVersion, '4.0.1');
  assert.equal(cs.rest[0].security, undefined);
  const obs = cs.rest[0].resource.find((x) => x.type === 'Observation');
  const names = obs.searchParam.map((p) => p.name);
  for (const n of ['_id', '_lastUpdated', 'patient', 'subject', 'code', 'identifier']) assert.ok(names.includes(n), n);
  assert.ok(obs.interaction.some((i) => i.code === 'search-type'));
});

test('generator is deterministic and well-formed', async () => {
  const run = (args) =>
    new Promise((resolve, reject) => {
      const c = spawn(process.execPath, [path.join(here, 'generate.mjs'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
      const chunks = [];
      c.stdout.on('data', (d) => chunks.push(d));
      c.on('exit', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`exit ${code}`))));
    });
  const a = await run(['--patients', '40', '--seed', '42', '--obs-per-patient', '15']);
  const b = await run(['--patients', '40', '--seed', '42', '--obs-per-patient', '15']);
  const c = await run(['--patients', '40', '--seed', '43', '--obs-per-patient', '15']);
  const sha = (x) => createHash('sha256').update(x).digest('hex');
  assert.equal(sha(a), sha(b));
  assert.notEqual(sha(a), sha(c));
  const outFile = path.join(tmp, 'gen.ndjson');
  await run(['--patients', '40', '--seed', '42', '--obs-per-patient', '15', '--out', outFile]);
  assert.equal(sha(fs.readFileSync(outFile)), sha(a));
  const inProcess = generate({ patients: 40, seed: '42', obsPerPatient: 15 });
  assert.equal(sha(inProcess.map((r) => JSON.stringify(r) + '\n').join('')), sha(a));

  const resources = a.toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
  const patients = resources.filter((r) => r.resourceType === 'Patient');
  assert.equal(patients.length, 40);
  assert.equal(patients[0].id, 'pat-000001');
  assert.deepEqual(
    patients[6].identifier.map((i) => [i.system, i.value]),
    [['urn:oid:1.2.36.146.595.217.0.1', 'MRN00000007']]
  );
  const patientIds = new Set(patients.map((p) => `Patient/${p.id}`));
  const obs = resources.filter((r) => r.resourceType === 'Observation');
  assert.equal(obs.length, 40 * 15);
  assert.equal(obs[2].id, 'obs-000001-0003');
  for (const r of resources) {
    if (r.resourceType === 'Patient') continue;
    const ref = (r.subject ?? r.patient).reference;
    assert.ok(patientIds.has(ref), `${r.id} -> ${ref}`);
  }
  const codes = new Set(obs.map((o) => o.code.coding[0].code));
  for (const code of ['8867-4', '85354-9', '9279-1', '8310-5', '59408-5', '29463-7', '2160-0', '2345-7', '718-7', '6690-2', '2823-3', '2951-2']) {
    assert.ok(codes.has(code), code);
  }
  const bp = obs.find((o) => o.code.coding[0].code === '85354-9');
  assert.deepEqual(bp.component.map((x) => [x.code.coding[0].code, x.valueQuantity.code]), [
    ['8480-6', 'mm[Hg]'],
    ['8462-4', 'mm[Hg]'],
  ]);
  for (const o of obs.filter((x) => x.valueQuantity)) assert.equal(o.valueQuantity.system, 'http://unitsofmeasure.org');
  const offsets = new Set(
    resources.filter((r) => r.resourceType === 'Encounter').map((e) => /(Z|[+-]\d\d:\d\d)$/.exec(e.period.start)[1])
  );
  assert.ok([...offsets].some((o) => o !== 'Z' && o !== '+00:00'), [...offsets].join(','));
  for (const t of ['Condition', 'MedicationRequest', 'AllergyIntolerance']) {
    assert.ok(resources.some((r) => r.resourceType === t), t);
  }

  const only = generate({ observationsOnly: 500, seed: 's' });
  assert.equal(only.filter((r) => r.resourceType === 'Observation').length, 500);
  const avg = only.filter((r) => r.resourceType === 'Observation').reduce((s, r) => s + JSON.stringify(r).length, 0) / 500;
  assert.ok(avg > 450 && avg < 700, `average Observation size ${avg}`);
});

test('load then paged search returns every id once, in _lastUpdated order', async () => {
  await control(main.origin, 'reset', {});
  const data = generate({ patients: 150, seed: 'paging', obsPerPatient: 12 });
  const loaded = await loadNdjson(main.origin, data);
  assert.equal(loaded.loaded, data.length);
  const expected = data.filter((r) => r.resourceType === 'Observation').map((r) => r.id).sort();
  assert.equal(expected.length, 1800);

  const { ids, pages, bundles } = await crawl(`${main.base}/Observation?_sort=_lastUpdated&_count=137`);
  assert.equal(pages, Math.ceil(1800 / 137));
  assert.equal(new Set(ids).size, ids.length, 'no duplicates');
  assert.deepEqual([...ids].sort(), expected);
  assert.equal(bundles[0].total, 1800);
  const next = bundles[0].link.find((l) => l.relation === 'next').url;
  assert.ok(next.startsWith(`${main.base}?_getpages=`), next);
  assert.match(next, /_getpagesoffset=137&_count=137/);
  const stamps = bundles.flatMap((b) => (b.entry ?? []).map((e) => [e.resource.meta.lastUpdated, e.resource.id]));
  for (let i = 1; i < stamps.length; i++) {
    const [pl, pi] = stamps[i - 1];
    const [l, id] = stamps[i];
    assert.ok(pl < l || (pl === l && pi < id), `order at ${i}`);
  }

  const listed = await (await request(`${main.origin}/__control/ids?type=Observation`)).json();
  assert.deepEqual(listed.map((x) => x.id), expected);
  assert.ok(listed.every((x) => x.versionId === '1' && typeof x.lastUpdated === 'string'));

  // The snapshot ran the query once; pages only read it.
  const stats = await (await request(`${main.origin}/__control/stats`)).json();
  assert.equal(stats.searches.snapshots, 1);
  assert.equal(stats.searches.pages, pages - 1);
});

test('paging is stable while resources are created and updated mid-crawl', async () => {
  await control(main.origin, 'reset', {});
  const data = generate({ observationsOnly: 1000, seed: 'stable' });
  await loadNdjson(main.origin, data);
  const expected = data.filter((r) => r.resourceType === 'Observation').map((r) => r.id).sort();
  let touched;
  const { ids, bundles } = await crawl(`${main.base}/Observation?_sort=_lastUpdated&_count=100`, {
    onPage: async (b, n) => {
      if (n !== 3) return;
      // Touch the oldest 400 (some already crawled, some not), create 30 more.
      touched = (await control(main.origin, 'touch', { type: 'Observation', count: 400 })).touched;
      for (let i = 0; i < 30; i++) {
        const r = await request(`${main.base}/Observation`, {
          method: 'POST',
          body: { resourceType: 'Observation', status: 'final', code: { text: 'mid-crawl' } },
        });
        assert.equal(r.status, 201);
      }
    },
  });
  assert.equal(touched.length, 400);
  assert.equal(new Set(ids).size, ids.length, 'no duplicates');
  assert.deepEqual([...ids].sort(), expected, 'exactly the snapshot');
  // Pages show the current content of the snapshotted ids.
  const later = bundles.slice(3).flatMap((b) => b.entry.map((e) => e.resource));
  const touchedIds = new Set(touched.map((t) => t.id));
  const seenTouched = later.filter((r) => touchedIds.has(r.id));
  assert.ok(seenTouched.length > 0);
  for (const r of seenTouched) assert.equal(r.meta.versionId, '2');
  // A new search sees the new total.
  const fresh = (await request(`${main.base}/Observation?_summary=count`)).json();
  assert.equal(fresh.total, 1030);
});

test('_lastUpdated prefixes, zones and sort direction', async () => {
  await control(main.origin, 'reset', {});
  const mk = (id, lastUpdated) => ({ resourceType: 'Observation', id, meta: { lastUpdated }, status: 'final', code: { text: id } });
  await loadNdjson(
    main.origin,
    [
      mk('a', '2020-01-01T00:00:00.000Z'),
      mk('b', '2020-01-01T00:00:00.500Z'),
      mk('c', '2020-01-01T00:00:01.000Z'),
      mk('d', '2021-06-01T12:00:00.000Z'),
    ],
    '?keep-meta=1'
  );
  const q = async (query) => (await searchIds(`${main.base}/Observation?_sort=_lastUpdated&${query}`)).join(',');
  assert.equal(await q('_lastUpdated=ge2020-01-01T00:00:00.500Z'), 'b,c,d');
  assert.equal(await q('_lastUpdated=gt2020-01-01T00:00:00.500Z'), 'c,d');
  // A value denotes its whole precision: gt a second is after all of it.
  assert.equal(await q('_lastUpdated=gt2020-01-01T00:00:00Z'), 'c,d');
  assert.equal(await q('_lastUpdated=ne2020-01-01T00:00:00Z'), 'c,d');
  assert.equal(await q('_lastUpdated=lt2020-01-01T00:00:01Z'), 'a,b');
  assert.equal(await q('_lastUpdated=le2020-01-01T00:00:00Z'), 'a,b');
  assert.equal(await q('_lastUpdated=2020-01-01'), 'a,b,c');
  assert.equal(await q('_lastUpdated=ge2020-01-01T01:00:00%2B01:00'), 'a,b,c,d');
  assert.equal(await q('_lastUpdated=ge2020-01-01T00:00:00.999-00:00&_lastUpdated=lt2021'), 'c');
  assert.equal((await searchIds(`${main.base}/Observation?_sort=-_lastUpdated`)).join(','), 'd,c,b,a');
  // An unencoded '+' arrives as a space: rejected, not misread.
  assert.equal((await request(`${main.base}/Observation?_lastUpdated=ge2020-01-01T01:00:00+01:00`)).status, 400);
  assert.equal((await request(`${main.base}/Observation?_lastUpdated=ge2020-13-01`)).status, 400);

  // Touching gives a new version with a newer lastUpdated.
  const before = (await (await request(`${main.origin}/__control/ids?type=Observation`)).json()).find((x) => x.id === 'a');
  const { touched } = await control(main.origin, 'touch', { type: 'Observation', ids: ['a'] });
  assert.equal(touched[0].versionId, '2');
  assert.ok(touched[0].lastUpdated > before.lastUpdated);
  assert.equal(await q(`_lastUpdated=ge${encodeURIComponent(touched[0].lastUpdated)}`), 'a');

  await control(main.origin, 'reject-lastupdated', { on: true });
  const rej = await request(`${main.base}/Observation?_lastUpdated=ge2020-01-01`);
  assert.equal(rej.status, 400);
  assert.equal(rej.json().resourceType, 'OperationOutcome');
  assert.equal((await request(`${main.base}/Observation?_count=2`)).status, 200);
  await control(main.origin, 'reject-lastupdated', { on: false });
  assert.equal((await request(`${main.base}/Observation?_lastUpdated=ge2020-01-01`)).status, 200);
});

test('patient, subject, identifier, code and _id searches', async () => {
  await control(main.origin, 'reset', {});
  const data = generate({ patients: 30, seed: 'params', obsPerPatient: 12 });
  await loadNdjson(main.origin, data);
  const want = (pred) => data.filter(pred).map((r) => r.id).sort();
  const got = async (query) => (await crawl(`${main.base}/${query}`)).ids.sort();
  const p7obs = want((r) => r.resourceType === 'Observation' && r.subject.reference === 'Patient/pat-000007');
  assert.equal(p7obs.length, 12);
  assert.deepEqual(await got('Observation?patient=Patient/pat-000007'), p7obs);
  assert.deepEqual(await got('Observation?patient=pat-000007'), p7obs);
  assert.deepEqual(await got('Observation?subject=Patient/pat-000007'), p7obs);
  assert.deepEqual(await got('Observation?subject:Patient=pat-000007'), p7obs);
  assert.deepEqual(
    await got('AllergyIntolerance?patient=Patient/pat-000007'),
    want((r) => r.resourceType === 'AllergyIntolerance' && r.patient.reference === 'Patient/pat-000007')
  );
  assert.deepEqual(await got('Patient?identifier=urn:oid:1.2.36.146.595.217.0.1%7CMRN00000012'), ['pat-000012']);
  assert.deepEqual(await got('Patient?identifier=MRN00000012'), ['pat-000012']);
  assert.deepEqual(await got('Patient?identifier=urn:other%7CMRN00000012'), []);
  const hr = want((r) => r.resourceType === 'Observation' && r.code.coding[0].code === '8867-4');
  assert.equal(hr.length, 30);
  assert.deepEqual(await got('Observation?code=http://loinc.org%7C8867-4'), hr);
  assert.deepEqual(await got('Observation?code=8867-4,2160-0&patient=Patient/pat-000003'), [
    'obs-000003-0001',
    'obs-000003-0007',
  ]);
  assert.deepEqual(await got('MedicationRequest?code=http://www.nlm.nih.gov/research/umls/rxnorm%7C314076'), want(
    (r) => r.resourceType === 'MedicationRequest' && r.medicationCodeableConcept.coding[0].code === '314076'
  ));
  assert.deepEqual(await got('Observation?_id=obs-000001-0002,obs-000004-0001'), ['obs-000001-0002', 'obs-000004-0001']);
  const unknown = await request(`${main.base}/Observation?nonsense=1`);
  assert.equal(unknown.status, 400);
  assert.equal(unknown.json().resourceType, 'OperationOutcome');
  const lenient = await request(`${main.base}/Observation?nonsense=1&_summary=count`, { headers: { prefer: 'handling=lenient' } });
  assert.equal(lenient.json().total, 360);
  assert.equal((await request(`${main.base}/Observation?_include=Observation:patient`)).status, 400);
});

test('conditional create, headers, If-Match, history, delete, atomic transaction', async () => {
  await control(main.origin, 'reset', {});
  const body = { resourceType: 'Patient', id: 'client-chosen', identifier: [{ system: 'urn:test', value: 'X1' }] };
  const c1 = await request(`${main.base}/Patient`, { method: 'POST', body, headers: { 'if-none-exist': 'identifier=urn:test|X1' } });
  assert.equal(c1.status, 201);
  const created = c1.json();
  assert.notEqual(created.id, 'client-chosen');
  assert.equal(created.meta.versionId, '1');
  assert.equal(c1.headers.etag, 'W/"1"');
  assert.equal(c1.headers.location, `${main.base}/Patient/${created.id}/_history/1`);
  assert.equal(new Date(c1.headers['last-modified']).getTime(), Math.floor(Date.parse(created.meta.lastUpdated) / 1000) * 1000);
  const c2 = await request(`${main.base}/Patient`, { method: 'POST', body, headers: { 'if-none-exist': 'identifier=urn:test|X1' } });
  assert.equal(c2.status, 200);
  assert.equal(c2.json().id, created.id);

  const put = await request(`${main.base}/Patient/${created.id}`, { method: 'PUT', body: { ...created, active: true } });
  assert.equal(put.status, 200);
  assert.equal(put.headers.etag, 'W/"2"');
  const stale = await request(`${main.base}/Patient/${created.id}`, {
    method: 'PUT',
    body: { ...created, active: false },
    headers: { 'if-match': 'W/"1"' },
  });
  assert.equal(stale.status, 412);
  const upsert = await request(`${main.base}/Patient/new-one`, { method: 'PUT', body: { resourceType: 'Patient', id: 'new-one' } });
  assert.equal(upsert.status, 201);

  const h1 = (await request(`${main.base}/Patient/${created.id}/_history`)).json();
  const h2 = (await request(`${main.base}/Patient/${created.id}/_history`)).json();
  assert.deepEqual(h1.entry.map((e) => e.resource.meta.versionId), ['2', '1']);
  assert.deepEqual(h2.entry.map((e) => e.resource.meta.versionId), ['2', '1']);
  assert.equal((await request(`${main.base}/Patient/${created.id}/_history/1`)).json().active, undefined);

  assert.equal((await request(`${main.base}/Patient/new-one`, { method: 'DELETE' })).status, 200);
  assert.equal((await request(`${main.base}/Patient/new-one`)).status, 410);
  assert.equal((await request(`${main.base}/Patient/never`)).status, 404);

  const tx = await request(main.base, {
    method: 'POST',
    body: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { resourceType: 'Patient', id: 'tx-1' }, request: { method: 'PUT', url: 'Patient/tx-1' } },
        {
          resource: { ...created, active: false },
          request: { method: 'PUT', url: `Patient/${created.id}`, ifMatch: 'W/"1"' },
        },
      ],
    },
  });
  assert.equal(tx.status, 412);
  assert.equal((await request(`${main.base}/Patient/tx-1`)).status, 404, 'first entry rolled back');
  const ok = await request(main.base, {
    method: 'POST',
    body: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:3f0c7a1e-4b8e-4a57-9d8e-2a4b6c1d9e01', resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
        {
          resource: { resourceType: 'Observation', status: 'final', code: { text: 't' }, subject: { reference: 'urn:uuid:3f0c7a1e-4b8e-4a57-9d8e-2a4b6c1d9e01' } },
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    },
  });
  assert.equal(ok.status, 200);
  const resp = ok.json();
  assert.equal(resp.type, 'transaction-response');
  assert.match(resp.entry[0].response.location, /^Patient\/[^/]+\/_history\/1$/);
  assert.equal(resp.entry[1].resource.subject.reference, `Patient/${resp.entry[0].resource.id}`);
});

test('faults fire exactly `times` times', async () => {
  await control(main.origin, 'reset', {});
  await loadNdjson(main.origin, generate({ observationsOnly: 20, seed: 'f' }));
  const url = `${main.base}/Observation?_count=5`;

  await control(main.origin, 'faults', { match: 'Observation', times: 2, status: 429, headers: { 'Retry-After': '1' } });
  assert.equal((await request(`${main.base}/Patient?_count=1`)).status, 200, 'non-matching request unaffected');
  for (let i = 0; i < 2; i++) {
    const r = await request(url);
    assert.equal(r.status, 429);
    assert.equal(r.headers['retry-after'], '1');
    assert.equal(r.json().resourceType, 'OperationOutcome');
  }
  assert.equal((await request(url)).status, 200);

  await control(main.origin, 'faults', { kind: 'drop', times: 1 });
  await assert.rejects(request(url), (err) => err.code === 'ECONNRESET' || /socket hang up/.test(err.message));
  assert.equal((await request(url)).status, 200);

  await control(main.origin, 'faults', { kind: 'truncate', times: 2, match: '_count=5' });
  for (let i = 0; i < 2; i++) {
    await assert.rejects(request(url), (err) => {
      assert.equal(err.partial.status, 200);
      const len = Number(err.partial.headers['content-length']);
      assert.ok(len > 100);
      assert.ok(err.partial.received < len, `${err.partial.received} < ${len}`);
      return true;
    });
  }
  assert.equal((await request(url)).status, 200);

  await control(main.origin, 'faults', { kind: 'invalid-json', times: 1 });
  const bad = await request(url);
  assert.equal(bad.status, 200);
  assert.throws(() => bad.json(), SyntaxError);
  const good = await request(url);
  assert.doesNotThrow(() => JSON.parse(good.text));

  await control(main.origin, 'faults', { kind: 'delay', ms: 300, times: 1 });
  const t0 = performance.now();
  assert.equal((await request(url)).status, 200);
  assert.ok(performance.now() - t0 >= 290);

  await control(main.origin, 'faults', { status: 503, times: 5 });
  const listed = await (await request(`${main.origin}/__control/faults`)).json();
  assert.deepEqual(listed.faults.map((f) => [f.kind, f.fired]), [
    ['status', 2],
    ['drop', 1],
    ['truncate', 2],
    ['invalid-json', 1],
    ['delay', 1],
    ['status', 0],
  ]);
  await control(main.origin, 'faults', undefined, 'DELETE');
  assert.equal((await request(url)).status, 200);
  const stats = await (await request(`${main.origin}/__control/stats`)).json();
  assert.equal(stats.faults.injected, 7);
  assert.equal(stats.requests.byStatus['429'], 2);
  assert.equal(stats.requests.byStatus.dropped >= 1, true);
  assert.equal((await request(`${main.origin}/__control/faults`, { method: 'POST', body: '{"kind":"nope"}' })).status, 400);
});

test('an outage (drop, hang, unavailable) keeps the data and ends with mode off', async () => {
  await control(main.origin, 'reset', {});
  await loadNdjson(main.origin, generate({ observationsOnly: 3, seed: 'o' }));
  const url = `${main.base}/Observation?_count=5`;
  const before = (await request(url)).json().entry.length;
  assert.equal(before, 3);

  await control(main.origin, 'outage', { mode: 'drop' });
  await assert.rejects(request(url), (err) => err.code === 'ECONNRESET' || /socket hang up/.test(err.message));
  await assert.rejects(request(`${main.base}/metadata`), (err) => err.code === 'ECONNRESET' || /socket hang up/.test(err.message));

  await control(main.origin, 'outage', { mode: 'unavailable' });
  const u = await request(url);
  assert.equal(u.status, 503);
  assert.equal(u.headers['retry-after'], '5');
  assert.equal(u.json().resourceType, 'OperationOutcome');

  await control(main.origin, 'outage', { mode: 'hang' });
  let settled = false;
  const held = request(url).then(() => 'answered', (err) => err.code ?? err.message).finally(() => { settled = true; });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(settled, false, 'a request during a hang is not answered');
  const st = await (await request(`${main.origin}/__control/outage`)).json();
  assert.equal(st.mode, 'hang');
  assert.equal(st.held, 1);
  await control(main.origin, 'outage', { mode: 'off' });
  assert.notEqual(await held, 'answered', 'the held request is dropped when the outage ends');

  const after = (await request(url)).json().entry.length;
  assert.equal(after, before, 'the data survived the outage');
  assert.equal((await request(`${main.origin}/__control/outage`, { method: 'POST', body: '{"mode":"down"}' })).status, 400);
});

test('an unknown or expired search snapshot answers 410', async () => {
  await control(main.origin, 'reset', {});
  await loadNdjson(main.origin, generate({ observationsOnly: 30, seed: 'g' }));
  const first = (await request(`${main.base}/Observation?_count=10`)).json();
  const next = first.link.find((l) => l.relation === 'next').url;
  assert.equal((await request(next)).status, 200);
  await control(main.origin, 'expire-searches', {});
  const gone = await request(next);
  assert.equal(gone.status, 410);
  assert.equal(gone.json().resourceType, 'OperationOutcome');
  assert.equal((await request(`${main.base}?_getpages=nope&_getpagesoffset=0&_count=10`)).status, 410);
});

/* ---------------------------------------------------------- SMART */

test('SMART backend services token endpoint and bearer checks', async () => {
  const jwksFile = path.join(tmp, 'jwks.json');
  fs.writeFileSync(
    jwksFile,
    JSON.stringify({
      clients: [
        { client_id: 'bridge-rs', jwks: { keys: [jwk(rsa, 'rs-1')] } },
        { client_id: 'bridge-es', jwks: { keys: [jwk(ec, 'es-1')] } },
      ],
    })
  );
  const srv = await spawnServer('fhir-server.mjs', ['--port', '0', '--smart-jwks', jwksFile, '--token-ttl', '120']);
  try {
    const tokenUrl = `${srv.origin}/auth/token`;
    const now = Math.floor(Date.now() / 1000);
    const claims = (iss, over = {}) => ({ iss, sub: iss, aud: tokenUrl, exp: now + 240, iat: now, jti: randomUUID(), ...over });
    const askToken = (assertion, scope = 'system/*.read') =>
      request(tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: assertion,
          scope,
        }).toString(),
      });
    const rejected = async (assertion, why) => {
      const r = await askToken(assertion);
      assert.ok(r.status === 400 || r.status === 401, `${why}: ${r.status}`);
      assert.equal(r.json().error, 'invalid_client', why);
    };

    const okRs = await askToken(signJwt({ alg: 'RS384', kid: 'rs-1', typ: 'JWT' }, claims('bridge-rs'), rsa.privateKey));
    assert.equal(okRs.status, 200, okRs.text);
    const tok = okRs.json();
    assert.equal(tok.token_type, 'bearer');
    assert.equal(tok.expires_in, 120);
    assert.equal(tok.scope, 'system/*.read');
    assert.ok(tok.access_token.length >= 20);
    const okEs = await askToken(signJwt({ alg: 'ES384', kid: 'es-1', typ: 'JWT' }, claims('bridge-es'), ec.privateKey));
    assert.equal(okEs.status, 200, okEs.text);

    await rejected(signJwt({ alg: 'RS384', kid: 'rs-1' }, claims('bridge-rs'), rogue.privateKey), 'wrong key');
    await rejected(signJwt({ alg: 'RS384', kid: 'rs-1' }, claims('bridge-rs', { exp: now - 10, iat: now - 100 }), rsa.privateKey), 'expired');
    await rejected(signJwt({ alg: 'RS384', kid: 'rs-1' }, claims('bridge-rs', { exp: now + 900 }), rsa.privateKey), 'exp too far');
    await rejected(signJwt({ alg: 'RS384', kid: 'rs-1' }, claims('bridge-rs', { aud: `${srv.origin}/other` }), rsa.privateKey), 'wrong aud');
    await rejected(signJwt({ alg: 'RS384', kid: 'nope' }, claims('bridge-rs'), rsa.privateKey), 'unknown kid');
    await rejected(signJwt({ alg: 'ES384', kid: 'rs-1' }, claims('bridge-rs'), ec.privateKey), 'alg/key mismatch');
    await rejected(signJwt({ alg: 'HS256', kid: 'rs-1' }, claims('bridge-rs'), null), 'HS256');
    await rejected(signJwt({ alg: 'RS384', kid: 'rs-1' }, claims('bridge-rs', { sub: 'someone' }), rsa.privateKey), 'sub != iss');
    const once = signJwt({ alg: 'ES384', kid: 'es-1' }, claims('bridge-es'), ec.privateKey);
    assert.equal((await askToken(once)).status, 200);
    await rejected(once, 'replayed jti');
    const badGrant = await request(tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=password',
    });
    assert.equal(badGrant.status, 400);
    assert.equal(badGrant.json().error, 'unsupported_grant_type');

    // FHIR requests need the bearer token; metadata does not.
    const meta = await request(`${srv.base}/metadata`);
    assert.equal(meta.status, 200);
    const oauth = meta.json().rest[0].security.extension[0];
    assert.equal(oauth.extension.find((e) => e.url === 'token').valueUri, tokenUrl);
    const smartConf = (await request(`${srv.base}/.well-known/smart-configuration`)).json();
    assert.equal(smartConf.token_endpoint, tokenUrl);
    const anon = await request(`${srv.base}/Patient`);
    assert.equal(anon.status, 401);
    assert.match(anon.headers['www-authenticate'], /^Bearer /);
    const auth = { authorization: `Bearer ${tok.access_token}` };
    assert.equal((await request(`${srv.base}/Patient`, { headers: auth })).status, 200);
    assert.equal((await request(`${srv.base}/Patient`, { headers: { authorization: 'Bearer garbage' } })).status, 401);
    const write = await request(`${srv.base}/Patient`, { method: 'POST', headers: auth, body: { resourceType: 'Patient' } });
    assert.equal(write.status, 403, 'read scope cannot write');
    const patientOnly = await askToken(
      signJwt({ alg: 'RS384', kid: 'rs-1' }, claims('bridge-rs'), rsa.privateKey),
      'system/Patient.rs'
    );
    const pAuth = { authorization: `Bearer ${patientOnly.json().access_token}` };
    assert.equal((await request(`${srv.base}/Patient`, { headers: pAuth })).status, 200);
    assert.equal((await request(`${srv.base}/Observation`, { headers: pAuth })).status, 403);

    await control(srv.origin, 'expire-tokens', {});
    const expired = await request(`${srv.base}/Patient`, { headers: auth });
    assert.equal(expired.status, 401);
    assert.match(expired.headers['www-authenticate'], /invalid_token/);

    const stats = await (await request(`${srv.origin}/__control/stats`)).json();
    assert.equal(stats.tokens.issued, 4);
    assert.equal(stats.tokens.failures, 10);
    assert.equal(stats.auth.failures, 3);
    assert.equal(await stop(srv.child), 0);
  } finally {
    if (srv.child.exitCode === null) srv.child.kill('SIGKILL');
  }
});

test('static bearer token file and --require-auth', async () => {
  const tokFile = path.join(tmp, 'token');
  fs.writeFileSync(tokFile, 'static-secret-token\n');
  const srv = await spawnServer('fhir-server.mjs', ['--port', '0', '--bearer-token-file', tokFile, '--require-auth']);
  try {
    assert.equal((await request(`${srv.base}/Patient`)).status, 401);
    assert.equal((await request(`${srv.base}/Patient`, { headers: { authorization: 'Bearer static-secret-token' } })).status, 200);
    await control(srv.origin, 'expire-tokens', {});
    assert.equal((await request(`${srv.base}/Patient`, { headers: { authorization: 'Bearer static-secret-token' } })).status, 200);
    assert.equal(await stop(srv.child), 0, 'SIGTERM exits cleanly');
  } finally {
    if (srv.child.exitCode === null) srv.child.kill('SIGKILL');
  }
});

test('static page server serves N observations in pages of P', async () => {
  const srv = await spawnServer('static-pages.mjs', ['--observations', '2500', '--page-size', '1000', '--port', '0']);
  try {
    const { ids, pages, bundles } = await crawl(`${srv.base}/Observation?_count=1000&_lastUpdated=ge2000-01-01`);
    assert.equal(pages, 3);
    assert.equal(ids.length, 2500);
    assert.equal(new Set(ids).size, 2500);
    assert.equal(bundles[2].link.length, 1);
    assert.ok(bundles[0].entry.every((e) => e.resource.meta.versionId === '1'));
    assert.equal((await request(`${srv.base}/metadata`)).json().resourceType, 'CapabilityStatement');
    assert.equal(await stop(srv.child), 0);
  } finally {
    if (srv.child.exitCode === null) srv.child.kill('SIGKILL');
  }
});

test('main server stops cleanly on SIGTERM', async () => {
  assert.equal(await stop(main.child), 0);
});
