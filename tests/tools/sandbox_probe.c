/*
 * sandbox_probe.c - an LD_PRELOAD probe that tries, from inside a
 * running daemon, what a compromised one would try, and records what
 * the kernel answered. Built by tests/integration/test_sandbox.py; not
 * part of tern.
 *
 * Set TERN_PROBE_DIR. At start (before main, so before any sandbox)
 * the probe opens its result file, TERN_PROBE_DIR/PROGRAM.PID. Each
 * epoll_wait() (libevent calls it from the daemon's main thread every
 * loop turn, long after the sandbox is on) first checks whether
 * TERN_PROBE_DIR/go exists; the first time it does, the probe tries
 *   write   open(TERN_PROBE_WRITE, O_RDWR)       (the queue's data.mdb)
 *   read    open(TERN_PROBE_READ, O_RDONLY)      (a DKIM key)
 *   create  open(TERN_PROBE_CREATE_DIR/..., O_CREAT) (say /tmp)
 *   proof   open(TERN_PROBE_PROOF, O_RDONLY)     (what shows tern-qmgr
 *           a peer is ternctl: run_dir/private)
 *   connect a TCP connect to 127.0.0.1:TERN_PROBE_CONNECT_PORT
 *   fastopen the same by a TCP Fast Open sendto(MSG_FASTOPEN)
 *   udp     a UDP datagram to 127.0.0.1:TERN_PROBE_CONNECT_PORT
 *   netlink a netlink socket (a family no daemon needs)
 *   cleanup connect to TERN_PROBE_CLEANUP_SOCK (run_dir/private/cleanup)
 *           and begin a DSN (CLEANUP_SOURCE_BOUNCE) with a descriptor of
 *           TERN_PROBE_CLEANUP_PROOF (verp.key) opened for reading if it
 *           can, else O_PATH (all a sandboxed daemon can): the answer's
 *           code ("cleanup=250"), or "closed"
 *   signer  connect to TERN_PROBE_SIGNER_SOCK and have a message signed
 *           for TERN_PROBE_SIGNER_DOMAIN, the same way with a descriptor
 *           of TERN_PROBE_PROOF: "signer=signed", "signer=status2" or
 *           "closed"
 * (the IPC framing of src/lib/ipc.h; TERN_PROBE_IPC_VERSION; no daemon
 * tries its own socket, whose loop would be the one waiting)
 * and writes one line per try ("write=EACCES", "read=OK"), whether it
 * ran on the main thread, and "end". While it waits, epoll_wait's
 * timeout is capped at 100 ms so that an idle daemon looks soon.
 *
 * With TERN_PROBE_NO_LANDLOCK set, the Landlock system calls made
 * through syscall(3) fail with ENOSYS, as on a kernel without Landlock.
 * With TERN_PROBE_LANDLOCK_ABI=N, asking for Landlock's ABI version
 * answers N, as an older kernel would (the kernel takes the older
 * rulesets the daemon then builds).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <stdint.h>

typedef int (*epoll_wait_fn)(int, struct epoll_event *, int, int);
typedef long (*syscall_fn)(long, ...);

static int result_fd = -1;
static int done;

__attribute__((constructor)) static void
probe_init(void)
{
	const char *dir = getenv("TERN_PROBE_DIR");
	char path[4096];

	if (dir == NULL)
		return;
	snprintf(path, sizeof(path), "%s/%s.%ld", dir,
	    program_invocation_short_name, (long)getpid());
	result_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

static const char *
probe_result(int rc)
{
	const char *name;

	if (rc != -1)
		return "OK";
	name = strerrorname_np(errno);
	return name != NULL ? name : "?";
}

static void
probe_open(const char *what, const char *env, int flags)
{
	const char *path = getenv(env);
	int fd;

	if (path == NULL)
		return;
	fd = open(path, flags | O_CLOEXEC, 0600);
	dprintf(result_fd, "%s=%s\n", what, probe_result(fd));
	if (fd != -1)
		close(fd);
}

static void
probe_create(void)
{
	const char *dir = getenv("TERN_PROBE_CREATE_DIR");
	char path[4096];
	int fd;

	if (dir == NULL)
		return;
	snprintf(path, sizeof(path), "%s/tern-probe-%ld", dir, (long)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	dprintf(result_fd, "create=%s\n", probe_result(fd));
	if (fd != -1) {
		close(fd);
		unlink(path);
	}
}

/* The local service at 127.0.0.1:TERN_PROBE_CONNECT_PORT, if set. */
static int
probe_service(struct sockaddr_in *sin)
{
	const char *port = getenv("TERN_PROBE_CONNECT_PORT");

	if (port == NULL)
		return -1;
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((unsigned short)atoi(port));
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return 0;
}

static void
probe_connect(const char *what, int fast_open)
{
	struct sockaddr_in sin;
	int s, rc;

	if (probe_service(&sin) == -1)
		return;
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s == -1)
		rc = -1;
	else if (fast_open)
		rc = sendto(s, "x", 1, MSG_FASTOPEN, (struct sockaddr *)&sin,
		    sizeof(sin)) == -1 ? -1 : 0;
	else
		rc = connect(s, (struct sockaddr *)&sin, sizeof(sin));
	dprintf(result_fd, "%s=%s\n", what, probe_result(rc));
	if (s != -1)
		close(s);
}

