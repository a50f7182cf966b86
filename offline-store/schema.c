/*
 * offline-store/schema.c — the schema, as migration steps.
 *
 * Version 1 layout and why. Measured here (2-CPU VM, SQLite 3.40, WAL,
 * synchronous=NORMAL) inserting 100k ~550-byte bodies with random UUID ids
 * in 1000-row transactions — the shape a FHIR server with UUID ids gives:
 *
 * - resources is a rowid table: rows append in arrival order. The lookup by
 *   (server, type, id) goes through key_hash, a keyed SipHash of the three,
 *   in a small non-unique index; the query re-checks server/type/id, so a
 *   collision costs a compare, never a wrong row. Random ids make every
 *   index on them take inserts at random places, so each commit rewrites
 *   most of that index's pages into the WAL; an 8-byte hash entry instead of
 *   a UNIQUE(server, type, id) entry (~45 bytes) means fewer such pages:
 *   ~88k vs ~57k rows/s in a plain-SQLite model of this schema. A WITHOUT
 *   ROWID resources table was slowest (~7k rows/s: whole rows inserted at
 *   random places).
 * - resource_versions is keyed by the resource's rid, so the first version
 *   of a new resource appends at the end of the tree instead of at a random
 *   place: ~1.6x against a (server, type, id, version) key.
 * - types and patients are interned: a 1-2 byte integer in the row and the
 *   indexes instead of "Observation" / a 36-character id (~3% smaller rows,
 *   and a much smaller patient index).
 * - resources_patient indexes the interned patient for curation (all
 *   resources of a patient). It costs ~20% of the insert rate (patients
 *   arrive in random order too); resources_type (type, server) is cheap
 *   (appends within a type) and serves status counts and listings.
 *
 * Uniqueness of (server, type, id) in resources is kept by store.c: every
 * write runs inside a BEGIN IMMEDIATE transaction, so the lookup and the
 * insert cannot interleave with another writer.
 */
#include "offline-store/schema.h"

static const char schema_v1[] =
	"CREATE TABLE meta(\n"
	"  key TEXT PRIMARY KEY NOT NULL,\n"
	"  value BLOB NOT NULL\n"
	") WITHOUT ROWID;\n"
	"CREATE TABLE servers(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  base_url TEXT NOT NULL UNIQUE\n"
	");\n"
	"CREATE TABLE types(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  name TEXT NOT NULL UNIQUE\n"
	");\n"
	"CREATE TABLE patients(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  server INTEGER NOT NULL REFERENCES servers(id),\n"
	"  patient TEXT NOT NULL,\n"
	"  UNIQUE(server, patient)\n"
	");\n"
	/* Latest body per resource. last_updated as received; lu_us parsed
	 * (microseconds since the epoch, NULL if absent or invalid). body is a
	 * crypto.h blob bound to (server, type name, id, version_id). */
	"CREATE TABLE resources(\n"
	"  rid INTEGER PRIMARY KEY,\n"
	"  server INTEGER NOT NULL REFERENCES servers(id),\n"
	"  type INTEGER NOT NULL REFERENCES types(id),\n"
	"  key_hash INTEGER NOT NULL,\n"
	"  id TEXT NOT NULL,\n"
	"  version_id TEXT NOT NULL,\n"
	"  last_updated TEXT NOT NULL,\n"
	"  lu_us INTEGER,\n"
	"  patient INTEGER REFERENCES patients(id),\n"
	"  body BLOB NOT NULL\n"
	");\n"
	"CREATE INDEX resources_key ON resources(key_hash);\n"
	"CREATE INDEX resources_type ON resources(type, server);\n"
	"CREATE INDEX resources_patient ON resources(patient) WHERE patient IS NOT NULL;\n"
	/* Every version seen. body_hash is empty for versioned resources and a
	 * keyed hash of the body for resources without versionId. type repeats
	 * the resource's type so status counts need no join. */
	"CREATE TABLE resource_versions(\n"
	"  rid INTEGER NOT NULL REFERENCES resources(rid),\n"
	"  version_id TEXT NOT NULL,\n"
	"  body_hash BLOB NOT NULL,\n"
	"  type INTEGER NOT NULL REFERENCES types(id),\n"
	"  last_updated TEXT NOT NULL,\n"
	"  seen_at INTEGER NOT NULL,\n"
	"  PRIMARY KEY(rid, version_id, body_hash)\n"
	") WITHOUT ROWID;\n"
	"CREATE TABLE cursors(\n"
	"  server INTEGER NOT NULL REFERENCES servers(id),\n"
	"  type TEXT NOT NULL,\n"
	"  watermark TEXT NOT NULL DEFAULT '',\n"
	"  crawl_started TEXT NOT NULL DEFAULT '',\n"
	"  next_url TEXT,\n"
	"  pages INTEGER NOT NULL DEFAULT 0,\n"
	"  last_success TEXT NOT NULL DEFAULT '',\n"
	"  last_error TEXT NOT NULL DEFAULT '',\n"
	"  PRIMARY KEY(server, type)\n"
	") WITHOUT ROWID;\n";

