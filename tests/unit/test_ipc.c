/*
 * test_ipc.c - unit tests for the IPC framing: field round trips, the
 * strict readers, malformed frames, and live connections over a
 * socketpair (HELLO, descriptor passing, protocol errors).
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc.h"
#include "util.h"

/* Builds an ipc_msg over the payload of an encoded frame. */
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
	m.reqid = h.reqid;
	m.data = b + IPC_HEADER_SIZE;
	m.len = h.length;
	m.fd = -1;
	assert_int_equal(h.length, len - IPC_HEADER_SIZE);
	return m;
}

static void
test_field_roundtrip(void **state)
{
	struct ipc_out *o = ipc_out_new(IPC_CLEANUP_RCPT, 42);
	struct ipc_msg m;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	int64_t i64;
	bool b;
	const char *s;
	const void *p;
	size_t n;

	(void)state;
	ipc_put_u8(o, 0xab);
	ipc_put_u16(o, 0xbeef);
	ipc_put_u32(o, 0xdeadbeef);
	ipc_put_u64(o, 0x0123456789abcdefull);
	ipc_put_i64(o, -5);
	ipc_put_bool(o, true);
	ipc_put_str(o, "user@example.test");
	ipc_put_str(o, NULL);
	ipc_put_data(o, "a\0b", 3);
	m = msg_of(o);
	assert_int_equal(m.type, IPC_CLEANUP_RCPT);
	assert_int_equal(m.reqid, 42);
	assert_int_equal(ipc_get_u8(&m, &u8), 0);
	assert_int_equal(u8, 0xab);
	assert_int_equal(ipc_get_u16(&m, &u16), 0);
	assert_int_equal(u16, 0xbeef);
	assert_int_equal(ipc_get_u32(&m, &u32), 0);
	assert_int_equal(u32, 0xdeadbeef);
	assert_int_equal(ipc_get_u64(&m, &u64), 0);
	assert_true(u64 == 0x0123456789abcdefull);
	assert_int_equal(ipc_get_i64(&m, &i64), 0);
	assert_int_equal(i64, -5);
	assert_int_equal(ipc_get_bool(&m, &b), 0);
	assert_true(b);
	assert_int_equal(ipc_msg_end(&m), -1);
	assert_int_equal(ipc_get_str(&m, &s), 0);
	assert_string_equal(s, "user@example.test");
	assert_int_equal(ipc_get_str(&m, &s), 0);
	assert_string_equal(s, "");
	assert_int_equal(ipc_get_data(&m, &p, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(p, "a\0b", 3);
	assert_int_equal(ipc_msg_end(&m), 0);
	/* Reading past the end fails and leaves the position alone. */
	assert_int_equal(ipc_get_u8(&m, &u8), -1);
	assert_int_equal(ipc_get_str(&m, &s), -1);
	ipc_out_free(o);
}

static void
test_bad_fields(void **state)
{
	struct ipc_out *o = ipc_out_new(IPC_CLEANUP_RCPT, 1);
	struct ipc_msg m;
	const char *s;
	bool b;
	uint32_t u32;

	(void)state;
	ipc_put_data(o, "abc", 3);		/* a string must end in NUL */
	ipc_put_data(o, "a\0b\0", 4);		/* and have no other NUL */
	ipc_put_data(o, "", 0);			/* the empty data is no string */
	ipc_put_u8(o, 2);			/* a bool is 0 or 1 */
	ipc_put_u32(o, 1000);			/* a length beyond the payload */
	m = msg_of(o);
	assert_int_equal(ipc_get_str(&m, &s), -1);
	m.pos = 4 + 3;
	assert_int_equal(ipc_get_str(&m, &s), -1);
	m.pos = 4 + 3 + 4 + 4;
	assert_int_equal(ipc_get_str(&m, &s), -1);
	m.pos += 4;
	assert_int_equal(ipc_get_bool(&m, &b), -1);
	m.pos += 1;
	assert_int_equal(ipc_get_str(&m, &s), -1);
	assert_int_equal(ipc_get_u32(&m, &u32), 0);
	assert_int_equal(ipc_msg_end(&m), 0);
	ipc_out_free(o);
}

static void
test_header_decode(void **state)
{
	uint8_t b[IPC_HEADER_SIZE] = { 0 };
	struct ipc_header h;
	const char *why = NULL;

	(void)state;
	assert_int_equal(ipc_header_decode(b, 5, &h, &why), 0);
	b[5] = IPC_HELLO;
	assert_int_equal(ipc_header_decode(b, sizeof(b), &h, &why), 1);
	b[0] = 0xff;				/* length far over the limit */
	assert_int_equal(ipc_header_decode(b, sizeof(b), &h, &why), -1);
	assert_non_null(strstr(why, "longer"));
	b[0] = 0;
	b[7] = 0x80;				/* unknown flag */
	assert_int_equal(ipc_header_decode(b, sizeof(b), &h, &why), -1);
	b[7] = 0;
	b[4] = 0x7f;				/* unknown type */
	assert_int_equal(ipc_header_decode(b, sizeof(b), &h, &why), -1);
	assert_non_null(strstr(why, "type"));
}

/* ---- live connections ---- */

struct side {
	struct ipc_conn *conn;
	int msgs;
	uint32_t last_reqid;
	char last_str[64];
	int received_fd;
	char closed[128];
	struct event_base *base;
};

static void
side_msg(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	struct side *s = arg;
	const char *str;

	s->msgs++;
	s->last_reqid = m->reqid;
	if (m->type == IPC_QMGR_QUEUED) {
		int64_t t;

		if (ipc_get_i64(m, &t) == -1 || ipc_msg_end(m) == -1) {
			ipc_conn_protocol_error(c, "bad QMGR_QUEUED");
			return;
		}
	} else if (ipc_get_str(m, &str) == 0) {
		tern_strlcpy(s->last_str, str, sizeof(s->last_str));
	}
	if (m->fd != -1) {
		s->received_fd = m->fd;
		m->fd = -1;
	}
	event_base_loopbreak(s->base);
}

static void
side_close(struct ipc_conn *c, const char *why, void *arg)
{
	struct side *s = arg;

	tern_strlcpy(s->closed, why, sizeof(s->closed));
	ipc_conn_free(c);
	s->conn = NULL;
	event_base_loopbreak(s->base);
}

static void
run_until(struct event_base *base, bool *done)
{
	for (int i = 0; i < 100 && !*done; i++)
		event_base_loop(base, EVLOOP_ONCE);
}

static void
test_conn_exchange_and_fd(void **state)
{
	struct event_base *base = event_base_new();
	struct side a = { 0 }, b = { 0 };
	int sv[2], p[2];
	struct ipc_out *o;
	char buf[8];
	bool done;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	a.base = b.base = base;
	a.received_fd = b.received_fd = -1;
	a.conn = ipc_conn_new(base, sv[0], "a", side_msg, side_close, &a);
	b.conn = ipc_conn_new(base, sv[1], "b", side_msg, side_close, &b);

	o = ipc_out_new(IPC_CLEANUP_REPLY, 7);
	ipc_put_str(o, "hello b");
	ipc_conn_send(a.conn, o);
	done = false;
	while (b.msgs == 0)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(b.last_reqid, 7);
	assert_string_equal(b.last_str, "hello b");
	assert_string_equal(ipc_conn_peer_name(b.conn), "a");

	/* A descriptor travels with its frame. */
	assert_int_equal(pipe(p), 0);
	o = ipc_out_new(IPC_CLEANUP_REPLY, 8);
	ipc_put_str(o, "with fd");
	ipc_out_set_fd(o, p[1]);
	ipc_conn_send(b.conn, o);
	while (a.msgs == 0)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(a.last_reqid, 8);
	assert_string_equal(ipc_conn_peer_name(a.conn), "b");
	assert_true(a.received_fd >= 0);
	assert_int_equal(write(a.received_fd, "x", 1), 1);
	assert_int_equal(read(p[0], buf, 1), 1);
	assert_int_equal(buf[0], 'x');
	close(a.received_fd);
	close(p[0]);

	/* A message with leftover bytes is a protocol error that closes. */
	o = ipc_out_new(IPC_QMGR_QUEUED, 9);
	ipc_put_i64(o, 1);
	ipc_put_u8(o, 0);
	ipc_conn_send(a.conn, o);
	done = false;
	while (b.conn != NULL)
		event_base_loop(base, EVLOOP_ONCE);
	assert_string_equal(b.closed, "bad QMGR_QUEUED");
	run_until(base, &done);
	while (a.conn != NULL)
		event_base_loop(base, EVLOOP_ONCE);
	assert_non_null(strstr(a.closed, "closed"));
	event_base_free(base);
}

/* Raw bytes written to one end, and what the conn on the other makes of them. */
static void
expect_protocol_error(const void *bytes, size_t len, bool send_hello,
    const char *reason)
{
	struct event_base *base = event_base_new();
	struct side b = { 0 };
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	b.base = base;
	b.received_fd = -1;
	b.conn = ipc_conn_new(base, sv[1], "b", side_msg, side_close, &b);
	if (send_hello) {
		struct ipc_out *h = ipc_out_new(IPC_HELLO, 0);
		const uint8_t *hb;
		size_t hl;

		ipc_put_u32(h, IPC_VERSION);
		ipc_put_str(h, "raw");
		hb = ipc_out_bytes(h, &hl);
		assert_int_equal(write(sv[0], hb, hl), (ssize_t)hl);
		ipc_out_free(h);
	}
	assert_int_equal(write(sv[0], bytes, len), (ssize_t)len);
	/* Half-close: b sees the end of the stream, not a reset. */
	shutdown(sv[0], SHUT_WR);
	while (b.conn != NULL)
		event_base_loop(base, EVLOOP_ONCE);
	close(sv[0]);
	assert_int_equal(b.msgs, 0);
	if (strstr(b.closed, reason) == NULL)
		fail_msg("closed with '%s', expected '%s'", b.closed, reason);
	event_base_free(base);
}

static void
test_conn_protocol_errors(void **state)
{
	uint8_t garbage[32];
	struct ipc_out *o;
	const uint8_t *bytes;
	size_t len;

	(void)state;
	memset(garbage, 0xff, sizeof(garbage));
	expect_protocol_error(garbage, sizeof(garbage), true, "longer");

	o = ipc_out_new(IPC_CLEANUP_END, 1);
	bytes = ipc_out_bytes(o, &len);
	expect_protocol_error(bytes, len, false, "before HELLO");
	/* A frame cut short by the peer closing. */
	expect_protocol_error(bytes, len - 1, true, "middle of a frame");
	ipc_out_free(o);

	/* A frame that promises a descriptor and brings none. */
	o = ipc_out_new(IPC_CLEANUP_END, 1);
	ipc_out_set_fd(o, dup(0));
	bytes = ipc_out_bytes(o, &len);
	expect_protocol_error(bytes, len, true, "descriptor");
	ipc_out_free(o);

	/* The wrong IPC version in HELLO. */
	o = ipc_out_new(IPC_HELLO, 0);
	ipc_put_u32(o, IPC_VERSION + 1);
	ipc_put_str(o, "old");
	bytes = ipc_out_bytes(o, &len);
	expect_protocol_error(bytes, len, false, "version");
	ipc_out_free(o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_field_roundtrip),
		cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_header_decode),
		cmocka_unit_test(test_conn_exchange_and_fd),
		cmocka_unit_test(test_conn_protocol_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
