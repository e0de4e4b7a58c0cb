/*
 * batch.c - new messages: built in memory (envelope, recipients, content
 * in pieces), then committed as a group in one write transaction with one
 * synced commit, each with its schedule entries and "queued" events.
 * Runs in tern-cleanup's writer thread (and tern-bounce's tests); needs
 * write access to the queue.
 */
#include "autoconfig.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "queue_int.h"
#include "util.h"

struct queue_msg_rcpt {
	char *address;
	char *orcpt;
	uint8_t notify;
};

struct queue_msg {
	struct queue_msg_info info;	/* strings owned */
	struct queue_msg_rcpt *rcpts;
	size_t n_rcpts;
	size_t cap_rcpts;
	uint8_t **chunks;		/* each QUEUE_CHUNK_SIZE but the last */
	uint32_t n_chunks;
	size_t last_len;		/* bytes in the last chunk */
	size_t last_cap;		/* its allocation */
	uint8_t *head;			/* stored before the chunks' content */
	size_t head_len;
	const char *invalid;		/* why it cannot be committed, or NULL */
};

/* Copies an envelope string, noting when it is too long. */
static char *
msg_field(struct queue_msg *m, const char *s, size_t max, const char *name)
{
	if (s == NULL)
		s = "";
	if (strlen(s) > max && m->invalid == NULL)
		m->invalid = name;
	return xstrdup(s);
}

struct queue_msg *
queue_msg_new(const struct queue_msg_info *e)
{
	struct queue_msg *m = xcalloc(1, sizeof(*m));

	m->info.qid = e->qid != 0 ? e->qid : qid_next();
	m->info.arrival_ms = queue_now_ms();
	m->info.body = e->body;
	m->info.source = e->source;
	m->info.ret = e->ret;
	m->info.smtputf8 = e->smtputf8;
	m->info.hold = e->hold;
	m->info.sender = msg_field(m, e->sender, QUEUE_ADDRESS_MAX, "sender");
	m->info.envid = msg_field(m, e->envid, QUEUE_FIELD_MAX, "envid");
	m->info.auth_user = msg_field(m, e->auth_user, QUEUE_FIELD_MAX,
	    "auth_user");
	m->info.client_addr = msg_field(m, e->client_addr, QUEUE_FIELD_MAX,
	    "client_addr");
	m->info.client_name = msg_field(m, e->client_name, QUEUE_FIELD_MAX,
	    "client_name");
	m->info.stream = msg_field(m, e->stream, QUEUE_FIELD_MAX, "stream");
	m->info.message_id = msg_field(m, e->message_id, QUEUE_FIELD_MAX,
	    "message_id");
	if (e->body > CLEANUP_BODY_BINARYMIME || e->source > CLEANUP_SOURCE_HTTP ||
	    e->ret > CLEANUP_RET_HDRS)
		m->invalid = "body, source or ret";
	return m;
}

int
queue_msg_add_rcpt(struct queue_msg *m, const char *address, const char *orcpt,
    uint8_t notify)
{
	struct queue_msg_rcpt *r;
	size_t alen = address ? strlen(address) : 0;

	if (alen == 0 || alen > QUEUE_ADDRESS_MAX ||
	    (orcpt != NULL && strlen(orcpt) > QUEUE_FIELD_MAX) ||
	    (notify & ~0x0f) != 0 || m->n_rcpts >= QUEUE_RCPT_MAX)
		return qerr(QUEUE_ERR_INVALID);
	if (m->n_rcpts == m->cap_rcpts) {
		m->cap_rcpts = m->cap_rcpts ? m->cap_rcpts * 2 : 4;
		m->rcpts = xreallocarray(m->rcpts, m->cap_rcpts,
		    sizeof(*m->rcpts));
	}
	r = &m->rcpts[m->n_rcpts++];
	r->address = xstrdup(address);
	r->orcpt = xstrdup(orcpt ? orcpt : "");
	r->notify = notify;
	return 0;
}

