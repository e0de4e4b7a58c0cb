/*
 * record.c - field-by-field encoding of the queue's keys and values
 * (schema 1, SCHEMA.md). Decoders trust nothing: every length, range and
 * string is checked and leftover bytes make a value corrupt.
 * Linked into every program that uses the queue; no privilege.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "util.h"

/* ---- output buffer ---- */

void
qbuf_init(struct qbuf *b)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

void
qbuf_reset(struct qbuf *b)
{
	b->len = 0;
}

void
qbuf_free(struct qbuf *b)
{
	free(b->p);
	qbuf_init(b);
}

/* Makes room for n more bytes. */
static uint8_t *
qbuf_grow(struct qbuf *b, size_t n)
{
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap - b->len < n)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	b->len += n;
	return b->p + b->len - n;
}

void
qbe_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void
qbe_put_u64(uint8_t *p, uint64_t v)
{
	qbe_put_u32(p, (uint32_t)(v >> 32));
	qbe_put_u32(p + 4, (uint32_t)v);
}

uint32_t
qbe_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

uint64_t
qbe_get_u64(const uint8_t *p)
{
	return (uint64_t)qbe_get_u32(p) << 32 | qbe_get_u32(p + 4);
}

void
qbuf_put_u8(struct qbuf *b, uint8_t v)
{
	*qbuf_grow(b, 1) = v;
}

void
qbuf_put_u16(struct qbuf *b, uint16_t v)
{
	uint8_t *p = qbuf_grow(b, 2);

	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

void
qbuf_put_u32(struct qbuf *b, uint32_t v)
{
	qbe_put_u32(qbuf_grow(b, 4), v);
}

void
qbuf_put_u64(struct qbuf *b, uint64_t v)
{
	qbe_put_u64(qbuf_grow(b, 8), v);
}

void
qbuf_put_i64(struct qbuf *b, int64_t v)
{
	qbuf_put_u64(b, (uint64_t)v);
}

void
qbuf_put_str(struct qbuf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n > 65534)
		n = 65534;
	qbuf_put_u16(b, (uint16_t)(n + 1));
	memcpy(qbuf_grow(b, n), s ? s : "", n);
	qbuf_put_u8(b, 0);
}

void
qbuf_put_data(struct qbuf *b, const void *p, size_t n)
{
	qbuf_put_u32(b, (uint32_t)n);
	if (n > 0)
		memcpy(qbuf_grow(b, n), p, n);
}

/* ---- input reader: the first failure sticks ---- */

struct qin {
	const uint8_t *p;
	size_t len;
	size_t pos;
	bool bad;
};

static void
qin_init(struct qin *in, const void *p, size_t n)
{
	in->p = p;
	in->len = n;
	in->pos = 0;
	in->bad = false;
}

static const uint8_t *
qin_take(struct qin *in, size_t n)
{
	const uint8_t *p;

	if (in->bad || in->len - in->pos < n) {
		in->bad = true;
		return NULL;
	}
	p = in->p + in->pos;
	in->pos += n;
	return p;
}

static uint8_t
qin_u8(struct qin *in)
{
	const uint8_t *p = qin_take(in, 1);

	return p ? p[0] : 0;
}

