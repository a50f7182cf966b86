// Helpers for the integration tests: start the real FHIR server, write a
// bridge config, run the bridge binary, read the server's and the store's
// contents.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, chmodSync, copyFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const sourceRoot = process.env.SOURCE_ROOT || resolve(here, '../..');
export const bridgeBin = process.env.BRIDGE_BIN || resolve(sourceRoot, 'build/bridge/fhir-redcap-bridge');
export const serverScript = join(sourceRoot, 'tests/servers/fhir-server.mjs');
export const emulatorScript = join(sourceRoot, 'tests/servers/redcap-emulator.mjs');
export const exampleDir = join(sourceRoot, 'conf/example-project');

export function tempDir(prefix = 'frb-it-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

// Start the FHIR server; resolves to {base, origin, proc, stop(), control(path, body, method)}.
export async function startFhirServer(args = []) {
  return startPeer(serverScript, args);
}

// Start the REDCap emulator with the example study as project "example" and
// the token EXAMPLE_TOKEN; resolves like startFhirServer, plus records(project).
export const EXAMPLE_TOKEN = 'A1B2C3D4E5F60718293A4B5C6D7E8F90';
export async function startRedcapEmulator(args = null) {
  const a = args || [
    '--project', `example=${join(exampleDir, 'dictionary.csv')},repeating=vitals;labs;conditions;medications;allergies`,
    '--token', `${EXAMPLE_TOKEN}=example`,
  ];
  const srv = await startPeer(emulatorScript, a);
  srv.url = srv.base;
  srv.records = (project = 'example') => srv.control('records?project=' + encodeURIComponent(project));
  return srv;
}

async function startPeer(script, args) {
  const proc = spawn(process.execPath, [script, '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const base = await new Promise((res, rej) => {
    let out = '';
    const timer = setTimeout(() => rej(new Error(`${script} did not start: ${stderr}`)), 60000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/LISTENING (\S+)/);
      if (m) { clearTimeout(timer); res(m[1]); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); rej(new Error(`${script} exited ${code}: ${stderr}`)); });
  });
  proc.removeAllListeners('exit');
  const origin = new URL(base).origin;
  const srv = {
    base, origin, proc,
    async control(path, body, method) {
      const init = { method: method || (body === undefined ? 'GET' : 'POST'), headers: {} };
      if (body !== undefined) {
        init.body = typeof body === 'string' ? body : JSON.stringify(body);
        init.headers['content-type'] = 'application/json';
      }
      const r = await fetch(origin + '/__control/' + path, init);
      const text = await r.text();
      if (!r.ok) throw new Error(`control ${path}: HTTP ${r.status}: ${text}`);
      try { return JSON.parse(text); } catch { return text; }
    },
    async fhir(path, init = {}) {
      const r = await fetch(base + '/' + path, init);
      const text = await r.text();
      return { status: r.status, headers: r.headers, body: text ? JSON.parse(text) : null };
    },
    // [{id, versionId, lastUpdated}] sorted by id
    async ids(type) {
      const list = await srv.control('ids?type=' + encodeURIComponent(type));
      return list.map((x) => ({ id: x.id, versionId: x.versionId })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    },
    async stop() {
      if (proc.exitCode !== null) return;
      await new Promise((res) => { proc.once('exit', res); proc.kill('SIGTERM'); });
    },
  };
  return srv;
}

export const TYPES = ['Patient', 'Encounter', 'Observation', 'Condition', 'MedicationRequest', 'AllergyIntolerance'];

// Write a config file (mode 0600) in dir; returns its path.
export function writeConfig(dir, base, over = {}) {
  const fhir = {
    base_url: base,
    resources: TYPES,
    page_size: 50,
    max_concurrency: 4,
    poll_interval_s: 1,
    timeout_s: 10,
    watermark_skew_s: 0,
    retry: { max_attempts: 4, base_ms: 50, max_ms: 2000 },
    auth: { type: 'none' },
    ...(over.fhir || {}),
  };
  const cfg = { store: { path: 'bridge.db', key_file: 'store.key', ...(over.store || {}) }, fhir };
  if (over.site) cfg.site = over.site;
  if (over.redcap) cfg.redcap = over.redcap;
  if (over.downtime) cfg.downtime = over.downtime;
  if (over.ui) cfg.ui = over.ui;
  if (over.log) cfg.log = over.log;
  const path = join(dir, 'bridge.json');
  writeFileSync(path, JSON.stringify(cfg, null, 2));
  chmodSync(path, 0o600);
  return path;
}

