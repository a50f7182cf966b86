// Search for the test FHIR server: turns a FHIR search query into a list of
// predicates over stored resources plus sort rules.
//
// The common parameters a bulk client uses (_id, _lastUpdated, and
// reference/token parameters whose per-type expression is a plain path:
// patient, subject, encounter, identifier, code, category, status, ...) are
// matched here directly on the JSON, which costs well under a microsecond
// per resource. Everything else is handed to @medplum/core's
// matchesSearchRequest with the (narrowed) SearchParameter expression, so
// any R4 search parameter still works, only slower.

import {
  Operator,
  OperationOutcomeError,
  badRequest,
  evalFhirPath,
  matchesSearchRequest,
  parseParameter,
  splitSearchOnComma,
} from '@medplum/core';
import { resourceTypes, searchParamsOf, splitUnion } from './fhir-defs.mjs';

/* Parameters that change the result shape, accepted and ignored. */
const IGNORED_PARAMS = new Set(['_format', '_pretty', '_elements', '_total', '_bundletype', '_', '_type']);

/* Search features this server refuses with 400 rather than silently ignore. */
const UNSUPPORTED_PARAMS = new Set([
  '_include',
  '_revinclude',
  '_has',
  '_filter',
  '_query',
  '_text',
  '_content',
  '_list',
  '_contained',
  '_containedType',
]);

function fail(message) {
  return new OperationOutcomeError(badRequest(message));
}

/*
 * Parses a FHIR date/dateTime/instant search value into the half-open range
 * [start, end) of epoch milliseconds it denotes at its own precision. A value
 * without a zone is taken as UTC. Returns undefined on a malformed value.
 */
export function parseDateRange(value) {
  const m =
    /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/.exec(
      value
    );
  if (!m) return undefined;
  const [, ys, mos, ds, hs, mis, ss, fs, tz] = m;
  const y = Number(ys);
  const mo = mos === undefined ? 1 : Number(mos);
  const d = ds === undefined ? 1 : Number(ds);
  const h = hs === undefined ? 0 : Number(hs);
  const mi = mis === undefined ? 0 : Number(mis);
  const s = ss === undefined ? 0 : Number(ss);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return undefined;
  const ms = fs === undefined ? 0 : Number((fs + '00').slice(0, 3));
  let offset = 0;
  if (tz && tz !== 'Z') {
    const sign = tz[0] === '-' ? -1 : 1;
    offset = sign * (Number(tz.slice(1, 3)) * 60 + Number(tz.slice(4, 6))) * 60000;
  }
  const start = Date.UTC(y, mo - 1, d, h, mi, s, ms) - offset;
  let end;
  if (mos === undefined) end = Date.UTC(y + 1, 0, 1) - offset;
  else if (ds === undefined) end = Date.UTC(y, mo, 1) - offset;
  else if (hs === undefined) end = start + 86400000;
  else if (ss === undefined) end = start + 60000;
  else if (fs === undefined) end = start + 1000;
  else end = start + Math.max(1, 10 ** (3 - Math.min(fs.length, 3)));
  if (!Number.isFinite(start) || !Number.isFinite(end)) return undefined;
  return { start, end };
}

/*
 * Builds a predicate on a canonical instant string (what the store keeps in
 * meta.lastUpdated: 'YYYY-MM-DDThh:mm:ss.sssZ', so string order is time
 * order) for a date filter with a medplum Operator.
 */
function instantPredicate(operator, value) {
  const range = parseDateRange(value);
  if (!range) throw fail(`Invalid date value: ${value}`);
  const lo = new Date(range.start).toISOString();
  const hi = new Date(range.end).toISOString();
  switch (operator) {
    case Operator.EQUALS:
    case Operator.APPROXIMATELY:
      return (s) => s >= lo && s < hi;
    case Operator.NOT_EQUALS:
      return (s) => !(s >= lo && s < hi);
    case Operator.GREATER_THAN:
    case Operator.STARTS_AFTER:
      return (s) => s >= hi;
    case Operator.GREATER_THAN_OR_EQUALS:
      return (s) => s >= lo;
    case Operator.LESS_THAN:
    case Operator.ENDS_BEFORE:
      return (s) => s < lo;
    case Operator.LESS_THAN_OR_EQUALS:
      return (s) => s < hi;
    default:
      throw fail(`Unsupported date comparison: ${operator}`);
  }
}

