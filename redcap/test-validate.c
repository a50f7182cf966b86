/*
 * Tests for validation before upload: every format check (dates with real
 * calendars, numbers, email, the regex types), single values against the
 * test dictionary with REDCap's exact messages, and whole rows (record
 * names, unknown fields, checkboxes, @FORCE-MINMAX, repeating instruments,
 * events and the form/event mapping), in classic and longitudinal projects.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redcap/validate.h"
#include "tests/harness.h"

#define MSG_REPEAT_FIELD(f, form) \
	"This field ('" f "') exists on a Repeating Instrument named '" form "'. However, the fields " \
	"'redcap_repeat_instance' and/or 'redcap_repeat_instrument' for this row of data have no value, which are " \
	"both required for importing data into a Repeating Instrument.  You are not allowed to import data for " \
	"this field into a non-repeating instrument."

static char *read_testdata(const char *name, size_t *len)
{
	char rel[256];
	snprintf(rel, sizeof(rel), "redcap/testdata/%s", name);
	return harness_read_source_file(rel, len);
}

/* The test dictionary as a classic project where vitals repeats. */
static bool load_classic(redcap_dict *d)
{
	size_t n;
	char *csv = read_testdata("dictionary.csv", &n);
	if (!csv || redcap_dict_parse_csv(d, csv, n, NULL) != 0) {
		free(csv);
		return false;
	}
	free(csv);
	redcap_project p = REDCAP_PROJECT_NULL;
	p.longitudinal = 0;
	redcap_dict_set_project(d, &p);
	const char *rep = "[{\"event_name\":\"\",\"form_name\":\"vitals\",\"custom_form_label\":\"\"}]";
	return redcap_dict_load_repeating(d, rep, strlen(rep), NULL) == 0;
}

/* Longitudinal: baseline_arm_1 has demographics and vitals (vitals a
 * repeating instrument there), visit_1_arm_1 has vitals and labs and is a
 * repeating event. */
static bool load_longitudinal(redcap_dict *d)
{
	size_t n;
	char *csv = read_testdata("dictionary.csv", &n);
	if (!csv || redcap_dict_parse_csv(d, csv, n, NULL) != 0) {
		free(csv);
		return false;
	}
	free(csv);
	const char *events = "[{\"event_name\":\"Baseline\",\"arm_num\":1,\"unique_event_name\":\"baseline_arm_1\"},"
			     "{\"event_name\":\"Visit 1\",\"arm_num\":1,\"unique_event_name\":\"visit_1_arm_1\"}]";
	const char *map = "[{\"arm_num\":1,\"unique_event_name\":\"baseline_arm_1\",\"form\":\"demographics\"},"
			  "{\"arm_num\":1,\"unique_event_name\":\"baseline_arm_1\",\"form\":\"vitals\"},"
			  "{\"arm_num\":1,\"unique_event_name\":\"visit_1_arm_1\",\"form\":\"vitals\"},"
			  "{\"arm_num\":1,\"unique_event_name\":\"visit_1_arm_1\",\"form\":\"labs\"}]";
	const char *rep = "[{\"event_name\":\"baseline_arm_1\",\"form_name\":\"vitals\",\"custom_form_label\":\"\"},"
			  "{\"event_name\":\"visit_1_arm_1\",\"form_name\":\"\",\"custom_form_label\":\"\"}]";
	const char *arms = "[{\"arm_num\":1,\"name\":\"Main\"}]";
	return redcap_dict_load_events(d, events, strlen(events), NULL) == 0 &&
	       redcap_dict_load_arms(d, arms, strlen(arms), NULL) == 0 &&
	       redcap_dict_load_form_event_mapping(d, map, strlen(map), NULL) == 0 &&
	       redcap_dict_load_repeating(d, rep, strlen(rep), NULL) == 0;
}

