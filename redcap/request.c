/*
 * redcap/request.c — the bodies of the API requests the bridge sends.
 *
 * Parameter names and values follow REDCap's API documentation and its own
 * examples (API/examples/ of REDCap 15.7.6: content=record with format and
 * type, no action; import adds data), and PyCap (redcap/methods/records.py:
 * records[i] arrays, dateRangeBegin as "%Y-%m-%d %H:%M:%S", import with
 * overwriteBehavior, returnContent, dateFormat, forceAutoNumber).
 */
#include "redcap/internal.h"

#include <errno.h>
#include <string.h>

/* 0 for 1..256 bytes of visible ASCII, else REDCAP_E_ARG. Never logs. */
int redcap_token_check(const char *token)
{
	if (!token)
		return REDCAP_E_ARG;
	size_t n = strlen(token);
	if (n == 0 || n > 256)
		return REDCAP_E_ARG;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)token[i] <= 0x20 || (unsigned char)token[i] >= 0x7f)
			return REDCAP_E_ARG;
	return 0;
}

static const char *const content_names[] = {
	[REDCAP_CONTENT_VERSION] = "version",
	[REDCAP_CONTENT_PROJECT] = "project",
	[REDCAP_CONTENT_METADATA] = "metadata",
	[REDCAP_CONTENT_INSTRUMENT] = "instrument",
	[REDCAP_CONTENT_EVENT] = "event",
	[REDCAP_CONTENT_ARM] = "arm",
	[REDCAP_CONTENT_FORM_EVENT_MAPPING] = "formEventMapping",
	[REDCAP_CONTENT_REPEATING_FORMS_EVENTS] = "repeatingFormsEvents",
	[REDCAP_CONTENT_EXPORT_FIELD_NAMES] = "exportFieldNames",
	[REDCAP_CONTENT_GENERATE_NEXT_RECORD_NAME] = "generateNextRecordName",
};

/* Static API name of a content, NULL when out of range. */
const char *redcap_content_name(redcap_content c)
{
	if ((unsigned)c >= sizeof(content_names) / sizeof(content_names[0]))
		return NULL;
	return content_names[c];
}

/* Start with token and content; 0 or an error code (nothing appended on
 * REDCAP_E_ARG). */
static int begin(redcap_body *b, const char *token, const char *content)
{
	if (!b)
		return -EINVAL;
	if (redcap_token_check(token))
		return REDCAP_E_ARG;
	int rc = redcap_body_add(b, "token", token);
	if (!rc)
		rc = redcap_body_add(b, "content", content);
	return rc;
}

/*
 * token=T&content=C&format=json&returnFormat=json. Returns 0, REDCAP_E_ARG,
 * -ENOMEM, REDCAP_E_TOO_LARGE.
 */
int redcap_request_info(redcap_body *b, const char *token, redcap_content what)
{
	const char *name = redcap_content_name(what);
	if (!name)
		return REDCAP_E_ARG;
	int rc = begin(b, token, name);
	if (!rc)
		rc = redcap_body_add(b, "format", "json");
	if (!rc)
		rc = redcap_body_add(b, "returnFormat", "json");
	return rc;
}

static bool digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int num(const char *s, size_t n)
{
	int v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/* Exactly "YYYY-MM-DD HH:MM:SS" with a real date and time. */
static bool is_range_time(const char *s)
{
	static const unsigned char mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	if (!s || strlen(s) != 19 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' ||
	    s[16] != ':')
		return false;
	if (!digits(s, 4) || !digits(s + 5, 2) || !digits(s + 8, 2) || !digits(s + 11, 2) ||
	    !digits(s + 14, 2) || !digits(s + 17, 2))
		return false;
	int y = num(s, 4), m = num(s + 5, 2), d = num(s + 8, 2);
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return false;
	return num(s + 11, 2) < 24 && num(s + 14, 2) < 60 && num(s + 17, 2) < 60;
}

static bool names_ok(const char *const *v, size_t n)
{
	if (n && !v)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!v[i] || !*v[i])
			return false;
	return true;
}

/*
 * content=record export (see redcap.h for the parameters). Checks the
 * options before appending anything. Returns 0, REDCAP_E_ARG, -ENOMEM,
 * REDCAP_E_TOO_LARGE.
 */
