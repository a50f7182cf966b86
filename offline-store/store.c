/*
 * offline-store/store.c — the local SQLite store (see store.h).
 *
 * Durability: the database runs in WAL mode with synchronous=NORMAL. A
 * commit has written its frames to the WAL file with write(2) before
 * store_commit() returns, so it survives the process being killed at any
 * point (kill -9, crash, OOM): the kernel holds the data and the next open
 * recovers it from the WAL. What NORMAL gives up against FULL is the fsync
 * of the WAL at every commit: after a power loss or kernel crash the last
 * transactions before the outage may be missing (never half-applied: the
 * WAL checksums frames and drops a torn tail). A missing page is fetched
 * again on the next crawl, because its cursor rolled back with it. The
 * WAL is fsync'd at each checkpoint. Our guarantee is no loss on kill -9 of
 * the process, not on power loss, so NORMAL is the right trade: FULL costs
 * one fsync per transaction.
 *
 * Concurrency: one connection per store handle, used by one thread at a
 * time. Writers use BEGIN IMMEDIATE and wait up to the busy timeout (5 s by
 * default) for another writer; readers (STORE_RO, e.g. `status` beside the
 * running daemon) read the last committed snapshot without blocking it.
 *
 * Secrets: the master key lives in store_crypto (wiped on close); the key
 * file's hex is wiped after parsing. Resource bodies are stored only as
 * crypto.h blobs; no plaintext body is ever handed to SQLite, so none can
 * land in the database, the WAL or freed pages.
 */
#include "offline-store/store.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>
#include <pthread.h>

#include <sqlite3.h>

#include "offline-store/chart.h"
#include "offline-store/crypto.h"
#include "offline-store/instant.h"
#include "offline-store/schema.h"
#include "offline-store/store-internal.h"

#define STORE_BUSY_TIMEOUT_MS 5000
/*
 * Checkpoint the WAL every 4096 pages (64 MiB at 16 KiB pages): a page
 * rewritten by many commits reaches the database file once per checkpoint.
 * Against 1024 pages: ~62k vs ~55k rows/s. Checkpoints still take ~25% of
 * the insert time (no checkpoint at all: ~80k rows/s).
 */
#define STORE_WAL_AUTOCHECKPOINT 4096
#define STORE_JOURNAL_SIZE_LIMIT (64 * 1024 * 1024)
/*
 * Page cache per connection. Small beats large here: a 100k-row pull ran in
 * ~1.25 s with 4-8 MiB against ~1.55 s with 64 MiB (the large cache costs a
 * page fault per fresh cache page and 90 MB of RSS instead of 30 MB); the OS
 * page cache serves what falls out of it.
 */
#define STORE_CACHE_KIB 8192
/* Longest type, id, versionId, lastUpdated or patient accepted (FHIR ids are <= 64). */
#define STORE_MAX_KEY_LEN 4096

/* AAD domain tags: a body blob can never pass as the key check or back. */
#define AAD_TAG_BODY 'R'
#define AAD_TAG_KEYCHECK 'K'

static const char keycheck_plain[] = "fhir-redcap-bridge store key check v1";

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SERVER_GET,
	ST_SERVER_ADD,
	ST_TYPE_GET,
	ST_TYPE_ADD,
	ST_PATIENT_GET,
	ST_PATIENT_ADD,
	ST_RES_LOOKUP,
	ST_RES_INSERT,
	ST_RES_UPDATE,
	ST_VER_INSERT,
	ST_RES_GET,
	ST_CURSOR_GET,
	ST_CURSOR_PUT,
	ST_CURSOR_ERROR,
	ST_WAIT_MARK,
	ST__N
};

static const char *const stmt_sql[ST__N] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SERVER_GET] = "SELECT id FROM servers WHERE base_url = ?1",
	[ST_SERVER_ADD] = "INSERT INTO servers(base_url) VALUES(?1)",
	[ST_TYPE_GET] = "SELECT id FROM types WHERE name = ?1",
	[ST_TYPE_ADD] = "INSERT INTO types(name) VALUES(?1)",
	[ST_PATIENT_GET] = "SELECT id FROM patients WHERE server = ?1 AND patient = ?2",
	[ST_PATIENT_ADD] = "INSERT INTO patients(server, patient) VALUES(?1, ?2)",
	/* INDEXED BY: without statistics the planner would pick resources_type
	 * (two equality terms) and scan every row of the type. */
	[ST_RES_LOOKUP] = "SELECT rid, lu_us, patient FROM resources INDEXED BY resources_key"
			  " WHERE key_hash = ?1 AND server = ?2 AND type = ?3 AND id = ?4",
	[ST_RES_INSERT] = "INSERT INTO resources(server, type, key_hash, id, version_id, last_updated, lu_us,"
			  " patient, body) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[ST_RES_UPDATE] = "UPDATE resources SET version_id = ?2, last_updated = ?3, lu_us = ?4, patient = ?5,"
			  " body = ?6 WHERE rid = ?1",
	[ST_VER_INSERT] = "INSERT INTO resource_versions(rid, version_id, body_hash, type, last_updated, seen_at)"
			  " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
	[ST_RES_GET] = "SELECT version_id, body FROM resources INDEXED BY resources_key"
		       " WHERE key_hash = ?1 AND server = ?2 AND type = ?3 AND id = ?4",
	[ST_CURSOR_GET] = "SELECT watermark, crawl_started, next_url, pages, last_success, last_error"
			  " FROM cursors WHERE server = ?1 AND type = ?2",
	[ST_CURSOR_PUT] = "INSERT INTO cursors(server, type, watermark, crawl_started, next_url, pages,"
			  " last_success, last_error) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
			  " ON CONFLICT(server, type) DO UPDATE SET watermark = excluded.watermark,"
			  " crawl_started = excluded.crawl_started, next_url = excluded.next_url,"
			  " pages = excluded.pages, last_success = excluded.last_success,"
			  " last_error = excluded.last_error",
	[ST_CURSOR_ERROR] = "INSERT INTO cursors(server, type, last_error) VALUES(?1, ?2, ?3)"
			    " ON CONFLICT(server, type) DO UPDATE SET last_error = excluded.last_error",
	/* The rowid (seq) orders the waiting patients; UNIQUE(patient) makes a
	 * patient already waiting cost one index probe and no write. */
	[ST_WAIT_MARK] = "INSERT OR IGNORE INTO waiting(patient) VALUES(?1)",
};

_Static_assert(ST__N == STORE_N_STMT, "update STORE_N_STMT in store-internal.h");

/* ---- small helpers ------------------------------------------------------ */

__attribute__((format(printf, 2, 3))) static void seterr(store *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
}

