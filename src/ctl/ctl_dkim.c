/*
 * ctl_dkim.c - ternctl dkim: creates DKIM private keys and the DNS record
 * to publish (keygen), and checks that the records published in DNS match
 * the configured private keys (check). Runs as the administrator; check
 * must be able to read the key files.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unbound.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"
#include "dkim_key.h"
#include "resolver.h"
#include "util.h"

int cmd_dkim(const char *config_path, int argc, char **argv);

#define DKIM_RSA_MAX_BITS	8192
#define DNS_RCODE_SERVFAIL	2

static int
dkim_usage(void)
{
	fprintf(stderr, "usage: ternctl [-c config] dkim keygen DOMAIN SELECTOR "
	    "[--algorithm rsa|ed25519] [--bits N] [--out FILE]\n"
	    "       ternctl [-c config] dkim check [DOMAIN]\n");
	return 2;
}

/* The configured key path of domain/selector, or NULL. */
static char *
configured_key_path(const char *config_path, const char *domain,
    const char *selector)
{
	struct config_errors errs;
	struct tern_config *cfg = config_load(config_path, &errs);
	const struct cfg_domain *d;
	char *path = NULL;

	if (cfg == NULL) {
		config_errors_free(&errs);
		return NULL;
	}
	d = config_find_domain(cfg, domain);
	for (size_t i = 0; d != NULL && i < d->n_dkim; i++)
		if (strcmp(d->dkim_selectors[i], selector) == 0)
			path = xstrdup(d->dkim_keys[i]);
	config_free(cfg);
	return path;
}

/* Writes pkey to a new file readable by its owner only. */
static int
write_private_key(const char *path, EVP_PKEY *pkey)
{
	FILE *f;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd == -1) {
		fprintf(stderr, "ternctl: cannot create %s: %s%s\n", path,
		    strerror(errno), errno == EEXIST
		    ? " (remove it first, or choose another --out)" : "");
		return -1;
	}
	f = fdopen(fd, "w");
	if (f == NULL || fchmod(fd, 0600) == -1 ||
	    PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
	    fflush(f) != 0 || fsync(fd) == -1) {
		fprintf(stderr, "ternctl: cannot write %s\n", path);
		if (f != NULL)
			fclose(f);
		else
			close(fd);
		unlink(path);
		return -1;
	}
	fclose(f);
	return 0;
}

static bool
is_label_text(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' ||
		    *s == '_'))
			return false;
	return true;
}

static int
dkim_keygen(const char *config_path, int argc, char **argv)
{
	const char *domain, *selector, *alg = "rsa", *out = NULL;
	uint64_t bits = DKIM_RSA_MIN_BITS;
	char *path, *why = NULL, *record, *line;
	struct dkim_key key;
	EVP_PKEY *pkey;

	if (argc < 4)
		return dkim_usage();
	domain = argv[2];
	selector = argv[3];
	for (int i = 4; i < argc; i++) {
		if (i + 1 >= argc)
			return dkim_usage();
		if (strcmp(argv[i], "--algorithm") == 0)
			alg = argv[++i];
		else if (strcmp(argv[i], "--bits") == 0) {
			if (parse_uint64(argv[++i], DKIM_RSA_MAX_BITS, &bits) == -1 ||
			    bits < DKIM_RSA_MIN_BITS) {
				fprintf(stderr, "ternctl: --bits must be from %d "
				    "to %d\n", DKIM_RSA_MIN_BITS, DKIM_RSA_MAX_BITS);
				return 2;
			}
		} else if (strcmp(argv[i], "--out") == 0)
			out = argv[++i];
		else
			return dkim_usage();
	}
	if (!is_label_text(domain) || !is_label_text(selector)) {
		fprintf(stderr, "ternctl: '%s' and '%s' must be a domain and a "
		    "selector (letters, digits, '-', '_', '.')\n", domain, selector);
		return 2;
	}
	if (strcmp(alg, "rsa") == 0)
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	else if (strcmp(alg, "ed25519") == 0)
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	else {
		fprintf(stderr, "ternctl: --algorithm is rsa or ed25519\n");
		return 2;
	}
	if (pkey == NULL) {
		fprintf(stderr, "ternctl: key generation failed\n");
		return 1;
	}
	/* Default: where the config expects it, else the current folder. */
	path = out != NULL ? xstrdup(out)
	    : configured_key_path(config_path, domain, selector);
	if (path == NULL)
		path = xasprintf("%s.%s.pem", domain, selector);
	if (write_private_key(path, pkey) == -1) {
		EVP_PKEY_free(pkey);
		free(path);
		return 1;
	}
	EVP_PKEY_free(pkey);
	if (dkim_key_load(path, &key, &why) == -1) {
		fprintf(stderr, "ternctl: %s\n", why);
		free(why);
		free(path);
		return 1;
	}
	record = dkim_key_record(&key);
	line = dkim_key_zone_line(selector, domain, record);
	fprintf(stderr, "wrote the private key to %s (mode 0600); publish:\n",
	    path);
	printf("%s\n", line);
	free(line);
	free(record);
	dkim_key_clear(&key);
	free(path);
	return 0;
}

