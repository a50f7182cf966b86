/*
 * bridge/downtime.c — the EHR circuit breaker's probes and the writer of
 * pending chart entries (see downtime.h).
 *
 * One Bundle is in flight at a time: entries must reach the EHR in the
 * order they happened, and the EHR that just came back should not be
 * flooded. Throughput comes from the batch size instead.
 */
#include "bridge/downtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/backoff.h"
#include "bridge/chart.h"
#include "bridge/log.h"
#include "bridge/util.h"
#include "fhir/fhir.h"
#include "offline-store/chart.h"
#include "offline-store/outbox.h"

#define IDLE_POLL_MS 1000        /* how often an idle writer looks for entries charted by another process */
#define RETRY_BASE_MS 2000       /* backoff of entries the EHR could not take */
#define RETRY_MAX_MS 60000
#define TX_MAX_BODY (256u << 20)

struct downtime {
	downtime_env env;
	breaker br;
	bool continuous;          /* daemon: probe, and write whenever up */
	bool stopping;
	int open_handles;
	void (*stop_done)(void *ud);
	void *stop_ud;
	void (*drain_done)(void *ud);
	void *drain_ud;
	uint64_t rng;

	uv_timer_t probe_timer;
	http_xfer *probe_xfer;
	int64_t probe_started_ms;
	int64_t sent_ms;          /* when the Bundle in flight was sent (loop clock) */

	uv_timer_t write_timer;
	bool busy;                /* a Bundle, its token or a conflict fetch is under way */
	bool waiting_auth;
	unsigned auth_gen;
	bool reauthed;
	http_xfer *xfer;
	store_chart_entry *batch; /* the entries of the Bundle in flight */
	size_t n_batch;
	size_t limit;             /* entries per Bundle now: downtime.resync_batch, halved after a refused Bundle */
	size_t ok_limit;          /* the largest Bundle the EHR took in this run (0: none yet) */
	bool fetching_conflict;   /* xfer is the GET of a changed resource after a 412 */
	char *conflict_error;
	int64_t drain_until_ms;   /* drain: entries due before this moment (every pending one) */

	int64_t written, conflicts, rejected, retries, requests;
	int64_t written_reported; /* written when on_written was last called */
};

static void write_next(downtime *d);
static void on_probe_timer(uv_timer_t *t);

static void on_write_timer(uv_timer_t *t)
{
	write_next(t->data);
}
static void send_batch(downtime *d);
static void schedule_probe(downtime *d);

/* ---- state ------------------------------------------------------------------- */

static void persist_state(downtime *d, int64_t at_ms)
{
	char when[40];
	util_instant_ms(at_ms, when, sizeof(when));
	if (store_project_set(d->env.st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_STATE,
			      breaker_state_name(d->br.state)) != 0 ||
	    store_project_set(d->env.st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_SINCE, when) != 0)
		log_warn("store", "cannot record the EHR state: %s", store_errmsg(d->env.st));
}

static void state_changed(downtime *d, const breaker_event *ev)
{
	persist_state(d, util_wall_ms());
	const char *url = d->env.cfg->fhir_base_url;
	if (ev->to == BREAKER_DOWN)
		log_error("bridge", "EHR DOWN: %s stopped answering; pulls pause, charting goes on locally, "
				    "REDCap pushes go on", url);
	else if (ev->to == BREAKER_RECOVERING)
		log_warn("bridge", "EHR RECOVERING: %s answers again; confirming before writing back", url);
	else
		log_warn("bridge", "EHR UP: %s is back (was %s); pending entries are written now", url,
			 breaker_state_name(ev->from));
	if (d->env.on_state)
		d->env.on_state(d->env.ud, ev->from, ev->to);
	if (ev->to == BREAKER_UP)
		write_next(d);
}

