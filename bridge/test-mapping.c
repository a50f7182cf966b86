/*
 * Tests for the curation engine: mapping file errors with their exact
 * "file:line:col: key: message", the FHIRPath subset, transforms and
 * their errors, windows at their edges, selections and their ties, anchors
 * (FHIR and REDCap, in a non-UTC site zone), MRN and record names (HMAC
 * checked against openssl), determinism, mapping_check against a data
 * dictionary, and the shipped example study.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bridge/fhirpath.h"
#include "bridge/mapping.h"
#include "redcap/dictionary.h"
#include "tests/harness.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MRN_SYS "urn:mrn"
#define HOUR (3600LL * 1000000)

static char *tmp; /* this process's scratch directory */

static char *put_file(const char *name, const void *data, size_t len, mode_t mode)
{
	return harness_write_file(tmp, name, data, len, mode);
}

static char *put_text(const char *name, const char *text)
{
	return put_file(name, text, strlen(text), 0644);
}

/* A site zone at a fixed offset (minutes east of UTC, in *ud); 2099-01-01
 * 00:00 "does not exist" there, to test the refusal path. */
static int fixed_zone(void *ud, int y, int mo, int d, int h, int mi, int s, int64_t *us)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s };

	if (y == 2099)
		return -1;
	*us = ((int64_t)timegm(&tm) - (int64_t)*(int *)ud * 60) * 1000000;
	return 0;
}

static mapping_env env_utc = { .mrn_system = MRN_SYS };

/* Load mapping text written to tmp/m.json; *rc and err get the outcome. */
static mapping *load_env(const char *text, const mapping_env *env, int *rc, char *err, size_t size)
{
	mapping *m = NULL;
	char *p = put_text("m.json", text);
	if (!p) {
		*rc = -EIO;
		return NULL;
	}
	*rc = mapping_load(&m, p, env, err, size);
	free(p);
	return m;
}

static mapping *load(const char *text)
{
	char err[1024];
	int rc;
	mapping *m = load_env(text, &env_utc, &rc, err, sizeof(err));
	if (rc)
		fprintf(stderr, "  load failed: %s\n", err);
	return m;
}

/* ---- resources -------------------------------------------------------------------------- */

typedef struct rset {
	mapping_resource r[200];
	json_t *j[200];
	size_t n;
} rset;

static void rs_add(rset *s, const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (!j) {
		fprintf(stderr, "  bad test JSON: %s: %s\n", e.text, text);
		harness_failures++;
		return;
	}
	s->j[s->n] = j;
	s->r[s->n] = (mapping_resource){ .type = json_string_value(json_object_get(j, "resourceType")),
					 .id = json_string_value(json_object_get(j, "id")),
					 .version_id = "1",
					 .json = j };
	s->n++;
}

static void rs_free(rset *s)
{
	for (size_t i = 0; i < s->n; i++)
		json_decref(s->j[i]);
	s->n = 0;
}

#define PATIENT(extra) \
	"{\"resourceType\": \"Patient\", \"id\": \"p1\", \"identifier\": [{\"system\": \"urn:mrn\", \"value\": " \
		"\"M1\"}]" extra "}"

/* An Observation with a code, a time and a value in /min. */
static void obs(rset *s, const char *id, const char *code, const char *when, const char *value)
{
	char buf[1024];
	snprintf(buf, sizeof(buf),
		 "{\"resourceType\": \"Observation\", \"id\": \"%s\", \"status\": \"final\","
		 " \"category\": [{\"coding\": [{\"system\": "
			"\"http://terminology.hl7.org/CodeSystem/observation-category\","
		 " \"code\": \"vital-signs\"}]}],"
		 " \"code\": {\"coding\": [{\"system\": \"http://loinc.org\", \"code\": \"%s\"}]},"
		 " \"effectiveDateTime\": \"%s\", \"valueQuantity\": {\"value\": %s, \"unit\": \"beats/min\", "
			"\"code\": \"/min\"}}",
		 id, code, when, value);
	rs_add(s, buf);
}

static int curate(const mapping *m, rset *s, mapping_result *out)
{
	mapping_input in = { .res = s->r, .n = s->n };
	return mapping_curate(m, &in, out);
}

/* The value (or "ERR:" + error) of field in the row of instrument/src_id
 * (NULL, NULL: the non-repeating row); NULL when there is none. */
static const char *val(const mapping_result *r, const char *instrument, const char *src_id, const char *field)
{
	static char buf[512];
	for (size_t i = 0; i < r->n_rows; i++) {
		const mapping_row *w = &r->rows[i];
		if ((instrument == NULL) != (w->instrument == NULL) ||
		    (instrument && strcmp(instrument, w->instrument) != 0))
			continue;
		if (src_id && (!w->src_id || strcmp(src_id, w->src_id) != 0))
			continue;
		for (size_t k = 0; k < w->n; k++) {
			if (strcmp(w->v[k].field, field) != 0)
				continue;
			if (w->v[k].value)
				return w->v[k].value;
			snprintf(buf, sizeof(buf), "ERR:%s", w->v[k].error);
			return buf;
		}
	}
	return NULL;
}

static const mapping_value *find_value(const mapping_result *r, const char *field)
{
	for (size_t i = 0; i < r->n_rows; i++)
		for (size_t k = 0; k < r->rows[i].n; k++)
			if (strcmp(r->rows[i].v[k].field, field) == 0)
				return &r->rows[i].v[k];
	return NULL;
}

/* ---- load errors ---------------------------------------------------------------------- */

#define HEAD "{\"format\": \"fhir-redcap-bridge/mapping/1\", \"record_id\": {\"from\": \"mrn\"},\n"
#define ANCH " \"anchors\": {\"enc\": {\"resource\": \"Encounter\", \"time\": \"period.start\"}},\n"
#define RULES " \"rules\": [\n"
#define TAIL "\n]}"
#define PF "\"fields\": {\"f\": {\"value\": \"x\"}}"
/* Rule text on line 4, starting at column 3. */
#define R(rule) HEAD ANCH RULES "  " rule TAIL

