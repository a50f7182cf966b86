/*
 * bridge/downtime-ops.c — downtime charting jobs shared by the CLI and the
 * charting page (see downtime-ops.h).
 */
#include "bridge/downtime-ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "bridge/downtime.h"
#include "bridge/summary.h"
#include "offline-store/chart.h"
#include "offline-store/outbox.h"

#define PERSON_MAX_BYTES 200

/*
 * A new temporary id: "DT-" and 10 characters of an unambiguous base32
 * alphabet (no I, O, 0, 1). 0 or -EIO.
 */
int downtime_ops_temp_id(char out[DOWNTIME_OPS_TEMP_ID_SIZE])
{
	static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
	unsigned char rnd[10];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -EIO;
	memcpy(out, "DT-", 3);
	for (size_t i = 0; i < sizeof(rnd); i++)
		out[3 + i] = alphabet[rnd[i] % 32];
	out[13] = '\0';
	return 0;
}

/* A calendar date YYYY-MM-DD (digits only, a real day, year 1850 or later). */
bool downtime_ops_date_ok(const char *s)
{
	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return false;
	int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (y < 1850 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return !(m == 2 && d == 29 && !leap);
}

/* Valid UTF-8 (shortest forms, no surrogates) without C0/C1 controls or DEL. */
static bool text_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned c = *p;
		size_t n;
		unsigned cp;
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return false;
			p++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 1, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3, cp = c & 0x07;
		} else {
			return false;
		}
		for (size_t i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
			return false;
		p += n + 1;
	}
	return true;
}

/* Blank: empty or only spaces. */
static bool blank(const char *s)
{
	return !s || s[strspn(s, " ")] == '\0';
}

/*
 * Check a registration; the first bad field wins. 0 or
 * DOWNTIME_OPS_E_INVALID with err and *field.
 */
int downtime_ops_person_check(const downtime_ops_person *p, const char **field, char *err, size_t err_size)
{
	const char *f = NULL;
	if (blank(p->family) || strlen(p->family) > PERSON_MAX_BYTES || !text_ok(p->family)) {
		f = "family";
		snprintf(err, err_size, "family: a family name is required (at most %d bytes, no control characters)",
			 PERSON_MAX_BYTES);
	} else if (blank(p->given) || strlen(p->given) > PERSON_MAX_BYTES || !text_ok(p->given)) {
		f = "given";
		snprintf(err, err_size, "given: a given name is required (at most %d bytes, no control characters)",
			 PERSON_MAX_BYTES);
	} else if (!downtime_ops_date_ok(p->birth_date)) {
		f = "birth_date";
		snprintf(err, err_size, "birth_date: expected a date YYYY-MM-DD");
	} else if (!p->gender || (strcmp(p->gender, "male") != 0 && strcmp(p->gender, "female") != 0 &&
				  strcmp(p->gender, "other") != 0 && strcmp(p->gender, "unknown") != 0)) {
		f = "gender";
		snprintf(err, err_size, "gender: male, female, other or unknown");
	}
	if (field)
		*field = f;
	return f ? DOWNTIME_OPS_E_INVALID : 0;
}

/*
 * Register a temporary patient and its audit row in one transaction. The
 * demographics go to the store encrypted; the audit row names only the id.
 */
int downtime_ops_register(store *st, const downtime_ops_person *p, const char *by, int64_t now_ms,
			  char id[DOWNTIME_OPS_TEMP_ID_SIZE], const char **field, char *err, size_t err_size)
{
	int rc = downtime_ops_person_check(p, field, err, err_size);
	if (rc != 0)
		return rc;
	if (downtime_ops_temp_id(id) != 0) {
		snprintf(err, err_size, "the random generator failed");
		return -EIO;
	}
	json_t *demo = json_pack("{s:s, s:s, s:s, s:s}", "family", p->family, "given", p->given, "birth_date",
				 p->birth_date, "gender", p->gender);
	char *text = demo ? json_dumps(demo, JSON_COMPACT) : NULL;
	json_decref(demo);
	rc = text ? store_begin(st) : -ENOMEM;
	if (rc == 0)
		rc = store_temp_patient_add(st, id, text, by, now_ms);
	if (rc == 0)
		rc = store_audit_add(st, by, "register", id, "temporary patient", now_ms);
	if (rc == 0)
		rc = store_commit(st);
	free(text);
	if (rc != 0) {
		store_rollback(st);
		snprintf(err, err_size, "%s", rc == -ENOMEM ? "out of memory" : store_errmsg(st));
	}
	return rc;
}

