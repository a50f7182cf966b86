/*
 * mapping-curate.c — curate one patient: find the Patient and its MRN,
 * name the record, place the anchors, run every rule, and hand back the
 * rows sorted and merged.
 *
 * Work per patient is O(n log n) in its resources: they are sorted once by
 * (type, id, version) so that each rule walks only the resources of its
 * type, in an order that does not depend on the input's; selections keep
 * the best candidate in one pass (ties broken by time, then id, so that
 * any input order gives the same answer); rows are merged after one sort.
 */
#include "bridge/mapping-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef enum astate_kind {
	AN_ABSENT = 0,   /* no value yet: rules that need it make nothing */
	AN_OK,
	AN_BAD,          /* a REDCap value that is not a date or datetime */
} astate_kind;

typedef struct astate {
	astate_kind state;
	int64_t us;
	const char *text;             /* the time as written (resource or REDCap) */
	const mapping_resource *res;  /* FHIR anchors: the resource it came from */
} astate;

/* A row while it is built, with what the sort needs. */
typedef struct crow {
	mapping_row row;
	size_t rule;
	bool has_time;
	int64_t time;
} crow;

typedef struct cur {
	const mapping *m;
	const mapping_input *in;
	const mapping_resource **res;  /* sorted by type, id, version */
	size_t n;
	fhirpath_ctx fx;
	astate *an;
	crow *rows;
	size_t n_rows, cap_rows;
} cur;

/* ---- resources ------------------------------------------------------------- */

static const char *nz(const char *s)
{
	return s ? s : "";
}

static int res_cmp_id(const mapping_resource *a, const mapping_resource *b)
{
	int c = strcmp(nz(a->type), nz(b->type));

	if (!c)
		c = strcmp(nz(a->id), nz(b->id));
	if (!c)
		c = strcmp(nz(a->version_id), nz(b->version_id));
	return c;
}

static int res_qsort_cmp(const void *a, const void *b)
{
	return res_cmp_id(*(const mapping_resource *const *)a, *(const mapping_resource *const *)b);
}

/* The sorted resources of type t: [*lo, *hi). */
static void type_range(const cur *c, const char *t, size_t *lo, size_t *hi)
{
	size_t l = 0, h = c->n;

	while (l < h) {
		size_t mid = l + (h - l) / 2;
		if (strcmp(nz(c->res[mid]->type), t) < 0)
			l = mid + 1;
		else
			h = mid;
	}
	*lo = l;
	for (h = l; h < c->n && strcmp(nz(c->res[h]->type), t) == 0; h++)
		;
	*hi = h;
}

/* ---- filters ------------------------------------------------------------------ */

static bool token_matches_coding(const mtoken *t, const json_t *coding)
{
	const char *sys = json_string_value(json_object_get(coding, "system"));
	const char *code = json_string_value(json_object_get(coding, "code"));

	if (t->system && (t->system[0] ? !sys || strcmp(sys, t->system) != 0 : sys != NULL))
		return false;
	return !t->code || (code && strcmp(code, t->code) == 0);
}

/* Does any coding of the CodeableConcept cc match any token? */
static bool cc_matches(const json_t *cc, const mtoken *tok, size_t n)
{
	const json_t *coding;
	size_t i;

	json_array_foreach(json_object_get(cc, "coding"), i, coding)
		for (size_t k = 0; k < n; k++)
			if (token_matches_coding(&tok[k], coding))
				return true;
	return false;
}

/* A CodeableConcept, an array of them, or (AllergyIntolerance.category) plain codes. */
static bool concepts_match(const json_t *v, const mtoken *tok, size_t n)
{
	const json_t *e;
	size_t i;

	if (!json_is_array(v)) {
		if (json_is_string(v)) {
			for (size_t k = 0; k < n; k++)
				if (!tok[k].system && tok[k].code && strcmp(tok[k].code, json_string_value(v)) == 0)
					return true;
			return false;
		}
		return json_is_object(v) && cc_matches(v, tok, n);
	}
	json_array_foreach(v, i, e)
		if (concepts_match(e, tok, n))
			return true;
	return false;
}

