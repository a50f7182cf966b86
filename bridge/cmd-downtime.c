/*
 * bridge/cmd-downtime.c — users, chart, summary and review of downtime
 * entries (see cmd-downtime.h and `fhir-redcap-bridge <command> --help`).
 *
 * These commands run beside a daemon: each opens the store, does its work
 * in one transaction and closes it. An entry is durable when "saved" is
 * printed; the daemon notices it within a second and writes it to the EHR
 * when the EHR is up (or `sync --once` does).
 */
#include "bridge/cmd-downtime.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "bridge/chart.h"
#include "bridge/cli.h"
#include "bridge/config.h"
#include "bridge/downtime-ops.h"
#include "bridge/downtime.h"
#include "bridge/log.h"
#include "bridge/password.h"
#include "bridge/patients.h"
#include "bridge/summary.h"
#include "bridge/util.h"
#include "offline-store/chart.h"
#include "offline-store/outbox.h"
#include "offline-store/store.h"

enum {
	EX_OK = 0,
	EX_REFUSED = 1, /* the input or the state refuses it; the message says why */
	EX_USAGE = 2,
	EX_STORE = 3,
};

#define PASSWORD_MAX 1024

typedef struct dopts {
	const char *config, *log_level;
	const char *user, *patient, *patient_id;
	const char *code, *value, *unit, *at;
	const char *text, *text_file, *note_type;
	const char *request, *med_code, *med_display, *dose, *dose_unit, *route;
	const char *allergy, *reason;
	const char *role, *display;
	const char *family, *given, *birth_date, *gender;
	const char *state, *by, *search;
	bool json, confirm, verify, all;
	char **args;
	int n_args;
} dopts;

enum {
	O_CONFIG = 'c',
	O_HELP = 'h',
	O_LOG = 256,
	O_USER, O_PATIENT, O_PATIENT_ID, O_CODE, O_VALUE, O_UNIT, O_AT, O_TEXT, O_TEXT_FILE, O_NOTE_TYPE,
	O_REQUEST, O_MED_CODE, O_MED_DISPLAY, O_DOSE, O_DOSE_UNIT, O_ROUTE, O_ALLERGY, O_REASON, O_ROLE,
	O_DISPLAY, O_FAMILY, O_GIVEN, O_BIRTH_DATE, O_GENDER, O_STATE, O_BY, O_SEARCH, O_JSON, O_CONFIRM,
	O_VERIFY, O_ALL,
};

static const struct option longopts[] = {
	{ "config", required_argument, NULL, O_CONFIG },
	{ "log-level", required_argument, NULL, O_LOG },
	{ "user", required_argument, NULL, O_USER },
	{ "patient", required_argument, NULL, O_PATIENT },
	{ "patient-id", required_argument, NULL, O_PATIENT_ID },
	{ "code", required_argument, NULL, O_CODE },
	{ "value", required_argument, NULL, O_VALUE },
	{ "unit", required_argument, NULL, O_UNIT },
	{ "at", required_argument, NULL, O_AT },
	{ "text", required_argument, NULL, O_TEXT },
	{ "text-file", required_argument, NULL, O_TEXT_FILE },
	{ "note-type", required_argument, NULL, O_NOTE_TYPE },
	{ "request", required_argument, NULL, O_REQUEST },
	{ "med-code", required_argument, NULL, O_MED_CODE },
	{ "med-display", required_argument, NULL, O_MED_DISPLAY },
	{ "dose", required_argument, NULL, O_DOSE },
	{ "dose-unit", required_argument, NULL, O_DOSE_UNIT },
	{ "route", required_argument, NULL, O_ROUTE },
	{ "allergy", required_argument, NULL, O_ALLERGY },
	{ "reason", required_argument, NULL, O_REASON },
	{ "role", required_argument, NULL, O_ROLE },
	{ "display", required_argument, NULL, O_DISPLAY },
	{ "family", required_argument, NULL, O_FAMILY },
	{ "given", required_argument, NULL, O_GIVEN },
	{ "birth-date", required_argument, NULL, O_BIRTH_DATE },
	{ "gender", required_argument, NULL, O_GENDER },
	{ "state", required_argument, NULL, O_STATE },
	{ "by", required_argument, NULL, O_BY },
	{ "search", required_argument, NULL, O_SEARCH },
	{ "json", no_argument, NULL, O_JSON },
	{ "confirm", no_argument, NULL, O_CONFIRM },
	{ "verify", no_argument, NULL, O_VERIFY },
	{ "all", no_argument, NULL, O_ALL },
	{ "help", no_argument, NULL, O_HELP },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f, const char *cmd)
{
	if (strcmp(cmd, "users") == 0)
		fprintf(f,
			"usage: fhir-redcap-bridge users add NAME [--role clinician|admin] [--display TEXT] --config FILE\n"
			"       fhir-redcap-bridge users passwd NAME --config FILE\n"
			"       fhir-redcap-bridge users list [--json] --config FILE\n"
			"       fhir-redcap-bridge users disable|enable NAME --config FILE\n"
			"  The clinicians who chart during downtime. The password is read from standard\n"
			"  input (asked twice on a terminal), never from an argument: at least 10\n"
			"  characters. A disabled user can neither log in nor chart; their open web\n"
			"  sessions end at their next request.\n");
	else if (strcmp(cmd, "chart") == 0)
		fprintf(f,
			"usage: fhir-redcap-bridge chart KIND --config FILE --user U --patient MRN|DT-ID [options]\n"
			"  KIND and its options:\n"
			"    vitals         --code LOINC|hr|rr|temp|spo2|weight|bp --value V [--unit UCUM]\n"
			"                   (bp: --value SYS/DIA; 8867-4 8480-6/8462-4 9279-1 8310-5 59408-5 29463-7)\n"
			"    note           --text T | --text-file F|- [--note-type LOINC]\n"
			"    med-admin      --request MEDICATIONREQUEST-ID | --med-code SYSTEM|CODE --med-display T\n"
			"                   [--dose V --dose-unit UCUM] [--route T]\n"
			"    med-stop       --request MEDICATIONREQUEST-ID [--reason T]\n"
			"    allergy-error  --allergy ALLERGYINTOLERANCE-ID [--reason T]\n"
			"    register       --family F --given G --birth-date YYYY-MM-DD --gender male|female|other|unknown\n"
			"                   a patient not in the cache: prints a temporary id DT-...; its entries\n"
			"                   wait until a person links it (`review link`)\n"
			"    list           [--user U] [--patient P] [--state S] [--json]: entries and their sync state\n"
			"  Common: --at ISO8601 (when it happened, with an offset; default now), --confirm (save a\n"
			"  value outside its plausible range), --patient-id ID (the EHR's logical id instead of an\n"
			"  MRN). Prints the new entry's uuid. The entry is stored before the uuid is printed and\n"
			"  goes to the EHR when it is up. Exit 1 when the input is refused or needs --confirm.\n");
	else if (strcmp(cmd, "audit") == 0)
		fprintf(f,
			"usage: fhir-redcap-bridge audit [--json] [--verify] --config FILE\n"
			"  The audit log of the downtime features: logins, patient views and searches,\n"
			"  entries charted, registrations, links, reviews and the EHR's answers, oldest\n"
			"  first (the last 1000 unless --all). Each row is chained to the one before by a\n"
			"  keyed hash: --verify checks the whole chain and exits 1 naming the first row\n"
			"  that was changed, removed or reordered.\n");
	else if (strcmp(cmd, "summary") == 0)
		fprintf(f,
			"usage: fhir-redcap-bridge summary --config FILE --patient MRN|DT-ID [--json] [--user U]\n"
			"       fhir-redcap-bridge summary --config FILE --search \"NAME BIRTHDATE MRN...\" [--json]\n"
			"  The cached summary of a patient: demographics, allergies, active medications,\n"
			"  active problems, latest vitals and labs with their times, entries charted\n"
			"  during downtime, and when the data was last synced. --search finds patients by\n"
			"  MRN, whole name words and birth date. Every view is recorded in the audit log.\n"
			"  Prints PHI.\n");
	else
		fprintf(f,
			"usage: fhir-redcap-bridge review entries [--state S] [--json] --config FILE\n"
			"       fhir-redcap-bridge review show UUID --config FILE\n"
			"       fhir-redcap-bridge review reapply|resend|discard UUID [--by NAME] --config FILE\n"
			"       fhir-redcap-bridge review link DT-ID --patient MRN|--patient-id ID [--by NAME] --config FILE\n"
			"  Downtime entries that need a person: conflicts (the EHR changed the resource since\n"
			"  it was cached: `show` prints both versions, `reapply` applies the change to the\n"
			"  EHR's version), entries the EHR refused (`resend` or `discard`), and patients\n"
			"  registered during downtime (`link` to the EHR patient: their entries are then\n"
			"  written to the EHR).\n");
}

