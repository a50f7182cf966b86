/*
 * jsonloc: positions of nodes in JSON text (see jsonloc.h).
 *
 * A cursor walks the text once along the path. Values that are not on the
 * path are skipped by counting brackets outside strings, so nesting depth
 * costs no stack. The text was normally accepted by Jansson already; the
 * scanner still checks every bound and answers JSONLOC_E_SYNTAX instead of
 * guessing when it meets something that is not JSON.
 */
#include "bridge/jsonloc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct scan {
	const unsigned char *s;
	size_t len;
	size_t i;
} scan;

static void scan_ws(scan *x)
{
	while (x->i < x->len) {
		unsigned char c = x->s[x->i];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		x->i++;
	}
}

/* At an opening quote: move past the closing quote. */
static int scan_skip_string(scan *x)
{
	x->i++;
	while (x->i < x->len) {
		unsigned char c = x->s[x->i];
		if (c == '"') {
			x->i++;
			return 0;
		}
		if (c < 0x20)
			return JSONLOC_E_SYNTAX;
		if (c == '\\') {
			if (x->len - x->i < 2)
				return JSONLOC_E_SYNTAX;
			x->i += 2;
			continue;
		}
		x->i++;
	}
	return JSONLOC_E_SYNTAX;
}

static bool is_scalar_char(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' ||
	       c == '-' || c == '.';
}

/*
 * At the first character of a value: move past its end. Containers are
 * skipped by depth counting (no recursion, no allocation).
 */
static int scan_skip_value(scan *x)
{
	size_t depth = 0;

	for (;;) {
		scan_ws(x);
		if (x->i >= x->len)
			return JSONLOC_E_SYNTAX;
		unsigned char c = x->s[x->i];
		if (c == '{' || c == '[') {
			depth++;
			x->i++;
		} else if (c == '}' || c == ']') {
			if (depth == 0)
				return JSONLOC_E_SYNTAX;
			depth--;
			x->i++;
		} else if (c == '"') {
			int r = scan_skip_string(x);
			if (r)
				return r;
		} else if (c == ',' || c == ':') {
			if (depth == 0)
				return JSONLOC_E_SYNTAX;
			x->i++;
		} else if (is_scalar_char(c)) {
			while (x->i < x->len && is_scalar_char(x->s[x->i]))
				x->i++;
		} else {
			return JSONLOC_E_SYNTAX;
		}
		if (depth == 0)
			return 0;
	}
}

static int hex4(scan *x, uint32_t *out)
{
	uint32_t v = 0;

	if (x->len - x->i < 4)
		return JSONLOC_E_SYNTAX;
	for (int k = 0; k < 4; k++) {
		unsigned char c = x->s[x->i + (size_t)k];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return JSONLOC_E_SYNTAX;
	}
	x->i += 4;
	*out = v;
	return 0;
}

