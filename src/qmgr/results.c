/*
 * results.c - writing outcomes back: per recipient, 2xx delivered, 5xx
 * failed (bounced, maybe suppressed), 4xx or no reply deferred until the
 * next attempt from retry_schedule, or expired once max_queue_lifetime
 * has passed. Every change goes into the writer's next group with its
 * event, and gets a Postfix-shaped log line:
 *   0190F3A1C2B40123: to=<a@b>, relay=mx.b[192.0.2.1], delay=2.1,
 *   dsn=4.3.0, status=deferred (451 4.3.0 try later)
 * As in Postfix, the delivery agent logs what happened in its attempts;
 * tern-qmgr logs at info level what it decides itself (expired,
 * suppressed, deferred for a lost or silent agent) and the rest only
 * with -v, so each attempt has one line.
 * Recipients that need a DSN carry QUEUE_RF_DSN_* and stay ACTIVE in the
 * store for tern-bounce (see tern-qmgr(8)).
 */
#include "autoconfig.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"
#include "log.h"
#include "qmgr.h"
#include "util.h"

static uint8_t
dsn_if_wanted(const char *sender, uint8_t notify, uint8_t kind)
{
	struct queue_msg_info m;
	struct queue_rcpt_info r;

	memset(&m, 0, sizeof(m));
	memset(&r, 0, sizeof(r));
	m.sender = sender;
	r.notify = notify;
	return queue_dsn_wanted(&m, &r, kind) ? kind : 0;
}

static void
log_result(bool own, uint64_t qid, const char *address, const char *relay,
    int64_t arrival_ms, int64_t now_ms, const char *dsn, const char *status,
    uint16_t code, const char *text)
{
	char id[QUEUE_ID_LEN + 1];
	void (*logf)(const char *, ...) TERN_PRINTF(1, 2) =
	    own ? log_info : log_debug;
	char prefix[8];

	queue_id_format(qid, id);
	/* Some agents give the whole reply line as the text. */
	snprintf(prefix, sizeof(prefix), "%u ", code);
	if (code != 0 && strncmp(text, prefix, strlen(prefix)) == 0)
		code = 0;
	if (code != 0)
		logf("%s: to=<%s>, relay=%s, delay=%.1f, dsn=%s, status=%s "
		    "(%u %s%s%s)", id, address, relay[0] ? relay : "none",
		    (double)(now_ms - arrival_ms) / 1000.0, dsn[0] ? dsn : "-",
		    status, code, dsn, dsn[0] ? " " : "", text);
	else
		logf("%s: to=<%s>, relay=%s, delay=%.1f, dsn=%s, status=%s "
		    "(%s)", id, address, relay[0] ? relay : "none",
		    (double)(now_ms - arrival_ms) / 1000.0, dsn[0] ? dsn : "-",
		    status, text);
}

struct dsn_notice {
	uint64_t qid;
	uint32_t rcpt;
	bool final;
};

/* The result with its DSN flag is committed: bounce may read it. */
static void
dsn_committed(void *arg, enum queue_err status, bool removed)
{
	struct dsn_notice *n = arg;

	if (status == QUEUE_OK && !removed)
		bounce_notify(n->qid, n->rcpt, n->final);
	free(n);
}

static void
add_result(const struct queue_result *r)
{
	struct dsn_notice *n = NULL;

	queue_update_result(store_group(), r);
	if (r->dsn != 0) {
		n = xcalloc(1, sizeof(*n));
		n->qid = r->qid;
		n->rcpt = r->rcpt;
		n->final = r->state != QUEUE_RCPT_DEFERRED;
	}
	store_track(r->qid, n != NULL ? dsn_committed : NULL, n);
}

/* A reply about the recipient itself (to RCPT TO or at the end of
 * DATA, as the agent says), not about the connection or the sender:
 * only such a reply may count against the address. */
static bool
is_reply_about_recipient(const struct rcpt_result *res)
{
	return res->stage == DELIVERY_STAGE_RCPT ||
	    res->stage == DELIVERY_STAGE_DOT;
}

