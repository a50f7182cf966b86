// SMART Backend Services against the server's real token endpoint, bearer
// tokens, and configuration / secret-file errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import {
  startFhirServer, tempDir, writeConfig, syncOnce, storeIds, cleanup, runBridge,
} from './lib.mjs';

function keyPair(alg) {
  return alg === 'RS384'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-384' });
}

function jwk(publicKey, kid, alg) {
  return { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

let srv;
const clients = {};
before(async () => {
  const dir = tempDir();
  const jwks = { clients: [] };
  for (const alg of ['RS384', 'ES384']) {
    const kp = keyPair(alg);
    const id = `bridge-${alg.toLowerCase()}`;
    clients[alg] = { id, kid: `kid-${alg}`, kp };
    jwks.clients.push({ client_id: id, jwks: { keys: [jwk(kp.publicKey, `kid-${alg}`, alg)] } });
  }
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
  srv = await startFhirServer(['--generate', '3', '--seed', '3', '--smart-jwks', join(dir, 'jwks.json'), '--require-auth']);
  cleanup(dir);
});
after(async () => { await srv?.stop(); });

function smartConfig(dir, alg, privateKey, over = {}) {
  const keyFile = join(dir, 'client.pem');
  writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }));
  chmodSync(keyFile, over.keyMode ?? 0o600);
  return writeConfig(dir, srv.base, {
    fhir: {
      resources: ['Patient', 'Observation'],
      auth: {
        type: 'smart-backend', token_url: srv.origin + '/auth/token', client_id: clients[alg].id,
        private_key_file: 'client.pem', alg, kid: clients[alg].kid, scope: 'system/*.read',
      },
    },
  });
}

for (const alg of ['RS384', 'ES384']) {
  test(`SMART backend services with ${alg}: the token is obtained once and reused`, async () => {
    const dir = tempDir();
    try {
      const before = await srv.control('stats');
      const cfg = smartConfig(dir, alg, clients[alg].kp.privateKey);
      const r = await syncOnce(cfg);
      assert.equal(r.code, 0, r.stderr);
      const after = await srv.control('stats');
      assert.equal(after.tokens.issued - before.tokens.issued, 1, 'one token for the whole cycle');
      assert.deepEqual(await storeIds(cfg, 'Patient'), await srv.ids('Patient'));
      assert.doesNotMatch(r.stderr, /eyJ/, 'no JWT or token in the logs');
    } finally { cleanup(dir); }
  });
}

test('SMART: a 401 on an expired token re-authenticates once and goes on', async () => {
  const dir = tempDir();
  try {
    const cfg = smartConfig(dir, 'ES384', clients.ES384.kp.privateKey);
    const r1 = await syncOnce(cfg);
    assert.equal(r1.code, 0, r1.stderr);
    // The server answers the next Observation request with 401 although the
    // token is fresh (as after a server-side revocation).
    await srv.control('faults', { match: 'Observation', times: 1, status: 401, headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' } });
    const r = await syncOnce(cfg);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /HTTP 401; requesting a new access token/);
    assert.deepEqual(await storeIds(cfg, 'Observation'), await srv.ids('Observation'));
  } finally { await srv.control('faults', undefined, 'DELETE'); cleanup(dir); }
});

test('SMART: a key the server does not know is refused with a clear message', async () => {
  const dir = tempDir();
  try {
    const other = keyPair('RS384');
    const cfg = smartConfig(dir, 'RS384', other.privateKey);
    const r = await syncOnce(cfg);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /token endpoint .*\/auth\/token answered HTTP 40[01]: invalid_client/);
    assert.equal((await storeIds(cfg, 'Patient')).length, 0);
  } finally { cleanup(dir); }
});

test('SMART: a private key file readable by others is refused before any request', async () => {
  const dir = tempDir();
  try {
    const cfg = smartConfig(dir, 'RS384', clients.RS384.kp.privateKey, { keyMode: 0o644 });
    const r = await runBridge(['sync', '--once', '--config', cfg]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /client\.pem: permissions 0644 are too open/);
  } finally { cleanup(dir); }
});

test('without a token the server answers 401 and the type fails', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { resources: ['Patient'] } });
    const r = await syncOnce(cfg);
    assert.equal(r.code, 1);
    assert.match(r.result.types.Patient.error, /HTTP 401/);
  } finally { cleanup(dir); }
});

test('config errors name file:line:column and the key', async () => {
  const dir = tempDir();
  try {
    const path = join(dir, 'bad.json');
    writeFileSync(path, '{\n  "store": {"path": "x.db", "key_file": "k"},\n  "fhir": {\n    "base_url": "http://127.0.0.1:1/fhir",\n    "resources": ["Patient"],\n    "page_sise": 10\n  }\n}\n');
    const r = await runBridge(['sync', '--once', '--config', path]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.json:6:5: fhir\.page_sise: unknown key/);

    writeFileSync(path, '{"store": {"path": "x.db", "key_file": "k"}, "fhir": {"base_url": "http://h/f", "resources": ["Patient"], "page_size": "10"}}');
    const r2 = await runBridge(['status', '--config', path]);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /bad\.json:1:\d+: fhir\.page_size: expected an integer/);

    writeFileSync(path, '{"store": {"path": "x.db",\n "key_file": "k"},, }');
    const r3 = await runBridge(['sync', '--once', '--config', path]);
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /bad\.json:2:\d+: /);
  } finally { cleanup(dir); }
});

test('a store key file readable by others is refused, and a wrong key touches nothing', async () => {
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { resources: ['Patient'] } });
    writeFileSync(join(dir, 'store.key'), 'ab'.repeat(32) + '\n');
    chmodSync(join(dir, 'store.key'), 0o644);
    const r = await runBridge(['sync', '--once', '--config', cfg]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /store\.key has permissions 0644: group and others must have no access/);

    chmodSync(join(dir, 'store.key'), 0o600);
    await runBridge(['sync', '--once', '--config', cfg]); // 401s, but creates the store
    writeFileSync(join(dir, 'store.key'), 'cd'.repeat(32) + '\n');
    const r2 = await runBridge(['status', '--config', cfg]);
    assert.equal(r2.code, 3);
    assert.match(r2.stderr, /wrong key|another key|key does not/i);
  } finally { cleanup(dir); }
});
