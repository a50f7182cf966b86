#include "tests/harness.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int harness_failures;

int harness_main(const struct harness_test *tests, size_t n, int argc, char **argv)
{
	size_t ran = 0, failed = 0;

	for (size_t i = 0; i < n; i++) {
		if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
			continue;
		int before = harness_failures;
		tests[i].fn();
		ran++;
		if (harness_failures != before) {
			failed++;
			fprintf(stderr, "FAIL %s\n", tests[i].name);
		} else {
			fprintf(stderr, "ok   %s\n", tests[i].name);
		}
	}
	fprintf(stderr, "%zu tests, %zu failed\n", ran, failed);
	if (ran == 0)
		return 2;
	return failed ? 1 : 0;
}

const char *harness_source_root(void)
{
	const char *r = getenv("SOURCE_ROOT");
	return r && *r ? r : ".";
}

char *harness_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char tmpl[4096];
	snprintf(tmpl, sizeof(tmpl), "%s/frb-test-XXXXXX", base && *base ? base : "/tmp");
	char *d = mkdtemp(tmpl);
	return d ? strdup(d) : NULL;
}

char *harness_read_source_file(const char *relpath, size_t *len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", harness_source_root(), relpath);
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *b = NULL;
	long n = -1;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		b = malloc((size_t)n + 1);
		if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
			free(b);
			b = NULL;
		}
	}
	fclose(f);
	if (b) {
		b[n] = '\0';
		*len = (size_t)n;
	}
	return b;
}

char *harness_write_file(const char *dir, const char *name, const void *data, size_t len, unsigned mode)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	unlink(p);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len || fchmod(fd, (mode_t)mode) != 0) {
		if (fd >= 0)
			close(fd);
		free(p);
		return NULL;
	}
	close(fd);
	return p;
}
