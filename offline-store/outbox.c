/*
 * offline-store/outbox.c — the curation side of the store (see outbox.h;
 * the tables and why they look so are described in schema.c, version 2).
 *
 * PHI at rest. Record names (they may be MRNs), MRNs, outbox and review
 * payloads never reach SQLite in clear: names and MRNs go in as keyed
 * hashes, and names and payloads as crypto.h blobs whose AAD names the row
 * they belong to (a blob moved to another row, or an old payload put back
 * under a newer gen, fails to open). The keyed hashes are HMAC-SHA-256
 * under a sub-key of the store key (HMAC(store key, label)), never the
 * AES key itself, and keep all 32 bytes: two names with equal hashes are
 * equal, so a lookup by hash needs no decryption to re-check. Each hash
 * starts with a domain byte, so a record name, an MRN and a payload can
 * never hash alike; a record name is hashed with its project, so the same
 * person has unrelated hashes in two projects. The hashing and the AAD
 * encoding are encode.c's, shared with chart.c and kv.c.
 *
 * Statements are prepared once per handle and cached (like store.c), except
 * those whose results are handed to a callback: those are prepared per call
 * so the callback may use the store freely.
 *
 * Caches: project ids and the last record looked up. Ids are never deleted,
 * so a cached id stays right until a rollback takes away rows made in the
 * transaction; store.c calls store__outbox_forget() then.
 */
#include "offline-store/outbox.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <openssl/crypto.h>

#include "offline-store/crypto.h"
#include "offline-store/store-internal.h"

#define OB_HASH_LEN 32
/* Longest project, record, event, instrument, field, rule, type, id, version, key or patient accepted. */
#define OB_MAX_KEY_LEN 4096
/* Longest retry error kept (cut at a UTF-8 boundary). */
#define OB_MAX_ERROR_LEN 1024

/* AAD tags; store.c uses 'R' (bodies) and 'K' (key check). */
#define AAD_TAG_NAME 'N'
#define AAD_TAG_OUTBOX 'O'
#define AAD_TAG_REVIEW 'V'

/* First byte of every keyed hash input. */
#define HASH_RECORD 'r'
#define HASH_MRN 'm'
#define HASH_OUTBOX 'o'
#define HASH_REVIEW 'v'
#define HASH_CALLER 'c'
#define HASH_FOLD 'f'

static const char name_hash_label[] = "fhir-redcap-bridge store name-hash v1";

enum ob_stmt_id {
	OST_PROJECT_GET,
	OST_PROJECT_ADD,
	OST_RECORD_GET,
	OST_RECORD_ADD,
	OST_WAIT_MARK,
	OST_WAIT_COUNT,
	OST_WAIT_CLEAR,
	OST_WAIT_ALL,
	OST_KV_GET,
	OST_KV_SET,
	OST_KV_DEL,
	OST_KV_HOLDS,
	OST_MRN_SET,
	OST_MRN_DEL,
	OST_MRN_COUNT,
	OST_MRN_PATIENTS,
	OST_REFUSAL_SET,
	OST_REFUSAL_CLEAR,
	OST_INST_GET,
	OST_INST_MAX,
	OST_INST_ADD,
	OST_OB_GET,
	OST_OB_ADD,
	OST_OB_UPDATE,
	OST_OB_DUE,
	OST_OB_NEXT,
	OST_OB_DONE,
	OST_OB_EXISTS,
	OST_OB_RETRY,
	OST_OB_HOLD,
	OST_OB_HOLD_RECORD,
	OST_OB_UNHOLD,
	OST_OB_HELD,
	OST_OB_HELD_COUNT,
	OST_OB_RELEASE,
	OST_OB_RELEASE_RECORD,
	OST_PROV_PUT,
	OST_PROV_GET,
	OST_PROV_DEL,
	OST_REV_GET,
	OST_REV_DEL,
	OST_REV_PROV,
	OST_REV_ADD,
	OST_REV_LOAD,
	OST_REV_DECIDE,
	OST_ST_PROJECTS,
	OST_ST_TOTAL,
	OST_ST_STATE,
	OST_ST_HELD,
	OST_ST_REFUSED,
	OST_ST_REVIEW,
	OST__N
};

/* A held row's reasons come from source (a bound text; NULL matches every row, "!x" every row not from x). */
#define HOLD_SOURCE(col, param)                                                                              \
	"(" param " IS NULL OR json_extract(" col ", '$[0].source') IS " param " OR (substr(" param ", 1, 1) = '!'" \
	" AND json_extract(" col ", '$[0].source') IS NOT substr(" param ", 2)))"

static const char *const ob_sql[OST__N] = {
	[OST_PROJECT_GET] = "SELECT id FROM projects WHERE name = ?1",
	[OST_PROJECT_ADD] = "INSERT INTO projects(name) VALUES(?1)",
	[OST_RECORD_GET] = "SELECT id FROM records WHERE project = ?1 AND record_hash = ?2",
	[OST_RECORD_ADD] = "INSERT INTO records(project, record_hash, name) VALUES(?1, ?2, ?3)",
	[OST_WAIT_MARK] = "INSERT OR IGNORE INTO waiting(patient) VALUES(?1)",
	/* CROSS JOIN fixes the loop order: walk the (few) waiting rows, not every patient of the server. */
	[OST_WAIT_COUNT] = "SELECT count(*) FROM waiting w CROSS JOIN patients p ON p.id = w.patient"
			   " WHERE p.server = ?1",
	[OST_WAIT_CLEAR] = "DELETE FROM waiting WHERE patient = ?1",
	[OST_WAIT_ALL] = "INSERT OR IGNORE INTO waiting(patient) SELECT p.id FROM patients p WHERE p.server = ?1"
			 " AND EXISTS(SELECT 1 FROM resources r WHERE r.patient = p.id) ORDER BY p.id",
	[OST_KV_GET] = "SELECT value FROM project_kv WHERE project = ?1 AND key = ?2",
	[OST_KV_SET] = "INSERT INTO project_kv(project, key, value) VALUES(?1, ?2, ?3)"
		       " ON CONFLICT(project, key) DO UPDATE SET value = excluded.value",
	[OST_KV_DEL] = "DELETE FROM project_kv WHERE project = ?1 AND key = ?2",
	/* The standing holds of a project (see hold_key). */
	[OST_KV_HOLDS] = "SELECT key, value FROM project_kv WHERE project = ?1 AND key GLOB 'hold:record:*'",
	[OST_MRN_SET] = "INSERT INTO mrns(patient, mrn_hash) VALUES(?1, ?2)"
			" ON CONFLICT(patient) DO UPDATE SET mrn_hash = excluded.mrn_hash"
			" WHERE mrn_hash IS NOT excluded.mrn_hash",
	[OST_MRN_DEL] = "DELETE FROM mrns WHERE patient = ?1",
	[OST_MRN_COUNT] = "SELECT count(*) FROM mrns m JOIN patients p ON p.id = m.patient"
			  " WHERE m.mrn_hash = ?1 AND p.server = ?2",
	[OST_MRN_PATIENTS] = "SELECT p.patient FROM mrns m JOIN patients p ON p.id = m.patient"
			     " WHERE m.mrn_hash = ?1 AND p.server = ?2 ORDER BY p.patient",
	/* The first refusal's time is kept: `since` is how long the patient has waited for a person. */
	[OST_REFUSAL_SET] = "INSERT INTO refusals(project, patient, reason, since) VALUES(?1, ?2, ?3, ?4)"
			    " ON CONFLICT(project, patient) DO UPDATE SET reason = excluded.reason"
			    " WHERE reason IS NOT excluded.reason",
	[OST_REFUSAL_CLEAR] = "DELETE FROM refusals WHERE project = ?1 AND patient = ?2",
	[OST_INST_GET] = "SELECT instance FROM instances WHERE record = ?1 AND event = ?2 AND instrument = ?3"
			 " AND src_type = ?4 AND src_id = ?5",
	[OST_INST_MAX] = "SELECT max(instance) FROM instances WHERE record = ?1 AND event = ?2 AND instrument = ?3",
	[OST_INST_ADD] = "INSERT INTO instances(record, event, instrument, src_type, src_id, instance)"
			 " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
	[OST_OB_GET] = "SELECT id, gen, payload_hash FROM outbox WHERE project = ?1 AND record = ?2 AND event = ?3"
		       " AND instrument = ?4 AND instance = ?5",
	[OST_OB_ADD] = "INSERT INTO outbox(project, record, event, instrument, instance, gen, payload_hash, payload,"
		       " state, state_at) VALUES(?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, 0, ?8)",
	[OST_OB_UPDATE] = "UPDATE outbox SET gen = ?2, payload_hash = ?3, payload = ?4, state = 0, attempts = 0,"
			  " next_at = 0, last_error = '', reasons = NULL, state_at = ?5 WHERE id = ?1",
	/* The literal state = 0 lets SQLite use the partial index outbox_due. */
	[OST_OB_DUE] = "SELECT o.id, o.gen, o.record, o.event, o.instrument, o.instance, o.payload, o.attempts,"
		       " o.next_at, o.last_error, r.record_hash, r.name"
		       " FROM outbox o INDEXED BY outbox_due JOIN records r ON r.id = o.record"
		       " WHERE o.project = ?1 AND o.state = 0 AND o.next_at <= ?2 ORDER BY o.id LIMIT ?3",
	[OST_OB_NEXT] = "SELECT min(next_at) FROM outbox INDEXED BY outbox_next WHERE project = ?1 AND state = 0",
	[OST_OB_DONE] = "UPDATE outbox SET state = 1, next_at = 0, last_error = '', reasons = NULL, state_at = ?3"
			" WHERE id = ?1 AND gen = ?2 AND state <> 1",
	[OST_OB_EXISTS] = "SELECT 1 FROM outbox WHERE id = ?1",
	[OST_OB_RETRY] = "UPDATE outbox SET attempts = attempts + 1, next_at = ?3, last_error = ?4"
			 " WHERE id = ?1 AND gen = ?2 AND state = 0",
	/* A held row (same gen) only gets its new reasons: since is when it was first held. */
	[OST_OB_HOLD] = "UPDATE outbox SET state = 2, next_at = 0, reasons = ?3,"
			" state_at = CASE state WHEN 2 THEN state_at ELSE ?4 END"
			" WHERE id = ?1 AND gen = ?2 AND (state = 0 OR (state = 2 AND reasons IS NOT ?3))",
	/* Rows held for another reason too: a row held by the bridge's check must not go when the
	 * dictionary changes while its patient is refused. */
	[OST_OB_HOLD_RECORD] = "UPDATE outbox SET state = 2, next_at = 0, reasons = ?3,"
			       " state_at = CASE state WHEN 2 THEN state_at ELSE ?4 END"
			       " WHERE project = ?1 AND record = ?2 AND (state = 0 OR (state = 2 AND reasons IS NOT ?3))",
	[OST_OB_UNHOLD] = "UPDATE outbox SET state = 0, attempts = 0, next_at = 0, last_error = '', reasons = NULL,"
			  " state_at = ?3 WHERE id = ?1 AND gen = ?2 AND state = 2",
	/* The source of a held row is that of its first reason (HOLD_SOURCE). */
	[OST_OB_HELD] = "SELECT o.id, o.gen, o.record, o.event, o.instrument, o.instance, o.payload, o.attempts,"
			" o.next_at, o.last_error, r.record_hash, r.name, o.reasons"
			" FROM outbox o INDEXED BY outbox_held JOIN records r ON r.id = o.record"
			" WHERE o.project = ?1 AND o.state = 2 AND o.id > ?2 AND " HOLD_SOURCE("o.reasons", "?3")
			" ORDER BY o.id LIMIT ?4",
	[OST_OB_HELD_COUNT] = "SELECT count(*) FROM outbox INDEXED BY outbox_held WHERE project = ?1 AND state = 2"
			      " AND " HOLD_SOURCE("reasons", "?2"),
	[OST_OB_RELEASE] = "UPDATE outbox SET state = 0, attempts = 0, next_at = 0, last_error = '', reasons = NULL,"
			   " state_at = ?2 WHERE project = ?1 AND state = 2 AND " HOLD_SOURCE("reasons", "?4"),
	[OST_OB_RELEASE_RECORD] = "UPDATE outbox SET state = 0, attempts = 0, next_at = 0, last_error = '',"
				  " reasons = NULL, state_at = ?2 WHERE project = ?1 AND state = 2 AND record = ?3"
				  " AND " HOLD_SOURCE("reasons", "?4"),
	/* Producing the same value again writes nothing (at keeps when it was first so). */
	[OST_PROV_PUT] = "INSERT INTO provenance(record, field, event, instrument, instance, rule, res_type, res_id,"
			 " res_version, at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
			 " ON CONFLICT(record, field, event, instrument, instance) DO UPDATE SET"
			 " rule = excluded.rule, res_type = excluded.res_type, res_id = excluded.res_id,"
			 " res_version = excluded.res_version, at = excluded.at"
			 " WHERE rule IS NOT excluded.rule OR res_type IS NOT excluded.res_type"
			 " OR res_id IS NOT excluded.res_id OR res_version IS NOT excluded.res_version",
	[OST_PROV_DEL] = "DELETE FROM provenance WHERE record = ?1 AND field = ?2 AND event = ?3 AND instrument = ?4"
			 " AND instance = ?5",
	[OST_PROV_GET] = "SELECT event, instrument, instance, rule, res_type, res_id, res_version, at FROM provenance"
			 " WHERE record = ?1 AND field = ?2 ORDER BY event, instance, instrument",
	[OST_REV_GET] = "SELECT id, payload_hash FROM review WHERE record = ?1 AND event = ?2 AND instrument = ?3"
			" AND instance = ?4",
	[OST_REV_DEL] = "DELETE FROM review WHERE id = ?1",
	[OST_REV_PROV] = "UPDATE review SET provenance = ?2 WHERE id = ?1 AND state = 0 AND provenance IS NOT ?2",
	[OST_REV_ADD] = "INSERT INTO review(project, record, event, instrument, instance, payload_hash, payload,"
			" provenance, state, queued_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)",
	[OST_REV_LOAD] = "SELECT project, record, event, instrument, instance, payload, provenance FROM review"
			 " WHERE id = ?1 AND state = 0",
	[OST_REV_DECIDE] = "UPDATE review SET state = ?2, decided_at = ?3, decided_by = ?4 WHERE id = ?1",
	[OST_ST_PROJECTS] = "SELECT id, name FROM projects ORDER BY name",
	[OST_ST_TOTAL] = "SELECT count(*) FROM outbox WHERE project = ?1",
	[OST_ST_STATE] = "SELECT (SELECT count(*) FROM outbox WHERE project = ?1 AND state = 0),"
			 " (SELECT count(*) FROM outbox WHERE project = ?1 AND state = 2)",
	[OST_ST_HELD] = "SELECT o.record, o.event, o.instrument, o.instance, o.reasons, o.state_at, r.record_hash,"
			" r.name FROM outbox o INDEXED BY outbox_held JOIN records r ON r.id = o.record"
			" WHERE o.project = ?1 AND o.state = 2 ORDER BY o.state_at DESC, o.id DESC LIMIT ?2",
	[OST_ST_REFUSED] = "SELECT patient, reason FROM refusals WHERE project = ?1 ORDER BY patient",
	[OST_ST_REVIEW] = "SELECT count(*) FROM review WHERE project = ?1 AND state = 0",
};

