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

/*
 * The same window shared by every process that opens one file (the daemon,
 * an export and the other commands of one site send to one REDCap, and
 * REDCap counts them together). The file holds the start times (wall-clock
 * ms) of the last requests; each decision takes an exclusive flock(2), so
 * two processes never both take the last free place.
 *
 * ratelimit_shared_take: with fd open O_RDWR on that file, either records a
 * request at now_ms and sets *delay_ms = 0, or records nothing and sets
 * *delay_ms to the wait before a place is free. Times outside
 * (now - window, now + window] are dropped (a clock step, a stale file).
 * Returns 0 or -errno (the caller then relies on its own window alone).
 */
#define RATELIMIT_SHARED_MAX 100000
int ratelimit_shared_take(int fd, unsigned limit, uint64_t window_ms, uint64_t now_ms, uint64_t *delay_ms);
