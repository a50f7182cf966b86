/*
 * html — the page buffer and the escapes (see html.h).
 */
#include "bridge/html.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first allocation; then doubling. */
#define HTML_BUF_MIN 256

void html_buf_init(html_buf *b, size_t max)
{
	*b = (html_buf)HTML_BUF_NULL;
	b->max = max;
}

void html_buf_deinit(html_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->err = 0;
}

/* Record the first failure and drop the text; returns the code to give back. */
static int buf_fail(html_buf *b, int err)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->err = err;
	return err;
}

/*
 * Make room for n more bytes of text (and the NUL). 0, or the buffer's
 * failure (sticky) when it failed before, would pass max or cannot grow.
 */
static int buf_reserve(html_buf *b, size_t n)
{
	if (b->err)
		return b->err;
	if (n > b->max || b->len > b->max - n)
		return buf_fail(b, -E2BIG);
	size_t need = b->len + n + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : HTML_BUF_MIN;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	/* Never allocate much beyond what max allows. */
	if (b->max < SIZE_MAX && cap > b->max + 1)
		cap = b->max + 1;
	char *p = realloc(b->p, cap);
	if (!p)
		return buf_fail(b, -ENOMEM);
	b->p = p;
	b->cap = cap;
	return 0;
}

char *html_buf_take(html_buf *b, size_t *len)
{
	if (len)
		*len = 0;
	if (b->err) {
		b->err = 0;
		return NULL;
	}
	char *p = b->p;
	size_t n = b->len;
	if (!p) {
		p = strdup("");
		if (!p)
			return NULL;
	}
	b->p = NULL;
	b->len = b->cap = 0;
	if (len)
		*len = n;
	return p;
}

int html_buf_error(const html_buf *b)
{
	return b->err;
}

const char *html_buf_str(const html_buf *b)
{
	return b->p && !b->err ? b->p : "";
}

size_t html_buf_len(const html_buf *b)
{
	return b->err ? 0 : b->len;
}

int html_putn(html_buf *b, const char *s, size_t n)
{
	if (!s && n)
		return b->err ? b->err : buf_fail(b, -EINVAL);
	int rc = buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int html_puts(html_buf *b, const char *s)
{
	return html_putn(b, s ? s : "", s ? strlen(s) : 0);
}

int html_vprintf(html_buf *b, const char *fmt, va_list ap)
{
	if (b->err)
		return b->err;
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return buf_fail(b, -EINVAL);
	int rc = buf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int html_printf(html_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = html_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

/*
 * The length of the valid UTF-8 sequence at s[0..n) (n >= 1), or 0 when it
 * is not valid; then *skip gets the length of its maximal invalid subpart
 * (at least 1), which becomes one U+FFFD. Overlong forms, surrogates and
 * code points above U+10FFFF are invalid.
 */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *skip)
{
	unsigned char c = s[0];
	size_t want;
	unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */

	*skip = 1;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		want = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		want = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		want = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	size_t i = 1;
	for (; i < want && i < n; i++) {
		unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
		if (s[i] < l || s[i] > h)
			break;
	}
	if (i == want)
		return want;
	*skip = i;
	return 0;
}

int html_escn(html_buf *b, const char *s, size_t n)
{
	static const char fffd[] = "\xEF\xBF\xBD";
	if (b->err)
		return b->err;
	if (!s)
		return n ? buf_fail(b, -EINVAL) : 0;
	const unsigned char *u = (const unsigned char *)s;
	size_t run = 0; /* start of the pending run of bytes copied as they are */
	size_t i = 0;
	int rc = 0;
	while (i < n && !rc) {
		const char *rep = NULL;
		size_t adv = 1, skip;
		switch (u[i]) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		case '\t': case '\n': case '\r': break;
		default:
			if (u[i] < 0x20 || u[i] == 0x7F) {
				rep = fffd;
			} else if (u[i] >= 0x80) {
				adv = utf8_seq(u + i, n - i, &skip);
				if (!adv) {
					rep = fffd;
					adv = skip;
				}
			}
			break;
		}
		if (rep) {
			rc = html_putn(b, s + run, i - run);
			if (!rc)
				rc = html_puts(b, rep);
			run = i + adv;
		}
		i += adv;
	}
	if (!rc)
		rc = html_putn(b, s + run, n - run);
	return rc;
}

int html_esc(html_buf *b, const char *s)
{
	return html_escn(b, s, s ? strlen(s) : 0);
}

int html_attr_url(html_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	if (b->err)
		return b->err;
	if (!s)
		return 0;
	size_t run = 0, i = 0;
	int rc = 0;
	for (; s[i] && !rc; i++) {
		unsigned char c = (unsigned char)s[i];
		bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			     c == '-' || c == '.' || c == '_' || c == '~';
		if (plain)
			continue;
		char enc[3] = { '%', hex[c >> 4], hex[c & 15] };
		rc = html_putn(b, s + run, i - run);
		if (!rc)
			rc = html_putn(b, enc, 3);
		run = i + 1;
	}
	if (!rc)
		rc = html_putn(b, s + run, i - run);
	return rc;
}
