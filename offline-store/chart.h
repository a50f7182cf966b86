/*
 * offline-store/chart.h — the downtime-charting side of the store (schema
 * v4, chart.c): clinicians (users), chart entries waiting to be written to
 * the EHR, temporary patients registered during downtime, a tamper-evident
 * audit log and a patient search index of keyed hashes.
 *
 * Same conventions as store.h: plain values, one thread at a time, 0 /
 * negative errno / positive STORE_E_*, store_errmsg() for the reason, no
 * PHI in messages (they name uuids, ids and fields, never values). Calls
 * that write run inside the caller's transaction when one is open
 * (store_begin), else in their own, committed when the call returns: an
 * entry and its audit row commit together when the caller wraps both in
 * one transaction. Every write is refused on a read-only handle (STORE_E_DB).
 * A `limit` of 0 means no limit throughout this header.
 *
 * PHI at rest: entry bodies, their Provenance, the EHR's conflicting
 * version and temporary patients' demographics are AES-256-GCM blobs
 * (crypto.h) bound to their row: a blob moved to another row, or a row
 * whose uuid, server, kind or patient was altered, fails to open
 * (STORE_E_CORRUPT). Search tokens are kept only as keyed hashes. In clear:
 * user names, roles and display names (staff, not patients), password
 * hashes (opaque strings made by the caller), uuids, kinds, EHR logical ids
 * and temporary ids, instants, states, error messages (no PHI by the
 * callers' convention) and audit rows (their detail must hold no PHI).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "offline-store/store.h"

/*
 * The entry is not in a state that allows the call (e.g. a decision on an
 * entry that is pending, a retry of one already written). Positive like the
 * STORE_E_* of store.h, kept apart from their range.
 */
#define STORE_E_STATE 32

/* ------------------------------------------------------------------------
 * Users: the clinicians and admins of the downtime web page and CLI.
 */

/* Longest user name accepted (bytes). */
#define STORE_USER_MAX_NAME 64

typedef struct store_user {
	char *name, *role, *display, *pwhash;
	bool disabled;
	int failures;              /* failed logins since the last success / lock */
	int64_t locked_until_ms;   /* 0: never locked */
	int64_t created_ms, last_login_ms; /* last_login_ms 0: never */
} store_user;

#define STORE_USER_NULL { .name = NULL }

/* Free the strings (the password hash wiped first) and reset u to STORE_USER_NULL. Idempotent; u may be NULL. */
void store_user_deinit(store_user *u);

/*
 * Add a user. name: 1..64 bytes; role "clinician" or "admin"; display may
 * be NULL (stored as ""); pwhash non-empty. -EEXIST if the name exists,
 * -EINVAL for a bad argument.
 */
int store_user_add(store *s, const char *name, const char *role, const char *display, const char *pwhash,
		   int64_t now_ms);

/* Read a user into out (overwritten: deinit a previous value first). STORE_E_NOTFOUND if unknown. */
int store_user_get(store *s, const char *name, store_user *out);

/*
 * All users as a new JSON array of {"name", "role", "display", "disabled",
 * "failures", "locked_until_ms", "created_ms", "last_login_ms"} ordered by
 * name; never the password hash. NULL on failure.
 */
json_t *store_user_list(store *s);

/* Disable or enable a user. STORE_E_NOTFOUND if unknown. */
int store_user_set_disabled(store *s, const char *name, bool disabled);

/* Replace the password hash; failures and the lock are cleared. STORE_E_NOTFOUND if unknown. */
int store_user_set_password(store *s, const char *name, const char *pwhash);

/*
 * A failed login: failures + 1; when that reaches max_failures the user is
 * locked until now_ms + lock_ms and failures go back to 0. *locked_now
 * (may be NULL) says whether this call locked it. max_failures 0 never
 * locks. The caller decides what a lock means (it compares
 * locked_until_ms with its clock). STORE_E_NOTFOUND if unknown.
 */
int store_user_login_failed(store *s, const char *name, int64_t now_ms, unsigned max_failures, int64_t lock_ms,
			    bool *locked_now);

/* A successful login: failures 0, last_login_ms = now_ms (the lock field is left as is).
 * STORE_E_NOTFOUND if unknown. */
int store_user_login_ok(store *s, const char *name, int64_t now_ms);

