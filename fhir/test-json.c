/*
 * Tests for the strict JSON scanner behind fhir_json_validate() and
 * fhir_page_parse(): hand-picked valid and invalid documents with the exact
 * error position and reason, every truncation of a page, and a differential
 * test against Jansson over a few thousand mutated documents.
 *
 * Every input is copied into a heap buffer of exactly its length (no NUL
 * after it), so ASan/valgrind catch any read past the end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fhir/fhir.h"
#include "fhir/test-gen.h"
#include "tests/harness.h"

/* An exact-size copy of n bytes (at least 1 byte allocated). */
static char *exact(const char *s, size_t n)
{
	char *b = malloc(n ? n : 1);
	if (!b)
		abort();
	memcpy(b, s, n);
	return b;
}

static int validate_n(const char *s, size_t n, fhir_error *err)
{
	char *b = exact(s, n);
	int r = fhir_json_validate(b, n, err);
	free(b);
	return r;
}

static int validate(const char *s, fhir_error *err)
{
	return validate_n(s, strlen(s), err);
}

static void test_valid_documents(void)
{
	static const char *const docs[] = {
		"0", "-0", "1.5e+10", "-12.25E-3", "1E2", "123456789012345678901234567890",
		"\"\"", "\"plain\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u00e9\\u20AC\\ud83d\\ude00\"",
		"\"\\u0000\"", "\"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xee\x80\x80\"",
		"\"\x7f\"", "true", "false", "null", "[]", "{}", " \t\r\n[ ] \n",
		"[1, 2.0, -3e-2, true, false, null, \"x\", {\"a\": [], \"b\": {}}]",
		"{\"a\":1,\"a\":2}", /* duplicate keys are valid JSON */
		"{\"\\u0041\":\"\\ud800\\udc00\"}",
	};
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		fhir_error err = { 0 };
		int r = validate(docs[i], &err);
		if (r != 0)
			fprintf(stderr, "  doc %zu: %s\n", i, err.msg);
		CHECK_INT(r, 0);
	}
}

struct bad_case {
	const char *doc;
	size_t len;  /* 0: strlen(doc) */
	size_t offset;
	unsigned line, column;
	const char *reason;
};

