/*
 * fhir-redcap-bridge — the program: subcommands, the event loop, signals.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <uv.h>

#include "bridge/auth.h"
#include "bridge/cli.h"
#include "bridge/cmd-downtime.h"
#include "bridge/config.h"
#include "bridge/curate.h"
#include "bridge/downtime.h"
#include "bridge/export.h"
#include "bridge/http.h"
#include "bridge/log.h"
#include "bridge/mapping.h"
#include "bridge/patients.h"
#include "bridge/push.h"
#include "bridge/sync.h"
#include "bridge/ui.h"
#include "bridge/util.h"
#include "offline-store/outbox.h"
#include "offline-store/store.h"

#ifndef BRIDGE_VERSION
#define BRIDGE_VERSION "0.0.0"
#endif

enum {
	EXIT_SYNC_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_STORE = 3,
};

typedef struct app {
	uv_loop_t loop;
	config cfg;
	store *st;
	store *st_dt;            /* a second connection for the loop thread's downtime work (the
				  * EHR writer, the page): a->st moves to worker threads for the pull's
				  * pages and the curation, and one handle is for one thread at a time */
	int64_t server_id;
	http_client *http;
	auth *auth;
	uv_signal_t sig_int, sig_term;
	uv_timer_t poll_timer;
	sync_cycle *cy;
	mapping **maps;          /* per redcap.projects[i], NULL when it has no mapping */
	bool any_mapping;
	const char *const **anchor_fields; /* per project: fields of anchors typed into REDCap, or NULL */
	size_t *n_anchor_fields;
	bool any_anchor;
	json_t **anchors;        /* per project: this cycle's REDCap anchor values, or NULL */
	char ***anchor_records;  /* per project: the records of this cycle's waiting patients (anchor read) */
	size_t *n_anchor_records;
	int64_t *anchor_listed_at; /* per project: when REDCap listed the changed records, 0: it did not */
	push_run *anchor_run;
	http_client *rc_http;    /* REDCap's client (redcap.ca_file) */
	rc_servers *servers;      /* REDCap servers: rate windows, stop marks */
	push_run *push;
	uv_work_t curate_work;
	bool curating;
	volatile int curate_stop;
	int curate_rc;
	curate_stats cstats;
	json_t *cycle_res;       /* the cycle's result, filled as its phases end */
	downtime *dt;            /* the EHR breaker and the writer of chart entries */
	ui *ui;                  /* the charting page (run with a "ui" config object) */
	bool cycle_running;
	bool cycle_again;        /* start another cycle as soon as this one ends */
	bool pull_skipped;       /* this cycle skipped the pull: the EHR is down */
	json_t *drain_stats;     /* sync --once: what the downtime writer did */
	bool pull_ok;
	bool daemon;
	bool json;
	bool stopping;
	int signals;
	int exit_code;
	uint64_t cycle_started_ms;
} app;

/* ---- shared option handling --------------------------------------------- */

typedef struct common_opts {
	const char *config;
	const char *log_level;
	bool json;
	bool once;
	bool bodies;
	const char *type;
	const char *project;
	const char *record;
	const char *field;
	const char *actor;
	char **args;             /* positional arguments, when the command takes them */
	int n_args;
	bool takes_args;
	bool needs_project;      /* a usage error without --project */
} common_opts;

static void usage_main(FILE *f)
{
	fprintf(f,
		"usage: fhir-redcap-bridge <command> [options]\n"
		"\n"
		"commands:\n"
		"  sync --once --config FILE   one cycle: pull, curate into the REDCap outbox, push; then exit\n"
		"  run --config FILE           the daemon: a sync cycle every fhir.poll_interval_s, the EHR\n"
		"                              breaker, the write-back of downtime entries, the charting page\n"
		"  status --config FILE        what the local store holds (--json for a JSON object)\n"
		"  dump --config FILE --type T list stored resources of a type (NDJSON; --bodies for the resources)\n"
		"  check --config FILE         validate the config and every mapping against the live REDCap projects\n"
		"  explain --config FILE --project P --record R --field F\n"
		"                              where the value the bridge sent for a field came from\n"
		"  review list|accept ID...|reject ID... --config FILE\n"
		"                              the values that wait for a person before they go to REDCap\n"
		"  review entries|show|reapply|resend|discard|link ... --config FILE\n"
		"                              downtime entries that need a person (conflicts, refusals, links)\n"
		"  users add|passwd|list|disable|enable [NAME] --config FILE\n"
		"                              the clinicians who chart during downtime (password on stdin)\n"
		"  chart vitals|note|med-admin|med-stop|allergy-error|register|list --config FILE --user U ...\n"
		"                              chart into the bridge; written to the EHR exactly once when it is up\n"
		"  summary --config FILE --patient MRN|DT-ID | --search TEXT\n"
		"                              a patient's cached summary (works while the EHR is down)\n"
		"  audit [--verify] --config FILE\n"
		"                              the audit log of views and entries; --verify checks its chain\n"
		"  export --config FILE --project P [--out DIR] [--format csv|json|ndjson] ...\n"
		"                              a REDCap project's records and dictionary to files, resumable\n"
		"  push-resume --config FILE --project P\n"
		"                              allow pushing again after REDCap banned this host\n"
		"  push-release --config FILE --project P [--record R]\n"
		"                              send the rows held back (see `status`) again with the next sync\n"
		"  version                     print the version\n"
		"\n"
		"Every command takes --help, --log-level error|warn|info|debug.\n"
		"Exit status: 0 ok, 1 a sync did not complete, 2 usage or configuration error,\n"
		"3 the store could not be opened (key, schema, file).\n");
}

static void usage_cmd(FILE *f, const char *cmd)
{
	if (strcmp(cmd, "sync") == 0)
		fprintf(f, "usage: fhir-redcap-bridge sync --once --config FILE [--json] [--log-level L]\n"
			   "  Runs one cycle. Pull: over fhir.resources, an incremental search by _lastUpdated\n"
			   "  from each type's watermark (or resumes an interrupted crawl), every page stored\n"
			   "  with its cursor in one transaction. Curate: the patients with new data, through\n"
			   "  each redcap project's mapping, into the outbox. Push: the outbox to REDCap, rows\n"
			   "  REDCap would refuse held back with its messages. Exits 0 if every pull and push\n"
			   "  completed (also with rows held back: it says how many), 1 otherwise (the errors\n"
			   "  are logged and kept for `status`).\n"
			   "  --json   print the cycle's result as one JSON object on stdout\n");
	else if (strcmp(cmd, "run") == 0)
		fprintf(f, "usage: fhir-redcap-bridge run --config FILE [--log-level L]\n"
			   "  The daemon: a sync cycle every fhir.poll_interval_s seconds. SIGINT or SIGTERM\n"
			   "  stops it gracefully (the transaction in flight commits); a second signal exits\n"
			   "  at once.\n");
	else if (strcmp(cmd, "status") == 0)
		fprintf(f, "usage: fhir-redcap-bridge status --config FILE [--json]\n"
			   "  What the store holds: resources per type, versions, crawl cursors, last sync,\n"
			   "  patients waiting for curation, each REDCap project's outbox (held rows with\n"
			   "  their reasons, refused patients).\n"
			   "  Opens the store read-only, so it works while a daemon writes.\n");
	else if (strcmp(cmd, "dump") == 0)
		fprintf(f, "usage: fhir-redcap-bridge dump --config FILE --type TYPE [--bodies]\n"
			   "  One JSON line per stored resource of TYPE: type, id, versionId, lastUpdated,\n"
			   "  patient; with --bodies the decrypted resource itself. Prints PHI: use with care.\n");
	else if (strcmp(cmd, "check") == 0)
		fprintf(f, "usage: fhir-redcap-bridge check --config FILE [--project P]\n"
			   "  Loads the config and every mapping, reads each project's live dictionary from\n"
			   "  REDCap (project, metadata, events, repeating setup) and checks the mapping\n"
			   "  against it: fields exist and fit the transforms, choice maps give valid codes,\n"
			   "  repeating rules target repeating instruments, events exist. One line per\n"
			   "  problem; exit 0 when all fit, 1 otherwise, 2 for a config or mapping error.\n");
	else if (strcmp(cmd, "explain") == 0)
		fprintf(f, "usage: fhir-redcap-bridge explain --config FILE --project P --record R --field F [--json]\n"
			   "  For each value of field F the bridge sent for record R (one per instance of a\n"
			   "  repeating instrument): the FHIR resource type, id and version and the mapping\n"
			   "  rule it came from. Exit 1 if the bridge sent no such value.\n");
	else if (strcmp(cmd, "review") == 0)
		fprintf(f, "usage: fhir-redcap-bridge review list [--project P] [--json] --config FILE\n"
			   "       fhir-redcap-bridge review accept|reject ID... [--by NAME] --config FILE\n"
			   "  Values of rules marked \"review\": true wait here. list shows them (PHI: the\n"
			   "  values themselves); accept queues them for REDCap (sent with the next sync),\n"
			   "  reject keeps them out (the same values are not queued again). The decision is\n"
			   "  recorded with --by NAME, else the login name.\n");
	else if (strcmp(cmd, "push-resume") == 0)
		fprintf(f, "usage: fhir-redcap-bridge push-resume --config FILE --project P\n"
			   "  After REDCap banned this host (HTTP 429) the bridge sends nothing to it. Once\n"
			   "  REDCap's administrators have lifted the ban, this lets the next sync push again\n"
			   "  to every project on the REDCap server of project P.\n");
	else if (strcmp(cmd, "push-release") == 0)
		fprintf(f, "usage: fhir-redcap-bridge push-release --config FILE --project P [--record R]\n"
			   "  Rows held back (`status` lists them with their reasons) stay out of REDCap until\n"
			   "  their data change. Once the cause is fixed (in REDCap: a choice, a validation, the\n"
			   "  project's setup), this makes the held rows of project P (of record R only, with\n"
			   "  --record) pending again: the next sync validates and sends them. Rows held by the\n"
			   "  bridge's own check against the dictionary need no command: they are checked again\n"
			   "  every cycle. Rows of a refused patient are not released: they go when the\n"
			   "  patient is no longer refused.\n");
	else
		usage_main(f);
}

