/*
 * ternctl - the administration command: configuration checks, and (as
 * their daemons land) the queue, suppression, events, users and DKIM keys.
 * Runs as the administrator who invokes it.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ctl_user.h"
#include "ctl.h"
#include "log.h"
#include "util.h"

struct ctl_command {
	const char *name;
	const char *usage;
	int (*run)(const char *config_path, int argc, char **argv);
};

/* check-config: prints every problem with file and line. */
static int
cmd_check_config(const char *config_path, int argc, char **argv)
{
	struct config_errors errs;
	struct tern_config *cfg;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: ternctl [-c config] check-config\n");
		return 2;
	}
	cfg = config_load(config_path, &errs);
	if (cfg == NULL) {
		config_errors_print(&errs, stderr);
		fprintf(stderr, "%s: %zu error(s)\n", config_path, errs.n);
		config_errors_free(&errs);
		return 1;
	}
	printf("%s: ok (%zu listener(s), %zu domain(s))\n", cfg->path,
	    cfg->n_listeners, cfg->n_domains);
	config_free(cfg);
	return 0;
}

int cmd_dkim(const char *config_path, int argc, char **argv);	/* ctl_dkim.c */

static const struct ctl_command commands[] = {
	{ "check-config", "check-config", cmd_check_config },
	{ "dkim", "dkim keygen DOMAIN SELECTOR [--algorithm rsa|ed25519] "
	    "[--bits N] [--out FILE]\n  dkim check [DOMAIN]", cmd_dkim },
	{ "domain", "domain check [DOMAIN] [--ip ADDRESS]...", cmd_domain },
	{ "user", "user add NAME (password on stdin)", ctl_user },
	{ "queue", "queue [list] | show ID | flush [ID] | delete|hold|release ID...|-|ALL", cmd_queue },
	{ "suppression", "suppression list [--reason TEXT] "
	    "[--source bounce|complaint|manual]\n"
	    "  suppression add ADDRESS [REASON] [--expires DURATION] | "
	    "remove ADDRESS\n"
	    "  suppression import FILE|- | export (CSV)", cmd_suppression },
	{ "events", "events [--follow] [--since SEQ|DURATION|TIME]", cmd_events },
	{ "trace", "trace ID", cmd_trace },
};

/* Asked for (-h, --help): to stdout, exit 0; else a usage error. */
static TERN_NORETURN void
usage(bool asked)
{
	FILE *out = asked ? stdout : stderr;

	fprintf(out, "usage: ternctl [-c config] command [args]\ncommands:\n");
	for (size_t i = 0; i < TERN_ARRAY_LEN(commands); i++)
		fprintf(out, "  %s\n", commands[i].usage);
	exit(asked ? 0 : 2);
}

int
main(int argc, char **argv)
{
	const char *config_path = NULL;
	int ch;

	log_init("ctl", LOG_TARGET_STDERR, false);
	if (argc > 1 && strcmp(argv[1], "--help") == 0)
		usage(true);
	while ((ch = getopt(argc, argv, "+c:h")) != -1) {
		switch (ch) {
		case 'c': config_path = optarg; break;
		case 'h': usage(true); break;
		default: usage(false);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage(false);
	for (size_t i = 0; i < TERN_ARRAY_LEN(commands); i++)
		if (strcmp(argv[0], commands[i].name) == 0)
			return commands[i].run(config_default_path(config_path), argc, argv);
	fprintf(stderr, "ternctl: unknown command '%s'\n", argv[0]);
	usage(false);
}
