/*
 * push — send the REDCap outbox: for each configured project with a
 * mapping, read the project's live data dictionary (project, metadata,
 * repeatingFormsEvents, event + formEventMapping when longitudinal), then
 * send the due outbox rows in imports of redcap.batch_size rows.
 *
 * Before a row is sent it is validated against the live dictionary with
 * REDCap's own messages (redcap/validate.h); a bad row is held back with
 * its messages and the good rows go on. An import that REDCap still
 * refuses is resolved without losing the good rows: per-value errors name
 * (record, field, value), so those rows are held and the rest resent; a
 * whole-request error or an out-of-memory answer splits the batch in
 * halves until the bad row stands alone. A row standing alone that REDCap
 * refuses without saying why (no per-value errors, no message about the
 * row's own record name, columns or event) is tried again in later cycles
 * with backoff and held only at the third such refusal.
 *
 * Held rows carry the source of their reasons (outbox.h): rows held by the
 * bridge's own check ("validation") are checked again every cycle against
 * the dictionary just read, and go as soon as they pass (so a project with
 * such rows reads its dictionary every cycle); the others wait for new
 * data or `fhir-redcap-bridge push-release`. Rows a refused patient's
 * curation held ("curation") go when the refusal ends. Logs: one warning
 * per project and kind of problem per cycle (field and message, record
 * names and values taken out); the detail per row at debug level only.
 *
 * Traffic: one request at a time per REDCap server, never more than
 * redcap.max_requests_per_minute to it (a sliding window shared by every
 * project on that server and kept across cycles). Network errors, 5xx and
 * REDCap's offline answers are retried with backoff; when the attempts run
 * out the rows wait for the next cycle. A 403 stops traffic to that server
 * for the cycle; a ban (429) stops it for good, recorded in the store,
 * until an operator clears it (`fhir-redcap-bridge push-resume`).
 *
 * All calls on the loop thread; store calls are short transactions made on
 * the loop thread (the push phase never overlaps the pull or curation).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "bridge/config.h"
#include "bridge/http.h"
#include "bridge/rcclient.h"
#include "offline-store/store.h"
#include "redcap/dictionary.h"

typedef struct push_run push_run;

typedef struct push_env {
	uv_loop_t *loop;
	const config *cfg;
	store *st;
	http_client *http;       /* the REDCap client (redcap.ca_file) */
	rc_servers *servers;      /* per REDCap server: rate window, stop marks (kept across cycles) */
	const char *only_project; /* NULL: every project with a mapping */
	/* Called with each project's live dictionary once it is read (check
	 * uses it); with dict_only nothing is sent and nothing due is needed. */
	void (*on_dict)(void *ud, const config_redcap_project *cp, const redcap_dict *d);
	void *dict_ud;
	bool dict_only;
	/*
	 * Anchor mode (before curation): for each project whose mapping reads
	 * anchors typed into REDCap (anchor_fields[i] non-NULL, n_anchor_fields[i]
	 * of them, i indexing cfg->redcap_projects), read the anchor fields of
	 * the records this cycle curates (anchor_records[i], n_anchor_records[i]
	 * of them; may be NULL) and of those REDCap lists as created or modified
	 * since the last read (PUSH_ANCHORS_READ_KEY in the store), in batches of
	 * redcap.batch_size records. Hands over a new JSON object
	 * {record: [value or "", ...]} keyed by the record name as REDCap
	 * compares names (pu_fold()), with an entry for every record read (values
	 * of the non-repeating rows, first event that has one), through
	 * on_anchors(dict_ud, i, values, listed_at), which takes the reference.
	 * listed_at is the wall ms the listing was asked at, to be stored under
	 * PUSH_ANCHORS_READ_KEY once the values are used, or 0 when REDCap could
	 * not list the records (only anchor_records[i] were read). A record not
	 * in the object was not read this cycle. Nothing is sent to REDCap's
	 * records in this mode.
	 */
	const char *const *const *anchor_fields;
	const size_t *n_anchor_fields;
	const char *const *const *anchor_records;
	const size_t *n_anchor_records;
	void (*on_anchors)(void *ud, size_t project_index, json_t *values, int64_t listed_at);
} push_env;

typedef void (*push_done_fn)(push_run *pr, void *ud);

/* Start sending. done is called once on the loop thread. */
int push_run_start(push_run **out, const push_env *env, push_done_fn done, void *ud);

/* Stop early: cancel the request in flight (its rows stay pending). */
void push_run_stop(push_run *pr);

/* true if every project's due rows were sent or held back. */
bool push_run_ok(const push_run *pr);

/* {"ok": bool, "projects": {"P": {"ok": bool, "sent": n, "held": n, "deferred": n, "released": n,
 *   "requests": n, "records": n, "retries": n, "splits": n, "batches": n, "error": "..."|null}}}
 * deferred: single rows REDCap refused without saying why, tried again in a later cycle;
 * released: held rows that passed the live dictionary this cycle. */
json_t *push_run_result(const push_run *pr);

void push_run_free(push_run *pr);

/* The store key under which a ban is recorded for a project. */
#define PUSH_HALT_KEY RC_HALT_KEY /* (bridge/rcclient.h) */

/* The store key of a project's last complete anchor read (wall ms, decimal). */
#define PUSH_ANCHORS_READ_KEY "anchors_read_at"
