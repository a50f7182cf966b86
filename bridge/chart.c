/*
 * chart.c — downtime charting, sans I/O (see chart.h).
 *
 * Layout: the tables (vital signs, their limits, unit spellings, note
 * types); small checks (UTF-8, FHIR ids, typed decimals, date-times); one
 * builder per kind; the Provenance; chart_build; the transaction Bundle and
 * its response; the patient reference rewrite.
 */
#include "bridge/chart.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

/* ------------------------------------------------------------------------
 * Tables
 */

/* The vital signs we chart. units[0] is the default when it is the only one. */
typedef struct vital {
	const char *loinc;
	const char *display;
	const char *loinc2;        /* a second coding (the FHIR vital-signs profile's code), or NULL */
	const char *display2;
	const char *what;          /* in messages */
	const char *names[3];      /* short names accepted as the code */
	const char *units[4];      /* UCUM codes accepted, NULL-terminated */
	bool panel;                /* blood pressure: "SYS/DIA" as two components */
} vital;

static const vital vitals[] = {
	{ "8867-4", "Heart rate", NULL, NULL, "heart rate", { "hr", "heart-rate", "pulse" }, { "/min" }, false },
	{ "9279-1", "Respiratory rate", NULL, NULL, "respiratory rate", { "rr", "resp-rate", "respiratory-rate" },
	  { "/min" }, false },
	{ "8310-5", "Body temperature", NULL, NULL, "body temperature", { "temp", "temperature", "body-temperature" },
	  { "Cel", "[degF]" }, false },
	{ "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "2708-6",
	  "Oxygen saturation in Arterial blood", "oxygen saturation", { "spo2", "oxygen-saturation", "sat" },
	  { "%" }, false },
	{ "29463-7", "Body weight", NULL, NULL, "body weight", { "weight", "body-weight", "wt" },
	  { "kg", "g", "[lb_av]" }, false },
	{ "85354-9", "Blood pressure panel with all children optional", NULL, NULL, "blood pressure",
	  { "bp", "blood-pressure" }, { "mm[Hg]" }, true },
};

/* The blood pressure components. */
static const vital bp_systolic = { "8480-6", "Systolic blood pressure", NULL, NULL, "systolic blood pressure",
				   { NULL }, { "mm[Hg]" }, false };
static const vital bp_diastolic = { "8462-4", "Diastolic blood pressure", NULL, NULL, "diastolic blood pressure",
				    { NULL }, { "mm[Hg]" }, false };

/*
 * Limits per measured code and unit, written as decimals (they are parsed
 * by the same reader as the typed values and quoted as is in messages).
 * Outside [refuse_lo, refuse_hi] a value is refused (impossible or a typo
 * of another field); outside [plaus_lo, plaus_hi] it is saved only when the
 * clinician confirms it. The plausible ranges cover adults and children
 * including neonates (a newborn's heart rate up to ~200, respiratory rate
 * up to ~70, weight from ~0.5 kg), so a confirmation means "really?".
 *
 *   code     sign                 unit      refused outside     confirm outside
 *   8867-4   heart rate           /min      0 - 350             30 - 220
 *   9279-1   respiratory rate     /min      0 - 150             6 - 80
 *   8310-5   body temperature     Cel       10 - 50             34 - 42
 *   8310-5   body temperature     [degF]    50 - 122            93.2 - 107.6
 *   59408-5  oxygen saturation    %         0 - 100             50 - 100
 *   29463-7  body weight          kg        0.1 - 700           0.5 - 300
 *   29463-7  body weight          g         100 - 700000        500 - 300000
 *   29463-7  body weight          [lb_av]   0.22 - 1543         1.1 - 661
 *   8480-6   systolic BP          mm[Hg]    0 - 350             50 - 250
 *   8462-4   diastolic BP         mm[Hg]    0 - 300             20 - 150
 *   (and a systolic at or below its diastolic is refused)
 */
typedef struct vital_limit {
	const char *loinc;
	const char *ucum;
	const char *label;         /* Quantity.unit: the unit for humans */
	const char *refuse_lo, *refuse_hi;
	const char *plaus_lo, *plaus_hi;
} vital_limit;

static const vital_limit vital_limits[] = {
	{ "8867-4", "/min", "beats/minute", "0", "350", "30", "220" },
	{ "9279-1", "/min", "breaths/minute", "0", "150", "6", "80" },
	{ "8310-5", "Cel", "\xc2\xb0" "C", "10", "50", "34", "42" },
	{ "8310-5", "[degF]", "\xc2\xb0" "F", "50", "122", "93.2", "107.6" },
	{ "59408-5", "%", "%", "0", "100", "50", "100" },
	{ "29463-7", "kg", "kg", "0.1", "700", "0.5", "300" },
	{ "29463-7", "g", "g", "100", "700000", "500", "300000" },
	{ "29463-7", "[lb_av]", "lb", "0.22", "1543", "1.1", "661" },
	{ "8480-6", "mm[Hg]", "mmHg", "0", "350", "50", "250" },
	{ "8462-4", "mm[Hg]", "mmHg", "0", "300", "20", "150" },
};

/* Unit spellings accepted for vital signs (compared ignoring ASCII case) -> UCUM. */
static const struct {
	const char *spelling, *ucum;
} vital_units[] = {
	{ "/min", "/min" },       { "bpm", "/min" },        { "beats/min", "/min" },  { "beats/minute", "/min" },
	{ "breaths/min", "/min" }, { "breaths/minute", "/min" }, { "per min", "/min" },
	{ "Cel", "Cel" },         { "C", "Cel" },           { "\xc2\xb0" "C", "Cel" }, { "degC", "Cel" },
	{ "deg C", "Cel" },       { "celsius", "Cel" },
	{ "[degF]", "[degF]" },   { "F", "[degF]" },        { "\xc2\xb0" "F", "[degF]" }, { "degF", "[degF]" },
	{ "deg F", "[degF]" },    { "fahrenheit", "[degF]" },
	{ "%", "%" },
	{ "kg", "kg" },           { "g", "g" },             { "[lb_av]", "[lb_av]" }, { "lb", "[lb_av]" },
	{ "lbs", "[lb_av]" },
	{ "mm[Hg]", "mm[Hg]" },   { "mmHg", "mm[Hg]" },     { "mm Hg", "mm[Hg]" },
};

/* Dose unit spellings (exact) that are not UCUM -> UCUM. Other units are taken as typed. */
static const struct {
	const char *spelling, *ucum;
} dose_units[] = {
	{ "mcg", "ug" }, { "\xc2\xb5g", "ug" }, { "\xce\xbcg", "ug" }, { "ml", "mL" }, { "IU", "[iU]" },
	{ "iu", "[iU]" }, { "units", "[U]" }, { "unit", "[U]" }, { "drops", "[drp]" }, { "puffs", "{puff}" },
};

/* Note types with a display; other LOINC codes are accepted without one. */
static const struct {
	const char *loinc, *display;
} note_types[] = {
	{ "11506-3", "Progress note" },       { "34746-8", "Nurse note" },
	{ "11488-4", "Consult note" },        { "18842-5", "Discharge summary" },
	{ "28570-0", "Procedure note" },      { "34117-2", "History and physical note" },
};

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

/* Length caps for the short text fields. */
#define SHORT_MAX 256
#define REASON_MAX 1024
#define CODE_MAX 512

/* ------------------------------------------------------------------------
 * Small checks
 */

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_ok(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t k;
		unsigned cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			k = 1, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/* A FHIR id: [A-Za-z0-9.-]{1,64}. */
static bool fhir_id_ok(const char *s)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		char c = s[n];
		if (n >= 64 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
				 c == '-' || c == '.'))
			return false;
	}
	return n > 0;
}

/* A resource type name: [A-Z][A-Za-z]{0,63}. */
static bool type_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 64 || s[0] < 'A' || s[0] > 'Z')
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z')))
			return false;
	return true;
}

/* True if s holds a C0 control character or DEL. */
static bool has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* True if s[0..n) is only spaces, tabs and line ends (or empty). */
static bool is_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

