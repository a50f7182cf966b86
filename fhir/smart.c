/*
 * fhir/smart.c — SMART Backend Services client assertions (RS384, ES384)
 * with OpenSSL 3 EVP, the token request body and the token answer.
 *
 * Nothing here logs; messages written to err never contain the key, the
 * assertion or the access token.
 */
#include "fhir/smart.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "fhir/fhir.h"

/* JOSE ES384 signatures: r and s, 48 bytes each. */
#define ES384_HALF 48

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (!err || !size)
		return;
	va_start(ap, fmt);
	vsnprintf(err, size, fmt, ap);
	va_end(ap);
}

/* "RS384" / "ES384" (exact), else 0. */
fhir_smart_alg fhir_smart_alg_parse(const char *s)
{
	if (s && strcmp(s, "RS384") == 0)
		return FHIR_SMART_RS384;
	if (s && strcmp(s, "ES384") == 0)
		return FHIR_SMART_ES384;
	return (fhir_smart_alg)0;
}

static const char *alg_name(fhir_smart_alg alg)
{
	return alg == FHIR_SMART_RS384 ? "RS384" : alg == FHIR_SMART_ES384 ? "ES384" : NULL;
}

/* Whether key can sign for alg; if not, err says why. */
static bool key_fits(EVP_PKEY *key, fhir_smart_alg alg, const char *what, char *err, size_t err_size)
{
	const char *type = EVP_PKEY_get0_type_name(key);

	if (!type)
		type = "unknown";
	if (alg == FHIR_SMART_RS384) {
		if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
			set_err(err, err_size, "%s: RS384 needs an RSA key, found a %s key", what, type);
			return false;
		}
		int bits = EVP_PKEY_get_bits(key);
		if (bits < 2048) {
			set_err(err, err_size, "%s: RS384 needs an RSA key of at least 2048 bits, found %d bits",
				what, bits);
			return false;
		}
		return true;
	}
	if (alg == FHIR_SMART_ES384) {
		char group[64] = "";
		size_t glen = 0;
		if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) {
			set_err(err, err_size, "%s: ES384 needs an EC P-384 key, found a %s key", what, type);
			return false;
		}
		if (!EVP_PKEY_get_group_name(key, group, sizeof(group), &glen) ||
		    strcmp(group, "secp384r1") != 0) {
			ERR_clear_error();
			set_err(err, err_size, "%s: ES384 needs an EC key on P-384 (secp384r1), found %s", what,
				group[0] ? group : "another curve");
			return false;
		}
		return true;
	}
	set_err(err, err_size, "%s: unknown signing algorithm (want RS384 or ES384)", what);
	return false;
}

/* PEM passphrase callback: never prompt; note that one was wanted. */
static int refuse_passphrase(char *buf, int size, int rwflag, void *u)
{
	*(bool *)u = true;
	return -1;
}

/*
 * Load a PEM private key from path and check it fits alg (see smart.h).
 * Encrypted keys are refused (no prompt). Returns a new reference the
 * caller frees with EVP_PKEY_free(), or NULL with err filled.
 */
EVP_PKEY *fhir_smart_load_key(const char *path, fhir_smart_alg alg, char *err, size_t err_size)
{
	bool wanted_passphrase = false;

	if (!alg_name(alg)) {
		set_err(err, err_size, "unknown signing algorithm (want RS384 or ES384)");
		return NULL;
	}
	if (!path) {
		set_err(err, err_size, "no private key file");
		return NULL;
	}
	FILE *f = fopen(path, "re");
	if (!f) {
		set_err(err, err_size, "cannot open private key %s: %s", path, strerror(errno));
		return NULL;
	}
	EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, refuse_passphrase, &wanted_passphrase);
	fclose(f);
	ERR_clear_error();
	if (!key) {
		if (wanted_passphrase)
			set_err(err, err_size, "%s: the private key is encrypted; passphrases are not supported",
				path);
		else
			set_err(err, err_size, "%s: no PEM private key found", path);
		return NULL;
	}
	if (!key_fits(key, alg, path, err, err_size)) {
		EVP_PKEY_free(key);
		return NULL;
	}
	return key;
}

/* base64url of data, no padding (RFC 7515 section 2). Returns malloc'd. */
char *fhir_base64url(const unsigned char *data, size_t len)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

	if (len > (SIZE_MAX - 4) / 4 * 3)
		return NULL;
	char *out = malloc(len / 3 * 4 + 4), *o = out;
	if (!out)
		return NULL;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8 | data[i + 2];
		*o++ = tbl[v >> 18];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = tbl[(v >> 6) & 63];
		*o++ = tbl[v & 63];
	}
	if (len - i == 1) {
		unsigned v = (unsigned)data[i] << 16;
		*o++ = tbl[v >> 18];
		*o++ = tbl[(v >> 12) & 63];
	} else if (len - i == 2) {
		unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8;
		*o++ = tbl[v >> 18];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = tbl[(v >> 6) & 63];
	}
	*o = 0;
	return out;
}

