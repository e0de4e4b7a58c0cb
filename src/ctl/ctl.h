/*
 * ctl.h - what ternctl's command files share: opening the queue read-only
 * for listings, and one request/reply round trip to tern-qmgr's control
 * socket for changes (IPC_CTL_*).
 */
#ifndef TERN_CTL_H
#define TERN_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ipc.h"
#include "queue.h"

/* Loads the config or prints its errors (NULL). */
struct tern_config *ctl_load_config(const char *path);
/* Opens the queue read-only; NULL after printing why. */
struct queue *ctl_open_queue(const struct tern_config *cfg);
/* Sends req (consumed) to qmgr and waits for its CTL_REPLY; prints the
 * reply's text. Returns the exit status: 0 ok, 1 refused or failed. */
int ctl_qmgr_request(const struct tern_config *cfg, struct ipc_out *req,
    uint64_t *count);
/* The change type (IPC_CTL_DELETE, _HOLD, _RELEASE) for each queue id in
 * ids, over one connection with up to 64 requests ahead of their replies;
 * prints each reply's text. 0 when all went through (with quiet_notfound,
 * a message gone meanwhile is no failure and not reported), else 1. */
int ctl_qmgr_each(const struct tern_config *cfg, uint16_t type, char **ids,
    size_t n, bool quiet_notfound);
/* "451 4.3.0 try later" from a reply's parts; the text alone when it
 * already starts with the code (some agents give the whole line). */
void ctl_format_reply(char *buf, size_t size, uint16_t code,
    const char *status, const char *text);
/* "2026-11-26 23:40:01.123" in UTC. */
void ctl_format_time(int64_t ms, char *buf, size_t size);

struct ub_ctx;
/* A libunbound context for the configured dns_servers (else the system's
 * resolvers); NULL after printing why. */
struct ub_ctx *ctl_resolver_new(const struct tern_config *cfg);
/* One TXT rdata as the text its character-strings join to (caller frees). */
char *ctl_txt_join(const unsigned char *rdata, size_t len, size_t *out_len);
/* Checks one DKIM selector of domain and prints one line, "WHO SELECTOR:
 * verdict" (WHO: the domain, or "domain dkim"); 0 when it is all right. */
int ctl_dkim_check_selector(struct ub_ctx *ctx, const char *who,
    const char *domain, const char *selector, const char *key_path);
struct cfg_domain;
/* Every selector of d (a domain without any is a problem); 0 when all
 * are all right. */
int ctl_dkim_check_domain(struct ub_ctx *ctx, const char *who,
    const struct cfg_domain *d);

int cmd_queue(const char *config_path, int argc, char **argv);
int cmd_suppression(const char *config_path, int argc, char **argv);
int cmd_events(const char *config_path, int argc, char **argv);
int cmd_trace(const char *config_path, int argc, char **argv);
int cmd_domain(const char *config_path, int argc, char **argv);

#endif
