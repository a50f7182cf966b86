/*
 * bridge/ui-pages.c — the pages of the charting page behind the login:
 * search, the patient page with its chart forms, registration of a
 * temporary patient, the user's entries, and the stylesheet (see ui.h).
 *
 * Every page is rendered synchronously from the store on the loop thread.
 * Everything that comes from a request or from the store goes through
 * html_esc (or html_attr_url inside a URL).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "bridge/chart.h"
#include "bridge/curate.h"
#include "bridge/downtime-ops.h"
#include "bridge/downtime.h"
#include "bridge/log.h"
#include "bridge/patients.h"
#include "bridge/ui-internal.h"
#include "offline-store/outbox.h"

#define UI_LOG "ui"
#define SEARCH_LIMIT 50
#define ENTRIES_LIMIT 500

static const char *js(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* s, or NULL when it is NULL or empty. */
static const char *nz(const char *s)
{
	return s && *s ? s : NULL;
}

/* s escaped, or "-" when it is NULL or empty. */
static void put_or_dash(html_buf *b, const char *s)
{
	if (s && *s)
		html_esc(b, s);
	else
		html_puts(b, "-");
}

static bool charting_on(ui_req *q)
{
	return q->u->env.cfg->downtime_identifier_system != NULL;
}

static void charting_off_page(ui_req *q)
{
	ui_error_page(q, 503, "Charting is off",
		      "Charting is off: downtime.identifier_system is not set in the bridge's configuration.");
}

/* ---- home and search -------------------------------------------------------- */

/* ---- list tables: a column spec per table, one renderer ---------------------- */

/* What a row's action column needs: the request, the patient and the forms' state. */
typedef struct table_ctx {
	ui_req *q;
	const char *patient;
	const ui_form_state *fs;
} table_ctx;

typedef enum {
	CELL_TEXT,	/* the string at key, or "-" */
	CELL_TIME,	/* the instant at key, in the site's time zone */
	CELL_LIST,	/* the strings of the array at key, joined by "; " */
	CELL_QUANTITY,	/* the string at key and the "unit" after it, in a value cell */
	CELL_CALL,	/* whatever put writes */
} cell_kind;

typedef struct table_col {
	const char *header;
	const char *key;
	cell_kind kind;
	void (*put)(html_buf *b, const json_t *row); /* CELL_CALL only */
} table_col;

typedef struct table_spec {
	const char *id;	/* of the table, or NULL */
	const table_col *cols;
	size_t n_cols;
	bool newest_first;				   /* the list is oldest first: show it backwards */
	void (*row_attrs)(html_buf *b, const json_t *row); /* after "<tr", or NULL */
	void (*action)(const table_ctx *c, html_buf *b, const json_t *row); /* a last "Change" column, or NULL */
} table_spec;

#define TABLE_COLS(a) .cols = (a), .n_cols = sizeof(a) / sizeof((a)[0])

static void put_cell(html_buf *b, const table_col *col, const json_t *row)
{
	size_t k;
	json_t *s;
	html_puts(b, col->kind == CELL_QUANTITY ? "<td class=\"value\">" : "<td>");
	switch (col->kind) {
	case CELL_TEXT:
		put_or_dash(b, js(row, col->key));
		break;
	case CELL_TIME:
		ui_put_time(b, js(row, col->key));
		break;
	case CELL_LIST:
		json_array_foreach(json_object_get(row, col->key), k, s)
		{
			if (k)
				html_puts(b, "; ");
			html_esc(b, json_string_value(s));
		}
		break;
	case CELL_QUANTITY:
		put_or_dash(b, js(row, col->key));
		if (js(row, "unit")) {
			html_puts(b, " ");
			html_esc(b, js(row, "unit"));
		}
		break;
	case CELL_CALL:
		col->put(b, row);
		break;
	}
	html_puts(b, "</td>");
}

/* The table of list under spec: the header row, then one row per item. c is for the action column (may be NULL
 * without one). */
static void put_table(html_buf *b, const table_spec *spec, const json_t *list, const table_ctx *c)
{
	html_puts(b, "<table class=\"list\"");
	if (spec->id)
		html_printf(b, " id=\"%s\"", spec->id);
	html_puts(b, "><thead><tr>");
	for (size_t k = 0; k < spec->n_cols; k++)
		html_printf(b, "<th>%s</th>", spec->cols[k].header);
	if (spec->action)
		html_puts(b, "<th>Change</th>");
	html_puts(b, "</tr></thead><tbody>");
	size_t n = json_array_size(list);
	for (size_t i = 0; i < n; i++) {
		const json_t *row = json_array_get(list, spec->newest_first ? n - 1 - i : i);
		html_puts(b, "<tr");
		if (spec->row_attrs)
			spec->row_attrs(b, row);
		html_puts(b, ">");
		for (size_t k = 0; k < spec->n_cols; k++)
			put_cell(b, &spec->cols[k], row);
		if (spec->action) {
			html_puts(b, "<td>");
			spec->action(c, b, row);
			html_puts(b, "</td>");
		}
		html_puts(b, "</tr>");
	}
	html_puts(b, "</tbody></table>");
}

/* A card of the patient page: its title, then the table of list or the none message when list is empty. */
typedef struct section_spec {
	const char *id, *title, *none;
	table_spec table;
} section_spec;

static void put_section(html_buf *b, const section_spec *sec, const json_t *list, const table_ctx *c)
{
	html_printf(b, "<section class=\"card\" id=\"%s\"><h2>%s</h2>", sec->id, sec->title);
	if (!json_array_size(list)) {
		html_printf(b, "<p class=\"none\">%s</p></section>", sec->none);
		return;
	}
	put_table(b, &sec->table, list, c);
	html_puts(b, "</section>");
}

static void search_form(html_buf *b, const char *text)
{
	html_puts(b, "<form method=\"get\" action=\"/search\" class=\"card search\" role=\"search\">"
		     "<label for=\"q\">Family name and birth date (YYYY-MM-DD), or MRN</label><div class=\"row\">"
		     "<input id=\"q\" name=\"q\" type=\"search\" required autofocus autocomplete=\"off\" value=\"");
	html_esc(b, text);
	html_puts(b, "\"><button type=\"submit\">Search</button></div></form>");
}

void ui_page_home(ui_req *q)
{
	html_buf b;
	ui_page_begin(q, &b, "Find a patient");
	html_puts(&b, "<h1>Find a patient</h1>");
	search_form(&b, "");
	html_puts(&b, "<p class=\"links\"><a class=\"button secondary\" href=\"/register\" id=\"register-link\">"
		      "Register a patient not in the cache</a><a class=\"button secondary\" href=\"/entries\" "
		      "id=\"entries-link\">My entries</a></p>");
	if (!charting_on(q))
		html_puts(&b, "<p class=\"message warn\">Charting is off: downtime.identifier_system is not set in the "
			      "bridge's configuration. The cached summaries can still be read.</p>");
	ui_page_end(q, &b, 200);
}

/* The name cell of a search result: a link to the patient page. */
static void search_name(html_buf *b, const json_t *p)
{
	html_puts(b, "<a href=\"/patient/");
	html_attr_url(b, js(p, "id"));
	html_puts(b, "\">");
	html_esc(b, nz(js(p, "name")) ? js(p, "name") : "(no name)");
	html_puts(b, "</a>");
	if (json_is_true(json_object_get(p, "deceased")))
		html_puts(b, " <span class=\"badge\">deceased</span>");
}

static const table_col search_cols[] = {
	{ "Name", NULL, CELL_CALL, search_name },
	{ "MRN", "mrn", CELL_TEXT, NULL },
	{ "Birth date", "birth_date", CELL_TEXT, NULL },
	{ "Gender", "gender", CELL_TEXT, NULL },
};
static const table_spec search_table = { .id = "results", TABLE_COLS(search_cols) };

