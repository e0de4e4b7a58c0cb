/*
 * maildrop.c - encoding, parsing and durable writing of maildrop files
 * (format in maildrop.h). Runs in sendmail (the invoking user, with the
 * tern-drop group only while it creates the file) and in tern-pickup.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "maildrop.h"
#include "message.h"
#include "util.h"

char *
maildrop_encode(const struct maildrop_msg *m, size_t *len)
{
	struct sm_buf b = { 0 };
	char *line;

	sm_buf_append(&b, MAILDROP_MAGIC, strlen(MAILDROP_MAGIC));
	line = xasprintf("S %s\n", m->sender);
	sm_buf_append(&b, line, strlen(line));
	free(line);
	for (size_t i = 0; i < m->n_rcpts; i++) {
		line = xasprintf("R %s\n", m->rcpts[i]);
		sm_buf_append(&b, line, strlen(line));
		free(line);
	}
	line = xasprintf("N %u\nT %u\n", m->notify, m->ret);
	sm_buf_append(&b, line, strlen(line));
	free(line);
	if (m->envid != NULL && *m->envid != '\0') {
		line = xasprintf("V %s\n", m->envid);
		sm_buf_append(&b, line, strlen(line));
		free(line);
	}
	line = xasprintf("B %u\nU %d\nL %zu\n\n", m->body, m->smtputf8 ? 1 : 0,
	    m->content_len);
	sm_buf_append(&b, line, strlen(line));
	free(line);
	sm_buf_append(&b, m->content, m->content_len);
	*len = b.len;
	return b.data;
}

void
maildrop_msg_free(struct maildrop_msg *m)
{
	free(m->sender);
	for (size_t i = 0; i < m->n_rcpts; i++)
		free(m->rcpts[i]);
	free(m->rcpts);
	free(m->envid);
	memset(m, 0, sizeof(*m));
}

/* A small decimal field; -1 when it is not a number within max. */
static int
maildrop_number(const char *s, uint64_t max, uint64_t *out)
{
	return parse_uint64(s, max, out);
}

int
maildrop_parse(const char *buf, size_t len, struct maildrop_msg *m,
    const char **why)
{
	size_t pos, mlen = strlen(MAILDROP_MAGIC);
	bool have_sender = false, have_body = false, have_utf8 = false;
	uint64_t v;

	memset(m, 0, sizeof(*m));
	if (len < mlen || memcmp(buf, MAILDROP_MAGIC, mlen) != 0) {
		*why = "not a maildrop file (bad first line)";
		return -1;
	}
	pos = mlen;
	for (;;) {
		const char *eol = memchr(buf + pos, '\n', len - pos);
		char line[MAILDROP_LINE_MAX + 1], *val;
		size_t llen;

		if (eol == NULL) {
			*why = "truncated envelope";
			goto fail;
		}
		llen = (size_t)(eol - (buf + pos));
		if (llen > MAILDROP_LINE_MAX) {
			*why = "envelope line too long";
			goto fail;
		}
		memcpy(line, buf + pos, llen);
		line[llen] = '\0';
		if (memchr(line, '\0', llen) != NULL || memchr(line, '\r', llen)) {
			*why = "control character in the envelope";
			goto fail;
		}
		pos += llen + 1;
		if (llen == 0) {
			*why = "envelope ends without a length";
			goto fail;
		}
		if (llen < 2 || line[1] != ' ') {
			*why = "malformed envelope line";
			goto fail;
		}
		val = line + 2;
		switch (line[0]) {
		case 'S':
			if (have_sender || (*val != '\0' && !is_sm_address(val))) {
				*why = "bad or repeated sender";
				goto fail;
			}
			m->sender = xstrdup(val);
			have_sender = true;
			break;
		case 'R':
			if (!is_sm_address(val) || m->n_rcpts >= MAILDROP_MAX_RCPTS) {
				*why = "bad recipient or too many";
				goto fail;
			}
			m->rcpts = xreallocarray(m->rcpts, m->n_rcpts + 1,
			    sizeof(*m->rcpts));
			m->rcpts[m->n_rcpts++] = xstrdup(val);
			break;
		case 'N':
			if (maildrop_number(val, 0x0f, &v) == -1) {
				*why = "bad notify";
				goto fail;
			}
			m->notify = (uint8_t)v;
			break;
		case 'T':
			if (maildrop_number(val, 2, &v) == -1) {
				*why = "bad ret";
				goto fail;
			}
			m->ret = (uint8_t)v;
			break;
		case 'V':
			if (m->envid != NULL || strlen(val) > 100) {
				*why = "bad or repeated envid";
				goto fail;
			}
			m->envid = xstrdup(val);
			break;
		case 'B':
			if (maildrop_number(val, 2, &v) == -1) {
				*why = "bad body type";
				goto fail;
			}
			m->body = (uint8_t)v;
			have_body = true;
			break;
		case 'U':
			if (maildrop_number(val, 1, &v) == -1) {
				*why = "bad smtputf8 flag";
				goto fail;
			}
			m->smtputf8 = v == 1;
			have_utf8 = true;
			break;
		case 'L':
			if (maildrop_number(val, len, &v) == -1) {
				*why = "bad content length";
				goto fail;
			}
			if (pos >= len || buf[pos] != '\n') {
				*why = "no empty line after the envelope";
				goto fail;
			}
			pos++;
			if (len - pos != v) {
				*why = "content length does not match the file";
				goto fail;
			}
			if (!have_sender || !have_body || !have_utf8 ||
			    m->n_rcpts == 0) {
				*why = "envelope lacks sender, recipient, body or "
				    "smtputf8";
				goto fail;
			}
			if (m->envid == NULL)
				m->envid = xstrdup("");
			m->content = buf + pos;
			m->content_len = (size_t)v;
			return 0;
		default:
			*why = "unknown envelope line";
			goto fail;
		}
	}
fail:
	maildrop_msg_free(m);
	return -1;
}

