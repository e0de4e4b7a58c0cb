/*
 * signer_client.c - the client side of the IPC_SIGN_* conversation with
 * tern-signer: one reconnecting connection, jobs named by reqid, a
 * SIGN_TEMPFAIL for every job the connection was lost under.
 * Runs in tern-cleanup (and test tools); needs no privilege.
 */
#include "autoconfig.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "ipc.h"
#include "log.h"
#include "signer_client.h"
#include "util.h"

#define SIGNER_MAX_HEADERS	64	/* a reply with more is malformed */
#define SIGNER_TIMEOUT_SEC	30	/* from END to the reply */

struct signer_job {
	TAILQ_ENTRY(signer_job) entry;
	struct signer_client *sc;
	uint32_t reqid;
	uint64_t generation;		/* connection the job was begun on */
	bool ended;			/* END sent (or due): done() pending */
	bool failed;			/* the connection is gone: TEMPFAIL */
	bool sent;			/* BEGIN went out */
	struct event *ev_timeout;	/* after END: the signer is stuck */
	signer_done_fn done;
	void *arg;
};

TAILQ_HEAD(signer_job_list, signer_job);

struct signer_client {
	struct ipc_client *ipc;
	struct signer_job_list jobs;
	uint32_t next_reqid;
	uint64_t generation;		/* counts connections that came up */
	struct event_base *base;
	unsigned timeout_sec;
	struct event *ev_fail;		/* runs done() of failed, ended jobs */
};

static void
signer_job_remove(struct signer_job *job)
{
	TAILQ_REMOVE(&job->sc->jobs, job, entry);
	if (job->ev_timeout != NULL)
		event_free(job->ev_timeout);
	free(job);
}

/* Whether frames for job can go out on the live connection. */
static bool
signer_job_is_live(const struct signer_job *job)
{
	return !job->failed && ipc_client_is_up(job->sc->ipc) &&
	    job->generation == job->sc->generation;
}

static void
signer_job_fail(struct signer_job *job)
{
	job->failed = true;
	if (job->ended)
		event_active(job->sc->ev_fail, 0, 0);
}

/* Reports SIGN_TEMPFAIL for every ended job that failed, one at a time, so
 * a callback may change the list. */
static void
signer_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct signer_client *sc = arg;
	struct signer_job *job;

	(void)fd;
	(void)what;
	for (;;) {
		TAILQ_FOREACH(job, &sc->jobs, entry)
			if (job->ended && job->failed)
				break;
		if (job == NULL)
			return;
		signer_done_fn done = job->done;
		void *done_arg = job->arg;
		bool sent = job->sent;

		signer_job_remove(job);
		done(done_arg, SIGN_TEMPFAIL, sent ? "lost connection to the signer"
		    : "the signer is not reachable", NULL, 0);
	}
}

