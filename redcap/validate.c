/*
 * redcap/validate.c — validate import rows against the data dictionary
 * with REDCap's messages.
 *
 * Sources (see validate.h): REDCap 15.7.6 LanguageUpdater/English.ini for
 * the texts (data_import_tool_162, 165, 166, 190, 193, 212..233, 252..263,
 * 281..286, 299, 384, 406; config_functions_77), its install_data.sql
 * redcap_validation_types table for the formats (the regular expressions
 * below are written from those, in POSIX ERE), and its Classes/Records.php
 * (saveData; API/record/import.php hands the request to it as it is) for
 * what is checked, in which order, how values are turned first, and how
 * the texts are joined. Public copy: xOops4/redcap, redcap_v15.7.6/.
 */
#include "redcap/validate.h"
#include "redcap/internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

/* ------------------------------------------------------------------------
 * Format checks.
 */

static bool dig(char c)
{
	return c >= '0' && c <= '9';
}

static int num2(const char *s)
{
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/* REDCap's leap years: the regex accepts Feb 29 when the last two digits
 * are a non-zero multiple of 4, or the year is 1600, 2000, 2400, 2800. */
static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y == 1600 || y == 2000 || y == 2400 || y == 2800;
}

/* YYYY-MM-DD or YYYY/MM/DD (same separator twice), a real calendar date.
 * Returns the length consumed (10) or 0. */
static size_t date_ymd(const char *s)
{
	static const unsigned char mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	for (int i = 0; i < 10; i++)
		if (!s[i])
			return 0;
	if (!dig(s[0]) || !dig(s[1]) || !dig(s[2]) || !dig(s[3]) || (s[4] != '-' && s[4] != '/') ||
	    !dig(s[5]) || !dig(s[6]) || s[7] != s[4] || !dig(s[8]) || !dig(s[9]))
		return 0;
	int y = num2(s) * 100 + num2(s + 2), m = num2(s + 5), d = num2(s + 8);
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return 0;
	if (m == 2 && d == 29 && !leap(y))
		return 0;
	return 10;
}

/* H or HH (0..23), ':' MM; with seconds ':' SS. Returns length or 0. */
static size_t clock_time(const char *s, bool seconds)
{
	size_t i = 0;
	int h;

	if (!dig(s[0]))
		return 0;
	if (dig(s[1])) {
		h = num2(s);
		i = 2;
	} else {
		h = s[0] - '0';
		i = 1;
	}
	if (h > 23)
		return 0;
	for (int k = 0; k < (seconds ? 2 : 1); k++) {
		if (s[i] != ':' || !(s[i + 1] >= '0' && s[i + 1] <= '5') || !dig(s[i + 2]))
			return 0;
		i += 3;
	}
	return i;
}

/* ------------------------------------------------------------------------
 * What REDCap does to a date or a datetime before it checks and saves it.
 *
 * REDCap 15.7.6 Classes/Records.php, saveData ("Ensure all dates are in
 * correct format"), with dateFormat=YMD:
 *   - datetime_* fields: every 'T' becomes ' '; the value is split at its
 *     first ' ' into a date and a time; the date goes through
 *     clean_date_ymd(); the time is split at ':' (hour:minute, or
 *     hour:minute:second from the first three pieces; without any ':' all
 *     three are empty) and rebuilt with sprintf("%02d:%02d") or
 *     sprintf("%02d:%02d:%02d"). So a date alone becomes "date 00:00", an
 *     hour alone is lost ("13" -> 00:00), seconds are dropped for a
 *     datetime without seconds and ":00" is added for one with seconds;
 *   - date_* fields: clean_date_ymd() of the whole value.
 * The result is checked with the type's regex (install_data.sql: '-' or
 * '/' used twice, real calendar dates, one space, H or HH 0..23, MM and SS
 * 00..59), and it is what REDCap saves and quotes in its error line.
 * clean_date_ymd() (Config/init_functions.php, not in the public 15.7.6
 * copy; REDCap 5.2.3's is used, UNVERIFIED for 15.7.6) trims the value
 * and, when it has exactly two '-' and is shorter than 10 bytes, rebuilds
 * it with sprintf("%04d-%02d-%02d"), a 2-character year first made 20yy
 * when below this year's two digits + 10, else 19yy. PHP's %d takes
 * (int) of each piece: php_int().
 */

static bool php_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * The numeric prefix of s[0..n) as PHP (>= 7.1) reads it for (int):
 * leading whitespace, [+-]digits[.digits][e[+-]digits]. Returns its end
 * (s + skipped whitespace when there is none) and *v its value.
 */
static size_t php_number(const char *s, size_t n, double *v)
{
	size_t i = 0, st, nd, fr = 0;
	char buf[64];

	while (i < n && php_space(s[i]))
		i++;
	st = i;
	if (i < n && (s[i] == '+' || s[i] == '-'))
		i++;
	size_t d0 = i;
	while (i < n && dig(s[i]))
		i++;
	nd = i - d0;
	if (i < n && s[i] == '.') {
		size_t j = i + 1;
		while (j < n && dig(s[j]))
			j++;
		fr = j - i - 1;
		if (nd || fr)
			i = j;
	}
	if (!nd && !fr) {
		*v = 0;
		return st;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		size_t j = i + 1;
		if (j < n && (s[j] == '+' || s[j] == '-'))
			j++;
		size_t e0 = j;
		while (j < n && dig(s[j]))
			j++;
		if (j > e0)
			i = j;
	}
	if (i - st >= sizeof(buf)) {
		*v = HUGE_VAL;
		return i;
	}
	memcpy(buf, s + st, i - st);
	buf[i - st] = 0;
	*v = strtod(buf, NULL);
	return i;
}

/* PHP's (int) of s[0..n), truncated toward zero; false beyond +-2^53
 * (what PHP makes of those is not modelled: the value is refused). */
static bool php_int(const char *s, size_t n, long long *out)
{
	double v;

	php_number(s, n, &v);
	if (!(fabs(v) < 9007199254740992.0))
		return false;
	*out = (long long)v;
	return true;
}

/* This year's last two digits (PHP date('y'), the server's local time). */
static int year2(void)
{
	time_t now = time(NULL);
	struct tm tm;

	if (!localtime_r(&now, &tm))
		return 0;
	return (tm.tm_year + 1900) % 100;
}

/*
 * PHP 8's ($year < lim) for a 2-byte string: a numeric string (whitespace
 * around a number allowed) compares as a number, anything else as text
 * against lim's digits. UNVERIFIED: PHP 7 would compare (int) of it.
 */
static bool php_less(const char *s, size_t n, int lim)
{
	double v;
	size_t e = php_number(s, n, &v);
	bool numeric = e > 0 && (dig(s[e - 1]) || s[e - 1] == '.');
	for (size_t i = e; i < n; i++)
		numeric = numeric && php_space(s[i]);
	if (numeric)
		return v < lim;
	char lb[16];
	snprintf(lb, sizeof(lb), "%d", lim);
	size_t ln = strlen(lb);
	int c = memcmp(s, lb, n < ln ? n : ln);
	return c < 0 || (c == 0 && n < ln);
}

