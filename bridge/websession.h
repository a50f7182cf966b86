/*
 * websession — the charting page's login sessions, in memory only (never
 * in the store: a restart logs everyone out), and the login throttle.
 *
 * A session has a 256-bit random id (64 lowercase hex digits, the value of
 * the frb_session cookie) and a separate 256-bit CSRF token (put into every
 * form, checked with websession_csrf_ok() in constant time). It ends when
 * unused for idle_ms (default 15 min); lifetime_ms after its creation
 * however much it is used (default 12 h); on logout (websession_destroy);
 * when its user is disabled (websession_destroy_user); or when the table is
 * full and it is the least recently used one (max_sessions, default 1000).
 *
 * Pure logic: the caller passes the time (ms, any monotonic or wall clock,
 * the same one on every call), so tests use a fake clock; the daemon calls
 * websession_sweep() from a timer. Nothing here logs: ids and tokens are
 * secrets and user names are the caller's to log.
 *
 * Return convention: 0 ok; negative errno (-ENOMEM, -EINVAL, -EIO when the
 * random generator fails).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The cookie's name. */
#define WEBSESSION_COOKIE "frb_session"
/* Hex digits of an id and of a CSRF token (256 bits). */
#define WEBSESSION_HEX_LEN 64

typedef struct websession_opts {
	int64_t idle_ms;        /* 0: 15 min */
	int64_t lifetime_ms;    /* 0: 12 h */
	size_t max_sessions;    /* 0: 1000 */
	bool secure;            /* the page is served over TLS: cookies get "; Secure" */
} websession_opts;

/* One session; read-only for the caller. */
typedef struct websession {
	char id[WEBSESSION_HEX_LEN + 1];
	char csrf[WEBSESSION_HEX_LEN + 1];
	char *user;
	int64_t created_ms;
	int64_t last_ms;        /* the last websession_touch() (or the creation) */
} websession;

typedef struct websession_table websession_table;

/* A new empty table; opts NULL = all defaults. 0, -ENOMEM or -EINVAL (a negative time). */
int websession_table_new(websession_table **out, const websession_opts *opts);

/* Free the table and every session in it (NULL: no-op). */
void websession_table_free(websession_table *t);

/* Live sessions in the table (expired ones count until a lookup or a sweep drops them). */
size_t websession_count(const websession_table *t);

/*
 * Start a session for user (copied) at now_ms. When the table is full,
 * expired sessions are dropped first, then the least recently used one.
 * *out is owned by the table: valid until that session is destroyed,
 * expires (found so by a lookup or a sweep) or is evicted by a later
 * create. -EIO if no random bytes could be had, -ENOMEM, -EINVAL.
 */
int websession_create(websession_table *t, const char *user, int64_t now_ms, websession **out);

/*
 * The live session with this id at now_ms, or NULL: unknown id, not 64 hex
 * digits, or expired (idle or lifetime; an expired session is destroyed).
 * The id is compared with every session's in constant time. Does not count
 * as use: call websession_touch() for a request that is served.
 */
websession *websession_lookup(websession_table *t, const char *id, int64_t now_ms);

/* The session was used at now_ms (its idle timer restarts; never past its lifetime). */
void websession_touch(websession *s, int64_t now_ms);

/* End a session (logout). s NULL or not in t: no-op. */
void websession_destroy(websession_table *t, websession *s);

/* End every session of user (the user was disabled); returns how many. */
size_t websession_destroy_user(websession_table *t, const char *user);

/* Drop every session expired at now_ms; returns how many. */
size_t websession_sweep(websession_table *t, int64_t now_ms);

/* Is token this session's CSRF token? Constant time in the token's content; false for NULL. */
bool websession_csrf_ok(const websession *s, const char *token);

/*
 * The Set-Cookie value that gives the browser this session:
 *   frb_session=<id>; Path=/; HttpOnly; SameSite=Strict[; Secure]
 * and the one that removes it (logout):
 *   frb_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict[; Secure]
 * Written to buf; 0, or -ENOBUFS when it does not fit (128 bytes always do).
 */
int websession_set_cookie(const websession_table *t, const websession *s, char *buf, size_t size);
int websession_clear_cookie(const websession_table *t, char *buf, size_t size);

/*
 * The frb_session values in a Cookie header, one per call: *cursor starts
 * at the header and advances; returns true with the value (64 lowercase hex
 * digits, NUL-terminated) in out, false at the end. Malformed pairs and
 * frb_session values that are not an id are skipped. A browser may send the
 * cookie twice (one set for another path or by a sibling domain).
 */
bool websession_cookie_next(const char **cursor, char out[WEBSESSION_HEX_LEN + 1]);

/* The first frb_session value of a Cookie header (NULL: none) that is a live session, or NULL. */
websession *websession_from_cookie(websession_table *t, const char *cookie_header, int64_t now_ms);

/*
 * The login throttle: an address with max_fails failed logins within
 * window_ms is refused for lock_ms (defaults: 10, 5 min, 5 min). A fixed
 * table of WEBSESSION_THROTTLE_SLOTS addresses (no allocation); when it is
 * full, the slot of the address least recently failed that is not locked is
 * reused (a locked one only when all are locked). Addresses are compared as
 * given (the caller passes the client IP as text).
 */
#define WEBSESSION_THROTTLE_SLOTS 256
#define WEBSESSION_THROTTLE_MAX_FAILS 32

typedef struct websession_throttle {
	struct websession_throttle_slot {
		char addr[48];          /* "" = free */
		int64_t fails[WEBSESSION_THROTTLE_MAX_FAILS]; /* ring of the last failures' times */
		unsigned n, head;       /* failures in the ring, index of the oldest */
		int64_t locked_until;   /* refused before this time; 0 = not locked */
		int64_t last_ms;        /* the last failure */
	} slot[WEBSESSION_THROTTLE_SLOTS];
	unsigned max_fails;
	int64_t window_ms, lock_ms;
} websession_throttle;

/* 0 for any argument: its default. -EINVAL when max_fails > WEBSESSION_THROTTLE_MAX_FAILS or a time < 0. */
int websession_throttle_init(websession_throttle *th, unsigned max_fails, int64_t window_ms, int64_t lock_ms);

/* May addr try to log in at now_ms? false while it is locked. */
bool websession_throttle_allowed(websession_throttle *th, const char *addr, int64_t now_ms);

/* A failed login from addr at now_ms; returns true when this failure locked the address. */
bool websession_throttle_failed(websession_throttle *th, const char *addr, int64_t now_ms);

/* A successful login from addr: its failures are forgotten (a lock in force stays). */
void websession_throttle_succeeded(websession_throttle *th, const char *addr);

/* How long addr stays refused from now_ms (0: allowed). */
int64_t websession_throttle_wait_ms(const websession_throttle *th, const char *addr, int64_t now_ms);