struct store_outbox {
	sqlite3_stmt *stmt[OST__N];
	store_kmac mac; /* under the name-hash sub-key */

	store_names projects;    /* cleared on rollback */

	bool rec_valid;          /* the last record looked up; cleared on rollback */
	int64_t rec_project, rec_id;
	store_buf rec_name;

	store_bytes aad; /* AAD of the value being sealed or opened */
	store_buf blob;	 /* its ciphertext */
};

/* ---- small helpers ------------------------------------------------------ */

static int ob_stmt(store *s, enum ob_stmt_id id, sqlite3_stmt **out)
{
	return store__stmt_cached(s, &s->ob->stmt[id], ob_sql[id], out);
}

static void bind_text(sqlite3_stmt *st, int i, const char *str)
{
	sqlite3_bind_text(st, i, str, -1, SQLITE_STATIC);
}

/* A row limit as SQLite's LIMIT takes it. */
static void bind_limit(sqlite3_stmt *st, int i, size_t limit)
{
	sqlite3_bind_int64(st, i, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
}

static int bad_args(store *s, const char *fn)
{
	store__seterr(s, "%s: bad arguments", fn);
	return -EINVAL;
}

/* A key string: present, not longer than OB_MAX_KEY_LEN, non-empty if required. */
static bool key_ok(const char *str, bool required)
{
	if (!str)
		return false;
	if (required && !str[0])
		return false;
	return strnlen(str, OB_MAX_KEY_LEN + 1) <= OB_MAX_KEY_LEN;
}

/* Unix seconds as a FHIR instant in UTC. */
static json_t *instant_json(int64_t secs)
{
	char buf[32];
	struct tm tm;
	time_t t = (time_t)secs;
	if (!gmtime_r(&t, &tm) || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return json_null();
	return json_string(buf);
}

static const char *col_text(sqlite3_stmt *st, int col)
{
	return (const char *)sqlite3_column_text(st, col);
}

/* A text column as a new JSON string ("" for NULL); NULL only on OOM. */
static json_t *col_json(sqlite3_stmt *st, int col)
{
	return store__jstr(col_text(st, col));
}

/* Does the blob column hold the hash h? */
static bool hash_equal(sqlite3_stmt *st, int col, const uint8_t h[OB_HASH_LEN])
{
	return sqlite3_column_bytes(st, col) == OB_HASH_LEN &&
	       memcmp(sqlite3_column_blob(st, col), h, OB_HASH_LEN) == 0;
}

static char *dup_text(sqlite3_stmt *st, int col)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	return strdup(t ? t : "");
}

/* ---- the state, keyed hashes, blobs ------------------------------------ */

static void ob_free(store_outbox *ob)
{
	if (!ob)
		return;
	for (size_t i = 0; i < OST__N; i++)
		sqlite3_finalize(ob->stmt[i]);
	store__kmac_deinit(&ob->mac);
	store__names_free(&ob->projects);
	/* The last record name (PHI) sits here. */
	if (ob->rec_name.p)
		OPENSSL_cleanse(ob->rec_name.p, ob->rec_name.cap);
	store__buf_free(&ob->rec_name);
	store__bytes_free(&ob->aad);
	store__buf_free(&ob->blob);
	free(ob);
}

void store__outbox_free(store *s)
{
	ob_free(s->ob);
	s->ob = NULL;
}

void store__outbox_forget(store *s)
{
	store_outbox *ob = s->ob;
	if (!ob)
		return;
	store__names_forget(&ob->projects);
	ob->rec_valid = false;
}

/* Set up s->ob on first use: the name-hash sub-key is HMAC(store key, label). */
static int ob_init(store *s)
{
	if (s->ob)
		return 0;
	store_outbox *ob = calloc(1, sizeof(*ob));
	if (!ob)
		return store__oom(s);
	int rc = store__kmac_init(s, &ob->mac, name_hash_label);
	if (rc) {
		ob_free(ob);
		return rc;
	}
	s->ob = ob;
	return 0;
}

/*
 * The body of most writers here (fn names the call in messages): set up
 * s->ob, refuse bad arguments (args_ok false), then run impl(s, a) as a write.
 */
static int ob_write(store *s, const char *fn, bool args_ok, int (*impl)(store *s, void *ud), void *a)
{
	int rc = ob_init(s);
	if (rc)
		return rc;
	return args_ok ? store__write(s, fn, impl, a) : bad_args(s, fn);
}

/* The keyed hash of a payload together with the key of the row it is for. */
static int payload_hash(store *s, uint8_t domain, int64_t rid, const char *event, const char *instrument,
			int64_t instance, const char *payload, size_t len, uint8_t out[OB_HASH_LEN])
{
	store_kmac *m = &s->ob->mac;
	store__kmac_begin(m, domain);
	store__kmac_i64(m, rid);
	store__kmac_str(m, event);
	store__kmac_str(m, instrument);
	store__kmac_i64(m, instance);
	store__kmac_bytes(m, payload, len);
	return store__kmac_final(s, m, out, OB_HASH_LEN);
}

/* AAD of a record name: the project and the name's hash. Built in ob->aad; *len its length. */
static int aad_name(store *s, int64_t pid, const uint8_t *hash, size_t *len)
{
	store_bytes *a = &s->ob->aad;
	uint8_t head[2] = { AAD_TAG_NAME, STORE_BLOB_VERSION };
	store__bytes_reset(a);
	store__bytes_put(a, head, sizeof(head));
	store__bytes_i64(a, pid);
	store__bytes_put(a, hash, OB_HASH_LEN);
	*len = a->len;
	return a->oom ? store__oom(s) : 0;
}

/* AAD of an outbox payload (gen >= 1) or of a review payload (gen 0, tag V): the row's key. */
static int aad_row(store *s, uint8_t tag, int64_t rid, const char *event, const char *instrument, int64_t instance,
		   int64_t gen, size_t *len)
{
	store_bytes *a = &s->ob->aad;
	uint8_t head[2] = { tag, STORE_BLOB_VERSION };
	store__bytes_reset(a);
	store__bytes_put(a, head, sizeof(head));
	store__bytes_i64(a, rid);
	store__bytes_str(a, event);
	store__bytes_str(a, instrument);
	store__bytes_i64(a, instance);
	store__bytes_i64(a, gen);
	*len = a->len;
	return a->oom ? store__oom(s) : 0;
}

/* Seal pt under the AAD in ob->aad into ob->blob. */
static int seal(store *s, size_t aad_len, const void *pt, size_t pt_len, size_t *blob_len)
{
	store_outbox *ob = s->ob;
	int limit = sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, -1);
	if (pt_len > (size_t)limit - STORE_BLOB_OVERHEAD) {
		store__seterr(s, "a value of %zu bytes is larger than the store takes", pt_len);
		return -EFBIG;
	}
	if (store__buf_reserve(&ob->blob, pt_len + STORE_BLOB_OVERHEAD) != 0)
		return store__oom(s);
	if (store_crypto_seal(&s->crypto, NULL, ob->aad.b.p, aad_len, pt, pt_len, ob->blob.p) != 0) {
		store__seterr(s, "cannot encrypt a value for the store");
		return -EIO;
	}
	*blob_len = pt_len + STORE_BLOB_OVERHEAD;
	return 0;
}

/* Open blob under the AAD in ob->aad into a new NUL-terminated string; what names it in messages. */
static int unseal(store *s, size_t aad_len, const void *blob, size_t blob_len, const char *what, char **out,
		  size_t *out_len)
{
	return store__unseal(s, s->ob->aad.b.p, aad_len, blob, blob_len, out, out_len, "a stored %s", what);
}

static void free_secret(char *p, size_t len)
{
	if (p)
		OPENSSL_cleanse(p, len);
	free(p);
}

