/*
 * Tests for bridge/summary.c: the cached patient summary, built from HL7's
 * R4 examples (bridge/testdata/summary/) and variants of them made here.
 */
#include "bridge/summary.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

#define MRN_SYSTEM "urn:oid:1.2.36.146.595.217.0.1"
#define NOW_MS 1717200000000LL /* 2024-06-01T00:00:00Z */

/* A new reference to bridge/testdata/summary/<name>.json, or NULL. */
static json_t *load(const char *name)
{
	char rel[256];
	size_t len;
	json_error_t e;

	snprintf(rel, sizeof(rel), "bridge/testdata/summary/%s.json", name);
	char *text = harness_read_source_file(rel, &len);
	if (!text) {
		fprintf(stderr, "cannot read %s\n", rel);
		return NULL;
	}
	json_t *j = json_loadb(text, len, 0, &e);
	if (!j)
		fprintf(stderr, "%s: %s\n", rel, e.text);
	free(text);
	return j;
}

/* JSON written with ' for " (test JSON has no apostrophes). */
static json_t *parse(const char *text)
{
	json_error_t e;
	char *t = strdup(text);
	json_t *j = NULL;

	if (!t)
		return NULL;
	for (char *c = t; *c; c++)
		if (*c == '\'')
			*c = '"';
	j = json_loads(t, 0, &e);
	if (!j)
		fprintf(stderr, "bad test JSON: %s: %s\n", e.text, t);
	free(t);
	return j;
}

/*
 * An example changed by patch (JSON text as for parse()): each top-level
 * member of the patch replaces the resource's, a null member deletes it.
 */
static json_t *variant(const char *name, const char *patch)
{
	json_t *r = load(name), *p = parse(patch), *v;
	const char *k;

	if (!r || !p) {
		json_decref(r);
		json_decref(p);
		return NULL;
	}
	json_object_foreach(p, k, v) {
		if (json_is_null(v))
			json_object_del(r, k);
		else
			json_object_set(r, k, v);
	}
	json_decref(p);
	return r;
}


/* A set of resources (owned). */
typedef struct rset {
	json_t *r[128];
	size_t n;
	bool bad;  /* a load failed */
} rset;

static void add(rset *s, json_t *r)
{
	if (!r || s->n == sizeof(s->r) / sizeof(s->r[0])) {
		s->bad = true;
		json_decref(r);
		return;
	}
	s->r[s->n++] = r;
}

static void rset_free(rset *s)
{
	for (size_t i = 0; i < s->n; i++)
		json_decref(s->r[i]);
	s->n = 0;
}

static summary_opts opts(void)
{
	return (summary_opts){ .mrn_system = MRN_SYSTEM, .now_ms = NOW_MS, .data_as_of = "2024-05-31T23:00:00+02:00" };
}

static json_t *build(const rset *s, const summary_opts *o)
{
	char err[256];
	json_t *j = summary_build(s->r, s->n, o, err, sizeof(err));
	if (!j)
		fprintf(stderr, "summary_build: %s\n", err);
	return j;
}

/* A string member of the i-th item of section (NULL if absent or null). */
static const char *item_str(const json_t *sum, const char *section, size_t i, const char *key)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(sum, section), i), key));
}

/* An expected string member of an item: item i of a section, its key, the string. */
typedef struct item_want {
	size_t i;
	const char *key, *want;
} item_want;

/* Check each expected member of section; a mismatch names the item and the key. */
static void check_items(const json_t *sum, const char *section, const item_want *w, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		const char *got = item_str(sum, section, w[k].i, w[k].key);
		CHECK_STR(got, w[k].want);
		if (!got || strcmp(got, w[k].want) != 0)
			fprintf(stderr, "  (%s[%zu].%s)\n", section, w[k].i, w[k].key);
	}
}

/* A variant of an example resource: the example's name and the patch on it. */
typedef struct variant_spec {
	const char *name, *patch;
} variant_spec;

static void add_variants(rset *s, const variant_spec *v, size_t n)
{
	for (size_t k = 0; k < n; k++)
		add(s, variant(v[k].name, v[k].patch));
}

/* The ids of a section joined with ',' into buf. */
static const char *ids(const json_t *sum, const char *section, char *buf, size_t size)
{
	const json_t *it;
	size_t i, off = 0;

	buf[0] = 0;
	json_array_foreach(json_object_get(sum, section), i, it) {
		const char *id = json_string_value(json_object_get(it, "id"));
		off += (size_t)snprintf(buf + off, size - off, "%s%s", i ? "," : "", id ? id : "(null)");
		if (off >= size)
			break;
	}
	return buf;
}

