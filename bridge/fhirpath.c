/*
 * fhirpath: the FHIRPath subset of mapping files (see fhirpath.h).
 *
 * An expression compiles into a flat list of steps. Evaluation walks the
 * steps over a collection held in one of two buffers of the caller's
 * context, swapping them at each step, so that curating thousands of
 * resources allocates only while the buffers still grow. The left side of
 * a where() comparison is a plain member chain: it is walked recursively
 * (depth bounded at compile time) without a collection at all.
 */
#include "bridge/fhirpath.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FP_MAX_INDEX 999999
#define FP_MAX_STEPS 64
#define FP_MAX_CMP_NAMES 16
#define FP_MAX_CMPS 16

enum step_kind {
	ST_TYPE,    /* root resourceType check */
	ST_NAME,
	ST_FIRST,
	ST_LAST,
	ST_WHERE,
};

typedef struct fp_cmp {
	char **names;
	size_t n_names;
	char *lit;        /* NULL: %mrn_system */
} fp_cmp;

typedef struct fp_step {
	enum step_kind kind;
	char *name;       /* ST_TYPE, ST_NAME */
	fp_cmp *cmps;     /* ST_WHERE */
	size_t n_cmps;
	size_t *idx;      /* [n] after the step */
	size_t n_idx;
} fp_step;

struct fhirpath {
	char *text;
	fp_step *steps;
	size_t n;
	bool uses_mrn;
};

/* FHIR R4 data types that can follow a choice element's base name
 * (value[x], effective[x], onset[x], ...). */
static const char *const choice_types[] = {
	"Address", "Age", "Annotation", "Attachment", "Base64Binary", "Boolean", "Canonical", "Code",
	"CodeableConcept", "Coding", "ContactDetail", "ContactPoint", "Contributor", "Count", "DataRequirement",
	"Date", "DateTime", "Decimal", "Distance", "Dosage", "Duration", "Expression", "HumanName", "Id",
	"Identifier", "Instant", "Integer", "Markdown", "Meta", "Money", "Oid", "ParameterDefinition", "Period",
	"PositiveInt", "Quantity", "Range", "Ratio", "Reference", "RelatedArtifact", "SampledData", "Signature",
	"String", "Time", "Timing", "TriggerDefinition", "UnsignedInt", "Uri", "Url", "UsageContext", "Uuid", NULL,
};

/* ------------------------------------------------------------------------
 * Parsing.
 */

typedef struct pctx {
	const char *s;
	size_t i;
	const char *msg;
	size_t err_off;
	fhirpath *p;
} pctx;

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int perr(pctx *x, size_t off, const char *msg)
{
	x->err_off = off;
	x->msg = msg;
	return FHIRPATH_E_SYNTAX;
}

static void skip_ws(pctx *x)
{
	while (x->s[x->i] == ' ' || x->s[x->i] == '\t')
		x->i++;
}

/* A name at x->i into *out (malloc'd). */
static int parse_name(pctx *x, char **out)
{
	size_t start = x->i;

	if (!is_alpha(x->s[x->i]))
		return perr(x, x->i, "expected an element name");
	while (is_alpha(x->s[x->i]) || is_digit(x->s[x->i]) || x->s[x->i] == '_')
		x->i++;
	if (x->i - start > 64)
		return perr(x, start, "element name longer than 64 characters");
	*out = strndup(x->s + start, x->i - start);
	return *out ? 0 : -ENOMEM;
}

static bool at_word(pctx *x, const char *w)
{
	size_t n = strlen(w);
	return strncmp(x->s + x->i, w, n) == 0;
}

