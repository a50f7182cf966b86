/*
 * bridge/ui.c — the charting page: the server on the loop, sessions, the
 * login, the checks every POST passes, routing and the frame every page
 * shares (see ui.h; the pages behind the login are in ui-pages.c).
 */
#include "bridge/ui.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "bridge/downtime.h"
#include "bridge/log.h"
#include "bridge/ui-internal.h"
#include "bridge/util.h"
#include "fhir/fhir.h"
#include "offline-store/outbox.h"

#define UI_LOG "ui"
#define SWEEP_MS (60 * 1000)

/* The pre-session cookie of the login form (double submit: the form carries an HMAC of its value). */
#define LOGIN_COOKIE "frb_login"
#define LOGIN_TOKEN_TTL_MS (15 * 60 * 1000LL)
#define LOGIN_RAND_HEX 32

int64_t ui_mono_ms(void)
{
	return (int64_t)(uv_hrtime() / 1000000u);
}

/* ---- small helpers -------------------------------------------------------- */

const char *ui_form1(ui_req *q, const char *name)
{
	if (web_form_count(q->r, name) > 1) {
		q->bad_field = true;
		return NULL;
	}
	return web_form(q->r, name);
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Add a header; a failure (out of room, out of memory) turns the answer into a 500 (q->failed). */
static void add_header(ui_req *q, const char *name, const char *value)
{
	if (web_response_header(q->res, name, value) != 0)
		q->failed = true;
}

void ui_put_time(html_buf *b, const char *instant)
{
	int64_t ms;
	if (!instant || !*instant) {
		html_puts(b, "-");
		return;
	}
	if (strlen(instant) <= 10 || fhir_parse_instant(instant, &ms) != 0) {
		html_esc(b, instant);
		return;
	}
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char out[64];
	if (!localtime_r(&t, &tm) || strftime(out, sizeof(out), "%Y-%m-%d %H:%M", &tm) == 0) {
		html_esc(b, instant);
		return;
	}
	html_printf(b, "<time datetime=\"");
	html_esc(b, instant);
	html_printf(b, "\">%s</time>", out);
}

/* ---- answers -------------------------------------------------------------- */

void ui_redirect(ui_req *q, const char *location)
{
	if (q->failed || web_response_text(q->res, 303, "303 see other") != 0 ||
	    web_response_header(q->res, "Location", location) != 0)
		web_response_text(q->res, 500, "500 internal error");
}

void ui_csrf_input(ui_req *q, html_buf *b)
{
	if (q->s)
		html_printf(b, "<input type=\"hidden\" name=\"csrf\" value=\"%s\">", q->s->csrf);
}

/* The EHR state: the breaker's when the daemon's is at hand, else what the store remembers. */
static breaker_state ehr_state(ui_req *q)
{
	if (q->u->env.dt)
		return downtime_state(q->u->env.dt);
	char *s = NULL;
	breaker_state st = BREAKER_UP;
	if (store_project_get(q->u->st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_STATE, &s) == 0 && s) {
		if (strcmp(s, "down") == 0)
			st = BREAKER_DOWN;
		else if (strcmp(s, "recovering") == 0)
			st = BREAKER_RECOVERING;
	}
	free(s);
	return st;
}

/* The two banners: the EHR state and the age of the cached data. */
static void put_banners(ui_req *q, html_buf *b)
{
	char *since = NULL, *last = NULL;
	store_project_get(q->u->st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_SINCE, &since);
	store_project_get(q->u->st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_LAST_SYNC, &last);
	breaker_state st = ehr_state(q);
	if (st == BREAKER_DOWN) {
		html_puts(b, "<div class=\"banner ehr-down\" role=\"alert\" id=\"ehr-banner\">"
			     "<strong>EHR DOWN</strong>");
		if (since) {
			html_puts(b, " since ");
			ui_put_time(b, since);
		}
		html_puts(b, " &mdash; you are charting into the bridge; entries are sent when it is back</div>");
	} else if (st == BREAKER_RECOVERING) {
		html_puts(b, "<div class=\"banner ehr-recovering\" role=\"alert\" id=\"ehr-banner\"><strong>EHR "
			     "RECOVERING</strong>");
		if (since) {
			html_puts(b, " since ");
			ui_put_time(b, since);
		}
		html_puts(b, " &mdash; the bridge is making sure it is back; entries are sent then</div>");
	} else {
		html_puts(b, "<div class=\"banner ehr-up\" id=\"ehr-banner\">EHR up</div>");
	}
	int64_t ms;
	if (last && fhir_parse_instant(last, &ms) == 0) {
		int64_t age = q->now_ms - ms;
		if (age < 0)
			age = 0;
		html_printf(b, "<div class=\"banner %s\" id=\"age-banner\">Data as of ",
			    age > UI_STALE_MS ? "age-old" : "age-ok");
		ui_put_time(b, last);
		html_printf(b, " (%lld min ago)</div>", (long long)(age / 60000));
	} else {
		html_puts(b, "<div class=\"banner age-old\" id=\"age-banner\">Data as of: never synced &mdash; the "
			     "bridge holds no copy of the EHR yet</div>");
	}
	free(since);
	free(last);
}

void ui_page_begin(ui_req *q, html_buf *b, const char *title)
{
	html_buf_init(b, UI_PAGE_MAX);
	html_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
		     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
		     /* Same-origin POSTs then carry their Origin (no-referrer would send "null"). */
		     "<meta name=\"referrer\" content=\"same-origin\">"
		     "<link rel=\"stylesheet\" href=\"/static/ui.css\"><title>");
	html_esc(b, title);
	html_puts(b, " &middot; downtime charting</title></head><body>");
	if (q->s) {
		put_banners(q, b);
		html_puts(b, "<header class=\"bar\"><nav><a href=\"/\">Find a patient</a>"
			     "<a href=\"/register\">Register a patient</a><a href=\"/entries\">My entries</a></nav>"
			     "<div class=\"who\">Logged in as <strong id=\"user-name\">");
		bool display = q->user.display && *q->user.display;
		html_esc(b, display ? q->user.display : q->user.name);
		html_puts(b, "</strong>");
		if (display) {
			html_puts(b, " (");
			html_esc(b, q->user.name);
			html_puts(b, ")");
		}
		html_puts(b, "<form method=\"post\" action=\"/logout\" class=\"inline\">");
		ui_csrf_input(q, b);
		html_puts(b, "<button type=\"submit\" class=\"secondary\" id=\"logout\">Log out</button></form></div>"
			     "</header>");
	}
	html_puts(b, "<main>");
}