/* clean_date_ymd() of s[0..n) appended to b; false when a piece is
 * beyond php_int(). */
static bool clean_date_ymd(rc_str *b, const char *s, size_t n)
{
	size_t st, len, dash[2], k = 0;
	long long y, m, d;

	rc_trim(s, n, &st, &len);
	s += st;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '-') {
			if (k < 2)
				dash[k] = i;
			k++;
		}
	if (k != 2 || len >= 10) {
		rc_str_addn(b, s, len);
		return true;
	}
	if (dash[0] == 2) {
		char yb[4] = { '1', '9', s[0], s[1] };
		if (php_less(s, 2, year2() + 10))
			yb[0] = '2', yb[1] = '0';
		if (!php_int(yb, 4, &y))
			return false;
	} else if (!php_int(s, dash[0], &y)) {
		return false;
	}
	if (!php_int(s + dash[0] + 1, dash[1] - dash[0] - 1, &m) || !php_int(s + dash[1] + 1, len - dash[1] - 1, &d))
		return false;
	rc_str_addf(b, "%04lld-%02lld-%02lld", y, m, d);
	return true;
}

/* The time as pad_time=false wants it: H[H]:M[M], and :S[S] only with seconds. */
static bool written_time(const char *t, size_t n, bool seconds)
{
	size_t i = 0;
	for (int part = 0; part < 3; part++) {
		size_t d0 = i;
		while (i < n && dig(t[i]))
			i++;
		if (i - d0 < 1 || i - d0 > 2)
			return false;
		if (i == n)
			return part >= 1;
		if (t[i] != ':' || part == 2 || (part == 1 && !seconds))
			return false;
		i++;
	}
	return false;
}

/*
 * The value REDCap saves for s in a field of type t (a date_* or
 * datetime_* type), malloc'd; *ok tells whether REDCap accepts it. With
 * pad_time false a datetime must carry its time (hours and minutes, and
 * seconds only where the field has them): otherwise *ok is false and s is
 * returned as written. NULL on ENOMEM.
 */
char *redcap_normalize_date(redcap_vtype t, const char *s, bool pad_time, bool *ok)
{
	bool datetime = t >= REDCAP_V_DATETIME_YMD && t <= REDCAP_V_DATETIME_SECONDS_DMY;
	bool seconds = t >= REDCAP_V_DATETIME_SECONDS_YMD && t <= REDCAP_V_DATETIME_SECONDS_DMY;
	rc_str b = RC_STR_NULL;
	size_t n = strlen(s);
	bool fits = true;

	*ok = false;
	if (!datetime) {
		fits = clean_date_ymd(&b, s, n);
	} else {
		char *v = rc_strndup(s, n);
		if (!v)
			return NULL;
		for (char *p = v; *p; p++)
			if (*p == 'T')
				*p = ' ';
		const char *sp = strchr(v, ' ');
		const char *tm = sp ? sp + 1 : v + n;
		size_t dn = sp ? (size_t)(sp - v) : n, tn = strlen(tm);
		if (!pad_time && !written_time(tm, tn, seconds)) {
			free(v);
			return rc_strdup(s);
		}
		long long part[3] = { 0, 0, 0 };
		/* The first three pieces between ':' (none without a ':'). */
		if (memchr(tm, ':', tn)) {
			const char *p = tm, *end = tm + tn;
			for (int k = 0; k < 3; k++) {
				const char *c = memchr(p, ':', (size_t)(end - p));
				fits = fits && php_int(p, (size_t)((c ? c : end) - p), &part[k]);
				if (!c)
					break;
				p = c + 1;
			}
		}
		rc_str tmp = RC_STR_NULL;
		fits = fits && clean_date_ymd(&tmp, v, dn);
		char *date = rc_str_take(&tmp);
		if (!date) {
			free(v);
			rc_str_free(&b);
			return NULL;
		}
		fits = fits && clean_date_ymd(&b, date, strlen(date));
		free(date);
		free(v);
		if (seconds)
			rc_str_addf(&b, " %02lld:%02lld:%02lld", part[0], part[1], part[2]);
		else
			rc_str_addf(&b, " %02lld:%02lld", part[0], part[1]);
	}
	char *out = rc_str_take(&b);
	if (!out)
		return NULL;
	if (!fits) {
		free(out);
		return rc_strdup(s);
	}
	*ok = date_ymd(out) == 10 &&
	      (datetime ? out[10] == ' ' && clock_time(out + 11, seconds) == strlen(out + 11) : out[10] == 0);
	return out;
}

/* A date field's value REDCap accepts (dateFormat=YMD). */
bool redcap_check_date_ymd(const char *s)
{
	bool ok;
	char *v = s ? redcap_normalize_date(REDCAP_V_DATE_YMD, s, false, &ok) : NULL;

	free(v);
	return v && ok;
}

/* A datetime (seconds: datetime_seconds) field's value REDCap accepts. */
bool redcap_check_datetime_ymd(const char *s, bool seconds, bool pad_time)
{
	bool ok;
	char *v = s ? redcap_normalize_date(seconds ? REDCAP_V_DATETIME_SECONDS_YMD : REDCAP_V_DATETIME_YMD, s,
					     pad_time, &ok) :
		      NULL;

	free(v);
	return v && ok;
}

/* REDCap's integer pattern: an optional sign and digits. */
bool redcap_check_integer(const char *s)
{
	if (!s)
		return false;
	if (*s == '-' || *s == '+')
		s++;
	if (!*s)
		return false;
	for (; *s; s++)
		if (!dig(*s))
			return false;
	return true;
}

/* [-+]?[0-9]*<sep>?[0-9]+([eE][-+]?[0-9]+)? */
static bool number_sep(const char *s, char sep)
{
	if (*s == '-' || *s == '+')
		s++;
	const char *a = s;
	while (dig(*s))
		s++;
	size_t before = (size_t)(s - a);
	if (*s == sep) {
		s++;
		const char *b = s;
		while (dig(*s))
			s++;
		if (s == b)
			return false;
	} else if (before == 0) {
		return false;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		if (!dig(*s))
			return false;
		while (dig(*s))
			s++;
	}
	return *s == 0;
}

/* REDCap's number pattern (no trailing '.', exponent allowed). */
bool redcap_check_number(const char *s)
{
	return s && number_sep(s, '.');
}

/* -?digits<sep>digits{n}: no '+' (REDCap's install_data.sql, redcap_validation_types:
 * number_1dp regex_php '/^-?\d+\.\d$/', and the same for 2dp..4dp and the comma variants). */