/* A quoted literal or %mrn_system. */
static int parse_literal(pctx *x, fp_cmp *c)
{
	size_t start = x->i;

	if (x->s[x->i] == '%') {
		x->i++;
		char *var = NULL;
		int r = parse_name(x, &var);
		if (r)
			return r < 0 ? r : perr(x, start, "expected %mrn_system");
		bool ok = strcmp(var, "mrn_system") == 0;
		free(var);
		if (!ok)
			return perr(x, start, "unknown variable (only %mrn_system is defined)");
		x->p->uses_mrn = true;
		c->lit = NULL;
		return 0;
	}
	if (x->s[x->i] != '\'')
		return perr(x, x->i, "expected a quoted string or %mrn_system");
	x->i++;
	size_t n = 0;
	char *buf = malloc(strlen(x->s + x->i) + 1);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		char ch = x->s[x->i];
		if (!ch) {
			free(buf);
			return perr(x, start, "unterminated string");
		}
		if (ch == '\'') {
			x->i++;
			break;
		}
		if (ch == '\\') {
			char e = x->s[x->i + 1];
			if (e != '\'' && e != '\\') {
				free(buf);
				return perr(x, x->i, "unknown escape (only \\' and \\\\)");
			}
			buf[n++] = e;
			x->i += 2;
			continue;
		}
		buf[n++] = ch;
		x->i++;
	}
	buf[n] = '\0';
	c->lit = buf;
	return 0;
}

static int parse_cmp(pctx *x, fp_cmp *c)
{
	int r;

	c->names = calloc(FP_MAX_CMP_NAMES, sizeof(char *));
	if (!c->names)
		return -ENOMEM;
	for (;;) {
		if (c->n_names == FP_MAX_CMP_NAMES)
			return perr(x, x->i, "too many names in a comparison");
		if ((r = parse_name(x, &c->names[c->n_names])))
			return r;
		c->n_names++;
		if (x->s[x->i] != '.')
			break;
		x->i++;
	}
	skip_ws(x);
	if (x->s[x->i] != '=')
		return perr(x, x->i, "expected '='");
	x->i++;
	skip_ws(x);
	return parse_literal(x, c);
}

static int parse_where(pctx *x, fp_step *st)
{
	int r;

	st->cmps = calloc(FP_MAX_CMPS, sizeof(*st->cmps));
	if (!st->cmps)
		return -ENOMEM;
	skip_ws(x);
	for (;;) {
		if (st->n_cmps == FP_MAX_CMPS)
			return perr(x, x->i, "too many comparisons in where()");
		st->n_cmps++;
		if ((r = parse_cmp(x, &st->cmps[st->n_cmps - 1])))
			return r;
		size_t before = x->i;
		skip_ws(x);
		if (x->s[x->i] == ')') {
			x->i++;
			return 0;
		}
		if (x->i == before || !at_word(x, "and") || (x->s[x->i + 3] != ' ' && x->s[x->i + 3] != '\t'))
			return perr(x, x->i, "expected 'and' or ')'");
		x->i += 3;
		skip_ws(x);
	}
}

static int parse_indexes(pctx *x, fp_step *st)
{
	while (x->s[x->i] == '[') {
		size_t start = ++x->i;
		size_t v = 0;
		if (!is_digit(x->s[x->i]))
			return perr(x, x->i, "expected an index (digits)");
		while (is_digit(x->s[x->i])) {
			v = v * 10 + (size_t)(x->s[x->i] - '0');
			if (v > FP_MAX_INDEX)
				return perr(x, start, "index too large");
			x->i++;
		}
		if (x->s[x->i] != ']')
			return perr(x, x->i, "expected ']'");
		x->i++;
		size_t *n = realloc(st->idx, (st->n_idx + 1) * sizeof(*n));
		if (!n)
			return -ENOMEM;
		st->idx = n;
		st->idx[st->n_idx++] = v;
	}
	return 0;
}

