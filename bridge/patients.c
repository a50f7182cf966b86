/*
 * bridge/patients.c — the downtime patient index and patient resolution
 * (see patients.h).
 */
#include "bridge/patients.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/patient-search.h"
#include "offline-store/chart.h"
#include "offline-store/outbox.h"

#define INDEX_KV_PROJECT "_patient_index"
#define INDEX_KV_KEY "version"
#define INDEX_VERSION "1"

int patients_index_one(store *st, int64_t server, const char *id, const char *body, size_t len,
		       const char *mrn_system)
{
	json_error_t jerr;
	json_t *p = json_loadb(body, len, 0, &jerr);
	if (!p)
		return 0; /* stored as received; nothing to index */
	char **tok = NULL;
	size_t n = 0;
	int rc = patient_index_tokens(p, mrn_system, &tok, &n);
	json_decref(p);
	if (rc == -EINVAL)
		return 0;
	if (rc < 0)
		return rc;
	if (n > STORE_INDEX_MAX_TOKENS)
		n = STORE_INDEX_MAX_TOKENS; /* a Patient with hundreds of names: the first ones are enough */
	rc = store_patient_index_set(st, server, id, (const char *const *)tok, n);
	patient_tokens_free(tok, n);
	return rc;
}

typedef struct reindex_ctx {
	store *st;
	int64_t server;
	const char *mrn_system;
	size_t n;
} reindex_ctx;

static int reindex_cb(void *ud, const char *type, const char *id, const char *version_id, const char *last_updated,
		      const char *patient, const char *body, size_t body_len)
{
	reindex_ctx *c = ud;
	(void)type, (void)version_id, (void)last_updated, (void)patient;
	c->n++;
	return patients_index_one(c->st, c->server, id, body, body_len, c->mrn_system);
}

int patients_index_ensure(store *st, int64_t server, const char *mrn_system, size_t *reindexed)
{
	char *want = NULL;
	if (asprintf(&want, "%s|%s", INDEX_VERSION, mrn_system ? mrn_system : "") < 0)
		return -ENOMEM;
	char *have = NULL;
	int rc = store_project_get(st, INDEX_KV_PROJECT, INDEX_KV_KEY, &have);
	if (reindexed)
		*reindexed = 0;
	if (rc == 0 && have && strcmp(have, want) == 0) {
		free(have);
		free(want);
		return 0;
	}
	free(have);
	reindex_ctx c = { .st = st, .server = server, .mrn_system = mrn_system };
	rc = store_begin(st);
	if (rc == 0)
		rc = store_foreach_resource(st, server, "Patient", 1, reindex_cb, &c);
	if (rc == 0)
		rc = store_project_set(st, INDEX_KV_PROJECT, INDEX_KV_KEY, want);
	if (rc == 0)
		rc = store_commit(st);
	if (rc != 0)
		store_rollback(st);
	else if (reindexed)
		*reindexed = c.n;
	free(want);
	return rc;
}

void patients_match_deinit(patients_match *m)
{
	free(m->id);
	free(m->temp_id);
	*m = (patients_match){ 0 };
}

static int resolve_one(json_t *ids, patients_match *out, char *err, size_t err_size)
{
	size_t n = json_array_size(ids);
	if (n == 0) {
		snprintf(err, err_size, "no cached patient has this MRN");
		return PATIENTS_E_NONE;
	}
	if (n > 1) {
		snprintf(err, err_size, "%zu cached patients have this MRN: refused (a person must tell them apart)", n);
		return PATIENTS_E_AMBIGUOUS;
	}
	out->id = strdup(json_string_value(json_array_get(ids, 0)));
	return out->id ? 0 : -ENOMEM;
}

