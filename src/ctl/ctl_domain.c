/*
 * ctl_domain.c - ternctl domain check: what receivers will find in DNS
 * about each sending domain, the checks a sending service runs before it
 * lets a domain send. DKIM (the selectors' records against the keys),
 * SPF (libspf2 evaluates the return path's policy for this server's
 * addresses), DMARC (the policy record and whether SPF and DKIM align
 * with the From domain) and the return path's MX (where asynchronous
 * bounces and complaints come back).
 *
 * Every question goes through libunbound to the configured dns_servers,
 * libspf2's too (a DNS layer of our own), so the answers are the ones
 * tern-smtp would get. A CLI: blocking look-ups are fine here.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <unbound.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#include "config.h"
#include "ctl.h"
#include "log.h"
#include "util.h"

#define IPS_MAX	16

static int
domain_usage(void)
{
	fprintf(stderr, "usage: ternctl domain check [DOMAIN] "
	    "[--ip ADDRESS]...\n");
	return 2;
}

/* ---- DNS answers ---- */

/* NONE: the name has no such record; NXDOMAIN: there is no such name. */
enum answer { ANSWER_DATA, ANSWER_NONE, ANSWER_NXDOMAIN, ANSWER_FAILED };

/* Asks for name/type; *res is set for ANSWER_DATA (caller frees). Only
 * an answer says there is nothing: a server that failed or did not
 * answer is ANSWER_FAILED, never an absence. */
static enum answer
ask(struct ub_ctx *ctx, const char *name, int type, struct ub_result **res)
{
	int rcode;

	*res = NULL;
	if (ub_resolve(ctx, name, type, 1 /* IN */, res) != 0)
		return ANSWER_FAILED;
	rcode = (*res)->rcode;
	if ((*res)->answer_len >= 4)
		rcode = ((const unsigned char *)(*res)->answer_packet)[3] & 0x0f;
	if ((*res)->bogus || rcode == 2 /* SERVFAIL */) {
		ub_resolve_free(*res);
		*res = NULL;
		return ANSWER_FAILED;
	}
	if (!(*res)->havedata) {
		ub_resolve_free(*res);
		*res = NULL;
		return rcode == 3 ? ANSWER_NXDOMAIN : ANSWER_NONE;
	}
	return ANSWER_DATA;
}

/* An uncompressed wire-format name (libunbound's rdata) as text. */
static bool
wire_name(const unsigned char *p, size_t len, char *out, size_t size)
{
	size_t i = 0, n = 0;

	while (i < len && p[i] != 0) {
		size_t l = p[i++];

		if (l > 63 || l > len - i || n + l + 2 > size)
			return false;
		if (n > 0)
			out[n++] = '.';
		memcpy(out + n, p + i, l);
		n += l;
		i += l;
	}
	if (i >= len || size == 0)
		return false;
	if (n == 0)
		out[n++] = '.';	/* the root: a null MX */
	out[n] = '\0';
	return true;
}

/* The TXT records at name whose text starts with prefix (case-insensitive),
 * joined; returns how many (records[] owned by the caller), -1 on a
 * failed look-up. */
static int
txt_records(struct ub_ctx *ctx, const char *name, const char *prefix,
    char **records, int max)
{
	struct ub_result *res;
	int n = 0;

	switch (ask(ctx, name, 16 /* TXT */, &res)) {
	case ANSWER_FAILED:
		return -1;
	case ANSWER_NONE:
	case ANSWER_NXDOMAIN:
		return 0;
	case ANSWER_DATA:
		break;
	}
	for (int i = 0; res->data[i] != NULL; i++) {
		size_t len, pl = strlen(prefix);
		char *text = ctl_txt_join((unsigned char *)res->data[i],
		    (size_t)res->len[i], &len);

		if (strncasecmp(text, prefix, pl) == 0 &&
		    (text[pl] == '\0' || text[pl] == ' ' || text[pl] == ';') &&
		    n < max)
			records[n++] = text;
		else
			free(text);
	}
	ub_resolve_free(res);
	return n;
}

