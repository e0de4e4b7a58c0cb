/*
 * peercred.h - who is on the other end of a local (AF_UNIX) socket, from
 * the kernel's SO_PEERCRED, never from anything the peer says. Used by
 * tern-cleanup on the world-connectable run_dir/public/sendmail socket
 * (a local user's sendmail(1)), by tern-pickup for maildrop files
 * (the file's owner) and by tern-qmgr, which serves only root and tern's
 * user. Needs no privilege.
 *
 * What a local submission may claim and what is imposed on it is decided
 * here too, so the rule lives in one place: the identity (uid, user name)
 * always comes from the kernel; the source is always
 * CLEANUP_SOURCE_SENDMAIL; the client address is "" (local); the network
 * is not trusted; the auth user field records "uid=N user=NAME".
 */
#ifndef TERN_PEERCRED_H
#define TERN_PEERCRED_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PEER_USER_MAX	64

struct peer_identity {
	pid_t pid;			/* 0 when unknown (maildrop files) */
	uid_t uid;
	gid_t gid;
	char user[PEER_USER_MAX];	/* login name, or "#UID" when it has none */
};

/* Reads the peer of a connected AF_UNIX socket; 0 or -1 (errno set).
 * id->user stays empty: peercred_lookup_user() may be slow (a directory
 * service), so the caller chooses where it runs. */
int peercred_from_socket(int fd, struct peer_identity *id);
/* The identity of a file's owner (a maildrop file); 0 or -1. id->user
 * stays empty, as above. */
int peercred_from_file(int fd, struct peer_identity *id);
/* Fills id->user from id->uid with the password database ("#UID" if none). */
void peercred_lookup_user(struct peer_identity *id);

/*
 * True when the peer may set any envelope sender without it being
 * logged as a forgery: root and tern's own user (server.user). Other
 * users may still use -f (cron, mailing list software do) but cleanup
 * logs "sender=<x> set by uid=N". The same two are the only peers
 * tern-qmgr serves (ternctl and tern's daemons).
 */
bool is_peer_privileged(const struct peer_identity *id, uid_t tern_uid);

/* The text cleanup stores as the auth user of a local submission:
 * "uid=1000 user=alice" (the message record's auth_user field). */
void peercred_auth_text(const struct peer_identity *id, char *buf,
    size_t size);

/* The default envelope sender of a local user without -f: "user@host". */
void peercred_default_sender(const struct peer_identity *id,
    const char *hostname, char *buf, size_t size);

#endif
