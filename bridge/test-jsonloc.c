/*
 * Tests for jsonloc: positions by hand-counted examples, and a cross-check
 * against Jansson over every node of a document (the value found at each
 * path's offset must parse to the node Jansson has at that path).
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/jsonloc.h"
#include "tests/harness.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Find path in text; returns "L:C" of *at (and value in vbuf) or an error word. */
static const char *loc(const char *text, const jsonloc_step *p, size_t n, char *buf, size_t size, char *vbuf,
		       size_t vsize)
{
	jsonloc_pos at, value;
	int r = jsonloc_find(text, strlen(text), p, n, &at, &value);
	if (r == JSONLOC_E_NOT_FOUND)
		return "not found";
	if (r == JSONLOC_E_SYNTAX)
		return "syntax";
	if (r != 0)
		return "error";
	snprintf(buf, size, "%lu:%lu", at.line, at.column);
	if (vbuf)
		snprintf(vbuf, vsize, "%lu:%lu", value.line, value.column);
	return buf;
}

#define CHECK_LOC(text, expect, ...) \
	do { \
		const jsonloc_step p_[] = { __VA_ARGS__ }; \
		char b_[64]; \
		CHECK_STR(loc((text), p_, N(p_), b_, sizeof(b_), NULL, 0), (expect)); \
	} while (0)

#define CHECK_LOC_VALUE(text, expect_at, expect_value, ...) \
	do { \
		const jsonloc_step p_[] = { __VA_ARGS__ }; \
		char b_[64], v_[64] = ""; \
		CHECK_STR(loc((text), p_, N(p_), b_, sizeof(b_), v_, sizeof(v_)), (expect_at)); \
		CHECK_STR(v_, (expect_value)); \
	} while (0)

static const char doc_config[] =
	"{\n"
	"  \"fhir\": {\n"
	"    \"auth\": {\"type\": \"none\"},\n"
	"    \"resources\": [\"Patient\", \"Encounter\", \"Observation\"]\n"
	"  },\n"
	"  \"type\": \"fhir\"\n"
	"}\n";

static void test_nested_objects_and_arrays(void)
{
	CHECK_LOC_VALUE(doc_config, "2:3", "2:11", JSONLOC_KEY("fhir"));
	CHECK_LOC_VALUE(doc_config, "3:5", "3:13", JSONLOC_KEY("fhir"), JSONLOC_KEY("auth"));
	CHECK_LOC_VALUE(doc_config, "3:14", "3:22", JSONLOC_KEY("fhir"), JSONLOC_KEY("auth"), JSONLOC_KEY("type"));
	CHECK_LOC_VALUE(doc_config, "4:19", "4:19", JSONLOC_KEY("fhir"), JSONLOC_KEY("resources"), JSONLOC_INDEX(0));
	CHECK_LOC(doc_config, "4:43", JSONLOC_KEY("fhir"), JSONLOC_KEY("resources"), JSONLOC_INDEX(2));
	/* "type" is also a nested key and "fhir" also a value: the path decides. */
	CHECK_LOC_VALUE(doc_config, "6:3", "6:11", JSONLOC_KEY("type"));
}

static void test_root(void)
{
	jsonloc_pos at, value;
	const char *t = "\n\n  \t[1, 2]  ";

	REQUIRE(jsonloc_find(t, strlen(t), NULL, 0, &at, &value) == 0);
	CHECK_INT(at.line, 3);
	CHECK_INT(at.column, 4);
	CHECK_INT(at.offset, 5);
	CHECK_INT(value.offset, 5);
	CHECK_INT(jsonloc_find("   ", 3, NULL, 0, &at, NULL), JSONLOC_E_SYNTAX);
	CHECK_INT(jsonloc_find("", 0, NULL, 0, &at, NULL), JSONLOC_E_SYNTAX);
	CHECK_INT(jsonloc_find(NULL, 3, NULL, 0, &at, NULL), -EINVAL);
	CHECK_INT(jsonloc_find("{}", 2, NULL, 1, &at, NULL), -EINVAL);
}

static void test_keys_that_are_values(void)
{
	const char *t = "{\"a\": \"b\", \"c\": [\"b\", {\"d\": \"b\"}], \"b\": \"a\"}";
	CHECK_LOC(t, "1:36", JSONLOC_KEY("b"));
	CHECK_LOC(t, "1:2", JSONLOC_KEY("a"));
	/* Strings holding JSON punctuation do not confuse the skipping. */
	const char *u = "{\"x\": \"}]\\\"{[,:\", \"y\": [\"]\", {\"}\": \"{\"}], \"z\": 1}";
	CHECK_LOC_VALUE(u, "1:43", "1:48", JSONLOC_KEY("z"));
	CHECK_LOC(u, "1:31", JSONLOC_KEY("y"), JSONLOC_INDEX(1), JSONLOC_KEY("}"));
}

