#!/usr/bin/env node
// Static FHIR search pages for client-side benchmarks: the server does no
// work per request, so a client's own throughput can be measured.
//
//   node static-pages.mjs --observations N --page-size P [--seed S]
//                         [--port 0] [--host 127.0.0.1] [--port-file F]
//
// At start it generates N vital-sign Observations (generate.mjs,
// --observations-only data set; ids and meta.versionId/lastUpdated set,
// lastUpdated increasing by 1 ms) and renders them as searchset Bundle
// pages of P entries, kept in memory as ready-to-send Buffers. Then:
//   GET <base>/Observation?...   page 0 (the query is ignored)
//   GET <base>/__pages/<k>       page k (each page's next link names k+1)
//   GET <base>/metadata          a minimal CapabilityStatement
//   GET /__control/stats         {"requests": n}
// <base> is http://127.0.0.1:<port>/fhir/R4. Prints "LISTENING <base>"
// when the pages are ready.

import fs from 'node:fs';
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { generateResources } from './generate.mjs';
import { LOOPBACK_HOSTS, listen, originOf, writePortFile } from './lib/http-util.mjs';

const BASE = '/fhir/R4';
const T0 = Date.UTC(2024, 0, 1);

/*
 * Renders the pages: returns an array of Buffers, page k holding
 * observations [k*P, (k+1)*P).
 */
export function buildPages({ base, observations, pageSize, seed = 'static' }) {
  const obs = [];
  for (const r of generateResources({ observationsOnly: observations, seed })) {
    if (r.resourceType !== 'Observation') continue;
    r.meta = { versionId: '1', lastUpdated: new Date(T0 + obs.length).toISOString() };
    obs.push(r);
  }
  const pages = [];
  const nPages = Math.max(1, Math.ceil(obs.length / pageSize));
  for (let k = 0; k < nPages; k++) {
    const link = [{ relation: 'self', url: k === 0 ? `${base}/Observation` : `${base}/__pages/${k}` }];
    if (k + 1 < nPages) link.push({ relation: 'next', url: `${base}/__pages/${k + 1}` });
    const entry = obs.slice(k * pageSize, (k + 1) * pageSize).map((r) => ({
      fullUrl: `${base}/Observation/${r.id}`,
      resource: r,
      search: { mode: 'match' },
    }));
    const bundle = { resourceType: 'Bundle', id: `page-${k}`, type: 'searchset', total: obs.length, link };
    if (entry.length) bundle.entry = entry;
    pages.push(Buffer.from(JSON.stringify(bundle), 'utf8'));
  }
  return pages;
}

const CAPABILITY = {
  resourceType: 'CapabilityStatement',
  status: 'active',
  date: '2024-01-01',
  kind: 'instance',
  software: { name: 'fhir-redcap-bridge static page server' },
  fhirVersion: '4.0.1',
  format: ['application/fhir+json'],
  rest: [{ mode: 'server', resource: [{ type: 'Observation', interaction: [{ code: 'search-type' }] }] }],
};

/* Starts the server; returns { server, url, pages, close() }. */
export async function startStaticPages({ observations, pageSize, seed, port = 0, host = '127.0.0.1' }) {
  if (!LOOPBACK_HOSTS.has(host)) throw new Error(`refusing to listen on non-loopback host ${host}`);
  if (!Number.isInteger(observations) || observations < 0) throw new Error('observations must be >= 0');
  if (!Number.isInteger(pageSize) || pageSize < 1) throw new Error('page size must be >= 1');
  let pages = [];
  let requests = 0;
  const headers = (len) => ({ 'content-type': 'application/fhir+json; charset=utf-8', 'content-length': len });
  const metadata = Buffer.from(JSON.stringify(CAPABILITY));
  const notFound = Buffer.from(
    JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] })
  );
  const pagePrefix = `${BASE}/__pages/`;
  const server = http.createServer((req, res) => {
    requests++;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const p = q < 0 ? url : url.slice(0, q);
    let body;
    if (req.method === 'GET' && p === `${BASE}/Observation`) body = pages[0];
    else if (req.method === 'GET' && p.startsWith(pagePrefix)) {
      const k = p.slice(pagePrefix.length);
      if (/^\d{1,9}$/.test(k)) body = pages[Number(k)];
    } else if (req.method === 'GET' && p === `${BASE}/metadata`) body = metadata;
    else if (req.method === 'GET' && p === '/__control/stats') {
      body = Buffer.from(JSON.stringify({ requests, pages: pages.length }));
    }
    if (!body) {
      res.writeHead(404, headers(notFound.length));
      res.end(notFound);
      return;
    }
    res.writeHead(200, headers(body.length));
    res.end(body);
  });
  server.keepAliveTimeout = 30000;
  const address = await listen(server, port, host);
  const url = originOf(address) + BASE;
  pages = buildPages({ base: url, observations, pageSize, seed });
  return {
    server,
    url,
    pages,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function main() {
  const argv = process.argv.slice(2);
  const o = { port: 0, host: '127.0.0.1', seed: 'static' };
  const int = (s, name) => {
    if (!/^\d+$/.test(s ?? '')) throw new Error(`${name} must be a non-negative integer`);
    return Number(s);
  };
  try {
    for (let i = 0; i < argv.length; i++) {
      const a = argv[i];
      const v = argv[i + 1];
      switch (a) {
        case '--observations':
          o.observations = int(v, a);
          i++;
          break;
        case '--page-size':
          o.pageSize = int(v, a);
          i++;
          break;
        case '--port':
          o.port = int(v, a);
          i++;
          break;
        case '--host':
          o.host = v;
          i++;
          break;
        case '--port-file':
          o.portFile = v;
          i++;
          break;
        case '--seed':
          o.seed = v;
          i++;
          break;
        default:
          throw new Error(`unknown argument ${a}`);
      }
    }
    if (o.observations === undefined || o.pageSize === undefined) throw new Error('--observations and --page-size are required');
  } catch (err) {
    process.stderr.write(
      `static-pages.mjs: ${err.message}\nusage: node static-pages.mjs --observations N --page-size P [--seed S] [--port 0] [--port-file F]\n`
    );
    process.exit(2);
  }
  const srv = await startStaticPages(o);
  if (o.portFile) await writePortFile(fs, o.portFile, srv.url);
  process.stdout.write(`LISTENING ${srv.url}\n`);
  const stop = async () => {
    await srv.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`static-pages.mjs: ${err.stack || err}\n`);
    process.exit(1);
  });
}
