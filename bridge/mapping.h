/*
 * mapping — the curation engine: a mapping file (JSON, one per REDCap
 * project) turns the FHIR resources of one patient into REDCap rows.
 *
 * Sans-IO apart from reading the mapping file and its HMAC key file: no
 * store, no network, no libuv. The caller (bridge/curate.c) loads a
 * patient's resources from the store, calls mapping_curate(), and writes
 * the rows to the store's outbox in the same transaction.
 *
 * The file format is documented in conf/README.md ("Mapping files"); the
 * example study's files are conf/example-project/mapping.json and
 * mapping-hmac.json. In short:
 *
 *   {
 *     "format": "fhir-redcap-bridge/mapping/1",
 *     "record_id": { "from": "mrn" }
 *              or  { "from": "hmac", "key_file": "study-id.key", "prefix": "S", "hex_digits": 16 },
 *                                                 both need fhir.mrn_system (the MRN is the source)
 *     "anchors": {                                    (optional)
 *       "enroll": { "resource": "Encounter", "time": "period.start", "select": "FIRST",
 *                   "filter": { ... } }              anchor from FHIR: an instant with its offset
 *       "adm":    { "field": "admission_dt" }        anchor typed into REDCap (date/datetime, site zone)
 *     },
 *     "rules": [ {
 *       "name": "baseline-heart-rate",               unique; provenance names it (default "rules[i]")
 *       "resource": "Observation",                   or "anchor": "enroll" (fields take the anchor's value)
 *       "filter": { "code": ["http://loinc.org|8867-4"], "category": ["vital-signs"],
 *                   "status": ["final", "amended", "corrected"] },      each optional; AND of the keys,
 *                                                                       OR within a list
 *       "event": "baseline_arm_1",                   longitudinal projects only
 *       "instrument": "vitals",                      one instance per resource on a repeating instrument;
 *                                                    absent: fields of non-repeating forms
 *       "time": "effective",                         when the resource happened (dateTime, instant, Period.start)
 *       "window": { "anchor": "enroll", "from": "-1d", "to": "+1d" },   inclusive, units d h m (and 0)
 *       "select": "NEAR",                            FIRST LAST (by time) MIN MAX (by the field's number)
 *                                                    NEAR (closest to the anchor, earlier on a tie);
 *                                                    required for non-repeating rules on any resource but Patient
 *       "review": false,                             true: values go to the review queue, not to REDCap
 *       "fields": {
 *         "hr_baseline": { "value": "valueQuantity.value", "unit": "/min", "transform": "round" },
 *         "sex": { "value": "gender", "map": { "female": "1", "male": "2" }, "default": "3" },
 *         "lab_name": { "value": ["code.text", "code.coding.first().display"] }   alternatives: the
 *       } } ]                                        first path that finds anything counts
 *   }
 *
 * "comment" (a string) is allowed in the file, record_id, anchor, rule,
 * filter, window and field objects; every other unknown key is an error. In an
 * anchor rule a field without "value" takes the anchor's time as written
 * (REDCap anchors: the REDCap value); with "value" (FHIR anchors only) the
 * path is read from the anchor's resource. Filters: "code" and "category"
 * entries are FHIR search tokens (system|code, code, system|, |code)
 * matched against code.coding (medicationCodeableConcept.coding for
 * Medication*, type[].coding for Encounter) and category[].coding (or
 * plain-string categories); "status" matches status or
 * clinicalStatus.coding.code.
 *
 * Value paths are a small subset of FHIRPath (see conf/README.md): element
 * names joined by '.', choice elements by their base name ("effective"
 * matches effectiveDateTime / effectivePeriod / ...), where(a = 'lit'),
 * where(a = %mrn_system), where(a = 'x' and b = 'y'), first(), last(),
 * [n]; collections flatten as in FHIRPath. Transforms: "date" (YYYY-MM-DD
 * as written), "datetime" (YYYY-MM-DD HH:MM), "datetime_seconds"
 * (YYYY-MM-DD HH:MM:SS) — the clock time written in the resource, never
 * converted —, "number", "round" (integer, half up), "string" (default).
 * "map" turns codes into choice codes ("default" for the rest; without a
 * default an unmapped code is an error for that value). "unit" checks the
 * Quantity that holds the value (its code, else its unit).
 *
 * Return convention: 0 ok, -ENOMEM, -EINVAL for a programming error;
 * positive MAPPING_E_* with a message for input problems.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "redcap/dictionary.h"

enum {
	MAPPING_E_FILE = 1,   /* cannot read the mapping or its key file */
	MAPPING_E_SYNTAX,     /* not JSON, or not a valid mapping: message is file:line:col: path: what */
	MAPPING_E_CHECK,      /* mapping_check found problems */
};

