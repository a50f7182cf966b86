/*
 * web — libmicrohttpd on the libuv loop (see web.h).
 *
 * MHD runs with MHD_USE_EPOLL and no thread: its epoll fd (which holds the
 * listening socket and every connection) is watched by one uv_poll_t; when
 * it is readable, or when the uv_timer_t armed from MHD_get_timeout() fires
 * (connection timeouts; 0 when MHD still has data buffered), MHD_run() does
 * the work and calls us back.
 *
 * State: one web_request_ctx per connection, made when MHD accepts it
 * (MHD_OPTION_NOTIFY_CONNECTION) and freed when it closes; it is reset for
 * each request on it. The raw request target comes from the URI log
 * callback (called before MHD parses it), so that the path and the query
 * are decoded here, strictly: MHD's own unescaping lets malformed
 * percent-encoding through unchanged. Form bodies are collected (up to
 * WEB_MAX_BODY) and parsed by the same code as the query.
 *
 * The access handler is called by MHD once when the headers are in, once
 * per piece of body, and once at the end; the rules that need only the
 * headers answer at the first call (MHD then closes the connection after
 * the answer, the body unread), the others at the end.
 *
 * Shutdown: web_stop() closes both uv handles; their close callbacks stop
 * MHD (closing its sockets and its epoll fd, after libuv stopped watching
 * it) and free the server. So MHD is never stopped from inside MHD_run().
 */
#include "bridge/web.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "bridge/log.h"

#define WEB_LOG "web"

/* Body bytes (of a chunked upload past WEB_MAX_BODY) read and thrown away before the connection is cut. */
#define WEB_MAX_DISCARD (4 * WEB_MAX_BODY)

typedef struct web_field {
	const char *name;
	const char *value;
} web_field;

/* Parsed parameters; names and values point into buf (owned). */
typedef struct web_fields {
	web_field *v;
	size_t n, cap;
	char *buf;
} web_fields;

struct web_request_ctx {
	web_server *w;
	struct MHD_Connection *conn;
	char remote[INET6_ADDRSTRLEN];

	/* the request in progress; reset by request_reset() */
	bool active;          /* the URI log callback started a request */
	bool headers_seen;    /* the access handler ran once */
	bool too_large;       /* the body passed WEB_MAX_BODY */
	bool uri_too_long;
	char method[16];      /* for the log line; "" until known */
	uint64_t start_ns;
	char *uri;            /* the raw request target (malloc'd); when too long, the start of its path */
	char *body;
	size_t body_len, body_cap;
	size_t received;      /* body bytes received, kept or not */
	char *path;           /* decoded path (malloc'd) */
	web_fields query, form;
	unsigned status;      /* the status answered; 0 = none yet */
};

struct web_server {
	uv_loop_t *loop;
	struct MHD_Daemon *mhd;
	uv_poll_t poll;
	uv_timer_t timer;
	int port;
	web_handler handler;
	void *ud;
	char **allowed_hosts;  /* NULL-terminated, or NULL = any */
	bool stopping;
	int open_handles;      /* uv handles not closed yet */
	void (*done)(void *);
	void *done_arg;
	char mhd_err[256];     /* MHD's last message, for web_start's error */
};

static const char *const web_security_headers[][2] = {
	{ "Content-Security-Policy",
	  "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'" },
	{ "X-Content-Type-Options", "nosniff" },
	{ "Referrer-Policy", "no-referrer" },
	{ "X-Frame-Options", "DENY" },
	{ "Cache-Control", "no-store" },
};

#define N_SECURITY_HEADERS (sizeof(web_security_headers) / sizeof(web_security_headers[0]))

/* Headers the handler may not set: web or MHD set them. */
static const char *const web_reserved_headers[] = {
	"Content-Type", "Content-Length", "Transfer-Encoding", "Connection", "Date",
};

/* ---- parameters --------------------------------------------------------- */

static void fields_deinit(web_fields *f)
{
	free(f->v);
	free(f->buf);
	*f = (web_fields){ 0 };
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Is s[0..n) well-formed percent-encoding (every % followed by two hex digits, none of them %00)? */
static bool pct_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%')
			continue;
		if (i + 2 >= n)
			return false;
		int h = hexval((unsigned char)s[i + 1]), l = h < 0 ? -1 : hexval((unsigned char)s[i + 2]);
		if (h < 0 || l < 0 || (h == 0 && l == 0))
			return false;
		i += 2;
	}
	return true;
}

