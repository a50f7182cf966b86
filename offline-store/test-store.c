/* Tests for offline-store/: the store API on real SQLite files in a temp dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "offline-store/schema.h"
#include "offline-store/store.h"
#include "offline-store/test-fixture.h"
#include "tests/harness.h"

/* ---- fixture ------------------------------------------------------------ */

static bool file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0)
		return;
	if (write(fd, text, strlen(text)) < 0)
		fprintf(stderr, "write %s failed\n", path);
	fchmod(fd, mode);
	close(fd);
}

static int put(store *s, int64_t srv, const char *type, const char *id, const char *vid, const char *lu,
	       const char *patient, const char *body, int *is_new)
{
	store_resource r = {
		.type = type,
		.id = id,
		.version_id = vid,
		.last_updated = lu,
		.patient = patient,
		.body = body,
		.body_len = strlen(body),
	};
	int rc = store_put_resource(s, srv, &r, is_new);
	if (rc)
		fprintf(stderr, "store_put_resource %s/%s: %d %s\n", type, id, rc, store_errmsg(s));
	return rc;
}

/* The body stored for type/id, or NULL (caller frees). */
static char *get(store *s, int64_t srv, const char *type, const char *id, int *rc_out)
{
	char *body = NULL, vid[64];
	size_t len = 0;
	int rc = store_get_resource(s, srv, type, id, &body, &len, vid, sizeof(vid));
	if (rc_out)
		*rc_out = rc;
	if (rc == 0 && strlen(body) != len) {
		free(body);
		return NULL;
	}
	return body;
}

static int64_t status_count(store *s, const char *what, const char *type)
{
	json_t *st = store_status_json(s);
	if (!st) {
		fprintf(stderr, "store_status_json: %s\n", store_errmsg(s));
		return -1;
	}
	json_t *v = json_object_get(json_object_get(st, what), type);
	int64_t n = v ? json_integer_value(v) : 0;
	json_decref(st);
	return n;
}

static const char *const srv_url = "https://ehr.example.org/fhir";

/* ---- schema, open, keys ------------------------------------------------- */