static int parse_step(pctx *x, fp_step *st, bool first)
{
	size_t start = x->i;
	int r;

	if ((r = parse_name(x, &st->name)))
		return r;
	if (x->s[x->i] == '(') {
		x->i++;
		if (strcmp(st->name, "first") == 0 || strcmp(st->name, "last") == 0) {
			st->kind = st->name[0] == 'f' ? ST_FIRST : ST_LAST;
			if (x->s[x->i] != ')')
				return perr(x, x->i, "expected ')'");
			x->i++;
		} else if (strcmp(st->name, "where") == 0) {
			st->kind = ST_WHERE;
			if ((r = parse_where(x, st)))
				return r;
		} else {
			return perr(x, start, "unknown function (first(), last() and where() are supported)");
		}
		free(st->name);
		st->name = NULL;
	} else if (st->name[0] >= 'A' && st->name[0] <= 'Z') {
		if (!first)
			return perr(x, start, "a resource type name can only start the path");
		st->kind = ST_TYPE;
	} else {
		st->kind = ST_NAME;
	}
	return parse_indexes(x, st);
}

static void step_deinit(fp_step *st)
{
	free(st->name);
	for (size_t i = 0; i < st->n_cmps; i++) {
		for (size_t j = 0; j < FP_MAX_CMP_NAMES && st->cmps[i].names; j++)
			free(st->cmps[i].names[j]);
		free(st->cmps[i].names);
		free(st->cmps[i].lit);
	}
	free(st->cmps);
	free(st->idx);
}

void fhirpath_free(fhirpath *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		step_deinit(&p->steps[i]);
	free(p->steps);
	free(p->text);
	free(p);
}

static int parse_all(pctx *x)
{
	fhirpath *p = x->p;
	int r;

	if (!x->s[0])
		return perr(x, 0, "empty path");
	for (;;) {
		if (p->n == FP_MAX_STEPS)
			return perr(x, x->i, "path too long");
		p->n++;
		if ((r = parse_step(x, &p->steps[p->n - 1], p->n == 1)))
			return r;
		if (!x->s[x->i])
			break;
		if (x->s[x->i] != '.')
			return perr(x, x->i, "expected '.', '[' or the end of the path");
		x->i++;
	}
	if (p->n == 1 && p->steps[0].kind == ST_TYPE)
		return perr(x, x->i, "expected '.' and an element after the resource type");
	return 0;
}

int fhirpath_parse(const char *expr, fhirpath **out, size_t *err_off, const char **err_msg)
{
	pctx x = { .s = expr };
	int r;

	*out = NULL;
	x.p = calloc(1, sizeof(*x.p));
	if (!x.p)
		return -ENOMEM;
	x.p->text = strdup(expr);
	x.p->steps = calloc(FP_MAX_STEPS, sizeof(fp_step));
	if (!x.p->text || !x.p->steps) {
		fhirpath_free(x.p);
		return -ENOMEM;
	}
	r = parse_all(&x);
	if (r) {
		/* A step that failed half-way is counted and freed with the rest. */
		if (r > 0) {
			*err_off = x.err_off;
			*err_msg = x.msg;
		}
		fhirpath_free(x.p);
		return r;
	}
	*out = x.p;
	return 0;
}

const char *fhirpath_text(const fhirpath *p)
{
	return p->text;
}

bool fhirpath_uses_mrn_system(const fhirpath *p)
{
	return p->uses_mrn;
}

/* ------------------------------------------------------------------------
 * Evaluation.
 */

static bool choice_suffix(const char *s)
{
	for (size_t i = 0; choice_types[i]; i++)
		if (strcmp(s, choice_types[i]) == 0)
			return true;
	return false;
}

const json_t *fhirpath_member(const json_t *obj, const char *name)
{
	const char *key;
	json_t *v;
	size_t n;

	if (!json_is_object(obj))
		return NULL;
	v = json_object_get(obj, name);
	if (v)
		return v;
	n = strlen(name);
	json_object_foreach((json_t *)obj, key, v) {
		if (strncmp(key, name, n) == 0 && key[n] >= 'A' && key[n] <= 'Z' && choice_suffix(key + n))
			return v;
	}
	return NULL;
}

static int coll_push(fhirpath_coll *c, const json_t *node, const json_t *parent)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		fhirpath_item *v = realloc(c->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = (fhirpath_item){ node, parent };
	return 0;
}