/* The example chart of Patient/example: every section filled. */
static void add_chart(rset *s)
{
	static const char *const files[] = {
		"Observation-blood-pressure", "MedicationRequest-medrx0302", "AllergyIntolerance-nkla",
		"Condition-stroke", "Observation-heart-rate", "MedicationStatement-example005",
		"Observation-body-temperature", "AllergyIntolerance-medication", "Observation-satO2",
		"MedicationRequest-medrx0325", "Condition-example2", "Observation-respiratory-rate",
		"Observation-example", "MedicationRequest-medrx0311", "Observation-body-height",
		"AllergyIntolerance-example", "Observation-bmi", "MedicationStatement-example001",
		"Patient-example", "Observation-head-circumference", "Condition-example",
		"MedicationRequest-medrx0310", "Observation-f202",
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		add(s, load(files[i]));
}

static void test_example_chart(void)
{
	rset s = { 0 };
	summary_opts o = opts();
	char buf[512];

	add_chart(&s);
	REQUIRE(!s.bad);
	json_t *sum = build(&s, &o);
	REQUIRE(sum);

	const json_t *p = json_object_get(sum, "patient");
	CHECK_STR(json_string_value(json_object_get(p, "id")), "example");
	CHECK_STR(json_string_value(json_object_get(p, "mrn")), "12345");
	CHECK_STR(json_string_value(json_object_get(p, "name")), "Chalmers, Peter James");
	CHECK_STR(json_string_value(json_object_get(p, "birth_date")), "1974-12-25");
	CHECK_STR(json_string_value(json_object_get(p, "gender")), "male");
	CHECK(json_is_false(json_object_get(p, "deceased")));
	CHECK_INT(json_integer_value(json_object_get(p, "age")), 49);
	CHECK_STR(json_string_value(json_object_get(sum, "generated")), "2024-06-01T00:00:00.000Z");
	CHECK_STR(json_string_value(json_object_get(sum, "data_as_of")), "2024-05-31T23:00:00+02:00");

	/* Allergies: high criticality first, then by text. */
	CHECK_STR(ids(sum, "allergies", buf, sizeof(buf)), "example,medication,nkla");
	static const item_want allergies_want[] = {
		{ 0, "text", "Cashew nuts" },
		{ 0, "criticality", "high" },
		{ 0, "verification", "confirmed" },
		{ 0, "recorded", "2014-10-09T14:58:00+11:00" },
	};
	check_items(sum, "allergies", allergies_want, sizeof(allergies_want) / sizeof(allergies_want[0]));
	const json_t *rx = json_object_get(json_array_get(json_object_get(sum, "allergies"), 0), "reactions");
	CHECK_INT(json_array_size(rx), 2);
	CHECK_STR(json_string_value(json_array_get(rx, 0)), "Anaphylactic reaction (severe)");
	CHECK_STR(json_string_value(json_array_get(rx, 1)), "Urticaria (moderate)");
	CHECK_STR(item_str(sum, "allergies", 1, "verification"), "unconfirmed");
	CHECK(json_is_null(json_object_get(json_array_get(json_object_get(sum, "allergies"), 2), "criticality")));
	CHECK(json_is_null(json_object_get(json_array_get(json_object_get(sum, "allergies"), 0), "version_id")));

	/* Medications: active and on-hold requests, active statements (the
	 * entered-in-error statement is left out); by text, then id. */
	CHECK_STR(ids(sum, "medications", buf, sizeof(buf)), "medrx0302,medrx0311,medrx0325,example001,medrx0310");
	/* From the contained Medication #med0320. */
	static const item_want medications_want[] = {
		{ 0, "text", "Azithromycin 250mg capsule (product)" },
		{ 0, "dosage", "Two tablets at once" },
		{ 0, "authored", "2015-01-15" },
		{ 0, "source", "request" },
		{ 2, "text", "Nystatin 100UNT/MG Topical Ointment" },
		{ 2, "status", "on-hold" },
		{ 3, "source", "statement" },
		{ 3, "text", "Tylenol PM" },
		{ 3, "authored", "2015-01-23" },
	};
	check_items(sum, "medications", medications_want, sizeof(medications_want) / sizeof(medications_want[0]));

	/* Problems. */
	CHECK_STR(ids(sum, "problems", buf, sizeof(buf)), "example2,example,stroke");
	static const item_want problems_want[] = {
		{ 0, "onset", "approximately November 2012" },
		{ 0, "category", "Problem List Item" },
		{ 1, "text", "Burnt Ear" },
		{ 1, "category", "Encounter Diagnosis" },
	};
	check_items(sum, "problems", problems_want, sizeof(problems_want) / sizeof(problems_want[0]));

	/* Vitals in the fixed order, then the others; the entered-in-error
	 * temperature (Observation/f202) is not among them. */
	CHECK_STR(ids(sum, "vitals", buf, sizeof(buf)),
		  "blood-pressure,heart-rate,respiratory-rate,body-temperature,satO2,example,body-height,bmi,"
		  "head-circumference");
	static const item_want vitals_want[] = {
		{ 0, "code", "85354-9" },
		{ 0, "display", "Blood pressure" },
		{ 0, "value", "107/60" },
		{ 0, "unit", "mmHg" },
		{ 0, "time", "2012-09-17" },
		{ 3, "value", "36.5" },
		{ 4, "code", "2708-6" }, /* coded 2708-6 and 59408-5 */
		{ 5, "code", "29463-7" }, /* coded 29463-7 and 3141-9 */
		{ 5, "display", "Body weight" },
		{ 5, "value", "185" },
		{ 5, "unit", "lbs" },
		{ 6, "value", "66.89999999999999" }, /* as written in the example */
		{ 8, "display", "Head Circumference" },
	};
	check_items(sum, "vitals", vitals_want, sizeof(vitals_want) / sizeof(vitals_want[0]));
	CHECK_INT(json_array_size(json_object_get(sum, "labs")), 0);  /* no Observation of category laboratory */

	const json_t *counts = json_object_get(sum, "counts");
	CHECK_INT(json_integer_value(json_object_get(counts, "Patient")), 1);
	CHECK_INT(json_integer_value(json_object_get(counts, "Observation")), 10);
	CHECK_INT(json_integer_value(json_object_get(counts, "MedicationRequest")), 4);
	CHECK_INT(json_integer_value(json_object_get(counts, "MedicationStatement")), 2);
	CHECK_INT(json_integer_value(json_object_get(counts, "AllergyIntolerance")), 3);
	CHECK_INT(json_integer_value(json_object_get(counts, "Condition")), 3);
	CHECK_INT(json_object_size(counts), 6);

	/* The same resources in the reverse order give the same summary. */
	for (size_t i = 0; i < s.n / 2; i++) {
		json_t *t = s.r[i];
		s.r[i] = s.r[s.n - 1 - i];
		s.r[s.n - 1 - i] = t;
	}
	json_t *again = build(&s, &o);
	CHECK(again && json_equal(sum, again));
	json_decref(again);
	json_decref(sum);
	rset_free(&s);
}

/* The patient block for other example Patients. */
static void test_patient_block(void)
{
	static const struct {
		const char *file, *name, *birth;
		bool deceased;
		long long age;  /* -1: null */
	} cases[] = {
		{ "Patient-ch-example", "张无忌", "1974-12-25", false, 49 },    /* text only */
		{ "Patient-f201", "Bor, Roelof Olaf", "1960-03-13", false, 64 }, /* official, text "Roel" unused */
		{ "Patient-animal", "Kenzi", "2010-03-23", false, 14 },         /* given only */
		{ "Patient-dicom", "MINT_TEST", NULL, false, -1 },               /* family only, no birthDate */
		{ "Patient-infant-fetal", NULL, NULL, false, -1 },               /* no name */
		{ "Patient-pat3", "Notsowell, Simon", "1982-01-23", true, -1 },  /* deceasedDateTime */
		{ "Patient-pat4", "Notsowell, Sandy", "1982-08-02", true, -1 },  /* deceasedBoolean */
	};
	summary_opts o = opts();

	o.mrn_system = NULL;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rset s = { 0 };
		add(&s, load(cases[i].file));
		REQUIRE(!s.bad);
		json_t *sum = build(&s, &o);
		REQUIRE(sum);
		const json_t *p = json_object_get(sum, "patient");
		const char *name = json_string_value(json_object_get(p, "name"));
		const char *birth = json_string_value(json_object_get(p, "birth_date"));
		if (cases[i].name)
			CHECK_STR(name, cases[i].name);
		else
			CHECK(json_is_null(json_object_get(p, "name")));
		if (cases[i].birth)
			CHECK_STR(birth, cases[i].birth);
		else
			CHECK(json_is_null(json_object_get(p, "birth_date")));
		CHECK(json_is_boolean(json_object_get(p, "deceased")));
		CHECK(json_is_true(json_object_get(p, "deceased")) == cases[i].deceased);
		if (cases[i].age < 0)
			CHECK(json_is_null(json_object_get(p, "age")));
		else
			CHECK_INT(json_integer_value(json_object_get(p, "age")), cases[i].age);
		CHECK(json_is_null(json_object_get(p, "mrn")));  /* no mrn_system */
		CHECK(json_is_null(json_object_get(sum, "data_as_of")) == false);
		/* Every section is there, empty. */
		CHECK(json_is_array(json_object_get(sum, "allergies")));
		CHECK_INT(json_array_size(json_object_get(sum, "allergies")), 0);
		CHECK(json_is_array(json_object_get(sum, "labs")));
		json_decref(sum);
		rset_free(&s);
	}

	/* The MRN is the identifier with the configured system only. */
	rset s = { 0 };
	add(&s, load("Patient-f201"));
	REQUIRE(!s.bad);
	o.mrn_system = "urn:oid:2.16.840.1.113883.2.4.6.3";
	o.data_as_of = NULL;
	json_t *sum = build(&s, &o);
	REQUIRE(sum);
	CHECK_STR(json_string_value(json_object_get(json_object_get(sum, "patient"), "mrn")), "123456789");
	CHECK(json_is_null(json_object_get(sum, "data_as_of")));
	json_decref(sum);
	o.mrn_system = "urn:other";
	sum = build(&s, &o);
	REQUIRE(sum);
	CHECK(json_is_null(json_object_get(json_object_get(sum, "patient"), "mrn")));
	json_decref(sum);
	rset_free(&s);

	/* Age: the birthday counts from its first instant (UTC); before the
	 * birth there is none. */
	add(&s, load("Patient-example"));
	REQUIRE(!s.bad);
	o.now_ms = 1735084799999LL;  /* 2024-12-24T23:59:59.999Z */
	sum = build(&s, &o);
	CHECK(sum && json_integer_value(json_object_get(json_object_get(sum, "patient"), "age")) == 49);
	json_decref(sum);
	o.now_ms = 1735084800000LL;  /* 2024-12-25T00:00:00Z */
	sum = build(&s, &o);
	CHECK(sum && json_integer_value(json_object_get(json_object_get(sum, "patient"), "age")) == 50);
	json_decref(sum);
	o.now_ms = 0;  /* 1970 */
	sum = build(&s, &o);
	CHECK(sum && json_is_null(json_object_get(json_object_get(sum, "patient"), "age")));
	json_decref(sum);
	rset_free(&s);

	/* Name choice: official before usual before the first. */
	add(&s, variant("Patient-example", "{'name': [{'use': 'maiden', 'family': 'Windsor'},"
					   " {'use': 'usual', 'given': ['Jim']}]}"));
	REQUIRE(!s.bad);
	sum = build(&s, &o);
	CHECK_STR(json_string_value(json_object_get(json_object_get(sum, "patient"), "name")), "Jim");
	json_decref(sum);
	rset_free(&s);
	add(&s, variant("Patient-example", "{'name': [{'use': 'maiden', 'family': 'Windsor'},"
					   " {'use': 'old', 'given': ['Jim']}]}"));
	REQUIRE(!s.bad);
	sum = build(&s, &o);
	CHECK_STR(json_string_value(json_object_get(json_object_get(sum, "patient"), "name")), "Windsor");
	json_decref(sum);
	rset_free(&s);
}

