/*
 * A minimal assert-style harness for unit tests.
 *
 * CHECK() records a failure with file:line and goes on; REQUIRE() returns
 * from the test. Each test is a void function registered in a table given
 * to harness_main(), which prints one line per test and exits non-zero if
 * any check failed.
 */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int harness_failures;

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			harness_failures++; \
		} \
	} while (0)

#define REQUIRE(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: requirement failed: %s\n", __FILE__, __LINE__, #cond); \
			harness_failures++; \
			return; \
		} \
	} while (0)

#define CHECK_STR(a, b) \
	do { \
		const char *check_a_ = (a), *check_b_ = (b); \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) { \
			fprintf(stderr, "%s:%d: check failed: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, \
				__LINE__, #a, #b, check_a_ ? check_a_ : "(null)", \
				check_b_ ? check_b_ : "(null)"); \
			harness_failures++; \
		} \
	} while (0)

#define CHECK_INT(a, b) \
	do { \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
		if (check_a_ != check_b_) { \
			fprintf(stderr, "%s:%d: check failed: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, \
				#a, #b, check_a_, check_b_); \
			harness_failures++; \
		} \
	} while (0)

struct harness_test {
	const char *name;
	void (*fn)(void);
};

#define HARNESS_TEST(fn) { #fn, fn }

int harness_main(const struct harness_test *tests, size_t n, int argc, char **argv);

/* The source tree root (env SOURCE_ROOT, set by meson), or ".". */
const char *harness_source_root(void);

/* Read a whole file named relative to the source root (NUL-terminated);
 * NULL if it cannot be read. *len gets its size. */
char *harness_read_source_file(const char *relpath, size_t *len);

/* A fresh temporary directory for this test process; removed by the caller. */
char *harness_tmpdir(void);

/* Write len bytes of data to dir/name (replacing it) with the given mode;
 * returns the malloc'd path, or NULL on failure. */
char *harness_write_file(const char *dir, const char *name, const void *data, size_t len, unsigned mode);
