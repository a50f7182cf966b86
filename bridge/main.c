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
#include "bridge/config.h"
#include "bridge/http.h"
#include "bridge/log.h"
#include "bridge/sync.h"
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
	int64_t server_id;
	http_client *http;
	auth *auth;
	uv_signal_t sig_int, sig_term;
	uv_timer_t poll_timer;
	sync_cycle *cy;
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
} common_opts;

static void usage_main(FILE *f)
{
	fprintf(f,
		"usage: fhir-redcap-bridge <command> [options]\n"
		"\n"
		"commands:\n"
		"  sync --once --config FILE   pull every configured FHIR type once, then exit\n"
		"  run --config FILE           the daemon: a sync cycle every fhir.poll_interval_s\n"
		"  status --config FILE        what the local store holds (--json for a JSON object)\n"
		"  dump --config FILE --type T list stored resources of a type (NDJSON; --bodies for the resources)\n"
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
			   "  Runs one pull cycle over fhir.resources: an incremental search by _lastUpdated\n"
			   "  from each type's watermark (or resumes an interrupted crawl), stores every page\n"
			   "  with its cursor in one transaction, then exits: 0 if every type completed,\n"
			   "  1 otherwise (the errors are logged and kept for `status`).\n"
			   "  --json   print the cycle's result as one JSON object on stdout\n");
	else if (strcmp(cmd, "run") == 0)
		fprintf(f, "usage: fhir-redcap-bridge run --config FILE [--log-level L]\n"
			   "  The daemon: a sync cycle every fhir.poll_interval_s seconds. SIGINT or SIGTERM\n"
			   "  stops it gracefully (the transaction in flight commits); a second signal exits\n"
			   "  at once.\n");
	else if (strcmp(cmd, "status") == 0)
		fprintf(f, "usage: fhir-redcap-bridge status --config FILE [--json]\n"
			   "  What the store holds: resources per type, versions, crawl cursors, last sync.\n"
			   "  Opens the store read-only, so it works while a daemon writes.\n");
	else if (strcmp(cmd, "dump") == 0)
		fprintf(f, "usage: fhir-redcap-bridge dump --config FILE --type TYPE [--bodies]\n"
			   "  One JSON line per stored resource of TYPE: type, id, versionId, lastUpdated,\n"
			   "  patient; with --bodies the decrypted resource itself. Prints PHI: use with care.\n");
	else
		usage_main(f);
}

/* Parse the options every subcommand shares. Returns -1 after printing help
 * (exit 0) or -2 on a usage error (exit 2). */
static int parse_opts(const char *cmd, int argc, char **argv, common_opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "once", no_argument, NULL, 'o' },
		{ "type", required_argument, NULL, 't' },
		{ "bodies", no_argument, NULL, 'b' },
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
	if (optind < argc) {
		fprintf(stderr, "fhir-redcap-bridge %s: unexpected argument '%s'\n", cmd, argv[optind]);
		return -2;
	}
	if (!o->config)
		o->config = getenv("FHIR_REDCAP_BRIDGE_CONFIG");
	if (!o->config) {
		fprintf(stderr, "fhir-redcap-bridge %s: --config FILE is required\n", cmd);
		return -2;
	}
	if (o->log_level) {
		log_level lv;
		if (log_level_parse(o->log_level, &lv) != 0) {
			fprintf(stderr, "fhir-redcap-bridge: --log-level must be error, warn, info or debug\n");
			return -2;
		}
		log_set_level(lv);
	}
	return 0;
}

static int load_config(config *cfg, const common_opts *o)
{
	char err[1024];
	if (config_load(cfg, o->config, err, sizeof(err)) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", err);
		return EXIT_USAGE;
	}
	if (!o->log_level && cfg->log_level) {
		log_level lv;
		if (log_level_parse(cfg->log_level, &lv) == 0)
			log_set_level(lv);
	}
	return 0;
}