static bool number_dp(const char *s, char sep, unsigned n)
{
	if (*s == '-')
		s++;
	if (!dig(*s))
		return false;
	while (dig(*s))
		s++;
	if (*s++ != sep)
		return false;
	for (unsigned i = 0; i < n; i++)
		if (!dig(*s++))
			return false;
	return *s == 0;
}

static bool email_local_char(unsigned char c)
{
	return c >= 0x80 || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || dig((char)c) ||
	       strchr("!#$%&'*+-/=?^_`{|}~.", c);
}

static bool email_domain_char(unsigned char c)
{
	return c >= 0x80 || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || dig((char)c) || c == '-' ||
	       c == '.';
}

/*
 * REDCap's email pattern (install_data.sql, "email"), read as: not starting
 * with '.', no ".." anywhere, one '@', a local part of letters, digits and
 * !#$%&'*+-/=?^_`{|}~. , a domain not starting with '.', of letters, digits,
 * '-' and '.', ending in '.' and a 2..63-letter label. Non-ASCII letters
 * (the pattern's Unicode ranges) are taken as any non-ASCII UTF-8.
 */
bool redcap_check_email(const char *s)
{
	if (!s || !*s || *s == '.' || strstr(s, ".."))
		return false;
	const char *at = strchr(s, '@');
	if (!at || at == s || strchr(at + 1, '@'))
		return false;
	for (const char *p = s; p < at; p++)
		if (!email_local_char((unsigned char)*p))
			return false;
	const char *dom = at + 1;
	if (!*dom || *dom == '.')
		return false;
	for (const char *p = dom; *p; p++)
		if (!email_domain_char((unsigned char)*p))
			return false;
	const char *dot = strrchr(dom, '.');
	if (!dot || dot == dom)
		return false;
	size_t letters = 0;
	for (const char *p = dot + 1; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (!(c >= 0x80 || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
			return false;
		if ((c & 0xc0) != 0x80)
			letters++;
	}
	return letters >= 2 && letters <= 63;
}

/* Static ERE of a regex-checked type (REDCap's pattern, in POSIX), or NULL. */
const char *rc_vtype_regex(redcap_vtype t, int *flags)
{
	*flags = REG_EXTENDED | REG_NOSUB;
	switch (t) {
	case REDCAP_V_PHONE:
		return "^\\(?([2-9]0[1-9]|[2-9]1[02-9]|[2-9][2-9][0-9]|800|811)\\)?[[:space:]]*([.-][[:space:]]*)?"
		       "([2-9]1[02-9]|[2-9][02-9]1|[2-9][02-9]{2})[[:space:]]*([.-][[:space:]]*)?[0-9]{4}"
		       "([[:space:]]*(#|x\\.?|ext\\.?|extension)[[:space:]]*[0-9]+)?$";
	case REDCAP_V_PHONE_AUSTRALIA:
		return "^(\\(0[2-8]\\)|0[2-8])[[:space:]]*[0-9]{4}[[:space:]]*[0-9]{4}$";
	case REDCAP_V_PHONE_UK:
		return "^((((\\+44|0044)[[:space:]]?[0-9]{4}|\\(?0[0-9]{4}\\)?)[[:space:]]?[0-9]{3}[[:space:]]?[0-9]{3})|"
		       "(((\\+44|0044)[[:space:]]?[0-9]{3}|\\(?0[0-9]{3}\\)?)[[:space:]]?[0-9]{3}[[:space:]]?[0-9]{4})|"
		       "(((\\+44|0044)[[:space:]]?[0-9]{2}|\\(?0[0-9]{2}\\)?)[[:space:]]?[0-9]{4}[[:space:]]?[0-9]{4}))"
		       "([[:space:]]?#([0-9]{4}|[0-9]{3}))?$";
	case REDCAP_V_PHONE_FRANCE:
		return "^((\\+|00)(33|262|508|590|594|596|687)[[:space:].-]{0,3}(\\(0\\)[[:space:].-]{0,3})?|0)[1-9]"
		       "(([[:space:].-]?[0-9]{2}){4}|[0-9]{2}([[:space:].-]?[0-9]{3}){2})$";
	case REDCAP_V_ZIPCODE:
		return "^[0-9]{5}(-[0-9]{4})?$";
	case REDCAP_V_POSTALCODE_AUSTRALIA:
		return "^[0-9]{4}$";
	case REDCAP_V_POSTALCODE_CANADA:
		*flags |= REG_ICASE;
		return "^[ABCEGHJKLMNPRSTVXY][0-9][A-Z][[:space:]]*[0-9][A-Z][0-9]$";
	case REDCAP_V_POSTALCODE_FRENCH:
		return "^((0?[1-9])|([1-8][0-9])|(9[0-8]))[0-9]{3}$";
	case REDCAP_V_POSTALCODE_GERMANY:
		return "^(0[1-9]|[1-9][0-9])[0-9]{3}$";
	case REDCAP_V_POSTALCODE_UK:
		return "^(([A-Z]{1,2}[0-9]{1,2})|([A-Z]{1,2}[0-9][A-Z])) [0-9][ABDEFGHJLNPQRSTUVWXYZ]{2}$";
	case REDCAP_V_ALPHA_ONLY:
		*flags |= REG_ICASE;
		return "^[a-z]+$";
	case REDCAP_V_MRN_10D:
		return "^[0-9]{10}$";
	case REDCAP_V_MRN_GENERIC:
		*flags |= REG_ICASE;
		return "^[a-z0-9_-]+$";
	case REDCAP_V_VMRN:
		return "^[0-9]{4,9}$";
	case REDCAP_V_SSN:
		return "^[0-9]{3}-[0-9]{2}-[0-9]{4}$";
	default:
		return NULL;
	}
}

/* Check s against t; rx is the compiled regex for t when the caller has
 * it (NULL: compiled here). */
static bool check_vtype(redcap_vtype t, unsigned decimals, const char *s, const regex_t *rx)
{
	switch (t) {
	case REDCAP_V_NONE:
	case REDCAP_V_OTHER:
		return true;
	case REDCAP_V_DATE_YMD:
	case REDCAP_V_DATE_MDY:
	case REDCAP_V_DATE_DMY:
		/* Imported as Y-M-D whatever the display format (dateFormat=YMD). */
		return redcap_check_date_ymd(s);
	case REDCAP_V_DATETIME_YMD:
	case REDCAP_V_DATETIME_MDY:
	case REDCAP_V_DATETIME_DMY:
		return redcap_check_datetime_ymd(s, false, false);
	case REDCAP_V_DATETIME_SECONDS_YMD:
	case REDCAP_V_DATETIME_SECONDS_MDY:
	case REDCAP_V_DATETIME_SECONDS_DMY:
		/* Without seconds REDCap takes :00 (see redcap_normalize_date). */
		return redcap_check_datetime_ymd(s, true, false);
	case REDCAP_V_TIME: {
		size_t n = clock_time(s, false);
		return n && s[n] == 0;
	}
	case REDCAP_V_TIME_HH_MM_SS: {
		size_t n = clock_time(s, true);
		return n && s[n] == 0;
	}
	case REDCAP_V_TIME_MM_SS:
		return s[0] >= '0' && s[0] <= '5' && dig(s[1]) && s[2] == ':' && s[3] >= '0' && s[3] <= '5' &&
		       dig(s[4]) && s[5] == 0;
	case REDCAP_V_INTEGER:
		return redcap_check_integer(s);
	case REDCAP_V_NUMBER:
		return number_sep(s, '.');
	case REDCAP_V_NUMBER_DP:
		return number_dp(s, '.', decimals);
	case REDCAP_V_NUMBER_COMMA:
		return number_sep(s, ',');
	case REDCAP_V_NUMBER_DP_COMMA:
		return number_dp(s, ',', decimals);
	case REDCAP_V_EMAIL:
		return redcap_check_email(s);
	default:
		break;
	}
	int flags;
	const char *re = rc_vtype_regex(t, &flags);
	if (!re)
		return true;
	if (rx)
		return regexec(rx, s, 0, NULL, 0) == 0;
	regex_t local;
	if (regcomp(&local, re, flags) != 0)
		return true;  /* cannot happen with the fixed patterns; REDCap checks anyway */
	bool ok = regexec(&local, s, 0, NULL, 0) == 0;
	regfree(&local);
	return ok;
}

/* Check s as type t, compiling the pattern on the spot when it needs one. */
bool redcap_check_vtype(redcap_vtype t, unsigned decimals, const char *s)
{
	return s && check_vtype(t, decimals, s, NULL);
}

/* ------------------------------------------------------------------------
 * Ranges.
 */

static bool is_date_type(redcap_vtype t)
{
	return t >= REDCAP_V_DATE_YMD && t <= REDCAP_V_DATETIME_SECONDS_DMY;
}

static bool is_time_type(redcap_vtype t)
{
	return t == REDCAP_V_TIME || t == REDCAP_V_TIME_HH_MM_SS || t == REDCAP_V_TIME_MM_SS;
}

static bool is_number_type(redcap_vtype t)
{
	return t == REDCAP_V_INTEGER || t == REDCAP_V_NUMBER || t == REDCAP_V_NUMBER_DP ||
	       t == REDCAP_V_NUMBER_COMMA || t == REDCAP_V_NUMBER_DP_COMMA;
}

/* A value in comparable form: numbers as doubles; dates, datetimes and
 * times as canonical strings (separator '-', 'T' as ' ', hours padded). */
typedef struct cmpval {
	bool is_num;
	double num;
	char text[32];
} cmpval;

static bool to_cmp(redcap_vtype t, const char *s, cmpval *out)
{
	*out = (cmpval){ 0 };
	if (is_number_type(t)) {
		char buf[128];
		size_t n = strlen(s);
		if (n == 0 || n >= sizeof(buf))
			return false;
		for (size_t i = 0; i <= n; i++)
			buf[i] = s[i] == ',' ? '.' : s[i];
		if (!number_sep(buf, '.'))
			return false;
		out->is_num = true;
		out->num = strtod(buf, NULL);
		return isfinite(out->num);
	}
	size_t n = strlen(s);
	if (n >= sizeof(out->text))
		return false;
	if (is_date_type(t)) {
		if (date_ymd(s) != 10)
			return false;
		memcpy(out->text, s, 10);
		out->text[4] = out->text[7] = '-';
		if (s[10] == 0)
			return true;      /* a date bound for a datetime field: compare by prefix */
		if (s[10] != ' ' && s[10] != 'T')
			return false;
		const char *tm = s + 11, *c1 = strchr(tm, ':');
		size_t k = clock_time(tm, c1 && strchr(c1 + 1, ':'));
		if (!k || tm[k])
			return false;
		out->text[10] = ' ';
		size_t o = 11;
		if (tm[1] == ':')
			out->text[o++] = '0';
		memcpy(out->text + o, tm, k + 1);
		return true;
	}
	if (is_time_type(t)) {
		size_t o = 0;
		if (!check_vtype(t, 0, s, NULL))
			return false;
		if (t != REDCAP_V_TIME_MM_SS && s[0] && s[1] == ':')
			out->text[o++] = '0';
		memcpy(out->text + o, s, n + 1);
		return true;
	}
	return false;
}

static int cmp(const cmpval *a, const cmpval *b)
{
	if (a->is_num)
		return a->num < b->num ? -1 : a->num > b->num;
	/* A bare date bound against a datetime value compares the date part. */
	size_t n = strlen(a->text) < strlen(b->text) ? strlen(a->text) : strlen(b->text);
	int c = strncmp(a->text, b->text, n);
	return c;
}

/* ------------------------------------------------------------------------
 * One value.
 */

typedef struct verdict {
	char *error;      /* REDCap's message, malloc'd */
	char *warning;    /* soft finding, malloc'd */
	char *value;      /* dates: the value as REDCap saves and quotes it, malloc'd */
	bool oom;         /* a message could not be allocated */
} verdict;

#define SET(slot, expr)                 \
	do {                            \
		(slot) = (expr);        \
		if (!(slot))            \
			out->oom = true; \
	} while (0)

/* A formatted message, malloc'd; NULL on ENOMEM. */
__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...)
{
	rc_str s = RC_STR_NULL;
	va_list ap;

	va_start(ap, f);
	rc_str_vaddf(&s, f, ap);
	va_end(ap);
	return rc_str_take(&s);
}

/*
 * A slider value, as REDCap 15.7.6 checks it on import (Classes/Records.php,
 * saveData, "Set slider fields to have a hard check for min/max range"): an
 * integer ("<field> " + data_import_tool_299 "must be an integer"), within
 * the field's min and max (text validation min/max; 0 and 100 when blank),
 * always a hard check ("<field> should not be less than the field minimum
 * (0)", data_import_tool_223/225), whatever @FORCE-MINMAX says. The integer
 * test is the integer validation type's ([-+]?digits); REDCap's isinteger()
 * is not public in the sources used here (UNVERIFIED for signed values).
 */
static void check_slider(const redcap_field *f, const char *v, verdict *out)
{
	const char *min = *f->min ? f->min : "0", *max = *f->max ? f->max : "100";
	cmpval cv, lim;

	if (!redcap_check_integer(v)) {
		SET(out->error, fmt("%s must be an integer", f->name));
		return;
	}
	if (!to_cmp(REDCAP_V_INTEGER, v, &cv))
		return;
	if (to_cmp(REDCAP_V_NUMBER, min, &lim) && cmp(&cv, &lim) < 0)
		SET(out->error, fmt("%s should not be less than the field minimum (%s)", f->name, min));
	else if (to_cmp(REDCAP_V_NUMBER, max, &lim) && cmp(&cv, &lim) > 0)
		SET(out->error, fmt("%s should not be greater than the field maximum (%s)", f->name, max));
}

/*
 * Check value v (trimmed, non-empty) of column col (field f, checkbox
 * choice ch) against the dictionary. Fills out->error or out->warning, and
 * out->value for dates. pad_time: see redcap_validate_opts.
 */
static void check_value(const redcap_dict *d, const redcap_field *f, const redcap_choice *ch, const char *col,
			const char *v, bool pad_time, verdict *out)
{
	*out = (verdict){ 0 };

	if (ch) {
		if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
			SET(out->error,
			    fmt("%s is a checkbox field and thus can only have a value of '1' (checked) or '0' (unchecked).",
				col));
		return;
	}
	switch (f->type) {
	case REDCAP_FIELD_RADIO:
	case REDCAP_FIELD_DROPDOWN:
	case REDCAP_FIELD_YESNO:
	case REDCAP_FIELD_TRUEFALSE:
		for (size_t i = 0; i < f->n_choices; i++)
			if (strcmp(f->choices[i].code, v) == 0)
				return;
		SET(out->error, fmt("The value is not a valid category for %s", f->name));
		return;
	case REDCAP_FIELD_SLIDER:
		check_slider(f, v, out);
		return;
	case REDCAP_FIELD_TEXT:
		break;
	default:
		return;  /* notes: free text; others are not checked */
	}

	if (is_date_type(f->vtype)) {
		/* Checked (and quoted in the error line) as REDCap turns it first. */
		bool ok;
		SET(out->value, redcap_normalize_date(f->vtype, v, pad_time, &ok));
		if (!out->value)
			return;
		if (!ok) {
			bool date = f->vtype >= REDCAP_V_DATE_YMD && f->vtype <= REDCAP_V_DATE_DMY;
			SET(out->error, rc_strdup(date ? REDCAP_MSG_DATE : REDCAP_MSG_DATETIME));
			return;
		}
		v = out->value;
	} else if (!check_vtype(f->vtype, f->decimals, v, rc_dict_regex(d, f->vtype))) {
		SET(out->error, rc_strdup(REDCAP_MSG_VALIDATION));
		return;
	}
	/* Range: REDCap refuses out-of-range values only with @FORCE-MINMAX;
	 * otherwise it saves them with a warning the API does not return. */
	cmpval cv, lim;
	if ((*f->min || *f->max) && to_cmp(f->vtype, v, &cv)) {
		if (*f->min && to_cmp(f->vtype, f->min, &lim) && cmp(&cv, &lim) < 0) {
			if (f->force_minmax)
				SET(out->error, fmt("%s should not be less than the field minimum (%s)", f->name, f->min));
			else
				SET(out->warning, fmt("%s is less than the field minimum (%s)", f->name, f->min));
		} else if (*f->max && to_cmp(f->vtype, f->max, &lim) && cmp(&cv, &lim) > 0) {
			if (f->force_minmax)
				SET(out->error, fmt("%s should not be greater than the field maximum (%s)", f->name, f->max));
			else
				SET(out->warning, fmt("%s is greater than the field maximum (%s)", f->name, f->max));
		}
	}
}

/* ------------------------------------------------------------------------
 * Rows.
 */

typedef struct rowctx {
	const redcap_dict *d;
	const redcap_validate_opts *o;
	redcap_errors *errs;
	size_t row;
	const char *record;   /* trimmed record name ("" if none) */
	int rc;               /* first error: -ENOMEM */
	bool bad;
	bool thrown;          /* a whole-request error was reported */
} rowctx;

static void wipe_free(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* Record an error; takes msg (NULL: ENOMEM). Messages may quote data. */
static void report(rowctx *c, redcap_error_kind kind, const char *field, const char *value, char *msg)
{
	if (!msg) {
		c->rc = -ENOMEM;
		return;
	}
	c->bad = true;
	int rc = redcap_errors_add(c->errs, kind, c->row, c->record, field, value, msg);
	if (rc)
		c->rc = rc;
	wipe_free(msg);
}

/* Record a warning if the caller collects them; takes msg. */
static void warn(rowctx *c, const char *field, const char *value, char *msg)
{
	if (!msg) {
		c->rc = -ENOMEM;
		return;
	}
	if (c->o && c->o->warnings) {
		int rc = redcap_errors_add(c->o->warnings, REDCAP_ERR_VALUE, c->row, c->record, field, value, msg);
		if (rc)
			c->rc = rc;
	}
	wipe_free(msg);
}

/* The trimmed text of a JSON scalar (malloc'd); *bad for other types or a
 * string with a NUL byte. */
static char *value_text(const json_t *v, bool *bad)
{
	char *s = rc_json_text(v, false, bad);
	if (!s)
		return NULL;
	if (json_is_string(v) && strlen(s) != json_string_length(v)) {
		*bad = true;
		free(s);
		return NULL;
	}
	size_t st, n;
	rc_trim(s, strlen(s), &st, &n);
	memmove(s, s + st, n);
	s[n] = 0;
	return s;
}

static bool is_form_timestamp(const redcap_dict *d, const char *col)
{
	size_t n = strlen(col);
	if (n <= 10 || strcmp(col + n - 10, "_timestamp") != 0)
		return false;
	char *form = rc_strndup(col, n - 10);
	bool yes = form && redcap_dict_form(d, form);
	free(form);
	return yes;
}

/* The trimmed text of row[key], NULL if absent; *bad on a bad type. */
static char *member_text(const json_t *row, const char *key, bool *present, bool *bad)
{
	const json_t *v = json_object_get(row, key);
	*present = v != NULL;
	*bad = false;
	if (!v)
		return NULL;
	return value_text(v, bad);
}

static bool positive_int(const char *s)
{
	if (!*s)
		return false;
	bool nonzero = false;
	for (; *s; s++) {
		if (!dig(*s))
			return false;
		if (*s != '0')
			nonzero = true;
	}
	return nonzero;
}

/* A positive integer above 32767 (leading zeros allowed). */
static bool instance_above_max(const char *s)
{
	while (*s == '0')
		s++;
	return strlen(s) > 5 || atoi(s) > 32767;
}

/*
 * REDCap's br2nl(): "<br", optional white space, an optional '/', '>'
 * (any case) becomes a line break -- REDCap 5.2.3 Config/init_functions.php,
 * preg_replace('/\<br(\s*)?\/?\>/i', "\n", $string); the 15.7.6 copy of
 * that file is not public (UNVERIFIED for 15.7.6). malloc'd or NULL.
 */
static char *br2nl(const char *s)
{
	rc_str b = RC_STR_NULL;

	while (*s) {
		if (s[0] == '<' && (s[1] == 'b' || s[1] == 'B') && (s[2] == 'r' || s[2] == 'R')) {
			const char *p = s + 3;
			while (php_space(*p))
				p++;
			if (*p == '/')
				p++;
			if (*p == '>') {
				rc_str_addc(&b, '\n');
				s = p + 1;
				continue;
			}
		}
		rc_str_addc(&b, *s++);
	}
	return rc_str_take(&b);
}

/* PHP's htmlspecialchars($s, ENT_QUOTES) appended to b. */
static void add_html(rc_str *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': rc_str_add(b, "&amp;"); break;
		case '<': rc_str_add(b, "&lt;"); break;
		case '>': rc_str_add(b, "&gt;"); break;
		case '"': rc_str_add(b, "&quot;"); break;
		case '\'': rc_str_add(b, "&#039;"); break;
		default: rc_str_addc(b, *s); break;
		}
	}
}

