/*
 * redcap/answer.c — classify REDCap's answers and parse the ones the bridge
 * reads (import counts and ids, version, project info, export field names).
 *
 * Error bodies (REDCAP-API.md, and REDCap's RestUtility): JSON
 * {"error":"<msg>"}, CSV "ERROR: <msg>", XML
 * <?xml ...?><hash><error><msg></error></hash>. Per-value import errors are
 * lines "record","field","value","message" joined by "\n" inside <msg>.
 * Older servers (REDCap 5.x, API/record/import.php) answered
 * {"error":"There were data validation errors","records":[{"record",
 * "field_name","value","message"}...]} — read too.
 */
#include "redcap/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define MESSAGE_MAX ((size_t)64 << 10)

static const char *const class_names[] = {
	[REDCAP_OK] = "ok",
	[REDCAP_RETRY] = "retry",
	[REDCAP_SPLIT] = "split",
	[REDCAP_BANNED] = "banned",
	[REDCAP_AUTH] = "auth",
	[REDCAP_BAD_REQUEST] = "bad-request",
};

/* Static name of a class; "unknown" when out of range. */
const char *redcap_class_name(redcap_class c)
{
	if ((unsigned)c >= sizeof(class_names) / sizeof(class_names[0]))
		return "unknown";
	return class_names[c];
}

/* Wipe and free the message, free the errors; a is reset. Idempotent. */
void redcap_answer_deinit(redcap_answer *a)
{
	if (!a)
		return;
	if (a->message) {
		OPENSSL_cleanse(a->message, strlen(a->message));
		free(a->message);
	}
	redcap_errors_deinit(&a->errors);
	*a = (redcap_answer)REDCAP_ANSWER_NULL;
}

/* ------------------------------------------------------------------------
 * Per-value error lines.
 */

/*
 * Read one quoted field starting at *p (which must be '"'), ending with a
 * quote followed by term (",\"" between fields, or a line end / the end of
 * text for the last one). Inside, "" is one quote; a bare quote not
 * followed by the terminator is kept. Appends to b; returns false if the
 * text is not in that form.
 */
static bool read_quoted(const char **p, const char *end, bool last, rc_str *b)
{
	const char *s = *p;

	if (s >= end || *s != '"')
		return false;
	s++;
	for (;;) {
		if (s >= end)
			return false;
		if (*s != '"') {
			rc_str_addc(b, *s++);
			continue;
		}
		/* A quote: the terminator? */
		if (!last && end - s >= 3 && s[1] == ',' && s[2] == '"') {
			*p = s + 2;  /* at the next field's opening quote */
			return true;
		}
		if (last) {
			const char *t = s + 1;
			if (t < end && *t == '\r')
				t++;
			if (t >= end || *t == '\n') {
				*p = t < end ? t + 1 : t;
				return true;
			}
		}
		if (s + 1 < end && s[1] == '"') {
			rc_str_addc(b, '"');
			s += 2;
		} else {
			rc_str_addc(b, '"');  /* bare quote, kept */
			s++;
		}
	}
}

/*
 * Parse msg as per-value error lines (see redcap.h). Appends to out on
 * success only. Returns 0, REDCAP_E_SHAPE or -ENOMEM.
 */
int redcap_parse_value_errors(const char *msg, size_t len, redcap_errors *out)
{
	redcap_errors tmp = REDCAP_ERRORS_NULL;
	const char *p = msg, *end = msg + (msg ? len : 0);
	int rc = 0;

	if (!msg || !out)
		return -EINVAL;
	while (p < end) {
		/* Skip blank lines. */
		if (*p == '\n' || *p == '\r' || *p == ' ' || *p == '\t') {
			p++;
			continue;
		}
		rc_str f[4] = { RC_STR_NULL, RC_STR_NULL, RC_STR_NULL, RC_STR_NULL };
		bool ok = true;
		for (int k = 0; k < 4 && ok; k++) {
			rc_str_add(&f[k], "");
			ok = read_quoted(&p, end, k == 3, &f[k]);
		}
		for (int k = 0; k < 4; k++)
			if (f[k].err)
				rc = -ENOMEM;
		if (ok && !rc)
			rc = redcap_errors_add(&tmp, REDCAP_ERR_VALUE, SIZE_MAX, f[0].s, f[1].s, f[2].s, f[3].s);
		for (int k = 0; k < 4; k++) {
			if (f[k].s)
				OPENSSL_cleanse(f[k].s, f[k].len);
			rc_str_free(&f[k]);
		}
		if (rc || !ok) {
			redcap_errors_deinit(&tmp);
			return rc ? rc : REDCAP_E_SHAPE;
		}
	}
	if (tmp.n == 0)
		return REDCAP_E_SHAPE;
	for (size_t i = 0; i < tmp.n; i++) {
		redcap_value_error *e = &tmp.v[i];
		rc = redcap_errors_add(out, e->kind, e->row, e->record, e->field, e->value, e->message);
		if (rc)
			break;
	}
	redcap_errors_deinit(&tmp);
	return rc;
}

