#!/usr/bin/env node
// REDCap API emulator for the tests and the demo. REDCap itself (licensed
// PHP + MySQL) cannot run here, so this server answers like REDCap 15.x on
// everything in ../../shared/REDCAP-API.md: one POST endpoint, tokens and
// rights, projects built from a data-dictionary CSV (classic or
// longitudinal, repeating instruments/events), all-or-nothing record
// imports with REDCap's messages, flat exports in REDCap's order, json/csv/
// xml answers and error bodies, the offline answers, out-of-memory, and the
// per-IP request ban. /__control/... endpoints set it up and inject faults.
// Node built-ins only. See README.md ("redcap-emulator.mjs") for the CLI,
// the endpoints, the sources of each behaviour and the known limits.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';

import { HttpError, LOOPBACK_HOSTS, listen, originOf, readBody, writePortFile, cliReader } from './lib/http-util.mjs';
import { MSG } from './redcap/messages.mjs';
import { CONTENT_TYPES, contentTypeFor, errorBody, phpJson, xmlItems } from './redcap/format.mjs';
import { parseCsv, writeCsv } from './redcap/csv.mjs';
import { DictionaryError, METADATA_COLUMNS } from './redcap/dictionary.mjs';
import { ApiError, Project, localStamp, parseLocalStamp } from './redcap/project.mjs';
import { arrayParam, boolParam, requestParams } from './redcap/params.mjs';

export const API_PATHS = new Set(['/api', '/api/', '/api/index.php', '/redcap/api', '/redcap/api/', '/redcap/api/index.php']);

const DEFAULTS = {
  port: 0,
  host: '127.0.0.1',
  portFile: undefined,
  projects: [], // project definitions (see Project)
  tokens: [], // { token, project, export (true), import (true), delete (false) }
  rateLimit: 600, // requests per minute per IP before the ban (0 = off)
  maxExportRecords: 0, // an export of more records answers out-of-memory (0 = off)
  maxImportRecords: 0, // an import of more records answers out-of-memory (0 = off)
  redcapVersion: '15.7.6',
  maxBody: 256 << 20,
  verbose: false,
};

// REDCap 15's valid values of "content" (API/index.php); the emulator
// implements the ones in IMPLEMENTED.
const VALID_CONTENT = new Set([
  'record', 'metadata', 'file', 'fileRepository', 'filesize', 'fileinfo', 'repeatingFormsEvents', 'instrument', 'event',
  'arm', 'user', 'project_settings', 'report', 'authkey', 'version', 'pdf', 'surveyLink', 'surveyAccessCode',
  'surveyQueueLink', 'surveyReturnCode', 'participantList', 'exportFieldNames', 'appRightsCheck', 'formEventMapping',
  'fieldValidation', 'attachment', 'project', 'generateNextRecordName', 'project_xml', 'dag', 'userDagMapping', 'log',
  'tableau', 'mycap', 'userRole', 'userRoleMapping',
]);
const IMPLEMENTED = new Set([
  'record', 'metadata', 'repeatingFormsEvents', 'instrument', 'event', 'arm', 'exportFieldNames', 'formEventMapping',
  'project', 'generateNextRecordName', 'version', 'log',
]);

const TOKEN_RE = /^[0-9A-F]{32}$/; // a REDCap project API token (see addToken)
const FAULT_KINDS = new Set(['status', 'drop', 'delay', 'out-of-memory', 'truncate']);
// A misspelt key (e.g. "count" for "times") must not be ignored silently:
// the fault would fire a different number of times than the test thinks.
const FAULT_KEYS = new Set(['content', 'match', 'action', 'times', 'kind', 'status', 'body', 'headers', 'ms']);

