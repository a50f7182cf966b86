// One emulated REDCap project: structure (from a data dictionary), stored
// records, all-or-nothing record import with REDCap's checks and messages,
// flat record export in REDCap's row and column order, and the structure
// answers (metadata, instruments, events, arms, mappings, repeating setup,
// export field names, project info, next record name, log).
//
// Storage: per record, a map of contexts -> column values, where a context
// is (event, repeating instrument, instance): the non-repeating data of an
// event, one instance of a repeating instrument, or one instance of a
// repeating event. Checkbox columns hold "1" when checked (absent when not).

import { MSG, valueError } from './messages.mjs';
import { COMPLETE_CHOICES, DictionaryError, buildStructure, readDictionaryCsv } from './dictionary.mjs';
import { checkFieldValue } from './validate.mjs';
import { FilterError, compileFilter } from './filter.mjs';

/* An answer REDCap gives as an error: status + message (wrapped per returnFormat). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const RESERVED = new Set(['redcap_event_name', 'redcap_repeat_instrument', 'redcap_repeat_instance', 'redcap_data_access_group']);
// Columns REDCap accepts and ignores on import: the survey identifier and
// the <form>_timestamp survey columns of its own exports (REDCap's UI
// requirement B.3.16.600, vanderbilt-redcap/redcap_rsvc: "ignore survey
// identifier and timestamp fields on all data import spreadsheets"; the C
// validator skips them too).
const IGNORED_SURVEY_COLUMN = 'redcap_survey_identifier';
const MAX_INSTANCE = 32767; // English.ini data_import_tool_286
const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

/* Local wall-clock text "YYYY-MM-DD HH:MM:SS" for epoch ms (REDCap logs in server time). */
export function localStamp(ms, withSeconds = true) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  const s = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
  return withSeconds ? `${s}:${p(d.getSeconds())}` : s;
}