typedef struct mapping mapping;

/* What the mapping needs from the configuration. The mapping copies
 * mrn_system but keeps local_to_utc and local_ud: they must outlive it. */
typedef struct mapping_env {
	const char *mrn_system;   /* fhir.mrn_system; NULL: no MRN system configured (every record_id refused) */
	/*
	 * Converts a local wall-clock time in the site's time zone (site.timezone)
	 * to microseconds since the epoch. Used for anchors typed into REDCap and
	 * for FHIR dates without a time. NULL: the site zone is UTC.
	 * Returns 0, or -1 if the time does not exist/cannot be converted.
	 */
	int (*local_to_utc)(void *ud, int year, int month, int day, int hour, int min, int sec,
			    int64_t *us);
	void *local_ud;
} mapping_env;

/*
 * Load and validate a mapping file. Paths inside it (record_id.key_file)
 * are resolved against the mapping file's directory; the key file must be
 * 0600 like every secret (secret_read_file()) and hold at least 32 bytes.
 * Every problem names file:line:col and the key path, e.g.
 * "conf/m.json:14:9: rules[2].select: NEAR needs a window".
 * A problem inside a value path is placed at the character where the
 * path goes wrong ("... (at character 6 of the path)").
 * Returns 0 or MAPPING_E_FILE / MAPPING_E_SYNTAX with err filled;
 * -ENOMEM; -EINVAL for a NULL or empty path or a NULL env. *out is NULL on
 * failure.
 */
int mapping_load(mapping **out, const char *path, const mapping_env *env, char *err, size_t err_size);
void mapping_free(mapping *m);

/* SHA-256 of the file's bytes, hex: the curation is redone when it changes. */
const char *mapping_digest(const mapping *m);

/* The FHIR resource types the rules and anchors read (Patient always
 * included), sorted; the array is owned by the mapping. */
size_t mapping_resource_types(const mapping *m, const char *const **types);

/* Names of the REDCap fields that hold anchors typed into REDCap (anchors
 * with "field"), each once, in the file's order; the caller exports them
 * and passes their values in this order. Owned by the mapping. */
size_t mapping_redcap_anchor_fields(const mapping *m, const char *const **fields);

/*
 * Check the mapping against a project's live data dictionary: every target
 * field exists and is not the record id, calc or descriptive; fields of a
 * rule sit on one form; an "instrument" rule targets a repeating
 * instrument (in its event) and its fields are on it; a non-repeating
 * rule does not target a repeating form; events exist and hold the form
 * (longitudinal), and a longitudinal project has an event on every rule;
 * maps produce valid choice codes of radio/dropdown/yesno/truefalse
 * fields and a choice field without a map (or with unmapped codes and no
 * default) is reported; transforms fit the field's validation (date_ymd
 * needs "date", datetime_ymd "datetime", datetime_seconds_ymd
 * "datetime_seconds", integer "round" or a number path, ...); anchor
 * fields exist and are date/datetime. Each problem is one line in *msgs
 * (a malloc'd array of malloc'd strings, *n of them), naming the rule
 * (file:line:col: rules[i] "name": field f: ...). Returns 0 when clean,
 * MAPPING_E_CHECK when *n > 0, -ENOMEM.
 */
int mapping_check(const mapping *m, const redcap_dict *d, char ***msgs, size_t *n);
void mapping_msgs_free(char **msgs, size_t n);

/* ------------------------------------------------------------------------
 * Curation of one patient.
 */

/* One resource of the patient, as stored. */
typedef struct mapping_resource {
	const char *type;
	const char *id;
	const char *version_id;   /* "" when the server gives none */
	const json_t *json;       /* the parsed body */
} mapping_resource;

typedef struct mapping_input {
	const mapping_resource *res;  /* the Patient and every resource that references it */
	size_t n;
	/* Values of mapping_redcap_anchor_fields() for this record as REDCap
	 * holds them (NULL or "" when empty); same order; may be NULL when the
	 * mapping has no such anchors or the record is not in REDCap yet. */
	const char *const *redcap_anchor_values;
} mapping_input;