static void test_invalid_documents(void)
{
	static const struct bad_case cases[] = {
		{ "", 0, 0, 1, 1, "unexpected end of input, expected a value" },
		{ "   ", 0, 3, 1, 4, "unexpected end of input, expected a value" },
		{ "[1,]", 0, 3, 1, 4, "unexpected character, expected a value" },
		{ "{\"a\":1,}", 0, 7, 1, 8, "expected a string (an object key)" },
		{ "{,}", 0, 1, 1, 2, "expected a string (an object key)" },
		{ "{\"a\" 1}", 0, 5, 1, 6, "expected ':' after an object key" },
		{ "{\"a\":1", 0, 6, 1, 7, "unexpected end of input in an object" },
		{ "{\"a\":1 \"b\":2}", 0, 7, 1, 8, "expected ',' or '}' after an object member" },
		{ "[1 2]", 0, 3, 1, 4, "expected ',' or ']' after an array element" },
		{ "[1", 0, 2, 1, 3, "unexpected end of input in an array" },
		{ "01", 0, 1, 1, 2, "trailing data after the JSON value" },
		{ "1 2", 0, 2, 1, 3, "trailing data after the JSON value" },
		{ "{} x", 0, 3, 1, 4, "trailing data after the JSON value" },
		{ "1.", 0, 2, 1, 3, "invalid number: expected a digit after '.'" },
		{ "1.e3", 0, 2, 1, 3, "invalid number: expected a digit after '.'" },
		{ "1e", 0, 2, 1, 3, "invalid number: expected a digit in the exponent" },
		{ "1e+", 0, 3, 1, 4, "invalid number: expected a digit in the exponent" },
		{ "-", 0, 1, 1, 2, "unexpected end of input in a number" },
		{ "-a", 0, 1, 1, 2, "invalid number" },
		{ ".5", 0, 0, 1, 1, "unexpected character, expected a value" },
		{ "+1", 0, 0, 1, 1, "unexpected character, expected a value" },
		{ "tru", 0, 0, 1, 1, "invalid literal" },
		{ "True", 0, 0, 1, 1, "unexpected character, expected a value" },
		{ "nul", 0, 0, 1, 1, "invalid literal" },
		{ "\"abc", 0, 4, 1, 5, "unterminated string" },
		{ "\"abc\\", 0, 5, 1, 6, "unterminated string" },
		{ "\"\\x\"", 0, 1, 1, 2, "invalid escape in a string" },
		{ "\"\\u12\"", 0, 1, 1, 2, "invalid \\u escape (needs 4 hex digits)" },
		{ "\"\\u12", 0, 5, 1, 6, "unterminated string" },
		{ "\"\\ud800\"", 0, 1, 1, 2, "unpaired UTF-16 surrogate" },
		{ "\"\\udc00\\ud800\"", 0, 1, 1, 2, "unpaired UTF-16 surrogate" },
		{ "\"\\ud800\\u0041\"", 0, 1, 1, 2, "unpaired UTF-16 surrogate" },
		{ "\"a\tb\"", 0, 2, 1, 3, "control character in a string" },
		{ "\"a\nb\"", 0, 2, 1, 3, "control character in a string" },
		{ "\"a\0b\"", 5, 2, 1, 3, "control character in a string" },
		{ "\"\xc0\x80\"", 0, 1, 1, 2, "invalid UTF-8 in a string" },      /* overlong NUL */
		{ "\"\xe0\x80\xaf\"", 0, 1, 1, 2, "invalid UTF-8 in a string" },  /* overlong '/' */
		{ "\"\xed\xa0\x80\"", 0, 1, 1, 2, "invalid UTF-8 in a string" },  /* surrogate */
		{ "\"\xf4\x90\x80\x80\"", 0, 1, 1, 2, "invalid UTF-8 in a string" }, /* > U+10FFFF */
		{ "\"\x80\"", 0, 1, 1, 2, "invalid UTF-8 in a string" },
		{ "\"\xe2\x82\"", 0, 1, 1, 2, "invalid UTF-8 in a string" },
		{ "\"\xe2\x82", 0, 1, 1, 2, "invalid UTF-8 in a string" },
		{ "\"\xf8\x88\x80\x80\x80\"", 0, 1, 1, 2, "invalid UTF-8 in a string" },
		{ "\xef\xbb\xbf{}", 0, 0, 1, 1, "unexpected character, expected a value" }, /* BOM */
		{ "{\n  \"a\": [1,\n   2,, 3]}", 0, 18, 3, 6, "unexpected character, expected a value" },
		{ "[\"x\",\n\"y\",\n\"abc", 0, 15, 3, 5, "unterminated string" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		fhir_error err = { 0 };
		size_t n = c->len ? c->len : strlen(c->doc);
		int r = validate_n(c->doc, n, &err);
		CHECK_INT(r, FHIR_E_JSON);
		CHECK_INT(err.offset, c->offset);
		CHECK_INT(err.line, c->line);
		CHECK_INT(err.column, c->column);
		if (!strstr(err.msg, c->reason) || strncmp(err.msg, "invalid JSON at line ", 21) != 0) {
			fprintf(stderr, "  case %zu: got \"%s\", want \"%s\"\n", i, err.msg, c->reason);
			harness_failures++;
		}
	}
}

static void test_error_message_format(void)
{
	/* The string opened on line 3 runs to the end (byte 74, column 25). */
	const char *doc = "{\"resourceType\": \"Bundle\",\n"
			  "  \"type\": \"searchset\",\n"
			  "  \"entry\": [], \"x\": \"abc";
	fhir_error err;

	CHECK_INT(validate(doc, &err), FHIR_E_JSON);
	CHECK_STR(err.msg, "invalid JSON at line 3 column 25 (byte 74): unterminated string");

	const char *doc2 = "[\n1,\n2,\n           \"\\q\"]";
	CHECK_INT(validate(doc2, &err), FHIR_E_JSON);
	CHECK_STR(err.msg, "invalid JSON at line 4 column 13 (byte 20): invalid escape in a string");
}

static char *nested(size_t depth, size_t *len)
{
	char *b = malloc(2 * depth + 1);
	if (!b)
		abort();
	memset(b, '[', depth);
	memset(b + depth, ']', depth);
	*len = 2 * depth;
	return b;
}

static void test_depth_limit(void)
{
	fhir_error err;
	size_t n;
	char *b = nested(512, &n);
	CHECK_INT(fhir_json_validate(b, n, &err), 0);
	free(b);

	b = nested(513, &n);
	CHECK_INT(fhir_json_validate(b, n, &err), FHIR_E_JSON);
	CHECK_INT(err.offset, 512);
	CHECK(strstr(err.msg, "nesting deeper than 512 levels") != NULL);
	free(b);

	/* Objects count too: 256 object/array pairs is 512 levels. */
	gen_buf g = { 0 };
	for (int i = 0; i < 256; i++)
		gen_printf(&g, "{\"k\":[");
	for (int i = 0; i < 256; i++)
		gen_printf(&g, "]}");
	CHECK_INT(fhir_json_validate(g.p, g.len, &err), 0);
	free(g.p);
	g = (gen_buf){ 0 };
	for (int i = 0; i < 257; i++)
		gen_printf(&g, "{\"k\":[");
	CHECK_INT(fhir_json_validate(g.p, g.len, &err), FHIR_E_JSON);
	free(g.p);
}

/* No prefix of a JSON object is itself valid: every truncation must fail,
 * without reading past the shorter buffer. */
static void test_every_truncation(void)
{
	size_t len;
	char *page = gen_observation_page(3, 7, &len);

	CHECK_INT(validate_n(page, len, NULL), 0);
	for (size_t n = 0; n < len; n++) {
		fhir_error err;
		int r = validate_n(page, n, &err);
		if (r != FHIR_E_JSON) {
			fprintf(stderr, "  prefix of %zu bytes: %d\n", n, r);
			harness_failures++;
		}
	}
	free(page);
}

/* Deterministic xorshift64* generator. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

/* Bytes that matter to a JSON lexer, to make mutations interesting. */
static const unsigned char interesting[] = {
	'"', '\\', '{', '}', '[', ']', ',', ':', '0', '1', '-', '+', '.', 'e', 'E', 'u', 'd', 'n', 't', 'f',
	' ', '\n', '\t', 0x00, 0x1f, 0x7f, 0x80, 0xbf, 0xc0, 0xc3, 0xe2, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff,
};

/* One random edit of b (length *n, capacity cap). */
static void mutate(unsigned char *b, size_t *n, size_t cap, const unsigned char *donor, size_t donor_len)
{
	size_t pos = rnd_below(*n + 1);
	unsigned char c = rnd() & 1 ? interesting[rnd_below(sizeof(interesting))] : (unsigned char)rnd();

	switch (rnd_below(6)) {
	case 0: /* overwrite a byte */
		if (pos < *n)
			b[pos] = c;
		break;
	case 1: /* insert a byte */
		if (*n < cap) {
			memmove(b + pos + 1, b + pos, *n - pos);
			b[pos] = c;
			(*n)++;
		}
		break;
	case 2: /* delete a byte */
		if (pos < *n) {
			memmove(b + pos, b + pos + 1, *n - pos - 1);
			(*n)--;
		}
		break;
	case 3: /* truncate */
		*n = pos;
		break;
	case 4: { /* splice in a piece of another document */
		size_t from = rnd_below(donor_len), k = rnd_below(16);
		if (from + k > donor_len)
			k = donor_len - from;
		if (*n + k <= cap) {
			memmove(b + pos + k, b + pos, *n - pos);
			memcpy(b + pos, donor + from, k);
			*n += k;
		}
		break;
	}
	default: /* swap two bytes */
		if (*n > 1) {
			size_t q = rnd_below(*n);
			if (pos >= *n)
				pos = *n - 1;
			unsigned char t = b[pos];
			b[pos] = b[q];
			b[q] = t;
		}
		break;
	}
}

/*
 * fhir_json_validate() and Jansson must agree on validity. Jansson is run
 * with JSON_DECODE_ANY (any value at the top, like RFC 8259) and
 * JSON_ALLOW_NUL (it refuses "\u0000" in strings otherwise). Known,
 * deliberate differences, skipped and counted:
 *  - Jansson refuses integers outside json_int_t ("too big integer") and
 *    reals that overflow a double ("real number overflow"); the RFC 8259
 *    grammar has no such limit and neither do we;
 *  - Jansson refuses "\u0000" in object keys even with JSON_ALLOW_NUL
 *    ("NUL byte in object key not supported");
 *  - Jansson accepts a raw NUL byte right after a number or a literal
 *    ("[1\0]", "[true\0]" load as [1], [true]): its lexer drops it. RFC 8259
 *    has no such allowance; we report the NUL byte;
 *  - nesting: Jansson allows 2048 levels, we allow 512 (see
 *    test_depth_limit; mutations never get near either).
 */
static void test_differential_jansson(void)
{
	size_t page_len;
	char *page = gen_observation_page(2, 3, &page_len);
	const char *seeds[] = {
		page,
		"{\"resourceType\":\"Patient\",\"id\":\"p-1\",\"name\":[{\"family\":\"M\\u00fcller\",\"given\":"
		"[\"J\\u00f6rg\",\"\\ud83d\\ude00\"]}],\"birthDate\":\"1970-01-01\",\"active\":true,"
		"\"multipleBirthInteger\":2,\"deceasedBoolean\":false,\"x\":null}",
		"[0, -0.0, 1e10, 2E-3, 123.456e+7, -9223372036854775807, \"\\/\\b\\f\\n\\r\\t\\\"\\\\\"]",
		"{\"a\":{\"b\":{\"c\":[[[{}]]]}},\"\xc3\xa9\":\"\xe2\x82\xac\xf0\x9f\x98\x80\",\"e\":[]}",
		"  \"just a string \\u00e9\"  ",
		"{\"issue\":[{\"severity\":\"error\",\"code\":\"processing\",\"diagnostics\":\"line\\nbreak\"}]}",
	};
	const size_t n_seeds = sizeof(seeds) / sizeof(seeds[0]);
	size_t agree = 0, both_valid = 0, both_invalid = 0, known = 0, iterations = 0;
	unsigned char *b = NULL;

	for (size_t round = 0; round < 6000; round++) {
		const char *seed = seeds[round % n_seeds];
		const char *donor = seeds[(round / n_seeds) % n_seeds];
		size_t n = strlen(seed), cap = n + 64;
		b = realloc(b, cap);
		if (!b)
			abort();
		memcpy(b, seed, n);
		size_t edits = round < n_seeds ? 0 : 1 + rnd_below(round % 4 == 0 ? 8 : 2);
		for (size_t k = 0; k < edits; k++)
			mutate(b, &n, cap, (const unsigned char *)donor, strlen(donor));

		char *in = exact((const char *)b, n);
		fhir_error err;
		json_error_t jerr;
		int ours = fhir_json_validate(in, n, &err) == 0;
		json_t *j = json_loadb(in, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
		int theirs = j != NULL;
		json_decref(j);
		free(in);
		iterations++;

		if (ours == theirs) {
			agree++;
			if (ours)
				both_valid++;
			else
				both_invalid++;
			continue;
		}
		if (ours && !theirs &&
		    (strstr(jerr.text, "too big") || strstr(jerr.text, "real number overflow") ||
		     strstr(jerr.text, "NUL byte in object key"))) {
			known++;
			continue;
		}
		if (!ours && theirs && err.offset > 0 && err.offset < n && b[err.offset] == 0 &&
		    ((b[err.offset - 1] >= '0' && b[err.offset - 1] <= '9') || b[err.offset - 1] == 'e' ||
		     b[err.offset - 1] == 'l')) {
			known++;  /* a NUL after a number, true, false or null */
			continue;
		}
		harness_failures++;
		fprintf(stderr, "  round %zu: we say %s, Jansson says %s (%s)\n  input (%zu bytes): ", round,
			ours ? "valid" : err.msg, theirs ? "valid" : "invalid", theirs ? "" : jerr.text, n);
		for (size_t i = 0; i < n && i < 300; i++)
			fprintf(stderr, b[i] >= 0x20 && b[i] < 0x7f ? "%c" : "\\x%02x", b[i]);
		fprintf(stderr, "\n");
	}
	fprintf(stderr, "  differential: %zu inputs, %zu agree (%zu valid, %zu invalid), %zu known differences\n",
		iterations, agree, both_valid, both_invalid, known);
	/* The test means something only if both outcomes occur often. */
	CHECK(both_valid > 300);
	CHECK(both_invalid > 3000);
	CHECK(known < iterations / 20);
	free(b);
	free(page);
}

/* The known differences, on purpose. */
static void test_known_differences(void)
{
	json_error_t jerr;
	const char *big = "[123456789012345678901234567890, 1e400]";
	const char *nulkey = "{\"a\\u0000b\":1}";

	CHECK_INT(validate(big, NULL), 0);
	CHECK(json_loadb(big, strlen(big), JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr) == NULL);
	CHECK_INT(validate(nulkey, NULL), 0);
	CHECK(json_loadb(nulkey, strlen(nulkey), JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr) == NULL);

	json_t *j = json_loadb("[1\0]", 4, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	CHECK(j != NULL);  /* if this fails, Jansson got stricter: drop the exception above */
	json_decref(j);
	fhir_error err;
	CHECK_INT(validate_n("[1\0]", 4, &err), FHIR_E_JSON);
	CHECK_INT(err.offset, 2);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_valid_documents),
		HARNESS_TEST(test_invalid_documents),
		HARNESS_TEST(test_error_message_format),
		HARNESS_TEST(test_depth_limit),
		HARNESS_TEST(test_every_truncation),
		HARNESS_TEST(test_differential_jansson),
		HARNESS_TEST(test_known_differences),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
