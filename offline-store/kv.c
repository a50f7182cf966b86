/*
 * offline-store/kv.c — a generic encrypted key/value table (schema v3): for
 * state that may hold PHI and belongs to no other table, e.g. the
 * checkpoints of an export (the record ids still to fetch).
 *
 * Names are in clear (callers make them of config names and hashes, never
 * of data); each value is a crypto.h blob whose AAD is the name, so a value
 * copied under another name fails to open (STORE_E_CORRUPT). Values go up
 * to SQLite's blob limit; a checkpoint is written once per export batch, so
 * statements are prepared per call and the ciphertext buffer is per call
 * too (the store's shared buffers would otherwise keep a 10 MB value's
 * worth of memory for the life of the handle).
 */
#include "offline-store/outbox.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "offline-store/crypto.h"
#include "offline-store/store-internal.h"

/* Longest name accepted. */
#define KV_MAX_NAME_LEN 4096

/* AAD tag; store.c uses 'R' and 'K', outbox.c 'N', 'O' and 'V'. */
#define AAD_TAG_KV 'E'

static bool name_ok(const char *name)
{
	return name && name[0] && strnlen(name, KV_MAX_NAME_LEN + 1) <= KV_MAX_NAME_LEN;
}

static int bad_args(store *s, const char *fn)
{
	if (s)
		store__seterr(s, "%s: bad arguments", fn);
	return -EINVAL;
}

/* The AAD of a value into a (reset first): tag, blob version, the length-prefixed name. */
static int kv_aad(store *s, store_bytes *a, const char *name)
{
	uint8_t head[2] = { AAD_TAG_KV, STORE_BLOB_VERSION };
	store__bytes_reset(a);
	store__bytes_put(a, head, sizeof(head));
	store__bytes_str(a, name);
	return a->oom ? store__oom(s) : 0;
}

typedef struct kv_put_args {
	const char *name;
	const uint8_t *blob;
	size_t blob_len;
} kv_put_args;

static int kv_put_impl(store *s, void *ud)
{
	const kv_put_args *a = ud;
	sqlite3_stmt *st = NULL;
	int rc = store__prepare(s,
				"INSERT INTO kv(name, value) VALUES(?1, ?2)"
				" ON CONFLICT(name) DO UPDATE SET value = excluded.value",
				&st, "cannot prepare a key/value write");
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
	sqlite3_bind_blob64(st, 2, a->blob, a->blob_len, SQLITE_STATIC);
	return store__exec_once(s, st, "cannot write a key/value entry");
}

int store_kv_put(store *s, const char *name, const void *data, size_t len)
{
	if (!s || !name_ok(name) || (!data && len))
		return bad_args(s, "store_kv_put");
	int limit = sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, -1);
	if (len > (size_t)limit - STORE_BLOB_OVERHEAD || len > (size_t)INT_MAX - STORE_BLOB_OVERHEAD) {
		store__seterr(s, "store_kv_put: a value of %zu bytes is larger than the store takes", len);
		return -EFBIG;
	}
	store_bytes aad = STORE_BYTES_NULL;
	kv_put_args a = { .name = name };
	uint8_t *blob = NULL;
	int rc = kv_aad(s, &aad, name);
	if (!rc)
		rc = store__seal(s, aad.b.p, aad.len, data, len, &blob, &a.blob_len);
	store__bytes_free(&aad);
	if (!rc) {
		a.blob = blob;
		rc = store__write(s, "store_kv_put", kv_put_impl, &a);
	}
	free(blob); /* ciphertext only */
	return rc;
}

/* Open the value (blob, n) of name into a new NUL-terminated buffer. */
static int kv_open(store *s, const char *name, const void *blob, size_t n, char **data, size_t *len)
{
	store_bytes aad = STORE_BYTES_NULL;
	int rc = kv_aad(s, &aad, name);
	if (!rc)
		rc = store__unseal(s, aad.b.p, aad.len, blob, n, data, len, "the stored value %s", name);
	store__bytes_free(&aad);
	return rc;
}

int store_kv_get(store *s, const char *name, char **data, size_t *len)
{
	sqlite3_stmt *st = NULL;
	if (data)
		*data = NULL;
	if (len)
		*len = 0;
	if (!s || !name_ok(name) || !data)
		return bad_args(s, "store_kv_get");
	int rc = store__prepare(s, "SELECT value FROM kv WHERE name = ?1", &st, "cannot read a key/value entry");
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		const void *blob = sqlite3_column_blob(st, 0);
		size_t n = (size_t)sqlite3_column_bytes(st, 0);
		rc = kv_open(s, name, blob, n, data, len);
	} else if (src == SQLITE_DONE) {
		store__seterr(s, "the store has no value %s", name);
		rc = STORE_E_NOTFOUND;
	} else {
		rc = store__db_fail(s, src, "cannot read a key/value entry");
	}
	sqlite3_finalize(st);
	return rc;
}

static int kv_delete_impl(store *s, void *ud)
{
	sqlite3_stmt *st = NULL;
	int rc = store__prepare(s, "DELETE FROM kv WHERE name = ?1", &st, "cannot prepare a key/value delete");
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, ud, -1, SQLITE_STATIC);
	return store__exec_once(s, st, "cannot delete a key/value entry");
}

int store_kv_delete(store *s, const char *name)
{
	if (!s || !name_ok(name))
		return bad_args(s, "store_kv_delete");
	return store__write(s, "store_kv_delete", kv_delete_impl, (void *)name);
}