/* ---- check ---- */

struct ub_ctx *
ctl_resolver_new(const struct tern_config *cfg)
{
	struct ub_ctx *ctx = ub_ctx_create();
	int rc = 0;

	if (ctx == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->delivery.n_dns_servers && rc == 0; i++) {
		char fwd[300];

		/* check-config refuses what this cannot read. */
		if (!resolver_forwarder_text(cfg->delivery.dns_servers[i], fwd,
		    sizeof(fwd)))
			rc = UB_SYNTAX;
		else
			rc = ub_ctx_set_fwd(ctx, fwd);
	}
	for (size_t i = 0; i < resolver_n_transparent_zones && rc == 0 &&
	    cfg->delivery.n_dns_servers > 0; i++)
		rc = ub_ctx_set_option(ctx, "local-zone:",
		    resolver_transparent_zones[i]);
	if (cfg->delivery.n_dns_servers == 0 && rc == 0)
		rc = ub_ctx_resolvconf(ctx, NULL);
	if (rc != 0) {
		fprintf(stderr, "ternctl: resolver setup: %s\n", ub_strerror(rc));
		ub_ctx_delete(ctx);
		return NULL;
	}
	return ctx;
}

char *
ctl_txt_join(const unsigned char *rdata, size_t len, size_t *out_len)
{
	char *s = xmalloc(len + 1);
	size_t n = 0;

	for (size_t i = 0; i < len;) {
		size_t part = rdata[i++];

		if (part > len - i)
			part = len - i;
		memcpy(s + n, rdata + i, part);
		n += part;
		i += part;
	}
	s[n] = '\0';
	*out_len = n;
	return s;
}

