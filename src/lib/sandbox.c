/*
 * sandbox.c - Landlock for tern's daemons, through the raw system calls
 * (glibc 2.36 has no wrappers). A daemon calls sandbox_enter() after its
 * setup and privilege drop, before its event loop: from then on the
 * kernel refuses it every file system access Landlock knows (open for
 * reading or writing, creating, removing, renaming, truncating, device
 * ioctls, executing) except reading the paths it named, every TCP bind,
 * every TCP connect except to the ports it named, abstract Unix sockets
 * and signals to processes outside the sandbox. Rights are degraded to
 * what the running kernel's ABI knows. Runs in the daemon, unprivileged.
 */
#include "autoconfig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"
#include "util.h"

/* Rights and fields newer than the system's header (Debian 12's knows
 * ABI 2); the values are the kernel's ABI and never change. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE		(1ULL << 14)	/* ABI 3 */
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV		(1ULL << 15)	/* ABI 5 */
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP		(1ULL << 0)	/* ABI 4 */
#define LANDLOCK_ACCESS_NET_CONNECT_TCP		(1ULL << 1)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET	(1ULL << 0)	/* ABI 6 */
#define LANDLOCK_SCOPE_SIGNAL			(1ULL << 1)
#endif
#define SANDBOX_RULE_NET_PORT			2	/* LANDLOCK_RULE_NET_PORT */

/* The ABI whose system calls the seccomp filter knows (little-endian). */
#if defined(__x86_64__)
#define SANDBOX_AUDIT_ARCH	AUDIT_ARCH_X86_64
#define SANDBOX_X32_BIT		0x40000000	/* __X32_SYSCALL_BIT */
#elif defined(__aarch64__)
#define SANDBOX_AUDIT_ARCH	AUDIT_ARCH_AARCH64
#endif

/* struct landlock_ruleset_attr as of ABI 6; an older kernel is given
 * only the fields it knows. */
struct sandbox_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;	/* ABI 4 */
	uint64_t scoped;		/* ABI 6 */
};

/* struct landlock_net_port_attr (ABI 4). */
struct sandbox_net_port_attr {
	uint64_t allowed_access;
	uint64_t port;
};

struct sandbox {
	char **read_paths;
	size_t n_read_paths;
	uint16_t *ports;
	size_t n_ports;
};

static bool sandbox_on;

bool
sandbox_is_on(void)
{
	return sandbox_on;
}

/* Every file system right the kernel's ABI knows (the Landlock docs'
 * best-effort table). */
static uint64_t
sandbox_fs_rights(int abi)
{
	uint64_t rights = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;	/* ABI 1 */

	if (abi >= 2)
		rights |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		rights |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return rights;
}

struct sandbox *
sandbox_new(void)
{
	return xcalloc(1, sizeof(struct sandbox));
}

void
sandbox_allow_read(struct sandbox *sb, const char *path)
{
	for (size_t i = 0; i < sb->n_read_paths; i++)
		if (strcmp(sb->read_paths[i], path) == 0)
			return;
	sb->read_paths = xreallocarray(sb->read_paths, sb->n_read_paths + 1,
	    sizeof(*sb->read_paths));
	sb->read_paths[sb->n_read_paths++] = xstrdup(path);
}

void
sandbox_allow_connect(struct sandbox *sb, uint16_t port)
{
	for (size_t i = 0; i < sb->n_ports; i++)
		if (sb->ports[i] == port)
			return;
	sb->ports = xreallocarray(sb->ports, sb->n_ports + 1,
	    sizeof(*sb->ports));
	sb->ports[sb->n_ports++] = port;
}

static void
sandbox_free(struct sandbox *sb)
{
	for (size_t i = 0; i < sb->n_read_paths; i++)
		free(sb->read_paths[i]);
	free(sb->read_paths);
	free(sb->ports);
	free(sb);
}

/*
 * Landlock restricts the calling thread and the threads it creates
 * afterwards, never one that runs already: a thread started by a
 * library during setup would escape. Without /proc (a chroot) there is
 * none to ask, and nothing there starts threads.
 */
static void
sandbox_check_single_thread(void)
{
	DIR *dir = opendir("/proc/self/task");
	struct dirent *e;
	size_t n = 0;

	if (dir == NULL)
		return;
	while ((e = readdir(dir)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	if (n > 1)
		log_panic("%zu threads run before the sandbox: Landlock would "
		    "not restrict the others", n);
}

/* Adds a read-only rule for path: a file, or a directory hierarchy. */
static void
sandbox_add_read_rule(int ruleset, const char *path)
{
	struct landlock_path_beneath_attr rule;
	struct stat st;
	int fd = open(path, O_PATH | O_CLOEXEC);

	if (fd == -1) {
		log_debug("sandbox: %s: %s (no rule)", path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) == -1)
		log_fatal("sandbox: fstat %s: %s", path, strerror(errno));
	memset(&rule, 0, sizeof(rule));
	rule.allowed_access = LANDLOCK_ACCESS_FS_READ_FILE;
	if (S_ISDIR(st.st_mode))
		rule.allowed_access |= LANDLOCK_ACCESS_FS_READ_DIR;
	rule.parent_fd = fd;
	if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH,
	    &rule, 0) == -1)
		log_fatal("sandbox: cannot allow reading %s: %s", path,
		    strerror(errno));
	close(fd);
}

static void
sandbox_add_connect_rule(int ruleset, uint16_t port)
{
	struct sandbox_net_port_attr rule = {
		.allowed_access = LANDLOCK_ACCESS_NET_CONNECT_TCP,
		.port = port,
	};

	if (syscall(SYS_landlock_add_rule, ruleset, SANDBOX_RULE_NET_PORT,
	    &rule, 0) == -1)
		log_fatal("sandbox: cannot allow TCP port %u: %s", port,
		    strerror(errno));
}