static int buf_reserve(store_buf *b, size_t n)
{
	if (n <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 1024;
	while (cap < n) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	uint8_t *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static void buf_free(store_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->cap = 0;
}

/* Map an SQLite result code to the store's convention. */
static int map_sqlite(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return STORE_E_BUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_IOERR:
		return -EIO;
	case SQLITE_FULL:
		return -ENOSPC;
	default:
		return STORE_E_DB;
	}
}

/* Record an SQLite failure of `what` and return the mapped code. */
static int db_fail(store *s, int rc, const char *what)
{
	const char *detail = s->db && sqlite3_extended_errcode(s->db) == rc ? sqlite3_errmsg(s->db)
									 : sqlite3_errstr(rc);
	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		seterr(s, "%s: the store %s is locked by another writer (%s)", what, s->db_path, detail);
	else if ((rc & 0xff) == SQLITE_READONLY)
		seterr(s, "%s: the store %s is read-only here (%s)", what, s->db_path, detail);
	else
		seterr(s, "%s: %s (store %s)", what, detail, s->db_path);
	return map_sqlite(rc);
}

static int oom(store *s)
{
	seterr(s, "out of memory");
	return -ENOMEM;
}

/* sql prepared once per handle and kept in *slot (store.c's and outbox.c's caches). */
static int stmt_cached(store *s, sqlite3_stmt **slot, const char *sql, sqlite3_stmt **out)
{
	int rc = SQLITE_OK;

	if (!*slot)
		rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
	if (rc != SQLITE_OK)
		*slot = NULL;
	*out = *slot;
	return rc == SQLITE_OK ? 0 : db_fail(s, rc, "cannot prepare a statement");
}

static int stmt_get(store *s, enum stmt_id id, sqlite3_stmt **out)
{
	return stmt_cached(s, &s->stmt[id], stmt_sql[id], out);
}

/* A statement for one call (the caller finalizes it): a callback fed from it may use the store. */
static int prepare(store *s, const char *sql, sqlite3_stmt **st, const char *what)
{
	int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
	return rc == SQLITE_OK ? 0 : db_fail(s, rc, what);
}

static void stmt_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* Run a cached statement that returns no row. */
static int stmt_exec(store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	stmt_done(st);
	if (rc != SQLITE_DONE)
		return db_fail(s, rc, what);
	return 0;
}

/* Run a cached statement returning one integer (NULL counts as "no row"). */
static int stmt_int(store *s, sqlite3_stmt *st, const char *what, bool *found, int64_t *v)
{
	int rc = sqlite3_step(st);
	*found = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
	if (*found)
		*v = sqlite3_column_int64(st, 0);
	stmt_done(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(s, rc, what);
}

static int exec_sql(store *s, const char *sql, const char *what)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_fail(s, rc, what);
}

static int pragma_int(store *s, const char *sql, int64_t *v)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*v = sqlite3_column_int64(st, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

static bool in_txn(const store *s)
{
	return !sqlite3_get_autocommit(s->db);
}

static int check_writable(store *s, const char *what)
{
	if (s->mode == STORE_RO) {
		seterr(s, "%s: the store %s is open read-only", what, s->db_path);
		return STORE_E_DB;
	}
	return 0;
}

/*
 * One read transaction unless the caller has one open (*own: we opened it),
 * so that a report's figures all come from the same snapshot.
 */
static int snapshot_begin(store *s, const char *what, bool *own)
{
	*own = !in_txn(s);
	return *own ? exec_sql(s, "BEGIN", what) : 0;
}

static void snapshot_end(store *s, bool own)
{
	if (own && s->db && in_txn(s))
		sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
}

static bool names_find(store_names *c, const char *name, int64_t *id)
{
	if (c->last < c->n && strcmp(c->v[c->last].name, name) == 0) {
		*id = c->v[c->last].id;
		return true;
	}
	for (size_t i = 0; i < c->n; i++) {
		if (strcmp(c->v[i].name, name) == 0) {
			c->last = i;
			*id = c->v[i].id;
			return true;
		}
	}
	return false;
}

static int names_add(store *s, store_names *c, const char *name, int64_t id)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct store_name *v = realloc(c->v, cap * sizeof(*v));
		if (!v)
			return oom(s);
		c->v = v;
		c->cap = cap;
	}
	char *copy = strdup(name);
	if (!copy)
		return oom(s);
	c->v[c->n] = (struct store_name){ copy, id };
	c->last = c->n++;
	return 0;
}

static void names_forget(store_names *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].name);
	c->n = 0;
	c->last = 0;
}

static void names_free(store_names *c)
{
	names_forget(c);
	free(c->v);
	*c = (store_names){ 0 };
}

/* Forget cached ids: after a rollback rows they name may be gone. */
static void caches_clear(store *s)
{
	names_forget(&s->types);
	s->pat_valid = false;
	store__outbox_forget(s);
}

/* Length of the longest prefix of str (length len) of at most max bytes that ends on a UTF-8 boundary. */
static size_t utf8_prefix(const char *str, size_t len, size_t max)
{
	if (len <= max)
		return len;
	size_t n = max;
	while (n > 0 && ((unsigned char)str[n] & 0xC0) == 0x80)
		n--;
	return n;
}

static int aad_put(store_buf *b, size_t *off, const void *p, size_t n)
{
	if (n > SIZE_MAX - *off || buf_reserve(b, *off + n) != 0)
		return -ENOMEM;
	if (n)
		memcpy(b->p + *off, p, n);
	*off += n;
	return 0;
}

static int aad_put_str(store_buf *b, size_t *off, const char *str)
{
	size_t n = strlen(str);
	if (n > UINT32_MAX)
		return -EINVAL;
	uint8_t be[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
	int rc = aad_put(b, off, be, sizeof(be));
	return rc ? rc : aad_put(b, off, str, n);
}

/*
 * The AAD of a body blob: tag, blob version, server, and the length-prefixed
 * type, id and version_id. Built in s->aad; *len receives its length.
 */
static int aad_body(store *s, int64_t server, const char *type, const char *id, const char *version_id,
		    size_t *len)
{
	uint8_t head[2 + 8] = { AAD_TAG_BODY, STORE_BLOB_VERSION };
	for (int i = 0; i < 8; i++)
		head[2 + i] = (uint8_t)((uint64_t)server >> (56 - 8 * i));
	size_t off = 0;
	int rc = aad_put(&s->aad, &off, head, sizeof(head));
	if (!rc)
		rc = aad_put_str(&s->aad, &off, type);
	if (!rc)
		rc = aad_put_str(&s->aad, &off, id);
	if (!rc)
		rc = aad_put_str(&s->aad, &off, version_id);
	if (rc)
		return rc == -ENOMEM ? oom(s) : (seterr(s, "resource key too long"), rc);
	*len = off;
	return 0;
}

static int64_t key_hash(store *s, int64_t server, int64_t type_id, const char *id)
{
	uint8_t head[16];
	for (int i = 0; i < 8; i++) {
		head[i] = (uint8_t)((uint64_t)server >> (8 * i));
		head[8 + i] = (uint8_t)((uint64_t)type_id >> (8 * i));
	}
	store_siphash h;
	store_siphash_init(&h, s->crypto.sip_key);
	store_siphash_update(&h, head, sizeof(head));
	store_siphash_update(&h, id, strlen(id));
	return (int64_t)store_siphash_final(&h);
}

/* ---- schema, key check, open -------------------------------------------- */

int store_schema_version(void)
{
	return store_migrations[store_n_migrations - 1].version;
}

static int keycheck_aad(uint8_t aad[3])
{
	aad[0] = AAD_TAG_KEYCHECK;
	aad[1] = STORE_BLOB_VERSION;
	aad[2] = 0;
	return 3;
}

static int keycheck_write(store *s)
{
	uint8_t aad[3], blob[sizeof(keycheck_plain) + STORE_BLOB_OVERHEAD];
	int n = keycheck_aad(aad);
	int rc = store_crypto_seal(&s->crypto, NULL, aad, (size_t)n, keycheck_plain, sizeof(keycheck_plain), blob);
	if (rc) {
		seterr(s, "cannot encrypt the key check record");
		return rc;
	}
	sqlite3_stmt *st = NULL;
	rc = sqlite3_prepare_v2(s->db, "INSERT INTO meta(key, value) VALUES('key_check', ?1)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_blob(st, 1, blob, (int)sizeof(blob), SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? 0 : db_fail(s, rc, "cannot write the key check record");
}

/* Does the key open the store? STORE_E_KEY if not. Reads only. */
static int keycheck_verify(store *s, const char *key_file)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'key_check'", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(s, rc, "cannot read the key check record");
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_finalize(st);
		if (rc == SQLITE_DONE) {
			seterr(s, "the store %s has no key check record: it is damaged", s->db_path);
			return STORE_E_CORRUPT;
		}
		return db_fail(s, rc, "cannot read the key check record");
	}
	const uint8_t *blob = sqlite3_column_blob(st, 0);
	size_t len = (size_t)sqlite3_column_bytes(st, 0);
	uint8_t aad[3], plain[sizeof(keycheck_plain)];
	int n = keycheck_aad(aad);
	size_t plen = 0;
	if (len != sizeof(keycheck_plain) + STORE_BLOB_OVERHEAD)
		rc = STORE_E_CORRUPT;
	else
		rc = store_crypto_open(&s->crypto, aad, (size_t)n, blob, len, plain, &plen);
	sqlite3_finalize(st);
	if (rc == STORE_E_CORRUPT || (rc == 0 && memcmp(plain, keycheck_plain, sizeof(plain)) != 0)) {
		seterr(s, "the key in %s does not open the store %s (wrong key file?)", key_file, s->db_path);
		return STORE_E_KEY;
	}
	if (rc) {
		seterr(s, "cannot check the key of the store %s", s->db_path);
		return rc;
	}
	return 0;
}

