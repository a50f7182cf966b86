// Export benchmark: prints figures, asserts nothing about time.
//
//   node tests/bench/bench-export.mjs [--sizes 10000,100000] [--formats csv,json]
//       [--batch-sizes 100,1000] [--density 1] [--rate 600] [--emulator-rate-limit 600] [--no-verify]
//
// The REDCap emulator is loaded (through its API, 2,000 rows a request)
// with N records of the example study (conf/example-project; about 7 rows a
// record at density 1: demographics + repeating vitals, labs, conditions,
// medications, allergies), then `fhir-redcap-bridge export --json` runs
// once per format and batch size. Printed per run (one JSON line): records,
// rows, requests (the command's and the emulator's count), elapsed,
// records/s, rows/s, the command's peak RSS (its own --json figure and
// /usr/bin/time's), the file size, and whether the file equals the
// emulator's single export (csv always; json up to 20,000 records, ndjson
// row by row against it — the
// single json export of 100k records is ~470 MB and takes the emulator
// over a minute and ~4 GB).
//
// redcap.max_requests_per_minute is --rate (600, REDCap's own ban limit, the
// most the config allows); with batch 100 a 100k export needs ~1,000
// requests, so the cap, not the bridge, sets its time.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { bridgeBin, tempDir, cleanup } from '../integration/lib.mjs';
import {
  CLASSIC_TOKEN, SUMMARY_RE, classicRows, startExportEmulator, importRows, referenceExport, writeExportConfig,
} from '../integration/export-lib.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def; };
const sizes = opt('--sizes', '10000,100000').split(',').map(Number);
const formats = opt('--formats', 'csv,json').split(',');
const batchSizes = opt('--batch-sizes', '100,1000').split(',').map(Number);
const density = Number(opt('--density', '1'));
const rate = Number(opt('--rate', '600'));
const emulatorRateLimit = opt('--emulator-rate-limit', '600');
const verify = !args.includes('--no-verify');
const timeBin = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

function run(argv) {
  return new Promise((res) => {
    const cmd = timeBin ?? bridgeBin;
    const a = timeBin ? ['-f', 'MAXRSS_KB %M', bridgeBin, ...argv] : argv;
    const t0 = performance.now();
    const p = spawn(cmd, a, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('close', (code) => res({ code, stdout, stderr, s: (performance.now() - t0) / 1000 }));
  });
}

function sha256File(path) {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(path).on('data', (d) => h.update(d)).on('end', () => res(h.digest('hex'))).on('error', rej);
  });
}
const sha256 = (text) => createHash('sha256').update(text, 'utf8').digest('hex');

for (const n of sizes) {
  const dir = tempDir('frb-bench-export-');
  const srv = await startExportEmulator({ longDir: dir, extra: ['--rate-limit', emulatorRateLimit] });
  try {
    const rows = classicRows(n, { density, seed: 5 });
    const load = await importRows(srv, CLASSIC_TOKEN, rows);
    console.log(JSON.stringify({ bench: 'export-load', records: n, rows: rows.length, requests: load.requests,
      load_s: +(load.ms / 1000).toFixed(1), rows_per_s: Math.round(rows.length / (load.ms / 1000)) }));
    const cfg = writeExportConfig(dir, [{ name: 'classic', url: srv.url, token: CLASSIC_TOKEN }],
      { max_requests_per_minute: rate, log: { level: 'warn' } });
    const refs = {};
    for (const format of formats) {
      for (const batch of batchSizes) {
        const out = join(dir, `out-${format}-${batch}`);
        await srv.control('reset-ban', {});
        const s0 = await srv.control('stats');
        const r = await run(['export', '--config', cfg, '--project', 'classic', '--format', format, '--batch-size', String(batch),
          '--out', out, '--json']);
        const s1 = await srv.control('stats');
        const line = { bench: 'export', records: n, rows: rows.length, format, batch_size: batch, exit: r.code };
        let res = null;
        try { res = JSON.parse(r.stdout.trim().split('\n').pop()); } catch { /* no --json output */ }
        const sum = SUMMARY_RE.exec(r.stderr);
        const rss = /MAXRSS_KB (\d+)/.exec(r.stderr);
        const elapsed = res?.elapsed_s ?? r.s;
        Object.assign(line, {
          requests: res?.requests ?? (sum ? Number(sum[3]) : null),
          emulator_requests: s1.requests.total - s0.requests.total,
          emulator_bans: s1.bans - s0.bans,
          elapsed_s: +Number(elapsed).toFixed(2),
          wall_s: +r.s.toFixed(2),
          records_per_s: Math.round(n / elapsed),
          rows_per_s: Math.round(rows.length / elapsed),
          peak_rss_kb: res?.peak_rss_kb ?? null,
          time_maxrss_kb: rss ? Number(rss[1]) : null,
        });
        const file = join(out, `records.${format}`);
        if (r.code === 0 && existsSync(file)) {
          line.bytes = statSync(file).size;
          if (verify && format === 'ndjson' && n <= 20000) {
            // One compact object a line, each equal (keys, order, values) to that row of the single json export.
            const want = JSON.parse(await referenceExport(srv, CLASSIC_TOKEN, { format: 'json' }));
            const lines = readFileSync(file, 'utf8').split('\n');
            line.identical = lines.pop() === '' && lines.length === want.length &&
              lines.every((l, i) => JSON.stringify(JSON.parse(l)) === JSON.stringify(want[i]));
          } else if (verify && (format === 'csv' || n <= 20000)) {
            refs[format] ??= sha256(await referenceExport(srv, CLASSIC_TOKEN, { format }));
            line.identical = (await sha256File(file)) === refs[format];
          }
        } else {
          line.error = r.stderr.split('\n').filter((l) => l && !l.startsWith('MAXRSS_KB')).slice(-3).join(' | ');
        }
        console.log(JSON.stringify(line));
        rmSync(out, { recursive: true, force: true });
      }
    }
  } finally {
    await srv.stop();
    cleanup(dir);
  }
}
