/*
 * config.c - reads tern.conf with libinih into struct tern_config and
 * validates it. Every problem is collected with its file and line, so
 * `ternctl check-config` can list them all at once.
 * Linked into every daemon and ternctl; needs read access to the file.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "resolver.h"
#include "util.h"

enum section_kind {
	SECT_NONE,
	SECT_SERVER,
	SECT_QUEUE,
	SECT_SMTPD,
	SECT_AUTH,
	SECT_DELIVERY,
	SECT_BOUNCE,		/* plain sections come before SECT_LISTEN */
	SECT_LISTEN,
	SECT_DOMAIN,
	SECT_DESTINATION,
};

static const struct {
	const char *name;
	enum section_kind kind;
	bool named;		/* "[listen NAME]" rather than "[server]" */
} section_kinds[] = {
	{ "server", SECT_SERVER, false },
	{ "queue", SECT_QUEUE, false },
	{ "smtpd", SECT_SMTPD, false },
	{ "auth", SECT_AUTH, false },
	{ "delivery", SECT_DELIVERY, false },
	{ "listen", SECT_LISTEN, true },
	{ "domain", SECT_DOMAIN, true },
	{ "destination", SECT_DESTINATION, true },
	{ "bounce", SECT_BOUNCE, false },
};

enum key_type {
	K_STRING,
	K_HOSTNAME,		/* a domain name, stored lower case */
	K_DIR,			/* a path; need not exist yet */
	K_FILE,			/* a path that must exist */
	K_FILE_LIST,		/* paths that must exist */
	K_PATH_LIST,		/* paths that may be missing until used */
	K_BOOL,
	K_UINT,			/* unsigned within [min, max] */
	K_SIZE,			/* bytes with optional K, M, G */
	K_DURATION,		/* seconds with optional s, m, h, d */
	K_DURATION_LIST,
	K_ENUM,
	K_SOCKADDR,
	K_CIDR_LIST,
	K_STRING_LIST,
	K_RATE,			/* N/s, N/m, N/h, N/d */
};

static const char *const log_names[] = { "stderr", "syslog", NULL };
static const char *const mode_names[] = { "submission", "smtps", "inbound", NULL };
static const char *const tls_names[] = { "none", "opportunistic", "required", NULL };
/* In the order of enum dkim_canonicalization. */
static const char *const canon_names[] = { "relaxed/relaxed", "relaxed/simple",
	"simple/simple", "simple/relaxed", NULL };

/* offset is into struct tern_config for plain sections, else into the
 * section's own struct; count is the offset of a list's size_t count. */
struct key_spec {
	enum section_kind sect;
	const char *name;
	enum key_type type;
	size_t offset;
	size_t count;
	uint64_t min, max;
	const char *const *enum_names;
	const char *default_value;	/* parsed like a configured value */
};

#define CF(field) offsetof(struct tern_config, field)
#define LF(field) offsetof(struct cfg_listener, field)
#define DF(field) offsetof(struct cfg_domain, field)
#define XF(field) offsetof(struct cfg_destination, field)

