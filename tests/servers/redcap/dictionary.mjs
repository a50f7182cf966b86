// Data dictionaries and project structure for the REDCap emulator: reads a
// REDCap data-dictionary CSV (the 18 columns users download/upload, or the
// same columns under their API metadata names), checks it the way REDCap's
// dictionary upload does for the things the emulator relies on, and builds
// the structure: fields, forms, choices, checkbox export names, arms, events,
// form/event designations, repeating instruments and events.

import { parseCsv } from './csv.mjs';

/* The 18 metadata columns, in REDCap's order (API metadata export names). */
export const METADATA_COLUMNS = [
  'field_name',
  'form_name',
  'section_header',
  'field_type',
  'field_label',
  'select_choices_or_calculations',
  'field_note',
  'text_validation_type_or_show_slider_number',
  'text_validation_min',
  'text_validation_max',
  'identifier',
  'branching_logic',
  'required_field',
  'custom_alignment',
  'question_number',
  'matrix_group_name',
  'matrix_ranking',
  'field_annotation',
];

/* The same columns as headed in a downloaded data dictionary CSV. */
export const DICTIONARY_HEADERS = [
  'Variable / Field Name',
  'Form Name',
  'Section Header',
  'Field Type',
  'Field Label',
  'Choices, Calculations, OR Slider Labels',
  'Field Note',
  'Text Validation Type OR Show Slider Number',
  'Text Validation Min',
  'Text Validation Max',
  'Identifier?',
  'Branching Logic (Show field only if...)',
  'Required Field?',
  'Custom Alignment',
  'Question Number (surveys only)',
  'Matrix Group Name',
  'Matrix Ranking?',
  'Field Annotation',
];

export const FIELD_TYPES = new Set([
  'text',
  'notes',
  'dropdown',
  'radio',
  'checkbox',
  'yesno',
  'truefalse',
  'calc',
  'file',
  'slider',
  'descriptive',
  'sql',
]);

export const COMPLETE_CHOICES = new Map([
  ['0', 'Incomplete'],
  ['1', 'Unverified'],
  ['2', 'Complete'],
]);
const YESNO = new Map([
  ['1', 'Yes'],
  ['0', 'No'],
]);
const TRUEFALSE = new Map([
  ['1', 'True'],
  ['0', 'False'],
]);

export class DictionaryError extends Error {}

/*
 * A checkbox choice code as it appears in export column names: lower-cased,
 * "-" and "." written as "_" (REDCap: Project::getExtendedCheckboxCodeFormatted;
 * ../../shared/REDCAP-API.md).
 */
export function checkboxCode(code) {
  return String(code).toLowerCase().replace(/[-.]/g, '_');
}

/*
 * Parses "1, Female | 2, Male" into a Map code -> label (codes and labels
 * trimmed; a choice without a comma has code = label).
 */
export function parseChoices(text) {
  const map = new Map();
  if (!text) return map;
  for (const part of String(text).split('|')) {
    const p = part.trim();
    if (!p) continue;
    const comma = p.indexOf(',');
    const code = (comma < 0 ? p : p.slice(0, comma)).trim();
    const label = (comma < 0 ? p : p.slice(comma + 1)).trim();
    if (code !== '') map.set(code, label);
  }
  return map;
}

/* "my_first_form" -> "My First Form" (the label REDCap gives a new form). */
export function formLabelFromName(name) {
  return name
    .split('_')
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join(' ');
}

/*
 * Reads data-dictionary CSV text into metadata rows (objects keyed by the 18
 * API column names). Accepts the download headers or the API names, in any
 * order; missing optional columns are blank. Throws DictionaryError.
 */
export function readDictionaryCsv(text) {
  let rows;
  try {
    rows = parseCsv(String(text));
  } catch (err) {
    throw new DictionaryError(`dictionary CSV: ${err.message}`);
  }
  if (rows.length === 0) throw new DictionaryError('dictionary CSV is empty');
  const header = rows[0].map((h) => h.trim());
  const index = new Map();
  header.forEach((h, i) => {
    let k = DICTIONARY_HEADERS.indexOf(h);
    if (k < 0) k = METADATA_COLUMNS.indexOf(h);
    if (k < 0) throw new DictionaryError(`dictionary CSV: unknown column "${h}"`);
    index.set(METADATA_COLUMNS[k], i);
  });
  for (const required of ['field_name', 'form_name', 'field_type', 'field_label']) {
    if (!index.has(required)) throw new DictionaryError(`dictionary CSV: missing column ${required}`);
  }
  return rows.slice(1).map((r) => {
    const o = {};
    for (const c of METADATA_COLUMNS) {
      const i = index.get(c);
      o[c] = i === undefined ? '' : (r[i] ?? '');
    }
    return o;
  });
}

const NAME_RE = /^[a-z][a-z0-9_]*$/;

