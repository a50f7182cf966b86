/*
 * offline-store/outbox.h — the curation side of the store (schema v2):
 * patients waiting for curation, MRN index, REDCap instance numbers, the
 * REDCap outbox, provenance, held-back rows and the review queue.
 *
 * Same conventions as store.h: plain values, one thread at a time, 0 /
 * negative errno / STORE_E_*, store_errmsg() for the reason, no PHI in
 * messages. Calls that write run inside the caller's transaction when one
 * is open (store_begin), else in their own.
 *
 * PHI at rest: record names (they may be MRNs), MRNs, row payloads and
 * review values are never stored in clear. Record names and MRNs are kept
 * as a keyed hash (HMAC-SHA256 under a key derived from the store key) for
 * lookups plus, where the clear value is needed again, an AES-256-GCM
 * ciphertext bound to its row (crypto.h). Field names, form/event names,
 * project names, FHIR type/id/version and rule names are not PHI and are
 * stored in clear.
 *
 * Projects are named by their config name (redcap.projects[].name).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "offline-store/store.h"

/* ------------------------------------------------------------------------
 * Patients waiting for curation.
 *
 * store_put_resource() marks the resource's patient (when it has one) as
 * waiting whenever it stores a new version. Curation reads the waiting
 * patients, curates each inside one transaction and clears it there, so a
 * crash loses nothing: an uncommitted curation leaves the patient waiting.
 */

/* Call cb for up to limit waiting patients of server (limit 0: all), in a
 * stable order (the order they were first marked). cb returning non-zero
 * stops and is returned. cb may call the store (a patient it marks or
 * clears meanwhile may or may not be visited). */
typedef int (*store_patient_cb)(void *ud, const char *patient);
int store_waiting_foreach(store *s, int64_t server, size_t limit, store_patient_cb cb, void *ud);

/* How many patients of server wait. */
int store_waiting_count(store *s, int64_t server, int64_t *n);

/* Clear one (no-op if it is not waiting). */
int store_waiting_clear(store *s, int64_t server, const char *patient);

/* Mark one (no-op if it already waits; it keeps its place). */
int store_waiting_mark(store *s, int64_t server, const char *patient);

/* Mark every patient of server that has stored resources as waiting (a
 * mapping changed). */
int store_waiting_all(store *s, int64_t server);

/* Every stored resource whose patient is `patient` (the Patient resource
 * itself included: its patient is its own id), with its decrypted body,
 * ordered by type then id. Same callback as store_foreach_resource(). */
int store_foreach_patient_resource(store *s, int64_t server, const char *patient,
				   store_resource_cb cb, void *ud);

/* ------------------------------------------------------------------------
 * Per-project key/value (e.g. "mapping_digest"). Values are not PHI.
 * store_project_get: *value malloc'd, STORE_E_NOTFOUND when unset.
 * store_project_set with value NULL or "" removes the key (get then gives
 * STORE_E_NOTFOUND).
 */
int store_project_get(store *s, const char *project, const char *key, char **value);
int store_project_set(store *s, const char *project, const char *key, const char *value);

/*
 * A keyed digest (hex, 64 digits) of data under the store's hash key, in
 * the domain label: for remembering whether PHI changed (e.g. anchors typed
 * into REDCap) without storing it or a plain hash of it.
 */
int store_keyed_digest(store *s, const char *label, const void *data, size_t len, char out[65]);

/* ------------------------------------------------------------------------
 * MRN index: which Patient resources carry which MRN (keyed hash only).
 */

/* Record patient's MRN (NULL or "": it has none). Replaces the previous one. */
int store_mrn_set(store *s, int64_t server, const char *patient, const char *mrn);

/* How many Patient resources of server carry mrn. */
int store_mrn_count(store *s, int64_t server, const char *mrn, int64_t *n);

/* The patient ids (not PHI) carrying mrn, as a new JSON array of strings. */
json_t *store_mrn_patients(store *s, int64_t server, const char *mrn);

