/* Tests for offline-store/outbox.h: the curation side of the store, on real SQLite files in a temp dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "offline-store/outbox.h"
#include "offline-store/schema.h"
#include "offline-store/store.h"
#include "offline-store/test-fixture.h"
#include "tests/harness.h"

/* ---- fixture ------------------------------------------------------------ */

static int put_res(store *s, int64_t srv, const char *type, const char *id, const char *vid, const char *patient,
		   const char *body)
{
	store_resource r = { .type = type, .id = id, .version_id = vid, .last_updated = "", .patient = patient,
			     .body = body, .body_len = strlen(body) };
	int is_new = 0;
	int rc = store_put_resource(s, srv, &r, &is_new);
	if (rc)
		fprintf(stderr, "store_put_resource %s/%s: %d %s\n", type, id, rc, store_errmsg(s));
	return rc;
}

/* The waiting patients of server joined with ',' (at most limit; 0 all). */
typedef struct names {
	char buf[1024];
	int stop_after; /* cb returns 7 after this many (0: never) */
	int n;
} names;

static int names_cb(void *ud, const char *patient)
{
	names *w = ud;
	size_t len = strlen(w->buf);
	snprintf(w->buf + len, sizeof(w->buf) - len, "%s%s", len ? "," : "", patient);
	w->n++;
	return w->stop_after && w->n >= w->stop_after ? 7 : 0;
}

static const char *waiting(store *s, int64_t srv, size_t limit, names *w)
{
	memset(w, 0, sizeof(*w));
	int rc = store_waiting_foreach(s, srv, limit, names_cb, w);
	if (rc)
		snprintf(w->buf, sizeof(w->buf), "error %d", rc);
	return w->buf;
}

static int oput(store *s, const char *project, const char *record, const char *event, const char *instrument,
		int64_t instance, const char *payload, int *changed)
{
	int rc = store_outbox_put(s, project, record, event, instrument, instance, payload, strlen(payload), changed);
	if (rc)
		fprintf(stderr, "store_outbox_put: %d %s\n", rc, store_errmsg(s));
	return rc;
}

static int64_t inst(store *s, const char *project, const char *record, const char *event, const char *instrument,
		    const char *src_id)
{
	int64_t n = -1;
	int rc = store_instance(s, project, record, event, instrument, "Observation", src_id, &n);
	if (rc) {
		fprintf(stderr, "store_instance: %d %s\n", rc, store_errmsg(s));
		return -1;
	}
	return n;
}

/*
 * Outbox rows (read with result rc) as "record/instrument#instance:payload"
 * joined with ';', a held row's reasons after another ':' (static buffer).
 */
static char *rows_str(int rc, const store_outbox_row *rows, size_t n)
{
	static char buf[2048];
	buf[0] = '\0';
	if (rc) {
		snprintf(buf, sizeof(buf), "error %d", rc);
		return buf;
	}
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(buf);
		snprintf(buf + len, sizeof(buf) - len, "%s%s/%s#%lld:%s%s%s", i ? ";" : "", rows[i].record,
			 rows[i].instrument, (long long)rows[i].instance, rows[i].payload, rows[i].reasons ? ":" : "",
			 rows[i].reasons ? rows[i].reasons : "");
	}
	return buf;
}

/* The due rows of project as rows_str() gives them; kept in *keep, *nkeep if keep. */
static char *due_str(store *s, const char *project, int64_t now, size_t limit, store_outbox_row **keep, size_t *nkeep)
{
	store_outbox_row *rows = NULL;
	size_t n = 0;
	int rc = store_outbox_due(s, project, now, limit, &rows, &n);
	char *buf = rows_str(rc, rows, n);
	if (keep) {
		*keep = rows;
		*nkeep = n;
	} else {
		store_outbox_rows_free(rows, n);
	}
	return buf;
}

static json_t *project_status(store *s, const char *project, size_t held_limit)
{
	json_t *st = store_outbox_status_json(s, held_limit);
	json_t *p = json_incref(json_object_get(json_object_get(st, "projects"), project));
	json_decref(st);
	return p;
}

static int64_t pstat(store *s, const char *project, const char *what)
{
	json_t *p = project_status(s, project, 0);
	int64_t v = p ? json_integer_value(json_object_get(p, what)) : -1;
	json_decref(p);
	return v;
}

/* The length of a list (held_rows, refused) in a project's status. */
static size_t pstat_len(store *s, const char *project, size_t held_limit, const char *list)
{
	json_t *p = project_status(s, project, held_limit);
	size_t len = json_array_size(json_object_get(p, list));
	json_decref(p);
	return len;
}

/* Records R1, R2, R3 of project P put pending with payloads {"v":1}, {"v":2}, {"v":3}; their outbox ids
 * (false when that fails). */
static bool put_three(store *s, int64_t *id1, int64_t *id2, int64_t *id3)
{
	int changed = 0;
	if (oput(s, "P", "R1", "", "", 0, "{\"v\":1}", &changed) != 0 ||
	    oput(s, "P", "R2", "", "", 0, "{\"v\":2}", &changed) != 0 ||
	    oput(s, "P", "R3", "", "", 0, "{\"v\":3}", &changed) != 0)
		return false;
	store_outbox_row *rows = NULL;
	size_t n = 0;
	due_str(s, "P", 0, 10, &rows, &n);
	bool ok = n == 3;
	if (ok) {
		*id1 = rows[0].id;
		*id2 = rows[1].id;
		*id3 = rows[2].id;
	}
	store_outbox_rows_free(rows, n);
	return ok;
}

static bool is_instant(json_t *v)
{
	regex_t re;
	if (regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$", REG_EXTENDED) != 0)
		return false;
	bool ok = json_is_string(v) && regexec(&re, json_string_value(v), 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

/* ---- patients waiting --------------------------------------------------- */

static void test_waiting_order_and_clear(void)
{
	FX_STORE(f, srv, s);
	int64_t srv2 = 0;
	REQUIRE(store_server_id(s, "https://other.example.org/fhir", &srv2) == 0);
	names w;
	int64_t n = -1;
	CHECK_INT(store_waiting_count(s, srv, &n), 0);
	CHECK_INT(n, 0);
	CHECK_STR(waiting(s, srv, 0, &w), "");

	REQUIRE(store_begin(s) == 0);
	REQUIRE(put_res(s, srv, "Patient", "p3", "1", "p3", "{}") == 0);
	REQUIRE(put_res(s, srv, "Observation", "o1", "1", "p1", "{}") == 0);
	REQUIRE(put_res(s, srv, "Observation", "o2", "1", "p2", "{}") == 0);
	REQUIRE(put_res(s, srv, "Observation", "o3", "1", "p1", "{}") == 0); /* p1 keeps its place */
	REQUIRE(put_res(s, srv, "Observation", "o4", "1", "", "{}") == 0);   /* no patient */
	REQUIRE(put_res(s, srv2, "Observation", "o1", "1", "p1", "{}") == 0); /* other server */
	REQUIRE(store_commit(s) == 0);

	CHECK_STR(waiting(s, srv, 0, &w), "p3,p1,p2");
	CHECK_STR(waiting(s, srv, 2, &w), "p3,p1");
	CHECK_STR(waiting(s, srv2, 0, &w), "p1");
	CHECK_INT(store_waiting_count(s, srv, &n), 0);
	CHECK_INT(n, 3);
	CHECK_INT(store_waiting_count(s, srv2, &n), 0);
	CHECK_INT(n, 1);
	/* cb's non-zero stops the walk and is returned */
	memset(&w, 0, sizeof(w));
	w.stop_after = 2;
	CHECK_INT(store_waiting_foreach(s, srv, 0, names_cb, &w), 7);
	CHECK_STR(w.buf, "p3,p1");

	/* Clearing (outside a transaction: its own) */
	CHECK_INT(store_waiting_clear(s, srv, "p1"), 0);
	CHECK_INT(store_waiting_clear(s, srv, "p1"), 0);      /* not waiting: no-op */
	CHECK_INT(store_waiting_clear(s, srv, "nobody"), 0);  /* unknown: no-op */
	CHECK_STR(waiting(s, srv, 0, &w), "p3,p2");
	CHECK_STR(waiting(s, srv2, 0, &w), "p1");

	/* The same version again is not new: p1 stays cleared. A new version marks it, at the end. */
	REQUIRE(put_res(s, srv, "Observation", "o1", "1", "p1", "{}") == 0);
	CHECK_STR(waiting(s, srv, 0, &w), "p3,p2");
	REQUIRE(put_res(s, srv, "Observation", "o1", "2", "p1", "{\"v\":2}") == 0);
	CHECK_STR(waiting(s, srv, 0, &w), "p3,p2,p1");

	/* A resource that moves to another patient marks both. */
	CHECK_INT(store_waiting_clear(s, srv, "p1"), 0);
	CHECK_INT(store_waiting_clear(s, srv, "p2"), 0);
	CHECK_INT(store_waiting_clear(s, srv, "p3"), 0);
	REQUIRE(put_res(s, srv, "Observation", "o2", "2", "p9", "{}") == 0);
	CHECK_STR(waiting(s, srv, 0, &w), "p9,p2");

	/* store_waiting_mark: explicit, idempotent, keeps the place. */
	CHECK_INT(store_waiting_mark(s, srv, "p3"), 0);
	CHECK_INT(store_waiting_mark(s, srv, "p9"), 0);
	CHECK_STR(waiting(s, srv, 0, &w), "p9,p2,p3");

	/* store_waiting_all: every patient with stored resources, of that server only. */
	CHECK_INT(store_waiting_clear(s, srv, "p9"), 0);
	CHECK_INT(store_waiting_clear(s, srv, "p2"), 0);
	CHECK_INT(store_waiting_clear(s, srv, "p3"), 0);
	CHECK_INT(store_waiting_clear(s, srv2, "p1"), 0);
	CHECK_INT(store_waiting_mark(s, srv, "no-resources"), 0);
	CHECK_INT(store_waiting_clear(s, srv, "no-resources"), 0);
	CHECK_INT(store_waiting_all(s, srv), 0);
	CHECK_INT(store_waiting_count(s, srv, &n), 0);
	CHECK_INT(n, 3); /* p1 (o1, o3), p3, p9 (o2); p2 has none left; no-resources has none */
	CHECK_STR(waiting(s, srv, 0, &w), "p3,p1,p9"); /* in the order the patients were first seen */
	CHECK_INT(store_waiting_count(s, srv2, &n), 0);
	CHECK_INT(n, 0);

	CHECK_INT(store_waiting_mark(s, srv, ""), -EINVAL);
	CHECK_INT(store_waiting_foreach(s, srv, 0, NULL, NULL), -EINVAL);
	store_close(s);
	fx_deinit(&f);
}

/* Curation clears inside its transaction: a rollback, or a kill -9 before commit, leaves the patient waiting. */
static void test_waiting_crash_safety(void)
{
	FX_STORE(f, srv, s);
	REQUIRE(put_res(s, srv, "Patient", "p1", "1", "p1", "{}") == 0);
	REQUIRE(put_res(s, srv, "Patient", "p2", "1", "p2", "{}") == 0);
	names w;

	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_outbox_put(s, "P", "R1", "", "", 0, "{\"a\":1}", 7, NULL), 0);
	CHECK_INT(store_waiting_clear(s, srv, "p1"), 0);
	CHECK_STR(waiting(s, srv, 0, &w), "p2"); /* the transaction sees its own clear */
	REQUIRE(store_rollback(s) == 0);
	CHECK_STR(waiting(s, srv, 0, &w), "p1,p2");
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "");
	/* The project and record made in the rolled-back transaction are gone; using them again works. */
	int changed = 0;
	CHECK_INT(oput(s, "P", "R1", "", "", 0, "{\"a\":1}", &changed), 0);
	CHECK_INT(changed, 1);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R1/#0:{\"a\":1}");
	store_close(s);

	/* kill -9 in the middle of a curation transaction */
	int ready[2];
	REQUIRE(pipe(ready) == 0);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		store *cs = fx_open(&f, STORE_RW);
		if (!cs || store_begin(cs) != 0 || store_waiting_clear(cs, srv, "p2") != 0 ||
		    store_outbox_put(cs, "P", "R2", "", "", 0, "{\"b\":2}", 7, NULL) != 0)
			_exit(3);
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
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_STR(waiting(s, srv, 0, &w), "p1,p2");
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R1/#0:{\"a\":1}");
	store_close(s);
	fx_deinit(&f);
}

typedef struct seen {
	char buf[1024];
} seen;

static int seen_cb(void *ud, const char *type, const char *id, const char *version_id, const char *last_updated,
		   const char *patient, const char *body, size_t body_len)
{
	seen *x = ud;
	size_t len = strlen(x->buf);
	snprintf(x->buf + len, sizeof(x->buf) - len, "%s%s/%s@%s[%s]=%.*s", len ? " " : "", type, id, version_id,
		 patient, (int)body_len, body);
	return strcmp(id, "stop") == 0 ? 9 : 0;
}

static void test_foreach_patient_resource(void)
{
	FX_STORE(f, srv, s);
	int64_t srv2 = 0;
	REQUIRE(store_server_id(s, "https://other.example.org/fhir", &srv2) == 0);
	REQUIRE(store_begin(s) == 0);
	REQUIRE(put_res(s, srv, "Observation", "o2", "1", "p1", "{\"o\":2}") == 0);
	REQUIRE(put_res(s, srv, "Patient", "p1", "3", "p1", "{\"p\":1}") == 0);
	REQUIRE(put_res(s, srv, "Condition", "c1", "1", "p1", "{\"c\":1}") == 0);
	REQUIRE(put_res(s, srv, "Observation", "o1", "1", "p1", "{\"o\":1}") == 0);
	REQUIRE(put_res(s, srv, "Observation", "o3", "1", "p2", "{\"o\":3}") == 0);
	REQUIRE(put_res(s, srv2, "Observation", "o9", "1", "p1", "{\"o\":9}") == 0);
	REQUIRE(store_commit(s) == 0);
	seen x = { { 0 } };
	CHECK_INT(store_foreach_patient_resource(s, srv, "p1", seen_cb, &x), 0);
	CHECK_STR(x.buf, "Condition/c1@1[p1]={\"c\":1} Observation/o1@1[p1]={\"o\":1} Observation/o2@1[p1]={\"o\":2} "
			 "Patient/p1@3[p1]={\"p\":1}");
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_foreach_patient_resource(s, srv2, "p1", seen_cb, &x), 0);
	CHECK_STR(x.buf, "Observation/o9@1[p1]={\"o\":9}");
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_foreach_patient_resource(s, srv, "unknown", seen_cb, &x), 0);
	CHECK_STR(x.buf, "");
	REQUIRE(put_res(s, srv, "Observation", "stop", "1", "p2", "{}") == 0);
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_foreach_patient_resource(s, srv, "p2", seen_cb, &x), 9);
	CHECK_STR(x.buf, "Observation/o3@1[p2]={\"o\":3} Observation/stop@1[p2]={}");
	store_close(s);
	fx_deinit(&f);
}

