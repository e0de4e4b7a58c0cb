/*
 * verp.h - the return path (VERP) address of a message to one recipient:
 * b-<token>@<return_path domain>, where the token is base32 (lower case,
 * so a server that changes case breaks nothing) of
 *   u64 queue id, u32 recipient index, 10 bytes of HMAC-SHA256
 * keyed by a secret made at first start (queue_dir/verp.key, 32 random
 * bytes, mode 0600). The HMAC also covers the domain, so a token is
 * tamper-evident and bound to its domain. The recipient's address is
 * found from the queue id and index in the events (which outlive the
 * message for [queue] event_retention). Pure but for the key file; used
 * by tern-qmgr (encoding the sender of a delivery job) and tern-bounce
 * (decoding inbound feedback).
 */
#ifndef TERN_BOUNCE_VERP_H
#define TERN_BOUNCE_VERP_H

#include <stddef.h>
#include <stdint.h>

#define VERP_KEY_LEN		32
#define VERP_MAC_LEN		10
#define VERP_TOKEN_LEN		36	/* base32 of 8 + 4 + 10 bytes */
#define VERP_PREFIX		"b-"
#define VERP_KEY_FILE		"verp.key"

/* Reads dir/verp.key, creating it (durably, 0600) when missing; 0 or -1. */
int verp_key_load(const char *dir, uint8_t key[VERP_KEY_LEN]);

/* Writes "b-<token>@domain" into out; -1 when it does not fit. */
int verp_encode(const uint8_t key[VERP_KEY_LEN], uint64_t qid, uint32_t rcpt,
    const char *domain, char *out, size_t size);

/*
 * Decodes a return path address (any case, with or without <>). Returns
 * 0 with the queue id and recipient index, or -1 when it is not one of
 * ours or was changed (wrong MAC, wrong domain, bad length or alphabet).
 */
int verp_decode(const uint8_t key[VERP_KEY_LEN], const char *address,
    uint64_t *qid, uint32_t *rcpt);

#endif
