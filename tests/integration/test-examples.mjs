// Every resource of HL7's official R4 examples through the whole pull: the
// FHIR server loads all of them, the bridge syncs every type they cover,
// and the store must hold exactly what the server holds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startFhirServer, tempDir, writeConfig, syncOnce, storeIds, status, cleanup, sourceRoot } from './lib.mjs';

const examples = join(sourceRoot, 'tests/servers/node_modules/hl7.fhir.r4.examples');
let srv;
before(async () => {
  if (existsSync(examples)) srv = await startFhirServer(['--load', examples]);
});
after(async () => { await srv?.stop(); });

test('all HL7 R4 examples: stored exactly as the server holds them', { skip: !existsSync(examples) && 'examples not installed' }, async () => {
  const stats = await srv.control('stats');
  const types = Object.keys(stats.resources).filter((t) => stats.resources[t] > 0).sort();
  assert.ok(types.length > 100, `examples cover many types (${types.length})`);
  const dir = tempDir();
  try {
    const cfg = writeConfig(dir, srv.base, { fhir: { resources: types, page_size: 200, max_concurrency: 4 } });
    const r = await syncOnce(cfg);
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    const st = await status(cfg);
    let total = 0;
    for (const t of types) {
      assert.equal(st.resources[t], stats.resources[t], `count of ${t}`);
      total += stats.resources[t];
    }
    assert.ok(total > 5000, `${total} resources`);
    // Ids and versions of a few types with odd content, one by one.
    for (const t of ['Bundle', 'Patient', 'Observation', 'StructureDefinition', 'Questionnaire']) {
      if (types.includes(t)) assert.deepEqual(await storeIds(cfg, t), await srv.ids(t), t);
    }
  } finally { cleanup(dir); }
});
