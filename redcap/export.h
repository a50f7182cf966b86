/*
 * redcap/export.h — the sans-IO parts of a batched record export (REDCapR's
 * plan): read the list of record ids, cut it into batches that shrink when
 * REDCap runs out of memory, check that each batch brought back exactly the
 * records asked for, and assemble the batch answers into one output that is
 * byte for byte what a single export of every record would have been.
 *
 * The export command (bridge/) owns the requests, the files and the
 * checkpoints; everything here takes bytes and returns values. The plan and
 * the writer are restorable from a few integers so the command can resume
 * after a crash (see redcap_export_plan_restore() and
 * redcap_export_writer_restore()).
 *
 * Record ids. REDCap trims record names and compares them
 * case-insensitively; so do the id lists here: two ids are the same record
 * when they are equal after PHP-trimming (space, \t, \n, \r, \0, \x0B) and
 * ASCII case folding. Non-ASCII letters are compared as bytes (MySQL's
 * collations fold more; REDCap never answers two spellings of one record,
 * so this only matters for ids a user typed).
 *
 * The id column. Every parser here finds the record id by name: the JSON
 * member id_field, or the CSV column whose header cell is id_field (export
 * with rawOrLabelHeaders=raw). id_field NULL means "the first column / the
 * first member", which is where REDCap always puts the record id in a flat
 * export (for CSV with label headers). A named id_field missing from an
 * answer is REDCAP_E_SHAPE.
 *
 * CSV answers are read with REDCap's delimiter ',' (the command does not
 * send csvDelimiter); a UTF-8 BOM is kept as part of the header line.
 *
 * PHI: record ids and every byte of the answers are patient data. Error
 * messages name fields, line numbers and counts, never an id or a value
 * (Jansson's error text, which may quote input, is not used). Buffers this
 * module frees that held answer bytes are wiped first.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redcap/redcap.h"

/* ------------------------------------------------------------------------
 * Record ids.
 */

/*
 * The answer of a record export asked for the record-id field only
 * (fields[0]=<id field>, any filters), in fmt: a JSON array of objects, or
 * CSV with a header row. Longitudinal and repeating projects answer several
 * rows per record (one per event / instance, with redcap_event_name,
 * redcap_repeat_* columns); ids holds each record once, in the order first
 * seen, spelled as first seen. Values may be JSON strings or integers.
 * ids is reset first and left empty on failure.
 * Returns 0; REDCAP_E_JSON or REDCAP_E_CSV (syntax; err has the place),
 * REDCAP_E_SHAPE (not an array of objects, id_field missing, an empty id,
 * a CSV row whose cell count differs from the header's; err says which
 * row), -ENOMEM, -EINVAL (ids NULL).
 */
int redcap_parse_record_ids(const char *buf, size_t len, redcap_format fmt, const char *id_field, redcap_strv *ids,
			    redcap_error *err);

/*
 * Check the answer to one batch (a record export with records[] = ids[0..n)):
 * every id asked for came back and no other did. missing receives the ids
 * asked for that are absent (in request order, as passed), unexpected the
 * ids returned that were not asked for (first-seen order, as returned,
 * each once); both are reset first. An empty answer ("", "[]", a CSV header
 * alone) returns nothing: every id is missing.
 * Returns 0 when the answer could be read — the batch is complete exactly
 * when missing->n == 0 and unexpected->n == 0 —, or the errors of
 * redcap_parse_record_ids() (missing and unexpected empty then); -EINVAL
 * for NULL lists or a NULL id.
 */
int redcap_export_check_batch(redcap_format fmt, const char *buf, size_t len, const char *id_field,
			      const char *const *ids, size_t n, redcap_strv *missing, redcap_strv *unexpected,
			      redcap_error *err);

/* ------------------------------------------------------------------------
 * The batch plan: which ids go in the next request.
 *
 * Ranges are contiguous, in id order. Normally a range is batch_size ids,
 * on a grid: the k-th normal range is [k * batch_size, (k + 1) *
 * batch_size), the last one shorter. When REDCap runs out of memory on a
 * range (REDCAP_SPLIT), redcap_export_plan_split() halves the size: the
 * first half comes next, then the second half, and at the next grid line the
 * normal size resumes. Splitting again inside a split halves again, and that
 * size goes on to the grid line (the ranges after the one that failed are
 * not made bigger again before it). Every id is in exactly one range that
 * the caller marks done.
 *
 * The whole state is (next, chunk): a checkpoint stores those two integers
 * and redcap_export_plan_restore() continues exactly where it stopped, in
 * the middle of a split too.
 */