static void test_create_and_reopen(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	struct stat st;
	REQUIRE(stat(f.key, &st) == 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK_INT(st.st_size, 65);
	int64_t id1 = 0, id2 = 0, again = 0;
	CHECK_INT(store_server_id(s, srv_url, &id1), 0);
	CHECK_INT(store_server_id(s, "https://other.example.org/fhir", &id2), 0);
	CHECK_INT(store_server_id(s, srv_url, &again), 0);
	CHECK(id1 > 0 && id2 > 0 && id1 != id2);
	CHECK_INT(again, id1);
	CHECK_INT(put(s, id1, "Patient", "p1", "1", "2024-01-01T00:00:00Z", "p1", "{\"id\":\"p1\"}", NULL), 0);
	store_close(s);
	store_close(NULL);

	size_t klen = 0;
	uint8_t *key_before = read_all(f.key, &klen);

	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_INT(store_server_id(s, srv_url, &again), 0);
	CHECK_INT(again, id1);
	int rc = 0;
	char *b = get(s, id1, "Patient", "p1", &rc);
	CHECK_INT(rc, 0);
	CHECK_STR(b, "{\"id\":\"p1\"}");
	free(b);
	store_close(s);

	/* The key was not replaced on reopen. */
	size_t klen2 = 0;
	uint8_t *key_after = read_all(f.key, &klen2);
	CHECK(key_before && key_after && klen == klen2 && memcmp(key_before, key_after, klen) == 0);
	free(key_before);
	free(key_after);

	s = fx_open(&f, STORE_RO);
	REQUIRE(s);
	json_t *j = store_status_json(s);
	CHECK(j && json_integer_value(json_object_get(j, "schema")) == store_schema_version());
	json_decref(j);
	CHECK_INT(store_server_id(s, srv_url, &again), 0);
	CHECK_INT(again, id1);
	int64_t unknown = 0;
	CHECK_INT(store_server_id(s, "https://never.example.org", &unknown), STORE_E_NOTFOUND);
	store_close(s);

	/* The database says what it is. */
	sqlite3 *db = NULL;
	REQUIRE(sqlite3_open_v2(f.db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	sqlite3_stmt *q = NULL;
	REQUIRE(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(q) == SQLITE_ROW);
	CHECK_STR((const char *)sqlite3_column_text(q, 0), "wal");
	sqlite3_finalize(q);
	REQUIRE(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(q) == SQLITE_ROW);
	CHECK_INT(sqlite3_column_int(q, 0), store_schema_version());
	sqlite3_finalize(q);
	sqlite3_close(db);
	fx_deinit(&f);
}

static void test_migrations_are_contiguous(void)
{
	REQUIRE(store_n_migrations >= 1);
	for (size_t i = 0; i < store_n_migrations; i++) {
		CHECK_INT(store_migrations[i].version, (int)i + 1);
		CHECK(store_migrations[i].sql && store_migrations[i].what);
	}
	CHECK_INT(store_schema_version(), store_migrations[store_n_migrations - 1].version);
}

static bool same_bytes(const char *path, const uint8_t *before, size_t len)
{
	size_t n = 0;
	uint8_t *now = read_all(path, &n);
	bool same = now && before && n == len && memcmp(now, before, n) == 0;
	free(now);
	return same;
}

static void test_newer_schema_refused(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	store_close(s);
	REQUIRE(raw_exec(f.db, "PRAGMA user_version = 7") == SQLITE_OK);
	size_t len = 0;
	uint8_t *before = read_all(f.db, &len);
	REQUIRE(before);

	char err[1024], want[1024];
	snprintf(want, sizeof(want), "store %s has schema version 7; this program knows up to %d: upgrade fhir-redcap-bridge",
		 f.db, store_schema_version());
	for (int mode = STORE_RW; mode <= STORE_RO; mode++) {
		s = (store *)&f; /* must be reset to NULL */
		CHECK_INT(store_open(&s, f.db, f.key, (store_mode)mode, err, sizeof(err)), STORE_E_SCHEMA);
		CHECK(s == NULL);
		CHECK_STR(err, want);
		CHECK(same_bytes(f.db, before, len));
	}
	free(before);
	fx_deinit(&f);
}

static void test_not_our_database(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = NULL;
	char err[1024];

	/* Another application's SQLite file: refused, untouched. */
	REQUIRE(raw_exec(f.db, "CREATE TABLE notes(x); INSERT INTO notes VALUES('keep me')") == SQLITE_OK);
	size_t len = 0;
	uint8_t *before = read_all(f.db, &len);
	CHECK_INT(store_open(&s, f.db, f.key, STORE_RW, err, sizeof(err)), STORE_E_DB);
	CHECK(strstr(err, "not a fhir-redcap-bridge store") != NULL);
	CHECK(same_bytes(f.db, before, len));
	free(before);
	CHECK(!file_exists(f.key)); /* refused before any key was made */

	REQUIRE(raw_exec(f.db, "DROP TABLE notes; PRAGMA application_id = 1234") == SQLITE_OK);
	CHECK_INT(store_open(&s, f.db, f.key, STORE_RW, err, sizeof(err)), STORE_E_DB);
	CHECK(strstr(err, "application_id 1234") != NULL);
	CHECK(!file_exists(f.key));

	/* Not SQLite at all. */
	unlink(f.db);
	write_text(f.db, "this is a text file, not a database, and it is long enough to have a header\n", 0600);
	CHECK_INT(store_open(&s, f.db, f.key, STORE_RW, err, sizeof(err)), STORE_E_DB);
	CHECK(strstr(err, "not an SQLite database") != NULL);
	CHECK(file_has(f.db, "this is a text file"));
	CHECK(s == NULL);
	fx_deinit(&f);
}

static void test_key_permissions_and_format(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = NULL;
	char err[1024];
	static const char hex[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

	write_text(f.key, hex, 0644);
	CHECK_INT(store_open(&s, f.db, f.key, STORE_RW, err, sizeof(err)), STORE_E_KEY);
	CHECK(strstr(err, "0644") != NULL && strstr(err, "chmod 600") != NULL);
	CHECK(strstr(err, "0011223344") == NULL);
	CHECK(!file_exists(f.db)); /* refused before anything was created */

	write_text(f.key, "00112233", 0600);
	CHECK_INT(store_open(&s, f.db, f.key, STORE_RW, err, sizeof(err)), STORE_E_KEY);
	CHECK(strstr(err, "holds 8 hex digits; expected 64") != NULL);

	unlink(f.key);
	REQUIRE(mkdir(f.key, 0700) == 0);
	CHECK_INT(store_open(&s, f.db, f.key, STORE_RW, err, sizeof(err)), STORE_E_KEY);
	CHECK(strstr(err, "not a regular file") != NULL);
	rmdir(f.key);

	/* A given, well-formed key is used as is. */
	write_text(f.key, hex, 0600);
	s = fx_open(&f, STORE_RW);
	CHECK(s != NULL);
	store_close(s);
	CHECK(file_has(f.key, "00112233445566778899aabbccddeeff"));
	fx_deinit(&f);
}

static void test_wrong_key(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t srv = 0;
	REQUIRE(store_server_id(s, srv_url, &srv) == 0);
	REQUIRE(put(s, srv, "Observation", "o1", "1", "2024-01-01T00:00:00Z", "", "{\"v\":1}", NULL) == 0);
	store_close(s);

	size_t len = 0;
	uint8_t *before = read_all(f.db, &len);
	REQUIRE(before);
	CHECK(!file_exists(f.wal));
	write_text(f.key, "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n", 0600);
	char err[1024];
	for (int mode = STORE_RW; mode <= STORE_RO; mode++) {
		CHECK_INT(store_open(&s, f.db, f.key, (store_mode)mode, err, sizeof(err)), STORE_E_KEY);
		CHECK(s == NULL);
		CHECK(strstr(err, "does not open the store") != NULL);
		CHECK(strstr(err, "ffeeddcc") == NULL);
		CHECK(same_bytes(f.db, before, len));
		size_t wl = 0;
		uint8_t *w = read_all(f.wal, &wl);
		CHECK_INT(wl, 0); /* nothing written to a WAL either */
		free(w);
	}
	free(before);
	fx_deinit(&f);
}

static void test_missing_key(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = NULL;
	char err[1024], want[1536];

	/* RO on nothing: not found, and no key is made. */
	CHECK_INT(store_open(&s, f.db, f.key, STORE_RO, err, sizeof(err)), STORE_E_NOTFOUND);
	CHECK(!file_exists(f.key));
	CHECK(!file_exists(f.db));

	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	store_close(s);
	REQUIRE(unlink(f.key) == 0);
	size_t len = 0;
	uint8_t *before = read_all(f.db, &len);
	snprintf(want, sizeof(want), "key file %s is missing; the store %s was encrypted with another key", f.key,
		 f.db);
	for (int mode = STORE_RW; mode <= STORE_RO; mode++) {
		CHECK_INT(store_open(&s, f.db, f.key, (store_mode)mode, err, sizeof(err)), STORE_E_KEY);
		CHECK_STR(err, want);
		CHECK(!file_exists(f.key)); /* never replaced by a new key */
		CHECK(same_bytes(f.db, before, len));
	}
	free(before);
	fx_deinit(&f);
}

/* ---- put semantics ------------------------------------------------------ */

static void test_dedupe_and_boundary_duplicates(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t srv = 0;
	REQUIRE(store_server_id(s, srv_url, &srv) == 0);

	/* Two pages that overlap by one entry (a resource at the boundary). */
	int news = 0, is_new = 0;
	char id[32], body[64];
	REQUIRE(store_begin(s) == 0);
	for (int i = 1; i <= 5; i++) {
		snprintf(id, sizeof(id), "o%d", i);
		snprintf(body, sizeof(body), "{\"id\":\"o%d\"}", i);
		REQUIRE(put(s, srv, "Observation", id, "1", "2024-01-01T00:00:00Z", "p1", body, &is_new) == 0);
		news += is_new;
	}
	REQUIRE(store_commit(s) == 0);
	CHECK_INT(news, 5);
	news = 0;
	REQUIRE(store_begin(s) == 0);
	for (int i = 5; i <= 9; i++) {
		snprintf(id, sizeof(id), "o%d", i);
		snprintf(body, sizeof(body), "{\"id\":\"o%d\"}", i);
		REQUIRE(put(s, srv, "Observation", id, "1", "2024-01-01T00:00:00Z", "p1", body, &is_new) == 0);
		news += is_new;
	}
	REQUIRE(store_commit(s) == 0);
	CHECK_INT(news, 4);
	CHECK_INT(status_count(s, "resources", "Observation"), 9);
	CHECK_INT(status_count(s, "versions", "Observation"), 9);

	/* Same version with different bytes is still "seen": nothing written. */
	REQUIRE(put(s, srv, "Observation", "o1", "1", "2024-01-01T00:00:00Z", "p1", "{\"changed\":true}", &is_new) ==
		0);
	CHECK_INT(is_new, 0);
	char *b = get(s, srv, "Observation", "o1", NULL);
	CHECK_STR(b, "{\"id\":\"o1\"}");
	free(b);

	/* Same id under another type or server is a different resource. */
	REQUIRE(put(s, srv, "Condition", "o1", "1", "", "", "{\"c\":1}", &is_new) == 0);
	CHECK_INT(is_new, 1);
	int64_t srv2 = 0;
	REQUIRE(store_server_id(s, "https://other.example.org/fhir", &srv2) == 0);
	REQUIRE(put(s, srv2, "Observation", "o1", "1", "", "", "{\"s\":2}", &is_new) == 0);
	CHECK_INT(is_new, 1);
	b = get(s, srv, "Observation", "o1", NULL);
	CHECK_STR(b, "{\"id\":\"o1\"}");
	free(b);
	b = get(s, srv2, "Observation", "o1", NULL);
	CHECK_STR(b, "{\"s\":2}");
	free(b);
	CHECK_INT(status_count(s, "resources", "Observation"), 10);
	store_close(s);
	fx_deinit(&f);
}

static void test_newer_wins(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t srv = 0;
	REQUIRE(store_server_id(s, srv_url, &srv) == 0);
	int is_new = 0, rc = 0;
	char vid[64], *body = NULL;
	size_t len = 0;

	REQUIRE(put(s, srv, "Observation", "o", "1", "2024-01-02T00:00:00Z", "p", "{\"v\":1}", &is_new) == 0);
	CHECK_INT(is_new, 1);
	/* 23:00-02:00 on the 1st is 01:00Z on the 2nd: newer, though it sorts lower as text. */
	REQUIRE(put(s, srv, "Observation", "o", "2", "2024-01-01T23:00:00-02:00", "p", "{\"v\":2}", &is_new) == 0);
	CHECK_INT(is_new, 1);
	CHECK_INT(store_get_resource(s, srv, "Observation", "o", &body, &len, vid, sizeof(vid)), 0);
	CHECK_STR(body, "{\"v\":2}");
	CHECK_STR(vid, "2");
	free(body);
	/* 00:30+00:00 on the 2nd is older than 01:00Z: version recorded, body kept. */
	REQUIRE(put(s, srv, "Observation", "o", "3", "2024-01-02T00:30:00.5+00:00", "p", "{\"v\":3}", &is_new) ==
		0);
	CHECK_INT(is_new, 1);
	CHECK_INT(store_get_resource(s, srv, "Observation", "o", &body, &len, vid, sizeof(vid)), 0);
	CHECK_STR(body, "{\"v\":2}");
	CHECK_STR(vid, "2");
	free(body);
	/* Fraction precision: .1 is later than .09999 */
	REQUIRE(put(s, srv, "Observation", "o", "4", "2024-01-02T01:00:00.1Z", "p", "{\"v\":4}", &is_new) == 0);
	REQUIRE(put(s, srv, "Observation", "o", "5", "2024-01-02T01:00:00.09999Z", "p", "{\"v\":5}", &is_new) == 0);
	CHECK_INT(is_new, 1);
	body = get(s, srv, "Observation", "o", &rc);
	CHECK_STR(body, "{\"v\":4}");
	free(body);
	/* The same instant again (another version): the later arrival wins. */
	REQUIRE(put(s, srv, "Observation", "o", "6", "2024-01-02T02:00:00.100+01:00", "p", "{\"v\":6}", &is_new) ==
		0);
	body = get(s, srv, "Observation", "o", &rc);
	CHECK_STR(body, "{\"v\":6}");
	free(body);
	/* No usable lastUpdated: cannot be shown older, so it replaces. */
	REQUIRE(put(s, srv, "Observation", "o", "7", "", "p", "{\"v\":7}", &is_new) == 0);
	body = get(s, srv, "Observation", "o", &rc);
	CHECK_STR(body, "{\"v\":7}");
	free(body);
	REQUIRE(put(s, srv, "Observation", "o", "8", "2020-01-01T00:00:00Z", "p", "{\"v\":8}", &is_new) == 0);
	body = get(s, srv, "Observation", "o", &rc);
	CHECK_STR(body, "{\"v\":8}");
	free(body);
	CHECK_INT(status_count(s, "resources", "Observation"), 1);
	CHECK_INT(status_count(s, "versions", "Observation"), 8);

	/* A too-small versionId buffer is an error, not a cut. */
	CHECK_INT(store_get_resource(s, srv, "Observation", "o", &body, &len, vid, 1), -ENOBUFS);
	CHECK(body == NULL);
	/* version_id NULL is fine */
	CHECK_INT(store_get_resource(s, srv, "Observation", "o", &body, &len, NULL, 0), 0);
	CHECK_INT(len, 7);
	free(body);
	CHECK_INT(store_get_resource(s, srv, "Observation", "nope", &body, &len, vid, sizeof(vid)), STORE_E_NOTFOUND);
	CHECK_INT(store_get_resource(s, srv, "Nothing", "o", &body, &len, vid, sizeof(vid)), STORE_E_NOTFOUND);
	CHECK(body == NULL);
	store_close(s);
	fx_deinit(&f);
}

static void test_versionless_by_body(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t srv = 0;
	REQUIRE(store_server_id(s, srv_url, &srv) == 0);
	int is_new = 0;
	REQUIRE(put(s, srv, "Patient", "p", "", "", "", "{\"name\":\"A\"}", &is_new) == 0);
	CHECK_INT(is_new, 1);
	REQUIRE(put(s, srv, "Patient", "p", "", "", "", "{\"name\":\"A\"}", &is_new) == 0);
	CHECK_INT(is_new, 0);
	REQUIRE(put(s, srv, "Patient", "p", "", "", "", "{\"name\":\"B\"}", &is_new) == 0);
	CHECK_INT(is_new, 1);
	char *b = get(s, srv, "Patient", "p", NULL);
	CHECK_STR(b, "{\"name\":\"B\"}");
	free(b);
	/* A body seen before for this resource is not new. */
	REQUIRE(put(s, srv, "Patient", "p", "", "", "", "{\"name\":\"A\"}", &is_new) == 0);
	CHECK_INT(is_new, 0);
	/* Same bytes as another resource's body: that one is its own resource. */
	REQUIRE(put(s, srv, "Patient", "q", "", "", "", "{\"name\":\"A\"}", &is_new) == 0);
	CHECK_INT(is_new, 1);
	/* An empty body is a body. */
	REQUIRE(put(s, srv, "Patient", "r", "", "", "", "", &is_new) == 0);
	CHECK_INT(is_new, 1);
	int rc = 0;
	b = get(s, srv, "Patient", "r", &rc);
	CHECK_INT(rc, 0);
	CHECK_STR(b, "");
	free(b);
	CHECK_INT(status_count(s, "versions", "Patient"), 4);
	CHECK_INT(status_count(s, "resources", "Patient"), 3);
	store_close(s);
	fx_deinit(&f);
}

static void test_put_arguments(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t srv = 0;
	REQUIRE(store_server_id(s, srv_url, &srv) == 0);
	int is_new = 7;
	store_resource r = { .type = "Observation", .id = "", .body = "{}", .body_len = 2 };
	CHECK_INT(store_put_resource(s, srv, &r, &is_new), -EINVAL);
	CHECK_INT(is_new, 0);
	r.id = "x";
	r.type = "";
	CHECK_INT(store_put_resource(s, srv, &r, &is_new), -EINVAL);
	r.type = "Observation";
	CHECK_INT(store_put_resource(s, 0, &r, &is_new), -EINVAL);
	/* Absurdly long keys from a hostile server are refused, not truncated. */
	char *long_id = malloc(5000);
	REQUIRE(long_id);
	memset(long_id, 'i', 4999);
	long_id[4999] = '\0';
	r.id = long_id;
	CHECK_INT(store_put_resource(s, srv, &r, &is_new), -EINVAL);
	long_id[4096] = '\0';
	CHECK_INT(store_put_resource(s, srv, &r, &is_new), 0); /* 4096 is the limit */
	free(long_id);
	r.id = "x";
	/* NULL optional strings are taken as "" */
	CHECK_INT(store_put_resource(s, srv, &r, &is_new), 0);
	CHECK_INT(is_new, 1);
	CHECK_INT(store_put_resource(s, srv, &r, NULL), 0);
	/* A server id that does not exist: the foreign key refuses it. */
	int rc = store_put_resource(s, srv + 100, &r, &is_new);
	CHECK_INT(rc, STORE_E_DB);
	CHECK(strstr(store_errmsg(s), "FOREIGN KEY") != NULL);
	CHECK_INT(is_new, 0);
	store_close(s);
	fx_deinit(&f);
}

/* ---- transactions ------------------------------------------------------- */

static void test_rollback_leaves_nothing(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t srv = 0;
	REQUIRE(store_server_id(s, srv_url, &srv) == 0);

	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_begin(s), -EALREADY);
	REQUIRE(put(s, srv, "Encounter", "e1", "1", "2024-01-01T00:00:00Z", "pat-1", "{\"e\":1}", NULL) == 0);
	store_cursor c = { .watermark = "2024-01-01T00:00:00Z", .pages = 3 };
	c.next_url = (char *)"https://ehr.example.org/fhir/Encounter?page=2";
	REQUIRE(store_cursor_put(s, srv, "Encounter", &c) == 0);
	CHECK_INT(store_rollback(s), 0);
	CHECK_INT(store_rollback(s), 0); /* no transaction: a no-op */

	int rc = 0;
	char *b = get(s, srv, "Encounter", "e1", &rc);
	CHECK_INT(rc, STORE_E_NOTFOUND);
	free(b);
	store_cursor got;
	CHECK_INT(store_cursor_get(s, srv, "Encounter", &got), 0);
	CHECK_STR(got.watermark, "");
	CHECK(got.next_url == NULL);
	store_cursor_deinit(&got);
	json_t *j = store_status_json(s);
	CHECK(j && json_object_size(json_object_get(j, "resources")) == 0);
	CHECK(j && json_array_size(json_object_get(j, "cursors")) == 0);
	json_decref(j);

	/* The type and patient rows rolled back too; using them again works. */
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(put(s, srv, "Encounter", "e1", "1", "2024-01-01T00:00:00Z", "pat-1", "{\"e\":1}", NULL), 0);
	CHECK_INT(store_commit(s), 0);
	b = get(s, srv, "Encounter", "e1", &rc);
	CHECK_STR(b, "{\"e\":1}");
	free(b);
	CHECK_INT(store_commit(s), -EINVAL); /* nothing open */
	store_close(s);

	/* An open transaction at close is rolled back. */
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	REQUIRE(store_begin(s) == 0);
	REQUIRE(put(s, srv, "Encounter", "e2", "1", "", "", "{\"e\":2}", NULL) == 0);
	store_close(s);
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	b = get(s, srv, "Encounter", "e2", &rc);
	CHECK_INT(rc, STORE_E_NOTFOUND);
	free(b);
	CHECK_INT(status_count(s, "resources", "Encounter"), 1);
	store_close(s);
	fx_deinit(&f);
}

/* A committed page survives kill -9 of the writer; an uncommitted one is absent. */
static void test_kill9_keeps_committed(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t srv = 0;
	REQUIRE(store_server_id(s, srv_url, &srv) == 0);
	store_close(s);

	/* The parent kills the child once it holds an open transaction. */
	int ready[2];
	REQUIRE(pipe(ready) == 0);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		store *cs = fx_open(&f, STORE_RW);
		if (!cs)
			_exit(3);
		char id[32];
		store_begin(cs);
		for (int i = 0; i < 100; i++) {
			snprintf(id, sizeof(id), "c%03d", i);
			put(cs, srv, "Observation", id, "1", "2024-01-01T00:00:00Z", "", "{\"committed\":1}", NULL);
		}
		store_cursor c = { .watermark = "2024-01-01T00:00:00Z" };
		store_cursor_put(cs, srv, "Observation", &c);
		if (store_commit(cs) != 0)
			_exit(4);
		store_begin(cs);
		put(cs, srv, "Observation", "uncommitted", "1", "", "", "{}", NULL);
		if (write(ready[1], "k", 1) != 1)
			_exit(5);
		for (;;)
			pause();
	}
	close(ready[1]);
	char k = 0;
	CHECK_INT(read(ready[0], &k, 1), 1);
	close(ready[0]);
	kill(pid, SIGKILL);
	int status = 0;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	CHECK(file_exists(f.wal)); /* the data is only in the WAL */

	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_INT(status_count(s, "resources", "Observation"), 100);
	int rc = 0;
	char *b = get(s, srv, "Observation", "c099", &rc);
	CHECK_STR(b, "{\"committed\":1}");
	free(b);
	b = get(s, srv, "Observation", "uncommitted", &rc);
	CHECK_INT(rc, STORE_E_NOTFOUND);
	free(b);
	store_cursor c;
	CHECK_INT(store_cursor_get(s, srv, "Observation", &c), 0);
	CHECK_STR(c.watermark, "2024-01-01T00:00:00Z");
	store_cursor_deinit(&c);
	store_close(s);
	fx_deinit(&f);
}

static void test_busy_writer(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *a = fx_open(&f, STORE_RW);
	store *b = fx_open(&f, STORE_RW);
	REQUIRE(a && b);
	int64_t srv = 0;
	REQUIRE(store_server_id(a, srv_url, &srv) == 0);
	REQUIRE(store_set_busy_timeout(b, 50) == 0);
	REQUIRE(store_begin(a) == 0);
	CHECK_INT(store_begin(b), STORE_E_BUSY);
	CHECK(strstr(store_errmsg(b), "locked by another writer") != NULL);
	/* A write outside a transaction waits the same way. */
	CHECK_INT(store_cursor_set_error(b, srv, "Observation", "x"), STORE_E_BUSY);
	REQUIRE(store_commit(a) == 0);
	CHECK_INT(store_begin(b), 0);
	CHECK_INT(store_commit(b), 0);
	store_close(a);
	store_close(b);
	fx_deinit(&f);
}

/* ---- cursors ------------------------------------------------------------ */

static void test_cursor_round_trip(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t srv = 0, srv2 = 0;
	REQUIRE(store_server_id(s, srv_url, &srv) == 0);
	REQUIRE(store_server_id(s, "https://other.example.org/fhir", &srv2) == 0);

	store_cursor c;
	memset(&c, 'x', sizeof(c)); /* garbage in: all fields are set */
	CHECK_INT(store_cursor_get(s, srv, "Observation", &c), 0);
	CHECK_STR(c.watermark, "");
	CHECK_STR(c.crawl_started, "");
	CHECK(c.next_url == NULL);
	CHECK_INT(c.pages, 0);
	CHECK_STR(c.last_success, "");
	CHECK_STR(c.last_error, "");

	store_cursor w = { .watermark = "2024-01-01T00:00:00Z", .crawl_started = "2024-02-01T10:00:00.123+01:00",
			   .pages = 7, .last_success = "2024-01-01T00:00:05Z", .last_error = "HTTP 503 from server" };
	w.next_url = (char *)"https://ehr.example.org/fhir/Observation?_count=1000&_page_token=abc%2B";
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_cursor_put(s, srv, "Observation", &w), 0);
	REQUIRE(store_commit(s) == 0);
	CHECK_INT(store_cursor_get(s, srv, "Observation", &c), 0);
	CHECK_STR(c.watermark, w.watermark);
	CHECK_STR(c.crawl_started, w.crawl_started);
	CHECK_STR(c.next_url, w.next_url);
	CHECK_INT(c.pages, 7);
	CHECK_STR(c.last_success, w.last_success);
	CHECK_STR(c.last_error, w.last_error);
	store_cursor_deinit(&c);
	CHECK(c.next_url == NULL);
	store_cursor_deinit(&c); /* idempotent */

	/* Other server / other type: separate cursors. */
	CHECK_INT(store_cursor_get(s, srv2, "Observation", &c), 0);
	CHECK_STR(c.watermark, "");
	CHECK_INT(store_cursor_get(s, srv, "Patient", &c), 0);
	CHECK_STR(c.watermark, "");

	/* The crawl ends: next_url NULL is stored as NULL. */
	w.next_url = NULL;
	w.pages = 0;
	w.crawl_started[0] = '\0';
	strcpy(w.watermark, "2024-02-01T10:00:00.123+01:00");
	w.last_error[0] = '\0';
	CHECK_INT(store_cursor_put(s, srv, "Observation", &w), 0); /* outside a txn is fine */
	CHECK_INT(store_cursor_get(s, srv, "Observation", &c), 0);
	CHECK(c.next_url == NULL);
	CHECK_STR(c.watermark, "2024-02-01T10:00:00.123+01:00");
	CHECK_STR(c.crawl_started, "");
	CHECK_INT(c.pages, 0);
	CHECK_STR(c.last_error, "");

	/* set_error: only last_error changes; cut at a UTF-8 boundary. */
	char msg[700];
	memset(msg, 'a', 510);
	memcpy(msg + 510, "\xc3\xa9 and more", sizeof("\xc3\xa9 and more")); /* é straddles byte 511 */
	CHECK_INT(store_cursor_set_error(s, srv, "Observation", msg), 0);
	CHECK_INT(store_cursor_get(s, srv, "Observation", &c), 0);
	CHECK_INT(strlen(c.last_error), 510);
	CHECK_STR(c.watermark, "2024-02-01T10:00:00.123+01:00");
	/* set_error inside a transaction is part of it */
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_cursor_set_error(s, srv, "Patient", "timeout"), 0);
	REQUIRE(store_rollback(s) == 0);
	CHECK_INT(store_cursor_get(s, srv, "Patient", &c), 0);
	CHECK_STR(c.last_error, "");
	CHECK_INT(store_cursor_set_error(s, srv, "Patient", "timeout"), 0);
	CHECK_INT(store_cursor_get(s, srv, "Patient", &c), 0);
	CHECK_STR(c.last_error, "timeout");
	CHECK_STR(c.watermark, "");

	/* A field without its NUL is refused. */
	memset(w.watermark, 'z', sizeof(w.watermark));
	CHECK_INT(store_cursor_put(s, srv, "Observation", &w), -EINVAL);
	store_close(s);
	fx_deinit(&f);
}

