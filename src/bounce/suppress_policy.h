/*
 * suppress_policy.h - the suppression decision for one failure or
 * complaint, as a pure function of the [bounce] settings:
 *   hard bounce (status in hard_statuses: 5.1.*, 5.2.1 by default)
 *       -> suppress now (source bounce, expiry hard_expiry)
 *   soft bounce (status in soft_statuses: 4.*.*, 5.2.2 by default)
 *       -> count it: the queue suppresses the address once
 *          soft_bounce_limit different messages failed within
 *          soft_bounce_window (expiry soft_expiry), see
 *          queue_update_soft_failure()
 *   a reply without an enhanced status: 5xx -> hard, 4xx -> as 4.0.0
 *   status 5.0.0 (no specific one) and class bad-mailbox or bad-domain
 *          (the reply's words) -> hard
 *   complaint -> suppress now (source complaint, expiry complaint_expiry)
 *   anything else, and soft failures whose class says nothing about the
 *   mailbox (dns, tls, rate-limited, policy, content: a destination that
 *   is down, throttles or blocks us) -> never.
 * Used by tern-qmgr (delivery results) and tern-bounce (reports by mail).
 */
#ifndef TERN_BOUNCE_SUPPRESS_POLICY_H
#define TERN_BOUNCE_SUPPRESS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"

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

struct suppression_verdict {
	bool suppress;			/* now */
	bool count_soft;		/* a soft bounce to count */
	uint8_t source;			/* enum queue_supp_source */
	int64_t expires_ms;		/* 0: never */
	enum bounce_severity severity;
};

struct tern_config;

/* The [bounce] settings; the status lists stay cfg's. */
void bounce_policy_from_config(struct bounce_policy *p,
    const struct tern_config *cfg);

/* Hard, soft or ignored, by the status patterns (hard wins). */
enum bounce_severity bounce_severity_of(const struct bounce_policy *p,
    const char *status);

/* False for the classes of failures that are not the mailbox's doing. */
bool bounce_class_is_about_mailbox(const char *bounce_class);

/*
 * Decides for a bounce (is_complaint false; its SMTP reply code, 0 none,
 * its enhanced status, "" none, and its bounce class) or a complaint
 * (is_complaint true). A reply without a status is judged as 4.0.0 or
 * 5.0.0; 5.0.0 is hard when the class is bad-mailbox or bad-domain.
 */
void bounce_policy_decide(const struct bounce_policy *p, bool is_complaint,
    unsigned code, const char *status, const char *bounce_class,
    int64_t now_ms, struct suppression_verdict *out);

/* The queue operation that counts a soft bounce (strings borrowed). */
void bounce_policy_soft_failure(const struct bounce_policy *p,
    const char *address, uint64_t qid, const char *reason,
    const struct suppression_verdict *v, struct queue_soft_failure *out);

#endif
