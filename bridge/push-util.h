/*
 * push-util — the push's small pure parts: record names as REDCap matches
 * them, log lines without PHI, which refusals a row itself causes. No I/O,
 * no store; unit-tested in test-push-util.c.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * A set of record names as REDCap matches them: trimmed of whitespace
 * (PHP trim(): space, tab, CR, LF, vertical tab) and compared ASCII
 * case-insensitively, so "ab1", "AB1" and " Ab1" are one name. Keeps a copy
 * of the first spelling added of each, in the order added (v[0..n)).
 */
typedef struct pu_recset {
	char **v;        /* the names, in the order added */
	size_t n, cap;
	size_t *slots;   /* open addressing: index + 1 into v, 0 empty */
	size_t n_slots;  /* a power of two, 0 before the first add */
} pu_recset;

#define PU_RECSET_NULL { 0 }

/* Add name: 1 when it was new, 0 when the set had it, -ENOMEM. */
int pu_recset_add(pu_recset *s, const char *name);

/* Does the set hold name (as REDCap matches names)? */
bool pu_recset_has(const pu_recset *s, const char *name);

/* Free everything; the set is empty and reusable. Idempotent. */
void pu_recset_deinit(pu_recset *s);

/* name as REDCap compares it: trimmed, ASCII letters in lower case. A new
 * string, NULL on ENOMEM. Two names are one record exactly when their
 * folds are equal. */
char *pu_fold(const char *name);

/*
 * message for a log line above debug level: every whole-word occurrence of
 * record becomes "[record]" and of value "[value]" (either may be NULL or
 * ""; record names and values are PHI). A new string, NULL on ENOMEM.
 */
char *pu_scrub(const char *message, const char *record, const char *value);

/*
 * Is message one of REDCap's whole-request refusals that a row itself
 * causes (its record name, its columns, its event or repeat columns)?
 * Sending that row again gets the same answer, so it is held at once. Any
 * other refusal of a single row (a generic 400, a proxy's page, another
 * 4xx) does not say what is wrong with it: it is tried again later before
 * it is held.
 */
bool pu_refusal_is_row_caused(const char *message);
