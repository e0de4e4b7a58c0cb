/*
 * suppress_policy.c - the suppression decision (see suppress_policy.h).
 * Pure.
 */
#include "autoconfig.h"

#include <string.h>

#include "classify.h"
#include "config.h"
#include "suppress_policy.h"
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

void
bounce_policy_from_config(struct bounce_policy *p,
    const struct tern_config *cfg)
{
	memset(p, 0, sizeof(*p));
	p->hard_statuses = (const char *const *)cfg->bounce.hard_statuses;
	p->n_hard = cfg->bounce.n_hard_statuses;
	p->soft_statuses = (const char *const *)cfg->bounce.soft_statuses;
	p->n_soft = cfg->bounce.n_soft_statuses;
	p->soft_limit = cfg->bounce.soft_bounce_limit;
	p->soft_window_ms = cfg->bounce.soft_bounce_window * 1000;
	p->hard_expiry_ms = cfg->bounce.hard_expiry * 1000;
	p->soft_expiry_ms = cfg->bounce.soft_expiry * 1000;
	p->complaint_expiry_ms = cfg->bounce.complaint_expiry * 1000;
}

static int64_t
expiry(int64_t now_ms, int64_t after_ms)
{
	return after_ms > 0 ? now_ms + after_ms : 0;
}

bool
bounce_class_is_about_mailbox(const char *bounce_class)
{
	static const char *const not_mailbox[] = {
		"dns", "tls", "rate-limited", "policy", "content", "expired",
	};

	if (bounce_class == NULL)
		return true;
	for (size_t i = 0; i < sizeof(not_mailbox) / sizeof(*not_mailbox); i++)
		if (strcmp(bounce_class, not_mailbox[i]) == 0)
			return false;
	return true;
}

void
bounce_policy_decide(const struct bounce_policy *p, bool is_complaint,
    unsigned code, const char *status, const char *bounce_class,
    int64_t now_ms, struct suppression_verdict *out)
{
	memset(out, 0, sizeof(*out));
	if (is_complaint) {
		out->suppress = true;
		out->source = QUEUE_SUPP_COMPLAINT;
		out->expires_ms = expiry(now_ms, p->complaint_expiry_ms);
		return;
	}
	out->source = QUEUE_SUPP_BOUNCE;
	/* A reply without an enhanced status code says as much as the
	 * status of its class only: judge it as 4.0.0 or 5.0.0, as
	 * tern-smtp reports it. */
	if (status == NULL || status[0] == '\0')
		status = code >= 400 && code <= 499 ? "4.0.0" :
		    code >= 500 && code <= 599 ? "5.0.0" : "";
	out->severity = bounce_severity_of(p, status);
	/* A permanent failure with no specific status says what it is only
	 * in words: "550 No such user here" from a server without enhanced
	 * codes, or a report by mail whose status was made from its action.
	 * When the words name the mailbox or the domain as bad (the
	 * classifier), it is a hard bounce; a policy or content refusal is
	 * not the address's fault. */
	if (out->severity != BOUNCE_HARD && strcmp(status, "5.0.0") == 0 &&
	    bounce_class != NULL && (strcmp(bounce_class, "bad-mailbox") == 0 ||
	    strcmp(bounce_class, "bad-domain") == 0))
		out->severity = BOUNCE_HARD;
	switch (out->severity) {
	case BOUNCE_HARD:
		out->suppress = true;
		out->expires_ms = expiry(now_ms, p->hard_expiry_ms);
		return;
	case BOUNCE_SOFT:
		if (!bounce_class_is_about_mailbox(bounce_class)) {
			out->severity = BOUNCE_IGNORED;
			return;
		}
		out->count_soft = p->soft_limit > 0;
		out->expires_ms = expiry(now_ms, p->soft_expiry_ms);
		return;
	case BOUNCE_IGNORED:
		return;
	}
}

void
bounce_policy_soft_failure(const struct bounce_policy *p,
    const char *address, uint64_t qid, const char *reason,
    const struct suppression_verdict *v, struct queue_soft_failure *out)
{
	memset(out, 0, sizeof(*out));
	out->address = address;
	out->qid = qid;
	out->limit = p->soft_limit;
	out->window_ms = p->soft_window_ms;
	out->expires_ms = v->expires_ms;
	out->reason = reason;
}
