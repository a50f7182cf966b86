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

#include "bridge/log.h"
#include "bridge/rcclient.h"
#include "bridge/util.h"
#include "offline-store/outbox.h"
#include "redcap/dictionary.h"
#include "redcap/redcap.h"
#include "redcap/validate.h"

/* ---- a run ---------------------------------------------------------------- */

typedef enum pstep {
	P_START,
	P_PROJECT,
	P_METADATA,
	P_REPEATING,
	P_EVENTS,
	P_ARMS,
	P_FEM,
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

	/* figures */
	long long sent, held, requests, records, retries, splits, batches;
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
static void send_anchor_export(proj *p);
static void anchors_answer(proj *p, const char *body, size_t len);

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

/* The project is over for this cycle (ok or not); go to the next. */
static void proj_finish(proj *p, bool ok)
{
	push_run *pr = p->pr;
	p->ok = ok;
	p->finished = true;
	p->step = P_DONE;
	batch_drop(p);
	p->requests = pr->call.requests - p->requests0;
	p->retries = pr->call.retries - p->retries0;
	if (p->token) {
		secret_free(p->token);
		p->token = NULL;
	}
	if (ok && !pr->env.dict_only && !pr->env.anchor_fields)
		log_info("redcap", "%s: %lld rows sent in %lld requests, %lld held back", p->cp->name, p->sent,
			 p->requests, p->held);
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
	if (ban) {
		const config *cfg = pr->env.cfg;
		for (size_t i = 0; i < cfg->n_redcap_projects; i++)
			if (strcmp(cfg->redcap_projects[i].url, s->url) == 0 &&
			    store_project_set(pr->env.st, cfg->redcap_projects[i].name, PUSH_HALT_KEY, what) != 0)
				log_error("redcap", "cannot record the ban in the store: %s",
					  store_errmsg(pr->env.st));
	}
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
	/* Nothing due: no request at all (a quiet cycle costs REDCap nothing). */
	int64_t next = 0;
	int rc = pr->env.dict_only || pr->env.anchor_fields ? 0 : store_outbox_next_due(pr->env.st, p->cp->name, &next);
	if (rc == STORE_E_NOTFOUND || (rc == 0 && next > util_wall_ms())) {
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

/* A reason as stored (in clear, for `status`): REDCap's message with the
 * record name, which may be an MRN, replaced by "[record]" (messages such as
 * "The record name (x) cannot contain ..." quote it). */
static json_t *reason(const char *field, const char *message, const char *record)
{
	size_t rl = record ? strlen(record) : 0;
	const char *hit = rl ? strstr(message, record) : NULL;
	if (!hit)
		return json_pack("{s:s, s:s}", "field", field, "message", message);
	size_t cap = strlen(message) + 16, n = 0;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	for (const char *p = message; *p;) {
		/* Whole words only: a record "1" must not eat the 1 of "32767". */
		bool word = strncmp(p, record, rl) == 0 && (p == message || !isalnum((unsigned char)p[-1])) &&
			    !isalnum((unsigned char)p[rl]);
		if (word) {
			size_t need = n + sizeof("[record]") + strlen(p);
			if (need > cap) {
				char *nv = realloc(out, need);
				if (!nv) {
					free(out);
					return NULL;
				}
				out = nv;
				cap = need;
			}
			memcpy(out + n, "[record]", 8);
			n += 8;
			p += rl;
		} else {
			out[n++] = *p++;
		}
	}
	out[n] = '\0';
	json_t *r = json_pack("{s:s, s:s}", "field", field, "message", out);
	free(out);
	return r;
}

static json_t *reasons_from_errors(const redcap_errors *errs, const char *record)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < errs->n; i++)
		json_array_append_new(a, reason(errs->v[i].field, errs->v[i].message, record));
	return a;
}

static int hold_row(proj *p, size_t i, json_t *reasons)
{
	store *st = p->pr->env.st;
	char *txt = json_dumps(reasons, JSON_COMPACT);
	int rc = txt ? store_outbox_hold(st, p->rows[i].id, p->rows[i].gen, txt) : -ENOMEM;
	free(txt);
	if (rc == 0) {
		p->held++;
		if (p->rows[i].instrument[0])
			log_warn("redcap", "%s: a row of instrument %s (instance %lld) held back (%zu problem%s); see `status`",
				 p->cp->name, p->rows[i].instrument, (long long)p->rows[i].instance,
				 json_array_size(reasons), json_array_size(reasons) == 1 ? "" : "s");
		else
			log_warn("redcap", "%s: a row of the non-repeating forms held back (%zu problem%s); see `status`",
				 p->cp->name, json_array_size(reasons), json_array_size(reasons) == 1 ? "" : "s");
	}
	json_decref(p->send[i]);
	p->send[i] = NULL;
	return rc;
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
	int rc = store_outbox_due(st, p->cp->name, util_wall_ms(), pr->env.cfg->redcap_batch_size, &p->rows, &p->n_rows);
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
			json_t *r = json_pack("[{s:s, s:s}]", "field", "", "message", "the stored row is not a JSON object");
			hold_row(p, i, r);
			json_decref(r);
			continue;
		}
		if (eng) {
			/* The mapping could not make a value: hold with its reason. */
			hold_row(p, i, eng);
			json_decref(eng);
			continue;
		}
		redcap_errors_deinit(&errs);
		rc = redcap_validate_row(&p->dict, row, i, NULL, &errs);
		if (rc == REDCAP_E_INVALID) {
			json_t *r = reasons_from_errors(&errs, p->rows[i].record);
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

static size_t distinct_records(proj *p, const chunk *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n; i++) {
		const char *ri = p->rows[c->idx[i]].record;
		size_t j;
		for (j = 0; j < i; j++)
			if (strcasecmp(p->rows[c->idx[j]].record, ri) == 0)
				break;
		n += j == i;
	}
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
				json_array_append_new(reasons[i], reason(ve->field, ve->message, ve->record));
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
		if (n > 1) {
			split_chunk(p);
			return;
		}
		/* One row REDCap refuses as a whole: hold it with the message. */
		char desc[256];
		redcap_answer_describe(a, desc, sizeof(desc));
		json_t *r = json_array();
		json_array_append_new(r, reason("", a->message ? a->message : desc, p->rows[p->cur.idx[0]].record));
		store *st = p->pr->env.st;
		store_begin(st);
		hold_row(p, p->cur.idx[0], r);
		if (store_commit(st) != 0)
			store_rollback(st);
		json_decref(r);
		push_next_chunk(p);
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
		else
			info_answer(p, r->body, r->len);
		break;
	case REDCAP_RETRY: /* only with gave_up, above */
		break;
	case REDCAP_SPLIT:
		if (p->step == P_PUSH && p->cur.n > 1) {
			split_chunk(p);
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

/* The anchors typed into REDCap: record id + anchor fields of every record. */
static void send_anchor_export(proj *p)
{
	push_run *pr = p->pr;
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
	redcap_export_opts eo = { .fields = fields, .n_fields = n + 1 };
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
	send_new(pr, &b);
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
	json_t *out = json_object();
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		const char *rec = json_string_value(json_object_get(row, rid->name));
		const char *ri = json_string_value(json_object_get(row, "redcap_repeat_instrument"));
		if (!rec || (ri && *ri))
			continue;
		json_t *vals = json_object_get(out, rec);
		if (!vals) {
			vals = json_array();
			for (size_t k = 0; k < n; k++)
				json_array_append_new(vals, json_string(""));
			json_object_set_new(out, rec, vals);
		}
		for (size_t k = 0; k < n; k++) {
			const char *v = json_string_value(json_object_get(row, pr->env.anchor_fields[p->index][k]));
			const char *have = json_string_value(json_array_get(vals, k));
			if (v && *v && have && !*have)
				json_array_set_new(vals, k, json_string(v));
		}
	}
	json_decref(rows);
	log_info("redcap", "%s: anchors of %zu records read", p->cp->name, json_object_size(out));
	if (pr->env.on_anchors)
		pr->env.on_anchors(pr->env.dict_ud, p->index, out);
	else
		json_decref(out);
	proj_finish(p, true);
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
		send_anchor_export(p);
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
				    json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}", "ok", p->ok, "sent",
					      (json_int_t)p->sent, "held", (json_int_t)p->held, "requests",
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
		free(p->stack);
		free(p->error);
		secret_free(p->token);
		redcap_dict_deinit(&p->dict);
		redcap_project_deinit(&p->info);
	}
	free(pr->p);
	rc_call_close(&pr->call, on_call_closed);
}