static const struct key_spec key_specs[] = {
	{ SECT_SERVER, "hostname", K_HOSTNAME, CF(server.hostname), 0, 0, 0, NULL, NULL },
	{ SECT_SERVER, "queue_dir", K_DIR, CF(server.queue_dir), 0, 0, 0, NULL, "/var/spool/tern" },
	{ SECT_SERVER, "run_dir", K_DIR, CF(server.run_dir), 0, 0, 0, NULL, "/run/tern" },
	{ SECT_SERVER, "daemon_dir", K_DIR, CF(server.daemon_dir), 0, 0, 0, NULL, PKGLIBEXECDIR },
	{ SECT_SERVER, "user", K_STRING, CF(server.user), 0, 0, 0, NULL, "tern" },
	{ SECT_SERVER, "log", K_ENUM, CF(server.log), 0, 0, 0, log_names, "syslog" },
	{ SECT_SERVER, "verbose", K_BOOL, CF(server.verbose), 0, 0, 0, NULL, "no" },
	{ SECT_SERVER, "message_size_limit", K_SIZE, CF(server.message_size_limit), 0, 1024, (uint64_t)1 << 32, NULL, "10M" },
	{ SECT_SERVER, "shutdown_timeout", K_DURATION, CF(server.shutdown_timeout), 0, 1, 3600, NULL, "30s" },

	{ SECT_QUEUE, "map_size", K_SIZE, CF(queue.map_size), 0, 1 << 20, (uint64_t)1 << 44, NULL, "1G" },
	{ SECT_QUEUE, "map_size_max", K_SIZE, CF(queue.map_size_max), 0, 1 << 20, (uint64_t)1 << 44, NULL, "64G" },
	{ SECT_QUEUE, "event_retention", K_DURATION, CF(queue.event_retention), 0, 0, 3650 * 86400, NULL, "30d" },

	{ SECT_SMTPD, "max_sessions", K_UINT, CF(smtpd.max_sessions), 0, 1, 1000000, NULL, "10000" },
	{ SECT_SMTPD, "max_sessions_per_client", K_UINT, CF(smtpd.max_sessions_per_client), 0, 1, 1000000, NULL, "100" },
	{ SECT_SMTPD, "max_recipients", K_UINT, CF(smtpd.max_recipients), 0, 100, 100000, NULL, "1000" },
	{ SECT_SMTPD, "max_errors", K_UINT, CF(smtpd.max_errors), 0, 1, 1000, NULL, "10" },
	{ SECT_SMTPD, "max_junk_commands", K_UINT, CF(smtpd.max_junk_commands), 0, 1, 1000000, NULL, "100" },
	{ SECT_SMTPD, "timeout", K_DURATION, CF(smtpd.timeout), 0, 1, 3600, NULL, "5m" },
	{ SECT_SMTPD, "greeting_delay", K_DURATION, CF(smtpd.greeting_delay), 0, 0, 300, NULL, "0s" },
	{ SECT_SMTPD, "auth_failure_delay", K_DURATION, CF(smtpd.auth_failure_delay), 0, 0, 60, NULL, "1s" },

	{ SECT_AUTH, "users_file", K_FILE, CF(auth.users_file), 0, 0, 0, NULL, NULL },

	{ SECT_DELIVERY, "dns_servers", K_STRING_LIST, CF(delivery.dns_servers), CF(delivery.n_dns_servers), 0, 0, NULL, "" },
	{ SECT_DELIVERY, "smtp_port", K_UINT, CF(delivery.smtp_port), 0, 1, 65535, NULL, "25" },
	{ SECT_DELIVERY, "retry_schedule", K_DURATION_LIST, CF(delivery.retry_schedule), CF(delivery.n_retry_schedule), 1, 365 * 86400, NULL, "5m 10m 30m 1h 2h 4h 8h" },
	{ SECT_DELIVERY, "max_queue_lifetime", K_DURATION, CF(delivery.max_queue_lifetime), 0, 1, 365 * 86400, NULL, "5d" },
	{ SECT_DELIVERY, "delay_warning", K_DURATION, CF(delivery.delay_warning), 0, 0, 365 * 86400, NULL, "4h" },
	{ SECT_DELIVERY, "tls", K_ENUM, CF(delivery.tls), 0, 0, 0, tls_names, "opportunistic" },
	{ SECT_DELIVERY, "tls_ca_file", K_FILE, CF(delivery.tls_ca_file), 0, 0, 0, NULL, NULL },
	{ SECT_DELIVERY, "max_connections", K_UINT, CF(delivery.max_connections), 0, 1, 100000, NULL, "100" },
	{ SECT_DELIVERY, "max_connections_per_destination", K_UINT, CF(delivery.max_connections_per_destination), 0, 1, 100000, NULL, "20" },
	{ SECT_DELIVERY, "agents", K_UINT, CF(delivery.agents), 0, 1, 64, NULL, "2" },
	{ SECT_DELIVERY, "connect_timeout", K_DURATION, CF(delivery.connect_timeout), 0, 1, 3600, NULL, "30s" },
	{ SECT_DELIVERY, "helo_name", K_HOSTNAME, CF(delivery.helo_name), 0, 0, 0, NULL, NULL },
	{ SECT_DELIVERY, "dns_timeout", K_DURATION, CF(delivery.dns_timeout), 0, 1, 3600, NULL, "30s" },
	{ SECT_DELIVERY, "command_timeout", K_DURATION, CF(delivery.command_timeout), 0, 1, 3600, NULL, "5m" },
	{ SECT_DELIVERY, "data_timeout", K_DURATION, CF(delivery.data_timeout), 0, 1, 3600, NULL, "10m" },
	{ SECT_DELIVERY, "connection_idle_timeout", K_DURATION, CF(delivery.connection_idle_timeout), 0, 0, 3600, NULL, "5s" },
	{ SECT_DELIVERY, "max_messages_per_connection", K_UINT, CF(delivery.max_messages_per_connection), 0, 1, 1000000, NULL, "100" },
	{ SECT_DELIVERY, "max_mx_addresses", K_UINT, CF(delivery.max_mx_addresses), 0, 1, 100, NULL, "5" },
	{ SECT_DELIVERY, "job_timeout", K_DURATION, CF(delivery.job_timeout), 0, 1, 86400, NULL, "10m" },

	{ SECT_BOUNCE, "classes_file", K_FILE, CF(bounce.classes_file), 0, 0, 0, NULL, NULL },
	{ SECT_BOUNCE, "hard_statuses", K_STRING_LIST, CF(bounce.hard_statuses), CF(bounce.n_hard_statuses), 0, 0, NULL, "5.1.* 5.2.1" },
	{ SECT_BOUNCE, "soft_statuses", K_STRING_LIST, CF(bounce.soft_statuses), CF(bounce.n_soft_statuses), 0, 0, NULL, "4.*.* 5.2.2" },
	{ SECT_BOUNCE, "soft_bounce_limit", K_UINT, CF(bounce.soft_bounce_limit), 0, 1, 1000, NULL, "5" },
	{ SECT_BOUNCE, "soft_bounce_window", K_DURATION, CF(bounce.soft_bounce_window), 0, 3600, 365 * 86400, NULL, "7d" },
	{ SECT_BOUNCE, "hard_expiry", K_DURATION, CF(bounce.hard_expiry), 0, 0, 3650 * 86400, NULL, "0" },
	{ SECT_BOUNCE, "soft_expiry", K_DURATION, CF(bounce.soft_expiry), 0, 0, 3650 * 86400, NULL, "30d" },
	{ SECT_BOUNCE, "complaint_expiry", K_DURATION, CF(bounce.complaint_expiry), 0, 0, 3650 * 86400, NULL, "0" },

	{ SECT_LISTEN, "address", K_SOCKADDR, LF(address), LF(has_address), 0, 0, NULL, NULL },
	{ SECT_LISTEN, "mode", K_ENUM, LF(mode), LF(has_mode), 0, 0, mode_names, NULL },
	{ SECT_LISTEN, "tls_cert", K_FILE, LF(tls_cert), 0, 0, 0, NULL, NULL },
	{ SECT_LISTEN, "tls_key", K_FILE, LF(tls_key), 0, 0, 0, NULL, NULL },
	{ SECT_LISTEN, "trusted_networks", K_CIDR_LIST, LF(trusted_networks), LF(n_trusted_networks), 0, 0, NULL, NULL },

	{ SECT_DOMAIN, "dkim_selector", K_STRING_LIST, DF(dkim_selectors), DF(n_dkim), 0, 0, NULL, NULL },
	{ SECT_DOMAIN, "dkim_key", K_PATH_LIST, DF(dkim_keys), DF(n_dkim_keys), 0, 0, NULL, NULL },
	{ SECT_DOMAIN, "return_path", K_HOSTNAME, DF(return_path), 0, 0, 0, NULL, NULL },
	{ SECT_DOMAIN, "dkim_canonicalization", K_ENUM, DF(dkim_canonicalization), 0, 0, 0, canon_names, NULL },

	{ SECT_DESTINATION, "max_connections", K_UINT, XF(max_connections), 0, 1, 100000, NULL, NULL },
	{ SECT_DESTINATION, "rate", K_RATE, XF(rate_count), XF(rate_period), 0, 0, NULL, NULL },
};

