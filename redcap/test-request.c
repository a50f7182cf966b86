/*
 * Tests for the request bodies: percent-encoding, the size cap and its
 * sticky error, every request builder (exact bodies), argument checks, and
 * the log-safe redaction.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redcap/redcap.h"
#include "tests/harness.h"

#define TOKEN "0123456789ABCDEF0123456789ABCDEF"

/* Take the body and compare it with want; frees it. */
static void check_body(redcap_body *b, const char *want)
{
	size_t len = 0;
	char *s = redcap_body_take(b, &len);
	CHECK_STR(s, want);
	if (s)
		CHECK_INT(len, strlen(s));
	redcap_body_free(s, len);
	redcap_body_deinit(b);
}

static void test_encoding(void)
{
	static const struct {
		const char *name, *value, *want;
	} cases[] = {
		{ "a", "b", "a=b" },
		{ "records[0]", "a b&c=d+e/f?g#h%i", "records%5B0%5D=a%20b%26c%3Dd%2Be%2Ff%3Fg%23h%25i" },
		{ "k", "unreserved-._~AZaz09", "k=unreserved-._~AZaz09" },
		{ "k", "caf\xc3\xa9 \xe2\x82\xac", "k=caf%C3%A9%20%E2%82%AC" },
		{ "k", "line\r\nnext\ttab\"'<>", "k=line%0D%0Anext%09tab%22%27%3C%3E" },
		{ "k", "", "k=" },
		{ "filterLogic", "[age] >= 18 and [sex] = '1'",
		  "filterLogic=%5Bage%5D%20%3E%3D%2018%20and%20%5Bsex%5D%20%3D%20%271%27" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redcap_body b;
		redcap_body_init(&b, 0);
		CHECK_INT(redcap_body_add(&b, cases[i].name, cases[i].value), 0);
		check_body(&b, cases[i].want);
	}
	CHECK_INT(redcap_urlencoded_len("a b", 3), 5);
	CHECK_INT(redcap_urlencoded_len("\xc3\xa9", 2), 6);
	CHECK_INT(redcap_urlencoded_len("", 0), 0);

	/* Several pairs, a value with a NUL byte (binary-safe addn), a list. */
	redcap_body b;
	redcap_body_init(&b, 0);
	CHECK_INT(redcap_body_add(&b, "x", "1"), 0);
	CHECK_INT(redcap_body_addn(&b, "y", "a\0b", 3), 0);
	const char *recs[] = { "1", "2 3", "x&y" };
	CHECK_INT(redcap_body_add_list(&b, "records", recs, 3), 0);
	check_body(&b, "x=1&y=a%00b&records%5B0%5D=1&records%5B1%5D=2%203&records%5B2%5D=x%26y");

	/* Empty body: take gives NULL. */
	redcap_body_init(&b, 0);
	size_t len = 99;
	CHECK(redcap_body_take(&b, &len) == NULL);
	CHECK_INT(len, 0);
	redcap_body_deinit(&b);
	redcap_body_deinit(&b);  /* idempotent */
}

static void test_cap(void)
{
	redcap_body b;

	/* "token=" + 32 = 38 bytes; cap 40: the next pair does not fit. */
	redcap_body_init(&b, 40);
	CHECK_INT(b.max, 40);
	CHECK_INT(redcap_body_add(&b, "token", TOKEN), 0);
	CHECK_INT(b.len, 38);
	CHECK_INT(redcap_body_add(&b, "content", "record"), REDCAP_E_TOO_LARGE);
	CHECK(b.buf == NULL);
	CHECK_INT(b.len, 0);
	/* Sticky: a small pair that would fit now still fails. */
	CHECK_INT(redcap_body_add(&b, "a", ""), REDCAP_E_TOO_LARGE);
	CHECK(redcap_body_take(&b, NULL) == NULL);
	redcap_body_deinit(&b);
	/* After deinit the body is usable again. */
	CHECK_INT(redcap_body_add(&b, "a", "b"), 0);
	check_body(&b, "a=b");

	/* Exactly at the cap is fine: "a=" + 3 encoded bytes = 5. */
	redcap_body_init(&b, 5);
	CHECK_INT(redcap_body_add(&b, "a", "xyz"), 0);
	CHECK_INT(b.len, 5);
	check_body(&b, "a=xyz");
	redcap_body_init(&b, 5);
	CHECK_INT(redcap_body_add(&b, "a", "x y"), REDCAP_E_TOO_LARGE);  /* x%20y: 7 */
	redcap_body_deinit(&b);

	/* A list that overflows halfway fails as a whole. */
	redcap_body_init(&b, 30);
	const char *recs[] = { "1", "2", "3", "4" };
	CHECK_INT(redcap_body_add_list(&b, "records", recs, 4), REDCAP_E_TOO_LARGE);
	CHECK(redcap_body_take(&b, NULL) == NULL);
	redcap_body_deinit(&b);

	/* Growth well past the initial buffer keeps the content. */
	redcap_body_init(&b, 0);
	for (int i = 0; i < 500; i++)
		CHECK_INT(redcap_body_add(&b, "k", "0123456789"), 0);
	CHECK_INT(b.len, 500 * 12 + 499);
	redcap_body_deinit(&b);

	CHECK_INT(redcap_body_add(NULL, "a", "b"), -EINVAL);
}

static void test_token(void)
{
	static const struct {
		const char *token;
		int rc;
	} cases[] = {
		{ TOKEN, 0 },
		{ "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF", 0 },
		{ "x", 0 },
		{ "", REDCAP_E_ARG },
		{ NULL, REDCAP_E_ARG },
		{ "ABC DEF", REDCAP_E_ARG },
		{ "ABCDEF\n", REDCAP_E_ARG },
		{ "ABC\x7f", REDCAP_E_ARG },
		{ "caf\xc3\xa9", REDCAP_E_ARG },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_INT(redcap_token_check(cases[i].token), cases[i].rc);
	char long_token[258];
	memset(long_token, 'A', 257);
	long_token[257] = 0;
	CHECK_INT(redcap_token_check(long_token), REDCAP_E_ARG);
	long_token[256] = 0;
	CHECK_INT(redcap_token_check(long_token), 0);

	/* A refused token appends nothing. */
	redcap_body b;
	redcap_body_init(&b, 0);
	CHECK_INT(redcap_request_info(&b, "bad token", REDCAP_CONTENT_VERSION), REDCAP_E_ARG);
	CHECK(b.buf == NULL && b.len == 0);
	redcap_body_deinit(&b);
}

static void test_info(void)
{
	static const struct {
		redcap_content c;
		const char *name;
	} cases[] = {
		{ REDCAP_CONTENT_VERSION, "version" },
		{ REDCAP_CONTENT_PROJECT, "project" },
		{ REDCAP_CONTENT_METADATA, "metadata" },
		{ REDCAP_CONTENT_INSTRUMENT, "instrument" },
		{ REDCAP_CONTENT_EVENT, "event" },
		{ REDCAP_CONTENT_ARM, "arm" },
		{ REDCAP_CONTENT_FORM_EVENT_MAPPING, "formEventMapping" },
		{ REDCAP_CONTENT_REPEATING_FORMS_EVENTS, "repeatingFormsEvents" },
		{ REDCAP_CONTENT_EXPORT_FIELD_NAMES, "exportFieldNames" },
		{ REDCAP_CONTENT_GENERATE_NEXT_RECORD_NAME, "generateNextRecordName" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char want[256];
		redcap_body b;
		redcap_body_init(&b, 0);
		snprintf(want, sizeof(want), "token=%s&content=%s&format=json&returnFormat=json", TOKEN, cases[i].name);
		CHECK_STR(redcap_content_name(cases[i].c), cases[i].name);
		CHECK_INT(redcap_request_info(&b, TOKEN, cases[i].c), 0);
		check_body(&b, want);
	}
	CHECK(redcap_content_name((redcap_content)99) == NULL);
	redcap_body b;
	redcap_body_init(&b, 0);
	CHECK_INT(redcap_request_info(&b, TOKEN, (redcap_content)99), REDCAP_E_ARG);
	/* Filters appended by the caller. */
	const char *fields[] = { "age", "dob" };
	CHECK_INT(redcap_request_info(&b, TOKEN, REDCAP_CONTENT_METADATA), 0);
	CHECK_INT(redcap_body_add_list(&b, "fields", fields, 2), 0);
	check_body(&b, "token=" TOKEN "&content=metadata&format=json&returnFormat=json&fields%5B0%5D=age&fields%5B1%5D=dob");
}

static void test_export(void)
{
	redcap_body b;

	/* Defaults. */
	redcap_body_init(&b, 0);
	CHECK_INT(redcap_request_export(&b, TOKEN, NULL), 0);
	check_body(&b, "token=" TOKEN "&content=record&format=json&type=flat&rawOrLabel=raw"
		       "&rawOrLabelHeaders=raw&exportCheckboxLabel=false&returnFormat=json");

	/* Everything. */
	const char *recs[] = { "1", "10-2" }, *fields[] = { "record_id", "age" }, *forms[] = { "demographics" },
		   *events[] = { "baseline_arm_1", "visit_1_arm_1" };
	redcap_export_opts o = {
		.records = recs, .n_records = 2,
		.fields = fields, .n_fields = 2,
		.forms = forms, .n_forms = 1,
		.events = events, .n_events = 2,
		.label_values = true, .label_headers = true, .checkbox_labels = true, .data_access_groups = true,
		.filter_logic = "[age] > 65",
		.date_begin = "2024-01-01 00:00:00", .date_end = "2024-02-29 23:59:59",
		.format = REDCAP_FORMAT_CSV,
	};
	redcap_body_init(&b, 0);
	CHECK_INT(redcap_request_export(&b, TOKEN, &o), 0);
	check_body(&b, "token=" TOKEN "&content=record&format=csv&type=flat"
		       "&records%5B0%5D=1&records%5B1%5D=10-2"
		       "&fields%5B0%5D=record_id&fields%5B1%5D=age"
		       "&forms%5B0%5D=demographics"
		       "&events%5B0%5D=baseline_arm_1&events%5B1%5D=visit_1_arm_1"
		       "&rawOrLabel=label&rawOrLabelHeaders=label&exportCheckboxLabel=true"
		       "&exportDataAccessGroups=true&filterLogic=%5Bage%5D%20%3E%2065"
		       "&dateRangeBegin=2024-01-01%2000%3A00%3A00&dateRangeEnd=2024-02-29%2023%3A59%3A59"
		       "&returnFormat=json");

	/* Refused options append nothing. */
	static const struct {
		const char *begin, *end;
	} bad_dates[] = {
		{ "2024-01-01", NULL },              /* not the full form */
		{ "2024-01-01T00:00:00", NULL },
		{ "2023-02-29 00:00:00", NULL },     /* not a leap year */
		{ "2024-04-31 00:00:00", NULL },
		{ "2024-01-01 24:00:00", NULL },
		{ "2024-01-01 00:60:00", NULL },
		{ "2024-1-01 00:00:00", NULL },
		{ NULL, "2024-01-01 00:00:0x" },
		{ "2024-01-02 00:00:00", "2024-01-01 00:00:00" },  /* begin after end */
	};
	for (size_t i = 0; i < sizeof(bad_dates) / sizeof(bad_dates[0]); i++) {
		redcap_export_opts e = { .date_begin = bad_dates[i].begin, .date_end = bad_dates[i].end };
		redcap_body_init(&b, 0);
		CHECK_INT(redcap_request_export(&b, TOKEN, &e), REDCAP_E_ARG);
		CHECK(b.buf == NULL);
		redcap_body_deinit(&b);
	}
	redcap_export_opts e = { .date_begin = "2000-02-29 12:00:00" };
	redcap_body_init(&b, 0);
	CHECK_INT(redcap_request_export(&b, TOKEN, &e), 0);
	redcap_body_deinit(&b);

	const char *empty[] = { "1", "" };
	e = (redcap_export_opts){ .records = empty, .n_records = 2 };
	CHECK_INT(redcap_request_export(&b, TOKEN, &e), REDCAP_E_ARG);
	e = (redcap_export_opts){ .fields = NULL, .n_fields = 1 };
	CHECK_INT(redcap_request_export(&b, TOKEN, &e), REDCAP_E_ARG);
	e = (redcap_export_opts){ .format = (redcap_format)7 };
	CHECK_INT(redcap_request_export(&b, TOKEN, &e), REDCAP_E_ARG);
	CHECK_INT(redcap_request_export(&b, "", NULL), REDCAP_E_ARG);
	CHECK(b.buf == NULL);
	redcap_body_deinit(&b);
}

static void test_import(void)
{
	redcap_body b;
	const char *data = "[{\"record_id\":\"1\",\"age\":\"42\",\"note\":\"a&b c\"}]";

	redcap_body_init(&b, 0);
	CHECK_INT(redcap_request_import(&b, TOKEN, NULL, data, strlen(data)), 0);
	check_body(&b, "token=" TOKEN "&content=record&format=json&type=flat&overwriteBehavior=normal"
		       "&forceAutoNumber=false&dateFormat=YMD&returnContent=count&returnFormat=json"
		       "&data=%5B%7B%22record_id%22%3A%221%22%2C%22age%22%3A%2242%22%2C%22note%22%3A%22a%26b%20c%22%7D%5D");

	redcap_import_opts o = { .overwrite = true, .return_ids = true, .force_auto_number = true };
	redcap_body_init(&b, 0);
	CHECK_INT(redcap_request_import(&b, TOKEN, &o, " \n[]", 4), 0);
	check_body(&b, "token=" TOKEN "&content=record&format=json&type=flat&overwriteBehavior=overwrite"
		       "&forceAutoNumber=true&dateFormat=YMD&returnContent=ids&returnFormat=json&data=%20%0A%5B%5D");

	/* Not an array. */
	redcap_body_init(&b, 0);
	CHECK_INT(redcap_request_import(&b, TOKEN, NULL, "{\"a\":1}", 7), REDCAP_E_ARG);
	CHECK_INT(redcap_request_import(&b, TOKEN, NULL, "", 0), REDCAP_E_ARG);
	CHECK_INT(redcap_request_import(&b, TOKEN, NULL, NULL, 0), REDCAP_E_ARG);
	CHECK(b.buf == NULL);

	/* From Jansson rows, in key insertion order. */
	json_t *rows = json_pack("[{s:s, s:s}, {s:s, s:s}]", "record_id", "1", "dob", "1970-01-01", "record_id",
				 "2", "dob", "");
	CHECK_INT(redcap_request_import_rows(&b, TOKEN, NULL, rows), 0);
	check_body(&b, "token=" TOKEN "&content=record&format=json&type=flat&overwriteBehavior=normal"
		       "&forceAutoNumber=false&dateFormat=YMD&returnContent=count&returnFormat=json"
		       "&data=%5B%7B%22record_id%22%3A%221%22%2C%22dob%22%3A%221970-01-01%22%7D%2C"
		       "%7B%22record_id%22%3A%222%22%2C%22dob%22%3A%22%22%7D%5D");
	json_decref(rows);
	json_t *notrows = json_pack("[{s:s}, [s]]", "a", "b", "c");
	CHECK_INT(redcap_request_import_rows(&b, TOKEN, NULL, notrows), REDCAP_E_ARG);
	json_decref(notrows);
	json_t *obj = json_object();
	CHECK_INT(redcap_request_import_rows(&b, TOKEN, NULL, obj), REDCAP_E_ARG);
	json_decref(obj);
	redcap_body_deinit(&b);

	/* The cap applies to the data too. */
	redcap_body_init(&b, 200);
	char big[400];
	memset(big, ' ', sizeof(big));
	big[0] = '[';
	big[sizeof(big) - 1] = ']';
	CHECK_INT(redcap_request_import(&b, TOKEN, NULL, big, sizeof(big)), REDCAP_E_TOO_LARGE);
	CHECK(redcap_body_take(&b, NULL) == NULL);
	redcap_body_deinit(&b);
}

static void test_redact(void)
{
	redcap_body b;
	const char *data = "[{\"record_id\":\"1\",\"name\":\"Jane Doe\"}]";
	redcap_body_init(&b, 0);
	CHECK_INT(redcap_request_import(&b, TOKEN, NULL, data, strlen(data)), 0);
	size_t len;
	char *body = redcap_body_take(&b, &len);
	char *r = redcap_body_redact(body, len);
	CHECK_STR(r, "token=***&content=record&format=json&type=flat&overwriteBehavior=normal"
		     "&forceAutoNumber=false&dateFormat=YMD&returnContent=count&returnFormat=json&data=<37 bytes>");
	CHECK(r && !strstr(r, TOKEN) && !strstr(r, "Jane"));
	free(r);
	redcap_body_free(body, len);

	/* Long values are cut, control characters masked, filterLogic hidden. */
	char longv[100];
	memset(longv, 'x', 99);
	longv[99] = 0;
	redcap_body_init(&b, 0);
	redcap_body_add(&b, "token", TOKEN);
	redcap_body_add(&b, "records[0]", "a\nb");
	redcap_body_add(&b, "filterLogic", "[name] = 'Jane'");
	redcap_body_add(&b, "long", longv);
	body = redcap_body_take(&b, &len);
	r = redcap_body_redact(body, len);
	CHECK_STR(r, "token=***&records[0]=a?b&filterLogic=<15 bytes>&long="
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...(+35 bytes)");
	free(r);
	redcap_body_free(body, len);

	r = redcap_body_redact("", 0);
	CHECK_STR(r, "");
	free(r);
	r = redcap_body_redact("novalue&x=%zz", 13);
	CHECK_STR(r, "novalue=&x=%zz");
	free(r);
}

static const struct harness_test tests[] = {
	HARNESS_TEST(test_encoding), HARNESS_TEST(test_cap),    HARNESS_TEST(test_token),
	HARNESS_TEST(test_info),     HARNESS_TEST(test_export), HARNESS_TEST(test_import),
	HARNESS_TEST(test_redact),
};

int main(int argc, char **argv)
{
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
