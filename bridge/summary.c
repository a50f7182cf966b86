/*
 * bridge/summary.c — the cached patient summary (see summary.h for the
 * output and every selection rule).
 *
 * Everything read from a resource is borrowed from it; the summary's
 * strings are copies (json_pack "s"), so the resources may be released as
 * soon as summary_build returns.
 */
#include "bridge/summary.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fhir/fhir.h"

#define LOINC "http://loinc.org"

/* ------------------------------------------------------------------------
 * A growable string; a failed allocation sets oom and drops what follows.
 */
typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_puts(sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3))) sb_printf(sbuf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		sb_add(b, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		b->oom = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb_add(b, big, (size_t)n);
	free(big);
}

/* The text so far, "" for an empty buffer; NULL after an allocation failure. */
static const char *sb_str(const sbuf *b)
{
	return b->oom ? NULL : b->p ? b->p : "";
}

static void sb_free(sbuf *b)
{
	free(b->p);
	*b = (sbuf){ 0 };
}

/* Start a new part of a list: sep unless the buffer is empty. */
static void sb_sep(sbuf *b, const char *sep)
{
	if (b->len > 0)
		sb_puts(b, sep);
}

/* ------------------------------------------------------------------------
 * Reading FHIR values (all borrowed; NULL for absent or of another type).
 */

static const char *get_str(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The first element of the array o[key], or NULL. */
static const json_t *first_of(const json_t *o, const char *key)
{
	return json_array_get(json_object_get(o, key), 0);
}

/* A CodeableConcept as text: text, else the first coding's display, else
 * the first coding's code. */
static const char *cc_text(const json_t *cc)
{
	const char *t = get_str(cc, "text");
	const json_t *c;
	size_t i;

	if (t)
		return t;
	json_array_foreach(json_object_get(cc, "coding"), i, c) {
		if ((t = get_str(c, "display")))
			return t;
	}
	json_array_foreach(json_object_get(cc, "coding"), i, c) {
		if ((t = get_str(c, "code")))
			return t;
	}
	return NULL;
}

/* Whether a coding of cc has the code (any system). */
static bool cc_has_code(const json_t *cc, const char *code)
{
	const json_t *c;
	size_t i;

	json_array_foreach(json_object_get(cc, "coding"), i, c) {
		const char *x = get_str(c, "code");
		if (x && strcmp(x, code) == 0)
			return true;
	}
	return false;
}

/* Whether cc has any coding with a code. */
static bool cc_coded(const json_t *cc)
{
	const json_t *c;
	size_t i;

	json_array_foreach(json_object_get(cc, "coding"), i, c) {
		if (get_str(c, "code"))
			return true;
	}
	return false;
}

/* The first coding of cc in system with a code, or NULL. */
static const json_t *cc_coding(const json_t *cc, const char *system)
{
	const json_t *c;
	size_t i;

	json_array_foreach(json_object_get(cc, "coding"), i, c) {
		const char *s = get_str(c, "system");
		if (get_str(c, "code") && (!system || (s && strcmp(s, system) == 0)))
			return c;
	}
	return NULL;
}

/*
 * A JSON number as text into out: integers exactly, reals as the shortest
 * "%.Ng" that reads back as the same double (see summary.h). False when v
 * is not a number.
 */
static bool num_text(const json_t *v, char *out, size_t size)
{
	if (json_is_integer(v)) {
		snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return true;
	}
	if (!json_is_real(v))
		return false;
	double d = json_real_value(v);
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, size, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			break;
	}
	for (char *p = out; *p; p++)
		if (*p == ',')
			*p = '.';  /* a locale with a decimal comma */
	return true;
}

/* Append a number; false (nothing appended) when v is not one. */
static bool sb_num(sbuf *b, const json_t *v)
{
	char t[64];
	if (!num_text(v, t, sizeof(t)))
		return false;
	sb_puts(b, t);
	return true;
}

/* A Quantity's value with its comparator ("<5"); false without a value. */
static bool sb_quantity(sbuf *b, const json_t *q)
{
	const char *cmp = get_str(q, "comparator");
	char t[64];

	if (!num_text(json_object_get(q, "value"), t, sizeof(t)))
		return false;
	if (cmp)
		sb_puts(b, cmp);
	sb_puts(b, t);
	return true;
}

static const char *quantity_unit(const json_t *q)
{
	const char *u = get_str(q, "unit");
	return u ? u : get_str(q, "code");
}

/*
 * A Range-like pair of Quantities into b: "<low> - <high>", ">= <low>" or
 * "<= <high>", then " <unit>" (low's, else high's). False (nothing
 * appended) when neither has a value.
 */
static bool sb_range(sbuf *b, const json_t *lo, const json_t *hi)
{
	const char *u = quantity_unit(lo) ? quantity_unit(lo) : quantity_unit(hi);
	sbuf l = { 0 }, h = { 0 };
	bool hl = sb_quantity(&l, lo), hh = sb_quantity(&h, hi);

	if (hl && hh)
		sb_printf(b, "%s - %s", sb_str(&l), sb_str(&h));
	else if (hl)
		sb_printf(b, ">= %s", sb_str(&l));
	else if (hh)
		sb_printf(b, "<= %s", sb_str(&h));
	if ((hl || hh) && u)
		sb_printf(b, " %s", u);
	b->oom |= l.oom || h.oom;
	sb_free(&l);
	sb_free(&h);
	return hl || hh;
}

/* An instant/dateTime/date as ms since the epoch; false when unreadable. */
static bool instant_ms(const char *s, int64_t *ms)
{
	return s && fhir_parse_instant(s, ms) == 0;
}

/* A growable array of new references (items of a section before sorting). */
typedef struct jvec {
	json_t **v;
	size_t n, cap;
} jvec;

/* Take item, a new reference: NULL (a failed allocation) gives false; json
 * null (the resource is not shown) is dropped. */
static bool jvec_push(jvec *j, json_t *item)
{
	if (json_is_null(item))
		return true;
	if (!item)
		return false;
	if (j->n == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 16;
		json_t **v = realloc(j->v, cap * sizeof(*v));
		if (!v) {
			json_decref(item);
			return false;
		}
		j->v = v;
		j->cap = cap;
	}
	j->v[j->n++] = item;
	return true;
}

static void jvec_free(jvec *j)
{
	for (size_t i = 0; i < j->n; i++)
		json_decref(j->v[i]);
	free(j->v);
	*j = (jvec){ 0 };
}

/* Sort j, then move its items into a new array (j is emptied). NULL when
 * out of memory. */
static json_t *jvec_to_array(jvec *j, int (*cmp)(const void *, const void *))
{
	json_t *a = json_array();
	bool ok = a != NULL;

	if (j->n && cmp)
		qsort(j->v, j->n, sizeof(*j->v), cmp);
	for (size_t i = 0; i < j->n; i++) {
		if (ok && json_array_append_new(a, j->v[i]) != 0)
			ok = false;
		else if (!ok)
			json_decref(j->v[i]);
	}
	j->n = 0;
	jvec_free(j);
	if (!ok) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/* strcmp of two nullable strings, NULL last; fold: ASCII case-insensitively first. */
static int cmp_nullable(const char *a, const char *b, bool fold)
{
	if (!a || !b)
		return a ? -1 : b ? 1 : 0;
	int c = fold ? strcasecmp(a, b) : 0;
	return c ? c : strcmp(a, b);
}

/* Compare two summary items by the string member key. */
static int cmp_member(const json_t *a, const json_t *b, const char *key, bool fold)
{
	return cmp_nullable(get_str(a, key), get_str(b, key), fold);
}

static int cmp_text_id(const void *pa, const void *pb)
{
	const json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
	int c = cmp_member(a, b, "text", true);
	return c ? c : cmp_member(a, b, "id", false);
}

/* ------------------------------------------------------------------------
 * Patient.
 */

/* The name to show: use official, else usual, else the first. */
static const json_t *pick_name(const json_t *names)
{
	static const char *const uses[] = { "official", "usual" };
	const json_t *nm;
	size_t i;

	for (size_t u = 0; u < 2; u++) {
		json_array_foreach(names, i, nm) {
			const char *use = get_str(nm, "use");
			if (use && strcmp(use, uses[u]) == 0)
				return nm;
		}
	}
	json_array_foreach(names, i, nm) {
		if (json_is_object(nm))
			return nm;
	}
	return NULL;
}

/* "Family, Given Given" into b (see summary.h); false when there is nothing. */
static bool name_display(const json_t *nm, sbuf *b)
{
	const char *family = get_str(nm, "family"), *text = get_str(nm, "text");
	sbuf given = { 0 };
	const json_t *g;
	size_t i;

	json_array_foreach(json_object_get(nm, "given"), i, g) {
		if (json_is_string(g) && json_string_length(g) > 0) {
			sb_sep(&given, " ");
			sb_puts(&given, json_string_value(g));
		}
	}
	if (family && *family) {
		sb_puts(b, family);
		if (given.len) {
			sb_puts(b, ", ");
			sb_puts(b, given.p);
		}
	} else if (given.len) {
		sb_puts(b, given.p);
	} else if (text && *text) {
		sb_puts(b, text);
	}
	b->oom |= given.oom;
	sb_free(&given);
	return b->len > 0 || b->oom;
}

/* Read "YYYY-MM-DD" at the start of s (digits and dashes only). */
static bool read_date(const char *s, int *y, int *m, int *d)
{
	for (int i = 0; i < 10; i++)
		if (i == 4 || i == 7 ? s[i] != '-' : (s[i] < '0' || s[i] > '9'))
			return false;
	*y = atoi(s), *m = atoi(s + 5), *d = atoi(s + 8);
	return true;
}

/* Whole years from birth (YYYY-MM-DD) to now (UTC); -1 when unknown. */
static int age_years(const char *birth, int64_t now_ms)
{
	char now[FHIR_INSTANT_MAX];
	int by, bm, bd, ny, nm, nd;

	if (!birth || strlen(birth) != 10 || !read_date(birth, &by, &bm, &bd))
		return -1;
	fhir_format_instant(now_ms, now);
	if (strlen(now) != 24 || !read_date(now, &ny, &nm, &nd))
		return -1;
	int age = ny - by - (nm < bm || (nm == bm && nd < bd));
	return age < 0 ? -1 : age;
}

static json_t *patient_json(const json_t *p, const summary_opts *o)
{
	const char *mrn = NULL, *birth = get_str(p, "birthDate");
	const json_t *ident, *dec = json_object_get(p, "deceasedBoolean");
	bool deceased = json_is_true(dec) || get_str(p, "deceasedDateTime");
	sbuf name = { 0 };
	size_t i;
	json_t *out;

	if (o->mrn_system) {
		json_array_foreach(json_object_get(p, "identifier"), i, ident) {
			const char *sys = get_str(ident, "system");
			if (sys && strcmp(sys, o->mrn_system) == 0 && (mrn = get_str(ident, "value")))
				break;
		}
	}
	bool has_name = name_display(pick_name(json_object_get(p, "name")), &name);
	if (name.oom) {
		sb_free(&name);
		return NULL;
	}
	int age = deceased ? -1 : age_years(birth, o->now_ms);
	out = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:b, s:o}", "id", get_str(p, "id"), "mrn", mrn, "name",
			has_name ? sb_str(&name) : NULL, "birth_date", birth, "gender", get_str(p, "gender"),
			"deceased", deceased, "age", age >= 0 ? json_integer(age) : json_null());
	sb_free(&name);
	return out;
}