static const struct err_case {
	const char *json;
	int rc;
	const char *expect; /* after the file name */
} err_cases[] = {
	/* JSON and top level */
	{ "{\"format\": 1,}", MAPPING_E_SYNTAX, ":1:14: string or '}' expected near '}'" },
	{ "{\"a\": 1, \"a\": 2}", MAPPING_E_SYNTAX, ":1:12: duplicate object key near '\"a\"'" },
	{ "[]", MAPPING_E_SYNTAX, ":1:1: (top level): expected an object, got an array" },
	{ "{\"format\": \"fhir-redcap-bridge/mapping/2\"}", MAPPING_E_SYNTAX,
	  ":1:2: format: expected \"fhir-redcap-bridge/mapping/1\", got \"fhir-redcap-bridge/mapping/2\"" },
	{ "{\n  \"rulez\": []}", MAPPING_E_SYNTAX,
	  ":2:3: rulez: unknown key (allowed: format, record_id, anchors, rules, comment)" },
	{ "{\"format\": \"fhir-redcap-bridge/mapping/1\"}", MAPPING_E_SYNTAX, ":1:1: record_id: required key is "
		"missing" },
	{ HEAD "\"rules\": []}", MAPPING_E_SYNTAX, ":2:1: rules: must hold at least one rule" },
	{ HEAD "\"rules\": {}}", MAPPING_E_SYNTAX, ":2:1: rules: expected an array of rules, got an object" },

	/* record_id */
	{ "{\"format\": \"fhir-redcap-bridge/mapping/1\", \"record_id\": {\"from\": \"ssn\"}}", MAPPING_E_SYNTAX,
	  ":1:58: record_id.from: expected \"mrn\" or \"hmac\", got \"ssn\"" },
	{ "{\"format\": \"fhir-redcap-bridge/mapping/1\", \"record_id\": {}}", MAPPING_E_SYNTAX,
	  ":1:57: record_id.from: required key is missing" },
	{ "{\"format\": \"fhir-redcap-bridge/mapping/1\", \"record_id\": {\"from\": \"mrn\", \"prefix\": \"S\"}}",
	  MAPPING_E_SYNTAX, ":1:73: record_id.prefix: not used with from \"mrn\" (the record id is the MRN)" },
	{ "{\"format\": \"fhir-redcap-bridge/mapping/1\", \"record_id\": {\"from\": \"hmac\", \"key_file\": \"k\", "
	  "\"prefix\": \"S S\"}}",
	  MAPPING_E_SYNTAX,
	  ":1:91: record_id.prefix: \"S S\" is not a prefix (letters, digits, '_' and '-'; at most 16)" },
	{ "{\"format\": \"fhir-redcap-bridge/mapping/1\", \"record_id\": {\"from\": \"hmac\", \"key_file\": \"k\", "
	  "\"prefix\": \"12345678901234567\"}}",
	  MAPPING_E_SYNTAX,
	  ":1:91: record_id.prefix: \"12345678901234567\" is not a prefix (letters, digits, '_' and '-'; at most 16)" },
	{ "{\"format\": \"fhir-redcap-bridge/mapping/1\", \"record_id\": {\"from\": \"hmac\", \"key_file\": \"k\", "
	  "\"hex_digits\": 7}}",
	  MAPPING_E_SYNTAX, ":1:91: record_id.hex_digits: expected an integer from 8 to 64, got 7" },
	{ "{\"format\": \"fhir-redcap-bridge/mapping/1\", \"record_id\": {\"from\": \"hmac\", \"key_file\": \"k\", "
	  "\"hex_digits\": \"16\"}}",
	  MAPPING_E_SYNTAX, ":1:91: record_id.hex_digits: expected an integer from 8 to 64, got a string" },
	{ "{\"format\": \"fhir-redcap-bridge/mapping/1\", \"record_id\": {\"from\": \"hmac\"}}", MAPPING_E_SYNTAX,
	  ":1:57: record_id.key_file: required key is missing" },

	/* anchors */
	{ HEAD " \"anchors\": {\"a b\": {\"field\": \"x\"}},\n" RULES "  {\"resource\": \"Patient\", " PF "}" TAIL,
	  MAPPING_E_SYNTAX,
	  ":2:14: anchors[\"a b\"]: \"a b\" is not an anchor name (letters, digits, '_' and '-'; at most 64)" },
	{ HEAD " \"anchors\": {\"a\": {\"field\": \"x\", \"time\": \"t\"}},\n" RULES "  {\"resource\": \"Patient\", "
		"" PF "}" TAIL,
	  MAPPING_E_SYNTAX, ":2:34: anchors.a.time: not used with an anchor typed into REDCap (\"field\")" },
	{ HEAD " \"anchors\": {\"a\": {\"field\": \"Adm\"}},\n" RULES "  {\"resource\": \"Patient\", " PF "}" TAIL,
	  MAPPING_E_SYNTAX, ":2:20: anchors.a.field: \"Adm\" is not a REDCap field name" },
	{ HEAD " \"anchors\": {\"a\": {\"resource\": \"Encounter\"}},\n" RULES "  {\"resource\": \"Patient\", " PF "}"
	  TAIL,
	  MAPPING_E_SYNTAX, ":2:19: anchors.a.time: required key is missing" },
	{ HEAD " \"anchors\": {\"a\": {\"resource\": \"Encounter\", \"time\": \"period.start\", \"select\": "
		"\"NEAR\"}},\n" RULES
	  "  {\"resource\": \"Patient\", " PF "}" TAIL,
	  MAPPING_E_SYNTAX, ":2:69: anchors.a.select: expected \"FIRST\" or \"LAST\", got \"NEAR\"" },

	/* rules: shape */
	{ R("5"), MAPPING_E_SYNTAX, ":4:3: rules[0]: expected a rule (an object), got an integer" },
	{ R("{\"resource\": \"Patient\", " PF ", \"bogus\": 1}"), MAPPING_E_SYNTAX,
	  ":4:60: rules[0].bogus: unknown key (allowed: name, resource, anchor, filter, event, instrument, time, "
		"window, "
	  "select, review, fields, comment)" },
	{ R("{" PF "}"), MAPPING_E_SYNTAX,
	  ":4:3: rules[0]: give \"resource\" (a FHIR resource type) or \"anchor\" (an anchor's name), exactly one" },
	{ R("{\"resource\": \"observation\", " PF "}"), MAPPING_E_SYNTAX,
	  ":4:4: rules[0].resource: \"observation\" is not a resource type name (like \"Observation\": "
		"^[A-Z][A-Za-z]{1,63}$)" },
	{ R("{\"resource\": \"Patient\"}"), MAPPING_E_SYNTAX, ":4:3: rules[0].fields: required key is missing" },
	{ R("{\"resource\": \"Patient\", \"fields\": {}}"), MAPPING_E_SYNTAX,
	  ":4:27: rules[0].fields: must name at least one REDCap field" },
	{ R("{\"resource\": \"Patient\", \"review\": \"yes\", " PF "}"), MAPPING_E_SYNTAX,
	  ":4:27: rules[0].review: expected true or false, got a string" },
	{ R("{\"resource\": \"Patient\", \"event\": \"Baseline\", " PF "}"), MAPPING_E_SYNTAX,
	  ":4:27: rules[0].event: \"Baseline\" is not a unique event name (like \"baseline_arm_1\")" },
	{ R("{\"name\": \"a\", \"resource\": \"Patient\", " PF "},\n  {\"name\": \"a\", \"resource\": \"Patient\", "
	    "\"fields\": {\"g\": {\"value\": \"x\"}}}"),
	  MAPPING_E_SYNTAX, ":5:4: rules[1].name: the rule name \"a\" is used twice (first at rules[0])" },
	{ R("{\"resource\": \"Patient\", " PF "},\n  {\"resource\": \"Patient\", \"fields\": {\"f\": {\"value\": "
		"\"y\"}}}"),
	  MAPPING_E_SYNTAX, ":5:38: rules[1].fields.f: already filled by rules[0] \"rules[0]\"" },

	/* rules: select, window, time */
	{ R("{\"resource\": \"Observation\", " PF "}"), MAPPING_E_SYNTAX,
	  ":4:3: rules[0].select: a non-repeating rule on Observation needs select (FIRST, LAST, MIN, MAX or NEAR): "
		"one "
	  "resource fills the fields" },
	{ R("{\"resource\": \"Observation\", \"time\": \"effective\", \"select\": \"NEAR\", " PF "}"), MAPPING_E_SYNTAX,
	  ":4:52: rules[0].select: NEAR needs a window (its anchor is what NEAR is near to)" },
	{ R("{\"resource\": \"Observation\", \"select\": \"FIRST\", " PF "}"), MAPPING_E_SYNTAX,
	  ":4:31: rules[0].select: FIRST needs \"time\" (the path to when the resource happened)" },
	{ R("{\"resource\": \"Observation\", \"select\": \"MAX\", \"fields\": {\"a\": {\"value\": \"x\"}, \"b\": "
		"{\"value\": \"y\"}}}"),
	  MAPPING_E_SYNTAX, ":4:31: rules[0].select: MAX needs exactly one field (the number compared), got 2" },
	{ R("{\"resource\": \"Observation\", \"select\": \"MIN\", \"fields\": {\"a\": {\"value\": \"x\", \"map\": "
		"{\"1\": \"2\"}}}}"),
	  MAPPING_E_SYNTAX,
	  ":4:31: rules[0].select: MIN compares the field's value as a number: the field cannot have a map" },
	{ R("{\"resource\": \"Observation\", \"select\": \"BEST\", " PF "}"), MAPPING_E_SYNTAX,
	  ":4:31: rules[0].select: expected \"FIRST\", \"LAST\", \"MIN\", \"MAX\" or \"NEAR\", got \"BEST\"" },
	{ R("{\"resource\": \"Observation\", \"instrument\": \"vitals\", \"select\": \"LAST\", \"time\": "
		"\"effective\", " PF "}"),
	  MAPPING_E_SYNTAX,
	  ":4:55: rules[0].select: not used with \"instrument\" (a repeating rule makes one instance per resource)" },
	{ R("{\"resource\": \"Observation\", \"select\": \"MAX\", \"window\": {\"anchor\": \"enc\", \"from\": \"0\", "
		"\"to\": \"+2d\"}, " PF "}"),
	  MAPPING_E_SYNTAX, ":4:48: rules[0].window: needs \"time\" (the path to when the resource happened)" },
	{ R("{\"resource\": \"Observation\", \"time\": \"effective\", \"select\": \"MAX\",\n"
	    "   \"window\": {\"anchor\": \"adm\", \"from\": \"0\", \"to\": \"+2d\"}, " PF "}"),
	  MAPPING_E_SYNTAX, ":5:15: rules[0].window.anchor: no anchor named \"adm\" (anchors: enc)" },
	{ R("{\"resource\": \"Observation\", \"time\": \"effective\", \"select\": \"MAX\",\n"
	    "   \"window\": {\"anchor\": \"enc\", \"from\": \"1d\", \"to\": \"+2d\"}, " PF "}"),
	  MAPPING_E_SYNTAX,
	  ":5:32: rules[0].window.from: \"1d\" is not an offset (\"0\", or a sign, a number and d, h or m: \"-1d\", "
	  "\"+12h\", \"-30m\"; at most 100 years)" },
	{ R("{\"resource\": \"Observation\", \"time\": \"effective\", \"select\": \"MAX\",\n"
	    "   \"window\": {\"anchor\": \"enc\", \"from\": \"0\", \"to\": \"+2w\"}, " PF "}"),
	  MAPPING_E_SYNTAX,
	  ":5:45: rules[0].window.to: \"+2w\" is not an offset (\"0\", or a sign, a number and d, h or m: \"-1d\", "
	  "\"+12h\", \"-30m\"; at most 100 years)" },
	{ R("{\"resource\": \"Observation\", \"time\": \"effective\", \"select\": \"MAX\",\n"
	    "   \"window\": {\"anchor\": \"enc\", \"from\": \"+1h\", \"to\": \"-30m\"}, " PF "}"),
	  MAPPING_E_SYNTAX, ":5:47: rules[0].window.to: the window ends before it starts (from \"+1h\")" },
	{ R("{\"resource\": \"Observation\", \"time\": \"effective\", \"select\": \"MAX\",\n"
	    "   \"window\": {\"anchor\": \"enc\", \"from\": \"-0\", \"to\": \"+1d\"}, " PF "}"),
	  MAPPING_E_SYNTAX,
	  ":5:32: rules[0].window.from: \"-0\" is not an offset (\"0\", or a sign, a number and d, h or m: \"-1d\", "
	  "\"+12h\", \"-30m\"; at most 100 years)" },
	{ R("{\"resource\": \"Observation\", \"time\": \"effective\", \"select\": \"MAX\",\n"
	    "   \"window\": {\"anchor\": \"enc\", \"from\": \"-36501d\", \"to\": \"+1d\"}, " PF "}"),
	  MAPPING_E_SYNTAX,
	  ":5:32: rules[0].window.from: \"-36501d\" is not an offset (\"0\", or a sign, a number and d, h or m: "
		"\"-1d\", "
	  "\"+12h\", \"-30m\"; at most 100 years)" },

	/* anchor rules */
	{ R("{\"anchor\": \"enc\", \"filter\": {\"status\": [\"final\"]}, \"fields\": {\"d\": {\"transform\": "
		"\"date\"}}}"),
	  MAPPING_E_SYNTAX, ":4:21: rules[0].filter: not used in an anchor rule (its fields take the anchor's value)" },
	{ R("{\"anchor\": \"nope\", \"fields\": {\"d\": {\"transform\": \"date\"}}}"), MAPPING_E_SYNTAX,
	  ":4:4: rules[0].anchor: no anchor named \"nope\" (anchors: enc)" },
	{ R("{\"anchor\": \"enc\", \"fields\": {\"d\": {\"unit\": \"kg\"}}}"), MAPPING_E_SYNTAX,
	  ":4:38: rules[0].fields.d.unit: needs a value path (the unit belongs to the Quantity that holds the value)" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"d\": {}}}"), MAPPING_E_SYNTAX,
	  ":4:43: rules[0].fields.d.value: required key is missing" },

	/* fields */
	{ R("{\"resource\": \"Patient\", \"fields\": {\"Sex\": {\"value\": \"gender\"}}}"), MAPPING_E_SYNTAX,
	  ":4:38: rules[0].fields.Sex: \"Sex\" is not a REDCap field name (lower-case letters, digits and '_', "
		"starting "
	  "with a letter; at most 100)" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"sex\": \"gender\"}}"), MAPPING_E_SYNTAX,
	  ":4:38: rules[0].fields.sex: expected an object (value, unit, transform, map, default), got a string" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"sex\": {\"value\": \"gender\", \"transform\": \"upper\"}}}"),
	  MAPPING_E_SYNTAX,
	  ":4:65: rules[0].fields.sex.transform: expected \"string\", \"number\", \"round\", \"date\", \"datetime\" or "
	  "\"datetime_seconds\", got \"upper\"" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"sex\": {\"value\": \"gender\", \"default\": \"3\"}}}"),
	  MAPPING_E_SYNTAX,
	  ":4:65: rules[0].fields.sex.default: needs a map (the default is the code for values the map does not "
		"name)" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"sex\": {\"value\": \"gender\", \"map\": {\"male\": \"1\"}, "
		"\"transform\": \"number\"}}}"),
	  MAPPING_E_SYNTAX, ":4:87: rules[0].fields.sex.transform: not used with a map (the map gives the value)" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"sex\": {\"value\": \"gender\", \"map\": {\"male\": 1}}}}"),
	  MAPPING_E_SYNTAX,
	  ":4:73: rules[0].fields.sex.map.male: expected a REDCap code (a string), got an integer" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"sex\": {\"value\": \"gender\", \"map\": {}}}}"),
	  MAPPING_E_SYNTAX,
	  ":4:65: rules[0].fields.sex.map: must map at least one code" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"x\": {\"value\": []}}}"), MAPPING_E_SYNTAX,
	  ":4:44: rules[0].fields.x.value: expected a value path or an array of 1 to 8 alternative paths, got an "
		"array of "
	  "another size" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"x\": {\"value\": [\"a\", 5]}}}"), MAPPING_E_SYNTAX,
	  ":4:59: rules[0].fields.x.value[1]: expected a value path (a string), got an integer" },

	/* value paths: the position is the character where the path goes wrong */
	{ R("{\"resource\": \"Patient\", \"fields\": {\"x\": {\"value\": \"name..given\"}}}"), MAPPING_E_SYNTAX,
	  ":4:59: rules[0].fields.x.value: expected an element name (at character 6 of the path)" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"x\": {\"value\": \"name.exists()\"}}}"), MAPPING_E_SYNTAX,
	  ":4:59: rules[0].fields.x.value: unknown function (first(), last() and where() are supported) (at character "
		"6 "
	  "of the path)" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"x\": {\"value\": [\"a\", \"b[x]\"]}}}"), MAPPING_E_SYNTAX,
	  ":4:62: rules[0].fields.x.value[1]: expected an index (digits) (at character 3 of the path)" },
	/* \u00e9 takes 6 columns in the file and 2 bytes in the path */
	{ R("{\"resource\": \"Patient\", \"fields\": {\"x\": {\"value\": \"a.where(b = '\\u00e9' and )\"}}}"),
	  MAPPING_E_SYNTAX,
	  ":4:79: rules[0].fields.x.value: expected an element name (at character 22 of the path)" },
	{ R("{\"resource\": \"Patient\", \"fields\": {\"x\": {\"value\": \"identifier.where(system = %mrn)\"}}}"),
	  MAPPING_E_SYNTAX,
	  ":4:80: rules[0].fields.x.value: unknown variable (only %mrn_system is defined) (at character 27 of the "
		"path)" },
	{ R("{\"resource\": \"Observation\", \"time\": \"effective.\", \"select\": \"LAST\", " PF "}"),
	  MAPPING_E_SYNTAX,
	  ":4:50: rules[0].time: expected an element name (at character 11 of the path)" },

	/* filters */
	{ R("{\"resource\": \"Observation\", \"instrument\": \"v\", \"filter\": {\"code\": [\"|\"]}, " PF "}"),
	  MAPPING_E_SYNTAX,
	  ":4:70: rules[0].filter.code[0]: \"|\" alone matches nothing (give system|code, code, system| or |code)" },
	{ R("{\"resource\": \"Observation\", \"instrument\": \"v\", \"filter\": {\"status\": []}, " PF "}"),
	  MAPPING_E_SYNTAX, ":4:61: rules[0].filter.status: must list at least one value" },
	{ R("{\"resource\": \"Observation\", \"instrument\": \"v\", \"filter\": {\"category\": \"laboratory\"}, "
	    PF "}"),
	  MAPPING_E_SYNTAX, ":4:61: rules[0].filter.category: expected an array of strings, got a string" },
	{ R("{\"resource\": \"Observation\", \"instrument\": \"v\", \"filter\": {\"code\": [\"a\", 1]}, " PF "}"),
	  MAPPING_E_SYNTAX, ":4:75: rules[0].filter.code[1]: expected a string, got an integer" },
	{ R("{\"resource\": \"Observation\", \"instrument\": \"v\", \"filter\": {\"codes\": [\"a\"]}, " PF "}"),
	  MAPPING_E_SYNTAX, ":4:61: rules[0].filter.codes: unknown key (allowed: code, category, status, comment)" },
};

static void test_load_errors(void)
{
	for (size_t i = 0; i < N(err_cases); i++) {
		char err[1024], want[1024];
		int rc;
		mapping *m = load_env(err_cases[i].json, &env_utc, &rc, err, sizeof(err));
		snprintf(want, sizeof(want), "%s/m.json%s", tmp, err_cases[i].expect);
		if (rc != err_cases[i].rc || strcmp(err, want) != 0 || m) {
			fprintf(stderr, "  case %zu: rc %d\n    got  %s\n    want %s\n", i, rc, err, want);
			harness_failures++;
		}
		mapping_free(m);
	}
}