/* A system URI as we accept it: printable ASCII without spaces, 1-1024 bytes. */
static bool uri_ok(const char *s)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++)
		if (n >= 1024 || (unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
			return false;
	return n > 0;
}

/*
 * A typed value quoted in a message: at most 40 bytes (cut on a character
 * boundary, "..." added), control characters and bytes of invalid UTF-8
 * shown as '?'. Returns buf.
 */
static const char *show(char buf[48], const char *s, size_t n)
{
	bool valid = utf8_ok(s, n);
	size_t k = 0, i = 0;

	for (; i < n && k < 40; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[k++] = (c < 0x20 || c == 0x7f || (c >= 0x80 && !valid)) ? '?' : (char)c;
	}
	if (i < n) {
		/* Cut mid-character: drop the continuation bytes copied and their lead byte. */
		if (valid && ((unsigned char)s[i] & 0xc0) == 0x80) {
			while (k > 0 && ((unsigned char)buf[k - 1] & 0xc0) == 0x80)
				k--;
			if (k > 0)
				k--;
		}
		memcpy(buf + k, "...", 3);
		k += 3;
	}
	buf[k] = 0;
	return buf;
}

static const char *show_str(char buf[48], const char *s)
{
	return show(buf, s, strlen(s));
}

/* ------------------------------------------------------------------------
 * Typed decimals
 */

#define NUM_INT_DIGITS 9
#define NUM_FRAC_DIGITS 6

typedef struct num {
	char text[24];      /* normalised: no leading zeros, no sign on zero */
	double v;
	int64_t mantissa;   /* the digits as an integer: v = mantissa / 10^decimals */
	int decimals;       /* fraction digits as typed */
} num;

enum { NUM_OK = 0, NUM_SYNTAX, NUM_COMMA, NUM_DIGITS };

/*
 * Read the decimal s[0..len) (spaces and tabs around it ignored):
 * -?[0-9]+(\.[0-9]+)?, at most NUM_INT_DIGITS integer digits after leading
 * zeros and NUM_FRAC_DIGITS fraction digits. No locale: the double is the
 * exact integer mantissa (< 10^15 < 2^53) divided by an exact power of ten,
 * one correctly rounded operation, so it is the nearest double to the
 * typed decimal, as strtod would give.
 */
static int num_scan(const char *s, size_t len, num *x)
{
	const char *p = s, *e = s + len;
	bool neg = false;

	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (p < e && *p == '-') {
		neg = true;
		p++;
	}
	const char *ip = p;
	while (p < e && *p >= '0' && *p <= '9')
		p++;
	const char *ie = p, *fp = p, *fe = p;
	if (p < e && (*p == '.' || *p == ',')) {
		char sep = *p++;
		fp = p;
		while (p < e && *p >= '0' && *p <= '9')
			p++;
		fe = p;
		if (ie > ip && fe > fp && p == e && sep == ',')
			return NUM_COMMA;
		if (sep == ',' || fe == fp)
			return NUM_SYNTAX;
	}
	if (ie == ip || p != e)
		return NUM_SYNTAX;
	while (ie - ip > 1 && *ip == '0')
		ip++;
	if (ie - ip > NUM_INT_DIGITS || fe - fp > NUM_FRAC_DIGITS)
		return NUM_DIGITS;

	int64_t m = 0, scale = 1;
	for (const char *q = ip; q < ie; q++)
		m = m * 10 + (*q - '0');
	for (const char *q = fp; q < fe; q++) {
		m = m * 10 + (*q - '0');
		scale *= 10;
	}
	if (m == 0)
		neg = false;
	x->mantissa = neg ? -m : m;
	x->decimals = (int)(fe - fp);
	x->v = (double)m / (double)scale;
	if (neg)
		x->v = -x->v;
	snprintf(x->text, sizeof(x->text), "%s%.*s%s%.*s", neg ? "-" : "", (int)(ie - ip), ip, fe > fp ? "." : "",
		 (int)(fe - fp), fp);
	return NUM_OK;
}

/* A table decimal (always valid; a bad one reads as 0 and the tests catch it). */
static double num_const(const char *s)
{
	num x;
	return num_scan(s, strlen(s), &x) == NUM_OK ? x.v : 0;
}

/* The JSON number for x: an integer without fraction, else a real (see chart.h, "Decimals"). */
static json_t *num_json(const num *x)
{
	return x->decimals == 0 ? json_integer((json_int_t)x->mantissa) : json_real(x->v);
}

/* A Quantity {value, [_value precision], unit, system UCUM, code}. */
static json_t *quantity(const num *x, const char *label, const char *ucum)
{
	json_t *q = json_pack("{s:o, s:s, s:s, s:s}", "value", num_json(x), "unit", label, "system",
			      CHART_SYSTEM_UCUM, "code", ucum);
	if (q && x->decimals > 0 && x->text[strlen(x->text) - 1] == '0') {
		json_t *ext = json_pack("{s:[{s:s, s:i}]}", "extension", "url", CHART_EXT_PRECISION, "valueInteger",
					x->decimals);
		if (json_object_set_new(q, "_value", ext) < 0) {
			json_decref(q);
			return NULL;
		}
	}
	return q;
}

/* ------------------------------------------------------------------------
 * Date-times
 */

/* Gregorian leap years. */
static bool leap_year(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 0001-01-01 to the first of January of year y (y >= 1). */
static int64_t days_before_year(int64_t y)
{
	y -= 1;
	return 365 * y + y / 4 - y / 100 + y / 400;
}

/* Days since 1970-01-01 of a valid date. */
static int64_t days_since_epoch(int y, int m, int d)
{
	static const int before_month[12] = { 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334 };
	return days_before_year(y) - days_before_year(1970) + before_month[m - 1] + (m > 2 && leap_year(y)) + d - 1;
}

/* Days in month m (1-12) of year y. */
static int month_days(int y, int m)
{
	static const int dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return m == 2 && leap_year(y) ? 29 : dim[m - 1];
}

/* n digits at *p -> *v, advancing; false if they are not all digits. */
static bool take_digits(const char **p, int n, int *v)
{
	int x = 0;
	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		x = x * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*v = x;
	return true;
}

enum { AT_OK = 0, AT_SHAPE, AT_NO_TIME, AT_NO_OFFSET, AT_RANGE };

/*
 * Parse YYYY-MM-DDThh:mm[:ss[.f{1,9}]](Z|+hh:mm|-hh:mm) into unix ms (a
 * fraction beyond ms truncated; a leap second 60 counts as the next second)
 * and the text to store into out: s as typed, or with ":00" inserted when
 * the seconds were left out (FHIR dateTime requires them).
 */
static int at_parse(const char *s, char out[64], int64_t *ms)
{
	const char *p = s;
	int y, mo, d, h, mi, sec = 0, frac_ms = 0, off = 0;
	bool have_sec = false;

	if (strlen(s) > 40)
		return AT_SHAPE;
	if (!(take_digits(&p, 4, &y) && *p++ == '-' && take_digits(&p, 2, &mo) && *p++ == '-' &&
	      take_digits(&p, 2, &d)))
		return AT_SHAPE;
	if (!*p)
		return AT_NO_TIME;
	if (!(*p++ == 'T' && take_digits(&p, 2, &h) && *p++ == ':' && take_digits(&p, 2, &mi)))
		return AT_SHAPE;
	const char *after_minutes = p;
	if (*p == ':') {
		p++;
		if (!take_digits(&p, 2, &sec))
			return AT_SHAPE;
		have_sec = true;
		if (*p == '.') {
			p++;
			int nd = 0;
			for (; *p >= '0' && *p <= '9'; p++, nd++)
				if (nd < 3)
					frac_ms = frac_ms * 10 + (*p - '0');
			if (nd == 0 || nd > 9)
				return AT_SHAPE;
			for (int k = nd; k < 3; k++)
				frac_ms *= 10;
		}
	}
	if (!*p)
		return AT_NO_OFFSET;
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om;
		if (!(take_digits(&p, 2, &oh) && *p++ == ':' && take_digits(&p, 2, &om)))
			return AT_SHAPE;
		if (oh > 14 || om > 59 || (oh == 14 && om > 0))
			return AT_RANGE;
		off = sign * (oh * 60 + om);
	} else {
		return AT_SHAPE;
	}
	if (*p)
		return AT_SHAPE;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || sec > 60)
		return AT_RANGE;

	int64_t t = days_since_epoch(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off * 60;
	*ms = t * 1000 + frac_ms;
	if (have_sec)
		snprintf(out, 64, "%s", s);
	else
		snprintf(out, 64, "%.*s:00%s", (int)(after_minutes - s), s, after_minutes);
	return AT_OK;
}

/* unix ms -> "YYYY-MM-DDThh:mm:ss.mmmZ" (UTC). */
static void format_utc(int64_t ms, char out[64])
{
	int64_t secs = ms / 1000, rem = ms % 1000;
	if (rem < 0) {
		rem += 1000;
		secs--;
	}
	time_t t = (time_t)secs;
	struct tm tm;
	if (!gmtime_r(&t, &tm)) {
		snprintf(out, 64, "1970-01-01T00:00:00.000Z");
		return;
	}
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
}

/* ------------------------------------------------------------------------
 * The build context
 */

typedef struct build {
	const chart_input *in;
	const chart_site *site;
	char *err;
	size_t err_size;
	char confirm[768];        /* what needs confirming, "; "-joined */
	size_t confirm_len;
	char *user_system_owned;
	const char *user_system;
	char patient_ref[80];     /* "Patient/<id>" */
	chart_entry *out;
} build;

/* Write the refusal message; returns CHART_E_INVALID. */
__attribute__((format(printf, 2, 3))) static int fail(build *b, const char *fmt, ...)
{
	if (b->err && b->err_size) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(b->err, b->err_size, fmt, ap);
		va_end(ap);
	}
	return CHART_E_INVALID;
}

