/*
 * cleanup_client - a small blocking client of tern-cleanup for tests: it
 * speaks the CLEANUP_* conversation of ipc.h over run_dir/private/cleanup
 * and prints every reply, one line each (BEGIN's queue id is provisional,
 * END's the committed one):
 *   BEGIN 250 2.1.0 Ok provisional=0190F3A1C2B40123
 *   RCPT <a@b> 550 5.7.1 <a@b>: Recipient address rejected: ...
 *   END 250 2.0.0 Ok: queued as 0190F3A1C2B40123 qid=0190F3A1C2B40123
 *
 * usage: cleanup_client [options] SOCKET FILE
 *   -f SENDER         envelope sender ("" the null sender; default "")
 *   -r RCPT           a recipient (repeatable); -r 'a@b;rfc822;a@b;2' adds
 *                     ORCPT and NOTIFY bits
 *   -s SOURCE         1 submission (default) .. 5 http
 *   -b BODY           0 7bit (default), 1 8bitmime, 2 binarymime
 *   -U                SMTPUTF8
 *   -a USER           auth user;  -t TLS  tls text;  -H HELO
 *   -T                claim a trusted network;  -L NAME  listener name
 *   -c NAME -i ADDR   client name and address
 *   -e ENVID -R RET   DSN ENVID and RET (0..2);  -z SIZE  declared size
 *   -k N              DATA chunk size (default 65536)
 *   -n N              send the message N times, one transaction each
 *   -P PATH           send a descriptor of PATH with the first frame, the
 *                     proof of who we are (peer_proof.h); default the
 *                     socket's directory (run_dir/private), "" none
 * Exit status: 0 when every END got 2xx, 1 when one was refused, 2 on
 * a usage or connection error.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc.h"
#include "peer_proof.h"
#include "util.h"

static int sock = -1;

static void
die(const char *what)
{
	fprintf(stderr, "cleanup_client: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int proof_fd = -1;	/* sent with the first frame after HELLO */

static void
send_out(struct ipc_out *o)
{
	size_t len, off = 0;
	const uint8_t *b;

	if (proof_fd != -1) {
		ssize_t n;

		ipc_out_set_fd(o, proof_fd);	/* closed by ipc_out_free */
		b = ipc_out_bytes(o, &len);
		n = peer_proof_sendmsg(sock, b, len, proof_fd);
		if (n <= 0)
			die("sendmsg");
		off = (size_t)n;
		proof_fd = -1;
	}
	b = ipc_out_bytes(o, &len);

	while (off < len) {
		ssize_t n = write(sock, b + off, len - off);

		if (n <= 0)
			die("write");
		off += (size_t)n;
	}
	ipc_out_free(o);
}

static void
read_full(void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = read(sock, (uint8_t *)buf + off, len - off);

		if (n == 0) {
			fprintf(stderr, "cleanup_client: connection closed\n");
			exit(2);
		}
		if (n < 0)
			die("read");
		off += (size_t)n;
	}
}

/* Reads one frame; the payload is malloc'ed into *payload. */
static void
read_frame(struct ipc_header *h, uint8_t **payload)
{
	uint8_t hb[IPC_HEADER_SIZE];
	const char *why = NULL;

	read_full(hb, sizeof(hb));
	if (ipc_header_decode(hb, sizeof(hb), h, &why) != 1) {
		fprintf(stderr, "cleanup_client: bad frame: %s\n", why);
		exit(2);
	}
	*payload = xmalloc(h->length + 1);
	read_full(*payload, h->length);
}

/* Waits for the reply to reqid; prints it with a label; returns the code. */
static unsigned
read_reply(const char *label, uint32_t reqid)
{
	for (;;) {
		struct ipc_header h;
		struct ipc_msg m;
		uint8_t *p;
		uint16_t code;
		const char *status, *text, *qid;

		read_frame(&h, &p);
		if (h.type != IPC_CLEANUP_REPLY || h.reqid != reqid) {
			free(p);
			continue;
		}
		memset(&m, 0, sizeof(m));
		m.data = p;
		m.len = h.length;
		m.fd = -1;
		if (ipc_get_u16(&m, &code) == -1 || ipc_get_str(&m, &status) == -1 ||
		    ipc_get_str(&m, &text) == -1 || ipc_get_str(&m, &qid) == -1 ||
		    ipc_msg_end(&m) == -1) {
			fprintf(stderr, "cleanup_client: malformed reply\n");
			exit(2);
		}
		printf("%s %u %s %s%s%s\n", label, code, status, text,
		    !*qid ? "" : strcmp(label, "BEGIN") == 0 ? " provisional=" :
		    " qid=", qid);
		fflush(stdout);
		free(p);
		return code;
	}
}

struct rcpt {
	char *address;
	char *orcpt;
	uint8_t notify;
};