/* Parse the options every subcommand shares (and check those o asks for).
 * Returns -1 after printing help (exit 0) or -2 on a usage error (exit 2). */
static int parse_opts(const char *cmd, int argc, char **argv, common_opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "once", no_argument, NULL, 'o' },
		{ "type", required_argument, NULL, 't' },
		{ "bodies", no_argument, NULL, 'b' },
		{ "project", required_argument, NULL, 'p' },
		{ "record", required_argument, NULL, 'r' },
		{ "field", required_argument, NULL, 'f' },
		{ "by", required_argument, NULL, 'y' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 'l':
			o->log_level = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 'o':
			o->once = true;
			break;
		case 't':
			o->type = optarg;
			break;
		case 'b':
			o->bodies = true;
			break;
		case 'p':
			o->project = optarg;
			break;
		case 'r':
			o->record = optarg;
			break;
		case 'f':
			o->field = optarg;
			break;
		case 'y':
			o->actor = optarg;
			break;
		case 'h':
			usage_cmd(stdout, cmd);
			return -1;
		default:
			fprintf(stderr, "fhir-redcap-bridge %s: unknown or incomplete option '%s'\n", cmd,
				argv[optind - 1]);
			usage_cmd(stderr, cmd);
			return -2;
		}
	}
	if (o->takes_args) {
		o->args = argv + optind;
		o->n_args = argc - optind;
	} else if (optind < argc) {
		fprintf(stderr, "fhir-redcap-bridge %s: unexpected argument '%s'\n", cmd, argv[optind]);
		return -2;
	}
	int rc = cli_finish_options(cmd, &o->config, o->log_level);
	if (rc == 0 && o->needs_project && !o->project) {
		fprintf(stderr, "fhir-redcap-bridge %s: --project P is required\n", cmd);
		rc = -2;
	}
	return rc;
}

static int load_config(config *cfg, const common_opts *o)
{
	return cli_load_config(cfg, o->config, o->log_level != NULL) == 0 ? 0 : EXIT_USAGE;
}

/* ---- sync / run ---------------------------------------------------------- */

static void app_shutdown(app *a)
{
	if (a->ui) {
		ui_stop(a->ui, NULL, NULL);
		a->ui = NULL;
	}
	if (a->dt) {
		downtime_stop(a->dt, NULL, NULL);
		a->dt = NULL;
	}
	if (a->http) {
		http_client_close(a->http, NULL, NULL);
		a->http = NULL;
	}
	if (a->rc_http) {
		http_client_close(a->rc_http, NULL, NULL);
		a->rc_http = NULL;
	}
	if (!uv_is_closing((uv_handle_t *)&a->sig_int)) {
		uv_close((uv_handle_t *)&a->sig_int, NULL);
		uv_close((uv_handle_t *)&a->sig_term, NULL);
		uv_close((uv_handle_t *)&a->poll_timer, NULL);
	}
}

static void start_cycle(app *a);
static void start_curation(app *a);
static void app_observe(void *ud, long status, double total_s);

static void on_poll_timer(uv_timer_t *t)
{
	app *a = t->data;
	if (!a->stopping)
		start_cycle(a);
}

static void finish_cycle(app *a);
static void start_push(app *a);
static void start_anchor_export(app *a);
static void after_pull(app *a);

static void on_sync_done(sync_cycle *cy, void *ud)
{
	app *a = ud;
	json_t *res = sync_cycle_result(cy);
	bool ok = sync_cycle_ok(cy);
	json_int_t fetched = json_integer_value(json_object_get(res, "fetched"));
	json_int_t n_new = 0;
	double el = json_real_value(json_object_get(res, "elapsed_s"));
	size_t n_ok = 0, n = 0;
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(res, "types"), k, v)
	{
		n++;
		n_ok += json_is_true(json_object_get(v, "ok"));
		n_new += json_integer_value(json_object_get(v, "new"));
	}
	if (a->stopping)
		log_warn("bridge", "sync interrupted: %zu of %zu types complete; the next run resumes the others",
			 n_ok, n);
	else if (ok)
		log_info("bridge", "sync complete: %zu types, %lld resources fetched (%lld new or changed) in %.2f s (%.0f/s)",
			 n, (long long)fetched, (long long)n_new, el, el > 0 ? (double)fetched / el : 0.0);
	else
		log_error("bridge", "sync incomplete: %zu of %zu types failed; see the errors above or `status`",
			  n - n_ok, n);
	sync_cycle_free(cy);
	a->cy = NULL;
	a->cycle_res = res;
	a->pull_ok = ok;
	if (ok) {
		char now[40];
		util_instant_ms((int64_t)a->cycle_started_ms, now, sizeof(now));
		if (store_project_set(a->st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_LAST_SYNC, now) != 0)
			log_warn("store", "cannot record the sync time: %s", store_errmsg(a->st));
	}
	if (a->drain_stats) {
		json_object_set_new(res, "downtime", a->drain_stats);
		a->drain_stats = NULL;
	}
	after_pull(a);
}

/* Curate and push (anchors typed into REDCap first), or end the cycle. */
static void after_pull(app *a)
{
	if (a->stopping || !a->any_mapping) {
		finish_cycle(a);
		return;
	}
	if (a->any_anchor) {
		start_anchor_export(a);
		return;
	}
	start_curation(a);
}

/* ---- anchors typed into REDCap (before curation) ---------------------------- */

static void on_anchors(void *ud, size_t i, json_t *values, int64_t listed_at)
{
	app *a = ud;
	json_decref(a->anchors[i]);
	a->anchors[i] = values;
	a->anchor_listed_at[i] = listed_at;
}

static void drop_anchor_records(app *a)
{
	for (size_t i = 0; a->anchor_records && i < a->cfg.n_redcap_projects; i++) {
		curate_records_free(a->anchor_records[i], a->n_anchor_records[i]);
		a->anchor_records[i] = NULL;
		a->n_anchor_records[i] = 0;
	}
}

