/*
 * test_log.c - the log line shape: "Mon dd hh:mm:ss HOST tern/NAME[PID]: text"
 * (syslog's, and Postfix's maillog_file's, which pflogsumm reads),
 * control characters replaced, and the pid of the process that writes
 * (the pid is cached, so a forked child must not log its parent's).
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

/* Runs fn with stderr on a pipe; returns what it wrote. */
static void
capture(void (*fn)(void), char *buf, size_t size)
{
	int fds[2], saved = dup(STDERR_FILENO);
	ssize_t n, got = 0;

	assert_int_equal(pipe(fds), 0);
	dup2(fds[1], STDERR_FILENO);
	close(fds[1]);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	while ((n = read(fds[0], buf + got, size - 1 - (size_t)got)) > 0)
		got += n;
	close(fds[0]);
	buf[got] = '\0';
}

static void
log_in_parent_and_child(void)
{
	pid_t pid;
	int status;

	log_info("parent line\x01");
	pid = fork();
	if (pid == 0) {
		log_info("child line");
		_exit(0);
	}
	waitpid(pid, &status, 0);
	dprintf(STDERR_FILENO, "child=%ld\n", (long)pid);
}

static void
test_pid_per_process(void **state)
{
	char out[4096], want[400], host[256];
	const char *child_at;
	long child;

	(void)state;
	log_init("test", LOG_TARGET_STDERR, false);
	capture(log_in_parent_and_child, out, sizeof(out));
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	host[sizeof(host) - 1] = '\0';
	snprintf(want, sizeof(want), " %s tern/test[%ld]: parent line?\n",
	    host, (long)getpid());
	assert_non_null(strstr(out, want));
	/* "Mmm dd hh:mm:ss " before the host: 16 characters. */
	assert_ptr_equal(strstr(out, want), out + 15);
	child_at = strstr(out, "child=");
	assert_non_null(child_at);
	child = strtol(child_at + 6, NULL, 10);
	assert_true(child > 0 && child != (long)getpid());
	snprintf(want, sizeof(want), " %s tern/test[%ld]: child line\n", host,
	    child);
	assert_non_null(strstr(out, want));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pid_per_process),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
