#include "bridge/sync.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge/backoff.h"
#include "bridge/log.h"
#include "bridge/patients.h"
#include "bridge/util.h"
#include "fhir/fhir.h"

/* Pages fetched ahead of the store for one type (bounds memory). */
#define SYNC_MAX_PAGES_AHEAD 6
/* Rows in one store transaction at most (a batch holds at least one page). */
#define SYNC_BATCH_MAX_ROWS 20000
/* Times a crawl may restart from its watermark after its paging expired. */
#define SYNC_MAX_RESTARTS 2

typedef enum tc_state {
	TC_QUEUED = 0,
	TC_ACTIVE,
	TC_DONE,
	TC_FAILED,
} tc_state;

typedef struct type_crawl {
	sync_cycle *cy;
	const char *type;
	tc_state state;

	store_cursor cur;        /* as stored; updated as pages are queued */
	char *url;               /* next URL to fetch; NULL when the crawl has no more pages */
	bool url_is_link;        /* url is a next link (not the first search) */
	bool full_crawl;         /* watermark not used (never synced, or server refused it) */
	bool no_sort;            /* the server refused _sort=_lastUpdated for this type */
	bool no_since;           /* the server refused _lastUpdated for this type */

	http_xfer *xfer;
	bool waiting_auth;
	uv_timer_t retry_timer;
	bool retry_pending;
	unsigned attempt;
	bool reauthed;
	unsigned auth_gen;
	unsigned restarts;
	int jobs_pending;
	bool store_failed;       /* a batch with a page of this type failed to commit */

	int64_t pages, fetched, new_count;
	char *error;
} type_crawl;

typedef struct store_job {
	type_crawl *tc;
	char *body;
	size_t len;
	fhir_page page;
	store_cursor cur;        /* to write with the page (next_url owned) */
	bool last;               /* the crawl's last page */
	int64_t n_new;           /* result: resources new to the store */
	struct store_job *next;
} store_job;

struct sync_cycle {
	sync_env env;
	sync_done_fn done;
	void *ud;
	type_crawl *types;
	size_t n_types;
	size_t next_queued;      /* index of the next TC_QUEUED type to start */
	unsigned active;
	bool stopping;
	bool finished;
	bool freeing;
	int open_timers;
	store_job *q_head, *q_tail;
	bool job_running;
	uint64_t t_start_ms;
	double elapsed_s;
	unsigned requests;
	uint64_t rng;
	double fetch_s;          /* summed transfer times (overlapping ones count each) */
	double parse_s;          /* summed page parse times (loop thread) */
	double store_s;          /* summed store transaction times (worker thread) */
};

static void tc_fetch(type_crawl *tc);
static void tc_continue(type_crawl *tc);
static void cycle_check(sync_cycle *cy);

#define tc_set_error(tc, ...) util_setf(&(tc)->error, __VA_ARGS__)

/* The type has finished, for good or ill; make room for the next one. */
static void tc_finish(type_crawl *tc, tc_state st)
{
	if (tc->state == TC_DONE || tc->state == TC_FAILED)
		return;
	sync_cycle *cy = tc->cy;
	tc->state = st;
	cy->active--;
	if (st == TC_FAILED)
		log_error("fhir", "%s: %s", tc->type, tc->error ? tc->error : "failed");
	else
		log_info("fhir", "%s: crawl complete pages=%lld fetched=%lld new=%lld%s", tc->type,
			 (long long)tc->pages, (long long)tc->fetched, (long long)tc->new_count,
			 tc->full_crawl ? " (full crawl)" : "");
}

/* Drop whatever the type is waiting for: a request, a token, a retry timer. */
static void tc_cancel_io(type_crawl *tc)
{
	if (tc->xfer) {
		http_cancel(tc->xfer);
		tc->xfer = NULL;
	}
	if (tc->waiting_auth) {
		auth_cancel(tc->cy->env.auth, tc);
		tc->waiting_auth = false;
	}
	if (tc->retry_pending) {
		uv_timer_stop(&tc->retry_timer);
		tc->retry_pending = false;
	}
}

static void tc_fail(type_crawl *tc)
{
	tc_cancel_io(tc);
	free(tc->url);
	tc->url = NULL;
	tc_finish(tc, TC_FAILED);
}