static void
free_records(char **records, int n)
{
	for (int i = 0; i < n; i++)
		free(records[i]);
}

/* ---- libspf2's questions, through libunbound ---- */

static SPF_dns_rr_t *
spf_dns_lookup(SPF_dns_server_t *server, const char *domain, ns_type type,
    int should_cache)
{
	struct ub_result *res;
	SPF_dns_rr_t *rr;
	int cnt = 0;

	(void)should_cache;
	switch (ask(server->hook, domain, type, &res)) {
	case ANSWER_FAILED:
		return SPF_dns_rr_new_init(server, domain, type, 0, TRY_AGAIN);
	case ANSWER_NONE:
		return SPF_dns_rr_new_init(server, domain, type, 0, NO_DATA);
	case ANSWER_NXDOMAIN:
		return SPF_dns_rr_new_init(server, domain, type, 0,
		    HOST_NOT_FOUND);
	case ANSWER_DATA:
		break;
	}
	rr = SPF_dns_rr_new_init(server, domain, type, res->ttl, NETDB_SUCCESS);
	for (int i = 0; rr != NULL && res->data[i] != NULL; i++) {
		const unsigned char *d = (const unsigned char *)res->data[i];
		size_t n = (size_t)res->len[i], tlen;
		char name[NS_MAXDNAME], *text;

		switch (type) {
		case ns_t_a:
			if (n != sizeof(struct in_addr) ||
			    SPF_dns_rr_buf_realloc(rr, cnt, n) != SPF_E_SUCCESS)
				continue;
			memcpy(&rr->rr[cnt]->a, d, n);
			break;
		case ns_t_aaaa:
			if (n != sizeof(struct in6_addr) ||
			    SPF_dns_rr_buf_realloc(rr, cnt, n) != SPF_E_SUCCESS)
				continue;
			memcpy(&rr->rr[cnt]->aaaa, d, n);
			break;
		case ns_t_txt:
			text = ctl_txt_join(d, n, &tlen);
			if (SPF_dns_rr_buf_realloc(rr, cnt, tlen + 1) !=
			    SPF_E_SUCCESS) {
				free(text);
				continue;
			}
			memcpy(rr->rr[cnt]->txt, text, tlen + 1);
			free(text);
			break;
		case ns_t_mx:
		case ns_t_ptr:
			if (type == ns_t_mx && n < 3)
				continue;
			if (!wire_name(type == ns_t_mx ? d + 2 : d,
			    type == ns_t_mx ? n - 2 : n, name, sizeof(name)) ||
			    SPF_dns_rr_buf_realloc(rr, cnt, strlen(name) + 1) !=
			    SPF_E_SUCCESS)
				continue;
			memcpy(type == ns_t_mx ? rr->rr[cnt]->mx : rr->rr[cnt]->ptr,
			    name, strlen(name) + 1);
			break;
		default:
			continue;
		}
		cnt++;
	}
	if (rr != NULL) {
		rr->num_rr = cnt;
		if (cnt == 0)
			rr->herrno = NO_DATA;
	}
	ub_resolve_free(res);
	return rr;
}

static void
spf_dns_free(SPF_dns_server_t *server)
{
	free(server);
}

static SPF_server_t *
spf_server_new(struct ub_ctx *ctx)
{
	SPF_dns_server_t *dns = xcalloc(1, sizeof(*dns));
	SPF_server_t *spf;

	dns->destroy = spf_dns_free;
	dns->lookup = spf_dns_lookup;
	dns->name = "libunbound";
	dns->hook = ctx;
	spf = SPF_server_new_dns(dns, 0);
	if (spf == NULL)
		log_fatal("SPF_server_new_dns failed");
	return spf;
}

/* ---- the checks, one line each; 0 when all right ---- */