/* Bad files with their exact messages (bridge/testdata/mapping/bad-*.json). */
static void test_load_error_files(void)
{
	static const struct {
		const char *file, *expect;
	} cases[] = {
		{ "bad-near-without-window.json", ":14:7: rules[1].select: NEAR needs a window (its anchor is what "
			"NEAR is near to)" },
		{ "bad-path.json", ":11:45: rules[0].fields.mrn.value: expected '=' (at character 25 of the path)" },
		{ "bad-unknown-key.json",
		  ":9:9: rules[0].fields.dob.tranform: unknown key (allowed: value, unit, transform, map, default, "
			"comment)" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		char rel[256], err[1024], want[1024];
		mapping *m = NULL;
		snprintf(rel, sizeof(rel), "%s/bridge/testdata/mapping/%s", harness_source_root(), cases[i].file);
		int rc = mapping_load(&m, rel, &env_utc, err, sizeof(err));
		snprintf(want, sizeof(want), "%s%s", rel, cases[i].expect);
		CHECK_INT(rc, MAPPING_E_SYNTAX);
		CHECK_STR(err, want);
		CHECK(m == NULL);
	}
}

static void test_load_env_and_files(void)
{
	char err[1024];
	int rc;
	mapping *m;

	/* No MRN system: no record id can be made. */
	mapping_env none = { 0 };
	m = load_env(HEAD RULES "  {\"resource\": \"Patient\", " PF "}" TAIL, &none, &rc, err, sizeof(err));
	CHECK_INT(rc, MAPPING_E_SYNTAX);
	CHECK(strstr(err, "/m.json:1:44: record_id: needs fhir.mrn_system in the configuration") != NULL);
	CHECK(m == NULL);

	/* A missing file. */
	char *p = NULL;
	REQUIRE(asprintf(&p, "%s/missing.json", tmp) > 0);
	m = (mapping *)1;
	rc = mapping_load(&m, p, &env_utc, err, sizeof(err));
	CHECK_INT(rc, MAPPING_E_FILE);
	CHECK(m == NULL);
	char want[1100];
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", p);
	CHECK_STR(err, want);
	free(p);
	CHECK_INT(mapping_load(&m, "", &env_utc, err, sizeof(err)), -EINVAL);

	/* Key files: missing, too open, too short, then fine. */
	const char *hm = "{\"format\": \"fhir-redcap-bridge/mapping/1\",\n \"record_id\": {\"from\": \"hmac\", "
		"\"key_file\": "
			 "\"k.key\"},\n" RULES "  {\"resource\": \"Patient\", " PF "}" TAIL;
	char *kp = NULL;
	REQUIRE(asprintf(&kp, "%s/k.key", tmp) > 0);
	unlink(kp);
	m = load_env(hm, &env_utc, &rc, err, sizeof(err));
	CHECK_INT(rc, MAPPING_E_FILE);
	snprintf(want, sizeof(want), "%s/m.json:2:32: record_id.key_file: %s: cannot open: No such file or "
		"directory", tmp,
		 kp);
	CHECK_STR(err, want);
	free(put_file("k.key", "0123456789abcdef0123456789abcdef\n", 33, 0644));
	m = load_env(hm, &env_utc, &rc, err, sizeof(err));
	CHECK_INT(rc, MAPPING_E_FILE);
	CHECK(strstr(err, "record_id.key_file: ") && strstr(err, "permissions 0644 are too open"));
	free(put_file("k.key", "0123456789abcdef0123456789abcde\n", 32, 0600));
	m = load_env(hm, &env_utc, &rc, err, sizeof(err));
	CHECK_INT(rc, MAPPING_E_FILE);
	snprintf(want, sizeof(want), "%s/m.json:2:32: record_id.key_file: %s: the key must hold at least 32 bytes", tmp,
		 kp);
	CHECK_STR(err, want);
	free(put_file("k.key", "0123456789abcdef0123456789abcdef\n", 33, 0600));
	m = load_env(hm, &env_utc, &rc, err, sizeof(err));
	CHECK_INT(rc, 0);
	mapping_free(m);
	unlink(kp);
	free(kp);
}

static void test_load_ok(void)
{
	mapping *m = load(HEAD " \"comment\": \"c\",\n \"anchors\": {\"enc\": {\"resource\": \"Encounter\", \"time\": "
		"\"period.start\"},"
			  " \"adm\": {\"field\": \"admit_dt\"}, \"dis\": {\"field\": \"discharge_dt\"}, \"adm2\": "
				"{\"field\": \"admit_dt\"}},\n" RULES
			  "  {\"resource\": \"Patient\", \"fields\": {\"a\": {\"value\": \"gender\"}}},\n"
			  "  {\"resource\": \"Condition\", \"instrument\": \"c\", \"fields\": {\"b\": {\"value\": "
				"\"code.text\"}}},\n"
			  "  {\"resource\": \"Observation\", \"time\": \"effective\", \"select\": \"LAST\", "
				"\"fields\": {\"c\": {\"value\": \"id\"}}}" TAIL);
	REQUIRE(m);
	const char *const *types;
	size_t n = mapping_resource_types(m, &types);
	REQUIRE(n == 4);
	CHECK_STR(types[0], "Condition");
	CHECK_STR(types[1], "Encounter");
	CHECK_STR(types[2], "Observation");
	CHECK_STR(types[3], "Patient");
	const char *const *fields;
	n = mapping_redcap_anchor_fields(m, &fields);
	REQUIRE(n == 2);
	CHECK_STR(fields[0], "admit_dt");
	CHECK_STR(fields[1], "discharge_dt");
	CHECK_INT(strlen(mapping_digest(m)), 64);
	mapping_free(m);
}

/* The digest is SHA-256 of the file's bytes. */
static void test_digest(void)
{
	const char *text = HEAD RULES "  {\"resource\": \"Patient\", " PF "}" TAIL;
	mapping *m = load(text);
	REQUIRE(m);
	/* Computed outside the code under test: the text written to a file, then sha256sum. */
	CHECK_STR(mapping_digest(m), "af0c41a2593670fb06695434074748ad9ca55b38ea0cff56df70aaa8ec667bca");
	mapping_free(m);
}

/* ---- FHIRPath ---------------------------------------------------------------------------- */

static void test_fhirpath_parse(void)
{
	static const struct {
		const char *expr;
		size_t off;        /* SIZE_MAX: parses */
		const char *msg;
	} cases[] = {
		{ "gender", SIZE_MAX, NULL },
		{ "Patient.name[0].given[1]", SIZE_MAX, NULL },
		{ "identifier.where(system = %mrn_system).value.first()", SIZE_MAX, NULL },
		{ "identifier.where( system='a' and type.text = 'b\\'c\\\\' ).value.last()", SIZE_MAX, NULL },
		{ "", 0, "empty path" },
		{ "a.", 2, "expected an element name" },
		{ ".a", 0, "expected an element name" },
		{ "a..b", 2, "expected an element name" },
		{ "a b", 1, "expected '.', '[' or the end of the path" },
		{ "a[", 2, "expected an index (digits)" },
		{ "a[1", 3, "expected ']'" },
		{ "a[1000000]", 2, "index too large" },
		{ "first(", 6, "expected ')'" },
		{ "a.count()", 2, "unknown function (first(), last() and where() are supported)" },
		{ "a.Observation", 2, "a resource type name can only start the path" },
		{ "Patient", 7, "expected '.' and an element after the resource type" },
		{ "a.where(b)", 9, "expected '='" },
		{ "a.where(b = c)", 12, "expected a quoted string or %mrn_system" },
		{ "a.where(b = 'c)", 12, "unterminated string" },
		{ "a.where(b = 'c\\n')", 14, "unknown escape (only \\' and \\\\)" },
		{ "a.where(b = 'c' or d = 'e')", 16, "expected 'and' or ')'" },
		{ "a.where(b = 'c'and d = 'e')", 15, "expected 'and' or ')'" },
		{ "a.where(b = %x)", 12, "unknown variable (only %mrn_system is defined)" },
		{ "a.where(b.c[0] = 'x')", 11, "expected '='" },
		{ "a_1.b2", SIZE_MAX, NULL },
		{ "1a", 0, "expected an element name" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		fhirpath *p = NULL;
		size_t off = 99;
		const char *msg = NULL;
		int r = fhirpath_parse(cases[i].expr, &p, &off, &msg);
		if (cases[i].off == SIZE_MAX) {
			if (r != 0) {
				fprintf(stderr, "  %s: %d at %zu: %s\n", cases[i].expr, r, off, msg);
				harness_failures++;
			} else {
				CHECK_STR(fhirpath_text(p), cases[i].expr);
			}
		} else if (r != FHIRPATH_E_SYNTAX || off != cases[i].off || !msg || strcmp(msg, cases[i].msg) != 0) {
			fprintf(stderr, "  %s: got %d at %zu: %s; want at %zu: %s\n", cases[i].expr, r, off,
				msg ? msg : "-", cases[i].off, cases[i].msg);
			harness_failures++;
		}
		fhirpath_free(p);
	}
}

/* The nodes of expr on doc as compact JSON joined by " | " (parent type after '@'). */
static char *eval_str(const char *expr, const json_t *doc, const char *mrn_system)
{
	static char out[2048];
	fhirpath_ctx x = FHIRPATH_CTX_NULL;
	const fhirpath_coll *c;
	const char *msg;
	size_t off;
	fhirpath *p;

	x.mrn_system = mrn_system;
	if (fhirpath_parse(expr, &p, &off, &msg) != 0)
		return strcpy(out, "PARSE ERROR");
	out[0] = '\0';
	if (fhirpath_eval(p, doc, &x, &c) == 0) {
		for (size_t i = 0; i < c->n; i++) {
			char *s = json_dumps(c->v[i].node, JSON_COMPACT | JSON_ENCODE_ANY);
			snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? " | " : "", s ? s : "?");
			free(s);
		}
	}
	fhirpath_free(p);
	fhirpath_ctx_deinit(&x);
	return out;
}

static void test_fhirpath_eval(void)
{
	json_t *doc = json_loads(
		"{\"resourceType\": \"Observation\", \"id\": \"o1\", \"status\": \"final\","
		" \"identifier\": [{\"system\": \"urn:a\", \"value\": \"A1\"}, {\"system\": \"urn:mrn\", \"value\": "
			"\"M1\","
		"   \"type\": {\"text\": \"MR\"}}, {\"system\": \"urn:mrn\", \"value\": \"M2\", \"type\": {\"text\": "
			"\"old\"}}],"
		" \"code\": {\"coding\": [{\"system\": \"http://loinc.org\", \"code\": \"8867-4\", \"display\": "
			"\"HR\"},"
		"   {\"system\": \"urn:local\", \"code\": \"hr\"}], \"text\": \"Heart rate\"},"
		" \"category\": [{\"coding\": [{\"code\": \"vital-signs\"}]}, {\"coding\": [{\"code\": \"a\"}, "
			"{\"code\": \"b\"}]}],"
		" \"effectivePeriod\": {\"start\": \"2020-01-01T00:00:00Z\"},"
		" \"valueQuantity\": {\"value\": 72, \"code\": \"/min\"},"
		" \"component\": [{\"valueQuantity\": {\"value\": 120}}, {\"valueString\": \"x\"}, "
			"{\"valueQuantity\": {\"value\": 80}}],"
		" \"name\": [{\"given\": [\"A\", \"B\"]}, {\"given\": [\"C\"]}]}",
		0, NULL);
	REQUIRE(doc);
	static const struct {
		const char *expr, *want;
	} cases[] = {
		{ "status", "\"final\"" },
		{ "Observation.status", "\"final\"" },
		{ "Patient.status", "" },
		{ "missing", "" },
		{ "missing.deeper[0].first()", "" },
		/* flattening */
		{ "name.given", "\"A\" | \"B\" | \"C\"" },
		{ "name.given[1]", "\"B\"" },
		{ "name[1].given", "\"C\"" },
		{ "name.given.first()", "\"A\"" },
		{ "name.given.last()", "\"C\"" },
		{ "name.given[3]", "" },
		{ "category.coding.code", "\"vital-signs\" | \"a\" | \"b\"" },
		/* choice elements by base name */
		{ "effective", "{\"start\":\"2020-01-01T00:00:00Z\"}" },
		{ "effective.start", "\"2020-01-01T00:00:00Z\"" },
		{ "value.value", "72" },
		{ "component.value.value", "120 | 80" },
		{ "component.value", "{\"value\":120} | \"x\" | {\"value\":80}" },
		{ "effect", "" },
		/* where */
		{ "identifier.where(system = 'urn:mrn').value", "\"M1\" | \"M2\"" },
		{ "identifier.where(system = %mrn_system).value", "\"M1\" | \"M2\"" },
		{ "identifier.where(system = 'urn:mrn' and type.text = 'MR').value", "\"M1\"" },
		{ "identifier.where(system = 'urn:mrn' and type.text = 'nope').value", "" },
		{ "code.coding.where(system = 'http://loinc.org').code", "\"8867-4\"" },
		{ "code.coding.where(display = 'HR').code", "\"8867-4\"" },
		/* a left side with two values is not equal to one value (FHIRPath '=') */
		{ "category.where(coding.code = 'a').coding.code", "" },
		{ "category.where(coding.code = 'b').coding.code", "" },
		{ "category.where(coding.code = 'vital-signs').coding.code", "\"vital-signs\"" },
		{ "identifier.where(system = 'urn:mrn').first().value", "\"M1\"" },
		{ "identifier.where(system = 'urn:mrn')[1].value", "\"M2\"" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		const char *got = eval_str(cases[i].expr, doc, MRN_SYS);
		if (strcmp(got, cases[i].want) != 0) {
			fprintf(stderr, "  %s: got [%s] want [%s]\n", cases[i].expr, got, cases[i].want);
			harness_failures++;
		}
	}
	/* Without an MRN system, %mrn_system equals nothing. */
	CHECK_STR(eval_str("identifier.where(system = %mrn_system).value", doc, NULL), "");

	/* Parents: the Quantity that holds a value. */
	fhirpath *p;
	const char *msg;
	size_t off;
	fhirpath_ctx x = FHIRPATH_CTX_NULL;
	const fhirpath_coll *c;
	REQUIRE(fhirpath_parse("component.value.value", &p, &off, &msg) == 0);
	REQUIRE(fhirpath_eval(p, doc, &x, &c) == 0 && c->n == 2);
	CHECK(c->v[0].parent == json_object_get(json_array_get(json_object_get(doc, "component"), 0), "valueQuantity"));
	fhirpath_free(p);
	fhirpath_ctx_deinit(&x);
	CHECK(fhirpath_member(doc, "value") == json_object_get(doc, "valueQuantity"));
	CHECK(fhirpath_member(doc, "effectiveDateTime") == NULL);
	json_decref(doc);
}

/* ---- transforms ---------------------------------------------------------------------------- */

#define TPAT PATIENT(", \"x\": {\"int\": 57, \"real\": 1.1, \"real0\": 57.0, \"long\": 1.1000000000000001, " \
	"\"sum\": 0.30000000000000004," \
	" \"tiny\": 0.000123, \"neg\": -2.5, \"half\": 2.5, \"negs\": -2.4, \"big\": 1e20, \"huge\": 1e16, " \
		"\"e22\": 1e22, \"e_25\": -1.5e-25, \"sub\": 5e-324, \"pi\": 3.141592653589793, \"s\": \"5.20\"," \
	" \"notnum\": \"5 mg\", \"bigint\": 12345678901234567," \
	" \"d\": \"2020-01-02\", \"dt\": \"2020-01-02T03:04:05+05:30\", \"dtfrac\": \"2020-01-02T23:59:59.999Z\"," \
	" \"ym\": \"2020-03\", \"y\": \"2020\", \"feb30\": \"2020-02-30\", \"per\": {\"start\": " \
		"\"2021-01-01T10:00:00-03:00\"}," \
	" \"q\": {\"value\": 5, \"code\": \"kg\", \"unit\": \"kilogram\"}, \"qu\": {\"value\": 5, \"unit\": " \
		"\"kg\"}, \"qn\": {\"value\": 5}," \
	" \"b\": true, \"arr\": [1, 2], \"obj\": {\"a\": 1}, \"nul\": null}")

static void test_transforms(void)
{
	static const struct {
		const char *spec, *want; /* want NULL: no value */
	} cases[] = {
		{ "{\"value\": \"x.int\", \"transform\": \"number\"}", "57" },
		{ "{\"value\": \"x.real\", \"transform\": \"number\"}", "1.1" },
		{ "{\"value\": \"x.real0\", \"transform\": \"number\"}", "57" },
		{ "{\"value\": \"x.long\", \"transform\": \"number\"}", "1.1" },
		{ "{\"value\": \"x.sum\", \"transform\": \"number\"}", "0.30000000000000004" },
		{ "{\"value\": \"x.tiny\", \"transform\": \"number\"}", "0.000123" },
		{ "{\"value\": \"x.big\", \"transform\": \"number\"}", "100000000000000000000" },
		{ "{\"value\": \"x.bigint\", \"transform\": \"number\"}", "12345678901234567" },
		{ "{\"value\": \"x.e22\", \"transform\": \"number\"}", "1e22" },
		{ "{\"value\": \"x.e_25\", \"transform\": \"number\"}", "-1.5e-25" },
		{ "{\"value\": \"x.sub\", \"transform\": \"number\"}", "5e-324" },
		{ "{\"value\": \"x.pi\", \"transform\": \"number\"}", "3.141592653589793" },
		{ "{\"value\": \"x.s\", \"transform\": \"number\"}", "5.2" },
		{ "{\"value\": \"x.notnum\", \"transform\": \"number\"}", "ERR:the value is not a number" },
		{ "{\"value\": \"x.d\", \"transform\": \"number\"}", "ERR:the value is not a number" },
		{ "{\"value\": \"x.real\", \"transform\": \"round\"}", "1" },
		{ "{\"value\": \"x.half\", \"transform\": \"round\"}", "3" },
		{ "{\"value\": \"x.neg\", \"transform\": \"round\"}", "-2" },
		{ "{\"value\": \"x.negs\", \"transform\": \"round\"}", "-2" },
		{ "{\"value\": \"x.int\", \"transform\": \"round\"}", "57" },
		{ "{\"value\": \"x.s\", \"transform\": \"round\"}", "5" },
		{ "{\"value\": \"x.big\", \"transform\": \"round\"}", "ERR:the number is too large to round" },
		{ "{\"value\": \"x.huge\", \"transform\": \"round\"}", "ERR:the number is too large to round" },
		{ "{\"value\": \"x.d\", \"transform\": \"date\"}", "2020-01-02" },
		{ "{\"value\": \"x.dt\", \"transform\": \"date\"}", "2020-01-02" },
		{ "{\"value\": \"x.dt\", \"transform\": \"datetime\"}", "2020-01-02 03:04" },
		{ "{\"value\": \"x.dt\", \"transform\": \"datetime_seconds\"}", "2020-01-02 03:04:05" },
		{ "{\"value\": \"x.dtfrac\", \"transform\": \"datetime_seconds\"}", "2020-01-02 23:59:59" },
		{ "{\"value\": \"x.per\", \"transform\": \"datetime\"}", "2021-01-01 10:00" },
		/* Too coarse for the field: passed on as written, for REDCap's message. */
		{ "{\"value\": \"x.ym\", \"transform\": \"date\"}", "2020-03" },
		{ "{\"value\": \"x.y\", \"transform\": \"date\"}", "2020" },
		{ "{\"value\": \"x.d\", \"transform\": \"datetime\"}", "2020-01-02" },
		{ "{\"value\": \"x.d\", \"transform\": \"datetime_seconds\"}", "2020-01-02" },
		{ "{\"value\": \"x.feb30\", \"transform\": \"date\"}", "ERR:the value is not a date or date-time" },
		{ "{\"value\": \"x.int\", \"transform\": \"date\"}", "ERR:the value is not a date or date-time" },
		{ "{\"value\": \"x.q.value\", \"unit\": \"kg\"}", "5" },
		{ "{\"value\": \"x.q.value\", \"unit\": \"kilogram\"}", "ERR:the value's unit is not \"kilogram\"" },
		{ "{\"value\": \"x.qu.value\", \"unit\": \"kg\"}", "5" },
		{ "{\"value\": \"x.qn.value\", \"unit\": \"kg\"}", "ERR:the value has no unit; required: \"kg\"" },
		{ "{\"value\": \"x.b\"}", "true" },
		{ "{\"value\": \"x.real\"}", "1.1" },
		{ "{\"value\": \"x.arr\"}", "ERR:the path gives 2 values (one is needed)" },
		{ "{\"value\": \"x.obj\"}", "ERR:the value is not a primitive (it is an object or an array)" },
		{ "{\"value\": \"x.nul\"}", NULL },
		{ "{\"value\": \"x.missing\"}", NULL },
		{ "{\"value\": \"x.missing\", \"map\": {\"a\": \"1\"}}", NULL },
		{ "{\"value\": \"x.missing\", \"map\": {\"a\": \"1\"}, \"default\": \"9\"}", "9" },
		{ "{\"value\": \"x.b\", \"map\": {\"true\": \"1\", \"false\": \"0\"}}", "1" },
		{ "{\"value\": \"x.int\", \"map\": {\"57\": \"yes\"}}", "yes" },
		{ "{\"value\": \"x.s\", \"map\": {\"5.2\": \"1\"}}", "ERR:the code is not in the map and the map has "
			"no default" },
		{ "{\"value\": \"x.s\", \"map\": {\"5.2\": \"1\"}, \"default\": \"0\"}", "0" },
		{ "{\"value\": \"x.obj\", \"map\": {\"5.2\": \"1\"}, \"default\": \"0\"}",
		  "ERR:the value is not a code (a string, number or boolean)" },
		{ "{\"value\": [\"x.missing\", \"x.nothing\", \"x.int\", \"x.real\"]}", "57" },
		{ "{\"value\": [\"x.missing\", \"x.nothing\"]}", NULL },
	};
	for (size_t i = 0; i < N(cases); i++) {
		char text[2048];
		snprintf(text, sizeof(text), HEAD RULES "  {\"resource\": \"Patient\", \"fields\": {\"f\": %s}}" TAIL,
			 cases[i].spec);
		mapping *m = load(text);
		if (!m) {
			fprintf(stderr, "  case %zu did not load\n", i);
			harness_failures++;
			continue;
		}
		rset s = { 0 };
		mapping_result r;
		rs_add(&s, TPAT);
		CHECK_INT(curate(m, &s, &r), 0);
		const char *got = val(&r, NULL, NULL, "f");
		if ((got == NULL) != (cases[i].want == NULL) || (got && strcmp(got, cases[i].want) != 0)) {
			fprintf(stderr, "  case %zu %s: got %s want %s\n", i, cases[i].spec, got ? got : "(none)",
				cases[i].want ? cases[i].want : "(none)");
			harness_failures++;
		}
		/* No value: no row at all (a blank is never sent). */
		if (!cases[i].want)
			CHECK_INT(r.n_rows, 0);
		mapping_result_deinit(&r);
		rs_free(&s);
		mapping_free(m);
	}
}

/* ---- windows and selections ------------------------------------------------------------------ */

#define ENC(id, start) "{\"resourceType\": \"Encounter\", \"id\": \"" id "\", \"period\": {\"start\": \"" start "\"}}"

/* One rule on Observation code 8867-4 selecting by sel within win ("from", "to"). */
static mapping *sel_mapping(const char *sel, const char *from, const char *to)
{
	char text[2048];
	snprintf(text, sizeof(text),
		 HEAD ANCH RULES "  {\"resource\": \"Observation\", \"filter\": {\"code\": "
			"[\"http://loinc.org|8867-4\"]},"
		 " \"time\": \"effective\", \"window\": {\"anchor\": \"enc\", \"from\": \"%s\", \"to\": \"%s\"},"
		 " \"select\": \"%s\", \"fields\": {\"hr\": {\"value\": \"valueQuantity.value\", \"unit\": \"/min\","
		 " \"transform\": \"round\"}}}" TAIL,
		 from, to, sel);
	return load(text);
}

/*
 * The hr value m selects among the given observations, and the resource it comes from. o holds (id, time,
 * value) triples: a value in /min (obs()), or with quantity a valueQuantity JSON (NULL: a valueString
 * instead), and then the text also says how many rows the curation made.
 */
static const char *select_obs(const mapping *m, const char *const *o, size_t n, bool quantity)
{
	static char out[512];
	rset s = { 0 };
	mapping_result r;

	rs_add(&s, PATIENT(""));
	rs_add(&s, ENC("e1", "2020-01-01T00:00:00Z"));
	for (size_t i = 0; i + 3 <= n; i += 3) {
		if (!quantity) {
			obs(&s, o[i], "8867-4", o[i + 1], o[i + 2]);
			continue;
		}
		char buf[1024];
		snprintf(buf, sizeof(buf),
			 "{\"resourceType\": \"Observation\", \"id\": \"%s\", \"status\": \"final\", \"code\": "
			 "{\"coding\": [{\"system\": \"http://loinc.org\", \"code\": \"8867-4\"}]}, "
			 "\"effectiveDateTime\": \"%s\", %s%s}",
			 o[i], o[i + 1], o[i + 2] ? "\"valueQuantity\": " : "\"valueString\": \"not done\"",
			 o[i + 2] ? o[i + 2] : "");
		rs_add(&s, buf);
	}
	if (curate(m, &s, &r) != 0) {
		rs_free(&s);
		return "CURATE FAILED";
	}
	const char *v = val(&r, NULL, NULL, "hr");
	const mapping_value *mv = find_value(&r, "hr");
	int len = snprintf(out, sizeof(out), "%s%s%s", v ? v : "(none)", mv && mv->res_id ? " from " : "",
			   mv && mv->res_id ? mv->res_id : "");
	if (quantity && len >= 0 && (size_t)len < sizeof(out))
		snprintf(out + len, sizeof(out) - (size_t)len, ", %zu rows", r.n_rows);
	mapping_result_deinit(&r);
	rs_free(&s);
	return out;
}

/* The hr value selected from the given observations (id, time, value in /min triples). */
static const char *select_hr(const mapping *m, const char *const *o, size_t n)
{
	return select_obs(m, o, n, false);
}

/* Like select_hr, with (id, time, valueQuantity JSON or NULL for none: a valueString) triples; also says how
 * many rows the curation made. */
static const char *select_q(const mapping *m, const char *const *o, size_t n)
{
	return select_obs(m, o, n, true);
}

static void test_windows(void)
{
	mapping *near = sel_mapping("NEAR", "-1d", "+1d");
	mapping *last = sel_mapping("LAST", "-1d", "+1d");
	mapping *first = sel_mapping("FIRST", "-1d", "+1d");
	REQUIRE(near && last && first);

	/* Exactly 24 h before and after are in; one second more is out. Offsets are honoured. */
	const char *edge[] = { "a", "2019-12-31T00:00:00Z", "1",        "b", "2020-01-02T01:00:00+01:00", "2",
			       "c", "2020-01-02T00:00:01Z", "3",        "d", "2019-12-30T23:59:59Z",      "4" };
	CHECK_STR(select_hr(first, edge, N(edge)), "1 from a");
	CHECK_STR(select_hr(last, edge, N(edge)), "2 from b");
	const char *out[] = { "c", "2020-01-02T00:00:01Z", "3", "d", "2019-12-30T23:59:59Z", "4" };
	CHECK_STR(select_hr(near, out, N(out)), "(none)");
	CHECK_STR(select_hr(first, out, N(out)), "(none)");
	/* The same instant written in another offset: 2020-01-01T19:00:00-05:00 is +24 h. */
	const char *ny[] = { "e", "2020-01-01T19:00:00-05:00", "5" };
	CHECK_STR(select_hr(last, ny, N(ny)), "5 from e");
	const char *ny2[] = { "e", "2020-01-01T19:00:01-05:00", "5" };
	CHECK_STR(select_hr(last, ny2, N(ny2)), "(none)");
	/* Fractions of a second count. */
	const char *frac[] = { "f", "2020-01-02T00:00:00.000001Z", "6" };
	CHECK_STR(select_hr(last, frac, N(frac)), "(none)");

	/* NEAR: smallest distance; a tie goes to the earlier; an equal time to the smaller id. */
	const char *tie[] = { "late", "2020-01-01T01:00:00Z", "70", "early", "2019-12-31T23:00:00Z", "60",
			      "far", "2020-01-01T05:00:00Z", "90" };
	CHECK_STR(select_hr(near, tie, N(tie)), "60 from early");
	const char *same[] = { "z", "2020-01-01T01:00:00Z", "70", "y", "2020-01-01T02:00:00+01:00", "61" };
	CHECK_STR(select_hr(near, same, N(same)), "61 from y");
	const char *closest[] = { "a", "2020-01-01T00:30:00Z", "70", "b", "2019-12-31T23:31:00Z", "61" };
	CHECK_STR(select_hr(near, closest, N(closest)), "61 from b");

	/* Units other than d: 0..+12h and -30m..0. */
	mapping *h12 = sel_mapping("LAST", "0", "+12h");
	mapping *m30 = sel_mapping("FIRST", "-30m", "0");
	REQUIRE(h12 && m30);
	const char *hm[] = { "a", "2019-12-31T23:30:00Z", "1", "b", "2019-12-31T23:29:59Z", "2",
			     "c", "2020-01-01T12:00:00Z", "3", "d", "2020-01-01T12:00:01Z", "4" };
	CHECK_STR(select_hr(h12, hm, N(hm)), "3 from c");
	CHECK_STR(select_hr(m30, hm, N(hm)), "1 from a");

	/* The unit check of the chosen value. */
	rset s = { 0 };
	mapping_result r;
	rs_add(&s, PATIENT(""));
	rs_add(&s, ENC("e1", "2020-01-01T00:00:00Z"));
	rs_add(&s, "{\"resourceType\": \"Observation\", \"id\": \"o\", \"code\": {\"coding\": [{\"system\": "
		"\"http://loinc.org\","
		   " \"code\": \"8867-4\"}]}, \"effectiveDateTime\": \"2020-01-01T00:00:00Z\", \"valueQuantity\": "
			"{\"value\": 1,"
		   " \"code\": \"/s\"}}");
	REQUIRE(curate(near, &s, &r) == 0);
	CHECK_STR(val(&r, NULL, NULL, "hr"), "ERR:no matching resource gives a usable value (the value's unit is not "
		"\"/min\")");
	mapping_result_deinit(&r);
	rs_free(&s);

	mapping_free(near);
	mapping_free(last);
	mapping_free(first);
	mapping_free(h12);
	mapping_free(m30);
}

static void test_min_max(void)
{
	mapping *max = sel_mapping("MAX", "0", "+2d");
	mapping *min = sel_mapping("MIN", "-1d", "+1d");
	REQUIRE(max && min);

	/* d (-1 s) and e (+48 h + 1 s) are outside 0..+2d; c at exactly +48 h is in. */
	const char *o[] = { "a", "2020-01-01T00:00:00Z", "1.5",  "b", "2020-01-02T23:00:00Z", "2.25",
			    "c", "2020-01-03T00:00:00Z", "2.5",  "d", "2019-12-31T23:59:59Z", "9",
			    "e", "2020-01-03T00:00:01Z", "99" };
	CHECK_STR(select_hr(max, o, N(o)), "3 from c");
	const char *o2[] = { "a", "2020-01-01T00:00:00Z", "1.5", "d", "2019-12-31T23:59:59Z", "9", "e",
			     "2020-01-03T00:00:01Z", "99" };
	CHECK_STR(select_hr(max, o2, N(o2)), "2 from a");
	/* Ties: the earlier time, then the smaller id. */
	const char *tie[] = { "x", "2020-01-01T05:00:00Z", "7", "w", "2020-01-01T06:00:00Z", "7", "v",
			      "2020-01-01T07:00:00Z", "3" };
	CHECK_STR(select_hr(max, tie, N(tie)), "7 from x");
	CHECK_STR(select_hr(min, tie, N(tie)), "3 from v");
	const char *tie2[] = { "x", "2020-01-01T05:00:00Z", "7", "w", "2020-01-01T05:00:00Z", "7" };
	CHECK_STR(select_hr(max, tie2, N(tie2)), "7 from w");
	mapping_free(min);

	/* Without a window, a candidate without a time still counts; on a tie, one with a time wins. */
	mapping *nowin = load(HEAD RULES "  {\"resource\": \"Observation\", \"time\": \"effective\", \"select\": "
		"\"MAX\","
			      " \"fields\": {\"hr\": {\"value\": \"valueQuantity.value\"}}}" TAIL);
	REQUIRE(nowin);
	rset t = { 0 };
	mapping_result rt;
	rs_add(&t, PATIENT(""));
	rs_add(&t, "{\"resourceType\": \"Observation\", \"id\": \"a\", \"valueQuantity\": {\"value\": 7}}");
	obs(&t, "b", "8867-4", "2020-01-01T00:00:00Z", "7");
	REQUIRE(curate(nowin, &t, &rt) == 0);
	CHECK_STR(find_value(&rt, "hr")->res_id, "b");
	mapping_result_deinit(&rt);
	rs_add(&t, "{\"resourceType\": \"Observation\", \"id\": \"c\", \"valueQuantity\": {\"value\": 8}}");
	REQUIRE(curate(nowin, &t, &rt) == 0);
	CHECK_STR(find_value(&rt, "hr")->res_id, "c");
	mapping_result_deinit(&rt);
	rs_free(&t);
	mapping_free(nowin);

	/* Candidates without a usable number are skipped: one without a value at the path (valueString) is
	 * passed over as if it did not match; when only refused ones (a unit other than /min) are left, the
	 * field gets an error. */
	const char *none[] = { "s", "2020-01-01T01:00:00Z", NULL };
	CHECK_STR(select_q(max, none, N(none)), "(none), 0 rows");
	const char *refused[] = { "s", "2020-01-01T01:00:00Z", NULL,
				  "u", "2020-01-01T03:00:00Z", "{\"value\": 99, \"code\": \"/s\"}" };
	CHECK_STR(select_q(max, refused, N(refused)),
		  "ERR:no matching resource gives a number in the unit required, 1 rows");
	const char *good[] = { "s", "2020-01-01T01:00:00Z", NULL,
			       "u", "2020-01-01T03:00:00Z", "{\"value\": 99, \"code\": \"/s\"}",
			       "n", "2020-01-01T02:00:00Z", "{\"value\": 40.4, \"code\": \"/min\"}" };
	CHECK_STR(select_q(max, good, N(good)), "40 from n, 1 rows");
	mapping_free(max);
}

/* ---- anchors ------------------------------------------------------------------------------------ */

/* NEAR, FIRST and LAST choose among the candidates that give a usable value, as MIN and MAX do: one
 * without a value, or with a unit the field refuses, never hides a good one. */
static void test_select_usable(void)
{
	mapping *near = sel_mapping("NEAR", "-1d", "+1d");
	mapping *first = sel_mapping("FIRST", "-1d", "+1d");
	mapping *last = sel_mapping("LAST", "-1d", "+1d");
	REQUIRE(near && first && last);
#define Q(v, unit) "{\"value\": " v ", \"code\": \"" unit "\"}"

	/* The nearest, the first and the last have no value; the good one is 2 h from the anchor. */
	const char *empty[] = { "at", "2020-01-01T00:00:00Z", NULL,
				"early", "2019-12-31T01:00:00Z", NULL,
				"late", "2020-01-01T23:00:00Z", NULL,
				"good", "2020-01-01T02:00:00Z", Q("80", "/min") };
	CHECK_STR(select_q(near, empty, N(empty)), "80 from good, 1 rows");
	CHECK_STR(select_q(first, empty, N(empty)), "80 from good, 1 rows");
	CHECK_STR(select_q(last, empty, N(empty)), "80 from good, 1 rows");

	/* The same with values in another unit: skipped, and no error on the row. */
	const char *unit[] = { "at", "2020-01-01T00:00:00Z", Q("1.2", "/s"),
			       "early", "2019-12-31T01:00:00Z", Q("7", "/s"),
			       "late", "2020-01-01T23:00:00Z", "{\"value\": 9}",
			       "good", "2020-01-01T02:00:00Z", Q("80.5", "/min") };
	CHECK_STR(select_q(near, unit, N(unit)), "81 from good, 1 rows");
	CHECK_STR(select_q(first, unit, N(unit)), "81 from good, 1 rows");
	CHECK_STR(select_q(last, unit, N(unit)), "81 from good, 1 rows");

	/* Among usable ones the usual order still holds (nearest, then the earlier). */
	const char *two[] = { "at", "2020-01-01T00:00:00Z", Q("1", "/s"), "b", "2020-01-01T03:00:00Z", Q("70", "/min"),
			      "a", "2019-12-31T21:00:00Z", Q("60", "/min") };
	CHECK_STR(select_q(near, two, N(two)), "60 from a, 1 rows");
	CHECK_STR(select_q(first, two, N(two)), "60 from a, 1 rows");
	CHECK_STR(select_q(last, two, N(two)), "70 from b, 1 rows");

	/* Only candidates without a value: nothing (as when nothing matches), no error. */
	const char *none[] = { "at", "2020-01-01T00:00:00Z", NULL,
			       "x", "2020-01-01T05:00:00Z", "{\"unit\": \"/min\"}" };
	CHECK_STR(select_q(near, none, N(none)), "(none), 0 rows");
	CHECK_STR(select_q(last, none, N(none)), "(none), 0 rows");

	/* Only refused ones: the error says why the one that would have been chosen was refused. */
	const char *bad[] = { "far", "2020-01-01T05:00:00Z", Q("70", "/s"),
			      "at", "2020-01-01T00:30:00Z", "{\"value\": 70}",
			      "none", "2020-01-01T00:00:00Z", NULL };
	CHECK_STR(select_q(near, bad, N(bad)), "ERR:no matching resource gives a usable value (the value has no unit; "
		  "required: \"/min\"), 1 rows");
	CHECK_STR(select_q(last, bad, N(bad)), "ERR:no matching resource gives a usable value (the value's unit is not "
		  "\"/min\"), 1 rows");
	const char *many[] = { "at", "2020-01-01T00:00:00Z", "[{\"value\": 1}, {\"value\": 2}]" };
	CHECK_STR(select_q(first, many, N(many)), "ERR:no matching resource gives a usable value (the path gives 2 "
		  "values (one is needed)), 1 rows");
#undef Q
	mapping_free(near);
	mapping_free(first);
	mapping_free(last);

	/* A rule sharing the non-repeating row with the Patient's fields: the nearest heart rate in the wrong
	 * unit neither blanks hr nor puts an error on the row (which would hold dob back with it). */
	mapping *m = load(HEAD ANCH RULES
		"  {\"resource\": \"Patient\", \"fields\": {\"dob\": {\"value\": \"birthDate\", \"transform\": "
		"\"date\"}}},\n"
		"  {\"resource\": \"Observation\", \"filter\": {\"code\": [\"http://loinc.org|8867-4\"]},"
		" \"time\": \"effective\", \"window\": {\"anchor\": \"enc\", \"from\": \"-1d\", \"to\": \"+1d\"},"
		" \"select\": \"NEAR\", \"fields\": {\"hr\": {\"value\": \"valueQuantity.value\", \"unit\": \"/min\","
		" \"transform\": \"round\"}, \"hr_time\": {\"value\": \"effective\", \"transform\": "
		"\"datetime\"}}}" TAIL);
	REQUIRE(m);
	rset s = { 0 };
	mapping_result r;
	rs_add(&s, PATIENT(", \"birthDate\": \"1950-02-03\""));
	rs_add(&s, ENC("e1", "2020-01-01T00:00:00Z"));
	rs_add(&s, "{\"resourceType\": \"Observation\", \"id\": \"o1\", \"code\": {\"coding\": [{\"system\": "
		"\"http://loinc.org\", \"code\": \"8867-4\"}]}, \"effectiveDateTime\": \"2020-01-01T00:00:00Z\", "
		"\"valueQuantity\": {\"value\": 1.2, \"code\": \"/s\"}}");
	obs(&s, "o2", "8867-4", "2020-01-01T04:00:00Z", "72");
	REQUIRE(curate(m, &s, &r) == 0);
	CHECK_INT(r.n_rows, 1);
	for (size_t i = 0; i < r.n_rows; i++)
		for (size_t k = 0; k < r.rows[i].n; k++)
			CHECK(r.rows[i].v[k].error == NULL);
	CHECK_STR(val(&r, NULL, NULL, "dob"), "1950-02-03");
	CHECK_STR(val(&r, NULL, NULL, "hr"), "72");
	CHECK_STR(val(&r, NULL, NULL, "hr_time"), "2020-01-01 04:00");
	CHECK_STR(find_value(&r, "hr")->res_id, "o2");
	mapping_result_deinit(&r);
	rs_free(&s);
	mapping_free(m);
}

#define ANCHOR_MAPPING \
	HEAD " \"anchors\": {\"enc\": {\"resource\": \"Encounter\", \"time\": \"period.start\", \"select\": " \
		"\"FIRST\"},\n" \
	"   \"lastenc\": {\"resource\": \"Encounter\", \"time\": \"period\", \"select\": \"LAST\"},\n" \
	"   \"adm\": {\"field\": \"admit_dt\"}},\n" RULES \
	"  {\"resource\": \"Patient\", \"fields\": {\"g\": {\"value\": \"gender\"}}},\n" \
	"  {\"anchor\": \"enc\", \"fields\": {\"enroll_date\": {\"transform\": \"date\"}, \"enroll_dt\": " \
		"{\"transform\": \"datetime\"},\n" \
	"     \"enroll_raw\": {}, \"enc_id\": {\"value\": \"id\"}}},\n" \
	"  {\"anchor\": \"lastenc\", \"fields\": {\"last_date\": {\"transform\": \"date\"}}},\n" \
	"  {\"anchor\": \"adm\", \"fields\": {\"adm_copy\": {}, \"adm_date\": {\"transform\": \"date\"}}},\n" \
	"  {\"resource\": \"Observation\", \"time\": \"effective\", \"window\": {\"anchor\": \"adm\", \"from\": " \
		"\"0\", \"to\": \"0\"},\n" \
	"   \"select\": \"NEAR\", \"fields\": {\"hr_adm\": {\"value\": \"valueQuantity.value\"}}},\n" \
	"  {\"resource\": \"Observation\", \"time\": \"effective\", \"window\": {\"anchor\": \"enc\", \"from\": " \
		"\"0\", \"to\": \"0\"},\n" \
	"   \"select\": \"NEAR\", \"fields\": {\"hr_enc\": {\"value\": \"valueQuantity.value\"}}}" TAIL

static void test_fhir_anchors(void)
{
	mapping *m = load(ANCHOR_MAPPING);
	REQUIRE(m);
	rset s = { 0 };
	mapping_result r;

	/* No Encounter yet: anchor rules and their windows make nothing; the rest goes on. */
	rs_add(&s, PATIENT(", \"gender\": \"male\""));
	obs(&s, "o1", "8867-4", "2020-01-01T20:00:00Z", "50");
	REQUIRE(curate(m, &s, &r) == 0);
	CHECK_STR(val(&r, NULL, NULL, "g"), "male");
	CHECK(val(&r, NULL, NULL, "enroll_date") == NULL);
	CHECK(val(&r, NULL, NULL, "hr_enc") == NULL);
	CHECK(val(&r, NULL, NULL, "hr_adm") == NULL);
	CHECK_INT(r.n_rows, 1);
	CHECK_INT(r.rows[0].n, 1);
	mapping_result_deinit(&r);

	/* FIRST compares instants: A (01:00+05:00 = 20:00Z) is before B (21:00Z) though its text sorts
	 * after; the fields take A's clock time as written. LAST is C, in its own offset. */
	rs_add(&s, ENC("B", "2020-01-01T21:00:00Z"));
	rs_add(&s, ENC("A", "2020-01-02T01:00:00+05:00"));
	rs_add(&s, "{\"resourceType\": \"Encounter\", \"id\": \"C\", \"period\": {\"start\": "
		"\"2020-01-01T23:30:00-05:00\","
		   " \"end\": \"2020-01-03T00:00:00Z\"}}");
	REQUIRE(curate(m, &s, &r) == 0);
	CHECK_STR(val(&r, NULL, NULL, "enroll_date"), "2020-01-02");
	CHECK_STR(val(&r, NULL, NULL, "enroll_dt"), "2020-01-02 01:00");
	CHECK_STR(val(&r, NULL, NULL, "enroll_raw"), "2020-01-02T01:00:00+05:00");
	CHECK_STR(val(&r, NULL, NULL, "enc_id"), "A");
	CHECK_STR(val(&r, NULL, NULL, "last_date"), "2020-01-01");
	CHECK_STR(val(&r, NULL, NULL, "hr_enc"), "50");
	const mapping_value *v = find_value(&r, "enroll_date");
	REQUIRE(v);
	CHECK_STR(v->res_type, "Encounter");
	CHECK_STR(v->res_id, "A");
	CHECK_STR(v->res_version, "1");
	CHECK_STR(v->rule, "rules[1]");
	v = find_value(&r, "hr_enc");
	REQUIRE(v);
	CHECK_STR(v->res_id, "o1");
	CHECK_STR(v->rule, "rules[5]");
	/* Non-repeating rows merge into one. */
	CHECK_INT(r.n_rows, 1);
	CHECK(r.rows[0].instrument == NULL && r.rows[0].event == NULL && r.rows[0].src_id == NULL);
	mapping_result_deinit(&r);

	/* A tie between anchors at the same instant goes to the smaller id. */
	rs_add(&s, ENC("0tie", "2020-01-01T15:00:00-05:00"));
	REQUIRE(curate(m, &s, &r) == 0);
	CHECK_STR(val(&r, NULL, NULL, "enc_id"), "0tie");
	CHECK_STR(val(&r, NULL, NULL, "enroll_date"), "2020-01-01");
	mapping_result_deinit(&r);
	rs_free(&s);
	mapping_free(m);
}

/* Dates without a time and REDCap anchors are read in the site zone (here UTC+2). */
static void test_site_zone(void)
{
	int plus2 = 120;
	mapping_env env = { .mrn_system = MRN_SYS, .local_to_utc = fixed_zone, .local_ud = &plus2 };
	char err[1024];
	int rc;
	mapping *zoned = load_env(ANCHOR_MAPPING, &env, &rc, err, sizeof(err));
	mapping *utc = load(ANCHOR_MAPPING);
	REQUIRE(zoned && utc);

	/* The anchor is 2020-01-01T22:00Z; a date-only Observation "2020-01-02" is 00:00 at the site =
	 * 22:00Z: inside a 0..0 window there, 2 h away in UTC. */
	rset s = { 0 };
	mapping_result r;
	rs_add(&s, PATIENT(""));
	rs_add(&s, ENC("e", "2020-01-01T22:00:00Z"));
	obs(&s, "d", "8867-4", "2020-01-02", "77");
	obs(&s, "a0", "8867-4", "2020-01-02T00:00:00.000001", "99"); /* 1 us after: outside 0..0 */
	REQUIRE(curate(zoned, &s, &r) == 0);
	CHECK_STR(val(&r, NULL, NULL, "hr_enc"), "77");
	mapping_result_deinit(&r);
	REQUIRE(curate(utc, &s, &r) == 0);
	CHECK(val(&r, NULL, NULL, "hr_enc") == NULL);
	mapping_result_deinit(&r);

	/* REDCap anchors: a date is 00:00 at the site, a datetime the site's clock. A time without
	 * an offset is the site's too, with its fraction of a second (y is 0.5 s after x). */
	obs(&s, "x", "8867-4", "2020-01-01T23:30:00Z", "88");
	obs(&s, "y", "8867-4", "2020-01-02T01:30:00.5", "89");
	static const struct {
		const char *value;
		const char *hr, *copy, *date;
	} cases[] = {
		{ "2020-01-02", "77", "2020-01-02", "2020-01-02" },        /* 22:00Z: d (its date is 22:00Z too) */
		{ "2020-01-02 01:30", "88", "2020-01-02 01:30", "2020-01-02" },
		{ "2020-01-02 01:30:00", "88", "2020-01-02 01:30:00", "2020-01-02" },
		{ "2020-01-02T01:30", "88", "2020-01-02T01:30", "2020-01-02" },
		{ "2020-01-02 01:31", NULL, "2020-01-02 01:31", "2020-01-02" },
		{ "", NULL, NULL, NULL },
		{ NULL, NULL, NULL, NULL },
		/* unreadable: held back with a message, never guessed */
		{ "02/01/2020", "ERR:the window's anchor has a REDCap value that is not a date or datetime",
		  "ERR:the anchor's REDCap value is not a date or datetime", "ERR:the anchor's REDCap value is not a "
			"date or datetime" },
		{ "2020-01-02 01:30+01:00", "ERR:the window's anchor has a REDCap value that is not a date or datetime",
		  "ERR:the anchor's REDCap value is not a date or datetime", "ERR:the anchor's REDCap value is not a "
			"date or datetime" },
		{ "2099-01-01", "ERR:the window's anchor has a REDCap value that is not a date or datetime",
		  "ERR:the anchor's REDCap value is not a date or datetime", "ERR:the anchor's REDCap value is not a "
			"date or datetime" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		const char *values[1] = { cases[i].value };
		mapping_input in = { .res = s.r, .n = s.n, .redcap_anchor_values = i == 6 ? NULL : values };
		REQUIRE(mapping_curate(zoned, &in, &r) == 0);
		const char *hr = val(&r, NULL, NULL, "hr_adm");
		if ((hr == NULL) != (cases[i].hr == NULL) || (hr && strcmp(hr, cases[i].hr) != 0)) {
			fprintf(stderr, "  %s: hr_adm %s, want %s\n", cases[i].value ? cases[i].value : "NULL",
				hr ? hr : "-", cases[i].hr ? cases[i].hr : "-");
			harness_failures++;
		}
		const char *copy = val(&r, NULL, NULL, "adm_copy");
		CHECK((copy == NULL) == (cases[i].copy == NULL));
		if (copy && cases[i].copy)
			CHECK_STR(copy, cases[i].copy);
		const char *date = val(&r, NULL, NULL, "adm_date");
		CHECK((date == NULL) == (cases[i].date == NULL));
		if (date && cases[i].date)
			CHECK_STR(date, cases[i].date);
		const mapping_value *v = find_value(&r, "adm_copy");
		if (v)
			CHECK(v->res_type == NULL && v->res_id == NULL);
		mapping_result_deinit(&r);
	}
	rs_free(&s);
	mapping_free(zoned);
	mapping_free(utc);
}

/* ---- patients, MRNs, record names ------------------------------------------------------------------- */

static void test_mrn(void)
{
	mapping *m = load(HEAD RULES "  {\"resource\": \"Patient\", \"fields\": {\"g\": {\"value\": \"gender\"}}}"
			  TAIL);
	REQUIRE(m);
	rset s = { 0 };
	mapping_result r;

	obs(&s, "o", "8867-4", "2020-01-01", "1");
	REQUIRE(curate(m, &s, &r) == 0);
	CHECK_INT(r.status, MAPPING_NO_PATIENT);
	CHECK(r.record == NULL && r.mrn == NULL && r.n_rows == 0);
	CHECK_STR(r.reason, "no Patient resource among the patient's resources");
	mapping_result_deinit(&r);

	rs_add(&s, "{\"resourceType\": \"Patient\", \"id\": \"p\", \"gender\": \"female\", \"identifier\": "
		"[{\"system\": \"urn:other\","
		   " \"value\": \"X\"}, {\"system\": \"urn:mrn\"}]}");
	REQUIRE(curate(m, &s, &r) == 0);
	CHECK_INT(r.status, MAPPING_NO_MRN);
	CHECK_STR(r.patient_id, "p");
	CHECK_STR(r.reason, "the Patient has no identifier with the MRN system");
	CHECK(r.record == NULL && r.n_rows == 0);
	mapping_result_deinit(&r);
	rs_free(&s);

	rs_add(&s, "{\"resourceType\": \"Patient\", \"id\": \"p\", \"identifier\": [{\"system\": \"urn:mrn\", "
		"\"value\": \"A\"},"
		   " {\"system\": \"urn:mrn\", \"value\": \"B\"}]}");
	REQUIRE(curate(m, &s, &r) == 0);
	CHECK_INT(r.status, MAPPING_MRN_CONFLICT);
	CHECK_STR(r.reason, "the Patient has two identifiers with the MRN system and different values");
	CHECK(r.record == NULL && r.mrn == NULL);
	mapping_result_deinit(&r);
	rs_free(&s);

	/* The same MRN twice is one MRN. */
	rs_add(&s, "{\"resourceType\": \"Patient\", \"id\": \"p\", \"gender\": \"other\", \"identifier\": "
		"[{\"system\": \"urn:mrn\","
		   " \"value\": \"A\"}, {\"system\": \"urn:mrn\", \"value\": \"A\", \"use\": \"old\"}]}");
	REQUIRE(curate(m, &s, &r) == 0);
	CHECK_INT(r.status, MAPPING_OK);
	CHECK_STR(r.mrn, "A");
	CHECK_STR(r.record, "A");
	CHECK_STR(val(&r, NULL, NULL, "g"), "other");
	CHECK(r.reason == NULL);
	mapping_result_deinit(&r);

	/* Two Patients among one patient's resources is the caller's mistake. */
	rs_add(&s, PATIENT(""));
	CHECK_INT(curate(m, &s, &r), -EINVAL);
	CHECK(r.rows == NULL && r.record == NULL);
	rs_free(&s);

	char *mrn = (char *)1;
	json_t *p = json_loads(PATIENT(""), 0, NULL);
	CHECK_INT(mapping_patient_mrn(p, MRN_SYS, &mrn), MAPPING_OK);
	CHECK_STR(mrn, "M1");
	free(mrn);
	CHECK_INT(mapping_patient_mrn(p, "urn:x", &mrn), MAPPING_NO_MRN);
	CHECK(mrn == NULL);
	CHECK_INT(mapping_patient_mrn(p, NULL, &mrn), MAPPING_NO_MRN);
	json_decref(p);
	mapping_free(m);
}

static mapping *hmac_mapping(const char *extra)
{
	char text[1024];
	/* The key: 41 bytes, its trailing newline is not part of it. */
	free(put_file("study.key", "test-key-0123456789abcdef0123456789abcdef\n", 42, 0600));
	snprintf(text, sizeof(text),
		 "{\"format\": \"fhir-redcap-bridge/mapping/1\", \"record_id\": {\"from\": \"hmac\", \"key_file\": "
			"\"study.key\"%s},\n" RULES
		 "  {\"resource\": \"Patient\", \"fields\": {\"g\": {\"value\": \"gender\"}}}" TAIL,
		 extra);
	return load(text);
}

static void test_hmac(void)
{
	/*
	 * Expected values computed by hand, outside this code:
	 *   printf %s MRN00000001 | openssl dgst -sha256 -hmac 'test-key-0123456789abcdef0123456789abcdef'
	 *   SHA2-256(stdin)= 645e4a2f0c0a18a99035dbdd177d7621af0e7268230912e0c4d013aba1fffd3f
	 */
	mapping *m = hmac_mapping(", \"prefix\": \"S\"");
	REQUIRE(m);
	char *name = mapping_record_name(m, "MRN00000001");
	CHECK_STR(name, "S645e4a2f0c0a18a9");
	free(name);
	mapping_free(m);

	m = hmac_mapping(", \"hex_digits\": 9");
	REQUIRE(m);
	name = mapping_record_name(m, "MRN00000001");
	CHECK_STR(name, "645e4a2f0");
	free(name);
	mapping_free(m);

	m = hmac_mapping(", \"prefix\": \"study-\", \"hex_digits\": 64");
	REQUIRE(m);
	name = mapping_record_name(m, "MRN00000001");
	CHECK_STR(name, "study-645e4a2f0c0a18a99035dbdd177d7621af0e7268230912e0c4d013aba1fffd3f");
	free(name);
	/* Curation names the record by the study id; the MRN is still reported to the caller. */
	rset s = { 0 };
	mapping_result r;
	rs_add(&s, "{\"resourceType\": \"Patient\", \"id\": \"p\", \"identifier\": [{\"system\": \"urn:mrn\", "
		"\"value\": \"MRN00000001\"}]}");
	REQUIRE(curate(m, &s, &r) == 0);
	CHECK_STR(r.record, "study-645e4a2f0c0a18a99035dbdd177d7621af0e7268230912e0c4d013aba1fffd3f");
	CHECK_STR(r.mrn, "MRN00000001");
	mapping_result_deinit(&r);
	rs_free(&s);
	mapping_free(m);

	/* Record id "mrn": the MRN itself. */
	m = load(HEAD RULES "  {\"resource\": \"Patient\", " PF "}" TAIL);
	REQUIRE(m);
	name = mapping_record_name(m, "MRN00000001");
	CHECK_STR(name, "MRN00000001");
	free(name);
	mapping_free(m);
}

/* ---- rows: events, instruments, review, merging, order ----------------------------------------------- */

static void test_rows(void)
{
	mapping *m = load(HEAD RULES
			  "  {\"resource\": \"Patient\", \"event\": \"baseline_arm_1\", \"fields\": {\"g\": "
				"{\"value\": \"gender\"}}},\n"
			  "  {\"resource\": \"Patient\", \"event\": \"followup_arm_1\", \"fields\": {\"g2\": "
				"{\"value\": \"gender\"}}},\n"
			  "  {\"name\": \"all\", \"resource\": \"Observation\", \"event\": \"baseline_arm_1\", "
				"\"instrument\": \"vitals\","
			  " \"time\": \"effective\", \"fields\": {\"v\": {\"value\": \"code.coding.code\"}}},\n"
			  "  {\"name\": \"rev\", \"resource\": \"Observation\", \"event\": \"baseline_arm_1\", "
				"\"instrument\": \"vitals\","
			  " \"filter\": {\"code\": [\"8867-4\"]}, \"review\": true, \"fields\": {\"hrv\": {\"value\": "
				"\"valueQuantity.value\"}}},\n"
			  "  {\"name\": \"hr\", \"resource\": \"Observation\", \"event\": \"baseline_arm_1\", "
				"\"instrument\": \"vitals\","
			  " \"filter\": {\"code\": [\"http://loinc.org|\"]}, \"fields\": {\"v_hr\": {\"value\": "
				"\"valueQuantity.value\"}}},\n"
			  "  {\"name\": \"again\", \"resource\": \"Observation\", \"event\": \"baseline_arm_1\", "
				"\"instrument\": \"vitals\","
			  " \"filter\": {\"code\": [\"http://loinc.org|8867-4\"]}, \"fields\": {\"v\": {\"value\": "
				"\"id\"}}},\n"
			  "  {\"name\": \"g-review\", \"resource\": \"Patient\", \"event\": \"baseline_arm_1\", "
				"\"review\": true,"
			  " \"fields\": {\"g_r\": {\"value\": \"gender\"}}}" TAIL);
	REQUIRE(m);
	rset s = { 0 };
	mapping_result r;
	obs(&s, "o1", "8867-4", "2020-01-01T10:00:00Z", "60");
	obs(&s, "o2", "9279-1", "2020-01-01T09:00:00Z", "12");
	rs_add(&s, "{\"resourceType\": \"Observation\", \"id\": \"o3\", \"code\": {\"coding\": [{\"code\": \"x\"}]}}");
	rs_add(&s, PATIENT(", \"gender\": \"female\""));
	REQUIRE(curate(m, &s, &r) == 0);
	REQUIRE(r.n_rows == 7);

	/* Non-repeating rows first, by event, review last; then instances by time (none last). */
	CHECK(!r.rows[0].instrument && !r.rows[0].review);
	CHECK_STR(r.rows[0].event, "baseline_arm_1");
	CHECK_INT(r.rows[0].n, 1);
	CHECK_STR(r.rows[0].v[0].field, "g");
	CHECK(!r.rows[1].instrument && r.rows[1].review);
	CHECK_STR(r.rows[1].v[0].field, "g_r");
	CHECK_STR(r.rows[2].event, "followup_arm_1");
	CHECK_STR(r.rows[2].v[0].field, "g2");
	CHECK_STR(r.rows[3].src_id, "o2");
	CHECK_STR(r.rows[3].src_type, "Observation");
	CHECK_STR(r.rows[3].instrument, "vitals");
	CHECK_STR(r.rows[4].src_id, "o1");
	CHECK_STR(r.rows[5].src_id, "o3");
	CHECK(r.rows[6].review);
	CHECK_STR(r.rows[6].src_id, "o1");
	CHECK_STR(r.rows[6].v[0].field, "hrv");
	CHECK_STR(r.rows[6].v[0].rule, "rev");

	/* o1's instance: rules "all", "hr" and "again" merged; "again" fills v a second time. */
	const mapping_row *o1 = &r.rows[4];
	REQUIRE(o1->n == 2);
	CHECK_STR(o1->v[0].field, "v");
	CHECK(o1->v[0].value == NULL);
	CHECK_STR(o1->v[0].error, "rule \"again\" fills this field for the same resource too");
	CHECK_STR(o1->v[1].field, "v_hr");
	CHECK_STR(o1->v[1].value, "60");
	CHECK_STR(o1->v[1].rule, "hr");
	CHECK_STR(val(&r, "vitals", "o2", "v"), "9279-1");
	CHECK_STR(val(&r, "vitals", "o2", "v_hr"), "12");
	CHECK_STR(val(&r, "vitals", "o3", "v"), "x");
	CHECK(val(&r, "vitals", "o3", "v_hr") == NULL);
	mapping_result_deinit(&r);
	rs_free(&s);
	mapping_free(m);
}

/* ---- the shipped example study --------------------------------------------------------------------------- */

#define GEN_MRN_SYSTEM "urn:oid:1.2.36.146.595.217.0.1"

/* The resources of the generated test data, split per patient (each starts with its Patient). */
typedef struct gen {
	rset *pat;
	size_t n;
} gen;

static void gen_load(gen *g)
{
	size_t len;
	char *text = harness_read_source_file("bridge/testdata/mapping/generated-3.ndjson", &len);
	g->pat = calloc(8, sizeof(rset));
	g->n = 0;
	if (!text || !g->pat) {
		free(text);
		harness_failures++;
		return;
	}
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (strstr(line, "\"resourceType\":\"Patient\""))
			g->n++;
		if (g->n == 0 || g->n > 8)
			break;
		rs_add(&g->pat[g->n - 1], line);
		g->pat[g->n - 1].r[g->pat[g->n - 1].n - 1].version_id = "";
	}
	free(text);
}

static void gen_free(gen *g)
{
	for (size_t i = 0; i < g->n; i++)
		rs_free(&g->pat[i]);
	free(g->pat);
}

static int example_dict(redcap_dict *d)
{
	static const char *rep = "[{\"event_name\":\"\",\"form_name\":\"vitals\",\"custom_form_label\":\"\"},"
				 "{\"event_name\":\"\",\"form_name\":\"labs\",\"custom_form_label\":\"\"},"
				 "{\"event_name\":\"\",\"form_name\":\"conditions\",\"custom_form_label\":\"\"},"
				 "{\"event_name\":\"\",\"form_name\":\"medications\",\"custom_form_label\":\"\"},"
				 "{\"event_name\":\"\",\"form_name\":\"allergies\",\"custom_form_label\":\"\"}]";
	redcap_error err = { 0 };
	size_t n;
	char *csv = harness_read_source_file("conf/example-project/dictionary.csv", &n);
	if (!csv)
		return -1;
	int r = redcap_dict_parse_csv(d, csv, n, &err);
	free(csv);
	if (!r)
		r = redcap_dict_load_repeating(d, rep, strlen(rep), &err);
	if (r)
		fprintf(stderr, "  dictionary: %s\n", err.msg);
	return r;
}

static mapping *load_example(const char *name, const char *dir)
{
	mapping_env env = { .mrn_system = GEN_MRN_SYSTEM };
	char path[4200], err[1024];
	mapping *m = NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int rc = mapping_load(&m, path, &env, err, sizeof(err));
	if (rc)
		fprintf(stderr, "  %s: %s\n", name, err);
	return m;
}

static size_t rows_of(const mapping_result *r, const char *instrument)
{
	size_t n = 0;
	for (size_t i = 0; i < r->n_rows; i++)
		if (r->rows[i].instrument && strcmp(r->rows[i].instrument, instrument) == 0)
			n++;
	return n;
}

static void check_clean(const mapping *m, const redcap_dict *d)
{
	char **msgs;
	size_t n;
	CHECK_INT(mapping_check(m, d, &msgs, &n), 0);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "  unexpected: %s\n", msgs[i]);
	CHECK_INT(n, 0);
	mapping_msgs_free(msgs, n);
}

