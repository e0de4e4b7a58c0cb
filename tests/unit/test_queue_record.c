/*
 * test_queue_record.c - unit tests for the queue's record codecs (schema
 * 1): a round trip of every record type, key order, queue ids, and that
 * every truncation, wrong version, bad field or leftover byte is caught.
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"
#include "record.h"

/* Every proper prefix and every value with a byte appended must fail. */
typedef int (*decode_fn)(const void *p, size_t n, void *out);

static void
assert_strict(const struct qbuf *b, decode_fn decode, void *out)
{
	uint8_t *copy = malloc(b->len + 1);
	size_t n;

	memcpy(copy, b->p, b->len);
	assert_int_equal(decode(copy, b->len, out), 0);
	for (n = 0; n < b->len; n++)
		assert_int_equal(decode(copy, n, out), -1);
	copy[b->len] = 0;
	assert_int_equal(decode(copy, b->len + 1, out), -1);
	/* A wrong version byte. */
	copy[0] = 2;
	assert_int_equal(decode(copy, b->len, out), -1);
	free(copy);
}

static int
dec_msg(const void *p, size_t n, void *out)
{
	return qrec_decode_msg(p, n, 7, out);
}

static int
dec_rcpt(const void *p, size_t n, void *out)
{
	return qrec_decode_rcpt(p, n, 7, 3, out);
}

static int
dec_event(const void *p, size_t n, void *out)
{
	return qrec_decode_event(p, n, 99, out);
}

static int
dec_supp(const void *p, size_t n, void *out)
{
	return qrec_decode_supp(p, n, "a@b.test", out);
}

static int
dec_quar(const void *p, size_t n, void *out)
{
	return qrec_decode_quarantine(p, n, 5, out);
}

static struct queue_msg_info
sample_msg(void)
{
	struct queue_msg_info m;

	memset(&m, 0, sizeof(m));
	m.arrival_ms = 1700000000123;
	m.size = 3 * QUEUE_CHUNK_SIZE + 17;
	m.n_chunks = 4;
	m.body = CLEANUP_BODY_8BITMIME;
	m.source = CLEANUP_SOURCE_SUBMISSION;
	m.ret = CLEANUP_RET_HDRS;
	m.smtputf8 = true;
	m.hold = true;
	m.sender = "sender@example.test";
	m.envid = "env-1";
	m.auth_user = "alice";
	m.client_addr = "192.0.2.7";
	m.client_name = "client.example.test";
	m.stream = "transactional";
	m.message_id = "<1@example.test>";
	m.n_rcpt = 5;
	m.n_delivered = 1;
	m.n_failed = 2;
	m.n_dsn_pending = 1;
	return m;
}

static void
test_msg_roundtrip(void **state)
{
	struct queue_msg_info m = sample_msg(), d;
	struct qbuf b;

	(void)state;
	qbuf_init(&b);
	qrec_encode_msg(&b, &m);
	assert_int_equal(b.p[0], QREC_VERSION);
	assert_int_equal(qrec_decode_msg(b.p, b.len, 7, &d), 0);
	assert_true(d.qid == 7);
	assert_true(d.arrival_ms == m.arrival_ms);
	assert_true(d.size == m.size);
	assert_int_equal(d.n_chunks, 4);
	assert_int_equal(d.body, CLEANUP_BODY_8BITMIME);
	assert_int_equal(d.source, CLEANUP_SOURCE_SUBMISSION);
	assert_int_equal(d.ret, CLEANUP_RET_HDRS);
	assert_true(d.smtputf8);
	assert_true(d.hold);
	assert_string_equal(d.sender, m.sender);
	assert_string_equal(d.envid, m.envid);
	assert_string_equal(d.auth_user, m.auth_user);
	assert_string_equal(d.client_addr, m.client_addr);
	assert_string_equal(d.client_name, m.client_name);
	assert_string_equal(d.stream, m.stream);
	assert_string_equal(d.message_id, m.message_id);
	assert_int_equal(d.n_rcpt, 5);
	assert_int_equal(d.n_delivered, 1);
	assert_int_equal(d.n_failed, 2);
	assert_int_equal(d.n_dsn_pending, 1);
	assert_false(queue_msg_is_finished(&d));
	assert_strict(&b, dec_msg, &d);
	qbuf_free(&b);
}