static void drop_anchors(app *a)
{
	for (size_t i = 0; a->anchors && i < a->cfg.n_redcap_projects; i++) {
		json_decref(a->anchors[i]);
		a->anchors[i] = NULL;
		a->anchor_listed_at[i] = 0;
	}
	drop_anchor_records(a);
}

/* The anchors read were used: the next read lists what changed in REDCap since this one. */
static void anchors_used(app *a)
{
	char ms[32];
	for (size_t i = 0; a->anchors && i < a->cfg.n_redcap_projects; i++) {
		if (!a->anchor_listed_at[i])
			continue;
		snprintf(ms, sizeof(ms), "%lld", (long long)a->anchor_listed_at[i]);
		if (store_project_set(a->st, a->cfg.redcap_projects[i].name, PUSH_ANCHORS_READ_KEY, ms) != 0)
			log_warn("curate", "%s: cannot record when the anchors were read: %s",
				 a->cfg.redcap_projects[i].name, store_errmsg(a->st));
	}
}

static void on_anchor_export_done(push_run *pr, void *ud)
{
	app *a = ud;
	bool ok = push_run_ok(pr);
	json_t *res = push_run_result(pr);
	push_run_free(pr);
	a->anchor_run = NULL;
	drop_anchor_records(a);
	json_object_set_new(a->cycle_res, "anchors", res);
	if (a->stopping) {
		drop_anchors(a);
		finish_cycle(a);
		return;
	}
	if (!ok) {
		/* Curating without them would send rows that lack the window
		 * fields; the patients wait for the next cycle instead. */
		log_error("curate", "the anchors typed into REDCap could not be read: curation waits for the next cycle");
		drop_anchors(a);
		a->curate_rc = -EAGAIN;
		snprintf(a->cstats.error, sizeof(a->cstats.error), "anchors typed into REDCap could not be read");
		json_object_set_new(a->cycle_res, "curate", curate_stats_json(&a->cstats));
		start_push(a);
		return;
	}
	start_curation(a);
}

static push_env app_push_env(app *a)
{
	return (push_env){
		.loop = &a->loop,
		.cfg = &a->cfg,
		.st = a->st,
		.http = a->rc_http,
		.servers = a->servers,
	};
}

static void start_anchor_export(app *a)
{
	push_env env = app_push_env(a);
	bool *want = calloc(a->cfg.n_redcap_projects ? a->cfg.n_redcap_projects : 1, sizeof(*want));
	for (size_t i = 0; want && i < a->cfg.n_redcap_projects; i++)
		want[i] = a->anchor_fields[i] != NULL;
	/* The records this cycle curates: their anchors are read whether or not REDCap lists them as changed. */
	int rc = want ? curate_waiting_records(a->st, a->server_id, &a->cfg, a->maps, want, a->anchor_records,
					       a->n_anchor_records)
		      : -ENOMEM;
	free(want);
	if (rc != 0) {
		log_error("curate", "cannot list the records of the waiting patients: %s",
			  rc == -ENOMEM ? "out of memory" : store_errmsg(a->st));
		a->curate_rc = rc;
		snprintf(a->cstats.error, sizeof(a->cstats.error), "the waiting patients could not be read");
		json_object_set_new(a->cycle_res, "curate", curate_stats_json(&a->cstats));
		start_push(a);
		return;
	}
	env.anchor_fields = a->anchor_fields;
	env.n_anchor_fields = a->n_anchor_fields;
	env.anchor_records = (const char *const *const *)a->anchor_records;
	env.n_anchor_records = a->n_anchor_records;
	env.on_anchors = on_anchors;
	env.dict_ud = a;
	rc = push_run_start(&a->anchor_run, &env, on_anchor_export_done, a);
	if (rc != 0) {
		drop_anchor_records(a);
		log_error("redcap", "cannot read the anchors typed into REDCap: %s", strerror(-rc));
		a->curate_rc = rc;
		start_push(a);
	}
}

/* ---- curation (on a worker thread) ---------------------------------------- */

static void curate_work_cb(uv_work_t *w)
{
	app *a = w->data;
	a->curate_rc = curate_run(a->st, a->server_id, &a->cfg, a->maps, a->any_anchor ? a->anchors : NULL,
				  &a->cstats, &a->curate_stop);
}

static void curate_after_cb(uv_work_t *w, int status)
{
	app *a = w->data;
	a->curating = false;
	if (status != 0 && a->curate_rc == 0) {
		a->curate_rc = status;
		snprintf(a->cstats.error, sizeof(a->cstats.error), "curation was cancelled");
	}
	if (a->curate_rc == 0 && !a->curate_stop)
		anchors_used(a);
	drop_anchors(a);
	json_object_set_new(a->cycle_res, "curate", curate_stats_json(&a->cstats));
	if (a->curate_rc != 0) {
		log_error("curate", "curation failed: %s", a->cstats.error);
	} else {
		log_info("curate", "%lld patients curated in %.2f s: %lld rows queued, %lld unchanged, %lld for review, "
				   "%lld refused",
			 a->cstats.patients, a->cstats.elapsed_s, a->cstats.rows_queued, a->cstats.rows_unchanged,
			 a->cstats.review_queued, a->cstats.refused);
	}
	if (a->stopping) {
		finish_cycle(a);
		return;
	}
	start_push(a);
}

static void start_curation(app *a)
{
	a->curating = true;
	a->curate_work.data = a;
	int rc = uv_queue_work(&a->loop, &a->curate_work, curate_work_cb, curate_after_cb);
	if (rc != 0) {
		a->curating = false;
		a->curate_rc = rc;
		snprintf(a->cstats.error, sizeof(a->cstats.error), "cannot queue the curation: %s", uv_strerror(rc));
		json_object_set_new(a->cycle_res, "curate", curate_stats_json(&a->cstats));
		start_push(a);
	}
}

/* ---- push --------------------------------------------------------------- */

static void on_push_done(push_run *pr, void *ud)
{
	app *a = ud;
	json_t *res = push_run_result(pr);
	json_object_set_new(a->cycle_res, "push", res);
	push_run_free(pr);
	a->push = NULL;
	finish_cycle(a);
}

static void start_push(app *a)
{
	push_env env = app_push_env(a);
	int rc = push_run_start(&a->push, &env, on_push_done, a);
	if (rc != 0) {
		log_error("redcap", "cannot start the push: %s", strerror(-rc));
		json_object_set_new(a->cycle_res, "push", json_pack("{s:b, s:s}", "ok", 0, "error", strerror(-rc)));
		finish_cycle(a);
	}
}

/* The store keeps its own records (e.g. the EHR state) under project names
 * that start with '_' (a config cannot use them): not REDCap projects. */
static json_t *redcap_projects_only(json_t *projects)
{
	const char *k;
	json_t *v;
	void *tmp;
	json_object_foreach_safe(projects, tmp, k, v)
	{
		if (k[0] == '_')
			json_object_del(projects, k);
	}
	return projects;
}

/* Held rows do not fail a cycle; say how many wait for a person. */
static void report_held(app *a)
{
	json_t *st = store_outbox_status_json(a->st, 0);
	redcap_projects_only(json_object_get(st, "projects"));
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(st, "projects"), k, v)
	{
		json_int_t held = json_integer_value(json_object_get(v, "held"));
		json_int_t refused = (json_int_t)json_array_size(json_object_get(v, "refused"));
		json_int_t review = json_integer_value(json_object_get(v, "review_pending"));
		if (held || refused || review)
			log_warn("bridge", "%s: %lld rows held back, %lld patients refused, %lld values waiting for review; "
					   "see `fhir-redcap-bridge status --config %s`%s",
				 k, (long long)held, (long long)refused, (long long)review, a->cfg.path,
				 review ? " and `review list`" : "");
	}
	if (a->cycle_res && st)
		json_object_set(a->cycle_res, "outbox", json_object_get(st, "projects"));
	json_decref(st);
}

