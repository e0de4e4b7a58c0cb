/*
 * peercred.c - local peer identity from SO_PEERCRED or a file's owner,
 * and the rule for what a local submission records (see peercred.h).
 * Linked into tern-cleanup, tern-pickup, tern-qmgr and sendmail; needs no
 * privilege.
 */
#include "autoconfig.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peercred.h"
#include "util.h"

int
peercred_from_socket(int fd, struct peer_identity *id)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	memset(id, 0, sizeof(*id));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1)
		return -1;
	if (len != sizeof(uc)) {
		errno = EPROTO;
		return -1;
	}
	id->pid = uc.pid;
	id->uid = uc.uid;
	id->gid = uc.gid;
	return 0;
}

int
peercred_from_file(int fd, struct peer_identity *id)
{
	struct stat sb;

	memset(id, 0, sizeof(*id));
	if (fstat(fd, &sb) == -1)
		return -1;
	id->uid = sb.st_uid;
	id->gid = sb.st_gid;
	return 0;
}

void
peercred_lookup_user(struct peer_identity *id)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (getpwuid_r(id->uid, &pw, buf, sizeof(buf), &res) == 0 &&
	    res != NULL && pw.pw_name[0] != '\0' &&
	    strlen(pw.pw_name) < sizeof(id->user) &&
	    strpbrk(pw.pw_name, " \t\r\n<>@\"\\") == NULL) {
		tern_strlcpy(id->user, pw.pw_name, sizeof(id->user));
		return;
	}
	/* No entry (or one unsafe in an address): the number is the name. */
	snprintf(id->user, sizeof(id->user), "#%lu", (unsigned long)id->uid);
}

bool
is_peer_privileged(const struct peer_identity *id, uid_t tern_uid)
{
	return id->uid == 0 || id->uid == tern_uid;
}

void
peercred_auth_text(const struct peer_identity *id, char *buf, size_t size)
{
	snprintf(buf, size, "uid=%lu user=%s", (unsigned long)id->uid, id->user);
}

void
peercred_default_sender(const struct peer_identity *id, const char *hostname,
    char *buf, size_t size)
{
	if (id->user[0] == '#')
		snprintf(buf, size, "uid%s@%s", id->user + 1, hostname);
	else
		snprintf(buf, size, "%s@%s", id->user, hostname);
}