static void test_escaped_and_unicode_keys(void)
{
	const char *t = "{\"a\\nb\": 1, \"\\u00e9t\\u00E9\": 2, \"\\ud83d\\ude00\": 3, \"a\\\"b\": 4, \"a\\/b\": 5,"
			" \"\\\\\": 6, \"\\t\\b\\f\\r\": 7}";
	CHECK_LOC(t, "1:2", JSONLOC_KEY("a\nb"));
	CHECK_LOC(t, "1:13", JSONLOC_KEY("\xc3\xa9t\xc3\xa9"));
	CHECK_LOC(t, "1:33", JSONLOC_KEY("\xf0\x9f\x98\x80"));
	CHECK_LOC(t, "1:52", JSONLOC_KEY("a\"b"));
	CHECK_LOC(t, "1:63", JSONLOC_KEY("a/b"));
	CHECK_LOC(t, "1:74", JSONLOC_KEY("\\"));
	CHECK_LOC(t, "1:83", JSONLOC_KEY("\t\b\f\r"));
	/* A prefix or an extension of a key is not the key. */
	CHECK_LOC(t, "not found", JSONLOC_KEY("a"));
	CHECK_LOC(t, "not found", JSONLOC_KEY("a\nbc"));
	CHECK_LOC(t, "not found", JSONLOC_KEY("\xc3\xa9t"));

	/* Columns count characters, not bytes; raw UTF-8 keys match as bytes. */
	const char *u = "{\"\xc3\xa9\": \"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\", \"k\": 1}";
	CHECK_LOC(u, "1:14", JSONLOC_KEY("k"));
	CHECK_LOC(u, "1:2", JSONLOC_KEY("\xc3\xa9"));
	CHECK_LOC(u, "not found", JSONLOC_KEY("\\u00e9")); /* the escape text is not the key */
}

static void test_escape_text_is_not_the_key(void)
{
	/* The key "\u00e9" written with a raw backslash is the 6-char string, escaped as \\u00e9. */
	const char *t = "{\"\\\\u00e9\": 1, \"\\u00e9\": 2}";
	CHECK_LOC(t, "1:2", JSONLOC_KEY("\\u00e9"));
	CHECK_LOC(t, "1:16", JSONLOC_KEY("\xc3\xa9"));
}

static void test_lines_tabs_crlf(void)
{
	const char *t = "{\r\n\t\"a\": 1,\r\n\t\t\"b\": [\r\n\t\t\t2,\r\n\t\t\t3]\r\n}";
	CHECK_LOC(t, "2:2", JSONLOC_KEY("a"));
	CHECK_LOC(t, "3:3", JSONLOC_KEY("b"));
	CHECK_LOC(t, "5:4", JSONLOC_KEY("b"), JSONLOC_INDEX(1));
}

static void test_duplicate_key_last_wins(void)
{
	const char *t = "{\"a\": {\"x\": 1}, \"b\": 0, \"a\": {\"y\": 2}}";
	CHECK_LOC(t, "1:25", JSONLOC_KEY("a"));
	CHECK_LOC(t, "1:31", JSONLOC_KEY("a"), JSONLOC_KEY("y"));
	CHECK_LOC(t, "not found", JSONLOC_KEY("a"), JSONLOC_KEY("x"));
}

static void test_not_found(void)
{
	const char *t = "{\"a\": [1, {\"b\": 2}], \"e\": {}, \"f\": [], \"s\": \"str\"}";
	CHECK_LOC(t, "not found", JSONLOC_KEY("z"));
	CHECK_LOC(t, "not found", JSONLOC_KEY("a"), JSONLOC_INDEX(2));
	CHECK_LOC(t, "not found", JSONLOC_KEY("a"), JSONLOC_KEY("b"));
	CHECK_LOC(t, "not found", JSONLOC_INDEX(0));
	CHECK_LOC(t, "not found", JSONLOC_KEY("a"), JSONLOC_INDEX(0), JSONLOC_KEY("b"));
	CHECK_LOC(t, "not found", JSONLOC_KEY("e"), JSONLOC_KEY("x"));
	CHECK_LOC(t, "not found", JSONLOC_KEY("f"), JSONLOC_INDEX(0));
	CHECK_LOC(t, "not found", JSONLOC_KEY("s"), JSONLOC_INDEX(0));
	CHECK_LOC(t, "1:12", JSONLOC_KEY("a"), JSONLOC_INDEX(1), JSONLOC_KEY("b"));
	CHECK_LOC(t, "1:8", JSONLOC_KEY("a"), JSONLOC_INDEX(0));
}

