/*
 * peer_proof.c - descriptors that show who a peer is (peer_proof.h).
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "peer_proof.h"
#include "util.h"

void
peer_proof_note(struct stat *st, const char *dir, const char *name)
{
	char *path = name != NULL ? xasprintf("%s/%s", dir, name) :
	    xstrdup(dir);

	if (stat(path, st) == -1)
		log_fatal("%s: %s", path, strerror(errno));
	free(path);
}

int
peer_proof_which(struct ipc_msg *m, const struct stat *wants, size_t n)
{
	int fd = m->fd, flags, which = -1;
	struct stat st;

	if (fd == -1)
		return -1;
	m->fd = -1;
	flags = fcntl(fd, F_GETFL);
	if (flags != -1 && (flags & O_PATH) == 0 && fstat(fd, &st) == 0)
		for (size_t i = 0; i < n && which == -1; i++)
			if (st.st_dev == wants[i].st_dev &&
			    st.st_ino == wants[i].st_ino)
				which = (int)i;
	close(fd);
	return which;
}

bool
peer_proof_check(struct ipc_msg *m, const struct stat *want)
{
	return peer_proof_which(m, want, 1) == 0;
}

int
peer_proof_open_private(const char *run_dir)
{
	char *path = xasprintf("%s/private", run_dir);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int saved = errno;

	free(path);
	errno = saved;
	return fd;
}

void
peer_proof_attach(struct msghdr *mh, union peer_proof_control *ctl, int fd)
{
	struct cmsghdr *cm;

	memset(ctl, 0, sizeof(*ctl));
	mh->msg_control = ctl->buf;
	mh->msg_controllen = sizeof(ctl->buf);
	cm = CMSG_FIRSTHDR(mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
}

ssize_t
peer_proof_sendmsg(int sock, const void *buf, size_t len, int fd)
{
	union peer_proof_control ctl;
	struct msghdr mh;
	struct iovec iov;
	ssize_t w;

	iov.iov_base = (void *)buf;
	iov.iov_len = len;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	peer_proof_attach(&mh, &ctl, fd);
	do
		w = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (w == -1 && errno == EINTR);
	return w;
}
