/*
 * redcap/validate.c — validate import rows against the data dictionary
 * with REDCap's messages.
 *
 * Sources (see validate.h): REDCap 15.7.6 LanguageUpdater/English.ini for
 * the texts (data_import_tool_162, 165, 166, 190, 193, 211..233, 252, 253,
 * 260..263, 384, 406; config_functions_77), its install_data.sql
 * redcap_validation_types table for the formats (the regular expressions
 * below are written from those, in POSIX ERE), and API/record/import.php of
 * REDCap 5.2.3 for the order of the checks: format first, then choices,
 * then range (hard with @FORCE-MINMAX, else a warning), then checkboxes.
 */
#include "redcap/validate.h"
#include "redcap/internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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

/* The whole string is a date_ymd value. */
bool redcap_check_date_ymd(const char *s)
{
	return s && date_ymd(s) == 10 && s[10] == 0;
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

/* A date, ' ' or 'T', and H:MM (or H:MM:SS): datetime_ymd / datetime_seconds_ymd. */
bool redcap_check_datetime_ymd(const char *s, bool seconds)
{
	if (!s || date_ymd(s) != 10 || (s[10] != ' ' && s[10] != 'T'))
		return false;
	size_t n = clock_time(s + 11, seconds);
	return n && s[11 + n] == 0;
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
		return redcap_check_datetime_ymd(s, false);
	case REDCAP_V_DATETIME_SECONDS_YMD:
	case REDCAP_V_DATETIME_SECONDS_MDY:
	case REDCAP_V_DATETIME_SECONDS_DMY:
		/* Without seconds REDCap takes :00 (with a warning the API does not
		 * return): REDCap 15.7.6 Classes/Records.php, saveData, pads the time
		 * before it validates (English.ini data_import_tool_293). */
		return redcap_check_datetime_ymd(s, true) || redcap_check_datetime_ymd(s, false);
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
 * choice ch) against the dictionary. Fills out->error or out->warning.
 */
static void check_value(const redcap_dict *d, const redcap_field *f, const redcap_choice *ch, const char *col,
			const char *v, verdict *out)
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

	if (!check_vtype(f->vtype, f->decimals, v, rc_dict_regex(d, f->vtype))) {
		if (f->vtype >= REDCAP_V_DATE_YMD && f->vtype <= REDCAP_V_DATE_DMY)
			SET(out->error, rc_strdup(REDCAP_MSG_DATE));
		else if (is_date_type(f->vtype))
			SET(out->error, rc_strdup(REDCAP_MSG_DATETIME));
		else
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

/* Record name rules (data_import_tool_211, 215/216, 233, 384). */
static void check_record_name(rowctx *c, const char *rid_name, const char *name)
{
	if (!*name) {
		report(c, REDCAP_ERR_REQUEST, rid_name, name, rc_strdup(REDCAP_MSG_RECORD_EMPTY));
		return;
	}
	if (strpbrk(name, "+&#'")) {
		report(c, REDCAP_ERR_REQUEST, rid_name, name,
		       fmt("The record name (%s) cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe.",
			   name));
		return;
	}
	if (strpbrk(name, "\r\n") || strcasestr(name, "<br")) {
		report(c, REDCAP_ERR_REQUEST, rid_name, name,
		       fmt("Record names cannot contain BR tags, line breaks, or carriage return characters. The following record name contains a BR tag, line break, or carriage return, and thus cannot be imported: %s",
			   name));
		return;
	}
	if (rc_utf8_len(name, strlen(name)) > 100)
		report(c, REDCAP_ERR_REQUEST, rid_name, name,
		       fmt("Record names must be 100 characters or less in length. The following record name is too long and thus cannot be imported: %s",
			   name));
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

/*
 * Validate one row (see validate.h): the record name, the event, the
 * repeat columns, then every column in the row's order; unknown columns
 * end in one whole-request error. Appends copies to errs (and warnings);
 * borrows d and row. Returns 0, REDCAP_E_INVALID, -ENOMEM, -EINVAL.
 */
int redcap_validate_row(const redcap_dict *d, const json_t *row, size_t row_index,
			const redcap_validate_opts *o, redcap_errors *errs)
{
	if (!d || !json_is_object(row) || !errs || !d->n_fields)
		return -EINVAL;

	const redcap_field *rid = redcap_dict_record_id(d);
	rowctx c = { .d = d, .o = o, .errs = errs, .row = row_index, .record = "" };
	bool present, badtype;
	char *record = member_text(row, rid->name, &present, &badtype);
	char *evname = NULL, *instr = NULL, *inst = NULL;
	rc_str unknown = RC_STR_NULL;

	/* Record name. */
	if (!present) {
		report(&c, REDCAP_ERR_REQUEST, rid->name, "", fmt("The record id field (%s) is missing.", rid->name));
	} else if (badtype) {
		report(&c, REDCAP_ERR_REQUEST, rid->name, "", rc_strdup("The record name is not a JSON string or number."));
	} else if (!record) {
		c.rc = -ENOMEM;
	} else {
		c.record = record;
		check_record_name(&c, rid->name, record);
	}

	/* Event. */
	const redcap_event *ev = NULL;
	evname = member_text(row, "redcap_event_name", &present, &badtype);
	if (badtype)
		report(&c, REDCAP_ERR_REQUEST, "redcap_event_name", "", rc_strdup("The event name is not a JSON string or number."));
	/* A classic project takes redcap_event_name and ignores it: REDCap 15.7.6
	 * Classes/Records.php (saveData) never counts it as an unknown field and
	 * uses the first event unless the project is longitudinal. */
	if (d->n_events) {
		if (evname && *evname) {
			ev = redcap_dict_event(d, evname);
			if (!ev)
				report(&c, REDCAP_ERR_REQUEST, "redcap_event_name", evname,
				       fmt("The following values of redcap_event_name are invalid: %s", evname));
		} else {
			ev = &d->events[0];  /* REDCap uses the first event */
		}
	}

	/* Repeat columns. */
	bool has_instr, has_inst, bad1, bad2;
	instr = member_text(row, "redcap_repeat_instrument", &has_instr, &bad1);
	inst = member_text(row, "redcap_repeat_instance", &has_inst, &bad2);
	if (bad1 || bad2)
		report(&c, REDCAP_ERR_REQUEST, bad1 ? "redcap_repeat_instrument" : "redcap_repeat_instance", "",
		       rc_strdup("The repeat column is not a JSON string or number."));
	bool repeat_row = (instr && *instr) || (inst && *inst);
	bool repeat_bad = false;  /* the row cannot be placed: its values are not checked */
	const redcap_form *rform = NULL;
	if ((has_instr || has_inst) && d->repeating == 0) {
		report(&c, REDCAP_ERR_REQUEST, has_inst ? "redcap_repeat_instance" : "redcap_repeat_instrument", "",
		       rc_strdup(REDCAP_MSG_REPEAT_NOT_ENABLED));
	} else {
		if (inst && *inst && strcmp(inst, "new") != 0) {
			/* REDCap 15.7.6 Classes/Records.php (saveData, flat rows): a value
			 * that is not an integer or is below 1 -- "0" included -- throws
			 * 215 + record + 406 + " " + value before anything else. Its own
			 * "0" text (data_import_tool_279) comes after that check and is
			 * never reached for flat imports. */
			if (!positive_int(inst))
				report(&c, REDCAP_ERR_REQUEST, "redcap_repeat_instance", inst,
				       fmt("The record name (%s) has an invalid value for 'redcap_repeat_instance'. The value must either be a positive integer or the value 'new'. Value provided: %s",
					   c.record, inst));
			else if (strlen(inst) > 5 || atoi(inst) > 32767)
				/* data_import_tool_215 + 284 + 286; the exact join is not verified. */
				report(&c, REDCAP_ERR_REQUEST, "redcap_repeat_instance", inst,
				       fmt("The record name (%s) with redcap_repeat_instance %s must have a numeric value between '1' and '32767' for any Repeating Event or Repeating Instrument.  Please add a valid numeric value to redcap_repeat_instance in the data import file and try again.",
					   c.record, inst));
		}
		/* Per-value lines, as in a real answer quoted in PyCap issue #154:
		 * "redcap_repeat_instrument " + data_import_tool_259 and
		 * "redcap_repeat_instance " + data_import_tool_281. */
		if (instr && *instr) {
			rform = redcap_dict_form(d, instr);
			size_t fi = rform ? redcap_dict_form_index(d, rform) : SIZE_MAX;
			if (ev && ev->repeat_whole) {
				/* data_import_tool_255, worded like its neighbours. */
				report(&c, REDCAP_ERR_VALUE, "redcap_repeat_instrument", instr,
				       rc_strdup(REDCAP_MSG_REPEAT_EVENT_INSTRUMENT));
				repeat_bad = true;
			} else if (d->repeating == 1 && (!rform || !redcap_dict_form_repeats(d, ev, fi))) {
				report(&c, REDCAP_ERR_VALUE, "redcap_repeat_instrument", instr,
				       rc_strdup(REDCAP_MSG_NOT_REPEATING_INSTRUMENT));
				if (inst && *inst)
					report(&c, REDCAP_ERR_VALUE, "redcap_repeat_instance", inst,
					       rc_strdup(REDCAP_MSG_NOT_REPEATING_INSTANCE));
				repeat_bad = true;
			}
		} else if (inst && *inst && d->repeating == 1 && !(ev && ev->repeat_whole)) {
			report(&c, REDCAP_ERR_VALUE, "redcap_repeat_instance", inst,
			       rc_strdup(REDCAP_MSG_NOT_REPEATING_INSTANCE));
			repeat_bad = true;
		}
	}

	/* Every column. */
	const char *col;
	json_t *v;
	json_object_foreach((json_t *)row, col, v) {
		if (c.rc)
			break;
		if (strcmp(col, rid->name) == 0 || strcmp(col, "redcap_event_name") == 0 ||
		    strcmp(col, "redcap_repeat_instrument") == 0 || strcmp(col, "redcap_repeat_instance") == 0 ||
		    strcmp(col, "redcap_data_access_group") == 0 || strcmp(col, "redcap_survey_identifier") == 0)
			continue;
		const redcap_choice *ch;
		const redcap_field *f = redcap_dict_column(d, col, &ch);
		if (!f && is_form_timestamp(d, col))
			continue;  /* survey timestamps: pseudo-fields REDCap ignores */
		if (!f || (f->type == REDCAP_FIELD_CHECKBOX && !ch) || f->type == REDCAP_FIELD_DESCRIPTIVE) {
			if (unknown.len)
				rc_str_add(&unknown, ", ");
			rc_str_add(&unknown, col);
			continue;
		}
		if (repeat_bad)
			continue;
		bool bad;
		char *val = value_text(v, &bad);
		if (bad) {
			report(&c, REDCAP_ERR_VALUE, col, "",
			       rc_strdup("The value is not a JSON string or number."));
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
		if (f->type == REDCAP_FIELD_CALC || f->pseudo_calc) {
			warn(&c, col, val, rc_strdup(REDCAP_MSG_CALC_IGNORED));
		} else if (f->type == REDCAP_FIELD_FILE) {
			warn(&c, col, val, rc_strdup("File Upload fields cannot be imported with records; the value is ignored."));
		} else {
			verdict vd;
			check_value(d, f, ch, col, val, &vd);
			if (vd.oom) {
				c.rc = -ENOMEM;
				free(vd.error);
				free(vd.warning);
			} else if (vd.error) {
				report(&c, REDCAP_ERR_VALUE, col, val, vd.error);
			} else if (vd.warning) {
				warn(&c, col, val, vd.warning);
			}
		}
		/* Where the field may be saved. */
		const char *form = d->forms[f->form].name;
		if (ev && !redcap_dict_form_in_event(d, ev, f->form)) {
			/* The event as REDCap names it: PyCap issue #142 quotes
			 * "... for the event named 'Screening (Arm 1: HeiSIS Screening)'". */
			char *label = redcap_event_label(d, ev);
			report(&c, REDCAP_ERR_VALUE, col, val,
			       label ? fmt("This field ('%s') exists on an instrument that is not designated for the event named '%s'. You are not allowed to import data for this field into this event.",
					   col, label) :
				       NULL);
			free(label);
		} else if (!(ev && ev->repeat_whole) && redcap_dict_form_repeats(d, ev, f->form) && !repeat_row) {
			/* REDCap 15.7.6 Classes/Records.php (saveData) quotes the
			 * column as imported ('x___1' for a checkbox) and names the
			 * form by $Proj->metadata[column]['form_name']: a checkbox
			 * column is no metadata key, so its form comes out as ''. */
			report(&c, REDCAP_ERR_VALUE, col, val,
			       fmt("This field ('%s') exists on a Repeating Instrument named '%s'. However, the fields 'redcap_repeat_instance' and/or 'redcap_repeat_instrument' for this row of data have no value, which are both required for importing data into a Repeating Instrument.  You are not allowed to import data for this field into a non-repeating instrument.",
				   col, ch ? "" : form));
		} else if (rform && instr && rform != &d->forms[f->form]) {
			report(&c, REDCAP_ERR_VALUE, col, val,
			       fmt("This field ('%s') does not exist on the Repeating Instrument named '%s'. You are not allowed to import data for this field into this Repeating Instrument.",
				   col, instr));
		}
		wipe_free(val);
	}
	if (unknown.err)
		c.rc = -ENOMEM;
	else if (!c.rc && unknown.len)
		report(&c, REDCAP_ERR_REQUEST, unknown.s, "",
		       fmt("The following fields were not found in the project as real data fields: %s", unknown.s));
	rc_str_free(&unknown);
	wipe_free(record);
	wipe_free(evname);
	wipe_free(instr);
	wipe_free(inst);
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
	check_value(d, f, ch, column, v, &vd);
	wipe_free(v);
	free(vd.warning);
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
