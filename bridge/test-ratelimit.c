#include "bridge/ratelimit.h"

#include <errno.h>

#include "tests/harness.h"

/* Count the requests a greedy client gets through in [0, span_ms), and the
 * most in any window, with time advancing in 1 ms steps. */
static void test_never_more_than_limit_in_any_window(void)
{
	ratelimit rl;
	REQUIRE(ratelimit_init(&rl, 10, 1000) == 0);
	uint64_t times[200];
	size_t n = 0;
	for (uint64_t t = 0; t < 5000 && n < 200; t++) {
		while (ratelimit_delay(&rl, t) == 0 && n < 200) {
			ratelimit_record(&rl, t);
			times[n++] = t;
		}
	}
	/* 10 per second over 5 s: 50 requests, bursts at 0, 1000, 2000, ... */
	CHECK_INT(n, 50);
	for (size_t i = 10; i < n; i++)
		CHECK(times[i] - times[i - 10] >= 1000);
	CHECK_INT(times[0], 0);
	CHECK_INT(times[9], 0);
	CHECK_INT(times[10], 1000);
	ratelimit_deinit(&rl);
}

static void test_delay_values(void)
{
	ratelimit rl;
	REQUIRE(ratelimit_init(&rl, 3, 60000) == 0);
	CHECK_INT(ratelimit_delay(&rl, 0), 0);
	ratelimit_record(&rl, 100);
	ratelimit_record(&rl, 200);
	CHECK_INT(ratelimit_delay(&rl, 250), 0);
	ratelimit_record(&rl, 300);
	CHECK_INT(ratelimit_delay(&rl, 300), 59800);   /* until 100 + 60000 */
	CHECK_INT(ratelimit_delay(&rl, 60100), 0);
	ratelimit_record(&rl, 60100);
	CHECK_INT(ratelimit_delay(&rl, 60100), 100);   /* next oldest: 200 */
	ratelimit_deinit(&rl);
	ratelimit_deinit(&rl); /* idempotent */
}

static void test_bad_arguments(void)
{
	ratelimit rl;
	CHECK_INT(ratelimit_init(&rl, 0, 1000), -EINVAL);
	CHECK_INT(ratelimit_init(&rl, 5, 0), -EINVAL);
	ratelimit_deinit(&rl);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_never_more_than_limit_in_any_window),
		HARNESS_TEST(test_delay_values),
		HARNESS_TEST(test_bad_arguments),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