int
ctl_dkim_check_selector(struct ub_ctx *ctx, const char *who,
    const char *domain, const char *selector, const char *key_path)
{
	char *name = xasprintf("%s._domainkey.%s", selector, domain);
	struct ub_result *res = NULL;
	struct dkim_key key;
	char *why = NULL;
	int rc, status = 1, n_records = 0, n_match = 0;
	const char *problem = NULL;

	if (dkim_key_load(key_path, &key, &why) == -1) {
		printf("%s %s: key problem: %s\n", who, selector, why);
		free(why);
		free(name);
		return 1;
	}
	rc = ub_resolve(ctx, name, 16 /* TXT */, 1 /* IN */, &res);
	if (rc != 0) {
		printf("%s %s: lookup of %s failed: %s\n", who, selector, name,
		    ub_strerror(rc));
		goto out;
	}
	if (res->bogus) {
		printf("%s %s: lookup of %s failed: DNSSEC validation: %s\n",
		    who, selector, name,
		    res->why_bogus ? res->why_bogus : "bogus");
		goto out;
	}
	/* Only an answer says the record is missing: a server that did not
	 * answer (down, unreachable) is a failed lookup, not an absence. */
	if (!res->havedata && (res->rcode == DNS_RCODE_SERVFAIL ||
	    (res->answer_len >= 4 &&
	    (((const unsigned char *)res->answer_packet)[3] & 0x0f) ==
	    DNS_RCODE_SERVFAIL))) {
		printf("%s %s: lookup of %s failed: SERVFAIL (the DNS server "
		    "failed or did not answer)\n", who, selector, name);
		goto out;
	}
	for (int i = 0; res->havedata && res->data[i] != NULL; i++) {
		size_t len;
		char *text = ctl_txt_join((unsigned char *)res->data[i],
		    (size_t)res->len[i], &len);
		char *k, *p;
		const char *perr;

		if (dkim_record_parse(text, len, &k, &p, &perr) == -1) {
			problem = perr;
			free(text);
			continue;
		}
		n_records++;
		if (strcasecmp(k, dkim_key_alg_name(key.alg)) == 0 &&
		    strcmp(p, key.public_b64) == 0)
			n_match++;
		free(k);
		free(p);
		free(text);
	}
	if (n_records == 0 && problem != NULL)
		printf("%s %s: malformed record at %s: %s\n", who, selector,
		    name, problem);
	else if (n_records == 0)
		printf("%s %s: missing record %s (publish the line ternctl dkim "
		    "keygen printed)\n", who, selector, name);
	else if (n_records > 1)
		printf("%s %s: %d DKIM records at %s; there must be one\n",
		    who, selector, n_records, name);
	else if (n_match == 0)
		printf("%s %s: mismatch: the record at %s is not the public key "
		    "of %s\n", who, selector, name, key_path);
	else {
		printf("%s %s: ok (%s-sha256, %d bits)\n", who, selector,
		    dkim_key_alg_name(key.alg), key.bits);
		status = 0;
	}
out:
	if (res != NULL)
		ub_resolve_free(res);
	dkim_key_clear(&key);
	free(name);
	return status;
}

int
ctl_dkim_check_domain(struct ub_ctx *ctx, const char *who,
    const struct cfg_domain *d)
{
	int status = 0;

	if (d->n_dkim == 0) {
		printf("%s: no dkim_selector configured: its mail cannot be "
		    "signed\n", who);
		status = 1;
	}
	for (size_t k = 0; k < d->n_dkim; k++)
		if (ctl_dkim_check_selector(ctx, who, d->name,
		    d->dkim_selectors[k], d->dkim_keys[k]) != 0)
			status = 1;
	return status;
}

static int
dkim_check(const char *config_path, int argc, char **argv)
{
	struct config_errors errs;
	struct tern_config *cfg;
	struct ub_ctx *ctx;
	size_t checked = 0;
	int status = 0;

	if (argc > 3)
		return dkim_usage();
	cfg = config_load(config_path, &errs);
	if (cfg == NULL) {
		config_errors_print(&errs, stderr);
		config_errors_free(&errs);
		return 1;
	}
	if (argc == 3 && config_find_domain(cfg, argv[2]) == NULL) {
		fprintf(stderr, "ternctl: %s is not a [domain] of %s\n", argv[2],
		    cfg->path);
		config_free(cfg);
		return 1;
	}
	ctx = ctl_resolver_new(cfg);
	if (ctx == NULL) {
		config_free(cfg);
		return 1;
	}
	for (size_t i = 0; i < cfg->n_domains; i++) {
		const struct cfg_domain *d = &cfg->domains[i];

		if (argc == 3 && strcasecmp(d->name, argv[2]) != 0)
			continue;
		checked++;
		if (ctl_dkim_check_domain(ctx, d->name, d) != 0)
			status = 1;
	}
	if (checked == 0)
		printf("no [domain] configured in %s\n", cfg->path);
	ub_ctx_delete(ctx);
	config_free(cfg);
	return status;
}

int
cmd_dkim(const char *config_path, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
		return dkim_keygen(config_path, argc, argv);
	if (argc >= 2 && strcmp(argv[1], "check") == 0)
		return dkim_check(config_path, argc, argv);
	return dkim_usage();
}
