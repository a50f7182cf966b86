/*
 * fhir/bundle.c — Bundle pages on the pull hot path, strict JSON
 * validation, and OperationOutcome summaries.
 *
 * fhir_page_parse() is one pass of the json-scan scanner over the page: it
 * walks the few Bundle members it needs (resourceType, type, total, link,
 * entry), records the exact byte span of each entry's resource and reads a
 * handful of top-level fields of that resource; everything else is skipped
 * by json_scan_skip(), which validates it on the way. No DOM is built and
 * nothing is copied except the short fields the store needs.
 *
 * Error precedence: invalid JSON anywhere beats "not a Bundle", which beats
 * a Bundle of the wrong shape. A shape error found early (say entry before
 * resourceType) is therefore confirmed on a second, slow pass over the
 * whole buffer — only on that error path.
 */
#include "fhir/fhir.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fhir/json-scan.h"

typedef struct page_parser {
	json_scan s;
	fhir_page *pg;
	const char *buf;
	fhir_error *err;
	/* The root object's resourceType, if seen. */
	bool root_object;   /* the document is a JSON object */
	bool have_top_type;
	bool top_type_cut;  /* longer than top_type holds */
	char top_type[FHIR_TYPE_MAX];
	size_t top_type_off;
	/* Room to decode references into; grows as needed. */
	char *scratch;
	size_t scratch_cap;
} page_parser;

#define NO_ENTRY SIZE_MAX

/*
 * Record a shape error at byte `at`: "unexpected Bundle content at line L
 * column C (byte O): <message>". Returns FHIR_E_SHAPE.
 */
__attribute__((format(printf, 3, 4)))
static int shape(page_parser *pp, const unsigned char *at, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	if (!pp->err)
		return FHIR_E_SHAPE;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	size_t off = (size_t)(at - pp->s.buf);
	fhir_error_at(pp->err, pp->buf, off);
	snprintf(pp->err->msg, sizeof(pp->err->msg),
		 "unexpected Bundle content at line %u column %u (byte %zu): %.200s", pp->err->line,
		 pp->err->column, off, what);
	return FHIR_E_SHAPE;
}

/* A shape error about a named field of the Bundle (idx == NO_ENTRY) or of
 * entry[idx]: "entry[3].resource.id is not a string". */
static int field_error(page_parser *pp, const unsigned char *at, size_t idx, const char *field,
		       const char *what)
{
	if (idx == NO_ENTRY)
		return shape(pp, at, "Bundle.%s %s", field, what);
	return shape(pp, at, "entry[%zu].%s %s", idx, field, what);
}

/* Whether a decoded value has a byte that must not reach logs or keys. */
static bool has_control(const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x20 || c == 0x7f)
			return true;
	}
	return false;
}

/*
 * At a value that must be a string: decode it into the fixed field out
 * (NUL-terminated). Longer values and control characters are shape errors,
 * never truncated.
 */
static int string_field(page_parser *pp, size_t idx, const char *field, char *out, size_t cap)
{
	const unsigned char *at = pp->s.p;
	json_str v;
	int r;

	if (json_scan_peek(&pp->s) != '"')
		return field_error(pp, at, idx, field, "is not a string");
	if ((r = json_scan_string(&pp->s, &v)))
		return r;
	size_t n = json_str_decode(&v, out, cap - 1);
	if (n >= cap) {
		out[0] = 0;
		char what[48];
		snprintf(what, sizeof(what), "is longer than %zu bytes", cap - 1);
		return field_error(pp, at, idx, field, what);
	}
	out[n] = 0;
	if (has_control(out, n)) {
		out[0] = 0;
		return field_error(pp, at, idx, field, "contains a control character");
	}
	return 0;
}

/* At a value that must be a string: a malloc'd decoded copy in *out
 * (replacing and freeing what was there). */
static int string_dup(page_parser *pp, size_t idx, const char *field, const json_str *v,
		      const unsigned char *at, char **out)
{
	char *d = malloc(v->len + 1);
	if (!d)
		return -ENOMEM;
	size_t n = json_str_decode(v, d, v->len);
	d[n] = 0;
	if (memchr(d, 0, n)) {
		free(d);
		return field_error(pp, at, idx, field, "contains a NUL character");
	}
	free(*out);
	*out = d;
	return 0;
}

