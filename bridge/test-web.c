/*
 * Tests for bridge/web.c: the server on a real uv loop (127.0.0.1:0), driven
 * by a plain-socket HTTP/1.1 client in a second thread, so that every byte
 * on the wire is chosen (half requests, chunked bodies, bad encodings).
 *
 * The handler runs on the loop thread and only answers; every check is made
 * by the client thread (CHECK is not thread-safe, so the loop thread makes
 * none) or by the main thread after the join. When the client is done it
 * asks the loop (uv_async_t) to stop the server; each test ends with
 * uv_loop_close() == 0.
 */
#include "bridge/web.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <uv.h>

#include "bridge/html.h"
#include "bridge/log.h"
#include "tests/harness.h"

/* No read waits longer (a hang fails the test instead of blocking it); never a timed assertion. */
#define CLIENT_TIMEOUT_S 60

/* ---- the server side ----------------------------------------------------- */

typedef struct fixture {
	uv_loop_t loop;
	web_server *w;            /* loop thread only; NULL once stopped from the handler */
	uv_async_t stop_async;
	atomic_bool stop_sent;
	uv_thread_t thread;
	void (*client)(struct fixture *f);
	int port;
	atomic_int handled;       /* handler calls */
	atomic_bool stopped;      /* web_stop's done ran */
} fixture;

static void on_stopped(void *arg)
{
	fixture *f = arg;
	atomic_store(&f->stopped, true);
}

/* Append the parameters of one kind the tests use: "q.a=1#2" (value of the first, count), "q.a[1]=2". */
static void echo_params(html_buf *b, const web_request *req, char kind)
{
	static const char *const names[] = { "a", "b", "empty", "x", "y", "note", "f100", "n" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = kind == 'q' ? web_query_count(req, names[i]) : web_form_count(req, names[i]);
		const char *v = kind == 'q' ? web_query(req, names[i]) : web_form(req, names[i]);
		if (!n)
			continue;
		html_printf(b, "%c.%s=%s#%zu\n", kind, names[i], v, n);
		for (size_t k = 1; k < n; k++)
			html_printf(b, "%c.%s[%zu]=%s\n", kind, names[i], k,
				    kind == 'q' ? web_query_nth(req, names[i], k) : web_form_nth(req, names[i], k));
		/* Past the last: NULL. */
		if ((kind == 'q' ? web_query_nth(req, names[i], n) : web_form_nth(req, names[i], n)) != NULL)
			html_printf(b, "%c.%s: nth past the end is not NULL\n", kind, names[i]);
	}
}

static void handler(void *ud, const web_request *req, web_response *res)
{
	fixture *f = ud;
	atomic_fetch_add(&f->handled, 1);

	if (strcmp(req->path, "/cookies") == 0) {
		res->status = 303;
		web_response_header(res, "Set-Cookie", "frb_session=abc; Path=/; HttpOnly; SameSite=Strict");
		web_response_header(res, "Set-Cookie", "theme=dark; Path=/");
		web_response_header(res, "Location", "/echo");
		web_response_text(res, 303, "see /echo");
		return;
	}
	if (strcmp(req->path, "/header-rules") == 0) {
		char buf[256];
		snprintf(buf, sizeof(buf), "csp=%d xfo=%d cc=%d ct=%d cl=%d conn=%d name=%d crlf=%d ok=%d",
			 web_response_header(res, "content-security-policy", "default-src *"),
			 web_response_header(res, "X-Frame-Options", "ALLOW"),
			 web_response_header(res, "Cache-Control", "max-age=60"),
			 web_response_header(res, "Content-Type", "text/plain"),
			 web_response_header(res, "Content-Length", "5"),
			 web_response_header(res, "Connection", "close"),
			 web_response_header(res, "Bad Name", "x"),
			 web_response_header(res, "X-Evil", "a\r\nSet-Cookie: x=y"),
			 web_response_header(res, "X-Good", "yes"));
		int full = 0;
		for (int i = 0; i < 20; i++)
			if (web_response_header(res, "X-Many", "1") == -ENOSPC)
				full++;
		size_t n = strlen(buf);
		snprintf(buf + n, sizeof(buf) - n, " full=%d", full);
		web_response_text(res, 200, buf);
		return;
	}
	if (strcmp(req->path, "/bad-status") == 0) {
		res->status = 42;
		return;
	}
	if (strcmp(req->path, "/big") == 0) {
		/* Larger than the socket buffers: MHD writes it over several loop turns. */
		size_t n = 1 << 20;
		res->body = malloc(n);
		if (res->body) {
			for (size_t i = 0; i < n; i++)
				res->body[i] = (char)('a' + i % 26);
			res->body_len = n;
		}
		res->content_type = "application/octet-stream";
		return;
	}
	if (strcmp(req->path, "/stop") == 0) {
		web_stop(f->w, on_stopped, f);
		f->w = NULL;
		web_response_text(res, 200, "bye");
		return;
	}

	html_buf b;
	html_buf_init(&b, 1 << 20);
	const char *xt = web_header(req, "x-test");
	html_printf(&b, "method=%s\npath=%s\nremote=%s\ncookie=%s\nx-test=%s\n", req->method, req->path,
		    req->remote, req->cookie_header ? req->cookie_header : "(none)", xt ? xt : "(none)");
	echo_params(&b, req, 'q');
	echo_params(&b, req, 'f');
	res->status = 200;
	res->content_type = "text/plain; charset=utf-8";
	res->body = html_buf_take(&b, &res->body_len);
}

