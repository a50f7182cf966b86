/*
 * redcap/ — sans-IO REDCap API client: the form-encoded bodies of the
 * requests the bridge sends, and the classification and parsing of what
 * REDCap answers. Takes bytes, returns values; no sockets, no event loop,
 * no store. The data dictionary model is in redcap/dictionary.h, value
 * validation before upload in redcap/validate.h.
 *
 * Return convention (dbus-broker style): 0 ok, negative errno on resource
 * failure (-ENOMEM) or a programming error (-EINVAL: NULL where an object is
 * required), positive REDCAP_E_* for input the caller must handle.
 *
 * Secrets and PHI: request bodies hold the API token and record data; they
 * are wiped (OPENSSL_cleanse) when this module frees them. Error messages in
 * redcap_error never contain the token. Answers from REDCap may quote data
 * values (PHI): log redcap_answer_describe() above debug level, never the
 * message itself.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum {
	REDCAP_E_JSON = 1,       /* not valid JSON (err has the position) */
	REDCAP_E_SHAPE,          /* well-formed, but not the structure expected */
	REDCAP_E_TOO_LARGE,      /* over a hard size limit */
	REDCAP_E_ARG,            /* a parameter REDCap would refuse or that cannot be sent */
	REDCAP_E_CSV,            /* CSV syntax error (err has line:column) */
	REDCAP_E_DICT,           /* a data dictionary REDCap would refuse (err names the place) */
	REDCAP_E_INVALID,        /* validation: one or more values rejected (see validate.h) */
	REDCAP_E_UNKNOWN_FIELD,  /* validation: the column is not a real data field */
};

/* Where and why input was refused. offset is a byte offset into the input;
 * line and column are 1-based (column counts bytes), 0 when they do not
 * apply (e.g. JSON answers give the Jansson position). msg never holds the
 * token; it may name fields, forms and events, never data values. */
typedef struct redcap_error {
	size_t offset;
	unsigned line, column;
	char msg[256];
} redcap_error;

/* ------------------------------------------------------------------------
 * Error lists: per-value problems, as REDCap reports them and as the local
 * validator (validate.h) predicts them.
 */

typedef enum redcap_error_kind {
	/* REDCap reports it as one line "record","field","value","message". */
	REDCAP_ERR_VALUE = 0,
	/* REDCap refuses the whole request with this message alone (unknown
	 * fields, record id missing, bad record name, bad repeat instance...). */
	REDCAP_ERR_REQUEST = 1,
} redcap_error_kind;

/* One problem. Strings are malloc'd and never NULL ("" when unknown).
 * value and record are data (PHI): never log them above debug level. */
typedef struct redcap_value_error {
	char *record;
	char *field;
	char *value;
	char *message;
	redcap_error_kind kind;
	size_t row;              /* index of the row in the batch, SIZE_MAX if unknown */
} redcap_value_error;

typedef struct redcap_errors {
	redcap_value_error *v;
	size_t n, cap;
} redcap_errors;

#define REDCAP_ERRORS_NULL { 0 }

/* Append a copy of the four strings (NULL is stored as ""). Returns 0 or
 * -ENOMEM (the list is unchanged then). */
int redcap_errors_add(redcap_errors *l, redcap_error_kind kind, size_t row, const char *record,
		      const char *field, const char *value, const char *message);

/* Free every entry; the list is empty and reusable afterwards. Idempotent. */
void redcap_errors_deinit(redcap_errors *l);

/*
 * REDCap's own rendering of per-value errors: one line per entry,
 * "record","field","value","message" (inner quotes doubled), joined by "\n".
 * Returns a malloc'd string ("" for an empty list) or NULL on ENOMEM.
 */
char *redcap_errors_format(const redcap_errors *l);

/* ------------------------------------------------------------------------
 * Request bodies (application/x-www-form-urlencoded), with a size cap.
 *
 * Names and values are percent-encoded byte by byte: every byte outside the
 * RFC 3986 unreserved set (ALPHA DIGIT - . _ ~) becomes %XX, a space
 * included (%20), so "records[0]" travels as "records%5B0%5D".
 *
 * A failed append (cap exceeded, ENOMEM) wipes and frees the buffer and
 * makes the error sticky: every later append and take fail the same way
 * (curl dynbuf habit), so a half-built body can never be sent.
 */

/* Default cap: REDCap servers commonly run with PHP post_max_size of a few
 * tens of MB; stay well under. */
#define REDCAP_BODY_MAX_DEFAULT ((size_t)16 << 20)

