/*
 * fhirpath — the small subset of FHIRPath that mapping files use to reach
 * into a FHIR resource (Jansson DOM), compiled once at load.
 *
 * Grammar (whitespace is allowed only inside where(...)):
 *
 *   path    = [ Type "." ] step *( "." step )
 *   step    = ( name / "first()" / "last()" / "where(" cond ")" ) *( "[" index "]" )
 *   Type    = an upper-case name: the root resource must have that resourceType
 *   name    = ALPHA *( ALPHA / DIGIT / "_" )
 *   index   = 1*DIGIT                     (0-based, at most 999999)
 *   cond    = cmp *( "and" cmp )
 *   cmp     = name *( "." name ) "=" literal
 *   literal = "'" chars "'"  (\' and \\ escape) / "%mrn_system"
 *
 * Semantics follow FHIRPath on a collection of nodes: a name selects that
 * member of every object in the collection, a JSON array contributes each
 * element (collections flatten), anything else contributes nothing. A
 * name that is not a member matches a choice element by its base name:
 * "effective" finds effectiveDateTime, effectivePeriod, effectiveInstant,
 * ... (the base name + a FHIR data type name; the first in the object's
 * order if a resource — wrongly — holds several). first() and last() keep
 * the first/last node, [n] the n-th; where(c) keeps the nodes for which
 * every comparison holds: its left side, evaluated from the node, gives
 * exactly one string equal to the literal (%mrn_system: the configured MRN
 * system; never equal when none is configured).
 *
 * Each result node comes with the object that holds it (its parent), so
 * that a caller can check the unit of a Quantity whose value it reads.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

enum {
	FHIRPATH_E_SYNTAX = 1,
};

typedef struct fhirpath fhirpath;

/*
 * Compile expr. Returns 0 with *out set, FHIRPATH_E_SYNTAX with *err_off
 * (byte offset into expr) and *err_msg (a static string) set, or -ENOMEM.
 */
int fhirpath_parse(const char *expr, fhirpath **out, size_t *err_off, const char **err_msg);
void fhirpath_free(fhirpath *p);

/* The expression as written. */
const char *fhirpath_text(const fhirpath *p);
/* Does it use %mrn_system? */
bool fhirpath_uses_mrn_system(const fhirpath *p);

typedef struct fhirpath_item {
	const json_t *node;
	const json_t *parent;   /* the object holding node; NULL for the root */
} fhirpath_item;

typedef struct fhirpath_coll {
	fhirpath_item *v;
	size_t n, cap;
} fhirpath_coll;

/* Scratch space for evaluations, reused from one call to the next. */
typedef struct fhirpath_ctx {
	const char *mrn_system;   /* value of %mrn_system, or NULL */
	fhirpath_coll c[2];
} fhirpath_ctx;

#define FHIRPATH_CTX_NULL { 0 }

/*
 * Evaluate p on root. *out points into x and stays valid until the next
 * evaluation with x. Returns 0 or -ENOMEM.
 */
int fhirpath_eval(const fhirpath *p, const json_t *root, fhirpath_ctx *x, const fhirpath_coll **out);
void fhirpath_ctx_deinit(fhirpath_ctx *x);

/* The member name of obj (exact, else a choice element name+Type), or NULL. */
const json_t *fhirpath_member(const json_t *obj, const char *name);
