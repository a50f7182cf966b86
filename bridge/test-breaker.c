/*
 * Tests for bridge/breaker.c: every transition, the thresholds, the error
 * rate rule, the probe schedule in each state, 429 and stale results; then
 * the timing requirement by simulation on a fake clock: an EHR that goes dark
 * at t0 (connections refused, hangs until the timeout, 503s, flapping) and
 * comes back at t1 must give DOWN within 30 s of t0 and UP within 30 s of t1,
 * at every phase of the probe schedule, with and without a pull running.
 * Set BREAKER_SIM_VERBOSE=1 to print the worst delays measured.
 */
#include "bridge/breaker.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* A result of a request that started and ended at t. */
static int at(breaker *b, breaker_source src, breaker_result r, int64_t t)
{
	return breaker_observe(b, src, r, t, t, NULL);
}

/* A breaker with the defaults, UP since 0. */
static breaker fresh(void)
{
	breaker b;
	int rc = breaker_init(&b, NULL, 0);
	CHECK_INT(rc, 0);
	return b;
}

/* Trip a fresh breaker DOWN at t (three probe failures at t). */
static breaker down_at(int64_t t)
{
	breaker b = fresh();
	at(&b, BREAKER_PROBE, BREAKER_FAIL, t);
	at(&b, BREAKER_PROBE, BREAKER_FAIL, t);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_FAIL, t), 1);
	CHECK_INT(b.state, BREAKER_DOWN);
	return b;
}

/* ---- basics ---------------------------------------------------------------------- */

static void test_defaults_and_names(void)
{
	breaker_opts o = breaker_opts_default();
	CHECK_INT(o.probe_interval_ms, 5000);
	CHECK_INT(o.probe_timeout_ms, 5000);
	CHECK_INT(o.fail_threshold, 3);
	CHECK_INT(o.error_window_min, 5);
	CHECK_INT(o.error_window_pct, 80);
	CHECK_INT(o.error_window_ms, 10000);
	CHECK_INT(o.down_probe_min_ms, 2000);
	CHECK_INT(o.down_probe_max_ms, 10000);
	CHECK_INT(o.recover_successes, 2);
	CHECK_INT(o.recover_probe_ms, 1000);

	CHECK_STR(breaker_state_name(BREAKER_UP), "up");
	CHECK_STR(breaker_state_name(BREAKER_DOWN), "down");
	CHECK_STR(breaker_state_name(BREAKER_RECOVERING), "recovering");
	CHECK_STR(breaker_state_name((breaker_state)42), "?");

	breaker b;
	memset(&b, 0x5a, sizeof(b));
	REQUIRE(breaker_init(&b, NULL, 1000) == 0);
	CHECK_INT(b.state, BREAKER_UP);
	CHECK(breaker_allows_traffic(&b));
	CHECK_INT(b.last_change_ms, 1000);
	CHECK(b.last_ok_ms == BREAKER_NEVER);
	CHECK(b.last_fail_ms == BREAKER_NEVER);
	CHECK_INT(b.consecutive_failures, 0);
	CHECK_INT(b.changes, 0);
	CHECK_INT(b.stale, 0);
	CHECK_INT(b.opts.fail_threshold, 3);
	/* The first probe is due one interval after start. */
	CHECK_INT(breaker_next_probe_ms(&b, 1000), 6000);
	CHECK_INT(breaker_next_probe_ms(&b, 7000), 7000);
}

static void test_init_invalid(void)
{
	breaker b;
	CHECK_INT(breaker_init(NULL, NULL, 0), -EINVAL);
	static const struct {
		size_t off;
		int64_t val;
	} bad[] = {
		{ offsetof(breaker_opts, probe_interval_ms), 0 },
		{ offsetof(breaker_opts, probe_interval_ms), -1 },
		{ offsetof(breaker_opts, probe_timeout_ms), 0 },
		{ offsetof(breaker_opts, down_probe_min_ms), 0 },
		{ offsetof(breaker_opts, down_probe_max_ms), 1999 },
		{ offsetof(breaker_opts, recover_probe_ms), -1 },
		{ offsetof(breaker_opts, error_window_ms), 0 },
	};
	for (size_t i = 0; i < N(bad); i++) {
		breaker_opts o = breaker_opts_default();
		memcpy((char *)&o + bad[i].off, &bad[i].val, sizeof(int64_t));
		CHECK_INT(breaker_init(&b, &o, 0), -EINVAL);
	}
	breaker_opts o = breaker_opts_default();
	o.fail_threshold = 0;
	CHECK_INT(breaker_init(&b, &o, 0), -EINVAL);
	o = breaker_opts_default();
	o.recover_successes = 0;
	CHECK_INT(breaker_init(&b, &o, 0), -EINVAL);
	o = breaker_opts_default();
	o.error_window_pct = 0;
	CHECK_INT(breaker_init(&b, &o, 0), -EINVAL);
	o.error_window_pct = 101;
	CHECK_INT(breaker_init(&b, &o, 0), -EINVAL);
	/* The rate rule off: its other fields do not matter. */
	o.error_window_min = 0;
	o.error_window_ms = 0;
	CHECK_INT(breaker_init(&b, &o, 0), 0);
	/* Edge values that are fine. */
	o = breaker_opts_default();
	o.down_probe_max_ms = o.down_probe_min_ms;
	o.recover_probe_ms = 0;
	o.error_window_pct = 100;
	CHECK_INT(breaker_init(&b, &o, 0), 0);
}