/*
 * A whole-request error: REDCap throws at the first one, so a row keeps
 * only its first (later ones are not reached). Takes msg.
 */
static void request_error(rowctx *c, const char *field, const char *value, char *msg)
{
	if (c->thrown) {
		wipe_free(msg);
		return;
	}
	if (msg)
		c->thrown = true;
	report(c, REDCAP_ERR_REQUEST, field, value, msg);
}

/*
 * The record name checks of REDCap 15.7.6's flat-row loop
 * (Classes/Records.php, saveData), in its order, up to the event check:
 * blank (data_import_tool_212 + record id field + 213), longer than 100
 * bytes (PHP strlen; 233 + " " + name), a line break once <br> tags are
 * line breaks (384 + " " + the name so turned). The +&#' check (215 +
 * name + 216) comes after the event check: record_chars().
 */
static void record_name(rowctx *c, const char *rid_name, const char *name)
{
	if (!*name) {
		request_error(c, rid_name, "", fmt("The record id field (%s) is missing.", rid_name));
		return;
	}
	if (strlen(name) > 100) {
		request_error(c, rid_name, name,
			      fmt("Record names must be 100 characters or less in length. The following record name is too long and thus cannot be imported: %s",
				  name));
		return;
	}
	char *br = br2nl(name);
	if (!br) {
		c->rc = -ENOMEM;
		return;
	}
	if (strpbrk(br, "\r\n"))
		request_error(c, rid_name, name,
			      fmt("Record names cannot contain BR tags, line breaks, or carriage return characters. The following record name contains a BR tag, line break, or carriage return, and thus cannot be imported: %s",
				  br));
	wipe_free(br);
}