/* ---- status ------------------------------------------------------------- */

static void test_status_json(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t a = 0, b = 0;
	REQUIRE(store_server_id(s, "https://a.example.org/fhir", &a) == 0);
	REQUIRE(store_server_id(s, "https://b.example.org/fhir", &b) == 0);

	json_t *j = store_status_json(s);
	json_t *want = json_pack("{s:i, s:{}, s:{}, s:[], s:n, s:{s:i, s:i, s:i, s:i, s:i, s:i}}", "schema",
				 store_schema_version(), "resources", "versions", "cursors", "last_sync", "downtime",
				 "pending", 0, "written", 0, "conflict", 0, "waiting_link", 0, "rejected", 0,
				 "discarded", 0);
	CHECK(j && want && json_equal(j, want));
	json_decref(j);
	json_decref(want);

	REQUIRE(store_begin(s) == 0);
	REQUIRE(put(s, a, "Patient", "p1", "1", "2024-01-01T00:00:00Z", "p1", "{}", NULL) == 0);
	REQUIRE(put(s, a, "Patient", "p1", "2", "2024-01-02T00:00:00Z", "p1", "{}", NULL) == 0);
	REQUIRE(put(s, a, "Patient", "p2", "1", "2024-01-01T00:00:00Z", "p2", "{}", NULL) == 0);
	REQUIRE(put(s, b, "Patient", "p1", "1", "2024-01-01T00:00:00Z", "p1", "{}", NULL) == 0);
	REQUIRE(put(s, a, "Observation", "o1", "1", "2024-01-01T00:00:00Z", "p1", "{}", NULL) == 0);
	REQUIRE(put(s, a, "Observation", "o1", "1", "2024-01-01T00:00:00Z", "p1", "{}", NULL) == 0);
	store_cursor c1 = { .watermark = "2024-01-01T00:00:00Z", .last_success = "2024-03-01T12:00:00+02:00" };
	store_cursor c2 = { .watermark = "", .crawl_started = "2024-03-02T00:00:00Z", .pages = 4,
			    .last_success = "2024-03-01T11:00:00Z", .last_error = "" };
	c2.next_url = (char *)"https://b.example.org/fhir/Patient?page=5";
	store_cursor c3 = { .last_error = "HTTP 401", .pages = 9 };
	REQUIRE(store_cursor_put(s, a, "Patient", &c1) == 0);
	REQUIRE(store_cursor_put(s, b, "Patient", &c2) == 0);
	REQUIRE(store_cursor_put(s, a, "Observation", &c3) == 0);
	REQUIRE(store_commit(s) == 0);

	j = store_status_json(s);
	REQUIRE(j);
	json_error_t e;
	want = json_loads("{\"schema\": 1,"
			  " \"resources\": {\"Observation\": 1, \"Patient\": 3},"
			  " \"versions\": {\"Observation\": 1, \"Patient\": 4},"
			  " \"cursors\": ["
			  "  {\"server\": \"https://a.example.org/fhir\", \"type\": \"Observation\", \"watermark\": \"\","
			  "   \"crawl_in_progress\": false, \"pages_in_progress\": 0, \"last_success\": \"\","
			  "   \"last_error\": \"HTTP 401\"},"
			  "  {\"server\": \"https://a.example.org/fhir\", \"type\": \"Patient\","
			  "   \"watermark\": \"2024-01-01T00:00:00Z\", \"crawl_in_progress\": false,"
			  "   \"pages_in_progress\": 0, \"last_success\": \"2024-03-01T12:00:00+02:00\", \"last_error\": \"\"},"
			  "  {\"server\": \"https://b.example.org/fhir\", \"type\": \"Patient\", \"watermark\": \"\","
			  "   \"crawl_in_progress\": true, \"pages_in_progress\": 4,"
			  "   \"last_success\": \"2024-03-01T11:00:00Z\", \"last_error\": \"\"}],"
			  " \"last_sync\": \"2024-03-01T11:00:00Z\","
			  " \"downtime\": {\"pending\": 0, \"written\": 0, \"conflict\": 0, \"waiting_link\": 0,"
			  "  \"rejected\": 0, \"discarded\": 0}}",
			  0, &e);
	REQUIRE(want);
	/* 12:00+02:00 is 10:00Z: 11:00Z is the latest, though it sorts lower as text. */
	json_object_set_new(want, "schema", json_integer(store_schema_version()));
	if (!json_equal(j, want)) {
		char *got = json_dumps(j, JSON_SORT_KEYS);
		fprintf(stderr, "status: %s\n", got);
		free(got);
	}
	CHECK(json_equal(j, want));
	json_decref(j);
	json_decref(want);
	store_close(s);
	fx_deinit(&f);
}