static void finish_cycle(app *a)
{
	json_t *res = a->cycle_res;
	a->cycle_res = NULL;
	bool ok = a->pull_ok;
	if (a->any_mapping) {
		a->cycle_res = res;
		report_held(a);
		a->cycle_res = NULL;
		json_t *push = json_object_get(res, "push");
		if (a->curate_rc != 0 || !json_is_true(json_object_get(push, "ok")))
			ok = false;
	}
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		json_object_set_new(res, "peak_rss_kb", json_integer(ru.ru_maxrss));
	json_object_set_new(res, "pull_ok", json_boolean(a->pull_ok));
	json_object_set_new(res, "ok", json_boolean(ok));
	if (a->json) {
		char *s = json_dumps(res, JSON_COMPACT | JSON_REAL_PRECISION(6));
		if (s) {
			printf("%s\n", s);
			fflush(stdout);
			free(s);
		}
	}
	json_decref(res);
	if (!a->stopping)
		a->exit_code = ok ? 0 : EXIT_SYNC_FAILED;

	a->cycle_running = false;
	if (a->daemon && !a->stopping) {
		uint64_t interval = (uint64_t)a->cfg.fhir_poll_interval_s * 1000u;
		uint64_t since = (uint64_t)util_wall_ms() - a->cycle_started_ms;
		uint64_t delay = since >= interval || a->cycle_again ? 0 : interval - since;
		log_info("bridge", "next sync in %.0f s", (double)delay / 1000.0);
		uv_timer_start(&a->poll_timer, on_poll_timer, delay, 0);
		return;
	}
	app_shutdown(a);
}

static void start_pull(app *a)
{
	sync_env env = {
		.loop = &a->loop,
		.cfg = &a->cfg,
		.st = a->st,
		.server_id = a->server_id,
		.http = a->http,
		.auth = a->auth,
		.observe = a->dt ? app_observe : NULL,
		.observe_ud = a,
	};
	int rc = sync_cycle_start(&a->cy, &env, on_sync_done, a);
	if (rc != 0) {
		log_error("bridge", "cannot start a sync cycle: %s", strerror(-rc));
		a->exit_code = EXIT_SYNC_FAILED;
		app_shutdown(a);
	}
}

/* sync --once: pending chart entries go to the EHR first, so that the pull
 * brings them back (and on to REDCap) in the same run. */
static void on_drained(void *ud)
{
	app *a = ud;
	json_t *st = downtime_stats(a->dt);
	json_int_t w = json_integer_value(json_object_get(st, "written"));
	json_int_t r = json_integer_value(json_object_get(st, "retries"));
	if (w || r)
		log_info("bridge", "downtime entries: %lld written to the EHR, %lld wait for another attempt",
			 (long long)w, (long long)r);
	a->drain_stats = st;
	downtime_stop(a->dt, NULL, NULL);
	a->dt = NULL;
	if (a->stopping) {
		a->cycle_res = json_object();
		finish_cycle(a);
		return;
	}
	start_pull(a);
}

static void start_cycle(app *a)
{
	a->cycle_started_ms = (uint64_t)util_wall_ms();
	a->curate_rc = 0;
	a->cycle_running = true;
	a->cycle_again = false;
	a->pull_skipped = false;
	if (a->daemon && a->dt && downtime_state(a->dt) != BREAKER_UP) {
		/* No pull while the EHR is down; curated rows still go to REDCap. */
		log_warn("bridge", "EHR %s: no pull this cycle; pushing what is curated", breaker_state_name(downtime_state(a->dt)));
		a->pull_skipped = true;
		a->pull_ok = false;
		a->cycle_res = json_pack("{s:s}", "pull", "skipped: the EHR is down");
		after_pull(a);
		return;
	}
	if (!a->daemon && a->cfg.downtime_identifier_system) {
		downtime_env env = { .loop = &a->loop, .cfg = &a->cfg, .st = a->st_dt, .server_id = a->server_id,
				     .http = a->http, .auth = a->auth };
		if (downtime_drain(&a->dt, &env, on_drained, a) == 0)
			return;
		log_error("bridge", "cannot start writing downtime entries: out of memory");
	}
	start_pull(a);
}

/* Start a cycle now, or right after the one running. */
static void request_cycle(app *a)
{
	if (a->stopping)
		return;
	if (a->cycle_running) {
		a->cycle_again = true;
		return;
	}
	uv_timer_start(&a->poll_timer, on_poll_timer, 0, 0);
}

static void app_observe(void *ud, long status, double total_s)
{
	app *a = ud;
	downtime_observe(a->dt, status, total_s);
}

static void on_ehr_state(void *ud, breaker_state from, breaker_state to)
{
	app *a = ud;
	(void)from;
	if (to == BREAKER_DOWN && a->cy) {
		/* Stop hammering: the pages stored so far stay, the crawl resumes later. */
		sync_cycle_stop(a->cy);
	} else if (to == BREAKER_UP) {
		request_cycle(a);
	}
}

/* The writer went idle after writing entries: pull them back now. */
static void on_entries_written(void *ud)
{
	request_cycle(ud);
}

static void on_signal(uv_signal_t *h, int signum)
{
	app *a = h->data;
	if (++a->signals > 1) {
		log_warn("bridge", "second signal (%s): exiting now", strsignal(signum));
		_exit(128 + signum);
	}
	log_warn("bridge", "%s: stopping after the transaction in flight (send again to exit now)",
		 strsignal(signum));
	a->stopping = true;
	/* A daemon stopped on request exits 0 whatever its last cycle did. */
	if (a->exit_code == 0 || a->daemon)
		a->exit_code = 128 + signum;
	uv_timer_stop(&a->poll_timer);
	if (a->cy)
		sync_cycle_stop(a->cy);
	else if (a->curating)
		a->curate_stop = 1; /* the batch in progress commits, then the cycle ends */
	else if (a->anchor_run)
		push_run_stop(a->anchor_run);
	else if (a->push)
		push_run_stop(a->push);
	else
		app_shutdown(a);
}

static int open_store(const config *cfg, store_mode mode, store **st)
{
	char err[1024];
	int rc = store_open(st, cfg->store_path, cfg->store_key_file, mode, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", err);
		return EXIT_STORE;
	}
	return 0;
}

/* Load every project's mapping; 0 or EXIT_USAGE after printing why. */
static int load_mappings(const config *cfg, mapping ***out, bool *any)
{
	mapping **maps = calloc(cfg->n_redcap_projects ? cfg->n_redcap_projects : 1, sizeof(*maps));
	if (!maps)
		return EXIT_USAGE;
	*any = false;
	mapping_env env = {
		.mrn_system = cfg->fhir_mrn_system,
		.local_to_utc = curate_local_to_utc,
	};
	for (size_t i = 0; i < cfg->n_redcap_projects; i++) {
		const config_redcap_project *cp = &cfg->redcap_projects[i];
		if (!cp->mapping)
			continue;
		char err[1024];
		if (mapping_load(&maps[i], cp->mapping, &env, err, sizeof(err)) != 0) {
			fprintf(stderr, "fhir-redcap-bridge: redcap.projects[%zu] (%s): %s\n", i, cp->name, err);
			for (size_t j = 0; j < i; j++)
				mapping_free(maps[j]);
			free(maps);
			return EXIT_USAGE;
		}
		*any = true;
	}
	*out = maps;
	return 0;
}

static void free_mappings(const config *cfg, mapping **maps)
{
	if (!maps)
		return;
	for (size_t i = 0; i < cfg->n_redcap_projects; i++)
		mapping_free(maps[i]);
	free(maps);
}