/* Field values out of range make a message record corrupt. */
static void
test_msg_ranges(void **state)
{
	struct queue_msg_info m, d;
	struct qbuf b;
	int i;

	(void)state;
	qbuf_init(&b);
	for (i = 0; i < 7; i++) {
		m = sample_msg();
		switch (i) {
		case 0: m.n_chunks = 3; break;		/* size needs 4 */
		case 1: m.body = 3; break;
		case 2: m.source = 9; break;
		case 3: m.n_rcpt = 0; m.n_delivered = m.n_failed = 0;
			m.n_dsn_pending = 0; break;
		case 4: m.n_delivered = 4; break;	/* 4 + 2 > 5 */
		case 5: m.n_dsn_pending = 6; break;
		case 6: m.ret = 3; break;
		}
		qbuf_reset(&b);
		qrec_encode_msg(&b, &m);
		assert_int_equal(qrec_decode_msg(b.p, b.len, 1, &d), -1);
	}
	/* A string with a NUL inside, and one without its final NUL. */
	m = sample_msg();
	qbuf_reset(&b);
	qrec_encode_msg(&b, &m);
	{
		uint8_t *p = memmem(b.p, b.len, "sender@", 7);

		assert_non_null(p);
		p[3] = 0;
		assert_int_equal(qrec_decode_msg(b.p, b.len, 1, &d), -1);
		p[3] = 'd';
		p[strlen("sender@example.test")] = 'x';
		assert_int_equal(qrec_decode_msg(b.p, b.len, 1, &d), -1);
	}
	qbuf_free(&b);
}

static void
test_rcpt_roundtrip(void **state)
{
	struct queue_rcpt_info r, d;
	struct qbuf b;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.address = "user@example.test";
	r.orcpt = "rfc822;User@Example.test";
	r.notify = CLEANUP_NOTIFY_SUCCESS | CLEANUP_NOTIFY_FAILURE;
	r.state = QUEUE_RCPT_DEFERRED;
	r.flags = QUEUE_RF_ACTIVE | QUEUE_RF_DSN_DELAY | QUEUE_RF_DELAY_WARNED;
	r.attempts = 3;
	r.first_attempt_ms = 1000;
	r.last_attempt_ms = 2000;
	r.next_attempt_ms = 3000;
	r.last_code = 451;
	r.last_status = "4.3.0";
	r.last_text = "try again later";
	r.last_host = "mx.example.test[192.0.2.1]:25";
	r.bounce_class = "";
	qbuf_init(&b);
	qrec_encode_rcpt(&b, &r);
	assert_int_equal(qrec_decode_rcpt(b.p, b.len, 7, 3, &d), 0);
	assert_true(d.qid == 7);
	assert_int_equal(d.index, 3);
	assert_string_equal(d.address, r.address);
	assert_string_equal(d.orcpt, r.orcpt);
	assert_int_equal(d.notify, r.notify);
	assert_int_equal(d.state, QUEUE_RCPT_DEFERRED);
	assert_int_equal(d.flags, r.flags);
	assert_int_equal(d.attempts, 3);
	assert_true(d.first_attempt_ms == 1000);
	assert_true(d.last_attempt_ms == 2000);
	assert_true(d.next_attempt_ms == 3000);
	assert_int_equal(d.last_code, 451);
	assert_string_equal(d.last_status, "4.3.0");
	assert_string_equal(d.last_text, "try again later");
	assert_string_equal(d.last_host, r.last_host);
	assert_string_equal(d.bounce_class, "");
	assert_strict(&b, dec_rcpt, &d);
	/* Bad state, flags and an empty address. */
	r.state = 9;
	qbuf_reset(&b);
	qrec_encode_rcpt(&b, &r);
	assert_int_equal(qrec_decode_rcpt(b.p, b.len, 7, 3, &d), -1);
	r.state = QUEUE_RCPT_QUEUED;
	r.flags = 0x80;
	qbuf_reset(&b);
	qrec_encode_rcpt(&b, &r);
	assert_int_equal(qrec_decode_rcpt(b.p, b.len, 7, 3, &d), -1);
	r.flags = 0;
	r.address = "";
	qbuf_reset(&b);
	qrec_encode_rcpt(&b, &r);
	assert_int_equal(qrec_decode_rcpt(b.p, b.len, 7, 3, &d), -1);
	qbuf_free(&b);
}