/* ------------------------------------------------------------------------
 * Classification.
 */

static bool has(const char *s, const char *needle)
{
	return s && strstr(s, needle);
}

/* Copy s[0..n) dropping NUL bytes, at most MESSAGE_MAX bytes (cut on a
 * UTF-8 boundary). */
static char *copy_text(const char *s, size_t n)
{
	size_t start, len;

	rc_trim(s, n, &start, &len);
	s += start;
	if (len > MESSAGE_MAX) {
		len = MESSAGE_MAX;
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	char *d = malloc(len + 1), *q = d;
	if (!d)
		return NULL;
	for (size_t i = 0; i < len; i++)
		if (s[i])
			*q++ = s[i];
	*q = 0;
	return d;
}

/* Decode the five XML entities and numeric references in place. */
static void xml_unescape(char *s)
{
	static const struct { const char *ent; char c; } ents[] = {
		{ "&lt;", '<' }, { "&gt;", '>' }, { "&amp;", '&' }, { "&quot;", '"' }, { "&apos;", '\'' },
	};
	char *r = s, *w = s;

	while (*r) {
		if (*r == '&') {
			bool done = false;
			for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]) && !done; i++) {
				size_t n = strlen(ents[i].ent);
				if (strncmp(r, ents[i].ent, n) == 0) {
					*w++ = ents[i].c;
					r += n;
					done = true;
				}
			}
			if (!done && r[1] == '#') {
				char *e;
				long v = r[2] == 'x' ? strtol(r + 3, &e, 16) : strtol(r + 2, &e, 10);
				if (*e == ';' && v > 0 && v < 128 && e > r + 2) {
					*w++ = (char)v;
					r = e + 1;
					done = true;
				}
			}
			if (done)
				continue;
		}
		*w++ = *r++;
	}
	*w = 0;
}

/* Old-style {"records":[...]} details into errors. */
static int records_list(const json_t *list, const char *error, redcap_errors *out)
{
	size_t i;
	json_t *e;

	json_array_foreach(list, i, e) {
		int rc;
		if (json_is_string(e)) {
			rc = redcap_errors_add(out, REDCAP_ERR_REQUEST, SIZE_MAX, json_string_value(e), "", "",
					       error);
		} else if (json_is_object(e)) {
			const char *rec = json_string_value(json_object_get(e, "record"));
			const char *fld = json_string_value(json_object_get(e, "field_name"));
			const char *val = json_string_value(json_object_get(e, "value"));
			const char *msg = json_string_value(json_object_get(e, "message"));
			rc = redcap_errors_add(out, REDCAP_ERR_VALUE, SIZE_MAX, rec, fld, val, msg);
		} else {
			continue;
		}
		if (rc)
			return rc;
	}
	return 0;
}