int patients_resolve(store *st, int64_t server, const char *arg, bool by_id, patients_match *out, char *err,
		     size_t err_size)
{
	*out = (patients_match){ 0 };
	if (!arg || !*arg) {
		snprintf(err, err_size, "no patient given");
		return PATIENTS_E_NONE;
	}
	if (strncmp(arg, "DT-", 3) == 0) {
		char *json = NULL, *linked = NULL;
		int rc = store_temp_patient_get(st, arg, &json, &linked);
		free(json);
		if (rc == STORE_E_NOTFOUND) {
			snprintf(err, err_size, "no downtime-registered patient has this id");
			return PATIENTS_E_NONE;
		}
		if (rc != 0) {
			snprintf(err, err_size, "%s", store_errmsg(st));
			return rc;
		}
		out->temp_id = strdup(arg);
		out->temp = linked == NULL;
		out->id = linked ? linked : strdup(arg);
		if (!out->temp_id || !out->id) {
			patients_match_deinit(out);
			return -ENOMEM;
		}
		return 0;
	}
	if (by_id) {
		char *body = NULL;
		size_t len = 0;
		int rc = store_get_resource(st, server, "Patient", arg, &body, &len, NULL, 0);
		free(body);
		if (rc == STORE_E_NOTFOUND) {
			snprintf(err, err_size, "no cached Patient has this id");
			return PATIENTS_E_NONE;
		}
		if (rc != 0) {
			snprintf(err, err_size, "%s", store_errmsg(st));
			return rc;
		}
		out->id = strdup(arg);
		return out->id ? 0 : -ENOMEM;
	}
	char *tok = NULL;
	if (asprintf(&tok, "mrn:%s", arg) < 0)
		return -ENOMEM;
	const char *toks[] = { tok };
	json_t *ids = store_patient_index_find(st, server, toks, 1, 16);
	free(tok);
	if (!ids) {
		snprintf(err, err_size, "%s", store_errmsg(st));
		return STORE_E_DB;
	}
	int rc = resolve_one(ids, out, err, err_size);
	json_decref(ids);
	return rc;
}

json_t *patients_search(store *st, int64_t server, const char *query, size_t limit, char *err, size_t err_size)
{
	patient_query q = PATIENT_QUERY_NULL;
	int rc = patient_query_parse(query, &q, err, err_size);
	if (rc != 0) {
		if (rc < 0)
			snprintf(err, err_size, "%s", strerror(-rc));
		return NULL;
	}
	json_t *out = json_array();
	json_t *cand = NULL;
	if (q.mrn_candidate) {
		/* An MRN or a logical id: both lookups, then the other words filter. */
		char *t1 = NULL, *t2 = NULL;
		if (asprintf(&t1, "mrn:%s", q.mrn_candidate) < 0)
			t1 = NULL;
		if (asprintf(&t2, "id:%s", q.mrn_candidate) < 0)
			t2 = NULL;
		cand = json_array();
		for (int k = 0; k < 2 && cand; k++) {
			const char *t = k == 0 ? t1 : t2;
			if (!t)
				continue;
			size_t nt = q.n + 1;
			const char **toks = calloc(nt, sizeof(*toks));
			if (!toks)
				break;
			toks[0] = t;
			for (size_t i = 0; i < q.n; i++)
				toks[i + 1] = q.tokens[i];
			json_t *ids = store_patient_index_find(st, server, toks, nt, limit);
			free(toks);
			if (!ids) {
				json_decref(cand);
				cand = NULL;
				break;
			}
			json_array_extend(cand, ids);
			json_decref(ids);
		}
		free(t1);
		free(t2);
	} else {
		cand = store_patient_index_find(st, server, (const char *const *)q.tokens, q.n, limit);
	}
	patient_query_deinit(&q);
	if (!cand || !out) {
		snprintf(err, err_size, "%s", store_errmsg(st));
		json_decref(cand);
		json_decref(out);
		return NULL;
	}
	/* Sorted and distinct (an id can come from both lookups). */
	size_t i;
	json_t *v;
	json_array_foreach(cand, i, v)
	{
		bool seen = false;
		for (size_t j = 0; j < json_array_size(out) && !seen; j++)
			seen = strcmp(json_string_value(json_array_get(out, j)), json_string_value(v)) == 0;
		if (!seen && json_array_size(out) < limit)
			json_array_append(out, v);
	}
	json_decref(cand);
	return out;
}

static int collect_cb(void *ud, const char *type, const char *id, const char *version_id, const char *last_updated,
		      const char *patient, const char *body, size_t body_len)
{
	json_t *arr = ud;
	(void)type, (void)id, (void)version_id, (void)last_updated, (void)patient;
	json_error_t jerr;
	json_t *r = json_loadb(body, body_len, 0, &jerr);
	if (r && json_array_append_new(arr, r) != 0)
		return -ENOMEM;
	return 0;
}

json_t *patients_resources(store *st, int64_t server, const char *patient)
{
	json_t *arr = json_array();
	if (!arr)
		return NULL;
	if (store_foreach_patient_resource(st, server, patient, collect_cb, arr) != 0) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}