static void test_errors(void)
{
	summary_opts o = opts();
	char err[256];
	rset s = { 0 };

	add(&s, load("Observation-heart-rate"));
	add(&s, load("Condition-stroke"));
	REQUIRE(!s.bad);
	CHECK(summary_build(s.r, s.n, &o, err, sizeof(err)) == NULL);
	CHECK_STR(err, "no Patient resource among the cached resources");
	CHECK(summary_build(NULL, 0, &o, err, sizeof(err)) == NULL);
	CHECK_STR(err, "no Patient resource among the cached resources");

	add(&s, load("Patient-example"));
	add(&s, load("Patient-pat3"));
	REQUIRE(!s.bad);
	CHECK(summary_build(s.r, s.n, &o, err, sizeof(err)) == NULL);
	CHECK_STR(err, "2 Patient resources among the cached resources (expected one)");
	CHECK(summary_build(s.r, s.n, NULL, err, sizeof(err)) == NULL);
	CHECK(summary_build(NULL, 3, &o, err, sizeof(err)) == NULL);
	CHECK(summary_build(s.r, s.n, &o, NULL, 0) == NULL);  /* no err buffer: fine */
	rset_free(&s);

	/* Values that are not resources are skipped (and not counted), also
	 * around a valid Patient. */
	json_t *r[6] = { NULL, json_integer(7), parse("{'id': 'x'}"), json_array(), load("Patient-example"),
			 parse("{'resourceType': 5}") };
	json_t *sum = summary_build(r, 6, &o, err, sizeof(err));
	CHECK(sum != NULL);
	CHECK_INT(json_object_size(json_object_get(sum, "counts")), 1);
	json_decref(sum);
	CHECK(summary_build(r, 4, &o, err, sizeof(err)) == NULL);
	CHECK_STR(err, "no Patient resource among the cached resources");
	for (size_t i = 0; i < 6; i++)
		json_decref(r[i]);
}