/* ---- project settings, MRNs, refusals ----------------------------------- */

static void test_project_kv(void)
{
	FX_STORE(f, srv, s);
	char *v = (char *)&f;
	CHECK_INT(store_project_get(s, "P", "mapping_digest", &v), STORE_E_NOTFOUND);
	CHECK(v == NULL);
	CHECK_INT(store_project_set(s, "P", "mapping_digest", "abc"), 0);
	CHECK_INT(store_project_get(s, "P", "mapping_digest", &v), 0);
	CHECK_STR(v, "abc");
	free(v);
	CHECK_INT(store_project_get(s, "P", "other", &v), STORE_E_NOTFOUND);
	CHECK_INT(store_project_get(s, "Q", "mapping_digest", &v), STORE_E_NOTFOUND);
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_project_set(s, "P", "mapping_digest", "def"), 0);
	CHECK_INT(store_project_set(s, "Q", "mapping_digest", "q"), 0);
	REQUIRE(store_commit(s) == 0);
	CHECK_INT(store_project_get(s, "P", "mapping_digest", &v), 0);
	CHECK_STR(v, "def");
	free(v);
	/* "" (or NULL) removes */
	CHECK_INT(store_project_set(s, "P", "mapping_digest", ""), 0);
	CHECK_INT(store_project_get(s, "P", "mapping_digest", &v), STORE_E_NOTFOUND);
	CHECK_INT(store_project_set(s, "Q", "mapping_digest", NULL), 0);
	CHECK_INT(store_project_get(s, "Q", "mapping_digest", &v), STORE_E_NOTFOUND);
	CHECK_INT(store_project_set(s, "never", "k", ""), 0);
	CHECK_INT(store_project_set(s, "P", "halt", "banned"), 0);
	CHECK_INT(store_project_set(s, "", "k", "v"), -EINVAL);
	store_close(s);

	s = fx_open(&f, STORE_RO);
	REQUIRE(s);
	CHECK_INT(store_project_get(s, "P", "halt", &v), 0);
	CHECK_STR(v, "banned");
	free(v);
	CHECK_INT(store_project_set(s, "P", "halt", "x"), STORE_E_DB);
	store_close(s);
	fx_deinit(&f);
}

/*
 * The keyed hashes under a known key, against values computed apart from
 * this code (Python's hmac): sub-key = HMAC-SHA-256(key, "fhir-redcap-bridge
 * store name-hash v1"), then HMAC(sub-key, domain byte || input), strings
 * length-prefixed by 8 bytes big-endian. A store written before keeps
 * working only while these stay the same.
 */
static void test_keyed_hashes_known_answer(void)
{
	fx f;
	int64_t srv = 0;
	REQUIRE(fx_init(&f));
	REQUIRE(fx_known_key(&f));
	store *s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	REQUIRE(store_server_id(s, "https://ehr.example.org/fhir", &srv) == 0);
	char d[65];
	/* 'c' || len("label") || "label" || "data" */
	CHECK_INT(store_keyed_digest(s, "label", "data", 4, d), 0);
	CHECK_STR(d, "34ddea199e670f6528d5cf3b7980c950fd5efbf33bdcddad1ccbe5720ce1e60a");
	/* 'm' || "MRN1" */
	CHECK_INT(store_mrn_set(s, srv, "p1", "MRN1"), 0);
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM mrns WHERE mrn_hash ="
			      " x'1A44DD3CF66AAA55FF7C59EF77692EAE1CA7EBFD848E11A94C8263FEE4C509D5'"),
		  1);
	store_close(s);
	fx_deinit(&f);
}

static void test_mrn_index(void)
{
	FX_STORE(f, srv, s);
	int64_t srv2 = 0, n = -1;
	REQUIRE(store_server_id(s, "https://other.example.org/fhir", &srv2) == 0);
	CHECK_INT(store_mrn_count(s, srv, "MRN-1", &n), 0);
	CHECK_INT(n, 0);
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_mrn_set(s, srv, "p2", "MRN-1"), 0);
	CHECK_INT(store_mrn_set(s, srv, "p1", "MRN-1"), 0);
	CHECK_INT(store_mrn_set(s, srv, "p3", "MRN-3"), 0);
	CHECK_INT(store_mrn_set(s, srv2, "x1", "MRN-1"), 0);
	REQUIRE(store_commit(s) == 0);
	CHECK_INT(store_mrn_count(s, srv, "MRN-1", &n), 0);
	CHECK_INT(n, 2);
	CHECK_INT(store_mrn_count(s, srv2, "MRN-1", &n), 0);
	CHECK_INT(n, 1);
	CHECK_INT(store_mrn_count(s, srv, "mrn-1", &n), 0); /* exact match only */
	CHECK_INT(n, 0);
	json_t *p = store_mrn_patients(s, srv, "MRN-1");
	json_t *want = json_pack("[s, s]", "p1", "p2");
	CHECK(p && json_equal(p, want));
	json_decref(p);
	json_decref(want);
	p = store_mrn_patients(s, srv, "unknown");
	CHECK(p && json_array_size(p) == 0);
	json_decref(p);
	/* Replacing and removing */
	CHECK_INT(store_mrn_set(s, srv, "p2", "MRN-3"), 0);
	CHECK_INT(store_mrn_count(s, srv, "MRN-1", &n), 0);
	CHECK_INT(n, 1);
	CHECK_INT(store_mrn_count(s, srv, "MRN-3", &n), 0);
	CHECK_INT(n, 2);
	CHECK_INT(store_mrn_set(s, srv, "p1", NULL), 0);
	CHECK_INT(store_mrn_set(s, srv, "p3", ""), 0);
	CHECK_INT(store_mrn_set(s, srv, "never-seen", NULL), 0);
	CHECK_INT(store_mrn_count(s, srv, "MRN-1", &n), 0);
	CHECK_INT(n, 0);
	CHECK_INT(store_mrn_count(s, srv, "MRN-3", &n), 0);
	CHECK_INT(n, 1);
	CHECK_INT(store_mrn_count(s, srv, "", &n), -EINVAL);
	/* MRN-only patients are not waiting (they have no resources) */
	CHECK_INT(store_waiting_count(s, srv, &n), 0);
	CHECK_INT(n, 0);
	store_close(s);
	fx_deinit(&f);
}