/* Where a resource type keeps the code a filter's "code" means. */
static const json_t *code_of(const mapping_resource *r)
{
	if (strncmp(nz(r->type), "Medication", 10) == 0)
		return json_object_get(r->json, "medicationCodeableConcept");
	if (strcmp(nz(r->type), "Encounter") == 0)
		return json_object_get(r->json, "type");
	return json_object_get(r->json, "code");
}

static bool status_matches(const mfilter *f, const json_t *res)
{
	const char *st = json_string_value(json_object_get(res, "status"));
	const json_t *coding;
	size_t i;

	for (size_t k = 0; k < f->n_status; k++)
		if (st && strcmp(st, f->status[k]) == 0)
			return true;
	json_array_foreach(json_object_get(json_object_get(res, "clinicalStatus"), "coding"), i, coding) {
		const char *code = json_string_value(json_object_get(coding, "code"));
		for (size_t k = 0; code && k < f->n_status; k++)
			if (strcmp(code, f->status[k]) == 0)
				return true;
	}
	return false;
}

static bool filter_matches(const mfilter *f, const mapping_resource *r)
{
	if (f->n_code && !concepts_match(code_of(r), f->code, f->n_code))
		return false;
	if (f->n_category && !concepts_match(json_object_get(r->json, "category"), f->category, f->n_category))
		return false;
	return !f->n_status || status_matches(f, r->json);
}

/* ---- times and anchors ------------------------------------------------------------ */

/* The instant of r by path p (and the string as written); -1 when it has none. */
static int res_time(cur *c, const fhirpath *p, const mapping_resource *r, int64_t *us, const char **text, int *err)
{
	const fhirpath_coll *coll;
	mtime t;

	*err = fhirpath_eval(p, r->json, &c->fx, &coll);
	if (*err || mapping_coll_time(coll, &t) != 0 || mtime_instant(c->m, &t, us) != 0)
		return -1;
	if (text)
		*text = t.text;
	return 0;
}

static int fhir_anchor(cur *c, const manchor *a, astate *s)
{
	size_t lo, hi;
	int err = 0;

	type_range(c, a->resource, &lo, &hi);
	for (size_t i = lo; i < hi; i++) {
		const mapping_resource *r = c->res[i];
		const char *text;
		int64_t us;
		if (!filter_matches(&a->filter, r))
			continue;
		if (res_time(c, a->time, r, &us, &text, &err) != 0) {
			if (err)
				return err;
			continue;
		}
		/* Resources come sorted by id: a tie keeps the first. */
		if (s->state == AN_OK && (a->select == MS_FIRST ? us >= s->us : us <= s->us))
			continue;
		*s = (astate){ .state = AN_OK, .us = us, .text = text, .res = r };
	}
	return 0;
}

static void redcap_anchor(cur *c, const manchor *a, astate *s)
{
	const char *v = c->in->redcap_anchor_values ? c->in->redcap_anchor_values[a->field_index] : NULL;
	mtime t;

	if (!v || !*v)
		return;
	s->state = AN_BAD;
	/* REDCap holds "YYYY-MM-DD" or "YYYY-MM-DD HH:MM[:SS]", without a zone. */
	if (mtime_parse(v, &t) != 0 || t.has_tz || t.prec < MTP_DAY || (t.prec == MTP_TIME && t.usec))
		return;
	if (mtime_instant(c->m, &t, &s->us) != 0)
		return;
	s->state = AN_OK;
	s->text = v;
}

static int anchors(cur *c)
{
	int r;

	for (size_t i = 0; i < c->m->n_anchors; i++) {
		const manchor *a = &c->m->anchors[i];
		if (a->field)
			redcap_anchor(c, a, &c->an[i]);
		else if ((r = fhir_anchor(c, a, &c->an[i])))
			return r;
	}
	return 0;
}

/* ---- rows ------------------------------------------------------------------------ */

