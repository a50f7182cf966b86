/*
 * fhir_page_parse() against HL7's official R4 examples (npm
 * hl7.fhir.r4.examples, 5,307 files): every resource, wrapped as the entry
 * of a synthetic searchset page, must parse, with resourceType, id,
 * meta.versionId, meta.lastUpdated and the patient equal to what Jansson
 * reads from the same file, and a body span that is byte for byte the file's
 * resource (and that Jansson re-parses to the same value). The files that
 * are Bundles are also parsed directly, entry by entry.
 *
 * Skipped (exit 77) when $SOURCE_ROOT/tests/servers/node_modules/
 * hl7.fhir.r4.examples is missing (npm ci not run).
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fhir/fhir.h"
#include "fhir/test-gen.h"
#include "tests/harness.h"

static char *examples_dir(void)
{
	char *d;
	if (asprintf(&d, "%s/tests/servers/node_modules/hl7.fhir.r4.examples", harness_source_root()) < 0)
		abort();
	return d;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc(n ? (size_t)n : 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	return buf;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_fhir_id(const char *s, size_t n)
{
	if (n == 0 || n >= FHIR_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '-' || s[i] == '.' || (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= 'a' && s[i] <= 'z')))
			return false;
	return true;
}

/*
 * The test's own reading of a Patient reference, written independently of
 * the parser's: find "Patient/" as a whole path segment, take the id after
 * it, and accept only the end of the string or "/_history/<v>" after it.
 */
static bool ref_patient(const char *ref, char out[FHIR_ID_MAX])
{
	for (const char *p = strstr(ref, "Patient/"); p; p = strstr(p + 1, "Patient/")) {
		if (p != ref && p[-1] != '/')
			continue;
		const char *id = p + 8, *end = strchr(id, '/');
		size_t n = end ? (size_t)(end - id) : strlen(id);
		if (end && (strncmp(end, "/_history/", 10) != 0 || !end[10] || strchr(end + 10, '/')))
			continue;
		if (!is_fhir_id(id, n))
			continue;
		memcpy(out, id, n);
		out[n] = 0;
		return true;
	}
	return false;
}

static void expected_patient(json_t *res, char out[FHIR_ID_MAX])
{
	static const char *const keys[] = { "subject", "patient", "beneficiary" };
	const char *type = json_string_value(json_object_get(res, "resourceType"));

	out[0] = 0;
	if (type && strcmp(type, "Patient") == 0) {
		const char *id = json_string_value(json_object_get(res, "id"));
		snprintf(out, FHIR_ID_MAX, "%s", id ? id : "");
		return;
	}
	for (size_t k = 0; k < 3; k++) {
		json_t *v = json_object_get(res, keys[k]);
		const char *ref = json_is_object(v) ? json_string_value(json_object_get(v, "reference")) : NULL;
		if (ref && ref_patient(ref, out))
			return;
	}
}

