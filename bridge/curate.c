/*
 * curate — see curate.h.
 *
 * A run is three passes over the waiting patients, in transactions of
 * CURATE_BATCH patients:
 *
 *  1. the MRN index: every waiting patient's Patient resource gives its
 *     MRN (keyed hash in the store). Done for all waiting patients before
 *     any record is made, so that two Patients carrying one MRN are both
 *     seen before either is curated; a patient curated in an earlier run
 *     that now shares its MRN is made to wait again, and is refused.
 *  2. curation of each waiting patient into every project's rows.
 *  3. (inside 2) the waiting mark is cleared in the transaction that wrote
 *     the rows.
 */
#include "bridge/curate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "bridge/log.h"
#include "bridge/push-util.h"
#include "offline-store/outbox.h"

#define CURATE_BATCH 100

/* Stored with each project's mapping digest: a bridge that curates
 * differently (here: the record owner index that finds record names REDCap
 * would take as one) curates every patient again once. */
#define CURATE_FORMAT "/curate-2"

/* The source of the reasons of rows held while their patient is refused (outbox.h). */
#define SRC_CURATION "curation"

/* ---- time zone ------------------------------------------------------------ */

void curate_set_timezone(const char *zone)
{
	char buf[300];
	snprintf(buf, sizeof(buf), ":%s", zone && *zone ? zone : "UTC");
	setenv("TZ", buf, 1);
	tzset();
}

int curate_local_to_utc(void *ud, int year, int month, int day, int hour, int min, int sec, int64_t *us)
{
	(void)ud;
	struct tm tm = {
		.tm_year = year - 1900,
		.tm_mon = month - 1,
		.tm_mday = day,
		.tm_hour = hour,
		.tm_min = min,
		.tm_sec = sec,
		.tm_isdst = -1,
	};
	errno = 0;
	time_t t = mktime(&tm);
	if (t == (time_t)-1 && errno != 0)
		return -1;
	/* mktime moves a wall time that does not exist (the hour skipped when
	 * the clocks go forward) instead of failing: refuse it, like a date
	 * that does not exist. An ambiguous time (the hour repeated in
	 * autumn) gets the first of its two instants (tm_isdst = -1). */
	if (tm.tm_year != year - 1900 || tm.tm_mon != month - 1 || tm.tm_mday != day || tm.tm_hour != hour ||
	    tm.tm_min != min)
		return -1;
	*us = (int64_t)t * 1000000;
	return 0;
}

/* ---- collecting ---------------------------------------------------------- */

typedef struct idlist {
	char **v;
	size_t n, cap;
} idlist;

static void idlist_deinit(idlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	*l = (idlist){ 0 };
}

static int idlist_add(void *ud, const char *patient)
{
	idlist *l = ud;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **nv = realloc(l->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = cap;
	}
	if (!(l->v[l->n] = strdup(patient)))
		return -ENOMEM;
	l->n++;
	return 0;
}

typedef struct res_list {
	mapping_resource *v;
	json_t **json;
	char **strs;       /* type, id, version per resource (3 each) */
	size_t n, cap;
	long long bad;     /* bodies that are not JSON objects (never expected: they were checked when pulled) */
} res_list;

static void res_list_clear(res_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		json_decref(l->json[i]);
		free(l->strs[3 * i]);
		free(l->strs[3 * i + 1]);
		free(l->strs[3 * i + 2]);
	}
	l->n = 0;
}

static void res_list_deinit(res_list *l)
{
	res_list_clear(l);
	free(l->v);
	free(l->json);
	free(l->strs);
	*l = (res_list){ 0 };
}