static bool is_id_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '.';
}

/*
 * The Patient id a reference points at: "Patient/<id>", or an absolute URL
 * ending in "/Patient/<id>", either optionally followed by "/_history/<v>".
 * The id must be a FHIR id ([A-Za-z0-9-.], shorter than FHIR_ID_MAX).
 * Returns false (out untouched) for anything else: "#contained",
 * "urn:uuid:...", "Group/1", conditional references.
 */
static bool patient_ref_id(const char *ref, size_t len, char out[FHIR_ID_MAX])
{
	static const char hist[] = "/_history/";
	const size_t hl = sizeof(hist) - 1;
	size_t end = len;

	/* Strip a version: the last '/' closes "/_history/" and a non-empty <v> follows. */
	const char *last = memrchr(ref, '/', len);
	if (last) {
		size_t i = (size_t)(last - ref);
		if (i + 1 < len && i + 1 >= hl && memcmp(ref + i + 1 - hl, hist, hl) == 0)
			end = i + 1 - hl;
	}
	const char *slash = memrchr(ref, '/', end);
	if (!slash)
		return false;
	size_t id_start = (size_t)(slash - ref) + 1, id_len = end - id_start;
	if (id_len == 0 || id_len >= FHIR_ID_MAX)
		return false;
	for (size_t i = id_start; i < end; i++)
		if (!is_id_char((unsigned char)ref[i]))
			return false;
	/* The segment before the id must be exactly "Patient". */
	size_t type_end = id_start - 1;
	if (type_end < 7 || memcmp(ref + type_end - 7, "Patient", 7) != 0)
		return false;
	if (type_end > 7 && ref[type_end - 8] != '/')
		return false;
	memcpy(out, ref + id_start, id_len);
	out[id_len] = 0;
	return true;
}

/* At a Reference object: its "reference" string, if any, in *ref. */
static int parse_reference(page_parser *pp, size_t idx, const char *field, json_str *ref, bool *have)
{
	json_scan *s = &pp->s;
	bool first = true, more;
	json_str key;
	int r;

	if ((r = json_scan_object(s)))
		return r;
	for (;;) {
		if ((r = json_scan_member(s, &first, &key, &more)) || !more)
			return r;
		if (JSON_STR_IS(&key, "reference")) {
			const unsigned char *at = s->p;
			if (json_scan_peek(s) != '"') {
				char path[48];
				snprintf(path, sizeof(path), "resource.%s.reference", field);
				return field_error(pp, at, idx, path, "is not a string");
			}
			r = json_scan_string(s, ref);
			*have = true;
		} else {
			r = json_scan_skip(s);
		}
		if (r)
			return r;
	}
}

static int parse_meta(page_parser *pp, size_t idx, fhir_entry *e)
{
	json_scan *s = &pp->s;
	bool first = true, more;
	json_str key;
	int r;

	if (json_scan_peek(s) != '{')
		return field_error(pp, s->p, idx, "resource.meta", "is not an object");
	if ((r = json_scan_object(s)))
		return r;
	for (;;) {
		if ((r = json_scan_member(s, &first, &key, &more)) || !more)
			return r;
		if (JSON_STR_IS(&key, "versionId"))
			r = string_field(pp, idx, "resource.meta.versionId", e->version_id, sizeof(e->version_id));
		else if (JSON_STR_IS(&key, "lastUpdated"))
			r = string_field(pp, idx, "resource.meta.lastUpdated", e->last_updated,
					 sizeof(e->last_updated));
		else
			r = json_scan_skip(s);
		if (r)
			return r;
	}
}

/* The patient references a resource may carry, in order of preference
 * (parse_resource() matches the keys in this order). */
static const char *const patient_fields[] = { "subject", "patient", "beneficiary" };
#define N_PATIENT_FIELDS (sizeof(patient_fields) / sizeof(patient_fields[0]))

/*
 * At entry[idx].resource ('{'): record its span and read resourceType, id,
 * meta.versionId, meta.lastUpdated and the patient — from the resource's
 * own members only, never from nested (e.g. contained) resources.
 */
