/*
 * breaker — the circuit breaker of the EHR connection: is the FHIR server
 * up, down, or coming back? Sans-IO: a state machine fed with results and
 * times (ms on one monotonic clock, e.g. uv_now()); it starts no timer and
 * sends no request. The caller runs the health probe (GET [base]/metadata
 * with probe_timeout_ms), reports every probe and every real FHIR request
 * with breaker_observe(), and asks breaker_next_probe_ms() when to probe.
 *
 * States and what may run:
 *   UP          real traffic (pulls, the downtime resync) runs; probes run
 *               only when nothing succeeded for probe_interval_ms.
 *   DOWN        no real traffic; probes only, backing off from
 *               down_probe_min_ms, doubling, to down_probe_max_ms.
 *   RECOVERING  no real traffic either (the resync waits until UP): probes
 *               only, recover_probe_ms apart.
 *
 * Transitions:
 *   UP -> DOWN          fail_threshold consecutive failures (probes and
 *                       traffic together; any success resets the count), or
 *                       the traffic error rate: at least error_window_min
 *                       traffic results in the last error_window_ms of which
 *                       at least error_window_pct % failed (catches a server
 *                       failing most but not all requests, whose occasional
 *                       success keeps resetting the consecutive count).
 *   DOWN -> RECOVERING  one probe success (it counts as the first of the
 *                       recover_successes).
 *   RECOVERING -> UP    recover_successes consecutive probe successes
 *                       (recover_successes 1: DOWN -> UP directly).
 *   RECOVERING -> DOWN  any failure (probe, or traffic started in
 *                       RECOVERING); the DOWN backoff continues where it was.
 * Only probes lead out of DOWN and RECOVERING: a traffic success there is
 * recorded (last_ok_ms) but moves nothing.
 *
 * Results: breaker_classify_http() maps an HTTP outcome. No answer at all
 * (connection refused, DNS, TLS, reset, timeout) and 5xx are failures. 429 is
 * NOT an outage, and not proof of health either: BREAKER_NEUTRAL never
 * changes the state or the failure count (in DOWN and RECOVERING a neutral
 * probe moves the backoff one step, so a rate-limiting server is probed less
 * often). Any other answer (2xx-4xx: the server answered) is a success; the
 * breaker judges reachability, not whether a request was right.
 *
 * Stale results: a result whose request started before the last state
 * change (started_ms < last_change_ms) is ignored by the state machine (a
 * success still sets last_ok_ms; `stale` counts them). It describes the
 * world before the change: e.g. a request hanging since before an outage
 * must not send a freshly recovered breaker back DOWN, and a probe started
 * before traffic tripped the breaker must not count towards recovery.
 *
 * Timing (defaults; proved by simulation in test-breaker.c): every probe and
 * request fails after at most probe_timeout_ms once the EHR goes dark at t0.
 * The last success is at t0 at the latest, so a probe starts by t0 + 5 s,
 * fails by t0 + 10 s; after a failure the next probe is due recover_probe_ms
 * after it ("suspect" UP), so three failures are in by t0 + 22 s: DOWN
 * within 30 s, sooner with failing traffic. When the EHR is back at t1, the
 * probe in flight fails by t1 + 5 s, the next one starts at most
 * down_probe_max_ms later, succeeds (RECOVERING), and one more
 * recover_probe_ms later gives UP: about t1 + 16 s plus two round trips.
 * (Worst cases measured by the simulation: DOWN 22.0 s, UP 16.2 s.)
 *
 * Scheduling: run at most one probe at a time. After each probe completes
 * (and after each transition) ask breaker_next_probe_ms() again; in UP ask
 * again after traffic results too (a success postpones the probe, a failure
 * makes it due).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef enum breaker_state {
	BREAKER_UP = 0,
	BREAKER_DOWN,
	BREAKER_RECOVERING,
} breaker_state;

typedef enum breaker_source {
	BREAKER_PROBE = 0,    /* GET [base]/metadata health probe */
	BREAKER_TRAFFIC,      /* a real FHIR request (pull page, resync write, ...) */
} breaker_source;

typedef enum breaker_result {
	BREAKER_OK = 0,
	BREAKER_FAIL,         /* no answer, timeout, 5xx */
	BREAKER_NEUTRAL,      /* 429: the server is busy, not down */
} breaker_result;

