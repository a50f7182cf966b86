/*
 * test-fixture.h — the store tests' common fixture: a store in a fresh
 * temp dir (db, WAL and key file paths), opening it (with one server
 * registered), SQL on the file behind the store's back, a WAL checkpoint,
 * and looking for a marker in the files (nothing PHI-like may appear there
 * in clear). Included by each offline-store test; static inline so that a
 * test that needs only part of it compiles without warnings.
 */
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "offline-store/store.h"
#include "tests/harness.h"

typedef struct fx {
	char *dir;
	char db[512];
	char wal[520];
	char key[512];
} fx;

static inline bool fx_init(fx *f)
{
	memset(f, 0, sizeof(*f));
	f->dir = harness_tmpdir();
	if (!f->dir)
		return false;
	snprintf(f->db, sizeof(f->db), "%s/store.db", f->dir);
	snprintf(f->wal, sizeof(f->wal), "%s-wal", f->db);
	snprintf(f->key, sizeof(f->key), "%s/store.key", f->dir);
	return true;
}

/* Remove everything in the temp dir (files and empty dirs), then the dir. */
static inline void fx_deinit(fx *f)
{
	if (!f->dir)
		return;
	DIR *d = opendir(f->dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char p[1024];
			snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
			if (unlink(p) != 0)
				rmdir(p);
		}
		closedir(d);
	}
	rmdir(f->dir);
	free(f->dir);
	f->dir = NULL;
}

static inline store *fx_open(fx *f, store_mode mode)
{
	store *s = NULL;
	char err[1024];
	int rc = store_open(&s, f->db, f->key, mode, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "store_open: %d %s\n", rc, err);
	return s;
}

/* A fixed store key, for known-answer tests of what the store derives from it. */
#define FX_KEY_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* Write FX_KEY_HEX as f's key file (before the store is first opened); false on failure. */
static inline bool fx_known_key(const fx *f)
{
	char *p = harness_write_file(f->dir, "store.key", FX_KEY_HEX "\n", strlen(FX_KEY_HEX) + 1, 0600);
	bool ok = p != NULL;
	free(p);
	return ok;
}

/* fx_init() and fx_open() RW with one server registered (*srv); NULL on failure. */
static inline store *fx_setup(fx *f, int64_t *srv)
{
	if (!fx_init(f))
		return NULL;
	store *s = fx_open(f, STORE_RW);
	if (s && store_server_id(s, "https://ehr.example.org/fhir", srv) != 0) {
		store_close(s);
		return NULL;
	}
	return s;
}

/*
 * The start of most store tests: declares fx f, int64_t srv and store *s, the
 * store opened by fx_setup() (the test returns when it cannot be).
 */
#define FX_STORE(f, srv, s)            \
	fx f;                          \
	int64_t srv = 0;               \
	store *s = fx_setup(&f, &srv); \
	REQUIRE(s)

/* Run SQL on a plain connection to db_path (the file is made if missing); an SQLite code. */
static inline int raw_exec(const char *db_path, const char *sql)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		fprintf(stderr, "raw_exec(%s): %s\n", sql, sqlite3_errmsg(db));
	sqlite3_close(db);
	return rc;
}

/* One integer from a query on a plain read-only connection (sees committed data only); -1 on error. */
static inline int64_t q_int(const char *db_path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	else
		fprintf(stderr, "q_int(%s): %s\n", sql, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* Copy every frame of the WAL into the database file (checked), on a plain connection. */
static inline void fx_checkpoint(const fx *f)
{
	sqlite3 *db = NULL;
	REQUIRE(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
	/* The PRAGMA reads the header first (the C call on a fresh connection does not know it is WAL yet). */
	sqlite3_stmt *q = NULL;
	REQUIRE(sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(FULL)", -1, &q, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(q) == SQLITE_ROW);
	CHECK_INT(sqlite3_column_int(q, 0), 0); /* not busy */
	CHECK(sqlite3_column_int(q, 1) > 0);
	CHECK_INT(sqlite3_column_int(q, 2), sqlite3_column_int(q, 1)); /* every frame copied */
	sqlite3_finalize(q);
	sqlite3_close(db);
}

/* The whole file (NUL-terminated, *len bytes) or NULL. */
static inline uint8_t *read_all(const char *path, size_t *len)
{
	*len = 0;
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return NULL;
	}
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (buf)
		buf[got] = 0;
	*len = got;
	return buf;
}

static inline bool file_has(const char *path, const char *needle)
{
	size_t len = 0;
	uint8_t *b = read_all(path, &len);
	bool found = b && memmem(b, len, needle, strlen(needle)) != NULL;
	free(b);
	return found;
}
