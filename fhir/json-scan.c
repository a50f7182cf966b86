/*
 * fhir/json-scan.c — the strict JSON scanner under fhir_page_parse() and
 * fhir_json_validate(). See json-scan.h for the contract.
 *
 * Speed matters here (a pull moves hundreds of MB of JSON), so the string
 * scanner checks 8 bytes at a time for the bytes that need attention and
 * json_scan_skip() walks nested values with an explicit stack instead of
 * recursion. Neither ever looks at a byte at or past s->end.
 */
#include "fhir/json-scan.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* What a byte means inside a string. */
enum {
	SC_PLAIN = 0,  /* printable ASCII other than '"' and '\\' */
	SC_QUOTE,      /* '"': end of the string */
	SC_ESCAPE,     /* '\\' */
	SC_CONTROL,    /* 0x00-0x1f: must be escaped */
	SC_BAD,        /* never valid in UTF-8 here: continuation byte, C0/C1, F5-FF */
	SC_UTF8_2,     /* C2-DF: lead of a 2-byte sequence */
	SC_UTF8_3,     /* E0-EF: lead of a 3-byte sequence */
	SC_UTF8_4,     /* F0-F4: lead of a 4-byte sequence */
};

#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v

static const unsigned char str_class[256] = {
	R16(SC_CONTROL), R16(SC_CONTROL),                          /* 00-1f */
	SC_PLAIN, SC_PLAIN, SC_QUOTE, SC_PLAIN, SC_PLAIN, SC_PLAIN, /* 20-25 */
	SC_PLAIN, SC_PLAIN, SC_PLAIN, SC_PLAIN, SC_PLAIN, SC_PLAIN, /* 26-2b */
	SC_PLAIN, SC_PLAIN, SC_PLAIN, SC_PLAIN,                     /* 2c-2f */
	R16(SC_PLAIN), R16(SC_PLAIN),                               /* 30-4f */
	SC_PLAIN, SC_PLAIN, SC_PLAIN, SC_PLAIN, SC_PLAIN, SC_PLAIN, /* 50-55 */
	SC_PLAIN, SC_PLAIN, SC_PLAIN, SC_PLAIN, SC_PLAIN, SC_PLAIN, /* 56-5b */
	SC_ESCAPE, SC_PLAIN, SC_PLAIN, SC_PLAIN,                    /* 5c-5f */
	R16(SC_PLAIN), R16(SC_PLAIN),                               /* 60-7f */
	R16(SC_BAD), R16(SC_BAD), R16(SC_BAD), R16(SC_BAD),         /* 80-bf */
	SC_BAD, SC_BAD, SC_UTF8_2, SC_UTF8_2, SC_UTF8_2, SC_UTF8_2, /* c0-c5 */
	SC_UTF8_2, SC_UTF8_2, SC_UTF8_2, SC_UTF8_2, SC_UTF8_2,      /* c6-ca */
	SC_UTF8_2, SC_UTF8_2, SC_UTF8_2, SC_UTF8_2, SC_UTF8_2,      /* cb-cf */
	R16(SC_UTF8_2),                                             /* d0-df */
	R16(SC_UTF8_3),                                             /* e0-ef */
	SC_UTF8_4, SC_UTF8_4, SC_UTF8_4, SC_UTF8_4, SC_UTF8_4,      /* f0-f4 */
	SC_BAD, SC_BAD, SC_BAD, SC_BAD, SC_BAD, SC_BAD,             /* f5-fa */
	SC_BAD, SC_BAD, SC_BAD, SC_BAD, SC_BAD,                     /* fb-ff */
};

_Static_assert(sizeof(str_class) == 256, "one class per byte value");

void json_scan_init(json_scan *s, const char *buf, size_t len, fhir_error *err)
{
	s->buf = (const unsigned char *)buf;
	s->p = s->buf;
	s->end = s->buf + (buf ? len : 0);
	s->depth = 0;
	s->err = err;
}

void fhir_error_at(fhir_error *err, const char *buf, size_t off)
{
	if (!err)
		return;
	/* Lines and columns are counted only on this error path. */
	size_t line = 1, line_start = 0;
	if (buf && off > 0) {
		const char *q = buf, *lim = buf + off;
		while ((q = memchr(q, '\n', (size_t)(lim - q))) != NULL) {
			line++;
			q++;
			line_start = (size_t)(q - buf);
		}
	}
	size_t col = off - line_start + 1;
	err->offset = off;
	err->line = line > UINT32_MAX ? UINT32_MAX : (unsigned)line;
	err->column = col > UINT32_MAX ? UINT32_MAX : (unsigned)col;
}

