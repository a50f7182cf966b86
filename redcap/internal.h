/*
 * redcap/internal.h — helpers shared by the redcap/ sources; not part of
 * the module's interface.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "redcap/redcap.h"

/* A growable NUL-terminated string. On ENOMEM the buffer is freed and err
 * set; later appends do nothing (check err once at the end). */
typedef struct rc_str {
	char *s;
	size_t len, cap;
	int err;
} rc_str;

#define RC_STR_NULL { 0 }

void rc_str_addn(rc_str *b, const char *s, size_t n);
void rc_str_add(rc_str *b, const char *s);
void rc_str_addc(rc_str *b, char c);
__attribute__((format(printf, 2, 3))) void rc_str_addf(rc_str *b, const char *fmt, ...);
__attribute__((format(printf, 2, 0))) void rc_str_vaddf(rc_str *b, const char *fmt, va_list ap);
/* Hand over the string ("" if nothing was added); NULL on ENOMEM. */
char *rc_str_take(rc_str *b);
void rc_str_free(rc_str *b);

char *rc_strndup(const char *s, size_t n);
static inline char *rc_strdup(const char *s)
{
	return rc_strndup(s, __builtin_strlen(s));
}

/* PHP trim() set: space, \t, \n, \r, \0, \x0B. Sets *start and *len. */
void rc_trim(const char *s, size_t n, size_t *start, size_t *len);

/* Code points in valid-or-not UTF-8 (counts lead bytes). */
size_t rc_utf8_len(const char *s, size_t n);

/* snprintf into err->msg (err may be NULL). */
__attribute__((format(printf, 2, 3))) void rc_err(redcap_error *err, const char *fmt, ...);

/* Fill err from a Jansson error (line/column/position). */
void rc_err_json(redcap_error *err, const json_error_t *je, const char *what);

/* Parse buf as JSON (no duplicate keys; no NUL in strings). NULL with
 * REDCAP_E_JSON in *rc and err filled. */
json_t *rc_json_load(const char *buf, size_t len, redcap_error *err, int *rc);

/* Text of a scalar JSON value: string as is, integer with %lld, real with
 * Jansson's shortest representation, null as "", true/false as "1"/"0"
 * when bools is set. Returns malloc'd, NULL on ENOMEM, or sets *bad for
 * other types (objects, arrays, booleans when !bools) and returns NULL. */
char *rc_json_text(const json_t *v, bool bools, bool *bad);

/* ASCII lower-case compare. */
int rc_strcasecmp(const char *a, const char *b);

/* ------------------------------------------------------------------------
 * RFC 4180 CSV reader (csv.c).
 */
typedef struct rc_csv_cell {
	size_t off, len;       /* text in rc_csv_row.text (unescaped, NUL-terminated) */
	unsigned line, column; /* where the cell starts */
} rc_csv_cell;

typedef struct rc_csv_row {
	char *text;
	size_t text_len, text_cap;
	rc_csv_cell *cells;
	size_t n, cap;
	unsigned line;         /* line the row starts on */
} rc_csv_row;

typedef struct rc_csv {
	const char *buf;
	size_t len, pos;
	char delim;
	unsigned line;         /* current line, 1-based */
	size_t line_start;     /* offset of the current line */
} rc_csv;

/* Start reading buf; a UTF-8 BOM is skipped. delim 0: detect ',' ';' or
 * '\t' as the first of them on the first line (outside quotes). */
void rc_csv_init(rc_csv *c, const char *buf, size_t len, char delim);

/* Read the next row into row (cells replaced). Returns 1 if a row was read,
 * 0 at end of input, REDCAP_E_CSV (err has line:column), REDCAP_E_TOO_LARGE
 * (a row over 16 MiB or 100000 cells), -ENOMEM. */
int rc_csv_next(rc_csv *c, rc_csv_row *row, redcap_error *err);

static inline const char *rc_csv_text(const rc_csv_row *r, size_t i)
{
	return r->text + r->cells[i].off;
}

void rc_csv_row_free(rc_csv_row *row);

/* ------------------------------------------------------------------------
 * Validation types checked with a POSIX extended regular expression
 * (validate.c); the dictionary keeps them compiled (dictionary.c).
 */
#include <regex.h>

#include "redcap/dictionary.h"

/* The ERE for t and its regcomp flags; NULL if t is checked in C. */
const char *rc_vtype_regex(redcap_vtype t, int *flags);

/* The compiled ERE for t in d's index, NULL if none (not a regex type, or
 * not used by any field). */
const regex_t *rc_dict_regex(const redcap_dict *d, redcap_vtype t);

/* export.c: JSON answers take the one-pass path when they can (tests turn
 * it off to compare with the Jansson path). */
extern bool rc_export_json_fast;
extern unsigned long rc_export_json_fast_used; /* answers it decided */