static void test_refusals(void)
{
	FX_STORE(f, srv, s);
	CHECK_INT(store_refusal_set(s, "P", "p2", "ambiguous MRN"), 0);
	CHECK_INT(store_refusal_set(s, "P", "p1", "no MRN"), 0);
	CHECK_INT(store_refusal_set(s, "Q", "p1", "no MRN"), 0);
	CHECK_INT(store_refusal_set(s, "P", "p1", "no record id"), 0); /* replaces */
	json_t *p = project_status(s, "P", 0);
	json_t *want = json_pack("[{s:s, s:s}, {s:s, s:s}]", "patient", "p1", "reason", "no record id", "patient", "p2",
				 "reason", "ambiguous MRN");
	CHECK(p && json_equal(json_object_get(p, "refused"), want));
	json_decref(p);
	json_decref(want);
	int existed = -1;
	CHECK_INT(store_refusal_clear(s, "P", "p1", &existed), 0);
	CHECK_INT(existed, 1);
	CHECK_INT(store_refusal_clear(s, "P", "p1", &existed), 0);
	CHECK_INT(existed, 0);
	CHECK_INT(store_refusal_clear(s, "unknown", "p1", NULL), 0);
	CHECK_INT(pstat_len(s, "P", 0, "refused"), 1);
	CHECK_INT(pstat_len(s, "Q", 0, "refused"), 1);
	store_close(s);
	fx_deinit(&f);
}

/* ---- instances ---------------------------------------------------------- */

static void test_instances(void)
{
	FX_STORE(f, srv, s);
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(inst(s, "P", "R1", "", "vitals", "o1"), 1);
	CHECK_INT(inst(s, "P", "R1", "", "vitals", "o2"), 2);
	CHECK_INT(inst(s, "P", "R1", "", "vitals", "o3"), 3);
	CHECK_INT(inst(s, "P", "R1", "", "vitals", "o2"), 2); /* the same source keeps its number */
	CHECK_INT(inst(s, "P", "R1", "", "labs", "o2"), 1);   /* per instrument */
	CHECK_INT(inst(s, "P", "R2", "", "vitals", "o2"), 1); /* per record */
	CHECK_INT(inst(s, "Q", "R1", "", "vitals", "o2"), 1); /* per project */
	CHECK_INT(inst(s, "P", "R1", "visit_2", "vitals", "o3"), 1); /* per event */
	REQUIRE(store_commit(s) == 0);
	/* The same id of another type is another source. */
	int64_t n = 0;
	CHECK_INT(store_instance(s, "P", "R1", "", "vitals", "Condition", "o1", &n), 0);
	CHECK_INT(n, 4);
	CHECK_INT(store_instance(s, "P", "R1", NULL, "vitals", "Observation", "o1", &n), 0); /* NULL event is "" */
	CHECK_INT(n, 1);

	/* A rolled-back assignment is gone: its number is given again. */
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(inst(s, "P", "R1", "", "vitals", "o5"), 5);
	CHECK_INT(inst(s, "P", "R1", "", "vitals", "o5"), 5);
	CHECK_INT(inst(s, "P", "R3", "", "vitals", "o5"), 1);
	REQUIRE(store_rollback(s) == 0);
	CHECK_INT(inst(s, "P", "R1", "", "vitals", "o6"), 5);
	CHECK_INT(inst(s, "P", "R3", "", "vitals", "o6"), 1);
	store_close(s);

	/* Across reopen */
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_INT(inst(s, "P", "R1", "", "vitals", "o3"), 3);
	CHECK_INT(inst(s, "P", "R1", "", "vitals", "o6"), 5);
	CHECK_INT(inst(s, "P", "R1", "", "vitals", "o7"), 6);
	CHECK_INT(inst(s, "Q", "R1", "", "vitals", "o2"), 1);
	CHECK_INT(store_instance(s, "P", "R1", "", "", "Observation", "o1", &n), -EINVAL); /* no instrument */
	CHECK_INT(store_instance(s, "P", "", "", "vitals", "Observation", "o1", &n), -EINVAL);
	CHECK_INT(store_instance(s, "P", "R1", "", "vitals", "Observation", "", &n), -EINVAL);
	CHECK_INT(n, 0);
	store_close(s);
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM instances"), 11);
	/* Dense: per (record, event, instrument) the numbers are 1..n */
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM (SELECT record, event, instrument FROM instances"
			      " GROUP BY record, event, instrument HAVING max(instance) <> count(*))"),
		  0);

	s = fx_open(&f, STORE_RO);
	REQUIRE(s);
	CHECK_INT(store_instance(s, "P", "R1", "", "vitals", "Observation", "o9", &n), STORE_E_DB);
	store_close(s);
	fx_deinit(&f);
}

/* ---- outbox ------------------------------------------------------------- */

static void test_outbox_put_and_gen(void)
{
	FX_STORE(f, srv, s);
	int changed = -1;
	CHECK_INT(oput(s, "P", "R1", "", "", 0, "{\"record_id\":\"R1\",\"dob\":\"2000-01-01\"}", &changed), 0);
	CHECK_INT(changed, 1);
	store_outbox_row *rows = NULL;
	size_t n = 0;
	CHECK_STR(due_str(s, "P", 0, 10, &rows, &n), "R1/#0:{\"record_id\":\"R1\",\"dob\":\"2000-01-01\"}");
	REQUIRE(n == 1);
	int64_t id = rows[0].id;
	CHECK_INT(rows[0].gen, 1);
	CHECK_STR(rows[0].project, "P");
	CHECK_STR(rows[0].event, "");
	CHECK_INT(rows[0].state, STORE_OUTBOX_PENDING);
	CHECK_INT(rows[0].attempts, 0);
	CHECK_INT(rows[0].next_at_ms, 0);
	CHECK_STR(rows[0].last_error, "");
	CHECK_INT(rows[0].payload_len, strlen(rows[0].payload));
	store_outbox_rows_free(rows, n);

	/* unchanged */
	CHECK_INT(oput(s, "P", "R1", "", "", 0, "{\"record_id\":\"R1\",\"dob\":\"2000-01-01\"}", &changed), 0);
	CHECK_INT(changed, 0);
	CHECK_INT(q_int(f.db, "SELECT gen FROM outbox"), 1);

	/* done; the same payload again changes nothing */
	CHECK_INT(store_outbox_done(s, id, 1), 0);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "");
	CHECK_INT(oput(s, "P", "R1", "", "", 0, "{\"record_id\":\"R1\",\"dob\":\"2000-01-01\"}", &changed), 0);
	CHECK_INT(changed, 0);
	CHECK_INT(q_int(f.db, "SELECT state FROM outbox"), STORE_OUTBOX_DONE);

	/* changed: gen 2, pending again */
	CHECK_INT(oput(s, "P", "R1", "", "", 0, "{\"record_id\":\"R1\",\"dob\":\"2000-01-02\"}", &changed), 0);
	CHECK_INT(changed, 1);
	CHECK_STR(due_str(s, "P", 0, 10, &rows, &n), "R1/#0:{\"record_id\":\"R1\",\"dob\":\"2000-01-02\"}");
	CHECK(n == 1 && rows[0].gen == 2 && rows[0].id == id);
	store_outbox_rows_free(rows, n);

	/* retry: only with the current gen */
	CHECK_INT(store_outbox_retry(s, id, 1, 99999, "stale"), 0);
	CHECK_INT(q_int(f.db, "SELECT attempts FROM outbox"), 0);
	CHECK_INT(store_outbox_retry(s, id, 2, 5000, "HTTP 503"), 0);
	CHECK_INT(store_outbox_retry(s, id, 2, 6000, "HTTP 502"), 0);
	CHECK_STR(due_str(s, "P", 5999, 10, NULL, NULL), "");
	CHECK_STR(due_str(s, "P", 6000, 10, &rows, &n), "R1/#0:{\"record_id\":\"R1\",\"dob\":\"2000-01-02\"}");
	CHECK(n == 1 && rows[0].attempts == 2 && rows[0].next_at_ms == 6000);
	CHECK(n == 1 && strcmp(rows[0].last_error, "HTTP 502") == 0);
	store_outbox_rows_free(rows, n);

	/* A stale done (the payload changed while gen 2 was in flight) leaves it pending. */
	CHECK_INT(oput(s, "P", "R1", "", "", 0, "{\"record_id\":\"R1\",\"dob\":\"2000-01-03\"}", &changed), 0);
	CHECK_INT(changed, 1);
	CHECK_STR(due_str(s, "P", 0, 10, &rows, &n), "R1/#0:{\"record_id\":\"R1\",\"dob\":\"2000-01-03\"}");
	CHECK(n == 1 && rows[0].gen == 3 && rows[0].attempts == 0 && rows[0].next_at_ms == 0);
	CHECK(n == 1 && rows[0].last_error[0] == '\0');
	store_outbox_rows_free(rows, n);
	CHECK_INT(store_outbox_done(s, id, 2), 0);
	CHECK_INT(q_int(f.db, "SELECT state FROM outbox"), STORE_OUTBOX_PENDING);
	CHECK_INT(store_outbox_done(s, id, 3), 0);
	CHECK_INT(q_int(f.db, "SELECT state FROM outbox"), STORE_OUTBOX_DONE);
	CHECK_INT(store_outbox_done(s, id, 3), 0); /* again: fine */
	CHECK_INT(store_outbox_retry(s, id, 3, 1, "late"), 0); /* done rows are not retried */
	CHECK_INT(q_int(f.db, "SELECT state FROM outbox"), STORE_OUTBOX_DONE);
	CHECK_INT(store_outbox_done(s, id + 100, 1), STORE_E_NOTFOUND);
	CHECK_INT(store_outbox_retry(s, id + 100, 1, 1, ""), STORE_E_NOTFOUND);

	/* Keys: event, instrument, instance and project each make another row. */
	CHECK_INT(oput(s, "P", "R1", "e1", "", 0, "{}", &changed), 0);
	CHECK_INT(changed, 1);
	CHECK_INT(oput(s, "P", "R1", "", "vitals", 1, "{}", &changed), 0);
	CHECK_INT(changed, 1);
	CHECK_INT(oput(s, "P", "R1", "", "vitals", 2, "{}", &changed), 0);
	CHECK_INT(changed, 1);
	CHECK_INT(oput(s, "Q", "R1", "", "vitals", 2, "{}", &changed), 0);
	CHECK_INT(changed, 1);
	CHECK_INT(oput(s, "P", "R1", "", "vitals", 2, "{}", &changed), 0);
	CHECK_INT(changed, 0);
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM outbox"), 5);

	/* Inside a transaction: rolled back with it. */
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(oput(s, "P", "R1", "", "vitals", 2, "{\"x\":1}", &changed), 0);
	CHECK_INT(changed, 1);
	REQUIRE(store_rollback(s) == 0);
	CHECK_INT(oput(s, "P", "R1", "", "vitals", 2, "{}", &changed), 0);
	CHECK_INT(changed, 0);

	CHECK_INT(store_outbox_put(s, "P", "", "", "", 0, "{}", 2, NULL), -EINVAL);
	CHECK_INT(store_outbox_put(s, "P", "R", "", "", -1, "{}", 2, NULL), -EINVAL);
	CHECK_INT(store_outbox_put(s, "P", "R", "", "", 0, NULL, 0, NULL), -EINVAL);
	store_close(s);
	fx_deinit(&f);
}