void ui_page_end(ui_req *q, html_buf *b, int status)
{
	html_puts(b, "</main></body></html>\n");
	size_t len = 0;
	char *text = html_buf_take(b, &len);
	if (!text || q->failed) {
		free(text);
		web_response_text(q->res, 500, "500 the page could not be built");
		return;
	}
	free(q->res->body);
	q->res->body = text;
	q->res->body_len = len;
	q->res->content_type = "text/html; charset=utf-8";
	q->res->status = status;
}

void ui_error_page(ui_req *q, int status, const char *title, const char *msg)
{
	html_buf b;
	ui_page_begin(q, &b, title);
	html_printf(&b, "<h1>%d ", status);
	html_esc(&b, title);
	html_puts(&b, "</h1><p class=\"message error\">");
	html_esc(&b, msg);
	html_puts(&b, "</p><p><a href=\"/\">Back to the start</a></p>");
	ui_page_end(q, &b, status);
}

static void method_not_allowed(ui_req *q, const char *allow)
{
	add_header(q, "Allow", allow);
	ui_error_page(q, 405, "Method not allowed", "This page does not take that kind of request.");
}

static void forbidden(ui_req *q)
{
	ui_error_page(q, 403, "Forbidden", "The form expired; reload the page.");
}

/* ---- the checks every POST passes ----------------------------------------- */

/* Is origin[0..n) "http://<host>" or "https://<host>" (host compared without case)? */
static bool origin_is_ours(const char *origin, size_t n, const char *host)
{
	static const char *const schemes[] = { "http://", "https://" };
	size_t lh = strlen(host);
	for (size_t i = 0; i < 2; i++) {
		size_t ls = strlen(schemes[i]);
		if (n == ls + lh && strncasecmp(origin, schemes[i], ls) == 0 && strncasecmp(origin + ls, host, lh) == 0)
			return true;
	}
	return false;
}

/*
 * The request comes from one of our pages: its Origin (else its Referer's
 * origin) is the page's own (scheme, Host), and a Sec-Fetch-Site, when the
 * browser sends one, says same-origin. "Origin: null" is refused.
 */