/* Note one thing that needs the clinician's confirmation. */
__attribute__((format(printf, 2, 3))) static void ask(build *b, const char *fmt, ...)
{
	size_t cap = sizeof(b->confirm);
	if (b->confirm_len > 0 && b->confirm_len + 2 < cap) {
		memcpy(b->confirm + b->confirm_len, "; ", 3);
		b->confirm_len += 2;
	}
	if (b->confirm_len + 1 >= cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->confirm + b->confirm_len, cap - b->confirm_len, fmt, ap);
	va_end(ap);
	if (n > 0)
		b->confirm_len = (size_t)n < cap - b->confirm_len ? b->confirm_len + (size_t)n : cap - 1;
}

/* An optional short text field: NULL or blank is absent (*ok = NULL); else UTF-8, no control character. */
static int text_field(build *b, const char *field, const char *s, size_t max, const char **ok)
{
	*ok = NULL;
	if (!s || is_blank(s, strlen(s)))
		return 0;
	size_t n = strlen(s);
	if (n > max)
		return fail(b, "%s: too long (%zu bytes, at most %zu)", field, n, max);
	if (!utf8_ok(s, n))
		return fail(b, "%s: not valid UTF-8", field);
	if (has_control(s))
		return fail(b, "%s: contains a control character", field);
	*ok = s;
	return 0;
}

/* {identifier {system, value}, display?}: how a clinician is referenced. */
static json_t *user_ref(const build *b)
{
	return json_pack("{s:{s:s, s:s}, s:s*}", "identifier", "system", b->user_system, "value", b->in->user,
			 "display", b->in->user_display);
}

/* The downtime meta.tag coding: a new reference, NULL if out of memory. */
static json_t *downtime_tag(void)
{
	return json_pack("{s:s, s:s, s:s}", "system", CHART_TAG_SYSTEM, "code", CHART_TAG_CODE, "display",
			 CHART_TAG_DISPLAY);
}

/* A CodeableConcept with one coding (display optional). */
static json_t *concept(const char *system, const char *code, const char *display)
{
	return json_pack("{s:[{s:s, s:s, s:s*}]}", "coding", "system", system, "code", code, "display", display);
}

/* Set o[key] = v (stolen); -ENOMEM if v is NULL or the set fails. */
static int set(json_t *o, const char *key, json_t *v)
{
	return v && json_object_set_new(o, key, v) == 0 ? 0 : -ENOMEM;
}

/* A new resource of type with the downtime tag and the entry's identifier. */
static json_t *new_resource(const build *b, const char *type)
{
	return json_pack("{s:s, s:{s:[o]}, s:[{s:s, s:s}]}", "resourceType", type, "meta", "tag", downtime_tag(),
			 "identifier", "system", b->site->identifier_system, "value", b->out->uuid);
}

/* ------------------------------------------------------------------------
 * Vital signs
 */

/* The vital sign named code (its LOINC code exactly, or a short name ignoring case), or NULL. */
static const vital *vital_find(const char *code)
{
	for (size_t i = 0; i < N_ELEMENTS(vitals); i++) {
		if (strcmp(code, vitals[i].loinc) == 0)
			return &vitals[i];
		for (size_t k = 0; k < N_ELEMENTS(vitals[i].names) && vitals[i].names[k]; k++)
			if (strcasecmp(code, vitals[i].names[k]) == 0)
				return &vitals[i];
	}
	return NULL;
}

/* The limits of a measured code in a unit, or NULL. */
static const vital_limit *limit_find(const char *loinc, const char *ucum)
{
	for (size_t i = 0; i < N_ELEMENTS(vital_limits); i++)
		if (strcmp(vital_limits[i].loinc, loinc) == 0 && strcmp(vital_limits[i].ucum, ucum) == 0)
			return &vital_limits[i];
	return NULL;
}

/* "Cel or [degF]", "kg, g or [lb_av]". */
static void unit_list(const vital *v, char *buf, size_t size)
{
	size_t n = 0;
	while (n < N_ELEMENTS(v->units) && v->units[n])
		n++;
	buf[0] = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(buf);
		snprintf(buf + l, size - l, "%s%s", i == 0 ? "" : i + 1 == n ? " or " : ", ", v->units[i]);
	}
}

/* The UCUM code of the unit for v, or a refusal. */
static int vital_unit(build *b, const vital *v, const char **ucum)
{
	const char *u = b->in->unit;
	char list[64], buf[48];

	unit_list(v, list, sizeof(list));
	size_t len = 0;
	if (u) {
		while (*u == ' ' || *u == '\t')
			u++;
		len = strlen(u);
		while (len > 0 && (u[len - 1] == ' ' || u[len - 1] == '\t'))
			len--;
	}
	if (len == 0) {
		if (!v->units[1]) {
			*ucum = v->units[0];
			return 0;
		}
		return fail(b, "unit: %s needs a unit: %s", v->what, list);
	}
	const char *code = NULL;
	for (size_t i = 0; i < N_ELEMENTS(vital_units) && !code; i++)
		if (strlen(vital_units[i].spelling) == len && strncasecmp(vital_units[i].spelling, u, len) == 0)
			code = vital_units[i].ucum;
	for (size_t i = 0; code && i < N_ELEMENTS(v->units) && v->units[i]; i++) {
		if (strcmp(code, v->units[i]) == 0) {
			*ucum = v->units[i];
			return 0;
		}
	}
	return fail(b, "unit: %s is recorded in %s, got '%s'", v->what, list, show(buf, u, len));
}

/* Check one measured value against its limits (refuse, or note a confirmation). */
static int vital_check(build *b, const vital *v, const vital_limit *l, const num *x)
{
	if (x->v < 0 && num_const(l->refuse_lo) >= 0)
		return fail(b, "value: %s must not be negative, got '%s'", v->what, x->text);
	if (x->v < num_const(l->refuse_lo) || x->v > num_const(l->refuse_hi))
		return fail(b, "value: %s %s %s is impossible (limits %s-%s %s)", v->what, x->text, l->ucum,
			    l->refuse_lo, l->refuse_hi, l->ucum);
	if (x->v < num_const(l->plaus_lo) || x->v > num_const(l->plaus_hi))
		ask(b, "value: %s %s %s is outside %s-%s %s", v->what, x->text, l->ucum, l->plaus_lo, l->plaus_hi,
		    l->ucum);
	return 0;
}

