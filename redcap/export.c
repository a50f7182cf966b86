/*
 * redcap/export.c — batched record export: id lists, the batch plan, the
 * per-batch completeness check and the output writer (see export.h).
 *
 * Answers are read in full: a CSV answer row by row with the RFC 4180
 * reader of csv.c (which also validates it), a JSON answer with Jansson.
 * Record ids are copied into one arena per answer and compared through
 * sorted key arrays (trimmed, ASCII case-folded), so a 100k-id list costs a
 * sort, not a quadratic scan, and no hash table an id list could flood.
 */
#include "redcap/export.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "redcap/internal.h"

/* JSON answers: duplicate keys refused (REDCap never writes them and
 * Jansson would keep only one); \u0000 accepted, it is valid JSON. */
#define ANSWER_JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

/* ------------------------------------------------------------------------
 * Output buffer.
 */

/* Append n bytes; on ENOMEM b is left as it was. */
static int buf_add(redcap_buf *b, const void *p, size_t n)
{
	if (n > SIZE_MAX / 2 - b->len - 1)
		return -ENOMEM;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q)
			return -ENOMEM;
		b->p = q;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

static int buf_adds(redcap_buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

/* Take back what a failed call appended: b->len becomes len again. */
static void buf_truncate(redcap_buf *b, size_t len)
{
	if (!b->p || b->len <= len)
		return;
	OPENSSL_cleanse(b->p + len, b->len - len);
	b->len = len;
	b->p[len] = 0;
}

/* Wipe the bytes (they are records), keep the memory. */
void redcap_buf_clear(redcap_buf *b)
{
	if (!b)
		return;
	buf_truncate(b, 0);
}

/* Wipe and free; b is reset. */
void redcap_buf_deinit(redcap_buf *b)
{
	if (!b)
		return;
	if (b->p)
		OPENSSL_cleanse(b->p, b->cap);
	free(b->p);
	*b = (redcap_buf)REDCAP_BUF_NULL;
}

/* ------------------------------------------------------------------------
 * Id lists and keys.
 */

/* Ids copied out of one answer: each NUL-terminated in text, at off[i]. */
typedef struct id_list {
	rc_str text;
	size_t *off;
	size_t n, cap;
} id_list;

/* Wipe (ids are PHI) and free. */
static void ids_free(id_list *l)
{
	if (l->text.s)
		OPENSSL_cleanse(l->text.s, l->text.len);
	rc_str_free(&l->text);
	free(l->off);
	*l = (id_list){ 0 };
}

static int ids_add(id_list *l, const char *s, size_t n)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		if (cap > SIZE_MAX / sizeof(*l->off))
			return -ENOMEM;
		size_t *o = realloc(l->off, cap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		l->off = o;
		l->cap = cap;
	}
	l->off[l->n] = l->text.len;
	rc_str_addn(&l->text, s, n);
	rc_str_addc(&l->text, '\0');
	if (l->text.err)
		return -ENOMEM;
	l->n++;
	return 0;
}

static const char *ids_at(const id_list *l, size_t i)
{
	return l->text.s + l->off[i];
}

/* An id as compared: its PHP-trimmed span, and where it came from. */
typedef struct id_key {
	const char *s;
	size_t len;
	size_t pos;
} id_key;

static id_key key_of(const char *s, size_t pos)
{
	size_t start, len;
	rc_trim(s, strlen(s), &start, &len);
	return (id_key){ s + start, len, pos };
}