void
queue_msg_append(struct queue_msg *m, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		size_t room, n;

		if (m->n_chunks == 0 || m->last_len == QUEUE_CHUNK_SIZE) {
			m->chunks = xreallocarray(m->chunks, m->n_chunks + 1,
			    sizeof(*m->chunks));
			m->chunks[m->n_chunks++] = NULL;
			m->last_len = 0;
			m->last_cap = 0;
		}
		room = QUEUE_CHUNK_SIZE - m->last_len;
		n = len < room ? len : room;
		/* The first chunk grows geometrically (by 4: fewer copies as
		 * it grows): a small message does not cost a whole chunk of
		 * memory. A message that filled one is large: the next chunks
		 * are whole at once. */
		if (m->last_len + n > m->last_cap) {
			size_t cap = m->n_chunks > 1 ? QUEUE_CHUNK_SIZE :
			    m->last_cap ? m->last_cap : 1024;

			while (cap < m->last_len + n)
				cap *= 4;
			if (cap > QUEUE_CHUNK_SIZE)
				cap = QUEUE_CHUNK_SIZE;
			m->chunks[m->n_chunks - 1] = xrealloc(
			    m->chunks[m->n_chunks - 1], cap);
			m->last_cap = cap;
		}
		memcpy(m->chunks[m->n_chunks - 1] + m->last_len, p, n);
		m->last_len += n;
		m->info.size += n;
		p += n;
		len -= n;
	}
}

void
queue_msg_append_head(struct queue_msg *m, const void *data, size_t len)
{
	if (len == 0)
		return;
	m->head = xrealloc(m->head, m->head_len + len);
	memcpy(m->head + m->head_len, data, len);
	m->head_len += len;
	m->info.size += len;
}

size_t
queue_msg_content_at(const struct queue_msg *m, uint64_t off,
    const void **p)
{
	uint64_t i = off / QUEUE_CHUNK_SIZE;
	size_t within = (size_t)(off % QUEUE_CHUNK_SIZE), len;

	*p = NULL;
	if (i >= m->n_chunks)
		return 0;
	len = i + 1 < m->n_chunks ? QUEUE_CHUNK_SIZE : m->last_len;
	if (within >= len)
		return 0;
	*p = m->chunks[i] + within;
	return len - within;
}

void
queue_msg_drop_content(struct queue_msg *m)
{
	for (uint32_t i = 0; i < m->n_chunks; i++)
		free(m->chunks[i]);
	free(m->chunks);
	free(m->head);
	m->chunks = NULL;
	m->n_chunks = 0;
	m->last_len = m->last_cap = 0;
	m->head = NULL;
	m->head_len = 0;
	m->info.size = 0;
}

/* Copies len stored bytes from off on (the head, then the content). */
static void
msg_copy_stored(const struct queue_msg *m, uint64_t off, uint8_t *dst,
    size_t len)
{
	if (off < m->head_len) {
		size_t n = m->head_len - (size_t)off < len ?
		    m->head_len - (size_t)off : len;

		memcpy(dst, m->head + off, n);
		dst += n;
		len -= n;
		off = m->head_len;
	}
	off -= m->head_len;
	while (len > 0) {
		const void *p;
		size_t n = queue_msg_content_at(m, off, &p);

		TERN_ASSERT(n > 0);
		if (n > len)
			n = len;
		memcpy(dst, p, n);
		dst += n;
		len -= n;
		off += n;
	}
}

uint64_t
queue_msg_id(const struct queue_msg *m)
{
	return m->info.qid;
}

uint64_t
queue_msg_size(const struct queue_msg *m)
{
	return m->info.size;
}

void
queue_msg_free(struct queue_msg *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n_rcpts; i++) {
		free(m->rcpts[i].address);
		free(m->rcpts[i].orcpt);
	}
	free(m->rcpts);
	for (i = 0; i < m->n_chunks; i++)
		free(m->chunks[i]);
	free(m->chunks);
	free(m->head);
	free((char *)m->info.sender);
	free((char *)m->info.envid);
	free((char *)m->info.auth_user);
	free((char *)m->info.client_addr);
	free((char *)m->info.client_name);
	free((char *)m->info.stream);
	free((char *)m->info.message_id);
	free(m);
}

/* ---- batches ---- */

struct batch_item {
	struct queue_msg *msg;
	enum queue_err status;
	uint64_t qid;
};

