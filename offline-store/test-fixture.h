/*
 * test-fixture.h — the store tests' common fixture: a store in a fresh
 * temp dir (db, WAL and key file paths), opening it, and looking for a
 * marker in the files (nothing PHI-like may appear there in clear).
 * Included by each offline-store test; static inline so that a test that
 * needs only part of it compiles without warnings.
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