static unsigned char fold(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* REDCap's record name equality: trimmed, ASCII case-insensitive. */
static int key_cmp(const id_key *a, const id_key *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	for (size_t i = 0; i < n; i++) {
		unsigned char x = fold((unsigned char)a->s[i]), y = fold((unsigned char)b->s[i]);
		if (x != y)
			return x < y ? -1 : 1;
	}
	return a->len < b->len ? -1 : a->len > b->len;
}

/* Order by key, then by position: the first of equal keys is the first seen. */
static int key_sort(const void *pa, const void *pb)
{
	const id_key *a = pa, *b = pb;
	int c = key_cmp(a, b);
	if (c)
		return c;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int size_sort(const void *pa, const void *pb)
{
	size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
	return a < b ? -1 : a > b;
}

/* The keys of l, sorted by (key, position): malloc'd, NULL on ENOMEM. */
static id_key *sorted_keys(const id_list *l)
{
	id_key *k = malloc((l->n ? l->n : 1) * sizeof(*k));
	if (!k)
		return NULL;
	for (size_t i = 0; i < l->n; i++)
		k[i] = key_of(ids_at(l, i), i);
	qsort(k, l->n, sizeof(*k), key_sort);
	return k;
}

/*
 * Positions in l of its distinct ids (the first of each), in first-seen
 * order, into *pos (malloc'd), their number in *n. 0 or -ENOMEM.
 */
static int distinct(const id_list *l, size_t **pos, size_t *n)
{
	*pos = NULL;
	*n = 0;
	id_key *k = sorted_keys(l);
	size_t *p = malloc((l->n ? l->n : 1) * sizeof(*p));
	if (!k || !p) {
		free(k);
		free(p);
		return -ENOMEM;
	}
	size_t m = 0;
	for (size_t i = 0; i < l->n; i++)
		if (i == 0 || key_cmp(&k[i - 1], &k[i]) != 0)
			p[m++] = k[i].pos;
	free(k);
	qsort(p, m, sizeof(*p), size_sort);
	*pos = p;
	*n = m;
	return 0;
}

/* Copies of the strings of l at pos[0..n) into a fresh strv. 0 or -ENOMEM. */
static int strv_from(redcap_strv *out, const id_list *l, const size_t *pos, size_t n)
{
	out->v = calloc(n ? n : 1, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		out->v[i] = rc_strdup(ids_at(l, pos[i]));
		if (!out->v[i]) {
			redcap_strv_deinit(out);
			return -ENOMEM;
		}
		out->n = i + 1;
	}
	return 0;
}

/* Wipe and free a strv of ids. */
static void strv_wipe(redcap_strv *s)
{
	for (size_t i = 0; s && i < s->n; i++)
		if (s->v[i])
			OPENSSL_cleanse(s->v[i], strlen(s->v[i]));
	redcap_strv_deinit(s);
}

/* ------------------------------------------------------------------------
 * Reading answers.
 */

static bool is_json_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Nothing but white space (and at most a BOM)? An empty answer then. */
static bool blank_answer(const char *buf, size_t len)
{
	size_t start, n;
	if (!buf)
		return true;
	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
		buf += 3;
		len -= 3;
	}
	rc_trim(buf, len, &start, &n);
	return n == 0;
}

static void err_at(redcap_error *err, size_t offset, unsigned line, unsigned column)
{
	if (!err)
		return;
	err->offset = offset;
	err->line = line;
	err->column = column;
}

/* A record id taken from an answer: not blank, no NUL. */
static int id_check(const char *s, size_t n, redcap_error *err, const char *where, size_t at)
{
	size_t start, len;
	rc_trim(s, n, &start, &len);
	if (len == 0) {
		rc_err(err, "%s %zu: empty record id", where, at);
		return REDCAP_E_SHAPE;
	}
	if (memchr(s, '\0', n)) {
		rc_err(err, "%s %zu: record id holds a NUL byte", where, at);
		return REDCAP_E_SHAPE;
	}
	return 0;
}

/* The header line of a CSV answer. */
typedef struct csv_head {
	bool found;      /* false: an empty answer, no header */
	size_t end;      /* offset after the header line, line end included */
	size_t body;     /* offset of the header's line end (= end if it has none) */
	size_t cells;
	size_t id_col;
} csv_head;

/* Offset of the line end that ends at end (end itself if there is none). */
static size_t line_body(const char *buf, size_t start, size_t end)
{
	size_t e = end;
	if (e > start && buf[e - 1] == '\n')
		e--;
	if (e > start && buf[e - 1] == '\r')
		e--;
	return e;
}

/*
 * Read the header of a CSV answer from c into h (h->found false for an
 * empty answer) and find the id column. Returns 0, REDCAP_E_CSV,
 * REDCAP_E_SHAPE (id_field not a column), REDCAP_E_TOO_LARGE, -ENOMEM.
 */
static int csv_header(rc_csv *c, rc_csv_row *row, const char *id_field, csv_head *h, redcap_error *err)
{
	*h = (csv_head){ .found = false };
	if (blank_answer(c->buf, c->len))
		return 0;
	int rc = rc_csv_next(c, row, err);
	if (rc != 1)
		return rc;
	h->found = true;
	h->end = c->pos;
	h->body = line_body(c->buf, 0, c->pos);
	h->cells = row->n;
	h->id_col = 0;
	if (!id_field)
		return 0;
	for (size_t i = 0; i < row->n; i++) {
		if (row->cells[i].len == strlen(id_field) && strcmp(rc_csv_text(row, i), id_field) == 0) {
			h->id_col = i;
			return 0;
		}
	}
	err_at(err, 0, 1, 1);
	rc_err(err, "CSV answer: the header has no column %s", id_field);
	return REDCAP_E_SHAPE;
}

/*
 * The data rows after the header: each must have h->cells cells; their ids
 * go to ids (when non-NULL). Blank lines are skipped. *rows counts the rest.
 * Returns 0, REDCAP_E_CSV, REDCAP_E_SHAPE, REDCAP_E_TOO_LARGE, -ENOMEM.
 */
static int csv_rows(rc_csv *c, rc_csv_row *row, const csv_head *h, id_list *ids, uint64_t *rows,
		    redcap_error *err)
{
	int rc;
	*rows = 0;
	while ((rc = rc_csv_next(c, row, err)) == 1) {
		if (row->n == 1 && row->cells[0].len == 0)
			continue;
		if (row->n != h->cells) {
			err_at(err, 0, row->line, 1);
			rc_err(err, "CSV answer: line %u has %zu cells, the header %zu", row->line, row->n, h->cells);
			return REDCAP_E_SHAPE;
		}
		const rc_csv_cell *cell = &row->cells[h->id_col];
		if ((rc = id_check(rc_csv_text(row, h->id_col), cell->len, err, "CSV answer: line", row->line)))
			return rc;
		if (ids && (rc = ids_add(ids, rc_csv_text(row, h->id_col), cell->len)))
			return rc;
		(*rows)++;
	}
	return rc;
}

/* Parse a JSON answer: an array (REDCAP_E_JSON / REDCAP_E_SHAPE otherwise). */
static json_t *json_answer(const char *buf, size_t len, redcap_error *err, int *rc)
{
	json_error_t je;
	json_t *j = json_loadb(buf ? buf : "", buf ? len : 0, ANSWER_JSON_FLAGS, &je);

	if (!j) {
		/* je.text may quote the input (records): position only. */
		err_at(err, je.position > 0 ? (size_t)je.position : 0, je.line > 0 ? (unsigned)je.line : 0,
		       je.column > 0 ? (unsigned)je.column : 0);
		rc_err(err, "JSON answer: invalid JSON at line %d, column %d", je.line, je.column);
		*rc = REDCAP_E_JSON;
		return NULL;
	}
	if (!json_is_array(j)) {
		rc_err(err, "JSON answer: not an array");
		json_decref(j);
		*rc = REDCAP_E_SHAPE;
		return NULL;
	}
	*rc = 0;
	return j;
}

/*
 * The fast path for JSON answers. REDCap's record exports are arrays of
 * flat objects whose values are all strings and whose members come in the
 * same order in every row; a DOM per batch (twice: the check and the
 * writer) cost most of a JSON export's CPU time and a multiple of the
 * answer in memory. json_fast() validates such an answer in one pass,
 * collects the ids and, for NDJSON, writes each object compact. Whatever
 * it is not sure of (another value type, a key with escapes, members in
 * another order than the first row's, a \u surrogate, bytes that are not
 * UTF-8) makes it give up (JF_OTHER): the Jansson path then decides, with
 * its own errors. So it only ever accepts what Jansson accepts, and gives
 * the same rows and ids.
 */
enum { JF_OTHER = 1 };

bool rc_export_json_fast = true;
unsigned long rc_export_json_fast_used;

typedef struct jf_span {
	size_t off, len;   /* the string's bytes between the quotes */
} jf_span;

typedef struct jfast {
	const unsigned char *b, *p, *end;
	jf_span *keys;     /* the first row's member names, in order */
	size_t n_keys, cap_keys;
	bool first_done;
} jfast;

static void jf_ws(jfast *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
		j->p++;
}

/* Strict UTF-8: the length of the sequence at p, or 0. */
static size_t jf_utf8(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = p[0];
	size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
	if (c < 0xC2 || c > 0xF4 || (size_t)(end - p) < n)
		return 0;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c == 0xE0)
		lo = 0xA0;
	else if (c == 0xED)
		hi = 0x9F;
	else if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return n;
}