static int res_add(void *ud, const char *type, const char *id, const char *version_id, const char *last_updated,
		   const char *patient, const char *body, size_t body_len)
{
	(void)last_updated;
	(void)patient;
	res_list *l = ud;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		mapping_resource *nv = realloc(l->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		json_t **nj = realloc(l->json, cap * sizeof(*nj));
		if (!nj)
			return -ENOMEM;
		l->json = nj;
		char **ns = realloc(l->strs, 3 * cap * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		l->strs = ns;
		l->cap = cap;
	}
	json_error_t je;
	json_t *j = json_loadb(body, body_len, 0, &je);
	if (!json_is_object(j)) {
		json_decref(j);
		l->bad++;
		return 0;
	}
	size_t i = l->n;
	l->json[i] = j;
	l->strs[3 * i] = strdup(type);
	l->strs[3 * i + 1] = strdup(id);
	l->strs[3 * i + 2] = strdup(version_id);
	if (!l->strs[3 * i] || !l->strs[3 * i + 1] || !l->strs[3 * i + 2]) {
		free(l->strs[3 * i]);
		free(l->strs[3 * i + 1]);
		free(l->strs[3 * i + 2]);
		json_decref(j);
		return -ENOMEM;
	}
	l->v[i] = (mapping_resource){ .type = l->strs[3 * i], .id = l->strs[3 * i + 1],
				      .version_id = l->strs[3 * i + 2], .json = j };
	l->n++;
	return 0;
}

/* The waiting patients not in skip (a JSON object used as a set). */
typedef struct wait_filter {
	idlist *out;
	const json_t *skip;
} wait_filter;

static int wait_filtered(void *ud, const char *patient)
{
	wait_filter *w = ud;
	return json_object_get(w->skip, patient) ? 0 : idlist_add(w->out, patient);
}

/* ---- pass 1: MRN index ---------------------------------------------------- */

static int index_mrn(store *st, int64_t server, const config *cfg, const char *patient, idlist *rewait)
{
	char *body = NULL;
	size_t len = 0;
	int rc = store_get_resource(st, server, "Patient", patient, &body, &len, NULL, 0);
	if (rc == STORE_E_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	json_error_t je;
	json_t *j = json_loadb(body, len, 0, &je);
	free(body);
	char *mrn = NULL;
	if (json_is_object(j) && mapping_patient_mrn(j, cfg->fhir_mrn_system, &mrn) == -ENOMEM) {
		json_decref(j);
		return -ENOMEM;
	}
	json_decref(j);
	rc = store_mrn_set(st, server, patient, mrn);
	if (rc == 0 && mrn) {
		int64_t n = 0;
		rc = store_mrn_count(st, server, mrn, &n);
		if (rc == 0 && n > 1) {
			/* Every other carrier must be curated (refused) again. */
			json_t *ids = store_mrn_patients(st, server, mrn);
			size_t i;
			json_t *v;
			json_array_foreach(ids, i, v)
			{
				const char *p = json_string_value(v);
				if (p && strcmp(p, patient) != 0 && idlist_add(rewait, p) != 0)
					rc = -ENOMEM;
			}
			json_decref(ids);
		}
	}
	free(mrn);
	return rc;
}

/* ---- pass 2: curation ------------------------------------------------------ */

static json_t *row_payload(const mapping_result *r, const mapping_row *row, int64_t instance)
{
	json_t *o = json_object();
	json_t *errors = NULL;
	if (!o)
		return NULL;
	json_object_set_new(o, "#record", json_string(r->record));
	if (row->event)
		json_object_set_new(o, "redcap_event_name", json_string(row->event));
	if (row->instrument) {
		char buf[32];
		snprintf(buf, sizeof(buf), "%lld", (long long)instance);
		json_object_set_new(o, "redcap_repeat_instrument", json_string(row->instrument));
		json_object_set_new(o, "redcap_repeat_instance", json_string(buf));
	}
	for (size_t i = 0; i < row->n; i++) {
		const mapping_value *v = &row->v[i];
		if (v->error) {
			if (!errors)
				errors = json_array();
			json_array_append_new(errors, json_pack("{s:s, s:s}", "field", v->field, "message", v->error));
			continue;
		}
		json_object_set_new(o, v->field, json_string(v->value ? v->value : ""));
	}
	if (errors)
		json_object_set_new(o, "#errors", errors);
	return o;
}

static json_t *row_provenance(const mapping_row *row)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < row->n; i++) {
		const mapping_value *v = &row->v[i];
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s}", "field", v->field, "rule", v->rule,
						   "resource_type", v->res_type, "resource_id", v->res_id,
						   "resource_version", v->res_version ? v->res_version : ""));
	}
	return a;
}

