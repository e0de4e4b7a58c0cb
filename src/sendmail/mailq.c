/*
 * mailq.c - the queue listing of mailq (see mailq.h). Runs as the
 * invoking user.
 */
#include "autoconfig.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "mailq.h"
#include "maildrop.h"
#include "queue.h"

struct mailq_state {
	FILE *out;
	size_t messages;
	uint64_t bytes;
};

static int
mailq_print_msg(void *arg, const struct queue_msg_info *m,
    const struct queue_rcpt_info *rcpts, size_t n_rcpts)
{
	struct mailq_state *st = arg;
	char qid[QUEUE_ID_LEN + 1], when[32];
	time_t t = (time_t)(m->arrival_ms / 1000);
	struct tm tm;

	queue_id_format(m->qid, qid);
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
	fprintf(st->out, "%s%c %8llu %s  %s\n", qid, m->hold ? '!' : ' ',
	    (unsigned long long)m->size, when,
	    *m->sender ? m->sender : "MAILER-DAEMON");
	for (size_t i = 0; i < n_rcpts; i++) {
		const struct queue_rcpt_info *r = &rcpts[i];

		if (r->state == QUEUE_RCPT_DELIVERED || r->state == QUEUE_RCPT_FAILED)
			continue;
		if (r->last_text[0] != '\0')
			fprintf(st->out, "%*s(%.200s)\n", 17, "", r->last_text);
		fprintf(st->out, "%*s%s\n", 17, "", r->address);
	}
	fputc('\n', st->out);
	st->messages++;
	st->bytes += m->size;
	return 0;
}

static size_t
count_maildrop(const char *dir)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d = opendir(dir);

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (is_maildrop_name(de->d_name))
			n++;
	closedir(d);
	return n;
}

int
mailq_print(struct queue *q, const char *maildrop_dir, FILE *out)
{
	struct mailq_state st = { out, 0, 0 };
	size_t dropped;

	if (q != NULL && queue_list(q, mailq_print_msg, &st) == -1)
		return -1;
	dropped = count_maildrop(maildrop_dir);
	if (st.messages == 0)
		fprintf(out, "Mail queue is empty\n");
	else
		fprintf(out, "-- %llu Kbytes in %zu Request%s.\n",
		    (unsigned long long)(st.bytes + 1023) / 1024, st.messages,
		    st.messages == 1 ? "" : "s");
	if (dropped > 0)
		fprintf(out, "-- %zu message%s in the maildrop, waiting for tern "
		    "to start.\n", dropped, dropped == 1 ? "" : "s");
	return 0;
}