/* Extract the message (and old-style records) from an error body. */
static int extract(const char *body, size_t len, redcap_answer *a)
{
	size_t start, n;

	rc_trim(body, len, &start, &n);
	const char *s = body + start;

	if (n && s[0] == '{') {
		json_t *j = json_loadb(s, n, 0, NULL);
		const json_t *e = json_object_get(j, "error");
		if (json_is_string(e)) {
			a->message = copy_text(json_string_value(e), json_string_length(e));
			int rc = a->message ? 0 : -ENOMEM;
			const json_t *recs = json_object_get(j, "records");
			if (!rc && json_is_array(recs))
				rc = records_list(recs, a->message, &a->errors);
			json_decref(j);
			return rc;
		}
		json_decref(j);
	}
	if (n >= 7 && memcmp(s, "ERROR: ", 7) == 0) {
		a->message = copy_text(s + 7, n - 7);
		return a->message ? 0 : -ENOMEM;
	}
	if (n && s[0] == '<') {
		const char *o = memmem(s, n, "<error>", 7);
		const char *c = o ? memmem(o + 7, n - (size_t)(o + 7 - s), "</error>", 8) : NULL;
		if (o && c) {
			a->message = copy_text(o + 7, (size_t)(c - o - 7));
			if (!a->message)
				return -ENOMEM;
			xml_unescape(a->message);
			return 0;
		}
	}
	a->message = copy_text(s, n);
	return a->message ? 0 : -ENOMEM;
}

/*
 * Classify status + body (see redcap.h for the rules). a is reset first and
 * owns the message and errors afterwards. Returns the class or -ENOMEM.
 */
int redcap_classify(int status, const char *body, size_t len, redcap_answer *a)
{
	if (!a)
		return -EINVAL;
	redcap_answer_deinit(a);
	a->status = status;
	if (status >= 200 && status <= 299) {
		a->cls = REDCAP_OK;
		return REDCAP_OK;
	}
	int rc = extract(body ? body : "", body ? len : 0, a);
	if (rc) {
		redcap_answer_deinit(a);
		return rc;
	}
	const char *m = a->message;

	/* REDCap answers 429 only when it bans (Logging::checkBannedIp, plain
	 * text "Your IP address (x) has been banned ..."; REDCAP-API.md) or, in
	 * front of it, when a proxy limits the rate: either way the server is
	 * already counting this client, so a 429 is never retried. */
	if (status == 429 || has(m, "has been banned due to suspected abuse"))
		a->cls = REDCAP_BANNED;
	else if (has(m, "REDCap ran out of server memory") || status == 413)
		a->cls = REDCAP_SPLIT;
	else if (has(m, "is currently OFFLINE and is not accessible") || has(m, "REDCap is currently offline"))
		a->cls = REDCAP_RETRY;
	else if (status == 401 || status == 403)
		a->cls = REDCAP_AUTH;
	else if (status == 408)
		a->cls = REDCAP_RETRY;
	else if (status == 501)
		a->cls = REDCAP_BAD_REQUEST;
	else if (status >= 500 && status <= 599)
		a->cls = REDCAP_RETRY;
	else
		a->cls = REDCAP_BAD_REQUEST;

	if (a->cls == REDCAP_BAD_REQUEST && a->errors.n == 0 && m && m[0] == '"') {
		rc = redcap_parse_value_errors(m, strlen(m), &a->errors);
		if (rc < 0) {
			redcap_answer_deinit(a);
			return rc;
		}
	}
	return (int)a->cls;
}

/* Whole-request messages REDCap sends, with a PHI-free label each. */
static const struct {
	const char *needle, *label;
} known[] = {
	{ "has been banned due to suspected abuse", "IP address banned" },
	{ "REDCap ran out of server memory", "out of server memory" },
	{ "is currently OFFLINE", "project offline" },
	{ "REDCap is currently offline", "system offline" },
	{ "You do not have permissions to use the API", "no API permission (token)" },
	{ "You do not have API Export privileges", "no API export privileges" },
	{ "You do not have API Import/Update privileges", "no API import privileges" },
	{ "The value of the parameter \"content\" is not valid", "bad content parameter" },
	{ "The following fields were not found in the project as real data fields", "unknown fields" },
	{ "The record id field (", "record id field missing" },
	{ "The record name cannot be empty", "empty record name" },
	{ "The following values of redcap_event_name are invalid", "invalid event names" },
	{ "Trying to import repeat instance/instrument fields", "repeat fields without repeating setup" },
	{ "cannot contain a plus sign", "bad record name" },
	{ "has an invalid value for 'redcap_repeat_instance'", "bad repeat instance" },
	{ "The data being imported is not formatted correctly", "data not formatted correctly" },
	{ "The following values in the parameter", "unknown names in a parameter" },
	{ "You cannot export events for classic projects", "classic project (no events)" },
	{ "The requested method is not implemented", "method not implemented" },
};

