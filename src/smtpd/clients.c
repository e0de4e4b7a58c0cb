/*
 * clients.c - per-client-address bookkeeping of tern-smtpd: concurrent
 * sessions (max_sessions_per_client) and recent AUTH failures (which
 * lengthen the failure delay). Runs in tern-smtpd, unprivileged.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "smtpd.h"
#include "util.h"

#define BUCKETS			1024
#define FAILURE_MEMORY_SEC	600	/* failures older than this are forgiven */

struct client {
	char addr[64];
	unsigned sessions;
	unsigned auth_failures;
	int64_t last_failure;
	struct client *next;
};

static struct client *table[BUCKETS];
static unsigned failures_since_sweep;

/* Forgets idle clients whose failures are old: the table stays bounded
 * by recent activity, not by every address ever seen. */
static void
clients_sweep(void)
{
	int64_t now = tern_now();

	for (size_t i = 0; i < BUCKETS; i++)
		for (struct client **p = &table[i]; *p != NULL;) {
			struct client *c = *p;

			if (c->sessions == 0 &&
			    now - c->last_failure > FAILURE_MEMORY_SEC) {
				*p = c->next;
				free(c);
			} else {
				p = &c->next;
			}
		}
}

static unsigned
hash(const char *s)
{
	unsigned h = 5381;

	while (*s != '\0')
		h = h * 33 + (unsigned char)*s++;
	return h % BUCKETS;
}

static struct client *
client_find(const char *addr, bool create)
{
	struct client **head = &table[hash(addr)], *c;

	for (c = *head; c != NULL; c = c->next)
		if (strcmp(c->addr, addr) == 0)
			break;
	if (c != NULL && c->auth_failures > 0 &&
	    tern_now() - c->last_failure > FAILURE_MEMORY_SEC)
		c->auth_failures = 0;
	if (c == NULL && create) {
		c = xcalloc(1, sizeof(*c));
		tern_strlcpy(c->addr, addr, sizeof(c->addr));
		c->next = *head;
		*head = c;
	}
	return c;
}

static void
client_forget_if_idle(struct client *c)
{
	struct client **p;

	if (c->sessions > 0 || c->auth_failures > 0)
		return;
	for (p = &table[hash(c->addr)]; *p != c; p = &(*p)->next)
		;
	*p = c->next;
	free(c);
}

int
clients_add(const char *addr, unsigned max)
{
	struct client *c = client_find(addr, true);

	if (c->sessions >= max) {
		client_forget_if_idle(c);
		return -1;
	}
	c->sessions++;
	return 0;
}

void
clients_remove(const char *addr)
{
	struct client *c = client_find(addr, false);

	if (c == NULL)
		return;
	if (c->sessions > 0)
		c->sessions--;
	client_forget_if_idle(c);
}

void
clients_auth_failure(const char *addr)
{
	struct client *c;

	if (++failures_since_sweep >= 4096) {
		failures_since_sweep = 0;
		clients_sweep();
	}
	c = client_find(addr, true);
	c->auth_failures++;
	c->last_failure = tern_now();
}

unsigned
clients_auth_failures(const char *addr)
{
	struct client *c = client_find(addr, false);

	return c == NULL ? 0 : c->auth_failures;
}
