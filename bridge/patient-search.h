/*
 * bridge/patient-search.h — the tokens of the downtime patient search.
 *
 * During an EHR downtime a clinician finds a cached patient by MRN, name or
 * birth date in one search box. The store must not hold those in clear: it
 * keeps a keyed hash of each token of each Patient and hashes a query's
 * tokens the same way. This module only makes the tokens (sans-IO: Jansson
 * values and strings in, sorted string lists out); hashing and storing them
 * is the caller's.
 *
 * Token forms (a patient's tokens, deduplicated, sorted by strcmp):
 *   name:<word>          every word of every Patient.name[]'s family, given[] and text
 *   birth:YYYY-MM-DD     a full birthDate
 *   birthyear:YYYY       the year of a birthDate (also of a partial one: "YYYY", "YYYY-MM")
 *   mrn:<value>          each identifier whose system is the site's MRN system
 *                        (value trimmed of spaces and tabs, case kept)
 *   id:<id>              the Patient's logical id
 *
 * Name words (the same rules for patients and queries, so they meet):
 *   - Letters of Latin-1 Supplement and Latin Extended-A lose their
 *     diacritics and ligatures are spelled out, as an NFKD fold would (é->e,
 *     ñ->n, ł->l, ø->o, đ->d, ß->ss, æ->ae, œ->oe, þ->th, ĳ->ij); combining
 *     marks U+0300..U+036F are dropped, so decomposed input folds the same.
 *   - Lower case: ASCII, those Latin ranges, Greek (U+0370..U+03FF: also
 *     without tonos and dialytika, final ς as σ) and basic Cyrillic
 *     (U+0400..U+045F; ё as е). Other scripts are kept as they are (UTF-8,
 *     no case folding): "张无忌" stays one word.
 *   - Words split at any ASCII character other than a letter or a digit
 *     (spaces, hyphens, apostrophes, commas, dots, '_', ...), at C1
 *     controls and the Latin-1 symbols U+0080..U+00BF (NBSP, ´, ·), at × and
 *     ÷, at modifier apostrophes U+02B9..U+02FF, at U+2000..U+206F (Unicode
 *     spaces, dashes, quotes) and at U+3000..U+3002 and U+FEFF. Empty words
 *     are dropped.
 *   - A patient's words with ä, ö or ü (either case) are indexed twice: once
 *     folded (müller -> "muller") and once in the German transliteration
 *     ("mueller"), so either spelling typed in a query finds the patient. A
 *     query word is folded one way only.
 *   Words are matched whole: "chal" does not find "chalmers" (the store
 *   compares hashes).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* A query the caller cannot use (patient_query_parse); err says why, without
 * repeating what was typed. */
enum {
	PATIENT_SEARCH_E_QUERY = 1,
};

/* Longest query accepted, in bytes. */
#define PATIENT_QUERY_MAX 512

/*
 * The index tokens of a Patient (forms above). mrn_system NULL: no mrn:
 * tokens. Fields of the wrong type are skipped. *tokens (malloc'd, each
 * token malloc'd; free with patient_tokens_free) and *n; a Patient with
 * nothing to index gives *tokens NULL and *n 0.
 * Returns 0, -EINVAL (patient not an object, or its resourceType is not
 * "Patient"; a NULL out pointer) or -ENOMEM; on error *tokens is NULL and
 * *n 0.
 */
int patient_index_tokens(const json_t *patient, const char *mrn_system, char ***tokens, size_t *n);

/* Free a token list (NULL is fine). */
void patient_tokens_free(char **tokens, size_t n);

/*
 * What a clinician typed, parsed. Its words (separated by white space,
 * commas or semicolons) are read as:
 *   mrn:<x> (also "mrn: <x>", any case of "mrn")  the token mrn:<x> and mrn_candidate x
 *   id:<x>                                        the token id:<x>
 *   YYYY-MM-DD or DD.MM.YYYY (D and M may be one digit)   birth:YYYY-MM-DD
 *   YYYY (four digits alone)                      birthyear:YYYY (an MRN of four digits
 *                                                 is searched as "mrn:1234")
 *   any other word with a digit                   mrn_candidate (as typed, not a token)
 *   anything else                                 name:<word> for each folded word
 * A date that does not exist (1974-02-30), a slashed date (12/25/1974: the
 * order of day and month is ambiguous), two different MRNs, an empty query,
 * a query longer than PATIENT_QUERY_MAX, invalid UTF-8 and a query without
 * a single usable word are PATIENT_SEARCH_E_QUERY.
 *
 * Matching (patient_query_matches): a patient matches when every token is
 * among its index tokens and, when mrn_candidate is set, it has the token
 * mrn:<mrn_candidate> or id:<mrn_candidate>. So the caller looks up the
 * MRN first (when there is one) and filters by the other tokens, or looks up
 * by the tokens alone.
 */
typedef struct patient_query {
	char **tokens;        /* sorted, deduplicated; may be empty when mrn_candidate is set */
	size_t n;
	char *mrn_candidate;  /* an MRN (or logical id) to look up first, or NULL */
} patient_query;

#define PATIENT_QUERY_NULL ((patient_query){ .tokens = NULL, .n = 0, .mrn_candidate = NULL })

/*
 * Parse query into *q (which must be PATIENT_QUERY_NULL or deinit'ed).
 * Returns 0; PATIENT_SEARCH_E_QUERY with a message in err (no PHI);
 * -EINVAL for NULL arguments or -ENOMEM. On error *q is left empty.
 */
int patient_query_parse(const char *query, patient_query *q, char *err, size_t err_size);

/* Free what q holds and reset it to PATIENT_QUERY_NULL; idempotent. */
void patient_query_deinit(patient_query *q);

/*
 * Whether a patient with the index tokens `tokens` (sorted by strcmp, as
 * patient_index_tokens returns them) matches q (rules above). A query with
 * neither tokens nor a candidate matches nothing.
 */
bool patient_query_matches(const patient_query *q, char *const *tokens, size_t n);