/* ---- at rest ------------------------------------------------------------ */

#define MARKER "PLAINTEXT-MARKER-q7Zx"

static void test_no_plaintext_on_disk(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t srv = 0;
	REQUIRE(store_server_id(s, srv_url, &srv) == 0);

	/* Small bodies and one large enough for overflow pages. */
	size_t big_len = 200000;
	char *big = malloc(big_len + 1);
	REQUIRE(big);
	for (size_t i = 0; i < big_len; i += strlen(MARKER " "))
		memcpy(big + i, MARKER " ", i + strlen(MARKER " ") <= big_len ? strlen(MARKER " ") : big_len - i);
	big[big_len] = '\0';
	REQUIRE(store_begin(s) == 0);
	char id[32], body[256];
	for (int i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "obs-id-%04d", i);
		snprintf(body, sizeof(body),
			 "{\"resourceType\":\"Observation\",\"id\":\"%s\",\"note\":\"" MARKER " %d\"}", id, i);
		REQUIRE(put(s, srv, "Observation", id, "1", "2024-01-01T00:00:00Z", "patient-7", body, NULL) == 0);
	}
	REQUIRE(put(s, srv, "DocumentReference", "big-doc", "1", "", "", big, NULL) == 0);
	REQUIRE(store_commit(s) == 0);

	/* While open, the data sits in the WAL: scan both files. */
	bool id_seen = file_has(f.db, "obs-id-0199") || file_has(f.wal, "obs-id-0199");
	CHECK(id_seen); /* the scan sees the rows at all */
	CHECK(!file_has(f.db, MARKER));
	CHECK(!file_has(f.wal, MARKER));
	CHECK(!file_has(f.db, "\"resourceType\""));
	CHECK(!file_has(f.wal, "\"resourceType\""));
	/* Bodies read back. */
	int rc = 0;
	char *b = get(s, srv, "DocumentReference", "big-doc", &rc);
	CHECK(b && strcmp(b, big) == 0);
	free(b);
	store_close(s);

	CHECK(file_has(f.db, "obs-id-0199"));
	CHECK(file_has(f.db, "Observation")); /* the type name is not secret */
	CHECK(!file_has(f.db, MARKER));
	CHECK(!file_has(f.wal, MARKER));
	free(big);
	fx_deinit(&f);
}

