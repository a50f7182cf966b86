/*
 * fhir-bench-parse — throughput of fhir_page_parse() against Jansson on a
 * synthetic 1000-entry Observation page. Prints figures; asserts nothing
 * about time. Usage: fhir-bench-parse [entries] [seconds-per-case]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <jansson.h>

#include "fhir/fhir.h"
#include "fhir/test-gen.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum { CASE_PAGE, CASE_VALIDATE, CASE_JANSSON };

static int run_once(int which, const char *buf, size_t len, fhir_page *pg)
{
	fhir_error err;
	json_error_t jerr;
	json_t *j;

	switch (which) {
	case CASE_PAGE:
		return fhir_page_parse(pg, buf, len, &err);
	case CASE_VALIDATE:
		return fhir_json_validate(buf, len, &err);
	default:
		j = json_loadb(buf, len, 0, &jerr);
		json_decref(j);
		return j ? 0 : 1;
	}
}

/* Time each parser on buf for about secs seconds each; print the figures. */
static int bench_page(const char *label, const char *buf, size_t len, double secs)
{
	static const char *const names[] = { "fhir_page_parse", "fhir_json_validate", "json_loadb+decref" };
	fhir_page pg = FHIR_PAGE_NULL;

	if (fhir_page_parse(&pg, buf, len, NULL) != 0) {
		fprintf(stderr, "the %s page does not parse\n", label);
		return 1;
	}
	size_t n = pg.n_entries, body = 0;
	for (size_t i = 0; i < n; i++)
		body += pg.entries[i].body_len;
	printf("%s page: %zu entries, %zu bytes (%.0f bytes per entry, %.0f per resource body)\n", label, n, len,
	       (double)len / (double)n, (double)body / (double)n);
	for (int which = CASE_PAGE; which <= CASE_JANSSON; which++) {
		if (run_once(which, buf, len, &pg) != 0) {
			fprintf(stderr, "%s failed on the page\n", names[which]);
			fhir_page_deinit(&pg);
			return 1;
		}
		size_t iters = 0;
		double t0 = now_s(), t;
		do {
			for (int k = 0; k < 5; k++)
				run_once(which, buf, len, &pg);
			iters += 5;
			t = now_s() - t0;
		} while (t < secs);
		printf("  %-20s %8.1f MB/s %11.0f resources/s  (%.3f ms per page)\n", names[which],
		       (double)len * (double)iters / t / 1e6, (double)n * (double)iters / t, t * 1e3 / (double)iters);
	}
	fhir_page_deinit(&pg);
	return 0;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000, len;
	double secs = argc > 2 ? atof(argv[2]) : 1.0;
	char *buf = gen_observation_page(n ? n : 1, 1, &len);
	json_error_t jerr;
	json_t *j = json_loadb(buf, len, 0, &jerr);
	char *pretty = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	int r = 1;

	json_decref(j);
	if (pretty && bench_page("compact", buf, len, secs) == 0 &&
	    bench_page("pretty (indent 2)", pretty, strlen(pretty), secs) == 0)
		r = 0;
	free(pretty);
	free(buf);
	return r;
}
