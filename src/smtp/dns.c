/*
 * dns.c - DNS for tern-smtp: libunbound driven by our libevent loop
 * (ub_resolve_event), forwarding to [delivery] dns_servers or using the
 * system's resolv.conf. Answers are parsed with the resolver library's
 * ns_parserr; unbound's own cache keeps records per TTL. Every answer
 * reaches its caller from the event loop (never inside dns_query), with
 * its DNSSEC status kept for DANE later.
 */
#include "autoconfig.h"

#include <arpa/nameser.h>
#include <errno.h>
#include <event2/event.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound-event.h>
#include <unbound.h>

#include "log.h"
#include "resolver.h"
#include "sandbox.h"
#include "smtp.h"
#include "util.h"

/* unbound's enum sec_status values passed to the event callback. */
#define UB_SEC_BOGUS	1
#define UB_SEC_SECURE	5

#define DNS_RRS_MAX	64	/* records kept per answer */

struct dns_query {
	char name[256];
	int type;
	dns_cb cb;
	void *arg;
	int async_id;
	bool pending;			/* unbound still owns a callback */
	struct event *ev_timeout;
	struct event *ev_deliver;
	struct dns_answer answer;
};

void
dns_answer_clear(struct dns_answer *a)
{
	free(a->rrs);
	memset(a, 0, sizeof(*a));
}

int
dns_parse(const uint8_t *pkt, size_t len, int type, struct dns_answer *a)
{
	ns_msg msg;
	int n;

	if (ns_initparse(pkt, (int)len, &msg) == -1)
		return -1;
	a->rcode = ns_msg_getflag(msg, ns_f_rcode);
	a->min_ttl = UINT32_MAX;
	n = ns_msg_count(msg, ns_s_an);
	for (int i = 0; i < n && a->n_rrs < DNS_RRS_MAX; i++) {
		struct dns_rr rr;
		ns_rr r;

		if (ns_parserr(&msg, ns_s_an, i, &r) == -1)
			return -1;
		if (ns_rr_class(r) != ns_c_in || (int)ns_rr_type(r) != type)
			continue;
		memset(&rr, 0, sizeof(rr));
		rr.type = (uint16_t)type;
		rr.ttl = ns_rr_ttl(r);
		if (type == ns_t_mx) {
			if (ns_rr_rdlen(r) < 3)
				return -1;
			rr.pref = ns_get16(ns_rr_rdata(r));
			if (ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg),
			    ns_rr_rdata(r) + 2, rr.name, sizeof(rr.name)) == -1)
				return -1;
			/* The root is "" (or "."): RFC 7505 null MX. */
			if (strcmp(rr.name, ".") == 0)
				rr.name[0] = '\0';
		} else if (type == ns_t_a) {
			if (ns_rr_rdlen(r) != 4)
				return -1;
			memcpy(rr.addr, ns_rr_rdata(r), 4);
		} else if (type == ns_t_aaaa) {
			if (ns_rr_rdlen(r) != 16)
				return -1;
			memcpy(rr.addr, ns_rr_rdata(r), 16);
		} else
			continue;
		if (rr.ttl < a->min_ttl)
			a->min_ttl = rr.ttl;
		a->rrs = xreallocarray(a->rrs, a->n_rrs + 1, sizeof(*a->rrs));
		a->rrs[a->n_rrs++] = rr;
	}
	if (a->n_rrs == 0)
		a->min_ttl = 60;	/* negative answers: a short while */
	return 0;
}

static void
dns_query_free(struct dns_query *q)
{
	event_free(q->ev_timeout);
	event_free(q->ev_deliver);
	dns_answer_clear(&q->answer);
	free(q);
}

static void
dns_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;

	(void)fd;
	(void)what;
	log_debug("dns: %s type %d: rcode %d, %zu records%s%s", q->name, q->type,
	    q->answer.rcode, q->answer.n_rrs, q->answer.timeout ? ", timeout" : "",
	    q->answer.secure ? ", secure" : "");
	q->cb(q->arg, &q->answer);
	dns_query_free(q);
}

/* Hands the answer over at the next turn of the loop. */
static void
dns_deliver(struct dns_query *q)
{
	struct timeval now = { 0, 0 };

	evtimer_del(q->ev_timeout);
	evtimer_add(q->ev_deliver, &now);
}