/*
 * What a failure or deferral says about the address ([bounce] policy,
 * bounce_policy_decide()): a hard bounce suppresses it now; a soft
 * bounce is counted in the queue, which suppresses once
 * soft_bounce_limit different messages failed within soft_bounce_window.
 */
static void
note_failure(uint64_t qid, const char *address, const struct rcpt_result *res,
    const char *bounce_class, int64_t now_ms)
{
	struct suppression_verdict v;
	struct queue_suppression s;
	char *reason;

	if (res->code < 400 || res->code > 599)
		return;
	bounce_policy_decide(&qmgr.supp_policy, false, res->code, res->status,
	    bounce_class, now_ms, &v);
	if (!v.suppress && !(v.count_soft && is_reply_about_recipient(res)))
		return;
	reason = xasprintf("%u %s %s", res->code, res->status, res->text);
	if (v.suppress) {
		memset(&s, 0, sizeof(s));
		s.address = address;
		s.source = QUEUE_SUPP_BOUNCE;
		s.reason = reason;
		s.created_ms = now_ms;
		s.expires_ms = v.expires_ms;
		s.qid = qid;
		queue_update_suppress_add(store_group(), &s);
	} else {
		struct queue_soft_failure f;

		bounce_policy_soft_failure(&qmgr.supp_policy, address, qid,
		    reason, &v, &f);
		queue_update_soft_failure(store_group(), &f);
	}
	store_track(qid, NULL, NULL);
	free(reason);
}

void
result_attempt(struct job *j, struct job_rcpt *jr,
    const struct rcpt_result *res, bool from_agent, int64_t now_ms)
{
	struct queue_result r;
	char *text = NULL, *relay = NULL;
	const char *log_status;
	bool own = !from_agent;

	memset(&r, 0, sizeof(r));
	r.qid = j->qid;
	r.rcpt = jr->index;
	r.attempted = true;
	r.time_ms = now_ms;
	r.code = res->code;
	r.status = res->status;
	r.text = res->text;
	/* "host[address]", as Postfix writes a relay. */
	if (res->remote_addr[0] != '\0' && strchr(res->remote_host, '[') == NULL)
		relay = xasprintf("%s[%s]", res->remote_host[0] ?
		    res->remote_host : "unknown", res->remote_addr);
	r.remote_host = relay != NULL ? relay : res->remote_host;
	r.bounce_class = "";
	jr->done = true;

	switch (policy_classify(res->code)) {
	case VERDICT_DELIVERED:
		r.state = QUEUE_RCPT_DELIVERED;
		r.dsn = dsn_if_wanted(j->sender, jr->notify, QUEUE_RF_DSN_SUCCESS);
		log_status = "sent";
		break;
	case VERDICT_FAILED:
		r.state = QUEUE_RCPT_FAILED;
		r.bounce_class = bounce_classify(qmgr.classifier, res->code,
		    res->status, res->text);
		r.dsn = dsn_if_wanted(j->sender, jr->notify, QUEUE_RF_DSN_FAILURE);
		log_status = "bounced";
		note_failure(j->qid, jr->address, res, r.bounce_class, now_ms);
		break;
	default:
		if (policy_is_expired(&qmgr.policy, now_ms, j->arrival_ms)) {
			r.state = QUEUE_RCPT_FAILED;
			r.event = QUEUE_EVENT_EXPIRED;
			r.bounce_class = "expired";
			r.status = "5.4.7";
			text = res->code != 0 ?
			    xasprintf("message expired in the queue; last reply: "
			    "%u %s %s", res->code, res->status, res->text) :
			    xasprintf("message expired in the queue; last error: "
			    "%s %s", res->status, res->text);
			r.text = text;
			r.dsn = dsn_if_wanted(j->sender, jr->notify,
			    QUEUE_RF_DSN_FAILURE);
			log_status = "expired";
			own = true;
			break;
		}
		r.state = QUEUE_RCPT_DEFERRED;
		r.bounce_class = bounce_classify(qmgr.classifier, res->code,
		    res->status, res->text);
		r.next_attempt_ms = policy_next_attempt_ms(&qmgr.policy, now_ms,
		    j->arrival_ms, jr->attempts + 1, (uint32_t)random());
		if (policy_delay_warning_due(&qmgr.policy, now_ms, j->arrival_ms,
		    (jr->flags & QUEUE_RF_DELAY_WARNED) != 0))
			r.dsn = dsn_if_wanted(j->sender, jr->notify,
			    QUEUE_RF_DSN_DELAY);
		log_status = "deferred";
		if (from_agent)
			note_failure(j->qid, jr->address, res, r.bounce_class,
			    now_ms);
		break;
	}
	add_result(&r);
	log_result(own, j->qid, jr->address, r.remote_host, j->arrival_ms,
	    now_ms, r.status, log_status, r.code, r.text);
	free(text);
	free(relay);
}

