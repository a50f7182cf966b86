/*
 * Tests for redcap/export.h: record id lists, the batch plan (splits,
 * checkpoints), the per-batch check, and the writer: a project's single
 * export answer, cut into batch answers at many places, must assemble into
 * exactly the single answer's bytes (CSV, JSON) or into an independently
 * built NDJSON reference.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redcap/export.h"
#include "redcap/internal.h"
#include "tests/harness.h"

/* A data value that must never show up in an error message. */
#define PHI "MRN-SECRET-4711"

/* Join a strv with '|' into a static buffer, for compact checks. */
static const char *joined(const redcap_strv *v)
{
	static char buf[4096];
	size_t n = 0;
	buf[0] = 0;
	for (size_t i = 0; i < v->n; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? "|" : "", v->v[i]);
	return buf;
}

/* ---- record ids --------------------------------------------------------- */

static void test_parse_ids_json(void)
{
	redcap_strv ids = REDCAP_STRV_NULL;
	redcap_error err = { 0 };
	/* A longitudinal project with a repeating form: several rows per record. */
	const char *s = "[{\"record_id\":\"1\",\"redcap_event_name\":\"base_arm_1\",\"redcap_repeat_instance\":\"\"},"
			"{\"record_id\":\"1\",\"redcap_event_name\":\"visit_arm_1\",\"redcap_repeat_instance\":\"1\"},"
			"{\"record_id\":\"10\",\"redcap_event_name\":\"base_arm_1\",\"redcap_repeat_instance\":\"\"},"
			"{\"record_id\":\"2\",\"redcap_event_name\":\"base_arm_1\",\"redcap_repeat_instance\":\"\"},"
			"{\"record_id\":\"1\",\"redcap_event_name\":\"arm_2\",\"redcap_repeat_instance\":\"\"},"
			"{\"record_id\":\"10\",\"redcap_event_name\":\"visit_arm_1\",\"redcap_repeat_instance\":\"\"}]";

	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, "record_id", &ids, &err), 0);
	CHECK_STR(joined(&ids), "1|10|2");
	/* The first member when no field is named. */
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, NULL, &ids, &err), 0);
	CHECK_STR(joined(&ids), "1|10|2");
	/* Another field named: its values. */
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, "redcap_event_name", &ids, &err), 0);
	CHECK_STR(joined(&ids), "base_arm_1|visit_arm_1|arm_2");

	/* Same record for REDCap: case and surrounding blanks; the first spelling is kept. */
	s = "[{\"id\":\"ab-1\"},{\"id\":\"AB-1\"},{\"id\":\" ab-1 \"},{\"id\":\"ab-12\"},{\"id\":7},{\"id\":\"7\"}]";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, "id", &ids, &err), 0);
	CHECK_STR(joined(&ids), "ab-1|ab-12|7");

	/* Empty exports. */
	CHECK_INT(redcap_parse_record_ids("[]", 2, REDCAP_FORMAT_JSON, "id", &ids, &err), 0);
	CHECK_INT(ids.n, 0);
	CHECK_INT(redcap_parse_record_ids(" [ ]\n", 5, REDCAP_FORMAT_JSON, "id", &ids, &err), 0);
	CHECK_INT(ids.n, 0);
	CHECK_INT(redcap_parse_record_ids("", 0, REDCAP_FORMAT_JSON, "id", &ids, &err), 0);
	CHECK_INT(ids.n, 0);

	/* Refusals, without quoting data; ids left empty. */
	REQUIRE(redcap_parse_record_ids("[{\"id\":\"x\"}]", 12, REDCAP_FORMAT_JSON, "id", &ids, &err) == 0);
	s = "[{\"id\":\"" PHI "\"},{\"id\":\"" PHI "\" nonsense}]";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, "id", &ids, &err), REDCAP_E_JSON);
	CHECK_INT(ids.n, 0);
	CHECK(strstr(err.msg, "line 1") != NULL);
	CHECK(strstr(err.msg, PHI) == NULL);
	CHECK(strstr(err.msg, "nonsense") == NULL);
	s = "{\"id\":\"1\"}";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, "id", &ids, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "JSON answer: not an array");
	s = "[{\"id\":\"1\"},[]]";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, "id", &ids, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "JSON answer[1]: not an object");
	s = "[{\"id\":\"1\"},{\"other\":\"" PHI "\"}]";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, "id", &ids, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "JSON answer[1]: no member id");
	s = "[{\"id\":\"1\"},{\"id\":\" \"}]";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, "id", &ids, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "JSON answer: element 1: empty record id");
	s = "[{\"id\":{\"x\":1}}]";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, "id", &ids, &err), REDCAP_E_SHAPE);
	s = "[{\"id\":\"a\\u0000b\"}]";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, "id", &ids, &err), REDCAP_E_SHAPE);
	s = "[{\"id\":\"1\",\"id\":\"2\"}]";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_JSON, "id", &ids, &err), REDCAP_E_JSON);
	CHECK_INT(redcap_parse_record_ids("[]", 2, (redcap_format)9, "id", &ids, &err), -EINVAL);
	CHECK_INT(redcap_parse_record_ids("[]", 2, REDCAP_FORMAT_JSON, "id", NULL, &err), -EINVAL);
	redcap_strv_deinit(&ids);
}

static void test_parse_ids_csv(void)
{
	redcap_strv ids = REDCAP_STRV_NULL;
	redcap_error err = { 0 };
	const char *s = "record_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance\n"
			"1,baseline_arm_1,,\n"
			"1,visit_arm_1,vitals,1\n"
			"1,visit_arm_1,vitals,2\n"
			"\"a,b\",baseline_arm_1,,\n"
			"\"say \"\"x\"\"\",baseline_arm_1,,\n"
			"A,B,baseline_arm_1,\n"  /* 4 cells: only the first is the id */
			"2,baseline_arm_1,,\n"
			"\"A,B\",visit_arm_1,,\n";

	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_CSV, "record_id", &ids, &err), 0);
	CHECK_STR(joined(&ids), "1|a,b|say \"x\"|A|2");
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_CSV, NULL, &ids, &err), 0);
	CHECK_STR(joined(&ids), "1|a,b|say \"x\"|A|2");

	/* The id column found by name, wherever it is; CRLF lines, a BOM, a trailing blank line. */
	s = "\xEF\xBB\xBF" "redcap_event_name,study_id\r\nev1,S-1\r\nev2,s-1\r\nev1,S-2\r\n\r\n";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_CSV, "study_id", &ids, &err), 0);
	CHECK_STR(joined(&ids), "S-1|S-2");

	/* Header only, empty. */
	CHECK_INT(redcap_parse_record_ids("record_id\n", 10, REDCAP_FORMAT_CSV, "record_id", &ids, &err), 0);
	CHECK_INT(ids.n, 0);
	CHECK_INT(redcap_parse_record_ids("", 0, REDCAP_FORMAT_CSV, "record_id", &ids, &err), 0);
	CHECK_INT(ids.n, 0);

	/* Refusals. */
	REQUIRE(redcap_parse_record_ids("r\nx\n", 4, REDCAP_FORMAT_CSV, "r", &ids, &err) == 0);
	s = "record_id,b\n1,2\n";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_CSV, "study_id", &ids, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "CSV answer: the header has no column study_id");
	CHECK_INT(ids.n, 0);
	s = "record_id,b\n1,2\n" PHI "\n";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_CSV, "record_id", &ids, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "CSV answer: line 3 has 1 cells, the header 2");
	CHECK_INT(err.line, 3);
	s = "record_id,b\n1,2\n\"" PHI ",2\n";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_CSV, "record_id", &ids, &err), REDCAP_E_CSV);
	CHECK(strstr(err.msg, PHI) == NULL);
	CHECK_INT(err.line, 3);
	s = "record_id,b\n1,2\n,2\n";
	CHECK_INT(redcap_parse_record_ids(s, strlen(s), REDCAP_FORMAT_CSV, "record_id", &ids, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "CSV answer: line 3: empty record id");
	redcap_strv_deinit(&ids);
}

