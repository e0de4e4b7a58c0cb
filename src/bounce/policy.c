/*
 * policy.c - the suppression decision (see policy.h). Pure.
 */
#include "autoconfig.h"

#include <string.h>

#include "classify.h"
#include "policy.h"
#include "queue.h"

static bool
is_in(const char *const *patterns, size_t n, const char *status)
{
	for (size_t i = 0; i < n; i++)
		if (is_status_match(patterns[i], status))
			return true;
	return false;
}

enum bounce_severity
bounce_severity_of(const struct bounce_policy *p, const char *status)
{
	if (status == NULL || *status == '\0')
		return BOUNCE_IGNORED;
	if (is_in(p->hard_statuses, p->n_hard, status))
		return BOUNCE_HARD;
	if (is_in(p->soft_statuses, p->n_soft, status))
		return BOUNCE_SOFT;
	return BOUNCE_IGNORED;
}

static int64_t
expiry(int64_t now_ms, int64_t after_ms)
{
	return after_ms > 0 ? now_ms + after_ms : 0;
}

void
bounce_policy_decide(const struct bounce_policy *p, bool is_complaint,
    const char *status, uint64_t qid, const struct soft_failure *earlier,
    size_t n_earlier, int64_t now_ms, struct suppression_verdict *out)
{
	memset(out, 0, sizeof(*out));
	if (is_complaint) {
		out->suppress = true;
		out->source = QUEUE_SUPP_COMPLAINT;
		out->expires_ms = expiry(now_ms, p->complaint_expiry_ms);
		return;
	}
	out->severity = bounce_severity_of(p, status);
	out->source = QUEUE_SUPP_BOUNCE;
	switch (out->severity) {
	case BOUNCE_HARD:
		out->suppress = true;
		out->expires_ms = expiry(now_ms, p->hard_expiry_ms);
		return;
	case BOUNCE_SOFT:
		break;
	case BOUNCE_IGNORED:
		return;
	}
	/* Count distinct messages, this one included, within the window:
	 * one message retried ten times is one failure, not ten. */
	out->soft_count = 1;
	for (size_t i = 0; i < n_earlier; i++) {
		bool seen = earlier[i].qid == qid;

		if (earlier[i].time_ms < now_ms - p->soft_window_ms ||
		    earlier[i].time_ms > now_ms)
			continue;
		for (size_t j = 0; j < i && !seen; j++)
			if (earlier[j].qid == earlier[i].qid &&
			    earlier[j].time_ms >= now_ms - p->soft_window_ms &&
			    earlier[j].time_ms <= now_ms)
				seen = true;
		if (!seen)
			out->soft_count++;
	}
	if (p->soft_limit > 0 && out->soft_count >= p->soft_limit) {
		out->suppress = true;
		out->expires_ms = expiry(now_ms, p->soft_expiry_ms);
	}
}