static void test_outbox_hold_release(void)
{
	FX_STORE(f, srv, s);
	int64_t id1 = 0, id2 = 0, id3 = 0;
	REQUIRE(put_three(s, &id1, &id2, &id3));
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R1/#0:{\"v\":1};R2/#0:{\"v\":2};R3/#0:{\"v\":3}");
	int changed = 0;

	const char *reasons = "[{\"field\":\"dob\",\"message\":\"The value you provided could not be validated\"}]";
	CHECK_INT(store_outbox_hold(s, id1, 1, reasons), 0);
	CHECK_INT(store_outbox_hold(s, id2, 1, reasons), 0);
	CHECK_INT(store_outbox_hold(s, id3, 2, reasons), 0); /* stale gen: ignored */
	CHECK_INT(store_outbox_hold(s, id3, 1, "{\"not\":\"an array\"}"), -EINVAL);
	CHECK_INT(store_outbox_hold(s, id3, 1, "nonsense"), -EINVAL);
	CHECK_INT(store_outbox_hold(s, id3 + 100, 1, "[]"), STORE_E_NOTFOUND);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R3/#0:{\"v\":3}");
	CHECK_INT(pstat(s, "P", "held"), 2);
	CHECK_INT(pstat(s, "P", "pending"), 1);

	/* The same payload again: still held. A new one: pending, gen 2. */
	CHECK_INT(oput(s, "P", "R1", "", "", 0, "{\"v\":1}", &changed), 0);
	CHECK_INT(changed, 0);
	CHECK_INT(q_int(f.db, "SELECT state FROM outbox WHERE gen = 1 AND state = 2 LIMIT 1"), 2);
	CHECK_INT(oput(s, "P", "R2", "", "", 0, "{\"v\":22}", &changed), 0);
	CHECK_INT(changed, 1);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R2/#0:{\"v\":22};R3/#0:{\"v\":3}");
	CHECK_INT(pstat(s, "P", "held"), 1);
	CHECK_INT(store_outbox_done(s, id2, 1), 0); /* stale */
	CHECK_INT(pstat(s, "P", "pending"), 2);

	/* release by record, then all */
	int64_t released = -1;
	CHECK_INT(store_outbox_hold(s, id2, 2, reasons), 0);
	CHECK_INT(store_outbox_hold(s, id3, 1, reasons), 0);
	CHECK_INT(pstat(s, "P", "held"), 3);
	CHECK_INT(store_outbox_release(s, "P", "R2", NULL, &released), 0);
	CHECK_INT(released, 1);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R2/#0:{\"v\":22}");
	CHECK_INT(store_outbox_release(s, "P", "no-such-record", NULL, &released), 0);
	CHECK_INT(released, 0);
	CHECK_INT(store_outbox_release(s, "no-such-project", NULL, NULL, &released), 0);
	CHECK_INT(released, 0);
	CHECK_INT(store_outbox_release(s, "P", NULL, NULL, &released), 0);
	CHECK_INT(released, 2);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R1/#0:{\"v\":1};R2/#0:{\"v\":22};R3/#0:{\"v\":3}");
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM outbox WHERE reasons IS NOT NULL OR attempts <> 0"), 0);
	CHECK_INT(pstat(s, "P", "held"), 0);
	/* Released rows keep their gen: a done for it counts. */
	CHECK_INT(store_outbox_done(s, id1, 1), 0);
	CHECK_INT(pstat(s, "P", "done"), 1);
	store_close(s);
	fx_deinit(&f);
}

/* The held rows as rows_str() gives them ("not held" if one is not); *last the last one's id. */
static char *held_str(store *s, const char *project, const char *source, int64_t after, size_t limit, int64_t *last)
{
	store_outbox_row *rows = NULL;
	size_t n = 0;
	int rc = store_outbox_held(s, project, source, after, limit, &rows, &n);
	char *buf = rows_str(rc, rows, n);
	for (size_t i = 0; i < n; i++) {
		if (rows[i].state != STORE_OUTBOX_HELD || !rows[i].reasons)
			strcpy(buf, "not held");
		if (last)
			*last = rows[i].id;
	}
	store_outbox_rows_free(rows, n);
	return buf;
}

static int64_t held_count(store *s, const char *project, const char *source)
{
	int64_t n = -1;
	int rc = store_outbox_held_count(s, project, source, &n);
	return rc ? -1000 + rc : n;
}

/* Held rows by source: read back with their reasons, re-held with new ones,
 * un-held one by one, released by source; a record's pending rows held at
 * once (an ambiguous patient) and released again. */
/* A record held as a whole (a refused patient) stays held: rows it gets later
 * -- a new curation, a value accepted in review -- wait with it, until a
 * release whose source takes the hold in. */
static void test_outbox_standing_hold(void)
{
	FX_STORE(f, srv, s);
	int64_t id1 = 0, id2 = 0, id3 = 0;
	REQUIRE(put_three(s, &id1, &id2, &id3));
	const char *rc_ = "[{\"field\":\"\",\"message\":\"refused\",\"source\":\"curation\"}]";
	int64_t n = -1;
	CHECK_INT(store_outbox_hold_record(s, "P", "R1", rc_, &n), 0);
	CHECK_INT(n, 1);
	/* A changed row of R1 and a new instance: held at once, with the hold's reasons. */
	int changed = 0;
	CHECK_INT(oput(s, "P", "R1", "", "", 0, "{\"v\":11}", &changed), 0);
	CHECK_INT(changed, 1);
	CHECK_INT(oput(s, "P", "R1", "", "labs", 1, "{\"l\":1}", &changed), 0);
	/* A value accepted in review for R1. */
	int queued = 0;
	CHECK_INT(store_review_put(s, "P", "R1", "", "labs", 2, "{\"l\":2}", 7, "[]", &queued), 0);
	CHECK_INT(queued, 1);
	json_t *list = store_review_list(s, "P", STORE_REVIEW_PENDING);
	REQUIRE(json_array_size(list) == 1);
	int64_t rid = json_integer_value(json_object_get(json_array_get(list, 0), "id"));
	json_decref(list);
	CHECK_INT(store_review_decide(s, rid, true, "tester"), 0);
	/* Other records are not touched. */
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R2/#0:{\"v\":2};R3/#0:{\"v\":3}");
	CHECK_INT(held_count(s, "P", "curation"), 3);
	CHECK_INT(held_count(s, "P", NULL), 3);
	/* The mark names the record by its row id, never by its name. */
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM project_kv WHERE key GLOB 'hold:record:*'"), 1);
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM project_kv WHERE key LIKE '%R1%' OR value LIKE '%R1%'"), 0);
	/* A release of everything but the refusals keeps it; so does another record's release. */
	CHECK_INT(store_outbox_release(s, "P", NULL, "!curation", &n), 0);
	CHECK_INT(store_outbox_release(s, "P", "R2", "curation", &n), 0);
	CHECK_INT(oput(s, "P", "R1", "", "labs", 3, "{\"l\":3}", &changed), 0);
	CHECK_INT(held_count(s, "P", "curation"), 4);
	/* The refusal ends: everything goes, and later rows are pending again. */
	CHECK_INT(store_outbox_release(s, "P", "R1", "curation", &n), 0);
	CHECK_INT(n, 4);
	CHECK_INT(held_count(s, "P", NULL), 0);
	CHECK_INT(oput(s, "P", "R1", "", "labs", 4, "{\"l\":4}", &changed), 0);
	CHECK_INT(held_count(s, "P", NULL), 0);
	store_outbox_row *rows = NULL;
	size_t nr = 0;
	due_str(s, "P", 0, 10, &rows, &nr);
	CHECK_INT(nr, 7);
	store_outbox_rows_free(rows, nr);
	/* A whole-project release by a source that takes the hold in ends it too. */
	CHECK_INT(store_outbox_hold_record(s, "P", "R3", rc_, &n), 0);
	CHECK_INT(store_outbox_release(s, "P", NULL, NULL, &n), 0);
	CHECK_INT(oput(s, "P", "R3", "", "", 0, "{\"v\":33}", &changed), 0);
	CHECK_INT(held_count(s, "P", NULL), 0);
	/* Every standing hold ended: no mark left. */
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM project_kv WHERE key GLOB 'hold:*'"), 0);
	store_close(s);
	fx_deinit(&f);
}

