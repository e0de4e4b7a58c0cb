/*
 * dest.c - destinations in tern-smtp: one per recipient domain, holding
 * its MX result (cached per TTL), the jobs waiting for a connection, and
 * its connections, open ones included (the connection cache: an idle
 * connection takes the next job to the same domain). Connection limits
 * ([delivery] max_connections, max_connections_per_destination and
 * [destination] max_connections) are enforced per agent process here;
 * tern-qmgr spreads jobs and paces rates across agents.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "ipc.h"
#include "log.h"
#include "smtp.h"
#include "util.h"

struct dest {
	char name[256];
	struct mx_result *mx;		/* NULL: not resolved */
	uint64_t mx_expires;		/* monotonic usec */
	bool resolving;
	struct job_list waiting;
	size_t n_waiting;
	struct session **sessions;
	size_t n_sessions;
	unsigned max_conns;
};

static void dest_run(struct dest *d);

const char *
dest_name(const struct dest *d)
{
	return d->name;
}

const struct mx_result *
dest_targets(const struct dest *d)
{
	return d->mx;
}

static struct dest *
dest_get(const char *domain)
{
	const struct cfg_destination *cd;
	struct dest *d;

	for (size_t i = 0; i < agent.n_dests; i++)
		if (is_ascii_strcaseeq(agent.dests[i]->name, domain))
			return agent.dests[i];
	d = xcalloc(1, sizeof(*d));
	tern_strlcpy(d->name, domain, sizeof(d->name));
	ascii_lowercase(d->name);
	TAILQ_INIT(&d->waiting);
	d->max_conns = agent.cfg->delivery.max_connections_per_destination;
	cd = config_find_destination(agent.cfg, domain);
	if (cd != NULL && cd->max_connections > 0 &&
	    cd->max_connections < d->max_conns)
		d->max_conns = cd->max_connections;
	agent.dests = xreallocarray(agent.dests, agent.n_dests + 1,
	    sizeof(*agent.dests));
	agent.dests[agent.n_dests++] = d;
	return d;
}

static void
dest_mx_cb(void *arg, struct mx_result *res)
{
	struct dest *d = arg;

	d->resolving = false;
	mx_result_free(d->mx);
	d->mx = res;
	/* At least a second, so the jobs that waited for it can use it even
	 * with TTL 0. */
	d->mx_expires = tern_monotonic_usec() +
	    (uint64_t)(res->ttl > 0 ? res->ttl : 1) * 1000000;
	if (res->ok)
		log_debug("%s: %zu address(es) to try, first %s[%s]%s", d->name,
		    res->n_targets, res->targets[0].host, res->targets[0].addr,
		    res->secure ? ", DNSSEC secure" : "");
	else
		log_debug("%s: %s %s", d->name, res->status, res->text);
	dest_run(d);
}

static bool
is_mx_fresh(const struct dest *d)
{
	return d->mx != NULL && tern_monotonic_usec() < d->mx_expires;
}

/* Every waiting job gets the same failure (DNS, or all hosts down). */
static void
dest_fail_waiting(struct dest *d, uint8_t stage, uint16_t code,
    const char *status, const char *text)
{
	struct job *j;

	while ((j = TAILQ_FIRST(&d->waiting)) != NULL) {
		TAILQ_REMOVE(&d->waiting, j, entry);
		d->n_waiting--;
		job_fail_rest(j, stage, code, status, text);
		job_finish(j);
	}
}

/* Closes one idle connection of another destination. */
static void
dest_quit_one_idle(const struct dest *except)
{
	for (size_t i = 0; i < agent.n_dests; i++) {
		struct dest *d = agent.dests[i];

		if (d == except)
			continue;
		for (size_t k = 0; k < d->n_sessions; k++)
			if (session_is_idle(d->sessions[k])) {
				session_quit(d->sessions[k]);
				return;
			}
	}
}

static bool
dest_has_established(const struct dest *d)
{
	for (size_t i = 0; i < d->n_sessions; i++)
		if (session_is_established(d->sessions[i]))
			return true;
	return false;
}

