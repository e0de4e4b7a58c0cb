/*
 * verp.c - VERP return path tokens (see verp.h). Runs in tern-qmgr and
 * tern-bounce; the key file needs queue_dir access.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"
#include "verp.h"

static const char b32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

static void
b32_encode(const uint8_t *in, size_t n, char *out)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 5) {
			out[o++] = b32_alphabet[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		out[o++] = b32_alphabet[(acc << (5 - bits)) & 31];
	out[o] = '\0';
}

/* Decodes exactly n bytes from len characters; -1 on a bad character or
 * non-zero padding bits (one token has one spelling, up to case). */
static int
b32_decode(const char *in, size_t len, uint8_t *out, size_t n)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	if (len != (n * 8 + 4) / 5)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		int v;

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c >= 'a' && c <= 'z')
			v = c - 'a';
		else if (c >= '2' && c <= '7')
			v = c - '2' + 26;
		else
			return -1;
		acc = (acc << 5) | (uint32_t)v;
		bits += 5;
		if (bits >= 8) {
			out[o++] = (uint8_t)(acc >> (bits - 8));
			bits -= 8;
		}
	}
	if (o != n || (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return 0;
}

static void
verp_mac(const uint8_t key[VERP_KEY_LEN], const uint8_t payload[12],
    const char *domain, uint8_t mac[VERP_MAC_LEN])
{
	uint8_t full[EVP_MAX_MD_SIZE];
	unsigned int full_len = 0;
	uint8_t buf[12 + 256 + 16];
	size_t dlen = strlen(domain), n = 0;

	memcpy(buf, "tern-verp-1", 11);
	n = 11;
	memcpy(buf + n, payload, 12);
	n += 12;
	if (dlen > 253)
		dlen = 253;
	for (size_t i = 0; i < dlen; i++) {
		char c = domain[i];

		buf[n++] = (uint8_t)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	HMAC(EVP_sha256(), key, VERP_KEY_LEN, buf, n, full, &full_len);
	memcpy(mac, full, VERP_MAC_LEN);
}

int
verp_encode(const uint8_t key[VERP_KEY_LEN], uint64_t qid, uint32_t rcpt,
    const char *domain, char *out, size_t size)
{
	uint8_t raw[12 + VERP_MAC_LEN];
	char token[VERP_TOKEN_LEN + 1];
	int n;

	for (int i = 0; i < 8; i++)
		raw[i] = (uint8_t)(qid >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		raw[8 + i] = (uint8_t)(rcpt >> (24 - 8 * i));
	verp_mac(key, raw, domain, raw + 12);
	b32_encode(raw, sizeof(raw), token);
	n = snprintf(out, size, VERP_PREFIX "%s@%s", token, domain);
	if (n < 0 || (size_t)n >= size)
		return -1;
	ascii_lowercase(out);
	return 0;
}

int
verp_decode(const uint8_t key[VERP_KEY_LEN], const char *address,
    uint64_t *qid, uint32_t *rcpt)
{
	uint8_t raw[12 + VERP_MAC_LEN], mac[VERP_MAC_LEN];
	const char *at, *local = address, *domain;
	char dom[256];
	size_t alen = strlen(address), dlen;

	if (alen > 0 && address[0] == '<') {
		if (alen < 2 || address[alen - 1] != '>')
			return -1;
		local++;
		alen -= 2;
	}
	at = memchr(local, '@', alen);
	if (at == NULL || !has_ascii_prefix_ci(local, VERP_PREFIX))
		return -1;
	if ((size_t)(at - local) != strlen(VERP_PREFIX) + VERP_TOKEN_LEN)
		return -1;
	domain = at + 1;
	dlen = alen - (size_t)(domain - local);
	if (dlen == 0 || dlen >= sizeof(dom) || memchr(domain, '@', dlen))
		return -1;
	memcpy(dom, domain, dlen);
	dom[dlen] = '\0';
	if (b32_decode(local + strlen(VERP_PREFIX), VERP_TOKEN_LEN, raw,
	    sizeof(raw)) == -1)
		return -1;
	verp_mac(key, raw, dom, mac);
	if (CRYPTO_memcmp(mac, raw + 12, VERP_MAC_LEN) != 0)
		return -1;
	*qid = 0;
	for (int i = 0; i < 8; i++)
		*qid = (*qid << 8) | raw[i];
	*rcpt = 0;
	for (int i = 0; i < 4; i++)
		*rcpt = (*rcpt << 8) | raw[8 + i];
	return 0;
}

/* Reads exactly VERP_KEY_LEN bytes; -1 when the file is short or long. */
static int
verp_key_read(const char *path, uint8_t key[VERP_KEY_LEN])
{
	uint8_t extra;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd == -1)
		return -1;
	while (got < VERP_KEY_LEN) {
		ssize_t r = read(fd, key + got, VERP_KEY_LEN - got);

		if (r <= 0) {
			if (r == -1 && errno == EINTR)
				continue;
			close(fd);
			errno = EINVAL;
			return -1;
		}
		got += (size_t)r;
	}
	if (read(fd, &extra, 1) != 0) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	close(fd);
	return 0;
}

int
verp_key_load(const char *dir, uint8_t key[VERP_KEY_LEN])
{
	char *path = xasprintf("%s/%s", dir, VERP_KEY_FILE);
	char *tmp = xasprintf("%s/.%s.%ld", dir, VERP_KEY_FILE, (long)getpid());
	int fd, dfd, rc = -1;

	if (verp_key_read(path, key) == 0) {
		rc = 0;
		goto out;
	}
	if (errno != ENOENT)
		goto out;
	/* First start: a new secret, durable before anyone uses it. */
	if (getrandom(key, VERP_KEY_LEN, 0) != VERP_KEY_LEN)
		goto out;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1)
		goto out;
	if (write(fd, key, VERP_KEY_LEN) != VERP_KEY_LEN || fsync(fd) == -1) {
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	/* link() fails if another process made the key meanwhile: use theirs. */
	if (link(tmp, path) == -1) {
		unlink(tmp);
		if (errno == EEXIST && verp_key_read(path, key) == 0)
			rc = 0;
		goto out;
	}
	unlink(tmp);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd != -1) {
		if (fsync(dfd) == 0)
			rc = 0;
		close(dfd);
	}
out:
	free(path);
	free(tmp);
	return rc;
}