static int parse(const char *cmd, int argc, char **argv, dopts *o)
{
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		const char **slot = NULL;
		switch (c) {
		case O_CONFIG: slot = &o->config; break;
		case O_LOG: slot = &o->log_level; break;
		case O_USER: slot = &o->user; break;
		case O_PATIENT: slot = &o->patient; break;
		case O_PATIENT_ID: slot = &o->patient_id; break;
		case O_CODE: slot = &o->code; break;
		case O_VALUE: slot = &o->value; break;
		case O_UNIT: slot = &o->unit; break;
		case O_AT: slot = &o->at; break;
		case O_TEXT: slot = &o->text; break;
		case O_TEXT_FILE: slot = &o->text_file; break;
		case O_NOTE_TYPE: slot = &o->note_type; break;
		case O_REQUEST: slot = &o->request; break;
		case O_MED_CODE: slot = &o->med_code; break;
		case O_MED_DISPLAY: slot = &o->med_display; break;
		case O_DOSE: slot = &o->dose; break;
		case O_DOSE_UNIT: slot = &o->dose_unit; break;
		case O_ROUTE: slot = &o->route; break;
		case O_ALLERGY: slot = &o->allergy; break;
		case O_REASON: slot = &o->reason; break;
		case O_ROLE: slot = &o->role; break;
		case O_DISPLAY: slot = &o->display; break;
		case O_FAMILY: slot = &o->family; break;
		case O_GIVEN: slot = &o->given; break;
		case O_BIRTH_DATE: slot = &o->birth_date; break;
		case O_GENDER: slot = &o->gender; break;
		case O_STATE: slot = &o->state; break;
		case O_BY: slot = &o->by; break;
		case O_SEARCH: slot = &o->search; break;
		case O_JSON: o->json = true; break;
		case O_CONFIRM: o->confirm = true; break;
		case O_VERIFY: o->verify = true; break;
		case O_ALL: o->all = true; break;
		case O_HELP:
			usage(stdout, cmd);
			return -1;
		default:
			fprintf(stderr, "fhir-redcap-bridge %s: unknown or incomplete option '%s'\n", cmd,
				argv[optind - 1]);
			usage(stderr, cmd);
			return -2;
		}
		if (slot)
			*slot = optarg;
	}
	o->args = argv + optind;
	o->n_args = argc - optind;
	return cli_finish_options(cmd, &o->config, o->log_level);
}

/* The config, the store (read-write) and the EHR's server id. */
typedef struct ctx {
	config cfg;
	store *st;
	int64_t server;
} ctx;

static int ctx_open(ctx *c, const dopts *o)
{
	char err[1024];
	*c = (ctx){ .cfg = CONFIG_NULL };
	if (cli_load_config(&c->cfg, o->config, o->log_level != NULL) != 0)
		return EX_USAGE;
	if (store_open(&c->st, c->cfg.store_path, c->cfg.store_key_file, STORE_RW, err, sizeof(err)) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", err);
		config_deinit(&c->cfg);
		return EX_STORE;
	}
	if (store_server_id(c->st, c->cfg.fhir_base_url, &c->server) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(c->st));
		store_close(c->st);
		config_deinit(&c->cfg);
		return EX_STORE;
	}
	return 0;
}

static void ctx_close(ctx *c)
{
	store_close(c->st);
	config_deinit(&c->cfg);
}

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

