/*
 * offline-store/store-internal.h — internal to offline-store/: the store
 * handle, the helpers store.c lends to the other files of the store
 * (outbox.c, kv.c, chart.c), and the encodings they share (encode.c).
 * Nothing outside offline-store/ includes this.
 *
 * Names are store__*: the library is linked into the program, so its
 * internal symbols must not collide with anyone else's.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "offline-store/crypto.h"
#include "offline-store/store.h"

/*
 * name -> id of rows that are never deleted (resource types, projects), so
 * that a name costs a string compare, not a query. Forgotten on rollback:
 * ids made in the rolled back transaction are gone.
 */
typedef struct store_names {
	struct store_name {
		char *name;
		int64_t id;
	} *v;
	size_t n, cap;
	size_t last; /* the last one found: runs of one name cost one compare */
} store_names;

/* A growable byte buffer; grows by doubling, never shrinks until freed. */
typedef struct store_buf {
	uint8_t *p;
	size_t cap;
} store_buf;

/* The curation side's state (outbox.c): its statements and caches. */
typedef struct store_outbox store_outbox;

/* store.c's cached statements (the enum lives there). */
#define STORE_N_STMT 18

struct store {
	sqlite3 *db;
	store_mode mode;
	char *db_path;
	store_crypto crypto;
	sqlite3_stmt *stmt[STORE_N_STMT];

	store_names types; /* rows of types */

	/* the last interned patient; cleared on rollback */
	bool pat_valid;
	int64_t pat_server, pat_id;
	store_buf pat_name;

	store_buf blob; /* ciphertext of the body being stored */
	store_buf aad;  /* AAD of the row being sealed or opened */

	store_outbox *ob; /* made on first use by outbox.c; NULL until then */

	int64_t txn_time; /* unix seconds, set by store_begin() */
	char errmsg[1024];
};

/* ---- lent by store.c ----------------------------------------------------- */

__attribute__((format(printf, 2, 3))) void store__seterr(store *s, const char *fmt, ...);
/* Record an SQLite failure of `what`; returns the store's code for rc. */
int store__db_fail(store *s, int rc, const char *what);
int store__oom(store *s);

/* sql prepared once per handle (SQLITE_PREPARE_PERSISTENT) and kept in *slot. */
int store__stmt_cached(store *s, sqlite3_stmt **slot, const char *sql, sqlite3_stmt **out);
/* A statement for one call, which the caller finalizes: a callback fed from it may use the store. */
int store__prepare(store *s, const char *sql, sqlite3_stmt **st, const char *what);
/* Run a store__prepare statement that returns no row, and finalize it. */
int store__exec_once(store *s, sqlite3_stmt *st, const char *what);
/* Ready a cached statement for its next use: reset, bindings cleared. */
void store__stmt_done(sqlite3_stmt *st);
/* Run a cached statement that returns no row. */
int store__stmt_exec(store *s, sqlite3_stmt *st, const char *what);
/* Run a cached statement returning one integer (NULL counts as "no row"). */
int store__stmt_int(store *s, sqlite3_stmt *st, const char *what, bool *found, int64_t *v);
/*
 * Hand each row of st (a store__prepare statement, finalized here) to cb:
 * columns type, id, versionId, lastUpdated, patient, server and the body
 * blob, opened here. Returns 0, cb's first non-zero answer, or an error.
 */
int store__foreach_row(store *s, sqlite3_stmt *st, store_resource_cb cb, void *ud, const char *what);

/* A read transaction unless one is open (*own: we opened it): a report's figures from one snapshot. */
int store__snapshot_begin(store *s, const char *what, bool *own);
void store__snapshot_end(store *s, bool own);

int store__buf_reserve(store_buf *b, size_t n);
void store__buf_free(store_buf *b);
/* Length of the longest prefix of str (length len) of at most max bytes that ends on a UTF-8 boundary. */
size_t store__utf8_prefix(const char *str, size_t len, size_t max);

/* Is name in c? *id its id. */
bool store__names_find(store_names *c, const char *name, int64_t *id);
/* Remember name -> id in c. */
int store__names_add(store *s, store_names *c, const char *name, int64_t id);
/* Forget every name (a rollback); store__names_free frees c. */
void store__names_forget(store_names *c);
void store__names_free(store_names *c);

