/*
 * downtime — the daemon's side of downtime charting: the circuit breaker on
 * the EHR connection (health probes of GET [base]/metadata plus the results
 * of real traffic) and the writer that sends pending chart entries back to
 * the EHR when it is up.
 *
 * Writing back: due entries (offline-store/chart.h) in the order they
 * happened, up to downtime.resync_batch per transaction Bundle; each entry is
 * a conditional create on its identifier (or, for a change to an EHR
 * resource, a PUT with If-Match) followed by a PUT of its Provenance with a
 * client-assigned id, so sending a Bundle twice (a timeout, a crash between
 * the answer and the commit) finds the first writes instead of making
 * second ones. Answers:
 *   - 200 transaction-response: each entry marked written (its location kept);
 *   - 412 on a change: the EHR's current version is fetched and the entry
 *     becomes a conflict for a person (review), never an overwrite;
 *   - another 4xx: a Bundle of several entries is resent in halves (an EHR
 *     may refuse large transactions: Medplum takes at most 4 entries with
 *     conditional creates) until it is taken, and the size that worked is
 *     kept for the run; a single entry the EHR refuses is marked rejected
 *     (review);
 *   - network errors, timeouts, 5xx: the breaker hears of it; the entries
 *     wait with backoff; 429 waits (Retry-After) without counting as an
 *     outage.
 *
 * All calls on the loop thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "bridge/auth.h"
#include "bridge/breaker.h"
#include "bridge/config.h"
#include "bridge/http.h"
#include "offline-store/store.h"

typedef struct downtime downtime;

typedef struct downtime_env {
	uv_loop_t *loop;
	const config *cfg;
	store *st;
	int64_t server_id;
	http_client *http;
	auth *auth;
	/* Called after each state change (may be NULL). */
	void (*on_state)(void *ud, breaker_state from, breaker_state to);
	/* Called when the writer goes idle after writing entries (may be NULL):
	 * a pull now brings them back for curation. */
	void (*on_written)(void *ud);
	void *ud;
} downtime_env;

/*
 * Start probing (the first probe at once) and writing back. The breaker
 * starts in the state the store remembers from the last run (up when none).
 * Returns 0 or a negative errno.
 */
int downtime_start(downtime **out, const downtime_env *env);

/* A real FHIR request finished after total_s seconds with HTTP status
 * (0: no answer — a network error or a timeout). */
void downtime_observe(downtime *d, long status, double total_s);

breaker_state downtime_state(const downtime *d);

/* New entries may be due (a page or a CLI process charted): look now. */
void downtime_kick(downtime *d);

/*
 * For `sync --once`: write every due entry now whatever the breaker says
 * (one attempt per entry), then call done. Not with downtime_start's
 * continuous mode: a downtime made for draining does not probe.
 */
int downtime_drain(downtime **out, const downtime_env *env, void (*done)(void *ud), void *ud);

/* Counters of this run: {"written": n, "conflicts": n, "rejected": n, "retries": n, "requests": n}. */
json_t *downtime_stats(const downtime *d);

/*
 * Stop: cancel requests and timers. done (may be NULL) runs once every
 * handle is closed; d is freed then.
 */
void downtime_stop(downtime *d, void (*done)(void *ud), void *ud);

/* The project key/value names the state is kept under (store_project_get/set). */
#define DOWNTIME_KV_PROJECT "_ehr"
#define DOWNTIME_KV_STATE "state"
#define DOWNTIME_KV_SINCE "since"
#define DOWNTIME_KV_LAST_SYNC "last_sync" /* the start of the last pull that completed */