static int parse_resource(page_parser *pp, size_t idx, fhir_entry *e)
{
	json_scan *s = &pp->s;
	const unsigned char *start = s->p;
	json_str key, refs[N_PATIENT_FIELDS];
	bool have_ref[N_PATIENT_FIELDS] = { false };
	bool first = true, more;
	int r;

	e->type[0] = e->id[0] = e->version_id[0] = e->last_updated[0] = e->patient[0] = 0;
	if ((r = json_scan_object(s)))
		return r;
	for (;;) {
		if ((r = json_scan_member(s, &first, &key, &more)))
			return r;
		if (!more)
			break;
		const unsigned char *at = s->p;
		size_t k;
		if (JSON_STR_IS(&key, "resourceType")) {
			if ((r = string_field(pp, idx, "resource.resourceType", e->type, sizeof(e->type))))
				return r;
			for (const char *c = e->type; *c; c++)
				if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z')))
					return field_error(pp, at, idx, "resource.resourceType",
							   "is not a resource type name");
			continue;
		}
		if (JSON_STR_IS(&key, "id")) {
			r = string_field(pp, idx, "resource.id", e->id, sizeof(e->id));
		} else if (JSON_STR_IS(&key, "meta")) {
			r = parse_meta(pp, idx, e);
		} else {
			k = JSON_STR_IS(&key, "subject")       ? 0
			    : JSON_STR_IS(&key, "patient")     ? 1
			    : JSON_STR_IS(&key, "beneficiary") ? 2
							       : N_PATIENT_FIELDS;
			/* A Reference is an object; some types have arrays here
			 * (Contract.subject): those name no single patient. */
			if (k < N_PATIENT_FIELDS && json_scan_peek(s) == '{') {
				have_ref[k] = false;
				r = parse_reference(pp, idx, patient_fields[k], &refs[k], &have_ref[k]);
			} else {
				r = json_scan_skip(s);
			}
		}
		if (r)
			return r;
	}
	e->body = (const char *)start;
	e->body_len = (size_t)(s->p - start);
	if (!e->type[0])
		return field_error(pp, start, idx, "resource", "has no resourceType");

	if (strcmp(e->type, "Patient") == 0) {
		memcpy(e->patient, e->id, sizeof(e->patient));
		return 0;
	}
	for (size_t k = 0; k < N_PATIENT_FIELDS; k++) {
		if (!have_ref[k])
			continue;
		if (!pp->scratch || refs[k].len > pp->scratch_cap) {
			size_t cap = refs[k].len < 256 ? 256 : refs[k].len;
			char *n = realloc(pp->scratch, cap);
			if (!n)
				return -ENOMEM;
			pp->scratch = n;
			pp->scratch_cap = cap;
		}
		size_t n = json_str_decode(&refs[k], pp->scratch, pp->scratch_cap);
		if (patient_ref_id(pp->scratch, n, e->patient))
			break;
	}
	return 0;
}

static int parse_search(page_parser *pp, size_t idx, int *mode)
{
	json_scan *s = &pp->s;
	bool first = true, more;
	json_str key, v;
	int r;

	if ((r = json_scan_object(s)))
		return r;
	for (;;) {
		if ((r = json_scan_member(s, &first, &key, &more)) || !more)
			return r;
		if (!JSON_STR_IS(&key, "mode")) {
			if ((r = json_scan_skip(s)))
				return r;
			continue;
		}
		const unsigned char *at = s->p;
		if (json_scan_peek(s) != '"')
			return field_error(pp, at, idx, "search.mode", "is not a string");
		if ((r = json_scan_string(s, &v)))
			return r;
		if (JSON_STR_IS(&v, "match"))
			*mode = 0;
		else if (JSON_STR_IS(&v, "include"))
			*mode = 1;
		else if (JSON_STR_IS(&v, "outcome"))
			*mode = 2;
		else
			return field_error(pp, at, idx, "search.mode", "is not match, include or outcome");
	}
}

