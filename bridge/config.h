/*
 * The daemon's configuration: a JSON file, loaded strictly. Unknown keys,
 * wrong types, out-of-range values and duplicate keys are errors that name
 * file:line:column and the key path (e.g. "conf/x.json:12:5: fhir.page_size:
 * expected an integer from 1 to 1000, got a string").
 *
 * Relative paths inside the file (store.path, key files, token files) are
 * resolved against the directory of the config file (the directory part of
 * the path as given: "conf/x.json" + "bridge.db" -> "conf/bridge.db").
 *
 * Every key, type, default and range is listed in conf/README.md,
 * "Configuration reference"; conf/bridge.example.json is a complete file.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef enum config_auth_type {
	CONFIG_AUTH_NONE = 0,
	CONFIG_AUTH_BEARER,
	CONFIG_AUTH_SMART_BACKEND,
} config_auth_type;

typedef struct config_auth {
	config_auth_type type;
	char *token_file;        /* bearer: exactly one of token_file (resolved) and token_env */
	char *token_env;         /* bearer: name of an environment variable holding the token */
	char *token_url;         /* smart-backend: http(s) URL, required */
	char *client_id;         /* smart-backend: required */
	char *private_key_file;  /* smart-backend: required (resolved) */
	char *alg;               /* smart-backend: "RS384" | "ES384", required */
	char *kid;               /* smart-backend: optional, NULL when absent */
	char *scope;             // smart-backend: default "system/*.read"
	/* Fields that do not belong to the type are rejected at load: NULL. */
} config_auth;

/* One REDCap project (redcap.projects[]). */
typedef struct config_redcap_project {
	char *name;              /* unique, [A-Za-z0-9_.-]{1,64}: used on the command line (--project) */
	char *url;               /* the API endpoint, e.g. https://redcap.example.org/api/ */
	char *token_file;        /* the API token (32 hex digits in practice), mode 0600; or token_env */
	char *token_env;
	char *mapping;           /* mapping file (resolved), or NULL: an export-only project */
} config_redcap_project;

typedef struct config {
	char *path;              /* the config file as given */

	char *store_path;        /* store.path (resolved) */
	char *store_key_file;    /* store.key_file (resolved) */

	char *fhir_base_url;     /* fhir.base_url, without trailing '/' */
	char **fhir_resources;   /* fhir.resources: NULL-terminated list of type names */
	size_t n_fhir_resources;
	unsigned fhir_page_size;         /* default 500, 1..10000 */
	unsigned fhir_max_concurrency;   /* default 4, 1..64 */
	unsigned fhir_poll_interval_s;   /* default 300, 1..86400 */
	unsigned fhir_timeout_s;         /* per request, default 60, 1..3600 */
	unsigned fhir_watermark_skew_s;  /* default 30, 0..3600 */
	unsigned fhir_retry_max_attempts;/* default 6, 1..100 */
	unsigned fhir_retry_base_ms;     /* default 500, 1..600000 */
	unsigned fhir_retry_max_ms;      /* default 30000, 1..3600000, >= base_ms; also the cap on Retry-After */
	char *fhir_ca_file;              /* optional CA bundle for TLS (verification stays on); resolved */
	config_auth fhir_auth;           /* default type none when "auth" is absent */
	char *fhir_mrn_system;           /* fhir.mrn_system: the Patient.identifier system of the site's MRN, or NULL */

	char *site_timezone;             /* site.timezone: IANA zone name, default "UTC" */

	config_redcap_project *redcap_projects; /* redcap.projects, n_redcap_projects of them (may be 0) */
	size_t n_redcap_projects;
	unsigned redcap_batch_size;              /* rows per import request, default 100, 1..10000 */
	unsigned redcap_max_requests_per_minute; /* default 120, 1..600 (REDCap bans an IP above 600/min) */
	unsigned redcap_timeout_s;               /* per request, default 120, 1..3600 */
	unsigned redcap_retry_max_attempts;      /* per request and cycle, default 6, 1..100 */
	unsigned redcap_retry_base_ms;           /* backoff start, default 1000, 1..600000 */
	unsigned redcap_retry_max_ms;            /* backoff cap (and Retry-After cap), default 60000, >= base */
	char *redcap_ca_file;                    /* optional CA bundle for REDCap (verification stays on) */

	/* downtime: charting during EHR outages and the circuit breaker on the EHR connection. */
	char *downtime_identifier_system;  /* downtime.identifier_system: system of entry identifiers; NULL = charting off */
	char *downtime_user_system;        /* downtime.user_system: system of clinician identifiers, or NULL */
	unsigned downtime_probe_interval_s;  /* health probe period while up, default 5, 1..3600 */
	unsigned downtime_probe_timeout_s;   /* health probe timeout, default 5, 1..600 */
	unsigned downtime_fail_threshold;    /* consecutive failures that mean down, default 3, 1..100 */
	unsigned downtime_recover_successes; /* consecutive probe successes that mean up again, default 2, 1..100 */
	unsigned downtime_down_probe_max_s;  /* cap of the probe backoff while down, default 10, 1..3600 */
	unsigned downtime_resync_batch;      /* entries per transaction Bundle, default 50, 1..500 */

	/* ui: the local charting page. Served only when the "ui" object is present. */
	bool ui_enabled;
	char *ui_listen;                 /* ui.listen "host:port" (IP literal; [v6]:port), default "127.0.0.1:8470" */
	unsigned ui_session_idle_s;      /* default 900, 60..86400 */
	unsigned ui_lockout_failures;    /* failed logins before a lock, default 5, 1..100 */
	unsigned ui_lockout_s;           /* lock duration, default 900, 1..86400 */
	unsigned ui_password_log2n;      /* scrypt cost of new password hashes (N = 2^x), default 15, 10..20 */
	bool ui_secure_cookies;          /* mark cookies Secure (page behind a TLS proxy), default false */

	char *log_level;                 /* log.level: "error"|"warn"|"info"|"debug", or NULL when absent */
} config;

#define CONFIG_NULL { 0 }

/*
 * Load and validate the file. Returns 0, or -1 with a one-line message in
 * err ("file:line:col: key: what is wrong"; "file: what is wrong" when the
 * file cannot be read). c must be CONFIG_NULL or a config loaded before: it
 * is deinitialised first, and stays deinitialised (zeroed) on failure.
 * config_deinit() is idempotent.
 */
int config_load(config *c, const char *path, char *err, size_t err_size);
void config_deinit(config *c);

/*
 * Read a secret from a file: refuse anything but a regular file, a file
 * group or others may access ("<path>: permissions 0644 are too open
 * (group/others can read it); run chmod 600 <path>"), an empty file and one
 * over 64 KiB; strip one trailing "\n" or "\r\n". Messages never hold
 * secret bytes. Returns malloc'd NUL-terminated bytes (*len set when
 * non-NULL) or NULL with err. The buffer should be freed with secret_free().
 */
char *secret_read_file(const char *path, size_t *len, char *err, size_t err_size);
/* Wipe (the whole malloc'd block) and free any malloc'd string; NULL is fine. */
void secret_free(char *secret);
