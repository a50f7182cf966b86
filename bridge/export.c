/*
 * export — see export.h.
 *
 * Steps, one request at a time (rc_call):
 *   project (json) -> metadata (csv: dictionary.csv, parsed for the record
 *   id field) -> [event, formEventMapping (json)] -> the id list (json) ->
 *   batches (csv or json) -> finish: rename the files, drop the checkpoint.
 */
#include "bridge/export.h"
#include "bridge/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <uv.h>

#include "bridge/config.h"
#include "bridge/http.h"
#include "bridge/log.h"
#include "bridge/rcclient.h"
#include "bridge/util.h"
#include "offline-store/outbox.h"
#include "offline-store/store.h"
#include "redcap/dictionary.h"
#include "redcap/export.h"
#include "redcap/redcap.h"

#ifndef BRIDGE_VERSION
#define BRIDGE_VERSION "0"
#endif

enum { EX_OK = 0, EX_FAILED = 1, EX_USAGE = 2, EX_STORE = 3 };

typedef redcap_out_format out_format;
#define OUT_CSV REDCAP_OUT_CSV
#define OUT_JSON REDCAP_OUT_JSON
#define OUT_NDJSON REDCAP_OUT_NDJSON

typedef struct strlist {
	char **v;
	size_t n;
} strlist;

typedef struct ex_opts {
	const char *config, *project, *out, *since, *log_level;
	out_format format;
	strlist fields, forms, events, records;
	bool label, quiet, json, restart;
	unsigned batch;
} ex_opts;

typedef enum ex_step {
	X_PROJECT,
	X_METADATA,
	X_EVENTS,
	X_FEM,
	X_IDS,
	X_BATCH,
} ex_step;

typedef struct ex {
	ex_opts o;
	config cfg;
	const config_redcap_project *cp;
	store *st;
	uv_loop_t loop;
	http_client *http;
	rc_servers *servers;
	rc_call call;
	char *token;
	ex_step step;
	int exit_code;
	bool failed, tty, longitudinal;
	bool empty_asked;          /* the empty selection's own answer was asked for */
	char *error;

	char *dir;                 /* output directory */
	char *project_json, *metadata_csv, *events_json, *fem_json;
	size_t project_len, metadata_len, events_len, fem_len;
	char *rid_field;           /* the record id field */

	redcap_strv ids;
	redcap_export_plan plan;
	redcap_export_writer w;
	size_t cur_start, cur_count;
	strlist missing;
	char ck_name[128];         /* the checkpoint's name in the store: one per directory and format */
	char sel_hash[65];         /* SHA-256 of the selection (options) */
	char dict_hash[65];        /* SHA-256 of the dictionary, events and form-event mapping */
	bool resumed;
	size_t start_ids;          /* ids done before this run (a resumed one) */
	uint64_t start_records;
	char *partial, *final;     /* the records file: temporary and final names */
	int fd;
	redcap_buf out;            /* the writer's bytes for the file */
	long long batches, splits;
	uint64_t t0_ms, last_draw_ms;
	size_t done_ids;
} ex;

/* ---- options ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fhir-redcap-bridge export --config FILE --project NAME [--out DIR]\n"
		"         [--format csv|json|ndjson] [--fields a,b] [--forms f,g] [--events e] [--records r1,r2]\n"
		"         [--label] [--since \"YYYY-MM-DD HH:MM:SS\"] [--batch-size N] [--restart] [--quiet] [--json]\n"
		"  Exports the project's records to DIR/records.<format> (default DIR: ./export-NAME) with its\n"
		"  data dictionary (dictionary.csv), project.json and, for longitudinal projects, events.json and\n"
		"  form-event-mapping.json. Record ids first, then the records in batches of --batch-size ids\n"
		"  (default 100); a batch REDCap cannot hold in memory is split. Interrupted, the same command\n"
		"  continues where it stopped (other options, or a changed dictionary, start over; so does\n"
		"  --restart). --since exports records created or modified since then; --label writes choice\n"
		"  labels instead of codes; --json prints a summary object on stdout.\n"
		"  Exit status: 0 done, 1 REDCap or the network failed (rerun to continue), 2 usage or\n"
		"  configuration error, 3 the store could not be opened.\n");
}

static int split_list(const char *arg, strlist *l)
{
	char *copy = strdup(arg);
	if (!copy)
		return -ENOMEM;
	for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		size_t n = strlen(t);
		while (n && t[n - 1] == ' ')
			t[--n] = '\0';
		if (!n)
			continue;
		char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
		if (!nv || !(nv[l->n] = strdup(t))) {
			if (nv)
				l->v = nv;
			free(copy);
			return -ENOMEM;
		}
		l->v = nv;
		l->n++;
	}
	free(copy);
	return 0;
}

static int strlist_push(strlist *l, const char *v)
{
	char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	l->v = nv;
	if (!(nv[l->n] = strdup(v)))
		return -ENOMEM;
	l->n++;
	return 0;
}

/* SHA-256 of the parts (NULL parts skipped, each ended by a NUL) as 64 hex digits. */
static int sha256_hex(char out[65], const char *const *parts, const size_t *lens, size_t n)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdn = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;
	for (size_t i = 0; ok && i < n; i++)
		ok = !parts[i] || (EVP_DigestUpdate(c, parts[i], lens[i]) == 1 && EVP_DigestUpdate(c, "", 1) == 1);
	ok = ok && EVP_DigestFinal_ex(c, md, &mdn) == 1;
	EVP_MD_CTX_free(c);
	if (!ok)
		return -ENOMEM;
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static void strlist_free(strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	*l = (strlist){ 0 };
}

