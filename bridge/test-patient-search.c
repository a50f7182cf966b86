/*
 * Tests for bridge/patient-search.c: index tokens of real example Patients
 * (bridge/testdata/summary/), name folding, query parsing and the matching
 * rule.
 */
#include "bridge/patient-search.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

#define MRN_SYSTEM "urn:oid:1.2.36.146.595.217.0.1"

static json_t *load(const char *name)
{
	char rel[256];
	size_t len;
	json_error_t e;

	snprintf(rel, sizeof(rel), "bridge/testdata/summary/%s.json", name);
	char *text = harness_read_source_file(rel, &len);
	if (!text)
		return NULL;
	json_t *j = json_loadb(text, len, 0, &e);
	free(text);
	return j;
}

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (!j)
		fprintf(stderr, "bad test JSON: %s: %s\n", e.text, text);
	return j;
}

/* The tokens joined with ' ' into buf (for one comparison per case). */
static const char *joined(char **tokens, size_t n, char *buf, size_t size)
{
	size_t off = 0;

	buf[0] = 0;
	for (size_t i = 0; i < n && off < size; i++)
		off += (size_t)snprintf(buf + off, size - off, "%s%s", i ? " " : "", tokens[i]);
	return buf;
}

/* The index tokens of p, joined; "(error N)" on failure. */
static const char *index_of(const json_t *p, const char *mrn_system, char *buf, size_t size)
{
	char **t = NULL;
	size_t n = 0;
	int rc = patient_index_tokens(p, mrn_system, &t, &n);

	if (rc) {
		snprintf(buf, size, "(error %d)", rc);
		return buf;
	}
	joined(t, n, buf, size);
	patient_tokens_free(t, n);
	return buf;
}

static void test_example_patients(void)
{
	static const struct {
		const char *file, *mrn_system, *tokens;
	} cases[] = {
		/* Three names (official, usual, maiden); the MRN system given. */
		{ "Patient-example", MRN_SYSTEM,
		  "birth:1974-12-25 birthyear:1974 id:example mrn:12345 name:chalmers name:james name:jim name:peter "
		  "name:windsor" },
		/* Without the MRN system: no mrn: token. */
		{ "Patient-example", NULL,
		  "birth:1974-12-25 birthyear:1974 id:example name:chalmers name:james name:jim name:peter "
		  "name:windsor" },
		/* text "Roel", given "Roelof Olaf" (one string, two words), prefix "Drs." not indexed; the
		 * same MRN twice gives one token. */
		{ "Patient-f201", "urn:oid:2.16.840.1.113883.2.4.6.3",
		  "birth:1960-03-13 birthyear:1960 id:f201 mrn:123456789 name:bor name:olaf name:roel name:roelof" },
		/* A name in text only, in Chinese script: one word, kept as it is. */
		{ "Patient-ch-example", MRN_SYSTEM,
		  "birth:1974-12-25 birthyear:1974 id:ch-example mrn:3112219680806371X name:张无忌" },
		/* No name, no birth date. */
		{ "Patient-infant-fetal", "http://coruscanthealth.org/main-hospital/patient-identifier",
		  "id:infant-fetal mrn:MRN657865757378" },
		/* "MINT_TEST": '_' separates words; no birthDate. */
		{ "Patient-dicom", "http://nema.org/examples/patients", "id:dicom mrn:MINT1234 name:mint name:test" },
		/* No name at all, a birth date. */
		{ "Patient-newborn", NULL, "birth:2017-09-05 birthyear:2017 id:newborn" },
		{ "Patient-pat3", "urn:oid:0.1.2.3.4.5.6.7",
		  "birth:1982-01-23 birthyear:1982 id:pat3 mrn:123457 name:notsowell name:simon" },
	};
	char buf[1024];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *p = load(cases[i].file);
		REQUIRE(p);
		CHECK_STR(index_of(p, cases[i].mrn_system, buf, sizeof(buf)), cases[i].tokens);
		json_decref(p);
	}
}

/* A name with diacritics, from the example RelatedPerson "Bénédicte du
 * Marché", given to a Patient. */
