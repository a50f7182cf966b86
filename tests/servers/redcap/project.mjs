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
const POSITIVE = /^(?!0+$)\d+$/;
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
 * REDCap's whole-request error for a (trimmed) record name, up to the
 * checks that come after the event name, or undefined. REDCap 15.7.6
 * Classes/Records.php, saveData, flat rows, in that order: blank
 * (data_import_tool_212 + record id field + 213; an EAV import says 211),
 * longer than 100 bytes (PHP strlen; 233), a line break once br2nl() made
 * its <br> tags line breaks (384, quoting the name so turned). The +&#'
 * check comes after the event name's.
 */
export function recordNameError(name, rid, eav = false) {
  if (name === '') return eav ? MSG.recordEmpty : MSG.recordIdMissing(rid);
  if (Buffer.byteLength(name) > 100) return MSG.recordTooLong(name);
  const br = br2nl(name);
  if (/[\r\n]/.test(br)) return MSG.recordLineBreak(br);
  return undefined;
}

/* REDCap's br2nl() (5.2.3 Config/init_functions.php; UNVERIFIED for 15.7.6). */
function br2nl(s) {
  return s.replace(/<br[ \t\n\v\f\r]*\/?>/gi, '\n');
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

  /*
   * REDCap 15.7.6 Classes/Records.php, saveData, "$isRepeatFormReally": an
   * instrument is named and some column of the row is a field of a form
   * that repeats in the row's event, with a value or on that instrument.
   */
  repeatFormReally(row, ev, instrument, rid) {
    if (instrument === '') return false;
    const rep = this.repeatingFormsOf(ev.unique_event_name);
    for (const col of Object.keys(row)) {
      if (col === rid || col === 'redcap_repeat_instance' || col === 'redcap_repeat_instrument') continue;
      const info = this.s.columns.get(col);
      if (!info || !rep || !rep.has(info.form.name)) continue;
      if (row[col] === '' && info.form.name !== instrument) continue;
      return true;
    }
    return false;
  }

  /* ------------------------------------------------------------ import */

  /*
   * Imports flat rows (objects of trimmed string values), all or nothing.
   * opts: { overwrite, dateFormat, forceAutoNumber, eav (type=eav: the
   * rows were EAV items) }. Returns
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

    // The order of REDCap 15.7.6's whole-request errors (Classes/Records.php,
    // saveData): repeat columns on a project without repeating setup (REDCap
    // looks at the first row only; the emulator at every row -- stricter,
    // as the C validator, which checks each row), then each row in turn
    // (record name, event name, instance, repeat columns), then unknown
    // columns, unknown events, data access groups.
    const usesRepeat = seen.has('redcap_repeat_instrument') || seen.has('redcap_repeat_instance');
    if (usesRepeat && !s.hasRepeating) throw new ApiError(400, MSG.repeatFieldsNotEnabled);
    const firstEvent = this.events()[0];
    const prepared = rows.map((row) => {
      const name = (row[rid] ?? '').trim();
      const nameError = recordNameError(name, rid, opts.eav);
      if (nameError) throw new ApiError(400, nameError);
      let ev = firstEvent;
      let shownEvent = firstEvent.unique_event_name;
      if (this.isLongitudinal && row.redcap_event_name !== undefined) {
        shownEvent = row.redcap_event_name.trim();
        if (shownEvent === '') throw new ApiError(400, MSG.eventNameMissing);
        ev = s.longitudinal.eventByName.get(shownEvent); // unknown: refused below
      }
      if (/[+&#']/.test(name)) throw new ApiError(400, MSG.badRecordChars(name));
      const instrument = (row.redcap_repeat_instrument ?? '').trim();
      const instance = (row.redcap_repeat_instance ?? '').trim();
      // Not an integer, or below 1 ("0" included): 215 + record + 406; its
      // own "0" text (data_import_tool_279) comes later and is never reached
      // for flat imports.
      if (instance !== '' && instance !== 'new' && !POSITIVE.test(instance)) throw new ApiError(400, MSG.badInstance(name, instance));
      // A repeating event's row without a redcap_repeat_instance column.
      if (ev && row.redcap_repeat_instance === undefined && this.isLongitudinal && s.repeatingEvents.has(ev.unique_event_name)) {
        throw new ApiError(400, MSG.repeatingEventNoInstance(name, shownEvent));
      }
      // A classic project: a numeric instance without an instrument.
      if (!this.isLongitudinal && s.hasRepeating && POSITIVE.test(instance) && instrument === '') {
        throw new ApiError(400, MSG.instanceNoInstrument(name, instance));
      }
      return { row, name, ev, shownEvent, instrument, instance };
    });

    // redcap_event_name and redcap_data_access_group are never unknown
    // fields: a classic project takes redcap_event_name and ignores it
    // (saveData's unknown-field list skips both; a classic project uses its
    // first event whatever the column says).
    const ignored = (c) => c === IGNORED_SURVEY_COLUMN || (c.endsWith('_timestamp') && s.formByName.has(c.slice(0, -10)));
    const unknown = columns.filter((c) => c !== rid && !RESERVED.has(c) && !s.columns.get(c) && !ignored(c));
    if (unknown.length) throw new ApiError(400, MSG.unknownFields(unknown));
    const badEvents = [...new Set(prepared.filter((p) => !p.ev).map((p) => p.shownEvent))];
    if (badEvents.length) throw new ApiError(400, MSG.invalidEvents(badEvents));
    // The emulator has no data access groups: every name is invalid (220).
    const dags = [...new Set(rows.map((r) => (r.redcap_data_access_group ?? '').trim()).filter((g) => g !== ''))];
    if (dags.length) throw new ApiError(400, MSG.invalidDags(dags));

    // Per-value checks: one line per column, the last message REDCap would
    // give it (saveData overwrites a column's message: a placement error
    // replaces a value error). Collect the changes of each row.
    const errors = [];
    const dateFormat = opts.dateFormat ?? 'YMD';
    for (const p of prepared) {
      const { row, name, ev, shownEvent, instrument: I, instance: N } = p;
      const repForms = this.repeatingFormsOf(ev.unique_event_name);
      const repEvent = s.hasRepeating && s.repeatingEvents.has(ev.unique_event_name);
      const repForm = !repEvent && I !== '' && !!repForms && repForms.has(I);
      // Where the row is saved: an instance of a repeating instrument (an
      // instrument AND an instance), an instance of a repeating event, or
      // the event's non-repeating data.
      p.kind = repForm && N !== '' ? 'form' : repEvent ? 'event' : 'base';
      p.changes = [];
      for (const col of Object.keys(row)) {
        if (col === rid || col === 'redcap_event_name' || col === 'redcap_data_access_group') continue;
        const value = row[col];
        if (col === 'redcap_repeat_instrument') {
          if (!s.hasRepeating || I === '') continue;
          // An instrument on a repeating event's row; one that does not repeat here.
          if (repEvent) errors.push(valueError(name, col, I, MSG.repeatEventInstrument(shownEvent)));
          else if (!repForm) errors.push(valueError(name, col, I, MSG.notRepeatingInstrument));
          continue;
        }
        if (col === 'redcap_repeat_instance') {
          if (!s.hasRepeating || N === '') continue;
          let msg;
          if (N !== 'new' && Number(N) > MAX_INSTANCE) {
            msg = MSG.instanceRange(this.isLongitudinal ? `redcap_event_name="${shownEvent}"` : `redcap_repeat_instrument="${I}"`);
          }
          // An instance where nothing repeats (saveData's
          // "isRepeatFormReally"; not checked with overwrite); replaces the other.
          if (!opts.overwrite && !repEvent && !this.repeatFormReally(row, ev, I, rid)) msg = MSG.notRepeatingInstance;
          if (msg) errors.push(valueError(name, col, N, msg));
          continue;
        }
        const info = s.columns.get(col);
        if (!info) {
          // redcap_survey_identifier is no field: REDCap checks it like one
          // of form '' -- only the repeating-instrument check can hit it.
          // <form>_timestamp columns are skipped before any check.
          if (col === IGNORED_SURVEY_COLUMN && value !== '' && s.hasRepeating && I !== '' && N !== '') {
            errors.push(valueError(name, col, value, MSG.notOnRepeatingInstrument(col, I)));
          }
          continue;
        }
        const form = info.form;
        const designated = this.isDesignated(ev, form.name);
        const field = info.kind === 'field' ? info.field : null;
        if (value === '') {
          // Blank: never an error; with overwrite it erases (where it can be saved).
          const placed = designated && !(p.kind === 'base' && repForms && repForms.has(form.name)) && !(p.kind === 'form' && form.name !== I);
          if (opts.overwrite && placed && !(field && (field.type === 'calc' || field.type === 'file'))) {
            p.changes.push({ col, form: form.name, value: '', blank: true });
          }
          continue;
        }
        if (field && field.type === 'calc') continue; // skipped with a warning, before any other check
        // A checkbox "0" is what REDCap holds for a box never checked: the
        // column keeps its status and is not checked; only the form/event
        // check below sees it (and not with overwrite). File fields are not
        // imported; only that check sees them too.
        const boxZero = info.kind === 'checkbox' && value === '0';
        const file = field && field.type === 'file';
        let error;
        let shown = value;
        let change;
        if (!boxZero && !file) {
          if (info.kind === 'checkbox') {
            if (value !== '1') error = MSG.badCheckbox(col);
            else change = { col, form: form.name, value: '1' };
          } else if (info.kind === 'complete') {
            if (!COMPLETE_CHOICES.has(value)) error = MSG.badCategory(col);
            else change = { col, form: form.name, value, complete: true };
          } else {
            const r = checkFieldValue(field, value, dateFormat);
            if (r.error) {
              error = r.error;
              shown = r.shown ?? value;
            } else change = { col, form: form.name, value: r.value };
          }
          // "This field ('...')" quotes the column as imported, x___1 for a
          // checkbox. The repeating-form text names the form by
          // $Proj->metadata[$fieldname]['form_name'], and a checkbox column
          // is no metadata key: its form comes out as ''.
          if (s.hasRepeating && I !== '' && N !== '' && I !== form.name) error = MSG.notOnRepeatingInstrument(col, I);
          else if (s.hasRepeating && (I === '' || N === '') && repForms && repForms.has(form.name)) {
            error = MSG.repeatingWithoutColumns(col, info.kind === 'checkbox' ? '' : form.name);
          }
        } else if (boxZero) {
          change = { col, form: form.name, value: '' }; // unchecks a box checked here, else nothing
        }
        if (this.isLongitudinal && !(opts.overwrite && boxZero) && !designated) error = MSG.notDesignated(col, ev.label);
        if (error) errors.push(valueError(name, col, shown, error));
        else if (change && designated) p.changes.push(change);
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
