/*
 * ui — the local charting page of downtime charting, served by the daemon
 * (`run`) on its libuv loop when the config has a "ui" object.
 *
 * Plain server-rendered HTML (UTF-8, no JavaScript, one stylesheet at
 * /static/ui.css) over bridge/web.h: log in per clinician, search the
 * cached patients, read a patient's cached summary, chart vital signs, a
 * note, a medication administration, stop a medication, mark an allergy
 * entered in error, register a patient who is not in the cache, and follow
 * one's entries to the EHR. Every page after the login shows the EHR state
 * (down / recovering / up) and the age of the cached data.
 *
 * Routes (GET includes HEAD):
 *   GET  /static/ui.css
 *   GET  /login, POST /login          user + password
 *   POST /logout
 *   GET  /                            search box
 *   GET  /search?q=...                matching cached patients
 *   GET  /patient/<id>                summary, entries, forms (EHR id or DT- id)
 *   POST /patient/<id>/chart          kind + fields: one entry
 *   GET  /register, POST /register    a temporary patient (DT-...)
 *   GET  /entries                     the logged-in user's entries
 * Anything else: 404; a known path with another method: 405.
 *
 * Security: sessions in memory (websession.h; HttpOnly, SameSite=Strict,
 * Secure with ui.secure_cookies); the user is read from the store on every
 * request (a disabled user's sessions end at once); every POST needs its
 * Origin (else Referer) to be the page's own origin and a CSRF token (the
 * session's, or for the login form a token tied to a short-lived
 * pre-session cookie); wrong passwords lock the account (ui.lockout_*) and
 * failed logins are throttled per client address. Every login, logout,
 * search, patient view, entry and registration is an audit row (no PHI in
 * it). Nothing typed or read from the store is logged above debug.
 *
 * Store: the page opens its own connection to the store (cfg store.path and
 * key_file) and uses it only on the loop thread: the daemon's handle goes to
 * a worker thread during curation, and a store handle is for one thread at
 * a time. Entries are committed before "saved" is answered; the daemon's
 * writer sees them at once (downtime_kick).
 */
#pragma once

#include <stdint.h>
#include <stddef.h>

#include <uv.h>

#include "bridge/config.h"
#include "bridge/downtime.h"
#include "offline-store/store.h"

typedef struct ui ui;

typedef struct ui_env {
	uv_loop_t *loop;
	const config *cfg;        /* ui_*, downtime_*, store_*, fhir_mrn_system; must outlive the ui */
	store *st;                /* the daemon's handle: not used by the page (see above); may be NULL */
	int64_t server_id;        /* store_server_id() of the EHR */
	downtime *dt;             /* the EHR state and the writer to kick; NULL: state read from the store */
} ui_env;

/*
 * Start serving on cfg->ui_listen. 0, or a negative errno with a message in
 * err (the address cannot be bound: -EIO; the store cannot be opened: -EIO;
 * -ENOMEM). Nothing is left on the loop on failure.
 */
int ui_start(ui **out, const ui_env *env, char *err, size_t err_size);

/* The port listened on (useful with port 0). */
int ui_port(const ui *u);

/*
 * Stop: no request is served after this call; sessions end. done(ud) (may
 * be NULL) runs once every handle is closed and u is freed; run the loop
 * until then. u NULL: done runs at once.
 */
void ui_stop(ui *u, void (*done)(void *), void *ud);