static int cmd_sync(int argc, char **argv, bool daemon)
{
	const char *cmd = daemon ? "run" : "sync";
	common_opts o = { 0 };
	int rc = parse_opts(cmd, argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? 0 : EXIT_USAGE;
	if (!daemon && !o.once) {
		/* `sync` is always one cycle; --once says so explicitly. */
		log_debug("bridge", "sync without --once: running one cycle");
	}
	if (daemon && o.once) {
		fprintf(stderr, "fhir-redcap-bridge run: --once is for `sync`\n");
		return EXIT_USAGE;
	}

	app a = { 0 };
	a.daemon = daemon;
	a.json = o.json;
	if ((rc = load_config(&a.cfg, &o)) != 0)
		return rc;
	curate_set_timezone(a.cfg.site_timezone);
	if ((rc = load_mappings(&a.cfg, &a.maps, &a.any_mapping)) != 0) {
		config_deinit(&a.cfg);
		return rc;
	}
	size_t np = a.cfg.n_redcap_projects ? a.cfg.n_redcap_projects : 1;
	a.anchor_fields = calloc(np, sizeof(*a.anchor_fields));
	a.n_anchor_fields = calloc(np, sizeof(*a.n_anchor_fields));
	a.anchors = calloc(np, sizeof(*a.anchors));
	a.anchor_records = calloc(np, sizeof(*a.anchor_records));
	a.n_anchor_records = calloc(np, sizeof(*a.n_anchor_records));
	a.anchor_listed_at = calloc(np, sizeof(*a.anchor_listed_at));
	if (!a.anchor_fields || !a.n_anchor_fields || !a.anchors || !a.anchor_records || !a.n_anchor_records ||
	    !a.anchor_listed_at) {
		fprintf(stderr, "fhir-redcap-bridge: out of memory\n");
		rc = EXIT_SYNC_FAILED;
		goto early_out;
	}
	for (size_t i = 0; i < a.cfg.n_redcap_projects; i++) {
		if (!a.maps[i])
			continue;
		const char *const *f;
		size_t n = mapping_redcap_anchor_fields(a.maps[i], &f);
		if (n) {
			a.anchor_fields[i] = f;
			a.n_anchor_fields[i] = n;
			a.any_anchor = true;
		}
	}
	if ((rc = open_store(&a.cfg, STORE_RW, &a.st)) != 0)
		goto early_out;
	if ((rc = open_store(&a.cfg, STORE_RW, &a.st_dt)) != 0)
		goto early_out;
	if (store_server_id(a.st, a.cfg.fhir_base_url, &a.server_id) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(a.st));
		rc = EXIT_STORE;
		goto early_out;
	}
	uv_loop_init(&a.loop);
	http_client_opts ho = {
		.max_connections = a.cfg.fhir_max_concurrency,
		.ca_file = a.cfg.fhir_ca_file,
		.user_agent = "fhir-redcap-bridge/" BRIDGE_VERSION,
	};
	http_client_opts rho = {
		.max_connections = 2,
		.ca_file = a.cfg.redcap_ca_file,
		.user_agent = "fhir-redcap-bridge/" BRIDGE_VERSION,
	};
	if (http_client_new(&a.http, &a.loop, &ho) != 0 || http_client_new(&a.rc_http, &a.loop, &rho) != 0 ||
	    rc_servers_new(&a.servers, &a.cfg) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: cannot create the HTTP clients\n");
		if (a.http)
			http_client_close(a.http, NULL, NULL);
		if (a.rc_http)
			http_client_close(a.rc_http, NULL, NULL);
		a.http = a.rc_http = NULL;
		uv_run(&a.loop, UV_RUN_DEFAULT);
		rc = EXIT_SYNC_FAILED;
		goto out;
	}
	char err[1024] = "";
	if (auth_new(&a.auth, &a.cfg.fhir_auth, a.http, (long)a.cfg.fhir_timeout_s * 1000, err, sizeof(err)) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: fhir.auth: %s\n", err);
		http_client_close(a.http, NULL, NULL);
		http_client_close(a.rc_http, NULL, NULL);
		a.http = a.rc_http = NULL;
		uv_run(&a.loop, UV_RUN_DEFAULT);
		rc = EXIT_USAGE;
		goto out;
	}
	uv_signal_init(&a.loop, &a.sig_int);
	uv_signal_init(&a.loop, &a.sig_term);
	uv_timer_init(&a.loop, &a.poll_timer);
	a.sig_int.data = a.sig_term.data = a.poll_timer.data = &a;
	uv_signal_start(&a.sig_int, on_signal, SIGINT);
	uv_signal_start(&a.sig_term, on_signal, SIGTERM);

	log_info("bridge", "%s: store %s, FHIR %s, %zu types", daemon ? "daemon started" : "sync",
		 a.cfg.store_path, a.cfg.fhir_base_url, a.cfg.n_fhir_resources);
	size_t reindexed = 0;
	if (patients_index_ensure(a.st, a.server_id, a.cfg.fhir_mrn_system, &reindexed) != 0)
		log_warn("store", "cannot build the patient search index: %s", store_errmsg(a.st));
	else if (reindexed)
		log_info("store", "patient search index built for %zu cached patients", reindexed);
	if (daemon) {
		downtime_env env = { .loop = &a.loop, .cfg = &a.cfg, .st = a.st_dt, .server_id = a.server_id,
				     .http = a.http, .auth = a.auth, .on_state = on_ehr_state,
				     .on_written = on_entries_written, .ud = &a };
		if (downtime_start(&a.dt, &env) != 0) {
			fprintf(stderr, "fhir-redcap-bridge: out of memory\n");
			app_shutdown(&a);
			uv_run(&a.loop, UV_RUN_DEFAULT);
			rc = EXIT_SYNC_FAILED;
			goto out;
		}
		if (a.cfg.ui_enabled) {
			ui_env uenv = { .loop = &a.loop, .cfg = &a.cfg, .st = NULL, .server_id = a.server_id,
					.dt = a.dt };
			if (ui_start(&a.ui, &uenv, err, sizeof(err)) != 0) {
				fprintf(stderr, "fhir-redcap-bridge: cannot start the charting page: %s\n", err);
				app_shutdown(&a);
				uv_run(&a.loop, UV_RUN_DEFAULT);
				rc = EXIT_USAGE;
				goto out;
			}
			const char *colon = strrchr(a.cfg.ui_listen, ':');
			int hl = colon ? (int)(colon - a.cfg.ui_listen) : (int)strlen(a.cfg.ui_listen);
			log_info("bridge", "ui: charting page on http://%.*s:%d/", hl, a.cfg.ui_listen, ui_port(a.ui));
		}
	}
	start_cycle(&a);
	uv_run(&a.loop, UV_RUN_DEFAULT);
	rc = a.exit_code;
	if (daemon && a.stopping && rc >= 128)
		rc = 0; /* a clean stop on request */
out:
	auth_free(a.auth);
	rc_servers_free(a.servers);
	if (uv_loop_close(&a.loop) != 0)
		log_warn("bridge", "event loop closed with handles still open");
early_out:
	store_close(a.st_dt);
	store_close(a.st);
	if (a.anchors && a.anchor_listed_at && a.anchor_records && a.n_anchor_records)
		drop_anchors(&a);
	free(a.anchors);
	free(a.anchor_records);
	free(a.n_anchor_records);
	free(a.anchor_listed_at);
	free(a.anchor_fields);
	free(a.n_anchor_fields);
	free_mappings(&a.cfg, a.maps);
	json_decref(a.drain_stats);
	config_deinit(&a.cfg);
	return rc;
}

/* ---- status / dump ------------------------------------------------------- */

