/*
 * offline-store/ — the local SQLite store (WAL): resources with their
 * versions, crawl cursors, sync runs. Resource bodies are encrypted at rest
 * with AES-256-GCM under a 256-bit key read from a key file.
 *
 * The store never includes fhir/ or redcap/ headers nor libuv/libcurl: it
 * takes plain values. All calls are synchronous and on one thread.
 *
 * Return convention: 0 ok; negative errno (-ENOMEM, -EIO); positive STORE_E_*
 * for conditions the caller must report. Every failing call leaves a
 * human-readable reason in store_errmsg(). No PHI appears in messages.
 *
 * Durability: WAL with synchronous=NORMAL. A committed transaction survives
 * the process being killed (kill -9) at any point; after a power loss or a
 * kernel crash the last committed transactions may be missing (never half
 * applied). See the top of store.c.
 *
 * A store handle is used by one thread at a time (it may move between
 * threads, e.g. a libuv worker, as long as calls never overlap).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct store store;

enum {
	STORE_E_KEY = 1,        /* key file missing/unreadable/bad format/too open, or wrong key */
	STORE_E_SCHEMA,         /* database schema newer than this program knows */
	STORE_E_DB,             /* SQLite error (message has the detail) */
	STORE_E_CORRUPT,        /* a ciphertext failed authentication */
	STORE_E_NOTFOUND,
	STORE_E_BUSY,           /* locked by another writer for longer than the busy timeout */
};

typedef enum store_mode {
	STORE_RW = 0,   /* create if missing, migrate */
	STORE_RO = 1,   /* read only, never creates; for `status` next to a running daemon */
} store_mode;

/*
 * Open (and in RW mode create and migrate) the store at db_path with the key
 * in key_file. The key file holds 64 hex digits (optionally followed by a
 * newline). It must not be readable or writable by group or others: such a
 * file is refused (STORE_E_KEY, message says so). If the key file is missing
 * and the database does not exist yet (RW mode), a new random key is written
 * with mode 0600 (O_EXCL). A wrong key on an existing store gives STORE_E_KEY
 * without touching any data (checked against an encrypted canary); a key
 * file missing for an existing store is STORE_E_KEY too (no new key is
 * made). A store whose schema is newer than this program is refused with
 * STORE_E_SCHEMA, untouched; an older one is upgraded in RW mode and refused
 * (STORE_E_SCHEMA) in RO mode. RO mode on a store that does not exist gives
 * STORE_E_NOTFOUND. A file that is not one of our stores gives STORE_E_DB.
 * On failure *out is NULL and err (if non-NULL) holds the reason.
 */
int store_open(store **out, const char *db_path, const char *key_file, store_mode mode,
	       char *err, size_t err_size);
void store_close(store *s);
const char *store_errmsg(const store *s);

/* The schema version this program writes (PRAGMA user_version). */
int store_schema_version(void);

/* How long a writer waits for another writer's lock (default 5000 ms). */
int store_set_busy_timeout(store *s, int ms);

/*
 * Transactions (BEGIN IMMEDIATE / COMMIT / ROLLBACK). store_begin gives
 * STORE_E_BUSY when another writer holds the lock past the busy timeout,
 * -EALREADY if a transaction is open, STORE_E_DB on a read-only handle.
 * store_rollback without an open transaction is a no-op returning 0.
 */
int store_begin(store *s);
int store_commit(store *s);
int store_rollback(store *s);

/*
 * A server is identified by its base URL (compared as given); ids are stable
 * within a store. Unknown URLs are added (RW; inside the caller's
 * transaction if one is open) or give STORE_E_NOTFOUND (RO).
 */
int store_server_id(store *s, const char *base_url, int64_t *id);

/* One resource as pulled. All strings NUL-terminated; patient may be "". */
typedef struct store_resource {
	const char *type;
	const char *id;
	const char *version_id;    /* may be "" (server without versionId) */
	const char *last_updated;  /* FHIR instant, may be "" */
	const char *patient;       /* patient id the resource belongs to, or "" */
	const void *body;          /* the resource JSON exactly as received */
	size_t body_len;
} store_resource;

