/*
 * tern-qmgr - the queue manager. It finds due work in the queue's
 * schedule index (never by scanning the queue), claims it into a bounded
 * active set, groups it by message and destination domain, hands jobs to
 * delivery agents within the connection and rate limits, and writes
 * every result back with its event: delivered, deferred until the next
 * attempt of retry_schedule, bounced, or expired after max_queue_lifetime.
 *
 * It serves run_dir/private/qmgr: delivery agents (DELIVERY_*), cleanup's
 * notices (QMGR_QUEUED), tern-bounce (BOUNCE_*, see bounce.c) and
 * ternctl's changes (CTL_*) share the socket;
 * a connection's first message says which it is. Only root and tern's
 * user may connect (SO_PEERCRED), and tern-smtpd cannot reach the
 * socket at all (its jail, see ternd(8)). A connection that would be
 * ternctl or tern-bounce must show it (peer_proof.h): tern-smtp runs as
 * the same user and could otherwise delete, suppress or end DSNs. It runs as the tern user
 * (not chrooted: it needs queue_dir) and is the only writer of the queue
 * besides cleanup. All writes happen on one writer thread (store.c).
 */
#include "autoconfig.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "peer_proof.h"
#include "peercred.h"
#include "qmgr.h"
#include "util.h"
#include "classify.h"
#include "verp.h"

#define MAINTENANCE_SEC	600	/* reader check, event and suppression purges */

struct qmgr qmgr;

/* ---- setup ---- */

static void
qmgr_open_queue(void)
{
	struct queue_options o;
	size_t n = 0;

	queue_options_from_config(&o, qmgr.d.cfg, 0);
	qmgr.q = queue_open(&o);
	if (qmgr.q == NULL)
		log_fatal("cannot open the queue in %s: %s", o.dir,
		    queue_strerror(queue_last_error()));
	/* What the previous run had in flight is due again: a delivery
	 * whose result was lost is repeated, never dropped. */
	if (queue_requeue_active(qmgr.q, queue_now_ms(), &n) == -1)
		log_fatal("cannot requeue recipients in flight: %s",
		    queue_strerror(queue_last_error()));
	if (n > 0)
		log_info("%zu recipient(s) in flight at the last stop are due again",
		    n);
}

/* Every failure's class (bad-mailbox, dns, ...) goes into its event. */
static void
qmgr_load_classifier(void)
{
	struct config_errors errs;

	memset(&errs, 0, sizeof(errs));
	qmgr.classifier = bounce_classifier_load(qmgr.d.cfg->bounce.classes_file,
	    &errs);
	if (qmgr.classifier == NULL) {
		for (size_t i = 0; i < errs.n; i++)
			log_warn("%s:%d: %s", errs.v[i].file ? errs.v[i].file : "",
			    errs.v[i].line, errs.v[i].message);
		log_fatal("cannot load the bounce classes");
	}
	config_errors_free(&errs);
}

static void
qmgr_load_policy(void)
{
	const struct tern_config *cfg = qmgr.d.cfg;

	qmgr.policy.schedule_s = cfg->delivery.retry_schedule;
	qmgr.policy.n_schedule = cfg->delivery.n_retry_schedule;
	qmgr.policy.lifetime_s = cfg->delivery.max_queue_lifetime;
	qmgr.policy.delay_warning_s = cfg->delivery.delay_warning;
	qmgr.policy.jitter_pct = QMGR_JITTER_PCT;
	qmgr.job_timeout_ms = cfg->delivery.job_timeout * 1000;
	qmgr.max_connections = cfg->delivery.max_connections;
	bounce_policy_from_config(&qmgr.supp_policy, cfg);
	qmgr_load_classifier();
}

/* ---- connections ---- */

void
conn_unref(struct conn *c)
{
	TERN_ASSERT(c->refs > 0);
	if (--c->refs == 0 && c->closed)
		free(c);
}