/*
 * Version 2: the curation side (offline-store/outbox.h).
 *
 * - waiting: patients to curate. Its rowid is the order they were first
 *   marked; UNIQUE(patient) makes marking a patient already waiting one
 *   index probe and no write, which is what store_put_resource() does on
 *   every new version: ~0.9 us a put, the 100k-row insert going from ~79k
 *   to ~71k rows/s (medians of 8 runs). Keying the table by patient with an
 *   index on seq measured no better. A v1 store's patients all start
 *   waiting, so the first run after the upgrade curates everything.
 * - projects interns the REDCap project names (config names, not PHI).
 * - records interns (project, record name). A record name may be an MRN: it
 *   is kept as record_hash, an HMAC-SHA-256 under a key derived from the
 *   store key (all 32 bytes: equal hashes mean equal names), and as name, a
 *   crypto.h blob bound to (project, record_hash). Every other table names a
 *   record by this id, so the instance, outbox, provenance and review keys
 *   hold an integer instead of a 32-byte hash, and a curation run, which
 *   writes many rows of one record in a row, looks the name up once.
 * - mrns: the keyed hash of each Patient's MRN (never the MRN).
 * - instances: the instance number a source resource owns on a repeating
 *   instrument. The primary key (record, event, instrument, src_type,
 *   src_id) — record standing for (project, record_hash) — makes the
 *   assignment once-only; UNIQUE(record, event, instrument, instance)
 *   forbids two sources on one instance and serves max(instance) + 1.
 * - outbox: one row per REDCap row; payload is a blob bound to the row's
 *   key and gen, payload_hash a keyed hash of the key and payload (a
 *   re-curation that makes the same row compares 32 bytes, decrypts
 *   nothing). project repeats the record's project for the per-project
 *   partial indexes: outbox_due (pending rows in id order, for sending),
 *   outbox_next (earliest next_at) and outbox_held (newest held first).
 * - provenance: where each value sent came from, keyed so the rows of one
 *   (record, field) are adjacent for `explain`.
 * - review: rows waiting for a person; payload encrypted like the outbox's.
 *   AUTOINCREMENT: an id is never reused, so a re-queued entry (new payload)
 *   gets a new id and a decision typed against the old id cannot accept
 *   values the person has not seen.
 */
