#include "bridge/ratelimit.h"

#include <errno.h>
#include <stdlib.h>

int ratelimit_init(ratelimit *rl, unsigned limit, uint64_t window_ms)
{
	*rl = (ratelimit)RATELIMIT_NULL;
	if (limit == 0 || window_ms == 0)
		return -EINVAL;
	rl->ring = calloc(limit, sizeof(*rl->ring));
	if (!rl->ring)
		return -ENOMEM;
	rl->limit = limit;
	rl->window_ms = window_ms;
	return 0;
}

void ratelimit_deinit(ratelimit *rl)
{
	if (!rl)
		return;
	free(rl->ring);
	*rl = (ratelimit)RATELIMIT_NULL;
}

uint64_t ratelimit_delay(const ratelimit *rl, uint64_t now_ms)
{
	if (rl->count < rl->limit)
		return 0;
	/* Full: the oldest of the last `limit` must leave the window first. */
	uint64_t free_at = rl->ring[rl->head] + rl->window_ms;
	return free_at > now_ms ? free_at - now_ms : 0;
}

void ratelimit_record(ratelimit *rl, uint64_t now_ms)
{
	if (rl->count < rl->limit) {
		rl->ring[(rl->head + rl->count) % rl->limit] = now_ms;
		rl->count++;
		return;
	}
	/* Replace the oldest. */
	rl->ring[rl->head] = now_ms;
	rl->head = (rl->head + 1) % rl->limit;
}