/* ------------------------------------------------------------------------
 * Allergies.
 */

static bool status_refuted(const json_t *r)
{
	const json_t *vs = json_object_get(r, "verificationStatus");
	return cc_has_code(vs, "entered-in-error") || cc_has_code(vs, "refuted");
}

static int criticality_rank(const char *c)
{
	if (!c)
		return 3;
	return strcmp(c, "high") == 0 ? 0 : strcmp(c, "low") == 0 ? 1 : strcmp(c, "unable-to-assess") == 0 ? 2 : 3;
}

static int cmp_allergy(const void *pa, const void *pb)
{
	const json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
	int c = criticality_rank(get_str(a, "criticality")) - criticality_rank(get_str(b, "criticality"));
	return c ? c : cmp_text_id(pa, pb);
}

/* One reaction as "Manifestation, Manifestation (severity)" into b. */
static void reaction_text(const json_t *rx, sbuf *b)
{
	const char *sev = get_str(rx, "severity"), *desc = get_str(rx, "description");
	const json_t *m;
	size_t i;

	json_array_foreach(json_object_get(rx, "manifestation"), i, m) {
		const char *t = cc_text(m);
		if (t) {
			sb_sep(b, ", ");
			sb_puts(b, t);
		}
	}
	if (b->len == 0 && desc)
		sb_puts(b, desc);
	if (sev) {
		if (b->len == 0)
			sb_puts(b, "unspecified");
		sb_printf(b, " (%s)", sev);
	}
}