static const char schema_v2[] =
	"CREATE TABLE waiting(\n"
	"  seq INTEGER PRIMARY KEY,\n"
	"  patient INTEGER NOT NULL UNIQUE REFERENCES patients(id)\n"
	");\n"
	"INSERT INTO waiting(patient) SELECT p.id FROM patients p\n"
	"  WHERE EXISTS(SELECT 1 FROM resources r WHERE r.patient = p.id) ORDER BY p.id;\n"
	"CREATE TABLE projects(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  name TEXT NOT NULL UNIQUE\n"
	");\n"
	"CREATE TABLE project_kv(\n"
	"  project INTEGER NOT NULL REFERENCES projects(id),\n"
	"  key TEXT NOT NULL,\n"
	"  value TEXT NOT NULL,\n"
	"  PRIMARY KEY(project, key)\n"
	") WITHOUT ROWID;\n"
	"CREATE TABLE records(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  project INTEGER NOT NULL REFERENCES projects(id),\n"
	"  record_hash BLOB NOT NULL,\n"
	"  name BLOB NOT NULL,\n"
	"  UNIQUE(project, record_hash)\n"
	");\n"
	"CREATE TABLE mrns(\n"
	"  patient INTEGER PRIMARY KEY REFERENCES patients(id),\n"
	"  mrn_hash BLOB NOT NULL\n"
	");\n"
	"CREATE INDEX mrns_hash ON mrns(mrn_hash);\n"
	/* patient is the FHIR id as text: refusals are per project, which spans servers. */
	"CREATE TABLE refusals(\n"
	"  project INTEGER NOT NULL REFERENCES projects(id),\n"
	"  patient TEXT NOT NULL,\n"
	"  reason TEXT NOT NULL,\n"
	"  since INTEGER NOT NULL,\n"
	"  PRIMARY KEY(project, patient)\n"
	") WITHOUT ROWID;\n"
	"CREATE TABLE instances(\n"
	"  record INTEGER NOT NULL REFERENCES records(id),\n"
	"  event TEXT NOT NULL,\n"
	"  instrument TEXT NOT NULL,\n"
	"  src_type TEXT NOT NULL,\n"
	"  src_id TEXT NOT NULL,\n"
	"  instance INTEGER NOT NULL,\n"
	"  PRIMARY KEY(record, event, instrument, src_type, src_id),\n"
	"  UNIQUE(record, event, instrument, instance)\n"
	") WITHOUT ROWID;\n"
	/* state: 0 pending, 1 done, 2 held (store_outbox_state). Times: next_at in
	 * unix ms, state_at (when the state last changed) in unix seconds. */
	"CREATE TABLE outbox(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  project INTEGER NOT NULL REFERENCES projects(id),\n"
	"  record INTEGER NOT NULL REFERENCES records(id),\n"
	"  event TEXT NOT NULL,\n"
	"  instrument TEXT NOT NULL,\n"
	"  instance INTEGER NOT NULL,\n"
	"  gen INTEGER NOT NULL,\n"
	"  payload_hash BLOB NOT NULL,\n"
	"  payload BLOB NOT NULL,\n"
	"  state INTEGER NOT NULL,\n"
	"  attempts INTEGER NOT NULL DEFAULT 0,\n"
	"  next_at INTEGER NOT NULL DEFAULT 0,\n"
	"  last_error TEXT NOT NULL DEFAULT '',\n"
	"  reasons TEXT,\n"
	"  state_at INTEGER NOT NULL,\n"
	"  UNIQUE(project, record, event, instrument, instance)\n"
	");\n"
	"CREATE INDEX outbox_due ON outbox(project, id) WHERE state = 0;\n"
	"CREATE INDEX outbox_next ON outbox(project, next_at) WHERE state = 0;\n"
	"CREATE INDEX outbox_held ON outbox(project, state_at) WHERE state = 2;\n"
	"CREATE TABLE provenance(\n"
	"  record INTEGER NOT NULL REFERENCES records(id),\n"
	"  field TEXT NOT NULL,\n"
	"  event TEXT NOT NULL,\n"
	"  instrument TEXT NOT NULL,\n"
	"  instance INTEGER NOT NULL,\n"
	"  rule TEXT NOT NULL,\n"
	"  res_type TEXT NOT NULL,\n"
	"  res_id TEXT NOT NULL,\n"
	"  res_version TEXT NOT NULL,\n"
	"  at INTEGER NOT NULL,\n"
	"  PRIMARY KEY(record, field, event, instrument, instance)\n"
	") WITHOUT ROWID;\n"
	/* state: 0 pending, 1 accepted, 2 rejected (store_review_state). */
	"CREATE TABLE review(\n"
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"  project INTEGER NOT NULL REFERENCES projects(id),\n"
	"  record INTEGER NOT NULL REFERENCES records(id),\n"
	"  event TEXT NOT NULL,\n"
	"  instrument TEXT NOT NULL,\n"
	"  instance INTEGER NOT NULL,\n"
	"  payload_hash BLOB NOT NULL,\n"
	"  payload BLOB NOT NULL,\n"
	"  provenance TEXT NOT NULL,\n"
	"  state INTEGER NOT NULL,\n"
	"  queued_at INTEGER NOT NULL,\n"
	"  decided_at INTEGER,\n"
	"  decided_by TEXT,\n"
	"  UNIQUE(record, event, instrument, instance)\n"
	");\n"
	"CREATE INDEX review_state ON review(project, state);\n";

/*
 * Version 3: kv, a generic encrypted key/value table (offline-store/kv.c),
 * first for export checkpoints, which hold record ids (PHI). name is in
 * clear (callers never put data in it); value is a crypto.h blob bound to
 * the name. A rowid table with a unique name rather than WITHOUT ROWID:
 * values may be megabytes (a 100k-id list), and WITHOUT ROWID tables are
 * meant for rows far smaller than a page.
 */
static const char schema_v3[] =
	"CREATE TABLE kv(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  name TEXT NOT NULL UNIQUE,\n"
	"  value BLOB NOT NULL\n"
	");\n";

/*
 * Version 4: downtime charting (offline-store/chart.h, chart.c).
 *
 * - users: clinicians and admins of the downtime page and CLI. Staff, not
 *   patients: names in clear; pwhash is the caller's opaque hash string.
 * - chart_entries: the outbox toward the EHR. seq (the rowid) is the order
 *   of entry; uuid the client-assigned identifier that makes writes
 *   idempotent. body, provenance and conflict are crypto.h blobs bound to
 *   (uuid, server, kind, patient). effective_us is the effective instant
 *   parsed (offsets applied), so the due query orders by when things
 *   happened: chart_due serves it (state, server first: the pending ones of
 *   one EHR, already in that order). chart_patient serves the patient view
 *   and the relinking of a temporary patient.
 * - temp_patients: downtime registrations; body (demographics) is a blob
 *   bound to the id.
 * - audit: a hash chain (chart.c says how); rows in clear, no PHI in them.
 * - patient_index: keyed hashes of search tokens (16 bytes) -> patient ids.
 *   WITHOUT ROWID: rows are tiny and looked up by their key; the second
 *   index serves replacing one patient's tokens.
 */