/* A slot for the next entry (not yet counted in n_entries). */
static fhir_entry *entry_slot(fhir_page *pg)
{
	if (pg->n_entries == pg->cap_entries) {
		size_t cap = pg->cap_entries ? pg->cap_entries * 2 : 64;
		if (cap > SIZE_MAX / sizeof(fhir_entry))
			return NULL;
		fhir_entry *n = realloc(pg->entries, cap * sizeof(fhir_entry));
		if (!n)
			return NULL;
		pg->entries = n;
		pg->cap_entries = cap;
	}
	return &pg->entries[pg->n_entries];
}

/* At entry[idx] ('{'). Entries without a resource (possible outside
 * search results) are validated and dropped. */
static int parse_entry(page_parser *pp, size_t idx)
{
	json_scan *s = &pp->s;
	fhir_entry *e = entry_slot(pp->pg);
	bool first = true, more, have_resource = false;
	int mode = 0, r;
	json_str key;

	if (!e)
		return -ENOMEM;
	if ((r = json_scan_object(s)))
		return r;
	for (;;) {
		if ((r = json_scan_member(s, &first, &key, &more)))
			return r;
		if (!more)
			break;
		int c = json_scan_peek(s);
		if (JSON_STR_IS(&key, "resource")) {
			if (c != '{')
				return field_error(pp, s->p, idx, "resource", "is not an object");
			r = parse_resource(pp, idx, e);
			have_resource = true;
		} else if (JSON_STR_IS(&key, "search")) {
			if (c != '{')
				return field_error(pp, s->p, idx, "search", "is not an object");
			r = parse_search(pp, idx, &mode);
		} else {
			r = json_scan_skip(s);
		}
		if (r)
			return r;
	}
	if (have_resource) {
		e->search_mode = mode;
		pp->pg->n_entries++;
	}
	return 0;
}

static int parse_entries(page_parser *pp)
{
	json_scan *s = &pp->s;
	bool first = true, more;
	int r;

	if (json_scan_peek(s) != '[')
		return field_error(pp, s->p, NO_ENTRY, "entry", "is not an array");
	pp->pg->n_entries = 0;  /* a repeated "entry" member replaces the earlier one */
	if ((r = json_scan_array(s)))
		return r;
	for (size_t idx = 0;; idx++) {
		if ((r = json_scan_element(s, &first, &more)) || !more)
			return r;
		if (json_scan_peek(s) != '{')
			return shape(pp, s->p, "entry[%zu] is not an object", idx);
		if ((r = parse_entry(pp, idx)))
			return r;
	}
}

/* At Bundle.link[idx] ('{'): keep the url of the first relation "next". */
static int parse_link(page_parser *pp, size_t idx)
{
	json_scan *s = &pp->s;
	bool first = true, more, is_next = false, have_url = false;
	const unsigned char *url_at = NULL;
	json_str key, v, url;
	int r;

	if ((r = json_scan_object(s)))
		return r;
	for (;;) {
		if ((r = json_scan_member(s, &first, &key, &more)))
			return r;
		if (!more)
			break;
		bool rel = JSON_STR_IS(&key, "relation");
		if (!rel && !JSON_STR_IS(&key, "url")) {
			if ((r = json_scan_skip(s)))
				return r;
			continue;
		}
		const unsigned char *at = s->p;
		if (json_scan_peek(s) != '"')
			return shape(pp, at, "Bundle.link[%zu].%s is not a string", idx, rel ? "relation" : "url");
		if ((r = json_scan_string(s, &v)))
			return r;
		if (rel) {
			is_next = JSON_STR_IS(&v, "next");
		} else {
			url = v;
			url_at = at;
			have_url = true;
		}
	}
	if (is_next && have_url && !pp->pg->next)
		return string_dup(pp, NO_ENTRY, "link.url", &url, url_at, &pp->pg->next);
	return 0;
}

static int parse_links(page_parser *pp)
{
	json_scan *s = &pp->s;
	bool first = true, more;
	int r;

	if (json_scan_peek(s) != '[')
		return field_error(pp, s->p, NO_ENTRY, "link", "is not an array");
	free(pp->pg->next);  /* a repeated "link" member replaces the earlier one */
	pp->pg->next = NULL;
	if ((r = json_scan_array(s)))
		return r;
	for (size_t idx = 0;; idx++) {
		if ((r = json_scan_element(s, &first, &more)) || !more)
			return r;
		if (json_scan_peek(s) != '{')
			return shape(pp, s->p, "Bundle.link[%zu] is not an object", idx);
		if ((r = parse_link(pp, idx)))
			return r;
	}
}