static void test_classify(void)
{
	static const struct {
		long status;
		breaker_result want;
	} cases[] = {
		{ 0, BREAKER_FAIL },     { -1, BREAKER_FAIL },   { 500, BREAKER_FAIL },  { 502, BREAKER_FAIL },
		{ 503, BREAKER_FAIL },   { 504, BREAKER_FAIL },  { 599, BREAKER_FAIL },  { 429, BREAKER_NEUTRAL },
		{ 200, BREAKER_OK },     { 201, BREAKER_OK },    { 204, BREAKER_OK },    { 304, BREAKER_OK },
		{ 400, BREAKER_OK },     { 401, BREAKER_OK },    { 403, BREAKER_OK },    { 404, BREAKER_OK },
		{ 408, BREAKER_OK },     { 410, BREAKER_OK },    { 412, BREAKER_OK },    { 428, BREAKER_OK },
		{ 430, BREAKER_OK },     { 100, BREAKER_OK },    { 600, BREAKER_OK },
	};
	for (size_t i = 0; i < N(cases); i++) {
		if (breaker_classify_http(cases[i].status) != cases[i].want) {
			fprintf(stderr, "status %ld\n", cases[i].status);
			CHECK(0);
		}
	}
}

/* ---- UP -> DOWN ---------------------------------------------------------------------- */

static void test_consecutive_failures(void)
{
	breaker b = fresh();
	breaker_event ev = { .at_ms = -7 };
	/* Two failures, a success, two failures: still UP (the success reset the count). */
	CHECK_INT(breaker_observe(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 100, 100, &ev), 0);
	CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_FAIL, 200, 300, &ev), 0);
	CHECK_INT(b.consecutive_failures, 2);
	CHECK_INT(b.last_fail_ms, 300);
	CHECK_INT(breaker_observe(&b, BREAKER_TRAFFIC, BREAKER_OK, 350, 400, &ev), 0);
	CHECK_INT(b.consecutive_failures, 0);
	CHECK_INT(b.last_ok_ms, 400);
	CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_FAIL, 20000, 20000, &ev), 0);
	CHECK_INT(breaker_observe(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 30000, 30000, &ev), 0);
	CHECK_INT(ev.at_ms, -7); /* untouched without a change */
	CHECK_INT(b.state, BREAKER_UP);
	CHECK(breaker_allows_traffic(&b));
	/* The third in a row, probe and traffic mixed: DOWN. */
	CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_FAIL, 40000, 40100, &ev), 1);
	CHECK_INT(ev.from, BREAKER_UP);
	CHECK_INT(ev.to, BREAKER_DOWN);
	CHECK_INT(ev.at_ms, 40100);
	CHECK_INT(b.state, BREAKER_DOWN);
	CHECK(!breaker_allows_traffic(&b));
	CHECK_INT(b.last_change_ms, 40100);
	CHECK_INT(b.changes, 1);
	CHECK_INT(b.consecutive_failures, 3);
	/* A NULL event pointer is fine. */
	breaker c = fresh();
	at(&c, BREAKER_TRAFFIC, BREAKER_FAIL, 1);
	at(&c, BREAKER_TRAFFIC, BREAKER_FAIL, 2);
	CHECK_INT(at(&c, BREAKER_TRAFFIC, BREAKER_FAIL, 3), 1);
}

static void test_threshold_option(void)
{
	breaker_opts o = breaker_opts_default();
	o.fail_threshold = 1;
	o.error_window_min = 0;
	breaker b;
	REQUIRE(breaker_init(&b, &o, 0) == 0);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_FAIL, 10), 1);
	CHECK_INT(b.state, BREAKER_DOWN);

	o.fail_threshold = 6;
	REQUIRE(breaker_init(&b, &o, 0) == 0);
	for (int i = 1; i <= 5; i++)
		CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, i * 100), 0);
	CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 600), 1);
}

/* 429 neither counts as a failure nor resets the count, on probes and traffic. */
static void test_429_is_not_an_outage(void)
{
	breaker b = fresh();
	for (int i = 0; i < 100; i++)
		CHECK_INT(at(&b, i % 2 ? BREAKER_PROBE : BREAKER_TRAFFIC, BREAKER_NEUTRAL, i * 10), 0);
	CHECK_INT(b.state, BREAKER_UP);
	CHECK_INT(b.consecutive_failures, 0);
	CHECK(b.last_ok_ms == BREAKER_NEVER); /* not proof of health either */
	at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 2000);
	at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 2001);
	for (int i = 0; i < 20; i++)
		CHECK_INT(at(&b, BREAKER_TRAFFIC, breaker_classify_http(429), 2002 + i), 0);
	CHECK_INT(b.consecutive_failures, 2);
	CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 2100), 1);
}