struct batch_event {
	struct queue_event e;		/* strings owned */
};

struct queue_batch {
	struct batch_item *items;
	size_t n;
	size_t cap;
	struct batch_event *events;
	size_t n_events;
};

struct queue_batch *
queue_batch_new(void)
{
	return xcalloc(1, sizeof(struct queue_batch));
}

size_t
queue_batch_add(struct queue_batch *b, struct queue_msg *m)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->items = xreallocarray(b->items, b->cap, sizeof(*b->items));
	}
	b->items[b->n].msg = m;
	b->items[b->n].status = QUEUE_ERR_IO;
	b->items[b->n].qid = m->info.qid;
	return b->n++;
}

/* Copies an event with its strings (cut to the record limits). */
static void
event_copy(struct queue_event *dst, const struct queue_event *src)
{
	*dst = *src;
	dst->recipient = xstrndup(src->recipient ? src->recipient : "",
	    QUEUE_ADDRESS_MAX);
	dst->status = xstrndup(src->status ? src->status : "", 32);
	dst->text = xstrndup(src->text ? src->text : "", QUEUE_TEXT_MAX);
	dst->remote_host = xstrndup(src->remote_host ? src->remote_host : "",
	    QUEUE_FIELD_MAX);
	dst->bounce_class = xstrndup(src->bounce_class ? src->bounce_class :
	    "", 64);
}

static void
event_free(struct queue_event *e)
{
	free((char *)e->recipient);
	free((char *)e->status);
	free((char *)e->text);
	free((char *)e->remote_host);
	free((char *)e->bounce_class);
}

void
queue_batch_add_event(struct queue_batch *b, const struct queue_event *e)
{
	b->events = xreallocarray(b->events, b->n_events + 1,
	    sizeof(*b->events));
	event_copy(&b->events[b->n_events++].e, e);
}

size_t
queue_batch_count(const struct queue_batch *b)
{
	return b->n;
}

enum queue_err
queue_batch_status(const struct queue_batch *b, size_t i)
{
	return i < b->n ? b->items[i].status : QUEUE_ERR_INVALID;
}

uint64_t
queue_batch_qid(const struct queue_batch *b, size_t i)
{
	return i < b->n ? b->items[i].qid : 0;
}

void
queue_batch_free(struct queue_batch *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->n; i++)
		queue_msg_free(b->items[i].msg);
	for (i = 0; i < b->n_events; i++)
		event_free(&b->events[i].e);
	free(b->items);
	free(b->events);
	free(b);
}

/* Picks the message's queue id: its provisional one unless a record
 * already holds it (two processes, same id), then a fresh one. */
static int
batch_pick_qid(struct qtxn *t, struct batch_item *it)
{
	uint8_t k[QKEY_MSG_LEN];
	MDB_val v;
	char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1];
	uint64_t qid = it->msg->info.qid;
	int rc, tries;

	for (tries = 0; tries < 8; tries++) {
		qkey_msg(k, qid);
		rc = mdb_get(t->txn, t->q->dbi[QDB_MESSAGES],
		    &(MDB_val){ sizeof(k), k }, &v);
		if (rc == MDB_NOTFOUND) {
			if (qid != it->msg->info.qid)
				log_warn("%s: queue id already in use; the "
				    "message is queued as %s",
				    QID_STR(it->msg->info.qid, a),
				    QID_STR(qid, b));
			it->qid = qid;
			return 0;
		}
		if (rc != 0)
			return rc;
		qid = qid_next();
	}
	return MDB_KEYEXIST;
}

