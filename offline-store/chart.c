/*
 * offline-store/chart.c — downtime charting (see chart.h; the tables and
 * why they look so are described in schema.c, version 4).
 *
 * PHI at rest. Entry bodies, Provenance, the EHR's conflicting version and
 * temporary patients' demographics reach SQLite only as crypto.h blobs
 * whose AAD names the row: for an entry (uuid, server, kind, patient) and
 * which of its three blobs it is, for a temporary patient its id. Search
 * tokens reach it only as keyed hashes.
 *
 * Keys. Two sub-keys are derived from the store key as HMAC-SHA-256(store
 * key, label), like crypto.c's and outbox.c's: one keys the audit chain,
 * one the patient index. Neither is the AES key nor another module's key,
 * so an index hash can never stand for an audit hash or a record-name hash.
 * The keyed hashes, the AAD encoding and the per-call sealing are encode.c's
 * (store-internal.h), shared with outbox.c and kv.c.
 *
 * Statements are prepared per call (as kv.c does): these calls run at the
 * rate people type, and a statement per call lets callbacks use the store.
 * The ciphertext and AAD buffers are per call too; decrypted bodies are
 * wiped before they are freed.
 *
 * The audit chain. Row n's hash is HMAC(audit key, 'r' || seq || ts_ms ||
 * actor || action || subject || detail || prev_hash), every string with a
 * presence byte and a 64-bit length (so NULL, "" and shifted boundaries all
 * hash differently), prev_hash being row n-1's hash (32 zero bytes for the
 * first). A changed row fails its own hash; a deleted or moved one breaks
 * the next row's prev_hash; rows cut off the end are caught by the head
 * record (meta 'audit_head': the last seq and HMAC(audit key, 'h' || seq ||
 * hash)), which only the key holder can make. What a chain cannot catch is
 * an older state put back whole: a copy of the head record taken earlier,
 * with the rows after it deleted, or the whole file from a backup.
 */
#include "offline-store/chart.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "offline-store/crypto.h"
#include "offline-store/instant.h"
#include "offline-store/store-internal.h"

_Static_assert(STORE_E_STATE > STORE_E_BUSY, "STORE_E_STATE must stay apart from store.h's codes");

/* AAD tags; store.c uses 'R' and 'K', outbox.c 'N', 'O' and 'V', kv.c 'E'. */
#define AAD_TAG_CHART 'D'
#define AAD_TAG_TEMP 'T'
/* Which blob of an entry. */
#define BLOB_BODY 'b'
#define BLOB_PROVENANCE 'p'
#define BLOB_CONFLICT 'c'

/* First byte of every keyed hash input. */
#define HASH_AUDIT_ROW 'r'
#define HASH_AUDIT_HEAD 'h'
#define HASH_INDEX_TOKEN 't'

#define AUDIT_HASH_LEN 32
#define AUDIT_HEAD_LEN (8 + AUDIT_HASH_LEN)
#define AUDIT_MAX_DETAIL 65536
#define INDEX_HASH_LEN 16
/* Longest last_error kept (cut at a UTF-8 boundary). */
#define CHART_MAX_ERROR_LEN 1024

static const char audit_label[] = "fhir-redcap-bridge store audit v1";
static const char index_label[] = "fhir-redcap-bridge store patient-index v1";

static const char *const state_names[] = {
	[STORE_CHART_PENDING] = "pending",   [STORE_CHART_WRITTEN] = "written",
	[STORE_CHART_CONFLICT] = "conflict", [STORE_CHART_WAITING_LINK] = "waiting_link",
	[STORE_CHART_REJECTED] = "rejected", [STORE_CHART_DISCARDED] = "discarded",
};
#define N_STATES ((int)(sizeof(state_names) / sizeof(state_names[0])))

/* ---- small helpers ------------------------------------------------------ */

static int bad_arg(store *s, const char *fn, const char *what)
{
	if (s)
		store__seterr(s, "%s: %s", fn, what);
	return -EINVAL;
}

/* A string of at most max bytes; non-empty if required; NULL allowed if !required. */
static bool str_ok(const char *str, size_t max, bool required)
{
	if (!str)
		return !required;
	if (required && !str[0])
		return false;
	return strnlen(str, max + 1) <= max;
}

/* An optional string: NULL, or non-empty and at most max bytes. */
static bool opt_ok(const char *str, size_t max)
{
	return !str || (str[0] && strnlen(str, max + 1) <= max);
}

static const char *col_text(sqlite3_stmt *st, int col)
{
	return (const char *)sqlite3_column_text(st, col);
}

/* Copy a text column: NULL stays NULL (*p NULL, returns true); false only on OOM. */
static bool dup_opt(sqlite3_stmt *st, int col, char **p)
{
	*p = NULL;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return true;
	const char *t = col_text(st, col);
	*p = strdup(t ? t : "");
	return *p != NULL;
}

/* Copy a text column that is never NULL (NULL reads as ""); false only on OOM. */
static bool dup_req(sqlite3_stmt *st, int col, char **p)
{
	const char *t = col_text(st, col);
	*p = strdup(t ? t : "");
	return *p != NULL;
}

/* A text column as a new JSON string, or null for SQL NULL. NULL only on OOM. */
static json_t *col_json_opt(sqlite3_stmt *st, int col)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return json_null();
	return store__jstr(col_text(st, col));
}

static json_t *col_json(sqlite3_stmt *st, int col)
{
	return store__jstr(col_text(st, col));
}

/* Wipe and free a secret of len bytes (NUL included by the caller if wanted). */
static void free_secret(char *p, size_t len)
{
	if (p)
		OPENSSL_cleanse(p, len);
	free(p);
}

/* The length of text given as (p, len) with len 0 meaning strlen(p). */
static size_t text_len(const char *p, size_t len)
{
	return p && len == 0 ? strlen(p) : len;
}

/* A LIMIT parameter: 0 (or more than SQLite counts) is no limit. */
static int64_t sql_limit(size_t limit)
{
	return limit == 0 || limit > INT64_MAX ? -1 : (int64_t)limit;
}

/* ---- statements ---------------------------------------------------------- */

/* store__prepare() sql with ?1 bound to key, which must outlive the statement. */
static int prepare_key(store *s, const char *sql, const char *key, sqlite3_stmt **st, const char *what)
{
	int rc = store__prepare(s, sql, st, what);
	if (!rc)
		sqlite3_bind_text(*st, 1, key, -1, SQLITE_STATIC);
	return rc;
}

/* Step st (finalized here): *found says whether it gave a row. 0 or an error (what). */
static int step_exists(store *s, sqlite3_stmt *st, const char *what, bool *found)
{
	int src = sqlite3_step(st);
	sqlite3_finalize(st);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return store__db_fail(s, src, what);
	*found = src == SQLITE_ROW;
	return 0;
}

/*
 * A row about to be added under key: -EEXIST when sql (?1 = key) gives a row
 * already ("<thing> <key> exists already"), 0 when it gives none, else an
 * error (what).
 */
static int must_be_new(store *s, const char *sql, const char *key, const char *thing, const char *what)
{
	sqlite3_stmt *st = NULL;
	bool found = false;
	int rc = prepare_key(s, sql, key, &st, what);
	if (rc || (rc = step_exists(s, st, what, &found)) != 0)
		return rc;
	if (found) {
		store__seterr(s, "%s %s exists already", thing, key);
		return -EEXIST;
	}
	return 0;
}

/*
 * Step st (left to the caller) to its one row: 0 when there is one,
 * STORE_E_NOTFOUND ("no <thing> <key>") when there is none, else an error
 * (what).
 */
static int step_one(store *s, sqlite3_stmt *st, const char *thing, const char *key, const char *what)
{
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW)
		return 0;
	if (src == SQLITE_DONE) {
		store__seterr(s, "no %s %s", thing, key);
		return STORE_E_NOTFOUND;
	}
	return store__db_fail(s, src, what);
}

/* ---- rows as JSON -------------------------------------------------------- */

/* How a column becomes a JSON value. */
typedef enum json_kind {
	J_INT,      /* integer */
	J_BOOL,     /* integer, true when non-zero */
	J_TEXT,     /* string ("" for NULL) */
	J_TEXT_OPT, /* string, or null for NULL */
	J_STATE,    /* a chart entry state, by name */
} json_kind;

/* One key of a listed object and the kind of the column that gives it. */
typedef struct json_col {
	const char *key;
	json_kind kind;
} json_col;

#define N_COLS(cols) (sizeof(cols) / sizeof((cols)[0]))

/* Column col of st as a new JSON value of kind k; NULL only on OOM. */
static json_t *col_value(sqlite3_stmt *st, int col, json_kind k)
{
	switch (k) {
	case J_INT:
		return json_integer(sqlite3_column_int64(st, col));
	case J_BOOL:
		return json_boolean(sqlite3_column_int(st, col) != 0);
	case J_TEXT:
		return col_json(st, col);
	case J_TEXT_OPT:
		return col_json_opt(st, col);
	case J_STATE:
		return json_string(store_chart_state_name(sqlite3_column_int(st, col)));
	}
	return NULL;
}

/*
 * The rows of st (prepared and bound by the caller, finalized here) as a new
 * array of objects. Per row, pre (if not NULL) fills the object first from
 * the columns before `first`; then column first + i gives key cols[i].key.
 * NULL on failure, the message set (what for a database failure).
 */
static json_t *rows_json(store *s, sqlite3_stmt *st, int (*pre)(store *s, sqlite3_stmt *st, json_t *o), int first,
			 const json_col *cols, size_t n, const char *what)
{
	json_t *arr = json_array();
	int rc = arr ? 0 : store__oom(s), src = SQLITE_DONE;
	while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = json_object();
		if (!o || json_array_append_new(arr, o) != 0) {
			rc = store__oom(s);
			break;
		}
		if (pre && (rc = pre(s, st, o)) != 0)
			break;
		for (size_t i = 0; !rc && i < n; i++)
			/* json_object_set_new() consumes the value even when it fails. */
			if (json_object_set_new(o, cols[i].key, col_value(st, first + (int)i, cols[i].kind)) != 0)
				rc = store__oom(s);
	}
	if (!rc && src != SQLITE_DONE)
		rc = store__db_fail(s, src, what);
	sqlite3_finalize(st);
	if (rc) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