static bool origin_ok(ui_req *q)
{
	const char *host = web_header(q->r, "Host");
	if (!host || !*host)
		return false;
	const char *site = web_header(q->r, "Sec-Fetch-Site");
	if (site && strcmp(site, "same-origin") != 0)
		return false;
	const char *origin = web_header(q->r, "Origin");
	if (origin)
		return origin_is_ours(origin, strlen(origin), host);
	const char *ref = web_header(q->r, "Referer");
	const char *sep = ref ? strstr(ref, "://") : NULL;
	if (!sep)
		return false;
	const char *slash = strchr(sep + 3, '/');
	return origin_is_ours(ref, slash ? (size_t)(slash - ref) : strlen(ref), host);
}

/* The login-form token of a pre-session cookie value: hex HMAC-SHA-256 under the per-process key. */
static bool login_token_of(const ui *u, const char *value, char out[65])
{
	unsigned char mac[32];
	size_t n = 0;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, u->login_key, sizeof(u->login_key),
		       (const unsigned char *)value, strlen(value), mac, sizeof(mac), &n) ||
	    n != sizeof(mac))
		return false;
	hex_encode(mac, sizeof(mac), out);
	return true;
}

/* A new pre-session cookie value "<issued ms>.<random hex>" into out. */
static bool login_cookie_new(char *out, size_t size, int64_t now_ms)
{
	unsigned char rnd[LOGIN_RAND_HEX / 2];
	char hex[LOGIN_RAND_HEX + 1];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return false;
	hex_encode(rnd, sizeof(rnd), hex);
	int n = snprintf(out, size, "%lld.%s", (long long)now_ms, hex);
	return n > 0 && (size_t)n < size;
}

/* Well formed and not expired at now_ms. */
static bool login_cookie_fresh(const char *v, int64_t now_ms)
{
	char *end = NULL;
	errno = 0;
	long long issued = strtoll(v, &end, 10);
	if (errno || end == v || *end != '.' || strlen(end + 1) != LOGIN_RAND_HEX)
		return false;
	for (const char *p = end + 1; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return issued <= now_ms + 60000 && now_ms - issued <= LOGIN_TOKEN_TTL_MS;
}

/*
 * The fresh frb_login cookie values of the request, one per call: *cursor
 * starts at the Cookie header (may be NULL) and advances; true with the
 * value in v, false at the end.
 */
static bool login_cookie_next(const char **cursor, int64_t now_ms, char v[64])
{
	const char *h = *cursor;
	const size_t ln = strlen(LOGIN_COOKIE);
	while (h && *h) {
		while (*h == ' ' || *h == ';' || *h == '\t')
			h++;
		size_t len = strcspn(h, ";");
		const char *pair = h;
		h += len;
		if (len > ln && strncmp(pair, LOGIN_COOKIE "=", ln + 1) == 0 && len - ln - 1 < 64) {
			memcpy(v, pair + ln + 1, len - ln - 1);
			v[len - ln - 1] = '\0';
			if (login_cookie_fresh(v, now_ms)) {
				*cursor = h;
				return true;
			}
		}
	}
	*cursor = h;
	return false;
}

/* Does some frb_login cookie of the request match the form's token? */
static bool login_token_ok(ui_req *q)
{
	const char *token = ui_form1(q, "login_token");
	if (!token || strlen(token) != 64)
		return false;
	const char *cur = q->r->cookie_header;
	char v[64], want[65];
	while (login_cookie_next(&cur, q->now_ms, v))
		if (login_token_of(q->u, v, want) && CRYPTO_memcmp(want, token, 64) == 0)
			return true;
	return false;
}

/* ---- login / logout ------------------------------------------------------- */

static void login_cookie_header(ui_req *q, const char *value, bool clear)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s=%s; Path=/login; Max-Age=%lld; HttpOnly; SameSite=Strict%s", LOGIN_COOKIE,
		 clear ? "" : value, clear ? 0LL : LOGIN_TOKEN_TTL_MS / 1000,
		 q->u->env.cfg->ui_secure_cookies ? "; Secure" : "");
	add_header(q, "Set-Cookie", buf);
}

