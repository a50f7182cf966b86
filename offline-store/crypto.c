/*
 * offline-store/crypto.c — key file, AES-256-GCM blobs, keyed hashes.
 * See crypto.h for the formats.
 */
#include "offline-store/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "offline-store/store.h"

/* ---- nonce pool --------------------------------------------------------- */

/*
 * RAND_bytes() costs ~1.8 µs per call here (a getpid() syscall for its fork
 * check dominates), more than sealing a 550-byte body. So nonces are cut
 * from a page of random bytes refilled by one RAND_bytes() call. The page is
 * MADV_WIPEONFORK: a forked child sees avail == 0 and refills from its own
 * (reseeded) generator, so parent and child never share nonces. Where that
 * madvise is unavailable the pool is not used and every nonce is its own
 * RAND_bytes() call.
 */
struct store_nonce_pool {
	uint32_t avail;           /* unused bytes at the end of bytes[] */
	uint8_t bytes[4092];
};

static store_nonce_pool *nonce_pool_new(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	if (pg <= 0 || (size_t)pg < sizeof(store_nonce_pool))
		return NULL;
#ifdef MADV_WIPEONFORK
	void *p = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (madvise(p, (size_t)pg, MADV_WIPEONFORK) != 0) {
		munmap(p, (size_t)pg);
		return NULL;
	}
	return p;
#else
	return NULL;
#endif
}

static void nonce_pool_free(store_nonce_pool *p)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, sizeof(*p));
	munmap(p, (size_t)sysconf(_SC_PAGESIZE));
}

static int nonce_take(store_crypto *c, uint8_t nonce[STORE_NONCE_LEN])
{
	store_nonce_pool *p = c->pool;
	if (!p)
		return RAND_bytes(nonce, STORE_NONCE_LEN) == 1 ? 0 : -EIO;
	if (p->avail < STORE_NONCE_LEN) {
		if (RAND_bytes(p->bytes, sizeof(p->bytes)) != 1)
			return -EIO;
		p->avail = sizeof(p->bytes);
	}
	uint8_t *src = p->bytes + sizeof(p->bytes) - p->avail;
	memcpy(nonce, src, STORE_NONCE_LEN);
	OPENSSL_cleanse(src, STORE_NONCE_LEN); /* a used nonce never stays around */
	p->avail -= STORE_NONCE_LEN;
	return 0;
}

/* ---- contexts ----------------------------------------------------------- */

static int derive(const uint8_t key[STORE_KEY_LEN], const char *label, uint8_t *out, size_t out_len)
{
	uint8_t full[32];
	size_t n = 0;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, STORE_KEY_LEN, (const unsigned char *)label,
		       strlen(label), full, sizeof(full), &n) ||
	    n != sizeof(full) || out_len > sizeof(full)) {
		OPENSSL_cleanse(full, sizeof(full));
		return -EIO;
	}
	memcpy(out, full, out_len);
	OPENSSL_cleanse(full, sizeof(full));
	return 0;
}

int store_crypto_init(store_crypto *c, const uint8_t key[STORE_KEY_LEN])
{
	uint8_t mac_key[32];
	int rc = -ENOMEM;

	*c = (store_crypto)STORE_CRYPTO_NULL;
	memcpy(c->key, key, STORE_KEY_LEN);
	c->enc = EVP_CIPHER_CTX_new();
	c->dec = EVP_CIPHER_CTX_new();
	c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!c->enc || !c->dec || !c->mac)
		goto fail;
	c->mac_ctx = EVP_MAC_CTX_new(c->mac);
	if (!c->mac_ctx)
		goto fail;
	rc = -EIO;
	if (EVP_EncryptInit_ex(c->enc, EVP_aes_256_gcm(), NULL, c->key, NULL) != 1 ||
	    EVP_DecryptInit_ex(c->dec, EVP_aes_256_gcm(), NULL, c->key, NULL) != 1)
		goto fail;
	if (derive(key, "fhir-redcap-bridge store siphash v1", c->sip_key, sizeof(c->sip_key)) != 0 ||
	    derive(key, "fhir-redcap-bridge store body-hash v1", mac_key, sizeof(mac_key)) != 0)
		goto fail;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	if (EVP_MAC_init(c->mac_ctx, mac_key, sizeof(mac_key), params) != 1)
		goto fail;
	OPENSSL_cleanse(mac_key, sizeof(mac_key));
	c->pool = nonce_pool_new(); /* NULL is fine: per-nonce RAND_bytes */
	return 0;