static void test_syntax(void)
{
	CHECK_LOC("{\"a\": [1, 2", "syntax", JSONLOC_KEY("a"), JSONLOC_INDEX(5));
	CHECK_LOC("{\"a\" 1}", "syntax", JSONLOC_KEY("a"));
	CHECK_LOC("{\"a\": \"unterminated}", "syntax", JSONLOC_KEY("b"));
	CHECK_LOC("{\"a\": 1,", "syntax", JSONLOC_KEY("b"));
	CHECK_LOC("{\"a\": 1 \"b\": 2}", "syntax", JSONLOC_KEY("b"));
	CHECK_LOC("{a: 1}", "syntax", JSONLOC_KEY("a"));
	CHECK_LOC("{\"a\\q\": 1}", "syntax", JSONLOC_KEY("a"));
	CHECK_LOC("{\"\\ud800\": 1}", "syntax", JSONLOC_KEY("x"));
	CHECK_LOC("{\"\\udc00\": 1}", "syntax", JSONLOC_KEY("x"));
	CHECK_LOC("{\"\\u12\": 1}", "syntax", JSONLOC_KEY("x"));
	CHECK_LOC("{\"a\\", "syntax", JSONLOC_KEY("x"));
	CHECK_LOC("{\"a\": }", "syntax", JSONLOC_KEY("b"));
	CHECK_LOC("{\"a\": ]}", "syntax", JSONLOC_KEY("b"));
	CHECK_LOC("{\"a\n\": 1}", "syntax", JSONLOC_KEY("b"));
	CHECK_LOC("[1 2]", "syntax", JSONLOC_INDEX(1));
	CHECK_LOC("[1, @]", "syntax", JSONLOC_INDEX(2));
	/* Found before the damage: the scan does not look further than it needs for arrays. */
	CHECK_LOC("[1, 2, @", "1:5", JSONLOC_INDEX(1));
}

/* Nothing past len is read: the buffer has no NUL and ASan guards its end. */
static void test_bounds(void)
{
	const char *src[] = { "{\"a\": [1, 2", "{\"ab", "{\"a\\u00", "{\"a\": tru", "[[[[", "{\"a\": 1}" };
	for (size_t i = 0; i < N(src); i++) {
		size_t n = strlen(src[i]);
		char *b = malloc(n);
		REQUIRE(b);
		memcpy(b, src[i], n);
		jsonloc_step p[] = { JSONLOC_KEY("a"), JSONLOC_INDEX(3) };
		jsonloc_pos at;
		int r = jsonloc_find(b, n, p, 2, &at, NULL);
		CHECK(r == JSONLOC_E_SYNTAX || r == JSONLOC_E_NOT_FOUND);
		free(b);
	}
	/* A length shorter than the string cuts the document. */
	const char *t = "{\"a\": 1, \"b\": 2}";
	jsonloc_step pb[] = { JSONLOC_KEY("b") };
	jsonloc_pos at;
	CHECK_INT(jsonloc_find(t, 8, pb, 1, &at, NULL), JSONLOC_E_SYNTAX);
	CHECK_INT(jsonloc_find(t, strlen(t), pb, 1, &at, NULL), 0);
	CHECK_INT(at.offset, 9);
}

/* Deep nesting costs no stack: a 200000-deep value is skipped. */
static void test_deep_nesting(void)
{
	const size_t depth = 200000;
	size_t n = depth * 2 + 64;
	char *t = malloc(n);
	REQUIRE(t);
	size_t o = 0;
	o += (size_t)sprintf(t + o, "{\"deep\": ");
	for (size_t i = 0; i < depth; i++)
		t[o++] = '[';
	for (size_t i = 0; i < depth; i++)
		t[o++] = ']';
	o += (size_t)sprintf(t + o, ",\n \"x\": 1}");
	jsonloc_step p[] = { JSONLOC_KEY("x") };
	jsonloc_pos at;
	CHECK_INT(jsonloc_find(t, o, p, 1, &at, NULL), 0);
	CHECK_INT(at.line, 2);
	CHECK_INT(at.column, 2);
	jsonloc_step q[] = { JSONLOC_KEY("deep"), JSONLOC_INDEX(0), JSONLOC_INDEX(0), JSONLOC_INDEX(0) };
	CHECK_INT(jsonloc_find(t, o, q, 4, &at, NULL), 0);
	CHECK_INT(at.column, 13);
	free(t);
}

