/*
 * util — two small things the pull and the push both need.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <stdarg.h>

/* A newly formatted string (malloc'd), NULL if out of memory. */
char *util_vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Replace *dst (freed) with a newly formatted string; NULL if out of memory. */
void util_setf(char **dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Wall-clock time in milliseconds since the epoch (for stored times;
 * intervals use the loop's monotonic uv_now()). */
int64_t util_wall_ms(void);

/* ms since the epoch as a FHIR instant in UTC, "2026-11-29T11:24:38.123Z"
 * (out needs 25 bytes; "" when it does not fit). */
void util_instant_ms(int64_t ms, char *out, size_t size);
