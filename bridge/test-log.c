/*
 * Tests for log.c: stderr is pointed at a file, lines are read back and
 * compared byte for byte (the timestamp by shape and by value).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bridge/log.h"
#include "tests/harness.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char *tmp;
static char capture_path[4096];
static int saved_stderr = -1;

/* Point fd 2 at a fresh file (O_APPEND, as a log file would be). */
static void capture_begin(void)
{
	snprintf(capture_path, sizeof(capture_path), "%s/stderr.txt", tmp);
	int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	fflush(stderr);
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
}

/* Restore fd 2; returns what was written (malloc'd), *len set. */
static char *capture_end(size_t *len)
{
	dup2(saved_stderr, 2);
	close(saved_stderr);
	saved_stderr = -1;
	int fd = open(capture_path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		abort();
	char *b = malloc((size_t)st.st_size + 1);
	size_t n = 0;
	while (b && n < (size_t)st.st_size) {
		ssize_t r = read(fd, b + n, (size_t)st.st_size - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (b)
		b[n] = '\0';
	*len = n;
	return b;
}

/* The 24-char UTC timestamp at the start of line: shape and closeness to now. */
static bool stamp_ok(const char *line)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ ";
	for (size_t i = 0; i < sizeof(shape) - 1; i++) {
		char c = line[i];
		if (shape[i] == 'd' ? !(c >= '0' && c <= '9') : c != shape[i])
			return false;
	}
	struct tm tm = { 0 };
	if (!strptime(line, "%Y-%m-%dT%H:%M:%S", &tm))
		return false;
	time_t t = timegm(&tm);
	time_t now = time(NULL);
	return t <= now && now - t < 10;
}

static void test_format(void)
{
	log_set_level(LOG_INFO);
	capture_begin();
	log_info("fhir", "page type=%s entries=%d", "Observation", 500);
	log_error("bridge", "stop");
	log_warn("redcap", "slow");
	log_info("store", "ok");
	log_info("http", "%s", "");
	size_t n;
	char *out = capture_end(&n);
	REQUIRE(out);
	static const char *const want[] = {
		"info  fhir  page type=Observation entries=500\n",
		"error bridge stop\n",
		"warn  redcap slow\n",
		"info  store ok\n",
		"info  http  \n",
	};
	const char *p = out;
	for (size_t i = 0; i < N(want); i++) {
		REQUIRE(p < out + n);
		CHECK(stamp_ok(p));
		CHECK(strncmp(p + 25, want[i], strlen(want[i])) == 0);
		const char *nl = strchr(p, '\n');
		REQUIRE(nl);
		CHECK_INT(nl + 1 - p, 25 + strlen(want[i]));
		p = nl + 1;
	}
	CHECK(p == out + n);
	free(out);
}

static void test_levels(void)
{
	log_level l = LOG_ERROR;
	CHECK_INT(log_level_parse("error", &l), 0);
	CHECK_INT(l, LOG_ERROR);
	CHECK_INT(log_level_parse("warn", &l), 0);
	CHECK_INT(l, LOG_WARN);
	CHECK_INT(log_level_parse("info", &l), 0);
	CHECK_INT(l, LOG_INFO);
	CHECK_INT(log_level_parse("debug", &l), 0);
	CHECK_INT(l, LOG_DEBUG);
	CHECK_INT(log_level_parse("DEBUG", &l), -1);
	CHECK_INT(log_level_parse("warning", &l), -1);
	CHECK_INT(log_level_parse("", &l), -1);
	CHECK_INT(log_level_parse(NULL, &l), -1);
	CHECK_INT(l, LOG_DEBUG);

	CHECK_INT(log_get_level(), LOG_INFO); /* the default, as left by test_format */
	capture_begin();
	log_debug("fhir", "hidden-1");
	log_set_level(LOG_DEBUG);
	CHECK_INT(log_get_level(), LOG_DEBUG);
	log_debug("fhir", "shown-1");
	log_set_level(LOG_ERROR);
	log_warn("fhir", "hidden-2");
	log_info("fhir", "hidden-3");
	log_error("fhir", "shown-2");
	log_set_level(LOG_INFO);
	size_t n;
	char *out = capture_end(&n);
	REQUIRE(out);
	CHECK(strstr(out, "hidden") == NULL);
	CHECK(strstr(out, " debug fhir  shown-1\n") != NULL);
	CHECK(strstr(out, " error fhir  shown-2\n") != NULL);
	free(out);
}

static void test_escaping(void)
{
	capture_begin();
	log_warn("fhir", "server said: %s", "bad\nrequest\r\n\tx\x01y\x7f \xc3\xa9");
	size_t n;
	char *out = capture_end(&n);
	REQUIRE(out);
	const char *want = "warn  fhir  server said: bad\\nrequest\\r\\n\\tx\\x01y\\x7f \xc3\xa9\n";
	REQUIRE(n > 25);
	CHECK_STR(out + 25, want);
	free(out);
}

static void test_long_messages(void)
{
	/* 5000 bytes: longer than the stack buffer, written whole. */
	char *big = malloc(70001);
	REQUIRE(big);
	memset(big, 'm', 70000);
	big[70000] = '\0';
	capture_begin();
	log_info("fhir", "%.5000s", big);
	log_info("fhir", "%s", big);
	size_t n;
	char *out = capture_end(&n);
	REQUIRE(out);
	char *l1 = out, *l2 = strchr(out, '\n');
	REQUIRE(l2);
	l2++;
	CHECK_INT(l2 - l1, 25 + 12 + 5000 + 1);
	CHECK(strncmp(l1 + 37, big, 5000) == 0);
	/* 70000 bytes: the first 64 KiB and the count of what was cut. */
	const char *tail = " ...(4464 bytes cut)\n";
	CHECK_INT((size_t)(out + n - l2), 25 + 12 + 65536 + strlen(tail));
	CHECK(strncmp(l2 + 37, big, 65536) == 0);
	CHECK_STR(l2 + 37 + 65536, tail);
	free(out);
	free(big);
}

static void test_errno_kept(void)
{
	capture_begin();
	errno = ENOENT;
	log_error("store", "open: %s", "x");
	int e1 = errno;
	errno = EACCES;
	log_debug("store", "suppressed"); /* below the level: returns early, errno kept too */
	int e2 = errno;
	size_t n;
	char *out = capture_end(&n);
	REQUIRE(out);
	CHECK_INT(e1, ENOENT);
	CHECK_INT(e2, EACCES);
	CHECK_STR(out + 25, "error store open: x\n");
	free(out);
}

/* Lines from many threads never mix. */
#define THREADS 8
#define LINES 200
#define BODY 3000

static void *logger(void *arg)
{
	int id = (int)(intptr_t)arg;
	char *body = malloc(BODY + 1);
	if (!body)
		return NULL;
	memset(body, 'a' + id, BODY);
	body[BODY] = '\0';
	for (int i = 0; i < LINES; i++)
		log_info("fhir", "t=%d i=%03d %s", id, i, body);
	free(body);
	return NULL;
}

static void test_threads(void)
{
	pthread_t th[THREADS];
	capture_begin();
	for (int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, logger, (void *)(intptr_t)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	size_t n;
	char *out = capture_end(&n);
	REQUIRE(out);
	int seen[THREADS] = { 0 };
	size_t lines = 0, bad = 0;
	for (char *p = out; p < out + n;) {
		char *nl = memchr(p, '\n', (size_t)(out + n - p));
		if (!nl)
			break;
		/* 25 stamp + "info  fhir  " + "t=D i=DDD " + BODY */
		int id = -1, i = -1;
		bool ok = (size_t)(nl - p) == 25 + 12 + 10 + BODY && sscanf(p + 37, "t=%d i=%d", &id, &i) == 2 &&
			  id >= 0 && id < THREADS && i == seen[id];
		for (size_t k = 0; ok && k < BODY; k++)
			ok = p[47 + k] == 'a' + id;
		if (ok)
			seen[id]++;
		else
			bad++;
		lines++;
		p = nl + 1;
	}
	CHECK_INT(lines, THREADS * LINES);
	CHECK_INT(bad, 0);
	for (int i = 0; i < THREADS; i++)
		CHECK_INT(seen[i], LINES);
	free(out);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_format),
		HARNESS_TEST(test_levels),
		HARNESS_TEST(test_escaping),
		HARNESS_TEST(test_long_messages),
		HARNESS_TEST(test_errno_kept),
		HARNESS_TEST(test_threads),
	};
	tmp = harness_tmpdir();
	if (!tmp)
		return 2;
	int r = harness_main(tests, N(tests), argc, argv);
	unlink(capture_path);
	rmdir(tmp);
	free(tmp);
	return r;
}
