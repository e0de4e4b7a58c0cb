/*
 * ctl_suppression.c - ternctl suppression list|add|remove. The listing
 * reads the store read-only; add and remove go through tern-qmgr.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_suppression_io.h"
#include "util.h"

static int
supp_cb(void *arg, const struct queue_suppression *s)
{
	char created[32], expires[32];
	size_t *n = arg;

	ctl_format_time(s->created_ms, created, sizeof(created));
	if (s->expires_ms > 0)
		ctl_format_time(s->expires_ms, expires, sizeof(expires));
	else
		tern_strlcpy(expires, "never", sizeof(expires));
	printf("%s\t%s\t%s\t%s\t%s\n", s->address,
	    queue_supp_source_name(s->source) ? queue_supp_source_name(s->source) :
	    "?", created, expires, s->reason);
	(*n)++;
	return 0;
}

static int
supp_list(const struct tern_config *cfg, uint8_t source, const char *reason)
{
	struct queue *q = ctl_open_queue(cfg);
	size_t n = 0;
	int rc;

	if (q == NULL)
		return 1;
	rc = queue_suppress_list(q, source, reason, queue_now_ms(), supp_cb, &n);
	fflush(stdout);
	if (rc == -1)
		fprintf(stderr, "ternctl: listing suppressions: %s\n",
		    queue_strerror(queue_last_error()));
	else
		fprintf(stderr, "%zu suppressed address%s\n", n, n == 1 ? "" : "es");
	queue_close(q);
	return rc == -1 ? 1 : 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: ternctl suppression list [--reason TEXT] "
	    "[--source bounce|complaint|manual]\n"
	    "       ternctl suppression add ADDRESS [REASON] [--expires DURATION]\n"
	    "       ternctl suppression remove ADDRESS\n"
	    "       ternctl suppression import FILE|-\n"
	    "       ternctl suppression export\n");
}

int
cmd_suppression(const char *config_path, int argc, char **argv)
{
	struct tern_config *cfg;
	struct ipc_out *o;
	int rc;

	if (argc < 2) {
		usage();
		return 2;
	}
	if (strcmp(argv[1], "import") == 0 || strcmp(argv[1], "export") == 0)
		return ctl_suppression_io(config_path, argc, argv);
	if (strcmp(argv[1], "list") == 0) {
		const char *reason = NULL;
		uint8_t source = 0;

		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc) {
				reason = argv[++i];
			} else if (strcmp(argv[i], "--source") == 0 && i + 1 < argc) {
				i++;
				for (uint8_t s = 1; s <= 3; s++)
					if (strcmp(argv[i], queue_supp_source_name(s)) == 0)
						source = s;
				if (source == 0) {
					usage();
					return 2;
				}
			} else {
				usage();
				return 2;
			}
		}
		if ((cfg = ctl_load_config(config_path)) == NULL)
			return 1;
		rc = supp_list(cfg, source, reason);
		config_free(cfg);
		return rc;
	}
	if (strcmp(argv[1], "add") == 0 && argc >= 3) {
		const char *reason = "";
		int64_t expires = 0, d;

		for (int i = 3; i < argc; i++) {
			if (strcmp(argv[i], "--expires") == 0 && i + 1 < argc) {
				if (config_parse_duration(argv[++i], &d) == -1 || d <= 0) {
					fprintf(stderr, "ternctl: bad duration '%s'\n",
					    argv[i]);
					return 2;
				}
				expires = queue_now_ms() + d * 1000;
			} else if (reason[0] == '\0') {
				reason = argv[i];
			} else {
				usage();
				return 2;
			}
		}
		if (strchr(argv[2], '@') == NULL) {
			fprintf(stderr, "ternctl: '%s' is not an address\n", argv[2]);
			return 2;
		}
		if ((cfg = ctl_load_config(config_path)) == NULL)
			return 1;
		o = ipc_out_new(IPC_CTL_SUPPRESS_ADD, 1);
		ipc_put_str(o, argv[2]);
		ipc_put_str(o, reason);
		ipc_put_i64(o, expires);
		rc = ctl_qmgr_request(cfg, o, NULL);
		config_free(cfg);
		return rc;
	}
	if (strcmp(argv[1], "remove") == 0 && argc == 3) {
		if ((cfg = ctl_load_config(config_path)) == NULL)
			return 1;
		o = ipc_out_new(IPC_CTL_SUPPRESS_REMOVE, 1);
		ipc_put_str(o, argv[2]);
		rc = ctl_qmgr_request(cfg, o, NULL);
		config_free(cfg);
		return rc;
	}
	usage();
	return 2;
}
