/*
 * Tests for answer classification (status x body, REDCap's exact texts in
 * JSON, CSV, XML and plain bodies), per-value error lines, the PHI-free
 * description, and the answer parsers.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redcap/redcap.h"
#include "tests/harness.h"

#define OFFLINE_PROJECT "This project is currently OFFLINE and is not accessible to normal users."
#define OFFLINE_SYSTEM "REDCap is currently offline. Please return at another time. We apologize for any inconvenience."
#define OOM \
	"REDCap ran out of server memory. The request cannot be processed. Please try importing/exporting a smaller amount of data."
#define BANNED "Your IP address (10.1.2.3) has been banned due to suspected abuse."
#define NOAUTH "You do not have permissions to use the API"

struct classify_case {
	int status;
	const char *body;
	redcap_class cls;
	const char *message;   /* NULL: expect NULL */
	size_t n_errors;
};

static void test_classify(void)
{
	static const struct classify_case cases[] = {
		{ 200, "{\"count\": 3}", REDCAP_OK, NULL, 0 },
		{ 201, "", REDCAP_OK, NULL, 0 },
		/* A 200 body is data, even if it quotes an error text. */
		{ 200, "[{\"note\":\"" OOM "\"}]", REDCAP_OK, NULL, 0 },
		{ 403, "{\"error\":\"" NOAUTH "\"}", REDCAP_AUTH, NOAUTH, 0 },
		{ 403, "{\"error\":\"You do not have API Import/Update privileges\"}", REDCAP_AUTH,
		  "You do not have API Import/Update privileges", 0 },
		{ 401, "", REDCAP_AUTH, "", 0 },
		{ 400, "{\"error\":\"" OFFLINE_PROJECT "\"}", REDCAP_RETRY, OFFLINE_PROJECT, 0 },
		{ 400, "{\"error\":\"" OFFLINE_SYSTEM "\"}", REDCAP_RETRY, OFFLINE_SYSTEM, 0 },
		{ 500, "{\"error\":\"" OOM "\"}", REDCAP_SPLIT, OOM, 0 },
		{ 413, "<html>Request Entity Too Large</html>", REDCAP_SPLIT, "<html>Request Entity Too Large</html>", 0 },
		{ 429, "{\"error\":\"" BANNED "\"}", REDCAP_BANNED, BANNED, 0 },
		{ 403, "{\"error\":\"" BANNED "\"}", REDCAP_BANNED, BANNED, 0 },
		/* Any 429 is a ban: REDCap sends it only when it bans; retrying would hammer a server that
		 * already counts us. The body's message is kept. */
		{ 429, "Too Many Requests", REDCAP_BANNED, "Too Many Requests", 0 },
		{ 429, "", REDCAP_BANNED, "", 0 },
		{ 429, BANNED, REDCAP_BANNED, BANNED, 0 },  /* REDCap's own: plain text */
		{ 429, "{\"error\":\"Rate limit exceeded\"}", REDCAP_BANNED, "Rate limit exceeded", 0 },
		{ 408, "", REDCAP_RETRY, "", 0 },
		{ 500, "Internal Server Error", REDCAP_RETRY, "Internal Server Error", 0 },
		{ 502, "<html><body>Bad Gateway</body></html>", REDCAP_RETRY, "<html><body>Bad Gateway</body></html>", 0 },
		{ 503, "  \n", REDCAP_RETRY, "", 0 },
		{ 504, "", REDCAP_RETRY, "", 0 },
		{ 501, "{\"error\":\"The requested method is not implemented.\"}", REDCAP_BAD_REQUEST,
		  "The requested method is not implemented.", 0 },
		{ 404, "Not Found", REDCAP_BAD_REQUEST, "Not Found", 0 },
		{ 302, "", REDCAP_BAD_REQUEST, "", 0 },
		{ 100, "", REDCAP_BAD_REQUEST, "", 0 },
		{ 0, "", REDCAP_BAD_REQUEST, "", 0 },
		{ 400, "{\"error\":\"The value of the parameter \\\"content\\\" is not valid\"}", REDCAP_BAD_REQUEST,
		  "The value of the parameter \"content\" is not valid", 0 },
		{ 400, "{\"error\":\"The following fields were not found in the project as real data fields: a, b\"}",
		  REDCAP_BAD_REQUEST, "The following fields were not found in the project as real data fields: a, b", 0 },
		/* Per-value errors. */
		{ 400,
		  "{\"error\":\"\\\"1\\\",\\\"age\\\",\\\"abc\\\",\\\"The value you provided could not be validated "
		  "because it does not follow the expected format. Please try again.\\\"\\n\\\"2\\\",\\\"sex\\\",\\\"9\\\","
		  "\\\"The value is not a valid category for sex\\\"\"}",
		  REDCAP_BAD_REQUEST,
		  "\"1\",\"age\",\"abc\",\"The value you provided could not be validated because it does not follow the "
		  "expected format. Please try again.\"\n\"2\",\"sex\",\"9\",\"The value is not a valid category for sex\"",
		  2 },
		/* returnFormat=csv and xml bodies. */
		{ 403, "ERROR: You do not have API Export privileges", REDCAP_AUTH, "You do not have API Export privileges",
		  0 },
		{ 400,
		  "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>The record name (a&amp;b) cannot contain a plus "
		  "sign (+), ampersand (&amp;), pound sign (#), or apostrophe.</error></hash>",
		  REDCAP_BAD_REQUEST,
		  "The record name (a&b) cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe.", 0 },
		{ 400, "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>x &lt;&#39;&#x41;&gt; &bogus;</error></hash>",
		  REDCAP_BAD_REQUEST, "x <'A> &bogus;", 0 },
		/* Older servers: a records list. */
		{ 400,
		  "{\"error\": \"There were data validation errors\",\"records\": [{\"record\":\"7\",\"field_name\":"
		  "\"dob\",\"value\": \"1/2/3\",\"message\": \"Invalid date format.\"}]}",
		  REDCAP_BAD_REQUEST, "There were data validation errors", 1 },
		{ 400,
		  "{\"error\": \"The records listed below occur more than once. Please remove any duplicates and try "
		  "again\", \"records\": [ \"1\", \"2\" ]}",
		  REDCAP_BAD_REQUEST,
		  "The records listed below occur more than once. Please remove any duplicates and try again", 2 },
		/* Not JSON after all, or JSON without "error". */
		{ 400, "{not json", REDCAP_BAD_REQUEST, "{not json", 0 },
		{ 400, "{\"message\":\"x\"}", REDCAP_BAD_REQUEST, "{\"message\":\"x\"}", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct classify_case *c = &cases[i];
		redcap_answer a = REDCAP_ANSWER_NULL;
		int rc = redcap_classify(c->status, c->body, strlen(c->body), &a);
		if (rc != (int)c->cls || a.cls != c->cls || a.status != c->status ||
		    (c->message ? !a.message || strcmp(a.message, c->message) != 0 : a.message != NULL) ||
		    a.errors.n != c->n_errors) {
			fprintf(stderr, "  case %zu: class %d/%d msg \"%s\" errors %zu\n", i, rc, (int)a.cls,
				a.message ? a.message : "(null)", a.errors.n);
			harness_failures++;
		}
		redcap_answer_deinit(&a);
		redcap_answer_deinit(&a);
	}
}

static void check_error(const redcap_value_error *e, const char *record, const char *field, const char *value,
			const char *message)
{
	CHECK_STR(e->record, record);
	CHECK_STR(e->field, field);
	CHECK_STR(e->value, value);
	CHECK_STR(e->message, message);
}

static void test_answer_errors(void)
{
	redcap_answer a = REDCAP_ANSWER_NULL;
	const char *body =
		"{\"error\":\"\\\"1\\\",\\\"age\\\",\\\"abc\\\",\\\"The value you provided could not be validated "
		"because it does not follow the expected format. Please try again.\\\"\\n\\\"2\\\",\\\"sex\\\",\\\"9\\\","
		"\\\"The value is not a valid category for sex\\\"\"}";
	CHECK_INT(redcap_classify(400, body, strlen(body), &a), REDCAP_BAD_REQUEST);
	REQUIRE(a.errors.n == 2);
	check_error(&a.errors.v[0], "1", "age", "abc",
		    "The value you provided could not be validated because it does not follow the expected format. Please try again.");
	check_error(&a.errors.v[1], "2", "sex", "9", "The value is not a valid category for sex");
	CHECK_INT(a.errors.v[0].kind, REDCAP_ERR_VALUE);
	CHECK(a.errors.v[0].row == SIZE_MAX);
	redcap_answer_deinit(&a);

	body = "{\"error\": \"There were data validation errors\",\"records\": [{\"record\":\"7\",\"field_name\":"
	       "\"dob\",\"value\": \"1/2/3\",\"message\": \"Invalid date format.\"}]}";
	CHECK_INT(redcap_classify(400, body, strlen(body), &a), REDCAP_BAD_REQUEST);
	REQUIRE(a.errors.n == 1);
	check_error(&a.errors.v[0], "7", "dob", "1/2/3", "Invalid date format.");
	redcap_answer_deinit(&a);

	/* NUL bytes are dropped, long messages cut at 64 KiB. */
	const char nul[] = "bad\0gateway";
	CHECK_INT(redcap_classify(502, nul, sizeof(nul) - 1, &a), REDCAP_RETRY);
	CHECK_STR(a.message, "badgateway");
	size_t big = 100000;
	char *huge = malloc(big);
	REQUIRE(huge);
	memset(huge, 'x', big);
	CHECK_INT(redcap_classify(500, huge, big, &a), REDCAP_RETRY);
	CHECK_INT(strlen(a.message), 65536);
	free(huge);
	redcap_answer_deinit(&a);

	CHECK_INT(redcap_classify(400, NULL, 0, &a), REDCAP_BAD_REQUEST);
	CHECK_STR(a.message, "");
	redcap_answer_deinit(&a);
	CHECK_INT(redcap_classify(400, "", 0, NULL), -EINVAL);
}

struct lines_case {
	const char *text;
	int rc;
	size_t n;
	const char *first[4];
};

static void test_value_error_lines(void)
{
	static const struct lines_case cases[] = {
		{ "\"1\",\"age\",\"abc\",\"bad\"", 0, 1, { "1", "age", "abc", "bad" } },
		{ "\"1\",\"age\",\"abc\",\"bad\"\n", 0, 1, { "1", "age", "abc", "bad" } },
		{ "\"1\",\"a\",\"x\",\"m1\"\r\n\"2\",\"b\",\"y\",\"m2\"\r\n", 0, 2, { "1", "a", "x", "m1" } },
		/* Commas and a line break inside a quoted value. */
		{ "\"1\",\"notes\",\"a, b\nc\",\"msg\"\n\"2\",\"f\",\"v\",\"m\"", 0, 2, { "1", "notes", "a, b\nc", "msg" } },
		/* Doubled quotes. */
		{ "\"1\",\"f\",\"say \"\"hi\"\"\",\"m\"", 0, 1, { "1", "f", "say \"hi\"", "m" } },
		/* Bare quotes as REDCap once wrote them in the checkbox message. */
		{ "\"1\",\"x___1\",\"5\",\"x___1 is a checkbox field and thus can only have a value of \"1\" (checked) or "
		  "\"0\" (unchecked).\"",
		  0, 1,
		  { "1", "x___1", "5",
		    "x___1 is a checkbox field and thus can only have a value of \"1\" (checked) or \"0\" (unchecked)." } },
		{ "\"\",\"\",\"\",\"\"", 0, 1, { "", "", "", "" } },
		/* Not the line format. */
		{ "The following fields were not found in the project as real data fields: a, b", REDCAP_E_SHAPE, 0, { 0 } },
		{ "\"1\",\"age\",\"abc\"", REDCAP_E_SHAPE, 0, { 0 } },
		{ "\"1\",\"age\",\"abc\",\"m\"\nnot a line", REDCAP_E_SHAPE, 0, { 0 } },
		{ "\"1\",\"age\",\"abc\",\"m", REDCAP_E_SHAPE, 0, { 0 } },
		{ "\"1\",\"age\",\"abc\",\"m\"x", REDCAP_E_SHAPE, 0, { 0 } },
		{ "", REDCAP_E_SHAPE, 0, { 0 } },
		{ "\n\n", REDCAP_E_SHAPE, 0, { 0 } },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redcap_errors l = REDCAP_ERRORS_NULL;
		/* A previous entry stays; on failure nothing is added. */
		redcap_errors_add(&l, REDCAP_ERR_REQUEST, 0, "r", "f", "v", "m");
		int rc = redcap_parse_value_errors(cases[i].text, strlen(cases[i].text), &l);
		if (rc != cases[i].rc || l.n != 1 + cases[i].n) {
			fprintf(stderr, "  case %zu: rc %d n %zu\n", i, rc, l.n);
			harness_failures++;
		} else if (cases[i].n) {
			check_error(&l.v[1], cases[i].first[0], cases[i].first[1], cases[i].first[2], cases[i].first[3]);
		}
		redcap_errors_deinit(&l);
	}

	/* Format then parse gives the list back. */
	redcap_errors l = REDCAP_ERRORS_NULL, back = REDCAP_ERRORS_NULL;
	redcap_errors_add(&l, REDCAP_ERR_VALUE, 0, "1", "notes", "a \"quoted\", value\nnext", "m1");
	redcap_errors_add(&l, REDCAP_ERR_VALUE, 1, "2", "age", "x", "The value is not a valid category for age");
	char *text = redcap_errors_format(&l);
	CHECK_STR(text, "\"1\",\"notes\",\"a \"\"quoted\"\", value\nnext\",\"m1\"\n"
			"\"2\",\"age\",\"x\",\"The value is not a valid category for age\"");
	CHECK_INT(redcap_parse_value_errors(text, strlen(text), &back), 0);
	REQUIRE(back.n == 2);
	check_error(&back.v[0], "1", "notes", "a \"quoted\", value\nnext", "m1");
	check_error(&back.v[1], "2", "age", "x", "The value is not a valid category for age");
	free(text);
	redcap_errors_deinit(&l);
	redcap_errors_deinit(&back);
	text = redcap_errors_format(&l);
	CHECK_STR(text, "");
	free(text);
	redcap_errors_deinit(&l);  /* idempotent */
}

static void test_describe(void)
{
	static const struct {
		int status;
		const char *body, *want;
	} cases[] = {
		{ 200, "{}", "ok (HTTP 200)" },
		{ 400, "{\"error\":\"" OFFLINE_PROJECT "\"}", "retry (HTTP 400): project offline" },
		{ 429, "{\"error\":\"" BANNED "\"}", "banned (HTTP 429): IP address banned" },
		{ 429, "", "banned (HTTP 429)" },
		{ 429, "Too Many Requests", "banned (HTTP 429): 17-byte message" },
		{ 403, "{\"error\":\"" NOAUTH "\"}", "auth (HTTP 403): no API permission (token)" },
		{ 400, "{\"error\":\"The following fields were not found in the project as real data fields: a, b\"}",
		  "bad-request (HTTP 400): unknown fields: a, b" },
		{ 400, "{\"error\":\"The record name (Jane Doe) cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe.\"}",
		  "bad-request (HTTP 400): bad record name" },
		{ 400, "{\"error\":\"something about Jane Doe\"}", "bad-request (HTTP 400): 24-byte message" },
		{ 400,
		  "{\"error\":\"\\\"Jane\\\",\\\"age\\\",\\\"x\\\",\\\"m\\\"\\n\\\"Jane\\\",\\\"dob\\\",\\\"y\\\",\\\"m\\\"\\n"
		  "\\\"Joe\\\",\\\"age\\\",\\\"z\\\",\\\"m\\\"\"}",
		  "bad-request (HTTP 400): 3 value errors in age, dob" },
		{ 400,
		  "{\"error\":\"\\\"1\\\",\\\"a\\\",\\\"\\\",\\\"m\\\"\\n\\\"1\\\",\\\"b\\\",\\\"\\\",\\\"m\\\"\\n\\\"1\\\",\\\"c\\\","
		  "\\\"\\\",\\\"m\\\"\\n\\\"1\\\",\\\"d\\\",\\\"\\\",\\\"m\\\"\\n\\\"1\\\",\\\"e\\\",\\\"\\\",\\\"m\\\"\\n\\\"1\\\","
		  "\\\"f\\\",\\\"\\\",\\\"m\\\"\"}",
		  "bad-request (HTTP 400): 6 value errors in a, b, c, d, e, ..." },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redcap_answer a = REDCAP_ANSWER_NULL;
		char out[256];
		redcap_classify(cases[i].status, cases[i].body, strlen(cases[i].body), &a);
		int n = redcap_answer_describe(&a, out, sizeof(out));
		CHECK_STR(out, cases[i].want);
		CHECK_INT(n, strlen(cases[i].want));
		CHECK(!strstr(out, "Jane"));
		redcap_answer_deinit(&a);
	}
	/* Truncation is snprintf-like. */
	redcap_answer a = REDCAP_ANSWER_NULL;
	redcap_classify(408, "", 0, &a);
	char small[8];
	CHECK_INT(redcap_answer_describe(&a, small, sizeof(small)), 16);
	CHECK_STR(small, "retry (");
	redcap_answer_deinit(&a);
}

static void test_version(void)
{
	static const struct {
		const char *s;
		int rc;
		unsigned a, b, c;
	} cases[] = {
		{ "15.7.6", 0, 15, 7, 6 },      { " 15.7.6\n", 0, 15, 7, 6 }, { "9.10.0", 0, 9, 10, 0 },
		{ "99999.0.1", 0, 99999, 0, 1 }, { "15.7", REDCAP_E_SHAPE, 0, 0, 0 },
		{ "15.7.6.1", REDCAP_E_SHAPE, 0, 0, 0 }, { "v15.7.6", REDCAP_E_SHAPE, 0, 0, 0 },
		{ "123456.1.1", REDCAP_E_SHAPE, 0, 0, 0 }, { "15..6", REDCAP_E_SHAPE, 0, 0, 0 },
		{ "", REDCAP_E_SHAPE, 0, 0, 0 },  { "15.7.6 LTS", REDCAP_E_SHAPE, 0, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redcap_version v = { 1, 1, 1 };
		CHECK_INT(redcap_parse_version(cases[i].s, strlen(cases[i].s), &v), cases[i].rc);
		if (!cases[i].rc)
			CHECK(v.major == cases[i].a && v.minor == cases[i].b && v.patch == cases[i].c);
	}
	redcap_version a = { 15, 7, 6 }, b = { 15, 10, 0 }, c = { 14, 99, 99 };
	CHECK(redcap_version_cmp(&a, &b) < 0);
	CHECK(redcap_version_cmp(&b, &a) > 0);
	CHECK(redcap_version_cmp(&a, &c) > 0);
	CHECK(redcap_version_cmp(&a, &a) == 0);
}

static void test_import_answers(void)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t n;
	} counts[] = {
		{ "{\"count\": 3}", 0, 3 }, { "{\"count\":\"12\"}", 0, 12 }, { " 7\n", 0, 7 },
		{ "{\"count\": 0}", 0, 0 }, { "{\"count\": -1}", REDCAP_E_SHAPE, 0 },
		{ "{\"cnt\": 1}", REDCAP_E_SHAPE, 0 }, { "{\"count\": \"1x\"}", REDCAP_E_SHAPE, 0 },
		{ "nonsense", REDCAP_E_SHAPE, 0 }, { "{bad", REDCAP_E_JSON, 0 }, { "", REDCAP_E_JSON, 0 },
	};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		uint64_t n = 999;
		CHECK_INT(redcap_parse_import_count(counts[i].s, strlen(counts[i].s), &n), counts[i].rc);
		if (!counts[i].rc)
			CHECK_INT(n, counts[i].n);
	}

	redcap_strv ids = REDCAP_STRV_NULL;
	redcap_error err = { 0 };
	const char *s = "[\"1\",\"2-7\", 30]";
	CHECK_INT(redcap_parse_import_ids(s, strlen(s), &ids, &err), 0);
	REQUIRE(ids.n == 3);
	CHECK_STR(ids.v[0], "1");
	CHECK_STR(ids.v[1], "2-7");
	CHECK_STR(ids.v[2], "30");
	s = "[]";
	CHECK_INT(redcap_parse_import_ids(s, strlen(s), &ids, &err), 0);
	CHECK_INT(ids.n, 0);
	s = "[\"1\", null]";
	CHECK_INT(redcap_parse_import_ids(s, strlen(s), &ids, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "ids answer: element 1 is not a string");
	CHECK_INT(ids.n, 0);
	s = "{\"count\":1}";
	CHECK_INT(redcap_parse_import_ids(s, strlen(s), &ids, &err), REDCAP_E_SHAPE);
	s = "[\"1\",";
	CHECK_INT(redcap_parse_import_ids(s, strlen(s), &ids, &err), REDCAP_E_JSON);
	CHECK(err.line == 1 && err.column > 0);
	redcap_strv_deinit(&ids);
	redcap_strv_deinit(&ids);
}