static int set_body(const char *db_path, const char *id, const uint8_t *blob, int len)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "UPDATE resources SET body = ?1 WHERE id = ?2", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_blob(st, 1, blob, len, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(db) == 1 ? SQLITE_OK : SQLITE_ERROR;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

static uint8_t *get_body_blob(const char *db_path, const char *id, int *len)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	uint8_t *out = NULL;
	*len = 0;
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT body FROM resources WHERE id = ?1", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			*len = sqlite3_column_bytes(st, 0);
			out = malloc((size_t)*len);
			if (out)
				memcpy(out, sqlite3_column_blob(st, 0), (size_t)*len);
		}
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return out;
}

static int count_cb(void *ud, const char *type, const char *id, const char *version_id, const char *last_updated,
		    const char *patient, const char *body, size_t body_len)
{
	(*(int *)ud)++;
	return 0;
}

static void test_corrupt_blob_detected(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t srv = 0;
	REQUIRE(store_server_id(s, srv_url, &srv) == 0);
	REQUIRE(put(s, srv, "Observation", "o1", "1", "", "", "{\"value\":1}", NULL) == 0);
	REQUIRE(put(s, srv, "Observation", "o2", "1", "", "", "{\"value\":2}", NULL) == 0);
	REQUIRE(put(s, srv, "Observation", "o3", "1", "", "", "{\"value\":3}", NULL) == 0);
	store_close(s);

	int len1 = 0, len3 = 0;
	uint8_t *b1 = get_body_blob(f.db, "o1", &len1);
	uint8_t *b3 = get_body_blob(f.db, "o3", &len3);
	REQUIRE(b1 && b3 && len1 > 30);
	b1[len1 / 2] ^= 0x01; /* one bit in the ciphertext */
	REQUIRE(set_body(f.db, "o1", b1, len1) == SQLITE_OK);
	REQUIRE(set_body(f.db, "o2", b3, len3) == SQLITE_OK); /* a valid blob moved to another row */

	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	char *body = (char *)"untouched";
	size_t len = 99;
	char vid[16];
	CHECK_INT(store_get_resource(s, srv, "Observation", "o1", &body, &len, vid, sizeof(vid)), STORE_E_CORRUPT);
	CHECK(body == NULL);
	CHECK_INT(len, 0);
	CHECK(strstr(store_errmsg(s), "failed authentication") != NULL);
	CHECK_INT(store_get_resource(s, srv, "Observation", "o2", &body, &len, vid, sizeof(vid)), STORE_E_CORRUPT);
	CHECK_INT(store_get_resource(s, srv, "Observation", "o3", &body, &len, vid, sizeof(vid)), 0);
	CHECK_STR(body, "{\"value\":3}");
	free(body);
	int n = 0;
	CHECK_INT(store_foreach_resource(s, srv, "Observation", 1, count_cb, &n), STORE_E_CORRUPT);
	CHECK_INT(n, 0); /* o1 sorts first and fails */
	n = 0;
	CHECK_INT(store_foreach_resource(s, srv, "Observation", 0, count_cb, &n), 0);
	CHECK_INT(n, 3);
	store_close(s);

	/* The versionId is bound too: changing it in the row breaks the blob. */
	REQUIRE(raw_exec(f.db, "UPDATE resources SET version_id = '2' WHERE id = 'o3'") == SQLITE_OK);
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_INT(store_get_resource(s, srv, "Observation", "o3", &body, &len, vid, sizeof(vid)), STORE_E_CORRUPT);
	store_close(s);

	/* A truncated blob. */
	REQUIRE(set_body(f.db, "o3", b3, 10) == SQLITE_OK);
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_INT(store_get_resource(s, srv, "Observation", "o3", &body, &len, vid, sizeof(vid)), STORE_E_CORRUPT);
	store_close(s);
	free(b1);
	free(b3);
	fx_deinit(&f);
}

