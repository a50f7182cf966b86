/*
 * libFuzzer target for the data dictionary parsers (redcap_dict_parse_csv
 * and redcap_dict_parse_json) and, on what they accept, the lookups and
 * the row validator.
 *
 * The input is copied into a buffer of exactly its size (no NUL after it),
 * so ASan catches any read past the end. Checks: a failed parse leaves the
 * dictionary empty and names a place; an accepted one has a record id, every
 * field finds itself by name, every form ends with its <form>_complete
 * field, every checkbox column resolves to its choice, and validating a row
 * built from the first value of each field never crashes.
 *
 * Build: a clang build of the tree makes build/redcap/fuzz-dictionary; run
 * it as ./fuzz-dictionary -max_len=65536 redcap/testdata (the test
 * dictionary is a good seed).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redcap/dictionary.h"
#include "redcap/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const redcap_dict *d)
{
	if (!d->n_fields || !d->n_forms || redcap_dict_record_id(d) != &d->fields[0])
		abort();
	for (size_t i = 0; i < d->n_fields; i++) {
		const redcap_field *f = &d->fields[i];
		if (redcap_dict_field(d, f->name) != f || f->form >= d->n_forms)
			abort();
		for (size_t c = 0; c < f->n_choices; c++) {
			const redcap_choice *ch = NULL;
			if (f->type == REDCAP_FIELD_CHECKBOX &&
			    (redcap_dict_column(d, f->choices[c].column, &ch) != f || ch != &f->choices[c]))
				abort();
		}
	}
	for (size_t k = 0; k < d->n_forms; k++) {
		const redcap_form *fm = &d->forms[k];
		if (fm->complete != fm->first + fm->n_fields - 1 || !d->fields[fm->complete].implicit ||
		    redcap_dict_form(d, fm->name) != fm)
			abort();
	}
	json_t *cols = redcap_dict_export_columns(d);
	json_t *row = json_object();
	if (!cols || !row)
		abort();
	for (size_t i = 0; i < d->n_fields; i++) {
		const redcap_field *f = &d->fields[i];
		const char *v = f->n_choices ? f->choices[0].code : f->raw[REDCAP_COL_VALIDATION_MIN];
		json_object_set_new(row, f->type == REDCAP_FIELD_CHECKBOX ? f->choices[0].column : f->name,
				    json_string(v));
	}
	redcap_errors errs = REDCAP_ERRORS_NULL;
	if (redcap_validate_row(d, row, 0, NULL, &errs) < 0)
		abort();
	redcap_errors_deinit(&errs);
	json_decref(row);
	json_decref(cols);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	redcap_dict d = REDCAP_DICT_NULL;
	redcap_error err;

	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);
	for (int json = 0; json < 2; json++) {
		memset(&err, 0, sizeof(err));
		int rc = json ? redcap_dict_parse_json(&d, buf, size, &err) : redcap_dict_parse_csv(&d, buf, size, &err);
		if (rc < 0)
			abort();  /* only ENOMEM, which libFuzzer's limits do not cause here */
		if (rc) {
			if (d.n_fields || d.fields || d.index || !err.msg[0])
				abort();
			continue;
		}
		check(&d);
		redcap_dict_deinit(&d);
	}
	free(buf);
	return 0;
}