static void print_status_text(json_t *s, const char *store_path)
{
	printf("store: %s (schema %lld)\n", store_path, (long long)json_integer_value(json_object_get(s, "schema")));
	json_t *ehr = json_object_get(s, "ehr");
	const char *es = json_string_value(json_object_get(ehr, "state"));
	const char *since = json_string_value(json_object_get(ehr, "since"));
	const char *lss = json_string_value(json_object_get(ehr, "last_successful_sync"));
	printf("EHR: %s%s%s; last successful sync: %s\n", es ? es : "unknown", since ? " since " : "", since ? since : "",
	       lss ? lss : "never");
	json_t *dt = json_object_get(s, "downtime");
	if (dt)
		printf("downtime entries: %lld pending, %lld written, %lld conflicts, %lld rejected, %lld waiting for a "
		       "patient link\n",
		       (long long)json_integer_value(json_object_get(dt, "pending")),
		       (long long)json_integer_value(json_object_get(dt, "written")),
		       (long long)json_integer_value(json_object_get(dt, "conflict")),
		       (long long)json_integer_value(json_object_get(dt, "rejected")),
		       (long long)json_integer_value(json_object_get(dt, "waiting_link")));
	json_t *ls = json_object_get(s, "last_sync");
	printf("last sync: %s\n", json_is_string(ls) ? json_string_value(ls) : "never");
	json_t *cw = json_object_get(json_object_get(s, "curation"), "waiting");
	if (json_is_integer(cw))
		printf("patients waiting for curation: %lld\n", (long long)json_integer_value(cw));
	printf("\n%-28s %12s %12s\n", "resource type", "resources", "versions");
	const char *k;
	json_t *v;
	json_t *vers = json_object_get(s, "versions");
	json_object_foreach(json_object_get(s, "resources"), k, v)
	{
		printf("%-28s %12lld %12lld\n", k, (long long)json_integer_value(v),
		       (long long)json_integer_value(json_object_get(vers, k)));
	}
	json_t *curs = json_object_get(s, "cursors");
	if (json_array_size(curs)) {
		printf("\n%-24s %-26s %-26s %s\n", "cursor", "watermark", "last success", "state");
		size_t i;
		json_array_foreach(curs, i, v)
		{
			const char *wm = json_string_value(json_object_get(v, "watermark"));
			const char *lsu = json_string_value(json_object_get(v, "last_success"));
			const char *le = json_string_value(json_object_get(v, "last_error"));
			bool prog = json_is_true(json_object_get(v, "crawl_in_progress"));
			printf("%-24s %-26s %-26s %s%s%s\n", json_string_value(json_object_get(v, "type")),
			       wm && *wm ? wm : "-", lsu && *lsu ? lsu : "-",
			       prog ? "crawl in progress" : (le && *le ? "error: " : "ok"), le && *le && !prog ? le : "",
			       "");
		}
	}
	json_object_foreach(json_object_get(s, "outbox"), k, v)
	{
		printf("\nREDCap project %s: %lld rows pending, %lld sent, %lld held back, %lld values waiting for review\n",
		       k, (long long)json_integer_value(json_object_get(v, "pending")),
		       (long long)json_integer_value(json_object_get(v, "done")),
		       (long long)json_integer_value(json_object_get(v, "held")),
		       (long long)json_integer_value(json_object_get(v, "review_pending")));
		json_t *halt = json_object_get(v, "halted");
		if (json_is_string(halt))
			printf("  HALTED: %s\n", json_string_value(halt));
		size_t i;
		json_t *h;
		json_array_foreach(json_object_get(v, "held_rows"), i, h)
		{
			const char *ins = json_string_value(json_object_get(h, "instrument"));
			printf("  held: record %s%s%s", json_string_value(json_object_get(h, "record")),
			       ins && *ins ? ", " : "", ins && *ins ? ins : "");
			if (json_is_integer(json_object_get(h, "instance")) && ins && *ins)
				printf(" #%lld", (long long)json_integer_value(json_object_get(h, "instance")));
			printf("\n");
			size_t j;
			json_t *r;
			json_array_foreach(json_object_get(h, "reasons"), j, r)
			{
				const char *f = json_string_value(json_object_get(r, "field"));
				printf("    %s%s%s\n", f && *f ? f : "", f && *f ? ": " : "",
				       json_string_value(json_object_get(r, "message")));
			}
		}
		json_array_foreach(json_object_get(v, "refused"), i, h)
		printf("  refused: Patient/%s: %s\n", json_string_value(json_object_get(h, "patient")),
		       json_string_value(json_object_get(h, "reason")));
	}
}

/* The config and the store for a command; on failure nothing stays open. */
static int open_for(const common_opts *o, config *cfg, store **st, store_mode mode)
{
	int rc = load_config(cfg, o);
	if (rc != 0)
		return rc;
	if ((rc = open_store(cfg, mode, st)) != 0) {
		config_deinit(cfg);
		return rc;
	}
	return 0;
}

static void close_for(config *cfg, store *st)
{
	store_close(st);
	config_deinit(cfg);
}

/* The config's entry for project name, or NULL. */
static const config_redcap_project *config_project(const config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_redcap_projects; i++)
		if (strcmp(cfg->redcap_projects[i].name, name) == 0)
			return &cfg->redcap_projects[i];
	return NULL;
}

/* open_for() for a command (cmd) on project o->project: one the config does not have is a usage error. */
static int open_project(const char *cmd, const common_opts *o, config *cfg, store **st, store_mode mode)
{
	int rc = open_for(o, cfg, st, mode);
	if (rc == 0 && !config_project(cfg, o->project)) {
		fprintf(stderr, "fhir-redcap-bridge %s: no project %s in %s\n", cmd, o->project, cfg->path);
		close_for(cfg, *st);
		rc = EXIT_USAGE;
	}
	return rc;
}

static int cmd_status(int argc, char **argv)
{
	common_opts o = { 0 };
	int rc = parse_opts("status", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? 0 : EXIT_USAGE;
	config cfg = CONFIG_NULL;
	if ((rc = load_config(&cfg, &o)) != 0)
		return rc;
	struct stat sb;
	if (stat(cfg.store_path, &sb) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: no store at %s yet (run `sync` first)\n", cfg.store_path);
		config_deinit(&cfg);
		return EXIT_STORE;
	}
	store *st = NULL;
	if ((rc = open_store(&cfg, STORE_RO, &st)) != 0) {
		config_deinit(&cfg);
		return rc;
	}
	json_t *s = store_status_json(st);
	json_t *ob = s ? store_outbox_status_json(st, 50) : NULL;
	if (s && ob) {
		json_t *projects = redcap_projects_only(json_object_get(ob, "projects"));
		for (size_t i = 0; i < cfg.n_redcap_projects; i++) {
			char *halt = NULL;
			json_t *pj = json_object_get(projects, cfg.redcap_projects[i].name);
			if (pj && store_project_get(st, cfg.redcap_projects[i].name, PUSH_HALT_KEY, &halt) == 0 && *halt)
				json_object_set_new(pj, "halted", json_string(halt));
			free(halt);
		}
		json_object_set(s, "outbox", projects);
	}
	json_decref(ob);
	int64_t sid = 0, waiting = 0;
	if (s && store_server_id(st, cfg.fhir_base_url, &sid) == 0 && store_waiting_count(st, sid, &waiting) == 0)
		json_object_set_new(s, "curation", json_pack("{s:I}", "waiting", (json_int_t)waiting));
	if (s) {
		char *state = NULL, *since = NULL, *last = NULL;
		store_project_get(st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_STATE, &state);
		store_project_get(st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_SINCE, &since);
		store_project_get(st, DOWNTIME_KV_PROJECT, DOWNTIME_KV_LAST_SYNC, &last);
		json_object_set_new(s, "ehr", json_pack("{s:s, s:s?, s:s?}", "state", state ? state : "unknown", "since",
						       since, "last_successful_sync", last));
		free(state);
		free(since);
		free(last);
	}
	if (!s) {
		fprintf(stderr, "fhir-redcap-bridge: cannot read the store: %s\n", store_errmsg(st));
		rc = EXIT_STORE;
	} else if (o.json) {
		json_object_set_new(s, "store", json_string(cfg.store_path));
		json_object_set_new(s, "fhir", json_pack("{s:s}", "base_url", cfg.fhir_base_url));
		char *txt = json_dumps(s, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (txt)
			printf("%s\n", txt);
		free(txt);
	} else {
		print_status_text(s, cfg.store_path);
	}
	json_decref(s);
	close_for(&cfg, st);
	return rc;
}

typedef struct dump_ctx {
	bool bodies;
	size_t n;
} dump_ctx;

static int dump_one(void *ud, const char *type, const char *id, const char *version_id, const char *last_updated,
		    const char *patient, const char *body, size_t body_len)
{
	dump_ctx *d = ud;
	d->n++;
	if (d->bodies) {
		fwrite(body, 1, body_len, stdout);
		fputc('\n', stdout);
		return 0;
	}
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", type, "id", id, "versionId", version_id,
			      "lastUpdated", last_updated, "patient", patient);
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(o);
	return 0;
}

static int cmd_dump(int argc, char **argv)
{
	common_opts o = { 0 };
	int rc = parse_opts("dump", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? 0 : EXIT_USAGE;
	if (!o.type) {
		fprintf(stderr, "fhir-redcap-bridge dump: --type TYPE is required\n");
		return EXIT_USAGE;
	}
	config cfg = CONFIG_NULL;
	store *st = NULL;
	if ((rc = open_for(&o, &cfg, &st, STORE_RO)) != 0)
		return rc;
	dump_ctx d = { .bodies = o.bodies };
	if (store_foreach_resource(st, 0, o.type, o.bodies, dump_one, &d) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(st));
		rc = EXIT_STORE;
	}
	close_for(&cfg, st);
	return rc;
}

/* ---- explain / review / push-resume --------------------------------------- */



static void print_json(json_t *j)
{
	char *txt = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	if (txt)
		printf("%s\n", txt);
	free(txt);
}

static int cmd_explain(int argc, char **argv)
{
	common_opts o = { 0 };
	int rc = parse_opts("explain", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? 0 : EXIT_USAGE;
	if (!o.project || !o.record || !o.field) {
		fprintf(stderr, "fhir-redcap-bridge explain: --project P --record R --field F are required\n");
		return EXIT_USAGE;
	}
	config cfg = CONFIG_NULL;
	store *st = NULL;
	if ((rc = load_config(&cfg, &o)) != 0)
		return rc;
	if (!config_project(&cfg, o.project)) {
		fprintf(stderr, "fhir-redcap-bridge explain: no project %s in %s\n", o.project, cfg.path);
		config_deinit(&cfg);
		return EXIT_USAGE;
	}
	if ((rc = open_store(&cfg, STORE_RO, &st)) != 0) {
		config_deinit(&cfg);
		return rc;
	}
	json_t *p = store_provenance_get(st, o.project, o.record, o.field);
	if (!p) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(st));
		rc = EXIT_STORE;
	} else if (json_array_size(p) == 0) {
		fprintf(stderr, "fhir-redcap-bridge explain: the bridge has sent no value of %s for record %s in %s\n",
			o.field, o.record, o.project);
		rc = 1;
	} else if (o.json) {
		print_json(p);
	} else {
		size_t i;
		json_t *e;
		json_array_foreach(p, i, e)
		{
			const char *ev = json_string_value(json_object_get(e, "event"));
			const char *ins = json_string_value(json_object_get(e, "instrument"));
			printf("%s record %s field %s", o.project, o.record, o.field);
			if (ev && *ev)
				printf(" event %s", ev);
			if (ins && *ins)
				printf(" %s #%lld", ins, (long long)json_integer_value(json_object_get(e, "instance")));
			printf(": from %s/%s", json_string_value(json_object_get(e, "resource_type")),
			       json_string_value(json_object_get(e, "resource_id")));
			const char *ver = json_string_value(json_object_get(e, "resource_version"));
			if (ver && *ver)
				printf("/_history/%s", ver);
			printf(" by rule \"%s\" at %s\n", json_string_value(json_object_get(e, "rule")),
			       json_string_value(json_object_get(e, "at")));
		}
	}
	json_decref(p);
	close_for(&cfg, st);
	return rc;
}