typedef struct redcap_body {
	char *buf;       /* NUL-terminated when non-NULL */
	size_t len, cap;
	size_t max;      /* cap on len (bytes of encoded body) */
	int err;         /* sticky: 0, -ENOMEM or REDCAP_E_TOO_LARGE */
} redcap_body;

#define REDCAP_BODY_NULL { .max = REDCAP_BODY_MAX_DEFAULT }

/* Start an empty body capped at max bytes (0: REDCAP_BODY_MAX_DEFAULT). */
void redcap_body_init(redcap_body *b, size_t max);

/* Append "&name=value" (no '&' before the first pair). value may be "".
 * Returns 0, -ENOMEM or REDCAP_E_TOO_LARGE (sticky, see above). */
int redcap_body_add(redcap_body *b, const char *name, const char *value);
int redcap_body_addn(redcap_body *b, const char *name, const char *value, size_t value_len);

/* Append name[0]=v[0]&name[1]=v[1]... (REDCap's array form). */
int redcap_body_add_list(redcap_body *b, const char *name, const char *const *v, size_t n);

/* Hand the body over: returns the malloc'd, NUL-terminated body (len in
 * *len when non-NULL) and leaves b empty. NULL if the body is in error or
 * empty. Free it with redcap_body_free(). */
char *redcap_body_take(redcap_body *b, size_t *len);

/* Wipe and free the buffer; b is empty and usable again. Idempotent. */
void redcap_body_deinit(redcap_body *b);

/* Wipe and free a body obtained from redcap_body_take(). NULL is fine. */
void redcap_body_free(char *body, size_t len);

/* Bytes that n bytes of s occupy once percent-encoded. */
size_t redcap_urlencoded_len(const char *s, size_t n);

/*
 * A log-safe rendering of an encoded body: the token value becomes "***",
 * the data value "<N bytes>", filterLogic "<N bytes>", every other value
 * is shown decoded, cut at 64 bytes with control characters as '?'.
 * Returns malloc'd or NULL on ENOMEM.
 */
char *redcap_body_redact(const char *body, size_t len);

/* ------------------------------------------------------------------------
 * Requests. Each appends the pairs of one request to b, which should be
 * freshly initialised; extra parameters may be appended afterwards.
 *
 * The token must be 1..256 bytes of visible ASCII (REDCap issues 32 hex
 * characters; super tokens have 64); otherwise REDCAP_E_ARG and nothing is
 * appended. Errors never quote the token.
 */

/* 0 if token is acceptable, REDCAP_E_ARG if not. */
int redcap_token_check(const char *token);

typedef enum redcap_content {
	REDCAP_CONTENT_VERSION,
	REDCAP_CONTENT_PROJECT,
	REDCAP_CONTENT_METADATA,
	REDCAP_CONTENT_INSTRUMENT,
	REDCAP_CONTENT_EVENT,
	REDCAP_CONTENT_ARM,
	REDCAP_CONTENT_FORM_EVENT_MAPPING,
	REDCAP_CONTENT_REPEATING_FORMS_EVENTS,
	REDCAP_CONTENT_EXPORT_FIELD_NAMES,
	REDCAP_CONTENT_GENERATE_NEXT_RECORD_NAME,
} redcap_content;

/* The API name of a content ("formEventMapping"), NULL if out of range. */
const char *redcap_content_name(redcap_content c);

/*
 * One of the simple exports:
 *   token=T&content=C&format=json&returnFormat=json
 * Filters (fields[], forms[], arms[], field) may be appended by the caller.
 * Returns 0, REDCAP_E_ARG (token, content), -ENOMEM, REDCAP_E_TOO_LARGE.
 */
int redcap_request_info(redcap_body *b, const char *token, redcap_content what);

typedef enum redcap_format {
	REDCAP_FORMAT_JSON = 0,
	REDCAP_FORMAT_CSV = 1,
} redcap_format;

/* Record export options; zero-initialised means "all records, raw, json". */
typedef struct redcap_export_opts {
	const char *const *records;  size_t n_records;   /* records[i] */
	const char *const *fields;   size_t n_fields;    /* fields[i] */
	const char *const *forms;    size_t n_forms;     /* forms[i] */
	const char *const *events;   size_t n_events;    /* events[i] */
	bool label_values;          /* rawOrLabel=label (else raw) */
	bool label_headers;         /* rawOrLabelHeaders=label (else raw) */
	bool checkbox_labels;       /* exportCheckboxLabel=true */
	bool data_access_groups;    /* exportDataAccessGroups=true */
	const char *filter_logic;   /* filterLogic, NULL or "" for none */
	const char *date_begin;     /* dateRangeBegin "YYYY-MM-DD HH:MM:SS" or NULL */
	const char *date_end;       /* dateRangeEnd, same form */
	redcap_format format;       /* format=json|csv; returnFormat is always json */
} redcap_export_opts;