/*
 * Decode s[0..n) (checked by pct_ok) into dst, which may be s itself (the
 * text only shrinks); '+' becomes a space when plus_space. NUL-terminates;
 * returns the decoded length.
 */
static size_t pct_decode(char *dst, const char *s, size_t n, bool plus_space)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			dst[o++] = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
			i += 2;
		} else if (s[i] == '+' && plus_space) {
			dst[o++] = ' ';
		} else {
			dst[o++] = s[i];
		}
	}
	dst[o] = '\0';
	return o;
}

/* Copy up to 64 bytes of s[0..n) into out for a message: printable ASCII, others as '?'. */
static void sanitize_name(char *out, size_t size, const char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < size && i < 64; i++) {
		unsigned char c = (unsigned char)s[i];
		out[o++] = c >= 0x20 && c < 0x7F && c != '"' && c != '\\' ? (char)c : '?';
	}
	out[o] = '\0';
}

enum { PARSE_BAD = 1 };

/*
 * Parse name=value&... (application/x-www-form-urlencoded) from s[0..n)
 * into f, which takes a copy. Empty pairs are skipped; "name" alone has the
 * value "". 0; PARSE_BAD with the reason in err (what = "query" or "form",
 * names the parameter); -ENOMEM.
 */
static int fields_parse(web_fields *f, const char *s, size_t n, const char *what, char *err, size_t err_size)
{
	char shown[80];
	fields_deinit(f);
	f->buf = malloc(n + 1);
	if (!f->buf)
		return -ENOMEM;
	memcpy(f->buf, s, n);
	f->buf[n] = '\0';
	char *p = f->buf, *endall = f->buf + n;
	while (p < endall) {
		char *end = memchr(p, '&', (size_t)(endall - p));
		if (!end)
			end = endall;
		char *next = end < endall ? end + 1 : endall;
		if (end == p) {
			p = next;
			continue;
		}
		char *eq = memchr(p, '=', (size_t)(end - p));
		char *ne = eq ? eq : end;
		if (!pct_ok(p, (size_t)(ne - p))) {
			sanitize_name(shown, sizeof(shown), p, (size_t)(ne - p));
			snprintf(err, err_size, "malformed percent-encoding in a %s parameter name (\"%s\")", what,
				 shown);
			return PARSE_BAD;
		}
		size_t vlen = eq ? (size_t)(end - eq - 1) : 0;
		if (eq && !pct_ok(eq + 1, vlen)) {
			char tmp[80];
			size_t nlen = (size_t)(ne - p);
			if (nlen < sizeof(tmp))
				sanitize_name(shown, sizeof(shown), tmp, pct_decode(tmp, p, nlen, true));
			else
				sanitize_name(shown, sizeof(shown), p, nlen);
			snprintf(err, err_size, "malformed percent-encoding in %s parameter \"%s\"", what, shown);
			return PARSE_BAD;
		}
		if (f->n == WEB_MAX_FIELDS) {
			snprintf(err, err_size, "more than %d %s parameters", WEB_MAX_FIELDS, what);
			return PARSE_BAD;
		}
		if (f->n == f->cap) {
			size_t cap = f->cap ? f->cap * 2 : 8;
			web_field *v = realloc(f->v, cap * sizeof(*v));
			if (!v)
				return -ENOMEM;
			f->v = v;
			f->cap = cap;
		}
		/* Decode in place: each part shrinks within its own span, so the
		 * NULs land on or before the '=' and the '&'. */
		pct_decode(p, p, (size_t)(ne - p), true);
		const char *value = "";
		if (eq) {
			pct_decode(eq + 1, eq + 1, vlen, true);
			value = eq + 1;
		}
		f->v[f->n++] = (web_field){ p, value };
		p = next;
	}
	return 0;
}

static const web_field *fields_nth(const web_fields *f, const char *name, size_t i)
{
	if (!name)
		return NULL;
	for (size_t k = 0; k < f->n; k++)
		if (strcmp(f->v[k].name, name) == 0 && i-- == 0)
			return &f->v[k];
	return NULL;
}