/* ---- tries over tern's IPC framing (src/lib/ipc.h) ---- */

struct frame {
	unsigned char b[4096];
	size_t len;
};

static void
put(struct frame *f, const void *p, size_t n)
{
	if (f->len + n <= sizeof(f->b)) {
		memcpy(f->b + f->len, p, n);
		f->len += n;
	}
}

static void
put_u32(struct frame *f, uint32_t v)
{
	unsigned char b[4] = { v >> 24, v >> 16, v >> 8, v };

	put(f, b, 4);
}

static void
put_u8(struct frame *f, unsigned v)
{
	unsigned char b = (unsigned char)v;

	put(f, &b, 1);
}

static void
put_str(struct frame *f, const char *s)
{
	put_u32(f, (uint32_t)strlen(s) + 1);
	put(f, s, strlen(s) + 1);
}

/* Starts a frame; frame_end fills in the length. */
static void
frame_begin(struct frame *f, unsigned type, unsigned flags, uint32_t reqid)
{
	f->len = 0;
	put_u32(f, 0);
	put_u8(f, type >> 8);
	put_u8(f, type);
	put_u8(f, flags >> 8);
	put_u8(f, flags);
	put_u32(f, reqid);
}

static void
frame_end(struct frame *f)
{
	uint32_t n = (uint32_t)f->len - 12;
	unsigned char b[4] = { n >> 24, n >> 16, n >> 8, n };

	memcpy(f->b, b, 4);
}

static int
send_frame(int s, const struct frame *f, int fd)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { (void *)f->b, f->len };
	struct msghdr mh;
	struct cmsghdr *cm;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (fd != -1) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(s, &mh, MSG_NOSIGNAL) == (ssize_t)f->len ? 0 : -1;
}

static int
read_exact(int s, unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(s, p, n);

		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* The next frame other than HELLO: its type and first payload bytes;
 * -1 when the connection closed (or timed out). */
static int
read_frame(int s, unsigned char *payload, size_t size)
{
	unsigned char h[12], skip[512];

	for (;;) {
		uint32_t n;
		unsigned type;
		size_t want = size;

		if (read_exact(s, h, 12) == -1)
			return -1;
		n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
		    (uint32_t)h[2] << 8 | h[3];
		type = (unsigned)h[4] << 8 | h[5];
		memset(payload, 0, want);
		while (n > 0) {
			size_t k = n < sizeof(skip) ? n : sizeof(skip);

			if (read_exact(s, skip, k) == -1)
				return -1;
			if (want > 0) {
				size_t c = k < want ? k : want;

				memcpy(payload, skip, c);
				want = 0;
			}
			n -= (uint32_t)k;
		}
		if (type != 0x0001)
			return (int)type;
	}
}

/* Connects to the socket in sock_env and says HELLO; -1 on failure. */
static int
ipc_open(const char *sock_env)
{
	const char *path = getenv(sock_env);
	const char *version = getenv("TERN_PROBE_IPC_VERSION");
	struct sockaddr_un sun;
	struct timeval tv = { 10, 0 };
	struct frame f;
	int s;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s == -1)
		return -1;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		close(s);
		return -1;
	}
	frame_begin(&f, 0x0001, 0, 0);
	put_u32(&f, version != NULL ? (uint32_t)atol(version) : 0);
	put_str(&f, "probe");
	frame_end(&f);
	if (send_frame(s, &f, -1) == -1) {
		close(s);
		return -1;
	}
	return s;
}

/* The proof: opened for real if the sandbox lets us, else O_PATH. */
static int
open_proof(const char *env)
{
	const char *path = getenv(env);
	int fd;

	if (path == NULL)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		fd = open(path, O_PATH | O_CLOEXEC);
	return fd;
}

static int
is_program(const char *name)
{
	return strcmp(program_invocation_short_name, name) == 0;
}

static void
probe_cleanup(void)
{
	unsigned char p[2];
	struct frame f;
	int s, fd, type;

	if (getenv("TERN_PROBE_CLEANUP_SOCK") == NULL ||
	    is_program("tern-cleanup"))
		return;
	if ((s = ipc_open("TERN_PROBE_CLEANUP_SOCK")) == -1) {
		dprintf(result_fd, "cleanup=%s\n", probe_result(-1));
		return;
	}
	fd = open_proof("TERN_PROBE_CLEANUP_PROOF");
	frame_begin(&f, 0x0101, fd != -1 ? 1 : 0, 1);	/* CLEANUP_BEGIN */
	put_u8(&f, 4);			/* CLEANUP_SOURCE_BOUNCE */
	put_str(&f, "");		/* listener */
	put_str(&f, "localhost");
	put_str(&f, "");		/* address */
	put_str(&f, "");		/* helo */
	put_str(&f, "");		/* auth */
	put_u8(&f, 0);			/* trusted */
	put_str(&f, "");		/* tls */
	put_str(&f, "");		/* the null sender */
	put_u8(&f, 0);			/* 7bit */
	put_u8(&f, 0);			/* smtputf8 */
	put_u32(&f, 0);			/* u64 declared size */
	put_u32(&f, 0);
	put_u8(&f, 0);			/* ret */
	put_str(&f, "");		/* envid */
	frame_end(&f);
	type = send_frame(s, &f, fd) == -1 ? -1 : read_frame(s, p, sizeof(p));
	if (type == 0x0106)		/* CLEANUP_REPLY: u16 code */
		dprintf(result_fd, "cleanup=%u\n", (unsigned)p[0] << 8 | p[1]);
	else
		dprintf(result_fd, "cleanup=closed\n");
	if (fd != -1)
		close(fd);
	close(s);
}

