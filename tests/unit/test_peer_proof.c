/*
 * test_peer_proof.c - the descriptors that show who a peer is
 * (peer_proof.h): only a real descriptor (not O_PATH) of the noted file
 * counts, and the message's descriptor is always taken and closed.
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peer_proof.h"

static char dir_a[] = "/tmp/tern-proof-a-XXXXXX";
static char dir_b[] = "/tmp/tern-proof-b-XXXXXX";
static struct stat wants[2];

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(dir_a) == NULL || mkdtemp(dir_b) == NULL)
		return -1;
	peer_proof_note(&wants[0], dir_a, NULL);
	peer_proof_note(&wants[1], "/tmp", strrchr(dir_b, '/') + 1);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	rmdir(dir_a);
	rmdir(dir_b);
	return 0;
}

/* A message carrying a descriptor of path opened with flags. */
static int
which_of(const char *path, int flags)
{
	struct ipc_msg m;
	int which;

	memset(&m, 0, sizeof(m));
	m.fd = path != NULL ? open(path, flags | O_CLOEXEC) : -1;
	if (path != NULL)
		assert_true(m.fd != -1);
	which = peer_proof_which(&m, wants, 2);
	assert_int_equal(m.fd, -1);		/* taken */
	return which;
}

static void
test_real_descriptor_of_the_noted_file(void **state)
{
	(void)state;
	assert_int_equal(which_of(dir_a, O_RDONLY), 0);
	assert_int_equal(which_of(dir_b, O_RDONLY | O_DIRECTORY), 1);
}

static void
test_o_path_none_or_another_file(void **state)
{
	struct ipc_msg m;

	(void)state;
	/* anyone can make an O_PATH descriptor, Landlock or not */
	assert_int_equal(which_of(dir_a, O_PATH), -1);
	assert_int_equal(which_of(NULL, 0), -1);
	assert_int_equal(which_of("/", O_RDONLY), -1);
	memset(&m, 0, sizeof(m));
	m.fd = open(dir_a, O_RDONLY | O_CLOEXEC);
	assert_false(peer_proof_check(&m, &wants[1]));
	m.fd = open(dir_a, O_RDONLY | O_CLOEXEC);
	assert_true(peer_proof_check(&m, &wants[0]));
}

static void
test_sendmsg_carries_the_descriptor(void **state)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct ipc_msg m;
	struct msghdr mh;
	struct iovec iov;
	struct cmsghdr *cm;
	char buf[8];
	int sv[2], fd;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fd = open(dir_b, O_RDONLY | O_CLOEXEC);
	assert_int_equal(peer_proof_sendmsg(sv[0], "frame", 5, fd), 5);
	close(fd);
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = buf;
	iov.iov_len = sizeof(buf);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	assert_int_equal(recvmsg(sv[1], &mh, MSG_CMSG_CLOEXEC), 5);
	cm = CMSG_FIRSTHDR(&mh);
	assert_non_null(cm);
	assert_int_equal(cm->cmsg_type, SCM_RIGHTS);
	memset(&m, 0, sizeof(m));
	memcpy(&m.fd, CMSG_DATA(cm), sizeof(int));
	assert_int_equal(peer_proof_which(&m, wants, 2), 1);
	close(sv[0]);
	close(sv[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_descriptor_of_the_noted_file),
		cmocka_unit_test(test_o_path_none_or_another_file),
		cmocka_unit_test(test_sendmsg_carries_the_descriptor),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
