// Downtime write-back benchmark: prints figures, asserts only correctness
// (never time): exit status 1 when an entry is missing or doubled in the EHR,
// an entry stays pending, or a bridge process fails.
//
//   node tests/bench/bench-downtime.mjs [--entries 10000] [--patients 100] [--batches 1,50,200]
//       [--jobs N] [--small-entries 1000] [--max-write-s 300] [--settle-s 25] [--no-sync-once]
//       [--keep-logs DIR]
//
// Setup (once): the FHIR test server with --patients generated patients on a
// fixed loopback port, a first `sync --once` to fill the cache, a clinician
// (`users add`), the EHR put in outage ('drop') and a daemon run until it
// says "down" (the store remembers it), then --entries heart rates over the
// patients charted with the real CLI (`chart vitals`, one process per entry):
// the first 200 one at a time (the single-writer rate), the rest --jobs
// processes at a time (default 2 x CPUs, at least 4). The store directory is
// copied after --small-entries entries and after all of them.
//
// Per downtime.resync_batch in --batches (every other downtime setting at its
// default): a copy of the store, a fresh FHIR server with the same data on the
// same port (the store keys its server by base URL) in outage, the daemon
// started and left --settle-s seconds so that its down-probe interval reaches
// its steady value; then the outage ends at t1 and `status --json` is polled
// every 200 ms. Printed per run: detection time (t1 -> ehr.state up), write
// time (up -> the last entry written, from the daemon's log) and t1 -> status
// showing written == N; entries/s; transaction requests per entry (the FHIR
// server's stats); the daemon's peak RSS (VmHWM just before it is stopped);
// CPU seconds of the daemon and of the FHIR server from t1 to done; from the
// daemon's debug log the time between sending a Bundle and logging its result
// ("EHR wait", which includes recording the answer in the store) and the time
// between a result and the next Bundle ("between"); the pull the daemon makes
// after writing (the entries come back for REDCap); errors the daemon logged
// about its store. If the write takes longer than --max-write-s the run is
// stopped (its rate is printed) and done again with the --small-entries copy.
//
// Exactly once, after every run: each charted uuid is the identifier of one
// Observation in the EHR, with one Provenance dt-<uuid> whose target is that
// Observation; no other downtime entry is in the EHR; nothing pending.
//
// Last, `sync --once` drains the full copy with resync_batch 50 (no daemon).
import { spawn } from 'node:child_process';
import { cpSync, readFileSync, readdirSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { cpus } from 'node:os';

import {
  startFhirServer, writeConfig, runBridge, syncOnce, status, tempDir, cleanup, bridgeBin, sleep,
} from '../integration/lib.mjs';

const args = process.argv.slice(2);
// The last occurrence wins: `meson test --test-args '--entries 500'` overrides meson.build's arguments.
const opt = (name, def) => { const i = args.lastIndexOf(name); return i >= 0 ? args[i + 1] : def; };
const entries = Number(opt('--entries', '10000'));
const patients = Number(opt('--patients', '100'));
const batches = opt('--batches', '1,50,200').split(',').map(Number);
const jobs = Number(opt('--jobs', String(Math.max(4, 2 * cpus().length))));
const smallEntries = Math.min(entries, Number(opt('--small-entries', '1000')));
const maxWriteS = Number(opt('--max-write-s', '300'));
const settleS = Number(opt('--settle-s', '25'));
const withSyncOnce = !args.includes('--no-sync-once');
const keepLogs = opt('--keep-logs', null); // a directory for the daemons' logs and stores
const SEED = '7';

const MRN_SYSTEM = 'urn:oid:1.2.36.146.595.217.0.1';
const DT_SYSTEM = 'urn:oid:2.16.840.1.113883.3.9999.1';
const PASSWORD = 'correct horse battery staple\n';
const CLK_TCK = 100; // USER_HZ: the unit of utime/stime in /proc/<pid>/stat

const mrn = (n) => `MRN${String(n).padStart(8, '0')}`;
const round = (x, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
const progress = (msg) => process.stderr.write(`# ${new Date().toISOString().slice(11, 19)} ${msg}\n`);
const tsOf = (line) => Date.parse(line.slice(0, 24)); // the daemon's log lines start with an ISO instant

// Correctness problems of the whole run: printed at the end, exit status 1.
const problems = [];
function expect(cond, what) {
  if (!cond) {
    problems.push(what);
    progress(`PROBLEM: ${what}`);
  }
  return cond;
}
function must(cond, what) {
  if (!cond) throw new Error(what);
}

// A free loopback port: the FHIR server is started on it again for every run.
function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
}

const fhirArgs = (port) => ['--port', String(port), '--generate', String(patients), '--seed', SEED];

function config(dir, base, resyncBatch) {
  return writeConfig(dir, base, {
    // The fhir defaults (lib.mjs's test values put back), page size 1000:
    // the daemon pulls on recovery and after writing, not every second.
    fhir: { mrn_system: MRN_SYSTEM, page_size: 1000, poll_interval_s: 300, timeout_s: 60, watermark_skew_s: 30,
      retry: { max_attempts: 6, base_ms: 500, max_ms: 30000 } },
    downtime: resyncBatch ? { identifier_system: DT_SYSTEM, resync_batch: resyncBatch }
      : { identifier_system: DT_SYSTEM },
    ui: { password_log2n: 10 },
    log: { level: 'info' },
  });
}

const bridge = (cfg, argv, opts) => runBridge([...argv, '--config', cfg], opts);

// user + system CPU seconds of a live process.
function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch { return NaN; }
}