/* The login form, with a message (NULL: none) and a fresh pre-session cookie. */
static void login_page(ui_req *q, const char *msg, const char *user, int status)
{
	/* The browser's pre-session cookie is kept while it has more than half its life left: a second
	 * GET /login (another tab, a redirected favicon request) must not void the form on screen. */
	char value[64], token[65];
	const char *cur = q->r->cookie_header;
	bool reuse = login_cookie_next(&cur, q->now_ms + LOGIN_TOKEN_TTL_MS / 2, value) &&
		     login_cookie_fresh(value, q->now_ms);
	if (!reuse && !login_cookie_new(value, sizeof(value), q->now_ms)) {
		web_response_text(q->res, 500, "500 no random bytes");
		return;
	}
	if (!login_token_of(q->u, value, token)) {
		web_response_text(q->res, 500, "500 internal error");
		return;
	}
	if (!reuse)
		login_cookie_header(q, value, false);
	html_buf b;
	ui_page_begin(q, &b, "Log in");
	html_puts(&b, "<h1>Downtime charting</h1><p class=\"lead\">Log in with your own account. What you chart "
		      "here is kept by the bridge and sent to the EHR when it is available.</p>");
	if (msg) {
		html_puts(&b, "<p class=\"message error\" role=\"alert\" id=\"login-error\">");
		html_esc(&b, msg);
		html_puts(&b, "</p>");
	}
	html_printf(&b, "<form method=\"post\" action=\"/login\" class=\"card narrow\" id=\"login-form\">"
			"<input type=\"hidden\" name=\"login_token\" value=\"%s\">"
			"<label for=\"user\">User name</label>"
			"<input id=\"user\" name=\"user\" autocomplete=\"username\" required autofocus value=\"",
		    token);
	html_esc(&b, user);
	html_puts(&b, "\"><label for=\"password\">Password</label>"
		      "<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" "
		      "required><button type=\"submit\">Log in</button></form>");
	ui_page_end(q, &b, status);
}

static void audit(ui_req *q, const char *actor, const char *action, const char *subject, const char *detail)
{
	if (store_audit_add(q->u->st, actor, action, subject, detail, q->now_ms) != 0)
		log_warn(UI_LOG, "cannot record the audit row (%s): %s", action, store_errmsg(q->u->st));
}

/* A failed login: throttle and audit; the answer is the form again. */
static void login_refused(ui_req *q, const char *actor, const char *why, const char *msg, const char *user)
{
	websession_throttle_failed(q->u->throttle, q->r->remote, ui_mono_ms());
	audit(q, actor, "login-failed", NULL, why);
	login_page(q, msg, user, 403);
}

static const char generic_refusal[] = "Wrong user name or password.";

/* The session cookie of the request, if it is a live session. */
static websession *cookie_session(ui_req *q)
{
	return websession_from_cookie(q->u->sessions, q->r->cookie_header, ui_mono_ms());
}

