// SMART Backend Services (client_credentials + private_key_jwt) for the test
// FHIR server: client registry, assertion verification with node:crypto,
// access tokens, and the bearer check on FHIR requests.

import { createPublicKey, randomBytes, verify as cryptoVerify, constants as cryptoConstants } from 'node:crypto';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const MAX_LIFETIME_S = 300;
const CLOCK_SKEW_S = 5;
const ALGS = {
  RS384: { kty: 'RSA', hash: 'sha384' },
  ES384: { kty: 'EC', crv: 'P-384', hash: 'sha384', sigLen: 96 },
};

export class AuthError extends Error {
  constructor(status, error, description) {
    super(description);
    this.status = status;
    this.error = error;
  }
}

function b64urlJson(part, what) {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) throw new AuthError(401, 'invalid_client', `malformed JWT ${what}`);
  let v;
  try {
    v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw new AuthError(401, 'invalid_client', `malformed JWT ${what}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) {
    throw new AuthError(401, 'invalid_client', `malformed JWT ${what}`);
  }
  return v;
}

/* Parses a space-separated scope string into {resourceType, read, write}. */
export function parseScopes(scope) {
  const out = [];
  for (const s of (scope ?? '').split(/\s+/).filter(Boolean)) {
    const m = /^system\/([A-Za-z]+|\*)\.(read|write|\*|[cruds]+)(\?.*)?$/.exec(s);
    if (!m) continue;
    const [, type, perm] = m;
    const v1 = perm === 'read' || perm === 'write' || perm === '*';
    const read = v1 ? perm !== 'write' : /[rs]/.test(perm);
    const write = v1 ? perm !== 'read' : /[cud]/.test(perm);
    out.push({ scope: s, type, read, write });
  }
  return out;
}

export class Auth {
  /*
   * options: tokenTtl (seconds), requireAuth (bool), staticTokens (array of
   * strings that are always valid).
   */
  constructor({ tokenTtl = 300, requireAuth = false, staticTokens = [] } = {}) {
    this.tokenTtl = tokenTtl;
    this.requireAuth = requireAuth;
    this.staticTokens = new Set(staticTokens);
    this.clients = new Map(); // client_id -> { keys: [{kid, kty, crv, alg, key}], scope }
    this.tokens = new Map(); // token -> { clientId, scope, scopes, exp (ms) }
    this.jtis = new Map(); // jti -> exp (ms)
    this.stats = { issued: 0, tokenFailures: 0, unauthorized: 0, forbidden: 0 };
  }

  /* True when FHIR requests need a bearer token. */
  enabled() {
    return this.requireAuth || this.clients.size > 0 || this.staticTokens.size > 0;
  }

  /*
   * Registers (or replaces) a client: {client_id, jwks: {keys: [...]}, scope?}.
   * Throws Error on a malformed registration.
   */
  registerClient(reg) {
    if (!reg || typeof reg.client_id !== 'string' || !reg.client_id) throw new Error('client_id required');
    const keys = reg.jwks?.keys;
    if (!Array.isArray(keys) || keys.length === 0) throw new Error(`client ${reg.client_id}: jwks.keys required`);
    const parsed = keys.map((jwk) => {
      if (!jwk || typeof jwk.kid !== 'string') throw new Error(`client ${reg.client_id}: every key needs a kid`);
      if (jwk.kty !== 'RSA' && !(jwk.kty === 'EC' && jwk.crv === 'P-384')) {
        throw new Error(`client ${reg.client_id}: key ${jwk.kid}: only RSA and EC P-384 keys are supported`);
      }
      const pub = { ...jwk };
      for (const k of ['d', 'p', 'q', 'dp', 'dq', 'qi']) delete pub[k];
      return { kid: jwk.kid, kty: jwk.kty, crv: jwk.crv, alg: jwk.alg, key: createPublicKey({ key: pub, format: 'jwk' }) };
    });
    this.clients.set(reg.client_id, { keys: parsed, scope: reg.scope });
  }

  /* Drops every issued token (static tokens stay valid). */
  expireTokens() {
    const n = this.tokens.size;
    this.tokens.clear();
    return n;
  }

  prune(nowMs) {
    for (const [j, exp] of this.jtis) if (exp < nowMs) this.jtis.delete(j);
    for (const [t, v] of this.tokens) if (v.exp < nowMs) this.tokens.delete(t);
  }

  /*
   * Handles a token request. `form` is a URLSearchParams, `audiences` the
   * token endpoint URLs an assertion may name in aud. Returns the token
   * response object; throws AuthError.
   */
  issueToken(form, audiences) {
    try {
      return this.issueTokenImpl(form, audiences);
    } catch (err) {
      this.stats.tokenFailures++;
      throw err;
    }
  }

  issueTokenImpl(form, audiences) {
    const grantType = form.get('grant_type');
    if (grantType !== 'client_credentials') {
      throw new AuthError(400, 'unsupported_grant_type', 'grant_type must be client_credentials');
    }
    if (form.get('client_assertion_type') !== ASSERTION_TYPE) {
      throw new AuthError(400, 'invalid_request', `client_assertion_type must be ${ASSERTION_TYPE}`);
    }
    const assertion = form.get('client_assertion');
    if (!assertion) throw new AuthError(400, 'invalid_request', 'client_assertion missing');
    const scope = form.get('scope');
    if (!scope) throw new AuthError(400, 'invalid_request', 'scope missing');

    const claims = this.verifyAssertion(assertion, audiences, form.get('client_id'));

    const granted = parseScopes(scope);
    if (granted.length === 0) throw new AuthError(400, 'invalid_scope', 'no system/ scope requested');
    const client = this.clients.get(claims.iss);
    if (client.scope) {
      const allowed = new Set(client.scope.split(/\s+/));
      for (const g of granted) {
        if (!allowed.has(g.scope)) throw new AuthError(400, 'invalid_scope', `scope ${g.scope} not allowed`);
      }
    }
    const grantedScope = granted.map((g) => g.scope).join(' ');
    const token = randomBytes(24).toString('base64url');
    this.tokens.set(token, {
      clientId: claims.iss,
      scope: grantedScope,
      scopes: granted,
      exp: Date.now() + this.tokenTtl * 1000,
    });
    this.stats.issued++;
    return { access_token: token, token_type: 'bearer', expires_in: this.tokenTtl, scope: grantedScope };
  }

  /* Verifies a client assertion JWT; returns its claims or throws AuthError. */
  verifyAssertion(jwt, audiences, formClientId) {
    const bad = (msg) => new AuthError(401, 'invalid_client', msg);
    if (typeof jwt !== 'string' || jwt.length > 16384) throw bad('malformed JWT');
    const parts = jwt.split('.');
    if (parts.length !== 3) throw bad('malformed JWT');
    const header = b64urlJson(parts[0], 'header');
    const claims = b64urlJson(parts[1], 'payload');
    const alg = ALGS[header.alg];
    if (!alg) throw bad(`alg ${String(header.alg)} not allowed (RS384, ES384)`);
    if (typeof claims.iss !== 'string' || !claims.iss) throw bad('iss missing');
    if (claims.sub !== claims.iss) throw bad('sub must equal iss');
    if (formClientId && formClientId !== claims.iss) throw bad('client_id does not match iss');
    const client = this.clients.get(claims.iss);
    if (!client) throw bad('unknown client');
    if (typeof header.kid !== 'string') throw bad('kid missing');
    const key = client.keys.find((k) => k.kid === header.kid);
    if (!key) throw bad('no key with that kid');
    if (key.kty !== alg.kty || (alg.crv && key.crv !== alg.crv)) throw bad('key type does not match alg');
    if (key.alg && key.alg !== header.alg) throw bad('key alg does not match');

    const sig = Buffer.from(parts[2], 'base64url');
    if (alg.sigLen && sig.length !== alg.sigLen) throw bad('signature verification failed');
    const data = Buffer.from(parts[0] + '.' + parts[1], 'ascii');
    const keyOpts =
      alg.kty === 'EC'
        ? { key: key.key, dsaEncoding: 'ieee-p1363' }
        : { key: key.key, padding: cryptoConstants.RSA_PKCS1_PADDING };
    let ok = false;
    try {
      ok = cryptoVerify(alg.hash, data, keyOpts, sig);
    } catch {
      ok = false;
    }
    if (!ok) throw bad('signature verification failed');

    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.some((a) => typeof a === 'string' && audiences.includes(a))) {
      throw bad('aud is not this token endpoint');
    }
    const now = Date.now() / 1000;
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) throw bad('exp missing');
    if (claims.exp <= now) throw bad('assertion expired');
    if (claims.exp > now + MAX_LIFETIME_S + CLOCK_SKEW_S) throw bad('exp more than 5 minutes in the future');
    if (claims.iat !== undefined) {
      if (typeof claims.iat !== 'number') throw bad('iat not a number');
      if (claims.iat > now + CLOCK_SKEW_S) throw bad('iat in the future');
      if (claims.exp - claims.iat > MAX_LIFETIME_S) throw bad('exp more than 5 minutes after iat');
    }
    if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || claims.nbf > now + CLOCK_SKEW_S)) {
      throw bad('not yet valid (nbf)');
    }
    if (typeof claims.jti !== 'string' || !claims.jti) throw bad('jti missing');
    this.prune(Date.now());
    const jtiKey = claims.iss + '\u0000' + claims.jti;
    if (this.jtis.has(jtiKey)) throw bad('jti replayed');
    this.jtis.set(jtiKey, claims.exp * 1000 + CLOCK_SKEW_S * 1000);
    return claims;
  }

  /*
   * Checks the Authorization header of a FHIR request needing `access`
   * ('read' | 'write') on `resourceType` (undefined = any). Returns
   * undefined when allowed, or {status, wwwAuthenticate?, message}.
   */
  checkRequest(authorization, resourceType, access) {
    if (!this.enabled()) return undefined;
    const realm = 'Bearer realm="fhir-test-server"';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) {
      this.stats.unauthorized++;
      return { status: 401, wwwAuthenticate: realm, message: 'Bearer token required' };
    }
    const token = m[1];
    if (this.staticTokens.has(token)) return undefined;
    const t = this.tokens.get(token);
    if (!t || t.exp <= Date.now()) {
      if (t) this.tokens.delete(token);
      this.stats.unauthorized++;
      return {
        status: 401,
        wwwAuthenticate: `${realm}, error="invalid_token", error_description="token unknown or expired"`,
        message: 'Invalid or expired token',
      };
    }
    if (access) {
      const ok = t.scopes.some(
        (s) => (s.type === '*' || !resourceType || s.type === resourceType) && (access === 'read' ? s.read : s.write)
      );
      if (!ok) {
        this.stats.forbidden++;
        return { status: 403, message: `Token scope does not allow ${access} of ${resourceType ?? 'this resource'}` };
      }
    }
    return undefined;
  }
}