static void add_safe(rc_str *b, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		rc_str_addc(b, c < 0x20 || c == 0x7f ? '?' : (char)c);
	}
}

/*
 * PHI-free summary (see redcap.h). Field names are shown (they are schema,
 * not data); record names, values and free text never are.
 */
int redcap_answer_describe(const redcap_answer *a, char *out, size_t size)
{
	rc_str b = RC_STR_NULL;

	if (!a)
		return -EINVAL;
	rc_str_addf(&b, "%s (HTTP %d)", redcap_class_name(a->cls), a->status);
	if (a->errors.n) {
		size_t shown = 0;
		rc_str_addf(&b, ": %zu value error%s in ", a->errors.n, a->errors.n == 1 ? "" : "s");
		for (size_t i = 0; i < a->errors.n && shown < 6; i++) {
			const char *f = a->errors.v[i].field;
			bool seen = false;
			for (size_t j = 0; j < i && !seen; j++)
				seen = strcmp(a->errors.v[j].field, f) == 0;
			if (seen)
				continue;
			if (shown == 5) {
				rc_str_add(&b, ", ...");
				break;
			}
			if (shown)
				rc_str_add(&b, ", ");
			add_safe(&b, *f ? f : "(record)", 100);
			shown++;
		}
	} else if (a->message && *a->message) {
		const char *label = NULL;
		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]) && !label; i++)
			if (strstr(a->message, known[i].needle))
				label = known[i].label;
		if (label) {
			rc_str_addf(&b, ": %s", label);
			const char *colon = strstr(a->message, "real data fields: ");
			if (colon) {
				rc_str_add(&b, ": ");
				add_safe(&b, colon + 18, 200);
			}
		} else {
			rc_str_addf(&b, ": %zu-byte message", strlen(a->message));
		}
	}
	int n = b.err ? -ENOMEM : (int)b.len;
	if (size) {
		size_t k = b.s ? b.len : 0;
		if (k >= size)
			k = size - 1;
		if (k)
			memcpy(out, b.s, k);
		out[k] = 0;
	}
	rc_str_free(&b);
	return n;
}

/* ------------------------------------------------------------------------
 * Answer parsers.
 */

int redcap_parse_version(const char *buf, size_t len, redcap_version *v)
{
	size_t start, n;
	unsigned part[3] = { 0 };

	if (!buf || !v)
		return REDCAP_E_SHAPE;
	rc_trim(buf, len, &start, &n);
	const char *s = buf + start, *e = s + n;
	for (int k = 0; k < 3; k++) {
		size_t digits = 0;
		while (s < e && *s >= '0' && *s <= '9' && digits < 6) {
			part[k] = part[k] * 10 + (unsigned)(*s - '0');
			s++;
			digits++;
		}
		if (digits == 0 || digits > 5)
			return REDCAP_E_SHAPE;
		if (k < 2) {
			if (s >= e || *s != '.')
				return REDCAP_E_SHAPE;
			s++;
		}
	}
	if (s != e)
		return REDCAP_E_SHAPE;
	v->major = part[0];
	v->minor = part[1];
	v->patch = part[2];
	return 0;
}

/* Order two versions part by part. */
int redcap_version_cmp(const redcap_version *a, const redcap_version *b)
{
	if (a->major != b->major)
		return a->major < b->major ? -1 : 1;
	if (a->minor != b->minor)
		return a->minor < b->minor ? -1 : 1;
	if (a->patch != b->patch)
		return a->patch < b->patch ? -1 : 1;
	return 0;
}

/* Decimal digits only, at most 19 of them, into *out. */
static bool parse_count(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 19)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/*
 * {"count": N} (number or numeric string) or a bare count into *count.
 * Owns nothing. Returns 0, REDCAP_E_JSON or REDCAP_E_SHAPE.
 */