static void login_post(ui_req *q)
{
	ui *u = q->u;
	const config *cfg = u->env.cfg;
	if (!origin_ok(q) || !login_token_ok(q)) {
		forbidden(q);
		return;
	}
	const char *name = ui_form1(q, "user"), *pw = ui_form1(q, "password");
	if (q->bad_field || !name || !pw) {
		ui_error_page(q, 400, "Bad request", "The login form is incomplete; reload the page.");
		return;
	}
	/* What was typed goes back into the form only if it can be a user name. */
	const char *shown = strlen(name) <= STORE_USER_MAX_NAME ? name : "";
	int64_t mono = ui_mono_ms();
	if (!websession_throttle_allowed(u->throttle, q->r->remote, mono)) {
		int64_t wait_min = (websession_throttle_wait_ms(u->throttle, q->r->remote, mono) + 59999) / 60000;
		char msg[160];
		snprintf(msg, sizeof(msg), "Too many failed logins from this computer. Try again in %lld minute%s.",
			 (long long)wait_min, wait_min == 1 ? "" : "s");
		audit(q, "unknown", "login-failed", NULL, "throttled address");
		login_page(q, msg, shown, 429);
		return;
	}
	store_user user = STORE_USER_NULL;
	int rc = *name && strlen(name) <= STORE_USER_MAX_NAME ? store_user_get(u->st, name, &user) : STORE_E_NOTFOUND;
	if (rc == STORE_E_NOTFOUND) {
		/* The same work as for a real user, so that the answer's time does not tell. */
		password_verify(pw, strlen(pw), u->dummy_hash);
		login_refused(q, "unknown", "unknown user", generic_refusal, shown);
		return;
	}
	if (rc != 0) {
		log_error(UI_LOG, "login: cannot read the user: %s", store_errmsg(u->st));
		ui_error_page(q, 500, "Internal error", "The bridge could not read its store. Try again.");
		return;
	}
	if (user.locked_until_ms > q->now_ms) {
		int64_t wait_min = (user.locked_until_ms - q->now_ms + 59999) / 60000;
		char msg[200];
		snprintf(msg, sizeof(msg), "This account is locked after too many wrong passwords; try again later "
					   "(in %lld minute%s).", (long long)wait_min, wait_min == 1 ? "" : "s");
		login_refused(q, user.name, "account locked", msg, shown);
		store_user_deinit(&user);
		return;
	}
	rc = password_verify(pw, strlen(pw), user.pwhash);
	if (rc == PASSWORD_E_MISMATCH || rc == PASSWORD_E_FORMAT) {
		bool locked_now = false;
		if (store_user_login_failed(u->st, user.name, q->now_ms, cfg->ui_lockout_failures,
					    (int64_t)cfg->ui_lockout_s * 1000, &locked_now) != 0)
			log_warn(UI_LOG, "login: cannot count the failure: %s", store_errmsg(u->st));
		login_refused(q, user.name, locked_now ? "wrong password; account locked" : "wrong password",
			      generic_refusal, shown);
		store_user_deinit(&user);
		return;
	}
	if (rc != 0) {
		log_error(UI_LOG, "login: the password check failed (%d)", rc);
		ui_error_page(q, 500, "Internal error", "The password could not be checked. Try again.");
		store_user_deinit(&user);
		return;
	}
	if (user.disabled) {
		audit(q, user.name, "login-failed", NULL, "account disabled");
		login_page(q, "This account is disabled. Ask an administrator.", shown, 403);
		store_user_deinit(&user);
		return;
	}
	if (store_user_login_ok(u->st, user.name, q->now_ms) != 0)
		log_warn(UI_LOG, "login: cannot record it: %s", store_errmsg(u->st));
	if (password_needs_rehash(user.pwhash, cfg->ui_password_log2n)) {
		char h[PASSWORD_HASH_SIZE];
		if (password_hash(pw, strlen(pw), cfg->ui_password_log2n, h, sizeof(h)) == 0 &&
		    store_user_set_password(u->st, user.name, h) != 0)
			log_warn(UI_LOG, "login: cannot store the new password hash: %s", store_errmsg(u->st));
		OPENSSL_cleanse(h, sizeof(h));
	}
	websession_throttle_succeeded(u->throttle, q->r->remote);
	/* A new id at every login (no fixation): an older session of this browser ends. */
	websession *old = cookie_session(q);
	if (old)
		websession_destroy(u->sessions, old);
	websession *s = NULL;
	rc = websession_create(u->sessions, user.name, mono, &s);
	if (rc != 0) {
		ui_error_page(q, 500, "Internal error", "The session could not be made. Try again.");
		store_user_deinit(&user);
		return;
	}
	audit(q, user.name, "login-ok", NULL, NULL);
	log_info(UI_LOG, "login ok (%zu sessions)", websession_count(u->sessions));
	char cookie[256];
	websession_set_cookie(u->sessions, s, cookie, sizeof(cookie));
	add_header(q, "Set-Cookie", cookie);
	login_cookie_header(q, NULL, true);
	ui_redirect(q, "/");
	store_user_deinit(&user);
}

static void logout_post(ui_req *q)
{
	audit(q, q->user.name, "logout", NULL, NULL);
	websession_destroy(q->u->sessions, q->s);
	q->s = NULL;
	char cookie[256];
	websession_clear_cookie(q->u->sessions, cookie, sizeof(cookie));
	add_header(q, "Set-Cookie", cookie);
	ui_redirect(q, "/login");
}

/* ---- routing -------------------------------------------------------------- */

/*
 * The session of the request and its user, read again from the store: no
 * session, an unknown or a disabled user -> 303 to /login (the user's
 * sessions end) and false.
 */
