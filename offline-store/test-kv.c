/* Tests for the encrypted key/value of offline-store/outbox.h (kv.c), on real SQLite files in a temp dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "offline-store/outbox.h"
#include "offline-store/schema.h"
#include "offline-store/store.h"
#include "offline-store/test-fixture.h"
#include "tests/harness.h"

/* A stand-in for record ids: must never be found in the files. */
#define MARKER "MRN-KV-77341"

/* The value of name as a string ("<rc>" on failure), in a static buffer. */
static const char *get_str(store *s, const char *name)
{
	static char buf[256];
	char *data = (char *)&buf; /* must be reset */
	size_t len = 99;
	int rc = store_kv_get(s, name, &data, &len);
	if (rc) {
		if (data != NULL || len != 0)
			return "<not reset>";
		snprintf(buf, sizeof(buf), "<%d>", rc);
		return buf;
	}
	snprintf(buf, sizeof(buf), "%s", len == strlen(data) ? data : "<length mismatch>");
	free(data);
	return buf;
}

static void test_kv_round_trip(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_INT(store_schema_version(), 4);
	CHECK_INT(store_migrations[2].version, 3);

	CHECK_STR(get_str(s, "export:P:1"), "<5>"); /* STORE_E_NOTFOUND */
	CHECK_INT(store_kv_get(s, "export:P:1", &(char *){ NULL }, NULL), STORE_E_NOTFOUND);
	CHECK(strstr(store_errmsg(s), "export:P:1") != NULL);
	CHECK_INT(store_kv_put(s, "export:P:1", "{\"next\":100}", 12), 0);
	CHECK_STR(get_str(s, "export:P:1"), "{\"next\":100}");
	/* Overwrite: the new value, still one row. */
	CHECK_INT(store_kv_put(s, "export:P:1", "{\"next\":200}", 12), 0);
	CHECK_STR(get_str(s, "export:P:1"), "{\"next\":200}");
	CHECK_INT(store_kv_put(s, "export:P:2", "other", 5), 0);
	CHECK_STR(get_str(s, "export:P:1"), "{\"next\":200}");
	CHECK_STR(get_str(s, "export:P:2"), "other");

	/* Binary values with NUL bytes; the empty value. */
	const char bin[] = { 'a', 0, 'b', 0, (char)0xff };
	CHECK_INT(store_kv_put(s, "bin", bin, sizeof(bin)), 0);
	char *data = NULL;
	size_t len = 0;
	CHECK_INT(store_kv_get(s, "bin", &data, &len), 0);
	CHECK(data && len == sizeof(bin) && memcmp(data, bin, len) == 0 && data[len] == 0);
	free(data);
	CHECK_INT(store_kv_put(s, "empty", NULL, 0), 0);
	data = NULL;
	CHECK_INT(store_kv_get(s, "empty", &data, &len), 0);
	CHECK(data && len == 0 && data[0] == 0);
	free(data);

	/* Delete: gone; deleting again or an unknown name is fine. */
	CHECK_INT(store_kv_delete(s, "export:P:1"), 0);
	CHECK_STR(get_str(s, "export:P:1"), "<5>");
	CHECK_INT(store_kv_delete(s, "export:P:1"), 0);
	CHECK_INT(store_kv_delete(s, "never"), 0);
	CHECK_STR(get_str(s, "export:P:2"), "other");

	/* Bad arguments. */
	CHECK_INT(store_kv_put(s, "", "x", 1), -EINVAL);
	CHECK_INT(store_kv_put(s, NULL, "x", 1), -EINVAL);
	CHECK_INT(store_kv_put(s, "n", NULL, 1), -EINVAL);
	CHECK_INT(store_kv_get(s, "n", NULL, NULL), -EINVAL);
	CHECK_INT(store_kv_delete(s, ""), -EINVAL);
	CHECK_INT(store_kv_put(NULL, "n", "x", 1), -EINVAL);
	char *long_name = malloc(5000);
	REQUIRE(long_name);
	memset(long_name, 'n', 4999);
	long_name[4999] = 0;
	CHECK_INT(store_kv_put(s, long_name, "x", 1), -EINVAL);
	long_name[4096] = 0;
	CHECK_INT(store_kv_put(s, long_name, "x", 1), 0);
	CHECK_STR(get_str(s, long_name), "x");
	free(long_name);
	store_close(s);
	fx_deinit(&f);
}