/* A known, enabled user; prints why not. */
static int check_user(ctx *c, const char *name, store_user *u)
{
	if (!name) {
		fprintf(stderr, "fhir-redcap-bridge: --user NAME is required (a clinician from `users list`)\n");
		return EX_USAGE;
	}
	int rc = store_user_get(c->st, name, u);
	if (rc == STORE_E_NOTFOUND) {
		fprintf(stderr, "fhir-redcap-bridge: no user '%s' (add one with `users add`)\n", name);
		return EX_REFUSED;
	}
	if (rc != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(c->st));
		return EX_STORE;
	}
	if (u->disabled) {
		fprintf(stderr, "fhir-redcap-bridge: user '%s' is disabled\n", name);
		store_user_deinit(u);
		return EX_REFUSED;
	}
	return 0;
}

/* ---- users ------------------------------------------------------------------- */

/* One line of standard input, without echo on a terminal. NULL at EOF or on error. */
static char *read_secret_line(const char *prompt)
{
	bool tty = isatty(STDIN_FILENO);
	struct termios old, quiet;
	if (tty) {
		fprintf(stderr, "%s", prompt);
		fflush(stderr);
		if (tcgetattr(STDIN_FILENO, &old) == 0) {
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
		} else {
			tty = false;
		}
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, stdin);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	if (n < 0) {
		free(line);
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	return line;
}

static void secret_drop(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* A new password hash from standard input, policy checked; 0 or an exit status. */
static int new_password_hash(const config *cfg, const char *name, char *hash, size_t hash_size)
{
	char prompt[160];
	snprintf(prompt, sizeof(prompt), "New password for %s: ", name);
	char *pw = read_secret_line(prompt);
	if (!pw) {
		fprintf(stderr, "fhir-redcap-bridge users: no password on standard input\n");
		return EX_USAGE;
	}
	char err[256];
	if (password_check_policy(pw, strlen(pw), err, sizeof(err)) != 0) {
		fprintf(stderr, "fhir-redcap-bridge users: %s\n", err);
		secret_drop(pw);
		return EX_REFUSED;
	}
	if (isatty(STDIN_FILENO)) {
		char *again = read_secret_line("Again: ");
		bool same = again && strcmp(again, pw) == 0;
		secret_drop(again);
		if (!same) {
			fprintf(stderr, "fhir-redcap-bridge users: the two passwords differ\n");
			secret_drop(pw);
			return EX_REFUSED;
		}
	}
	int rc = password_hash(pw, strlen(pw), cfg->ui_password_log2n, hash, hash_size);
	secret_drop(pw);
	if (rc != 0) {
		fprintf(stderr, "fhir-redcap-bridge users: cannot hash the password (%d)\n", rc);
		return EX_REFUSED;
	}
	return 0;
}

static bool user_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > STORE_USER_MAX_NAME)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '_' || *p == '-' || *p == '@'))
			return false;
	return true;
}

int cmd_users(int argc, char **argv)
{
	dopts o = { 0 };
	int rc = parse("users", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? EX_OK : EX_USAGE;
	const char *verb = o.n_args > 0 ? o.args[0] : "list";
	bool list = strcmp(verb, "list") == 0;
	if (!list && o.n_args != 2) {
		usage(stderr, "users");
		return EX_USAGE;
	}
	if (!list && strcmp(verb, "add") != 0 && strcmp(verb, "passwd") != 0 && strcmp(verb, "disable") != 0 &&
	    strcmp(verb, "enable") != 0) {
		fprintf(stderr, "fhir-redcap-bridge users: unknown verb '%s'\n", verb);
		return EX_USAGE;
	}
	const char *name = list ? NULL : o.args[1];
	if (name && !user_name_ok(name)) {
		fprintf(stderr, "fhir-redcap-bridge users: a user name is 1 to %d letters, digits, '.', '_', '-' or '@'\n",
			STORE_USER_MAX_NAME);
		return EX_USAGE;
	}
	const char *role = o.role ? o.role : "clinician";
	if (strcmp(role, "clinician") != 0 && strcmp(role, "admin") != 0) {
		fprintf(stderr, "fhir-redcap-bridge users: --role is clinician or admin\n");
		return EX_USAGE;
	}
	ctx c;
	if ((rc = ctx_open(&c, &o)) != 0)
		return rc;
	int64_t now = util_wall_ms();
	if (list) {
		json_t *users = store_user_list(c.st);
		if (!users) {
			fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(c.st));
			ctx_close(&c);
			return EX_STORE;
		}
		if (o.json) {
			char *s = json_dumps(users, JSON_COMPACT);
			printf("%s\n", s ? s : "[]");
			free(s);
		} else {
			printf("%-24s %-10s %-9s %s\n", "name", "role", "state", "display");
			size_t i;
			json_t *u;
			json_array_foreach(users, i, u)
			{
				bool dis = json_is_true(json_object_get(u, "disabled"));
				bool locked = json_integer_value(json_object_get(u, "locked_until_ms")) > now;
				printf("%-24s %-10s %-9s %s\n", json_string_value(json_object_get(u, "name")),
				       json_string_value(json_object_get(u, "role")),
				       dis ? "disabled" : locked ? "locked" : "active",
				       json_string_value(json_object_get(u, "display")));
			}
		}
		json_decref(users);
		ctx_close(&c);
		return EX_OK;
	}
	if (strcmp(verb, "disable") == 0 || strcmp(verb, "enable") == 0) {
		bool dis = verb[0] == 'd';
		rc = store_user_set_disabled(c.st, name, dis);
		if (rc == 0)
			rc = store_audit_add(c.st, cli_os_user(), dis ? "user-disable" : "user-enable", name, "", now);
		if (rc == STORE_E_NOTFOUND)
			fprintf(stderr, "fhir-redcap-bridge users: no user '%s'\n", name);
		else if (rc != 0)
			fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(c.st));
		else
			printf("%s %s\n", name, dis ? "disabled" : "enabled");
		ctx_close(&c);
		return rc == 0 ? EX_OK : rc == STORE_E_NOTFOUND ? EX_REFUSED : EX_STORE;
	}
	bool add = strcmp(verb, "add") == 0;
	if (add) {
		store_user u = STORE_USER_NULL;
		if (store_user_get(c.st, name, &u) == 0) {
			store_user_deinit(&u);
			fprintf(stderr, "fhir-redcap-bridge users: '%s' exists (use `users passwd` for a new password)\n",
				name);
			ctx_close(&c);
			return EX_REFUSED;
		}
	}
	char hash[512];
	if ((rc = new_password_hash(&c.cfg, name, hash, sizeof(hash))) != 0) {
		ctx_close(&c);
		return rc;
	}
	rc = store_begin(c.st);
	if (rc == 0)
		rc = add ? store_user_add(c.st, name, role, o.display, hash, now) : store_user_set_password(c.st, name, hash);
	if (rc == 0)
		rc = store_audit_add(c.st, cli_os_user(), add ? "user-add" : "user-passwd", name, add ? role : "", now);
	if (rc == 0)
		rc = store_commit(c.st);
	OPENSSL_cleanse(hash, sizeof(hash));
	if (rc != 0) {
		store_rollback(c.st);
		if (rc == STORE_E_NOTFOUND)
			fprintf(stderr, "fhir-redcap-bridge users: no user '%s'\n", name);
		else if (rc == -EEXIST)
			fprintf(stderr, "fhir-redcap-bridge users: '%s' exists\n", name);
		else
			fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(c.st));
		ctx_close(&c);
		return rc == STORE_E_NOTFOUND || rc == -EEXIST ? EX_REFUSED : EX_STORE;
	}
	printf(add ? "user %s added (%s)\n" : "password of %s changed%s\n", name, add ? role : "");
	ctx_close(&c);
	return EX_OK;
}