static bool session_begin(ui_req *q)
{
	ui *u = q->u;
	websession *s = cookie_session(q);
	if (!s) {
		ui_redirect(q, "/login");
		return false;
	}
	int rc = store_user_get(u->st, s->user, &q->user);
	if (rc == 0 && !q->user.disabled) {
		websession_touch(s, ui_mono_ms());
		q->s = s;
		return true;
	}
	if (rc != 0 && rc != STORE_E_NOTFOUND) {
		log_error(UI_LOG, "cannot read the session's user: %s", store_errmsg(u->st));
		ui_error_page(q, 500, "Internal error", "The bridge could not read its store. Try again.");
		return false;
	}
	char *name = strdup(s->user);
	if (name) {
		websession_destroy_user(u->sessions, name);
		log_info(UI_LOG, "sessions of a disabled or removed user ended");
		free(name);
	} else {
		websession_destroy(u->sessions, s);
	}
	store_user_deinit(&q->user);
	char cookie[256];
	websession_clear_cookie(u->sessions, cookie, sizeof(cookie));
	add_header(q, "Set-Cookie", cookie);
	ui_redirect(q, "/login");
	return false;
}

/* A POST behind the login: our origin and the session's CSRF token. */
static bool post_ok(ui_req *q)
{
	const char *token = ui_form1(q, "csrf");
	if (!origin_ok(q) || !websession_csrf_ok(q->s, token)) {
		forbidden(q);
		return false;
	}
	return true;
}

/* A patient id in a path: [A-Za-z0-9.-]{1,64}. */
static bool id_ok(const char *s, size_t n)
{
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '-' || s[i] == '.'))
			return false;
	return true;
}

/* Is the method one the page takes (ok)? Else answer 405 with Allow. */
static bool method_ok(ui_req *q, bool ok, const char *allow)
{
	if (!ok)
		method_not_allowed(q, allow);
	return ok;
}

static void route(ui_req *q, bool get, bool post)
{
	const char *p = q->r->path;
	if (strcmp(p, "/") == 0) {
		if (method_ok(q, get, "GET, HEAD"))
			ui_page_home(q);
		return;
	}
	if (strcmp(p, "/search") == 0) {
		if (method_ok(q, get, "GET, HEAD"))
			ui_page_search(q);
		return;
	}
	if (strcmp(p, "/entries") == 0) {
		if (method_ok(q, get, "GET, HEAD"))
			ui_page_entries(q);
		return;
	}
	if (strcmp(p, "/register") == 0) {
		if (get)
			ui_page_register(q, NULL, NULL, 200);
		else if (method_ok(q, post, "GET, HEAD, POST") && post_ok(q))
			ui_post_register(q);
		return;
	}
	if (strcmp(p, "/logout") == 0) {
		if (method_ok(q, post, "POST") && post_ok(q))
			logout_post(q);
		return;
	}
	if (strncmp(p, "/patient/", 9) == 0) {
		const char *id = p + 9;
		size_t n = strcspn(id, "/");
		char buf[65];
		if (id_ok(id, n)) {
			memcpy(buf, id, n);
			buf[n] = '\0';
			if (id[n] == '\0') {
				if (method_ok(q, get, "GET, HEAD"))
					ui_page_patient(q, buf, NULL);
				return;
			}
			if (strcmp(id + n, "/chart") == 0) {
				if (method_ok(q, post, "POST") && post_ok(q))
					ui_post_chart(q, buf);
				return;
			}
		}
	}
	ui_error_page(q, 404, "Not found", "There is no such page.");
}

static void on_request(void *ud, const web_request *r, web_response *res)
{
	ui *u = ud;
	ui_req q = { .u = u, .r = r, .res = res, .user = STORE_USER_NULL, .now_ms = util_wall_ms() };
	bool get = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
	bool post = strcmp(r->method, "POST") == 0;
	if (strcmp(r->path, "/static/ui.css") == 0) {
		if (!method_ok(&q, get, "GET, HEAD"))
			return;
		res->content_type = "text/css; charset=utf-8";
		res->body = strdup(ui_css);
		res->body_len = res->body ? strlen(res->body) : 0;
		res->status = res->body ? 200 : 500;
		return;
	}
	if (strcmp(r->path, "/favicon.ico") == 0) {
		web_response_text(res, 404, "404 not found"); /* no icon; and no redirect to /login for it */
		return;
	}
	if (strcmp(r->path, "/login") == 0) {
		if (get) {
			if (cookie_session(&q))
				ui_redirect(&q, "/");
			else
				login_page(&q, NULL, "", 200);
		} else if (method_ok(&q, post, "GET, HEAD, POST")) {
			login_post(&q);
		}
		return;
	}
	if (!session_begin(&q))
		return;
	route(&q, get, post);
	store_user_deinit(&q.user);
}

/* ---- start / stop --------------------------------------------------------- */