/* One result into the breaker: status 0 for no answer; started on the loop clock. */
static void observe(downtime *d, breaker_source src, long status, int64_t started_ms)
{
	breaker_event ev;
	int64_t now = (int64_t)uv_now(d->env.loop);
	if (started_ms > now)
		started_ms = now;
	if (breaker_observe(&d->br, src, breaker_classify_http(status), started_ms, now, &ev) == 1)
		state_changed(d, &ev);
	if (src == BREAKER_TRAFFIC)
		schedule_probe(d); /* a failure makes a probe due, a success postpones it */
}

void downtime_observe(downtime *d, long status, double total_s)
{
	if (d && d->continuous && !d->stopping)
		observe(d, BREAKER_TRAFFIC, status, (int64_t)uv_now(d->env.loop) - (int64_t)(total_s * 1000.0));
}

breaker_state downtime_state(const downtime *d)
{
	return d->br.state;
}

/* ---- probes ------------------------------------------------------------------ */

static void schedule_probe(downtime *d)
{
	if (!d->continuous || d->stopping || d->probe_xfer)
		return;
	int64_t now = (int64_t)uv_now(d->env.loop);
	int64_t at = breaker_next_probe_ms(&d->br, now);
	uv_timer_start(&d->probe_timer, on_probe_timer, at > now ? (uint64_t)(at - now) : 0, 0);
}

static void on_probe(http_response *r, void *ud)
{
	downtime *d = ud;
	d->probe_xfer = NULL;
	if (d->stopping)
		return;
	long status = r->curl_code == CURLE_OK ? r->status : 0;
	if (status == 0 || status >= 500)
		log_debug("fhir", "probe failed: %s", status == 0 ? r->error : "HTTP 5xx");
	observe(d, BREAKER_PROBE, status, d->probe_started_ms);
	schedule_probe(d);
}

static void on_probe_timer(uv_timer_t *t)
{
	downtime *d = t->data;
	if (d->stopping || d->probe_xfer)
		return;
	char *url = NULL;
	util_setf(&url, "%s/metadata", d->env.cfg->fhir_base_url);
	if (!url) {
		uv_timer_start(&d->probe_timer, on_probe_timer, 1000, 0);
		return;
	}
	const char *hdrs[] = { "Accept: application/fhir+json", NULL };
	http_request req = {
		.method = "GET",
		.url = url,
		.headers = hdrs,
		.timeout_ms = (long)d->env.cfg->downtime_probe_timeout_s * 1000,
		.max_body = 32u << 20,
	};
	d->probe_started_ms = (int64_t)uv_now(d->env.loop);
	d->probe_xfer = http_submit(d->env.http, &req, on_probe, d);
	free(url);
	if (!d->probe_xfer)
		uv_timer_start(&d->probe_timer, on_probe_timer, 1000, 0);
}

/* ---- writing back ------------------------------------------------------------ */

static void batch_free(downtime *d)
{
	store_chart_entries_free(d->batch, d->n_batch);
	d->batch = NULL;
	d->n_batch = 0;
}

static bool may_write(const downtime *d)
{
	if (d->stopping)
		return false;
	return !d->continuous || breaker_allows_traffic(&d->br);
}

static void finish_drain(downtime *d)
{
	if (d->drain_done) {
		void (*fn)(void *) = d->drain_done;
		d->drain_done = NULL;
		fn(d->drain_ud);
	}
}

/* Nothing to send now: look again when the next entry is due, or soon. */
static void idle(downtime *d)
{
	d->busy = false;
	if (d->written > d->written_reported) {
		d->written_reported = d->written;
		if (d->continuous && d->env.on_written)
			d->env.on_written(d->env.ud);
	}
	if (!d->continuous) {
		finish_drain(d);
		return;
	}
	if (d->stopping)
		return;
	int64_t next = 0;
	uint64_t wait = IDLE_POLL_MS;
	if (store_chart_next_due(d->env.st, d->env.server_id, &next) == 0) {
		int64_t now = util_wall_ms();
		if (next > now && (uint64_t)(next - now) < wait)
			wait = (uint64_t)(next - now);
	}
	uv_timer_start(&d->write_timer, on_write_timer, wait, 0);
}