int redcap_parse_import_count(const char *buf, size_t len, uint64_t *count)
{
	size_t start, n;
	int rc = 0;

	if (!buf || !count)
		return REDCAP_E_SHAPE;
	rc_trim(buf, len, &start, &n);
	if (n && buf[start] != '{')
		return parse_count(buf + start, n, count) ? 0 : REDCAP_E_SHAPE;
	json_t *j = rc_json_load(buf, len, NULL, &rc);
	if (!j)
		return rc;
	const json_t *c = json_object_get(j, "count");
	rc = REDCAP_E_SHAPE;
	if (json_is_integer(c) && json_integer_value(c) >= 0) {
		*count = (uint64_t)json_integer_value(c);
		rc = 0;
	} else if (json_is_string(c) && parse_count(json_string_value(c), json_string_length(c), count)) {
		rc = 0;
	}
	json_decref(j);
	return rc;
}

/*
 * A JSON array of record names (strings or integers) into ids, which owns
 * copies afterwards (reset first; empty on failure). Returns 0,
 * REDCAP_E_JSON, REDCAP_E_SHAPE or -ENOMEM.
 */
int redcap_parse_import_ids(const char *buf, size_t len, redcap_strv *ids, redcap_error *err)
{
	int rc = 0;
	size_t i;
	json_t *e;

	if (!ids)
		return -EINVAL;
	redcap_strv_deinit(ids);
	json_t *j = rc_json_load(buf, len, err, &rc);
	if (!j)
		return rc;
	if (!json_is_array(j)) {
		rc_err(err, "ids answer: not a JSON array");
		json_decref(j);
		return REDCAP_E_SHAPE;
	}
	size_t n = json_array_size(j);
	ids->v = calloc(n ? n : 1, sizeof(*ids->v));
	if (!ids->v) {
		json_decref(j);
		return -ENOMEM;
	}
	json_array_foreach(j, i, e) {
		bool bad;
		if (!json_is_string(e) && !json_is_integer(e)) {
			rc_err(err, "ids answer: element %zu is not a string", i);
			rc = REDCAP_E_SHAPE;
			break;
		}
		ids->v[i] = rc_json_text(e, false, &bad);
		if (!ids->v[i]) {
			rc = -ENOMEM;
			break;
		}
		ids->n = i + 1;
	}
	json_decref(j);
	if (rc)
		redcap_strv_deinit(ids);
	return rc;
}

/* A 0/1 flag: number, numeric string or boolean; -1 if absent. */
static int flag(const json_t *o, const char *key, int *out, redcap_error *err)
{
	const json_t *v = json_object_get(o, key);
	*out = -1;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_boolean(v))
		*out = json_is_true(v);
	else if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
		*out = (int)json_integer_value(v);
	else if (json_is_string(v) && (strcmp(json_string_value(v), "0") == 0 || strcmp(json_string_value(v), "1") == 0))
		*out = json_string_value(v)[0] - '0';
	else if (json_is_string(v) && json_string_length(v) == 0)
		*out = -1;
	else {
		rc_err(err, "project answer: %s is neither 0 nor 1", key);
		return REDCAP_E_SHAPE;
	}
	return 0;
}

/* Free the title and drop the JSON reference; p is reset. Idempotent. */
void redcap_project_deinit(redcap_project *p)
{
	if (!p)
		return;
	free(p->title);
	json_decref(p->json);
	*p = (redcap_project)REDCAP_PROJECT_NULL;
}

/*
 * content=project into p (reset first; reset again on failure). p owns the
 * title and a reference to the whole object. Returns 0, REDCAP_E_JSON,
 * REDCAP_E_SHAPE or -ENOMEM.
 */
