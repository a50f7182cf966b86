/*
 * libcurl multi socket API on libuv, after the shape of curl's multi-uv
 * example: curl tells us which sockets to watch (socket callback) and when
 * to call it back (timer callback); we watch them with uv_poll_t and a
 * uv_timer_t and hand readiness back through curl_multi_socket_action().
 */
#include "bridge/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_DEFAULT_MAX_BODY ((size_t)256 << 20)

struct http_client {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	char *ca_file;
	char *user_agent;
	bool closing;
	int open_handles;          /* uv handles not yet closed (timer + polls) */
	void (*closed)(void *);
	void *closed_ud;
	http_xfer *xfers;          /* doubly linked list of live transfers */
	struct http_sock *socks;   /* sockets being watched */
};

struct http_xfer {
	http_client *client;
	CURL *easy;
	struct curl_slist *headers;
	char *url;
	char *post;
	size_t max_body;
	http_done_fn done;
	void *userdata;
	http_response resp;
	size_t cap;
	bool too_large;
	http_xfer *prev, *next;
};

typedef struct http_sock {
	uv_poll_t poll;
	curl_socket_t fd;
	http_client *client;
	struct http_sock *prev, *next;
} http_sock;

static void sock_close(http_sock *s);

static void client_maybe_free(http_client *c);

static void check_multi_info(http_client *c);

char *http_response_take_body(http_response *r, size_t *len)
{
	char *b = r->body;
	if (len)
		*len = r->len;
	r->body = NULL;
	r->len = 0;
	return b;
}

static void response_deinit(http_response *r)
{
	free(r->body);
	free(r->retry_after);
	free(r->content_type);
	free(r->www_authenticate);
	free(r->date);
	memset(r, 0, sizeof(*r));
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	http_xfer *x = ud;
	size_t n = size * nmemb;
	http_response *r = &x->resp;

	if (n > x->max_body - r->len) {
		x->too_large = true;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (r->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 16384;
		while (cap < r->len + n + 1)
			cap *= 2;
		char *b = realloc(r->body, cap);
		if (!b)
			return 0;
		r->body = b;
		x->cap = cap;
	}
	memcpy(r->body + r->len, ptr, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

/* Copy the value of "Name: value\r\n" if the line's name is name. */
static void header_capture(const char *line, size_t n, const char *name, char **dst)
{
	size_t nl = strlen(name);
	if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	const char *v = line + nl + 1;
	const char *end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	free(*dst);
	*dst = strndup(v, (size_t)(end - v));
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud)
{
	http_xfer *x = ud;
	size_t n = size * nmemb;

	/* A new status line (after a 100 Continue or a redirect) resets what was captured. */
	if (n > 5 && strncmp(line, "HTTP/", 5) == 0) {
		free(x->resp.retry_after);
		free(x->resp.content_type);
		free(x->resp.www_authenticate);
		free(x->resp.date);
		x->resp.retry_after = x->resp.content_type = x->resp.www_authenticate = x->resp.date = NULL;
		return n;
	}
	header_capture(line, n, "Retry-After", &x->resp.retry_after);
	header_capture(line, n, "Content-Type", &x->resp.content_type);
	header_capture(line, n, "WWW-Authenticate", &x->resp.www_authenticate);
	header_capture(line, n, "Date", &x->resp.date);
	return n;
}

static void xfer_unlink(http_xfer *x)
{
	http_client *c = x->client;
	if (x->prev)
		x->prev->next = x->next;
	else
		c->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
}

static void xfer_free(http_xfer *x)
{
	if (!x)
		return;
	if (x->easy) {
		curl_multi_remove_handle(x->client->multi, x->easy);
		curl_easy_cleanup(x->easy);
	}
	curl_slist_free_all(x->headers);
	response_deinit(&x->resp);
	free(x->url);
	free(x->post);
	free(x);
}

static void on_poll_closed(uv_handle_t *h)
{
	http_sock *s = h->data;
	http_client *c = s->client;
	free(s);
	c->open_handles--;
	client_maybe_free(c);
}

/* Stop watching a socket and unlink it; freed when libuv has closed it. */
static void sock_close(http_sock *s)
{
	http_client *c = s->client;
	if (s->prev)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, on_poll_closed);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	http_sock *s = p->data;
	http_client *c = s->client;
	int flags = 0;
	int running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(c->multi, s->fd, flags, &running);
	check_multi_info(c);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	http_client *c = userp;
	http_sock *s = socketp;
	(void)easy;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			if (c->multi)
				curl_multi_assign(c->multi, fd, NULL);
			sock_close(s);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		s->fd = fd;
		s->client = c;
		if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
			free(s);
			return -1;
		}
		s->poll.data = s;
		c->open_handles++;
		s->next = c->socks;
		if (c->socks)
			c->socks->prev = s;
		c->socks = s;
		curl_multi_assign(c->multi, fd, s);
	}
	int events = 0;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	uv_poll_start(&s->poll, events, on_poll);
	return 0;
}

