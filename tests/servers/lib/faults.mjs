// Fault injection for the test FHIR server. Rules are kept in the order they
// were added; a request takes the first rule that matches it and still has
// firings left, and that rule fires once.
//
// A rule: { match?: substring of the raw request path+query,
//           method?: 'GET' | 'POST' | ...,
//           times: N (default 1),
//           kind: 'status' (default) | 'drop' | 'truncate' | 'invalid-json' | 'delay',
//           status, headers, body   (kind 'status'; body string or JSON value),
//           ms                      (kind 'delay') }
// Without `match` a rule applies to requests under the FHIR base only; with
// one it applies to any non-control request whose path+query contains it
// (so "/auth/token" targets the token endpoint).

const KINDS = new Set(['status', 'drop', 'truncate', 'invalid-json', 'delay']);

export class Faults {
  constructor() {
    this.rules = [];
    this.nextId = 1;
    this.injected = 0;
    this.byKind = {};
  }

  /* Validates and adds rules (one object or an array); returns them. */
  add(spec) {
    const specs = Array.isArray(spec) ? spec : [spec];
    const added = [];
    for (const s of specs) {
      if (!s || typeof s !== 'object') throw new Error('fault must be an object');
      const kind = s.kind ?? 'status';
      if (!KINDS.has(kind)) throw new Error(`unknown fault kind '${kind}'`);
      const times = s.times ?? 1;
      if (!Number.isInteger(times) || times < 1) throw new Error('times must be a positive integer');
      if (s.match !== undefined && typeof s.match !== 'string') throw new Error('match must be a string');
      const status = s.status ?? (kind === 'status' ? 503 : 200);
      if (!Number.isInteger(status) || status < 100 || status > 599) throw new Error('bad status');
      if (kind === 'delay' && !(Number.isFinite(s.ms) && s.ms >= 0 && s.ms <= 600000)) {
        throw new Error('delay needs ms (0..600000)');
      }
      if (s.headers !== undefined && (typeof s.headers !== 'object' || s.headers === null)) {
        throw new Error('headers must be an object');
      }
      const rule = {
        id: this.nextId++,
        match: s.match,
        method: s.method ? String(s.method).toUpperCase() : undefined,
        kind,
        times,
        remaining: times,
        fired: 0,
        status,
        headers: s.headers ?? {},
        body: s.body,
        ms: s.ms ?? 0,
      };
      this.rules.push(rule);
      added.push(rule);
    }
    return added;
  }

  clear() {
    this.rules = [];
  }

  /*
   * Takes the fault for a request, if any: decrements its count and returns
   * the rule, else undefined. `isFhir` tells whether the request is under
   * the FHIR base.
   */
  take(method, pathAndQuery, isFhir) {
    for (const r of this.rules) {
      if (r.remaining <= 0) continue;
      if (r.method && r.method !== method) continue;
      if (r.match === undefined ? !isFhir : !pathAndQuery.includes(r.match)) continue;
      r.remaining--;
      r.fired++;
      this.injected++;
      this.byKind[r.kind] = (this.byKind[r.kind] ?? 0) + 1;
      return r;
    }
    return undefined;
  }

  list() {
    return this.rules.map((r) => ({ ...r }));
  }
}