static int jf_hex4(const unsigned char *p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			d = (c | 0x20) - 'a' + 10;
		else
			return -1;
		*v = *v << 4 | d;
	}
	return 0;
}

/* At '"': one string; its bytes in *sp, *escaped if it holds escapes. */
static int jf_string(jfast *j, jf_span *sp, bool *escaped)
{
	const unsigned char *p = j->p + 1, *end = j->end;
	*escaped = false;
	for (;;) {
		while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		if (p >= end)
			return JF_OTHER;
		unsigned char c = *p;
		if (c == '"')
			break;
		if (c < 0x20)
			return JF_OTHER;
		if (c == '\\') {
			if (end - p < 2)
				return JF_OTHER;
			*escaped = true;
			unsigned char e = p[1];
			if (e == 'u') {
				unsigned v;
				if (end - p < 6 || jf_hex4(p + 2, &v) != 0 || (v >= 0xD800 && v <= 0xDFFF))
					return JF_OTHER;
				p += 6;
			} else if (strchr("\"\\/bfnrt", e) && e) {
				p += 2;
			} else {
				return JF_OTHER;
			}
			continue;
		}
		size_t n = jf_utf8(p, end);
		if (!n)
			return JF_OTHER;
		p += n;
	}
	sp->off = (size_t)(j->p + 1 - j->b);
	sp->len = (size_t)(p - (j->p + 1));
	j->p = p + 1;
	return 0;
}

/* An escaped string's text, decoded (no surrogates: jf_string refused them). */
static char *jf_unescape(const unsigned char *s, size_t n, size_t *out_len)
{
	char *o = malloc(n + 1), *q = o;
	if (!o)
		return NULL;
	for (size_t i = 0; i < n;) {
		if (s[i] != '\\') {
			*q++ = (char)s[i++];
			continue;
		}
		unsigned char e = s[i + 1];
		if (e == 'u') {
			unsigned v = 0;
			jf_hex4(s + i + 2, &v);
			if (v < 0x80) {
				*q++ = (char)v;
			} else if (v < 0x800) {
				*q++ = (char)(0xC0 | v >> 6);
				*q++ = (char)(0x80 | (v & 0x3F));
			} else {
				*q++ = (char)(0xE0 | v >> 12);
				*q++ = (char)(0x80 | (v >> 6 & 0x3F));
				*q++ = (char)(0x80 | (v & 0x3F));
			}
			i += 6;
			continue;
		}
		*q++ = e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : (char)e;
		i += 2;
	}
	*q = '\0';
	*out_len = (size_t)(q - o);
	return o;
}

static int jf_key_add(jfast *j, jf_span k)
{
	if (j->n_keys == j->cap_keys) {
		size_t cap = j->cap_keys ? j->cap_keys * 2 : 64;
		jf_span *nk = realloc(j->keys, cap * sizeof(*nk));
		if (!nk)
			return -ENOMEM;
		j->keys = nk;
		j->cap_keys = cap;
	}
	j->keys[j->n_keys++] = k;
	return 0;
}

