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

int
ctl_qmgr_request(const struct tern_config *cfg, struct ipc_out *req,
    uint64_t *count)
{
	char path[4096];
	struct ipc_out *hello;
	struct timeval tv = { 120, 0 };
	int fd, fl;

	snprintf(path, sizeof(path), "%s/private/qmgr", cfg->server.run_dir);
	fd = ipc_connect_unix(path);
	if (fd == -1) {
		fprintf(stderr, "ternctl: cannot reach tern-qmgr at %s: %s (is ternd "
		    "running?)\n", path, strerror(errno));
		ipc_out_free(req);
		return 1;
	}
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	hello = ipc_out_new(IPC_HELLO, 0);
	ipc_put_u32(hello, IPC_VERSION);
	ipc_put_str(hello, "ternctl");
	if (send_frame(fd, hello) == -1 || send_request(fd, cfg, req) == -1) {
		fprintf(stderr, "ternctl: sending to tern-qmgr: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	for (;;) {
		uint8_t hdrb[IPC_HEADER_SIZE], *payload;
		struct ipc_header hdr;
		struct ipc_msg m;
		const char *why, *text;
		uint8_t status;
		uint64_t n;

		errno = 0;
		if (read_all(fd, hdrb, sizeof(hdrb)) == -1 ||
		    ipc_header_decode(hdrb, sizeof(hdrb), &hdr, &why) != 1) {
			/* tern-qmgr holds changes while the queue is full. */
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				fprintf(stderr, "ternctl: no answer from tern-qmgr "
				    "within %ld s (is the queue full? see the "
				    "log)\n", (long)tv.tv_sec);
			else
				fprintf(stderr, "ternctl: no answer from "
				    "tern-qmgr\n");
			close(fd);
			return 1;
		}
		payload = xmalloc(hdr.length + 1);
		if (read_all(fd, payload, hdr.length) == -1) {
			fprintf(stderr, "ternctl: tern-qmgr closed the connection\n");
			free(payload);
			close(fd);
			return 1;
		}
		if (hdr.type != IPC_CTL_REPLY) {
			free(payload);
			continue;
		}
		memset(&m, 0, sizeof(m));
		m.type = hdr.type;
		m.reqid = hdr.reqid;
		m.data = payload;
		m.len = hdr.length;
		m.fd = -1;
		if (ipc_get_u8(&m, &status) == -1 || ipc_get_u64(&m, &n) == -1 ||
		    ipc_get_str(&m, &text) == -1 || ipc_msg_end(&m) == -1) {
			fprintf(stderr, "ternctl: malformed reply from tern-qmgr\n");
			free(payload);
			close(fd);
			return 1;
		}
		if (status == CTL_OK)
			printf("%s\n", text);
		else
			fprintf(stderr, "ternctl: %s\n", text);
		if (count != NULL)
			*count = n;
		free(payload);
		close(fd);
		return status == CTL_OK ? 0 : 1;
	}
}
