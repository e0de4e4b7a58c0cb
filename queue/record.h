/*
 * record.h - encoders and decoders of the queue's keys and values
 * (schema 1, see SCHEMA.md). Pure functions over byte buffers: no LMDB,
 * no I/O. Internal to libternq; used by its unit tests and fuzz target.
 */
#ifndef TERN_QUEUE_RECORD_H
#define TERN_QUEUE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"

#define QREC_VERSION		1	/* the version byte of every value */
#define QUEUE_SCHEMA		1	/* meta "schema" */

/* Key lengths. */
#define QKEY_MSG_LEN		8	/* qid */
#define QKEY_RCPT_LEN		12	/* qid, index (recipients, active, content) */
#define QKEY_SCHED_LEN		20	/* due_ms, qid, index */
#define QKEY_SEQ_LEN		8	/* events, quarantine */
#define QKEY_EVIDX_LEN		16	/* qid, seq */

/* A growable output buffer. */
struct qbuf {
	uint8_t *p;
	size_t len;
	size_t cap;
};

void qbuf_init(struct qbuf *b);
void qbuf_reset(struct qbuf *b);
void qbuf_free(struct qbuf *b);
void qbuf_put_u8(struct qbuf *b, uint8_t v);
void qbuf_put_u16(struct qbuf *b, uint16_t v);
void qbuf_put_u32(struct qbuf *b, uint32_t v);
void qbuf_put_u64(struct qbuf *b, uint64_t v);
void qbuf_put_i64(struct qbuf *b, int64_t v);
/* NULL is "", longer than 65534 bytes is cut. */
void qbuf_put_str(struct qbuf *b, const char *s);
void qbuf_put_data(struct qbuf *b, const void *p, size_t n);

/* Big-endian helpers for keys. */
void qbe_put_u32(uint8_t *p, uint32_t v);
void qbe_put_u64(uint8_t *p, uint64_t v);
uint32_t qbe_get_u32(const uint8_t *p);
uint64_t qbe_get_u64(const uint8_t *p);

/* Keys. Times before 1970 are stored as 0. */
void qkey_msg(uint8_t k[QKEY_MSG_LEN], uint64_t qid);
void qkey_rcpt(uint8_t k[QKEY_RCPT_LEN], uint64_t qid, uint32_t index);
void qkey_sched(uint8_t k[QKEY_SCHED_LEN], int64_t due_ms, uint64_t qid,
    uint32_t index);
void qkey_seq(uint8_t k[QKEY_SEQ_LEN], uint64_t seq);
void qkey_evidx(uint8_t k[QKEY_EVIDX_LEN], uint64_t qid, uint64_t seq);
/* Key decoders: 0, or -1 when the length is wrong. */
int qkey_msg_decode(const void *k, size_t n, uint64_t *qid);
int qkey_rcpt_decode(const void *k, size_t n, uint64_t *qid, uint32_t *index);
int qkey_sched_decode(const void *k, size_t n, struct queue_sched_entry *e);
int qkey_seq_decode(const void *k, size_t n, uint64_t *seq);
int qkey_evidx_decode(const void *k, size_t n, uint64_t *qid, uint64_t *seq);

/*
 * Value encoders append to b; decoders return 0, or -1 when the value is
 * corrupt (version, length, field range, bytes left over). Decoded
 * strings point into the value: valid as long as its bytes are.
 */
void qrec_encode_msg(struct qbuf *b, const struct queue_msg_info *m);
int qrec_decode_msg(const void *p, size_t n, uint64_t qid,
    struct queue_msg_info *m);
void qrec_encode_rcpt(struct qbuf *b, const struct queue_rcpt_info *r);
int qrec_decode_rcpt(const void *p, size_t n, uint64_t qid, uint32_t index,
    struct queue_rcpt_info *r);
void qrec_encode_event(struct qbuf *b, const struct queue_event *e);
int qrec_decode_event(const void *p, size_t n, uint64_t seq,
    struct queue_event *e);
/* A soft-failure list (the key is the address); list has room for
 * QUEUE_SOFTFAIL_MAX entries. */
void qrec_encode_softfail(struct qbuf *b, const struct queue_softfail *list,
    size_t n);
int qrec_decode_softfail(const void *p, size_t len,
    struct queue_softfail *list, size_t *n);
/* The suppression key is the address; decode gets it from the caller. */
void qrec_encode_supp(struct qbuf *b, const struct queue_suppression *s);
int qrec_decode_supp(const void *p, size_t n, const char *address,
    struct queue_suppression *s);
void qrec_encode_active(struct qbuf *b, int64_t claimed_ms);
int qrec_decode_active(const void *p, size_t n, int64_t *claimed_ms);
/* A value that is only the version byte (schedule, event_index). */
void qrec_encode_marker(struct qbuf *b);
int qrec_decode_marker(const void *p, size_t n);
/* meta values */
void qrec_encode_meta_u64(struct qbuf *b, uint64_t v);
int qrec_decode_meta_u64(const void *p, size_t n, uint64_t *v);
void qrec_encode_meta_u32(struct qbuf *b, uint32_t v);
int qrec_decode_meta_u32(const void *p, size_t n, uint32_t *v);
/* A content chunk: the bytes after the version byte. */
int qrec_decode_chunk(const void *p, size_t n, const void **data,
    size_t *len);
void qrec_encode_quarantine(struct qbuf *b, const struct queue_quarantined *r);
int qrec_decode_quarantine(const void *p, size_t n, uint64_t seq,
    struct queue_quarantined *r);

/* Lower-cases an address into out (QUEUE_ADDRESS_MAX + 1 bytes); -1 when
 * it is empty or too long. */
int qaddr_key(const char *address, char *out, size_t *len);

#endif
