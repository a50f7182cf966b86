/*
 * patients — finding cached patients during downtime: the keyed-hash search
 * index kept beside the store's resources (tokens from patient-search.h),
 * and the resolution of what a clinician typed (an MRN, a temporary id) to
 * exactly one patient. Ambiguity is an error, never a guess.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "offline-store/store.h"

/* Index one Patient body (inside the caller's transaction when one is open).
 * A body that is not a Patient JSON object is skipped (0). */
int patients_index_one(store *st, int64_t server, const char *id, const char *body, size_t len,
		       const char *mrn_system);

/*
 * Make sure the index covers every cached Patient under the current
 * mrn_system: on a store indexed before (or with another MRN system) every
 * Patient is indexed again, in one transaction. *reindexed (may be NULL)
 * gets the count. Returns 0 or a store error.
 */
int patients_index_ensure(store *st, int64_t server, const char *mrn_system, size_t *reindexed);

/* What a patient argument resolved to. */
typedef struct patients_match {
	char *id;         /* EHR logical id, or the temporary id when temp */
	bool temp;        /* a downtime-registered patient not linked yet */
	char *temp_id;    /* the temporary id typed (also when linked), else NULL */
} patients_match;

void patients_match_deinit(patients_match *m);

enum {
	PATIENTS_E_NONE = 1,      /* no cached patient matches */
	PATIENTS_E_AMBIGUOUS,     /* more than one does: never guessed */
};

/*
 * Resolve an MRN ("mrn" form), a temporary id ("DT-..."), or with by_id an
 * EHR logical id, to one patient. A linked temporary id resolves to the
 * EHR patient it was linked to. Returns 0, PATIENTS_E_NONE,
 * PATIENTS_E_AMBIGUOUS (err says how many), or a store error; err never
 * repeats the argument (the caller knows what was typed).
 */
int patients_resolve(store *st, int64_t server, const char *arg, bool by_id, patients_match *out, char *err,
		     size_t err_size);

/*
 * Search by what a clinician typed (patient_query_parse rules): the ids of
 * the matching cached patients (sorted, at most limit) as a new JSON array,
 * or NULL with err (a query problem or a store error).
 */
json_t *patients_search(store *st, int64_t server, const char *query, size_t limit, char *err, size_t err_size);

/* Every cached resource of a patient as a new JSON array of parsed bodies
 * (bodies that do not parse are left out), or NULL on a store error. */
json_t *patients_resources(store *st, int64_t server, const char *patient);