/* Read a typed decimal for field (what names it in messages). */
static int read_num(build *b, const char *field, const char *what, const char *s, size_t len, num *x)
{
	char buf[48];

	switch (num_scan(s, len, x)) {
	case NUM_OK:
		return 0;
	case NUM_COMMA:
		return fail(b, "%s: use '.' for decimals, got '%s'", field, show(buf, s, len));
	case NUM_DIGITS:
		return fail(b, "%s: %s has too many digits (at most %d before and %d after the point), got '%s'", field,
			    what, NUM_INT_DIGITS, NUM_FRAC_DIGITS, show(buf, s, len));
	default:
		return fail(b, "%s: %s must be a number, got '%s'", field, what, show(buf, s, len));
	}
}

/* The coded value of v (its LOINC coding(s)). */
static json_t *vital_code(const vital *v)
{
	json_t *c = concept(CHART_SYSTEM_LOINC, v->loinc, v->display);
	if (c && v->loinc2) {
		json_t *coding = json_object_get(c, "coding");
		if (json_array_append_new(coding, json_pack("{s:s, s:s, s:s}", "system", CHART_SYSTEM_LOINC, "code",
							    v->loinc2, "display", v->display2)) < 0) {
			json_decref(c);
			return NULL;
		}
	}
	return c;
}

/* Blood pressure "SYS/DIA" -> two components. */
static int vital_bp(build *b, const vital *v, json_t *obs)
{
	const char *s = b->in->value;
	const char *slash = strchr(s, '/');
	char buf[48];
	num sys, dia;

	if (!slash || strchr(slash + 1, '/'))
		return fail(b, "value: %s is systolic/diastolic (e.g. 120/80), got '%s'", v->what, show_str(buf, s));
	if (num_scan(s, (size_t)(slash - s), &sys) != NUM_OK || num_scan(slash + 1, strlen(slash + 1), &dia) != NUM_OK)
		return fail(b, "value: %s must be two numbers like 120/80, got '%s'", v->what, show_str(buf, s));
	const vital_limit *ls = limit_find(bp_systolic.loinc, "mm[Hg]"), *ld = limit_find(bp_diastolic.loinc, "mm[Hg]");
	if (!ls || !ld)
		return -EINVAL;
	int rc = vital_check(b, &bp_systolic, ls, &sys);
	if (rc == 0)
		rc = vital_check(b, &bp_diastolic, ld, &dia);
	if (rc)
		return rc;
	if (sys.v <= dia.v)
		return fail(b, "value: the systolic pressure must be above the diastolic, got '%s/%s'", sys.text,
			    dia.text);
	json_t *comp = json_pack("[{s:o, s:o}, {s:o, s:o}]", "code", vital_code(&bp_systolic), "valueQuantity",
				 quantity(&sys, ls->label, ls->ucum), "code", vital_code(&bp_diastolic),
				 "valueQuantity", quantity(&dia, ld->label, ld->ucum));
	return set(obs, "component", comp);
}

/*
 * The vital-signs Observation into *res (a new reference) on 0; else a
 * refusal (CHART_E_INVALID) or -ENOMEM, *res untouched. Implausible values
 * are noted with ask().
 */
static int build_vitals(build *b, json_t **res)
{
	const chart_input *in = b->in;
	char buf[48];
	const char *ucum = NULL;

	if (!in->code || is_blank(in->code, strlen(in->code)))
		return fail(b, "code: required (a LOINC code such as 8867-4, or hr, rr, temp, spo2, weight, bp)");
	const vital *v = vital_find(in->code);
	if (!v)
		return fail(b, "code: unknown vital sign '%s' (use 8867-4 hr, 9279-1 rr, 8310-5 temp, 59408-5 spo2, "
			    "29463-7 weight or 85354-9 bp)", show_str(buf, in->code));
	if (!in->value || is_blank(in->value, strlen(in->value)))
		return fail(b, "value: %s is required", v->what);
	int rc = vital_unit(b, v, &ucum);
	if (rc)
		return rc;

	json_t *obs = new_resource(b, "Observation");
	if (!obs)
		return -ENOMEM;
	if (set(obs, "status", json_string("final")) < 0 ||
	    set(obs, "category",
		json_pack("[o]", concept(CHART_SYSTEM_OBS_CATEGORY, "vital-signs", "Vital Signs"))) < 0 ||
	    set(obs, "code", vital_code(v)) < 0 ||
	    set(obs, "subject", json_pack("{s:s}", "reference", b->patient_ref)) < 0 ||
	    set(obs, "effectiveDateTime", json_string(b->out->effective)) < 0 ||
	    set(obs, "issued", json_string(b->out->recorded)) < 0 ||
	    set(obs, "performer", json_pack("[o]", user_ref(b))) < 0) {
		json_decref(obs);
		return -ENOMEM;
	}
	if (v->panel) {
		rc = vital_bp(b, v, obs);
	} else {
		num x;
		const vital_limit *l = limit_find(v->loinc, ucum);
		rc = l ? read_num(b, "value", v->what, in->value, strlen(in->value), &x) : -EINVAL;
		if (rc == 0)
			rc = vital_check(b, v, l, &x);
		if (rc == 0)
			rc = set(obs, "valueQuantity", quantity(&x, l->label, l->ucum));
	}
	if (rc) {
		json_decref(obs);
		return rc;
	}
	*res = obs;
	return 0;
}

/* ------------------------------------------------------------------------
 * Note
 */

/* A LOINC code: 1-7 digits, '-', a check digit. */
static bool loinc_ok(const char *s)
{
	size_t n = 0;
	while (s[n] >= '0' && s[n] <= '9')
		n++;
	return n >= 1 && n <= 7 && s[n] == '-' && s[n + 1] >= '0' && s[n + 1] <= '9' && !s[n + 2];
}

/* The DocumentReference into *res (a new reference) on 0; else a refusal or -ENOMEM. */
static int build_note(build *b, json_t **res)
{
	const chart_input *in = b->in;
	char buf[48];

	if (!in->text)
		return fail(b, "text: required");
	size_t len = in->text_len ? in->text_len : strlen(in->text);
	if (memchr(in->text, 0, len))
		return fail(b, "text: contains a NUL byte");
	if (len > CHART_NOTE_MAX)
		return fail(b, "text: the note is %zu bytes, at most %d", len, CHART_NOTE_MAX);
	if (!utf8_ok(in->text, len))
		return fail(b, "text: not valid UTF-8");
	if (is_blank(in->text, len))
		return fail(b, "text: the note is empty");
	const char *type = in->note_type && !is_blank(in->note_type, strlen(in->note_type)) ? in->note_type :
											    CHART_NOTE_TYPE_DEFAULT;
	if (!loinc_ok(type))
		return fail(b, "note_type: not a LOINC code (e.g. 11506-3), got '%s'", show_str(buf, type));
	const char *display = NULL;
	for (size_t i = 0; i < N_ELEMENTS(note_types); i++)
		if (strcmp(type, note_types[i].loinc) == 0)
			display = note_types[i].display;

	size_t b64_size = 4 * ((len + 2) / 3) + 1;
	unsigned char *data = malloc(b64_size);
	if (!data)
		return -ENOMEM;
	EVP_EncodeBlock(data, (const unsigned char *)in->text, (int)len);

	json_t *doc = new_resource(b, "DocumentReference");
	int rc = doc ? 0 : -ENOMEM;
	if (rc == 0 &&
	    (set(doc, "status", json_string("current")) < 0 || set(doc, "docStatus", json_string("final")) < 0 ||
	     set(doc, "type", concept(CHART_SYSTEM_LOINC, type, display)) < 0 ||
	     set(doc, "subject", json_pack("{s:s}", "reference", b->patient_ref)) < 0 ||
	     set(doc, "date", json_string(b->out->recorded)) < 0 ||
	     set(doc, "author", json_pack("[o]", user_ref(b))) < 0 ||
	     set(doc, "context", json_pack("{s:{s:s}}", "period", "start", b->out->effective)) < 0 ||
	     set(doc, "content", json_pack("[{s:{s:s, s:s, s:s*}}]", "attachment", "contentType",
					   "text/plain; charset=utf-8", "data", (const char *)data, "title",
					   display)) < 0))
		rc = -ENOMEM;
	free(data);
	if (rc) {
		json_decref(doc);
		return rc;
	}
	*res = doc;
	return 0;
}

/* ------------------------------------------------------------------------
 * Medication administration
 */

