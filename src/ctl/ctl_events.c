/*
 * ctl_events.c - ternctl events (the event log as JSON lines, jansson)
 * and ternctl trace (one message's journey in readable lines, from its
 * events). Both read the store read-only.
 */
#include "autoconfig.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "util.h"

static volatile sig_atomic_t stop_following;

static void
on_signal(int sig)
{
	(void)sig;
	stop_following = 1;
}

/* "2026-11-26T23:40:00Z" or "2026-11-26 23:40:00" (UTC) -> unix ms. */
static int
parse_utc(const char *s, int64_t *ms)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end == NULL)
		end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
	if (end == NULL || !(*end == '\0' || strcmp(end, "Z") == 0))
		return -1;
	*ms = (int64_t)timegm(&tm) * 1000;
	return 0;
}

struct ev_filter {
	int64_t since_ms;		/* events at or after, 0 all */
	size_t n;
};

static int
event_json_cb(void *arg, const struct queue_event *e)
{
	struct ev_filter *f = arg;
	char id[QUEUE_ID_LEN + 1], t[32], iso[40];
	const char *type = queue_event_type_name(e->type);
	json_t *o;
	char *line;

	if (e->time_ms < f->since_ms)
		return 0;
	ctl_format_time(e->time_ms, t, sizeof(t));
	/* "2026-11-26 23:40:01.123" -> "2026-11-26T23:40:01.123Z" */
	snprintf(iso, sizeof(iso), "%.10sT%sZ", t, t + 11);
	if (e->qid != 0)
		queue_id_format(e->qid, id);
	else
		id[0] = '\0';
	o = json_pack("{s:I, s:s, s:I, s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:s, "
	    "s:i, s:s}",
	    "seq", (json_int_t)e->seq, "time", iso, "time_ms",
	    (json_int_t)e->time_ms, "type", type ? type : "unknown",
	    "queue_id", id, "rcpt_index", (int)e->rcpt_index,
	    "recipient", e->recipient, "code", (int)e->code,
	    "status", e->status, "text", e->text,
	    "remote_host", e->remote_host, "attempt", (int)e->attempt,
	    "bounce_class", e->bounce_class);
	if (o == NULL)
		return 0;
	line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (line != NULL) {
		puts(line);
		free(line);
	}
	json_decref(o);
	f->n++;
	return 0;
}

int
cmd_events(const char *config_path, int argc, char **argv)
{
	struct tern_config *cfg;
	struct queue *q;
	struct ev_filter f;
	uint64_t from = 1, next;
	bool follow = false;

	memset(&f, 0, sizeof(f));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0) {
			follow = true;
		} else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
			const char *s = argv[++i];
			int64_t d;

			/* A number is a sequence number; a duration ("10m")
			 * means that long ago; else a UTC time. */
			if (parse_uint64(s, UINT64_MAX, &from) == 0)
				continue;
			from = 1;
			if (config_parse_duration(s, &d) == 0) {
				f.since_ms = queue_now_ms() - d * 1000;
			} else if (parse_utc(s, &f.since_ms) == -1) {
				fprintf(stderr, "ternctl: --since takes a sequence "
				    "number, a duration (10m, 2h) or a UTC time "
				    "(2026-11-26T23:40:00Z), not '%s'\n", s);
				return 2;
			}
		} else {
			fprintf(stderr, "usage: ternctl events [--follow] "
			    "[--since SEQ|DURATION|TIME]\n");
			return 2;
		}
	}
	if ((cfg = ctl_load_config(config_path)) == NULL)
		return 1;
	if ((q = ctl_open_queue(cfg)) == NULL) {
		config_free(cfg);
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, on_signal);
	for (;;) {
		size_t before = f.n;

		if (queue_events_read(q, from, 10000, event_json_cb, &f, &next) == -1 &&
		    queue_last_error() != QUEUE_ERR_CORRUPT) {
			fprintf(stderr, "ternctl: reading events: %s\n",
			    queue_strerror(queue_last_error()));
			break;
		}
		fflush(stdout);
		if (ferror(stdout))
			break;
		from = next;
		if (f.n > before)
			continue;
		if (!follow || stop_following)
			break;
		usleep(200000);
		if (stop_following)
			break;
	}
	queue_close(q);
	config_free(cfg);
	return 0;
}

struct trace {
	size_t n;
};

static int
trace_cb(void *arg, const struct queue_event *e)
{
	struct trace *tr = arg;
	const char *type = queue_event_type_name(e->type);
	char t[32];

	ctl_format_time(e->time_ms, t, sizeof(t));
	printf("%s  %-10s", t, type ? type : "unknown");
	if (e->recipient[0])
		printf(" <%s>", e->recipient);
	if (e->attempt > 0)
		printf(" attempt %u", e->attempt);
	if (e->remote_host[0])
		printf(" via %s", e->remote_host);
	if (e->code != 0 || e->status[0] || e->text[0]) {
		char reply[QUEUE_TEXT_MAX + 64];

		ctl_format_reply(reply, sizeof(reply), e->code, e->status,
		    e->text);
		printf(": %s", reply);
	}
	putchar('\n');
	tr->n++;
	return 0;
}

int
cmd_trace(const char *config_path, int argc, char **argv)
{
	struct tern_config *cfg;
	struct queue *q;
	struct queue_loaded_msg *lm;
	struct trace tr = { 0 };
	uint64_t qid;
	int rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: ternctl trace ID\n");
		return 2;
	}
	if (queue_id_parse(argv[1], &qid) == -1) {
		fprintf(stderr, "ternctl: bad queue id '%s'\n", argv[1]);
		return 2;
	}
	if ((cfg = ctl_load_config(config_path)) == NULL)
		return 1;
	if ((q = ctl_open_queue(cfg)) == NULL) {
		config_free(cfg);
		return 1;
	}
	printf("%s:\n", argv[1]);
	if (queue_events_for(q, qid, trace_cb, &tr) == -1 &&
	    queue_last_error() != QUEUE_ERR_CORRUPT) {
		fprintf(stderr, "ternctl: reading events: %s\n",
		    queue_strerror(queue_last_error()));
		rc = 1;
	}
	if (queue_load(q, qid, &lm) == 0) {
		uint32_t pending = lm->info.n_rcpt - lm->info.n_delivered -
		    lm->info.n_failed;

		printf("now: in the queue, %u recipient(s) pending%s\n", pending,
		    lm->info.hold ? ", held" : "");
		queue_loaded_free(lm);
	} else if (tr.n > 0) {
		printf("now: no longer in the queue\n");
	}
	if (tr.n == 0 && rc == 0) {
		fprintf(stderr, "ternctl: no events for %s (unknown, or older than "
		    "event_retention)\n", argv[1]);
		rc = 1;
	}
	queue_close(q);
	config_free(cfg);
	return rc;
}