void ui_page_search(ui_req *q)
{
	if (web_query_count(q->r, "q") > 1) {
		ui_error_page(q, 400, "Bad request", "One search at a time.");
		return;
	}
	const char *text = web_query(q->r, "q");
	if (!text || !text[strspn(text, " ")]) {
		ui_redirect(q, "/");
		return;
	}
	ui *u = q->u;
	char err[512] = "";
	json_t *rows = downtime_ops_search(u->st, u->env.server_id, u->env.cfg->fhir_mrn_system, text, SEARCH_LIMIT,
					   q->now_ms, err, sizeof(err));
	char detail[64];
	snprintf(detail, sizeof(detail), "%zu found", json_array_size(rows));
	if (rows && store_audit_add(u->st, q->user.name, "search", NULL, detail, q->now_ms) != 0) {
		log_error(UI_LOG, "cannot record the search: %s", store_errmsg(u->st));
		json_decref(rows);
		ui_error_page(q, 500, "Internal error",
			      "The search could not be recorded in the audit log; try again.");
		return;
	}
	html_buf b;
	ui_page_begin(q, &b, "Search");
	html_puts(&b, "<h1>Find a patient</h1>");
	search_form(&b, text);
	if (!rows) {
		html_puts(&b, "<p class=\"message error\" id=\"search-error\">");
		html_esc(&b, err);
		html_puts(&b, "</p>");
		ui_page_end(q, &b, 200);
		return;
	}
	size_t n = json_array_size(rows);
	if (n == 0) {
		html_puts(&b, "<p class=\"message warn\" id=\"no-match\">No cached patient matches. Check the spelling "
			      "and the birth date, or <a href=\"/register\">register the patient</a>.</p>");
	} else {
		html_printf(&b, "<p>%zu patient%s%s</p>", n, n == 1 ? "" : "s",
			    n == SEARCH_LIMIT ? " (the first ones: narrow the search)" : "");
		put_table(&b, &search_table, rows, NULL);
	}
	json_decref(rows);
	ui_page_end(q, &b, 200);
}

/* ---- entries: a short text of what was charted ------------------------------ */