/*
 * Compiles one FHIRPath term into a plain path, or returns undefined when
 * the term is more than a path. Understood forms: `T.a.b`,
 * `T.a.where(resolve() is X)`, `(T.a as X)`, `T.a as X`, `T.a.as(X)`.
 */
function compileTerm(term, resourceType) {
  let t = term.trim();
  while (t.startsWith('(') && t.endsWith(')')) t = t.slice(1, -1).trim();
  let resolveType;
  let asType;
  let m = /^(.*)\.where\(resolve\(\) is ([A-Za-z]+)\)$/.exec(t);
  if (m) {
    t = m[1];
    resolveType = m[2];
  }
  m = /^(.*?)(?: as |\.as\()([A-Za-z]+)\)?$/.exec(t);
  if (m) {
    t = m[1].trim();
    asType = m[2];
  }
  if (!/^[A-Za-z]+(\.[A-Za-z]+)+$/.test(t)) return undefined;
  const segs = t.split('.');
  if (segs[0] !== resourceType) return undefined;
  const path = segs.slice(1);
  if (asType) {
    path[path.length - 1] += asType[0].toUpperCase() + asType.slice(1);
  }
  return { path, resolveType };
}

/* Compiles a whole (narrowed) expression into paths, or undefined. */
function compileExpression(expression, resourceType) {
  if (!expression) return undefined;
  const out = [];
  for (const term of splitUnion(expression)) {
    const c = compileTerm(term, resourceType);
    if (!c) return undefined;
    out.push(c);
  }
  return out.length > 0 ? out : undefined;
}

/* Collects the values at a path, flattening arrays. */
function collect(resource, path) {
  let cur = [resource];
  for (const seg of path) {
    const next = [];
    for (const v of cur) {
      const x = v?.[seg];
      if (x === undefined || x === null) continue;
      if (Array.isArray(x)) {
        for (const e of x) if (e !== undefined && e !== null) next.push(e);
      } else next.push(x);
    }
    cur = next;
    if (cur.length === 0) break;
  }
  return cur;
}

/*
 * Normalizes a reference string to 'Type/id': strips a _history suffix and
 * the base of an absolute URL. Returns undefined for other shapes (contained
 * '#x', urn:uuid:, ...), which never match a search value.
 */
function normalizeReference(ref) {
  if (typeof ref !== 'string') return undefined;
  let r = ref;
  const h = r.indexOf('/_history/');
  if (h >= 0) r = r.slice(0, h);
  if (r.includes('://')) {
    const parts = r.split('/');
    if (parts.length < 2) return undefined;
    r = parts.slice(-2).join('/');
  }
  const slash = r.indexOf('/');
  if (slash <= 0 || slash === r.length - 1 || r.indexOf('/', slash + 1) >= 0) return undefined;
  return r;
}

function referencePredicate(sp, compiled, filter, typeModifier) {
  const negated = filter.operator === Operator.NOT_EQUALS || filter.operator === Operator.NOT;
  const targets = sp.target ?? [];
  const wantedFull = new Set();
  const wantedBareIds = new Set();
  for (let v of splitSearchOnComma(filter.value)) {
    if (typeModifier && !v.includes('/')) v = `${typeModifier}/${v}`;
    if (!v.includes('/')) {
      if (targets.length === 1) wantedFull.add(`${targets[0]}/${v}`);
      else wantedBareIds.add(v);
      continue;
    }
    const n = normalizeReference(v);
    if (n) wantedFull.add(n);
  }
  return (resource) => {
    let hit = false;
    outer: for (const { path, resolveType } of compiled) {
      for (const ref of collect(resource, path)) {
        const n = normalizeReference(typeof ref === 'string' ? ref : ref.reference);
        if (!n) continue;
        const slash = n.indexOf('/');
        if (resolveType && n.slice(0, slash) !== resolveType) continue;
        if (typeModifier && n.slice(0, slash) !== typeModifier) continue;
        if (wantedFull.has(n) || wantedBareIds.has(n.slice(slash + 1))) {
          hit = true;
          break outer;
        }
      }
    }
    return negated ? !hit : hit;
  };
}

