// RFC 4180 CSV for the REDCap emulator: a parser that tolerates what REDCap
// tolerates (CRLF or LF, quoted fields with "" escapes and embedded line
// breaks, a UTF-8 BOM) and a writer that quotes only when needed.

/*
 * Parses CSV text into an array of rows (arrays of strings). Blank lines are
 * dropped. Throws Error('unterminated quoted field') when a quote never
 * closes, so a truncated upload is not silently read as shorter data.
 */
export function parseCsv(text) {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const rows = [];
  let row = [];
  let field = '';
  let i = 0;
  const n = text.length;
  let quoted = false;
  let sawAny = false; // anything on the current line (so "" lines are kept as one empty field)
  while (i < n) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i++;
        continue;
      }
      field += c;
      i++;
      continue;
    }
    if (c === '"') {
      quoted = true;
      sawAny = true;
      i++;
      continue;
    }
    if (c === ',') {
      row.push(field);
      field = '';
      sawAny = true;
      i++;
      continue;
    }
    if (c === '\r' || c === '\n') {
      row.push(field);
      if (sawAny || row.length > 1 || row[0] !== '') rows.push(row);
      row = [];
      field = '';
      sawAny = false;
      i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
      continue;
    }
    field += c;
    sawAny = true;
    i++;
  }
  if (quoted) throw new Error('unterminated quoted field');
  if (sawAny || field !== '') {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

/* Quotes one CSV value when it holds a comma, quote, CR or LF. */
export function csvCell(value) {
  const s = value === undefined || value === null ? '' : String(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/*
 * Writes rows (arrays of values) as CSV, one line each, lines ended by "\n"
 * (REDCap's API answers use LF).
 */
export function writeCsv(rows) {
  let out = '';
  for (const r of rows) out += r.map(csvCell).join(',') + '\n';
  return out;
}