/* ---- chart ------------------------------------------------------------------- */

static char *read_text_file(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	while (buf) {
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
		if (n == cap) {
			if (cap > CHART_NOTE_MAX * 2)
				break; /* chart_build refuses it with a clear message */
			char *nb = realloc(buf, cap * 2 + 1);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (f != stdin)
		fclose(f);
	if (buf) {
		buf[n] = '\0';
		*len = n;
	}
	return buf;
}

/* A cached resource of the patient as a parsed body; prints why not. */
static json_t *cached_resource(ctx *c, const char *type, const char *id, const char *patient)
{
	char err[512];
	int rc = 0;
	json_t *r = downtime_ops_cached_resource(c->st, c->server, type, id, patient, &rc, err, sizeof(err));
	if (!r)
		fprintf(stderr, "fhir-redcap-bridge%s: %s\n",
			rc == DOWNTIME_OPS_E_NOTFOUND || rc == -EINVAL ? " chart" : "", err);
	return r;
}

static int chart_register(ctx *c, const dopts *o, const store_user *u)
{
	if (!o->family || !o->given || !o->birth_date || !o->gender) {
		fprintf(stderr, "fhir-redcap-bridge chart register: --family, --given, --birth-date and --gender are "
				"required\n");
		return EX_USAGE;
	}
	downtime_ops_person p = { .family = o->family, .given = o->given, .birth_date = o->birth_date,
				  .gender = o->gender };
	char id[DOWNTIME_OPS_TEMP_ID_SIZE], err[512];
	int rc = downtime_ops_register(c->st, &p, u->name, util_wall_ms(), id, NULL, err, sizeof(err));
	if (rc == DOWNTIME_OPS_E_INVALID) {
		for (char *q = err; *q && *q != ':'; q++)
			if (*q == '_')
				*q = '-'; /* the field as its option: birth_date -> --birth-date */
		fprintf(stderr, "fhir-redcap-bridge chart register: --%s\n", err);
		return EX_REFUSED;
	}
	if (rc != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", err);
		return rc == -EIO ? EX_REFUSED : EX_STORE;
	}
	printf("%s\n", id);
	return EX_OK;
}

static void print_entries(json_t *list, bool as_json)
{
	if (as_json) {
		char *s = json_dumps(list, JSON_COMPACT);
		printf("%s\n", s ? s : "[]");
		free(s);
		return;
	}
	printf("%-36s %-13s %-12s %-16s %-26s %s\n", "uuid", "kind", "state", "author", "effective", "patient / note");
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
	{
		const char *err = json_string_value(json_object_get(e, "last_error"));
		const char *ref = json_string_value(json_object_get(e, "ehr_ref"));
		printf("%-36s %-13s %-12s %-16s %-26s %s%s%s\n", json_string_value(json_object_get(e, "uuid")),
		       json_string_value(json_object_get(e, "kind")), json_string_value(json_object_get(e, "state")),
		       json_string_value(json_object_get(e, "author")),
		       json_string_value(json_object_get(e, "effective")),
		       json_string_value(json_object_get(e, "patient")), ref ? " -> " : err ? ": " : "",
		       ref ? ref : err ? err : "");
	}
}

static int chart_list(ctx *c, const dopts *o)
{
	store_chart_filter f = { .author = o->user, .state = -1 };
	patients_match m = { 0 };
	char err[256];
	if (o->patient || o->patient_id) {
		int rc = patients_resolve(c->st, c->server, o->patient_id ? o->patient_id : o->patient, o->patient_id != NULL,
					  &m, err, sizeof(err));
		if (rc != 0) {
			fprintf(stderr, "fhir-redcap-bridge chart list: %s\n", err);
			return EX_REFUSED;
		}
		f.patient = m.id;
	}
	if (o->state && (f.state = store_chart_state_parse(o->state)) < 0) {
		fprintf(stderr, "fhir-redcap-bridge chart list: --state: pending, written, conflict, waiting_link, "
				"rejected or discarded\n");
		patients_match_deinit(&m);
		return EX_USAGE;
	}
	json_t *list = store_chart_list(c->st, &f);
	patients_match_deinit(&m);
	if (!list) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(c->st));
		return EX_STORE;
	}
	print_entries(list, o->json);
	json_decref(list);
	return EX_OK;
}

