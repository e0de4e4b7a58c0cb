/*
 * sign_client - a test client of tern-signer built on signer_client:
 * signs the message in FILE for DOMAIN, with -n jobs in flight at once on
 * one connection (their chunks interleaved), and prints for each job a
 * line "job=I status=S error=TEXT headers=N" on stderr. With -o DIR every
 * signed message (signature fields, then the message) goes to DIR/I.eml;
 * without it the first one goes to stdout. -a aborts every other job
 * (odd I) after its data, to check aborts do not disturb the rest; -t
 * sets the reply timeout in seconds; -w MS holds back the END of every
 * job but the first until MS milliseconds after the first answer (so a
 * test can act while jobs are surely in flight).
 * Exit status 0 when every job that was not aborted answered.
 */
#include "autoconfig.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "signer_client.h"
#include "util.h"

struct job_slot {
	int index;
	struct signer_job *job;
	bool done;
	bool aborted;
};

static struct event_base *base;
static struct signer_client *sc;
static char *message;
static size_t message_len;
static const char *domain;
static const char *out_dir;
static struct job_slot *slots;
static int n_jobs, n_open;
static size_t chunk = 10000;
static bool abort_odd;
static unsigned timeout_sec = 30;
static long hold_ms;
static struct event *ev_hold;

static void end_jobs(int from);

static void
done_cb(void *arg, int status, const char *error, const char *const *headers,
    size_t n_headers)
{
	struct job_slot *slot = arg;
	FILE *out = stdout;
	char path[4096];

	fprintf(stderr, "job=%d status=%d error=%s headers=%zu\n", slot->index,
	    status, error, n_headers);
	if (out_dir != NULL) {
		snprintf(path, sizeof(path), "%s/%d.eml", out_dir, slot->index);
		out = fopen(path, "wb");
		if (out == NULL) {
			perror(path);
			exit(1);
		}
	}
	if (out_dir != NULL || slot->index == 0) {
		for (size_t i = 0; i < n_headers; i++)
			fprintf(out, "%s\r\n", headers[i]);
		fwrite(message, 1, message_len, out);
		fflush(out);
	}
	if (out != stdout)
		fclose(out);
	slot->done = true;
	if (hold_ms > 0 && slot->index == 0 && n_jobs > 1) {
		struct timeval tv = { hold_ms / 1000, (hold_ms % 1000) * 1000 };

		evtimer_add(ev_hold, &tv);
	}
	if (--n_open == 0)
		event_base_loopexit(base, NULL);
}

static void
hold_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	end_jobs(1);
}

static void
end_jobs(int from)
{
	for (int i = from; i < n_jobs; i++) {
		if (abort_odd && i % 2 == 1) {
			signer_job_abort(slots[i].job);
			slots[i].aborted = true;
			n_open--;
			continue;
		}
		if (hold_ms > 0 && from == 0 && i > 0)
			break;		/* hold_cb ends the others */
		signer_job_end(slots[i].job);
	}
}

static void
run_jobs(void)
{
	for (int i = 0; i < n_jobs; i++) {
		slots[i].index = i;
		slots[i].job = signer_job_begin(sc, domain, done_cb, &slots[i]);
	}
	/* Interleave the chunks of every job on the one connection. */
	for (size_t off = 0; off < message_len; off += chunk) {
		size_t n = message_len - off < chunk ? message_len - off : chunk;

		for (int i = 0; i < n_jobs; i++)
			signer_job_data(slots[i].job, message + off, n);
	}
	n_open = n_jobs;
	end_jobs(0);
	if (n_open == 0)
		event_base_loopexit(base, NULL);
}

static void
wait_up_cb(evutil_socket_t fd, short what, void *arg)
{
	struct event *ev = *(struct event **)arg;
	struct timeval tv = { 0, 10000 };

	(void)fd;
	(void)what;
	if (!signer_client_is_up(sc)) {
		event_add(ev, &tv);
		return;
	}
	run_jobs();
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (f == NULL) {
		perror(path);
		exit(2);
	}
	do {
		if (n == cap) {
			cap = cap == 0 ? 65536 : cap * 2;
			buf = xrealloc(buf, cap);
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
	} while (r > 0);
	fclose(f);
	*len = n;
	return buf;
}

int
main(int argc, char **argv)
{
	struct event *ev;
	struct timeval give_up = { 120, 0 };
	int ch, rc = 0, proof_fd = -1;
	const char *proof = NULL;

	n_jobs = 1;
	while ((ch = getopt(argc, argv, "n:o:c:at:w:P:")) != -1) {
		switch (ch) {
		case 'n': n_jobs = atoi(optarg); break;
		case 'o': out_dir = optarg; break;
		case 'c': chunk = (size_t)atol(optarg); break;
		case 'a': abort_odd = true; break;
		case 't': timeout_sec = (unsigned)atoi(optarg); break;
		case 'w': hold_ms = atol(optarg); break;
		case 'P': proof = optarg; break;
		default: goto usage;
		}
	}
	if (argc - optind != 3 || n_jobs < 1 || chunk == 0)
		goto usage;
	domain = argv[optind + 1];
	message = read_file(argv[optind + 2], &message_len);
	slots = xcalloc((size_t)n_jobs, sizeof(*slots));

	base = event_base_new();
	{
		/* The proof tern-signer asks for (peer_proof.h): by default
		 * the socket's directory, run_dir/private; -P "" none. */
		char *dir = xstrdup(argv[optind]), *slash = strrchr(dir, '/');

		if (slash != NULL)
			*slash = '\0';
		if (proof == NULL)
			proof = slash != NULL ? dir : ".";
		if (*proof != '\0' &&
		    (proof_fd = open(proof, O_RDONLY | O_CLOEXEC)) == -1) {
			fprintf(stderr, "sign_client: %s: %s\n", proof,
			    strerror(errno));
			return 2;
		}
		sc = signer_client_new(base, argv[optind], proof_fd);
		free(dir);
	}
	signer_client_set_timeout(sc, timeout_sec);
	ev = evtimer_new(base, wait_up_cb, &ev);
	ev_hold = evtimer_new(base, hold_cb, NULL);
	event_active(ev, 0, 0);
	event_base_loopexit(base, &give_up);
	event_base_dispatch(base);
	for (int i = 0; i < n_jobs; i++)
		if (!slots[i].done && !slots[i].aborted) {
			fprintf(stderr, "job=%d: no answer\n", i);
			rc = 1;
		}
	signer_client_free(sc);
	event_free(ev);
	event_free(ev_hold);
	event_base_free(base);
	free(slots);
	free(message);
	return rc;
usage:
	fprintf(stderr, "usage: sign_client [-n jobs] [-c chunk] [-o dir] [-a] "
	    "[-t timeout] [-w ms] [-P proof] SOCKET DOMAIN FILE\n");
	return 2;
}