static void test_outbox_held_sources(void)
{
	FX_STORE(f, srv, s);
	int64_t id1 = 0, id2 = 0, id3 = 0;
	REQUIRE(put_three(s, &id1, &id2, &id3));
	int changed = 0;
	REQUIRE(oput(s, "Q", "R1", "", "", 0, "{\"q\":1}", &changed) == 0);
	store_outbox_row *rows = NULL;
	size_t n = 0;
	due_str(s, "Q", 0, 10, &rows, &n);
	REQUIRE(n == 1);
	int64_t idq = rows[0].id;
	store_outbox_rows_free(rows, n);

	const char *rv = "[{\"field\":\"sex\",\"message\":\"m1\",\"source\":\"validation\"}]";
	const char *rr = "[{\"field\":\"\",\"message\":\"m2\",\"source\":\"redcap\"}]";
	const char *legacy = "[{\"field\":\"dob\",\"message\":\"m3\"}]";
	CHECK_INT(store_outbox_hold(s, id1, 1, rv), 0);
	CHECK_INT(store_outbox_hold(s, id2, 1, rr), 0);
	CHECK_INT(store_outbox_hold(s, id3, 1, legacy), 0);
	CHECK_INT(store_outbox_hold(s, idq, 1, rv), 0);
	CHECK_INT(held_count(s, "P", NULL), 3);
	CHECK_INT(held_count(s, "P", "validation"), 1);
	CHECK_INT(held_count(s, "P", "redcap"), 1);
	CHECK_INT(held_count(s, "P", "mapping"), 0);
	CHECK_INT(held_count(s, "nope", NULL), 0);
	const char *h1 = "R1/#0:{\"v\":1}:[{\"field\":\"sex\",\"message\":\"m1\",\"source\":\"validation\"}]";
	CHECK_STR(held_str(s, "P", "validation", 0, 10, NULL), h1);
	CHECK_STR(held_str(s, "P", NULL, 0, 10, NULL),
		  "R1/#0:{\"v\":1}:[{\"field\":\"sex\",\"message\":\"m1\",\"source\":\"validation\"}];"
		  "R2/#0:{\"v\":2}:[{\"field\":\"\",\"message\":\"m2\",\"source\":\"redcap\"}];"
		  "R3/#0:{\"v\":3}:[{\"field\":\"dob\",\"message\":\"m3\"}]");
	/* paging by id */
	int64_t last = 0;
	CHECK_STR(held_str(s, "P", NULL, 0, 2, &last),
		  "R1/#0:{\"v\":1}:[{\"field\":\"sex\",\"message\":\"m1\",\"source\":\"validation\"}];"
		  "R2/#0:{\"v\":2}:[{\"field\":\"\",\"message\":\"m2\",\"source\":\"redcap\"}]");
	CHECK_INT(last, id2);
	CHECK_STR(held_str(s, "P", NULL, last, 2, NULL), "R3/#0:{\"v\":3}:[{\"field\":\"dob\",\"message\":\"m3\"}]");
	CHECK_STR(held_str(s, "P", "validation", id1, 2, NULL), "");
	CHECK_STR(held_str(s, "nope", NULL, 0, 2, NULL), "");

	/* A held row gets new reasons; since stays when it was first held. */
	CHECK(raw_exec(f.db, "UPDATE outbox SET state_at = 1000 WHERE state = 2") == SQLITE_OK);
	const char *rv2 = "[{\"field\":\"sex\",\"message\":\"m1b\",\"source\":\"validation\"}]";
	CHECK_INT(store_outbox_hold(s, id1, 1, rv2), 0);
	CHECK_INT(store_outbox_hold(s, id1, 2, rr), 0); /* stale gen: ignored */
	char sql[160];
	snprintf(sql, sizeof(sql), "SELECT state_at FROM outbox WHERE id = %lld", (long long)id1);
	CHECK_INT(q_int(f.db, sql), 1000);
	CHECK_STR(held_str(s, "P", "validation", 0, 10, NULL),
		  "R1/#0:{\"v\":1}:[{\"field\":\"sex\",\"message\":\"m1b\",\"source\":\"validation\"}]");

	/* un-hold one row */
	CHECK_INT(store_outbox_unhold(s, id1, 2), 0); /* stale gen */
	CHECK_INT(held_count(s, "P", "validation"), 1);
	CHECK_INT(store_outbox_unhold(s, id1, 1), 0);
	CHECK_INT(store_outbox_unhold(s, id1, 1), 0); /* not held any more: no-op */
	CHECK_INT(store_outbox_unhold(s, id1 + 1000, 1), STORE_E_NOTFOUND);
	CHECK_INT(held_count(s, "P", "validation"), 0);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R1/#0:{\"v\":1}");
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM outbox WHERE id = %lld AND reasons IS NULL AND attempts = 0",
		 (long long)id1);
	CHECK_INT(q_int(f.db, sql), 1);

	/* release by source: only the rows REDCap refused, then the rest */
	int64_t released = -1;
	CHECK_INT(held_count(s, "P", "!redcap"), 1);      /* the legacy row without a source */
	CHECK_INT(held_count(s, "P", "!validation"), 2);
	CHECK_INT(store_outbox_release(s, "P", NULL, "redcap", &released), 0);
	CHECK_INT(released, 1);
	CHECK_INT(store_outbox_release(s, "P", "R3", "redcap", &released), 0);
	CHECK_INT(released, 0);
	CHECK_INT(store_outbox_release(s, "P", "R3", NULL, &released), 0);
	CHECK_INT(released, 1);
	CHECK_INT(held_count(s, "P", NULL), 0);
	CHECK_INT(held_count(s, "Q", "validation"), 1); /* another project's row stays */

	/* A record's pending rows held at once; a done row stays done. */
	REQUIRE(oput(s, "P", "R5", "", "", 0, "{\"v\":5}", &changed) == 0);
	REQUIRE(oput(s, "P", "R5", "", "labs", 1, "{\"l\":1}", &changed) == 0);
	REQUIRE(oput(s, "P", "R5", "", "labs", 2, "{\"l\":2}", &changed) == 0);
	REQUIRE(oput(s, "P", "R5", "", "labs", 3, "{\"l\":3}", &changed) == 0);
	due_str(s, "P", 0, 10, &rows, &n);
	REQUIRE(n == 7);
	CHECK_INT(store_outbox_done(s, rows[3].id, rows[3].gen), 0); /* R5 #0 */
	CHECK_INT(store_outbox_hold(s, rows[6].id, rows[6].gen, rv), 0); /* R5 labs #3, by the check */
	store_outbox_rows_free(rows, n);
	const char *rc = "[{\"field\":\"\",\"message\":\"ambiguous MRN\",\"source\":\"curation\"}]";
	int64_t nh = -1;
	CHECK_INT(store_outbox_hold_record(s, "P", "R5", rc, &nh), 0);
	CHECK_INT(nh, 3);
	CHECK_INT(held_count(s, "P", "validation"), 0); /* not re-checked while the patient is refused */
	CHECK_INT(store_outbox_hold_record(s, "P", "R5", rc, &nh), 0);
	CHECK_INT(nh, 0);
	CHECK_INT(store_outbox_hold_record(s, "P", "no-such-record", rc, &nh), 0);
	CHECK_INT(nh, 0);
	CHECK_INT(store_outbox_hold_record(s, "P", "R5", "{}", &nh), -EINVAL);
	CHECK_INT(held_count(s, "P", "curation"), 3);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R1/#0:{\"v\":1};R2/#0:{\"v\":2};R3/#0:{\"v\":3}");
	/* The same payload again keeps them held (only a release lets them go). */
	CHECK_INT(oput(s, "P", "R5", "", "labs", 1, "{\"l\":1}", &changed), 0);
	CHECK_INT(changed, 0);
	CHECK_INT(held_count(s, "P", "curation"), 3);
	CHECK_INT(store_outbox_release(s, "P", "R5", "validation", &released), 0);
	CHECK_INT(released, 0);
	CHECK_INT(store_outbox_release(s, "P", NULL, "!curation", &released), 0);
	CHECK_INT(released, 0);
	CHECK_INT(store_outbox_release(s, "P", "R5", "curation", &released), 0);
	CHECK_INT(released, 3);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL),
		  "R1/#0:{\"v\":1};R2/#0:{\"v\":2};R3/#0:{\"v\":3};R5/labs#1:{\"l\":1};R5/labs#2:{\"l\":2};"
		  "R5/labs#3:{\"l\":3}");
	CHECK_INT(pstat(s, "P", "done"), 1);
	store_close(s);
	fx_deinit(&f);
}

/* A JSON array of strings as "a,b" (static buffer); "(null)" for NULL. */
static const char *jlist(json_t *a)
{
	static char buf[256];
	buf[0] = '\0';
	if (!a)
		return "(null)";
	for (size_t i = 0; i < json_array_size(a); i++) {
		size_t len = strlen(buf);
		snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? "," : "", json_string_value(json_array_get(a, i)));
	}
	return buf;
}

/* Record names as REDCap matches them: "XK1", "xk1 " and "\tXk1" are one record. */
static void test_record_owners(void)
{
	FX_STORE(f, srv, s);
	json_t *same = NULL, *left = NULL;
	int changed = -1;
#define OWN(proj, pat, rec, want_same, want_left, want_changed)                                              \
	do {                                                                                                 \
		CHECK_INT(store_record_owner_set(s, proj, pat, rec, &same, &left, &changed), 0);             \
		CHECK_STR(jlist(same), want_same);                                                           \
		CHECK_STR(jlist(left), want_left);                                                           \
		CHECK_INT(changed, want_changed);                                                            \
		json_decref(same);                                                                           \
		json_decref(left);                                                                           \
	} while (0)
	OWN("P", "pat-1", "XK1", "", "", 1);
	OWN("P", "pat-1", "XK1", "", "", 0);
	OWN("P", "pat-2", "xk1 ", "pat-1", "", 1);
	OWN("P", "pat-3", "\tXk1", "pat-1,pat-2", "", 1);
	OWN("P", "pat-1", "XK1", "pat-2,pat-3", "", 0);
	OWN("Q", "pat-9", "xk1", "", "", 1); /* another project */
	OWN("P", "pat-4", "XK2", "", "", 1);
	/* pat-3 gets another record: it leaves pat-1 and pat-2 */
	OWN("P", "pat-3", "xk2", "pat-4", "pat-1,pat-2", 1);
	OWN("P", "pat-2", NULL, "", "pat-1", 1);
	OWN("P", "pat-2", NULL, "", "", 0);
	OWN("P", "pat-1", "XK1", "", "", 0);
	/* either list may be skipped */
	CHECK_INT(store_record_owner_set(s, "P", "pat-1", "XK1", NULL, NULL, NULL), 0);
	CHECK_INT(store_record_owner_set(s, "", "pat-1", "XK1", NULL, NULL, NULL), -EINVAL);
	CHECK_INT(store_record_owner_set(s, "P", "", "XK1", NULL, NULL, NULL), -EINVAL);
#undef OWN
	/* Only keyed hashes (hex: no x, no k) and patient ids in the store. */
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM project_kv WHERE lower(key) LIKE '%xk1%' OR lower(value) LIKE '%xk1%'"
			      " OR lower(key) LIKE '%xk2%' OR lower(value) LIKE '%xk2%'"),
		  0);
	/* P: record-of for pat-1, pat-3, pat-4 and two folds; Q: one of each. */
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM project_kv WHERE key LIKE 'record-%'"), 7);
	store_close(s);
	fx_deinit(&f);
}

static void test_outbox_due_order_and_next(void)
{
	FX_STORE(f, srv, s);
	int64_t next = -1;
	CHECK_INT(store_outbox_next_due(s, "P", &next), STORE_E_NOTFOUND);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "");
	int changed = 0;
	REQUIRE(store_begin(s) == 0);
	REQUIRE(oput(s, "P", "Rc", "", "", 0, "{\"c\":1}", &changed) == 0);
	REQUIRE(oput(s, "P", "Ra", "", "", 0, "{\"a\":1}", &changed) == 0);
	REQUIRE(oput(s, "Q", "Rq", "", "", 0, "{\"q\":1}", &changed) == 0);
	REQUIRE(oput(s, "P", "Rb", "", "labs", 3, "{\"b\":1}", &changed) == 0);
	REQUIRE(store_commit(s) == 0);
	store_outbox_row *rows = NULL;
	size_t n = 0;
	/* oldest id first, not by record */
	CHECK_STR(due_str(s, "P", 0, 10, &rows, &n), "Rc/#0:{\"c\":1};Ra/#0:{\"a\":1};Rb/labs#3:{\"b\":1}");
	REQUIRE(n == 3);
	int64_t idc = rows[0].id, ida = rows[1].id, idb = rows[2].id;
	store_outbox_rows_free(rows, n);
	CHECK_STR(due_str(s, "P", 0, 2, NULL, NULL), "Rc/#0:{\"c\":1};Ra/#0:{\"a\":1}");
	CHECK_STR(due_str(s, "P", 0, 0, NULL, NULL), "");
	CHECK_STR(due_str(s, "Q", 0, 10, NULL, NULL), "Rq/#0:{\"q\":1}");
	CHECK_INT(store_outbox_next_due(s, "P", &next), 0);
	CHECK_INT(next, 0);

	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_outbox_retry(s, idc, 1, 9000, "HTTP 500"), 0);
	CHECK_INT(store_outbox_retry(s, ida, 1, 5000, "timeout"), 0);
	REQUIRE(store_commit(s) == 0);
	CHECK_STR(due_str(s, "P", 1000, 10, NULL, NULL), "Rb/labs#3:{\"b\":1}");
	CHECK_INT(store_outbox_next_due(s, "P", &next), 0);
	CHECK_INT(next, 0);
	CHECK_INT(store_outbox_done(s, idb, 1), 0);
	CHECK_INT(store_outbox_next_due(s, "P", &next), 0);
	CHECK_INT(next, 5000);
	CHECK_STR(due_str(s, "P", 4999, 10, NULL, NULL), "");
	CHECK_STR(due_str(s, "P", 5000, 10, NULL, NULL), "Ra/#0:{\"a\":1}");
	CHECK_STR(due_str(s, "P", 9000, 10, NULL, NULL), "Rc/#0:{\"c\":1};Ra/#0:{\"a\":1}");
	/* held rows are not due and do not count for next_due */
	CHECK_INT(store_outbox_hold(s, ida, 1, "[]"), 0);
	CHECK_INT(store_outbox_next_due(s, "P", &next), 0);
	CHECK_INT(next, 9000);
	CHECK_INT(store_outbox_done(s, idc, 1), 0);
	CHECK_INT(store_outbox_next_due(s, "P", &next), STORE_E_NOTFOUND);
	CHECK_INT(store_outbox_next_due(s, "unknown", &next), STORE_E_NOTFOUND);
	CHECK_STR(due_str(s, "unknown", 0, 10, NULL, NULL), "");
	store_close(s);
	fx_deinit(&f);
}