/* Count the nodes the member chain names[k..] gives from node (stops at 2);
 * *one receives the last one found. */
static size_t walk_count(const json_t *node, char *const *names, size_t k, size_t n, const json_t **one)
{
	if (k == n) {
		*one = node;
		return 1;
	}
	const json_t *v = fhirpath_member(node, names[k]);
	if (!v)
		return 0;
	if (!json_is_array(v))
		return walk_count(v, names, k + 1, n, one);
	size_t count = 0, i;
	for (i = 0; i < json_array_size(v) && count < 2; i++)
		count += walk_count(json_array_get(v, i), names, k + 1, n, one);
	return count;
}

static bool cmp_holds(const fp_cmp *c, const json_t *node, const char *mrn_system)
{
	const json_t *one = NULL;
	const char *want = c->lit ? c->lit : mrn_system;

	if (!want)
		return false;
	if (walk_count(node, c->names, 0, c->n_names, &one) != 1 || !json_is_string(one))
		return false;
	return strcmp(json_string_value(one), want) == 0;
}

static int step_eval(const fp_step *st, const fhirpath_coll *in, fhirpath_coll *out, const char *mrn_system)
{
	int r = 0;

	out->n = 0;
	switch (st->kind) {
	case ST_TYPE:
		for (size_t i = 0; i < in->n && !r; i++) {
			const char *t = json_string_value(json_object_get(in->v[i].node, "resourceType"));
			if (t && strcmp(t, st->name) == 0)
				r = coll_push(out, in->v[i].node, in->v[i].parent);
		}
		break;
	case ST_NAME:
		for (size_t i = 0; i < in->n && !r; i++) {
			const json_t *v = fhirpath_member(in->v[i].node, st->name);
			if (!v)
				continue;
			if (!json_is_array(v)) {
				r = coll_push(out, v, in->v[i].node);
				continue;
			}
			for (size_t j = 0; j < json_array_size(v) && !r; j++)
				r = coll_push(out, json_array_get(v, j), in->v[i].node);
		}
		break;
	case ST_FIRST:
	case ST_LAST:
		if (in->n)
			r = coll_push(out, in->v[st->kind == ST_FIRST ? 0 : in->n - 1].node,
				      in->v[st->kind == ST_FIRST ? 0 : in->n - 1].parent);
		break;
	case ST_WHERE:
		for (size_t i = 0; i < in->n && !r; i++) {
			bool keep = true;
			for (size_t k = 0; k < st->n_cmps && keep; k++)
				keep = cmp_holds(&st->cmps[k], in->v[i].node, mrn_system);
			if (keep)
				r = coll_push(out, in->v[i].node, in->v[i].parent);
		}
		break;
	}
	return r;
}

/* [n] in place: keep only the n-th item. */
static void index_apply(fhirpath_coll *c, size_t idx)
{
	if (idx >= c->n) {
		c->n = 0;
		return;
	}
	c->v[0] = c->v[idx];
	c->n = 1;
}

int fhirpath_eval(const fhirpath *p, const json_t *root, fhirpath_ctx *x, const fhirpath_coll **out)
{
	fhirpath_coll *cur = &x->c[0], *next = &x->c[1];
	int r;

	cur->n = 0;
	if ((r = coll_push(cur, root, NULL)))
		return r;
	for (size_t i = 0; i < p->n; i++) {
		if ((r = step_eval(&p->steps[i], cur, next, x->mrn_system)))
			return r;
		for (size_t k = 0; k < p->steps[i].n_idx; k++)
			index_apply(next, p->steps[i].idx[k]);
		fhirpath_coll *t = cur;
		cur = next;
		next = t;
		if (cur->n == 0)
			break;
	}
	*out = cur;
	return 0;
}

void fhirpath_ctx_deinit(fhirpath_ctx *x)
{
	free(x->c[0].v);
	free(x->c[1].v);
	x->c[0] = (fhirpath_coll){ 0 };
	x->c[1] = (fhirpath_coll){ 0 };
}