static json_t *allergy_json(const json_t *r)
{
	const json_t *cs = json_object_get(r, "clinicalStatus"), *rx;
	const json_t *vc = cc_coding(json_object_get(r, "verificationStatus"), NULL);
	json_t *reactions;
	size_t i;

	if (cc_coded(cs) && !cc_has_code(cs, "active"))
		return json_null();
	if (status_refuted(r))
		return json_null();
	if (!(reactions = json_array()))
		return NULL;
	json_array_foreach(json_object_get(r, "reaction"), i, rx) {
		sbuf b = { 0 };
		reaction_text(rx, &b);
		if (b.oom || (b.len && json_array_append_new(reactions, json_string(b.p)) != 0)) {
			sb_free(&b);
			json_decref(reactions);
			return NULL;
		}
		sb_free(&b);
	}
	return json_pack("{s:s?, s:s?, s:s?, s:s?, s:o, s:s?, s:s?}", "id", get_str(r, "id"), "text",
			 cc_text(json_object_get(r, "code")), "criticality", get_str(r, "criticality"), "verification",
			 get_str(vc, "code"), "reactions", reactions, "recorded", get_str(r, "recordedDate"),
			 "version_id", get_str(json_object_get(r, "meta"), "versionId"));
}

/* ------------------------------------------------------------------------
 * Medications.
 */

static const char *medication_text(const json_t *r)
{
	const json_t *mcc = json_object_get(r, "medicationCodeableConcept");
	const json_t *ref = json_object_get(r, "medicationReference"), *c;
	const char *t, *target;
	size_t i;

	if (mcc && (t = cc_text(mcc)))
		return t;
	if ((t = get_str(ref, "display")))
		return t;
	target = get_str(ref, "reference");
	if (target && target[0] == '#') {
		json_array_foreach(json_object_get(r, "contained"), i, c) {
			const char *rt = get_str(c, "resourceType"), *id = get_str(c, "id");
			if (rt && id && strcmp(rt, "Medication") == 0 && strcmp(id, target + 1) == 0)
				return cc_text(json_object_get(c, "code"));
		}
	}
	return NULL;
}

/* A Timing as text ("every 4-6 h", "3 times per 1 d", the code's text). */
static void timing_text(const json_t *timing, sbuf *b)
{
	const json_t *code = json_object_get(timing, "code"), *rep = json_object_get(timing, "repeat");
	const json_t *freq = json_object_get(rep, "frequency"), *period = json_object_get(rep, "period");
	const char *unit = get_str(rep, "periodUnit"), *t;

	if (code && (t = cc_text(code))) {
		sb_puts(b, t);
		return;
	}
	if (!json_is_number(period) || !unit)
		return;
	if (!freq || (json_is_integer(freq) && json_integer_value(freq) == 1)) {
		sb_puts(b, "every ");
	} else {
		if (!sb_num(b, freq))
			return;
		sb_puts(b, " times per ");
	}
	sb_num(b, period);
	if (json_is_number(json_object_get(rep, "periodMax"))) {
		sb_puts(b, "-");
		sb_num(b, json_object_get(rep, "periodMax"));
	}
	sb_printf(b, " %s", unit);
}

/* A Dosage's text, or one built from its parts (see summary.h), into b
 * (empty). */
