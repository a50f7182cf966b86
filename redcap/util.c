/*
 * redcap/util.c — small helpers (growable strings, trimming, JSON scalars)
 * and the error list type shared by answers and validation.
 */
#include "redcap/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* Make room for n more bytes plus the NUL; on failure free and set err. */
static bool str_reserve(rc_str *b, size_t n)
{
	if (b->err)
		return false;
	if (n > SIZE_MAX / 2 - b->len - 1) {
		rc_str_free(b);
		b->err = -ENOMEM;
		return false;
	}
	if (b->len + n + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + n + 1)
		cap *= 2;
	char *s = realloc(b->s, cap);
	if (!s) {
		rc_str_free(b);
		b->err = -ENOMEM;
		return false;
	}
	b->s = s;
	b->cap = cap;
	return true;
}

/* Append n bytes (sticky ENOMEM, see internal.h). */
void rc_str_addn(rc_str *b, const char *s, size_t n)
{
	if (!str_reserve(b, n))
		return;
	if (n)
		memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = 0;
}

/* Append a string. */
void rc_str_add(rc_str *b, const char *s)
{
	rc_str_addn(b, s, strlen(s));
}

/* Append one byte. */
void rc_str_addc(rc_str *b, char c)
{
	rc_str_addn(b, &c, 1);
}

/* Append printf-style output. */
void rc_str_vaddf(rc_str *b, const char *fmt, va_list ap)
{
	va_list aq;

	va_copy(aq, ap);
	int n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0 || !str_reserve(b, (size_t)n))
		return;
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

/* Append printf-style output. */
void rc_str_addf(rc_str *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rc_str_vaddf(b, fmt, ap);
	va_end(ap);
}

/* Returns the string (the caller frees it), "" if empty, NULL on ENOMEM;
 * b is empty afterwards. */
char *rc_str_take(rc_str *b)
{
	if (b->err) {
		b->err = 0;
		return NULL;
	}
	char *s = b->s ? b->s : strdup("");
	*b = (rc_str)RC_STR_NULL;
	return s;
}

/* Free the buffer (the error flag stays). */
void rc_str_free(rc_str *b)
{
	free(b->s);
	b->s = NULL;
	b->len = b->cap = 0;
}

/* n bytes of s plus a NUL, malloc'd; NULL on ENOMEM. */
char *rc_strndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

static bool is_php_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0 || c == 0x0b;
}

/* The PHP-trimmed span of s[0..n). */
void rc_trim(const char *s, size_t n, size_t *start, size_t *len)
{
	size_t a = 0, b = n;
	while (a < b && is_php_space((unsigned char)s[a]))
		a++;
	while (b > a && is_php_space((unsigned char)s[b - 1]))
		b--;
	*start = a;
	*len = b - a;
}

/* Characters in s[0..n): bytes that are not UTF-8 continuation bytes. */
size_t rc_utf8_len(const char *s, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			k++;
	return k;
}