static void test_diacritics_example(void)
{
	json_t *rp = load("RelatedPerson-benedicte");
	char buf[1024];

	REQUIRE(rp);
	json_t *p = json_pack("{s:s, s:s, s:O}", "resourceType", "Patient", "id", "b1", "name",
			      json_object_get(rp, "name"));
	REQUIRE(p);
	CHECK_STR(index_of(p, NULL, buf, sizeof(buf)), "id:b1 name:benedicte name:du name:marche");

	/* Stable: the same tokens again, and whatever the order of the names. */
	CHECK_STR(index_of(p, NULL, buf, sizeof(buf)), "id:b1 name:benedicte name:du name:marche");
	json_t *names = json_object_get(p, "name");
	json_array_insert_new(names, 0, json_pack("{s:s, s:[s]}", "family", "Zed", "given", "Ann"));
	char first[1024];
	snprintf(first, sizeof(first), "%s", index_of(p, NULL, buf, sizeof(buf)));
	json_t *moved = json_incref(json_array_get(names, 0));
	json_array_remove(names, 0);
	json_array_append_new(names, moved);
	CHECK_STR(index_of(p, NULL, buf, sizeof(buf)), first);
	CHECK_STR(first, "id:b1 name:ann name:benedicte name:du name:marche name:zed");
	json_decref(p);
	json_decref(rp);
}

static void test_folding(void)
{
	static const struct {
		const char *family, *tokens;
	} cases[] = {
		{ "Łukasz Żółć-Øster", "name:lukasz name:oster name:zolc" },
		{ "Straße", "name:strasse" },
		{ "Æsa Œuvre Ĳssel Þór Đorđe", "name:aesa name:dorde name:ijssel name:oeuvre name:thor" },
		{ "O'Brien d’Arcy", "name:arcy name:brien name:d name:o" },
		{ "Müller-Lüdenscheidt", "name:ludenscheidt name:luedenscheidt name:mueller name:muller" },
		{ "ÄÖÜ", "name:aeoeue name:aou" },
		{ "Jose\xcc\x81 Jos\xc3\xa9", "name:jose" },  /* decomposed and composed é */
		{ "ΕΛΈΝΗ ΠΑΠΑΔΟΠΟΥΛΟΣ Παπαδόπουλος", "name:ελενη name:παπαδοπουλοσ" },
		{ "ИВАНОВ Ёлкин", "name:елкин name:иванов" },
		{ "  a.b,c  ×d÷e\xc2\xa0" "f\xe2\x80\x93g  ", "name:a name:b name:c name:d name:e name:f name:g" },
		{ "SMITH smith Smith", "name:smith" },
		{ "🙂Emoji", "name:🙂emoji" },
		{ "---", "" },
	};
	char buf[1024];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *p = json_pack("{s:s, s:[{s:s}]}", "resourceType", "Patient", "name", "family", cases[i].family);
		REQUIRE(p);
		CHECK_STR(index_of(p, NULL, buf, sizeof(buf)), cases[i].tokens);
		json_decref(p);
	}
}