static void on_stop_async(uv_async_t *a)
{
	fixture *f = a->data;
	if (f->w)
		web_stop(f->w, on_stopped, f);
	f->w = NULL;
	uv_close((uv_handle_t *)a, NULL);
}

/* Ask the loop to stop the server (once). */
static void request_stop(fixture *f)
{
	if (!atomic_exchange(&f->stop_sent, true))
		uv_async_send(&f->stop_async);
}

static void client_main(void *arg)
{
	fixture *f = arg;
	f->client(f);
	request_stop(f);
}

/*
 * Serve on 127.0.0.1:0 while client runs in its thread; then stop and close
 * everything. restrict_hosts: only Host 127.0.0.1:PORT and localhost:PORT.
 */
static void run_with_server(void (*client)(fixture *), bool restrict_hosts)
{
	fixture *f = calloc(1, sizeof(*f));
	REQUIRE(f != NULL);
	REQUIRE(uv_loop_init(&f->loop) == 0);
	char err[256];
	int rc = web_start(&f->w, &f->loop, "127.0.0.1:0", handler, f, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "web_start: %s\n", err);
	REQUIRE(rc == 0);
	f->port = web_port(f->w);
	CHECK(f->port > 0);
	if (restrict_hosts) {
		char h1[64], h2[64];
		snprintf(h1, sizeof(h1), "127.0.0.1:%d", f->port);
		snprintf(h2, sizeof(h2), "localhost:%d", f->port);
		const char *const hosts[] = { h1, h2, NULL };
		CHECK_INT(web_set_allowed_hosts(f->w, hosts), 0); /* copied */
	}
	f->client = client;
	f->stop_async.data = f;
	REQUIRE(uv_async_init(&f->loop, &f->stop_async, on_stop_async) == 0);
	REQUIRE(uv_thread_create(&f->thread, client_main, f) == 0);
	CHECK_INT(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	uv_thread_join(&f->thread);
	CHECK(atomic_load(&f->stopped));
	CHECK_INT(uv_loop_close(&f->loop), 0);
	free(f);
}

/* ---- the client side ----------------------------------------------------- */

typedef struct cli {
	int fd;
	char *buf;      /* bytes received and not consumed yet */
	size_t len, cap;
} cli;

typedef struct resp {
	int status;
	char *head;     /* status line and headers, NUL-terminated */
	char *body;     /* NUL-terminated */
	size_t body_len;
} resp;

static void resp_free(resp *r)
{
	free(r->head);
	free(r->body);
	*r = (resp){ 0 };
}

static int cli_open(cli *c, int port)
{
	*c = (cli){ .fd = -1 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { .tv_sec = CLIENT_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	c->fd = fd;
	return 0;
}

static void cli_close(cli *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	*c = (cli){ .fd = -1 };
}

static bool cli_send(cli *c, const void *data, size_t n)
{
	const char *p = data;
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static bool cli_sends(cli *c, const char *s)
{
	return cli_send(c, s, strlen(s));
}

/* Receive more bytes: >0 read, 0 end of stream, -1 error or timeout. */
static int cli_more(cli *c)
{
	if (c->cap - c->len < 65536) {
		size_t cap = c->cap ? c->cap * 2 : 131072;
		char *b = realloc(c->buf, cap);
		if (!b)
			return -1;
		c->buf = b;
		c->cap = cap;
	}
	for (;;) {
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == ECONNRESET ? 0 : -1;
		c->len += (size_t)n;
		c->buf[c->len] = '\0';
		return n > 0 ? 1 : 0;
	}
}

/* Drop the first n received bytes. */
static void cli_consume(cli *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
	c->buf[c->len] = '\0';
}

/* One header's value (the idx-th of that name) from a header block; false if absent. */
static bool head_value(const char *head, const char *name, size_t idx, char *out, size_t size)
{
	size_t nl = strlen(name);
	for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		const char *line = p + 2;
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':' && idx-- == 0) {
			const char *v = line + nl + 1;
			while (*v == ' ')
				v++;
			size_t vl = strcspn(v, "\r");
			snprintf(out, size, "%.*s", (int)vl, v);
			return true;
		}
	}
	return false;
}

static size_t head_count(const char *head, const char *name)
{
	char tmp[8];
	size_t n = 0;
	while (head_value(head, name, n, tmp, sizeof(tmp)))
		n++;
	return n;
}

/* Read one response (1xx skipped; no body for HEAD). 0, or -1 (closed, timeout, garbage). */
static int cli_response(cli *c, resp *r, bool head_request)
{
	*r = (resp){ 0 };
	for (;;) {
		char *end;
		while (!c->buf || !(end = strstr(c->buf, "\r\n\r\n")))
			if (cli_more(c) <= 0)
				return -1;
		size_t hlen = (size_t)(end - c->buf) + 4;
		if (sscanf(c->buf, "HTTP/1.%*d %d", &r->status) != 1) {
			fprintf(stderr, "  not an HTTP response: %.*s\n", (int)(hlen < 200 ? hlen : 200), c->buf);
			return -1;
		}
		r->head = strndup(c->buf, hlen - 2);
		cli_consume(c, hlen);
		if (r->status >= 200)
			break;
		free(r->head);
		r->head = NULL;
	}
	char cl[32];
	size_t want = 0;
	if (!head_request && head_value(r->head, "Content-Length", 0, cl, sizeof(cl)))
		want = strtoul(cl, NULL, 10);
	while (c->len < want)
		if (cli_more(c) <= 0)
			return -1;
	r->body = malloc(want + 1);
	if (!r->body)
		return -1;
	memcpy(r->body, c->buf ? c->buf : "", want);
	r->body[want] = '\0';
	r->body_len = want;
	cli_consume(c, want);
	return 0;
}

/* Does the server close the connection (no more bytes, end of stream)? */
static bool cli_sees_eof(cli *c)
{
	for (;;) {
		int rc = cli_more(c);
		if (rc == 0)
			return true;
		if (rc < 0)
			return false;
	}
}

/* Send raw and read the answer on a new connection. */
static int exchange(fixture *f, const char *raw, size_t raw_len, resp *r, bool head_request)
{
	cli c;
	if (cli_open(&c, f->port) != 0)
		return -1;
	int rc = cli_send(&c, raw, raw_len) ? cli_response(&c, r, head_request) : -1;
	cli_close(&c);
	return rc;
}

static int get(fixture *f, const char *target, resp *r)
{
	char req[8192];
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target);
	return exchange(f, req, strlen(req), r, false);
}

static int post(fixture *f, const char *target, const char *ctype, const char *body, resp *r)
{
	size_t blen = strlen(body);
	size_t n = blen + 512 + strlen(target);
	char *req = malloc(n);
	if (!req)
		return -1;
	int h = snprintf(req, n, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sContent-Length: %zu\r\n\r\n", target,
			 ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "", blen);
	memcpy(req + h, body, blen);
	int rc = exchange(f, req, (size_t)h + blen, r, false);
	free(req);
	return rc;
}

#define FORM "application/x-www-form-urlencoded"

static bool has(const resp *r, const char *s)
{
	bool ok = r->body && strstr(r->body, s);
	if (!ok)
		fprintf(stderr, "  body lacks \"%s\"; body:\n%s\n", s, r->body ? r->body : "(null)");
	return ok;
}

static void check_security_headers(const resp *r)
{
	char v[256];
	CHECK(head_value(r->head, "Content-Security-Policy", 0, v, sizeof(v)));
	CHECK_STR(v, "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
	CHECK(head_value(r->head, "X-Content-Type-Options", 0, v, sizeof(v)));
	CHECK_STR(v, "nosniff");
	CHECK(head_value(r->head, "Referrer-Policy", 0, v, sizeof(v)));
	CHECK_STR(v, "no-referrer");
	CHECK(head_value(r->head, "X-Frame-Options", 0, v, sizeof(v)));
	CHECK_STR(v, "DENY");
	CHECK(head_value(r->head, "Cache-Control", 0, v, sizeof(v)));
	CHECK_STR(v, "no-store");
	CHECK_INT(head_count(r->head, "Content-Security-Policy"), 1);
	CHECK_INT(head_count(r->head, "Cache-Control"), 1);
}

/* ---- the tests ------------------------------------------------------------ */

static void client_get_query(fixture *f)
{
	resp r;
	REQUIRE(get(f, "/ec%68o?a=1&a=2&b=x%20y+z&&empty&note=%3Cb%3E%26", &r) == 0);
	CHECK_INT(r.status, 200);
	CHECK(has(&r, "method=GET\n"));
	CHECK(has(&r, "path=/echo\n"));
	CHECK(has(&r, "remote=127.0.0.1\n"));
	CHECK(has(&r, "cookie=(none)\n"));
	CHECK(has(&r, "q.a=1#2\n"));
	CHECK(has(&r, "q.a[1]=2\n"));
	CHECK(has(&r, "q.b=x y z#1\n"));
	CHECK(has(&r, "q.empty=#1\n"));
	CHECK(has(&r, "q.note=<b>&#1\n"));
	CHECK(!strstr(r.body, "nth past the end"));
	CHECK(!strstr(r.body, "f."));
	char v[128];
	CHECK(head_value(r.head, "Content-Type", 0, v, sizeof(v)));
	CHECK_STR(v, "text/plain; charset=utf-8");
	check_security_headers(&r);
	resp_free(&r);

	/* HEAD: the same headers, no body. */
	const char *head = "HEAD /echo?a=1 HTTP/1.1\r\nHost: x\r\n\r\n";
	REQUIRE(exchange(f, head, strlen(head), &r, true) == 0);
	CHECK_INT(r.status, 200);
	check_security_headers(&r);
	resp_free(&r);

	/* A handler's own page gets them too, and its own headers. */
	REQUIRE(get(f, "/cookies", &r) == 0);
	check_security_headers(&r);
	resp_free(&r);
}

static void test_get_query(void)
{
	run_with_server(client_get_query, false);
}

static void client_post_form(fixture *f)
{
	resp r;
	REQUIRE(post(f, "/echo?a=q", FORM "; charset=UTF-8",
		     "a=f&x=1&x=2&x=3&y=%C3%A9t%C3%A9+%26+co&note=a%2Bb%3D%25&empty=&b", &r) == 0);
	CHECK_INT(r.status, 200);
	CHECK(has(&r, "method=POST\n"));
	CHECK(has(&r, "q.a=q#1\n"));    /* the query and the form are apart */
	CHECK(has(&r, "f.a=f#1\n"));
	CHECK(has(&r, "f.x=1#3\n"));    /* repeated: the first wins, the count tells */
	CHECK(has(&r, "f.x[1]=2\n"));
	CHECK(has(&r, "f.x[2]=3\n"));
	CHECK(has(&r, "f.y=\xC3\xA9t\xC3\xA9 & co#1\n"));
	CHECK(has(&r, "f.note=a+b=%#1\n"));
	CHECK(has(&r, "f.empty=#1\n"));
	CHECK(has(&r, "f.b=#1\n"));
	resp_free(&r);

	/* An empty form. */
	REQUIRE(post(f, "/echo", FORM, "", &r) == 0);
	CHECK_INT(r.status, 200);
	CHECK(!strstr(r.body, "f."));
	resp_free(&r);

	/* A chunked body. */
	const char *chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: " FORM "\r\n"
			      "Transfer-Encoding: chunked\r\n\r\n"
			      "4\r\nx=ab\r\n6\r\n&y=cd%\r\n2\r\n21\r\n0\r\n\r\n";
	REQUIRE(exchange(f, chunked, strlen(chunked), &r, false) == 0);
	CHECK_INT(r.status, 200);
	CHECK(has(&r, "f.x=ab#1\n"));
	CHECK(has(&r, "f.y=cd!#1\n"));
	resp_free(&r);

	/* Exactly WEB_MAX_BODY bytes and exactly WEB_MAX_FIELDS fields pass. */
	char *body = malloc(WEB_MAX_BODY + 1);
	REQUIRE(body != NULL);
	size_t n = 0;
	for (int i = 0; i < WEB_MAX_FIELDS - 1; i++)
		n += (size_t)sprintf(body + n, "f%d=%d&", i, i);
	n += (size_t)sprintf(body + n, "n=");
	memset(body + n, 'z', WEB_MAX_BODY - n);
	body[WEB_MAX_BODY] = '\0';
	REQUIRE(post(f, "/echo", FORM, body, &r) == 0);
	CHECK_INT(r.status, 200);
	CHECK(has(&r, "f.n=zzz"));
	resp_free(&r);
	free(body);
}

static void test_post_form(void)
{
	run_with_server(client_post_form, false);
}

static void client_cookies_headers(fixture *f)
{
	resp r;
	const char *req = "GET /echo HTTP/1.1\r\nHost: x\r\nCookie: theme=dark; frb_session=abc\r\n"
			  "X-Test: hello world\r\n\r\n";
	REQUIRE(exchange(f, req, strlen(req), &r, false) == 0);
	CHECK_INT(r.status, 200);
	CHECK(has(&r, "cookie=theme=dark; frb_session=abc\n"));
	CHECK(has(&r, "x-test=hello world\n"));
	resp_free(&r);

	/* Two Set-Cookie headers, a Location and a status of the handler's. */
	REQUIRE(get(f, "/cookies", &r) == 0);
	CHECK_INT(r.status, 303);
	CHECK_INT(head_count(r.head, "Set-Cookie"), 2);
	char v[128];
	CHECK(head_value(r.head, "Set-Cookie", 0, v, sizeof(v)));
	CHECK_STR(v, "frb_session=abc; Path=/; HttpOnly; SameSite=Strict");
	CHECK(head_value(r.head, "Set-Cookie", 1, v, sizeof(v)));
	CHECK_STR(v, "theme=dark; Path=/");
	CHECK(head_value(r.head, "Location", 0, v, sizeof(v)));
	CHECK_STR(v, "/echo");
	CHECK_STR(r.body, "see /echo");
	resp_free(&r);

	/* What a handler may not set. */
	REQUIRE(get(f, "/header-rules", &r) == 0);
	CHECK_INT(r.status, 200);
	char want[160];
	snprintf(want, sizeof(want), "csp=%d xfo=%d cc=%d ct=%d cl=%d conn=%d name=%d crlf=%d ok=0 full=5", -EPERM,
		 -EPERM, -EPERM, -EINVAL, -EINVAL, -EINVAL, -EINVAL, -EINVAL);
	CHECK_STR(r.body, want);
	CHECK(head_value(r.head, "X-Good", 0, v, sizeof(v)));
	CHECK_INT(head_count(r.head, "X-Many"), WEB_MAX_RESPONSE_HEADERS - 1);
	CHECK_INT(head_count(r.head, "X-Evil"), 0);
	check_security_headers(&r);
	resp_free(&r);

	/* An invalid status from the handler: 500. */
	REQUIRE(get(f, "/bad-status", &r) == 0);
	CHECK_INT(r.status, 500);
	resp_free(&r);

	/* A large answer goes out whole. */
	REQUIRE(get(f, "/big", &r) == 0);
	CHECK_INT(r.status, 200);
	CHECK_INT(r.body_len, 1 << 20);
	bool same = r.body_len == (1 << 20);
	for (size_t i = 0; same && i < r.body_len; i++)
		same = r.body[i] == (char)('a' + i % 26);
	CHECK(same);
	resp_free(&r);
}

static void test_cookies_headers(void)
{
	run_with_server(client_cookies_headers, false);
}

/* One refused request: status and a text naming what; the handler never ran. */
static void expect_refused(fixture *f, int rc, resp *r, int status, const char *text)
{
	int before = atomic_load(&f->handled);
	CHECK_INT(rc, 0);
	CHECK_INT(r->status, status);
	if (text)
		CHECK(has(r, text));
	if (r->head)
		check_security_headers(r);
	CHECK_INT(atomic_load(&f->handled), before);
	resp_free(r);
}

static void client_limits(fixture *f)
{
	resp r;
	int before = atomic_load(&f->handled);
	char *big = malloc(WEB_MAX_BODY + 16384);
	REQUIRE(big != NULL);

	/* 413: a declared length past the cap, answered before the body is sent. */
	const char *req413 = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: " FORM "\r\n"
			     "Content-Length: 65537\r\nExpect: 100-continue\r\n\r\n";
	expect_refused(f, exchange(f, req413, strlen(req413), &r, false), &r, 413, "too large");

	/* 413: a chunked body that grows past the cap. */
	int n = sprintf(big, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: " FORM "\r\n"
			     "Transfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 6; i++) { /* 6 * 12 KiB = 72 KiB */
		n += sprintf(big + n, "3000\r\n");
		memset(big + n, 'a', 0x3000);
		n += 0x3000;
		n += sprintf(big + n, "\r\n");
	}
	n += sprintf(big + n, "0\r\n\r\n");
	expect_refused(f, exchange(f, big, (size_t)n, &r, false), &r, 413, "too large");

	/* 405, with Allow. */
	static const char *const methods[] = { "PUT", "DELETE", "OPTIONS", "PATCH" };
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		char req[256];
		snprintf(req, sizeof(req), "%s /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", methods[i]);
		int rc = exchange(f, req, strlen(req), &r, false);
		char v[64] = "";
		if (rc == 0)
			head_value(r.head, "Allow", 0, v, sizeof(v));
		CHECK_STR(v, "GET, HEAD, POST");
		expect_refused(f, rc, &r, 405, "method");
	}

	/* 415: another or no content type. */
	expect_refused(f, post(f, "/echo", "application/json", "{}", &r), &r, 415, NULL);
	expect_refused(f, post(f, "/echo", "multipart/form-data; boundary=x", "--x--", &r), &r, 415, NULL);
	expect_refused(f, post(f, "/echo", "application/x-www-form-urlencodedx", "a=1", &r), &r, 415, NULL);
	expect_refused(f, post(f, "/echo", NULL, "a=1", &r), &r, 415, NULL);

	/* 414 past WEB_MAX_URL; exactly WEB_MAX_URL passes. */
	char *url = malloc(WEB_MAX_URL + 2);
	REQUIRE(url != NULL);
	strcpy(url, "/echo?a=");
	memset(url + 8, 'u', WEB_MAX_URL - 8);
	url[WEB_MAX_URL] = '\0';
	REQUIRE(get(f, url, &r) == 0);
	CHECK_INT(r.status, 200);
	resp_free(&r);
	strcat(url, "u");
	expect_refused(f, get(f, url, &r), &r, 414, NULL);
	free(url);

	/* 400: more than WEB_MAX_FIELDS fields, in the form or the query. */
	n = 0;
	for (int i = 0; i <= WEB_MAX_FIELDS; i++)
		n += sprintf(big + n, "x=%d&", i);
	expect_refused(f, post(f, "/echo", FORM, big, &r), &r, 400, "more than 100 form parameters");
	n = sprintf(big, "/echo?");
	for (int i = 0; i <= WEB_MAX_FIELDS; i++)
		n += sprintf(big + n, "a=%d&", i);
	expect_refused(f, get(f, big, &r), &r, 400, "more than 100 query parameters");

	/* 400: malformed percent-encoding, naming the parameter. */
	expect_refused(f, get(f, "/echo?b=1&a=%zz", &r), &r, 400, "query parameter \"a\"");
	expect_refused(f, get(f, "/echo?a=%4", &r), &r, 400, "query parameter \"a\"");
	expect_refused(f, get(f, "/echo?a=%00", &r), &r, 400, "query parameter \"a\"");
	expect_refused(f, get(f, "/echo?%G1=x", &r), &r, 400, "query parameter name (\"%G1\")");
	expect_refused(f, post(f, "/echo", FORM, "x=1&note=caf%E", &r), &r, 400, "form parameter \"note\"");
	expect_refused(f, post(f, "/echo", FORM, "n%61me=%%", &r), &r, 400, "form parameter \"name\"");
	expect_refused(f, get(f, "/ec%ho", &r), &r, 400, "path");
	expect_refused(f, get(f, "/a%00b", &r), &r, 400, "path");
	/* A NUL byte in a form body. */
	const char nul[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: " FORM "\r\nContent-Length: 3\r\n\r\na\0b";
	expect_refused(f, exchange(f, nul, sizeof(nul) - 1, &r, false), &r, 400, "NUL");

	/* None of these reached the handler but the one of exactly WEB_MAX_URL. */
	CHECK_INT(atomic_load(&f->handled), before + 1);
	free(big);
}

static void test_limits(void)
{
	run_with_server(client_limits, false);
}

static void client_keepalive(fixture *f)
{
	cli c;
	resp r;
	REQUIRE(cli_open(&c, f->port) == 0);
	for (int i = 0; i < 3; i++) {
		char req[128];
		snprintf(req, sizeof(req), "GET /echo?a=%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
		REQUIRE(cli_sends(&c, req));
		REQUIRE(cli_response(&c, &r, false) == 0);
		char want[32];
		snprintf(want, sizeof(want), "q.a=%d#1\n", i);
		CHECK(has(&r, want));
		char v[32];
		CHECK(!head_value(r.head, "Connection", 0, v, sizeof(v)) || strcasecmp(v, "close") != 0);
		resp_free(&r);
	}
	/* A POST and then a GET on the same connection. */
	const char *p = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: " FORM "\r\nContent-Length: 3\r\n\r\nx=7";
	REQUIRE(cli_sends(&c, p));
	REQUIRE(cli_response(&c, &r, false) == 0);
	CHECK(has(&r, "f.x=7#1\n"));
	resp_free(&r);
	/* A refused request whose parameters are bad keeps the connection (the request was read whole). */
	REQUIRE(cli_sends(&c, "GET /echo?a=%zz HTTP/1.1\r\nHost: x\r\n\r\n"));
	REQUIRE(cli_response(&c, &r, false) == 0);
	CHECK_INT(r.status, 400);
	resp_free(&r);
	REQUIRE(cli_sends(&c, "GET /echo?a=9 HTTP/1.1\r\nHost: x\r\n\r\n"));
	REQUIRE(cli_response(&c, &r, false) == 0);
	CHECK(has(&r, "q.a=9#1\n"));
	resp_free(&r);
	/* One refused from its headers with a body unread: answered, then closed. */
	REQUIRE(cli_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
			      "Expect: 100-continue\r\n\r\n"));
	REQUIRE(cli_response(&c, &r, false) == 0);
	CHECK_INT(r.status, 415);
	resp_free(&r);
	CHECK(cli_sees_eof(&c));
	cli_close(&c);
	/* Connection: close from the client is honoured. */
	REQUIRE(cli_open(&c, f->port) == 0);
	REQUIRE(cli_sends(&c, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
	REQUIRE(cli_response(&c, &r, false) == 0);
	CHECK_INT(r.status, 200);
	resp_free(&r);
	CHECK(cli_sees_eof(&c));
	cli_close(&c);
}

static void test_keepalive(void)
{
	run_with_server(client_keepalive, false);
}

/* A client that sends half a request and stalls does not hold up the others. */
static void client_slow(fixture *f)
{
	cli slow, slow2, quick;
	resp r;
	REQUIRE(cli_open(&slow, f->port) == 0);
	REQUIRE(cli_open(&slow2, f->port) == 0);
	REQUIRE(cli_sends(&slow, "GET /echo?a=slow HTTP/1.1\r\nHo"));
	REQUIRE(cli_sends(&slow2, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: " FORM
				  "\r\nContent-Length: 10\r\n\r\nx=12"));
	for (int i = 0; i < 3; i++) {
		REQUIRE(cli_open(&quick, f->port) == 0);
		REQUIRE(cli_sends(&quick, "GET /echo?a=quick HTTP/1.1\r\nHost: x\r\n\r\n"));
		REQUIRE(cli_response(&quick, &r, false) == 0);
		CHECK(has(&r, "q.a=quick#1\n"));
		resp_free(&r);
		cli_close(&quick);
	}
	/* The slow ones finish and are answered. */
	REQUIRE(cli_sends(&slow, "st: x\r\n\r\n"));
	REQUIRE(cli_response(&slow, &r, false) == 0);
	CHECK(has(&r, "q.a=slow#1\n"));
	resp_free(&r);
	REQUIRE(cli_sends(&slow2, "345678"));
	REQUIRE(cli_response(&slow2, &r, false) == 0);
	CHECK(has(&r, "f.x=12345678#1\n"));
	resp_free(&r);
	cli_close(&slow);
	cli_close(&slow2);
}

static void test_slow_client(void)
{
	run_with_server(client_slow, false);
}

/* Stop while connections are open (one idle after a request, one mid-request): both are closed. */
static void client_stop_open(fixture *f)
{
	cli idle, half;
	resp r;
	REQUIRE(cli_open(&idle, f->port) == 0);
	REQUIRE(cli_open(&half, f->port) == 0);
	REQUIRE(cli_sends(&idle, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
	REQUIRE(cli_response(&idle, &r, false) == 0);
	CHECK_INT(r.status, 200);
	resp_free(&r);
	REQUIRE(cli_sends(&half, "GET /echo HTTP/1.1\r\nHost"));
	/* Make sure the half request reached the server: a full one after it on another connection. */
	cli probe;
	REQUIRE(cli_open(&probe, f->port) == 0);
	REQUIRE(cli_sends(&probe, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
	REQUIRE(cli_response(&probe, &r, false) == 0);
	resp_free(&r);

	request_stop(f);
	CHECK(cli_sees_eof(&idle));
	CHECK(cli_sees_eof(&half));
	CHECK(cli_sees_eof(&probe));
	cli_close(&idle);
	cli_close(&half);
	cli_close(&probe);
}

static void test_stop_with_open_connections(void)
{
	run_with_server(client_stop_open, false);
}

/* The handler may stop its own server. */
static void client_stop_in_handler(fixture *f)
{
	cli c;
	REQUIRE(cli_open(&c, f->port) == 0);
	REQUIRE(cli_sends(&c, "GET /stop HTTP/1.1\r\nHost: x\r\n\r\n"));
	/* The answer may or may not go out; the connection is closed either way. */
	resp r;
	if (cli_response(&c, &r, false) == 0) {
		CHECK_INT(r.status, 200);
		resp_free(&r);
	}
	resp_free(&r);
	CHECK(cli_sees_eof(&c));
	cli_close(&c);
	/* Nobody listens any more. */
	CHECK(cli_open(&c, f->port) != 0 || !cli_sends(&c, "GET / HTTP/1.1\r\n\r\n") || cli_sees_eof(&c));
	cli_close(&c);
}

static void test_stop_in_handler(void)
{
	run_with_server(client_stop_in_handler, false);
}

static void client_hosts(fixture *f)
{
	resp r;
	char req[256];
	snprintf(req, sizeof(req), "GET /echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f->port);
	REQUIRE(exchange(f, req, strlen(req), &r, false) == 0);
	CHECK_INT(r.status, 200);
	resp_free(&r);
	snprintf(req, sizeof(req), "GET /echo HTTP/1.1\r\nHost: LOCALHOST:%d\r\n\r\n", f->port);
	REQUIRE(exchange(f, req, strlen(req), &r, false) == 0);
	CHECK_INT(r.status, 200);
	resp_free(&r);
	snprintf(req, sizeof(req), "GET /echo HTTP/1.1\r\nHost: evil.example:%d\r\n\r\n", f->port);
	expect_refused(f, exchange(f, req, strlen(req), &r, false), &r, 421, NULL);
	const char *h10 = "GET /echo HTTP/1.0\r\n\r\n"; /* no Host at all */
	expect_refused(f, exchange(f, h10, strlen(h10), &r, false), &r, 421, NULL);
}

static void test_allowed_hosts(void)
{
	run_with_server(client_hosts, true);
}

static void client_secrets(fixture *f)
{
	resp r;
	const char *req = "GET /echo?note=SECRETQ HTTP/1.1\r\nHost: x\r\nCookie: frb_session=SECRETC\r\n"
			  "X-Test: SECRETH\r\n\r\n";
	REQUIRE(exchange(f, req, strlen(req), &r, false) == 0);
	CHECK_INT(r.status, 200);
	resp_free(&r);
	REQUIRE(post(f, "/echo?x=SECRETQ2", FORM, "note=SECRETB", &r) == 0);
	CHECK_INT(r.status, 200);
	resp_free(&r);
	REQUIRE(post(f, "/echo", FORM, "note=SECRETM%zz", &r) == 0);
	CHECK_INT(r.status, 400);
	resp_free(&r);
	char url[WEB_MAX_URL + 64];
	int n = snprintf(url, sizeof(url), "/echo?a=SECRETL");
	memset(url + n, 'u', WEB_MAX_URL);
	url[n + WEB_MAX_URL] = '\0';
	REQUIRE(get(f, url, &r) == 0); /* a URL too long */
	CHECK_INT(r.status, 414);
	resp_free(&r);
}

/* At debug level: one line per request with method, path, status; never a query, body, cookie or header value. */
static void test_log_keeps_secrets_out(void)
{
	char *dir = harness_tmpdir();
	REQUIRE(dir != NULL);
	char path[512];
	snprintf(path, sizeof(path), "%s/stderr", dir);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	REQUIRE(fd >= 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	REQUIRE(saved >= 0);
	dup2(fd, STDERR_FILENO);
	close(fd);
	log_level old = log_get_level();
	log_set_level(LOG_DEBUG);
	run_with_server(client_secrets, false);
	log_set_level(old);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);

	size_t len = 0;
	FILE *fp = fopen(path, "r");
	REQUIRE(fp != NULL);
	char *text = calloc(1, 1 << 20);
	REQUIRE(text != NULL);
	len = fread(text, 1, (1 << 20) - 1, fp);
	fclose(fp);
	CHECK(len > 0);
	CHECK(strstr(text, "SECRET") == NULL);
	CHECK(strstr(text, "request method=GET path=/echo status=200 ms=") != NULL);
	CHECK(strstr(text, "request method=POST path=/echo status=400 ms=") != NULL);
	CHECK(strstr(text, "request method=GET path=/echo status=414 ms=") != NULL);
	if (harness_failures)
		fprintf(stderr, "the log was:\n%s\n", text);
	free(text);
	unlink(path);
	rmdir(dir);
	free(dir);
}

static void test_start_errors(void)
{
	uv_loop_t loop;
	REQUIRE(uv_loop_init(&loop) == 0);
	web_server *w = (web_server *)1;
	char err[256];
	static const char *const bad[] = { "127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:65536",
					   "300.0.0.1:80", "[::1:80", "[::1]80", "::1:80", "example.org:80", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_INT(web_start(&w, &loop, bad[i], handler, NULL, err, sizeof(err)), -EINVAL);
		CHECK(w == NULL);
		CHECK(strstr(err, "listen address") != NULL);
	}
	CHECK_INT(web_start(&w, &loop, NULL, handler, NULL, err, sizeof(err)), -EINVAL);

	/* A port in use. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(fd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(sa);
	REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0);
	REQUIRE(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
	CHECK_INT(web_start(&w, &loop, addr, handler, NULL, err, sizeof(err)), -EIO);
	CHECK(w == NULL);
	CHECK(strstr(err, "cannot listen on 127.0.0.1:") != NULL);
	close(fd);

	/* IPv6 loopback and "localhost" start and stop (IPv6 may be missing in a sandbox). */
	int rc = web_start(&w, &loop, "[::1]:0", handler, NULL, err, sizeof(err));
	if (rc == 0) {
		CHECK(web_port(w) > 0);
		web_stop(w, NULL, NULL);
		web_stop(w, NULL, NULL); /* the second is a no-op */
	} else {
		fprintf(stderr, "  (no IPv6 loopback here: %s)\n", err);
	}
	CHECK_INT(web_start(&w, &loop, "localhost:0", handler, NULL, err, sizeof(err)), 0);
	web_stop(w, NULL, NULL);
	CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
	web_stop(NULL, NULL, NULL);
	CHECK_INT(uv_loop_close(&loop), 0);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (getenv("TEST_WEB_DEBUG")) /* the server's debug lines, to see a failing test */
		log_set_level(LOG_DEBUG);
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_get_query),
		HARNESS_TEST(test_post_form),
		HARNESS_TEST(test_cookies_headers),
		HARNESS_TEST(test_limits),
		HARNESS_TEST(test_keepalive),
		HARNESS_TEST(test_slow_client),
		HARNESS_TEST(test_stop_with_open_connections),
		HARNESS_TEST(test_stop_in_handler),
		HARNESS_TEST(test_allowed_hosts),
		HARNESS_TEST(test_log_keeps_secrets_out),
		HARNESS_TEST(test_start_errors),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