static void
probe_signer(void)
{
	static const char message[] = "From: <forged@example.test>\r\n"
	    "To: <victim@dest.test>\r\nSubject: forged\r\n\r\nforged\r\n";
	const char *domain = getenv("TERN_PROBE_SIGNER_DOMAIN");
	unsigned char p[1];
	struct frame f;
	int s, fd, type;

	if (getenv("TERN_PROBE_SIGNER_SOCK") == NULL || domain == NULL ||
	    is_program("tern-signer"))
		return;
	if ((s = ipc_open("TERN_PROBE_SIGNER_SOCK")) == -1) {
		dprintf(result_fd, "signer=%s\n", probe_result(-1));
		return;
	}
	fd = open_proof("TERN_PROBE_PROOF");
	frame_begin(&f, 0x0201, fd != -1 ? 1 : 0, 1);	/* SIGN_BEGIN */
	put_str(&f, domain);
	frame_end(&f);
	type = send_frame(s, &f, fd);
	frame_begin(&f, 0x0202, 0, 1);			/* SIGN_DATA */
	put_u32(&f, sizeof(message) - 1);
	put(&f, message, sizeof(message) - 1);
	frame_end(&f);
	type = type == -1 ? -1 : send_frame(s, &f, -1);
	frame_begin(&f, 0x0203, 0, 1);			/* SIGN_END */
	frame_end(&f);
	type = type == -1 ? -1 : send_frame(s, &f, -1);
	type = type == -1 ? -1 : read_frame(s, p, sizeof(p));
	if (type == 0x0205 && p[0] == 0)	/* SIGN_REPLY, SIGN_OK */
		dprintf(result_fd, "signer=signed\n");
	else if (type == 0x0205)
		dprintf(result_fd, "signer=status%u\n", p[0]);
	else
		dprintf(result_fd, "signer=closed\n");
	if (fd != -1)
		close(fd);
	close(s);
}

static void
probe_udp(void)
{
	struct sockaddr_in sin;
	int s, rc;

	if (probe_service(&sin) == -1)
		return;
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	rc = s == -1 ? -1 : (int)sendto(s, "x", 1, 0, (struct sockaddr *)&sin,
	    sizeof(sin));
	dprintf(result_fd, "udp=%s\n", probe_result(rc == -1 ? -1 : 0));
	if (s != -1)
		close(s);
}

static void
probe_netlink(void)
{
	int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

	dprintf(result_fd, "netlink=%s\n", probe_result(s));
	if (s != -1)
		close(s);
}

static void
probe_run(void)
{
	dprintf(result_fd, "main_thread=%s\n", gettid() == getpid() ? "yes" :
	    "no");
	probe_open("write", "TERN_PROBE_WRITE", O_RDWR);
	probe_open("read", "TERN_PROBE_READ", O_RDONLY);
	probe_open("proof", "TERN_PROBE_PROOF", O_RDONLY);
	probe_create();
	probe_connect("connect", 0);
	probe_connect("fastopen", 1);
	probe_udp();
	probe_netlink();
	probe_cleanup();
	probe_signer();
	dprintf(result_fd, "end\n");
	close(result_fd);
	result_fd = -1;
}

long
syscall(long nr, ...)
{
	static syscall_fn real;
	long a[6];
	va_list ap;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "syscall");
	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	/* landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) */
	if (nr == SYS_landlock_create_ruleset && a[0] == 0 && a[2] == 1 &&
	    getenv("TERN_PROBE_LANDLOCK_ABI") != NULL)
		return atol(getenv("TERN_PROBE_LANDLOCK_ABI"));
	if (getenv("TERN_PROBE_NO_LANDLOCK") != NULL &&
	    (nr == SYS_landlock_create_ruleset || nr == SYS_landlock_add_rule ||
	    nr == SYS_landlock_restrict_self)) {
		errno = ENOSYS;
		return -1;
	}
	return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

int
epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
	static epoll_wait_fn real;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "epoll_wait");
	if (result_fd != -1 && !done) {
		char go[4096];

		snprintf(go, sizeof(go), "%s/go", getenv("TERN_PROBE_DIR"));
		if (access(go, F_OK) == 0) {
			done = 1;
			probe_run();
		} else if (timeout < 0 || timeout > 100)
			timeout = 100;
	}
	return real(epfd, events, maxevents, timeout);
}
