/*
 * redcap/validate-cli.c — a test tool: the local validator (validate.h) run
 * on rows from files, so that its texts can be compared with what a REDCap
 * server (or the emulator in tests/servers) answers for the same rows
 * (tests/integration/test-validate-crosscheck.mjs). Not installed.
 *
 *   redcap-validate-cli --metadata FILE [--project FILE] [--events FILE]
 *                       [--arms FILE] [--mapping FILE] [--repeating FILE]
 *                       [--overwrite] --rows FILE
 *
 * The files hold the JSON answers of content=metadata, project, event, arm,
 * formEventMapping and repeatingFormsEvents, the way the bridge loads a
 * project; --rows a JSON array of rows. Each row is validated on its own,
 * as REDCap 15.7.6 judges it (pad_time: a datetime without its time is
 * taken, as REDCap takes it; the bridge refuses it), with
 * overwriteBehavior=overwrite when --overwrite is given.
 * Prints a JSON array with one object per row:
 *   {"text": "...", "errors": [{"kind": "request"|"value", "record",
 *    "field", "value", "message"}]}
 * where text is what REDCap would answer for that row alone: the first
 * whole-request message if there is one, else the per-value lines
 * (redcap_errors_format), "" for a good row. Exit 0, or 2 on bad usage or
 * input (message on stderr).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redcap/dictionary.h"
#include "redcap/validate.h"

#define FILE_MAX (16 * 1024 * 1024)

/* The whole of a file (NUL-terminated, malloc'd) or NULL with a message on stderr. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f) {
		fprintf(stderr, "redcap-validate-cli: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (n + 4096 + 1 > cap) {
			char *b = cap + 65536 > FILE_MAX ? NULL : realloc(buf, cap + 65536);
			if (!b) {
				fprintf(stderr, "redcap-validate-cli: %s: too large or out of memory\n", path);
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = b;
			cap += 65536;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "redcap-validate-cli: %s: read error\n", path);
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

typedef int (*loader)(redcap_dict *d, const char *buf, size_t len, redcap_error *err);

/* Load one optional extra (events, arms, mapping, repeating) from path; 0 or -1. */
static int load_extra(redcap_dict *d, const char *path, loader fn)
{
	redcap_error err = { 0 };
	size_t len;
	char *buf;
	int rc;

	if (!path)
		return 0;
	if (!(buf = slurp(path, &len)))
		return -1;
	rc = fn(d, buf, len, &err);
	free(buf);
	if (rc) {
		fprintf(stderr, "redcap-validate-cli: %s: %s (%d)\n", path, err.msg, rc);
		return -1;
	}
	return 0;
}

static int load_dict(redcap_dict *d, const char *metadata, const char *project, const char *events,
		     const char *arms, const char *mapping, const char *repeating)
{
	redcap_error err = { 0 };
	size_t len;
	char *buf;
	int rc;

	if (!(buf = slurp(metadata, &len)))
		return -1;
	rc = redcap_dict_parse_json(d, buf, len, &err);
	free(buf);
	if (rc) {
		fprintf(stderr, "redcap-validate-cli: %s: %s (%d)\n", metadata, err.msg, rc);
		return -1;
	}
	if (project) {
		redcap_project p = REDCAP_PROJECT_NULL;
		if (!(buf = slurp(project, &len)))
			return -1;
		rc = redcap_parse_project(&p, buf, len, &err);
		free(buf);
		if (rc) {
			fprintf(stderr, "redcap-validate-cli: %s: %s (%d)\n", project, err.msg, rc);
			return -1;
		}
		redcap_dict_set_project(d, &p);
		redcap_project_deinit(&p);
	}
	if (load_extra(d, events, redcap_dict_load_events) || load_extra(d, arms, redcap_dict_load_arms) ||
	    load_extra(d, mapping, redcap_dict_load_form_event_mapping) ||
	    load_extra(d, repeating, redcap_dict_load_repeating))
		return -1;
	return 0;
}