static void test_allergy_rules(void)
{
	rset s = { 0 };
	summary_opts o = opts();
	char buf[512];

	add(&s, load("Patient-example"));
	/* Left out. */
	static const variant_spec variants[] = {
		{ "AllergyIntolerance-example", "{'id': 'inactive', 'clinicalStatus': {'coding': [{'system':"
		  "'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', 'code': 'inactive'}]}}" },
		{ "AllergyIntolerance-example", "{'id': 'resolved', 'clinicalStatus': {'coding': [{'code':"
		  " 'resolved'}]}}" },
		{ "AllergyIntolerance-example", "{'id': 'eie', 'verificationStatus': {'coding': [{'code':"
		  " 'entered-in-error'}]}}" },
		{ "AllergyIntolerance-example", "{'id': 'refuted', 'verificationStatus': {'coding': [{'code':"
		  " 'refuted'}]}}" },
	};
	add_variants(&s, variants, sizeof(variants) / sizeof(variants[0]));
	/* Kept: no clinical status, or one without a code. */
	static const variant_spec variants2[] = {
		{ "AllergyIntolerance-medication", "{'id': 'nostatus', 'clinicalStatus': null, 'criticality':"
		  " 'low', 'meta': {'versionId': '3'}}" },
		{ "AllergyIntolerance-medication", "{'id': 'textstatus', 'clinicalStatus': {'text': '?'},"
		  " 'criticality': 'unable-to-assess', 'code': {'coding': [{'code': '7980'}]},"
		  " 'reaction': [{'severity': 'mild'}, {'description': 'itching'}, {}]}" },
		{ "AllergyIntolerance-nkla", "{'id': 'nocode', 'code': null}" },
	};
	add_variants(&s, variants2, sizeof(variants2) / sizeof(variants2[0]));
	REQUIRE(!s.bad);
	json_t *sum = build(&s, &o);
	REQUIRE(sum);
	/* Order: low, unable-to-assess, then none (by text, null last). */
	CHECK_STR(ids(sum, "allergies", buf, sizeof(buf)), "nostatus,textstatus,nocode");
	CHECK_STR(item_str(sum, "allergies", 0, "version_id"), "3");
	CHECK_STR(item_str(sum, "allergies", 1, "text"), "7980");  /* the code when nothing else */
	const json_t *rx = json_object_get(json_array_get(json_object_get(sum, "allergies"), 1), "reactions");
	CHECK_INT(json_array_size(rx), 2);
	CHECK_STR(json_string_value(json_array_get(rx, 0)), "unspecified (mild)");
	CHECK_STR(json_string_value(json_array_get(rx, 1)), "itching");
	CHECK(json_is_null(json_object_get(json_array_get(json_object_get(sum, "allergies"), 2), "text")));
	CHECK_INT(json_integer_value(json_object_get(json_object_get(sum, "counts"), "AllergyIntolerance")), 7);
	json_decref(sum);
	rset_free(&s);
}

static void test_medication_rules(void)
{
	static const char *const out_statuses[] = { "completed", "stopped", "cancelled", "draft", "entered-in-error",
						    "unknown" };
	rset s = { 0 };
	summary_opts o = opts();
	char patch[256], buf[512];

	add(&s, load("Patient-example"));
	for (size_t i = 0; i < sizeof(out_statuses) / sizeof(out_statuses[0]); i++) {
		snprintf(patch, sizeof(patch), "{'id': 'out-%zu', 'status': '%s'}", i, out_statuses[i]);
		add(&s, variant("MedicationRequest-medrx0302", patch));
	}
	add(&s, variant("MedicationRequest-medrx0302", "{'id': 'nostatus', 'status': null}"));
	add(&s, variant("MedicationStatement-example001", "{'id': 'st-hold', 'status': 'on-hold'}"));
	/* Kept, with their texts. */
	static const variant_spec variants3[] = {
		{ "MedicationRequest-medrx0310", "{'id': 'built', 'meta': {'versionId': '7'},"
		  " 'dosageInstruction': [{'timing': {'repeat': {'frequency': 1, 'period': 4, 'periodMax': 6,"
		  " 'periodUnit': 'h'}}, 'asNeededCodeableConcept': {'coding': [{'display': 'Restless Legs'}]},"
		  " 'route': {'coding': [{'display': 'Oral Route'}]}, 'doseAndRate': [{'doseRange':"
		  " {'low': {'value': 1, 'unit': 'TAB'}, 'high': {'value': 2, 'unit': 'TAB'}}}]}]}" },
		{ "MedicationRequest-medrx0325", "{'id': 'coding-display', 'medicationCodeableConcept':"
		  " {'coding': [{'code': '1'}, {'code': '2', 'display': 'B drug'}]},"
		  " 'dosageInstruction': [{'doseAndRate': [{'doseQuantity': {'value': 100, 'code': 'mg'}}],"
		  " 'timing': {'repeat': {'frequency': 3, 'period': 1, 'periodUnit': 'd'}},"
		  " 'asNeededBoolean': true}]}" },
		{ "MedicationRequest-medrx0325", "{'id': 'coding-code', 'medicationCodeableConcept':"
		  " {'coding': [{'code': 'C-code'}]}, 'dosageInstruction': [{'timing': {'code':"
		  " {'text': 'QD'}}}]}" },
		{ "MedicationRequest-medrx0302", "{'id': 'ref-display', 'medicationReference':"
		  " {'reference': '#med0320', 'display': 'A by display'}, 'dosageInstruction': []}" },
		{ "MedicationRequest-medrx0302", "{'id': 'ref-unresolved', 'medicationReference':"
		  " {'reference': '#nothere'}}" },
		{ "MedicationStatement-example001", "{'id': 'st-period', 'effectiveDateTime': null,"
		  " 'effectivePeriod': {'start': '2020-01-01'}, 'medicationReference': {'display': 'D'}}" },
		{ "MedicationStatement-example001", "{'id': 'st-asserted', 'effectiveDateTime': null,"
		  " 'medicationReference': {'display': 'E'}}" },
	};
	add_variants(&s, variants3, sizeof(variants3) / sizeof(variants3[0]));
	REQUIRE(!s.bad);
	json_t *sum = build(&s, &o);
	REQUIRE(sum);
	CHECK_STR(ids(sum, "medications", buf, sizeof(buf)),
		  "ref-display,coding-display,coding-code,st-period,st-asserted,built,ref-unresolved");
	CHECK_STR(item_str(sum, "medications", 0, "text"), "A by display");
	CHECK(json_is_null(json_object_get(json_array_get(json_object_get(sum, "medications"), 0), "dosage")));
	static const item_want medications_want2[] = {
		{ 1, "text", "B drug" },
		{ 1, "dosage", "100 mg, 3 times per 1 d, as needed" },
		{ 2, "text", "C-code" },
		{ 2, "dosage", "QD" },
		{ 3, "authored", "2020-01-01" },
		{ 3, "source", "statement" },
		{ 4, "authored", "2015-02-22" }, /* dateAsserted */
		{ 5, "text", "Tylenol PM" },
	};
	check_items(sum, "medications", medications_want2, sizeof(medications_want2) / sizeof(medications_want2[0]));
	CHECK_STR(item_str(sum, "medications", 5, "dosage"),
		  "1 - 2 TAB, Oral Route, every 4-6 h, as needed for Restless Legs");
	CHECK_STR(item_str(sum, "medications", 5, "version_id"), "7");
	CHECK(json_is_null(json_object_get(json_array_get(json_object_get(sum, "medications"), 6), "text")));
	json_decref(sum);
	rset_free(&s);
}

