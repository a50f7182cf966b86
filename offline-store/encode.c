/*
 * offline-store/encode.c — how outbox.c, kv.c and chart.c turn what they
 * protect into bytes: the AAD a blob is bound to, the input of a keyed
 * hash, and blobs sealed and opened per call (see store-internal.h).
 *
 * One encoding for both AADs and keyed hashes: integers are 8 bytes
 * big-endian; strings and blobs are such a length followed by their bytes,
 * so ("ab", "c") and ("a", "bc") never encode alike.
 *
 * Keyed hashes are HMAC-SHA-256 under a sub-key HMAC(store key, label):
 * never the AES key itself, and one label per use, so a hash made for one
 * use can never stand for another's. store.c's body hashes and crypto.c's
 * sub-keys are older and stay as they are (their encodings differ).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "offline-store/crypto.h"
#include "offline-store/store-internal.h"

/* ---- big-endian integers ------------------------------------------------ */

void store__be64(uint8_t out[8], int64_t v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
}

int64_t store__be64_get(const uint8_t p[8])
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return (int64_t)v;
}

/* ---- byte strings ------------------------------------------------------- */

/* Empty x (its memory kept for the next AAD) and clear its oom flag. */
void store__bytes_reset(store_bytes *x)
{
	x->len = 0;
	x->oom = false;
}

/* Append n bytes of p; on failure x->oom is set and later appends do nothing. */
void store__bytes_put(store_bytes *x, const void *p, size_t n)
{
	if (x->oom)
		return;
	if (n > SIZE_MAX - x->len || store__buf_reserve(&x->b, x->len + n) != 0) {
		x->oom = true;
		return;
	}
	if (n)
		memcpy(x->b.p + x->len, p, n);
	x->len += n;
}

void store__bytes_i64(store_bytes *x, int64_t v)
{
	uint8_t be[8];
	store__be64(be, v);
	store__bytes_put(x, be, sizeof(be));
}

void store__bytes_str(store_bytes *x, const char *str)
{
	size_t n = strlen(str);
	store__bytes_i64(x, (int64_t)n);
	store__bytes_put(x, str, n);
}

/* Free x's memory; x is empty and usable again. Idempotent. */
void store__bytes_free(store_bytes *x)
{
	store__buf_free(&x->b);
	store__bytes_reset(x);
}

/* ---- keyed hashes ------------------------------------------------------- */

void store__kmac_deinit(store_kmac *m)
{
	EVP_MAC_CTX_free(m->ctx);
	EVP_MAC_free(m->mac);
	m->ctx = NULL;
	m->mac = NULL;
	m->failed = false;
}

/*
 * Set up m (overwritten) for HMAC-SHA-256 under the sub-key HMAC(store key,
 * label); the sub-key is wiped here, m's context keeps it. Returns 0, or
 * -ENOMEM / -EIO with the store's message set and m deinit'd.
 */
int store__kmac_init(store *s, store_kmac *m, const char *label)
{
	uint8_t key[32];
	size_t n = 0;
	int rc = -EIO;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	*m = (store_kmac)STORE_KMAC_NULL;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, s->crypto.key, STORE_KEY_LEN, (const unsigned char *)label,
		       strlen(label), key, sizeof(key), &n) ||
	    n != sizeof(key))
		goto fail;
	rc = -ENOMEM;
	if (!(m->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) || !(m->ctx = EVP_MAC_CTX_new(m->mac)))
		goto fail;
	rc = -EIO;
	if (EVP_MAC_init(m->ctx, key, sizeof(key), params) != 1)
		goto fail;
	OPENSSL_cleanse(key, sizeof(key));
	return 0;
fail:
	OPENSSL_cleanse(key, sizeof(key));
	store__kmac_deinit(m);
	store__seterr(s, "cannot set up the store's keyed hash");
	return rc;
}

/* Start a new hash: the sub-key again, then the domain byte that says what is hashed. */
void store__kmac_begin(store_kmac *m, uint8_t domain)
{
	/* A NULL key re-initialises HMAC with the key given in store__kmac_init(). */
	m->failed = EVP_MAC_init(m->ctx, NULL, 0, NULL) != 1;
	store__kmac_bytes(m, &domain, 1);
}

