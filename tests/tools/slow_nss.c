/*
 * slow_nss.c - an LD_PRELOAD stand-in for a slow directory service
 * (LDAP, NIS): getpwuid_r() waits until the file named by
 * $SLOW_NSS_GATE exists (at most 60 s), after creating
 * "$SLOW_NSS_GATE.waiting" so that a test knows a look-up is stuck.
 * With $SLOW_NSS_UID set, only that uid's look-ups wait.
 * Built by tests/integration/test_sendmail.py; not part of tern.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef int (*getpwuid_r_fn)(uid_t, struct passwd *, char *, size_t,
    struct passwd **);

int
getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len,
    struct passwd **res)
{
	const char *gate = getenv("SLOW_NSS_GATE");
	const char *only = getenv("SLOW_NSS_UID");
	getpwuid_r_fn real;
	void *sym = dlsym(RTLD_NEXT, "getpwuid_r");

	*(void **)&real = sym;
	if (gate != NULL && access(gate, F_OK) != 0 &&
	    (only == NULL || strtoul(only, NULL, 10) == (unsigned long)uid)) {
		char waiting[4096];
		int fd;

		snprintf(waiting, sizeof(waiting), "%s.waiting", gate);
		if ((fd = open(waiting, O_WRONLY | O_CREAT, 0644)) != -1)
			close(fd);
		for (int i = 0; i < 600 && access(gate, F_OK) != 0; i++)
			usleep(100000);
	}
	return real(uid, pw, buf, len, res);
}
