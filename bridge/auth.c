#include "bridge/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "bridge/log.h"
#include "fhir/smart.h"

typedef struct auth_waiter {
	auth_fn fn;
	void *ud;
	struct auth_waiter *next;
} auth_waiter;

struct auth {
	config_auth_type type;
	http_client *http;
	long timeout_ms;
	char *header;           /* "Authorization: Bearer <token>" or NULL */
	int64_t expires_at;     /* unix s after which header must be renewed (smart) */
	/* smart-backend */
	EVP_PKEY *key;
	fhir_smart_alg alg;
	char *kid, *client_id, *token_url, *scope;
	http_xfer *token_xfer;
	auth_waiter *waiters;
	unsigned generation;
};

static void header_free(char *h)
{
	if (h) {
		OPENSSL_cleanse(h, strlen(h));
		free(h);
	}
}

static char *bearer_header(const char *token)
{
	size_t n = strlen(token);
	char *h = malloc(n + 32);
	if (h)
		snprintf(h, n + 32, "Authorization: Bearer %s", token);
	return h;
}

static bool token_ok(const char *t)
{
	if (!*t)
		return false;
	for (const char *p = t; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return false;
	return true;
}

int auth_new(auth **out, const config_auth *cfg, http_client *http, long timeout_ms,
	     char *err, size_t err_size)
{
	auth *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->type = cfg->type;
	a->http = http;
	a->timeout_ms = timeout_ms;

	if (cfg->type == CONFIG_AUTH_BEARER) {
		char *tok = NULL;
		if (cfg->token_file) {
			tok = secret_read_file(cfg->token_file, NULL, err, err_size);
			if (!tok)
				goto fail;
		} else {
			const char *v = cfg->token_env ? getenv(cfg->token_env) : NULL;
			if (!v || !*v) {
				snprintf(err, err_size, "environment variable %s (fhir.auth.token_env) is not set",
					 cfg->token_env ? cfg->token_env : "?");
				goto fail;
			}
			tok = strdup(v);
		}
		if (!tok || !token_ok(tok)) {
			snprintf(err, err_size, "the bearer token is empty or has characters not allowed in a header");
			secret_free(tok);
			goto fail;
		}
		a->header = bearer_header(tok);
		secret_free(tok);
		if (!a->header)
			goto fail;
	} else if (cfg->type == CONFIG_AUTH_SMART_BACKEND) {
		a->alg = fhir_smart_alg_parse(cfg->alg);
		if (!a->alg) {
			snprintf(err, err_size, "fhir.auth.alg must be RS384 or ES384");
			goto fail;
		}
		/* Same permission rule as every secret file. */
		char *probe = secret_read_file(cfg->private_key_file, NULL, err, err_size);
		if (!probe)
			goto fail;
		secret_free(probe);
		a->key = fhir_smart_load_key(cfg->private_key_file, a->alg, err, err_size);
		if (!a->key)
			goto fail;
		a->kid = strdup(cfg->kid ? cfg->kid : "");
		a->client_id = strdup(cfg->client_id);
		a->token_url = strdup(cfg->token_url);
		a->scope = strdup(cfg->scope ? cfg->scope : "system/*.read");
		if (!a->kid || !a->client_id || !a->token_url || !a->scope)
			goto fail;
	}
	*out = a;
	return 0;
fail:
	auth_free(a);
	return -EINVAL;
}

void auth_free(auth *a)
{
	if (!a)
		return;
	if (a->token_xfer)
		http_cancel(a->token_xfer);
	while (a->waiters) {
		auth_waiter *w = a->waiters;
		a->waiters = w->next;
		free(w);
	}
	header_free(a->header);
	EVP_PKEY_free(a->key);
	free(a->kid);
	free(a->client_id);
	free(a->token_url);
	free(a->scope);
	free(a);
}

static void notify_waiters(auth *a, const char *header, const char *err, bool retryable)
{
	auth_waiter *w = a->waiters;
	a->waiters = NULL;
	while (w) {
		auth_waiter *next = w->next;
		w->fn(w->ud, header, err, retryable);
		free(w);
		w = next;
	}
}

static void on_token(http_response *r, void *ud)
{
	auth *a = ud;
	char err[512] = "";
	a->token_xfer = NULL;

	if (r->curl_code != CURLE_OK) {
		snprintf(err, sizeof(err), "token request to %s failed: %s", a->token_url, r->error);
		log_warn("fhir", "%s", err);
		notify_waiters(a, NULL, err, true);
		return;
	}
	char *token = NULL;
	long expires_in = 0;
	char perr[300] = "";
	int rc = r->status == 200 ? fhir_smart_token_parse(r->body, r->len, &token, &expires_in, perr, sizeof(perr))
				  : 1;
	if (rc != 0 || !token || !token_ok(token)) {
		if (r->status != 200 && !perr[0]) {
			/* Try to read error/error_description even from an error answer. */
			char *t2 = NULL;
			long e2;
			fhir_smart_token_parse(r->body, r->len, &t2, &e2, perr, sizeof(perr));
			secret_free(t2);
		}
		snprintf(err, sizeof(err), "token endpoint %s answered HTTP %ld: %s", a->token_url, r->status,
			 perr[0] ? perr : "no access_token in the answer");
		secret_free(token);
		log_error("fhir", "%s", err);
		bool retryable = r->status == 0 || r->status == 408 || r->status == 429 || r->status >= 500;
		notify_waiters(a, NULL, err, retryable);
		return;
	}
	header_free(a->header);
	a->header = bearer_header(token);
	a->generation++;
	secret_free(token);
	if (expires_in <= 0)
		expires_in = 300;
	/* Renew a minute early, or at half-life for short-lived tokens. */
	long margin = expires_in > 120 ? 60 : expires_in / 2;
	a->expires_at = (int64_t)time(NULL) + expires_in - margin;
	log_info("fhir", "access token obtained from %s (expires in %ld s)", a->token_url, expires_in);
	notify_waiters(a, a->header, NULL, false);
}

static int request_token(auth *a, char *err, size_t err_size)
{
	char *jwt = fhir_smart_assertion(a->key, a->alg, a->kid, a->client_id, a->token_url,
					 (int64_t)time(NULL), 300, err, err_size);
	if (!jwt)
		return -EINVAL;
	char *form = fhir_smart_token_form(jwt, a->scope);
	free(jwt);
	if (!form)
		return -ENOMEM;
	static const char *const hdrs[] = {
		"Content-Type: application/x-www-form-urlencoded",
		"Accept: application/json",
		NULL,
	};
	http_request req = {
		.method = "POST",
		.url = a->token_url,
		.headers = hdrs,
		.body = form,
		.body_len = strlen(form),
		.timeout_ms = a->timeout_ms,
		.max_body = 1 << 20,
	};
	a->token_xfer = http_submit(a->http, &req, on_token, a);
	OPENSSL_cleanse(form, strlen(form));
	free(form);
	if (!a->token_xfer)
		return -ENOMEM;
	return 0;
}

int auth_get(auth *a, const char **header, auth_fn fn, void *ud)
{
	*header = NULL;
	if (a->type != CONFIG_AUTH_SMART_BACKEND) {
		*header = a->header;
		return 0;
	}
	if (a->header && (int64_t)time(NULL) < a->expires_at) {
		*header = a->header;
		return 0;
	}
	auth_waiter *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fn = fn;
	w->ud = ud;
	w->next = a->waiters;
	a->waiters = w;
	if (!a->token_xfer) {
		char err[512];
		int rc = request_token(a, err, sizeof(err));
		if (rc < 0) {
			a->waiters = w->next;
			free(w);
			log_error("fhir", "cannot build the token request: %s", err);
			return rc;
		}
	}
	return 1;
}

void auth_cancel(auth *a, void *ud)
{
	auth_waiter **pp = &a->waiters;
	while (*pp) {
		if ((*pp)->ud == ud) {
			auth_waiter *w = *pp;
			*pp = w->next;
			free(w);
		} else {
			pp = &(*pp)->next;
		}
	}
}

unsigned auth_generation(const auth *a)
{
	return a->generation;
}

void auth_invalidate(auth *a, unsigned generation)
{
	if (a->type != CONFIG_AUTH_SMART_BACKEND || !a->header)
		return;
	if (a->generation == generation) {
		header_free(a->header);
		a->header = NULL;
		a->expires_at = 0;
	}
}

bool auth_can_refresh(const auth *a)
{
	return a->type == CONFIG_AUTH_SMART_BACKEND;
}
