/*
 * test_sendmail.c - unit tests for the pure parts of the sendmail
 * command: stdin normalization (CRLF, "." end, NUL), header parsing for
 * -t, the From header, address checks, and the maildrop file format.
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
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailq.h"
#include "peercred.h"
#include "maildrop.h"
#include "queue.h"
#include "message.h"
#include "user_lookup.h"
#include "util.h"

#include <event2/thread.h>

static char *
normalize(const char *in, size_t len, bool dot_ends, size_t split)
{
	struct sm_normalizer n;
	struct sm_buf out = { 0 };

	sm_normalizer_init(&n, dot_ends);
	/* Fed in two pieces: a CRLF split across reads must still work. */
	assert_int_equal(sm_normalizer_feed(&n, in, split, &out), 0);
	assert_int_equal(sm_normalizer_feed(&n, in + split, len - split, &out), 0);
	assert_int_equal(sm_normalizer_finish(&n, &out), 0);
	sm_normalizer_free(&n);
	sm_buf_append(&out, "", 0);
	return out.data ? out.data : xstrdup("");
}

static void
test_normalize_line_ends(void **state)
{
	static const char in[] = "a\nb\r\nc\rd\n.e\nlast";
	char *out;

	(void)state;
	for (size_t split = 0; split <= strlen(in); split++) {
		out = normalize(in, strlen(in), false, split);
		assert_string_equal(out, "a\r\nb\r\nc\rd\r\n.e\r\nlast\r\n");
		free(out);
	}
}

static void
test_normalize_dot_ends(void **state)
{
	static const char in[] = "a\n..b\n.\r\nafter\n";
	char *out;

	(void)state;
	out = normalize(in, strlen(in), true, 3);
	assert_string_equal(out, "a\r\n..b\r\n");
	free(out);
	out = normalize(in, strlen(in), false, 3);
	assert_string_equal(out, "a\r\n..b\r\n.\r\nafter\r\n");
	free(out);
}

static void
test_normalize_refuses_nul(void **state)
{
	struct sm_normalizer n;
	struct sm_buf out = { 0 };

	(void)state;
	sm_normalizer_init(&n, false);
	assert_int_equal(sm_normalizer_feed(&n, "ab\0c\n", 5, &out), -1);
	assert_int_equal(sm_normalizer_finish(&n, &out), -1);
	sm_normalizer_free(&n);
	sm_buf_free(&out);
}

static void
test_header_length(void **state)
{
	static const char a[] = "From: x\r\nSubject: y\r\n z\r\n\r\nbody\r\n";
	static const char b[] = "From: x\r\nnot a header line\r\n";
	static const char c[] = "Subject: only\r\n";

	(void)state;
	assert_int_equal(sm_header_length(a, strlen(a)), strlen(a) - 6);
	assert_int_equal(sm_header_length(b, strlen(b)), 9);
	assert_int_equal(sm_header_length(c, strlen(c)), strlen(c));
	assert_true(has_sm_header(a, strlen(a) - 6, "subject"));
	assert_false(has_sm_header(a, strlen(a) - 6, "To"));
	assert_false(has_sm_header(a, strlen(a) - 6, "Fro"));
}

static void
check_list(const char *in, int rc, const char *const *want, size_t n)
{
	struct sm_list l = { 0 };
	const char *why = NULL;

	assert_int_equal(sm_parse_address_list(in, strlen(in), &l, &why), rc);
	if (rc == -1) {
		assert_non_null(why);
	} else {
		assert_int_equal(l.n, n);
		for (size_t i = 0; i < n; i++)
			assert_string_equal(l.v[i], want[i]);
	}
	sm_list_free(&l);
}