static void
signer_reply(struct signer_client *sc, struct ipc_conn *c, struct ipc_msg *m)
{
	struct signer_job *job;
	const char *headers[SIGNER_MAX_HEADERS];
	const char *error;
	uint8_t status;
	uint32_t n;

	if (ipc_get_u8(m, &status) == -1 || ipc_get_str(m, &error) == -1 ||
	    ipc_get_u32(m, &n) == -1 || n > SIGNER_MAX_HEADERS) {
		ipc_conn_protocol_error(c, "malformed SIGN_REPLY");
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		if (ipc_get_str(m, &headers[i]) == -1) {
			ipc_conn_protocol_error(c, "malformed SIGN_REPLY");
			return;
		}
	if (ipc_msg_end(m) == -1 || status > SIGN_TEMPFAIL ||
	    (status == SIGN_OK && n == 0)) {
		ipc_conn_protocol_error(c, "malformed SIGN_REPLY");
		return;
	}
	TAILQ_FOREACH(job, &sc->jobs, entry)
		if (job->reqid == m->reqid && job->ended && !job->failed)
			break;
	if (job == NULL)
		return;		/* aborted after END: the reply crossed it */

	signer_done_fn done = job->done;
	void *done_arg = job->arg;

	signer_job_remove(job);
	done(done_arg, status, error, headers, status == SIGN_OK ? n : 0);
}

static void
signer_msg_cb(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	struct signer_client *sc = arg;

	if (m->type != IPC_SIGN_REPLY) {
		ipc_conn_protocol_error(c, "unexpected %s from the signer",
		    ipc_type_name(m->type));
		return;
	}
	signer_reply(sc, c, m);
}

static void
signer_state_cb(struct ipc_client *cl, bool up, void *arg)
{
	struct signer_client *sc = arg;
	struct signer_job *job;

	(void)cl;
	if (up) {
		sc->generation++;
		return;
	}
	TAILQ_FOREACH(job, &sc->jobs, entry)
		signer_job_fail(job);
}

struct signer_client *
signer_client_new(struct event_base *base, const char *socket_path,
    int proof_fd)
{
	struct signer_client *sc = xcalloc(1, sizeof(*sc));

	TAILQ_INIT(&sc->jobs);
	sc->base = base;
	sc->timeout_sec = SIGNER_TIMEOUT_SEC;
	sc->next_reqid = 1;
	sc->ev_fail = event_new(base, -1, 0, signer_fail_cb, sc);
	if (sc->ev_fail == NULL)
		log_fatal("event_new failed");
	sc->ipc = ipc_client_new(base, socket_path, "signer-client",
	    signer_msg_cb, signer_state_cb, sc);
	ipc_client_set_proof(sc->ipc, proof_fd);
	return sc;
}

void
signer_client_free(struct signer_client *sc)
{
	struct signer_job *job;

	if (sc == NULL)
		return;
	while ((job = TAILQ_FIRST(&sc->jobs)) != NULL)
		signer_job_remove(job);
	ipc_client_free(sc->ipc);
	event_free(sc->ev_fail);
	free(sc);
}

bool
signer_client_is_up(const struct signer_client *sc)
{
	return ipc_client_is_up(sc->ipc);
}

size_t
signer_client_pending(const struct signer_client *sc)
{
	struct ipc_conn *c = ipc_client_conn(sc->ipc);

	return c == NULL ? 0 : ipc_conn_pending(c);
}

struct signer_job *
signer_job_begin(struct signer_client *sc, const char *domain,
    signer_done_fn done, void *arg)
{
	struct signer_job *job = xcalloc(1, sizeof(*job));
	struct ipc_out *o;

	job->sc = sc;
	job->done = done;
	job->arg = arg;
	job->reqid = sc->next_reqid++;
	if (sc->next_reqid == 0)
		sc->next_reqid = 1;
	job->generation = sc->generation;
	TAILQ_INSERT_TAIL(&sc->jobs, job, entry);
	if (!ipc_client_is_up(sc->ipc)) {
		job->failed = true;
		return job;
	}
	o = ipc_out_new(IPC_SIGN_BEGIN, job->reqid);
	ipc_put_str(o, domain);
	ipc_client_send_soon(sc->ipc, o);
	job->sent = true;
	return job;
}

void
signer_job_data(struct signer_job *job, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	TERN_ASSERT(!job->ended);
	while (len > 0 && signer_job_is_live(job)) {
		size_t n = len < IPC_DATA_CHUNK ? len : IPC_DATA_CHUNK;
		struct ipc_out *o = ipc_out_new(IPC_SIGN_DATA, job->reqid);

		ipc_put_data(o, p, n);
		ipc_client_send_soon(job->sc->ipc, o);
		p += n;
		len -= n;
	}
}

/* No reply in time: the signer is stuck, or not yet accepting (ternd
 * throttles a failing signer while its socket queues connections). */
static void
signer_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct signer_job *job = arg;
	signer_done_fn done = job->done;
	void *done_arg = job->arg;

	(void)fd;
	(void)what;
	if (signer_job_is_live(job))
		ipc_client_send_soon(job->sc->ipc,
		    ipc_out_new(IPC_SIGN_ABORT, job->reqid));
	signer_job_remove(job);
	done(done_arg, SIGN_TEMPFAIL, "the signer did not answer in time",
	    NULL, 0);
}

void
signer_job_end(struct signer_job *job)
{
	struct timeval tv = { job->sc->timeout_sec, 0 };

	TERN_ASSERT(!job->ended);
	job->ended = true;
	if (!signer_job_is_live(job)) {
		signer_job_fail(job);
		return;
	}
	ipc_client_send_soon(job->sc->ipc, ipc_out_new(IPC_SIGN_END, job->reqid));
	job->ev_timeout = evtimer_new(job->sc->base, signer_timeout_cb, job);
	if (job->ev_timeout == NULL)
		log_fatal("evtimer_new failed");
	evtimer_add(job->ev_timeout, &tv);
}

void
signer_client_set_timeout(struct signer_client *sc, unsigned seconds)
{
	sc->timeout_sec = seconds;
}

void
signer_job_abort(struct signer_job *job)
{
	if (signer_job_is_live(job))
		ipc_client_send_soon(job->sc->ipc,
		    ipc_out_new(IPC_SIGN_ABORT, job->reqid));
	signer_job_remove(job);
}