static void test_formats(void)
{
	/* date: a date_ymd value; dt, dts: datetime_ymd / datetime_seconds_ymd
	 * as the bridge checks them (pad_time false: the time must be there);
	 * pdt, pdts: as REDCap 15.7.6 takes them (pad_time true). */
	static const struct {
		const char *s;
		bool date, dt, dts, pdt, pdts;
	} dates[] = {
		{ "2024-02-29", true, false, false, true, true },   { "2023-02-29", false, false, false, false, false },
		{ "2000-02-29", true, false, false, true, true },   { "1900-02-29", false, false, false, false, false },
		{ "2100-02-29", false, false, false, false, false }, { "1600-02-29", true, false, false, true, true },
		{ "2004-02-29", true, false, false, true, true },   { "2024-04-31", false, false, false, false, false },
		{ "2024-12-31", true, false, false, true, true },   { "2024-13-01", false, false, false, false, false },
		{ "2024-00-10", false, false, false, false, false }, { "2024-01-00", false, false, false, false, false },
		{ "0000-01-01", true, false, false, true, true },   { "2024/02/29", true, false, false, true, true },
		{ "2024-02/29", false, false, false, false, false }, { "2024-2-29", true, false, false, true, true },
		{ "2024-2-9", true, false, false, true, true },     { "2024-02-029", false, false, false, false, false },
		{ "24-02-29", true, false, false, true, true },     { "02-29-2024", false, false, false, false, false },
		{ "2024/2/29", false, false, false, false, false },  { "2024-02-29 ", true, false, false, true, true },
		{ "", false, false, false, false, false },          { "x-1-2", true, false, false, true, true },
		{ "2024-02-29 10:30", false, true, true, true, true }, { "2024-02-29T10:30", false, true, true, true, true },
		{ "2024-02-29 9:30", false, true, true, true, true },  { "2024-02-29 23:59", false, true, true, true, true },
		{ "2024-02-29 24:00", false, false, false, false, false }, { "2024-02-29 10:60", false, false, false, false, false },
		{ "2024-02-29 10:30:59", false, false, true, true, true }, { "2024-02-29T07:08:09", false, false, true, true, true },
		{ "2024-02-29 10:30:60", false, false, false, true, false }, { "2024-02-30 10:30", false, false, false, false, false },
		{ "2024-02-29  10:30", false, false, false, true, true }, { "2024-02-29 10:3", false, true, true, true, true },
		{ "2024-02-29 10:30Z", false, false, false, true, true }, { "2024-02-29 100:30", false, false, false, false, false },
		{ "2024-2-9 1:5", false, true, true, true, true },   { "2024-02-29 13", false, false, false, true, true },
		{ "2024-02-29 -1:00", false, false, false, false, false }, { "2024-02-29 1:2:3:4", false, false, false, true, true },
	};
	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
		bool a = redcap_check_date_ymd(dates[i].s), b = redcap_check_datetime_ymd(dates[i].s, false, false),
		     c = redcap_check_datetime_ymd(dates[i].s, true, false),
		     e = redcap_check_datetime_ymd(dates[i].s, false, true),
		     f = redcap_check_datetime_ymd(dates[i].s, true, true);
		if (a != dates[i].date || b != dates[i].dt || c != dates[i].dts || e != dates[i].pdt || f != dates[i].pdts) {
			fprintf(stderr, "  date case %zu \"%s\": %d %d %d %d %d\n", i, dates[i].s, a, b, c, e, f);
			harness_failures++;
		}
	}

	/* What REDCap saves (and quotes in an error line). */
	static const struct {
		redcap_vtype t;
		const char *s;
		bool pad;
		const char *out;
		bool ok;
	} norm[] = {
		{ REDCAP_V_DATE_YMD, "2024-1-2", false, "2024-01-02", true },
		{ REDCAP_V_DATE_DMY, " 2024-1-2 ", false, "2024-01-02", true },
		{ REDCAP_V_DATE_YMD, "2024/02/29", false, "2024/02/29", true },  /* saved with its slashes */
		{ REDCAP_V_DATE_YMD, "2024-13-1", false, "2024-13-01", false },
		{ REDCAP_V_DATE_YMD, "2024-1-2x", false, "2024-01-02", true },   /* PHP's (int) "2x" */
		{ REDCAP_V_DATE_YMD, "2024-01-02 10:00", false, "2024-01-02 10:00", false },
		{ REDCAP_V_DATETIME_YMD, "2024-01-02", true, "2024-01-02 00:00", true },
		{ REDCAP_V_DATETIME_YMD, "2024-01-02", false, "2024-01-02", false },
		{ REDCAP_V_DATETIME_SECONDS_YMD, "2024-01-02", true, "2024-01-02 00:00:00", true },
		{ REDCAP_V_DATETIME_YMD, "2024-01-02 13", true, "2024-01-02 00:00", true },  /* the hour is lost */
		{ REDCAP_V_DATETIME_YMD, "2024-1-2T9:5:59", true, "2024-01-02 09:05", true },
		{ REDCAP_V_DATETIME_YMD, "2024-1-2T9:5:59", false, "2024-1-2T9:5:59", false },
		{ REDCAP_V_DATETIME_SECONDS_MDY, "2024-01-02 10:00", false, "2024-01-02 10:00:00", true },
		{ REDCAP_V_DATETIME_YMD, "2024-01-02 25:00", false, "2024-01-02 25:00", false },
		{ REDCAP_V_DATETIME_YMD, "2024-01-02 10:60", false, "2024-01-02 10:60", false },
		{ REDCAP_V_DATETIME_YMD, "2024-1-32 1:00", false, "2024-01-32 01:00", false },
		{ REDCAP_V_DATETIME_YMD, "2024-01-02 99999999999999999999:00", true, "2024-01-02 99999999999999999999:00",
		  false },
	};
	for (size_t i = 0; i < sizeof(norm) / sizeof(norm[0]); i++) {
		bool ok;
		char *out = redcap_normalize_date(norm[i].t, norm[i].s, norm[i].pad, &ok);
		if (!out || strcmp(out, norm[i].out) != 0 || ok != norm[i].ok) {
			fprintf(stderr, "  normalize case %zu \"%s\": \"%s\" %d\n", i, norm[i].s, out ? out : "(null)", ok);
			harness_failures++;
		}
		free(out);
	}

	static const struct {
		const char *s;
		bool integer, number;
	} nums[] = {
		{ "0", true, true },      { "-12", true, true },    { "+7", true, true },    { "007", true, true },
		{ "", false, false },     { "-", false, false },    { "+", false, false },   { "1-", false, false },
		{ "1.5", false, true },   { ".5", false, true },    { "-.5e-3", false, true }, { "1.", false, false },
		{ "1e5", false, true },   { "1E+05", false, true }, { "1e", false, false },  { "1e+", false, false },
		{ "1,5", false, false },  { " 1", false, false },   { "0x10", false, false }, { "1.2.3", false, false },
		{ "Infinity", false, false }, { "NaN", false, false },
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		if (redcap_check_integer(nums[i].s) != nums[i].integer || redcap_check_number(nums[i].s) != nums[i].number) {
			fprintf(stderr, "  number case %zu \"%s\"\n", i, nums[i].s);
			harness_failures++;
		}
	}

	static const struct {
		const char *s;
		bool ok;
	} emails[] = {
		{ "jane.doe@example.org", true },   { "j+tag@mail.example.co.uk", true },
		{ "o'brien@example.ie", true },     { "x@y.museum", true },
		{ "\xc3\xbc@b\xc3\xbc" "cher.de", true },
		{ "jane@localhost", false },        { ".jane@example.org", false },
		{ "ja..ne@example.org", false },    { "jane@example..org", false },
		{ "jane@.example.org", false },     { "jane@example.o", false },
		{ "jane@example.c0m", false },      { "ja ne@example.org", false },
		{ "jane@exa mple.org", false },     { "jane@@example.org", false },
		{ "@example.org", false },          { "jane@", false },
		{ "jane@example.", false },         { "jane", false },
		{ "jane@1.2.3.4", false },          { "", false },
	};
	for (size_t i = 0; i < sizeof(emails) / sizeof(emails[0]); i++)
		if (redcap_check_email(emails[i].s) != emails[i].ok) {
			fprintf(stderr, "  email case %zu \"%s\"\n", i, emails[i].s);
			harness_failures++;
		}

	static const struct {
		redcap_vtype t;
		unsigned dp;
		const char *s;
		bool ok;
	} types[] = {
		{ REDCAP_V_NUMBER_DP, 2, "3.14", true },     { REDCAP_V_NUMBER_DP, 2, "3.1", false },
		{ REDCAP_V_NUMBER_DP, 2, "-0.50", true },    { REDCAP_V_NUMBER_DP, 2, "+0.50", false },
		{ REDCAP_V_NUMBER_DP, 2, ".50", false },     { REDCAP_V_NUMBER_DP, 4, "1.0000", true },
		{ REDCAP_V_NUMBER_COMMA, 0, "3,14", true },  { REDCAP_V_NUMBER_COMMA, 0, "3.14", false },
		{ REDCAP_V_NUMBER_DP_COMMA, 1, "-3,1", true }, { REDCAP_V_NUMBER_DP_COMMA, 1, "3,14", false },
		{ REDCAP_V_TIME, 0, "9:05", true },          { REDCAP_V_TIME, 0, "23:59", true },
		{ REDCAP_V_TIME, 0, "24:00", false },        { REDCAP_V_TIME, 0, "9:5", false },
		{ REDCAP_V_TIME, 0, "09:05:00", false },     { REDCAP_V_TIME_HH_MM_SS, 0, "9:05:00", true },
		{ REDCAP_V_TIME_HH_MM_SS, 0, "09:60:00", false }, { REDCAP_V_TIME_MM_SS, 0, "59:59", true },
		{ REDCAP_V_TIME_MM_SS, 0, "60:00", false },  { REDCAP_V_TIME_MM_SS, 0, "5:00", false },
		{ REDCAP_V_ZIPCODE, 0, "37212", true },      { REDCAP_V_ZIPCODE, 0, "37212-1234", true },
		{ REDCAP_V_ZIPCODE, 0, "3721", false },      { REDCAP_V_ZIPCODE, 0, "37212-12", false },
		{ REDCAP_V_PHONE, 0, "(615) 255-4000", true }, { REDCAP_V_PHONE, 0, "615-255-4000", true },
		{ REDCAP_V_PHONE, 0, "615.255.4000 x12", true }, { REDCAP_V_PHONE, 0, "6152554000 ext. 7", true },
		{ REDCAP_V_PHONE, 0, "123-456-7890", false }, { REDCAP_V_PHONE, 0, "615-155-4000", false },
		{ REDCAP_V_PHONE, 0, "615-255-400", false }, { REDCAP_V_PHONE, 0, "800-255-4000", true },
		{ REDCAP_V_PHONE_AUSTRALIA, 0, "(02) 9999 9999", true }, { REDCAP_V_PHONE_AUSTRALIA, 0, "0299999999", true },
		{ REDCAP_V_PHONE_AUSTRALIA, 0, "(09) 1234 5678", false },
		{ REDCAP_V_PHONE_UK, 0, "+44 1234 567890", true }, { REDCAP_V_PHONE_UK, 0, "020 7946 0958", true },
		{ REDCAP_V_PHONE_UK, 0, "+44 20 7946 0958", true }, { REDCAP_V_PHONE_UK, 0, "01234 567890 #123", true },
		{ REDCAP_V_PHONE_UK, 0, "12345", false },
		{ REDCAP_V_PHONE_FRANCE, 0, "01 23 45 67 89", true }, { REDCAP_V_PHONE_FRANCE, 0, "+33 1 23 45 67 89", true },
		{ REDCAP_V_PHONE_FRANCE, 0, "0123456789", true }, { REDCAP_V_PHONE_FRANCE, 0, "00 1 23", false },
		{ REDCAP_V_POSTALCODE_CANADA, 0, "K1A 0B1", true }, { REDCAP_V_POSTALCODE_CANADA, 0, "k1a0b1", true },
		{ REDCAP_V_POSTALCODE_CANADA, 0, "D1A 0B1", false },
		{ REDCAP_V_POSTALCODE_UK, 0, "SW1A 1AA", true }, { REDCAP_V_POSTALCODE_UK, 0, "EC1A 1BB", true },
		{ REDCAP_V_POSTALCODE_UK, 0, "sw1a 1aa", false }, { REDCAP_V_POSTALCODE_UK, 0, "SW1A 1AC", false },
		{ REDCAP_V_POSTALCODE_FRENCH, 0, "75001", true }, { REDCAP_V_POSTALCODE_FRENCH, 0, "99000", false },
		{ REDCAP_V_POSTALCODE_GERMANY, 0, "01067", true }, { REDCAP_V_POSTALCODE_GERMANY, 0, "00123", false },
		{ REDCAP_V_POSTALCODE_AUSTRALIA, 0, "2000", true }, { REDCAP_V_POSTALCODE_AUSTRALIA, 0, "200", false },
		{ REDCAP_V_ALPHA_ONLY, 0, "abcXYZ", true },  { REDCAP_V_ALPHA_ONLY, 0, "ab1", false },
		{ REDCAP_V_MRN_10D, 0, "0123456789", true }, { REDCAP_V_MRN_10D, 0, "123", false },
		{ REDCAP_V_MRN_GENERIC, 0, "AB-12_x", true }, { REDCAP_V_MRN_GENERIC, 0, "a b", false },
		{ REDCAP_V_VMRN, 0, "1234", true },          { REDCAP_V_VMRN, 0, "1234567890", false },
		{ REDCAP_V_SSN, 0, "123-45-6789", true },    { REDCAP_V_SSN, 0, "123456789", false },
		{ REDCAP_V_OTHER, 0, "anything at all", true }, { REDCAP_V_NONE, 0, "x", true },
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (redcap_check_vtype(types[i].t, types[i].dp, types[i].s) != types[i].ok) {
			fprintf(stderr, "  type case %zu \"%s\"\n", i, types[i].s);
			harness_failures++;
		}
}