static void dosage_text(const json_t *d, sbuf *b)
{
	const json_t *dr = first_of(d, "doseAndRate"), *q, *asneeded;
	const char *t = get_str(d, "text");
	sbuf part = { 0 };

	if (t) {
		sb_puts(b, t);
		return;
	}
	if ((q = json_object_get(dr, "doseQuantity")) && sb_quantity(b, q)) {
		const char *u = quantity_unit(q);
		if (u)
			sb_printf(b, " %s", u);
	} else if ((q = json_object_get(dr, "doseRange"))) {
		sb_range(b, json_object_get(q, "low"), json_object_get(q, "high"));
	}
	if ((t = cc_text(json_object_get(d, "route")))) {
		sb_sep(b, ", ");
		sb_puts(b, t);
	}
	timing_text(json_object_get(d, "timing"), &part);
	if (part.len) {
		sb_sep(b, ", ");
		sb_puts(b, part.p);
	}
	b->oom |= part.oom;
	sb_free(&part);
	asneeded = json_object_get(d, "asNeededCodeableConcept");
	if (json_is_true(json_object_get(d, "asNeededBoolean")) || asneeded) {
		sb_sep(b, ", ");
		sb_puts(b, "as needed");
		if ((t = cc_text(asneeded)))
			sb_printf(b, " for %s", t);
	}
}

static json_t *medication_json(const json_t *r, bool statement)
{
	const char *status = get_str(r, "status"), *authored;
	const json_t *dosage;
	sbuf d = { 0 };
	json_t *out;

	if (!status || (strcmp(status, "active") != 0 && (statement || strcmp(status, "on-hold") != 0)))
		return json_null();
	if (statement) {
		dosage = first_of(r, "dosage");
		authored = get_str(r, "effectiveDateTime");
		if (!authored)
			authored = get_str(json_object_get(r, "effectivePeriod"), "start");
		if (!authored)
			authored = get_str(r, "dateAsserted");
	} else {
		dosage = first_of(r, "dosageInstruction");
		authored = get_str(r, "authoredOn");
	}
	dosage_text(dosage, &d);
	if (d.oom) {
		sb_free(&d);
		return NULL;
	}
	out = json_pack("{s:s?, s:s, s:s?, s:s, s:s?, s:s?, s:s?}", "id", get_str(r, "id"), "source",
			statement ? "statement" : "request", "text", medication_text(r), "status", status, "dosage",
			d.len ? d.p : NULL, "authored", authored, "version_id",
			get_str(json_object_get(r, "meta"), "versionId"));
	sb_free(&d);
	return out;
}

/* ------------------------------------------------------------------------
 * Problems.
 */

static json_t *problem_json(const json_t *r)
{
	const json_t *cs = json_object_get(r, "clinicalStatus"), *cat = first_of(r, "category"), *c;
	const json_t *age = json_object_get(r, "onsetAge"), *range = json_object_get(r, "onsetRange");
	const char *onset, *category = get_str(cat, "text");
	sbuf b = { 0 };
	json_t *out;

	if (!(cc_has_code(cs, "active") || cc_has_code(cs, "recurrence") || cc_has_code(cs, "relapse")))
		return json_null();
	if (status_refuted(r))
		return json_null();
	if (!category && (c = cc_coding(cat, "http://terminology.hl7.org/CodeSystem/condition-category"))) {
		category = get_str(c, "display");
		if (!category)
			category = get_str(c, "code");
	}
	if (!category)
		category = cc_text(cat);

	onset = get_str(r, "onsetDateTime");
	if (!onset)
		onset = get_str(json_object_get(r, "onsetPeriod"), "start");
	if (!onset)
		onset = get_str(r, "onsetString");
	if (!onset && age && sb_quantity(&b, age) && quantity_unit(age))
		sb_printf(&b, " %s", quantity_unit(age));
	if (!onset && !age && range)
		sb_range(&b, json_object_get(range, "low"), json_object_get(range, "high"));
	if (b.oom) {
		sb_free(&b);
		return NULL;
	}
	if (!onset && b.len)
		onset = b.p;
	out = json_pack("{s:s?, s:s?, s:s?, s:s?}", "id", get_str(r, "id"), "text", cc_text(json_object_get(r, "code")),
			"onset", onset, "category", category);
	sb_free(&b);
	return out;
}

/* ------------------------------------------------------------------------
 * Observations: vital signs and labs.
 */

static const struct vital_code {
	const char *code, *label;
	int rank;
} vital_codes[] = {
	{ "85354-9", "Blood pressure", 0 },    { "8867-4", "Heart rate", 1 },
	{ "9279-1", "Respiratory rate", 2 },   { "8310-5", "Body temperature", 3 },
	{ "2708-6", "Oxygen saturation", 4 },  { "59408-5", "Oxygen saturation", 4 },
	{ "29463-7", "Body weight", 5 },       { "3141-9", "Body weight", 5 },
	{ "8302-2", "Body height", 6 },        { "8306-3", "Body length", 6 },
	{ "39156-5", "BMI", 7 },
};

#define N_VITAL_CODES (sizeof(vital_codes) / sizeof(vital_codes[0]))

static const struct vital_code *vital_lookup(const char *code)
{
	for (size_t i = 0; code && i < N_VITAL_CODES; i++)
		if (strcmp(vital_codes[i].code, code) == 0)
			return &vital_codes[i];
	return NULL;
}

typedef struct obs_item {
	const json_t *res;
	bool lab;
	const char *system, *code;   /* the key (system may be NULL) */
	const json_t *coding;        /* the key's coding */
	const struct vital_code *vital;
	const char *time;            /* as given, or NULL */
	bool has_ms, has_lu;
	int64_t ms, lu;
	const char *id;
	char *value;                 /* malloc'd */
	const char *unit;
} obs_item;

