/*
 * mapping-value.c — times and values: FHIR/REDCap date and time strings,
 * their instants, numbers as REDCap gets them, and the transforms that
 * turn what a value path found into one REDCap value.
 *
 * Clock times are copied as written (never converted to another zone);
 * only comparisons (windows, FIRST/LAST/NEAR) use instants. Messages of
 * value errors never quote the data.
 */
#include "bridge/mapping-internal.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Times.
 */

static bool dig(char c)
{
	return c >= '0' && c <= '9';
}

/* n digits at s into *v; false if not all digits. */
static bool digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (!dig(s[i]))
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

static bool leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
	static const int d[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return m == 2 && leap_year(y) ? 29 : d[m - 1];
}

/* The clock part "HH:MM[:SS[.frac]]" at s; returns the length or 0. */
static size_t parse_clock(const char *s, mtime *t)
{
	size_t i = 5;

	if (!digits(s, 2, &t->hour) || s[2] != ':' || !digits(s + 3, 2, &t->min) || t->hour > 23 || t->min > 59)
		return 0;
	if (s[5] == ':') {
		if (!digits(s + 6, 2, &t->sec) || t->sec > 60)
			return 0;
		t->has_seconds = true;
		i = 8;
		if (s[i] == '.') {
			int scale = 100000;
			i++;
			if (!dig(s[i]))
				return 0;
			for (; dig(s[i]); i++, scale /= 10)
				t->usec += (s[i] - '0') * scale;
		}
	}
	return i;
}

/* The zone designator at s: "", "Z" or "+HH:MM"/"-HH:MM"; false otherwise. */
static bool parse_zone(const char *s, mtime *t)
{
	int h, mi;

	if (!*s)
		return true;
	t->has_tz = true;
	if (s[0] == 'Z')
		return s[1] == '\0';
	if ((s[0] != '+' && s[0] != '-') || !digits(s + 1, 2, &h) || s[3] != ':' || !digits(s + 4, 2, &mi) ||
	    s[6] != '\0' || h > 14 || mi > 59)
		return false;
	t->tz_min = (s[0] == '-' ? -1 : 1) * (h * 60 + mi);
	return true;
}

