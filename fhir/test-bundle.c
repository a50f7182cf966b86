/*
 * Tests for fhir_page_parse() and fhir_outcome_summary(): extracted fields,
 * body spans (checked against Jansson), key order, escapes, patient
 * references, contained resources, search modes, and every error class
 * with its precedence and message.
 *
 * Pages are parsed from heap buffers of exactly their length (no NUL after
 * them) so ASan/valgrind catch any read past the end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fhir/fhir.h"
#include "fhir/test-gen.h"
#include "tests/harness.h"

/* A page parsed from an exact-size copy of doc; free with fix_free(). */
typedef struct fix {
	char *buf;
	size_t len;
	fhir_page pg;
	fhir_error err;
	int rc;
} fix;

static void fix_parse(fix *f, const char *doc)
{
	f->len = strlen(doc);
	f->buf = malloc(f->len ? f->len : 1);
	if (!f->buf)
		abort();
	memcpy(f->buf, doc, f->len);
	f->pg = (fhir_page)FHIR_PAGE_NULL;
	memset(&f->err, 0, sizeof(f->err));
	f->rc = fhir_page_parse(&f->pg, f->buf, f->len, &f->err);
}

static void fix_free(fix *f)
{
	fhir_page_deinit(&f->pg);
	fhir_page_deinit(&f->pg);  /* idempotent */
	free(f->buf);
}

/* The body span of entry i must be, byte for byte, the resource's JSON. */
static void check_body(const fhir_entry *e, const char *expect)
{
	size_t n = strlen(expect);
	if (e->body_len != n || memcmp(e->body, expect, n) != 0) {
		fprintf(stderr, "  body: got \"%.*s\", want \"%s\"\n", (int)e->body_len, e->body, expect);
		harness_failures++;
	}
}

static void test_generated_page(void)
{
	size_t len;
	char *page = gen_observation_page(50, 5, &len);
	fhir_page pg = FHIR_PAGE_NULL;
	fhir_error err;
	json_error_t jerr;
	json_t *root = json_loadb(page, len, 0, &jerr);

	REQUIRE(root);
	CHECK_INT(fhir_page_parse(&pg, page, len, &err), 0);
	CHECK_INT(pg.n_entries, 50);
	CHECK_INT(pg.total, 150);
	CHECK_STR(pg.bundle_type, "searchset");
	CHECK_STR(pg.next, "http://localhost:8103/fhir/R4/Observation?_count=50&_offset=50");
	for (size_t i = 0; i < pg.n_entries && i < 50; i++) {
		const fhir_entry *e = &pg.entries[i];
		char want[64];
		CHECK_STR(e->type, "Observation");
		snprintf(want, sizeof(want), "obs-5-%zu", i);
		CHECK_STR(e->id, want);
		snprintf(want, sizeof(want), "%zu", i % 7 + 1);
		CHECK_STR(e->version_id, want);
		snprintf(want, sizeof(want), "pat-%zu", i % 97);
		CHECK_STR(e->patient, want);
		CHECK_INT(e->last_updated[0] != 0, 1);
		CHECK_INT(e->search_mode, 0);
		json_t *res = json_object_get(json_array_get(json_object_get(root, "entry"), i), "resource");
		json_t *span = json_loadb(e->body, e->body_len, 0, &jerr);
		CHECK(span && json_equal(span, res));
		CHECK_STR(e->last_updated, json_string_value(json_object_get(json_object_get(res, "meta"), "lastUpdated")));
		json_decref(span);
	}
	/* The page can be parsed again into the same struct. */
	CHECK_INT(fhir_page_parse(&pg, page, len, &err), 0);
	CHECK_INT(pg.n_entries, 50);
	fhir_page_deinit(&pg);
	json_decref(root);
	free(page);
}

