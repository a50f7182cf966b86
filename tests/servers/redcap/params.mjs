// Request parameters as PHP fills $_POST for REDCap: form-urlencoded or
// multipart/form-data bodies only (any other content type leaves $_POST
// empty, so REDCap answers 403 for the missing token), "name[]" / "name[0]"
// keys collected into arrays, a repeated plain key keeping its last value.

/* Adds one key/value the way PHP's parser does. */
function put(params, key, value) {
  const m = /^([^[\]]+)\[([^\]]*)\]$/.exec(key);
  if (!m) {
    params[key] = value;
    return;
  }
  const [, name, index] = m;
  let arr = params[name];
  if (!arr || typeof arr !== 'object') {
    arr = { __array: true, items: [] };
    params[name] = arr;
  }
  if (index === '') arr.items.push({ i: arr.items.length, v: value });
  else {
    const existing = arr.items.find((x) => x.k === index);
    if (existing) existing.v = value;
    else arr.items.push({ k: index, i: /^\d+$/.test(index) ? Number(index) : arr.items.length, v: value });
  }
}

function finish(params) {
  for (const [k, v] of Object.entries(params)) {
    if (v && typeof v === 'object' && v.__array) params[k] = v.items.map((x) => x.v);
  }
  return params;
}

/* Parses a form-urlencoded body (a Buffer or string). */
export function parseUrlencoded(body) {
  const params = Object.create(null);
  for (const [k, v] of new URLSearchParams(body.toString('utf8'))) put(params, k, v);
  return finish(params);
}

/*
 * Parses a multipart/form-data body into text parameters (file parts are
 * read as text too). Throws on a body that does not follow the boundary.
 */
export function parseMultipart(body, contentType) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  if (!m) throw new Error('multipart body without boundary');
  const boundary = Buffer.from(`--${(m[1] ?? m[2]).trim()}`);
  const params = Object.create(null);
  let pos = body.indexOf(boundary);
  if (pos < 0) throw new Error('multipart boundary not found');
  for (;;) {
    pos += boundary.length;
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) break; // closing "--"
    if (body[pos] === 0x0d && body[pos + 1] === 0x0a) pos += 2;
    const headerEnd = body.indexOf('\r\n\r\n', pos);
    if (headerEnd < 0) throw new Error('multipart part without headers');
    const headers = body.toString('utf8', pos, headerEnd);
    const next = body.indexOf(boundary, headerEnd + 4);
    if (next < 0) throw new Error('multipart part not terminated');
    let end = next;
    if (body[end - 2] === 0x0d && body[end - 1] === 0x0a) end -= 2;
    const name = /name="([^"]*)"/i.exec(headers);
    if (name) put(params, name[1], body.toString('utf8', headerEnd + 4, end));
    pos = next;
  }
  return finish(params);
}

/*
 * The parameters of a request: POST bodies of the two form types, else {}.
 * Throws on a malformed multipart body.
 */
export function requestParams(method, contentType, body) {
  if (method !== 'POST') return {};
  const ct = (contentType ?? '').toLowerCase();
  if (ct.startsWith('application/x-www-form-urlencoded')) return parseUrlencoded(body);
  if (ct.startsWith('multipart/form-data')) return parseMultipart(body, contentType);
  return {};
}

/*
 * An array parameter: records[0]=a&records[1]=b, records[]=a, or records=a,b
 * (comma separated). Blank items are dropped.
 */
export function arrayParam(params, name) {
  const v = params[name];
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : String(v).split(',');
  return list.map((x) => String(x).trim()).filter((x) => x !== '');
}

/* A boolean parameter the way REDCap reads it: "1" or "true" (any case). */
export function boolParam(params, name) {
  const v = params[name];
  return v !== undefined && (String(v) === '1' || String(v).toLowerCase() === 'true');
}