/* One value produced for a field, with its provenance. */
typedef struct mapping_value {
	char *field;
	char *value;          /* the REDCap value; NULL when error is set */
	char *error;          /* why no value could be made (held back with this), else NULL; no PHI */
	const char *rule;     /* rule name (owned by the mapping) */
	char *res_type, *res_id, *res_version;  /* the source resource */
} mapping_value;

/* One row for REDCap. Rows of non-repeating forms of one (record, event)
 * are merged into one row (instrument NULL). */
typedef struct mapping_row {
	char *event;          /* unique event name or NULL (classic) */
	char *instrument;     /* repeating instrument or NULL */
	char *src_type, *src_id;  /* repeating: the resource that owns the instance; NULL otherwise */
	bool review;          /* the rule asked for review: queue, do not push */
	mapping_value *v;
	size_t n;
} mapping_row;

typedef enum mapping_status {
	MAPPING_OK = 0,          /* record and rows made */
	MAPPING_NO_PATIENT,      /* no Patient resource among the input (yet) */
	MAPPING_NO_MRN,          /* the Patient has no identifier with the MRN system */
	MAPPING_MRN_CONFLICT,    /* the Patient has two different MRNs in that system */
} mapping_status;

typedef struct mapping_result {
	mapping_status status;
	char *mrn;               /* the MRN (PHI) or NULL */
	char *record;            /* the REDCap record name (MRN or study id) or NULL */
	char *patient_id;        /* the Patient resource id */
	mapping_row *rows;
	size_t n_rows;
	char *reason;            /* when status != OK: a message without PHI */
} mapping_result;

/*
 * Curate one patient: find the Patient, its MRN (mapping_patient_mrn), the
 * record name (mapping_record_name), the anchors, and run every rule.
 * Values that cannot be made (partial date for a date field, unit
 * mismatch, unmapped code, path giving several values) come back as
 * mapping_value.error; the row stays (the push holds it back with the
 * message). A rule whose window's anchor has no value yet produces
 * nothing; a REDCap anchor value that is not a date/datetime gives every
 * field of the non-repeating rules that need it an error. Non-repeating
 * rules that match nothing produce no value for their fields (a blank is
 * never sent), and rows without values are left out. Every selection
 * (MIN MAX FIRST LAST NEAR) chooses among candidates that give a usable
 * value: none is passed over, a refused one (not a single number, not in
 * the unit) skipped; if only refused ones are left the field gets an error
 * saying why. Two repeating rules filling the same field
 * of one instance: the first rule's value becomes an error naming the
 * other. Rows are sorted: non-repeating rows first, then by instrument,
 * event, review flag, the source's time (none last), type and id; values
 * in rule then field order. Deterministic: the same input in any order
 * gives the same rows in the same order. Resources without a usable time
 * never match a window nor FIRST/LAST/NEAR; FHIR dates without a time (and
 * times without an offset) are read in the site zone; partial dates
 * (year, year-month) have no time.
 * Returns 0 (result->status says whether a record was made), -ENOMEM,
 * -EINVAL when the input holds more than one Patient (the caller passes
 * one patient's resources).
 */
int mapping_curate(const mapping *m, const mapping_input *in, mapping_result *out);
void mapping_result_deinit(mapping_result *r);

/*
 * The fields the mapping owns in rows like `row` (same event; same
 * repeating instrument, or the non-repeating forms): every field of its
 * non-review rules that target them, each once, in rule order. A field so
 * owned that a row lacks has no value now; the caller may clear what it
 * sent there before. *fields is malloc'd (the strings belong to the
 * mapping); returns the count, or (size_t)-1 on ENOMEM.
 */
size_t mapping_owned_fields(const mapping *m, const mapping_row *row, const char ***fields);

/*
 * The MRN of a Patient resource: the value of the identifier whose system
 * is mrn_system. Returns MAPPING_OK with *mrn malloc'd, MAPPING_NO_MRN, or
 * MAPPING_MRN_CONFLICT (two identifiers of the system with different
 * values); -ENOMEM.
 */
int mapping_patient_mrn(const json_t *patient, const char *mrn_system, char **mrn);

/*
 * The record name for an MRN: the MRN itself, or prefix + the first
 * hex_digits lowercase hex digits of HMAC-SHA256(key, MRN). Returns a
 * malloc'd string or NULL on ENOMEM.
 */
char *mapping_record_name(const mapping *m, const char *mrn);