static bool row_has_field(const mapping_row *row, const char *field)
{
	for (size_t i = 0; i < row->n; i++)
		if (strcmp(row->v[i].field, field) == 0)
			return true;
	return false;
}

/*
 * Fields the mapping owns in this row that have no value now: a value the
 * bridge sent there before must not stay behind (the source changed, or no
 * longer matches). A repeating instance belongs to its resource: all its
 * owned fields are sent, blank ones included. On the non-repeating forms
 * only what the bridge itself sent is cleared (provenance says so): a value
 * a person typed into a mapped field that the mapping never filled stays.
 * Imports run with overwriteBehavior=overwrite, so "" erases.
 */
static int add_cleared(store *st, const char *project, const mapping *m, const mapping_result *r,
		       const mapping_row *row, int64_t instance, json_t *payload)
{
	const char **owned = NULL;
	size_t n = mapping_owned_fields(m, row, &owned);
	if (n == (size_t)-1)
		return -ENOMEM;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (row_has_field(row, owned[i]))
			continue;
		int existed = 0;
		rc = store_provenance_clear(st, project, r->record, row->event ? row->event : "",
					    row->instrument ? row->instrument : "", instance, owned[i], &existed);
		if (rc == 0 && (row->instrument || existed))
			rc = json_object_set_new(payload, owned[i], json_string("")) ? -ENOMEM : 0;
	}
	free(owned);
	return rc;
}