/* The entry and its audit row, one transaction. */
int downtime_ops_store_entry(store *st, int64_t server, const chart_entry *e, const char *patient, bool temp,
			     const char *author, int64_t now_ms)
{
	char *body = chart_dumps(e->resource), *prov = chart_dumps(e->provenance);
	store_chart_entry se = {
		.uuid = (char *)e->uuid,
		.kind = (char *)chart_kind_name(e->kind),
		.server = server,
		.patient = (char *)patient,
		.temp = temp,
		.author = (char *)author,
		.effective = (char *)e->effective,
		.recorded = (char *)e->recorded,
		.target = e->target,
		.if_match = e->if_match,
		.body = body,
		.provenance = prov,
		.state = temp ? STORE_CHART_WAITING_LINK : STORE_CHART_PENDING,
	};
	int rc = body && prov ? store_begin(st) : -ENOMEM;
	if (rc == 0)
		rc = store_chart_put(st, &se, NULL);
	if (rc == 0) {
		char detail[160];
		snprintf(detail, sizeof(detail), "%s %s", chart_kind_name(e->kind), e->uuid);
		rc = store_audit_add(st, author, "chart", patient, detail, now_ms);
	}
	if (rc == 0)
		rc = store_commit(st);
	if (rc != 0)
		store_rollback(st);
	if (body)
		OPENSSL_cleanse(body, strlen(body));
	free(body);
	free(prov);
	return rc;
}

/* A cached resource of the patient, parsed; NULL with *rc and err when not. */
json_t *downtime_ops_cached_resource(store *st, int64_t server, const char *type, const char *id, const char *patient,
				     int *rc, char *err, size_t err_size)
{
	char *body = NULL;
	size_t len = 0;
	int r = store_get_resource(st, server, type, id, &body, &len, NULL, 0);
	if (r == STORE_E_NOTFOUND) {
		snprintf(err, err_size, "no cached %s/%s", type, id);
		*rc = DOWNTIME_OPS_E_NOTFOUND;
		return NULL;
	}
	if (r != 0) {
		snprintf(err, err_size, "%s", store_errmsg(st));
		*rc = r;
		return NULL;
	}
	json_error_t jerr;
	json_t *res = json_loadb(body, len, 0, &jerr);
	OPENSSL_cleanse(body, len);
	free(body);
	if (!res) {
		snprintf(err, err_size, "the cached %s/%s is not valid JSON", type, id);
		*rc = -EINVAL;
		return NULL;
	}
	json_t *subj = json_object_get(res, "subject");
	if (!subj)
		subj = json_object_get(res, "patient");
	const char *ref = json_string_value(json_object_get(subj, "reference"));
	if (!ref || strncmp(ref, "Patient/", 8) != 0 || strcmp(ref + 8, patient) != 0) {
		snprintf(err, err_size, "%s/%s is not this patient's", type, id);
		json_decref(res);
		*rc = DOWNTIME_OPS_E_NOTFOUND;
		return NULL;
	}
	*rc = 0;
	return res;
}

/* The summary "patient" object of one cached Patient (its other resources are not read). */
static json_t *patient_row(store *st, int64_t server, const char *mrn_system, const char *id, int64_t now_ms)
{
	char *body = NULL;
	size_t len = 0;
	if (store_get_resource(st, server, "Patient", id, &body, &len, NULL, 0) != 0)
		return NULL;
	json_error_t jerr;
	json_t *p = json_loadb(body, len, 0, &jerr);
	OPENSSL_cleanse(body, len);
	free(body);
	if (!p)
		return NULL;
	summary_opts so = { .mrn_system = mrn_system, .now_ms = now_ms };
	char err[256];
	json_t *const v[] = { p };
	json_t *sum = summary_build(v, 1, &so, err, sizeof(err));
	json_decref(p);
	json_t *row = json_object_get(sum, "patient");
	json_incref(row);
	json_decref(sum);
	return row;
}