static void test_pos_at(void)
{
	const char *t = "ab\n\xc3\xa9x\n";
	jsonloc_pos p = jsonloc_pos_at(t, strlen(t), 5);
	CHECK_INT(p.line, 2);
	CHECK_INT(p.column, 2);
	p = jsonloc_pos_at(t, strlen(t), 1000);
	CHECK_INT(p.offset, strlen(t));
	CHECK_INT(p.line, 3);
	CHECK_INT(p.column, 1);
}

static void check_path(const jsonloc_step *p, size_t n, const char *expect)
{
	char *s = jsonloc_path_str(p, n);
	CHECK_STR(s, expect);
	free(s);
}

static void test_path_str(void)
{
	jsonloc_step a[] = { JSONLOC_KEY("fhir"), JSONLOC_KEY("resources"), JSONLOC_INDEX(2) };
	check_path(a, 3, "fhir.resources[2]");
	check_path(a, 1, "fhir");
	check_path(NULL, 0, "(top level)");
	jsonloc_step b[] = { JSONLOC_INDEX(0), JSONLOC_KEY("a.b"), JSONLOC_KEY("x_y-z9") };
	check_path(b, 3, "[0][\"a.b\"].x_y-z9");
	jsonloc_step c[] = { JSONLOC_KEY("q\"\\\n\x01"), JSONLOC_KEY(""), JSONLOC_KEY("\xc3\xa9") };
	check_path(c, 3, "[\"q\\\"\\\\\\u000a\\u0001\"][\"\"][\"\xc3\xa9\"]");

	char longkey[200];
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	jsonloc_step d[] = { JSONLOC_KEY("m"), JSONLOC_KEY(longkey) };
	char expect[128];
	snprintf(expect, sizeof(expect), "m.%.64s...", longkey);
	check_path(d, 2, expect);

	/* Shortening never splits a UTF-8 sequence: 63 ASCII bytes, then 2-byte characters. */
	char u[100];
	memset(u, 'a', 63);
	for (size_t i = 63; i + 2 < sizeof(u); i += 2) {
		u[i] = '\xc3';
		u[i + 1] = '\xa9';
		u[i + 2] = '\0';
	}
	jsonloc_step e[] = { JSONLOC_KEY(u) };
	char *s = jsonloc_path_str(e, 1);
	REQUIRE(s);
	char want[100];
	snprintf(want, sizeof(want), "[\"%.63s...\"]", u);
	CHECK_STR(s, want);
	free(s);
}

/* ---- cross-check against Jansson ------------------------------------------------ */

static const char doc_cross[] =
	"{\n"
	"  \"store\": {\"path\": \"a\\/b.db\", \"key_file\": \"k\"},\n"
	"  \"m\\u00e9\\ud83d\\ude00\": [1, -2.5e3, true, false, null, \"\xe6\x97\xa5\\\"\", [], {}],\n"
	"  \"nested\": [[{\"a\": [[1], {\"a\": {\"a\": \"a\"}}]}], {\"\": 0}],\n"
	"\t\"tab\":\t{\"x\\n\": {\"y\": [\"}\", \"]\", \"\\\\\"]}},\n"
	"  \"num\": 1234567890123, \"neg\": -0, \"exp\": 1E+2\n"
	"}\n";

static size_t cross_checked;

static void cross_walk(const char *text, json_t *node, jsonloc_step *path, size_t n)
{
	jsonloc_pos at, value;

	if (n >= 16)
		return;
	CHECK_INT(jsonloc_find(text, strlen(text), path, n, &at, &value), 0);
	json_error_t e;
	json_t *back = json_loadb(text + value.offset, strlen(text) - value.offset,
				  JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &e);
	CHECK(back && json_equal(back, node));
	json_decref(back);
	if (n > 0 && path[n - 1].key)
		CHECK(text[at.offset] == '"');
	cross_checked++;

	if (json_is_object(node)) {
		const char *k;
		json_t *v;
		json_object_foreach(node, k, v) {
			path[n] = (jsonloc_step)JSONLOC_KEY(k);
			cross_walk(text, v, path, n + 1);
		}
	} else if (json_is_array(node)) {
		for (size_t i = 0; i < json_array_size(node); i++) {
			path[n] = (jsonloc_step)JSONLOC_INDEX(i);
			cross_walk(text, json_array_get(node, i), path, n + 1);
		}
	}
}

