/*
 * Tests for the config loader and secret files: every error class with its
 * exact "file:line:col: key: message", defaults, path resolution, and the
 * permission rules of secret_read_file().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/config.h"
#include "tests/harness.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char *tmp; /* this process's scratch directory */

static char *put_file(const char *name, const void *data, size_t len, mode_t mode)
{
	return harness_write_file(tmp, name, data, len, mode);
}

static char *put_text(const char *name, const char *text)
{
	return put_file(name, text, strlen(text), 0644);
}

/* ---- errors ------------------------------------------------------------------ */

#define L1 "{\"store\": {\"path\": \"b.db\", \"key_file\": \"k\"},\n"
#define L2 " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": [\"Patient\"],\n"
#define SMART3 "  \"auth\": {\"type\": \"smart-backend\",\n"

static const struct err_case {
	const char *json;
	const char *expect; /* after the file name */
} err_cases[] = {
	/* wrong types and ranges */
	{ L1 L2 "  \"page_size\": \"500\"}}", ":3:3: fhir.page_size: expected an integer from 1 to 10000, got a string" },
	{ L1 L2 "  \"page_size\": 1.5}}", ":3:3: fhir.page_size: expected an integer from 1 to 10000, got a real number" },
	{ L1 L2 "  \"page_size\": 0}}", ":3:3: fhir.page_size: expected an integer from 1 to 10000, got 0" },
	{ L1 L2 "  \"page_size\": 10001}}", ":3:3: fhir.page_size: expected an integer from 1 to 10000, got 10001" },
	{ L1 L2 "  \"page_size\": 99999999999}}",
	  ":3:3: fhir.page_size: expected an integer from 1 to 10000, got 99999999999" },
	{ L1 L2 "  \"max_concurrency\": 65}}", ":3:3: fhir.max_concurrency: expected an integer from 1 to 64, got 65" },
	{ L1 L2 "  \"watermark_skew_s\": -1}}", ":3:3: fhir.watermark_skew_s: expected an integer from 0 to 3600, got -1" },
	{ L1 L2 "  \"timeout_s\": null}}", ":3:3: fhir.timeout_s: expected an integer from 1 to 3600, got null" },
	{ L1 L2 "  \"poll_interval_s\": true}}", ":3:3: fhir.poll_interval_s: expected an integer from 1 to 86400, got true" },
	{ L1 L2 "  \"poll_interval_s\": [300]}}", ":3:3: fhir.poll_interval_s: expected an integer from 1 to 86400, got an array" },
	{ L1 L2 "  \"poll_interval_s\": {}}}", ":3:3: fhir.poll_interval_s: expected an integer from 1 to 86400, got an object" },
	{ L1 L2 "  \"ca_file\": false}}", ":3:3: fhir.ca_file: expected a file path (a string), got false" },
	{ "{\"store\": {\"path\": \"\", \"key_file\": \"k\"}}", ":1:12: store.path: expected a file path (a string), got an empty string" },
	{ "{\"store\": {\"path\": null, \"key_file\": \"k\"}}", ":1:12: store.path: expected a file path (a string), got null" },
	{ "{\"store\": {\"path\": \"a\\nb\", \"key_file\": \"k\"}}", ":1:12: store.path: must not contain control characters" },
	{ "{\"store\": \"b.db\"}", ":1:2: store: expected an object, got a string" },
	{ "[]", ":1:1: (top level): expected an object, got an array" },
	{ "  \"store\"", ":1:9: '[' or '{' expected near '\"store\"'" },

	/* unknown keys */
	{ L1 L2 "  \"pagesize\": 5}}",
	  ":3:3: fhir.pagesize: unknown key (allowed: base_url, resources, page_size, max_concurrency, "
	  "poll_interval_s, timeout_s, watermark_skew_s, retry, ca_file, auth, mrn_system)" },
	{ L1 L2 "  \"page_size\": 5},\n \"sotre\": {}}", ":4:2: sotre: unknown key (allowed: store, fhir, site, redcap, downtime, ui, log)" },
	{ "{\"store\": {\"path\": \"b.db\", \"key_file\": \"k\", \"mode\": 1}}",
	  ":1:45: store.mode: unknown key (allowed: path, key_file)" },
	{ L1 L2 "  \"retry\": {\"max_attempts\": 3, \"jitter\": true}}}",
	  ":3:32: fhir.retry.jitter: unknown key (allowed: max_attempts, base_ms, max_ms)" },
	{ L1 L2 "  \"a.b\\n\": 1}}",
	  ":3:3: fhir[\"a.b\\u000a\"]: unknown key (allowed: base_url, resources, page_size, max_concurrency, "
	  "poll_interval_s, timeout_s, watermark_skew_s, retry, ca_file, auth, mrn_system)" },

	/* retry */
	{ L1 L2 "  \"retry\": 5}}", ":3:3: fhir.retry: expected an object, got an integer" },
	{ L1 L2 "  \"retry\": {\"max_attempts\": 0}}}", ":3:13: fhir.retry.max_attempts: expected an integer from 1 to 100, got 0" },
	{ L1 L2 "  \"retry\": {\"base_ms\": 1000, \"max_ms\": 999}}}", ":3:30: fhir.retry.max_ms: must be at least base_ms (1000), got 999" },
	{ L1 L2 "  \"retry\": {\"base_ms\": 40000}}}", ":3:13: fhir.retry.base_ms: must be at most max_ms (30000), got 40000" },

	/* missing keys: placed at the enclosing object */
	{ L1 " \"fhir\": {\"resources\": [\"Patient\"]}}", ":2:10: fhir.base_url: required key is missing" },
	{ L1 " \"fhir\": {\"base_url\": \"http://h/\"}}", ":2:10: fhir.resources: required key is missing" },
	{ "{\"store\": {\"path\": \"b.db\", \"key_file\": \"k\"}}", ":1:1: fhir: required key is missing" },
	{ "\n  {\"fhir\": {}}", ":2:3: store: required key is missing" },
	{ "{\"store\": {\"path\": \"b.db\"}}", ":1:11: store.key_file: required key is missing" },

	/* resources */
	{ L1 " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": []}}", ":2:36: fhir.resources: must list at least one resource type" },
	{ L1 " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": \"Patient\"}}",
	  ":2:36: fhir.resources: expected an array of resource type names, got a string" },
	{ L1 " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": [\"Patient\", 5]}}",
	  ":2:61: fhir.resources[1]: expected a resource type name (a string), got an integer" },
	{ L1 " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": [\"patient\"]}}",
	  ":2:50: fhir.resources[0]: \"patient\" is not a resource type name (like \"Patient\": ^[A-Z][A-Za-z]{1,63}$)" },
	{ L1 " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": [\"P\"]}}",
	  ":2:50: fhir.resources[0]: \"P\" is not a resource type name (like \"Patient\": ^[A-Z][A-Za-z]{1,63}$)" },
	{ L1 " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": [\"Pat1ent\"]}}",
	  ":2:50: fhir.resources[0]: \"Pat1ent\" is not a resource type name (like \"Patient\": ^[A-Z][A-Za-z]{1,63}$)" },
	{ L1 " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": [\"Patient/1\"]}}",
	  ":2:50: fhir.resources[0]: \"Patient/1\" is not a resource type name (like \"Patient\": ^[A-Z][A-Za-z]{1,63}$)" },
	{ L1 " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": [\"Patient\", \"Observation\", \"Patient\"]}}",
	  ":2:76: fhir.resources[2]: \"Patient\" is listed twice (first at [0])" },

	/* base_url; a URL is never echoed (it could hold a password) */
	{ L1 " \"fhir\": {\"base_url\": \"ftp://h\", \"resources\": [\"Patient\"]}}",
	  ":2:11: fhir.base_url: must start with http:// or https://" },
	{ L1 " \"fhir\": {\"base_url\": \"https://\", \"resources\": [\"Patient\"]}}",
	  ":2:11: fhir.base_url: has no host after the scheme" },
	{ L1 " \"fhir\": {\"base_url\": \"https:///fhir\", \"resources\": [\"Patient\"]}}",
	  ":2:11: fhir.base_url: has no host after the scheme" },
	{ L1 " \"fhir\": {\"base_url\": \"https://user:hunter2@h/fhir\", \"resources\": [\"Patient\"]}}",
	  ":2:11: fhir.base_url: must not contain a user name or password (credentials belong in fhir.auth)" },
	{ L1 " \"fhir\": {\"base_url\": \"https://h/fhir?x=1\", \"resources\": [\"Patient\"]}}",
	  ":2:11: fhir.base_url: must not contain a query (?)" },
	{ L1 " \"fhir\": {\"base_url\": \"https://h/#top\", \"resources\": [\"Patient\"]}}",
	  ":2:11: fhir.base_url: must not contain a fragment (#)" },
	{ L1 " \"fhir\": {\"base_url\": \"https://h/a b\", \"resources\": [\"Patient\"]}}",
	  ":2:11: fhir.base_url: must not contain spaces or control characters" },
	{ L1 " \"fhir\": {\"base_url\": \"\", \"resources\": [\"Patient\"]}}",
	  ":2:11: fhir.base_url: expected an http:// or https:// URL (a string), got an empty string" },
	{ L1 " \"fhir\": {\"base_url\": 8080, \"resources\": [\"Patient\"]}}",
	  ":2:11: fhir.base_url: expected an http:// or https:// URL (a string), got an integer" },

	/* auth */
	{ L1 L2 "  \"auth\": \"none\"}}", ":3:3: fhir.auth: expected an object, got a string" },
	{ L1 L2 "  \"auth\": {}}}", ":3:11: fhir.auth.type: required key is missing" },
	{ L1 L2 "  \"auth\": {\"type\": \"basic\"}}}",
	  ":3:12: fhir.auth.type: expected \"none\", \"bearer\" or \"smart-backend\", got \"basic\"" },
	{ L1 L2 "  \"auth\": {\"type\": \"a\\\"b\\n\"}}}",
	  ":3:12: fhir.auth.type: expected \"none\", \"bearer\" or \"smart-backend\", got \"a\\\"b\\u000a\"" },
	{ L1 L2 "  \"auth\": {\"type\": 3}}}",
	  ":3:12: fhir.auth.type: expected \"none\", \"bearer\" or \"smart-backend\", got an integer" },
	{ L1 L2 "  \"auth\": {\"type\": \"none\", \"token_file\": \"t\"}}}",
	  ":3:28: fhir.auth.token_file: not used with auth type \"none\" (allowed: type)" },
	{ L1 L2 "  \"auth\": {\"type\": \"none\", \"password\": \"x\"}}}",
	  ":3:28: fhir.auth.password: unknown key (allowed: type)" },
	{ L1 L2 "  \"auth\": {\"type\": \"bearer\"}}}",
	  ":3:11: fhir.auth.token_file: required key is missing (or token_env) for auth type \"bearer\"" },
	{ L1 L2 "  \"auth\": {\"type\": \"bearer\", \"token_file\": \"t\", \"token_env\": \"T\"}}}",
	  ":3:49: fhir.auth.token_env: give token_file or token_env, not both" },
	{ L1 L2 "  \"auth\": {\"type\": \"bearer\", \"token_env\": \"1X\"}}}",
	  ":3:30: fhir.auth.token_env: expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)" },
	{ L1 L2 "  \"auth\": {\"type\": \"bearer\", \"token_file\": \"\"}}}",
	  ":3:30: fhir.auth.token_file: expected a file path (a string), got an empty string" },
	{ L1 L2 "  \"auth\": {\"type\": \"bearer\", \"token_env\": \"T\", \"client_id\": \"c\"}}}",
	  ":3:48: fhir.auth.client_id: not used with auth type \"bearer\" (allowed: type, token_file, token_env)" },
	{ L1 L2 SMART3 "   \"token_url\": \"https://h/token\",\n   \"private_key_file\": \"k.pem\",\n   \"alg\": \"RS384\"}}}",
	  ":3:11: fhir.auth.client_id: required key is missing" },
	{ L1 L2 SMART3 "   \"token_url\": \"https://h/token\",\n   \"client_id\": \"c\",\n   \"private_key_file\": \"k.pem\"}}}",
	  ":3:11: fhir.auth.alg: required key is missing" },
	{ L1 L2 SMART3 "   \"token_url\": \"https://h/token\",\n   \"client_id\": \"c\",\n   \"alg\": \"RS384\"}}}",
	  ":3:11: fhir.auth.private_key_file: required key is missing" },
	{ L1 L2 SMART3 "   \"client_id\": \"c\",\n   \"private_key_file\": \"k.pem\",\n   \"alg\": \"RS384\"}}}",
	  ":3:11: fhir.auth.token_url: required key is missing" },
	{ L1 L2 SMART3 "   \"token_url\": \"https://h/token\",\n   \"client_id\": \"c\",\n"
		       "   \"private_key_file\": \"k.pem\",\n   \"alg\": \"RS256\"}}}",
	  ":7:4: fhir.auth.alg: expected \"RS384\" or \"ES384\", got \"RS256\"" },
	{ L1 L2 SMART3 "   \"token_url\": \"h/token\",\n   \"client_id\": \"c\",\n"
		       "   \"private_key_file\": \"k.pem\",\n   \"alg\": \"RS384\"}}}",
	  ":4:4: fhir.auth.token_url: must start with http:// or https://" },
	{ L1 L2 SMART3 "   \"token_url\": \"https://h/token\",\n   \"client_id\": \"c\\u0001\",\n"
		       "   \"private_key_file\": \"k.pem\",\n   \"alg\": \"RS384\"}}}",
	  ":5:4: fhir.auth.client_id: must not contain control characters" },
	{ L1 L2 SMART3 "   \"token_url\": \"https://h/token\",\n   \"client_id\": \"c\",\n"
		       "   \"private_key_file\": \"k.pem\",\n   \"alg\": \"ES384\", \"token_env\": \"T\"}}}",
	  ":7:20: fhir.auth.token_env: not used with auth type \"smart-backend\" "
	  "(allowed: type, token_url, client_id, private_key_file, alg, kid, scope)" },
	{ L1 L2 SMART3 "   \"token_url\": \"https://h/token\",\n   \"client_id\": \"c\",\n"
		       "   \"private_key_file\": \"k.pem\",\n   \"alg\": \"ES384\", \"scope\": \"\"}}}",
	  ":7:20: fhir.auth.scope: expected a scope list (a string), got an empty string" },

	/* log */
	{ L1 L2 "  \"page_size\": 5},\n \"log\": {\"level\": \"verbose\"}}",
	  ":4:10: log.level: expected \"error\", \"warn\", \"info\" or \"debug\", got \"verbose\"" },
	{ L1 L2 "  \"page_size\": 5},\n \"log\": {\"lvl\": \"info\"}}", ":4:10: log.lvl: unknown key (allowed: level)" },
	{ L1 L2 "  \"page_size\": 5},\n \"log\": \"debug\"}", ":4:2: log: expected an object, got a string" },

	/* site and redcap */
	{ L1 L2 "  \"page_size\": 5},\n \"site\": {\"timezone\": \"Mars/Olympus\"}}",
	  ":4:11: site.timezone: unknown time zone \"Mars/Olympus\" (no /usr/share/zoneinfo/Mars/Olympus)" },
	{ L1 L2 "  \"page_size\": 5},\n \"site\": {\"timezone\": \"../etc/passwd\"}}",
	  ":4:11: site.timezone: \"../etc/passwd\" is not an IANA time zone name (like \"Europe/Zurich\")" },
	{ L1 L2 "  \"page_size\": 5},\n \"redcap\": {\"projects\": [{\"name\": \"a\", \"url\": \"https://r/api/\"}]}}",
	  ":4:26: redcap.projects[0]: give the API token as token_file or token_env (exactly one)" },
	{ L1 L2 "  \"page_size\": 5},\n \"redcap\": {\"projects\": [\n  {\"name\": \"a\", \"url\": \"https://r/api/\", \"token_file\": \"t\"},\n  {\"name\": \"a\", \"url\": \"https://r/api/\", \"token_file\": \"t\"}]}}",
	  ":6:4: redcap.projects[1].name: \"a\" is used twice (first at redcap.projects[0])" },
	{ L1 L2 "  \"page_size\": 5},\n \"redcap\": {\"projects\": [{\"name\": \"a b\", \"url\": \"https://r/api/\", \"token_file\": \"t\"}]}}",
	  ":4:27: redcap.projects[0].name: \"a b\" is not a project name (letters, digits, '_', '-', '.'; at most 64)" },
	{ L1 L2 "  \"page_size\": 5},\n \"redcap\": {\"projects\": [{\"name\": \"_ehr\", \"url\": \"https://r/api/\", \"token_file\": \"t\"}]}}",
	  ":4:27: redcap.projects[0].name: \"_ehr\": names that start with '_' are the bridge's own" },
	{ L1 L2 "  \"page_size\": 5},\n \"redcap\": {\"max_requests_per_minute\": 601}}",
	  ":4:13: redcap.max_requests_per_minute: expected an integer from 1 to 600, got 601" },
	{ L1 L2 "  \"page_size\": 5},\n \"redcap\": {\"retry\": {\"base_ms\": 5000, \"max_ms\": 100}}}",
	  ":4:40: redcap.retry.max_ms: must be at least base_ms (5000), got 100" },
	{ L1 L2 "  \"page_size\": 5},\n \"redcap\": {\"retry\": {\"tries\": 5}}}",
	  ":4:23: redcap.retry.tries: unknown key (allowed: max_attempts, base_ms, max_ms)" },
	{ L1 L2 "  \"page_size\": 5},\n \"redcap\": {\"projects\": [{\"name\": \"a\", \"url\": \"https://r/api/\", \"token_file\": \"t\", \"tokn\": 1}]}}",
	  ":4:84: redcap.projects[0].tokn: unknown key (allowed: name, url, token_file, token_env, mapping)" },

	{ L1 L2 "  \"page_size\": 5},\n \"downtime\": {\"identifier_system\": \"no scheme\"}}",
	  
	  ":4:15: downtime.identifier_system: expected an absolute URI without spaces or '|' (like \"urn:oid:1.2.3\" or \"https://hospital.example/downtime\")" },
	{ L1 L2 "  \"page_size\": 5},\n \"downtime\": {\"identifier_system\": \"urn:a|b\"}}", 
	  ":4:15: downtime.identifier_system: expected an absolute URI without spaces or '|' (like \"urn:oid:1.2.3\" or \"https://hospital.example/downtime\")" },
	{ L1 L2 "  \"page_size\": 5},\n \"downtime\": {\"resync_batch\": 501}}", 
	  ":4:15: downtime.resync_batch: expected an integer from 1 to 500, got 501" },
	{ L1 L2 "  \"page_size\": 5},\n \"downtime\": {\"probe\": 5}}", 
	  ":4:15: downtime.probe: unknown key (allowed: identifier_system, user_system, probe_interval_s, probe_timeout_s, fail_threshold, recover_successes, down_probe_max_s, resync_batch)" },
	{ L1 L2 "  \"page_size\": 5},\n \"ui\": {\"listen\": \"localhost:8470\"}}", 
	  ":4:9: ui.listen: \"localhost:8470\" is not \"<IPv4 address>:<port>\" or \"[<IPv6 address>]:<port>\" (like \"127.0.0.1:8470\")" },
	{ L1 L2 "  \"page_size\": 5},\n \"ui\": {\"listen\": \"127.0.0.1:65536\"}}", 
	  ":4:9: ui.listen: \"127.0.0.1:65536\" is not \"<IPv4 address>:<port>\" or \"[<IPv6 address>]:<port>\" (like \"127.0.0.1:8470\")" },
	{ L1 L2 "  \"page_size\": 5},\n \"ui\": {\"listen\": \"[::1]8470\"}}", 
	  ":4:9: ui.listen: \"[::1]8470\" is not \"<IPv4 address>:<port>\" or \"[<IPv6 address>]:<port>\" (like \"127.0.0.1:8470\")" },
	{ L1 L2 "  \"page_size\": 5},\n \"ui\": {\"secure_cookies\": \"yes\"}}", 
	  ":4:9: ui.secure_cookies: expected true or false, got a string" },
	{ L1 L2 "  \"page_size\": 5},\n \"ui\": {\"password_log2n\": 9}}", 
	  ":4:9: ui.password_log2n: expected an integer from 10 to 20, got 9" },

	/* Jansson's own parse errors keep its line:column */
	{ "{\"store\": }", ":1:11: unexpected token near '}'" },
	{ "{\"store\": {},\n \"store\": {}}", ":2:8: duplicate object key near '\"store\"'" },
	{ "{\"a\": 1,}", ":1:9: string or '}' expected near '}'" },
	{ "", ":1:0: '[' or '{' expected near end of file" },
	{ "{\"a\": \"\\u0000\"}", ":1:14: \\u0000 is not allowed without JSON_ALLOW_NUL near '\"\\u0000\"'" },
	{ "{\"a\": 1} x", ":1:10: end of file expected near 'x'" },
};

static void test_errors(void)
{
	config c = CONFIG_NULL;

	for (size_t i = 0; i < N(err_cases); i++) {
		char *path = put_text("c.json", err_cases[i].json);
		REQUIRE(path);
		char err[1024] = "";
		char want[1024];
		snprintf(want, sizeof(want), "%s%s", path, err_cases[i].expect);
		int r = config_load(&c, path, err, sizeof(err));
		CHECK_INT(r, -1);
		if (strcmp(err, want) != 0)
			fprintf(stderr, "case %zu: %s\n", i, err_cases[i].json);
		CHECK_STR(err, want);
		/* A failed load leaves nothing behind. */
		CHECK(c.path == NULL && c.fhir_base_url == NULL && c.fhir_resources == NULL);
		/* No URL password ever reaches a message. */
		CHECK(strstr(err, "hunter2") == NULL);
		free(path);
	}
	config_deinit(&c);
}

/* 256 types load; 257 are refused. */
static void test_resource_count_limit(void)
{
	for (int n = 256; n <= 257; n++) {
		size_t size = 200 + (size_t)n * 8;
		char *t = malloc(size);
		REQUIRE(t);
		size_t o = (size_t)snprintf(t, size, L1 " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": [");
		for (int i = 0; i < n; i++)
			o += (size_t)snprintf(t + o, size - o, "%s\"X%c%c\"", i ? "," : "", 'a' + i / 26, 'a' + i % 26);
		snprintf(t + o, size - o, "]}}");
		char *path = put_text("n.json", t);
		REQUIRE(path);
		config c = CONFIG_NULL;
		char err[512] = "";
		int r = config_load(&c, path, err, sizeof(err));
		if (n == 256) {
			CHECK_INT(r, 0);
			CHECK_INT(c.n_fhir_resources, 256);
			CHECK_STR(c.fhir_resources[255], "Xjv");
			CHECK(c.fhir_resources[256] == NULL);
		} else {
			char want[512];
			snprintf(want, sizeof(want), "%s:2:36: fhir.resources: lists 257 types; at most 256 are allowed",
				 path);
			CHECK_INT(r, -1);
			CHECK_STR(err, want);
		}
		config_deinit(&c);
		free(path);
		free(t);
	}
}

/* ---- successful loads ---------------------------------------------------------- */

static void test_defaults(void)
{
	char *path = put_text("d.json", L1 " \"fhir\": {\"base_url\": \"http://127.0.0.1:8080/fhir/\",\n"
					   "  \"resources\": [\"Patient\", \"Observation\"]}}");
	REQUIRE(path);
	config c = CONFIG_NULL;
	char err[512] = "";
	CHECK_INT(config_load(&c, path, err, sizeof(err)), 0);
	CHECK_STR(err, "");
	CHECK_STR(c.path, path);
	CHECK_STR(c.fhir_base_url, "http://127.0.0.1:8080/fhir");
	CHECK_INT(c.n_fhir_resources, 2);
	REQUIRE(c.fhir_resources);
	CHECK_STR(c.fhir_resources[0], "Patient");
	CHECK_STR(c.fhir_resources[1], "Observation");
	CHECK(c.fhir_resources[2] == NULL);
	CHECK_INT(c.fhir_page_size, 500);
	CHECK_INT(c.fhir_max_concurrency, 4);
	CHECK_INT(c.fhir_poll_interval_s, 300);
	CHECK_INT(c.fhir_timeout_s, 60);
	CHECK_INT(c.fhir_watermark_skew_s, 30);
	CHECK_INT(c.fhir_retry_max_attempts, 6);
	CHECK_INT(c.fhir_retry_base_ms, 500);
	CHECK_INT(c.fhir_retry_max_ms, 30000);
	CHECK(c.fhir_ca_file == NULL);
	CHECK_INT(c.fhir_auth.type, CONFIG_AUTH_NONE);
	CHECK(c.fhir_auth.token_file == NULL && c.fhir_auth.scope == NULL);
	CHECK(c.log_level == NULL);
	CHECK(c.downtime_identifier_system == NULL && c.downtime_user_system == NULL);
	CHECK_INT(c.downtime_probe_interval_s, 5);
	CHECK_INT(c.downtime_probe_timeout_s, 5);
	CHECK_INT(c.downtime_fail_threshold, 3);
	CHECK_INT(c.downtime_recover_successes, 2);
	CHECK_INT(c.downtime_down_probe_max_s, 10);
	CHECK_INT(c.downtime_resync_batch, 50);
	CHECK(!c.ui_enabled && c.ui_listen == NULL);
	CHECK_INT(c.ui_session_idle_s, 900);
	CHECK_INT(c.ui_password_log2n, 15);
	config_deinit(&c);
	config_deinit(&c); /* idempotent */
	CHECK(c.path == NULL);
	free(path);
}

static void test_all_values_and_bounds(void)
{
	char *path = put_text("v.json",
			      "{\"store\": {\"path\": \"/var/lib/b.db\", \"key_file\": \"/etc/b/store.key\"},\n"
			      " \"fhir\": {\"base_url\": \"HTTPS://ehr.example.org:8443/fhir/R4\",\n"
			      "  \"resources\": [\"Patient\", \"AllergyIntolerance\"],\n"
			      "  \"page_size\": 10000, \"max_concurrency\": 1, \"poll_interval_s\": 86400,\n"
			      "  \"timeout_s\": 1, \"watermark_skew_s\": 0,\n"
			      "  \"retry\": {\"max_attempts\": 100, \"base_ms\": 7, \"max_ms\": 7},\n"
			      "  \"ca_file\": \"/etc/ssl/ca.pem\",\n"
			      "  \"auth\": {\"type\": \"bearer\", \"token_env\": \"EHR_TOKEN\"}},\n"
			      " \"log\": {\"level\": \"debug\"}}");
	REQUIRE(path);
	config c = CONFIG_NULL;
	char err[512] = "";
	CHECK_INT(config_load(&c, path, err, sizeof(err)), 0);
	CHECK_STR(err, "");
	CHECK_STR(c.store_path, "/var/lib/b.db");
	CHECK_STR(c.store_key_file, "/etc/b/store.key");
	CHECK_STR(c.fhir_base_url, "HTTPS://ehr.example.org:8443/fhir/R4");
	CHECK_INT(c.fhir_page_size, 10000);
	CHECK_INT(c.fhir_max_concurrency, 1);
	CHECK_INT(c.fhir_poll_interval_s, 86400);
	CHECK_INT(c.fhir_timeout_s, 1);
	CHECK_INT(c.fhir_watermark_skew_s, 0);
	CHECK_INT(c.fhir_retry_max_attempts, 100);
	CHECK_INT(c.fhir_retry_base_ms, 7);
	CHECK_INT(c.fhir_retry_max_ms, 7);
	CHECK_STR(c.fhir_ca_file, "/etc/ssl/ca.pem");
	CHECK_INT(c.fhir_auth.type, CONFIG_AUTH_BEARER);
	CHECK_STR(c.fhir_auth.token_env, "EHR_TOKEN");
	CHECK(c.fhir_auth.token_file == NULL);
	CHECK_STR(c.log_level, "debug");

	/* Loading again into a loaded config replaces it (valgrind: no leak). */
	char *path2 = put_text("v2.json", L1 L2 "  \"page_size\": 9}}");
	REQUIRE(path2);
	CHECK_INT(config_load(&c, path2, err, sizeof(err)), 0);
	CHECK_INT(c.fhir_page_size, 9);
	CHECK_STR(c.fhir_base_url, "http://h");
	CHECK(c.log_level == NULL);
	/* A failed load clears what was there. */
	char *bad = put_text("bad.json", "{");
	CHECK_INT(config_load(&c, bad, err, sizeof(err)), -1);
	CHECK(c.fhir_base_url == NULL && c.path == NULL);
	config_deinit(&c);
	free(path);
	free(path2);
	free(bad);
}

static void test_downtime_and_ui(void)
{
	char *path = put_text("d.json", L1 L2 "  \"page_size\": 5},\n"
			      " \"downtime\": {\"identifier_system\": \"urn:oid:2.16.840.1.113883.3.999.1\",\n"
			      "  \"user_system\": \"https://hospital.example/staff\", \"probe_interval_s\": 2,\n"
			      "  \"probe_timeout_s\": 3, \"fail_threshold\": 4, \"recover_successes\": 1,\n"
			      "  \"down_probe_max_s\": 7, \"resync_batch\": 500},\n"
			      " \"ui\": {\"listen\": \"[::1]:0\", \"session_idle_s\": 60, \"lockout_failures\": 1,\n"
			      "  \"lockout_s\": 86400, \"password_log2n\": 20, \"secure_cookies\": true}}");
	REQUIRE(path);
	config c = CONFIG_NULL;
	char err[512] = "";
	CHECK_INT(config_load(&c, path, err, sizeof(err)), 0);
	CHECK_STR(err, "");
	CHECK_STR(c.downtime_identifier_system, "urn:oid:2.16.840.1.113883.3.999.1");
	CHECK_STR(c.downtime_user_system, "https://hospital.example/staff");
	CHECK_INT(c.downtime_probe_interval_s, 2);
	CHECK_INT(c.downtime_probe_timeout_s, 3);
	CHECK_INT(c.downtime_fail_threshold, 4);
	CHECK_INT(c.downtime_recover_successes, 1);
	CHECK_INT(c.downtime_down_probe_max_s, 7);
	CHECK_INT(c.downtime_resync_batch, 500);
	CHECK(c.ui_enabled);
	CHECK_STR(c.ui_listen, "[::1]:0");
	CHECK_INT(c.ui_session_idle_s, 60);
	CHECK_INT(c.ui_lockout_failures, 1);
	CHECK_INT(c.ui_lockout_s, 86400);
	CHECK_INT(c.ui_password_log2n, 20);
	CHECK(c.ui_secure_cookies);
	free(path);

	/* An empty ui object turns the page on at the default address. */
	path = put_text("u.json", L1 L2 "  \"page_size\": 5},\n \"ui\": {}}");
	REQUIRE(path);
	CHECK_INT(config_load(&c, path, err, sizeof(err)), 0);
	CHECK(c.ui_enabled);
	CHECK_STR(c.ui_listen, "127.0.0.1:8470");
	CHECK(!c.ui_secure_cookies);
	CHECK(c.downtime_identifier_system == NULL);
	config_deinit(&c);
	free(path);
}

static void test_smart_backend(void)
{
	char *path = put_text("s.json", L1 L2 SMART3 "   \"token_url\": \"https://auth.example.org/token?aud=x\",\n"
					   "   \"client_id\": \"bridge-01\",\n"
					   "   \"private_key_file\": \"keys/bridge.pem\",\n"
					   "   \"alg\": \"ES384\", \"kid\": \"k1\"}}}");
	REQUIRE(path);
	config c = CONFIG_NULL;
	char err[512] = "";
	CHECK_INT(config_load(&c, path, err, sizeof(err)), 0);
	CHECK_STR(err, "");
	const config_auth *a = &c.fhir_auth;
	CHECK_INT(a->type, CONFIG_AUTH_SMART_BACKEND);
	CHECK_STR(a->token_url, "https://auth.example.org/token?aud=x");
	CHECK_STR(a->client_id, "bridge-01");
	char want[PATH_MAX + 32];
	snprintf(want, sizeof(want), "%s/keys/bridge.pem", tmp);
	CHECK_STR(a->private_key_file, want);
	CHECK_STR(a->alg, "ES384");
	CHECK_STR(a->kid, "k1");
	CHECK_STR(a->scope, "system/*.read");
	CHECK(a->token_file == NULL && a->token_env == NULL);
	config_deinit(&c);

	/* A given scope is kept; kid stays optional. */
	char *p2 = put_text("s2.json", L1 L2 SMART3 "   \"token_url\": \"http://127.0.0.1:9/t\",\n"
					 "   \"client_id\": \"c\", \"private_key_file\": \"/k.pem\",\n"
					 "   \"alg\": \"RS384\", \"scope\": \"system/Patient.read system/Observation.read\"}}}");
	REQUIRE(p2);
	CHECK_INT(config_load(&c, p2, err, sizeof(err)), 0);
	CHECK_STR(c.fhir_auth.scope, "system/Patient.read system/Observation.read");
	CHECK(c.fhir_auth.kid == NULL);
	CHECK_STR(c.fhir_auth.private_key_file, "/k.pem");
	config_deinit(&c);
	free(path);
	free(p2);
}

/* Relative paths resolve against the config file's directory. */
static void test_relative_paths(void)
{
	char sub[PATH_MAX];
	snprintf(sub, sizeof(sub), "%s/sub", tmp);
	REQUIRE(mkdir(sub, 0700) == 0 || errno == EEXIST);
	char *path = put_text("sub/r.json", "{\"store\": {\"path\": \"data/b.db\", \"key_file\": \"/abs/store.key\"},\n"
					     " \"fhir\": {\"base_url\": \"https://h\", \"resources\": [\"Patient\"],\n"
					     "  \"ca_file\": \"../ca.pem\",\n"
					     "  \"auth\": {\"type\": \"bearer\", \"token_file\": \"ehr.token\"}}}");
	REQUIRE(path);
	config c = CONFIG_NULL;
	char err[512] = "";
	char want[PATH_MAX + 32];
	CHECK_INT(config_load(&c, path, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/data/b.db", sub);
	CHECK_STR(c.store_path, want);
	CHECK_STR(c.store_key_file, "/abs/store.key");
	snprintf(want, sizeof(want), "%s/../ca.pem", sub);
	CHECK_STR(c.fhir_ca_file, want);
	snprintf(want, sizeof(want), "%s/ehr.token", sub);
	CHECK_STR(c.fhir_auth.token_file, want);
	CHECK_STR(c.fhir_base_url, "https://h");
	config_deinit(&c);

	/* A config path without a directory leaves relative paths as they are. */
	char cwd[PATH_MAX];
	REQUIRE(getcwd(cwd, sizeof(cwd)));
	REQUIRE(chdir(sub) == 0);
	CHECK_INT(config_load(&c, "r.json", err, sizeof(err)), 0);
	CHECK_STR(c.store_path, "data/b.db");
	CHECK_STR(c.path, "r.json");
	CHECK_INT(config_load(&c, "./r.json", err, sizeof(err)), 0);
	CHECK_STR(c.store_path, "./data/b.db");
	config_deinit(&c);
	/* A config at the root of the tree: "/" + path. */
	CHECK(chdir(cwd) == 0);
	free(path);
}

/* The shipped example loads, with the values the README documents. */
static void test_example_file(void)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/conf/bridge.example.json", harness_source_root());
	config c = CONFIG_NULL;
	char err[1024] = "";
	int r = config_load(&c, path, err, sizeof(err));
	if (r)
		fprintf(stderr, "%s\n", err);
	REQUIRE(r == 0);
	CHECK_STR(c.fhir_base_url, "https://ehr.example.org/fhir/R4");
	CHECK_INT(c.n_fhir_resources, 6);
	CHECK_STR(c.fhir_resources[5], "AllergyIntolerance");
	CHECK_INT(c.fhir_page_size, 500);
	CHECK_INT(c.fhir_auth.type, CONFIG_AUTH_SMART_BACKEND);
	CHECK_STR(c.fhir_auth.alg, "RS384");
	CHECK_STR(c.log_level, "info");
	char want[PATH_MAX + 32];
	snprintf(want, sizeof(want), "%s/conf/bridge.db", harness_source_root());
	CHECK_STR(c.store_path, want);
	REQUIRE(c.n_redcap_projects == 1);
	snprintf(want, sizeof(want), "%s/conf/example-project/mapping.json", harness_source_root());
	CHECK_STR(c.redcap_projects[0].mapping, want);
	CHECK_STR(c.site_timezone, "Europe/Zurich");
	CHECK_INT(c.redcap_retry_base_ms, 1000);
	config_deinit(&c);
}

static void test_file_problems(void)
{
	config c = CONFIG_NULL;
	char err[512] = "";
	char want[PATH_MAX + 64];

	snprintf(want, sizeof(want), "%s/none.json", tmp);
	CHECK_INT(config_load(&c, want, err, sizeof(err)), -1);
	strcat(want, ": cannot open: No such file or directory");
	CHECK_STR(err, want);

	CHECK_INT(config_load(&c, tmp, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: not a regular file", tmp);
	CHECK_STR(err, want);

	CHECK_INT(config_load(&c, "", err, sizeof(err)), -1);
	CHECK_STR(err, "no config file given");

	/* Over 1 MiB: refused before parsing. */
	size_t big = 1024 * 1024 + 1;
	char *blob = malloc(big);
	REQUIRE(blob);
	memset(blob, ' ', big);
	blob[0] = '{';
	blob[big - 1] = '}';
	char *p = put_file("big.json", blob, big, 0644);
	REQUIRE(p);
	CHECK_INT(config_load(&c, p, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: larger than 1048576 bytes", p);
	CHECK_STR(err, want);
	free(p);
	free(blob);

	/* A tiny error buffer is cut, never overrun; NULL is allowed. */
	p = put_text("c.json", "[]");
	char small[8];
	memset(small, 'x', sizeof(small));
	CHECK_INT(config_load(&c, p, small, sizeof(small)), -1);
	CHECK_INT(strlen(small), 7);
	CHECK_INT(config_load(&c, p, NULL, 0), -1);
	free(p);
	config_deinit(&c);
}

/* ---- secrets ---------------------------------------------------------------------- */

static void check_secret(const char *name, const char *data, size_t len, mode_t mode, const char *want,
			 size_t want_len)
{
	char *p = put_file(name, data, len, mode);
	REQUIRE(p);
	char err[512] = "";
	size_t got_len = 12345;
	char *s = secret_read_file(p, &got_len, err, sizeof(err));
	CHECK(s != NULL);
	CHECK_STR(err, "");
	if (s) {
		CHECK_INT(got_len, want_len);
		CHECK(memcmp(s, want, want_len) == 0);
		CHECK_INT(s[want_len], '\0');
	}
	secret_free(s);
	free(p);
}

static void check_secret_refused(const char *name, const char *data, size_t len, mode_t mode, const char *msg)
{
	char *p = put_file(name, data, len, mode);
	REQUIRE(p);
	char err[512] = "";
	char want[PATH_MAX + 256];
	size_t got_len = 12345;
	/* want: path + msg, and the path again after a trailing "chmod 600 ". */
	size_t ml = strlen(msg);
	bool again = ml >= 10 && strcmp(msg + ml - 10, "chmod 600 ") == 0;
	snprintf(want, sizeof(want), "%s%s%s", p, msg, again ? p : "");
	CHECK(secret_read_file(p, &got_len, err, sizeof(err)) == NULL);
	CHECK_STR(err, want);
	CHECK_INT(got_len, 0);
	/* The message never carries the secret. */
	if (len >= 6)
		CHECK(memmem(err, strlen(err), data, 6) == NULL);
	free(p);
}

static void test_secret_permissions(void)
{
	check_secret_refused("t1", "s3cr3t-token\n", 13, 0644,
			     ": permissions 0644 are too open (group/others can read it); run chmod 600 ");
	check_secret_refused("t2", "s3cr3t-token\n", 13, 0640,
			     ": permissions 0640 are too open (group/others can read it); run chmod 600 ");
	check_secret_refused("t3", "s3cr3t-token\n", 13, 0604,
			     ": permissions 0604 are too open (group/others can read it); run chmod 600 ");
	check_secret_refused("t4", "s3cr3t-token\n", 13, 0620,
			     ": permissions 0620 are too open (group/others can write or execute it); run chmod 600 ");
	check_secret_refused("t5", "s3cr3t-token\n", 13, 0601,
			     ": permissions 0601 are too open (group/others can write or execute it); run chmod 600 ");
	check_secret("t6", "s3cr3t-token\n", 13, 0600, "s3cr3t-token", 12);
	check_secret("t7", "s3cr3t-token\n", 13, 0400, "s3cr3t-token", 12);
	check_secret("t8", "s3cr3t-token\n", 13, 0700, "s3cr3t-token", 12);
}

static void test_secret_newlines(void)
{
	check_secret("n1", "abc", 3, 0600, "abc", 3);
	check_secret("n2", "abc\r\n", 5, 0600, "abc", 3);
	check_secret("n3", "abc\n\n", 5, 0600, "abc\n", 4);
	check_secret("n4", "abc\r", 4, 0600, "abc\r", 4);
	check_secret("n5", "a\nb\n", 4, 0600, "a\nb", 3);
	check_secret("n6", "a\0b\n", 4, 0600, "a\0b", 3);
	check_secret("n7", "\n\n", 2, 0600, "\n", 1);
	check_secret_refused("n8", "\n", 1, 0600, ": is empty");
	check_secret_refused("n9", "\r\n", 2, 0600, ": is empty");
	check_secret_refused("n10", "", 0, 0600, ": is empty");

	/* len may be NULL. */
	char *p = put_file("n11", "tok\n", 4, 0600);
	REQUIRE(p);
	char err[256] = "";
	char *s = secret_read_file(p, NULL, err, sizeof(err));
	CHECK_STR(s, "tok");
	secret_free(s);
	secret_free(NULL);
	free(p);
}

static void test_secret_size_and_kind(void)
{
	size_t max = 64 * 1024;
	char *blob = malloc(max + 3);
	REQUIRE(blob);
	/* 64 KiB plus a newline or CRLF: fits. */
	memset(blob, 'k', max + 3);
	memcpy(blob + max, "\r\n", 2);
	check_secret("z1", blob, max + 2, 0600, blob, max);
	blob[max] = '\n';
	check_secret("z2", blob, max + 1, 0600, blob, max);
	/* One byte more than 64 KiB: refused, with or without a newline. */
	memset(blob, 'k', max + 3);
	check_secret_refused("z3", blob, max + 1, 0600, ": larger than 65536 bytes");
	blob[max + 1] = '\n';
	check_secret_refused("z4", blob, max + 2, 0600, ": larger than 65536 bytes");
	memcpy(blob + max + 1, "\r\n", 2);
	check_secret_refused("z5", blob, max + 3, 0600, ": larger than 65536 bytes");
	free(blob);

	char err[512] = "";
	char want[PATH_MAX + 64];
	CHECK(secret_read_file(tmp, NULL, err, sizeof(err)) == NULL);
	snprintf(want, sizeof(want), "%s: not a regular file", tmp);
	CHECK_STR(err, want);

	/* A FIFO is refused at once, not waited on. */
	char fifo[PATH_MAX];
	snprintf(fifo, sizeof(fifo), "%s/fifo", tmp);
	REQUIRE(mkfifo(fifo, 0600) == 0);
	CHECK(secret_read_file(fifo, NULL, err, sizeof(err)) == NULL);
	snprintf(want, sizeof(want), "%s: not a regular file", fifo);
	CHECK_STR(err, want);
	unlink(fifo);

	snprintf(want, sizeof(want), "%s/missing.key", tmp);
	CHECK(secret_read_file(want, NULL, err, sizeof(err)) == NULL);
	strcat(want, ": cannot open: No such file or directory");
	CHECK_STR(err, want);

	/* A symlink to a 0600 file is followed; the target's mode counts. */
	char *target = put_file("real.key", "abc\n", 4, 0600);
	REQUIRE(target);
	char link[PATH_MAX];
	snprintf(link, sizeof(link), "%s/link.key", tmp);
	REQUIRE(symlink(target, link) == 0);
	char *s = secret_read_file(link, NULL, err, sizeof(err));
	CHECK_STR(s, "abc");
	secret_free(s);
	REQUIRE(chmod(target, 0644) == 0);
	CHECK(secret_read_file(link, NULL, err, sizeof(err)) == NULL);
	unlink(link);
	free(target);
}

static void rm_tree(const char *dir)
{
	char *cmd = NULL;
	if (asprintf(&cmd, "rm -rf '%s'", dir) >= 0 && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(cmd);
}

/* site, fhir.mrn_system and redcap: values land, paths resolve, defaults hold. */
static void test_redcap_section(void)
{
	config c = CONFIG_NULL;
	char err[1024] = "";
	char *path = put_text("rc.json",
			      "{\"store\": {\"path\": \"b.db\", \"key_file\": \"k\"},\n"
			      " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": [\"Patient\"],\n"
			      "  \"mrn_system\": \"urn:oid:1.2.36.146.595.217.0.1\"},\n"
			      " \"site\": {\"timezone\": \"Europe/Zurich\"},\n"
			      " \"redcap\": {\"batch_size\": 250, \"projects\": [\n"
			      "  {\"name\": \"study-a\", \"url\": \"https://redcap.example.org/api/\", \"token_file\": \"a.token\",\n"
			      "   \"mapping\": \"mapping.json\"},\n"
			      "  {\"name\": \"export_only\", \"url\": \"https://redcap.example.org/api/\", \"token_env\": \"RC_TOKEN\"}]}}");
	REQUIRE(path);
	CHECK_INT(config_load(&c, path, err, sizeof(err)), 0);
	CHECK_STR(err, "");
	CHECK_STR(c.fhir_mrn_system, "urn:oid:1.2.36.146.595.217.0.1");
	CHECK_STR(c.site_timezone, "Europe/Zurich");
	CHECK_INT(c.redcap_batch_size, 250);
	CHECK_INT(c.redcap_max_requests_per_minute, 120);
	CHECK_INT(c.redcap_timeout_s, 120);
	CHECK_INT(c.redcap_retry_max_attempts, 6);
	REQUIRE(c.n_redcap_projects == 2);
	CHECK_STR(c.redcap_projects[0].name, "study-a");
	CHECK_STR(c.redcap_projects[0].url, "https://redcap.example.org/api/");
	CHECK(c.redcap_projects[0].token_file && strstr(c.redcap_projects[0].token_file, "/a.token"));
	CHECK(c.redcap_projects[0].mapping && strstr(c.redcap_projects[0].mapping, "/mapping.json"));
	CHECK(c.redcap_projects[1].mapping == NULL);
	CHECK_STR(c.redcap_projects[1].token_env, "RC_TOKEN");
	config_deinit(&c);
	free(path);

	/* Without site and redcap: UTC, no projects, the defaults. */
	path = put_text("min.json", "{\"store\": {\"path\": \"b.db\", \"key_file\": \"k\"},\n"
				    " \"fhir\": {\"base_url\": \"http://h/\", \"resources\": [\"Patient\"]}}");
	REQUIRE(path);
	CHECK_INT(config_load(&c, path, err, sizeof(err)), 0);
	CHECK_STR(c.site_timezone, "UTC");
	CHECK_INT(c.n_redcap_projects, 0);
	CHECK_INT(c.redcap_batch_size, 100);
	CHECK_INT(c.redcap_retry_max_attempts, 6);
	CHECK_INT(c.redcap_retry_base_ms, 1000);
	CHECK_INT(c.redcap_retry_max_ms, 60000);
	CHECK(c.fhir_mrn_system == NULL);
	config_deinit(&c);
	free(path);
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_errors),
		HARNESS_TEST(test_redcap_section),
		HARNESS_TEST(test_resource_count_limit),
		HARNESS_TEST(test_defaults),
		HARNESS_TEST(test_all_values_and_bounds),
		HARNESS_TEST(test_smart_backend),
		HARNESS_TEST(test_downtime_and_ui),
		HARNESS_TEST(test_relative_paths),
		HARNESS_TEST(test_example_file),
		HARNESS_TEST(test_file_problems),
		HARNESS_TEST(test_secret_permissions),
		HARNESS_TEST(test_secret_newlines),
		HARNESS_TEST(test_secret_size_and_kind),
	};
	tmp = harness_tmpdir();
	if (!tmp) {
		fprintf(stderr, "no temporary directory\n");
		return 2;
	}
	int r = harness_main(tests, N(tests), argc, argv);
	rm_tree(tmp);
	free(tmp);
	return r;
}