/* ---- the store worker ---------------------------------------------------- */

static void job_free(store_job *j)
{
	fhir_page_deinit(&j->page);
	free(j->body);
	store_cursor_deinit(&j->cur);
	free(j);
}

/*
 * A batch: the pages queued when the worker became free, written in one
 * transaction, each with its cursor. When the store is the bottleneck the
 * queue fills and the batches grow (group commit), which spreads the cost
 * of rewriting the key indexes over more rows; when it is not, a batch is
 * one page. Either way a page and the cursor that points past it commit
 * together, and a kill -9 loses only pages not yet committed, which the
 * cursor makes the next run fetch again.
 */
typedef struct store_batch {
	sync_cycle *cy;
	store_job *jobs;         /* linked by next, in queue order */
	size_t n_jobs;
	size_t n_rows;
	int rc;
	char err[512];
	double store_s;
	uv_work_t work;
} store_batch;

static int batch_put_page(store *st, int64_t srv, store_job *j)
{
	for (size_t i = 0; i < j->page.n_entries; i++) {
		const fhir_entry *e = &j->page.entries[i];
		if (e->search_mode == 2 || !e->id[0])
			continue;
		store_resource r = {
			.type = e->type,
			.id = e->id,
			.version_id = e->version_id,
			.last_updated = e->last_updated,
			.patient = e->patient,
			.body = e->body,
			.body_len = e->body_len,
		};
		int is_new = 0;
		int rc = store_put_resource(st, srv, &r, &is_new);
		if (rc == 0 && is_new && strcmp(e->type, "Patient") == 0)
			rc = patients_index_one(st, srv, e->id, e->body, e->body_len, j->tc->cy->env.cfg->fhir_mrn_system);
		if (rc != 0)
			return rc;
		j->n_new += is_new;
	}
	return store_cursor_put(st, srv, j->tc->type, &j->cur);
}

/* Runs on a worker thread: every page of the batch and its cursor, one transaction. */
static void batch_work(uv_work_t *w)
{
	store_batch *b = w->data;
	store *st = b->cy->env.st;
	int64_t srv = b->cy->env.server_id;
	uint64_t t0 = uv_hrtime();

	b->rc = store_begin(st);
	for (store_job *j = b->jobs; b->rc == 0 && j; j = j->next)
		b->rc = batch_put_page(st, srv, j);
	if (b->rc == 0)
		b->rc = store_commit(st);
	if (b->rc != 0) {
		snprintf(b->err, sizeof(b->err), "store: %s", store_errmsg(st));
		store_rollback(st);
	}
	b->store_s = (double)(uv_hrtime() - t0) / 1e9;
}

static void job_start_next(sync_cycle *cy);

static void batch_after(uv_work_t *w, int status)
{
	store_batch *b = w->data;
	sync_cycle *cy = b->cy;

	cy->job_running = false;
	if (status == UV_ECANCELED && b->rc == 0) {
		b->rc = -ECANCELED;
		snprintf(b->err, sizeof(b->err), "store work cancelled");
	}
	if (b->rc == 0) {
		cy->store_s += b->store_s;
		log_debug("store", "batch stored pages=%zu rows=%zu in %.1f ms", b->n_jobs, b->n_rows,
			  b->store_s * 1000.0);
	}
	store_job *j = b->jobs;
	while (j) {
		store_job *next = j->next;
		type_crawl *tc = j->tc;
		tc->jobs_pending--;
		if (b->rc != 0) {
			/* Nothing of the batch was written; the cursors still point
			 * before these pages, so nothing is lost either. */
			tc->store_failed = true;
			if (tc->state == TC_ACTIVE) {
				tc_set_error(tc, "%s", b->err);
				tc_fail(tc);
			}
		} else {
			tc->new_count += j->n_new;
			if (j->last && tc->state == TC_ACTIVE && !tc->url)
				tc_finish(tc, TC_DONE);
		}
		job_free(j);
		j = next;
	}
	free(b);
	job_start_next(cy);
	for (size_t i = 0; i < cy->n_types; i++)
		if (cy->types[i].state == TC_ACTIVE)
			tc_continue(&cy->types[i]);
	cycle_check(cy);
}