int cmd_chart(int argc, char **argv)
{
	dopts o = { 0 };
	int rc = parse("chart", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? EX_OK : EX_USAGE;
	if (o.n_args != 1) {
		usage(stderr, "chart");
		return EX_USAGE;
	}
	const char *kind_name = o.args[0];
	bool reg = strcmp(kind_name, "register") == 0, list = strcmp(kind_name, "list") == 0;
	chart_kind kind = CHART_VITALS;
	if (!reg && !list && chart_kind_parse(kind_name, &kind) != 0) {
		fprintf(stderr, "fhir-redcap-bridge chart: unknown kind '%s' (vitals, note, med-admin, med-stop, "
				"allergy-error, register, list)\n", kind_name);
		return EX_USAGE;
	}
	ctx c;
	if ((rc = ctx_open(&c, &o)) != 0)
		return rc;
	if (list) {
		rc = chart_list(&c, &o);
		ctx_close(&c);
		return rc;
	}
	if (!c.cfg.downtime_identifier_system) {
		fprintf(stderr, "fhir-redcap-bridge chart: charting is off: set downtime.identifier_system in %s\n",
			c.cfg.path);
		ctx_close(&c);
		return EX_USAGE;
	}
	store_user u = STORE_USER_NULL;
	if ((rc = check_user(&c, o.user, &u)) != 0) {
		ctx_close(&c);
		return rc;
	}
	if (reg) {
		rc = chart_register(&c, &o, &u);
		store_user_deinit(&u);
		ctx_close(&c);
		return rc;
	}
	patients_match m = { 0 };
	char err[1024];
	json_t *aux = NULL;
	char *text = NULL;
	chart_entry e = CHART_ENTRY_NULL;
	if (!o.patient && !o.patient_id) {
		fprintf(stderr, "fhir-redcap-bridge chart: --patient MRN (or DT-ID, or --patient-id ID) is required\n");
		rc = EX_USAGE;
		goto out;
	}
	rc = patients_resolve(c.st, c.server, o.patient_id ? o.patient_id : o.patient, o.patient_id != NULL, &m, err,
			      sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "fhir-redcap-bridge chart: %s\n", err);
		rc = rc > 0 && rc <= PATIENTS_E_AMBIGUOUS ? EX_REFUSED : EX_STORE;
		goto out;
	}
	chart_input in = {
		.kind = kind,
		.patient_id = m.id,
		.user = u.name,
		.user_display = u.display && *u.display ? u.display : NULL,
		.at = o.at,
		.confirm = o.confirm,
		.code = o.code,
		.value = o.value,
		.unit = o.unit,
		.text = o.text,
		.note_type = o.note_type,
		.med_code = o.med_code,
		.med_display = o.med_display,
		.dose_value = o.dose,
		.dose_unit = o.dose_unit,
		.route = o.route,
		.reason = o.reason,
	};
	if (kind == CHART_NOTE && o.text_file) {
		size_t len = 0;
		text = read_text_file(o.text_file, &len);
		if (!text) {
			fprintf(stderr, "fhir-redcap-bridge chart: cannot read %s\n", o.text_file);
			rc = EX_USAGE;
			goto out;
		}
		in.text = text;
		in.text_len = len;
	}
	if (m.temp && chart_kind_is_update(kind)) {
		fprintf(stderr, "fhir-redcap-bridge chart: a temporary patient has no EHR resources to change\n");
		rc = EX_REFUSED;
		goto out;
	}
	if (kind == CHART_MED_ADMIN && o.request) {
		if (!(aux = cached_resource(&c, "MedicationRequest", o.request, m.id))) {
			rc = EX_REFUSED;
			goto out;
		}
		in.med_request = aux;
	} else if (kind == CHART_MED_STOP || kind == CHART_ALLERGY_ERROR) {
		const char *type = kind == CHART_MED_STOP ? "MedicationRequest" : "AllergyIntolerance";
		const char *id = kind == CHART_MED_STOP ? o.request : o.allergy;
		if (!id) {
			fprintf(stderr, "fhir-redcap-bridge chart %s: --%s ID is required\n", kind_name,
				kind == CHART_MED_STOP ? "request" : "allergy");
			rc = EX_USAGE;
			goto out;
		}
		if (!(aux = cached_resource(&c, type, id, m.id))) {
			rc = EX_REFUSED;
			goto out;
		}
		in.current = aux;
	}
	int64_t now = util_wall_ms();
	chart_site site = { .identifier_system = c.cfg.downtime_identifier_system,
			    .user_system = c.cfg.downtime_user_system, .now_ms = now };
	rc = chart_build(&in, &site, &e, err, sizeof(err));
	if (rc == CHART_E_CONFIRM) {
		fprintf(stderr, "fhir-redcap-bridge chart: %s (--confirm)\n", err);
		rc = EX_REFUSED;
		goto out;
	}
	if (rc != 0) {
		fprintf(stderr, "fhir-redcap-bridge chart: %s\n", rc > 0 ? err : strerror(-rc));
		rc = EX_REFUSED;
		goto out;
	}
	rc = downtime_ops_store_entry(c.st, c.server, &e, m.id, m.temp, u.name, now);
	if (rc != 0) {
		fprintf(stderr, "fhir-redcap-bridge chart: not saved: %s\n",
			rc == -ENOMEM ? "out of memory" : store_errmsg(c.st));
		rc = EX_STORE;
		goto out;
	}
	printf("%s\n", e.uuid);
	if (m.temp)
		fprintf(stderr, "saved; it waits until %s is linked to the EHR patient (`review link`)\n", m.id);
	rc = EX_OK;
out:
	chart_entry_deinit(&e);
	json_decref(aux);
	free(text);
	patients_match_deinit(&m);
	store_user_deinit(&u);
	ctx_close(&c);
	return rc;
}

/* ---- summary ----------------------------------------------------------------- */

/* The summary of a resolved patient as a new object (with downtime entries and the EHR state), or NULL. */
static json_t *build_summary(ctx *c, const patients_match *m, char *err, size_t err_size)
{
	return downtime_ops_summary(c->st, c->server, c->cfg.fhir_mrn_system, m, util_wall_ms(), err, err_size);
}

static void print_summary_text(json_t *sum, bool temp)
{
	const char *st = json_string_value(json_object_get(json_object_get(sum, "ehr"), "state"));
	if (st && (strcmp(st, "down") == 0 || strcmp(st, "recovering") == 0))
		printf("*** EHR %s: this is the bridge's cached copy ***\n", st);
	if (temp) {
		json_t *p = json_object_get(sum, "patient");
		json_t *d = json_object_get(p, "registered");
		printf("TEMPORARY PATIENT %s (registered during downtime, not linked to the EHR)\n",
		       json_string_value(json_object_get(p, "id")));
		printf("  %s, %s  born %s  %s\n", json_string_value(json_object_get(d, "family")),
		       json_string_value(json_object_get(d, "given")), json_string_value(json_object_get(d, "birth_date")),
		       json_string_value(json_object_get(d, "gender")));
	} else {
		char *text = NULL;
		if (summary_render_text(sum, &text) == 0 && text)
			fputs(text, stdout);
		free(text);
	}
	json_t *entries = json_object_get(sum, "downtime_entries");
	if (json_array_size(entries)) {
		printf("\nEntries charted in the bridge:\n");
		size_t i;
		json_t *e;
		json_array_foreach(entries, i, e)
		{
			printf("  %-26s %-13s %-12s by %s  %s\n", json_string_value(json_object_get(e, "effective")),
			       json_string_value(json_object_get(e, "kind")), json_string_value(json_object_get(e, "state")),
			       json_string_value(json_object_get(e, "author")), json_string_value(json_object_get(e, "uuid")));
		}
	}
}