function vmHwmKb(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmHWM:\s+(\d+) kB/m);
    return m ? Number(m[1]) : null;
  } catch { return null; }
}

function startDaemon(cfg) {
  const proc = spawn(bridgeBin, ['run', '--config', cfg, '--log-level', 'debug'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  const d = { proc, log: '', exited: null };
  proc.stderr.on('data', (x) => { d.log += x; });
  d.exit = new Promise((res) => proc.on('close', (code, signal) => { d.exited = { code, signal }; res(d.exited); }));
  d.stop = async () => {
    if (d.exited) return d.exited;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 30000);
    const r = await d.exit;
    clearTimeout(t);
    return r;
  };
  return d;
}

async function waitFor(what, fn, timeoutMs, stepMs = 200) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

// Chart entries [from, to) with `par` CLI processes at a time; sets uuids[i].
async function chartRange(cfg, uuids, from, to, par, t0, stepS) {
  let next = from, failures = 0;
  const errors = new Map();
  const started = Date.now();
  async function worker() {
    for (;;) {
      const i = next++;
      if (i >= to) return;
      const at = new Date(t0 - (entries - i) * stepS * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      for (let attempt = 0; ; attempt++) {
        const r = await bridge(cfg, ['chart', 'vitals', '--user', 'nurse1', '--patient', mrn((i % patients) + 1),
          '--code', '8867-4', '--value', String(55 + (i % 50)), '--unit', '/min', '--at', at]);
        if (r.code === 0) {
          uuids[i] = r.stdout.trim();
          break;
        }
        failures++;
        const key = r.stderr.trim().split('\n').pop();
        errors.set(key, (errors.get(key) || 0) + 1);
        must(attempt < 3, `chart ${i} failed 4 times: ${r.stderr}`);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(par, to - from) }, worker));
  const s = (Date.now() - started) / 1000;
  return { entries: to - from, jobs: par, s: round(s), per_s: to > from ? round((to - from) / s, 1) : null, failures,
    errors: [...errors] };
}

// Every resource of a type (through the server's paging links).
async function allOf(fhir, type) {
  const out = [];
  let url = `${fhir.base}/${type}?_count=1000`;
  while (url) {
    const r = await fetch(url, { headers: { accept: 'application/fhir+json' } });
    must(r.status === 200, `GET ${url}: HTTP ${r.status}`);
    const b = await r.json();
    for (const e of b.entry || []) out.push(e.resource);
    const nx = (b.link || []).find((l) => l.relation === 'next');
    url = nx ? nx.url : null;
  }
  return out;
}

// Exactly once in the EHR. full: every uuid must be there (a completed run);
// otherwise (a stopped run) only "never twice, nothing foreign, each with its
// Provenance". Records problems; returns the counts.
async function verify(fhir, uuids, full, label) {
  const by = new Map();
  for (const o of await allOf(fhir, 'Observation')) {
    for (const id of o.identifier || []) {
      if (id.system !== DT_SYSTEM) continue;
      if (!by.has(id.value)) by.set(id.value, []);
      by.get(id.value).push(o);
    }
  }
  const provs = new Map((await allOf(fhir, 'Provenance')).map((p) => [p.id, p]));
  const want = new Set(uuids);
  let dup = 0, missing = 0, provBad = 0, foreign = 0;
  for (const [u, copies] of by) {
    if (!want.has(u)) foreign++;
    if (copies.length !== 1) dup++;
    const p = provs.get(`dt-${u}`);
    if (!p || p.target?.[0]?.reference !== `Observation/${copies[0].id}`) provBad++;
  }
  for (const u of uuids) if (!by.has(u)) missing++;
  const dtProvs = [...provs.keys()].filter((k) => k.startsWith('dt-')).length;
  expect(dup === 0, `${label}: ${dup} entries are in the EHR more than once`);
  expect(foreign === 0, `${label}: ${foreign} downtime entries in the EHR that were not charted`);
  expect(dtProvs === by.size, `${label}: ${dtProvs} downtime Provenances for ${by.size} entries`);
  expect(provBad === 0, `${label}: ${provBad} entries without their Provenance dt-<uuid> targeting them`);
  if (full) expect(missing === 0, `${label}: ${missing} entries missing in the EHR`);
  return { in_ehr: by.size, duplicates: dup, missing, provenances: dtProvs };
}

// From the daemon's debug log: the Bundles sent after t1 (sent, answer
// recorded), the EHR UP instant, the end of the first pull after the last write.
function parseLog(log, t1Ms) {
  const tx = [];
  let up = null, lastWrite = null, pullEnd = null;
  for (const line of log.split('\n')) {
    if (/ POST transaction with \d+ entries/.test(line)) {
      tx.push({ sent: tsOf(line), done: null });
    } else if (/ (wrote \d+ downtime entr|the EHR refused a Bundle)/.test(line) && tx.length
      && tx[tx.length - 1].done === null) {
      tx[tx.length - 1].done = tsOf(line);
      if (/ wrote /.test(line)) { lastWrite = tsOf(line); pullEnd = null; }
    } else if (/ EHR UP/.test(line) && up === null && tsOf(line) >= t1Ms - 1000) {
      up = tsOf(line);
    } else if (/ sync (complete|incomplete)/.test(line) && lastWrite !== null && pullEnd === null) {
      pullEnd = { at: tsOf(line), ok: / sync complete/.test(line) };
    }
  }
  const done = tx.filter((x) => x.done !== null && x.sent >= t1Ms - 1000);
  let wait = 0, gap = 0;
  for (let i = 0; i < done.length; i++) {
    wait += done[i].done - done[i].sent;
    if (i + 1 < done.length) gap += done[i + 1].sent - done[i].done;
  }
  const storeErrors = log.match(/ error store .*/g) || [];
  const logWritten = (log.match(/ wrote \d+ downtime entr/g) || []).reduce((a, l) => a + Number(l.match(/\d+/)[0]), 0);
  return { up, lastWrite, pullEnd, logWritten, bundles: done.length, ehrWaitS: wait / 1000, betweenS: gap / 1000,
    storeErrors: storeErrors.length,
    storeErrorKinds: [...new Set(storeErrors.map((e) => e.replace(/^.*? error store /, '')
      .replace(/ \(store [^)]*\)/, '').replace(/entry [0-9a-f-]{36}/, 'entry <uuid>')))] };
}

// One write-back by the daemon; resolves to the figures (and records problems).
async function writeBack(port, snapDir, n, uuids, batch) {
  const label = `daemon resync_batch ${batch}, ${n} entries`;
  const dir = tempDir('frb-bench-dt-run-');
  cpSync(snapDir, dir, { recursive: true });
  const cfg = config(dir, `http://127.0.0.1:${port}/fhir/R4`, batch);
  const fhir = await startFhirServer(fhirArgs(port));
  let d = null;
  try {
    await fhir.control('outage', { mode: 'drop' });
    d = startDaemon(cfg);
    await waitFor('the daemon down', async () => (await status(cfg)).ehr.state === 'down', 30000);
    const st0 = await status(cfg);
    must(st0.downtime.pending === n && st0.downtime.written === 0,
      `${label}: ${st0.downtime.pending} pending before the run`);
    progress(`${label}: the daemon sees the EHR down; the outage ends in ${settleS} s`);
    await sleep(settleS * 1000);
    await fhir.control('stats', undefined, 'DELETE');
    const cpuD0 = cpuSeconds(d.proc.pid), cpuS0 = cpuSeconds(fhir.proc.pid);
    const t1 = Date.now();
    await fhir.control('outage', { mode: 'off' });
    let tUp = null, tDone = null, last = null, stopped = false, crashed = false;
    for (;;) {
      const tick = Date.now();
      last = await status(cfg);
      if (tUp === null && last.ehr.state === 'up') {
        tUp = Date.now();
        progress(`${label}: EHR up after ${(tUp - t1) / 1000} s`);
      }
      if (last.downtime.written >= n) { tDone = Date.now(); break; }
      if (d.exited) {
        expect(false, `${label}: the daemon died during the write-back: ${JSON.stringify(d.exited)}`);
        crashed = stopped = true;
        break;
      }
      if ((Date.now() - (tUp ?? t1)) / 1000 > maxWriteS) { stopped = true; break; }
      const rest = 200 - (Date.now() - tick);
      if (rest > 0) await sleep(rest);
    }
    const cpuD = (crashed ? NaN : cpuSeconds(d.proc.pid)) - cpuD0, cpuS = cpuSeconds(fhir.proc.pid) - cpuS0;
    const hwmAtDone = crashed ? null : vmHwmKb(d.proc.pid);
    if (!stopped) {
      // The writer went idle: the daemon pulls the entries back (on to REDCap).
      try {
        await waitFor('the pull after the write-back', async () => parseLog(d.log, t1).pullEnd, 120000);
      } catch { /* reported as not seen */ }
    }
    const hwm = crashed ? null : vmHwmKb(d.proc.pid);
    const stats = await fhir.control('stats');
    const ex = await d.stop();
    const lg = parseLog(d.log, t1);
    if (!crashed) {
      expect(ex.code === 0, `${label}: the daemon exited ${JSON.stringify(ex)} on SIGTERM (its last cycle failed?)`);
    }
    expect(lg.storeErrors === 0,
      `${label}: the daemon logged ${lg.storeErrors} store errors: ${lg.storeErrorKinds.join(' | ')}`);
    const written = (await status(cfg)).downtime.written;
    progress(`${label}: ${written} written; checking the EHR`);
    expect(lg.logWritten === written,
      `${label}: the daemon's log says ${lg.logWritten} entries written, its store ${written}`);
    const v = await verify(fhir, uuids.slice(0, n), !stopped, label);
    if (!stopped) {
      expect(written === n, `${label}: ${written} of ${n} recorded as written`);
      expect(v.in_ehr === n, `${label}: ${v.in_ehr} of ${n} entries in the EHR`);
    }
    const tx = stats.requests.byKind.transaction || 0;
    const wrote = stopped ? written : n;
    const writeS = lg.up && lg.lastWrite ? (lg.lastWrite - lg.up) / 1000 : ((tDone ?? Date.now()) - (tUp ?? t1)) / 1000;
    return {
      bench: 'downtime-daemon', resync_batch: batch, entries: n, completed: !stopped, crashed, written: wrote,
      detect_s: tUp ? round((tUp - t1) / 1000, 1) : null,
      detect_log_s: lg.up ? round((lg.up - t1) / 1000, 2) : null,
      write_s: round(writeS, 2),
      recovery_to_all_written_s: stopped ? null : round((tDone - t1) / 1000, 1),
      entries_per_s: round(wrote / writeS, 1),
      transactions: tx,
      requests_per_entry: round(tx / Math.max(1, wrote), 3),
      fhir_requests: stats.requests.byKind,
      fhir_statuses: stats.requests.byStatus,
      bundles_in_log: lg.bundles,
      ehr_wait_s: round(lg.ehrWaitS), bridge_between_bundles_s: round(lg.betweenS),
      daemon_cpu_s: round(cpuD, 1), fhir_server_cpu_s: round(cpuS, 1),
      peak_rss_kb_at_done: hwmAtDone, peak_rss_kb: hwm,
      pull_after_write_s: lg.pullEnd ? round((lg.pullEnd.at - lg.lastWrite) / 1000, 2) : null,
      pull_after_write_ok: lg.pullEnd ? lg.pullEnd.ok : null,
      daemon_exit: ex, written_per_log: lg.logWritten,
      daemon_store_errors: lg.storeErrors, daemon_store_error_kinds: lg.storeErrorKinds,
      exactly_once: v, pending_at_end: last.downtime.pending,
    };
  } finally {
    if (d && !d.exited) { d.proc.kill('SIGKILL'); await d.exit; }
    if (d && keepLogs) {
      mkdirSync(keepLogs, { recursive: true });
      writeFileSync(join(keepLogs, `daemon-batch${batch}-n${n}.log`), d.log);
      cpSync(dir, join(keepLogs, `store-batch${batch}-n${n}`), { recursive: true });
    }
    await fhir.stop();
    cleanup(dir);
  }
}

// `sync --once` draining the copy (no daemon, no outage).
async function drainOnce(port, snapDir, n, uuids, batch) {
  const label = `sync --once resync_batch ${batch}, ${n} entries`;
  const dir = tempDir('frb-bench-dt-once-');
  cpSync(snapDir, dir, { recursive: true });
  const cfg = config(dir, `http://127.0.0.1:${port}/fhir/R4`, batch);
  const fhir = await startFhirServer(fhirArgs(port));
  try {
    progress(`${label}`);
    const t0 = Date.now();
    const r = await syncOnce(cfg, ['--log-level', 'info']);
    const wall = (Date.now() - t0) / 1000;
    if (keepLogs) writeFileSync(join(keepLogs, `sync-once-batch${batch}-n${n}.log`), r.stderr);
    must(r.result, `${label}: no JSON result (${r.code}): ${r.stderr.slice(-2000)}`);
    expect(r.code === 0, `${label}: exit ${r.code}`);
    const line = (re) => r.stderr.split('\n').find((x) => re.test(x));
    const started = line(/ sync: store /), drained = line(/ downtime entries: \d+ written/);
    const drainS = started && drained ? (tsOf(drained) - tsOf(started)) / 1000 : null;
    const stats = await fhir.control('stats');
    const v = await verify(fhir, uuids.slice(0, n), true, label);
    expect(r.result.downtime.written === n, `${label}: wrote ${r.result.downtime.written} of ${n}`);
    expect((await status(cfg)).downtime.pending === 0, `${label}: entries still pending`);
    const tx = stats.requests.byKind.transaction || 0;
    return {
      bench: 'downtime-sync-once', resync_batch: batch, entries: n, wall_s: round(wall, 1),
      drain_s: drainS !== null ? round(drainS, 2) : null, pull_s: round(r.result.elapsed_s, 2),
      entries_per_s: drainS ? round(n / drainS, 1) : null,
      downtime: r.result.downtime, transactions: tx, requests_per_entry: round(tx / n, 3),
      fhir_statuses: stats.requests.byStatus, peak_rss_kb: r.result.peak_rss_kb, exactly_once: v,
    };
  } finally {
    await fhir.stop();
    cleanup(dir);
  }
}

// Setup: the cache, a clinician, the outage remembered, the entries charted.
// Resolves to {uuids, chartRuns}; fills snapSmall and snapFull.
async function setup(port, setupDir, snapSmall, snapFull) {
  const cfg = config(setupDir, `http://127.0.0.1:${port}/fhir/R4`, 0);
  const uuids = new Array(entries);
  const chartRuns = [];
  const fhir = await startFhirServer(fhirArgs(port));
  try {
    const s = await syncOnce(cfg);
    must(s.code === 0, `first sync: ${s.stderr}`);
    const u = await bridge(cfg, ['users', 'add', 'nurse1', '--display', 'Nurse One'], { input: PASSWORD });
    must(u.code === 0, `users add: ${u.stderr}`);
    await fhir.control('outage', { mode: 'drop' });
    const d = startDaemon(cfg);
    await waitFor('the daemon to see the outage', async () => (await status(cfg)).ehr.state === 'down', 60000, 500);
    const ex = await d.stop();
    // 1: its last cycle (the pull that found the EHR dark) failed; not a crash.
    must(ex.code === 0 || ex.code === 1, `daemon stop: ${JSON.stringify(ex)}: ${d.log.slice(-3000)}`);

    // Effective times: the last a minute ago, the others stepS apart (inside the 72 h chart window).
    const t0 = Date.now() - 60000;
    const stepS = Math.max(1, Math.min(10, Math.floor((60 * 3600) / entries)));
    const seq = Math.min(200, smallEntries);
    progress(`charting ${entries} entries (${seq} one at a time, then ${jobs} at a time)`);
    chartRuns.push({ phase: 'one at a time', ...await chartRange(cfg, uuids, 0, seq, 1, t0, stepS) });
    if (smallEntries > seq) {
      chartRuns.push({ phase: 'parallel', ...await chartRange(cfg, uuids, seq, smallEntries, jobs, t0, stepS) });
    }
    cpSync(setupDir, snapSmall, { recursive: true });
    progress(`${smallEntries} charted`);
    if (entries > smallEntries) {
      chartRuns.push({ phase: 'parallel', ...await chartRange(cfg, uuids, smallEntries, entries, jobs, t0, stepS) });
    }
    const st = await status(cfg);
    must(st.downtime.pending === entries, `${st.downtime.pending} pending after charting ${entries}`);
    must(new Set(uuids).size === entries, 'every chart printed a distinct uuid');
    must(st.ehr.state === 'down', 'the store remembers the outage');
    cpSync(setupDir, snapFull, { recursive: true });
    if (keepLogs) cpSync(snapFull, join(keepLogs, 'snapshot'), { recursive: true });
  } finally {
    await fhir.stop();
  }
  return { uuids, chartRuns };
}

function printTable(results, chartRuns) {
  const rows = [['run', 'batch', 'written', 'detect s', 'write s', 't1->all s', 'entries/s', 'tx/entry', 'EHR wait s',
    'between s', 'daemon CPU s', 'FHIR CPU s', 'peak RSS MB', 'store errors', 'exactly once']];
  for (const r of results) {
    const dmn = r.bench === 'downtime-daemon';
    const once = r.exactly_once;
    const run = dmn ? (r.completed ? 'daemon' : r.crashed ? 'daemon (DIED)' : 'daemon (stopped)') : 'sync --once';
    rows.push([run, r.resync_batch,
      dmn ? `${r.written}/${r.entries}` : `${r.downtime.written}/${r.entries}`,
      dmn ? r.detect_s : '-', dmn ? r.write_s : r.drain_s, dmn ? (r.recovery_to_all_written_s ?? '-') : r.wall_s,
      r.entries_per_s, r.requests_per_entry, dmn ? r.ehr_wait_s : '-', dmn ? r.bridge_between_bundles_s : '-',
      dmn ? r.daemon_cpu_s : '-', dmn ? r.fhir_server_cpu_s : '-', round((r.peak_rss_kb ?? 0) / 1024, 1),
      dmn ? r.daemon_store_errors : '-',
      once.duplicates === 0 && (once.missing === 0 || (dmn && !r.completed)) ? 'yes'
        : `NO (${once.duplicates} doubled, ${once.missing} missing)`]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((row) => String(row[i]).length)));
  for (const row of rows) console.log(row.map((c, i) => String(c).padStart(w[i])).join('  '));
  const totalS = chartRuns.reduce((a, c) => a + c.s, 0);
  console.log(`# charting (real CLI, one process per entry): ${entries} entries over ${patients} patients in ` +
    `${round(totalS, 1)} s, ${round(entries / totalS, 1)}/s (` +
    `${chartRuns.map((c) => `${c.phase} x${c.jobs}: ${c.per_s}/s`).join(', ')}; ` +
    `${chartRuns.reduce((a, c) => a + c.failures, 0)} failed attempts, retried)`);
}

const port = await freePort();
const work = tempDir('frb-bench-dt-');
const snapSmall = join(work, 'small'), snapFull = join(work, 'full'), setupDir = join(work, 'store');
mkdirSync(setupDir);
const results = [];
try {
  const { uuids, chartRuns } = await setup(port, setupDir, snapSmall, snapFull);
  for (const r of chartRuns) console.log(JSON.stringify({ bench: 'downtime-chart', ...r }));
  const totalS = chartRuns.reduce((a, r) => a + r.s, 0);
  console.log(JSON.stringify({ bench: 'downtime-chart-total', entries, patients, s: round(totalS, 1),
    per_s: round(entries / totalS, 1), store_files: readdirSync(snapFull).filter((f) => f.startsWith('bridge.db')) }));

  for (const b of batches) {
    const r = await writeBack(port, snapFull, entries, uuids, b);
    console.log(JSON.stringify(r));
    results.push(r);
    if (!r.completed && !r.crashed && smallEntries < entries) {
      console.log(`# resync_batch ${b}: ${entries} entries not written within ${maxWriteS} s ` +
        `(${r.written} written, ${r.entries_per_s}/s); again with ${smallEntries} entries`);
      const r2 = await writeBack(port, snapSmall, smallEntries, uuids, b);
      console.log(JSON.stringify(r2));
      results.push(r2);
    }
  }
  if (withSyncOnce) {
    const r = await drainOnce(port, snapFull, entries, uuids, 50);
    console.log(JSON.stringify(r));
    results.push(r);
  }
  printTable(results, chartRuns);
} finally {
  cleanup(work);
}
for (const p of problems) console.log(`PROBLEM: ${p}`);
if (problems.length) process.exitCode = 1;
