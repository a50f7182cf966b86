// Answer encodings of the REDCap emulator: PHP-style JSON, error envelopes,
// content types, XML items. REDCap builds its answers with PHP's
// json_encode (default flags: "/" written as "\/", non-ASCII as \uXXXX) and
// RestUtility::sendResponse (REDCap source, Classes/RestUtility.php):
//   json  {"error":"<msg>"}
//   csv   ERROR: <msg>
//   xml   <?xml version="1.0" encoding="UTF-8" ?><hash><error><msg></error></hash>
// with Content-Type application/json | text/csv | text/xml, "; charset=utf-8".

/* JSON text as PHP's json_encode() with default flags writes it. */
export function phpJson(value) {
  return JSON.stringify(value).replace(/[\u007f-\uffff/]/g, (c) =>
    c === '/' ? '\\/' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`
  );
}

export const CONTENT_TYPES = {
  json: 'application/json; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  xml: 'text/xml; charset=utf-8',
};

/* The content type for a format name (anything unknown counts as xml). */
export function contentTypeFor(format) {
  return CONTENT_TYPES[format] ?? CONTENT_TYPES.xml;
}

/*
 * The error body for `message` in `returnFormat`, as sendResponse builds it
 * for a status other than 200. The xml body is not escaped (REDCap does not).
 */
export function errorBody(message, returnFormat) {
  if (returnFormat === 'json') return phpJson({ error: message });
  if (returnFormat === 'csv') return `ERROR: ${message}`;
  return `<?xml version="1.0" encoding="UTF-8" ?><hash><error>${message}</error></hash>`;
}

/* Text as a CDATA section (a "]]>" inside is split, as XML requires). */
export function cdata(s) {
  return `<![CDATA[${String(s).replace(/]]>/g, ']]]]><![CDATA[>')}]]>`;
}

/*
 * An XML document of items: <?xml ...?>\n<root>\n<item><k>...</k></item>\n</root>\n,
 * non-empty values as CDATA, as REDCap's API export files write them.
 */
export function xmlItems(root, items) {
  let out = `<?xml version="1.0" encoding="UTF-8" ?>\n<${root}>\n`;
  for (const it of items) {
    let line = '';
    for (const [k, v] of Object.entries(it)) {
      const s = v === undefined || v === null ? '' : String(v);
      line += s === '' ? `<${k}></${k}>` : `<${k}>${cdata(s)}</${k}>`;
    }
    out += `<item>${line}</item>\n`;
  }
  return out + `</${root}>\n`;
}