/*
 * The rate rule: failures interleaved with successes never reach three in a
 * row, but 4 of 5 traffic results within 10 s trip it.
 */
static void test_error_window(void)
{
	breaker b = fresh();
	static const breaker_result pat[] = { BREAKER_FAIL, BREAKER_FAIL, BREAKER_OK, BREAKER_FAIL, BREAKER_FAIL };
	for (size_t i = 0; i < 4; i++)
		CHECK_INT(at(&b, BREAKER_TRAFFIC, pat[i], 1000 + (int64_t)i * 1000), 0);
	breaker_event ev;
	CHECK_INT(breaker_observe(&b, BREAKER_TRAFFIC, pat[4], 5000, 5000, &ev), 1);
	CHECK_INT(ev.to, BREAKER_DOWN);
	CHECK_INT(b.consecutive_failures, 2);

	/* Half failing, for a long time: stays UP. */
	b = fresh();
	for (int i = 0; i < 500; i++)
		CHECK_INT(at(&b, BREAKER_TRAFFIC, i % 2 ? BREAKER_OK : BREAKER_FAIL, i * 50), 0);
	/* Two of three failing (67 % < 80 %): stays UP. (Starting with a success: F F S F F
	 * as the first five would be 80 %.) */
	b = fresh();
	for (int i = 0; i < 300; i++)
		CHECK_INT(at(&b, BREAKER_TRAFFIC, i % 3 == 0 ? BREAKER_OK : BREAKER_FAIL, i * 50), 0);
	CHECK_INT(b.state, BREAKER_UP);

	/* The same 4-of-5 pattern spread over more than the window: the oldest has aged out. */
	b = fresh();
	for (size_t i = 0; i < N(pat); i++)
		CHECK_INT(at(&b, BREAKER_TRAFFIC, pat[i], 1000 + (int64_t)i * 2600), 0);
	CHECK_INT(b.state, BREAKER_UP);
	/* ... one more failure makes 4 of 5 inside the window again. */
	CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 1000 + 5 * 2600), 1);

	/* Fewer than error_window_min results do not trip, whatever the share. */
	breaker_opts o = breaker_opts_default();
	o.fail_threshold = 100;
	REQUIRE(breaker_init(&b, &o, 0) == 0);
	for (int i = 0; i < 4; i++)
		CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 10 + i), 0);
	CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 20), 1);

	/* Probe results are not in the window. */
	REQUIRE(breaker_init(&b, &o, 0) == 0);
	for (int i = 0; i < 50; i++)
		CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_FAIL, 10 + i), 0);
	CHECK_INT(b.state, BREAKER_UP);

	/* The rule off. */
	o.error_window_min = 0;
	REQUIRE(breaker_init(&b, &o, 0) == 0);
	for (int i = 0; i < 50; i++)
		CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 10 + i), 0);
	CHECK_INT(b.state, BREAKER_UP);

	/* More results than the ring holds: the newest count. */
	o = breaker_opts_default();
	o.fail_threshold = 1000;
	REQUIRE(breaker_init(&b, &o, 0) == 0);
	for (int i = 0; i < 3 * BREAKER_WINDOW_SLOTS; i++)
		CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_OK, i), 0);
	int tripped_at = -1;
	for (int i = 0; i < BREAKER_WINDOW_SLOTS && tripped_at < 0; i++)
		if (at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 1000 + i))
			tripped_at = i;
	/* 80 % of the 64 newest: the 52nd failure (52 / 64 >= 0.8 > 51 / 64). */
	CHECK_INT(tripped_at, 51);
}

/* ---- DOWN, RECOVERING, UP ---------------------------------------------------------- */

/* The DOWN probes: 2, 4, 8, 10, 10 s after the previous one ended. */
static void test_down_backoff(void)
{
	breaker b = down_at(50000);
	int64_t t = 50000;
	static const int64_t gaps[] = { 2000, 4000, 8000, 10000, 10000, 10000 };
	for (size_t i = 0; i < N(gaps); i++) {
		int64_t due = breaker_next_probe_ms(&b, t);
		CHECK_INT(due, t + gaps[i]);
		/* Asked early or late, the answer is clamped to now. */
		CHECK_INT(breaker_next_probe_ms(&b, due + 5), due + 5);
		/* The probe hangs for its timeout. */
		t = due + 5000;
		CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_FAIL, due, t, NULL), 0);
		CHECK_INT(b.state, BREAKER_DOWN);
	}
	/* Failing traffic in DOWN does not move the schedule or the state. */
	int64_t due = breaker_next_probe_ms(&b, t);
	CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, t + 1), 0);
	CHECK_INT(breaker_next_probe_ms(&b, t), due);
	/* Nor does a traffic success: only probes lead out of DOWN. */
	CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_OK, t + 2), 0);
	CHECK_INT(b.state, BREAKER_DOWN);
	CHECK_INT(b.last_ok_ms, t + 2);
	CHECK_INT(breaker_next_probe_ms(&b, t), due);
}

