/*
 * result_decode.h - decoding of IPC_DELIVERY_RESULT, the one frame
 * tern-qmgr takes from delivery agents about the outcome of a job.
 * A pure function over the frame, so it can be fuzzed
 * (tests/fuzz/fuzz_qmgr_result.c).
 */
#ifndef TERN_QMGR_RESULT_DECODE_H
#define TERN_QMGR_RESULT_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "ipc.h"

/* One recipient's outcome; strings point into the frame. */
struct rcpt_result {
	uint32_t index;			/* recipient index in the message */
	uint16_t code;			/* SMTP reply code, 0 no reply */
	uint8_t stage;			/* enum delivery_stage */
	const char *status;		/* enhanced status */
	const char *text;		/* reply or diagnostic */
	const char *remote_host;
	const char *remote_addr;
	const char *tls;
	uint64_t delivery_ms;		/* how long the delivery took */
};

/* At most this many results in one frame (a job never has more). */
#define RESULT_MAX	100000

/*
 * Decodes the payload of a DELIVERY_RESULT. On success *out holds *n
 * results (free() the array; the strings stay in the frame) and 0 is
 * returned; -1 and *why when the frame is malformed: a count over
 * RESULT_MAX, a field missing or invalid, a code over 599, an unknown
 * stage, bytes left.
 */
int result_decode(struct ipc_msg *m, struct rcpt_result **out, size_t *n,
    const char **why);

#endif