/* Every entry of the batch waits with backoff; the error is kept for status. */
static void retry_batch(downtime *d, const char *why, int64_t retry_after_ms)
{
	int64_t now = util_wall_ms();
	int rc = store_begin(d->env.st);
	for (size_t i = 0; rc == 0 && i < d->n_batch; i++) {
		uint64_t delay = backoff_delay_ms((unsigned)d->batch[i].attempts + 1, RETRY_BASE_MS, RETRY_MAX_MS,
						  retry_after_ms, &d->rng);
		rc = store_chart_mark_retry(d->env.st, d->batch[i].uuid, now + (int64_t)delay, why);
	}
	if (rc == 0)
		rc = store_commit(d->env.st);
	if (rc != 0) {
		log_error("store", "cannot record a retry: %s", store_errmsg(d->env.st));
		store_rollback(d->env.st);
	}
	d->retries += (int64_t)d->n_batch;
	log_warn("fhir", "writing %zu downtime entr%s back failed (%s); they wait and are sent again", d->n_batch,
		 d->n_batch == 1 ? "y" : "ies", why);
	batch_free(d);
	if (!d->continuous) {
		/* sync --once: one attempt; what failed waits for the next run. */
		d->busy = false;
		finish_drain(d);
		return;
	}
	idle(d);
}

static void mark_one(downtime *d, const store_chart_entry *e, int what, const char *ref, const char *msg,
		     const char *current)
{
	int64_t now = util_wall_ms();
	int rc;
	const char *action;
	if (what == STORE_CHART_WRITTEN) {
		rc = store_chart_mark_written(d->env.st, e->uuid, ref, now);
		action = "ehr-written";
		d->written++;
	} else if (what == STORE_CHART_CONFLICT) {
		rc = store_chart_mark_conflict(d->env.st, e->uuid, current, msg);
		action = "ehr-conflict";
		d->conflicts++;
	} else {
		rc = store_chart_mark_rejected(d->env.st, e->uuid, msg);
		action = "ehr-rejected";
		d->rejected++;
	}
	if (rc == 0) {
		char detail[512];
		snprintf(detail, sizeof(detail), "%s %s%s%s", e->kind, e->uuid, ref ? " -> " : "", ref ? ref : "");
		rc = store_audit_add(d->env.st, "bridge", action, e->patient, detail, now);
	}
	if (rc != 0)
		log_error("store", "entry %s: cannot record the EHR's answer: %s", e->uuid, store_errmsg(d->env.st));
}

static void on_conflict_fetched(http_response *r, void *ud)
{
	downtime *d = ud;
	d->xfer = NULL;
	d->fetching_conflict = false;
	if (d->stopping)
		return;
	const store_chart_entry *e = &d->batch[0];
	const char *current = r->curl_code == CURLE_OK && r->status == 200 ? r->body : NULL;
	if (!current)
		log_warn("fhir", "entry %s: cannot fetch the EHR's current %s (%s); the conflict is kept without it",
			 e->uuid, e->target, r->curl_code != CURLE_OK ? r->error : "no 200");
	store_begin(d->env.st);
	mark_one(d, e, STORE_CHART_CONFLICT, NULL, d->conflict_error, current);
	if (store_commit(d->env.st) != 0)
		store_rollback(d->env.st);
	log_warn("fhir", "entry %s: %s changed in the EHR since it was cached (HTTP 412); held for review", e->uuid,
		 e->target);
	free(d->conflict_error);
	d->conflict_error = NULL;
	batch_free(d);
	write_next(d);
}