/* Raw bytes (a failure is remembered for store__kmac_final()). */
void store__kmac_bytes(store_kmac *m, const void *p, size_t n)
{
	if (n && EVP_MAC_update(m->ctx, p, n) != 1)
		m->failed = true;
}

void store__kmac_i64(store_kmac *m, int64_t v)
{
	uint8_t be[8];
	store__be64(be, v);
	store__kmac_bytes(m, be, sizeof(be));
}

/* A length-prefixed blob. */
void store__kmac_blob(store_kmac *m, const void *p, size_t n)
{
	store__kmac_i64(m, (int64_t)n);
	store__kmac_bytes(m, p, n);
}

/* A length-prefixed string. */
void store__kmac_str(store_kmac *m, const char *str)
{
	store__kmac_blob(m, str, strlen(str));
}

/* The first out_len (<= 32) bytes of the hash into out. Returns 0 or -EIO (message set). */
int store__kmac_final(store *s, store_kmac *m, uint8_t *out, size_t out_len)
{
	uint8_t full[32];
	size_t n = 0;
	if (out_len > sizeof(full) || m->failed || EVP_MAC_final(m->ctx, full, &n, sizeof(full)) != 1 ||
	    n != sizeof(full)) {
		store__seterr(s, "cannot compute a keyed hash");
		return -EIO;
	}
	memcpy(out, full, out_len);
	return 0;
}

/* ---- blobs sealed and opened per call ----------------------------------- */

/*
 * Seal pt[0..len) (NULL when len is 0) under aad into a new malloc'd blob
 * (*blob, *blob_len; the caller frees it). Returns 0, -EFBIG (larger than
 * the store takes), -ENOMEM or -EIO, the message set.
 */
int store__seal(store *s, const void *aad, size_t aad_len, const void *pt, size_t len, uint8_t **blob, size_t *blob_len)
{
	*blob = NULL;
	*blob_len = 0;
	int limit = sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, -1);
	if (len > (size_t)limit - STORE_BLOB_OVERHEAD || len > (size_t)INT_MAX - STORE_BLOB_OVERHEAD) {
		store__seterr(s, "a value of %zu bytes is larger than the store takes", len);
		return -EFBIG;
	}
	uint8_t *b = malloc(len + STORE_BLOB_OVERHEAD);
	if (!b)
		return store__oom(s);
	if (store_crypto_seal(&s->crypto, NULL, aad, aad_len, pt ? pt : "", len, b) != 0) {
		free(b);
		store__seterr(s, "cannot encrypt a value for the store");
		return -EIO;
	}
	*blob = b;
	*blob_len = len + STORE_BLOB_OVERHEAD;
	return 0;
}

/*
 * Open blob under aad into a new NUL-terminated string (*out, the caller
 * frees it; *out_len its length if out_len). On failure *out is NULL and
 * the message names the blob by fmt (e.g. "the stored value %s"): no
 * plaintext ever reaches it. Returns 0, STORE_E_CORRUPT (it does not
 * authenticate), -ENOMEM, -EINVAL or -EIO.
 */
int store__unseal(store *s, const void *aad, size_t aad_len, const void *blob, size_t blob_len, char **out,
		  size_t *out_len, const char *fmt, ...)
{
	*out = NULL;
	if (out_len)
		*out_len = 0;
	size_t cap = blob_len >= STORE_BLOB_OVERHEAD ? blob_len - STORE_BLOB_OVERHEAD : 0, len = 0;
	char *p = malloc(cap + 1);
	if (!p)
		return store__oom(s);
	int rc = store_crypto_open(&s->crypto, aad, aad_len, blob ? blob : (const void *)"", blob_len, (uint8_t *)p,
				   &len);
	if (rc) {
		free(p); /* wiped by store_crypto_open */
		char what[sizeof(s->errmsg)];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(what, sizeof(what), fmt, ap);
		va_end(ap);
		if (rc == STORE_E_CORRUPT)
			store__seterr(s, "%s failed authentication: the store %s is damaged or was tampered with", what,
				      s->db_path);
		else
			store__seterr(s, "cannot decrypt %s", what);
		return rc;
	}
	p[len] = '\0';
	*out = p;
	if (out_len)
		*out_len = len;
	return 0;
}