/*
 * Store a resource inside the caller's transaction. If (server, type, id,
 * version_id) was already seen, nothing is written and *is_new = 0 (a
 * resource seen twice at a page boundary is stored once). Otherwise the
 * version is recorded and, unless the stored latest body is newer (by
 * last_updated), the encrypted body replaces it; *is_new = 1. A resource
 * without version_id is compared by body: same bytes -> not new.
 *
 * last_updated values are compared as instants (offsets and fraction
 * precision normalised, to the microsecond); the stored body is kept only
 * when both instants are valid and the stored one is later. For resources
 * without version_id the "version" is a keyed hash of the body bytes, so a
 * body seen before for that resource is never new. A new version (is_new)
 * marks the resource's patient as waiting for curation (outbox.h), and the
 * patient it belonged to before when its body moved to another patient.
 * Runs in its own transaction when none is open. -EINVAL without type or id or with a key
 * string (type, id, version_id, last_updated, patient) above 4096 bytes;
 * -EFBIG for a body above SQLite's blob limit.
 */
int store_put_resource(store *s, int64_t server, const store_resource *r, int *is_new);

/* A crawl cursor for (server, type). */
typedef struct store_cursor {
	char watermark[64];      /* _lastUpdated lower bound for the next crawl; "" = never completed */
	char crawl_started[64];  /* watermark the crawl in progress will set when done; "" = none */
	char *next_url;          /* next page of the crawl in progress (malloc'd) or NULL */
	int64_t pages;           /* pages stored in the crawl in progress */
	char last_success[64];   /* instant the last crawl completed */
	char last_error[512];    /* last error message, "" if the last crawl succeeded */
} store_cursor;

void store_cursor_deinit(store_cursor *c);

/*
 * Read the cursor into c (overwritten: deinit a previous value first); a
 * never-seen type gives all-empty fields and returns 0. A stored
 * last_error longer than the field is cut at a UTF-8 boundary.
 */
int store_cursor_get(store *s, int64_t server, const char *type, store_cursor *c);

/*
 * Write the cursor inside the caller's transaction (the page and the cursor
 * advance commit together). next_url NULL ends the crawl in progress.
 */
int store_cursor_put(store *s, int64_t server, const char *type, const store_cursor *c);

/*
 * Record an error for (server, type) outside any crawl step (own txn if none
 * open). Only last_error changes; msg is cut to fit store_cursor.last_error.
 */
int store_cursor_set_error(store *s, int64_t server, const char *type, const char *msg);

/*
 * Fetch and decrypt the latest body of a resource. *body is malloc'd
 * (NUL-terminated for convenience). STORE_E_NOTFOUND if absent,
 * STORE_E_CORRUPT if the stored blob fails authentication (altered, or
 * moved from another row). version_id (may be NULL) receives the versionId;
 * -ENOBUFS if it does not fit version_id_size.
 */
int store_get_resource(store *s, int64_t server, const char *type, const char *id,
		       char **body, size_t *len, char *version_id, size_t version_id_size);

/*
 * Iterate over stored resources of a type (all types when type is NULL; all
 * servers when server <= 0), ordered by id, calling cb with the decrypted
 * body (NUL-terminated) if want_body, else body NULL. The strings passed to
 * cb are valid during the call only. cb returning non-zero stops the
 * iteration and is returned. A body failing authentication stops it with
 * STORE_E_CORRUPT.
 */
typedef int (*store_resource_cb)(void *ud, const char *type, const char *id,
				 const char *version_id, const char *last_updated,
				 const char *patient, const char *body, size_t body_len);
int store_foreach_resource(store *s, int64_t server, const char *type, int want_body,
			   store_resource_cb cb, void *ud);

/*
 * The store's state as a new JSON object:
 *   {"schema": N,
 *    "resources": {"Patient": 10, ...},           distinct resources per type
 *    "versions": {"Patient": 12, ...},            versions seen per type
 *    "cursors": [{"server": url, "type": T, "watermark": .., "crawl_in_progress": bool,
 *                 "pages_in_progress": n, "last_success": .., "last_error": ..}],
 *    "last_sync": instant or null,                latest last_success of any cursor
 *    "downtime": {"pending": n, ...}}             chart entries per state (chart.h, store_chart_counts)
 * crawl_in_progress is true while the cursor has a next_url; pages_in_progress
 * is then its page count, else 0. Strings are as stored ("" when empty).
 * All figures come from one snapshot. Works on a read-only handle while
 * another process writes (WAL). NULL on failure (store_errmsg says why).
 */
json_t *store_status_json(store *s);