/* A JSON string of possibly invalid UTF-8 (bad bytes become '?'); NULL only on OOM. */
json_t *store__jstr(const char *str);
/* Unix seconds of the open transaction (store_begin), else now. */
int64_t store__now(const store *s);

/*
 * Run fn inside the caller's transaction, or in its own if none is open
 * (what names the call in the read-only refusal). On failure the caches are
 * forgotten when SQLite rolled the caller's transaction back.
 */
int store__write(store *s, const char *what, int (*fn)(store *s, void *ud), void *ud);

/* The interned id of (server, patient); made if create, else STORE_E_NOTFOUND. */
int store__patient_id(store *s, int64_t server, const char *patient, bool create, int64_t *id);

/* Open the body blob of (server, type, id, version_id) into out (NUL-terminated); *len its length. */
int store__open_body(store *s, int64_t server, const char *type, const char *id, const char *version_id,
		     const uint8_t *blob, size_t blob_len, store_buf *out, size_t *len);

/* ---- provided by encode.c: AADs, keyed hashes, per-call blobs ------------ */

/*
 * One encoding for AADs and keyed-hash inputs: integers 8 bytes big-endian,
 * strings and blobs prefixed by their length as such an integer.
 */
void store__be64(uint8_t out[8], int64_t v);
int64_t store__be64_get(const uint8_t p[8]);

/* A growable byte string (an AAD being built); after a failed append the others do nothing. */
typedef struct store_bytes {
	store_buf b;
	size_t len;
	bool oom; /* an append failed since the last reset */
} store_bytes;

#define STORE_BYTES_NULL { .len = 0 }

void store__bytes_reset(store_bytes *x);
void store__bytes_put(store_bytes *x, const void *p, size_t n);
void store__bytes_i64(store_bytes *x, int64_t v);
/* Length-prefixed. */
void store__bytes_str(store_bytes *x, const char *str);
void store__bytes_free(store_bytes *x);

/*
 * HMAC-SHA-256 under the sub-key HMAC(store key, label), one hash at a time:
 * begin (a domain byte), feed, final. A failed feed is reported by final.
 */
typedef struct store_kmac {
	EVP_MAC *mac;
	EVP_MAC_CTX *ctx;
	bool failed; /* a feed failed since store__kmac_begin() */
} store_kmac;

#define STORE_KMAC_NULL { .mac = NULL }

/* 0, or -ENOMEM / -EIO with the message set. */
int store__kmac_init(store *s, store_kmac *m, const char *label);
/* Idempotent. */
void store__kmac_deinit(store_kmac *m);
void store__kmac_begin(store_kmac *m, uint8_t domain);
void store__kmac_bytes(store_kmac *m, const void *p, size_t n);
void store__kmac_i64(store_kmac *m, int64_t v);
/* Length-prefixed. */
void store__kmac_blob(store_kmac *m, const void *p, size_t n);
void store__kmac_str(store_kmac *m, const char *str);
/* The first out_len (<= 32) bytes of the hash; 0 or -EIO (message set). */
int store__kmac_final(store *s, store_kmac *m, uint8_t *out, size_t out_len);

/* Seal pt[0..len) under aad into a new malloc'd blob; 0, -EFBIG, -ENOMEM or -EIO (message set). */
int store__seal(store *s, const void *aad, size_t aad_len, const void *pt, size_t len, uint8_t **blob,
		size_t *blob_len);
/*
 * Open blob under aad into a new NUL-terminated string (*out_len its length
 * if out_len); on failure the message names the blob as fmt says (e.g. "the
 * stored value %s"). 0, STORE_E_CORRUPT, -ENOMEM, -EINVAL or -EIO.
 */
__attribute__((format(printf, 8, 9))) int store__unseal(store *s, const void *aad, size_t aad_len, const void *blob,
							size_t blob_len, char **out, size_t *out_len, const char *fmt,
							...);

/* ---- provided by outbox.c ------------------------------------------------ */

/* Forget cached ids (after a rollback rows they name may be gone). */
void store__outbox_forget(store *s);
/* Free s->ob (store_close). */
void store__outbox_free(store *s);