int cmd_summary(int argc, char **argv)
{
	dopts o = { 0 };
	int rc = parse("summary", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? EX_OK : EX_USAGE;
	if (o.n_args || (!o.patient && !o.patient_id && !o.search)) {
		fprintf(stderr, "fhir-redcap-bridge summary: --patient MRN|DT-ID, --patient-id ID or --search TEXT\n");
		return EX_USAGE;
	}
	ctx c;
	if ((rc = ctx_open(&c, &o)) != 0)
		return rc;
	const char *actor = o.user ? o.user : cli_os_user();
	store_user u = STORE_USER_NULL;
	if (o.user && (rc = check_user(&c, o.user, &u)) != 0) {
		ctx_close(&c);
		return rc;
	}
	store_user_deinit(&u);
	char err[512];
	int64_t now = util_wall_ms();
	if (o.search) {
		json_t *rows = downtime_ops_search(c.st, c.server, c.cfg.fhir_mrn_system, o.search, 50, now, err,
						   sizeof(err));
		if (!rows) {
			fprintf(stderr, "fhir-redcap-bridge summary: %s\n", err);
			ctx_close(&c);
			return EX_REFUSED;
		}
		char detail[64];
		snprintf(detail, sizeof(detail), "patient search: %zu found", json_array_size(rows));
		store_audit_add(c.st, actor, "search", "", detail, now);
		size_t i;
		json_t *id;
		if (o.json) {
			char *t = json_dumps(rows, JSON_COMPACT);
			printf("%s\n", t ? t : "[]");
			free(t);
		} else {
			json_array_foreach(rows, i, id)
			{
				printf("%-20s %-16s %-32s %-10s %s\n", json_string_value(json_object_get(id, "id")),
				       or_dash(json_string_value(json_object_get(id, "mrn"))),
				       or_dash(json_string_value(json_object_get(id, "name"))),
				       or_dash(json_string_value(json_object_get(id, "birth_date"))),
				       or_dash(json_string_value(json_object_get(id, "gender"))));
			}
			if (!json_array_size(rows))
				printf("no cached patient matches\n");
		}
		json_decref(rows);
		ctx_close(&c);
		return EX_OK;
	}
	patients_match m = { 0 };
	rc = patients_resolve(c.st, c.server, o.patient_id ? o.patient_id : o.patient, o.patient_id != NULL, &m, err,
			      sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "fhir-redcap-bridge summary: %s\n", err);
		ctx_close(&c);
		return EX_REFUSED;
	}
	json_t *sum = build_summary(&c, &m, err, sizeof(err));
	if (!sum) {
		fprintf(stderr, "fhir-redcap-bridge summary: %s\n", err);
		patients_match_deinit(&m);
		ctx_close(&c);
		return EX_REFUSED;
	}
	if (store_audit_add(c.st, actor, "view", m.id, "summary (cli)", now) != 0) {
		/* No view without its audit row. */
		fprintf(stderr, "fhir-redcap-bridge summary: cannot record the view: %s\n", store_errmsg(c.st));
		json_decref(sum);
		patients_match_deinit(&m);
		ctx_close(&c);
		return EX_STORE;
	}
	if (o.json) {
		char *t = json_dumps(sum, JSON_COMPACT | JSON_REAL_PRECISION(15));
		printf("%s\n", t ? t : "{}");
		free(t);
	} else {
		print_summary_text(sum, m.temp);
	}
	json_decref(sum);
	patients_match_deinit(&m);
	ctx_close(&c);
	return EX_OK;
}

/* ---- review of downtime entries ---------------------------------------------------- */

int cmd_review_downtime_is(const char *verb)
{
	static const char *const verbs[] = { "entries", "show", "reapply", "resend", "discard", "link", "patients",
					     NULL };
	for (size_t i = 0; verbs[i]; i++)
		if (strcmp(verb, verbs[i]) == 0)
			return 1;
	return 0;
}

typedef struct link_item {
	char *uuid, *body, *prov;
} link_item;

typedef struct link_ctx {
	link_item *items;
	size_t n, cap;
} link_ctx;

static int link_collect(void *ud, const store_chart_entry *e)
{
	link_ctx *l = ud;
	if (e->state != STORE_CHART_WAITING_LINK && e->state != STORE_CHART_PENDING)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		link_item *ni = realloc(l->items, cap * sizeof(*ni));
		if (!ni)
			return -ENOMEM;
		l->items = ni;
		l->cap = cap;
	}
	link_item *it = &l->items[l->n++];
	it->uuid = strdup(e->uuid);
	it->body = strndup(e->body, e->body_len);
	it->prov = e->provenance ? strndup(e->provenance, e->provenance_len) : NULL;
	return it->uuid && it->body ? 0 : -ENOMEM;
}

/* Rewrite Patient/<from> to Patient/<to> in a JSON text; a new text or NULL. */
static char *rewrite_refs(const char *text, const char *from, const char *to)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	if (!j)
		return NULL;
	char *out = chart_patient_ref_rewrite(j, from, to) >= 0 ? chart_dumps(j) : NULL;
	json_decref(j);
	return out;
}

