/* Tests for bridge/chart.c: downtime entries as FHIR resources, the resync transaction and its response. */
#include "bridge/chart.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "tests/harness.h"

#define SYS "https://hospital.example.org/fhir/downtime"
#define NOW 1795946400000LL        /* 2026-11-29T10:00:00.000Z */
#define NOW_TEXT "2026-11-29T10:00:00.000Z"
#define AT "2026-11-29T08:15:00+01:00"
#define AT_MS 1795936500000LL      /* the same instant */

static char g_err[1024];

static int build_at(const chart_input *in, chart_entry *e, const char *user_system)
{
	chart_site site = { .identifier_system = SYS, .user_system = user_system, .now_ms = NOW };
	return chart_build(in, &site, e, g_err, sizeof(g_err));
}

static int build(const chart_input *in, chart_entry *e)
{
	return build_at(in, e, NULL);
}

static chart_input base(chart_kind kind)
{
	return (chart_input){ .kind = kind, .patient_id = "p1", .user = "u42", .user_display = "Dr Ada", .at = AT };
}

static chart_input vitals(const char *code, const char *value, const char *unit)
{
	chart_input in = base(CHART_VITALS);
	in.code = code;
	in.value = value;
	in.unit = unit;
	return in;
}

/* The member at a dotted path ("a.b.0.c"; a number indexes an array). */
static json_t *jget(const json_t *j, const char *path)
{
	char buf[256], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *tok = strtok_r(buf, ".", &save); tok && j; tok = strtok_r(NULL, ".", &save))
		j = json_is_array(j) ? json_array_get(j, strtoul(tok, NULL, 10)) : json_object_get(j, tok);
	return (json_t *)j;
}

#define JS(j, p) json_string_value(jget((j), (p)))

static bool has_downtime_tag(const json_t *res)
{
	const json_t *t;
	size_t i;
	json_array_foreach(jget(res, "meta.tag"), i, t) {
		const char *s = JS(t, "system"), *c = JS(t, "code"), *d = JS(t, "display");
		if (s && c && d && strcmp(s, CHART_TAG_SYSTEM) == 0 && strcmp(c, CHART_TAG_CODE) == 0 &&
		    strcmp(d, CHART_TAG_DISPLAY) == 0)
			return true;
	}
	return false;
}

static bool uuid_ok(const char *u)
{
	if (strlen(u) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (u[i] != '-')
				return false;
		} else if (!((u[i] >= '0' && u[i] <= '9') || (u[i] >= 'a' && u[i] <= 'f'))) {
			return false;
		}
	}
	return u[14] == '4' && strchr("89ab", u[19]);
}

/* The rules every entry follows (chart.h): tag, identifier (creates), times, Provenance. */
static void check_entry_rules(const chart_entry *e, chart_kind kind, const char *user_system)
{
	char prov_id[48], urn[64];
	bool update = chart_kind_is_update(kind);

	REQUIRE(e->resource && e->provenance);
	CHECK(e->kind == kind);
	CHECK(uuid_ok(e->uuid));
	CHECK(has_downtime_tag(e->resource));
	CHECK_STR(e->recorded, NOW_TEXT);
	CHECK_INT(e->recorded_ms, NOW);
	if (update) {
		CHECK(e->target && e->if_match);
	} else {
		CHECK(!e->target && !e->if_match);
		CHECK_INT(json_array_size(jget(e->resource, "identifier")), 1);
		CHECK_STR(JS(e->resource, "identifier.0.system"), SYS);
		CHECK_STR(JS(e->resource, "identifier.0.value"), e->uuid);
		CHECK(!jget(e->resource, "id"));
	}
	const json_t *p = e->provenance;
	snprintf(prov_id, sizeof(prov_id), "dt-%s", e->uuid);
	snprintf(urn, sizeof(urn), "urn:uuid:%s", e->uuid);
	CHECK_STR(JS(p, "resourceType"), "Provenance");
	CHECK_STR(JS(p, "id"), prov_id);
	CHECK_INT(json_array_size(jget(p, "target")), 1);
	CHECK_STR(JS(p, "target.0.reference"), update ? e->target : urn);
	CHECK_STR(JS(p, "occurredDateTime"), e->effective);
	CHECK_STR(JS(p, "recorded"), NOW_TEXT);
	CHECK_STR(JS(p, "agent.0.type.coding.0.system"), CHART_SYSTEM_PROV_PARTICIPANT);
	CHECK_STR(JS(p, "agent.0.type.coding.0.code"), "author");
	CHECK_STR(JS(p, "agent.0.who.identifier.system"), user_system);
	CHECK_STR(JS(p, "agent.0.who.identifier.value"), "u42");
	CHECK_STR(JS(p, "activity.coding.0.system"), CHART_SYSTEM_DATA_OPERATION);
	CHECK_STR(JS(p, "activity.coding.0.code"), update ? "UPDATE" : "CREATE");
	CHECK(has_downtime_tag(p));
}

static void test_kind_names(void)
{
	static const char *const names[] = { "vitals", "note", "med-admin", "med-stop", "allergy-error" };
	for (int k = CHART_VITALS; k <= CHART_ALLERGY_ERROR; k++) {
		chart_kind got = CHART_VITALS;
		CHECK_STR(chart_kind_name((chart_kind)k), names[k]);
		CHECK_INT(chart_kind_parse(names[k], &got), 0);
		CHECK_INT(got, k);
	}
	chart_kind got;
	CHECK_INT(chart_kind_parse("Vitals", &got), CHART_E_INVALID);
	CHECK_INT(chart_kind_parse("", &got), CHART_E_INVALID);
	CHECK_INT(chart_kind_parse(NULL, &got), CHART_E_INVALID);
	CHECK_STR(chart_kind_name((chart_kind)42), "?");
	CHECK(!chart_kind_is_update(CHART_VITALS) && !chart_kind_is_update(CHART_NOTE) &&
	      !chart_kind_is_update(CHART_MED_ADMIN));
	CHECK(chart_kind_is_update(CHART_MED_STOP) && chart_kind_is_update(CHART_ALLERGY_ERROR));
}

/* The heart rate Observation, field by field. */
static void test_vitals_heart_rate(void)
{
	chart_input in = vitals("8867-4", "72", "/min");
	chart_entry e = CHART_ENTRY_NULL;

	REQUIRE(build(&in, &e) == 0);
	check_entry_rules(&e, CHART_VITALS, SYS "/user");
	const json_t *o = e.resource;
	CHECK_STR(JS(o, "resourceType"), "Observation");
	CHECK_STR(JS(o, "status"), "final");
	CHECK_STR(JS(o, "category.0.coding.0.system"), CHART_SYSTEM_OBS_CATEGORY);
	CHECK_STR(JS(o, "category.0.coding.0.code"), "vital-signs");
	CHECK_STR(JS(o, "code.coding.0.system"), "http://loinc.org");
	CHECK_STR(JS(o, "code.coding.0.code"), "8867-4");
	CHECK_STR(JS(o, "code.coding.0.display"), "Heart rate");
	CHECK_STR(JS(o, "subject.reference"), "Patient/p1");
	CHECK_STR(JS(o, "effectiveDateTime"), AT);
	CHECK_STR(JS(o, "issued"), NOW_TEXT);
	CHECK_STR(JS(o, "performer.0.identifier.system"), SYS "/user");
	CHECK_STR(JS(o, "performer.0.identifier.value"), "u42");
	CHECK_STR(JS(o, "performer.0.display"), "Dr Ada");
	CHECK(json_is_integer(jget(o, "valueQuantity.value")));
	CHECK_INT(json_integer_value(jget(o, "valueQuantity.value")), 72);
	CHECK_STR(JS(o, "valueQuantity.system"), "http://unitsofmeasure.org");
	CHECK_STR(JS(o, "valueQuantity.code"), "/min");
	CHECK(JS(o, "valueQuantity.unit") != NULL);
	CHECK(!jget(o, "valueQuantity._value"));
	CHECK(!jget(o, "component"));
	CHECK_STR(e.effective, AT);
	CHECK_INT(e.effective_ms, AT_MS);
	CHECK_STR(JS(e.provenance, "agent.0.who.display"), "Dr Ada");
	CHECK(!jget(e.provenance, "reason"));
	chart_entry_deinit(&e);
	chart_entry_deinit(&e);   /* idempotent */
	CHECK(!e.resource && !e.provenance);
}