/* ------------------------------------------------------------------------
 * Chart entries: the downtime outbox toward the EHR.
 *
 * States and moves:
 *   put -> PENDING | WAITING_LINK
 *   WAITING_LINK -> PENDING | WAITING_LINK          store_chart_update_link
 *   PENDING -> PENDING (retry, relink)              store_chart_mark_retry, store_chart_update_link
 *   PENDING -> WRITTEN | CONFLICT | REJECTED        store_chart_mark_*
 *   CONFLICT | REJECTED -> PENDING | DISCARDED      store_chart_decide (a person)
 * Any other move gives STORE_E_STATE; an unknown uuid STORE_E_NOTFOUND.
 */

enum store_chart_state {
	STORE_CHART_PENDING = 0,      /* to write (at next_at_ms or later) */
	STORE_CHART_WRITTEN = 1,      /* the EHR has it (ehr_ref) */
	STORE_CHART_CONFLICT = 2,     /* an If-Match update got 412: a person decides */
	STORE_CHART_WAITING_LINK = 3, /* its patient is temporary: waits until a person links it */
	STORE_CHART_REJECTED = 4,     /* the EHR refused it (4xx other than 412): a person decides */
	STORE_CHART_DISCARDED = 5,    /* a person decided not to send it */
};

/* "pending", "written", "conflict", "waiting_link", "rejected", "discarded"; "unknown" for anything else. */
const char *store_chart_state_name(int state);

/* The state named name (as store_chart_state_name gives it), or -1. */
int store_chart_state_parse(const char *name);

/* Longest uuid, kind, patient, author, instant, target, if_match, ehr_ref accepted (bytes). */
#define STORE_CHART_MAX_KEY 4096

typedef struct store_chart_entry {
	int64_t seq;               /* order of entry; assigned by store_chart_put */
	char *uuid, *kind;         /* kind: the caller's name, e.g. "vitals", "note", "med-admin", "med-stop" */
	int64_t server;            /* store_server_id() of the EHR */
	char *patient;             /* EHR patient logical id, or a temporary id */
	bool temp;                 /* patient is a temporary id */
	char *author;              /* user name of the clinician */
	char *effective, *recorded; /* FHIR instants: when it happened, when it was entered */
	int64_t effective_us;      /* effective, parsed (set by the store) */
	char *target, *if_match;   /* for updates: "Type/id" and the version to match; NULL for creates */
	char *body;                /* the resource JSON */
	size_t body_len;
	char *provenance;          /* the Provenance JSON, or NULL */
	size_t provenance_len;
	int state;                 /* enum store_chart_state */
	int attempts;
	int64_t next_at_ms;        /* due from then (PENDING) */
	char *last_error, *ehr_ref; /* NULL when none */
	int64_t written_ms;        /* 0 until written */
	char *conflict;            /* the EHR's current version after a 412, or NULL */
	size_t conflict_len;
	char *decided_by;          /* who decided on a conflict/rejection, NULL if nobody */
	int64_t decided_ms;
} store_chart_entry;

#define STORE_CHART_ENTRY_NULL { .seq = 0 }

/* Free the strings (body, provenance and conflict wiped first) and reset e. Idempotent; e may be NULL. */
void store_chart_entry_deinit(store_chart_entry *e);

/* Deinit n entries and free the array (as store_chart_due gives it). arr may be NULL. */
void store_chart_entries_free(store_chart_entry *arr, size_t n);

/*
 * Insert a new entry. Read from e: uuid, kind, server (> 0), patient,
 * temp, author, effective and recorded (valid FHIR instants), target and
 * if_match (NULL or non-empty), body (non-empty; body_len 0 means
 * strlen(body)), provenance (NULL, or as body), state (PENDING or
 * WAITING_LINK) and next_at_ms (when it is first due; 0: at once). The
 * other fields are ignored (attempts 0, no error, no ref). *seq (may be
 * NULL) receives the entry's seq. -EEXIST for a uuid already stored,
 * -EINVAL for a missing or bad field (the message names it), -EFBIG for a
 * body above SQLite's blob limit. Durable when it returns unless the
 * caller's transaction is open (then with its commit).
 */
int store_chart_put(store *s, const store_chart_entry *e, int64_t *seq);

/* Read the entry uuid, bodies decrypted, into out (overwritten). STORE_E_NOTFOUND, STORE_E_CORRUPT. */
int store_chart_get(store *s, const char *uuid, store_chart_entry *out);