static void
conn_on_close(struct ipc_conn *ic, const char *why, void *arg)
{
	struct conn *c = arg;

	if (c->agent != NULL) {
		log_debug("agent connection closed: %s", why);
		agent_detach(c->agent);
	}
	if (c->kind == CONN_BOUNCE)
		bounce_detach(c);
	ipc_conn_free(ic);
	c->ipc = NULL;
	c->closed = true;
	qmgr.n_conns--;
	if (c->refs == 0)
		free(c);
	qmgr_maybe_exit();
}

static void
notifier_on_msg(struct conn *c, struct ipc_msg *m)
{
	int64_t due;

	if (m->type != IPC_QMGR_QUEUED || ipc_get_i64(m, &due) == -1 ||
	    ipc_msg_end(m) == -1) {
		ipc_conn_protocol_error(c->ipc, "malformed or unexpected %s",
		    ipc_type_name(m->type));
		return;
	}
	qmgr.claim_wanted = true;
	sched_request_claim();
}

/* A first message that claims a role its peer did not show: refused. */
static void
conn_refuse(struct conn *c, struct ipc_msg *m, const char *role,
    const char *proof)
{
	log_warn("refused %s from pid %ld: no descriptor of %s came with it, "
	    "so it is not %s (a sandboxed daemon cannot open that)",
	    ipc_type_name(m->type), (long)c->peer_pid, proof, role);
	ipc_conn_protocol_error(c->ipc, "%s refused: not %s",
	    ipc_type_name(m->type), role);
}

static void
conn_on_msg(struct ipc_conn *ic, struct ipc_msg *m, void *arg)
{
	struct conn *c = arg;

	(void)ic;
	if (c->kind == CONN_UNKNOWN) {
		switch (m->type) {
		case IPC_DELIVERY_READY:
			c->kind = CONN_AGENT;
			agent_attach(c);
			break;
		case IPC_QMGR_QUEUED:
			c->kind = CONN_NOTIFIER;
			break;
		case IPC_BOUNCE_READY:
			if (!peer_proof_check(m, &qmgr.bounce_proof)) {
				conn_refuse(c, m, "tern-bounce", VERP_KEY_FILE);
				return;
			}
			c->kind = CONN_BOUNCE;
			bounce_attach(c);
			break;
		case IPC_CTL_FLUSH:
		case IPC_CTL_DELETE:
		case IPC_CTL_HOLD:
		case IPC_CTL_RELEASE:
		case IPC_CTL_SUPPRESS_ADD:
		case IPC_CTL_SUPPRESS_REMOVE:
			if (!peer_proof_check(m, &qmgr.ctl_proof)) {
				conn_refuse(c, m, "ternctl", "run_dir/private");
				return;
			}
			c->kind = CONN_CTL;
			break;
		default:
			ipc_conn_protocol_error(c->ipc, "unexpected %s as a first "
			    "message", ipc_type_name(m->type));
			return;
		}
	}
	switch (c->kind) {
	case CONN_AGENT:
		if (c->agent != NULL)
			agent_on_msg(c->agent, m);
		break;
	case CONN_NOTIFIER:
		notifier_on_msg(c, m);
		break;
	case CONN_CTL:
		control_on_msg(c, m);
		break;
	case CONN_BOUNCE:
		bounce_on_msg(c, m);
		break;
	default:
		break;
	}
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct peer_identity peer;
	struct conn *c;

	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	if (qmgr.d.draining) {
		close(fd);
		return;
	}
	/*
	 * Every peer is a tern daemon (tern's user) or ternctl (root or
	 * tern's user): the private directory keeps others out, and should
	 * the socket ever be reachable, the kernel's word on the peer does.
	 */
	if (peercred_from_socket(fd, &peer) == -1) {
		log_warn("refused a connection: cannot tell its peer: %s",
		    strerror(errno));
		close(fd);
		return;
	}
	if (!is_peer_privileged(&peer, geteuid())) {
		/* No user name: its look-up may be slow (a directory). */
		log_warn("refused a connection from uid %lu: only root and "
		    "tern's user may use tern-qmgr", (unsigned long)peer.uid);
		close(fd);
		return;
	}
	fd_set_nonblock(fd);
	c = xcalloc(1, sizeof(*c));
	c->peer_pid = peer.pid;
	c->ipc = ipc_conn_new(qmgr.d.base, fd, "qmgr", conn_on_msg, conn_on_close,
	    c);
	qmgr.n_conns++;
}