static const char *review_actor(const common_opts *o)
{
	return o->actor ? o->actor : cli_os_user();
}

static int cmd_review(int argc, char **argv)
{
	/* Downtime entries have verbs (and options) of their own: entries, show,
	 * reapply, resend, discard, link, patients — always first. */
	if (argc > 1 && cmd_review_downtime_is(argv[1]))
		return cmd_review_downtime(argc, argv);
	common_opts o = { .takes_args = true };
	int rc = parse_opts("review", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? 0 : EXIT_USAGE;
	const char *verb = o.n_args > 0 ? o.args[0] : "list";
	bool list = strcmp(verb, "list") == 0;
	bool accept = strcmp(verb, "accept") == 0;
	if (!list && !accept && strcmp(verb, "reject") != 0) {
		fprintf(stderr, "fhir-redcap-bridge review: list, accept ID... or reject ID...\n");
		return EXIT_USAGE;
	}
	if (list && o.n_args > 1) {
		fprintf(stderr, "fhir-redcap-bridge review list: unexpected argument '%s'\n", o.args[1]);
		return EXIT_USAGE;
	}
	if (!list && o.n_args < 2) {
		fprintf(stderr, "fhir-redcap-bridge review %s: give the ids of the entries (see `review list`)\n", verb);
		return EXIT_USAGE;
	}
	config cfg = CONFIG_NULL;
	store *st = NULL;
	if (list) {
		if ((rc = open_for(&o, &cfg, &st, STORE_RO)) != 0)
			return rc;
		json_t *l = store_review_list(st, o.project, STORE_REVIEW_PENDING);
		if (!l) {
			fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(st));
			rc = EXIT_STORE;
		} else if (o.json) {
			print_json(l);
		} else {
			size_t i;
			json_t *e;
			if (json_array_size(l) == 0)
				printf("nothing waits for review\n");
			json_array_foreach(l, i, e)
			{
				const char *ins = json_string_value(json_object_get(e, "instrument"));
				printf("#%lld  %s  record %s%s%s", (long long)json_integer_value(json_object_get(e, "id")),
				       json_string_value(json_object_get(e, "project")),
				       json_string_value(json_object_get(e, "record")), ins && *ins ? "  " : "",
				       ins && *ins ? ins : "");
				if (ins && *ins)
					printf(" #%lld", (long long)json_integer_value(json_object_get(e, "instance")));
				printf("  (queued %s)\n", json_string_value(json_object_get(e, "queued_at")));
				const char *k;
				json_t *v;
				json_object_foreach(json_object_get(e, "values"), k, v)
				{
					if (k[0] == '#' || strncmp(k, "redcap_", 7) == 0)
						continue;
					printf("    %-24s %s\n", k, json_string_value(v));
				}
				size_t j;
				json_t *pv;
				json_array_foreach(json_object_get(e, "provenance"), j, pv)
				printf("    %-24s from %s/%s (rule \"%s\")\n", json_string_value(json_object_get(pv, "field")),
				       json_string_value(json_object_get(pv, "resource_type")),
				       json_string_value(json_object_get(pv, "resource_id")),
				       json_string_value(json_object_get(pv, "rule")));
			}
		}
		json_decref(l);
		close_for(&cfg, st);
		return rc;
	}
	if ((rc = open_for(&o, &cfg, &st, STORE_RW)) != 0)
		return rc;
	const char *actor = review_actor(&o);
	int failed = 0;
	for (int i = 1; i < o.n_args; i++) {
		char *end = NULL;
		errno = 0;
		long long id = strtoll(o.args[i], &end, 10);
		if (errno || !end || *end || id <= 0) {
			fprintf(stderr, "fhir-redcap-bridge review: '%s' is not an entry id\n", o.args[i]);
			failed++;
			continue;
		}
		int r = store_begin(st);
		if (r == 0)
			r = store_review_decide(st, id, accept, actor);
		if (r == 0)
			r = store_commit(st);
		if (r != 0) {
			store_rollback(st);
			fprintf(stderr, "fhir-redcap-bridge review: #%lld: %s\n", id,
				r == STORE_E_NOTFOUND ? "no such entry waiting for review" : store_errmsg(st));
			failed++;
			continue;
		}
		printf("#%lld %s by %s%s\n", id, accept ? "accepted" : "rejected", actor,
		       accept ? "; it is sent with the next sync" : "");
	}
	close_for(&cfg, st);
	return failed ? 1 : 0;
}

static int cmd_push_resume(int argc, char **argv)
{
	common_opts o = { .needs_project = true };
	int rc = parse_opts("push-resume", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? 0 : EXIT_USAGE;
	config cfg = CONFIG_NULL;
	store *st = NULL;
	if ((rc = open_project("push-resume", &o, &cfg, &st, STORE_RW)) != 0)
		return rc;
	/* A ban is per REDCap server: lift it for every project there. */
	const char *url = config_project(&cfg, o.project)->url;
	for (size_t i = 0; rc == 0 && i < cfg.n_redcap_projects; i++) {
		if (strcmp(cfg.redcap_projects[i].url, url) != 0)
			continue;
		if (store_project_set(st, cfg.redcap_projects[i].name, PUSH_HALT_KEY, "") != 0) {
			fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(st));
			rc = EXIT_STORE;
		} else {
			printf("%s: pushing resumes with the next sync\n", cfg.redcap_projects[i].name);
		}
	}
	close_for(&cfg, st);
	return rc;
}