typedef struct redcap_export_plan {
	size_t n_ids;       /* ids in the export */
	size_t batch_size;  /* normal range size (>= 1) */
	size_t next;        /* index of the first id not yet done: the progress */
	size_t chunk;       /* range size now: batch_size, less after a split (>= 1) */
} redcap_export_plan;

#define REDCAP_EXPORT_BATCH_DEFAULT 100

/* Start a plan over n_ids ids (0 is fine: nothing to do) in ranges of
 * batch_size (0: REDCAP_EXPORT_BATCH_DEFAULT). Returns 0, -EINVAL (p NULL). */
int redcap_export_plan_init(redcap_export_plan *p, size_t n_ids, size_t batch_size);

/*
 * The range to request now: ids [*start, *start + *count). Asking again
 * without done() or split() gives the same range (a retry after a network
 * error or a 5xx). Returns true with count >= 1, or false when every id is
 * done (start = n_ids, count 0).
 */
bool redcap_export_plan_next(const redcap_export_plan *p, size_t *start, size_t *count);

/*
 * The current range ran REDCap out of memory: halve it (the first half,
 * rounded up, is next). Returns 0, or REDCAP_E_TOO_LARGE when the range is
 * a single id (one record REDCap cannot export: the caller reports it; the
 * plan is unchanged), -EINVAL when every id is done.
 */
int redcap_export_plan_split(redcap_export_plan *p);

/* The current range was written: move past it (back to batch_size at a grid
 * line). No-op when every id is done. */
void redcap_export_plan_done(redcap_export_plan *p);

/* Every id done? */
bool redcap_export_plan_finished(const redcap_export_plan *p);

/*
 * A plan from a checkpoint: n_ids and batch_size as given to init, next and
 * chunk as read from a plan (p->next, p->chunk) after its last done().
 * Returns 0, or REDCAP_E_ARG when they do not fit (next > n_ids, chunk 0 or
 * above batch_size); p is then unchanged. -EINVAL for p NULL.
 */
int redcap_export_plan_restore(redcap_export_plan *p, size_t n_ids, size_t batch_size, uint64_t next,
			       uint64_t chunk);

/* ------------------------------------------------------------------------
 * Output buffer: what the writer hands over for the caller to write out.
 */

typedef struct redcap_buf {
	char *p;            /* NUL-terminated when non-NULL (the NUL is not counted) */
	size_t len, cap;
} redcap_buf;

#define REDCAP_BUF_NULL { 0 }

/* Wipe the bytes, len = 0; the memory is kept for the next batch. */
void redcap_buf_clear(redcap_buf *b);

/* Wipe and free; b is empty and usable again. Idempotent. */
void redcap_buf_deinit(redcap_buf *b);

/* ------------------------------------------------------------------------
 * The output writer.
 *
 * Feed it REDCap's answer to each batch, in plan order; it appends to a
 * caller's redcap_buf the bytes to add to the output file. The caller
 * writes them, then may checkpoint redcap_export_writer_save() (its .bytes
 * is the file length at that point) with the plan.
 *
 *   CSV (answers requested with format=csv): the first header line seen is
 *     written; every later answer must start with the identical header line
 *     (bytes, BOM included, line end excluded), else REDCAP_E_SHAPE; then
 *     each answer's rows are appended byte for byte. An empty answer or a
 *     header alone adds nothing. Rows must have as many cells as the header
 *     (a cut answer is REDCAP_E_SHAPE); blank lines are kept but not
 *     counted. Rows end as REDCap ends them ("\n"); only an answer whose
 *     last line (or a header) has no line end at all gets the header's
 *     line end added, so that the next batch cannot run into it.
 *     An export with no header seen at all (no batches, or only empty
 *     answers) is empty: 0 bytes.
 *   JSON (format=json): "[", then each answer's elements as REDCap wrote
 *     them — the answer minus its outer brackets and the JSON white space
 *     around them —, joined by ",", then "]" at finish; "[]" when empty.
 *     The answer must be a JSON array of objects (parsed with Jansson,
 *     duplicate keys refused: REDCAP_E_JSON / REDCAP_E_SHAPE).
 *   NDJSON (format=json): each object of each answer on its own line,
 *     compact, keys in REDCap's order, "\n" after each; empty when empty.
 *     Strings are written in UTF-8 ("\/" becomes "/").
 *
 * A failing call appends nothing and leaves the writer as it was, so the
 * batch can be retried or the export stopped with a consistent file.
 */

