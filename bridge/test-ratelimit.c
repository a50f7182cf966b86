#include "bridge/ratelimit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

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

static int open_tmp(char *path)
{
	return mkstemp(path);
}

/* Two open file descriptions of one file: two processes' views. */
static void test_shared_window_two_views(void)
{
	char path[] = "/tmp/frb-rate-XXXXXX";
	int a = open_tmp(path);
	REQUIRE(a >= 0);
	int b = open(path, O_RDWR | O_CLOEXEC);
	REQUIRE(b >= 0);
	uint64_t d = 99;
	CHECK_INT(ratelimit_shared_take(a, 3, 1000, 5000, &d), 0);
	CHECK_INT(d, 0);
	CHECK_INT(ratelimit_shared_take(b, 3, 1000, 5010, &d), 0);
	CHECK_INT(d, 0);
	CHECK_INT(ratelimit_shared_take(a, 3, 1000, 5020, &d), 0);
	CHECK_INT(d, 0);
	/* Full for everyone: the first leaves the window at 6000. */
	CHECK_INT(ratelimit_shared_take(b, 3, 1000, 5030, &d), 0);
	CHECK_INT(d, 970);
	CHECK_INT(ratelimit_shared_take(a, 3, 1000, 5999, &d), 0);
	CHECK_INT(d, 1);
	CHECK_INT(ratelimit_shared_take(a, 3, 1000, 6000, &d), 0);
	CHECK_INT(d, 0);
	/* A process with a lower cap counts the others' requests too. */
	CHECK_INT(ratelimit_shared_take(b, 2, 1000, 6001, &d), 0);
	CHECK_INT(d, 19); /* the second-last (5020) leaves at 6020 */
	/* A clock stepped back by more than the window: the file's times are
	 * dropped rather than blocking for hours. */
	CHECK_INT(ratelimit_shared_take(b, 3, 1000, 1000, &d), 0);
	CHECK_INT(d, 0);
	close(a);
	close(b);
	unlink(path);
}

static void test_shared_window_bad_file(void)
{
	char path[] = "/tmp/frb-rate-XXXXXX";
	int fd = open_tmp(path);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, "not a window file at all, just text", 35) == 35);
	uint64_t d = 99;
	CHECK_INT(ratelimit_shared_take(fd, 2, 1000, 100, &d), 0);
	CHECK_INT(d, 0);
	CHECK_INT(ratelimit_shared_take(fd, 2, 1000, 100, &d), 0);
	CHECK_INT(d, 0);
	CHECK_INT(ratelimit_shared_take(fd, 2, 1000, 100, &d), 0);
	CHECK_INT(d, 1000);
	CHECK_INT(ratelimit_shared_take(-1, 2, 1000, 100, &d), -EINVAL);
	CHECK_INT(ratelimit_shared_take(fd, 0, 1000, 100, &d), -EINVAL);
	close(fd);
	unlink(path);
}

/* Processes racing for the places: together they never get more than the
 * limit (each decision is taken under the file's lock). */
static void test_shared_window_racing_processes(void)
{
	char path[] = "/tmp/frb-rate-XXXXXX";
	int fd = open_tmp(path);
	REQUIRE(fd >= 0);
	close(fd);
	enum { KIDS = 4, LIMIT = 50 };
	pid_t kids[KIDS];
	for (int k = 0; k < KIDS; k++) {
		kids[k] = fork();
		REQUIRE(kids[k] >= 0);
		if (kids[k] == 0) {
			int f = open(path, O_RDWR | O_CLOEXEC);
			int got = 0;
			uint64_t d = 0;
			for (int i = 0; i < 200 && f >= 0; i++)
				if (ratelimit_shared_take(f, LIMIT, 60000, 1000000, &d) == 0 && d == 0)
					got++;
			_exit(got);
		}
	}
	int total = 0;
	for (int k = 0; k < KIDS; k++) {
		int st = 0;
		REQUIRE(waitpid(kids[k], &st, 0) == kids[k]);
		REQUIRE(WIFEXITED(st));
		total += WEXITSTATUS(st);
	}
	CHECK_INT(total, LIMIT);
	unlink(path);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_never_more_than_limit_in_any_window),
		HARNESS_TEST(test_delay_values),
		HARNESS_TEST(test_shared_window_two_views),
		HARNESS_TEST(test_shared_window_bad_file),
		HARNESS_TEST(test_shared_window_racing_processes),
		HARNESS_TEST(test_bad_arguments),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