/* ---- the plan ----------------------------------------------------------- */

/* The ranges a plan gives, "start+count" joined by ' ', doing each. */
static const char *run_plan(redcap_export_plan *p)
{
	static char buf[4096];
	size_t n = 0, start, count;
	buf[0] = 0;
	while (redcap_export_plan_next(p, &start, &count)) {
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%zu+%zu", n ? " " : "", start, count);
		redcap_export_plan_done(p);
	}
	return buf;
}

static void test_plan_normal(void)
{
	redcap_export_plan p;
	size_t start = 99, count = 99;

	CHECK_INT(redcap_export_plan_init(&p, 250, 100), 0);
	CHECK(!redcap_export_plan_finished(&p));
	CHECK(redcap_export_plan_next(&p, &start, &count));
	CHECK_INT(start, 0);
	CHECK_INT(count, 100);
	/* Asking again (a retry) gives the same range. */
	CHECK(redcap_export_plan_next(&p, &start, &count));
	CHECK_INT(start, 0);
	CHECK_INT(count, 100);
	CHECK_STR(run_plan(&p), "0+100 100+100 200+50");
	CHECK(redcap_export_plan_finished(&p));
	CHECK(!redcap_export_plan_next(&p, &start, &count));
	CHECK_INT(start, 250);
	CHECK_INT(count, 0);
	redcap_export_plan_done(&p); /* no-op */
	CHECK_INT(p.next, 250);
	CHECK_INT(redcap_export_plan_split(&p), -EINVAL);

	/* Exact multiple, batch larger than the list, batch 1, default. */
	redcap_export_plan_init(&p, 300, 100);
	CHECK_STR(run_plan(&p), "0+100 100+100 200+100");
	redcap_export_plan_init(&p, 7, 100);
	CHECK_STR(run_plan(&p), "0+7");
	redcap_export_plan_init(&p, 3, 1);
	CHECK_STR(run_plan(&p), "0+1 1+1 2+1");
	redcap_export_plan_init(&p, 250, 0);
	CHECK_INT(p.batch_size, REDCAP_EXPORT_BATCH_DEFAULT);
	CHECK_STR(run_plan(&p), "0+100 100+100 200+50");

	/* No ids: nothing to do. */
	CHECK_INT(redcap_export_plan_init(&p, 0, 100), 0);
	CHECK(redcap_export_plan_finished(&p));
	CHECK(!redcap_export_plan_next(&p, &start, &count));
	CHECK_INT(start, 0);
	CHECK_INT(count, 0);
	CHECK_INT(redcap_export_plan_split(&p), -EINVAL);
	CHECK_STR(run_plan(&p), "");
	CHECK_INT(redcap_export_plan_init(NULL, 1, 1), -EINVAL);
}

/* Run a plan to the end, splitting the ranges listed in oom ("start+count" once each). */
static const char *run_with_oom(redcap_export_plan *p, const char *const *oom, size_t n_oom)
{
	static char buf[4096];
	size_t n = 0, start, count;
	bool used[16] = { false };
	buf[0] = 0;
	while (redcap_export_plan_next(p, &start, &count)) {
		char r[64];
		snprintf(r, sizeof(r), "%zu+%zu", start, count);
		bool split = false;
		for (size_t i = 0; i < n_oom; i++) {
			if (!used[i] && strcmp(oom[i], r) == 0) {
				used[i] = split = true;
				break;
			}
		}
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s%s", n ? " " : "", r, split ? "!" : "");
		if (split) {
			if (redcap_export_plan_split(p) != 0)
				return "split failed";
		} else {
			redcap_export_plan_done(p);
		}
	}
	return buf;
}

static void test_plan_split(void)
{
	redcap_export_plan p;

	/* A full batch: first half, second half, then the normal size again. */
	redcap_export_plan_init(&p, 250, 100);
	const char *a[] = { "100+100" };
	CHECK_STR(run_with_oom(&p, a, 1), "0+100 100+100! 100+50 150+50 200+50");
	/* The first batch; the short last batch. */
	redcap_export_plan_init(&p, 250, 100);
	const char *b[] = { "0+100", "200+50" };
	CHECK_STR(run_with_oom(&p, b, 2), "0+100! 0+50 50+50 100+100 200+50! 200+25 225+25");
	/* Odd sizes: the first half is rounded up. */
	redcap_export_plan_init(&p, 237, 100);
	const char *c[] = { "200+37" };
	CHECK_STR(run_with_oom(&p, c, 1), "0+100 100+100 200+37! 200+19 219+18");
	redcap_export_plan_init(&p, 5, 5);
	const char *d[] = { "0+5", "0+3" };
	CHECK_STR(run_with_oom(&p, d, 2), "0+5! 0+3! 0+2 2+2 4+1");
	/* Split inside a split: the smaller size goes on to the grid line. */
	redcap_export_plan_init(&p, 300, 100);
	const char *e[] = { "100+100", "100+50" };
	CHECK_STR(run_with_oom(&p, e, 2), "0+100 100+100! 100+50! 100+25 125+25 150+25 175+25 200+100");
	/* The second half splits: its own halves, then normal. */
	redcap_export_plan_init(&p, 300, 100);
	const char *f[] = { "100+100", "150+50" };
	CHECK_STR(run_with_oom(&p, f, 2), "0+100 100+100! 100+50 150+50! 150+25 175+25 200+100");

	/* Down to one id that still fails: an error, the plan unchanged. */
	redcap_export_plan_init(&p, 4, 4);
	CHECK_INT(redcap_export_plan_split(&p), 0);
	CHECK_INT(redcap_export_plan_split(&p), 0);
	size_t start, count;
	CHECK(redcap_export_plan_next(&p, &start, &count));
	CHECK_INT(start, 0);
	CHECK_INT(count, 1);
	CHECK_INT(redcap_export_plan_split(&p), REDCAP_E_TOO_LARGE);
	CHECK(redcap_export_plan_next(&p, &start, &count));
	CHECK_INT(start, 0);
	CHECK_INT(count, 1);
	/* The last single id of a list. */
	redcap_export_plan_init(&p, 201, 100);
	redcap_export_plan_done(&p);
	redcap_export_plan_done(&p);
	CHECK(redcap_export_plan_next(&p, &start, &count));
	CHECK_INT(start, 200);
	CHECK_INT(count, 1);
	CHECK_INT(redcap_export_plan_split(&p), REDCAP_E_TOO_LARGE);
	CHECK_INT(redcap_export_plan_split(NULL), -EINVAL);
}

/* Deterministic pseudo-random numbers (xorshift). */
static uint32_t rnd_state = 2463534242u;
static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

/*
 * Random splits on random plans; after every step a plan restored from
 * (next, chunk) must give the same range, and the ranges done must cover
 * every id exactly once, in order.
 */
