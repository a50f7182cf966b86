/* Tests for bridge/html.c: the capped page buffer and the escapes. */
#include "bridge/html.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

/* Escape s with html_esc into a fresh buffer and return the text (caller frees). */
static char *esc(const char *s)
{
	html_buf b;
	html_buf_init(&b, 1 << 20);
	html_esc(&b, s);
	return html_buf_take(&b, NULL);
}

static char *url(const char *s)
{
	html_buf b;
	html_buf_init(&b, 1 << 20);
	html_attr_url(&b, s);
	return html_buf_take(&b, NULL);
}

static void test_buf_append_and_take(void)
{
	html_buf b;
	html_buf_init(&b, 1000);
	CHECK_STR(html_buf_str(&b), "");
	CHECK_INT(html_puts(&b, "<p>"), 0);
	CHECK_INT(html_printf(&b, "%d-%s", 42, "x"), 0);
	CHECK_INT(html_putn(&b, "</p>zzz", 4), 0);
	CHECK_STR(html_buf_str(&b), "<p>42-x</p>");
	CHECK_INT(html_buf_len(&b), 11);
	size_t len = 0;
	char *t = html_buf_take(&b, &len);
	CHECK_STR(t, "<p>42-x</p>");
	CHECK_INT(len, 11);
	free(t);
	/* Empty after take; take of nothing is "". */
	CHECK_INT(html_buf_len(&b), 0);
	t = html_buf_take(&b, &len);
	CHECK_STR(t, "");
	CHECK_INT(len, 0);
	free(t);
	html_buf_deinit(&b);
	html_buf_deinit(&b); /* idempotent */
}

/* Growth past the first allocation keeps every byte. */
static void test_buf_grows(void)
{
	html_buf b;
	html_buf_init(&b, 100000);
	for (int i = 0; i < 5000; i++)
		REQUIRE(html_printf(&b, "%04d", i % 10000) == 0);
	CHECK_INT(html_buf_len(&b), 20000);
	const char *s = html_buf_str(&b);
	CHECK(memcmp(s, "0000000100020003", 16) == 0);
	CHECK(memcmp(s + 19996, "4999", 4) == 0);
	html_buf_deinit(&b);
}

/* Passing the cap fails, frees the text, and every later append fails the same way. */
static void test_buf_cap_is_sticky(void)
{
	html_buf b;
	html_buf_init(&b, 10);
	CHECK_INT(html_puts(&b, "0123456789"), 0); /* exactly the cap */
	CHECK_INT(html_puts(&b, "x"), -E2BIG);
	CHECK_INT(html_buf_error(&b), -E2BIG);
	CHECK_STR(html_buf_str(&b), "");
	CHECK_INT(html_puts(&b, ""), -E2BIG);
	CHECK_INT(html_printf(&b, "%s", "a"), -E2BIG);
	CHECK_INT(html_esc(&b, "a"), -E2BIG);
	CHECK_INT(html_attr_url(&b, "a"), -E2BIG);
	size_t len = 99;
	CHECK(html_buf_take(&b, &len) == NULL);
	CHECK_INT(len, 0);
	/* take reset it: usable again. */
	CHECK_INT(html_buf_error(&b), 0);
	CHECK_INT(html_puts(&b, "ok"), 0);
	CHECK_STR(html_buf_str(&b), "ok");
	html_buf_deinit(&b);

	/* printf output counted whole against the cap. */
	html_buf_init(&b, 5);
	CHECK_INT(html_printf(&b, "%s", "123456"), -E2BIG);
	html_buf_deinit(&b);

	/* An escape that would grow past the cap fails too. */
	html_buf_init(&b, 8);
	CHECK_INT(html_esc(&b, "a&b&"), -E2BIG); /* "a&amp;b&amp;" = 12 */
	html_buf_deinit(&b);

	/* HTML_BUF_NULL takes nothing until initialised. */
	html_buf z = HTML_BUF_NULL;
	CHECK_INT(html_puts(&z, "a"), -E2BIG);
	html_buf_deinit(&z);
}

/* An input and the text it must give. */
typedef struct str_case {
	const char *in, *out;
} str_case;

/* Check fn on each case; a mismatch names the case's index. */
static void check_cases(char *(*fn)(const char *), const str_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *t = fn(cases[i].in);
		CHECK_STR(t, cases[i].out);
		if (!t || strcmp(t, cases[i].out) != 0)
			fprintf(stderr, "  (case %zu)\n", i);
		free(t);
	}
}

static void test_esc_specials(void)
{
	static const str_case cases[] = {
		{ "<a href=\"x\" title='y'>&amp;</a>",
		  "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;" },
		{ "plain text\twith\nlines\r\n", "plain text\twith\nlines\r\n" },
		{ "", "" },
		{ NULL, "" },
		/* Control characters other than tab/LF/CR become U+FFFD. */
		{ "a\x01" "b\x7f" "c", "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c" },
	};
	check_cases(esc, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_esc_utf8(void)
{
	/* Valid UTF-8 passes: 2, 3 and 4 byte forms, the highest code point. */
	const char *ok = "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF \xED\x9F\xBF";
	char *t = esc(ok);
	CHECK_STR(t, ok);
	free(t);

	static const str_case cases[] = {
		{ "a\x80z", "a\xEF\xBF\xBDz" },                       /* lone continuation */
		{ "a\xC0\xAFz", "a\xEF\xBF\xBD\xEF\xBF\xBDz" },       /* overlong '/': C0 never valid */
		{ "a\xE0\x80\xAFz", "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz" }, /* overlong 3-byte */
		{ "a\xED\xA0\x80z", "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz" }, /* surrogate D800 */
		{ "a\xF4\x90\x80\x80z", "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz" }, /* > U+10FFFF */
		{ "a\xE2\x82z", "a\xEF\xBF\xBDz" },                   /* truncated 3-byte: one U+FFFD */
		{ "a\xF0\x9F\x98", "a\xEF\xBF\xBD" },                 /* truncated at the end */
		{ "a\xE2\x82<", "a\xEF\xBF\xBD&lt;" },                /* truncated before a special */
		{ "\xFF\xFE", "\xEF\xBF\xBD\xEF\xBF\xBD" },
	};
	check_cases(esc, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_escn_binary(void)
{
	html_buf b;
	html_buf_init(&b, 100);
	/* A NUL inside a counted string is a control character. */
	CHECK_INT(html_escn(&b, "a\0b", 3), 0);
	CHECK_STR(html_buf_str(&b), "a\xEF\xBF\xBD" "b");
	html_buf_deinit(&b);
}

static void test_attr_url(void)
{
	static const str_case cases[] = {
		{ "Doe, Jane & co/ü?=#+%", "Doe%2C%20Jane%20%26%20co%2F%C3%BC%3F%3D%23%2B%25" },
		{ "AZaz09-._~", "AZaz09-._~" },
		{ "\"><script>", "%22%3E%3Cscript%3E" },
		{ NULL, "" },
	};
	check_cases(url, cases, sizeof(cases) / sizeof(cases[0]));
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_buf_append_and_take),
		HARNESS_TEST(test_buf_grows),
		HARNESS_TEST(test_buf_cap_is_sticky),
		HARNESS_TEST(test_esc_specials),
		HARNESS_TEST(test_esc_utf8),
		HARNESS_TEST(test_escn_binary),
		HARNESS_TEST(test_attr_url),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
