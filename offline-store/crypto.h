/*
 * offline-store/crypto.h — internal to offline-store/: the key file, the
 * AES-256-GCM sealing of stored bodies, and the keyed hashes the store uses
 * for lookups and body comparison.
 *
 * Blob layout (what is stored in the database):
 *
 *     version (1 byte, STORE_BLOB_VERSION) || nonce (12) || ciphertext || tag (16)
 *
 * The caller passes additional authenticated data (AAD) that names the row
 * the blob belongs to; a blob copied to another row, truncated or altered in
 * any byte fails to open. The version byte is authenticated too.
 *
 * Keys: the 32-byte master key only ever keys AES-GCM and the derivation of
 * two sub-keys (HMAC-SHA-256 of fixed labels): one for SipHash-2-4 (lookup
 * hashes of resource keys), one for HMAC-SHA-256 (body fingerprints for
 * resources without versionId). No hash stored in the database is computable
 * without the key.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define STORE_KEY_LEN 32
#define STORE_BLOB_VERSION 1
#define STORE_NONCE_LEN 12
#define STORE_TAG_LEN 16
#define STORE_BLOB_OVERHEAD (1 + STORE_NONCE_LEN + STORE_TAG_LEN)
#define STORE_BODY_HASH_LEN 16

typedef struct store_nonce_pool store_nonce_pool;

typedef struct store_crypto {
	uint8_t key[STORE_KEY_LEN];
	uint8_t sip_key[16];
	EVP_CIPHER_CTX *enc;          /* keyed once; only the nonce changes per blob */
	EVP_CIPHER_CTX *dec;
	EVP_MAC *mac;
	EVP_MAC_CTX *mac_ctx;         /* HMAC-SHA-256 under the body-hash sub-key */
	store_nonce_pool *pool;       /* random bytes for nonces; wiped on fork */
} store_crypto;

#define STORE_CRYPTO_NULL { .enc = NULL }

/*
 * Set up c for the key (copied). Returns 0 or -ENOMEM / -EIO (OpenSSL
 * failure). On failure c is deinit'd.
 */
int store_crypto_init(store_crypto *c, const uint8_t key[STORE_KEY_LEN]);

/* Free the contexts and wipe every key byte. Idempotent. */
void store_crypto_deinit(store_crypto *c);

/*
 * Seal pt into out, which must hold pt_len + STORE_BLOB_OVERHEAD bytes. The
 * nonce is fresh random bytes, or the given 12 bytes when nonce is non-NULL
 * (for known-answer tests only). pt_len must be <= INT_MAX - 16.
 * Returns 0, -EINVAL, -EIO.
 */
int store_crypto_seal(store_crypto *c, const uint8_t *nonce, const void *aad, size_t aad_len,
		      const void *pt, size_t pt_len, uint8_t *out);

/*
 * Open blob into out, which must hold blob_len - STORE_BLOB_OVERHEAD bytes;
 * *pt_len receives that length. A blob that is too short, has an unknown
 * version or fails authentication gives STORE_E_CORRUPT, and out is wiped.
 * Returns 0, STORE_E_CORRUPT, -EINVAL, -EIO.
 */
int store_crypto_open(store_crypto *c, const void *aad, size_t aad_len, const uint8_t *blob,
		      size_t blob_len, uint8_t *out, size_t *pt_len);

/* HMAC-SHA-256 of the body under the body-hash sub-key, first 16 bytes. 0 or -EIO. */
int store_crypto_body_hash(store_crypto *c, const void *body, size_t len, uint8_t out[STORE_BODY_HASH_LEN]);

/* SipHash-2-4, streaming. */
typedef struct store_siphash {
	uint64_t v0, v1, v2, v3;
	uint64_t tail;      /* pending bytes, little-endian */
	size_t n_tail;      /* 0..7 */
	uint64_t total;     /* bytes consumed */
} store_siphash;

void store_siphash_init(store_siphash *h, const uint8_t key[16]);
void store_siphash_update(store_siphash *h, const void *data, size_t len);
uint64_t store_siphash_final(store_siphash *h);

/*
 * Read the key file at path into key. The file must be a regular file that
 * group and others cannot access, holding exactly 64 hex digits optionally
 * followed by one newline.
 * Returns 0; -ENOENT if the file does not exist (err says so); STORE_E_KEY
 * for a file that is refused (err says why, never shows key material);
 * another negative errno if it cannot be read.
 */
int store_key_load(const char *path, uint8_t key[STORE_KEY_LEN], char *err, size_t err_size);

/*
 * Create the key file at path (O_CREAT|O_EXCL, mode 0600) holding a fresh
 * random key as 64 hex digits and a newline; the file and its directory are
 * fsync'd. Returns 0; -EEXIST if the file appeared meanwhile; another
 * negative errno (err says which) — then no partial file is left behind.
 */
int store_key_generate(const char *path, uint8_t key[STORE_KEY_LEN], char *err, size_t err_size);