static int cmd_push_release(int argc, char **argv)
{
	common_opts o = { .needs_project = true };
	int rc = parse_opts("push-release", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? 0 : EXIT_USAGE;
	if (o.record && !*o.record) {
		fprintf(stderr, "fhir-redcap-bridge push-release: --record wants a record name\n");
		return EXIT_USAGE;
	}
	config cfg = CONFIG_NULL;
	store *st = NULL;
	if ((rc = open_project("push-release", &o, &cfg, &st, STORE_RW)) != 0)
		return rc;
	/* Every held row but those of refused patients (source "curation"): they go when the refusal ends. */
	int64_t total = 0;
	if (store_outbox_release(st, o.project, o.record, "!curation", &total) != 0)
		rc = EXIT_STORE;
	if (rc != 0)
		fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(st));
	else
		printf("%s: %lld held row%s released%s; %s\n", o.project, (long long)total, total == 1 ? "" : "s",
		       o.record ? " for the record" : "", total ? "they are sent with the next sync" : "nothing to do");
	close_for(&cfg, st);
	return rc;
}

/* ---- check ------------------------------------------------------------------ */

typedef struct check_ctx {
	const config *cfg;
	mapping **maps;
	int problems;
	size_t checked;
} check_ctx;

static void check_on_dict(void *ud, const config_redcap_project *cp, const redcap_dict *d)
{
	check_ctx *c = ud;
	size_t i = (size_t)(cp - c->cfg->redcap_projects);
	char **msgs = NULL;
	size_t n = 0;
	c->checked++;
	int rc = mapping_check(c->maps[i], d, &msgs, &n);
	if (rc < 0) {
		fprintf(stderr, "%s: out of memory\n", cp->name);
		c->problems++;
		return;
	}
	for (size_t k = 0; k < n; k++)
		printf("%s: %s\n", cp->name, msgs[k]);
	if (n == 0)
		printf("%s: mapping %s fits the live project (%zu fields)\n", cp->name, cp->mapping, d->n_fields);
	c->problems += (int)n;
	mapping_msgs_free(msgs, n);
}

static void check_done(push_run *pr, void *ud)
{
	(void)ud;
	json_t *r = push_run_result(pr);
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(r, "projects"), k, v)
	{
		const char *e = json_string_value(json_object_get(v, "error"));
		if (e)
			printf("%s: cannot read the live project: %s\n", k, e);
	}
	json_decref(r);
}

static int cmd_check(int argc, char **argv)
{
	common_opts o = { 0 };
	int rc = parse_opts("check", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? 0 : EXIT_USAGE;
	config cfg = CONFIG_NULL;
	if ((rc = load_config(&cfg, &o)) != 0)
		return rc;
	printf("config %s: ok\n", cfg.path);
	mapping **maps = NULL;
	bool any = false;
	if ((rc = load_mappings(&cfg, &maps, &any)) != 0) {
		config_deinit(&cfg);
		return rc;
	}
	if (!any) {
		printf("no project has a mapping: nothing more to check\n");
		free_mappings(&cfg, maps);
		config_deinit(&cfg);
		return 0;
	}
	for (size_t i = 0; i < cfg.n_redcap_projects; i++)
		if (maps[i])
			printf("%s: mapping %s: loaded\n", cfg.redcap_projects[i].name, cfg.redcap_projects[i].mapping);
	store *st = NULL;
	struct stat sb;
	if (stat(cfg.store_path, &sb) == 0) {
		char err[512];
		if (store_open(&st, cfg.store_path, cfg.store_key_file, STORE_RO, err, sizeof(err)) != 0)
			st = NULL; /* only used to see a recorded ban */
	}
	uv_loop_t loop;
	uv_loop_init(&loop);
	http_client *http = NULL;
	rc_servers *ps = NULL;
	check_ctx cc = { .cfg = &cfg, .maps = maps };
	http_client_opts ho = { .max_connections = 1, .ca_file = cfg.redcap_ca_file,
				.user_agent = "fhir-redcap-bridge/" BRIDGE_VERSION };
	push_run *pr = NULL;
	if (http_client_new(&http, &loop, &ho) != 0 || rc_servers_new(&ps, &cfg) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: out of memory\n");
		rc = EXIT_SYNC_FAILED;
	} else {
		push_env env = { .loop = &loop, .cfg = &cfg, .st = st, .http = http, .servers = ps,
				 .only_project = o.project, .on_dict = check_on_dict, .dict_ud = &cc, .dict_only = true };
		if (push_run_start(&pr, &env, check_done, &cc) != 0) {
			rc = EXIT_SYNC_FAILED;
		} else {
			uv_run(&loop, UV_RUN_DEFAULT);
			bool ok = push_run_ok(pr);
			push_run_free(pr);
			if (!ok)
				rc = 1;
		}
	}
	if (http)
		http_client_close(http, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	rc_servers_free(ps);
	if (st)
		store_close(st);
	if (rc == 0 && cc.problems) {
		printf("%d problem%s found\n", cc.problems, cc.problems == 1 ? "" : "s");
		rc = 1;
	} else if (rc == 0) {
		printf("all mappings fit their projects\n");
	}
	free_mappings(&cfg, maps);
	config_deinit(&cfg);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage_main(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage_main(stdout);
		return 0;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("fhir-redcap-bridge %s\n", BRIDGE_VERSION);
		return 0;
	}
	/* The store, its WAL and key hold patient data: nothing this program
	 * creates is for group or others. */
	umask(077);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "fhir-redcap-bridge: libcurl failed to initialise\n");
		return EXIT_SYNC_FAILED;
	}
	int rc;
	if (strcmp(cmd, "sync") == 0)
		rc = cmd_sync(argc - 1, argv + 1, false);
	else if (strcmp(cmd, "run") == 0)
		rc = cmd_sync(argc - 1, argv + 1, true);
	else if (strcmp(cmd, "status") == 0)
		rc = cmd_status(argc - 1, argv + 1);
	else if (strcmp(cmd, "dump") == 0)
		rc = cmd_dump(argc - 1, argv + 1);
	else if (strcmp(cmd, "explain") == 0)
		rc = cmd_explain(argc - 1, argv + 1);
	else if (strcmp(cmd, "review") == 0)
		rc = cmd_review(argc - 1, argv + 1);
	else if (strcmp(cmd, "check") == 0)
		rc = cmd_check(argc - 1, argv + 1);
	else if (strcmp(cmd, "push-resume") == 0)
		rc = cmd_push_resume(argc - 1, argv + 1);
	else if (strcmp(cmd, "push-release") == 0)
		rc = cmd_push_release(argc - 1, argv + 1);
	else if (strcmp(cmd, "export") == 0)
		rc = export_main(argc - 1, argv + 1);
	else if (strcmp(cmd, "users") == 0)
		rc = cmd_users(argc - 1, argv + 1);
	else if (strcmp(cmd, "chart") == 0)
		rc = cmd_chart(argc - 1, argv + 1);
	else if (strcmp(cmd, "summary") == 0)
		rc = cmd_summary(argc - 1, argv + 1);
	else if (strcmp(cmd, "audit") == 0)
		rc = cmd_audit(argc - 1, argv + 1);
	else {
		fprintf(stderr, "fhir-redcap-bridge: unknown command '%s'\n\n", cmd);
		usage_main(stderr);
		rc = EXIT_USAGE;
	}
	curl_global_cleanup();
	/* Join libuv's worker threads, so that per-thread state they hold
	 * (OpenSSL's thread-local DRBG and error queue, from store work) is
	 * released by the thread-exit handlers rather than left behind. */
	uv_library_shutdown();
	return rc;
}