/* ---- blobs bound to their row -------------------------------------------- */

/* What an entry's blobs are bound to: their AAD names these. */
typedef struct entry_key {
	const char *uuid;
	int64_t server;
	const char *kind, *patient;
} entry_key;

/* The AAD of blob `which` of an entry, into a. */
static int entry_aad(store *s, store_bytes *a, uint8_t which, const entry_key *k)
{
	uint8_t head[3] = { AAD_TAG_CHART, STORE_BLOB_VERSION, which };
	store__bytes_reset(a);
	store__bytes_put(a, head, sizeof(head));
	store__bytes_str(a, k->uuid);
	store__bytes_i64(a, k->server);
	store__bytes_str(a, k->kind);
	store__bytes_str(a, k->patient);
	return a->oom ? store__oom(s) : 0;
}

/* The AAD of a temporary patient's demographics, into a. */
static int temp_aad(store *s, store_bytes *a, const char *id)
{
	uint8_t head[2] = { AAD_TAG_TEMP, STORE_BLOB_VERSION };
	store__bytes_reset(a);
	store__bytes_put(a, head, sizeof(head));
	store__bytes_str(a, id);
	return a->oom ? store__oom(s) : 0;
}

/* Seal text[0..len) as blob `which` of the entry k into a new malloc'd blob (*blob, *blob_len). */
static int entry_seal(store *s, const entry_key *k, uint8_t which, const char *text, size_t len, uint8_t **blob,
		      size_t *blob_len)
{
	store_bytes aad = STORE_BYTES_NULL;
	int rc = entry_aad(s, &aad, which, k);
	if (!rc)
		rc = store__seal(s, aad.b.p, aad.len, text, len, blob, blob_len);
	store__bytes_free(&aad);
	return rc;
}

/* The blob in column col of st: false (and nothing) for SQL NULL. */
static bool col_blob(sqlite3_stmt *st, int col, const void **blob, size_t *len)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return false;
	*blob = sqlite3_column_blob(st, col);
	*len = (size_t)sqlite3_column_bytes(st, col);
	return true;
}

/*
 * Open blob `which` of the entry k, in column col of st, into a new
 * NUL-terminated string (*out, *out_len); a NULL column gives *out NULL and
 * 0. what names the blob in messages (e.g. "body").
 */
static int entry_unseal(store *s, const entry_key *k, uint8_t which, sqlite3_stmt *st, int col, const char *what,
			char **out, size_t *out_len)
{
	const void *blob = NULL;
	size_t len = 0;
	*out = NULL;
	*out_len = 0;
	if (!col_blob(st, col, &blob, &len))
		return 0;
	store_bytes aad = STORE_BYTES_NULL;
	int rc = entry_aad(s, &aad, which, k);
	if (!rc)
		rc = store__unseal(s, aad.b.p, aad.len, blob, len, out, out_len, "the stored %s of chart entry %s",
				   what, k->uuid);
	store__bytes_free(&aad);
	return rc;
}

/* Open the demographics of temporary patient id, in column col of st, as entry_unseal() does. */
static int temp_unseal(store *s, const char *id, sqlite3_stmt *st, int col, char **out, size_t *out_len)
{
	const void *blob = NULL;
	size_t len = 0;
	*out = NULL;
	*out_len = 0;
	if (!col_blob(st, col, &blob, &len))
		return 0;
	store_bytes aad = STORE_BYTES_NULL;
	int rc = temp_aad(s, &aad, id);
	if (!rc)
		rc = store__unseal(s, aad.b.p, aad.len, blob, len, out, out_len,
				   "the stored demographics of temporary patient %s", id);
	store__bytes_free(&aad);
	return rc;
}

/* ---- keyed hashes (audit, index) ---------------------------------------- */

/* A presence byte, then the length-prefixed string: NULL and "" differ. */
static void kmac_opt_str(store_kmac *m, const char *str)
{
	uint8_t present = str != NULL;
	store__kmac_bytes(m, &present, 1);
	if (str)
		store__kmac_str(m, str);
}

/* ---- users -------------------------------------------------------------- */

static bool user_name_ok(const char *name)
{
	return str_ok(name, STORE_USER_MAX_NAME, true);
}

static bool role_ok(const char *role)
{
	return role && (strcmp(role, "clinician") == 0 || strcmp(role, "admin") == 0);
}

void store_user_deinit(store_user *u)
{
	if (!u)
		return;
	free(u->name);
	free(u->role);
	free(u->display);
	free_secret(u->pwhash, u->pwhash ? strlen(u->pwhash) : 0);
	*u = (store_user)STORE_USER_NULL;
}

typedef struct user_args {
	const char *name, *role, *display, *pwhash;
	int64_t now_ms;
	const char *sql; /* user_set_impl(): ?1 name, ?2 pwhash if set, else value */
	int64_t value;
	unsigned max_failures;
	int64_t lock_ms;
	bool *locked_now;
} user_args;

static int user_add_impl(store *s, void *ud)
{
	const user_args *a = ud;
	sqlite3_stmt *st = NULL;
	int rc = must_be_new(s, "SELECT 1 FROM users WHERE name = ?1", a->name, "the user", "cannot look up a user");
	if (rc)
		return rc;
	if ((rc = store__prepare(s,
				 "INSERT INTO users(name, role, display, pwhash, created_ms)"
				 " VALUES(?1, ?2, ?3, ?4, ?5)",
				 &st, "cannot add a user")) != 0)
		return rc;
	sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->role, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->display ? a->display : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, a->pwhash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, a->now_ms);
	return store__exec_once(s, st, "cannot add a user");
}