static void test_problem_rules(void)
{
	rset s = { 0 };
	summary_opts o = opts();
	char buf[512];

	add(&s, load("Patient-example"));
	static const variant_spec variants4[] = {
		{ "Condition-example", "{'id': 'resolved', 'clinicalStatus': {'coding': [{'code':"
		  " 'resolved'}]}}" },
		{ "Condition-example", "{'id': 'inactive', 'clinicalStatus': {'coding': [{'code':"
		  " 'inactive'}]}}" },
		{ "Condition-example", "{'id': 'remission', 'clinicalStatus': {'coding': [{'code':"
		  " 'remission'}]}}" },
		{ "Condition-example", "{'id': 'nostatus', 'clinicalStatus': null}" },
		{ "Condition-example", "{'id': 'eie', 'verificationStatus': {'coding': [{'code':"
		  " 'entered-in-error'}]}}" },
		{ "Condition-example", "{'id': 'refuted', 'verificationStatus': {'coding': [{'code':"
		  " 'refuted'}]}}" },
		{ "Condition-example", "{'id': 'recurrence', 'clinicalStatus': {'coding': [{'code':"
		  " 'recurrence'}]}, 'code': {'text': 'A'}, 'onsetDateTime': null, 'onsetAge': {'value': 52,"
		  " 'unit': 'years'}, 'category': [{'coding': [{'system': 'http://snomed.info/sct', 'code':"
		  " '55607006', 'display': 'Problem'},"
		  " {'system': 'http://terminology.hl7.org/CodeSystem/condition-category',"
		  " 'code': 'problem-list-item'}]}]}" },
		{ "Condition-example", "{'id': 'relapse', 'clinicalStatus': {'coding': [{'code':"
		  " 'relapse'}]}, 'code': {'text': 'B'}, 'onsetDateTime': null, 'onsetRange': {'low':"
		  " {'value': 40, 'unit': 'a'}, 'high': {'value': 45}}, 'category': null}" },
		{ "Condition-example", "{'id': 'period', 'code': {'text': 'C'}, 'onsetDateTime': null,"
		  " 'onsetPeriod': {'start': '2001-02'}, 'category': [{'text': 'Own category'}]}" },
	};
	add_variants(&s, variants4, sizeof(variants4) / sizeof(variants4[0]));
	REQUIRE(!s.bad);
	json_t *sum = build(&s, &o);
	REQUIRE(sum);
	CHECK_STR(ids(sum, "problems", buf, sizeof(buf)), "recurrence,relapse,period");
	static const item_want problems_want2[] = {
		{ 0, "onset", "52 years" },
		{ 0, "category", "problem-list-item" },
		{ 1, "onset", "40 - 45 a" },
	};
	check_items(sum, "problems", problems_want2, sizeof(problems_want2) / sizeof(problems_want2[0]));
	CHECK(json_is_null(json_object_get(json_array_get(json_object_get(sum, "problems"), 1), "category")));
	CHECK_STR(item_str(sum, "problems", 2, "onset"), "2001-02");
	CHECK_STR(item_str(sum, "problems", 2, "category"), "Own category");
	json_decref(sum);
	rset_free(&s);
}