static void fetch_conflict(downtime *d, const char *auth_header)
{
	const store_chart_entry *e = &d->batch[0];
	char *url = NULL;
	util_setf(&url, "%s/%s", d->env.cfg->fhir_base_url, e->target);
	const char *hdrs[] = { "Accept: application/fhir+json", auth_header, NULL };
	http_request req = { .method = "GET", .url = url, .headers = hdrs,
			     .timeout_ms = (long)d->env.cfg->fhir_timeout_s * 1000 };
	d->fetching_conflict = true;
	d->xfer = url ? http_submit(d->env.http, &req, on_conflict_fetched, d) : NULL;
	free(url);
	d->requests++;
	if (!d->xfer) {
		http_response none = { .curl_code = CURLE_OUT_OF_MEMORY };
		snprintf(none.error, sizeof(none.error), "out of memory");
		on_conflict_fetched(&none, d);
	}
}

static void on_conflict_auth(void *ud, const char *header, const char *err, bool retryable)
{
	downtime *d = ud;
	(void)retryable;
	d->waiting_auth = false;
	if (d->stopping)
		return;
	fetch_conflict(d, err ? NULL : header);
}

/* A 412 on a change: fetch the EHR's version so that review can show both. */
static void start_conflict(downtime *d, const char *why)
{
	d->conflict_error = strdup(why);
	const char *auth_header = NULL;
	int rc = auth_get(d->env.auth, &auth_header, on_conflict_auth, d);
	if (rc == 1) {
		d->waiting_auth = true;
		return;
	}
	fetch_conflict(d, rc == 0 ? auth_header : NULL);
}

static bool status_ok(int st)
{
	return st >= 200 && st < 300;
}

/* The EHR answered the Bundle with 200: record each entry's result. */
static void take_response(downtime *d, http_response *r)
{
	chart_tx_result *res = calloc(d->n_batch, sizeof(*res));
	char err[512];
	if (!res) {
		retry_batch(d, "out of memory", -1);
		return;
	}
	if (chart_parse_transaction_response(r->body, r->len, d->n_batch, res, err, sizeof(err)) != 0) {
		free(res);
		retry_batch(d, err, -1);
		return;
	}
	size_t again = 0;
	int64_t written_before = d->written;
	int rc = store_begin(d->env.st);
	for (size_t i = 0; rc == 0 && i < d->n_batch; i++) {
		const store_chart_entry *e = &d->batch[i];
		if (status_ok(res[i].status) && status_ok(res[i].prov_status)) {
			mark_one(d, e, STORE_CHART_WRITTEN, res[i].location, NULL, NULL);
		} else {
			/* Transactions are all-or-nothing in R4; a server that
			 * answers per entry anyway gets the entry sent again. */
			uint64_t delay = backoff_delay_ms((unsigned)e->attempts + 1, RETRY_BASE_MS, RETRY_MAX_MS, -1,
							  &d->rng);
			char why[128];
			snprintf(why, sizeof(why), "the EHR answered %d for the entry, %d for its Provenance",
				 res[i].status, res[i].prov_status);
			rc = store_chart_mark_retry(d->env.st, e->uuid, util_wall_ms() + (int64_t)delay, why);
			again++;
		}
	}
	if (rc == 0)
		rc = store_commit(d->env.st);
	free(res);
	if (rc != 0) {
		/* Nothing recorded: the entries are sent again and found by their identifiers. */
		log_error("store", "cannot record the EHR's answer: %s", store_errmsg(d->env.st));
		store_rollback(d->env.st);
		d->written = written_before;
		again = d->n_batch;
	} else {
		log_info("fhir", "wrote %zu downtime entr%s to the EHR%s", d->n_batch - again,
			 d->n_batch - again == 1 ? "y" : "ies", again ? " (some wait for another attempt)" : "");
		if (d->n_batch > d->ok_limit)
			d->ok_limit = d->n_batch;
	}
	d->retries += (int64_t)again;
	batch_free(d);
	if (again && !d->continuous) {
		/* sync --once: one attempt per entry; the rest waits for the next run. */
		d->busy = false;
		finish_drain(d);
		return;
	}
	write_next(d);
}