int store_user_add(store *s, const char *name, const char *role, const char *display, const char *pwhash,
		   int64_t now_ms)
{
	if (!s)
		return -EINVAL;
	if (!user_name_ok(name))
		return bad_arg(s, "store_user_add", "the user name must be 1 to 64 bytes");
	if (!role_ok(role))
		return bad_arg(s, "store_user_add", "the role must be clinician or admin");
	if (!str_ok(display, STORE_CHART_MAX_KEY, false) || !str_ok(pwhash, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, "store_user_add", "bad display name or password hash");
	user_args a = { .name = name, .role = role, .display = display, .pwhash = pwhash, .now_ms = now_ms };
	return store__write(s, "store_user_add", user_add_impl, &a);
}

int store_user_get(store *s, const char *name, store_user *out)
{
	if (!s || !out)
		return -EINVAL;
	*out = (store_user)STORE_USER_NULL;
	if (!user_name_ok(name))
		return bad_arg(s, "store_user_get", "bad user name");
	sqlite3_stmt *st = NULL;
	int rc = prepare_key(s,
			     "SELECT name, role, display, pwhash, disabled, failures, locked_until_ms, created_ms,"
			     " last_login_ms FROM users WHERE name = ?1",
			     name, &st, "cannot read a user");
	if (rc)
		return rc;
	if ((rc = step_one(s, st, "user", name, "cannot read a user")) == 0 &&
	    (!dup_req(st, 0, &out->name) || !dup_req(st, 1, &out->role) || !dup_req(st, 2, &out->display) ||
	     !dup_req(st, 3, &out->pwhash)))
		rc = store__oom(s);
	if (!rc) {
		out->disabled = sqlite3_column_int(st, 4) != 0;
		out->failures = sqlite3_column_int(st, 5);
		out->locked_until_ms = sqlite3_column_int64(st, 6);
		out->created_ms = sqlite3_column_int64(st, 7);
		out->last_login_ms = sqlite3_column_int64(st, 8);
	}
	sqlite3_finalize(st);
	if (rc)
		store_user_deinit(out);
	return rc;
}

static const json_col user_cols[] = {
	{ "name", J_TEXT },     { "role", J_TEXT },            { "display", J_TEXT },    { "disabled", J_BOOL },
	{ "failures", J_INT },  { "locked_until_ms", J_INT },  { "created_ms", J_INT },  { "last_login_ms", J_INT },
};

json_t *store_user_list(store *s)
{
	if (!s)
		return NULL;
	sqlite3_stmt *st = NULL;
	if (store__prepare(s,
			   "SELECT name, role, display, disabled, failures, locked_until_ms, created_ms,"
			   " last_login_ms FROM users ORDER BY name",
			   &st, "cannot list the users") != 0)
		return NULL;
	return rows_json(s, st, NULL, 0, user_cols, N_COLS(user_cols), "cannot list the users");
}

/* Run a one-row UPDATE of users (?1 = name); STORE_E_NOTFOUND when no row changed. */
static int user_update(store *s, sqlite3_stmt *st, const char *name, const char *what)
{
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return store__db_fail(s, rc, what);
	if (sqlite3_changes(s->db) == 0) {
		store__seterr(s, "no user %s", name);
		return STORE_E_NOTFOUND;
	}
	return 0;
}

/* A one-row UPDATE of users: a->sql with ?1 the name and ?2 a->pwhash if set, else a->value. */
static int user_set_impl(store *s, void *ud)
{
	const user_args *a = ud;
	sqlite3_stmt *st = NULL;
	int rc = prepare_key(s, a->sql, a->name, &st, "cannot update a user");
	if (rc)
		return rc;
	if (a->pwhash)
		sqlite3_bind_text(st, 2, a->pwhash, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int64(st, 2, a->value);
	return user_update(s, st, a->name, "cannot update a user");
}

int store_user_set_disabled(store *s, const char *name, bool disabled)
{
	if (!s)
		return -EINVAL;
	if (!user_name_ok(name))
		return bad_arg(s, "store_user_set_disabled", "bad user name");
	user_args a = { .name = name, .sql = "UPDATE users SET disabled = ?2 WHERE name = ?1", .value = disabled };
	return store__write(s, "store_user_set_disabled", user_set_impl, &a);
}

int store_user_set_password(store *s, const char *name, const char *pwhash)
{
	if (!s)
		return -EINVAL;
	if (!user_name_ok(name) || !str_ok(pwhash, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, "store_user_set_password", "bad user name or password hash");
	user_args a = { .name = name,
			.sql = "UPDATE users SET pwhash = ?2, failures = 0, locked_until_ms = 0 WHERE name = ?1",
			.pwhash = pwhash };
	return store__write(s, "store_user_set_password", user_set_impl, &a);
}

static int user_failed_impl(store *s, void *ud)
{
	const user_args *a = ud;
	sqlite3_stmt *st = NULL;
	int rc = prepare_key(s, "SELECT failures FROM users WHERE name = ?1", a->name, &st, "cannot read a user");
	if (rc)
		return rc;
	rc = step_one(s, st, "user", a->name, "cannot read a user");
	int64_t failures = rc ? 0 : sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc)
		return rc;
	failures = failures < 0 ? 1 : failures + 1;
	bool lock = a->max_failures > 0 && failures >= (int64_t)a->max_failures;
	int64_t until = a->now_ms > 0 && a->lock_ms > INT64_MAX - a->now_ms ? INT64_MAX : a->now_ms + a->lock_ms;
	user_args set = { .name = a->name,
			  .sql = lock ? "UPDATE users SET failures = 0, locked_until_ms = ?2 WHERE name = ?1"
				      : "UPDATE users SET failures = ?2 WHERE name = ?1",
			  .value = lock ? until : failures };
	if ((rc = user_set_impl(s, &set)) != 0)
		return rc;
	*a->locked_now = lock;
	return 0;
}

int store_user_login_failed(store *s, const char *name, int64_t now_ms, unsigned max_failures, int64_t lock_ms,
			    bool *locked_now)
{
	bool dummy = false;
	if (!locked_now)
		locked_now = &dummy;
	*locked_now = false;
	if (!s)
		return -EINVAL;
	if (!user_name_ok(name) || lock_ms < 0)
		return bad_arg(s, "store_user_login_failed", "bad user name or lock time");
	user_args a = { .name = name, .now_ms = now_ms, .max_failures = max_failures, .lock_ms = lock_ms,
			.locked_now = locked_now };
	int rc = store__write(s, "store_user_login_failed", user_failed_impl, &a);
	if (rc)
		*locked_now = false;
	return rc;
}

int store_user_login_ok(store *s, const char *name, int64_t now_ms)
{
	if (!s)
		return -EINVAL;
	if (!user_name_ok(name))
		return bad_arg(s, "store_user_login_ok", "bad user name");
	user_args a = { .name = name,
			.sql = "UPDATE users SET failures = 0, last_login_ms = ?2 WHERE name = ?1",
			.value = now_ms };
	return store__write(s, "store_user_login_ok", user_set_impl, &a);
}

/* ---- chart entries: reading ---------------------------------------------- */

const char *store_chart_state_name(int state)
{
	return state >= 0 && state < N_STATES ? state_names[state] : "unknown";
}

int store_chart_state_parse(const char *name)
{
	for (int i = 0; name && i < N_STATES; i++)
		if (strcmp(name, state_names[i]) == 0)
			return i;
	return -1;
}

void store_chart_entry_deinit(store_chart_entry *e)
{
	if (!e)
		return;
	free(e->uuid);
	free(e->kind);
	free(e->patient);
	free(e->author);
	free(e->effective);
	free(e->recorded);
	free(e->target);
	free(e->if_match);
	free_secret(e->body, e->body_len);
	free_secret(e->provenance, e->provenance_len);
	free(e->last_error);
	free(e->ehr_ref);
	free_secret(e->conflict, e->conflict_len);
	free(e->decided_by);
	*e = (store_chart_entry)STORE_CHART_ENTRY_NULL;
}

void store_chart_entries_free(store_chart_entry *arr, size_t n)
{
	if (!arr)
		return;
	for (size_t i = 0; i < n; i++)
		store_chart_entry_deinit(&arr[i]);
	free(arr);
}

/* The columns entry_from_row() reads, in this order. */
#define ENTRY_COLS                                                                                                  \
	"seq, uuid, kind, server, patient, temp, author, effective, effective_us, recorded, target, if_match, body," \
	" provenance, state, attempts, next_at_ms, last_error, ehr_ref, written_ms, conflict, decided_by, decided_ms"
enum {
	C_SEQ,
	C_UUID,
	C_KIND,
	C_SERVER,
	C_PATIENT,
	C_TEMP,
	C_AUTHOR,
	C_EFFECTIVE,
	C_EFFECTIVE_US,
	C_RECORDED,
	C_TARGET,
	C_IF_MATCH,
	C_BODY,
	C_PROVENANCE,
	C_STATE,
	C_ATTEMPTS,
	C_NEXT_AT,
	C_LAST_ERROR,
	C_EHR_REF,
	C_WRITTEN,
	C_CONFLICT,
	C_DECIDED_BY,
	C_DECIDED_MS,
};

/* Fill e (zeroed by the caller) from a row of ENTRY_COLS, blobs opened. On failure e holds what was filled. */
static int entry_from_row(store *s, sqlite3_stmt *st, store_chart_entry *e)
{
	e->seq = sqlite3_column_int64(st, C_SEQ);
	e->server = sqlite3_column_int64(st, C_SERVER);
	e->temp = sqlite3_column_int(st, C_TEMP) != 0;
	e->effective_us = sqlite3_column_int64(st, C_EFFECTIVE_US);
	e->state = sqlite3_column_int(st, C_STATE);
	e->attempts = sqlite3_column_int(st, C_ATTEMPTS);
	e->next_at_ms = sqlite3_column_int64(st, C_NEXT_AT);
	e->written_ms = sqlite3_column_int64(st, C_WRITTEN);
	e->decided_ms = sqlite3_column_int64(st, C_DECIDED_MS);
	if (!dup_req(st, C_UUID, &e->uuid) || !dup_req(st, C_KIND, &e->kind) || !dup_req(st, C_PATIENT, &e->patient) ||
	    !dup_req(st, C_AUTHOR, &e->author) || !dup_req(st, C_EFFECTIVE, &e->effective) ||
	    !dup_req(st, C_RECORDED, &e->recorded) || !dup_opt(st, C_TARGET, &e->target) ||
	    !dup_opt(st, C_IF_MATCH, &e->if_match) || !dup_opt(st, C_LAST_ERROR, &e->last_error) ||
	    !dup_opt(st, C_EHR_REF, &e->ehr_ref) || !dup_opt(st, C_DECIDED_BY, &e->decided_by))
		return store__oom(s);
	if (sqlite3_column_type(st, C_BODY) == SQLITE_NULL) {
		store__seterr(s, "chart entry %s has no body: the store %s is damaged", e->uuid, s->db_path);
		return STORE_E_CORRUPT;
	}
	entry_key k = { e->uuid, e->server, e->kind, e->patient };
	int rc = entry_unseal(s, &k, BLOB_BODY, st, C_BODY, "body", &e->body, &e->body_len);
	if (!rc)
		rc = entry_unseal(s, &k, BLOB_PROVENANCE, st, C_PROVENANCE, "provenance", &e->provenance,
				  &e->provenance_len);
	if (!rc)
		rc = entry_unseal(s, &k, BLOB_CONFLICT, st, C_CONFLICT, "conflicting version", &e->conflict,
				  &e->conflict_len);
	return rc;
}

int store_chart_get(store *s, const char *uuid, store_chart_entry *out)
{
	if (!s || !out)
		return -EINVAL;
	*out = (store_chart_entry)STORE_CHART_ENTRY_NULL;
	if (!str_ok(uuid, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, "store_chart_get", "bad uuid");
	sqlite3_stmt *st = NULL;
	int rc = prepare_key(s, "SELECT " ENTRY_COLS " FROM chart_entries WHERE uuid = ?1", uuid, &st,
			     "cannot read a chart entry");
	if (rc)
		return rc;
	if ((rc = step_one(s, st, "chart entry", uuid, "cannot read a chart entry")) == 0)
		rc = entry_from_row(s, st, out);
	sqlite3_finalize(st);
	if (rc)
		store_chart_entry_deinit(out);
	return rc;
}

int store_chart_due(store *s, int64_t server, int64_t now_ms, size_t limit, store_chart_entry **out, size_t *n)
{
	if (!s || !out || !n)
		return -EINVAL;
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st = NULL;
	/* The literal state = 0 lets chart_due serve the order; next_at_ms is filtered on the way. */
	int rc = store__prepare(s,
				"SELECT " ENTRY_COLS " FROM chart_entries INDEXED BY chart_due"
				" WHERE state = 0 AND server = ?1 AND next_at_ms <= ?2 ORDER BY effective_us, seq"
				" LIMIT ?3",
				&st, "cannot read the due chart entries");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, server);
	sqlite3_bind_int64(st, 2, now_ms);
	sqlite3_bind_int64(st, 3, sql_limit(limit));
	store_chart_entry *v = NULL;
	size_t cnt = 0, cap = 0;
	int src = SQLITE_DONE;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			store_chart_entry *p = realloc(v, ncap * sizeof(*p));
			if (!p) {
				rc = store__oom(s);
				break;
			}
			v = p;
			cap = ncap;
		}
		v[cnt] = (store_chart_entry)STORE_CHART_ENTRY_NULL;
		if ((rc = entry_from_row(s, st, &v[cnt++])) != 0)
			break;
	}
	if (!rc && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot read the due chart entries");
	sqlite3_finalize(st);
	if (rc) {
		store_chart_entries_free(v, cnt);
		return rc;
	}
	if (cnt == 0) {
		free(v);
		v = NULL;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int store_chart_next_due(store *s, int64_t server, int64_t *next_at_ms)
{
	if (!s || !next_at_ms)
		return -EINVAL;
	*next_at_ms = 0;
	sqlite3_stmt *st = NULL;
	int rc = store__prepare(s,
				"SELECT min(next_at_ms) FROM chart_entries INDEXED BY chart_due"
				" WHERE state = 0 AND server = ?1",
				&st, "cannot read the next due chart entry");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, server);
	int src = sqlite3_step(st);
	bool found = src == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
	if (found)
		*next_at_ms = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return store__db_fail(s, src, "cannot read the next due chart entry");
	if (!found) {
		store__seterr(s, "no chart entry is pending for this server");
		return STORE_E_NOTFOUND;
	}
	return 0;
}

int store_chart_foreach_patient(store *s, const char *patient, store_chart_cb cb, void *ud)
{
	if (!s)
		return -EINVAL;
	if (!str_ok(patient, STORE_CHART_MAX_KEY, true) || !cb)
		return bad_arg(s, "store_chart_foreach_patient", "bad patient or no callback");
	sqlite3_stmt *st = NULL;
	int rc = prepare_key(s,
			     "SELECT " ENTRY_COLS " FROM chart_entries INDEXED BY chart_patient WHERE patient = ?1"
			     " ORDER BY effective_us, seq",
			     patient, &st, "cannot list a patient's chart entries");
	if (rc)
		return rc;
	int src = SQLITE_DONE;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		store_chart_entry e = STORE_CHART_ENTRY_NULL;
		rc = entry_from_row(s, st, &e);
		if (!rc)
			rc = cb(ud, &e);
		store_chart_entry_deinit(&e);
		if (rc)
			break;
	}
	if (!rc && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot list a patient's chart entries");
	sqlite3_finalize(st);
	return rc;
}

/* The keys of store_chart_list()'s objects, in the order of its columns. */
static const json_col list_cols[] = {
	{ "seq", J_INT },         { "uuid", J_TEXT },     { "kind", J_TEXT },           { "patient", J_TEXT },
	{ "temp", J_BOOL },       { "author", J_TEXT },   { "effective", J_TEXT },      { "recorded", J_TEXT },
	{ "target", J_TEXT_OPT }, { "state", J_STATE },   { "attempts", J_INT },        { "last_error", J_TEXT_OPT },
	{ "ehr_ref", J_TEXT_OPT }, { "written_ms", J_INT }, { "decided_by", J_TEXT_OPT }, { "decided_ms", J_INT },
};

json_t *store_chart_list(store *s, const store_chart_filter *f)
{
	if (!s)
		return NULL;
	store_chart_filter all = { .state = -1 };
	if (!f)
		f = &all;
	if (!str_ok(f->author, STORE_CHART_MAX_KEY, false) || !str_ok(f->patient, STORE_CHART_MAX_KEY, false)) {
		bad_arg(s, "store_chart_list", "bad filter");
		return NULL;
	}
	/* Only the terms in use: an unused "?1 IS NULL OR ..." would keep the planner off chart_patient. */
	char sql[1024];
	int len = snprintf(sql, sizeof(sql),
			   "SELECT seq, uuid, kind, patient, temp, author, effective, recorded, target, state,"
			   " attempts, last_error, ehr_ref, written_ms, decided_by, decided_ms FROM chart_entries"
			   " WHERE 1%s%s%s ORDER BY seq DESC LIMIT ?4",
			   f->author ? " AND author = ?1" : "", f->patient ? " AND patient = ?2" : "",
			   f->state >= 0 ? " AND state = ?3" : "");
	if (len < 0 || (size_t)len >= sizeof(sql)) {
		store__seterr(s, "store_chart_list: query too long");
		return NULL;
	}
	sqlite3_stmt *st = NULL;
	if (store__prepare(s, sql, &st, "cannot list the chart entries") != 0)
		return NULL;
	if (f->author)
		sqlite3_bind_text(st, 1, f->author, -1, SQLITE_STATIC);
	if (f->patient)
		sqlite3_bind_text(st, 2, f->patient, -1, SQLITE_STATIC);
	if (f->state >= 0)
		sqlite3_bind_int(st, 3, f->state);
	sqlite3_bind_int64(st, 4, sql_limit(f->limit));
	return rows_json(s, st, NULL, 0, list_cols, N_COLS(list_cols), "cannot list the chart entries");
}

json_t *store_chart_counts(store *s)
{
	if (!s)
		return NULL;
	int64_t counts[N_STATES] = { 0 };
	sqlite3_stmt *st = NULL;
	int rc = store__prepare(s, "SELECT state, count(*) FROM chart_entries GROUP BY state", &st,
				"cannot count the chart entries");
	if (rc)
		return NULL;
	int src;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		int state = sqlite3_column_int(st, 0);
		if (state >= 0 && state < N_STATES) /* a damaged row's state is not counted */
			counts[state] = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (src != SQLITE_DONE) {
		store__db_fail(s, src, "cannot count the chart entries");
		return NULL;
	}
	json_t *o = json_object();
	for (int i = 0; o && i < N_STATES; i++) {
		if (json_object_set_new(o, state_names[i], json_integer(counts[i])) != 0) {
			json_decref(o);
			o = NULL;
		}
	}
	if (!o)
		store__oom(s);
	return o;
}

/* ---- chart entries: writing ---------------------------------------------- */

/* What a write needs to know of an existing entry. */
typedef struct entry_head {
	int64_t server;
	char *kind, *patient;
	int state;
} entry_head;

static void entry_head_free(entry_head *h)
{
	free(h->kind);
	free(h->patient);
	h->kind = h->patient = NULL;
}

/* Read the head of entry uuid. STORE_E_NOTFOUND if none. */
static int entry_head_get(store *s, const char *uuid, entry_head *h)
{
	memset(h, 0, sizeof(*h));
	sqlite3_stmt *st = NULL;
	int rc = prepare_key(s, "SELECT server, kind, patient, state FROM chart_entries WHERE uuid = ?1", uuid, &st,
			     "cannot read a chart entry");
	if (rc)
		return rc;
	if ((rc = step_one(s, st, "chart entry", uuid, "cannot read a chart entry")) == 0) {
		h->server = sqlite3_column_int64(st, 0);
		h->state = sqlite3_column_int(st, 3);
		if (!dup_req(st, 1, &h->kind) || !dup_req(st, 2, &h->patient))
			rc = store__oom(s);
	}
	sqlite3_finalize(st);
	if (rc)
		entry_head_free(h);
	return rc;
}

static int wrong_state(store *s, const char *fn, const char *uuid, int state)
{
	store__seterr(s, "%s: chart entry %s is %s", fn, uuid, store_chart_state_name(state));
	return STORE_E_STATE;
}

/* A bit per state, for entry_head_in(). */
#define STATE_BIT(state) (1u << (state))

/*
 * Read the head of entry uuid, which must be in one of the states of mask
 * (STATE_BIT() bits): else STORE_E_STATE, the message naming fn and the state.
 * On failure *h holds nothing.
 */
static int entry_head_in(store *s, const char *fn, const char *uuid, unsigned mask, entry_head *h)
{
	int rc = entry_head_get(s, uuid, h);
	if (rc)
		return rc;
	if (h->state < 0 || h->state >= N_STATES || !(mask & STATE_BIT(h->state))) {
		rc = wrong_state(s, fn, uuid, h->state);
		entry_head_free(h);
	}
	return rc;
}

static int server_exists(store *s, int64_t server, bool *found)
{
	sqlite3_stmt *st = NULL;
	int rc = store__prepare(s, "SELECT 1 FROM servers WHERE id = ?1", &st, "cannot look up a server");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, server);
	return step_exists(s, st, "cannot look up a server", found);
}

typedef struct put_args {
	const store_chart_entry *e;
	int64_t effective_us;
	const uint8_t *body, *prov;
	size_t body_len, prov_len;
	int64_t seq;
} put_args;

static int put_impl(store *s, void *ud)
{
	put_args *a = ud;
	const store_chart_entry *e = a->e;
	bool found = false;
	int rc = server_exists(s, e->server, &found);
	if (rc)
		return rc;
	if (!found) {
		store__seterr(s, "store_chart_put: chart entry %s names an unknown server", e->uuid);
		return -EINVAL;
	}
	sqlite3_stmt *st = NULL;
	if ((rc = must_be_new(s, "SELECT 1 FROM chart_entries WHERE uuid = ?1", e->uuid, "chart entry",
			      "cannot look up a chart entry")) != 0)
		return rc;
	if ((rc = store__prepare(s,
				 "INSERT INTO chart_entries(uuid, kind, server, patient, temp, author, effective,"
				 " effective_us, recorded, target, if_match, body, provenance, state, next_at_ms)"
				 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
				 &st, "cannot add a chart entry")) != 0)
		return rc;
	sqlite3_bind_text(st, 1, e->uuid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, e->kind, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, e->server);
	sqlite3_bind_text(st, 4, e->patient, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, e->temp);
	sqlite3_bind_text(st, 6, e->author, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, e->effective, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, a->effective_us);
	sqlite3_bind_text(st, 9, e->recorded, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 10, e->target, -1, SQLITE_STATIC); /* NULL binds NULL */
	sqlite3_bind_text(st, 11, e->if_match, -1, SQLITE_STATIC);
	sqlite3_bind_blob64(st, 12, a->body, a->body_len, SQLITE_STATIC);
	if (a->prov)
		sqlite3_bind_blob64(st, 13, a->prov, a->prov_len, SQLITE_STATIC);
	sqlite3_bind_int(st, 14, e->state);
	sqlite3_bind_int64(st, 15, e->next_at_ms);
	if ((rc = store__exec_once(s, st, "cannot add a chart entry")) != 0)
		return rc;
	a->seq = sqlite3_last_insert_rowid(s->db);
	return 0;
}

/* Check what store_chart_put reads of e; the message names the field. */
static int put_check(store *s, const store_chart_entry *e, int64_t *effective_us)
{
	const char *fn = "store_chart_put";
	int64_t us = 0;
	if (!str_ok(e->uuid, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, fn, "bad or missing uuid");
	const char *bad = NULL;
	if (!str_ok(e->kind, STORE_CHART_MAX_KEY, true))
		bad = "kind";
	else if (e->server <= 0)
		bad = "server";
	else if (!str_ok(e->patient, STORE_CHART_MAX_KEY, true))
		bad = "patient";
	else if (!str_ok(e->author, STORE_CHART_MAX_KEY, true))
		bad = "author";
	else if (!str_ok(e->effective, STORE_CHART_MAX_KEY, true) || store_instant_parse(e->effective, &us) != 0)
		bad = "effective";
	else if (!str_ok(e->recorded, STORE_CHART_MAX_KEY, true) || store_instant_parse(e->recorded, &(int64_t){ 0 }))
		bad = "recorded";
	else if (!opt_ok(e->target, STORE_CHART_MAX_KEY))
		bad = "target";
	else if (!opt_ok(e->if_match, STORE_CHART_MAX_KEY))
		bad = "if_match";
	else if (!e->body || text_len(e->body, e->body_len) == 0)
		bad = "body";
	else if (e->state != STORE_CHART_PENDING && e->state != STORE_CHART_WAITING_LINK)
		bad = "state";
	if (bad) {
		store__seterr(s, "%s: chart entry %s: bad or missing %s", fn, e->uuid, bad);
		return -EINVAL;
	}
	*effective_us = us;
	return 0;
}

int store_chart_put(store *s, const store_chart_entry *e, int64_t *seq)
{
	if (seq)
		*seq = 0;
	if (!s || !e)
		return -EINVAL;
	put_args a = { .e = e };
	int rc = put_check(s, e, &a.effective_us);
	if (rc)
		return rc;
	entry_key k = { e->uuid, e->server, e->kind, e->patient };
	uint8_t *body = NULL, *prov = NULL;
	if ((rc = entry_seal(s, &k, BLOB_BODY, e->body, text_len(e->body, e->body_len), &body, &a.body_len)) == 0 &&
	    e->provenance)
		rc = entry_seal(s, &k, BLOB_PROVENANCE, e->provenance, text_len(e->provenance, e->provenance_len),
				&prov, &a.prov_len);
	if (!rc) {
		a.body = body;
		a.prov = prov;
		rc = store__write(s, "store_chart_put", put_impl, &a);
	}
	free(body); /* ciphertext only */
	free(prov);
	if (!rc && seq)
		*seq = a.seq;
	return rc;
}

/* Arguments of the state-changing calls. */
typedef struct mark_args {
	const char *fn;
	const char *uuid;
	const char *text;     /* ehr_ref, error */
	const char *json;     /* conflict version, new body */
	const char *if_match; /* decide */
	const char *actor;
	int64_t at_ms;        /* now_ms or next_at_ms */
	int new_state;
	const char *patient;  /* update_link */
	bool temp;
	const char *provenance;
} mark_args;

/* last_error cut to CHART_MAX_ERROR_LEN at a UTF-8 boundary, bound to parameter i (NULL binds NULL). */
static void bind_error(sqlite3_stmt *st, int i, const char *error)
{
	if (!error) {
		sqlite3_bind_null(st, i);
		return;
	}
	size_t n = store__utf8_prefix(error, strlen(error), CHART_MAX_ERROR_LEN);
	sqlite3_bind_text(st, i, error, (int)n, SQLITE_TRANSIENT);
}

static int written_impl(store *s, void *ud)
{
	const mark_args *a = ud;
	entry_head h;
	unsigned from = STATE_BIT(STORE_CHART_PENDING) | STATE_BIT(STORE_CHART_WRITTEN);
	int rc = entry_head_in(s, a->fn, a->uuid, from, &h);
	if (rc)
		return rc;
	int state = h.state;
	entry_head_free(&h);
	if (state == STORE_CHART_WRITTEN)
		return 0;
	sqlite3_stmt *st = NULL;
	if ((rc = prepare_key(s,
			      "UPDATE chart_entries SET state = 1, ehr_ref = ?2, written_ms = ?3, last_error = NULL"
			      " WHERE uuid = ?1",
			      a->uuid, &st, "cannot update a chart entry")) != 0)
		return rc;
	sqlite3_bind_text(st, 2, a->text, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, a->at_ms);
	return store__exec_once(s, st, "cannot update a chart entry");
}

int store_chart_mark_written(store *s, const char *uuid, const char *ehr_ref, int64_t now_ms)
{
	if (!s)
		return -EINVAL;
	if (!str_ok(uuid, STORE_CHART_MAX_KEY, true) || !str_ok(ehr_ref, STORE_CHART_MAX_KEY, false))
		return bad_arg(s, "store_chart_mark_written", "bad uuid or reference");
	mark_args a = { .fn = "store_chart_mark_written", .uuid = uuid, .text = ehr_ref, .at_ms = now_ms };
	return store__write(s, a.fn, written_impl, &a);
}

static int retry_impl(store *s, void *ud)
{
	const mark_args *a = ud;
	entry_head h;
	int rc = entry_head_in(s, a->fn, a->uuid, STATE_BIT(STORE_CHART_PENDING), &h);
	if (rc)
		return rc;
	entry_head_free(&h);
	sqlite3_stmt *st = NULL;
	if ((rc = prepare_key(s,
			      "UPDATE chart_entries SET attempts = attempts + 1, next_at_ms = ?2, last_error = ?3"
			      " WHERE uuid = ?1",
			      a->uuid, &st, "cannot update a chart entry")) != 0)
		return rc;
	sqlite3_bind_int64(st, 2, a->at_ms);
	bind_error(st, 3, a->text);
	return store__exec_once(s, st, "cannot update a chart entry");
}

int store_chart_mark_retry(store *s, const char *uuid, int64_t next_at_ms, const char *error)
{
	if (!s)
		return -EINVAL;
	if (!str_ok(uuid, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, "store_chart_mark_retry", "bad uuid");
	mark_args a = { .fn = "store_chart_mark_retry", .uuid = uuid, .text = error, .at_ms = next_at_ms };
	return store__write(s, a.fn, retry_impl, &a);
}

/* CONFLICT (a->json: the EHR's version, may be NULL) or REJECTED, from PENDING. */
static int refused_impl(store *s, void *ud)
{
	const mark_args *a = ud;
	entry_head h;
	int rc = entry_head_in(s, a->fn, a->uuid, STATE_BIT(STORE_CHART_PENDING), &h);
	if (rc)
		return rc;
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	entry_key k = { a->uuid, h.server, h.kind, h.patient };
	if (a->new_state == STORE_CHART_CONFLICT && a->json)
		rc = entry_seal(s, &k, BLOB_CONFLICT, a->json, strlen(a->json), &blob, &blob_len);
	entry_head_free(&h);
	sqlite3_stmt *st = NULL;
	if (!rc)
		rc = prepare_key(s,
				 "UPDATE chart_entries SET state = ?2, last_error = ?3, conflict = ?4"
				 " WHERE uuid = ?1",
				 a->uuid, &st, "cannot update a chart entry");
	if (!rc) {
		sqlite3_bind_int(st, 2, a->new_state);
		bind_error(st, 3, a->text);
		if (blob)
			sqlite3_bind_blob64(st, 4, blob, blob_len, SQLITE_STATIC);
		rc = store__exec_once(s, st, "cannot update a chart entry");
	}
	free(blob);
	return rc;
}

int store_chart_mark_conflict(store *s, const char *uuid, const char *current_json, const char *error)
{
	if (!s)
		return -EINVAL;
	if (!str_ok(uuid, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, "store_chart_mark_conflict", "bad uuid");
	mark_args a = { .fn = "store_chart_mark_conflict", .uuid = uuid, .text = error, .json = current_json,
			.new_state = STORE_CHART_CONFLICT };
	return store__write(s, a.fn, refused_impl, &a);
}

int store_chart_mark_rejected(store *s, const char *uuid, const char *error)
{
	if (!s)
		return -EINVAL;
	if (!str_ok(uuid, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, "store_chart_mark_rejected", "bad uuid");
	mark_args a = { .fn = "store_chart_mark_rejected", .uuid = uuid, .text = error,
			.new_state = STORE_CHART_REJECTED };
	return store__write(s, a.fn, refused_impl, &a);
}

static int decide_impl(store *s, void *ud)
{
	const mark_args *a = ud;
	entry_head h;
	unsigned from = STATE_BIT(STORE_CHART_CONFLICT) | STATE_BIT(STORE_CHART_REJECTED);
	int rc = entry_head_in(s, a->fn, a->uuid, from, &h);
	if (rc)
		return rc;
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	entry_key k = { a->uuid, h.server, h.kind, h.patient };
	if (a->json)
		rc = entry_seal(s, &k, BLOB_BODY, a->json, strlen(a->json), &blob, &blob_len);
	entry_head_free(&h);
	sqlite3_stmt *st = NULL;
	/* PENDING: due at once, a fresh start; the kept conflict version goes (the person has seen it). */
	if (!rc)
		rc = prepare_key(s,
				 a->new_state == STORE_CHART_PENDING
					 ? "UPDATE chart_entries SET state = 0, attempts = 0, next_at_ms = 0,"
					   " last_error = NULL, conflict = NULL, decided_by = ?2, decided_ms = ?3,"
					   " body = coalesce(?4, body),"
					   " if_match = CASE WHEN ?5 IS NULL THEN if_match WHEN ?5 = '' THEN NULL"
					   " ELSE ?5 END WHERE uuid = ?1"
					 : "UPDATE chart_entries SET state = 5, decided_by = ?2, decided_ms = ?3"
					   " WHERE uuid = ?1",
				 a->uuid, &st, "cannot update a chart entry");
	if (!rc) {
		sqlite3_bind_text(st, 2, a->actor, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, a->at_ms);
		if (a->new_state == STORE_CHART_PENDING) {
			if (blob)
				sqlite3_bind_blob64(st, 4, blob, blob_len, SQLITE_STATIC);
			sqlite3_bind_text(st, 5, a->if_match, -1, SQLITE_STATIC);
		}
		rc = store__exec_once(s, st, "cannot update a chart entry");
	}
	free(blob);
	return rc;
}

int store_chart_decide(store *s, const char *uuid, int new_state, const char *actor, int64_t now_ms,
		       const char *new_body, const char *new_if_match)
{
	const char *fn = "store_chart_decide";
	if (!s)
		return -EINVAL;
	if (!str_ok(uuid, STORE_CHART_MAX_KEY, true) || !str_ok(actor, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, fn, "bad uuid or actor");
	if (new_state != STORE_CHART_PENDING && new_state != STORE_CHART_DISCARDED)
		return bad_arg(s, fn, "the new state must be pending or discarded");
	if (new_state == STORE_CHART_DISCARDED && (new_body || new_if_match))
		return bad_arg(s, fn, "a discarded entry takes no new body or If-Match");
	if ((new_body && !new_body[0]) || !str_ok(new_if_match, STORE_CHART_MAX_KEY, false))
		return bad_arg(s, fn, "bad new body or If-Match");
	mark_args a = { .fn = fn, .uuid = uuid, .new_state = new_state, .actor = actor, .at_ms = now_ms,
			.json = new_body, .if_match = new_if_match };
	return store__write(s, fn, decide_impl, &a);
}

static int link_impl(store *s, void *ud)
{
	const mark_args *a = ud;
	entry_head h;
	unsigned from = STATE_BIT(STORE_CHART_WAITING_LINK) | STATE_BIT(STORE_CHART_PENDING);
	int rc = entry_head_in(s, a->fn, a->uuid, from, &h);
	if (rc)
		return rc;
	uint8_t *body = NULL, *prov = NULL;
	size_t body_len = 0, prov_len = 0;
	/* The blobs are bound to the patient: both are sealed again for the new one. */
	entry_key k = { a->uuid, h.server, h.kind, a->patient };
	if ((rc = entry_seal(s, &k, BLOB_BODY, a->json, strlen(a->json), &body, &body_len)) == 0 && a->provenance)
		rc = entry_seal(s, &k, BLOB_PROVENANCE, a->provenance, strlen(a->provenance), &prov, &prov_len);
	entry_head_free(&h);
	sqlite3_stmt *st = NULL;
	if (!rc)
		rc = prepare_key(s,
				 "UPDATE chart_entries SET patient = ?2, temp = ?3, body = ?4, provenance = ?5,"
				 " conflict = NULL, state = ?6 WHERE uuid = ?1",
				 a->uuid, &st, "cannot update a chart entry");
	if (!rc) {
		sqlite3_bind_text(st, 2, a->patient, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 3, a->temp);
		sqlite3_bind_blob64(st, 4, body, body_len, SQLITE_STATIC);
		if (prov)
			sqlite3_bind_blob64(st, 5, prov, prov_len, SQLITE_STATIC);
		sqlite3_bind_int(st, 6, a->new_state);
		rc = store__exec_once(s, st, "cannot update a chart entry");
	}
	free(body);
	free(prov);
	return rc;
}

int store_chart_update_link(store *s, const char *uuid, const char *patient, bool temp, const char *body,
			    const char *provenance, int state)
{
	const char *fn = "store_chart_update_link";
	if (!s)
		return -EINVAL;
	if (!str_ok(uuid, STORE_CHART_MAX_KEY, true) || !str_ok(patient, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, fn, "bad uuid or patient");
	if (!body || !body[0])
		return bad_arg(s, fn, "a body is needed");
	if (state != STORE_CHART_PENDING && state != STORE_CHART_WAITING_LINK)
		return bad_arg(s, fn, "the new state must be pending or waiting_link");
	mark_args a = { .fn = fn, .uuid = uuid, .patient = patient, .temp = temp, .json = body,
			.provenance = provenance, .new_state = state };
	return store__write(s, fn, link_impl, &a);
}

/* ---- temporary patients -------------------------------------------------- */

typedef struct temp_args {
	const char *id, *by, *patient;
	const uint8_t *blob;
	size_t blob_len;
	int64_t now_ms;
} temp_args;

static int temp_add_impl(store *s, void *ud)
{
	const temp_args *a = ud;
	sqlite3_stmt *st = NULL;
	int rc = must_be_new(s, "SELECT 1 FROM temp_patients WHERE id = ?1", a->id, "the temporary patient",
			     "cannot look up a temporary patient");
	if (rc)
		return rc;
	if ((rc = prepare_key(s,
			      "INSERT INTO temp_patients(id, body, created_by, created_ms)"
			      " VALUES(?1, ?2, ?3, ?4)",
			      a->id, &st, "cannot add a temporary patient")) != 0)
		return rc;
	sqlite3_bind_blob64(st, 2, a->blob, a->blob_len, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, a->now_ms);
	return store__exec_once(s, st, "cannot add a temporary patient");
}

int store_temp_patient_add(store *s, const char *id, const char *json_text, const char *by, int64_t now_ms)
{
	const char *fn = "store_temp_patient_add";
	if (!s)
		return -EINVAL;
	if (!str_ok(id, STORE_CHART_MAX_KEY, true) || !str_ok(by, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, fn, "bad id or user");
	json_t *j = json_text ? json_loads(json_text, JSON_REJECT_DUPLICATES, NULL) : NULL;
	bool object = json_is_object(j);
	json_decref(j);
	if (!object) {
		store__seterr(s, "%s: the demographics of %s are not a JSON object", fn, id);
		return -EINVAL;
	}
	store_bytes aad = STORE_BYTES_NULL;
	temp_args a = { .id = id, .by = by, .now_ms = now_ms };
	uint8_t *blob = NULL;
	int rc = temp_aad(s, &aad, id);
	if (!rc)
		rc = store__seal(s, aad.b.p, aad.len, json_text, strlen(json_text), &blob, &a.blob_len);
	store__bytes_free(&aad);
	if (!rc) {
		a.blob = blob;
		rc = store__write(s, fn, temp_add_impl, &a);
	}
	free(blob);
	return rc;
}

int store_temp_patient_get(store *s, const char *id, char **json_text, char **linked_patient)
{
	if (json_text)
		*json_text = NULL;
	if (linked_patient)
		*linked_patient = NULL;
	if (!s)
		return -EINVAL;
	if (!str_ok(id, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, "store_temp_patient_get", "bad id");
	sqlite3_stmt *st = NULL;
	int rc = prepare_key(s, "SELECT body, linked_patient FROM temp_patients WHERE id = ?1", id, &st,
			     "cannot read a temporary patient");
	if (rc)
		return rc;
	char *text = NULL, *linked = NULL;
	size_t len = 0;
	if ((rc = step_one(s, st, "temporary patient", id, "cannot read a temporary patient")) == 0)
		rc = temp_unseal(s, id, st, 0, &text, &len);
	if (!rc && !text) {
		store__seterr(s, "temporary patient %s has no demographics: the store %s is damaged", id, s->db_path);
		rc = STORE_E_CORRUPT;
	}
	if (!rc && !dup_opt(st, 1, &linked))
		rc = store__oom(s);
	sqlite3_finalize(st);
	if (rc || !json_text)
		free_secret(text, len);
	if (rc || !linked_patient)
		free(linked);
	if (rc)
		return rc;
	if (json_text)
		*json_text = text;
	if (linked_patient)
		*linked_patient = linked;
	return 0;
}

/* Set "demographics" of o from a row of store_temp_patient_list() (columns body, id). */
static int temp_demographics(store *s, sqlite3_stmt *st, json_t *o)
{
	const char *id = col_text(st, 1);
	char *text = NULL;
	size_t len = 0;
	if (!id)
		id = "";
	int rc = temp_unseal(s, id, st, 0, &text, &len);
	if (rc)
		return rc;
	json_t *demo = text ? json_loads(text, 0, NULL) : NULL;
	free_secret(text, len);
	if (!json_is_object(demo)) {
		json_decref(demo);
		store__seterr(s, "the demographics of temporary patient %s do not read back: the store %s is damaged",
			      id, s->db_path);
		return STORE_E_CORRUPT;
	}
	return json_object_set_new(o, "demographics", demo) != 0 ? store__oom(s) : 0;
}

/* The keys after "demographics", from the columns after the body. */
static const json_col temp_cols[] = {
	{ "id", J_TEXT },                 { "created_by", J_TEXT },     { "created_ms", J_INT },
	{ "linked_patient", J_TEXT_OPT }, { "linked_by", J_TEXT_OPT },  { "linked_ms", J_INT },
};

json_t *store_temp_patient_list(store *s)
{
	if (!s)
		return NULL;
	sqlite3_stmt *st = NULL;
	if (store__prepare(s,
			   "SELECT body, id, created_by, created_ms, linked_patient, linked_by, linked_ms"
			   " FROM temp_patients ORDER BY created_ms, id",
			   &st, "cannot list the temporary patients") != 0)
		return NULL;
	return rows_json(s, st, temp_demographics, 1, temp_cols, N_COLS(temp_cols),
			 "cannot list the temporary patients");
}

static int temp_link_impl(store *s, void *ud)
{
	const temp_args *a = ud;
	sqlite3_stmt *st = NULL;
	int rc = prepare_key(s, "SELECT linked_patient IS NOT NULL FROM temp_patients WHERE id = ?1", a->id, &st,
			     "cannot read a temporary patient");
	if (rc)
		return rc;
	rc = step_one(s, st, "temporary patient", a->id, "cannot read a temporary patient");
	bool linked = !rc && sqlite3_column_int(st, 0) != 0;
	sqlite3_finalize(st);
	if (rc)
		return rc;
	if (linked) {
		store__seterr(s, "the temporary patient %s is linked already", a->id);
		return -EALREADY;
	}
	if ((rc = prepare_key(s,
			      "UPDATE temp_patients SET linked_patient = ?2, linked_by = ?3, linked_ms = ?4"
			      " WHERE id = ?1",
			      a->id, &st, "cannot link a temporary patient")) != 0)
		return rc;
	sqlite3_bind_text(st, 2, a->patient, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, a->now_ms);
	return store__exec_once(s, st, "cannot link a temporary patient");
}

int store_temp_patient_link(store *s, const char *id, const char *patient, const char *by, int64_t now_ms)
{
	if (!s)
		return -EINVAL;
	if (!str_ok(id, STORE_CHART_MAX_KEY, true) || !str_ok(patient, STORE_CHART_MAX_KEY, true) ||
	    !str_ok(by, STORE_CHART_MAX_KEY, true))
		return bad_arg(s, "store_temp_patient_link", "bad id, patient or user");
	temp_args a = { .id = id, .patient = patient, .by = by, .now_ms = now_ms };
	return store__write(s, "store_temp_patient_link", temp_link_impl, &a);
}

/* ---- audit ---------------------------------------------------------------- */

/* The hash of an audit row (prev: the previous hash as stored, any length). */
static int audit_row_hash(store *s, store_kmac *m, int64_t seq, int64_t ts_ms, const char *actor, const char *action,
			  const char *subject, const char *detail, const void *prev, size_t prev_len,
			  uint8_t out[AUDIT_HASH_LEN])
{
	store__kmac_begin(m, HASH_AUDIT_ROW);
	store__kmac_i64(m, seq);
	store__kmac_i64(m, ts_ms);
	kmac_opt_str(m, actor);
	kmac_opt_str(m, action);
	kmac_opt_str(m, subject);
	kmac_opt_str(m, detail);
	store__kmac_blob(m, prev, prev_len);
	return store__kmac_final(s, m, out, AUDIT_HASH_LEN);
}

/* The head record for the last row (seq, hash): seq || HMAC('h' || seq || hash). */
static int audit_head(store *s, store_kmac *m, int64_t seq, const void *hash, size_t hash_len,
		      uint8_t out[AUDIT_HEAD_LEN])
{
	store__be64(out, seq);
	store__kmac_begin(m, HASH_AUDIT_HEAD);
	store__kmac_i64(m, seq);
	store__kmac_blob(m, hash, hash_len);
	return store__kmac_final(s, m, out + 8, AUDIT_HASH_LEN);
}

typedef struct audit_args {
	store_kmac *m;
	const char *actor, *action, *subject, *detail;
	int64_t now_ms;
} audit_args;

/* The head record: *present, and when it is AUDIT_HEAD_LEN bytes (*well_formed) its bytes in out. */
static int audit_head_read(store *s, bool *present, bool *well_formed, uint8_t out[AUDIT_HEAD_LEN])
{
	sqlite3_stmt *st = NULL;
	int rc = store__prepare(s, "SELECT value FROM meta WHERE key = 'audit_head'", &st,
				"cannot read the audit head");
	if (rc)
		return rc;
	int src = sqlite3_step(st);
	*present = src == SQLITE_ROW;
	*well_formed = *present && sqlite3_column_bytes(st, 0) == AUDIT_HEAD_LEN;
	if (*well_formed)
		memcpy(out, sqlite3_column_blob(st, 0), AUDIT_HEAD_LEN);
	sqlite3_finalize(st);
	return src == SQLITE_ROW || src == SQLITE_DONE ? 0 : store__db_fail(s, src, "cannot read the audit head");
}

/*
 * Append a row. The new seq follows both the last row and the head, and a
 * head that does not vouch for the last row is left as it is: damage found
 * by store_audit_verify() stays found after later rows (a deleted tail
 * stays a gap, a removed head stays missing).
 */
static int audit_add_impl(store *s, void *ud)
{
	const audit_args *a = ud;
	sqlite3_stmt *st = NULL;
	int rc = store__prepare(s, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &st,
				"cannot read the audit log");
	if (rc)
		return rc;
	uint8_t prev[AUDIT_HASH_LEN] = { 0 }, hash[AUDIT_HASH_LEN], head[AUDIT_HEAD_LEN], stored[AUDIT_HEAD_LEN];
	int64_t last = 0;
	size_t last_len = 0;
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		/* A damaged last hash is chained as it is (padded or cut to 32 bytes): the audit keeps
		 * working and store_audit_verify() points at the damaged row. */
		last = sqlite3_column_int64(st, 0);
		last_len = (size_t)sqlite3_column_bytes(st, 1);
		const void *h = sqlite3_column_blob(st, 1);
		if (h)
			memcpy(prev, h, last_len < sizeof(prev) ? last_len : sizeof(prev));
	}
	sqlite3_finalize(st);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return store__db_fail(s, src, "cannot read the audit log");
	bool present = false, well_formed = false, head_ok = false;
	if ((rc = audit_head_read(s, &present, &well_formed, stored)) != 0)
		return rc;
	int64_t head_seq = well_formed ? store__be64_get(stored) : 0;
	if (src == SQLITE_DONE) {
		head_ok = !present;
	} else if (well_formed && head_seq == last && last_len == AUDIT_HASH_LEN) {
		if ((rc = audit_head(s, a->m, last, prev, sizeof(prev), head)) != 0)
			return rc;
		head_ok = CRYPTO_memcmp(head, stored, AUDIT_HEAD_LEN) == 0;
	}
	int64_t seq = (head_seq > last ? head_seq : last) + 1;
	if ((rc = audit_row_hash(s, a->m, seq, a->now_ms, a->actor, a->action, a->subject, a->detail, prev,
				 sizeof(prev), hash)) != 0 ||
	    (rc = audit_head(s, a->m, seq, hash, sizeof(hash), head)) != 0)
		return rc;
	if ((rc = store__prepare(s,
				 "INSERT INTO audit(seq, ts_ms, actor, action, subject, detail, prev_hash, hash)"
				 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
				 &st, "cannot write the audit log")) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_int64(st, 2, a->now_ms);
	sqlite3_bind_text(st, 3, a->actor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, a->action, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, a->subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, a->detail, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 7, prev, sizeof(prev), SQLITE_STATIC);
	sqlite3_bind_blob(st, 8, hash, sizeof(hash), SQLITE_STATIC);
	if ((rc = store__exec_once(s, st, "cannot write the audit log")) != 0 || !head_ok)
		return rc;
	if ((rc = store__prepare(s,
				 "INSERT INTO meta(key, value) VALUES('audit_head', ?1)"
				 " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
				 &st, "cannot write the audit head")) != 0)
		return rc;
	sqlite3_bind_blob(st, 1, head, sizeof(head), SQLITE_STATIC);
	return store__exec_once(s, st, "cannot write the audit head");
}

int store_audit_add(store *s, const char *actor, const char *action, const char *subject, const char *detail,
		    int64_t now_ms)
{
	if (!s)
		return -EINVAL;
	if (!str_ok(actor, STORE_CHART_MAX_KEY, true) || !str_ok(action, STORE_CHART_MAX_KEY, true) ||
	    !str_ok(subject, STORE_CHART_MAX_KEY, false) || !str_ok(detail, AUDIT_MAX_DETAIL, false))
		return bad_arg(s, "store_audit_add", "bad actor, action, subject or detail");
	store_kmac m;
	int rc = store__kmac_init(s, &m, audit_label);
	if (rc)
		return rc;
	audit_args a = { &m, actor, action, subject, detail, now_ms };
	rc = store__write(s, "store_audit_add", audit_add_impl, &a);
	store__kmac_deinit(&m);
	return rc;
}

static const json_col audit_cols[] = {
	{ "seq", J_INT },     { "ts_ms", J_INT },         { "actor", J_TEXT },
	{ "action", J_TEXT }, { "subject", J_TEXT_OPT },  { "detail", J_TEXT_OPT },
};

json_t *store_audit_list(store *s, int64_t after_seq, size_t limit)
{
	if (!s)
		return NULL;
	sqlite3_stmt *st = NULL;
	if (store__prepare(s,
			   "SELECT seq, ts_ms, actor, action, subject, detail FROM audit WHERE seq > ?1"
			   " ORDER BY seq LIMIT ?2",
			   &st, "cannot read the audit log") != 0)
		return NULL;
	sqlite3_bind_int64(st, 1, after_seq);
	sqlite3_bind_int64(st, 2, sql_limit(limit));
	return rows_json(s, st, NULL, 0, audit_cols, N_COLS(audit_cols), "cannot read the audit log");
}

/* A text column as C string or NULL (SQL NULL). */
static const char *col_opt(sqlite3_stmt *st, int col)
{
	return sqlite3_column_type(st, col) == SQLITE_NULL ? NULL : col_text(st, col);
}

/* Walk the chain (st: seq, ts_ms, actor, action, subject, detail, prev_hash, hash by seq). */
static int audit_walk(store *s, store_kmac *m, sqlite3_stmt *st, int64_t *bad, int64_t *last_seq,
		      uint8_t last_hash[AUDIT_HASH_LEN], bool *any)
{
	uint8_t expect_prev[AUDIT_HASH_LEN] = { 0 }, h[AUDIT_HASH_LEN];
	int src;
	*any = false;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t seq = sqlite3_column_int64(st, 0);
		const void *prev = sqlite3_column_blob(st, 6);
		size_t prev_len = (size_t)sqlite3_column_bytes(st, 6);
		const void *hash = sqlite3_column_blob(st, 7);
		size_t hash_len = (size_t)sqlite3_column_bytes(st, 7);
		int rc = audit_row_hash(s, m, seq, sqlite3_column_int64(st, 1), col_opt(st, 2), col_opt(st, 3),
					col_opt(st, 4), col_opt(st, 5), prev ? prev : (const void *)"", prev_len, h);
		if (rc)
			return rc;
		int64_t want_seq = *any ? *last_seq + 1 : 1;
		if (seq != want_seq) {
			*bad = want_seq; /* rows missing (or renumbered): the first missing seq */
			return STORE_E_CORRUPT;
		}
		bool ok = prev_len == AUDIT_HASH_LEN && prev && CRYPTO_memcmp(prev, expect_prev, AUDIT_HASH_LEN) == 0 &&
			  hash_len == AUDIT_HASH_LEN && hash && CRYPTO_memcmp(hash, h, AUDIT_HASH_LEN) == 0;
		if (!ok) {
			*bad = seq;
			return STORE_E_CORRUPT;
		}
		memcpy(expect_prev, h, AUDIT_HASH_LEN);
		*last_seq = seq;
		*any = true;
	}
	memcpy(last_hash, expect_prev, AUDIT_HASH_LEN);
	return src == SQLITE_DONE ? 0 : store__db_fail(s, src, "cannot read the audit log");
}

/*
 * Check the head record against the rows (already walked: any says there
 * are some, last_seq/last_hash the last one). The head must name the last
 * row and carry its keyed MAC. On a mismatch (STORE_E_CORRUPT) *bad is the
 * first missing seq when the head names a row past the end, the seq a
 * forged head names, the first row after a true but older head, or the
 * last row when the head is missing.
 */
static int audit_check_head(store *s, store_kmac *m, bool any, int64_t last_seq,
			    const uint8_t last_hash[AUDIT_HASH_LEN], int64_t *bad)
{
	uint8_t stored[AUDIT_HEAD_LEN], want[AUDIT_HEAD_LEN];
	bool present = false, well_formed = false;
	int rc = audit_head_read(s, &present, &well_formed, stored);
	if (rc)
		return rc;
	if (!any && !present)
		return 0; /* nothing was ever audited */
	if (!any) {
		*bad = 1; /* every row is gone */
		return STORE_E_CORRUPT;
	}
	if (!well_formed) {
		*bad = last_seq; /* nothing vouches for the end of the log */
		return STORE_E_CORRUPT;
	}
	int64_t head_seq = store__be64_get(stored);
	if (head_seq > last_seq) {
		*bad = last_seq + 1; /* rows cut off the end */
		return STORE_E_CORRUPT;
	}
	if (head_seq < 1) {
		*bad = 1;
		return STORE_E_CORRUPT;
	}
	/* The row the head names (the walk checked its hash). */
	uint8_t hash[AUDIT_HASH_LEN];
	if (head_seq == last_seq) {
		memcpy(hash, last_hash, AUDIT_HASH_LEN);
	} else {
		sqlite3_stmt *st = NULL;
		if ((rc = store__prepare(s, "SELECT hash FROM audit WHERE seq = ?1", &st, "cannot read the audit log")))
			return rc;
		sqlite3_bind_int64(st, 1, head_seq);
		int src = sqlite3_step(st);
		bool ok = src == SQLITE_ROW && sqlite3_column_bytes(st, 0) == AUDIT_HASH_LEN;
		if (ok)
			memcpy(hash, sqlite3_column_blob(st, 0), AUDIT_HASH_LEN);
		sqlite3_finalize(st);
		if (src != SQLITE_ROW && src != SQLITE_DONE)
			return store__db_fail(s, src, "cannot read the audit log");
		if (!ok) {
			*bad = 1;
			return STORE_E_CORRUPT;
		}
	}
	if ((rc = audit_head(s, m, head_seq, hash, AUDIT_HASH_LEN, want)) != 0)
		return rc;
	if (CRYPTO_memcmp(stored, want, AUDIT_HEAD_LEN) != 0) {
		*bad = head_seq; /* a forged head: nothing vouches for the log from there */
		return STORE_E_CORRUPT;
	}
	if (head_seq < last_seq) {
		*bad = head_seq + 1; /* a true head of an older state: rows after it are not vouched for */
		return STORE_E_CORRUPT;
	}
	return 0;
}

int store_audit_verify(store *s, int64_t *bad_seq)
{
	int64_t dummy = 0;
	if (!bad_seq)
		bad_seq = &dummy;
	*bad_seq = 0;
	if (!s)
		return -EINVAL;
	store_kmac m;
	bool own = false, any = false;
	int64_t last_seq = 0, bad = 0;
	uint8_t last_hash[AUDIT_HASH_LEN];
	sqlite3_stmt *st = NULL;
	int rc = store__kmac_init(s, &m, audit_label);
	if (rc)
		return rc;
	if ((rc = store__snapshot_begin(s, "cannot read the audit log", &own)) == 0 &&
	    (rc = store__prepare(s,
				 "SELECT seq, ts_ms, actor, action, subject, detail, prev_hash, hash FROM audit"
				 " ORDER BY seq",
				 &st, "cannot read the audit log")) == 0) {
		rc = audit_walk(s, &m, st, &bad, &last_seq, last_hash, &any);
		sqlite3_finalize(st);
		if (!rc)
			rc = audit_check_head(s, &m, any, last_seq, last_hash, &bad);
	}
	store__snapshot_end(s, own);
	store__kmac_deinit(&m);
	if (rc == STORE_E_CORRUPT) {
		*bad_seq = bad;
		store__seterr(s, "the audit log of the store %s does not verify at seq %lld: it was altered",
			      s->db_path, (long long)bad);
	}
	return rc;
}

/* ---- patient index ------------------------------------------------------- */

/* The keyed hashes of tokens[0..n) into out (n * INDEX_HASH_LEN bytes). */
static int index_hashes(store *s, const char *const *tokens, size_t n, uint8_t *out)
{
	store_kmac m;
	int rc = store__kmac_init(s, &m, index_label);
	for (size_t i = 0; !rc && i < n; i++) {
		store__kmac_begin(&m, HASH_INDEX_TOKEN);
		store__kmac_bytes(&m, tokens[i], strlen(tokens[i]));
		rc = store__kmac_final(s, &m, out + i * INDEX_HASH_LEN, INDEX_HASH_LEN);
	}
	store__kmac_deinit(&m);
	return rc;
}

static bool tokens_ok(const char *const *tokens, size_t n)
{
	if (n > STORE_INDEX_MAX_TOKENS || (n && !tokens))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!str_ok(tokens[i], STORE_INDEX_MAX_TOKEN, true))
			return false;
	return true;
}

typedef struct index_args {
	int64_t server;
	const char *patient;
	const uint8_t *hashes;
	size_t n;
} index_args;

static int index_set_impl(store *s, void *ud)
{
	const index_args *a = ud;
	bool found = false;
	int rc = server_exists(s, a->server, &found);
	if (rc)
		return rc;
	if (!found) {
		store__seterr(s, "store_patient_index_set: unknown server");
		return -EINVAL;
	}
	sqlite3_stmt *st = NULL;
	if ((rc = store__prepare(s, "DELETE FROM patient_index WHERE server = ?1 AND patient = ?2", &st,
				 "cannot update the patient index")) != 0)
		return rc;
	sqlite3_bind_int64(st, 1, a->server);
	sqlite3_bind_text(st, 2, a->patient, -1, SQLITE_STATIC);
	if ((rc = store__exec_once(s, st, "cannot update the patient index")) != 0 || a->n == 0)
		return rc;
	if ((rc = store__prepare(s, "INSERT OR IGNORE INTO patient_index(token, server, patient) VALUES(?1, ?2, ?3)",
				 &st, "cannot update the patient index")) != 0)
		return rc;
	sqlite3_bind_int64(st, 2, a->server);
	sqlite3_bind_text(st, 3, a->patient, -1, SQLITE_STATIC);
	for (size_t i = 0; i < a->n; i++) {
		sqlite3_bind_blob(st, 1, a->hashes + i * INDEX_HASH_LEN, INDEX_HASH_LEN, SQLITE_STATIC);
		int src = sqlite3_step(st);
		sqlite3_reset(st);
		if (src != SQLITE_DONE) {
			sqlite3_finalize(st);
			return store__db_fail(s, src, "cannot update the patient index");
		}
	}
	sqlite3_finalize(st);
	return 0;
}

int store_patient_index_set(store *s, int64_t server, const char *patient, const char *const *tokens, size_t n)
{
	if (!s)
		return -EINVAL;
	if (server <= 0 || !str_ok(patient, STORE_CHART_MAX_KEY, true) || !tokens_ok(tokens, n))
		return bad_arg(s, "store_patient_index_set", "bad server, patient or tokens");
	uint8_t *hashes = n ? malloc(n * INDEX_HASH_LEN) : NULL;
	if (n && !hashes)
		return store__oom(s);
	int rc = index_hashes(s, tokens, n, hashes);
	if (!rc) {
		index_args a = { server, patient, hashes, n };
		rc = store__write(s, "store_patient_index_set", index_set_impl, &a);
	}
	free(hashes);
	return rc;
}

static int hash_cmp(const void *a, const void *b)
{
	return memcmp(a, b, INDEX_HASH_LEN);
}

json_t *store_patient_index_find(store *s, int64_t server, const char *const *tokens, size_t n, size_t limit)
{
	if (!s)
		return NULL;
	if (!tokens_ok(tokens, n)) {
		bad_arg(s, "store_patient_index_find", "bad tokens");
		return NULL;
	}
	json_t *arr = json_array();
	if (!arr) {
		store__oom(s);
		return NULL;
	}
	if (n == 0)
		return arr;
	uint8_t *hashes = malloc(n * INDEX_HASH_LEN);
	/* "?NNN, " per token plus the fixed text. */
	size_t sql_cap = 256 + n * 8;
	char *sql = malloc(sql_cap);
	sqlite3_stmt *st = NULL;
	int rc = 0, src = SQLITE_DONE;
	if (!hashes || !sql) {
		rc = store__oom(s);
		goto out;
	}
	if ((rc = index_hashes(s, tokens, n, hashes)) != 0)
		goto out;
	/* Duplicates count once: sort and keep distinct hashes. */
	qsort(hashes, n, INDEX_HASH_LEN, hash_cmp);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || memcmp(hashes + (k - 1) * INDEX_HASH_LEN, hashes + i * INDEX_HASH_LEN, INDEX_HASH_LEN))
			memmove(hashes + k++ * INDEX_HASH_LEN, hashes + i * INDEX_HASH_LEN, INDEX_HASH_LEN);
	/* (token, server, patient) is unique, so a patient with every distinct token has k rows. */
	size_t off = (size_t)snprintf(sql, sql_cap,
				      "SELECT patient FROM patient_index WHERE server = ?1 AND token IN (");
	for (size_t i = 0; i < k; i++)
		off += (size_t)snprintf(sql + off, sql_cap - off, "%s?%zu", i ? ", " : "", i + 3);
	snprintf(sql + off, sql_cap - off, ") GROUP BY patient HAVING count(*) = ?2 ORDER BY patient LIMIT %lld",
		 (long long)sql_limit(limit));
	if ((rc = store__prepare(s, sql, &st, "cannot search the patient index")) != 0)
		goto out;
	sqlite3_bind_int64(st, 1, server);
	sqlite3_bind_int64(st, 2, (int64_t)k);
	for (size_t i = 0; i < k; i++)
		sqlite3_bind_blob(st, (int)i + 3, hashes + i * INDEX_HASH_LEN, INDEX_HASH_LEN, SQLITE_STATIC);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (json_array_append_new(arr, col_json(st, 0)) != 0) {
			rc = store__oom(s);
			break;
		}
	}
	if (!rc && src != SQLITE_DONE)
		rc = store__db_fail(s, src, "cannot search the patient index");
out:
	sqlite3_finalize(st);
	free(sql);
	free(hashes);
	if (rc) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}
