/*
 * jsonloc: find where a node of a JSON document sits in its text.
 *
 * Jansson keeps no source positions in its DOM, so a loader that validates a
 * parsed document (config, REDCap mapping files) names the place of an error
 * by scanning the same text again along the node's path. The scan is
 * iterative (no recursion, whatever the nesting), bounds-checked, and never
 * reads past len; the text need not be NUL-terminated.
 *
 * Positions are 1-based. Lines are counted by '\n'; columns count Unicode
 * characters (UTF-8 continuation bytes do not advance the column, a tab is
 * one column), which is how Jansson counts its error positions.
 *
 * A path is an array of steps: JSONLOC_KEY("fhir") selects an object member,
 * JSONLOC_INDEX(2) an array element:
 *
 *     jsonloc_step p[] = { JSONLOC_KEY("fhir"), JSONLOC_KEY("resources"), JSONLOC_INDEX(2) };
 *     jsonloc_pos at;
 *     if (jsonloc_find(text, len, p, 3, &at, NULL) == 0)
 *             printf("%lu:%lu\n", at.line, at.column);
 */
#pragma once

#include <stddef.h>

typedef struct jsonloc_step {
	const char *key;   /* object member name (UTF-8, NUL-terminated), or NULL: array index */
	size_t index;      /* 0-based array index when key == NULL */
} jsonloc_step;

#define JSONLOC_KEY(k) { .key = (k), .index = 0 }
#define JSONLOC_INDEX(i) { .key = NULL, .index = (i) }

typedef struct jsonloc_pos {
	unsigned long line;    /* 1-based */
	unsigned long column;  /* 1-based, in characters */
	size_t offset;         /* 0-based byte offset into the text */
} jsonloc_pos;

enum {
	JSONLOC_E_NOT_FOUND = 1,  /* a key or index on the path is not there, or a step meets the wrong kind of value */
	JSONLOC_E_SYNTAX = 2,     /* the text is not well-formed JSON along the way */
};

/*
 * Locate the node at path (n steps; n == 0 is the root value).
 *
 * *at receives the position of the node's name: the opening quote of the key
 * when the last step is an object member, else (array element, root) the
 * first character of the value. *value (may be NULL) receives the first
 * character of the value itself ('{', '[', '"', digit, '-', t/f/n).
 *
 * When an object holds the same key twice the last one counts, as in
 * Jansson's DOM when duplicates are allowed. Keys in the text are compared
 * after decoding their escapes (\n, \", \u00e9, surrogate pairs ...).
 *
 * Returns 0, JSONLOC_E_NOT_FOUND or JSONLOC_E_SYNTAX; -EINVAL for a NULL
 * text with len > 0 or a NULL path with n > 0. Allocates nothing.
 */
int jsonloc_find(const char *text, size_t len, const jsonloc_step *path, size_t n, jsonloc_pos *at,
		 jsonloc_pos *value);

/*
 * The line/column of a byte offset in text (offset is clamped to len).
 */
jsonloc_pos jsonloc_pos_at(const char *text, size_t len, size_t offset);

/*
 * The path as people read it in error messages: keys made of
 * [A-Za-z0-9_-] are joined with '.', other keys are written ["..."] with
 * JSON escapes (control characters, quotes, backslashes; non-ASCII bytes
 * are kept), indexes as [N]: fhir.resources[2], mapping["a.b"].field.
 * n == 0 gives "(top level)". Keys longer than 64 bytes are shortened with
 * "..." (messages stay one readable line). Returns a malloc'd string the
 * caller frees, or NULL when out of memory.
 */
char *jsonloc_path_str(const jsonloc_step *path, size_t n);