static void test_project(void)
{
	const char *s = "{\"project_id\":\"17\",\"project_title\":\"Sepsis cohort\",\"creation_time\":\"2024-01-02 03:04:05\","
			"\"production_time\":\"\",\"in_production\":\"0\",\"is_longitudinal\":1,"
			"\"has_repeating_instruments_or_events\":\"1\",\"record_autonumbering_enabled\":0,"
			"\"project_language\":\"English\"}";
	redcap_project p = REDCAP_PROJECT_NULL;
	redcap_error err = { 0 };

	CHECK_INT(redcap_parse_project(&p, s, strlen(s), &err), 0);
	CHECK_INT(p.project_id, 17);
	CHECK_STR(p.title, "Sepsis cohort");
	CHECK_INT(p.in_production, 0);
	CHECK_INT(p.longitudinal, 1);
	CHECK_INT(p.repeating, 1);
	CHECK_INT(p.autonumbering, 0);
	CHECK_STR(json_string_value(json_object_get(p.json, "project_language")), "English");

	s = "{\"project_id\":5,\"is_longitudinal\":true}";
	CHECK_INT(redcap_parse_project(&p, s, strlen(s), &err), 0);
	CHECK_INT(p.project_id, 5);
	CHECK_STR(p.title, "");
	CHECK_INT(p.longitudinal, 1);
	CHECK_INT(p.repeating, -1);
	CHECK_INT(p.in_production, -1);

	s = "{\"project_id\":5,\"is_longitudinal\":\"2\"}";
	CHECK_INT(redcap_parse_project(&p, s, strlen(s), &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "project answer: is_longitudinal is neither 0 nor 1");
	CHECK(p.json == NULL && p.project_id == -1);
	s = "{\"project_id\":\"x\"}";
	CHECK_INT(redcap_parse_project(&p, s, strlen(s), &err), REDCAP_E_SHAPE);
	s = "{\"project_title\":3}";
	CHECK_INT(redcap_parse_project(&p, s, strlen(s), &err), REDCAP_E_SHAPE);
	s = "[]";
	CHECK_INT(redcap_parse_project(&p, s, strlen(s), &err), REDCAP_E_SHAPE);
	s = "{\"a\":1,\"a\":2}";  /* duplicate keys refused */
	CHECK_INT(redcap_parse_project(&p, s, strlen(s), &err), REDCAP_E_JSON);
	redcap_project_deinit(&p);
	redcap_project_deinit(&p);
}

static void test_export_field_names(void)
{
	const char *s = "[{\"original_field_name\":\"record_id\",\"choice_value\":\"\",\"export_field_name\":\"record_id\"},"
			"{\"original_field_name\":\"race\",\"choice_value\":\"1\",\"export_field_name\":\"race___1\"},"
			"{\"original_field_name\":\"race\",\"choice_value\":\"-99\",\"export_field_name\":\"race____99\"},"
			"{\"original_field_name\":\"age\",\"export_field_name\":\"age\"}]";
	redcap_export_fields f = REDCAP_EXPORT_FIELDS_NULL;
	redcap_error err = { 0 };

	CHECK_INT(redcap_parse_export_field_names(s, strlen(s), &f, &err), 0);
	REQUIRE(f.n == 4);
	CHECK_STR(f.v[1].original, "race");
	CHECK_STR(f.v[1].choice, "1");
	CHECK_STR(f.v[1].export_name, "race___1");
	CHECK_STR(f.v[2].export_name, "race____99");
	CHECK_STR(f.v[3].choice, "");

	s = "[{\"original_field_name\":\"a\",\"choice_value\":\"\"}]";
	CHECK_INT(redcap_parse_export_field_names(s, strlen(s), &f, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "exportFieldNames[0].export_field_name: missing or not a string");
	CHECK_INT(f.n, 0);
	s = "[{\"original_field_name\":[],\"export_field_name\":\"a\"}]";
	CHECK_INT(redcap_parse_export_field_names(s, strlen(s), &f, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "exportFieldNames[0].original_field_name: missing or not a string");
	s = "[{\"original_field_name\":\"\",\"export_field_name\":\"a\"}]";
	CHECK_INT(redcap_parse_export_field_names(s, strlen(s), &f, &err), REDCAP_E_SHAPE);
	s = "[1]";
	CHECK_INT(redcap_parse_export_field_names(s, strlen(s), &f, &err), REDCAP_E_SHAPE);
	CHECK_STR(err.msg, "exportFieldNames[0]: not an object");
	redcap_export_fields_deinit(&f);
}

static const struct harness_test tests[] = {
	HARNESS_TEST(test_classify), HARNESS_TEST(test_answer_errors), HARNESS_TEST(test_value_error_lines),
	HARNESS_TEST(test_describe), HARNESS_TEST(test_version),       HARNESS_TEST(test_import_answers),
	HARNESS_TEST(test_project),  HARNESS_TEST(test_export_field_names),
};

int main(int argc, char **argv)
{
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