static void job_start_next(sync_cycle *cy)
{
	if (cy->job_running || !cy->q_head)
		return;
	store_batch *b = calloc(1, sizeof(*b));
	if (!b)
		return; /* retried when the next page arrives or a batch ends */
	b->cy = cy;
	store_job **tail = &b->jobs;
	while (cy->q_head && (b->n_rows == 0 || b->n_rows + cy->q_head->page.n_entries <= SYNC_BATCH_MAX_ROWS)) {
		store_job *j = cy->q_head;
		cy->q_head = j->next;
		if (!cy->q_head)
			cy->q_tail = NULL;
		j->next = NULL;
		if (j->tc->store_failed) {
			/* An earlier page of this type failed to commit: don't write
			 * past the hole. (Pages queued before a fetch or parse error
			 * are still written: their cursors are consistent.) */
			j->tc->jobs_pending--;
			job_free(j);
			continue;
		}
		*tail = j;
		tail = &j->next;
		b->n_jobs++;
		b->n_rows += j->page.n_entries;
	}
	if (!b->jobs) {
		free(b);
		return;
	}
	cy->job_running = true;
	b->work.data = b;
	if (uv_queue_work(cy->env.loop, &b->work, batch_work, batch_after) != 0) {
		/* Could not hand it to a thread: run it here. */
		batch_work(&b->work);
		batch_after(&b->work, 0);
	}
}

static void job_enqueue(sync_cycle *cy, store_job *j)
{
	j->tc->jobs_pending++;
	if (cy->q_tail)
		cy->q_tail->next = j;
	else
		cy->q_head = j;
	cy->q_tail = j;
	job_start_next(cy);
}

/* ---- fetching ------------------------------------------------------------ */

static void on_retry_timer(uv_timer_t *t)
{
	type_crawl *tc = t->data;
	tc->retry_pending = false;
	if (tc->state == TC_ACTIVE && !tc->cy->stopping)
		tc_fetch(tc);
	cycle_check(tc->cy);
}

/* Schedule another attempt, or give up after max attempts. */
static void tc_retry(type_crawl *tc, const char *why, long retry_after_s)
{
	sync_cycle *cy = tc->cy;
	const config *cfg = cy->env.cfg;

	tc->attempt++;
	if (tc->attempt >= cfg->fhir_retry_max_attempts) {
		tc_set_error(tc, "giving up after %u attempts: %s", tc->attempt, why);
		tc_fail(tc);
		return;
	}
	uint64_t delay = backoff_delay_ms(tc->attempt, cfg->fhir_retry_base_ms, cfg->fhir_retry_max_ms,
					  retry_after_s >= 0 ? (int64_t)retry_after_s * 1000 : -1, &cy->rng);
	log_warn("fhir", "%s: %s; retry %u of %u in %.1f s", tc->type, why, tc->attempt,
		 cfg->fhir_retry_max_attempts - 1, (double)delay / 1000.0);
	tc->retry_pending = true;
	uv_timer_start(&tc->retry_timer, on_retry_timer, delay, 0);
}

static bool status_retryable(long st)
{
	return st == 408 || st == 429 || st == 500 || st == 502 || st == 503 || st == 504;
}

/* Begin (or begin again) a crawl from the stored watermark, with the
 * search parameters the server has not refused. */
