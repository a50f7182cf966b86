/*
 * ratelimit — never more than `limit` requests in any window of
 * `window_ms` (a sliding window, exact: the times of the last `limit`
 * requests are kept in a ring). Used to keep every REDCap server well under
 * its ban threshold (600 requests a minute from one IP, then banned for
 * good). Pure logic: the caller passes the time, so it is testable and the
 * event loop decides how to wait.
 */
#pragma once

#include <stdint.h>

typedef struct ratelimit {
	uint64_t *ring;      /* times (ms) of the last `limit` requests, oldest at head */
	unsigned limit;
	unsigned count;
	unsigned head;
	uint64_t window_ms;
} ratelimit;

#define RATELIMIT_NULL { 0 }

/* 0, or -ENOMEM / -EINVAL (limit or window 0). */
int ratelimit_init(ratelimit *rl, unsigned limit, uint64_t window_ms);
void ratelimit_deinit(ratelimit *rl);

/* How long to wait from now_ms before the next request may start (0: now). */
uint64_t ratelimit_delay(const ratelimit *rl, uint64_t now_ms);

/* A request starts at now_ms (call only when ratelimit_delay() said 0). */
void ratelimit_record(ratelimit *rl, uint64_t now_ms);