static void test_cross_check_with_jansson(void)
{
	json_error_t e;
	json_t *root = json_loads(doc_cross, JSON_REJECT_DUPLICATES, &e);
	REQUIRE(root);
	jsonloc_step path[16];
	cross_checked = 0;
	cross_walk(doc_cross, root, path, 0);
	CHECK_INT(cross_checked, 33);
	json_decref(root);
}

/*
 * Damaged documents: every truncation and every one-byte change of doc_cross
 * (to each of a set of JSON-significant bytes), in an exact-size heap buffer
 * so ASan sees any read past the end. Whenever Jansson still accepts the
 * text, every node it has must be found by jsonloc and parse back equal.
 */
static void mutant_check(const char *buf, size_t len, size_t *accepted)
{
	static const jsonloc_step probes[][3] = {
		{ JSONLOC_KEY("store"), JSONLOC_KEY("path") },
		{ JSONLOC_KEY("nested"), JSONLOC_INDEX(0), JSONLOC_INDEX(0) },
		{ JSONLOC_KEY("tab"), JSONLOC_KEY("x\n"), JSONLOC_KEY("y") },
		{ JSONLOC_KEY("exp") },
	};
	static const size_t probe_n[] = { 2, 3, 3, 1 };
	jsonloc_pos at, value;

	for (size_t k = 0; k < N(probes); k++) {
		int r = jsonloc_find(buf, len, probes[k], probe_n[k], &at, &value);
		CHECK(r == 0 || r == JSONLOC_E_NOT_FOUND || r == JSONLOC_E_SYNTAX);
		if (r == 0)
			CHECK(at.offset < len && value.offset < len && at.offset <= value.offset);
	}
	json_error_t e;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &e);
	if (!root)
		return;
	(*accepted)++;
	/* cross_walk wants a NUL-terminated text. */
	char *z = malloc(len + 1);
	if (z) {
		memcpy(z, buf, len);
		z[len] = '\0';
		jsonloc_step path[16];
		cross_walk(z, root, path, 0);
		free(z);
	}
	json_decref(root);
}

static void test_damaged_documents(void)
{
	static const char bytes[] = "{}[]\":,\\ \n0a-";
	size_t len = strlen(doc_cross), accepted = 0;
	char *buf;

	for (size_t cut = 0; cut <= len; cut++) {
		buf = malloc(cut ? cut : 1);
		REQUIRE(buf);
		memcpy(buf, doc_cross, cut);
		mutant_check(buf, cut, &accepted);
		free(buf);
	}
	for (size_t i = 0; i < len; i++) {
		for (size_t b = 0; b < sizeof(bytes) - 1; b++) {
			buf = malloc(len);
			REQUIRE(buf);
			memcpy(buf, doc_cross, len);
			buf[i] = bytes[b];
			mutant_check(buf, len, &accepted);
			free(buf);
		}
	}
	/* Some mutants stay valid JSON (e.g. a digit for a digit, a space for a space). */
	CHECK(accepted > 100);
}

/* Jansson counts columns in characters too: its error position matches ours. */
static void test_columns_agree_with_jansson(void)
{
	const char *t = "{\"\xc3\xa9\xe6\x97\xa5\": \"\xf0\x9f\x98\x80\", \"k\": x}";
	json_error_t e;
	json_t *root = json_loads(t, 0, &e);
	CHECK(root == NULL);
	json_decref(root);
	/* 'x' is the 18th character; Jansson reports the column of the bad token. */
	jsonloc_pos p = jsonloc_pos_at(t, strlen(t), (size_t)(strchr(t, 'x') - t));
	CHECK_INT(p.column, 18);
	CHECK_INT(e.column, (int)p.column);
	CHECK_INT(e.line, (int)p.line);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_nested_objects_and_arrays),
		HARNESS_TEST(test_root),
		HARNESS_TEST(test_keys_that_are_values),
		HARNESS_TEST(test_escaped_and_unicode_keys),
		HARNESS_TEST(test_escape_text_is_not_the_key),
		HARNESS_TEST(test_lines_tabs_crlf),
		HARNESS_TEST(test_duplicate_key_last_wins),
		HARNESS_TEST(test_not_found),
		HARNESS_TEST(test_syntax),
		HARNESS_TEST(test_bounds),
		HARNESS_TEST(test_deep_nesting),
		HARNESS_TEST(test_pos_at),
		HARNESS_TEST(test_path_str),
		HARNESS_TEST(test_cross_check_with_jansson),
		HARNESS_TEST(test_damaged_documents),
		HARNESS_TEST(test_columns_agree_with_jansson),
	};
	return harness_main(tests, N(tests), argc, argv);
}