/* Fields of the wrong type are skipped; partial birth dates; MRN trimming. */
static void test_odd_fields(void)
{
	char buf[1024];
	json_t *p = parse("{\"resourceType\": \"Patient\", \"id\": 7, \"birthDate\": \"1974\","
			  " \"name\": [\"x\", {\"family\": 5, \"given\": [\"Ann\", 3, null], \"text\": [\"y\"]}, 4],"
			  " \"identifier\": [{\"system\": \"urn:mrn\", \"value\": \" \\tA12 \"},"
			  " {\"system\": \"urn:mrn\", \"value\": \"   \"}, {\"system\": \"urn:mrn\"},"
			  " {\"system\": \"urn:other\", \"value\": \"B\"}, {\"value\": \"C\"}, \"z\"]}");
	REQUIRE(p);
	CHECK_STR(index_of(p, "urn:mrn", buf, sizeof(buf)), "birthyear:1974 mrn:A12 name:ann");
	json_object_set_new(p, "birthDate", json_string("1974-05"));
	CHECK_STR(index_of(p, "urn:mrn", buf, sizeof(buf)), "birthyear:1974 mrn:A12 name:ann");
	json_object_set_new(p, "birthDate", json_string("74-05-01"));
	CHECK_STR(index_of(p, "urn:mrn", buf, sizeof(buf)), "mrn:A12 name:ann");
	json_object_set_new(p, "name", json_string("Ann"));
	json_object_set_new(p, "identifier", json_object());
	CHECK_STR(index_of(p, "urn:mrn", buf, sizeof(buf)), "");
	json_decref(p);

	/* Nothing to index: NULL and 0. */
	static char *sentinel[1];
	char **t = sentinel;
	size_t n = 9;
	p = parse("{\"resourceType\": \"Patient\"}");
	CHECK_INT(patient_index_tokens(p, NULL, &t, &n), 0);
	CHECK(t == NULL && n == 0);
	/* Without a resourceType it is taken as a Patient too. */
	json_object_del(p, "resourceType");
	json_object_set_new(p, "id", json_string("q"));
	CHECK_STR(index_of(p, NULL, buf, sizeof(buf)), "id:q");
	json_decref(p);

	/* Not a Patient. */
	p = load("Condition-stroke");
	REQUIRE(p);
	CHECK_INT(patient_index_tokens(p, NULL, &t, &n), -EINVAL);
	CHECK(t == NULL && n == 0);
	json_decref(p);
	json_t *arr = json_array();
	CHECK_INT(patient_index_tokens(arr, NULL, &t, &n), -EINVAL);
	CHECK_INT(patient_index_tokens(NULL, NULL, &t, &n), -EINVAL);
	CHECK_INT(patient_index_tokens(arr, NULL, NULL, &n), -EINVAL);
	json_decref(arr);
	patient_tokens_free(NULL, 0);
}

/* Parse q; its tokens joined (and the candidate after '|'), or "E:<message>". */
static const char *query_of(const char *q, char *buf, size_t size)
{
	patient_query pq = PATIENT_QUERY_NULL;
	char err[256];
	int rc = patient_query_parse(q, &pq, err, sizeof(err));

	if (rc == PATIENT_SEARCH_E_QUERY) {
		snprintf(buf, size, "E:%s", err);
		CHECK(pq.tokens == NULL && pq.n == 0 && pq.mrn_candidate == NULL);
		return buf;
	}
	if (rc) {
		snprintf(buf, size, "(error %d)", rc);
		return buf;
	}
	joined(pq.tokens, pq.n, buf, size);
	if (pq.mrn_candidate) {
		size_t off = strlen(buf);
		snprintf(buf + off, size - off, "|%s", pq.mrn_candidate);
	}
	patient_query_deinit(&pq);
	patient_query_deinit(&pq);  /* idempotent */
	return buf;
}