static void test_recovery(void)
{
	breaker b = down_at(1000);
	breaker_event ev;
	CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_OK, 3000, 3050, &ev), 1);
	CHECK_INT(ev.from, BREAKER_DOWN);
	CHECK_INT(ev.to, BREAKER_RECOVERING);
	CHECK_INT(ev.at_ms, 3050);
	CHECK_INT(b.state, BREAKER_RECOVERING);
	CHECK(!breaker_allows_traffic(&b));
	CHECK_INT(breaker_next_probe_ms(&b, 3050), 4050);
	CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_OK, 4050, 4100, &ev), 1);
	CHECK_INT(ev.from, BREAKER_RECOVERING);
	CHECK_INT(ev.to, BREAKER_UP);
	CHECK_INT(ev.at_ms, 4100);
	CHECK(breaker_allows_traffic(&b));
	CHECK_INT(b.changes, 3);
	CHECK_INT(b.last_change_ms, 4100);
	/* UP again: the next probe is one interval later, and the backoff starts over next time. */
	CHECK_INT(breaker_next_probe_ms(&b, 4100), 9100);
	at(&b, BREAKER_PROBE, BREAKER_FAIL, 9100);
	at(&b, BREAKER_PROBE, BREAKER_FAIL, 10100);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_FAIL, 11100), 1);
	CHECK_INT(breaker_next_probe_ms(&b, 11100), 13100);
}

/* A failure in RECOVERING returns to DOWN, and the backoff goes on from where it was. */
static void test_recovering_failure(void)
{
	breaker b = down_at(0);
	at(&b, BREAKER_PROBE, BREAKER_FAIL, 2000);   /* next in 4 s */
	at(&b, BREAKER_PROBE, BREAKER_FAIL, 6000);   /* next in 8 s */
	CHECK_INT(breaker_next_probe_ms(&b, 6000), 14000);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 14000), 1);
	CHECK_INT(b.state, BREAKER_RECOVERING);
	breaker_event ev;
	CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_FAIL, 15000, 20000, &ev), 1);
	CHECK_INT(ev.from, BREAKER_RECOVERING);
	CHECK_INT(ev.to, BREAKER_DOWN);
	CHECK_INT(breaker_next_probe_ms(&b, 20000), 30000);   /* 8 s doubled, capped at 10 s */

	/* The success count starts over: one success is RECOVERING again, not UP. */
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 30000), 1);
	CHECK_INT(b.state, BREAKER_RECOVERING);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 31000), 1);
	CHECK_INT(b.state, BREAKER_UP);

	/* Traffic that started in RECOVERING and failed: DOWN too. */
	b = down_at(0);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 2000), 1);
	CHECK_INT(breaker_observe(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 2500, 2600, &ev), 1);
	CHECK_INT(ev.to, BREAKER_DOWN);
	CHECK_INT(breaker_next_probe_ms(&b, 2600), 6600);
}

/* recover_successes 1: DOWN -> UP in one step; 3: two RECOVERING successes. */
static void test_recover_successes_option(void)
{
	breaker_opts o = breaker_opts_default();
	o.recover_successes = 1;
	breaker b;
	REQUIRE(breaker_init(&b, &o, 0) == 0);
	for (int i = 0; i < 3; i++)
		at(&b, BREAKER_PROBE, BREAKER_FAIL, 10);
	breaker_event ev;
	CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_OK, 2010, 2020, &ev), 1);
	CHECK_INT(ev.from, BREAKER_DOWN);
	CHECK_INT(ev.to, BREAKER_UP);

	o.recover_successes = 3;
	REQUIRE(breaker_init(&b, &o, 0) == 0);
	for (int i = 0; i < 3; i++)
		at(&b, BREAKER_PROBE, BREAKER_FAIL, 10);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 2010), 1);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 3010), 0);
	CHECK_INT(b.state, BREAKER_RECOVERING);
	CHECK_INT(breaker_next_probe_ms(&b, 3010), 4010);
	/* A traffic success does not count towards recovery. */
	CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_OK, 3500), 0);
	CHECK_INT(b.state, BREAKER_RECOVERING);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 4010), 1);
	CHECK_INT(b.state, BREAKER_UP);
}

/* A 429 probe in DOWN or RECOVERING moves nothing but the backoff. */
static void test_neutral_probe_backs_off(void)
{
	breaker b = down_at(0);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_NEUTRAL, 2000), 0);
	CHECK_INT(b.state, BREAKER_DOWN);
	CHECK_INT(breaker_next_probe_ms(&b, 2000), 6000);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 6000), 1);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_NEUTRAL, 7000), 0);
	CHECK_INT(b.state, BREAKER_RECOVERING);
	CHECK_INT(breaker_next_probe_ms(&b, 7000), 15000);
	/* The success before the 429 still counts: one more gives UP. */
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 15000), 1);
	CHECK_INT(b.state, BREAKER_UP);
}

/* ---- the probe schedule in UP ------------------------------------------------------ */

