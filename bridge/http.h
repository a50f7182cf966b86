/*
 * http — the HTTP transport: libcurl's multi socket interface driven by the
 * libuv loop (one uv_poll_t per socket, one uv_timer_t for curl's timeout;
 * no busy polling). Keep-alive and connection reuse come from the multi
 * handle's pool. TLS peer and host verification stay on.
 *
 * All calls on the loop thread. A transfer's completion callback runs on the
 * loop thread with the whole response; it may submit new transfers.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>
#include <uv.h>

typedef struct http_client http_client;
typedef struct http_xfer http_xfer;

typedef struct http_client_opts {
	unsigned max_connections;   /* total connections (and so parallel transfers) */
	const char *ca_file;        /* extra CA bundle, or NULL for the system's */
	const char *user_agent;     /* or NULL */
} http_client_opts;

typedef struct http_response {
	CURLcode curl_code;        /* CURLE_OK if an HTTP answer came */
	long status;               /* HTTP status, 0 if none */
	char *body;                /* NUL-terminated, owned by the response */
	size_t len;
	char *retry_after;         /* Retry-After header value or NULL */
	char *content_type;        /* Content-Type header value or NULL */
	char *www_authenticate;    /* WWW-Authenticate header value or NULL */
	char *date;                /* Date header value or NULL (the server's clock) */
	char error[CURL_ERROR_SIZE]; /* curl's message when curl_code != CURLE_OK */
	double total_s;            /* time the transfer took */
	const char *url;           /* the URL requested (valid during the callback) */
} http_response;

/* Takes the body out of a response: the caller frees it. */
char *http_response_take_body(http_response *r, size_t *len);

typedef void (*http_done_fn)(http_response *resp, void *userdata);

typedef struct http_request {
	const char *method;          /* "GET" (default when NULL) or "POST" */
	const char *url;
	const char *const *headers;  /* NULL-terminated "Name: value" lines, or NULL */
	const char *body;            /* POST body (copied), or NULL */
	size_t body_len;
	long timeout_ms;             /* whole transfer; 0 = none */
	size_t max_body;             /* refuse larger responses; 0 = 256 MiB */
} http_request;

/*
 * Create a client on loop. Returns 0 or a negative errno.
 */
int http_client_new(http_client **out, uv_loop_t *loop, const http_client_opts *opts);

/*
 * Start a transfer. The request is copied; done is called exactly once
 * (unless the transfer is cancelled first), never from inside this call.
 * Returns the transfer (for http_cancel) or NULL on ENOMEM.
 */
http_xfer *http_submit(http_client *c, const http_request *req, http_done_fn done, void *userdata);

/* Abort a transfer that has not completed yet; its callback is not called. */
void http_cancel(http_xfer *x);

/*
 * Cancel every transfer and close the client's handles. The client is
 * freed once libuv has closed them; run the loop until then (closed, when
 * non-NULL, is called at that point).
 */
void http_client_close(http_client *c, void (*closed)(void *), void *userdata);