/* ---- reading ------------------------------------------------------------ */

typedef struct seen {
	int n;
	int stop_at;
	char line[16][128];
} seen;

static int seen_cb(void *ud, const char *type, const char *id, const char *version_id, const char *last_updated,
		   const char *patient, const char *body, size_t body_len)
{
	seen *sn = ud;
	if (sn->n < 16)
		snprintf(sn->line[sn->n], sizeof(sn->line[0]), "%s/%s v%s %s p=%s %s", type, id, version_id,
			 last_updated, patient, body ? body : "(no body)");
	if (body && strlen(body) != body_len)
		return -1;
	sn->n++;
	return sn->stop_at && sn->n == sn->stop_at ? 7 : 0;
}

static void test_foreach(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	int64_t a = 0, b = 0;
	REQUIRE(store_server_id(s, "https://a.example.org", &a) == 0);
	REQUIRE(store_server_id(s, "https://b.example.org", &b) == 0);
	REQUIRE(put(s, a, "Observation", "b", "2", "2024-01-02T00:00:00Z", "pt", "{\"b\":1}", NULL) == 0);
	REQUIRE(put(s, a, "Observation", "a", "1", "2024-01-01T00:00:00Z", "", "{\"a\":1}", NULL) == 0);
	REQUIRE(put(s, b, "Observation", "a", "9", "", "pt", "{\"a\":2}", NULL) == 0);
	REQUIRE(put(s, a, "Patient", "pt", "1", "", "", "{\"p\":1}", NULL) == 0);

	seen sn = { 0 };
	CHECK_INT(store_foreach_resource(s, a, "Observation", 1, seen_cb, &sn), 0);
	CHECK_INT(sn.n, 2);
	CHECK_STR(sn.line[0], "Observation/a v1 2024-01-01T00:00:00Z p= {\"a\":1}");
	CHECK_STR(sn.line[1], "Observation/b v2 2024-01-02T00:00:00Z p=pt {\"b\":1}");

	memset(&sn, 0, sizeof(sn));
	CHECK_INT(store_foreach_resource(s, 0, "Observation", 0, seen_cb, &sn), 0);
	CHECK_INT(sn.n, 3);
	CHECK_STR(sn.line[0], "Observation/a v1 2024-01-01T00:00:00Z p= (no body)");
	CHECK_STR(sn.line[1], "Observation/a v9  p=pt (no body)");
	CHECK_STR(sn.line[2], "Observation/b v2 2024-01-02T00:00:00Z p=pt (no body)");

	memset(&sn, 0, sizeof(sn));
	CHECK_INT(store_foreach_resource(s, 0, NULL, 1, seen_cb, &sn), 0);
	CHECK_INT(sn.n, 4);
	CHECK_STR(sn.line[3], "Patient/pt v1  p= {\"p\":1}");

	memset(&sn, 0, sizeof(sn));
	sn.stop_at = 2;
	CHECK_INT(store_foreach_resource(s, 0, NULL, 1, seen_cb, &sn), 7);
	CHECK_INT(sn.n, 2);

	memset(&sn, 0, sizeof(sn));
	CHECK_INT(store_foreach_resource(s, b, "Patient", 1, seen_cb, &sn), 0);
	CHECK_INT(sn.n, 0);
	CHECK_INT(store_foreach_resource(s, a, "NoSuchType", 1, seen_cb, &sn), 0);
	CHECK_INT(sn.n, 0);
	store_close(s);
	fx_deinit(&f);
}