static void put_number(html_buf *b, const json_t *v)
{
	if (json_is_integer(v))
		html_printf(b, "%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		html_printf(b, "%.15g", json_real_value(v));
}

/* CodeableConcept as text: text, else the first coding's display, else its code. */
static const char *concept_text(const json_t *cc)
{
	const char *t = js(cc, "text");
	if (nz(t))
		return t;
	const json_t *c0 = json_array_get(json_object_get(cc, "coding"), 0);
	t = js(c0, "display");
	return nz(t) ? t : js(c0, "code");
}

static void put_quantity(html_buf *b, const json_t *qty)
{
	put_number(b, json_object_get(qty, "value"));
	const char *unit = js(qty, "unit");
	if (!unit)
		unit = js(qty, "code");
	if (unit) {
		html_puts(b, " ");
		html_esc(b, unit);
	}
}

/* A note's text (base64 in the attachment), its first 160 bytes. */
static void put_note_text(html_buf *b, const json_t *doc)
{
	const json_t *att = json_object_get(json_array_get(json_object_get(doc, "content"), 0), "attachment");
	const char *data = js(att, "data");
	size_t n = data ? strlen(data) : 0;
	unsigned char *out = n ? malloc(n / 4 * 3 + 3) : NULL;
	int len = out ? EVP_DecodeBlock(out, (const unsigned char *)data, (int)n) : -1;
	if (len < 0) {
		html_puts(b, "Note");
		free(out);
		return;
	}
	while (n > 0 && data[n - 1] == '=') {
		n--;
		len--;
	}
	size_t shown = (size_t)len > 160 ? 160 : (size_t)len;
	while (shown < (size_t)len && shown > 0 && (out[shown] & 0xc0) == 0x80)
		shown--; /* do not cut a character */
	html_puts(b, "Note: &ldquo;");
	html_escn(b, (const char *)out, shown);
	html_puts(b, (size_t)len > shown ? "&hellip;&rdquo;" : "&rdquo;");
	OPENSSL_cleanse(out, (size_t)len);
	free(out);
}

static void put_entry_what(html_buf *b, const char *kind, const json_t *res)
{
	if (!res) {
		html_esc(b, kind);
		return;
	}
	if (strcmp(kind, "vitals") == 0) {
		html_esc(b, concept_text(json_object_get(res, "code")));
		html_puts(b, " ");
		const json_t *comp = json_object_get(res, "component");
		if (json_array_size(comp) == 2) {
			const json_t *q0 = json_object_get(json_array_get(comp, 0), "valueQuantity");
			const json_t *q1 = json_object_get(json_array_get(comp, 1), "valueQuantity");
			put_number(b, json_object_get(q0, "value"));
			html_puts(b, "/");
			put_quantity(b, q1);
		} else {
			put_quantity(b, json_object_get(res, "valueQuantity"));
		}
	} else if (strcmp(kind, "note") == 0) {
		put_note_text(b, res);
	} else if (strcmp(kind, "med-admin") == 0) {
		const json_t *cc = json_object_get(res, "medicationCodeableConcept");
		html_puts(b, "Given: ");
		put_or_dash(b, cc ? concept_text(cc) : js(json_object_get(res, "medicationReference"), "display"));
		const json_t *dosage = json_object_get(res, "dosage");
		if (json_object_get(dosage, "dose")) {
			html_puts(b, ", ");
			put_quantity(b, json_object_get(dosage, "dose"));
		}
		const char *route = js(json_object_get(dosage, "route"), "text");
		if (route) {
			html_puts(b, ", ");
			html_esc(b, route);
		}
	} else if (strcmp(kind, "med-stop") == 0) {
		html_puts(b, "Stopped: ");
		put_or_dash(b, concept_text(json_object_get(res, "medicationCodeableConcept")));
	} else if (strcmp(kind, "allergy-error") == 0) {
		html_puts(b, "Allergy entered in error: ");
		put_or_dash(b, concept_text(json_object_get(res, "code")));
	} else {
		html_esc(b, kind);
	}
}

static void put_state(html_buf *b, const char *state)
{
	html_puts(b, "<span class=\"state state-");
	html_esc(b, state);
	html_puts(b, "\">");
	html_esc(b, state);
	html_puts(b, "</span>");
}

/* ---- the patient page -------------------------------------------------------- */

/* A form field as typed when this form is answered again, else dflt. */
static const char *kept(ui_req *q, const ui_form_state *fs, const char *kind, const char *name, const char *dflt)
{
	if (fs && fs->kind && strcmp(fs->kind, kind) == 0 && !fs->target) {
		const char *v = web_form(q->r, name);
		return v ? v : "";
	}
	return dflt;
}

static bool form_in_error(const ui_form_state *fs, const char *kind, const char *target)
{
	if (!fs || !fs->kind || strcmp(fs->kind, kind) != 0)
		return false;
	return target ? fs->target && strcmp(fs->target, target) == 0 : !fs->target;
}

/* The message of a form in error, when it is not about one of the form's fields. */
static void put_form_message(html_buf *b, const ui_form_state *fs, const char *kind, const char *target,
			     const char *const *fields)
{
	if (!form_in_error(fs, kind, target))
		return;
	for (size_t i = 0; fields && fields[i] && fs->field; i++)
		if (strcmp(fields[i], fs->field) == 0)
			return; /* shown next to the field */
	html_printf(b, "<p class=\"message %s\" role=\"alert\" id=\"form-error\">", fs->confirm ? "warn" : "error");
	html_esc(b, fs->msg);
	html_puts(b, "</p>");
}

/* The message next to a field, when it is about it. */
static void put_field_error(html_buf *b, const ui_form_state *fs, const char *kind, const char *field)
{
	if (!form_in_error(fs, kind, NULL) || !fs->field || strcmp(fs->field, field) != 0)
		return;
	html_printf(b, "<p class=\"field-%s\" role=\"alert\" id=\"%s-error\">", fs->confirm ? "confirm" : "error",
		    field);
	html_esc(b, fs->msg);
	html_puts(b, "</p>");
}

static void put_confirm(html_buf *b, const ui_form_state *fs, const char *kind, const char *id)
{
	if (!form_in_error(fs, kind, NULL) || !fs->confirm)
		return;
	html_printf(b, "<div class=\"confirm\"><input type=\"checkbox\" id=\"%s\" name=\"confirm\" value=\"1\">"
		       "<label for=\"%s\">I confirm this value</label></div>",
		    id, id);
}

/* A chart form; an answer in error scrolls back to anchor (a section id). */
static void form_open(ui_req *q, html_buf *b, const char *patient, const char *kind, const char *cls,
		      const char *anchor)
{
	html_printf(b, "<form method=\"post\" class=\"%s\" action=\"/patient/", cls);
	html_attr_url(b, patient);
	html_printf(b, "/chart#%s\">", anchor);
	ui_csrf_input(q, b);
	html_printf(b, "<input type=\"hidden\" name=\"kind\" value=\"%s\">", kind);
}

static void put_option(html_buf *b, const char *value, const char *label, const char *selected)
{
	html_puts(b, "<option value=\"");
	html_esc(b, value);
	html_puts(b, "\"");
	if (selected && strcmp(selected, value) == 0)
		html_puts(b, " selected");
	html_puts(b, ">");
	html_esc(b, label);
	html_puts(b, "</option>");
}

static void put_input(html_buf *b, const char *id, const char *name, const char *type, const char *value,
		      const char *extra)
{
	html_printf(b, "<input id=\"%s\" name=\"%s\" type=\"%s\" value=\"", id, name, type);
	html_esc(b, value);
	html_printf(b, "\"%s%s>", extra ? " " : "", extra ? extra : "");
}

/* Now in the site's time as a datetime-local value. */
static void now_local(int64_t now_ms, char *out, size_t size)
{
	time_t t = (time_t)(now_ms / 1000);
	struct tm tm;
	if (!localtime_r(&t, &tm) || strftime(out, size, "%Y-%m-%dT%H:%M", &tm) == 0)
		snprintf(out, size, "%s", "");
}

static void put_at_field(ui_req *q, html_buf *b, const ui_form_state *fs, const char *kind, const char *id)
{
	char now[32];
	now_local(q->now_ms, now, sizeof(now));
	html_printf(b, "<label for=\"%s\">When it happened <small>(site time)</small></label>", id);
	put_input(b, id, "at", "datetime-local", kept(q, fs, kind, "at", now), NULL);
	put_field_error(b, fs, kind, "at");
}

static void vitals_form(ui_req *q, html_buf *b, const char *patient, const ui_form_state *fs)
{
	static const char *const fields[] = { "code", "value", "unit", "at", NULL };
	html_puts(b, "<section class=\"card\" id=\"chart-vitals\"><h2>Chart a vital sign</h2>");
	put_form_message(b, fs, "vitals", NULL, fields);
	form_open(q, b, patient, "vitals", "chart", "chart-vitals");
	const char *code = kept(q, fs, "vitals", "code", "hr");
	html_puts(b, "<label for=\"v-code\">Sign</label><select id=\"v-code\" name=\"code\">");
	put_option(b, "hr", "Heart rate (/min)", code);
	put_option(b, "bp", "Blood pressure SYS/DIA (mmHg)", code);
	put_option(b, "rr", "Respiratory rate (/min)", code);
	put_option(b, "temp", "Temperature", code);
	put_option(b, "spo2", "SpO2 (%)", code);
	put_option(b, "weight", "Weight", code);
	html_puts(b, "</select>");
	put_field_error(b, fs, "vitals", "code");
	html_puts(b, "<label for=\"v-value\">Value <small>(blood pressure as SYS/DIA, e.g. 120/80)</small></label>");
	put_input(b, "v-value", "value", "text", kept(q, fs, "vitals", "value", ""),
		  "inputmode=\"decimal\" autocomplete=\"off\" required");
	put_field_error(b, fs, "vitals", "value");
	const char *unit = kept(q, fs, "vitals", "unit", "");
	html_puts(b, "<label for=\"v-unit\">Unit</label><select id=\"v-unit\" name=\"unit\">");
	put_option(b, "", "the usual unit of the sign", unit);
	put_option(b, "/min", "/min", unit);
	put_option(b, "mm[Hg]", "mmHg", unit);
	put_option(b, "Cel", "\xc2\xb0" "C", unit);
	put_option(b, "[degF]", "\xc2\xb0" "F", unit);
	put_option(b, "%", "%", unit);
	put_option(b, "kg", "kg", unit);
	put_option(b, "g", "g", unit);
	put_option(b, "[lb_av]", "lb", unit);
	html_puts(b, "</select>");
	put_field_error(b, fs, "vitals", "unit");
	put_at_field(q, b, fs, "vitals", "v-at");
	put_confirm(b, fs, "vitals", "v-confirm");
	html_puts(b, "<button type=\"submit\" id=\"save-vitals\">Save vital sign</button></form></section>");
}

static void note_form(ui_req *q, html_buf *b, const char *patient, const ui_form_state *fs)
{
	static const char *const fields[] = { "text", "at", NULL };
	html_puts(b, "<section class=\"card\" id=\"chart-note\"><h2>Write a note</h2>");
	put_form_message(b, fs, "note", NULL, fields);
	form_open(q, b, patient, "note", "chart", "chart-note");
	html_puts(b, "<label for=\"n-text\">Note</label><textarea id=\"n-text\" name=\"text\" rows=\"6\" required>");
	html_esc(b, kept(q, fs, "note", "text", ""));
	html_puts(b, "</textarea>");
	put_field_error(b, fs, "note", "text");
	put_at_field(q, b, fs, "note", "n-at");
	put_confirm(b, fs, "note", "n-confirm");
	html_puts(b, "<button type=\"submit\" id=\"save-note\">Save note</button></form></section>");
}

static void med_admin_form(ui_req *q, html_buf *b, const char *patient, const json_t *meds, const ui_form_state *fs)
{
	static const char *const fields[] = { "med_request", "med_code", "med_display", "dose_value", "dose_unit",
					      "route", "at", NULL };
	html_puts(b, "<section class=\"card\" id=\"chart-med-admin\"><h2>Chart a medication given</h2>");
	put_form_message(b, fs, "med-admin", NULL, fields);
	form_open(q, b, patient, "med-admin", "chart", "chart-med-admin");
	const char *sel = kept(q, fs, "med-admin", "med_request", "");
	html_puts(b, "<label for=\"m-request\">Medication</label><select id=\"m-request\" name=\"med_request\">");
	size_t i;
	json_t *m;
	json_array_foreach(meds, i, m)
	{
		const char *src = js(m, "source");
		if (!src || strcmp(src, "request") != 0 || !js(m, "id"))
			continue;
		put_option(b, js(m, "id"), nz(js(m, "text")) ? js(m, "text") : js(m, "id"), sel);
	}
	put_option(b, "", "another medication (code and name below)", sel);
	html_puts(b, "</select>");
	put_field_error(b, fs, "med-admin", "med_request");
	html_puts(b, "<div class=\"row\"><div><label for=\"m-code\">Code <small>(system|code, for another "
		     "medication)</small></label>");
	put_input(b, "m-code", "med_code", "text", kept(q, fs, "med-admin", "med_code", ""), "autocomplete=\"off\"");
	put_field_error(b, fs, "med-admin", "med_code");
	html_puts(b, "</div><div><label for=\"m-display\">Name</label>");
	put_input(b, "m-display", "med_display", "text", kept(q, fs, "med-admin", "med_display", ""),
		  "autocomplete=\"off\"");
	put_field_error(b, fs, "med-admin", "med_display");
	html_puts(b, "</div></div><div class=\"row\"><div><label for=\"m-dose\">Dose</label>");
	put_input(b, "m-dose", "dose_value", "text", kept(q, fs, "med-admin", "dose_value", ""),
		  "inputmode=\"decimal\" autocomplete=\"off\"");
	put_field_error(b, fs, "med-admin", "dose_value");
	html_puts(b, "</div><div><label for=\"m-unit\">Dose unit <small>(mg, mL, ug, [iU] ...)</small></label>");
	put_input(b, "m-unit", "dose_unit", "text", kept(q, fs, "med-admin", "dose_unit", ""), "autocomplete=\"off\"");
	put_field_error(b, fs, "med-admin", "dose_unit");
	html_puts(b, "</div><div><label for=\"m-route\">Route</label>");
	put_input(b, "m-route", "route", "text", kept(q, fs, "med-admin", "route", ""), "autocomplete=\"off\"");
	put_field_error(b, fs, "med-admin", "route");
	html_puts(b, "</div></div>");
	put_at_field(q, b, fs, "med-admin", "m-at");
	put_confirm(b, fs, "med-admin", "m-confirm");
	html_puts(b, "<button type=\"submit\" id=\"save-med-admin\">Save medication given</button></form></section>");
}

/* The small per-row form of a change to an EHR resource (med-stop, allergy-error). */
static void change_form(ui_req *q, html_buf *b, const char *patient, const char *kind, const char *target,
			const char *button, const ui_form_state *fs)
{
	if (form_in_error(fs, kind, target)) {
		html_puts(b, "<p class=\"message error\" role=\"alert\">");
		html_esc(b, fs->msg);
		html_puts(b, "</p>");
	}
	form_open(q, b, patient, kind, "change", strcmp(kind, "med-stop") == 0 ? "medications" : "allergies");
	html_puts(b, "<input type=\"hidden\" name=\"target\" value=\"");
	html_esc(b, target);
	html_puts(b, "\"><input name=\"reason\" type=\"text\" placeholder=\"reason\" aria-label=\"reason\" "
		     "autocomplete=\"off\"><button type=\"submit\" class=\"danger\">");
	html_esc(b, button);
	html_puts(b, "</button></form>");
}

static void put_demographics(html_buf *b, const json_t *sum, bool temp)
{
	const json_t *p = json_object_get(sum, "patient");
	if (temp) {
		const json_t *d = json_object_get(p, "registered");
		html_puts(b, "<div class=\"banner temp\" role=\"alert\" id=\"temp-banner\">TEMPORARY PATIENT &mdash; "
			     "not linked to the EHR; entries wait until a person links it</div>");
		html_puts(b, "<section class=\"patient card\"><h1 id=\"patient-name\">");
		html_esc(b, js(d, "family"));
		html_puts(b, ", ");
		html_esc(b, js(d, "given"));
		html_puts(b, "</h1><dl class=\"demo\"><dt>Temporary id</dt><dd id=\"patient-id\">");
		html_esc(b, js(p, "id"));
		html_puts(b, "</dd><dt>Born</dt><dd>");
		put_or_dash(b, js(d, "birth_date"));
		html_puts(b, "</dd><dt>Gender</dt><dd>");
		put_or_dash(b, js(d, "gender"));
		html_puts(b, "</dd></dl></section>");
		return;
	}
	html_puts(b, "<section class=\"patient card\"><h1 id=\"patient-name\">");
	html_esc(b, nz(js(p, "name")) ? js(p, "name") : "(no name)");
	if (json_is_true(json_object_get(p, "deceased")))
		html_puts(b, " <span class=\"badge\">deceased</span>");
	html_puts(b, "</h1><dl class=\"demo\"><dt>MRN</dt><dd id=\"mrn\">");
	put_or_dash(b, js(p, "mrn"));
	html_puts(b, "</dd><dt>Born</dt><dd>");
	put_or_dash(b, js(p, "birth_date"));
	const json_t *age = json_object_get(p, "age");
	if (json_is_integer(age))
		html_printf(b, " (%lld y)", (long long)json_integer_value(age));
	html_puts(b, "</dd><dt>Gender</dt><dd>");
	put_or_dash(b, js(p, "gender"));
	html_puts(b, "</dd><dt>EHR id</dt><dd id=\"patient-id\">");
	html_esc(b, js(p, "id"));
	html_puts(b, "</dd></dl></section>");
}

static void allergy_attrs(html_buf *b, const json_t *a)
{
	const char *crit = js(a, "criticality");
	if (crit && strcmp(crit, "high") == 0)
		html_puts(b, " class=\"high\"");
}

static void allergy_action(const table_ctx *c, html_buf *b, const json_t *a)
{
	if (js(a, "id") && charting_on(c->q))
		change_form(c->q, b, c->patient, "allergy-error", js(a, "id"), "Entered in error", c->fs);
}

static void medication_action(const table_ctx *c, html_buf *b, const json_t *m)
{
	const char *src = js(m, "source");
	if (src && strcmp(src, "request") == 0 && js(m, "id") && charting_on(c->q))
		change_form(c->q, b, c->patient, "med-stop", js(m, "id"), "Stop", c->fs);
}

static void entry_attrs(html_buf *b, const json_t *e)
{
	html_puts(b, " data-uuid=\"");
	html_esc(b, js(e, "uuid"));
	html_puts(b, "\"");
}

static void entry_what(html_buf *b, const json_t *e)
{
	put_entry_what(b, js(e, "kind") ? js(e, "kind") : "?", json_object_get(e, "resource"));
}

static void entry_state(html_buf *b, const json_t *e)
{
	put_state(b, js(e, "state") ? js(e, "state") : "unknown");
}

static void entry_ehr(html_buf *b, const json_t *e)
{
	if (js(e, "ehr_ref"))
		html_esc(b, js(e, "ehr_ref"));
	else
		put_or_dash(b, js(e, "last_error"));
}

static const table_col allergy_cols[] = {
	{ "Substance", "text", CELL_TEXT, NULL },
	{ "Criticality", "criticality", CELL_TEXT, NULL },
	{ "Reactions", "reactions", CELL_LIST, NULL },
	{ "Recorded", "recorded", CELL_TIME, NULL },
};
static const table_col medication_cols[] = {
	{ "Medication", "text", CELL_TEXT, NULL },
	{ "Dosage", "dosage", CELL_TEXT, NULL },
	{ "Status", "status", CELL_TEXT, NULL },
	{ "Since", "authored", CELL_TIME, NULL },
};
static const table_col problem_cols[] = {
	{ "Problem", "text", CELL_TEXT, NULL },
	{ "Onset", "onset", CELL_TIME, NULL },
	{ "Category", "category", CELL_TEXT, NULL },
};
static const table_col vital_cols[] = {
	{ "Sign", "display", CELL_TEXT, NULL },
	{ "Value", "value", CELL_QUANTITY, NULL },
	{ "Time", "time", CELL_TIME, NULL },
};
static const table_col lab_cols[] = {
	{ "Test", "display", CELL_TEXT, NULL },
	{ "Value", "value", CELL_QUANTITY, NULL },
	{ "Flag", "interpretation", CELL_TEXT, NULL },
	{ "Reference", "reference_range", CELL_TEXT, NULL },
	{ "Time", "time", CELL_TIME, NULL },
};
static const table_col bridge_entry_cols[] = {
	{ "When", "effective", CELL_TIME, NULL },
	{ "What", NULL, CELL_CALL, entry_what },
	{ "By", "author", CELL_TEXT, NULL },
	{ "State", NULL, CELL_CALL, entry_state },
	{ "EHR", NULL, CELL_CALL, entry_ehr },
};

static const section_spec allergy_section = {
	"allergies", "Allergies", "No active allergy in the cached record.",
	{ TABLE_COLS(allergy_cols), .row_attrs = allergy_attrs, .action = allergy_action },
};
static const section_spec medication_section = {
	"medications", "Active medications", "No active medication in the cached record.",
	{ TABLE_COLS(medication_cols), .action = medication_action },
};
static const section_spec problem_section = {
	"problems", "Problems", "No active problem in the cached record.",
	{ TABLE_COLS(problem_cols) },
};
static const section_spec vital_section = {
	"vitals", "Latest vital signs", "None in the cached record.",
	{ TABLE_COLS(vital_cols) },
};
static const section_spec lab_section = {
	"labs", "Latest labs", "None in the cached record.",
	{ TABLE_COLS(lab_cols) },
};
static const section_spec bridge_entry_section = {
	"bridge-entries", "Charted in the bridge", "Nothing charted in the bridge for this patient.",
	{ TABLE_COLS(bridge_entry_cols), .newest_first = true, .row_attrs = entry_attrs },
};

/* A uuid as chart_build makes them (36 lower-case hex digits and dashes). */
static bool uuid_ok(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

/* "Saved ..." after a chart POST: the entry's state now. */
static void put_saved(ui_req *q, html_buf *b, const char *patient)
{
	const char *uuid = web_query(q->r, "saved");
	if (!uuid_ok(uuid))
		return;
	store_chart_entry e = STORE_CHART_ENTRY_NULL;
	if (store_chart_get(q->u->st, uuid, &e) != 0 || strcmp(e.patient, patient) != 0) {
		store_chart_entry_deinit(&e);
		return;
	}
	const char *text = e.state == STORE_CHART_WRITTEN	 ? "Saved and sent to the EHR."
			   : e.state == STORE_CHART_PENDING	 ? "Saved (pending: goes to the EHR when it is up)."
			   : e.state == STORE_CHART_WAITING_LINK ? "Saved (waits until a person links this temporary "
								   "patient to the EHR)."
								 : "Saved.";
	html_printf(b, "<div class=\"message saved\" role=\"status\" id=\"saved\">%s</div>", text);
	store_chart_entry_deinit(&e);
}

/* ---- the kept summaries ---- */

void ui_summary_cache_clear(ui *u)
{
	for (size_t i = 0; i < UI_SUMMARY_CACHE; i++) {
		json_decref(u->cache[i].sum);
		u->cache[i] = (ui_cached_summary){ .sum = NULL };
	}
}

static void digest_field(EVP_MD_CTX *md, const char *s, size_t n)
{
	uint64_t len = s ? n : UINT64_MAX;
	EVP_DigestUpdate(md, &len, sizeof(len));
	if (s)
		EVP_DigestUpdate(md, s, n);
}

static int digest_cb(void *ud, const char *type, const char *id, const char *version_id, const char *last_updated,
		     const char *patient, const char *body, size_t body_len)
{
	EVP_MD_CTX *md = ud;
	(void)patient;
	digest_field(md, type, strlen(type));
	digest_field(md, id, strlen(id));
	digest_field(md, version_id, version_id ? strlen(version_id) : 0);
	digest_field(md, last_updated, last_updated ? strlen(last_updated) : 0);
	digest_field(md, body, body_len);
	return 0;
}

/* SHA-256 over every cached resource of the patient (ids, versions and bodies). 0 or an error. */
static int patient_digest(ui *u, const char *patient, unsigned char fp[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned n = 0;
	int rc = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
	if (rc == 0)
		rc = store_foreach_patient_resource(u->st, u->env.server_id, patient, digest_cb, md);
	if (rc == 0 && (EVP_DigestFinal_ex(md, fp, &n) != 1 || n != 32))
		rc = -EIO;
	EVP_MD_CTX_free(md);
	return rc;
}

/*
 * The summary of a resolved patient with the entries and the EHR state
 * (downtime_ops_summary), as a new object. Parsing hundreds of cached
 * resources is most of a page's time, so the base summary of the last
 * UI_SUMMARY_CACHE patients is kept and used again while a digest of the
 * patient's resources (read, decrypted and hashed at every view: cheap)
 * and the date are the same. The entries and the EHR state are read anew.
 */
static json_t *patient_summary(ui_req *q, const patients_match *m, char *err, size_t err_size)
{
	ui *u = q->u;
	const char *mrn_system = u->env.cfg->fhir_mrn_system;
	if (m->temp || strlen(m->id) >= sizeof(u->cache[0].patient))
		return downtime_ops_summary(u->st, u->env.server_id, mrn_system, m, q->now_ms, err, err_size);
	unsigned char fp[32];
	int rc = patient_digest(u, m->id, fp);
	if (rc != 0) {
		snprintf(err, err_size, "%s", rc < 0 ? strerror(-rc) : store_errmsg(u->st));
		return NULL;
	}
	int64_t day = q->now_ms / 86400000;
	ui_cached_summary *slot = NULL, *lru = &u->cache[0];
	for (size_t i = 0; i < UI_SUMMARY_CACHE && !slot; i++) {
		ui_cached_summary *c = &u->cache[i];
		if (strcmp(c->patient, m->id) == 0)
			slot = c;
		else if (c->used < lru->used)
			lru = c;
	}
	if (slot && (slot->day != day || CRYPTO_memcmp(slot->fp, fp, sizeof(fp)) != 0)) {
		json_decref(slot->sum);
		slot->sum = NULL;
	}
	if (!slot) {
		slot = lru;
		json_decref(slot->sum);
		*slot = (ui_cached_summary){ .sum = NULL };
	}
	if (!slot->sum) {
		slot->sum = downtime_ops_base_summary(u->st, u->env.server_id, mrn_system, m->id, q->now_ms, err,
						      err_size);
		if (!slot->sum) {
			slot->patient[0] = '\0';
			return NULL;
		}
		snprintf(slot->patient, sizeof(slot->patient), "%s", m->id);
		memcpy(slot->fp, fp, sizeof(fp));
		slot->day = day;
	}
	slot->used = ++u->cache_tick;
	json_t *sum = json_deep_copy(slot->sum);
	if (!sum) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	if (downtime_ops_summary_finish(u->st, m, sum, err, err_size) != 0) {
		json_decref(sum);
		return NULL;
	}
	return sum;
}

/* Render a resolved patient's page (fs: a chart form answered again, or NULL), with its audit row. */
static void patient_view(ui_req *q, const patients_match *m, const ui_form_state *fs, int status)
{
	ui *u = q->u;
	char err[512] = "";
	json_t *sum = patient_summary(q, m, err, sizeof(err));
	if (!sum) {
		log_warn(UI_LOG, "patient page: no summary for a patient: %s", err);
		ui_error_page(q, 500, "Internal error", "The cached summary of this patient could not be read.");
		return;
	}
	if (store_audit_add(u->st, q->user.name, "view", m->id, m->temp ? "patient page (temporary)" : "patient page",
			    q->now_ms) != 0) {
		/* No view without its audit row. */
		log_error(UI_LOG, "cannot record a patient view: %s", store_errmsg(u->st));
		json_decref(sum);
		ui_error_page(q, 500, "Internal error", "The view could not be recorded in the audit log; try again.");
		return;
	}
	html_buf b;
	const char *title = m->temp ? "Temporary patient" : nz(js(json_object_get(sum, "patient"), "name"));
	ui_page_begin(q, &b, title ? title : "Patient");
	put_demographics(&b, sum, m->temp);
	const table_ctx c = { q, m->id, fs };
	if (!fs)
		put_saved(q, &b, m->id);
	else if (fs->target) {
		/* A change of an EHR resource: its row shows the message too, when the row is there. */
		html_puts(&b, "<p class=\"message error\" role=\"alert\" id=\"not-saved\">Not saved: ");
		html_esc(&b, fs->msg);
		html_puts(&b, "</p>");
	} else {
		html_puts(&b, "<p class=\"message error\" role=\"alert\" id=\"not-saved\">Not saved yet: see the form "
			      "below.</p>");
	}
	html_puts(&b, "<nav class=\"jump\"><a href=\"#chart-vitals\">Chart a vital sign</a>"
		      "<a href=\"#chart-med-admin\">Medication given</a><a href=\"#chart-note\">Note</a>"
		      "<a href=\"#bridge-entries\">Charted in the bridge</a></nav>");
	if (!m->temp) {
		put_section(&b, &allergy_section, json_object_get(sum, "allergies"), &c);
		put_section(&b, &medication_section, json_object_get(sum, "medications"), &c);
		put_section(&b, &problem_section, json_object_get(sum, "problems"), &c);
		put_section(&b, &vital_section, json_object_get(sum, "vitals"), &c);
		put_section(&b, &lab_section, json_object_get(sum, "labs"), &c);
	}
	put_section(&b, &bridge_entry_section, json_object_get(sum, "downtime_entries"), &c);
	if (charting_on(q)) {
		vitals_form(q, &b, m->id, fs);
		med_admin_form(q, &b, m->id, json_object_get(sum, "medications"), fs);
		note_form(q, &b, m->id, fs);
	}
	json_decref(sum);
	ui_page_end(q, &b, status);
}

/* Resolve a path id; answers 404 / 500 / a redirect to the linked patient itself and returns false. */
static bool resolve(ui_req *q, const char *id, patients_match *m)
{
	char err[256];
	int rc = patients_resolve(q->u->st, q->u->env.server_id, id, true, m, err, sizeof(err));
	if (rc == PATIENTS_E_NONE || rc == PATIENTS_E_AMBIGUOUS) {
		ui_error_page(q, 404, "Not found", "No cached patient has this id.");
		return false;
	}
	if (rc != 0) {
		log_error(UI_LOG, "cannot resolve a patient: %s", err);
		ui_error_page(q, 500, "Internal error", "The bridge could not read its store. Try again.");
		return false;
	}
	return true;
}

void ui_page_patient(ui_req *q, const char *id, const ui_form_state *fs)
{
	patients_match m = { 0 };
	if (!resolve(q, id, &m))
		return;
	if (!m.temp && m.temp_id) {
		/* A temporary patient linked since: its page is the EHR patient's. */
		char loc[128];
		snprintf(loc, sizeof(loc), "/patient/%s", m.id);
		ui_redirect(q, loc);
	} else {
		patient_view(q, &m, fs, 200);
	}
	patients_match_deinit(&m);
}

/* ---- charting ------------------------------------------------------------------ */

/* The field a chart_build message is about ("value: ..." -> "value"), or NULL. */
static const char *field_of(const char *msg)
{
	static const char *const fields[] = { "code", "value", "unit", "at", "text", "med_request", "med_code",
					      "med_display", "dose_value", "dose_unit", "route", NULL };
	for (size_t i = 0; fields[i]; i++) {
		size_t n = strlen(fields[i]);
		if (strncmp(msg, fields[i], n) == 0 && msg[n] == ':')
			return fields[i];
	}
	return NULL;
}

static bool digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/*
 * A datetime-local value ("YYYY-MM-DDThh:mm[:ss]", the site's wall time)
 * as an instant with the site's offset then ("...T14:03:00+02:00"). 0; -1
 * when it is not such a value; -2 when the time does not exist there (the
 * hour skipped when the clocks go forward).
 */
static int local_at(const char *s, char *out, size_t size)
{
	size_t n = strlen(s);
	if ((n != 16 && n != 19) || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
	    !digits(s + 8, 2) || s[10] != 'T' || !digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2) ||
	    (n == 19 && (s[16] != ':' || !digits(s + 17, 2))))
		return -1;
	int y = atoi(s), mo = atoi(s + 5), d = atoi(s + 8), h = atoi(s + 11), mi = atoi(s + 14);
	int sec = n == 19 ? atoi(s + 17) : 0;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59)
		return -1;
	int64_t us;
	if (curate_local_to_utc(NULL, y, mo, d, h, mi, sec, &us) != 0)
		return -2;
	struct tm tm = {
		.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec,
	};
	long off = (long)((int64_t)timegm(&tm) - us / 1000000);
	long aoff = off < 0 ? -off : off;
	/* Every value is in range here; the modulos tell the compiler so. */
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", y % 10000, mo % 100, d % 100, h % 100, mi % 100,
		 sec % 100, off < 0 ? '-' : '+', (int)(aoff / 3600 % 100), (int)(aoff % 3600 / 60));
	return 0;
}

