/*
 * policy.c - retry, expiry and delay-notice decisions of
 * tern-qmgr, and the wait between commits tried on a full queue, as pure
 * arithmetic (see policy.h); unit tested in
 * tests/unit/test_qmgr_policy.c.
 */
#include "autoconfig.h"

#include <string.h>

#include "policy.h"

enum policy_verdict
policy_classify(uint16_t code)
{
	if (code >= 200 && code < 300)
		return VERDICT_DELIVERED;
	if (code >= 500 && code < 600)
		return VERDICT_FAILED;
	return VERDICT_DEFERRED;
}

int64_t
policy_retry_interval_ms(const struct retry_policy *p, uint32_t attempts)
{
	size_t i;

	if (p->n_schedule == 0)
		return 60 * 1000;
	i = attempts == 0 ? 0 : attempts - 1;
	if (i >= p->n_schedule)
		i = p->n_schedule - 1;
	return p->schedule_s[i] * 1000;
}

int64_t
policy_expiry_ms(const struct retry_policy *p, int64_t arrival_ms)
{
	return arrival_ms + p->lifetime_s * 1000;
}

int64_t
policy_next_attempt_ms(const struct retry_policy *p, int64_t now_ms,
    int64_t arrival_ms, uint32_t attempts, uint32_t rnd)
{
	int64_t interval = policy_retry_interval_ms(p, attempts);
	int64_t jitter = 0, next, expiry;

	/* Spread retries of a burst so they do not stampede one server. */
	if (p->jitter_pct > 0 && interval > 0)
		jitter = (int64_t)((uint64_t)rnd %
		    ((uint64_t)interval * p->jitter_pct / 100 + 1));
	next = now_ms + interval + jitter;
	expiry = policy_expiry_ms(p, arrival_ms);
	/* Come back at the expiry at the latest, to expire it then. */
	if (next > expiry)
		next = expiry > now_ms ? expiry : now_ms;
	return next;
}

bool
policy_is_expired(const struct retry_policy *p, int64_t now_ms,
    int64_t arrival_ms)
{
	return now_ms >= policy_expiry_ms(p, arrival_ms);
}

bool
policy_delay_warning_due(const struct retry_policy *p, int64_t now_ms,
    int64_t arrival_ms, bool already_warned)
{
	if (p->delay_warning_s <= 0 || already_warned)
		return false;
	return now_ms - arrival_ms >= p->delay_warning_s * 1000;
}

int64_t
policy_full_retry_ms(int64_t prev_ms)
{
	if (prev_ms < POLICY_FULL_RETRY_MIN_MS)
		return POLICY_FULL_RETRY_MIN_MS;
	if (prev_ms >= POLICY_FULL_RETRY_MAX_MS / 2)
		return POLICY_FULL_RETRY_MAX_MS;
	return prev_ms * 2;
}