static size_t fields_count(const web_fields *f, const char *name)
{
	size_t c = 0;
	if (!name)
		return 0;
	for (size_t k = 0; k < f->n; k++)
		c += strcmp(f->v[k].name, name) == 0;
	return c;
}

/* The query's or the form's parameters of r (borrowed), or NULL without a request. */
static const web_fields *request_fields(const web_request *r, bool form)
{
	if (!r || !r->ctx)
		return NULL;
	return form ? &r->ctx->form : &r->ctx->query;
}

/* The value of the i-th parameter called name in f (NULL: none), or NULL. */
static const char *fields_value(const web_fields *f, const char *name, size_t i)
{
	const web_field *v = f ? fields_nth(f, name, i) : NULL;
	return v ? v->value : NULL;
}

const char *web_query(const web_request *r, const char *name)
{
	return fields_value(request_fields(r, false), name, 0);
}

size_t web_query_count(const web_request *r, const char *name)
{
	const web_fields *f = request_fields(r, false);
	return f ? fields_count(f, name) : 0;
}

const char *web_query_nth(const web_request *r, const char *name, size_t i)
{
	return fields_value(request_fields(r, false), name, i);
}

const char *web_form(const web_request *r, const char *name)
{
	return fields_value(request_fields(r, true), name, 0);
}

size_t web_form_count(const web_request *r, const char *name)
{
	const web_fields *f = request_fields(r, true);
	return f ? fields_count(f, name) : 0;
}

const char *web_form_nth(const web_request *r, const char *name, size_t i)
{
	return fields_value(request_fields(r, true), name, i);
}

const char *web_header(const web_request *r, const char *name)
{
	if (!r || !r->ctx || !name)
		return NULL;
	return MHD_lookup_connection_value(r->ctx->conn, MHD_HEADER_KIND, name);
}

/* ---- responses ---------------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

int web_response_header(web_response *res, const char *name, const char *value)
{
	if (!res || !name || !name[0] || !value)
		return -EINVAL;
	for (const char *p = name; *p; p++)
		if (!is_tchar((unsigned char)*p))
			return -EINVAL;
	for (const unsigned char *p = (const unsigned char *)value; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7F)
			return -EINVAL;
	for (size_t i = 0; i < sizeof(web_reserved_headers) / sizeof(web_reserved_headers[0]); i++)
		if (strcasecmp(name, web_reserved_headers[i]) == 0)
			return -EINVAL;
	for (size_t i = 0; i < N_SECURITY_HEADERS; i++)
		if (strcasecmp(name, web_security_headers[i][0]) == 0)
			return -EPERM;
	if (res->n_headers == WEB_MAX_RESPONSE_HEADERS)
		return -ENOSPC;
	char *n = strdup(name), *v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return -ENOMEM;
	}
	res->headers[res->n_headers][0] = n;
	res->headers[res->n_headers][1] = v;
	res->n_headers++;
	return 0;
}

int web_response_text(web_response *res, int status, const char *text)
{
	char *b = strdup(text ? text : "");
	if (!b)
		return -ENOMEM;
	free(res->body);
	res->body = b;
	res->body_len = strlen(b);
	res->status = status;
	res->content_type = "text/plain; charset=utf-8";
	return 0;
}

static void response_deinit(web_response *res)
{
	free(res->body);
	res->body = NULL;
	res->body_len = 0;
	for (size_t i = 0; i < res->n_headers; i++) {
		free(res->headers[i][0]);
		free(res->headers[i][1]);
	}
	res->n_headers = 0;
}

/*
 * Queue res on the connection (the body goes to MHD, the rest is freed).
 * The status must be valid. Returns what the access handler returns.
 */
static enum MHD_Result respond(web_request_ctx *c, web_response *res)
{
	struct MHD_Response *r;
	if (res->body && res->body_len) {
		r = MHD_create_response_from_buffer_with_free_callback(res->body_len, res->body, free);
		if (r)
			res->body = NULL;
	} else {
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	}
	bool ok = r != NULL;
	if (ok && res->content_type)
		ok = MHD_add_response_header(r, "Content-Type", res->content_type) == MHD_YES;
	for (size_t i = 0; ok && i < N_SECURITY_HEADERS; i++)
		ok = MHD_add_response_header(r, web_security_headers[i][0], web_security_headers[i][1]) == MHD_YES;
	for (size_t i = 0; ok && i < res->n_headers; i++)
		ok = MHD_add_response_header(r, res->headers[i][0], res->headers[i][1]) == MHD_YES;
	response_deinit(res);
	if (!ok) {
		log_warn(WEB_LOG, "cannot build an answer (out of memory)");
		if (r)
			MHD_destroy_response(r);
		return MHD_NO;
	}
	enum MHD_Result q = MHD_queue_response(c->conn, (unsigned)res->status, r);
	MHD_destroy_response(r);
	if (q == MHD_YES)
		c->status = (unsigned)res->status;
	return q;
}

