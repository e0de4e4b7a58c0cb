/*
 * ctl_user.c - `ternctl user add NAME`: reads a password from stdin,
 * hashes it with yescrypt (SHA-512 crypt where libcrypt lacks yescrypt)
 * and adds or replaces NAME's line in [auth] users_file. The file is
 * rewritten atomically (temporary file, fsync, rename), so tern-smtpd
 * never reads half a file. Runs as the administrator.
 */
#include "autoconfig.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "ctl_user.h"
#include "util.h"

/* A user name: printable ASCII without ':' or spaces, at most 64 bytes. */
static bool
is_user_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 64)
		return false;
	for (; *name != '\0'; name++)
		if (*name <= ' ' || *name > '~' || *name == ':')
			return false;
	return true;
}

/* The hash of password, yescrypt preferred; NULL on failure. */
static char *
hash_password(const char *password)
{
	static const char *const prefixes[] = { "$y$", "$6$" };
	struct crypt_data cd;

	for (size_t i = 0; i < TERN_ARRAY_LEN(prefixes); i++) {
		char salt[CRYPT_GENSALT_OUTPUT_SIZE];
		const char *h;

		if (crypt_gensalt_rn(prefixes[i], 0, NULL, 0, salt,
		    sizeof(salt)) == NULL)
			continue;
		memset(&cd, 0, sizeof(cd));
		h = crypt_r(password, salt, &cd);
		if (h != NULL && h[0] != '*') {
			char *out = xstrdup(h);

			explicit_bzero(&cd, sizeof(cd));
			return out;
		}
	}
	return NULL;
}

/* Writes lines to path through a temporary file and a rename. */
static int
write_atomically(const char *path, const char *text, mode_t mode)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	char *dircopy = xstrdup(path);
	size_t len = strlen(text), off = 0;
	int fd, dfd, rc = -1;

	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd == -1)
		goto out;
	fchmod(fd, mode);
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			unlink(tmp);
			goto out;
		}
		off += (size_t)n;
	}
	if (fsync(fd) == -1 || close(fd) == -1 || rename(tmp, path) == -1) {
		unlink(tmp);
		goto out;
	}
	dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd != -1) {
		fsync(dfd);
		close(dfd);
	}
	rc = 0;
out:
	free(tmp);
	free(dircopy);
	return rc;
}

int
ctl_user(const char *config_path, int argc, char **argv)
{
	struct config_errors errs;
	struct tern_config *cfg;
	const char *name, *path;
	char *password = NULL, *hash, *text = xstrdup(""), *line = NULL;
	size_t cap = 0, nlen;
	ssize_t len;
	bool replaced = false;
	struct stat st;
	FILE *f;
	int rc = 1;

	if (argc != 3 || strcmp(argv[1], "add") != 0) {
		fprintf(stderr, "usage: ternctl [-c config] user add NAME "
		    "(password on stdin)\n");
		free(text);
		return 2;
	}
	name = argv[2];
	if (!is_user_name(name)) {
		fprintf(stderr, "ternctl: '%s' is not a valid user name (1 to 64 "
		    "printable characters, no ':' or spaces)\n", name);
		free(text);
		return 1;
	}
	cfg = config_load(config_path, &errs);
	if (cfg == NULL) {
		config_errors_print(&errs, stderr);
		config_errors_free(&errs);
		free(text);
		return 1;
	}
	path = cfg->auth.users_file;
	if (path == NULL) {
		fprintf(stderr, "ternctl: %s has no [auth] users_file\n", cfg->path);
		goto out;
	}
	len = getline(&password, &cap, stdin);
	while (len > 0 && (password[len - 1] == '\n' || password[len - 1] == '\r'))
		password[--len] = '\0';
	if (len <= 0) {
		fprintf(stderr, "ternctl: no password on stdin\n");
		goto out;
	}
	hash = hash_password(password);
	explicit_bzero(password, cap);
	if (hash == NULL) {
		fprintf(stderr, "ternctl: crypt failed: %s\n", strerror(errno));
		goto out;
	}
	f = fopen(path, "r");
	if (f == NULL || fstat(fileno(f), &st) == -1) {
		fprintf(stderr, "ternctl: %s: %s\n", path, strerror(errno));
		free(hash);
		goto out;
	}
	nlen = strlen(name);
	while ((len = getline(&line, &cap, f)) != -1) {
		char *t;

		if (strncmp(line, name, nlen) == 0 && line[nlen] == ':') {
			t = xasprintf("%s%s:%s\n", text, name, hash);
			replaced = true;
		} else {
			t = xasprintf("%s%s%s", text, line,
			    len > 0 && line[len - 1] != '\n' ? "\n" : "");
		}
		free(text);
		text = t;
	}
	fclose(f);
	if (!replaced) {
		char *t = xasprintf("%s%s:%s\n", text, name, hash);

		free(text);
		text = t;
	}
	free(hash);
	if (write_atomically(path, text, st.st_mode & 07777) == -1) {
		fprintf(stderr, "ternctl: cannot write %s: %s\n", path,
		    strerror(errno));
		goto out;
	}
	if (geteuid() == 0)
		chown(path, st.st_uid, st.st_gid);
	printf("user %s %s in %s; reload ternd to use it\n", name,
	    replaced ? "updated" : "added", path);
	rc = 0;
out:
	free(password);
	free(line);
	free(text);
	config_free(cfg);
	return rc;
}
