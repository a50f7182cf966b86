/*
 * backoff — the retry delay shared by the FHIR pull and the REDCap push:
 * exponential from base_ms, doubling per attempt up to max_ms, with jitter
 * in [d/2, d] so that many clients retrying at once spread out. The jitter
 * comes from a small xorshift generator the caller seeds (nothing secret
 * depends on it). A Retry-After from the server wins, capped at max_ms.
 */
#pragma once

#include <stdint.h>

/* Next pseudo-random value of *state (xorshift64*); state must not be 0. */
uint64_t backoff_rng(uint64_t *state);

/* The delay before retry number `attempt` (1 = the first retry).
 * retry_after_ms >= 0: the server's Retry-After instead of the backoff. */
uint64_t backoff_delay_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, int64_t retry_after_ms,
			  uint64_t *rng_state);