/* The first row's names must be distinct (Jansson refuses duplicates). */
static bool jf_keys_distinct(const jfast *j)
{
	for (size_t a = 0; a < j->n_keys; a++)
		for (size_t c = a + 1; c < j->n_keys; c++)
			if (j->keys[a].len == j->keys[c].len &&
			    memcmp(j->b + j->keys[a].off, j->b + j->keys[c].off, j->keys[a].len) == 0)
				return false;
	return true;
}

static int jf_put(redcap_buf *out, const unsigned char *p, size_t n)
{
	return out ? buf_add(out, p, n) : 0;
}

/*
 * A string for NDJSON, written as Jansson's compact dump writes it (the
 * slow path's output, so a file is the same whichever path a batch took):
 * UTF-8 as is, '/' unescaped; '"', '\\' and the C0 controls escaped, those
 * without a short form as \u00XX. A string without escapes is already so.
 */
static int jf_put_string(redcap_buf *out, const unsigned char *b, jf_span sp, bool escaped)
{
	if (!escaped)
		return jf_put(out, b + sp.off - 1, sp.len + 2);
	size_t n = 0;
	char *t = jf_unescape(b + sp.off, sp.len, &n);
	if (!t)
		return -ENOMEM;
	int rc = buf_adds(out, "\"");
	for (size_t i = 0, run = 0; rc == 0 && i <= n; i++) {
		unsigned char c = i < n ? (unsigned char)t[i] : 0;
		if (i < n && c >= 0x20 && c != '"' && c != '\\')
			continue;
		if (i > run && (rc = buf_add(out, t + run, i - run)) != 0)
			break;
		run = i + 1;
		if (i == n)
			break;
		const char *e = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f" :
				c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
		char u[8];
		if (!e) {
			snprintf(u, sizeof(u), "\\u%04X", c);
			e = u;
		}
		rc = buf_adds(out, e);
	}
	if (rc == 0)
		rc = buf_adds(out, "\"");
	OPENSSL_cleanse(t, n);
	free(t);
	return rc;
}

/* At '{': one row. Its id to ids; compact to out (NDJSON) when non-NULL. */
static int jf_object(jfast *j, const char *id_field, id_list *ids, redcap_buf *out)
{
	size_t idlen = id_field ? strlen(id_field) : 0, k = 0;
	bool have_id = false;
	int rc;
	j->p++;
	if ((rc = jf_put(out, (const unsigned char *)"{", 1)))
		return rc;
	jf_ws(j);
	if (j->p < j->end && *j->p == '}')
		return JF_OTHER; /* an empty row: let Jansson's path say so */
	for (;; k++) {
		jf_span key, val;
		bool kesc, vesc;
		if (j->p >= j->end || *j->p != '"' || jf_string(j, &key, &kesc) != 0 || kesc)
			return JF_OTHER;
		if (!j->first_done) {
			if ((rc = jf_key_add(j, key)))
				return rc;
		} else if (k >= j->n_keys || j->keys[k].len != key.len ||
			   memcmp(j->b + j->keys[k].off, j->b + key.off, key.len) != 0) {
			return JF_OTHER;
		}
		jf_ws(j);
		if (j->p >= j->end || *j->p != ':')
			return JF_OTHER;
		j->p++;
		jf_ws(j);
		if (j->p >= j->end || *j->p != '"' || jf_string(j, &val, &vesc) != 0)
			return JF_OTHER;
		if (out && ((rc = jf_put(out, j->b + key.off - 1, key.len + 2)) ||
			    (rc = jf_put(out, (const unsigned char *)":", 1)) ||
			    (rc = jf_put_string(out, j->b, val, vesc))))
			return rc;
		bool is_id = id_field ? key.len == idlen && memcmp(j->b + key.off, id_field, idlen) == 0 : k == 0;
		if (is_id && !have_id) {
			have_id = true;
			const char *t = (const char *)j->b + val.off;
			size_t n = val.len;
			char *dec = NULL;
			if (vesc && !(dec = jf_unescape(j->b + val.off, val.len, &n)))
				return -ENOMEM;
			if (dec)
				t = dec;
			rc = id_check(t, n, NULL, "", 0) ? JF_OTHER : ids ? ids_add(ids, t, n) : 0;
			if (dec) {
				OPENSSL_cleanse(dec, n);
				free(dec);
			}
			if (rc)
				return rc;
		}
		jf_ws(j);
		if (j->p >= j->end)
			return JF_OTHER;
		if (*j->p == '}') {
			j->p++;
			break;
		}
		if (*j->p != ',')
			return JF_OTHER;
		if ((rc = jf_put(out, (const unsigned char *)",", 1)))
			return rc;
		j->p++;
		jf_ws(j);
	}
	if (!j->first_done) {
		j->first_done = true;
		if (!jf_keys_distinct(j))
			return JF_OTHER;
	} else if (k + 1 != j->n_keys) {
		return JF_OTHER;
	}
	if (!have_id)
		return JF_OTHER;
	return out ? buf_adds(out, "}\n") : 0;
}

/*
 * A whole answer: 0 (ids, *rows and, for NDJSON, out filled), JF_OTHER
 * (nothing decided: ids and out may hold a part, the caller drops it), or
 * -ENOMEM.
 */
