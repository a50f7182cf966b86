/*
 * push — the REDCap side of a cycle. See push.h for what it does; here is
 * how.
 *
 * One push_run walks the projects in config order. Each project goes
 * through a few steps, one request at a time:
 *
 *   P_PROJECT -> P_METADATA -> [P_REPEATING] -> [P_EVENTS -> P_ARMS -> P_FEM]
 *     -> P_PUSH (batches until nothing is due) -> next project
 *
 * A batch is the due outbox rows (at most redcap.batch_size), each turned
 * into the flat REDCap row and validated; the good ones form a chunk. A
 * chunk is one import request. Chunks live on a stack: an import that must
 * be split pushes its two halves, an import whose per-value errors could be
 * pinned to rows pushes the rest. Every request goes through send(): the
 * server's rate window first, then curl, then redcap_classify(); transient
 * answers are retried here with backoff, so the step handlers only see
 * answers that mean something.
 */
#include "bridge/push.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bridge/backoff.h"
#include "bridge/log.h"
#include "bridge/push-util.h"
#include "bridge/rcclient.h"
#include "bridge/util.h"
#include "offline-store/outbox.h"
#include "redcap/dictionary.h"
#include "redcap/export.h"
#include "redcap/redcap.h"
#include "redcap/validate.h"

/* A single row REDCap refuses without saying why is tried in this many
 * cycles (with backoff) before it is held. */
#define PUSH_REFUSED_TRIES 3
/* dateRangeBegin is read in REDCap's local time, which the bridge does not
 * know: asking from this long before the last read covers every offset
 * from UTC-12 on (and a clock an hour off). */
#define ANCHOR_SINCE_MARGIN_S (13 * 3600)

/* Who held a row back (the "source" of its reasons, see outbox.h). */
#define SRC_VALIDATION "validation"   /* the bridge's check against the live dictionary: re-checked each cycle */
#define SRC_MAPPING "mapping"         /* the mapping could not make a value */
#define SRC_REDCAP "redcap"           /* REDCap refused it */
#define SRC_STORE "store"             /* the stored row cannot be read */


/* The rows are checked as REDCap checks the import they go in: with
 * overwriteBehavior=overwrite (see push_next_chunk). pad_time stays off: a
 * date sent for a datetime field is held back, never stored as 00:00. */
static const redcap_validate_opts validate_opts = { .overwrite = true };
/* ---- a run ---------------------------------------------------------------- */

typedef enum pstep {
	P_START,
	P_PROJECT,
	P_METADATA,
	P_REPEATING,
	P_EVENTS,
	P_ARMS,
	P_FEM,
	P_ANCHOR_IDS,
	P_ANCHORS,
	P_PUSH,
	P_DONE,
} pstep;

typedef struct chunk {
	size_t *idx;   /* indices into proj.rows */
	size_t n;
} chunk;

typedef struct proj {
	push_run *pr;
	const config_redcap_project *cp;
	size_t index;            /* in cfg->redcap_projects */
	rc_server *srv;
	long long requests0, retries0;   /* the call's counters when the project began */
	char *token;
	redcap_dict dict;
	redcap_project info;
	pstep step;
	bool ok, finished;
	char *error;

	/* the batch being sent */
	store_outbox_row *rows;
	size_t n_rows;
	json_t **send;      /* per row: the REDCap row, or NULL when held/done */
	chunk *stack;
	size_t n_stack, cap_stack;
	chunk cur;          /* the chunk in flight */

	int64_t due_at;     /* wall ms when the project began: rows deferred in this cycle wait for the next */
	uint64_t rng;       /* backoff jitter */
	json_t *held_kinds; /* "field\x1fPHI-free message" -> rows held back for it this cycle */

	/* anchor mode: the records whose anchors are read, in batches */
	pu_recset anchor_recs;
	redcap_export_plan plan;
	size_t plan_start, plan_count;
	json_t *anchor_out;  /* {folded record: [values]} */
	bool anchor_listed;  /* REDCap listed the records changed since the last read */
	int64_t anchor_t0;   /* wall ms when the listing was asked for */

	/* figures */
	long long sent, held, requests, records, retries, splits, batches, deferred, released;
} proj;

struct push_run {
	push_env env;
	push_done_fn done;
	void *ud;
	proj *p;
	size_t n, cur;
	rc_call call;            /* one request at a time, to the current project's server */
	bool stopping, finished;
	uint64_t started_ms, ended_ms;
};

static void proj_next_step(proj *p);
static void run_next_project(push_run *pr);
static void push_next_chunk(proj *p);
static void split_chunk(proj *p);
static void send_anchor_ids(proj *p);
static void anchor_ids_answer(proj *p, const char *body, size_t len);
static void send_anchor_batch(proj *p);
static void anchors_answer(proj *p, const char *body, size_t len);
static void anchors_finish(proj *p);
static void anchor_batch_split(proj *p, const char *desc);
static void anchor_ids_skipped(proj *p, const char *why);

#define proj_set_error(p, ...) util_setf(&(p)->error, __VA_ARGS__)

static void batch_drop(proj *p)
{
	if (p->send)
		for (size_t i = 0; i < p->n_rows; i++)
			json_decref(p->send[i]);
	free(p->send);
	p->send = NULL;
	store_outbox_rows_free(p->rows, p->n_rows);
	p->rows = NULL;
	p->n_rows = 0;
	for (size_t i = 0; i < p->n_stack; i++)
		free(p->stack[i].idx);
	p->n_stack = 0;
	free(p->cur.idx);
	p->cur.idx = NULL;
	p->cur.n = 0;
}

/* One warning per kind of problem rows were held back for this cycle:
 * the field and the message, record names and values taken out. */
static void log_held_kinds(proj *p)
{
	const char *k;
	json_t *v;
	json_object_foreach(p->held_kinds, k, v)
	{
		const char *sep = strchr(k, '\x1f');
		int fl = sep ? (int)(sep - k) : 0;
		long long n = (long long)json_integer_value(v);
		log_warn("redcap", "%s: %lld row%s held back: %.*s%s%s (see `status`)", p->cp->name, n, n == 1 ? "" : "s",
			 fl, k, fl ? ": " : "", sep ? sep + 1 : k);
	}
	json_object_clear(p->held_kinds);
}

static void anchors_drop(proj *p)
{
	pu_recset_deinit(&p->anchor_recs);
	json_decref(p->anchor_out);
	p->anchor_out = NULL;
}