/*
 * Builds the project structure from metadata rows (from readDictionaryCsv or
 * an API-style metadata array) and the options of a project definition:
 *   { repeating, longitudinal: {arms, events, formEventMapping}, formLabels }
 * Returns the structure; throws DictionaryError with a clear reason.
 */
export function buildStructure(metadataRows, options = {}) {
  if (!Array.isArray(metadataRows) || metadataRows.length === 0) {
    throw new DictionaryError('the dictionary has no fields');
  }
  const fields = [];
  const byName = new Map();
  const forms = [];
  const formByName = new Map();
  let lastForm = null;
  for (const raw of metadataRows) {
    const meta = {};
    for (const c of METADATA_COLUMNS) meta[c] = raw?.[c] === undefined || raw[c] === null ? '' : String(raw[c]).trim();
    const name = meta.field_name;
    if (!NAME_RE.test(name) || name.length > 100) throw new DictionaryError(`invalid field name "${name}"`);
    if (byName.has(name)) throw new DictionaryError(`duplicate field name "${name}"`);
    if (!NAME_RE.test(meta.form_name) || meta.form_name.length > 100) {
      throw new DictionaryError(`invalid form name "${meta.form_name}" for field ${name}`);
    }
    if (!FIELD_TYPES.has(meta.field_type)) throw new DictionaryError(`invalid field type "${meta.field_type}" for field ${name}`);
    if (meta.form_name !== lastForm) {
      if (formByName.has(meta.form_name)) {
        throw new DictionaryError(`the fields of form ${meta.form_name} are not contiguous`);
      }
      const f = {
        name: meta.form_name,
        label: options.formLabels?.[meta.form_name] ?? formLabelFromName(meta.form_name),
        fields: [],
        completeField: `${meta.form_name}_complete`,
      };
      forms.push(f);
      formByName.set(f.name, f);
      lastForm = meta.form_name;
    }
    const type = meta.field_type;
    let choices = null;
    if (type === 'radio' || type === 'dropdown' || type === 'checkbox') {
      choices = parseChoices(meta.select_choices_or_calculations);
      if (choices.size === 0) throw new DictionaryError(`field ${name} (${type}) has no choices`);
    } else if (type === 'yesno') choices = YESNO;
    else if (type === 'truefalse') choices = TRUEFALSE;
    const field = {
      name,
      form: meta.form_name,
      type,
      label: meta.field_label,
      validation: type === 'text' ? meta.text_validation_type_or_show_slider_number : '',
      min: meta.text_validation_min,
      max: meta.text_validation_max,
      forceMinMax: /@FORCE-MINMAX\b/.test(meta.field_annotation),
      choices,
      checkboxColumns: null,
      meta,
    };
    if (type === 'checkbox') {
      field.checkboxColumns = [...choices].map(([code, label]) => ({
        code,
        label,
        column: `${name}___${checkboxCode(code)}`,
      }));
    }
    fields.push(field);
    byName.set(name, field);
    formByName.get(meta.form_name).fields.push(field);
  }
  const recordIdField = fields[0];
  if (recordIdField.type !== 'text') throw new DictionaryError('the first field (the record id) must be a text field');

  for (const f of forms) {
    if (byName.has(f.completeField)) {
      throw new DictionaryError(`field ${f.completeField} clashes with form ${f.name}'s status field`);
    }
  }

  /* Export/import columns: checkbox fields expand, status fields per form. */
  const columns = new Map(); // column -> { field, kind: 'field'|'checkbox'|'complete', form, code? }
  for (const f of forms) {
    for (const field of f.fields) {
      if (field.type === 'descriptive') continue;
      if (field.type === 'checkbox') {
        for (const c of field.checkboxColumns) columns.set(c.column, { kind: 'checkbox', field, form: f, code: c.code });
      } else {
        columns.set(field.name, { kind: 'field', field, form: f });
      }
    }
    columns.set(f.completeField, { kind: 'complete', field: null, form: f });
  }

  const longitudinal = options.longitudinal ? buildEvents(options.longitudinal, formByName) : null;
  const repeating = buildRepeating(options.repeating ?? [], longitudinal, formByName);
  return { fields, byName, forms, formByName, recordIdField, columns, longitudinal, ...repeating };
}

/* REDCap-style unique event name: "Visit 1" in arm 1 -> "visit_1_arm_1". */
export function uniqueEventName(eventName, armNum, taken) {
  let base = String(eventName)
    .toLowerCase()
    .replace(/\s+/g, '_')
    .replace(/[^a-z0-9_]/g, '')
    .slice(0, 18)
    .replace(/_+$/, '');
  if (!base) base = 'event';
  let name = `${base}_arm_${armNum}`;
  for (let k = 0; taken.has(name); k++) name = `${base}${String.fromCharCode(98 + (k % 25))}_arm_${armNum}`;
  return name;
}