/* Where the parser is, and what it has found so far. */
struct parse_state {
	struct tern_config *cfg;
	struct config_errors *errs;
	FILE *fp;
	const char *file;
	char *dir;			/* of the file, for relative paths */
	int lineno;
	enum section_kind sect;
	void *sect_base;		/* struct the current section's offsets use */
	int sect_line[SECT_DESTINATION + 1];	/* plain sections seen */
	int seen_line[TERN_ARRAY_LEN(key_specs)];
	bool continuation;		/* the current line continues a value */
	bool had_key;			/* inih's prev_name is set */
	bool ignore_section;		/* a broken header: skip its keys */
	bool skip_file_checks;		/* config_load_unchecked() */
};

static void config_error_add(struct config_errors *errs, const char *file,
    int line, const char *fmt, ...) TERN_PRINTF(4, 5);

static void
config_error_add(struct config_errors *errs, const char *file, int line,
    const char *fmt, ...)
{
	struct config_error *e;
	va_list ap;

	errs->v = xreallocarray(errs->v, errs->n + 1, sizeof(*errs->v));
	e = &errs->v[errs->n++];
	e->file = xstrdup(file);
	e->line = line;
	va_start(ap, fmt);
	e->message = xvasprintf(fmt, ap);
	va_end(ap);
}

void
config_errors_print(const struct config_errors *errs, FILE *out)
{
	for (size_t i = 0; i < errs->n; i++) {
		if (errs->v[i].line > 0)
			fprintf(out, "%s:%d: %s\n", errs->v[i].file,
			    errs->v[i].line, errs->v[i].message);
		else
			fprintf(out, "%s: %s\n", errs->v[i].file,
			    errs->v[i].message);
	}
}

void
config_errors_free(struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++) {
		free(errs->v[i].file);
		free(errs->v[i].message);
	}
	free(errs->v);
	errs->v = NULL;
	errs->n = 0;
}

const char *
config_default_path(const char *option)
{
	const char *env;

	if (option != NULL && *option != '\0')
		return option;
	env = getenv("TERN_CONFIG");
	if (env != NULL && *env != '\0')
		return env;
	return SYSCONFDIR "/tern/tern.conf";
}

/* ---- value parsers ---- */

int
config_parse_duration(const char *s, int64_t *out)
{
	uint64_t v, mult = 1;
	char num[32];
	size_t len = strlen(s);

	if (len == 0 || len >= sizeof(num))
		return -1;
	memcpy(num, s, len + 1);
	switch (num[len - 1]) {
	case 's': mult = 1; num[--len] = '\0'; break;
	case 'm': mult = 60; num[--len] = '\0'; break;
	case 'h': mult = 3600; num[--len] = '\0'; break;
	case 'd': mult = 86400; num[--len] = '\0'; break;
	case 'w': mult = 7 * 86400; num[--len] = '\0'; break;
	default:
		break;
	}
	if (parse_uint64(num, (uint64_t)INT64_MAX / mult, &v) == -1)
		return -1;
	*out = (int64_t)(v * mult);
	return 0;
}

int
config_parse_size(const char *s, uint64_t *out)
{
	uint64_t v, mult = 1;
	char num[32];
	size_t len = strlen(s);

	if (len == 0 || len >= sizeof(num))
		return -1;
	memcpy(num, s, len + 1);
	switch (num[len - 1]) {
	case 'k': case 'K': mult = 1024; num[--len] = '\0'; break;
	case 'm': case 'M': mult = 1024 * 1024; num[--len] = '\0'; break;
	case 'g': case 'G': mult = 1024 * 1024 * 1024; num[--len] = '\0'; break;
	default:
		break;
	}
	if (parse_uint64(num, UINT64_MAX / mult, &v) == -1)
		return -1;
	*out = v * mult;
	return 0;
}

int
config_parse_sockaddr(const char *s, struct cfg_sockaddr *out)
{
	struct addrinfo hints, *res;
	char host[64];
	const char *port, *colon;
	uint64_t portnum;
	size_t hlen;

	if (*s == '[') {
		const char *end = strchr(s, ']');
		if (end == NULL || end[1] != ':')
			return -1;
		hlen = (size_t)(end - s - 1);
		if (hlen >= sizeof(host))
			return -1;
		memcpy(host, s + 1, hlen);
		port = end + 2;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || strchr(s, ':') != colon)
			return -1;
		hlen = (size_t)(colon - s);
		if (hlen >= sizeof(host))
			return -1;
		memcpy(host, s, hlen);
		port = colon + 1;
	}
	host[hlen] = '\0';
	if (parse_uint64(port, 65535, &portnum) == -1 || portnum == 0)
		return -1;
	if (strcmp(host, "*") == 0 || host[0] == '\0')
		tern_strlcpy(host, "0.0.0.0", sizeof(host));
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	memset(out, 0, sizeof(*out));
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	tern_strlcpy(out->text, s, sizeof(out->text));
	return 0;
}

int
config_parse_cidr(const char *s, struct cfg_cidr *out)
{
	char addr[64];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	uint64_t prefix;

	if (alen == 0 || alen >= sizeof(addr))
		return -1;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		prefix = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		prefix = 128;
	} else {
		return -1;
	}
	if (slash != NULL && parse_uint64(slash + 1, prefix, &prefix) == -1)
		return -1;
	out->prefix = (unsigned)prefix;
	return 0;
}

static bool
is_prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;

	if (memcmp(a, net, bytes) != 0)
		return false;
	if (bits == 0)
		return true;
	return ((a[bytes] ^ net[bytes]) & (0xff << (8 - bits))) == 0;
}