static void on_bundle(http_response *r, void *ud)
{
	downtime *d = ud;
	char why[700];
	d->xfer = NULL;
	if (d->stopping)
		return;

	if (r->curl_code != CURLE_OK || r->status >= 500) {
		if (r->curl_code != CURLE_OK)
			snprintf(why, sizeof(why), "%s", r->error);
		else
			snprintf(why, sizeof(why), "HTTP %ld", r->status);
		if (d->continuous)
			observe(d, BREAKER_TRAFFIC, r->curl_code == CURLE_OK ? r->status : 0, d->sent_ms);
		retry_batch(d, why, -1);
		return;
	}
	if (d->continuous)
		observe(d, BREAKER_TRAFFIC, r->status, d->sent_ms);
	if (r->status == 200) {
		take_response(d, r);
		return;
	}
	if (r->status == 429) {
		long ra = -1;
		if (!r->retry_after || fhir_retry_after(r->retry_after, time(NULL), &ra) != 0)
			ra = -1;
		retry_batch(d, "HTTP 429 (the EHR is busy)", ra >= 0 ? ra * 1000 : -1);
		return;
	}
	if (r->status == 401 && auth_can_refresh(d->env.auth) && !d->reauthed) {
		log_warn("fhir", "HTTP 401 on a transaction; requesting a new access token");
		d->reauthed = true;
		auth_invalidate(d->env.auth, d->auth_gen);
		send_batch(d);
		return;
	}
	char sum[512];
	fhir_outcome_summary(r->body, r->len, sum, sizeof(sum));
	snprintf(why, sizeof(why), "HTTP %ld: %s", r->status, sum);
	if (d->n_batch > 1) {
		/* Too big for this EHR (some refuse large transactions), or one
		 * entry it refuses: the same entries again in halves, down to
		 * the one refused. */
		d->limit = d->n_batch / 2;
		log_warn("fhir", "the EHR refused a Bundle of %zu entries (%s); sending %zu at a time", d->n_batch, why,
			 d->limit);
		batch_free(d);
		write_next(d);
		return;
	}
	if (r->status == 412 && d->batch[0].if_match) {
		start_conflict(d, why);
		return;
	}
	if (r->status == 401 || r->status == 403) {
		/* Credentials or scopes: nothing a person can fix per entry. */
		log_error("fhir", "the EHR refuses the bridge's writes (%s): check fhir.auth and its write scopes", why);
		retry_batch(d, why, -1);
		return;
	}
	log_warn("fhir", "entry %s: the EHR refused it (%s); held for review", d->batch[0].uuid, why);
	store_begin(d->env.st);
	mark_one(d, &d->batch[0], STORE_CHART_REJECTED, NULL, why, NULL);
	if (store_commit(d->env.st) != 0)
		store_rollback(d->env.st);
	/* The refused one is out of the way: back to the largest Bundle that worked. */
	d->limit = d->ok_limit ? d->ok_limit : d->env.cfg->downtime_resync_batch;
	batch_free(d);
	write_next(d);
}

static void on_auth(void *ud, const char *header, const char *err, bool retryable)
{
	downtime *d = ud;
	d->waiting_auth = false;
	(void)header;
	if (d->stopping)
		return;
	if (err) {
		(void)retryable;
		retry_batch(d, err, -1);
		return;
	}
	send_batch(d);
}