static uint16_t
qin_u16(struct qin *in)
{
	const uint8_t *p = qin_take(in, 2);

	return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

static uint32_t
qin_u32(struct qin *in)
{
	const uint8_t *p = qin_take(in, 4);

	return p ? qbe_get_u32(p) : 0;
}

static uint64_t
qin_u64(struct qin *in)
{
	const uint8_t *p = qin_take(in, 8);

	return p ? qbe_get_u64(p) : 0;
}

static int64_t
qin_i64(struct qin *in)
{
	return (int64_t)qin_u64(in);
}

/* A str field: NUL-terminated, no NUL inside; "" when bad. */
static const char *
qin_str(struct qin *in)
{
	uint16_t n = qin_u16(in);
	const uint8_t *p;

	if (n == 0) {
		in->bad = true;
		return "";
	}
	p = qin_take(in, n);
	if (p == NULL || p[n - 1] != 0 || memchr(p, 0, n - 1) != NULL) {
		in->bad = true;
		return "";
	}
	return (const char *)p;
}

static const void *
qin_data(struct qin *in, size_t *n)
{
	uint32_t len = qin_u32(in);
	const uint8_t *p = qin_take(in, len);

	*n = p ? len : 0;
	return p;
}

/* The value's version byte, then the fields; checked at the end. */
static int
qin_end(struct qin *in)
{
	return in->bad || in->pos != in->len ? -1 : 0;
}

static int64_t
clamp_time(int64_t t)
{
	return t < 0 ? 0 : t;
}

/* ---- keys ---- */

void
qkey_msg(uint8_t k[QKEY_MSG_LEN], uint64_t qid)
{
	qbe_put_u64(k, qid);
}

void
qkey_rcpt(uint8_t k[QKEY_RCPT_LEN], uint64_t qid, uint32_t index)
{
	qbe_put_u64(k, qid);
	qbe_put_u32(k + 8, index);
}

void
qkey_sched(uint8_t k[QKEY_SCHED_LEN], int64_t due_ms, uint64_t qid,
    uint32_t index)
{
	qbe_put_u64(k, (uint64_t)clamp_time(due_ms));
	qbe_put_u64(k + 8, qid);
	qbe_put_u32(k + 16, index);
}

void
qkey_seq(uint8_t k[QKEY_SEQ_LEN], uint64_t seq)
{
	qbe_put_u64(k, seq);
}

void
qkey_evidx(uint8_t k[QKEY_EVIDX_LEN], uint64_t qid, uint64_t seq)
{
	qbe_put_u64(k, qid);
	qbe_put_u64(k + 8, seq);
}

int
qkey_msg_decode(const void *k, size_t n, uint64_t *qid)
{
	if (n != QKEY_MSG_LEN)
		return -1;
	*qid = qbe_get_u64(k);
	return 0;
}

int
qkey_rcpt_decode(const void *k, size_t n, uint64_t *qid, uint32_t *index)
{
	if (n != QKEY_RCPT_LEN)
		return -1;
	*qid = qbe_get_u64(k);
	*index = qbe_get_u32((const uint8_t *)k + 8);
	return 0;
}

int
qkey_sched_decode(const void *k, size_t n, struct queue_sched_entry *e)
{
	const uint8_t *p = k;
	uint64_t due;

	if (n != QKEY_SCHED_LEN)
		return -1;
	due = qbe_get_u64(p);
	if (due > INT64_MAX)
		return -1;
	e->due_ms = (int64_t)due;
	e->qid = qbe_get_u64(p + 8);
	e->rcpt = qbe_get_u32(p + 16);
	return 0;
}

int
qkey_seq_decode(const void *k, size_t n, uint64_t *seq)
{
	if (n != QKEY_SEQ_LEN)
		return -1;
	*seq = qbe_get_u64(k);
	return 0;
}

int
qkey_evidx_decode(const void *k, size_t n, uint64_t *qid, uint64_t *seq)
{
	if (n != QKEY_EVIDX_LEN)
		return -1;
	*qid = qbe_get_u64(k);
	*seq = qbe_get_u64((const uint8_t *)k + 8);
	return 0;
}

/* ---- message ---- */

#define QMSG_F_SMTPUTF8	0x01
#define QMSG_F_HOLD	0x02

void
qrec_encode_msg(struct qbuf *b, const struct queue_msg_info *m)
{
	qbuf_put_u8(b, QREC_VERSION);
	qbuf_put_i64(b, clamp_time(m->arrival_ms));
	qbuf_put_u64(b, m->size);
	qbuf_put_u32(b, m->n_chunks);
	qbuf_put_u8(b, m->body);
	qbuf_put_u8(b, m->source);
	qbuf_put_u8(b, m->ret);
	qbuf_put_u8(b, (m->smtputf8 ? QMSG_F_SMTPUTF8 : 0) |
	    (m->hold ? QMSG_F_HOLD : 0));
	qbuf_put_u32(b, m->n_rcpt);
	qbuf_put_u32(b, m->n_delivered);
	qbuf_put_u32(b, m->n_failed);
	qbuf_put_u32(b, m->n_dsn_pending);
	qbuf_put_str(b, m->sender);
	qbuf_put_str(b, m->envid);
	qbuf_put_str(b, m->auth_user);
	qbuf_put_str(b, m->client_addr);
	qbuf_put_str(b, m->client_name);
	qbuf_put_str(b, m->stream);
	qbuf_put_str(b, m->message_id);
}

int
qrec_decode_msg(const void *p, size_t n, uint64_t qid, struct queue_msg_info *m)
{
	struct qin in;
	uint8_t flags;
	uint64_t want_chunks;

	qin_init(&in, p, n);
	memset(m, 0, sizeof(*m));
	if (qin_u8(&in) != QREC_VERSION)
		return -1;
	m->qid = qid;
	m->arrival_ms = qin_i64(&in);
	m->size = qin_u64(&in);
	m->n_chunks = qin_u32(&in);
	m->body = qin_u8(&in);
	m->source = qin_u8(&in);
	m->ret = qin_u8(&in);
	flags = qin_u8(&in);
	m->smtputf8 = (flags & QMSG_F_SMTPUTF8) != 0;
	m->hold = (flags & QMSG_F_HOLD) != 0;
	m->n_rcpt = qin_u32(&in);
	m->n_delivered = qin_u32(&in);
	m->n_failed = qin_u32(&in);
	m->n_dsn_pending = qin_u32(&in);
	m->sender = qin_str(&in);
	m->envid = qin_str(&in);
	m->auth_user = qin_str(&in);
	m->client_addr = qin_str(&in);
	m->client_name = qin_str(&in);
	m->stream = qin_str(&in);
	m->message_id = qin_str(&in);
	if (qin_end(&in) == -1)
		return -1;
	want_chunks = m->size / QUEUE_CHUNK_SIZE +
	    (m->size % QUEUE_CHUNK_SIZE != 0);
	if (m->arrival_ms < 0 || m->n_chunks != want_chunks ||
	    m->body > CLEANUP_BODY_BINARYMIME || m->source > CLEANUP_SOURCE_HTTP ||
	    m->ret > CLEANUP_RET_HDRS ||
	    (flags & ~(QMSG_F_SMTPUTF8 | QMSG_F_HOLD)) != 0 ||
	    m->n_rcpt == 0 || m->n_rcpt > QUEUE_RCPT_MAX ||
	    m->n_delivered > m->n_rcpt || m->n_failed > m->n_rcpt ||
	    m->n_delivered + m->n_failed > m->n_rcpt ||
	    m->n_dsn_pending > m->n_rcpt)
		return -1;
	return 0;
}

/* ---- recipient ---- */

void
qrec_encode_rcpt(struct qbuf *b, const struct queue_rcpt_info *r)
{
	qbuf_put_u8(b, QREC_VERSION);
	qbuf_put_u8(b, r->state);
	qbuf_put_u8(b, r->flags);
	qbuf_put_u8(b, r->notify);
	qbuf_put_u32(b, r->attempts);
	qbuf_put_i64(b, clamp_time(r->first_attempt_ms));
	qbuf_put_i64(b, clamp_time(r->last_attempt_ms));
	qbuf_put_i64(b, clamp_time(r->next_attempt_ms));
	qbuf_put_u16(b, r->last_code);
	qbuf_put_str(b, r->address);
	qbuf_put_str(b, r->orcpt);
	qbuf_put_str(b, r->last_status);
	qbuf_put_str(b, r->last_text);
	qbuf_put_str(b, r->last_host);
	qbuf_put_str(b, r->bounce_class);
}

int
qrec_decode_rcpt(const void *p, size_t n, uint64_t qid, uint32_t index,
    struct queue_rcpt_info *r)
{
	struct qin in;
	size_t alen;

	qin_init(&in, p, n);
	memset(r, 0, sizeof(*r));
	if (qin_u8(&in) != QREC_VERSION)
		return -1;
	r->qid = qid;
	r->index = index;
	r->state = qin_u8(&in);
	r->flags = qin_u8(&in);
	r->notify = qin_u8(&in);
	r->attempts = qin_u32(&in);
	r->first_attempt_ms = qin_i64(&in);
	r->last_attempt_ms = qin_i64(&in);
	r->next_attempt_ms = qin_i64(&in);
	r->last_code = qin_u16(&in);
	r->address = qin_str(&in);
	r->orcpt = qin_str(&in);
	r->last_status = qin_str(&in);
	r->last_text = qin_str(&in);
	r->last_host = qin_str(&in);
	r->bounce_class = qin_str(&in);
	if (qin_end(&in) == -1)
		return -1;
	alen = strlen(r->address);
	if (r->state < QUEUE_RCPT_QUEUED || r->state > QUEUE_RCPT_FAILED ||
	    (r->flags & ~(QUEUE_RF_ACTIVE | QUEUE_RF_DSN_MASK |
	    QUEUE_RF_DELAY_WARNED)) != 0 || (r->notify & ~0x0f) != 0 ||
	    alen == 0 || alen > QUEUE_ADDRESS_MAX ||
	    r->first_attempt_ms < 0 || r->last_attempt_ms < 0 ||
	    r->next_attempt_ms < 0)
		return -1;
	return 0;
}

/* ---- event ---- */

void
qrec_encode_event(struct qbuf *b, const struct queue_event *e)
{
	qbuf_put_u8(b, QREC_VERSION);
	qbuf_put_i64(b, clamp_time(e->time_ms));
	qbuf_put_u8(b, e->type);
	qbuf_put_u64(b, e->qid);
	qbuf_put_u32(b, e->rcpt_index);
	qbuf_put_u32(b, e->attempt);
	qbuf_put_u16(b, e->code);
	qbuf_put_str(b, e->recipient);
	qbuf_put_str(b, e->status);
	qbuf_put_str(b, e->text);
	qbuf_put_str(b, e->remote_host);
	qbuf_put_str(b, e->bounce_class);
}

int
qrec_decode_event(const void *p, size_t n, uint64_t seq, struct queue_event *e)
{
	struct qin in;

	qin_init(&in, p, n);
	memset(e, 0, sizeof(*e));
	if (qin_u8(&in) != QREC_VERSION)
		return -1;
	e->seq = seq;
	e->time_ms = qin_i64(&in);
	e->type = qin_u8(&in);
	e->qid = qin_u64(&in);
	e->rcpt_index = qin_u32(&in);
	e->attempt = qin_u32(&in);
	e->code = qin_u16(&in);
	e->recipient = qin_str(&in);
	e->status = qin_str(&in);
	e->text = qin_str(&in);
	e->remote_host = qin_str(&in);
	e->bounce_class = qin_str(&in);
	if (qin_end(&in) == -1 || e->time_ms < 0 ||
	    queue_event_type_name(e->type) == NULL)
		return -1;
	return 0;
}

/* ---- suppression ---- */

void
qrec_encode_supp(struct qbuf *b, const struct queue_suppression *s)
{
	qbuf_put_u8(b, QREC_VERSION);
	qbuf_put_u8(b, s->source);
	qbuf_put_i64(b, clamp_time(s->created_ms));
	qbuf_put_i64(b, clamp_time(s->expires_ms));
	qbuf_put_u64(b, s->qid);
	qbuf_put_str(b, s->reason);
}

int
qrec_decode_supp(const void *p, size_t n, const char *address,
    struct queue_suppression *s)
{
	struct qin in;

	qin_init(&in, p, n);
	memset(s, 0, sizeof(*s));
	if (qin_u8(&in) != QREC_VERSION)
		return -1;
	s->address = address;
	s->source = qin_u8(&in);
	s->created_ms = qin_i64(&in);
	s->expires_ms = qin_i64(&in);
	s->qid = qin_u64(&in);
	s->reason = qin_str(&in);
	if (qin_end(&in) == -1 || queue_supp_source_name(s->source) == NULL ||
	    s->created_ms < 0 || s->expires_ms < 0)
		return -1;
	return 0;
}

/* ---- small values ---- */

void
qrec_encode_active(struct qbuf *b, int64_t claimed_ms)
{
	qbuf_put_u8(b, QREC_VERSION);
	qbuf_put_i64(b, clamp_time(claimed_ms));
}

int
qrec_decode_active(const void *p, size_t n, int64_t *claimed_ms)
{
	struct qin in;

	qin_init(&in, p, n);
	if (qin_u8(&in) != QREC_VERSION)
		return -1;
	*claimed_ms = qin_i64(&in);
	return qin_end(&in) == -1 || *claimed_ms < 0 ? -1 : 0;
}

void
qrec_encode_marker(struct qbuf *b)
{
	qbuf_put_u8(b, QREC_VERSION);
}

int
qrec_decode_marker(const void *p, size_t n)
{
	return n == 1 && *(const uint8_t *)p == QREC_VERSION ? 0 : -1;
}

void
qrec_encode_meta_u64(struct qbuf *b, uint64_t v)
{
	qbuf_put_u8(b, QREC_VERSION);
	qbuf_put_u64(b, v);
}

int
qrec_decode_meta_u64(const void *p, size_t n, uint64_t *v)
{
	struct qin in;

	qin_init(&in, p, n);
	if (qin_u8(&in) != QREC_VERSION)
		return -1;
	*v = qin_u64(&in);
	return qin_end(&in);
}

void
qrec_encode_meta_u32(struct qbuf *b, uint32_t v)
{
	qbuf_put_u8(b, QREC_VERSION);
	qbuf_put_u32(b, v);
}

int
qrec_decode_meta_u32(const void *p, size_t n, uint32_t *v)
{
	struct qin in;

	qin_init(&in, p, n);
	if (qin_u8(&in) != QREC_VERSION)
		return -1;
	*v = qin_u32(&in);
	return qin_end(&in);
}

int
qrec_decode_chunk(const void *p, size_t n, const void **data, size_t *len)
{
	if (n < 2 || n > QUEUE_CHUNK_SIZE + 1 ||
	    *(const uint8_t *)p != QREC_VERSION)
		return -1;
	*data = (const uint8_t *)p + 1;
	*len = n - 1;
	return 0;
}

void
qrec_encode_quarantine(struct qbuf *b, const struct queue_quarantined *r)
{
	qbuf_put_u8(b, QREC_VERSION);
	qbuf_put_i64(b, clamp_time(r->time_ms));
	qbuf_put_str(b, r->db);
	qbuf_put_data(b, r->key, r->key_len);
	qbuf_put_str(b, r->why);
	qbuf_put_data(b, r->value, r->value_len);
}

int
qrec_decode_quarantine(const void *p, size_t n, uint64_t seq,
    struct queue_quarantined *r)
{
	struct qin in;

	qin_init(&in, p, n);
	memset(r, 0, sizeof(*r));
	if (qin_u8(&in) != QREC_VERSION)
		return -1;
	r->seq = seq;
	r->time_ms = qin_i64(&in);
	r->db = qin_str(&in);
	r->key = qin_data(&in, &r->key_len);
	r->why = qin_str(&in);
	r->value = qin_data(&in, &r->value_len);
	return qin_end(&in) == -1 || r->time_ms < 0 ? -1 : 0;
}

int
qaddr_key(const char *address, char *out, size_t *len)
{
	size_t n = address ? strlen(address) : 0;

	if (n == 0 || n > QUEUE_ADDRESS_MAX)
		return -1;
	memcpy(out, address, n + 1);
	ascii_lowercase(out);
	*len = n;
	return 0;
}
