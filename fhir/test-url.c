/*
 * Table-driven tests for fhir_search_url(), fhir_resolve_url(),
 * fhir_retry_after(), fhir_format_instant() and fhir_parse_instant().
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir.h"
#include "tests/harness.h"

struct search_case {
	const char *base, *type;
	unsigned count;
	const char *since, *want;
};

static void test_search_url(void)
{
	static const struct search_case cases[] = {
		{ "http://h/fhir", "Observation", 500, NULL,
		  "http://h/fhir/Observation?_count=500&_sort=_lastUpdated" },
		{ "http://h/fhir/", "Patient", 10, "2024-01-02T03:04:05.678+02:00",
		  "http://h/fhir/Patient?_count=10&_sort=_lastUpdated"
		  "&_lastUpdated=ge2024-01-02T03%3A04%3A05.678%2B02%3A00" },
		{ "https://ehr.example.org:8443/r4//", "Condition", 1, "2024-01-02T03:04:05Z",
		  "https://ehr.example.org:8443/r4/Condition?_count=1&_sort=_lastUpdated"
		  "&_lastUpdated=ge2024-01-02T03%3A04%3A05Z" },
		{ "http://h", "Encounter", 4294967295u, "2024-01-02T03:04:05-05:00",
		  "http://h/Encounter?_count=4294967295&_sort=_lastUpdated"
		  "&_lastUpdated=ge2024-01-02T03%3A04%3A05-05%3A00" },
		{ "http://h", "Odd Type&x", 5, "a b~_.", "http://h/Odd%20Type%26x?_count=5&_sort=_lastUpdated"
							  "&_lastUpdated=gea%20b~_." },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *u = fhir_search_url(cases[i].base, cases[i].type, cases[i].count, cases[i].since);
		CHECK_STR(u, cases[i].want);
		free(u);
	}
	CHECK(fhir_search_url(NULL, "Patient", 1, NULL) == NULL);
	CHECK(fhir_search_url("http://h", NULL, 1, NULL) == NULL);
}

struct resolve_case {
	const char *base, *link, *want;
};

static void test_resolve_url(void)
{
	static const char b[] = "http://h:8080/fhir/R4/Observation?_count=10&_sort=_lastUpdated#top";
	static const struct resolve_case cases[] = {
		/* Absolute links are returned as they are. */
		{ b, "https://other.example/fhir?page=2&x=%2B1", "https://other.example/fhir?page=2&x=%2B1" },
		{ b, "urn:x:y", "urn:x:y" },
		/* Absolute path: base's origin. */
		{ b, "/fhir/R4/Observation?page=2", "http://h:8080/fhir/R4/Observation?page=2" },
		{ b, "/", "http://h:8080/" },
		/* Relative path: merged with base's directory. */
		{ b, "Observation?_count=10&_offset=10", "http://h:8080/fhir/R4/Observation?_count=10&_offset=10" },
		{ b, "Observation?date=ge2024-01-01T00%3A00%3A00%2B01%3A00",
		  "http://h:8080/fhir/R4/Observation?date=ge2024-01-01T00%3A00%3A00%2B01%3A00" },
		{ b, "./Patient", "http://h:8080/fhir/R4/Patient" },
		{ b, "../R5/Patient?x=1", "http://h:8080/fhir/R5/Patient?x=1" },
		{ b, "../../../../x", "http://h:8080/x" },
		{ b, "a/b/..", "http://h:8080/fhir/R4/a/" },
		/* Dots and slashes in the query are opaque. */
		{ b, "Observation?x=/./../y", "http://h:8080/fhir/R4/Observation?x=/./../y" },
		/* Query only: base's path, new query; fragment only; empty. */
		{ b, "?_offset=20", "http://h:8080/fhir/R4/Observation?_offset=20" },
		{ b, "#frag", "http://h:8080/fhir/R4/Observation?_count=10&_sort=_lastUpdated#frag" },
		{ b, "", "http://h:8080/fhir/R4/Observation?_count=10&_sort=_lastUpdated" },
		/* Network-path reference. */
		{ b, "//cdn.example/x?y", "http://cdn.example/x?y" },
		/* A base without a path, and one whose query holds a '/'. */
		{ "http://h", "Observation?x", "http://h/Observation?x" },
		{ "http://h?q=1", "Observation?x", "http://h/Observation?x" },
		{ "http://h/fhir/Obs?u=a/b/c", "Obs?p=2", "http://h/fhir/Obs?p=2" },
		{ "http://h/fhir/", "Patient?x=1", "http://h/fhir/Patient?x=1" },
		/* Nothing to resolve against. */
		{ NULL, "Patient?x=1", "Patient?x=1" },
		{ "not a url", "Patient?x=1", "Patient?x=1" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *u = fhir_resolve_url(cases[i].base, cases[i].link);
		if (!u || strcmp(u, cases[i].want) != 0) {
			fprintf(stderr, "  case %zu: \"%s\" want \"%s\"\n", i, u ? u : "(null)", cases[i].want);
			harness_failures++;
		}
		free(u);
	}
	CHECK(fhir_resolve_url(b, NULL) == NULL);
}