static void test_up_probe_schedule(void)
{
	breaker b = fresh();
	CHECK_INT(breaker_next_probe_ms(&b, 0), 5000);
	/* Real traffic succeeding is proof of life: the probe moves on. */
	at(&b, BREAKER_TRAFFIC, BREAKER_OK, 3000);
	CHECK_INT(breaker_next_probe_ms(&b, 3000), 8000);
	at(&b, BREAKER_TRAFFIC, BREAKER_OK, 7900);
	CHECK_INT(breaker_next_probe_ms(&b, 7900), 12900);
	/* A probe success: one interval after it. */
	CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_OK, 12900, 12950, NULL), 0);
	CHECK_INT(breaker_next_probe_ms(&b, 12950), 17950);
	/* A failed probe makes the breaker suspect: the next one a second later. */
	CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_FAIL, 17950, 22950, NULL), 0);
	CHECK_INT(breaker_next_probe_ms(&b, 22950), 23950);
	/* A 429 probe: back to the normal interval (do not hammer a busy server). */
	CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_NEUTRAL, 23950, 24000, NULL), 0);
	CHECK_INT(breaker_next_probe_ms(&b, 24000), 29000);
	/* A failed request after that: probe now. */
	at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 25000);
	CHECK_INT(breaker_next_probe_ms(&b, 25000), 25000);
	/* A success clears the suspicion. */
	at(&b, BREAKER_TRAFFIC, BREAKER_OK, 25100);
	CHECK_INT(breaker_next_probe_ms(&b, 25100), 30100);
}

/* ---- stale results ---------------------------------------------------------------- */

static void test_stale_results(void)
{
	/* A request started before the breaker went DOWN succeeds after: ignored. */
	breaker b = fresh();
	at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 200);
	at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 201);
	CHECK_INT(at(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 202), 1);
	CHECK_INT(breaker_observe(&b, BREAKER_TRAFFIC, BREAKER_OK, 100, 300, NULL), 0);
	CHECK_INT(b.state, BREAKER_DOWN);
	CHECK_INT(b.stale, 1);
	CHECK_INT(b.last_ok_ms, 300);           /* the server did answer */
	CHECK_INT(b.consecutive_failures, 3);   /* but the state machine did not see it */
	/* A probe started before the trip succeeds: no RECOVERING. */
	CHECK_INT(breaker_observe(&b, BREAKER_PROBE, BREAKER_OK, 150, 400, NULL), 0);
	CHECK_INT(b.state, BREAKER_DOWN);
	CHECK_INT(b.stale, 2);
	CHECK_INT(breaker_next_probe_ms(&b, 400), 2202); /* schedule untouched */

	/* Recovered at T: requests hanging since before the outage fail after it. */
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 2202), 1);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 3202), 1);
	REQUIRE(b.state == BREAKER_UP);
	for (int i = 0; i < 10; i++)
		CHECK_INT(breaker_observe(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 150 + i, 3300 + i, NULL), 0);
	CHECK_INT(b.state, BREAKER_UP);
	CHECK_INT(b.consecutive_failures, 0);
	CHECK_INT(b.stale, 12);
	/* They do not make the probe due either. */
	CHECK_INT(breaker_next_probe_ms(&b, 3400), 8202);
	/* A request started exactly at the change counts. */
	CHECK_INT(breaker_observe(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 3202, 3500, NULL), 0);
	CHECK_INT(b.consecutive_failures, 1);
	CHECK_INT(b.stale, 12);

	/* A stale failure after RECOVERING does not send it back DOWN. */
	b = down_at(0);
	CHECK_INT(at(&b, BREAKER_PROBE, BREAKER_OK, 2000), 1);
	CHECK_INT(breaker_observe(&b, BREAKER_TRAFFIC, BREAKER_FAIL, 1000, 2500, NULL), 0);
	CHECK_INT(b.state, BREAKER_RECOVERING);
}

/* ---- simulation ---------------------------------------------------------------------- */

typedef enum sim_shape {
	SHAPE_REFUSED,   /* dark: connection refused, noticed after 20 ms */
	SHAPE_HANG,      /* dark: no answer until the caller's timeout */
	SHAPE_503,       /* dark: a 503 after the usual latency */
	SHAPE_429,       /* "dark": 429 after the usual latency (rate limited, not down) */
} sim_shape;

#define SIM_PROBE_LATENCY 80
#define SIM_TRAFFIC_LATENCY 400
#define SIM_MAX_STREAMS 8
#define SIM_MAX_TOGGLES 64
#define SIM_MAX_CHANGES 1024
#define SIM_LIMIT_MS 30000   /* the requirement */

typedef struct sim_cfg {
	const char *name;
	sim_shape shape;
	unsigned streams;            /* concurrent pull requests; 0 = idle (probes only) */
	int64_t traffic_timeout_ms;
	int64_t toggles[SIM_MAX_TOGGLES]; /* the EHR flips at these times, starting up; 0 ends */
	int64_t end_ms;
} sim_cfg;

typedef struct sim_req {
	bool busy;
	int64_t start, end;
	breaker_result res;
	unsigned attempt;     /* streams: failed attempts in a row */
	int64_t next_start;   /* streams: not before this */
} sim_req;