static void test_query_parse(void)
{
	static const struct {
		const char *query, *result;
	} cases[] = {
		{ "Chalmers 1974-12-25", "birth:1974-12-25 name:chalmers" },
		{ "chalmers, PETER", "name:chalmers name:peter" },
		{ "Chalmers,Peter;Jim", "name:chalmers name:jim name:peter" },
		{ "Bénédicte du Marché", "name:benedicte name:du name:marche" },
		{ "Müller", "name:muller" },
		{ "Mueller", "name:mueller" },
		{ "O'Brien", "name:brien name:o" },
		{ "25.12.1974", "birth:1974-12-25" },
		{ "5.1.2001", "birth:2001-01-05" },
		{ "2000-02-29", "birth:2000-02-29" },
		{ "1974", "birthyear:1974" },
		{ "mrn:12345", "mrn:12345|12345" },
		{ "MRN: A-12/3", "mrn:A-12/3|A-12/3" },
		{ "Mrn:x7 chalmers", "mrn:x7 name:chalmers|x7" },
		{ "12345", "|12345" },
		{ "89765a87b  Doe", "name:doe|89765a87b" },
		{ "12345 mrn:12345", "mrn:12345|12345" },
		{ "id:example", "id:example" },
		{ "ID: f201 Bor", "id:f201 name:bor" },
		{ "张无忌", "name:张无忌" },
		{ "", "E:the query is empty" },
		{ " \t ,; ", "E:the query is empty" },
		{ "-- . '", "E:the query has no usable search term: type a name, a birth date (YYYY-MM-DD or "
			    "DD.MM.YYYY) or an MRN" },
		{ "12/25/1974", "E:write a birth date as YYYY-MM-DD or DD.MM.YYYY" },
		{ "Chalmers 1974-02-30", "E:a date in the query does not exist" },
		{ "31.04.1974", "E:a date in the query does not exist" },
		{ "1900-02-29", "E:a date in the query does not exist" },
		{ "1974-13-01", "E:a date in the query does not exist" },
		{ "12345 67890", "E:the query holds more than one MRN: search for one at a time" },
		{ "mrn:1 mrn:2", "E:the query holds more than one MRN: search for one at a time" },
		{ "mrn:", "E:\"mrn:\" needs a value" },
		{ "Doe id:", "E:\"id:\" needs a value" },
		{ "Doe \xff", "E:the query is not valid UTF-8" },
		{ "\xc3\xa9\xc3", "E:the query is not valid UTF-8" },
		{ "\xed\xa0\x80", "E:the query is not valid UTF-8" },  /* a surrogate */
		{ "\xc0\xaf", "E:the query is not valid UTF-8" },      /* overlong '/' */
	};
	char buf[1024];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_STR(query_of(cases[i].query, buf, sizeof(buf)), cases[i].result);

	/* Too long. */
	char *big = malloc(PATIENT_QUERY_MAX + 2);
	REQUIRE(big);
	memset(big, 'a', PATIENT_QUERY_MAX + 1);
	big[PATIENT_QUERY_MAX + 1] = 0;
	CHECK_STR(query_of(big, buf, sizeof(buf)), "E:the query is too long (at most 512 bytes)");
	big[PATIENT_QUERY_MAX] = 0;
	query_of(big, buf, sizeof(buf));
	CHECK(strncmp(buf, "name:aaa", 8) == 0 && strlen(buf) == 5 + PATIENT_QUERY_MAX);
	free(big);

	/* No PHI in messages: nothing of what was typed comes back. */
	patient_query pq = PATIENT_QUERY_NULL;
	char err[256];
	CHECK_INT(patient_query_parse("Chalmers 1974-02-30", &pq, err, sizeof(err)), PATIENT_SEARCH_E_QUERY);
	CHECK(strstr(err, "Chalmers") == NULL && strstr(err, "1974") == NULL);
	CHECK_INT(patient_query_parse("Chalmers 47110 08150", &pq, err, sizeof(err)), PATIENT_SEARCH_E_QUERY);
	CHECK(strstr(err, "47110") == NULL && strstr(err, "08150") == NULL && strstr(err, "Chalmers") == NULL);
	CHECK_INT(patient_query_parse(NULL, &pq, err, sizeof(err)), -EINVAL);
	CHECK_INT(patient_query_parse("x", NULL, err, sizeof(err)), -EINVAL);
	CHECK_INT(patient_query_parse("Doe", &pq, NULL, 0), 0);  /* no err buffer */
	patient_query_deinit(&pq);
	patient_query_deinit(NULL);
}

/* Whether query matches the Patient with index tokens t (asserting that a
 * match means the query's tokens are a subset of the patient's). */
static bool matches(const char *query, char **t, size_t n)
{
	patient_query q = PATIENT_QUERY_NULL;
	char err[256];
	if (patient_query_parse(query, &q, err, sizeof(err)) != 0) {
		fprintf(stderr, "query rejected: %s\n", err);
		return false;
	}
	bool m = patient_query_matches(&q, t, n);
	if (m) {
		for (size_t i = 0; i < q.n; i++) {
			bool found = false;
			for (size_t j = 0; j < n; j++)
				found |= strcmp(q.tokens[i], t[j]) == 0;
			CHECK(found);
		}
	}
	patient_query_deinit(&q);
	return m;
}