int redcap_request_export(redcap_body *b, const char *token, const redcap_export_opts *o)
{
	static const redcap_export_opts none = { 0 };

	if (!o)
		o = &none;
	if (!names_ok(o->records, o->n_records) || !names_ok(o->fields, o->n_fields) ||
	    !names_ok(o->forms, o->n_forms) || !names_ok(o->events, o->n_events))
		return REDCAP_E_ARG;
	if ((o->date_begin && !is_range_time(o->date_begin)) || (o->date_end && !is_range_time(o->date_end)))
		return REDCAP_E_ARG;
	if (o->date_begin && o->date_end && strcmp(o->date_begin, o->date_end) > 0)
		return REDCAP_E_ARG;
	if (o->format != REDCAP_FORMAT_JSON && o->format != REDCAP_FORMAT_CSV)
		return REDCAP_E_ARG;

	int rc = begin(b, token, "record");
	if (!rc)
		rc = redcap_body_add(b, "format", o->format == REDCAP_FORMAT_CSV ? "csv" : "json");
	if (!rc)
		rc = redcap_body_add(b, "type", "flat");
	if (!rc)
		rc = redcap_body_add_list(b, "records", o->records, o->n_records);
	if (!rc)
		rc = redcap_body_add_list(b, "fields", o->fields, o->n_fields);
	if (!rc)
		rc = redcap_body_add_list(b, "forms", o->forms, o->n_forms);
	if (!rc)
		rc = redcap_body_add_list(b, "events", o->events, o->n_events);
	if (!rc)
		rc = redcap_body_add(b, "rawOrLabel", o->label_values ? "label" : "raw");
	if (!rc)
		rc = redcap_body_add(b, "rawOrLabelHeaders", o->label_headers ? "label" : "raw");
	if (!rc)
		rc = redcap_body_add(b, "exportCheckboxLabel", o->checkbox_labels ? "true" : "false");
	if (!rc && o->data_access_groups)
		rc = redcap_body_add(b, "exportDataAccessGroups", "true");
	if (!rc && o->filter_logic && *o->filter_logic)
		rc = redcap_body_add(b, "filterLogic", o->filter_logic);
	if (!rc && o->date_begin)
		rc = redcap_body_add(b, "dateRangeBegin", o->date_begin);
	if (!rc && o->date_end)
		rc = redcap_body_add(b, "dateRangeEnd", o->date_end);
	if (!rc)
		rc = redcap_body_add(b, "returnFormat", "json");
	return rc;
}

/*
 * content=record import of the JSON array text json[0..json_len). Returns
 * 0, REDCAP_E_ARG (token, not an array), -ENOMEM, REDCAP_E_TOO_LARGE.
 */
int redcap_request_import(redcap_body *b, const char *token, const redcap_import_opts *o,
			  const char *json, size_t json_len)
{
	static const redcap_import_opts none = { 0 };
	size_t i = 0;

	if (!o)
		o = &none;
	if (!json)
		return REDCAP_E_ARG;
	while (i < json_len && (json[i] == ' ' || json[i] == '\t' || json[i] == '\n' || json[i] == '\r'))
		i++;
	if (i == json_len || json[i] != '[')
		return REDCAP_E_ARG;

	int rc = begin(b, token, "record");
	if (!rc)
		rc = redcap_body_add(b, "format", "json");
	if (!rc)
		rc = redcap_body_add(b, "type", "flat");
	if (!rc)
		rc = redcap_body_add(b, "overwriteBehavior", o->overwrite ? "overwrite" : "normal");
	if (!rc)
		rc = redcap_body_add(b, "forceAutoNumber", o->force_auto_number ? "true" : "false");
	if (!rc)
		rc = redcap_body_add(b, "dateFormat", "YMD");
	if (!rc)
		rc = redcap_body_add(b, "returnContent", o->return_ids ? "ids" : "count");
	if (!rc)
		rc = redcap_body_add(b, "returnFormat", "json");
	if (!rc)
		rc = redcap_body_addn(b, "data", json, json_len);
	return rc;
}

/*
 * Import of Jansson rows: serialised compactly (wiped after use) and sent
 * as data. Returns 0, REDCAP_E_ARG, -ENOMEM, REDCAP_E_TOO_LARGE.
 */
int redcap_request_import_rows(redcap_body *b, const char *token, const redcap_import_opts *o,
			       const json_t *rows)
{
	size_t i;
	json_t *row;

	if (!json_is_array(rows))
		return REDCAP_E_ARG;
	json_array_foreach(rows, i, row)
		if (!json_is_object(row))
			return REDCAP_E_ARG;
	if (redcap_token_check(token))
		return REDCAP_E_ARG;
	char *text = json_dumps(rows, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!text)
		return -ENOMEM;
	size_t len = strlen(text);
	int rc = redcap_request_import(b, token, o, text, len);
	redcap_body_free(text, len);
	return rc;
}
