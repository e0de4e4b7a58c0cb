/*
 * dkim_key.h - DKIM private keys on disk and their public DNS records:
 * load and check a key (RSA of at least 2048 bits or Ed25519), the TXT
 * record to publish, and the p= of a published record. OpenSSL only.
 * Used by tern-signer (before its privilege drop) and ternctl dkim.
 */
#ifndef TERN_DKIM_KEY_H
#define TERN_DKIM_KEY_H

#include <stddef.h>

#define DKIM_RSA_MIN_BITS	2048
#define DKIM_KEY_MAX_FILE	(64 * 1024)

enum dkim_key_alg {
	DKIM_KEY_RSA,			/* rsa-sha256 */
	DKIM_KEY_ED25519,		/* ed25519-sha256 (RFC 8463) */
};

/* A private key that passed the checks. */
struct dkim_key {
	enum dkim_key_alg alg;
	int bits;
	char *pem;			/* PKCS#8 PEM, as libopendkim wants it */
	char *public_b64;		/* the p= value of its DNS record */
};

/*
 * Reads the PEM private key at path and checks its type and size.
 * Returns 0, or -1 with *why set to a text for logs (caller frees).
 */
int dkim_key_load(const char *path, struct dkim_key *key, char **why);
void dkim_key_clear(struct dkim_key *key);

/* "rsa" or "ed25519": the k= tag. */
const char *dkim_key_alg_name(enum dkim_key_alg alg);

/* The TXT record value: "v=DKIM1; k=rsa; p=..." (caller frees). */
char *dkim_key_record(const struct dkim_key *key);

/*
 * The record as a zone file line: NAME. IN TXT "..." "..." with the
 * value split into strings of at most 255 bytes (caller frees).
 */
char *dkim_key_zone_line(const char *selector, const char *domain,
    const char *record);

/*
 * Reads the tags of a published DKIM key record (RFC 6376 3.6.1).
 * On success *k is the key type ("rsa" when absent) and *p the public key
 * with white space removed (both caller frees; *p may be "" for a revoked
 * key). Returns -1 with *why (static text) for a malformed record.
 */
int dkim_record_parse(const char *record, size_t len, char **k, char **p,
    const char **why);

#endif