/* The project is over for this cycle (ok or not); go to the next. */
static void proj_finish(proj *p, bool ok)
{
	push_run *pr = p->pr;
	p->ok = ok;
	p->finished = true;
	p->step = P_DONE;
	batch_drop(p);
	anchors_drop(p);
	log_held_kinds(p);
	p->requests = pr->call.requests - p->requests0;
	p->retries = pr->call.retries - p->retries0;
	if (p->token) {
		secret_free(p->token);
		p->token = NULL;
	}
	if (ok && !pr->env.dict_only && !pr->env.anchor_fields)
		log_info("redcap", "%s: %lld rows sent in %lld requests, %lld held back, %lld deferred", p->cp->name,
			 p->sent, p->requests, p->held, p->deferred);
	else if (!ok)
		log_error("redcap", "%s: push incomplete: %s", p->cp->name, p->error ? p->error : "error");
	pr->cur++;
	run_next_project(pr);
}

/* Every row of the chunk in flight (and the rest of the batch) waits for
 * a later cycle. */
static void proj_defer(proj *p, const char *why)
{
	int64_t next = util_wall_ms() + 60000;
	store *st = p->pr->env.st;
	if (store_begin(st) == 0) {
		for (size_t i = 0; i < p->n_rows; i++)
			if (p->send[i])
				store_outbox_retry(st, p->rows[i].id, p->rows[i].gen, next, why);
		if (store_commit(st) != 0)
			store_rollback(st);
	}
}

/* ---- sending ------------------------------------------------------------ */

static void on_result(void *ud, const rc_result *r);

/* Send b's body (taken) to the current project's server. */
static void send_new(push_run *pr, redcap_body *b)
{
	proj *p = &pr->p[pr->cur];
	int rc = rc_call_send(&pr->call, b, on_result, pr);
	if (rc != 0) {
		proj_set_error(p, "cannot build the request (%s)", rc == REDCAP_E_TOO_LARGE ? "too large" : "out of memory");
		proj_finish(p, false);
	}
}

/* Stop every request to this project's server: 403 for this cycle, a ban
 * for good (recorded for every project on that server). */
static void server_stop(proj *p, bool ban, const char *what)
{
	push_run *pr = p->pr;
	rc_server *s = p->srv;
	s->stopped = true;
	snprintf(s->reason, sizeof(s->reason), "%s", what);
	if (ban && rc_ban_record(pr->env.st, pr->env.cfg, s->url, what) != 0)
		log_error("redcap", "cannot record the ban in the store: %s", store_errmsg(pr->env.st));
	log_error("redcap", "%s: %s. ALL TRAFFIC TO %s STOPPED%s", p->cp->name, what, s->url,
		  ban ? " until an operator runs `fhir-redcap-bridge push-resume`" : " for this cycle");
}

/* ---- info steps ------------------------------------------------------------ */

static void send_info(proj *p, redcap_content what)
{
	redcap_body b;
	redcap_body_init(&b, 0);
	if (redcap_request_info(&b, p->token, what) != 0) {
		redcap_body_deinit(&b);
		proj_set_error(p, "cannot build the %s request", redcap_content_name(what));
		proj_finish(p, false);
		return;
	}
	send_new(p->pr, &b);
}

static bool load_token(proj *p)
{
	char err[512];
	const config_redcap_project *cp = p->cp;
	if (cp->token_file) {
		p->token = secret_read_file(cp->token_file, NULL, err, sizeof(err));
		if (!p->token) {
			proj_set_error(p, "token: %s", err);
			return false;
		}
	} else {
		const char *v = cp->token_env ? getenv(cp->token_env) : NULL;
		if (!v || !*v) {
			proj_set_error(p, "environment variable %s (token_env) is not set", cp->token_env ? cp->token_env : "?");
			return false;
		}
		p->token = strdup(v);
		if (!p->token) {
			proj_set_error(p, "out of memory");
			return false;
		}
	}
	if (redcap_token_check(p->token) != 0) {
		proj_set_error(p, "the API token is not acceptable (1..256 visible ASCII characters)");
		return false;
	}
	return true;
}

static void proj_begin(proj *p)
{
	push_run *pr = p->pr;
	char *halt = NULL;
	if (pr->env.st && store_project_get(pr->env.st, p->cp->name, PUSH_HALT_KEY, &halt) == 0 && *halt) {
		proj_set_error(p, "halted: %s (clear with `fhir-redcap-bridge push-resume --project %s` once the "
				  "REDCap administrators have lifted it)", halt, p->cp->name);
		free(halt);
		proj_finish(p, false);
		return;
	}
	free(halt);
	pr->call.srv = p->srv;
	pr->call.url = p->cp->url;
	pr->call.name = p->cp->name;
	p->requests0 = pr->call.requests;
	p->retries0 = pr->call.retries;
	if (p->srv->stopped) {
		proj_set_error(p, "no traffic to %s: %s", p->srv->url, p->srv->reason);
		proj_finish(p, false);
		return;
	}
	/* Nothing due and no row held by the bridge's own check (re-checked
	 * against the live dictionary each cycle): no request at all (a quiet
	 * cycle costs REDCap nothing). */
	int64_t next = 0, checkable = 0;
	p->due_at = util_wall_ms();
	int rc = pr->env.dict_only || pr->env.anchor_fields ? 0 : store_outbox_next_due(pr->env.st, p->cp->name, &next);
	if ((rc == STORE_E_NOTFOUND || (rc == 0 && next > p->due_at)) &&
	    (rc = store_outbox_held_count(pr->env.st, p->cp->name, SRC_VALIDATION, &checkable)) == 0 && checkable == 0) {
		proj_finish(p, true);
		return;
	}
	if (rc != 0) {
		proj_set_error(p, "store: %s", store_errmsg(pr->env.st));
		proj_finish(p, false);
		return;
	}
	if (!load_token(p)) {
		proj_finish(p, false);
		return;
	}
	p->step = P_PROJECT;
	send_info(p, REDCAP_CONTENT_PROJECT);
}

/* The next request of the dictionary steps after `done`:
 * metadata -> [event -> arm -> formEventMapping] -> [repeatingFormsEvents]. */
