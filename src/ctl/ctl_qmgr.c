/*
 * ctl_qmgr.c - ternctl's access to the queue: a read-only LMDB handle for
 * listings (no lock taken on writers), and the control socket of
 * tern-qmgr (run_dir/private/qmgr) for every change, so the queue
 * manager's active set stays consistent with the store.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "listing.h"
#include "log.h"
#include "peer_proof.h"
#include "util.h"

struct tern_config *
ctl_load_config(const char *path)
{
	struct config_errors errs;
	struct tern_config *cfg = config_load(path, &errs);

	if (cfg == NULL) {
		config_errors_print(&errs, stderr);
		config_errors_free(&errs);
	}
	return cfg;
}

struct queue *
ctl_open_queue(const struct tern_config *cfg)
{
	struct queue_options o;
	struct queue *q;

	queue_options_from_config(&o, cfg, QUEUE_OPEN_READONLY);
	q = queue_open(&o);
	if (q == NULL)
		fprintf(stderr, "ternctl: cannot open the queue in %s: %s\n",
		    cfg->server.queue_dir, queue_strerror(queue_last_error()));
	return q;
}

void
ctl_format_reply(char *buf, size_t size, uint16_t code, const char *status,
    const char *text)
{
	queue_format_reply(buf, size, code, status, text);
}

void
ctl_format_time(int64_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char tmp[32];

	gmtime_r(&t, &tm);
	strftime(tmp, sizeof(tmp), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03d", tmp, (int)(ms % 1000));
}

/* To tern-qmgr's socket; a qmgr that closed it (it refuses other users)
 * is an error to report, not a SIGPIPE. */
