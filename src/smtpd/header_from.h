/*
 * header_from.h - finds the From: fields of a message's header block and
 * checks the domain of every address in them, so a submission client can
 * only send as domains configured for tern. Pure code on untrusted bytes.
 */
#ifndef TERN_HEADER_FROM_H
#define TERN_HEADER_FROM_H

#include <stdbool.h>
#include <stddef.h>

/* Header bytes kept for the check; a longer header block is refused. */
#define HEADER_SCAN_MAX		(64 * 1024)

typedef bool (*domain_pred)(const char *domain, void *arg);

/*
 * Checks hdr[0..len), the header block (up to, not including, the empty
 * line). Returns 0 when every From: address has a domain for which
 * is_ours says true (also when there is no From: at all: cleanup adds
 * one from the envelope sender); -1 otherwise (a foreign domain, an
 * address without a domain), with the offending address or a reason in
 * bad.
 */
int header_check_from(const char *hdr, size_t len, domain_pred is_ours,
    void *arg, char *bad, size_t badsize);

#endif
