/*
 * fhir/instant.c — FHIR instants and HTTP Retry-After values.
 *
 * Calendar arithmetic is done here (proleptic Gregorian, days since the
 * epoch) rather than with timegm()/strptime(), which depend on the C
 * library and the locale.
 */
#include "fhir/fhir.h"

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Days since 1970-01-01 of a civil date (month 1-12, day 1-31). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);                         /* [0, 399] */
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  /* [0, 365] */
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            /* [0, 146096] */
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
	static const unsigned char dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Format unix_ms (UTC) as 2026-11-29T05:01:02.123Z. */
void fhir_format_instant(int64_t unix_ms, char out[FHIR_INSTANT_MAX])
{
	/* Floor divisions written so that no step can overflow, even at INT64_MIN. */
	int64_t secs = unix_ms / 1000, days;
	int ms = (int)(unix_ms % 1000), sod;
	if (ms < 0) {
		ms += 1000;
		secs--;
	}
	days = secs / 86400;
	sod = (int)(secs % 86400);
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	int64_t y;
	unsigned m, d;

	civil_from_days(days, &y, &m, &d);
	snprintf(out, FHIR_INSTANT_MAX, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d.%03dZ", y, (int)(m % 100),
		 (int)(d % 100), sod / 3600 % 100, sod / 60 % 60, sod % 60, ms % 1000);
}

/* Read exactly n digits at *p into *v; advance. */
static bool digits(const char **p, int n, int *v)
{
	int x = 0;

	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return false;
		x = x * 10 + (c - '0');
	}
	*p += n;
	*v = x;
	return true;
}

static bool lit(const char **p, const char *s)
{
	size_t n = strlen(s);
	if (strncmp(*p, s, n) != 0)
		return false;
	*p += n;
	return true;
}

/*
 * Parse a FHIR instant / dateTime / date (see fhir.h): YYYY, YYYY-MM,
 * YYYY-MM-DD (UTC midnight of the first day), or
 * YYYY-MM-DDThh:mm:ss[.fraction](Z|+hh:mm|-hh:mm). Fractions beyond
 * milliseconds are truncated. Returns 0 or FHIR_E_SHAPE.
 */
int fhir_parse_instant(const char *s, int64_t *unix_ms)
{
	const char *p = s;
	int y, mo = 1, d = 1, h = 0, mi = 0, sec = 0, ms = 0, off = 0;

	if (!s || !digits(&p, 4, &y) || y < 1)
		return FHIR_E_SHAPE;
	if (*p && !(lit(&p, "-") && digits(&p, 2, &mo) && mo >= 1 && mo <= 12))
		return FHIR_E_SHAPE;
	if (*p && !(lit(&p, "-") && digits(&p, 2, &d) && d >= 1 && (unsigned)d <= days_in_month(y, (unsigned)mo)))
		return FHIR_E_SHAPE;
	if (*p) {
		if (!(lit(&p, "T") && digits(&p, 2, &h) && h <= 23 && lit(&p, ":") && digits(&p, 2, &mi) &&
		      mi <= 59 && lit(&p, ":") && digits(&p, 2, &sec) && sec <= 60))
			return FHIR_E_SHAPE;
		if (*p == '.') {
			p++;
			if (*p < '0' || *p > '9')
				return FHIR_E_SHAPE;
			for (int i = 0; *p >= '0' && *p <= '9'; i++, p++)
				if (i < 3)
					ms += (*p - '0') * (i == 0 ? 100 : i == 1 ? 10 : 1);
		}
		if (*p == 'Z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p++ == '-' ? -1 : 1, oh, om;
			if (!(digits(&p, 2, &oh) && oh <= 14 && lit(&p, ":") && digits(&p, 2, &om) && om <= 59))
				return FHIR_E_SHAPE;
			off = sign * (oh * 60 + om);
		} else {
			return FHIR_E_SHAPE;  /* a time needs an offset */
		}
		if (*p)
			return FHIR_E_SHAPE;
	}
	int64_t t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - off * 60;
	*unix_ms = t * 1000 + ms;
	return 0;
}