static void info_after(proj *p, pstep done)
{
	bool longi = p->info.longitudinal == 1, rep = p->info.repeating == 1;
	pstep next = P_PUSH;
	switch (done) {
	case P_METADATA:
		next = longi ? P_EVENTS : rep ? P_REPEATING : P_PUSH;
		break;
	case P_EVENTS:
		next = P_ARMS;
		break;
	case P_ARMS:
		next = P_FEM;
		break;
	case P_FEM:
		next = rep ? P_REPEATING : P_PUSH;
		break;
	default:
		break;
	}
	static const redcap_content what[] = {
		[P_EVENTS] = REDCAP_CONTENT_EVENT,
		[P_ARMS] = REDCAP_CONTENT_ARM,
		[P_FEM] = REDCAP_CONTENT_FORM_EVENT_MAPPING,
		[P_REPEATING] = REDCAP_CONTENT_REPEATING_FORMS_EVENTS,
	};
	if (next == P_PUSH) {
		proj_next_step(p);
		return;
	}
	p->step = next;
	send_info(p, what[next]);
}

static void info_answer(proj *p, const char *body, size_t len)
{
	redcap_error err = { 0 };
	int rc = 0;
	switch (p->step) {
	case P_PROJECT:
		rc = redcap_parse_project(&p->info, body, len, &err);
		if (rc == 0) {
			p->step = P_METADATA;
			send_info(p, REDCAP_CONTENT_METADATA);
			return;
		}
		break;
	case P_METADATA:
		/* Events (and their forms) first: loading events resets the
		 * repeating setup, which names events. */
		rc = redcap_dict_parse_json(&p->dict, body, len, &err);
		if (rc == 0) {
			redcap_dict_set_project(&p->dict, &p->info);
			info_after(p, P_METADATA);
			return;
		}
		break;
	case P_EVENTS:
		rc = redcap_dict_load_events(&p->dict, body, len, &err);
		if (rc == 0) {
			info_after(p, P_EVENTS);
			return;
		}
		break;
	case P_ARMS:
		rc = redcap_dict_load_arms(&p->dict, body, len, &err);
		if (rc == 0) {
			info_after(p, P_ARMS);
			return;
		}
		break;
	case P_FEM:
		rc = redcap_dict_load_form_event_mapping(&p->dict, body, len, &err);
		if (rc == 0) {
			info_after(p, P_FEM);
			return;
		}
		break;
	case P_REPEATING:
		rc = redcap_dict_load_repeating(&p->dict, body, len, &err);
		if (rc == 0) {
			info_after(p, P_REPEATING);
			return;
		}
		break;
	default:
		break;
	}
	proj_set_error(p, "unexpected answer to the %s request: %s", p->step == P_PROJECT ? "project" :
		       p->step == P_METADATA ? "metadata" : p->step == P_REPEATING ? "repeatingFormsEvents" :
		       p->step == P_EVENTS ? "event" : p->step == P_ARMS ? "arm" : "formEventMapping",
		       rc == -ENOMEM ? "out of memory" : err.msg);
	proj_finish(p, false);
}

/* ---- the push step --------------------------------------------------------- */

/*
 * A reason as stored (in clear, for `status`): the field, REDCap's message
 * with the record name, which may be an MRN, replaced by "[record]"
 * (messages such as "The record name (x) cannot contain ..." quote it), and
 * who decided (source). "#log" carries the message for the warning line,
 * the value taken out too; hold_row() takes it off before the reason is
 * stored. NULL on ENOMEM.
 */
static json_t *reason(const char *field, const char *message, const char *record, const char *value,
		      const char *source)
{
	char *stored = pu_scrub(message, record, NULL), *logged = pu_scrub(message, record, value);
	json_t *r = stored && logged ? json_pack("{s:s, s:s, s:s, s:s}", "field", field, "message", stored, "source",
						 source, "#log", logged)
				     : NULL;
	free(stored);
	free(logged);
	return r;
}

static json_t *reasons_from_errors(const redcap_errors *errs, const char *record, const char *source)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < errs->n; i++)
		json_array_append_new(a, reason(errs->v[i].field, errs->v[i].message, record, errs->v[i].value, source));
	return a;
}

/* Count a held row's reasons by kind for log_held_kinds(); drop their "#log". */
static void note_held(proj *p, json_t *reasons)
{
	size_t i;
	json_t *r;
	json_array_foreach(reasons, i, r)
	{
		const char *f = json_string_value(json_object_get(r, "field"));
		const char *m = json_string_value(json_object_get(r, "#log"));
		char *key = NULL;
		if (asprintf(&key, "%s\x1f%s", f ? f : "", m ? m : "") >= 0) {
			json_t *n = json_object_get(p->held_kinds, key);
			json_object_set_new(p->held_kinds, key, json_integer(json_integer_value(n) + 1));
			free(key);
		}
		json_object_del(r, "#log");
	}
}

