/*
 * bench-store — the store's insert ceiling.
 *
 * Inserts N synthetic ~550-byte Observation bodies (default 100k) in
 * transactions of T rows (default 1000), the way the sync pipeline does
 * (one transaction per page, cursor included), and prints rows/s. Then the
 * same rows again (all duplicates: a re-crawl), random reads, status and a
 * listing. Not a test: it asserts nothing about time.
 *
 * Two figures for the curation side (outbox.h):
 * - what marking patients as waiting costs: every new version marks its
 *   patient inside store_put_resource() (already in the insert figure); the
 *   "mark waiting" line times store_waiting_mark() for each row's patient,
 *   all already waiting, which is what the mark adds to a put;
 * - curation writes: per REDCap row, store_instance() + store_outbox_put()
 *   + 8 store_provenance_put(), C rows (default 100k: 1000 MRN-like records
 *   of 100 repeating instances) in transactions of CT rows (default 500):
 *   all new, then all unchanged (a re-curation), then all changed.
 *
 *   bench-store [--rows N] [--txn T] [--ids uuid|seq] [--dir DIR] [--keep] [--insert-only]
 *               [--curate-rows C] [--curate-txn CT]
 *
 * --ids uuid (default) gives random UUIDs, as medplum and many servers do;
 * seq gives increasing ids (HAPI-style numbers), the easy case for B-trees.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "offline-store/outbox.h"
#include "offline-store/store.h"
#include "tests/harness.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

typedef struct row {
	char id[40];
	char patient[40];
	char last_updated[32];
	size_t body_off, body_len;
} row;

static void make_uuid(char out[40])
{
	uint64_t a = rng(), b = rng();
	snprintf(out, 40, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff,
		 (unsigned)a & 0xfff, (unsigned)(b >> 48) | 0x8000, (unsigned long long)(b & 0xffffffffffffULL));
}

static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
				char p[4096];
				snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
				unlink(p);
			}
		}
		closedir(d);
	}
	rmdir(dir);
}

static int count_cb(void *ud, const char *type, const char *id, const char *version_id, const char *last_updated,
		    const char *patient, const char *body, size_t body_len)
{
	(*(size_t *)ud)++;
	return 0;
}

/* Time store_waiting_mark() for every row's patient (all already waiting), txn rows a transaction. */
static int bench_mark(store *s, int64_t srv, const row *rows, size_t n_rows, size_t txn)
{
	int64_t waiting = 0;
	if (store_waiting_count(s, srv, &waiting) != 0)
		return 1;
	double t0 = now_s();
	for (size_t i = 0; i < n_rows; i += txn) {
		size_t end = i + txn < n_rows ? i + txn : n_rows;
		if (store_begin(s) != 0)
			return 1;
		for (size_t k = i; k < end; k++)
			if (store_waiting_mark(s, srv, rows[k].patient) != 0)
				return 1;
		if (store_commit(s) != 0)
			return 1;
	}
	double dt = now_s() - t0;
	printf("mark waiting (patient already waiting, as on most puts): %zu marks in %.3f s, %.0f marks/s,"
	       " %.2f us each; %lld patients waiting\n",
	       n_rows, dt, (double)n_rows / dt, dt * 1e6 / (double)n_rows, (long long)waiting);
	return 0;
}

static const char *const prov_fields[8] = { "vs_datetime", "vs_loinc", "vs_value", "vs_unit",
					    "vs_code",     "vs_text",  "vs_status", "vs_method" };