void fhir_error_setv(fhir_error *err, const char *buf, size_t off, const char *fmt, va_list ap)
{
	if (!err)
		return;
	fhir_error_at(err, buf, off);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

void fhir_error_set(fhir_error *err, const char *buf, size_t off, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fhir_error_setv(err, buf, off, fmt, ap);
	va_end(ap);
}

int json_scan_fail(json_scan *s, const unsigned char *at, int code, const char *what)
{
	size_t off = (size_t)(at - s->buf);

	if (s->err) {
		fhir_error_at(s->err, (const char *)s->buf, off);
		snprintf(s->err->msg, sizeof(s->err->msg), "invalid JSON at line %u column %u (byte %zu): %s",
			 s->err->line, s->err->column, off, what);
	}
	return code;
}

static int fail(json_scan *s, const unsigned char *at, const char *what)
{
	return json_scan_fail(s, at, FHIR_E_JSON, what);
}

/*
 * Which of these 8 bytes need a closer look inside a string: '"', '\\', a
 * control character (< 0x20) or a non-ASCII byte? Each term is the classic
 * "has a byte less than n" bit trick, setting the high bit of flagged
 * bytes. A term may also flag bytes above its first true hit (the borrow
 * runs on), never below it: so the lowest flagged byte is exact.
 */
static inline uint64_t special_mask8(uint64_t v)
{
	const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
	uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
	uint64_t t = ((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((b - ones) & ~b) | v;

	return t & high;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Read the 4 hex digits after "\u" at p (p[0] == '\\'); -1 if not there. */
static long read_u_escape(const unsigned char *p, const unsigned char *e)
{
	if (e - p < 6 || p[0] != '\\' || p[1] != 'u')
		return -1;
	long v = 0;
	for (int i = 2; i < 6; i++) {
		int h = hexval(p[i]);
		if (h < 0)
			return -1;
		v = (v << 4) | h;
	}
	return v;
}

static inline bool is_cont(unsigned char c)
{
	return (c & 0xc0) == 0x80;
}

int json_scan_string(json_scan *s, json_str *out)
{
	const unsigned char *p = s->p + 1, *e = s->end;
	bool escaped = false;

	out->raw = p;
	for (;;) {
		/* Fast path: skip plain bytes 8 at a time, then jump straight to
		 * the first byte that needs attention (little-endian: the lowest
		 * flagged byte is the first in memory). */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		while (e - p >= 8) {
			uint64_t v, m;
			memcpy(&v, p, sizeof(v));
			m = special_mask8(v);
			if (m) {
				p += __builtin_ctzll(m) >> 3;
				goto special;
			}
			p += 8;
		}
#endif
		while (p < e && str_class[*p] == SC_PLAIN)
			p++;
		if (p >= e)
			return fail(s, p, "unterminated string");
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
special:
#endif
		if (*p == '"') {  /* the common case, before the slower switch */
			out->len = (size_t)(p - out->raw);
			out->escaped = escaped;
			s->p = p + 1;
			return 0;
		}
		/* Not SC_PLAIN (skipped above) nor SC_QUOTE (just handled). */
		unsigned char c = *p;
		switch (str_class[c]) {
		case SC_ESCAPE:
			if (e - p < 2)
				return fail(s, e, "unterminated string");
			escaped = true;
			switch (p[1]) {
			case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
				p += 2;
				break;
			case 'u': {
				long cp = read_u_escape(p, e);
				if (cp < 0) {
					/* Ran out of input, or met a non-hex digit first? */
					const unsigned char *h = p + 2;
					while (h < e && h < p + 6 && hexval(*h) >= 0)
						h++;
					return fail(s, h >= e ? e : p, h >= e ? "unterminated string"
									     : "invalid \\u escape (needs 4 hex digits)");
				}
				if (cp >= 0xdc00 && cp <= 0xdfff)
					return fail(s, p, "unpaired UTF-16 surrogate in a \\u escape");
				if (cp >= 0xd800 && cp <= 0xdbff) {
					/* A high surrogate must be followed by a low one. */
					long lo = read_u_escape(p + 6, e);
					if (lo < 0xdc00 || lo > 0xdfff)
						return fail(s, p, "unpaired UTF-16 surrogate in a \\u escape");
					p += 6;
				}
				p += 6;
				break;
			}
			default:
				return fail(s, p, "invalid escape in a string");
			}
			break;
		case SC_CONTROL:
			return fail(s, p, "control character in a string (must be escaped)");
		case SC_BAD:
			return fail(s, p, "invalid UTF-8 in a string");
		case SC_UTF8_2:
			if (e - p < 2 || !is_cont(p[1]))
				return fail(s, p, "invalid UTF-8 in a string");
			p += 2;
			break;
		case SC_UTF8_3: {
			/* E0 would be overlong below A0; ED A0-BF would encode surrogates. */
			unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
			if (e - p < 3 || p[1] < lo || p[1] > hi || !is_cont(p[2]))
				return fail(s, p, "invalid UTF-8 in a string");
			p += 3;
			break;
		}
		case SC_UTF8_4: {
			/* F0 would be overlong below 90; F4 above 8F passes U+10FFFF. */
			unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
			if (e - p < 4 || p[1] < lo || p[1] > hi || !is_cont(p[2]) || !is_cont(p[3]))
				return fail(s, p, "invalid UTF-8 in a string");
			p += 4;
			break;
		}
		}
	}
}

static inline bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* number = [ "-" ] ( "0" / 1-9 *DIGIT ) [ "." 1*DIGIT ] [ ("e"/"E") ["+"/"-"] 1*DIGIT ] */
int json_scan_number(json_scan *s, const unsigned char **start)
{
	const unsigned char *p = s->p, *e = s->end;

	*start = p;
	if (p < e && *p == '-')
		p++;
	if (p >= e)
		return fail(s, p, "unexpected end of input in a number");
	if (*p == '0') {
		p++;
	} else if (*p >= '1' && *p <= '9') {
		while (p < e && is_digit(*p))
			p++;
	} else {
		return fail(s, p, "invalid number");
	}
	if (p < e && *p == '.') {
		p++;
		if (p >= e || !is_digit(*p))
			return fail(s, p, "invalid number: expected a digit after '.'");
		while (p < e && is_digit(*p))
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if (p >= e || !is_digit(*p))
			return fail(s, p, "invalid number: expected a digit in the exponent");
		while (p < e && is_digit(*p))
			p++;
	}
	s->p = p;
	return 0;
}

static int scan_literal(json_scan *s, const char *lit, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
		return fail(s, s->p, "invalid literal (expected a value: true, false, null, a number, "
				     "a string, an object or an array)");
	s->p += n;
	return 0;
}

/* Open a container at the cursor ('{' or '['), within the depth limit. */
static int push(json_scan *s, unsigned char kind)
{
	if (s->depth >= JSON_MAX_DEPTH)
		return json_scan_fail(s, s->p, FHIR_E_TOO_LARGE, "nesting deeper than 512 levels");
	s->depth++;
	s->stack[s->depth] = kind;
	s->p++;
	return 0;
}

/* Read an object key and the ':' after it; leave the cursor before the value. */
static int read_key(json_scan *s, json_str *key)
{
	int c = json_scan_peek(s);

	if (c != '"')
		return fail(s, s->p, c < 0 ? "unexpected end of input, expected an object key"
					   : "expected a string (an object key)");
	int r = json_scan_string(s, key);
	if (r)
		return r;
	c = json_scan_peek(s);
	if (c != ':')
		return fail(s, s->p, c < 0 ? "unexpected end of input, expected ':'"
					   : "expected ':' after an object key");
	s->p++;
	json_scan_peek(s);
	return 0;
}

/* After a value inside a container: the separator or the closer expected. */
static int bad_after_value(json_scan *s, unsigned char kind, int c)
{
	if (c < 0)
		return fail(s, s->p, kind == '{' ? "unexpected end of input in an object"
						 : "unexpected end of input in an array");
	return fail(s, s->p, kind == '{' ? "expected ',' or '}' after an object member"
					 : "expected ',' or ']' after an array element");
}

int json_scan_skip(json_scan *s)
{
	const unsigned base = s->depth;
	json_str str;
	int c, r;

	for (;;) {
		/* A value starts here. */
		c = json_scan_peek(s);
		switch (c) {
		case '{':
			if ((r = push(s, '{')))
				return r;
			if (json_scan_peek(s) == '}') {
				s->p++;
				s->depth--;
				break;  /* an empty object: a complete value */
			}
			if ((r = read_key(s, &str)))
				return r;
			continue;  /* the first member's value */
		case '[':
			if ((r = push(s, '[')))
				return r;
			if (json_scan_peek(s) == ']') {
				s->p++;
				s->depth--;
				break;
			}
			continue;  /* the first element */
		case '"':
			if ((r = json_scan_string(s, &str)))
				return r;
			break;
		case 't':
			if ((r = scan_literal(s, "true", 4)))
				return r;
			break;
		case 'f':
			if ((r = scan_literal(s, "false", 5)))
				return r;
			break;
		case 'n':
			if ((r = scan_literal(s, "null", 4)))
				return r;
			break;
		case '-': case '0': case '1': case '2': case '3': case '4':
		case '5': case '6': case '7': case '8': case '9': {
			const unsigned char *start;
			if ((r = json_scan_number(s, &start)))
				return r;
			break;
		}
		case -1:
			return fail(s, s->p, "unexpected end of input, expected a value");
		default:
			return fail(s, s->p, "unexpected character, expected a value");
		}

		/* A value ended: close every container that ends right here, then
		 * either stop (back at the caller's level) or go on after a ','. */
		for (;;) {
			if (s->depth == base)
				return 0;
			unsigned char kind = s->stack[s->depth];
			c = json_scan_peek(s);
			if (c == ',') {
				s->p++;
				if (kind == '{' && (r = read_key(s, &str)))
					return r;
				break;
			}
			if (c != (kind == '{' ? '}' : ']'))
				return bad_after_value(s, kind, c);
			s->p++;
			s->depth--;
		}
	}
}

int json_scan_object(json_scan *s)
{
	return push(s, '{');
}

int json_scan_array(json_scan *s)
{
	return push(s, '[');
}

int json_scan_member(json_scan *s, bool *first, json_str *key, bool *more)
{
	int c = json_scan_peek(s);

	if (c == '}') {
		s->p++;
		s->depth--;
		*more = false;
		return 0;
	}
	if (!*first) {
		if (c != ',')
			return bad_after_value(s, '{', c);
		s->p++;
	}
	*first = false;
	*more = true;
	return read_key(s, key);
}

int json_scan_element(json_scan *s, bool *first, bool *more)
{
	int c = json_scan_peek(s);

	if (c == ']') {
		s->p++;
		s->depth--;
		*more = false;
		return 0;
	}
	if (!*first) {
		if (c != ',')
			return bad_after_value(s, '[', c);
		s->p++;
		/* After the ',' a value must follow: "[1,]" fails in the caller's
		 * value parse, which sees the ']'. */
		json_scan_peek(s);
	}
	*first = false;
	*more = true;
	return 0;
}

int json_scan_finish(json_scan *s)
{
	if (json_scan_peek(s) != -1)
		return fail(s, s->p, "trailing data after the JSON value");
	return 0;
}

size_t json_str_decode(const json_str *str, char *out, size_t cap)
{
	const unsigned char *p = str->raw, *e = str->raw + str->len;
	size_t n = 0;

	if (!str->escaped) {
		if (str->len && cap)
			memcpy(out, p, str->len < cap ? str->len : cap);
		return str->len;
	}
#define PUT(b) \
	do { \
		if (n < cap) \
			out[n] = (char)(b); \
		n++; \
	} while (0)
	/* The string was validated: every escape is complete and well formed. */
	while (p < e) {
		if (*p != '\\') {
			PUT(*p);
			p++;
			continue;
		}
		unsigned char c = p[1];
		p += 2;
		switch (c) {
		case 'b': PUT('\b'); break;
		case 'f': PUT('\f'); break;
		case 'n': PUT('\n'); break;
		case 'r': PUT('\r'); break;
		case 't': PUT('\t'); break;
		case 'u': {
			unsigned long cp = (unsigned long)read_u_escape(p - 2, e);
			p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				unsigned long lo = (unsigned long)read_u_escape(p, e);
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				p += 6;
			}
			if (cp < 0x80) {
				PUT(cp);
			} else if (cp < 0x800) {
				PUT(0xc0 | (cp >> 6));
				PUT(0x80 | (cp & 0x3f));
			} else if (cp < 0x10000) {
				PUT(0xe0 | (cp >> 12));
				PUT(0x80 | ((cp >> 6) & 0x3f));
				PUT(0x80 | (cp & 0x3f));
			} else {
				PUT(0xf0 | (cp >> 18));
				PUT(0x80 | ((cp >> 12) & 0x3f));
				PUT(0x80 | ((cp >> 6) & 0x3f));
				PUT(0x80 | (cp & 0x3f));
			}
			break;
		}
		default: /* '"', '\\', '/' stand for themselves */
			PUT(c);
			break;
		}
	}
#undef PUT
	return n;
}

bool json_str_eq_escaped(const json_str *str, const char *lit, size_t n)
{
	/* An escaped string is never shorter than its value: cheap reject. */
	if (str->len < n)
		return false;
	char tmp[64];
	if (n >= sizeof(tmp))
		return false;  /* never asked: our keys are short */
	size_t m = json_str_decode(str, tmp, sizeof(tmp));
	return m == n && memcmp(tmp, lit, n) == 0;
}