/* Answer with a short text page of web's own. */
static enum MHD_Result respond_text(web_request_ctx *c, int status, const char *text, const char *allow)
{
	web_response res = { .status = status };
	size_t n = strlen(text);
	res.body = malloc(n + 1);
	if (!res.body)
		return MHD_NO;
	memcpy(res.body, text, n);
	res.body[n] = '\n';
	res.body_len = n + 1;
	res.content_type = "text/plain; charset=utf-8";
	if (allow && web_response_header(&res, "Allow", allow) != 0) {
		response_deinit(&res);
		return MHD_NO;
	}
	return respond(c, &res);
}

/* ---- requests ----------------------------------------------------------- */

static void request_reset(web_request_ctx *c)
{
	free(c->uri);
	free(c->body);
	free(c->path);
	fields_deinit(&c->query);
	fields_deinit(&c->form);
	c->uri = c->body = c->path = NULL;
	c->body_len = c->body_cap = c->received = 0;
	c->active = c->headers_seen = c->too_large = c->uri_too_long = false;
	c->method[0] = '\0';
	c->status = 0;
}

/* MHD_OPTION_URI_LOG_CALLBACK: a request starts; keep its raw target. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	web_request_ctx *c = ci ? ci->socket_context : NULL;
	if (!c)
		return NULL;
	request_reset(c);
	c->active = true;
	c->start_ns = uv_hrtime();
	size_t n = strlen(uri);
	if (n > WEB_MAX_URL) {
		/* Refused at the first call; only the start of its path is kept, for the log line. */
		c->uri_too_long = true;
		size_t plen = strcspn(uri, "?");
		c->uri = strndup(uri, plen < 256 ? plen : 256);
	} else {
		c->uri = strdup(uri); /* NULL on ENOMEM: answered with 500 */
	}
	return c;
}

/* MHD_OPTION_NOTIFY_CONNECTION: one context per connection. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	web_server *w = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		web_request_ctx *c = calloc(1, sizeof(*c));
		if (!c)
			return; /* its requests find no context and are refused */
		c->w = w;
		c->conn = conn;
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		const struct sockaddr *sa = ci ? ci->client_addr : NULL;
		if (sa && sa->sa_family == AF_INET) {
			inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->remote, sizeof(c->remote));
		} else if (sa && sa->sa_family == AF_INET6) {
			const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
			if (IN6_IS_ADDR_V4MAPPED(a6))
				inet_ntop(AF_INET, &a6->s6_addr[12], c->remote, sizeof(c->remote));
			else
				inet_ntop(AF_INET6, a6, c->remote, sizeof(c->remote));
		}
		*socket_context = c;
	} else {
		web_request_ctx *c = *socket_context;
		if (c) {
			request_reset(c);
			free(c);
		}
		*socket_context = NULL;
	}
}

/* MHD_OPTION_NOTIFY_COMPLETED: the request is over; one debug line. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	web_request_ctx *c = *con_cls;
	if (!c || !c->active)
		return;
	if (log_get_level() >= LOG_DEBUG) {
		const char *path = c->path ? c->path : c->uri ? c->uri : "";
		size_t plen = c->path ? strlen(path) : strcspn(path, "?");
		uint64_t us = (uv_hrtime() - c->start_ns) / 1000;
		log_debug(WEB_LOG, "request method=%s path=%.*s status=%u ms=%" PRIu64 ".%03" PRIu64 "%s",
			  c->method[0] ? c->method : "-", (int)(plen > 512 ? 512 : plen), path, c->status,
			  us / 1000, us % 1000, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
	}
	request_reset(c);
	*con_cls = NULL;
}

/* Is the Content-Type application/x-www-form-urlencoded (parameters allowed)? */
static bool is_form_type(const char *ct)
{
	static const char form[] = "application/x-www-form-urlencoded";
	if (!ct)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, form, sizeof(form) - 1) != 0)
		return false;
	ct += sizeof(form) - 1;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