static int schema_too_new(store *s, int64_t version)
{
	seterr(s, "store %s has schema version %lld; this program knows up to %d: upgrade fhir-redcap-bridge",
	       s->db_path, (long long)version, store_schema_version());
	return STORE_E_SCHEMA;
}

/*
 * Bring the schema from its current version to store_schema_version() in
 * one BEGIN IMMEDIATE transaction. seen_version is what open saw before
 * (another process may have migrated since; then its key check is verified
 * here before anything is written).
 */
static int migrate(store *s, int64_t seen_version, const char *key_file)
{
	int64_t version = 0;
	int rc = exec_sql(s, "BEGIN IMMEDIATE", "cannot start the schema transaction");
	if (rc)
		return rc;
	int src = pragma_int(s, "PRAGMA user_version", &version);
	if (src != SQLITE_OK) {
		rc = db_fail(s, src, "cannot read the schema version");
		goto fail;
	}
	if (version > store_schema_version()) {
		rc = schema_too_new(s, version);
		goto fail;
	}
	if (version >= 1 && seen_version == 0 && (rc = keycheck_verify(s, key_file)) != 0)
		goto fail;
	if (version == store_schema_version())
		return exec_sql(s, "COMMIT", "cannot commit the schema transaction");

	for (size_t i = 0; i < store_n_migrations; i++) {
		const store_migration *m = &store_migrations[i];
		if (m->version <= version)
			continue;
		char *msg = NULL;
		src = sqlite3_exec(s->db, m->sql, NULL, NULL, &msg);
		if (src == SQLITE_OK && m->fn)
			src = m->fn(s->db);
		if (src != SQLITE_OK) {
			seterr(s, "cannot upgrade the store %s to schema version %d (%s): %s", s->db_path, m->version,
			       m->what, msg ? msg : sqlite3_errstr(src));
			sqlite3_free(msg);
			rc = map_sqlite(src);
			goto fail;
		}
	}
	if (version == 0) {
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", STORE_APPLICATION_ID);
		if ((rc = keycheck_write(s)) != 0 || (rc = exec_sql(s, sql, "cannot set the application id")) != 0)
			goto fail;
	}
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", store_schema_version());
	if ((rc = exec_sql(s, sql, "cannot set the schema version")) != 0)
		goto fail;
	if ((rc = exec_sql(s, "COMMIT", "cannot commit the schema")) != 0)
		goto fail;
	return 0;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Does a store exist at path (a non-empty database file or WAL)? */
static int db_exists(store *s, bool *exists)
{
	struct stat st;
	*exists = false;
	if (stat(s->db_path, &st) == 0) {
		if (!S_ISREG(st.st_mode)) {
			seterr(s, "store %s is not a regular file", s->db_path);
			return STORE_E_DB;
		}
		if (st.st_size > 0) {
			*exists = true;
			return 0;
		}
	} else if (errno != ENOENT) {
		int rc = -errno;
		seterr(s, "cannot stat the store %s: %s", s->db_path, strerror(-rc));
		return rc;
	}
	size_t n = strlen(s->db_path);
	char *wal = malloc(n + 5);
	if (!wal)
		return oom(s);
	memcpy(wal, s->db_path, n);
	memcpy(wal + n, "-wal", 5);
	if (stat(wal, &st) == 0 && st.st_size > 0)
		*exists = true;
	free(wal);
	return 0;
}

/* Read the key; make one only if may_create (RW and nothing encrypted yet). */
static int load_key(store *s, const char *key_file, bool may_create, uint8_t key[STORE_KEY_LEN])
{
	int rc = store_key_load(key_file, key, s->errmsg, sizeof(s->errmsg));
	if (rc != -ENOENT)
		return rc;
	if (!may_create) {
		seterr(s, "key file %s is missing; the store %s was encrypted with another key", key_file,
		       s->db_path);
		return STORE_E_KEY;
	}
	/* A new store: make its key. */
	rc = store_key_generate(key_file, key, s->errmsg, sizeof(s->errmsg));
	if (rc == -EEXIST) /* someone else made it meanwhile: use theirs */
		rc = store_key_load(key_file, key, s->errmsg, sizeof(s->errmsg));
	if (rc == -ENOENT || rc == -EEXIST)
		rc = STORE_E_KEY;
	return rc;
}

/*
 * Open the SQLite file and look at it without writing: *version gets its
 * user_version. Refuses a schema newer than ours and files that are not our
 * stores (another application's database, not SQLite at all).
 */
static int db_open_inspect(store *s, int64_t *version)
{
	/* NOMUTEX: one connection per handle, never used by two threads at once (see
	 * store.h), so SQLite's per-call mutexes are pure overhead. */
	int flags = SQLITE_OPEN_NOMUTEX |
		    (s->mode == STORE_RO ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	int src = sqlite3_open_v2(s->db_path, &s->db, flags, NULL);
	if (src != SQLITE_OK) {
		if (!s->db)
			return oom(s);
		seterr(s, "cannot open the store %s: %s", s->db_path, sqlite3_errmsg(s->db));
		return map_sqlite(src);
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);

	int64_t app_id = 0, n_objects = 0;
	src = pragma_int(s, "PRAGMA user_version", version);
	if (src == SQLITE_OK)
		src = pragma_int(s, "PRAGMA application_id", &app_id);
	if (src != SQLITE_OK) {
		if ((src & 0xff) == SQLITE_NOTADB) {
			seterr(s, "%s is not a fhir-redcap-bridge store (not an SQLite database)", s->db_path);
			return STORE_E_DB;
		}
		return db_fail(s, src, "cannot read the store header");
	}
	if (*version > store_schema_version())
		return schema_too_new(s, *version);
	if ((app_id != 0 && app_id != STORE_APPLICATION_ID) || (*version > 0 && app_id != STORE_APPLICATION_ID)) {
		seterr(s, "%s is not a fhir-redcap-bridge store (SQLite application_id %lld)", s->db_path,
		       (long long)app_id);
		return STORE_E_DB;
	}
	if (*version == 0) {
		src = pragma_int(s, "SELECT count(*) FROM sqlite_schema", &n_objects);
		if (src != SQLITE_OK)
			return db_fail(s, src, "cannot read the store schema");
		if (n_objects > 0) {
			seterr(s, "%s is not a fhir-redcap-bridge store (it has tables but no schema version)",
			       s->db_path);
			return STORE_E_DB;
		}
	}
	return 0;
}

static int open_impl(store *s, const char *key_file)
{
	bool exists = false;
	int64_t version = 0;
	int rc = db_exists(s, &exists);
	if (rc)
		return rc;
	if (!exists && s->mode == STORE_RO) {
		seterr(s, "store %s does not exist", s->db_path);
		return STORE_E_NOTFOUND;
	}
	/* An existing file is looked at first: "not our store" beats key trouble. */
	if (exists && (rc = db_open_inspect(s, &version)) != 0)
		return rc;

	uint8_t key[STORE_KEY_LEN];
	/* An existing file at schema 0 passed db_open_inspect: it holds no table, nothing encrypted. */
	rc = load_key(s, key_file, s->mode == STORE_RW && (!exists || version == 0), key);
	if (rc == 0)
		rc = store_crypto_init(&s->crypto, key);
	OPENSSL_cleanse(key, sizeof(key));
	if (rc) {
		if (rc < 0 && !s->errmsg[0])
			seterr(s, "cannot set up encryption: %s", strerror(-rc));
		return rc;
	}
	/* A new store is created only once its key is in place. */
	if (!exists && (rc = db_open_inspect(s, &version)) != 0)
		return rc;
	if (version >= 1 && (rc = keycheck_verify(s, key_file)) != 0)
		return rc;

	if (s->mode == STORE_RO) {
		if (version < store_schema_version()) {
			seterr(s,
			       "store %s has schema version %lld; this program needs %d: open it read-write once "
			       "(e.g. run `sync`) to upgrade it",
			       s->db_path, (long long)version, store_schema_version());
			return STORE_E_SCHEMA;
		}
		return exec_sql(s, "PRAGMA query_only = 1; PRAGMA cache_size = -16384", "cannot set up the store");
	}

	if (version == 0) {
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA page_size = %d", STORE_PAGE_SIZE);
		if ((rc = exec_sql(s, sql, "cannot set the page size")) != 0)
			return rc;
	}
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
	if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *jm = (const char *)sqlite3_column_text(st, 0);
		src = jm && strcmp(jm, "wal") == 0 ? SQLITE_OK : SQLITE_CANTOPEN;
		if (src != SQLITE_OK)
			seterr(s, "cannot switch the store %s to WAL mode (journal mode is %s)", s->db_path,
			       jm ? jm : "unknown");
	}
	sqlite3_finalize(st);
	if (src == SQLITE_CANTOPEN)
		return STORE_E_DB;
	if (src != SQLITE_OK)
		return db_fail(s, src, "cannot switch to WAL mode");
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -%d;"
		 " PRAGMA wal_autocheckpoint = %d; PRAGMA journal_size_limit = %d",
		 STORE_CACHE_KIB, STORE_WAL_AUTOCHECKPOINT, STORE_JOURNAL_SIZE_LIMIT);
	if ((rc = exec_sql(s, sql, "cannot set up the store")) != 0)
		return rc;
	return migrate(s, version, key_file);
}