bool
is_addr_in_cidrs(const struct sockaddr *addr, const struct cfg_cidr *nets,
    size_t n)
{
	uint8_t a4[4], a6[16];
	bool have4 = false;

	if (addr->sa_family == AF_INET) {
		memcpy(a4, &((const struct sockaddr_in *)addr)->sin_addr, 4);
		have4 = true;
		memset(a6, 0, 10);
		memset(a6 + 10, 0xff, 2);
		memcpy(a6 + 12, a4, 4);
	} else if (addr->sa_family == AF_INET6) {
		memcpy(a6, &((const struct sockaddr_in6 *)addr)->sin6_addr, 16);
		/* An IPv4-mapped client matches IPv4 networks too. */
		if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)a6)) {
			memcpy(a4, a6 + 12, 4);
			have4 = true;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (nets[i].family == AF_INET && have4 &&
		    is_prefix_match(a4, nets[i].addr, nets[i].prefix))
			return true;
		if (nets[i].family == AF_INET6 &&
		    is_prefix_match(a6, nets[i].addr, nets[i].prefix))
			return true;
	}
	return false;
}

static bool
is_hostname(const char *s)
{
	size_t label = 0, len = strlen(s);

	if (len == 0 || len > 253)
		return false;
	for (; *s; s++) {
		if (*s == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* ---- storing values ---- */

static char *
config_resolve_path(struct parse_state *st, const char *value)
{
	if (value[0] == '/' || st->dir == NULL)
		return xstrdup(value);
	return xasprintf("%s/%s", st->dir, value);
}

/* Splits on blanks and commas; returns the number of words. */
static size_t
split_words(const char *value, char ***out)
{
	char *copy = xstrdup(value), *save = NULL, *w;
	char **v = NULL;
	size_t n = 0;

	for (w = strtok_r(copy, " \t,", &save); w != NULL;
	    w = strtok_r(NULL, " \t,", &save)) {
		v = xreallocarray(v, n + 1, sizeof(*v));
		v[n++] = xstrdup(w);
	}
	free(copy);
	*out = v;
	return n;
}

static void
free_words(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void
set_string(void *base, size_t off, char *value)
{
	char **slot = (char **)((char *)base + off);

	free(*slot);
	*slot = value;
}

static bool
is_file_present(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/*
 * Parses one value into its slot. Returns 0, or -1 with *why set to an
 * allocated sentence saying what is wrong. append: a continuation line
 * adds to a list instead of replacing it.
 */
static int
store_value(struct parse_state *st, const struct key_spec *ks, void *base,
    const char *value, bool append, char **why)
{
	char *p = (char *)base + ks->offset;
	char **words = NULL;
	size_t nwords, i;
	uint64_t u;
	int64_t d;
	int rc = 0;

	*why = NULL;
	switch (ks->type) {
	case K_STRING:
		if (*value == '\0') {
			*why = xstrdup("value is empty");
			return -1;
		}
		set_string(base, ks->offset, xstrdup(value));
		return 0;
	case K_HOSTNAME:
		if (!is_hostname(value)) {
			*why = xasprintf("'%s' is not a valid domain name", value);
			return -1;
		}
		set_string(base, ks->offset, xstrdup(value));
		ascii_lowercase(*(char **)p);
		return 0;
	case K_DIR:
		if (*value == '\0') {
			*why = xstrdup("value is empty");
			return -1;
		}
		set_string(base, ks->offset, config_resolve_path(st, value));
		return 0;
	case K_FILE: {
		char *path;

		if (*value == '\0') {
			set_string(base, ks->offset, NULL);
			return 0;
		}
		path = config_resolve_path(st, value);
		errno = 0;
		if (st->file != NULL && !st->skip_file_checks &&
		    !is_file_present(path)) {
			*why = xasprintf("file %s: %s", path,
			    errno == 0 ? "not a regular file" : strerror(errno));
			free(path);
			return -1;
		}
		set_string(base, ks->offset, path);
		return 0;
	}
	case K_BOOL:
		if (is_ascii_strcaseeq(value, "yes") || is_ascii_strcaseeq(value, "true") ||
		    strcmp(value, "1") == 0 || is_ascii_strcaseeq(value, "on"))
			*(bool *)p = true;
		else if (is_ascii_strcaseeq(value, "no") || is_ascii_strcaseeq(value, "false") ||
		    strcmp(value, "0") == 0 || is_ascii_strcaseeq(value, "off"))
			*(bool *)p = false;
		else {
			*why = xasprintf("'%s' is not yes or no", value);
			return -1;
		}
		return 0;
	case K_UINT:
		if (parse_uint64(value, UINT32_MAX, &u) == -1 || u < ks->min || u > ks->max) {
			*why = xasprintf("'%s' is not a number from %llu to %llu",
			    value, (unsigned long long)ks->min, (unsigned long long)ks->max);
			return -1;
		}
		*(unsigned *)p = (unsigned)u;
		return 0;
	case K_SIZE:
		if (config_parse_size(value, &u) == -1 || u < ks->min || u > ks->max) {
			*why = xasprintf("'%s' is not a size from %llu to %llu bytes (units K, M, G)",
			    value, (unsigned long long)ks->min, (unsigned long long)ks->max);
			return -1;
		}
		*(uint64_t *)p = u;
		return 0;
	case K_DURATION:
		if (config_parse_duration(value, &d) == -1 ||
		    (uint64_t)d < ks->min || (uint64_t)d > ks->max) {
			*why = xasprintf("'%s' is not a duration from %llus to %llus (units s, m, h, d)",
			    value, (unsigned long long)ks->min, (unsigned long long)ks->max);
			return -1;
		}
		*(int64_t *)p = d;
		return 0;
	case K_ENUM:
		for (i = 0; ks->enum_names[i] != NULL; i++)
			if (is_ascii_strcaseeq(value, ks->enum_names[i]))
				break;
		if (ks->enum_names[i] == NULL) {
			*why = xasprintf("'%s' is not one of:", value);
			for (i = 0; ks->enum_names[i] != NULL; i++) {
				char *t = xasprintf("%s %s", *why, ks->enum_names[i]);
				free(*why);
				*why = t;
			}
			return -1;
		}
		{
			int v = (int)i;
			memcpy(p, &v, sizeof(v));
		}
		if (ks->count)
			*((bool *)((char *)base + ks->count)) = true;
		return 0;
	case K_SOCKADDR:
		if (config_parse_sockaddr(value, (struct cfg_sockaddr *)p) == -1) {
			*why = xasprintf("'%s' is not a numeric address and port "
			    "(192.0.2.1:25, [2001:db8::1]:25, *:25)", value);
			return -1;
		}
		if (ks->count)
			*((bool *)((char *)base + ks->count)) = true;
		return 0;
	case K_RATE: {
		const char *slash = strchr(value, '/');
		char num[32];
		unsigned period = 0;

		if (slash != NULL && (size_t)(slash - value) < sizeof(num)) {
			memcpy(num, value, (size_t)(slash - value));
			num[slash - value] = '\0';
			if (strcmp(slash + 1, "s") == 0) period = 1;
			else if (strcmp(slash + 1, "m") == 0) period = 60;
			else if (strcmp(slash + 1, "h") == 0) period = 3600;
			else if (strcmp(slash + 1, "d") == 0) period = 86400;
		}
		if (period == 0 || parse_uint64(num, 1000000000, &u) == -1 || u == 0) {
			*why = xasprintf("'%s' is not a rate like 600/m (units s, m, h, d)", value);
			return -1;
		}
		*(unsigned *)p = (unsigned)u;
		*(unsigned *)((char *)base + ks->count) = period;
		return 0;
	}
	case K_STRING_LIST:
	case K_FILE_LIST:
	case K_PATH_LIST:
	case K_DURATION_LIST:
	case K_CIDR_LIST:
		break;
	}

	/* Lists: parse every word, then append or replace. */
	nwords = split_words(value, &words);
	if (ks->type == K_DURATION_LIST) {
		int64_t **slot = (int64_t **)p;
		size_t *count = (size_t *)((char *)base + ks->count);
		int64_t *v;

		if (nwords == 0 && !append) {
			*why = xstrdup("needs at least one duration");
			rc = -1;
		}
		v = append ? *slot : NULL;
		i = append ? *count : 0;
		if (!append) {
			free(*slot);
			*slot = NULL;
			*count = 0;
		}
		for (size_t w = 0; w < nwords && rc == 0; w++) {
			if (config_parse_duration(words[w], &d) == -1 ||
			    (uint64_t)d < ks->min || (uint64_t)d > ks->max) {
				*why = xasprintf("'%s' is not a duration from %llus to %llus (units s, m, h, d)",
				    words[w], (unsigned long long)ks->min, (unsigned long long)ks->max);
				rc = -1;
				break;
			}
			v = xreallocarray(v, i + 1, sizeof(*v));
			v[i++] = d;
		}
		*slot = v;
		*count = i;
	} else if (ks->type == K_CIDR_LIST) {
		struct cfg_cidr **slot = (struct cfg_cidr **)p;
		size_t *count = (size_t *)((char *)base + ks->count);

		if (!append) {
			free(*slot);
			*slot = NULL;
			*count = 0;
		}
		for (size_t w = 0; w < nwords; w++) {
			struct cfg_cidr net;

			if (config_parse_cidr(words[w], &net) == -1) {
				*why = xasprintf("'%s' is not a network (192.0.2.0/24, 2001:db8::/32)",
				    words[w]);
				rc = -1;
				break;
			}
			*slot = xreallocarray(*slot, *count + 1, sizeof(**slot));
			(*slot)[(*count)++] = net;
		}
	} else {
		char ***slot = (char ***)p;
		size_t *count = (size_t *)((char *)base + ks->count);

		if (!append) {
			free_words(*slot, *count);
			*slot = NULL;
			*count = 0;
		}
		for (size_t w = 0; w < nwords; w++) {
			char *item = ks->type == K_FILE_LIST || ks->type == K_PATH_LIST
			    ? config_resolve_path(st, words[w]) : xstrdup(words[w]);

			errno = 0;
			if (ks->type == K_FILE_LIST && !st->skip_file_checks &&
			    !is_file_present(item)) {
				*why = xasprintf("file %s: %s", item, errno == 0
				    ? "not a regular file" : strerror(errno));
				free(item);
				rc = -1;
				break;
			}
			*slot = xreallocarray(*slot, *count + 1, sizeof(**slot));
			(*slot)[(*count)++] = item;
		}
	}
	free_words(words, nwords);
	return rc;
}

/* ---- sections ---- */

static bool
is_section_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

/* Opens a section from its header text (without brackets). */
static void
section_begin(struct parse_state *st, char *header)
{
	struct tern_config *cfg = st->cfg;
	char *kind = header, *name;
	size_t i;

	st->sect = SECT_NONE;
	st->sect_base = NULL;
	st->ignore_section = true;
	memset(st->seen_line, 0, sizeof(st->seen_line));

	while (*kind == ' ' || *kind == '\t')
		kind++;
	name = kind + strcspn(kind, " \t");
	if (*name != '\0') {
		*name++ = '\0';
		name += strspn(name, " \t");
		name[strcspn(name, " \t")] = '\0';
	}
	for (i = 0; i < TERN_ARRAY_LEN(section_kinds); i++)
		if (strcmp(kind, section_kinds[i].name) == 0)
			break;
	if (i == TERN_ARRAY_LEN(section_kinds)) {
		config_error_add(st->errs, st->file, st->lineno,
		    "unknown section [%s]; expected server, queue, smtpd, auth, "
		    "delivery, bounce, listen NAME, domain NAME or destination NAME",
		    kind);
		return;
	}
	if (section_kinds[i].named != (*name != '\0')) {
		config_error_add(st->errs, st->file, st->lineno,
		    section_kinds[i].named ? "section [%s] needs a name, as in [%s NAME]"
		    : "section [%s] takes no name%s", kind,
		    section_kinds[i].named ? kind : "");
		return;
	}
	if (*name != '\0' && !is_section_name(name)) {
		config_error_add(st->errs, st->file, st->lineno,
		    "'%s' is not a valid name for [%s]", name, kind);
		return;
	}
	st->sect = section_kinds[i].kind;
	st->ignore_section = false;

	switch (st->sect) {
	case SECT_LISTEN:
		for (i = 0; i < cfg->n_listeners; i++)
			if (strcmp(cfg->listeners[i].name, name) == 0) {
				config_error_add(st->errs, st->file, st->lineno,
				    "duplicate listener [listen %s]; first at line %d",
				    name, cfg->listeners[i].line);
				st->ignore_section = true;
				return;
			}
		cfg->listeners = xreallocarray(cfg->listeners, cfg->n_listeners + 1,
		    sizeof(*cfg->listeners));
		memset(&cfg->listeners[cfg->n_listeners], 0, sizeof(*cfg->listeners));
		cfg->listeners[cfg->n_listeners].name = xstrdup(name);
		cfg->listeners[cfg->n_listeners].line = st->lineno;
		st->sect_base = &cfg->listeners[cfg->n_listeners++];
		break;
	case SECT_DOMAIN:
		ascii_lowercase(name);
		if (!is_hostname(name)) {
			config_error_add(st->errs, st->file, st->lineno,
			    "'%s' is not a valid domain name", name);
			st->ignore_section = true;
			return;
		}
		for (i = 0; i < cfg->n_domains; i++)
			if (strcmp(cfg->domains[i].name, name) == 0) {
				config_error_add(st->errs, st->file, st->lineno,
				    "duplicate section [domain %s]; first at line %d",
				    name, cfg->domains[i].line);
				st->ignore_section = true;
				return;
			}
		cfg->domains = xreallocarray(cfg->domains, cfg->n_domains + 1,
		    sizeof(*cfg->domains));
		memset(&cfg->domains[cfg->n_domains], 0, sizeof(*cfg->domains));
		cfg->domains[cfg->n_domains].name = xstrdup(name);
		cfg->domains[cfg->n_domains].line = st->lineno;
		st->sect_base = &cfg->domains[cfg->n_domains++];
		break;
	case SECT_DESTINATION:
		ascii_lowercase(name);
		if (!is_hostname(name)) {
			config_error_add(st->errs, st->file, st->lineno,
			    "'%s' is not a valid domain name", name);
			st->ignore_section = true;
			return;
		}
		for (i = 0; i < cfg->n_destinations; i++)
			if (strcmp(cfg->destinations[i].name, name) == 0) {
				config_error_add(st->errs, st->file, st->lineno,
				    "duplicate section [destination %s]; first at line %d",
				    name, cfg->destinations[i].line);
				st->ignore_section = true;
				return;
			}
		cfg->destinations = xreallocarray(cfg->destinations,
		    cfg->n_destinations + 1, sizeof(*cfg->destinations));
		memset(&cfg->destinations[cfg->n_destinations], 0,
		    sizeof(*cfg->destinations));
		cfg->destinations[cfg->n_destinations].name = xstrdup(name);
		cfg->destinations[cfg->n_destinations].line = st->lineno;
		st->sect_base = &cfg->destinations[cfg->n_destinations++];
		break;
	default:
		if (st->sect_line[st->sect] != 0) {
			config_error_add(st->errs, st->file, st->lineno,
			    "section [%s] appears twice; first at line %d", kind,
			    st->sect_line[st->sect]);
			st->ignore_section = true;
			return;
		}
		st->sect_line[st->sect] = st->lineno;
		st->sect_base = cfg;
		break;
	}
}

/*
 * The line reader given to inih: it counts lines (inih's handler does not
 * get line numbers in Debian's build), opens sections so that empty ones
 * exist too, catches lines too long for inih's buffer and syntax errors,
 * and tells the handler whether a line continues the previous value.
 */
static char *
config_read_line(char *str, int num, void *stream)
{
	struct parse_state *st = stream;
	char *start, *end;
	size_t len;

	if (fgets(str, num, st->fp) == NULL)
		return NULL;
	st->lineno++;
	len = strlen(str);
	if (len > 0 && str[len - 1] != '\n' && !feof(st->fp)) {
		int c;

		config_error_add(st->errs, st->file, st->lineno,
		    "line is longer than %d characters; continue a long list on "
		    "indented lines", num - 2);
		while ((c = fgetc(st->fp)) != EOF && c != '\n')
			;
		str[0] = '\n';
		str[1] = '\0';
		st->had_key = false;
		st->continuation = false;
		return str;
	}
	/* Mirror inih's reading of the line. */
	start = str;
	if (st->lineno == 1 && (unsigned char)start[0] == 0xEF &&
	    (unsigned char)start[1] == 0xBB && (unsigned char)start[2] == 0xBF)
		start += 3;
	while (*start == ' ' || *start == '\t')
		start++;
	end = start + strlen(start);
	while (end > start && (end[-1] == '\n' || end[-1] == '\r' ||
	    end[-1] == ' ' || end[-1] == '\t'))
		end--;
	st->continuation = false;
	if (start == end || *start == ';' || *start == '#')
		return str;
	if (st->had_key && start > str) {
		st->continuation = true;
		return str;
	}
	if (*start == '[') {
		char header[256];
		char *close = memchr(start, ']', (size_t)(end - start));

		st->had_key = false;
		if (close == NULL || (size_t)(close - start) >= sizeof(header)) {
			config_error_add(st->errs, st->file, st->lineno,
			    "section header without a closing ']'");
			st->sect = SECT_NONE;
			st->ignore_section = true;
			str[0] = '\n';
			str[1] = '\0';
			return str;
		}
		memcpy(header, start + 1, (size_t)(close - start - 1));
		header[close - start - 1] = '\0';
		section_begin(st, header);
		return str;
	}
	if (memchr(start, '=', (size_t)(end - start)) == NULL) {
		config_error_add(st->errs, st->file, st->lineno,
		    "expected 'key = value' or '[section]'");
		str[0] = '\n';
		str[1] = '\0';
		st->had_key = false;
		return str;
	}
	st->had_key = true;
	return str;
}

static bool
is_list_type(enum key_type t)
{
	return t == K_STRING_LIST || t == K_FILE_LIST || t == K_PATH_LIST ||
	    t == K_DURATION_LIST ||
	    t == K_CIDR_LIST;
}

/* inih calls this for every key (and each continuation line). */
static int
config_handle_key(void *user, const char *section, const char *name,
    const char *value)
{
	struct parse_state *st = user;
	const struct key_spec *ks = NULL;
	size_t i;
	char *why;

	(void)section;
	if (st->ignore_section)
		return 1;
	if (st->sect == SECT_NONE) {
		config_error_add(st->errs, st->file, st->lineno,
		    "'%s' is outside of any [section]", name);
		return 1;
	}
	for (i = 0; i < TERN_ARRAY_LEN(key_specs); i++)
		if (key_specs[i].sect == st->sect && strcmp(key_specs[i].name, name) == 0) {
			ks = &key_specs[i];
			break;
		}
	if (ks == NULL) {
		const char *sname = "";

		for (size_t k = 0; k < TERN_ARRAY_LEN(section_kinds); k++)
			if (section_kinds[k].kind == st->sect)
				sname = section_kinds[k].name;
		config_error_add(st->errs, st->file, st->lineno,
		    "unknown key '%s' in [%s]", name, sname);
		return 1;
	}
	if (st->continuation) {
		if (!is_list_type(ks->type)) {
			config_error_add(st->errs, st->file, st->lineno,
			    "'%s' takes one value; an indented line continues only lists",
			    name);
			return 1;
		}
	} else if (st->seen_line[i] != 0) {
		config_error_add(st->errs, st->file, st->lineno,
		    "duplicate key '%s'; first set at line %d", name, st->seen_line[i]);
		return 1;
	}
	st->seen_line[i] = st->lineno;
	if (store_value(st, ks, st->sect_base, value, st->continuation, &why) == -1) {
		config_error_add(st->errs, st->file, st->lineno, "%s: %s", name, why);
		free(why);
	}
	return 1;
}

/* ---- defaults and validation ---- */

static void
config_apply_defaults(struct tern_config *cfg)
{
	struct parse_state st;
	char host[256], *why;

	memset(&st, 0, sizeof(st));
	for (size_t i = 0; i < TERN_ARRAY_LEN(key_specs); i++) {
		const struct key_spec *ks = &key_specs[i];

		if (ks->default_value == NULL || ks->sect >= SECT_LISTEN)
			continue;
		if (store_value(&st, ks, cfg, ks->default_value, false, &why) == -1)
			log_panic("default of %s: %s", ks->name, why);
	}
	if (gethostname(host, sizeof(host)) == -1 || !is_hostname(host))
		tern_strlcpy(host, "localhost", sizeof(host));
	cfg->server.hostname = xstrdup(host);
	ascii_lowercase(cfg->server.hostname);
}

/* "5.1.1", "5.1.*", "*.2.2": three parts of 1-3 digits or "*". */
static bool
is_status_pattern_text(const char *s)
{
	for (int part = 0; part < 3; part++) {
		size_t n = 0;

		if (*s == '*') {
			s++;
		} else {
			while (s[n] >= '0' && s[n] <= '9')
				n++;
			if (n == 0 || n > 3)
				return false;
			s += n;
		}
		if (part < 2 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

static void
config_validate(struct parse_state *st)
{
	struct tern_config *cfg = st->cfg;

	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct cfg_listener *l = &cfg->listeners[i];

		if (!l->has_address)
			config_error_add(st->errs, st->file, l->line,
			    "[listen %s] needs an address", l->name);
		if (!l->has_mode)
			config_error_add(st->errs, st->file, l->line,
			    "[listen %s] needs a mode (submission, smtps or inbound)",
			    l->name);
		if ((l->tls_cert == NULL) != (l->tls_key == NULL))
			config_error_add(st->errs, st->file, l->line,
			    "[listen %s] needs both tls_cert and tls_key, or neither",
			    l->name);
		if (l->has_mode && l->mode == LISTEN_SMTPS && l->tls_cert == NULL)
			config_error_add(st->errs, st->file, l->line,
			    "[listen %s] is in smtps mode and needs tls_cert and tls_key",
			    l->name);
		if (l->has_mode && l->mode == LISTEN_INBOUND && l->n_trusted_networks > 0)
			config_error_add(st->errs, st->file, l->line,
			    "[listen %s]: trusted_networks applies to submission and "
			    "smtps listeners only; inbound never relays", l->name);
		for (size_t j = 0; j < i && l->has_address; j++) {
			const struct cfg_listener *o = &cfg->listeners[j];

			if (o->has_address && o->address.len == l->address.len &&
			    memcmp(&o->address.ss, &l->address.ss, l->address.len) == 0)
				config_error_add(st->errs, st->file, l->line,
				    "[listen %s] uses address %s, as [listen %s] at line %d does",
				    l->name, l->address.text, o->name, o->line);
		}
	}
	for (size_t i = 0; i < cfg->n_domains; i++) {
		const struct cfg_domain *d = &cfg->domains[i];

		if (d->n_dkim != d->n_dkim_keys)
			config_error_add(st->errs, st->file, d->line,
			    "[domain %s] lists %zu dkim_selector and %zu dkim_key "
			    "values; they pair up one to one", d->name, d->n_dkim,
			    d->n_dkim_keys);
	}
	for (size_t i = 0; i < cfg->bounce.n_hard_statuses + cfg->bounce.n_soft_statuses; i++) {
		const char *p = i < cfg->bounce.n_hard_statuses ?
		    cfg->bounce.hard_statuses[i] :
		    cfg->bounce.soft_statuses[i - cfg->bounce.n_hard_statuses];

		if (!is_status_pattern_text(p))
			config_error_add(st->errs, st->file, st->sect_line[SECT_BOUNCE],
			    "[bounce] %s: '%s' is not a status pattern (like 5.1.1, "
			    "5.1.* or *.2.2)", i < cfg->bounce.n_hard_statuses ?
			    "hard_statuses" : "soft_statuses", p);
	}
	for (size_t i = 0; i < cfg->delivery.n_dns_servers; i++) {
		char fwd[300];

		if (!resolver_forwarder_text(cfg->delivery.dns_servers[i], fwd,
		    sizeof(fwd)))
			config_error_add(st->errs, st->file,
			    st->sect_line[SECT_DELIVERY],
			    "[delivery] dns_servers: '%s' is not a resolver address "
			    "(an IP address, optionally with @port or :port)",
			    cfg->delivery.dns_servers[i]);
	}
	if (cfg->queue.map_size > cfg->queue.map_size_max)
		config_error_add(st->errs, st->file, st->sect_line[SECT_QUEUE],
		    "map_size is larger than map_size_max");
}

static struct tern_config *
config_load_with(const char *path, struct config_errors *errs,
    bool skip_file_checks)
{
	struct tern_config *cfg = xcalloc(1, sizeof(*cfg));
	struct parse_state st;
	char *abs, *slash;
	int rc;

	memset(errs, 0, sizeof(*errs));
	memset(&st, 0, sizeof(st));
	st.skip_file_checks = skip_file_checks;
	config_apply_defaults(cfg);

	abs = realpath(path, NULL);
	cfg->path = abs != NULL ? abs : xstrdup(path);
	st.cfg = cfg;
	st.errs = errs;
	st.file = path;
	st.fp = fopen(path, "r");
	if (st.fp == NULL) {
		config_error_add(errs, path, 0, "cannot open config file: %s",
		    strerror(errno));
		config_free(cfg);
		return NULL;
	}
	st.dir = xstrdup(cfg->path);
	slash = strrchr(st.dir, '/');
	if (slash != NULL)
		*slash = '\0';
	rc = ini_parse_stream(config_read_line, &st, config_handle_key, &st);
	if (rc > 0 && errs->n == 0)
		config_error_add(errs, path, rc, "syntax error");
	if (rc < 0)
		config_error_add(errs, path, 0, "cannot read config file");
	fclose(st.fp);
	config_validate(&st);
	free(st.dir);
	if (errs->n > 0) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

struct tern_config *
config_load(const char *path, struct config_errors *errs)
{
	return config_load_with(path, errs, false);
}

struct tern_config *
config_load_unchecked(const char *path, struct config_errors *errs)
{
	return config_load_with(path, errs, true);
}

struct tern_config *
config_load_or_exit(const char *path)
{
	struct config_errors errs;
	struct tern_config *cfg = config_load(path, &errs);

	if (cfg != NULL)
		return cfg;
	for (size_t i = 0; i < errs.n; i++)
		log_warn("%s:%d: %s", errs.v[i].file, errs.v[i].line,
		    errs.v[i].message);
	log_fatal("%s: %zu error(s) in the configuration", path, errs.n);
}

void
config_free(struct tern_config *cfg)
{
	if (cfg == NULL)
		return;
	/* Every string, path and list the key table names is owned here. */
	for (size_t i = 0; i < TERN_ARRAY_LEN(key_specs); i++) {
		const struct key_spec *ks = &key_specs[i];
		char *p = (char *)cfg + ks->offset;

		if (ks->sect >= SECT_LISTEN)
			continue;
		switch (ks->type) {
		case K_STRING: case K_HOSTNAME: case K_DIR: case K_FILE:
		case K_DURATION_LIST: case K_CIDR_LIST:
			free(*(void **)p);
			break;
		case K_STRING_LIST: case K_FILE_LIST: case K_PATH_LIST:
			free_words(*(char ***)p, *(size_t *)((char *)cfg + ks->count));
			break;
		default:
			break;
		}
	}
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		free(cfg->listeners[i].name);
		free(cfg->listeners[i].tls_cert);
		free(cfg->listeners[i].tls_key);
		free(cfg->listeners[i].trusted_networks);
	}
	free(cfg->listeners);
	for (size_t i = 0; i < cfg->n_domains; i++) {
		free(cfg->domains[i].name);
		free_words(cfg->domains[i].dkim_selectors, cfg->domains[i].n_dkim);
		free_words(cfg->domains[i].dkim_keys, cfg->domains[i].n_dkim_keys);
		free(cfg->domains[i].return_path);
	}
	free(cfg->domains);
	for (size_t i = 0; i < cfg->n_destinations; i++)
		free(cfg->destinations[i].name);
	free(cfg->destinations);
	free(cfg->path);
	free(cfg);
}

const struct cfg_domain *
config_find_domain(const struct tern_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_domains; i++)
		if (is_ascii_strcaseeq(cfg->domains[i].name, name))
			return &cfg->domains[i];
	return NULL;
}

const struct cfg_domain *
config_find_return_path_domain(const struct tern_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_domains; i++)
		if (cfg->domains[i].return_path != NULL &&
		    is_ascii_strcaseeq(cfg->domains[i].return_path, name))
			return &cfg->domains[i];
	return NULL;
}

const struct cfg_destination *
config_find_destination(const struct tern_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_destinations; i++)
		if (is_ascii_strcaseeq(cfg->destinations[i].name, name))
			return &cfg->destinations[i];
	return NULL;
}

const struct cfg_listener *
config_find_listener(const struct tern_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_listeners; i++)
		if (strcmp(cfg->listeners[i].name, name) == 0)
			return &cfg->listeners[i];
	return NULL;
}
