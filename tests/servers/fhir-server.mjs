#!/usr/bin/env node
// In-memory FHIR R4 server for the tests and the demo: @medplum/fhir-router
// 4.5.2 over a MemoryRepository, wrapped in node:http with what a real
// server (HAPI) does and medplum's in-memory pieces lack: snapshot search
// paging, ETag/Last-Modified/Location, a CapabilityStatement, SMART Backend
// Services auth, and /__control endpoints for fault injection and test setup.
// See README.md for the CLI and the endpoints.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { FhirRouter } from '@medplum/fhir-router';
import { OperationOutcomeError, getStatus, normalizeOperationOutcome, validateResource } from '@medplum/core';

import { loadDefinitions, resourceTypes } from './lib/fhir-defs.mjs';
import { TestRepository } from './lib/store.mjs';
import { compileSearch, sortResources } from './lib/search.mjs';
import { Auth, AuthError } from './lib/auth.mjs';
import { Faults } from './lib/faults.mjs';
import { buildCapabilityStatement, buildSmartConfiguration } from './lib/capability.mjs';
import {
  HttpError,
  LOOPBACK_HOSTS,
  forEachLine,
  issueCodeFor,
  listen,
  operationOutcome,
  originOf,
  readBody,
  writePortFile,
  cliReader,
} from './lib/http-util.mjs';
import { generateResources } from './generate.mjs';

export const FHIR_BASE = '/fhir/R4';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const TOUCH_URL = 'urn:fhir-redcap-bridge:test:touch';

const DEFAULTS = {
  port: 0,
  host: '127.0.0.1',
  load: [],
  generate: undefined, // { patients, seed, obsPerPatient, observationsOnly }
  smartJwks: undefined,
  clients: [],
  requireAuth: false,
  bearerTokens: [],
  tokenTtl: 300,
  portFile: undefined,
  verbose: false,
  defaultCount: 20,
  maxCount: 1000,
  snapshotTtl: 3600,
  maxSnapshots: 500,
  pageContent: 'current',
  validate: false,
  publicBase: undefined,
  maxBody: 512 << 20,
};

/* ------------------------------------------------------------ loading */

/*
 * Stores resources straight into the repository (no copy, no validation;
 * ids kept, generated when missing). Returns { loaded, byType, rejected }.
 */
function storeAll(repo, iterable, { keepMeta = false } = {}) {
  const types = resourceTypes();
  const result = { loaded: 0, byType: {}, rejected: [] };
  for (const r of iterable) {
    if (!r || typeof r !== 'object' || Array.isArray(r) || !types.has(r.resourceType)) {
      result.rejected.push({ reason: 'not a FHIR resource', resourceType: r?.resourceType });
      continue;
    }
    if (r.id === undefined) r.id = repo.generateId();
    try {
      repo.put(r, { keepMeta });
    } catch (err) {
      result.rejected.push({ reason: err.outcome?.issue?.[0]?.diagnostics ?? err.message, resourceType: r.resourceType });
      continue;
    }
    result.loaded++;
    result.byType[r.resourceType] = (result.byType[r.resourceType] ?? 0) + 1;
  }
  return result;
}

/*
 * The resources a parsed JSON document stands for: a Bundle other than a
 * document/message is unpacked to its entries' resources, an array to its
 * elements, anything else is one resource.
 */
function* unpackJson(doc) {
  if (Array.isArray(doc)) {
    for (const d of doc) yield d;
  } else if (doc?.resourceType === 'Bundle' && doc.type !== 'document' && doc.type !== 'message') {
    for (const e of doc.entry ?? []) if (e?.resource) yield e.resource;
  } else {
    yield doc;
  }
}

function* ndjsonResources(text) {
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t) yield JSON.parse(t);
  }
}

/*
 * Loads a file or directory given with --load: *.ndjson line by line, a
 * *.json document via unpackJson, a directory as one resource per *.json
 * file stored as-is (the HL7 examples corpus).
 */
function loadPath(repo, p) {
  const st = fs.statSync(p);
  if (st.isDirectory()) {
    const docs = function* () {
      for (const f of fs.readdirSync(p).sort()) {
        if (!f.endsWith('.json')) continue;
        const doc = JSON.parse(fs.readFileSync(path.join(p, f), 'utf8'));
        if (doc && typeof doc === 'object' && typeof doc.resourceType === 'string') yield doc;
      }
    };
    return storeAll(repo, docs());
  }
  const text = fs.readFileSync(p, 'utf8');
  if (p.endsWith('.ndjson') || p.endsWith('.jsonl')) return storeAll(repo, ndjsonResources(text));
  return storeAll(repo, unpackJson(JSON.parse(text)));
}

/* ------------------------------------------------------------- server */

/*
 * Starts the server. Returns { server, url, origin, port, state, close() }.
 * `options` as DEFAULTS above; the CLI maps its flags onto them.
 */
