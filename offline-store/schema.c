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

const store_migration store_migrations[] = {
	{ 1, "resources, versions and crawl cursors", schema_v1, NULL },
	/* { 2, "REDCap outbox", "CREATE TABLE outbox(...);", NULL }, */
};

const size_t store_n_migrations = sizeof(store_migrations) / sizeof(store_migrations[0]);