static bool host_allowed(const web_server *w, const char *host)
{
	if (!w->allowed_hosts)
		return true;
	if (!host)
		return false;
	for (char **h = w->allowed_hosts; *h; h++)
		if (strcasecmp(*h, host) == 0)
			return true;
	return false;
}

/* The rules that need only the headers: an answer queued, or MHD_YES and none when the request may go on. */
static enum MHD_Result check_headers(web_request_ctx *c, const char *method)
{
	web_server *w = c->w;
	if (c->uri_too_long)
		return respond_text(c, 414, "414 the URL is too long", NULL);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && strcmp(method, "POST") != 0)
		return respond_text(c, 405, "405 method not allowed", "GET, HEAD, POST");
	if (!host_allowed(w, MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Host")))
		return respond_text(c, 421, "421 this server does not answer for that host", NULL);
	if (strcmp(method, "POST") == 0 &&
	    !is_form_type(MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Content-Type")))
		return respond_text(c, 415,
				    "415 only application/x-www-form-urlencoded bodies are taken", NULL);
	const char *cl = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Content-Length");
	if (cl) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(cl, &end, 10);
		if (errno || end == cl || v > WEB_MAX_BODY)
			return respond_text(c, 413, "413 the request body is too large", NULL);
	}
	return MHD_YES;
}

/* Take a piece of body: kept for a POST up to WEB_MAX_BODY, else counted and dropped. */
static enum MHD_Result take_body(web_request_ctx *c, const char *data, size_t n)
{
	c->received = n > SIZE_MAX - c->received ? SIZE_MAX : c->received + n;
	if (c->received > WEB_MAX_BODY) {
		c->too_large = true;
		free(c->body);
		c->body = NULL;
		c->body_len = c->body_cap = 0;
		/* An endless chunked upload: stop reading it. */
		return c->received > WEB_MAX_DISCARD ? MHD_NO : MHD_YES;
	}
	if (strcmp(c->method, "POST") != 0)
		return MHD_YES; /* a body on GET/HEAD is ignored */
	if (c->body_len + n + 1 > c->body_cap) {
		size_t cap = c->body_cap ? c->body_cap : 1024;
		while (cap < c->body_len + n + 1)
			cap *= 2;
		char *b = realloc(c->body, cap);
		if (!b)
			return MHD_NO;
		c->body = b;
		c->body_cap = cap;
	}
	memcpy(c->body + c->body_len, data, n);
	c->body_len += n;
	return MHD_YES;
}

/* The whole request is in: parse it, call the handler, answer. */
static enum MHD_Result serve(web_request_ctx *c)
{
	web_server *w = c->w;
	char err[192];
	int rc;

	if (c->too_large)
		return respond_text(c, 413, "413 the request body is too large", NULL);
	if (!c->uri)
		return respond_text(c, 500, "500 out of memory", NULL);
	if (c->uri[0] != '/')
		return respond_text(c, 400, "400 the request target must be a path", NULL);
	size_t plen = strcspn(c->uri, "?");
	if (!pct_ok(c->uri, plen))
		return respond_text(c, 400, "400 malformed percent-encoding in the path", NULL);
	c->path = malloc(plen + 1);
	if (!c->path)
		return respond_text(c, 500, "500 out of memory", NULL);
	pct_decode(c->path, c->uri, plen, false);

	const char *q = c->uri[plen] == '?' ? c->uri + plen + 1 : "";
	rc = fields_parse(&c->query, q, strlen(q), "query", err, sizeof(err));
	if (rc == 0 && strcmp(c->method, "POST") == 0) {
		if (c->body && memchr(c->body, '\0', c->body_len)) {
			snprintf(err, sizeof(err), "the form body holds a NUL byte");
			rc = PARSE_BAD;
		} else {
			rc = fields_parse(&c->form, c->body ? c->body : "", c->body_len, "form", err, sizeof(err));
		}
	}
	if (rc == PARSE_BAD) {
		char msg[256];
		snprintf(msg, sizeof(msg), "400 %s", err);
		return respond_text(c, 400, msg, NULL);
	}
	if (rc)
		return respond_text(c, 500, "500 out of memory", NULL);

	web_request req = {
		.method = c->method,
		.path = c->path,
		.remote = c->remote,
		.cookie_header = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Cookie"),
		.ctx = c,
	};
	web_response res = { .status = 200, .content_type = "text/html; charset=utf-8" };
	w->handler(w->ud, &req, &res);
	if (res.status < 200 || res.status > 599 || (!res.body && res.body_len)) {
		log_warn(WEB_LOG, "the handler gave an invalid answer (status %d) for method=%s", res.status,
			 c->method);
		response_deinit(&res);
		return respond_text(c, 500, "500 internal error", NULL);
	}
	return respond(c, &res);
}

/* MHD's access handler (see the top of the file for when it is called). */
static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				 const char *version, const char *upload_data, size_t *upload_data_size,
				 void **con_cls)
{
	web_request_ctx *c = *con_cls;
	if (!c || !c->active)
		return MHD_NO; /* no context (out of memory at accept): drop the connection */
	if (!c->headers_seen) {
		c->headers_seen = true;
		snprintf(c->method, sizeof(c->method), "%s", method);
		return check_headers(c, method);
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		return take_body(c, upload_data, n);
	}
	if (c->status)
		return MHD_YES; /* answered already */
	return serve(c);
}

/* ---- the loop ----------------------------------------------------------- */

/* MHD_OPTION_EXTERNAL_LOGGER: MHD's messages at debug (they may quote a request); the last one kept. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	web_server *w = cls;
	vsnprintf(w->mhd_err, sizeof(w->mhd_err), fmt, ap);
	size_t n = strlen(w->mhd_err);
	while (n && (w->mhd_err[n - 1] == '\n' || w->mhd_err[n - 1] == '\r'))
		w->mhd_err[--n] = '\0';
	log_debug(WEB_LOG, "mhd: %s", w->mhd_err);
}

static void on_timer(uv_timer_t *t);

/* After every MHD_run: wake up again no later than MHD asks. */
static void rearm(web_server *w)
{
	MHD_UNSIGNED_LONG_LONG ms = 0;
	if (w->stopping)
		return;
	if (MHD_get_timeout(w->mhd, &ms) == MHD_YES)
		uv_timer_start(&w->timer, on_timer, (uint64_t)ms, 0);
	else
		uv_timer_stop(&w->timer);
}

static void run_mhd(web_server *w)
{
	if (w->stopping)
		return;
	if (MHD_run(w->mhd) != MHD_YES)
		log_warn(WEB_LOG, "MHD_run failed");
	rearm(w);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	web_server *w = p->data;
	if (status < 0)
		log_warn(WEB_LOG, "polling the server failed: %s", uv_strerror(status));
	run_mhd(w);
}

static void on_timer(uv_timer_t *t)
{
	run_mhd(t->data);
}

static void server_free(web_server *w)
{
	if (w->allowed_hosts) {
		for (char **h = w->allowed_hosts; *h; h++)
			free(*h);
		free(w->allowed_hosts);
	}
	free(w);
}

/* The last uv handle is closed: stop MHD (closes connections and its epoll fd), free, report. */
static void on_handle_closed(uv_handle_t *h)
{
	web_server *w = h->data;
	if (--w->open_handles > 0)
		return;
	if (w->mhd)
		MHD_stop_daemon(w->mhd);
	void (*done)(void *) = w->done;
	void *arg = w->done_arg;
	server_free(w);
	if (done)
		done(arg);
}

/*
 * Parse "a.b.c.d:port", "[v6]:port" or "localhost:port" into sa (port in
 * network order). 0 or -EINVAL.
 */
static int parse_listen(const char *listen, struct sockaddr_storage *sa, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon;
	memset(sa, 0, sizeof(*sa));
	if (!listen)
		return -EINVAL;
	if (listen[0] == '[') {
		const char *rb = strchr(listen, ']');
		if (!rb || rb[1] != ':' || (size_t)(rb - listen - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, listen + 1, (size_t)(rb - listen - 1));
		host[rb - listen - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(listen, ':');
		if (!colon || (size_t)(colon - listen) >= sizeof(host))
			return -EINVAL;
		memcpy(host, listen, (size_t)(colon - listen));
		host[colon - listen] = '\0';
	}
	const char *ps = colon + 1;
	if (!*ps || strlen(ps) > 5 || strspn(ps, "0123456789") != strlen(ps))
		return -EINVAL;
	unsigned long port = strtoul(ps, NULL, 10);
	if (port > 65535)
		return -EINVAL;
	if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
	if (listen[0] != '[' && inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*len = sizeof(*s4);
		return 0;
	}
	if (listen[0] == '[' && inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
		return 0;
	}
	return -EINVAL;
}

int web_start(web_server **out, uv_loop_t *loop, const char *listen, web_handler h, void *ud, char *err,
	      size_t err_size)
{
	struct sockaddr_storage sa;
	socklen_t salen = 0;
	char dummy[1];
	if (!err || !err_size) {
		err = dummy;
		err_size = sizeof(dummy);
	}
	err[0] = '\0';
	*out = NULL;
	if (!loop || !h) {
		snprintf(err, err_size, "web: bad arguments");
		return -EINVAL;
	}
	if (parse_listen(listen, &sa, &salen) != 0) {
		snprintf(err, err_size, "web: listen address \"%s\" is not ADDRESS:PORT (127.0.0.1:8470, [::1]:8470)",
			 listen ? listen : "");
		return -EINVAL;
	}
	web_server *w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, err_size, "web: out of memory");
		return -ENOMEM;
	}
	w->loop = loop;
	w->handler = h;
	w->ud = ud;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	if (sa.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The logger first, so that MHD's start-up messages come to us. */
	w->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_access, w,
				  MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, w,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)WEB_MAX_CONNECTIONS,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)WEB_CONN_TIMEOUT_S,
				  MHD_OPTION_URI_LOG_CALLBACK, on_uri, w,
				  MHD_OPTION_NOTIFY_CONNECTION, on_connection, w,
				  MHD_OPTION_NOTIFY_COMPLETED, on_completed, w,
				  MHD_OPTION_END);
	if (!w->mhd) {
		snprintf(err, err_size, "web: cannot listen on %s%s%s", listen, w->mhd_err[0] ? ": " : "",
			 w->mhd_err);
		server_free(w);
		return -EIO;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	int efd = di ? di->epoll_fd : -1;
	di = MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_BIND_PORT);
	w->port = di ? di->port : 0;
	int rc = efd >= 0 ? uv_poll_init(loop, &w->poll, efd) : UV_EINVAL;
	if (rc) {
		snprintf(err, err_size, "web: cannot watch the server's epoll fd: %s", uv_strerror(rc));
		MHD_stop_daemon(w->mhd);
		server_free(w);
		return -EIO;
	}
	uv_timer_init(loop, &w->timer);
	w->poll.data = w->timer.data = w;
	w->open_handles = 2;
	rc = uv_poll_start(&w->poll, UV_READABLE, on_poll);
	if (rc) {
		snprintf(err, err_size, "web: cannot watch the server's epoll fd: %s", uv_strerror(rc));
		web_stop(w, NULL, NULL); /* freed once the handles are closed */
		return -EIO;
	}
	rearm(w);
	log_info(WEB_LOG, "listening on %s port=%d", listen, w->port);
	*out = w;
	return 0;
}

int web_port(const web_server *w)
{
	return w ? w->port : 0;
}

int web_set_allowed_hosts(web_server *w, const char *const *hosts)
{
	size_t n = 0;
	while (hosts && hosts[n])
		n++;
	char **v = NULL;
	if (n) {
		v = calloc(n + 1, sizeof(*v));
		if (!v)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			v[i] = strdup(hosts[i]);
			if (!v[i]) {
				for (size_t k = 0; k < i; k++)
					free(v[k]);
				free(v);
				return -ENOMEM;
			}
		}
	}
	if (w->allowed_hosts) {
		for (char **h = w->allowed_hosts; *h; h++)
			free(*h);
		free(w->allowed_hosts);
	}
	w->allowed_hosts = v;
	return 0;
}

void web_stop(web_server *w, void (*done)(void *), void *arg)
{
	if (!w) {
		if (done)
			done(arg);
		return;
	}
	if (w->stopping)
		return;
	w->stopping = true;
	w->done = done;
	w->done_arg = arg;
	uv_poll_stop(&w->poll);
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *)&w->poll, on_handle_closed);
	uv_close((uv_handle_t *)&w->timer, on_handle_closed);
}
