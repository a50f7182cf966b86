/*
 * jsonstrict: what the strict JSON loaders (the config file, the mapping
 * files) share: read the file, parse it, walk it with a key path, and name
 * the first problem as "file:line:col: key.path: what is wrong".
 *
 * The contract:
 * - The file is read into memory once (jsonstrict_read) and Jansson parses
 *   that text with JSON_REJECT_DUPLICATES (jsonstrict_parse). Jansson keeps
 *   no positions, so an error is placed by jsonloc scanning the same text
 *   along the path the loader keeps in the context: it pushes a key or an
 *   index before it looks into a member and pops it when done. On failure
 *   it returns at once without unwinding: a context serves one load.
 * - Validation is strict: an unknown key is an error (jsonstrict_check_keys)
 *   and so is a value of the wrong kind; the first problem ends the load.
 * - The fail helpers write the message into the caller's err buffer and
 *   return the loader's own error code (jsonstrict.fail_code), so that a
 *   loader can write "return jsonstrict_fail_key(x, ...)".
 * - Messages may quote document values through jsonstrict_show, which is
 *   for values that are neither secrets nor PHI (names, enum words).
 *
 * A loader declares its context with the file, err and fail_code set and
 * the rest zero, then calls jsonstrict_read, jsonstrict_parse, and its own
 * validation built on the getters below; jsonstrict_deinit at the end.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include <jansson.h>

#include "bridge/jsonloc.h"

/* Deeper than any document the loaders accept; a deeper push is a bug. */
#define JSONSTRICT_DEPTH 12

/* jsonstrict_read: the file cannot be used (missing, not regular, too large, unreadable). */
#define JSONSTRICT_E_FILE 1

typedef struct jsonstrict {
	const char *file;        /* the path as given, for messages */
	char *err;               /* the caller's message buffer (may be NULL) */
	size_t err_size;
	int fail_code;           /* what the jsonstrict_fail_* helpers return */

	const char *text;        /* set by jsonstrict_read */
	size_t len;
	char *dir;               /* directory part of file ("" when none); relative paths start here */

	jsonloc_step path[JSONSTRICT_DEPTH];
	size_t depth;
} jsonstrict;

/* printf into err (of err_size bytes); nothing when err is NULL. */
void jsonstrict_errf(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Open path for reading; anything but a regular file is refused (a FIFO
 * does not block the open). *st is its fstat. Returns the descriptor, or -1
 * with "path: what" in err. Also for the secret files beside the documents.
 */
int jsonstrict_file_open(const char *path, struct stat *st, char *err, size_t err_size);

/* Read fd into buf until end of file or cap bytes; *n how many. 0, or -1 with "path: cannot read: ..." in err. */
int jsonstrict_file_read(int fd, const char *path, char *buf, size_t cap, size_t *n, char *err, size_t err_size);

/*
 * Read x->file (a regular file of at most max bytes) into *text, malloc'd
 * and NUL-terminated; the caller frees it, also after a failure. x->text,
 * x->len and x->dir are set. A file that grows while it is read is refused.
 * Returns 0, JSONSTRICT_E_FILE or -ENOMEM, with "file: what" in x->err.
 */
int jsonstrict_read(jsonstrict *x, size_t max, char **text);

/*
 * Parse x->text into *root, which must be an object: a new reference the
 * caller drops, also after a failure (it may be NULL). Returns 0 or
 * x->fail_code (syntax errors as "file:line:col: what").
 */
int jsonstrict_parse(jsonstrict *x, json_t **root);

/* Free what jsonstrict_read made in x (not the text). */
void jsonstrict_deinit(jsonstrict *x);

/* file resolved against the document's directory unless absolute; malloc'd, NULL on OOM. */
char *jsonstrict_resolve(const jsonstrict *x, const char *file);

/* ---- the key path --------------------------------------------------------- */

void jsonstrict_push_key(jsonstrict *x, const char *key);
void jsonstrict_push_index(jsonstrict *x, size_t i);
void jsonstrict_pop(jsonstrict *x);

/* The name (or, with value, the value) position of x->path[0..n); NULL when not found. */
const jsonloc_pos *jsonstrict_locate(const jsonstrict *x, size_t n, bool value, jsonloc_pos *buf);

/* ---- errors (each returns x->fail_code) ------------------------------------- */

/* "file:L:C: path: message" for the current node, placed at *at (NULL: no position). */
int jsonstrict_fail_at(jsonstrict *x, const jsonloc_pos *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* About the current node, at its name. */
int jsonstrict_fail_here(jsonstrict *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* About member key of the current object, at the key. */
int jsonstrict_fail_key(jsonstrict *x, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A required member key that is not there: at the '{' of the current object. */
int jsonstrict_fail_missing(jsonstrict *x, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* "an object", "a string", "true" ...: the kind of v for "expected X, got Y". */
const char *jsonstrict_kind(const json_t *v);

/*
 * s quoted for a message: quotes, backslashes and control characters
 * escaped, cut with "..." (never inside a UTF-8 sequence) to fit out.
 * Only for values that are neither secrets nor PHI. Returns out.
 */
const char *jsonstrict_show(const char *s, char *out, size_t size);

/* ---- object shape and typed members ------------------------------------------ */

bool jsonstrict_has_control(const char *s, size_t n);

/* names (NULL-terminated) joined with ", " into out, cut at a whole name. */
void jsonstrict_names_join(const char *const *names, char *out, size_t size);

/*
 * Every member of obj must be one of allowed: "unknown key (allowed: ...)".
 * other, when set, lists keys that exist but not in this variant of the
 * object; those are refused with other_why as the whole message.
 */
int jsonstrict_check_keys(jsonstrict *x, const json_t *obj, const char *const *allowed, const char *const *other,
			  const char *other_why);

/* The member key as an object (borrowed; NULL when absent and !required). */
int jsonstrict_get_object(jsonstrict *x, const json_t *parent, const char *key, bool required, json_t **out);

/*
 * The member key as a non-empty string without control characters
 * (borrowed; NULL when absent and !required); what names the expected
 * value in messages ("a file path (a string)").
 */
int jsonstrict_get_str(jsonstrict *x, const json_t *parent, const char *key, bool required, const char *what,
		       const char **out);

/* The member key as one of words (NULL-terminated): *index its index, -1 when absent and !required. */
int jsonstrict_get_word(jsonstrict *x, const json_t *parent, const char *key, bool required,
			const char *const *words, int *index);

/* The member key as an integer from min to max; def when absent. */
int jsonstrict_get_uint(jsonstrict *x, const json_t *parent, const char *key, unsigned min, unsigned max, unsigned def,
			unsigned *out);
