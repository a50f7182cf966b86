// Pull benchmark: prints figures, asserts nothing about time.
//
//   node tests/bench/bench-pull.mjs [--sizes 10000,100000] [--page-size 1000] [--skip-server]
//
// For each size: (1) client side alone — pre-generated Bundle pages served
// statically (tests/servers/static-pages.mjs), the bridge and the
// stdlib-Python peer on the same pages; (2) end to end against the real
// FHIR server loaded with that many Observations.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { sourceRoot, bridgeBin, tempDir, writeConfig, syncOnce, cleanup, startFhirServer } from '../integration/lib.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def; };
const sizes = opt('--sizes', '10000,100000').split(',').map(Number);
const pageSize = Number(opt('--page-size', '1000'));
const skipServer = args.includes('--skip-server');

async function startStatic(n) {
  const proc = spawn(process.execPath, [join(sourceRoot, 'tests/servers/static-pages.mjs'),
    '--observations', String(n), '--page-size', String(pageSize), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const base = await new Promise((res, rej) => {
    let out = '';
    proc.stdout.on('data', (d) => { out += d; const m = out.match(/LISTENING (\S+)/); if (m) res(m[1]); });
    proc.on('exit', (c) => rej(new Error('static server exited ' + c)));
  });
  proc.removeAllListeners('exit');
  return { base, stop: () => new Promise((r) => { proc.once('exit', r); proc.kill('SIGTERM'); }) };
}

async function bridgeRun(base, label, n) {
  const dir = tempDir('frb-bench-');
  try {
    const cfg = writeConfig(dir, base, { fhir: { resources: ['Observation'], page_size: pageSize, max_concurrency: 2, timeout_s: 600 } });
    const r = await syncOnce(cfg, ['--log-level', 'warn']);
    if (r.code !== 0) throw new Error(`${label}: sync failed: ${r.stderr}`);
    const res = r.result;
    console.log(JSON.stringify({ bench: label, client: 'fhir-redcap-bridge', resources: res.fetched, expected: n,
      elapsed_s: res.elapsed_s, per_s: Math.round(res.fetched / res.elapsed_s), peak_rss_kb: res.peak_rss_kb, requests: res.requests }));
    return res;
  } finally { cleanup(dir); }
}

function pythonRun(base, label) {
  const dir = tempDir('frb-bench-py-');
  try {
    const r = spawnSync('python3', [join(sourceRoot, 'tests/bench/python_peer.py'), base, 'Observation', String(pageSize), join(dir, 'peer.db')], { encoding: 'utf8' });
    if (r.status !== 0) { console.log(JSON.stringify({ bench: label, client: 'python', error: r.stderr.slice(-300) })); return null; }
    const o = JSON.parse(r.stdout.trim());
    console.log(JSON.stringify({ bench: label, client: 'python-stdlib', ...o }));
    return o;
  } finally { cleanup(dir); }
}

for (const n of sizes) {
  const st = await startStatic(n);
  const b = await bridgeRun(st.base, `static-pages-${n}`, n);
  const p = pythonRun(st.base, `static-pages-${n}`);
  if (p) console.log(JSON.stringify({ bench: `static-pages-${n}`, speedup_vs_python: +(p.elapsed_s / b.elapsed_s).toFixed(2) }));
  await st.stop();
  if (!skipServer) {
    const t0 = Date.now();
    const srv = await startFhirServer(['--generate-observations', String(n), '--seed', '1']);
    console.log(JSON.stringify({ bench: `fhir-server-${n}`, server_start_and_load_s: (Date.now() - t0) / 1000 }));
    await bridgeRun(srv.base, `fhir-server-${n}`, n);
    await srv.stop();
  }
}
void bridgeBin;
