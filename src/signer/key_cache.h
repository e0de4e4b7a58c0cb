/*
 * key_cache.h - the DKIM private keys tern-signer loaded, parsed once and
 * handed to libopendkim ready to sign (see key_cache.c for why and how).
 */
#ifndef TERN_KEY_CACHE_H
#define TERN_KEY_CACHE_H

/*
 * Parses pem (as loaded by dkim_key_load) and keeps the key for every
 * later dkim_eom that signs with exactly this text. Call before the
 * signing threads start; the cache is read-only afterwards.
 * Returns 0, or -1 when OpenSSL cannot parse it (libopendkim then parses
 * it per message as usual).
 */
int key_cache_add(const char *pem);

/* How many times a cached key was handed out (for the log and tests). */
unsigned long key_cache_hits(void);

#endif