static void
test_event_roundtrip(void **state)
{
	struct queue_event e, d;
	struct qbuf b;

	(void)state;
	memset(&e, 0, sizeof(e));
	e.time_ms = 1700000000999;
	e.type = QUEUE_EVENT_BOUNCED;
	e.qid = 0x0190F3A1C2B40123ull;
	e.rcpt_index = 2;
	e.recipient = "x@y.test";
	e.code = 550;
	e.status = "5.1.1";
	e.text = "no such user";
	e.remote_host = "mx.y.test[192.0.2.9]:25";
	e.attempt = 1;
	e.bounce_class = "bad-mailbox";
	qbuf_init(&b);
	qrec_encode_event(&b, &e);
	assert_int_equal(qrec_decode_event(b.p, b.len, 99, &d), 0);
	assert_true(d.seq == 99);
	assert_true(d.time_ms == e.time_ms);
	assert_int_equal(d.type, QUEUE_EVENT_BOUNCED);
	assert_true(d.qid == e.qid);
	assert_int_equal(d.rcpt_index, 2);
	assert_string_equal(d.recipient, "x@y.test");
	assert_int_equal(d.code, 550);
	assert_string_equal(d.status, "5.1.1");
	assert_string_equal(d.text, "no such user");
	assert_string_equal(d.remote_host, e.remote_host);
	assert_int_equal(d.attempt, 1);
	assert_string_equal(d.bounce_class, "bad-mailbox");
	assert_strict(&b, dec_event, &d);
	e.type = 200;
	qbuf_reset(&b);
	qrec_encode_event(&b, &e);
	assert_int_equal(qrec_decode_event(b.p, b.len, 1, &d), -1);
	qbuf_free(&b);
	assert_string_equal(queue_event_type_name(QUEUE_EVENT_QUEUED), "queued");
	assert_string_equal(queue_event_type_name(QUEUE_EVENT_COMPLAINT),
	    "complaint");
	assert_null(queue_event_type_name(0));
}

static void
test_supp_roundtrip(void **state)
{
	struct queue_suppression s, d;
	struct qbuf b;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.address = "a@b.test";
	s.source = QUEUE_SUPP_COMPLAINT;
	s.reason = "abuse report";
	s.created_ms = 5;
	s.expires_ms = 10;
	s.qid = 42;
	qbuf_init(&b);
	qrec_encode_supp(&b, &s);
	assert_int_equal(qrec_decode_supp(b.p, b.len, "a@b.test", &d), 0);
	assert_string_equal(d.address, "a@b.test");
	assert_int_equal(d.source, QUEUE_SUPP_COMPLAINT);
	assert_string_equal(d.reason, "abuse report");
	assert_true(d.created_ms == 5);
	assert_true(d.expires_ms == 10);
	assert_true(d.qid == 42);
	assert_strict(&b, dec_supp, &d);
	s.source = 0;
	qbuf_reset(&b);
	qrec_encode_supp(&b, &s);
	assert_int_equal(qrec_decode_supp(b.p, b.len, "a", &d), -1);
	qbuf_free(&b);
}