/* base64url of a compact JSON serialisation of o (members in insertion order). */
static char *json_b64(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!s)
		return NULL;
	char *b = fhir_base64url((const unsigned char *)s, strlen(s));
	free(s);
	return b;
}

/*
 * Sign in[0..n) with key: SHA-384 with RSA PKCS#1 v1.5, or ECDSA whose
 * DER signature is rewritten as r||s. Returns the base64url signature
 * (malloc'd) or NULL.
 */
static char *sign_b64(EVP_PKEY *key, fhir_smart_alg alg, const char *in, size_t n)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig = NULL;
	ECDSA_SIG *es = NULL;
	char *out = NULL;
	size_t siglen = 0;

	if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha384(), NULL, key) != 1)
		goto done;
	if (EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)in, n) != 1)
		goto done;
	sig = malloc(siglen ? siglen : 1);
	if (!sig || EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)in, n) != 1)
		goto done;
	if (alg == FHIR_SMART_RS384) {
		out = fhir_base64url(sig, siglen);
		goto done;
	}
	/* ES384: ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } -> r||s */
	const unsigned char *p = sig;
	es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
	if (!es)
		goto done;
	const BIGNUM *r, *s;
	ECDSA_SIG_get0(es, &r, &s);
	unsigned char rs[2 * ES384_HALF];
	if (BN_bn2binpad(r, rs, ES384_HALF) != ES384_HALF || BN_bn2binpad(s, rs + ES384_HALF, ES384_HALF) != ES384_HALF)
		goto done;
	out = fhir_base64url(rs, sizeof(rs));
done:
	ECDSA_SIG_free(es);
	free(sig);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return out;
}

/*
 * Build and sign a client assertion (see smart.h). Returns the compact
 * JWT (malloc'd) or NULL with err filled.
 */
char *fhir_smart_assertion(EVP_PKEY *key, fhir_smart_alg alg, const char *kid, const char *client_id,
			   const char *token_url, int64_t now, int lifetime_s, char *err, size_t err_size)
{
	json_t *header = NULL, *claims = NULL;
	char *h64 = NULL, *c64 = NULL, *s64 = NULL, *input = NULL, *jwt = NULL;
	unsigned char rnd[16];
	char jti[2 * sizeof(rnd) + 1];

	if (!key || !alg_name(alg) || !client_id || !*client_id || !token_url || !*token_url) {
		set_err(err, err_size, "client assertion: missing key, algorithm, client_id or token URL");
		return NULL;
	}
	if (!key_fits(key, alg, "client assertion", err, err_size))
		return NULL;
	if (lifetime_s < 1)
		lifetime_s = 1;
	if (lifetime_s > 300)
		lifetime_s = 300;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		ERR_clear_error();
		set_err(err, err_size, "client assertion: no random bytes for jti");
		return NULL;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(jti + 2 * i, 3, "%02x", rnd[i]);

	header = json_pack("{s:s,s:s}", "alg", alg_name(alg), "typ", "JWT");
	if (header && kid && *kid && json_object_set_new(header, "kid", json_string(kid)) != 0) {
		set_err(err, err_size, "client assertion: kid is not valid UTF-8");
		goto done;
	}
	claims = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s}", "iss", client_id, "sub", client_id, "aud", token_url,
			   "exp", (json_int_t)(now + lifetime_s), "iat", (json_int_t)now, "jti", jti);
	if (!header || !claims) {
		set_err(err, err_size, "client assertion: client_id or token URL is not valid UTF-8");
		goto done;
	}
	h64 = json_b64(header);
	c64 = json_b64(claims);
	if (!h64 || !c64 || asprintf(&input, "%s.%s", h64, c64) < 0) {
		input = NULL;
		set_err(err, err_size, "client assertion: out of memory");
		goto done;
	}
	s64 = sign_b64(key, alg, input, strlen(input));
	if (!s64) {
		set_err(err, err_size, "client assertion: signing with %s failed", alg_name(alg));
		goto done;
	}
	if (asprintf(&jwt, "%s.%s", input, s64) < 0) {
		jwt = NULL;
		set_err(err, err_size, "client assertion: out of memory");
	}
