/*
 * mx.c - from a destination domain to an ordered, bounded list of
 * addresses to try (RFC 5321 section 5): MX sorted by preference with
 * random order among equal preferences, the implicit MX (the domain's own
 * A/AAAA when it has no MX), null MX (RFC 7505) failing at once with
 * 5.1.10, NXDOMAIN with 5.1.2, SERVFAIL or timeout deferring with 4.4.3,
 * and MX lists that lead back to ourselves refused with 5.4.6.
 * Part of tern-smtp.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <event2/event.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp.h"
#include "util.h"

struct mx_host {
	char name[256];
	unsigned pref;
	unsigned order;			/* random tie-breaker */
	struct dns_answer a, aaaa;
};

struct mx_lookup {
	char domain[256];
	mx_cb cb;
	void *arg;
	bool implicit;
	struct mx_host *hosts;
	size_t n_hosts;
	size_t pending;
	uint32_t min_ttl;
	bool secure;
};

void
mx_result_free(struct mx_result *res)
{
	if (res == NULL)
		return;
	free(res->targets);
	free(res);
}

static struct mx_result *
mx_failure(const char *status, const char *fmt, ...) TERN_PRINTF(2, 3);

static struct mx_result *
mx_failure(const char *status, const char *fmt, ...)
{
	struct mx_result *res = xcalloc(1, sizeof(*res));
	va_list ap;

	tern_strlcpy(res->status, status, sizeof(res->status));
	va_start(ap, fmt);
	vsnprintf(res->text, sizeof(res->text), fmt, ap);
	va_end(ap);
	/* Permanent answers are kept a minute, temporary ones not at all. */
	res->ttl = status[0] == '5' ? 60 : 0;
	return res;
}

static void
mx_lookup_done(struct mx_lookup *l, struct mx_result *res)
{
	mx_cb cb = l->cb;
	void *arg = l->arg;

	for (size_t i = 0; i < l->n_hosts; i++) {
		dns_answer_clear(&l->hosts[i].a);
		dns_answer_clear(&l->hosts[i].aaaa);
	}
	free(l->hosts);
	free(l);
	cb(arg, res);
}