/* A read-only handle reads while a writer holds an open transaction. */
static void test_concurrent_read_only(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *w = fx_open(&f, STORE_RW);
	REQUIRE(w);
	int64_t srv = 0;
	REQUIRE(store_server_id(w, srv_url, &srv) == 0);
	REQUIRE(store_begin(w) == 0);
	REQUIRE(put(w, srv, "Observation", "committed", "1", "", "", "{\"c\":1}", NULL) == 0);
	REQUIRE(store_commit(w) == 0);
	REQUIRE(store_begin(w) == 0);
	REQUIRE(put(w, srv, "Observation", "pending", "1", "", "", "{\"p\":1}", NULL) == 0);
	store_cursor c = { .crawl_started = "2024-01-01T00:00:00Z", .pages = 1 };
	c.next_url = (char *)"https://ehr.example.org/fhir/Observation?page=2";
	REQUIRE(store_cursor_put(w, srv, "Observation", &c) == 0);

	store *r = fx_open(&f, STORE_RO);
	REQUIRE(r);
	json_t *j = store_status_json(r);
	REQUIRE(j);
	CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "resources"), "Observation")), 1);
	CHECK_INT(json_array_size(json_object_get(j, "cursors")), 0);
	json_decref(j);
	int rc = 0;
	char *b = get(r, srv, "Observation", "committed", &rc);
	CHECK_STR(b, "{\"c\":1}");
	free(b);
	b = get(r, srv, "Observation", "pending", &rc);
	CHECK_INT(rc, STORE_E_NOTFOUND);
	free(b);

	/* The reader cannot write. */
	CHECK_INT(store_begin(r), STORE_E_DB);
	CHECK(strstr(store_errmsg(r), "read-only") != NULL);
	CHECK_INT(put(r, srv, "Observation", "x", "1", "", "", "{}", NULL), STORE_E_DB);
	CHECK_INT(store_cursor_set_error(r, srv, "Observation", "x"), STORE_E_DB);

	REQUIRE(store_commit(w) == 0);
	j = store_status_json(r);
	REQUIRE(j);
	CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "resources"), "Observation")), 2);
	json_t *cur = json_array_get(json_object_get(j, "cursors"), 0);
	CHECK(json_is_true(json_object_get(cur, "crawl_in_progress")));
	CHECK_INT(json_integer_value(json_object_get(cur, "pages_in_progress")), 1);
	json_decref(j);
	store_close(r);
	store_close(w);
	fx_deinit(&f);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_create_and_reopen),
		HARNESS_TEST(test_migrations_are_contiguous),
		HARNESS_TEST(test_newer_schema_refused),
		HARNESS_TEST(test_not_our_database),
		HARNESS_TEST(test_key_permissions_and_format),
		HARNESS_TEST(test_wrong_key),
		HARNESS_TEST(test_missing_key),
		HARNESS_TEST(test_dedupe_and_boundary_duplicates),
		HARNESS_TEST(test_newer_wins),
		HARNESS_TEST(test_versionless_by_body),
		HARNESS_TEST(test_put_arguments),
		HARNESS_TEST(test_rollback_leaves_nothing),
		HARNESS_TEST(test_kill9_keeps_committed),
		HARNESS_TEST(test_busy_writer),
		HARNESS_TEST(test_cursor_round_trip),
		HARNESS_TEST(test_status_json),
		HARNESS_TEST(test_no_plaintext_on_disk),
		HARNESS_TEST(test_corrupt_blob_detected),
		HARNESS_TEST(test_foreach),
		HARNESS_TEST(test_concurrent_read_only),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
