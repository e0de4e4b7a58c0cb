/*
 * config.h - the one configuration struct of tern, read from tern.conf
 * (INI, via libinih), validated once and then shared read-only.
 * Every key is documented in man/tern.conf.5. Unknown keys, bad values,
 * duplicate listeners and missing files are errors with file:line.
 * Used by every daemon and by ternctl; needs read access to the file.
 */
#ifndef TERN_CONFIG_H
#define TERN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"

enum listen_mode {
	LISTEN_SUBMISSION,	/* 587: STARTTLS, AUTH after TLS */
	LISTEN_SMTPS,		/* 465: implicit TLS (RFC 8314) */
	LISTEN_INBOUND,		/* 25: DSNs and complaints for our domains only */
};

enum tls_policy {
	TLS_POLICY_NONE,
	TLS_POLICY_OPPORTUNISTIC,
	TLS_POLICY_REQUIRED,
};

/* A numeric socket address as written in the config ("127.0.0.1:2587"). */
struct cfg_sockaddr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[80];		/* as written, for logs */
};

/* One network in CIDR notation ("127.0.0.0/8", "::1/128"). */
struct cfg_cidr {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned prefix;
};

/* [listen NAME] */
struct cfg_listener {
	char *name;
	int line;			/* of the section header */
	struct cfg_sockaddr address;
	bool has_address;
	enum listen_mode mode;
	bool has_mode;
	char *tls_cert;			/* NULL: no TLS on this listener */
	char *tls_key;
	struct cfg_cidr *trusted_networks;
	size_t n_trusted_networks;
};

/* DKIM canonicalization, header/body (RFC 6376 3.4); zero is the default. */
enum dkim_canonicalization {
	CANON_RELAXED_RELAXED,
	CANON_RELAXED_SIMPLE,
	CANON_SIMPLE_SIMPLE,
	CANON_SIMPLE_RELAXED,
};

/* [domain NAME]: a sending domain; mail from it is accepted and signed. */
struct cfg_domain {
	char *name;			/* lower case */
	int line;
	char **dkim_selectors;		/* parallel to dkim_keys */
	size_t n_dkim;
	char **dkim_keys;		/* private key paths (PEM) */
	size_t n_dkim_keys;		/* equals n_dkim once validated */
	enum dkim_canonicalization dkim_canonicalization;
	char *return_path;		/* bounce domain, or NULL */
};

/* [destination NAME]: optional per-destination shaping. */
struct cfg_destination {
	char *name;			/* lower case domain */
	int line;
	unsigned max_connections;	/* 0: the [delivery] default */
	unsigned rate_count;		/* 0: unlimited */
	unsigned rate_period;		/* seconds */
};

struct tern_config {
	char *path;			/* the file read, absolute */

	struct {
		char *hostname;
		char *queue_dir;
		char *run_dir;
		char *daemon_dir;
		char *user;
		enum log_target log;
		bool verbose;
		uint64_t message_size_limit;	/* bytes */
		int64_t shutdown_timeout;	/* seconds */
	} server;

	struct {
		uint64_t map_size;		/* initial LMDB map size */
		uint64_t map_size_max;		/* the map never grows beyond */
		int64_t event_retention;	/* seconds */
	} queue;

	struct {
		unsigned max_sessions;
		unsigned max_sessions_per_client;
		unsigned max_recipients;
		unsigned max_errors;
		unsigned max_junk_commands;	/* NOOP/RSET/VRFY/HELP per message */
		int64_t timeout;		/* command and data timeout, s */
		int64_t greeting_delay;		/* wait before 220; talkers are cut */
		int64_t auth_failure_delay;	/* per failed AUTH of the client, s */
	} smtpd;

	struct {
		char *users_file;		/* NULL: AUTH unavailable */
	} auth;

	struct {
		char **dns_servers;		/* "127.0.0.1@5353"; none: system */
		size_t n_dns_servers;
		unsigned smtp_port;
		int64_t *retry_schedule;	/* seconds; the last repeats */
		size_t n_retry_schedule;
		int64_t max_queue_lifetime;
		int64_t delay_warning;		/* 0: no delay notices */
		enum tls_policy tls;
		char *tls_ca_file;		/* NULL: the system trust store */
		unsigned max_connections;
		unsigned max_connections_per_destination;
		unsigned agents;		/* tern-smtp processes */
		int64_t connect_timeout;
		char *helo_name;		/* NULL: [server] hostname */
		int64_t dns_timeout;		/* seconds per MX look-up */
		int64_t command_timeout;	/* seconds per SMTP reply */
		int64_t data_timeout;		/* seconds for the final "." reply */
		int64_t connection_idle_timeout; /* cached connection, s; 0 none */
		unsigned max_messages_per_connection;
		unsigned max_mx_addresses;	/* addresses tried per attempt */
		int64_t job_timeout;		/* an agent's answer to a job, s */
	} delivery;

	struct {
		char *classes_file;		/* operator's rules, NULL none */
		char **hard_statuses;		/* patterns: suppress at once */
		size_t n_hard_statuses;
		char **soft_statuses;		/* patterns: after the limit */
		size_t n_soft_statuses;
		unsigned soft_bounce_limit;	/* distinct messages */
		int64_t soft_bounce_window;	/* seconds */
		int64_t hard_expiry;		/* seconds, 0 never */
		int64_t soft_expiry;
		int64_t complaint_expiry;
	} bounce;

	struct cfg_listener *listeners;
	size_t n_listeners;
	struct cfg_domain *domains;
	size_t n_domains;
	struct cfg_destination *destinations;
	size_t n_destinations;
};

/* One problem found in the config, located by file and line. */
struct config_error {
	char *file;
	int line;			/* 0: not tied to a line */
	char *message;
};

struct config_errors {
	struct config_error *v;
	size_t n;
};

/* -c FILE, else $TERN_CONFIG, else SYSCONFDIR/tern/tern.conf. */
const char *config_default_path(const char *option);

/*
 * Reads and validates a config file. Returns NULL when anything is wrong;
 * then errs lists every problem found (the caller frees it).
 */
struct tern_config *config_load(const char *path, struct config_errors *errs);
void config_free(struct tern_config *cfg);
/*
 * The same without checking that the files it names exist: for programs
 * any user runs (sendmail), who cannot see the DKIM keys or TLS files
 * and never use them.
 */
struct tern_config *config_load_unchecked(const char *path,
    struct config_errors *errs);

/* Prints "file:line: message" lines. */
void config_errors_print(const struct config_errors *errs, FILE *out);
void config_errors_free(struct config_errors *errs);

/* Loads the config or exits with every error logged (for daemons). */
struct tern_config *config_load_or_exit(const char *path);

/* Lookups; NULL when not configured. name is compared case-insensitively. */
const struct cfg_domain *config_find_domain(const struct tern_config *cfg,
    const char *name);
const struct cfg_domain *config_find_return_path_domain(
    const struct tern_config *cfg, const char *name);
const struct cfg_destination *config_find_destination(
    const struct tern_config *cfg, const char *name);
const struct cfg_listener *config_find_listener(const struct tern_config *cfg,
    const char *name);

/* True when addr (AF_INET/AF_INET6 sockaddr) is inside one of the nets. */
bool is_addr_in_cidrs(const struct sockaddr *addr, const struct cfg_cidr *nets,
    size_t n);

/* Value parsers, exported for unit tests and ternctl. */
int config_parse_duration(const char *s, int64_t *out);
int config_parse_size(const char *s, uint64_t *out);
int config_parse_sockaddr(const char *s, struct cfg_sockaddr *out);
int config_parse_cidr(const char *s, struct cfg_cidr *out);

#endif
