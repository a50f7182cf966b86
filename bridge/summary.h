/*
 * bridge/summary.h — the cached patient summary shown during an EHR
 * downtime (CLI `summary --patient MRN [--json]` and the web page).
 *
 * Sans-IO: the caller hands over every cached resource of one patient
 * (Jansson values, as pulled from the EHR, any types, any order, the Patient
 * among them) and gets a JSON object back, or plain text made of it.
 *
 * The summary object (keys are stable; the web page and the tests use them;
 * a missing value is JSON null, never an absent key):
 *
 * {"patient": {"id", "mrn", "name", "birth_date", "gender", "deceased", "age"},
 *  "generated": instant,          opts.now_ms as "YYYY-MM-DDThh:mm:ss.sssZ"
 *  "data_as_of": instant | null,  opts.data_as_of as given (null: never synced)
 *  "allergies": [...], "medications": [...], "problems": [...], "vitals": [...], "labs": [...],
 *  "counts": {"<resourceType>": n, ...}}
 *
 * patient
 *   id          Patient.id
 *   mrn         value of the first identifier whose system is opts.mrn_system (null when none
 *               or mrn_system is NULL)
 *   name        "Family, Given Given" of the first name with use "official", else "usual", else
 *               the first name; "Family" or "Given Given" when one part is missing; the name's
 *               text when it has neither; null without a name
 *   birth_date  Patient.birthDate as given
 *   gender      Patient.gender
 *   deceased    true when deceasedBoolean is true or deceasedDateTime is set, else false
 *   age         whole years at opts.now_ms (UTC calendar) for a full birthDate; null when
 *               deceased, without a full birthDate or when now_ms is before it
 *
 * allergies: AllergyIntolerance whose clinicalStatus is active or absent (or has no coded
 *   status) and whose verificationStatus is not entered-in-error or refuted. Sorted by
 *   criticality (high, low, unable-to-assess, none), then text, then id.
 *   {"id", "text", "criticality", "verification" (verificationStatus code or null),
 *    "reactions": ["Anaphylactic reaction (severe)", "Urticaria, Hives", ...] one string per
 *    reaction: its manifestations joined with ", " (else its description, else "unspecified"
 *    when it has a severity), then " (severity)" when it has one; empty reactions are left out,
 *    "recorded" (recordedDate), "version_id" (meta.versionId, for If-Match changes)}
 *
 * medications: MedicationRequest with status active or on-hold ("source": "request") and
 *   MedicationStatement with status active ("source": "statement"). Sorted by text (case
 *   folded ASCII; no text last), then id.
 *   {"id", "source", "text", "status", "dosage", "authored", "version_id"}
 *   text: medicationCodeableConcept (text, else the first coding's display, else its code);
 *     else medicationReference.display; else, for a reference "#id", the contained Medication's
 *     code the same way; else null.
 *   dosage: dosageInstruction[0] (MedicationStatement: dosage[0]) .text, else built from it:
 *     "<dose> <unit>" of doseAndRate[0] (doseQuantity, or doseRange as a reference range),
 *     the route's text, the timing ("every 4-6 h", "3 times per 1 d", or timing.code's text)
 *     and "as needed", joined with ", "; null when nothing is there.
 *   authored: MedicationRequest.authoredOn; MedicationStatement effectiveDateTime,
 *     effectivePeriod.start, else dateAsserted.
 *
 * problems: Condition whose clinicalStatus is active, recurrence or relapse and whose
 *   verificationStatus is not entered-in-error or refuted. Sorted by text, then id.
 *   {"id", "text", "onset", "category"}
 *   onset: onsetDateTime, onsetPeriod.start, onsetString, onsetAge/onsetRange as text.
 *   category: category[0] as text (text; else the condition-category coding's display or
 *     code; else the first coding's display or code).
 *
 * vitals: the latest Observation per code among those with a category coded vital-signs;
 *   labs: the same among category laboratory. Observations with status entered-in-error or
 *   cancelled, without a coding with a code or without a value are skipped. The code is
 *   the first LOINC coding (for vitals, the first LOINC coding of the table below, so that
 *   an Observation coded 29463-7 and 3141-9 is the body weight), else the first coding
 *   (codes of different systems are different keys).
 *   "Latest": effectiveDateTime, effectiveInstant, effectivePeriod.start (else .end), else
 *   issued, compared as instants (offsets applied; a date alone is UTC midnight); an
 *   Observation without a readable time is older than any with one; ties go to the later
 *   meta.lastUpdated, then the greater id. "time" is the text as given.
 *   vitals {"code", "display", "value", "unit", "time", "id"}, in this order: blood pressure
 *     (85354-9, value "SYS/DIA" of components 8480-6 and 8462-4, "?" for a missing one),
 *     heart rate (8867-4), respiratory rate (9279-1), body temperature (8310-5), oxygen
 *     saturation (2708-6, 59408-5), body weight (29463-7, 3141-9), body height (8302-2,
 *     8306-3), BMI (39156-5); then the others by display and code. display: the table's
 *     label for these codes, else code.text, else the coding's display, else the code.
 *   labs {"code", "display", "value", "unit", "time", "id", "interpretation",
 *     "reference_range"}, newest first (then by display, code), at most opts.max_labs.
 *     display: code.text, else the coding's display, else the code. interpretation:
 *     interpretation[0] as text. reference_range: referenceRange[0].text, else
 *     "<low> - <high> <unit>", ">= <low> <unit>" or "<= <high> <unit>".
 *   value: valueQuantity (comparator, then the number; unit: unit, else code),
 *     valueCodeableConcept (as text), valueString, valueBoolean ("true"/"false"),
 *     valueInteger, valueRange (as a reference range, unit included), valueRatio ("<n>/<d>"), valueDateTime,
 *     valueTime, valuePeriod ("<start> - <end>").
 *   Numbers: Jansson keeps a JSON number as a double (or a 64-bit integer), not as the
 *   text it read, so a decimal is written back as the shortest text that reads as the same
 *   double ("%.17g" would turn 0.1 into 0.10000000000000001). Every decimal of up to 15
 *   significant digits comes back with its digits, but trailing zeros are lost ("1.50" ->
 *   "1.5", "1.0" -> "1") and an exponent is written as %g does ("1E-22" -> "1e-22").
 *   Integers are exact.
 *
 * counts: how many of the given resources there are of each resourceType (all of them,
 *   shown or not; values that are not objects or have no resourceType are not counted).
 *
 * Values of an unexpected JSON type are treated as absent; a resource whose shape does not
 * fit is left out without an error.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct summary_opts {
	const char *mrn_system;  /* the site's MRN identifier system (fhir.mrn_system), or NULL */
	int64_t now_ms;          /* wall clock, ms since the epoch: "generated" and "age" */
	const char *data_as_of;  /* the last successful sync instant, or NULL: never synced */
	size_t max_labs;         /* most labs shown; 0: the default, 20 */
} summary_opts;

#define SUMMARY_DEFAULT_MAX_LABS 20

/*
 * Build the summary of one patient from its n cached resources (borrowed;
 * NULL elements and values that are not objects with a resourceType are
 * skipped). Returns a new object, or NULL with a message in err (no PHI):
 * "no Patient resource among the cached resources", "N Patient resources
 * among the cached resources (expected one)", bad arguments, out of memory.
 */
json_t *summary_build(json_t *const *resources, size_t n, const summary_opts *o, char *err, size_t err_size);

/*
 * Plain text of a summary (as summary_build made it) for a terminal: a
 * banner line "data as of <instant>" ("data as of: never synced" when
 * data_as_of is null), the patient line, then one block per section with
 * aligned columns (widths in code points; wide characters are not
 * accounted for). Times are printed as given; a missing value as "-".
 * Control characters in values (newlines, ESC, C1, bidi overrides) are
 * printed as spaces, so that a value cannot break the layout, drive the
 * terminal or reorder the line.
 * Returns 0 with *out malloc'd (NUL-terminated), -EINVAL (summary not an
 * object, out NULL) or -ENOMEM.
 */
int summary_render_text(const json_t *summary, char **out);