/* Every sign: code (or short name), unit spelling -> the LOINC code and UCUM unit stored. */
static void test_vitals_each_sign(void)
{
	static const struct {
		const char *code, *value, *unit, *loinc, *ucum;
	} cases[] = {
		{ "hr", "60", "bpm", "8867-4", "/min" },
		{ "HR", "60", "beats/min", "8867-4", "/min" },
		{ "8867-4", "60", NULL, "8867-4", "/min" },
		{ "8867-4", "60", " BPM ", "8867-4", "/min" },
		{ "9279-1", "16", "/min", "9279-1", "/min" },
		{ "rr", "16", "breaths/min", "9279-1", "/min" },
		{ "8310-5", "37.2", "Cel", "8310-5", "Cel" },
		{ "temp", "37.2", "C", "8310-5", "Cel" },
		{ "temp", "37.2", "\xc2\xb0" "C", "8310-5", "Cel" },
		{ "temp", "37.2", "degC", "8310-5", "Cel" },
		{ "temp", "99.1", "F", "8310-5", "[degF]" },
		{ "temp", "99.1", "\xc2\xb0" "F", "8310-5", "[degF]" },
		{ "temp", "99.1", "[degF]", "8310-5", "[degF]" },
		{ "59408-5", "97", "%", "59408-5", "%" },
		{ "spo2", "97", NULL, "59408-5", "%" },
		{ "29463-7", "70.5", "kg", "29463-7", "kg" },
		{ "weight", "3400", "g", "29463-7", "g" },
		{ "weight", "154", "lb", "29463-7", "[lb_av]" },
		{ "weight", "154", "lbs", "29463-7", "[lb_av]" },
		{ "weight", "154", "[lb_av]", "29463-7", "[lb_av]" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		chart_input in = vitals(cases[i].code, cases[i].value, cases[i].unit);
		chart_entry e = CHART_ENTRY_NULL;
		int rc = build(&in, &e);
		if (rc != 0)
			fprintf(stderr, "case %zu: %s\n", i, g_err);
		CHECK_INT(rc, 0);
		if (rc)
			continue;
		check_entry_rules(&e, CHART_VITALS, SYS "/user");
		CHECK_STR(JS(e.resource, "code.coding.0.code"), cases[i].loinc);
		CHECK_STR(JS(e.resource, "valueQuantity.code"), cases[i].ucum);
		CHECK_STR(JS(e.resource, "valueQuantity.system"), CHART_SYSTEM_UCUM);
		chart_entry_deinit(&e);
	}

	/* SpO2 carries the vital-signs profile's 2708-6 as a second coding. */
	chart_input in = vitals("spo2", "97", "%");
	chart_entry e = CHART_ENTRY_NULL;
	REQUIRE(build(&in, &e) == 0);
	CHECK_INT(json_array_size(jget(e.resource, "code.coding")), 2);
	CHECK_STR(JS(e.resource, "code.coding.1.code"), "2708-6");
	chart_entry_deinit(&e);
}

/* Refusals and confirmations: the exact messages, the field named first. */
static void test_vitals_messages(void)
{
	static const struct {
		const char *code, *value, *unit;
		int rc;
		const char *msg;   /* exact, or NULL: only a prefix check on "value: " */
	} cases[] = {
		{ "hr", "abc", "/min", CHART_E_INVALID, "value: heart rate must be a number, got 'abc'" },
		{ "hr", "72", "mmHg", CHART_E_INVALID, "unit: heart rate is recorded in /min, got 'mmHg'" },
		{ "hr", "260", "/min", CHART_E_CONFIRM,
		  "value: heart rate 260 /min is outside 30-220 /min; confirm to save it" },
		{ "hr", "400", "/min", CHART_E_INVALID,
		  "value: heart rate 400 /min is impossible (limits 0-350 /min)" },
		{ "hr", "-5", "/min", CHART_E_INVALID, "value: heart rate must not be negative, got '-5'" },
		{ "hr", "25", "/min", CHART_E_CONFIRM,
		  "value: heart rate 25 /min is outside 30-220 /min; confirm to save it" },
		{ "hr", "0", "/min", CHART_E_CONFIRM, NULL },
		{ "hr", "350", "/min", CHART_E_CONFIRM, NULL },
		{ "hr", "350.1", "/min", CHART_E_INVALID, NULL },
		{ "hr", "220", "/min", 0, NULL },
		{ "hr", "30", "/min", 0, NULL },
		{ "hr", "1e2", "/min", CHART_E_INVALID, "value: heart rate must be a number, got '1e2'" },
		{ "hr", "0x40", "/min", CHART_E_INVALID, NULL },
		{ "hr", "inf", "/min", CHART_E_INVALID, NULL },
		{ "hr", "nan", "/min", CHART_E_INVALID, NULL },
		{ "hr", "+72", "/min", CHART_E_INVALID, NULL },
		{ "hr", "72.", "/min", CHART_E_INVALID, NULL },
		{ "hr", ".5", "/min", CHART_E_INVALID, NULL },
		{ "hr", "7 2", "/min", CHART_E_INVALID, NULL },
		{ "hr", "", "/min", CHART_E_INVALID, "value: heart rate is required" },
		{ "hr", "1234567890", "/min", CHART_E_INVALID,
		  "value: heart rate has too many digits (at most 9 before and 6 after the point), got '1234567890'" },
		{ "temp", "36,5", "Cel", CHART_E_INVALID, "value: use '.' for decimals, got '36,5'" },
		{ "temp", "36.5", NULL, CHART_E_INVALID, "unit: body temperature needs a unit: Cel or [degF]" },
		{ "temp", "36.5", "K", CHART_E_INVALID,
		  "unit: body temperature is recorded in Cel or [degF], got 'K'" },
		{ "temp", "45", "Cel", CHART_E_CONFIRM,
		  "value: body temperature 45 Cel is outside 34-42 Cel; confirm to save it" },
		{ "temp", "51", "Cel", CHART_E_INVALID, NULL },
		{ "temp", "98.6", "F", 0, NULL },
		{ "temp", "37", "F", CHART_E_INVALID, NULL },      /* Celsius typed as Fahrenheit */
		{ "temp", "110", "F", CHART_E_CONFIRM, NULL },
		{ "spo2", "101", "%", CHART_E_INVALID,
		  "value: oxygen saturation 101 % is impossible (limits 0-100 %)" },
		{ "spo2", "45", "%", CHART_E_CONFIRM, NULL },
		{ "spo2", "100", "%", 0, NULL },
		{ "rr", "90", NULL, CHART_E_CONFIRM, NULL },
		{ "rr", "151", NULL, CHART_E_INVALID, NULL },
		{ "weight", "0", "kg", CHART_E_INVALID, NULL },
		{ "weight", "0.3", "kg", CHART_E_CONFIRM, NULL },
		{ "weight", "320", "kg", CHART_E_CONFIRM, NULL },
		{ "weight", "701", "kg", CHART_E_INVALID, NULL },
		{ "weight", "450", "g", CHART_E_CONFIRM, NULL },
		{ "weight", "3400", "g", 0, NULL },
		{ "weight", "1600", "lb", CHART_E_INVALID, NULL },
		{ "weight", "700", "lb", CHART_E_CONFIRM, NULL },
		{ "weight", "70", "mmHg", CHART_E_INVALID,
		  "unit: body weight is recorded in kg, g or [lb_av], got 'mmHg'" },
		{ "glucose", "5", "mmol/L", CHART_E_INVALID, NULL },
		{ NULL, "5", NULL, CHART_E_INVALID, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		chart_input in = vitals(cases[i].code, cases[i].value, cases[i].unit);
		chart_entry e = CHART_ENTRY_NULL;
		int rc = build(&in, &e);
		if (rc != cases[i].rc)
			fprintf(stderr, "case %zu (%s %s): rc %d: %s\n", i, cases[i].code ? cases[i].code : "-",
				cases[i].value, rc, g_err);
		CHECK_INT(rc, cases[i].rc);
		if (cases[i].msg)
			CHECK_STR(g_err, cases[i].msg);
		if (rc == CHART_E_CONFIRM)
			CHECK(strstr(g_err, "; confirm to save it") != NULL);
		if (rc != 0) {
			CHECK(!e.resource && !e.provenance && !e.target);
			CHECK(strncmp(g_err, "value: ", 7) == 0 || strncmp(g_err, "unit: ", 6) == 0 ||
			      strncmp(g_err, "code: ", 6) == 0);
		} else {
			CHECK(g_err[0] == 0);
		}
		chart_entry_deinit(&e);

		/* Confirming saves exactly the CONFIRM cases and nothing refused. */
		in.confirm = true;
		rc = build(&in, &e);
		CHECK_INT(rc, cases[i].rc == CHART_E_CONFIRM ? 0 : cases[i].rc);
		chart_entry_deinit(&e);
	}

	chart_input in = vitals("mmol", "5", NULL);
	chart_entry e = CHART_ENTRY_NULL;
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK(strncmp(g_err, "code: unknown vital sign 'mmol'", 31) == 0);
	in.code = "  ";
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK(strncmp(g_err, "code: required", 14) == 0);
}

static void test_blood_pressure(void)
{
	static const char *const good[] = { "120/80", " 120 / 80 ", "120/ 80", "120.5/80" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		chart_input in = vitals("bp", good[i], i == 0 ? "mmHg" : NULL);
		chart_entry e = CHART_ENTRY_NULL;
		REQUIRE(build(&in, &e) == 0);
		check_entry_rules(&e, CHART_VITALS, SYS "/user");
		const json_t *o = e.resource;
		CHECK_STR(JS(o, "code.coding.0.code"), "85354-9");
		CHECK(!jget(o, "valueQuantity"));
		CHECK_INT(json_array_size(jget(o, "component")), 2);
		CHECK_STR(JS(o, "component.0.code.coding.0.code"), "8480-6");
		CHECK_STR(JS(o, "component.0.code.coding.0.system"), CHART_SYSTEM_LOINC);
		CHECK_STR(JS(o, "component.0.valueQuantity.code"), "mm[Hg]");
		CHECK_STR(JS(o, "component.0.valueQuantity.system"), CHART_SYSTEM_UCUM);
		CHECK_STR(JS(o, "component.1.code.coding.0.code"), "8462-4");
		CHECK_STR(JS(o, "component.1.valueQuantity.code"), "mm[Hg]");
		CHECK(json_number_value(jget(o, "component.0.valueQuantity.value")) == (i == 3 ? 120.5 : 120));
		CHECK_INT(json_integer_value(jget(o, "component.1.valueQuantity.value")), 80);
		chart_entry_deinit(&e);
	}

	static const struct {
		const char *value;
		int rc;
		const char *msg;
	} bad[] = {
		{ "80/120", CHART_E_INVALID, "value: the systolic pressure must be above the diastolic, got '80/120'" },
		{ "120/120", CHART_E_INVALID, NULL },
		{ "120", CHART_E_INVALID, "value: blood pressure is systolic/diastolic (e.g. 120/80), got '120'" },
		{ "120/80/60", CHART_E_INVALID, NULL },
		{ "abc/80", CHART_E_INVALID, "value: blood pressure must be two numbers like 120/80, got 'abc/80'" },
		{ "120/", CHART_E_INVALID, NULL },
		{ "-120/80", CHART_E_INVALID, "value: systolic blood pressure must not be negative, got '-120'" },
		{ "400/80", CHART_E_INVALID, NULL },
		{ "260/80", CHART_E_CONFIRM,
		  "value: systolic blood pressure 260 mm[Hg] is outside 50-250 mm[Hg]; confirm to save it" },
		{ "260/160", CHART_E_CONFIRM,
		  "value: systolic blood pressure 260 mm[Hg] is outside 50-250 mm[Hg]; value: diastolic blood "
		  "pressure 160 mm[Hg] is outside 20-150 mm[Hg]; confirm to save it" },
		{ "40/15", CHART_E_CONFIRM, NULL },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		chart_input in = vitals("85354-9", bad[i].value, "mm[Hg]");
		chart_entry e = CHART_ENTRY_NULL;
		int rc = build(&in, &e);
		if (rc != bad[i].rc)
			fprintf(stderr, "bp case %zu: rc %d: %s\n", i, rc, g_err);
		CHECK_INT(rc, bad[i].rc);
		if (bad[i].msg)
			CHECK_STR(g_err, bad[i].msg);
		CHECK(!e.resource);
	}
	chart_input in = vitals("bp", "120/80", "kg");
	chart_entry e = CHART_ENTRY_NULL;
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "unit: blood pressure is recorded in mm[Hg], got 'kg'");
}

/* Decimals keep their digits: integer or real, the precision extension for trailing zeros. */
static void test_decimals(void)
{
	static const struct {
		const char *code, *value, *unit, *dumped;  /* the value's text in chart_dumps */
		int precision;                              /* the extension's valueInteger, 0: none */
		bool integer;
	} cases[] = {
		{ "temp", "36.5", "Cel", "\"value\":36.5,", 0, false },
		{ "temp", "36.50", "Cel", "\"value\":36.5,", 2, false },
		{ "temp", "36.0", "Cel", "\"value\":36.0,", 1, false },
		{ "temp", "98.6", "F", "\"value\":98.6,", 0, false },
		{ "temp", "99.99", "F", "\"value\":99.99,", 0, false },
		{ "hr", "72", NULL, "\"value\":72,", 0, true },
		{ "hr", "072", NULL, "\"value\":72,", 0, true },
		{ "weight", "70.123456", "kg", "\"value\":70.123456,", 0, false },
		{ "weight", "0.7", "kg", "\"value\":0.7,", 0, false },
		{ "weight", "3.10", "kg", "\"value\":3.1,", 2, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		chart_input in = vitals(cases[i].code, cases[i].value, cases[i].unit);
		chart_entry e = CHART_ENTRY_NULL;
		REQUIRE(build(&in, &e) == 0);
		const json_t *v = jget(e.resource, "valueQuantity.value");
		CHECK(cases[i].integer ? json_is_integer(v) : json_is_real(v));
		CHECK(json_number_value(v) == strtod(cases[i].value, NULL));
		char *text = chart_dumps(e.resource);
		REQUIRE(text);
		if (!strstr(text, cases[i].dumped))
			fprintf(stderr, "decimal case %zu: %s\n", i, text);
		CHECK(strstr(text, cases[i].dumped) != NULL);
		free(text);
		const json_t *ext = jget(e.resource, "valueQuantity._value.extension.0");
		if (cases[i].precision) {
			CHECK_STR(JS(ext, "url"), CHART_EXT_PRECISION);
			CHECK_INT(json_integer_value(jget(ext, "valueInteger")), cases[i].precision);
		} else {
			CHECK(!ext);
		}
		/* The dumped text reads back as the same number. */
		text = chart_dumps(e.resource);
		json_t *back = json_loads(text, 0, NULL);
		CHECK(back && json_equal(back, e.resource));
		json_decref(back);
		free(text);
		chart_entry_deinit(&e);
	}
	CHECK(chart_dumps(NULL) == NULL);
}

static void test_at(void)
{
	chart_entry e = CHART_ENTRY_NULL;

	/* No "at": now. */
	chart_input in = vitals("hr", "72", NULL);
	in.at = NULL;
	REQUIRE(build(&in, &e) == 0);
	CHECK_STR(e.effective, NOW_TEXT);
	CHECK_INT(e.effective_ms, NOW);
	CHECK_STR(JS(e.resource, "effectiveDateTime"), NOW_TEXT);
	CHECK_STR(JS(e.provenance, "occurredDateTime"), NOW_TEXT);
	chart_entry_deinit(&e);

	static const struct {
		const char *at;
		int rc;
		const char *stored;   /* effective, for rc 0 */
		long long ms;
		const char *msg;
	} cases[] = {
		{ "2026-11-29T08:15:00+01:00", 0, "2026-11-29T08:15:00+01:00", AT_MS, NULL },
		{ "2026-11-29T07:15:00Z", 0, "2026-11-29T07:15:00Z", AT_MS, NULL },
		{ "2026-11-29T02:15:00-05:00", 0, "2026-11-29T02:15:00-05:00", AT_MS, NULL },
		{ "2026-11-29T08:15+01:00", 0, "2026-11-29T08:15:00+01:00", AT_MS, NULL },
		{ "2026-11-29T07:15:00.5Z", 0, "2026-11-29T07:15:00.5Z", AT_MS + 500, NULL },
		{ "2026-11-29T07:15:00.123456Z", 0, "2026-11-29T07:15:00.123456Z", AT_MS + 123, NULL },
		{ "2026-11-29T10:04:59Z", 0, "2026-11-29T10:04:59Z", NOW + 299000, NULL },
		{ "2026-11-29T10:05:00Z", 0, "2026-11-29T10:05:00Z", NOW + 300000, NULL },
		{ "2026-11-29T10:05:01Z", CHART_E_INVALID, NULL, 0, "at: in the future" },
		{ "2027-01-01T00:00:00Z", CHART_E_INVALID, NULL, 0, "at: in the future" },
		{ "2026-11-29T08:15:00", CHART_E_INVALID, NULL, 0,
		  "at: give an offset (e.g. 2026-11-29T08:15:00+01:00 or ...Z)" },
		{ "2026-11-29T08:15", CHART_E_INVALID, NULL, 0,
		  "at: give an offset (e.g. 2026-11-29T08:15:00+01:00 or ...Z)" },
		{ "2026-11-29", CHART_E_INVALID, NULL, 0,
		  "at: give a time with an offset (e.g. 2026-11-29T08:15:00+01:00 or ...Z)" },
		{ "2026-11-29 08:15:00Z", CHART_E_INVALID, NULL, 0,
		  "at: expected a date-time like 2026-11-29T08:15:00+01:00 (or ...Z), got '2026-11-29 08:15:00Z'" },
		{ "yesterday", CHART_E_INVALID, NULL, 0, NULL },
		{ "2026-11-29t08:15:00Z", CHART_E_INVALID, NULL, 0, NULL },
		{ "2026-11-29T08:15:00+0100", CHART_E_INVALID, NULL, 0, NULL },
		{ "2026-11-29T08:15:00.Z", CHART_E_INVALID, NULL, 0, NULL },
		{ "2026-11-29T08:15:00Zx", CHART_E_INVALID, NULL, 0, NULL },
		{ "2026-02-29T08:15:00Z", CHART_E_INVALID, NULL, 0,
		  "at: no such date, time or offset, got '2026-02-29T08:15:00Z'" },
		{ "2026-11-29T24:00:00Z", CHART_E_INVALID, NULL, 0, NULL },
		{ "2026-11-29T08:15:00+15:00", CHART_E_INVALID, NULL, 0, NULL },
		{ "", CHART_E_INVALID, NULL, 0, NULL },
		/* 72 hours before now: still fine; a second more needs confirm. */
		{ "2026-11-26T10:00:00Z", 0, "2026-11-26T10:00:00Z", NOW - 72 * 3600000LL, NULL },
		{ "2026-11-26T09:59:59Z", CHART_E_CONFIRM, NULL, 0,
		  "at: 2026-11-26T09:59:59Z is more than 72 hours ago; confirm to save it" },
		{ "2024-02-29T12:00:00+02:00", CHART_E_CONFIRM, NULL, 0, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		in = vitals("hr", "72", NULL);
		in.at = cases[i].at;
		int rc = build(&in, &e);
		if (rc != cases[i].rc)
			fprintf(stderr, "at case %zu: rc %d: %s\n", i, rc, g_err);
		CHECK_INT(rc, cases[i].rc);
		if (cases[i].msg)
			CHECK_STR(g_err, cases[i].msg);
		if (rc == 0) {
			CHECK_STR(e.effective, cases[i].stored);
			CHECK_STR(JS(e.resource, "effectiveDateTime"), cases[i].stored);
			CHECK_INT(e.effective_ms, cases[i].ms);
		} else {
			CHECK(strncmp(g_err, "at: ", 4) == 0);
		}
		chart_entry_deinit(&e);
	}

	/* Old and confirmed: saved as typed. */
	in = vitals("hr", "72", NULL);
	in.at = "2026-11-20T10:00:00+01:00";
	in.confirm = true;
	REQUIRE(build(&in, &e) == 0);
	CHECK_STR(e.effective, "2026-11-20T10:00:00+01:00");
	chart_entry_deinit(&e);

	/* Old and implausible: both named, one confirmation saves it. */
	in = vitals("hr", "250", NULL);
	in.at = "2026-11-20T10:00:00Z";
	CHECK_INT(build(&in, &e), CHART_E_CONFIRM);
	CHECK_STR(g_err, "at: 2026-11-20T10:00:00Z is more than 72 hours ago; value: heart rate 250 /min is outside "
			 "30-220 /min; confirm to save it");
	in.confirm = true;
	CHECK_INT(build(&in, &e), 0);
	chart_entry_deinit(&e);

	/* Old but refused: the refusal wins. */
	in = vitals("hr", "abc", NULL);
	in.at = "2026-11-20T10:00:00Z";
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "value: heart rate must be a number, got 'abc'");
}

static void test_common_refusals(void)
{
	chart_entry e = CHART_ENTRY_NULL;
	chart_input in = vitals("hr", "72", NULL);
	chart_site site = { .identifier_system = SYS, .now_ms = NOW };

	CHECK_INT(chart_build(NULL, &site, &e, g_err, sizeof(g_err)), -EINVAL);
	CHECK_INT(chart_build(&in, NULL, &e, g_err, sizeof(g_err)), -EINVAL);
	CHECK_INT(chart_build(&in, &site, NULL, g_err, sizeof(g_err)), -EINVAL);
	site.identifier_system = NULL;
	CHECK_INT(chart_build(&in, &site, &e, g_err, sizeof(g_err)), -EINVAL);
	site.identifier_system = "has space";
	CHECK_INT(chart_build(&in, &site, &e, NULL, 0), -EINVAL);

	static const struct {
		const char *patient, *user, *display;
		const char *msg;
	} cases[] = {
		{ NULL, "u42", NULL, "patient_id: required" },
		{ "a/b", "u42", NULL,
		  "patient_id: not a FHIR id (letters, digits, '-' and '.', at most 64), got 'a/b'" },
		{ "p1", NULL, NULL, "user: required" },
		{ "p1", " ", NULL, "user: required" },
		{ "p1", "u\n1", NULL, "user: contains a control character" },
		{ "p1", "u42", "Dr \xff", "user_display: not valid UTF-8" },
		{ "p1", "u42", "Dr \xc0\xaf", "user_display: not valid UTF-8" },       /* overlong */
		{ "p1", "u42", "Dr \xed\xa0\x80", "user_display: not valid UTF-8" },   /* surrogate */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		in = vitals("hr", "72", NULL);
		in.patient_id = cases[i].patient;
		in.user = cases[i].user;
		in.user_display = cases[i].display;
		CHECK_INT(build(&in, &e), CHART_E_INVALID);
		CHECK_STR(g_err, cases[i].msg);
	}

	/* A temporary patient id, a user system of the site's own, no display. */
	in = vitals("hr", "72", NULL);
	in.patient_id = "DT-7f3a";
	in.user_display = NULL;
	REQUIRE(build_at(&in, &e, "urn:oid:1.2.3.4") == 0);
	check_entry_rules(&e, CHART_VITALS, "urn:oid:1.2.3.4");
	CHECK_STR(JS(e.resource, "subject.reference"), "Patient/DT-7f3a");
	CHECK_STR(JS(e.resource, "performer.0.identifier.system"), "urn:oid:1.2.3.4");
	CHECK(!jget(e.resource, "performer.0.display"));
	chart_entry_deinit(&e);

	/* A kind out of the enum. */
	in = vitals("hr", "72", NULL);
	in.kind = (chart_kind)9;
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "kind: unknown");

	/* Every build draws a new uuid. */
	chart_entry e2 = CHART_ENTRY_NULL;
	in = vitals("hr", "72", NULL);
	REQUIRE(build(&in, &e) == 0 && build(&in, &e2) == 0);
	CHECK(strcmp(e.uuid, e2.uuid) != 0);
	chart_entry_deinit(&e);
	chart_entry_deinit(&e2);
}

static char *b64_decode(const char *s, size_t *len)
{
	size_t n = strlen(s);
	unsigned char *out = malloc(n / 4 * 3 + 1);
	int k = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
	if (k < 0) {
		free(out);
		return NULL;
	}
	while (n > 0 && s[n - 1] == '=') {  /* EVP_DecodeBlock counts the padding */
		k--;
		n--;
	}
	out[k] = 0;
	*len = (size_t)k;
	return (char *)out;
}

static void test_note(void)
{
	const char *text = "Pt stable. Temp 37.2 \xc2\xb0" "C.\n";
	chart_input in = base(CHART_NOTE);
	chart_entry e = CHART_ENTRY_NULL;
	size_t len;

	in.text = text;
	REQUIRE(build(&in, &e) == 0);
	check_entry_rules(&e, CHART_NOTE, SYS "/user");
	const json_t *d = e.resource;
	CHECK_STR(JS(d, "resourceType"), "DocumentReference");
	CHECK_STR(JS(d, "status"), "current");
	CHECK_STR(JS(d, "docStatus"), "final");
	CHECK_STR(JS(d, "type.coding.0.system"), CHART_SYSTEM_LOINC);
	CHECK_STR(JS(d, "type.coding.0.code"), "11506-3");
	CHECK_STR(JS(d, "type.coding.0.display"), "Progress note");
	CHECK_STR(JS(d, "subject.reference"), "Patient/p1");
	CHECK_STR(JS(d, "date"), NOW_TEXT);
	CHECK_STR(JS(d, "author.0.identifier.system"), SYS "/user");
	CHECK_STR(JS(d, "author.0.identifier.value"), "u42");
	CHECK_STR(JS(d, "context.period.start"), AT);
	CHECK_STR(JS(d, "content.0.attachment.contentType"), "text/plain; charset=utf-8");
	CHECK_STR(JS(d, "content.0.attachment.data"), "UHQgc3RhYmxlLiBUZW1wIDM3LjIgwrBDLgo=");
	char *back = b64_decode(JS(d, "content.0.attachment.data"), &len);
	CHECK(back && len == strlen(text) && memcmp(back, text, len) == 0);
	free(back);
	chart_entry_deinit(&e);

	/* Another type; one without a display; a bad one. */
	in.note_type = "34746-8";
	REQUIRE(build(&in, &e) == 0);
	CHECK_STR(JS(e.resource, "type.coding.0.display"), "Nurse note");
	CHECK_STR(JS(e.resource, "content.0.attachment.title"), "Nurse note");
	chart_entry_deinit(&e);
	in.note_type = "12345-6";
	REQUIRE(build(&in, &e) == 0);
	CHECK_STR(JS(e.resource, "type.coding.0.code"), "12345-6");
	CHECK(!jget(e.resource, "type.coding.0.display"));
	chart_entry_deinit(&e);
	in.note_type = "progress";
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "note_type: not a LOINC code (e.g. 11506-3), got 'progress'");
	in.note_type = NULL;

	/* The text: required, not blank, UTF-8, no NUL, at most 64 KiB. */
	in.text = NULL;
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "text: required");
	in.text = " \n\t ";
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "text: the note is empty");
	in.text = "bad \xe2\x82";
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "text: not valid UTF-8");
	in.text = "one\0two";
	in.text_len = 7;
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "text: contains a NUL byte");
	in.text_len = 3;   /* only "one" */
	REQUIRE(build(&in, &e) == 0);
	CHECK_STR(JS(e.resource, "content.0.attachment.data"), "b25l");
	chart_entry_deinit(&e);
	in.text_len = 0;

	char *big = malloc(CHART_NOTE_MAX + 2);
	REQUIRE(big);
	memset(big, 'a', CHART_NOTE_MAX + 1);
	big[CHART_NOTE_MAX + 1] = 0;
	in.text = big;
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "text: the note is 65537 bytes, at most 65536");
	big[CHART_NOTE_MAX] = 0;
	REQUIRE(build(&in, &e) == 0);
	back = b64_decode(JS(e.resource, "content.0.attachment.data"), &len);
	CHECK(back && len == CHART_NOTE_MAX && memcmp(back, big, len) == 0);
	free(back);
	free(big);
	chart_entry_deinit(&e);
}