static int json_fast(const char *buf, size_t len, const char *id_field, id_list *ids, uint64_t *rows,
		     redcap_buf *out)
{
	jfast j = { .b = (const unsigned char *)buf, .p = (const unsigned char *)buf,
		    .end = (const unsigned char *)buf + len };
	int rc = JF_OTHER;
	*rows = 0;
	jf_ws(&j);
	if (j.p >= j.end || *j.p != '[')
		goto out;
	j.p++;
	jf_ws(&j);
	if (j.p < j.end && *j.p == ']') {
		j.p++;
	} else {
		for (;;) {
			if (j.p >= j.end || *j.p != '{')
				goto out;
			if ((rc = jf_object(&j, id_field, ids, out)) != 0)
				goto out;
			rc = JF_OTHER;
			(*rows)++;
			jf_ws(&j);
			if (j.p < j.end && *j.p == ']') {
				j.p++;
				break;
			}
			if (j.p >= j.end || *j.p != ',')
				goto out;
			j.p++;
			jf_ws(&j);
		}
	}
	jf_ws(&j);
	rc = j.p == j.end ? 0 : JF_OTHER;
	if (rc == 0)
		rc_export_json_fast_used++;
out:
	free(j.keys);
	return rc;
}

/* The record id of one exported object: id_field, or its first member. */
static int json_row_id(const json_t *o, size_t i, const char *id_field, id_list *ids, redcap_error *err)
{
	const json_t *v;
	bool bad = false;

	if (!json_is_object(o)) {
		rc_err(err, "JSON answer[%zu]: not an object", i);
		return REDCAP_E_SHAPE;
	}
	if (id_field)
		v = json_object_get(o, id_field);
	else
		v = json_object_iter_value(json_object_iter((json_t *)o));
	if (!v) {
		rc_err(err, "JSON answer[%zu]: no member %s", i, id_field ? id_field : "(empty object)");
		return REDCAP_E_SHAPE;
	}
	if (!json_is_string(v) && !json_is_integer(v)) {
		rc_err(err, "JSON answer[%zu]: the record id is not a string", i);
		return REDCAP_E_SHAPE;
	}
	char *t = json_is_string(v) ? rc_strndup(json_string_value(v), json_string_length(v))
				    : rc_json_text(v, false, &bad);
	if (!t)
		return -ENOMEM;
	size_t n = json_is_string(v) ? json_string_length(v) : strlen(t);
	int rc = id_check(t, n, err, "JSON answer: element", i);
	if (!rc && ids)
		rc = ids_add(ids, t, n);
	OPENSSL_cleanse(t, n);
	free(t);
	return rc;
}

/* Every element of arr is an object with a record id; ids collected. */
static int json_ids(const json_t *arr, const char *id_field, id_list *ids, redcap_error *err)
{
	size_t i;
	const json_t *o;
	int rc;

	json_array_foreach(arr, i, o) {
		if ((rc = json_row_id(o, i, id_field, ids, err)))
			return rc;
	}
	return 0;
}

/* The record ids of an answer, one per row, in row order. */
static int answer_ids(redcap_format fmt, const char *buf, size_t len, const char *id_field, id_list *ids,
		      redcap_error *err)
{
	int rc = 0;

	if (fmt != REDCAP_FORMAT_CSV && fmt != REDCAP_FORMAT_JSON)
		return -EINVAL;
	if (blank_answer(buf, len))
		return 0;
	if (fmt == REDCAP_FORMAT_CSV) {
		rc_csv c;
		rc_csv_row row = { 0 };
		csv_head h;
		uint64_t rows;
		rc_csv_init(&c, buf, len, ',');
		rc = csv_header(&c, &row, id_field, &h, err);
		if (!rc && h.found)
			rc = csv_rows(&c, &row, &h, ids, &rows, err);
		if (row.text)
			OPENSSL_cleanse(row.text, row.text_cap);
		rc_csv_row_free(&row);
		return rc;
	}
	uint64_t rows;
	size_t n0 = ids->n, t0 = ids->text.len;
	if (rc_export_json_fast && (rc = json_fast(buf, len, id_field, ids, &rows, NULL)) != JF_OTHER)
		return rc;
	/* What the fast path added goes (wiped: ids are PHI). */
	if (ids->text.s && ids->text.len > t0)
		OPENSSL_cleanse(ids->text.s + t0, ids->text.len - t0);
	ids->n = n0;
	ids->text.len = t0;
	json_t *j = json_answer(buf, len, err, &rc);
	if (!j)
		return rc;
	rc = json_ids(j, id_field, ids, err);
	json_decref(j);
	return rc;
}

/* ------------------------------------------------------------------------
 * Record ids and the batch check.
 */

/* Distinct ids in first-seen order into ids (reset first; empty on failure). */
int redcap_parse_record_ids(const char *buf, size_t len, redcap_format fmt, const char *id_field, redcap_strv *ids,
			    redcap_error *err)
{
	id_list l = { 0 };
	size_t *pos = NULL, n = 0;

	if (!ids)
		return -EINVAL;
	strv_wipe(ids);
	int rc = answer_ids(fmt, buf, len, id_field, &l, err);
	if (!rc)
		rc = distinct(&l, &pos, &n);
	if (!rc)
		rc = strv_from(ids, &l, pos, n);
	free(pos);
	ids_free(&l);
	return rc;
}

