/*
 * backoff — see backoff.h.
 */
#include "bridge/backoff.h"

uint64_t backoff_rng(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

uint64_t backoff_delay_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, int64_t retry_after_ms,
			  uint64_t *rng_state)
{
	uint64_t delay;
	if (retry_after_ms >= 0) {
		delay = (uint64_t)retry_after_ms;
	} else {
		uint64_t d = base_ms;
		for (unsigned i = 1; i < attempt && d < max_ms; i++)
			d *= 2;
		delay = d / 2 + (d > 1 ? backoff_rng(rng_state) % (d / 2 + 1) : 0);
	}
	return delay > max_ms ? max_ms : delay;
}