/* One curation pass over n rows: instance, outbox row and 8 provenance entries each. */
static int curate_pass(store *s, size_t n, size_t txn, int variant, size_t *changed_out)
{
	char record[32], src[48], payload[512];
	size_t changed = 0;
	for (size_t i = 0; i < n; i += txn) {
		size_t end = i + txn < n ? i + txn : n;
		if (store_begin(s) != 0)
			return 1;
		for (size_t k = i; k < end; k++) {
			snprintf(record, sizeof(record), "MRN%07zu", 1000000 + k / 100);
			snprintf(src, sizeof(src), "obs-%08zx-%04zx", k * 2654435761u % 0xffffffffu, k % 0xffff);
			int64_t instance = 0;
			int ch = 0;
			if (store_instance(s, "bench", record, "", "vitals", "Observation", src, &instance) != 0)
				return 1;
			size_t value = 50 + (k + (size_t)variant) % 100;
			int len = snprintf(payload, sizeof(payload),
					   "{\"record_id\":\"%s\",\"redcap_repeat_instrument\":\"vitals\","
					   "\"redcap_repeat_instance\":%lld,"
					   "\"vs_datetime\":\"2024-03-01 10:%02zu:%02zu\","
					   "\"vs_loinc\":\"8867-4\",\"vs_value\":\"%zu\",\"vs_unit\":\"/min\","
					   "\"vs_code\":\"HR\",\"vs_text\":\"Heart rate\",\"vs_status\":\"final\","
					   "\"vs_method\":\"auto\",\"vitals_complete\":\"2\"}",
					   record, (long long)instance, k / 60 % 60, k % 60, value);
			if (store_outbox_put(s, "bench", record, "", "vitals", instance, payload, (size_t)len, &ch))
				return 1;
			changed += (size_t)ch;
			for (int f = 0; f < 8; f++)
				if (store_provenance_put(s, "bench", record, "", "vitals", instance, prov_fields[f],
							 "vitals", "Observation", src, variant ? "2" : "1") != 0)
					return 1;
		}
		if (store_commit(s) != 0)
			return 1;
	}
	*changed_out = changed;
	return 0;
}

static int bench_curate(store *s, size_t n, size_t txn)
{
	static const char *const what[] = { "new", "unchanged (re-curation)", "changed (new payloads and versions)" };
	static const int variant[] = { 0, 0, 1 };
	for (int pass = 0; pass < 3; pass++) {
		size_t changed = 0;
		double t0 = now_s();
		if (curate_pass(s, n, txn, variant[pass], &changed) != 0)
			return 1;
		double dt = now_s() - t0;
		printf("curate %s: %zu rows (%zu outbox rows changed) of instance + outbox put + 8 provenance puts in"
		       " %zu-row transactions: %.3f s, %.0f rows/s\n",
		       what[pass], n, changed, txn, dt, (double)n / dt);
	}
	double t0 = now_s();
	json_t *st = store_outbox_status_json(s, 50);
	double dt = now_s() - t0;
	printf("outbox status: %.1f ms (%lld pending)\n", dt * 1000,
	       (long long)json_integer_value(json_object_get(json_object_get(json_object_get(st, "projects"), "bench"),
							     "pending")));
	json_decref(st);
	store_outbox_row *rows = NULL;
	size_t got = 0, total = 0;
	t0 = now_s();
	for (;;) {
		if (store_outbox_due(s, "bench", 0, 100, &rows, &got) != 0)
			return 1;
		if (got == 0)
			break;
		total += got;
		if (store_begin(s) != 0)
			return 1;
		for (size_t i = 0; i < got; i++)
			if (store_outbox_done(s, rows[i].id, rows[i].gen) != 0)
				return 1;
		if (store_commit(s) != 0)
			return 1;
		store_outbox_rows_free(rows, got);
	}
	dt = now_s() - t0;
	printf("push side: due (100 a batch, decrypted) + done for %zu rows: %.3f s, %.0f rows/s\n", total, dt,
	       (double)total / dt);
	return 0;
}

static long long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

