/*
 * html — building the pages of the charting web page: a growable string
 * buffer with a hard size cap, and the escapes that keep data out of the
 * markup.
 *
 * The buffer follows curl's dynbuf: it grows by doubling up to its cap; an
 * append that fails (out of memory, or past the cap) frees what was built
 * and leaves the buffer failed, so that every later append fails with the
 * same code and the caller may check once, at html_buf_take(). Ownership of
 * the text leaves the buffer only through html_buf_take().
 *
 * Escapes:
 *  - html_esc: text and attribute values (quoted with " or '): & < > " ' are
 *    written as entities; bytes that are not valid UTF-8 become U+FFFD (one
 *    per maximal invalid subsequence, as Unicode recommends); other control
 *    characters than tab, LF and CR become U+FFFD too.
 *  - html_attr_url: a value put into a URL's query (href="/p?mrn=..."):
 *    every byte but A-Z a-z 0-9 - . _ ~ is percent-encoded, so the output
 *    needs no further HTML escaping.
 *
 * Return convention: 0 ok; -ENOMEM (allocation failed); -E2BIG (the text
 * would pass the cap); -EINVAL (bad arguments or a format error).
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>

typedef struct html_buf {
	char *p;       /* NUL-terminated while not failed; NULL before the first append */
	size_t len;
	size_t cap;    /* bytes allocated at p */
	size_t max;    /* most bytes of text (the NUL not counted) */
	int err;       /* sticky: the first failure, 0 while none */
} html_buf;

#define HTML_BUF_NULL { 0 }

/* An empty buffer that will hold at most max bytes of text. */
void html_buf_init(html_buf *b, size_t max);

/* Free the text; the buffer is empty (and not failed) again, max kept. Idempotent. */
void html_buf_deinit(html_buf *b);

/*
 * The text built (malloc'd, NUL-terminated; "" when nothing was appended)
 * handed to the caller; *len (if non-NULL) gets its length. The buffer is
 * empty afterwards. NULL if an append failed (html_buf_error() says why;
 * the buffer is then reset too) or on out of memory.
 */
char *html_buf_take(html_buf *b, size_t *len);

/* The first failure of an append (0 if none). */
int html_buf_error(const html_buf *b);

/* The text so far (borrowed; "" when empty or failed) and its length. */
const char *html_buf_str(const html_buf *b);
size_t html_buf_len(const html_buf *b);

/* Append raw markup. */
int html_puts(html_buf *b, const char *s);
int html_putn(html_buf *b, const char *s, size_t n);
int html_printf(html_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int html_vprintf(html_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Append s (NULL: nothing) escaped for text and quoted attribute values. */
int html_esc(html_buf *b, const char *s);
int html_escn(html_buf *b, const char *s, size_t n);

/* Append s (NULL: nothing) percent-encoded for a URL query value. */
int html_attr_url(html_buf *b, const char *s);
