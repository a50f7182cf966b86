/*
 * util — two small things the pull and the push both need.
 */
#pragma once

#include <stdint.h>

#include <stdarg.h>

/* A newly formatted string (malloc'd), NULL if out of memory. */
char *util_vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Replace *dst (freed) with a newly formatted string; NULL if out of memory. */
void util_setf(char **dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Wall-clock time in milliseconds since the epoch (for stored times;
 * intervals use the loop's monotonic uv_now()). */
int64_t util_wall_ms(void);