/* Latest per code: instants with offsets, skipped statuses, ties. */
static void test_vitals_latest(void)
{
	rset s = { 0 };
	summary_opts o = opts();
	char buf[512];

	add(&s, load("Patient-example"));
	add(&s, load("Observation-heart-rate"));  /* 1999-07-02: UTC midnight */
	/* 10:00+02:00 is 08:00Z, earlier than 09:00Z though it sorts later as
	 * text (and its id is the greater one). */
	add(&s, variant("Observation-heart-rate", "{'id': 'hr-z-0800z', 'effectiveDateTime':"
			" '1999-07-02T10:00:00+02:00', 'valueQuantity': {'value': 50, 'unit': '/min'}}"));
	add(&s, variant("Observation-heart-rate", "{'id': 'hr-0900z', 'effectiveDateTime': null,"
			" 'effectivePeriod': {'start': '1999-07-02T09:00:00Z'}, 'valueQuantity': {'value': 60,"
			" 'code': '/min'}}"));
	/* Newer, but not shown: entered in error, cancelled, without a value. */
	static const variant_spec variants5[] = {
		{ "Observation-heart-rate", "{'id': 'hr-eie', 'status': 'entered-in-error',"
		  " 'effectiveDateTime': '2020-01-01T00:00:00Z'}" },
		{ "Observation-heart-rate", "{'id': 'hr-cancelled', 'status': 'cancelled',"
		  " 'effectiveDateTime': '2020-01-01T00:00:00Z'}" },
		{ "Observation-heart-rate", "{'id': 'hr-novalue', 'valueQuantity': null, 'dataAbsentReason':"
		  " {'text': 'asked'}, 'effectiveDateTime': '2020-01-01T00:00:00Z'}" },
	};
	add_variants(&s, variants5, sizeof(variants5) / sizeof(variants5[0]));
	/* Not a vital sign: no category. */
	add(&s, variant("Observation-heart-rate", "{'id': 'hr-nocat', 'category': null,"
			" 'effectiveDateTime': '2021-01-01T00:00:00Z'}"));
	/* Temperature: same instant twice, lastUpdated decides; then the id. */
	static const variant_spec variants6[] = {
		{ "Observation-body-temperature", "{'id': 't-a',"
		  " 'effectiveDateTime': '2001-01-01T12:00:00+01:00',"
		  " 'meta': {'lastUpdated': '2001-01-02T00:00:00Z'}, 'valueQuantity': {'value': 37.1}}" },
		{ "Observation-body-temperature", "{'id': 't-b', 'effectiveDateTime': '2001-01-01T11:00:00Z',"
		  " 'meta': {'lastUpdated': '2001-01-01T23:00:00Z'}, 'valueQuantity': {'value': 37.2}}" },
		{ "Observation-respiratory-rate", "{'id': 'rr-a', 'effectiveDateTime': '2001-01-01T11:00:00Z'}" },
		{ "Observation-respiratory-rate", "{'id': 'rr-b', 'effectiveDateTime': '2001-01-01T11:00:00Z'}" },
	};
	add_variants(&s, variants6, sizeof(variants6) / sizeof(variants6[0]));
	/* Blood pressure: the newer panel lacks its diastolic value; a newer
	 * cancelled one is skipped. */
	add(&s, load("Observation-blood-pressure"));
	json_t *bp = variant("Observation-blood-pressure", "{'id': 'bp-dar', 'effectiveDateTime': '2013-01-01'}");
	if (bp)
		json_object_del(json_array_get(json_object_get(bp, "component"), 1), "valueQuantity");
	add(&s, bp);
	add(&s, variant("Observation-blood-pressure", "{'id': 'bp-cancel', 'status': 'cancelled',"
			" 'effectiveDateTime': '2014-01-01'}"));
	/* Others after the table, by display: a non-LOINC code and an
	 * untimed one. */
	add(&s, parse("{'resourceType': 'Observation', 'id': 'local', 'status': 'final', 'category':"
		      " [{'coding': [{'code': 'vital-signs'}]}], 'code': {'coding': [{'system': 'urn:local',"
		      " 'code': 'PAIN', 'display': 'Pain score'}]}, 'valueInteger': 3}"));
	add(&s, parse("{'resourceType': 'Observation', 'id': 'avpu', 'status': 'final', 'category':"
		      " [{'coding': [{'code': 'vital-signs'}]}], 'code': {'text': 'AVPU', 'coding':"
		      " [{'system': 'http://loinc.org', 'code': '11454-6'}]}, 'valueCodeableConcept':"
		      " {'text': 'Alert'}, 'effectiveDateTime': 'not a time'}"));
	REQUIRE(!s.bad);
	json_t *sum = build(&s, &o);
	REQUIRE(sum);
	CHECK_STR(ids(sum, "vitals", buf, sizeof(buf)), "bp-dar,hr-0900z,rr-b,t-a,avpu,local");
	static const item_want vitals_want2[] = {
		{ 0, "value", "107/?" },
		{ 0, "unit", "mmHg" },
		{ 1, "value", "60" },
		{ 1, "unit", "/min" }, /* code when there is no unit */
		{ 1, "time", "1999-07-02T09:00:00Z" },
		{ 3, "value", "37.1" },
		{ 4, "display", "AVPU" },
		{ 4, "value", "Alert" },
		{ 4, "time", "not a time" },
		{ 5, "code", "PAIN" },
		{ 5, "display", "Pain score" },
		{ 5, "value", "3" },
	};
	check_items(sum, "vitals", vitals_want2, sizeof(vitals_want2) / sizeof(vitals_want2[0]));
	CHECK(json_is_null(json_object_get(json_array_get(json_object_get(sum, "vitals"), 5), "unit")));
	json_decref(sum);
	rset_free(&s);
}

/* A laboratory Observation (JSON text) with code, value member and time. */
static json_t *lab(const char *id, const char *code, const char *value_member, const char *time)
{
	char text[1024];
	snprintf(text, sizeof(text),
		 "{'resourceType': 'Observation', 'id': '%s', 'status': 'final', 'category': [{'coding':"
		 " [{'system': 'http://terminology.hl7.org/CodeSystem/observation-category', 'code': 'laboratory'}]}],"
		 " 'code': {'coding': [{'system': 'http://loinc.org', 'code': '%s'}]}, %s%s%s%s}",
		 id, code, value_member, time ? ", 'effectiveDateTime': '" : "", time ? time : "", time ? "'" : "");
	return parse(text);
}