/* The text of a textarea with its CRLF line ends as LF (malloc'd), or NULL. */
static char *lf_text(const char *s)
{
	char *out = s ? malloc(strlen(s) + 1) : NULL;
	if (!out)
		return NULL;
	char *o = out;
	for (; *s; s++)
		if (!(s[0] == '\r' && s[1] == '\n'))
			*o++ = *s;
	*o = '\0';
	return out;
}

void ui_post_chart(ui_req *q, const char *id)
{
	ui *u = q->u;
	const config *cfg = u->env.cfg;
	if (!charting_on(q)) {
		charting_off_page(q);
		return;
	}
	const char *kind_s = ui_form1(q, "kind");
	const char *f_code = ui_form1(q, "code"), *f_value = ui_form1(q, "value"), *f_unit = ui_form1(q, "unit");
	const char *f_at = ui_form1(q, "at"), *f_text = ui_form1(q, "text"), *f_req = ui_form1(q, "med_request");
	const char *f_mcode = ui_form1(q, "med_code"), *f_mdisp = ui_form1(q, "med_display");
	const char *f_dose = ui_form1(q, "dose_value"), *f_dunit = ui_form1(q, "dose_unit");
	const char *f_route = ui_form1(q, "route"), *f_reason = ui_form1(q, "reason");
	const char *f_target = ui_form1(q, "target"), *f_confirm = ui_form1(q, "confirm");
	chart_kind kind;
	if (q->bad_field || chart_kind_parse(kind_s, &kind) != 0) {
		ui_error_page(q, 400, "Bad request", "The form is not one of this page's; reload the page.");
		return;
	}
	patients_match m = { 0 };
	if (!resolve(q, id, &m))
		return;
	bool update = chart_kind_is_update(kind);
	ui_form_state fs = { .kind = chart_kind_name(kind), .target = update ? (f_target ? f_target : "") : NULL };
	char err[1024] = "", at[64];
	json_t *aux = NULL;
	char *text = NULL;
	chart_entry e = CHART_ENTRY_NULL;
	int rc = 0;
	if (update && m.temp) {
		snprintf(err, sizeof(err), "a temporary patient has no EHR resources to change");
		rc = CHART_E_INVALID;
	}
	if (rc == 0 && nz(f_at)) {
		int r = local_at(f_at, at, sizeof(at));
		if (r != 0) {
			snprintf(err, sizeof(err), "%s",
				 r == -2 ? "at: this time does not exist in the site's time zone (clocks went forward)"
					 : "at: expected a date and a time");
			rc = CHART_E_INVALID;
		}
	}
	if (rc == 0 && (kind == CHART_MED_ADMIN ? nz(f_req) != NULL : update)) {
		const char *type = kind == CHART_ALLERGY_ERROR ? "AllergyIntolerance" : "MedicationRequest";
		const char *rid = kind == CHART_MED_ADMIN ? f_req : f_target;
		int r = 0;
		if (m.temp)
			snprintf(err, sizeof(err), "med_request: a temporary patient has no cached medication orders");
		else if (!nz(rid))
			snprintf(err, sizeof(err), "no %s given", type);
		else if (!(aux = downtime_ops_cached_resource(u->st, u->env.server_id, type, rid, m.id, &r, err,
							      sizeof(err))) &&
			 r != DOWNTIME_OPS_E_NOTFOUND) {
			log_error(UI_LOG, "chart: cannot read a cached %s: %s", type, err);
			rc = -EIO;
		}
		if (rc == 0 && !aux) {
			if (kind == CHART_MED_ADMIN && strncmp(err, "med_request:", 12) != 0) {
				char tmp[sizeof(err)];
				snprintf(tmp, sizeof(tmp), "med_request: %s", err);
				snprintf(err, sizeof(err), "%s", tmp);
			}
			rc = CHART_E_INVALID;
		}
	}
	if (rc == 0 && kind == CHART_NOTE && f_text && !(text = lf_text(f_text)))
		rc = -ENOMEM;
	if (rc == 0) {
		chart_input in = {
			.kind = kind,
			.patient_id = m.id,
			.user = q->user.name,
			.user_display = nz(q->user.display),
			.at = nz(f_at) ? at : NULL,
			.confirm = f_confirm && strcmp(f_confirm, "1") == 0,
			.code = f_code,
			.value = f_value,
			.unit = nz(f_unit),
			.text = text,
			.med_request = kind == CHART_MED_ADMIN ? aux : NULL,
			.med_code = kind == CHART_MED_ADMIN && !aux ? nz(f_mcode) : NULL,
			.med_display = kind == CHART_MED_ADMIN && !aux ? nz(f_mdisp) : NULL,
			.dose_value = nz(f_dose),
			.dose_unit = nz(f_dunit),
			.route = nz(f_route),
			.current = update ? aux : NULL,
			.reason = nz(f_reason),
		};
		chart_site site = { .identifier_system = cfg->downtime_identifier_system,
				    .user_system = cfg->downtime_user_system, .now_ms = q->now_ms };
		rc = chart_build(&in, &site, &e, err, sizeof(err));
	}
	if (rc == CHART_E_INVALID || rc == CHART_E_CONFIRM) {
		fs.msg = err;
		/* A confirmation may list several things: it goes above the form, next to the checkbox. */
		fs.field = update || rc == CHART_E_CONFIRM ? NULL : field_of(err);
		fs.confirm = rc == CHART_E_CONFIRM;
		patient_view(q, &m, &fs, 422);
	} else if (rc != 0) {
		ui_error_page(q, 500, "Not saved", "The entry could not be built. Nothing was saved; try again.");
	} else if ((rc = downtime_ops_store_entry(u->st, u->env.server_id, &e, m.id, m.temp, q->user.name,
						  q->now_ms)) != 0) {
		log_error(UI_LOG, "chart: entry %s not saved: %s", e.uuid,
			  rc == -ENOMEM ? "out of memory" : store_errmsg(u->st));
		ui_error_page(q, 500, "Not saved", "The entry could not be stored. Nothing was saved; try again.");
	} else {
		log_info(UI_LOG, "entry %s (%s) saved from the page", e.uuid, chart_kind_name(kind));
		if (u->env.dt)
			downtime_kick(u->env.dt);
		char loc[256];
		snprintf(loc, sizeof(loc), "/patient/%s?saved=%s#saved", m.id, e.uuid);
		ui_redirect(q, loc);
	}
	chart_entry_deinit(&e);
	json_decref(aux);
	if (text) {
		OPENSSL_cleanse(text, strlen(text));
		free(text);
	}
	patients_match_deinit(&m);
}