/* Writes one message: record, content, recipients, schedule, events. */
static int
batch_put_msg(struct qtxn *t, struct batch_item *it, int64_t now_ms)
{
	struct queue_msg *m = it->msg;
	struct queue_msg_info info = m->info;
	struct queue_rcpt_info r;
	uint8_t k[QKEY_RCPT_LEN];
	MDB_val key = { sizeof(k), k }, val;
	uint32_t i;
	int rc;

	if ((rc = batch_pick_qid(t, it)) != 0)
		return rc;
	info.qid = it->qid;
	/* The stored chunks hold the head and then the content. */
	info.n_chunks = (uint32_t)(info.size / QUEUE_CHUNK_SIZE +
	    (info.size % QUEUE_CHUNK_SIZE != 0));
	info.n_rcpt = (uint32_t)m->n_rcpts;
	info.n_delivered = info.n_failed = info.n_dsn_pending = 0;
	if ((rc = qput_msg(t, &info)) != 0)
		return rc;
	for (i = 0; i < info.n_chunks; i++) {
		uint64_t off = (uint64_t)i * QUEUE_CHUNK_SIZE;
		size_t len = info.size - off < QUEUE_CHUNK_SIZE ?
		    (size_t)(info.size - off) : QUEUE_CHUNK_SIZE;

		/* MDB_RESERVE: the chunk is copied once, into the map. */
		qkey_rcpt(k, info.qid, i);
		val.mv_size = len + 1;
		val.mv_data = NULL;
		rc = mdb_put(t->txn, t->q->dbi[QDB_CONTENT], &key, &val,
		    MDB_RESERVE);
		if (rc != 0)
			return rc;
		*(uint8_t *)val.mv_data = QREC_VERSION;
		msg_copy_stored(m, off, (uint8_t *)val.mv_data + 1, len);
	}
	for (i = 0; i < m->n_rcpts; i++) {
		memset(&r, 0, sizeof(r));
		r.qid = info.qid;
		r.index = i;
		r.address = m->rcpts[i].address;
		r.orcpt = m->rcpts[i].orcpt;
		r.notify = m->rcpts[i].notify;
		r.state = QUEUE_RCPT_QUEUED;
		r.next_attempt_ms = info.hold ? 0 : now_ms;
		if ((rc = qput_rcpt(t, &r)) != 0)
			return rc;
		if (!info.hold && (rc = qsched_put(t, now_ms, info.qid, i)) != 0)
			return rc;
		if ((rc = qevent_rcpt(t, QUEUE_EVENT_QUEUED, now_ms, &r,
		    "")) != 0)
			return rc;
	}
	if (info.qid > t->last_qid) {
		t->last_qid = info.qid;
		t->last_qid_dirty = true;
	}
	t->n_messages++;
	return 0;
}

static int
batch_txn(struct qtxn *t, void *arg)
{
	struct queue_batch *b = arg;
	int64_t now_ms = queue_now_ms();
	size_t i;
	int rc;

	for (i = 0; i < b->n; i++) {
		struct batch_item *it = &b->items[i];

		if (it->msg->invalid != NULL || it->msg->n_rcpts == 0) {
			it->status = QUEUE_ERR_INVALID;
			continue;
		}
		if ((rc = batch_put_msg(t, it, now_ms)) != 0)
			return rc;
		it->status = QUEUE_OK;
	}
	for (i = 0; i < b->n_events; i++) {
		struct queue_event e = b->events[i].e;

		if (e.time_ms == 0)
			e.time_ms = now_ms;
		if ((rc = qevent_append(t, &e)) != 0)
			return rc;
	}
	return 0;
}

int
queue_batch_commit(struct queue *q, struct queue_batch *b)
{
	size_t i, n_valid = 0;
	char id[QUEUE_ID_LEN + 1];

	for (i = 0; i < b->n; i++) {
		struct queue_msg *m = b->items[i].msg;

		if (m->invalid != NULL)
			log_warn("%s: not queued: %s too long or invalid",
			    QID_STR(m->info.qid, id), m->invalid);
		else if (m->n_rcpts == 0)
			log_warn("%s: not queued: no recipients",
			    QID_STR(m->info.qid, id));
		else
			n_valid++;
		if (m->invalid != NULL || m->n_rcpts == 0)
			b->items[i].status = QUEUE_ERR_INVALID;
	}
	if (n_valid == 0 && b->n_events == 0)
		return b->n == 0 ? 0 : qerr(QUEUE_ERR_INVALID);
	if (qtxn_write(q, batch_txn, b) == -1) {
		enum queue_err e = queue_last_error();

		for (i = 0; i < b->n; i++)
			if (b->items[i].status != QUEUE_ERR_INVALID)
				b->items[i].status = e;
		return -1;
	}
	return 0;
}