/*
 * content=record export (REDCap tells export from import by the absence of
 * data; its own examples send no action):
 *   token, content=record, format, type=flat, records[i],
 *   fields[i], forms[i], events[i], rawOrLabel, rawOrLabelHeaders,
 *   exportCheckboxLabel, exportDataAccessGroups, filterLogic,
 *   dateRangeBegin, dateRangeEnd, returnFormat=json.
 * Date bounds must be real calendar times in exactly the form
 * "YYYY-MM-DD HH:MM:SS" (REDCap's documented form) and begin <= end;
 * names in the lists must be non-empty. Otherwise REDCAP_E_ARG, nothing
 * appended.
 */
int redcap_request_export(redcap_body *b, const char *token, const redcap_export_opts *o);

/* Record import options; zero-initialised means normal / count. */
typedef struct redcap_import_opts {
	bool overwrite;          /* overwriteBehavior=overwrite (blanks erase), else normal */
	bool return_ids;         /* returnContent=ids, else count */
	bool force_auto_number;  /* forceAutoNumber=true */
} redcap_import_opts;

/*
 * content=record import of flat JSON rows:
 *   token, content=record, format=json, type=flat,
 *   overwriteBehavior, forceAutoNumber, dateFormat=YMD, returnContent,
 *   returnFormat=json, data=<json>
 * json must be the text of a JSON array (its first non-blank byte '[');
 * REDCAP_E_ARG otherwise. The data is sent as is.
 */
int redcap_request_import(redcap_body *b, const char *token, const redcap_import_opts *o,
			  const char *json, size_t json_len);

/* The same from a Jansson array of objects (serialised compactly, keys in
 * insertion order). REDCAP_E_ARG if rows is not an array of objects. */
int redcap_request_import_rows(redcap_body *b, const char *token, const redcap_import_opts *o,
			       const json_t *rows);

/* ------------------------------------------------------------------------
 * Answers.
 */

typedef enum redcap_class {
	REDCAP_OK = 0,        /* 2xx */
	REDCAP_RETRY,         /* transient: project/system offline, 408, 500/502/503/504
				 and other 5xx except 501; retry later with backoff */
	REDCAP_SPLIT,         /* REDCap ran out of memory (or 413): split the request
				 in halves and retry them */
	REDCAP_BANNED,        /* the IP is banned: any 429 (with or without REDCap's
				 ban text), or the ban text with another status; stop
				 every request to this server until a human acts */
	REDCAP_AUTH,          /* 401/403: bad token or missing rights; do not retry */
	REDCAP_BAD_REQUEST,   /* the request as sent will never be accepted: 400
				 (per-value errors in errors, or a whole-request
				 message), other 4xx, 501, 3xx, 1xx */
} redcap_class;

/* "ok", "retry", "split", "banned", "auth", "bad-request". */
const char *redcap_class_name(redcap_class c);

typedef struct redcap_answer {
	redcap_class cls;
	int status;
	/* The error text for a non-2xx answer: the "error" member of a JSON
	 * body, the text after "ERROR: " of a CSV body, the <error> element of
	 * an XML body, or else the body itself (trimmed, at most 64 KiB, NUL
	 * bytes dropped). NULL on REDCAP_OK. May quote data (PHI). */
	char *message;
	/* Per-value errors parsed from message (REDCap's
	 * "record","field","value","message" lines, kind VALUE), or the JSON
	 * "records" list of older servers (objects: kind VALUE; bare record
	 * names of the duplicate-records error: kind REQUEST). Empty for other
	 * whole-request errors: then message alone says what is wrong. */
	redcap_errors errors;
} redcap_answer;

#define REDCAP_ANSWER_NULL { .cls = REDCAP_OK }

/*
 * Classify one HTTP answer (status and body) and extract its message and
 * per-value errors into a (reset first). Returns the class (>= 0) or
 * -ENOMEM. Rules, first match wins:
 *   2xx -> OK (the body is not looked at: it is data)
 *   429, or body message "Your IP address (...) has been banned" -> BANNED
 *     (the message, if the body has one, is kept)
 *   message "REDCap ran out of server memory", or 413     -> SPLIT
 *   message "This project is currently OFFLINE" or
 *     "REDCap is currently offline"                       -> RETRY
 *   401, 403 -> AUTH; 408 -> RETRY;
 *   501 -> BAD_REQUEST; other 5xx -> RETRY; anything else -> BAD_REQUEST.
 */