/* ---- registration ----------------------------------------------------------- */

void ui_page_register(ui_req *q, const char *field, const char *msg, int status)
{
	if (!charting_on(q)) {
		charting_off_page(q);
		return;
	}
	bool again = msg != NULL;
	html_buf b;
	ui_page_begin(q, &b, "Register a patient");
	html_puts(&b, "<h1>Register a patient who is not in the cache</h1><p class=\"lead\">Only when a search finds "
		      "nobody. The patient gets a temporary id (DT-&hellip;); what you chart for them waits until a "
		      "person links the id to the EHR patient. The bridge never guesses the match.</p>");
	if (msg && !field) {
		html_puts(&b, "<p class=\"message error\" role=\"alert\" id=\"form-error\">");
		html_esc(&b, msg);
		html_puts(&b, "</p>");
	}
	html_puts(&b, "<form method=\"post\" action=\"/register\" class=\"card narrow\" id=\"register-form\">");
	ui_csrf_input(q, &b);
	static const struct {
		const char *name, *label, *type;
	} fields[] = {
		{ "family", "Family name", "text" },
		{ "given", "Given name(s)", "text" },
		{ "birth_date", "Birth date", "date" },
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		html_printf(&b, "<label for=\"r-%s\">%s</label>", fields[i].name, fields[i].label);
		char id[32];
		snprintf(id, sizeof(id), "r-%s", fields[i].name);
		const char *v = again ? web_form(q->r, fields[i].name) : NULL;
		put_input(&b, id, fields[i].name, fields[i].type, v ? v : "", "required autocomplete=\"off\"");
		if (field && strcmp(field, fields[i].name) == 0) {
			html_printf(&b, "<p class=\"field-error\" role=\"alert\" id=\"%s-error\">", fields[i].name);
			html_esc(&b, msg);
			html_puts(&b, "</p>");
		}
	}
	const char *g = again ? web_form(q->r, "gender") : NULL;
	html_puts(&b, "<label for=\"r-gender\">Gender</label><select id=\"r-gender\" name=\"gender\" required>");
	put_option(&b, "", "choose", g ? g : "");
	put_option(&b, "female", "female", g);
	put_option(&b, "male", "male", g);
	put_option(&b, "other", "other", g);
	put_option(&b, "unknown", "unknown", g);
	html_puts(&b, "</select>");
	if (field && strcmp(field, "gender") == 0) {
		html_puts(&b, "<p class=\"field-error\" role=\"alert\" id=\"gender-error\">");
		html_esc(&b, msg);
		html_puts(&b, "</p>");
	}
	html_puts(&b, "<button type=\"submit\" id=\"register\">Register</button></form>");
	ui_page_end(q, &b, status);
}