static void on_uv_timeout(uv_timer_t *t)
{
	http_client *c = t->data;
	int running;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi_info(c);
}

/* curl asks for a callback after timeout_ms; only arm the uv timer here. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	http_client *c = userp;
	(void)multi;
	if (timeout_ms < 0)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, on_uv_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

static void check_multi_info(http_client *c)
{
	CURLMsg *msg;
	int pending;

	while ((msg = curl_multi_info_read(c->multi, &pending))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		http_xfer *x = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		if (!x)
			continue;
		x->resp.curl_code = msg->data.result;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->resp.status);
		curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &x->resp.total_s);
		if (x->too_large)
			snprintf(x->resp.error, sizeof(x->resp.error),
				 "response body larger than %zu bytes", x->max_body);
		else if (x->resp.curl_code != CURLE_OK && !x->resp.error[0])
			snprintf(x->resp.error, sizeof(x->resp.error), "%s",
				 curl_easy_strerror(x->resp.curl_code));
		if (!x->resp.body) {
			x->resp.body = calloc(1, 1);
		}
		curl_multi_remove_handle(c->multi, x->easy);
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
		xfer_unlink(x);
		x->resp.url = x->url;
		x->done(&x->resp, x->userdata);
		xfer_free(x);
	}
}

int http_client_new(http_client **out, uv_loop_t *loop, const http_client_opts *opts)
{
	http_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->multi = curl_multi_init();
	if (!c->multi) {
		free(c);
		return -ENOMEM;
	}
	if (opts && opts->ca_file)
		c->ca_file = strdup(opts->ca_file);
	c->user_agent = strdup(opts && opts->user_agent ? opts->user_agent : "fhir-redcap-bridge");
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->open_handles = 1;
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	long maxc = opts && opts->max_connections ? (long)opts->max_connections : 4;
	curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, maxc);
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, maxc);
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, maxc);
	*out = c;
	return 0;
}

http_xfer *http_submit(http_client *c, const http_request *req, http_done_fn done, void *userdata)
{
	if (c->closing)
		return NULL;
	http_xfer *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->client = c;
	x->done = done;
	x->userdata = userdata;
	x->max_body = req->max_body ? req->max_body : HTTP_DEFAULT_MAX_BODY;
	x->url = strdup(req->url);
	x->easy = curl_easy_init();
	if (!x->url || !x->easy)
		goto fail;
	for (const char *const *h = req->headers; h && *h; h++) {
		struct curl_slist *l = curl_slist_append(x->headers, *h);
		if (!l)
			goto fail;
		x->headers = l;
	}
	/* No "Expect: 100-continue" round trip on POST. */
	struct curl_slist *l = curl_slist_append(x->headers, "Expect:");
	if (!l)
		goto fail;
	x->headers = l;

	CURL *e = x->easy;
	curl_easy_setopt(e, CURLOPT_URL, x->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->resp.error);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
	if (c->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
	if (req->timeout_ms > 0)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	if (req->method && strcmp(req->method, "POST") == 0) {
		x->post = malloc(req->body_len + 1);
		if (!x->post)
			goto fail;
		if (req->body_len)
			memcpy(x->post, req->body, req->body_len);
		x->post[req->body_len] = '\0';
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->post);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	} else if (req->method && strcmp(req->method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	}

	x->next = c->xfers;
	if (c->xfers)
		c->xfers->prev = x;
	c->xfers = x;
	if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
		xfer_unlink(x);
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
		goto fail;
	}
	return x;
fail:
	if (x->easy) {
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
	}
	xfer_free(x);
	return NULL;
}

void http_cancel(http_xfer *x)
{
	if (!x)
		return;
	xfer_unlink(x);
	xfer_free(x);
}

static void client_maybe_free(http_client *c)
{
	if (!c->closing || c->open_handles > 0)
		return;
	void (*closed)(void *) = c->closed;
	void *ud = c->closed_ud;
	free(c->ca_file);
	free(c->user_agent);
	free(c);
	if (closed)
		closed(ud);
}

static void on_timer_closed(uv_handle_t *h)
{
	http_client *c = h->data;
	c->open_handles--;
	client_maybe_free(c);
}

void http_client_close(http_client *c, void (*closed)(void *), void *userdata)
{
	if (!c || c->closing)
		return;
	while (c->xfers)
		http_cancel(c->xfers);
	c->closing = true;
	c->closed = closed;
	c->closed_ud = userdata;
	/* Cleanup fires CURL_POLL_REMOVE for the pooled sockets: their poll
	 * handles are closed from on_socket and counted down in on_poll_closed. */
	CURLM *m = c->multi;
	c->multi = NULL;
	curl_multi_cleanup(m);
	while (c->socks)
		sock_close(c->socks);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}
