/*
 * dkim_key.c - loading and checking DKIM private keys, and the DNS
 * records that publish their public halves (see dkim_key.h).
 * Runs in tern-signer as root before the privilege drop, and in ternctl.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dkim_key.h"
#include "util.h"

/* Never prompt for a passphrase: an encrypted key is an error. */
static int
dkim_key_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static char *
base64_encode(const unsigned char *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

/* Reads a whole small file; NULL with errno set. */
static char *
read_small_file(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd == -1)
		return NULL;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_size > DKIM_KEY_MAX_FILE) {
		int saved = errno;

		if (fstat(fd, &st) == -1)
			errno = saved;
		else
			errno = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		errno = EIO;
		return NULL;
	}
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

static char *
public_b64(EVP_PKEY *pkey, enum dkim_key_alg alg)
{
	unsigned char *der = NULL, raw[64];
	size_t rawlen = sizeof(raw);
	char *b64;
	int n;

	if (alg == DKIM_KEY_ED25519) {
		/* RFC 8463: the raw 32-byte key, not a SubjectPublicKeyInfo. */
		if (EVP_PKEY_get_raw_public_key(pkey, raw, &rawlen) != 1)
			return NULL;
		return base64_encode(raw, rawlen);
	}
	n = i2d_PUBKEY(pkey, &der);
	if (n <= 0)
		return NULL;
	b64 = base64_encode(der, (size_t)n);
	OPENSSL_free(der);
	return b64;
}

static char *
pkcs8_pem(EVP_PKEY *pkey)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *pem = NULL;
	long n;

	if (bio == NULL)
		return NULL;
	if (PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) == 1) {
		n = BIO_get_mem_data(bio, &data);
		pem = xmalloc((size_t)n + 1);
		memcpy(pem, data, (size_t)n);
		pem[n] = '\0';
	}
	BIO_free(bio);
	return pem;
}

int
dkim_key_load(const char *path, struct dkim_key *key, char **why)
{
	EVP_PKEY *pkey = NULL;
	BIO *bio;
	char *text;
	size_t len;
	int rc = -1;

	memset(key, 0, sizeof(*key));
	text = read_small_file(path, &len);
	if (text == NULL) {
		*why = xasprintf("cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	bio = BIO_new_mem_buf(text, (int)len);
	if (bio != NULL)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, dkim_key_no_passphrase,
		    NULL);
	BIO_free(bio);
	explicit_bzero(text, len);
	free(text);
	ERR_clear_error();
	if (pkey == NULL) {
		*why = xasprintf("%s: not a PEM private key (or encrypted)", path);
		return -1;
	}
	switch (EVP_PKEY_get_id(pkey)) {
	case EVP_PKEY_RSA:
		key->alg = DKIM_KEY_RSA;
		key->bits = EVP_PKEY_get_bits(pkey);
		if (key->bits < DKIM_RSA_MIN_BITS) {
			*why = xasprintf("%s: RSA key of %d bits is too short "
			    "(at least %d)", path, key->bits, DKIM_RSA_MIN_BITS);
			goto out;
		}
		break;
	case EVP_PKEY_ED25519:
		key->alg = DKIM_KEY_ED25519;
		key->bits = 256;
		break;
	default:
		*why = xasprintf("%s: key type %s cannot sign DKIM (RSA or "
		    "Ed25519)", path, OBJ_nid2sn(EVP_PKEY_get_id(pkey)));
		goto out;
	}
	key->pem = pkcs8_pem(pkey);
	key->public_b64 = public_b64(pkey, key->alg);
	if (key->pem == NULL || key->public_b64 == NULL) {
		*why = xasprintf("%s: cannot encode the key", path);
		goto out;
	}
	rc = 0;
out:
	EVP_PKEY_free(pkey);
	if (rc == -1)
		dkim_key_clear(key);
	return rc;
}

void
dkim_key_clear(struct dkim_key *key)
{
	if (key->pem != NULL) {
		explicit_bzero(key->pem, strlen(key->pem));
		free(key->pem);
	}
	free(key->public_b64);
	memset(key, 0, sizeof(*key));
}

const char *
dkim_key_alg_name(enum dkim_key_alg alg)
{
	return alg == DKIM_KEY_ED25519 ? "ed25519" : "rsa";
}

char *
dkim_key_record(const struct dkim_key *key)
{
	return xasprintf("v=DKIM1; k=%s; p=%s", dkim_key_alg_name(key->alg),
	    key->public_b64);
}

char *
dkim_key_zone_line(const char *selector, const char *domain,
    const char *record)
{
	size_t len = strlen(record);
	char *line = xasprintf("%s._domainkey.%s. IN TXT", selector, domain);

	/* A character-string holds at most 255 bytes (RFC 1035 3.3). */
	for (size_t off = 0; off < len; off += 255) {
		char *next = xasprintf("%s \"%.*s\"", line,
		    (int)(len - off < 255 ? len - off : 255), record + off);

		free(line);
		line = next;
	}
	return line;
}

static bool
is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int
dkim_record_parse(const char *record, size_t len, char **k, char **p,
    const char **why)
{
	char *key_type = NULL, *pub = NULL;
	size_t i = 0;
	bool first = true;

	*k = *p = NULL;
	if (memchr(record, '\0', len) != NULL) {
		*why = "the record contains a NUL byte";
		return -1;
	}
	while (i < len) {
		size_t name_start, name_end, val_start, val_end;

		while (i < len && is_fws(record[i]))
			i++;
		if (i == len)
			break;
		name_start = i;
		while (i < len && (isalnum((unsigned char)record[i]) ||
		    record[i] == '_'))
			i++;
		name_end = i;
		while (i < len && is_fws(record[i]))
			i++;
		if (name_end == name_start ||
		    !isalpha((unsigned char)record[name_start]) || i == len ||
		    record[i] != '=') {
			*why = "malformed tag list";
			goto fail;
		}
		i++;
		val_start = i;
		while (i < len && record[i] != ';')
			i++;
		val_end = i;
		if (i < len)
			i++;		/* the ';' */
		while (val_end > val_start && is_fws(record[val_end - 1]))
			val_end--;
		while (val_start < val_end && is_fws(record[val_start]))
			val_start++;

		size_t nlen = name_end - name_start;
		const char *name = record + name_start;

		if (nlen == 1 && name[0] == 'v') {
			if (!first || val_end - val_start != 5 ||
			    memcmp(record + val_start, "DKIM1", 5) != 0) {
				*why = "v= must come first and be DKIM1";
				goto fail;
			}
		} else if (nlen == 1 && name[0] == 'k') {
			if (key_type != NULL) {
				*why = "duplicate k= tag";
				goto fail;
			}
			key_type = xstrndup(record + val_start, val_end - val_start);
		} else if (nlen == 1 && name[0] == 'p') {
			if (pub != NULL) {
				*why = "duplicate p= tag";
				goto fail;
			}
			pub = xmalloc(val_end - val_start + 1);
			size_t n = 0;
			for (size_t j = val_start; j < val_end; j++) {
				char c = record[j];

				if (is_fws(c))
					continue;
				if (!isalnum((unsigned char)c) && c != '+' &&
				    c != '/' && c != '=') {
					*why = "p= is not base64";
					goto fail;
				}
				pub[n++] = c;
			}
			pub[n] = '\0';
		}
		first = false;
	}
	if (pub == NULL) {
		*why = "no p= tag";
		goto fail;
	}
	*k = key_type != NULL ? key_type : xstrdup("rsa");
	*p = pub;
	return 0;
fail:
	free(key_type);
	free(pub);
	return -1;
}