done:
	json_decref(header);
	json_decref(claims);
	free(h64);
	free(c64);
	free(s64);
	free(input);
	return jwt;
}

/* Append s form-encoded (application/x-www-form-urlencoded): unreserved
 * bytes as is, space as '+', the rest as %XX. Returns the new end. */
static char *put_form(char *o, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		    c == '.' || c == '_' || c == '~') {
			*o++ = (char)c;
		} else if (c == ' ') {
			*o++ = '+';
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	return o;
}

/*
 * The token request body (see smart.h); scope is left out when NULL or
 * empty. Returns malloc'd, or NULL (ENOMEM or no assertion).
 */
char *fhir_smart_token_form(const char *assertion, const char *scope)
{
	static const char grant[] = "grant_type=client_credentials", scope_k[] = "&scope=",
			  type[] = "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
			  assertion_k[] = "&client_assertion=";

	if (!assertion)
		return NULL;
	size_t al = strlen(assertion), sl = scope ? strlen(scope) : 0;
	if (al > SIZE_MAX / 8 || sl > SIZE_MAX / 8)
		return NULL;
	char *form = malloc(sizeof(grant) + sizeof(scope_k) + 3 * sl + sizeof(type) + sizeof(assertion_k) + 3 * al);
	if (!form)
		return NULL;
	char *o = form;
	memcpy(o, grant, sizeof(grant) - 1);
	o += sizeof(grant) - 1;
	if (sl) {
		memcpy(o, scope_k, sizeof(scope_k) - 1);
		o = put_form(o + sizeof(scope_k) - 1, scope);
	}
	memcpy(o, type, sizeof(type) - 1);
	o += sizeof(type) - 1;
	memcpy(o, assertion_k, sizeof(assertion_k) - 1);
	o = put_form(o + sizeof(assertion_k) - 1, assertion);
	*o = 0;
	return form;
}

/* Copy s into err as printable ASCII, at most max bytes of it. */
static void put_printable(char *out, size_t size, const char *s, size_t max)
{
	size_t j = strlen(out);

	for (size_t i = 0; s[i] && i < max && j + 1 < size; i++) {
		unsigned char c = (unsigned char)s[i];
		out[j++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[j] = 0;
}

/*
 * Parse a token endpoint answer (see smart.h). Returns 0 with *token
 * (malloc'd) and *expires_in; FHIR_E_JSON if the body is not JSON;
 * FHIR_E_SHAPE for JSON without a usable bearer token (err then holds
 * error and error_description when the server sent them); -ENOMEM.
 */
int fhir_smart_token_parse(const char *buf, size_t len, char **token, long *expires_in, char *err,
			   size_t err_size)
{
	json_error_t jerr;
	json_t *root;
	int r = FHIR_E_SHAPE;

	*token = NULL;
	*expires_in = 300;
	if (err && err_size)
		err[0] = 0;
	root = buf ? json_loadb(buf, len, 0, &jerr) : NULL;
	if (!json_is_object(root)) {
		set_err(err, err_size, root ? "the token answer is not a JSON object"
					    : "the token answer is not JSON");
		r = root ? FHIR_E_SHAPE : FHIR_E_JSON;
		goto done;
	}
	const char *tok = json_string_value(json_object_get(root, "access_token"));
	const char *error = json_string_value(json_object_get(root, "error"));
	if (error || !tok || !*tok) {
		const char *desc = json_string_value(json_object_get(root, "error_description"));
		if (err && err_size) {
			if (!error && !desc)
				set_err(err, err_size, "no access_token in the token answer");
			put_printable(err, err_size, error ? error : "", 64);
			if (error && desc)
				put_printable(err, err_size, ": ", 2);
			put_printable(err, err_size, desc ? desc : "", 200);
		}
		goto done;
	}
	const char *tt = json_string_value(json_object_get(root, "token_type"));
	if (tt && strcasecmp(tt, "bearer") != 0) {
		set_err(err, err_size, "the token answer has token_type \"");
		put_printable(err, err_size, tt, 32);
		put_printable(err, err_size, "\", not bearer", 16);
		goto done;
	}
	json_t *exp = json_object_get(root, "expires_in");
	if (json_is_integer(exp) && json_integer_value(exp) > 0)
		*expires_in = json_integer_value(exp) > LONG_MAX ? LONG_MAX : (long)json_integer_value(exp);
	else if (json_is_real(exp) && json_real_value(exp) >= 1 && json_real_value(exp) < 1e9)
		*expires_in = (long)json_real_value(exp);
	*token = strdup(tok);
	r = *token ? 0 : -ENOMEM;
done:
	json_decref(root);
	return r;
}
