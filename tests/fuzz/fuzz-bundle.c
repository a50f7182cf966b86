/*
 * libFuzzer target for fhir_page_parse() and fhir_json_validate().
 *
 * The input is copied into a buffer of exactly its size (no NUL after it),
 * so ASan catches any read past the end. Checks the two agree: a page that
 * parses is valid JSON, and invalid JSON never parses; entry spans lie
 * inside the buffer and are themselves valid JSON objects.
 *
 * Build: a clang build of the tree makes build/fhir/fuzz-bundle; run it as
 * ./fuzz-bundle -max_len=65536 [corpus-dir].
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	fhir_page pg = FHIR_PAGE_NULL;
	fhir_error err;

	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);
	int valid = fhir_json_validate(buf, size, &err) == 0;
	int r = fhir_page_parse(&pg, buf, size, &err);
	if (r == 0 && !valid)
		abort();
	if (r == FHIR_E_JSON && valid)
		abort();
	for (size_t i = 0; i < pg.n_entries; i++) {
		const fhir_entry *e = &pg.entries[i];
		if (e->body < buf || e->body_len > size || (size_t)(e->body - buf) > size - e->body_len)
			abort();
		if (e->body_len < 2 || e->body[0] != '{' || e->body[e->body_len - 1] != '}')
			abort();
		if (fhir_json_validate(e->body, e->body_len, &err) != 0)
			abort();
	}
	fhir_page_deinit(&pg);
	free(buf);
	return 0;
}