static void record_chars(rowctx *c, const char *rid_name, const char *name)
{
	if (strpbrk(name, "+&#'"))
		request_error(c, rid_name, name,
			      fmt("The record name (%s) cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe.",
				  name));
}

/*
 * REDCap 15.7.6 Classes/Records.php, saveData, "$isRepeatFormReally": an
 * instrument is named and some column of the row is a field of a form
 * that repeats in the row's event, with a value or on that instrument.
 */
static bool repeat_form_really(const redcap_dict *d, const json_t *row, const redcap_event *ev, const char *rid,
			       const char *instr)
{
	const char *col;
	json_t *v;

	if (!*instr)
		return false;
	json_object_foreach((json_t *)row, col, v) {
		if (strcmp(col, rid) == 0 || strcmp(col, "redcap_repeat_instance") == 0 ||
		    strcmp(col, "redcap_repeat_instrument") == 0)
			continue;
		const redcap_choice *ch;
		const redcap_field *f = redcap_dict_column(d, col, &ch);
		if (!f || (f->type == REDCAP_FIELD_CHECKBOX && !ch) || !redcap_dict_form_repeats(d, ev, f->form))
			continue;
		bool bad, blank = true;
		char *t = value_text(v, &bad);
		if (t)
			blank = !*t;
		free(t);
		if (blank && strcmp(d->forms[f->form].name, instr) != 0)
			continue;
		return true;
	}
	return false;
}