static int parse_opts(int argc, char **argv, ex_opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' }, { "project", required_argument, NULL, 'p' },
		{ "out", required_argument, NULL, 'o' },    { "format", required_argument, NULL, 'F' },
		{ "fields", required_argument, NULL, 'f' }, { "forms", required_argument, NULL, 'm' },
		{ "events", required_argument, NULL, 'e' }, { "records", required_argument, NULL, 'r' },
		{ "label", no_argument, NULL, 'L' },        { "since", required_argument, NULL, 's' },
		{ "batch-size", required_argument, NULL, 'b' }, { "quiet", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },         { "log-level", required_argument, NULL, 'l' },
		{ "restart", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
	};
	int c;
	optind = 1;
	opterr = 0;
	o->batch = 100;
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': o->config = optarg; break;
		case 'p': o->project = optarg; break;
		case 'o': o->out = optarg; break;
		case 'F':
			if (strcmp(optarg, "csv") == 0)
				o->format = OUT_CSV;
			else if (strcmp(optarg, "json") == 0)
				o->format = OUT_JSON;
			else if (strcmp(optarg, "ndjson") == 0)
				o->format = OUT_NDJSON;
			else {
				fprintf(stderr, "fhir-redcap-bridge export: --format must be csv, json or ndjson\n");
				return -2;
			}
			break;
		case 'f':
		case 'm':
		case 'e':
		case 'r':
			if (split_list(optarg, c == 'f' ? &o->fields : c == 'm' ? &o->forms : c == 'e' ? &o->events
												: &o->records) != 0)
				return -2;
			break;
		case 'L': o->label = true; break;
		case 's': o->since = optarg; break;
		case 'b': {
			char *end = NULL;
			long v = strtol(optarg, &end, 10);
			if (!end || *end || v < 1 || v > 100000) {
				fprintf(stderr, "fhir-redcap-bridge export: --batch-size must be 1 to 100000\n");
				return -2;
			}
			o->batch = (unsigned)v;
			break;
		}
		case 'q': o->quiet = true; break;
		case 'j': o->json = true; break;
		case 'R': o->restart = true; break;
		case 'l': o->log_level = optarg; break;
		case 'h': usage(stdout); return -1;
		default:
			fprintf(stderr, "fhir-redcap-bridge export: unknown or incomplete option '%s'\n", argv[optind - 1]);
			usage(stderr);
			return -2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "fhir-redcap-bridge export: unexpected argument '%s'\n", argv[optind]);
		return -2;
	}
	if (!o->project) {
		fprintf(stderr, "fhir-redcap-bridge export: --config FILE and --project NAME are required\n");
		return -2;
	}
	return cli_finish_options("export", &o->config, o->log_level);
}

/* ---- failing, files ------------------------------------------------------------ */

static void ex_stop(ex *x);

static void ex_fail(ex *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ex_fail(ex *x, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = util_vformat(fmt, ap);
	va_end(ap);
	if (!x->failed) {
		x->failed = true;
		x->exit_code = EX_FAILED;
		free(x->error);
		x->error = msg;
	} else {
		free(msg);
	}
	ex_stop(x);
}

static char *path_in(const char *dir, const char *name)
{
	char *p = NULL;
	return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

/* Write a whole small file through a temporary name. */
static int write_file(ex *x, const char *name, const char *data, size_t len)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s/.%s.partial", x->dir, name);
	snprintf(dst, sizeof(dst), "%s/%s", x->dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = -errno;
			close(fd);
			unlink(tmp);
			return e;
		}
		off += (size_t)n;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		int e = -errno;
		unlink(tmp);
		return e;
	}
	return rename(tmp, dst) == 0 ? 0 : -errno;
}

static int append_all(ex *x, const char *data, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(x->fd, data + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)n;
	}

	return 0;
}

/* ---- checkpoint ---------------------------------------------------------------- */

/*
 * The checkpoint: one per output directory and format (the partial file's
 * name), holding a hash of the selection and of the dictionary it was
 * started with. A run with other options or against a changed dictionary
 * starts over; a file is never made of two selections.
 *
 * The selection, as a string.
 */
