#!/usr/bin/env node
// Measures the test FHIR server's ceiling:
//   node lib/bench.mjs [--observations 100000] [--count 1000]
// start time, /__control/load time for 10k and N Observations, a batch
// Bundle load through medplum's router for comparison, and a full paged
// crawl (_lastUpdated=ge + _sort=_lastUpdated) of N at _count.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { generateResources } from '../generate.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const N = arg('--observations', 100000);
const COUNT = arg('--count', 1000);

function startServer() {
  const t0 = performance.now();
  const child = spawn(process.execPath, [path.join(here, '..', 'fhir-server.mjs'), '--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /LISTENING (\S+)/.exec(buf);
      if (m) resolve({ child, base: m[1], ms: performance.now() - t0 });
    });
    child.on('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
}

function ndjson(n) {
  let s = '';
  for (const r of generateResources({ observationsOnly: n, seed: 'bench' })) s += JSON.stringify(r) + '\n';
  return s;
}

async function load(origin, body) {
  const t0 = performance.now();
  const res = await fetch(`${origin}/__control/load`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body,
  });
  const out = await res.json();
  return { ms: performance.now() - t0, loaded: out.loaded };
}

async function crawl(base, count) {
  const t0 = performance.now();
  let url = `${base}/Observation?_lastUpdated=ge2000-01-01T00:00:00Z&_sort=_lastUpdated&_count=${count}`;
  const ids = new Set();
  let pages = 0;
  let dups = 0;
  let firstMs = 0;
  let bytes = 0;
  let total;
  while (url) {
    const res = await fetch(url, { headers: { accept: 'application/fhir+json' } });
    if (res.status !== 200) throw new Error(`HTTP ${res.status} on ${url}`);
    const text = await res.text();
    bytes += text.length;
    const b = JSON.parse(text);
    if (pages === 0) firstMs = performance.now() - t0;
    total = b.total;
    pages++;
    for (const e of b.entry ?? []) {
      if (e.resource.resourceType !== 'Observation') continue;
      if (ids.has(e.resource.id)) dups++;
      ids.add(e.resource.id);
    }
    url = b.link?.find((l) => l.relation === 'next')?.url;
  }
  return { ms: performance.now() - t0, firstMs, pages, ids: ids.size, dups, total, mb: bytes / 1e6 };
}

async function batchLoad(base, n) {
  const resources = [...generateResources({ observationsOnly: n, seed: 'batch' })].filter(
    (r) => r.resourceType === 'Observation'
  );
  const t0 = performance.now();
  for (let i = 0; i < resources.length; i += 500) {
    const bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: resources.slice(i, i + 500).map((r) => ({
        resource: { ...r, id: 'b' + r.id },
        request: { method: 'PUT', url: `Observation/b${r.id}` },
      })),
    };
    const res = await fetch(base, {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify(bundle),
    });
    if (res.status !== 200) throw new Error(`batch HTTP ${res.status}`);
    await res.arrayBuffer();
  }
  return { ms: performance.now() - t0, n: resources.length };
}

const { child, base, ms } = await startServer();
const origin = new URL(base).origin;
console.log(`start (spawn to LISTENING): ${ms.toFixed(0)} ms`);
try {
  const small = ndjson(10000);
  const r10 = await load(origin, small);
  console.log(`load 10k via /__control/load: ${r10.ms.toFixed(0)} ms (${r10.loaded} resources)`);
  await fetch(`${origin}/__control/reset`, { method: 'POST' });

  const bb = await batchLoad(base, 10000);
  console.log(`load 10k via batch Bundles of 500 PUTs (medplum router): ${bb.ms.toFixed(0)} ms`);
  await fetch(`${origin}/__control/reset`, { method: 'POST' });

  const big = ndjson(N);
  console.log(`NDJSON for ${N}: ${(Buffer.byteLength(big) / 1e6).toFixed(1)} MB`);
  const rN = await load(origin, big);
  console.log(`load ${N} via /__control/load: ${rN.ms.toFixed(0)} ms (${rN.loaded} resources)`);

  for (let i = 0; i < 2; i++) {
    const c = await crawl(base, COUNT);
    console.log(
      `crawl ${c.ids}/${c.total} at _count=${COUNT}: ${c.ms.toFixed(0)} ms, first page ${c.firstMs.toFixed(0)} ms, ` +
        `${c.pages} pages, ${c.mb.toFixed(0)} MB, ${Math.round((c.ids / c.ms) * 1000)} resources/s, dups ${c.dups}`
    );
  }
  const stats = await (await fetch(`${origin}/__control/stats`)).json();
  console.log(`snapshots created: ${stats.searches.snapshots}, pages served: ${stats.searches.pages}`);
} finally {
  child.kill('SIGTERM');
}
