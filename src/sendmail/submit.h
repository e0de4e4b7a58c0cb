/*
 * submit.h - a small blocking client of the cleanup submission protocol
 * (IPC_CLEANUP_* in ipc.h) for programs that hand over one message and
 * wait: the sendmail command (run_dir/public/sendmail) and tern-pickup
 * (run_dir/private/cleanup). Requests go one at a time, each waits for
 * its reply with a timeout. Runs as the caller.
 */
#ifndef TERN_SENDMAIL_SUBMIT_H
#define TERN_SENDMAIL_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct maildrop_msg;

/* One reply from cleanup. */
struct submit_reply {
	unsigned code;			/* SMTP code; 0: no reply (connection lost) */
	char status[16];		/* enhanced status */
	char text[512];
	char qid[32];
};

/* What came of one submission. */
struct submit_result {
	struct submit_reply begin;	/* the reply to BEGIN */
	struct submit_reply *rcpt;	/* one per recipient */
	size_t n_rcpt;
	size_t n_accepted;
	struct submit_reply end;	/* the reply to END (code 0 if not sent) */
	bool lost;			/* the connection failed midway */
};

enum submit_outcome {
	SUBMIT_COMMITTED,		/* END got 2xx: durably queued */
	SUBMIT_REFUSED,			/* a permanent refusal (5xx) */
	SUBMIT_TEMPFAIL,		/* a temporary refusal (4xx) */
	SUBMIT_LOST,			/* the daemon went away: nothing acknowledged */
};

struct submit_conn;

/* How long submit_connect() waits for the daemon's HELLO at most. */
#define SUBMIT_HELLO_TIMEOUT_MS	(15 * 1000)

/* Connects and exchanges HELLO; NULL when nobody listens or nobody
 * answers HELLO in time (errno set): nothing was sent then. */
struct submit_conn *submit_connect(const char *path, const char *name,
    int timeout_ms);
void submit_close(struct submit_conn *c);
/* The next frame carries fd (closed once sent): on run_dir/private/cleanup
 * a descriptor of run_dir/private shows tern-cleanup that we are
 * tern-pickup, not a sandboxed daemon of tern's user (peer_proof.h). */
void submit_set_proof(struct submit_conn *c, int fd);

/*
 * Submits one message: BEGIN (source, auth user as given; cleanup may
 * override them for the public socket), RCPT for each recipient, the
 * content in DATA chunks, END. Recipients refused with 5xx are skipped
 * (their replies say why); the message goes on if any was accepted.
 */
enum submit_outcome submit_message(struct submit_conn *c, uint8_t source,
    const char *auth_user, const struct maildrop_msg *m,
    struct submit_result *res);
void submit_result_free(struct submit_result *res);

/*
 * The same conversation step by step (sendmail -bs relays each SMTP
 * command as it comes). Each returns -1 when the connection failed
 * (nothing was acknowledged), else 0 with cleanup's reply in *r.
 */
int submit_begin(struct submit_conn *c, uint8_t source, const char *auth_user,
    const struct maildrop_msg *envelope, uint32_t *reqid,
    struct submit_reply *r);
int submit_rcpt(struct submit_conn *c, uint32_t reqid, const char *address,
    uint8_t notify, struct submit_reply *r);
/* Sends the content in DATA chunks, then END; *r is END's reply. */
int submit_content(struct submit_conn *c, uint32_t reqid, const char *data,
    size_t len, struct submit_reply *r);
void submit_abort(struct submit_conn *c, uint32_t reqid);
enum submit_outcome submit_outcome_of(unsigned code);

#endif