static char *selection_key(const ex *x)
{
	/* (Not the batch size: a rerun may ask for smaller batches and go on.) */
	json_t *sel = json_pack("{s:s, s:s, s:s, s:b, s:s?}", "project", x->cp->name, "url", x->cp->url, "format",
				redcap_out_format_name(x->o.format), "label", x->o.label, "since", x->o.since);
	const strlist *lists[] = { &x->o.fields, &x->o.forms, &x->o.events, &x->o.records };
	const char *names[] = { "fields", "forms", "events", "records" };
	for (int k = 0; sel && k < 4; k++) {
		json_t *a = json_array();
		for (size_t i = 0; i < lists[k]->n; i++)
			json_array_append_new(a, json_string(lists[k]->v[i]));
		json_object_set_new(sel, names[k], a);
	}
	char *s = sel ? json_dumps(sel, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(sel);
	return s;
}

/* The id list is saved once (name "<checkpoint>:ids"); after each batch
 * only the progress (a few integers and the ids found missing) is. */
static int checkpoint_save_ids(ex *x)
{
	char name[sizeof(x->ck_name) + 8];
	snprintf(name, sizeof(name), "%s:ids", x->ck_name);
	json_t *ids = json_array();
	for (size_t i = 0; ids && i < x->ids.n; i++)
		if (json_array_append_new(ids, json_stringn(x->ids.v[i], strlen(x->ids.v[i]))) != 0) {
			json_decref(ids);
			return -EINVAL; /* not UTF-8: cannot be checkpointed */
		}
	char *txt = ids ? json_dumps(ids, JSON_COMPACT) : NULL;
	json_decref(ids);
	int rc = txt ? store_kv_put(x->st, name, txt, strlen(txt)) : -ENOMEM;
	if (txt) {
		OPENSSL_cleanse(txt, strlen(txt));
		free(txt);
	}
	return rc;
}

static int checkpoint_save(ex *x)
{
	redcap_export_writer_state ws;
	redcap_export_writer_save(&x->w, &ws);
	json_t *missing = json_array();
	for (size_t i = 0; missing && i < x->missing.n; i++)
		json_array_append_new(missing, json_string(x->missing.v[i]));
	json_t *ck = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "selection", x->sel_hash,
			       "dictionary", x->dict_hash, "n_ids", (json_int_t)x->ids.n, "next",
			       (json_int_t)x->plan.next, "chunk", (json_int_t)x->plan.chunk, "bytes",
			       (json_int_t)ws.bytes, "rows", (json_int_t)ws.rows, "records", (json_int_t)ws.records,
			       "header_len", (json_int_t)ws.header_len, "splits", (json_int_t)x->splits, "missing",
			       missing);
	char *txt = ck ? json_dumps(ck, JSON_COMPACT) : NULL;
	json_decref(ck);
	int rc = txt ? store_kv_put(x->st, x->ck_name, txt, strlen(txt)) : -ENOMEM;
	if (txt) {
		OPENSSL_cleanse(txt, strlen(txt));
		free(txt);
	}
	return rc;
}

static void checkpoint_delete(ex *x)
{
	char name[sizeof(x->ck_name) + 8];
	snprintf(name, sizeof(name), "%s:ids", x->ck_name);
	store_kv_delete(x->st, x->ck_name);
	store_kv_delete(x->st, name);
}

/* An export that cannot be continued: no checkpoint, no partial file. */
static void checkpoint_discard(ex *x)
{
	checkpoint_delete(x);
	if (x->fd >= 0) {
		close(x->fd);
		x->fd = -1;
	}
	if (x->partial)
		unlink(x->partial);
}

/* Continue from a checkpoint if there is one for this selection and its
 * partial file still holds what it says. Returns 1 resumed, 0 fresh, < 0. */
