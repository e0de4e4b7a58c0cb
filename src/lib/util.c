/*
 * util.c - allocators that never fail, bounded strings, clocks and fds.
 * Linked into every tern program.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Out of memory is not a condition any caller can handle better than this. */
static TERN_NORETURN void
out_of_memory(size_t size)
{
	log_fatal("out of memory allocating %zu bytes", size);
}

void *
xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		out_of_memory(size);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		out_of_memory(n * size);
	return p;
}

void *
xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);

	if (q == NULL)
		out_of_memory(size);
	return q;
}

void *
xreallocarray(void *p, size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		out_of_memory(SIZE_MAX);
	return xrealloc(p, n * size);
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *
xvasprintf(const char *fmt, va_list ap)
{
	char *p;

	if (vasprintf(&p, fmt, ap) < 0)
		out_of_memory(strlen(fmt));
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

size_t
tern_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

int64_t
tern_now(void)
{
	return (int64_t)time(NULL);
}

uint64_t
tern_monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int
ascii_tolower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

bool
is_ascii_strcaseeq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (ascii_tolower((unsigned char)*a) != ascii_tolower((unsigned char)*b))
			return false;
	return *a == *b;
}

bool
has_ascii_prefix_ci(const char *s, const char *prefix)
{
	for (; *prefix; s++, prefix++)
		if (*s == '\0' ||
		    ascii_tolower((unsigned char)*s) != ascii_tolower((unsigned char)*prefix))
			return false;
	return true;
}

void
ascii_lowercase(char *s)
{
	for (; *s; s++)
		*s = (char)ascii_tolower((unsigned char)*s);
}

int
parse_uint64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		/* A digit above max would wrap the subtraction below. */
		if ((uint64_t)(*s - '0') > max ||
		    v > (max - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

int
fd_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -1;
	return fd_set_cloexec(fd, true);
}

int
fd_set_cloexec(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl == -1)
		return -1;
	fl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
	return fcntl(fd, F_SETFD, fl);
}

/*
 * SMTP sends a reply or a message's last bytes in a small write that waits
 * for nothing more: with Nagle's algorithm it was held until the peer acked
 * the earlier data, up to the peer's delayed-ACK time (40 ms on Linux), and
 * each 100 KiB delivery took 30-50 ms on loopback. Writes are already batched
 * per event-loop turn, so nothing is lost by sending at once. A socket that
 * is not TCP (a Unix one) is left as it is.
 */
void
fd_set_tcp_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * glibc gives the top of the heap back (brk) once 128 KiB are free there,
 * and serves 128 KiB and more with mmap: with buffers of 64 to 256 KiB
 * made and freed per message, every 100 KiB message then cost brk or
 * mmap calls and page faults that zero the same pages again (0.9% of
 * tern-smtp's and tern-cleanup's CPU at 100 KiB). Blocks below 512 KiB
 * now come from the heap, and up to 2 MiB of freed heap are kept (8 MiB
 * cost a few MB more memory for no more speed).
 */
void
malloc_keep_freed_heap(void)
{
#if defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
	(void)mallopt(M_MMAP_THRESHOLD, 512 * 1024);
	(void)mallopt(M_TRIM_THRESHOLD, 2 * 1024 * 1024);
#endif
}

int
mkdir_p(const char *path, unsigned mode)
{
	char buf[4096];
	size_t len;

	if (tern_strlcpy(buf, path, sizeof(buf)) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	len = strlen(buf);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, (mode_t)mode) == -1 && errno != EEXIST)
			return -1;
		if (i < len)
			buf[i] = '/';
	}
	return 0;
}

int
set_owner_mode(const char *path, uid_t uid, gid_t gid, unsigned mode)
{
	struct stat sb;

	if (lstat(path, &sb) == -1)
		return -1;
	if (S_ISLNK(sb.st_mode)) {
		errno = ELOOP;
		return -1;
	}
	if ((sb.st_mode & 07777) != (mode_t)mode) {
		/* Only a file's owner may change its mode without
		 * CAP_FOWNER: root takes it back (CAP_CHOWN) first. */
		if (sb.st_uid != geteuid() &&
		    lchown(path, geteuid(), (gid_t)-1) == -1)
			return -1;
		if (chmod(path, (mode_t)mode) == -1)
			return -1;
		sb.st_uid = geteuid();
	}
	if ((sb.st_uid != uid || sb.st_gid != gid) && lchown(path, uid, gid) == -1)
		return -1;
	return 0;
}
