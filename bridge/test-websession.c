/* Tests for bridge/websession.c: sessions, cookies and the login throttle, on a fake clock. */
#include "bridge/websession.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

#define MIN (60 * 1000LL)
#define HOUR (60 * MIN)

static bool all_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789abcdef", s[i]))
			return false;
	return s[n] == '\0';
}

static void test_create_and_lookup(void)
{
	websession_table *t = NULL;
	REQUIRE(websession_table_new(&t, NULL) == 0);
	websession *a = NULL, *b = NULL;
	REQUIRE(websession_create(t, "alice", 1000, &a) == 0);
	REQUIRE(websession_create(t, "bob", 1000, &b) == 0);
	CHECK(all_hex(a->id, 64));
	CHECK(all_hex(a->csrf, 64));
	CHECK(strcmp(a->id, a->csrf) != 0);
	CHECK(strcmp(a->id, b->id) != 0);
	CHECK(strcmp(a->csrf, b->csrf) != 0);
	CHECK_STR(a->user, "alice");
	CHECK_INT(a->created_ms, 1000);
	CHECK_INT(websession_count(t), 2);

	CHECK(websession_lookup(t, a->id, 2000) == a);
	CHECK(websession_lookup(t, b->id, 2000) == b);

	/* Unknown, malformed, upper case, short or long ids are not found. */
	char id[80];
	snprintf(id, sizeof(id), "%s", a->id);
	id[0] = id[0] == '0' ? '1' : '0';
	CHECK(websession_lookup(t, id, 2000) == NULL);
	snprintf(id, sizeof(id), "%s", a->id);
	for (char *p = id; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	if (strcmp(id, a->id) != 0)
		CHECK(websession_lookup(t, id, 2000) == NULL);
	snprintf(id, sizeof(id), "%.63s", a->id);
	CHECK(websession_lookup(t, id, 2000) == NULL);
	snprintf(id, sizeof(id), "%s0", a->id);
	CHECK(websession_lookup(t, id, 2000) == NULL);
	CHECK(websession_lookup(t, "", 2000) == NULL);
	CHECK(websession_lookup(t, NULL, 2000) == NULL);

	CHECK_INT(websession_create(t, "", 1, &a), -EINVAL);
	CHECK(a == NULL);
	CHECK_INT(websession_create(t, NULL, 1, &a), -EINVAL);
	websession_table_free(t);
	websession_table_free(NULL);
}

static void test_idle_timeout_and_touch(void)
{
	websession_table *t = NULL;
	REQUIRE(websession_table_new(&t, NULL) == 0); /* 15 min idle */
	websession *s = NULL;
	REQUIRE(websession_create(t, "alice", 0, &s) == 0);
	char id[65];
	memcpy(id, s->id, sizeof(id));

	CHECK(websession_lookup(t, id, 15 * MIN - 1) == s);
	/* lookup alone is not use: 15 min after creation it is gone. */
	CHECK(websession_lookup(t, id, 15 * MIN) == NULL);
	CHECK_INT(websession_count(t), 0); /* the expired one was dropped */

	REQUIRE(websession_create(t, "alice", 0, &s) == 0);
	memcpy(id, s->id, sizeof(id));
	/* Touched every 10 min, it lives on. */
	for (int64_t now = 10 * MIN; now <= 2 * HOUR; now += 10 * MIN) {
		s = websession_lookup(t, id, now);
		REQUIRE(s != NULL);
		websession_touch(s, now);
		CHECK_INT(s->last_ms, now);
	}
	/* A touch with an older time does not move it back. */
	websession_touch(s, 5);
	CHECK_INT(s->last_ms, 2 * HOUR);
	CHECK(websession_lookup(t, id, 2 * HOUR + 15 * MIN) == NULL);
	websession_table_free(t);
}

static void test_absolute_lifetime(void)
{
	websession_table *t = NULL;
	REQUIRE(websession_table_new(&t, NULL) == 0); /* 12 h */
	websession *s = NULL;
	REQUIRE(websession_create(t, "alice", 0, &s) == 0);
	char id[65];
	memcpy(id, s->id, sizeof(id));
	int64_t now = 0;
	for (now = 5 * MIN; now < 12 * HOUR; now += 5 * MIN) {
		s = websession_lookup(t, id, now);
		REQUIRE(s != NULL);
		websession_touch(s, now);
	}
	CHECK(websession_lookup(t, id, 12 * HOUR - 1) != NULL);
	/* Used a minute ago, but 12 h old: gone. */
	CHECK(websession_lookup(t, id, 12 * HOUR) == NULL);
	websession_table_free(t);

	/* Options: 1 s idle, 10 s lifetime. */
	websession_opts o = { .idle_ms = 1000, .lifetime_ms = 10000 };
	REQUIRE(websession_table_new(&t, &o) == 0);
	REQUIRE(websession_create(t, "bob", 0, &s) == 0);
	memcpy(id, s->id, sizeof(id));
	CHECK(websession_lookup(t, id, 999) != NULL);
	CHECK(websession_lookup(t, id, 1000) == NULL);
	websession_table_free(t);

	o = (websession_opts){ .idle_ms = -1 };
	CHECK_INT(websession_table_new(&t, &o), -EINVAL);
	CHECK(t == NULL);
}

static void test_destroy_user_and_sweep(void)
{
	websession_table *t = NULL;
	REQUIRE(websession_table_new(&t, NULL) == 0);
	websession *s[6];
	const char *users[6] = { "alice", "bob", "alice", "carol", "alice", "bob" };
	for (int i = 0; i < 6; i++)
		REQUIRE(websession_create(t, users[i], i * MIN, &s[i]) == 0);
	char bob_id[65];
	memcpy(bob_id, s[1]->id, sizeof(bob_id));

	CHECK_INT(websession_destroy_user(t, "alice"), 3);
	CHECK_INT(websession_count(t), 3);
	CHECK_INT(websession_destroy_user(t, "alice"), 0);
	CHECK_INT(websession_destroy_user(t, "nobody"), 0);

	websession *b = websession_lookup(t, bob_id, 6 * MIN);
	REQUIRE(b != NULL);
	websession_destroy(t, b); /* logout */
	CHECK(websession_lookup(t, bob_id, 6 * MIN) == NULL);
	CHECK_INT(websession_count(t), 2);
	websession_destroy(t, NULL);

	/* Left: carol (made at 3 min) and bob (5 min). At 18 min carol is idle 15 min. */
	CHECK_INT(websession_sweep(t, 18 * MIN - 1), 0);
	CHECK_INT(websession_sweep(t, 18 * MIN), 1);
	CHECK_INT(websession_count(t), 1);
	CHECK_INT(websession_sweep(t, 20 * MIN), 1);
	CHECK_INT(websession_count(t), 0);
	websession_table_free(t);
}

/* A full table drops expired sessions first, then the least recently used one. */
static void test_cap(void)
{
	websession_opts o = { .max_sessions = 3 };
	websession_table *t = NULL;
	REQUIRE(websession_table_new(&t, &o) == 0);
	websession *s = NULL;
	char ids[4][65];
	for (int i = 0; i < 3; i++) {
		REQUIRE(websession_create(t, "u", i * 1000, &s) == 0);
		memcpy(ids[i], s->id, 65);
	}
	/* Session 0 used last: session 1 is the least recently used. */
	websession_touch(websession_lookup(t, ids[0], 5000), 5000);
	REQUIRE(websession_create(t, "u", 6000, &s) == 0);
	memcpy(ids[3], s->id, 65);
	CHECK_INT(websession_count(t), 3);
	CHECK(websession_lookup(t, ids[0], 7000) != NULL);
	CHECK(websession_lookup(t, ids[1], 7000) == NULL);
	CHECK(websession_lookup(t, ids[2], 7000) != NULL);
	CHECK(websession_lookup(t, ids[3], 7000) != NULL);

	/* When one has expired, it goes instead: sessions 2 (last used at 2 s) expires
	 * at 15 min + 2 s; touch 0 and 3 so that 2 is the only one expired. */
	int64_t later = 15 * MIN + 2000;
	websession_touch(websession_lookup(t, ids[0], 10 * MIN), 10 * MIN);
	websession_touch(websession_lookup(t, ids[3], 10 * MIN), 10 * MIN);
	REQUIRE(websession_create(t, "v", later, &s) == 0);
	CHECK_INT(websession_count(t), 3);
	CHECK(websession_lookup(t, ids[2], later) == NULL);
	CHECK(websession_lookup(t, ids[0], later) != NULL);
	CHECK(websession_lookup(t, ids[3], later) != NULL);
	websession_table_free(t);
}

static void test_csrf(void)
{
	websession_table *t = NULL;
	REQUIRE(websession_table_new(&t, NULL) == 0);
	websession *s = NULL, *s2 = NULL;
	REQUIRE(websession_create(t, "alice", 0, &s) == 0);
	REQUIRE(websession_create(t, "alice", 0, &s2) == 0);
	char tok[80];
	CHECK(websession_csrf_ok(s, s->csrf));
	snprintf(tok, sizeof(tok), "%s", s->csrf);
	CHECK(websession_csrf_ok(s, tok));
	tok[63] = tok[63] == '0' ? '1' : '0';
	CHECK(!websession_csrf_ok(s, tok));
	snprintf(tok, sizeof(tok), "%.63s", s->csrf);
	CHECK(!websession_csrf_ok(s, tok));
	snprintf(tok, sizeof(tok), "%sa", s->csrf);
	CHECK(!websession_csrf_ok(s, tok));
	CHECK(!websession_csrf_ok(s, ""));
	CHECK(!websession_csrf_ok(s, NULL));
	CHECK(!websession_csrf_ok(NULL, s->csrf));
	CHECK(!websession_csrf_ok(s, s2->csrf)); /* another session's token */
	CHECK(!websession_csrf_ok(s, s->id));    /* the id is not the token */
	websession_table_free(t);
}

static void test_cookie_values(void)
{
	websession_table *t = NULL, *ts = NULL;
	websession_opts o = { .secure = true };
	REQUIRE(websession_table_new(&t, NULL) == 0);
	REQUIRE(websession_table_new(&ts, &o) == 0);
	websession *s = NULL;
	REQUIRE(websession_create(t, "alice", 0, &s) == 0);
	char buf[160], want[160];
	CHECK_INT(websession_set_cookie(t, s, buf, sizeof(buf)), 0);
	snprintf(want, sizeof(want), "frb_session=%s; Path=/; HttpOnly; SameSite=Strict", s->id);
	CHECK_STR(buf, want);
	CHECK_INT(websession_set_cookie(ts, s, buf, sizeof(buf)), 0);
	snprintf(want, sizeof(want), "frb_session=%s; Path=/; HttpOnly; SameSite=Strict; Secure", s->id);
	CHECK_STR(buf, want);
	CHECK_INT(websession_set_cookie(t, s, buf, 64), -ENOBUFS);
	char big[128];
	CHECK_INT(websession_set_cookie(ts, s, big, sizeof(big)), 0);

	CHECK_INT(websession_clear_cookie(t, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "frb_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
	CHECK_INT(websession_clear_cookie(ts, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "frb_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure");
	CHECK_INT(websession_clear_cookie(t, buf, 10), -ENOBUFS);
	websession_table_free(t);
	websession_table_free(ts);
}

static void test_cookie_parse(void)
{
	const char *id1 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	const char *id2 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
	char hdr[1024], out[65];
	const char *cur;

	snprintf(hdr, sizeof(hdr), "theme=dark; frb_session=%s; other=1", id1);
	cur = hdr;
	CHECK(websession_cookie_next(&cur, out));
	CHECK_STR(out, id1);
	CHECK(!websession_cookie_next(&cur, out));

	/* Malformed pairs, wrong names, bad values are skipped; quotes and spaces allowed. */
	snprintf(hdr, sizeof(hdr),
		 "junk; =x; frb_session; frb_session=short; Frb_session=%s; xfrb_session=%s;"
		 "frb_session=%.63sG; frb_session=%s0;  frb_session = \"%s\" ;frb_session=%s", id1, id1, id1, id1,
		 id1, id2);
	cur = hdr;
	CHECK(websession_cookie_next(&cur, out));
	CHECK_STR(out, id1);
	CHECK(websession_cookie_next(&cur, out));
	CHECK_STR(out, id2);
	CHECK(!websession_cookie_next(&cur, out));
	CHECK(!websession_cookie_next(&cur, out));

	/* Upper-case hex is not an id we make. */
	cur = "frb_session=0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef";
	CHECK(!websession_cookie_next(&cur, out));
	cur = "";
	CHECK(!websession_cookie_next(&cur, out));
	cur = NULL;
	CHECK(!websession_cookie_next(&cur, out));
	CHECK(!websession_cookie_next(NULL, out));
}

/* from_cookie skips a value that is not a live session (a stale or tossed cookie first). */
static void test_from_cookie(void)
{
	websession_table *t = NULL;
	REQUIRE(websession_table_new(&t, NULL) == 0);
	websession *s = NULL;
	REQUIRE(websession_create(t, "alice", 0, &s) == 0);
	char hdr[512];
	snprintf(hdr, sizeof(hdr), "frb_session=%064d; a=b; frb_session=%s", 0, s->id);
	CHECK(websession_from_cookie(t, hdr, 1000) == s);
	CHECK(websession_from_cookie(t, "frb_session=x", 1000) == NULL);
	CHECK(websession_from_cookie(t, NULL, 1000) == NULL);
	/* Expired: NULL, and dropped. */
	CHECK(websession_from_cookie(t, hdr, 20 * MIN) == NULL);
	CHECK_INT(websession_count(t), 0);
	websession_table_free(t);
}

static void test_throttle(void)
{
	static websession_throttle th; /* 256 slots: not on the stack */
	REQUIRE(websession_throttle_init(&th, 0, 0, 0) == 0); /* 10 in 5 min -> 5 min */
	const char *ip = "192.0.2.7";
	for (int i = 0; i < 9; i++) {
		CHECK(websession_throttle_allowed(&th, ip, i * 1000));
		CHECK(!websession_throttle_failed(&th, ip, i * 1000));
	}
	CHECK(websession_throttle_allowed(&th, ip, 9000));
	CHECK(websession_throttle_failed(&th, ip, 9000)); /* the 10th locks */
	CHECK(!websession_throttle_allowed(&th, ip, 9001));
	CHECK(websession_throttle_allowed(&th, "192.0.2.8", 9001)); /* another address is not */
	CHECK_INT(websession_throttle_wait_ms(&th, ip, 9000 + MIN), 4 * MIN);
	/* A success during the lock does not lift it. */
	websession_throttle_succeeded(&th, ip);
	CHECK(!websession_throttle_allowed(&th, ip, 9000 + 5 * MIN - 1));
	CHECK(websession_throttle_allowed(&th, ip, 9000 + 5 * MIN));
	CHECK_INT(websession_throttle_wait_ms(&th, ip, 9000 + 5 * MIN), 0);
	/* After the lock the count starts afresh. */
	CHECK(!websession_throttle_failed(&th, ip, 10 * MIN));
	CHECK(websession_throttle_allowed(&th, ip, 10 * MIN));
}

/* Failures older than the window do not count: 9 old + 9 new never lock. */
static void test_throttle_window(void)
{
	static websession_throttle th;
	REQUIRE(websession_throttle_init(&th, 10, 5 * MIN, 5 * MIN) == 0);
	const char *ip = "::1";
	for (int i = 0; i < 9; i++)
		CHECK(!websession_throttle_failed(&th, ip, i));
	for (int i = 0; i < 9; i++)
		CHECK(!websession_throttle_failed(&th, ip, 5 * MIN + 10 + i));
	CHECK(websession_throttle_allowed(&th, ip, 5 * MIN + 100));
	/* A sliding window: the 10th within 5 min of the 1st of the new run locks. */
	CHECK(websession_throttle_failed(&th, ip, 5 * MIN + 200));
	CHECK(!websession_throttle_allowed(&th, ip, 5 * MIN + 201));

	/* A success forgets the failures. */
	REQUIRE(websession_throttle_init(&th, 3, 0, 0) == 0);
	CHECK(!websession_throttle_failed(&th, "a", 1));
	CHECK(!websession_throttle_failed(&th, "a", 2));
	websession_throttle_succeeded(&th, "a");
	CHECK(!websession_throttle_failed(&th, "a", 3));
	CHECK(!websession_throttle_failed(&th, "a", 4));
	CHECK(websession_throttle_failed(&th, "a", 5));

	CHECK_INT(websession_throttle_init(&th, WEBSESSION_THROTTLE_MAX_FAILS + 1, 0, 0), -EINVAL);
	CHECK_INT(websession_throttle_init(&th, 1, -1, 0), -EINVAL);
}

/* A full table reuses the least recently failed unlocked slot; locked addresses stay locked. */
static void test_throttle_full_table(void)
{
	static websession_throttle th;
	REQUIRE(websession_throttle_init(&th, 2, 0, 0) == 0);
	char ip[32];
	/* Lock one address, then fill every other slot with one failure each. */
	CHECK(!websession_throttle_failed(&th, "10.0.0.1", 0));
	CHECK(websession_throttle_failed(&th, "10.0.0.1", 1));
	for (int i = 0; i < WEBSESSION_THROTTLE_SLOTS - 1; i++) {
		snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 256, i % 256);
		CHECK(!websession_throttle_failed(&th, ip, 10 + i));
	}
	/* A new address takes the oldest unlocked slot (10.1.0.0, failed at 10). */
	CHECK(!websession_throttle_failed(&th, "10.2.0.0", 1000));
	CHECK(!websession_throttle_allowed(&th, "10.0.0.1", 1001));
	/* 10.1.0.0 lost its failure: one more does not lock it (it takes 10.1.0.1's
	 * slot in turn); 10.1.0.2 kept its own and its second failure locks it. */
	CHECK(!websession_throttle_failed(&th, "10.1.0.0", 1002));
	CHECK(websession_throttle_failed(&th, "10.1.0.2", 1003));
	/* An empty address is never tracked. */
	CHECK(!websession_throttle_failed(&th, "", 5));
	CHECK(websession_throttle_allowed(&th, "", 5));
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_create_and_lookup),
		HARNESS_TEST(test_idle_timeout_and_touch),
		HARNESS_TEST(test_absolute_lifetime),
		HARNESS_TEST(test_destroy_user_and_sweep),
		HARNESS_TEST(test_cap),
		HARNESS_TEST(test_csrf),
		HARNESS_TEST(test_cookie_values),
		HARNESS_TEST(test_cookie_parse),
		HARNESS_TEST(test_from_cookie),
		HARNESS_TEST(test_throttle),
		HARNESS_TEST(test_throttle_window),
		HARNESS_TEST(test_throttle_full_table),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