int
main(int argc, char **argv)
{
	const char *sender = "", *auth = "", *tls = "", *helo = "client.test";
	const char *cname = "client.test", *caddr = "127.0.0.1", *envid = "";
	const char *listener = "test";
	const char *proof = NULL;
	bool trusted = false;
	unsigned source = 1, body = 0, ret = 0, count = 1;
	size_t chunk = IPC_DATA_CHUNK, n_rcpts = 0, len = 0;
	uint64_t declared = 0;
	bool smtputf8 = false;
	struct rcpt rcpts[256];
	struct sockaddr_un sun;
	char *content = NULL;
	FILE *f;
	int ch, status = 0;
	uint32_t reqid = 1;

	/* A cleanup that dies mid-stream must give EPIPE and exit 2, not
	 * kill the client with SIGPIPE (which tests read as a crash). */
	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt(argc, argv, "f:r:s:b:Ua:t:H:c:i:e:R:z:k:n:TL:P:")) != -1) {
		switch (ch) {
		case 'f': sender = optarg; break;
		case 'r': {
			char *a = xstrdup(optarg), *o = strchr(a, ';');

			if (n_rcpts == 256)
				return 2;
			rcpts[n_rcpts].address = a;
			rcpts[n_rcpts].orcpt = xstrdup("");
			rcpts[n_rcpts].notify = 0;
			if (o != NULL) {
				char *sc;

				*o++ = '\0';
				sc = strrchr(o, ';');
				if (sc != NULL) {
					*sc = '\0';
					rcpts[n_rcpts].notify = (uint8_t)atoi(sc + 1);
				}
				free(rcpts[n_rcpts].orcpt);
				rcpts[n_rcpts].orcpt = xstrdup(o);
			}
			n_rcpts++;
			break;
		}
		case 's': source = (unsigned)atoi(optarg); break;
		case 'b': body = (unsigned)atoi(optarg); break;
		case 'U': smtputf8 = true; break;
		case 'a': auth = optarg; break;
		case 't': tls = optarg; break;
		case 'H': helo = optarg; break;
		case 'c': cname = optarg; break;
		case 'i': caddr = optarg; break;
		case 'e': envid = optarg; break;
		case 'R': ret = (unsigned)atoi(optarg); break;
		case 'z': declared = strtoull(optarg, NULL, 10); break;
		case 'k': chunk = strtoul(optarg, NULL, 10); break;
		case 'n': count = (unsigned)atoi(optarg); break;
		case 'T': trusted = true; break;
		case 'L': listener = optarg; break;
		case 'P': proof = optarg; break;
		default:
			fprintf(stderr, "usage: cleanup_client [options] SOCKET FILE\n");
			return 2;
		}
	}
	if (argc - optind != 2 || chunk == 0 || chunk > IPC_DATA_CHUNK) {
		fprintf(stderr, "usage: cleanup_client [options] SOCKET FILE\n");
		return 2;
	}
	if ((f = fopen(argv[optind + 1], "rb")) == NULL)
		die(argv[optind + 1]);
	for (;;) {
		content = xrealloc(content, len + 65536);
		size_t n = fread(content + len, 1, 65536, f);

		len += n;
		if (n == 0)
			break;
	}
	fclose(f);

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	tern_strlcpy(sun.sun_path, argv[optind], sizeof(sun.sun_path));
	if ((sock = socket(AF_UNIX, SOCK_STREAM, 0)) == -1)
		die("socket");
	if (connect(sock, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		die(argv[optind]);
	{
		struct ipc_out *o = ipc_out_new(IPC_HELLO, 0);
		struct ipc_header h;
		uint8_t *p;

		ipc_put_u32(o, IPC_VERSION);
		ipc_put_str(o, "cleanup_client");
		send_out(o);
		read_frame(&h, &p);
		free(p);
		if (h.type != IPC_HELLO) {
			fprintf(stderr, "cleanup_client: no HELLO from the server\n");
			return 2;
		}
	}
	{
		/* Default: the socket's directory (run_dir/private). */
		char *dir = xstrdup(argv[optind]), *slash = strrchr(dir, '/');

		if (slash != NULL)
			*slash = '\0';
		if (proof == NULL)
			proof = slash != NULL ? dir : ".";
		if (*proof != '\0' &&
		    (proof_fd = open(proof, O_RDONLY | O_CLOEXEC)) == -1)
			die(proof);
		free(dir);
	}

	for (unsigned k = 0; k < count; k++, reqid++) {
		struct ipc_out *o = ipc_out_new(IPC_CLEANUP_BEGIN, reqid);
		unsigned code;

		ipc_put_u8(o, (uint8_t)source);
		ipc_put_str(o, listener);
		ipc_put_str(o, cname);
		ipc_put_str(o, caddr);
		ipc_put_str(o, helo);
		ipc_put_str(o, auth);
		ipc_put_bool(o, trusted);
		ipc_put_str(o, tls);
		ipc_put_str(o, sender);
		ipc_put_u8(o, (uint8_t)body);
		ipc_put_bool(o, smtputf8);
		ipc_put_u64(o, declared);
		ipc_put_u8(o, (uint8_t)ret);
		ipc_put_str(o, envid);
		send_out(o);
		code = read_reply("BEGIN", reqid);
		if (code >= 300) {
			status = 1;
			continue;
		}
		for (size_t i = 0; i < n_rcpts; i++) {
			char label[600];

			o = ipc_out_new(IPC_CLEANUP_RCPT, reqid);
			ipc_put_str(o, rcpts[i].address);
			ipc_put_str(o, rcpts[i].orcpt);
			ipc_put_u8(o, rcpts[i].notify);
			send_out(o);
			snprintf(label, sizeof(label), "RCPT <%s>", rcpts[i].address);
			(void)read_reply(label, reqid);
		}
		for (size_t off = 0; off < len; off += chunk) {
			size_t n = len - off < chunk ? len - off : chunk;

			o = ipc_out_new(IPC_CLEANUP_DATA, reqid);
			ipc_put_data(o, content + off, n);
			send_out(o);
		}
		send_out(ipc_out_new(IPC_CLEANUP_END, reqid));
		code = read_reply("END", reqid);
		if (code >= 300)
			status = 1;
	}
	free(content);
	for (size_t i = 0; i < n_rcpts; i++) {
		free(rcpts[i].address);
		free(rcpts[i].orcpt);
	}
	close(sock);
	return status;
}