/* The IP of a request as REDCap sees it (IPv4-mapped addresses unwrapped). */
function clientIp(req) {
  const a = req.socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/* One value of PHP fputcsv (quotes fields with space, tab, comma, quote, CR, LF). */
function fputcsvCell(v) {
  const s = v === undefined || v === null ? '' : String(v);
  return /[\s,"]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/* Rows of objects as CSV with a header of the first object's keys. */
function objectsCsv(items, keys) {
  const k = keys ?? (items.length ? Object.keys(items[0]) : []);
  return writeCsv([k, ...items.map((o) => k.map((x) => o[x]))]);
}

/*
 * Converts one imported JSON value to the text REDCap stores: strings as
 * they are, numbers as written, true "1", false/null "". Objects and arrays
 * are rejected (undefined).
 */
function jsonScalar(v) {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : undefined;
  if (v === true) return '1';
  if (v === false || v === null) return '';
  return undefined;
}

/* ------------------------------------------------------------------ faults */

class Faults {
  constructor() {
    this.rules = [];
    this.nextId = 1;
    this.injected = 0;
    this.byKind = {};
  }

  /*
   * Adds rules: { content | match: value of "content" to match (omitted =
   * every API request), action: "import" | "export", times (1), kind
   * (status | drop | delay | out-of-memory | truncate), status (503),
   * body (string or JSON; default REDCap's error body for the status),
   * headers, ms (delay) }. Returns the stored rules; throws Error.
   */
  add(spec) {
    const list = Array.isArray(spec) ? spec : [spec];
    const added = [];
    for (const s of list) {
      if (!s || typeof s !== 'object') throw new Error('fault must be an object');
      for (const k of Object.keys(s)) {
        if (!FAULT_KEYS.has(k)) throw new Error(`unknown fault key '${k}'${k === 'count' ? " (the number of firings is 'times')" : ''}`);
      }
      const kind = s.kind ?? 'status';
      if (!FAULT_KINDS.has(kind)) throw new Error(`unknown fault kind '${kind}'`);
      const times = s.times ?? 1;
      if (!Number.isInteger(times) || times < 1) throw new Error('times must be a positive integer');
      const content = s.content ?? s.match;
      if (content !== undefined && typeof content !== 'string') throw new Error('content must be a string');
      if (s.action !== undefined && s.action !== 'import' && s.action !== 'export') throw new Error('action must be import or export');
      const status = s.status ?? (kind === 'out-of-memory' ? 500 : 503);
      if (!Number.isInteger(status) || status < 100 || status > 599) throw new Error('bad status');
      if (kind === 'delay' && !(Number.isFinite(s.ms) && s.ms >= 0 && s.ms <= 600000)) throw new Error('delay needs ms (0..600000)');
      if (s.headers !== undefined && (typeof s.headers !== 'object' || s.headers === null)) throw new Error('headers must be an object');
      added.push({ id: 0, content, action: s.action, kind, times, remaining: times, fired: 0, status, body: s.body, headers: s.headers ?? {}, ms: s.ms ?? 0 });
    }
    // All or nothing: a bad rule queues none of the list.
    for (const rule of added) {
      rule.id = this.nextId++;
      this.rules.push(rule);
    }
    return added;
  }

  /* Takes the first rule matching (content, action) with firings left. */
  take(content, action) {
    for (const r of this.rules) {
      if (r.remaining <= 0) continue;
      if (r.content !== undefined && r.content !== content) continue;
      if (r.action !== undefined && r.action !== action) continue;
      r.remaining--;
      r.fired++;
      this.injected++;
      this.byKind[r.kind] = (this.byKind[r.kind] ?? 0) + 1;
      return r;
    }
    return undefined;
  }
}

/* ------------------------------------------------------------------ server */

/*
 * Starts the emulator. Returns { server, url, origin, port, state, close() }.
 * `options` as DEFAULTS; the CLI maps its flags onto them. Throws on a bad
 * project definition or token.
 */
export async function startRedcapEmulator(options = {}) {
  const opts = { ...DEFAULTS, ...options };
  if (!LOOPBACK_HOSTS.has(opts.host)) throw new Error(`refusing to listen on non-loopback host ${opts.host}`);
  const config = {
    rateLimit: opts.rateLimit,
    maxExportRecords: opts.maxExportRecords,
    maxImportRecords: opts.maxImportRecords,
    redcapVersion: opts.redcapVersion,
  };
  let clockOffsetMs = 0;
  const now = () => Date.now() + clockOffsetMs;
  const projects = new Map(); // name -> Project
  const tokens = new Map(); // token -> { project, export, import, delete }
  let nextProjectId = 1;
  const flags = { systemOffline: false };
  const banned = new Set();
  const hits = new Map(); // ip -> [ms]
  let faults = new Faults();
  const newStats = () => ({
    requests: { total: 0, byContent: {}, byStatus: {} },
    imports: { requests: 0, ok: 0, rejected: 0, rows: 0, records: 0, created: 0, changed: 0 },
    exports: { requests: 0, rows: 0, records: 0 },
    bans: 0,
    control: 0,
  });
  let stats = newStats();

  const addProject = (def) => {
    if (!def || typeof def.name !== 'string' || !/^[A-Za-z0-9_.-]{1,100}$/.test(def.name)) {
      throw new DictionaryError('project name must be 1-100 characters of [A-Za-z0-9_.-]');
    }
    const old = projects.get(def.name);
    const p = new Project({ ...def, id: old ? old.id : nextProjectId++ }, now);
    projects.set(def.name, p);
    return p;
  };
  // REDCap issues project tokens as 32 upper-case hex digits, so only such a
  // token can be registered. A request with any other token finds no user
  // and gets REDCap's 403 for an invalid token (REDCAP-API.md: "token
  // missing / malformed / unknown"; REDCap 15.7.6 RestUtility::processRequest:
  // a token that is not [A-Za-z0-9]+ or matches no user -> sendResponse(403),
  // "You do not have permissions to use the API").
  const addToken = (t) => {
    if (!t || typeof t.token !== 'string' || !TOKEN_RE.test(t.token)) throw new Error('token must be 32 upper-case hex digits (as REDCap issues them)');
    if (!projects.has(t.project)) throw new Error(`token names unknown project ${t.project}`);
    const rights = { project: t.project, export: t.export !== false, import: t.import !== false, delete: t.delete === true };
    tokens.set(t.token, rights);
    return rights;
  };
  for (const def of opts.projects) addProject(def);
  for (const t of opts.tokens) addToken(t);

  const server = http.createServer();
  server.keepAliveTimeout = 30000;
  const address = await listen(server, opts.port, opts.host);
  const origin = originOf(address);
  const url = `${origin}/api/`;

  /* ------------------------------------------------------------ sending */

  const send = (ctx, status, body, contentType, extraHeaders = {}) => {
    const { res } = ctx;
    if (res.headersSent || res.destroyed) return;
    const buf = Buffer.from(body ?? '', 'utf8');
    ctx.status = status;
    const headers = { 'content-type': contentType, 'content-length': buf.length, ...extraHeaders };
    if (ctx.truncate) {
      res.writeHead(status, headers);
      res.write(buf.subarray(0, Math.floor(buf.length / 2)), () => res.socket?.destroy());
      return;
    }
    res.writeHead(status, headers);
    res.end(buf);
  };
  /* REDCap's RestUtility::sendResponse for an error. */
  const sendError = (ctx, status, message) =>
    send(ctx, status, errorBody(message, ctx.returnFormat), contentTypeFor(ctx.returnFormat));
  const sendJsonControl = (ctx, status, value) => send(ctx, status, JSON.stringify(value), 'application/json');

  /* ------------------------------------------------------------ content */

  const structureAnswer = (ctx, items, root) => {
    if (ctx.format === 'json') return send(ctx, 200, phpJson(items), CONTENT_TYPES.json);
    if (ctx.format === 'csv') return send(ctx, 200, objectsCsv(items), CONTENT_TYPES.csv);
    return send(ctx, 200, xmlItems(root, items), CONTENT_TYPES.xml);
  };

  /* Reads the "data" parameter of a record import into flat row objects. */
  const importRows = (ctx, params, project) => {
    const data = String(params.data ?? '');
    let rows;
    if (ctx.format === 'json') {
      const doc = ctx.parsedData;
      if (!Array.isArray(doc)) throw new ApiError(400, MSG.jsonFormat('No error'));
      rows = doc.map((o) => {
        if (!o || typeof o !== 'object' || Array.isArray(o)) throw new ApiError(400, MSG.jsonFormat('No error'));
        const row = Object.create(null);
        for (const [k, v] of Object.entries(o)) {
          const s = jsonScalar(v);
          if (s === undefined) throw new ApiError(400, MSG.jsonFormat('No error'));
          row[k.trim()] = s.trim();
        }
        return row;
      });
    } else if (ctx.format === 'csv') {
      let table;
      try {
        table = parseCsv(data);
      } catch (err) {
        throw new ApiError(400, `The data being imported is not formatted correctly. Error: ${err.message}`);
      }
      const header = (table[0] ?? []).map((h) => h.trim());
      rows = table.slice(1).map((r) => {
        const row = Object.create(null);
        header.forEach((h, i) => {
          if (h !== '') row[h] = (r[i] ?? '').trim();
        });
        return row;
      });
    } else {
      // XML: <records><item><field>value</field>...</item></records>
      rows = [];
      for (const item of data.matchAll(/<item>([\s\S]*?)<\/item>/g)) {
        const row = Object.create(null);
        for (const f of item[1].matchAll(/<([A-Za-z0-9_]+)>(?:<!\[CDATA\[([\s\S]*?)\]\]>|([^<]*))<\/\1>/g)) {
          row[f[1]] = (f[2] ?? f[3] ?? '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&').trim();
        }
        rows.push(row);
      }
      if (rows.length === 0 && data.trim() !== '' && !/<records\s*\/>|<records>\s*<\/records>/.test(data)) {
        throw new ApiError(400, 'The data being imported is not formatted correctly. Error: no <item> elements');
      }
    }
    if (String(params.type ?? '').toLowerCase() === 'eav') rows = eavToFlat(rows, project);
    return rows;
  };

  /* EAV rows {record, field_name, value, redcap_event_name, ...} -> flat rows. */
  const eavToFlat = (rows, project) => {
    const rid = project.s.recordIdField.name;
    const out = new Map();
    for (const r of rows) {
      const key = [r.record, r.redcap_event_name, r.redcap_repeat_instrument, r.redcap_repeat_instance].map((x) => x ?? '').join('\t');
      let flat = out.get(key);
      if (!flat) {
        flat = Object.create(null);
        flat[rid] = r.record ?? '';
        for (const k of ['redcap_event_name', 'redcap_repeat_instrument', 'redcap_repeat_instance']) if (r[k] !== undefined) flat[k] = r[k];
        out.set(key, flat);
      }
      const f = project.s.byName.get(r.field_name);
      if (f && f.type === 'checkbox') {
        const c = f.checkboxColumns.find((x) => x.code === r.value);
        flat[c ? c.column : `${r.field_name}___${r.value}`] = '1';
      } else if (r.field_name !== undefined && r.field_name !== rid) {
        flat[r.field_name] = r.value ?? '';
      }
    }
    return [...out.values()];
  };

  const handleRecordImport = (ctx, params, project) => {
    stats.imports.requests++;
    const rows = importRows(ctx, params, project);
    stats.imports.rows += rows.length;
    if (config.maxImportRecords > 0) {
      const rid = project.s.recordIdField.name;
      const distinct = new Set(rows.map((r) => String(r[rid] ?? '').toLowerCase()));
      if (distinct.size > config.maxImportRecords) throw new ApiError(500, MSG.outOfMemory);
    }
    const result = project.importRows(rows, {
      overwrite: String(params.overwriteBehavior ?? '').toLowerCase() === 'overwrite',
      dateFormat: params.dateFormat === 'DMY' ? 'DMY' : params.dateFormat === 'MDY' ? 'MDY' : 'YMD',
      forceAutoNumber: boolParam(params, 'forceAutoNumber'),
      eav: String(params.type ?? '').toLowerCase() === 'eav',
    });
    stats.imports.ok++;
    stats.imports.records += result.count;
    stats.imports.created += result.created;
    stats.imports.changed += result.changed;
    // Anything but ids, auto_ids, nothing or count is taken as count, as REDCap
    // 15.7.6 API/index.php does ("what content to return when importing data":
    // switch (strtolower(returnContent)) ... default: 'count').
    let rc = String(params.returnContent ?? '').toLowerCase();
    if (!['ids', 'auto_ids', 'nothing', 'count'].includes(rc)) rc = 'count';
    const rf = ctx.returnFormat;
    let body;
    if (rc === 'nothing') body = '';
    else if (rc === 'count') {
      body = rf === 'json' ? `{"count": ${result.count}}` : rf === 'xml' ? `<?xml version="1.0" encoding="UTF-8" ?><count>${result.count}</count>` : String(result.count);
    } else {
      const list = rc === 'ids' ? result.ids : result.autoIds;
      if (rf === 'json') body = phpJson(list);
      else if (rf === 'xml') body = `<?xml version="1.0" encoding="UTF-8" ?><ids>${list.map((i) => `<id>${i}</id>`).join('')}</ids>`;
      else body = ['id', ...list].join('\n');
    }
    return send(ctx, 200, body, contentTypeFor(rf));
  };

  const handleRecordExport = (ctx, params, project) => {
    stats.exports.requests++;
    const range = (name) => {
      const v = params[name];
      if (v === undefined || String(v).trim() === '') return undefined;
      const ms = parseLocalStamp(v);
      if (ms === undefined) throw new ApiError(400, MSG.invalidParam(name));
      return ms;
    };
    const plan = project.planExport({
      records: arrayParam(params, 'records'),
      fields: arrayParam(params, 'fields'),
      forms: arrayParam(params, 'forms'),
      events: arrayParam(params, 'events'),
      filterLogic: typeof params.filterLogic === 'string' && params.filterLogic.trim() !== '' ? params.filterLogic : undefined,
      dateRangeBegin: range('dateRangeBegin'),
      dateRangeEnd: range('dateRangeEnd'),
    });
    if (config.maxExportRecords > 0 && plan.recordCount > config.maxExportRecords) throw new ApiError(500, MSG.outOfMemory);
    stats.exports.rows += plan.rows.length;
    stats.exports.records += plan.recordCount;
    const label = String(params.rawOrLabel ?? '').toLowerCase() === 'label';
    const labelHeaders = String(params.rawOrLabelHeaders ?? '').toLowerCase() === 'label';
    const cbLabel = boolParam(params, 'exportCheckboxLabel');
    const blankGray = boolParam(params, 'exportBlankForGrayFormStatus');
    const cols = plan.columns;
    const cell = (r, c) => project.cellValue(r, c, label, cbLabel, blankGray);
    if (String(params.type ?? '').toLowerCase() === 'eav') {
      const items = [];
      for (const r of plan.rows) {
        for (const c of cols) {
          if (c.kind === 'rid' || c.kind === 'event' || c.kind === 'instrument' || c.kind === 'instance') continue;
          const v = cell(r, c);
          if (v === '' || (c.kind === 'checkbox' && (v === '0' || v === 'Unchecked'))) continue;
          const item = { record: r.rec.name };
          if (project.isLongitudinal) item.redcap_event_name = r.ev.unique_event_name;
          if (project.s.hasRepeating) {
            item.redcap_repeat_instrument = r.kind === 'form' ? r.form.name : '';
            item.redcap_repeat_instance = r.kind === 'base' ? '' : String(r.instance);
          }
          item.field_name = c.kind === 'checkbox' ? c.field.name : c.name;
          item.value = c.kind === 'checkbox' ? c.code : v;
          items.push(item);
        }
      }
      return structureAnswer(ctx, items, 'records');
    }
    if (ctx.format === 'json') {
      const out = [];
      for (const r of plan.rows) {
        const o = {};
        for (const c of cols) o[c.name] = cell(r, c);
        out.push(o);
      }
      return send(ctx, 200, phpJson(out), CONTENT_TYPES.json);
    }
    if (ctx.format === 'csv') {
      const lines = [cols.map((c) => (labelHeaders ? project.columnLabel(c) : c.name))];
      for (const r of plan.rows) lines.push(cols.map((c) => cell(r, c)));
      return send(ctx, 200, writeCsv(lines), CONTENT_TYPES.csv);
    }
    const items = plan.rows.map((r) => Object.fromEntries(cols.map((c) => [c.name, cell(r, c)])));
    return send(ctx, 200, xmlItems('records', items), CONTENT_TYPES.xml);
  };

  const handleRecordDelete = (ctx, params, project) => {
    const names = arrayParam(params, 'records');
    let n = 0;
    for (const name of names) {
      const low = name.toLowerCase();
      if (project.records.delete(low)) n++;
    }
    return send(ctx, 200, String(n), contentTypeFor(ctx.returnFormat));
  };

  const handleContent = (ctx, params, project, content, action) => {
    switch (content) {
      case 'record':
        if (action === 'delete') return handleRecordDelete(ctx, params, project);
        return action === 'import' ? handleRecordImport(ctx, params, project) : handleRecordExport(ctx, params, project);
      case 'version':
        return send(ctx, 200, config.redcapVersion, contentTypeFor(ctx.returnFormat));
      case 'generateNextRecordName':
        return send(ctx, 200, String(project.nextRecordNumber()), contentTypeFor(ctx.returnFormat));
      case 'metadata': {
        if (action === 'import') throw new ApiError(400, 'The emulator does not implement metadata import');
        const rows = project.metadata(arrayParam(params, 'fields'), arrayParam(params, 'forms'));
        if (ctx.format === 'csv') return send(ctx, 200, objectsCsv(rows, METADATA_COLUMNS), CONTENT_TYPES.csv);
        return structureAnswer(ctx, rows, 'records');
      }
      case 'instrument': {
        const items = project.instruments();
        if (ctx.format === 'csv') {
          // API/instrument/export.php: the label is always quoted.
          let out = 'instrument_name,instrument_label\n';
          for (const i of items) out += `${i.instrument_name},"${i.instrument_label.replace(/"/g, '""')}"\n`;
          return send(ctx, 200, out, CONTENT_TYPES.csv);
        }
        return structureAnswer(ctx, items, 'instruments');
      }
      case 'exportFieldNames':
        return structureAnswer(ctx, project.exportFieldNames(params.field), 'fields');
      case 'event':
        return structureAnswer(ctx, project.eventsList(arrayParam(params, 'arms')), 'events');
      case 'arm':
        return structureAnswer(ctx, project.armsList(arrayParam(params, 'arms')), 'arms');
      case 'formEventMapping':
        return structureAnswer(ctx, project.formEventMapping(arrayParam(params, 'arms')), 'items');
      case 'repeatingFormsEvents':
        return structureAnswer(ctx, project.repeatingFormsEvents(), 'items');
      case 'log':
        return structureAnswer(ctx, project.logEntries(params.record), 'items');
      case 'project': {
        const info = project.info();
        if (ctx.format === 'json') return send(ctx, 200, phpJson(info), CONTENT_TYPES.json);
        if (ctx.format === 'csv') {
          // API/project/export.php: fputcsv of the keys, then of the values.
          const out = `${Object.keys(info).map(fputcsvCell).join(',')}\n${Object.values(info).map(fputcsvCell).join(',')}\n`;
          return send(ctx, 200, out, CONTENT_TYPES.csv);
        }
        let out = '<?xml version="1.0" encoding="UTF-8" ?>\n<items>\n';
        for (const [k, v] of Object.entries(info)) out += v === '' ? `<${k}></${k}>` : `<${k}><![CDATA[${v}]]></${k}>`;
        return send(ctx, 200, out + '\n</items>\n', CONTENT_TYPES.xml);
      }
      default:
        throw new ApiError(400, `The emulator does not implement content=${content}`);
    }
  };

  /*
   * The API endpoint, in REDCap's order of checks (API/index.php,
   * RestUtility::processRequest): ban, system offline, POST only, token,
   * data format, content, rights, project offline, then the method.
   */
  const handleApi = async (ctx) => {
    const { req } = ctx;
    const ip = clientIp(req);
    // Logging::checkBannedIp runs before Logging::storeHashedIp: a banned IP
    // gets a bare 429 text; the request that crosses the threshold is still
    // served, the next one is refused (REDCap source, Classes/Logging.php).
    if (banned.has(ip)) {
      ctx.content = '(banned)';
      return send(ctx, 429, MSG.banned(ip), 'text/html; charset=UTF-8');
    }
    if (config.rateLimit > 0) {
      const t = Date.now();
      let list = hits.get(ip);
      if (!list) hits.set(ip, (list = []));
      list.push(t);
      while (list.length && list[0] <= t - 60000) list.shift();
      if (list.length > config.rateLimit) {
        banned.add(ip);
        stats.bans++;
        hits.delete(ip);
      }
    }
    const body = await readBody(req, opts.maxBody);
    let params;
    try {
      params = requestParams(req.method, req.headers['content-type'], body);
    } catch {
      params = {};
    }
    const content = typeof params.content === 'string' ? params.content : '';
    ctx.content = content || '(none)';
    const fmtRaw = typeof params.format === 'string' ? params.format : 'xml';
    ctx.format = fmtRaw === 'json' || fmtRaw === 'csv' ? fmtRaw : 'xml'; // odm is answered as xml
    const rfRaw = typeof params.returnFormat === 'string' && params.returnFormat !== '' ? params.returnFormat.toLowerCase() : ctx.format;
    ctx.returnFormat = rfRaw === 'json' || rfRaw === 'csv' ? rfRaw : 'xml';
    const hasData = params.data !== undefined;
    const action0 = content === 'record' && ['delete', 'rename', 'randomize'].includes(params.action) ? params.action : !hasData || content === 'version' ? 'export' : 'import';

    const fault = faults.take(content, action0);
    if (fault) {
      ctx.fault = fault.kind;
      switch (fault.kind) {
        case 'drop':
          req.socket.destroy();
          return undefined;
        case 'out-of-memory':
          return sendError(ctx, fault.status, MSG.outOfMemory);
        case 'status': {
          const headers = {};
          for (const [k, v] of Object.entries(fault.headers)) headers[k.toLowerCase()] = String(v);
          if (fault.body === undefined) {
            const defaults = { 400: 'There were errors with your request. If you are sending data, then it might be due to the data being misformatted. ', 401: 'The API token was missing or incorrect', 403: MSG.noPermission, 404: `The requested URI ${req.url} was not found.`, 500: 'The server encountered an error processing your request.', 501: MSG.notImplemented };
            const msg = defaults[fault.status];
            if (msg === undefined) return send(ctx, fault.status, '', 'text/html; charset=UTF-8', headers);
            return send(ctx, fault.status, errorBody(msg, ctx.returnFormat), contentTypeFor(ctx.returnFormat), headers);
          }
          const b = typeof fault.body === 'string' ? fault.body : JSON.stringify(fault.body);
          return send(ctx, fault.status, b, headers['content-type'] ?? contentTypeFor(ctx.returnFormat), headers);
        }
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

    if (flags.systemOffline) return sendError(ctx, 400, MSG.systemOffline);
    if (req.method !== 'POST') return sendError(ctx, 501, MSG.notImplemented);
    const token = params.token;
    if (typeof token !== 'string' || !/^[A-Za-z0-9]+$/.test(token)) return sendError(ctx, 403, MSG.noPermission);
    const rights = tokens.get(token);
    if (!rights) return sendError(ctx, 403, MSG.noPermission);
    const project = projects.get(rights.project);
    if (!project) return sendError(ctx, 403, MSG.noPermission);

    // RestUtility::processRequest decodes JSON data before anything else.
    if (hasData && ctx.format === 'json') {
      let doc;
      try {
        doc = JSON.parse(String(params.data));
      } catch {
        return sendError(ctx, 400, MSG.jsonFormat('Syntax error'));
      }
      if (doc === null || doc === false || doc === '') return sendError(ctx, 400, MSG.jsonFormat('No error'));
      ctx.parsedData = doc;
    }
    if (!VALID_CONTENT.has(content)) return sendError(ctx, 400, MSG.badContent);
    const action = action0;
    if (action === 'export' && !rights.export) return sendError(ctx, 403, MSG.noExport);
    if (action === 'import' && !rights.import) return sendError(ctx, 403, MSG.noImport);
    if (action === 'delete' && !rights.delete) return sendError(ctx, 403, 'You do not have Delete Record privileges');
    // Any request with a project token (API/index.php: defined("PROJECT_ID")).
    if (!project.online) return sendError(ctx, 400, MSG.projectOffline);
    if (!IMPLEMENTED.has(content) || (content === 'record' && (action === 'rename' || action === 'randomize'))) {
      return sendError(ctx, 400, `The emulator does not implement content=${content}${params.action ? ` action=${params.action}` : ''}`);
    }
    try {
      return handleContent(ctx, params, project, content, action);
    } catch (err) {
      if (err instanceof ApiError) {
        if (content === 'record' && action === 'import') stats.imports.rejected++;
        return sendError(ctx, err.status, err.message);
      }
      throw err;
    }
  };

  /* ------------------------------------------------------------ control */

  const controlBody = async (ctx) => {
    const buf = await readBody(ctx.req, opts.maxBody);
    if (buf.length === 0) return {};
    try {
      return JSON.parse(buf.toString('utf8'));
    } catch {
      throw new HttpError(400, 'control body is not valid JSON');
    }
  };

  const handleControl = async (ctx, name, query) => {
    const m = ctx.req.method;
    stats.control++;
    ctx.kind = 'control';
    switch (`${m} ${name}`) {
      case 'POST projects': {
        const b = await controlBody(ctx);
        const list = Array.isArray(b) ? b : Array.isArray(b.projects) ? b.projects : [b];
        const out = [];
        for (const def of list) {
          let p;
          try {
            p = addProject(def);
          } catch (err) {
            if (err instanceof DictionaryError) throw new HttpError(400, err.message);
            throw err;
          }
          try {
            for (const t of def.tokens ?? []) addToken({ ...t, project: p.name });
          } catch (err) {
            throw new HttpError(400, err.message);
          }
          out.push({ name: p.name, project_id: p.id, fields: p.s.fields.length, forms: p.s.forms.map((f) => f.name), longitudinal: p.isLongitudinal });
        }
        return sendJsonControl(ctx, 201, { projects: out });
      }
      case 'GET projects':
        return sendJsonControl(ctx, 200, {
          projects: [...projects.values()].map((p) => ({ name: p.name, project_id: p.id, online: p.online, records: p.records.size, longitudinal: p.isLongitudinal })),
        });
      case 'POST tokens': {
        const b = await controlBody(ctx);
        const list = Array.isArray(b) ? b : Array.isArray(b.tokens) ? b.tokens : [b];
        try {
          for (const t of list) addToken(t);
        } catch (err) {
          throw new HttpError(400, err.message);
        }
        return sendJsonControl(ctx, 201, { tokens: list.length });
      }
      case 'DELETE tokens': {
        const t = query.get('token');
        return sendJsonControl(ctx, 200, { deleted: t ? tokens.delete(t) : false });
      }
      case 'POST offline': {
        const b = await controlBody(ctx);
        if (b.system !== undefined) flags.systemOffline = !!b.system;
        if (typeof b.project === 'string') {
          const p = projects.get(b.project);
          if (!p) throw new HttpError(400, `unknown project ${b.project}`);
          p.online = b.offline === undefined ? false : !b.offline;
        } else if (b.project === null) {
          for (const p of projects.values()) p.online = true;
        }
        return sendJsonControl(ctx, 200, {
          system: flags.systemOffline,
          offlineProjects: [...projects.values()].filter((p) => !p.online).map((p) => p.name),
        });
      }
      case 'POST faults': {
        const b = await controlBody(ctx);
        try {
          return sendJsonControl(ctx, 201, { added: faults.add(b) });
        } catch (err) {
          throw new HttpError(400, err.message);
        }
      }
      case 'GET faults':
        return sendJsonControl(ctx, 200, { faults: faults.rules });
      case 'DELETE faults':
        faults.rules = [];
        return sendJsonControl(ctx, 200, { ok: true });
      case 'GET records': {
        const p = projects.get(query.get('project') ?? '');
        if (!p) throw new HttpError(400, 'project=NAME required (an existing project)');
        return sendJsonControl(ctx, 200, p.dump());
      }
      case 'DELETE records': {
        const p = projects.get(query.get('project') ?? '');
        if (!p) throw new HttpError(400, 'project=NAME required (an existing project)');
        const n = p.records.size;
        p.records.clear();
        p.log = [];
        return sendJsonControl(ctx, 200, { deleted: n });
      }
      case 'GET stats':
        return sendJsonControl(ctx, 200, {
          ...stats,
          faults: { injected: faults.injected, byKind: faults.byKind },
          banned: [...banned],
          records: Object.fromEntries([...projects.values()].map((p) => [p.name, p.records.size])),
          config,
        });
      case 'DELETE stats':
        stats = newStats();
        faults.injected = 0;
        faults.byKind = {};
        return sendJsonControl(ctx, 200, { ok: true });
      case 'POST reset-ban': {
        const n = banned.size;
        banned.clear();
        hits.clear();
        return sendJsonControl(ctx, 200, { unbanned: n });
      }
      case 'POST clock': {
        const b = await controlBody(ctx);
        if (!Number.isInteger(b.offset_ms)) throw new HttpError(400, 'offset_ms must be an integer');
        clockOffsetMs = b.offset_ms;
        return sendJsonControl(ctx, 200, { offset_ms: clockOffsetMs, now: localStamp(now()) });
      }
      case 'POST config': {
        const b = await controlBody(ctx);
        for (const k of ['rateLimit', 'maxExportRecords', 'maxImportRecords']) {
          if (b[k] === undefined) continue;
          if (!Number.isInteger(b[k]) || b[k] < 0) throw new HttpError(400, `${k} must be a non-negative integer`);
          config[k] = b[k];
        }
        if (b.redcapVersion !== undefined) config.redcapVersion = String(b.redcapVersion);
        return sendJsonControl(ctx, 200, config);
      }
      case 'POST reset': {
        const b = await controlBody(ctx);
        for (const p of projects.values()) {
          p.records.clear();
          p.log = [];
          p.online = true;
        }
        if (b.projects) {
          projects.clear();
          tokens.clear();
        }
        faults = new Faults();
        banned.clear();
        hits.clear();
        flags.systemOffline = false;
        clockOffsetMs = 0;
        stats = newStats();
        return sendJsonControl(ctx, 200, { ok: true });
      }
      default:
        throw new HttpError(404, `no control endpoint ${m} /__control/${name}`);
    }
  };

  /* ------------------------------------------------------------ dispatch */

  const handle = async (req, res) => {
    const started = performance.now();
    const ctx = { req, res, kind: 'api', status: 0, content: '-', format: 'xml', returnFormat: 'xml', truncate: false };
    const rawUrl = req.url ?? '/';
    const qi = rawUrl.indexOf('?');
    const pathname = qi < 0 ? rawUrl : rawUrl.slice(0, qi);
    res.on('close', () => {
      if (ctx.kind === 'api') {
        stats.requests.total++;
        stats.requests.byContent[ctx.content] = (stats.requests.byContent[ctx.content] ?? 0) + 1;
        const s = ctx.status ? String(ctx.status) : 'dropped';
        stats.requests.byStatus[s] = (stats.requests.byStatus[s] ?? 0) + 1;
      }
      if (opts.verbose) {
        const ms = (performance.now() - started).toFixed(1);
        process.stderr.write(`${new Date().toISOString()} ${req.method} ${pathname} content=${ctx.content} ${ctx.status || 'dropped'} ${ms}ms\n`);
      }
    });
    try {
      if (pathname.startsWith('/__control/')) {
        return await handleControl(ctx, pathname.slice('/__control/'.length), new URLSearchParams(qi < 0 ? '' : rawUrl.slice(qi + 1)));
      }
      if (!API_PATHS.has(pathname)) {
        ctx.kind = 'other';
        return send(ctx, 404, 'Not Found', 'text/plain; charset=utf-8');
      }
      return await handleApi(ctx);
    } catch (err) {
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return undefined;
      }
      if (err instanceof HttpError) {
        if (ctx.kind === 'control') return sendJsonControl(ctx, err.status, { error: err.message });
        return send(ctx, err.status, err.message, 'text/plain; charset=utf-8');
      }
      if (opts.verbose) process.stderr.write(`internal error: ${err?.stack ?? err}\n`);
      if (ctx.kind === 'control') return sendJsonControl(ctx, 500, { error: String(err?.message ?? err) });
      return sendError(ctx, 500, 'The server encountered an error processing your request.');
    }
  };

  server.on('request', (req, res) => {
    handle(req, res);
  });
  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  return {
    server,
    url,
    origin,
    port: address.port,
    state: { projects, tokens, banned, flags, config, get faults() { return faults; } },
    close: async () => {
      await new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/* ---------------------------------------------------------------- CLI */

const USAGE = `usage: node redcap-emulator.mjs [--port 0] [--host 127.0.0.1] [--port-file PATH]
         [--project NAME=DICT.csv[,repeating=form1;form2][,longitudinal=EVENTS.json][,autonumbering][,title=TEXT] ...]
         [--token TOKEN=NAME[:export|import|export+import|none] ...]
         [--rate-limit 600] [--max-export-records N] [--max-import-records N]
         [--redcap-version 15.7.6] [--verbose]`;

/*
 * Reads a --project value into a project definition. EVENTS.json holds
 * {arms, events, formEventMapping, repeating}; relative paths are taken
 * from the working directory.
 */
function projectFromFlag(value) {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new Error(`--project wants NAME=DICT.csv, got ${value}`);
  const name = value.slice(0, eq);
  const [dict, ...opts] = value.slice(eq + 1).split(',');
  const def = { name, dictionary_csv: fs.readFileSync(dict, 'utf8') };
  for (const o of opts) {
    const k = o.indexOf('=');
    const key = k < 0 ? o : o.slice(0, k);
    const v = k < 0 ? '' : o.slice(k + 1);
    if (key === 'repeating') def.repeating = v.split(';').filter(Boolean);
    else if (key === 'longitudinal') {
      const doc = JSON.parse(fs.readFileSync(v, 'utf8'));
      def.longitudinal = { arms: doc.arms, events: doc.events, formEventMapping: doc.formEventMapping ?? doc.form_event_mapping };
      if (doc.repeating) def.repeating = doc.repeating;
    } else if (key === 'autonumbering') def.autonumbering = true;
    else if (key === 'title') def.title = v;
    else throw new Error(`--project: unknown option ${key}`);
  }
  return def;
}

function tokenFromFlag(value) {
  const m = /^([0-9A-F]{32})=([^:]+)(?::(.*))?$/.exec(value);
  if (!m) throw new Error(`--token wants TOKEN=PROJECT[:rights] (TOKEN: 32 upper-case hex digits), got a malformed value`);
  const rights = (m[3] ?? 'export+import').split('+');
  for (const r of rights) if (!['export', 'import', 'delete', 'none', 'all'].includes(r)) throw new Error(`--token: unknown right ${r}`);
  const all = rights.includes('all');
  return { token: m[1], project: m[2], export: all || rights.includes('export'), import: all || rights.includes('import'), delete: all || rights.includes('delete') };
}

export function parseCli(argv) {
  const o = { projects: [], tokens: [] };
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
      case '--project':
        o.projects.push(projectFromFlag(need(i++)));
        break;
      case '--token':
        o.tokens.push(tokenFromFlag(need(i++)));
        break;
      case '--rate-limit':
        o.rateLimit = int(need(i++), a);
        break;
      case '--max-export-records':
        o.maxExportRecords = int(need(i++), a);
        break;
      case '--max-import-records':
        o.maxImportRecords = int(need(i++), a);
        break;
      case '--redcap-version':
        o.redcapVersion = need(i++);
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
  return o;
}

async function main() {
  let o;
  try {
    o = parseCli(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`redcap-emulator.mjs: ${err.message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (o.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  let srv;
  try {
    srv = await startRedcapEmulator(o);
  } catch (err) {
    process.stderr.write(`redcap-emulator.mjs: ${err.message}\n`);
    process.exit(2);
  }
  if (o.portFile) await writePortFile(fs, path.resolve(o.portFile), srv.url);
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
    process.stderr.write(`redcap-emulator.mjs: ${err.stack || err}\n`);
    process.exit(1);
  });
}