static int parse_total(page_parser *pp)
{
	json_scan *s = &pp->s;
	const unsigned char *at = s->p, *start;
	int c = json_scan_peek(s), r;

	if (c != '-' && !(c >= '0' && c <= '9'))
		return field_error(pp, at, NO_ENTRY, "total", "is not a number");
	if ((r = json_scan_number(s, &start)))
		return r;
	int64_t v = 0;
	for (const unsigned char *p = start; p < s->p; p++) {
		if (*p < '0' || *p > '9')
			return field_error(pp, at, NO_ENTRY, "total", "is not a non-negative integer");
		if (v > (INT64_MAX - 9) / 10)
			return field_error(pp, at, NO_ENTRY, "total", "is too large");
		v = v * 10 + (*p - '0');
	}
	pp->pg->total = v;
	return 0;
}

/* At the root's "resourceType" value: remember it. */
static int read_top_type(page_parser *pp)
{
	json_scan *s = &pp->s;
	const unsigned char *at = s->p;
	json_str v;
	int r;

	if (json_scan_peek(s) != '"')
		return shape(pp, at, "resourceType is not a string");
	if ((r = json_scan_string(s, &v)))
		return r;
	size_t n = json_str_decode(&v, pp->top_type, sizeof(pp->top_type) - 1);
	pp->top_type_cut = n >= sizeof(pp->top_type);
	if (pp->top_type_cut)
		n = sizeof(pp->top_type) - 1;
	pp->top_type[n] = 0;
	pp->have_top_type = true;
	pp->top_type_off = (size_t)(at - s->buf);
	return 0;
}

static bool top_is_bundle(const page_parser *pp)
{
	return pp->have_top_type && !pp->top_type_cut && strcmp(pp->top_type, "Bundle") == 0;
}

/* The whole document, from its first byte. */
static int parse_document(page_parser *pp)
{
	json_scan *s = &pp->s;
	bool first = true, more, skip_rest = false;
	json_str key;
	int r;

	pp->root_object = json_scan_peek(s) == '{';
	if (!pp->root_object) {
		/* Not an object: validate it all so bad JSON is reported as such. */
		if ((r = json_scan_skip(s)) || (r = json_scan_finish(s)))
			return r;
		return 0;  /* the caller sees no resourceType */
	}
	if ((r = json_scan_object(s)))
		return r;
	for (;;) {
		if ((r = json_scan_member(s, &first, &key, &more)))
			return r;
		if (!more)
			break;
		if (JSON_STR_IS(&key, "resourceType")) {
			r = read_top_type(pp);
			/* Not a Bundle: the rest only needs validating. */
			skip_rest = !r && !top_is_bundle(pp);
		} else if (skip_rest) {
			r = json_scan_skip(s);
		} else if (JSON_STR_IS(&key, "entry")) {
			r = parse_entries(pp);
		} else if (JSON_STR_IS(&key, "link")) {
			r = parse_links(pp);
		} else if (JSON_STR_IS(&key, "type")) {
			const unsigned char *at = s->p;
			json_str v;
			if (json_scan_peek(s) != '"')
				return field_error(pp, at, NO_ENTRY, "type", "is not a string");
			r = json_scan_string(s, &v);
			if (!r)
				r = string_dup(pp, NO_ENTRY, "type", &v, at, &pp->pg->bundle_type);
		} else if (JSON_STR_IS(&key, "total")) {
			r = parse_total(pp);
		} else {
			r = json_scan_skip(s);
		}
		if (r)
			return r;
	}
	return json_scan_finish(s);
}

/* Copy a decoded value into out as printable ASCII ('?' for the rest). */
static void sanitize_ascii(char *out, size_t size, const char *in, size_t n)
{
	size_t j = 0;

	if (!size)
		return;
	for (size_t i = 0; i < n && j + 1 < size; i++) {
		unsigned char c = (unsigned char)in[i];
		out[j++] = c >= 0x20 && c < 0x7f ? (char)c : c == '\n' || c == '\r' || c == '\t' ? ' ' : '?';
	}
	out[j] = 0;
}

