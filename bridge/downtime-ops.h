/*
 * downtime-ops — the jobs of downtime charting that the CLI (cmd-downtime.c)
 * and the charting page (ui.c) both do, on a store handle they own:
 * register a temporary patient, store a built chart entry with its audit
 * row, read a cached resource that must belong to the patient charted for,
 * search cached patients, and build the summary JSON with the entries
 * charted in the bridge and the EHR state.
 *
 * Synchronous; every write is one transaction (entry or registration and
 * its audit row commit together), durable when the call returns 0.
 * Messages name fields, ids and uuids, never a value typed or read (no PHI).
 *
 * Return convention: 0 ok; negative errno; positive STORE_E_* from the
 * store (store_errmsg() says why); DOWNTIME_OPS_E_* below.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "bridge/chart.h"
#include "bridge/patients.h"
#include "offline-store/store.h"

enum {
	DOWNTIME_OPS_E_INVALID = 64, /* the input is refused; err names the field */
	DOWNTIME_OPS_E_NOTFOUND,     /* no such cached resource for this patient */
};

/* A temporary patient id, "DT-" and 10 characters of base32: the buffer size. */
#define DOWNTIME_OPS_TEMP_ID_SIZE 16

/* A new random temporary id into out. 0 or -EIO (no random bytes). */
int downtime_ops_temp_id(char out[DOWNTIME_OPS_TEMP_ID_SIZE]);

/* Is s a calendar date YYYY-MM-DD from 1850 on? */
bool downtime_ops_date_ok(const char *s);

/* What a clinician types to register a patient who is not in the cache. */
typedef struct downtime_ops_person {
	const char *family, *given;   /* 1..200 bytes of UTF-8 without control characters */
	const char *birth_date;       /* YYYY-MM-DD */
	const char *gender;           /* male | female | other | unknown */
} downtime_ops_person;

/*
 * Check p; 0 or DOWNTIME_OPS_E_INVALID with err "<field>: what is wrong"
 * and *field (may be NULL) the field's name ("family", "given",
 * "birth_date", "gender").
 */
int downtime_ops_person_check(const downtime_ops_person *p, const char **field, char *err, size_t err_size);

/*
 * Register p (checked first, as above) as a new temporary patient by user
 * `by` at now_ms, with its audit row ("register"), in one transaction. The
 * id goes to id. 0; DOWNTIME_OPS_E_INVALID; -EIO; -ENOMEM; a store error
 * (nothing stored).
 */
int downtime_ops_register(store *st, const downtime_ops_person *p, const char *by, int64_t now_ms,
			  char id[DOWNTIME_OPS_TEMP_ID_SIZE], const char **field, char *err, size_t err_size);

/*
 * Store the built entry e for patient (temp: a temporary id, the entry
 * waits for its link) by author, with its audit row ("chart", detail
 * "<kind> <uuid>"), in one transaction committed before the call returns.
 * 0; -ENOMEM; a store error (nothing stored; store_errmsg says why).
 */
int downtime_ops_store_entry(store *st, int64_t server, const chart_entry *e, const char *patient, bool temp,
			     const char *author, int64_t now_ms);

/*
 * The cached resource type/id as a new parsed object, when it belongs to
 * patient (its subject or patient reference is "Patient/<patient>").
 * NULL with err: DOWNTIME_OPS_E_NOTFOUND in *rc for an unknown resource or
 * one of another patient, else a store error or -EINVAL (not JSON).
 */
json_t *downtime_ops_cached_resource(store *st, int64_t server, const char *type, const char *id, const char *patient,
				     int *rc, char *err, size_t err_size);

/*
 * Search the cached patients (patients_search rules): a new array of
 * summary "patient" objects {"id", "mrn", "name", "birth_date", "gender",
 * "deceased", "age"} in id order, at most limit; NULL with err (a query
 * problem, a store error).
 */
json_t *downtime_ops_search(store *st, int64_t server, const char *mrn_system, const char *query, size_t limit,
			    int64_t now_ms, char *err, size_t err_size);

/*
 * The summary of a resolved patient as a new object: summary.h's keys,
 * plus "downtime_entries" (every entry charted for the patient, oldest
 * first: {"uuid", "kind", "state", "author", "effective", "recorded",
 * "ehr_ref", "last_error", "resource"}) and "ehr" {"state", "since"} from
 * the store. A temporary patient gives {"patient": {"id", "temporary":
 * true, "registered": {family, given, birth_date, gender}}} with the same
 * extra keys. "data_as_of" is the last successful sync. NULL with err.
 */
json_t *downtime_ops_summary(store *st, int64_t server, const char *mrn_system, const patients_match *m,
			     int64_t now_ms, char *err, size_t err_size);

/*
 * The parts of downtime_ops_summary, for a caller that keeps summaries:
 * the summary.h object of a cached EHR patient built from its resources
 * (data_as_of null; "generated" and "age" at now_ms), and the keys added
 * from the store ("downtime_entries", "data_as_of", "ehr"; 0 or an error
 * with err, sum then partly filled).
 */
json_t *downtime_ops_base_summary(store *st, int64_t server, const char *mrn_system, const char *patient,
				  int64_t now_ms, char *err, size_t err_size);
int downtime_ops_summary_finish(store *st, const patients_match *m, json_t *sum, char *err, size_t err_size);