static int checkpoint_resume(ex *x)
{
	char *txt = NULL;
	size_t len = 0;
	int rc = store_kv_get(x->st, x->ck_name, &txt, &len);
	if (rc == STORE_E_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	json_error_t je;
	json_t *ck = json_loadb(txt, len, 0, &je);
	OPENSSL_cleanse(txt, len);
	free(txt);
	const char *why = NULL;
	if (x->o.restart)
		why = "--restart";
	else if (!json_is_string(json_object_get(ck, "selection")) ||
		 strcmp(json_string_value(json_object_get(ck, "selection")), x->sel_hash) != 0)
		why = "it was started with other options";
	else if (!json_is_string(json_object_get(ck, "dictionary")) ||
		 strcmp(json_string_value(json_object_get(ck, "dictionary")), x->dict_hash) != 0)
		why = "the project's data dictionary, events or form-event mapping changed since";
	if (why) {
		log_warn("export", "%s: the unfinished %s export in %s is discarded (%s); starting over", x->cp->name,
			 redcap_out_format_name(x->o.format), x->dir, why);
		json_decref(ck);
		checkpoint_discard(x);
		return 0;
	}
	char name[sizeof(x->ck_name) + 8];
	snprintf(name, sizeof(name), "%s:ids", x->ck_name);
	txt = NULL;
	json_t *ids = NULL;
	if (store_kv_get(x->st, name, &txt, &len) == 0) {
		ids = json_loadb(txt, len, 0, &je);
		OPENSSL_cleanse(txt, len);
		free(txt);
	}
	if (json_array_size(ids) != (size_t)json_integer_value(json_object_get(ck, "n_ids"))) {
		json_decref(ids);
		ids = NULL;
	}
	redcap_export_writer_state ws = {
		.bytes = (uint64_t)json_integer_value(json_object_get(ck, "bytes")),
		.rows = (uint64_t)json_integer_value(json_object_get(ck, "rows")),
		.records = (uint64_t)json_integer_value(json_object_get(ck, "records")),
		.header_len = (uint64_t)json_integer_value(json_object_get(ck, "header_len")),
	};
	struct stat sb;
	int fd = -1;
	char *head = NULL;
	int ok = json_is_array(ids) && stat(x->partial, &sb) == 0 && (uint64_t)sb.st_size >= ws.bytes;
	if (ok) {
		redcap_strv_deinit(&x->ids);
		x->ids.v = calloc(json_array_size(ids) + 1, sizeof(char *));
		ok = x->ids.v != NULL;
		for (size_t i = 0; ok && i < json_array_size(ids); i++) {
			const char *s = json_string_value(json_array_get(ids, i));
			ok = s && (x->ids.v[i] = strdup(s)) != NULL;
			if (ok)
				x->ids.n = i + 1;
		}
	}
	json_t *missing = json_object_get(ck, "missing");
	for (size_t i = 0; ok && i < json_array_size(missing); i++) {
		const char *m = json_string_value(json_array_get(missing, i));
		ok = m && strlist_push(&x->missing, m) == 0;
	}
	/* A rerun may ask for another batch size: the pieces left after a
	 * split never grow past it. */
	uint64_t chunk = (uint64_t)json_integer_value(json_object_get(ck, "chunk"));
	if (chunk > x->o.batch)
		chunk = x->o.batch;
	ok = ok && redcap_export_plan_restore(&x->plan, x->ids.n, x->o.batch,
					      (uint64_t)json_integer_value(json_object_get(ck, "next")), chunk) == 0;
	if (ok && ws.header_len) {
		head = malloc(ws.header_len + 1);
		fd = open(x->partial, O_RDONLY | O_CLOEXEC);
		ok = head && fd >= 0 && pread(fd, head, ws.header_len, 0) == (ssize_t)ws.header_len;
		if (fd >= 0)
			close(fd);
	}
	redcap_error err = { 0 };
	ok = ok && redcap_export_writer_restore(&x->w, x->o.format, x->rid_field, &ws, head,
						head ? ws.header_len : 0, &err) == 0;
	free(head);
	x->splits = json_integer_value(json_object_get(ck, "splits"));
	json_decref(ck);
	json_decref(ids);
	if (!ok) {
		/* Not usable (the partial file is gone or shorter: start over). */
		log_warn("export", "%s: the checkpoint does not match the partial file; starting over", x->cp->name);
		redcap_strv_deinit(&x->ids);
		strlist_free(&x->missing);
		redcap_export_writer_deinit(&x->w);
		checkpoint_delete(x);
		return 0;
	}
	x->fd = open(x->partial, O_WRONLY | O_CLOEXEC);
	if (x->fd < 0 || ftruncate(x->fd, (off_t)ws.bytes) != 0 || lseek(x->fd, (off_t)ws.bytes, SEEK_SET) < 0)
		return -errno;
	x->done_ids = x->start_ids = x->plan.next;
	x->start_records = ws.records;
	x->resumed = true;
	return 1;
}

/* ---- progress -------------------------------------------------------------------- */

static void progress(ex *x, bool final)
{
	if (x->o.quiet)
		return;
	uint64_t now = (uint64_t)util_wall_ms();
	if (!x->tty || (!final && now - x->last_draw_ms < 200))
		return;
	x->last_draw_ms = now;
	double el = (double)(now - x->t0_ms) / 1000.0;
	/* Rate and ETA from this run's work (a resumed run did not do the rest). */
	size_t run_ids = x->done_ids - x->start_ids;
	size_t total = x->ids.n ? x->ids.n : 1;
	double frac = final ? 1.0 : (double)x->done_ids / (double)total;
	double rate = el > 0 ? (double)run_ids / el : 0;
	char bar[31];
	int fill = (int)(frac * 30);
	for (int i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[30] = '\0';
	if (final) {
		fprintf(stderr, "\r%s [%s] %zu/%zu records  %.0f/s  done          \n", x->cp->name, bar, x->ids.n,
			x->ids.n, rate);
	} else if (rate > 0) {
		double eta = (double)(x->ids.n - x->done_ids) / rate;
		fprintf(stderr, "\r%s [%s] %zu/%zu records  %.0f/s  ETA %.0f s   ", x->cp->name, bar, x->done_ids,
			x->ids.n, rate, eta);
	} else {
		fprintf(stderr, "\r%s [%s] %zu/%zu records  ...          ", x->cp->name, bar, x->done_ids, x->ids.n);
	}
	fflush(stderr);
}

/* ---- the steps ------------------------------------------------------------------- */

static void on_result(void *ud, const rc_result *r);

static void ex_send(ex *x, redcap_body *b)
{
	int rc = rc_call_send(&x->call, b, on_result, x);
	if (rc != 0)
		ex_fail(x, "cannot build the request (%s)", rc == REDCAP_E_TOO_LARGE ? "too large" : "out of memory");
}

static void send_info(ex *x, redcap_content what, bool csv)
{
	redcap_body b;
	redcap_body_init(&b, 0);
	int rc = redcap_request_info(&b, x->token, what);
	if (rc == 0 && csv) {
		/* The dictionary as REDCap's own CSV download has it. */
		rc = redcap_body_add(&b, "format", "csv");
	}
	if (rc != 0) {
		redcap_body_deinit(&b);
		ex_fail(x, "cannot build the %s request", redcap_content_name(what));
		return;
	}
	ex_send(x, &b);
}

/* With --fields or --forms, the record id field is asked for too (as
 * REDCapR does): every batch is checked by it, and a file without record
 * ids is of no use. */
static int ensure_id_field(ex *x)
{
	if (!x->o.fields.n && !x->o.forms.n)
		return 0;
	for (size_t i = 0; i < x->o.fields.n; i++)
		if (strcmp(x->o.fields.v[i], x->rid_field) == 0)
			return 0;
	char **nv = realloc(x->o.fields.v, (x->o.fields.n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	x->o.fields.v = nv;
	memmove(nv + 1, nv, x->o.fields.n * sizeof(*nv));
	if (!(nv[0] = strdup(x->rid_field))) {
		memmove(nv, nv + 1, x->o.fields.n * sizeof(*nv));
		return -ENOMEM;
	}
	x->o.fields.n++;
	return 0;
}

static void fill_filters(ex *x, redcap_export_opts *eo)
{
	eo->fields = (const char *const *)x->o.fields.v;
	eo->n_fields = x->o.fields.n;
	eo->forms = (const char *const *)x->o.forms.v;
	eo->n_forms = x->o.forms.n;
	eo->events = (const char *const *)x->o.events.v;
	eo->n_events = x->o.events.n;
}

/* The record ids of the selection (REDCapR's first step). */
static void send_ids(ex *x)
{
	redcap_export_opts eo = { 0 };
	const char *f[1] = { x->rid_field };
	eo.fields = f;
	eo.n_fields = 1;
	eo.events = (const char *const *)x->o.events.v;
	eo.n_events = x->o.events.n;
	eo.records = (const char *const *)x->o.records.v;
	eo.n_records = x->o.records.n;
	eo.date_begin = x->o.since;
	/* CSV: a fraction of JSON's size and parse time for 100k ids. */
	eo.format = REDCAP_FORMAT_CSV;
	redcap_body b;
	redcap_body_init(&b, 0);
	if (redcap_request_export(&b, x->token, &eo) != 0) {
		redcap_body_deinit(&b);
		ex_fail(x, "cannot build the record-id export (check --since: \"YYYY-MM-DD HH:MM:SS\")");
		return;
	}
	x->step = X_IDS;
	ex_send(x, &b);
}

static void send_batch(ex *x);
static void finish_export(ex *x);

static void start_batches(ex *x)
{
	x->step = X_BATCH;
	send_batch(x);
}

static void send_batch(ex *x)
{
	bool empty = x->ids.n == 0 && !x->empty_asked;
	if (!empty && !redcap_export_plan_next(&x->plan, &x->cur_start, &x->cur_count)) {
		finish_export(x);
		return;
	}
	redcap_export_opts eo = { 0 };
	fill_filters(x, &eo);
	if (empty) {
		/* Nothing selected: ask once for the selection itself, so the file
		 * is what REDCap answers for it (a CSV header alone, "[]"). */
		x->empty_asked = true;
		x->cur_start = x->cur_count = 0;
		eo.records = (const char *const *)x->o.records.v;
		eo.n_records = x->o.records.n;
		eo.date_begin = x->o.since;
	} else {
		eo.records = (const char *const *)x->ids.v + x->cur_start;
		eo.n_records = x->cur_count;
	}
	eo.label_values = x->o.label;
	eo.format = redcap_out_answer_format(x->o.format);
	redcap_body b;
	redcap_body_init(&b, 0);
	if (redcap_request_export(&b, x->token, &eo) != 0) {
		redcap_body_deinit(&b);
		ex_fail(x, "cannot build a batch request");
		return;
	}
	ex_send(x, &b);
}

static void batch_answer(ex *x, const char *body, size_t len)
{
	redcap_strv missing = REDCAP_STRV_NULL, unexpected = REDCAP_STRV_NULL;
	redcap_error err = { 0 };
	int rc;
	if (x->ids.n == 0) {
		/* The empty selection's answer: written as it is. */
		redcap_buf_clear(&x->out);
		if ((rc = redcap_export_writer_batch(&x->w, body, len, &x->out, &err)) != 0 ||
		    (rc = append_all(x, x->out.p ? x->out.p : "", x->out.len)) != 0) {
			ex_fail(x, "the answer for the empty selection does not fit: %s", err.msg);
			return;
		}
		finish_export(x);
		return;
	}
	rc = redcap_export_check_batch(redcap_out_answer_format(x->o.format), body, len, x->rid_field,
					   (const char *const *)x->ids.v + x->cur_start, x->cur_count, &missing,
					   &unexpected, &err);
	if (rc != 0) {
		ex_fail(x, "the answer to a batch cannot be read: %s", err.msg);
		goto out;
	}
	if (unexpected.n)
		log_warn("export", "%s: REDCap returned %zu records that were not asked for; they are written as sent",
			 x->cp->name, unexpected.n);
	for (size_t i = 0; i < missing.n; i++)
		if (strlist_push(&x->missing, missing.v[i]) != 0) {
			ex_fail(x, "out of memory");
			goto out;
		}
	redcap_buf_clear(&x->out);
	if ((rc = redcap_export_writer_batch(&x->w, body, len, &x->out, &err)) != 0) {
		ex_fail(x, "a batch answer does not fit the export: %s", rc == -ENOMEM ? "out of memory" : err.msg);
		goto out;
	}
	/* On disk before the checkpoint says so (a power cut must not leave a
	 * checkpoint ahead of the file). */
	if ((rc = append_all(x, x->out.p ? x->out.p : "", x->out.len)) != 0 ||
	    (fdatasync(x->fd) != 0 && (rc = -errno) != 0)) {
		ex_fail(x, "writing %s: %s", x->partial, strerror(-rc));
		goto out;
	}
	redcap_export_plan_done(&x->plan);
	x->batches++;
	x->done_ids = x->plan.next;
	if ((rc = checkpoint_save(x)) != 0) {
		ex_fail(x, "saving the checkpoint: %s", rc == -ENOMEM ? "out of memory" : store_errmsg(x->st));
		goto out;
	}
	progress(x, false);
	send_batch(x);
out:
	redcap_strv_deinit(&missing);
	redcap_strv_deinit(&unexpected);
}

static void info_answer(ex *x, const char *body, size_t len)
{
	redcap_error err = { 0 };
	switch (x->step) {
	case X_PROJECT: {
		redcap_project info = REDCAP_PROJECT_NULL;
		if (redcap_parse_project(&info, body, len, &err) != 0) {
			ex_fail(x, "unexpected answer to the project request: %s", err.msg);
			return;
		}
		x->longitudinal = info.longitudinal == 1;
		redcap_project_deinit(&info);
		if (!(x->project_json = malloc(len + 1))) {
			ex_fail(x, "out of memory");
			return;
		}
		memcpy(x->project_json, body, len);
		x->project_len = len;
		x->step = X_METADATA;
		send_info(x, REDCAP_CONTENT_METADATA, true);
		return;
	}
	case X_METADATA: {
		redcap_dict d = REDCAP_DICT_NULL;
		if (redcap_dict_parse_csv(&d, body, len, &err) != 0) {
			ex_fail(x, "unexpected answer to the metadata request: %s", err.msg);
			return;
		}
		const redcap_field *rid = redcap_dict_record_id(&d);
		x->rid_field = rid ? strdup(rid->name) : NULL;
		redcap_dict_deinit(&d);
		if (!x->rid_field || ensure_id_field(x) != 0 || !(x->metadata_csv = malloc(len + 1))) {
			ex_fail(x, "out of memory");
			return;
		}
		memcpy(x->metadata_csv, body, len);
		x->metadata_len = len;
		if (x->longitudinal) {
			x->step = X_EVENTS;
			send_info(x, REDCAP_CONTENT_EVENT, false);
			return;
		}
		break;
	}
	case X_EVENTS:
		if (!(x->events_json = malloc(len + 1))) {
			ex_fail(x, "out of memory");
			return;
		}
		memcpy(x->events_json, body, len);
		x->events_len = len;
		x->step = X_FEM;
		send_info(x, REDCAP_CONTENT_FORM_EVENT_MAPPING, false);
		return;
	case X_FEM:
		if (!(x->fem_json = malloc(len + 1))) {
			ex_fail(x, "out of memory");
			return;
		}
		memcpy(x->fem_json, body, len);
		x->fem_len = len;
		break;
	default:
		return;
	}
	/* The dictionary is in: continue a checkpoint made against the same
	 * one, or list the ids. */
	const char *parts[] = { x->metadata_csv, x->events_json, x->fem_json };
	const size_t lens[] = { x->metadata_len, x->events_len, x->fem_len };
	if (sha256_hex(x->dict_hash, parts, lens, 3) != 0) {
		ex_fail(x, "out of memory");
		return;
	}
	int rc = checkpoint_resume(x);
	if (rc < 0) {
		ex_fail(x, "resuming from the checkpoint: %s", strerror(-rc));
		return;
	}
	if (rc == 1) {
		log_debug("export", "%s: continuing an interrupted export at record %zu of %zu", x->cp->name,
			 x->plan.next, x->ids.n);
		start_batches(x);
		return;
	}
	send_ids(x);
}

static void ids_answer(ex *x, const char *body, size_t len)
{
	redcap_error err = { 0 };
	int rc = redcap_parse_record_ids(body, len, REDCAP_FORMAT_CSV, x->rid_field, &x->ids, &err);
	if (rc != 0) {
		ex_fail(x, "unexpected answer to the record-id export: %s", err.msg);
		return;
	}
	if ((rc = redcap_export_plan_init(&x->plan, x->ids.n, x->o.batch)) != 0 ||
	    (rc = redcap_export_writer_init(&x->w, x->o.format, x->rid_field)) != 0) {
		ex_fail(x, "out of memory");
		return;
	}
	x->fd = open(x->partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (x->fd < 0) {
		ex_fail(x, "cannot create %s: %s", x->partial, strerror(errno));
		return;
	}
	if ((rc = checkpoint_save_ids(x)) != 0 || (rc = checkpoint_save(x)) != 0) {
		ex_fail(x, "saving the checkpoint: %s", rc == -EINVAL ? "a record id is not UTF-8" : store_errmsg(x->st));
		return;
	}
	log_debug("export", "%s: %zu records to export in batches of %u", x->cp->name, x->ids.n, x->o.batch);
	start_batches(x);
}

static void finish_export(ex *x)
{
	int rc;
	if (x->missing.n) {
		size_t shown = x->missing.n < 20 ? x->missing.n : 20;
		char list[2048] = "";
		size_t o = 0;
		for (size_t i = 0; i < shown && o < sizeof(list) - 2; i++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", x->missing.v[i]);
		/* Nothing is kept: a rerun lists the ids anew (the records were
		 * deleted or renamed meanwhile, or the rights changed). */
		checkpoint_discard(x);
		ex_fail(x, "%zu records did not come back from REDCap: %s%s (deleted or renamed during the export?); "
			"nothing was written, a rerun starts over", x->missing.n, list, x->missing.n > shown ? ", ..." : "");
		return;
	}
	redcap_buf_clear(&x->out);
	if ((rc = redcap_export_writer_finish(&x->w, &x->out)) != 0 ||
	    (rc = append_all(x, x->out.p ? x->out.p : "", x->out.len)) != 0) {
		ex_fail(x, "writing %s: %s", x->partial, strerror(rc < 0 ? -rc : EIO));
		return;
	}
	if (fsync(x->fd) != 0 || close(x->fd) != 0) {
		x->fd = -1;
		ex_fail(x, "writing %s: %s", x->partial, strerror(errno));
		return;
	}
	x->fd = -1;
	if ((rc = write_file(x, "dictionary.csv", x->metadata_csv, x->metadata_len)) != 0 ||
	    (rc = write_file(x, "project.json", x->project_json, x->project_len)) != 0 ||
	    (x->events_json && (rc = write_file(x, "events.json", x->events_json, x->events_len)) != 0) ||
	    (x->fem_json && (rc = write_file(x, "form-event-mapping.json", x->fem_json, x->fem_len)) != 0) ||
	    (rename(x->partial, x->final) != 0 && (rc = -errno) != 0)) {
		ex_fail(x, "writing the export in %s: %s", x->dir, strerror(-rc));
		return;
	}
	checkpoint_delete(x);
	progress(x, true);
	ex_stop(x);
}

static void on_result(void *ud, const rc_result *r)
{
	ex *x = ud;
	if (r->gave_up) {
		ex_fail(x, "gave up after %u attempts, the last: %s (rerun the same command to continue)",
			x->cfg.redcap_retry_max_attempts, r->desc);
		return;
	}
	switch (r->cls) {
	case REDCAP_OK:
		if (x->step == X_BATCH)
			batch_answer(x, r->body, r->len);
		else if (x->step == X_IDS)
			ids_answer(x, r->body, r->len);
		else
			info_answer(x, r->body, r->len);
		return;
	case REDCAP_SPLIT:
		if (x->step == X_BATCH && redcap_export_plan_split(&x->plan) == 0) {
			x->splits++;
			log_debug("export", "%s: REDCap ran out of memory on %zu records; asking for fewer", x->cp->name,
				 x->cur_count);
			send_batch(x);
			return;
		}
		ex_fail(x, "%s", r->answer->message ? r->answer->message : r->desc);
		return;
	case REDCAP_BANNED:
		/* For good, for every project on that server: the daemon's push
		 * stops too (and this export refuses to start) until push-resume. */
		if (rc_ban_record(x->st, &x->cfg, x->cp->url, r->desc) != 0)
			log_error("export", "cannot record the ban in the store: %s", store_errmsg(x->st));
		ex_fail(x, "REDCap banned this IP address (HTTP 429); ALL TRAFFIC TO %s STOPPED until REDCap's "
			   "administrators lift the ban and an operator runs `fhir-redcap-bridge push-resume --project %s` "
			   "(then rerun the same command to continue)", x->cp->url, x->cp->name);
		return;
	case REDCAP_AUTH:
		/* A bad token or missing rights: once mended, the same command
		 * continues (the checkpoint stays). */
		ex_fail(x, "%s", r->answer->message ? r->answer->message : r->desc);
		return;
	default:
		/* REDCap's own message: an unknown field, form or event. It names
		 * fields, never data. The selection will never be answered: its
		 * checkpoint and partial file go. */
		checkpoint_discard(x);
		ex_fail(x, "%s", r->answer->message ? r->answer->message : r->desc);
		return;
	}
}

/* ---- the command ----------------------------------------------------------------- */

static void on_call_closed(rc_call *c)
{
	(void)c;
}

static void ex_stop(ex *x)
{
	if (x->call.closing)
		return;
	rc_call_close(&x->call, on_call_closed);
	if (x->http) {
		http_client_close(x->http, NULL, NULL);
		x->http = NULL;
	}
}

static int mkdir_p(const char *dir)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int setup(ex *x)
{
	char err[1024];
	if (cli_load_config(&x->cfg, x->o.config, x->o.log_level != NULL) != 0)
		return EX_USAGE;
	for (size_t i = 0; i < x->cfg.n_redcap_projects; i++)
		if (strcmp(x->cfg.redcap_projects[i].name, x->o.project) == 0)
			x->cp = &x->cfg.redcap_projects[i];
	if (!x->cp) {
		fprintf(stderr, "fhir-redcap-bridge export: no project named %s in %s (redcap.projects)\n", x->o.project,
			x->cfg.path);
		return EX_USAGE;
	}
	if (x->cp->token_file) {
		x->token = secret_read_file(x->cp->token_file, NULL, err, sizeof(err));
		if (!x->token) {
			fprintf(stderr, "fhir-redcap-bridge export: %s: token: %s\n", x->cp->name, err);
			return EX_USAGE;
		}
	} else {
		const char *v = x->cp->token_env ? getenv(x->cp->token_env) : NULL;
		if (!v || !*v || !(x->token = strdup(v))) {
			fprintf(stderr, "fhir-redcap-bridge export: %s: environment variable %s is not set\n", x->cp->name,
				x->cp->token_env ? x->cp->token_env : "?");
			return EX_USAGE;
		}
	}
	if (redcap_token_check(x->token) != 0) {
		fprintf(stderr, "fhir-redcap-bridge export: %s: the API token is not acceptable\n", x->cp->name);
		return EX_USAGE;
	}
	if (x->o.since) {
		/* The same check REDCap's dateRangeBegin needs, before any request. */
		redcap_body b;
		redcap_body_init(&b, 0);
		redcap_export_opts eo = { .date_begin = x->o.since };
		int rc = redcap_request_export(&b, x->token, &eo);
		redcap_body_deinit(&b);
		if (rc != 0) {
			fprintf(stderr, "fhir-redcap-bridge export: --since must be \"YYYY-MM-DD HH:MM:SS\", a real time\n");
			return EX_USAGE;
		}
	}
	if (x->o.out)
		x->dir = strdup(x->o.out);
	else if (asprintf(&x->dir, "export-%s", x->cp->name) < 0)
		x->dir = NULL;
	if (!x->dir)
		return EX_FAILED;
	int rc = mkdir_p(x->dir);
	if (rc != 0) {
		fprintf(stderr, "fhir-redcap-bridge export: cannot create %s: %s\n", x->dir, strerror(-rc));
		return EX_FAILED;
	}
	char name[64];
	snprintf(name, sizeof(name), "records.%s", redcap_out_format_name(x->o.format));
	char pname[80];
	snprintf(pname, sizeof(pname), ".%s.partial", name);
	x->final = path_in(x->dir, name);
	x->partial = path_in(x->dir, pname);
	if (!x->final || !x->partial)
		return EX_FAILED;
	if (store_open(&x->st, x->cfg.store_path, x->cfg.store_key_file, STORE_RW, err, sizeof(err)) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", err);
		return EX_STORE;
	}
	char *halt = rc_ban_get(x->st, x->cp->name);
	if (halt) {
		fprintf(stderr, "fhir-redcap-bridge export: %s: halted: %s (clear with `fhir-redcap-bridge push-resume "
				"--project %s` once the REDCap administrators have lifted it)\n", x->cp->name, halt,
			x->cp->name);
		free(halt);
		return EX_FAILED;
	}
	char *sel = selection_key(x);
	if (!sel)
		return EX_FAILED;
	char dirabs[PATH_MAX];
	const char *d = realpath(x->dir, dirabs) ? dirabs : x->dir;
	const char *fmt = redcap_out_format_name(x->o.format);
	const char *sp[] = { sel }, *dp[] = { d, fmt };
	const size_t sl[] = { strlen(sel) }, dl[] = { strlen(d), strlen(fmt) };
	char dh[65];
	rc = sha256_hex(x->sel_hash, sp, sl, 1) == 0 && sha256_hex(dh, dp, dl, 2) == 0 ? 0 : -ENOMEM;
	free(sel);
	if (rc != 0)
		return EX_FAILED;
	snprintf(x->ck_name, sizeof(x->ck_name), "export:%.32s", dh);
	return 0;
}

int export_main(int argc, char **argv)
{
	ex x = { .fd = -1, .o = { .format = OUT_CSV } };
	x.cfg = (config)CONFIG_NULL;
	x.w = (redcap_export_writer)REDCAP_EXPORT_WRITER_NULL;
	int rc = parse_opts(argc, argv, &x.o);
	if (rc < 0) {
		rc = rc == -1 ? 0 : EX_USAGE;
		goto out_opts;
	}
	if ((rc = setup(&x)) != 0)
		goto out;
	uv_loop_init(&x.loop);
	http_client_opts ho = { .max_connections = 1, .ca_file = x.cfg.redcap_ca_file,
				.user_agent = "fhir-redcap-bridge/" BRIDGE_VERSION };
	if (http_client_new(&x.http, &x.loop, &ho) != 0 || rc_servers_new(&x.servers, &x.cfg) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: out of memory\n");
		rc = EX_FAILED;
		if (x.http)
			http_client_close(x.http, NULL, NULL);
		uv_run(&x.loop, UV_RUN_DEFAULT);
		uv_loop_close(&x.loop);
		goto out;
	}
	rc_call_init(&x.call, &x.loop, x.http, &x.cfg, rc_servers_get(x.servers, x.cp->url), x.cp->url, x.cp->name);
	x.tty = isatty(STDERR_FILENO) == 1;
	x.t0_ms = (uint64_t)util_wall_ms();
	x.step = X_PROJECT;
	send_info(&x, REDCAP_CONTENT_PROJECT, false);
	uv_run(&x.loop, UV_RUN_DEFAULT);
	uv_loop_close(&x.loop);
	rc = x.exit_code;
	double el = (double)((uint64_t)util_wall_ms() - x.t0_ms) / 1000.0;
	if (x.failed) {
		if (x.tty && !x.o.quiet)
			fputc('\n', stderr);
		fprintf(stderr, "fhir-redcap-bridge export: %s: %s\n", x.cp->name, x.error ? x.error : "failed");
	} else if (!x.o.quiet) {
		/* The rate is this run's: a resumed run did only part of the work. */
		uint64_t run = x.w.records - x.start_records;
		char resumed[96] = "";
		if (x.resumed)
			snprintf(resumed, sizeof(resumed), "; continued: %llu of the records in this run",
				 (unsigned long long)run);
		fprintf(stderr, "exported %llu records (%llu rows) in %lld requests, %.2f s (%.0f records/s%s): %s\n",
			(unsigned long long)x.w.records, (unsigned long long)x.w.rows, x.call.requests, el,
			el > 0 ? (double)run / el : 0.0, resumed, x.final);
	}
	if (x.o.json) {
		struct rusage ru;
		long rss = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
		json_t *j = json_pack("{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:s?}", "ok", !x.failed, "project",
				      x.cp->name, "records", (json_int_t)x.w.records, "rows", (json_int_t)x.w.rows,
				      "requests", (json_int_t)x.call.requests, "retries", (json_int_t)x.call.retries,
				      "splits", (json_int_t)x.splits, "elapsed_s", el, "peak_rss_kb", (json_int_t)rss,
				      "error", x.failed ? x.error : NULL);
		char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
		if (s)
			printf("%s\n", s);
		free(s);
		json_decref(j);
	}
	rc_servers_free(x.servers);
out:
	if (x.fd >= 0)
		close(x.fd);
	redcap_export_writer_deinit(&x.w);
	redcap_buf_deinit(&x.out);
	redcap_strv_deinit(&x.ids);
	strlist_free(&x.missing);
	free(x.project_json);
	free(x.metadata_csv);
	free(x.events_json);
	free(x.fem_json);
	free(x.rid_field);
	free(x.dir);
	free(x.partial);
	free(x.final);
	free(x.error);
	secret_free(x.token);
	store_close(x.st);
	config_deinit(&x.cfg);
out_opts:
	strlist_free(&x.o.fields);
	strlist_free(&x.o.forms);
	strlist_free(&x.o.events);
	strlist_free(&x.o.records);
	return rc;
}