static void test_values(void)
{
	redcap_dict d = REDCAP_DICT_NULL;
	REQUIRE(load_classic(&d));

	static const struct {
		const char *column, *value;
		int rc;
		const char *msg;
	} cases[] = {
		{ "sex", "0", 0, NULL },
		{ "sex", " 2 ", 0, NULL },
		{ "sex", "", 0, NULL },
		{ "sex", "   ", 0, NULL },
		{ "sex", "3", REDCAP_E_INVALID, "The value is not a valid category for sex" },
		{ "sex", "1.0", REDCAP_E_INVALID, "The value is not a valid category for sex" },
		{ "sex", "Male", REDCAP_E_INVALID, "The value is not a valid category for sex" },
		{ "smoker", "2", 0, NULL },
		{ "smoker", "-1", REDCAP_E_INVALID, "The value is not a valid category for smoker" },
		{ "consent", "1", 0, NULL },
		{ "consent", "Yes", REDCAP_E_INVALID, "The value is not a valid category for consent" },
		{ "alert_ok", "0", 0, NULL },
		{ "alert_ok", "2", REDCAP_E_INVALID, "The value is not a valid category for alert_ok" },
		{ "demographics_complete", "2", 0, NULL },
		{ "demographics_complete", "3", REDCAP_E_INVALID, "The value is not a valid category for demographics_complete" },
		{ "race___1", "1", 0, NULL },
		{ "race____99", "0", 0, NULL },
		{ "race___a_b", "1", 0, NULL },
		{ "race___1", "2", REDCAP_E_INVALID,
		  "race___1 is a checkbox field and thus can only have a value of '1' (checked) or '0' (unchecked)." },
		{ "race____99", "yes", REDCAP_E_INVALID,
		  "race____99 is a checkbox field and thus can only have a value of '1' (checked) or '0' (unchecked)." },
		{ "dob", "2024-02-29", 0, NULL },
		{ "dob", "2024/02/29", 0, NULL },
		{ "dob", "1899-12-31", 0, NULL },  /* below the minimum, no @FORCE-MINMAX: saved */
		{ "dob", "2023-02-29", REDCAP_E_INVALID, REDCAP_MSG_DATE },
		{ "dob", "02-29-2024", REDCAP_E_INVALID, REDCAP_MSG_DATE },  /* a date_mdy field still takes Y-M-D */
		{ "dob", "2024-02-29 10:00", REDCAP_E_INVALID, REDCAP_MSG_DATE },
		{ "vitals_date", "2024-01-02 03:04", 0, NULL },
		{ "vitals_date", "2024-01-02T03:04", 0, NULL },
		{ "vitals_date", "2024-01-02 03:04:05", REDCAP_E_INVALID, REDCAP_MSG_DATETIME },
		{ "vitals_date", "2024-01-02", REDCAP_E_INVALID, REDCAP_MSG_DATETIME },
		{ "vitals_date", "1999-12-31 23:59", 0, NULL },
		{ "heart_rate", "80", 0, NULL },
		{ "heart_rate", "20", 0, NULL },
		{ "heart_rate", "250", 0, NULL },
		{ "heart_rate", "+80", 0, NULL },
		{ "heart_rate", "19", REDCAP_E_INVALID, "heart_rate should not be less than the field minimum (20)" },
		{ "heart_rate", "-5", REDCAP_E_INVALID, "heart_rate should not be less than the field minimum (20)" },
		{ "heart_rate", "251", REDCAP_E_INVALID, "heart_rate should not be greater than the field maximum (250)" },
		{ "heart_rate", "80.0", REDCAP_E_INVALID, REDCAP_MSG_VALIDATION },
		{ "heart_rate", "1e2", REDCAP_E_INVALID, REDCAP_MSG_VALIDATION },
		{ "temp_c", "37.5", 0, NULL },
		{ "temp_c", "50.0", 0, NULL },  /* soft range */
		{ "temp_c", "37", REDCAP_E_INVALID, REDCAP_MSG_VALIDATION },
		{ "temp_c", "37.55", REDCAP_E_INVALID, REDCAP_MSG_VALIDATION },
		{ "weight_kg", ".5", 0, NULL },
		{ "weight_kg", "5e2", 0, NULL },
		{ "weight_kg", "0.4", REDCAP_E_INVALID, "weight_kg should not be less than the field minimum (0.5)" },
		{ "weight_kg", "5.01e2", REDCAP_E_INVALID, "weight_kg should not be greater than the field maximum (500)" },
		{ "weight_kg", "72.", REDCAP_E_INVALID, REDCAP_MSG_VALIDATION },
		{ "glucose", "5,4", 0, NULL },
		{ "glucose", "5.4", REDCAP_E_INVALID, REDCAP_MSG_VALIDATION },
		{ "lab_time", "9:05", 0, NULL },
		{ "lab_time", "24:00", REDCAP_E_INVALID, REDCAP_MSG_VALIDATION },
		{ "email", "jane.doe@example.org", 0, NULL },
		{ "email", "jane@localhost", REDCAP_E_INVALID, REDCAP_MSG_VALIDATION },
		{ "phone", "(615) 255-4000", 0, NULL },
		{ "phone", "555-1234", REDCAP_E_INVALID, REDCAP_MSG_VALIDATION },
		{ "mrn", "0123456789", 0, NULL },
		{ "mrn", "12345", REDCAP_E_INVALID, REDCAP_MSG_VALIDATION },
		/* Sliders: an integer in 0..100 unless the dictionary says otherwise, a hard check
		 * (REDCap 15.7.6 Classes/Records.php, data_import_tool_299/223/225). */
		{ "pain", "50", 0, NULL },
		{ "pain", "0", 0, NULL },
		{ "pain", "100", 0, NULL },
		{ "pain", "5.5", REDCAP_E_INVALID, "pain must be an integer" },
		{ "pain", "abc", REDCAP_E_INVALID, "pain must be an integer" },
		{ "pain", "101", REDCAP_E_INVALID, "pain should not be greater than the field maximum (100)" },
		{ "pain", "-1", REDCAP_E_INVALID, "pain should not be less than the field minimum (0)" },
		{ "lab_code", "whatever", 0, NULL },
		{ "comments", "free\ntext, \"any\"", 0, NULL },
		{ "bmi", "not a number", 0, NULL },     /* calculated: ignored */
		{ "lab_flag", "high", 0, NULL },        /* @CALCTEXT: ignored */
		{ "lab_pdf", "report.pdf", 0, NULL },   /* file: ignored */
		{ "nope", "1", REDCAP_E_UNKNOWN_FIELD, NULL },
		{ "race", "1", REDCAP_E_UNKNOWN_FIELD, NULL },
		{ "race___9", "1", REDCAP_E_UNKNOWN_FIELD, NULL },
		{ "desc_intro", "x", REDCAP_E_UNKNOWN_FIELD, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *msg = (char *)1;
		int rc = redcap_validate_value(&d, cases[i].column, cases[i].value, &msg);
		if (rc != cases[i].rc || (cases[i].msg ? !msg || strcmp(msg, cases[i].msg) != 0 : msg != NULL)) {
			fprintf(stderr, "  case %zu (%s=\"%s\"): rc %d \"%s\"\n", i, cases[i].column, cases[i].value, rc,
				msg ? msg : "(null)");
			harness_failures++;
		}
		free(msg);
	}
	char *msg;
	CHECK_INT(redcap_validate_value(&d, "sex", NULL, &msg), 0);
	CHECK_INT(redcap_validate_value(NULL, "sex", "1", &msg), -EINVAL);
	redcap_dict_deinit(&d);
}

/* Validate one row given as JSON text; check the errors in order. */
struct want {
	redcap_error_kind kind;
	const char *record, *field, *value, *message;
};

static void check_row(const redcap_dict *d, const char *row_json, const struct want *w, size_t n,
		      const struct want *warnings, size_t nw, int line)
{
	json_error_t je;
	json_t *row = json_loads(row_json, 0, &je);
	redcap_errors errs = REDCAP_ERRORS_NULL, warns = REDCAP_ERRORS_NULL;
	redcap_validate_opts o = { .warnings = &warns };

	if (!row) {
		fprintf(stderr, "test-validate.c:%d: bad test JSON: %s\n", line, je.text);
		harness_failures++;
		return;
	}
	int rc = redcap_validate_row(d, row, 7, &o, &errs);
	bool ok = rc == (n ? REDCAP_E_INVALID : 0) && errs.n == n && warns.n == nw;
	for (size_t i = 0; ok && i < n; i++) {
		const redcap_value_error *e = &errs.v[i];
		ok = e->kind == w[i].kind && e->row == 7 && strcmp(e->record, w[i].record) == 0 &&
		     strcmp(e->field, w[i].field) == 0 && strcmp(e->value, w[i].value) == 0 &&
		     strcmp(e->message, w[i].message) == 0;
	}
	for (size_t i = 0; ok && i < nw; i++)
		ok = strcmp(warns.v[i].field, warnings[i].field) == 0 && strcmp(warns.v[i].message, warnings[i].message) == 0;
	if (!ok) {
		fprintf(stderr, "test-validate.c:%d: rc %d, %zu errors, %zu warnings:\n", line, rc, errs.n, warns.n);
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "    [%d] \"%s\" \"%s\" \"%s\" \"%s\"\n", errs.v[i].kind, errs.v[i].record,
				errs.v[i].field, errs.v[i].value, errs.v[i].message);
		for (size_t i = 0; i < warns.n; i++)
			fprintf(stderr, "    warn \"%s\" \"%s\"\n", warns.v[i].field, warns.v[i].message);
		harness_failures++;
	}
	redcap_errors_deinit(&errs);
	redcap_errors_deinit(&warns);
	json_decref(row);
}