static void
test_small_values(void **state)
{
	struct queue_quarantined q, d;
	struct qbuf b;
	int64_t t;
	uint64_t u64;
	uint32_t u32;
	const void *data;
	size_t len;
	uint8_t chunk[4] = { QREC_VERSION, 'a', 'b', 'c' };

	(void)state;
	qbuf_init(&b);
	qrec_encode_active(&b, 1234);
	assert_int_equal(qrec_decode_active(b.p, b.len, &t), 0);
	assert_true(t == 1234);
	assert_int_equal(qrec_decode_active(b.p, b.len - 1, &t), -1);
	qbuf_reset(&b);
	qrec_encode_marker(&b);
	assert_int_equal(qrec_decode_marker(b.p, b.len), 0);
	assert_int_equal(qrec_decode_marker("\2", 1), -1);
	assert_int_equal(qrec_decode_marker("\1\1", 2), -1);
	qbuf_reset(&b);
	qrec_encode_meta_u64(&b, 0xfeedfacecafebeefull);
	assert_int_equal(qrec_decode_meta_u64(b.p, b.len, &u64), 0);
	assert_true(u64 == 0xfeedfacecafebeefull);
	qbuf_reset(&b);
	qrec_encode_meta_u32(&b, 1);
	assert_int_equal(qrec_decode_meta_u32(b.p, b.len, &u32), 0);
	assert_int_equal(u32, 1);
	assert_int_equal(qrec_decode_chunk(chunk, 4, &data, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(data, "abc", 3);
	assert_int_equal(qrec_decode_chunk(chunk, 1, &data, &len), -1);
	chunk[0] = 9;
	assert_int_equal(qrec_decode_chunk(chunk, 4, &data, &len), -1);

	memset(&q, 0, sizeof(q));
	q.time_ms = 77;
	q.db = "recipients";
	q.key = "\0\1\2";
	q.key_len = 3;
	q.why = "corrupt recipient record";
	q.value = "xyz";
	q.value_len = 3;
	qbuf_reset(&b);
	qrec_encode_quarantine(&b, &q);
	assert_int_equal(qrec_decode_quarantine(b.p, b.len, 5, &d), 0);
	assert_true(d.seq == 5 && d.time_ms == 77);
	assert_string_equal(d.db, "recipients");
	assert_int_equal(d.key_len, 3);
	assert_memory_equal(d.key, "\0\1\2", 3);
	assert_string_equal(d.why, q.why);
	assert_int_equal(d.value_len, 3);
	assert_memory_equal(d.value, "xyz", 3);
	assert_strict(&b, dec_quar, &d);
	qbuf_free(&b);
}

/* Schedule keys sort by due time first, as the cursor relies on. */
static void
test_key_order(void **state)
{
	uint8_t a[QKEY_SCHED_LEN], b[QKEY_SCHED_LEN], r[QKEY_RCPT_LEN];
	struct queue_sched_entry e;
	uint64_t qid;
	uint32_t idx;

	(void)state;
	qkey_sched(a, 1000, UINT64_MAX, UINT32_MAX);
	qkey_sched(b, 1001, 0, 0);
	assert_true(memcmp(a, b, sizeof(a)) < 0);
	qkey_sched(a, 5000, 1, 9);
	qkey_sched(b, 5000, 2, 0);
	assert_true(memcmp(a, b, sizeof(a)) < 0);
	qkey_sched(a, 256, 3, 4);
	assert_int_equal(qkey_sched_decode(a, sizeof(a), &e), 0);
	assert_true(e.due_ms == 256 && e.qid == 3 && e.rcpt == 4);
	assert_int_equal(qkey_sched_decode(a, sizeof(a) - 1, &e), -1);
	/* Negative times are stored as 0. */
	qkey_sched(a, -5, 3, 4);
	assert_int_equal(qkey_sched_decode(a, sizeof(a), &e), 0);
	assert_true(e.due_ms == 0);
	qkey_rcpt(r, 0x1122334455667788ull, 0x99aabbcc);
	assert_int_equal(qkey_rcpt_decode(r, sizeof(r), &qid, &idx), 0);
	assert_true(qid == 0x1122334455667788ull && idx == 0x99aabbcc);
	assert_int_equal(qkey_rcpt_decode(r, 8, &qid, &idx), -1);
}

static void
test_queue_ids(void **state)
{
	char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1];
	uint64_t v;

	(void)state;
	queue_id_format(0x0190F3A1C2B40123ull, a);
	assert_string_equal(a, "0190F3A1C2B40123");
	assert_int_equal(queue_id_parse(a, &v), 0);
	assert_true(v == 0x0190F3A1C2B40123ull);
	assert_int_equal(queue_id_parse("0190f3a1c2b40123", &v), 0);
	assert_true(v == 0x0190F3A1C2B40123ull);
	assert_int_equal(queue_id_parse("0190F3A1C2B4012", &v), -1);
	assert_int_equal(queue_id_parse("0190F3A1C2B401234", &v), -1);
	assert_int_equal(queue_id_parse("0190F3A1C2B4012G", &v), -1);
	assert_int_equal(queue_id_parse(NULL, &v), -1);
	/* Text order is numeric order. */
	queue_id_format(0x00000000000000FFull, a);
	queue_id_format(0x0000000000000100ull, b);
	assert_true(strcmp(a, b) < 0);
}

static void
test_address_key(void **state)
{
	char k[QUEUE_ADDRESS_MAX + 1], big[QUEUE_ADDRESS_MAX + 2];
	size_t n;

	(void)state;
	assert_int_equal(qaddr_key("User@Example.TEST", k, &n), 0);
	assert_string_equal(k, "user@example.test");
	assert_int_equal(n, strlen("user@example.test"));
	assert_int_equal(qaddr_key("", k, &n), -1);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(qaddr_key(big, k, &n), -1);
	big[QUEUE_ADDRESS_MAX] = 0;
	assert_int_equal(qaddr_key(big, k, &n), 0);
}

/*
 * The fuzz seeds are encoded by tests/fuzz/queue-seeds.py from the
 * layouts written in SCHEMA.md, independently of record.c: each must
 * decode, and encode back to the same bytes. A drift between the
 * document and the code fails here.
 */
static void
test_schema_seeds(void **state)
{
	uint8_t buf[4096];
	char path[1024];
	struct qbuf b;
	int i;

	(void)state;
	qbuf_init(&b);
	for (i = 0; i <= 9; i++) {
		struct queue_msg_info m;
		struct queue_rcpt_info r;
		struct queue_event e;
		struct queue_suppression s;
		struct queue_quarantined q;
		int64_t t;
		uint64_t u64;
		uint32_t u32;
		const void *c;
		size_t n, len;
		FILE *f;

		snprintf(path, sizeof(path), "%s/seed-%02d", QUEUE_SEED_DIR, i);
		f = fopen(path, "rb");
		assert_non_null(f);
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		assert_true(n > 1 && buf[0] == i);
		qbuf_reset(&b);
		switch (i) {
		case 0:
			assert_int_equal(qrec_decode_msg(buf + 1, n - 1, 1, &m), 0);
			assert_string_equal(m.sender, "sender@example.test");
			assert_true(m.smtputf8 && m.hold);
			qrec_encode_msg(&b, &m);
			break;
		case 1:
			assert_int_equal(qrec_decode_rcpt(buf + 1, n - 1, 1, 0,
			    &r), 0);
			assert_int_equal(r.last_code, 451);
			qrec_encode_rcpt(&b, &r);
			break;
		case 2:
			assert_int_equal(qrec_decode_event(buf + 1, n - 1, 1,
			    &e), 0);
			assert_int_equal(e.type, QUEUE_EVENT_BOUNCED);
			qrec_encode_event(&b, &e);
			break;
		case 3:
			assert_int_equal(qrec_decode_supp(buf + 1, n - 1, "x",
			    &s), 0);
			qrec_encode_supp(&b, &s);
			break;
		case 4:
			assert_int_equal(qrec_decode_active(buf + 1, n - 1, &t),
			    0);
			qrec_encode_active(&b, t);
			break;
		case 5:
			assert_int_equal(qrec_decode_marker(buf + 1, n - 1), 0);
			qrec_encode_marker(&b);
			break;
		case 6:
			assert_int_equal(qrec_decode_meta_u64(buf + 1, n - 1,
			    &u64), 0);
			qrec_encode_meta_u64(&b, u64);
			break;
		case 7:
			assert_int_equal(qrec_decode_meta_u32(buf + 1, n - 1,
			    &u32), 0);
			qrec_encode_meta_u32(&b, u32);
			break;
		case 8:
			assert_int_equal(qrec_decode_chunk(buf + 1, n - 1, &c,
			    &len), 0);
			qbuf_put_u8(&b, QREC_VERSION);
			for (n = 0; n < len; n++)
				qbuf_put_u8(&b, ((const uint8_t *)c)[n]);
			n = len + 2;	/* selector, version, bytes */
			break;
		default:
			assert_int_equal(qrec_decode_quarantine(buf + 1, n - 1,
			    1, &q), 0);
			qrec_encode_quarantine(&b, &q);
			break;
		}
		assert_int_equal(b.len, n - 1);
		assert_memory_equal(b.p, buf + 1, n - 1);
	}
	qbuf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_msg_roundtrip),
		cmocka_unit_test(test_msg_ranges),
		cmocka_unit_test(test_rcpt_roundtrip),
		cmocka_unit_test(test_event_roundtrip),
		cmocka_unit_test(test_supp_roundtrip),
		cmocka_unit_test(test_small_values),
		cmocka_unit_test(test_key_order),
		cmocka_unit_test(test_queue_ids),
		cmocka_unit_test(test_address_key),
		cmocka_unit_test(test_schema_seeds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
