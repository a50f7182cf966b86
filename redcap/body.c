/*
 * redcap/body.c — application/x-www-form-urlencoded request bodies with a
 * hard size cap; bodies are wiped when freed (they hold the token and data).
 */
#include "redcap/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

static const char hexdig[] = "0123456789ABCDEF";

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '.' || c == '_' || c == '~';
}

/* Encoded size of s[0..n): 1 byte per unreserved byte, 3 for the others. */
size_t redcap_urlencoded_len(const char *s, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += is_unreserved((unsigned char)s[i]) ? 1 : 3;
	return k;
}

/* An empty body with cap max (0: the default); owns nothing yet. */
void redcap_body_init(redcap_body *b, size_t max)
{
	*b = (redcap_body){ .max = max ? max : REDCAP_BODY_MAX_DEFAULT };
}

/* Wipe and free the buffer, keep max and err. */
static void body_drop(redcap_body *b)
{
	if (b->buf) {
		OPENSSL_cleanse(b->buf, b->cap);
		free(b->buf);
	}
	b->buf = NULL;
	b->len = b->cap = 0;
}

/* Wipe and free the buffer, clear the sticky error. Idempotent. */
void redcap_body_deinit(redcap_body *b)
{
	if (!b)
		return;
	body_drop(b);
	b->err = 0;
}

/* Wipe len bytes of a taken body and free it. */
void redcap_body_free(char *body, size_t len)
{
	if (body) {
		OPENSSL_cleanse(body, len);
		free(body);
	}
}

static int body_fail(redcap_body *b, int err)
{
	body_drop(b);
	b->err = err;
	return err;
}

/* Grow to hold need more bytes (plus the NUL). Growing copies into a new
 * buffer and wipes the old one, so no stale copy of the token is left in
 * freed memory. */
static int body_reserve(redcap_body *b, size_t need)
{
	if (b->err)
		return b->err;
	if (need > b->max || b->len > b->max - need)
		return body_fail(b, REDCAP_E_TOO_LARGE);
	if (b->len + need + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + need + 1)
		cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
	char *nb = malloc(cap);
	if (!nb)
		return body_fail(b, -ENOMEM);
	if (b->buf) {
		memcpy(nb, b->buf, b->len + 1);
		OPENSSL_cleanse(b->buf, b->cap);
		free(b->buf);
	}
	b->buf = nb;
	b->cap = cap;
	return 0;
}

static char *put_encoded(char *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_unreserved(c)) {
			*out++ = (char)c;
		} else {
			*out++ = '%';
			*out++ = hexdig[c >> 4];
			*out++ = hexdig[c & 15];
		}
	}
	return out;
}

/*
 * Append name=value (percent-encoded, '&' first unless the body is empty).
 * Returns 0, -ENOMEM or REDCAP_E_TOO_LARGE; the error is sticky and the
 * buffer is gone then.
 */
int redcap_body_addn(redcap_body *b, const char *name, const char *value, size_t value_len)
{
	if (!b || !name || (!value && value_len))
		return -EINVAL;
	if (b->err)
		return b->err;
	size_t nl = strlen(name);
	size_t need = (b->len ? 1 : 0) + redcap_urlencoded_len(name, nl) + 1;
	size_t vl = redcap_urlencoded_len(value ? value : "", value_len);
	if (vl > SIZE_MAX / 2 || need > SIZE_MAX / 2)
		return body_fail(b, REDCAP_E_TOO_LARGE);
	int rc = body_reserve(b, need + vl);
	if (rc)
		return rc;
	char *p = b->buf + b->len;
	if (b->len)
		*p++ = '&';
	p = put_encoded(p, name, nl);
	*p++ = '=';
	p = put_encoded(p, value ? value : "", value_len);
	*p = 0;
	b->len = (size_t)(p - b->buf);
	return 0;
}

/* redcap_body_addn() for a NUL-terminated value (NULL is ""). */
int redcap_body_add(redcap_body *b, const char *name, const char *value)
{
	return redcap_body_addn(b, name, value ? value : "", value ? strlen(value) : 0);
}

/*
 * name[0]=v[0]&...&name[n-1]=v[n-1]. Returns 0 or the sticky error of the
 * first pair that failed (the body is gone then).
 */
int redcap_body_add_list(redcap_body *b, const char *name, const char *const *v, size_t n)
{
	if (!b || !name || (n && !v))
		return -EINVAL;
	size_t nl = strlen(name);
	char *key = malloc(nl + 32);
	if (!key)
		return body_fail(b, -ENOMEM);
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		snprintf(key, nl + 32, "%s[%zu]", name, i);
		rc = redcap_body_add(b, key, v[i]);
	}
	free(key);
	return rc;
}

/* Hand over the buffer (NULL if empty or in error); b is empty after. */
char *redcap_body_take(redcap_body *b, size_t *len)
{
	if (!b || b->err || !b->buf) {
		if (len)
			*len = 0;
		return NULL;
	}
	char *s = b->buf;
	if (len)
		*len = b->len;
	b->buf = NULL;
	b->len = b->cap = 0;
	return s;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode s[0..n) (%XX and '+') into a new string; *dl gets its length. */
static char *url_decode(const char *s, size_t n, size_t *dl)
{
	char *d = malloc(n + 1), *p = d;
	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			*p++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else {
			*p++ = s[i] == '+' ? ' ' : s[i];
		}
	}
	*p = 0;
	*dl = (size_t)(p - d);
	return d;
}

/*
 * Log-safe copy of an encoded body (see redcap.h). The token is never
 * copied, data and filterLogic are reduced to their size. Returns malloc'd
 * or NULL.
 */
char *redcap_body_redact(const char *body, size_t len)
{
	rc_str out = RC_STR_NULL;
	size_t i = 0;

	rc_str_add(&out, "");
	while (body && i < len) {
		size_t end = i;
		while (end < len && body[end] != '&')
			end++;
		size_t eq = i;
		while (eq < end && body[eq] != '=')
			eq++;
		size_t kl = 0, vl = 0;
		char *k = url_decode(body + i, eq - i, &kl);
		char *v = url_decode(body + (eq < end ? eq + 1 : end), eq < end ? end - eq - 1 : 0, &vl);
		if (!k || !v) {
			free(k);
			redcap_body_free(v, vl);
			rc_str_free(&out);
			return NULL;
		}
		if (out.len)
			rc_str_addc(&out, '&');
		for (size_t j = 0; j < kl && j < 64; j++)
			rc_str_addc(&out, (unsigned char)k[j] < 0x20 || k[j] == 0x7f ? '?' : k[j]);
		rc_str_addc(&out, '=');
		if (strcmp(k, "token") == 0) {
			rc_str_add(&out, "***");
		} else if (strcmp(k, "data") == 0 || strcmp(k, "filterLogic") == 0) {
			rc_str_addf(&out, "<%zu bytes>", vl);
		} else {
			for (size_t j = 0; j < vl && j < 64; j++)
				rc_str_addc(&out, (unsigned char)v[j] < 0x20 || v[j] == 0x7f ? '?' : v[j]);
			if (vl > 64)
				rc_str_addf(&out, "...(+%zu bytes)", vl - 64);
		}
		free(k);
		redcap_body_free(v, vl);
		i = end + 1;
	}
	return rc_str_take(&out);
}