/* FHIR_E_NOT_BUNDLE with a message naming what the document was. */
static int not_bundle(page_parser *pp)
{
	char type[FHIR_TYPE_MAX + 4];

	if (!pp->err)
		return FHIR_E_NOT_BUNDLE;
	if (!pp->have_top_type) {
		fhir_error_at(pp->err, pp->buf, 0);
		snprintf(pp->err->msg, sizeof(pp->err->msg),
			 "not a FHIR Bundle: the JSON document %s",
			 pp->root_object ? "has no resourceType string" : "is not an object");
		return FHIR_E_NOT_BUNDLE;
	}
	fhir_error_at(pp->err, pp->buf, pp->top_type_off);
	sanitize_ascii(type, sizeof(type), pp->top_type, strlen(pp->top_type));
	if (pp->top_type_cut)
		strcat(type, "...");
	if (strcmp(pp->top_type, "OperationOutcome") == 0) {
		char sum[sizeof(pp->err->msg)];
		fhir_outcome_summary((const char *)pp->s.buf, (size_t)(pp->s.end - pp->s.buf), sum, sizeof(sum));
		snprintf(pp->err->msg, sizeof(pp->err->msg), "expected a Bundle, got an OperationOutcome: %.200s",
			 sum);
	} else {
		snprintf(pp->err->msg, sizeof(pp->err->msg), "expected a Bundle, got a resource of type %s", type);
	}
	return FHIR_E_NOT_BUNDLE;
}

/*
 * A shape error was found: was the document valid JSON, and a Bundle at
 * all? Those answers take precedence. Slow, but only on this error path.
 */
static int confirm_shape_error(page_parser *pp)
{
	fhir_error jerr;
	json_scan s;
	int r;

	json_scan_init(&s, pp->buf, (size_t)(pp->s.end - pp->s.buf), &jerr);
	r = json_scan_skip(&s);
	if (!r)
		r = json_scan_finish(&s);
	if (r) {
		if (pp->err)
			*pp->err = jerr;
		return r;
	}
	/* Valid JSON: find the root's resourceType (members before it were
	 * already read by the failed pass, but it may come after them). */
	json_scan_init(&pp->s, pp->buf, (size_t)(pp->s.end - pp->s.buf), NULL);
	bool first = true, more;
	json_str key;
	if (json_scan_peek(&pp->s) == '{' && json_scan_object(&pp->s) == 0) {
		while (json_scan_member(&pp->s, &first, &key, &more) == 0 && more) {
			if (JSON_STR_IS(&key, "resourceType") && json_scan_peek(&pp->s) == '"') {
				fhir_error *keep = pp->err;
				pp->err = NULL;  /* keep the shape error's message */
				read_top_type(pp);
				pp->err = keep;
				break;
			}
			if (json_scan_skip(&pp->s))
				break;
		}
	}
	if (!top_is_bundle(pp))
		return not_bundle(pp);
	return FHIR_E_SHAPE;
}

static void page_reset(fhir_page *pg)
{
	free(pg->next);
	free(pg->bundle_type);
	pg->next = NULL;
	pg->bundle_type = NULL;
	pg->total = -1;
	pg->n_entries = 0;
}

/*
 * Parse a search-result page (see fhir.h). On success pg owns next and
 * bundle_type, and its entries point into buf. On failure pg is left empty
 * (it may keep its entry array for reuse) and err says where and why.
 */
int fhir_page_parse(fhir_page *pg, const char *buf, size_t len, fhir_error *err)
{
	page_parser pp = { .pg = pg, .buf = buf, .err = err };
	int r;

	page_reset(pg);
	if (err)
		memset(err, 0, sizeof(*err));
	if (len > FHIR_PAGE_MAX_BYTES) {
		fhir_error_set(err, NULL, 0, "the page is larger than %zu bytes", (size_t)FHIR_PAGE_MAX_BYTES);
		return FHIR_E_TOO_LARGE;
	}
	json_scan_init(&pp.s, buf, len, err);
	r = parse_document(&pp);
	if (r == FHIR_E_SHAPE)
		r = confirm_shape_error(&pp);
	else if (r == 0 && !top_is_bundle(&pp))
		r = not_bundle(&pp);
	if (r < 0 && err)
		fhir_error_set(err, NULL, 0, "out of memory");
	free(pp.scratch);
	if (r)
		page_reset(pg);
	return r;
}