/* ------------------------------------------------------------------------
 * Refused patients: a patient curation could not turn into a record
 * (ambiguous MRN, no MRN, ...). reason holds no PHI. Cleared when the
 * patient later curates fine.
 */
int store_refusal_set(store *s, const char *project, const char *patient, const char *reason);
/* *existed (may be NULL): whether the patient was refused. */
int store_refusal_clear(store *s, const char *project, const char *patient, int *existed);

/* ------------------------------------------------------------------------
 * Record owners: which patients' records in a project REDCap would take for
 * one record. REDCap trims record names and matches them
 * case-insensitively, so "ab1" and "AB1" are one record there while the
 * bridge (and FHIR) tell them apart. Kept per project as keyed hashes of the
 * folded names (project settings "record-of/<patient>" and
 * "record-fold/<hash>"), never the names.
 *
 * store_record_owner_set: patient's record name in project is now record
 * (NULL: it has none). *same (may be NULL) gets a new JSON array of the
 * other patients whose record names fold to the same; *left (may be NULL)
 * those that shared the patient's previous name, when it changed ([]
 * otherwise); *changed (may be NULL) whether the patient's entry changed.
 */
int store_record_owner_set(store *s, const char *project, const char *patient, const char *record, json_t **same,
			   json_t **left, int *changed);

/* ------------------------------------------------------------------------
 * Instance numbers of repeating instruments. The (project, record, event,
 * instrument) instance owned by a source resource (type, id) is assigned
 * once: the first call gives max(assigned) + 1 (1 for the first), every
 * later call for the same source gives the same number. event may be ""
 * (classic project).
 */
int store_instance(store *s, const char *project, const char *record, const char *event,
		   const char *instrument, const char *src_type, const char *src_id, int64_t *instance);

/* ------------------------------------------------------------------------
 * The REDCap outbox. A row is identified by (project, record, event,
 * instrument, instance) — instrument "" and instance 0 for the
 * non-repeating data of (record, event). Its payload is the flat REDCap
 * row as JSON object text ({"record_id": "...", "redcap_repeat_instrument":
 * ..., "field": "value", ...}), exactly what is sent.
 */

typedef enum store_outbox_state {
	STORE_OUTBOX_PENDING = 0,  /* to send (at next_at_ms or later) */
	STORE_OUTBOX_DONE = 1,     /* REDCap accepted this payload */
	STORE_OUTBOX_HELD = 2,     /* held back: the reasons say why; resent only when the payload changes
				      or store_outbox_release() is called */
} store_outbox_state;

typedef struct store_outbox_row {
	int64_t id;
	int64_t gen;               /* bumped each time the payload changes */
	char *project, *record, *event, *instrument;  /* record decrypted */
	int64_t instance;
	char *payload;             /* decrypted JSON object text */
	size_t payload_len;
	store_outbox_state state;
	int attempts;
	int64_t next_at_ms;
	char *last_error;          /* "" when none */
	char *reasons;             /* store_outbox_held(): the reasons JSON text; else NULL */
} store_outbox_row;

void store_outbox_row_deinit(store_outbox_row *r);
void store_outbox_rows_free(store_outbox_row *rows, size_t n);

/*
 * Put the row's current payload. If the row exists with the same payload
 * (compared by keyed hash) nothing changes, *changed = 0; otherwise the
 * payload is replaced, gen bumped, state PENDING, attempts 0, next_at 0,
 * last_error "", *changed = 1 (changed may be NULL).
 */
int store_outbox_put(store *s, const char *project, const char *record, const char *event,
		     const char *instrument, int64_t instance, const char *payload, size_t payload_len,
		     int *changed);

/*
 * Up to limit PENDING rows of project with next_at_ms <= now_ms, oldest id
 * first. *rows malloc'd (free with store_outbox_rows_free), *n set.
 */
int store_outbox_due(store *s, const char *project, int64_t now_ms, size_t limit,
		     store_outbox_row **rows, size_t *n);

/* The earliest next_at_ms of a PENDING row of project; STORE_E_NOTFOUND if none. */
int store_outbox_next_due(store *s, const char *project, int64_t *next_at_ms);

