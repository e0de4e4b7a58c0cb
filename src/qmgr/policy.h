/*
 * policy.h - tern-qmgr's pure decisions: what an SMTP reply means for a
 * recipient, when it is tried again ([delivery] retry_schedule, the last
 * interval repeats, with jitter), when it expires (max_queue_lifetime)
 * and when a delay notice is due (delay_warning). No I/O, no clock:
 * every time is passed in, so the unit tests can pin each case.
 */
#ifndef TERN_QMGR_POLICY_H
#define TERN_QMGR_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct retry_policy {
	const int64_t *schedule_s;	/* waits before retries 1, 2, ... */
	size_t n_schedule;		/* at least 1 */
	int64_t lifetime_s;		/* max_queue_lifetime */
	int64_t delay_warning_s;	/* 0: no delay notices */
	unsigned jitter_pct;		/* a retry comes up to this much later */
};

enum policy_verdict {
	VERDICT_DELIVERED,		/* 2xx */
	VERDICT_DEFERRED,		/* 4xx, no reply (connection, DNS), other */
	VERDICT_FAILED,			/* 5xx */
};

/* What a reply code means; code 0 is "no reply" (a temporary failure). */
enum policy_verdict policy_classify(uint16_t code);

/* The wait after the attempts-th attempt (1 = the first) in ms: entry
 * attempts-1 of the schedule, the last entry once past its end. */
int64_t policy_retry_interval_ms(const struct retry_policy *p,
    uint32_t attempts);

/* When a recipient deferred at now_ms after its attempts-th attempt is
 * due again: now + interval + jitter (rnd picks a share of jitter_pct),
 * never later than the message's expiry. */
int64_t policy_next_attempt_ms(const struct retry_policy *p, int64_t now_ms,
    int64_t arrival_ms, uint32_t attempts, uint32_t rnd);

/* The moment a message that arrived at arrival_ms expires. */
int64_t policy_expiry_ms(const struct retry_policy *p, int64_t arrival_ms);

/* True once the message has been in the queue for max_queue_lifetime. */
bool policy_is_expired(const struct retry_policy *p, int64_t now_ms,
    int64_t arrival_ms);

/* True when a deferral at now_ms should trigger the (single) delay
 * notice: delay_warning is set and passed, and none was decided yet. */
bool policy_delay_warning_due(const struct retry_policy *p, int64_t now_ms,
    int64_t arrival_ms, bool already_warned);

/*
 * A commit the queue had no room for (map full, disk full) is tried
 * again after this many ms: POLICY_FULL_RETRY_MIN_MS after the first
 * failure, doubling after each further one, at most
 * POLICY_FULL_RETRY_MAX_MS. prev_ms is the last wait, 0 for none.
 */
#define POLICY_FULL_RETRY_MIN_MS	1000
#define POLICY_FULL_RETRY_MAX_MS	30000
int64_t policy_full_retry_ms(int64_t prev_ms);

#endif