static void test_kv_transactions(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	/* Inside the caller's transaction: gone with a rollback, kept with a commit. */
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_kv_put(s, "a", "1", 1), 0);
	CHECK_STR(get_str(s, "a"), "1");
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM kv"), 0); /* not committed yet */
	CHECK_INT(store_rollback(s), 0);
	CHECK_STR(get_str(s, "a"), "<5>");
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_kv_put(s, "a", "2", 1), 0);
	CHECK_INT(store_kv_put(s, "b", "3", 1), 0);
	CHECK_INT(store_commit(s), 0);
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM kv"), 2);
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_kv_delete(s, "a"), 0);
	CHECK_INT(store_rollback(s), 0);
	CHECK_STR(get_str(s, "a"), "2");
	/* Without one: committed at once. */
	CHECK_INT(store_kv_delete(s, "b"), 0);
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM kv"), 1);
	store_close(s);
	fx_deinit(&f);
}

static void test_kv_persistence(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_INT(store_kv_put(s, "export:P:h", "checkpoint", 10), 0);
	store_close(s);

	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_STR(get_str(s, "export:P:h"), "checkpoint");
	/* A read-only handle reads, and refuses writes. */
	store *ro = fx_open(&f, STORE_RO);
	REQUIRE(ro);
	CHECK_STR(get_str(ro, "export:P:h"), "checkpoint");
	CHECK_INT(store_kv_put(ro, "x", "y", 1), STORE_E_DB);
	CHECK_INT(store_kv_delete(ro, "export:P:h"), STORE_E_DB);
	CHECK(strstr(store_errmsg(ro), "read-only") != NULL);
	store_close(ro);
	store_close(s);

	/* A v2 store (before the table, and before v4's) is upgraded at open. */
	REQUIRE(raw_exec(f.db, "DROP TABLE kv; DROP TABLE users; DROP TABLE chart_entries; DROP TABLE temp_patients;"
			       " DROP TABLE audit; DROP TABLE patient_index; PRAGMA user_version = 2") == SQLITE_OK);
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM sqlite_schema WHERE name = 'kv'"), 0);
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_INT(q_int(f.db, "PRAGMA user_version"), store_schema_version());
	CHECK_STR(get_str(s, "export:P:h"), "<5>");
	CHECK_INT(store_kv_put(s, "export:P:h", "again", 5), 0);
	CHECK_STR(get_str(s, "export:P:h"), "again");
	store_close(s);
	fx_deinit(&f);
}

static void test_kv_tamper(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_INT(store_kv_put(s, "export:A", "ids of A", 8), 0);
	CHECK_INT(store_kv_put(s, "export:B", "ids of B", 8), 0);
	store_close(s);

	/* A's value moved under B's name: it does not open there. */
	REQUIRE(raw_exec(f.db, "UPDATE kv SET value = (SELECT value FROM kv WHERE name = 'export:A')"
			       " WHERE name = 'export:B'") == SQLITE_OK);
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_STR(get_str(s, "export:A"), "ids of A");
	CHECK_STR(get_str(s, "export:B"), "<4>"); /* STORE_E_CORRUPT */
	CHECK(strstr(store_errmsg(s), "failed authentication") != NULL);
	CHECK(strstr(store_errmsg(s), "ids of") == NULL);
	/* A renamed row fails too. */
	store_close(s);
	REQUIRE(raw_exec(f.db, "UPDATE kv SET name = 'export:C' WHERE name = 'export:A'") == SQLITE_OK);
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_STR(get_str(s, "export:C"), "<4>");
	/* One flipped byte; a truncated blob. */
	CHECK_INT(store_kv_put(s, "export:D", "ids of D", 8), 0);
	store_close(s);
	REQUIRE(raw_exec(f.db, "UPDATE kv SET value = CAST(substr(value, 1, 20) AS BLOB) || x'00' ||"
			       " substr(value, 22) WHERE name = 'export:D'") == SQLITE_OK);
	REQUIRE(raw_exec(f.db, "UPDATE kv SET value = x'0102' WHERE name = 'export:C'") == SQLITE_OK);
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_STR(get_str(s, "export:D"), "<4>");
	CHECK_STR(get_str(s, "export:C"), "<4>");
	/* Overwriting a damaged value repairs it. */
	CHECK_INT(store_kv_put(s, "export:D", "fresh", 5), 0);
	CHECK_STR(get_str(s, "export:D"), "fresh");
	store_close(s);
	fx_deinit(&f);
}