/* Expands a typed value into the {system, code} pairs a token can match. */
function tokensOf(v, out) {
  if (v === null || v === undefined) return;
  const t = typeof v;
  if (t === 'string' || t === 'number' || t === 'boolean') {
    out.push({ system: undefined, code: String(v) });
    return;
  }
  if (t !== 'object') return;
  if (Array.isArray(v.coding)) {
    for (const c of v.coding) if (c && typeof c === 'object') out.push({ system: c.system, code: c.code });
    return;
  }
  if (v.value !== undefined && typeof v.value !== 'object') {
    out.push({ system: v.system, code: String(v.value) });
    return;
  }
  if (v.code !== undefined || v.system !== undefined) out.push({ system: v.system, code: v.code });
}

function tokenPredicate(compiled, filter) {
  const negated = filter.operator === Operator.NOT_EQUALS || filter.operator === Operator.NOT;
  const wanted = splitSearchOnComma(filter.value).map((v) => {
    const bar = v.indexOf('|');
    if (bar < 0) return { anySystem: true, code: v };
    return { anySystem: false, system: v.slice(0, bar), code: v.slice(bar + 1) };
  });
  return (resource) => {
    const tokens = [];
    for (const { path } of compiled) for (const v of collect(resource, path)) tokensOf(v, tokens);
    let hit = false;
    outer: for (const tok of tokens) {
      for (const w of wanted) {
        if (w.anySystem) {
          if (tok.code === w.code) {
            hit = true;
            break outer;
          }
        } else if (w.system === '') {
          if (!tok.system && w.code !== '' && tok.code === w.code) {
            hit = true;
            break outer;
          }
        } else if (tok.system === w.system && (w.code === '' || tok.code === w.code)) {
          hit = true;
          break outer;
        }
      }
    }
    return negated ? !hit : hit;
  };
}

/*
 * Compiles one medplum Filter on `resourceType` into a predicate over stored
 * resources. `typeModifier` is the resource type of a `param:Type=` modifier
 * on a reference parameter (medplum's parser drops it).
 */
export function compileFilter(resourceType, filter, typeModifier) {
  const sp = searchParamsOf(resourceType)[filter.code];
  if (!sp) throw fail(`Unknown search parameter '${filter.code}' for ${resourceType}`);
  const op = filter.operator;

  if (filter.code === '_id' && (op === Operator.EQUALS || op === Operator.NOT_EQUALS || op === Operator.NOT)) {
    const ids = new Set(splitSearchOnComma(filter.value));
    const negated = op !== Operator.EQUALS;
    return (r) => ids.has(r.id) !== negated;
  }
  if (filter.code === '_lastUpdated' && op !== Operator.MISSING && op !== Operator.PRESENT) {
    const p = instantPredicate(op, filter.value);
    return (r) => {
      const s = r.meta?.lastUpdated;
      return typeof s === 'string' && p(s);
    };
  }
  const simpleOp = op === Operator.EQUALS || op === Operator.NOT_EQUALS || op === Operator.NOT;
  if (simpleOp && (sp.type === 'reference' || sp.type === 'token')) {
    const compiled = compileExpression(sp.expression, resourceType);
    if (compiled) {
      return sp.type === 'reference'
        ? referencePredicate(sp, compiled, filter, typeModifier)
        : tokenPredicate(compiled, filter);
    }
  }
  // General case: medplum's matcher with the narrowed expression.
  const request = { resourceType, filters: [filter] };
  return (r) => matchesSearchRequest(r, request);
}

/*
 * Parses the query of a type-level search into
 *   { predicates, sortRules, count, offset, countOnly, usesLastUpdated,
 *     sortsByLastUpdated }
 * `entries` is an iterable of [key, value] pairs (URLSearchParams order).
 * Throws OperationOutcomeError(400) on unknown or unsupported parameters
 * unless `lenient` (Prefer: handling=lenient) is set, in which case unknown
 * parameters are ignored.
 */
