// A small subset of REDCap's filterLogic for the emulator's record export:
//   [field] = 'value'      [field] <> "x"     [n] >= 3.5     [cb(2)] = '1'
//   [event_name][field] = '...'   (longitudinal)
//   comparisons joined with and / or (&& / ||), parentheses.
// Operators: = == <> != < <= > >=. Two numbers compare as numbers; a blank
// side makes <, <=, >, >= false (REDCap's behaviour for empty values);
// otherwise text compares as text. Functions (datediff, sum, if, ...),
// arithmetic and smart variables are not supported: compileFilter throws and
// the export answers 400.

export class FilterError extends Error {}

function tokenize(src) {
  const toks = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '[') {
      const j = src.indexOf(']', i);
      if (j < 0) throw new FilterError('unclosed [');
      toks.push({ t: 'ref', v: src.slice(i + 1, j).trim() });
      i = j + 1;
      continue;
    }
    if (c === '"' || c === "'") {
      const j = src.indexOf(c, i + 1);
      if (j < 0) throw new FilterError('unclosed string');
      toks.push({ t: 'str', v: src.slice(i + 1, j) });
      i = j + 1;
      continue;
    }
    if (c === '(' || c === ')') {
      toks.push({ t: c });
      i++;
      continue;
    }
    const two = src.slice(i, i + 2);
    if (['<>', '!=', '<=', '>=', '==', '&&', '||'].includes(two)) {
      toks.push(two === '&&' ? { t: 'and' } : two === '||' ? { t: 'or' } : { t: 'op', v: two });
      i += 2;
      continue;
    }
    if (c === '=' || c === '<' || c === '>') {
      toks.push({ t: 'op', v: c });
      i++;
      continue;
    }
    const num = /^-?\d+(\.\d+)?/.exec(src.slice(i));
    if (num) {
      toks.push({ t: 'num', v: num[0] });
      i += num[0].length;
      continue;
    }
    const word = /^[A-Za-z_]+/.exec(src.slice(i));
    if (word) {
      const w = word[0].toLowerCase();
      if (w === 'and' || w === 'or') toks.push({ t: w });
      else throw new FilterError(`unsupported word ${word[0]}`);
      i += word[0].length;
      continue;
    }
    throw new FilterError(`unexpected character ${c}`);
  }
  return toks;
}

const isNum = (s) => s !== '' && /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s);

function compare(op, a, b) {
  const numeric = isNum(a) && isNum(b);
  if ((op === '<' || op === '<=' || op === '>' || op === '>=') && (a === '' || b === '')) return false;
  let c;
  if (numeric) c = Number(a) - Number(b);
  else c = a < b ? -1 : a > b ? 1 : 0;
  switch (op) {
    case '=':
    case '==':
      return c === 0;
    case '<>':
    case '!=':
      return c !== 0;
    case '<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '>':
      return c > 0;
    default:
      return c >= 0;
  }
}

/*
 * Compiles filterLogic text. `resolve(ref)` is called once per field
 * reference ({event|undefined, field, code|undefined}) at compile time and
 * must throw FilterError for unknown names; it returns a getter
 * (row context) -> string used at evaluation. Returns (ctx) -> boolean.
 */
export function compileFilter(src, resolve) {
  const text = String(src);
  if (text.length > 20000) throw new FilterError('filterLogic longer than 20000 characters');
  const toks = tokenize(text);
  let p = 0;
  let depth = 0;
  const peek = () => toks[p];
  const operand = () => {
    const t = toks[p++];
    if (!t) throw new FilterError('missing operand');
    if (t.t === 'str' || t.t === 'num') {
      const v = t.v;
      return () => v;
    }
    if (t.t === 'ref') {
      let event;
      let name = t.v;
      if (peek()?.t === 'ref') {
        event = name;
        name = toks[p++].v;
      }
      const m = /^([a-z][a-z0-9_]*)(?:\(([^)]*)\))?$/.exec(name);
      if (!m) throw new FilterError(`bad field reference [${name}]`);
      return resolve({ event, field: m[1], code: m[2] });
    }
    throw new FilterError('expected a field, string or number');
  };
  const primary = () => {
    if (peek()?.t === '(') {
      p++;
      if (++depth > 100) throw new FilterError('parentheses nested deeper than 100');
      const e = orExpr();
      depth--;
      if (peek()?.t !== ')') throw new FilterError('missing )');
      p++;
      return e;
    }
    const left = operand();
    const opTok = toks[p++];
    if (!opTok || opTok.t !== 'op') throw new FilterError('expected a comparison');
    const right = operand();
    const op = opTok.v;
    return (ctx) => compare(op, left(ctx), right(ctx));
  };
  const andExpr = () => {
    let e = primary();
    while (peek()?.t === 'and') {
      p++;
      const a = e;
      const b = primary();
      e = (ctx) => a(ctx) && b(ctx);
    }
    return e;
  };
  const orExpr = () => {
    let e = andExpr();
    while (peek()?.t === 'or') {
      p++;
      const a = e;
      const b = andExpr();
      e = (ctx) => a(ctx) || b(ctx);
    }
    return e;
  };
  const expr = orExpr();
  if (p !== toks.length) throw new FilterError('unexpected text after the expression');
  return expr;
}