/* Decrypt the record name in columns hash_col, name_col of st (project pid). */
static int open_name(store *s, int64_t pid, sqlite3_stmt *st, int hash_col, int name_col, char **name)
{
	*name = NULL;
	if (sqlite3_column_bytes(st, hash_col) != OB_HASH_LEN) {
		store__seterr(s, "a record row of the store %s is damaged", s->db_path);
		return STORE_E_CORRUPT;
	}
	size_t aad_len = 0;
	int rc = aad_name(s, pid, sqlite3_column_blob(st, hash_col), &aad_len);
	return rc ? rc
		  : unseal(s, aad_len, sqlite3_column_blob(st, name_col), (size_t)sqlite3_column_bytes(st, name_col),
			   "record name", name, NULL);
}

/* ---- projects and records ---------------------------------------------- */

/* The id of a project name; made if create, else STORE_E_NOTFOUND. */
static int project_id(store *s, const char *name, bool create, int64_t *id)
{
	store_outbox *ob = s->ob;
	if (store__names_find(&ob->projects, name, id))
		return 0;
	sqlite3_stmt *st = NULL;
	bool found = false;
	int rc = ob_stmt(s, OST_PROJECT_GET, &st);
	if (rc)
		return rc;
	bind_text(st, 1, name);
	if ((rc = store__stmt_int(s, st, "cannot look up a project", &found, id)) != 0)
		return rc;
	if (!found) {
		if (!create) {
			store__seterr(s, "the store has nothing for project %s", name);
			return STORE_E_NOTFOUND;
		}
		if ((rc = ob_stmt(s, OST_PROJECT_ADD, &st)) != 0)
			return rc;
		bind_text(st, 1, name);
		if ((rc = store__stmt_exec(s, st, "cannot add a project")) != 0)
			return rc;
		*id = sqlite3_last_insert_rowid(s->db);
	}
	return store__names_add(s, &ob->projects, name, *id);
}

/*
 * The id of (project pid, record name); made if create, else
 * STORE_E_NOTFOUND. Curation writes many rows of one record in a row: the
 * last one is remembered, so those cost a string compare, not a hash.
 */