/* Parses "YYYY-MM-DD[ HH:MM[:SS]]" as local time; undefined when malformed. */
export function parseLocalStamp(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(String(text).trim());
  if (!m) return undefined;
  const [y, mo, d, h = '0', mi = '0', s = '0'] = m.slice(1).map((v) => v ?? '0');
  const date = new Date(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  if (date.getMonth() !== Number(mo) - 1 || Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return undefined;
  return date.getTime();
}

const ctxKey = (event, form, instance) => `${event}\t${form}\t${instance}`;

/*
 * REDCap's whole-request error for a (trimmed) record name, or undefined.
 * English.ini data_import_tool_211 (empty), 215/216 (+ & # '), 384 (line
 * breaks, <br>), 233 (more than 100 characters; counted here in Unicode
 * code points like the C validator counts UTF-8 characters — whether PHP
 * counts bytes is not known).
 */
export function recordNameError(name) {
  if (name === '') return MSG.recordEmpty;
  if (/[+&#']/.test(name)) return MSG.badRecordChars(name);
  if (/[\r\n]/.test(name) || /<br/i.test(name)) return MSG.recordLineBreak(name);
  if ([...name].length > 100) return MSG.recordTooLong(name);
  return undefined;
}

export class Project {
  /*
   * def: { name, id, title, dictionary_csv | metadata, repeating,
   *        longitudinal: {arms, events, formEventMapping} (or those three at
   *        top level), autonumbering, form_labels }
   * now: () => epoch ms (the server's clock). Throws DictionaryError.
   */
  constructor(def, now) {
    this.name = String(def.name);
    this.id = def.id;
    this.title = String(def.title ?? def.name);
    this.now = now;
    this.createdAt = now();
    this.autonumbering = !!def.autonumbering;
    this.online = true;
    let meta;
    if (typeof def.dictionary_csv === 'string') meta = readDictionaryCsv(def.dictionary_csv);
    else if (Array.isArray(def.metadata)) meta = def.metadata;
    else throw new DictionaryError('a project needs dictionary_csv (text) or metadata (array)');
    const longitudinal =
      def.longitudinal ??
      (def.events ? { arms: def.arms, events: def.events, formEventMapping: def.formEventMapping ?? def.form_event_mapping } : null);
    this.s = buildStructure(meta, { repeating: def.repeating ?? [], longitudinal, formLabels: def.form_labels });
    this.records = new Map(); // lower-case name -> record
    this.log = [];
  }

  get isLongitudinal() {
    return !!this.s.longitudinal;
  }

  /* Events in export order; classic projects have one unnamed event. */
  events() {
    return this.s.longitudinal ? this.s.longitudinal.events : [{ unique_event_name: '', forms: null, label: '' }];
  }

  isDesignated(ev, formName) {
    return ev.forms === null || ev.forms.has(formName);
  }

  repeatingFormsOf(evName) {
    return this.s.repeatingForms.get(evName) ?? null;
  }

  /* ------------------------------------------------------------ import */

  /*
   * Imports flat rows (objects of trimmed string values), all or nothing.
   * opts: { overwrite, dateFormat, forceAutoNumber }. Returns
   * { count, ids, autoIds, changed, created }. Throws ApiError(400) with
   * REDCap's message; nothing is stored then.
   */
  importRows(rows, opts = {}) {
    const s = this.s;
    const rid = s.recordIdField.name;
    const columns = [];
    const seen = new Set();
    for (const r of rows) {
      for (const k of Object.keys(r)) {
        if (!seen.has(k)) {
          seen.add(k);
          columns.push(k);
        }
      }
    }
    if (rows.length === 0) return { count: 0, ids: [], autoIds: [], changed: 0, created: 0 };
    if (!seen.has(rid)) throw new ApiError(400, MSG.recordIdMissing(rid));

    // Whole-request checks on the columns.
    const usesRepeat = seen.has('redcap_repeat_instrument') || seen.has('redcap_repeat_instance');
    if (usesRepeat && !s.hasRepeating) throw new ApiError(400, MSG.repeatFieldsNotEnabled);
    const ignored = (c) => c === IGNORED_SURVEY_COLUMN || (c.endsWith('_timestamp') && s.formByName.has(c.slice(0, -10)));
    // redcap_event_name is never an unknown field: a classic project takes
    // it and ignores it (REDCap 15.7.6 Classes/Records.php, saveData: the
    // unknown-field list skips redcap_event_name and redcap_data_access_group,
    // and a classic project uses its first event whatever the column says).
    const unknown = columns.filter((c) => {
      if (c === rid || (ignored(c) && !s.columns.get(c))) return false;
      if (RESERVED.has(c)) return false;
      const info = s.columns.get(c);
      return !info;
    });
    if (unknown.length) throw new ApiError(400, MSG.unknownFields(unknown));

    // Whole-request checks on the rows: record names, events, instances.
    const events = this.events();
    const firstEvent = events[0];
    const badEvents = [];
    let nameError;
    let instanceError;
    const prepared = rows.map((row) => {
      const name = (row[rid] ?? '').trim();
      if (!nameError) nameError = recordNameError(name);
      let ev = firstEvent;
      if (this.isLongitudinal) {
        const en = (row.redcap_event_name ?? '').trim();
        if (en !== '') {
          ev = s.longitudinal.eventByName.get(en);
          if (!ev && !badEvents.includes(en)) badEvents.push(en);
        }
      }
      const instrument = (row.redcap_repeat_instrument ?? '').trim();
      const instance = (row.redcap_repeat_instance ?? '').trim();
      // Not an integer, or below 1 ("0" included): REDCap 15.7.6
      // Classes/Records.php (saveData, flat rows) throws 215 + record + 406
      // first; its own "0" text (data_import_tool_279) comes later and is
      // never reached for flat imports.
      if (instance !== '' && instance !== 'new' && !instanceError) {
        if (!/^\d+$/.test(instance) || /^0+$/.test(instance)) instanceError = MSG.badInstance(name, instance);
        else if (instance.length > 5 || Number(instance) > MAX_INSTANCE) instanceError = MSG.instanceTooLarge(name, instance);
      }
      return { row, name, ev, instrument, instance };
    });
    if (nameError) throw new ApiError(400, nameError);
    if (badEvents.length) throw new ApiError(400, MSG.invalidEvents(badEvents));
    if (instanceError) throw new ApiError(400, instanceError);

    // Per-value checks; collect the changes of each row.
    const errors = [];
    const dateFormat = opts.dateFormat ?? 'YMD';
    for (const p of prepared) {
      const { row, name, ev, instrument, instance } = p;
      const evName = ev.unique_event_name;
      const repForms = this.repeatingFormsOf(evName);
      const repEvent = s.repeatingEvents.has(evName);
      let kind;
      if (instrument !== '') {
        if (repEvent) {
          // A repeating event's rows name no instrument (English.ini 255).
          errors.push(valueError(name, 'redcap_repeat_instrument', instrument, MSG.repeatEventInstrument));
          continue;
        }
        if (!repForms || !repForms.has(instrument)) {
          errors.push(valueError(name, 'redcap_repeat_instrument', instrument, MSG.notRepeatingInstrument));
          if (instance !== '') errors.push(valueError(name, 'redcap_repeat_instance', instance, MSG.notRepeatingInstance));
          continue;
        }
        kind = 'form';
      } else if (instance !== '') {
        if (!repEvent) {
          errors.push(valueError(name, 'redcap_repeat_instance', instance, MSG.notRepeatingInstance));
          continue;
        }
        kind = 'event';
      } else {
        kind = repEvent ? 'event' : 'base';
      }
      p.kind = kind;
      p.changes = [];
      for (const col of Object.keys(row)) {
        if (col === rid || RESERVED.has(col)) continue;
        const value = row[col];
        const info = s.columns.get(col);
        if (!info) continue; // an ignored survey column
        const form = info.form;
        // "This field ('...')" quotes the column as imported, x___1 for a
        // checkbox (REDCap 15.7.6 Classes/Records.php, saveData, builds these
        // texts from $fieldname, the import column). The repeating-form text
        // names the form by $Proj->metadata[$fieldname]['form_name'], and a
        // checkbox column is no metadata key: its form comes out as ''.
        if (!this.isDesignated(ev, form.name)) {
          if (value !== '') errors.push(valueError(name, col, value, MSG.notDesignated(col, ev.label)));
          continue;
        }
        if (kind === 'base' && repForms && repForms.has(form.name)) {
          const formName = info.kind === 'checkbox' ? '' : form.name;
          if (value !== '') errors.push(valueError(name, col, value, MSG.repeatingWithoutColumns(col, formName)));
          continue;
        }
        if (kind === 'form' && form.name !== instrument) {
          // Another form's field in a repeating instrument's row: blank is
          // fine (REDCap's own exports carry those columns), a value is an
          // error (English.ini data_import_tool_162 + 260 + 261).
          if (value !== '') errors.push(valueError(name, col, value, MSG.notOnRepeatingInstrument(col, instrument)));
          continue;
        }
        if (info.kind === 'field' && (info.field.type === 'calc' || info.field.type === 'file')) continue; // ignored
        if (value === '') {
          if (opts.overwrite) p.changes.push({ col, form: form.name, value: '', blank: true });
          continue;
        }
        if (info.kind === 'checkbox') {
          if (value !== '0' && value !== '1') {
            errors.push(valueError(name, col, value, MSG.badCheckbox(col)));
            continue;
          }
          p.changes.push({ col, form: form.name, value: value === '1' ? '1' : '' });
        } else if (info.kind === 'complete') {
          if (!COMPLETE_CHOICES.has(value)) {
            errors.push(valueError(name, col, value, MSG.badCategory(col)));
            continue;
          }
          p.changes.push({ col, form: form.name, value, complete: true });
        } else {
          const r = checkFieldValue(info.field, value, dateFormat);
          if (r.error) {
            errors.push(valueError(name, col, value, r.error));
            continue;
          }
          p.changes.push({ col, form: form.name, value: r.value });
        }
      }
    }
    if (errors.length) throw new ApiError(400, errors.join('\n'));

    // Resolve records (names match case-insensitively; trimmed).
    const resolved = new Map(); // lower-case incoming name -> { name, old, isNew, existing }
    let nextAuto = opts.forceAutoNumber ? this.nextRecordNumber() : 0;
    const order = [];
    for (const p of prepared) {
      const low = p.name.toLowerCase();
      let r = resolved.get(low);
      if (!r) {
        if (opts.forceAutoNumber) {
          const name = String(nextAuto++);
          r = { name, old: p.name, isNew: true, existing: null };
        } else {
          const existing = this.records.get(low);
          r = existing ? { name: existing.name, old: p.name, isNew: false, existing } : { name: p.name, old: p.name, isNew: true, existing: null };
        }
        resolved.set(low, r);
        order.push(r);
      }
      p.target = r;
    }

    // Apply (validation is complete, so this cannot fail half-way).
    const now = this.now();
    const sec = Math.floor(now / 1000);
    let created = 0;
    const changedRecords = new Set();
    for (const r of order) {
      if (r.isNew) {
        const rec = { name: r.name, created: now, modified: now, stamps: [sec], ctx: new Map() };
        this.records.set(r.name.toLowerCase(), rec);
        r.existing = rec;
        created++;
        changedRecords.add(rec);
        this.log.push({ ts: now, action: `Create record ${r.name}`, record: r.name });
      }
    }
    const nextInstance = new Map(); // record|event|form -> next number
    for (const p of prepared) {
      const rec = p.target.existing;
      const evName = p.ev.unique_event_name;
      let instance = '';
      let form = '';
      if (p.kind === 'form' || p.kind === 'event') {
        form = p.kind === 'form' ? p.instrument : '';
        if (p.instance === 'new') {
          const k = `${evName}\t${form}`;
          let n = nextInstance.get(k + '\t' + rec.name);
          if (n === undefined) n = this.maxInstance(rec, evName, form) + 1;
          instance = String(n);
          nextInstance.set(k + '\t' + rec.name, n + 1);
        } else {
          instance = p.instance === '' ? '1' : String(Number(p.instance));
          const k = `${evName}\t${form}\t${rec.name}`;
          const n = nextInstance.get(k);
          if (n !== undefined && Number(instance) >= n) nextInstance.set(k, Number(instance) + 1);
        }
      }
      let changed = false;
      // Every row marks the record as present in its event.
      if (p.kind !== 'event' && !rec.ctx.has(ctxKey(evName, '', ''))) {
        rec.ctx.set(ctxKey(evName, '', ''), new Map());
        changed = true;
      }
      // An instance exists while it holds a value (the event's non-repeating
      // context exists as soon as the record is in the event).
      const key = ctxKey(evName, form, instance);
      const stored = rec.ctx.get(key);
      const ctx = stored ?? new Map();
      const formsWithData = new Set();
      const statusGiven = new Set();
      for (const c of p.changes) {
        if (c.complete || (c.blank && this.s.columns.get(c.col).kind === 'complete')) statusGiven.add(c.form);
        const old = ctx.get(c.col) ?? '';
        if (old === c.value) continue;
        if (c.value === '') ctx.delete(c.col);
        else ctx.set(c.col, c.value);
        changed = true;
        if (c.value !== '' && !c.complete) formsWithData.add(c.form);
      }
      // Data imported into a form without a status makes it Incomplete (0).
      for (const f of formsWithData) {
        const col = this.s.formByName.get(f).completeField;
        if (!statusGiven.has(f) && !ctx.has(col)) ctx.set(col, '0');
      }
      if (instance !== '') {
        if (!stored && ctx.size > 0) rec.ctx.set(key, ctx);
        else if (stored && ctx.size === 0) {
          rec.ctx.delete(key);
          changed = true;
        }
      }
      if (changed) changedRecords.add(rec);
    }
    for (const rec of changedRecords) {
      rec.modified = now;
      if (rec.stamps[rec.stamps.length - 1] !== sec) rec.stamps.push(sec);
      if (rec.created !== now) this.log.push({ ts: now, action: `Update record ${rec.name}`, record: rec.name });
    }
    return {
      count: order.length,
      ids: order.map((r) => r.name),
      autoIds: order.map((r) => `${r.name},${r.old}`),
      changed: changedRecords.size,
      created,
    };
  }

  maxInstance(rec, evName, form) {
    let max = 0;
    const prefix = `${evName}\t${form}\t`;
    for (const k of rec.ctx.keys()) {
      if (k.startsWith(prefix)) {
        const n = Number(k.slice(prefix.length));
        if (n > max) max = n;
      }
    }
    return max;
  }

  /* The next numeric record name (highest integer name + 1, or 1). */
  nextRecordNumber() {
    let max = 0;
    for (const r of this.records.values()) {
      if (/^\d+$/.test(r.name)) max = Math.max(max, Number(r.name));
    }
    return max + 1;
  }

  /* ------------------------------------------------------------ export */

  /*
   * Validates names given to an export parameter; throws ApiError(400)
   * listing the unknown ones ("fields", "forms", "events").
   */
  checkNames(param, names, known) {
    const bad = names.filter((n) => !known(n));
    if (bad.length) throw new ApiError(400, MSG.invalidParamValues(param, bad));
  }

  /*
   * Plans a flat export: { columns: [{name, kind, form, field, code}],
   * rows: [{rec, ev, kind, form, instance, ctx, base}] } for the given
   * parameters (see emulator README). Throws ApiError(400).
   */
  planExport(q) {
    const s = this.s;
    const rid = s.recordIdField.name;
    const fields = q.fields ?? [];
    const forms = q.forms ?? [];
    const events = q.events ?? [];
    this.checkNames('fields', fields, (n) => {
      const f = s.byName.get(n);
      return (f && f.type !== 'descriptive') || s.forms.some((fm) => fm.completeField === n);
    });
    this.checkNames('forms', forms, (n) => s.formByName.has(n));
    if (this.isLongitudinal) this.checkNames('events', events, (n) => s.longitudinal.eventByName.has(n));

    // Columns, in REDCap's order: record id, event, repeat columns, then
    // each form's fields (checkboxes expanded) and its status field.
    const all = fields.length === 0 && forms.length === 0;
    const wanted = new Set(fields);
    for (const fn of forms) {
      const fm = s.formByName.get(fn);
      for (const f of fm.fields) wanted.add(f.name);
      wanted.add(fm.completeField);
    }
    const ridSelected = all || wanted.has(rid);
    const columns = [];
    if (ridSelected) {
      columns.push({ name: rid, kind: 'rid' });
      if (this.isLongitudinal) columns.push({ name: 'redcap_event_name', kind: 'event' });
      if (s.hasRepeating) {
        columns.push({ name: 'redcap_repeat_instrument', kind: 'instrument' });
        columns.push({ name: 'redcap_repeat_instance', kind: 'instance' });
      }
    }
    const selectedForms = new Set();
    for (const fm of s.forms) {
      for (const f of fm.fields) {
        if (f === s.recordIdField || f.type === 'descriptive') continue;
        if (!all && !wanted.has(f.name)) continue;
        selectedForms.add(fm.name);
        if (f.type === 'checkbox') {
          for (const c of f.checkboxColumns) columns.push({ name: c.column, kind: 'checkbox', form: fm, field: f, code: c.code, choice: c.label });
        } else {
          columns.push({ name: f.name, kind: 'field', form: fm, field: f });
        }
      }
      if (all || wanted.has(fm.completeField)) {
        selectedForms.add(fm.name);
        columns.push({ name: fm.completeField, kind: 'complete', form: fm });
      }
    }
    if (ridSelected) selectedForms.add(s.recordIdField.form);

    // Records.
    let recs;
    if (q.records && q.records.length) {
      // Unknown names are left out without an error, as REDCap does.
      const want = new Set(q.records.map((r) => String(r).trim().toLowerCase()));
      recs = [...want].map((low) => this.records.get(low)).filter(Boolean);
    } else {
      recs = [...this.records.values()];
    }
    if (q.dateRangeBegin !== undefined || q.dateRangeEnd !== undefined) {
      const begin = q.dateRangeBegin === undefined ? -Infinity : q.dateRangeBegin / 1000;
      const end = q.dateRangeEnd === undefined ? Infinity : q.dateRangeEnd / 1000;
      recs = recs.filter((r) => r.stamps.some((t) => t > begin && t < end));
    }
    recs.sort((a, b) => collator.compare(a.name, b.name));

    // Events.
    let evs = this.events();
    if (this.isLongitudinal && events.length) evs = evs.filter((e) => events.includes(e.unique_event_name));

    const filter = q.filterLogic ? this.compileFilterLogic(q.filterLogic) : null;
    const rows = [];
    let recordCount = 0;
    for (const rec of recs) {
      const recRows = [];
      for (const ev of evs) {
        const evRows = this.rowsOfEvent(rec, ev);
        if (evRows.length === 0) continue;
        if (filter && this.isLongitudinal && !evRows.some((r) => filter(r))) continue;
        recRows.push(...evRows);
      }
      if (recRows.length === 0) continue;
      if (filter && !this.isLongitudinal && !recRows.some((r) => filter(r))) continue;
      let any = false;
      for (const r of recRows) {
        if (this.rowSelected(r, columns, selectedForms, ridSelected, all)) {
          rows.push(r);
          any = true;
        }
      }
      if (any) recordCount++;
    }
    return { columns, rows, recordCount };
  }

  /* The stored rows of one record in one event, in export order. */
  rowsOfEvent(rec, ev) {
    const evName = ev.unique_event_name;
    const out = [];
    const base = rec.ctx.get(ctxKey(evName, '', ''));
    if (this.s.repeatingEvents.has(evName)) {
      const inst = [];
      const prefix = ctxKey(evName, '', '');
      for (const [k, ctx] of rec.ctx) {
        if (k.startsWith(prefix) && k.length > prefix.length) inst.push({ n: Number(k.slice(prefix.length)), ctx });
      }
      inst.sort((a, b) => a.n - b.n);
      for (const i of inst) out.push({ rec, ev, kind: 'event', form: null, instance: i.n, ctx: i.ctx, base: i.ctx });
      return out;
    }
    if (!base) return out;
    out.push({ rec, ev, kind: 'base', form: null, instance: '', ctx: base, base });
    const rep = this.repeatingFormsOf(evName);
    if (rep) {
      for (const fm of this.s.forms) {
        if (!rep.has(fm.name)) continue;
        const prefix = ctxKey(evName, fm.name, '');
        const inst = [];
        for (const [k, ctx] of rec.ctx) if (k.startsWith(prefix)) inst.push({ n: Number(k.slice(prefix.length)), ctx });
        inst.sort((a, b) => a.n - b.n);
        for (const i of inst) out.push({ rec, ev, kind: 'form', form: fm, instance: i.n, ctx: i.ctx, base });
      }
    }
    return out;
  }

  /* Whether a form's columns carry values in a row (else they are blank). */
  applies(row, form) {
    if (!this.isDesignated(row.ev, form.name)) return false;
    if (row.kind === 'form') return row.form === form;
    if (row.kind === 'event') return true;
    const rep = this.repeatingFormsOf(row.ev.unique_event_name);
    return !(rep && rep.has(form.name));
  }

  rowSelected(row, columns, selectedForms, ridSelected, all) {
    if (all) return true;
    if (row.kind === 'form') return selectedForms.has(row.form.name);
    if (ridSelected) return true;
    for (const c of columns) {
      if (!c.form || !this.applies(row, c.form)) continue;
      const v = row.ctx.get(c.name);
      if (v !== undefined && v !== '' && !(c.kind === 'complete' && v === '0')) return true;
    }
    return false;
  }

  /* The raw or label value of one column in one row. */
  cellValue(row, col, label, checkboxLabel, blankGray) {
    switch (col.kind) {
      case 'rid':
        return row.rec.name;
      case 'event':
        return label ? row.ev.label : row.ev.unique_event_name;
      case 'instrument':
        return row.kind === 'form' ? (label ? row.form.label : row.form.name) : '';
      case 'instance':
        return row.kind === 'form' || row.kind === 'event' ? String(row.instance) : '';
      default:
        break;
    }
    if (!this.applies(row, col.form)) return '';
    const v = row.ctx.get(col.name);
    if (col.kind === 'checkbox') {
      if (!label) return v === '1' ? '1' : '0';
      if (checkboxLabel) return v === '1' ? col.choice : '';
      return v === '1' ? 'Checked' : 'Unchecked';
    }
    if (col.kind === 'complete') {
      const raw = v ?? (blankGray ? '' : '0');
      return label && raw !== '' ? COMPLETE_CHOICES.get(raw) ?? raw : raw;
    }
    if (v === undefined) return '';
    if (label && col.field.choices && col.field.type !== 'checkbox') return col.field.choices.get(v) ?? v;
    return v;
  }

  /* Header text for a column with rawOrLabelHeaders=label (CSV exports). */
  columnLabel(col) {
    switch (col.kind) {
      case 'rid':
        return this.s.recordIdField.label;
      case 'event':
        return 'Event Name';
      case 'instrument':
        return 'Repeat Instrument';
      case 'instance':
        return 'Repeat Instance';
      case 'complete':
        return 'Complete?';
      case 'checkbox':
        return `${col.field.label} (choice=${col.choice})`;
      default:
        return col.field.label;
    }
  }

  compileFilterLogic(text) {
    const s = this.s;
    const resolve = ({ event, field, code }) => {
      let ev;
      if (event !== undefined) {
        if (!this.isLongitudinal) throw new FilterError('event prefix on a classic project');
        ev = s.longitudinal.eventByName.get(event);
        if (!ev) throw new FilterError(`unknown event ${event}`);
      }
      let col = field;
      const f = s.byName.get(field);
      const complete = s.forms.find((fm) => fm.completeField === field);
      if (f && f.type === 'checkbox') {
        if (code === undefined) throw new FilterError(`checkbox ${field} needs a (code)`);
        const c = f.checkboxColumns.find((x) => x.code === code);
        if (!c) throw new FilterError(`unknown code ${code}`);
        col = c.column;
      } else if (!f && !complete) {
        throw new FilterError(`unknown field ${field}`);
      } else if (code !== undefined) {
        throw new FilterError(`${field} is not a checkbox`);
      }
      const rid = f === s.recordIdField;
      const isCheckbox = f && f.type === 'checkbox';
      return (row) => {
        if (rid) return row.rec.name;
        let ctx = row.ctx;
        if (ev) {
          ctx = row.rec.ctx.get(ctxKey(ev.unique_event_name, '', '')) ?? new Map();
        } else if (!ctx.has(col) && row.base) {
          ctx = row.base;
        }
        const v = ctx.get(col);
        if (isCheckbox) return v === '1' ? '1' : '0';
        return v ?? '';
      };
    };
    try {
      return compileFilter(text, resolve);
    } catch (err) {
      if (err instanceof FilterError) throw new ApiError(400, MSG.invalidParam('filterLogic'));
      throw err;
    }
  }

  /* ------------------------------------------------------ other content */

  /* Metadata rows (18 keys each), optionally only some fields/forms. */
  metadata(fields = [], forms = []) {
    const s = this.s;
    this.checkNames('fields', fields, (n) => s.byName.has(n));
    this.checkNames('forms', forms, (n) => s.formByName.has(n));
    return s.fields
      .filter((f) => (fields.length === 0 && forms.length === 0) || fields.includes(f.name) || forms.includes(f.form))
      .map((f) => ({ ...f.meta }));
  }

  instruments() {
    return this.s.forms.map((f) => ({ instrument_name: f.name, instrument_label: f.label }));
  }

  /* Export field names (calc, file and descriptive fields left out). */
  exportFieldNames(field) {
    const s = this.s;
    if (field !== undefined && field !== '') this.checkNames('field', [field], (n) => s.byName.has(n));
    const out = [];
    for (const f of s.fields) {
      if (field && f.name !== field) continue;
      if (f.type === 'calc' || f.type === 'file' || f.type === 'descriptive') continue;
      if (f.type === 'checkbox') {
        for (const c of f.checkboxColumns) out.push({ original_field_name: f.name, choice_value: c.code, export_field_name: c.column });
      } else {
        out.push({ original_field_name: f.name, choice_value: '', export_field_name: f.name });
      }
    }
    return out;
  }

  eventsList(arms = []) {
    if (!this.isLongitudinal) throw new ApiError(400, MSG.classicEvents);
    return this.s.longitudinal.events
      .filter((e) => arms.length === 0 || arms.includes(String(e.arm_num)))
      .map((e) => ({
        event_name: e.event_name,
        arm_num: e.arm_num,
        unique_event_name: e.unique_event_name,
        custom_event_label: e.custom_event_label,
        event_id: e.event_id,
      }));
  }

  armsList(arms = []) {
    if (!this.isLongitudinal) throw new ApiError(400, MSG.classicArms);
    return this.s.longitudinal.arms.filter((a) => arms.length === 0 || arms.includes(String(a.arm_num))).map((a) => ({ ...a }));
  }

  formEventMapping(arms = []) {
    if (!this.isLongitudinal) throw new ApiError(400, MSG.classicMappings);
    const out = [];
    for (const e of this.s.longitudinal.events) {
      if (arms.length && !arms.includes(String(e.arm_num))) continue;
      for (const fm of this.s.forms) if (e.forms.has(fm.name)) out.push({ arm_num: e.arm_num, unique_event_name: e.unique_event_name, form: fm.name });
    }
    return out;
  }

  repeatingFormsEvents() {
    const out = [];
    if (!this.isLongitudinal) {
      for (const [form, label] of this.s.repeatingForms.get('') ?? []) out.push({ form_name: form, custom_form_label: label });
      return out;
    }
    for (const e of this.s.longitudinal.events) {
      if (this.s.repeatingEvents.has(e.unique_event_name)) out.push({ event_name: e.unique_event_name, form_name: '', custom_form_label: '' });
      for (const [form, label] of this.s.repeatingForms.get(e.unique_event_name) ?? []) {
        out.push({ event_name: e.unique_event_name, form_name: form, custom_form_label: label });
      }
    }
    return out;
  }

  /* Project information (REDCap API "Export Project Info" attributes). */
  info() {
    return {
      project_id: this.id,
      project_title: this.title,
      creation_time: localStamp(this.createdAt),
      production_time: '',
      in_production: 0,
      project_language: 'English',
      purpose: 0,
      purpose_other: '',
      project_notes: '',
      custom_record_label: '',
      secondary_unique_field: '',
      is_longitudinal: this.isLongitudinal ? 1 : 0,
      has_repeating_instruments_or_events: this.s.hasRepeating ? 1 : 0,
      surveys_enabled: 0,
      scheduling_enabled: 0,
      record_autonumbering_enabled: this.autonumbering ? 1 : 0,
      randomization_enabled: 0,
      ddp_enabled: 0,
      project_irb_number: '',
      project_grant_number: '',
      project_pi_firstname: '',
      project_pi_lastname: '',
      display_today_now_button: 1,
      missing_data_codes: '',
      external_modules: '',
      bypass_branching_erase_field_prompt: 0,
    };
  }

  logEntries(record) {
    return this.log
      .filter((e) => !record || e.record === record)
      .map((e) => ({ timestamp: localStamp(e.ts, false), username: 'api_user', action: e.action.split(' ').slice(0, 2).join(' '), details: e.action, record: e.record }))
      .reverse();
  }

  /* Raw stored data for /__control/records. */
  dump() {
    const plan = this.planExport({});
    const recs = [...this.records.values()].sort((a, b) => collator.compare(a.name, b.name));
    return {
      project: this.name,
      columns: plan.columns.map((c) => c.name),
      rows: plan.rows.map((r) => Object.fromEntries(plan.columns.map((c) => [c.name, this.cellValue(r, c, false, false, true)]))),
      records: recs.map((r) => ({ record: r.name, created: localStamp(r.created), modified: localStamp(r.modified), created_ms: r.created, modified_ms: r.modified })),
    };
  }
}
