/*
 * ui-internal — what ui.c (server, sessions, login, page frame) and
 * ui-pages.c (the pages behind the login) share. Not a public interface.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bridge/html.h"
#include "bridge/password.h"
#include "bridge/ui.h"
#include "bridge/web.h"
#include "bridge/websession.h"
#include "offline-store/chart.h"

/* Largest page rendered (bytes). */
#define UI_PAGE_MAX (4u * 1024 * 1024)
/* Data older than this is shown on an amber banner. */
#define UI_STALE_MS (15 * 60 * 1000LL)

/* Patients whose base summary is kept (see ui-pages.c, patient_summary). */
#define UI_SUMMARY_CACHE 16

typedef struct ui_cached_summary {
	char patient[65];            /* "" = free slot */
	unsigned char fp[32];        /* digest of the patient's cached resources when it was built */
	int64_t day;                 /* UTC day it was built on (the age changes with the date) */
	json_t *sum;                 /* downtime_ops_base_summary (PHI: memory only, freed at ui_stop) */
	uint64_t used;               /* LRU tick */
} ui_cached_summary;

struct ui {
	ui_env env;
	store *st;                   /* the page's own connection */
	web_server *web;
	websession_table *sessions;
	websession_throttle *throttle;
	uv_timer_t sweep;
	unsigned char login_key[32]; /* HMAC key of login-form tokens (per process) */
	char dummy_hash[PASSWORD_HASH_SIZE]; /* verified against for unknown users: same cost */
	ui_cached_summary cache[UI_SUMMARY_CACHE];
	uint64_t cache_tick;
	int pending_closes;
	void (*done)(void *);
	void *done_ud;
};

/* One request being answered. */
typedef struct ui_req {
	ui *u;
	const web_request *r;
	web_response *res;
	websession *s;               /* NULL before the login */
	store_user user;             /* the logged-in user, read from the store for this request */
	int64_t now_ms;              /* wall clock */
	bool bad_field;              /* a form field came twice */
	bool failed;                 /* a header could not be added: the answer is a 500 */
} ui_req;

/* The state of a chart form answered again (an error, a confirmation). */
typedef struct ui_form_state {
	const char *kind;            /* chart kind name of the form in error, or NULL */
	const char *target;          /* med-stop / allergy-error: the resource id */
	const char *field;           /* the field the message is about, or NULL */
	const char *msg;             /* the message */
	bool confirm;                /* the message asks for "I confirm this value" */
} ui_form_state;

/* ---- ui.c: the frame every page shares ---- */

/* The doctype, head, banners (when logged in) and the header bar. */
void ui_page_begin(ui_req *q, html_buf *b, const char *title);
/* Close the page and make it the answer with status. */
void ui_page_end(ui_req *q, html_buf *b, int status);
/* A whole error page (status, a title, a sentence). */
void ui_error_page(ui_req *q, int status, const char *title, const char *msg);
/* 303 to location (a path of ours). */
void ui_redirect(ui_req *q, const char *location);
/* The hidden CSRF input of the session. */
void ui_csrf_input(ui_req *q, html_buf *b);
/* An instant shown in the site's time ("2026-05-01 14:03"); a date or an unreadable text as given. */
void ui_put_time(html_buf *b, const char *instant);
/* A form field sent once (NULL if absent); sent twice: NULL and q->bad_field. */
const char *ui_form1(ui_req *q, const char *name);
/* Monotonic milliseconds (sessions, throttle). */
int64_t ui_mono_ms(void);

/* ---- ui-pages.c: the pages behind the login ---- */

/* Drop every kept summary. */
void ui_summary_cache_clear(ui *u);

void ui_page_home(ui_req *q);
void ui_page_search(ui_req *q);
void ui_page_patient(ui_req *q, const char *id, const ui_form_state *fs);
void ui_post_chart(ui_req *q, const char *id);
void ui_page_register(ui_req *q, const char *field, const char *msg, int status);
void ui_post_register(ui_req *q);
void ui_page_entries(ui_req *q);

/* The CSS at /static/ui.css. */
extern const char ui_css[];
