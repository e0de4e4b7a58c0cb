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
 * and writes one line per try ("write=EACCES", "read=OK"), whether it
 * ran on the main thread, and "end". While it waits, epoll_wait's
 * timeout is capped at 100 ms so that an idle daemon looks soon.
 *
 * With TERN_PROBE_NO_LANDLOCK set, the Landlock system calls made
 * through syscall(3) fail with ENOSYS, as on a kernel without Landlock.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
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
#include <unistd.h>

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

static void
probe_connect(const char *what, int fast_open)
{
	const char *port = getenv("TERN_PROBE_CONNECT_PORT");
	struct sockaddr_in sin;
	int s, rc;

	if (port == NULL)
		return;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)atoi(port));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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