static json_t *med_request(const char *status, const char *patient)
{
	return json_pack("{s:s, s:s, s:{s:s}, s:s, s:s, s:{s:[{s:s, s:s, s:s}]}, s:{s:s}}", "resourceType",
			 "MedicationRequest", "id", "mr1", "meta", "versionId", "3", "status", status, "intent",
			 "order", "medicationCodeableConcept", "coding", "system",
			 "http://www.nlm.nih.gov/research/umls/rxnorm", "code", "313782", "display",
			 "Acetaminophen 325 MG Oral Tablet", "subject", "reference", patient);
}

static void test_med_admin_from_request(void)
{
	json_t *req = med_request("active", "Patient/p1");
	chart_input in = base(CHART_MED_ADMIN);
	chart_entry e = CHART_ENTRY_NULL;

	in.med_request = req;
	in.dose_value = "650";
	in.dose_unit = "mg";
	in.route = "oral";
	REQUIRE(build(&in, &e) == 0);
	check_entry_rules(&e, CHART_MED_ADMIN, SYS "/user");
	const json_t *m = e.resource;
	CHECK_STR(JS(m, "resourceType"), "MedicationAdministration");
	CHECK_STR(JS(m, "status"), "completed");
	CHECK_STR(JS(m, "subject.reference"), "Patient/p1");
	CHECK_STR(JS(m, "effectiveDateTime"), AT);
	CHECK_STR(JS(m, "performer.0.actor.identifier.value"), "u42");
	CHECK_STR(JS(m, "performer.0.actor.identifier.system"), SYS "/user");
	CHECK_STR(JS(m, "request.reference"), "MedicationRequest/mr1");
	CHECK(json_equal(jget(m, "medicationCodeableConcept"), jget(req, "medicationCodeableConcept")));
	CHECK(!jget(m, "medicationReference"));
	CHECK_INT(json_integer_value(jget(m, "dosage.dose.value")), 650);
	CHECK_STR(JS(m, "dosage.dose.code"), "mg");
	CHECK_STR(JS(m, "dosage.dose.system"), CHART_SYSTEM_UCUM);
	CHECK_STR(JS(m, "dosage.route.text"), "oral");
	chart_entry_deinit(&e);

	/* on-hold is fine; an absolute subject reference too; no dose, no route: no dosage. */
	json_object_set_new(req, "status", json_string("on-hold"));
	json_object_set_new(req, "subject", json_pack("{s:s}", "reference", "https://ehr.example.org/fhir/Patient/p1"));
	in.dose_value = in.dose_unit = in.route = NULL;
	REQUIRE(build(&in, &e) == 0);
	CHECK(!jget(e.resource, "dosage"));
	chart_entry_deinit(&e);

	/* A contained medication referenced as "#med" comes along. */
	json_object_del(req, "medicationCodeableConcept");
	json_object_set_new(req, "medicationReference", json_pack("{s:s}", "reference", "#med"));
	json_object_set_new(req, "contained", json_pack("[{s:s, s:s, s:{s:s}}]", "resourceType", "Medication", "id",
							 "med", "code", "text", "Paracetamol 500 mg"));
	REQUIRE(build(&in, &e) == 0);
	CHECK_STR(JS(e.resource, "medicationReference.reference"), "#med");
	CHECK_STR(JS(e.resource, "contained.0.id"), "med");
	CHECK(!jget(e.resource, "medicationCodeableConcept"));
	chart_entry_deinit(&e);
	json_object_set_new(req, "medicationReference", json_pack("{s:s}", "reference", "#other"));
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "med_request: MedicationRequest/mr1 refers to a contained medication it lacks");
	json_object_set_new(req, "medicationReference", json_pack("{s:s}", "reference", "Medication/m9"));
	REQUIRE(build(&in, &e) == 0);
	CHECK_STR(JS(e.resource, "medicationReference.reference"), "Medication/m9");
	CHECK(!jget(e.resource, "contained"));
	chart_entry_deinit(&e);
	json_object_del(req, "medicationReference");
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "med_request: MedicationRequest/mr1 has no medication");
	json_decref(req);

	/* Refusals. */
	static const struct {
		const char *status, *patient, *msg;
	} bad[] = {
		{ "completed", "Patient/p1",
		  "med_request: MedicationRequest/mr1 is completed; only an active or on-hold request can be given" },
		{ "stopped", "Patient/p1", NULL },
		{ "active", "Patient/p2", "med_request: MedicationRequest/mr1 is for another patient" },
		{ "active", "Patient/p10", NULL },
		{ "active", "OtherPatient/p1", NULL },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req = med_request(bad[i].status, bad[i].patient);
		in.med_request = req;
		CHECK_INT(build(&in, &e), CHART_E_INVALID);
		if (bad[i].msg)
			CHECK_STR(g_err, bad[i].msg);
		CHECK(strncmp(g_err, "med_request: ", 13) == 0);
		json_decref(req);
	}
	req = med_request("active", "Patient/p1");
	in.med_request = req;
	in.med_code = "http://www.nlm.nih.gov/research/umls/rxnorm|313782";
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "med_code: give the medication request or a code, not both");
	in.med_code = NULL;
	json_object_set_new(req, "resourceType", json_string("MedicationStatement"));
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "med_request: not a MedicationRequest");
	json_object_set_new(req, "resourceType", json_string("MedicationRequest"));
	json_object_del(req, "id");
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "med_request: the MedicationRequest has no valid id");
	json_decref(req);
}

