/*
 * chart — downtime charting, sans I/O: a clinician's input becomes a FHIR R4
 * resource (Jansson) plus its Provenance; the pending entries become one
 * transaction Bundle for the resync, and the server's transaction-response
 * is read back. No store, no network, no clock (the caller passes "now").
 *
 * Kinds and what they produce:
 *   vitals        Observation (vital-signs, LOINC, UCUM), a conditional create
 *   note          DocumentReference (text/plain, base64), a conditional create
 *   med-admin     MedicationAdministration, a conditional create
 *   med-stop      the cached MedicationRequest with status stopped, a PUT with If-Match
 *   allergy-error the cached AllergyIntolerance marked entered-in-error, a PUT with If-Match
 * Every entry has a Provenance "dt-<uuid>" (PUT, client-assigned id, so a
 * retried transaction never duplicates) and the downtime meta.tag below.
 * Creates carry identifier {site identifier_system, uuid}; the transaction
 * creates them with ifNoneExist on that identifier.
 *
 * Clinicians are referenced logically: {identifier {system user_system,
 * value user}, display user_display}.
 *
 * Decimals. FHIR decimals keep their precision ("36.50" is not "36.5"), but
 * a Jansson number is an integer or a double, and its text is produced at
 * dump time. So a typed value is checked against the decimal syntax
 * -?digits[.digits] (at most 9 integer and 6 fraction digits: no exponent,
 * hex, inf or nan, at most 15 significant digits) and stored as
 * - a json_integer when it has no fraction ("72" -> 72), else
 * - a json_real equal to the nearest double of the typed decimal; dumped
 *   with CHART_DUMP_FLAGS (JSON_REAL_PRECISION(15)), its text is the typed
 *   decimal without trailing fraction zeros ("98.6" -> 98.6, never
 *   98.599999999999994 as with Jansson's default of 17 digits);
 * - when the typed fraction ends in zeros ("36.50", "36.0"), the precision
 *   is kept in the standard FHIR extension on the primitive:
 *   "_value": {"extension": [{"url": CHART_EXT_PRECISION, "valueInteger": 2}]}.
 * Dump every resource, Provenance and Bundle of this module with
 * chart_dumps() (or CHART_DUMP_FLAGS): Jansson's default precision prints
 * binary noise into the EHR.
 *
 * Return convention: 0 ok; negative errno (-ENOMEM, -EINVAL for bad
 * arguments, -EIO when the random generator fails); positive CHART_E_*.
 * Messages from chart_build are for the clinician who typed the input (they
 * may quote the typed value; do not log them above debug). Messages from
 * chart_parse_transaction_response hold no PHI (indexes, status codes).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* The meta.tag on every entry and Provenance. */
#define CHART_TAG_SYSTEM "urn:fhir-redcap-bridge:tag"
#define CHART_TAG_CODE "downtime-entry"
#define CHART_TAG_DISPLAY "Entered during EHR downtime"

#define CHART_SYSTEM_LOINC "http://loinc.org"
#define CHART_SYSTEM_UCUM "http://unitsofmeasure.org"
#define CHART_SYSTEM_OBS_CATEGORY "http://terminology.hl7.org/CodeSystem/observation-category"
#define CHART_SYSTEM_ALLERGY_VERIFICATION "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
#define CHART_SYSTEM_PROV_PARTICIPANT "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
#define CHART_SYSTEM_DATA_OPERATION "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
#define CHART_EXT_PRECISION "http://hl7.org/fhir/StructureDefinition/quantity-precision"

/* The note type when chart_input.note_type is NULL: LOINC "Progress note". */
#define CHART_NOTE_TYPE_DEFAULT "11506-3"

/* Limits on the input. */
#define CHART_NOTE_MAX 65536          /* bytes of note text */
#define CHART_FUTURE_SLACK_MS (5 * 60 * 1000LL)        /* "at" later than now + this: refused */
#define CHART_OLD_CONFIRM_MS (72 * 3600 * 1000LL)      /* "at" earlier than now - this: needs confirm */

/* Dump flags for everything this module builds (see "Decimals" above). */
#define CHART_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

enum {
	CHART_E_INVALID = 1,  /* the input is refused; the message names the field */
	CHART_E_CONFIRM,      /* valid but implausible (value, or an old "at"): save again with confirm */
	CHART_E_RESPONSE,     /* a transaction-response that does not answer the transaction */
};

typedef enum chart_kind {
	CHART_VITALS,
	CHART_NOTE,
	CHART_MED_ADMIN,
	CHART_MED_STOP,
	CHART_ALLERGY_ERROR,
} chart_kind;

/* "vitals", "note", "med-admin", "med-stop", "allergy-error"; "?" for a value out of the enum. */
const char *chart_kind_name(chart_kind kind);

/* The kind named s (the names above, exact) -> 0 and *kind; CHART_E_INVALID for an unknown or NULL name. */
int chart_kind_parse(const char *s, chart_kind *kind);

/* True for the kinds that change an existing EHR resource (a PUT with If-Match). */
bool chart_kind_is_update(chart_kind kind);

typedef struct chart_site {
	const char *identifier_system;  /* downtime.identifier_system, required */
	const char *user_system;        /* system of clinician identifiers; NULL -> identifier_system + "/user" */
	int64_t now_ms;                 /* the entered time (unix ms) */
} chart_site;