static int
write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
read_all(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int
send_frame(int fd, struct ipc_out *o)
{
	const uint8_t *b;
	size_t len;
	int rc;

	b = ipc_out_bytes(o, &len);
	rc = write_all(fd, b, len);
	ipc_out_free(o);
	return rc;
}

/*
 * tern-qmgr takes a change only with a descriptor of run_dir/private,
 * opened for reading: that shows it is ternctl, not a daemon of tern's
 * user in its sandbox (which cannot open it). A user who cannot open it
 * is refused by qmgr all the same, and hears it from qmgr.
 */
static int
send_request(int fd, const struct tern_config *cfg, struct ipc_out *req)
{
	int proof = peer_proof_open_private(cfg->server.run_dir);
	const uint8_t *b;
	size_t len;
	ssize_t w;

	if (proof == -1)
		return send_frame(fd, req);
	ipc_out_set_fd(req, proof);	/* closed by ipc_out_free */
	b = ipc_out_bytes(req, &len);
	w = peer_proof_sendmsg(fd, b, len, proof);
	/* The descriptor went with the first byte; the rest follows. */
	if (w > 0 && (size_t)w < len)
		w = write_all(fd, b + w, len - (size_t)w) == -1 ? -1 : (ssize_t)len;
	ipc_out_free(req);
	return w == (ssize_t)len ? 0 : -1;
}

/* How long ternctl waits for an answer of tern-qmgr. */
#define QMGR_ANSWER_SECONDS	120
/* Changes sent ahead of their answers on one connection: enough to keep
 * qmgr's group commits full, few enough that its replies never fill the
 * socket while ternctl is still writing. */
#define QMGR_WINDOW		64

/* A blocking connection to tern-qmgr's control socket, HELLO sent; -1
 * after printing why. */
static int
qmgr_connect(const struct tern_config *cfg)
{
	char path[4096];
	struct ipc_out *hello;
	struct timeval tv = { QMGR_ANSWER_SECONDS, 0 };
	int fd, fl;

	snprintf(path, sizeof(path), "%s/private/qmgr", cfg->server.run_dir);
	fd = ipc_connect_unix(path);
	if (fd == -1) {
		fprintf(stderr, "ternctl: cannot reach tern-qmgr at %s: %s (is ternd "
		    "running?)\n", path, strerror(errno));
		return -1;
	}
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	hello = ipc_out_new(IPC_HELLO, 0);
	ipc_put_u32(hello, IPC_VERSION);
	ipc_put_str(hello, "ternctl");
	if (send_frame(fd, hello) == -1) {
		fprintf(stderr, "ternctl: sending to tern-qmgr: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

struct qmgr_reply {
	uint32_t reqid;
	uint8_t status;			/* enum ctl_status */
	uint64_t count;
	uint8_t *payload;		/* holds text */
	const char *text;
};

/* The next CTL_REPLY on fd (free its payload); -1 after printing why. */
static int
qmgr_read_reply(int fd, struct qmgr_reply *r)
{
	for (;;) {
		uint8_t hdrb[IPC_HEADER_SIZE];
		struct ipc_header hdr;
		struct ipc_msg m;
		const char *why;

		errno = 0;
		if (read_all(fd, hdrb, sizeof(hdrb)) == -1 ||
		    ipc_header_decode(hdrb, sizeof(hdrb), &hdr, &why) != 1) {
			/* tern-qmgr holds changes while the queue is full. */
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				fprintf(stderr, "ternctl: no answer from tern-qmgr "
				    "within %d s (is the queue full? see the "
				    "log)\n", QMGR_ANSWER_SECONDS);
			else
				fprintf(stderr, "ternctl: no answer from "
				    "tern-qmgr\n");
			return -1;
		}
		r->payload = xmalloc(hdr.length + 1);
		if (read_all(fd, r->payload, hdr.length) == -1) {
			fprintf(stderr, "ternctl: tern-qmgr closed the connection\n");
			free(r->payload);
			return -1;
		}
		if (hdr.type != IPC_CTL_REPLY) {
			free(r->payload);
			continue;
		}
		memset(&m, 0, sizeof(m));
		m.type = hdr.type;
		m.reqid = hdr.reqid;
		m.data = r->payload;
		m.len = hdr.length;
		m.fd = -1;
		r->reqid = hdr.reqid;
		if (ipc_get_u8(&m, &r->status) == -1 ||
		    ipc_get_u64(&m, &r->count) == -1 ||
		    ipc_get_str(&m, &r->text) == -1 || ipc_msg_end(&m) == -1) {
			fprintf(stderr, "ternctl: malformed reply from tern-qmgr\n");
			free(r->payload);
			return -1;
		}
		return 0;
	}
}

int
ctl_qmgr_request(const struct tern_config *cfg, struct ipc_out *req,
    uint64_t *count)
{
	struct qmgr_reply r;
	int fd = qmgr_connect(cfg);

	if (fd == -1) {
		ipc_out_free(req);
		return 1;
	}
	if (send_request(fd, cfg, req) == -1) {
		fprintf(stderr, "ternctl: sending to tern-qmgr: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	if (qmgr_read_reply(fd, &r) == -1) {
		close(fd);
		return 1;
	}
	if (r.status == CTL_OK)
		printf("%s\n", r.text);
	else
		fprintf(stderr, "ternctl: %s\n", r.text);
	if (count != NULL)
		*count = r.count;
	free(r.payload);
	close(fd);
	return r.status == CTL_OK ? 0 : 1;
}

int
ctl_qmgr_each(const struct tern_config *cfg, uint16_t type, char **ids,
    size_t n, bool quiet_notfound)
{
	size_t sent = 0, answered = 0;
	int fd, rc = 0;

	if (n == 0)
		return 0;
	if ((fd = qmgr_connect(cfg)) == -1)
		return 1;
	while (answered < n) {
		struct qmgr_reply r;

		/* The first request carries the proof, the rest follow it. */
		while (sent < n && sent - answered < QMGR_WINDOW) {
			struct ipc_out *o = ipc_out_new(type, (uint32_t)sent + 1);

			ipc_put_str(o, ids[sent]);
			if ((sent == 0 ? send_request(fd, cfg, o)
			    : send_frame(fd, o)) == -1) {
				fprintf(stderr, "ternctl: sending to tern-qmgr: "
				    "%s\n", strerror(errno));
				close(fd);
				return 1;
			}
			sent++;
		}
		if (qmgr_read_reply(fd, &r) == -1) {
			close(fd);
			return 1;
		}
		answered++;
		if (r.status == CTL_OK)
			printf("%s\n", r.text);
		else if (!(quiet_notfound && r.status == CTL_NOTFOUND)) {
			fprintf(stderr, "ternctl: %s\n", r.text);
			rc = 1;
		}
		free(r.payload);
	}
	close(fd);
	return rc;
}