#define ROW(d, json, ...)                                                                     \
	do {                                                                                  \
		static const struct want w_[] = { __VA_ARGS__ };                              \
		check_row(d, json, w_, sizeof(w_) / sizeof(w_[0]) - 1, NULL, 0, __LINE__);    \
	} while (0)
#define OK_ROW(d, json) check_row(d, json, NULL, 0, NULL, 0, __LINE__)
#define END { 0 }

static void test_rows_classic(void)
{
	redcap_dict d = REDCAP_DICT_NULL;
	REQUIRE(load_classic(&d));

	OK_ROW(&d, "{\"record_id\":\"1\",\"first_name\":\"Jane\",\"dob\":\"1970-01-01\",\"sex\":\"1\",\"race___1\":\"1\","
		   "\"race___2\":\"0\",\"consent\":\"1\",\"demographics_complete\":\"2\",\"redcap_data_access_group\":\"\"}");
	/* A data access group: the dictionary knows none, so any name is
	 * refused, as REDCap refuses it on a project without groups
	 * (Classes/Records.php saveData: 220 + " " + the names). */
	ROW(&d, "{\"record_id\":\"1\",\"redcap_data_access_group\":\" dag_1 \",\"sex\":\"1\"}",
	    { REDCAP_ERR_REQUEST, "1", "redcap_data_access_group", "dag_1",
	      "The following Data Access Group are invalid for the redcap_data_access_group field: dag_1" },
	    END);
	OK_ROW(&d, "{\"record_id\":\"1\",\"redcap_repeat_instrument\":\"vitals\",\"redcap_repeat_instance\":\"1\","
		   "\"heart_rate\":\"80\",\"vitals_complete\":\"0\"}");
	OK_ROW(&d, "{\"record_id\":\"1\",\"redcap_repeat_instrument\":\"vitals\",\"redcap_repeat_instance\":\"new\","
		   "\"heart_rate\":\"\"}");
	/* Blank repeat columns on a non-repeating row are fine. */
	OK_ROW(&d, "{\"record_id\":\"1\",\"redcap_repeat_instrument\":\"\",\"redcap_repeat_instance\":\"\",\"sex\":\"0\"}");
	/* JSON numbers and null are read as text; blanks are always fine. */
	OK_ROW(&d, "{\"record_id\":5,\"sex\":1,\"first_name\":null,\"glucose\":\"\",\"heart_rate\":\"\"}");

	/* Record names. */
	ROW(&d, "{\"first_name\":\"x\"}",
	    { REDCAP_ERR_REQUEST, "", "record_id", "", "The record id field (record_id) is missing." }, END);
	/* Blank: a flat import names the record id field (212 + field + 213);
	 * "The record name cannot be empty." (211) is the EAV text. */
	ROW(&d, "{\"record_id\":\"  \",\"sex\":\"1\"}",
	    { REDCAP_ERR_REQUEST, "", "record_id", "", "The record id field (record_id) is missing." }, END);
	ROW(&d, "{\"record_id\":\"a+b\"}",
	    { REDCAP_ERR_REQUEST, "a+b", "record_id", "a+b",
	      "The record name (a+b) cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe." },
	    END);
	ROW(&d, "{\"record_id\":\"O'Neil\"}",
	    { REDCAP_ERR_REQUEST, "O'Neil", "record_id", "O'Neil",
	      "The record name (O'Neil) cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe." },
	    END);
	ROW(&d, "{\"record_id\":\"a<BR>b\"}",
	    { REDCAP_ERR_REQUEST, "a<BR>b", "record_id", "a<BR>b",
	      "Record names cannot contain BR tags, line breaks, or carriage return characters. The following record name contains a BR tag, line break, or carriage return, and thus cannot be imported: a\nb" },
	    END);
	/* br2nl() takes <br>, <br/>, <br /> only. */
	OK_ROW(&d, "{\"record_id\":\"a<bra>b\"}");
	ROW(&d, "{\"record_id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
	    { REDCAP_ERR_REQUEST, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	      "record_id", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	      "Record names must be 100 characters or less in length. The following record name is too long and thus cannot be imported: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" },
	    END);
	/* 100 bytes (PHP strlen) is fine: 50 x "é"; 51 are too many. */
	{
		char row[400] = "{\"record_id\":\"";
		for (int i = 0; i < 50; i++)
			strcat(row, "\xc3\xa9");
		strcat(row, "\"}");
		OK_ROW(&d, row);
		char row2[400] = "{\"record_id\":\"\xc3\xa9";
		strcat(row2, row + strlen("{\"record_id\":\""));
		json_t *j = json_loads(row2, 0, NULL);
		redcap_errors errs = REDCAP_ERRORS_NULL;
		CHECK_INT(redcap_validate_row(&d, j, 0, NULL, &errs), REDCAP_E_INVALID);
		CHECK(errs.n == 1 && strstr(errs.v[0].message, "Record names must be 100 characters or less") != NULL);
		redcap_errors_deinit(&errs);
		json_decref(j);
	}
	/* Trimmed like REDCap does. */
	OK_ROW(&d, "{\"record_id\":\"  12 \",\"sex\":\" 0\"}");

	/* Unknown fields: one whole-request error listing them. */
	ROW(&d, "{\"record_id\":\"1\",\"nope\":\"1\",\"race\":\"1\",\"desc_intro\":\"\",\"race___9\":\"1\",\"first_name\":\"a\","
		"\"demographics_timestamp\":\"2024-01-01 00:00:00\",\"redcap_survey_identifier\":\"\"}",
	    { REDCAP_ERR_REQUEST, "1", "nope, race, desc_intro, race___9", "",
	      "The following fields were not found in the project as real data fields: nope, race, desc_intro, race___9" },
	    END);

	/* The list is htmlspecialchars'd in the text (218 + " " + list). */
	ROW(&d, "{\"record_id\":\"1\",\"a&b\":\"1\",\"x'<y>\":\"\"}",
	    { REDCAP_ERR_REQUEST, "1", "a&b, x'<y>", "",
	      "The following fields were not found in the project as real data fields: a&amp;b, x&#039;&lt;y&gt;" },
	    END);

	/* Per-value errors, in column order, exact texts. */
	ROW(&d, "{\"record_id\":\"2\",\"sex\":\"9\",\"race___3\":\"x\",\"dob\":\"01/02/1970\",\"email\":\"bad\","
		"\"consent\":\"2\",\"first_name\":true}",
	    { REDCAP_ERR_VALUE, "2", "sex", "9", "The value is not a valid category for sex" },
	    { REDCAP_ERR_VALUE, "2", "race___3", "x",
	      "race___3 is a checkbox field and thus can only have a value of '1' (checked) or '0' (unchecked)." },
	    { REDCAP_ERR_VALUE, "2", "dob", "01/02/1970", REDCAP_MSG_DATE },
	    { REDCAP_ERR_VALUE, "2", "email", "bad", REDCAP_MSG_VALIDATION },
	    { REDCAP_ERR_VALUE, "2", "consent", "2", "The value is not a valid category for consent" },
	    { REDCAP_ERR_VALUE, "2", "first_name", "", "The value is not a JSON string or number." }, END);

	/* Repeating instrument rules. */
	ROW(&d, "{\"record_id\":\"3\",\"heart_rate\":\"80\",\"vitals_complete\":\"2\"}",
	    { REDCAP_ERR_VALUE, "3", "heart_rate", "80", MSG_REPEAT_FIELD("heart_rate", "vitals") },
	    { REDCAP_ERR_VALUE, "3", "vitals_complete", "2", MSG_REPEAT_FIELD("vitals_complete", "vitals") }, END);
	ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"vitals\",\"redcap_repeat_instance\":\"0\"}",
	    { REDCAP_ERR_REQUEST, "3", "redcap_repeat_instance", "0",
	      "The record name (3) has an invalid value for 'redcap_repeat_instance'. The value must either be a positive integer or the value 'new'. Value provided: 0" },
	    END);
	ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"vitals\",\"redcap_repeat_instance\":\"1.5\"}",
	    { REDCAP_ERR_REQUEST, "3", "redcap_repeat_instance", "1.5",
	      "The record name (3) has an invalid value for 'redcap_repeat_instance'. The value must either be a positive integer or the value 'new'. Value provided: 1.5" },
	    END);
	ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"vitals\",\"redcap_repeat_instance\":\"NEW\"}",
	    { REDCAP_ERR_REQUEST, "3", "redcap_repeat_instance", "NEW",
	      "The record name (3) has an invalid value for 'redcap_repeat_instance'. The value must either be a positive integer or the value 'new'. Value provided: NEW" },
	    END);
	OK_ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"vitals\",\"redcap_repeat_instance\":32767,"
		   "\"vitals_complete\":\"1\"}");
	/* Above 32767: a line of its own (Classes/Records.php saveData:
	 * "(redcap_repeat_instrument=\"i\") redcap_repeat_instance " + 286). */
	ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"vitals\",\"redcap_repeat_instance\":\"32768\","
		"\"heart_rate\":\"80\"}",
	    { REDCAP_ERR_VALUE, "3", "redcap_repeat_instance", "32768",
	      "(redcap_repeat_instrument=\"vitals\") " REDCAP_MSG_INSTANCE_RANGE },
	    END);
	/* An instance where no column of the row is on a repeating form:
	 * saveData's "isRepeatFormReally" finds nothing to repeat; this text
	 * replaces the range's. Not checked with overwriteBehavior=overwrite. */
	ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"vitals\",\"redcap_repeat_instance\":\"99999\"}",
	    { REDCAP_ERR_VALUE, "3", "redcap_repeat_instance", "99999", REDCAP_MSG_NOT_REPEATING_INSTANCE }, END);
	{
		json_t *j = json_loads("{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"vitals\","
				       "\"redcap_repeat_instance\":\"9\"}", 0, NULL);
		redcap_errors errs = REDCAP_ERRORS_NULL;
		redcap_validate_opts ow = { .overwrite = true };
		CHECK_INT(redcap_validate_row(&d, j, 0, &ow, &errs), 0);
		redcap_errors_deinit(&errs);
		json_decref(j);
	}
	/* As in the real answer of PyCap issue #154; the values are checked
	 * too (REDCap goes on with the row). */
	ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"demographics\",\"redcap_repeat_instance\":\"1\","
		"\"sex\":\"9\"}",
	    { REDCAP_ERR_VALUE, "3", "redcap_repeat_instrument", "demographics",
	      "redcap_repeat_instrument must be the unique form name of a Repeating Instrument. It currently does not match the unique form name of any Repeating Instruments.  Please fix this in the data import file and try again." },
	    { REDCAP_ERR_VALUE, "3", "redcap_repeat_instance", "1",
	      "redcap_repeat_instance cannot have a value since this instrument or event is not a repeating instrument or repeating event, respectively.  The redcap_repeat_instance field must be left blank for this row of data." },
	    { REDCAP_ERR_VALUE, "3", "sex", "9", "The value is not a valid category for sex" }, END);
	/* A field of a repeating form on a row of another (not repeating)
	 * instrument. */
	ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"demographics\",\"redcap_repeat_instance\":\"1\","
		"\"heart_rate\":\"x\"}",
	    { REDCAP_ERR_VALUE, "3", "redcap_repeat_instrument", "demographics", REDCAP_MSG_NOT_REPEATING_INSTRUMENT },
	    { REDCAP_ERR_VALUE, "3", "heart_rate", "x",
	      "This field ('heart_rate') does not exist on the Repeating Instrument named 'demographics'. You are not allowed to import data for this field into this Repeating Instrument." },
	    END);
	ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"nope\"}",
	    { REDCAP_ERR_VALUE, "3", "redcap_repeat_instrument", "nope", REDCAP_MSG_NOT_REPEATING_INSTRUMENT }, END);
	/* A classic project: a numeric instance without an instrument is a
	 * whole-request error (215 + record + 284 + ' "2" ' + 285). */
	ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instance\":\"2\",\"heart_rate\":\"80\"}",
	    { REDCAP_ERR_REQUEST, "3", "redcap_repeat_instance", "2",
	      "The record name (3) with redcap_repeat_instance \"2\" cannot be imported. This is because the field 'redcap_repeat_instrument' could not be found in the data import fields or because it has a blank value.  In order to import data for a repeating instrument, the field 'redcap_repeat_instrument' is required in the imported data set." },
	    { REDCAP_ERR_VALUE, "3", "redcap_repeat_instance", "2", REDCAP_MSG_NOT_REPEATING_INSTANCE },
	    { REDCAP_ERR_VALUE, "3", "heart_rate", "80", MSG_REPEAT_FIELD("heart_rate", "vitals") }, END);
	ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"vitals\",\"redcap_repeat_instance\":\"2\",\"first_name\":\"x\"}",
	    { REDCAP_ERR_VALUE, "3", "redcap_repeat_instance", "2", REDCAP_MSG_NOT_REPEATING_INSTANCE },
	    { REDCAP_ERR_VALUE, "3", "first_name", "x",
	      "This field ('first_name') does not exist on the Repeating Instrument named 'vitals'. You are not allowed to import data for this field into this Repeating Instrument." },
	    END);
	/* An instrument without an instance: the row is not a repeating one. */
	ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"vitals\",\"sex\":\"1\",\"heart_rate\":\"80\"}",
	    { REDCAP_ERR_VALUE, "3", "heart_rate", "80", MSG_REPEAT_FIELD("heart_rate", "vitals") }, END);
	/* A checkbox "0" is a box REDCap leaves alone: no placement error. */
	OK_ROW(&d, "{\"record_id\":\"3\",\"redcap_repeat_instrument\":\"vitals\",\"redcap_repeat_instance\":\"2\","
		   "\"heart_rate\":\"80\",\"race___1\":\"0\"}");

	/* Ignored columns and soft ranges are warnings, the row is fine. */
	{
		static const struct want w[] = {
			{ REDCAP_ERR_VALUE, "4", "dob", "", "dob is less than the field minimum (1900-01-01)" },
			{ REDCAP_ERR_VALUE, "4", "lab_pdf", "", "File Upload fields cannot be imported with records; the value is ignored." },
			{ REDCAP_ERR_VALUE, "4", "lab_flag", "", REDCAP_MSG_CALC_IGNORED },
		};
		check_row(&d, "{\"record_id\":\"4\",\"dob\":\"1899-12-31\",\"lab_pdf\":\"x.pdf\",\"lab_flag\":\"high\"}", NULL, 0,
			  w, 3, __LINE__);
	}

	/* A classic project ignores redcap_event_name, whatever it says (REDCap 15.7.6 Classes/Records.php
	 * never lists it as an unknown field and uses the first event). */
	OK_ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"no_such_event\",\"sex\":\"1\"}");

	/* A project without repeating instruments refuses repeat columns. */
	d.repeating = 0;
	ROW(&d, "{\"record_id\":\"1\",\"redcap_repeat_instance\":\"1\"}",
	    { REDCAP_ERR_REQUEST, "1", "redcap_repeat_instance", "", REDCAP_MSG_REPEAT_NOT_ENABLED }, END);
	CHECK(strstr(REDCAP_MSG_REPEAT_NOT_ENABLED, "have been  enabled") != NULL);  /* REDCap's double space */
	redcap_dict_deinit(&d);
}