export async function startFhirServer(options = {}) {
  const opts = { ...DEFAULTS, ...options };
  if (!LOOPBACK_HOSTS.has(opts.host)) throw new Error(`refusing to listen on non-loopback host ${opts.host}`);
  if (!['current', 'snapshot'].includes(opts.pageContent)) throw new Error('pageContent must be current|snapshot');

  const t0 = performance.now();
  loadDefinitions();
  const repo = new TestRepository();
  const router = new FhirRouter();
  const auth = new Auth({ tokenTtl: opts.tokenTtl, requireAuth: opts.requireAuth, staticTokens: opts.bearerTokens });
  const faults = new Faults();
  const snapshots = new Map(); // id -> snapshot, in least-recently-used order
  let touchCounter = 0;
  const flags = { rejectLastUpdated: false, rejectSortLastUpdated: false };
  // An EHR outage for every non-control request: 'drop' closes the connection
  // without an answer, 'hang' holds the request until the outage ends (then
  // drops it), 'unavailable' answers 503. 'off' ends it. The data stays.
  const outage = { mode: 'off', since: null, held: new Set(), requests: 0 };
  const newStats = () => ({
    requests: { total: 0, byKind: {}, byStatus: {} },
    searches: { snapshots: 0, firstPages: 0, pages: 0, gone: 0 },
    control: 0,
  });
  let stats = newStats();

  if (opts.smartJwks) {
    const doc = typeof opts.smartJwks === 'string' ? JSON.parse(fs.readFileSync(opts.smartJwks, 'utf8')) : opts.smartJwks;
    for (const c of doc.clients ?? []) auth.registerClient(c);
  }
  for (const c of opts.clients) auth.registerClient(c);

  const loadSummary = [];
  for (const p of opts.load) loadSummary.push({ path: p, ...loadPath(repo, p) });
  if (opts.generate) loadSummary.push({ generated: true, ...storeAll(repo, generateResources(opts.generate)) });

  const server = http.createServer();
  server.keepAliveTimeout = 30000;
  const address = await listen(server, opts.port, opts.host);
  const origin = originOf(address);
  const url = origin + FHIR_BASE;
  let capabilityCache = new Map();

  /* ---------------------------------------------------------- helpers */

  const requestOrigin = (req) => {
    if (opts.publicBase) return new URL(opts.publicBase).origin;
    const host = req.headers.host;
    return host && /^[A-Za-z0-9.\-:[\]]{1,255}$/.test(host) ? `http://${host}` : origin;
  };
  const baseOf = (req) => (opts.publicBase ? opts.publicBase.replace(/\/$/, '') : requestOrigin(req) + FHIR_BASE);
  const tokenUrls = (req) => [...new Set([`${requestOrigin(req)}/auth/token`, `${origin}/auth/token`])];

  const send = (ctx, status, body, headers = {}) => {
    const { res } = ctx;
    if (res.headersSent || res.destroyed) return;
    let buf;
    if (body === undefined || body === null) buf = Buffer.alloc(0);
    else if (Buffer.isBuffer(body)) buf = body;
    else if (typeof body === 'string') buf = Buffer.from(body, 'utf8');
    else buf = Buffer.from(JSON.stringify(body), 'utf8');
    const h = { 'content-type': FHIR_JSON, date: new Date(Date.now() + repo.clockOffsetMs).toUTCString(), ...headers,
      'content-length': buf.length };
    if (buf.length === 0 && !headers['content-type']) delete h['content-type'];
    ctx.status = status;
    if (ctx.truncate) {
      res.writeHead(status, h);
      const half = buf.subarray(0, Math.floor(buf.length / 2));
      res.write(half, () => res.socket?.destroy());
      return;
    }
    res.writeHead(status, h);
    res.end(buf);
  };
  const sendOutcome = (ctx, status, message, headers) =>
    send(ctx, status, operationOutcome(status >= 500 ? 'fatal' : 'error', issueCodeFor(status), message), headers);
  const sendJson = (ctx, status, value) => send(ctx, status, value, { 'content-type': 'application/json' });

  const resourceHeaders = (resource) => {
    const h = {};
    const v = resource?.meta?.versionId;
    if (v) h.etag = `W/"${v}"`;
    const lu = resource?.meta?.lastUpdated;
    if (lu) h['last-modified'] = new Date(lu).toUTCString();
    return h;
  };

  const parseJsonBody = (ctx, buf) => {
    if (buf.length === 0) return undefined;
    const ct = (ctx.req.headers['content-type'] ?? '').toLowerCase();
    if (ct && !/(^|\/|\+)json\b|json-patch/.test(ct)) {
      throw new HttpError(415, `unsupported content type ${ct.slice(0, 80)}`);
    }
    try {
      return JSON.parse(buf.toString('utf8'));
    } catch {
      throw new HttpError(400, 'request body is not valid JSON');
    }
  };

  /* ---------------------------------------------------------- search */

  const pruneSnapshots = () => {
    const now = Date.now();
    for (const [id, s] of snapshots) {
      if (now - s.lastUsed > opts.snapshotTtl * 1000) snapshots.delete(id);
    }
    while (snapshots.size > opts.maxSnapshots) snapshots.delete(snapshots.keys().next().value);
  };

  const pageUrl = (base, sid, offset, count) =>
    `${base}?_getpages=${sid}&_getpagesoffset=${offset}&_count=${count}&_bundletype=searchset`;

  /*
   * Stored resource versions are never mutated, so each one's JSON is
   * computed once and reused by every page that carries it.
   */
  const jsonCache = new WeakMap();
  const resourceJson = (r) => {
    let j = jsonCache.get(r);
    if (j === undefined) {
      j = JSON.stringify(r);
      jsonCache.set(r, j);
    }
    return j;
  };

  /*
   * The searchset Bundle (as a JSON string) for [offset, offset+count) of a
   * result list or a snapshot.
   */
  const searchBundle = (ctx, { type, resources, snap, offset, count, total, selfUrl, stamp }) => {
    const base = baseOf(ctx.req);
    const entry = [];
    const add = (r) =>
      entry.push(
        `{"fullUrl":${JSON.stringify(`${base}/${type}/${r.id}`)},"resource":${resourceJson(r)},"search":{"mode":"match"}}`
      );
    if (resources) {
      for (const r of resources.slice(offset, offset + count)) add(r);
    } else {
      const end = Math.min(offset + count, snap.ids.length);
      const typeMap = repo.resources.get(type);
      const hist = repo.history.get(type);
      for (let i = offset; i < end; i++) {
        const id = snap.ids[i];
        let r;
        if (opts.pageContent === 'snapshot') {
          const versions = hist?.get(id);
          if (versions) {
            for (let k = versions.length - 1; k >= 0; k--) {
              if (versions[k].meta.versionId === snap.versions[i]) {
                r = versions[k];
                break;
              }
            }
          }
        } else {
          r = typeMap?.get(id);
        }
        if (r) add(r);
      }
    }
    const link = [{ relation: 'self', url: selfUrl }];
    if (snap) {
      link.push({ relation: 'first', url: pageUrl(base, snap.id, 0, count) });
      if (offset + count < total) link.push({ relation: 'next', url: pageUrl(base, snap.id, offset + count, count) });
      if (offset > 0) {
        link.push({ relation: 'previous', url: pageUrl(base, snap.id, Math.max(0, offset - count), count) });
      }
    }
    const head = JSON.stringify({
      resourceType: 'Bundle',
      id: randomUUID(),
      meta: { lastUpdated: stamp },
      type: 'searchset',
      total,
      link,
    });
    return entry.length ? `${head.slice(0, -1)},"entry":[${entry.join(',')}]}` : head;
  };

  const handleSearch = (ctx, type, entries, selfUrl) => {
    ctx.kind = 'search';
    stats.searches.firstPages++;
    const keys = entries.map(([k]) => k.split(':')[0]);
    if (flags.rejectLastUpdated && keys.includes('_lastUpdated')) {
      return sendOutcome(ctx, 400, 'Search parameter _lastUpdated is not supported by this server');
    }
    if (flags.rejectSortLastUpdated && entries.some(([k, v]) => k === '_sort' && v.includes('_lastUpdated'))) {
      return sendOutcome(ctx, 400, 'Sorting by _lastUpdated is not supported by this server');
    }
    const lenient = /handling=lenient/i.test(ctx.req.headers.prefer ?? '');
    const q = compileSearch(type, entries, { lenient, defaultCount: opts.defaultCount, maxCount: opts.maxCount });
    const stamp = repo.now();
    const matches = [];
    const map = repo.resources.get(type);
    if (map) {
      const preds = q.predicates;
      outer: for (const r of map.values()) {
        for (let i = 0; i < preds.length; i++) if (!preds[i](r)) continue outer;
        matches.push(r);
      }
    }
    sortResources(matches, q.sortRules);
    const total = matches.length;
    if (q.countOnly || q.count === 0) {
      return send(ctx, 200, { resourceType: 'Bundle', id: randomUUID(), meta: { lastUpdated: stamp }, type: 'searchset', total, link: [{ relation: 'self', url: selfUrl }] });
    }
    let snap;
    if (q.offset + q.count < total) {
      snap = {
        id: randomBytes(12).toString('hex'),
        type,
        ids: matches.map((r) => r.id),
        versions: opts.pageContent === 'snapshot' ? matches.map((r) => r.meta.versionId) : undefined,
        stamp,
        lastUsed: Date.now(),
      };
      snapshots.set(snap.id, snap);
      stats.searches.snapshots++;
      pruneSnapshots();
    }
    const bundle = snap
      ? searchBundle(ctx, { type, snap, offset: q.offset, count: q.count, total, selfUrl, stamp })
      : searchBundle(ctx, { type, resources: matches, offset: q.offset, count: q.count, total, selfUrl, stamp });
    return send(ctx, 200, bundle);
  };

  const handlePage = (ctx, params, selfUrl) => {
    ctx.kind = 'page';
    const sid = params.get('_getpages');
    pruneSnapshots();
    const snap = snapshots.get(sid);
    if (!snap) {
      stats.searches.gone++;
      return sendOutcome(ctx, 410, 'Search results expired or unknown; repeat the search');
    }
    const authFail = auth.checkRequest(ctx.req.headers.authorization, snap.type, 'read');
    if (authFail) return sendAuthFailure(ctx, authFail);
    snapshots.delete(sid);
    snapshots.set(sid, snap);
    snap.lastUsed = Date.now();
    const offS = params.get('_getpagesoffset') ?? '0';
    const cntS = params.get('_count') ?? String(opts.defaultCount);
    if (!/^\d+$/.test(offS) || !/^\d+$/.test(cntS)) return sendOutcome(ctx, 400, 'Invalid paging parameters');
    const count = Math.min(Number(cntS), opts.maxCount);
    const offset = Number(offS);
    stats.searches.pages++;
    const bundle = searchBundle(ctx, { type: snap.type, snap, offset, count, total: snap.ids.length, selfUrl, stamp: snap.stamp });
    return send(ctx, 200, bundle);
  };

  /* ------------------------------------------------------------ auth */

  const sendAuthFailure = (ctx, fail) => {
    const headers = fail.wwwAuthenticate ? { 'www-authenticate': fail.wwwAuthenticate } : {};
    return sendOutcome(ctx, fail.status, fail.message, headers);
  };

  const handleToken = async (ctx, body) => {
    ctx.kind = 'token';
    if (ctx.req.method !== 'POST') return sendJson(ctx, 405, { error: 'invalid_request', error_description: 'POST only' });
    const ct = (ctx.req.headers['content-type'] ?? '').toLowerCase();
    if (!ct.startsWith('application/x-www-form-urlencoded')) {
      auth.stats.tokenFailures++;
      return sendJson(ctx, 400, { error: 'invalid_request', error_description: 'form-encoded body required' });
    }
    try {
      const out = auth.issueToken(new URLSearchParams(body.toString('utf8')), tokenUrls(ctx.req));
      return send(ctx, 200, out, { 'content-type': 'application/json', 'cache-control': 'no-store', pragma: 'no-cache' });
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      return send(
        ctx,
        err.status,
        { error: err.error, error_description: err.message },
        { 'content-type': 'application/json', 'cache-control': 'no-store' }
      );
    }
  };

  /* ------------------------------------------------------------ FHIR */

  const decorateBundleEntries = (ctx, bundle) => {
    const base = baseOf(ctx.req);
    for (const e of bundle.entry ?? []) {
      const r = e?.resource;
      if (r?.id && r.resourceType && r.resourceType !== 'OperationOutcome') {
        e.fullUrl ??= `${base}/${r.resourceType}/${r.id}`;
        if (e.response && r.meta?.versionId) {
          e.response.location = `${r.resourceType}/${r.id}/_history/${r.meta.versionId}`;
          e.response.etag = `W/"${r.meta.versionId}"`;
          e.response.lastModified = r.meta.lastUpdated;
        }
      }
    }
  };

  const accessFor = (method) => (method === 'GET' || method === 'HEAD' ? 'read' : 'write');

  const checkBundleAuth = (ctx, bundle) => {
    if (!auth.enabled()) return undefined;
    const entries = Array.isArray(bundle?.entry) ? bundle.entry : [];
    const first = auth.checkRequest(ctx.req.headers.authorization, undefined, undefined);
    if (first) return first;
    for (const e of entries) {
      const method = String(e?.request?.method ?? 'POST').toUpperCase();
      const t = String(e?.request?.url ?? '').split(/[/?]/)[0] || e?.resource?.resourceType;
      const fail = auth.checkRequest(ctx.req.headers.authorization, t, accessFor(method));
      if (fail) return fail;
    }
    return undefined;
  };

  const handleFhir = async (ctx, rel, query, body) => {
    const { req } = ctx;
    const method = req.method;
    const segs = rel.split('/').filter(Boolean);
    const params = new URLSearchParams(query);
    const base = baseOf(req);
    const selfUrl = base + rel + (query ? '?' + query : '');

    if (segs.length === 1 && segs[0] === 'metadata' && method === 'GET') {
      ctx.kind = 'metadata';
      const tokenUrl = auth.enabled() && auth.clients.size > 0 ? `${requestOrigin(req)}/auth/token` : undefined;
      const key = `${base} ${tokenUrl}`;
      let cs = capabilityCache.get(key);
      if (!cs) {
        cs = Buffer.from(JSON.stringify(buildCapabilityStatement({ baseUrl: base, tokenUrl })));
        capabilityCache.set(key, cs);
      }
      return send(ctx, 200, cs);
    }
    if (segs.length === 2 && segs[0] === '.well-known' && segs[1] === 'smart-configuration' && method === 'GET') {
      ctx.kind = 'smart-config';
      return sendJson(ctx, 200, buildSmartConfiguration({ tokenUrl: `${requestOrigin(req)}/auth/token` }));
    }
    if (segs.length === 0 && method === 'GET' && params.has('_getpages')) {
      return handlePage(ctx, params, selfUrl);
    }

    if (segs.length === 0 && method === 'GET') {
      ctx.kind = 'search';
      return sendOutcome(ctx, 400, 'System-level search is not supported; search one resource type');
    }
    const type = segs[0];
    const isType = type !== undefined && resourceTypes().has(type);
    if (segs.length > 0 && !isType && !type.startsWith('$')) {
      ctx.kind = 'other';
      return sendOutcome(ctx, 404, `Unknown resource type '${String(type).slice(0, 64)}'`);
    }

    // Authorization.
    let parsed;
    if (method === 'POST' && segs.length === 2 && segs[1] === '_search') {
      const fail = auth.checkRequest(req.headers.authorization, type, 'read');
      if (fail) return sendAuthFailure(ctx, fail);
      const form = new URLSearchParams(body.toString('utf8'));
      const entries = [...params.entries(), ...form.entries()];
      const self = base + '/' + type + '?' + new URLSearchParams(entries).toString();
      return handleSearch(ctx, type, entries, self);
    }
    if (!(segs.length === 0 && method === 'POST')) {
      const fail = auth.checkRequest(req.headers.authorization, isType ? type : undefined, accessFor(method));
      if (fail) return sendAuthFailure(ctx, fail);
    }
    if (method === 'POST' || method === 'PUT' || method === 'PATCH') parsed = parseJsonBody(ctx, body);

    if (segs.length === 1 && method === 'GET') {
      return handleSearch(ctx, type, [...params.entries()], selfUrl);
    }

    // Everything else goes through medplum's router.
    let existed = false;
    if (segs.length === 0 && method === 'POST') {
      ctx.kind = 'transaction';
      const fail = checkBundleAuth(ctx, parsed);
      if (fail) return sendAuthFailure(ctx, fail);
      if (!parsed || parsed.resourceType !== 'Bundle') return sendOutcome(ctx, 400, 'Expected a Bundle');
      if (opts.validate) {
        for (const e of parsed.entry ?? []) if (e?.resource) validateResource(e.resource);
      }
    } else if (segs.length === 1 && method === 'POST') {
      ctx.kind = 'create';
      if (!parsed || typeof parsed !== 'object') return sendOutcome(ctx, 400, 'Missing resource body');
      if (opts.validate) validateResource(parsed);
      // The server assigns the id on create (a client-sent id is ignored,
      // also by If-None-Exist, which medplum would otherwise refuse).
      delete parsed.id;
    } else if (segs.length === 2 && method === 'GET') {
      ctx.kind = 'read';
      const cur = repo.peek(type, segs[1]);
      const inm = req.headers['if-none-match'];
      if (cur && inm && inm.replace(/^W\//, '') === `"${cur.meta.versionId}"`) {
        return send(ctx, 304, undefined, resourceHeaders(cur));
      }
    } else if (segs.length === 2 && method === 'PUT') {
      ctx.kind = 'update';
      if (!parsed || typeof parsed !== 'object') return sendOutcome(ctx, 400, 'Missing resource body');
      if (opts.validate) validateResource(parsed);
      existed = !!repo.peek(type, segs[1]);
    } else if (method === 'PUT') {
      ctx.kind = 'update';
    } else if (method === 'DELETE') {
      ctx.kind = 'delete';
    } else if (method === 'PATCH') {
      ctx.kind = 'patch';
    } else if (segs.length >= 3 && segs[2] === '_history') {
      ctx.kind = segs.length === 3 ? 'history' : 'vread';
    }

    const fhirReq = {
      method,
      url: rel + (query ? '?' + query : ''),
      pathname: '',
      body: parsed,
      params: {},
      query: {},
      headers: req.headers,
      config: { transactions: true },
    };
    const [outcome, resource] = await router.handleRequest(fhirReq, repo);
    let status = getStatus(outcome);
    if (status === 200 && method === 'PUT' && segs.length === 2 && !existed) status = 201;
    if (status >= 400) return send(ctx, status, outcome);

    const headers = {};
    let out = resource ?? outcome;
    if (resource?.resourceType === 'Bundle' && (ctx.kind === 'transaction' || ctx.kind === 'history')) {
      decorateBundleEntries(ctx, resource);
      if (ctx.kind === 'history') resource.id = randomUUID();
    } else if (resource?.id && resource.meta?.versionId) {
      Object.assign(headers, resourceHeaders(resource));
      if (status === 201) {
        headers.location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
      }
      const prefer = req.headers.prefer ?? '';
      if (/return=minimal/.test(prefer) && method !== 'GET') out = undefined;
      else if (/return=OperationOutcome/i.test(prefer) && method !== 'GET') out = outcome;
    }
    return send(ctx, status, out, headers);
  };

  /* --------------------------------------------------------- control */

  const controlBody = async (ctx) => {
    const buf = await readBody(ctx.req, opts.maxBody);
    if (buf.length === 0) return {};
    try {
      return JSON.parse(buf.toString('utf8'));
    } catch {
      throw new HttpError(400, 'control body is not valid JSON');
    }
  };

  const handleControl = async (ctx, name, params) => {
    const { req } = ctx;
    const m = req.method;
    stats.control++;
    ctx.kind = 'control';
    switch (`${m} ${name}`) {
      case 'GET stats':
        return sendJson(ctx, 200, {
          ...stats,
          searches: { ...stats.searches, active: snapshots.size },
          tokens: { issued: auth.stats.issued, failures: auth.stats.tokenFailures, active: auth.tokens.size },
          auth: { failures: auth.stats.unauthorized, forbidden: auth.stats.forbidden, enabled: auth.enabled() },
          faults: { injected: faults.injected, byKind: faults.byKind },
          resources: repo.counts(),
          writes: repo.writeCount,
        });
      case 'DELETE stats':
        stats = newStats();
        auth.stats = { issued: 0, tokenFailures: 0, unauthorized: 0, forbidden: 0 };
        faults.injected = 0;
        faults.byKind = {};
        return sendJson(ctx, 200, { ok: true });
      case 'POST faults': {
        const spec = await controlBody(ctx);
        let added;
        try {
          added = faults.add(spec);
        } catch (err) {
          throw new HttpError(400, err.message);
        }
        return sendJson(ctx, 201, { added });
      }
      case 'GET faults':
        return sendJson(ctx, 200, { faults: faults.list() });
      case 'DELETE faults':
        faults.clear();
        return sendJson(ctx, 200, { ok: true });
      case 'POST load': {
        const keepMeta = params.get('keep-meta') === '1' || params.get('keep-meta') === 'true';
        const ct = (req.headers['content-type'] ?? '').toLowerCase();
        let result;
        if (ct.includes('ndjson') || ct.includes('jsonl')) {
          const items = [];
          let n = 0;
          const summary = { loaded: 0, byType: {}, rejected: [] };
          const flush = () => {
            const r = storeAll(repo, items.splice(0), { keepMeta });
            summary.loaded += r.loaded;
            for (const [k, v] of Object.entries(r.byType)) summary.byType[k] = (summary.byType[k] ?? 0) + v;
            summary.rejected.push(...r.rejected);
          };
          await forEachLine(req, (line) => {
            n++;
            try {
              items.push(JSON.parse(line));
            } catch {
              throw new HttpError(400, `line ${n} is not valid JSON`);
            }
            if (items.length >= 10000) flush();
          });
          flush();
          result = summary;
        } else {
          const buf = await readBody(req, opts.maxBody);
          const text = buf.toString('utf8');
          let docs;
          try {
            docs = unpackJson(JSON.parse(text));
          } catch {
            try {
              docs = [...ndjsonResources(text)];
            } catch {
              throw new HttpError(400, 'body is neither a JSON document nor NDJSON');
            }
          }
          result = storeAll(repo, docs, { keepMeta });
        }
        return sendJson(ctx, 200, { ...result, rejected: result.rejected.slice(0, 100), rejectedCount: result.rejected.length });
      }
      case 'POST touch': {
        const b = await controlBody(ctx);
        const type = b.type;
        if (!resourceTypes().has(type)) throw new HttpError(400, 'type must be a resource type');
        const map = repo.resources.get(type) ?? new Map();
        let targets;
        if (Array.isArray(b.ids)) {
          targets = b.ids.map((id) => map.get(id)).filter(Boolean);
        } else {
          const count = b.count ?? 1;
          if (!Number.isInteger(count) || count < 0) throw new HttpError(400, 'count must be a non-negative integer');
          targets = sortResources([...map.values()], [{ code: '_lastUpdated', descending: false }]).slice(0, count);
        }
        const touched = [];
        for (const cur of targets) {
          const copy = JSON.parse(JSON.stringify(cur));
          copy.extension = (copy.extension ?? []).filter((e) => e?.url !== TOUCH_URL);
          copy.extension.push({ url: TOUCH_URL, valueInteger: ++touchCounter });
          const r = repo.put(copy);
          touched.push({ id: r.id, versionId: r.meta.versionId, lastUpdated: r.meta.lastUpdated });
        }
        return sendJson(ctx, 200, { touched });
      }
      case 'POST clock': {
        // {"offset_ms": N}: the server's clock (lastUpdated, Date headers) runs N ms off.
        const b = await controlBody(ctx);
        if (!Number.isInteger(b.offset_ms)) throw new HttpError(400, 'offset_ms must be an integer');
        repo.clockOffsetMs = b.offset_ms;
        repo.lastStamp = 0;
        return sendJson(ctx, 200, { offset_ms: repo.clockOffsetMs });
      }
      case 'POST reject-lastupdated': {
        const b = await controlBody(ctx);
        flags.rejectLastUpdated = !!b.on;
        flags.rejectSortLastUpdated = !!(b.on && b.sort);
        return sendJson(ctx, 200, { ...flags });
      }
      case 'GET ids': {
        const type = params.get('type');
        if (!resourceTypes().has(type)) throw new HttpError(400, 'type must be a resource type');
        const list = [...(repo.resources.get(type)?.values() ?? [])]
          .map((r) => ({ id: r.id, versionId: r.meta.versionId, lastUpdated: r.meta.lastUpdated }))
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        return sendJson(ctx, 200, list);
      }
      case 'POST clients': {
        const b = await controlBody(ctx);
        const list = Array.isArray(b.clients) ? b.clients : [b];
        try {
          for (const c of list) auth.registerClient(c);
        } catch (err) {
          throw new HttpError(400, err.message);
        }
        capabilityCache = new Map();
        return sendJson(ctx, 201, { registered: list.map((c) => c.client_id) });
      }
      case 'POST expire-tokens':
        return sendJson(ctx, 200, { expired: auth.expireTokens() });
      case 'POST expire-searches': {
        const n = snapshots.size;
        snapshots.clear();
        return sendJson(ctx, 200, { expired: n });
      }
      case 'POST auth': {
        const b = await controlBody(ctx);
        if (b.require !== undefined) auth.requireAuth = !!b.require;
        if (b.tokenTtl !== undefined) {
          if (!Number.isFinite(b.tokenTtl) || b.tokenTtl <= 0) throw new HttpError(400, 'tokenTtl must be > 0');
          auth.tokenTtl = b.tokenTtl;
        }
        capabilityCache = new Map();
        return sendJson(ctx, 200, { enabled: auth.enabled(), requireAuth: auth.requireAuth, tokenTtl: auth.tokenTtl });
      }
      case 'POST outage': {
        const b = await controlBody(ctx);
        if (!['off', 'drop', 'hang', 'unavailable'].includes(b.mode)) {
          throw new HttpError(400, "mode must be 'off', 'drop', 'hang' or 'unavailable'");
        }
        outage.mode = b.mode;
        outage.since = b.mode === 'off' ? null : new Date().toISOString();
        if (b.mode !== 'hang') {
          for (const sock of outage.held) sock.destroy();
          outage.held.clear();
        }
        return sendJson(ctx, 200, { mode: outage.mode, since: outage.since, requests: outage.requests });
      }
      case 'GET outage':
        return sendJson(ctx, 200, { mode: outage.mode, since: outage.since, requests: outage.requests, held: outage.held.size });
      case 'POST reset':
        outage.mode = 'off';
        outage.since = null;
        for (const sock of outage.held) sock.destroy();
        outage.held.clear();
        repo.clear();
        snapshots.clear();
        faults.clear();
        flags.rejectLastUpdated = false;
        flags.rejectSortLastUpdated = false;
        stats = newStats();
        return sendJson(ctx, 200, { ok: true });
      default:
        throw new HttpError(404, `no control endpoint ${m} /__control/${name}`);
    }
  };

  /* -------------------------------------------------------- dispatch */

  const handle = async (req, res) => {
    const started = performance.now();
    const ctx = { req, res, kind: 'other', status: 0, truncate: false };
    const rawUrl = req.url ?? '/';
    const qi = rawUrl.indexOf('?');
    const pathname = qi < 0 ? rawUrl : rawUrl.slice(0, qi);
    const query = qi < 0 ? '' : rawUrl.slice(qi + 1);
    res.on('close', () => {
      if (ctx.kind !== 'control') {
        stats.requests.total++;
        stats.requests.byKind[ctx.kind] = (stats.requests.byKind[ctx.kind] ?? 0) + 1;
        const s = ctx.status ? String(ctx.status) : 'dropped';
        stats.requests.byStatus[s] = (stats.requests.byStatus[s] ?? 0) + 1;
      }
      if (opts.verbose) {
        const ms = (performance.now() - started).toFixed(1);
        process.stderr.write(`${new Date().toISOString()} ${req.method} ${rawUrl} ${ctx.status || 'dropped'} ${ms}ms\n`);
      }
    });

    try {
      if (pathname.startsWith('/__control/')) {
        return await handleControl(ctx, pathname.slice('/__control/'.length), new URLSearchParams(query));
      }
      if (outage.mode !== 'off') {
        outage.requests++;
        ctx.kind = 'outage';
        if (outage.mode === 'unavailable') {
          return send(ctx, 503, operationOutcome('error', 'transient', 'Service unavailable (outage)'), { 'retry-after': '5' });
        }
        if (outage.mode === 'hang') {
          outage.held.add(req.socket);
          req.socket.once('close', () => outage.held.delete(req.socket));
          return undefined;
        }
        req.socket.destroy();
        return undefined;
      }
      const isFhir = pathname === FHIR_BASE || pathname.startsWith(FHIR_BASE + '/');
      const isToken = pathname === '/auth/token';
      if (!isFhir && !isToken) {
        return sendOutcome(ctx, 404, 'Not found');
      }
      const body = await readBody(req, opts.maxBody);
      const fault = faults.take(req.method, rawUrl, isFhir);
      if (fault) {
        ctx.fault = fault.kind;
        switch (fault.kind) {
          case 'drop':
            ctx.kind = isToken ? 'token' : 'fault';
            req.socket.destroy();
            return undefined;
          case 'status': {
            const headers = {};
            for (const [k, v] of Object.entries(fault.headers)) headers[k.toLowerCase()] = String(v);
            let b = fault.body;
            if (b === undefined) {
              b = fault.status >= 400 ? operationOutcome('error', issueCodeFor(fault.status), 'Injected fault') : '';
            }
            ctx.kind = isToken ? 'token' : 'fault';
            return send(ctx, fault.status, b, headers);
          }
          case 'invalid-json':
            ctx.kind = isToken ? 'token' : 'fault';
            return send(ctx, fault.status, fault.body ?? '{"resourceType":"Bundle","type":"searchset","entry":[{"resource":', {
              'content-type': FHIR_JSON,
            });
          case 'truncate':
            ctx.truncate = true;
            break;
          case 'delay':
            await sleep(fault.ms);
            break;
          default:
            break;
        }
      }
      if (isToken) return await handleToken(ctx, body);
      return await handleFhir(ctx, pathname.slice(FHIR_BASE.length), query, body);
    } catch (err) {
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return undefined;
      }
      if (err instanceof HttpError) {
        return ctx.kind === 'control' || ctx.kind === 'token'
          ? sendJson(ctx, err.status, { error: err.message })
          : sendOutcome(ctx, err.status, err.message);
      }
      if (err instanceof OperationOutcomeError || err?.outcome) {
        const outcome = normalizeOperationOutcome(err);
        return send(ctx, getStatus(outcome), outcome);
      }
      if (opts.verbose) process.stderr.write(`internal error: ${err?.stack ?? err}\n`);
      return sendOutcome(ctx, 500, `Internal error: ${err?.message ?? err}`);
    }
  };

  server.on('request', (req, res) => {
    handle(req, res);
  });
  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  const startMs = performance.now() - t0;
  return {
    server,
    url,
    origin,
    port: address.port,
    startMs,
    loadSummary,
    state: { repo, auth, faults, snapshots, flags },
    close: async () => {
      await new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/* ---------------------------------------------------------------- CLI */

const USAGE = `usage: node fhir-server.mjs [--port 0] [--host 127.0.0.1] [--port-file PATH]
         [--load FILE.ndjson|FILE.json|DIR ...] [--generate N_PATIENTS [--seed S] [--obs-per-patient K]]
         [--generate-observations N [--seed S]]
         [--smart-jwks FILE] [--require-auth] [--bearer-token-file FILE] [--token-ttl SECONDS]
         [--default-count N] [--max-count N] [--snapshot-ttl SECONDS] [--max-snapshots N]
         [--page-content current|snapshot] [--validate] [--public-base URL] [--verbose]`;

export function parseCli(argv) {
  const o = { load: [], bearerTokens: [] };
  let gen;
  const cli = cliReader(argv);
  argv = cli.args;
  const { need, int } = cli;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--port':
        o.port = int(need(i++), a);
        break;
      case '--host':
        o.host = need(i++);
        break;
      case '--port-file':
        o.portFile = need(i++);
        break;
      case '--load':
        need(i);
        while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) o.load.push(argv[++i]);
        break;
      case '--generate':
        gen = { ...(gen ?? {}), patients: int(need(i++), a) };
        break;
      case '--generate-observations':
        gen = { ...(gen ?? {}), observationsOnly: int(need(i++), a) };
        break;
      case '--seed':
        gen = { ...(gen ?? {}), seed: need(i++) };
        break;
      case '--obs-per-patient':
        gen = { ...(gen ?? {}), obsPerPatient: int(need(i++), a) };
        break;
      case '--smart-jwks':
        o.smartJwks = need(i++);
        break;
      case '--require-auth':
        o.requireAuth = true;
        break;
      case '--bearer-token-file': {
        const tok = fs.readFileSync(need(i++), 'utf8').trim();
        if (!tok || /\s/.test(tok)) throw new Error('bearer token file must hold one token');
        o.bearerTokens.push(tok);
        break;
      }
      case '--token-ttl':
        o.tokenTtl = int(need(i++), a);
        break;
      case '--default-count':
        o.defaultCount = int(need(i++), a);
        break;
      case '--max-count':
        o.maxCount = int(need(i++), a);
        break;
      case '--snapshot-ttl':
        o.snapshotTtl = int(need(i++), a);
        break;
      case '--max-snapshots':
        o.maxSnapshots = int(need(i++), a);
        break;
      case '--page-content':
        o.pageContent = need(i++);
        break;
      case '--validate':
        o.validate = true;
        break;
      case '--public-base':
        o.publicBase = need(i++);
        break;
      case '--verbose':
        o.verbose = true;
        break;
      case '-h':
      case '--help':
        o.help = true;
        break;
      default:
        throw new Error(`unknown argument ${a}`);
    }
  }
  if (gen) {
    if (gen.patients === undefined && gen.observationsOnly === undefined) {
      throw new Error('--seed/--obs-per-patient need --generate or --generate-observations');
    }
    o.generate = { seed: 1, ...gen };
  }
  return o;
}

async function main() {
  let o;
  try {
    o = parseCli(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`fhir-server.mjs: ${err.message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (o.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const srv = await startFhirServer(o);
  if (o.verbose) {
    for (const s of srv.loadSummary) {
      process.stderr.write(`loaded ${s.loaded} (${JSON.stringify(s.byType)}) from ${s.path ?? 'generator'}, rejected ${s.rejected.length}\n`);
      for (const r of s.rejected.slice(0, 10)) process.stderr.write(`  rejected ${r.resourceType}: ${r.reason}\n`);
    }
    process.stderr.write(`started in ${srv.startMs.toFixed(0)} ms\n`);
  }
  if (o.portFile) await writePortFile(fs, o.portFile, srv.url);
  process.stdout.write(`LISTENING ${srv.url}\n`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await srv.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`fhir-server.mjs: ${err.stack || err}\n`);
    process.exit(1);
  });
}