static void test_plan_restore(void)
{
	redcap_export_plan p, q;

	/* Mid-split by hand. */
	redcap_export_plan_init(&p, 250, 100);
	redcap_export_plan_done(&p);
	CHECK_INT(redcap_export_plan_split(&p), 0);
	redcap_export_plan_done(&p);
	uint64_t next = p.next, chunk = p.chunk;
	CHECK_INT(next, 150);
	CHECK_INT(chunk, 50);
	CHECK_INT(redcap_export_plan_restore(&q, 250, 100, next, chunk), 0);
	CHECK_STR(run_plan(&q), "150+50 200+50");
	/* Restored before the first half was done. */
	CHECK_INT(redcap_export_plan_restore(&q, 250, 100, 100, 50), 0);
	CHECK_STR(run_plan(&q), "100+50 150+50 200+50");
	/* Finished. */
	CHECK_INT(redcap_export_plan_restore(&q, 250, 100, 250, 100), 0);
	CHECK(redcap_export_plan_finished(&q));
	/* Wrong states; q unchanged. */
	redcap_export_plan_init(&q, 10, 5);
	CHECK_INT(redcap_export_plan_restore(&q, 250, 100, 251, 100), REDCAP_E_ARG);
	CHECK_INT(redcap_export_plan_restore(&q, 250, 100, 0, 0), REDCAP_E_ARG);
	CHECK_INT(redcap_export_plan_restore(&q, 250, 100, 0, 101), REDCAP_E_ARG);
	CHECK_INT(q.n_ids, 10);
	CHECK_INT(redcap_export_plan_restore(NULL, 250, 100, 0, 1), -EINVAL);

	for (int round = 0; round < 300; round++) {
		size_t n = rnd() % 400, batch = 1 + rnd() % 40, covered = 0, start, count, steps = 0;
		redcap_export_plan_init(&p, n, batch);
		while (redcap_export_plan_next(&p, &start, &count)) {
			REQUIRE(++steps < 100000);
			size_t s2, c2;
			REQUIRE(redcap_export_plan_restore(&q, n, batch, p.next, p.chunk) == 0);
			CHECK(redcap_export_plan_next(&q, &s2, &c2));
			CHECK_INT(s2, start);
			CHECK_INT(c2, count);
			CHECK(count >= 1 && count <= batch);
			CHECK(start / batch == (start + count - 1) / batch); /* never across a grid line */
			if (count > 1 && rnd() % 3 == 0) {
				CHECK_INT(redcap_export_plan_split(&p), 0);
				CHECK(redcap_export_plan_next(&p, &s2, &c2));
				CHECK_INT(s2, start);
				CHECK_INT(c2, count - count / 2);
				continue;
			}
			CHECK_INT(start, covered);
			covered += count;
			redcap_export_plan_done(&p);
			/* Back at a grid line the normal size resumes. */
			if (p.next % batch == 0)
				CHECK_INT(p.chunk, batch);
		}
		CHECK_INT(covered, n);
		CHECK(redcap_export_plan_finished(&p));
	}
}

/* ---- the batch check ---------------------------------------------------- */

static redcap_strv miss = REDCAP_STRV_NULL, unex = REDCAP_STRV_NULL;

/* redcap_export_check_batch() of the answer s (id field record_id) into miss and unex. */
static int check(redcap_format fmt, const char *s, const char *const *ids, size_t n)
{
	redcap_error err = { 0 };
	return redcap_export_check_batch(fmt, s, s ? strlen(s) : 0, "record_id", ids, n, &miss, &unex, &err);
}

static void test_check_batch(void)
{
	redcap_error err = { 0 };
	const char *asked[] = { "1", "2", " Ab-3", "4" };
	const char *s = "[{\"record_id\":\"1\",\"redcap_event_name\":\"e1\"},"
			"{\"record_id\":\"1\",\"redcap_event_name\":\"e2\"},"
			"{\"record_id\":\"2\",\"redcap_event_name\":\"e1\"},"
			"{\"record_id\":\"aB-3\",\"redcap_event_name\":\"e1\"},"
			"{\"record_id\":\"4 \",\"redcap_event_name\":\"e1\"}]";

	CHECK_INT(check(REDCAP_FORMAT_JSON, s, asked, 4), 0);
	CHECK_INT(miss.n, 0);
	CHECK_INT(unex.n, 0);

	/* Missing ones (as asked, in order) and unexpected ones (as returned, once each). */
	s = "[{\"record_id\":\"2\"},{\"record_id\":\"9\"},{\"record_id\":\"AB-3\"},{\"record_id\":\"9\"},"
	    "{\"record_id\":\"8\"}]";
	CHECK_INT(check(REDCAP_FORMAT_JSON, s, asked, 4), 0);
	CHECK_STR(joined(&miss), "1|4");
	CHECK_STR(joined(&unex), "9|8");

	/* An empty answer: all missing. */
	CHECK_INT(check(REDCAP_FORMAT_JSON, "[]", asked, 4), 0);
	CHECK_STR(joined(&miss), "1|2| Ab-3|4");
	CHECK_INT(unex.n, 0);
	CHECK_INT(check(REDCAP_FORMAT_CSV, "record_id\n", asked, 4), 0);
	CHECK_INT(miss.n, 4);

	/* CSV, with rows per event and quoted cells. */
	const char *asked2[] = { "x,1", "Y\"2", "z" };
	s = "record_id,redcap_event_name,notes\n"
	    "\"x,1\",e1,\"a\nb\"\n\"x,1\",e2,\n\"y\"\"2\",e1,\"c,d\"\n";
	CHECK_INT(check(REDCAP_FORMAT_CSV, s, asked2, 3), 0);
	CHECK_STR(joined(&miss), "z");
	CHECK_INT(unex.n, 0);
	/* Nothing asked, something came. */
	CHECK_INT(check(REDCAP_FORMAT_CSV, s, NULL, 0), 0);
	CHECK_INT(miss.n, 0);
	CHECK_STR(joined(&unex), "x,1|y\"2");

	/* An unreadable answer: the lists are empty. */
	CHECK_INT(redcap_export_check_batch(REDCAP_FORMAT_JSON, "[{", 2, "record_id", asked, 4, &miss, &unex, &err),
		  REDCAP_E_JSON);
	CHECK_INT(miss.n, 0);
	CHECK_INT(unex.n, 0);
	CHECK_INT(redcap_export_check_batch(REDCAP_FORMAT_JSON, "[{\"a\":\"1\"}]", 11, "record_id", asked, 4, &miss,
					    &unex, &err),
		  REDCAP_E_SHAPE);
	const char *bad[] = { "1", NULL };
	CHECK_INT(redcap_export_check_batch(REDCAP_FORMAT_JSON, "[]", 2, "record_id", bad, 2, &miss, &unex, &err),
		  -EINVAL);
	CHECK_INT(redcap_export_check_batch(REDCAP_FORMAT_JSON, "[]", 2, "record_id", NULL, 1, &miss, &unex, &err),
		  -EINVAL);
	CHECK_INT(redcap_export_check_batch(REDCAP_FORMAT_JSON, "[]", 2, "record_id", asked, 4, NULL, &unex, &err),
		  -EINVAL);

	/* Many ids: sorted lookups, not a scan per id. */
	enum { N = 20000 };
	char **many = malloc(N * sizeof(*many));
	REQUIRE(many);
	size_t cap = (size_t)N * 32 + 16, len = 0;
	char *ans = malloc(cap);
	REQUIRE(ans);
	len += (size_t)snprintf(ans + len, cap - len, "[");
	for (int i = 0; i < N; i++) {
		many[i] = malloc(16);
		snprintf(many[i], 16, "R%d", i);
		if (i != 1234)
			len += (size_t)snprintf(ans + len, cap - len, "%s{\"id\":\"r%d\"}", len > 1 ? "," : "",
						N - 1 - i);
	}
	len += (size_t)snprintf(ans + len, cap - len, "]");
	CHECK_INT(redcap_export_check_batch(REDCAP_FORMAT_JSON, ans, len, "id", (const char *const *)many, N, &miss,
					    &unex, &err),
		  0);
	CHECK_STR(joined(&miss), "R18765");
	CHECK_INT(unex.n, 0);
	for (int i = 0; i < N; i++)
		free(many[i]);
	free(many);
	free(ans);
	redcap_strv_deinit(&miss);
	redcap_strv_deinit(&unex);
}