static void test_outbox_status_json(void)
{
	FX_STORE(f, srv, s);
	json_t *j = store_outbox_status_json(s, 10);
	json_t *want = json_pack("{s:{}}", "projects");
	CHECK(j && json_equal(j, want));
	json_decref(j);
	json_decref(want);

	int changed = 0;
	REQUIRE(store_begin(s) == 0);
	REQUIRE(oput(s, "P", "MRN-001", "", "", 0, "{\"a\":1}", &changed) == 0);
	REQUIRE(oput(s, "P", "MRN-001", "", "vitals", 1, "{\"a\":2}", &changed) == 0);
	REQUIRE(oput(s, "P", "MRN-002", "baseline_arm_1", "labs", 2, "{\"a\":3}", &changed) == 0);
	REQUIRE(oput(s, "P", "MRN-003", "", "", 0, "{\"a\":4}", &changed) == 0);
	REQUIRE(oput(s, "P", "MRN-004", "", "", 0, "{\"a\":5}", &changed) == 0);
	REQUIRE(store_refusal_set(s, "P", "pat-9", "ambiguous MRN") == 0);
	REQUIRE(store_review_put(s, "P", "MRN-005", "", "", 0, "{\"x\":\"1\"}", 9, "[]", NULL) == 0);
	REQUIRE(store_project_set(s, "Empty", "mapping_digest", "d") == 0);
	REQUIRE(store_commit(s) == 0);
	store_outbox_row *rows = NULL;
	size_t n = 0;
	due_str(s, "P", 0, 10, &rows, &n);
	REQUIRE(n == 5);
	const char *r1 = "[{\"field\":\"dob\",\"message\":\"m1\"}]", *r2 = "[{\"field\":\"hr\",\"message\":\"m2\"}]";
	CHECK_INT(store_outbox_hold(s, rows[0].id, 1, r1), 0);
	CHECK_INT(store_outbox_hold(s, rows[2].id, 1, r2), 0);
	CHECK_INT(store_outbox_done(s, rows[3].id, 1), 0);
	/* Held at different times: rows[0] is the newer. */
	char sql[160];
	snprintf(sql, sizeof(sql), "UPDATE outbox SET state_at = state_at - 60 WHERE id = %lld", (long long)rows[2].id);
	store_outbox_rows_free(rows, n);
	CHECK(raw_exec(f.db, sql) == SQLITE_OK);

	j = store_outbox_status_json(s, 10);
	REQUIRE(j);
	json_t *p = json_object_get(json_object_get(j, "projects"), "P");
	json_t *held = json_object_get(p, "held_rows");
	REQUIRE(json_array_size(held) == 2);
	CHECK(is_instant(json_object_get(json_array_get(held, 0), "since")));
	CHECK(is_instant(json_object_get(json_array_get(held, 1), "since")));
	json_object_del(json_array_get(held, 0), "since");
	json_object_del(json_array_get(held, 1), "since");
	json_error_t e;
	want = json_loads("{\"projects\": {"
			  " \"Empty\": {\"pending\": 0, \"done\": 0, \"held\": 0, \"held_rows\": [], \"refused\": [],"
			  "   \"review_pending\": 0},"
			  " \"P\": {\"pending\": 2, \"done\": 1, \"held\": 2,"
			  "   \"held_rows\": ["
			  "     {\"record\": \"MRN-001\", \"event\": null, \"instrument\": null, \"instance\": null,"
			  "      \"reasons\": [{\"field\": \"dob\", \"message\": \"m1\"}]},"
			  "     {\"record\": \"MRN-002\", \"event\": \"baseline_arm_1\", \"instrument\": \"labs\","
			  "      \"instance\": 2, \"reasons\": [{\"field\": \"hr\", \"message\": \"m2\"}]}],"
			  "   \"refused\": [{\"patient\": \"pat-9\", \"reason\": \"ambiguous MRN\"}],"
			  "   \"review_pending\": 1}}}",
			  0, &e);
	REQUIRE(want);
	if (!json_equal(j, want)) {
		char *got = json_dumps(j, JSON_SORT_KEYS);
		fprintf(stderr, "status: %s\n", got);
		free(got);
	}
	CHECK(json_equal(j, want));
	json_decref(j);
	json_decref(want);

	/* held_limit bounds the list, not the count; 0 lists none. */
	p = project_status(s, "P", 1);
	CHECK_INT(json_array_size(json_object_get(p, "held_rows")), 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(p, "held_rows"), 0), "record")),
		  "MRN-001");
	CHECK_INT(json_integer_value(json_object_get(p, "held")), 2);
	json_decref(p);
	CHECK_INT(pstat_len(s, "P", 0, "held_rows"), 0);
	store_close(s);
	fx_deinit(&f);
}

/* ---- provenance --------------------------------------------------------- */

static void test_provenance(void)
{
	FX_STORE(f, srv, s);
	json_t *p = store_provenance_get(s, "P", "R1", "vs_value");
	CHECK(p && json_array_size(p) == 0);
	json_decref(p);
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_provenance_put(s, "P", "R1", "e2", "vitals", 1, "vs_value", "hr", "Observation", "o3", "1"), 0);
	CHECK_INT(store_provenance_put(s, "P", "R1", "e1", "vitals", 2, "vs_value", "hr", "Observation", "o2", "1"), 0);
	CHECK_INT(store_provenance_put(s, "P", "R1", "e1", "vitals", 1, "vs_value", "hr", "Observation", "o1", "4"), 0);
	CHECK_INT(store_provenance_put(s, "P", "R1", "e1", "vitals", 1, "vs_unit", "hr", "Observation", "o1", "4"), 0);
	CHECK_INT(store_provenance_put(s, "P", "R2", "e1", "vitals", 1, "vs_value", "hr", "Observation", "o9", "1"), 0);
	CHECK_INT(store_provenance_put(s, "Q", "R1", "e1", "vitals", 1, "vs_value", "hr", "Observation", "o8", "1"), 0);
	CHECK_INT(store_provenance_put(s, "P", "R1", "", "", 0, "dob", "dob", "Patient", "p1", NULL), 0);
	REQUIRE(store_commit(s) == 0);

	p = store_provenance_get(s, "P", "R1", "vs_value");
	REQUIRE(p);
	CHECK_INT(json_array_size(p), 3);
	json_t *e;
	size_t i;
	json_array_foreach(p, i, e)
	{
		CHECK(is_instant(json_object_get(e, "at")));
		json_object_del(e, "at");
	}
	json_error_t je;
	json_t *want = json_loads(
		"[{\"event\": \"e1\", \"instrument\": \"vitals\", \"instance\": 1, \"rule\": \"hr\","
		"  \"resource_type\": \"Observation\", \"resource_id\": \"o1\", \"resource_version\": \"4\"},"
		" {\"event\": \"e1\", \"instrument\": \"vitals\", \"instance\": 2, \"rule\": \"hr\","
		"  \"resource_type\": \"Observation\", \"resource_id\": \"o2\", \"resource_version\": \"1\"},"
		" {\"event\": \"e2\", \"instrument\": \"vitals\", \"instance\": 1, \"rule\": \"hr\","
		"  \"resource_type\": \"Observation\", \"resource_id\": \"o3\", \"resource_version\": \"1\"}]",
		0, &je);
	CHECK(want && json_equal(p, want));
	json_decref(p);
	json_decref(want);

	/* Produced again by a newer version: replaced, not added. */
	CHECK_INT(store_provenance_put(s, "P", "R1", "e1", "vitals", 1, "vs_value", "hr2", "Observation", "o1", "5"),
		  0);
	CHECK_INT(store_provenance_put(s, "P", "R1", "e1", "vitals", 1, "vs_value", "hr2", "Observation", "o1", "5"),
		  0);
	p = store_provenance_get(s, "P", "R1", "vs_value");
	CHECK_INT(json_array_size(p), 3);
	CHECK_STR(json_string_value(json_object_get(json_array_get(p, 0), "resource_version")), "5");
	CHECK_STR(json_string_value(json_object_get(json_array_get(p, 0), "rule")), "hr2");
	json_decref(p);
	p = store_provenance_get(s, "P", "R1", "dob");
	REQUIRE(p && json_array_size(p) == 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(p, 0), "event")), "");
	CHECK_STR(json_string_value(json_object_get(json_array_get(p, 0), "instrument")), "");
	CHECK_INT(json_integer_value(json_object_get(json_array_get(p, 0), "instance")), 0);
	CHECK_STR(json_string_value(json_object_get(json_array_get(p, 0), "resource_version")), "");
	json_decref(p);
	p = store_provenance_get(s, "Q", "R1", "vs_value");
	CHECK(p && json_array_size(p) == 1);
	json_decref(p);
	p = store_provenance_get(s, "P", "unknown", "vs_value");
	CHECK(p && json_array_size(p) == 0);
	json_decref(p);
	CHECK(store_provenance_get(s, "P", "R1", "") == NULL);
	CHECK_INT(store_provenance_put(s, "P", "R1", "", "", 0, "", "r", "Patient", "p1", ""), -EINVAL);
	CHECK_INT(q_int(f.db, "SELECT count(*) FROM provenance"), 7);
	store_close(s);
	fx_deinit(&f);
}

/* ---- review ------------------------------------------------------------- */

static int64_t review_id(store *s, const char *project, int state, size_t i)
{
	json_t *l = store_review_list(s, project, state);
	int64_t id = json_integer_value(json_object_get(json_array_get(l, i), "id"));
	json_decref(l);
	return id;
}