/* A small classic project from CSV text: a slider with its own range and a checkbox on a repeating form. */
static void test_rows_small(void)
{
	static const char csv[] =
		"field_name,form_name,field_type,field_label,select_choices_or_calculations,"
		"text_validation_type_or_show_slider_number,text_validation_min,text_validation_max\n"
		"record_id,demo,text,ID,,,,\n"
		"score,demo,slider,Score,Low | | High,,1,10\n"
		"seen,demo,text,Seen,,datetime_seconds_ymd,,\n"
		"ae_term,ae,text,Term,,,,\n"
		"ae_kind,ae,checkbox,Kind,\"1, Local | 2, Systemic\",,,\n";
	const char *rep = "[{\"event_name\":\"\",\"form_name\":\"ae\",\"custom_form_label\":\"\"}]";
	redcap_dict d = REDCAP_DICT_NULL;
	redcap_project p = REDCAP_PROJECT_NULL;

	REQUIRE(redcap_dict_parse_csv(&d, csv, strlen(csv), NULL) == 0);
	p.longitudinal = 0;
	redcap_dict_set_project(&d, &p);
	REQUIRE(redcap_dict_load_repeating(&d, rep, strlen(rep), NULL) == 0);

	OK_ROW(&d, "{\"record_id\":\"1\",\"score\":\"1\"}");
	OK_ROW(&d, "{\"record_id\":\"1\",\"score\":\"10\"}");
	/* datetime_seconds without seconds: REDCap takes :00. */
	OK_ROW(&d, "{\"record_id\":\"1\",\"seen\":\"2024-01-02 10:00\"}");
	OK_ROW(&d, "{\"record_id\":\"1\",\"seen\":\"2024-01-02 10:00:59\"}");
	/* A date alone: REDCap would save it as 00:00:00; the bridge's rule
	 * (pad_time false, the default) refuses it with REDCap's message. */
	ROW(&d, "{\"record_id\":\"1\",\"seen\":\"2024-01-02\"}",
	    { REDCAP_ERR_VALUE, "1", "seen", "2024-01-02", REDCAP_MSG_DATETIME }, END);
	{
		json_t *j = json_loads("{\"record_id\":\"1\",\"seen\":\"2024-01-02\"}", 0, NULL);
		redcap_errors errs = REDCAP_ERRORS_NULL;
		redcap_validate_opts as_redcap = { .pad_time = true };
		CHECK_INT(redcap_validate_row(&d, j, 0, &as_redcap, &errs), 0);
		redcap_errors_deinit(&errs);
		json_decref(j);
	}
	/* The error line quotes the value as REDCap turned it. */
	ROW(&d, "{\"record_id\":\"1\",\"seen\":\"2024-1-2T25:00\"}",
	    { REDCAP_ERR_VALUE, "1", "seen", "2024-01-02 25:00:00", REDCAP_MSG_DATETIME }, END);
	ROW(&d, "{\"record_id\":\"1\",\"score\":\"0\"}",
	    { REDCAP_ERR_VALUE, "1", "score", "0", "score should not be less than the field minimum (1)" }, END);
	ROW(&d, "{\"record_id\":\"1\",\"score\":\"11\"}",
	    { REDCAP_ERR_VALUE, "1", "score", "11", "score should not be greater than the field maximum (10)" }, END);
	/* A checkbox column on a repeating form in a non-repeating row: REDCap quotes the column and, looking the
	 * column up as a field, names no form. */
	ROW(&d, "{\"record_id\":\"1\",\"ae_kind___2\":\"1\",\"ae_term\":\"x\"}",
	    { REDCAP_ERR_VALUE, "1", "ae_kind___2", "1", MSG_REPEAT_FIELD("ae_kind___2", "") },
	    { REDCAP_ERR_VALUE, "1", "ae_term", "x", MSG_REPEAT_FIELD("ae_term", "ae") }, END);
	redcap_dict_deinit(&d);
}

