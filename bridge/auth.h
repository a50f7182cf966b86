/*
 * auth — the Authorization header for FHIR requests: none, a static bearer
 * token (file or environment), or SMART Backend Services (client_credentials
 * with a signed JWT assertion), the access token reused until shortly before
 * it expires. The token itself is never logged.
 */
#pragma once

#include <stdbool.h>

#include "bridge/config.h"
#include "bridge/http.h"

typedef struct auth auth;

/*
 * Build from config. Reads the token file / private key now, so that a
 * missing or too-open file is a start-up error (message in err).
 */
int auth_new(auth **out, const config_auth *cfg, http_client *http, long timeout_ms,
	     char *err, size_t err_size);
void auth_free(auth *a);

/* Called with the header line ("Authorization: Bearer ...", or NULL when no
 * auth is configured) or, on failure, header NULL and err set; retryable
 * tells whether the failure may pass (network error, 5xx). */
typedef void (*auth_fn)(void *ud, const char *header, const char *err, bool retryable);

/*
 * Get the header. Returns 0 with *header set (possibly NULL for no auth)
 * when it is at hand; 1 when a token request is under way — fn is called
 * later with ud; negative errno on failure to even start.
 */
int auth_get(auth *a, const char **header, auth_fn fn, void *ud);

/* Forget a waiter (its fn will not be called). */
void auth_cancel(auth *a, void *ud);

/* The token generation: bumped each time a new token is obtained. Record
 * it with a request; on a 401 pass it back to auth_invalidate(), which drops
 * the cached token only if it is still the one that request used. */
unsigned auth_generation(const auth *a);
void auth_invalidate(auth *a, unsigned generation);

/* true for smart-backend (a 401 may be fixed by re-authenticating). */
bool auth_can_refresh(const auth *a);