/* Format err->msg (nothing if err is NULL). */
void rc_err(redcap_error *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

/* err from a Jansson error: position and "what: invalid JSON at ...". */
void rc_err_json(redcap_error *err, const json_error_t *je, const char *what)
{
	if (!err)
		return;
	err->line = je->line > 0 ? (unsigned)je->line : 0;
	err->column = je->column > 0 ? (unsigned)je->column : 0;
	err->offset = je->position > 0 ? (size_t)je->position : 0;
	rc_err(err, "%s: invalid JSON at line %d, column %d: %s", what, je->line, je->column, je->text);
}

/* A new JSON value (caller owns it) or NULL with *rc = REDCAP_E_JSON. */
json_t *rc_json_load(const char *buf, size_t len, redcap_error *err, int *rc)
{
	json_error_t je;
	json_t *j = json_loadb(buf ? buf : "", buf ? len : 0, JSON_REJECT_DUPLICATES, &je);

	if (!j) {
		rc_err_json(err, &je, "answer");
		*rc = REDCAP_E_JSON;
	}
	return j;
}

/* The text of a scalar, malloc'd (see internal.h). */
char *rc_json_text(const json_t *v, bool bools, bool *bad)
{
	char tmp[64];

	*bad = false;
	switch (json_typeof(v)) {
	case JSON_STRING:
		return rc_strndup(json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return rc_strdup(tmp);
	case JSON_REAL: {
		/* The shortest %g form that reads back exactly, without the ".0"
		 * Jansson would add: PHP's json_decode gives REDCap a float and
		 * (string)3.0 is "3". */
		double d = json_real_value(v);
		for (int p = 1; p <= 17; p++) {
			snprintf(tmp, sizeof(tmp), "%.*g", p, d);
			if (strtod(tmp, NULL) == d)
				break;
		}
		return rc_strdup(tmp);
	}
	case JSON_NULL:
		return rc_strdup("");
	case JSON_TRUE:
	case JSON_FALSE:
		if (bools)
			return rc_strdup(json_is_true(v) ? "1" : "0");
		*bad = true;
		return NULL;
	default:
		*bad = true;
		return NULL;
	}
}

/* strcasecmp for ASCII only, independent of the locale. */
int rc_strcasecmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
		if (x >= 'A' && x <= 'Z')
			x += 32;
		if (y >= 'A' && y <= 'Z')
			y += 32;
		if (x != y || !x)
			return x - y;
	}
}

/* ------------------------------------------------------------------------
 * Error lists.
 */

/*
 * Append one entry with copies of the strings. Owns nothing of the
 * caller's. Returns 0 or -ENOMEM (list unchanged).
 */
int redcap_errors_add(redcap_errors *l, redcap_error_kind kind, size_t row, const char *record,
		      const char *field, const char *value, const char *message)
{
	if (!l)
		return -EINVAL;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		if (cap > SIZE_MAX / sizeof(*l->v))
			return -ENOMEM;
		redcap_value_error *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	redcap_value_error e = {
		.record = strdup(record ? record : ""),
		.field = strdup(field ? field : ""),
		.value = strdup(value ? value : ""),
		.message = strdup(message ? message : ""),
		.kind = kind,
		.row = row,
	};
	if (!e.record || !e.field || !e.value || !e.message) {
		free(e.record);
		free(e.field);
		free(e.value);
		free(e.message);
		return -ENOMEM;
	}
	l->v[l->n++] = e;
	return 0;
}

/* Values may be PHI: wipe before freeing. */
static void free_wiped(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* Wipe the data strings, free every entry and the array; l is reset. */
void redcap_errors_deinit(redcap_errors *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		free_wiped(l->v[i].record);
		free(l->v[i].field);
		free_wiped(l->v[i].value);
		free_wiped(l->v[i].message);
	}
	free(l->v);
	*l = (redcap_errors)REDCAP_ERRORS_NULL;
}

static void add_quoted(rc_str *b, const char *s)
{
	rc_str_addc(b, '"');
	for (; *s; s++) {
		if (*s == '"')
			rc_str_addc(b, '"');
		rc_str_addc(b, *s);
	}
	rc_str_addc(b, '"');
}

/*
 * "record","field","value","message" per entry, joined by "\n" (no
 * trailing newline). Returns malloc'd or NULL on ENOMEM.
 */
char *redcap_errors_format(const redcap_errors *l)
{
	rc_str b = RC_STR_NULL;

	rc_str_add(&b, "");
	for (size_t i = 0; l && i < l->n; i++) {
		if (i)
			rc_str_addc(&b, '\n');
		add_quoted(&b, l->v[i].record);
		rc_str_addc(&b, ',');
		add_quoted(&b, l->v[i].field);
		rc_str_addc(&b, ',');
		add_quoted(&b, l->v[i].value);
		rc_str_addc(&b, ',');
		add_quoted(&b, l->v[i].message);
	}
	return rc_str_take(&b);
}

/* Free every string and the array; s is empty. Idempotent. */
void redcap_strv_deinit(redcap_strv *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}