static int write_rows(store *st, const char *project, const mapping *m, const mapping_result *r,
		      curate_stats *stats)
{
	for (size_t k = 0; k < r->n_rows; k++) {
		const mapping_row *row = &r->rows[k];
		int64_t instance = 0;
		int rc;
		const char *event = row->event ? row->event : "";
		if (row->instrument &&
		    (rc = store_instance(st, project, r->record, event, row->instrument, row->src_type, row->src_id,
					 &instance)) != 0)
			return rc;
		json_t *payload = row_payload(r, row, instance);
		if (!payload)
			return -ENOMEM;
		if (!row->review && (rc = add_cleared(st, project, m, r, row, instance, payload)) != 0) {
			json_decref(payload);
			return rc;
		}
		char *txt = json_dumps(payload, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(payload);
		if (!txt)
			return -ENOMEM;
		for (size_t i = 0; i < row->n; i++)
			stats->value_errors += row->v[i].error != NULL;
		if (row->review) {
			json_t *prov = row_provenance(row);
			char *ptxt = prov ? json_dumps(prov, JSON_COMPACT) : NULL;
			json_decref(prov);
			int queued = 0;
			rc = ptxt ? store_review_put(st, project, r->record, event, row->instrument ? row->instrument : "",
						     instance, txt, strlen(txt), ptxt, &queued)
				  : -ENOMEM;
			free(ptxt);
			stats->review_queued += queued;
		} else {
			int changed = 0;
			rc = store_outbox_put(st, project, r->record, event, row->instrument ? row->instrument : "",
					      instance, txt, strlen(txt), &changed);
			if (changed)
				stats->rows_queued++;
			else
				stats->rows_unchanged++;
			for (size_t i = 0; rc == 0 && changed && i < row->n; i++) {
				const mapping_value *v = &row->v[i];
				if (v->error)
					continue;
				rc = store_provenance_put(st, project, r->record, event,
							  row->instrument ? row->instrument : "", instance, v->field,
							  v->rule, v->res_type, v->res_id,
							  v->res_version ? v->res_version : "");
			}
		}
		free(txt);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ---- anchors typed into REDCap --------------------------------------------- */

#define ANCHOR_MAX 64

/* The REDCap values of the anchor fields for a patient's record: v[] points
 * into anchors (valid while it lives). Returns the count; 0 when none are
 * needed or the patient has no record (no MRN); ANCHORS_UNREAD when its
 * record was not read this cycle (see push.h, anchor mode). */
#define ANCHORS_UNREAD ((size_t)-1)
static size_t anchor_values(mapping *m, const json_t *anchors, const json_t *patient_json, const char *mrn_system,
			    const char *v[ANCHOR_MAX])
{
	const char *const *fields;
	size_t n = mapping_redcap_anchor_fields(m, &fields);
	char *mrn = NULL;
	if (n == 0 || n > ANCHOR_MAX || !anchors || !patient_json)
		return 0;
	if (mapping_patient_mrn(patient_json, mrn_system, &mrn) != MAPPING_OK || !mrn) {
		free(mrn);
		return 0;
	}
	char *rec = mapping_record_name(m, mrn);
	free(mrn);
	char *key = rec ? pu_fold(rec) : NULL;
	free(rec);
	const json_t *vals = key ? json_object_get(anchors, key) : NULL;
	free(key);
	if (!vals)
		return ANCHORS_UNREAD;
	for (size_t k = 0; k < n; k++) {
		const char *x = json_string_value(json_array_get(vals, k));
		v[k] = x ? x : "";
	}
	return n;
}

static int anchor_digest(store *st, const char *project, const char *const *v, size_t n, char out[65])
{
	size_t len = 0;
	for (size_t k = 0; k < n; k++)
		len += strlen(v[k]) + 1;
	char *buf = malloc(len + 1);
	if (!buf)
		return -ENOMEM;
	size_t o = 0;
	for (size_t k = 0; k < n; k++) {
		size_t l = strlen(v[k]);
		memcpy(buf + o, v[k], l);
		o += l;
		buf[o++] = '\x1f';
	}
	char label[160];
	snprintf(label, sizeof(label), "redcap anchors of %s", project);
	int rc = store_keyed_digest(st, label, buf, o, out);
	OPENSSL_cleanse(buf, len + 1);
	free(buf);
	return rc;
}

static int anchor_key(char *key, size_t size, const char *patient)
{
	return snprintf(key, size, "anchors/%s", patient) >= (int)size ? -ENAMETOOLONG : 0;
}

typedef struct anchor_scan {
	store *st;
	mapping *m;
	const json_t *anchors;
	const char *project;
	const char *mrn_system;
	idlist *rewait;
	int err;
} anchor_scan;

/* A Patient whose anchor values differ from those it was curated with. */
static int anchor_scan_one(void *ud, const char *type, const char *id, const char *version_id,
			   const char *last_updated, const char *patient, const char *body, size_t body_len)
{
	(void)type;
	(void)version_id;
	(void)last_updated;
	(void)patient;
	anchor_scan *a = ud;
	json_error_t je;
	json_t *j = json_loadb(body, body_len, 0, &je);
	const char *v[ANCHOR_MAX];
	size_t n = anchor_values(a->m, a->anchors, j, a->mrn_system, v);
	char digest[65] = "", key[128];
	int rc = 0;
	/* A record not read this cycle: REDCap did not list it as changed. */
	if (n == ANCHORS_UNREAD)
		n = 0;
	if (n && (rc = anchor_digest(a->st, a->project, v, n, digest)) == 0 &&
	    (rc = anchor_key(key, sizeof(key), id)) == 0) {
		char *old = NULL;
		rc = store_project_get(a->st, a->project, key, &old);
		if (rc == STORE_E_NOTFOUND || (rc == 0 && strcmp(old, digest) != 0))
			rc = idlist_add(a->rewait, id);
		free(old);
	}
	json_decref(j);
	return rc;
}

static int anchors_rewait(store *st, int64_t server, const config *cfg, mapping *const *maps, json_t *const *anchors)
{
	idlist rewait = { 0 };
	int rc = 0;
	for (size_t i = 0; rc == 0 && anchors && i < cfg->n_redcap_projects; i++) {
		if (!maps[i] || !anchors[i])
			continue;
		anchor_scan a = { .st = st, .m = maps[i], .anchors = anchors[i], .project = cfg->redcap_projects[i].name,
				  .mrn_system = cfg->fhir_mrn_system, .rewait = &rewait };
		rc = store_foreach_resource(st, server, "Patient", 1, anchor_scan_one, &a);
	}
	if (rc == 0 && rewait.n) {
		rc = store_begin(st);
		for (size_t k = 0; rc == 0 && k < rewait.n; k++)
			rc = store_waiting_mark(st, server, rewait.v[k]);
		if (rc == 0)
			rc = store_commit(st);
		if (rc == 0)
			log_info("curate", "%zu patients have new anchor values in REDCap", rewait.n);
	}
	idlist_deinit(&rewait);
	return rc;
}

static const json_t *find_patient(const res_list *res)
{
	for (size_t i = 0; i < res->n; i++)
		if (strcmp(res->v[i].type, "Patient") == 0)
			return res->v[i].json;
	return NULL;
}

/* Mark the patients in ids (a JSON array) waiting, except `self`. */
static int mark_waiting(store *st, int64_t server, const json_t *ids, const char *self)
{
	size_t i;
	json_t *v;
	int rc = 0;
	json_array_foreach(ids, i, v)
	{
		const char *p = json_string_value(v);
		if (rc == 0 && p && strcmp(p, self) != 0)
			rc = store_waiting_mark(st, server, p);
	}
	return rc;
}

/*
 * Refuse patient for project (reason holds no PHI) and hold the pending
 * rows of its record, if it has one: nothing of it goes to REDCap while the
 * refusal stands, rows queued before it included.
 */
static int refuse(store *st, const char *project, const char *patient, const char *record, const char *reason,
		  curate_stats *stats)
{
	int rc = store_refusal_set(st, project, patient, reason);
	stats->refused++;
	log_warn("curate", "%s: Patient/%s refused: %s", project, patient, reason);
	if (rc == 0 && record) {
		int64_t held = 0;
		json_t *r = json_pack("[{s:s, s:s, s:s}]", "field", "", "message", reason, "source", SRC_CURATION);
		char *txt = r ? json_dumps(r, JSON_COMPACT) : NULL;
		json_decref(r);
		rc = txt ? store_outbox_hold_record(st, project, record, txt, &held) : -ENOMEM;
		free(txt);
		if (rc == 0 && held)
			log_warn("curate", "%s: %lld queued rows of Patient/%s held back while it is refused", project,
				 (long long)held, patient);
	}
	return rc;
}

/*
 * Curate one patient into every project. *deferred: some project needs
 * anchors typed into REDCap that were not read for its record this cycle
 * (it became waiting after they were read); nothing is written and the
 * patient stays waiting for the next cycle.
 */
static int curate_patient(store *st, int64_t server, const config *cfg, mapping *const *maps,
			  json_t *const *anchors, const char *patient, res_list *res, curate_stats *stats,
			  bool *deferred)
{
	*deferred = false;
	res_list_clear(res);
	int rc = store_foreach_patient_resource(st, server, patient, res_add, res);
	if (rc != 0)
		return rc;
	const char *av[ANCHOR_MAX];
	for (size_t i = 0; anchors && i < cfg->n_redcap_projects; i++) {
		if (maps[i] && anchors[i] &&
		    anchor_values(maps[i], anchors[i], find_patient(res), cfg->fhir_mrn_system, av) == ANCHORS_UNREAD) {
			*deferred = true;
			return 0;
		}
	}
	mapping_input in = { .res = res->v, .n = res->n };
	bool made = false;
	for (size_t i = 0; i < cfg->n_redcap_projects; i++) {
		if (!maps[i])
			continue;
		const char *project = cfg->redcap_projects[i].name;
		mapping_result r = { 0 };
		size_t n_av = anchors && anchors[i] ? anchor_values(maps[i], anchors[i], find_patient(res),
								   cfg->fhir_mrn_system, av)
						    : 0;
		in.redcap_anchor_values = n_av ? av : NULL;
		if (n_av) {
			char digest[65], key[128];
			if ((rc = anchor_digest(st, project, av, n_av, digest)) != 0 ||
			    (rc = anchor_key(key, sizeof(key), patient)) != 0 ||
			    (rc = store_project_set(st, project, key, digest)) != 0)
				return rc;
		}
		if ((rc = mapping_curate(maps[i], &in, &r)) != 0)
			return rc;
		if (r.status == MAPPING_NO_PATIENT) {
			/* Its resources came before the Patient: the Patient's
			 * arrival makes it wait again. */
			mapping_result_deinit(&r);
			continue;
		}
		/*
		 * Which patients' records REDCap would take as this one's
		 * (it ignores case and surrounding spaces). When that changed,
		 * they are curated again: those sharing the new name to be
		 * refused too, those sharing the old one because they may be
		 * alone now.
		 */
		json_t *same = NULL, *left = NULL;
		int moved = 0;
		const char *record = r.status == MAPPING_OK ? r.record : NULL;
		rc = store_record_owner_set(st, project, patient, record, &same, &left, &moved);
		if (rc == 0 && moved)
			rc = mark_waiting(st, server, same, patient);
		if (rc == 0 && moved)
			rc = mark_waiting(st, server, left, patient);
		size_t n_same = json_array_size(same);
		json_decref(same);
		json_decref(left);
		if (rc != 0) {
			mapping_result_deinit(&r);
			return rc;
		}
		if (r.status != MAPPING_OK) {
			rc = refuse(st, project, patient, NULL, r.reason ? r.reason : "no record", stats);
			mapping_result_deinit(&r);
			if (rc != 0)
				return rc;
			continue;
		}
		char reason[200] = "";
		if (r.mrn && cfg->fhir_mrn_system) {
			int64_t n = 0;
			if ((rc = store_mrn_count(st, server, r.mrn, &n)) != 0) {
				mapping_result_deinit(&r);
				return rc;
			}
			if (n > 1)
				snprintf(reason, sizeof(reason),
					 "ambiguous MRN: %lld Patient resources carry it; refused until one remains",
					 (long long)n);
		}
		if (!reason[0] && n_same > 0)
			snprintf(reason, sizeof(reason),
				 "ambiguous record: %zu other Patient%s record id%s differ%s from this one only in case or "
				 "spaces, which REDCap ignores; refused until one remains",
				 n_same, n_same == 1 ? "'s" : "s'", n_same == 1 ? "" : "s", n_same == 1 ? "s" : "");
		if (reason[0]) {
			rc = refuse(st, project, patient, r.record, reason, stats);
			mapping_result_deinit(&r);
			if (rc != 0)
				return rc;
			continue;
		}
		/* Not refused (any more): rows held while it was go again. */
		int64_t released = 0;
		int was_refused = 0;
		rc = store_refusal_clear(st, project, patient, &was_refused);
		if (rc == 0 && was_refused)
			rc = store_outbox_release(st, project, r.record, SRC_CURATION, &released);
		if (rc == 0 && released)
			log_info("curate", "%s: Patient/%s is no longer refused: %lld held rows go to REDCap", project,
				 patient, (long long)released);
		if (rc == 0)
			rc = write_rows(st, project, maps[i], &r, stats);
		mapping_result_deinit(&r);
		if (rc != 0)
			return rc;
		made = true;
	}
	stats->patients++;
	stats->records += made;
	return 0;
}

void curate_records_free(char **records, size_t n)
{
	for (size_t i = 0; records && i < n; i++) {
		OPENSSL_cleanse(records[i], strlen(records[i]));
		free(records[i]);
	}
	free(records);
}

int curate_waiting_records(store *st, int64_t server, const config *cfg, mapping *const *maps, const bool *want,
			   char ***records, size_t *n)
{
	idlist waiting = { 0 }, *out = calloc(cfg->n_redcap_projects ? cfg->n_redcap_projects : 1, sizeof(*out));
	for (size_t i = 0; i < cfg->n_redcap_projects; i++) {
		records[i] = NULL;
		n[i] = 0;
	}
	if (!out)
		return -ENOMEM;
	int rc = store_waiting_foreach(st, server, 0, idlist_add, &waiting);
	for (size_t k = 0; rc == 0 && k < waiting.n; k++) {
		char *body = NULL, *mrn = NULL;
		size_t len = 0;
		rc = store_get_resource(st, server, "Patient", waiting.v[k], &body, &len, NULL, 0);
		if (rc == STORE_E_NOTFOUND) {
			rc = 0;
			continue;
		}
		if (rc != 0)
			break;
		json_error_t je;
		json_t *j = json_loadb(body, len, 0, &je);
		OPENSSL_cleanse(body, len);
		free(body);
		if (json_is_object(j) && mapping_patient_mrn(j, cfg->fhir_mrn_system, &mrn) == -ENOMEM)
			rc = -ENOMEM;
		json_decref(j);
		for (size_t i = 0; rc == 0 && mrn && i < cfg->n_redcap_projects; i++) {
			if (!want[i] || !maps[i])
				continue;
			char *rec = mapping_record_name(maps[i], mrn);
			rc = rec ? idlist_add(&out[i], rec) : -ENOMEM;
			if (rec)
				OPENSSL_cleanse(rec, strlen(rec));
			free(rec);
		}
		if (mrn)
			OPENSSL_cleanse(mrn, strlen(mrn));
		free(mrn);
	}
	idlist_deinit(&waiting);
	for (size_t i = 0; i < cfg->n_redcap_projects; i++) {
		if (rc == 0) {
			records[i] = out[i].v;
			n[i] = out[i].n;
		} else {
			curate_records_free(out[i].v, out[i].n);
		}
	}
	free(out);
	return rc;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(store *st, curate_stats *stats, int rc, const char *what)
{
	store_rollback(st);
	snprintf(stats->error, sizeof(stats->error), "%s: %s", what,
		 rc == -ENOMEM ? "out of memory" : store_errmsg(st));
	return rc;
}

int curate_run(store *st, int64_t server, const config *cfg, mapping *const *maps, json_t *const *anchors,
	       curate_stats *stats, volatile int *stop)
{
	double t0 = mono_s();
	int rc;
	*stats = (curate_stats){ 0 };
	bool any = false;
	for (size_t i = 0; i < cfg->n_redcap_projects; i++)
		any = any || maps[i];
	if (!any)
		return 0;

	/* A changed mapping: everything is curated again. */
	for (size_t i = 0; i < cfg->n_redcap_projects; i++) {
		if (!maps[i])
			continue;
		const char *project = cfg->redcap_projects[i].name;
		char *old = NULL, digest[128];
		snprintf(digest, sizeof(digest), "%s%s", mapping_digest(maps[i]), CURATE_FORMAT);
		rc = store_project_get(st, project, "mapping_digest", &old);
		if (rc != 0 && rc != STORE_E_NOTFOUND)
			return fail(st, stats, rc, "reading the mapping digest");
		bool same = old && strcmp(old, digest) == 0;
		free(old);
		if (same)
			continue;
		if ((rc = store_begin(st)) != 0 || (rc = store_waiting_all(st, server)) != 0 ||
		    (rc = store_project_set(st, project, "mapping_digest", digest)) != 0 ||
		    (rc = store_commit(st)) != 0)
			return fail(st, stats, rc, "recording a new mapping");
		log_info("curate", "%s: mapping %s is new or changed: every patient is curated again", project,
			 cfg->redcap_projects[i].mapping);
	}

	/* Patients whose anchors typed into REDCap changed wait again. */
	if (anchors && (rc = anchors_rewait(st, server, cfg, maps, anchors)) != 0)
		return fail(st, stats, rc, "comparing the anchors typed into REDCap");

	/* Pass 1: the MRN index of every waiting patient. */
	if (cfg->fhir_mrn_system) {
		idlist all = { 0 }, rewait = { 0 };
		rc = store_waiting_foreach(st, server, 0, idlist_add, &all);
		for (size_t i = 0; rc == 0 && i < all.n; i += CURATE_BATCH) {
			if ((rc = store_begin(st)) != 0)
				break;
			for (size_t j = i; rc == 0 && j < all.n && j < i + CURATE_BATCH; j++)
				rc = index_mrn(st, server, cfg, all.v[j], &rewait);
			for (size_t j = 0; rc == 0 && j < rewait.n; j++)
				rc = store_waiting_mark(st, server, rewait.v[j]);
			idlist_deinit(&rewait);
			if (rc == 0)
				rc = store_commit(st);
		}
		idlist_deinit(&all);
		idlist_deinit(&rewait);
		if (rc != 0)
			return fail(st, stats, rc, "indexing MRNs");
	}

	/*
	 * Pass 2: curation, CURATE_BATCH patients a transaction, over the
	 * waiting list read afresh until it holds no one new: curating may
	 * make others wait (patients whose record names REDCap takes as one).
	 * A patient deferred (its anchors typed into REDCap were not read this
	 * cycle) stays waiting and is not visited again in this run.
	 */
	res_list res = { 0 };
	json_t *skip = json_object();
	if (!skip)
		return fail(st, stats, -ENOMEM, "curating");
	while (!(stop && *stop)) {
		idlist all = { 0 };
		wait_filter wf = { .out = &all, .skip = skip };
		rc = store_waiting_foreach(st, server, 0, wait_filtered, &wf);
		if (rc != 0) {
			idlist_deinit(&all);
			res_list_deinit(&res);
			json_decref(skip);
			return fail(st, stats, rc, "reading the waiting patients");
		}
		if (all.n == 0) {
			idlist_deinit(&all);
			break;
		}
		for (size_t at = 0; rc == 0 && at < all.n && !(stop && *stop); at += CURATE_BATCH) {
			size_t end = all.n - at < CURATE_BATCH ? all.n : at + CURATE_BATCH;
			rc = store_begin(st);
			for (size_t i = at; rc == 0 && i < end; i++) {
				bool deferred = false;
				rc = curate_patient(st, server, cfg, maps, anchors, all.v[i], &res, stats, &deferred);
				if (rc == 0 && deferred) {
					stats->deferred++;
					rc = json_object_set_new(skip, all.v[i], json_true()) ? -ENOMEM : 0;
				} else if (rc == 0) {
					rc = store_waiting_clear(st, server, all.v[i]);
				}
			}
			if (rc == 0)
				rc = store_commit(st);
			if (rc == 0)
				log_debug("curate", "a batch of %zu patients committed", end - at);
		}
		idlist_deinit(&all);
		if (rc != 0) {
			res_list_deinit(&res);
			json_decref(skip);
			return fail(st, stats, rc, "curating");
		}
	}
	json_decref(skip);
	if (stats->deferred)
		log_info("curate", "%lld patients wait for the next cycle: their records' anchors in REDCap were not read "
				   "in this one",
			 stats->deferred);
	if (res.bad)
		log_warn("curate", "%lld stored bodies were not JSON objects and were skipped", res.bad);
	res_list_deinit(&res);
	stats->elapsed_s = mono_s() - t0;
	return 0;
}

json_t *curate_stats_json(const curate_stats *s)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:s?}", "patients", (json_int_t)s->patients,
			 "records", (json_int_t)s->records, "refused", (json_int_t)s->refused, "rows_queued",
			 (json_int_t)s->rows_queued, "rows_unchanged", (json_int_t)s->rows_unchanged,
			 "review_queued", (json_int_t)s->review_queued, "value_errors",
			 (json_int_t)s->value_errors, "deferred", (json_int_t)s->deferred, "elapsed_s", s->elapsed_s,
			 "error", s->error[0] ? s->error : NULL);
}