static void test_med_admin_from_code(void)
{
	chart_input in = base(CHART_MED_ADMIN);
	chart_entry e = CHART_ENTRY_NULL;

	in.med_code = "http://www.nlm.nih.gov/research/umls/rxnorm|313782";
	in.med_display = "Acetaminophen 325 MG Oral Tablet";
	in.dose_value = "0.5";
	in.dose_unit = "mcg";
	REQUIRE(build(&in, &e) == 0);
	check_entry_rules(&e, CHART_MED_ADMIN, SYS "/user");
	const json_t *m = e.resource;
	CHECK_STR(JS(m, "medicationCodeableConcept.coding.0.system"), "http://www.nlm.nih.gov/research/umls/rxnorm");
	CHECK_STR(JS(m, "medicationCodeableConcept.coding.0.code"), "313782");
	CHECK_STR(JS(m, "medicationCodeableConcept.coding.0.display"), "Acetaminophen 325 MG Oral Tablet");
	CHECK_STR(JS(m, "medicationCodeableConcept.text"), "Acetaminophen 325 MG Oral Tablet");
	CHECK(!jget(m, "request"));
	CHECK(json_real_value(jget(m, "dosage.dose.value")) == 0.5);
	CHECK_STR(JS(m, "dosage.dose.code"), "ug");
	CHECK(!jget(m, "dosage.route"));
	chart_entry_deinit(&e);

	/* No display, a route only; other dose spellings. */
	in.med_display = NULL;
	in.dose_value = "5";
	in.dose_unit = "ml";
	in.route = "IV";
	REQUIRE(build(&in, &e) == 0);
	CHECK(!jget(e.resource, "medicationCodeableConcept.coding.0.display"));
	CHECK(!jget(e.resource, "medicationCodeableConcept.text"));
	CHECK_STR(JS(e.resource, "dosage.dose.code"), "mL");
	CHECK_STR(JS(e.resource, "dosage.route.text"), "IV");
	chart_entry_deinit(&e);
	in.dose_value = in.dose_unit = NULL;
	REQUIRE(build(&in, &e) == 0);
	CHECK(!jget(e.resource, "dosage.dose"));
	CHECK_STR(JS(e.resource, "dosage.route.text"), "IV");
	chart_entry_deinit(&e);

	static const struct {
		const char *code, *value, *unit, *msg;
	} bad[] = {
		{ NULL, NULL, NULL, "med_code: give the medication as system|code (or the medication request)" },
		{ "313782", NULL, NULL, "med_code: expected system|code, got '313782'" },
		{ "|313782", NULL, NULL, "med_code: expected system|code, got '|313782'" },
		{ "http://rxnorm|", NULL, NULL, "med_code: expected system|code, got 'http://rxnorm|'" },
		{ "rx norm|1", NULL, NULL, "med_code: the system must be a URI without spaces, got 'rx norm'" },
		{ "http://rx| 1", NULL, NULL, "med_code: the code has spaces around it or a control character" },
		{ "http://rx|1", "5", NULL, "dose_unit: give the unit of the dose (e.g. mg, mL)" },
		{ "http://rx|1", NULL, "mg", "dose_value: give the dose for the unit" },
		{ "http://rx|1", "0", "mg", "dose_value: the dose must be above 0, got '0'" },
		{ "http://rx|1", "-1", "mg", "dose_value: the dose must be above 0, got '-1'" },
		{ "http://rx|1", "five", "mg", "dose_value: the dose must be a number, got 'five'" },
		{ "http://rx|1", "5", "m g", "dose_unit: not a UCUM unit (e.g. mg, mL, ug, [iU]), got 'm g'" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		in = base(CHART_MED_ADMIN);
		in.med_code = bad[i].code;
		in.dose_value = bad[i].value;
		in.dose_unit = bad[i].unit;
		CHECK_INT(build(&in, &e), CHART_E_INVALID);
		CHECK_STR(g_err, bad[i].msg);
		CHECK(!e.resource);
	}
}

static json_t *current_med_request(void)
{
	return json_loads("{\"resourceType\": \"MedicationRequest\", \"id\": \"mr1\","
			  " \"meta\": {\"versionId\": \"3\", \"lastUpdated\": \"2026-11-28T09:00:00Z\","
			  "  \"source\": \"#ehr\","
			  "  \"tag\": [{\"system\": \"urn:other\", \"code\": \"x\"}],"
			  "  \"security\": [{\"system\": \"http://terminology.hl7.org/CodeSystem/v3-Confidentiality\","
			  "   \"code\": \"R\"}]},"
			  " \"text\": {\"status\": \"generated\","
			  "  \"div\": \"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\">active</div>\"},"
			  " \"identifier\": [{\"system\": \"urn:ehr\", \"value\": \"rx-9\"}],"
			  " \"status\": \"on-hold\", \"intent\": \"order\","
			  " \"statusReason\": {\"text\": \"held for surgery\"},"
			  " \"medicationCodeableConcept\": {\"text\": \"Heparin\"},"
			  " \"subject\": {\"reference\": \"Patient/p1\"}}",
			  0, NULL);
}

static void test_med_stop(void)
{
	json_t *cur = current_med_request();
	json_t *orig = json_deep_copy(cur);
	chart_input in = base(CHART_MED_STOP);
	chart_entry e = CHART_ENTRY_NULL;

	in.current = cur;
	in.reason = "bleeding";
	REQUIRE(build(&in, &e) == 0);
	check_entry_rules(&e, CHART_MED_STOP, SYS "/user");
	const json_t *r = e.resource;
	CHECK_STR(e.target, "MedicationRequest/mr1");
	CHECK_STR(e.if_match, "W/\"3\"");
	CHECK_STR(JS(r, "resourceType"), "MedicationRequest");
	CHECK_STR(JS(r, "id"), "mr1");
	CHECK_STR(JS(r, "status"), "stopped");
	CHECK_STR(JS(r, "statusReason.text"), "bleeding");
	CHECK(json_equal(jget(r, "identifier"), jget(cur, "identifier")));   /* no identifier added */
	CHECK(json_equal(jget(r, "medicationCodeableConcept"), jget(cur, "medicationCodeableConcept")));
	CHECK(!jget(r, "meta.versionId") && !jget(r, "meta.lastUpdated") && !jget(r, "meta.source"));
	CHECK_INT(json_array_size(jget(r, "meta.tag")), 2);
	CHECK_STR(JS(r, "meta.tag.0.system"), "urn:other");
	CHECK_STR(JS(r, "meta.tag.1.code"), CHART_TAG_CODE);
	CHECK_STR(JS(r, "meta.security.0.code"), "R");
	CHECK(!jget(r, "text"));   /* the generated narrative said "active" */
	CHECK_STR(JS(e.provenance, "target.0.reference"), "MedicationRequest/mr1");
	CHECK_STR(JS(e.provenance, "reason.0.text"), "bleeding");
	CHECK_STR(JS(e.provenance, "occurredDateTime"), AT);
	CHECK(json_equal(cur, orig));   /* the cached body is untouched */
	chart_entry_deinit(&e);

	/* Without a reason the old statusReason goes; a resource already tagged keeps one tag. */
	in.reason = "   ";
	json_array_append_new(jget(cur, "meta.tag"), json_pack("{s:s, s:s}", "system", CHART_TAG_SYSTEM, "code",
								 CHART_TAG_CODE));
	REQUIRE(build(&in, &e) == 0);
	CHECK(!jget(e.resource, "statusReason"));
	CHECK(!jget(e.provenance, "reason"));
	CHECK_INT(json_array_size(jget(e.resource, "meta.tag")), 2);
	chart_entry_deinit(&e);

	const struct {
		const char *key;
		json_t *value;    /* NULL: delete key */
		const char *msg;
	} bad[] = {
		{ "status", json_string("stopped"), "current: MedicationRequest/mr1 is already stopped" },
		{ "status", json_string("completed"),
		  "current: MedicationRequest/mr1 is completed; only an active, on-hold or draft request can be "
		  "stopped" },
		{ "meta", json_object(),
		  "current: MedicationRequest/mr1 has no valid meta.versionId; reload it from the EHR" },
		{ "id", NULL, "current: the MedicationRequest has no valid id" },
		{ "resourceType", json_string("AllergyIntolerance"),
		  "current: not a MedicationRequest (got AllergyIntolerance)" },
		{ "subject", json_pack("{s:s}", "reference", "Patient/p2"),
		  "current: MedicationRequest/mr1 is for another patient" },
		{ "subject", NULL, "current: MedicationRequest/mr1 is for another patient" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *c = current_med_request();
		if (bad[i].value)
			json_object_set_new(c, bad[i].key, bad[i].value);
		else
			json_object_del(c, bad[i].key);
		in.current = c;
		CHECK_INT(build(&in, &e), CHART_E_INVALID);
		CHECK_STR(g_err, bad[i].msg);
		CHECK(!e.resource && !e.target && !e.if_match);
		json_decref(c);
	}
	in.current = NULL;
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "current: required (the MedicationRequest being changed)");
	json_decref(cur);
	json_decref(orig);
}

static json_t *current_allergy(void)
{
	return json_loads("{\"resourceType\": \"AllergyIntolerance\", \"id\": \"al7\","
			  " \"meta\": {\"versionId\": \"12\"},"
			  " \"clinicalStatus\": {\"coding\": [{\"system\":"
			  "  \"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical\","
			  "  \"code\": \"active\"}]},"
			  " \"verificationStatus\": {\"coding\": [{"
			  "  \"system\": \"" CHART_SYSTEM_ALLERGY_VERIFICATION "\","
			  "  \"code\": \"confirmed\"}]},"
			  " \"code\": {\"text\": \"Penicillin\"}, \"patient\": {\"reference\": \"Patient/p1\"},"
			  " \"note\": [{\"text\": \"reported by family\"}]}",
			  0, NULL);
}

static void test_allergy_error(void)
{
	json_t *cur = current_allergy();
	chart_input in = base(CHART_ALLERGY_ERROR);
	chart_entry e = CHART_ENTRY_NULL;

	in.current = cur;
	in.reason = "wrong patient";
	REQUIRE(build(&in, &e) == 0);
	check_entry_rules(&e, CHART_ALLERGY_ERROR, SYS "/user");
	const json_t *r = e.resource;
	CHECK_STR(e.target, "AllergyIntolerance/al7");
	CHECK_STR(e.if_match, "W/\"12\"");
	CHECK_STR(JS(r, "verificationStatus.coding.0.system"), CHART_SYSTEM_ALLERGY_VERIFICATION);
	CHECK_STR(JS(r, "verificationStatus.coding.0.code"), "entered-in-error");
	CHECK_INT(json_array_size(jget(r, "verificationStatus.coding")), 1);
	CHECK(!jget(r, "clinicalStatus"));
	CHECK_INT(json_array_size(jget(r, "note")), 2);
	CHECK_STR(JS(r, "note.0.text"), "reported by family");
	CHECK_STR(JS(r, "note.1.text"), "wrong patient");
	CHECK_STR(JS(r, "note.1.time"), NOW_TEXT);
	CHECK_STR(JS(r, "note.1.authorReference.identifier.value"), "u42");
	CHECK(!jget(r, "meta.versionId"));
	CHECK(!jget(r, "identifier"));
	CHECK_STR(JS(r, "code.text"), "Penicillin");
	CHECK_STR(JS(e.provenance, "activity.coding.0.code"), "UPDATE");
	chart_entry_deinit(&e);

	/* No reason: no note added; no note array before: none made. */
	in.reason = NULL;
	json_object_del(cur, "note");
	REQUIRE(build(&in, &e) == 0);
	CHECK(!jget(e.resource, "note"));
	chart_entry_deinit(&e);
	in.reason = "dup";
	REQUIRE(build(&in, &e) == 0);
	CHECK_INT(json_array_size(jget(e.resource, "note")), 1);
	chart_entry_deinit(&e);

	/* Already entered in error; the wrong type; a reason that is not UTF-8. */
	json_object_set_new(cur, "verificationStatus", json_pack("{s:[{s:s, s:s}]}", "coding", "system",
								  CHART_SYSTEM_ALLERGY_VERIFICATION, "code",
								  "entered-in-error"));
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "current: AllergyIntolerance/al7 is already entered-in-error");
	json_decref(cur);
	cur = current_med_request();
	in.current = cur;
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "current: not a AllergyIntolerance (got MedicationRequest)");
	json_decref(cur);
	cur = current_allergy();
	in.current = cur;
	in.reason = "\xff";
	CHECK_INT(build(&in, &e), CHART_E_INVALID);
	CHECK_STR(g_err, "reason: not valid UTF-8");
	json_decref(cur);
}