static void
test_address_lists(void **state)
{
	static const char *const w1[] = { "a@x.test", "b@x.test", "c@x.test" };
	static const char *const w2[] = { "\"a b\"@x.test", "d@x.test" };
	static const char *const w3[] = { "e@x.test" };

	(void)state;
	check_list("a@x.test, B Name <b@x.test>, \"Q, R\" <c@x.test>", 0, w1, 3);
	check_list("\"a b\"@x.test (comment (nested)), d@x.test", 0, w2, 2);
	check_list("undisclosed-recipients:;", 0, NULL, 0);
	check_list("team: e@x.test;", 0, w3, 1);
	check_list("<@route.test:e@x.test>", 0, w3, 1);
	check_list("", 0, NULL, 0);
	check_list("a@x.test, <b@x.test", -1, NULL, 0);
	check_list("\"open@x.test", -1, NULL, 0);
	check_list("(open comment", -1, NULL, 0);
	check_list("a b@x.test", -1, NULL, 0);
	check_list("x;", -1, NULL, 0);
}

static void
test_extract_recipients(void **state)
{
	static const char msg[] =
	    "To: a@x.test\r\n"
	    "Bcc: hidden@x.test,\r\n"
	    " other@x.test\r\n"
	    "Subject: s\r\n"
	    "\r\n"
	    "Bcc: body@x.test\r\n";
	struct sm_buf c = { 0 };
	struct sm_list l = { 0 };
	const char *why = NULL;

	(void)state;
	sm_buf_append(&c, msg, strlen(msg));
	assert_int_equal(sm_extract_recipients(&c, &l, &why), 0);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0], "a@x.test");
	assert_string_equal(l.v[1], "hidden@x.test");
	assert_string_equal(l.v[2], "other@x.test");
	assert_string_equal(c.data,
	    "To: a@x.test\r\nSubject: s\r\n\r\nBcc: body@x.test\r\n");
	sm_list_free(&l);
	sm_buf_free(&c);
}

static void
test_extract_resent(void **state)
{
	static const char msg[] =
	    "To: old@x.test\r\nResent-To: new@x.test\r\n"
	    "Resent-Bcc: rb@x.test\r\n\r\nbody\r\n";
	struct sm_buf c = { 0 };
	struct sm_list l = { 0 };
	const char *why = NULL;

	(void)state;
	sm_buf_append(&c, msg, strlen(msg));
	assert_int_equal(sm_extract_recipients(&c, &l, &why), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[0], "new@x.test");
	assert_string_equal(l.v[1], "rb@x.test");
	assert_string_equal(c.data,
	    "To: old@x.test\r\nResent-To: new@x.test\r\n\r\nbody\r\n");
	sm_list_free(&l);
	sm_buf_free(&c);
}