/* The coding that names an Observation (see summary.h). */
static const json_t *obs_key_coding(const json_t *code, bool vital)
{
	const json_t *c;
	size_t i;

	if (vital) {
		json_array_foreach(json_object_get(code, "coding"), i, c) {
			const char *s = get_str(c, "system");
			if (s && strcmp(s, LOINC) == 0 && vital_lookup(get_str(c, "code")))
				return c;
		}
	}
	c = cc_coding(code, LOINC);
	return c ? c : cc_coding(code, NULL);
}

/* The value of a component coded `code` (a Quantity's value), or NULL. */
static const json_t *component_quantity(const json_t *obs, const char *code)
{
	const json_t *comp;
	size_t i;

	json_array_foreach(json_object_get(obs, "component"), i, comp) {
		if (cc_has_code(json_object_get(comp, "code"), code)) {
			const json_t *q = json_object_get(comp, "valueQuantity");
			if (json_is_number(json_object_get(q, "value")))
				return q;
		}
	}
	return NULL;
}

/* An Observation's value as text into b and its unit (borrowed) into *unit;
 * false when it has none we read. */
static bool obs_value(const json_t *o, bool bp_panel, sbuf *b, const char **unit)
{
	const json_t *v;
	const char *s;

	*unit = NULL;
	if (bp_panel) {
		const json_t *sys = component_quantity(o, "8480-6"), *dia = component_quantity(o, "8462-4");
		if (sys || dia) {
			if (!sb_quantity(b, sys))
				sb_puts(b, "?");
			sb_puts(b, "/");
			if (!sb_quantity(b, dia))
				sb_puts(b, "?");
			*unit = quantity_unit(sys) ? quantity_unit(sys) : quantity_unit(dia);
			return true;
		}
	}
	if ((v = json_object_get(o, "valueQuantity"))) {
		*unit = quantity_unit(v);
		return sb_quantity(b, v);
	}
	if ((v = json_object_get(o, "valueCodeableConcept")) && (s = cc_text(v))) {
		sb_puts(b, s);
		return true;
	}
	if ((s = get_str(o, "valueString")) || (s = get_str(o, "valueDateTime")) || (s = get_str(o, "valueTime"))) {
		sb_puts(b, s);
		return true;
	}
	if (json_is_boolean(v = json_object_get(o, "valueBoolean"))) {
		sb_puts(b, json_is_true(v) ? "true" : "false");
		return true;
	}
	if (sb_num(b, json_object_get(o, "valueInteger")))
		return true;
	if ((v = json_object_get(o, "valueRange")))
		return sb_range(b, json_object_get(v, "low"), json_object_get(v, "high"));
	if ((v = json_object_get(o, "valueRatio"))) {
		bool n = sb_quantity(b, json_object_get(v, "numerator"));
		sb_puts(b, "/");
		bool d = sb_quantity(b, json_object_get(v, "denominator"));
		return n && d;
	}
	if ((v = json_object_get(o, "valuePeriod")) && (get_str(v, "start") || get_str(v, "end"))) {
		s = get_str(v, "start");
		sb_printf(b, "%s - %s", s ? s : "", get_str(v, "end") ? get_str(v, "end") : "");
		return true;
	}
	return false;
}

/* Read one Observation into *it; false when it is not shown (see summary.h). */
static bool obs_read(const json_t *o, obs_item *it, bool *oom)
{
	const char *status = get_str(o, "status"), *t;
	const json_t *cat, *code = json_object_get(o, "code"), *p;
	bool vital = false, lab = false;
	sbuf b = { 0 };
	size_t i;

	if (status && (strcmp(status, "entered-in-error") == 0 || strcmp(status, "cancelled") == 0))
		return false;
	json_array_foreach(json_object_get(o, "category"), i, cat) {
		vital |= cc_has_code(cat, "vital-signs");
		lab |= cc_has_code(cat, "laboratory");
	}
	if (!vital && !lab)
		return false;
	*it = (obs_item){ .res = o, .lab = !vital, .id = get_str(o, "id") };
	it->coding = obs_key_coding(code, vital);
	if (!it->coding)
		return false;
	it->system = get_str(it->coding, "system");
	it->code = get_str(it->coding, "code");
	if (it->system && strcmp(it->system, LOINC) == 0 && vital)
		it->vital = vital_lookup(it->code);
	bool bp = it->vital && strcmp(it->code, "85354-9") == 0;
	if (!obs_value(o, bp, &b, &it->unit) || b.oom) {
		*oom |= b.oom;
		sb_free(&b);
		return false;
	}
	it->value = b.p;  /* taken */

	p = json_object_get(o, "effectivePeriod");
	if (!(t = get_str(o, "effectiveDateTime")) && !(t = get_str(o, "effectiveInstant")) &&
	    !(t = get_str(p, "start")) && !(t = get_str(p, "end")))
		t = get_str(o, "issued");
	it->time = t;
	it->has_ms = instant_ms(t, &it->ms);
	it->has_lu = instant_ms(get_str(json_object_get(o, "meta"), "lastUpdated"), &it->lu);
	return true;
}

static int cmp_i64(bool ha, int64_t a, bool hb, int64_t b)
{
	if (ha != hb)
		return ha ? 1 : -1;
	return !ha || a == b ? 0 : a < b ? -1 : 1;
}

/* Newer first: time, then lastUpdated, then the greater id. */
static int cmp_newer(const obs_item *a, const obs_item *b)
{
	int c = cmp_i64(b->has_ms, b->ms, a->has_ms, a->ms);
	if (!c)
		c = cmp_i64(b->has_lu, b->lu, a->has_lu, a->lu);
	if (c || (!a->id && !b->id))
		return c;
	if (!a->id || !b->id)
		return a->id ? -1 : 1;
	return -strcmp(a->id, b->id);
}