static void test_fields_any_order_and_escaped(void)
{
	/* resourceType last everywhere, escaped keys and values, white space. */
	const char *doc =
		"{ \"entry\" : [ { \"search\":{\"mode\":\"include\"}, \"resource\" : {\"meta\":{\"lastUpdated\":"
		"\"2024-01-02T03:04:05.6+01:00\",\"versionId\":\"v\\u0031\"}, \"subject\":{\"reference\":"
		"\"Patient\\/p\\u002d1\"}, \"id\":\"o\\u00e9\", \"resour\\u0063eType\":\"Observation\"} } ],\n"
		"  \"link\":[{\"url\":\"http://h/fhir/Observation?a=1\\u0026b=%2B2\",\"relation\":\"next\"},"
		"{\"relation\":\"self\",\"url\":\"x\"}],\n  \"total\": 0, \"type\": \"search\\u0073et\",\n"
		"  \"resourceType\" : \"Bundle\" }";
	fix f;

	fix_parse(&f, doc);
	CHECK_INT(f.rc, 0);
	REQUIRE(f.pg.n_entries == 1);
	const fhir_entry *e = &f.pg.entries[0];
	CHECK_STR(e->type, "Observation");
	CHECK_STR(e->id, "o\xc3\xa9");
	CHECK_STR(e->version_id, "v1");
	CHECK_STR(e->last_updated, "2024-01-02T03:04:05.6+01:00");
	CHECK_STR(e->patient, "p-1");
	CHECK_INT(e->search_mode, 1);
	CHECK_STR(f.pg.next, "http://h/fhir/Observation?a=1&b=%2B2");
	CHECK_STR(f.pg.bundle_type, "searchset");
	CHECK_INT(f.pg.total, 0);
	check_body(e, "{\"meta\":{\"lastUpdated\":\"2024-01-02T03:04:05.6+01:00\",\"versionId\":\"v\\u0031\"}, "
		      "\"subject\":{\"reference\":\"Patient\\/p\\u002d1\"}, \"id\":\"o\\u00e9\", "
		      "\"resour\\u0063eType\":\"Observation\"}");
	fix_free(&f);
}

static void test_minimal_pages(void)
{
	fix f;

	fix_parse(&f, "{\"resourceType\":\"Bundle\"}");
	CHECK_INT(f.rc, 0);
	CHECK_INT(f.pg.n_entries, 0);
	CHECK(f.pg.next == NULL);
	CHECK(f.pg.bundle_type == NULL);
	CHECK_INT(f.pg.total, -1);
	fix_free(&f);

	/* Entries without a resource are dropped; link without next. */
	fix_parse(&f, "{\"resourceType\":\"Bundle\",\"type\":\"history\",\"link\":[{\"relation\":\"self\","
		      "\"url\":\"u\"}],\"entry\":[{\"request\":{\"method\":\"DELETE\",\"url\":\"Patient/1\"}},"
		      "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"2\"}},{}]}");
	CHECK_INT(f.rc, 0);
	CHECK_INT(f.pg.n_entries, 1);
	CHECK(f.pg.next == NULL);
	CHECK_STR(f.pg.entries[0].id, "2");
	CHECK_STR(f.pg.entries[0].patient, "2");
	CHECK_STR(f.pg.entries[0].version_id, "");
	fix_free(&f);

	/* A repeated member: the last one wins, as in Jansson. */
	fix_parse(&f, "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Patient\","
		      "\"id\":\"a\"}}],\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"b\",\"id\":\"c\"}}],"
		      "\"link\":[{\"relation\":\"next\",\"url\":\"n1\"}],\"link\":[]}");
	CHECK_INT(f.rc, 0);
	REQUIRE(f.pg.n_entries == 1);
	CHECK_STR(f.pg.entries[0].id, "c");
	CHECK(f.pg.next == NULL);
	fix_free(&f);

	/* Only the first next link counts. */
	fix_parse(&f, "{\"resourceType\":\"Bundle\",\"link\":[{\"relation\":\"next\",\"url\":\"?page=2\"},"
		      "{\"relation\":\"next\",\"url\":\"?page=3\"}]}");
	CHECK_INT(f.rc, 0);
	CHECK_STR(f.pg.next, "?page=2");
	fix_free(&f);
}

struct ref_case {
	const char *resource;  /* JSON members after resourceType */
	const char *type;
	const char *patient;
};

