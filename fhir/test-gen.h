/*
 * Synthetic search-result pages for fhir/ tests and the parse benchmark:
 * n Observations (~550 bytes each, compact JSON like a real server sends),
 * deterministic for a given n and seed.
 */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gen_buf {
	char *p;
	size_t len, cap;
} gen_buf;

__attribute__((format(printf, 2, 3)))
static inline void gen_printf(gen_buf *b, const char *fmt, ...)
{
	va_list ap;

	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			abort();
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		b->cap = (b->cap + (size_t)n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
}

/* A Bundle page of n Observations; returns malloc'd (NUL-terminated) and
 * its length in *len. Observation i has id "obs-<seed>-<i>", versionId
 * "<i % 7 + 1>", and its subject is Patient/pat-<i % 97>. */
static inline char *gen_observation_page(size_t n, unsigned seed, size_t *len)
{
	gen_buf b = { 0 };

	gen_printf(&b, "{\"resourceType\":\"Bundle\",\"id\":\"page-%u\",\"meta\":{\"lastUpdated\":"
		       "\"2024-05-06T07:08:09.123Z\"},\"type\":\"searchset\",\"total\":%zu,\"link\":["
		       "{\"relation\":\"self\",\"url\":\"http://localhost:8103/fhir/R4/Observation?_count=%zu\"},"
		       "{\"relation\":\"next\",\"url\":\"http://localhost:8103/fhir/R4/Observation?_count=%zu"
		       "&_offset=%zu\"}],\"entry\":[",
		   seed, n * 3, n, n, n);
	for (size_t i = 0; i < n; i++) {
		unsigned v = (unsigned)(i * 2654435761u + seed);
		gen_printf(&b,
			   "%s{\"fullUrl\":\"http://localhost:8103/fhir/R4/Observation/obs-%u-%zu\",\"resource\":"
			   "{\"resourceType\":\"Observation\",\"id\":\"obs-%u-%zu\",\"meta\":{\"versionId\":\"%zu\","
			   "\"lastUpdated\":\"2024-05-%02uT%02u:%02u:%02u.%03uZ\"},\"status\":\"final\","
			   "\"category\":[{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/"
			   "observation-category\",\"code\":\"vital-signs\"}]}],"
			   "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8867-4\",\"display\":"
			   "\"Heart rate\"}]},\"subject\":{\"reference\":\"Patient/pat-%zu\"},\"effectiveDateTime\":\"2024-05-%02uT%02u:%02u:00+02:00\","
			   "\"valueQuantity\":{\"value\":%u.%u,\"unit\":\"beats/minute\",\"system\":"
			   "\"http://unitsofmeasure.org\",\"code\":\"/min\"},\"note\":[{\"text\":\"\\\"ok\\\" \\u2764\"}]},\"search\":{\"mode\":\"match\"}}",
			   i ? "," : "", seed, i, seed, i, i % 7 + 1, v % 28 + 1, v % 24, v % 60, (v >> 8) % 60,
			   v % 1000, i % 97, v % 28 + 1, v % 24, v % 60, 40 + v % 100, v % 10);
	}
	gen_printf(&b, "]}");
	*len = b.len;
	return b.p;
}