/* ---- sync / run ---------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void app_shutdown(app *a)
{
	if (a->http) {
		http_client_close(a->http, NULL, NULL);
		a->http = NULL;
	}
	if (!uv_is_closing((uv_handle_t *)&a->sig_int)) {
		uv_close((uv_handle_t *)&a->sig_int, NULL);
		uv_close((uv_handle_t *)&a->sig_term, NULL);
		uv_close((uv_handle_t *)&a->poll_timer, NULL);
	}
}

static void start_cycle(app *a);

static void on_poll_timer(uv_timer_t *t)
{
	app *a = t->data;
	if (!a->stopping)
		start_cycle(a);
}

static void on_cycle_done(sync_cycle *cy, void *ud)
{
	app *a = ud;
	json_t *res = sync_cycle_result(cy);
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		json_object_set_new(res, "peak_rss_kb", json_integer(ru.ru_maxrss));
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
	sync_cycle_free(cy);
	a->cy = NULL;

	if (a->daemon && !a->stopping) {
		uint64_t interval = (uint64_t)a->cfg.fhir_poll_interval_s * 1000u;
		uint64_t since = now_ms() - a->cycle_started_ms;
		uint64_t delay = since >= interval ? 0 : interval - since;
		log_info("bridge", "next sync in %.0f s", (double)delay / 1000.0);
		uv_timer_start(&a->poll_timer, on_poll_timer, delay, 0);
		return;
	}
	app_shutdown(a);
}

static void start_cycle(app *a)
{
	sync_env env = {
		.loop = &a->loop,
		.cfg = &a->cfg,
		.st = a->st,
		.server_id = a->server_id,
		.http = a->http,
		.auth = a->auth,
	};
	a->cycle_started_ms = now_ms();
	int rc = sync_cycle_start(&a->cy, &env, on_cycle_done, a);
	if (rc != 0) {
		log_error("bridge", "cannot start a sync cycle: %s", strerror(-rc));
		a->exit_code = EXIT_SYNC_FAILED;
		app_shutdown(a);
	}
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
	if (a->exit_code == 0)
		a->exit_code = 128 + signum;
	uv_timer_stop(&a->poll_timer);
	if (a->cy)
		sync_cycle_stop(a->cy);
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
	if ((rc = open_store(&a.cfg, STORE_RW, &a.st)) != 0) {
		config_deinit(&a.cfg);
		return rc;
	}
	if (store_server_id(a.st, a.cfg.fhir_base_url, &a.server_id) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(a.st));
		store_close(a.st);
		config_deinit(&a.cfg);
		return EXIT_STORE;
	}
	uv_loop_init(&a.loop);
	http_client_opts ho = {
		.max_connections = a.cfg.fhir_max_concurrency,
		.ca_file = a.cfg.fhir_ca_file,
		.user_agent = "fhir-redcap-bridge/" BRIDGE_VERSION,
	};
	if (http_client_new(&a.http, &a.loop, &ho) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: cannot create the HTTP client\n");
		rc = EXIT_SYNC_FAILED;
		goto out;
	}
	char err[1024] = "";
	if (auth_new(&a.auth, &a.cfg.fhir_auth, a.http, (long)a.cfg.fhir_timeout_s * 1000, err, sizeof(err)) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: fhir.auth: %s\n", err);
		http_client_close(a.http, NULL, NULL);
		a.http = NULL;
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
	start_cycle(&a);
	uv_run(&a.loop, UV_RUN_DEFAULT);
	rc = a.exit_code;
	if (daemon && a.stopping && rc >= 128)
		rc = 0; /* a clean stop on request */
out:
	auth_free(a.auth);
	if (uv_loop_close(&a.loop) != 0)
		log_warn("bridge", "event loop closed with handles still open");
	store_close(a.st);
	config_deinit(&a.cfg);
	return rc;
}

/* ---- status / dump ------------------------------------------------------- */

static void print_status_text(json_t *s, const char *store_path)
{
	printf("store: %s (schema %lld)\n", store_path, (long long)json_integer_value(json_object_get(s, "schema")));
	json_t *ls = json_object_get(s, "last_sync");
	printf("last sync: %s\n", json_is_string(ls) ? json_string_value(ls) : "never");
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
	store_close(st);
	config_deinit(&cfg);
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
	if ((rc = load_config(&cfg, &o)) != 0)
		return rc;
	store *st = NULL;
	if ((rc = open_store(&cfg, STORE_RO, &st)) != 0) {
		config_deinit(&cfg);
		return rc;
	}
	dump_ctx d = { .bodies = o.bodies };
	if (store_foreach_resource(st, 0, o.type, o.bodies, dump_one, &d) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(st));
		rc = EXIT_STORE;
	}
	store_close(st);
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
