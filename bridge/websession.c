/*
 * websession — the charting page's sessions and login throttle (see
 * websession.h).
 *
 * The table is a plain array of session pointers: at most max_sessions
 * (1000) entries, and a lookup compares the id with every one of them in
 * constant time (CRYPTO_memcmp), so how long a lookup takes says nothing
 * about which ids exist. A session's memory is wiped before it is freed.
 */
#include "bridge/websession.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define WEBSESSION_IDLE_DEFAULT_MS (15 * 60 * 1000LL)
#define WEBSESSION_LIFETIME_DEFAULT_MS (12 * 60 * 60 * 1000LL)
#define WEBSESSION_MAX_DEFAULT 1000

#define THROTTLE_MAX_FAILS_DEFAULT 10
#define THROTTLE_WINDOW_DEFAULT_MS (5 * 60 * 1000LL)
#define THROTTLE_LOCK_DEFAULT_MS (5 * 60 * 1000LL)

struct websession_table {
	websession **v;
	size_t n, cap;
	websession_opts opts;
};

int websession_table_new(websession_table **out, const websession_opts *opts)
{
	*out = NULL;
	websession_opts o = opts ? *opts : (websession_opts){ 0 };
	if (o.idle_ms < 0 || o.lifetime_ms < 0)
		return -EINVAL;
	if (!o.idle_ms)
		o.idle_ms = WEBSESSION_IDLE_DEFAULT_MS;
	if (!o.lifetime_ms)
		o.lifetime_ms = WEBSESSION_LIFETIME_DEFAULT_MS;
	if (!o.max_sessions)
		o.max_sessions = WEBSESSION_MAX_DEFAULT;
	websession_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->opts = o;
	*out = t;
	return 0;
}