static void
dns_ub_cb(void *arg, int err, void *pkt, int len, int sec, char *why_bogus,
    int ratelimited)
{
	struct dns_query *q = arg;

	(void)ratelimited;
	q->pending = false;
	if (err != 0 || pkt == NULL) {
		q->answer.timeout = true;
		snprintf(q->answer.why, sizeof(q->answer.why), "%s",
		    err != 0 ? ub_strerror(err) : "no answer");
	} else if (dns_parse(pkt, (size_t)len, q->type, &q->answer) == -1) {
		dns_answer_clear(&q->answer);
		q->answer.rcode = ns_r_servfail;
		snprintf(q->answer.why, sizeof(q->answer.why), "malformed answer");
	} else if (sec == UB_SEC_BOGUS) {
		q->answer.bogus = true;
		snprintf(q->answer.why, sizeof(q->answer.why), "DNSSEC bogus: %s",
		    why_bogus ? why_bogus : "?");
	} else
		q->answer.secure = sec == UB_SEC_SECURE;
	dns_deliver(q);
}

static void
dns_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;

	(void)fd;
	(void)what;
	if (q->pending) {
		ub_cancel(agent.ub, q->async_id);
		q->pending = false;
	}
	dns_answer_clear(&q->answer);
	q->answer.timeout = true;
	snprintf(q->answer.why, sizeof(q->answer.why), "timeout");
	dns_deliver(q);
}

void
dns_query(const char *name, int type, dns_cb cb, void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	struct timeval tv = { agent.cfg->delivery.dns_timeout, 0 };
	int rc;

	tern_strlcpy(q->name, name, sizeof(q->name));
	q->type = type;
	q->cb = cb;
	q->arg = arg;
	q->ev_timeout = evtimer_new(agent.d.base, dns_timeout_cb, q);
	q->ev_deliver = evtimer_new(agent.d.base, dns_deliver_cb, q);
	if (q->ev_timeout == NULL || q->ev_deliver == NULL)
		log_fatal("evtimer_new failed");
	evtimer_add(q->ev_timeout, &tv);
	q->pending = true;
	rc = ub_resolve_event(agent.ub, name, type, ns_c_in, q, dns_ub_cb,
	    &q->async_id);
	if (rc != 0) {
		q->pending = false;
		q->answer.timeout = true;
		snprintf(q->answer.why, sizeof(q->answer.why), "%s",
		    ub_strerror(rc));
		dns_deliver(q);
	}
}

void
dns_init(void)
{
	const struct tern_config *cfg = agent.cfg;
	int rc;

	agent.ub = ub_ctx_create_event(agent.d.base);
	if (agent.ub == NULL)
		log_fatal("ub_ctx_create_event failed");
	if (cfg->delivery.n_dns_servers == 0) {
		rc = ub_ctx_resolvconf(agent.ub, NULL);
		if (rc != 0)
			log_fatal("cannot read resolv.conf: %s", ub_strerror(rc));
		return;
	}
	for (size_t i = 0; i < cfg->delivery.n_dns_servers; i++) {
		char fwd[300];

		if (!resolver_forwarder_text(cfg->delivery.dns_servers[i], fwd,
		    sizeof(fwd)))
			log_fatal("dns_servers %s: not an address[@port]",
			    cfg->delivery.dns_servers[i]);
		rc = ub_ctx_set_fwd(agent.ub, fwd);
		if (rc != 0)
			log_fatal("dns_servers %s: %s", cfg->delivery.dns_servers[i],
			    ub_strerror(rc));
	}
	for (size_t i = 0; i < resolver_n_transparent_zones; i++)
		ub_ctx_set_option(agent.ub, "local-zone:",
		    resolver_transparent_zones[i]);
}

/*
 * unbound falls back to TCP for a truncated answer: the sandbox must let
 * it reach each forwarder's port ("address@port", else 53), or port 53
 * of whatever resolv.conf names.
 */
void
dns_allow_servers(struct sandbox *sb)
{
	const struct tern_config *cfg = agent.cfg;

	if (cfg->delivery.n_dns_servers == 0)
		sandbox_allow_connect(sb, 53);
	for (size_t i = 0; i < cfg->delivery.n_dns_servers; i++) {
		char fwd[300];
		const char *at;
		uint64_t port = 53;

		if (!resolver_forwarder_text(cfg->delivery.dns_servers[i], fwd,
		    sizeof(fwd)))
			continue;	/* dns_init refused it already */
		at = strrchr(fwd, '@');
		if (at != NULL && parse_uint64(at + 1, 65535, &port) == -1)
			continue;
		sandbox_allow_connect(sb, (uint16_t)port);
	}
}