/* True if ref ("Patient/<id>", ".../Patient/<id>" or either with /_history/<v>) names patient_ref. */
static bool refers_to(const char *ref, const char *patient_ref)
{
	size_t n = strlen(patient_ref);
	const char *p = ref;

	if (!ref)
		return false;
	for (;;) {
		const char *hit = strstr(p, patient_ref);
		if (!hit)
			return false;
		if ((hit == ref || hit[-1] == '/') &&
		    (hit[n] == 0 || (strncmp(hit + n, "/_history/", 10) == 0 && !strchr(hit + n + 10, '/'))))
			return true;
		p = hit + 1;
	}
}

/* True if j is a string equal to s. */
static bool str_eq(const json_t *j, const char *s)
{
	const char *v = json_string_value(j);
	return v && strcmp(v, s) == 0;
}

/* o[key] as a string (borrowed), or NULL. */
static const char *str_at(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* o[key].reference (borrowed), or NULL. */
static const char *ref_at(const json_t *o, const char *key)
{
	return str_at(json_object_get(o, key), "reference");
}

/* medication[x] of the request into mar (with its contained Medication when referenced as "#id"). */
static int med_from_request(build *b, const json_t *req, const char *id, json_t *mar)
{
	const json_t *cc = json_object_get(req, "medicationCodeableConcept");
	const json_t *mr = json_object_get(req, "medicationReference");

	if (json_is_object(cc))
		return set(mar, "medicationCodeableConcept", json_deep_copy(cc));
	if (!json_is_object(mr))
		return fail(b, "med_request: MedicationRequest/%s has no medication", id);
	const char *r = str_at(mr, "reference");
	if (r && r[0] == '#') {
		const json_t *found = NULL, *c;
		size_t i;
		json_array_foreach(json_object_get(req, "contained"), i, c)
			if (json_is_object(c) && str_eq(json_object_get(c, "id"), r + 1))
				found = c;
		if (!found)
			return fail(b, "med_request: MedicationRequest/%s refers to a contained medication it lacks",
				    id);
		if (set(mar, "contained", json_pack("[o]", json_deep_copy(found))) < 0)
			return -ENOMEM;
	}
	return set(mar, "medicationReference", json_deep_copy(mr));
}

/* medicationCodeableConcept from "system|code" + display. */
static int med_from_code(build *b, json_t *mar)
{
	const chart_input *in = b->in;
	char buf[48];
	const char *display;

	if (!in->med_code || is_blank(in->med_code, strlen(in->med_code)))
		return fail(b, "med_code: give the medication as system|code (or the medication request)");
	const char *bar = strchr(in->med_code, '|');
	size_t n = strlen(in->med_code);
	if (n > CODE_MAX)
		return fail(b, "med_code: too long (%zu bytes, at most %d)", n, CODE_MAX);
	if (!bar || bar == in->med_code || !bar[1])
		return fail(b, "med_code: expected system|code, got '%s'", show_str(buf, in->med_code));
	char *system = strndup(in->med_code, (size_t)(bar - in->med_code));
	if (!system)
		return -ENOMEM;
	const char *code = bar + 1;
	int rc = 0;
	if (!uri_ok(system))
		rc = fail(b, "med_code: the system must be a URI without spaces, got '%s'", show_str(buf, system));
	else if (!utf8_ok(code, strlen(code)) || has_control(code) || code[0] == ' ' || code[strlen(code) - 1] == ' ')
		rc = fail(b, "med_code: the code has spaces around it or a control character");
	if (rc == 0)
		rc = text_field(b, "med_display", in->med_display, SHORT_MAX, &display);
	if (rc == 0) {
		json_t *cc = json_pack("{s:[{s:s, s:s, s:s*}], s:s*}", "coding", "system", system, "code", code,
				       "display", display, "text", display);
		rc = set(mar, "medicationCodeableConcept", cc);
	}
	free(system);
	return rc;
}

/* dosage {route?, dose?} or nothing. */
static int med_dosage(build *b, json_t *mar)
{
	const chart_input *in = b->in;
	bool has_v = in->dose_value && !is_blank(in->dose_value, strlen(in->dose_value));
	bool has_u = in->dose_unit && !is_blank(in->dose_unit, strlen(in->dose_unit));
	const char *route;
	char buf[48];
	num x;

	if (has_v && !has_u)
		return fail(b, "dose_unit: give the unit of the dose (e.g. mg, mL)");
	if (has_u && !has_v)
		return fail(b, "dose_value: give the dose for the unit");
	int rc = text_field(b, "route", in->route, SHORT_MAX, &route);
	if (rc)
		return rc;
	json_t *dosage = json_object();
	if (!dosage)
		return -ENOMEM;
	if (has_v) {
		rc = read_num(b, "dose_value", "the dose", in->dose_value, strlen(in->dose_value), &x);
		if (rc == 0 && x.v <= 0)
			rc = fail(b, "dose_value: the dose must be above 0, got '%s'", x.text);
		const char *unit = in->dose_unit;
		for (size_t i = 0; rc == 0 && i < N_ELEMENTS(dose_units); i++)
			if (strcmp(unit, dose_units[i].spelling) == 0)
				unit = dose_units[i].ucum;
		if (rc == 0 && (strlen(unit) > 32 || !uri_ok(unit)))
			rc = fail(b, "dose_unit: not a UCUM unit (e.g. mg, mL, ug, [iU]), got '%s'",
				  show_str(buf, unit));
		if (rc == 0)
			rc = set(dosage, "dose", quantity(&x, unit, unit));
	}
	if (rc == 0 && route)
		rc = set(dosage, "route", json_pack("{s:s}", "text", route));
	if (rc == 0 && json_object_size(dosage) > 0)
		return set(mar, "dosage", dosage);
	json_decref(dosage);
	return rc;
}

/* The MedicationAdministration into *res (a new reference) on 0; else a refusal or -ENOMEM. */
static int build_med_admin(build *b, json_t **res)
{
	const chart_input *in = b->in;
	const json_t *req = in->med_request;
	char buf[48];
	const char *id = NULL;
	int rc;

	if (req) {
		if (in->med_code && !is_blank(in->med_code, strlen(in->med_code)))
			return fail(b, "med_code: give the medication request or a code, not both");
		if (!json_is_object(req) || !str_eq(json_object_get(req, "resourceType"), "MedicationRequest"))
			return fail(b, "med_request: not a MedicationRequest");
		id = str_at(req, "id");
		if (!fhir_id_ok(id))
			return fail(b, "med_request: the MedicationRequest has no valid id");
		const char *status = str_at(req, "status");
		if (!status || (strcmp(status, "active") != 0 && strcmp(status, "on-hold") != 0))
			return fail(b, "med_request: MedicationRequest/%s is %s; only an active or on-hold request can "
				    "be given", id, status ? show_str(buf, status) : "without status");
		if (!refers_to(ref_at(req, "subject"), b->patient_ref))
			return fail(b, "med_request: MedicationRequest/%s is for another patient", id);
	}
	json_t *mar = new_resource(b, "MedicationAdministration");
	if (!mar)
		return -ENOMEM;
	rc = set(mar, "status", json_string("completed"));
	if (rc == 0)
		rc = req ? med_from_request(b, req, id, mar) : med_from_code(b, mar);
	if (rc == 0 &&
	    (set(mar, "subject", json_pack("{s:s}", "reference", b->patient_ref)) < 0 ||
	     set(mar, "effectiveDateTime", json_string(b->out->effective)) < 0 ||
	     set(mar, "performer", json_pack("[{s:o}]", "actor", user_ref(b))) < 0))
		rc = -ENOMEM;
	if (rc == 0 && req) {
		char ref[96];
		snprintf(ref, sizeof(ref), "MedicationRequest/%s", id);
		rc = set(mar, "request", json_pack("{s:s}", "reference", ref));
	}
	if (rc == 0)
		rc = med_dosage(b, mar);
	if (rc) {
		json_decref(mar);
		return rc;
	}
	*res = mar;
	return 0;
}

/* ------------------------------------------------------------------------
 * Updates of cached EHR resources
 */

/*
 * Check the cached resource to be changed: its type, id, versionId and
 * patient (member patient_key). Sets target and if_match of the entry.
 */
static int check_current(build *b, const char *type, const char *patient_key, const char *what)
{
	const json_t *cur = b->in->current;
	char buf[48];

	if (!cur)
		return fail(b, "current: required (the %s being changed)", what);
	const char *rt = str_at(cur, "resourceType");
	if (!rt || strcmp(rt, type) != 0)
		return fail(b, "current: not a %s (got %s)", type, rt ? show_str(buf, rt) : "no resourceType");
	const char *id = str_at(cur, "id");
	if (!fhir_id_ok(id))
		return fail(b, "current: the %s has no valid id", type);
	const char *vid = str_at(json_object_get(cur, "meta"), "versionId");
	if (!fhir_id_ok(vid))
		return fail(b, "current: %s/%s has no valid meta.versionId; reload it from the EHR", type, id);
	if (!refers_to(ref_at(cur, patient_key), b->patient_ref))
		return fail(b, "current: %s/%s is for another patient", type, id);
	b->out->target = malloc(strlen(type) + 1 + strlen(id) + 1);
	b->out->if_match = malloc(strlen(vid) + 5);
	if (!b->out->target || !b->out->if_match)
		return -ENOMEM;
	sprintf(b->out->target, "%s/%s", type, id);
	sprintf(b->out->if_match, "W/\"%s\"", vid);
	return 0;
}

/*
 * The copy's meta for the PUT: the server's bookkeeping (versionId,
 * lastUpdated, source) dropped; tags, security labels and profiles kept
 * (dropping security labels could lower the record's confidentiality);
 * the downtime tag added once.
 */
static int update_meta(json_t *res)
{
	json_t *old = json_object_get(res, "meta");
	json_t *meta = json_object(), *tags = json_array(), *t;
	size_t i;

	if (!meta || !tags)
		goto oom;
	json_array_foreach(json_object_get(old, "tag"), i, t) {
		if (str_eq(json_object_get(t, "system"), CHART_TAG_SYSTEM) &&
		    str_eq(json_object_get(t, "code"), CHART_TAG_CODE))
			continue;
		if (json_array_append(tags, t) < 0)
			goto oom;
	}
	if (json_array_append_new(tags, downtime_tag()) < 0)
		goto oom;
	json_t *sec = json_object_get(old, "security"), *prof = json_object_get(old, "profile");
	if ((sec && json_object_set(meta, "security", sec) < 0) || (prof && json_object_set(meta, "profile", prof) < 0))
		goto oom;
	if (json_object_set_new(meta, "tag", tags) < 0) {
		tags = NULL;
		goto oom;
	}
	return set(res, "meta", meta);
oom:
	json_decref(tags);
	json_decref(meta);
	return -ENOMEM;
}

/* A generated narrative would still describe the old state: drop it (an authored one stays). */
static void drop_generated_text(json_t *res)
{
	if (str_eq(json_object_get(json_object_get(res, "text"), "status"), "generated"))
		json_object_del(res, "text");
}

/*
 * The cached MedicationRequest, stopped, into *res (a new reference; the
 * cached body is not changed) on 0; sets the entry's target and if_match.
 * Else a refusal or -ENOMEM.
 */
static int build_med_stop(build *b, json_t **res, const char *reason)
{
	int rc = check_current(b, "MedicationRequest", "subject", "MedicationRequest");
	if (rc)
		return rc;
	const json_t *cur = b->in->current;
	const char *id = str_at(cur, "id"), *status = str_at(cur, "status");
	char buf[48];
	if (status && strcmp(status, "stopped") == 0)
		return fail(b, "current: MedicationRequest/%s is already stopped", id);
	if (!status || (strcmp(status, "active") != 0 && strcmp(status, "on-hold") != 0 &&
			strcmp(status, "draft") != 0 && strcmp(status, "unknown") != 0))
		return fail(b, "current: MedicationRequest/%s is %s; only an active, on-hold or draft request can be "
			    "stopped", id, status ? show_str(buf, status) : "without status");
	json_t *mr = json_deep_copy(cur);
	if (!mr)
		return -ENOMEM;
	rc = set(mr, "status", json_string("stopped"));
	if (rc == 0 && reason)
		rc = set(mr, "statusReason", json_pack("{s:s}", "text", reason));
	else if (rc == 0)
		json_object_del(mr, "statusReason");
	if (rc == 0)
		rc = update_meta(mr);
	if (rc) {
		json_decref(mr);
		return rc;
	}
	drop_generated_text(mr);
	*res = mr;
	return 0;
}

/*
 * The cached AllergyIntolerance, entered in error, into *res (a new
 * reference) on 0; sets target and if_match. Else a refusal or -ENOMEM.
 */
static int build_allergy_error(build *b, json_t **res, const char *reason)
{
	int rc = check_current(b, "AllergyIntolerance", "patient", "AllergyIntolerance");
	if (rc)
		return rc;
	const json_t *cur = b->in->current, *c;
	const char *id = str_at(cur, "id");
	size_t i;
	json_array_foreach(json_object_get(json_object_get(cur, "verificationStatus"), "coding"), i, c)
		if (str_eq(json_object_get(c, "code"), "entered-in-error"))
			return fail(b, "current: AllergyIntolerance/%s is already entered-in-error", id);
	json_t *ai = json_deep_copy(cur);
	if (!ai)
		return -ENOMEM;
	rc = set(ai, "verificationStatus",
		 concept(CHART_SYSTEM_ALLERGY_VERIFICATION, "entered-in-error", "Entered in Error"));
	/* ait-2: no clinicalStatus on an allergy entered in error. */
	json_object_del(ai, "clinicalStatus");
	if (rc == 0 && reason) {
		json_t *notes = json_object_get(ai, "note");
		if (!json_is_array(notes)) {
			rc = set(ai, "note", json_array());
			notes = json_object_get(ai, "note");
		}
		if (rc == 0 && json_array_append_new(notes, json_pack("{s:o, s:s, s:s}", "authorReference", user_ref(b),
								      "time", b->out->recorded, "text", reason)) < 0)
			rc = -ENOMEM;
	}
	if (rc == 0)
		rc = update_meta(ai);
	if (rc) {
		json_decref(ai);
		return rc;
	}
	drop_generated_text(ai);
	*res = ai;
	return 0;
}

/* ------------------------------------------------------------------------
 * Provenance, uuid, chart_build
 */

/* The Provenance of the entry being built (target, uuid and times set): a new reference, NULL if out of memory. */
static json_t *provenance(const build *b, const char *reason)
{
	const chart_entry *e = b->out;
	bool update = e->target != NULL;
	char id[48], target[160];

	snprintf(id, sizeof(id), "dt-%s", e->uuid);
	if (update)
		snprintf(target, sizeof(target), "%s", e->target);
	else
		snprintf(target, sizeof(target), "urn:uuid:%s", e->uuid);
	json_t *p = json_pack("{s:s, s:s, s:{s:[o]}, s:[{s:s}], s:s, s:s, s:o, s:[{s:o, s:o}]}", "resourceType",
			      "Provenance", "id", id, "meta", "tag", downtime_tag(), "target", "reference", target,
			      "occurredDateTime", e->effective, "recorded", e->recorded, "activity",
			      concept(CHART_SYSTEM_DATA_OPERATION, update ? "UPDATE" : "CREATE",
				      update ? "update" : "create"),
			      "agent", "type", concept(CHART_SYSTEM_PROV_PARTICIPANT, "author", "Author"), "who",
			      user_ref(b));
	if (p && reason && set(p, "reason", json_pack("[{s:s}]", "text", reason)) < 0) {
		json_decref(p);
		return NULL;
	}
	return p;
}

/* A random (v4) uuid, lower case. */
static int make_uuid(char out[37])
{
	unsigned char r[16];
	if (RAND_bytes(r, sizeof(r)) != 1)
		return -EIO;
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
		 r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
	return 0;
}

/* See chart.h: static names. */
const char *chart_kind_name(chart_kind kind)
{
	switch (kind) {
	case CHART_VITALS:
		return "vitals";
	case CHART_NOTE:
		return "note";
	case CHART_MED_ADMIN:
		return "med-admin";
	case CHART_MED_STOP:
		return "med-stop";
	case CHART_ALLERGY_ERROR:
		return "allergy-error";
	}
	return "?";
}

/* See chart.h: 0 and *kind, or CHART_E_INVALID. */
int chart_kind_parse(const char *s, chart_kind *kind)
{
	for (int k = CHART_VITALS; s && k <= CHART_ALLERGY_ERROR; k++) {
		if (strcmp(s, chart_kind_name((chart_kind)k)) == 0) {
			*kind = (chart_kind)k;
			return 0;
		}
	}
	return CHART_E_INVALID;
}

/* See chart.h. */
bool chart_kind_is_update(chart_kind kind)
{
	return kind == CHART_MED_STOP || kind == CHART_ALLERGY_ERROR;
}

/* Release what e owns (JSON references, target, if_match); e is CHART_ENTRY_NULL after. */
void chart_entry_deinit(chart_entry *e)
{
	if (!e)
		return;
	json_decref(e->resource);
	json_decref(e->provenance);
	free(e->target);
	free(e->if_match);
	*e = (chart_entry)CHART_ENTRY_NULL;
}

/* The checks every kind shares: patient, user, "at". Fills effective/recorded. */
static int check_common(build *b)
{
	const chart_input *in = b->in;
	chart_entry *e = b->out;
	char buf[48];
	const char *display;

	if (in->kind < CHART_VITALS || in->kind > CHART_ALLERGY_ERROR)
		return fail(b, "kind: unknown");
	if (!in->patient_id || !in->patient_id[0])
		return fail(b, "patient_id: required");
	if (!fhir_id_ok(in->patient_id))
		return fail(b, "patient_id: not a FHIR id (letters, digits, '-' and '.', at most 64), got '%s'",
			    show_str(buf, in->patient_id));
	snprintf(b->patient_ref, sizeof(b->patient_ref), "Patient/%s", in->patient_id);
	if (!in->user || is_blank(in->user, strlen(in->user)))
		return fail(b, "user: required");
	int rc = text_field(b, "user", in->user, SHORT_MAX, &display);
	if (rc == 0)
		rc = text_field(b, "user_display", in->user_display, SHORT_MAX, &display);
	if (rc)
		return rc;

	e->recorded_ms = b->site->now_ms;
	format_utc(e->recorded_ms, e->recorded);
	if (!in->at) {
		e->effective_ms = e->recorded_ms;
		memcpy(e->effective, e->recorded, sizeof(e->effective));
		return 0;
	}
	switch (at_parse(in->at, e->effective, &e->effective_ms)) {
	case AT_OK:
		break;
	case AT_NO_TIME:
		return fail(b, "at: give a time with an offset (e.g. 2026-11-29T08:15:00+01:00 or ...Z)");
	case AT_NO_OFFSET:
		return fail(b, "at: give an offset (e.g. 2026-11-29T08:15:00+01:00 or ...Z)");
	case AT_RANGE:
		return fail(b, "at: no such date, time or offset, got '%s'", show_str(buf, in->at));
	default:
		return fail(b, "at: expected a date-time like 2026-11-29T08:15:00+01:00 (or ...Z), got '%s'",
			    show_str(buf, in->at));
	}
	if (e->effective_ms > e->recorded_ms + CHART_FUTURE_SLACK_MS)
		return fail(b, "at: in the future");
	if (e->effective_ms < e->recorded_ms - CHART_OLD_CONFIRM_MS)
		ask(b, "at: %s is more than 72 hours ago", e->effective);
	return 0;
}

/*
 * Validate and build (see chart.h). Owns nothing on failure: whatever was
 * built is released and *out reset.
 */
int chart_build(const chart_input *in, const chart_site *site, chart_entry *out, char *err, size_t err_size)
{
	build b = { .in = in, .site = site, .err = err, .err_size = err_size, .out = out };
	json_t *res = NULL;
	const char *reason = NULL;
	int rc;

	if (err && err_size)
		err[0] = 0;
	if (!out)
		return -EINVAL;
	*out = (chart_entry)CHART_ENTRY_NULL;
	if (!in || !site || !uri_ok(site->identifier_system) || (site->user_system && !uri_ok(site->user_system))) {
		if (err && err_size)
			snprintf(err, err_size, "site: identifier_system (and user_system) must be URIs");
		return -EINVAL;
	}
	out->kind = in->kind;
	if (site->user_system) {
		b.user_system = site->user_system;
	} else {
		b.user_system_owned = malloc(strlen(site->identifier_system) + sizeof("/user"));
		if (!b.user_system_owned)
			return -ENOMEM;
		sprintf(b.user_system_owned, "%s/user", site->identifier_system);
		b.user_system = b.user_system_owned;
	}
	rc = check_common(&b);
	if (rc == 0 && chart_kind_is_update(in->kind))
		rc = text_field(&b, "reason", in->reason, REASON_MAX, &reason);
	if (rc == 0)
		rc = make_uuid(out->uuid);
	if (rc == 0) {
		switch (in->kind) {
		case CHART_VITALS:
			rc = build_vitals(&b, &res);
			break;
		case CHART_NOTE:
			rc = build_note(&b, &res);
			break;
		case CHART_MED_ADMIN:
			rc = build_med_admin(&b, &res);
			break;
		case CHART_MED_STOP:
			rc = build_med_stop(&b, &res, reason);
			break;
		case CHART_ALLERGY_ERROR:
			rc = build_allergy_error(&b, &res, reason);
			break;
		}
	}
	if (rc == 0 && b.confirm_len > 0 && !in->confirm) {
		if (err && err_size)
			snprintf(err, err_size, "%s; confirm to save it", b.confirm);
		rc = CHART_E_CONFIRM;
	}
	if (rc == 0) {
		out->resource = res;
		res = NULL;
		out->provenance = provenance(&b, reason);
		if (!out->provenance)
			rc = -ENOMEM;
	}
	json_decref(res);
	free(b.user_system_owned);
	if (rc) {
		if (rc == -ENOMEM && err && err_size)
			snprintf(err, err_size, "out of memory");
		else if (rc == -EIO && err && err_size)
			snprintf(err, err_size, "the random number generator failed");
		chart_entry_deinit(out);
	}
	return rc;
}

/* ------------------------------------------------------------------------
 * The transaction Bundle
 */

/*
 * One part of a token search value: FHIR's escapes first ('\' before
 * ',', '$', '|' and '\'), then percent-encoding of everything but
 * unreserved characters, ':', '/' and '@'. Appends to out (sized 6x + 1).
 */
static char *search_escape(char *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\\' || c == ',' || c == '$' || c == '|') {
			memcpy(out, "%5C", 3);
			out += 3;
		}
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		    c == '.' || c == '_' || c == '~' || c == ':' || c == '/' || c == '@') {
			*out++ = (char)c;
		} else {
			*out++ = '%';
			*out++ = hex[c >> 4];
			*out++ = hex[c & 15];
		}
	}
	*out = 0;
	return out;
}