static void test_transaction(void)
{
	chart_entry obs = CHART_ENTRY_NULL, stop = CHART_ENTRY_NULL;
	chart_input in = vitals("hr", "72", NULL);
	json_t *cur = current_med_request();

	REQUIRE(build(&in, &obs) == 0);
	in = base(CHART_MED_STOP);
	in.current = cur;
	REQUIRE(build(&in, &stop) == 0);

	chart_tx_item items[2] = {
		{ obs.uuid, obs.resource, obs.provenance, obs.target, obs.if_match },
		{ stop.uuid, stop.resource, stop.provenance, stop.target, stop.if_match },
	};
	json_t *b = chart_transaction(items, 2, SYS);
	REQUIRE(b);
	char buf[256];
	CHECK_STR(JS(b, "resourceType"), "Bundle");
	CHECK_STR(JS(b, "type"), "transaction");
	CHECK_INT(json_array_size(jget(b, "entry")), 4);

	const json_t *e0 = jget(b, "entry.0"), *e1 = jget(b, "entry.1");
	const json_t *e2 = jget(b, "entry.2"), *e3 = jget(b, "entry.3");
	snprintf(buf, sizeof(buf), "urn:uuid:%s", obs.uuid);
	CHECK_STR(JS(e0, "fullUrl"), buf);
	CHECK(json_equal(jget(e0, "resource"), obs.resource));
	CHECK(jget(e0, "resource") != obs.resource);   /* a copy */
	CHECK_STR(JS(e0, "request.method"), "POST");
	CHECK_STR(JS(e0, "request.url"), "Observation");
	snprintf(buf, sizeof(buf), "identifier=https://hospital.example.org/fhir/downtime|%s", obs.uuid);
	CHECK_STR(JS(e0, "request.ifNoneExist"), buf);
	CHECK(!jget(e0, "request.ifMatch"));

	snprintf(buf, sizeof(buf), "Provenance/dt-%s", obs.uuid);
	CHECK(json_equal(jget(e1, "resource"), obs.provenance));
	CHECK_STR(JS(e1, "request.method"), "PUT");
	CHECK_STR(JS(e1, "request.url"), buf);
	snprintf(buf, sizeof(buf), "urn:uuid:%s", obs.uuid);
	CHECK_STR(JS(e1, "resource.target.0.reference"), buf);   /* resolves to the entry's fullUrl */

	CHECK(!jget(e2, "fullUrl"));
	CHECK_STR(JS(e2, "request.method"), "PUT");
	CHECK_STR(JS(e2, "request.url"), "MedicationRequest/mr1");
	CHECK_STR(JS(e2, "request.ifMatch"), "W/\"3\"");
	CHECK(!jget(e2, "request.ifNoneExist"));
	CHECK_STR(JS(e2, "resource.status"), "stopped");
	snprintf(buf, sizeof(buf), "Provenance/dt-%s", stop.uuid);
	CHECK_STR(JS(e3, "request.url"), buf);
	CHECK_STR(JS(e3, "resource.target.0.reference"), "MedicationRequest/mr1");
	json_decref(b);

	/* The order of the items is kept. */
	chart_tx_item swapped[2] = { items[1], items[0] };
	b = chart_transaction(swapped, 2, SYS);
	REQUIRE(b);
	CHECK_STR(JS(b, "entry.0.request.url"), "MedicationRequest/mr1");
	CHECK_STR(JS(b, "entry.2.request.url"), "Observation");
	json_decref(b);

	/* ifNoneExist: FHIR escapes and percent-encoding for a system with reserved characters. */
	json_t *prov = json_pack("{s:s}", "resourceType", "Provenance");
	chart_tx_item odd = { "a.b-c", obs.resource, prov, NULL, NULL };
	b = chart_transaction(&odd, 1, "urn:x:a&b#d+e%f,g|h$i\\j=k");
	REQUIRE(b);
	CHECK_STR(JS(b, "entry.0.request.ifNoneExist"),
		  "identifier=urn:x:a%26b%23d%2Be%25f%5C%2Cg%5C%7Ch%5C%24i%5C%5Cj%3Dk|a.b-c");
	CHECK_STR(JS(b, "entry.1.resource.id"), "dt-a.b-c");   /* set when missing */
	CHECK_STR(JS(b, "entry.1.request.url"), "Provenance/dt-a.b-c");
	json_decref(b);

	/* Bad arguments. */
	CHECK(chart_transaction(items, 0, SYS) == NULL);
	CHECK(chart_transaction(NULL, 1, SYS) == NULL);
	CHECK(chart_transaction(items, 1, NULL) == NULL);
	chart_tx_item no_match = items[1];
	no_match.if_match = NULL;
	CHECK(chart_transaction(&no_match, 1, SYS) == NULL);
	chart_tx_item no_uuid = items[0];
	no_uuid.uuid = NULL;
	CHECK(chart_transaction(&no_uuid, 1, SYS) == NULL);
	odd.uuid = "a b";
	CHECK(chart_transaction(&odd, 1, SYS) == NULL);
	chart_tx_item other_prov = items[0];
	other_prov.provenance = stop.provenance;   /* its id is dt-<another uuid> */
	CHECK(chart_transaction(&other_prov, 1, SYS) == NULL);
	chart_tx_item no_type = items[0];
	no_type.resource = prov;
	json_object_del(prov, "resourceType");
	CHECK(chart_transaction(&no_type, 1, SYS) == NULL);

	json_decref(prov);
	json_decref(cur);
	chart_entry_deinit(&obs);
	chart_entry_deinit(&stop);
}