static int
mx_host_cmp(const void *a, const void *b)
{
	const struct mx_host *x = a, *y = b;

	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Is ss one of this host's interface addresses? */
static bool
is_local_interface(const struct sockaddr_storage *ss)
{
	struct ifaddrs *ifs, *i;
	bool found = false;

	if (getifaddrs(&ifs) == -1)
		return false;
	for (i = ifs; i != NULL && !found; i = i->ifa_next) {
		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != ss->ss_family)
			continue;
		if (ss->ss_family == AF_INET)
			found = ((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr.s_addr ==
			    ((const struct sockaddr_in *)(const void *)ss)->sin_addr.s_addr;
		else
			found = memcmp(&((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr,
			    &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr,
			    16) == 0;
	}
	freeifaddrs(ifs);
	return found;
}

/* Is this MX host us? Then it and every less preferred one must go. */
static bool
is_mx_ourselves(const char *host)
{
	return is_ascii_strcaseeq(host, agent.cfg->server.hostname) ||
	    is_ascii_strcaseeq(host, agent.helo_name);
}

static void
mx_add_target(struct mx_result *res, const struct mx_host *h,
    const struct dns_rr *rr)
{
	struct mx_target *t;
	unsigned port = agent.cfg->delivery.smtp_port;

	if (res->n_targets >= agent.cfg->delivery.max_mx_addresses)
		return;
	res->targets = xreallocarray(res->targets, res->n_targets + 1,
	    sizeof(*res->targets));
	t = &res->targets[res->n_targets++];
	memset(t, 0, sizeof(*t));
	tern_strlcpy(t->host, h->name, sizeof(t->host));
	t->pref = h->pref;
	if (rr->type == ns_t_a) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&t->ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		memcpy(&sin->sin_addr, rr->addr, 4);
		t->sslen = sizeof(*sin);
		inet_ntop(AF_INET, rr->addr, t->addr, sizeof(t->addr));
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&t->ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		memcpy(&sin6->sin6_addr, rr->addr, 16);
		t->sslen = sizeof(*sin6);
		inet_ntop(AF_INET6, rr->addr, t->addr, sizeof(t->addr));
	}
}

/* Does an address reach one of our own listeners on the SMTP port? A
 * wildcard listener means any address of this host's interfaces. */
static bool
is_addr_ourselves(const struct sockaddr_storage *ss)
{
	const struct tern_config *cfg = agent.cfg;
	unsigned port = cfg->delivery.smtp_port;

	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct sockaddr_storage *l = &cfg->listeners[i].address.ss;

		if (l->ss_family != ss->ss_family)
			continue;
		if (l->ss_family == AF_INET) {
			const struct sockaddr_in *a = (const void *)l, *b = (const void *)ss;

			if (ntohs(a->sin_port) != port)
				continue;
			if (a->sin_addr.s_addr == htonl(INADDR_ANY))
				return is_local_interface(ss);
			if (a->sin_addr.s_addr == b->sin_addr.s_addr)
				return true;
		} else if (l->ss_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const void *)l, *b = (const void *)ss;

			if (ntohs(a->sin6_port) != port)
				continue;
			if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
				return is_local_interface(ss);
			if (memcmp(&a->sin6_addr, &b->sin6_addr, 16) == 0)
				return true;
		}
	}
	return false;
}

/* Drops targets that are us and every one not more preferred (RFC 5321
 * 5.1); true when nothing is left because of that. */
static bool
mx_drop_ourselves(struct mx_result *res)
{
	for (size_t i = 0; i < res->n_targets; i++)
		if (is_addr_ourselves(&res->targets[i].ss)) {
			unsigned own = res->targets[i].pref;
			size_t n = 0;

			for (size_t k = 0; k < res->n_targets; k++)
				if (res->targets[k].pref < own)
					res->targets[n++] = res->targets[k];
			res->n_targets = n;
			return n == 0;
		}
	return false;
}

/* Every address look-up is in: build the ordered target list. */
static void
mx_addresses_done(struct mx_lookup *l)
{
	struct mx_result *res = xcalloc(1, sizeof(*res));
	bool temp = false;
	char why[512] = "";

	res->secure = l->secure;
	res->ttl = l->min_ttl;
	for (size_t i = 0; i < l->n_hosts; i++) {
		struct mx_host *h = &l->hosts[i];
		struct dns_answer *ans[2] = { &h->aaaa, &h->a };

		for (int k = 0; k < 2; k++) {
			struct dns_answer *a = ans[k];

			if (a->timeout || a->bogus || a->rcode == ns_r_servfail) {
				temp = true;
				snprintf(why, sizeof(why), "%s: %s", h->name,
				    a->why[0] ? a->why : "SERVFAIL");
				continue;
			}
			if (!a->secure)
				res->secure = false;
			if (a->n_rrs > 0 && a->min_ttl < res->ttl)
				res->ttl = a->min_ttl;
			for (size_t r = 0; r < a->n_rrs; r++)
				mx_add_target(res, h, &a->rrs[r]);
		}
	}
	if (mx_drop_ourselves(res)) {
		mx_result_free(res);
		mx_lookup_done(l, mx_failure("5.4.6", "mail for %s loops back to "
		    "myself", l->domain));
		return;
	}
	if (res->n_targets > 0) {
		res->ok = true;
		mx_lookup_done(l, res);
		return;
	}
	mx_result_free(res);
	if (temp)
		res = mx_failure("4.4.3", "Host or domain name not found. Name "
		    "service error for %s (%s)", l->domain, why);
	else if (l->implicit)
		res = mx_failure("5.1.2", "Host or domain name not found: %s has "
		    "no MX and no A or AAAA record", l->domain);
	else
		res = mx_failure("5.4.4", "no address for the MX hosts of %s",
		    l->domain);
	mx_lookup_done(l, res);
}

/* Per address look-up: which host and which family. */
struct mx_addr_req {
	struct mx_lookup *l;
	size_t host;
	int type;
};

static void
mx_addr_answer(void *arg, const struct dns_answer *a)
{
	struct mx_addr_req *req = arg;
	struct mx_lookup *l = req->l;
	struct mx_host *h = &l->hosts[req->host];
	struct dns_answer *dst = req->type == ns_t_a ? &h->a : &h->aaaa;

	*dst = *a;
	if (a->n_rrs > 0) {
		dst->rrs = xreallocarray(NULL, a->n_rrs, sizeof(*a->rrs));
		memcpy(dst->rrs, a->rrs, a->n_rrs * sizeof(*a->rrs));
	} else
		dst->rrs = NULL;
	free(req);
	if (--l->pending == 0)
		mx_addresses_done(l);
}

static void
mx_query_addresses(struct mx_lookup *l)
{
	l->pending = l->n_hosts * 2;
	for (size_t i = 0; i < l->n_hosts; i++) {
		static const int types[2] = { ns_t_a, ns_t_aaaa };

		for (int k = 0; k < 2; k++) {
			struct mx_addr_req *req = xcalloc(1, sizeof(*req));

			req->l = l;
			req->host = i;
			req->type = types[k];
			dns_query(l->hosts[i].name, types[k], mx_addr_answer, req);
		}
	}
}

static void
mx_answer(void *arg, const struct dns_answer *a)
{
	struct mx_lookup *l = arg;
	size_t n = 0;

	if (a->timeout || a->bogus || a->rcode == ns_r_servfail ||
	    (a->rcode != ns_r_noerror && a->rcode != ns_r_nxdomain)) {
		mx_lookup_done(l, mx_failure("4.4.3", "Host or domain name not "
		    "found. Name service error for name=%s type=MX: %s", l->domain,
		    a->why[0] ? a->why : "Host not found, try again"));
		return;
	}
	if (a->rcode == ns_r_nxdomain) {
		mx_lookup_done(l, mx_failure("5.1.2", "Host or domain name not "
		    "found. Name service error for name=%s type=MX: Host not found",
		    l->domain));
		return;
	}
	l->secure = a->secure;
	l->min_ttl = a->n_rrs > 0 ? a->min_ttl : 300;
	/* RFC 7505: a single MX with the root as exchange means no mail. */
	if (a->n_rrs == 1 && a->rrs[0].name[0] == '\0') {
		mx_lookup_done(l, mx_failure("5.1.10", "Recipient address "
		    "rejected: %s does not accept mail (null MX)", l->domain));
		return;
	}
	if (a->n_rrs == 0) {
		/* No MX: the domain itself, as if MX 0 (RFC 5321 5.1). */
		l->implicit = true;
		l->hosts = xcalloc(1, sizeof(*l->hosts));
		tern_strlcpy(l->hosts[0].name, l->domain, sizeof(l->hosts[0].name));
		l->n_hosts = 1;
	} else {
		l->hosts = xcalloc(a->n_rrs, sizeof(*l->hosts));
		for (size_t i = 0; i < a->n_rrs; i++) {
			if (a->rrs[i].name[0] == '\0')
				continue;	/* a root among others: ignore it */
			tern_strlcpy(l->hosts[n].name, a->rrs[i].name,
			    sizeof(l->hosts[n].name));
			l->hosts[n].pref = a->rrs[i].pref;
			l->hosts[n].order = (unsigned)arc4random();
			n++;
		}
		qsort(l->hosts, n, sizeof(*l->hosts), mx_host_cmp);
		/* Drop ourselves and every host not more preferred than us. */
		for (size_t i = 0; i < n; i++)
			if (is_mx_ourselves(l->hosts[i].name)) {
				unsigned own = l->hosts[i].pref;

				while (i > 0 && l->hosts[i - 1].pref == own)
					i--;
				if (i == 0) {
					free(l->hosts);
					l->hosts = NULL;
					mx_lookup_done(l, mx_failure("5.4.6", "mail "
					    "for %s loops back to myself", l->domain));
					return;
				}
				n = i;
				break;
			}
		if (n == 0) {
			mx_lookup_done(l, mx_failure("5.1.10", "Recipient address "
			    "rejected: %s does not accept mail (null MX)", l->domain));
			return;
		}
		if (n > MX_HOSTS_MAX)
			n = MX_HOSTS_MAX;
		l->n_hosts = n;
	}
	mx_query_addresses(l);
}

/*
 * An address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]", RFC 5321
 * 4.1.3) is its own and only target, without DNS. Returns NULL when
 * domain is not one.
 */
static struct mx_result *
mx_literal(const char *domain)
{
	struct mx_result *res;
	struct mx_host h;
	struct dns_rr rr;
	char text[256];
	size_t len = strlen(domain);

	if (domain[0] != '[' || len < 3 || domain[len - 1] != ']' ||
	    len - 2 >= sizeof(text))
		return NULL;
	memcpy(text, domain + 1, len - 2);
	text[len - 2] = '\0';
	memset(&h, 0, sizeof(h));
	memset(&rr, 0, sizeof(rr));
	tern_strlcpy(h.name, domain, sizeof(h.name));
	if (has_ascii_prefix_ci(text, "IPv6:") &&
	    inet_pton(AF_INET6, text + 5, rr.addr) == 1)
		rr.type = ns_t_aaaa;
	else if (inet_pton(AF_INET, text, rr.addr) == 1)
		rr.type = ns_t_a;
	else
		return mx_failure("5.1.2", "bad address literal %s", domain);
	res = xcalloc(1, sizeof(*res));
	mx_add_target(res, &h, &rr);
	res->ok = true;
	res->ttl = 3600;
	return res;
}

/* Hands a result over at the next turn of the loop, like DNS answers. */
struct mx_ready {
	mx_cb cb;
	void *arg;
	struct mx_result *res;
};

static void
mx_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mx_ready *r = arg;

	(void)fd;
	(void)what;
	r->cb(r->arg, r->res);
	free(r);
}

void
mx_resolve(const char *domain, mx_cb cb, void *arg)
{
	struct mx_result *lit = mx_literal(domain);
	struct mx_lookup *l;

	if (lit != NULL) {
		struct mx_ready *r = xcalloc(1, sizeof(*r));
		struct timeval now = { 0, 0 };

		r->cb = cb;
		r->arg = arg;
		r->res = lit;
		if (event_base_once(agent.d.base, -1, EV_TIMEOUT, mx_ready_cb, r,
		    &now) == -1)
			log_fatal("event_base_once failed");
		return;
	}
	l = xcalloc(1, sizeof(*l));

	tern_strlcpy(l->domain, domain, sizeof(l->domain));
	l->cb = cb;
	l->arg = arg;
	dns_query(domain, ns_t_mx, mx_answer, l);
}
