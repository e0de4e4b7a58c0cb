/*
 * arena.c - an allocation arena for libternq: copies of records that must
 * outlive an LMDB value (inside write transactions, where a put may move
 * the bytes, and in results handed to callers). Freed all at once.
 * Linked into every program that uses the queue; no privilege.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "queue_int.h"
#include "util.h"

#define QARENA_BLOCK	(16 * 1024)

struct qarena_block {
	struct qarena_block *next;
	size_t used;
	size_t size;
	max_align_t data[];
};

void
qarena_init(struct qarena *a)
{
	a->head = NULL;
}

void
qarena_free(struct qarena *a)
{
	struct qarena_block *b, *next;

	for (b = a->head; b != NULL; b = next) {
		next = b->next;
		free(b);
	}
	a->head = NULL;
}

void *
qarena_alloc(struct qarena *a, size_t n)
{
	struct qarena_block *b = a->head;
	size_t need = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) *
	    sizeof(max_align_t);
	void *p;

	if (need == 0)
		need = sizeof(max_align_t);
	if (b == NULL || b->size - b->used < need) {
		size_t size = need > QARENA_BLOCK ? need : QARENA_BLOCK;

		b = xmalloc(sizeof(*b) + size);
		b->used = 0;
		b->size = size;
		/* A big one-off block goes behind the current one, so the
		 * current block's free space stays in use. */
		if (need > QARENA_BLOCK && a->head != NULL) {
			b->next = a->head->next;
			a->head->next = b;
		} else {
			b->next = a->head;
			a->head = b;
		}
	}
	p = (char *)b->data + b->used;
	b->used += need;
	return p;
}

void *
qarena_dup(struct qarena *a, const void *p, size_t n)
{
	void *d = qarena_alloc(a, n);

	if (n > 0)
		memcpy(d, p, n);
	return d;
}

char *
qarena_strdup(struct qarena *a, const char *s)
{
	return qarena_dup(a, s ? s : "", strlen(s ? s : "") + 1);
}

void
qcopy_msg_info(struct qarena *a, struct queue_msg_info *dst,
    const struct queue_msg_info *src)
{
	*dst = *src;
	dst->sender = qarena_strdup(a, src->sender);
	dst->envid = qarena_strdup(a, src->envid);
	dst->auth_user = qarena_strdup(a, src->auth_user);
	dst->client_addr = qarena_strdup(a, src->client_addr);
	dst->client_name = qarena_strdup(a, src->client_name);
	dst->stream = qarena_strdup(a, src->stream);
	dst->message_id = qarena_strdup(a, src->message_id);
}

void
qcopy_rcpt_info(struct qarena *a, struct queue_rcpt_info *dst,
    const struct queue_rcpt_info *src)
{
	*dst = *src;
	dst->address = qarena_strdup(a, src->address);
	dst->orcpt = qarena_strdup(a, src->orcpt);
	dst->last_status = qarena_strdup(a, src->last_status);
	dst->last_text = qarena_strdup(a, src->last_text);
	dst->last_host = qarena_strdup(a, src->last_host);
	dst->bounce_class = qarena_strdup(a, src->bounce_class);
}