static int review_link(ctx *c, const dopts *o, const char *temp_id, const char *actor)
{
	if (!o->patient && !o->patient_id) {
		fprintf(stderr, "fhir-redcap-bridge review link: --patient MRN or --patient-id ID is required\n");
		return EX_USAGE;
	}
	char err[512];
	patients_match t = { 0 }, m = { 0 };
	int rc = patients_resolve(c->st, c->server, temp_id, false, &t, err, sizeof(err));
	if (rc != 0 || !t.temp_id) {
		fprintf(stderr, "fhir-redcap-bridge review link: %s\n", rc ? err : "not a temporary patient id (DT-...)");
		patients_match_deinit(&t);
		return EX_REFUSED;
	}
	if (!t.temp) {
		fprintf(stderr, "fhir-redcap-bridge review link: %s is already linked to Patient/%s\n", temp_id, t.id);
		patients_match_deinit(&t);
		return EX_REFUSED;
	}
	const char *target = o->patient_id ? o->patient_id : o->patient;
	if (strncmp(target, "DT-", 3) == 0) {
		fprintf(stderr, "fhir-redcap-bridge review link: link to an EHR patient, not to another temporary one\n");
		patients_match_deinit(&t);
		return EX_REFUSED;
	}
	rc = patients_resolve(c->st, c->server, target, o->patient_id != NULL, &m, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "fhir-redcap-bridge review link: %s\n", err);
		patients_match_deinit(&t);
		return EX_REFUSED;
	}
	link_ctx l = { 0 };
	int64_t now = util_wall_ms();
	rc = store_begin(c->st);
	if (rc == 0)
		rc = store_temp_patient_link(c->st, temp_id, m.id, actor, now);
	if (rc == 0)
		rc = store_chart_foreach_patient(c->st, temp_id, link_collect, &l);
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		char *body = rewrite_refs(l.items[i].body, temp_id, m.id);
		char *prov = l.items[i].prov ? rewrite_refs(l.items[i].prov, temp_id, m.id) : NULL;
		if (!body || (l.items[i].prov && !prov))
			rc = -ENOMEM;
		else
			rc = store_chart_update_link(c->st, l.items[i].uuid, m.id, false, body, prov, STORE_CHART_PENDING);
		free(body);
		free(prov);
	}
	if (rc == 0) {
		char detail[160];
		snprintf(detail, sizeof(detail), "%s linked to Patient/%s (%zu entries)", temp_id, m.id, l.n);
		rc = store_audit_add(c->st, actor, "link", m.id, detail, now);
	}
	if (rc == 0)
		rc = store_commit(c->st);
	if (rc != 0) {
		store_rollback(c->st);
		fprintf(stderr, "fhir-redcap-bridge review link: nothing changed: %s\n",
			rc == -ENOMEM ? "out of memory" : rc == -EALREADY ? "already linked" : store_errmsg(c->st));
	} else {
		printf("%s linked to Patient/%s by %s: %zu entr%s will be written to the EHR\n", temp_id, m.id, actor, l.n,
		       l.n == 1 ? "y" : "ies");
	}
	for (size_t i = 0; i < l.n; i++) {
		free(l.items[i].uuid);
		free(l.items[i].body);
		free(l.items[i].prov);
	}
	free(l.items);
	patients_match_deinit(&t);
	patients_match_deinit(&m);
	return rc == 0 ? EX_OK : rc == -EALREADY ? EX_REFUSED : EX_STORE;
}

/* reapply: the change applied again to the EHR's current version. */
static int reapply_body(ctx *c, const store_chart_entry *e, char **body, char **if_match, char *err, size_t err_size)
{
	chart_kind kind;
	json_error_t jerr;
	if (chart_kind_parse(e->kind, &kind) != 0 || !chart_kind_is_update(kind)) {
		snprintf(err, err_size, "only a change of an EHR resource can be reapplied");
		return EX_REFUSED;
	}
	if (!e->conflict) {
		snprintf(err, err_size, "the EHR's current version was not fetched; `resend` or `discard` it");
		return EX_REFUSED;
	}
	json_t *cur = json_loadb(e->conflict, e->conflict_len, 0, &jerr);
	json_t *prov = json_loadb(e->provenance, e->provenance_len, 0, &jerr);
	const char *reason = json_string_value(json_object_get(json_array_get(json_object_get(prov, "reason"), 0), "text"));
	const char *slash = strchr(e->patient, '/');
	chart_input in = { .kind = kind, .patient_id = slash ? slash + 1 : e->patient, .user = e->author,
			   .at = e->effective, .confirm = true, .current = cur, .reason = reason };
	chart_site site = { .identifier_system = c->cfg.downtime_identifier_system,
			    .user_system = c->cfg.downtime_user_system, .now_ms = util_wall_ms() };
	chart_entry ne = CHART_ENTRY_NULL;
	int rc = cur ? chart_build(&in, &site, &ne, err, err_size) : CHART_E_INVALID;
	if (!cur)
		snprintf(err, err_size, "the kept EHR version is not valid JSON");
	json_decref(prov);
	json_decref(cur);
	if (rc != 0) {
		chart_entry_deinit(&ne);
		return EX_REFUSED;
	}
	*body = chart_dumps(ne.resource);
	*if_match = strdup(ne.if_match);
	chart_entry_deinit(&ne);
	return *body && *if_match ? 0 : EX_STORE;
}

static int review_show(ctx *c, const char *uuid)
{
	store_chart_entry e = STORE_CHART_ENTRY_NULL;
	int rc = store_chart_get(c->st, uuid, &e);
	if (rc != 0) {
		fprintf(stderr, "fhir-redcap-bridge review show: %s\n",
			rc == STORE_E_NOTFOUND ? "no such entry" : store_errmsg(c->st));
		return rc == STORE_E_NOTFOUND ? EX_REFUSED : EX_STORE;
	}
	printf("entry %s: %s by %s, %s, for Patient/%s\n", e.uuid, e.kind, e.author, store_chart_state_name(e.state),
	       e.patient);
	if (e.last_error)
		printf("why: %s\n", e.last_error);
	if (e.target)
		printf("changes %s (If-Match %s)\n", e.target, e.if_match ? e.if_match : "-");
	printf("\n--- the bridge's version\n%.*s\n", (int)e.body_len, e.body);
	if (e.conflict)
		printf("\n--- the EHR's current version\n%.*s\n", (int)e.conflict_len, e.conflict);
	store_chart_entry_deinit(&e);
	return EX_OK;
}

