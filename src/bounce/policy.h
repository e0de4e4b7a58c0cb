/*
 * policy.h - the suppression decision for one failure or complaint, as
 * a pure function of the [bounce] settings and the address's recent
 * soft failures (read from the events by the caller):
 *   hard bounce (status in hard_statuses: 5.1.*, 5.2.1 by default)
 *       -> suppress now (source bounce, expiry hard_expiry)
 *   soft bounce (status in soft_statuses: 4.*.*, 5.2.2 by default)
 *       -> suppress once soft_bounce_limit different messages failed
 *          within soft_bounce_window (expiry soft_expiry)
 *   complaint -> suppress now (source complaint, expiry complaint_expiry)
 *   anything else (a policy block, 5.7.1 spam) -> never: it says
 *       nothing about the address.
 * Used by tern-bounce.
 */
#ifndef TERN_BOUNCE_POLICY_H
#define TERN_BOUNCE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bounce_policy {
	const char *const *hard_statuses;	/* patterns, as "5.1.*" */
	size_t n_hard;
	const char *const *soft_statuses;
	size_t n_soft;
	unsigned soft_limit;			/* failures (distinct messages) */
	int64_t soft_window_ms;
	int64_t hard_expiry_ms;			/* 0: never expires */
	int64_t soft_expiry_ms;
	int64_t complaint_expiry_ms;
};

enum bounce_severity {
	BOUNCE_IGNORED = 0,		/* says nothing about the address */
	BOUNCE_SOFT,
	BOUNCE_HARD,
};

/* One earlier soft failure of the same address. */
struct soft_failure {
	int64_t time_ms;
	uint64_t qid;
};

struct suppression_verdict {
	bool suppress;
	uint8_t source;			/* enum queue_supp_source */
	int64_t expires_ms;		/* 0: never */
	enum bounce_severity severity;
	unsigned soft_count;		/* distinct messages in the window */
};

/* Hard, soft or ignored, by the status patterns (hard wins). */
enum bounce_severity bounce_severity_of(const struct bounce_policy *p,
    const char *status);

/*
 * Decides for a bounce (is_complaint false; status, this failure's qid,
 * and the earlier soft failures) or a complaint (is_complaint true).
 */
void bounce_policy_decide(const struct bounce_policy *p, bool is_complaint,
    const char *status, uint64_t qid, const struct soft_failure *earlier,
    size_t n_earlier, int64_t now_ms, struct suppression_verdict *out);

#endif