function buildEvents(spec, formByName) {
  const arms = (spec.arms ?? [{ arm_num: 1, name: 'Arm 1' }]).map((a) => {
    const num = Number(a.arm_num);
    if (!Number.isInteger(num) || num < 1) throw new DictionaryError(`invalid arm_num ${a.arm_num}`);
    return { arm_num: num, name: String(a.name ?? `Arm ${num}`) };
  });
  const armByNum = new Map(arms.map((a) => [a.arm_num, a]));
  if (armByNum.size !== arms.length) throw new DictionaryError('duplicate arm_num');
  if (!Array.isArray(spec.events) || spec.events.length === 0) throw new DictionaryError('a longitudinal project needs events');
  const taken = new Set();
  let nextId = 1;
  const events = spec.events.map((e) => {
    const arm = Number(e.arm_num ?? 1);
    if (!armByNum.has(arm)) throw new DictionaryError(`event ${e.event_name} names unknown arm ${e.arm_num}`);
    if (!e.event_name) throw new DictionaryError('an event needs event_name');
    const unique = e.unique_event_name ? String(e.unique_event_name) : uniqueEventName(e.event_name, arm, taken);
    if (!/^[a-z0-9_]+$/.test(unique)) throw new DictionaryError(`invalid unique_event_name ${unique}`);
    if (taken.has(unique)) throw new DictionaryError(`duplicate unique_event_name ${unique}`);
    taken.add(unique);
    return {
      event_name: String(e.event_name),
      arm_num: arm,
      unique_event_name: unique,
      custom_event_label: String(e.custom_event_label ?? ''),
      event_id: Number.isInteger(e.event_id) ? e.event_id : nextId++,
      forms: new Set(),
    };
  });
  // Events are kept in arm order, then in the order given.
  events.sort((a, b) => a.arm_num - b.arm_num);
  const eventByName = new Map(events.map((e) => [e.unique_event_name, e]));
  const mapping = spec.formEventMapping ?? spec.form_event_mapping;
  if (!Array.isArray(mapping) || mapping.length === 0) throw new DictionaryError('a longitudinal project needs formEventMapping');
  for (const m of mapping) {
    const ev = eventByName.get(m.unique_event_name);
    if (!ev) throw new DictionaryError(`formEventMapping names unknown event ${m.unique_event_name}`);
    if (m.arm_num !== undefined && Number(m.arm_num) !== ev.arm_num) {
      throw new DictionaryError(`formEventMapping: event ${m.unique_event_name} is not in arm ${m.arm_num}`);
    }
    if (!formByName.has(m.form)) throw new DictionaryError(`formEventMapping names unknown form ${m.form}`);
    ev.forms.add(m.form);
  }
  const armLabel = (ev) => `${ev.event_name} (Arm ${ev.arm_num}: ${armByNum.get(ev.arm_num).name})`;
  for (const ev of events) ev.label = armLabel(ev);
  return { arms, events, eventByName };
}

/*
 * Repeating setup. Classic: a list of form names or {form_name,
 * custom_form_label}. Longitudinal: {event_name: <unique event name>,
 * form_name: <form> | "" (whole event repeats), custom_form_label}.
 */
function buildRepeating(list, longitudinal, formByName) {
  if (!Array.isArray(list)) throw new DictionaryError('repeating must be an array');
  const repeatingForms = new Map(); // eventKey -> Map(form -> custom label)
  const repeatingEvents = new Set(); // unique event names
  for (const item of list) {
    const o = typeof item === 'string' ? { form_name: item } : item ?? {};
    const form = String(o.form_name ?? '');
    const label = String(o.custom_form_label ?? '');
    if (!longitudinal) {
      if (!formByName.has(form)) throw new DictionaryError(`repeating names unknown form "${form}"`);
      if (!repeatingForms.has('')) repeatingForms.set('', new Map());
      repeatingForms.get('').set(form, label);
      continue;
    }
    const ev = longitudinal.eventByName.get(o.event_name);
    if (!ev) throw new DictionaryError(`repeating names unknown event "${o.event_name}"`);
    if (form === '') {
      repeatingEvents.add(ev.unique_event_name);
      continue;
    }
    if (!formByName.has(form)) throw new DictionaryError(`repeating names unknown form "${form}"`);
    if (!ev.forms.has(form)) throw new DictionaryError(`form ${form} is not designated for event ${ev.unique_event_name}`);
    if (!repeatingForms.has(ev.unique_event_name)) repeatingForms.set(ev.unique_event_name, new Map());
    repeatingForms.get(ev.unique_event_name).set(form, label);
  }
  for (const e of repeatingEvents) {
    if (repeatingForms.has(e)) throw new DictionaryError(`event ${e} cannot repeat as a whole and have repeating forms`);
  }
  return { repeatingForms, repeatingEvents, hasRepeating: repeatingForms.size > 0 || repeatingEvents.size > 0 };
}
