/*
 * signer_stub.c - TEMPORARY stand-in for the signer client until the
 * signer branch is merged: every job fails with SIGN_TEMPFAIL, so a
 * message that needs a signature is deferred, never sent unsigned.
 */
#include "autoconfig.h"

#include <stdlib.h>

#include "signer_client.h"
#include "util.h"

struct signer_client {
	int unused;
};

struct signer_job {
	signer_done_fn done;
	void *arg;
};

struct signer_client *
signer_client_new(struct event_base *base, const char *socket_path)
{
	(void)base;
	(void)socket_path;
	return xcalloc(1, sizeof(struct signer_client));
}

struct signer_job *
signer_job_begin(struct signer_client *sc, const char *domain,
    signer_done_fn done, void *arg)
{
	struct signer_job *j = xcalloc(1, sizeof(*j));

	(void)sc;
	(void)domain;
	j->done = done;
	j->arg = arg;
	return j;
}

void
signer_job_data(struct signer_job *job, const void *buf, size_t len)
{
	(void)job;
	(void)buf;
	(void)len;
}

void
signer_job_end(struct signer_job *job)
{
	signer_done_fn done = job->done;
	void *arg = job->arg;

	free(job);
	done(arg, SIGN_TEMPFAIL, "tern-signer is not available in this build",
	    NULL, 0);
}

void
signer_job_abort(struct signer_job *job)
{
	free(job);
}
