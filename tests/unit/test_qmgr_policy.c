/*
 * test_qmgr_policy.c - unit tests for tern-qmgr's pure decisions
 * (src/qmgr/policy.c): reply classes, the retry schedule with its
 * repeating last interval and bounded jitter, the clamp to the expiry,
 * expiry and the single delay notice (which bounces suppress is tested
 * with the shared policy in test_bounce.c), the backoff of commits on a
 * full queue; and the decoder of
 * DELIVERY_RESULT (src/qmgr/result_decode.c).
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"
#include "policy.h"
#include "result_decode.h"

static const int64_t schedule[] = { 300, 600, 1800 };

static struct retry_policy
policy(unsigned jitter)
{
	struct retry_policy p = {
		.schedule_s = schedule,
		.n_schedule = 3,
		.lifetime_s = 5 * 86400,
		.delay_warning_s = 4 * 3600,
		.jitter_pct = jitter,
	};
	return p;
}

static void
test_classify(void **state)
{
	(void)state;
	assert_int_equal(policy_classify(250), VERDICT_DELIVERED);
	assert_int_equal(policy_classify(251), VERDICT_DELIVERED);
	assert_int_equal(policy_classify(421), VERDICT_DEFERRED);
	assert_int_equal(policy_classify(451), VERDICT_DEFERRED);
	assert_int_equal(policy_classify(0), VERDICT_DEFERRED);
	assert_int_equal(policy_classify(354), VERDICT_DEFERRED);
	assert_int_equal(policy_classify(550), VERDICT_FAILED);
	assert_int_equal(policy_classify(554), VERDICT_FAILED);
}

static void
test_retry_intervals_last_repeats(void **state)
{
	struct retry_policy p = policy(0);

	(void)state;
	assert_int_equal(policy_retry_interval_ms(&p, 0), 300000);
	assert_int_equal(policy_retry_interval_ms(&p, 1), 300000);
	assert_int_equal(policy_retry_interval_ms(&p, 2), 600000);
	assert_int_equal(policy_retry_interval_ms(&p, 3), 1800000);
	assert_int_equal(policy_retry_interval_ms(&p, 4), 1800000);
	assert_int_equal(policy_retry_interval_ms(&p, 1000), 1800000);
}

static void
test_next_attempt_and_jitter(void **state)
{
	struct retry_policy p = policy(0), pj = policy(10);
	int64_t now = 1000000000000, arrival = now - 1000;
	bool saw_spread = false;

	(void)state;
	assert_int_equal(policy_next_attempt_ms(&p, now, arrival, 1, 12345),
	    now + 300000);
	assert_int_equal(policy_next_attempt_ms(&p, now, arrival, 2, 0),
	    now + 600000);
	/* Jitter: never earlier, at most 10% later. */
	for (uint32_t rnd = 0; rnd < 100000; rnd += 997) {
		int64_t n = policy_next_attempt_ms(&pj, now, arrival, 1, rnd);

		assert_true(n >= now + 300000);
		assert_true(n <= now + 330000);
		if (n != now + 300000)
			saw_spread = true;
	}
	assert_true(saw_spread);
	assert_true(policy_next_attempt_ms(&pj, now, arrival, 1, UINT32_MAX) <=
	    now + 330000);
}

static void
test_next_attempt_clamped_to_expiry(void **state)
{
	struct retry_policy p = policy(0);
	int64_t arrival = 1000000000000;
	int64_t expiry = arrival + 5 * 86400 * 1000LL;

	(void)state;
	assert_int_equal(policy_expiry_ms(&p, arrival), expiry);
	/* 10 minutes before the expiry a 30-minute retry comes at the expiry. */
	assert_int_equal(policy_next_attempt_ms(&p, expiry - 600000, arrival, 5, 0),
	    expiry);
	/* Past the expiry: due now, to be expired. */
	assert_int_equal(policy_next_attempt_ms(&p, expiry + 5, arrival, 5, 0),
	    expiry + 5);
	assert_false(policy_is_expired(&p, expiry - 1, arrival));
	assert_true(policy_is_expired(&p, expiry, arrival));
	assert_true(policy_is_expired(&p, expiry + 1, arrival));
}

static void
test_delay_warning_once(void **state)
{
	struct retry_policy p = policy(0);
	int64_t arrival = 1000000000000, four_h = 4 * 3600 * 1000LL;

	(void)state;
	assert_false(policy_delay_warning_due(&p, arrival + four_h - 1, arrival,
	    false));
	assert_true(policy_delay_warning_due(&p, arrival + four_h, arrival, false));
	assert_false(policy_delay_warning_due(&p, arrival + four_h, arrival, true));
	p.delay_warning_s = 0;
	assert_false(policy_delay_warning_due(&p, arrival + 10 * four_h, arrival,
	    false));
}

/* ---- DELIVERY_RESULT decoding ---- */

static struct ipc_msg
msg_of(struct ipc_out *o)
{
	struct ipc_msg m;
	struct ipc_header h;
	const char *why;
	size_t len;
	const uint8_t *b = ipc_out_bytes(o, &len);

	assert_int_equal(ipc_header_decode(b, len, &h, &why), 1);
	memset(&m, 0, sizeof(m));
	m.type = h.type;
	m.data = b + IPC_HEADER_SIZE;
	m.len = h.length;
	m.fd = -1;
	return m;
}

static void
put_result_at(struct ipc_out *o, uint32_t index, uint16_t code, uint8_t stage)
{
	ipc_put_u32(o, index);
	ipc_put_u16(o, code);
	ipc_put_u8(o, stage);
	ipc_put_str(o, "2.0.0");
	ipc_put_str(o, "ok");
	ipc_put_str(o, "mx.example.test[192.0.2.1]:25");
	ipc_put_str(o, "192.0.2.1");
	ipc_put_str(o, "TLSv1.3 TLS_AES_256_GCM_SHA384");
	ipc_put_u64(o, 123);
}