/*
 * Validate one row (see validate.h) the way REDCap 15.7.6 imports a flat
 * row (Classes/Records.php, saveData): the whole-request checks in its
 * order (repeat columns on a project without them; the record name; the
 * event name; the instance; a repeating event without an instance column;
 * a classic instance without an instrument; unknown columns; the event;
 * the data access group), then one line per column in the row's order,
 * each with the last message REDCap would give it (a placement error
 * replaces a value error, as REDCap overwrites the column's message).
 * Appends copies to errs (and warnings); borrows d and row. Returns 0,
 * REDCAP_E_INVALID, -ENOMEM, -EINVAL.
 */
int redcap_validate_row(const redcap_dict *d, const json_t *row, size_t row_index,
			const redcap_validate_opts *o, redcap_errors *errs)
{
	if (!d || !json_is_object(row) || !errs || !d->n_fields)
		return -EINVAL;

	const redcap_field *rid = redcap_dict_record_id(d);
	const bool overwrite = o && o->overwrite, pad_time = o && o->pad_time;
	const bool longi = d->n_events > 0, reps = d->repeating == 1;
	rowctx c = { .d = d, .o = o, .errs = errs, .row = row_index, .record = "" };
	bool has_rec, has_ev, has_instr, has_inst, has_dag, bad_rec, bad_ev, bad_instr, bad_inst, bad_dag;
	char *record = member_text(row, rid->name, &has_rec, &bad_rec);
	char *evname = member_text(row, "redcap_event_name", &has_ev, &bad_ev);
	char *instr = member_text(row, "redcap_repeat_instrument", &has_instr, &bad_instr);
	char *inst = member_text(row, "redcap_repeat_instance", &has_inst, &bad_inst);
	char *dag = member_text(row, "redcap_data_access_group", &has_dag, &bad_dag);
	rc_str unknown = RC_STR_NULL, unknown_html = RC_STR_NULL;

	if ((has_rec && !bad_rec && !record) || (has_ev && !bad_ev && !evname) ||
	    (has_instr && !bad_instr && !instr) || (has_inst && !bad_inst && !inst) || (has_dag && !bad_dag && !dag)) {
		c.rc = -ENOMEM;
		goto out;
	}
	if (record)
		c.record = record;
	const char *E = evname ? evname : "", *I = instr ? instr : "", *N = inst ? inst : "";

	/* Before its row loop REDCap refuses repeat columns on a project
	 * without repeating instruments or events ("ERROR: " + 252 + 253). */
	if ((has_instr || has_inst) && d->repeating == 0)
		request_error(&c, has_inst ? "redcap_repeat_instance" : "redcap_repeat_instrument", "",
			      rc_strdup(REDCAP_MSG_REPEAT_NOT_ENABLED));
	if (bad_rec)
		request_error(&c, rid->name, "", rc_strdup("The record name is not a JSON string or number."));
	else
		record_name(&c, rid->name, c.record);
	/* A blank event name (the column is there) on a longitudinal project
	 * (data_import_tool_214). A classic project takes redcap_event_name
	 * and ignores it: saveData never counts it as an unknown field and
	 * uses the first event unless the project is longitudinal. */
	if (bad_ev)
		request_error(&c, "redcap_event_name", "", rc_strdup("The event name is not a JSON string or number."));
	else if (longi && has_ev && !*E)
		request_error(&c, "redcap_event_name", "", rc_strdup("The record event name is missing."));
	record_chars(&c, rid->name, c.record);
	if (bad_instr || bad_inst)
		request_error(&c, bad_instr ? "redcap_repeat_instrument" : "redcap_repeat_instance", "",
			      rc_strdup("The repeat column is not a JSON string or number."));
	/* Not an integer, or below 1 ("0" included): 215 + record + 406 + " " +
	 * value. Its own "0" text (data_import_tool_279) comes after this check
	 * and is never reached for flat imports. */
	if (*N && strcmp(N, "new") != 0 && !positive_int(N))
		request_error(&c, "redcap_repeat_instance", N,
			      fmt("The record name (%s) has an invalid value for 'redcap_repeat_instance'. The value must either be a positive integer or the value 'new'. Value provided: %s",
				  c.record, N));

	/* The row's event: the first one when none is named. */
	const redcap_event *ev = NULL;
	bool bad_event = false;
	if (longi) {
		ev = *E ? redcap_dict_event(d, E) : &d->events[0];
		bad_event = !ev;
	}
	const char *evshown = *E ? E : longi ? d->events[0].unique_name : "";
	/* A repeating event's row without a redcap_repeat_instance column:
	 * 215 + record + 282 + ' "event" ' + 283. */
	if (reps && !has_inst && ev && ev->repeat_whole)
		request_error(&c, "redcap_repeat_instance", "",
			      fmt("The record name (%s) with event \"%s\" cannot be imported. This is because this event is a repeating event, but the field 'redcap_repeat_instance' could not be found in the data import fields.  In order to import data for a repeating event, the field 'redcap_repeat_instance' is required in the imported data set.",
				  c.record, evshown));
	/* A classic project: a numeric instance and no instrument:
	 * 215 + record + 284 + ' "instance" ' + 285. */
	if (!longi && reps && positive_int(N) && !*I)
		request_error(&c, "redcap_repeat_instance", N,
			      fmt("The record name (%s) with redcap_repeat_instance \"%s\" cannot be imported. This is because the field 'redcap_repeat_instrument' could not be found in the data import fields or because it has a blank value.  In order to import data for a repeating instrument, the field 'redcap_repeat_instrument' is required in the imported data set.",
				  c.record, N));

	/* How REDCap places the row (the repeat checks of saveData's
	 * validation loop). */
	const bool rep_event = reps && ev && ev->repeat_whole;
	const redcap_form *rform = *I ? redcap_dict_form(d, I) : NULL;
	const bool rep_form = !rep_event && rform && redcap_dict_form_repeats(d, ev, redcap_dict_form_index(d, rform));

	const char *col;
	json_t *v;
	json_object_foreach((json_t *)row, col, v) {
		if (c.rc)
			break;
		if (strcmp(col, rid->name) == 0 || strcmp(col, "redcap_event_name") == 0 ||
		    strcmp(col, "redcap_data_access_group") == 0)
			continue;
		if (strcmp(col, "redcap_repeat_instrument") == 0) {
			if (!reps || !*I)
				continue;
			/* An instrument on a repeating event's row: "(redcap_event_name=
			 * \"e\") " + column + " " + 255; one that does not repeat here:
			 * column + " " + 259 (PyCap issue #154 shows that line). */
			if (rep_event)
				report(&c, REDCAP_ERR_VALUE, col, I,
				       fmt("(redcap_event_name=\"%s\") %s", evshown, REDCAP_MSG_REPEAT_EVENT_INSTRUMENT));
			else if (!rep_form)
				report(&c, REDCAP_ERR_VALUE, col, I, rc_strdup(REDCAP_MSG_NOT_REPEATING_INSTRUMENT));
			continue;
		}
		if (strcmp(col, "redcap_repeat_instance") == 0) {
			/* (an invalid instance was thrown above: nothing more) */
			if (!reps || !*N || (strcmp(N, "new") != 0 && !positive_int(N)))
				continue;
			char *msg = NULL;
			/* Above 32767: "(" + (longitudinal ? redcap_event_name="e" :
			 * redcap_repeat_instrument="i") + ") " + column + " " + 286. */
			if (strcmp(N, "new") != 0 && instance_above_max(N)) {
				msg = longi ? fmt("(redcap_event_name=\"%s\") %s", evshown, REDCAP_MSG_INSTANCE_RANGE) :
					      fmt("(redcap_repeat_instrument=\"%s\") %s", I, REDCAP_MSG_INSTANCE_RANGE);
				if (!msg) {
					c.rc = -ENOMEM;
					break;
				}
			}
			/* An instance where nothing repeats (not checked with
			 * overwriteBehavior=overwrite); this text replaces the other. */
			if (!overwrite && !rep_event && !repeat_form_really(d, row, ev, rid->name, I)) {
				wipe_free(msg);
				msg = rc_strdup(REDCAP_MSG_NOT_REPEATING_INSTANCE);
			}
			if (msg)
				report(&c, REDCAP_ERR_VALUE, col, N, msg);
			continue;
		}
		const redcap_choice *ch;
		const redcap_field *f = redcap_dict_column(d, col, &ch);
		const bool survey_id = !f && strcmp(col, "redcap_survey_identifier") == 0;
		if (!f && !survey_id && is_form_timestamp(d, col))
			continue;  /* survey timestamps: pseudo-fields REDCap ignores */
		if (!survey_id && (!f || (f->type == REDCAP_FIELD_CHECKBOX && !ch) || f->type == REDCAP_FIELD_DESCRIPTIVE)) {
			if (unknown.len) {
				rc_str_add(&unknown, ", ");
				rc_str_add(&unknown_html, ", ");
			}
			rc_str_add(&unknown, col);
			add_html(&unknown_html, col);
			continue;
		}
		bool bad;
		char *val = value_text(v, &bad);
		if (bad) {
			report(&c, REDCAP_ERR_VALUE, col, "", rc_strdup("The value is not a JSON string or number."));
			continue;
		}
		if (!val) {
			c.rc = -ENOMEM;
			break;
		}
		if (!*val) {
			free(val);
			continue;  /* blank is always fine */
		}
		if (survey_id) {
			/* redcap_survey_identifier is no field: REDCap checks it like
			 * one of form '' -- only the repeating-instrument check can
			 * hit it. */
			if (reps && *I && *N)
				report(&c, REDCAP_ERR_VALUE, col, val,
				       fmt("This field ('%s') does not exist on the Repeating Instrument named '%s'. You are not allowed to import data for this field into this Repeating Instrument.",
					   col, I));
			wipe_free(val);
			continue;
		}
		if (f->type == REDCAP_FIELD_CALC || f->pseudo_calc) {
			/* Skipped with a warning, before any other check. */
			warn(&c, col, val, rc_strdup(REDCAP_MSG_CALC_IGNORED));
			wipe_free(val);
			continue;
		}
		/* A checkbox "0" is what REDCap already holds for a box never
		 * checked: the column is left as it is and not checked (saveData
		 * sets its status to 'keep'); only the event check below sees it. */
		const bool box_zero = ch && strcmp(val, "0") == 0;
		const bool file = f->type == REDCAP_FIELD_FILE;
		verdict vd = { 0 };
		char *error = NULL;
		if (file)
			warn(&c, col, val, rc_strdup("File Upload fields cannot be imported with records; the value is ignored."));
		else if (!box_zero)
			check_value(d, f, ch, col, val, pad_time, &vd);
		if (vd.oom) {
			c.rc = -ENOMEM;
			free(vd.error);
			free(vd.warning);
			free(vd.value);
			wipe_free(val);
			break;
		}
		error = vd.error;
		const char *form = d->forms[f->form].name;
		const bool checked = !file && !box_zero;
		if (checked && reps && *I && *N && strcmp(I, form) != 0) {
			/* 162 + " ('col') " + 260 + " 'instrument'. " + 261 */
			free(error);
			error = fmt("This field ('%s') does not exist on the Repeating Instrument named '%s'. You are not allowed to import data for this field into this Repeating Instrument.",
				    col, I);
		} else if (checked && reps && (!*I || !*N) && redcap_dict_form_repeats(d, ev, f->form)) {
			/* 162 + " ('col') " + 262 + " 'form'. " + 263, quoting the column
			 * as imported and naming the form by $Proj->metadata[column]:
			 * a checkbox column is no metadata key, its form comes out ''. */
			free(error);
			error = fmt("This field ('%s') exists on a Repeating Instrument named '%s'. However, the fields 'redcap_repeat_instance' and/or 'redcap_repeat_instrument' for this row of data have no value, which are both required for importing data into a Repeating Instrument.  You are not allowed to import data for this field into a non-repeating instrument.",
				    col, ch ? "" : form);
		}
		/* The form/event check runs on every non-blank column, a checkbox
		 * "0" too, except that one with overwriteBehavior=overwrite (a box
		 * never checked: REDCap skips it). The event is named as
		 * redcap_event_label() does ('Screening (Arm 1: HeiSIS Screening)',
		 * PyCap issue #142). */
		if (ev && !(overwrite && box_zero) && !redcap_dict_form_in_event(d, ev, f->form)) {
			char *label = redcap_event_label(d, ev);
			free(error);
			error = label ? fmt("This field ('%s') exists on an instrument that is not designated for the event named '%s'. You are not allowed to import data for this field into this event.",
					    col, label) :
					NULL;
			if (!error)
				c.rc = -ENOMEM;
			free(label);
		}
		const char *shown = vd.value ? vd.value : val;
		if (error) {
			report(&c, REDCAP_ERR_VALUE, col, shown, error);
			free(vd.warning);
		} else if (vd.warning) {
			warn(&c, col, shown, vd.warning);
		}
		wipe_free(vd.value);
		wipe_free(val);
	}
	if (unknown.err || unknown_html.err) {
		c.rc = -ENOMEM;
		goto out;
	}
	if (c.rc)
		goto out;
	/* After the row loop: unknown columns (218 + " " + the list,
	 * htmlspecialchars'd), unknown events (219, the same), data access
	 * groups (220 + " " + the names). */
	if (unknown.len)
		request_error(&c, unknown.s, "",
			      fmt("The following fields were not found in the project as real data fields: %s",
				  unknown_html.s));
	if (bad_event) {
		rc_str b = RC_STR_NULL;
		add_html(&b, E);
		char *t = rc_str_take(&b);
		request_error(&c, "redcap_event_name", E,
			      t ? fmt("The following values of redcap_event_name are invalid: %s", t) : NULL);
		free(t);
	}
	/* Any name is refused: the dictionary holds no data access groups, as
	 * on a project without them (see validate.h). */
	if (dag && *dag)
		request_error(&c, "redcap_data_access_group", dag,
			      fmt("The following Data Access Group are invalid for the redcap_data_access_group field: %s",
				  dag));
	else if (bad_dag)
		request_error(&c, "redcap_data_access_group", "",
			      rc_strdup("The data access group is not a JSON string or number."));
out:
	rc_str_free(&unknown);
	rc_str_free(&unknown_html);
	wipe_free(record);
	wipe_free(evname);
	wipe_free(instr);
	wipe_free(inst);
	wipe_free(dag);
	if (c.rc)
		return c.rc;
	return c.bad ? REDCAP_E_INVALID : 0;
}

