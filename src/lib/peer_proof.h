/*
 * peer_proof.h - telling tern's own programs from a sandboxed daemon of
 * the same user. The uid of a peer cannot do it: tern-smtp, tern-bounce,
 * tern-pickup and ternctl may all run as tern's user. What can: a
 * descriptor of a file opened for real (not O_PATH) that a daemon in its
 * Landlock sandbox (sandbox.c) can no longer open, sent (IPC_F_FD) with
 * the first frame of a connection. run_dir/private shows ternctl,
 * tern-pickup and tern-cleanup; queue_dir/verp.key shows tern-bounce,
 * which opens it before its sandbox (tern-smtp never does).
 */
#ifndef TERN_PEER_PROOF_H
#define TERN_PEER_PROOF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "ipc.h"

/* Notes the identity of dir/name (name NULL: of dir itself) at start,
 * before a chroot or sandbox; exits with a fatal log when it is missing. */
void peer_proof_note(struct stat *st, const char *dir, const char *name);

/* True when the message carries a descriptor (not O_PATH) of the file
 * noted in want. Takes and closes the message's descriptor. */
bool peer_proof_check(struct ipc_msg *m, const struct stat *want);

/* The index in wants[0..n) of the file whose descriptor (not O_PATH) the
 * message carries, or -1 when it carries none of them. Takes and closes
 * the message's descriptor. */
int peer_proof_which(struct ipc_msg *m, const struct stat *wants, size_t n);

/* Opens run_dir/private for reading: the proof of tern's own unsandboxed
 * programs. -1 with errno when it cannot. */
int peer_proof_open_private(const char *run_dir);

/* Control data that passes one descriptor. */
union peer_proof_control {
	struct cmsghdr align;
	char buf[CMSG_SPACE(sizeof(int))];
};

/* Makes mh pass fd (SCM_RIGHTS), with ctl as its control data. */
void peer_proof_attach(struct msghdr *mh, union peer_proof_control *ctl,
    int fd);
/* One sendmsg of buf[0..len) with fd attached (SCM_RIGHTS) on a blocking
 * or non-blocking socket: the bytes written (the descriptor went with
 * the first), or -1 with errno. The caller writes the rest. */
ssize_t peer_proof_sendmsg(int sock, const void *buf, size_t len, int fd);

#endif