static void
put_result(struct ipc_out *o, uint32_t index, uint16_t code)
{
	put_result_at(o, index, code, code != 0 ? DELIVERY_STAGE_DOT :
	    DELIVERY_STAGE_CONNECT);
}

static void
test_result_decode(void **state)
{
	struct ipc_out *o = ipc_out_new(IPC_DELIVERY_RESULT, 7);
	struct rcpt_result *r;
	struct ipc_msg m;
	const char *why;
	size_t n;

	(void)state;
	ipc_put_u32(o, 2);
	put_result(o, 0, 250);
	put_result(o, 3, 0);
	m = msg_of(o);
	assert_int_equal(result_decode(&m, &r, &n, &why), 0);
	assert_int_equal(n, 2);
	assert_int_equal(r[0].code, 250);
	assert_int_equal(r[1].index, 3);
	assert_int_equal(r[1].code, 0);
	assert_int_equal(r[0].stage, DELIVERY_STAGE_DOT);
	assert_int_equal(r[1].stage, DELIVERY_STAGE_CONNECT);
	assert_string_equal(r[0].remote_host, "mx.example.test[192.0.2.1]:25");
	assert_int_equal(r[0].delivery_ms, 123);
	free(r);
	ipc_out_free(o);
}

static void
test_result_decode_rejects(void **state)
{
	struct rcpt_result *r;
	struct ipc_msg m;
	const char *why;
	size_t n;
	struct ipc_out *o;

	(void)state;
	/* A count larger than the frame. */
	o = ipc_out_new(IPC_DELIVERY_RESULT, 1);
	ipc_put_u32(o, 100000);
	m = msg_of(o);
	assert_int_equal(result_decode(&m, &r, &n, &why), -1);
	assert_null(r);
	ipc_out_free(o);
	/* Too many. */
	o = ipc_out_new(IPC_DELIVERY_RESULT, 1);
	ipc_put_u32(o, RESULT_MAX + 1);
	m = msg_of(o);
	assert_int_equal(result_decode(&m, &r, &n, &why), -1);
	ipc_out_free(o);
	/* A code out of range. */
	o = ipc_out_new(IPC_DELIVERY_RESULT, 1);
	ipc_put_u32(o, 1);
	put_result(o, 0, 600);
	m = msg_of(o);
	assert_int_equal(result_decode(&m, &r, &n, &why), -1);
	assert_string_equal(why, "reply code out of range");
	ipc_out_free(o);
	/* A stage out of range. */
	o = ipc_out_new(IPC_DELIVERY_RESULT, 1);
	ipc_put_u32(o, 1);
	put_result_at(o, 0, 550, DELIVERY_STAGE_MAX + 1);
	m = msg_of(o);
	assert_int_equal(result_decode(&m, &r, &n, &why), -1);
	assert_string_equal(why, "unknown stage");
	ipc_out_free(o);
	/* Truncated. */
	o = ipc_out_new(IPC_DELIVERY_RESULT, 1);
	ipc_put_u32(o, 2);
	put_result(o, 0, 250);
	m = msg_of(o);
	assert_int_equal(result_decode(&m, &r, &n, &why), -1);
	ipc_out_free(o);
	/* Bytes left over. */
	o = ipc_out_new(IPC_DELIVERY_RESULT, 1);
	ipc_put_u32(o, 1);
	put_result(o, 0, 250);
	ipc_put_u8(o, 0);
	m = msg_of(o);
	assert_int_equal(result_decode(&m, &r, &n, &why), -1);
	assert_string_equal(why, "bytes left over");
	ipc_out_free(o);
	/* Every stage has a name; past the last, none. */
	for (unsigned st = 0; st <= DELIVERY_STAGE_MAX; st++)
		assert_non_null(delivery_stage_name((uint8_t)st));
	assert_string_equal(delivery_stage_name(DELIVERY_STAGE_RCPT), "rcpt");
	assert_null(delivery_stage_name(DELIVERY_STAGE_MAX + 1));
	/* Empty is fine (a job with no recipient never exists, but the
	 * frame is well formed). */
	o = ipc_out_new(IPC_DELIVERY_RESULT, 1);
	ipc_put_u32(o, 0);
	m = msg_of(o);
	assert_int_equal(result_decode(&m, &r, &n, &why), 0);
	assert_int_equal(n, 0);
	ipc_out_free(o);
}

static void
test_full_retry_backoff(void **state)
{
	static const int64_t want[] = { 1000, 2000, 4000, 8000, 16000, 30000,
	    30000, 30000 };
	int64_t ms = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		ms = policy_full_retry_ms(ms);
		assert_int_equal(ms, want[i]);
	}
	/* Anything odd starts over, never waits 0 or past the cap. */
	assert_int_equal(policy_full_retry_ms(-5), 1000);
	assert_int_equal(policy_full_retry_ms(999), 1000);
	assert_int_equal(policy_full_retry_ms(1500), 3000);
	assert_int_equal(policy_full_retry_ms(14999), 29998);
	assert_int_equal(policy_full_retry_ms(15000), 30000);
	assert_int_equal(policy_full_retry_ms(INT64_MAX), 30000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_retry_intervals_last_repeats),
		cmocka_unit_test(test_next_attempt_and_jitter),
		cmocka_unit_test(test_next_attempt_clamped_to_expiry),
		cmocka_unit_test(test_delay_warning_once),
		cmocka_unit_test(test_full_retry_backoff),
		cmocka_unit_test(test_result_decode),
		cmocka_unit_test(test_result_decode_rejects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