/* Free what the page owns; the page is then empty and reusable. Idempotent. */
void fhir_page_deinit(fhir_page *pg)
{
	if (!pg)
		return;
	page_reset(pg);
	free(pg->entries);
	pg->entries = NULL;
	pg->cap_entries = 0;
}

/*
 * Validate the whole buffer as one strict JSON value (see fhir.h). Too deep
 * nesting is reported as FHIR_E_JSON here.
 */
int fhir_json_validate(const char *buf, size_t len, fhir_error *err)
{
	json_scan s;
	int r;

	json_scan_init(&s, buf, len, err);
	r = json_scan_skip(&s);
	if (!r)
		r = json_scan_finish(&s);
	return r ? FHIR_E_JSON : 0;
}

/* An appender into a fixed message buffer: cuts at a UTF-8 character
 * boundary and replaces control characters by spaces. */
typedef struct msgbuf {
	char *p;
	size_t size, len;
	bool full;  /* something was cut: add nothing more */
} msgbuf;

static void msg_add(msgbuf *m, const char *s)
{
	if (!s || m->full)
		return;
	size_t n = strlen(s), i;
	for (i = 0; i < n && m->len + 1 < m->size; i++) {
		unsigned char c = (unsigned char)s[i];
		m->p[m->len++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	m->full = i < n;
	/* Drop a multi-byte character the size limit cut in two. */
	if (m->full && m->len > 0) {
		size_t k = m->len;
		while (k > 0 && ((unsigned char)m->p[k - 1] & 0xc0) == 0x80)
			k--;
		if (k > 0 && (unsigned char)m->p[k - 1] >= 0xc0) {
			unsigned char lead = (unsigned char)m->p[k - 1];
			size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
			if (m->len - (k - 1) < need)
				m->len = k - 1;
		}
	}
	m->p[m->len] = 0;
}

static const char *json_str_member(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));
	return v && *v ? v : NULL;
}

/*
 * Summarise an OperationOutcome into out (see fhir.h): for each issue
 * "severity: code: diagnostics" (details.text when there is no
 * diagnostics), joined by "; ". Returns 0 for an OperationOutcome,
 * FHIR_E_JSON if buf is not JSON, FHIR_E_NOT_BUNDLE if it is other JSON
 * (out then holds a printable-ASCII excerpt of the body). This is an error
 * path, so a Jansson DOM is fine here.
 */
int fhir_outcome_summary(const char *buf, size_t len, char *out, size_t out_size)
{
	msgbuf m = { .p = out, .size = out_size };
	json_error_t jerr;
	json_t *root;

	if (!out || !out_size)
		return FHIR_E_SHAPE;
	out[0] = 0;
	root = buf ? json_loadb(buf, len, 0, &jerr) : NULL;
	const char *rt = json_str_member(root, "resourceType");
	if (!rt || strcmp(rt, "OperationOutcome") != 0) {
		json_decref(root);
		sanitize_ascii(out, out_size < 121 ? out_size : 121, buf ? buf : "", buf ? len : 0);
		return root ? FHIR_E_NOT_BUNDLE : FHIR_E_JSON;
	}
	json_t *issues = json_object_get(root, "issue"), *issue;
	size_t i, n = 0;
	json_array_foreach(issues, i, issue) {
		const char *sev = json_str_member(issue, "severity");
		const char *code = json_str_member(issue, "code");
		const char *text = json_str_member(issue, "diagnostics");
		if (!text)
			text = json_str_member(json_object_get(issue, "details"), "text");
		if (n++)
			msg_add(&m, "; ");
		msg_add(&m, sev ? sev : "issue");
		if (code) {
			msg_add(&m, ": ");
			msg_add(&m, code);
		}
		if (text) {
			msg_add(&m, ": ");
			msg_add(&m, text);
		}
	}
	if (!n)
		msg_add(&m, "OperationOutcome without issues");
	json_decref(root);
	return 0;
}