/* The row (id) was sent and accepted: DONE, unless its gen has changed
 * since (then it stays PENDING for the newer payload; returns 0 too).
 * STORE_E_NOTFOUND for an id that names no row. */
int store_outbox_done(store *s, int64_t id, int64_t gen);

/* Retry later: attempts + 1, next_at_ms, last_error (no PHI; cut to 1024
 * bytes). Only if gen matches and the row is PENDING, else a no-op
 * returning 0 (STORE_E_NOTFOUND for an unknown id). */
int store_outbox_retry(store *s, int64_t id, int64_t gen, int64_t next_at_ms, const char *error);

/*
 * Hold back with reasons: reasons_json is a JSON array of
 * {"field": f, "message": m, "source": s} (REDCap's messages, no values;
 * anything else than an array is -EINVAL), only if gen matches and the row
 * is PENDING, else a no-op returning 0 (STORE_E_NOTFOUND for an unknown
 * id). A HELD row with that gen only gets the new reasons (its "since"
 * stays). The held value itself stays in the (encrypted) payload.
 *
 * The source of a held row is the "source" member of its first reason
 * (the callers' convention: who decided, e.g. "validation", "redcap",
 * "mapping", "curation"); the calls below that take a source select the
 * held rows by it: NULL all, "x" those from x, "!x" all but those from x
 * (a row without a source included).
 */
int store_outbox_hold(store *s, int64_t id, int64_t gen, const char *reasons_json);

/* Hold every PENDING row of (project, record) with reasons_json (as
 * store_outbox_hold() takes them); rows held already get these reasons
 * instead of theirs (a release then lets them be checked afresh). *n the
 * rows changed (n may be NULL). The hold stands: rows the record gets
 * later (store_outbox_put, an accepted review value) are held with the same
 * reasons, in the transaction that writes them, until a
 * store_outbox_release() of the record (or of the whole project) whose
 * source takes in these reasons' source. */
int store_outbox_hold_record(store *s, const char *project, const char *record, const char *reasons_json,
			     int64_t *n);

/* Make the HELD row (id, gen) PENDING again (attempts 0, next_at 0, reasons
 * cleared); a stale gen or a row not held: a no-op returning 0;
 * STORE_E_NOTFOUND for an unknown id. */
int store_outbox_unhold(store *s, int64_t id, int64_t gen);

/* Make HELD rows of project PENDING again (all when record is NULL; only
 * those from source unless it is NULL), with attempts 0 and next_at 0, and
 * end the standing holds (store_outbox_hold_record) that source takes in.
 * *n released (n may be NULL). */
int store_outbox_release(store *s, const char *project, const char *record, const char *source, int64_t *n);

/*
 * Up to limit HELD rows of project from source (NULL: any) with id >
 * after_id, oldest id first, reasons filled; page on with the last id.
 * *rows malloc'd (free with store_outbox_rows_free), *n set.
 */
int store_outbox_held(store *s, const char *project, const char *source, int64_t after_id, size_t limit,
		      store_outbox_row **rows, size_t *n);

/* How many HELD rows of project come from source (NULL: all); 0 for an unknown project. */
int store_outbox_held_count(store *s, const char *project, const char *source, int64_t *n);

/*
 * The outbox as a new JSON object:
 *   {"projects": {"P": {"pending": n, "done": n, "held": n,
 *       "held_rows": [{"record": r, "event": e|null, "instrument": i|null, "instance": n|null,
 *                      "reasons": [...], "since": instant}],   at most held_limit, newest first
 *       "refused": [{"patient": id, "reason": "..."}],
 *       "review_pending": n}}}
 * record names in held_rows are decrypted: status is a local, operator-only
 * command. NULL on failure.
 */
json_t *store_outbox_status_json(store *s, size_t held_limit);

/* ------------------------------------------------------------------------
 * Provenance: for each value sent, where it came from. One entry per
 * (project, record, event, instrument, instance, field), replaced when the
 * value is produced again.
 */
