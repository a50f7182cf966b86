/*
 * SMART App Launch "Backend Services": the client_credentials grant with a
 * private_key_jwt client assertion (RS384 or ES384), signed with OpenSSL.
 * Sans-IO: builds the assertion and the form body, parses the token answer.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

typedef enum fhir_smart_alg {
	FHIR_SMART_RS384 = 1,
	FHIR_SMART_ES384 = 2,
} fhir_smart_alg;

/* Parse "RS384"/"ES384"; returns 0 if unknown. */
fhir_smart_alg fhir_smart_alg_parse(const char *s);

/*
 * Load a PEM private key (PKCS#8 or traditional, RSA or EC P-384) and check
 * that it fits alg (RSA >= 2048 bits for RS384, P-384 for ES384). Returns
 * the key or NULL with a message in err.
 */
EVP_PKEY *fhir_smart_load_key(const char *path, fhir_smart_alg alg, char *err, size_t err_size);

/*
 * Build a signed client assertion JWT:
 *   header  {"alg":..,"typ":"JWT","kid":kid}
 *   claims  {"iss":client_id,"sub":client_id,"aud":token_url,"exp":now+lifetime,
 *            "iat":now,"jti":<random 128-bit hex>}
 * lifetime_s is clamped to [1, 300]. ES384 signatures are converted from
 * DER to the JOSE r||s form (96 bytes). Returns a malloc'd compact JWT or
 * NULL (err says why).
 */
char *fhir_smart_assertion(EVP_PKEY *key, fhir_smart_alg alg, const char *kid,
			   const char *client_id, const char *token_url, int64_t now,
			   int lifetime_s, char *err, size_t err_size);

/*
 * The application/x-www-form-urlencoded body of the token request:
 * grant_type=client_credentials&scope=<scope>&client_assertion_type=
 * urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion=<jwt>
 * Returns malloc'd or NULL.
 */
char *fhir_smart_token_form(const char *assertion, const char *scope);

/*
 * Parse a token endpoint answer. On 200 JSON with access_token: returns 0,
 * *token malloc'd, *expires_in seconds (default 300 if absent). Otherwise a
 * positive code with err holding error/error_description (never the token).
 * Codes: FHIR_E_JSON (not JSON), FHIR_E_SHAPE (no usable token: an "error"
 * member, no access_token, or a token_type other than bearer); -ENOMEM.
 * *token is NULL on any failure.
 */
int fhir_smart_token_parse(const char *buf, size_t len, char **token, long *expires_in,
			   char *err, size_t err_size);

/* base64url without padding; returns malloc'd. */
char *fhir_base64url(const unsigned char *data, size_t len);