static void test_rows_longitudinal(void)
{
	redcap_dict d = REDCAP_DICT_NULL;
	REQUIRE(load_longitudinal(&d));

	OK_ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"baseline_arm_1\",\"first_name\":\"J\"}");
	/* Without an event name the first event is used. */
	OK_ROW(&d, "{\"record_id\":\"1\",\"first_name\":\"J\"}");
	ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"nope_arm_1\"}",
	    { REDCAP_ERR_REQUEST, "1", "redcap_event_name", "nope_arm_1",
	      "The following values of redcap_event_name are invalid: nope_arm_1" },
	    END);
	ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"visit_1_arm_1\",\"redcap_repeat_instance\":\"1\",\"first_name\":\"J\"}",
	    { REDCAP_ERR_VALUE, "1", "first_name", "J",
	      "This field ('first_name') exists on an instrument that is not designated for the event named 'Visit 1 (Arm 1: Main)'. You are not allowed to import data for this field into this event." },
	    END);
	/* A checkbox column is quoted as imported (REDCap 15.7.6 Classes/Records.php quotes $fieldname). */
	ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"visit_1_arm_1\",\"redcap_repeat_instance\":\"1\","
		"\"race___1\":\"1\"}",
	    { REDCAP_ERR_VALUE, "1", "race___1", "1",
	      "This field ('race___1') exists on an instrument that is not designated for the event named 'Visit 1 (Arm 1: Main)'. You are not allowed to import data for this field into this event." },
	    END);
	ROW(&d, "{\"record_id\":\"1\",\"glucose\":\"5,0\"}",
	    { REDCAP_ERR_VALUE, "1", "glucose", "5,0",
	      "This field ('glucose') exists on an instrument that is not designated for the event named 'Baseline (Arm 1: Main)'. You are not allowed to import data for this field into this event." },
	    END);
	/* A repeating event: instance only, no instrument. */
	OK_ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"visit_1_arm_1\",\"redcap_repeat_instance\":\"2\","
		   "\"glucose\":\"5,0\",\"heart_rate\":\"70\"}");
	ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"visit_1_arm_1\",\"redcap_repeat_instrument\":\"labs\","
		"\"redcap_repeat_instance\":\"2\"}",
	    { REDCAP_ERR_VALUE, "1", "redcap_repeat_instrument", "labs",
	      "(redcap_event_name=\"visit_1_arm_1\") " REDCAP_MSG_REPEAT_EVENT_INSTRUMENT },
	    END);
	/* ... and the event REDCap names is the first one when the row names none. */
	{
		redcap_dict d2 = REDCAP_DICT_NULL;
		REQUIRE(load_longitudinal(&d2));
		redcap_event tmp = d2.events[0];
		d2.events[0] = d2.events[1];
		d2.events[1] = tmp;
		ROW(&d2, "{\"record_id\":\"1\",\"redcap_repeat_instrument\":\"labs\",\"redcap_repeat_instance\":\"2\","
			 "\"glucose\":\"5,0\"}",
		    { REDCAP_ERR_VALUE, "1", "redcap_repeat_instrument", "labs",
		      "(redcap_event_name=\"visit_1_arm_1\") " REDCAP_MSG_REPEAT_EVENT_INSTRUMENT },
		    END);
		/* Above 32767 on a longitudinal project: the event is named. */
		ROW(&d2, "{\"record_id\":\"1\",\"redcap_repeat_instance\":\"40000\",\"glucose\":\"5,0\"}",
		    { REDCAP_ERR_VALUE, "1", "redcap_repeat_instance", "40000",
		      "(redcap_event_name=\"visit_1_arm_1\") " REDCAP_MSG_INSTANCE_RANGE },
		    END);
		redcap_dict_deinit(&d2);
	}
	/* A repeating event's row without a redcap_repeat_instance column. */
	ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"visit_1_arm_1\",\"glucose\":\"5,0\"}",
	    { REDCAP_ERR_REQUEST, "1", "redcap_repeat_instance", "",
	      "The record name (1) with event \"visit_1_arm_1\" cannot be imported. This is because this event is a repeating event, but the field 'redcap_repeat_instance' could not be found in the data import fields.  In order to import data for a repeating event, the field 'redcap_repeat_instance' is required in the imported data set." },
	    END);
	OK_ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"visit_1_arm_1\",\"redcap_repeat_instance\":\"\",\"glucose\":\"5,0\"}");
	/* A blank event name (the column is there) is no first event. */
	ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\" \",\"first_name\":\"J\"}",
	    { REDCAP_ERR_REQUEST, "1", "redcap_event_name", "", "The record event name is missing." }, END);
	/* A checkbox "0" on a form of another event: REDCap still refuses it
	 * (the form/event check runs on "0"), unless overwriteBehavior=overwrite. */
	ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"visit_1_arm_1\",\"redcap_repeat_instance\":\"1\","
		"\"race___1\":\"0\"}",
	    { REDCAP_ERR_VALUE, "1", "race___1", "0",
	      "This field ('race___1') exists on an instrument that is not designated for the event named 'Visit 1 (Arm 1: Main)'. You are not allowed to import data for this field into this event." },
	    END);
	{
		json_t *j = json_loads("{\"record_id\":\"1\",\"redcap_event_name\":\"visit_1_arm_1\","
				       "\"redcap_repeat_instance\":\"1\",\"race___1\":\"0\",\"race___2\":\"1\"}", 0, NULL);
		redcap_errors errs = REDCAP_ERRORS_NULL;
		redcap_validate_opts ow = { .overwrite = true };
		CHECK_INT(redcap_validate_row(&d, j, 0, &ow, &errs), REDCAP_E_INVALID);
		CHECK(errs.n == 1 && strcmp(errs.v[0].field, "race___2") == 0);
		redcap_errors_deinit(&errs);
		json_decref(j);
	}
	/* A placement error replaces the value's (one line per column). */
	ROW(&d, "{\"record_id\":\"1\",\"glucose\":\"x\"}",
	    { REDCAP_ERR_VALUE, "1", "glucose", "x",
	      "This field ('glucose') exists on an instrument that is not designated for the event named 'Baseline (Arm 1: Main)'. You are not allowed to import data for this field into this event." },
	    END);
	/* A repeating instrument in baseline. */
	OK_ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"baseline_arm_1\",\"redcap_repeat_instrument\":\"vitals\","
		   "\"redcap_repeat_instance\":\"3\",\"heart_rate\":\"70\"}");
	ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"baseline_arm_1\",\"redcap_repeat_instance\":\"2\",\"first_name\":\"J\"}",
	    { REDCAP_ERR_VALUE, "1", "redcap_repeat_instance", "2", REDCAP_MSG_NOT_REPEATING_INSTANCE }, END);
	ROW(&d, "{\"record_id\":\"1\",\"redcap_event_name\":\"baseline_arm_1\",\"heart_rate\":\"70\"}",
	    { REDCAP_ERR_VALUE, "1", "heart_rate", "70", MSG_REPEAT_FIELD("heart_rate", "vitals") }, END);
	redcap_dict_deinit(&d);
}

