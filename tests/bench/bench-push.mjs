// Curation + push benchmark: prints figures, asserts nothing about time.
//
//   node tests/bench/bench-push.mjs [--patients 1000] [--batch-sizes 100,500]
//
// The FHIR test server is loaded with N synthetic patients (generate.mjs:
// encounters, vitals, labs, conditions, medications, allergies), the bridge
// pulls them, curates them with the example study's mapping and pushes them
// to the REDCap emulator. Printed per batch size: records and rows
// (instances + non-repeating rows) pushed per second of the push phase,
// REDCap requests per 1,000 rows, curation time, the bridge's peak RSS.
import { startFhirServer, startRedcapEmulator, writeExampleConfig, syncOnce, tempDir, cleanup } from '../integration/lib.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def; };
const patients = Number(opt('--patients', '1000'));
const batchSizes = opt('--batch-sizes', '100,500').split(',').map(Number);

const fhir = await startFhirServer(['--generate', String(patients), '--seed', '99']);
try {
  for (const batch of batchSizes) {
    const redcap = await startRedcapEmulator();
    const dir = tempDir('frb-bench-push-');
    try {
      const cfg = writeExampleConfig(dir, fhir.base, redcap.url, {
        batch_size: batch, max_requests_per_minute: 600, fhir: { page_size: 1000 }, log: { level: 'warn' },
      });
      const r = await syncOnce(cfg);
      if (r.code !== 0) throw new Error(`sync failed (${r.code}): ${r.stderr}`);
      const res = r.result;
      const p = res.push.projects.example;
      const stats = await redcap.control('stats');
      const dump = await redcap.records();
      const records = Object.keys(dump.records ?? dump).length;
      console.log(JSON.stringify({
        bench: 'push', patients, batch_size: batch,
        pull_s: res.elapsed_s, curate_s: res.curate.elapsed_s, push_s: res.push.elapsed_s,
        rows: p.sent, records_in_redcap: records, import_requests: stats.imports.requests,
        requests_total: p.requests,
        requests_per_1000_rows: Math.round((p.requests / p.sent) * 1000 * 10) / 10,
        rows_per_s: Math.round(p.sent / res.push.elapsed_s),
        records_per_s: Math.round(records / res.push.elapsed_s),
        curate_patients_per_s: Math.round(res.curate.patients / res.curate.elapsed_s),
        peak_rss_kb: res.peak_rss_kb,
      }));
      // A rerun with nothing new: the cost of a quiet cycle.
      const r2 = await syncOnce(cfg);
      console.log(JSON.stringify({ bench: 'push-rerun', batch_size: batch, sent: r2.result.push.projects.example.sent,
        requests: r2.result.push.projects.example.requests, curate_s: r2.result.curate.elapsed_s }));
    } finally {
      await redcap.stop();
      cleanup(dir);
    }
  }
} finally {
  await fhir.stop();
}