static size_t utf8_encode(uint32_t cp, unsigned char b[4])
{
	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	b[0] = (unsigned char)(0xf0 | (cp >> 18));
	b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	b[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* One decoded byte of a text key against the wanted key. */
static void key_match_byte(const char *key, size_t klen, size_t *k, bool *same, unsigned char c)
{
	if (!*same)
		return;
	if (*k >= klen || (unsigned char)key[*k] != c)
		*same = false;
	else
		(*k)++;
}

/*
 * At the opening quote of a key: decode it while comparing it with key;
 * leaves the cursor past the closing quote.
 */
static int scan_key_equals(scan *x, const char *key, size_t klen, bool *eq)
{
	size_t k = 0;
	bool same = true;

	x->i++;
	for (;;) {
		if (x->i >= x->len)
			return JSONLOC_E_SYNTAX;
		unsigned char c = x->s[x->i];
		if (c == '"') {
			x->i++;
			*eq = same && k == klen;
			return 0;
		}
		if (c < 0x20)
			return JSONLOC_E_SYNTAX;
		if (c != '\\') {
			key_match_byte(key, klen, &k, &same, c);
			x->i++;
			continue;
		}
		if (x->len - x->i < 2)
			return JSONLOC_E_SYNTAX;
		unsigned char e = x->s[x->i + 1];
		x->i += 2;
		uint32_t cp;
		switch (e) {
		case '"': cp = '"'; break;
		case '\\': cp = '\\'; break;
		case '/': cp = '/'; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			if (hex4(x, &cp))
				return JSONLOC_E_SYNTAX;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return JSONLOC_E_SYNTAX;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				uint32_t lo;
				if (x->len - x->i < 2 || x->s[x->i] != '\\' || x->s[x->i + 1] != 'u')
					return JSONLOC_E_SYNTAX;
				x->i += 2;
				if (hex4(x, &lo) || lo < 0xdc00 || lo > 0xdfff)
					return JSONLOC_E_SYNTAX;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			break;
		default:
			return JSONLOC_E_SYNTAX;
		}
		unsigned char b[4];
		size_t nb = utf8_encode(cp, b);
		for (size_t j = 0; j < nb; j++)
			key_match_byte(key, klen, &k, &same, b[j]);
	}
}

/*
 * At '{': find member key (last occurrence wins). On success the cursor is at
 * the member's value and *key_off holds the key's opening quote.
 */
static int scan_member(scan *x, const char *key, size_t *key_off)
{
	size_t klen = strlen(key);
	bool found = false;
	size_t found_key = 0, found_val = 0;
	int r;

	x->i++;
	scan_ws(x);
	if (x->i < x->len && x->s[x->i] == '}')
		return JSONLOC_E_NOT_FOUND;
	for (;;) {
		scan_ws(x);
		if (x->i >= x->len || x->s[x->i] != '"')
			return JSONLOC_E_SYNTAX;
		size_t koff = x->i;
		bool eq = false;
		if ((r = scan_key_equals(x, key, klen, &eq)))
			return r;
		scan_ws(x);
		if (x->i >= x->len || x->s[x->i] != ':')
			return JSONLOC_E_SYNTAX;
		x->i++;
		scan_ws(x);
		if (x->i >= x->len)
			return JSONLOC_E_SYNTAX;
		if (eq) {
			found = true;
			found_key = koff;
			found_val = x->i;
		}
		if ((r = scan_skip_value(x)))
			return r;
		scan_ws(x);
		if (x->i >= x->len)
			return JSONLOC_E_SYNTAX;
		if (x->s[x->i] == ',') {
			x->i++;
			continue;
		}
		if (x->s[x->i] == '}')
			break;
		return JSONLOC_E_SYNTAX;
	}
	if (!found)
		return JSONLOC_E_NOT_FOUND;
	*key_off = found_key;
	x->i = found_val;
	return 0;
}

/* At '[': move to the first character of element index. */
static int scan_element(scan *x, size_t index)
{
	int r;

	x->i++;
	scan_ws(x);
	if (x->i < x->len && x->s[x->i] == ']')
		return JSONLOC_E_NOT_FOUND;
	for (size_t n = 0;; n++) {
		scan_ws(x);
		if (x->i >= x->len)
			return JSONLOC_E_SYNTAX;
		if (n == index)
			return 0;
		if ((r = scan_skip_value(x)))
			return r;
		scan_ws(x);
		if (x->i >= x->len)
			return JSONLOC_E_SYNTAX;
		if (x->s[x->i] == ',') {
			x->i++;
			continue;
		}
		if (x->s[x->i] == ']')
			return JSONLOC_E_NOT_FOUND;
		return JSONLOC_E_SYNTAX;
	}
}

jsonloc_pos jsonloc_pos_at(const char *text, size_t len, size_t offset)
{
	jsonloc_pos p = { .line = 1, .column = 1, .offset = offset < len ? offset : len };

	for (size_t i = 0; i < p.offset; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '\n') {
			p.line++;
			p.column = 1;
		} else if ((c & 0xc0) != 0x80) {
			p.column++;
		}
	}
	return p;
}

int jsonloc_find(const char *text, size_t len, const jsonloc_step *path, size_t n, jsonloc_pos *at,
		 jsonloc_pos *value)
{
	scan x = { .s = (const unsigned char *)text, .len = len, .i = 0 };
	size_t name_off;
	int r;

	if ((!text && len > 0) || (!path && n > 0))
		return -EINVAL;
	scan_ws(&x);
	if (x.i >= x.len)
		return JSONLOC_E_SYNTAX;
	name_off = x.i;
	for (size_t step = 0; step < n; step++) {
		unsigned char c = x.s[x.i];
		if (path[step].key) {
			if (c != '{')
				return JSONLOC_E_NOT_FOUND;
			if ((r = scan_member(&x, path[step].key, &name_off)))
				return r;
		} else {
			if (c != '[')
				return JSONLOC_E_NOT_FOUND;
			if ((r = scan_element(&x, path[step].index)))
				return r;
			name_off = x.i;
		}
	}
	if (at)
		*at = jsonloc_pos_at(text, len, name_off);
	if (value)
		*value = jsonloc_pos_at(text, len, x.i);
	return 0;
}

/* ---- path strings -------------------------------------------------------- */

#define JSONLOC_KEY_SHOWN_MAX 64

typedef struct pbuf {
	char *p;
	size_t len, cap;
	bool oom;
} pbuf;

static void pbuf_add(pbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->cap - b->len <= n) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap - b->len <= n) {
			if (cap > SIZE_MAX / 2) {
				b->oom = true;
				return;
			}
			cap *= 2;
		}
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void pbuf_str(pbuf *b, const char *s)
{
	pbuf_add(b, s, strlen(s));
}

static bool key_is_plain(const char *k)
{
	if (!*k)
		return false;
	for (; *k; k++) {
		unsigned char c = (unsigned char)*k;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

/* How many bytes of k to show: at most the cap, never cutting a UTF-8 sequence. */
static size_t key_shown_len(const char *k, bool *cut)
{
	size_t n = strlen(k);

	*cut = false;
	if (n <= JSONLOC_KEY_SHOWN_MAX)
		return n;
	*cut = true;
	n = JSONLOC_KEY_SHOWN_MAX;
	while (n > 0 && ((unsigned char)k[n] & 0xc0) == 0x80)
		n--;
	return n;
}

static void pbuf_quoted_key(pbuf *b, const char *k)
{
	bool cut;
	size_t n = key_shown_len(k, &cut);

	pbuf_str(b, "[\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)k[i];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			pbuf_add(b, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			pbuf_str(b, esc);
		} else {
			pbuf_add(b, (const char *)&k[i], 1);
		}
	}
	if (cut)
		pbuf_str(b, "...");
	pbuf_str(b, "\"]");
}

char *jsonloc_path_str(const jsonloc_step *path, size_t n)
{
	pbuf b = { 0 };

	if (n == 0 || !path)
		pbuf_str(&b, "(top level)");
	for (size_t i = 0; path && i < n; i++) {
		const char *k = path[i].key;
		if (!k) {
			char num[32];
			snprintf(num, sizeof(num), "[%zu]", path[i].index);
			pbuf_str(&b, num);
		} else if (key_is_plain(k)) {
			bool cut;
			size_t shown = key_shown_len(k, &cut);
			if (i > 0)
				pbuf_str(&b, ".");
			pbuf_add(&b, k, shown);
			if (cut)
				pbuf_str(&b, "...");
		} else {
			pbuf_quoted_key(&b, k);
		}
	}
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}