fail:
	OPENSSL_cleanse(mac_key, sizeof(mac_key));
	store_crypto_deinit(c);
	return rc;
}

void store_crypto_deinit(store_crypto *c)
{
	EVP_CIPHER_CTX_free(c->enc); /* frees and cleanses the key schedule */
	EVP_CIPHER_CTX_free(c->dec);
	EVP_MAC_CTX_free(c->mac_ctx);
	EVP_MAC_free(c->mac);
	nonce_pool_free(c->pool);
	OPENSSL_cleanse(c, sizeof(*c));
	*c = (store_crypto)STORE_CRYPTO_NULL;
}

/* ---- sealing ------------------------------------------------------------ */

int store_crypto_seal(store_crypto *c, const uint8_t *nonce, const void *aad, size_t aad_len,
		      const void *pt, size_t pt_len, uint8_t *out)
{
	int n = 0;

	if (!c->enc || pt_len > (size_t)INT_MAX - STORE_BLOB_OVERHEAD || aad_len > INT_MAX)
		return -EINVAL;
	out[0] = STORE_BLOB_VERSION;
	uint8_t *iv = out + 1, *ct = out + 1 + STORE_NONCE_LEN, *tag = ct + pt_len;
	if (nonce)
		memcpy(iv, nonce, STORE_NONCE_LEN);
	else if (nonce_take(c, iv) != 0)
		return -EIO;
	/* Re-init with the nonce only: keeps the key schedule, resets GCM state. */
	if (EVP_EncryptInit_ex(c->enc, NULL, NULL, NULL, iv) != 1)
		return -EIO;
	if (aad_len && EVP_EncryptUpdate(c->enc, NULL, &n, aad, (int)aad_len) != 1)
		return -EIO;
	if (pt_len && EVP_EncryptUpdate(c->enc, ct, &n, pt, (int)pt_len) != 1)
		return -EIO;
	if (EVP_EncryptFinal_ex(c->enc, ct + n, &n) != 1 || n != 0)
		return -EIO;
	if (EVP_CIPHER_CTX_ctrl(c->enc, EVP_CTRL_GCM_GET_TAG, STORE_TAG_LEN, tag) != 1)
		return -EIO;
	return 0;
}

int store_crypto_open(store_crypto *c, const void *aad, size_t aad_len, const uint8_t *blob,
		      size_t blob_len, uint8_t *out, size_t *pt_len)
{
	int n = 0;

	*pt_len = 0;
	if (!c->dec || aad_len > INT_MAX)
		return -EINVAL;
	if (blob_len < STORE_BLOB_OVERHEAD || blob[0] != STORE_BLOB_VERSION)
		return STORE_E_CORRUPT;
	size_t len = blob_len - STORE_BLOB_OVERHEAD;
	if (len > INT_MAX)
		return -EINVAL;
	const uint8_t *iv = blob + 1, *ct = blob + 1 + STORE_NONCE_LEN, *tag = ct + len;
	if (EVP_DecryptInit_ex(c->dec, NULL, NULL, NULL, iv) != 1)
		return -EIO;
	if (aad_len && EVP_DecryptUpdate(c->dec, NULL, &n, aad, (int)aad_len) != 1)
		return -EIO;
	if (len && EVP_DecryptUpdate(c->dec, out, &n, ct, (int)len) != 1)
		return -EIO;
	if (EVP_CIPHER_CTX_ctrl(c->dec, EVP_CTRL_GCM_SET_TAG, STORE_TAG_LEN, (void *)tag) != 1)
		return -EIO;
	if (EVP_DecryptFinal_ex(c->dec, out + n, &n) != 1) {
		OPENSSL_cleanse(out, len); /* unauthenticated plaintext never leaves */
		return STORE_E_CORRUPT;
	}
	*pt_len = len;
	return 0;
}

