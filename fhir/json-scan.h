/*
 * fhir/json-scan — a strict, allocation-free, single-pass JSON scanner
 * (RFC 8259). Internal to fhir/: the Bundle page parser walks the parts of
 * a page it cares about with json_scan_member()/json_scan_element() and
 * skips everything else with json_scan_skip(), which validates as it goes.
 *
 * The input is a (pointer, length) pair and is never read past its end; it
 * need not be NUL-terminated. Nothing is decoded unless asked: strings come
 * back as raw spans (json_str) that json_str_decode() unescapes on demand.
 *
 * Every function returns 0 or a positive FHIR_E_* code (FHIR_E_JSON for a
 * syntax error, FHIR_E_TOO_LARGE for nesting deeper than JSON_MAX_DEPTH)
 * after filling the scanner's fhir_error with the position and the reason.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "fhir/fhir.h"

/* Deepest nesting of arrays/objects accepted (the document root is 1). */
#define JSON_MAX_DEPTH 512

typedef struct json_scan {
	const unsigned char *buf;  /* start of the input (for error positions) */
	const unsigned char *p;    /* cursor */
	const unsigned char *end;  /* one past the last byte */
	unsigned depth;            /* open containers around the cursor */
	fhir_error *err;           /* may be NULL */
	/* Container kinds ('{' or '[') of the levels json_scan_skip() opened. */
	unsigned char stack[JSON_MAX_DEPTH + 1];
} json_scan;

/* A validated JSON string: the bytes between the quotes, still escaped. */
typedef struct json_str {
	const unsigned char *raw;
	size_t len;
	bool escaped;  /* raw holds at least one backslash escape */
} json_str;

void json_scan_init(json_scan *s, const char *buf, size_t len, fhir_error *err);

/* Record an error at byte `at` of the input: "invalid JSON at line L
 * column C (byte O): <what>". Returns code, for `return json_scan_fail(...)`. */
int json_scan_fail(json_scan *s, const unsigned char *at, int code, const char *what);

/* Set err's offset, line and column for byte off of buf (err may be NULL). */
void fhir_error_at(fhir_error *err, const char *buf, size_t off);

/*
 * Fill err (if non-NULL) with offset/line/column of byte off of buf and a
 * formatted message. Shared by every fhir/ error path.
 */
void fhir_error_set(fhir_error *err, const char *buf, size_t off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void fhir_error_setv(fhir_error *err, const char *buf, size_t off, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

/* Skip white space; return the next byte, or -1 at the end of the input. */
static inline int json_scan_peek(json_scan *s)
{
	const unsigned char *p = s->p, *e = s->end;

	while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	s->p = p;
	return p < e ? *p : -1;
}

/* At '"': validate one string (escapes, UTF-8, no control characters),
 * describe it in *out and move past the closing quote. */
int json_scan_string(json_scan *s, json_str *out);

/* At the first byte of a number: validate it and move past it; *start and
 * the new cursor delimit its text. */
int json_scan_number(json_scan *s, const unsigned char **start);

/* Validate and skip one complete value of any type (after white space). */
int json_scan_skip(json_scan *s);

/*
 * Object walking. At '{' (after white space) json_scan_object() enters the
 * object. Then call json_scan_member() with *first = true initially: it
 * reads the separator and the next key, leaves the cursor at the member's
 * value (white space skipped) and sets *more; when the object ends it
 * consumes the '}' and sets *more = false. The caller must consume each
 * value (json_scan_skip() or a walk of its own) before the next call.
 */
int json_scan_object(json_scan *s);
int json_scan_member(json_scan *s, bool *first, json_str *key, bool *more);

/* Array walking, likewise: json_scan_array() at '[', then
 * json_scan_element() leaves the cursor at each element's value. */
int json_scan_array(json_scan *s);
int json_scan_element(json_scan *s, bool *first, bool *more);

/* After the root value: only white space may follow. */
int json_scan_finish(json_scan *s);

/*
 * Unescape a string json_scan_string() validated into out (at most cap
 * bytes written, no NUL added). Returns the full decoded length, which
 * may exceed cap (then out holds a prefix). The decoded length is never
 * more than str->len.
 */
size_t json_str_decode(const json_str *str, char *out, size_t cap);

/* Whether the string's decoded value equals the n bytes of lit. Inline so
 * that the usual unescaped key compares against a constant-size literal. */
bool json_str_eq_escaped(const json_str *str, const char *lit, size_t n);

static inline bool json_str_eq(const json_str *str, const char *lit, size_t n)
{
	if (!str->escaped)
		return str->len == n && memcmp(str->raw, lit, n) == 0;
	return json_str_eq_escaped(str, lit, n);
}

#define JSON_STR_IS(str, lit) json_str_eq((str), "" lit, sizeof(lit) - 1)