/* Is key k among the sorted keys s[0..n)? */
static bool key_in(const id_key *s, size_t n, const id_key *k)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = key_cmp(&s[mid], k);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* missing: asked ids not in got; unexpected: distinct got ids not asked. */
static int compare_ids(const id_list *asked, const id_list *got, redcap_strv *missing, redcap_strv *unexpected)
{
	size_t *miss = NULL, n_miss = 0, *dpos = NULL, n_d = 0, *unex = NULL, n_unex = 0;
	id_key *ka = sorted_keys(asked), *kg = sorted_keys(got);
	int rc = -ENOMEM;

	if (!ka || !kg)
		goto out;
	miss = malloc((asked->n ? asked->n : 1) * sizeof(*miss));
	if (!miss || distinct(got, &dpos, &n_d) != 0)
		goto out;
	unex = malloc((n_d ? n_d : 1) * sizeof(*unex));
	if (!unex)
		goto out;
	for (size_t i = 0; i < asked->n; i++) {
		id_key k = key_of(ids_at(asked, i), i);
		if (!key_in(kg, got->n, &k))
			miss[n_miss++] = i;
	}
	for (size_t i = 0; i < n_d; i++) {
		id_key k = key_of(ids_at(got, dpos[i]), dpos[i]);
		if (!key_in(ka, asked->n, &k))
			unex[n_unex++] = dpos[i];
	}
	rc = strv_from(missing, asked, miss, n_miss);
	if (!rc && (rc = strv_from(unexpected, got, unex, n_unex)) != 0)
		strv_wipe(missing);
out:
	free(ka);
	free(kg);
	free(miss);
	free(dpos);
	free(unex);
	return rc;
}

int redcap_export_check_batch(redcap_format fmt, const char *buf, size_t len, const char *id_field,
			      const char *const *ids, size_t n, redcap_strv *missing, redcap_strv *unexpected,
			      redcap_error *err)
{
	id_list asked = { 0 }, got = { 0 };
	int rc = 0;

	if (!missing || !unexpected || (n && !ids))
		return -EINVAL;
	strv_wipe(missing);
	strv_wipe(unexpected);
	for (size_t i = 0; i < n && !rc; i++)
		rc = ids[i] ? ids_add(&asked, ids[i], strlen(ids[i])) : -EINVAL;
	if (!rc)
		rc = answer_ids(fmt, buf, len, id_field, &got, err);
	if (!rc)
		rc = compare_ids(&asked, &got, missing, unexpected);
	ids_free(&asked);
	ids_free(&got);
	return rc;
}

/* ------------------------------------------------------------------------
 * The batch plan.
 */

int redcap_export_plan_init(redcap_export_plan *p, size_t n_ids, size_t batch_size)
{
	if (!p)
		return -EINVAL;
	if (batch_size == 0)
		batch_size = REDCAP_EXPORT_BATCH_DEFAULT;
	*p = (redcap_export_plan){ .n_ids = n_ids, .batch_size = batch_size, .next = 0, .chunk = batch_size };
	return 0;
}

/* Size of the current range: chunk, cut at the grid line and at the end. */
static size_t plan_count(const redcap_export_plan *p)
{
	if (p->next >= p->n_ids)
		return 0;
	size_t c = p->chunk, left = p->n_ids - p->next, to_grid = p->batch_size - p->next % p->batch_size;
	if (c > left)
		c = left;
	if (c > to_grid)
		c = to_grid;
	return c;
}

bool redcap_export_plan_next(const redcap_export_plan *p, size_t *start, size_t *count)
{
	size_t c = p ? plan_count(p) : 0;
	if (start)
		*start = p ? (c ? p->next : p->n_ids) : 0;
	if (count)
		*count = c;
	return c > 0;
}

int redcap_export_plan_split(redcap_export_plan *p)
{
	if (!p)
		return -EINVAL;
	size_t c = plan_count(p);
	if (c == 0)
		return -EINVAL;
	if (c == 1)
		return REDCAP_E_TOO_LARGE;
	p->chunk = c - c / 2;
	return 0;
}

void redcap_export_plan_done(redcap_export_plan *p)
{
	if (!p)
		return;
	p->next += plan_count(p);
	if (p->next % p->batch_size == 0)
		p->chunk = p->batch_size;
}

bool redcap_export_plan_finished(const redcap_export_plan *p)
{
	return !p || p->next >= p->n_ids;
}

int redcap_export_plan_restore(redcap_export_plan *p, size_t n_ids, size_t batch_size, uint64_t next,
			       uint64_t chunk)
{
	if (!p)
		return -EINVAL;
	if (batch_size == 0)
		batch_size = REDCAP_EXPORT_BATCH_DEFAULT;
	if (next > n_ids || chunk == 0 || chunk > batch_size)
		return REDCAP_E_ARG;
	*p = (redcap_export_plan){ .n_ids = n_ids, .batch_size = batch_size, .next = (size_t)next,
				   .chunk = (size_t)chunk };
	return 0;
}

/* ------------------------------------------------------------------------
 * The writer.
 */

static const char *const out_names[] = {
	[REDCAP_OUT_CSV] = "csv",
	[REDCAP_OUT_JSON] = "json",
	[REDCAP_OUT_NDJSON] = "ndjson",
};

const char *redcap_out_format_name(redcap_out_format f)
{
	if ((unsigned)f >= sizeof(out_names) / sizeof(out_names[0]))
		return NULL;
	return out_names[f];
}

redcap_format redcap_out_answer_format(redcap_out_format f)
{
	return f == REDCAP_OUT_CSV ? REDCAP_FORMAT_CSV : REDCAP_FORMAT_JSON;
}