static void test_review(void)
{
	FX_STORE(f, srv, s);
	const char *v1 = "{\"record_id\":\"R1\",\"creat_max_48h\":\"1.4\"}";
	const char *v2 = "{\"record_id\":\"R1\",\"creat_max_48h\":\"1.9\"}";
	const char *prov = "[{\"field\":\"creat_max_48h\",\"rule\":\"creat\",\"resource_type\":\"Observation\","
			   "\"resource_id\":\"o7\",\"resource_version\":\"2\"}]";
	int queued = -1;
	CHECK_INT(store_review_put(s, "P", "R1", "", "", 0, v1, strlen(v1), prov, &queued), 0);
	CHECK_INT(queued, 1);
	CHECK_INT(store_review_put(s, "Q", "R9", "", "labs", 4, "{}", 2, NULL, &queued), 0);
	CHECK_INT(queued, 1);

	json_t *l = store_review_list(s, "P", STORE_REVIEW_PENDING);
	REQUIRE(l && json_array_size(l) == 1);
	json_t *e = json_array_get(l, 0);
	int64_t id1 = json_integer_value(json_object_get(e, "id"));
	CHECK(id1 > 0);
	CHECK(is_instant(json_object_get(e, "queued_at")));
	json_object_del(e, "queued_at");
	json_object_del(e, "id");
	json_error_t je;
	json_t *want = json_pack("{s:s, s:s, s:s, s:s, s:i, s:{s:s, s:s}, s:o, s:s, s:n, s:n}", "project", "P",
				 "record", "R1", "event", "", "instrument", "", "instance", 0, "values", "record_id",
				 "R1", "creat_max_48h", "1.4", "provenance", json_loads(prov, 0, &je), "state",
				 "pending", "decided_at", "decided_by");
	CHECK(want && json_equal(e, want));
	json_decref(want);
	json_decref(l);
	l = store_review_list(s, NULL, -1);
	CHECK_INT(json_array_size(l), 2);
	json_decref(l);
	CHECK_INT(pstat(s, "P", "review_pending"), 1);

	/* The same payload: nothing (a pending entry's provenance follows). Rejected: stays rejected when put again. */
	const char *prov_b = "[{\"field\":\"creat_max_48h\",\"rule\":\"creat\",\"resource_type\":\"Observation\","
			     "\"resource_id\":\"o7\",\"resource_version\":\"3\"}]";
	CHECK_INT(store_review_put(s, "P", "R1", "", "", 0, v1, strlen(v1), prov_b, &queued), 0);
	CHECK_INT(queued, 0);
	CHECK_INT(review_id(s, "P", STORE_REVIEW_PENDING, 0), id1);
	l = store_review_list(s, "P", STORE_REVIEW_PENDING);
	CHECK_STR(json_string_value(json_object_get(
			  json_array_get(json_object_get(json_array_get(l, 0), "provenance"), 0), "resource_version")),
		  "3");
	json_decref(l);
	CHECK_INT(store_review_put(s, "P", "R1", "", "", 0, v1, strlen(v1), prov, &queued), 0);
	CHECK_INT(queued, 0);
	CHECK_INT(store_review_decide(s, id1, false, "alice"), 0);
	CHECK_INT(store_review_decide(s, id1, true, "alice"), STORE_E_NOTFOUND); /* not pending any more */
	CHECK_INT(store_review_put(s, "P", "R1", "", "", 0, v1, strlen(v1), prov, &queued), 0);
	CHECK_INT(queued, 0);
	CHECK_INT(pstat(s, "P", "review_pending"), 0);
	l = store_review_list(s, "P", STORE_REVIEW_REJECTED);
	REQUIRE(l && json_array_size(l) == 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "state")), "rejected");
	CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "decided_by")), "alice");
	CHECK(is_instant(json_object_get(json_array_get(l, 0), "decided_at")));
	json_decref(l);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), ""); /* rejected: nothing sent */

	/* A new payload re-queues under a new id; the old id is gone. */
	CHECK_INT(store_review_put(s, "P", "R1", "", "", 0, v2, strlen(v2), prov, &queued), 0);
	CHECK_INT(queued, 1);
	int64_t id2 = review_id(s, "P", STORE_REVIEW_PENDING, 0);
	CHECK(id2 > id1);
	CHECK_INT(store_review_decide(s, id1, true, "bob"), STORE_E_NOTFOUND);

	/* Accept in the caller's transaction, rolled back: nothing happened. */
	REQUIRE(store_begin(s) == 0);
	CHECK_INT(store_review_decide(s, id2, true, "bob"), 0);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R1/#0:{\"record_id\":\"R1\",\"creat_max_48h\":\"1.9\"}");
	REQUIRE(store_rollback(s) == 0);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "");
	CHECK_INT(review_id(s, "P", STORE_REVIEW_PENDING, 0), id2);
	json_t *pv = store_provenance_get(s, "P", "R1", "creat_max_48h");
	CHECK_INT(json_array_size(pv), 0);
	json_decref(pv);

	/* Accept: to the outbox with its provenance. */
	CHECK_INT(store_review_decide(s, id2, true, "bob"), 0);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "R1/#0:{\"record_id\":\"R1\",\"creat_max_48h\":\"1.9\"}");
	pv = store_provenance_get(s, "P", "R1", "creat_max_48h");
	REQUIRE(pv && json_array_size(pv) == 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(pv, 0), "resource_id")), "o7");
	CHECK_STR(json_string_value(json_object_get(json_array_get(pv, 0), "rule")), "creat");
	json_decref(pv);
	CHECK_INT(store_review_decide(s, id2, true, "bob"), STORE_E_NOTFOUND);
	CHECK_INT(store_review_put(s, "P", "R1", "", "", 0, v2, strlen(v2), prov, &queued), 0);
	CHECK_INT(queued, 0);
	l = store_review_list(s, "P", STORE_REVIEW_ACCEPTED);
	CHECK_INT(json_array_size(l), 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "decided_by")), "bob");
	json_decref(l);
	l = store_review_list(s, "P", -1);
	CHECK_INT(json_array_size(l), 1);
	json_decref(l);
	l = store_review_list(s, "nope", -1);
	CHECK(l && json_array_size(l) == 0);
	json_decref(l);
	CHECK_INT(store_review_decide(s, 999, true, "bob"), STORE_E_NOTFOUND);

	CHECK_INT(store_review_put(s, "P", "R1", "", "", 0, "[1]", 3, NULL, &queued), -EINVAL);
	CHECK_INT(store_review_put(s, "P", "R1", "", "", 0, "{}", 2, "{}", &queued), -EINVAL);
	CHECK_INT(store_review_put(s, "P", "R1", "", "", 0, "{}", 2, "[{\"rule\":\"x\"}]", &queued), -EINVAL);
	store_close(s);
	fx_deinit(&f);
}

/* ---- persistence, concurrency, at rest, upgrade ------------------------- */

static void test_reopen_persistence(void)
{
	FX_STORE(f, srv, s);
	int64_t n = 0;
	int changed = 0, queued = 0;
	REQUIRE(store_begin(s) == 0);
	REQUIRE(put_res(s, srv, "Patient", "p1", "1", "p1", "{\"p\":1}") == 0);
	REQUIRE(store_mrn_set(s, srv, "p1", "MRN-77") == 0);
	REQUIRE(inst(s, "P", "MRN-77", "", "vitals", "o1") == 1);
	REQUIRE(oput(s, "P", "MRN-77", "", "vitals", 1, "{\"vs_value\":\"60\"}", &changed) == 0);
	REQUIRE(store_provenance_put(s, "P", "MRN-77", "", "vitals", 1, "vs_value", "hr", "Observation", "o1", "1") ==
		0);
	REQUIRE(store_review_put(s, "P", "MRN-77", "", "", 0, "{\"x\":\"y\"}", 9, NULL, &queued) == 0);
	REQUIRE(store_refusal_set(s, "P", "p2", "no MRN") == 0);
	REQUIRE(store_project_set(s, "P", "mapping_digest", "abc") == 0);
	REQUIRE(store_commit(s) == 0);
	store_close(s);

	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	names w;
	CHECK_STR(waiting(s, srv, 0, &w), "p1");
	CHECK_INT(store_mrn_count(s, srv, "MRN-77", &n), 0);
	CHECK_INT(n, 1);
	CHECK_INT(inst(s, "P", "MRN-77", "", "vitals", "o1"), 1);
	CHECK_INT(inst(s, "P", "MRN-77", "", "vitals", "o2"), 2);
	CHECK_STR(due_str(s, "P", 0, 10, NULL, NULL), "MRN-77/vitals#1:{\"vs_value\":\"60\"}");
	CHECK_INT(oput(s, "P", "MRN-77", "", "vitals", 1, "{\"vs_value\":\"60\"}", &changed), 0);
	CHECK_INT(changed, 0);
	json_t *p = store_provenance_get(s, "P", "MRN-77", "vs_value");
	CHECK_INT(json_array_size(p), 1);
	json_decref(p);
	json_t *l = store_review_list(s, "P", STORE_REVIEW_PENDING);
	CHECK_INT(json_array_size(l), 1);
	CHECK_STR(json_string_value(json_object_get(json_object_get(json_array_get(l, 0), "values"), "x")), "y");
	json_decref(l);
	char *v = NULL;
	CHECK_INT(store_project_get(s, "P", "mapping_digest", &v), 0);
	CHECK_STR(v, "abc");
	free(v);
	p = project_status(s, "P", 5);
	CHECK_INT(json_array_size(json_object_get(p, "refused")), 1);
	CHECK_INT(json_integer_value(json_object_get(p, "pending")), 1);
	json_decref(p);
	store_close(s);
	fx_deinit(&f);
}

/* `status` (read-only) beside a running daemon that writes. */
static void test_read_only_beside_writer(void)
{
	FX_STORE(f, srv, w);
	int changed = 0;
	REQUIRE(oput(w, "P", "R1", "", "", 0, "{\"a\":1}", &changed) == 0);
	REQUIRE(store_begin(w) == 0);
	REQUIRE(oput(w, "P", "R2", "", "", 0, "{\"a\":2}", &changed) == 0);
	REQUIRE(oput(w, "Q", "R2", "", "", 0, "{\"a\":2}", &changed) == 0);
	REQUIRE(store_refusal_set(w, "P", "p9", "no MRN") == 0);

	store *r = fx_open(&f, STORE_RO);
	REQUIRE(r);
	json_t *j = store_outbox_status_json(r, 10);
	REQUIRE(j);
	json_t *p = json_object_get(json_object_get(j, "projects"), "P");
	CHECK_INT(json_integer_value(json_object_get(p, "pending")), 1);
	CHECK_INT(json_array_size(json_object_get(p, "refused")), 0);
	CHECK(json_object_get(json_object_get(j, "projects"), "Q") == NULL);
	json_decref(j);
	CHECK_STR(due_str(r, "P", 0, 10, NULL, NULL), "R1/#0:{\"a\":1}");
	/* The reader cannot write. */
	CHECK_INT(store_outbox_put(r, "P", "R3", "", "", 0, "{}", 2, NULL), STORE_E_DB);
	CHECK_INT(store_waiting_clear(r, srv, "p1"), STORE_E_DB);
	CHECK(strstr(store_errmsg(r), "read-only") != NULL);

	REQUIRE(store_commit(w) == 0);
	j = store_outbox_status_json(r, 10);
	REQUIRE(j);
	p = json_object_get(json_object_get(j, "projects"), "P");
	CHECK_INT(json_integer_value(json_object_get(p, "pending")), 2);
	CHECK_INT(json_array_size(json_object_get(p, "refused")), 1);
	CHECK_INT(json_integer_value(json_object_get(json_object_get(json_object_get(j, "projects"), "Q"), "pending")),
		  1);
	json_decref(j);
	store_close(r);
	store_close(w);
	fx_deinit(&f);
}

