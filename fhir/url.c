/*
 * fhir/url.c — search URLs and next-link resolution.
 *
 * Next links are opaque: they are joined to the URL they came from (RFC
 * 3986 section 5.2) but their query is never parsed, decoded or re-encoded.
 */
#include "fhir/fhir.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 3986 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~" */
static bool is_unreserved(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Append s to out (room checked by the caller), percent-encoding every byte
 * outside the unreserved set; returns the new end. */
static char *put_encoded(char *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (is_unreserved(c)) {
			*out++ = (char)c;
		} else {
			*out++ = '%';
			*out++ = hex[c >> 4];
			*out++ = hex[c & 15];
		}
	}
	return out;
}

/*
 * <base>/<type>?_count=<count>&_sort=_lastUpdated[&_lastUpdated=ge<since>]
 * (see fhir.h). Trailing '/' of base are dropped; type and since are
 * percent-encoded outside the unreserved set, so a "+01:00" offset travels
 * as "%2B01%3A00". Returns malloc'd, or NULL (ENOMEM or NULL arguments).
 */
char *fhir_search_url(const char *base, const char *type, unsigned count, const char *since)
{
	return fhir_search_url_ex(base, type, count, since, true);
}

char *fhir_search_url_ex(const char *base, const char *type, unsigned count, const char *since, bool sort_by_updated)
{
	static const char sort[] = "&_sort=_lastUpdated", ge[] = "&_lastUpdated=ge";

	if (!base || !type)
		return NULL;
	size_t bl = strlen(base), tl = strlen(type), sl = since ? strlen(since) : 0;
	while (bl > 0 && base[bl - 1] == '/')
		bl--;
	if (tl > SIZE_MAX / 4 || sl > SIZE_MAX / 4 || bl > SIZE_MAX / 4)
		return NULL;
	size_t cap = bl + 1 + 3 * tl + 32 + sizeof(sort) + sizeof(ge) + 3 * sl + 1;
	char *url = malloc(cap), *p = url;
	if (!url)
		return NULL;
	memcpy(p, base, bl);
	p += bl;
	*p++ = '/';
	p = put_encoded(p, type);
	p += snprintf(p, 32, "?_count=%u", count);
	if (sort_by_updated) {
		memcpy(p, sort, sizeof(sort) - 1);
		p += sizeof(sort) - 1;
	}
	if (since) {
		memcpy(p, ge, sizeof(ge) - 1);
		p += sizeof(ge) - 1;
		p = put_encoded(p, since);
	}
	*p = 0;
	return url;
}

/* Length of the scheme of s (without ':'), 0 if s does not start with one. */
static size_t scheme_len(const char *s)
{
	size_t i = 0;

	if (!is_alpha((unsigned char)s[0]))
		return 0;
	while (is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) || s[i] == '+' ||
	       s[i] == '-' || s[i] == '.')
		i++;
	return s[i] == ':' ? i : 0;
}

/*
 * RFC 3986 remove_dot_segments for an absolute path in[0..n), written to
 * out (which has room for n + 1 bytes); returns the output length. Each
 * "/seg" is appended, "/." dropped, "/.." removes the last output segment;
 * a trailing "." or ".." leaves the path ending in '/'.
 */
static size_t remove_dot_segments(const char *in, size_t n, char *out)
{
	size_t o = 0, i = 0;

	while (i < n) {
		/* in[i] == '/': the segment runs to the next '/' or the end. */
		size_t j = i + 1;
		while (j < n && in[j] != '/')
			j++;
		const char *seg = in + i + 1;
		size_t sl = j - i - 1;
		bool last = j >= n;
		if (sl == 1 && seg[0] == '.') {
			if (last)
				out[o++] = '/';
		} else if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			if (last)
				out[o++] = '/';
		} else {
			memcpy(out + o, in + i, sl + 1);
			o += sl + 1;
		}
		i = j;
	}
	return o;
}

/*
 * Resolve a next link against base, the URL of the page it came from (see
 * fhir.h). Returns malloc'd, or NULL on ENOMEM or NULL link.
 */
char *fhir_resolve_url(const char *base, const char *link)
{
	if (!link)
		return NULL;
	size_t bsl = base ? scheme_len(base) : 0;
	if (scheme_len(link) || !bsl)
		return strdup(link);  /* absolute, or nothing to resolve against */

	/* Split base: scheme ":" ["//" authority] path ["?" query] ["#" fragment]. */
	size_t bl = strlen(base), ll = strlen(link);
	size_t auth_end = bsl + 1;
	bool has_auth = base[auth_end] == '/' && base[auth_end + 1] == '/';
	if (has_auth) {
		auth_end += 2;
		auth_end += strcspn(base + auth_end, "/?#");
	}
	size_t path_end = auth_end + strcspn(base + auth_end, "?#");
	size_t frag = strcspn(base, "#");

	if (bl > SIZE_MAX / 2 - ll - 4)
		return NULL;
	char *out = malloc(2 * (bl + ll) + 4);  /* the merged path is built twice */
	if (!out)
		return NULL;

	if (ll == 0 || link[0] == '#' || link[0] == '?') {
		/* Same document (replace the fragment), or a new query. */
		size_t keep = link[0] == '?' ? path_end : frag;
		memcpy(out, base, keep);
		memcpy(out + keep, link, ll + 1);
		return out;
	}
	if (link[0] == '/' && link[1] == '/') {
		/* Network-path reference: keep only the scheme. */
		memcpy(out, base, bsl + 1);
		memcpy(out + bsl + 1, link, ll + 1);
		return out;
	}

	/* A path, absolute or relative, then the link's own query/fragment. */
	size_t lpath = strcspn(link, "?#");
	char *merged = out + bl + ll + 2;  /* scratch in the second half */
	size_t ml = 0;
	if (link[0] == '/') {
		memcpy(merged, link, lpath);
		ml = lpath;
	} else {
		/* Base path up to its last '/', or "/" if base has an authority
		 * and an empty path. */
		const char *bp = base + auth_end;
		size_t bpl = path_end - auth_end;
		const char *slash = bpl ? memrchr(bp, '/', bpl) : NULL;
		if (slash) {
			ml = (size_t)(slash - bp) + 1;
			memcpy(merged, bp, ml);
		} else if (has_auth || bpl == 0) {
			merged[ml++] = '/';
		}
		memcpy(merged + ml, link, lpath);
		ml += lpath;
	}
	memcpy(out, base, auth_end);
	size_t o = auth_end;
	if (merged[0] == '/' && memmem(merged, ml, "/.", 2)) {
		o += remove_dot_segments(merged, ml, out + o);
	} else {
		memmove(out + o, merged, ml);
		o += ml;
	}
	memcpy(out + o, link + lpath, ll - lpath + 1);
	return out;
}