/*
 * PENDING entries of server with next_at_ms <= now_ms, at most limit,
 * ordered by effective instant (offsets applied) then seq; bodies
 * decrypted. *out malloc'd (store_chart_entries_free), NULL when *n is 0.
 * A blob failing authentication fails the call (STORE_E_CORRUPT, the
 * message names the uuid).
 */
int store_chart_due(store *s, int64_t server, int64_t now_ms, size_t limit, store_chart_entry **out, size_t *n);

/* The earliest next_at_ms of a PENDING entry of server; STORE_E_NOTFOUND when none is pending. */
int store_chart_next_due(store *s, int64_t server, int64_t *next_at_ms);

/*
 * The EHR has the entry (PENDING): WRITTEN, ehr_ref (e.g.
 * "Observation/123/_history/1", may be NULL), written_ms = now_ms,
 * last_error cleared. An entry already WRITTEN is left as it is (0).
 */
int store_chart_mark_written(store *s, const char *uuid, const char *ehr_ref, int64_t now_ms);

/* Try again later (PENDING only): attempts + 1, next_at_ms, last_error (no PHI; cut to 1024 bytes; may be NULL). */
int store_chart_mark_retry(store *s, const char *uuid, int64_t next_at_ms, const char *error);

/*
 * A 412 on an If-Match update (PENDING only): CONFLICT, the EHR's current
 * version kept (encrypted; current_json may be NULL when the EHR did not
 * send it), last_error = error.
 */
int store_chart_mark_conflict(store *s, const char *uuid, const char *current_json, const char *error);

/* The EHR refused the entry for good (PENDING only): REJECTED, last_error = error. */
int store_chart_mark_rejected(store *s, const char *uuid, const char *error);

/*
 * A person's decision on a CONFLICT or REJECTED entry (else STORE_E_STATE).
 * new_state PENDING: send again now (attempts 0, next_at_ms 0, last_error
 * and the kept conflict version cleared), with new_body replacing the body
 * when non-NULL and new_if_match replacing if_match when non-NULL ("" drops
 * it). new_state DISCARDED: never sent; new_body and new_if_match must be
 * NULL. Any other new_state is -EINVAL. actor (non-empty) and now_ms are
 * recorded as decided_by, decided_ms.
 */
int store_chart_decide(store *s, const char *uuid, int new_state, const char *actor, int64_t now_ms,
		       const char *new_body, const char *new_if_match);

/*
 * Rewrite an entry whose patient was temporary once a person linked it
 * (the caller rewrote the references in the JSON): patient, temp, body
 * (non-empty) and provenance (NULL: none) replaced, state PENDING or
 * WAITING_LINK. Only for entries in WAITING_LINK or PENDING (not yet
 * written), else STORE_E_STATE.
 */
int store_chart_update_link(store *s, const char *uuid, const char *patient, bool temp, const char *body,
			    const char *provenance, int state);

/*
 * Call cb for every entry of patient (any server, any state), ordered by
 * effective instant then seq, bodies decrypted. The entry is valid during
 * the call only. cb returning non-zero stops and is returned; cb may use
 * the store.
 */
typedef int (*store_chart_cb)(void *ud, const store_chart_entry *e);
int store_chart_foreach_patient(store *s, const char *patient, store_chart_cb cb, void *ud);

typedef struct store_chart_filter {
	const char *author;   /* NULL: any */
	const char *patient;  /* NULL: any */
	int state;            /* -1: any */
	size_t limit;         /* 0: all */
} store_chart_filter;

/*
 * Entries as a new JSON array, newest (highest seq) first, no bodies:
 * {"seq", "uuid", "kind", "patient", "temp", "author", "effective",
 * "recorded", "target", "state" (name), "attempts", "last_error",
 * "ehr_ref", "written_ms", "decided_by", "decided_ms"}; absent strings are
 * null, written_ms and decided_ms 0 when unset. f may be NULL (all). NULL
 * on failure.
 */
json_t *store_chart_list(store *s, const store_chart_filter *f);

/* {"pending": n, "written": n, "conflict": n, "waiting_link": n, "rejected": n, "discarded": n}. NULL on failure. */
json_t *store_chart_counts(store *s);

/* ------------------------------------------------------------------------
 * Temporary patients: registered during downtime ("DT-..."), linked later
 * by a person to the real EHR patient. The demographics are encrypted.
 */

