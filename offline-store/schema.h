/*
 * offline-store/schema.h — internal to offline-store/: the schema as a list
 * of migration steps. Step N takes a store from user_version N-1 to N; the
 * store runs the missing steps in one transaction at open (store.c). A new
 * schema version is one more entry at the end of store_migrations[] —
 * never edit a released step.
 */
#pragma once

#include <stddef.h>

#include <sqlite3.h>

typedef struct store_migration {
	int version;            /* user_version after this step */
	const char *what;       /* for messages */
	const char *sql;        /* statements, run with sqlite3_exec() */
	/* Optional data step run after sql, in the same transaction: 0 or an SQLite error code. */
	int (*fn)(sqlite3 *db);
} store_migration;

extern const store_migration store_migrations[];
extern const size_t store_n_migrations;

/* PRAGMA application_id of our stores: "FRB1". */
#define STORE_APPLICATION_ID 0x46524231

/*
 * Page size set when a store is created. 16 KiB pages mean fewer WAL frames
 * (and syscalls) per commit: inserting UUID-keyed bodies ran at ~62k vs
 * ~48k rows/s (100k rows) and ~33k vs ~25k rows/s (1M rows) against 4 KiB.
 */
#define STORE_PAGE_SIZE 16384