static int tc_begin_crawl(type_crawl *tc)
{
	sync_cycle *cy = tc->cy;
	const config *cfg = cy->env.cfg;
	char started[FHIR_INSTANT_MAX];
	const char *since = !tc->no_since && tc->cur.watermark[0] ? tc->cur.watermark : NULL;

	fhir_format_instant(util_wall_ms() - (int64_t)cfg->fhir_watermark_skew_s * 1000, started);
	snprintf(tc->cur.crawl_started, sizeof(tc->cur.crawl_started), "%s", started);
	tc->cur.pages = 0;
	free(tc->url);
	tc->url = fhir_search_url_ex(cfg->fhir_base_url, tc->type, cfg->fhir_page_size, since, !tc->no_sort);
	tc->url_is_link = false;
	tc->full_crawl = since == NULL;
	if (!tc->url) {
		tc_set_error(tc, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static void on_page(http_response *r, void *ud);

/*
 * The server answered 400 to the first search of a crawl. Step down the
 * ladder: without _sort=_lastUpdated (some servers refuse it on some types),
 * then without _lastUpdated (a full crawl, sorted again), then both. Returns
 * false when there is no rung left.
 */
static bool tc_fall_back(type_crawl *tc, const char *why)
{
	bool has_since = !tc->no_since && tc->cur.watermark[0];
	if (!tc->no_sort) {
		tc->no_sort = true;
		log_warn("fhir", "%s: the server rejected the search (%s); trying again without _sort=_lastUpdated",
			 tc->type, why);
	} else if (has_since) {
		tc->no_since = true;
		tc->no_sort = false;
		log_warn("fhir", "%s: the server rejected the _lastUpdated search (%s); falling back to a full crawl",
			 tc->type, why);
	} else {
		return false;
	}
	return true;
}

static void on_auth(void *ud, const char *header, const char *err, bool retryable)
{
	type_crawl *tc = ud;
	tc->waiting_auth = false;
	if (tc->state != TC_ACTIVE || tc->cy->stopping)
		return;
	if (err) {
		if (retryable) {
			tc_retry(tc, err, -1);
		} else {
			tc_set_error(tc, "%s", err);
			tc_fail(tc);
		}
		cycle_check(tc->cy);
		return;
	}
	(void)header;
	tc_fetch(tc);
}

static void tc_fetch(type_crawl *tc)
{
	sync_cycle *cy = tc->cy;
	const char *auth_header = NULL;

	int rc = auth_get(cy->env.auth, &auth_header, on_auth, tc);
	if (rc == 1) {
		tc->waiting_auth = true;
		return;
	}
	if (rc < 0) {
		tc_set_error(tc, "cannot authenticate: %s", strerror(-rc));
		tc_fail(tc);
		return;
	}
	tc->auth_gen = auth_generation(cy->env.auth);
	const char *hdrs[3] = { "Accept: application/fhir+json", auth_header, NULL };
	http_request req = {
		.method = "GET",
		.url = tc->url,
		.headers = hdrs,
		.timeout_ms = (long)cy->env.cfg->fhir_timeout_s * 1000,
	};
	log_debug("fhir", "%s: GET %s", tc->type, tc->url);
	tc->xfer = http_submit(cy->env.http, &req, on_page, tc);
	if (!tc->xfer) {
		tc_set_error(tc, "cannot start a request: out of memory");
		tc_fail(tc);
		return;
	}
	cy->requests++;
}

/* Fetch the next page if there is one and the store is not too far behind. */
static void tc_continue(type_crawl *tc)
{
	if (tc->state != TC_ACTIVE || tc->cy->stopping)
		return;
	if (tc->xfer || tc->waiting_auth || tc->retry_pending)
		return;
	if (tc->url) {
		if (tc->jobs_pending < SYNC_MAX_PAGES_AHEAD)
			tc_fetch(tc);
	} else if (tc->jobs_pending == 0) {
		tc_finish(tc, TC_DONE);
	}
}

/*
 * The watermark must come from the server's clock, since that is what
 * stamps meta.lastUpdated: a client clock ahead of the server's would skip
 * what the server updates in between. On the first page of a crawl, if the
 * server's Date (less the request's duration) minus the skew margin is
 * earlier than the start we took from our own clock, take it.
 */
static void tc_use_server_clock(type_crawl *tc, const http_response *r)
{
	if (!r->date)
		return;
	time_t server_t = curl_getdate(r->date, NULL);
	int64_t ours_ms;
	if (server_t <= 0 || fhir_parse_instant(tc->cur.crawl_started, &ours_ms) != 0)
		return;
	const config *cfg = tc->cy->env.cfg;
	/* Date is the server's time truncated to the second, so Date less the
	 * whole request's duration is no later than the server's time when the
	 * search ran; less the margin, as for our own clock. */
	int64_t server_start_ms = (int64_t)server_t * 1000 - (int64_t)(r->total_s * 1000.0) - 1 -
				  (int64_t)cfg->fhir_watermark_skew_s * 1000;
	if (server_start_ms >= ours_ms)
		return;
	int64_t behind_s = (ours_ms - server_start_ms) / 1000;
	if (behind_s > 60)
		log_warn("fhir", "%s: the server's clock is about %lld s behind ours; the watermark follows the server",
			 tc->type, (long long)behind_s);
	char inst[FHIR_INSTANT_MAX];
	fhir_format_instant(server_start_ms, inst);
	snprintf(tc->cur.crawl_started, sizeof(tc->cur.crawl_started), "%s", inst);
}

static void handle_page(type_crawl *tc, http_response *r)
{
	sync_cycle *cy = tc->cy;
	store_job *j = calloc(1, sizeof(*j));
	if (!j) {
		tc_set_error(tc, "out of memory");
		tc_fail(tc);
		return;
	}
	j->tc = tc;
	j->page = (fhir_page)FHIR_PAGE_NULL;
	j->body = http_response_take_body(r, &j->len);

	fhir_error perr = { 0 };
	uint64_t t0 = uv_hrtime();
	int rc = fhir_page_parse(&j->page, j->body, j->len, &perr);
	double parse_s = (double)(uv_hrtime() - t0) / 1e9;
	cy->parse_s += parse_s;
	cy->fetch_s += r->total_s;
	if (rc != 0) {
		tc_set_error(tc, "bad page from %s: %s", r->url, perr.msg[0] ? perr.msg : "cannot parse");
		job_free(j);
		tc_fail(tc);
		return;
	}
	size_t skipped = 0;
	for (size_t i = 0; i < j->page.n_entries; i++) {
		const fhir_entry *e = &j->page.entries[i];
		if (e->search_mode == 2) {
			char sum[512];
			fhir_outcome_summary(e->body, e->body_len, sum, sizeof(sum));
			log_warn("fhir", "%s: the server added an OperationOutcome to the page: %s", tc->type, sum);
		} else if (!e->id[0]) {
			skipped++;
		}
	}
	if (skipped)
		log_warn("fhir", "%s: %zu entries without an id skipped", tc->type, skipped);

	char *next = NULL;
	if (j->page.next) {
		next = fhir_resolve_url(r->url, j->page.next);
		if (!next) {
			tc_set_error(tc, "out of memory");
			job_free(j);
			tc_fail(tc);
			return;
		}
		if (tc->url && strcmp(next, tc->url) == 0) {
			tc_set_error(tc, "the server's next link points back at the same page (%s)", next);
			free(next);
			job_free(j);
			tc_fail(tc);
			return;
		}
	}
	if (tc->cur.pages == 0 && !tc->url_is_link)
		tc_use_server_clock(tc, r);
	tc->pages++;
	tc->fetched += (int64_t)j->page.n_entries;
	tc->cur.pages++;
	tc->attempt = 0;
	tc->reauthed = false;

	/* The cursor that commits with this page. */
	j->cur = tc->cur;
	j->cur.next_url = next ? strdup(next) : NULL;
	if (next && !j->cur.next_url) {
		free(next);
		job_free(j);
		tc_set_error(tc, "out of memory");
		tc_fail(tc);
		return;
	}
	if (!next) {
		/* Last page: the watermark becomes the time the crawl started. */
		snprintf(j->cur.watermark, sizeof(j->cur.watermark), "%s", tc->cur.crawl_started);
		j->cur.crawl_started[0] = '\0';
		j->cur.pages = 0;
		fhir_format_instant(util_wall_ms(), j->cur.last_success);
		j->cur.last_error[0] = '\0';
		j->last = true;
		snprintf(tc->cur.watermark, sizeof(tc->cur.watermark), "%s", j->cur.watermark);
	}
	free(tc->url);
	tc->url = next;
	tc->url_is_link = next != NULL;
	log_debug("fhir", "%s: page %lld entries=%zu bytes=%zu fetch=%.1f ms parse=%.2f ms%s", tc->type,
		  (long long)tc->pages, j->page.n_entries, j->len, r->total_s * 1000.0, parse_s * 1000.0,
		  next ? "" : " (last)");
	job_enqueue(cy, j);
	/* Fetch the next page while this one is being stored. */
	tc_continue(tc);
}

static void on_page(http_response *r, void *ud)
{
	type_crawl *tc = ud;
	sync_cycle *cy = tc->cy;
	char why[600];

	tc->xfer = NULL;
	if (cy->env.observe)
		cy->env.observe(cy->env.observe_ud, r->curl_code == CURLE_OK ? r->status : 0, r->total_s);
	if (tc->state != TC_ACTIVE)
		return;

	if (r->curl_code != CURLE_OK) {
		snprintf(why, sizeof(why), "GET %s: %s", r->url, r->error);
		tc_retry(tc, why, -1);
	} else if (r->status == 200) {
		handle_page(tc, r);
	} else if (status_retryable(r->status)) {
		long ra = -1;
		if (r->retry_after && fhir_retry_after(r->retry_after, time(NULL), &ra) != 0)
			ra = -1;
		snprintf(why, sizeof(why), "GET %s: HTTP %ld%s%s", r->url, r->status,
			 r->retry_after ? ", Retry-After: " : "", r->retry_after ? r->retry_after : "");
		tc_retry(tc, why, ra);
	} else if (r->status == 401 && auth_can_refresh(cy->env.auth) && !tc->reauthed) {
		log_warn("fhir", "%s: HTTP 401; requesting a new access token", tc->type);
		tc->reauthed = true;
		auth_invalidate(cy->env.auth, tc->auth_gen);
		tc_fetch(tc);
	} else if ((r->status == 404 || r->status == 410) && tc->url_is_link &&
		   tc->restarts < SYNC_MAX_RESTARTS) {
		/* The server forgot the search (expired, or it restarted): start the
		 * crawl again from the watermark; pages already stored dedupe. */
		log_warn("fhir", "%s: next link answered HTTP %ld (search expired); restarting the crawl", tc->type,
			 r->status);
		tc->restarts++;
		if (tc_begin_crawl(tc) != 0)
			tc_fail(tc);
		else
			tc_fetch(tc);
	} else {
		char sum[512];
		fhir_outcome_summary(r->body, r->len, sum, sizeof(sum));
		if (r->status == 400 && !tc->url_is_link && tc_fall_back(tc, sum)) {
			if (tc_begin_crawl(tc) != 0)
				tc_fail(tc);
			else
				tc_fetch(tc);
		} else {
			tc_set_error(tc, "GET %s: HTTP %ld: %s", r->url, r->status, sum);
			tc_fail(tc);
		}
	}
	cycle_check(cy);
}

/* ---- the cycle ----------------------------------------------------------- */

static void cycle_start_types(sync_cycle *cy)
{
	while (!cy->stopping && cy->active < cy->env.cfg->fhir_max_concurrency && cy->next_queued < cy->n_types) {
		type_crawl *tc = &cy->types[cy->next_queued++];
		if (tc->state != TC_QUEUED)
			continue;
		tc->state = TC_ACTIVE;
		cy->active++;
		if (tc->cur.next_url) {
			/* A crawl was interrupted: resume from its next page. */
			tc->url = strdup(tc->cur.next_url);
			tc->url_is_link = true;
			tc->full_crawl = !tc->cur.watermark[0];
			log_info("fhir", "%s: resuming an interrupted crawl after %lld stored pages", tc->type,
				 (long long)tc->cur.pages);
			if (!tc->url) {
				tc_set_error(tc, "out of memory");
				tc_fail(tc);
				continue;
			}
		} else if (tc_begin_crawl(tc) != 0) {
			tc_fail(tc);
			continue;
		}
		log_info("fhir", "%s: crawl %s", tc->type,
			 tc->url_is_link ? "resumed" : tc->full_crawl ? "started (full)" : "started (incremental)");
		tc_fetch(tc);
	}
}

static void cycle_check(sync_cycle *cy)
{
	if (cy->finished)
		return;
	cycle_start_types(cy);
	if (cy->job_running || cy->q_head)
		return;
	for (size_t i = 0; i < cy->n_types; i++) {
		type_crawl *tc = &cy->types[i];
		if (tc->state == TC_ACTIVE && !cy->stopping)
			return;
		if (tc->xfer || tc->waiting_auth || tc->retry_pending)
			return;
		if (tc->state == TC_QUEUED && !cy->stopping)
			return;
	}
	cy->finished = true;
	cy->elapsed_s = (double)((uint64_t)util_wall_ms() - cy->t_start_ms) / 1000.0;
	/* Record failures where status can show them (no store job is running now). */
	for (size_t i = 0; i < cy->n_types; i++) {
		type_crawl *tc = &cy->types[i];
		if (tc->state == TC_FAILED && tc->error)
			store_cursor_set_error(cy->env.st, cy->env.server_id, tc->type, tc->error);
	}
	cy->done(cy, cy->ud);
}

int sync_cycle_start(sync_cycle **out, const sync_env *env, sync_done_fn done, void *ud)
{
	const config *cfg = env->cfg;
	sync_cycle *cy = calloc(1, sizeof(*cy));
	if (!cy)
		return -ENOMEM;
	cy->env = *env;
	cy->done = done;
	cy->ud = ud;
	cy->t_start_ms = (uint64_t)util_wall_ms();
	cy->rng = cy->t_start_ms ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
	cy->n_types = cfg->n_fhir_resources;
	cy->types = calloc(cy->n_types ? cy->n_types : 1, sizeof(*cy->types));
	if (!cy->types) {
		free(cy);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cy->n_types; i++) {
		type_crawl *tc = &cy->types[i];
		tc->cy = cy;
		tc->type = cfg->fhir_resources[i];
		uv_timer_init(env->loop, &tc->retry_timer);
		tc->retry_timer.data = tc;
		cy->open_timers++;
		int rc = store_cursor_get(env->st, env->server_id, tc->type, &tc->cur);
		if (rc != 0) {
			/* Counted as finished from the start: the starter skips it. */
			tc_set_error(tc, "cannot read the cursor: %s", store_errmsg(env->st));
			tc->state = TC_FAILED;
			log_error("fhir", "%s: %s", tc->type, tc->error);
		}
	}
	*out = cy;
	cycle_check(cy);
	return 0;
}

void sync_cycle_stop(sync_cycle *cy)
{
	if (cy->stopping || cy->finished)
		return;
	cy->stopping = true;
	for (size_t i = 0; i < cy->n_types; i++) {
		type_crawl *tc = &cy->types[i];
		tc_cancel_io(tc);
		if (tc->state == TC_ACTIVE) {
			tc_set_error(tc, "interrupted");
			tc->state = TC_FAILED;
			cy->active--;
		}
	}
	/* Pages already fetched are still stored (the queue drains); then done. */
	cycle_check(cy);
}

bool sync_cycle_ok(const sync_cycle *cy)
{
	for (size_t i = 0; i < cy->n_types; i++)
		if (cy->types[i].state != TC_DONE)
			return false;
	return true;
}

json_t *sync_cycle_result(const sync_cycle *cy)
{
	json_t *types = json_object();
	int64_t fetched = 0;
	for (size_t i = 0; i < cy->n_types; i++) {
		const type_crawl *tc = &cy->types[i];
		fetched += tc->fetched;
		json_object_set_new(types, tc->type,
				    json_pack("{s:b, s:I, s:I, s:I, s:b, s:s?}", "ok", tc->state == TC_DONE,
					      "pages", (json_int_t)tc->pages, "fetched", (json_int_t)tc->fetched,
					      "new", (json_int_t)tc->new_count, "full_crawl", tc->full_crawl,
					      "error", tc->state == TC_DONE ? NULL : tc->error));
	}
	return json_pack("{s:b, s:f, s:i, s:I, s:{s:f, s:f, s:f}, s:o}", "ok", sync_cycle_ok(cy), "elapsed_s",
			 cy->elapsed_s, "requests", (int)cy->requests, "fetched", (json_int_t)fetched, "time_s",
			 "fetch", cy->fetch_s, "parse", cy->parse_s, "store", cy->store_s, "types", types);
}

static void on_timer_closed(uv_handle_t *h)
{
	type_crawl *tc = h->data;
	sync_cycle *cy = tc->cy;
	if (--cy->open_timers > 0)
		return;
	for (size_t i = 0; i < cy->n_types; i++) {
		store_cursor_deinit(&cy->types[i].cur);
		free(cy->types[i].url);
		free(cy->types[i].error);
	}
	free(cy->types);
	free(cy);
}

void sync_cycle_free(sync_cycle *cy)
{
	if (!cy || cy->freeing)
		return;
	cy->freeing = true;
	if (!cy->finished) {
		/* Only legal once done was called; be defensive. */
		sync_cycle_stop(cy);
	}
	if (cy->n_types == 0) {
		free(cy->types);
		free(cy);
		return;
	}
	for (size_t i = 0; i < cy->n_types; i++)
		uv_close((uv_handle_t *)&cy->types[i].retry_timer, on_timer_closed);
}