static void test_labs(void)
{
	static const char lab_cat[] = "{'category': [{'coding': [{'code': 'laboratory'}]}]}";
	rset s = { 0 };
	summary_opts o = opts();
	char buf[512];

	add(&s, load("Patient-f201"));
	add(&s, variant("Observation-f001", lab_cat));  /* glucose 2013-04-02T09:30:10+01:00 */
	add(&s, variant("Observation-f005", lab_cat));  /* haemoglobin 2013-04-05T10:30:10+01:00 */
	add(&s, load("Observation-f001"));              /* no category: not a lab */
	/* An older glucose (08:30:10Z < 09:30:10+01:00 = 08:30:10Z? equal: the greater id wins). */
	add(&s, lab("f001-z", "15074-8", "'valueQuantity': {'value': 9.9}", "2013-04-02T08:30:10Z"));
	add(&s, lab("f000", "15074-8", "'valueQuantity': {'value': 1.1}", "2013-04-02T08:00:00Z"));
	add(&s, lab("coded", "883-9", "'valueCodeableConcept': {'coding': [{'display': 'Group O'}]}",
		    "2013-04-01"));
	add(&s, lab("untimed", "5778-6", "'valueString': 'yellow', 'referenceRange': [{'low': {'value': 22}}]",
		    NULL));
	add(&s, lab("ratio", "5370-6", "'valueRatio': {'numerator': {'value': 1}, 'denominator': {'value': 128}},"
		    " 'referenceRange': [{'high': {'value': 0.5, 'unit': 'ratio'}}]", "2012-01-01"));
	REQUIRE(!s.bad);
	json_t *sum = build(&s, &o);
	REQUIRE(sum);
	CHECK_STR(ids(sum, "labs", buf, sizeof(buf)), "f005,f001-z,coded,ratio,untimed");
	static const item_want labs_want[] = {
		{ 0, "display", "Hemoglobin [Mass/volume] in Blood" },
		{ 0, "value", "7.2" },
		{ 0, "unit", "g/dl" },
		{ 0, "interpretation", "Low" },
		{ 0, "reference_range", "7.5 - 10 g/dl" },
		{ 1, "value", "9.9" },
		{ 1, "display", "15074-8" }, /* no text or display: the code */
		{ 2, "value", "Group O" },
		{ 3, "value", "1/128" },
		{ 3, "reference_range", "<= 0.5 ratio" },
		{ 4, "value", "yellow" },
		{ 4, "reference_range", ">= 22" },
	};
	check_items(sum, "labs", labs_want, sizeof(labs_want) / sizeof(labs_want[0]));
	CHECK(json_is_null(json_object_get(json_array_get(json_object_get(sum, "labs"), 4), "time")));
	CHECK_INT(json_array_size(json_object_get(sum, "vitals")), 0);
	json_decref(sum);

	/* The glucose of f001 itself when it is the only one at its instant. */
	json_decref(s.r[4]);
	s.r[4] = lab("a-first", "15074-8", "'valueQuantity': {'value': 9.9}", "2013-04-02T08:30:10Z");
	REQUIRE(s.r[4]);
	sum = build(&s, &o);
	REQUIRE(sum);
	static const item_want labs_want2[] = {
		{ 1, "id", "f001" },
		{ 1, "value", "6.3" },
		{ 1, "interpretation", "High" },
		{ 1, "reference_range", "3.1 - 6.2 mmol/l" },
	};
	check_items(sum, "labs", labs_want2, sizeof(labs_want2) / sizeof(labs_want2[0]));
	json_decref(sum);

	/* At most max_labs, the newest. */
	o.max_labs = 2;
	sum = build(&s, &o);
	REQUIRE(sum);
	CHECK_STR(ids(sum, "labs", buf, sizeof(buf)), "f005,f001");
	json_decref(sum);
	rset_free(&s);

	/* The default is 20. */
	add(&s, load("Patient-f201"));
	for (int i = 0; i < 25; i++) {
		char id[16], code[16], t[32];
		snprintf(id, sizeof(id), "l%02d", i);
		snprintf(code, sizeof(code), "%d-0", 1000 + i);
		snprintf(t, sizeof(t), "2020-01-%02dT00:00:00Z", i + 1);
		add(&s, lab(id, code, "'valueInteger': 1", t));
	}
	REQUIRE(!s.bad);
	o.max_labs = 0;
	sum = build(&s, &o);
	REQUIRE(sum);
	CHECK_INT(json_array_size(json_object_get(sum, "labs")), 20);
	CHECK_STR(item_str(sum, "labs", 0, "id"), "l24");
	CHECK_STR(item_str(sum, "labs", 19, "id"), "l05");
	json_decref(sum);
	rset_free(&s);
}

/* Numbers come back with their digits (see summary.h for what is lost). */
static void test_number_text(void)
{
	static const struct {
		const char *json, *text;
	} cases[] = {
		{ "0.1", "0.1" },
		{ "1.50", "1.5" },
		{ "1.0", "1" },
		{ "-0.25", "-0.25" },
		{ "36.6", "36.6" },
		{ "1E-22", "1e-22" },
		{ "1000000000000000000", "1000000000000000000" },
		{ "-9223372036854775807", "-9223372036854775807" },
		{ "123456.789012345", "123456.789012345" },
		{ "98.60000000000001", "98.60000000000001" },
	};
	summary_opts o = opts();
	rset s = { 0 };
	char member[256];

	add(&s, load("Patient-example"));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char id[16], code[16];
		snprintf(id, sizeof(id), "n%zu", i);
		snprintf(code, sizeof(code), "%zu-1", 100 + i);
		snprintf(member, sizeof(member), "'valueQuantity': {'value': %s, 'unit': 'u'}", cases[i].json);
		add(&s, lab(id, code, member, "2020-01-01"));
	}
	add(&s, lab("cmp", "99-9", "'valueQuantity': {'value': 5, 'comparator': '<'}", "2020-01-01"));
	REQUIRE(!s.bad);
	o.max_labs = 100;
	json_t *sum = build(&s, &o);
	REQUIRE(sum);
	const json_t *it;
	size_t i, seen = 0;
	json_array_foreach(json_object_get(sum, "labs"), i, it) {
		const char *id = json_string_value(json_object_get(it, "id"));
		const char *v = json_string_value(json_object_get(it, "value"));
		REQUIRE(id && v);
		if (strcmp(id, "cmp") == 0) {
			CHECK_STR(v, "<5");
		} else {
			size_t k = (size_t)atoi(id + 1);
			REQUIRE(k < sizeof(cases) / sizeof(cases[0]));
			CHECK_STR(v, cases[k].text);
		}
		seen++;
	}
	CHECK_INT(seen, sizeof(cases) / sizeof(cases[0]) + 1);
	json_decref(sum);
	rset_free(&s);
}

/* Offsets of the column starts of a table line (two spaces or more apart). */
static size_t col_starts(const char *line, size_t len, size_t *starts, size_t max)
{
	size_t n = 0, i = 0;
	while (i < len && line[i] == ' ')
		i++;
	while (i < len && n < max) {
		starts[n++] = i;
		while (i < len && !(line[i] == ' ' && i + 1 < len && line[i + 1] == ' '))
			i++;
		while (i < len && line[i] == ' ')
			i++;
	}
	return n;
}

