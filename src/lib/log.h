/*
 * log.h - one log line per step, in Postfix's shape:
 *   tern/smtpd[1234]: 3F2A1C9B: to=<a@b>, relay=..., status=sent (...)
 * Levels have distinct meanings:
 *   debug  - detail for developers, only with -v
 *   info   - a normal step (connect, queued, sent)
 *   warn   - something is wrong but this process goes on ("warning: ")
 *   fatal  - this process cannot go on; logs and exits 1 ("fatal: ");
 *            the master restarts it
 *   panic  - an internal bug; logs and aborts ("panic: ")
 */
#ifndef TERN_LOG_H
#define TERN_LOG_H

#include <stdbool.h>

#include "util.h"

enum log_target {
	LOG_TARGET_STDERR,
	LOG_TARGET_SYSLOG,
};

/* ident is the daemon's short name ("smtpd"); lines carry "tern/<ident>". */
void log_init(const char *ident, enum log_target target, bool verbose);
/* Switches target after the config is read (before: stderr). */
void log_set_target(enum log_target target);
void log_set_verbose(bool verbose);
bool log_is_verbose(void);

void log_debug(const char *fmt, ...) TERN_PRINTF(1, 2);
void log_info(const char *fmt, ...) TERN_PRINTF(1, 2);
void log_warn(const char *fmt, ...) TERN_PRINTF(1, 2);
TERN_NORETURN void log_fatal(const char *fmt, ...) TERN_PRINTF(1, 2);
TERN_NORETURN void log_panic(const char *fmt, ...) TERN_PRINTF(1, 2);

/* An internal invariant; a failure is a bug and panics with file and line. */
#define TERN_ASSERT(cond)                                                       \
	do {                                                                    \
		if (!(cond))                                                    \
			log_panic("%s:%d: assertion failed: %s", __FILE__,      \
			    __LINE__, #cond);                                   \
	} while (0)

#endif