/* The result object of one row, or NULL on ENOMEM. */
static json_t *row_result(const redcap_errors *errs)
{
	json_t *out = json_object(), *list = json_array();
	const char *request = NULL;
	char *text;
	int bad;

	if (!out || !list) {
		json_decref(out);
		json_decref(list);
		return NULL;
	}
	for (size_t i = 0; i < errs->n; i++) {
		const redcap_value_error *e = &errs->v[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kind",
				      e->kind == REDCAP_ERR_REQUEST ? "request" : "value", "record", e->record, "field",
				      e->field, "value", e->value, "message", e->message);
		if (!o || json_array_append_new(list, o)) {  /* append_new takes o even when it fails */
			json_decref(list);
			json_decref(out);
			return NULL;
		}
		if (e->kind == REDCAP_ERR_REQUEST && !request)
			request = e->message;
	}
	/* REDCap answers a whole-request error alone; else every per-value line. */
	text = request ? strdup(request) : redcap_errors_format(errs);
	bad = json_object_set_new(out, "errors", list);  /* takes list either way */
	bad = bad || !text || json_object_set_new(out, "text", json_string(text));
	free(text);
	if (bad) {
		json_decref(out);
		return NULL;
	}
	return out;
}

static void usage(void)
{
	fprintf(stderr, "usage: redcap-validate-cli --metadata FILE [--project FILE] [--events FILE] [--arms FILE]\n"
			"                           [--mapping FILE] [--repeating FILE] [--overwrite] --rows FILE\n");
}

int main(int argc, char **argv)
{
	const char *metadata = NULL, *project = NULL, *events = NULL, *arms = NULL, *mapping = NULL,
		   *repeating = NULL, *rows_path = NULL;
	redcap_dict d = REDCAP_DICT_NULL;
	json_t *rows = NULL, *out = NULL, *row;
	json_error_t je;
	size_t i;
	int status = 2;
	redcap_validate_opts opts = { .pad_time = true };

	for (int a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--overwrite") == 0) {
			opts.overwrite = true;
			continue;
		}
		static const char *const names[] = { "--metadata", "--project", "--events", "--arms",
						     "--mapping", "--repeating", "--rows" };
		const char **slots[] = { &metadata, &project, &events, &arms, &mapping, &repeating, &rows_path };
		const char **slot = NULL;
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (strcmp(argv[a], names[k]) == 0)
				slot = slots[k];
		if (!slot || a + 1 >= argc) {
			usage();
			return 2;
		}
		*slot = argv[++a];
	}
	if (!metadata || !rows_path) {
		usage();
		return 2;
	}
	if (load_dict(&d, metadata, project, events, arms, mapping, repeating))
		goto out;
	rows = json_load_file(rows_path, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_array(rows)) {
		fprintf(stderr, "redcap-validate-cli: %s:%d:%d: %s\n", rows_path, je.line, je.column,
			rows ? "not a JSON array" : je.text);
		goto out;
	}
	if (!(out = json_array()))
		goto oom;
	json_array_foreach(rows, i, row) {
		redcap_errors errs = REDCAP_ERRORS_NULL;
		json_t *res;
		int rc = json_is_object(row) ? redcap_validate_row(&d, row, i, &opts, &errs) : -EINVAL;
		if (rc < 0 && rc != -EINVAL) {
			redcap_errors_deinit(&errs);
			goto oom;
		}
		if (rc == -EINVAL) {
			fprintf(stderr, "redcap-validate-cli: %s: row %zu is not an object\n", rows_path, i);
			redcap_errors_deinit(&errs);
			goto out;
		}
		res = row_result(&errs);
		redcap_errors_deinit(&errs);
		if (!res || json_array_append_new(out, res))
			goto oom;
	}
	if (json_dumpf(out, stdout, JSON_INDENT(1)) || fputc('\n', stdout) == EOF || fflush(stdout)) {
		fprintf(stderr, "redcap-validate-cli: write error\n");
		goto out;
	}
	status = 0;
	goto out;
oom:
	fprintf(stderr, "redcap-validate-cli: out of memory\n");
out:
	json_decref(out);
	json_decref(rows);
	redcap_dict_deinit(&d);
	return status;
}
