/*
 * fuzz_queue_records.c - libFuzzer target for the queue's record and key
 * decoders (queue/record.c). The first input byte picks the decoder, the
 * rest is the value. Nothing may crash or read out of bounds, every
 * decoded string must be a C string inside the value, and a value that
 * decodes must encode back to exactly the same bytes (the format is
 * canonical), or the target traps.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <string.h>

#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A decoded string must lie inside the value and end there. */
static void
check_str(const char *s, const uint8_t *p, size_t n)
{
	if ((const uint8_t *)s < p || (const uint8_t *)s >= p + n ||
	    strlen(s) >= n - (size_t)((const uint8_t *)s - p))
		__builtin_trap();
}

static void
check_same(const struct qbuf *b, const uint8_t *p, size_t n)
{
	if (b->len != n || memcmp(b->p, p, n) != 0)
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	struct qbuf b;
	struct queue_msg_info m;
	struct queue_rcpt_info r;
	struct queue_event e;
	struct queue_suppression s;
	struct queue_quarantined q;
	struct queue_sched_entry se;
	int64_t t;
	uint64_t u64, qid;
	uint32_t u32;
	const void *chunk;
	size_t len;

	if (size == 0)
		return 0;
	qbuf_init(&b);
	switch (data[0] % 14) {
	case 0:
		if (qrec_decode_msg(p, n, 1, &m) == 0) {
			check_str(m.sender, p, n);
			check_str(m.message_id, p, n);
			qrec_encode_msg(&b, &m);
			check_same(&b, p, n);
		}
		break;
	case 1:
		if (qrec_decode_rcpt(p, n, 1, 2, &r) == 0) {
			check_str(r.address, p, n);
			check_str(r.bounce_class, p, n);
			qrec_encode_rcpt(&b, &r);
			check_same(&b, p, n);
		}
		break;
	case 2:
		if (qrec_decode_event(p, n, 3, &e) == 0) {
			check_str(e.recipient, p, n);
			check_str(e.text, p, n);
			qrec_encode_event(&b, &e);
			check_same(&b, p, n);
		}
		break;
	case 3:
		if (qrec_decode_supp(p, n, "a@b", &s) == 0) {
			check_str(s.reason, p, n);
			qrec_encode_supp(&b, &s);
			check_same(&b, p, n);
		}
		break;
	case 4:
		if (qrec_decode_active(p, n, &t) == 0) {
			qrec_encode_active(&b, t);
			check_same(&b, p, n);
		}
		break;
	case 5:
		if (qrec_decode_marker(p, n) == 0 && n != 1)
			__builtin_trap();
		break;
	case 6:
		if (qrec_decode_meta_u64(p, n, &u64) == 0) {
			qrec_encode_meta_u64(&b, u64);
			check_same(&b, p, n);
		}
		break;
	case 7:
		if (qrec_decode_meta_u32(p, n, &u32) == 0) {
			qrec_encode_meta_u32(&b, u32);
			check_same(&b, p, n);
		}
		break;
	case 8:
		if (qrec_decode_chunk(p, n, &chunk, &len) == 0 &&
		    ((const uint8_t *)chunk != p + 1 || len != n - 1))
			__builtin_trap();
		break;
	case 9:
		if (qrec_decode_quarantine(p, n, 4, &q) == 0) {
			check_str(q.db, p, n);
			check_str(q.why, p, n);
			qrec_encode_quarantine(&b, &q);
			check_same(&b, p, n);
		}
		break;
	case 10:
		if (qkey_sched_decode(p, n, &se) == 0) {
			uint8_t k[QKEY_SCHED_LEN];

			qkey_sched(k, se.due_ms, se.qid, se.rcpt);
			if (memcmp(k, p, sizeof(k)) != 0)
				__builtin_trap();
		}
		break;
	case 11:
		if (qkey_rcpt_decode(p, n, &qid, &u32) == 0) {
			uint8_t k[QKEY_RCPT_LEN];

			qkey_rcpt(k, qid, u32);
			if (memcmp(k, p, sizeof(k)) != 0)
				__builtin_trap();
		}
		break;
	case 13: {
		static struct queue_softfail list[QUEUE_SOFTFAIL_MAX];

		if (qrec_decode_softfail(p, n, list, &len) == 0) {
			qrec_encode_softfail(&b, list, len);
			check_same(&b, p, n);
		}
		break;
	}
	default:
		if (qkey_evidx_decode(p, n, &qid, &u64) == 0) {
			uint8_t k[QKEY_EVIDX_LEN];

			qkey_evidx(k, qid, u64);
			if (memcmp(k, p, sizeof(k)) != 0)
				__builtin_trap();
		}
		break;
	}
	qbuf_free(&b);
	return 0;
}