int cmd_review_downtime(int argc, char **argv)
{
	dopts o = { 0 };
	int rc = parse("review", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? EX_OK : EX_USAGE;
	const char *verb = o.n_args ? o.args[0] : "entries";
	bool needs_arg = strcmp(verb, "entries") != 0 && strcmp(verb, "patients") != 0;
	if (needs_arg && o.n_args != 2) {
		usage(stderr, "review");
		return EX_USAGE;
	}
	ctx c;
	if ((rc = ctx_open(&c, &o)) != 0)
		return rc;
	const char *actor = o.by ? o.by : cli_os_user();
	if (strcmp(verb, "entries") == 0) {
		json_t *all = json_array();
		int states[] = { STORE_CHART_CONFLICT, STORE_CHART_REJECTED, STORE_CHART_WAITING_LINK };
		int only = o.state ? store_chart_state_parse(o.state) : -2;
		for (size_t i = 0; i < 3; i++) {
			if (only != -2 && only != states[i])
				continue;
			store_chart_filter f = { .state = states[i] };
			json_t *l = store_chart_list(c.st, &f);
			json_array_extend(all, l);
			json_decref(l);
		}
		print_entries(all, o.json);
		json_decref(all);
		rc = EX_OK;
	} else if (strcmp(verb, "patients") == 0) {
		json_t *l = store_temp_patient_list(c.st);
		char *t = l ? json_dumps(l, JSON_COMPACT) : NULL;
		printf("%s\n", t ? t : "[]");
		free(t);
		json_decref(l);
		rc = l ? EX_OK : EX_STORE;
	} else if (strcmp(verb, "show") == 0) {
		rc = review_show(&c, o.args[1]);
	} else if (strcmp(verb, "link") == 0) {
		rc = review_link(&c, &o, o.args[1], actor);
	} else {
		const char *uuid = o.args[1];
		store_chart_entry e = STORE_CHART_ENTRY_NULL;
		char err[512] = "";
		char *body = NULL, *if_match = NULL;
		bool discard = strcmp(verb, "discard") == 0;
		rc = store_chart_get(c.st, uuid, &e);
		if (rc == 0 && !discard && strcmp(verb, "reapply") == 0 && e.state == STORE_CHART_CONFLICT)
			rc = reapply_body(&c, &e, &body, &if_match, err, sizeof(err));
		if (rc == 0) {
			int64_t now = util_wall_ms();
			rc = store_begin(c.st);
			if (rc == 0)
				rc = store_chart_decide(c.st, uuid, discard ? STORE_CHART_DISCARDED : STORE_CHART_PENDING,
							actor, now, body, if_match);
			if (rc == 0) {
				char detail[160];
				snprintf(detail, sizeof(detail), "%s %s", verb, uuid);
				rc = store_audit_add(c.st, actor, "review", e.patient, detail, now);
			}
			if (rc == 0)
				rc = store_commit(c.st);
			if (rc != 0)
				store_rollback(c.st);
			if (rc == STORE_E_STATE)
				snprintf(err, sizeof(err), "entry %s is %s: nothing to decide", uuid,
					 store_chart_state_name(e.state));
			else if (rc != 0)
				snprintf(err, sizeof(err), "%s", store_errmsg(c.st));
		} else if (rc == STORE_E_NOTFOUND) {
			snprintf(err, sizeof(err), "no entry %s", uuid);
		}
		if (rc == 0)
			printf("%s %s by %s%s\n", uuid, discard ? "discarded" : "queued again", actor,
			       discard ? "" : "; it is written when the EHR is up");
		else
			fprintf(stderr, "fhir-redcap-bridge review %s: %s\n", verb, err[0] ? err : store_errmsg(c.st));
		rc = rc == 0 ? EX_OK : rc == EX_STORE || rc < 0 ? EX_STORE : EX_REFUSED;
		free(body);
		free(if_match);
		store_chart_entry_deinit(&e);
	}
	ctx_close(&c);
	return rc;
}

/* ---- audit ------------------------------------------------------------------------ */

int cmd_audit(int argc, char **argv)
{
	dopts o = { 0 };
	int rc = parse("audit", argc, argv, &o);
	if (rc < 0)
		return rc == -1 ? EX_OK : EX_USAGE;
	if (o.n_args) {
		usage(stderr, "audit");
		return EX_USAGE;
	}
	char err[1024];
	config cfg = CONFIG_NULL;
	store *st = NULL;
	if (config_load(&cfg, o.config, err, sizeof(err)) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", err);
		return EX_USAGE;
	}
	if (store_open(&st, cfg.store_path, cfg.store_key_file, STORE_RO, err, sizeof(err)) != 0) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", err);
		config_deinit(&cfg);
		return EX_STORE;
	}
	if (o.verify) {
		int64_t bad = 0;
		rc = store_audit_verify(st, &bad);
		if (rc == 0)
			printf("audit chain intact\n");
		else if (rc == STORE_E_CORRUPT)
			printf("audit chain BROKEN at row %lld: a row was changed, removed or reordered\n", (long long)bad);
		else
			fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(st));
		store_close(st);
		config_deinit(&cfg);
		return rc == 0 ? EX_OK : rc == STORE_E_CORRUPT ? EX_REFUSED : EX_STORE;
	}
	json_t *rows = store_audit_list(st, 0, 0);
	if (!rows) {
		fprintf(stderr, "fhir-redcap-bridge: %s\n", store_errmsg(st));
		store_close(st);
		config_deinit(&cfg);
		return EX_STORE;
	}
	/* The last 1000 rows unless --all: one read, the tail kept. */
	size_t total = json_array_size(rows);
	if (!o.all && total > 1000) {
		json_t *tail = json_array();
		for (size_t i = total - 1000; tail && i < total; i++)
			json_array_append(tail, json_array_get(rows, i));
		json_decref(rows);
		rows = tail ? tail : json_array();
	}
	if (o.json) {
		char *t = json_dumps(rows, JSON_COMPACT);
		printf("%s\n", t ? t : "[]");
		free(t);
	} else {
		size_t i;
		json_t *r;
		json_array_foreach(rows, i, r)
		{
			char when[40];
			util_instant_ms(json_integer_value(json_object_get(r, "ts_ms")), when, sizeof(when));
			printf("%6lld %s %-16s %-14s %-20s %s\n", (long long)json_integer_value(json_object_get(r, "seq")), when,
			       or_dash(json_string_value(json_object_get(r, "actor"))),
			       or_dash(json_string_value(json_object_get(r, "action"))),
			       or_dash(json_string_value(json_object_get(r, "subject"))),
			       or_dash(json_string_value(json_object_get(r, "detail"))));
		}
	}
	json_decref(rows);
	store_close(st);
	config_deinit(&cfg);
	return EX_OK;
}