static void test_example(void)
{
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/conf/example-project", harness_source_root());
	mapping *m = load_example("mapping.json", dir);
	redcap_dict d = REDCAP_DICT_NULL;
	REQUIRE(m);
	REQUIRE(example_dict(&d) == 0);
	check_clean(m, &d);

	gen g;
	gen_load(&g);
	REQUIRE(g.n == 3);
	mapping_result r;

	/* Patient 1: values read off the generated data by hand. */
	REQUIRE(curate(m, &g.pat[0], &r) == 0);
	CHECK_INT(r.status, MAPPING_OK);
	CHECK_STR(r.record, "MRN00000001");
	CHECK_STR(r.patient_id, "pat-000001");
	CHECK_STR(val(&r, NULL, NULL, "mrn"), "MRN00000001");
	CHECK_STR(val(&r, NULL, NULL, "dob"), "1955-09-04");
	CHECK_STR(val(&r, NULL, NULL, "sex"), "1");
	CHECK_STR(val(&r, NULL, NULL, "enroll_date"), "2021-03-09");   /* enc-000001-01 2021-03-09T14:50:00+01:00 */
	CHECK_STR(val(&r, NULL, NULL, "hr_baseline"), "113");          /* obs-000001-0001 at 15:00+01:00 */
	CHECK(val(&r, NULL, NULL, "creat_max_48h") == NULL);           /* its creatinine is in 2022 */
	CHECK(val(&r, NULL, NULL, "record_id") == NULL);
	CHECK_INT(rows_of(&r, "vitals"), 6);
	CHECK_INT(rows_of(&r, "labs"), 6);
	CHECK_INT(rows_of(&r, "conditions"), 0);
	CHECK_INT(rows_of(&r, "medications"), 3);
	CHECK_INT(rows_of(&r, "allergies"), 1);
	CHECK_STR(val(&r, "vitals", "obs-000001-0001", "vs_datetime"), "2021-03-09 15:00:00");
	CHECK_STR(val(&r, "vitals", "obs-000001-0001", "vs_loinc"), "8867-4");
	CHECK_STR(val(&r, "vitals", "obs-000001-0001", "vs_value"), "113");
	CHECK_STR(val(&r, "vitals", "obs-000001-0001", "vs_unit"), "/min");
	/* The blood-pressure panel has no valueQuantity: no value, no error. */
	CHECK_STR(val(&r, "vitals", "obs-000001-0002", "vs_loinc"), "85354-9");
	CHECK(val(&r, "vitals", "obs-000001-0002", "vs_value") == NULL);
	CHECK(val(&r, "vitals", "obs-000001-0002", "vs_unit") == NULL);
	CHECK_STR(val(&r, "vitals", "obs-000001-0004", "vs_value"), "38.9");
	CHECK_STR(val(&r, "vitals", "obs-000001-0004", "vs_unit"), "Cel");
	CHECK_STR(val(&r, "labs", "obs-000001-0007", "lab_datetime"), "2022-08-26 01:58:00");
	CHECK_STR(val(&r, "labs", "obs-000001-0007", "lab_name"), "Creatinine [Mass/volume] in Serum or Plasma");
	CHECK_STR(val(&r, "labs", "obs-000001-0007", "lab_value"), "0.98");
	CHECK_STR(val(&r, "labs", "obs-000001-0007", "lab_unit"), "mg/dL");
	CHECK_STR(val(&r, "labs", "obs-000001-0011", "lab_value"), "4");
	CHECK_STR(val(&r, "medications", "medrx-000001-02", "med_code"), "617312");
	CHECK_STR(val(&r, "medications", "medrx-000001-02", "med_display"), "atorvastatin 10 MG Oral Tablet");
	CHECK_STR(val(&r, "medications", "medrx-000001-02", "med_status"), "active");
	CHECK_STR(val(&r, "medications", "medrx-000001-02", "med_authored"), "2024-12-23");
	CHECK_STR(val(&r, "allergies", "allergy-000001-01", "allergy_code"), "294505008");
	CHECK_STR(val(&r, "allergies", "allergy-000001-01", "allergy_display"), "Allergy to sulfonamide");
	CHECK_STR(val(&r, "allergies", "allergy-000001-01", "allergy_criticality"), "unable-to-assess");
	/* Medications in the order they were authored. */
	size_t k = 0;
	const char *med_order[] = { "medrx-000001-03", "medrx-000001-02", "medrx-000001-01" };
	for (size_t i = 0; i < r.n_rows; i++)
		if (r.rows[i].instrument && strcmp(r.rows[i].instrument, "medications") == 0 && k < 3)
			CHECK_STR(r.rows[i].src_id, med_order[k++]);
	/* No value of the example holds an error. */
	for (size_t i = 0; i < r.n_rows; i++)
		for (size_t j = 0; j < r.rows[i].n; j++)
			CHECK(r.rows[i].v[j].error == NULL && r.rows[i].v[j].value != NULL);
	mapping_result_deinit(&r);

	/* Patient 3: date-only condition onsets; the first of four encounters anchors. */
	REQUIRE(curate(m, &g.pat[2], &r) == 0);
	CHECK_STR(val(&r, NULL, NULL, "enroll_date"), "2019-10-23");
	CHECK_STR(val(&r, NULL, NULL, "hr_baseline"), "117");
	CHECK_INT(rows_of(&r, "conditions"), 2);
	CHECK_STR(val(&r, "conditions", "cond-000003-01", "cond_onset"), "2016-04-07");
	CHECK_STR(val(&r, "conditions", "cond-000003-01", "cond_code"), "13645005");
	CHECK_STR(val(&r, "conditions", "cond-000003-01", "cond_system"), "http://snomed.info/sct");
	CHECK_STR(val(&r, "conditions", "cond-000003-01", "cond_display"), "Chronic obstructive lung disease");
	CHECK_STR(val(&r, "conditions", "cond-000003-01", "cond_status"), "active");
	CHECK_STR(val(&r, "medications", "medrx-000003-02", "med_status"), "stopped");
	CHECK_INT(rows_of(&r, "allergies"), 0);
	mapping_result_deinit(&r);

	/* Creatinine MAX within 0..+2 d of the anchor (the generated data has none that close). */
	rset *p2 = &g.pat[1];
	char buf[1024];
	static const char *creat[][2] = { { "c1", "2019-05-19T05:00:00+01:00" },   /* at the anchor: in */
					   { "c2", "2019-05-21T04:00:00Z" },        /* +48 h exactly: in */
					   { "c3", "2019-05-21T04:00:01Z" },        /* out */
					   { "c4", "2019-05-19T03:59:59Z" } };      /* before: out */
	static const char *creat_v[] = { "1.2", "1.25", "9.9", "8.8" };
	for (size_t i = 0; i < 4; i++) {
		snprintf(buf, sizeof(buf),
			 "{\"resourceType\": \"Observation\", \"id\": \"%s\", \"status\": \"final\", \"code\": "
				"{\"coding\":"
			 " [{\"system\": \"http://loinc.org\", \"code\": \"2160-0\"}]}, \"effectiveDateTime\": \"%s\","
			 " \"valueQuantity\": {\"value\": %s, \"unit\": \"mg/dL\", \"code\": \"mg/dL\"}}",
			 creat[i][0], creat[i][1], creat_v[i]);
		rs_add(p2, buf);
	}
	REQUIRE(curate(m, p2, &r) == 0);
	CHECK_STR(val(&r, NULL, NULL, "creat_max_48h"), "1.25");
	CHECK_STR(find_value(&r, "creat_max_48h")->res_id, "c2");
	CHECK_STR(val(&r, NULL, NULL, "hr_baseline"), "106");
	mapping_result_deinit(&r);

	/* The HMAC variant, with a key made here (none is shipped). */
	char *src = harness_read_source_file("conf/example-project/mapping-hmac.json", &k);
	REQUIRE(src);
	free(put_file("mapping-hmac.json", src, k, 0644));
	free(src);
	free(put_file("study-id.key", "test-key-0123456789abcdef0123456789abcdef\n", 42, 0600));
	mapping *h = load_example("mapping-hmac.json", tmp);
	REQUIRE(h);
	check_clean(h, &d);
	REQUIRE(curate(h, &g.pat[0], &r) == 0);
	/* printf %s MRN00000001 | openssl dgst -sha256 -hmac 'test-key-0123456789abcdef0123456789abcdef' */
	CHECK_STR(r.record, "S645e4a2f0c0a18a9");
	CHECK(val(&r, NULL, NULL, "mrn") == NULL);
	CHECK_STR(val(&r, NULL, NULL, "sex"), "1");
	CHECK_INT(rows_of(&r, "vitals"), 6);
	mapping_result_deinit(&r);
	mapping_free(h);

	gen_free(&g);
	redcap_dict_deinit(&d);
	mapping_free(m);
}