/* ---- a generated project: one export answer, and the same cut in batches ---- */

#define N_REC 40
#define N_COLS 7

static const char *const header[N_COLS] = { "record_id", "redcap_event_name", "redcap_repeat_instrument",
					     "redcap_repeat_instance", "name", "notes", "cb___1" };

/* Values a CSV writer must quote and a JSON writer must escape. */
static const char *const tricky[] = {
	"plain",
	"Smith, John",
	"O\"Brien",
	"line1\nline2",
	"crlf\r\nend",
	"",
	" spaced ",
	"tab\there",
	"Zo\xC3\xAB / caf\xC3\xA9",
	"\"",
	",",
	"a\"\"b",
	"back\\slash",
	"\xE6\x97\xA5\xE6\x9C\xAC",
	"ends with newline\n",
	"\n",
};
#define N_TRICKY (sizeof(tricky) / sizeof(tricky[0]))

static int rows_of(int r)
{
	return 1 + (r * 7) % 4;
}

/* The cells of row k of record r. */
static void cells_of(int r, int k, char id[16], char inst[16], const char *cell[N_COLS])
{
	snprintf(id, 16, r % 5 == 3 ? "A-%d" : "%d", 1000 + r);
	snprintf(inst, 16, "%d", k);
	cell[0] = id;
	cell[1] = k % 2 ? "visit_arm_1" : "baseline_arm_1";
	cell[2] = k ? "vitals" : "";
	cell[3] = k ? inst : "";
	cell[4] = tricky[(size_t)(r * 3 + k) % N_TRICKY];
	cell[5] = tricky[(size_t)(r * 5 + k * 11 + 7) % N_TRICKY];
	cell[6] = (r + k) % 2 ? "1" : "0";
}

typedef struct sbuf {
	char *p;
	size_t len, cap;
} sbuf;