typedef struct sim {
	const sim_cfg *cfg;
	int64_t offset;       /* added to every toggle */
	int64_t later;        /* added to every toggle but the first (varies the outage's length) */
	size_t n_toggles;
	breaker b;
	sim_req probe;
	sim_req streams[SIM_MAX_STREAMS];
	breaker_event changes[SIM_MAX_CHANGES];
	size_t n_changes;
	unsigned bad;         /* inconsistent events, overflow */
} sim;

static int64_t sim_toggle(const sim *s, size_t i)
{
	return s->cfg->toggles[i] + s->offset + (i > 0 ? s->later : 0);
}

static bool sim_dark(const sim *s, int64_t t)
{
	size_t flips = 0;
	for (size_t i = 0; i < s->n_toggles && sim_toggle(s, i) <= t; i++)
		flips++;
	return flips % 2 == 1;
}

/* Is the EHR up all through [a, e]? */
static bool sim_up_through(const sim *s, int64_t a, int64_t e)
{
	if (sim_dark(s, a))
		return false;
	for (size_t i = 0; i < s->n_toggles; i++)
		if (sim_toggle(s, i) > a && sim_toggle(s, i) <= e)
			return false;
	return true;
}

/* Start a request at t and decide now how it will end. */
static void sim_start(const sim *s, sim_req *r, int64_t t, int64_t latency, int64_t timeout)
{
	r->busy = true;
	r->start = t;
	if (sim_up_through(s, t, t + latency)) {
		r->end = t + latency;
		r->res = BREAKER_OK;
	} else if (s->cfg->shape == SHAPE_429) {
		r->end = t + latency;
		r->res = breaker_classify_http(429);
	} else if (!sim_dark(s, t)) {
		r->end = t + timeout;    /* the EHR went away mid-request: hangs */
		r->res = BREAKER_FAIL;
	} else {
		switch (s->cfg->shape) {
		case SHAPE_REFUSED:
			r->end = t + 20;
			r->res = BREAKER_FAIL;
			break;
		case SHAPE_HANG:
			r->end = t + timeout;
			r->res = BREAKER_FAIL;
			break;
		case SHAPE_503:
			r->end = t + latency;
			r->res = breaker_classify_http(503);
			break;
		case SHAPE_429:   /* handled above */
			break;
		}
	}
}

static void sim_note(sim *s, int changed, const breaker_event *ev, int64_t now)
{
	if (!changed)
		return;
	if (ev->at_ms != now || ev->to != s->b.state || ev->from == ev->to ||
	    (s->n_changes > 0 && s->changes[s->n_changes - 1].to != ev->from) ||
	    (s->n_changes == 0 && ev->from != BREAKER_UP) || s->n_changes == SIM_MAX_CHANGES) {
		s->bad++;
		return;
	}
	s->changes[s->n_changes++] = *ev;
}

/* The retry delay of the simulated pull: 500 ms doubling to 8 s. */
static int64_t sim_retry_delay(unsigned attempt)
{
	int64_t d = 500;
	for (unsigned i = 1; i < attempt && d < 8000; i++)
		d *= 2;
	return d < 8000 ? d : 8000;
}

/*
 * Play cfg with its toggles shifted by offset, as the daemon would drive the
 * breaker: one probe at a time when due, `streams` pull requests back to
 * back while UP (retrying failures with backoff), every result observed.
 * Event-driven: the clock jumps to the next completion or due time.
 */
static void sim_run(sim *s, const sim_cfg *cfg, int64_t offset, int64_t later)
{
	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->offset = offset;
	s->later = later;
	while (s->n_toggles < SIM_MAX_TOGGLES && cfg->toggles[s->n_toggles] > 0)
		s->n_toggles++;
	if (breaker_init(&s->b, NULL, 0) != 0) {
		s->bad++;
		return;
	}
	int64_t probe_timeout = s->b.opts.probe_timeout_ms;
	for (int64_t now = 0; now <= cfg->end_ms;) {
		breaker_event ev;
		if (s->probe.busy && s->probe.end == now) {
			s->probe.busy = false;
			sim_note(s, breaker_observe(&s->b, BREAKER_PROBE, s->probe.res, s->probe.start, now, &ev), &ev,
				 now);
		}
		for (unsigned i = 0; i < cfg->streams; i++) {
			sim_req *r = &s->streams[i];
			if (!r->busy || r->end != now)
				continue;
			r->busy = false;
			sim_note(s, breaker_observe(&s->b, BREAKER_TRAFFIC, r->res, r->start, now, &ev), &ev, now);
			if (r->res == BREAKER_OK) {
				r->attempt = 0;
				r->next_start = now;
			} else {
				r->attempt++;
				r->next_start = now + sim_retry_delay(r->attempt);
			}
		}
		if (!s->probe.busy && breaker_next_probe_ms(&s->b, now) <= now)
			sim_start(s, &s->probe, now, SIM_PROBE_LATENCY, probe_timeout);
		bool allowed = breaker_allows_traffic(&s->b);
		for (unsigned i = 0; allowed && i < cfg->streams; i++)
			if (!s->streams[i].busy && s->streams[i].next_start <= now)
				sim_start(s, &s->streams[i], now, SIM_TRAFFIC_LATENCY, cfg->traffic_timeout_ms);

		int64_t next = cfg->end_ms + 1;
		int64_t t = s->probe.busy ? s->probe.end : breaker_next_probe_ms(&s->b, now);
		next = t < next ? t : next;
		for (unsigned i = 0; i < cfg->streams; i++) {
			const sim_req *r = &s->streams[i];
			if (r->busy)
				t = r->end;
			else if (allowed)
				t = r->next_start;
			else
				continue;
			next = t < next ? t : next;
		}
		if (next <= now) {   /* would not advance: a bug in the breaker or here */
			s->bad++;
			return;
		}
		now = next;
	}
}