typedef struct chart_input {
	chart_kind kind;
	const char *patient_id;    /* logical id [A-Za-z0-9.-]{1,64} (or a temporary "DT-..." id), required */
	const char *user;          /* the clinician's identifier value, required */
	const char *user_display;  /* optional */
	const char *at;            /* when it happened: YYYY-MM-DDThh:mm[:ss[.fff]] with Z or +hh:mm; NULL = now */
	bool confirm;              /* implausible values confirmed by the user */

	/* vitals: code is a LOINC code (8867-4 ...) or a short name (hr, rr, temp, spo2, weight, bp);
	 * value a decimal, "SYS/DIA" for bp; unit a UCUM code or a common spelling (NULL: the only unit
	 * of a single-unit sign). */
	const char *code;
	const char *value;
	const char *unit;

	/* note */
	const char *text;          /* required, UTF-8, no NUL, <= CHART_NOTE_MAX bytes, not blank */
	size_t text_len;           /* bytes of text; 0: strlen(text). A NUL inside text_len is refused. */
	const char *note_type;     /* LOINC code, default CHART_NOTE_TYPE_DEFAULT */

	/* med-admin: either med_request, or med_code (+ med_display) */
	const json_t *med_request; /* cached MedicationRequest body or NULL */
	const char *med_code;      /* "system|code" when no request */
	const char *med_display;
	const char *dose_value;    /* decimal > 0; dose_value and dose_unit both or neither */
	const char *dose_unit;     /* UCUM (mg, mL, ug, [iU] ...; mcg, ml, IU accepted) */
	const char *route;         /* free text, optional */

	/* med-stop, allergy-error */
	const json_t *current;     /* the cached resource body being changed (has id and meta.versionId) */
	const char *reason;        /* optional: statusReason.text / an appended note; Provenance.reason.text */
} chart_input;

typedef struct chart_entry {
	char uuid[37];             /* random v4, lower case */
	chart_kind kind;
	json_t *resource;          /* owned */
	json_t *provenance;        /* owned; id "dt-<uuid>" */
	char effective[64];        /* "at" as typed (":00" added when seconds were left out), or now in UTC */
	char recorded[64];         /* now in UTC, YYYY-MM-DDThh:mm:ss.mmmZ */
	int64_t effective_ms;      /* the same instants in unix ms, for ordering */
	int64_t recorded_ms;
	char *target;              /* "Type/id" for updates, else NULL (owned) */
	char *if_match;            /* W/"<versionId>" for updates, else NULL (owned) */
} chart_entry;

#define CHART_ENTRY_NULL { .resource = NULL }

/* Free what e owns and reset it to CHART_ENTRY_NULL; idempotent. */
void chart_entry_deinit(chart_entry *e);

/*
 * Validate in and build the entry for it into *out (overwritten: deinit a
 * previous value first; left CHART_ENTRY_NULL on any failure).
 *
 * Returns 0; CHART_E_INVALID (refused: err names the field, e.g. "value:
 * heart rate must be a number, got 'abc'"); CHART_E_CONFIRM when the input
 * is valid but a value lies outside its plausible range or "at" is more
 * than 72 h ago and in->confirm is false (err lists what, then "; confirm to
 * save it"); -EINVAL for NULL arguments or a site without
 * identifier_system; -ENOMEM; -EIO if RAND_bytes fails. Refusals win over
 * confirmations: CHART_E_CONFIRM means that confirming will save.
 * The ranges are listed in chart.c (vital_limits).
 */
int chart_build(const chart_input *in, const chart_site *site, chart_entry *out, char *err, size_t err_size);

/* One pending entry for chart_transaction; every pointer borrowed. */
typedef struct chart_tx_item {
	const char *uuid;
	const json_t *resource;
	const json_t *provenance;
	const char *target;    /* NULL: a create; else "Type/id", an update */
	const char *if_match;  /* required for an update */
} chart_tx_item;

/*
 * The transaction Bundle for n >= 1 items, in their order: per item the
 * entry (create: fullUrl "urn:uuid:<uuid>", POST <Type> with ifNoneExist
 * "identifier=<system>|<uuid>", both parts FHIR-escaped and URL-encoded;
 * update: PUT target with ifMatch) followed by its Provenance (PUT
 * Provenance/dt-<uuid>). Resources are deep-copied.
 * Returns a new reference, or NULL for bad arguments (n == 0, an item
 * without resource, provenance or resourceType, a uuid that does not make
 * "dt-<uuid>" a FHIR id, a Provenance with another id, an update without
 * if_match, no identifier_system) or when out of memory.
 */
json_t *chart_transaction(const chart_tx_item *items, size_t n, const char *identifier_system);

typedef struct chart_tx_result {
	int status;           /* HTTP status of the item's entry */
	int prov_status;      /* of its Provenance */
	char location[256];   /* "Type/id/_history/v" (or "Type/id") of the entry; "" for a non-2xx entry */
} chart_tx_result;

/*
 * Read the transaction-response to a chart_transaction of n_items items
 * into out[0..n_items-1]. Checks: JSON, resourceType Bundle, type
 * transaction-response, exactly 2 * n_items entries, each with
 * response.status "NNN[ text]" (100-599); a 2xx entry needs a location (an
 * absolute URL is cut to its Type/id[/_history/v] tail) shorter than 256.
 * Returns 0; CHART_E_RESPONSE with err naming the entry index (0-based in
 * the Bundle) and the item; -EINVAL for bad arguments. out is zeroed first.
 */
int chart_parse_transaction_response(const char *body, size_t len, size_t n_items, chart_tx_result *out, char *err,
				     size_t err_size);

/*
 * Rewrite every "reference": "Patient/<from_id>" anywhere in resource to
 * "Patient/<to_id>" (a temporary patient linked to the EHR's). Returns the
 * number rewritten, -EINVAL for bad arguments (ids must be FHIR ids) or
 * -ENOMEM (the references rewritten so far stay rewritten).
 */
int chart_patient_ref_rewrite(json_t *resource, const char *from_id, const char *to_id);

/* json_dumps(j, CHART_DUMP_FLAGS): malloc'd text, or NULL. */
char *chart_dumps(const json_t *j);
