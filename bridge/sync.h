/*
 * sync — one pull cycle: for each configured resource type, crawl the FHIR
 * search (incremental by _lastUpdated from the stored watermark, or resuming
 * a crawl that was interrupted), following next links as given, and store
 * each page together with the advance of its cursor in one transaction.
 *
 * Network and parsing run on the loop thread; each page's store transaction
 * runs on a libuv worker thread, one at a time, so that the next page is
 * being fetched while the last one is written.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "bridge/auth.h"
#include "bridge/config.h"
#include "bridge/http.h"
#include "offline-store/store.h"

typedef struct sync_cycle sync_cycle;

typedef struct sync_env {
	uv_loop_t *loop;
	const config *cfg;
	store *st;
	int64_t server_id;
	http_client *http;
	auth *auth;
	/* Told of every FHIR request's end for the EHR circuit breaker: the
	 * HTTP status (0 when no answer came: network error, timeout) and how
	 * long it took. May be NULL. */
	void (*observe)(void *ud, long status, double total_s);
	void *observe_ud;
} sync_env;

typedef void (*sync_done_fn)(sync_cycle *cy, void *ud);

/*
 * Start a cycle. done is called once on the loop thread when every type
 * has finished (or the cycle was stopped and the store work in flight has
 * committed). Then read the results and free with sync_cycle_free().
 */
int sync_cycle_start(sync_cycle **out, const sync_env *env, sync_done_fn done, void *ud);

/* Stop early: cancel requests and timers, let the page being stored commit. */
void sync_cycle_stop(sync_cycle *cy);

/* true if every type completed its crawl. */
bool sync_cycle_ok(const sync_cycle *cy);

/* Per-type results as a new JSON object:
 * {"ok": bool, "elapsed_s": x, "requests": n, "types": {"Observation": {"ok": bool,
 *   "pages": n, "fetched": n, "new": n, "full_crawl": bool, "error": "..."|null}}} */
json_t *sync_cycle_result(const sync_cycle *cy);

void sync_cycle_free(sync_cycle *cy);