/* Build the Bundle of d->batch and post it. */
static void send_batch(downtime *d)
{
	const char *auth_header = NULL;
	int rc = auth_get(d->env.auth, &auth_header, on_auth, d);
	if (rc == 1) {
		d->waiting_auth = true;
		return;
	}
	if (rc < 0) {
		retry_batch(d, "cannot authenticate", -1);
		return;
	}
	d->auth_gen = auth_generation(d->env.auth);

	chart_tx_item *items = calloc(d->n_batch, sizeof(*items));
	json_t **docs = calloc(2 * d->n_batch, sizeof(*docs));
	json_t *bundle = NULL;
	char *body = NULL;
	bool bad = !items || !docs;
	for (size_t i = 0; !bad && i < d->n_batch; i++) {
		const store_chart_entry *e = &d->batch[i];
		json_error_t jerr;
		docs[2 * i] = json_loadb(e->body, e->body_len, 0, &jerr);
		docs[2 * i + 1] = json_loadb(e->provenance, e->provenance_len, 0, &jerr);
		if (!docs[2 * i] || !docs[2 * i + 1]) {
			/* Stored by this program: unreadable means a bug or a damaged store. */
			log_error("store", "entry %s: its stored resource is not JSON; held for review", e->uuid);
			store_chart_mark_rejected(d->env.st, e->uuid, "the stored resource is not valid JSON");
			bad = true;
			break;
		}
		items[i] = (chart_tx_item){ .uuid = e->uuid, .resource = docs[2 * i], .provenance = docs[2 * i + 1],
					    .target = e->target, .if_match = e->if_match };
	}
	if (!bad) {
		bundle = chart_transaction(items, d->n_batch, d->env.cfg->downtime_identifier_system);
		body = bundle ? chart_dumps(bundle) : NULL;
	}
	for (size_t i = 0; docs && i < 2 * d->n_batch; i++)
		json_decref(docs[i]);
	free(docs);
	free(items);
	json_decref(bundle);
	if (!body) {
		if (bad) {
			batch_free(d);
			write_next(d);
		} else {
			retry_batch(d, "out of memory", -1);
		}
		return;
	}
	const char *hdrs[] = { "Content-Type: application/fhir+json", "Accept: application/fhir+json", auth_header,
			       NULL };
	http_request req = {
		.method = "POST",
		.url = d->env.cfg->fhir_base_url,
		.headers = hdrs,
		.body = body,
		.body_len = strlen(body),
		.timeout_ms = (long)d->env.cfg->fhir_timeout_s * 1000,
		.max_body = TX_MAX_BODY,
	};
	log_debug("fhir", "POST transaction with %zu entries (%zu bytes)", d->n_batch, req.body_len);
	d->sent_ms = (int64_t)uv_now(d->env.loop);
	d->xfer = http_submit(d->env.http, &req, on_bundle, d);
	free(body);
	d->requests++;
	if (!d->xfer)
		retry_batch(d, "out of memory", -1);
}

/* Take the next due entries and send them, or go idle. */
static void write_next(downtime *d)
{
	if (d->continuous)
		uv_timer_stop(&d->write_timer);
	if (!may_write(d)) {
		d->busy = false;
		if (!d->continuous)
			finish_drain(d);
		return;
	}
	if (d->xfer || d->waiting_auth || d->batch)
		return; /* one Bundle at a time */
	d->busy = true;
	d->reauthed = false;
	int64_t now = d->continuous ? util_wall_ms() : d->drain_until_ms;
	size_t limit = d->limit;
	store_chart_entry *due = NULL;
	size_t n = 0;
	if (store_chart_due(d->env.st, d->env.server_id, now, limit, &due, &n) != 0) {
		log_error("store", "cannot read pending entries: %s", store_errmsg(d->env.st));
		idle(d);
		return;
	}
	if (n == 0) {
		free(due);
		idle(d);
		return;
	}
	/* A change (If-Match) travels alone: its 412 must not hold back others. */
	size_t take = 1;
	if (!due[0].target)
		while (take < n && !due[take].target)
			take++;
	for (size_t i = take; i < n; i++)
		store_chart_entry_deinit(&due[i]);
	d->batch = due;
	d->n_batch = take;
	send_batch(d);
}

void downtime_kick(downtime *d)
{
	if (d && !d->busy && !d->stopping)
		write_next(d);
}

/* ---- life cycle -------------------------------------------------------------- */