static void sb_addn(sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort();
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_add(sbuf *b, const char *s)
{
	sb_addn(b, s, strlen(s));
}

/* A cell as REDCap's (and the emulator's) CSV writer puts it. */
static void csv_cell(sbuf *b, const char *s)
{
	if (!strpbrk(s, "\",\r\n")) {
		sb_add(b, s);
		return;
	}
	sb_add(b, "\"");
	for (; *s; s++) {
		if (*s == '"')
			sb_add(b, "\"\"");
		else
			sb_addn(b, s, 1);
	}
	sb_add(b, "\"");
}

/* REDCap's format=csv answer for records [a, b). */
static char *gen_csv(int a, int b, size_t *len)
{
	sbuf o = { 0 };
	char id[16], inst[16];
	const char *cell[N_COLS];
	for (int c = 0; c < N_COLS; c++) {
		sb_add(&o, c ? "," : "");
		csv_cell(&o, header[c]);
	}
	sb_add(&o, "\n");
	for (int r = a; r < b; r++) {
		for (int k = 0; k < rows_of(r); k++) {
			cells_of(r, k, id, inst, cell);
			for (int c = 0; c < N_COLS; c++) {
				sb_add(&o, c ? "," : "");
				csv_cell(&o, cell[c]);
			}
			sb_add(&o, "\n");
		}
	}
	*len = o.len;
	return o.p;
}

/* REDCap's format=json answer for records [a, b): PHP's json_encode (compact, "\/", \uXXXX). */
static char *gen_json(int a, int b, size_t *len)
{
	char id[16], inst[16];
	const char *cell[N_COLS];
	json_t *arr = json_array();
	for (int r = a; r < b; r++) {
		for (int k = 0; k < rows_of(r); k++) {
			cells_of(r, k, id, inst, cell);
			json_t *o = json_object();
			for (int c = 0; c < N_COLS; c++)
				json_object_set_new(o, header[c], json_string(cell[c]));
			json_array_append_new(arr, o);
		}
	}
	char *s = json_dumps(arr, JSON_COMPACT | JSON_ESCAPE_SLASH | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
	json_decref(arr);
	/* PHP writes \u00e9 where Jansson writes \u00E9. */
	for (char *u = strstr(s, "\\u"); u; u = strstr(u + 2, "\\u"))
		for (int i = 2; i < 6; i++)
			u[i] = (char)(u[i] >= 'A' && u[i] <= 'F' ? u[i] + 32 : u[i]);
	*len = strlen(s);
	return s;
}

/* A JSON string as Jansson writes it without ENSURE_ASCII: UTF-8 as is. */
static void json_str(sbuf *b, const char *s)
{
	sb_add(b, "\"");
	for (; *s; s++) {
		switch (*s) {
		case '"': sb_add(b, "\\\""); break;
		case '\\': sb_add(b, "\\\\"); break;
		case '\n': sb_add(b, "\\n"); break;
		case '\r': sb_add(b, "\\r"); break;
		case '\t': sb_add(b, "\\t"); break;
		default: sb_addn(b, s, 1);
		}
	}
	sb_add(b, "\"");
}

/* The NDJSON of every record, built without Jansson. */
static char *gen_ndjson(size_t *len)
{
	sbuf o = { 0 };
	char id[16], inst[16];
	const char *cell[N_COLS];
	sb_add(&o, "");
	for (int r = 0; r < N_REC; r++) {
		for (int k = 0; k < rows_of(r); k++) {
			cells_of(r, k, id, inst, cell);
			sb_add(&o, "{");
			for (int c = 0; c < N_COLS; c++) {
				sb_add(&o, c ? "," : "");
				json_str(&o, header[c]);
				sb_add(&o, ":");
				json_str(&o, cell[c]);
			}
			sb_add(&o, "}\n");
		}
	}
	*len = o.len;
	return o.p;
}

static int total_rows(void)
{
	int n = 0;
	for (int r = 0; r < N_REC; r++)
		n += rows_of(r);
	return n;
}

typedef char *(*gen_fn)(int a, int b, size_t *len);

/*
 * Feed the batches [cuts[i], cuts[i+1]) to a fresh writer; return the
 * output (malloc'd). If resume_after >= 0, the writer is dropped after that
 * batch and a new one restored from its state and the output so far.
 */
static char *assemble(redcap_out_format fmt, gen_fn gen, const int *cuts, size_t n_cuts, int resume_after,
		      size_t *len, redcap_export_writer_state *end)
{
	redcap_export_writer w;
	redcap_buf out = REDCAP_BUF_NULL;
	redcap_error err = { 0 };
	sbuf file = { 0 };
	sb_add(&file, "");
	if (redcap_export_writer_init(&w, fmt, "record_id") != 0)
		return NULL;
	for (size_t i = 0; i + 1 < n_cuts; i++) {
		size_t n = 0;
		char *ans = gen(cuts[i], cuts[i + 1], &n);
		int rc = redcap_export_writer_batch(&w, ans, n, &out, &err);
		free(ans);
		if (rc) {
			fprintf(stderr, "batch %zu: %d %s\n", i, rc, err.msg);
			redcap_export_writer_deinit(&w);
			redcap_buf_deinit(&out);
			free(file.p);
			return NULL;
		}
		sb_addn(&file, out.p ? out.p : "", out.len);
		redcap_buf_clear(&out);
		if ((int)i == resume_after) {
			redcap_export_writer_state st;
			redcap_export_writer_save(&w, &st);
			if (st.bytes != file.len)
				fprintf(stderr, "state bytes %llu, file %zu\n", (unsigned long long)st.bytes, file.len);
			redcap_export_writer_deinit(&w);
			/* A crash after the checkpoint: the file may hold more; it is cut back. */
			sb_add(&file, "garbage after the checkpoint");
			file.len = (size_t)st.bytes;
			if (redcap_export_writer_restore(&w, fmt, "record_id", &st, file.p, file.len, &err) != 0) {
				fprintf(stderr, "restore: %s\n", err.msg);
				redcap_buf_deinit(&out);
				free(file.p);
				return NULL;
			}
		}
	}
	redcap_export_writer_finish(&w, &out);
	sb_addn(&file, out.p ? out.p : "", out.len);
	redcap_export_writer_save(&w, end);
	redcap_export_writer_deinit(&w);
	redcap_buf_deinit(&out);
	*len = file.len;
	return file.p;
}

static void test_writer_byte_identity(void)
{
	static const int one[] = { 0, N_REC };
	static const int each[] = { 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13,
				    14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
				    28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40 };
	static const int sevens[] = { 0, 7, 14, 21, 28, 35, 40 };
	/* With empty batches (a record range of nothing) first, inside and last. */
	static const int empties[] = { 0, 0, 3, 3, 3, 17, 18, 18, 33, 40, 40 };
	static const int halves[] = { 0, 20, 40 };
	const struct {
		const int *cuts;
		size_t n;
	} plans[] = {
		{ one, 2 }, { each, 41 }, { sevens, 7 }, { empties, 11 }, { halves, 3 },
	};
	const struct {
		redcap_out_format fmt;
		gen_fn gen;
	} fmts[] = { { REDCAP_OUT_CSV, gen_csv }, { REDCAP_OUT_JSON, gen_json }, { REDCAP_OUT_NDJSON, gen_json } };
	size_t want_len[3];
	char *want[3];
	want[0] = gen_csv(0, N_REC, &want_len[0]);
	want[1] = gen_json(0, N_REC, &want_len[1]);
	want[2] = gen_ndjson(&want_len[2]);
	/* The generator gives what a test needs: quoted commas, newlines and quotes, escapes. */
	CHECK(strstr(want[0], "\"Smith, John\"") && strstr(want[0], "\"O\"\"Brien\"") &&
	      strstr(want[0], "\"line1\nline2\"") && strstr(want[0], "\"crlf\r\nend\""));
	CHECK(strstr(want[1], "Zo\\u00eb \\/ caf\\u00e9") && strstr(want[2], "Zo\xC3\xAB / caf\xC3\xA9"));

	for (size_t f = 0; f < 3; f++) {
		for (size_t p = 0; p < sizeof(plans) / sizeof(plans[0]); p++) {
			for (int resume = -1; resume < (int)plans[p].n - 1; resume += (plans[p].n > 8 ? 7 : 1)) {
				size_t len = 0;
				redcap_export_writer_state st;
				char *got = assemble(fmts[f].fmt, fmts[f].gen, plans[p].cuts, plans[p].n, resume, &len,
						     &st);
				if (!got || len != want_len[f] || memcmp(got, want[f], len) != 0) {
					fprintf(stderr, "format %zu, plan %zu, resume %d: output differs\n", f, p,
						resume);
					CHECK(!"byte identity");
				}
				CHECK_INT(st.bytes, want_len[f]);
				CHECK_INT(st.rows, total_rows());
				CHECK_INT(st.records, N_REC);
				free(got);
			}
		}
	}
	for (size_t f = 0; f < 3; f++)
		free(want[f]);
}

/* ---- the writer on literal answers ------------------------------------------ */

/* One batch into w, appended to *file; returns the writer's code. */
static int feed(redcap_export_writer *w, sbuf *file, const char *ans, redcap_error *err)
{
	redcap_buf out = REDCAP_BUF_NULL;
	int rc = redcap_export_writer_batch(w, ans, strlen(ans), &out, err);
	if (rc == 0 && out.len)
		sb_addn(file, out.p, out.len);
	else if (rc)
		CHECK_INT(out.len, 0);
	redcap_buf_deinit(&out);
	return rc;
}

static const char *finish(redcap_export_writer *w, sbuf *file)
{
	redcap_buf out = REDCAP_BUF_NULL;
	CHECK_INT(redcap_export_writer_finish(w, &out), 0);
	sb_addn(file, out.p ? out.p : "", out.len);
	redcap_buf_deinit(&out);
	return file->p;
}

static void test_writer_csv_literal(void)
{
	/* What a single export answers: quoted commas, newlines, quotes, an empty last column. */
	const char *single = "record_id,redcap_event_name,name,notes\n"
			     "1,baseline_arm_1,\"Doe, Jane\",\"said \"\"hi\"\"\"\n"
			     "1,visit_arm_1,,\"two\nlines\"\n"
			     "2,baseline_arm_1,\"\"\"\",\n"
			     "3,baseline_arm_1,x,\"\r\n\"\n";
	const char *b1 = "record_id,redcap_event_name,name,notes\n"
			 "1,baseline_arm_1,\"Doe, Jane\",\"said \"\"hi\"\"\"\n"
			 "1,visit_arm_1,,\"two\nlines\"\n";
	const char *b2 = "record_id,redcap_event_name,name,notes\n"
			 "2,baseline_arm_1,\"\"\"\",\n";
	const char *b3 = "record_id,redcap_event_name,name,notes\n"
			 "3,baseline_arm_1,x,\"\r\n\"\n";
	redcap_export_writer w;
	redcap_error err = { 0 };
	sbuf file = { 0 };
	sb_add(&file, "");

	REQUIRE(redcap_export_writer_init(&w, REDCAP_OUT_CSV, "record_id") == 0);
	CHECK_INT(feed(&w, &file, b1, &err), 0);
	CHECK_INT(w.rows, 2);
	CHECK_INT(w.records, 1);
	CHECK_INT(feed(&w, &file, "record_id,redcap_event_name,name,notes\n", &err), 0); /* header only */
	CHECK_INT(feed(&w, &file, "", &err), 0);                                          /* empty */
	CHECK_INT(feed(&w, &file, b2, &err), 0);
	CHECK_INT(feed(&w, &file, b3, &err), 0);
	CHECK_STR(finish(&w, &file), single);
	CHECK_INT(w.rows, 4);
	CHECK_INT(w.records, 3);
	CHECK_INT(w.bytes, strlen(single));
	CHECK_INT(feed(&w, &file, b1, &err), -EINVAL); /* finished */
	redcap_export_writer_deinit(&w);

	/* The header differs: refused, nothing written, the writer goes on. */
	file.len = 0;
	REQUIRE(redcap_export_writer_init(&w, REDCAP_OUT_CSV, "record_id") == 0);
	CHECK_INT(feed(&w, &file, b1, &err), 0);
	uint64_t bytes = w.bytes;
	CHECK_INT(feed(&w, &file, "record_id,redcap_event_name,name\n2,baseline_arm_1,x\n", &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "CSV answer: the header differs from the first batch's");
	CHECK_INT(feed(&w, &file, "record_id,redcap_event_name,name,NOTES\n", &err), REDCAP_E_SHAPE);
	CHECK_INT(feed(&w, &file, "\xEF\xBB\xBFrecord_id,redcap_event_name,name,notes\n", &err), REDCAP_E_SHAPE);
	/* A row cut short (the answer was truncated): refused. */
	CHECK_INT(feed(&w, &file, "record_id,redcap_event_name,name,notes\n2,baseline_arm_1,\"" PHI, &err),
		  REDCAP_E_CSV);
	CHECK(strstr(err.msg, PHI) == NULL);
	CHECK_INT(feed(&w, &file, "record_id,redcap_event_name,name,notes\n2,baseline_arm_1\n", &err), REDCAP_E_SHAPE);
	CHECK_INT(w.bytes, bytes);
	CHECK_INT(w.rows, 2);
	CHECK_INT(file.len, bytes);
	/* The same header with CRLF is the same header. */
	CHECK_INT(feed(&w, &file, "record_id,redcap_event_name,name,notes\r\n2,baseline_arm_1,\"\"\"\",\n", &err), 0);
	/* A last row without a line end gets one, so the next batch does not run into it. */
	CHECK_INT(feed(&w, &file, "record_id,redcap_event_name,name,notes\n3,baseline_arm_1,x,\"\r\n\"", &err), 0);
	CHECK_INT(feed(&w, &file, "record_id,redcap_event_name,name,notes\n4,e,y,z\n", &err), 0);
	CHECK_STR(finish(&w, &file), "record_id,redcap_event_name,name,notes\n"
				     "1,baseline_arm_1,\"Doe, Jane\",\"said \"\"hi\"\"\"\n"
				     "1,visit_arm_1,,\"two\nlines\"\n"
				     "2,baseline_arm_1,\"\"\"\",\n"
				     "3,baseline_arm_1,x,\"\r\n\"\n"
				     "4,e,y,z\n");
	CHECK_INT(w.records, 4);
	redcap_export_writer_deinit(&w);

	/* The first header seen is the one, whatever came before; CRLF and a BOM kept as they are. */
	file.len = 0;
	REQUIRE(redcap_export_writer_init(&w, REDCAP_OUT_CSV, NULL) == 0);
	CHECK_INT(feed(&w, &file, "", &err), 0);
	CHECK_INT(w.bytes, 0);
	CHECK_INT(feed(&w, &file, "\xEF\xBB\xBFid,v\r\n", &err), 0);
	CHECK_INT(feed(&w, &file, "\xEF\xBB\xBFid,v\r\na,1\r\nA,2\r\n\r\nb,3\r\n", &err), 0);
	CHECK_STR(finish(&w, &file), "\xEF\xBB\xBFid,v\r\na,1\r\nA,2\r\n\r\nb,3\r\n");
	CHECK_INT(w.rows, 3);    /* the blank line is not a row */
	CHECK_INT(w.records, 2); /* a and A are one record */
	redcap_export_writer_deinit(&w);

	/* A header alone without a line end: written with one. */
	file.len = 0;
	REQUIRE(redcap_export_writer_init(&w, REDCAP_OUT_CSV, "id") == 0);
	CHECK_INT(feed(&w, &file, "id,v", &err), 0);
	CHECK_INT(feed(&w, &file, "id,v\nq,1\n", &err), 0);
	CHECK_STR(finish(&w, &file), "id,v\nq,1\n");
	redcap_export_writer_deinit(&w);

	/* No header ever: an empty file. The id column must exist. */
	file.len = 0;
	REQUIRE(redcap_export_writer_init(&w, REDCAP_OUT_CSV, "id") == 0);
	CHECK_INT(feed(&w, &file, "", &err), 0);
	CHECK_INT(feed(&w, &file, "x,v\nq,1\n", &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "CSV answer: the header has no column id");
	CHECK_STR(finish(&w, &file), "");
	CHECK_INT(w.bytes, 0);
	CHECK_INT(w.header_len, 0);
	redcap_export_writer_deinit(&w);
	free(file.p);
}

static void test_writer_json_literal(void)
{
	redcap_export_writer w;
	redcap_error err = { 0 };
	sbuf file = { 0 };
	const char *b1 = "[{\"record_id\":\"1\",\"v\":\"a\\/b\"},{\"record_id\":\"1\",\"v\":\"\\u00e9\"}]";
	const char *b2 = " [ {\"record_id\":\"2\",\"v\":\"[]\"} ]\n";
	const char *b3 = "[{\"record_id\":\"3\",\"v\":\"x\\ny\"},{\"record_id\":\"4\",\"v\":\"\\u0000\"}]";
	sb_add(&file, "");

	REQUIRE(redcap_export_writer_init(&w, REDCAP_OUT_JSON, "record_id") == 0);
	CHECK_INT(feed(&w, &file, "[]", &err), 0);
	CHECK_INT(feed(&w, &file, b1, &err), 0);
	CHECK_INT(feed(&w, &file, "", &err), 0);
	CHECK_INT(feed(&w, &file, b2, &err), 0);
	CHECK_INT(feed(&w, &file, " [ ] ", &err), 0);
	/* Refused: nothing written. */
	CHECK_INT(feed(&w, &file, "[{\"record_id\":\"" PHI "\"} oops]", &err), REDCAP_E_JSON);
	CHECK(strstr(err.msg, PHI) == NULL && strstr(err.msg, "oops") == NULL);
	CHECK_INT(feed(&w, &file, "{\"record_id\":\"5\"}", &err), REDCAP_E_SHAPE);
	CHECK_INT(feed(&w, &file, "[{\"record_id\":\"5\"},\"x\"]", &err), REDCAP_E_SHAPE);
	CHECK_INT(feed(&w, &file, "[{\"x\":\"5\"}]", &err), REDCAP_E_SHAPE);
	CHECK_INT(feed(&w, &file, "[{\"record_id\":\"5\",\"record_id\":\"6\"}]", &err), REDCAP_E_JSON);
	CHECK_INT(feed(&w, &file, b3, &err), 0);
	CHECK_STR(finish(&w, &file), "[{\"record_id\":\"1\",\"v\":\"a\\/b\"},{\"record_id\":\"1\",\"v\":\"\\u00e9\"},"
				     "{\"record_id\":\"2\",\"v\":\"[]\"},"
				     "{\"record_id\":\"3\",\"v\":\"x\\ny\"},{\"record_id\":\"4\",\"v\":\"\\u0000\"}]");
	CHECK_INT(w.rows, 5);
	CHECK_INT(w.records, 4);
	CHECK_INT(w.bytes, file.len);
	redcap_export_writer_deinit(&w);

	/* Empty exports: "[]" with or without batches. */
	file.len = 0;
	REQUIRE(redcap_export_writer_init(&w, REDCAP_OUT_JSON, "record_id") == 0);
	CHECK_STR(finish(&w, &file), "[]");
	redcap_export_writer_deinit(&w);
	file.len = 0;
	REQUIRE(redcap_export_writer_init(&w, REDCAP_OUT_JSON, "record_id") == 0);
	CHECK_INT(feed(&w, &file, "[]", &err), 0);
	CHECK_INT(feed(&w, &file, "[]", &err), 0);
	CHECK_STR(finish(&w, &file), "[]");
	redcap_export_writer_deinit(&w);

	/* NDJSON: compact, keys in order, "\/" and \u escapes decoded, "\n" after each. */
	file.len = 0;
	REQUIRE(redcap_export_writer_init(&w, REDCAP_OUT_NDJSON, "record_id") == 0);
	CHECK_INT(feed(&w, &file, b1, &err), 0);
	CHECK_INT(feed(&w, &file, "[]", &err), 0);
	CHECK_INT(feed(&w, &file, "[ {\"record_id\" : \"2\", \"z\":\"1\", \"a\":\"2\"} ]", &err), 0);
	CHECK_INT(feed(&w, &file, b3, &err), 0);
	CHECK_INT(feed(&w, &file, "[1]", &err), REDCAP_E_SHAPE);
	CHECK_STR(finish(&w, &file), "{\"record_id\":\"1\",\"v\":\"a/b\"}\n"
				     "{\"record_id\":\"1\",\"v\":\"\xC3\xA9\"}\n"
				     "{\"record_id\":\"2\",\"z\":\"1\",\"a\":\"2\"}\n"
				     "{\"record_id\":\"3\",\"v\":\"x\\ny\"}\n"
				     "{\"record_id\":\"4\",\"v\":\"\\u0000\"}\n");
	CHECK_INT(w.rows, 5);
	CHECK_INT(w.records, 4);
	redcap_export_writer_deinit(&w);
	file.len = 0;
	REQUIRE(redcap_export_writer_init(&w, REDCAP_OUT_NDJSON, NULL) == 0);
	CHECK_INT(feed(&w, &file, "[]", &err), 0);
	CHECK_STR(finish(&w, &file), "");
	CHECK_INT(w.bytes, 0);
	redcap_export_writer_deinit(&w);

	CHECK_INT(redcap_export_writer_init(&w, (redcap_out_format)7, NULL), -EINVAL);
	CHECK_STR(redcap_out_format_name(REDCAP_OUT_NDJSON), "ndjson");
	CHECK(redcap_out_format_name((redcap_out_format)3) == NULL);
	CHECK_INT(redcap_out_answer_format(REDCAP_OUT_CSV), REDCAP_FORMAT_CSV);
	CHECK_INT(redcap_out_answer_format(REDCAP_OUT_NDJSON), REDCAP_FORMAT_JSON);
	free(file.p);
}

static void test_writer_restore_checks(void)
{
	redcap_export_writer w = REDCAP_EXPORT_WRITER_NULL;
	redcap_error err = { 0 };
	const char *head = "record_id,v\n1,a\n";
	redcap_export_writer_state st = { .bytes = 16, .rows = 1, .records = 1, .header_len = 12 };

	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_CSV, "record_id", &st, head, 16, &err), 0);
	CHECK_INT(w.header_cells, 2);
	sbuf file = { 0 };
	sb_add(&file, head);
	CHECK_INT(feed(&w, &file, "record_id,v\n2,b\n", &err), 0);
	CHECK_INT(feed(&w, &file, "record_id,w\n3,c\n", &err), REDCAP_E_SHAPE);
	CHECK_STR(finish(&w, &file), "record_id,v\n1,a\n2,b\n");
	CHECK_INT(w.rows, 2);

	/* States that do not fit: refused, the writer empty. */
	st.header_len = 11; /* not at the line end */
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_CSV, "record_id", &st, head, 16, &err), REDCAP_E_ARG);
	CHECK(w.header == NULL && w.id_field == NULL);
	st.header_len = 16; /* two lines */
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_CSV, "record_id", &st, head, 16, &err), REDCAP_E_ARG);
	st.header_len = 12;
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_CSV, "study_id", &st, head, 16, &err), REDCAP_E_ARG);
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_CSV, "record_id", &st, head, 5, &err), REDCAP_E_ARG);
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_CSV, "record_id", &st, NULL, 0, &err), REDCAP_E_ARG);
	st = (redcap_export_writer_state){ .bytes = 16, .rows = 1, .records = 1, .header_len = 0 };
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_CSV, "record_id", &st, head, 16, &err), REDCAP_E_ARG);
	st = (redcap_export_writer_state){ .bytes = 16, .rows = 1, .records = 2, .header_len = 12 };
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_CSV, "record_id", &st, head, 16, &err), REDCAP_E_ARG);
	st = (redcap_export_writer_state){ .bytes = 0, .rows = 1, .records = 1 };
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_JSON, "record_id", &st, NULL, 0, &err), REDCAP_E_ARG);
	st = (redcap_export_writer_state){ .bytes = 10, .rows = 1, .records = 1, .header_len = 3 };
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_JSON, "record_id", &st, NULL, 0, &err), REDCAP_E_ARG);
	st = (redcap_export_writer_state){ .bytes = 10, .rows = 0, .records = 0 };
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_NDJSON, "record_id", &st, NULL, 0, &err), REDCAP_E_ARG);
	CHECK_STR(err.msg, "checkpoint: the writer's state does not fit: NDJSON output without rows");

	/* JSON: "[" written, no element yet: the next one comes without a comma. */
	st = (redcap_export_writer_state){ .bytes = 1 };
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_JSON, NULL, &st, NULL, 0, &err), 0);
	file.len = 0;
	sb_add(&file, "[");
	CHECK_INT(feed(&w, &file, "[{\"a\":\"1\"}]", &err), 0);
	CHECK_STR(finish(&w, &file), "[{\"a\":\"1\"}]");
	/* Nothing written at all. */
	st = (redcap_export_writer_state){ 0 };
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_JSON, NULL, &st, NULL, 0, &err), 0);
	file.len = 0;
	CHECK_STR(finish(&w, &file), "[]");
	CHECK_INT(redcap_export_writer_restore(&w, REDCAP_OUT_JSON, NULL, NULL, NULL, 0, &err), -EINVAL);
	redcap_export_writer_deinit(&w);
	redcap_export_writer_deinit(&w); /* idempotent */
	free(file.p);
}

