/*
 * bridge/patient-search.c — index and query tokens of the downtime patient
 * search (see patient-search.h for the token forms and the folding rules).
 */
#include "bridge/patient-search.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable list of malloc'd tokens. */
typedef struct toklist {
	char **v;
	size_t n, cap;
} toklist;

static void toklist_deinit(toklist *t)
{
	patient_tokens_free(t->v, t->n);
	*t = (toklist){ 0 };
}

/* Append prefix followed by len bytes of s. 0 or -ENOMEM. */
static int toklist_add(toklist *t, const char *prefix, const char *s, size_t len)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **v = realloc(t->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	size_t plen = strlen(prefix);
	char *tok = malloc(plen + len + 1);
	if (!tok)
		return -ENOMEM;
	memcpy(tok, prefix, plen);
	memcpy(tok + plen, s, len);
	tok[plen + len] = 0;
	t->v[t->n++] = tok;
	return 0;
}

static int cmp_tokens(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort and deduplicate t, then hand its array over to *out / *n (NULL when
 * empty); t is left empty. */
static void toklist_take(toklist *t, char ***out, size_t *n)
{
	size_t k = 0;

	if (t->n)
		qsort(t->v, t->n, sizeof(*t->v), cmp_tokens);
	for (size_t i = 0; i < t->n; i++) {
		if (k > 0 && strcmp(t->v[k - 1], t->v[i]) == 0)
			free(t->v[i]);
		else
			t->v[k++] = t->v[i];
	}
	if (k == 0) {
		free(t->v);
		t->v = NULL;
	}
	*out = t->v;
	*n = k;
	*t = (toklist){ 0 };
}

void patient_tokens_free(char **tokens, size_t n)
{
	if (!tokens)
		return;
	for (size_t i = 0; i < n; i++)
		free(tokens[i]);
	free(tokens);
}

/*
 * Decode the UTF-8 sequence at s[*i] (len bytes in all) and advance *i.
 * Returns the code point, or -1 for an invalid sequence (truncated, overlong,
 * a surrogate, above U+10FFFF).
 */
static int32_t utf8_next(const unsigned char *s, size_t len, size_t *i)
{
	unsigned char c = s[*i];
	int32_t cp, min;
	size_t k;

	if (c < 0x80) {
		(*i)++;
		return c;
	} else if (c >= 0xC2 && c <= 0xDF) {
		k = 1, cp = c & 0x1F, min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		k = 2, cp = c & 0x0F, min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		k = 3, cp = c & 0x07, min = 0x10000;
	} else {
		return -1;
	}
	if (len - *i <= k)
		return -1;
	for (size_t j = 1; j <= k; j++) {
		unsigned char d = s[*i + j];
		if ((d & 0xC0) != 0x80)
			return -1;
		cp = (cp << 6) | (d & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return -1;
	*i += k + 1;
	return cp;
}

/* Encode cp (valid, < U+10000 here) as UTF-8 at out; returns the length. */
static size_t utf8_put(int32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	} else if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	out[0] = (char)(0xE0 | (cp >> 12));
	out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[2] = (char)(0x80 | (cp & 0x3F));
	return 3;
}

/*
 * The ASCII fold of U+00C0..U+017F: an NFKD decomposition without its marks,
 * lower case; ligatures and letters without a decomposition spelled out.
 * "" separates words (× and ÷).
 */
static const char *const latin_fold[0x180 - 0xC0] = {
	"a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i", /* U+00C0 */
	"d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "ss", /* U+00D0 */
	"a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i", /* U+00E0 */
	"d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "y", /* U+00F0 */
	"a", "a", "a", "a", "a", "a", "c", "c", "c", "c", "c", "c", "c", "c", "d", "d", /* U+0100 */
	"d", "d", "e", "e", "e", "e", "e", "e", "e", "e", "e", "e", "g", "g", "g", "g", /* U+0110 */
	"g", "g", "g", "g", "h", "h", "h", "h", "i", "i", "i", "i", "i", "i", "i", "i", /* U+0120 */
	"i", "i", "ij", "ij", "j", "j", "k", "k", "k", "l", "l", "l", "l", "l", "l", "l", /* U+0130 */
	"l", "l", "l", "n", "n", "n", "n", "n", "n", "n", "n", "n", "o", "o", "o", "o", /* U+0140 */
	"o", "o", "oe", "oe", "r", "r", "r", "r", "r", "r", "s", "s", "s", "s", "s", "s", /* U+0150 */
	"s", "s", "t", "t", "t", "t", "t", "t", "u", "u", "u", "u", "u", "u", "u", "u", /* U+0160 */
	"u", "u", "u", "u", "w", "w", "y", "y", "y", "z", "z", "z", "z", "z", "z", "s", /* U+0170 */
};

/* The German transliteration of ä, ö, ü (either case), or NULL. */
static const char *german_umlaut(int32_t cp)
{
	switch (cp) {
	case 0xC4: case 0xE4: return "ae";
	case 0xD6: case 0xF6: return "oe";
	case 0xDC: case 0xFC: return "ue";
	default: return NULL;
	}
}

/* Basic Greek: lower case, without tonos or dialytika, final sigma as σ. */
static int32_t greek_fold(int32_t cp)
{
	switch (cp) {
	case 0x386: case 0x3AC: return 0x3B1;                          /* ά */
	case 0x388: case 0x3AD: return 0x3B5;                          /* έ */
	case 0x389: case 0x3AE: return 0x3B7;                          /* ή */
	case 0x38A: case 0x3AF: case 0x390: case 0x3AA: case 0x3CA: return 0x3B9; /* ί ΐ ϊ */
	case 0x38C: case 0x3CC: return 0x3BF;                          /* ό */
	case 0x38E: case 0x3CD: case 0x3B0: case 0x3AB: case 0x3CB: return 0x3C5; /* ύ ΰ ϋ */
	case 0x38F: case 0x3CE: return 0x3C9;                          /* ώ */
	case 0x3C2: return 0x3C3;                                      /* ς */
	default: break;
	}
	if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2)
		return cp + 0x20;
	return cp;
}

/* Basic Cyrillic: lower case; ё as е (as NFKD and common spelling do). */
static int32_t cyrillic_fold(int32_t cp)
{
	if (cp == 0x401 || cp == 0x451)
		return 0x435;
	if (cp >= 0x410 && cp <= 0x42F)
		return cp + 0x20;
	if (cp >= 0x400 && cp <= 0x40F)
		return cp + 0x50;
	return cp;
}

static bool is_separator(int32_t cp)
{
	if (cp < 0x80)
		return !((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9'));
	return cp <= 0xBF || (cp >= 0x2B9 && cp <= 0x2FF) || (cp >= 0x2000 && cp <= 0x206F) ||
	       (cp >= 0x3000 && cp <= 0x3002) || cp == 0xFEFF;
}

/*
 * Fold the words of s (len bytes, UTF-8) and append each as prefix + word
 * to t. german: spell ä/ö/ü as ae/oe/ue instead of a/o/u. *umlaut (may be
 * NULL) is set when s has one of them (so that the caller knows whether a
 * German pass would differ). Returns 0, -EILSEQ (invalid UTF-8) or -ENOMEM.
 */
static int fold_words(toklist *t, const char *prefix, const char *s, size_t len, bool german, bool *umlaut)
{
	/* Folding never lengthens: every mapping of a 2-byte letter is at most
	 * 2 bytes, ASCII stays 1, case mappings keep the length. */
	char *word = malloc(len + 1);
	size_t w = 0, i = 0;
	int rc = 0;

	if (!word)
		return -ENOMEM;
	while (i < len && rc == 0) {
		int32_t cp = utf8_next((const unsigned char *)s, len, &i);
		const char *out = NULL;
		if (cp < 0) {
			rc = -EILSEQ;
			break;
		}
		if (cp >= 0x300 && cp <= 0x36F)
			continue;  /* a combining mark: the base letter stays */
		if (cp >= 0xC0 && cp < 0x180) {
			const char *g = german_umlaut(cp);
			if (g && umlaut)
				*umlaut = true;
			out = german && g ? g : latin_fold[cp - 0xC0];
			if (!*out) {
				out = NULL;  /* × ÷ */
				cp = ' ';
			}
		}
		if (!out && is_separator(cp)) {
			if (w > 0)
				rc = toklist_add(t, prefix, word, w);
			w = 0;
			continue;
		}
		if (out) {
			size_t k = strlen(out);
			memcpy(word + w, out, k);
			w += k;
			continue;
		}
		if (cp >= 'A' && cp <= 'Z')
			cp += 'a' - 'A';
		else if (cp >= 0x370 && cp <= 0x3FF)
			cp = greek_fold(cp);
		else if (cp >= 0x400 && cp <= 0x45F)
			cp = cyrillic_fold(cp);
		if (cp < 0x10000) {
			w += utf8_put(cp, word + w);
		} else {
			/* Kept as it was: the 4 bytes just read. */
			memcpy(word + w, s + i - 4, 4);
			w += 4;
		}
	}
	if (rc == 0 && w > 0)
		rc = toklist_add(t, prefix, word, w);
	free(word);
	return rc;
}

/* Index the words of a name part: folded, and German-transliterated too
 * when that differs. Strings of another type are skipped. */
static int index_name_part(toklist *t, const json_t *v)
{
	bool umlaut = false;
	int rc;

	if (!json_is_string(v))
		return 0;
	rc = fold_words(t, "name:", json_string_value(v), json_string_length(v), false, &umlaut);
	if (rc == 0 && umlaut)
		rc = fold_words(t, "name:", json_string_value(v), json_string_length(v), true, NULL);
	return rc == -EILSEQ ? 0 : rc;  /* Jansson strings are valid UTF-8; an unchecked one is skipped */
}

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return n > 0;
}

/* birth: and birthyear: tokens of a birthDate "YYYY", "YYYY-MM" or "YYYY-MM-DD"
 * (other shapes are skipped). */
static int index_birth_date(toklist *t, const char *b)
{
	size_t n = strlen(b);
	bool shape = (n == 4 || n == 7 || n == 10) && all_digits(b, 4) &&
		     (n < 7 || (b[4] == '-' && all_digits(b + 5, 2))) &&
		     (n < 10 || (b[7] == '-' && all_digits(b + 8, 2)));
	int rc;

	if (!shape)
		return 0;
	rc = toklist_add(t, "birthyear:", b, 4);
	if (rc == 0 && n == 10)
		rc = toklist_add(t, "birth:", b, 10);
	return rc;
}

/* s without leading and trailing spaces and tabs: *start and the length. */
static size_t trim(const char *s, const char **start)
{
	size_t n = strlen(s);
	while (*s == ' ' || *s == '\t')
		s++, n--;
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	*start = s;
	return n;
}

/*
 * The index tokens of a Patient (see patient-search.h). Owns nothing of
 * patient; on success the caller owns *tokens.
 */
int patient_index_tokens(const json_t *patient, const char *mrn_system, char ***tokens, size_t *n)
{
	toklist t = { 0 };
	const json_t *rt, *v, *name, *ident;
	size_t i, j;
	int rc = 0;

	if (!tokens || !n)
		return -EINVAL;
	*tokens = NULL;
	*n = 0;
	if (!json_is_object(patient))
		return -EINVAL;
	rt = json_object_get(patient, "resourceType");
	if (rt && (!json_is_string(rt) || strcmp(json_string_value(rt), "Patient") != 0))
		return -EINVAL;

	json_array_foreach(json_object_get(patient, "name"), i, name) {
		if (!json_is_object(name))
			continue;
		if (rc == 0)
			rc = index_name_part(&t, json_object_get(name, "family"));
		if (rc == 0)
			rc = index_name_part(&t, json_object_get(name, "text"));
		json_array_foreach(json_object_get(name, "given"), j, v) {
			if (rc == 0)
				rc = index_name_part(&t, v);
		}
	}
	v = json_object_get(patient, "birthDate");
	if (rc == 0 && json_is_string(v))
		rc = index_birth_date(&t, json_string_value(v));
	if (mrn_system) {
		json_array_foreach(json_object_get(patient, "identifier"), i, ident) {
			const json_t *sys = json_object_get(ident, "system"), *val = json_object_get(ident, "value");
			const char *start;
			size_t len;
			if (rc || !json_is_string(sys) || strcmp(json_string_value(sys), mrn_system) != 0 ||
			    !json_is_string(val))
				continue;
			len = trim(json_string_value(val), &start);
			if (len > 0)
				rc = toklist_add(&t, "mrn:", start, len);
		}
	}
	v = json_object_get(patient, "id");
	if (rc == 0 && json_is_string(v) && json_string_length(v) > 0)
		rc = toklist_add(&t, "id:", json_string_value(v), json_string_length(v));
	if (rc) {
		toklist_deinit(&t);
		return rc;
	}
	toklist_take(&t, tokens, n);
	return 0;
}

/* ------------------------------------------------------------------------
 * Queries.
 */

static int query_fail(char *err, size_t err_size, const char *msg)
{
	if (err && err_size)
		snprintf(err, err_size, "%s", msg);
	return PATIENT_SEARCH_E_QUERY;
}

static bool valid_date(int y, int m, int d)
{
	static const int dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1 || m < 1 || m > 12 || d < 1)
		return false;
	return d <= dim[m - 1] + (m == 2 && leap);
}

static int num(const char *s, size_t n)
{
	int v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

enum date_shape { NOT_A_DATE, DATE_OK, DATE_INVALID, DATE_SLASHED };

/* Read word w (n bytes) as a date: YYYY-MM-DD or D{1,2}.M{1,2}.YYYY into
 * out ("YYYY-MM-DD"). Words of digits and slashes only with a slash are
 * DATE_SLASHED. */
static enum date_shape parse_date(const char *w, size_t n, char out[11])
{
	int y, m, d;

	if (n == 10 && all_digits(w, 4) && w[4] == '-' && all_digits(w + 5, 2) && w[7] == '-' && all_digits(w + 8, 2)) {
		y = num(w, 4), m = num(w + 5, 2), d = num(w + 8, 2);
	} else {
		const char *dot1 = memchr(w, '.', n), *dot2 = NULL;
		if (dot1)
			dot2 = memchr(dot1 + 1, '.', n - (size_t)(dot1 + 1 - w));
		if (dot1 && dot2) {
			size_t dl = (size_t)(dot1 - w), ml = (size_t)(dot2 - dot1 - 1), yl = n - (size_t)(dot2 + 1 - w);
			if (dl >= 1 && dl <= 2 && ml >= 1 && ml <= 2 && yl == 4 && all_digits(w, dl) &&
			    all_digits(dot1 + 1, ml) && all_digits(dot2 + 1, 4)) {
				d = num(w, dl), m = num(dot1 + 1, ml), y = num(dot2 + 1, 4);
				goto check;
			}
		}
		if (memchr(w, '/', n)) {
			for (size_t i = 0; i < n; i++)
				if (w[i] != '/' && (w[i] < '0' || w[i] > '9'))
					return NOT_A_DATE;
			return DATE_SLASHED;
		}
		return NOT_A_DATE;
	}
check:
	if (!valid_date(y, m, d))
		return DATE_INVALID;
	snprintf(out, 11, "%04d-%02d-%02d", y % 10000, m % 100, d % 100);
	return DATE_OK;
}

static bool is_word_sep(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == ',' || c == ';';
}

/* Set q's MRN candidate to n bytes of v; a different one already set is an
 * error. Returns 0, PATIENT_SEARCH_E_QUERY or -ENOMEM. */
static int set_candidate(patient_query *q, const char *v, size_t n, char *err, size_t err_size)
{
	if (q->mrn_candidate) {
		if (strlen(q->mrn_candidate) == n && memcmp(q->mrn_candidate, v, n) == 0)
			return 0;
		return query_fail(err, err_size, "the query holds more than one MRN: search for one at a time");
	}
	q->mrn_candidate = strndup(v, n);
	return q->mrn_candidate ? 0 : -ENOMEM;
}

static bool has_prefix_ci(const char *w, size_t n, const char *prefix)
{
	size_t k = strlen(prefix);
	return n >= k && strncasecmp(w, prefix, k) == 0;
}

/* One word of a query (w, n bytes; next/next_n the word after it, for
 * "mrn: X"); *used_next set when that was consumed. */
static int query_word(patient_query *q, toklist *t, const char *w, size_t n, const char *next, size_t next_n,
		      bool *used_next, char *err, size_t err_size)
{
	char date[11];
	bool digit = false;
	int rc;

	if (has_prefix_ci(w, n, "mrn:") || has_prefix_ci(w, n, "id:")) {
		bool mrn = w[0] == 'm' || w[0] == 'M';
		size_t k = mrn ? 4 : 3;
		const char *v = w + k;
		size_t vn = n - k;
		if (vn == 0 && next) {
			v = next, vn = next_n;
			*used_next = true;
		}
		if (vn == 0)
			return query_fail(err, err_size, mrn ? "\"mrn:\" needs a value" : "\"id:\" needs a value");
		rc = toklist_add(t, mrn ? "mrn:" : "id:", v, vn);
		if (rc == 0 && mrn)
			rc = set_candidate(q, v, vn, err, err_size);
		return rc;
	}
	switch (parse_date(w, n, date)) {
	case DATE_OK:
		return toklist_add(t, "birth:", date, 10);
	case DATE_INVALID:
		return query_fail(err, err_size, "a date in the query does not exist");
	case DATE_SLASHED:
		return query_fail(err, err_size, "write a birth date as YYYY-MM-DD or DD.MM.YYYY");
	case NOT_A_DATE:
		break;
	}
	if (n == 4 && all_digits(w, 4))
		return toklist_add(t, "birthyear:", w, 4);
	for (size_t i = 0; i < n; i++)
		digit |= w[i] >= '0' && w[i] <= '9';
	if (digit)
		return set_candidate(q, w, n, err, err_size);
	rc = fold_words(t, "name:", w, n, false, NULL);
	return rc == -EILSEQ ? query_fail(err, err_size, "the query is not valid UTF-8") : rc;
}

/*
 * Parse a search-box query (see patient-search.h). On success q owns its
 * tokens and candidate; on failure q is left empty.
 */
int patient_query_parse(const char *query, patient_query *q, char *err, size_t err_size)
{
	toklist t = { 0 };
	const char *p;
	size_t len;
	int rc = 0;

	if (err && err_size)
		err[0] = 0;
	if (!query || !q)
		return -EINVAL;
	*q = PATIENT_QUERY_NULL;
	len = strnlen(query, PATIENT_QUERY_MAX + 1);
	if (len > PATIENT_QUERY_MAX)
		return query_fail(err, err_size, "the query is too long (at most 512 bytes)");
	for (size_t i = 0; i < len;) {
		if (utf8_next((const unsigned char *)query, len, &i) < 0)
			return query_fail(err, err_size, "the query is not valid UTF-8");
	}
	p = query;
	while (rc == 0) {
		while (*p && is_word_sep(*p))
			p++;
		if (!*p)
			break;
		const char *w = p, *next;
		size_t n, next_n;
		bool used_next = false;
		while (*p && !is_word_sep(*p))
			p++;
		n = (size_t)(p - w);
		next = p;
		while (*next && is_word_sep(*next))
			next++;
		next_n = 0;
		while (next[next_n] && !is_word_sep(next[next_n]))
			next_n++;
		rc = query_word(q, &t, w, n, next_n ? next : NULL, next_n, &used_next, err, err_size);
		if (used_next)
			p = next + next_n;
	}
	if (rc == 0 && t.n == 0 && !q->mrn_candidate) {
		bool blank = true;
		for (size_t i = 0; i < len; i++)
			blank &= is_word_sep(query[i]);
		rc = query_fail(err, err_size,
				blank ? "the query is empty"
				      : "the query has no usable search term: type a name, a birth date (YYYY-MM-DD or "
					"DD.MM.YYYY) or an MRN");
	}
	if (rc) {
		toklist_deinit(&t);
		patient_query_deinit(q);
		if (rc == -ENOMEM && err && err_size)
			snprintf(err, err_size, "out of memory");
		return rc;
	}
	toklist_take(&t, &q->tokens, &q->n);
	return 0;
}

void patient_query_deinit(patient_query *q)
{
	if (!q)
		return;
	patient_tokens_free(q->tokens, q->n);
	free(q->mrn_candidate);
	*q = PATIENT_QUERY_NULL;
}

/* strcmp(a1 followed by a2, b) without building the concatenation. */
static int cmp_cat(const char *a1, const char *a2, const char *b)
{
	const unsigned char *t = (const unsigned char *)b;

	for (const unsigned char *p = (const unsigned char *)a1; *p; p++, t++)
		if (*p != *t)
			return *p - *t;
	for (const unsigned char *p = (const unsigned char *)a2; *p; p++, t++)
		if (*p != *t)
			return *p - *t;
	return -(int)*t;
}

/* Whether the sorted list has the token prefix + value. */
static bool has_token(char *const *tokens, size_t n, const char *prefix, const char *value)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_cat(prefix, value, tokens[mid]);
		if (c == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

bool patient_query_matches(const patient_query *q, char *const *tokens, size_t n)
{
	if (!q || (q->n == 0 && !q->mrn_candidate) || (n > 0 && !tokens))
		return false;
	for (size_t i = 0; i < q->n; i++)
		if (!has_token(tokens, n, "", q->tokens[i]))
			return false;
	if (q->mrn_candidate && !has_token(tokens, n, "mrn:", q->mrn_candidate) &&
	    !has_token(tokens, n, "id:", q->mrn_candidate))
		return false;
	return true;
}