/* The domain SPF is checked for: the envelope sender's (the return path's
 * when one is set, as tern-smtp sends MAIL FROM:<...@return_path>). */
static const char *
envelope_domain(const struct cfg_domain *d)
{
	return d->return_path != NULL ? d->return_path : d->name;
}

static int
check_spf(struct ub_ctx *ctx, SPF_server_t *spf, const struct cfg_domain *d,
    char **ips, size_t n_ips)
{
	const char *env = envelope_domain(d);
	char *records[4], *from;
	int n, status = 0;

	n = txt_records(ctx, env, "v=spf1", records, 4);
	if (n == -1) {
		printf("%s spf: lookup of %s TXT failed (the DNS server failed "
		    "or did not answer)\n", d->name, env);
		return 1;
	}
	if (n == 0) {
		printf("%s spf: missing record at %s (receivers cannot tell "
		    "that this server may send for it)\n", d->name, env);
		return 1;
	}
	if (n > 1) {
		printf("%s spf: %d SPF records at %s; there must be one "
		    "(permerror)\n", d->name, n, env);
		free_records(records, n);
		return 1;
	}
	if (n_ips == 0) {
		printf("%s spf: record at %s: \"%s\" (no address to check: give "
		    "--ip with this server's public address)\n", d->name, env,
		    records[0]);
		free_records(records, n);
		return 0;
	}
	free_records(records, n);
	from = xasprintf("postmaster@%s", env);
	for (size_t i = 0; i < n_ips; i++) {
		SPF_request_t *req = SPF_request_new(spf);
		SPF_response_t *resp = NULL;
		SPF_result_t result;
		const char *comment;
		struct in6_addr a6;
		bool v6 = inet_pton(AF_INET6, ips[i], &a6) == 1;

		if ((v6 ? SPF_request_set_ipv6_str(req, ips[i]) :
		    SPF_request_set_ipv4_str(req, ips[i])) != SPF_E_SUCCESS ||
		    SPF_request_set_env_from(req, from) != 0)
			log_fatal("SPF request for %s failed", ips[i]);
		SPF_request_query_mailfrom(req, &resp);
		result = resp != NULL ? SPF_response_result(resp) :
		    SPF_RESULT_TEMPERROR;
		comment = resp != NULL ? SPF_response_get_smtp_comment(resp) :
		    NULL;
		if (result == SPF_RESULT_PASS)
			printf("%s spf: ok (%s may send for %s)\n", d->name,
			    ips[i], env);
		else if (result == SPF_RESULT_INVALID ||
		    result == SPF_RESULT_TEMPERROR) {
			printf("%s spf: temperror for %s at %s: a lookup failed\n",
			    d->name, ips[i], env);
			status = 1;
		} else {
			printf("%s spf: %s for %s at %s%s%s\n", d->name,
			    SPF_strresult(result), ips[i], env,
			    comment != NULL && *comment != '\0' ? ": " : "",
			    comment != NULL ? comment : "");
			status = 1;
		}
		SPF_response_free(resp);
		SPF_request_free(req);
	}
	free(from);
	return status;
}

/* The value of tag in a DMARC record ("p", "aspf"), copied to out. */
static bool
dmarc_tag(const char *record, const char *tag, char *out, size_t size)
{
	size_t tl = strlen(tag);

	for (const char *p = record; *p != '\0';) {
		size_t n;

		p += strspn(p, " \t;");
		if (strncasecmp(p, tag, tl) == 0) {
			const char *v = p + tl;

			v += strspn(v, " \t");
			if (*v == '=') {
				v++;
				v += strspn(v, " \t");
				n = strcspn(v, ";");
				while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
					n--;
				if (n >= size)
					n = size - 1;
				memcpy(out, v, n);
				out[n] = '\0';
				return true;
			}
		}
		p += strcspn(p, ";");
	}
	return false;
}