static downtime *downtime_new(const downtime_env *env)
{
	downtime *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->env = *env;
	d->limit = env->cfg->downtime_resync_batch;
	d->rng = (uint64_t)util_wall_ms() ^ (uint64_t)(uintptr_t)d;
	breaker_opts bo = breaker_opts_default();
	bo.probe_interval_ms = (int64_t)env->cfg->downtime_probe_interval_s * 1000;
	bo.probe_timeout_ms = (int64_t)env->cfg->downtime_probe_timeout_s * 1000;
	bo.fail_threshold = env->cfg->downtime_fail_threshold;
	bo.recover_successes = env->cfg->downtime_recover_successes;
	bo.down_probe_max_ms = (int64_t)env->cfg->downtime_down_probe_max_s * 1000;
	if (bo.down_probe_min_ms > bo.down_probe_max_ms)
		bo.down_probe_min_ms = bo.down_probe_max_ms;
	if (breaker_init(&d->br, &bo, (int64_t)uv_now(env->loop)) != 0) {
		free(d);
		return NULL;
	}
	uv_timer_init(env->loop, &d->probe_timer);
	uv_timer_init(env->loop, &d->write_timer);
	d->probe_timer.data = d->write_timer.data = d;
	d->open_handles = 2;
	return d;
}

int downtime_start(downtime **out, const downtime_env *env)
{
	downtime *d = downtime_new(env);
	if (!d)
		return -ENOMEM;
	d->continuous = true;
	/* The last run's verdict stands until the first probe says otherwise:
	 * a restart during an outage must not hammer the EHR. */
	char *prev = NULL;
	if (store_project_get(env->st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_STATE, &prev) == 0 && prev &&
	    strcmp(prev, "up") != 0) {
		/* As many failed probes as it takes: DOWN until a probe succeeds. */
		int64_t now = (int64_t)uv_now(env->loop);
		for (unsigned i = 0; i < d->br.opts.fail_threshold && d->br.state == BREAKER_UP; i++)
			breaker_observe(&d->br, BREAKER_PROBE, BREAKER_FAIL, now, now, NULL);
		log_warn("bridge", "the EHR was %s when the bridge last ran: no pulls until a probe succeeds", prev);
	} else
		persist_state(d, util_wall_ms());
	free(prev);
	uv_timer_start(&d->probe_timer, on_probe_timer, 0, 0);
	uv_timer_start(&d->write_timer, on_write_timer, 0, 0);
	*out = d;
	return 0;
}

int downtime_drain(downtime **out, const downtime_env *env, void (*done)(void *ud), void *ud)
{
	downtime *d = downtime_new(env);
	if (!d)
		return -ENOMEM;
	d->drain_done = done;
	d->drain_ud = ud;
	/* Whatever backoff an earlier attempt set: sync --once is the operator's "now". */
	d->drain_until_ms = INT64_MAX;
	uv_timer_start(&d->write_timer, on_write_timer, 0, 0);
	*out = d;
	return 0;
}

json_t *downtime_stats(const downtime *d)
{
	return json_pack("{sI sI sI sI sI}", "written", (json_int_t)d->written, "conflicts", (json_int_t)d->conflicts,
			 "rejected", (json_int_t)d->rejected, "retries", (json_int_t)d->retries, "requests",
			 (json_int_t)d->requests);
}

static void on_closed(uv_handle_t *h)
{
	downtime *d = h->data;
	if (--d->open_handles > 0)
		return;
	void (*fn)(void *) = d->stop_done;
	void *ud = d->stop_ud;
	batch_free(d);
	free(d->conflict_error);
	free(d);
	if (fn)
		fn(ud);
}

void downtime_stop(downtime *d, void (*done)(void *ud), void *ud)
{
	if (!d)
		return;
	d->stopping = true;
	d->stop_done = done;
	d->stop_ud = ud;
	if (d->probe_xfer)
		http_cancel(d->probe_xfer);
	if (d->xfer)
		http_cancel(d->xfer);
	if (d->waiting_auth)
		auth_cancel(d->env.auth, d);
	d->probe_xfer = d->xfer = NULL;
	uv_close((uv_handle_t *)&d->probe_timer, on_closed);
	uv_close((uv_handle_t *)&d->write_timer, on_closed);
}
