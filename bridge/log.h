/*
 * Logging: one line per event on stderr,
 *   2026-11-29T05:01:02.123Z info  fhir  page type=Observation entries=500
 * with a subsystem tag (bridge, fhir, store, redcap, http). Never log a token;
 * never log PHI (names, MRNs, bodies) above debug level.
 */
#pragma once

#include <stdarg.h>

typedef enum log_level {
	LOG_ERROR = 0,
	LOG_WARN = 1,
	LOG_INFO = 2,
	LOG_DEBUG = 3,
} log_level;

void log_set_level(log_level level);
log_level log_get_level(void);
/* "error" | "warn" | "info" | "debug" -> 0 and *out; else -1. */
int log_level_parse(const char *s, log_level *out);

/* --log-level NAME for a command: set it, or print the usage error on
 * stderr and return -1. */
int log_level_option(const char *name);

void log_msg(log_level level, const char *subsys, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(sub, ...) log_msg(LOG_ERROR, sub, __VA_ARGS__)
#define log_warn(sub, ...) log_msg(LOG_WARN, sub, __VA_ARGS__)
#define log_info(sub, ...) log_msg(LOG_INFO, sub, __VA_ARGS__)
#define log_debug(sub, ...) log_msg(LOG_DEBUG, sub, __VA_ARGS__)