/* The Bundle entry of one item (the create or update). */
static json_t *tx_entry(const chart_tx_item *it, const char *system)
{
	const char *type = json_string_value(json_object_get(it->resource, "resourceType"));
	json_t *res = json_deep_copy(it->resource);

	if (!res)
		return NULL;
	if (it->target)
		return json_pack("{s:o, s:{s:s, s:s, s:s}}", "resource", res, "request", "method", "PUT", "url",
				 it->target, "ifMatch", it->if_match);

	size_t n = sizeof("identifier=|") + 6 * (strlen(system) + strlen(it->uuid));
	char *ine = malloc(n), *full = malloc(strlen(it->uuid) + sizeof("urn:uuid:"));
	json_t *e = NULL;
	if (ine && full) {
		char *p = ine + sprintf(ine, "identifier=");
		p = search_escape(p, system);
		*p++ = '|';
		search_escape(p, it->uuid);
		sprintf(full, "urn:uuid:%s", it->uuid);
		e = json_pack("{s:s, s:O, s:{s:s, s:s, s:s}}", "fullUrl", full, "resource", res, "request", "method",
			      "POST", "url", type, "ifNoneExist", ine);
	}
	json_decref(res);
	free(ine);
	free(full);
	return e;
}

/* The Provenance entry of one item; its id must be dt-<uuid> (set when missing). */
static json_t *tx_provenance(const chart_tx_item *it)
{
	char id[128], url[160];

	if (strlen(it->uuid) > 100)
		return NULL;
	snprintf(id, sizeof(id), "dt-%s", it->uuid);
	const char *have = json_string_value(json_object_get(it->provenance, "id"));
	if (have && strcmp(have, id) != 0)
		return NULL;
	json_t *p = json_deep_copy(it->provenance);
	if (!p || (!have && set(p, "id", json_string(id)) < 0)) {
		json_decref(p);
		return NULL;
	}
	snprintf(url, sizeof(url), "Provenance/%s", id);
	return json_pack("{s:o, s:{s:s, s:s}}", "resource", p, "request", "method", "PUT", "url", url);
}

