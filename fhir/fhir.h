/*
 * fhir/ — sans-IO FHIR R4 helpers: search URLs, Bundle pages, next links,
 * OperationOutcome, Retry-After. Takes bytes, returns values; no sockets,
 * no event loop, no store.
 *
 * Return convention (dbus-broker style): 0 ok, negative errno on resource
 * failure (-ENOMEM), positive FHIR_E_* for bad input the caller must handle.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum {
	FHIR_E_JSON = 1,      /* not valid JSON (err has the position) */
	FHIR_E_NOT_BUNDLE,    /* valid JSON but not a Bundle (e.g. an OperationOutcome) */
	FHIR_E_SHAPE,         /* a Bundle whose structure is wrong (entry not an array, ...) */
	FHIR_E_TOO_LARGE,     /* over a hard limit */
};

/* Where and why parsing failed. offset is a byte offset into the input;
 * line and column are 1-based (column counts bytes). */
typedef struct fhir_error {
	size_t offset;
	unsigned line, column;
	char msg[256];
} fhir_error;

/* FHIR ids are at most 64 chars ([A-Za-z0-9-.]{1,64}); versionIds likewise
 * in practice; we allow a little more and reject longer ones as shape errors. */
#define FHIR_ID_MAX 128
#define FHIR_TYPE_MAX 64
#define FHIR_INSTANT_MAX 48

/* One resource of a Bundle page. body points into the page buffer: the
 * exact bytes of entry[i].resource, as the server sent them. */
typedef struct fhir_entry {
	const char *body;
	size_t body_len;
	char type[FHIR_TYPE_MAX];             /* resourceType */
	char id[FHIR_ID_MAX];                 /* "" if the resource has no id */
	char version_id[FHIR_ID_MAX];         /* meta.versionId or "" */
	char last_updated[FHIR_INSTANT_MAX];  /* meta.lastUpdated or "" */
	/* The patient the resource belongs to: for a Patient its own id; else
	 * the id part of subject / patient / beneficiary reference when it
	 * points at a Patient ("Patient/123" -> "123"); "" if none. */
	char patient[FHIR_ID_MAX];
	/* entry.search.mode: 0 match (or absent), 1 include, 2 outcome */
	int search_mode;
} fhir_entry;

typedef struct fhir_page {
	char *next;            /* Bundle.link[relation=next].url, malloc'd, or NULL */
	char *bundle_type;     /* Bundle.type, malloc'd, or NULL */
	int64_t total;         /* Bundle.total or -1 */
	fhir_entry *entries;
	size_t n_entries;
	size_t cap_entries;
} fhir_page;

#define FHIR_PAGE_NULL { .total = -1 }

/* Pages larger than this are refused with FHIR_E_TOO_LARGE. */
#define FHIR_PAGE_MAX_BYTES ((size_t)1 << 30)

/*
 * Parse one search-result Bundle page. buf must stay alive while the page's
 * entries are used (bodies point into it). The whole input is validated as
 * strict JSON (RFC 8259); on failure returns FHIR_E_* and fills err (when
 * non-NULL) with the position. On FHIR_E_NOT_BUNDLE err->msg names the
 * resourceType found (and the OperationOutcome diagnostics when it is one).
 * The page is reset first; call fhir_page_deinit() when done.
 *
 * Details: nesting deeper than 512 levels gives FHIR_E_TOO_LARGE. Entries
 * without a resource (possible outside search results) are dropped. Each
 * entry's fields come from the resource's own top-level members only, never
 * from contained resources; type, id, version_id and last_updated longer
 * than their field, or holding control characters, are FHIR_E_SHAPE (never
 * truncated). On failure the page is left empty.
 */
int fhir_page_parse(fhir_page *pg, const char *buf, size_t len, fhir_error *err);
void fhir_page_deinit(fhir_page *pg);

/*
 * Validate strict JSON (the whole buffer must be one JSON value plus
 * optional white space). Returns 0 or FHIR_E_JSON with err filled.
 */
int fhir_json_validate(const char *buf, size_t len, fhir_error *err);

/*
 * Summarise an OperationOutcome body into out ("error: diagnostics; ..."),
 * severity + code + diagnostics/details.text of each issue. Returns 0 if the
 * body was an OperationOutcome, FHIR_E_NOT_BUNDLE-like positive code if not
 * (out then holds a short excerpt of the body, sanitised to printable ASCII).
 * Precisely: "severity: code: text" per issue joined by "; ", control
 * characters turned into spaces, cut at a UTF-8 character boundary;
 * FHIR_E_JSON if the body is not JSON, FHIR_E_NOT_BUNDLE if it is other
 * JSON (excerpt: at most 120 bytes). out is always NUL-terminated.
 */
int fhir_outcome_summary(const char *buf, size_t len, char *out, size_t out_size);

/*
 * The first search URL for a type:
 *   <base>/<type>?_count=<count>&_sort=_lastUpdated[&_lastUpdated=ge<since>]
 * since may be NULL (full crawl). Characters outside the unreserved set in
 * since (notably '+' and ':') are percent-encoded. Returns a malloc'd string
 * or NULL on ENOMEM. base may end in '/' or not.
 */
char *fhir_search_url(const char *base, const char *type, unsigned count, const char *since);

/* The same, with _sort=_lastUpdated only when sort_by_updated (for servers
 * that refuse that sort on some types). */
char *fhir_search_url_ex(const char *base, const char *type, unsigned count, const char *since,
			 bool sort_by_updated);

/*
 * Resolve a next link against the base URL: an absolute link (has a scheme)
 * is returned as is; "/path?..." replaces the path of base's origin; a
 * relative "Type?..." or "?..." is resolved against base (RFC 3986 merge).
 * The link is otherwise opaque: never parsed or re-encoded. Returns
 * malloc'd or NULL.
 */
char *fhir_resolve_url(const char *base, const char *link);

/*
 * Parse an HTTP Retry-After value: delta-seconds, or an HTTP-date (IMF
 * fixdate, RFC 850, asctime) relative to now. Returns 0 and *seconds (>= 0,
 * a past date gives 0) or FHIR_E_SHAPE if unparseable.
 */
int fhir_retry_after(const char *value, time_t now, long *seconds);

/* Format t (UTC) as a FHIR instant with milliseconds: 2026-11-29T05:01:02.123Z */
void fhir_format_instant(int64_t unix_ms, char out[FHIR_INSTANT_MAX]);

/* Parse a FHIR instant/dateTime with offset into unix ms. A date without
 * time or offset is read as UTC midnight. Returns 0 or FHIR_E_SHAPE. */
int fhir_parse_instant(const char *s, int64_t *unix_ms);