static void test_matching(void)
{
	static const struct {
		const char *query;
		bool example, pat3, pat4, benedicte;
	} cases[] = {
		{ "Chalmers", true, false, false, false },
		{ "peter CHALMERS", true, false, false, false },
		{ "Jim Chalmers 1974", true, false, false, false },  /* the usual name */
		{ "Windsor 25.12.1974", true, false, false, false }, /* the maiden name */
		{ "Chalmers 1975", false, false, false, false },
		{ "Chalmers 1974-12-24", false, false, false, false },
		{ "Chal", false, false, false, false },               /* whole words only */
		{ "12345", true, false, false, false },               /* the MRN */
		{ "mrn:12345 Chalmers", true, false, false, false },
		{ "mrn:12345 Smith", false, false, false, false },
		{ "99999", false, false, false, false },
		{ "id:example", true, false, false, false },
		{ "example", false, false, false, false },            /* a name word, not the id */
		{ "Notsowell", false, true, true, false },
		{ "Notsowell Sandy", false, false, true, false },
		{ "notsowell 1982", false, true, true, false },
		{ "123457", false, true, false, false },
		{ "pat4", false, false, true, false },                /* a candidate finds a logical id too */
		{ "Benedicte Marche", false, false, false, true },
		{ "BÉNÉDICTE du Marché", false, false, false, true },
		{ "Bene\xcc\x81\x64icte", false, false, false, true }, /* decomposed é */
	};
	static const char *const files[] = { "Patient-example", "Patient-pat3", "Patient-pat4" };
	static const char *const systems[] = { MRN_SYSTEM, "urn:oid:0.1.2.3.4.5.6.7", "urn:oid:0.1.2.3.4.5.6.7" };
	char **t[4] = { 0 };
	size_t n[4] = { 0 };

	for (size_t i = 0; i < 3; i++) {
		json_t *p = load(files[i]);
		REQUIRE(p);
		CHECK_INT(patient_index_tokens(p, systems[i], &t[i], &n[i]), 0);
		json_decref(p);
	}
	json_t *rp = load("RelatedPerson-benedicte");
	REQUIRE(rp);
	json_t *p = json_pack("{s:s, s:s, s:O}", "resourceType", "Patient", "id", "b1", "name",
			      json_object_get(rp, "name"));
	json_decref(rp);
	REQUIRE(p);
	CHECK_INT(patient_index_tokens(p, NULL, &t[3], &n[3]), 0);
	json_decref(p);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool want[4] = { cases[i].example, cases[i].pat3, cases[i].pat4, cases[i].benedicte };
		for (size_t k = 0; k < 4; k++) {
			bool m = matches(cases[i].query, t[k], n[k]);
			if (m != want[k])
				fprintf(stderr, "query %zu against patient %zu: %s\n", i, k,
					m ? "matches" : "does not match");
			CHECK(m == want[k]);
		}
	}

	/* German spellings meet either way for a patient spelled with umlauts. */
	char **g = NULL;
	size_t gn = 0;
	p = json_pack("{s:s, s:[{s:s, s:[s]}]}", "resourceType", "Patient", "name", "family", "Müller", "given",
		      "Jürgen");
	REQUIRE(p);
	CHECK_INT(patient_index_tokens(p, NULL, &g, &gn), 0);
	CHECK(matches("Müller Jürgen", g, gn));
	CHECK(matches("Mueller Juergen", g, gn));
	CHECK(matches("muller jurgen", g, gn));
	CHECK(!matches("Miller", g, gn));
	patient_tokens_free(g, gn);
	json_decref(p);

	/* An empty query (as a caller might build one by hand) matches nothing. */
	patient_query empty = PATIENT_QUERY_NULL;
	CHECK(!patient_query_matches(&empty, t[0], n[0]));
	CHECK(!patient_query_matches(NULL, t[0], n[0]));
	for (size_t i = 0; i < 4; i++)
		patient_tokens_free(t[i], n[i]);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_example_patients),
		HARNESS_TEST(test_diacritics_example),
		HARNESS_TEST(test_folding),
		HARNESS_TEST(test_odd_fields),
		HARNESS_TEST(test_query_parse),
		HARNESS_TEST(test_matching),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
