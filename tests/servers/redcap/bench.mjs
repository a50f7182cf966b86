#!/usr/bin/env node
// Measures the REDCap emulator: how many 1,000-row record imports (and
// exports) per second it answers, the emulator running as its own process
// on the example study project, one client connection (keep-alive).
//   node tests/servers/redcap/bench.mjs [--requests 30] [--rows 1000]

import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const REQUESTS = opt('--requests', 30);
const ROWS = opt('--rows', 1000);
const TOKEN = 'BE0C0123456789ABCDEF0123456789AB';

const child = spawn(process.execPath, [
  path.join(here, '..', 'redcap-emulator.mjs'),
  '--project', `study=${path.join(repo, 'conf/example-project/dictionary.csv')},repeating=vitals;labs;conditions;medications;allergies`,
  '--token', `${TOKEN}=study`,
  '--rate-limit', '0',
], { stdio: ['ignore', 'pipe', 'inherit'] });
const api = await new Promise((resolve, reject) => {
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
    const m = /LISTENING (\S+)/.exec(out);
    if (m) resolve(m[1]);
  });
  child.on('exit', (c) => reject(new Error(`emulator exited ${c}`)));
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function post(params) {
  const body = new URLSearchParams(params).toString();
  return new Promise((resolve, reject) => {
    const req = http.request(api, { method: 'POST', agent, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/* ROWS rows: per patient one demographics row and 9 vitals instances. */
function batch(k) {
  const rows = [];
  for (let p = 0; rows.length < ROWS; p++) {
    const rid = `b${k}-${p}`;
    rows.push({ record_id: rid, mrn: `MRN${k}${p}`, dob: '1970-01-02', sex: '2', enroll_date: '2024-01-01', hr_baseline: '72', creat_max_48h: '0.9' });
    for (let i = 1; i <= 9 && rows.length < ROWS; i++) {
      rows.push({ record_id: rid, redcap_repeat_instrument: 'vitals', redcap_repeat_instance: String(i), vs_datetime: `2024-01-01 10:0${i}:00`, vs_loinc: '8867-4', vs_value: String(60 + i), vs_unit: '/min' });
    }
  }
  return JSON.stringify(rows);
}

async function timeIt(label, n, fn) {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = await fn(i);
    if (r.status !== 200) throw new Error(`${label}: ${r.status} ${r.text.slice(0, 200)}`);
  }
  const s = (performance.now() - t0) / 1000;
  console.log(`${label}: ${n} requests in ${s.toFixed(2)} s = ${(n / s).toFixed(1)} requests/s (${((n * ROWS) / s).toFixed(0)} rows/s)`);
}

const payloads = Array.from({ length: REQUESTS }, (_, k) => batch(k));
await timeIt(`import ${ROWS} new rows`, REQUESTS, (i) => post({ token: TOKEN, content: 'record', format: 'json', data: payloads[i], returnFormat: 'json' }));
await timeIt(`re-import ${ROWS} unchanged rows`, REQUESTS, (i) => post({ token: TOKEN, content: 'record', format: 'json', data: payloads[i], returnFormat: 'json' }));
const recordsPerBatch = Math.ceil(ROWS / 10);
await timeIt(`export ${ROWS} rows (json, by records)`, REQUESTS, (i) =>
  post({ token: TOKEN, content: 'record', format: 'json', records: Array.from({ length: recordsPerBatch }, (_, p) => `b${i}-${p}`).join(',') })
);
agent.destroy();
child.kill('SIGTERM');