/*
 * Register id (1..4096 bytes) with its demographics (json_text: a JSON
 * object, else -EINVAL), by a user, at now_ms. -EEXIST if id exists.
 */
int store_temp_patient_add(store *s, const char *id, const char *json_text, const char *by, int64_t now_ms);

/*
 * The demographics (*json_text malloc'd; may be NULL to only check the
 * id) and the linked EHR patient (*linked_patient malloc'd, NULL when not
 * linked; may be NULL). STORE_E_NOTFOUND, STORE_E_CORRUPT; the outputs are
 * NULL on failure.
 */
int store_temp_patient_get(store *s, const char *id, char **json_text, char **linked_patient);

/*
 * All temporary patients as a new JSON array of {"id", "demographics" (the
 * parsed object), "created_by", "created_ms", "linked_patient" (null if
 * not linked), "linked_by" (null), "linked_ms" (0)} ordered by created_ms
 * then id. NULL on failure (STORE_E_CORRUPT for a blob that fails).
 */
json_t *store_temp_patient_list(store *s);

/*
 * Link id to the EHR patient (by a user, at now_ms). -EALREADY if it is
 * already linked (to any patient), STORE_E_NOTFOUND if id is unknown. The
 * entries are not touched: the caller rewrites them (store_chart_update_link),
 * in the same transaction if it wants all or nothing.
 */
int store_temp_patient_link(store *s, const char *id, const char *patient, const char *by, int64_t now_ms);

/* ------------------------------------------------------------------------
 * Audit log, tamper-evident: each row carries hash = HMAC-SHA-256 (key
 * derived from the store key for the audit) of a length-prefixed encoding
 * of (seq, ts_ms, actor, action, subject, detail, prev_hash), prev_hash
 * being the previous row's hash (32 zero bytes for the first). The last
 * row's seq and hash are also sealed into a keyed head record, so cutting
 * rows off the end is detected too, unless an old copy of the head record
 * (or of the whole file) is put back with the rows after it removed: a
 * chain kept in the same file cannot tell that from the old state itself.
 * Rows are in clear: detail and subject must hold no PHI
 * (name the uuid, the patient's logical id, the page).
 */

/*
 * Append a row: actor and action non-empty, subject and detail may be NULL
 * (each at most 4096 bytes, detail 65536). Inside the caller's transaction
 * when one is open.
 */
int store_audit_add(store *s, const char *actor, const char *action, const char *subject, const char *detail,
		    int64_t now_ms);

/*
 * Rows with seq > after_seq, oldest first, at most limit, as a new JSON
 * array of {"seq", "ts_ms", "actor", "action", "subject", "detail"}
 * (subject and detail null when absent). NULL on failure.
 */
json_t *store_audit_list(store *s, int64_t after_seq, size_t limit);

/*
 * Check the whole chain. 0 when intact (also when empty); STORE_E_CORRUPT
 * when a row was changed, deleted (from the middle, the start or the
 * end), inserted or reordered, with *bad_seq (may be NULL) the first seq
 * that does not check out: the first missing seq when rows are missing,
 * else the first row whose hash or link fails, the seq a forged head
 * record names, or the last row when the head record is missing. Rows
 * added after the damage do not hide it. *bad_seq is 0 when the result is
 * 0.
 */
int store_audit_verify(store *s, int64_t *bad_seq);

/* ------------------------------------------------------------------------
 * Patient search index: opaque caller tokens (e.g. "name:smith",
 * "birth:1970-01-01", "mrn:123", normalised by the caller) stored only as
 * HMAC-SHA-256 (key derived from the store key for the index) truncated
 * to 16 bytes. The patient ids are in clear.
 */

/* Longest token (bytes) and most tokens per call. */
#define STORE_INDEX_MAX_TOKEN 4096
#define STORE_INDEX_MAX_TOKENS 256

/* Replace all tokens of (server, patient) by tokens[0..n) (n 0: remove the patient from the index). */
int store_patient_index_set(store *s, int64_t server, const char *patient, const char *const *tokens, size_t n);

/*
 * The patients of server having ALL of tokens[0..n) (duplicates count
 * once), as a new sorted JSON array of id strings, at most limit. n 0
 * gives []. NULL on failure.
 */
json_t *store_patient_index_find(store *s, int64_t server, const char *const *tokens, size_t n, size_t limit);