/* The rows as one string, to compare results. */
static char *dump(const mapping_result *r)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	fprintf(f, "%d %s %s\n", r->status, r->record ? r->record : "-", r->patient_id ? r->patient_id : "-");
	for (size_t i = 0; i < r->n_rows; i++) {
		const mapping_row *w = &r->rows[i];
		fprintf(f, "row %s %s %s %s %d\n", w->event ? w->event : "-", w->instrument ? w->instrument : "-",
			w->src_type ? w->src_type : "-", w->src_id ? w->src_id : "-", w->review);
		for (size_t k = 0; k < w->n; k++) {
			const mapping_value *v = &w->v[k];
			fprintf(f, "  %s=%s|%s %s %s/%s/%s\n", v->field, v->value ? v->value : "",
				v->error ? v->error : "", v->rule, v->res_type ? v->res_type : "",
				v->res_id ? v->res_id : "", v->res_version ? v->res_version : "");
		}
	}
	fclose(f);
	return out;
}

/* The same resources in any order give the same rows in the same order. */
static void test_determinism(void)
{
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/conf/example-project", harness_source_root());
	mapping *m = load_example("mapping.json", dir);
	REQUIRE(m);
	gen g;
	gen_load(&g);
	REQUIRE(g.n == 3);
	rset *s = &g.pat[0];
	/* Ties everywhere: a second heart rate at the same distance from the anchor, and an equal one. */
	obs(s, "obs-000001-early", "8867-4", "2021-03-09T14:40:00+01:00", "99");
	obs(s, "obs-000001-late", "8867-4", "2021-03-09T15:00:00+01:00", "55");
	mapping_result r;
	REQUIRE(curate(m, s, &r) == 0);
	char *ref = dump(&r);
	mapping_result_deinit(&r);
	REQUIRE(ref);
	CHECK(strstr(ref, "hr_baseline=99|") != NULL); /* 10 min before the anchor beats 10 min after */

	unsigned seed = 12345;
	for (int round = 0; round < 20; round++) {
		/* Fisher-Yates with a fixed LCG: reproducible permutations. */
		for (size_t i = s->n - 1; i > 0; i--) {
			seed = seed * 1103515245u + 12345u;
			size_t j = (seed >> 8) % (i + 1);
			mapping_resource t = s->r[i];
			s->r[i] = s->r[j];
			s->r[j] = t;
		}
		REQUIRE(curate(m, s, &r) == 0);
		char *got = dump(&r);
		mapping_result_deinit(&r);
		if (!got || strcmp(got, ref) != 0) {
			fprintf(stderr, "  round %d differs\n", round);
			harness_failures++;
			free(got);
			break;
		}
		free(got);
	}
	free(ref);
	gen_free(&g);
	mapping_free(m);
}

