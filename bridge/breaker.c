/*
 * breaker — see breaker.h for the states, the rules and the timing argument.
 */
#include "bridge/breaker.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>

breaker_opts breaker_opts_default(void)
{
	return (breaker_opts){
		.probe_interval_ms = 5000,
		.probe_timeout_ms = 5000,
		.fail_threshold = 3,
		.error_window_min = 5,
		.error_window_pct = 80,
		.error_window_ms = 10000,
		.down_probe_min_ms = 2000,
		.down_probe_max_ms = 10000,
		.recover_successes = 2,
		.recover_probe_ms = 1000,
	};
}

static bool opts_valid(const breaker_opts *o)
{
	if (o->probe_interval_ms <= 0 || o->probe_timeout_ms <= 0 || o->down_probe_min_ms <= 0)
		return false;
	if (o->down_probe_max_ms < o->down_probe_min_ms || o->recover_probe_ms < 0)
		return false;
	if (o->fail_threshold == 0 || o->recover_successes == 0)
		return false;
	if (o->error_window_min > 0 && (o->error_window_pct < 1 || o->error_window_pct > 100 || o->error_window_ms <= 0))
		return false;
	return true;
}

/*
 * Reset b to UP at now_ms with its own copy of the options. Owns nothing.
 * 0 or -EINVAL (see breaker.h).
 */
int breaker_init(breaker *b, const breaker_opts *opts, int64_t now_ms)
{
	if (!b)
		return -EINVAL;
	breaker_opts o = opts ? *opts : breaker_opts_default();
	if (!opts_valid(&o))
		return -EINVAL;
	*b = (breaker){
		.opts = o,
		.state = BREAKER_UP,
		.last_change_ms = now_ms,
		.last_ok_ms = BREAKER_NEVER,
		.last_fail_ms = BREAKER_NEVER,
		.last_probe_ms = BREAKER_NEVER,
		.probe_due_ms = now_ms,
	};
	return 0;
}

const char *breaker_state_name(breaker_state s)
{
	switch (s) {
	case BREAKER_UP:
		return "up";
	case BREAKER_DOWN:
		return "down";
	case BREAKER_RECOVERING:
		return "recovering";
	}
	return "?";
}

breaker_result breaker_classify_http(long status)
{
	if (status <= 0 || (status >= 500 && status <= 599))
		return BREAKER_FAIL;
	if (status == 429)
		return BREAKER_NEUTRAL;
	return BREAKER_OK;
}

bool breaker_allows_traffic(const breaker *b)
{
	return b->state == BREAKER_UP;
}

/* The DOWN probe delay at the current backoff step: min doubled per step, capped. */
static int64_t down_delay(const breaker *b)
{
	int64_t d = b->opts.down_probe_min_ms;
	for (unsigned i = 0; i < b->down_step && d < b->opts.down_probe_max_ms; i++)
		d = d > INT64_MAX / 2 ? INT64_MAX : d * 2;
	return d < b->opts.down_probe_max_ms ? d : b->opts.down_probe_max_ms;
}

/* One backoff step further (bounded so that the loop in down_delay stays short). */
static void down_step_up(breaker *b)
{
	if (b->down_step < 63)
		b->down_step++;
}

static void window_clear(breaker *b)
{
	b->window_head = 0;
	b->window_count = 0;
}

/* Remember one traffic result, dropping the oldest when full. */
static void window_push(breaker *b, int64_t at_ms, bool failed)
{
	unsigned slot = (b->window_head + b->window_count) % BREAKER_WINDOW_SLOTS;
	if (b->window_count == BREAKER_WINDOW_SLOTS)
		b->window_head = (b->window_head + 1) % BREAKER_WINDOW_SLOTS;
	else
		b->window_count++;
	b->window[slot].at_ms = at_ms;
	b->window[slot].failed = failed;
}

/* Does the traffic error rate over the last error_window_ms trip the breaker? */
static bool window_trips(const breaker *b, int64_t now_ms)
{
	const breaker_opts *o = &b->opts;
	if (o->error_window_min == 0)
		return false;
	unsigned n = 0, failed = 0;
	for (unsigned i = 0; i < b->window_count; i++) {
		unsigned slot = (b->window_head + i) % BREAKER_WINDOW_SLOTS;
		if (now_ms - b->window[slot].at_ms >= o->error_window_ms)
			continue;
		n++;
		failed += b->window[slot].failed;
	}
	return n >= o->error_window_min && (uint64_t)failed * 100 >= (uint64_t)n * o->error_window_pct;
}

/*
 * Change state at now_ms, fill *ev, and set up what the new state needs:
 * the probe schedule of DOWN / RECOVERING, a clean error window. Returns 1.
 */