static const char *const month_names[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
static const char *const day_names[7] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
static const char *const day_names_long[7] = { "Monday", "Tuesday",  "Wednesday", "Thursday",
					       "Friday", "Saturday", "Sunday" };

static bool month(const char **p, int *m)
{
	for (int i = 0; i < 12; i++) {
		if (lit(p, month_names[i])) {
			*m = i + 1;
			return true;
		}
	}
	return false;
}

static bool weekday(const char **p, const char *const names[7])
{
	for (int i = 0; i < 7; i++)
		if (lit(p, names[i]))
			return true;
	return false;
}

/* hh:mm:ss */
static bool clock_time(const char **p, int *h, int *mi, int *s)
{
	return digits(p, 2, h) && *h <= 23 && lit(p, ":") && digits(p, 2, mi) && *mi <= 59 && lit(p, ":") &&
	       digits(p, 2, s) && *s <= 60;
}

/* An HTTP-date (RFC 9110 5.6.7) in seconds since the epoch, or false. */
static bool http_date(const char *p, time_t now, int64_t *t)
{
	const char *q = p;
	int y, m, d, h, mi, s;

	if (weekday(&q, day_names) && lit(&q, ", ")) {
		/* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
		if (!(digits(&q, 2, &d) && lit(&q, " ") && month(&q, &m) && lit(&q, " ") && digits(&q, 4, &y) &&
		      lit(&q, " ") && clock_time(&q, &h, &mi, &s) && lit(&q, " GMT") && !*q))
			return false;
	} else if (q = p, weekday(&q, day_names_long) && lit(&q, ", ")) {
		/* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT. A two-digit year more
		 * than 50 years in the future is in the past century. */
		if (!(digits(&q, 2, &d) && lit(&q, "-") && month(&q, &m) && lit(&q, "-") && digits(&q, 2, &y) &&
		      lit(&q, " ") && clock_time(&q, &h, &mi, &s) && lit(&q, " GMT") && !*q))
			return false;
		int64_t ny;
		unsigned nm, nd;
		civil_from_days(floor_div((int64_t)now, 86400), &ny, &nm, &nd);
		int64_t full = ny - ny % 100 + y;
		if (full > ny + 50)
			full -= 100;
		y = (int)full;
	} else if (q = p, weekday(&q, day_names) && lit(&q, " ")) {
		/* asctime: Sun Nov  6 08:49:37 1994 */
		if (!month(&q, &m) || !lit(&q, " "))
			return false;
		if (*q == ' ') {
			q++;
			if (!digits(&q, 1, &d))
				return false;
		} else if (!digits(&q, 2, &d)) {
			return false;
		}
		if (!(lit(&q, " ") && clock_time(&q, &h, &mi, &s) && lit(&q, " ") && digits(&q, 4, &y) && !*q))
			return false;
	} else {
		return false;
	}
	if (d < 1 || (unsigned)d > days_in_month(y, (unsigned)m))
		return false;
	*t = days_from_civil(y, (unsigned)m, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s;
	return true;
}

/*
 * Parse a Retry-After value (see fhir.h): delta-seconds (saturating at
 * LONG_MAX) or an HTTP-date, surrounding white space allowed. Returns 0
 * with *seconds >= 0, or FHIR_E_SHAPE.
 */
int fhir_retry_after(const char *value, time_t now, long *seconds)
{
	char buf[64];

	if (!value)
		return FHIR_E_SHAPE;
	while (*value == ' ' || *value == '\t')
		value++;
	size_t n = strlen(value);
	while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
		n--;
	if (n == 0)
		return FHIR_E_SHAPE;
	if (value[0] >= '0' && value[0] <= '9') {
		long v = 0;
		for (size_t i = 0; i < n; i++) {
			if (value[i] < '0' || value[i] > '9')
				return FHIR_E_SHAPE;
			int dgt = value[i] - '0';
			v = v > (LONG_MAX - dgt) / 10 ? LONG_MAX : v * 10 + dgt;
		}
		*seconds = v;
		return 0;
	}
	/* Every HTTP-date form is under 40 bytes: a longer value is none. */
	if (n >= sizeof(buf))
		return FHIR_E_SHAPE;
	memcpy(buf, value, n);
	buf[n] = 0;
	int64_t t;
	if (!http_date(buf, now, &t))
		return FHIR_E_SHAPE;
	int64_t delta = t - (int64_t)now;
	*seconds = delta <= 0 ? 0 : delta > LONG_MAX ? LONG_MAX : (long)delta;
	return 0;
}
