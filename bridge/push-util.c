/*
 * push-util — see push-util.h.
 */
#include "bridge/push-util.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- record names ---------------------------------------------------------- */

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v';
}

/* The trimmed part of name: [*b, *b + *len). */
static void trimmed(const char *name, const char **b, size_t *len)
{
	const char *e = name + strlen(name);
	while (*name && is_ws(*name))
		name++;
	while (e > name && is_ws(e[-1]))
		e--;
	*b = name;
	*len = (size_t)(e - name);
}

static char fold(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* FNV-1a over the folded, trimmed name. */
static size_t name_hash(const char *name)
{
	const char *b;
	size_t len;
	trimmed(name, &b, &len);
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)fold(b[i]);
		h *= 1099511628211ull;
	}
	return (size_t)(h ^ (h >> 32));
}

static bool name_equal(const char *x, const char *y)
{
	const char *bx, *by;
	size_t lx, ly;
	trimmed(x, &bx, &lx);
	trimmed(y, &by, &ly);
	if (lx != ly)
		return false;
	for (size_t i = 0; i < lx; i++)
		if (fold(bx[i]) != fold(by[i]))
			return false;
	return true;
}

/* The slot of name: where it is, or the empty slot where it would go. */
static size_t find_slot(const pu_recset *s, const char *name)
{
	size_t mask = s->n_slots - 1, i = name_hash(name) & mask;
	while (s->slots[i] && !name_equal(s->v[s->slots[i] - 1], name))
		i = (i + 1) & mask;
	return i;
}

static int grow_slots(pu_recset *s)
{
	size_t n = s->n_slots ? s->n_slots * 2 : 64;
	size_t *old = s->slots, old_n = s->n_slots;
	s->slots = calloc(n, sizeof(*s->slots));
	if (!s->slots) {
		s->slots = old;
		return -ENOMEM;
	}
	s->n_slots = n;
	for (size_t i = 0; i < old_n; i++)
		if (old[i])
			s->slots[find_slot(s, s->v[old[i] - 1])] = old[i];
	free(old);
	return 0;
}

int pu_recset_add(pu_recset *s, const char *name)
{
	/* At most half full: probes stay short. */
	if ((s->n + 1) * 2 > s->n_slots && grow_slots(s) != 0)
		return -ENOMEM;
	size_t at = find_slot(s, name);
	if (s->slots[at])
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		char **nv = realloc(s->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		s->v = nv;
		s->cap = cap;
	}
	if (!(s->v[s->n] = strdup(name)))
		return -ENOMEM;
	s->slots[at] = ++s->n;
	return 1;
}

bool pu_recset_has(const pu_recset *s, const char *name)
{
	return s->n_slots && s->slots[find_slot(s, name)] != 0;
}

void pu_recset_deinit(pu_recset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	free(s->slots);
	*s = (pu_recset)PU_RECSET_NULL;
}

char *pu_fold(const char *name)
{
	const char *b;
	size_t len;
	trimmed(name, &b, &len);
	char *out = malloc(len + 1);
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++)
		out[i] = fold(b[i]);
	out[len] = '\0';
	return out;
}

/* ---- scrubbing ------------------------------------------------------------- */

static bool word_at(const char *msg, const char *p, const char *w, size_t wl)
{
	return strncmp(p, w, wl) == 0 && (p == msg || !isalnum((unsigned char)p[-1])) &&
	       !isalnum((unsigned char)p[wl]);
}

char *pu_scrub(const char *message, const char *record, const char *value)
{
	size_t rl = record ? strlen(record) : 0, vl = value ? strlen(value) : 0;
	/* Each replacement is at most sizeof("[record]") - 1 bytes per byte of the message. */
	size_t cap = strlen(message) * 8 + 1;
	char *out = malloc(cap), *o = out;
	if (!out)
		return NULL;
	for (const char *p = message; *p;) {
		/* The longer first: a value may hold the record name or the reverse. */
		bool rec_first = rl >= vl;
		const char *w1 = rec_first ? record : value, *w2 = rec_first ? value : record;
		size_t l1 = rec_first ? rl : vl, l2 = rec_first ? vl : rl;
		if (l1 && word_at(message, p, w1, l1)) {
			o = stpcpy(o, rec_first ? "[record]" : "[value]");
			p += l1;
		} else if (l2 && word_at(message, p, w2, l2)) {
			o = stpcpy(o, rec_first ? "[value]" : "[record]");
			p += l2;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

/* ---- refusals -------------------------------------------------------------- */

/* REDCap's whole-request messages about a row's own content (REDCAP-API.md, Import). */
static const char *const row_caused[] = {
	"cannot contain a plus sign",                                   /* record name with + & # ' */
	"Record names cannot contain BR tags",                          /* record name with a line break */
	"Record names must be 100 characters or less",                  /* record name too long */
	"The record name cannot be empty",
	"The record id field (",                                        /* record id column missing */
	"has an invalid value for 'redcap_repeat_instance'",
	"must have a numeric value between '1' and '32767'",            /* repeat instance out of range */
	"The following fields were not found in the project as real data fields",
	"The following values of redcap_event_name are invalid",
	"Trying to import repeat instance/instrument fields",
	"exists on a Repeating Instrument named",
	"does not exist on the Repeating Instrument named",
	"is not designated for the event named",
	"The data being imported is not formatted correctly",
	"The following Data Access Group are invalid",                  /* redcap_data_access_group */
	"The record event name is missing",                             /* longitudinal, blank event */
};

bool pu_refusal_is_row_caused(const char *message)
{
	if (!message)
		return false;
	for (size_t i = 0; i < sizeof(row_caused) / sizeof(row_caused[0]); i++)
		if (strstr(message, row_caused[i]))
			return true;
	return false;
}