/* Wipe and free one session (its id and token are secrets). */
static void session_free(websession *s)
{
	if (!s)
		return;
	if (s->user) {
		OPENSSL_cleanse(s->user, strlen(s->user));
		free(s->user);
	}
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

void websession_table_free(websession_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		session_free(t->v[i]);
	free(t->v);
	free(t);
}

size_t websession_count(const websession_table *t)
{
	return t ? t->n : 0;
}

/* Remove entry i (order is not kept) and free its session. */
static void table_remove_at(websession_table *t, size_t i)
{
	websession *s = t->v[i];
	t->v[i] = t->v[--t->n];
	t->v[t->n] = NULL;
	session_free(s);
}

static bool session_expired(const websession_table *t, const websession *s, int64_t now_ms)
{
	return now_ms - s->last_ms >= t->opts.idle_ms || now_ms - s->created_ms >= t->opts.lifetime_ms;
}

/* 32 random bytes as 64 lowercase hex digits; 0 or -EIO. */
static int random_hex(char out[WEBSESSION_HEX_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[WEBSESSION_HEX_LEN / 2];
	if (RAND_bytes(raw, (int)sizeof(raw)) != 1)
		return -EIO;
	for (size_t i = 0; i < sizeof(raw); i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[WEBSESSION_HEX_LEN] = '\0';
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

/* Is s exactly 64 lowercase hex digits? (Its format only, not a secret.) */
static bool is_id(const char *s)
{
	if (!s)
		return false;
	for (size_t i = 0; i < WEBSESSION_HEX_LEN; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return s[WEBSESSION_HEX_LEN] == '\0';
}

int websession_create(websession_table *t, const char *user, int64_t now_ms, websession **out)
{
	if (out)
		*out = NULL;
	if (!t || !user || !user[0] || !out)
		return -EINVAL;
	if (t->n >= t->opts.max_sessions)
		websession_sweep(t, now_ms);
	if (t->n >= t->opts.max_sessions) {
		size_t lru = 0;
		for (size_t i = 1; i < t->n; i++)
			if (t->v[i]->last_ms < t->v[lru]->last_ms)
				lru = i;
		table_remove_at(t, lru);
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		websession **v = realloc(t->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	websession *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->user = strdup(user);
	if (!s->user) {
		session_free(s);
		return -ENOMEM;
	}
	if (random_hex(s->id) || random_hex(s->csrf)) {
		session_free(s);
		return -EIO;
	}
	s->created_ms = s->last_ms = now_ms;
	t->v[t->n++] = s;
	*out = s;
	return 0;
}

websession *websession_lookup(websession_table *t, const char *id, int64_t now_ms)
{
	if (!t || !is_id(id))
		return NULL;
	size_t found = t->n;
	/* No early exit: every session's id is compared. */
	for (size_t i = 0; i < t->n; i++)
		if (CRYPTO_memcmp(t->v[i]->id, id, WEBSESSION_HEX_LEN) == 0)
			found = i;
	if (found == t->n)
		return NULL;
	if (session_expired(t, t->v[found], now_ms)) {
		table_remove_at(t, found);
		return NULL;
	}
	return t->v[found];
}

void websession_touch(websession *s, int64_t now_ms)
{
	if (s && now_ms > s->last_ms)
		s->last_ms = now_ms;
}

void websession_destroy(websession_table *t, websession *s)
{
	if (!t || !s)
		return;
	for (size_t i = 0; i < t->n; i++) {
		if (t->v[i] == s) {
			table_remove_at(t, i);
			return;
		}
	}
}

size_t websession_destroy_user(websession_table *t, const char *user)
{
	size_t k = 0;
	if (!t || !user)
		return 0;
	for (size_t i = 0; i < t->n;) {
		if (strcmp(t->v[i]->user, user) == 0) {
			table_remove_at(t, i);
			k++;
		} else {
			i++;
		}
	}
	return k;
}

size_t websession_sweep(websession_table *t, int64_t now_ms)
{
	size_t k = 0;
	if (!t)
		return 0;
	for (size_t i = 0; i < t->n;) {
		if (session_expired(t, t->v[i], now_ms)) {
			table_remove_at(t, i);
			k++;
		} else {
			i++;
		}
	}
	return k;
}

bool websession_csrf_ok(const websession *s, const char *token)
{
	if (!s || !token)
		return false;
	/* The length is not secret; the content is compared in constant time. */
	if (strnlen(token, WEBSESSION_HEX_LEN + 1) != WEBSESSION_HEX_LEN)
		return false;
	return CRYPTO_memcmp(s->csrf, token, WEBSESSION_HEX_LEN) == 0;
}

int websession_set_cookie(const websession_table *t, const websession *s, char *buf, size_t size)
{
	if (!t || !s || !buf)
		return -EINVAL;
	int n = snprintf(buf, size, WEBSESSION_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict%s", s->id,
			 t->opts.secure ? "; Secure" : "");
	return n < 0 || (size_t)n >= size ? -ENOBUFS : 0;
}

int websession_clear_cookie(const websession_table *t, char *buf, size_t size)
{
	if (!t || !buf)
		return -EINVAL;
	int n = snprintf(buf, size, WEBSESSION_COOKIE "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict%s",
			 t->opts.secure ? "; Secure" : "");
	return n < 0 || (size_t)n >= size ? -ENOBUFS : 0;
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

bool websession_cookie_next(const char **cursor, char out[WEBSESSION_HEX_LEN + 1])
{
	static const char name[] = WEBSESSION_COOKIE;
	const char *p = cursor ? *cursor : NULL;
	if (!p)
		return false;
	while (*p) {
		while (*p == ';' || is_ows(*p))
			p++;
		const char *pair = p;
		while (*p && *p != ';')
			p++;
		const char *end = p; /* one pair: [pair, end) */
		const char *eq = memchr(pair, '=', (size_t)(end - pair));
		if (!eq)
			continue; /* malformed: no '=' */
		const char *ne = eq;
		while (ne > pair && is_ows(ne[-1]))
			ne--;
		if ((size_t)(ne - pair) != sizeof(name) - 1 || memcmp(pair, name, sizeof(name) - 1) != 0)
			continue;
		const char *v = eq + 1, *ve = end;
		while (v < ve && is_ows(*v))
			v++;
		while (ve > v && is_ows(ve[-1]))
			ve--;
		if (ve - v >= 2 && v[0] == '"' && ve[-1] == '"') {
			v++;
			ve--;
		}
		if ((size_t)(ve - v) != WEBSESSION_HEX_LEN)
			continue;
		memcpy(out, v, WEBSESSION_HEX_LEN);
		out[WEBSESSION_HEX_LEN] = '\0';
		if (!is_id(out))
			continue;
		*cursor = p;
		return true;
	}
	*cursor = p;
	return false;
}

websession *websession_from_cookie(websession_table *t, const char *cookie_header, int64_t now_ms)
{
	char id[WEBSESSION_HEX_LEN + 1];
	const char *cur = cookie_header;
	websession *s = NULL;
	while (!s && websession_cookie_next(&cur, id))
		s = websession_lookup(t, id, now_ms);
	OPENSSL_cleanse(id, sizeof(id));
	return s;
}

/* ---- login throttle ------------------------------------------------------ */

int websession_throttle_init(websession_throttle *th, unsigned max_fails, int64_t window_ms, int64_t lock_ms)
{
	memset(th, 0, sizeof(*th));
	if (max_fails > WEBSESSION_THROTTLE_MAX_FAILS || window_ms < 0 || lock_ms < 0)
		return -EINVAL;
	th->max_fails = max_fails ? max_fails : THROTTLE_MAX_FAILS_DEFAULT;
	th->window_ms = window_ms ? window_ms : THROTTLE_WINDOW_DEFAULT_MS;
	th->lock_ms = lock_ms ? lock_ms : THROTTLE_LOCK_DEFAULT_MS;
	return 0;
}

/* Addresses are kept (and so compared) up to the slot's size less the NUL. */
static bool slot_is(const struct websession_throttle_slot *sl, const char *addr)
{
	return sl->addr[0] && strncmp(sl->addr, addr, sizeof(sl->addr) - 1) == 0 &&
	       (strlen(addr) >= sizeof(sl->addr) - 1 || sl->addr[strlen(addr)] == '\0');
}

static struct websession_throttle_slot *slot_find(const websession_throttle *th, const char *addr)
{
	if (!addr || !addr[0])
		return NULL;
	for (size_t i = 0; i < WEBSESSION_THROTTLE_SLOTS; i++)
		if (slot_is(&th->slot[i], addr))
			return (struct websession_throttle_slot *)&th->slot[i];
	return NULL;
}

static void slot_clear(struct websession_throttle_slot *sl)
{
	memset(sl, 0, sizeof(*sl));
}

/* A slot for addr: a free one, else the least recently failed unlocked one, else the lock ending first. */
static struct websession_throttle_slot *slot_take(websession_throttle *th, const char *addr, int64_t now_ms)
{
	struct websession_throttle_slot *best = NULL;
	bool best_locked = true;
	for (size_t i = 0; i < WEBSESSION_THROTTLE_SLOTS; i++) {
		struct websession_throttle_slot *sl = &th->slot[i];
		if (!sl->addr[0]) {
			best = sl;
			break;
		}
		bool locked = sl->locked_until > now_ms;
		if (!best || (best_locked && !locked) ||
		    (locked == best_locked &&
		     (locked ? sl->locked_until < best->locked_until : sl->last_ms < best->last_ms))) {
			best = sl;
			best_locked = locked;
		}
	}
	slot_clear(best);
	snprintf(best->addr, sizeof(best->addr), "%s", addr);
	return best;
}

bool websession_throttle_allowed(websession_throttle *th, const char *addr, int64_t now_ms)
{
	struct websession_throttle_slot *sl = slot_find(th, addr);
	if (!sl || !sl->locked_until)
		return true;
	if (sl->locked_until > now_ms)
		return false;
	slot_clear(sl); /* the lock is over: start afresh */
	return true;
}

bool websession_throttle_failed(websession_throttle *th, const char *addr, int64_t now_ms)
{
	if (!addr || !addr[0])
		return false;
	struct websession_throttle_slot *sl = slot_find(th, addr);
	if (!sl)
		sl = slot_take(th, addr, now_ms);
	if (sl->locked_until && sl->locked_until <= now_ms) {
		sl->locked_until = 0;
		sl->n = sl->head = 0;
	}
	sl->last_ms = now_ms;
	/* Forget failures that left the window. */
	while (sl->n && sl->fails[sl->head] <= now_ms - th->window_ms) {
		sl->head = (sl->head + 1) % WEBSESSION_THROTTLE_MAX_FAILS;
		sl->n--;
	}
	sl->fails[(sl->head + sl->n) % WEBSESSION_THROTTLE_MAX_FAILS] = now_ms;
	sl->n++;
	if (sl->n < th->max_fails)
		return false;
	bool was_locked = sl->locked_until > now_ms;
	sl->locked_until = now_ms + th->lock_ms;
	sl->n = sl->head = 0;
	return !was_locked;
}

void websession_throttle_succeeded(websession_throttle *th, const char *addr)
{
	struct websession_throttle_slot *sl = slot_find(th, addr);
	if (!sl)
		return;
	if (sl->locked_until) {
		/* A lock stands until it ends (websession_throttle_allowed() lifts it). */
		sl->n = sl->head = 0;
		return;
	}
	slot_clear(sl);
}

int64_t websession_throttle_wait_ms(const websession_throttle *th, const char *addr, int64_t now_ms)
{
	const struct websession_throttle_slot *sl = slot_find(th, addr);
	return sl && sl->locked_until > now_ms ? sl->locked_until - now_ms : 0;
}