int redcap_export_writer_init(redcap_export_writer *w, redcap_out_format fmt, const char *id_field)
{
	if (!w || !redcap_out_format_name(fmt))
		return -EINVAL;
	*w = (redcap_export_writer){ .fmt = fmt };
	if (id_field && !(w->id_field = rc_strdup(id_field)))
		return -ENOMEM;
	memcpy(w->eol, "\n", 2);
	return 0;
}

/* Free the copies (the header may hold labels: wiped like data). */
void redcap_export_writer_deinit(redcap_export_writer *w)
{
	if (!w)
		return;
	free(w->id_field);
	if (w->header)
		OPENSSL_cleanse(w->header, w->header_len);
	free(w->header);
	*w = (redcap_export_writer)REDCAP_EXPORT_WRITER_NULL;
}

/* Distinct ids of one answer: its records. */
static int count_records(const id_list *l, uint64_t *n)
{
	size_t *pos = NULL, m = 0;
	int rc = distinct(l, &pos, &m);
	free(pos);
	*n = m;
	return rc;
}

/* Keep the first header line seen (with the line end it had, or w->eol). */
static int keep_header(redcap_export_writer *w, const char *buf, const csv_head *h)
{
	size_t eol_len = h->end - h->body, len = eol_len ? h->end : h->body + strlen(w->eol);
	char *copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, buf, h->end);
	if (eol_len) {
		memcpy(w->eol, buf + h->body, eol_len);
		w->eol[eol_len] = 0;
	} else {
		memcpy(copy + h->body, w->eol, strlen(w->eol));
	}
	copy[len] = 0;
	w->header = copy;
	w->header_len = len;
	w->header_body = h->body;
	w->header_cells = h->cells;
	w->id_col = h->id_col;
	return 0;
}

/* A CSV answer: check the header against the first, append the rows. */
static int csv_batch(redcap_export_writer *w, const char *buf, size_t len, redcap_buf *out, redcap_error *err,
		     uint64_t *rows, uint64_t *records)
{
	rc_csv c;
	rc_csv_row row = { 0 };
	csv_head h;
	id_list ids = { 0 };
	bool first = w->header_len == 0;

	rc_csv_init(&c, buf, len, ',');
	int rc = csv_header(&c, &row, w->id_field, &h, err);
	if (rc || !h.found)
		goto out;
	if (!first && (h.body != w->header_body || memcmp(buf, w->header, h.body) != 0)) {
		err_at(err, 0, 1, 1);
		rc_err(err, "CSV answer: the header differs from the first batch's");
		rc = REDCAP_E_SHAPE;
		goto out;
	}
	if ((rc = csv_rows(&c, &row, &h, &ids, rows, err)) || (rc = count_records(&ids, records)))
		goto out;
	if (first) {
		if ((rc = keep_header(w, buf, &h)) || (rc = buf_add(out, w->header, w->header_len)))
			goto out;
	}
	if (h.end < len) {
		rc = buf_add(out, buf + h.end, len - h.end);
		/* A last row without a line end: the next batch must not run into it. */
		if (!rc && buf[len - 1] != '\n' && buf[len - 1] != '\r')
			rc = buf_adds(out, w->eol);
	}
out:
	if (row.text)
		OPENSSL_cleanse(row.text, row.text_cap);
	rc_csv_row_free(&row);
	ids_free(&ids);
	if (rc && first && w->header) {
		/* The header was kept, but the batch failed: forget it. */
		OPENSSL_cleanse(w->header, w->header_len);
		free(w->header);
		w->header = NULL;
		w->header_len = w->header_body = 0;
		memcpy(w->eol, "\n", 2);
	}
	return rc;
}

/* The elements of a JSON answer as REDCap wrote them: the text between the
 * outer brackets, without the white space around it. */
static void json_inner(const char *buf, size_t len, size_t *start, size_t *n)
{
	size_t a = 0, b = len;
	while (a < b && is_json_ws(buf[a]))
		a++;
	while (b > a && is_json_ws(buf[b - 1]))
		b--;
	/* json_answer() accepted an array: buf[a] is '[' and buf[b - 1] is ']'. */
	a++;
	b--;
	while (a < b && is_json_ws(buf[a]))
		a++;
	while (b > a && is_json_ws(buf[b - 1]))
		b--;
	*start = a;
	*n = b - a;
}

static int dump_cb(const char *s, size_t n, void *ud)
{
	return buf_add(ud, s, n) ? -1 : 0;
}