export function compileSearch(resourceType, entries, { lenient = false, defaultCount = 20, maxCount = 1000 } = {}) {
  if (!resourceTypes().has(resourceType)) throw fail(`Unknown resource type '${resourceType}'`);
  const params = searchParamsOf(resourceType);
  const out = {
    predicates: [],
    sortRules: [],
    count: defaultCount,
    offset: 0,
    countOnly: false,
    usesLastUpdated: false,
    sortsByLastUpdated: false,
  };
  for (const [key, value] of entries) {
    const colon = key.indexOf(':');
    const code = colon >= 0 ? key.slice(0, colon) : key;
    const modifier = colon >= 0 ? key.slice(colon + 1) : '';
    if (IGNORED_PARAMS.has(code)) continue;
    if (UNSUPPORTED_PARAMS.has(code) || code.includes('.')) {
      throw fail(`Search parameter '${key}' is not supported by this server`);
    }
    if (code === '_count') {
      if (!/^\d+$/.test(value)) throw fail(`Invalid _count: ${value}`);
      out.count = Math.min(Number(value), maxCount);
      continue;
    }
    if (code === '_offset') {
      if (!/^\d+$/.test(value)) throw fail(`Invalid _offset: ${value}`);
      out.offset = Number(value);
      continue;
    }
    if (code === '_summary') {
      if (value === 'count') out.countOnly = true;
      continue;
    }
    if (code === '_sort') {
      for (const field of value.split(',')) {
        const descending = field.startsWith('-');
        const c = descending ? field.slice(1) : field;
        if (!params[c]) throw fail(`Unknown sort parameter '${c}' for ${resourceType}`);
        if (c === '_lastUpdated') out.sortsByLastUpdated = true;
        out.sortRules.push({ code: c, descending });
      }
      continue;
    }
    const sp = params[code];
    if (!sp) {
      if (lenient) continue;
      throw fail(`Unknown search parameter '${code}' for ${resourceType}`);
    }
    if (code === '_lastUpdated') out.usesLastUpdated = true;
    let typeModifier;
    let mod = modifier;
    if (sp.type === 'reference' && /^[A-Z]/.test(mod)) {
      if (!resourceTypes().has(mod)) throw fail(`Unknown type modifier '${mod}'`);
      typeModifier = mod;
      mod = '';
    }
    const filter = parseParameter(sp, mod, value);
    out.predicates.push(compileFilter(resourceType, filter, typeModifier));
  }
  return out;
}

/* Compiles the filters of a medplum SearchRequest (used by repo.search). */
export function compileSearchRequest(searchRequest) {
  const resourceType = searchRequest.resourceType;
  return (searchRequest.filters ?? []).map((f) => compileFilter(resourceType, f));
}

function sortKey(resource, code, cache) {
  let k = cache.get(resource);
  if (k === undefined) {
    const sp = searchParamsOf(resource.resourceType)[code];
    const v = sp?.expression ? evalFhirPath(sp.expression, resource)[0] : undefined;
    k = v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v);
    cache.set(resource, k);
  }
  return k;
}

/*
 * Sorts resources in place by the sort rules. _lastUpdated and _id compare
 * the stored strings; any other parameter compares the first value of its
 * expression as a string. Ties are broken by id, so the order is total.
 */
export function sortResources(list, sortRules) {
  if (sortRules.length === 0) return list;
  const caches = sortRules.map(() => new Map());
  const cmp = (a, b) => {
    for (let i = 0; i < sortRules.length; i++) {
      const { code, descending } = sortRules[i];
      let ka;
      let kb;
      if (code === '_lastUpdated') {
        ka = a.meta?.lastUpdated ?? '';
        kb = b.meta?.lastUpdated ?? '';
      } else if (code === '_id') {
        ka = a.id;
        kb = b.id;
      } else {
        ka = sortKey(a, code, caches[i]);
        kb = sortKey(b, code, caches[i]);
      }
      if (ka !== kb) return (ka < kb ? -1 : 1) * (descending ? -1 : 1);
    }
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  };
  return list.sort(cmp);
}