int redcap_classify(int status, const char *body, size_t len, redcap_answer *a);

/* Free message and errors; a is reset to REDCAP_ANSWER_NULL. Idempotent. */
void redcap_answer_deinit(redcap_answer *a);

/*
 * A PHI-free one-line summary for logs, e.g.
 *   "bad-request (HTTP 400): 3 value errors in age, dob"
 *   "retry (HTTP 400): project offline"
 * Never quotes record names or values. Always NUL-terminates out (when
 * size > 0); returns the length it wanted (snprintf style).
 */
int redcap_answer_describe(const redcap_answer *a, char *out, size_t size);

/*
 * Parse REDCap's per-value error text ("record","field","value","message"
 * lines joined by "\n"; quoted fields may contain newlines and commas;
 * inner quotes doubled or, as REDCap sometimes writes them, bare) into out
 * (appended, kind VALUE, row SIZE_MAX). Returns 0 if every non-blank line
 * parsed, REDCAP_E_SHAPE if the text is not in that form (out unchanged),
 * -ENOMEM.
 */
int redcap_parse_value_errors(const char *msg, size_t len, redcap_errors *out);

/* content=version: plain text "15.7.6" (surrounding white space allowed). */
typedef struct redcap_version {
	unsigned major, minor, patch;
} redcap_version;

/* Returns 0 or REDCAP_E_SHAPE. Each part at most 5 digits. */
int redcap_parse_version(const char *buf, size_t len, redcap_version *v);

/* <0, 0, >0 like strcmp. */
int redcap_version_cmp(const redcap_version *a, const redcap_version *b);

/* Import answer with returnContent=count: {"count": N} (N a number or a
 * numeric string), or a bare number. Returns 0, REDCAP_E_JSON, REDCAP_E_SHAPE. */
int redcap_parse_import_count(const char *buf, size_t len, uint64_t *count);

typedef struct redcap_strv {
	char **v;
	size_t n;
} redcap_strv;

#define REDCAP_STRV_NULL { 0 }

void redcap_strv_deinit(redcap_strv *s);

/* Import answer with returnContent=ids: ["1","2"] (numbers accepted and
 * rendered as integers). Returns 0, REDCAP_E_JSON, REDCAP_E_SHAPE, -ENOMEM;
 * ids is reset first. */
int redcap_parse_import_ids(const char *buf, size_t len, redcap_strv *ids, redcap_error *err);

/* content=project. Flags are -1 when absent from the answer. */
typedef struct redcap_project {
	int64_t project_id;               /* -1 if absent */
	char *title;                      /* project_title, "" if absent */
	int in_production;
	int longitudinal;                 /* is_longitudinal */
	int repeating;                    /* has_repeating_instruments_or_events */
	int autonumbering;                /* record_autonumbering_enabled */
	json_t *json;                     /* the whole object (owned reference) */
} redcap_project;

#define REDCAP_PROJECT_NULL { .project_id = -1, .in_production = -1, .longitudinal = -1, \
			      .repeating = -1, .autonumbering = -1 }

/* Values may be JSON numbers, numeric strings or booleans. Returns 0,
 * REDCAP_E_JSON, REDCAP_E_SHAPE (not an object, or a flag that is neither
 * 0 nor 1), -ENOMEM. p is reset first. */
int redcap_parse_project(redcap_project *p, const char *buf, size_t len, redcap_error *err);
void redcap_project_deinit(redcap_project *p);

/* content=exportFieldNames: one entry per export column. */
typedef struct redcap_export_field {
	char *original;      /* original_field_name */
	char *choice;        /* choice_value ("" for non-checkbox fields) */
	char *export_name;   /* export_field_name */
} redcap_export_field;

typedef struct redcap_export_fields {
	redcap_export_field *v;
	size_t n;
} redcap_export_fields;

#define REDCAP_EXPORT_FIELDS_NULL { 0 }

/* Returns 0, REDCAP_E_JSON, REDCAP_E_SHAPE (err names the index and key),
 * -ENOMEM. out is reset first. */
int redcap_parse_export_field_names(const char *buf, size_t len, redcap_export_fields *out,
				    redcap_error *err);
void redcap_export_fields_deinit(redcap_export_fields *f);