int store_crypto_body_hash(store_crypto *c, const void *body, size_t len, uint8_t out[STORE_BODY_HASH_LEN])
{
	uint8_t full[32];
	size_t n = 0;
	/* A NULL key re-initialises HMAC with the key set in store_crypto_init(). */
	if (!c->mac_ctx || EVP_MAC_init(c->mac_ctx, NULL, 0, NULL) != 1 ||
	    EVP_MAC_update(c->mac_ctx, body, len) != 1 || EVP_MAC_final(c->mac_ctx, full, &n, sizeof(full)) != 1 ||
	    n != sizeof(full))
		return -EIO;
	memcpy(out, full, STORE_BODY_HASH_LEN);
	return 0;
}

/* ---- SipHash-2-4 -------------------------------------------------------- */

static inline uint64_t rotl64(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#define SIPROUND(h) \
	do { \
		(h)->v0 += (h)->v1; \
		(h)->v1 = rotl64((h)->v1, 13); \
		(h)->v1 ^= (h)->v0; \
		(h)->v0 = rotl64((h)->v0, 32); \
		(h)->v2 += (h)->v3; \
		(h)->v3 = rotl64((h)->v3, 16); \
		(h)->v3 ^= (h)->v2; \
		(h)->v0 += (h)->v3; \
		(h)->v3 = rotl64((h)->v3, 21); \
		(h)->v3 ^= (h)->v0; \
		(h)->v2 += (h)->v1; \
		(h)->v1 = rotl64((h)->v1, 17); \
		(h)->v1 ^= (h)->v2; \
		(h)->v2 = rotl64((h)->v2, 32); \
	} while (0)

static inline void sip_block(store_siphash *h, uint64_t m)
{
	h->v3 ^= m;
	SIPROUND(h);
	SIPROUND(h);
	h->v0 ^= m;
}

void store_siphash_init(store_siphash *h, const uint8_t key[16])
{
	uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
	h->v0 = k0 ^ 0x736f6d6570736575ULL;
	h->v1 = k1 ^ 0x646f72616e646f6dULL;
	h->v2 = k0 ^ 0x6c7967656e657261ULL;
	h->v3 = k1 ^ 0x7465646279746573ULL;
	h->tail = 0;
	h->n_tail = 0;
	h->total = 0;
}

void store_siphash_update(store_siphash *h, const void *data, size_t len)
{
	const uint8_t *p = data;
	h->total += len;
	while (len && h->n_tail) {
		h->tail |= (uint64_t)*p++ << (8 * h->n_tail);
		len--;
		if (++h->n_tail == 8) {
			sip_block(h, h->tail);
			h->tail = 0;
			h->n_tail = 0;
		}
	}
	for (; len >= 8; p += 8, len -= 8)
		sip_block(h, load_le64(p));
	while (len--)
		h->tail |= (uint64_t)*p++ << (8 * h->n_tail++);
}

uint64_t store_siphash_final(store_siphash *h)
{
	uint64_t b = (h->total << 56) | h->tail;
	sip_block(h, b);
	h->v2 ^= 0xff;
	for (int i = 0; i < 4; i++)
		SIPROUND(h);
	return h->v0 ^ h->v1 ^ h->v2 ^ h->v3;
}

/* ---- key file ----------------------------------------------------------- */

/* strerror() of a negative errno; never NULL (keeps -Wformat-truncation quiet). */
static const char *errno_str(int neg)
{
	const char *m = strerror(-neg);
	return m ? m : "unknown error";
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int store_key_load(const char *path, uint8_t key[STORE_KEY_LEN], char *err, size_t err_size)
{
	/* 64 digits + newline + 1 so an over-long file is seen as such. */
	char buf[2 * STORE_KEY_LEN + 2];
	struct stat st;
	ssize_t got = 0;
	int rc;

	/* O_NONBLOCK: a FIFO planted as the key file must not hang us. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			snprintf(err, err_size, "key file %s does not exist", path);
		else
			snprintf(err, err_size, "cannot open key file %s: %s", path, errno_str(rc));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		snprintf(err, err_size, "cannot stat key file %s: %s", path, errno_str(rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, err_size, "key file %s is not a regular file", path);
		rc = STORE_E_KEY;
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, err_size,
			 "key file %s has permissions %04o: group and others must have no access (chmod 600 %s)",
			 path, (unsigned)(st.st_mode & 07777), path);
		rc = STORE_E_KEY;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - (size_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			snprintf(err, err_size, "cannot read key file %s: %s", path, errno_str(rc));
			goto out;
		}
		if (n == 0)
			break;
		got += n;
		if ((size_t)got == sizeof(buf))
			break;
	}
	rc = STORE_E_KEY;
	size_t len = (size_t)got;
	if (len == sizeof(buf) || (size_t)st.st_size > sizeof(buf)) {
		snprintf(err, err_size, "key file %s is too long: expected 64 hex digits and an optional newline", path);
		goto out;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	for (size_t i = 0; i < len; i++) {
		if (hexval((unsigned char)buf[i]) < 0) {
			snprintf(err, err_size, "key file %s: character %zu is not a hex digit (expected 64 hex digits)",
				 path, i + 1);
			goto out;
		}
	}
	if (len != 2 * STORE_KEY_LEN) {
		snprintf(err, err_size, "key file %s holds %zu hex digits; expected 64", path, len);
		goto out;
	}
	for (size_t i = 0; i < STORE_KEY_LEN; i++)
		key[i] = (uint8_t)(hexval((unsigned char)buf[2 * i]) << 4 | hexval((unsigned char)buf[2 * i + 1]));
	rc = 0;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return rc;
}

static int fsync_parent_dir(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	char *slash = strrchr(copy, '/');
	const char *dir = ".";
	if (slash == copy)
		dir = "/";
	else if (slash) {
		*slash = '\0';
		dir = copy;
	}
	int rc = 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

int store_key_generate(const char *path, uint8_t key[STORE_KEY_LEN], char *err, size_t err_size)
{
	static const char digits[] = "0123456789abcdef";
	char hex[2 * STORE_KEY_LEN + 1];
	int rc = 0;

	if (RAND_bytes(key, STORE_KEY_LEN) != 1) {
		snprintf(err, err_size, "cannot generate a key: no randomness from OpenSSL");
		return -EIO;
	}
	for (size_t i = 0; i < STORE_KEY_LEN; i++) {
		hex[2 * i] = digits[key[i] >> 4];
		hex[2 * i + 1] = digits[key[i] & 15];
	}
	hex[2 * STORE_KEY_LEN] = '\n';

	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		rc = -errno;
		if (rc != -EEXIST)
			snprintf(err, err_size, "cannot create key file %s: %s", path, errno_str(rc));
		goto out;
	}
	size_t done = 0;
	while (done < sizeof(hex)) {
		ssize_t n = write(fd, hex + done, sizeof(hex) - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)n;
	}
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0)
		rc = fsync_parent_dir(path);
	if (rc != 0) {
		snprintf(err, err_size, "cannot write key file %s: %s", path, errno_str(rc));
		unlink(path);
	}
out:
	OPENSSL_cleanse(hex, sizeof(hex));
	if (rc != 0)
		OPENSSL_cleanse(key, STORE_KEY_LEN);
	return rc;
}
