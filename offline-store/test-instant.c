/* Tests for offline-store/instant.c: FHIR instants to comparable microseconds. */
#include <errno.h>
#include <stdint.h>

#include "offline-store/instant.h"
#include "tests/harness.h"

static int64_t us_of(const char *s)
{
	int64_t v = INT64_MIN;
	CHECK_INT(store_instant_parse(s, &v), 0);
	return v;
}

static void test_epoch_and_known_values(void)
{
	CHECK_INT(us_of("1970-01-01T00:00:00Z"), 0);
	CHECK_INT(us_of("1970-01-01T00:00:01Z"), 1000000);
	/* date -u -d 2024-02-29T12:34:56Z +%s = 1709210096 */
	CHECK_INT(us_of("2024-02-29T12:34:56Z"), 1709210096LL * 1000000);
	/* date -u -d 2000-03-01T00:00:00Z +%s = 951868800 (after a /400 leap day) */
	CHECK_INT(us_of("2000-03-01T00:00:00Z"), 951868800LL * 1000000);
	/* date -u -d 1969-12-31T23:59:59Z +%s = -1 */
	CHECK_INT(us_of("1969-12-31T23:59:59Z"), -1000000);
	/* the FHIR range ends */
	CHECK_INT(us_of("0001-01-01T00:00:00Z"), -62135596800LL * 1000000);
	CHECK_INT(us_of("9999-12-31T23:59:59.999999Z"), 253402300799LL * 1000000 + 999999);
}

static void test_offsets(void)
{
	CHECK_INT(us_of("2024-01-02T01:00:00+01:00"), us_of("2024-01-02T00:00:00Z"));
	CHECK_INT(us_of("2024-01-01T22:00:00-02:00"), us_of("2024-01-02T00:00:00Z"));
	CHECK_INT(us_of("2024-01-02T00:00:00+00:00"), us_of("2024-01-02T00:00:00Z"));
	CHECK_INT(us_of("2024-01-02T05:30:00+05:30"), us_of("2024-01-02T00:00:00Z"));
	CHECK_INT(us_of("2024-01-02T14:00:00+14:00"), us_of("2024-01-02T00:00:00Z"));
	/* Lexically smaller but later: string comparison would get these wrong. */
	CHECK(us_of("2024-01-01T23:00:00-02:00") > us_of("2024-01-02T00:30:00Z"));
	CHECK(us_of("2024-01-02T00:30:00+01:00") < us_of("2024-01-02T00:00:00Z"));
}

static void test_fractions(void)
{
	CHECK_INT(us_of("2024-01-02T00:00:00.5Z") - us_of("2024-01-02T00:00:00Z"), 500000);
	CHECK_INT(us_of("2024-01-02T00:00:00.500Z"), us_of("2024-01-02T00:00:00.5Z"));
	CHECK_INT(us_of("2024-01-02T00:00:00.000001Z") - us_of("2024-01-02T00:00:00Z"), 1);
	/* beyond microseconds is ignored */
	CHECK_INT(us_of("2024-01-02T00:00:00.123456789Z"), us_of("2024-01-02T00:00:00.123456Z"));
	CHECK(us_of("2024-01-02T00:00:00.1Z") > us_of("2024-01-02T00:00:00.09999Z"));
	/* leap second counts as the next second */
	CHECK_INT(us_of("2016-12-31T23:59:60Z"), us_of("2017-01-01T00:00:00Z"));
}

static void test_invalid(void)
{
	static const char *const bad[] = {
		"",
		"2024",
		"2024-01-02",
		"2024-01-02T00:00:00",       /* no zone */
		"2024-01-02T00:00Z",         /* no seconds */
		"2024-01-02 00:00:00Z",      /* space for T */
		"2024-13-02T00:00:00Z",      /* month 13 */
		"2024-00-02T00:00:00Z",
		"2023-02-29T00:00:00Z",      /* not a leap year */
		"1900-02-29T00:00:00Z",      /* /100 is not leap */
		"2024-04-31T00:00:00Z",
		"2024-01-02T24:00:00Z",
		"2024-01-02T00:60:00Z",
		"2024-01-02T00:00:61Z",
		"2024-01-02T00:00:00.Z",     /* empty fraction */
		"2024-01-02T00:00:00+15:00", /* offset too large */
		"2024-01-02T00:00:00+14:30",
		"2024-01-02T00:00:00+01:60",
		"2024-01-02T00:00:00+0100",
		"2024-01-02T00:00:00+01",
		"2024-01-02T00:00:00Zjunk",
		"2024-01-02T00:00:00z",
		"0000-01-02T00:00:00Z",
		"+2024-01-02T00:00:00Z",
		"2024-1-02T00:00:00Z",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t v = 42;
		int rc = store_instant_parse(bad[i], &v);
		if (rc != -EINVAL)
			fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
		CHECK_INT(rc, -EINVAL);
		CHECK_INT(v, 42);
	}
	int64_t v = 0;
	CHECK_INT(store_instant_parse(NULL, &v), -EINVAL);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_epoch_and_known_values),
		HARNESS_TEST(test_offsets),
		HARNESS_TEST(test_fractions),
		HARNESS_TEST(test_invalid),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