/* Hands waiting jobs to idle connections, opens new ones within limits. */
static void
dest_run(struct dest *d)
{
	while (!TAILQ_EMPTY(&d->waiting)) {
		struct session *idle = NULL;
		struct job *j;

		for (size_t i = 0; i < d->n_sessions && idle == NULL; i++)
			if (session_is_idle(d->sessions[i]))
				idle = d->sessions[i];
		if (idle != NULL) {
			j = TAILQ_FIRST(&d->waiting);
			TAILQ_REMOVE(&d->waiting, j, entry);
			d->n_waiting--;
			session_take_job(idle, j);
			continue;
		}
		if (!is_mx_fresh(d)) {
			if (!d->resolving) {
				d->resolving = true;
				mx_resolve(d->name, dest_mx_cb, d);
			}
			return;
		}
		if (!d->mx->ok) {
			dest_fail_waiting(d, DELIVERY_STAGE_NONE, 0, d->mx->status,
			    d->mx->text);
			return;
		}
		if (d->n_sessions >= d->max_conns)
			return;
		/* The first connection to a destination probes it alone: a
		 * dead or slow server then costs one connection, not one per
		 * waiting job (they share its fate in dest_session_failed). */
		if (d->n_sessions > 0 && !dest_has_established(d))
			return;
		if (agent.n_sessions >= agent.cfg->delivery.max_connections) {
			/* A cached connection elsewhere gives its slot up. */
			dest_quit_one_idle(d);
			return;
		}
		j = TAILQ_FIRST(&d->waiting);
		TAILQ_REMOVE(&d->waiting, j, entry);
		d->n_waiting--;
		session_start(d, j);
	}
}

void
dest_session_established(struct dest *d)
{
	dest_run(d);
}

void
dest_add_job(struct job *j)
{
	struct dest *d = dest_get(j->domain);

	TAILQ_INSERT_TAIL(&d->waiting, j, entry);
	d->n_waiting++;
	dest_run(d);
}

struct job *
dest_next_job(struct dest *d)
{
	struct job *j = TAILQ_FIRST(&d->waiting);

	if (j != NULL) {
		TAILQ_REMOVE(&d->waiting, j, entry);
		d->n_waiting--;
	}
	return j;
}

void
dest_session_failed(struct dest *d, uint8_t stage, const char *status,
    const char *text)
{
	/* Every address failed just now: the waiting jobs would fare the
	 * same; defer them rather than walk the list again for each. Not
	 * while another connection works (the server may just limit us). */
	if (!dest_has_established(d))
		dest_fail_waiting(d, stage, 0, status, text);
}

void
dest_session_add(struct dest *d, struct session *s)
{
	d->sessions = xreallocarray(d->sessions, d->n_sessions + 1,
	    sizeof(*d->sessions));
	d->sessions[d->n_sessions++] = s;
}

void
dest_session_gone(struct dest *d, struct session *s)
{
	for (size_t i = 0; i < d->n_sessions; i++)
		if (d->sessions[i] == s) {
			memmove(&d->sessions[i], &d->sessions[i + 1],
			    (d->n_sessions - i - 1) * sizeof(*d->sessions));
			d->n_sessions--;
			break;
		}
	dest_run(d);
	/* A connection slot of the agent is free: others may wait for one. */
	for (size_t i = 0; i < agent.n_dests; i++)
		if (agent.dests[i] != d && agent.dests[i]->n_waiting > 0)
			dest_run(agent.dests[i]);
}

void
dest_close_idle_all(void)
{
	for (size_t i = 0; i < agent.n_dests; i++) {
		struct dest *d = agent.dests[i];

		for (size_t k = d->n_sessions; k > 0; k--)
			if (session_is_idle(d->sessions[k - 1]))
				session_quit(d->sessions[k - 1]);
	}
}

void
dest_housekeeping(void)
{
	for (size_t i = agent.n_dests; i > 0; i--) {
		struct dest *d = agent.dests[i - 1];

		if (d->n_sessions > 0 || d->n_waiting > 0 || d->resolving ||
		    is_mx_fresh(d))
			continue;
		mx_result_free(d->mx);
		free(d->sessions);
		free(d);
		memmove(&agent.dests[i - 1], &agent.dests[i],
		    (agent.n_dests - i) * sizeof(*agent.dests));
		agent.n_dests--;
	}
}