static void test_patient_references(void)
{
	static const struct ref_case cases[] = {
		{ "\"subject\":{\"reference\":\"Patient/123\"}", "Observation", "123" },
		{ "\"subject\":{\"reference\":\"Patient/1/_history/2\"}", "Observation", "1" },
		{ "\"subject\":{\"reference\":\"http://x/fhir/Patient/abc/_history/3\"}", "Observation", "abc" },
		{ "\"subject\":{\"reference\":\"https://h:8443/r4/Patient/A.b-9\"}", "Condition", "A.b-9" },
		{ "\"subject\":{\"reference\":\"#p1\"}", "Observation", "" },
		{ "\"subject\":{\"reference\":\"Group/5\"}", "Observation", "" },
		{ "\"subject\":{\"reference\":\"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0\"}", "Observation", "" },
		{ "\"subject\":{\"reference\":\"Patient?identifier=x|1\"}", "Observation", "" },
		{ "\"subject\":{\"reference\":\"MyPatient/1\"}", "Observation", "" },
		{ "\"subject\":{\"reference\":\"Patient/\"}", "Observation", "" },
		{ "\"subject\":{\"reference\":\"\"}", "Observation", "" },
		{ "\"subject\":{\"reference\":\"/\"}", "Observation", "" },
		{ "\"subject\":{\"reference\":\"Patient\"}", "Observation", "" },
		{ "\"subject\":{\"reference\":\"/Patient/1\"}", "Observation", "1" },
		{ "\"subject\":{\"reference\":\"Patient/_history/1\"}", "Observation", "" },  /* no id */
		{ "\"subject\":{\"reference\":\"Patient/a b\"}", "Observation", "" },
		{ "\"subject\":{\"reference\":\"Patient/x/_history/\"}", "Observation", "" },
		{ "\"subject\":{\"identifier\":{\"value\":\"123\"}}", "Observation", "" },
		{ "\"subject\":{\"display\":\"no reference\"}", "Observation", "" },
		{ "\"patient\":{\"reference\":\"Patient/77\"}", "AllergyIntolerance", "77" },
		{ "\"beneficiary\":{\"reference\":\"Patient/b1\"},\"subscriber\":{\"reference\":\"Patient/s\"}",
		  "Coverage", "b1" },
		/* subject names a Group: the patient member is next in line. */
		{ "\"subject\":{\"reference\":\"Group/g\"},\"patient\":{\"reference\":\"Patient/p\"}", "Claim", "p" },
		/* both name a patient: subject wins whatever the order. */
		{ "\"patient\":{\"reference\":\"Patient/p\"},\"subject\":{\"reference\":\"Patient/s\"}", "Claim", "s" },
		/* Contract.subject is an array: no single patient. */
		{ "\"subject\":[{\"reference\":\"Patient/1\"}]", "Contract", "" },
		/* A Patient is its own patient, whatever it links to. */
		{ "\"id\":\"self\",\"link\":[{\"other\":{\"reference\":\"Patient/other\"}}]", "Patient", "self" },
		/* Nested references are not the resource's own. */
		{ "\"focus\":[{\"reference\":\"Patient/f\"}],\"partOf\":{\"subject\":{\"reference\":\"Patient/n\"}}",
		  "Observation", "" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char doc[1024];
		fix f;
		snprintf(doc, sizeof(doc),
			 "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"%s\",%s}}]}",
			 cases[i].type, cases[i].resource);
		fix_parse(&f, doc);
		CHECK_INT(f.rc, 0);
		if (f.rc == 0 && f.pg.n_entries == 1 && strcmp(f.pg.entries[0].patient, cases[i].patient) != 0) {
			fprintf(stderr, "  case %zu: patient \"%s\", want \"%s\"\n", i, f.pg.entries[0].patient,
				cases[i].patient);
			harness_failures++;
		}
		fix_free(&f);
	}
}

static void test_contained_and_nested(void)
{
	/* Fields come from the resource's own members, never from contained
	 * resources or a Bundle inside the resource. */
	const char *doc =
		"{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"MedicationRequest\","
		"\"contained\":[{\"resourceType\":\"Patient\",\"id\":\"inner\",\"meta\":{\"versionId\":\"9\","
		"\"lastUpdated\":\"2000-01-01T00:00:00Z\"}}],\"subject\":{\"reference\":\"#inner\"},\"id\":\"outer\","
		"\"meta\":{\"versionId\":\"2\",\"tag\":[{\"code\":\"x\",\"id\":\"t\"}]}}},"
		"{\"resource\":{\"resourceType\":\"Bundle\",\"id\":\"doc\",\"type\":\"document\",\"entry\":["
		"{\"resource\":{\"resourceType\":\"Composition\",\"id\":\"c\",\"subject\":{\"reference\":\"Patient/z\"}}}]},"
		"\"search\":{\"mode\":\"outcome\"}}]}";
	fix f;

	fix_parse(&f, doc);
	CHECK_INT(f.rc, 0);
	REQUIRE(f.pg.n_entries == 2);
	CHECK_STR(f.pg.entries[0].type, "MedicationRequest");
	CHECK_STR(f.pg.entries[0].id, "outer");
	CHECK_STR(f.pg.entries[0].version_id, "2");
	CHECK_STR(f.pg.entries[0].last_updated, "");
	CHECK_STR(f.pg.entries[0].patient, "");
	CHECK_STR(f.pg.entries[1].type, "Bundle");
	CHECK_STR(f.pg.entries[1].id, "doc");
	CHECK_STR(f.pg.entries[1].patient, "");
	CHECK_INT(f.pg.entries[1].search_mode, 2);
	CHECK_INT(f.pg.entries[1].body[0], '{');
	CHECK_INT(f.pg.entries[1].body[f.pg.entries[1].body_len - 1], '}');
	fix_free(&f);
}

struct err_case {
	const char *doc;
	int rc;
	const char *msg;  /* exact message */
};

static void test_errors(void)
{
	static const struct err_case cases[] = {
		/* Not JSON. */
		{ "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"id\":\"a\"}}", FHIR_E_JSON,
		  "invalid JSON at line 1 column 58 (byte 57): unexpected end of input in an array" },
		{ "{\"resourceType\":\"Bundle\"\n,\"entry\":[1,]}", FHIR_E_JSON,
		  "invalid JSON at line 2 column 13 (byte 37): unexpected character, expected a value" },
		{ "{\"resourceType\":\"Bundle\"} {}", FHIR_E_JSON,
		  "invalid JSON at line 1 column 27 (byte 26): trailing data after the JSON value" },
		/* Not a Bundle. */
		{ "{\"resourceType\":\"Patient\",\"id\":\"1\",\"entry\":5}", FHIR_E_NOT_BUNDLE,
		  "expected a Bundle, got a resource of type Patient" },
		{ "[{\"resourceType\":\"Bundle\"}]", FHIR_E_NOT_BUNDLE,
		  "not a FHIR Bundle: the JSON document is not an object" },
		{ "{\"entry\":[]}", FHIR_E_NOT_BUNDLE, "not a FHIR Bundle: the JSON document has no resourceType string" },
		{ "{\"resourceType\":\"Bun\\u0001dle\"}", FHIR_E_NOT_BUNDLE,
		  "expected a Bundle, got a resource of type Bun?dle" },
		{ "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\"code\":\"not-found\","
		  "\"diagnostics\":\"Unknown resource type 'Observaton'\"}]}",
		  FHIR_E_NOT_BUNDLE,
		  "expected a Bundle, got an OperationOutcome: error: not-found: Unknown resource type 'Observaton'" },
		/* Shapes. */
		{ "{\"resourceType\":\"Bundle\",\"entry\":{}}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 34 (byte 33): Bundle.entry is not an array" },
		{ "{\"resourceType\":\"Bundle\",\"entry\":[{},3]}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 38 (byte 37): entry[1] is not an object" },
		{ "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":[]}]}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 47 (byte 46): entry[0].resource is not an object" },
		{ "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"id\":\"x\"}}]}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 47 (byte 46): entry[0].resource has no resourceType" },
		{ "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"id\":7}}]}",
		  FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 78 (byte 77): entry[0].resource.id is not a string" },
		{ "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"a\\nb\"}}]}",
		  FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 78 (byte 77): entry[0].resource.id contains a control character" },
		{ "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Pa tient\"}}]}",
		  FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 63 (byte 62): entry[0].resource.resourceType is not a resource type name" },
		{ "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"meta\":[]}}]}",
		  FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 80 (byte 79): entry[0].resource.meta is not an object" },
		{ "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Observation\",\"subject\":"
		  "{\"reference\":{}}}}]}",
		  FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 100 (byte 99): entry[0].resource.subject.reference is not a string" },
		{ "{\"resourceType\":\"Bundle\",\"entry\":[{\"search\":{\"mode\":\"bogus\"}}]}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 53 (byte 52): entry[0].search.mode is not match, include or outcome" },
		{ "{\"resourceType\":\"Bundle\",\"total\":\"5\"}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 34 (byte 33): Bundle.total is not a number" },
		{ "{\"resourceType\":\"Bundle\",\"total\":-1}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 34 (byte 33): Bundle.total is not a non-negative integer" },
		{ "{\"resourceType\":\"Bundle\",\"total\":1.5}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 34 (byte 33): Bundle.total is not a non-negative integer" },
		{ "{\"resourceType\":\"Bundle\",\"total\":99999999999999999999}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 34 (byte 33): Bundle.total is too large" },
		{ "{\"resourceType\":\"Bundle\",\"link\":[{\"relation\":\"next\",\"url\":5}]}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 59 (byte 58): Bundle.link[0].url is not a string" },
		{ "{\"resourceType\":\"Bundle\",\"link\":[{\"relation\":\"next\",\"url\":\"a\\u0000b\"}]}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 59 (byte 58): Bundle.link.url contains a NUL character" },
		{ "{\"resourceType\":7}", FHIR_E_NOT_BUNDLE,
		  "not a FHIR Bundle: the JSON document has no resourceType string" },
		/* Precedence: a shape error before resourceType defers to it... */
		{ "{\"entry\":5,\"resourceType\":\"Patient\"}", FHIR_E_NOT_BUNDLE,
		  "expected a Bundle, got a resource of type Patient" },
		{ "{\"entry\":5,\"resourceType\":\"Bundle\"}", FHIR_E_SHAPE,
		  "unexpected Bundle content at line 1 column 10 (byte 9): Bundle.entry is not an array" },
		/* ...and to invalid JSON anywhere after it. */
		{ "{\"entry\":5,\"resourceType\":\"Bundle\",}", FHIR_E_JSON,
		  "invalid JSON at line 1 column 36 (byte 35): expected a string (an object key)" },
		{ "{\"resourceType\":\"Patient\",\"x\":[}", FHIR_E_JSON,
		  "invalid JSON at line 1 column 32 (byte 31): unexpected character, expected a value" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fix f;
		fix_parse(&f, cases[i].doc);
		if (f.rc != cases[i].rc || strcmp(f.err.msg, cases[i].msg) != 0) {
			fprintf(stderr, "  case %zu: rc %d \"%s\"\n        want %d \"%s\"\n", i, f.rc, f.err.msg,
				cases[i].rc, cases[i].msg);
			harness_failures++;
		}
		/* A failed parse leaves nothing behind. */
		CHECK_INT(f.pg.n_entries, 0);
		CHECK(f.pg.next == NULL && f.pg.bundle_type == NULL);
		fix_free(&f);
	}
}

static void test_field_limits(void)
{
	char id[FHIR_ID_MAX + 1], doc[512];
	fix f;

	memset(id, 'a', sizeof(id));
	id[FHIR_ID_MAX - 1] = 0;  /* 127 bytes: the longest that fits */
	snprintf(doc, sizeof(doc), "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":"
				   "\"Patient\",\"id\":\"%s\"}}]}", id);
	fix_parse(&f, doc);
	CHECK_INT(f.rc, 0);
	CHECK_INT(f.pg.n_entries ? strlen(f.pg.entries[0].id) : 0, FHIR_ID_MAX - 1);
	fix_free(&f);

	id[FHIR_ID_MAX - 1] = 'a';
	id[FHIR_ID_MAX] = 0;  /* 128 bytes: refused, never truncated */
	snprintf(doc, sizeof(doc), "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":"
				   "\"Patient\",\"id\":\"%s\"}}]}", id);
	fix_parse(&f, doc);
	CHECK_INT(f.rc, FHIR_E_SHAPE);
	CHECK(strstr(f.err.msg, "entry[0].resource.id is longer than 127 bytes") != NULL);
	fix_free(&f);

	fix_parse(&f, "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"meta\":"
		      "{\"lastUpdated\":\"2024-01-01T00:00:00.000000000000000000000000000000000000000Z\"}}}]}");
	CHECK_INT(f.rc, FHIR_E_SHAPE);
	CHECK(strstr(f.err.msg, "entry[0].resource.meta.lastUpdated is longer than 47 bytes") != NULL);
	fix_free(&f);

	/* Nesting deeper than 512 levels inside a resource. */
	gen_buf g = { 0 };
	gen_printf(&g, "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Basic\",\"x\":");
	for (int i = 0; i < 600; i++)
		gen_printf(&g, "[");
	for (int i = 0; i < 600; i++)
		gen_printf(&g, "]");
	gen_printf(&g, "}}]}");
	fix_parse(&f, g.p);
	CHECK_INT(f.rc, FHIR_E_TOO_LARGE);
	CHECK_INT(f.err.offset, 74 + 508);  /* levels 5..512 are the first 508 '[' */
	CHECK(strstr(f.err.msg, "nesting deeper than 512 levels") != NULL);
	fix_free(&f);
	free(g.p);

	/* Over the size cap: refused before reading a byte. */
	fhir_page pg = FHIR_PAGE_NULL;
	fhir_error err;
	CHECK_INT(fhir_page_parse(&pg, "{", FHIR_PAGE_MAX_BYTES + 1, &err), FHIR_E_TOO_LARGE);
	fhir_page_deinit(&pg);
}

/* Every truncation of a page is an error, and reads stay in bounds. */
static void test_truncations_and_reuse(void)
{
	size_t len;
	char *page = gen_observation_page(2, 9, &len);
	fhir_page pg = FHIR_PAGE_NULL;
	fhir_error err;

	for (size_t n = 0; n < len; n++) {
		char *b = malloc(n ? n : 1);
		if (!b)
			abort();
		memcpy(b, page, n);
		int rc = fhir_page_parse(&pg, b, n, &err);
		if (rc != FHIR_E_JSON) {
			fprintf(stderr, "  prefix %zu: rc %d (%s)\n", n, rc, err.msg);
			harness_failures++;
		}
		CHECK_INT(pg.n_entries, 0);
		free(b);
	}
	/* The same page struct parses fine after all those failures. */
	CHECK_INT(fhir_page_parse(&pg, page, len, &err), 0);
	CHECK_INT(pg.n_entries, 2);
	CHECK(pg.next != NULL);
	fhir_page_deinit(&pg);
	free(page);
}

static void test_outcome_summary(void)
{
	const char *oo = "{\"resourceType\":\"OperationOutcome\",\"issue\":["
			 "{\"severity\":\"error\",\"code\":\"invalid\",\"diagnostics\":\"bad\\tvalue\\nhere\"},"
			 "{\"severity\":\"warning\",\"code\":\"processing\",\"details\":{\"text\":\"slow \\u00e9\"}},"
			 "{\"code\":\"informational\"}]}";
	char out[256];

	CHECK_INT(fhir_outcome_summary(oo, strlen(oo), out, sizeof(out)), 0);
	CHECK_STR(out, "error: invalid: bad value here; warning: processing: slow \xc3\xa9; issue: informational");

	/* Cut at a character boundary: "slow \xc3" would be half a character. */
	char small[64];
	CHECK_INT(fhir_outcome_summary(oo, strlen(oo), small, 60), 0);
	CHECK_STR(small, "error: invalid: bad value here; warning: processing: slow ");
	CHECK_INT(fhir_outcome_summary(oo, strlen(oo), small, 1), 0);
	CHECK_STR(small, "");

	const char *empty = "{\"resourceType\":\"OperationOutcome\"}";
	CHECK_INT(fhir_outcome_summary(empty, strlen(empty), out, sizeof(out)), 0);
	CHECK_STR(out, "OperationOutcome without issues");

	const char *other = "{\"resourceType\":\"Patient\",\n\"id\":\"\xc3\xa9\"}";
	CHECK_INT(fhir_outcome_summary(other, strlen(other), out, sizeof(out)), FHIR_E_NOT_BUNDLE);
	CHECK_STR(out, "{\"resourceType\":\"Patient\", \"id\":\"??\"}");

	const char *html = "<html><body>502 Bad Gateway</body></html>";
	CHECK_INT(fhir_outcome_summary(html, strlen(html), out, 20), FHIR_E_JSON);
	CHECK_STR(out, "<html><body>502 Bad");
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_generated_page),
		HARNESS_TEST(test_fields_any_order_and_escaped),
		HARNESS_TEST(test_minimal_pages),
		HARNESS_TEST(test_patient_references),
		HARNESS_TEST(test_contained_and_nested),
		HARNESS_TEST(test_errors),
		HARNESS_TEST(test_field_limits),
		HARNESS_TEST(test_truncations_and_reuse),
		HARNESS_TEST(test_outcome_summary),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