/*
 * See chart.h. Every item is checked before anything is built; the Bundle
 * (a new reference) owns deep copies of the borrowed resources.
 */
json_t *chart_transaction(const chart_tx_item *items, size_t n, const char *identifier_system)
{
	if (!items || n == 0 || !uri_ok(identifier_system))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const chart_tx_item *it = &items[i];
		const char *type = json_string_value(json_object_get(it->resource, "resourceType"));
		char prov_id[72];
		if (!it->uuid || strlen(it->uuid) > 61 || (snprintf(prov_id, sizeof(prov_id), "dt-%s", it->uuid),
							     !fhir_id_ok(prov_id)) ||
		    !type || !type_name_ok(type, strlen(type)) ||
		    !json_is_object(it->provenance) || (it->target && (!it->if_match || !it->target[0])))
			return NULL;
	}
	json_t *entries = json_array();
	json_t *bundle = json_pack("{s:s, s:s, s:o}", "resourceType", "Bundle", "type", "transaction", "entry",
				   entries);
	if (!bundle)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (json_array_append_new(entries, tx_entry(&items[i], identifier_system)) < 0 ||
		    json_array_append_new(entries, tx_provenance(&items[i])) < 0) {
			json_decref(bundle);
			return NULL;
		}
	}
	return bundle;
}