struct retry_case {
	const char *value;
	time_t now;
	int rc;
	long seconds;
};

static void test_retry_after(void)
{
	const time_t rfc = 784111777;    /* Sun, 06 Nov 1994 08:49:37 GMT */
	const time_t y2026 = 1767225600; /* Thu, 01 Jan 2026 00:00:00 GMT */
	const struct retry_case cases[] = {
		{ "120", rfc, 0, 120 },
		{ " \t5 ", rfc, 0, 5 },
		{ "0", rfc, 0, 0 },
		{ "99999999999999999999999999", rfc, 0, LONG_MAX },
		{ "Sun, 06 Nov 1994 08:51:37 GMT", rfc, 0, 120 },
		{ "Sunday, 06-Nov-94 08:51:37 GMT", rfc, 0, 120 },
		{ "Sun Nov  6 08:51:37 1994", rfc, 0, 120 },
		{ "Sun Nov 16 08:49:37 1994", rfc, 0, 864000 },
		{ "Sun, 06 Nov 1994 08:48:37 GMT", rfc, 0, 0 },   /* in the past */
		{ "Sat, 31 Dec 2016 23:59:60 GMT", 1483228799, 0, 1 }, /* a leap second */
		{ "Sunday, 01-Feb-26 00:00:00 GMT", y2026, 0, 31 * 86400 },
		/* Two-digit years: within 50 years ahead, or else the past century. */
		{ "Thursday, 01-Jan-70 00:00:00 GMT", y2026, 0, 1388534400 },  /* 2070 */
		{ "Friday, 01-Jan-99 00:00:00 GMT", y2026, 0, 0 },
		{ "", rfc, FHIR_E_SHAPE, 0 },
		{ "  ", rfc, FHIR_E_SHAPE, 0 },
		{ "-5", rfc, FHIR_E_SHAPE, 0 },
		{ "5s", rfc, FHIR_E_SHAPE, 0 },
		{ "1.5", rfc, FHIR_E_SHAPE, 0 },
		{ "Sun, 06 Nov 1994 08:49:37 UTC", rfc, FHIR_E_SHAPE, 0 },
		{ "Sun, 31 Nov 1994 08:49:37 GMT", rfc, FHIR_E_SHAPE, 0 },
		{ "Sun, 06 Nov 1994 24:00:00 GMT", rfc, FHIR_E_SHAPE, 0 },
		{ "sun, 06 nov 1994 08:49:37 GMT", rfc, FHIR_E_SHAPE, 0 },
		{ "Sun, 6 Nov 1994 08:49:37 GMT", rfc, FHIR_E_SHAPE, 0 },
		{ "Sun, 06 Nov 1994 08:49:37 GMT x", rfc, FHIR_E_SHAPE, 0 },
		{ "Sun Nov 6 08:49:37 1994", rfc, FHIR_E_SHAPE, 0 },
		{ "1994-11-06T08:49:37Z", rfc, FHIR_E_SHAPE, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long s = -42;
		int rc = fhir_retry_after(cases[i].value, cases[i].now, &s);
		if (rc != cases[i].rc || (rc == 0 && s != cases[i].seconds)) {
			fprintf(stderr, "  case %zu (\"%s\"): rc %d, %ld s; want rc %d, %ld s\n", i, cases[i].value, rc,
				s, cases[i].rc, cases[i].seconds);
			harness_failures++;
		}
	}
	long s;
	CHECK_INT(fhir_retry_after(NULL, rfc, &s), FHIR_E_SHAPE);
}

struct instant_case {
	int64_t ms;
	const char *text;
};

static void test_format_instant(void)
{
	static const struct instant_case cases[] = {
		{ 0, "1970-01-01T00:00:00.000Z" },
		{ 1764392462123, "2025-11-29T05:01:02.123Z" },
		{ -1, "1969-12-31T23:59:59.999Z" },
		{ 951825600000, "2000-02-29T12:00:00.000Z" },
		{ 253402300799999, "9999-12-31T23:59:59.999Z" },
		{ -62135596800000, "0001-01-01T00:00:00.000Z" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[FHIR_INSTANT_MAX];
		fhir_format_instant(cases[i].ms, out);
		CHECK_STR(out, cases[i].text);
	}
	/* Extremes stay within the buffer. */
	char out[FHIR_INSTANT_MAX];
	fhir_format_instant(INT64_MAX, out);
	CHECK(strlen(out) < FHIR_INSTANT_MAX);
	fhir_format_instant(INT64_MIN, out);
	CHECK(strlen(out) < FHIR_INSTANT_MAX);
}

struct parse_case {
	const char *text;
	int rc;
	int64_t ms;
};

static void test_parse_instant(void)
{
	static const struct parse_case cases[] = {
		{ "2024-01-02T03:04:05.678Z", 0, 1704164645678 },
		{ "2024-01-02T03:04:05+02:00", 0, 1704157445000 },
		{ "2024-01-02T03:04:05-05:30", 0, 1704184445000 },
		{ "2024-01-02T03:04:05.6789123Z", 0, 1704164645678 },
		{ "2024-01-02T03:04:05.6Z", 0, 1704164645600 },
		{ "2024", 0, 1704067200000 },
		{ "2024-02", 0, 1706745600000 },
		{ "2024-02-29", 0, 1709164800000 },
		{ "1970-01-01T00:00:00Z", 0, 0 },
		{ "1969-12-31T23:59:59.999Z", 0, -1 },
		{ "0001-01-01T00:00:00Z", 0, -62135596800000 },
		{ "2023-02-29", FHIR_E_SHAPE, 0 },
		{ "2024-13-01", FHIR_E_SHAPE, 0 },
		{ "2024-00", FHIR_E_SHAPE, 0 },
		{ "2024-1-02", FHIR_E_SHAPE, 0 },
		{ "2024-01-02T03:04:05", FHIR_E_SHAPE, 0 },  /* a time needs an offset */
		{ "2024-01-02T03:04Z", FHIR_E_SHAPE, 0 },
		{ "2024-01-02T03:04:05.Z", FHIR_E_SHAPE, 0 },
		{ "2024-01-02T24:00:00Z", FHIR_E_SHAPE, 0 },
		{ "2024-01-02T03:04:05+2:00", FHIR_E_SHAPE, 0 },
		{ "2024-01-02T03:04:05+15:00", FHIR_E_SHAPE, 0 },
		{ "2024-01-02T03:04:05Zjunk", FHIR_E_SHAPE, 0 },
		{ "2024-01-02 03:04:05Z", FHIR_E_SHAPE, 0 },
		{ "0000", FHIR_E_SHAPE, 0 },
		{ "", FHIR_E_SHAPE, 0 },
		{ "24", FHIR_E_SHAPE, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t ms = 42;
		int rc = fhir_parse_instant(cases[i].text, &ms);
		if (rc != cases[i].rc || (rc == 0 && ms != cases[i].ms)) {
			fprintf(stderr, "  case %zu (\"%s\"): rc %d, %lld; want rc %d, %lld\n", i, cases[i].text, rc,
				(long long)ms, cases[i].rc, (long long)cases[i].ms);
			harness_failures++;
		}
	}
	int64_t ms;
	CHECK_INT(fhir_parse_instant(NULL, &ms), FHIR_E_SHAPE);

	/* format -> parse round trips over four centuries. */
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < 20000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		int64_t t = (int64_t)(x % 12622780800000ull) - 2208988800000;  /* 1900..2300 */
		char out[FHIR_INSTANT_MAX];
		fhir_format_instant(t, out);
		int64_t back = 0;
		if (fhir_parse_instant(out, &back) != 0 || back != t) {
			fprintf(stderr, "  round trip %lld -> %s -> %lld\n", (long long)t, out, (long long)back);
			harness_failures++;
			break;
		}
	}
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_search_url),
		HARNESS_TEST(test_resolve_url),
		HARNESS_TEST(test_retry_after),
		HARNESS_TEST(test_format_instant),
		HARNESS_TEST(test_parse_instant),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