int main(int argc, char **argv)
{
	size_t n_rows = 100000, txn = 1000, curate_rows = 100000, curate_txn = 500;
	bool seq_ids = false, keep = false, insert_only = false;
	const char *dir_arg = NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--rows") && i + 1 < argc)
			n_rows = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--txn") && i + 1 < argc)
			txn = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--ids") && i + 1 < argc)
			seq_ids = !strcmp(argv[++i], "seq");
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir_arg = argv[++i];
		else if (!strcmp(argv[i], "--keep"))
			keep = true;
		else if (!strcmp(argv[i], "--insert-only"))
			insert_only = true;
		else if (!strcmp(argv[i], "--curate-rows") && i + 1 < argc)
			curate_rows = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--curate-txn") && i + 1 < argc)
			curate_txn = strtoul(argv[++i], NULL, 10);
		else {
			fprintf(stderr,
				"usage: %s [--rows N] [--txn T] [--ids uuid|seq] [--dir DIR] [--keep] [--insert-only]"
				" [--curate-rows C] [--curate-txn CT]\n",
				argv[0]);
			return 2;
		}
	}
	if (n_rows == 0 || txn == 0 || curate_txn == 0)
		return 2;

	char *dir = dir_arg ? strdup(dir_arg) : harness_tmpdir();
	if (!dir) {
		fprintf(stderr, "no temp dir\n");
		return 1;
	}
	char db[4096], key[4096];
	snprintf(db, sizeof(db), "%s/bench.db", dir);
	snprintf(key, sizeof(key), "%s/bench.key", dir);

	/* Synthetic Observations: ~550 bytes each, 2000 patients. */
	row *rows = calloc(n_rows, sizeof(*rows));
	size_t cap = n_rows * 640, used = 0;
	char *bodies = malloc(cap);
	if (!rows || !bodies) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < n_rows; i++) {
		row *r = &rows[i];
		if (seq_ids)
			snprintf(r->id, sizeof(r->id), "%zu", 1000000 + i);
		else
			make_uuid(r->id);
		uint64_t p = rng() % 2000;
		snprintf(r->patient, sizeof(r->patient), "pat-%016llx", (unsigned long long)(p * 0x9E3779B97F4A7C15ULL));
		unsigned sec = (unsigned)(i / 50);
		snprintf(r->last_updated, sizeof(r->last_updated), "2024-03-%02uT%02u:%02u:%02u.%03uZ", 1 + sec / 86400 % 28,
			 sec / 3600 % 24, sec / 60 % 60, sec % 60, (unsigned)(i % 1000));
		int n = snprintf(bodies + used, cap - used,
				 "{\"resourceType\":\"Observation\",\"id\":\"%s\",\"meta\":{\"versionId\":\"1\","
				 "\"lastUpdated\":\"%s\"},\"status\":\"final\",\"category\":[{\"coding\":[{\"system\":"
				 "\"http://terminology.hl7.org/CodeSystem/observation-category\",\"code\":\"vital-signs\""
				 "}]}],\"code\":{\"coding\":[{\"system\":\"http://loinc.org\","
				 "\"code\":\"8867-4\"}],\"text\":\"Heart rate\"},\"subject\":"
				 "{\"reference\":\"Patient/%s\"},\"effectiveDateTime\":\"%s\",\"valueQuantity\":{"
				 "\"value\":%u,\"unit\":\"beats/minute\",\"system\":\"http://unitsofmeasure.org\","
				 "\"code\":\"/min\"}}",
				 r->id, r->last_updated, r->patient, r->last_updated, 50 + (unsigned)(rng() % 100));
		r->body_off = used;
		r->body_len = (size_t)n;
		used += (size_t)n;
	}

	store *s = NULL;
	char err[1024];
	int rc = store_open(&s, db, key, STORE_RW, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "store_open: %s\n", err);
		return 1;
	}
	int64_t srv = 0;
	if (store_server_id(s, "http://bench.example.org/fhir", &srv) != 0) {
		fprintf(stderr, "%s\n", store_errmsg(s));
		return 1;
	}

	int result = 0;
	for (int pass = 0; pass < (insert_only ? 1 : 2) && result == 0; pass++) {
		size_t news = 0;
		double t0 = now_s();
		for (size_t i = 0; i < n_rows && result == 0; i += txn) {
			size_t end = i + txn < n_rows ? i + txn : n_rows;
			if (store_begin(s) != 0) {
				result = 1;
				break;
			}
			for (size_t k = i; k < end; k++) {
				const row *r = &rows[k];
				store_resource res = { .type = "Observation",
						       .id = r->id,
						       .version_id = "1",
						       .last_updated = r->last_updated,
						       .patient = r->patient,
						       .body = bodies + r->body_off,
						       .body_len = r->body_len };
				int is_new = 0;
				if (store_put_resource(s, srv, &res, &is_new) != 0) {
					result = 1;
					break;
				}
				news += (size_t)is_new;
			}
			store_cursor c = { .crawl_started = "2024-03-01T00:00:00Z", .pages = (int64_t)(i / txn) };
			char next[128];
			snprintf(next, sizeof(next), "http://bench.example.org/fhir/Observation?_offset=%zu", end);
			c.next_url = next;
			if (result || store_cursor_put(s, srv, "Observation", &c) != 0 || store_commit(s) != 0) {
				result = 1;
				store_rollback(s);
			}
		}
		double dt = now_s() - t0;
		if (result) {
			fprintf(stderr, "bench failed: %s\n", store_errmsg(s));
			break;
		}
		printf("%s: %zu rows (%zu new) in %zu-row transactions, %s ids, avg body %zu B: %.3f s, %.0f rows/s\n",
		       pass == 0 ? "insert" : "re-put (all duplicates)", n_rows, news, txn, seq_ids ? "sequential" : "uuid",
		       used / n_rows, dt, (double)n_rows / dt);
	}

	if (result == 0 && !insert_only && bench_mark(s, srv, rows, n_rows, txn) != 0) {
		fprintf(stderr, "mark failed: %s\n", store_errmsg(s));
		result = 1;
	}
	if (result == 0 && !insert_only && curate_rows && bench_curate(s, curate_rows, curate_txn) != 0) {
		fprintf(stderr, "curate failed: %s\n", store_errmsg(s));
		result = 1;
	}
	if (result == 0 && !insert_only) {
		/* Random point reads (decrypt included). */
		size_t n_get = n_rows < 20000 ? n_rows : 20000;
		double t0 = now_s();
		for (size_t i = 0; i < n_get; i++) {
			const row *r = &rows[rng() % n_rows];
			char *body = NULL;
			size_t len = 0;
			if (store_get_resource(s, srv, "Observation", r->id, &body, &len, NULL, 0) != 0 ||
			    len != r->body_len) {
				fprintf(stderr, "get failed: %s\n", store_errmsg(s));
				result = 1;
				free(body);
				break;
			}
			free(body);
		}
		double dt = now_s() - t0;
		printf("get: %zu random reads: %.0f reads/s\n", n_get, (double)n_get / dt);

		t0 = now_s();
		json_t *st = store_status_json(s);
		dt = now_s() - t0;
		printf("status: %.1f ms (%lld resources)\n", dt * 1000,
		       (long long)json_integer_value(json_object_get(json_object_get(st, "resources"), "Observation")));
		json_decref(st);

		size_t listed = 0;
		t0 = now_s();
		store_foreach_resource(s, srv, "Observation", 1, count_cb, &listed);
		dt = now_s() - t0;
		printf("foreach with bodies, ordered by id: %zu rows in %.3f s (%.0f rows/s)\n", listed, dt,
		       (double)listed / dt);
	}
	long long wal_before_close = 0;
	{
		char wal[4200];
		snprintf(wal, sizeof(wal), "%s-wal", db);
		wal_before_close = file_size(wal);
	}
	double t0 = now_s();
	store_close(s);
	double dt = now_s() - t0;
	long long size = file_size(db);
	printf("close (final checkpoint of a %.1f MiB WAL): %.3f s; database %.1f MiB, %.0f bytes/row\n",
	       (double)wal_before_close / 1048576.0, dt, (double)size / 1048576.0, (double)size / (double)n_rows);

	if (keep)
		printf("kept %s\n", dir);
	else
		rm_tree(dir);
	free(dir);
	free(rows);
	free(bodies);
	return result;
}