static breaker_state sim_state_at(const sim *s, int64_t t)
{
	breaker_state st = BREAKER_UP;
	for (size_t i = 0; i < s->n_changes && s->changes[i].at_ms <= t; i++)
		st = s->changes[i].to;
	return st;
}

/* Is there a change in [a, e)? */
static bool sim_changed_in(const sim *s, int64_t a, int64_t e)
{
	for (size_t i = 0; i < s->n_changes; i++)
		if (s->changes[i].at_ms >= a && s->changes[i].at_ms < e)
			return true;
	return false;
}

/* How long after t the state first was `want` (0 if it already was); -1 if never before e. */
static int64_t sim_reached(const sim *s, int64_t t, int64_t e, breaker_state want)
{
	if (sim_state_at(s, t) == want)
		return 0;
	for (size_t i = 0; i < s->n_changes; i++)
		if (s->changes[i].at_ms > t && s->changes[i].at_ms < e && s->changes[i].to == want)
			return s->changes[i].at_ms - t;
	return -1;
}

typedef struct sim_worst {
	int64_t down_ms, up_ms;
	size_t max_changes;
} sim_worst;

/*
 * Check one run phase by phase. The first (healthy) phase: no change at all.
 * Every later phase longer than the limit: the matching state (DOWN when
 * dark, UP when up) within SIM_LIMIT_MS of its start, then no change until
 * it ends. Returns false (after reporting) on a failure.
 */
static bool sim_check(const sim *s, sim_worst *w)
{
	bool ok = s->bad == 0;
	size_t phases = s->n_toggles + 1;
	for (size_t k = 0; k < phases; k++) {
		int64_t a = k == 0 ? 0 : sim_toggle(s, k - 1);
		int64_t e = k == s->n_toggles ? s->cfg->end_ms : sim_toggle(s, k);
		if (k == 0) {
			ok &= !sim_changed_in(s, 0, e);
			continue;
		}
		if (e - a <= SIM_LIMIT_MS)
			continue;
		bool dark = k % 2 == 1;
		int64_t took = sim_reached(s, a, e, dark ? BREAKER_DOWN : BREAKER_UP);
		if (took < 0 || took > SIM_LIMIT_MS || sim_changed_in(s, a + took + 1, e)) {
			fprintf(stderr, "%s offset %lld+%lld: phase %zu (%s from %lld): reached after %lld ms, %zu changes\n",
				s->cfg->name, (long long)s->offset, (long long)s->later, k, dark ? "dark" : "up", (long long)a, (long long)took,
				s->n_changes);
			ok = false;
			continue;
		}
		if (dark && took > w->down_ms)
			w->down_ms = took;
		if (!dark && took > w->up_ms)
			w->up_ms = took;
	}
	if (s->n_changes > w->max_changes)
		w->max_changes = s->n_changes;
	if (!ok)
		for (size_t i = 0; i < s->n_changes; i++)
			fprintf(stderr, "  %lld %s -> %s\n", (long long)s->changes[i].at_ms,
				breaker_state_name(s->changes[i].from), breaker_state_name(s->changes[i].to));
	return ok;
}

/*
 * Run cfg with the EHR's first flip shifted over 6.9 s (more than a probe
 * cycle in UP: 5 s, or the 1 s + 5 s of a suspect probe that hangs) and the
 * later ones over another 12 s (more than the longest DOWN probe cycle, 10 s
 * plus a hung probe): every phase of the breaker's schedule against the
 * outage's start and end. Check each run.
 */
static void sim_play(const sim_cfg *cfg)
{
	static sim s; /* large; not on the stack */
	sim_worst w = { 0 };
	unsigned failed = 0;
	for (int64_t k = 0; k < 20; k++) {
		for (int64_t j = 0; j < 16; j++) {
			sim_run(&s, cfg, k * 347, j * 751);
			if (!sim_check(&s, &w))
				failed++;
		}
	}
	CHECK_INT(failed, 0);
	/* The outage was noticed at all (guards against a vacuous pass). */
	CHECK(w.max_changes > 0);
	if (getenv("BREAKER_SIM_VERBOSE"))
		fprintf(stderr, "%-28s worst DOWN after %5.1f s, worst UP after %5.1f s, max %zu changes\n", cfg->name,
			(double)w.down_ms / 1000, (double)w.up_ms / 1000, w.max_changes);
}

