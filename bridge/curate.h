/*
 * curate — turn the patients the pull changed into REDCap rows: for each
 * waiting patient, read its resources from the store, run every project's
 * mapping (bridge/mapping.h) and write the rows to the outbox, the review
 * queue and provenance, clearing the patient's waiting mark in the same
 * transaction. A crash at any point leaves the patient waiting; curating
 * it again writes the same rows (instances are kept per source resource,
 * an unchanged row is not queued again).
 *
 * Synchronous: the program runs it on a libuv worker thread while the loop
 * thread does nothing else with the store.
 */
#pragma once

#include <stdint.h>

#include <jansson.h>

#include "bridge/config.h"
#include "bridge/mapping.h"
#include "offline-store/store.h"

typedef struct curate_stats {
	long long patients;        /* patients curated */
	long long records;         /* of which made a record in some project */
	long long refused;         /* patient x project refusals (ambiguous / no MRN ...) */
	long long rows_queued;     /* outbox rows new or changed */
	long long rows_unchanged;
	long long review_queued;
	long long value_errors;    /* values the mapping could not make (held back at push) */
	long long deferred;        /* patients left waiting: their anchors in REDCap were not read this cycle */
	double elapsed_s;
	char error[512];           /* when curate_run fails */
} curate_stats;

/*
 * maps[i] is the loaded mapping of cfg->redcap_projects[i], or NULL (no
 * mapping: an export-only project). A mapping whose digest differs from
 * the one recorded for its project makes every patient wait again.
 * Returns 0, or a negative errno / STORE_E_* with stats->error set (the
 * batch in progress is rolled back; committed batches stay).
 * stop (may be NULL) is polled between batches: non-zero ends early.
 *
 * anchors (may be NULL) holds, per project whose mapping reads anchors
 * typed into REDCap, the values REDCap has now: {folded record: [v, ...]}
 * in the order of mapping_redcap_anchor_fields() (see push.h, anchor mode),
 * for the records read this cycle. A patient whose anchor values changed
 * since it was last curated waits again (a keyed digest per patient is
 * kept, never the values); a waiting patient whose record was not read
 * stays waiting for the next cycle (stats->deferred).
 *
 * Refusals: a patient whose MRN another Patient carries too, or whose
 * record name differs from another patient's only in case or surrounding
 * spaces (REDCap takes them as one record), is refused and reported, never
 * guessed; the pending rows of its record are held (source "curation") in
 * the same transaction, so nothing of it reaches REDCap while the refusal
 * stands. When it is alone again it is curated as usual and those rows go.
 */
int curate_run(store *st, int64_t server, const config *cfg, mapping *const *maps, json_t *const *anchors,
	       curate_stats *stats, volatile int *stop);

json_t *curate_stats_json(const curate_stats *s);

/*
 * The record names of the patients waiting for curation, for each project
 * i (indexing cfg->redcap_projects) with want[i] and a mapping: records[i]
 * gets a new array of n[i] new strings (free each array with
 * curate_records_free()), others NULL / 0. Patients without a stored
 * Patient resource or an MRN have no record and are left out. For reading
 * the anchors typed into REDCap of the records a cycle curates (push.h,
 * anchor mode), before curate_run().
 */
int curate_waiting_records(store *st, int64_t server, const config *cfg, mapping *const *maps, const bool *want,
			   char ***records, size_t *n);
void curate_records_free(char **records, size_t n);

/*
 * The site's local time zone for mapping_env.local_to_utc: call once at
 * start with site.timezone (sets TZ for this process; only curation reads
 * local time).
 */
void curate_set_timezone(const char *zone);
int curate_local_to_utc(void *ud, int year, int month, int day, int hour, int min, int sec, int64_t *us);
