// Helpers for the integration tests: start the real FHIR server, write a
// bridge config, run the bridge binary, read the server's and the store's
// contents.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const sourceRoot = process.env.SOURCE_ROOT || resolve(here, '../..');
export const bridgeBin = process.env.BRIDGE_BIN || resolve(sourceRoot, 'build/bridge/fhir-redcap-bridge');
export const serverScript = join(sourceRoot, 'tests/servers/fhir-server.mjs');

export function tempDir(prefix = 'frb-it-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

// Start the FHIR server; resolves to {base, origin, proc, stop(), control(path, body, method)}.
export async function startFhirServer(args = []) {
  const proc = spawn(process.execPath, [serverScript, '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const base = await new Promise((res, rej) => {
    let out = '';
    const timer = setTimeout(() => rej(new Error(`FHIR server did not start: ${stderr}`)), 60000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/LISTENING (\S+)/);
      if (m) { clearTimeout(timer); res(m[1]); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); rej(new Error(`FHIR server exited ${code}: ${stderr}`)); });
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
    const proc = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env || {}) } });
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
  rmSync(dir, { recursive: true, force: true });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