static int change(breaker *b, breaker_state to, int64_t now_ms, breaker_event *ev)
{
	breaker_state from = b->state;
	b->state = to;
	b->last_change_ms = now_ms;
	b->changes++;
	window_clear(b);
	switch (to) {
	case BREAKER_UP:
		b->down_step = 0;
		b->recover_count = 0;
		break;
	case BREAKER_DOWN:
		if (from == BREAKER_UP)
			b->down_step = 0;
		b->recover_count = 0;
		b->probe_due_ms = now_ms + down_delay(b);
		break;
	case BREAKER_RECOVERING:
		b->probe_due_ms = now_ms + b->opts.recover_probe_ms;
		break;
	}
	if (ev)
		*ev = (breaker_event){ .from = from, .to = to, .at_ms = now_ms };
	return 1;
}

/* A (non-stale) success in each state. */
static int on_ok(breaker *b, breaker_source src, int64_t now_ms, breaker_event *ev)
{
	b->consecutive_failures = 0;
	if (src == BREAKER_TRAFFIC && b->state == BREAKER_UP)
		window_push(b, now_ms, false);
	if (src != BREAKER_PROBE || b->state == BREAKER_UP)
		return 0;
	if (b->state == BREAKER_DOWN)
		b->recover_count = 0;
	b->recover_count++;
	if (b->recover_count >= b->opts.recover_successes)
		return change(b, BREAKER_UP, now_ms, ev);
	if (b->state == BREAKER_DOWN)
		return change(b, BREAKER_RECOVERING, now_ms, ev);
	b->probe_due_ms = now_ms + b->opts.recover_probe_ms;
	return 0;
}

/* A (non-stale) failure in each state. */
static int on_fail(breaker *b, breaker_source src, int64_t now_ms, breaker_event *ev)
{
	b->last_fail_ms = now_ms;
	if (b->consecutive_failures < UINT_MAX)
		b->consecutive_failures++;
	switch (b->state) {
	case BREAKER_UP:
		if (src == BREAKER_TRAFFIC)
			window_push(b, now_ms, true);
		if (b->consecutive_failures >= b->opts.fail_threshold ||
		    (src == BREAKER_TRAFFIC && window_trips(b, now_ms)))
			return change(b, BREAKER_DOWN, now_ms, ev);
		return 0;
	case BREAKER_RECOVERING:
		down_step_up(b);
		return change(b, BREAKER_DOWN, now_ms, ev);
	case BREAKER_DOWN:
		if (src == BREAKER_PROBE) {
			down_step_up(b);
			b->probe_due_ms = now_ms + down_delay(b);
		}
		return 0;
	}
	return 0;
}

/*
 * Feed one result (see breaker.h). Stale results (started before the last
 * change) only refresh last_ok_ms. Returns 1 on a state change, else 0.
 */
int breaker_observe(breaker *b, breaker_source src, breaker_result res, int64_t started_ms, int64_t now_ms,
		    breaker_event *ev)
{
	if (res == BREAKER_OK)
		b->last_ok_ms = now_ms;
	if (started_ms < b->last_change_ms) {
		b->stale++;
		return 0;
	}
	if (src == BREAKER_PROBE)
		b->last_probe_ms = now_ms;
	switch (res) {
	case BREAKER_OK:
		return on_ok(b, src, now_ms, ev);
	case BREAKER_FAIL:
		return on_fail(b, src, now_ms, ev);
	case BREAKER_NEUTRAL:
		if (src == BREAKER_PROBE && b->state != BREAKER_UP) {
			down_step_up(b);
			b->probe_due_ms = now_ms + down_delay(b);
		}
		return 0;
	}
	return 0;
}

static int64_t max3(int64_t a, int64_t b, int64_t c)
{
	int64_t m = a > b ? a : b;
	return m > c ? m : c;
}

/*
 * The next probe's start time, clamped to now_ms. UP: probe_interval_ms
 * after the latest of the last success, the last probe and the change to
 * UP; recover_probe_ms instead while "suspect" (failures since the last
 * success, the latest of them after the last probe). DOWN / RECOVERING: the
 * time set when the last probe completed or the state changed.
 */
int64_t breaker_next_probe_ms(const breaker *b, int64_t now_ms)
{
	int64_t due;
	if (b->state == BREAKER_UP) {
		bool suspect = b->consecutive_failures > 0 && b->last_fail_ms >= b->last_probe_ms;
		int64_t base = max3(b->last_ok_ms, b->last_probe_ms, b->last_change_ms);
		due = base + (suspect ? b->opts.recover_probe_ms : b->opts.probe_interval_ms);
	} else {
		due = b->probe_due_ms;
	}
	return due > now_ms ? due : now_ms;
}