static void
test_from_header(void **state)
{
	char *h;

	(void)state;
	h = sm_from_header("Ann \"A\" \\ B", "ann@x.test");
	assert_string_equal(h, "From: \"Ann \\\"A\\\" \\\\ B\" <ann@x.test>\r\n");
	free(h);
	h = sm_from_header(NULL, "ann@x.test");
	assert_string_equal(h, "From: ann@x.test\r\n");
	free(h);
	h = sm_from_header("", "");
	assert_string_equal(h, "From: <>\r\n");
	free(h);
	assert_null(sm_from_header("Evil\r\nBcc: x@y", "a@x.test"));
	{
		char big[SM_NAME_MAX + 2];

		memset(big, 'n', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		assert_null(sm_from_header(big, "a@x.test"));
	}
}

static void
test_addresses(void **state)
{
	char big[SM_ADDRESS_MAX + 2];
	char *q;

	(void)state;
	assert_true(is_sm_address("a@x.test"));
	assert_true(is_sm_address("root"));
	assert_true(is_sm_address("\"a b\"@x.test"));
	assert_true(is_sm_address("a@[192.0.2.1]"));
	assert_false(is_sm_address(""));
	assert_false(is_sm_address("a@b\nBcc: c"));
	assert_false(is_sm_address("a b@x.test"));
	assert_false(is_sm_address("<a@x.test>"));
	assert_false(is_sm_address("a@b@c"));
	assert_false(is_sm_address("@x.test"));
	assert_false(is_sm_address("a@"));
	assert_false(is_sm_address("\"open@x.test"));
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_false(is_sm_address(big));
	q = sm_qualify("root", "host.test");
	assert_string_equal(q, "root@host.test");
	free(q);
	q = sm_qualify("a@x.test", "host.test");
	assert_string_equal(q, "a@x.test");
	free(q);
	assert_true(has_sm_8bit("j\xc3\xb6rg@x.test"));
	assert_false(has_sm_8bit("jorg@x.test"));
}

static void
test_maildrop_round_trip(void **state)
{
	char *rcpts[] = { "a@x.test", "b@x.test" };
	struct maildrop_msg m = {
		.sender = "s@x.test", .rcpts = rcpts, .n_rcpts = 2,
		.notify = 0x08, .ret = 2, .envid = "env1", .body = 1,
		.smtputf8 = true, .content = "Subject: x\r\n\r\nbody\r\n",
	};
	struct maildrop_msg p;
	const char *why = NULL;
	size_t len;
	char *enc;

	(void)state;
	m.content_len = strlen(m.content);
	enc = maildrop_encode(&m, &len);
	assert_int_equal(maildrop_parse(enc, len, &p, &why), 0);
	assert_string_equal(p.sender, "s@x.test");
	assert_int_equal(p.n_rcpts, 2);
	assert_string_equal(p.rcpts[1], "b@x.test");
	assert_int_equal(p.notify, 0x08);
	assert_int_equal(p.ret, 2);
	assert_string_equal(p.envid, "env1");
	assert_int_equal(p.body, 1);
	assert_true(p.smtputf8);
	assert_int_equal(p.content_len, m.content_len);
	assert_memory_equal(p.content, m.content, m.content_len);
	maildrop_msg_free(&p);
	/* A truncated file (the length disagrees) is refused. */
	assert_int_equal(maildrop_parse(enc, len - 1, &p, &why), -1);
	assert_non_null(why);
	free(enc);
}

static void
test_maildrop_rejects(void **state)
{
	static const char *const bad[] = {
		"",
		"TERN-MAILDROP 2\nS \nR a@x\nB 0\nU 0\nL 0\n\n",
		"TERN-MAILDROP 1\nS \nB 0\nU 0\nL 0\n\n",		/* no rcpt */
		"TERN-MAILDROP 1\nS \nR a b\nB 0\nU 0\nL 0\n\n",	/* bad rcpt */
		"TERN-MAILDROP 1\nS \nR a@x\nB 7\nU 0\nL 0\n\n",	/* body */
		"TERN-MAILDROP 1\nS \nR a@x\nB 0\nU 0\nL 5\n\nabc",	/* length */
		"TERN-MAILDROP 1\nS \nR a@x\nB 0\nU 0\nL 0\nx",	/* no blank */
		"TERN-MAILDROP 1\nS \nS \nR a@x\nB 0\nU 0\nL 0\n\n",	/* two S */
		"TERN-MAILDROP 1\nS \nR a@x\nZ 1\nB 0\nU 0\nL 0\n\n",	/* unknown */
		"TERN-MAILDROP 1\nS \nR a@x\r\nB 0\nU 0\nL 0\n\n",	/* CR */
		"TERN-MAILDROP 1\nS \nR a@x\nB 0\nU 0\n",		/* truncated */
	};
	static const char good[] = "TERN-MAILDROP 1\nS \nR a@x\nB 0\nU 0\nL 2\n\nhi";
	struct maildrop_msg p;
	const char *why;

	(void)state;
	for (size_t i = 0; i < TERN_ARRAY_LEN(bad); i++) {
		why = NULL;
		if (maildrop_parse(bad[i], strlen(bad[i]), &p, &why) != -1)
			fail_msg("case %zu parsed", i);
		assert_non_null(why);
	}
	assert_int_equal(maildrop_parse(good, strlen(good), &p, &why), 0);
	assert_string_equal(p.sender, "");
	assert_string_equal(p.envid, "");
	maildrop_msg_free(&p);
	assert_true(is_maildrop_name("0123ABCDEF.01234.89ABCDEF"));
	assert_false(is_maildrop_name(".0123ABCDEF.01234.89ABCDEF"));
	assert_false(is_maildrop_name("../x"));
}

static void
test_peercred(void **state)
{
	struct peer_identity id;
	char buf[128], path[] = "/tmp/tern-peercred-XXXXXX";
	int sv[2], fd;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(peercred_from_socket(sv[0], &id), 0);
	assert_int_equal(id.uid, getuid());
	assert_int_equal(id.pid, getpid());
	/* The name is looked up apart (it may be slow). */
	assert_true(id.user[0] == '\0');
	peercred_lookup_user(&id);
	assert_true(id.user[0] != '\0');
	assert_true(is_peer_privileged(&id, getuid()));
	close(sv[0]);
	close(sv[1]);
	/* Not a socket: an error, never a guess. */
	fd = mkstemp(path);
	assert_true(fd != -1);
	assert_int_equal(peercred_from_socket(fd, &id), -1);
	assert_int_equal(peercred_from_file(fd, &id), 0);
	assert_int_equal(id.uid, getuid());
	assert_true(id.user[0] == '\0');
	close(fd);
	unlink(path);

	memset(&id, 0, sizeof(id));
	id.uid = 4000000000u;	/* no password entry */
	peercred_lookup_user(&id);
	assert_string_equal(id.user, "#4000000000");
	assert_false(is_peer_privileged(&id, 995));
	peercred_auth_text(&id, buf, sizeof(buf));
	assert_string_equal(buf, "uid=4000000000 user=#4000000000");
	peercred_default_sender(&id, "host.test", buf, sizeof(buf));
	assert_string_equal(buf, "uid4000000000@host.test");
	id.uid = 0;
	peercred_lookup_user(&id);
	assert_string_equal(id.user, "root");
	assert_true(is_peer_privileged(&id, 995));
	peercred_default_sender(&id, "host.test", buf, sizeof(buf));
	assert_string_equal(buf, "root@host.test");
}

#define MAILQ_HEADER "-Queue ID-------- --Size-- ----Arrival Time---- " \
	"-Sender/Recipient-------\n"
#define RCPT_INDENT "                                               "	/* 47 */

/* Lists a real store: a message with two recipients, and the maildrop. */
static void
test_mailq_listing(void **state)
{
	char dir[] = "/tmp/tern-mailq-XXXXXX";
	struct queue_options qo = { 0 };
	struct queue_msg_info env;
	struct queue_batch *b;
	struct queue_msg *m;
	struct queue *q;
	char *drop, *text = NULL, qid[QUEUE_ID_LEN + 1];
	size_t len = 0;
	FILE *out;

	(void)state;
	setenv("TERN_QUEUE_UNSAFE_NOSYNC", "1", 1);
	assert_non_null(mkdtemp(dir));
	drop = xasprintf("%s/maildrop", dir);
	qo.dir = dir;
	qo.map_size = 1 << 24;
	qo.map_size_max = 1 << 26;
	q = queue_open(&qo);
	assert_non_null(q);

	out = open_memstream(&text, &len);
	assert_int_equal(mailq_print(q, drop, out), 0);
	fclose(out);
	assert_string_equal(text, MAILQ_HEADER "Mail queue is empty\n");
	free(text);

	memset(&env, 0, sizeof(env));
	env.sender = "app@example.test";
	env.envid = env.auth_user = env.client_addr = env.client_name = "";
	env.stream = env.message_id = "";
	env.source = CLEANUP_SOURCE_SENDMAIL;
	m = queue_msg_new(&env);
	assert_int_equal(queue_msg_add_rcpt(m, "a@example.net", "", 0), 0);
	assert_int_equal(queue_msg_add_rcpt(m, "b@example.net", "", 0), 0);
	queue_msg_append(m, "Subject: x\r\n\r\nhello\r\n", 21);
	b = queue_batch_new();
	queue_batch_add(b, m);
	assert_int_equal(queue_batch_commit(q, b), 0);
	queue_id_format(queue_batch_qid(b, 0), qid);
	queue_batch_free(b);
	assert_int_equal(mkdir(drop, 0700), 0);
	{
		char *f = xasprintf("%s/0123ABCDEF.01234.89ABCDEF", drop);
		FILE *fp = fopen(f, "w");

		fclose(fp);
		free(f);
	}

	out = open_memstream(&text, &len);
	assert_int_equal(mailq_print(q, drop, out), 0);
	fclose(out);
	/* ternctl queue's listing (queue/listing.c), then the maildrop. */
	assert_int_equal(strncmp(text, MAILQ_HEADER, strlen(MAILQ_HEADER)), 0);
	assert_int_equal(strncmp(text + strlen(MAILQ_HEADER), qid,
	    QUEUE_ID_LEN), 0);
	assert_non_null(strstr(text, "       21 "));
	assert_non_null(strstr(text, "  app@example.test\n"));
	assert_non_null(strstr(text, "\n" RCPT_INDENT "a@example.net\n"
	    RCPT_INDENT "b@example.net\n\n"));
	assert_non_null(strstr(text, "-- 1 Kbytes in 1 Request.\n"));
	assert_non_null(strstr(text, "-- 1 message in the maildrop"));
	free(text);
	queue_close(q);

	/* No queue at all yet: the maildrop still shows. */
	out = open_memstream(&text, &len);
	assert_int_equal(mailq_print(NULL, drop, out), 0);
	fclose(out);
	assert_string_equal(text, MAILQ_HEADER "Mail queue is empty\n"
	    "-- 1 message in the maildrop, waiting for tern to start.\n");
	free(text);
	{
		char *cmd = xasprintf("rm -rf '%s'", dir);

		assert_int_equal(system(cmd), 0);
		free(cmd);
	}
	free(drop);
}

/* The look-up threads (user_lookup.h) name each request and hand it
 * back in the loop. */
static struct event_base *lookup_base;
static int lookups_ready;

static void
lookup_ready(struct user_lookup_req *req)
{
	assert_ptr_equal(req->arg, req->id);
	if (++lookups_ready == 3)
		event_base_loopbreak(lookup_base);
}

static void
test_user_lookup(void **state)
{
	struct peer_identity ids[3];
	struct user_lookup_req reqs[3];
	struct user_lookup *ul;
	struct timeval limit = { 20, 0 };

	(void)state;
	assert_int_equal(evthread_use_pthreads(), 0);
	lookup_base = event_base_new();
	assert_non_null(lookup_base);
	ul = user_lookup_new(lookup_base, lookup_ready);
	memset(ids, 0, sizeof(ids));
	ids[0].uid = 0;
	ids[1].uid = 4000000000u;	/* no password entry */
	ids[2].uid = 0;
	for (int i = 0; i < 3; i++)
		user_lookup_submit(ul, &reqs[i], &ids[i], &ids[i]);
	/* Nothing runs the loop but this; the timer bounds a hang. */
	event_base_loopexit(lookup_base, &limit);
	event_base_dispatch(lookup_base);
	assert_int_equal(lookups_ready, 3);
	assert_string_equal(ids[0].user, "root");
	assert_string_equal(ids[1].user, "#4000000000");
	assert_string_equal(ids[2].user, "root");
	/* The threads stay (detached, waiting), as in a daemon. */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalize_line_ends),
		cmocka_unit_test(test_normalize_dot_ends),
		cmocka_unit_test(test_normalize_refuses_nul),
		cmocka_unit_test(test_header_length),
		cmocka_unit_test(test_address_lists),
		cmocka_unit_test(test_extract_recipients),
		cmocka_unit_test(test_extract_resent),
		cmocka_unit_test(test_from_header),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_maildrop_round_trip),
		cmocka_unit_test(test_maildrop_rejects),
		cmocka_unit_test(test_mailq_listing),
		cmocka_unit_test(test_peercred),
		cmocka_unit_test(test_user_lookup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