// BRIDGE_WRAPPER (e.g. "valgrind --error-exitcode=99 -q") runs every bridge
// command under that program.
const wrapper = (process.env.BRIDGE_WRAPPER || '').split(' ').filter(Boolean);

// Run the bridge; resolves to {code, signal, stdout, stderr}.
export function runBridge(args, opts = {}) {
  return new Promise((res) => {
    const cmd = wrapper.length ? wrapper[0] : bridgeBin;
    const argv = wrapper.length ? [...wrapper.slice(1), bridgeBin, ...args] : args;
    const stdin = opts.input === undefined ? 'ignore' : 'pipe';
    const proc = spawn(cmd, argv, { stdio: [stdin, 'pipe', 'pipe'], env: { ...process.env, ...(opts.env || {}) } });
    if (opts.input !== undefined) proc.stdin.end(opts.input);
    let stdout = '', stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    if (opts.onSpawn) opts.onSpawn(proc);
    proc.on('close', (code, signal) => res({ code, signal, stdout, stderr }));
  });
}

export async function syncOnce(cfgPath, extra = []) {
  const r = await runBridge(['sync', '--once', '--json', '--config', cfgPath, ...extra]);
  let result = null;
  try { result = JSON.parse(r.stdout.trim().split('\n').pop()); } catch { /* none */ }
  return { ...r, result };
}

// What the store holds of a type: [{id, versionId}] sorted by id.
export async function storeIds(cfgPath, type) {
  const r = await runBridge(['dump', '--config', cfgPath, '--type', type]);
  if (r.code !== 0) throw new Error(`dump failed (${r.code}): ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .map((x) => ({ id: x.id, versionId: x.versionId }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export async function status(cfgPath) {
  const r = await runBridge(['status', '--json', '--config', cfgPath]);
  if (r.code !== 0) throw new Error(`status failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export function cleanup(dir) {
  // FRB_KEEP_TMP=1 keeps a test's directory (store, config, logs) for a post-mortem.
  if (process.env.FRB_KEEP_TMP) {
    process.stderr.write(`kept ${dir}\n`);
    return;
  }
  rmSync(dir, { recursive: true, force: true });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A config for FHIR server -> bridge -> REDCap emulator with the example
// study: writes the token file and copies the chosen mapping next to the
// config. opts: {mapping: 'mapping.json', batch_size, max_requests_per_minute, fhir, redcap}.
export function writeExampleConfig(dir, fhirBase, redcapUrl, opts = {}) {
  const mapping = opts.mapping || 'mapping.json';
  writeFileSync(join(dir, 'redcap.token'), EXAMPLE_TOKEN + '\n', { mode: 0o600 });
  copyFileSync(join(exampleDir, mapping), join(dir, mapping));
  return writeConfig(dir, fhirBase, {
    fhir: { mrn_system: 'urn:oid:1.2.36.146.595.217.0.1', ...(opts.fhir || {}) },
    site: { timezone: opts.timezone || 'UTC' },
    redcap: {
      batch_size: opts.batch_size || 100,
      max_requests_per_minute: opts.max_requests_per_minute || 600,
      timeout_s: 10,
      retry: { max_attempts: 4, base_ms: 50, max_ms: 500 },
      projects: [{ name: 'example', url: redcapUrl, token_file: 'redcap.token', mapping }],
      ...(opts.redcap || {}),
    },
    log: opts.log,
    downtime: opts.downtime,
    ui: opts.ui,
  });
}

// Generated synthetic data (tests/servers/generate.mjs with args) written as
// NDJSON to dir/name; resolves to {file, resources}.
export async function generateData(dir, args, name = 'data.ndjson') {
  const out = join(dir, name);
  await new Promise((res, rej) => {
    const p = spawn(process.execPath, [join(sourceRoot, 'tests/servers/generate.mjs'), ...args, '--out', out],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => { err += d; });
    p.on('close', (code) => (code === 0 ? res() : rej(new Error(`generate.mjs failed: ${err}`))));
  });
  return { file: out, resources: readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) };
}