static void test_rows_batch(void)
{
	redcap_dict d = REDCAP_DICT_NULL;
	REQUIRE(load_classic(&d));
	json_t *rows = json_loads("[{\"record_id\":\"1\",\"sex\":\"1\"},"
				  "{\"record_id\":\"2\",\"sex\":\"7\",\"heart_rate\":\"x\"},"
				  "[\"not\",\"an\",\"object\"],"
				  "{\"record_id\":\"4\",\"first_name\":\"ok\"}]",
				  0, NULL);
	REQUIRE(rows);
	redcap_errors errs = REDCAP_ERRORS_NULL;
	bool bad[4] = { true, false, false, true };
	CHECK_INT(redcap_validate_rows(&d, rows, NULL, &errs, bad), 2);
	CHECK(!bad[0] && bad[1] && bad[2] && !bad[3]);
	REQUIRE(errs.n == 3);
	CHECK(errs.v[0].row == 1 && strcmp(errs.v[0].field, "sex") == 0);
	/* heart_rate "x": its placement message replaced the format's. */
	CHECK(errs.v[1].row == 1 && strcmp(errs.v[1].field, "heart_rate") == 0 &&
	      strcmp(errs.v[1].message, MSG_REPEAT_FIELD("heart_rate", "vitals")) == 0);
	CHECK(errs.v[2].row == 2 && errs.v[2].kind == REDCAP_ERR_REQUEST &&
	      strcmp(errs.v[2].message, "The row is not a JSON object.") == 0);

	/* The list renders the way REDCap writes it. */
	char *text = redcap_errors_format(&errs);
	static const char first[] = "\"2\",\"sex\",\"7\",\"The value is not a valid category for sex\"\n";
	CHECK(text && strncmp(text, first, sizeof(first) - 1) == 0);
	free(text);
	redcap_errors_deinit(&errs);

	CHECK_INT(redcap_validate_rows(&d, json_array_get(rows, 0), NULL, &errs, NULL), -EINVAL);
	CHECK_INT(redcap_validate_row(&d, json_array_get(rows, 2), 0, NULL, &errs), -EINVAL);
	redcap_dict empty = REDCAP_DICT_NULL;
	CHECK_INT(redcap_validate_row(&empty, json_array_get(rows, 0), 0, NULL, &errs), -EINVAL);
	json_decref(rows);
	redcap_dict_deinit(&d);
}

static const struct harness_test tests[] = {
	HARNESS_TEST(test_formats),           HARNESS_TEST(test_values), HARNESS_TEST(test_rows_classic),
	HARNESS_TEST(test_rows_small),        HARNESS_TEST(test_rows_longitudinal), HARNESS_TEST(test_rows_batch),
};

int main(int argc, char **argv)
{
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