/* Process-wide SQLite settings, before SQLite initialises: no memory
 * statistics (they take a global mutex on every allocation, ~4% of a pull).
 * Fails harmlessly if the program already used SQLite. */
static void sqlite_setup_once(void)
{
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int store_open(store **out, const char *db_path, const char *key_file, store_mode mode, char *err, size_t err_size)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, sqlite_setup_once);
	*out = NULL;
	if (err && err_size)
		err[0] = '\0';
	if (!db_path || !*db_path || !key_file || !*key_file || (mode != STORE_RW && mode != STORE_RO)) {
		if (err && err_size)
			snprintf(err, err_size, "store_open: missing store path or key file");
		return -EINVAL;
	}
	store *s = calloc(1, sizeof(*s));
	if (!s) {
		if (err && err_size)
			snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	s->mode = mode;
	s->db_path = strdup(db_path);
	int rc = s->db_path ? open_impl(s, key_file) : oom(s);
	if (rc) {
		if (err && err_size)
			snprintf(err, err_size, "%s", s->errmsg[0] ? s->errmsg : "cannot open the store");
		store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void store_close(store *s)
{
	if (!s)
		return;
	if (s->db && in_txn(s))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	store__outbox_free(s);
	for (size_t i = 0; i < ST__N; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close_v2(s->db); /* the last connection checkpoints and removes the WAL */
	store_crypto_deinit(&s->crypto);
	caches_clear(s);
	names_free(&s->types);
	buf_free(&s->pat_name);
	buf_free(&s->blob);
	buf_free(&s->aad);
	free(s->db_path);
	free(s);
}

const char *store_errmsg(const store *s)
{
	return s ? s->errmsg : "no store";
}

int store_set_busy_timeout(store *s, int ms)
{
	int rc = sqlite3_busy_timeout(s->db, ms < 0 ? 0 : ms);
	return rc == SQLITE_OK ? 0 : db_fail(s, rc, "cannot set the busy timeout");
}

/* ---- transactions ------------------------------------------------------- */

int store_begin(store *s)
{
	sqlite3_stmt *st;
	int rc = check_writable(s, "store_begin");
	if (rc)
		return rc;
	if (in_txn(s)) {
		seterr(s, "store_begin: a transaction is already open");
		return -EALREADY;
	}
	if ((rc = stmt_get(s, ST_BEGIN, &st)) != 0)
		return rc;
	if ((rc = stmt_exec(s, st, "cannot begin a transaction")) != 0)
		return rc;
	s->txn_time = (int64_t)time(NULL);
	return 0;
}

int store_commit(store *s)
{
	sqlite3_stmt *st;
	if (!in_txn(s)) {
		seterr(s, "store_commit: no transaction is open");
		return -EINVAL;
	}
	int rc = stmt_get(s, ST_COMMIT, &st);
	if (!rc)
		rc = stmt_exec(s, st, "cannot commit");
	if (rc && !in_txn(s))
		caches_clear(s); /* SQLite rolled it back */
	return rc;
}

int store_rollback(store *s)
{
	sqlite3_stmt *st;
	caches_clear(s);
	if (!in_txn(s))
		return 0;
	int rc = stmt_get(s, ST_ROLLBACK, &st);
	return rc ? rc : stmt_exec(s, st, "cannot roll back");
}

/* Run fn inside the caller's transaction, or in its own if none is open. */
static int with_txn(store *s, int (*fn)(store *s, void *ud), void *ud)
{
	if (in_txn(s))
		return fn(s, ud);
	int rc = store_begin(s);
	if (rc)
		return rc;
	rc = fn(s, ud);
	if (rc == 0)
		rc = store_commit(s);
	if (rc) {
		char keep[sizeof(s->errmsg)];
		memcpy(keep, s->errmsg, sizeof(keep));
		store_rollback(s);
		memcpy(s->errmsg, keep, sizeof(keep));
	}
	return rc;
}

/* ---- servers, types, patients ------------------------------------------ */

int store_server_id(store *s, const char *base_url, int64_t *id)
{
	sqlite3_stmt *st;
	if (!base_url || !*base_url) {
		seterr(s, "store_server_id: empty base URL");
		return -EINVAL;
	}
	int rc = stmt_get(s, ST_SERVER_GET, &st);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, base_url, -1, SQLITE_STATIC);
	bool found = false;
	if ((rc = stmt_int(s, st, "cannot look up the server", &found, id)) != 0 || found)
		return rc;
	if (s->mode == STORE_RO) {
		seterr(s, "the store %s has no data from this server yet", s->db_path);
		return STORE_E_NOTFOUND;
	}
	if ((rc = stmt_get(s, ST_SERVER_ADD, &st)) != 0)
		return rc;
	sqlite3_bind_text(st, 1, base_url, -1, SQLITE_STATIC);
	if ((rc = stmt_exec(s, st, "cannot add the server")) != 0)
		return rc;
	*id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

/* The id of a type name; create it if `create`, else STORE_E_NOTFOUND. */
static int type_id(store *s, const char *name, bool create, int64_t *id)
{
	if (names_find(&s->types, name, id))
		return 0;
	sqlite3_stmt *st;
	bool found = false;
	int rc = stmt_get(s, ST_TYPE_GET, &st);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if ((rc = stmt_int(s, st, "cannot look up a resource type", &found, id)) != 0)
		return rc;
	if (!found) {
		if (!create) {
			seterr(s, "no %s resources in the store", name);
			return STORE_E_NOTFOUND;
		}
		if ((rc = stmt_get(s, ST_TYPE_ADD, &st)) != 0)
			return rc;
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		if ((rc = stmt_exec(s, st, "cannot add a resource type")) != 0)
			return rc;
		*id = sqlite3_last_insert_rowid(s->db);
	}
	return names_add(s, &s->types, name, *id);
}

/* The interned id of (server, patient); made if create, else STORE_E_NOTFOUND. */
static int patient_id(store *s, int64_t server, const char *patient, bool create, int64_t *id)
{
	size_t len = strlen(patient);
	if (s->pat_valid && s->pat_server == server && strcmp((const char *)s->pat_name.p, patient) == 0) {
		*id = s->pat_id;
		return 0;
	}
	sqlite3_stmt *st;
	int rc = stmt_get(s, ST_PATIENT_GET, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, server);
	sqlite3_bind_text(st, 2, patient, (int)len, SQLITE_STATIC);
	bool found = false;
	if ((rc = stmt_int(s, st, "cannot look up a patient", &found, id)) != 0)
		return rc;
	if (!found) {
		if (!create) {
			seterr(s, "no such patient in the store");
			return STORE_E_NOTFOUND;
		}
		if ((rc = stmt_get(s, ST_PATIENT_ADD, &st)) != 0)
			return rc;
		sqlite3_bind_int64(st, 1, server);
		sqlite3_bind_text(st, 2, patient, (int)len, SQLITE_STATIC);
		if ((rc = stmt_exec(s, st, "cannot add a patient")) != 0)
			return rc;
		*id = sqlite3_last_insert_rowid(s->db);
	}
	s->pat_valid = false;
	if (buf_reserve(&s->pat_name, len + 1) == 0) {
		memcpy(s->pat_name.p, patient, len + 1);
		s->pat_server = server;
		s->pat_id = *id;
		s->pat_valid = true;
	}
	return 0;
}

/* ---- resources ---------------------------------------------------------- */

typedef struct put_args {
	int64_t server;
	const store_resource *r;
	const char *version_id, *last_updated, *patient;
	int *is_new;
} put_args;

/* Seal the body into s->blob for the row (server, type, id, version_id). */
static int seal_body(store *s, const put_args *a, size_t *blob_len)
{
	size_t aad_len = 0;
	int rc = aad_body(s, a->server, a->r->type, a->r->id, a->version_id, &aad_len);
	if (rc)
		return rc;
	size_t n = a->r->body_len + STORE_BLOB_OVERHEAD;
	if (buf_reserve(&s->blob, n) != 0)
		return oom(s);
	rc = store_crypto_seal(&s->crypto, NULL, s->aad.p, aad_len, a->r->body, a->r->body_len, s->blob.p);
	if (rc) {
		seterr(s, "cannot encrypt a resource body");
		return rc;
	}
	*blob_len = n;
	return 0;
}

static void bind_lu(sqlite3_stmt *st, int i, bool has_lu, int64_t lu)
{
	if (has_lu)
		sqlite3_bind_int64(st, i, lu);
	else
		sqlite3_bind_null(st, i);
}

static void bind_patient(sqlite3_stmt *st, int i, bool has, int64_t pid)
{
	if (has)
		sqlite3_bind_int64(st, i, pid);
	else
		sqlite3_bind_null(st, i);
}

/* Record (rid, version, body hash) as seen; sqlite3_changes() then tells
 * whether it was new (ON CONFLICT DO NOTHING). */
static int version_insert(store *s, const put_args *a, int64_t rid, int64_t tid, const uint8_t *bh,
			  size_t bh_len)
{
	sqlite3_stmt *st;
	int rc = stmt_get(s, ST_VER_INSERT, &st);
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(st, 1, rid);
	sqlite3_bind_text(st, 2, a->version_id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, bh, (int)bh_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, tid);
	sqlite3_bind_text(st, 5, a->last_updated, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, s->txn_time);
	return stmt_exec(s, st, "cannot record a resource version");
}

/*
 * Mark the interned patient pid as waiting for curation. A patient already
 * waiting costs one probe of the UNIQUE(patient) index and no write.
 */
static int wait_mark(store *s, int64_t pid)
{
	sqlite3_stmt *st = NULL;
	int rc = stmt_get(s, ST_WAIT_MARK, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	return stmt_exec(s, st, "cannot mark a patient for curation");
}

static int put_impl(store *s, void *ud)
{
	const put_args *a = ud;
	const store_resource *r = a->r;
	sqlite3_stmt *st;
	int64_t tid = 0, rid = 0, stored_lu = 0, lu = 0, pid = 0, stored_pid = 0;
	bool found = false, stored_has_lu = false, stored_has_pid = false;
	uint8_t bh[STORE_BODY_HASH_LEN];
	size_t bh_len = 0, blob_len = 0;
	int rc, src;

	if ((rc = type_id(s, r->type, true, &tid)) != 0)
		return rc;
	int64_t kh = key_hash(s, a->server, tid, r->id);
	bool has_lu = store_instant_parse(a->last_updated, &lu) == 0;
	if (!a->version_id[0]) {
		if (store_crypto_body_hash(&s->crypto, r->body, r->body_len, bh) != 0) {
			seterr(s, "cannot hash a resource body");
			return -EIO;
		}
		bh_len = sizeof(bh);
	}

	if ((rc = stmt_get(s, ST_RES_LOOKUP, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, kh);
	sqlite3_bind_int64(st, 2, a->server);
	sqlite3_bind_int64(st, 3, tid);
	sqlite3_bind_text(st, 4, r->id, -1, SQLITE_STATIC);
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		found = true;
		rid = sqlite3_column_int64(st, 0);
		stored_has_lu = sqlite3_column_type(st, 1) != SQLITE_NULL;
		stored_lu = sqlite3_column_int64(st, 1);
		stored_has_pid = sqlite3_column_type(st, 2) != SQLITE_NULL;
		stored_pid = sqlite3_column_int64(st, 2);
	}
	stmt_done(st);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return db_fail(s, src, "cannot look up a resource");

	bool has_pid = a->patient[0] != '\0';
	if (found) {
		/* Seen this version before? Then nothing to do. */
		if ((rc = version_insert(s, a, rid, tid, bh, bh_len)) != 0)
			return rc;
		if (sqlite3_changes(s->db) == 0)
			return 0;
		*a->is_new = 1;
		if (has_pid && ((rc = patient_id(s, a->server, a->patient, true, &pid)) != 0 ||
				(rc = wait_mark(s, pid)) != 0))
			return rc;
		/* A version older than the stored body is recorded, the body kept. */
		if (stored_has_lu && has_lu && stored_lu > lu)
			return 0;
		/* The resource moved to another patient: the one it left changes too. */
		if (stored_has_pid && (!has_pid || stored_pid != pid) && (rc = wait_mark(s, stored_pid)) != 0)
			return rc;
		if ((rc = seal_body(s, a, &blob_len)) != 0)
			return rc;
		if ((rc = stmt_get(s, ST_RES_UPDATE, &st)) != 0)
			return rc;
		sqlite3_bind_int64(st, 1, rid);
		sqlite3_bind_text(st, 2, a->version_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, a->last_updated, -1, SQLITE_STATIC);
		bind_lu(st, 4, has_lu, lu);
		bind_patient(st, 5, has_pid, pid);
		sqlite3_bind_blob(st, 6, s->blob.p, (int)blob_len, SQLITE_STATIC);
		return stmt_exec(s, st, "cannot update a resource");
	}

	if (has_pid && ((rc = patient_id(s, a->server, a->patient, true, &pid)) != 0 ||
			(rc = wait_mark(s, pid)) != 0))
		return rc;
	if ((rc = seal_body(s, a, &blob_len)) != 0)
		return rc;
	if ((rc = stmt_get(s, ST_RES_INSERT, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, a->server);
	sqlite3_bind_int64(st, 2, tid);
	sqlite3_bind_int64(st, 3, kh);
	sqlite3_bind_text(st, 4, r->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, a->version_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, a->last_updated, -1, SQLITE_STATIC);
	bind_lu(st, 7, has_lu, lu);
	bind_patient(st, 8, has_pid, pid);
	sqlite3_bind_blob(st, 9, s->blob.p, (int)blob_len, SQLITE_STATIC);
	if ((rc = stmt_exec(s, st, "cannot store a resource")) != 0)
		return rc;
	rid = sqlite3_last_insert_rowid(s->db);
	if ((rc = version_insert(s, a, rid, tid, bh, bh_len)) != 0)
		return rc;
	*a->is_new = 1;
	return 0;
}

int store_put_resource(store *s, int64_t server, const store_resource *r, int *is_new)
{
	int dummy = 0;
	if (!is_new)
		is_new = &dummy;
	*is_new = 0;
	int rc = check_writable(s, "store_put_resource");
	if (rc)
		return rc;
	if (!r || !r->type || !r->type[0] || !r->id || !r->id[0] || server <= 0 || (!r->body && r->body_len)) {
		seterr(s, "store_put_resource: a resource needs a server, a type and an id");
		return -EINVAL;
	}
	const char *const keys[] = { r->type, r->id, r->version_id, r->last_updated, r->patient };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (keys[i] && strnlen(keys[i], STORE_MAX_KEY_LEN + 1) > STORE_MAX_KEY_LEN) {
			seterr(s, "store_put_resource: a type, id, versionId, lastUpdated or patient longer than %d bytes",
			       STORE_MAX_KEY_LEN);
			return -EINVAL;
		}
	}
	int limit = sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, -1);
	if (r->body_len > (size_t)limit - STORE_BLOB_OVERHEAD) {
		seterr(s, "a %s resource of %zu bytes is larger than the store takes (%d bytes)", r->type,
		       r->body_len, limit - STORE_BLOB_OVERHEAD);
		return -EFBIG;
	}
	put_args a = {
		.server = server,
		.r = r,
		.version_id = r->version_id ? r->version_id : "",
		.last_updated = r->last_updated ? r->last_updated : "",
		.patient = r->patient ? r->patient : "",
		.is_new = is_new,
	};
	bool outer = in_txn(s);
	if (outer && s->txn_time == 0)
		s->txn_time = (int64_t)time(NULL);
	rc = with_txn(s, put_impl, &a);
	if (rc) {
		*is_new = 0;
		if (outer && !in_txn(s))
			caches_clear(s); /* SQLite rolled the transaction back */
	}
	return rc;
}

/* Open the blob of (server, type, id, version_id) into a new NUL-terminated buffer. */
static int open_body(store *s, int64_t server, const char *type, const char *id, const char *version_id,
		     const uint8_t *blob, size_t blob_len, store_buf *out, size_t *len)
{
	size_t aad_len = 0;
	int rc = aad_body(s, server, type, id, version_id, &aad_len);
	if (rc)
		return rc;
	size_t n = blob_len >= STORE_BLOB_OVERHEAD ? blob_len - STORE_BLOB_OVERHEAD : 0;
	if (buf_reserve(out, n + 1) != 0)
		return oom(s);
	rc = store_crypto_open(&s->crypto, s->aad.p, aad_len, blob, blob_len, out->p, len);
	if (rc == STORE_E_CORRUPT) {
		seterr(s, "a stored %s body failed authentication: the store %s is damaged or was tampered with",
		       type, s->db_path);
		return rc;
	}
	if (rc) {
		seterr(s, "cannot decrypt a stored %s body", type);
		return rc;
	}
	out->p[*len] = '\0';
	return 0;
}

int store_get_resource(store *s, int64_t server, const char *type, const char *id, char **body, size_t *len,
		       char *version_id, size_t version_id_size)
{
	sqlite3_stmt *st;
	int64_t tid = 0;
	*body = NULL;
	*len = 0;
	if (server <= 0 || !type || !*type || !id || !*id) {
		seterr(s, "store_get_resource: a server, a type and an id are needed");
		return -EINVAL;
	}
	int rc = type_id(s, type, false, &tid);
	if (rc == STORE_E_NOTFOUND)
		seterr(s, "%s/%s is not in the store", type, id);
	if (rc)
		return rc;
	if ((rc = stmt_get(s, ST_RES_GET, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, key_hash(s, server, tid, id));
	sqlite3_bind_int64(st, 2, server);
	sqlite3_bind_int64(st, 3, tid);
	sqlite3_bind_text(st, 4, id, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	if (src != SQLITE_ROW) {
		stmt_done(st);
		if (src == SQLITE_DONE) {
			seterr(s, "%s/%s is not in the store", type, id);
			return STORE_E_NOTFOUND;
		}
		return db_fail(s, src, "cannot read a resource");
	}
	const char *vid = (const char *)sqlite3_column_text(st, 0);
	const uint8_t *blob = sqlite3_column_blob(st, 1);
	size_t blob_len = (size_t)sqlite3_column_bytes(st, 1);
	if (!vid)
		vid = "";
	store_buf out = { 0 };
	if (version_id && version_id_size) {
		if (strlen(vid) >= version_id_size) {
			stmt_done(st);
			seterr(s, "store_get_resource: the versionId does not fit the caller's buffer");
			return -ENOBUFS;
		}
	}
	rc = open_body(s, server, type, id, vid, blob, blob_len, &out, len);
	if (rc == 0 && version_id && version_id_size)
		memcpy(version_id, vid, strlen(vid) + 1);
	stmt_done(st);
	if (rc) {
		buf_free(&out);
		*len = 0;
		return rc;
	}
	*body = (char *)out.p;
	return 0;
}

/*
 * Hand each row of st to cb, then finalize st. The columns: type, id,
 * versionId, lastUpdated, patient, server and the body blob, opened here
 * when want_body. what names the listing in errors. Returns 0, the first
 * non-zero answer of cb, or an error.
 */
static int foreach_row(store *s, sqlite3_stmt *st, bool want_body, store_resource_cb cb, void *ud, const char *what)
{
	store_buf plain = { 0 };
	int rc = 0, src;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		const char *id = (const char *)sqlite3_column_text(st, 1);
		const char *vid = (const char *)sqlite3_column_text(st, 2);
		const char *lu = (const char *)sqlite3_column_text(st, 3);
		const char *pat = (const char *)sqlite3_column_text(st, 4);
		int64_t srv = sqlite3_column_int64(st, 5);
		if (!t || !id) {
			rc = sqlite3_errcode(s->db) == SQLITE_NOMEM ? oom(s) : STORE_E_DB;
			if (rc == STORE_E_DB)
				seterr(s, "a resource row without type or id in the store %s", s->db_path);
			break;
		}
		const char *body = NULL;
		size_t body_len = 0;
		if (want_body) {
			const uint8_t *blob = sqlite3_column_blob(st, 6);
			size_t blob_len = (size_t)sqlite3_column_bytes(st, 6);
			rc = open_body(s, srv, t, id, vid ? vid : "", blob, blob_len, &plain, &body_len);
			if (rc)
				break;
			body = (const char *)plain.p;
		}
		rc = cb(ud, t, id, vid ? vid : "", lu ? lu : "", pat ? pat : "", body, body_len);
		if (rc)
			break;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = db_fail(s, src, what);
	sqlite3_finalize(st);
	if (plain.p)
		OPENSSL_cleanse(plain.p, plain.cap);
	buf_free(&plain);
	return rc;
}

int store_foreach_resource(store *s, int64_t server, const char *type, int want_body, store_resource_cb cb,
			   void *ud)
{
	char sql[768];
	snprintf(sql, sizeof(sql),
		 "SELECT t.name, r.id, r.version_id, r.last_updated, p.patient, r.server, %s"
		 " FROM resources r JOIN types t ON t.id = r.type LEFT JOIN patients p ON p.id = r.patient"
		 " WHERE %s AND %s ORDER BY r.id, r.server",
		 want_body ? "r.body" : "NULL", server > 0 ? "r.server = ?1" : "?1 IS NOT NULL",
		 type ? "t.name = ?2" : "?2 IS NULL");
	sqlite3_stmt *st = NULL;
	int rc = prepare(s, sql, &st, "cannot list resources");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, server);
	if (type)
		sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 2);
	return foreach_row(s, st, want_body, cb, ud, "cannot list resources");
}

/* ---- cursors ------------------------------------------------------------ */

void store_cursor_deinit(store_cursor *c)
{
	if (!c)
		return;
	free(c->next_url);
	c->next_url = NULL;
}

/* Copy a column into a fixed field; too long is corruption unless truncate. */
static int copy_field(store *s, char *dst, size_t size, const char *src, const char *what, bool truncate)
{
	size_t n = src ? strlen(src) : 0;
	if (n >= size) {
		if (!truncate) {
			seterr(s, "cursor field %s in the store %s is longer than %zu bytes", what, s->db_path,
			       size - 1);
			return STORE_E_CORRUPT;
		}
		n = utf8_prefix(src, n, size - 1);
	}
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

int store_cursor_get(store *s, int64_t server, const char *type, store_cursor *c)
{
	sqlite3_stmt *st;
	memset(c, 0, sizeof(*c));
	if (!type || !*type) {
		seterr(s, "store_cursor_get: no type");
		return -EINVAL;
	}
	int rc = stmt_get(s, ST_CURSOR_GET, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, server);
	sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		const char *next = (const char *)sqlite3_column_text(st, 2);
		rc = copy_field(s, c->watermark, sizeof(c->watermark), (const char *)sqlite3_column_text(st, 0),
				"watermark", false);
		if (!rc)
			rc = copy_field(s, c->crawl_started, sizeof(c->crawl_started),
					(const char *)sqlite3_column_text(st, 1), "crawl_started", false);
		if (!rc)
			rc = copy_field(s, c->last_success, sizeof(c->last_success),
					(const char *)sqlite3_column_text(st, 4), "last_success", false);
		if (!rc)
			rc = copy_field(s, c->last_error, sizeof(c->last_error),
					(const char *)sqlite3_column_text(st, 5), "last_error", true);
		c->pages = sqlite3_column_int64(st, 3);
		if (!rc && next && !(c->next_url = strdup(next)))
			rc = oom(s);
	} else if (src != SQLITE_DONE) {
		rc = db_fail(s, src, "cannot read a cursor");
	}
	stmt_done(st);
	if (rc) {
		store_cursor_deinit(c);
		memset(c, 0, sizeof(*c));
	}
	return rc;
}

static bool field_ok(const char *f, size_t size)
{
	return memchr(f, '\0', size) != NULL;
}

int store_cursor_put(store *s, int64_t server, const char *type, const store_cursor *c)
{
	sqlite3_stmt *st;
	int rc = check_writable(s, "store_cursor_put");
	if (rc)
		return rc;
	if (!type || !*type || server <= 0 || !c || !field_ok(c->watermark, sizeof(c->watermark)) ||
	    !field_ok(c->crawl_started, sizeof(c->crawl_started)) ||
	    !field_ok(c->last_success, sizeof(c->last_success)) || !field_ok(c->last_error, sizeof(c->last_error))) {
		seterr(s, "store_cursor_put: bad arguments (no type, or a field not NUL-terminated)");
		return -EINVAL;
	}
	if ((rc = stmt_get(s, ST_CURSOR_PUT, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, server);
	sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, c->watermark, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, c->crawl_started, -1, SQLITE_STATIC);
	if (c->next_url)
		sqlite3_bind_text(st, 5, c->next_url, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 5);
	sqlite3_bind_int64(st, 6, c->pages);
	sqlite3_bind_text(st, 7, c->last_success, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, c->last_error, -1, SQLITE_STATIC);
	return stmt_exec(s, st, "cannot write a cursor");
}

int store_cursor_set_error(store *s, int64_t server, const char *type, const char *msg)
{
	sqlite3_stmt *st;
	int rc = check_writable(s, "store_cursor_set_error");
	if (rc)
		return rc;
	if (!type || !*type || server <= 0) {
		seterr(s, "store_cursor_set_error: bad arguments");
		return -EINVAL;
	}
	if (!msg)
		msg = "";
	/* Kept to what store_cursor_get() can return. */
	size_t n = utf8_prefix(msg, strlen(msg), sizeof(((store_cursor *)0)->last_error) - 1);
	if ((rc = stmt_get(s, ST_CURSOR_ERROR, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, server);
	sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, msg, (int)n, SQLITE_STATIC);
	/* A single statement is atomic: outside a transaction it commits itself. */
	return stmt_exec(s, st, "cannot record a cursor error");
}

/* ---- status ------------------------------------------------------------- */

/* A JSON string of possibly invalid UTF-8 (bad bytes become '?'). */
static json_t *jstr(const char *str)
{
	if (!str)
		str = "";
	json_t *j = json_string(str);
	if (j)
		return j;
	char *copy = strdup(str);
	if (!copy)
		return NULL;
	for (size_t i = 0; copy[i]; i++)
		if ((unsigned char)copy[i] >= 0x80)
			copy[i] = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static int status_counts(store *s, const char *sql, json_t *obj)
{
	sqlite3_stmt *st = NULL;
	int src, rc = prepare(s, sql, &st, "cannot read the status");
	if (rc)
		return rc;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		if (!name || json_object_set_new(obj, name, json_integer(sqlite3_column_int64(st, 1))) != 0) {
			sqlite3_finalize(st);
			return oom(s);
		}
	}
	sqlite3_finalize(st);
	return src == SQLITE_DONE ? 0 : db_fail(s, src, "cannot read the status");
}

/* Append the cursors to arr; *last_sync gets the latest last_success (new reference) or stays NULL. */
static int status_cursors(store *s, json_t *arr, json_t **last_sync)
{
	sqlite3_stmt *st = NULL;
	int src, rc = prepare(s,
			      "SELECT sv.base_url, c.type, c.watermark, c.next_url IS NOT NULL, c.pages,"
			      " c.last_success, c.last_error"
			      " FROM cursors c JOIN servers sv ON sv.id = c.server ORDER BY sv.base_url, c.type",
			      &st, "cannot read the cursors");
	if (rc)
		return rc;
	bool have_last = false;
	int64_t last_us = 0;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		bool in_progress = sqlite3_column_int(st, 3) != 0;
		const char *ls = (const char *)sqlite3_column_text(st, 5);
		json_t *o = json_object();
		/* json_object_set_new() consumes the value even when it fails. */
		if (!o || json_array_append_new(arr, o) != 0 ||
		    json_object_set_new(o, "server", jstr((const char *)sqlite3_column_text(st, 0))) != 0 ||
		    json_object_set_new(o, "type", jstr((const char *)sqlite3_column_text(st, 1))) != 0 ||
		    json_object_set_new(o, "watermark", jstr((const char *)sqlite3_column_text(st, 2))) != 0 ||
		    json_object_set_new(o, "crawl_in_progress", json_boolean(in_progress)) != 0 ||
		    json_object_set_new(o, "pages_in_progress",
					json_integer(in_progress ? sqlite3_column_int64(st, 4) : 0)) != 0 ||
		    json_object_set_new(o, "last_success", jstr(ls)) != 0 ||
		    json_object_set_new(o, "last_error", jstr((const char *)sqlite3_column_text(st, 6))) != 0) {
			sqlite3_finalize(st);
			return oom(s);
		}
		int64_t us;
		if (ls && store_instant_parse(ls, &us) == 0 && (!have_last || us > last_us)) {
			have_last = true;
			last_us = us;
			json_decref(*last_sync);
			*last_sync = jstr(ls); /* ls dies at the next step: copy now */
			if (!*last_sync) {
				sqlite3_finalize(st);
				return oom(s);
			}
		}
	}
	sqlite3_finalize(st);
	return src == SQLITE_DONE ? 0 : db_fail(s, src, "cannot read the cursors");
}

json_t *store_status_json(store *s)
{
	int64_t version = 0;
	json_t *root = json_object(), *res = json_object(), *ver = json_object(), *cur = json_array();
	json_t *last = NULL, *downtime = NULL;
	bool own = false;
	int rc = 0;

	if (!root || !res || !ver || !cur) {
		rc = oom(s);
		goto out;
	}
	if ((rc = snapshot_begin(s, "cannot read the status", &own)) != 0)
		goto out;
	int src = pragma_int(s, "PRAGMA user_version", &version);
	if (src != SQLITE_OK) {
		rc = db_fail(s, src, "cannot read the schema version");
		goto out;
	}
	if ((rc = status_counts(s,
				"SELECT t.name, count(*) FROM resources r JOIN types t ON t.id = r.type"
				" GROUP BY r.type ORDER BY t.name",
				res)) != 0 ||
	    (rc = status_counts(s,
				"SELECT t.name, count(*) FROM resource_versions v JOIN types t ON t.id = v.type"
				" GROUP BY v.type ORDER BY t.name",
				ver)) != 0 ||
	    (rc = status_cursors(s, cur, &last)) != 0)
		goto out;
	if (!(downtime = store_chart_counts(s))) {
		rc = STORE_E_DB; /* the message is set */
		goto out;
	}
	/* Each set_new consumes its value, success or not. */
	int bad = json_object_set_new(root, "schema", json_integer(version));
	bad |= json_object_set_new(root, "resources", res);
	bad |= json_object_set_new(root, "versions", ver);
	bad |= json_object_set_new(root, "cursors", cur);
	bad |= json_object_set_new(root, "last_sync", last ? last : json_null());
	bad |= json_object_set_new(root, "downtime", downtime);
	res = ver = cur = last = downtime = NULL;
	if (bad)
		rc = oom(s);
out:
	snapshot_end(s, own);
	json_decref(res);
	json_decref(ver);
	json_decref(cur);
	json_decref(last);
	json_decref(downtime);
	if (rc) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/* ---- lent to outbox.c (store-internal.h) -------------------------------- */

void store__seterr(store *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
}

int store__db_fail(store *s, int rc, const char *what)
{
	return db_fail(s, rc, what);
}

int store__oom(store *s)
{
	return oom(s);
}

int store__stmt_cached(store *s, sqlite3_stmt **slot, const char *sql, sqlite3_stmt **out)
{
	return stmt_cached(s, slot, sql, out);
}

int store__prepare(store *s, const char *sql, sqlite3_stmt **st, const char *what)
{
	return prepare(s, sql, st, what);
}

int store__exec_once(store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_fail(s, rc, what);
}

void store__stmt_done(sqlite3_stmt *st)
{
	stmt_done(st);
}

int store__stmt_exec(store *s, sqlite3_stmt *st, const char *what)
{
	return stmt_exec(s, st, what);
}

int store__stmt_int(store *s, sqlite3_stmt *st, const char *what, bool *found, int64_t *v)
{
	return stmt_int(s, st, what, found, v);
}

int store__foreach_row(store *s, sqlite3_stmt *st, store_resource_cb cb, void *ud, const char *what)
{
	return foreach_row(s, st, true, cb, ud, what);
}

int store__snapshot_begin(store *s, const char *what, bool *own)
{
	return snapshot_begin(s, what, own);
}

void store__snapshot_end(store *s, bool own)
{
	snapshot_end(s, own);
}

size_t store__utf8_prefix(const char *str, size_t len, size_t max)
{
	return utf8_prefix(str, len, max);
}

bool store__names_find(store_names *c, const char *name, int64_t *id)
{
	return names_find(c, name, id);
}

int store__names_add(store *s, store_names *c, const char *name, int64_t id)
{
	return names_add(s, c, name, id);
}

void store__names_forget(store_names *c)
{
	names_forget(c);
}

void store__names_free(store_names *c)
{
	names_free(c);
}

int store__buf_reserve(store_buf *b, size_t n)
{
	return buf_reserve(b, n);
}

void store__buf_free(store_buf *b)
{
	buf_free(b);
}

json_t *store__jstr(const char *str)
{
	return jstr(str);
}

int64_t store__now(const store *s)
{
	return in_txn(s) && s->txn_time ? s->txn_time : (int64_t)time(NULL);
}

int store__write(store *s, const char *what, int (*fn)(store *s, void *ud), void *ud)
{
	int rc = check_writable(s, what);
	if (rc)
		return rc;
	bool outer = in_txn(s);
	if (outer && s->txn_time == 0)
		s->txn_time = (int64_t)time(NULL);
	rc = with_txn(s, fn, ud);
	if (rc && outer && !in_txn(s))
		caches_clear(s); /* SQLite rolled the transaction back */
	return rc;
}

int store__patient_id(store *s, int64_t server, const char *patient, bool create, int64_t *id)
{
	return patient_id(s, server, patient, create, id);
}

int store__open_body(store *s, int64_t server, const char *type, const char *id, const char *version_id,
		     const uint8_t *blob, size_t blob_len, store_buf *out, size_t *len)
{
	return open_body(s, server, type, id, version_id, blob, blob_len, out, len);
}