typedef enum redcap_out_format {
	REDCAP_OUT_CSV = 0,
	REDCAP_OUT_JSON = 1,
	REDCAP_OUT_NDJSON = 2,
} redcap_out_format;

/* "csv", "json", "ndjson"; NULL if out of range. */
const char *redcap_out_format_name(redcap_out_format f);

/* The format to request from REDCap for an output format: CSV for CSV,
 * JSON for JSON and NDJSON. */
redcap_format redcap_out_answer_format(redcap_out_format f);

typedef struct redcap_export_writer {
	redcap_out_format fmt;
	char *id_field;        /* copy, NULL: first column / member */
	uint64_t bytes;        /* bytes handed out so far (the output file's length) */
	uint64_t rows;         /* rows (CSV lines, JSON objects) written */
	uint64_t records;      /* records written: distinct ids per answer, summed (the
				  batches hold disjoint records) */
	bool finished;
	/* CSV: the header line as written (line end included), and its shape. */
	char *header;
	size_t header_len;     /* 0 until the first header */
	size_t header_body;    /* header bytes without the line end */
	size_t header_cells;
	size_t id_col;
	char eol[3];           /* the header's line end: "\n", "\r\n" or "\r" */
} redcap_export_writer;

#define REDCAP_EXPORT_WRITER_NULL { .fmt = REDCAP_OUT_CSV }

/* Start a writer for fmt; id_field (copied; NULL: the first column) is the
 * record id used to count records. Returns 0, -EINVAL (fmt out of range),
 * -ENOMEM. */
int redcap_export_writer_init(redcap_export_writer *w, redcap_out_format fmt, const char *id_field);

/*
 * One batch answer (buf, len) in REDCap's format for w's output format (see
 * redcap_out_answer_format()). Appends the output bytes to out (which is not
 * cleared: clear it after writing it out). Returns 0; REDCAP_E_CSV,
 * REDCAP_E_JSON (err has the place), REDCAP_E_SHAPE (header mismatch, cell
 * count, not an array of objects, id missing; err says which), -ENOMEM;
 * -EINVAL after finish. On failure nothing is appended, w is unchanged.
 */
int redcap_export_writer_batch(redcap_export_writer *w, const char *buf, size_t len, redcap_buf *out,
			       redcap_error *err);

/* The end of the output: "]" for JSON ("[]" if nothing came), nothing for
 * CSV and NDJSON. Further calls are -EINVAL. Returns 0, -ENOMEM. */
int redcap_export_writer_finish(redcap_export_writer *w, redcap_buf *out);

/* Free the copies; w is reset to REDCAP_EXPORT_WRITER_NULL. Idempotent. */
void redcap_export_writer_deinit(redcap_export_writer *w);

/*
 * The writer's state for a checkpoint: four integers. The CSV header is
 * not in it: it is the first header_len bytes of the output file itself.
 */
typedef struct redcap_export_writer_state {
	uint64_t bytes;        /* output length: truncate the file to it on resume */
	uint64_t rows;
	uint64_t records;
	uint64_t header_len;   /* CSV: the header line at the start of the output; 0 before it */
} redcap_export_writer_state;

void redcap_export_writer_save(const redcap_export_writer *w, redcap_export_writer_state *st);

/*
 * A writer (reset first) in the state st, for fmt and id_field as at init.
 * For CSV with st->header_len > 0, head must hold at least the first
 * header_len bytes of the output (the file's start): they must be one CSV
 * header line ending exactly there. Returns 0; REDCAP_E_ARG when st does
 * not fit fmt or head (err says why; w is then empty), -ENOMEM, -EINVAL.
 */
int redcap_export_writer_restore(redcap_export_writer *w, redcap_out_format fmt, const char *id_field,
				 const redcap_export_writer_state *st, const char *head, size_t head_len,
				 redcap_error *err);
