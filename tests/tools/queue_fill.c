/*
 * queue_fill.c - puts messages into a tern queue for tests and benchmarks
 * of the delivery agent, as tern-cleanup would (libternq, one batch
 * commit per 1000 messages). Prints one queue id per line.
 *
 *   queue_fill -c tern.conf [-n COUNT] [-f SENDER] [-8] [-u] FILE RCPT...
 *
 * FILE holds the message (LF line ends become CRLF; "-" is stdin).
 * -8 marks it BODY=8BITMIME, -u SMTPUTF8.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "queue.h"
#include "util.h"

#define BATCH	1000

static char *
read_message(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char *out = NULL;
	size_t n = 0, cap = 0;
	int c, prev = 0;

	if (f == NULL) {
		perror(path);
		exit(2);
	}
	while ((c = getc(f)) != EOF) {
		if (n + 3 > cap) {
			/* Doubling: one copy per growth, not per byte. */
			cap = cap ? cap * 2 : 4096;
			out = xrealloc(out, cap);
		}
		if (c == '\n' && prev != '\r')
			out[n++] = '\r';
		out[n++] = (char)c;
		prev = c;
	}
	if (f != stdin)
		fclose(f);
	*len = n;
	return out;
}

int
main(int argc, char **argv)
{
	const char *config = NULL, *sender = "sender@tern.test";
	struct queue_options o;
	struct tern_config *cfg;
	struct queue *q;
	unsigned long count = 1;
	bool eight = false, utf8 = false;
	char *content;
	size_t len;
	int ch;

	log_init("queue_fill", LOG_TARGET_STDERR, false);
	while ((ch = getopt(argc, argv, "c:n:f:8u")) != -1) {
		switch (ch) {
		case 'c':
			config = optarg;
			break;
		case 'n':
			count = strtoul(optarg, NULL, 10);
			break;
		case 'f':
			sender = optarg;
			break;
		case '8':
			eight = true;
			break;
		case 'u':
			utf8 = true;
			break;
		default:
			goto usage;
		}
	}
	if (config == NULL || argc - optind < 2 || count == 0)
		goto usage;
	cfg = config_load_or_exit(config);
	content = read_message(argv[optind], &len);
	queue_options_from_config(&o, cfg, 0);
	q = queue_open(&o);
	if (q == NULL)
		log_fatal("cannot open the queue");
	for (unsigned long done = 0; done < count;) {
		struct queue_batch *b = queue_batch_new();
		size_t n = 0;

		for (; n < BATCH && done + n < count; n++) {
			struct queue_msg_info env;
			struct queue_msg *m;

			memset(&env, 0, sizeof(env));
			env.sender = sender;
			env.body = eight ? CLEANUP_BODY_8BITMIME : CLEANUP_BODY_7BIT;
			env.source = CLEANUP_SOURCE_SUBMISSION;
			env.smtputf8 = utf8;
			env.envid = env.auth_user = env.client_addr = "";
			env.client_name = env.stream = env.message_id = "";
			m = queue_msg_new(&env);
			for (int i = optind + 1; i < argc; i++)
				if (queue_msg_add_rcpt(m, argv[i], "", 0) == -1)
					log_fatal("bad recipient %s", argv[i]);
			queue_msg_append(m, content, len);
			queue_batch_add(b, m);
		}
		if (queue_batch_commit(q, b) == -1)
			log_fatal("commit failed: %s",
			    queue_strerror(queue_last_error()));
		for (size_t i = 0; i < n; i++) {
			char id[QUEUE_ID_LEN + 1];

			queue_id_format(queue_batch_qid(b, i), id);
			printf("%s\n", id);
		}
		queue_batch_free(b);
		done += n;
	}
	free(content);
	queue_close(q);
	config_free(cfg);
	return 0;
usage:
	fprintf(stderr, "usage: queue_fill -c config [-n count] [-f sender] "
	    "[-8] [-u] file rcpt...\n");
	return 2;
}