static void on_sweep(uv_timer_t *t)
{
	ui *u = t->data;
	websession_sweep(u->sessions, ui_mono_ms());
}

static void ui_free(ui *u)
{
	ui_summary_cache_clear(u);
	websession_table_free(u->sessions);
	free(u->throttle);
	store_close(u->st);
	OPENSSL_cleanse(u->login_key, sizeof(u->login_key));
	free(u);
}

static void on_closed_one(ui *u)
{
	if (--u->pending_closes > 0)
		return;
	void (*done)(void *) = u->done;
	void *ud = u->done_ud;
	ui_free(u);
	if (done)
		done(ud);
}

static void on_web_stopped(void *arg)
{
	on_closed_one(arg);
}

static void on_sweep_closed(uv_handle_t *h)
{
	on_closed_one(h->data);
}

/* The Host values a browser sends for a loopback listen address (DNS rebinding defence), or none. */
static int allow_loopback_hosts(ui *u, const char *listen)
{
	char h1[80], h2[80];
	const char *hosts[] = { h1, h2, NULL };
	int port = web_port(u->web);
	if (strncmp(listen, "127.", 4) == 0) {
		snprintf(h1, sizeof(h1), "%.*s:%d", (int)strcspn(listen, ":"), listen, port);
	} else if (strncmp(listen, "[::1]:", 6) == 0) {
		snprintf(h1, sizeof(h1), "[::1]:%d", port);
	} else {
		return 0; /* reachable from the network: any name the proxy or the site uses */
	}
	snprintf(h2, sizeof(h2), "localhost:%d", port);
	return web_set_allowed_hosts(u->web, hosts);
}

int ui_start(ui **out, const ui_env *env, char *err, size_t err_size)
{
	*out = NULL;
	const config *cfg = env->cfg;
	ui *u = calloc(1, sizeof(*u));
	if (!u || !(u->throttle = calloc(1, sizeof(*u->throttle)))) {
		free(u);
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	u->env = *env;
	char serr[512];
	if (store_open(&u->st, cfg->store_path, cfg->store_key_file, STORE_RW, serr, sizeof(serr)) != 0) {
		snprintf(err, err_size, "ui: %s", serr);
		free(u->throttle);
		free(u);
		return -EIO;
	}
	unsigned char rnd[32];
	char dummy[65];
	websession_opts so = { .idle_ms = (int64_t)cfg->ui_session_idle_s * 1000, .secure = cfg->ui_secure_cookies };
	int rc = RAND_bytes(u->login_key, sizeof(u->login_key)) == 1 && RAND_bytes(rnd, sizeof(rnd)) == 1 ? 0 : -EIO;
	if (rc == 0) {
		hex_encode(rnd, sizeof(rnd), dummy);
		rc = password_hash(dummy, strlen(dummy), cfg->ui_password_log2n, u->dummy_hash, sizeof(u->dummy_hash));
	}
	if (rc == 0)
		rc = websession_table_new(&u->sessions, &so);
	if (rc == 0)
		rc = websession_throttle_init(u->throttle, 0, 0, 0);
	if (rc != 0) {
		snprintf(err, err_size, "ui: cannot set up the sessions (%s)", strerror(-rc));
		ui_free(u);
		return rc;
	}
	rc = web_start(&u->web, env->loop, cfg->ui_listen, on_request, u, serr, sizeof(serr));
	if (rc != 0) {
		snprintf(err, err_size, "ui.listen %s: %s", cfg->ui_listen, serr);
		ui_free(u);
		return rc;
	}
	if (allow_loopback_hosts(u, cfg->ui_listen) != 0) {
		/* Out of memory: stop what started and report it. */
		u->pending_closes = 1;
		web_stop(u->web, on_web_stopped, u);
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	uv_timer_init(env->loop, &u->sweep);
	u->sweep.data = u;
	uv_timer_start(&u->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
	*out = u;
	return 0;
}

int ui_port(const ui *u)
{
	return web_port(u->web);
}

void ui_stop(ui *u, void (*done)(void *), void *ud)
{
	if (!u) {
		if (done)
			done(ud);
		return;
	}
	u->done = done;
	u->done_ud = ud;
	u->pending_closes = 2;
	uv_timer_stop(&u->sweep);
	uv_close((uv_handle_t *)&u->sweep, on_sweep_closed);
	web_stop(u->web, on_web_stopped, u);
}