#define MARKER "PHI-MARKER-Zq81"

static void test_no_phi_on_disk(void)
{
	FX_STORE(f, srv, s);
	char record[64], payload[256], mrn[64];
	int changed = 0;
	REQUIRE(store_begin(s) == 0);
	for (int i = 0; i < 300; i++) {
		snprintf(record, sizeof(record), "MRN%07d", 4400000 + i);
		snprintf(mrn, sizeof(mrn), "MRN%07d", 4400000 + i);
		snprintf(payload, sizeof(payload),
			 "{\"record_id\":\"%s\",\"mrn\":\"%s\",\"vs_value\":\"" MARKER "-%d\",\"vs_unit\":\"/min\"}",
			 record, mrn, i);
		char pid[32];
		snprintf(pid, sizeof(pid), "pat-%d", i);
		REQUIRE(store_mrn_set(s, srv, pid, mrn) == 0);
		REQUIRE(inst(s, "Study", record, "", "vitals", pid) == 1);
		REQUIRE(oput(s, "Study", record, "", "vitals", 1, payload, &changed) == 0);
		REQUIRE(store_provenance_put(s, "Study", record, "", "vitals", 1, "vs_value", "heart_rate",
					     "Observation", pid, "1") == 0);
		if (i % 10 == 0)
			REQUIRE(store_review_put(s, "Study", record, "", "", 0, payload, strlen(payload), NULL, NULL) ==
				0);
	}
	REQUIRE(store_commit(s) == 0);
	/* A held row and a status read: their reasons are no PHI, the record names are. */
	store_outbox_row *rows = NULL;
	size_t n = 0;
	due_str(s, "Study", 0, 1, &rows, &n);
	REQUIRE(n == 1);
	CHECK_INT(store_outbox_hold(s, rows[0].id, rows[0].gen, "[{\"field\":\"vs_value\",\"message\":\"bad\"}]"), 0);
	store_outbox_rows_free(rows, n);

	/* Everything sits in the WAL now; then checkpoint into the database file. */
	CHECK(file_has(f.wal, "heart_rate")); /* the scan sees clear, non-PHI text */
	CHECK(!file_has(f.wal, MARKER));
	CHECK(!file_has(f.wal, "MRN44"));
	CHECK(!file_has(f.db, MARKER));
	CHECK(!file_has(f.db, "MRN44"));
	fx_checkpoint(&f);
	CHECK(file_has(f.db, "heart_rate"));
	CHECK(file_has(f.db, "Study"));
	CHECK(!file_has(f.db, MARKER));
	CHECK(!file_has(f.db, "MRN44"));
	CHECK(!file_has(f.wal, MARKER));
	CHECK(!file_has(f.wal, "MRN44"));

	/* The values read back, and no message carries them. */
	CHECK_STR(due_str(s, "Study", 0, 1, NULL, NULL),
		  "MRN4400001/vitals#1:{\"record_id\":\"MRN4400001\",\"mrn\":\"MRN4400001\",\"vs_value\":\"" MARKER
		  "-1\",\"vs_unit\":\"/min\"}");
	json_t *st = store_outbox_status_json(s, 5);
	char *txt = json_dumps(st, 0);
	CHECK(txt && strstr(txt, "\"MRN4400000\"") != NULL); /* status shows record names to the operator */
	free(txt);
	json_decref(st);
	CHECK_INT(store_outbox_put(s, "Study", "MRN4400001", "", "vitals", -1, "{}", 2, NULL), -EINVAL);
	CHECK(strstr(store_errmsg(s), "MRN") == NULL);
	json_t *pv = store_provenance_get(s, "Study", "MRN9999999", "vs_value");
	CHECK(pv && json_array_size(pv) == 0);
	json_decref(pv);
	CHECK(strstr(store_errmsg(s), "MRN") == NULL);
	store_close(s);
	CHECK(!file_has(f.db, MARKER));
	CHECK(!file_has(f.db, "MRN44"));
	fx_deinit(&f);
}

/* A blob moved to another row, or an older payload put back, fails authentication. */
static void test_tampering_detected(void)
{
	FX_STORE(f, srv, s);
	int changed = 0;
	REQUIRE(oput(s, "P", "R1", "", "", 0, "{\"v\":1}", &changed) == 0);
	REQUIRE(oput(s, "P", "R2", "", "", 0, "{\"v\":2}", &changed) == 0);
	store_close(s);
	CHECK(raw_exec(f.db, "UPDATE outbox SET payload = (SELECT payload FROM outbox WHERE id = 2) WHERE id = 1") ==
	      SQLITE_OK);
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	store_outbox_row *rows = (store_outbox_row *)&f;
	size_t n = 99;
	CHECK_INT(store_outbox_due(s, "P", 0, 10, &rows, &n), STORE_E_CORRUPT);
	CHECK(rows == NULL && n == 0);
	CHECK(strstr(store_errmsg(s), "failed authentication") != NULL);
	store_close(s);
	fx_deinit(&f);
}

/* Run SQL on an open plain connection. */
static int db_exec(sqlite3 *db, const char *sql)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		fprintf(stderr, "db_exec(%.60s): %s\n", sql, sqlite3_errmsg(db));
	return rc;
}

/*
 * A version 1 store with data upgrades in place. The v1 file is built with
 * plain SQLite from the v1 SQL (store_migrations[0]); its rows and key check
 * are copied from a store the current code wrote with the same key, so the
 * bodies open under the AAD they were sealed with.
 */
static void test_upgrade_from_v1(void)
{
	FX_STORE(f, srv, s);
	REQUIRE(store_begin(s) == 0);
	REQUIRE(put_res(s, srv, "Observation", "o1", "1", "p2", "{\"o\":1}") == 0);
	REQUIRE(put_res(s, srv, "Patient", "p1", "1", "p1", "{\"p\":1}") == 0);
	REQUIRE(put_res(s, srv, "Patient", "p2", "1", "p2", "{\"p\":2}") == 0);
	REQUIRE(put_res(s, srv, "Observation", "o2", "1", "", "{\"o\":2}") == 0);
	REQUIRE(store_commit(s) == 0);
	store_close(s);

	char v1[600];
	snprintf(v1, sizeof(v1), "%s/v1.db", f.dir);
	sqlite3 *db = NULL;
	REQUIRE(sqlite3_open_v2(v1, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK);
	char sql[1200];
	snprintf(sql, sizeof(sql), "PRAGMA page_size = %d; PRAGMA journal_mode = WAL", STORE_PAGE_SIZE);
	CHECK(db_exec(db, sql) == SQLITE_OK);
	CHECK(db_exec(db, "BEGIN") == SQLITE_OK);
	CHECK(db_exec(db, store_migrations[0].sql) == SQLITE_OK);
	snprintf(sql, sizeof(sql),
		 "ATTACH '%s' AS cur;"
		 " INSERT INTO meta SELECT * FROM cur.meta; INSERT INTO servers SELECT * FROM cur.servers;"
		 " INSERT INTO types SELECT * FROM cur.types; INSERT INTO patients SELECT * FROM cur.patients;"
		 " INSERT INTO resources SELECT * FROM cur.resources;"
		 " INSERT INTO resource_versions SELECT * FROM cur.resource_versions;"
		 " INSERT INTO cursors SELECT * FROM cur.cursors;",
		 f.db);
	CHECK(db_exec(db, sql) == SQLITE_OK);
	snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; PRAGMA user_version = 1; COMMIT; DETACH cur",
		 STORE_APPLICATION_ID);
	CHECK(db_exec(db, sql) == SQLITE_OK);
	sqlite3_close(db);
	/* The v1 store replaces the current one. */
	REQUIRE(rename(v1, f.db) == 0);
	unlink(f.wal);

	fx v = f;
	CHECK_INT(q_int(v.db, "PRAGMA user_version"), 1);
	CHECK_INT(q_int(v.db, "SELECT count(*) FROM sqlite_schema WHERE name = 'waiting'"), 0);
	/* RO refuses the old schema; RW upgrades it. */
	store *ro = NULL;
	char err[1024];
	CHECK_INT(store_open(&ro, f.db, f.key, STORE_RO, err, sizeof(err)), STORE_E_SCHEMA);
	s = fx_open(&f, STORE_RW);
	REQUIRE(s);
	CHECK_INT(q_int(v.db, "PRAGMA user_version"), store_schema_version());
	CHECK_INT(store_schema_version(), 4);
	names w;
	/* Every patient with data waits, in patient order (p2 was interned first). */
	CHECK_STR(waiting(s, srv, 0, &w), "p2,p1");
	seen x = { { 0 } };
	CHECK_INT(store_foreach_patient_resource(s, srv, "p2", seen_cb, &x), 0);
	CHECK_STR(x.buf, "Observation/o1@1[p2]={\"o\":1} Patient/p2@1[p2]={\"p\":2}");
	int changed = 0;
	CHECK_INT(oput(s, "P", "R1", "", "", 0, "{}", &changed), 0);
	CHECK_INT(changed, 1);
	store_close(s);
	/* And again: nothing more to do; RO opens now. */
	s = fx_open(&f, STORE_RO);
	REQUIRE(s);
	CHECK_STR(waiting(s, srv, 0, &w), "p2,p1");
	CHECK_INT(pstat(s, "P", "pending"), 1);
	store_close(s);
	fx_deinit(&f);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_waiting_order_and_clear),
		HARNESS_TEST(test_waiting_crash_safety),
		HARNESS_TEST(test_foreach_patient_resource),
		HARNESS_TEST(test_project_kv),
		HARNESS_TEST(test_keyed_hashes_known_answer),
		HARNESS_TEST(test_mrn_index),
		HARNESS_TEST(test_refusals),
		HARNESS_TEST(test_instances),
		HARNESS_TEST(test_outbox_put_and_gen),
		HARNESS_TEST(test_outbox_hold_release),
		HARNESS_TEST(test_outbox_held_sources),
		HARNESS_TEST(test_outbox_standing_hold),
		HARNESS_TEST(test_record_owners),
		HARNESS_TEST(test_outbox_due_order_and_next),
		HARNESS_TEST(test_outbox_status_json),
		HARNESS_TEST(test_provenance),
		HARNESS_TEST(test_review),
		HARNESS_TEST(test_reopen_persistence),
		HARNESS_TEST(test_read_only_beside_writer),
		HARNESS_TEST(test_no_phi_on_disk),
		HARNESS_TEST(test_tampering_detected),
		HARNESS_TEST(test_upgrade_from_v1),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