/*
 * What Landlock does not cover, a seccomp filter does:
 * - a TCP Fast Open send (sendto, sendmsg or sendmmsg with MSG_FASTOPEN)
 *   connects without Landlock's connect check (seen on Linux 6.18): the
 *   flag fails with EOPNOTSUPP, as when Fast Open is off (libunbound then
 *   connects normally);
 * - Landlock has no rules for UDP or for socket families other than
 *   TCP's: a daemon that connects nowhere (inet false) may create Unix
 *   sockets only, the others Unix, IPv4 and IPv6 ones (not netlink,
 *   packet, vsock...); socket(2) fails with EACCES, as a refused
 *   connect(2) does;
 * - io_uring, whose sends it cannot see, and system calls of another ABI
 *   (i386, x32), whose numbers it does not know, are refused.
 */
static void
sandbox_filter_system_calls(bool inet)
{
#ifdef SANDBOX_AUDIT_ARCH
	/* From each family test to the "allow" 11 places after AF_UNIX's. */
	const unsigned char inet_to_allow = inet ? 9 : 0;
	const unsigned char inet6_to_allow = inet ? 8 : 0;
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SANDBOX_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, nr)),
#ifdef SANDBOX_X32_BIT
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, SANDBOX_X32_BIT, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
#endif
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		/* socket(domain, ...): the low 32 bits of domain */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 10, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, inet_to_allow, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, inet6_to_allow,
		    0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
		/* sendmsg(fd, msg, flags): flags is argument 2 */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sendmsg, 0, 2),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JA, 3, 0, 0),
		/* sendto and sendmmsg: flags is argument 3 */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sendto, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sendmmsg, 0, 2),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, args[3])),
		/* the low 32 bits of the flags (little-endian) */
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, MSG_FASTOPEN, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EOPNOTSUPP),
	};
	struct sock_fprog prog = {
		.len = (unsigned short)(sizeof(filter) / sizeof(filter[0])),
		.filter = filter,
	};

	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == -1)
		log_warn("sandbox: no seccomp filter (%s): TCP Fast Open can "
		    "pass Landlock's TCP rules, sockets of any family can be "
		    "created", strerror(errno));
#else
	(void)inet;
	log_debug("sandbox: no seccomp filter on this architecture: TCP Fast "
	    "Open can pass Landlock's TCP rules, sockets of any family can be "
	    "created");
#endif
}

void
sandbox_enter(struct sandbox *sb)
{
	struct sandbox_ruleset_attr attr;
	size_t attr_size;
	long abi;
	int ruleset;

	abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 0) {
		/* Not built in, off at boot, or refused by a container's
		 * seccomp profile (EPERM). */
		if (errno != ENOSYS && errno != EOPNOTSUPP && errno != EPERM)
			log_fatal("sandbox: Landlock: %s", strerror(errno));
		log_warn("the kernel has no Landlock (%s): running without a "
		    "sandbox", strerror(errno));
		sandbox_free(sb);
		return;
	}
	sandbox_check_single_thread();
	/* What libc reads on first use is read now: local time's zone. */
	tzset();
#ifdef __SANITIZE_ADDRESS__
	/* A sanitizer's report reads the process's maps and its binary. */
	{
		char exe[4096];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

		sandbox_allow_read(sb, "/proc/self");
		if (n > 0) {
			exe[n] = '\0';
			sandbox_allow_read(sb, exe);
		}
	}
#endif

	memset(&attr, 0, sizeof(attr));
	attr.handled_access_fs = sandbox_fs_rights((int)abi);
	attr_size = sizeof(attr.handled_access_fs);
	if (abi >= 4) {
		attr.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP |
		    LANDLOCK_ACCESS_NET_CONNECT_TCP;
		attr_size = sizeof(attr.handled_access_fs) +
		    sizeof(attr.handled_access_net);
	}
	if (abi >= 6) {
		attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET |
		    LANDLOCK_SCOPE_SIGNAL;
		attr_size = sizeof(attr);
	}
	ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
	if (ruleset == -1)
		log_fatal("sandbox: cannot create the Landlock ruleset: %s",
		    strerror(errno));
	for (size_t i = 0; i < sb->n_read_paths; i++)
		sandbox_add_read_rule(ruleset, sb->read_paths[i]);
	if (abi >= 4)
		for (size_t i = 0; i < sb->n_ports; i++)
			sandbox_add_connect_rule(ruleset, sb->ports[i]);
	/* Landlock requires it of an unprivileged process; nothing here
	 * executes a program that needs set-user-ID either. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		log_fatal("sandbox: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if (syscall(SYS_landlock_restrict_self, ruleset, 0) == -1)
		log_fatal("sandbox: cannot restrict the process: %s",
		    strerror(errno));
	close(ruleset);
	/* On every ABI: the filter does not depend on Landlock's TCP rules. */
	sandbox_filter_system_calls(sb->n_ports > 0);
	sandbox_on = true;
	if (sb->n_ports == 0)
		log_debug("sandbox on (Landlock ABI %ld): %zu readable path(s), "
		    "Unix sockets only", abi, sb->n_read_paths);
	else if (abi >= 4)
		log_debug("sandbox on (Landlock ABI %ld): %zu readable path(s), "
		    "TCP connect to %zu port(s) only", abi, sb->n_read_paths,
		    sb->n_ports);
	else
		log_debug("sandbox on (Landlock ABI %ld): %zu readable path(s), "
		    "TCP not restricted (that needs ABI 4)", abi,
		    sb->n_read_paths);
	sandbox_free(sb);
}
