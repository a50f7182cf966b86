/*
 * mapping-internal.h — the compiled mapping shared by mapping-load.c,
 * mapping-value.c, mapping-curate.c and mapping-check.c; not part of the
 * interface (see mapping.h).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/fhirpath.h"
#include "bridge/jsonloc.h"
#include "bridge/mapping.h"

#define MAPPING_FILE_MAX (4 * 1024 * 1024)
#define MAPPING_KEY_MIN 32

typedef enum mtransform {
	MT_STRING = 0,
	MT_NUMBER,
	MT_ROUND,
	MT_DATE,
	MT_DATETIME,
	MT_DATETIME_SECONDS,
} mtransform;

typedef enum mselect {
	MS_NONE = 0,
	MS_FIRST,
	MS_LAST,
	MS_MIN,
	MS_MAX,
	MS_NEAR,
} mselect;

/* One token of a code or category filter, like a FHIR search token:
 * "system|code", "code" (any system), "system|" (any code of the system),
 * "|code" (a coding without system). */
typedef struct mtoken {
	char *system;     /* NULL: any system; "": none */
	char *code;       /* NULL: any code */
} mtoken;

typedef struct mfilter {
	mtoken *code;
	size_t n_code;
	mtoken *category;
	size_t n_category;
	char **status;
	size_t n_status;
} mfilter;

typedef struct mfield {
	char *name;
	fhirpath **value;     /* alternatives: the first that gives a node counts; */
	size_t n_value;       /* none in anchor rules: the anchor's time as written */
	char *unit;           /* Quantity code (else unit) the value must have, or NULL */
	mtransform transform;
	bool transform_given;
	char **map_from, **map_to;
	size_t n_map;
	char *def;            /* map default, or NULL */
} mfield;

typedef struct manchor {
	char *name;
	char *field;          /* anchor typed into REDCap; NULL for FHIR anchors */
	size_t field_index;   /* its index in mapping.anchor_fields */
	char *resource;       /* FHIR anchors */
	fhirpath *time;
	mselect select;       /* MS_FIRST or MS_LAST */
	mfilter filter;
} manchor;

typedef struct mrule {
	char *name;
	size_t anchor;        /* anchor rules: index into anchors; SIZE_MAX otherwise */
	char *resource;       /* NULL for anchor rules */
	mfilter filter;
	char *event;
	char *instrument;     /* repeating rules */
	fhirpath *time;
	bool window;
	size_t win_anchor;
	int64_t win_from, win_to;   /* microseconds relative to the anchor */
	mselect select;
	bool review;
	mfield *fields;
	size_t n_fields;
} mrule;

struct mapping {
	char *path;
	char *text;           /* the file, kept to place mapping_check's messages */
	size_t len;
	char digest[65];

	char *mrn_system;
	int (*local_to_utc)(void *ud, int year, int month, int day, int hour, int min, int sec, int64_t *us);
	void *local_ud;

	bool hmac;
	char *key;            /* HMAC key (secret_free) */
	size_t key_len;
	char *prefix;
	unsigned hex_digits;

	manchor *anchors;
	size_t n_anchors;
	mrule *rules;
	size_t n_rules;

	char **types;         /* sorted, unique; Patient included */
	size_t n_types;
	char **anchor_fields;
	size_t n_anchor_fields;
};

/* ---- mapping-value.c ------------------------------------------------------ */

/* A FHIR date/dateTime/instant or a REDCap date/datetime, as written. */
typedef struct mtime {
	int year, month, day, hour, min, sec;
	int usec;
	int prec;            /* MTP_* below */
	bool has_seconds;
	bool has_tz;
	int tz_min;          /* offset east of UTC, minutes */
	const char *text;    /* the string parsed (borrowed) */
} mtime;

enum { MTP_YEAR = 1, MTP_MONTH, MTP_DAY, MTP_TIME };

/* Parse s; 'T' or ' ' between date and time; returns 0 or -1. */
int mtime_parse(const char *s, mtime *t);

/* The instant of t in microseconds since the epoch: with its offset, or in
 * the site zone when it has none (a date is 00:00). -1 for partial dates
 * (year, year-month) and local times that do not exist. */
int mtime_instant(const mapping *m, const mtime *t, int64_t *us);

/* Microseconds since the epoch of a UTC civil time. */
int64_t mtime_utc_us(int year, int month, int day, int hour, int min, int sec);

/* The shortest decimal that reads back as x ("57", "1.1", "-0.001");
 * out must hold 40 bytes. */
void mapping_format_double(double x, char *out, size_t size);

/* A JSON number (or a string holding a decimal) as a double; false if not a number. */
bool mapping_json_number(const json_t *v, double *x);

/*
 * The REDCap value of one field from the nodes its path gave. Returns 0
 * with *value (malloc'd) or *error (malloc'd, no data values) set, or
 * neither when the field gets no value; -ENOMEM.
 */
int mapping_field_value(const mfield *f, const fhirpath_coll *c, char **value, char **error);

/* The same for a string as written (anchor rules without value path). */
int mapping_field_value_str(const mfield *f, const char *s, char **value, char **error);

/* A time path's nodes as a time: a single string or a Period's start.
 * Returns 0 with *t set, -1 when there is no usable time. */
int mapping_coll_time(const fhirpath_coll *c, mtime *t);

/* ---- mapping-load.c ------------------------------------------------------- */

/* Position of a node of the mapping file by jsonloc path; 0 or -1. */
int mapping_locate(const mapping *m, const jsonloc_step *path, size_t n, unsigned long *line, unsigned long *col);

/* The number a MIN/MAX rule compares: the single node of c, with the
 * field's unit when it names one. 0 or -1 (no usable number). */
int mapping_field_number(const mfield *f, const fhirpath_coll *c, double *x);
