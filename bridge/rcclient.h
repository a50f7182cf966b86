/*
 * rcclient — sending requests to a REDCap server from the loop: the one
 * place that knows REDCap's traffic rules, shared by the push and the
 * export.
 *
 * - rc_servers: one entry per REDCap URL of the config, kept for the life
 *   of the program: a sliding window of redcap.max_requests_per_minute
 *   (REDCap bans an IP for good above its limit, 600/min by default) and a
 *   "stopped" mark after a 403 or a ban. The window is kept in this process
 *   and, beside the store (<store.path>.redcap-rate-<hash of the URL>), in a
 *   file every process of the site shares: the daemon's push and an export
 *   running at the same time stay under the cap together.
 * - rc_call: one request at a time (a REDCap server is never sent two
 *   requests at once by one call). rc_call_send() waits for the server's
 *   window, posts the body, classifies the answer (redcap_classify) and
 *   retries transient failures itself — network errors, 5xx, 408/429
 *   without a ban, REDCap's offline answers — with jittered exponential
 *   backoff (redcap.retry). The callback sees every other answer, or the
 *   last transient one when the attempts ran out (gave_up).
 *
 * Bodies hold the API token: they are wiped when freed, never logged.
 * All calls on the loop thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "bridge/config.h"
#include "bridge/http.h"
#include "bridge/ratelimit.h"
#include "redcap/redcap.h"

/* Slack added to the one-minute window (see rc_servers_new). */
#define RC_WINDOW_MARGIN_MS 5000

typedef struct rc_server {
	char *url;
	ratelimit rl;
	int rate_fd;              /* the window shared with the site's other processes, or -1 */
	bool stopped;             /* a 403 or a ban seen: no more traffic */
	char reason[512];
} rc_server;

typedef struct rc_servers {
	rc_server *v;
	size_t n;
} rc_servers;

int rc_servers_new(rc_servers **out, const config *cfg);

/*
 * A ban is for good and for the whole server: recorded in the store for
 * every project of the config on that URL (key RC_HALT_KEY), it stops the
 * push and the export until `push-resume`. rc_ban_get: the recorded reason
 * (malloc'd) or NULL. rc_ban_record: 0 or a store error code.
 */
#define RC_HALT_KEY "halted"
struct store;
char *rc_ban_get(struct store *st, const char *project);
int rc_ban_record(struct store *st, const config *cfg, const char *url, const char *what);
void rc_servers_free(rc_servers *s);
/* The entry of url (one of the config's REDCap URLs), or NULL. */
rc_server *rc_servers_get(rc_servers *s, const char *url);

typedef struct rc_result {
	redcap_class cls;         /* REDCAP_RETRY with gave_up: attempts ran out */
	bool gave_up;
	int status;               /* HTTP status, 0 for a network error */
	const char *body;         /* the answer (valid during the callback) */
	size_t len;
	const redcap_answer *answer; /* classification, message, per-value errors */
	const char *desc;         /* a PHI-free one-line description */
} rc_result;

typedef void (*rc_done_fn)(void *ud, const rc_result *r);

typedef struct rc_call {
	uv_loop_t *loop;
	http_client *http;
	const config *cfg;
	rc_server *srv;
	const char *url;
	const char *name;         /* for log lines: the project name */

	uv_timer_t timer;
	http_xfer *xfer;
	char *body;
	size_t body_len;
	unsigned attempt;
	uint64_t rng;
	rc_done_fn done;
	void *ud;
	bool busy, closing;
	void (*closed)(struct rc_call *);

	long long requests;       /* sent, retries included */
	long long retries;
} rc_call;

/* Set up c (its timer on loop). srv, url and name must outlive it. */
void rc_call_init(rc_call *c, uv_loop_t *loop, http_client *http, const config *cfg, rc_server *srv,
		  const char *url, const char *name);

/*
 * Send b's body (taken from b, which is left empty) and call done once with
 * the outcome; never from inside this call. Returns 0, -EBUSY (a request is
 * in flight), -ENOMEM / REDCAP_E_TOO_LARGE (b is in error: nothing sent).
 */
int rc_call_send(rc_call *c, redcap_body *b, rc_done_fn done, void *ud);

/* Abandon the request in flight or waiting; done is not called. */
void rc_call_cancel(rc_call *c);

/* Cancel and close the timer; closed (may be NULL) runs once libuv has
 * closed it — only then may c's memory go. */
void rc_call_close(rc_call *c, void (*closed)(rc_call *c));