bool
is_maildrop_name(const char *name)
{
	if (name[0] == '.' || name[0] == '\0')
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F') ||
		    *p == '.'))
			return false;
	return true;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
maildrop_write(const char *dir, const struct maildrop_msg *m, char *name,
    size_t name_size)
{
	struct timeval tv;
	char *tmp, *final, *data;
	size_t len;
	int fd, dfd, saved;
	unsigned rnd;

	gettimeofday(&tv, NULL);
	if (getentropy(&rnd, sizeof(rnd)) == -1)
		rnd = (unsigned)getpid() * 2654435761u;
	/* Names sort by time; pid and randomness keep them unique. */
	snprintf(name, name_size, "%010llX.%05lX.%08X",
	    (unsigned long long)tv.tv_sec * 1000000ull + (unsigned long long)tv.tv_usec,
	    (unsigned long)getpid() & 0xfffff, rnd);
	tmp = xasprintf("%s/.%s", dir, name);
	final = xasprintf("%s/%s", dir, name);
	/* 0644 in a directory others cannot enter: pickup (the owner of the
	 * directory) can read it, nobody else can reach it. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd == -1) {
		saved = errno;
		free(tmp);
		free(final);
		errno = saved;
		return -1;
	}
	fchmod(fd, 0644);
	data = maildrop_encode(m, &len);
	if (write_all(fd, data, len) == -1 || fsync(fd) == -1) {
		saved = errno;
		close(fd);
		unlink(tmp);
		goto fail;
	}
	if (close(fd) == -1) {
		saved = errno;
		unlink(tmp);
		goto fail;
	}
	if (rename(tmp, final) == -1) {
		saved = errno;
		unlink(tmp);
		goto fail;
	}
	/* Hence the maildrop's mode 1770: the group needs read access to
	 * open the directory for its fsync. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1 || fsync(dfd) == -1) {
		saved = errno;
		if (dfd != -1)
			close(dfd);
		/* The name may not be durable: take it back and fail, so
		 * the caller keeps the message (EX_TEMPFAIL). */
		unlink(final);
		goto fail;
	}
	close(dfd);
	free(data);
	free(tmp);
	free(final);
	return 0;
fail:
	free(data);
	free(tmp);
	free(final);
	errno = saved;
	return -1;
}