void
result_defer_job(struct job *j, const char *status, const char *text,
    int64_t now_ms)
{
	struct rcpt_result res;

	memset(&res, 0, sizeof(res));
	res.status = status;
	res.text = text;
	res.remote_host = "";
	res.remote_addr = "";
	res.tls = "";
	for (size_t i = 0; i < j->n_rcpts; i++) {
		if (j->rcpts[i].done)
			continue;
		res.index = j->rcpts[i].index;
		result_attempt(j, &j->rcpts[i], &res, false, now_ms);
	}
}

void
result_expire(const struct queue_msg_info *m, const struct queue_rcpt_info *r,
    int64_t now_ms)
{
	struct queue_result res;
	char *text;

	if (r->last_code != 0)
		text = xasprintf("message expired in the queue after %u "
		    "attempt(s); last reply: %u %s %s", r->attempts, r->last_code,
		    r->last_status, r->last_text);
	else
		text = xasprintf("message expired in the queue after %u "
		    "attempt(s)%s%s", r->attempts, r->last_text[0] ? "; last "
		    "error: " : "", r->last_text);
	memset(&res, 0, sizeof(res));
	res.qid = m->qid;
	res.rcpt = r->index;
	res.state = QUEUE_RCPT_FAILED;
	res.event = QUEUE_EVENT_EXPIRED;
	res.time_ms = now_ms;
	res.code = r->last_code;
	res.status = "5.4.7";
	res.text = text;
	res.remote_host = r->last_host;
	res.bounce_class = "expired";
	res.dsn = dsn_if_wanted(m->sender, r->notify, QUEUE_RF_DSN_FAILURE);
	add_result(&res);
	log_result(true, m->qid, r->address, r->last_host, m->arrival_ms, now_ms,
	    "5.4.7", "expired", 0, text);
	free(text);
}

void
result_suppressed(const struct queue_msg_info *m,
    const struct queue_rcpt_info *r, const char *reason, int64_t now_ms)
{
	struct queue_result res;
	char *text = xasprintf("recipient address suppressed: %s", reason);

	memset(&res, 0, sizeof(res));
	res.qid = m->qid;
	res.rcpt = r->index;
	res.state = QUEUE_RCPT_FAILED;
	res.event = QUEUE_EVENT_SUPPRESSED;
	res.time_ms = now_ms;
	res.status = "5.7.1";
	res.text = text;
	res.remote_host = "";
	res.bounce_class = "suppressed";
	res.dsn = dsn_if_wanted(m->sender, r->notify, QUEUE_RF_DSN_FAILURE);
	add_result(&res);
	log_result(true, m->qid, r->address, "", m->arrival_ms, now_ms, "5.7.1",
	    "bounced", 0, text);
	free(text);
}

void
job_free(struct job *j)
{
	if (j->agent != NULL) {
		TERN_ASSERT(qmgr.n_in_flight > 0);
		qmgr.n_in_flight--;
		dest_job_finished(j->dest);
	}
	if (j->ev_timeout != NULL)
		event_free(j->ev_timeout);
	for (size_t i = 0; i < j->n_rcpts; i++) {
		free(j->rcpts[i].address);
		free(j->rcpts[i].orcpt);
	}
	TERN_ASSERT(qmgr.n_active >= j->n_rcpts);
	qmgr.n_active -= j->n_rcpts;
	free(j->rcpts);
	free(j->sender);
	free(j->return_path);
	free(j->envid);
	free(j);
	/* Room in the active set: more due work may be claimed. */
	sched_request_claim();
}
