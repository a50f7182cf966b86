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
 * typed into REDCap, the values REDCap has now: {record: [v, ...]} in the
 * order of mapping_redcap_anchor_fields() (see push.h, anchor mode). A
 * patient whose anchor values changed since it was last curated waits
 * again (a keyed digest per patient is kept, never the values).
 */
int curate_run(store *st, int64_t server, const config *cfg, mapping *const *maps, json_t *const *anchors,
	       curate_stats *stats, volatile int *stop);

json_t *curate_stats_json(const curate_stats *s);

/*
 * The site's local time zone for mapping_env.local_to_utc: call once at
 * start with site.timezone (sets TZ for this process; only curation reads
 * local time).
 */
void curate_set_timezone(const char *zone);
int curate_local_to_utc(void *ud, int year, int month, int day, int hour, int min, int sec, int64_t *us);