/* ---- timers ---- */

static void
maint_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { MAINTENANCE_SEC, 0 };

	(void)fd;
	(void)what;
	(void)arg;
	store_want_maintenance();
	store_kick();
	evtimer_add(qmgr.ev_maint, &tv);
}

/* ---- drain ---- */

/* Exits once draining and nothing is left to commit or to wait for. */
void
qmgr_maybe_exit(void)
{
	if (!qmgr.d.draining)
		return;
	if (qmgr.n_in_flight > 0 || store_busy())
		return;
	daemon_exit(&qmgr.d);
}

static void
qmgr_drain(struct daemon *d)
{
	(void)d;
	if (qmgr.listener != NULL) {
		evconnlistener_free(qmgr.listener);
		qmgr.listener = NULL;
	}
	evtimer_del(qmgr.ev_poll);
	evtimer_del(qmgr.ev_maint);
	/* Jobs not sent yet go back to the schedule; jobs in flight are
	 * awaited (until the master's shutdown_timeout: then the next start
	 * requeues them). */
	dest_unclaim_all();
	log_info("draining: %zu job(s) in flight", qmgr.n_in_flight);
	/* Changes held for a full queue get their last try once nothing is
	 * in flight. */
	store_kick();
	qmgr_maybe_exit();
}

/* The files whose descriptors show ternctl and tern-bounce (peer_proof.h). */
static void
qmgr_note_proofs(void)
{
	const struct tern_config *cfg = qmgr.d.cfg;

	peer_proof_note(&qmgr.ctl_proof, cfg->server.run_dir, "private");
	peer_proof_note(&qmgr.bounce_proof, cfg->server.queue_dir,
	    VERP_KEY_FILE);
}

static const struct daemon_spec qmgr_spec = {
	.name = "qmgr",
	.chroot_run_dir = false,
	.drain = qmgr_drain,
};

int
main(int argc, char **argv)
{
	struct daemon *d = &qmgr.d;
	struct timeval tv = { MAINTENANCE_SEC, 0 };
	int fd, rc;

	daemon_init(d, &qmgr_spec, argc, argv);
	malloc_keep_freed_heap();
	TAILQ_INIT(&qmgr.ready);
	TAILQ_INIT(&qmgr.agents);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	qmgr_load_policy();
	qmgr_open_queue();
	/* The secret of the return-path tokens (created at first start). */
	if (verp_key_load(d->cfg->server.queue_dir, qmgr.verp_key) == -1)
		log_fatal("cannot load or create %s/%s",
		    d->cfg->server.queue_dir, VERP_KEY_FILE);
	qmgr_note_proofs();

	fd = daemon_socket(d, "unix:qmgr");
	if (fd == -1)
		log_fatal("no qmgr socket passed by the master (unix:qmgr)");
	fd_set_nonblock(fd);
	qmgr.listener = evconnlistener_new(d->base, accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (qmgr.listener == NULL)
		log_fatal("cannot accept on the qmgr socket");

	store_start();
	sched_init();
	qmgr.ev_maint = evtimer_new(d->base, maint_cb, NULL);
	if (qmgr.ev_maint == NULL)
		log_fatal("evtimer_new failed");
	store_want_maintenance();
	store_kick();
	evtimer_add(qmgr.ev_maint, &tv);
	log_info("queue manager started: %u max connections, %u per destination",
	    qmgr.max_connections, d->cfg->delivery.max_connections_per_destination);

	rc = daemon_run(d);
	store_stop();
	queue_close(qmgr.q);
	return rc;
}