/* True when sub is domain or below it: relaxed alignment. */
static bool
is_aligned(const char *sub, const char *domain, bool strict)
{
	size_t ls = strlen(sub), ld = strlen(domain);

	if (strcasecmp(sub, domain) == 0)
		return true;
	return !strict && ls > ld && sub[ls - ld - 1] == '.' &&
	    strcasecmp(sub + ls - ld, domain) == 0;
}

static int
check_dmarc(struct ub_ctx *ctx, const struct cfg_domain *d)
{
	char *records[4], name[300], p[32], aspf[8] = "r";
	const char *at = d->name, *dot;
	const char *env = envelope_domain(d);
	int n;

	/* No record at the domain: receivers look at the organizational
	 * domain; a parent is the usual place of that record. */
	for (;;) {
		snprintf(name, sizeof(name), "_dmarc.%s", at);
		n = txt_records(ctx, name, "v=DMARC1", records, 4);
		if (n != 0 || (dot = strchr(at, '.')) == NULL ||
		    strchr(dot + 1, '.') == NULL)
			break;
		at = dot + 1;
	}
	if (n == -1) {
		printf("%s dmarc: lookup of %s TXT failed (the DNS server failed "
		    "or did not answer)\n", d->name, name);
		return 1;
	}
	if (n == 0) {
		printf("%s dmarc: missing record _dmarc.%s (large mailbox "
		    "providers require one of bulk senders; start with "
		    "\"v=DMARC1; p=none\")\n", d->name, d->name);
		return 1;
	}
	if (n > 1) {
		printf("%s dmarc: %d DMARC records at %s; there must be one\n",
		    d->name, n, name);
		free_records(records, n);
		return 1;
	}
	if (!dmarc_tag(records[0], "p", p, sizeof(p))) {
		printf("%s dmarc: record at %s has no p= tag: \"%s\"\n", d->name,
		    name, records[0]);
		free_records(records, n);
		return 1;
	}
	(void)dmarc_tag(records[0], "aspf", aspf, sizeof(aspf));
	printf("%s dmarc: ok (p=%s at %s%s; DKIM aligned: d=%s; SPF %s)\n",
	    d->name, p, name, strcasecmp(p, "none") == 0 ?
	    ", monitoring only: receivers do not act on failures" : "",
	    d->name, is_aligned(env, d->name, strcasecmp(aspf, "s") == 0) ?
	    "aligned through the return path" : "not aligned with the return "
	    "path; DKIM carries DMARC");
	free_records(records, n);
	return 0;
}

static int
check_return_path(struct ub_ctx *ctx, const struct cfg_domain *d)
{
	struct ub_result *res;
	char host[NS_MAXDNAME];

	if (d->return_path == NULL)
		return 0;
	switch (ask(ctx, d->return_path, 15 /* MX */, &res)) {
	case ANSWER_FAILED:
		printf("%s return-path: lookup of %s MX failed (the DNS server "
		    "failed or did not answer)\n", d->name, d->return_path);
		return 1;
	case ANSWER_NONE:
	case ANSWER_NXDOMAIN:
		printf("%s return-path: %s has no MX record: asynchronous "
		    "bounces and complaints cannot come back to tern's inbound "
		    "listener\n", d->name, d->return_path);
		return 1;
	case ANSWER_DATA:
		break;
	}
	printf("%s return-path: ok (%s MX", d->name, d->return_path);
	for (int i = 0; res->data[i] != NULL; i++)
		if (res->len[i] >= 3 && wire_name((unsigned char *)res->data[i] +
		    2, (size_t)res->len[i] - 2, host, sizeof(host)))
			printf(" %s", host);
	printf(": it must lead to tern's inbound listener)\n");
	ub_resolve_free(res);
	return 0;
}

/* Without --ip: this host's global addresses, which may be the ones it
 * sends from. */
