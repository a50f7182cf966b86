// Small HTTP helpers shared by the test servers.

import { once } from 'node:events';

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/* An OperationOutcome with one issue. */
export function operationOutcome(severity, code, diagnostics) {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity, code, diagnostics }],
  };
}

/* The OperationOutcome issue code for an HTTP error status. */
export function issueCodeFor(status) {
  switch (status) {
    case 400:
      return 'invalid';
    case 401:
      return 'login';
    case 403:
      return 'forbidden';
    case 404:
      return 'not-found';
    case 409:
    case 412:
      return 'conflict';
    case 410:
      return 'deleted';
    case 413:
      return 'too-costly';
    case 415:
      return 'not-supported';
    case 429:
      return 'throttled';
    default:
      return status >= 500 ? 'exception' : 'processing';
  }
}

/*
 * Reads a request body into one Buffer, failing with HttpError(413) when it
 * grows past `limit` bytes.
 */
export async function readBody(req, limit) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, `request body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/*
 * Calls `onLine(line)` for each non-empty line of a streamed body without
 * holding the whole body (for big NDJSON loads). Lines longer than
 * `maxLine` bytes fail with HttpError(413).
 */
export async function forEachLine(req, onLine, maxLine = 64 << 20) {
  let rest = Buffer.alloc(0);
  for await (const chunk of req) {
    let buf = rest.length ? Buffer.concat([rest, chunk]) : chunk;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl < 0) break;
      const line = buf.toString('utf8', start, nl).trim();
      if (line) onLine(line);
      start = nl + 1;
    }
    rest = buf.subarray(start);
    if (rest.length > maxLine) throw new HttpError(413, 'NDJSON line too long');
    buf = null;
  }
  const last = rest.toString('utf8').trim();
  if (last) onLine(last);
}

/* Writes the one-line base URL to `path` atomically (temp file + rename). */
export async function writePortFile(fs, path, url) {
  const tmp = `${path}.${process.pid}.tmp`;
  await fs.promises.writeFile(tmp, url + '\n');
  await fs.promises.rename(tmp, path);
}

/* Formats a listening address as an URL origin. */
export function originOf(address) {
  const host = address.family === 'IPv6' || address.address.includes(':') ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

/* Resolves once `server` listens on host:port. */
export async function listen(server, port, host) {
  server.listen(port, host);
  await once(server, 'listening');
  return server.address();
}

export const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost']);

/*
 * Command-line reading shared by the test servers: "--flag=value" split in
 * two, need(i) the value after argv[i] (not another flag), int(v, flag) a
 * non-negative integer. Returns { args, need, int }.
 */
export function cliReader(argv) {
  const args = argv.flatMap((a) => {
    const eq = a.indexOf('=');
    return a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a];
  });
  const need = (i) => {
    if (i + 1 >= args.length || args[i + 1].startsWith('--')) throw new Error(`${args[i]} needs a value`);
    return args[i + 1];
  };
  const int = (v, flag) => {
    if (!/^\d+$/.test(v)) throw new Error(`${flag} must be a non-negative integer`);
    return Number(v);
  };
  return { args, need, int };
}