/* One outage from 20 s to 80 s, in every fault shape, idle and with a pull running. */
static void test_sim_outage(void)
{
	static const sim_cfg cfgs[] = {
		{ "refused, idle", SHAPE_REFUSED, 0, 5000, { 20000, 80000 }, 130000 },
		{ "refused, pull", SHAPE_REFUSED, 2, 5000, { 20000, 80000 }, 130000 },
		{ "hang, idle", SHAPE_HANG, 0, 5000, { 20000, 80000 }, 130000 },
		{ "hang, pull", SHAPE_HANG, 2, 5000, { 20000, 80000 }, 130000 },
		{ "hang, long pull 60 s", SHAPE_HANG, 4, 60000, { 20000, 80000 }, 130000 },
		{ "hang, long pull 300 s", SHAPE_HANG, 8, 300000, { 20000, 80000 }, 130000 },
		{ "503, idle", SHAPE_503, 0, 5000, { 20000, 80000 }, 130000 },
		{ "503, pull", SHAPE_503, 4, 5000, { 20000, 80000 }, 130000 },
	};
	for (size_t i = 0; i < N(cfgs); i++)
		sim_play(&cfgs[i]);
}

/* Flapping: blips of service during the outage, flapping before it, long alternation. */
static void test_sim_flapping(void)
{
	static sim_cfg cfgs[] = {
		{ "blips in outage, hang", SHAPE_HANG, 2, 5000, { 0 }, 170000 },
		{ "blips in outage, refused", SHAPE_REFUSED, 2, 5000, { 0 }, 170000 },
		{ "flaps then outage, hang", SHAPE_HANG, 2, 5000, { 0 }, 180000 },
		{ "flaps then outage, refused", SHAPE_REFUSED, 4, 60000, { 0 }, 180000 },
		{ "35 s alternation, hang", SHAPE_HANG, 4, 60000, { 0 }, 200000 },
		{ "35 s alternation, 503", SHAPE_503, 2, 5000, { 0 }, 200000 },
	};
	/* Dark from 20 s; from 60 s up 1.5 s in every 6 s (a RECOVERING or even an UP may
	 * slip in); up for good from 110 s. */
	for (size_t c = 0; c < 2; c++) {
		size_t n = 0;
		cfgs[c].toggles[n++] = 20000;
		for (int64_t t = 60000; t < 104000; t += 6000) {
			cfgs[c].toggles[n++] = t;
			cfgs[c].toggles[n++] = t + 1500;
		}
		cfgs[c].toggles[n++] = 110000;
	}
	/* Up and down every 2 s from 20 s, dark for good from 51 s to 120 s. */
	for (size_t c = 2; c < 4; c++) {
		size_t n = 0;
		for (int64_t t = 20000; t < 50000; t += 2000)
			cfgs[c].toggles[n++] = t;
		if (n % 2 == 1)
			cfgs[c].toggles[n++] = 50000;   /* ends up, so that 51 s starts a dark phase */
		cfgs[c].toggles[n++] = 51000;
		cfgs[c].toggles[n++] = 120000;
	}
	/* 35 s phases. */
	for (size_t c = 4; c < 6; c++) {
		size_t n = 0;
		for (int64_t t = 20000; t < 200000; t += 35000)
			cfgs[c].toggles[n++] = t;
	}
	for (size_t i = 0; i < N(cfgs); i++)
		sim_play(&cfgs[i]);
}

/* A server answering 429 to everything for a minute is not down. */
static void test_sim_rate_limited(void)
{
	static const sim_cfg cfg = { "429 for 60 s", SHAPE_429, 4, 5000, { 20000, 80000 }, 130000 };
	static sim s;
	for (int64_t k = 0; k < 10; k++) {
		sim_run(&s, &cfg, k * 173, 0);
		CHECK_INT(s.bad, 0);
		CHECK_INT(s.n_changes, 0);
		CHECK_INT(s.b.state, BREAKER_UP);
	}
}

int main(int argc, char **argv)
{
	static const struct harness_test tests[] = {
		HARNESS_TEST(test_defaults_and_names),
		HARNESS_TEST(test_init_invalid),
		HARNESS_TEST(test_classify),
		HARNESS_TEST(test_consecutive_failures),
		HARNESS_TEST(test_threshold_option),
		HARNESS_TEST(test_429_is_not_an_outage),
		HARNESS_TEST(test_error_window),
		HARNESS_TEST(test_down_backoff),
		HARNESS_TEST(test_recovery),
		HARNESS_TEST(test_recovering_failure),
		HARNESS_TEST(test_recover_successes_option),
		HARNESS_TEST(test_neutral_probe_backs_off),
		HARNESS_TEST(test_up_probe_schedule),
		HARNESS_TEST(test_stale_results),
		HARNESS_TEST(test_sim_outage),
		HARNESS_TEST(test_sim_flapping),
		HARNESS_TEST(test_sim_rate_limited),
	};
	return harness_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
