/*
 * agent.c - delivery agents (tern-smtp) connected to qmgr's socket. An
 * agent grants credits with DELIVERY_READY; qmgr sends one job per credit
 * and takes one DELIVERY_RESULT per job. A job not answered within
 * [delivery] job_timeout, or in flight when its agent goes away, has its
 * recipients deferred: never lost, at worst delivered twice.
 */
#include "autoconfig.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmgr.h"
#include "util.h"

static struct agent *rr_next;	/* where agent_pick goes on from */

void
agent_attach(struct conn *c)
{
	struct agent *a = xcalloc(1, sizeof(*a));
	pid_t pid = 0;
	uid_t uid;
	gid_t gid;

	a->conn = c;
	TAILQ_INIT(&a->jobs);
	c->agent = a;
	TAILQ_INSERT_TAIL(&qmgr.agents, a, entry);
	ipc_conn_peer_cred(c->ipc, &pid, &uid, &gid);
	log_info("delivery agent %s pid %ld connected",
	    ipc_conn_peer_name(c->ipc), (long)pid);
}

struct agent *
agent_pick(void)
{
	struct agent *start = rr_next != NULL ? rr_next : TAILQ_FIRST(&qmgr.agents);
	struct agent *a = start;

	if (a == NULL)
		return NULL;
	do {
		if (a->credits > 0) {
			rr_next = TAILQ_NEXT(a, entry);
			return a;
		}
		a = TAILQ_NEXT(a, entry);
		if (a == NULL)
			a = TAILQ_FIRST(&qmgr.agents);
	} while (a != start);
	return NULL;
}

static void
job_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	struct agent *a = j->agent;
	char *text;

	(void)fd;
	(void)what;
	TAILQ_REMOVE(&a->jobs, j, entry);
	a->n_jobs--;
	/* Its credit stays out until the late answer returns it. */
	a->late++;
	text = xasprintf("delivery agent did not answer within %llds",
	    (long long)(qmgr.job_timeout_ms / 1000));
	result_defer_job(j, "4.4.7", text, queue_now_ms());
	free(text);
	job_free(j);
	store_kick();
	dispatch();
}

void
agent_send_job(struct agent *a, struct job *j)
{
	struct ipc_out *o;
	struct timeval tv;
	char id[QUEUE_ID_LEN + 1];

	if (++qmgr.next_job_id == 0)
		qmgr.next_job_id = 1;
	j->id = qmgr.next_job_id;
	j->agent = a;
	j->sent_ms = queue_now_ms();
	a->credits--;
	TAILQ_INSERT_TAIL(&a->jobs, j, entry);
	a->n_jobs++;

	queue_id_format(j->qid, id);
	o = ipc_out_new(IPC_DELIVERY_JOB, j->id);
	ipc_put_str(o, id);
	ipc_put_str(o, j->return_path != NULL ? j->return_path : j->sender);
	ipc_put_str(o, j->dest->name);
	ipc_put_u8(o, j->body);
	ipc_put_bool(o, j->smtputf8);
	ipc_put_u64(o, j->size);
	ipc_put_u8(o, j->ret);
	ipc_put_str(o, j->envid);
	ipc_put_i64(o, j->arrival_ms);
	ipc_put_u32(o, (uint32_t)j->n_rcpts);
	for (size_t i = 0; i < j->n_rcpts; i++) {
		ipc_put_u32(o, j->rcpts[i].index);
		ipc_put_str(o, j->rcpts[i].address);
		ipc_put_str(o, j->rcpts[i].orcpt);
		ipc_put_u8(o, j->rcpts[i].notify);
	}
	ipc_conn_send(a->conn->ipc, o);

	j->ev_timeout = evtimer_new(qmgr.d.base, job_timeout_cb, j);
	if (j->ev_timeout == NULL)
		log_fatal("evtimer_new failed");
	tv.tv_sec = qmgr.job_timeout_ms / 1000;
	tv.tv_usec = (qmgr.job_timeout_ms % 1000) * 1000;
	evtimer_add(j->ev_timeout, &tv);
	log_debug("%s: job %u to %s, %zu recipient(s)", id, j->id, j->dest->name,
	    j->n_rcpts);
}

static void
agent_on_result(struct agent *a, struct ipc_msg *m)
{
	struct rcpt_result *res;
	size_t n;
	const char *why;
	struct job *j;
	int64_t now = queue_now_ms();

	if (result_decode(m, &res, &n, &why) == -1) {
		ipc_conn_protocol_error(a->conn->ipc, "malformed DELIVERY_RESULT: %s",
		    why);
		return;
	}
	TAILQ_FOREACH(j, &a->jobs, entry)
		if (j->id == m->reqid)
			break;
	if (j == NULL) {
		/* The answer to a job that timed out: its credit comes back. */
		if (a->late > 0) {
			a->late--;
			a->credits++;
			log_info("late result for job %u ignored (already deferred)",
			    m->reqid);
		} else {
			log_warn("result for unknown job %u from agent ignored",
			    m->reqid);
		}
		free(res);
		dispatch();
		return;
	}
	TAILQ_REMOVE(&a->jobs, j, entry);
	a->n_jobs--;
	a->credits++;
	for (size_t i = 0; i < n; i++) {
		struct job_rcpt *r = NULL;

		for (size_t k = 0; k < j->n_rcpts; k++)
			if (j->rcpts[k].index == res[i].index && !j->rcpts[k].done) {
				r = &j->rcpts[k];
				break;
			}
		if (r == NULL) {
			log_warn("job %u: result for recipient %u that is not in "
			    "the job ignored", j->id, res[i].index);
			continue;
		}
		result_attempt(j, r, &res[i], true, now);
	}
	free(res);
	/* A recipient without a result must not stay claimed forever. */
	result_defer_job(j, "4.3.0", "no result from the delivery agent", now);
	job_free(j);
	store_kick();
	dispatch();
}

void
agent_on_msg(struct agent *a, struct ipc_msg *m)
{
	uint32_t more;

	switch (m->type) {
	case IPC_DELIVERY_READY:
		if (ipc_get_u32(m, &more) == -1 || ipc_msg_end(m) == -1) {
			ipc_conn_protocol_error(a->conn->ipc, "malformed DELIVERY_READY");
			return;
		}
		if (more > 100000 || a->credits + more > 100000) {
			ipc_conn_protocol_error(a->conn->ipc, "too many credits");
			return;
		}
		a->credits += more;
		dispatch();
		break;
	case IPC_DELIVERY_RESULT:
		agent_on_result(a, m);
		break;
	default:
		ipc_conn_protocol_error(a->conn->ipc, "unexpected %s from an agent",
		    ipc_type_name(m->type));
	}
}

/* The agent went away: its jobs in flight are deferred. */
void
agent_detach(struct agent *a)
{
	struct job *j;
	int64_t now = queue_now_ms();
	size_t n = a->n_jobs;

	if (rr_next == a)
		rr_next = TAILQ_NEXT(a, entry);
	TAILQ_REMOVE(&qmgr.agents, a, entry);
	while ((j = TAILQ_FIRST(&a->jobs)) != NULL) {
		TAILQ_REMOVE(&a->jobs, j, entry);
		result_defer_job(j, "4.3.0", "delivery agent went away", now);
		job_free(j);
	}
	if (n > 0)
		log_warn("delivery agent went away with %zu job(s) in flight; "
		    "their recipients are deferred", n);
	else
		log_info("delivery agent disconnected");
	a->conn->agent = NULL;
	free(a);
	store_kick();
	dispatch();
}
