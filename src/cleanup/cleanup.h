/*
 * cleanup.h - tern-cleanup's state shared by its files: the daemon, the
 * queue and its group committer, the signer and qmgr connections, the
 * client connections and their transactions. Runs as the queue writer.
 */
#ifndef TERN_CLEANUP_H
#define TERN_CLEANUP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <event2/util.h>

#include "daemon.h"
#include "ipc.h"
#include "peercred.h"
#include "queue.h"
#include "user_lookup.h"

struct txn;
struct signer_client;

struct cleanup {
	struct daemon d;
	struct queue *q;
	struct queue_committer *committer;
	struct signer_client *signer;	/* NULL when no domain has DKIM keys */
	struct ipc_client *qmgr;
	struct evconnlistener *listener;
	struct evconnlistener *public_listener;	/* run_dir/public/sendmail */
	/* run_dir/jail/smtpd/private/cleanup: only tern-smtpd reaches it. */
	struct evconnlistener *smtpd_listener;
	size_t n_clients;
	size_t n_local_clients;		/* of which on the sendmail socket */
	size_t n_ending;		/* transactions past END, not yet answered */
	size_t n_open;			/* transactions a client has open */
	struct event *ev_drain_timeout;	/* bounds a drain's wait for them */
	bool drain_expired;
	/* Commits finished on the committer thread, answered in the loop. */
	pthread_mutex_t done_lock;
	struct txn *done;
	struct event *ev_done;
	struct user_lookup *users;	/* names the sendmail socket's users */
	/* What the clients of the private socket show (peer_proof.h):
	 * [CLIENT_PROOF_PRIVATE - 1] run_dir/private, [CLIENT_PROOF_BOUNCE
	 * - 1] queue_dir/verp.key. */
	struct stat proofs[2];
	int private_fd;			/* ours, shown to tern-signer */
};

extern struct cleanup cleanup;

/* Local users' connections at once; more are closed at accept (their
 * sendmail then uses the maildrop). One transaction at a time each. */
#define LOCAL_CLIENTS_MAX	256

/* What a client of the private socket showed with its first frame. */
enum client_proof {
	CLIENT_PROOF_NONE = 0,		/* nothing: a sandboxed daemon? */
	CLIENT_PROOF_PRIVATE = 1,	/* run_dir/private: tern's own */
	CLIENT_PROOF_BOUNCE = 2,	/* queue_dir/verp.key: tern-bounce */
};

/* One connection from a client (smtpd, sendmail, bounce, ...). */
struct client {
	struct ipc_conn *conn;
	struct txn *txns;		/* open transactions, by reqid */
	/*
	 * A local user on the public sendmail socket: untrusted. What its
	 * BEGIN says about who and where it is counts for nothing; the
	 * kernel's word (peer) is recorded instead (see peercred.h).
	 */
	bool is_local_user;
	/*
	 * tern-smtpd, on the socket in its jail: network input, perhaps a
	 * compromised process. Its BEGIN may claim only the sources smtpd
	 * has (submission, inbound); any other is refused (txn.c).
	 */
	bool is_smtpd;
	/*
	 * On run_dir/private/cleanup, which tern-smtp (same user, sandboxed)
	 * can reach too: the first frame must carry a descriptor that shows
	 * who the client is; a DSN source needs tern-bounce's (txn.c).
	 */
	bool is_private;
	bool proof_seen;
	enum client_proof proof;
	struct peer_identity peer;
	struct event *idle;		/* local users: [smtpd] timeout */
	/* Local users: being named off the loop (user_lookup.h); no
	 * ipc_conn reads from it meanwhile. */
	bool naming;
	struct user_lookup_req lookup;
};

/* Handles one CLEANUP_* request of a client (txn.c). */
void txn_dispatch(struct client *cl, struct ipc_msg *m);
/* The client went away: its transactions are forgotten, except those
 * already committing, which finish unanswered. */
void txn_client_gone(struct client *cl);
/* True while one of the client's messages is past END (signing or
 * committing): the silence is ours, not the client's. */
bool txn_client_waits_for_us(const struct client *cl);
/* Answers the transactions whose commit finished (the ev_done event). */
void txn_commits_done(evutil_socket_t fd, short what, void *arg);

/* Drain: exit once no client has a transaction open and nothing is
 * past END, or when the drain's time is up. */
void cleanup_maybe_exit(void);

#endif
