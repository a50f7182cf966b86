/* Tests for bridge/backoff.c: the retry delays of the pull and the push. */
#include "bridge/backoff.h"

#include <stdint.h>

#include "tests/harness.h"

/* Each delay lies in [d/2, d] for d = base * 2^(attempt-1), capped. */
static void test_ranges(void)
{
	uint64_t rng = 12345;
	for (unsigned attempt = 1; attempt <= 12; attempt++) {
		uint64_t d = 500;
		for (unsigned i = 1; i < attempt && d < 30000; i++)
			d *= 2;
		if (d > 30000)
			d = 30000;
		uint64_t lo = UINT64_MAX, hi = 0;
		for (int k = 0; k < 2000; k++) {
			uint64_t x = backoff_delay_ms(attempt, 500, 30000, -1, &rng);
			lo = x < lo ? x : lo;
			hi = x > hi ? x : hi;
		}
		CHECK(lo >= d / 2);
		CHECK(hi <= d);
		/* The jitter spreads: 2000 draws cover most of the range. */
		CHECK(hi - lo >= (d / 2) * 8 / 10);
	}
}

static void test_retry_after_and_cap(void)
{
	uint64_t rng = 1;
	CHECK_INT(backoff_delay_ms(1, 500, 30000, 7000, &rng), 7000);
	CHECK_INT(backoff_delay_ms(9, 500, 30000, 0, &rng), 0);
	CHECK_INT(backoff_delay_ms(1, 500, 30000, 3600000, &rng), 30000);
	/* base 1 ms: [d/2, d] = [0, 1]. */
	CHECK(backoff_delay_ms(1, 1, 1, -1, &rng) <= 1);
}

static void test_rng_moves(void)
{
	uint64_t s = 42, a = backoff_rng(&s), b = backoff_rng(&s);
	CHECK(a != b);
	CHECK(s != 42);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_ranges),
		HARNESS_TEST(test_retry_after_and_cap),
		HARNESS_TEST(test_rng_moves),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