static int parse(const char *body, size_t n, chart_tx_result *out)
{
	return chart_parse_transaction_response(body, strlen(body), n, out, g_err, sizeof(g_err));
}

/* Transaction-response pieces. */
#define TX_HEAD "{\"resourceType\":\"Bundle\",\"type\":\"transaction-response\",\"entry\":["
#define TX_R(st) "{\"response\":{\"status\":\"" st "\"}}"
#define ID70 "0123456789012345678901234567890123456789012345678901234567890123456789"
#define TX_RL(st, loc) "{\"response\":{\"status\":\"" st "\",\"location\":\"" loc "\"}}"

static void test_response(void)
{
	chart_tx_result r[2];

	const char *good = TX_HEAD TX_RL("201 Created", "Observation/901/_history/1") ","
		TX_RL("200 OK", "Provenance/dt-x/_history/1") ","
		TX_RL("200", "https://ehr.example.org/fhir/MedicationRequest/mr1/_history/4?x=1") "," TX_R("201") "]}";
	CHECK_INT(parse(good, 2, r), 0);
	CHECK_INT(r[0].status, 201);
	CHECK_INT(r[0].prov_status, 200);
	CHECK_STR(r[0].location, "Observation/901/_history/1");
	CHECK_INT(r[1].status, 200);
	CHECK_INT(r[1].prov_status, 201);
	CHECK_STR(r[1].location, "MedicationRequest/mr1/_history/4");

	/* A location without a version; an entry that is not 2xx needs none. */
	const char *plain = TX_HEAD TX_RL("200 OK", "http://h/fhir/Observation/901") "," TX_R("200 OK") "]}";
	CHECK_INT(parse(plain, 1, r), 0);
	CHECK_STR(r[0].location, "Observation/901");
	const char *nonok = TX_HEAD TX_R("412 Precondition Failed") "," TX_R("200") "]}";
	CHECK_INT(parse(nonok, 1, r), 0);
	CHECK_INT(r[0].status, 412);
	CHECK_STR(r[0].location, "");

	static const struct {
		const char *body;
		size_t n;
		const char *msg;
	} bad[] = {
		{ TX_HEAD TX_RL("201", "Observation/1/_history/1") "]}", 1,
		  "response: 1 entries, expected 2 (2 per item)" },
		{ "{\"resourceType\":\"Bundle\",\"type\":\"transaction-response\"}", 1,
		  "response: 0 entries, expected 2 (2 per item)" },
		{ TX_HEAD TX_RL("Created", "Observation/1") "," TX_R("200") "]}", 1,
		  "entry 0 (item 0, entry): response.status 'Created' is not an HTTP status" },
		{ TX_HEAD TX_RL("201", "Observation/1") "," TX_R("2001") "]}", 1,
		  "entry 1 (item 0, provenance): response.status '2001' is not an HTTP status" },
		{ TX_HEAD TX_RL("201", "Observation/1") "," TX_R("20x OK") "]}", 1,
		  "entry 1 (item 0, provenance): response.status '20x OK' is not an HTTP status" },
		{ TX_HEAD TX_RL("201", "Observation/1") ",{\"response\":{}}]}", 1,
		  "entry 1 (item 0, provenance): no response.status" },
		{ TX_HEAD TX_R("201 Created") "," TX_R("200") "]}", 1,
		  "entry 0 (item 0, entry): status 201 without a location" },
		{ TX_HEAD TX_RL("201", "Observation") "," TX_R("200") "]}", 1,
		  "entry 0 (item 0, entry): location is not Type/id[/_history/v]" },
		{ TX_HEAD TX_RL("201", "Observation/a/_history/1") "," TX_R("200") ","
		  TX_RL("201", "Observation/" ID70 "/_history/1")
		  "," TX_R("200") "]}", 2,
		  "entry 2 (item 1, entry): location is not Type/id[/_history/v]" },
		{ "{\"resourceType\":\"Bundle\",\"type\":\"batch-response\",\"entry\":[]}", 0,
		  "response: Bundle type 'batch-response', expected transaction-response" },
		{ "{\"resourceType\":\"OperationOutcome\"}", 1, "response: not a Bundle" },
		{ "{\"resourceType\":\"Bundle\",", 1, "response: not JSON (line 1, column 25)" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r[0].status = 77;
		int rc = parse(bad[i].body, bad[i].n, r);
		CHECK_INT(rc, CHART_E_RESPONSE);
		CHECK_STR(g_err, bad[i].msg);
		if (bad[i].n)
			CHECK_INT(r[0].status, 0);   /* out zeroed on failure */
	}
	CHECK_INT(chart_parse_transaction_response(NULL, 5, 1, r, NULL, 0), -EINVAL);
	CHECK_INT(chart_parse_transaction_response(good, strlen(good), 2, NULL, NULL, 0), -EINVAL);
}

static void test_ref_rewrite(void)
{
	chart_input in = vitals("hr", "72", NULL);
	chart_entry e = CHART_ENTRY_NULL;

	in.patient_id = "DT-1";
	REQUIRE(build(&in, &e) == 0);
	json_t *extra = json_pack("[{s:s}, {s:s}, {s:s}, {s:{s:s}}]", "reference", "Patient/DT-1", "reference",
				  "Patient/DT-10", "display", "Patient/DT-1", "x", "reference", "Patient/DT-1");
	json_object_set_new(e.resource, "extra", extra);
	CHECK_INT(chart_patient_ref_rewrite(e.resource, "DT-1", "123"), 3);
	CHECK_STR(JS(e.resource, "subject.reference"), "Patient/123");
	CHECK_STR(JS(e.resource, "extra.0.reference"), "Patient/123");
	CHECK_STR(JS(e.resource, "extra.1.reference"), "Patient/DT-10");
	CHECK_STR(JS(e.resource, "extra.2.display"), "Patient/DT-1");   /* not a reference */
	CHECK_STR(JS(e.resource, "extra.3.x.reference"), "Patient/123");
	CHECK_INT(chart_patient_ref_rewrite(e.resource, "DT-1", "123"), 0);
	CHECK_INT(chart_patient_ref_rewrite(e.resource, "DT-1", "a/b"), -EINVAL);
	CHECK_INT(chart_patient_ref_rewrite(NULL, "DT-1", "1"), -EINVAL);
	CHECK_INT(chart_patient_ref_rewrite(e.resource, NULL, "1"), -EINVAL);
	chart_entry_deinit(&e);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_kind_names),
		HARNESS_TEST(test_vitals_heart_rate),
		HARNESS_TEST(test_vitals_each_sign),
		HARNESS_TEST(test_vitals_messages),
		HARNESS_TEST(test_blood_pressure),
		HARNESS_TEST(test_decimals),
		HARNESS_TEST(test_at),
		HARNESS_TEST(test_common_refusals),
		HARNESS_TEST(test_note),
		HARNESS_TEST(test_med_admin_from_request),
		HARNESS_TEST(test_med_admin_from_code),
		HARNESS_TEST(test_med_stop),
		HARNESS_TEST(test_allergy_error),
		HARNESS_TEST(test_transaction),
		HARNESS_TEST(test_response),
		HARNESS_TEST(test_ref_rewrite),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