int mtime_parse(const char *s, mtime *t)
{
	*t = (mtime){ .text = s, .month = 1, .day = 1 };
	if (!s || !digits(s, 4, &t->year))
		return -1;
	t->prec = MTP_YEAR;
	if (!s[4])
		return 0;
	if (s[4] != '-' || !digits(s + 5, 2, &t->month) || t->month < 1 || t->month > 12)
		return -1;
	t->prec = MTP_MONTH;
	if (!s[7])
		return 0;
	if (s[7] != '-' || !digits(s + 8, 2, &t->day) || t->day < 1 || t->day > days_in_month(t->year, t->month))
		return -1;
	t->prec = MTP_DAY;
	if (!s[10])
		return 0;
	if (s[10] != 'T' && s[10] != ' ')
		return -1;
	size_t n = parse_clock(s + 11, t);
	if (!n || !parse_zone(s + 11 + n, t))
		return -1;
	t->prec = MTP_TIME;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int64_t mtime_utc_us(int year, int month, int day, int hour, int min, int sec)
{
	int64_t s = days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec;
	return s * 1000000;
}

int mtime_instant(const mapping *m, const mtime *t, int64_t *us)
{
	if (t->prec < MTP_DAY)
		return -1;
	if (t->has_tz) {
		*us = mtime_utc_us(t->year, t->month, t->day, t->hour, t->min, t->sec) -
		      (int64_t)t->tz_min * 60 * 1000000 + t->usec;
		return 0;
	}
	/* No offset: a date (00:00) or a clock time in the site's zone. */
	if (!m->local_to_utc) {
		*us = mtime_utc_us(t->year, t->month, t->day, t->hour, t->min, t->sec) + t->usec;
		return 0;
	}
	if (m->local_to_utc(m->local_ud, t->year, t->month, t->day, t->hour, t->min, t->sec, us) != 0)
		return -1;
	*us += t->usec;
	return 0;
}

int mapping_coll_time(const fhirpath_coll *c, mtime *t)
{
	const json_t *n;

	if (c->n != 1)
		return -1;
	n = c->v[0].node;
	if (json_is_object(n))
		n = json_object_get(n, "start"); /* a Period used as a time: its start */
	if (!json_is_string(n))
		return -1;
	return mtime_parse(json_string_value(n), t);
}

/* ------------------------------------------------------------------------
 * Numbers.
 */

void mapping_format_double(double x, char *out, size_t size)
{
	char e[40], dg[24];
	int p, exp10 = 0;
	size_t nd = 0, o = 0;

	if (x == 0 || !isfinite(x)) {
		snprintf(out, size, "0");
		return;
	}
	/*
	 * The fewest significant digits that read back as x. When x reads
	 * back from 15 digits, those are its shortest form padded with zeros
	 * (a double's error is far below the 15th digit), and the zeros are
	 * stripped below; otherwise 16 or 17 digits are needed. Subnormal
	 * numbers have fewer bits: for them every length is tried.
	 */
	for (p = x > -DBL_MIN && x < DBL_MIN ? 1 : 15; p <= 17; p++) {
		snprintf(e, sizeof(e), "%.*e", p - 1, x);
		if (strtod(e, NULL) == x)
			break;
	}
	/* e is [-]d[.ddd]e[+-]XX: collect the digits and the exponent. */
	const char *s = e;
	bool neg = *s == '-';
	if (neg)
		s++;
	for (; *s && *s != 'e'; s++)
		if (dig(*s))
			dg[nd++] = *s;
	if (*s == 'e')
		exp10 = atoi(s + 1);
	while (nd > 1 && dg[nd - 1] == '0')
		nd--;
	dg[nd] = '\0';
	int point = exp10 + 1; /* digits before the decimal point */
	if (point > 21 || point < -20) {
		/* Far outside clinical ranges: an exponent form (REDCap's number check accepts it). */
		snprintf(out, size, "%s%c%s%se%d", neg ? "-" : "", dg[0], nd > 1 ? "." : "", dg + 1, exp10);
		return;
	}
	char buf[64];
	if (neg)
		buf[o++] = '-';
	if (point <= 0) {
		buf[o++] = '0';
		buf[o++] = '.';
		for (int i = 0; i < -point; i++)
			buf[o++] = '0';
		memcpy(buf + o, dg, nd);
		o += nd;
	} else if ((size_t)point >= nd) {
		memcpy(buf + o, dg, nd);
		o += nd;
		for (size_t i = nd; i < (size_t)point; i++)
			buf[o++] = '0';
	} else {
		memcpy(buf + o, dg, (size_t)point);
		o += (size_t)point;
		buf[o++] = '.';
		memcpy(buf + o, dg + point, nd - (size_t)point);
		o += nd - (size_t)point;
	}
	buf[o] = '\0';
	snprintf(out, size, "%s", buf);
}

/* [-+]?digits[.digits]?([eE][-+]?digits)? — a decimal as FHIR writes one. */
static bool decimal_text(const char *s)
{
	size_t i = 0, d = 0;

	if (s[i] == '-' || s[i] == '+')
		i++;
	for (; dig(s[i]); i++)
		d++;
	if (s[i] == '.') {
		i++;
		for (; dig(s[i]); i++)
			d++;
	}
	if (!d)
		return false;
	if (s[i] == 'e' || s[i] == 'E') {
		i++;
		if (s[i] == '-' || s[i] == '+')
			i++;
		if (!dig(s[i]))
			return false;
		while (dig(s[i]))
			i++;
	}
	return s[i] == '\0';
}

bool mapping_json_number(const json_t *v, double *x)
{
	if (json_is_integer(v)) {
		*x = (double)json_integer_value(v);
		return true;
	}
	if (json_is_real(v)) {
		*x = json_real_value(v);
		return true;
	}
	if (json_is_string(v) && decimal_text(json_string_value(v))) {
		*x = strtod(json_string_value(v), NULL);
		return isfinite(*x);
	}
	return false;
}

/* ------------------------------------------------------------------------
 * Field values.
 */

/* What a path found: a JSON node, or (anchor rules) a string as written. */
typedef struct src {
	const json_t *node;
	const json_t *parent;
	const char *str;
} src;

static int set_err(char **error, const char *msg)
{
	*error = strdup(msg);
	return *error ? 0 : -ENOMEM;
}

static int set_err_unit(char **error, const char *what, const char *unit)
{
	if (asprintf(error, "%s \"%s\"", what, unit) < 0) {
		*error = NULL;
		return -ENOMEM;
	}
	return 0;
}

static int set_val(char **value, const char *s)
{
	*value = strdup(s);
	return *value ? 0 : -ENOMEM;
}

/* The text of a primitive (string, number, boolean) into buf or *out; false otherwise. */
static bool primitive_text(const src *v, char *buf, size_t size, const char **out)
{
	if (v->str) {
		*out = v->str;
		return true;
	}
	switch (json_typeof(v->node)) {
	case JSON_STRING:
		*out = json_string_value(v->node);
		return true;
	case JSON_INTEGER:
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v->node));
		break;
	case JSON_REAL:
		mapping_format_double(json_real_value(v->node), buf, size);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		snprintf(buf, size, "%s", json_is_true(v->node) ? "true" : "false");
		break;
	default:
		return false;
	}
	*out = buf;
	return true;
}

static int unit_check(const mfield *f, const src *v, char **error)
{
	const char *u;

	if (!f->unit)
		return 1;
	u = v->parent ? json_string_value(json_object_get(v->parent, "code")) : NULL;
	if (!u && v->parent)
		u = json_string_value(json_object_get(v->parent, "unit"));
	if (!u)
		return set_err_unit(error, "the value has no unit; required:", f->unit);
	if (strcmp(u, f->unit) != 0)
		return set_err_unit(error, "the value's unit is not", f->unit);
	return 1;
}