/* ---- mapping_check ---------------------------------------------------------------------------------------- */

static void check_msgs(const mapping *m, const redcap_dict *d, const char *file, const char *const *want, size_t n_want)
{
	char **msgs = NULL;
	size_t n = 0;
	int rc = mapping_check(m, d, &msgs, &n);
	CHECK_INT(rc, n_want ? MAPPING_E_CHECK : 0);
	for (size_t i = 0; i < n || i < n_want; i++) {
		char w[1024];
		if (i < n_want)
			snprintf(w, sizeof(w), "%s%s", file, want[i]);
		if (i >= n || i >= n_want || strcmp(msgs[i], w) != 0) {
			fprintf(stderr, "  [%zu]\n    got  %s\n    want %s\n", i, i < n ? msgs[i] : "(none)",
				i < n_want ? w : "(none)");
			harness_failures++;
		}
	}
	mapping_msgs_free(msgs, n);
}

static void test_check(void)
{
	static const char *const want[] = {
		":6:14: anchors.adm: field sex: is not a date or datetime field (text with date_* or datetime_* "
			"validation)",
		":7:15: anchors.gone: field admit_dt: is not in the data dictionary",
		":15:9: rules[0] \"demographics\": field record_id: is the record id field (the record name fills it)",
		":16:9: rules[0] \"demographics\": field nope: is not in the data dictionary",
		":17:9: rules[0] \"demographics\": field sex: the map gives \"4\" (for \"male\"), not a code of the "
			"field (1, 2, 3)",
		":17:9: rules[0] \"demographics\": field sex: the map has no default: a code it does not name would "
			"be held back "
		"(add \"default\")",
		":18:9: rules[0] \"demographics\": field dob: date_ymd validation needs transform \"date\", not "
			"\"string\"",
		":28:9: rules[1] \"hr\": field hr_baseline: integer validation needs transform \"round\", not "
			"\"number\"",
		":29:9: rules[1] \"hr\": field vs_value: is on instrument vitals, the rule's first field on "
			"demographics (a rule "
		"fills one form)",
		":29:9: rules[1] \"hr\": field vs_value: is on the repeating instrument vitals (a rule without "
			"\"instrument\" fills "
		"non-repeating forms)",
		":35:7: rules[2] \"vitals-on-demographics\": instrument demographics: is not a repeating instrument",
		":45:9: rules[3] \"labs-into-vitals\": field lab_value: is on instrument labs, not on vitals",
		":46:9: rules[3] \"labs-into-vitals\": field vs_datetime: datetime_seconds_ymd validation needs "
			"transform "
		"\"datetime_seconds\", not \"datetime\"",
		":47:9: rules[3] \"labs-into-vitals\": field vs_value: number validation needs transform \"number\" "
			"or \"round\", "
		"not \"date\"",
		":53:7: rules[4] \"with-event\": event baseline_arm_1: the project is not longitudinal (it has no "
			"events)",
		":55:9: rules[4] \"with-event\": field sex: a radio field needs a map to its codes (1, 2, 3)",
		":56:9: rules[4] \"with-event\": field creat_max_48h: the map gives \"yes\", which number validation "
			"refuses",
		":62:7: rules[5] \"no-such-instrument\": instrument problems: is not an instrument of the project",
		":64:9: rules[5] \"no-such-instrument\": field cond_code: is on instrument conditions, not on problems",
		":70:7: rules[6] \"choices\": event followup_arm_1: the project is not longitudinal (it has no events)",
		":72:9: rules[6] \"choices\": field sex: the default \"9\" is not a code of the field (1, 2, 3)",
	};
	char path[4200];
	snprintf(path, sizeof(path), "%s/bridge/testdata/mapping/check-problems.json", harness_source_root());
	mapping_env env = { .mrn_system = MRN_SYS };
	char err[1024];
	mapping *m = NULL;
	redcap_dict d = REDCAP_DICT_NULL;
	REQUIRE(mapping_load(&m, path, &env, err, sizeof(err)) == 0);
	REQUIRE(example_dict(&d) == 0);
	check_msgs(m, &d, path, want, N(want));
	redcap_dict_deinit(&d);
	mapping_free(m);
}