static void test_buf(void)
{
	redcap_buf b = REDCAP_BUF_NULL;
	redcap_export_writer w;
	REQUIRE(redcap_export_writer_init(&w, REDCAP_OUT_NDJSON, NULL) == 0);
	/* The writer appends: a caller may gather several batches before writing. */
	CHECK_INT(redcap_export_writer_batch(&w, "[{\"a\":\"1\"}]", 11, &b, NULL), 0);
	CHECK_INT(redcap_export_writer_batch(&w, "[{\"a\":\"2\"}]", 11, &b, NULL), 0);
	CHECK_STR(b.p, "{\"a\":\"1\"}\n{\"a\":\"2\"}\n");
	size_t cap = b.cap;
	char *p = b.p;
	redcap_buf_clear(&b);
	CHECK_INT(b.len, 0);
	CHECK(b.p == p && b.cap == cap && b.p[0] == 0);
	CHECK_INT(redcap_export_writer_batch(&w, "[", 1, &b, NULL), REDCAP_E_JSON);
	CHECK_INT(redcap_export_writer_batch(&w, NULL, 1, &b, NULL), -EINVAL);
	CHECK_INT(redcap_export_writer_batch(&w, "[]", 2, NULL, NULL), -EINVAL);
	CHECK_INT(w.bytes, 20);
	redcap_buf_deinit(&b);
	redcap_buf_deinit(&b);
	CHECK(b.p == NULL && b.len == 0);
	redcap_export_writer_deinit(&w);
}