static const char schema_v4[] =
	"CREATE TABLE users(\n"
	"  name TEXT PRIMARY KEY NOT NULL,\n"
	"  role TEXT NOT NULL CHECK(role IN ('clinician', 'admin')),\n"
	"  display TEXT NOT NULL DEFAULT '',\n"
	"  pwhash TEXT NOT NULL,\n"
	"  disabled INTEGER NOT NULL DEFAULT 0,\n"
	"  failures INTEGER NOT NULL DEFAULT 0,\n"
	"  locked_until_ms INTEGER NOT NULL DEFAULT 0,\n"
	"  created_ms INTEGER NOT NULL,\n"
	"  last_login_ms INTEGER NOT NULL DEFAULT 0\n"
	");\n"
	"CREATE TABLE chart_entries(\n"
	"  seq INTEGER PRIMARY KEY,\n"
	"  uuid TEXT UNIQUE NOT NULL,\n"
	"  kind TEXT NOT NULL,\n"
	"  server INTEGER NOT NULL REFERENCES servers(id),\n"
	"  patient TEXT NOT NULL,\n"
	"  temp INTEGER NOT NULL DEFAULT 0,\n"
	"  author TEXT NOT NULL,\n"
	"  effective TEXT NOT NULL,\n"
	"  effective_us INTEGER NOT NULL,\n"
	"  recorded TEXT NOT NULL,\n"
	"  target TEXT,\n"
	"  if_match TEXT,\n"
	"  body BLOB NOT NULL,\n"
	"  provenance BLOB,\n"
	"  state INTEGER NOT NULL DEFAULT 0,\n"
	"  attempts INTEGER NOT NULL DEFAULT 0,\n"
	"  next_at_ms INTEGER NOT NULL DEFAULT 0,\n"
	"  last_error TEXT,\n"
	"  ehr_ref TEXT,\n"
	"  written_ms INTEGER NOT NULL DEFAULT 0,\n"
	"  conflict BLOB,\n"
	"  decided_by TEXT,\n"
	"  decided_ms INTEGER NOT NULL DEFAULT 0\n"
	");\n"
	"CREATE INDEX chart_due ON chart_entries(state, server, effective_us, seq);\n"
	"CREATE INDEX chart_patient ON chart_entries(patient);\n"
	"CREATE TABLE temp_patients(\n"
	"  id TEXT PRIMARY KEY NOT NULL,\n"
	"  body BLOB NOT NULL,\n"
	"  created_by TEXT NOT NULL,\n"
	"  created_ms INTEGER NOT NULL,\n"
	"  linked_patient TEXT,\n"
	"  linked_by TEXT,\n"
	"  linked_ms INTEGER NOT NULL DEFAULT 0\n"
	");\n"
	"CREATE TABLE audit(\n"
	"  seq INTEGER PRIMARY KEY,\n"
	"  ts_ms INTEGER NOT NULL,\n"
	"  actor TEXT NOT NULL,\n"
	"  action TEXT NOT NULL,\n"
	"  subject TEXT,\n"
	"  detail TEXT,\n"
	"  prev_hash BLOB NOT NULL,\n"
	"  hash BLOB NOT NULL\n"
	");\n"
	"CREATE TABLE patient_index(\n"
	"  token BLOB NOT NULL,\n"
	"  server INTEGER NOT NULL REFERENCES servers(id),\n"
	"  patient TEXT NOT NULL,\n"
	"  PRIMARY KEY(token, server, patient)\n"
	") WITHOUT ROWID;\n"
	"CREATE INDEX patient_index_patient ON patient_index(server, patient);\n";

const store_migration store_migrations[] = {
	{ 1, "resources, versions and crawl cursors", schema_v1, NULL },
	{ 2, "curation: waiting patients, records, instances, REDCap outbox, provenance, review", schema_v2, NULL },
	{ 3, "encrypted key/value (export checkpoints)", schema_v3, NULL },
	{ 4, "downtime charting: users, chart entries, temporary patients, audit, patient index", schema_v4, NULL },
};

const size_t store_n_migrations = sizeof(store_migrations) / sizeof(store_migrations[0]);
