/*
 * offline-store/instant.c — FHIR instant parsing (see instant.h).
 */
#include "offline-store/instant.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

/* n decimal digits at s, or -1. */
static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
	static const int dm[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return m == 2 && is_leap(y) ? 29 : dm[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (y >= 1). */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = y / 400; /* y >= 0 here */
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int store_instant_parse(const char *s, int64_t *us)
{
	if (!s)
		return -EINVAL;
	/* Fixed part: YYYY-MM-DDThh:mm:ss (19 characters). */
	for (int i = 0; i < 19; i++)
		if (!s[i])
			return -EINVAL;
	int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
	int h = digits(s + 11, 2), mi = digits(s + 14, 2), sec = digits(s + 17, 2);
	if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
		return -EINVAL;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h < 0 || h > 23 || mi < 0 ||
	    mi > 59 || sec < 0 || sec > 60)
		return -EINVAL;
	const char *p = s + 19;
	int64_t frac = 0;
	if (*p == '.') {
		p++;
		int n = 0;
		for (; *p >= '0' && *p <= '9'; p++, n++) {
			if (n < 6)
				frac = frac * 10 + (*p - '0');
		}
		if (n == 0)
			return -EINVAL;
		for (; n < 6; n++)
			frac *= 10;
	}
	int64_t off_s = 0;
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh = digits(p + 1, 2);
		if (oh < 0 || p[3] != ':')
			return -EINVAL;
		int om = digits(p + 4, 2);
		if (om < 0 || om > 59 || oh > 14 || (oh == 14 && om != 0))
			return -EINVAL;
		off_s = (int64_t)(oh * 60 + om) * 60;
		if (*p == '-')
			off_s = -off_s;
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	int64_t t = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec - off_s;
	*us = t * 1000000 + frac;
	return 0;
}