int redcap_parse_project(redcap_project *p, const char *buf, size_t len, redcap_error *err)
{
	int rc = 0;

	if (!p)
		return -EINVAL;
	redcap_project_deinit(p);
	json_t *j = rc_json_load(buf, len, err, &rc);
	if (!j)
		return rc;
	if (!json_is_object(j)) {
		rc_err(err, "project answer: not a JSON object");
		json_decref(j);
		return REDCAP_E_SHAPE;
	}
	p->json = j;
	const json_t *id = json_object_get(j, "project_id");
	uint64_t v;
	if (json_is_integer(id) && json_integer_value(id) >= 0)
		p->project_id = json_integer_value(id);
	else if (json_is_string(id) && parse_count(json_string_value(id), json_string_length(id), &v) &&
		 v <= INT64_MAX)
		p->project_id = (int64_t)v;
	else if (id && !json_is_null(id)) {
		rc_err(err, "project answer: project_id is not a number");
		rc = REDCAP_E_SHAPE;
	}
	const json_t *t = json_object_get(j, "project_title");
	if (!rc && t && !json_is_string(t) && !json_is_null(t)) {
		rc_err(err, "project answer: project_title is not a string");
		rc = REDCAP_E_SHAPE;
	}
	if (!rc) {
		p->title = strdup(json_is_string(t) ? json_string_value(t) : "");
		if (!p->title)
			rc = -ENOMEM;
	}
	if (!rc)
		rc = flag(j, "in_production", &p->in_production, err);
	if (!rc)
		rc = flag(j, "is_longitudinal", &p->longitudinal, err);
	if (!rc)
		rc = flag(j, "has_repeating_instruments_or_events", &p->repeating, err);
	if (!rc)
		rc = flag(j, "record_autonumbering_enabled", &p->autonumbering, err);
	if (rc)
		redcap_project_deinit(p);
	return rc;
}

/* Free every entry; f is empty afterwards. Idempotent. */
void redcap_export_fields_deinit(redcap_export_fields *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++) {
		free(f->v[i].original);
		free(f->v[i].choice);
		free(f->v[i].export_name);
	}
	free(f->v);
	f->v = NULL;
	f->n = 0;
}

/*
 * content=exportFieldNames into out (reset first; empty on failure), which
 * owns copies of the names. Returns 0, REDCAP_E_JSON, REDCAP_E_SHAPE or
 * -ENOMEM.
 */
int redcap_parse_export_field_names(const char *buf, size_t len, redcap_export_fields *out,
				    redcap_error *err)
{
	static const char *const keys[] = { "original_field_name", "choice_value", "export_field_name" };
	int rc = 0;
	size_t i;
	json_t *e;

	if (!out)
		return -EINVAL;
	redcap_export_fields_deinit(out);
	json_t *j = rc_json_load(buf, len, err, &rc);
	if (!j)
		return rc;
	if (!json_is_array(j)) {
		rc_err(err, "exportFieldNames answer: not a JSON array");
		json_decref(j);
		return REDCAP_E_SHAPE;
	}
	out->v = calloc(json_array_size(j) ? json_array_size(j) : 1, sizeof(*out->v));
	if (!out->v) {
		json_decref(j);
		return -ENOMEM;
	}
	json_array_foreach(j, i, e) {
		char *val[3] = { NULL, NULL, NULL };
		if (!json_is_object(e)) {
			rc_err(err, "exportFieldNames[%zu]: not an object", i);
			rc = REDCAP_E_SHAPE;
			break;
		}
		for (int k = 0; k < 3 && !rc; k++) {
			const json_t *v = json_object_get(e, keys[k]);
			bool bad = false;
			if (!v && k == 1)
				val[k] = strdup("");
			else if (!v || json_is_null(v) || !(val[k] = rc_json_text(v, false, &bad))) {
				if (v && !json_is_null(v) && !bad) {
					rc = -ENOMEM;
				} else {
					rc_err(err, "exportFieldNames[%zu].%s: missing or not a string", i, keys[k]);
					rc = REDCAP_E_SHAPE;
				}
			}
			if (!rc && !val[k])
				rc = -ENOMEM;
		}
		if (!rc && (!*val[0] || !*val[2])) {
			rc_err(err, "exportFieldNames[%zu]: empty field name", i);
			rc = REDCAP_E_SHAPE;
		}
		if (rc) {
			for (int k = 0; k < 3; k++)
				free(val[k]);
			break;
		}
		out->v[i] = (redcap_export_field){ val[0], val[1], val[2] };
		out->n = i + 1;
	}
	json_decref(j);
	if (rc)
		redcap_export_fields_deinit(out);
	return rc;
}