static int cmp_key(const obs_item *a, const obs_item *b)
{
	if (a->lab != b->lab)
		return a->lab ? 1 : -1;
	int c = cmp_nullable(a->system, b->system, false);
	return c ? c : strcmp(a->code, b->code);
}

static int cmp_obs_group(const void *pa, const void *pb)
{
	const obs_item *a = pa, *b = pb;
	int c = cmp_key(a, b);
	return c ? c : cmp_newer(a, b);
}

static const char *obs_display(const obs_item *it)
{
	const char *t;

	if (it->vital)
		return it->vital->label;
	if ((t = get_str(json_object_get(it->res, "code"), "text")))
		return t;
	if ((t = get_str(it->coding, "display")))
		return t;
	return it->code;
}

static int cmp_vital_order(const void *pa, const void *pb)
{
	const obs_item *a = pa, *b = pb;
	int ra = a->vital ? a->vital->rank : INT_MAX, rb = b->vital ? b->vital->rank : INT_MAX;
	if (ra != rb)
		return ra < rb ? -1 : 1;
	int c = cmp_nullable(obs_display(a), obs_display(b), true);
	return c ? c : cmp_key(a, b);
}

static int cmp_lab_order(const void *pa, const void *pb)
{
	const obs_item *a = pa, *b = pb;
	int c = cmp_i64(b->has_ms, b->ms, a->has_ms, a->ms);
	if (!c)
		c = cmp_nullable(obs_display(a), obs_display(b), true);
	return c ? c : cmp_key(a, b);
}

/* referenceRange[0] as text into b (see summary.h). */
static void range_text(const json_t *rr, sbuf *b)
{
	const char *t = get_str(rr, "text");

	if (t)
		sb_puts(b, t);
	else
		sb_range(b, json_object_get(rr, "low"), json_object_get(rr, "high"));
}

static json_t *obs_json(const obs_item *it)
{
	const json_t *o = it->res;
	sbuf rr = { 0 };
	json_t *out;

	if (!it->lab)
		return json_pack("{s:s, s:s?, s:s, s:s?, s:s?, s:s?}", "code", it->code, "display", obs_display(it),
				 "value", it->value, "unit", it->unit, "time", it->time, "id", it->id);
	range_text(first_of(o, "referenceRange"), &rr);
	if (rr.oom) {
		sb_free(&rr);
		return NULL;
	}
	out = json_pack("{s:s, s:s?, s:s, s:s?, s:s?, s:s?, s:s?, s:s?}", "code", it->code, "display", obs_display(it),
			"value", it->value, "unit", it->unit, "time", it->time, "id", it->id, "interpretation",
			cc_text(first_of(o, "interpretation")), "reference_range", rr.len ? rr.p : NULL);
	sb_free(&rr);
	return out;
}

/* Add the vitals and labs sections to summary from the n observation items
 * (sorted and consumed here). Returns false when out of memory. */
static bool add_observations(json_t *summary, obs_item *items, size_t n, size_t max_labs)
{
	size_t k = 0, nv = 0;
	json_t *vitals = json_array(), *labs = json_array();
	bool ok = vitals && labs;

	/* Latest per key: sort each key's items newest first, keep the first. */
	if (n)
		qsort(items, n, sizeof(*items), cmp_obs_group);
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && cmp_key(&items[k - 1], &items[i]) == 0) {
			free(items[i].value);
			continue;
		}
		items[k++] = items[i];
	}
	/* Vitals come before labs in the grouped order. */
	while (nv < k && !items[nv].lab)
		nv++;
	if (nv)
		qsort(items, nv, sizeof(*items), cmp_vital_order);
	if (k - nv)
		qsort(items + nv, k - nv, sizeof(*items), cmp_lab_order);
	for (size_t i = 0; i < k && ok; i++) {
		json_t *arr = items[i].lab ? labs : vitals;
		if (items[i].lab && json_array_size(labs) >= max_labs)
			continue;
		ok = json_array_append_new(arr, obs_json(&items[i])) == 0;
	}
	for (size_t i = 0; i < k; i++)
		free(items[i].value);
	if (ok)
		ok = json_object_set_new(summary, "vitals", vitals) == 0;
	else
		json_decref(vitals);
	if (ok)
		ok = json_object_set_new(summary, "labs", labs) == 0;
	else
		json_decref(labs);
	return ok;
}

/* ------------------------------------------------------------------------
 * The summary.
 */

static json_t *fail(char *err, size_t err_size, const char *msg)
{
	if (err && err_size)
		snprintf(err, err_size, "%s", msg);
	return NULL;
}

/* Count r's type in counts; false when out of memory. */
static bool count_type(json_t *counts, const char *type)
{
	json_t *c = json_object_get(counts, type);
	if (c)
		return json_integer_set(c, json_integer_value(c) + 1) == 0;
	return json_object_set_new(counts, type, json_integer(1)) == 0;
}

/*
 * Build the summary (see summary.h). Borrows the resources; returns a new
 * object or NULL with err set.
 */
