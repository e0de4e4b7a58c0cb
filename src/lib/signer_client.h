/*
 * signer_client.h - tern-cleanup's connection to tern-signer
 * (run_dir/private/signer). TEMPORARY copy of the agreed interface until
 * the signer branch is merged; the signer's own header replaces it.
 */
#ifndef TERN_SIGNER_CLIENT_H
#define TERN_SIGNER_CLIENT_H

#include <stddef.h>

struct event_base;
struct signer_client;
struct signer_job;

#define SIGN_OK		0
#define SIGN_NO_KEY	1
#define SIGN_TEMPFAIL	2

typedef void (*signer_done_fn)(void *arg, int status, const char *error,
    const char *const *headers, size_t n_headers);

struct signer_client *signer_client_new(struct event_base *base,
    const char *socket_path);
struct signer_job *signer_job_begin(struct signer_client *sc,
    const char *domain, signer_done_fn done, void *arg);
void signer_job_data(struct signer_job *job, const void *buf, size_t len);
/* done() follows exactly once. */
void signer_job_end(struct signer_job *job);
void signer_job_abort(struct signer_job *job);

#endif