void ui_post_register(ui_req *q)
{
	if (!charting_on(q)) {
		charting_off_page(q);
		return;
	}
	downtime_ops_person p = {
		.family = ui_form1(q, "family"),
		.given = ui_form1(q, "given"),
		.birth_date = ui_form1(q, "birth_date"),
		.gender = ui_form1(q, "gender"),
	};
	if (q->bad_field) {
		ui_error_page(q, 400, "Bad request", "The form is not one of this page's; reload the page.");
		return;
	}
	char id[DOWNTIME_OPS_TEMP_ID_SIZE], err[512];
	const char *field = NULL;
	int rc = downtime_ops_register(q->u->st, &p, q->user.name, q->now_ms, id, &field, err, sizeof(err));
	if (rc == DOWNTIME_OPS_E_INVALID) {
		ui_page_register(q, field, err, 422);
		return;
	}
	if (rc != 0) {
		log_error(UI_LOG, "register: not saved: %s", err);
		ui_error_page(q, 500, "Not saved",
			      "The patient could not be registered. Nothing was saved; try again.");
		return;
	}
	log_info(UI_LOG, "temporary patient %s registered from the page", id);
	char loc[64];
	snprintf(loc, sizeof(loc), "/patient/%s", id);
	ui_redirect(q, loc);
}