json_t *summary_build(json_t *const *resources, size_t n, const summary_opts *o, char *err, size_t err_size)
{
	const json_t *patient = NULL;
	size_t n_patients = 0, n_obs = 0;
	jvec allergies = { 0 }, meds = { 0 }, problems = { 0 };
	obs_item *obs = NULL;
	json_t *summary = NULL, *counts = NULL, *a;
	char now[FHIR_INSTANT_MAX];
	bool ok = true, obs_oom = false;

	if (err && err_size)
		err[0] = 0;
	if (!o || (n > 0 && !resources))
		return fail(err, err_size, "summary_build: bad arguments");
	for (size_t i = 0; i < n; i++) {
		const char *rt = get_str(resources[i], "resourceType");
		if (rt && strcmp(rt, "Patient") == 0) {
			patient = resources[i];
			n_patients++;
		}
		if (rt && strcmp(rt, "Observation") == 0)
			n_obs++;
	}
	if (n_patients == 0)
		return fail(err, err_size, "no Patient resource among the cached resources");
	if (n_patients > 1) {
		if (err && err_size)
			snprintf(err, err_size, "%zu Patient resources among the cached resources (expected one)",
				 n_patients);
		return NULL;
	}
	if (n_obs && !(obs = calloc(n_obs, sizeof(*obs))))
		return fail(err, err_size, "out of memory");
	counts = json_object();
	ok = counts != NULL;
	n_obs = 0;
	for (size_t i = 0; i < n && ok; i++) {
		const json_t *r = resources[i];
		const char *rt = get_str(r, "resourceType");
		if (!rt)
			continue;
		ok = count_type(counts, rt);
		if (!ok)
			break;
		if (strcmp(rt, "AllergyIntolerance") == 0)
			ok = jvec_push(&allergies, allergy_json(r));
		else if (strcmp(rt, "MedicationRequest") == 0)
			ok = jvec_push(&meds, medication_json(r, false));
		else if (strcmp(rt, "MedicationStatement") == 0)
			ok = jvec_push(&meds, medication_json(r, true));
		else if (strcmp(rt, "Condition") == 0)
			ok = jvec_push(&problems, problem_json(r));
		else if (strcmp(rt, "Observation") == 0 && obs_read(r, &obs[n_obs], &obs_oom))
			n_obs++;
		ok = ok && !obs_oom;
	}
	fhir_format_instant(o->now_ms, now);
	if (ok)
		ok = (summary = json_pack("{s:o, s:s, s:s?}", "patient", patient_json(patient, o), "generated", now,
					  "data_as_of", o->data_as_of)) != NULL;
	if (ok)
		ok = (a = jvec_to_array(&allergies, cmp_allergy)) && json_object_set_new(summary, "allergies", a) == 0;
	if (ok)
		ok = (a = jvec_to_array(&meds, cmp_text_id)) && json_object_set_new(summary, "medications", a) == 0;
	if (ok)
		ok = (a = jvec_to_array(&problems, cmp_text_id)) && json_object_set_new(summary, "problems", a) == 0;
	if (ok) {
		ok = add_observations(summary, obs, n_obs, o->max_labs ? o->max_labs : SUMMARY_DEFAULT_MAX_LABS);
		n_obs = 0;
	}
	if (ok)
		ok = json_object_set_new(summary, "counts", counts) == 0;
	else
		json_decref(counts);
	counts = NULL;
	for (size_t i = 0; i < n_obs; i++)
		free(obs[i].value);
	free(obs);
	jvec_free(&allergies);
	jvec_free(&meds);
	jvec_free(&problems);
	if (!ok) {
		json_decref(summary);
		return fail(err, err_size, "out of memory");
	}
	return summary;
}

/* ------------------------------------------------------------------------
 * Plain text.
 */

#define TABLE_MAX_COLS 6

/* Rows of cells (malloc'd, cleaned), printed with aligned columns. */
typedef struct table {
	size_t ncols, nrows, cap;
	char **cells;  /* nrows * ncols */
	bool oom;
} table;

/* Whether s starts with a bidirectional embedding, override or isolate
 * (U+202A..U+202E, U+2066..U+2069), which would reorder what follows. */
static bool is_bidi_control(const unsigned char *s)
{
	return s[0] == 0xE2 && ((s[1] == 0x80 && s[2] >= 0xAA && s[2] <= 0xAE) || (s[1] == 0x81 && s[2] >= 0xA6 &&
										    s[2] <= 0xA9));
}

/* A copy of s ("-" for NULL or "") with control characters (C0, DEL, C1,
 * bidi controls) as spaces. */
static char *clean_dup(const char *s)
{
	size_t n, k = 0;
	char *d;

	if (!s || !*s)
		s = "-";
	n = strlen(s);
	if (!(d = malloc(n + 1)))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7F) {
			d[k++] = ' ';
		} else if (c == 0xC2 && i + 1 < n && ((unsigned char)s[i + 1] & 0xE0) == 0x80) {  /* U+0080..U+009F */
			d[k++] = ' ';
			i++;
		} else if (i + 2 < n && is_bidi_control((const unsigned char *)s + i)) {
			d[k++] = ' ';
			i += 2;
		} else {
			d[k++] = (char)c;
		}
	}
	d[k] = 0;
	return d;
}

/* Width of a UTF-8 string in code points. */
static size_t text_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

static void table_row(table *t, const char *const *cells)
{
	if (t->oom)
		return;
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));
		if (!c) {
			t->oom = true;
			return;
		}
		t->cells = c;
		t->cap = cap;
	}
	for (size_t i = 0; i < t->ncols; i++) {
		char *c = clean_dup(cells[i]);
		t->cells[t->nrows * t->ncols + i] = c;
		t->oom |= c == NULL;
	}
	t->nrows++;
}

/* Print t into b, each row indented by indent, columns two spaces apart,
 * no trailing spaces; then free t. */