static size_t
host_addresses(char **ips, size_t max)
{
	struct ifaddrs *ifs, *i;
	size_t n = 0;

	if (getifaddrs(&ifs) == -1)
		return 0;
	for (i = ifs; i != NULL && n < max; i = i->ifa_next) {
		char buf[INET6_ADDRSTRLEN];
		const void *a;

		if (i->ifa_addr == NULL)
			continue;
		if (i->ifa_addr->sa_family == AF_INET) {
			const struct in_addr *in =
			    &((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr;
			uint32_t h = ntohl(in->s_addr);

			/* loopback, private and link-local say nothing of SPF */
			if ((h >> 24) == 127 || (h >> 24) == 10 ||
			    (h >> 20) == 0xac1 || (h >> 16) == 0xc0a8 ||
			    (h >> 16) == 0xa9fe)
				continue;
			a = in;
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			const struct in6_addr *in6 =
			    &((const struct sockaddr_in6 *)(const void *)i->ifa_addr)->sin6_addr;

			if (IN6_IS_ADDR_LOOPBACK(in6) || IN6_IS_ADDR_LINKLOCAL(in6) ||
			    (in6->s6_addr[0] & 0xfe) == 0xfc)
				continue;
			a = in6;
		} else
			continue;
		if (inet_ntop(i->ifa_addr->sa_family, a, buf, sizeof(buf)))
			ips[n++] = xstrdup(buf);
	}
	freeifaddrs(ifs);
	return n;
}

static int
domain_check(const char *config_path, int argc, char **argv)
{
	struct tern_config *cfg;
	struct ub_ctx *ctx;
	SPF_server_t *spf;
	const char *only = NULL;
	char *ips[IPS_MAX], who[300];
	size_t n_ips = 0, checked = 0;
	int status = 0;

	for (int i = 2; i < argc; i++) {
		unsigned char buf[sizeof(struct in6_addr)];

		if (strcmp(argv[i], "--ip") == 0 && i + 1 < argc) {
			i++;
			if ((inet_pton(AF_INET, argv[i], buf) != 1 &&
			    inet_pton(AF_INET6, argv[i], buf) != 1) ||
			    n_ips == IPS_MAX) {
				fprintf(stderr, "ternctl: --ip %s: not an IP "
				    "address (or more than %d)\n", argv[i],
				    IPS_MAX);
				return 2;
			}
			ips[n_ips++] = xstrdup(argv[i]);
		} else if (argv[i][0] != '-' && only == NULL)
			only = argv[i];
		else
			return domain_usage();
	}
	if ((cfg = ctl_load_config(config_path)) == NULL)
		return 1;
	if (only != NULL && config_find_domain(cfg, only) == NULL) {
		fprintf(stderr, "ternctl: %s is not a [domain] of %s\n", only,
		    cfg->path);
		config_free(cfg);
		return 1;
	}
	if ((ctx = ctl_resolver_new(cfg)) == NULL) {
		config_free(cfg);
		return 1;
	}
	if (n_ips == 0)
		n_ips = host_addresses(ips, IPS_MAX);
	spf = spf_server_new(ctx);
	for (size_t i = 0; i < cfg->n_domains; i++) {
		const struct cfg_domain *d = &cfg->domains[i];

		if (only != NULL && strcasecmp(d->name, only) != 0)
			continue;
		checked++;
		snprintf(who, sizeof(who), "%s dkim", d->name);
		if (ctl_dkim_check_domain(ctx, who, d) != 0)
			status = 1;
		if (check_spf(ctx, spf, d, ips, n_ips) != 0)
			status = 1;
		if (check_dmarc(ctx, d) != 0)
			status = 1;
		if (check_return_path(ctx, d) != 0)
			status = 1;
	}
	if (checked == 0)
		printf("no [domain] configured in %s\n", cfg->path);
	SPF_server_free(spf);
	ub_ctx_delete(ctx);
	for (size_t i = 0; i < n_ips; i++)
		free(ips[i]);
	config_free(cfg);
	return status;
}

int
cmd_domain(const char *config_path, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "check") == 0)
		return domain_check(config_path, argc, argv);
	return domain_usage();
}