/* "Never" for the *_ms fields. */
#define BREAKER_NEVER INT64_MIN

typedef struct breaker_opts {
	int64_t probe_interval_ms;   /* UP: probe when nothing succeeded for this long (5000) */
	int64_t probe_timeout_ms;    /* the caller's timeout for a probe; a timed-out probe fails (5000) */
	unsigned fail_threshold;     /* consecutive failures that trip UP -> DOWN (3) */
	unsigned error_window_min;   /* traffic results needed for the rate rule; 0 = rule off (5) */
	unsigned error_window_pct;   /* failure share that trips, 1..100 (80) */
	int64_t error_window_ms;     /* how far back the rate rule looks (10000) */
	int64_t down_probe_min_ms;   /* DOWN: first probe delay, doubling per failed probe (2000) */
	int64_t down_probe_max_ms;   /* ... up to this (10000) */
	unsigned recover_successes;  /* consecutive probe successes DOWN -> UP, counting the first (2) */
	int64_t recover_probe_ms;    /* RECOVERING and suspect UP: delay between probes (1000) */
} breaker_opts;

/* One state change. */
typedef struct breaker_event {
	breaker_state from, to;
	int64_t at_ms;
} breaker_event;

/* Traffic results the rate rule remembers (the most recent ones). */
#define BREAKER_WINDOW_SLOTS 64

/*
 * The breaker. A plain value: no allocation, nothing to free. The fields
 * below "read-only" are for status output; the others are internal.
 */
typedef struct breaker {
	breaker_opts opts;
	/* read-only */
	breaker_state state;
	int64_t last_change_ms;        /* when the state last changed (init time at first) */
	int64_t last_ok_ms;            /* last success of any source, BREAKER_NEVER */
	int64_t last_fail_ms;          /* last failure of any source, BREAKER_NEVER */
	unsigned consecutive_failures; /* failures since the last success (counted in every state) */
	uint64_t changes;              /* state changes since init */
	uint64_t stale;                /* results ignored as stale */
	/* internal */
	int64_t last_probe_ms;         /* completion of the last probe, BREAKER_NEVER */
	int64_t probe_due_ms;          /* DOWN and RECOVERING: when the next probe is due */
	unsigned down_step;            /* DOWN backoff step: delay = min << step, capped */
	unsigned recover_count;        /* RECOVERING: consecutive probe successes so far */
	unsigned window_head, window_count;
	struct {
		int64_t at_ms;
		bool failed;
	} window[BREAKER_WINDOW_SLOTS];
} breaker;

/* The defaults listed in breaker_opts. */
breaker_opts breaker_opts_default(void);

/*
 * Start the breaker UP at now_ms with a copy of opts (NULL: defaults); the
 * first probe is due probe_interval_ms later unless traffic succeeds first.
 * 0, or -EINVAL (b NULL; a zero or negative interval, timeout or probe
 * delay; fail_threshold or recover_successes 0; error_window_pct not 1..100
 * or error_window_ms <= 0 with the rate rule on; down_probe_max_ms below
 * down_probe_min_ms; recover_probe_ms negative).
 */
int breaker_init(breaker *b, const breaker_opts *opts, int64_t now_ms);

/* "up", "down", "recovering" ("?" for anything else). */
const char *breaker_state_name(breaker_state s);

/* An HTTP outcome as a result: status 0 (no HTTP answer) and 5xx fail, 429
 * is neutral, anything else is OK. */
breaker_result breaker_classify_http(long status);

/*
 * Feed one result: a probe or a request that started at started_ms and
 * ended now (now_ms >= started_ms, and not before an earlier now_ms).
 * Returns 1 when the state changed (then *ev, if ev is non-NULL, says how),
 * else 0 (*ev untouched).
 */
int breaker_observe(breaker *b, breaker_source src, breaker_result res, int64_t started_ms, int64_t now_ms,
		    breaker_event *ev);

/* May real traffic (pulls, the resync) start now? Only in UP. */
bool breaker_allows_traffic(const breaker *b);

/*
 * When the next probe should start: an absolute time on the caller's clock,
 * never earlier than now_ms (now_ms means "probe now"). Valid while no probe
 * is in flight; see "Scheduling" above.
 */
int64_t breaker_next_probe_ms(const breaker *b, int64_t now_ms);