static int record_id(store *s, int64_t pid, const char *record, bool create, int64_t *id)
{
	store_outbox *ob = s->ob;
	size_t len = strlen(record);
	if (ob->rec_valid && ob->rec_project == pid && strcmp((const char *)ob->rec_name.p, record) == 0) {
		*id = ob->rec_id;
		return 0;
	}
	uint8_t hash[OB_HASH_LEN];
	store__kmac_begin(&ob->mac, HASH_RECORD);
	store__kmac_i64(&ob->mac, pid);
	store__kmac_bytes(&ob->mac, record, len);
	int rc = store__kmac_final(s, &ob->mac, hash, OB_HASH_LEN);
	if (rc)
		return rc;
	sqlite3_stmt *st = NULL;
	bool found = false;
	if ((rc = ob_stmt(s, OST_RECORD_GET, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	sqlite3_bind_blob(st, 2, hash, sizeof(hash), SQLITE_STATIC);
	if ((rc = store__stmt_int(s, st, "cannot look up a record", &found, id)) != 0)
		return rc;
	if (!found) {
		if (!create) {
			store__seterr(s, "the store has nothing for this record");
			return STORE_E_NOTFOUND;
		}
		size_t aad_len = 0, blob_len = 0;
		if ((rc = aad_name(s, pid, hash, &aad_len)) != 0 ||
		    (rc = seal(s, aad_len, record, len, &blob_len)) != 0)
			return rc;
		if ((rc = ob_stmt(s, OST_RECORD_ADD, &st)) != 0)
			return rc;
		sqlite3_bind_int64(st, 1, pid);
		sqlite3_bind_blob(st, 2, hash, sizeof(hash), SQLITE_STATIC);
		sqlite3_bind_blob(st, 3, ob->blob.p, (int)blob_len, SQLITE_STATIC);
		if ((rc = store__stmt_exec(s, st, "cannot add a record")) != 0)
			return rc;
		*id = sqlite3_last_insert_rowid(s->db);
	}
	ob->rec_valid = false;
	if (store__buf_reserve(&ob->rec_name, len + 1) == 0) {
		memcpy(ob->rec_name.p, record, len + 1);
		ob->rec_project = pid;
		ob->rec_id = *id;
		ob->rec_valid = true;
	}
	return 0;
}

/* Both ids of (project, record); made if create. */
static int ids_of(store *s, const char *project, const char *record, bool create, int64_t *pid, int64_t *rid)
{
	int rc = project_id(s, project, create, pid);
	return rc ? rc : record_id(s, *pid, record, create, rid);
}

/*
 * The start of a read of one project's rows (fn names the call in messages):
 * set up s->ob, refuse bad arguments (args_ok false), then look the project
 * up into *pid and get statement id into *st. limit is the most rows the
 * caller takes. Nothing to read (a limit of 0, or a project the store has
 * never seen) is 0 with *st NULL.
 */
static int project_query(store *s, const char *fn, bool args_ok, size_t limit, const char *project,
			 enum ob_stmt_id id, int64_t *pid, sqlite3_stmt **st)
{
	*st = NULL;
	int rc = ob_init(s);
	if (rc)
		return rc;
	if (!args_ok)
		return bad_args(s, fn);
	if (limit == 0)
		return 0;
	rc = project_id(s, project, false, pid);
	if (rc == STORE_E_NOTFOUND)
		return 0;
	return rc ? rc : ob_stmt(s, id, st);
}

/* ---- patients waiting --------------------------------------------------- */

typedef struct patient_args {
	int64_t server;
	const char *patient;
} patient_args;

static int wait_mark_impl(store *s, void *ud)
{
	const patient_args *a = ud;
	int64_t pid = 0;
	sqlite3_stmt *st = NULL;
	int rc = store__patient_id(s, a->server, a->patient, true, &pid);
	if (!rc)
		rc = ob_stmt(s, OST_WAIT_MARK, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	return store__stmt_exec(s, st, "cannot mark a patient for curation");
}

int store_waiting_mark(store *s, int64_t server, const char *patient)
{
	patient_args a = { server, patient };
	return ob_write(s, "store_waiting_mark", server > 0 && key_ok(patient, true), wait_mark_impl, &a);
}

int store_waiting_foreach(store *s, int64_t server, size_t limit, store_patient_cb cb, void *ud)
{
	sqlite3_stmt *st = NULL;
	if (!cb)
		return bad_args(s, "store_waiting_foreach");
	/* Prepared per call: cb may use the store, this very call included. CROSS JOIN walks
	 * waiting in seq order and stops at limit; the other order would visit every patient
	 * of the server and sort, at each batch of a curation run. */
	int rc = store__prepare(s,
				"SELECT p.patient FROM waiting w CROSS JOIN patients p ON p.id = w.patient"
				" WHERE p.server = ?1 ORDER BY w.seq LIMIT ?2",
				&st, "cannot list the waiting patients");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, server);
	sqlite3_bind_int64(st, 2, limit == 0 || limit > INT64_MAX ? -1 : (int64_t)limit);
	int src;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *p = col_text(st, 0);
		if ((rc = cb(ud, p ? p : "")) != 0)
			break;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot list the waiting patients");
	sqlite3_finalize(st);
	return rc;
}

int store_waiting_count(store *s, int64_t server, int64_t *n)
{
	sqlite3_stmt *st = NULL;
	bool found = false;
	int rc = ob_init(s);
	if (rc)
		return rc;
	*n = 0;
	if ((rc = ob_stmt(s, OST_WAIT_COUNT, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, server);
	return store__stmt_int(s, st, "cannot count the waiting patients", &found, n);
}

static int wait_clear_impl(store *s, void *ud)
{
	const patient_args *a = ud;
	int64_t pid = 0;
	sqlite3_stmt *st = NULL;
	int rc = store__patient_id(s, a->server, a->patient, false, &pid);
	if (rc == STORE_E_NOTFOUND)
		return 0;
	if (!rc)
		rc = ob_stmt(s, OST_WAIT_CLEAR, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	return store__stmt_exec(s, st, "cannot clear a waiting patient");
}

int store_waiting_clear(store *s, int64_t server, const char *patient)
{
	patient_args a = { server, patient };
	return ob_write(s, "store_waiting_clear", key_ok(patient, true), wait_clear_impl, &a);
}

static int wait_all_impl(store *s, void *ud)
{
	sqlite3_stmt *st = NULL;
	int rc = ob_stmt(s, OST_WAIT_ALL, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, *(const int64_t *)ud);
	return store__stmt_exec(s, st, "cannot mark every patient for curation");
}

int store_waiting_all(store *s, int64_t server)
{
	return ob_write(s, "store_waiting_all", true, wait_all_impl, &server);
}

int store_foreach_patient_resource(store *s, int64_t server, const char *patient, store_resource_cb cb, void *ud)
{
	int64_t pid = 0;
	if (server <= 0 || !key_ok(patient, true) || !cb)
		return bad_args(s, "store_foreach_patient_resource");
	int rc = store__patient_id(s, server, patient, false, &pid);
	if (rc == STORE_E_NOTFOUND)
		return 0;
	if (rc)
		return rc;
	/* The columns store__foreach_row reads; every row is this patient's, so ?2 fills the patient column. */
	sqlite3_stmt *st = NULL;
	if ((rc = store__prepare(s,
				 "SELECT t.name, r.id, r.version_id, r.last_updated, ?2, r.server, r.body"
				 " FROM resources r INDEXED BY resources_patient JOIN types t ON t.id = r.type"
				 " WHERE r.patient = ?1 ORDER BY t.name, r.id",
				 &st, "cannot list a patient's resources")) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	bind_text(st, 2, patient);
	return store__foreach_row(s, st, cb, ud, "cannot list a patient's resources");
}

/* ---- per-project key/value ---------------------------------------------- */

/* A project_kv value by project id: *value malloc'd, STORE_E_NOTFOUND when unset. */
static int kv_get_pid(store *s, int64_t pid, const char *key, char **value)
{
	sqlite3_stmt *st = NULL;
	*value = NULL;
	int rc = ob_stmt(s, OST_KV_GET, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	bind_text(st, 2, key);
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW && !(*value = dup_text(st, 0)))
		rc = store__oom(s);
	else if (src == SQLITE_DONE)
		rc = STORE_E_NOTFOUND;
	else if (src != SQLITE_ROW)
		rc = store__db_fail(s, src, "cannot read a project setting");
	store__stmt_done(st);
	return rc;
}

/* Set (value non-NULL) or delete a project_kv entry by project id. */
static int kv_put_pid(store *s, int64_t pid, const char *key, const char *value)
{
	sqlite3_stmt *st = NULL;
	int rc = ob_stmt(s, value ? OST_KV_SET : OST_KV_DEL, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	bind_text(st, 2, key);
	if (value)
		bind_text(st, 3, value);
	return store__stmt_exec(s, st, "cannot write a project setting");
}

int store_project_get(store *s, const char *project, const char *key, char **value)
{
	int64_t pid = 0;
	int rc = ob_init(s);
	if (rc)
		return rc;
	*value = NULL;
	if (!key_ok(project, true) || !key_ok(key, true))
		return bad_args(s, "store_project_get");
	if ((rc = project_id(s, project, false, &pid)) != 0)
		return rc;
	if ((rc = kv_get_pid(s, pid, key, value)) == STORE_E_NOTFOUND)
		store__seterr(s, "project %s has no %s", project, key);
	return rc;
}

typedef struct kv_args {
	const char *project, *key, *value;
} kv_args;

static int kv_set_impl(store *s, void *ud)
{
	const kv_args *a = ud;
	int64_t pid = 0;
	bool del = !a->value || !a->value[0];
	int rc = project_id(s, a->project, !del, &pid);
	if (rc == STORE_E_NOTFOUND && del)
		return 0;
	return rc ? rc : kv_put_pid(s, pid, a->key, del ? NULL : a->value);
}

int store_project_set(store *s, const char *project, const char *key, const char *value)
{
	kv_args a = { project, key, value };
	return ob_write(s, "store_project_set", key_ok(project, true) && key_ok(key, true), kv_set_impl, &a);
}

/* ---- MRN index ---------------------------------------------------------- */

static int mrn_hash(store *s, const char *mrn, uint8_t out[OB_HASH_LEN])
{
	store__kmac_begin(&s->ob->mac, HASH_MRN);
	store__kmac_bytes(&s->ob->mac, mrn, strlen(mrn));
	return store__kmac_final(s, &s->ob->mac, out, OB_HASH_LEN);
}

typedef struct mrn_args {
	int64_t server;
	const char *patient, *mrn;
} mrn_args;

static int mrn_set_impl(store *s, void *ud)
{
	const mrn_args *a = ud;
	int64_t pid = 0;
	uint8_t h[OB_HASH_LEN];
	sqlite3_stmt *st = NULL;
	bool del = !a->mrn || !a->mrn[0];
	int rc = store__patient_id(s, a->server, a->patient, !del, &pid);
	if (rc == STORE_E_NOTFOUND && del)
		return 0;
	if (rc || (!del && (rc = mrn_hash(s, a->mrn, h)) != 0) ||
	    (rc = ob_stmt(s, del ? OST_MRN_DEL : OST_MRN_SET, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	if (!del)
		sqlite3_bind_blob(st, 2, h, sizeof(h), SQLITE_STATIC);
	return store__stmt_exec(s, st, "cannot record an MRN");
}

int store_mrn_set(store *s, int64_t server, const char *patient, const char *mrn)
{
	mrn_args a = { server, patient, mrn };
	bool ok = server > 0 && key_ok(patient, true) && (!mrn || key_ok(mrn, false));
	return ob_write(s, "store_mrn_set", ok, mrn_set_impl, &a);
}

int store_mrn_count(store *s, int64_t server, const char *mrn, int64_t *n)
{
	uint8_t h[OB_HASH_LEN];
	sqlite3_stmt *st = NULL;
	bool found = false;
	int rc = ob_init(s);
	if (rc)
		return rc;
	*n = 0;
	if (!key_ok(mrn, true))
		return bad_args(s, "store_mrn_count");
	if ((rc = mrn_hash(s, mrn, h)) != 0 || (rc = ob_stmt(s, OST_MRN_COUNT, &st)) != 0)
		return rc;
	sqlite3_bind_blob(st, 1, h, sizeof(h), SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, server);
	return store__stmt_int(s, st, "cannot count an MRN's patients", &found, n);
}

json_t *store_mrn_patients(store *s, int64_t server, const char *mrn)
{
	uint8_t h[OB_HASH_LEN];
	sqlite3_stmt *st = NULL;
	if (ob_init(s) != 0)
		return NULL;
	if (!key_ok(mrn, true)) {
		bad_args(s, "store_mrn_patients");
		return NULL;
	}
	if (mrn_hash(s, mrn, h) != 0 || ob_stmt(s, OST_MRN_PATIENTS, &st) != 0)
		return NULL;
	json_t *arr = json_array();
	if (!arr) {
		store__oom(s);
		return NULL;
	}
	sqlite3_bind_blob(st, 1, h, sizeof(h), SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, server);
	int src, rc = 0;
	while (rc == 0 && (src = sqlite3_step(st)) == SQLITE_ROW)
		if (json_array_append_new(arr, col_json(st, 0)) != 0)
			rc = store__oom(s);
	if (rc == 0 && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot list an MRN's patients");
	store__stmt_done(st);
	if (rc) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

/* ---- refusals ----------------------------------------------------------- */

typedef struct refusal_args {
	const char *project, *patient, *reason;
	int *existed;
} refusal_args;

static int refusal_set_impl(store *s, void *ud)
{
	const refusal_args *a = ud;
	int64_t pid = 0;
	sqlite3_stmt *st = NULL;
	int rc = project_id(s, a->project, true, &pid);
	if (rc || (rc = ob_stmt(s, OST_REFUSAL_SET, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	bind_text(st, 2, a->patient);
	bind_text(st, 3, a->reason);
	sqlite3_bind_int64(st, 4, store__now(s));
	return store__stmt_exec(s, st, "cannot record a refused patient");
}

int store_refusal_set(store *s, const char *project, const char *patient, const char *reason)
{
	refusal_args a = { project, patient, reason ? reason : "", NULL };
	return ob_write(s, "store_refusal_set", key_ok(project, true) && key_ok(patient, true), refusal_set_impl, &a);
}

static int refusal_clear_impl(store *s, void *ud)
{
	const refusal_args *a = ud;
	int64_t pid = 0;
	sqlite3_stmt *st = NULL;
	int rc = project_id(s, a->project, false, &pid);
	if (rc == STORE_E_NOTFOUND)
		return 0;
	if (rc || (rc = ob_stmt(s, OST_REFUSAL_CLEAR, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	bind_text(st, 2, a->patient);
	if ((rc = store__stmt_exec(s, st, "cannot clear a refused patient")) != 0)
		return rc;
	*a->existed = sqlite3_changes(s->db) > 0;
	return 0;
}

int store_refusal_clear(store *s, const char *project, const char *patient, int *existed)
{
	int dummy = 0;
	if (!existed)
		existed = &dummy;
	*existed = 0;
	refusal_args a = { project, patient, NULL, existed };
	bool ok = key_ok(project, true) && key_ok(patient, true);
	int rc = ob_write(s, "store_refusal_clear", ok, refusal_clear_impl, &a);
	if (rc)
		*existed = 0;
	return rc;
}

/* ---- record owners (names as REDCap matches them) ------------------------- */

/*
 * The keyed hash (hex) of a record name as REDCap compares names: trimmed of
 * PHP trim()'s whitespace, ASCII letters folded to lower case.
 */
static int fold_hash_hex(store *s, int64_t pid, const char *record, char hex[2 * OB_HASH_LEN + 1])
{
	static const char ws[] = " \t\n\r\v";
	const char *b = record, *e = record + strlen(record);
	while (b < e && strchr(ws, *b))
		b++;
	while (e > b && strchr(ws, e[-1]))
		e--;
	char *low = malloc((size_t)(e - b) + 1);
	if (!low)
		return store__oom(s);
	for (size_t i = 0; i < (size_t)(e - b); i++)
		low[i] = b[i] >= 'A' && b[i] <= 'Z' ? (char)(b[i] - 'A' + 'a') : b[i];
	uint8_t h[OB_HASH_LEN];
	store__kmac_begin(&s->ob->mac, HASH_FOLD);
	store__kmac_i64(&s->ob->mac, pid);
	store__kmac_bytes(&s->ob->mac, low, (size_t)(e - b));
	int rc = store__kmac_final(s, &s->ob->mac, h, OB_HASH_LEN);
	OPENSSL_cleanse(low, (size_t)(e - b));
	free(low);
	for (size_t i = 0; rc == 0 && i < OB_HASH_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	return rc;
}

/* The patients listed under key (a JSON array in project_kv), a new array ([] when unset). */
static int owners_get(store *s, int64_t pid, const char *key, json_t **out)
{
	char *txt = NULL;
	json_error_t e;
	*out = NULL;
	int rc = kv_get_pid(s, pid, key, &txt);
	if (rc == STORE_E_NOTFOUND) {
		*out = json_array();
		return *out ? 0 : store__oom(s);
	}
	if (rc)
		return rc;
	*out = json_loads(txt, 0, &e);
	free(txt);
	if (!json_is_array(*out)) {
		json_decref(*out);
		*out = NULL;
		store__seterr(s, "a record owner list of the store %s is damaged", s->db_path);
		return STORE_E_CORRUPT;
	}
	return 0;
}

/* Write the list under key (deleted when empty). */
static int owners_put(store *s, int64_t pid, const char *key, json_t *list)
{
	if (json_array_size(list) == 0)
		return kv_put_pid(s, pid, key, NULL);
	char *txt = json_dumps(list, JSON_COMPACT);
	if (!txt)
		return store__oom(s);
	int rc = kv_put_pid(s, pid, key, txt);
	free(txt);
	return rc;
}

/* The index of patient in list, or -1. */
static ssize_t owners_find(const json_t *list, const char *patient)
{
	for (size_t i = 0; i < json_array_size(list); i++) {
		const char *p = json_string_value(json_array_get(list, i));
		if (p && strcmp(p, patient) == 0)
			return (ssize_t)i;
	}
	return -1;
}

/* A copy of list without patient (NULL on OOM). */
static json_t *owners_others(const json_t *list, const char *patient)
{
	json_t *out = json_array();
	for (size_t i = 0; out && i < json_array_size(list); i++) {
		json_t *v = json_array_get(list, i);
		if (strcmp(json_string_value(v), patient) != 0 && json_array_append(out, v) != 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

typedef struct owner_args {
	const char *project, *patient, *record;
	json_t **same, **left;
	int *changed;
} owner_args;

/* Keys: "record-of/<patient>" -> fold hash; "record-fold/<fold hash>" -> [patients]. */
#define OWNER_KEY "record-of/"
#define FOLD_KEY "record-fold/"

static int owner_set_impl(store *s, void *ud)
{
	const owner_args *a = ud;
	int64_t pid = 0;
	char hex[2 * OB_HASH_LEN + 1] = "", fkey[sizeof(FOLD_KEY) + 2 * OB_HASH_LEN];
	char *okey = NULL, *old = NULL;
	json_t *list = NULL;
	int rc = project_id(s, a->project, true, &pid);
	if (rc == 0 && a->record)
		rc = fold_hash_hex(s, pid, a->record, hex);
	if (rc == 0 && asprintf(&okey, OWNER_KEY "%s", a->patient) < 0) {
		okey = NULL;
		rc = store__oom(s);
	}
	if (rc == 0) {
		rc = kv_get_pid(s, pid, okey, &old);
		if (rc == STORE_E_NOTFOUND)
			rc = 0;
	}
	bool same = strcmp(old ? old : "", hex) == 0;
	/* The old name's other owners: its list without this patient. */
	if (rc == 0 && !same && old) {
		snprintf(fkey, sizeof(fkey), FOLD_KEY "%s", old);
		if ((rc = owners_get(s, pid, fkey, &list)) == 0) {
			ssize_t at = owners_find(list, a->patient);
			if (at >= 0)
				json_array_remove(list, (size_t)at);
			rc = owners_put(s, pid, fkey, list);
		}
		if (rc == 0 && a->left && !(*a->left = json_copy(list)))
			rc = store__oom(s);
		json_decref(list);
		list = NULL;
	}
	/* The new name's owners, this patient among them. */
	if (rc == 0 && hex[0]) {
		snprintf(fkey, sizeof(fkey), FOLD_KEY "%s", hex);
		rc = owners_get(s, pid, fkey, &list);
		if (rc == 0 && owners_find(list, a->patient) < 0) {
			rc = json_array_append_new(list, json_string(a->patient)) ? store__oom(s) : 0;
			if (rc == 0)
				rc = owners_put(s, pid, fkey, list);
		}
		if (rc == 0 && a->same && !(*a->same = owners_others(list, a->patient)))
			rc = store__oom(s);
	}
	if (rc == 0 && !same)
		rc = kv_put_pid(s, pid, okey, hex[0] ? hex : NULL);
	if (rc == 0)
		*a->changed = !same;
	json_decref(list);
	free(okey);
	free(old);
	return rc;
}

int store_record_owner_set(store *s, const char *project, const char *patient, const char *record, json_t **same,
			   json_t **left, int *changed)
{
	int dummy = 0;
	if (!changed)
		changed = &dummy;
	*changed = 0;
	if (same)
		*same = NULL;
	if (left)
		*left = NULL;
	owner_args a = { project, patient, record, same, left, changed };
	bool ok = key_ok(project, true) && key_ok(patient, true) && (!record || key_ok(record, true));
	int rc = ob_write(s, "store_record_owner_set", ok, owner_set_impl, &a);
	/* Empty lists for the caller, whatever was not filled. */
	if (rc == 0 && same && !*same && !(*same = json_array()))
		rc = store__oom(s);
	if (rc == 0 && left && !*left && !(*left = json_array()))
		rc = store__oom(s);
	if (rc) {
		*changed = 0;
		if (same) {
			json_decref(*same);
			*same = NULL;
		}
		if (left) {
			json_decref(*left);
			*left = NULL;
		}
	}
	return rc;
}

/* ---- instances ---------------------------------------------------------- */

typedef struct instance_args {
	const char *project, *record, *event, *instrument, *src_type, *src_id;
	int64_t *instance;
} instance_args;

static void bind_instance_key(sqlite3_stmt *st, int64_t rid, const instance_args *a)
{
	sqlite3_bind_int64(st, 1, rid);
	bind_text(st, 2, a->event);
	bind_text(st, 3, a->instrument);
}

static int instance_impl(store *s, void *ud)
{
	const instance_args *a = ud;
	int64_t pid = 0, rid = 0, max = 0;
	bool found = false;
	sqlite3_stmt *st = NULL;
	int rc = ids_of(s, a->project, a->record, true, &pid, &rid);
	if (rc || (rc = ob_stmt(s, OST_INST_GET, &st)) != 0)
		return rc;
	bind_instance_key(st, rid, a);
	bind_text(st, 4, a->src_type);
	bind_text(st, 5, a->src_id);
	if ((rc = store__stmt_int(s, st, "cannot look up an instance", &found, a->instance)) != 0 || found)
		return rc;
	/* A new source: the next number. BEGIN IMMEDIATE keeps other writers out until commit. */
	if ((rc = ob_stmt(s, OST_INST_MAX, &st)) != 0)
		return rc;
	bind_instance_key(st, rid, a);
	if ((rc = store__stmt_int(s, st, "cannot look up an instance", &found, &max)) != 0)
		return rc;
	*a->instance = found ? max + 1 : 1;
	if ((rc = ob_stmt(s, OST_INST_ADD, &st)) != 0)
		return rc;
	bind_instance_key(st, rid, a);
	bind_text(st, 4, a->src_type);
	bind_text(st, 5, a->src_id);
	sqlite3_bind_int64(st, 6, *a->instance);
	return store__stmt_exec(s, st, "cannot assign an instance");
}

int store_instance(store *s, const char *project, const char *record, const char *event, const char *instrument,
		   const char *src_type, const char *src_id, int64_t *instance)
{
	*instance = 0;
	if (!event)
		event = "";
	instance_args a = { project, record, event, instrument, src_type, src_id, instance };
	bool ok = key_ok(project, true) && key_ok(record, true) && key_ok(event, false) && key_ok(instrument, true) &&
		  key_ok(src_type, true) && key_ok(src_id, true);
	int rc = ob_write(s, "store_instance", ok, instance_impl, &a);
	if (rc)
		*instance = 0;
	return rc;
}

/* ---- outbox ------------------------------------------------------------- */

void store_outbox_row_deinit(store_outbox_row *r)
{
	if (!r)
		return;
	free(r->project);
	free_secret(r->record, r->record ? strlen(r->record) : 0);
	free(r->event);
	free(r->instrument);
	free_secret(r->payload, r->payload_len);
	free(r->last_error);
	free(r->reasons);
	memset(r, 0, sizeof(*r));
}

void store_outbox_rows_free(store_outbox_row *rows, size_t n)
{
	if (!rows)
		return;
	for (size_t i = 0; i < n; i++)
		store_outbox_row_deinit(&rows[i]);
	free(rows);
}

/* Put a payload for the row (pid, rid, event, instrument, instance). */
/*
 * A standing hold: store_outbox_hold_record() also holds the rows the
 * record gets later (a curation, an accepted review value), with the same
 * reasons, until a release of that record whose source takes them in. Kept
 * in project_kv under "hold:record:<record row id>" (no name in it).
 */
static void hold_key(char *key, size_t n, int64_t rid)
{
	snprintf(key, n, "hold:record:%lld", (long long)rid);
}

/* The source of held reasons: their first reason's "source" ("" if none). */
static char *reasons_source(const char *reasons_json)
{
	json_error_t e;
	json_t *j = reasons_json ? json_loads(reasons_json, 0, &e) : NULL;
	const char *src = json_string_value(json_object_get(json_array_get(j, 0), "source"));
	char *out = strdup(src ? src : "");
	json_decref(j);
	return out;
}

/* Does a release's source (NULL all, "x", "!x") take in held reasons of source src? */
static bool source_takes(const char *want, const char *src)
{
	if (!want)
		return true;
	if (want[0] == '!')
		return strcmp(want + 1, src) != 0;
	return strcmp(want, src) == 0;
}

typedef struct mark_args {
	enum ob_stmt_id stmt;
	int64_t id, gen, next_at;
	const char *text;
	size_t text_len;
} mark_args;

static int mark_impl(store *s, void *ud);

static int outbox_put_ids(store *s, int64_t pid, int64_t rid, const char *event, const char *instrument,
			  int64_t instance, const char *payload, size_t len, int *changed)
{
	store_outbox *ob = s->ob;
	uint8_t h[OB_HASH_LEN];
	int64_t id = 0, gen = 0;
	size_t aad_len = 0, blob_len = 0;
	sqlite3_stmt *st = NULL;
	*changed = 0;
	int rc = payload_hash(s, HASH_OUTBOX, rid, event, instrument, instance, payload, len, h);
	if (rc || (rc = ob_stmt(s, OST_OB_GET, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	sqlite3_bind_int64(st, 2, rid);
	bind_text(st, 3, event);
	bind_text(st, 4, instrument);
	sqlite3_bind_int64(st, 5, instance);
	int src = sqlite3_step(st);
	bool found = src == SQLITE_ROW, same = false;
	if (found) {
		id = sqlite3_column_int64(st, 0);
		gen = sqlite3_column_int64(st, 1);
		same = hash_equal(st, 2, h);
	}
	store__stmt_done(st);
	if (!found && src != SQLITE_DONE)
		return store__db_fail(s, src, "cannot look up an outbox row");
	if (same)
		return 0;
	gen++;
	if ((rc = aad_row(s, AAD_TAG_OUTBOX, rid, event, instrument, instance, gen, &aad_len)) != 0 ||
	    (rc = seal(s, aad_len, payload, len, &blob_len)) != 0)
		return rc;
	if ((rc = ob_stmt(s, found ? OST_OB_UPDATE : OST_OB_ADD, &st)) != 0)
		return rc;
	if (found) {
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, gen);
		sqlite3_bind_blob(st, 3, h, sizeof(h), SQLITE_STATIC);
		sqlite3_bind_blob(st, 4, ob->blob.p, (int)blob_len, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, store__now(s));
	} else {
		sqlite3_bind_int64(st, 1, pid);
		sqlite3_bind_int64(st, 2, rid);
		bind_text(st, 3, event);
		bind_text(st, 4, instrument);
		sqlite3_bind_int64(st, 5, instance);
		sqlite3_bind_blob(st, 6, h, sizeof(h), SQLITE_STATIC);
		sqlite3_bind_blob(st, 7, ob->blob.p, (int)blob_len, SQLITE_STATIC);
		sqlite3_bind_int64(st, 8, store__now(s));
	}
	if ((rc = store__stmt_exec(s, st, "cannot write an outbox row")) != 0)
		return rc;
	*changed = 1;
	if (!found)
		id = sqlite3_last_insert_rowid(s->db);
	/* The record under a standing hold: the row waits with it. */
	char key[64], *reasons = NULL;
	hold_key(key, sizeof(key), rid);
	rc = kv_get_pid(s, pid, key, &reasons);
	if (rc == STORE_E_NOTFOUND)
		return 0;
	if (rc == 0) {
		mark_args m = { .stmt = OST_OB_HOLD, .id = id, .gen = gen, .text = reasons, .text_len = strlen(reasons) };
		rc = mark_impl(s, &m);
	}
	free(reasons);
	return rc;
}

typedef struct row_args {
	const char *project, *record, *event, *instrument;
	int64_t instance;
	const char *payload;
	size_t len;
	const char *provenance; /* review only */
	int *changed;
} row_args;

static int outbox_put_impl(store *s, void *ud)
{
	const row_args *a = ud;
	int64_t pid = 0, rid = 0;
	int rc = ids_of(s, a->project, a->record, true, &pid, &rid);
	if (rc)
		return rc;
	return outbox_put_ids(s, pid, rid, a->event, a->instrument, a->instance, a->payload, a->len, a->changed);
}

/* Check the arguments shared by store_outbox_put() and store_review_put(). */
static bool row_args_ok(row_args *a)
{
	if (!a->event)
		a->event = "";
	if (!a->instrument)
		a->instrument = "";
	return key_ok(a->project, true) && key_ok(a->record, true) && key_ok(a->event, false) &&
	       key_ok(a->instrument, false) && a->instance >= 0 && a->payload && a->len <= INT_MAX;
}

int store_outbox_put(store *s, const char *project, const char *record, const char *event, const char *instrument,
		     int64_t instance, const char *payload, size_t payload_len, int *changed)
{
	int dummy = 0;
	if (!changed)
		changed = &dummy;
	*changed = 0;
	row_args a = { project, record, event, instrument, instance, payload, payload_len, NULL, changed };
	int rc = ob_write(s, "store_outbox_put", row_args_ok(&a), outbox_put_impl, &a);
	if (rc)
		*changed = 0;
	return rc;
}

/* Fill r from a row of OST_OB_DUE or OST_OB_HELD (project pid named project). */
static int due_row(store *s, sqlite3_stmt *st, int64_t pid, const char *project, store_outbox_row *r)
{
	bool held = sqlite3_column_count(st) > 12;
	r->id = sqlite3_column_int64(st, 0);
	r->gen = sqlite3_column_int64(st, 1);
	int64_t rid = sqlite3_column_int64(st, 2);
	r->instance = sqlite3_column_int64(st, 5);
	r->state = held ? STORE_OUTBOX_HELD : STORE_OUTBOX_PENDING;
	r->attempts = sqlite3_column_int(st, 7);
	r->next_at_ms = sqlite3_column_int64(st, 8);
	if (!(r->project = strdup(project)) || !(r->event = dup_text(st, 3)) || !(r->instrument = dup_text(st, 4)) ||
	    !(r->last_error = dup_text(st, 9)) || (held && !(r->reasons = dup_text(st, 12))))
		return store__oom(s);
	size_t aad_len = 0;
	int rc = open_name(s, pid, st, 10, 11, &r->record);
	if (!rc)
		rc = aad_row(s, AAD_TAG_OUTBOX, rid, r->event, r->instrument, r->instance, r->gen, &aad_len);
	if (!rc)
		rc = unseal(s, aad_len, sqlite3_column_blob(st, 6), (size_t)sqlite3_column_bytes(st, 6), "outbox row",
			    &r->payload, &r->payload_len);
	return rc;
}

/* The rows of st (bound), project pid named project, into *rows, *n. */
static int read_rows(store *s, sqlite3_stmt *st, int64_t pid, const char *project, size_t limit,
		     store_outbox_row **rows, size_t *n)
{
	int rc = 0;
	store_outbox_row *v = NULL;
	size_t cnt = 0, cap = 0;
	int src;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			size_t ncap = cap ? cap * 2 : (limit < 64 ? limit : 64);
			store_outbox_row *p = realloc(v, ncap * sizeof(*p));
			if (!p) {
				rc = store__oom(s);
				break;
			}
			v = p;
			cap = ncap;
		}
		memset(&v[cnt], 0, sizeof(v[cnt]));
		rc = due_row(s, st, pid, project, &v[cnt++]);
		if (rc)
			break;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot read the outbox");
	store__stmt_done(st);
	if (rc) {
		store_outbox_rows_free(v, cnt);
		return rc;
	}
	*rows = v;
	*n = cnt;
	return 0;
}

int store_outbox_due(store *s, const char *project, int64_t now_ms, size_t limit, store_outbox_row **rows,
		     size_t *n)
{
	int64_t pid = 0;
	sqlite3_stmt *st = NULL;
	*rows = NULL;
	*n = 0;
	int rc = project_query(s, "store_outbox_due", key_ok(project, true), limit, project, OST_OB_DUE, &pid, &st);
	if (rc || !st)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	sqlite3_bind_int64(st, 2, now_ms);
	bind_limit(st, 3, limit);
	return read_rows(s, st, pid, project, limit, rows, n);
}

static void bind_source(sqlite3_stmt *st, int i, const char *source)
{
	if (source)
		bind_text(st, i, source);
	else
		sqlite3_bind_null(st, i);
}

int store_outbox_held(store *s, const char *project, const char *source, int64_t after_id, size_t limit,
		      store_outbox_row **rows, size_t *n)
{
	int64_t pid = 0;
	sqlite3_stmt *st = NULL;
	*rows = NULL;
	*n = 0;
	bool ok = key_ok(project, true) && (!source || key_ok(source, true));
	int rc = project_query(s, "store_outbox_held", ok, limit, project, OST_OB_HELD, &pid, &st);
	if (rc || !st)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	sqlite3_bind_int64(st, 2, after_id);
	bind_source(st, 3, source);
	bind_limit(st, 4, limit);
	return read_rows(s, st, pid, project, limit, rows, n);
}

int store_outbox_held_count(store *s, const char *project, const char *source, int64_t *n)
{
	int64_t pid = 0;
	bool found = false;
	sqlite3_stmt *st = NULL;
	*n = 0;
	bool ok = key_ok(project, true) && (!source || key_ok(source, true));
	/* A limit of one row: the count. */
	int rc = project_query(s, "store_outbox_held_count", ok, 1, project, OST_OB_HELD_COUNT, &pid, &st);
	if (rc || !st)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	bind_source(st, 2, source);
	return store__stmt_int(s, st, "cannot count the held rows", &found, n);
}

int store_outbox_next_due(store *s, const char *project, int64_t *next_at_ms)
{
	int64_t pid = 0;
	bool found = false;
	sqlite3_stmt *st = NULL;
	int rc = ob_init(s);
	if (rc)
		return rc;
	*next_at_ms = 0;
	if (!key_ok(project, true))
		return bad_args(s, "store_outbox_next_due");
	if ((rc = project_id(s, project, false, &pid)) != 0 || (rc = ob_stmt(s, OST_OB_NEXT, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	if ((rc = store__stmt_int(s, st, "cannot read the outbox", &found, next_at_ms)) != 0)
		return rc;
	if (!found) {
		store__seterr(s, "nothing pending for project %s", project);
		return STORE_E_NOTFOUND;
	}
	return 0;
}

/* done, retry or hold: an update of one row that a stale gen leaves alone. */
static int mark_impl(store *s, void *ud)
{
	const mark_args *a = ud;
	sqlite3_stmt *st = NULL;
	int rc = ob_stmt(s, a->stmt, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, a->id);
	sqlite3_bind_int64(st, 2, a->gen);
	if (a->stmt == OST_OB_DONE || a->stmt == OST_OB_UNHOLD) {
		sqlite3_bind_int64(st, 3, store__now(s));
	} else if (a->stmt == OST_OB_RETRY) {
		sqlite3_bind_int64(st, 3, a->next_at);
		sqlite3_bind_text(st, 4, a->text, (int)a->text_len, SQLITE_STATIC);
	} else {
		sqlite3_bind_text(st, 3, a->text, (int)a->text_len, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, store__now(s));
	}
	if ((rc = store__stmt_exec(s, st, "cannot update an outbox row")) != 0 || sqlite3_changes(s->db) > 0)
		return rc;
	/* Nothing changed: a stale gen or state (fine), or no such row. */
	bool found = false;
	int64_t one = 0;
	if ((rc = ob_stmt(s, OST_OB_EXISTS, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, a->id);
	if ((rc = store__stmt_int(s, st, "cannot read the outbox", &found, &one)) != 0)
		return rc;
	if (!found) {
		store__seterr(s, "no outbox row %lld", (long long)a->id);
		return STORE_E_NOTFOUND;
	}
	return 0;
}

static int mark(store *s, const char *what, mark_args *a)
{
	return ob_write(s, what, a->id > 0, mark_impl, a);
}

int store_outbox_done(store *s, int64_t id, int64_t gen)
{
	mark_args a = { .stmt = OST_OB_DONE, .id = id, .gen = gen };
	return mark(s, "store_outbox_done", &a);
}

int store_outbox_retry(store *s, int64_t id, int64_t gen, int64_t next_at_ms, const char *error)
{
	if (!error)
		error = "";
	mark_args a = { .stmt = OST_OB_RETRY, .id = id, .gen = gen, .next_at = next_at_ms, .text = error };
	a.text_len = store__utf8_prefix(error, strlen(error), OB_MAX_ERROR_LEN);
	return mark(s, "store_outbox_retry", &a);
}

/* Reasons as store_outbox_hold() takes them: a JSON array. */
static bool reasons_ok(const char *reasons_json)
{
	json_error_t e;
	json_t *j = reasons_json ? json_loads(reasons_json, 0, &e) : NULL;
	bool ok = json_is_array(j);
	json_decref(j);
	return ok;
}

int store_outbox_hold(store *s, int64_t id, int64_t gen, const char *reasons_json)
{
	bool ok = reasons_ok(reasons_json);
	int rc = ob_init(s);
	if (rc)
		return rc;
	if (!ok) {
		store__seterr(s, "store_outbox_hold: the reasons are not a JSON array");
		return -EINVAL;
	}
	mark_args a = { .stmt = OST_OB_HOLD, .id = id, .gen = gen, .text = reasons_json,
			.text_len = strlen(reasons_json) };
	return mark(s, "store_outbox_hold", &a);
}

int store_outbox_unhold(store *s, int64_t id, int64_t gen)
{
	mark_args a = { .stmt = OST_OB_UNHOLD, .id = id, .gen = gen };
	return mark(s, "store_outbox_unhold", &a);
}

typedef struct release_args {
	const char *project, *record, *source, *reasons;
	int64_t *n;
} release_args;

/* End the standing holds of a project (rid 0) or of one record that the
 * release's source takes in. */
static int standing_release(store *s, int64_t pid, int64_t rid, const char *source)
{
	sqlite3_stmt *st = NULL;
	char want[64];
	hold_key(want, sizeof(want), rid);
	int rc = ob_stmt(s, OST_KV_HOLDS, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	/* Collected first: deleting while the SELECT is open is not allowed. */
	char **keys = NULL;
	size_t n = 0;
	int src;
	while (rc == 0 && (src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(st, 0);
		if (!k || (rid && strcmp(k, want) != 0))
			continue;
		char *from = reasons_source((const char *)sqlite3_column_text(st, 1));
		if (!from) {
			rc = store__oom(s);
			break;
		}
		if (source_takes(source, from)) {
			char **nk = realloc(keys, (n + 1) * sizeof(*nk));
			if (!nk || !(nk[n] = strdup(k))) {
				if (nk)
					keys = nk;
				rc = store__oom(s);
			} else {
				keys = nk;
				n++;
			}
		}
		free(from);
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot read the standing holds");
	store__stmt_done(st);
	for (size_t i = 0; i < n; i++) {
		if (rc == 0)
			rc = kv_put_pid(s, pid, keys[i], NULL);
		free(keys[i]);
	}
	free(keys);
	return rc;
}

/* Release (reasons NULL) or hold (reasons set) the rows of a project or record. */
static int release_impl(store *s, void *ud)
{
	const release_args *a = ud;
	int64_t pid = 0, rid = 0;
	sqlite3_stmt *st = NULL;
	bool hold = a->reasons != NULL;
	int rc = project_id(s, a->project, false, &pid);
	if (!rc && a->record)
		rc = record_id(s, pid, a->record, false, &rid);
	if (rc == STORE_E_NOTFOUND)
		return 0;
	if (rc || (rc = ob_stmt(s, hold ? OST_OB_HOLD_RECORD : a->record ? OST_OB_RELEASE_RECORD : OST_OB_RELEASE,
				&st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	if (hold) {
		sqlite3_bind_int64(st, 2, rid);
		bind_text(st, 3, a->reasons);
		sqlite3_bind_int64(st, 4, store__now(s));
	} else {
		sqlite3_bind_int64(st, 2, store__now(s));
		if (a->record)
			sqlite3_bind_int64(st, 3, rid);
		bind_source(st, 4, a->source);
	}
	if ((rc = store__stmt_exec(s, st, hold ? "cannot hold a record's rows" : "cannot release held rows")) != 0)
		return rc;
	*a->n = sqlite3_changes(s->db);
	char key[64];
	if (hold) {
		hold_key(key, sizeof(key), rid);
		return kv_put_pid(s, pid, key, a->reasons);
	}
	return standing_release(s, pid, a->record ? rid : 0, a->source);
}

/* Run release_impl as fn: *a->n the rows changed (a->n may be NULL), 0 on error. */
static int release_write(store *s, const char *fn, bool args_ok, release_args *a)
{
	int64_t dummy = 0;
	if (!a->n)
		a->n = &dummy;
	*a->n = 0;
	int rc = ob_write(s, fn, args_ok, release_impl, a);
	if (rc)
		*a->n = 0;
	return rc;
}

int store_outbox_release(store *s, const char *project, const char *record, const char *source, int64_t *n)
{
	release_args a = { .project = project, .record = record, .source = source, .n = n };
	bool ok = key_ok(project, true) && (!record || key_ok(record, true)) && (!source || key_ok(source, true));
	return release_write(s, "store_outbox_release", ok, &a);
}

int store_outbox_hold_record(store *s, const char *project, const char *record, const char *reasons_json, int64_t *n)
{
	release_args a = { .project = project, .record = record, .reasons = reasons_json, .n = n };
	bool ok = key_ok(project, true) && key_ok(record, true) && reasons_ok(reasons_json);
	return release_write(s, "store_outbox_hold_record", ok, &a);
}

/* ---- outbox status ------------------------------------------------------ */

static json_t *null_if_empty(const char *str)
{
	return str && *str ? store__jstr(str) : json_null();
}

/* The held rows of project pid, newest first, into arr. */
static int status_held(store *s, int64_t pid, size_t limit, json_t *arr)
{
	sqlite3_stmt *st = NULL;
	int rc = ob_stmt(s, OST_ST_HELD, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	bind_limit(st, 2, limit);
	int src;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		char *record = NULL;
		if ((rc = open_name(s, pid, st, 6, 7, &record)) != 0)
			break;
		const char *reasons = col_text(st, 4);
		json_error_t e;
		json_t *rj = reasons ? json_loads(reasons, 0, &e) : NULL;
		int64_t instance = sqlite3_column_int64(st, 3);
		json_t *o = json_object();
		int bad = !o || json_array_append_new(arr, o) != 0;
		bad = bad || json_object_set_new(o, "record", store__jstr(record)) != 0;
		bad = bad || json_object_set_new(o, "event", null_if_empty(col_text(st, 1))) != 0;
		bad = bad || json_object_set_new(o, "instrument", null_if_empty(col_text(st, 2))) != 0;
		bad = bad ||
		      json_object_set_new(o, "instance", instance > 0 ? json_integer(instance) : json_null()) != 0;
		bad = bad || json_object_set_new(o, "reasons", json_is_array(rj) ? json_incref(rj) : json_array()) != 0;
		bad = bad || json_object_set_new(o, "since", instant_json(sqlite3_column_int64(st, 5))) != 0;
		json_decref(rj);
		free_secret(record, strlen(record));
		if (bad) {
			rc = store__oom(s);
			break;
		}
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot read the held rows");
	store__stmt_done(st);
	return rc;
}

static int status_refused(store *s, int64_t pid, json_t *arr)
{
	sqlite3_stmt *st = NULL;
	int rc = ob_stmt(s, OST_ST_REFUSED, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	int src;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = json_pack("{s:o, s:o}", "patient", col_json(st, 0), "reason", col_json(st, 1));
		if (!o || json_array_append_new(arr, o) != 0) {
			rc = store__oom(s);
			break;
		}
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot read the refused patients");
	store__stmt_done(st);
	return rc;
}

static int count1(store *s, enum ob_stmt_id id, int64_t pid, int64_t *n)
{
	sqlite3_stmt *st = NULL;
	bool found = false;
	int rc = ob_stmt(s, id, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	*n = 0;
	return store__stmt_int(s, st, "cannot read the outbox status", &found, n);
}

/* One project's figures. */
static int status_project(store *s, int64_t pid, size_t held_limit, json_t *o)
{
	int64_t total = 0, pending = 0, held = 0, review = 0;
	sqlite3_stmt *st = NULL;
	int rc = count1(s, OST_ST_TOTAL, pid, &total);
	if (rc || (rc = count1(s, OST_ST_REVIEW, pid, &review)) != 0 || (rc = ob_stmt(s, OST_ST_STATE, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		pending = sqlite3_column_int64(st, 0);
		held = sqlite3_column_int64(st, 1);
	}
	store__stmt_done(st);
	if (src != SQLITE_ROW)
		return store__db_fail(s, src, "cannot read the outbox status");
	json_t *rows = json_array(), *refused = json_array();
	int bad = json_object_set_new(o, "pending", json_integer(pending));
	bad |= json_object_set_new(o, "done", json_integer(total - pending - held));
	bad |= json_object_set_new(o, "held", json_integer(held));
	bad |= json_object_set_new(o, "held_rows", rows ? json_incref(rows) : NULL);
	bad |= json_object_set_new(o, "refused", refused ? json_incref(refused) : NULL);
	bad |= json_object_set_new(o, "review_pending", json_integer(review));
	if (bad)
		rc = store__oom(s);
	if (!rc && held_limit > 0 && held > 0)
		rc = status_held(s, pid, held_limit, rows);
	if (!rc)
		rc = status_refused(s, pid, refused);
	json_decref(rows);
	json_decref(refused);
	return rc;
}

json_t *store_outbox_status_json(store *s, size_t held_limit)
{
	if (ob_init(s) != 0)
		return NULL;
	json_t *root = json_object(), *projects = json_object();
	bool own = false;
	sqlite3_stmt *st = NULL;
	int rc = 0, src;
	if (!root || !projects || json_object_set(root, "projects", projects) != 0) {
		rc = store__oom(s);
		goto out;
	}
	if ((rc = store__snapshot_begin(s, "cannot read the outbox status", &own)) != 0)
		goto out;
	if ((rc = ob_stmt(s, OST_ST_PROJECTS, &st)) != 0)
		goto out;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = col_text(st, 1);
		json_t *o = json_object();
		if (!name || !o || json_object_set_new(projects, name, o) != 0) {
			rc = store__oom(s);
			break;
		}
		if ((rc = status_project(s, sqlite3_column_int64(st, 0), held_limit, o)) != 0)
			break;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot read the outbox status");
	store__stmt_done(st);
out:
	store__snapshot_end(s, own);
	json_decref(projects);
	if (rc) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/* ---- provenance --------------------------------------------------------- */

typedef struct prov_entry {
	const char *field, *rule, *res_type, *res_id, *res_version;
} prov_entry;

static int prov_put_ids(store *s, int64_t rid, const char *event, const char *instrument, int64_t instance,
			const prov_entry *e)
{
	sqlite3_stmt *st = NULL;
	int rc = ob_stmt(s, OST_PROV_PUT, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, rid);
	bind_text(st, 2, e->field);
	bind_text(st, 3, event);
	bind_text(st, 4, instrument);
	sqlite3_bind_int64(st, 5, instance);
	bind_text(st, 6, e->rule);
	bind_text(st, 7, e->res_type);
	bind_text(st, 8, e->res_id);
	bind_text(st, 9, e->res_version);
	sqlite3_bind_int64(st, 10, store__now(s));
	return store__stmt_exec(s, st, "cannot record provenance");
}

typedef struct prov_args {
	row_args row;
	prov_entry e;
} prov_args;

static int prov_put_impl(store *s, void *ud)
{
	const prov_args *a = ud;
	int64_t pid = 0, rid = 0;
	int rc = ids_of(s, a->row.project, a->row.record, true, &pid, &rid);
	return rc ? rc : prov_put_ids(s, rid, a->row.event, a->row.instrument, a->row.instance, &a->e);
}

static bool prov_entry_ok(prov_entry *e)
{
	if (!e->res_version)
		e->res_version = "";
	return key_ok(e->field, true) && key_ok(e->rule, false) && key_ok(e->res_type, false) &&
	       key_ok(e->res_id, false) && key_ok(e->res_version, false);
}

int store_provenance_put(store *s, const char *project, const char *record, const char *event,
			 const char *instrument, int64_t instance, const char *field, const char *rule,
			 const char *res_type, const char *res_id, const char *res_version)
{
	prov_args a = { .row = { project, record, event, instrument, instance, "", 0, NULL, NULL },
			.e = { field, rule, res_type, res_id, res_version } };
	bool ok = row_args_ok(&a.row) && prov_entry_ok(&a.e);
	return ob_write(s, "store_provenance_put", ok, prov_put_impl, &a);
}

json_t *store_provenance_get(store *s, const char *project, const char *record, const char *field)
{
	int64_t pid = 0, rid = 0;
	sqlite3_stmt *st = NULL;
	if (ob_init(s) != 0)
		return NULL;
	if (!key_ok(project, true) || !key_ok(record, true) || !key_ok(field, true)) {
		bad_args(s, "store_provenance_get");
		return NULL;
	}
	json_t *arr = json_array();
	if (!arr) {
		store__oom(s);
		return NULL;
	}
	int rc = ids_of(s, project, record, false, &pid, &rid);
	if (rc == STORE_E_NOTFOUND)
		return arr;
	if (rc || (rc = ob_stmt(s, OST_PROV_GET, &st)) != 0) {
		json_decref(arr);
		return NULL;
	}
	sqlite3_bind_int64(st, 1, rid);
	bind_text(st, 2, field);
	int src;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = json_object();
		int bad = !o || json_array_append_new(arr, o) != 0;
		bad = bad || json_object_set_new(o, "event", col_json(st, 0)) != 0;
		bad = bad || json_object_set_new(o, "instrument", col_json(st, 1)) != 0;
		bad = bad || json_object_set_new(o, "instance", json_integer(sqlite3_column_int64(st, 2))) != 0;
		bad = bad || json_object_set_new(o, "rule", col_json(st, 3)) != 0;
		bad = bad || json_object_set_new(o, "resource_type", col_json(st, 4)) != 0;
		bad = bad || json_object_set_new(o, "resource_id", col_json(st, 5)) != 0;
		bad = bad || json_object_set_new(o, "resource_version", col_json(st, 6)) != 0;
		bad = bad || json_object_set_new(o, "at", instant_json(sqlite3_column_int64(st, 7))) != 0;
		if (bad) {
			rc = store__oom(s);
			break;
		}
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot read provenance");
	store__stmt_done(st);
	if (rc) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

/* ---- review queue ------------------------------------------------------- */

/* provenance_json must be an array of objects with string field and rule (see store_review_decide). */
static bool provenance_ok(const char *txt)
{
	json_error_t e;
	json_t *j = json_loads(txt, JSON_REJECT_DUPLICATES, &e), *v;
	size_t i;
	bool ok = json_is_array(j);
	json_array_foreach(j, i, v)
	{
		if (!json_is_object(v) || !json_is_string(json_object_get(v, "field")))
			ok = false;
	}
	json_decref(j);
	return ok;
}

static int review_put_impl(store *s, void *ud)
{
	const row_args *a = ud;
	store_outbox *ob = s->ob;
	int64_t pid = 0, rid = 0, old = 0;
	uint8_t h[OB_HASH_LEN];
	size_t aad_len = 0, blob_len = 0;
	sqlite3_stmt *st = NULL;
	int rc = ids_of(s, a->project, a->record, true, &pid, &rid);
	if (rc)
		return rc;
	rc = payload_hash(s, HASH_REVIEW, rid, a->event, a->instrument, a->instance, a->payload, a->len, h);
	if (rc || (rc = ob_stmt(s, OST_REV_GET, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, rid);
	bind_text(st, 2, a->event);
	bind_text(st, 3, a->instrument);
	sqlite3_bind_int64(st, 4, a->instance);
	int src = sqlite3_step(st);
	bool found = src == SQLITE_ROW, same = false;
	if (found) {
		old = sqlite3_column_int64(st, 0);
		same = hash_equal(st, 1, h);
	}
	store__stmt_done(st);
	if (!found && src != SQLITE_DONE)
		return store__db_fail(s, src, "cannot look up a review entry");
	if (same) {
		/* Pending, accepted or rejected: these values were seen. They may come from
		 * other sources now (a new version, say): a pending entry's provenance follows. */
		if ((rc = ob_stmt(s, OST_REV_PROV, &st)) != 0)
			return rc;
		sqlite3_bind_int64(st, 1, old);
		bind_text(st, 2, a->provenance);
		return store__stmt_exec(s, st, "cannot update a review entry");
	}
	/* A new payload: a new entry (new id) replaces the old one, whatever its state. */
	if (found) {
		if ((rc = ob_stmt(s, OST_REV_DEL, &st)) != 0)
			return rc;
		sqlite3_bind_int64(st, 1, old);
		if ((rc = store__stmt_exec(s, st, "cannot replace a review entry")) != 0)
			return rc;
	}
	if ((rc = aad_row(s, AAD_TAG_REVIEW, rid, a->event, a->instrument, a->instance, 0, &aad_len)) != 0 ||
	    (rc = seal(s, aad_len, a->payload, a->len, &blob_len)) != 0 || (rc = ob_stmt(s, OST_REV_ADD, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, pid);
	sqlite3_bind_int64(st, 2, rid);
	bind_text(st, 3, a->event);
	bind_text(st, 4, a->instrument);
	sqlite3_bind_int64(st, 5, a->instance);
	sqlite3_bind_blob(st, 6, h, sizeof(h), SQLITE_STATIC);
	sqlite3_bind_blob(st, 7, ob->blob.p, (int)blob_len, SQLITE_STATIC);
	bind_text(st, 8, a->provenance);
	sqlite3_bind_int64(st, 9, store__now(s));
	if ((rc = store__stmt_exec(s, st, "cannot queue a review entry")) != 0)
		return rc;
	*a->changed = 1;
	return 0;
}

int store_review_put(store *s, const char *project, const char *record, const char *event, const char *instrument,
		     int64_t instance, const char *payload, size_t payload_len, const char *provenance_json,
		     int *queued)
{
	int dummy = 0;
	if (!queued)
		queued = &dummy;
	*queued = 0;
	int rc = ob_init(s);
	if (rc)
		return rc;
	if (!provenance_json)
		provenance_json = "[]";
	row_args a = { project, record, event, instrument, instance, payload, payload_len, provenance_json, queued };
	if (!row_args_ok(&a))
		return bad_args(s, "store_review_put");
	json_error_t e;
	json_t *j = json_loadb(payload, payload_len, JSON_REJECT_DUPLICATES, &e);
	bool obj = json_is_object(j);
	json_decref(j);
	if (!obj || !provenance_ok(provenance_json)) {
		store__seterr(s, "store_review_put: the payload must be a JSON object and the provenance an array of "
				 "objects with a field");
		return -EINVAL;
	}
	rc = store__write(s, "store_review_put", review_put_impl, &a);
	if (rc)
		*queued = 0;
	return rc;
}

static const char *review_state_name(int state)
{
	switch (state) {
	case STORE_REVIEW_PENDING:
		return "pending";
	case STORE_REVIEW_ACCEPTED:
		return "accepted";
	case STORE_REVIEW_REJECTED:
		return "rejected";
	default:
		return "unknown";
	}
}

/* One entry of store_review_list() from its row. */
static int review_entry(store *s, sqlite3_stmt *st, json_t *arr)
{
	int64_t pid = sqlite3_column_int64(st, 2), rid = sqlite3_column_int64(st, 5);
	const char *event = col_text(st, 6);
	const char *instrument = col_text(st, 7);
	int64_t instance = sqlite3_column_int64(st, 8);
	char *record = NULL, *payload = NULL;
	size_t aad_len = 0, len = 0;
	if (!event)
		event = "";
	if (!instrument)
		instrument = "";
	int rc = open_name(s, pid, st, 3, 4, &record);
	if (!rc)
		rc = aad_row(s, AAD_TAG_REVIEW, rid, event, instrument, instance, 0, &aad_len);
	if (!rc)
		rc = unseal(s, aad_len, sqlite3_column_blob(st, 9), (size_t)sqlite3_column_bytes(st, 9), "review entry",
			    &payload, &len);
	if (rc) {
		free_secret(record, record ? strlen(record) : 0);
		return rc;
	}
	json_error_t e;
	json_t *values = json_loadb(payload, len, 0, &e);
	const char *prov = col_text(st, 10);
	json_t *pj = prov ? json_loads(prov, 0, &e) : NULL;
	free_secret(payload, len);
	json_t *o = json_object();
	int bad = !o || json_array_append_new(arr, o) != 0;
	bad = bad || json_object_set_new(o, "id", json_integer(sqlite3_column_int64(st, 0))) != 0;
	bad = bad || json_object_set_new(o, "project", col_json(st, 1)) != 0;
	bad = bad || json_object_set_new(o, "record", store__jstr(record)) != 0;
	bad = bad || json_object_set_new(o, "event", store__jstr(event)) != 0;
	bad = bad || json_object_set_new(o, "instrument", store__jstr(instrument)) != 0;
	bad = bad || json_object_set_new(o, "instance", json_integer(instance)) != 0;
	bad = bad ||
	      json_object_set_new(o, "values", json_is_object(values) ? json_incref(values) : json_object()) != 0;
	bad = bad || json_object_set_new(o, "provenance", json_is_array(pj) ? json_incref(pj) : json_array()) != 0;
	bad = bad || json_object_set_new(o, "state", json_string(review_state_name(sqlite3_column_int(st, 11)))) != 0;
	bad = bad || json_object_set_new(o, "queued_at", instant_json(sqlite3_column_int64(st, 12))) != 0;
	bool decided = sqlite3_column_type(st, 13) != SQLITE_NULL;
	bad = bad || json_object_set_new(o, "decided_at",
					 decided ? instant_json(sqlite3_column_int64(st, 13)) : json_null()) != 0;
	bad = bad || json_object_set_new(o, "decided_by", decided ? col_json(st, 14) : json_null()) != 0;
	json_decref(values);
	json_decref(pj);
	free_secret(record, strlen(record));
	return bad ? store__oom(s) : 0;
}

json_t *store_review_list(store *s, const char *project, int state)
{
	sqlite3_stmt *st = NULL;
	if (ob_init(s) != 0)
		return NULL;
	json_t *arr = json_array();
	if (!arr) {
		store__oom(s);
		return NULL;
	}
	int rc = store__prepare(s,
				"SELECT v.id, p.name, v.project, r.record_hash, r.name, v.record, v.event,"
				" v.instrument, v.instance, v.payload, v.provenance, v.state, v.queued_at,"
				" v.decided_at, v.decided_by"
				" FROM review v JOIN projects p ON p.id = v.project JOIN records r ON r.id = v.record"
				" WHERE (?1 IS NULL OR p.name = ?1) AND (?2 < 0 OR v.state = ?2) ORDER BY v.id",
				&st, "cannot read the review queue");
	if (rc) {
		json_decref(arr);
		return NULL;
	}
	if (project)
		bind_text(st, 1, project);
	sqlite3_bind_int(st, 2, state < 0 ? -1 : state);
	int src;
	while ((src = sqlite3_step(st)) == SQLITE_ROW)
		if ((rc = review_entry(s, st, arr)) != 0)
			break;
	if (rc == 0 && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot read the review queue");
	sqlite3_finalize(st);
	if (rc) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

typedef struct decide_args {
	int64_t id;
	bool accept;
	const char *actor;
} decide_args;

/* Write the entries of provenance (array text) for row rid/event/instrument/instance. */
static int decide_provenance(store *s, int64_t rid, const char *event, const char *instrument, int64_t instance,
			     const char *provenance)
{
	json_error_t e;
	json_t *j = json_loads(provenance ? provenance : "[]", 0, &e), *v;
	size_t i;
	int rc = 0;
	if (!json_is_array(j)) {
		json_decref(j);
		store__seterr(s, "a review entry's provenance in the store %s is damaged", s->db_path);
		return STORE_E_CORRUPT;
	}
	json_array_foreach(j, i, v)
	{
		prov_entry pe = {
			json_string_value(json_object_get(v, "field")),
			json_string_value(json_object_get(v, "rule")),
			json_string_value(json_object_get(v, "resource_type")),
			json_string_value(json_object_get(v, "resource_id")),
			json_string_value(json_object_get(v, "resource_version")),
		};
		if (!pe.rule)
			pe.rule = "";
		if (!pe.res_type)
			pe.res_type = "";
		if (!pe.res_id)
			pe.res_id = "";
		if (!prov_entry_ok(&pe))
			continue; /* checked at put; nothing useful to record */
		if ((rc = prov_put_ids(s, rid, event, instrument, instance, &pe)) != 0)
			break;
	}
	json_decref(j);
	return rc;
}

static int decide_accept(store *s, sqlite3_stmt *st)
{
	int64_t pid = sqlite3_column_int64(st, 0), rid = sqlite3_column_int64(st, 1);
	int64_t instance = sqlite3_column_int64(st, 4);
	char *event = dup_text(st, 2), *instrument = dup_text(st, 3), *payload = NULL, *prov = dup_text(st, 6);
	size_t aad_len = 0, len = 0;
	int changed = 0, rc = 0;
	if (!event || !instrument || !prov)
		rc = store__oom(s);
	if (!rc)
		rc = aad_row(s, AAD_TAG_REVIEW, rid, event, instrument, instance, 0, &aad_len);
	if (!rc)
		rc = unseal(s, aad_len, sqlite3_column_blob(st, 5), (size_t)sqlite3_column_bytes(st, 5), "review entry",
			    &payload, &len);
	/* st is done with: the writes below use other statements. */
	store__stmt_done(st);
	if (!rc)
		rc = outbox_put_ids(s, pid, rid, event, instrument, instance, payload, len, &changed);
	if (!rc)
		rc = decide_provenance(s, rid, event, instrument, instance, prov);
	free_secret(payload, len);
	free(event);
	free(instrument);
	free(prov);
	return rc;
}

static int decide_impl(store *s, void *ud)
{
	const decide_args *a = ud;
	sqlite3_stmt *st = NULL;
	int rc = ob_stmt(s, OST_REV_LOAD, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, a->id);
	int src = sqlite3_step(st);
	if (src != SQLITE_ROW) {
		store__stmt_done(st);
		if (src != SQLITE_DONE)
			return store__db_fail(s, src, "cannot read a review entry");
		store__seterr(s, "no review entry %lld is waiting for a decision", (long long)a->id);
		return STORE_E_NOTFOUND;
	}
	if (a->accept)
		rc = decide_accept(s, st);
	else
		store__stmt_done(st);
	if (rc || (rc = ob_stmt(s, OST_REV_DECIDE, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, a->id);
	sqlite3_bind_int(st, 2, a->accept ? STORE_REVIEW_ACCEPTED : STORE_REVIEW_REJECTED);
	sqlite3_bind_int64(st, 3, store__now(s));
	bind_text(st, 4, a->actor);
	return store__stmt_exec(s, st, "cannot record a review decision");
}

int store_review_decide(store *s, int64_t id, bool accept, const char *actor)
{
	if (!actor)
		actor = "";
	decide_args a = { id, accept, actor };
	return ob_write(s, "store_review_decide", id > 0 && key_ok(actor, false), decide_impl, &a);
}

int store_keyed_digest(store *s, const char *label, const void *data, size_t len, char out[65])
{
	uint8_t h[OB_HASH_LEN];
	int rc;
	if (!s || !label || (!data && len) || !out)
		return -EINVAL;
	if ((rc = ob_init(s)) != 0)
		return rc;
	store__kmac_begin(&s->ob->mac, HASH_CALLER);
	store__kmac_str(&s->ob->mac, label);
	store__kmac_bytes(&s->ob->mac, data, len);
	if ((rc = store__kmac_final(s, &s->ob->mac, h, OB_HASH_LEN)) != 0)
		return rc;
	for (size_t i = 0; i < OB_HASH_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
	return 0;
}

typedef struct prov_clear_args {
	row_args row;
	const char *field;
	int *existed;
} prov_clear_args;

static int prov_clear_impl(store *s, void *ud)
{
	const prov_clear_args *a = ud;
	int64_t pid = 0, rid = 0;
	sqlite3_stmt *st = NULL;
	int rc = ids_of(s, a->row.project, a->row.record, false, &pid, &rid);
	if (rc == STORE_E_NOTFOUND)
		return 0;
	if (rc || (rc = ob_stmt(s, OST_PROV_DEL, &st)) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, rid);
	bind_text(st, 2, a->field);
	bind_text(st, 3, a->row.event);
	bind_text(st, 4, a->row.instrument);
	sqlite3_bind_int64(st, 5, a->row.instance);
	if ((rc = store__stmt_exec(s, st, "cannot clear provenance")) == 0)
		*a->existed = sqlite3_changes(s->db) > 0;
	return rc;
}

int store_provenance_clear(store *s, const char *project, const char *record, const char *event,
			   const char *instrument, int64_t instance, const char *field, int *existed)
{
	int dummy = 0;
	if (!existed)
		existed = &dummy;
	*existed = 0;
	prov_clear_args a = { .row = { project, record, event, instrument, instance, "", 0, NULL, NULL },
			      .field = field, .existed = existed };
	bool ok = row_args_ok(&a.row) && key_ok(field, true);
	return ob_write(s, "store_provenance_clear", ok, prov_clear_impl, &a);
}