/* Validate each element of rows; returns how many are bad (see validate.h). */
long redcap_validate_rows(const redcap_dict *d, const json_t *rows, const redcap_validate_opts *o,
			  redcap_errors *errs, bool *bad)
{
	size_t i;
	json_t *row;
	long nbad = 0;

	if (!d || !json_is_array(rows) || !errs)
		return -EINVAL;
	json_array_foreach(rows, i, row) {
		int rc;
		if (!json_is_object(row))
			rc = redcap_errors_add(errs, REDCAP_ERR_REQUEST, i, "", "", "", "The row is not a JSON object.") ?
				     -ENOMEM :
				     REDCAP_E_INVALID;
		else
			rc = redcap_validate_row(d, row, i, o, errs);
		if (rc < 0)
			return rc;
		if (bad)
			bad[i] = rc == REDCAP_E_INVALID;
		if (rc == REDCAP_E_INVALID)
			nbad++;
	}
	return nbad;
}

/*
 * One value of one column, no row context. *message (malloc'd, the
 * caller's) is set only with REDCAP_E_INVALID.
 */
int redcap_validate_value(const redcap_dict *d, const char *column, const char *value, char **message)
{
	const redcap_choice *ch;

	if (message)
		*message = NULL;
	if (!d || !column || !message)
		return -EINVAL;
	const redcap_field *f = redcap_dict_column(d, column, &ch);
	if (!f || (f->type == REDCAP_FIELD_CHECKBOX && !ch) || f->type == REDCAP_FIELD_DESCRIPTIVE)
		return REDCAP_E_UNKNOWN_FIELD;
	size_t st, n;
	rc_trim(value ? value : "", value ? strlen(value) : 0, &st, &n);
	if (n == 0 || f->type == REDCAP_FIELD_CALC || f->pseudo_calc || f->type == REDCAP_FIELD_FILE)
		return 0;
	char *v = rc_strndup(value + st, n);
	if (!v)
		return -ENOMEM;
	verdict vd;
	check_value(d, f, ch, column, v, false, &vd);
	wipe_free(v);
	free(vd.warning);
	free(vd.value);
	if (vd.oom) {
		free(vd.error);
		return -ENOMEM;
	}
	if (vd.error) {
		*message = vd.error;
		return REDCAP_E_INVALID;
	}
	return 0;
}