json_t *downtime_ops_search(store *st, int64_t server, const char *mrn_system, const char *query, size_t limit,
			    int64_t now_ms, char *err, size_t err_size)
{
	json_t *ids = patients_search(st, server, query, limit, err, err_size);
	if (!ids)
		return NULL;
	json_t *rows = json_array();
	size_t i;
	json_t *id;
	json_array_foreach(ids, i, id)
	{
		json_t *row = patient_row(st, server, mrn_system, json_string_value(id), now_ms);
		if (row && json_array_append_new(rows, row) != 0)
			break;
	}
	json_decref(ids);
	if (!rows)
		snprintf(err, err_size, "out of memory");
	return rows;
}

static int add_entry_cb(void *ud, const store_chart_entry *e)
{
	json_t *arr = ud;
	json_error_t jerr;
	json_t *res = json_loadb(e->body, e->body_len, 0, &jerr);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:s?, s:o*}", "uuid", e->uuid, "kind", e->kind,
			      "state", store_chart_state_name(e->state), "author", e->author, "effective", e->effective,
			      "recorded", e->recorded, "ehr_ref", e->ehr_ref, "last_error", e->last_error, "resource",
			      res);
	return o && json_array_append_new(arr, o) == 0 ? 0 : -ENOMEM;
}

json_t *downtime_ops_base_summary(store *st, int64_t server, const char *mrn_system, const char *patient,
				  int64_t now_ms, char *err, size_t err_size)
{
	json_t *res = patients_resources(st, server, patient);
	if (!res) {
		snprintf(err, err_size, "%s", store_errmsg(st));
		return NULL;
	}
	size_t n = json_array_size(res);
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	json_t *sum = NULL;
	for (size_t i = 0; v && i < n; i++)
		v[i] = json_array_get(res, i);
	summary_opts so = { .mrn_system = mrn_system, .now_ms = now_ms, .max_labs = SUMMARY_DEFAULT_MAX_LABS };
	if (v)
		sum = summary_build(v, n, &so, err, err_size);
	else
		snprintf(err, err_size, "out of memory");
	free(v);
	json_decref(res);
	return sum;
}

int downtime_ops_summary_finish(store *st, const patients_match *m, json_t *sum, char *err, size_t err_size)
{
	char *as_of = NULL, *ehr_state = NULL, *ehr_since = NULL;
	store_project_get(st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_LAST_SYNC, &as_of);
	store_project_get(st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_STATE, &ehr_state);
	store_project_get(st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_SINCE, &ehr_since);
	/* Linking moves a temporary patient's entries to the EHR patient's id. */
	json_t *entries = json_array();
	int rc = entries ? store_chart_foreach_patient(st, m->id, add_entry_cb, entries) : -ENOMEM;
	if (rc != 0) {
		snprintf(err, err_size, "%s", rc == -ENOMEM ? "out of memory" : store_errmsg(st));
		json_decref(entries);
	} else if (json_object_set_new(sum, "downtime_entries", entries) != 0 ||
		   json_object_set_new(sum, "data_as_of", as_of ? json_string(as_of) : json_null()) != 0 ||
		   json_object_set_new(sum, "ehr", json_pack("{s:s, s:s?}", "state", ehr_state ? ehr_state : "unknown",
							     "since", ehr_since)) != 0) {
		snprintf(err, err_size, "out of memory");
		rc = -ENOMEM;
	}
	free(as_of);
	free(ehr_state);
	free(ehr_since);
	return rc;
}

json_t *downtime_ops_summary(store *st, int64_t server, const char *mrn_system, const patients_match *m,
			     int64_t now_ms, char *err, size_t err_size)
{
	json_t *sum = NULL;
	if (m->temp) {
		char *demo = NULL;
		int rc = store_temp_patient_get(st, m->id, &demo, NULL);
		if (rc == 0) {
			json_error_t jerr;
			json_t *d = json_loads(demo, 0, &jerr);
			sum = json_pack("{s:{s:s, s:b, s:O*}}", "patient", "id", m->id, "temporary", 1, "registered",
					d);
			json_decref(d);
			if (!sum)
				snprintf(err, err_size, "out of memory");
		} else {
			snprintf(err, err_size, "%s", store_errmsg(st));
		}
		if (demo)
			OPENSSL_cleanse(demo, strlen(demo));
		free(demo);
	} else {
		sum = downtime_ops_base_summary(st, server, mrn_system, m->id, now_ms, err, err_size);
	}
	if (sum && downtime_ops_summary_finish(st, m, sum, err, err_size) != 0) {
		json_decref(sum);
		sum = NULL;
	}
	return sum;
}