/* A longitudinal project: events exist, hold the form, repeat the instrument. */
static void test_check_longitudinal(void)
{
	static const char *events =
		"[{\"event_name\":\"Baseline\",\"arm_num\":\"1\",\"unique_event_name\":\"baseline_arm_1\"},"
		"{\"event_name\":\"Follow-up\",\"arm_num\":\"1\",\"unique_event_name\":\"followup_arm_1\"}]";
	static const char *fem =
		"[{\"arm_num\":\"1\",\"unique_event_name\":\"baseline_arm_1\",\"form\":\"demographics\"},"
				 "{\"arm_num\":\"1\",\"unique_event_name\":\"followup_arm_1\",\"form\":\"vitals\"},"
				 "{\"arm_num\":\"1\",\"unique_event_name\":\"followup_arm_1\",\"form\":\"labs\"},"
				 "{\"arm_num\":\"1\",\"unique_event_name\":\"baseline_arm_1\",\"form\":\"labs\"}]";
	static const char *rep =
		"[{\"event_name\":\"followup_arm_1\",\"form_name\":\"vitals\",\"custom_form_label\":\"\"},"
		"{\"event_name\":\"followup_arm_1\",\"form_name\":\"labs\",\"custom_form_label\":\"\"}]";
	redcap_dict d = REDCAP_DICT_NULL;
	redcap_error err = { 0 };
	size_t n;
	char *csv = harness_read_source_file("conf/example-project/dictionary.csv", &n);
	REQUIRE(csv);
	REQUIRE(redcap_dict_parse_csv(&d, csv, n, &err) == 0);
	free(csv);
	REQUIRE(redcap_dict_load_events(&d, events, strlen(events), &err) == 0);
	REQUIRE(redcap_dict_load_form_event_mapping(&d, fem, strlen(fem), &err) == 0);
	REQUIRE(redcap_dict_load_repeating(&d, rep, strlen(rep), &err) == 0);

	mapping *m = load(HEAD RULES
			  "  {\"resource\": \"Patient\", \"fields\": {\"dob\": {\"value\": \"birthDate\", "
				"\"transform\": \"date\"}}},\n"
			  "  {\"resource\": \"Patient\", \"event\": \"followup_arm_1\", \"fields\": {\"dob\": "
				"{\"value\": \"birthDate\", \"transform\": \"date\"}}},\n"
			  "  {\"resource\": \"Observation\", \"event\": \"baseline_arm_1\", \"instrument\": "
				"\"vitals\", \"fields\": {\"vs_loinc\": {\"value\": \"id\"}}},\n"
			  "  {\"resource\": \"Observation\", \"event\": \"baseline_arm_1\", \"instrument\": \"labs\", "
				"\"fields\": {\"lab_loinc\": {\"value\": \"id\"}}},\n"
			  "  {\"resource\": \"Observation\", \"event\": \"followup_arm_1\", \"instrument\": "
				"\"vitals\", \"fields\": {\"vs_loinc\": {\"value\": \"id\"}}},\n"
			  "  {\"resource\": \"Patient\", \"event\": \"screening_arm_1\", \"fields\": {\"mrn\": "
				"{\"value\": \"id\"}}},\n"
			  "  {\"resource\": \"Patient\", \"event\": \"baseline_arm_1\", \"fields\": {\"mrn\": "
				"{\"value\": \"id\"}}}" TAIL);
	REQUIRE(m);
	static const char *const want[] = {
		":3:3: rules[0] \"rules[0]\": the project is longitudinal: the rule needs an \"event\"",
		(":4:65: rules[1] \"rules[1]\": field dob: instrument demographics is not designated for event "
		 "followup_arm_1"),
		":5:58: rules[2] \"rules[2]\": instrument vitals: is not designated for event baseline_arm_1",
		":6:58: rules[3] \"rules[3]\": instrument labs: is not a repeating instrument in event baseline_arm_1",
		":8:27: rules[5] \"rules[5]\": event screening_arm_1: is not an event of the project",
	};
	char file[4200];
	snprintf(file, sizeof(file), "%s/m.json", tmp);
	check_msgs(m, &d, file, want, N(want));
	mapping_free(m);
	redcap_dict_deinit(&d);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_load_errors),       HARNESS_TEST(test_load_error_files),
		HARNESS_TEST(test_load_env_and_files), HARNESS_TEST(test_load_ok),
		HARNESS_TEST(test_digest),            HARNESS_TEST(test_fhirpath_parse),
		HARNESS_TEST(test_fhirpath_eval),     HARNESS_TEST(test_transforms),
		HARNESS_TEST(test_windows),           HARNESS_TEST(test_min_max),
		HARNESS_TEST(test_select_usable),
		HARNESS_TEST(test_fhir_anchors),      HARNESS_TEST(test_site_zone),
		HARNESS_TEST(test_mrn),               HARNESS_TEST(test_hmac),
		HARNESS_TEST(test_rows),              HARNESS_TEST(test_example),
		HARNESS_TEST(test_determinism),       HARNESS_TEST(test_check),
		HARNESS_TEST(test_check_longitudinal),
	};
	tmp = harness_tmpdir();
	if (!tmp)
		return 2;
	int r = harness_main(tests, N(tests), argc, argv);
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		r = r ? r : 1;
	free(tmp);
	return r;
}