/* ---- the one-pass JSON path against Jansson's ------------------------------- */

typedef struct path_result {
	int wrc, crc;                 /* writer and check return codes */
	char *out;                    /* writer output */
	size_t out_len;
	uint64_t rows, records;
	char *missing;                /* the missing ids, joined */
} path_result;

static void path_run(bool fast, redcap_out_format fmt, const char *in, size_t len, const char *const *asked,
		     size_t n_asked, path_result *r)
{
	rc_export_json_fast = fast;
	redcap_export_writer w = REDCAP_EXPORT_WRITER_NULL;
	redcap_buf out = REDCAP_BUF_NULL;
	redcap_error err = { 0 };
	redcap_strv missing = REDCAP_STRV_NULL, unexpected = REDCAP_STRV_NULL;
	REQUIRE(redcap_export_writer_init(&w, fmt, "record_id") == 0);
	r->wrc = redcap_export_writer_batch(&w, in, len, &out, &err);
	redcap_export_writer_state st;
	redcap_export_writer_save(&w, &st);
	r->rows = st.rows;
	r->records = st.records;
	r->out = malloc(out.len + 1);
	memcpy(r->out, out.p ? out.p : "", out.len);
	r->out_len = out.len;
	r->crc = redcap_export_check_batch(REDCAP_FORMAT_JSON, in, len, "record_id", asked, n_asked, &missing,
					   &unexpected, &err);
	sbuf m = { 0 };
	sb_add(&m, "");
	for (size_t i = 0; i < missing.n; i++) {
		sb_add(&m, missing.v[i]);
		sb_add(&m, "|");
	}
	sb_add(&m, "/");
	for (size_t i = 0; i < unexpected.n; i++) {
		sb_add(&m, unexpected.v[i]);
		sb_add(&m, "|");
	}
	r->missing = m.p;
	redcap_strv_deinit(&missing);
	redcap_strv_deinit(&unexpected);
	redcap_buf_deinit(&out);
	redcap_export_writer_deinit(&w);
	rc_export_json_fast = true;
}