static const char *str_or_empty(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* One parsed entry against the Jansson view of its resource. */
static bool check_entry(const char *file, const fhir_entry *e, json_t *res, int mode)
{
	json_t *meta = json_object_get(res, "meta");
	char patient[FHIR_ID_MAX];
	json_error_t jerr;
	bool ok = true;

	expected_patient(res, patient);
#define SAME(field, want) \
	do { \
		if (strcmp(field, want) != 0) { \
			fprintf(stderr, "  %s: %s \"%s\", Jansson \"%s\"\n", file, #field, field, want); \
			ok = false; \
		} \
	} while (0)
	SAME(e->type, str_or_empty(res, "resourceType"));
	SAME(e->id, str_or_empty(res, "id"));
	SAME(e->version_id, str_or_empty(meta, "versionId"));
	SAME(e->last_updated, str_or_empty(meta, "lastUpdated"));
	SAME(e->patient, patient);
#undef SAME
	if (e->search_mode != mode) {
		fprintf(stderr, "  %s: search mode %d, want %d\n", file, e->search_mode, mode);
		ok = false;
	}
	json_t *span = json_loadb(e->body, e->body_len, 0, &jerr);
	if (!span || !json_equal(span, res)) {
		fprintf(stderr, "  %s: the body span is not the resource (%s)\n", file, span ? "differs" : jerr.text);
		ok = false;
	}
	json_decref(span);
	return ok;
}

static int search_mode(json_t *entry)
{
	const char *m = json_string_value(json_object_get(json_object_get(entry, "search"), "mode"));
	return !m ? 0 : strcmp(m, "include") == 0 ? 1 : strcmp(m, "outcome") == 0 ? 2 : 0;
}

/* A Bundle file parsed as a page: entries, type, total and next link. */
static bool check_bundle_file(const char *file, const char *buf, size_t len, json_t *root, size_t *entries)
{
	fhir_page pg = FHIR_PAGE_NULL;
	fhir_error err;
	bool ok = true;

	int rc = fhir_page_parse(&pg, buf, len, &err);
	if (rc != 0) {
		fprintf(stderr, "  %s: %s\n", file, err.msg);
		return false;
	}
	json_t *list = json_object_get(root, "entry"), *entry;
	size_t i, k = 0;
	json_array_foreach(list, i, entry) {
		json_t *res = json_object_get(entry, "resource");
		if (!res)
			continue;  /* dropped by the parser, as documented */
		if (k >= pg.n_entries) {
			fprintf(stderr, "  %s: only %zu entries parsed\n", file, pg.n_entries);
			ok = false;
			break;
		}
		ok &= check_entry(file, &pg.entries[k++], res, search_mode(entry));
	}
	if (k != pg.n_entries) {
		fprintf(stderr, "  %s: %zu entries parsed, %zu expected\n", file, pg.n_entries, k);
		ok = false;
	}
	const char *type = json_string_value(json_object_get(root, "type"));
	if ((type || pg.bundle_type) && (!type || !pg.bundle_type || strcmp(type, pg.bundle_type) != 0)) {
		fprintf(stderr, "  %s: Bundle.type differs\n", file);
		ok = false;
	}
	json_t *total = json_object_get(root, "total");
	if (pg.total != (total ? json_integer_value(total) : -1)) {
		fprintf(stderr, "  %s: Bundle.total %lld\n", file, (long long)pg.total);
		ok = false;
	}
	const char *next = NULL;
	json_t *link;
	json_array_foreach(json_object_get(root, "link"), i, link) {
		if (!next && strcmp(str_or_empty(link, "relation"), "next") == 0)
			next = json_string_value(json_object_get(link, "url"));
	}
	if ((next || pg.next) && (!next || !pg.next || strcmp(next, pg.next) != 0)) {
		fprintf(stderr, "  %s: next link differs\n", file);
		ok = false;
	}
	*entries += k;
	fhir_page_deinit(&pg);
	return ok;
}

/* The file's resource as the one entry of a searchset page. */
static bool check_wrapped(const char *file, const char *buf, size_t len, json_t *root)
{
	/* The resource's exact bytes: the file without surrounding white space. */
	size_t start = 0, end = len;
	while (start < end && strchr(" \t\r\n", buf[start]))
		start++;
	while (end > start && strchr(" \t\r\n", buf[end - 1]))
		end--;

	gen_buf g = { 0 };
	gen_printf(&g, "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":1,\"link\":[{\"relation\":"
		       "\"self\",\"url\":\"http://h/fhir/x\"},{\"relation\":\"next\",\"url\":\"http://h/fhir/"
		       "x?page=2\"}],\"entry\":[{\"fullUrl\":\"http://h/fhir/x/1\",\"resource\":");
	size_t body_at = g.len;
	gen_printf(&g, "%.*s", (int)(end - start), buf + start);
	gen_printf(&g, ",\"search\":{\"mode\":\"match\"}}]}");

	/* An exact-size copy: nothing readable after the page. */
	char *page = malloc(g.len);
	if (!page)
		abort();
	memcpy(page, g.p, g.len);
	size_t page_len = g.len;
	free(g.p);

	fhir_page pg = FHIR_PAGE_NULL;
	fhir_error err;
	bool ok = true;
	int rc = fhir_page_parse(&pg, page, page_len, &err);
	if (rc != 0 || pg.n_entries != 1) {
		fprintf(stderr, "  %s wrapped: rc %d: %s\n", file, rc, err.msg);
		ok = false;
	} else {
		const fhir_entry *e = &pg.entries[0];
		if (e->body != page + body_at || e->body_len != end - start) {
			fprintf(stderr, "  %s wrapped: body span at %zu+%zu, want %zu+%zu\n", file,
				(size_t)(e->body - page), e->body_len, body_at, end - start);
			ok = false;
		}
		ok &= check_entry(file, e, root, 0);
		if (pg.total != 1 || !pg.next || strcmp(pg.next, "http://h/fhir/x?page=2") != 0 ||
		    !pg.bundle_type || strcmp(pg.bundle_type, "searchset") != 0) {
			fprintf(stderr, "  %s wrapped: Bundle fields differ\n", file);
			ok = false;
		}
	}
	fhir_page_deinit(&pg);
	free(page);
	return ok;
}

static void test_hl7_examples(void)
{
	char *dir = examples_dir();
	DIR *d = opendir(dir);
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;

	REQUIRE(d);
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				abort();
		}
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_names);

	size_t resources = 0, bundles = 0, bundle_entries = 0, not_fhir = 0, failed = 0;
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		size_t len = 0;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		char *buf = read_file(path, &len);
		json_error_t jerr;
		json_t *root = buf ? json_loadb(buf, len, 0, &jerr) : NULL;
		if (!root) {
			fprintf(stderr, "  %s: cannot read (%s)\n", names[i], buf ? jerr.text : strerror(errno));
			failed++;
		} else if (!json_string_value(json_object_get(root, "resourceType"))) {
			not_fhir++;  /* package.json */
		} else {
			bool ok = check_wrapped(names[i], buf, len, root);
			resources++;
			if (strcmp(json_string_value(json_object_get(root, "resourceType")), "Bundle") == 0) {
				bundles++;
				ok &= check_bundle_file(names[i], buf, len, root, &bundle_entries);
			}
			if (!ok)
				failed++;
		}
		json_decref(root);
		free(buf);
		free(names[i]);
	}
	free(names);
	free(dir);
	fprintf(stderr, "  %zu resources checked (%zu Bundles holding %zu entries), %zu other files, %zu failed\n",
		resources, bundles, bundle_entries, not_fhir, failed);
	CHECK_INT(failed, 0);
	/* The package has 5,306 resources and package.json. */
	CHECK(resources >= 5000);
	CHECK(bundles >= 40);
	CHECK_INT(not_fhir, 1);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_hl7_examples),
	};
	char *dir = examples_dir();
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "skip: %s is missing (run npm ci in tests/servers)\n", dir);
		free(dir);
		return 77;
	}
	closedir(d);
	free(dir);
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