/* A JSON answer to JSON (elements' bytes) or NDJSON (one compact object a line). */
static int json_batch(redcap_export_writer *w, const char *buf, size_t len, redcap_buf *out, redcap_error *err,
		      uint64_t *rows, uint64_t *records)
{
	id_list ids = { 0 };
	int rc = 0;
	json_t *j = NULL;

	if (w->fmt == REDCAP_OUT_JSON && w->bytes == 0 && (rc = buf_adds(out, "[")))
		return rc;
	if (blank_answer(buf, len))
		return 0;
	size_t before = out->len;
	rc = rc_export_json_fast ? json_fast(buf, len, w->id_field, &ids, rows, w->fmt == REDCAP_OUT_NDJSON ? out : NULL)
				 : JF_OTHER;
	if (rc != JF_OTHER) {
		if (rc == 0)
			rc = count_records(&ids, records);
		if (rc == 0 && w->fmt == REDCAP_OUT_JSON) {
			size_t start, n;
			json_inner(buf, len, &start, &n);
			if (n && w->rows)
				rc = buf_adds(out, ",");
			if (rc == 0)
				rc = buf_add(out, buf + start, n);
		}
		ids_free(&ids);
		return rc;
	}
	/* Not the usual shape: Jansson decides. */
	buf_truncate(out, before);
	ids_free(&ids);
	rc = 0;
	if (!(j = json_answer(buf, len, err, &rc)))
		return rc;
	if ((rc = json_ids(j, w->id_field, &ids, err)) || (rc = count_records(&ids, records)))
		goto out;
	*rows = json_array_size(j);
	if (w->fmt == REDCAP_OUT_JSON) {
		size_t start, n;
		json_inner(buf, len, &start, &n);
		if (n && w->rows && (rc = buf_adds(out, ",")))
			goto out;
		rc = buf_add(out, buf + start, n);
		goto out;
	}
	size_t i;
	json_t *o;
	json_array_foreach(j, i, o) {
		if (json_dump_callback(o, dump_cb, out, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0 ||
		    buf_adds(out, "\n") != 0) {
			rc = -ENOMEM;
			break;
		}
	}
out:
	ids_free(&ids);
	json_decref(j);
	return rc;
}

int redcap_export_writer_batch(redcap_export_writer *w, const char *buf, size_t len, redcap_buf *out,
			       redcap_error *err)
{
	uint64_t rows = 0, records = 0;

	if (!w || !out || w->finished || (len && !buf))
		return -EINVAL;
	size_t before = out->len;
	int rc = w->fmt == REDCAP_OUT_CSV ? csv_batch(w, buf, len, out, err, &rows, &records)
					  : json_batch(w, buf, len, out, err, &rows, &records);
	if (rc) {
		buf_truncate(out, before);
		return rc;
	}
	w->bytes += out->len - before;
	w->rows += rows;
	w->records += records;
	return 0;
}

int redcap_export_writer_finish(redcap_export_writer *w, redcap_buf *out)
{
	if (!w || !out || w->finished)
		return -EINVAL;
	size_t before = out->len;
	if (w->fmt == REDCAP_OUT_JSON) {
		int rc = buf_adds(out, w->bytes == 0 ? "[]" : "]");
		if (rc) {
			buf_truncate(out, before);
			return rc;
		}
	}
	w->bytes += out->len - before;
	w->finished = true;
	return 0;
}

void redcap_export_writer_save(const redcap_export_writer *w, redcap_export_writer_state *st)
{
	if (!st)
		return;
	if (!w) {
		*st = (redcap_export_writer_state){ 0 };
		return;
	}
	*st = (redcap_export_writer_state){ .bytes = w->bytes, .rows = w->rows, .records = w->records,
					    .header_len = w->header_len };
}

/* The header of a restored CSV writer: head[0..n) must be exactly one header line. */
static int restore_header(redcap_export_writer *w, const char *head, size_t n, redcap_error *err)
{
	rc_csv c;
	rc_csv_row row = { 0 };
	csv_head h;

	rc_csv_init(&c, head, n, ',');
	int rc = csv_header(&c, &row, w->id_field, &h, err);
	rc_csv_row_free(&row);
	if (rc < 0)
		return rc;
	if (rc || !h.found) {
		rc_err(err, "checkpoint: the output does not start with a CSV header line (%s)",
		       rc ? "unreadable or no id column" : "empty");
		return REDCAP_E_ARG;
	}
	if (h.end != n || h.body == h.end) {
		rc_err(err, "checkpoint: the header line of the output does not end at byte %zu", n);
		return REDCAP_E_ARG;
	}
	return keep_header(w, head, &h);
}

int redcap_export_writer_restore(redcap_export_writer *w, redcap_out_format fmt, const char *id_field,
				 const redcap_export_writer_state *st, const char *head, size_t head_len,
				 redcap_error *err)
{
	if (!w || !st)
		return -EINVAL;
	redcap_export_writer_deinit(w);
	int rc = redcap_export_writer_init(w, fmt, id_field);
	if (rc)
		return rc;
	const char *why = NULL;
	if (st->records > st->rows)
		why = "more records than rows";
	else if (fmt != REDCAP_OUT_CSV && st->header_len)
		why = "a header in a JSON output";
	else if (fmt == REDCAP_OUT_CSV && st->header_len == 0 && (st->bytes || st->rows))
		why = "CSV output without a header";
	else if (fmt == REDCAP_OUT_CSV && (st->header_len > st->bytes || st->header_len > head_len || !head))
		why = "the header is longer than the output";
	else if (fmt != REDCAP_OUT_CSV && st->bytes == 0 && st->rows)
		why = "rows without output";
	else if (fmt == REDCAP_OUT_NDJSON && st->bytes && !st->rows)
		why = "NDJSON output without rows";
	if (why) {
		rc_err(err, "checkpoint: the writer's state does not fit: %s", why);
		rc = REDCAP_E_ARG;
	} else if (fmt == REDCAP_OUT_CSV && st->header_len) {
		rc = restore_header(w, head, (size_t)st->header_len, err);
	}
	if (rc) {
		redcap_export_writer_deinit(w);
		return rc;
	}
	w->bytes = st->bytes;
	w->rows = st->rows;
	w->records = st->records;
	return 0;
}
