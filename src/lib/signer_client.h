/*
 * signer_client.h - asks tern-signer for DKIM-Signature header fields over
 * its Unix socket (IPC_SIGN_* in ipc.h). Many jobs share one connection,
 * which comes back by itself when ternd restarts the signer. Used by
 * tern-cleanup; needs no privilege.
 */
#ifndef TERN_SIGNER_CLIENT_H
#define TERN_SIGNER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct signer_client;
struct signer_job;

/*
 * The outcome of a job: status is enum sign_status (ipc.h), error a text
 * for logs ("" on success), headers the complete "DKIM-Signature: ..."
 * fields (folded, no trailing CRLF) to prepend to the message in order.
 * Everything is valid during the call only. The job is gone afterwards.
 * The callback may start or abort other jobs, but not free the client.
 */
typedef void (*signer_done_fn)(void *arg, int status, const char *error,
    const char *const *headers, size_t n_headers);

/* Connects to the signer socket at socket_path (and reconnects). The
 * first frame of each connection carries a copy of proof_fd (a
 * descriptor of run_dir/private, which tern-signer asks for; it stays
 * the caller's). */
struct signer_client *signer_client_new(struct event_base *base,
    const char *socket_path, int proof_fd);
/* Frees the client; jobs still open are dropped without a callback. */
void signer_client_free(struct signer_client *sc);
/* Whether the connection to the signer is up (jobs begun now can work). */
bool signer_client_is_up(const struct signer_client *sc);
/* Bytes queued to the signer but not yet written (for backpressure). */
size_t signer_client_pending(const struct signer_client *sc);

/* How long END waits for the reply before SIGN_TEMPFAIL (default 30 s). */
void signer_client_set_timeout(struct signer_client *sc, unsigned seconds);

/* Starts a job for domain (the From: domain, lower case). Never NULL. */
struct signer_job *signer_job_begin(struct signer_client *sc,
    const char *domain, signer_done_fn done, void *arg);
/* Feeds message bytes (headers and body as queued, CRLF line ends). */
void signer_job_data(struct signer_job *job, const void *buf, size_t len);
/* The message is complete: done() is called exactly once, later (never
 * inside this call), also when the signer is unreachable, the connection
 * is lost or the reply does not come in time (SIGN_TEMPFAIL). */
void signer_job_end(struct signer_job *job);
/* Forgets the job, before or after end; done() is not called. */
void signer_job_abort(struct signer_job *job);

#endif