int store_provenance_put(store *s, const char *project, const char *record, const char *event,
			 const char *instrument, int64_t instance, const char *field, const char *rule,
			 const char *res_type, const char *res_id, const char *res_version);

/* Forget the entry of one value (the bridge cleared it in REDCap).
 * *existed (may be NULL) says whether there was one. */
int store_provenance_clear(store *s, const char *project, const char *record, const char *event,
			   const char *instrument, int64_t instance, const char *field, int *existed);

/* The entries of (project, record, field) as a new JSON array of
 * {"event", "instrument", "instance", "rule", "resource_type", "resource_id",
 *  "resource_version", "at"} ordered by event, instance. event and
 * instrument are "" and instance 0 where the row has none; "at" is the
 * instant the entry last changed (putting the same entry again keeps it).
 * An unknown project or record gives []. NULL on failure. */
json_t *store_provenance_get(store *s, const char *project, const char *record, const char *field);

/* ------------------------------------------------------------------------
 * Review queue: rows of rules with "review": true wait here for a person.
 * A queued row is keyed like an outbox row; putting the same payload again
 * (pending, accepted or rejected before) changes nothing, a new payload
 * for the key re-queues it (PENDING) under a new id: a decision typed
 * against the old id then fails (STORE_E_NOTFOUND), so nobody accepts
 * values they have not seen. The same payload with another provenance
 * updates a PENDING entry's provenance (still *queued = 0). payload must be
 * a JSON object and
 * provenance_json (NULL: []) an array of objects with at least "field"
 * (-EINVAL otherwise). *queued (may be NULL) is 1 when it was queued.
 */
typedef enum store_review_state {
	STORE_REVIEW_PENDING = 0,
	STORE_REVIEW_ACCEPTED = 1,
	STORE_REVIEW_REJECTED = 2,
} store_review_state;

int store_review_put(store *s, const char *project, const char *record, const char *event,
		     const char *instrument, int64_t instance, const char *payload, size_t payload_len,
		     const char *provenance_json, int *queued);

/* Entries as a new JSON array of {"id", "project", "record", "event", "instrument", "instance",
 * "values": {..} (decrypted payload), "provenance": [...], "state": "pending"|..., "queued_at",
 * "decided_at", "decided_by"}; project NULL: all; state < 0: all states. */
json_t *store_review_list(store *s, const char *project, int state);

/* Accept (the payload goes to the outbox via store_outbox_put and the
 * entries of provenance_json — an array of {"field", "rule",
 * "resource_type", "resource_id", "resource_version"} — to provenance, in
 * the same transaction) or reject a PENDING entry. actor (an OS user name) is
 * recorded. STORE_E_NOTFOUND for an unknown id or one not pending. */
int store_review_decide(store *s, int64_t id, bool accept, const char *actor);

/* ------------------------------------------------------------------------
 * Encrypted key/value (schema v3, kv.c): state that may hold PHI and has no
 * table of its own, e.g. export checkpoints (record ids). The name is
 * stored in clear — make it of config names and hashes, never of data
 * (e.g. "export:<project>:<hash of the parameters>"), at most 4096 bytes,
 * not empty. The value is AES-256-GCM encrypted, bound to its name: a value
 * copied under another name fails to open (STORE_E_CORRUPT). Same calling
 * conventions as above (writes inside the caller's transaction when one is
 * open, else their own).
 */

/* Set name to data[0..len) (replacing any value). data may be NULL when
 * len is 0. -EFBIG above SQLite's blob limit. */
int store_kv_put(store *s, const char *name, const void *data, size_t len);

/* The value of name: *data malloc'd and NUL-terminated (not counted in
 * *len; len may be NULL). STORE_E_NOTFOUND if unset, STORE_E_CORRUPT if
 * it fails authentication; *data is NULL then. */
int store_kv_get(store *s, const char *name, char **data, size_t *len);

/* Remove name (0 also when it was not set). */
int store_kv_delete(store *s, const char *name);