/* ------------------------------------------------------------------------
 * The transaction-response
 */

/* "201", "201 Created" -> 201; -1 otherwise. */
static int status_parse(const char *s)
{
	if (!s || s[0] < '1' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' ||
	    (s[3] != 0 && s[3] != ' '))
		return -1;
	return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

/* A FHIR id given as s[0..n). */
static bool seg_id_ok(const char *s, size_t n)
{
	char buf[72];
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = 0;
	return fhir_id_ok(buf);
}

/*
 * The Type/id[/_history/v] tail of a location (absolute or relative; a
 * query or fragment dropped) into out. Returns 0, 1 if it has no such tail,
 * 2 if too long.
 */
static int location_tail(const char *loc, char *out, size_t size)
{
	size_t n = strcspn(loc, "?#");
	size_t start[4], len[4], count = 0;  /* the last segments, [0] the last one */

	for (size_t end = n;;) {
		size_t s = end;
		while (s > 0 && loc[s - 1] != '/')
			s--;
		start[count] = s;
		len[count] = end - s;
		count++;
		if (count == 4 || s == 0)
			break;
		end = s - 1;
	}
	size_t take;
	if (count == 4 && len[1] == 8 && strncmp(loc + start[1], "_history", 8) == 0)
		take = 4;
	else if (count >= 2)
		take = 2;
	else
		return 1;
	if (!type_name_ok(loc + start[take - 1], len[take - 1]) || !seg_id_ok(loc + start[take - 2], len[take - 2]) ||
	    (take == 4 && !seg_id_ok(loc + start[0], len[0])))
		return 1;
	size_t tail = n - start[take - 1];
	if (tail >= size)
		return 2;
	memcpy(out, loc + start[take - 1], tail);
	out[tail] = 0;
	return 0;
}

/* Write a response error into err; returns CHART_E_RESPONSE. */
__attribute__((format(printf, 3, 4))) static int resp_fail(char *err, size_t err_size, const char *fmt, ...)
{
	if (err && err_size) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return CHART_E_RESPONSE;
}

/*
 * See chart.h. Parses body with Jansson (its error text is not quoted: it
 * may hold bytes of the body); fills out only when every entry checks out.
 */
int chart_parse_transaction_response(const char *body, size_t len, size_t n_items, chart_tx_result *out, char *err,
				     size_t err_size)
{
	json_error_t je;
	char buf[48];
	int rc = 0;

	if (err && err_size)
		err[0] = 0;
	if ((!body && len) || (!out && n_items) || n_items > SIZE_MAX / 2 / sizeof(*out))
		return -EINVAL;
	if (n_items)
		memset(out, 0, n_items * sizeof(*out));
	json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return resp_fail(err, err_size, "response: not JSON (line %d, column %d)", je.line, je.column);
	const char *rt = str_at(root, "resourceType"), *type = str_at(root, "type");
	json_t *entries = json_object_get(root, "entry");
	if (!rt || strcmp(rt, "Bundle") != 0) {
		rc = resp_fail(err, err_size, "response: not a Bundle");
	} else if (!type || strcmp(type, "transaction-response") != 0) {
		rc = resp_fail(err, err_size, "response: Bundle type '%s', expected transaction-response",
			       type ? show_str(buf, type) : "(none)");
	} else if (json_array_size(entries) != 2 * n_items || (!json_is_array(entries) && n_items)) {
		rc = resp_fail(err, err_size, "response: %zu entries, expected %zu (2 per item)",
			       json_array_size(entries), 2 * n_items);
	}
	for (size_t i = 0; rc == 0 && i < 2 * n_items; i++) {
		const json_t *resp = json_object_get(json_array_get(entries, i), "response");
		const char *st = str_at(resp, "status"), *loc = str_at(resp, "location");
		int status = status_parse(st);
		char where[80];
		snprintf(where, sizeof(where), "entry %zu (item %zu, %s)", i, i / 2, i % 2 ? "provenance" : "entry");
		if (!st) {
			rc = resp_fail(err, err_size, "%s: no response.status", where);
		} else if (status < 0) {
			rc = resp_fail(err, err_size, "%s: response.status '%s' is not an HTTP status", where,
				       show_str(buf, st));
		} else if (i % 2) {
			out[i / 2].prov_status = status;
		} else if ((out[i / 2].status = status) < 200 || status > 299) {
			continue;   /* a failed entry has no location */
		} else if (!loc || !loc[0]) {
			rc = resp_fail(err, err_size, "%s: status %d without a location", where, status);
		} else {
			int lr = location_tail(loc, out[i / 2].location, sizeof(out[i / 2].location));
			if (lr == 2)
				rc = resp_fail(err, err_size, "%s: location too long (%zu bytes)", where, strlen(loc));
			else if (lr)
				rc = resp_fail(err, err_size, "%s: location is not Type/id[/_history/v]", where);
		}
	}
	json_decref(root);
	if (rc && n_items)
		memset(out, 0, n_items * sizeof(*out));
	return rc;
}

/* ------------------------------------------------------------------------
 * Patient reference rewrite
 */

/* Rewrite "reference": from to to under j, recursively; the count, or -ENOMEM. */
static int rewrite(json_t *j, const char *from, const char *to)
{
	int count = 0, rc;
	const char *key;
	json_t *v;
	size_t i;

	if (json_is_object(j)) {
		json_object_foreach(j, key, v) {
			if (strcmp(key, "reference") == 0 && str_eq(v, from)) {
				if (json_string_set(v, to) < 0)
					return -ENOMEM;
				count++;
			} else if ((rc = rewrite(v, from, to)) < 0) {
				return rc;
			} else {
				count += rc;
			}
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v) {
			if ((rc = rewrite(v, from, to)) < 0)
				return rc;
			count += rc;
		}
	}
	return count;
}

/* See chart.h. */
int chart_patient_ref_rewrite(json_t *resource, const char *from_id, const char *to_id)
{
	char from[80], to[80];

	if (!resource || !fhir_id_ok(from_id) || !fhir_id_ok(to_id))
		return -EINVAL;
	snprintf(from, sizeof(from), "Patient/%s", from_id);
	snprintf(to, sizeof(to), "Patient/%s", to_id);
	return rewrite(resource, from, to);
}

/* See chart.h: a malloc'd text the caller frees, or NULL. */
char *chart_dumps(const json_t *j)
{
	return j ? json_dumps(j, CHART_DUMP_FLAGS) : NULL;
}
