/*
 * password — see password.h for the stored format and its bounds.
 */
#include "bridge/password.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define SALT_LEN 16
#define HASH_LEN 32
#define WRITE_R 8
#define WRITE_P 1
#define MIN_SALT_LEN 16
#define MAX_SALT_LEN 64
#define MIN_HASH_LEN 32
#define MAX_HASH_LEN 64
#define MAX_RP 16
/* r * p * 2^ln accepted at most: the cost of ln=20, r=8, p=1. */
#define MAX_COST ((uint64_t)8 << 20)
/* scrypt needs 128 * r * (N + 2) + 128 * r * p bytes: 1 GiB and a few KiB at MAX_COST. */
#define SCRYPT_MAXMEM (((uint64_t)1 << 30) + ((uint64_t)1 << 20))
/* Longest stored string looked at (the longest valid one is under 200). */
#define MAX_STORED_LEN 256

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Characters needed for n bytes of unpadded base64. */
static size_t b64_len(size_t n)
{
	return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* Encode n bytes of in at out (b64_len(n) characters, then a NUL). */
static void b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		size_t chars = n - i >= 3 ? 4 : n - i + 1;
		for (size_t k = 0; k < chars; k++)
			out[o++] = b64_alphabet[(v >> (18 - 6 * k)) & 63];
	}
	out[o] = '\0';
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Decode the n characters at s (canonical unpadded base64) into out, which
 * holds cap bytes; *out_len gets the byte count. 0, or -1 for a bad
 * character, a bad length, non-zero unused bits, or more than cap bytes.
 */
static int b64_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	if (n % 4 == 1)
		return -1;
	size_t len = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
	if (len > cap)
		return -1;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value(s[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0) /* leftover bits must be zero */
		return -1;
	*out_len = o;
	return 0;
}

/* A parsed stored string. */
typedef struct stored_hash {
	unsigned ln;
	unsigned r, p;
	uint8_t salt[MAX_SALT_LEN];
	size_t salt_len;
	uint8_t hash[MAX_HASH_LEN];
	size_t hash_len;
} stored_hash;

/* Read "<key>=<decimal>" at *pp: 1 or 2 digits, no leading zero. Advances *pp. */
static int parse_param(const char **pp, const char *key, unsigned *out)
{
	const char *p = *pp;
	size_t kl = strlen(key);
	if (strncmp(p, key, kl) != 0 || p[kl] != '=')
		return -1;
	p += kl + 1;
	if (p[0] < '0' || p[0] > '9' || p[0] == '0')
		return -1;
	unsigned v = (unsigned)(p[0] - '0');
	p++;
	if (*p >= '0' && *p <= '9') {
		v = v * 10 + (unsigned)(*p - '0');
		p++;
		if (*p >= '0' && *p <= '9')
			return -1;
	}
	*out = v;
	*pp = p;
	return 0;
}

/* Parse and bound-check a stored string into h. 0 or -1 (malformed / out of bounds). */
static int stored_parse(const char *s, stored_hash *h)
{
	static const char prefix[] = "$scrypt$";
	size_t n = strnlen(s, MAX_STORED_LEN + 1);
	if (n > MAX_STORED_LEN || strncmp(s, prefix, sizeof(prefix) - 1) != 0)
		return -1;
	const char *p = s + sizeof(prefix) - 1;
	if (parse_param(&p, "ln", &h->ln) != 0 || *p++ != ',' || parse_param(&p, "r", &h->r) != 0 ||
	    *p++ != ',' || parse_param(&p, "p", &h->p) != 0 || *p++ != '$')
		return -1;
	if (h->ln < PASSWORD_MIN_LOG2N || h->ln > PASSWORD_MAX_LOG2N || h->r > MAX_RP || h->p > MAX_RP ||
	    ((uint64_t)h->r * h->p << h->ln) > MAX_COST)
		return -1;
	const char *dollar = strchr(p, '$');
	if (!dollar || b64_decode(p, (size_t)(dollar - p), h->salt, sizeof(h->salt), &h->salt_len) != 0)
		return -1;
	p = dollar + 1;
	if (b64_decode(p, strlen(p), h->hash, sizeof(h->hash), &h->hash_len) != 0)
		return -1;
	if (h->salt_len < MIN_SALT_LEN || h->hash_len < MIN_HASH_LEN)
		return -1;
	return 0;
}

/*
 * scrypt(password, salt, N = 2^ln, r, p) into out (out_len bytes). Owns
 * nothing past the call: the KDF context (which holds a copy of the
 * password, freed with clearing by OpenSSL) is freed here. 0 or -EIO (the
 * OpenSSL error queue is cleared).
 */
static int scrypt_derive(const char *password, size_t len, const uint8_t *salt, size_t salt_len, unsigned ln,
			 unsigned r, unsigned p, uint8_t *out, size_t out_len)
{
	uint64_t n = (uint64_t)1 << ln, maxmem = SCRYPT_MAXMEM;
	uint32_t r32 = r, p32 = p;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)(password ? password : ""), len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len),
		OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
		OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r32),
		OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p32),
		OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
		OSSL_PARAM_construct_end(),
	};
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	int rc = ctx && EVP_KDF_derive(ctx, out, out_len, params) == 1 ? 0 : -EIO;
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	if (rc != 0) {
		OPENSSL_cleanse(out, out_len);
		ERR_clear_error();
	}
	return rc;
}

/*
 * Hash a password into a new stored string at out (see password.h). The
 * salt is fresh from RAND_bytes; the derived key is wiped before return.
 */