static int map_value(const mfield *f, const src *v, char **value, char **error)
{
	char buf[64];
	const char *t;

	if (!primitive_text(v, buf, sizeof(buf), &t))
		return set_err(error, "the value is not a code (a string, number or boolean)");
	for (size_t i = 0; i < f->n_map; i++)
		if (strcmp(f->map_from[i], t) == 0)
			return set_val(value, f->map_to[i]);
	if (f->def)
		return set_val(value, f->def);
	return set_err(error, "the code is not in the map and the map has no default");
}

/* floor(x + 0.5) without libm: |x| <= 1e15 here, exact in a long long. */
static long long round_half_up(double x)
{
	double y = x + 0.5;
	long long i = (long long)y;

	if ((double)i > y)
		i--;
	return i;
}

static int number_value(const mfield *f, const src *v, char **value, char **error)
{
	char buf[64];
	double x;
	bool ok;

	if (v->str) {
		json_t *tmp = json_string(v->str);
		if (!tmp)
			return -ENOMEM;
		ok = mapping_json_number(tmp, &x);
		json_decref(tmp);
	} else {
		ok = mapping_json_number(v->node, &x);
	}
	if (!ok)
		return set_err(error, "the value is not a number");
	if (f->transform == MT_NUMBER) {
		if (json_is_integer(v->node))
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v->node));
		else
			mapping_format_double(x, buf, sizeof(buf));
		return set_val(value, buf);
	}
	/* round: half up, as floor(x + 0.5). */
	if (json_is_integer(v->node)) {
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v->node));
		return set_val(value, buf);
	}
	if (x > 1e15 || x < -1e15)
		return set_err(error, "the number is too large to round");
	snprintf(buf, sizeof(buf), "%lld", round_half_up(x));
	return set_val(value, buf);
}

static int time_value(const mfield *f, const src *v, char **value, char **error)
{
	const char *s = v->str;
	char buf[32];
	mtime t;

	if (!s) {
		const json_t *n = v->node;
		if (json_is_object(n))
			n = json_object_get(n, "start"); /* a Period: its start */
		s = json_string_value(n);
	}
	if (!s || mtime_parse(s, &t) != 0)
		return set_err(error, "the value is not a date or date-time");
	/* Valid FHIR, not enough for the field (a year-month for a date, a
	 * date for a date-time): sent on as written, so that the validation
	 * against the live dictionary holds the row back with REDCap's own
	 * message ("Invalid date format. ..."), the one its users search for. */
	if (t.prec < (f->transform == MT_DATE ? MTP_DAY : MTP_TIME))
		return set_val(value, s);
	/* "YYYY-MM-DD HH:MM:SS", cut to the transform's length (no printf: this runs per value). */
	const int part[] = { t.year / 100, t.year % 100, t.month, t.day, t.hour, t.min, t.sec };
	static const char sep[] = "\0-- ::";
	size_t o = 0;
	for (int i = 0; i < 7; i++) {
		if (i >= 2)
			buf[o++] = sep[i - 1];
		buf[o++] = (char)('0' + part[i] / 10);
		buf[o++] = (char)('0' + part[i] % 10);
	}
	buf[f->transform == MT_DATE ? 10 : f->transform == MT_DATETIME ? 16 : 19] = '\0';
	return set_val(value, buf);
}

/* One value from one source: unit check, then map or transform. */
static int value_from(const mfield *f, const src *v, char **value, char **error)
{
	char buf[64];
	const char *t;
	int r;

	if (v->node && json_is_null(v->node))
		return 0;
	if ((r = unit_check(f, v, error)) <= 0)
		return r;
	if (f->n_map)
		return map_value(f, v, value, error);
	switch (f->transform) {
	case MT_NUMBER:
	case MT_ROUND:
		return number_value(f, v, value, error);
	case MT_DATE:
	case MT_DATETIME:
	case MT_DATETIME_SECONDS:
		return time_value(f, v, value, error);
	case MT_STRING:
		break;
	}
	if (!primitive_text(v, buf, sizeof(buf), &t))
		return set_err(error, "the value is not a primitive (it is an object or an array)");
	return set_val(value, t);
}

int mapping_field_value(const mfield *f, const fhirpath_coll *c, char **value, char **error)
{
	*value = *error = NULL;
	if (c->n == 0)
		return f->n_map && f->def ? set_val(value, f->def) : 0;
	if (c->n > 1) {
		if (asprintf(error, "the path gives %zu values (one is needed)", c->n) < 0) {
			*error = NULL;
			return -ENOMEM;
		}
		return 0;
	}
	src v = { .node = c->v[0].node, .parent = c->v[0].parent };
	return value_from(f, &v, value, error);
}

int mapping_field_number(const mfield *f, const fhirpath_coll *c, double *x)
{
	char *error = NULL;

	if (c->n != 1)
		return -1;
	src v = { .node = c->v[0].node, .parent = c->v[0].parent };
	int r = unit_check(f, &v, &error);
	free(error);
	if (r <= 0)
		return -1;
	return mapping_json_number(v.node, x) ? 0 : -1;
}

int mapping_field_value_str(const mfield *f, const char *s, char **value, char **error)
{
	*value = *error = NULL;
	if (!s || !*s)
		return f->n_map && f->def ? set_val(value, f->def) : 0;
	src v = { .str = s };
	return value_from(f, &v, value, error);
}
