/*
 * offline-store/instant.h — internal to offline-store/: FHIR instants as
 * comparable numbers.
 */
#pragma once

#include <stdint.h>

/*
 * Parse a FHIR instant, "YYYY-MM-DDThh:mm:ss[.f…](Z|+hh:mm|-hh:mm)", into
 * microseconds since 1970-01-01T00:00:00Z. Offsets are applied, so instants
 * written with different offsets or fraction precision compare correctly;
 * fraction digits beyond the sixth are ignored (instants that differ only
 * there compare equal). A leap second (ss = 60) counts as the next second.
 * Returns 0, or -EINVAL for anything else (including "" and out-of-range
 * fields such as month 13, February 30 or an offset above 14:00).
 */
int store_instant_parse(const char *s, int64_t *us);