int password_hash(const char *password, size_t len, unsigned log2n, char *out, size_t out_size)
{
	if (out && out_size > 0)
		out[0] = '\0';
	if (!out || (!password && len > 0) || len > PASSWORD_MAX_BYTES || log2n < PASSWORD_MIN_LOG2N ||
	    log2n > PASSWORD_MAX_LOG2N)
		return -EINVAL;
	char head[64];
	int hl = snprintf(head, sizeof(head), "$scrypt$ln=%u,r=%u,p=%u$", log2n, WRITE_R, WRITE_P);
	if (hl < 0 || (size_t)hl >= sizeof(head))
		return -EIO;
	size_t need = (size_t)hl + b64_len(SALT_LEN) + 1 + b64_len(HASH_LEN) + 1;
	if (need > out_size)
		return -ENOBUFS;

	uint8_t salt[SALT_LEN], key[HASH_LEN];
	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		ERR_clear_error();
		return -EIO;
	}
	int rc = scrypt_derive(password, len, salt, sizeof(salt), log2n, WRITE_R, WRITE_P, key, sizeof(key));
	if (rc == 0) {
		memcpy(out, head, (size_t)hl);
		b64_encode(salt, sizeof(salt), out + hl);
		size_t o = (size_t)hl + b64_len(SALT_LEN);
		out[o++] = '$';
		b64_encode(key, sizeof(key), out + o);
	}
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
}

/*
 * Verify a password against a stored string (see password.h). The stored
 * string is parsed and bounded before any KDF work; the derived key and the
 * parsed copy are wiped before return.
 */
int password_verify(const char *password, size_t len, const char *stored)
{
	if (!stored || (!password && len > 0))
		return -EINVAL;
	stored_hash h;
	int rc;
	if (stored_parse(stored, &h) != 0) {
		rc = PASSWORD_E_FORMAT;
	} else if (len > PASSWORD_MAX_BYTES) {
		rc = PASSWORD_E_MISMATCH;
	} else {
		uint8_t key[MAX_HASH_LEN];
		rc = scrypt_derive(password, len, h.salt, h.salt_len, h.ln, h.r, h.p, key, h.hash_len);
		if (rc == 0 && CRYPTO_memcmp(key, h.hash, h.hash_len) != 0)
			rc = PASSWORD_E_MISMATCH;
		OPENSSL_cleanse(key, sizeof(key));
	}
	OPENSSL_cleanse(&h, sizeof(h));
	return rc;
}

bool password_needs_rehash(const char *stored, unsigned log2n)
{
	stored_hash h;
	if (!stored || stored_parse(stored, &h) != 0)
		return true;
	return h.ln != log2n || h.r != WRITE_R || h.p != WRITE_P || h.salt_len != SALT_LEN || h.hash_len != HASH_LEN;
}

/*
 * Decode the UTF-8 sequence at s[i] (n bytes in all) into *cp; returns its
 * length, or 0 if it is not valid UTF-8 (overlong, surrogate, above
 * U+10FFFF, truncated, stray continuation byte).
 */
static size_t utf8_next(const unsigned char *s, size_t n, size_t i, uint32_t *cp)
{
	unsigned char b = s[i];
	size_t need;
	unsigned char lo = 0x80, hi = 0xBF;
	if (b < 0x80) {
		*cp = b;
		return 1;
	} else if (b >= 0xC2 && b <= 0xDF) {
		need = 1;
		*cp = b & 0x1F;
	} else if (b >= 0xE0 && b <= 0xEF) {
		need = 2;
		*cp = b & 0x0F;
		if (b == 0xE0)
			lo = 0xA0;
		else if (b == 0xED)
			hi = 0x9F;
	} else if (b >= 0xF0 && b <= 0xF4) {
		need = 3;
		*cp = b & 0x07;
		if (b == 0xF0)
			lo = 0x90;
		else if (b == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (n - i - 1 < need)
		return 0;
	for (size_t k = 1; k <= need; k++) {
		unsigned char c = s[i + k];
		if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF))
			return 0;
		*cp = (*cp << 6) | (c & 0x3F);
	}
	return need + 1;
}

static int policy_fail(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Format the reason into err (if any); returns PASSWORD_E_POLICY. */
static int policy_fail(char *err, size_t err_size, const char *fmt, ...)
{
	if (err && err_size > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return PASSWORD_E_POLICY;
}

/*
 * Check a new password against the policy (see password.h). Nothing is
 * copied; err gets the first problem found, in the order: too long, not
 * UTF-8, control character, too short.
 */
int password_check_policy(const char *password, size_t len, char *err, size_t err_size)
{
	if (err && err_size > 0)
		err[0] = '\0';
	if (!password && len > 0)
		return -EINVAL;
	if (len > PASSWORD_MAX_BYTES)
		return policy_fail(err, err_size, "password is too long: at most %zu bytes", (size_t)PASSWORD_MAX_BYTES);
	const unsigned char *s = (const unsigned char *)password;
	size_t chars = 0;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t step = utf8_next(s, len, i, &cp);
		if (step == 0)
			return policy_fail(err, err_size, "password is not valid UTF-8 (at byte %zu)", i + 1);
		chars++;
		if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
			return policy_fail(err, err_size,
					   "password contains a control character (character %zu); tabs, line breaks "
					   "and other control characters are not allowed",
					   chars);
		i += step;
	}
	if (chars < PASSWORD_MIN_CHARS)
		return policy_fail(err, err_size, "password is too short: at least %zu characters",
				   (size_t)PASSWORD_MIN_CHARS);
	return 0;
}
