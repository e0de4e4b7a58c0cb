/*
 * log.c - logging to syslog or stderr in Postfix's line shape.
 * Linked into every tern program. Each line is written with one write(2)
 * so lines from several daemons sharing stderr do not interleave.
 */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static char log_ident[64] = "tern";
/* The host field of a stderr line, as syslog and Postfix's maillog_file
 * write it: log tools (pflogsumm) expect "Mmm dd hh:mm:ss host ident[pid]:". */
static char log_host[256] = "localhost";
static enum log_target log_target = LOG_TARGET_STDERR;
static bool log_verbose;
/* getpid() once, not per line (a system call each time since glibc 2.25);
 * a forked child takes its own. */
static pid_t log_pid;

static void
log_after_fork(void)
{
	log_pid = getpid();
}

void
log_init(const char *ident, enum log_target target, bool verbose)
{
	static bool registered;

	if (!registered && pthread_atfork(NULL, NULL, log_after_fork) == 0)
		registered = true;
	log_pid = getpid();
	if (gethostname(log_host, sizeof(log_host)) != 0 || log_host[0] == '\0')
		snprintf(log_host, sizeof(log_host), "localhost");
	log_host[sizeof(log_host) - 1] = '\0';
	snprintf(log_ident, sizeof(log_ident), "tern/%s", ident);
	log_verbose = verbose;
	log_set_target(target);
}

void
log_set_target(enum log_target target)
{
	if (log_target == LOG_TARGET_SYSLOG && target != LOG_TARGET_SYSLOG)
		closelog();
	log_target = target;
	/* LOG_NDELAY connects now, so logging still works after chroot. */
	if (target == LOG_TARGET_SYSLOG)
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_verbose(bool verbose)
{
	log_verbose = verbose;
}

bool
log_is_verbose(void)
{
	return log_verbose;
}

/* Replaces control characters so a hostile peer cannot forge log lines. */
static void
log_sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static void
log_emit(int priority, const char *prefix, const char *fmt, va_list ap)
{
	char msg[4096], line[4700], stamp[32];
	int saved_errno = errno;
	struct tm tm;
	time_t now;
	int n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_sanitize(msg);
	if (log_target == LOG_TARGET_SYSLOG) {
		syslog(priority, "%s%s", prefix, msg);
	} else {
		now = time(NULL);
		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
		n = snprintf(line, sizeof(line), "%s %s %s[%ld]: %s%s\n",
		    stamp, log_host, log_ident,
		    (long)(log_pid != 0 ? log_pid : getpid()), prefix, msg);
		if (n > (int)sizeof(line) - 1)
			n = (int)sizeof(line) - 1;
		if (write(STDERR_FILENO, line, (size_t)n) < 0) {
			/* Nowhere left to report a failing stderr. */
		}
	}
	errno = saved_errno;
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!log_verbose)
		return;
	va_start(ap, fmt);
	log_emit(LOG_DEBUG, "", fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_INFO, "", fmt, ap);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_WARNING, "warning: ", fmt, ap);
	va_end(ap);
}

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_CRIT, "fatal: ", fmt, ap);
	va_end(ap);
	exit(1);
}

void
log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_CRIT, "panic: ", fmt, ap);
	va_end(ap);
	abort();
}
