#include "bridge/push-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redcap/dictionary.h"
#include "redcap/validate.h"
#include "tests/harness.h"

/* Names as REDCap matches them: trimmed, ASCII case-insensitive. */
static void test_recset_matches_like_redcap(void)
{
	pu_recset s = PU_RECSET_NULL;
	CHECK(!pu_recset_has(&s, "x"));
	CHECK_INT(pu_recset_add(&s, "MRN001"), 1);
	CHECK_INT(pu_recset_add(&s, "mrn001"), 0);
	CHECK_INT(pu_recset_add(&s, " Mrn001\t"), 0);
	CHECK_INT(pu_recset_add(&s, "MRN0010"), 1);
	CHECK_INT(pu_recset_add(&s, "MRN00"), 1);
	CHECK_INT(pu_recset_add(&s, ""), 1);
	CHECK_INT(pu_recset_add(&s, "  "), 0);   /* trims to "" */
	CHECK_INT(pu_recset_add(&s, "É1"), 1);   /* only ASCII folds */
	CHECK_INT(pu_recset_add(&s, "é1"), 1);
	CHECK_INT(s.n, 6);
	CHECK_STR(s.v[0], "MRN001");             /* the first spelling, in order */
	CHECK_STR(s.v[1], "MRN0010");
	CHECK(pu_recset_has(&s, "mRn001 "));
	CHECK(!pu_recset_has(&s, "MRN01"));
	char *f = pu_fold(" \tMrN-001x\r\n");
	CHECK_STR(f, "mrn-001x");
	free(f);
	f = pu_fold("\xc3\x89" "1 ");
	CHECK_STR(f, "\xc3\x89" "1");
	free(f);
	pu_recset_deinit(&s);
	CHECK_INT(s.n, 0);
	pu_recset_deinit(&s); /* idempotent */
	CHECK_INT(pu_recset_add(&s, "a"), 1); /* reusable */
	pu_recset_deinit(&s);
}

/* 10,000 names (redcap.batch_size at its maximum), two spellings of each
 * of 5,000 records: counted right, the table kept at most half full. */
static void test_recset_many(void)
{
	pu_recset s = PU_RECSET_NULL;
	char name[32];
	size_t added = 0;
	for (int i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), i % 2 ? "rec%05d" : "REC%05d", i / 2);
		int r = pu_recset_add(&s, name);
		REQUIRE(r >= 0);
		added += (size_t)r;
	}
	CHECK_INT(added, 5000);
	CHECK_INT(s.n, 5000);
	CHECK(s.n_slots >= 2 * s.n);
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "Rec%05d", i);
		CHECK(pu_recset_has(&s, name));
	}
	CHECK(!pu_recset_has(&s, "rec05000"));
	pu_recset_deinit(&s);
}

static void check_scrub(const char *msg, const char *rec, const char *val, const char *want)
{
	char *got = pu_scrub(msg, rec, val);
	REQUIRE(got);
	CHECK_STR(got, want);
	free(got);
}

static void test_scrub(void)
{
	check_scrub("The value is not a valid category for sex", "MRN1", "9", "The value is not a valid category for sex");
	check_scrub("The record name (AB+1) cannot contain a plus sign (+)", "AB+1", NULL,
		    "The record name ([record]) cannot contain a plus sign (+)");
	check_scrub("The record name (3) has an invalid value for 'redcap_repeat_instance'. Value provided: 1.5", "3", "1.5",
		    "The record name ([record]) has an invalid value for 'redcap_repeat_instance'. Value provided: [value]");
	/* Whole words only: the 1 of 32767 stays. */
	check_scrub("between '1' and '32767' (record 1)", "1", "", "between '[record]' and '32767' (record [record])");
	check_scrub("value 12 of 12x and x12", NULL, "12", "value [value] of 12x and x12");
	/* The longer first: a value holding the record name. */
	check_scrub("got MRN1-a for MRN1", "MRN1", "MRN1-a", "got [value] for [record]");
	check_scrub("", "a", "b", "");
}

static void test_refusals(void)
{
	CHECK(pu_refusal_is_row_caused(
		"The record name (x) cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe."));
	CHECK(pu_refusal_is_row_caused("The following fields were not found in the project as real data fields: a, b"));
	CHECK(pu_refusal_is_row_caused("The record name (3) has an invalid value for 'redcap_repeat_instance'. The value "
				       "must either be a positive integer or the value 'new'. Value provided: 0"));
	CHECK(pu_refusal_is_row_caused("This field ('x') exists on an instrument that is not designated for the event "
				       "named 'e'. You are not allowed to import data for this field into this event."));
	CHECK(pu_refusal_is_row_caused("The following values of redcap_event_name are invalid: x"));
	/* Nothing said about the row: tried again later before it is held. */
	CHECK(!pu_refusal_is_row_caused("There were errors with your request. If you are sending data, then it might be "
					"due to the data being misformatted. "));
	CHECK(!pu_refusal_is_row_caused("<html><body>Bad Request</body></html>"));
	CHECK(!pu_refusal_is_row_caused(""));
	CHECK(!pu_refusal_is_row_caused(NULL));
}

/*
 * The list of refusals a row causes must know every whole-request error the
 * validator predicts (the same REDCap texts): a row REDCap refuses with one
 * of them is held at once, not retried for three cycles. Rows of the
 * example study, each with one such fault.
 */
static void test_validator_request_errors_are_row_caused(void)
{
	size_t len = 0;
	char *csv = harness_read_source_file("conf/example-project/dictionary.csv", &len);
	REQUIRE(csv);
	redcap_dict d = REDCAP_DICT_NULL;
	redcap_error err = { 0 };
	REQUIRE(redcap_dict_parse_csv(&d, csv, len, &err) == 0);
	free(csv);
	static const char *const rows[] = {
		"{\"record_id\":\"\",\"dob\":\"2000-01-01\"}",
		"{\"record_id\":\"A+1\",\"dob\":\"2000-01-01\"}",
		"{\"record_id\":\"A<br>1\",\"dob\":\"2000-01-01\"}",
		"{\"record_id\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
		"{\"record_id\":\"A1\",\"nosuch_field\":\"x\"}",
		"{\"record_id\":\"A1\",\"redcap_repeat_instance\":\"x\",\"dob\":\"2000-01-01\"}",
		"{\"record_id\":\"A1\",\"redcap_data_access_group\":\"x\"}",
	};
	size_t seen = 0;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		json_error_t je;
		json_t *row = json_loads(rows[i], 0, &je);
		REQUIRE(row);
		redcap_errors errs = REDCAP_ERRORS_NULL;
		redcap_validate_row(&d, row, 0, NULL, &errs);
		bool request = false;
		for (size_t k = 0; k < errs.n; k++) {
			if (errs.v[k].kind != REDCAP_ERR_REQUEST)
				continue;
			request = true;
			seen++;
			if (!pu_refusal_is_row_caused(errs.v[k].message))
				fprintf(stderr, "row %zu: not known as caused by the row: %s\n", i, errs.v[k].message);
			CHECK(pu_refusal_is_row_caused(errs.v[k].message));
		}
		if (!request)
			fprintf(stderr, "row %zu: no whole-request error\n", i);
		CHECK(request);
		redcap_errors_deinit(&errs);
		json_decref(row);
	}
	CHECK_INT(seen, sizeof(rows) / sizeof(rows[0]));
	redcap_dict_deinit(&d);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_recset_matches_like_redcap),
		HARNESS_TEST(test_recset_many),
		HARNESS_TEST(test_scrub),
		HARNESS_TEST(test_refusals),
		HARNESS_TEST(test_validator_request_errors_are_row_caused),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