static void value_deinit(mapping_value *v)
{
	free(v->field);
	free(v->value);
	free(v->error);
	free(v->res_type);
	free(v->res_id);
	free(v->res_version);
}

static void row_deinit(mapping_row *r)
{
	free(r->event);
	free(r->instrument);
	free(r->src_type);
	free(r->src_id);
	for (size_t i = 0; i < r->n; i++)
		value_deinit(&r->v[i]);
	free(r->v);
	*r = (mapping_row){ 0 };
}

static int dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

/* A new row for rule ri; src is the instance's resource of a repeating rule. */
static int row_new(cur *c, size_t ri, const mapping_resource *src, bool has_time, int64_t t, crow **out)
{
	const mrule *rl = &c->m->rules[ri];

	if (c->n_rows == c->cap_rows) {
		size_t cap = c->cap_rows ? c->cap_rows * 2 : 16;
		crow *v = realloc(c->rows, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->rows = v;
		c->cap_rows = cap;
	}
	crow *w = &c->rows[c->n_rows++];
	*w = (crow){ .rule = ri, .has_time = has_time, .time = t };
	w->row.review = rl->review;
	*out = w;
	if (dup_opt(rl->event, &w->row.event) || dup_opt(rl->instrument, &w->row.instrument))
		return -ENOMEM;
	if (rl->instrument && src && (dup_opt(src->type, &w->row.src_type) || dup_opt(src->id, &w->row.src_id)))
		return -ENOMEM;
	return 0;
}

/* Append a value (value/error handed over) with the provenance of res. */
static int row_add(crow *w, const mrule *rl, const mfield *f, char *value, char *error, const mapping_resource *res)
{
	mapping_value *v = realloc(w->row.v, (w->row.n + 1) * sizeof(*v));

	if (!v) {
		free(value);
		free(error);
		return -ENOMEM;
	}
	w->row.v = v;
	v = &v[w->row.n++];
	*v = (mapping_value){ .value = value, .error = error, .rule = rl->name };
	if (dup_opt(f->name, &v->field) || (res && (dup_opt(res->type, &v->res_type) || dup_opt(res->id, &v->res_id) ||
						    dup_opt(res->version_id ? res->version_id : "", &v->res_version))))
		return -ENOMEM;
	return 0;
}

/* The nodes of field f in json: the first alternative path that gives any. */
static int field_eval(cur *c, const mfield *f, const json_t *json, const fhirpath_coll **coll)
{
	int e;

	for (size_t i = 0; i < f->n_value; i++)
		if ((e = fhirpath_eval(f->value[i], json, &c->fx, coll)) || (*coll)->n)
			return e;
	return 0;
}

/* Fill every field of rule from resource r into w. */
static int fill_from_resource(cur *c, crow *w, const mrule *rl, const mapping_resource *r)
{
	const fhirpath_coll *coll;
	char *value, *error;
	int e;

	for (size_t i = 0; i < rl->n_fields; i++) {
		const mfield *f = &rl->fields[i];
		if ((e = field_eval(c, f, r->json, &coll)) ||
		    (e = mapping_field_value(f, coll, &value, &error)))
			return e;
		if ((value || error) && (e = row_add(w, rl, f, value, error, r)))
			return e;
	}
	return 0;
}

/* Every field of rule with the same error (no value could be made). */
static int fill_error(cur *c, size_t ri, const char *msg)
{
	const mrule *rl = &c->m->rules[ri];
	crow *w;
	int e;

	if ((e = row_new(c, ri, NULL, false, 0, &w)))
		return e;
	for (size_t i = 0; i < rl->n_fields; i++) {
		char *error = strdup(msg);
		if (!error || (e = row_add(w, rl, &rl->fields[i], NULL, error, NULL)))
			return error ? e : -ENOMEM;
	}
	return 0;
}

/* ---- rules ------------------------------------------------------------------------ */

static int anchor_rule(cur *c, size_t ri)
{
	const mrule *rl = &c->m->rules[ri];
	const astate *a = &c->an[rl->anchor];
	const fhirpath_coll *coll;
	char *value, *error;
	crow *w;
	int e;

	if (a->state == AN_ABSENT)
		return 0;
	if (a->state == AN_BAD)
		return fill_error(c, ri, "the anchor's REDCap value is not a date or datetime");
	if ((e = row_new(c, ri, NULL, false, 0, &w)))
		return e;
	for (size_t i = 0; i < rl->n_fields; i++) {
		const mfield *f = &rl->fields[i];
		if (f->n_value) {
			if ((e = field_eval(c, f, a->res->json, &coll)) ||
			    (e = mapping_field_value(f, coll, &value, &error)))
				return e;
		} else if ((e = mapping_field_value_str(f, a->text, &value, &error))) {
			return e;
		}
		if ((value || error) && (e = row_add(w, rl, f, value, error, a->res)))
			return e;
	}
	return 0;
}

/* A candidate of a selecting rule. */
typedef struct cand {
	const mapping_resource *r;
	bool has_time;
	int64_t t;
	double num;
} cand;

static int64_t dist(int64_t a, int64_t b)
{
	return a > b ? a - b : b - a;
}

/* Is a a better pick than the current best b? Ties go to the earlier time,
 * then the smaller resource id (LAST: the later time, then the smaller id). */
static bool better(mselect sel, const cand *a, const cand *b, int64_t anchor)
{
	switch (sel) {
	case MS_FIRST:
		if (a->t != b->t)
			return a->t < b->t;
		break;
	case MS_LAST:
		if (a->t != b->t)
			return a->t > b->t;
		break;
	case MS_NEAR:
		if (dist(a->t, anchor) != dist(b->t, anchor))
			return dist(a->t, anchor) < dist(b->t, anchor);
		if (a->t != b->t)
			return a->t < b->t;
		break;
	case MS_MIN:
	case MS_MAX:
		if (a->num != b->num)
			return sel == MS_MIN ? a->num < b->num : a->num > b->num;
		if (a->has_time != b->has_time)
			return a->has_time;
		if (a->has_time && a->t != b->t)
			return a->t < b->t;
		break;
	default:
		break;
	}
	return res_cmp_id(a->r, b->r) < 0;
}

/* Is r a candidate: filter, time, window? Fills k. 1 yes, 0 no, <0 error. */
static int candidate(cur *c, const mrule *rl, const mapping_resource *r, cand *k)
{
	int err = 0;

	*k = (cand){ .r = r };
	if (!filter_matches(&rl->filter, r))
		return 0;
	if (rl->time)
		k->has_time = res_time(c, rl->time, r, &k->t, NULL, &err) == 0;
	if (err)
		return err;
	if (rl->window) {
		const astate *a = &c->an[rl->win_anchor];
		if (!k->has_time || k->t < a->us + rl->win_from || k->t > a->us + rl->win_to)
			return 0;
	}
	if ((rl->select == MS_FIRST || rl->select == MS_LAST || rl->select == MS_NEAR) && !k->has_time)
		return 0;
	return 1;
}

enum { USE_OK = 0, USE_EMPTY, USE_REFUSED };

/*
 * Does candidate k give a usable value for a selecting rule? Every selection
 * chooses among usable candidates only, so that a resource without a value,
 * or with one the rule refuses (a unit other than the field's, not a
 * number, several values), never hides a good one:
 *   USE_OK       the fields make a value and no error (MIN/MAX: and the
 *                field is a single number, in the unit, set in k->num);
 *   USE_EMPTY    no field makes anything: the resource is passed over as
 *                if it did not match (no value is not an error);
 *   USE_REFUSED  a field makes an error, or MIN/MAX find no number; *why
 *                (malloc'd, may stay NULL) says why.
 * Returns a USE_* or -ENOMEM.
 */
static int usable(cur *c, const mrule *rl, cand *k, char **why)
{
	const fhirpath_coll *coll;
	bool any = false;
	int e;

	*why = NULL;
	for (size_t i = 0; i < rl->n_fields; i++) {
		char *value, *error;
		if ((e = field_eval(c, &rl->fields[i], k->r->json, &coll)) ||
		    (e = mapping_field_value(&rl->fields[i], coll, &value, &error)))
			return e;
		free(value);
		if (error) {
			*why = error;
			return USE_REFUSED;
		}
		any = any || value;
	}
	if (!any)
		return USE_EMPTY;
	if (rl->select != MS_MIN && rl->select != MS_MAX)
		return USE_OK;
	/* MIN/MAX have one field; its path is evaluated again (the collection above is gone). */
	if ((e = field_eval(c, &rl->fields[0], k->r->json, &coll)))
		return e;
	return mapping_field_number(&rl->fields[0], coll, &k->num) == 0 ? USE_OK : USE_REFUSED;
}

/* The error of a selecting rule whose matching resources all gave refused values. */
static int fill_refused(cur *c, size_t ri, const char *why)
{
	const mrule *rl = &c->m->rules[ri];
	char *msg;
	int e;

	if (rl->select == MS_MIN || rl->select == MS_MAX)
		return fill_error(c, ri, rl->fields[0].unit ? "no matching resource gives a number in the unit required"
							    : "no matching resource gives a number");
	if (!why)
		return fill_error(c, ri, "no matching resource gives a usable value");
	if (asprintf(&msg, "no matching resource gives a usable value (%s)", why) < 0)
		return -ENOMEM;
	e = fill_error(c, ri, msg);
	free(msg);
	return e;
}

static int resource_rule(cur *c, size_t ri)
{
	const mrule *rl = &c->m->rules[ri];
	const int64_t anchor = rl->window ? c->an[rl->win_anchor].us : 0;
	cand best = { 0 }, refused = { 0 }, k;
	char *why = NULL, *kwhy;
	size_t lo, hi;
	crow *w;
	int e;

	if (rl->window && c->an[rl->win_anchor].state != AN_OK) {
		if (c->an[rl->win_anchor].state == AN_BAD && !rl->instrument)
			return fill_error(c, ri, "the window's anchor has a REDCap value that is not a date or "
				"datetime");
		return 0;
	}
	type_range(c, rl->resource, &lo, &hi);
	for (size_t i = lo; i < hi; i++) {
		if ((e = candidate(c, rl, c->res[i], &k)) <= 0) {
			if (e < 0)
				goto out;
			continue;
		}
		if (rl->instrument || rl->select == MS_NONE) {
			/* One row per resource (repeating; or the Patient). */
			if ((e = row_new(c, ri, k.r, k.has_time, k.t, &w)) || (e = fill_from_resource(c, w, rl, k.r)))
				goto out;
			continue;
		}
		if ((e = usable(c, rl, &k, &kwhy)) < 0)
			goto out;
		if (e == USE_REFUSED && !best.r && (!refused.r || better(rl->select, &k, &refused, anchor))) {
			/* Kept to say why, while no usable one is found: the reason of the one that would have won. */
			free(why);
			why = kwhy;
			kwhy = NULL;
			refused = k;
		}
		free(kwhy);
		if (e != USE_OK)
			continue;
		if (!best.r || better(rl->select, &k, &best, anchor))
			best = k;
	}
	e = 0;
	if (best.r) {
		if (!(e = row_new(c, ri, NULL, false, 0, &w)))
			e = fill_from_resource(c, w, rl, best.r);
	} else if (refused.r) {
		e = fill_refused(c, ri, why);
	}
out:
	free(why);
	return e;
}

/* ---- sorting and merging ----------------------------------------------------------------- */

static int cmp_opt(const char *a, const char *b)
{
	if (!a || !b)
		return (a != NULL) - (b != NULL);
	return strcmp(a, b);
}

/* Rows that become one: same event, instrument, review flag and instance resource. */
static int merge_key_cmp(const crow *a, const crow *b)
{
	int c;

	if ((c = cmp_opt(a->row.instrument, b->row.instrument)) || (c = cmp_opt(a->row.event, b->row.event)))
		return c;
	if (a->row.review != b->row.review)
		return a->row.review ? 1 : -1;
	if ((c = cmp_opt(a->row.src_type, b->row.src_type)) || (c = cmp_opt(a->row.src_id, b->row.src_id)))
		return c;
	return 0;
}

static int merge_qsort_cmp(const void *pa, const void *pb)
{
	const crow *a = pa, *b = pb;
	int c = merge_key_cmp(a, b);

	if (c)
		return c;
	return a->rule < b->rule ? -1 : a->rule > b->rule;
}

/* The order rows are handed out in: non-repeating first, then by
 * instrument, event, review flag, time of the resource, resource. */
static int out_qsort_cmp(const void *pa, const void *pb)
{
	const crow *a = pa, *b = pb;
	int c;

	if ((c = cmp_opt(a->row.instrument, b->row.instrument)) || (c = cmp_opt(a->row.event, b->row.event)))
		return c;
	if (a->row.review != b->row.review)
		return a->row.review ? 1 : -1;
	if (a->has_time != b->has_time)
		return a->has_time ? -1 : 1;
	if (a->has_time && a->time != b->time)
		return a->time < b->time ? -1 : 1;
	if ((c = cmp_opt(a->row.src_type, b->row.src_type)) || (c = cmp_opt(a->row.src_id, b->row.src_id)))
		return c;
	return 0;
}

/* Move b's values into a. A field two rules fill for one instance keeps
 * the first rule's value, turned into an error naming the other rule. */
static int merge_into(crow *a, crow *b)
{
	mapping_value *v = realloc(a->row.v, (a->row.n + b->row.n) * sizeof(*v));

	if (!v && a->row.n + b->row.n)
		return -ENOMEM;
	a->row.v = v;
	for (size_t i = 0; i < b->row.n; i++) {
		mapping_value *bv = &b->row.v[i];
		mapping_value *dup = NULL;
		for (size_t j = 0; j < a->row.n && !dup; j++)
			if (strcmp(a->row.v[j].field, bv->field) == 0)
				dup = &a->row.v[j];
		if (!dup) {
			a->row.v[a->row.n++] = *bv;
			*bv = (mapping_value){ 0 };
			continue;
		}
		char *msg = NULL;
		if (asprintf(&msg, "rule \"%s\" fills this field for the same resource too", bv->rule) < 0)
			return -ENOMEM;
		free(dup->value);
		free(dup->error);
		dup->value = NULL;
		dup->error = msg;
	}
	return 0;
}

static int finish(cur *c, mapping_result *out)
{
	size_t n = 0;
	int e;

	if (c->n_rows > 1)
		qsort(c->rows, c->n_rows, sizeof(crow), merge_qsort_cmp);
	for (size_t i = 0; i < c->n_rows; i++) {
		if (n > 0 && merge_key_cmp(&c->rows[n - 1], &c->rows[i]) == 0) {
			e = merge_into(&c->rows[n - 1], &c->rows[i]);
			row_deinit(&c->rows[i].row);
			if (e)
				return e;
			continue;
		}
		if (c->rows[i].row.n == 0) {
			row_deinit(&c->rows[i].row);
			continue;
		}
		if (n != i)
			c->rows[n] = c->rows[i];
		n++;
	}
	c->n_rows = n;
	if (n > 1)
		qsort(c->rows, n, sizeof(crow), out_qsort_cmp);
	out->rows = calloc(n ? n : 1, sizeof(mapping_row));
	if (!out->rows)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		out->rows[i] = c->rows[i].row;
	out->n_rows = n;
	c->n_rows = 0;
	return 0;
}

/* ---- curation ------------------------------------------------------------------------------- */

static int set_reason(mapping_result *out, mapping_status st, const char *reason)
{
	out->status = st;
	out->reason = strdup(reason);
	return out->reason ? 0 : -ENOMEM;
}

/* The Patient among the input: 0 and *p, MAPPING_NO_PATIENT, or -EINVAL
 * when there are several (the caller passes one patient's resources). */
static int find_patient(const cur *c, const mapping_resource **p)
{
	size_t lo, hi;

	type_range(c, "Patient", &lo, &hi);
	if (lo == hi)
		return MAPPING_NO_PATIENT;
	if (hi - lo > 1 || !c->res[lo]->json)
		return -EINVAL;
	*p = c->res[lo];
	return 0;
}

static int run(cur *c, mapping_result *out)
{
	const mapping_resource *patient = NULL;
	int e;

	for (size_t i = 0; i < c->n; i++)
		c->res[i] = &c->in->res[i];
	if (c->n > 1)
		qsort(c->res, c->n, sizeof(*c->res), res_qsort_cmp);
	if ((e = find_patient(c, &patient)) == MAPPING_NO_PATIENT)
		return set_reason(out, MAPPING_NO_PATIENT, "no Patient resource among the patient's resources");
	if (e)
		return e;
	if (!(out->patient_id = strdup(nz(patient->id))))
		return -ENOMEM;
	e = mapping_patient_mrn(patient->json, c->m->mrn_system, &out->mrn);
	if (e == MAPPING_NO_MRN)
		return set_reason(out, MAPPING_NO_MRN, "the Patient has no identifier with the MRN system");
	if (e == MAPPING_MRN_CONFLICT)
		return set_reason(out, MAPPING_MRN_CONFLICT,
				  "the Patient has two identifiers with the MRN system and different values");
	if (e)
		return e;
	if (!(out->record = mapping_record_name(c->m, out->mrn)))
		return -ENOMEM;
	if ((e = anchors(c)))
		return e;
	for (size_t i = 0; i < c->m->n_rules; i++) {
		e = c->m->rules[i].anchor != SIZE_MAX ? anchor_rule(c, i) : resource_rule(c, i);
		if (e)
			return e;
	}
	return finish(c, out);
}

int mapping_curate(const mapping *m, const mapping_input *in, mapping_result *out)
{
	cur c = { .m = m, .in = in, .n = in ? in->n : 0 };
	int e = -ENOMEM;

	if (!out)
		return -EINVAL;
	*out = (mapping_result){ 0 };
	if (!m || !in || (in->n && !in->res))
		return -EINVAL;
	c.fx.mrn_system = m->mrn_system;
	c.res = calloc(c.n ? c.n : 1, sizeof(*c.res));
	c.an = calloc(m->n_anchors ? m->n_anchors : 1, sizeof(*c.an));
	if (c.res && c.an)
		e = run(&c, out);
	for (size_t i = 0; i < c.n_rows; i++)
		row_deinit(&c.rows[i].row);
	free(c.rows);
	free(c.res);
	free(c.an);
	fhirpath_ctx_deinit(&c.fx);
	if (e)
		mapping_result_deinit(out);
	return e;
}

void mapping_result_deinit(mapping_result *r)
{
	if (!r)
		return;
	free(r->mrn);
	free(r->record);
	free(r->patient_id);
	for (size_t i = 0; i < r->n_rows; i++)
		row_deinit(&r->rows[i]);
	free(r->rows);
	free(r->reason);
	*r = (mapping_result){ 0 };
}

static bool same_opt(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

size_t mapping_owned_fields(const mapping *m, const mapping_row *row, const char ***fields)
{
	size_t n = 0, cap = 0;
	const char **v = NULL;
	*fields = NULL;
	for (size_t i = 0; i < m->n_rules; i++) {
		const mrule *r = &m->rules[i];
		if (r->review || !same_opt(r->event, row->event) || !same_opt(r->instrument, row->instrument))
			continue;
		for (size_t k = 0; k < r->n_fields; k++) {
			size_t j;
			for (j = 0; j < n && strcmp(v[j], r->fields[k].name) != 0; j++)
				;
			if (j < n)
				continue;
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 16;
				const char **nv = realloc(v, nc * sizeof(*nv));
				if (!nv) {
					free(v);
					return (size_t)-1;
				}
				v = nv;
				cap = nc;
			}
			v[n++] = r->fields[k].name;
		}
	}
	*fields = v;
	return n;
}