/* ---- my entries --------------------------------------------------------------- */

/* The patient cell of an entry: a link to the patient page. */
static void entry_patient(html_buf *b, const json_t *e)
{
	html_puts(b, "<a href=\"/patient/");
	html_attr_url(b, js(e, "patient"));
	html_puts(b, "\">");
	html_esc(b, js(e, "patient"));
	html_puts(b, "</a>");
}

static const table_col my_entries_cols[] = {
	{ "Entered", "recorded", CELL_TIME, NULL },
	{ "When", "effective", CELL_TIME, NULL },
	{ "Kind", "kind", CELL_TEXT, NULL },
	{ "Patient", NULL, CELL_CALL, entry_patient },
	{ "State", NULL, CELL_CALL, entry_state },
	{ "EHR", NULL, CELL_CALL, entry_ehr },
};
static const table_spec my_entries_table = { .id = "entries", TABLE_COLS(my_entries_cols), .row_attrs = entry_attrs };

void ui_page_entries(ui_req *q)
{
	store_chart_filter f = { .author = q->user.name, .state = -1, .limit = ENTRIES_LIMIT };
	json_t *list = store_chart_list(q->u->st, &f);
	if (!list) {
		log_error(UI_LOG, "cannot list entries: %s", store_errmsg(q->u->st));
		ui_error_page(q, 500, "Internal error", "The bridge could not read its store. Try again.");
		return;
	}
	html_buf b;
	ui_page_begin(q, &b, "My entries");
	html_puts(&b, "<h1>My entries</h1>");
	if (!json_array_size(list)) {
		html_puts(&b, "<p class=\"none\">You have charted nothing in the bridge.</p>");
	} else {
		html_puts(&b, "<p>Newest first. <strong>pending</strong>: goes to the EHR when it is up; "
			      "<strong>written</strong>: the EHR has it; <strong>waiting_link</strong>: its "
			      "temporary patient must be linked first; <strong>conflict</strong> and "
			      "<strong>rejected</strong>: a person reviews it.</p>");
		put_table(&b, &my_entries_table, list, NULL);
	}
	json_decref(list);
	ui_page_end(q, &b, 200);
}