static void test_kv_large(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	size_t n = (size_t)10 << 20;
	char *big = malloc(n);
	REQUIRE(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + (i * 7 + i / 4096) % 26);
	CHECK_INT(store_kv_put(s, "big", big, n), 0);
	char *data = NULL;
	size_t len = 0;
	CHECK_INT(store_kv_get(s, "big", &data, &len), 0);
	CHECK(data && len == n && memcmp(data, big, n) == 0);
	free(data);
	/* Replaced by a small one, then reopened. */
	big[0] = 'Z';
	CHECK_INT(store_kv_put(s, "big", big, n), 0);
	store_close(s);
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	data = NULL;
	CHECK_INT(store_kv_get(s, "big", &data, &len), 0);
	CHECK(data && len == n && data[0] == 'Z' && memcmp(data + 1, big + 1, n - 1) == 0);
	free(data);
	/* Above SQLite's length limit: refused before any work. */
	CHECK_INT(store_kv_put(s, "huge", big, (size_t)INT32_MAX), -EFBIG);
	free(big);
	store_close(s);
	fx_deinit(&f);
}

static void test_kv_no_clear_text(void)
{
	fx f;
	REQUIRE(fx_init(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	char value[64 * 40 + 1];
	size_t len = 0;
	for (int i = 0; i < 64; i++)
		len += (size_t)snprintf(value + len, sizeof(value) - len, "%s%s-%04d", i ? "," : "[", MARKER, i);
	value[len++] = ']';
	value[len] = 0;
	REQUIRE(store_begin(s) == 0);
	for (int i = 0; i < 50; i++) {
		char name[64];
		snprintf(name, sizeof(name), "export:study:%d", i);
		REQUIRE(store_kv_put(s, name, value, len) == 0);
	}
	REQUIRE(store_commit(s) == 0);
	CHECK_INT(store_kv_put(s, "export:study:0", value, len), 0);

	/* Everything sits in the WAL now; then checkpoint into the database file. */
	CHECK(file_has(f.wal, "export:study:7")); /* the scan sees the clear names */
	CHECK(!file_has(f.wal, MARKER));
	CHECK(!file_has(f.db, MARKER));
	fx_checkpoint(&f);
	CHECK(file_has(f.db, "export:study:7"));
	CHECK(!file_has(f.db, MARKER));
	CHECK(!file_has(f.wal, MARKER));
	/* It reads back, and no message carries it. */
	char *data = NULL;
	CHECK_INT(store_kv_get(s, "export:study:3", &data, NULL), 0);
	CHECK(data && strcmp(data, value) == 0);
	free(data);
	CHECK(strstr(store_errmsg(s), MARKER) == NULL);
	store_close(s);
	CHECK(!file_has(f.db, MARKER));
	fx_deinit(&f);
}

static const struct harness_test tests[] = {
	HARNESS_TEST(test_kv_round_trip), HARNESS_TEST(test_kv_transactions),
	HARNESS_TEST(test_kv_persistence), HARNESS_TEST(test_kv_tamper),
	HARNESS_TEST(test_kv_large), HARNESS_TEST(test_kv_no_clear_text),
};

int main(int argc, char **argv)
{
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
