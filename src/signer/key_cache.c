/*
 * key_cache.c - libopendkim's dkim_eom parses the PEM private key of every
 * message (PEM_read_bio_PrivateKey, about 0.45 ms with OpenSSL 3's
 * decoders) and signs with a new RSA object whose Montgomery contexts and
 * blinding are built again (about 0.4 ms more): more than the 0.7 ms of
 * the RSA-2048 signature itself. dkim_sign() takes the key only as a
 * NUL-terminated string (it uses strlen), so a DER key, which always
 * holds NUL bytes, cannot be handed over instead.
 *
 * So tern-signer defines PEM_read_bio_PrivateKey itself and the dynamic
 * linker binds libopendkim's call to it: a memory BIO holding exactly the
 * text of a key loaded at start gets that key's EVP_PKEY (one more
 * reference, which libopendkim frees as its own), parsed once; anything
 * else goes to OpenSSL's function. libopendkim still does all of DKIM;
 * OpenSSL allows one key to sign on many threads at once. Runs in
 * tern-signer only (ternctl and the other daemons keep OpenSSL's).
 */
#include "autoconfig.h"

#include <dlfcn.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "key_cache.h"
#include "log.h"
#include "util.h"

#define KEY_CACHE_MAX	64

struct cached_key {
	char *pem;
	size_t len;
	EVP_PKEY *pkey;
};

typedef EVP_PKEY *(*pem_read_fn)(BIO *, EVP_PKEY **, pem_password_cb *,
    void *);

static struct cached_key cache[KEY_CACHE_MAX];
static size_t n_cached;
static atomic_ulong hits;

/* OpenSSL's own PEM_read_bio_PrivateKey, the next one after ours. */
static pem_read_fn
openssl_pem_read(void)
{
	static _Atomic(pem_read_fn) fn;
	pem_read_fn f = atomic_load(&fn);

	if (f == NULL) {
		void *sym = dlsym(RTLD_NEXT, "PEM_read_bio_PrivateKey");

		if (sym == NULL)
			log_fatal("PEM_read_bio_PrivateKey not found in libcrypto");
		/* POSIX lets a function pointer travel through void *. */
		memcpy(&f, &sym, sizeof(f));
		atomic_store(&fn, f);
	}
	return f;
}

static const struct cached_key *
key_cache_find(BIO *bp)
{
	char *data;
	long len;

	if (n_cached == 0 || BIO_method_type(bp) != BIO_TYPE_MEM)
		return NULL;
	len = BIO_get_mem_data(bp, &data);
	if (len <= 0)
		return NULL;
	for (size_t i = 0; i < n_cached; i++)
		if (cache[i].len == (size_t)len &&
		    memcmp(cache[i].pem, data, (size_t)len) == 0)
			return &cache[i];
	return NULL;
}

EVP_PKEY *
PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, pem_password_cb *cb, void *u)
{
	const struct cached_key *k = x == NULL ? key_cache_find(bp) : NULL;

	if (k == NULL || EVP_PKEY_up_ref(k->pkey) != 1)
		return openssl_pem_read()(bp, x, cb, u);
	atomic_fetch_add_explicit(&hits, 1, memory_order_relaxed);
	return k->pkey;
}

int
key_cache_add(const char *pem)
{
	size_t len = strlen(pem);
	EVP_PKEY *pkey = NULL;
	BIO *bio;

	if (n_cached == KEY_CACHE_MAX)
		return -1;
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio != NULL)
		pkey = openssl_pem_read()(bio, NULL, NULL, NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (pkey == NULL)
		return -1;
	cache[n_cached].pem = xstrdup(pem);
	cache[n_cached].len = len;
	cache[n_cached].pkey = pkey;
	n_cached++;
	return 0;
}

unsigned long
key_cache_hits(void)
{
	return atomic_load(&hits);
}
