/*
 * web — the embedded HTTP server of the local charting page: libmicrohttpd
 * driven by the daemon's libuv loop, with no thread of its own. MHD runs in
 * its "external epoll" mode; its epoll fd is watched by a uv_poll_t and a
 * uv_timer_t is armed from MHD_get_timeout() after every MHD_run(), so every
 * callback, the handler included, runs on the loop thread.
 *
 * A request is answered by one synchronous call of the handler with the
 * whole request (query and form already parsed). Before the handler sees
 * it, a request must pass these rules (the answer is a short text/plain
 * page, the handler is not called):
 *   - a URL (path and query) longer than WEB_MAX_URL bytes       414
 *   - a method other than GET, HEAD, POST                         405 (Allow: GET, HEAD, POST)
 *   - a Host header not in the allowed list (when one is set)     421
 *   - a POST whose Content-Type is not
 *     application/x-www-form-urlencoded (or is missing)           415
 *   - a body larger than WEB_MAX_BODY bytes                       413
 *   - a path or a query/form parameter with malformed percent-
 *     encoding or %00, or more than WEB_MAX_FIELDS parameters     400 (the text names the parameter)
 * MHD itself refuses requests whose headers do not fit its per-connection
 * memory (32 KiB) or that break HTTP; those answers come without the
 * security headers below (they carry no page).
 *
 * Every answer carries
 *   Content-Security-Policy: default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'
 *   X-Content-Type-Options: nosniff
 *   Referrer-Policy: no-referrer
 *   X-Frame-Options: DENY
 *   Cache-Control: no-store
 * and the handler cannot replace them.
 *
 * At most WEB_MAX_CONNECTIONS connections at once (more are closed on
 * accept); a connection idle for WEB_CONN_TIMEOUT_S seconds is closed.
 *
 * Logging: one debug line per request (method, path without the query,
 * status, duration); never a body, a query string, a cookie or a header
 * value above debug: they hold PHI and secrets.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#define WEB_MAX_BODY (64 * 1024)
#define WEB_MAX_URL 2048
#define WEB_MAX_FIELDS 100
#define WEB_MAX_CONNECTIONS 64
#define WEB_CONN_TIMEOUT_S 30
#define WEB_MAX_RESPONSE_HEADERS 16

typedef struct web_server web_server;
typedef struct web_request_ctx web_request_ctx;

/* A request as the handler sees it; every pointer is valid during the call only. */
typedef struct web_request {
	const char *method;         /* "GET", "HEAD" or "POST" */
	const char *path;           /* percent-decoded, without the query ("/chart/vitals") */
	const char *remote;         /* the client's IP address as text ("127.0.0.1", "::1") */
	const char *cookie_header;  /* the raw Cookie header, or NULL */
	const web_request_ctx *ctx; /* private to web.c */
} web_request;

/*
 * A query parameter (web_query) or an application/x-www-form-urlencoded
 * POST field (web_form), decoded ('+' is a space): the first value when the
 * name is repeated, "" for "name" without "=", NULL when absent. The
 * _count variants say how many times the name came (a form that expects one
 * value should refuse 2), the _nth ones give each (0-based; NULL past the
 * last).
 */
const char *web_query(const web_request *r, const char *name);
size_t web_query_count(const web_request *r, const char *name);
const char *web_query_nth(const web_request *r, const char *name, size_t i);
const char *web_form(const web_request *r, const char *name);
size_t web_form_count(const web_request *r, const char *name);
const char *web_form_nth(const web_request *r, const char *name, size_t i);

/* A request header (name case-insensitive; the first when repeated), or NULL. */
const char *web_header(const web_request *r, const char *name);

/* The answer the handler fills in. */
typedef struct web_response {
	int status;                 /* 200 unless set; 200..599, anything else becomes 500 */
	const char *content_type;   /* "text/html; charset=utf-8" unless set; must outlive the call (a literal) */
	char *body;                 /* malloc'd, or NULL; owned by web once the handler returns */
	size_t body_len;
	/* private: set through web_response_header() */
	size_t n_headers;
	char *headers[WEB_MAX_RESPONSE_HEADERS][2];
} web_response;

/*
 * Add a header to the answer (name and value copied; a name may repeat,
 * e.g. Set-Cookie). 0; -EINVAL for a name that is not an HTTP token, a
 * value with a control character, or a header web or MHD sets itself
 * (Content-Type: use content_type; Content-Length, Transfer-Encoding,
 * Connection, Date); -EPERM for one of the security headers; -ENOSPC past
 * WEB_MAX_RESPONSE_HEADERS; -ENOMEM.
 */
int web_response_header(web_response *res, const char *name, const char *value);

/* Make the answer a text/plain page with a copy of text (replacing any body). 0 or -ENOMEM. */
int web_response_text(web_response *res, int status, const char *text);

/* Answer req into res, on the loop thread. It may call web_stop() (the answer may then not go out). */
typedef void (*web_handler)(void *ud, const web_request *req, web_response *res);

/*
 * Listen on `listen` ("127.0.0.1:8470", "[::1]:8470", "localhost:8470",
 * "0.0.0.0:0"; port 0 = any free port, see web_port) and serve requests
 * with h on loop. 0, or a negative errno with a message in err (bad listen
 * string: -EINVAL; the address cannot be bound or MHD cannot start: -EIO;
 * -ENOMEM). Nothing is left on the loop on failure (but after a failing
 * uv_poll_start(), which libuv on Linux only does for bad arguments: the
 * handles are closing then, and the loop must run to free them).
 */
int web_start(web_server **out, uv_loop_t *loop, const char *listen, web_handler h, void *ud, char *err,
	      size_t err_size);

/* The port listened on. */
int web_port(const web_server *w);

/*
 * Accept only requests whose Host header is one of hosts (NULL-terminated,
 * compared without case, port included: "127.0.0.1:8470"); others get 421.
 * A defence against DNS rebinding for a page on a loopback address. NULL
 * or an empty list: any Host (the default). 0 or -ENOMEM.
 */
int web_set_allowed_hosts(web_server *w, const char *const *hosts);

/*
 * Stop serving: the uv handles are closed at once (no request is read
 * after this call); once libuv has closed them, MHD is stopped (open
 * connections are closed), w is freed and done(arg) runs (done may be
 * NULL). Run the loop until then. May be called from inside the handler.
 * w NULL: done runs at once. A second call is a no-op.
 */
void web_stop(web_server *w, void (*done)(void *), void *arg);