static void table_print(table *t, sbuf *b, const char *indent)
{
	size_t width[TABLE_MAX_COLS] = { 0 };

	for (size_t r = 0; r < t->nrows && !t->oom; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t w = text_width(t->cells[r * t->ncols + c]);
			width[c] = w > width[c] ? w : width[c];
		}
	for (size_t r = 0; r < t->nrows && !t->oom; r++) {
		size_t line = b->len, pad = 0;
		sb_puts(b, indent);
		for (size_t c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];
			for (; pad > 0; pad--)
				sb_add(b, " ", 1);
			sb_puts(b, cell);
			pad = width[c] - text_width(cell) + 2;
		}
		while (!b->oom && b->len > line && b->p[b->len - 1] == ' ')
			b->len--;
		sb_add(b, "\n", 1);
	}
	b->oom |= t->oom;
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	*t = (table){ 0 };
}

/* A column of a text section: its header and the item's string at key, or,
 * when list is set, the strings of the array at key joined by "; ". */
typedef struct text_col {
	const char *header;
	const char *key;
	bool list;
} text_col;

/* A section: its heading with the item count, then a table of its items
 * (header row first) or "none in the cache". */
static void render_section(sbuf *b, const char *title, const json_t *items, const text_col *cols, size_t ncols)
{
	table t = { .ncols = ncols };
	const char *header[TABLE_MAX_COLS] = { 0 };
	const json_t *it, *s;
	size_t i, k;

	sb_printf(b, "\n%s (%zu)\n", title, json_array_size(items));
	if (json_array_size(items) == 0) {
		sb_puts(b, "  none in the cache\n");
		return;
	}
	for (size_t c = 0; c < ncols; c++)
		header[c] = cols[c].header;
	table_row(&t, header);
	json_array_foreach(items, i, it) {
		const char *cells[TABLE_MAX_COLS] = { 0 };
		sbuf scratch = { 0 };
		for (size_t c = 0; c < ncols; c++) {
			if (!cols[c].list) {
				cells[c] = get_str(it, cols[c].key);
				continue;
			}
			json_array_foreach(json_object_get(it, cols[c].key), k, s) {
				if (json_is_string(s)) {
					sb_sep(&scratch, "; ");
					sb_puts(&scratch, json_string_value(s));
				}
			}
			cells[c] = sb_str(&scratch);
		}
		t.oom |= scratch.oom;
		table_row(&t, cells);
		sb_free(&scratch);
	}
	table_print(&t, b, "  ");
}

#define SECTION_COLS(a) (a), sizeof(a) / sizeof((a)[0])

/*
 * Render a summary as text (see summary.h). Reads summary only; *out is
 * the caller's.
 */
int summary_render_text(const json_t *summary, char **out)
{
	static const text_col allergy[] = { { "SUBSTANCE", "text", false },
					    { "CRITICALITY", "criticality", false },
					    { "VERIFICATION", "verification", false },
					    { "REACTIONS", "reactions", true },
					    { "RECORDED", "recorded", false } };
	static const text_col med[] = { { "MEDICATION", "text", false }, { "STATUS", "status", false },
					{ "DOSAGE", "dosage", false }, { "AUTHORED", "authored", false },
					{ "SOURCE", "source", false } };
	static const text_col problem[] = { { "PROBLEM", "text", false }, { "ONSET", "onset", false },
					    { "CATEGORY", "category", false } };
	static const text_col vital[] = { { "VITAL SIGN", "display", false }, { "VALUE", "value", false },
					  { "UNIT", "unit", false }, { "TIME", "time", false } };
	static const text_col lab[] = { { "TEST", "display", false }, { "VALUE", "value", false },
					{ "UNIT", "unit", false }, { "FLAG", "interpretation", false },
					{ "TIME", "time", false }, { "REFERENCE RANGE", "reference_range", false } };
	const json_t *p = json_object_get(summary, "patient"), *age = json_object_get(p, "age");
	const char *asof = get_str(summary, "data_as_of");
	char born[128];
	sbuf b = { 0 };
	table t = { .ncols = 2 };

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!json_is_object(summary))
		return -EINVAL;

	if (asof) {
		char *clean = clean_dup(asof);
		if (!clean)
			return -ENOMEM;
		sb_printf(&b, "data as of %s\n", clean);
		free(clean);
	} else {
		sb_puts(&b, "data as of: never synced\n");
	}
	sb_add(&b, "\n", 1);
	snprintf(born, sizeof(born), "%.20s", get_str(p, "birth_date") ? get_str(p, "birth_date") : "-");
	if (json_is_integer(age))
		snprintf(born + strlen(born), sizeof(born) - strlen(born), " (age %" JSON_INTEGER_FORMAT ")",
			 json_integer_value(age));
	table_row(&t, (const char *const[]){ "Patient", get_str(p, "name") });
	table_row(&t, (const char *const[]){ "MRN", get_str(p, "mrn") });
	table_row(&t, (const char *const[]){ "Born", born });
	table_row(&t, (const char *const[]){ "Gender", get_str(p, "gender") });
	if (json_is_true(json_object_get(p, "deceased")))
		table_row(&t, (const char *const[]){ "Status", "DECEASED" });
	table_row(&t, (const char *const[]){ "Id", get_str(p, "id") });
	table_print(&t, &b, "");

	render_section(&b, "Allergies", json_object_get(summary, "allergies"), SECTION_COLS(allergy));
	render_section(&b, "Medications", json_object_get(summary, "medications"), SECTION_COLS(med));
	render_section(&b, "Problems", json_object_get(summary, "problems"), SECTION_COLS(problem));
	render_section(&b, "Vital signs, latest of each", json_object_get(summary, "vitals"), SECTION_COLS(vital));
	render_section(&b, "Labs, latest of each, newest first", json_object_get(summary, "labs"), SECTION_COLS(lab));
	if (b.oom || !b.p) {
		sb_free(&b);
		return -ENOMEM;
	}
	*out = b.p;
	return 0;
}