/* ---- the stylesheet ------------------------------------------------------------- */

const char ui_css[] =
	":root{--red:#b00020;--amber:#f2b600;--green:#1b7f3b;--ink:#111;--muted:#555;--line:#ccc;--bg:#f6f6f4}\n"
	"*{box-sizing:border-box}\n"
	"html{font-size:20px}\n"
	"body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:var(--ink);"
	"background:var(--bg);line-height:1.4}\n"
	"main{max-width:72rem;margin:0 auto;padding:1rem}\n"
	"h1{font-size:1.8rem;margin:.5rem 0}\n"
	"h2{font-size:1.35rem;margin:0 0 .5rem}\n"
	"a{color:#0645ad}\n"
	".banner{padding:.8rem 1rem;font-size:1.25rem;font-weight:600;border-bottom:2px solid rgba(0,0,0,.2)}\n"
	".ehr-down{background:var(--red);color:#fff;font-size:1.5rem}\n"
	".ehr-recovering{background:var(--amber);color:#000;font-size:1.4rem}\n"
	".ehr-up{background:var(--green);color:#fff}\n"
	".age-ok{background:#e8f3ea;color:#000;font-weight:500}\n"
	".age-old{background:var(--amber);color:#000}\n"
	".temp{background:#6a1b9a;color:#fff;font-size:1.5rem;margin:0 0 1rem}\n"
	".bar{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center;gap:.5rem;"
	"padding:.5rem 1rem;background:#fff;border-bottom:1px solid var(--line)}\n"
	".bar nav a{margin-right:1.2rem;font-weight:600}\n"
	".who form{display:inline;margin-left:.8rem}\n"
	".card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:1rem;margin:0 0 1rem}\n"
	".narrow{max-width:28rem}\n"
	".lead{color:var(--muted)}\n"
	"label{display:block;font-weight:600;margin:.7rem 0 .2rem}\n"
	"input,select,textarea,button{font:inherit;font-size:1rem}\n"
	"input[type=text],input[type=search],input[type=password],input[type=date],input[type=datetime-local],"
	"input:not([type]),select,textarea{width:100%;padding:.5rem;border:2px solid #888;border-radius:4px;"
	"background:#fff}\n"
	"textarea{min-height:8rem}\n"
	"button,.button{display:inline-block;margin-top:.8rem;padding:.6rem 1.2rem;border:0;border-radius:4px;"
	"background:#0b57d0;color:#fff;font-weight:700;cursor:pointer;text-decoration:none}\n"
	"button.secondary,.button.secondary{background:#e3e3e3;color:#000}\n"
	"button.danger{background:var(--red);margin:0 0 0 .4rem;padding:.4rem .8rem}\n"
	".links .button{margin-right:1rem}\n"
	".row{display:flex;gap:1rem;flex-wrap:wrap}\n"
	".row>div{flex:1 1 12rem}\n"
	".search .row input{flex:1 1 20rem}\n"
	".search .row button{margin-top:0}\n"
	"table.list{width:100%;border-collapse:collapse;background:#fff}\n"
	"table.list th,table.list td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid var(--line);"
	"vertical-align:top}\n"
	"table.list th{background:#eee}\n"
	"tr.high td:first-child{font-weight:700;color:var(--red)}\n"
	"td.value{font-weight:700}\n"
	"form.change{display:flex;gap:.3rem;align-items:center}\n"
	"form.change input{width:auto;flex:1 1 8rem;padding:.3rem}\n"
	".message{padding:.7rem 1rem;border-radius:4px;font-weight:600}\n"
	".message.error{background:#fde7ea;border:2px solid var(--red)}\n"
	".message.warn{background:#fff4cc;border:2px solid var(--amber)}\n"
	".message.saved{background:#e2f4e6;border:2px solid var(--green);font-size:1.2rem}\n"
	".field-error{color:var(--red);font-weight:700;margin:.2rem 0}\n"
	".field-confirm{color:#7a5a00;font-weight:700;margin:.2rem 0}\n"
	".confirm{margin:.8rem 0;padding:.5rem;background:#fff4cc;border:2px solid var(--amber)}\n"
	".confirm label{display:inline;margin-left:.4rem}\n"
	".confirm input{width:1.3rem;height:1.3rem}\n"
	".state{display:inline-block;padding:.1rem .5rem;border-radius:3px;font-weight:700}\n"
	".state-pending{background:#fff4cc}\n"
	".state-written{background:#e2f4e6}\n"
	".state-conflict,.state-rejected{background:#fde7ea}\n"
	".state-waiting_link{background:#efe3f7}\n"
	".badge{background:#333;color:#fff;padding:.1rem .4rem;border-radius:3px;font-size:.8rem}\n"
	".demo{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}\n"
	".demo dt{font-weight:600;color:var(--muted)}\n"
	".demo dd{margin:0}\n"
	".jump a{margin-right:1rem}\n"
	".none{color:var(--muted)}\n"
	"small{font-weight:400;color:var(--muted)}\n";