static int hold_row(proj *p, size_t i, json_t *reasons)
{
	store *st = p->pr->env.st;
	note_held(p, reasons);
	char *txt = json_dumps(reasons, JSON_COMPACT);
	int rc = txt ? store_outbox_hold(st, p->rows[i].id, p->rows[i].gen, txt) : -ENOMEM;
	if (rc == 0) {
		p->held++;
		/* The full detail, PHI included, only at debug level. */
		if (log_get_level() >= LOG_DEBUG) {
			char *vals = p->send[i] ? json_dumps(p->send[i], JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
			log_debug("redcap", "%s: held back: record %s, instrument %s, instance %lld: %s; row %s",
				  p->cp->name, p->rows[i].record, p->rows[i].instrument[0] ? p->rows[i].instrument : "-",
				  (long long)p->rows[i].instance, txt, vals ? vals : "(unreadable)");
			free(vals);
		}
	}
	free(txt);
	json_decref(p->send[i]);
	p->send[i] = NULL;
	return rc;
}

/* reasons (an array of {"field", "message"}) with source added to each; a new array. */
static json_t *with_source(const json_t *reasons, const char *source)
{
	json_t *out = json_array();
	size_t i;
	json_t *r;
	json_array_foreach(reasons, i, r)
	{
		json_t *c = json_copy(r);
		if (c) {
			json_object_set_new(c, "source", json_string(source));
			json_object_set_new(c, "#log", json_incref(json_object_get(c, "message")));
		}
		json_array_append_new(out, c);
	}
	return out;
}

/* The stored payload -> the row REDCap takes: the project's record id field
 * first, the reserved "#..." members removed. *errors gets "#errors". */
static json_t *row_for_redcap(proj *p, const store_outbox_row *r, json_t **errors)
{
	json_error_t je;
	json_t *src = json_loadb(r->payload, r->payload_len, JSON_REJECT_DUPLICATES, &je);
	*errors = NULL;
	if (!json_is_object(src)) {
		json_decref(src);
		return NULL;
	}
	const redcap_field *rid = redcap_dict_record_id(&p->dict);
	json_t *row = json_object();
	json_object_set(row, rid ? rid->name : "record_id", json_object_get(src, "#record"));
	const char *k;
	json_t *v;
	json_object_foreach(src, k, v)
	{
		if (k[0] == '#')
			continue;
		json_object_set(row, k, v);
	}
	json_t *e = json_object_get(src, "#errors");
	if (json_array_size(e))
		*errors = json_incref(e);
	json_decref(src);
	return row;
}

static void chunk_push(proj *p, size_t *idx, size_t n)
{
	if (n == 0) {
		free(idx);
		return;
	}
	if (p->n_stack == p->cap_stack) {
		size_t cap = p->cap_stack ? p->cap_stack * 2 : 8;
		chunk *nv = realloc(p->stack, cap * sizeof(*nv));
		if (!nv) {
			free(idx);
			return;
		}
		p->stack = nv;
		p->cap_stack = cap;
	}
	p->stack[p->n_stack++] = (chunk){ .idx = idx, .n = n };
}

/* Read the next due rows, hold the ones that cannot go, queue the rest. */
static void next_batch(proj *p)
{
	push_run *pr = p->pr;
	store *st = pr->env.st;
	batch_drop(p);
	int rc = store_outbox_due(st, p->cp->name, p->due_at, pr->env.cfg->redcap_batch_size, &p->rows, &p->n_rows);
	if (rc != 0) {
		proj_set_error(p, "store: %s", store_errmsg(st));
		proj_finish(p, false);
		return;
	}
	if (p->n_rows == 0) {
		proj_finish(p, true);
		return;
	}
	p->batches++;
	p->send = calloc(p->n_rows, sizeof(*p->send));
	size_t *idx = malloc(p->n_rows * sizeof(*idx));
	if (!p->send || !idx) {
		free(idx);
		proj_set_error(p, "out of memory");
		proj_finish(p, false);
		return;
	}
	size_t n = 0;
	redcap_errors errs = REDCAP_ERRORS_NULL;
	if (store_begin(st) != 0) {
		free(idx);
		proj_set_error(p, "store: %s", store_errmsg(st));
		proj_finish(p, false);
		return;
	}
	for (size_t i = 0; i < p->n_rows; i++) {
		json_t *eng = NULL;
		json_t *row = row_for_redcap(p, &p->rows[i], &eng);
		p->send[i] = row;
		if (!row) {
			json_t *r = json_array();
			json_array_append_new(r,
					      reason("", "the stored row is not a JSON object", NULL, NULL, SRC_STORE));
			hold_row(p, i, r);
			json_decref(r);
			continue;
		}
		if (eng) {
			/* The mapping could not make a value: hold with its reason. */
			json_t *r = with_source(eng, SRC_MAPPING);
			hold_row(p, i, r);
			json_decref(r);
			json_decref(eng);
			continue;
		}
		redcap_errors_deinit(&errs);
		rc = redcap_validate_row(&p->dict, row, i, &validate_opts, &errs);
		if (rc == REDCAP_E_INVALID) {
			json_t *r = reasons_from_errors(&errs, p->rows[i].record, SRC_VALIDATION);
			hold_row(p, i, r);
			json_decref(r);
			continue;
		}
		idx[n++] = i;
	}
	redcap_errors_deinit(&errs);
	if (store_commit(st) != 0) {
		store_rollback(st);
		free(idx);
		proj_set_error(p, "store: %s", store_errmsg(st));
		proj_finish(p, false);
		return;
	}
	chunk_push(p, idx, n);
	push_next_chunk(p);
}

static void push_next_chunk(proj *p)
{
	push_run *pr = p->pr;
	free(p->cur.idx);
	p->cur.idx = NULL;
	p->cur.n = 0;
	if (p->n_stack == 0) {
		next_batch(p);
		return;
	}
	p->cur = p->stack[--p->n_stack];
	json_t *rows = json_array();
	for (size_t i = 0; i < p->cur.n; i++)
		json_array_append(rows, p->send[p->cur.idx[i]]);
	redcap_body b;
	redcap_body_init(&b, 0);
	/* overwrite: a blank in a row clears the field. Rows carry blanks only
	 * where the bridge clears a value it sent before (see curate.c). */
	redcap_import_opts io = { .overwrite = true };
	int rc = redcap_request_import_rows(&b, p->token, &io, rows);
	json_decref(rows);
	if (rc != 0) {
		redcap_body_deinit(&b);
		if (rc == REDCAP_E_TOO_LARGE && p->cur.n > 1)
			goto split;
		proj_set_error(p, "cannot build an import request: %s", rc == REDCAP_E_TOO_LARGE ? "too large" : "error");
		proj_finish(p, false);
		return;
	}
	send_new(pr, &b);
	return;
split:
	split_chunk(p);
}

/* The records of a chunk as REDCap counts them (trimmed, case-insensitive). */
static size_t distinct_records(proj *p, const chunk *c)
{
	pu_recset set = PU_RECSET_NULL;
	for (size_t i = 0; i < c->n; i++)
		if (pu_recset_add(&set, p->rows[c->idx[i]].record) < 0)
			break;
	size_t n = set.n;
	pu_recset_deinit(&set);
	return n;
}

static void chunk_done(proj *p)
{
	store *st = p->pr->env.st;
	int rc = store_begin(st);
	for (size_t i = 0; rc == 0 && i < p->cur.n; i++) {
		size_t k = p->cur.idx[i];
		rc = store_outbox_done(st, p->rows[k].id, p->rows[k].gen);
		json_decref(p->send[k]);
		p->send[k] = NULL;
	}
	if (rc == 0)
		rc = store_commit(st);
	if (rc != 0) {
		store_rollback(st);
		/* REDCap has the rows; they are sent again next cycle, which
		 * changes nothing there (same record, instance and values). */
		proj_set_error(p, "store: %s", store_errmsg(st));
		proj_finish(p, false);
		return;
	}
	p->sent += (long long)p->cur.n;
	push_next_chunk(p);
}

static void split_chunk(proj *p)
{
	size_t n = p->cur.n, half = n / 2;
	size_t *a = malloc(half * sizeof(*a)), *c = malloc((n - half) * sizeof(*c));
	if (!a || !c) {
		free(a);
		free(c);
		proj_set_error(p, "out of memory");
		proj_finish(p, false);
		return;
	}
	memcpy(a, p->cur.idx, half * sizeof(*a));
	memcpy(c, p->cur.idx + half, (n - half) * sizeof(*c));
	p->splits++;
	chunk_push(p, c, n - half);
	chunk_push(p, a, half);
	push_next_chunk(p);
}

static bool same_trimmed(const char *a, const char *b)
{
	while (*a == ' ')
		a++;
	while (*b == ' ')
		b++;
	size_t la = strlen(a), lb = strlen(b);
	while (la && a[la - 1] == ' ')
		la--;
	while (lb && b[lb - 1] == ' ')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* Hold the single row of the chunk in flight with reasons (taken). */
static void hold_one(proj *p, json_t *reasons)
{
	store *st = p->pr->env.st;
	if (store_begin(st) == 0) {
		hold_row(p, p->cur.idx[0], reasons);
		if (store_commit(st) != 0)
			store_rollback(st);
	}
	json_decref(reasons);
}

/*
 * REDCap refused the single row of the chunk in flight and its answer could
 * not be pinned to the row by record, field and value. Per-value errors or
 * a refusal the row itself causes (its record name, columns, event, repeat
 * columns) say what is wrong: held at once. Anything else does not (a
 * generic 400, a proxy's page): the row is tried again in later cycles,
 * with backoff, and held only when REDCap refuses it PUSH_REFUSED_TRIES
 * times. Nothing is lost either way: `push-release` sends a held row again.
 */
static void refused_alone(proj *p, const redcap_answer *a)
{
	size_t k = p->cur.idx[0];
	const store_outbox_row *row = &p->rows[k];
	char desc[256];
	redcap_answer_describe(a, desc, sizeof(desc));
	if (a->errors.n) {
		json_t *r = json_array();
		for (size_t e = 0; r && e < a->errors.n; e++) {
			const redcap_value_error *ve = &a->errors.v[e];
			json_array_append_new(r, reason(ve->field, ve->message, row->record, ve->value, SRC_REDCAP));
		}
		hold_one(p, r);
		push_next_chunk(p);
		return;
	}
	const char *msg = a->message && *a->message ? a->message : desc;
	const bool row_caused = pu_refusal_is_row_caused(msg);
	if (row_caused || row->attempts + 1 >= PUSH_REFUSED_TRIES) {
		json_t *r = json_array();
		if (row_caused) {
			json_array_append_new(r, reason("", msg, row->record, NULL, SRC_REDCAP));
		} else {
			/* The message says nothing about the row and may be anything (a
			 * proxy's page): status keeps its first 200 bytes, the log only
			 * the PHI-free description. */
			char *stored = NULL;
			if (asprintf(&stored, "REDCap refused this row without saying why, %d tries (%s): %.200s",
				     row->attempts + 1, desc, msg) < 0)
				stored = NULL;
			json_t *x = stored ? reason("", stored, row->record, NULL, SRC_REDCAP) : NULL;
			if (x) {
				char *lm = NULL;
				if (asprintf(&lm, "REDCap refused the row without saying why, %d tries (%s)",
					     row->attempts + 1, desc) >= 0)
					json_object_set_new(x, "#log", json_string(lm));
				free(lm);
			}
			json_array_append_new(r, x);
			free(stored);
		}
		hold_one(p, r);
		push_next_chunk(p);
		return;
	}
	/* Later, with backoff: not in this cycle (due_at is before next). */
	const config *cfg = p->pr->env.cfg;
	uint64_t delay = backoff_delay_ms((unsigned)row->attempts + 1, cfg->redcap_retry_base_ms,
					  cfg->redcap_retry_max_ms, -1, &p->rng);
	store *st = p->pr->env.st;
	int rc = store_outbox_retry(st, row->id, row->gen, util_wall_ms() + (int64_t)delay, desc);
	if (rc != 0) {
		proj_set_error(p, "store: %s", store_errmsg(st));
		proj_finish(p, false);
		return;
	}
	p->deferred++;
	log_warn("redcap", "%s: REDCap refused a row without saying why (%s); it is tried again in a later cycle "
			   "(refusal %d of %d before it is held)",
		 p->cp->name, desc, row->attempts + 1, PUSH_REFUSED_TRIES);
	json_decref(p->send[k]);
	p->send[k] = NULL;
	push_next_chunk(p);
}

/* REDCap refused the import. Pin its per-value errors to rows of the chunk
 * (record, field and value must all match) and hold those; resend the
 * rest. Anything that cannot be pinned is found by splitting. */
static void import_refused(proj *p, const redcap_answer *a)
{
	size_t n = p->cur.n;
	json_t **reasons = calloc(n, sizeof(*reasons));
	bool all_pinned = a->errors.n > 0;
	for (size_t e = 0; reasons && e < a->errors.n; e++) {
		const redcap_value_error *ve = &a->errors.v[e];
		bool pinned = false;
		if (ve->kind == REDCAP_ERR_VALUE) {
			for (size_t i = 0; i < n; i++) {
				json_t *row = p->send[p->cur.idx[i]];
				if (!same_trimmed(p->rows[p->cur.idx[i]].record, ve->record))
					continue;
				json_t *v = json_object_get(row, ve->field);
				if (!json_is_string(v) || !same_trimmed(json_string_value(v), ve->value))
					continue;
				if (!reasons[i])
					reasons[i] = json_array();
				json_array_append_new(reasons[i],
						      reason(ve->field, ve->message, ve->record, ve->value, SRC_REDCAP));
				pinned = true;
			}
		}
		all_pinned = all_pinned && pinned;
	}
	if (!reasons || !all_pinned) {
		if (reasons)
			for (size_t i = 0; i < n; i++)
				json_decref(reasons[i]);
		free(reasons);
		if (n > 1)
			split_chunk(p);
		else
			refused_alone(p, a);
		return;
	}
	store *st = p->pr->env.st;
	size_t *rest = malloc(n * sizeof(*rest));
	size_t nr = 0;
	store_begin(st);
	for (size_t i = 0; i < n; i++) {
		if (reasons[i]) {
			hold_row(p, p->cur.idx[i], reasons[i]);
			json_decref(reasons[i]);
		} else if (rest) {
			rest[nr++] = p->cur.idx[i];
		}
	}
	if (store_commit(st) != 0)
		store_rollback(st);
	free(reasons);
	if (rest)
		chunk_push(p, rest, nr);
	push_next_chunk(p);
}

static void import_answer(proj *p, const char *body, size_t len)
{
	uint64_t count = 0;
	if (redcap_parse_import_count(body, len, &count) != 0) {
		/* 200 but not REDCap's answer (a proxy page?): the rows may or may not be
		 * in. Sending them again is harmless, so keep them pending. */
		proj_set_error(p, "the answer to an import is not REDCap's {\"count\": N}");
		proj_defer(p, "unexpected import answer");
		proj_finish(p, false);
		return;
	}
	size_t want = distinct_records(p, &p->cur);
	if (count != want)
		log_warn("redcap", "%s: REDCap counted %llu records in an import of %zu distinct records",
			 p->cp->name, (unsigned long long)count, want);
	p->records += (long long)count;
	chunk_done(p);
}

static void on_result(void *ud, const rc_result *r)
{
	push_run *pr = ud;
	if (pr->stopping || pr->cur >= pr->n)
		return;
	proj *p = &pr->p[pr->cur];
	if (r->gave_up) {
		/* Transient failures all the way: the rows wait for the next cycle. */
		proj_set_error(p, "giving up for this cycle after %u attempts: %s", pr->env.cfg->redcap_retry_max_attempts,
			       r->desc);
		if (p->step == P_PUSH)
			proj_defer(p, r->desc);
		proj_finish(p, false);
		return;
	}
	switch (r->cls) {
	case REDCAP_OK:
		if (p->step == P_PUSH)
			import_answer(p, r->body, r->len);
		else if (p->step == P_ANCHORS)
			anchors_answer(p, r->body, r->len);
		else if (p->step == P_ANCHOR_IDS)
			anchor_ids_answer(p, r->body, r->len);
		else
			info_answer(p, r->body, r->len);
		break;
	case REDCAP_RETRY: /* only with gave_up, above */
		break;
	case REDCAP_SPLIT:
		if (p->step == P_PUSH && p->cur.n > 1) {
			split_chunk(p);
		} else if (p->step == P_ANCHORS) {
			anchor_batch_split(p, r->desc);
		} else if (p->step == P_ANCHOR_IDS) {
			anchor_ids_skipped(p, r->desc);
		} else {
			proj_set_error(p, "%s", r->desc);
			if (p->step == P_PUSH)
				proj_defer(p, r->desc);
			proj_finish(p, false);
		}
		break;
	case REDCAP_BANNED:
		server_stop(p, true, "REDCap has banned this IP address (HTTP 429)");
		proj_set_error(p, "REDCap banned this IP address; nothing more is sent to %s", p->srv->url);
		/* The rows stay due: nothing is sent while the ban is recorded,
		 * and everything goes at once after push-resume. */
		proj_finish(p, false);
		break;
	case REDCAP_AUTH:
		server_stop(p, false, r->desc);
		proj_set_error(p, "%s (check the token and its API rights)", r->desc);
		proj_finish(p, false);
		break;
	case REDCAP_BAD_REQUEST:
		if (p->step == P_PUSH) {
			import_refused(p, r->answer);
		} else {
			proj_set_error(p, "%s", r->desc);
			proj_finish(p, false);
		}
		break;
	}
}

/*
 * The anchors typed into REDCap. Which records: those of the patients this
 * cycle curates (env.anchor_records, from the bridge), and those REDCap
 * lists as created or modified since the last read (a person may have
 * typed an anchor for a patient without new EHR data). The first read, or
 * one after a failed listing, lists every record. The listing asks for the
 * record id only; the anchor fields come in batches of redcap.batch_size
 * records, halved while REDCap runs out of memory (redcap/export.h's plan).
 * A listing that runs out of memory even so is skipped for this cycle (a
 * warning; the records of this cycle's patients are read all the same and
 * the next cycle lists from the same point).
 */
static void send_anchor_ids(proj *p)
{
	push_run *pr = p->pr;
	const redcap_field *rid = redcap_dict_record_id(&p->dict);
	char since[32] = "", *last = NULL;
	p->anchor_t0 = util_wall_ms();
	if (store_project_get(pr->env.st, p->cp->name, PUSH_ANCHORS_READ_KEY, &last) == 0) {
		char *end = NULL;
		long long ms = strtoll(last, &end, 10);
		struct tm tm;
		time_t t = (time_t)(ms / 1000 - ANCHOR_SINCE_MARGIN_S);
		if (end && !*end && ms > 0 && gmtime_r(&t, &tm))
			strftime(since, sizeof(since), "%Y-%m-%d %H:%M:%S", &tm);
	}
	free(last);
	const char *fields[1] = { rid->name };
	redcap_export_opts eo = { .fields = fields, .n_fields = 1, .date_begin = since[0] ? since : NULL };
	redcap_body b;
	redcap_body_init(&b, 0);
	if (redcap_request_export(&b, p->token, &eo) != 0) {
		redcap_body_deinit(&b);
		proj_set_error(p, "cannot build the record listing request");
		proj_finish(p, false);
		return;
	}
	p->step = P_ANCHOR_IDS;
	log_debug("redcap", "%s: listing the records changed since %s", p->cp->name, since[0] ? since : "ever");
	send_new(pr, &b);
}

/* The record set: this cycle's records first (their spelling is the bridge's), then REDCap's list. */
static int anchor_records_add(proj *p, const redcap_strv *listed)
{
	push_run *pr = p->pr;
	size_t n = pr->env.n_anchor_records ? pr->env.n_anchor_records[p->index] : 0;
	for (size_t i = 0; i < n; i++)
		if (pu_recset_add(&p->anchor_recs, pr->env.anchor_records[p->index][i]) < 0)
			return -ENOMEM;
	for (size_t i = 0; listed && i < listed->n; i++)
		if (pu_recset_add(&p->anchor_recs, listed->v[i]) < 0)
			return -ENOMEM;
	return 0;
}

/* A failed listing (REDCap ran out of memory even on record ids): read this cycle's records only. */
static void anchor_ids_skipped(proj *p, const char *why)
{
	log_warn("redcap", "%s: REDCap could not list the records changed since the last read (%s); anchors typed "
			   "for patients without new EHR data are looked at in a later cycle",
		 p->cp->name, why);
	p->anchor_listed = false;
	if (anchor_records_add(p, NULL) != 0) {
		proj_set_error(p, "out of memory");
		proj_finish(p, false);
		return;
	}
	redcap_export_plan_init(&p->plan, p->anchor_recs.n, p->pr->env.cfg->redcap_batch_size);
	send_anchor_batch(p);
}

static void anchor_ids_answer(proj *p, const char *body, size_t len)
{
	const redcap_field *rid = redcap_dict_record_id(&p->dict);
	redcap_strv ids = { 0 };
	redcap_error err = { 0 };
	int rc = redcap_parse_record_ids(body, len, REDCAP_FORMAT_JSON, rid->name, &ids, &err);
	if (rc != 0) {
		redcap_strv_deinit(&ids);
		proj_set_error(p, "unexpected answer to the record listing: %s",
			       rc == -ENOMEM ? "out of memory" : err.msg);
		proj_finish(p, false);
		return;
	}
	p->anchor_listed = true;
	rc = anchor_records_add(p, &ids);
	log_debug("redcap", "%s: %zu records changed in REDCap since the last read", p->cp->name, ids.n);
	redcap_strv_deinit(&ids);
	if (rc != 0) {
		proj_set_error(p, "out of memory");
		proj_finish(p, false);
		return;
	}
	redcap_export_plan_init(&p->plan, p->anchor_recs.n, p->pr->env.cfg->redcap_batch_size);
	send_anchor_batch(p);
}

/* The next batch of records: record id + anchor fields. */
static void send_anchor_batch(proj *p)
{
	push_run *pr = p->pr;
	if (!redcap_export_plan_next(&p->plan, &p->plan_start, &p->plan_count)) {
		anchors_finish(p);
		return;
	}
	const redcap_field *rid = redcap_dict_record_id(&p->dict);
	size_t n = pr->env.n_anchor_fields[p->index];
	const char **fields = calloc(n + 1, sizeof(*fields));
	if (!fields) {
		proj_set_error(p, "out of memory");
		proj_finish(p, false);
		return;
	}
	fields[0] = rid->name;
	for (size_t i = 0; i < n; i++)
		fields[i + 1] = pr->env.anchor_fields[p->index][i];
	redcap_export_opts eo = { .fields = fields, .n_fields = n + 1,
				  .records = (const char *const *)p->anchor_recs.v + p->plan_start,
				  .n_records = p->plan_count };
	redcap_body b;
	redcap_body_init(&b, 0);
	int rc = redcap_request_export(&b, p->token, &eo);
	free(fields);
	if (rc != 0) {
		redcap_body_deinit(&b);
		proj_set_error(p, "cannot build the anchor export request");
		proj_finish(p, false);
		return;
	}
	p->step = P_ANCHORS;
	p->batches++;
	send_new(pr, &b);
}

/* REDCap ran out of memory on a batch: ask for half of it. */
static void anchor_batch_split(proj *p, const char *desc)
{
	if (redcap_export_plan_split(&p->plan) != 0) {
		proj_set_error(p, "REDCap cannot export the anchors of a single record: %s", desc);
		proj_finish(p, false);
		return;
	}
	p->splits++;
	send_anchor_batch(p);
}

static void anchors_answer(proj *p, const char *body, size_t len)
{
	push_run *pr = p->pr;
	json_error_t je;
	json_t *rows = json_loadb(body, len, 0, &je);
	const redcap_field *rid = redcap_dict_record_id(&p->dict);
	size_t n = pr->env.n_anchor_fields[p->index];
	if (!json_is_array(rows)) {
		json_decref(rows);
		proj_set_error(p, "the anchor export is not a JSON array (line %d, column %d)", je.line, je.column);
		proj_finish(p, false);
		return;
	}
	if (!p->anchor_out)
		p->anchor_out = json_object();
	json_t *out = p->anchor_out;
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		const char *rec = json_string_value(json_object_get(row, rid->name));
		const char *ri = json_string_value(json_object_get(row, "redcap_repeat_instrument"));
		char *key = rec ? pu_fold(rec) : NULL;
		if (!key || (ri && *ri)) {
			free(key);
			continue;
		}
		json_t *vals = json_object_get(out, key);
		if (!vals) {
			vals = json_array();
			for (size_t k = 0; k < n; k++)
				json_array_append_new(vals, json_string(""));
			json_object_set_new(out, key, vals);
		}
		free(key);
		for (size_t k = 0; k < n; k++) {
			const char *v = json_string_value(json_object_get(row, pr->env.anchor_fields[p->index][k]));
			const char *have = json_string_value(json_array_get(vals, k));
			if (v && *v && have && !*have)
				json_array_set_new(vals, k, json_string(v));
		}
	}
	json_decref(rows);
	redcap_export_plan_done(&p->plan);
	send_anchor_batch(p);
}

/* Every batch read: the records REDCap had nothing for get empty values
 * (read: no anchor typed), and the result goes to the caller. */
static void anchors_finish(proj *p)
{
	push_run *pr = p->pr;
	size_t n = pr->env.n_anchor_fields[p->index];
	json_t *out = p->anchor_out ? p->anchor_out : json_object();
	p->anchor_out = NULL;
	for (size_t r = 0; out && r < p->anchor_recs.n; r++) {
		char *key = pu_fold(p->anchor_recs.v[r]);
		if (key && !json_object_get(out, key)) {
			json_t *vals = json_array();
			for (size_t k = 0; k < n; k++)
				json_array_append_new(vals, json_string(""));
			json_object_set_new(out, key, vals);
		}
		free(key);
	}
	log_info("redcap", "%s: anchors of %zu records read in %lld batches%s", p->cp->name, p->anchor_recs.n,
		 p->batches, p->anchor_listed ? "" : " (REDCap's list of changed records was not read)");
	if (pr->env.on_anchors)
		pr->env.on_anchors(pr->env.dict_ud, p->index, out, p->anchor_listed ? p->anchor_t0 : 0);
	else
		json_decref(out);
	proj_finish(p, true);
}

/*
 * Rows held by the bridge's own check are checked again against the
 * dictionary just read: a row that passes now (an administrator added the
 * missing choice, widened a validation) is un-held and goes with this
 * cycle's batches; one that still fails keeps being held, with today's
 * messages. Pages of redcap.batch_size rows, a transaction each.
 */
static int revalidate_held(proj *p)
{
	push_run *pr = p->pr;
	store *st = pr->env.st;
	int64_t after = 0;
	long long still = 0;
	int rc = 0;
	for (;;) {
		store_outbox_row *rows = NULL;
		size_t n = 0;
		if ((rc = store_outbox_held(st, p->cp->name, SRC_VALIDATION, after, pr->env.cfg->redcap_batch_size, &rows,
					    &n)) != 0 ||
		    n == 0)
			break;
		redcap_errors errs = REDCAP_ERRORS_NULL;
		if ((rc = store_begin(st)) != 0) {
			store_outbox_rows_free(rows, n);
			break;
		}
		for (size_t i = 0; rc == 0 && i < n; i++) {
			json_t *eng = NULL, *row = row_for_redcap(p, &rows[i], &eng);
			after = rows[i].id;
			redcap_errors_deinit(&errs);
			int v = row && !eng ? redcap_validate_row(&p->dict, row, 0, &validate_opts, &errs) : -EINVAL;
			if (v == 0) {
				rc = store_outbox_unhold(st, rows[i].id, rows[i].gen);
				p->released += rc == 0;
			} else if (v == REDCAP_E_INVALID) {
				json_t *r = reasons_from_errors(&errs, rows[i].record, SRC_VALIDATION);
				for (size_t k = 0; k < json_array_size(r); k++)
					json_object_del(json_array_get(r, k), "#log");
				char *txt = r ? json_dumps(r, JSON_COMPACT) : NULL;
				rc = txt ? store_outbox_hold(st, rows[i].id, rows[i].gen, txt) : -ENOMEM;
				still++;
				log_debug("redcap", "%s: still held back: record %s, instrument %s, instance %lld: %s",
					  p->cp->name, rows[i].record, rows[i].instrument[0] ? rows[i].instrument : "-",
					  (long long)rows[i].instance, txt ? txt : "?");
				free(txt);
				json_decref(r);
			}
			json_decref(row);
			json_decref(eng);
		}
		redcap_errors_deinit(&errs);
		if (rc == 0)
			rc = store_commit(st);
		else
			store_rollback(st);
		store_outbox_rows_free(rows, n);
		if (rc != 0 || n < pr->env.cfg->redcap_batch_size)
			break;
	}
	if (p->released)
		log_info("redcap", "%s: %lld held rows pass the dictionary now; they are sent", p->cp->name, p->released);
	if (still)
		log_info("redcap", "%s: %lld held rows still fail the dictionary (see `status`)", p->cp->name, still);
	return rc;
}

static void proj_next_step(proj *p)
{
	push_run *pr = p->pr;
	p->step = P_PUSH;
	if (!redcap_dict_record_id(&p->dict)) {
		proj_set_error(p, "the project has no fields");
		proj_finish(p, false);
		return;
	}
	if (pr->env.on_dict)
		pr->env.on_dict(pr->env.dict_ud, p->cp, &p->dict);
	if (pr->env.dict_only) {
		proj_finish(p, true);
		return;
	}
	if (pr->env.anchor_fields) {
		send_anchor_ids(p);
		return;
	}
	if (revalidate_held(p) != 0) {
		proj_set_error(p, "store: %s", store_errmsg(pr->env.st));
		proj_finish(p, false);
		return;
	}
	next_batch(p);
}

/* ---- the run ------------------------------------------------------------- */

static void run_finish(push_run *pr)
{
	if (pr->finished)
		return;
	pr->finished = true;
	pr->ended_ms = uv_now(pr->env.loop);
	pr->done(pr, pr->ud);
}

static void run_next_project(push_run *pr)
{
	if (pr->stopping) {
		run_finish(pr);
		return;
	}
	while (pr->cur < pr->n && pr->p[pr->cur].finished)
		pr->cur++;
	if (pr->cur >= pr->n) {
		run_finish(pr);
		return;
	}
	proj_begin(&pr->p[pr->cur]);
}

int push_run_start(push_run **out, const push_env *env, push_done_fn done, void *ud)
{
	push_run *pr = calloc(1, sizeof(*pr));
	if (!pr)
		return -ENOMEM;
	pr->env = *env;
	pr->done = done;
	pr->ud = ud;
	const config *cfg = env->cfg;
	pr->p = calloc(cfg->n_redcap_projects ? cfg->n_redcap_projects : 1, sizeof(*pr->p));
	if (!pr->p) {
		free(pr);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_redcap_projects; i++) {
		const config_redcap_project *cp = &cfg->redcap_projects[i];
		if (!cp->mapping)
			continue;
		if (env->only_project && strcmp(env->only_project, cp->name) != 0)
			continue;
		if (env->anchor_fields && !env->anchor_fields[i])
			continue;
		proj *p = &pr->p[pr->n++];
		p->pr = pr;
		p->cp = cp;
		p->index = i;
		p->srv = rc_servers_get(env->servers, cp->url);
		p->dict = (redcap_dict)REDCAP_DICT_NULL;
		p->info = (redcap_project)REDCAP_PROJECT_NULL;
		p->rng = (uint64_t)util_wall_ms() * 2654435761u + i + 1;
		p->held_kinds = json_object();
	}
	rc_call_init(&pr->call, env->loop, env->http, cfg, NULL, NULL, "redcap");
	uv_update_time(env->loop);
	pr->started_ms = uv_now(env->loop);
	*out = pr;
	run_next_project(pr);
	return 0;
}

void push_run_stop(push_run *pr)
{
	if (!pr || pr->finished)
		return;
	pr->stopping = true;
	rc_call_cancel(&pr->call);
	if (pr->cur < pr->n && !pr->p[pr->cur].finished) {
		proj *p = &pr->p[pr->cur];
		proj_set_error(p, "stopped");
		p->finished = true;
		batch_drop(p);
	}
	run_finish(pr);
}

bool push_run_ok(const push_run *pr)
{
	for (size_t i = 0; i < pr->n; i++)
		if (!pr->p[i].ok)
			return false;
	return true;
}

json_t *push_run_result(const push_run *pr)
{
	json_t *projects = json_object();
	for (size_t i = 0; i < pr->n; i++) {
		const proj *p = &pr->p[i];
		json_object_set_new(projects, p->cp->name,
				    json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}", "ok", p->ok,
					      "sent", (json_int_t)p->sent, "held", (json_int_t)p->held, "deferred",
					      (json_int_t)p->deferred, "released", (json_int_t)p->released, "requests",
					      (json_int_t)p->requests, "records", (json_int_t)p->records,
					      "retries", (json_int_t)p->retries, "splits", (json_int_t)p->splits,
					      "batches", (json_int_t)p->batches, "error", p->error));
	}
	double el = pr->ended_ms >= pr->started_ms ? (double)(pr->ended_ms - pr->started_ms) / 1000.0 : 0.0;
	return json_pack("{s:b, s:f, s:o}", "ok", push_run_ok(pr), "elapsed_s", el, "projects", projects);
}

static void on_call_closed(rc_call *c)
{
	free((push_run *)((char *)c - offsetof(push_run, call)));
}

void push_run_free(push_run *pr)
{
	if (!pr)
		return;
	for (size_t i = 0; i < pr->n; i++) {
		proj *p = &pr->p[i];
		batch_drop(p);
		anchors_drop(p);
		json_decref(p->held_kinds);
		free(p->stack);
		free(p->error);
		secret_free(p->token);
		redcap_dict_deinit(&p->dict);
		redcap_project_deinit(&p->info);
	}
	free(pr->p);
	rc_call_close(&pr->call, on_call_closed);
}