static void path_free(path_result *r)
{
	free(r->out);
	free(r->missing);
}

/* Both paths, every format: the same codes, bytes, counts and id checks. */
static int same_both_ways(const char *in, size_t len, const char *what)
{
	static const char *const asked[] = { "1", "2", "caf\xC3\xA9", "x/y", "9" };
	int bad = 0;
	for (int f = REDCAP_OUT_JSON; f <= REDCAP_OUT_NDJSON; f++) {
		path_result a = { 0 }, b = { 0 };
		path_run(true, (redcap_out_format)f, in, len, asked, 5, &a);
		path_run(false, (redcap_out_format)f, in, len, asked, 5, &b);
		if (a.wrc != b.wrc || a.crc != b.crc || (a.wrc == 0 && (a.out_len != b.out_len ||
		    memcmp(a.out, b.out, a.out_len) != 0 || a.rows != b.rows || a.records != b.records)) ||
		    (a.crc == 0 && strcmp(a.missing, b.missing) != 0)) {
			fprintf(stderr, "%s (format %d): fast %d/%d rows %llu, jansson %d/%d rows %llu\n  fast:    %.*s\n"
				"  jansson: %.*s\n", what, f, a.wrc, a.crc, (unsigned long long)a.rows, b.wrc, b.crc,
				(unsigned long long)b.rows, (int)(a.out_len < 300 ? a.out_len : 300), a.out,
				(int)(b.out_len < 300 ? b.out_len : 300), b.out);
			bad = 1;
		}
		path_free(&a);
		path_free(&b);
	}
	return bad;
}

static void test_json_fast_path_equals_jansson(void)
{
	static const char *const cases[] = {
		"[]", " [ ] ", "[\n]\n",
		"[{\"record_id\":\"1\",\"a\":\"x\"},{\"record_id\":\"2\",\"a\":\"y\"}]",
		" [ {\"record_id\" : \"1\" , \"a\" : \"x\" } ,\n {\"record_id\":\"2\",\"a\":\"\"} ] \r\n",
		/* escapes: PHP's \/ and \u00e9, controls, quotes */
		"[{\"record_id\":\"caf\\u00e9\",\"a\":\"x\\/y \\\"q\\\" \\\\ \\b\\f\\n\\r\\t \\u0001 \\u001F \\u007f\"}]",
		"[{\"record_id\":\"x\\/y\",\"a\":\"\\u2028\"},{\"record_id\":\"1\",\"a\":\"caf\xC3\xA9 \xF0\x9F\x98\x80\"}]",
		/* what the fast path leaves to Jansson */
		"[{\"record_id\":1,\"a\":\"x\"}]", "[{\"record_id\":\"1\",\"a\":null}]", "[{\"record_id\":\"1\",\"a\":[1]}]",
		"[{\"record_id\":\"1\",\"a\":\"x\",\"a\":\"y\"}]", "[{\"a\":\"x\",\"record_id\":\"1\"},{\"record_id\":\"2\",\"a\":\"y\"}]",
		"[{\"record_id\":\"1\",\"a\":\"x\"},{\"record_id\":\"2\"}]", "[{\"record_id\":\"1\"},{\"record_id\":\"2\",\"a\":\"y\"}]",
		"[{\"record_id\":\"\\ud83d\\ude00\",\"a\":\"x\"}]", "[{\"record_id\":\"\\ud83d\",\"a\":\"x\"}]",
		"[{\"rec\\u006frd_id\":\"1\"}]", "[{}]", "[{\"a\":\"x\"}]", "[{\"record_id\":\"\"}]", "[{\"record_id\":\"  \"}]",
		"[{\"record_id\":\"a\\u0000b\"}]", "[{\"record_id\":\"1\",\"a\":\"\\u0000\"}]",
		"[{\"record_id\":\"1\"}", "[{\"record_id\":\"1\"}]x", "[{\"record_id\":\"1\"},]", "[,{\"record_id\":\"1\"}]",
		"{\"record_id\":\"1\"}", "\"x\"", "[{\"record_id\":\"1\" \"a\":\"x\"}]", "[{\"record_id\":\"1\",}]",
		"[{\"record_id\":\"\xC3\x28\"}]", "[{\"record_id\":\"\xED\xA0\x80\"}]", "[{\"record_id\":\"\xF4\x90\x80\x80\"}]",
		"[{\"record_id\":\"\xE0\x80\xAF\"}]", "[{\"record_id\":\"a\tb\"}]", "[{\"record_id\":\"1\\x\"}]",
		"[{\"record_id\":\"1\\u12\"}]", "\xEF\xBB\xBF[{\"record_id\":\"1\"}]", "[{\"record_id\":\"1\"}]\n\n  ",
		"[{\"record_id\":\"1\",\"a\":\"x\"},{\"record_id\":\"1\",\"a\":\"y\"},{\"record_id\":\"9\",\"a\":\"z\"}]",
		"[{\"record_id\":\"1\",\"a\":true}]", "[{\"record_id\":\"1\",\"a\":\"x\"} {\"record_id\":\"2\",\"a\":\"y\"}]",
	};
	int bad = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char what[32];
		snprintf(what, sizeof(what), "case %zu", i);
		bad |= same_both_ways(cases[i], strlen(cases[i]), what);
	}
	/* The generated REDCap answer, and thousands of random corruptions of it. */
	size_t len = 0;
	char *good = gen_json(0, 12, &len);
	unsigned long used = rc_export_json_fast_used;
	bad |= same_both_ways(good, len, "generated answer");
	/* REDCap's shape is what the fast path is for: it decided (writer and check, two formats). */
	CHECK_INT(rc_export_json_fast_used - used, 4);
	char *m = malloc(len);
	uint64_t rng = 0x9E3779B97F4A7C15ULL;
	static const char bytes[] = "{}[],:\"\\ u0\x80\xC3\xFF\n1";
	/* FRB_TEST_QUICK (the valgrind run): fewer of them. */
	int corruptions = getenv("FRB_TEST_QUICK") ? 300 : 3000;
	for (int it = 0; it < corruptions && !bad; it++) {
		memcpy(m, good, len);
		size_t n = len;
		for (int k = 0; k < 1 + it % 3; k++) {
			rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
			size_t at = (size_t)(rng >> 33) % n;
			unsigned char c = (unsigned char)bytes[(rng >> 20) % (sizeof(bytes) - 1)];
			if ((rng >> 8) % 4 == 0 && n > 1) {
				memmove(m + at, m + at + 1, n - at - 1); /* delete */
				n--;
			} else {
				m[at] = (char)c;
			}
		}
		char what[32];
		snprintf(what, sizeof(what), "corruption %d", it);
		bad |= same_both_ways(m, n, what);
	}
	free(m);
	free(good);
	CHECK(!bad);
}

static const struct harness_test tests[] = {
	HARNESS_TEST(test_parse_ids_json),	 HARNESS_TEST(test_parse_ids_csv),
	HARNESS_TEST(test_plan_normal),		 HARNESS_TEST(test_plan_split),
	HARNESS_TEST(test_plan_restore),	 HARNESS_TEST(test_check_batch),
	HARNESS_TEST(test_writer_byte_identity), HARNESS_TEST(test_writer_csv_literal),
	HARNESS_TEST(test_writer_json_literal),	 HARNESS_TEST(test_writer_restore_checks),
	HARNESS_TEST(test_buf), HARNESS_TEST(test_json_fast_path_equals_jansson),
};


int main(int argc, char **argv)
{
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