static void test_render_text(void)
{
	rset s = { 0 };
	summary_opts o = opts();
	char *text = NULL;

	add_chart(&s);
	add(&s, variant("AllergyIntolerance-medication", "{'id': 'ctl', 'code': {'text':"
			" 'Bad\\nline\\u001b[31m\\u009bX\\u202eY'}}"));
	REQUIRE(!s.bad);
	json_t *sum = build(&s, &o);
	REQUIRE(sum);
	REQUIRE(summary_render_text(sum, &text) == 0);
	REQUIRE(text);
	CHECK(strncmp(text, "data as of 2024-05-31T23:00:00+02:00\n", 37) == 0);
	CHECK(strstr(text, "\nPatient  Chalmers, Peter James\n") != NULL);
	CHECK(strstr(text, "\nMRN      12345\n") != NULL);
	CHECK(strstr(text, "\nBorn     1974-12-25 (age 49)\n") != NULL);
	CHECK(strstr(text, "\nAllergies (4)\n") != NULL);
	CHECK(strstr(text, "\nMedications (5)\n") != NULL);
	CHECK(strstr(text, "\nLabs, latest of each, newest first (0)\n  none in the cache\n") != NULL);
	/* The control characters became spaces: no ESC, no C1, no extra line. */
	CHECK(strchr(text, 0x1b) == NULL);
	CHECK(strstr(text, "\xc2\x9b") == NULL);
	CHECK(strstr(text, "\xe2\x80\xae") == NULL);
	CHECK(strstr(text, "Bad line [31m X Y") != NULL);
	/* No trailing spaces; the vital signs table is aligned. */
	const char *vit = strstr(text, "\n  VITAL SIGN");
	REQUIRE(vit);
	size_t head[8], nh = 0, rows = 0;
	for (const char *line = text; *line;) {
		const char *nl = strchr(line, '\n');
		REQUIRE(nl);
		size_t len = (size_t)(nl - line);
		CHECK(len == 0 || line[len - 1] != ' ');
		if (line == vit + 1) {
			nh = col_starts(line, len, head, 8);
			CHECK_INT(nh, 4);
		} else if (nh && len > 2 && line[0] == ' ' && line > vit && rows < 9) {
			size_t cols[8];
			CHECK_INT(col_starts(line, len, cols, 8), 4);
			for (size_t c = 0; c < 4; c++)
				CHECK_INT(cols[c], head[c]);
			rows++;
		}
		line = nl + 1;
	}
	CHECK_INT(rows, 9);
	CHECK(strstr(text, "  Blood pressure      107/60             mmHg            2012-09-17\n") != NULL);
	free(text);
	json_decref(sum);

	/* Never synced; a deceased patient; empty sections. */
	rset_free(&s);
	add(&s, load("Patient-pat4"));
	REQUIRE(!s.bad);
	o.data_as_of = NULL;
	sum = build(&s, &o);
	REQUIRE(sum);
	REQUIRE(summary_render_text(sum, &text) == 0);
	CHECK(strncmp(text, "data as of: never synced\n", 25) == 0);
	CHECK(strstr(text, "\nStatus   DECEASED\n") != NULL);
	CHECK(strstr(text, "\nMRN      -\n") != NULL);
	CHECK(strstr(text, "\nAllergies (0)\n  none in the cache\n") != NULL);
	free(text);
	json_decref(sum);
	rset_free(&s);

	text = (char *)"x";
	CHECK_INT(summary_render_text(NULL, &text), -EINVAL);
	CHECK(text == NULL);
	json_t *arr = json_array();
	CHECK_INT(summary_render_text(arr, &text), -EINVAL);
	json_decref(arr);
	CHECK_INT(summary_render_text(NULL, NULL), -EINVAL);
	/* Any object renders (missing parts are empty). */
	json_t *empty = json_object();
	CHECK_INT(summary_render_text(empty, &text), 0);
	CHECK(text && strncmp(text, "data as of: never synced\n", 25) == 0);
	free(text);
	json_decref(empty);
}

/*
 * Unexpected shapes are left out, never an error or a crash: every member
 * (and every member of a member) of every resource of the chart replaced
 * by values of the wrong type, one at a time.
 */
static void test_wrong_shapes(void)
{
	rset s = { 0 };
	summary_opts o = opts();
	size_t builds = 0, failed = 0;

	add_chart(&s);
	REQUIRE(!s.bad);
	json_t *bad[] = { json_integer(42), json_string("x"), json_array(), json_object(), json_true() };
	for (size_t r = 0; r < s.n; r++) {
		json_t *res = s.r[r];
		const char *k;
		json_t *v;
		void *tmp;
		json_object_foreach_safe(res, tmp, k, v) {
			if (strcmp(k, "resourceType") == 0)
				continue;
			json_t *saved = json_incref(v);
			char key[128];
			snprintf(key, sizeof(key), "%s", k);
			for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
				json_object_set(res, key, bad[b]);
				json_t *sum = summary_build(s.r, s.n, &o, NULL, 0);
				builds++;
				failed += sum == NULL;
				char *text = NULL;
				if (sum && summary_render_text(sum, &text) != 0)
					failed++;
				free(text);
				json_decref(sum);
			}
			/* One level down. */
			if (json_is_object(saved)) {
				json_t *copy = json_deep_copy(saved);
				const char *k2;
				json_t *v2;
				void *tmp2;
				json_object_set(res, key, copy);
				json_object_foreach_safe(copy, tmp2, k2, v2) {
					json_t *saved2 = json_incref(v2);
					char key2[128];
					snprintf(key2, sizeof(key2), "%s", k2);
					for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
						json_object_set(copy, key2, bad[b]);
						json_t *sum = summary_build(s.r, s.n, &o, NULL, 0);
						builds++;
						failed += sum == NULL;
						json_decref(sum);
					}
					json_object_set_new(copy, key2, saved2);
				}
				json_decref(copy);
			}
			json_object_set_new(res, key, saved);
		}
	}
	CHECK(builds > 500);
	CHECK_INT(failed, 0);
	for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++)
		json_decref(bad[b]);
	rset_free(&s);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_example_chart),
		HARNESS_TEST(test_patient_block),
		HARNESS_TEST(test_errors),
		HARNESS_TEST(test_allergy_rules),
		HARNESS_TEST(test_medication_rules),
		HARNESS_TEST(test_problem_rules),
		HARNESS_TEST(test_vitals_latest),
		HARNESS_TEST(test_labs),
		HARNESS_TEST(test_number_text),
		HARNESS_TEST(test_render_text),
		HARNESS_TEST(test_wrong_shapes),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
