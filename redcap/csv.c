/*
 * redcap/csv.c — an RFC 4180 reader for data dictionary CSV files.
 *
 * Quoted cells may hold the delimiter, CR, LF and doubled quotes; records
 * end at CRLF, LF or a lone CR (outside quotes). A quote inside an unquoted
 * cell, or anything but a delimiter or line end after a closing quote, is
 * a syntax error reported with its line and byte column, as is a quoted
 * cell still open at the end of the input (reported where it opened).
 */
#include "redcap/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CSV_ROW_MAX_BYTES ((size_t)16 << 20)
#define CSV_ROW_MAX_CELLS 100000

/* Borrow buf; skip a BOM; detect the delimiter unless given. */
void rc_csv_init(rc_csv *c, const char *buf, size_t len, char delim)
{
	*c = (rc_csv){ .buf = buf, .len = buf ? len : 0, .line = 1 };
	if (c->len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		c->pos = c->line_start = 3;
	if (!delim) {
		/* The first of , ; TAB on the first line outside quotes. */
		bool q = false;
		delim = ',';
		for (size_t i = c->pos; i < c->len; i++) {
			char ch = buf[i];
			if (ch == '"')
				q = !q;
			else if (!q && (ch == '\n' || ch == '\r'))
				break;
			else if (!q && (ch == ',' || ch == ';' || ch == '\t')) {
				delim = ch;
				break;
			}
		}
	}
	c->delim = delim;
}

/* Free a row's buffers; row is empty and reusable. */
void rc_csv_row_free(rc_csv_row *row)
{
	free(row->text);
	free(row->cells);
	*row = (rc_csv_row){ 0 };
}

static int text_add(rc_csv_row *r, const char *s, size_t n)
{
	if (r->text_len + n + 1 > CSV_ROW_MAX_BYTES)
		return REDCAP_E_TOO_LARGE;
	if (r->text_len + n + 1 > r->text_cap) {
		size_t cap = r->text_cap ? r->text_cap : 256;
		while (cap < r->text_len + n + 1)
			cap *= 2;
		char *t = realloc(r->text, cap);
		if (!t)
			return -ENOMEM;
		r->text = t;
		r->text_cap = cap;
	}
	memcpy(r->text + r->text_len, s, n);
	r->text_len += n;
	return 0;
}

static int cell_start(rc_csv_row *r, unsigned line, unsigned column)
{
	if (r->n == CSV_ROW_MAX_CELLS)
		return REDCAP_E_TOO_LARGE;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 32;
		rc_csv_cell *c = realloc(r->cells, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		r->cells = c;
		r->cap = cap;
	}
	r->cells[r->n++] = (rc_csv_cell){ .off = r->text_len, .line = line, .column = column };
	return 0;
}

static int cell_end(rc_csv_row *r)
{
	int rc = text_add(r, "", 1);  /* the NUL */
	if (rc)
		return rc;
	rc_csv_cell *c = &r->cells[r->n - 1];
	c->len = r->text_len - 1 - c->off;
	return 0;
}

static unsigned col_of(const rc_csv *c, size_t pos)
{
	size_t col = pos - c->line_start + 1;
	return col > UINT32_MAX ? UINT32_MAX : (unsigned)col;
}

static int syntax(rc_csv *c, redcap_error *err, unsigned line, unsigned col, size_t pos, const char *what)
{
	if (err) {
		err->line = line;
		err->column = col;
		err->offset = pos;
	}
	rc_err(err, "line %u, column %u: %s", line, col, what);
	return REDCAP_E_CSV;
}

/* Consume a line end at c->pos if there is one. */
static bool eat_eol(rc_csv *c)
{
	if (c->pos >= c->len)
		return false;
	if (c->buf[c->pos] == '\r') {
		c->pos++;
		if (c->pos < c->len && c->buf[c->pos] == '\n')
			c->pos++;
	} else if (c->buf[c->pos] == '\n') {
		c->pos++;
	} else {
		return false;
	}
	c->line++;
	c->line_start = c->pos;
	return true;
}

/*
 * Read one record into row (its cells are replaced). Returns 1, 0 at the
 * end of input, REDCAP_E_CSV, REDCAP_E_TOO_LARGE or -ENOMEM.
 */
int rc_csv_next(rc_csv *c, rc_csv_row *row, redcap_error *err)
{
	int rc;

	row->n = 0;
	row->text_len = 0;
	if (c->pos >= c->len)
		return 0;
	row->line = c->line;
	for (;;) {
		/* One cell starts here. */
		if ((rc = cell_start(row, c->line, col_of(c, c->pos))))
			return rc;
		if (c->pos < c->len && c->buf[c->pos] == '"') {
			unsigned qline = c->line, qcol = col_of(c, c->pos);
			size_t qpos = c->pos;
			c->pos++;
			for (;;) {
				if (c->pos >= c->len)
					return syntax(c, err, qline, qcol, qpos, "quoted cell not closed");
				/* Copy the run up to the next quote or line break. */
				size_t run = c->pos;
				while (run < c->len && c->buf[run] != '"' && c->buf[run] != '\n' &&
				       c->buf[run] != '\r')
					run++;
				if ((rc = text_add(row, c->buf + c->pos, run - c->pos)))
					return rc;
				c->pos = run;
				if (c->pos >= c->len)
					continue;
				char ch = c->buf[c->pos];
				if (ch == '"') {
					if (c->pos + 1 < c->len && c->buf[c->pos + 1] == '"') {
						if ((rc = text_add(row, "\"", 1)))
							return rc;
						c->pos += 2;
						continue;
					}
					c->pos++;  /* closing quote */
					break;
				}
				/* A line break inside the quotes: keep it as written. */
				size_t from = c->pos;
				eat_eol(c);
				if ((rc = text_add(row, c->buf + from, c->pos - from)))
					return rc;
			}
			if ((rc = cell_end(row)))
				return rc;
			if (c->pos < c->len && c->buf[c->pos] != c->delim && c->buf[c->pos] != '\n' &&
			    c->buf[c->pos] != '\r')
				return syntax(c, err, c->line, col_of(c, c->pos), c->pos,
					      "unexpected character after a closing quote");
		} else {
			size_t run = c->pos;
			while (run < c->len && c->buf[run] != c->delim && c->buf[run] != '\n' &&
			       c->buf[run] != '\r') {
				if (c->buf[run] == '"')
					return syntax(c, err, c->line, col_of(c, run), run,
						      "quote inside an unquoted cell");
				run++;
			}
			if ((rc = text_add(row, c->buf + c->pos, run - c->pos)) || (rc = cell_end(row)))
				return rc;
			c->pos = run;
		}
		if (c->pos >= c->len)
			return 1;
		if (c->buf[c->pos] == c->delim) {
			c->pos++;
			continue;
		}
		eat_eol(c);
		return 1;
	}
}
