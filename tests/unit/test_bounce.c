/*
 * test_bounce.c - unit tests for tern-bounce's pure libraries: DSN
 * composition against golden files (tests/unit/golden; regenerate with
 * TERN_UPDATE_GOLDEN=1 and review the diff), VERP tokens, inbound
 * feedback parsing (DSN, ARF, plain-text bounces), classification and
 * the suppression policy.
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
#include <sys/stat.h>
#include <unistd.h>

#include "classify.h"
#include "config.h"
#include "dsn.h"
#include "dsn_queue.h"
#include "feedback.h"
#include "suppress_policy.h"
#include "queue.h"
#include "util.h"
#include "verp.h"

#ifndef GOLDEN_DIR
#error GOLDEN_DIR must be defined
#endif

static const char original[] =
    "From: App <app@example.test>\r\n"
    "To: user@example.net\r\n"
    "Subject: Your receipt\r\n"
    "Message-ID: <abc@example.test>\r\n"
    "\r\n"
    "Thank you for your order.\r\n"
    ".A line with a dot\r\n";

static char *
read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	if (fp == NULL)
		return NULL;
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = xmalloc((size_t)n + 1);
	if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		fclose(fp);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

/* Compares with the golden file, or writes it with TERN_UPDATE_GOLDEN=1. */
static void
check_golden(const char *name, const char *got, size_t len)
{
	char *path = xasprintf("%s/%s", GOLDEN_DIR, name);
	size_t want_len = 0;
	char *want;

	if (getenv("TERN_UPDATE_GOLDEN") != NULL) {
		FILE *fp = fopen(path, "wb");

		assert_non_null(fp);
		assert_int_equal(fwrite(got, 1, len, fp), len);
		fclose(fp);
	}
	want = read_file(path, &want_len);
	if (want == NULL)
		fail_msg("missing golden file %s (TERN_UPDATE_GOLDEN=1 makes it)", path);
	if (want_len != len || memcmp(want, got, len) != 0)
		fail_msg("%s differs from the composed DSN:\n%.*s", path, (int)len, got);
	free(want);
	free(path);
}

static void
check_lines(const char *s, size_t len)
{
	size_t run = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n') {
			assert_true(i > 0 && s[i - 1] == '\r');
			run = 0;
			continue;
		}
		run++;
		assert_true(run <= DSN_LINE_MAX + 1);	/* + the CR */
	}
}

static struct dsn_report
base_report(void)
{
	struct dsn_report r;

	memset(&r, 0, sizeof(r));
	r.reporting_mta = "mail.example.test";
	r.postmaster = "MAILER-DAEMON@mail.example.test";
	r.to = "app@example.test";
	r.arrival = 1795732930;		/* Thu, 26 Nov 2026 ... */
	r.date = 1795736530;
	r.message_id = "20261126.dsn.1@mail.example.test";
	r.boundary = "tern-dsn-0001/mail.example.test";
	r.full_limit = 1024 * 1024;
	r.original = original;
	r.original_len = strlen(original);
	return r;
}

static void
test_dsn_failed(void **state)
{
	struct dsn_rcpt rc[2] = {
		{ .address = "user@example.net", .orcpt = "rfc822;User@Example.NET",
		  .action = DSN_ACTION_FAILED, .status = "5.1.1", .code = 550,
		  .text = "5.1.1 <user@example.net>: Recipient address rejected: "
		  "User unknown in virtual mailbox table; please check the "
		  "address and try again, or contact the postmaster of this domain",
		  .remote_host = "mx.example.net[192.0.2.25]:25",
		  .last_attempt = 1795736500 },
		{ .address = "gone@example.org", .orcpt = "",
		  .action = DSN_ACTION_FAILED, .status = "5.4.4", .code = 0,
		  .text = "Host or domain name not found. Name service error for "
		  "name=example.org type=MX: Host not found",
		  .remote_host = "", .last_attempt = 1795736510 },
	};
	struct dsn_report r = base_report();
	struct feedback_item items[4];
	size_t len, n = 0;
	bool eightbit;
	char *dsn;

	(void)state;
	r.rcpts = rc;
	r.n_rcpts = 2;
	dsn = dsn_compose(&r, &len, &eightbit);
	assert_false(eightbit);
	check_lines(dsn, len);
	check_golden("dsn-failed.eml", dsn, len);
	/* Our own parser reads it back. */
	assert_int_equal(feedback_parse(dsn, len, items, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(items[0].kind, FEEDBACK_FAILED);
	assert_string_equal(items[0].recipient, "user@example.net");
	assert_string_equal(items[0].original_recipient, "User@Example.NET");
	assert_string_equal(items[0].status, "5.1.1");
	assert_int_equal(items[0].code, 550);
	assert_string_equal(items[0].remote_mta, "mx.example.net");
	assert_string_equal(items[1].recipient, "gone@example.org");
	assert_string_equal(items[1].status, "5.4.4");
	free(dsn);
}

static void
test_dsn_delayed(void **state)
{
	struct dsn_rcpt rc = {
		.address = "slow@example.net", .orcpt = "",
		.action = DSN_ACTION_DELAYED, .status = "4.4.1", .code = 0,
		.text = "connect to mx.example.net[192.0.2.25]:25: Connection timed out",
		.remote_host = "mx.example.net[192.0.2.25]:25",
		.last_attempt = 1795736500, .will_retry_until = 1796164930,
	};
	struct dsn_report r = base_report();
	struct feedback_item it;
	size_t len, n;
	bool eightbit;
	char *dsn;

	(void)state;
	r.envid = "QQ314159";
	r.rcpts = &rc;
	r.n_rcpts = 1;
	dsn = dsn_compose(&r, &len, &eightbit);
	check_lines(dsn, len);
	check_golden("dsn-delayed.eml", dsn, len);
	assert_non_null(strstr(dsn, "\r\nWill-Retry-Until: "));
	assert_non_null(strstr(dsn, "\r\nOriginal-Envelope-Id: QQ314159\r\n"));
	assert_int_equal(feedback_parse(dsn, len, &it, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(it.kind, FEEDBACK_DELAYED);
	free(dsn);
}

static void
test_dsn_delivered_full(void **state)
{
	struct dsn_rcpt rc = {
		.address = "user@example.net", .orcpt = "",
		.action = DSN_ACTION_DELIVERED, .status = "2.0.0", .code = 250,
		.text = "2.0.0 Ok: queued as 4F2A", .remote_host = "mx.example.net[192.0.2.25]:25",
		.last_attempt = 1795736500,
	};
	struct dsn_report r = base_report();
	size_t len;
	bool eightbit;
	char *dsn;

	(void)state;
	r.return_full = true;
	r.rcpts = &rc;
	r.n_rcpts = 1;
	dsn = dsn_compose(&r, &len, &eightbit);
	check_lines(dsn, len);
	check_golden("dsn-delivered.eml", dsn, len);
	assert_non_null(strstr(dsn, "Content-Type: message/rfc822\r\n"));
	assert_non_null(strstr(dsn, "Thank you for your order."));
	assert_null(strstr(dsn, "Will-Retry-Until"));
	free(dsn);
	/* Too large for RET=FULL: headers only. */
	r.full_limit = 10;
	dsn = dsn_compose(&r, &len, &eightbit);
	assert_non_null(strstr(dsn, "Content-Type: text/rfc822-headers\r\n"));
	assert_null(strstr(dsn, "Thank you for your order."));
	free(dsn);
}

static void
test_dsn_long_and_hostile_fields(void **state)
{
	char word[3000], *msg;
	struct dsn_rcpt rc = {
		.address = "u@example.net", .orcpt = "rfc822;u@example.net",
		.action = DSN_ACTION_FAILED, .status = "5.0.0", .code = 554,
		.remote_host = "mx.example.net[192.0.2.1]:25",
	};
	struct dsn_report r = base_report();
	size_t len;
	bool eightbit;
	char *dsn;

	(void)state;
	memset(word, 'x', sizeof(word) - 1);
	word[sizeof(word) - 1] = '\0';
	msg = xasprintf("first\r\n\r\nFinal-Recipient: rfc822; evil@x.test\r\n"
	    "Action: failed\r\n%s", word);
	rc.text = msg;
	r.rcpts = &rc;
	r.n_rcpts = 1;
	r.return_full = true;
	dsn = dsn_compose(&r, &len, &eightbit);
	check_lines(dsn, len);
	/* The text cannot add a recipient group to the report. */
	{
		struct feedback_item it[3];
		size_t n;

		assert_int_equal(feedback_parse(dsn, len, it, 3, &n), 0);
		assert_int_equal(n, 1);
		assert_string_equal(it[0].recipient, "u@example.net");
	}
	free(dsn);
	free(msg);
}

static void
test_dsn_date(void **state)
{
	char buf[64];

	(void)state;
	dsn_format_date(0, buf, sizeof(buf));
	assert_string_equal(buf, "Thu, 1 Jan 1970 00:00:00 +0000");
	dsn_format_date(1795732930, buf, sizeof(buf));
	assert_string_equal(buf, "Thu, 26 Nov 2026 22:42:10 +0000");
}

/* The report for queued recipients: one DSN for those that failed
 * together, nothing for the null sender or NOTIFY=NEVER. */
static void
test_dsn_from_queue(void **state)
{
	struct queue_rcpt_info rcpts[3];
	struct queue_loaded_msg m;
	struct feedback_item it[4];
	struct dsn_build b;
	uint32_t idx[2] = { 0, 2 };
	size_t len, n;
	bool eightbit;
	char *dsn;

	(void)state;
	memset(&m, 0, sizeof(m));
	memset(rcpts, 0, sizeof(rcpts));
	m.info.qid = 0xABCDEF;
	m.info.arrival_ms = 1795732930000LL;
	m.info.sender = "app@example.test";
	m.info.envid = "E1";
	m.info.ret = CLEANUP_RET_DEFAULT;
	m.rcpts = rcpts;
	m.n_rcpts = 3;
	for (uint32_t i = 0; i < 3; i++) {
		rcpts[i].qid = m.info.qid;
		rcpts[i].index = i;
		rcpts[i].orcpt = "";
		rcpts[i].last_status = "5.1.1";
		rcpts[i].last_text = "no such user";
		rcpts[i].last_host = "mx.example.net[192.0.2.1]:25";
		rcpts[i].last_code = 550;
		rcpts[i].last_attempt_ms = 1795736500000LL;
		rcpts[i].bounce_class = "";
	}
	rcpts[0].address = "a@example.net";
	rcpts[1].address = "b@example.net";
	rcpts[2].address = "c@example.net";

	assert_int_equal(dsn_build_from_queue(&b, &m, idx, 2, QUEUE_RF_DSN_FAILURE,
	    "mail.example.test", 1795736530, 5 * 86400, 7, original,
	    strlen(original)), 0);
	assert_true(b.report.return_full);	/* a failure without RET */
	dsn = dsn_compose(&b.report, &len, &eightbit);
	assert_non_null(strstr(dsn, "Message-ID: <0000000000ABCDEF.7.dsn@mail.example.test>"));
	assert_non_null(strstr(dsn, "Original-Envelope-Id: E1\r\n"));
	assert_non_null(strstr(dsn, "Content-Type: message/rfc822\r\n"));
	assert_int_equal(feedback_parse(dsn, len, it, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(it[0].recipient, "a@example.net");
	assert_string_equal(it[1].recipient, "c@example.net");
	assert_string_equal(it[1].status, "5.1.1");
	free(dsn);
	dsn_build_free(&b);

	/* A delay: Will-Retry-Until is arrival + lifetime; headers only. */
	rcpts[1].last_status = "";
	assert_int_equal(dsn_build_from_queue(&b, &m, &idx[0] + 0, 1,
	    QUEUE_RF_DSN_DELAY, "mail.example.test", 1795736530, 5 * 86400, 8,
	    original, strlen(original)), 0);
	assert_false(b.report.return_full);
	assert_true(b.rcpts[0].will_retry_until == 1795732930 + 5 * 86400);
	dsn_build_free(&b);

	/* Success only when asked; never for NOTIFY=NEVER or the null sender. */
	assert_int_equal(dsn_build_from_queue(&b, &m, idx, 1, QUEUE_RF_DSN_SUCCESS,
	    "h", 0, 0, 0, "", 0), -1);
	rcpts[0].notify = CLEANUP_NOTIFY_SUCCESS;
	assert_int_equal(dsn_build_from_queue(&b, &m, idx, 1, QUEUE_RF_DSN_SUCCESS,
	    "h", 0, 0, 0, "", 0), 0);
	assert_int_equal(b.rcpts[0].action, DSN_ACTION_DELIVERED);
	dsn_build_free(&b);
	rcpts[0].notify = CLEANUP_NOTIFY_NEVER;
	assert_int_equal(dsn_build_from_queue(&b, &m, idx, 1, QUEUE_RF_DSN_FAILURE,
	    "h", 0, 0, 0, "", 0), -1);
	rcpts[0].notify = 0;
	m.info.sender = "";
	assert_int_equal(dsn_build_from_queue(&b, &m, idx, 1, QUEUE_RF_DSN_FAILURE,
	    "h", 0, 0, 0, "", 0), -1);
	m.info.sender = "app@example.test";
	idx[0] = 9;	/* not in the message */
	assert_int_equal(dsn_build_from_queue(&b, &m, idx, 1, QUEUE_RF_DSN_FAILURE,
	    "h", 0, 0, 0, "", 0), -1);
}

/* ---- VERP ---- */

static void
test_verp_round_trip_and_tamper(void **state)
{
	uint8_t key[VERP_KEY_LEN], other[VERP_KEY_LEN];
	char addr[128], bad[128];
	uint64_t qid;
	uint32_t rcpt;

	(void)state;
	memset(key, 7, sizeof(key));
	memset(other, 8, sizeof(other));
	assert_int_equal(verp_encode(key, 0x0123456789ABCDEFull, 42,
	    "Bounces.Example.TEST", addr, sizeof(addr)), 0);
	assert_int_equal(strncmp(addr, "b-", 2), 0);
	assert_int_equal(strlen(addr), 2 + VERP_TOKEN_LEN + 1 +
	    strlen("bounces.example.test"));
	assert_int_equal(verp_decode(key, addr, &qid, &rcpt), 0);
	assert_true(qid == 0x0123456789ABCDEFull);
	assert_int_equal(rcpt, 42);
	/* Case changes in transit are harmless. */
	for (char *p = addr; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	assert_int_equal(verp_decode(key, addr, &qid, &rcpt), 0);
	snprintf(bad, sizeof(bad), "<%s>", addr);
	assert_int_equal(verp_decode(key, bad, &qid, &rcpt), 0);
	/* Every single-character change of the token is detected. */
	for (size_t i = 2; i < 2 + VERP_TOKEN_LEN; i++) {
		tern_strlcpy(bad, addr, sizeof(bad));
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		assert_int_equal(verp_decode(key, bad, &qid, &rcpt), -1);
	}
	/* Another domain, another key, other shapes: refused. */
	tern_strlcpy(bad, addr, sizeof(bad));
	memcpy(strchr(bad, '@') + 1, "x", 1);
	assert_int_equal(verp_decode(key, bad, &qid, &rcpt), -1);
	assert_int_equal(verp_decode(other, addr, &qid, &rcpt), -1);
	assert_int_equal(verp_decode(key, "b-abc@bounces.example.test", &qid, &rcpt), -1);
	assert_int_equal(verp_decode(key, "user@bounces.example.test", &qid, &rcpt), -1);
	assert_int_equal(verp_decode(key, "", &qid, &rcpt), -1);
	assert_int_equal(verp_decode(key, "<", &qid, &rcpt), -1);
	assert_int_equal(verp_encode(key, 1, 1, "d.test", addr, 20), -1);
}

static void
test_verp_key_file(void **state)
{
	char dir[] = "/tmp/tern-verp-XXXXXX";
	uint8_t k1[VERP_KEY_LEN], k2[VERP_KEY_LEN];
	struct stat sb;
	char *path;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(verp_key_load(dir, k1), 0);
	assert_int_equal(verp_key_load(dir, k2), 0);
	assert_memory_equal(k1, k2, VERP_KEY_LEN);
	path = xasprintf("%s/%s", dir, VERP_KEY_FILE);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(sb.st_size, VERP_KEY_LEN);
	/* A damaged key file is an error, never silently replaced. */
	truncate(path, 5);
	assert_int_equal(verp_key_load(dir, k2), -1);
	unlink(path);
	rmdir(dir);
	free(path);
}

/* ---- feedback ---- */

static const char arf[] =
    "From: feedback@isp.example\r\n"
    "To: b-xyz@bounces.example.test\r\n"
    "Subject: FW: Your receipt\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=feedback-report;\r\n"
    "\tboundary=\"part1_13d.2e68ed54_boundary\"\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: text/plain; charset=\"US-ASCII\"\r\n"
    "\r\n"
    "This is an email abuse report for an email message received from\r\n"
    "IP 192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: message/feedback-report\r\n"
    "\r\n"
    "Feedback-Type: abuse\r\n"
    "User-Agent: SomeGenerator/1.0\r\n"
    "Version: 1\r\n"
    "Original-Mail-From: <b-xyz@bounces.example.test>\r\n"
    "Original-Rcpt-To: <complainer@example.net>\r\n"
    "Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "From: <app@example.test>\r\n"
    "To: <complainer@example.net>\r\n"
    "Subject: Your receipt\r\n"
    "\r\n"
    "body\r\n"
    "--part1_13d.2e68ed54_boundary--\r\n";

static void
test_feedback_arf(void **state)
{
	struct feedback_item it[2];
	size_t n;
	char *copy, *p;

	(void)state;
	assert_int_equal(feedback_parse(arf, strlen(arf), it, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(it[0].kind, FEEDBACK_COMPLAINT);
	assert_int_equal(it[0].format, FEEDBACK_FMT_ARF);
	assert_string_equal(it[0].recipient, "complainer@example.net");
	assert_string_equal(it[0].feedback_type, "abuse");
	/* Without Original-Rcpt-To, the returned message's To: tells. */
	copy = xstrdup(arf);
	p = strstr(copy, "Original-Rcpt-To");
	memcpy(p, "X-Original-Rcpt", 15);
	assert_int_equal(feedback_parse(copy, strlen(copy), it, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].recipient, "complainer@example.net");
	/* not-spam is a report, not a complaint. */
	p = strstr(copy, "Feedback-Type: abuse");
	memcpy(p + 15, "other", 5);
	assert_int_equal(feedback_parse(copy, strlen(copy), it, 2, &n), 0);
	assert_int_equal(it[0].kind, FEEDBACK_OTHER_REPORT);
	free(copy);
}

static void
test_feedback_base64_dsn(void **state)
{
	/* "Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; a@b.example\r\n
	 *  Action: failed\r\nStatus: 5.2.2\r\n" in base64. */
	static const char msg[] =
	    "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n"
	    "\n"
	    "--B\n"
	    "Content-Type: text/plain\n"
	    "\n"
	    "Delivery failed.\n"
	    "--B\n"
	    "Content-Type: message/delivery-status\n"
	    "Content-Transfer-Encoding: base64\n"
	    "\n"
	    "UmVwb3J0aW5nLU1UQTogZG5zOyBteA0KDQpGaW5hbC1SZWNpcGllbnQ6IHJmYzgyMjsg\n"
	    "YUBiLmV4YW1wbGUNCkFjdGlvbjogZmFpbGVkDQpTdGF0dXM6IDUuMi4yDQo=\n"
	    "--B--\n";
	struct feedback_item it;
	size_t n;

	(void)state;
	assert_int_equal(feedback_parse(msg, strlen(msg), &it, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(it.kind, FEEDBACK_FAILED);
	assert_string_equal(it.recipient, "a@b.example");
	assert_string_equal(it.status, "5.2.2");
}

struct text_case {
	const char *msg;
	const char *recipient;
	const char *status;
	unsigned code;
	enum feedback_kind kind;
};

static void
test_feedback_text_bounces(void **state)
{
	static const struct text_case cases[] = {
		/* Exim */
		{ "Subject: Mail delivery failed\r\n\r\n"
		  "This message was created automatically by mail delivery software.\r\n\r\n"
		  "A message that you sent could not be delivered to one or more of its\r\n"
		  "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
		  "  lost@example.net\r\n"
		  "    SMTP error from remote mail server after RCPT TO:<lost@example.net>:\r\n"
		  "    550 5.1.1 User unknown\r\n",
		  "lost@example.net", "5.1.1", 550, FEEDBACK_FAILED },
		/* qmail */
		{ "Subject: failure notice\n\nHi. This is the qmail-send program at mx.example.net.\n"
		  "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
		  "<nobody@example.net>:\nSorry, no mailbox here by that name. (#5.1.1)\n",
		  "nobody@example.net", "5.1.1", 0, FEEDBACK_FAILED },
		/* A bare SMTP code, a full mailbox */
		{ "Subject: Undeliverable\n\nMAILER-DAEMON@mx.example.net could not deliver to"
		  " full@example.net: 452 mailbox full, try again\n",
		  "full@example.net", "4.0.0", 452, FEEDBACK_DELAYED },
		/* MIME-wrapped text with quoted-printable */
		{ "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"x\"\n\n--x\n"
		  "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
		  "Delivery to quota@example.net failed: 552 5.2.2 mailbox over qu=\nota\n--x--\n",
		  "quota@example.net", "5.2.2", 552, FEEDBACK_FAILED },
	};
	(void)state;
	for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
		struct feedback_item it;
		size_t n;

		if (feedback_parse(cases[i].msg, strlen(cases[i].msg), &it, 1, &n) != 0)
			fail_msg("case %zu not recognized", i);
		assert_int_equal(n, 1);
		assert_int_equal(it.format, FEEDBACK_FMT_TEXT);
		assert_string_equal(it.recipient, cases[i].recipient);
		assert_string_equal(it.status, cases[i].status);
		assert_int_equal(it.code, cases[i].code);
		assert_int_equal(it.kind, cases[i].kind);
		assert_true(it.diagnostic[0] != '\0');
	}
}

static void
test_feedback_unrecognized(void **state)
{
	static const char *const msgs[] = {
		"Subject: I am on vacation\r\n\r\nBack on Monday.\r\n",
		"",
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"\"\r\n\r\n",
		"Content-Type: image/png\r\n\r\n550 5.1.1 a@b.example\r\n",
	};
	struct feedback_item it;
	size_t n;

	(void)state;
	for (size_t i = 0; i < TERN_ARRAY_LEN(msgs); i++)
		if (feedback_parse(msgs[i], strlen(msgs[i]), &it, 1, &n) != -1)
			fail_msg("message %zu was taken for a report", i);
}

/* ---- classification ---- */

static void
test_classify(void **state)
{
	static const struct {
		unsigned code;
		const char *status, *text, *class;
	} cases[] = {
		{ 550, "5.1.1", "User unknown", "bad-mailbox" },
		{ 550, "5.1.10", "null MX", "bad-domain" },
		{ 552, "5.2.2", "Mailbox full", "mailbox-full" },
		{ 452, "4.2.2", "over quota", "mailbox-full" },
		{ 550, "5.7.1", "Message rejected as spam", "policy" },
		{ 421, "4.7.28", "Our system has detected an unusual rate", "rate-limited" },
		{ 450, "4.7.0", "Too many connections, slow down", "rate-limited" },
		{ 0, "4.4.3", "Name service error", "dns" },
		{ 0, "4.7.5", "TLS handshake failed", "tls" },
		{ 554, "5.6.0", "Message content rejected", "content" },
		{ 550, "", "No such user here", "bad-mailbox" },
		{ 550, "5.0.0", "Requested action not taken", "other" },
		{ 0, "5.4.4", "Host not found", "dns" },
		{ 0, "4.4.1", "Connection timed out", "dns" },
	};
	struct config_errors errs;
	struct bounce_classifier *c = bounce_classifier_load(NULL, &errs);

	(void)state;
	assert_non_null(c);
	for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
		const char *got = bounce_classify(c, cases[i].code, cases[i].status,
		    cases[i].text);

		if (strcmp(got, cases[i].class) != 0)
			fail_msg("case %zu (%s %s): %s, want %s", i, cases[i].status,
			    cases[i].text, got, cases[i].class);
	}
	bounce_classifier_free(c);
}

static void
test_classify_operator_rules(void **state)
{
	struct config_errors errs;
	struct bounce_classifier *c;

	(void)state;
	c = bounce_classifier_parse("# ours first\n"
	    "5.7.1  bad-mailbox  recipient rejected by local policy\n"
	    "5.0.0  rate-limited\n", "rules", &errs);
	assert_non_null(c);
	assert_string_equal(bounce_classify(c, 550, "5.7.1",
	    "Recipient rejected by local policy"), "bad-mailbox");
	assert_string_equal(bounce_classify(c, 550, "5.7.1", "spam"), "policy");
	assert_string_equal(bounce_classify(c, 550, "", "whatever"), "rate-limited");
	bounce_classifier_free(c);

	assert_null(bounce_classifier_parse("5.1 bad-mailbox\n", "rules", &errs));
	assert_int_equal(errs.n, 1);
	assert_int_equal(errs.v[0].line, 1);
	config_errors_free(&errs);
	assert_null(bounce_classifier_parse("\n5.1.1 no-such-class\n*.*.* other (\n",
	    "rules", &errs));
	assert_int_equal(errs.n, 2);
	assert_int_equal(errs.v[0].line, 2);
	assert_int_equal(errs.v[1].line, 3);
	config_errors_free(&errs);

	assert_true(is_status_match("5.1.*", "5.1.10"));
	assert_true(is_status_match("*.2.2", "4.2.2"));
	assert_false(is_status_match("5.1.*", "5.2.1"));
	assert_false(is_status_match("5.1.1", "5.1"));
	assert_false(is_status_pattern("5.1.x"));
	assert_true(is_bounce_class("tls"));
	assert_false(is_bounce_class("spam"));
}

static void
test_shipped_classes_file(void **state)
{
	struct config_errors errs;
	struct bounce_classifier *c;
	char *path = xasprintf("%s/bounce-classes", CONF_DIR);

	(void)state;
	c = bounce_classifier_load(path, &errs);
	if (c == NULL)
		fail_msg("%s: %s", path, errs.n ? errs.v[0].message : "?");
	assert_string_equal(bounce_classify(c, 550, "5.1.1", "x"), "bad-mailbox");
	bounce_classifier_free(c);
	free(path);
	assert_null(bounce_classifier_load("/nonexistent/bounce-classes", &errs));
	assert_int_equal(errs.n, 1);
	config_errors_free(&errs);
}

static void
test_bounce_config_section(void **state)
{
	char path[] = "/tmp/tern-bounce-conf-XXXXXX";
	struct config_errors errs;
	struct tern_config *cfg;
	int fd;
	FILE *fp;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd != -1);
	fp = fdopen(fd, "w");
	fprintf(fp, "[bounce]\nhard_statuses = 5.1.* 5.2.1 5.7.13\n"
	    "soft_bounce_limit = 3\nsoft_bounce_window = 2d\n");
	fclose(fp);
	cfg = config_load(path, &errs);
	assert_non_null(cfg);
	assert_int_equal(cfg->bounce.n_hard_statuses, 3);
	assert_string_equal(cfg->bounce.hard_statuses[2], "5.7.13");
	assert_int_equal(cfg->bounce.n_soft_statuses, 2);
	assert_int_equal(cfg->bounce.soft_bounce_limit, 3);
	assert_int_equal(cfg->bounce.soft_bounce_window, 2 * 86400);
	assert_int_equal(cfg->bounce.soft_expiry, 30 * 86400);
	assert_int_equal(cfg->bounce.hard_expiry, 0);
	assert_null(cfg->bounce.classes_file);
	config_free(cfg);
	fp = fopen(path, "w");
	fprintf(fp, "[bounce]\nsoft_statuses = 4.x.1\nsoft_bounce_limit = 0\n");
	fclose(fp);
	assert_null(config_load(path, &errs));
	assert_int_equal(errs.n, 2);
	config_errors_free(&errs);
	unlink(path);
}

/* ---- suppression policy ---- */

/* The default [bounce] policy, with a window of 7 days and a limit of 3. */
static struct bounce_policy
default_policy(void)
{
	static const char *const hard[] = { "5.1.*", "5.2.1" };
	static const char *const soft[] = { "4.*.*", "5.2.2" };
	struct bounce_policy p = {
		.hard_statuses = hard, .n_hard = 2,
		.soft_statuses = soft, .n_soft = 2,
		.soft_limit = 3, .soft_window_ms = 7 * 86400000LL,
		.hard_expiry_ms = 0, .soft_expiry_ms = 30 * 86400000LL,
		.complaint_expiry_ms = 0,
	};

	return p;
}

static void
test_policy(void **state)
{
	struct bounce_policy p = default_policy();
	int64_t now = 1000LL * 86400000LL;
	struct suppression_verdict v;
	struct queue_soft_failure f;

	(void)state;
	bounce_policy_decide(&p, false, 0, "5.1.1", "bad-mailbox", now, &v);
	assert_true(v.suppress);
	assert_false(v.count_soft);
	assert_int_equal(v.source, QUEUE_SUPP_BOUNCE);
	assert_int_equal(v.expires_ms, 0);
	assert_int_equal(v.severity, BOUNCE_HARD);

	bounce_policy_decide(&p, true, 0, "", "", now, &v);
	assert_true(v.suppress);
	assert_int_equal(v.source, QUEUE_SUPP_COMPLAINT);

	bounce_policy_decide(&p, false, 0, "5.7.1", "policy", now, &v);
	assert_false(v.suppress);
	assert_false(v.count_soft);
	assert_int_equal(v.severity, BOUNCE_IGNORED);

	/* Soft: counted, never suppressed here (the queue counts). */
	bounce_policy_decide(&p, false, 0, "5.2.2", "mailbox-full", now, &v);
	assert_int_equal(v.severity, BOUNCE_SOFT);
	assert_false(v.suppress);
	assert_true(v.count_soft);
	assert_true(v.expires_ms == now + 30 * 86400000LL);
	bounce_policy_soft_failure(&p, "a@example.test", 14, "full", &v, &f);
	assert_string_equal(f.address, "a@example.test");
	assert_int_equal(f.qid, 14);
	assert_int_equal(f.limit, 3);
	assert_true(f.window_ms == 7 * 86400000LL);
	assert_true(f.expires_ms == now + 30 * 86400000LL);
	/* A 4xx that is the destination's doing says nothing of the
	 * mailbox: rate limits, DNS, TLS, blocks are not counted. */
	bounce_policy_decide(&p, false, 0, "4.7.0", "rate-limited", now, &v);
	assert_false(v.count_soft);
	assert_int_equal(v.severity, BOUNCE_IGNORED);
	bounce_policy_decide(&p, false, 0, "4.4.3", "dns", now, &v);
	assert_false(v.count_soft);
	bounce_policy_decide(&p, false, 0, "4.2.2", "mailbox-full", now, &v);
	assert_true(v.count_soft);
	/* Hard wins over a soft pattern that also matches. */
	assert_int_equal(bounce_severity_of(&p, "5.2.1"), BOUNCE_HARD);
	assert_int_equal(bounce_severity_of(&p, ""), BOUNCE_IGNORED);
	assert_true(bounce_class_is_about_mailbox("other"));
	assert_false(bounce_class_is_about_mailbox("tls"));
}

/* A reply without an enhanced status code is judged as its class's
 * status only (4.0.0, 5.0.0), in tern-qmgr and tern-bounce alike. */
static void
test_policy_reply_without_status(void **state)
{
	struct bounce_policy p = default_policy();
	int64_t now = 1000LL * 86400000LL;
	struct suppression_verdict v;

	(void)state;
	p.hard_expiry_ms = 90 * 86400000LL;
	bounce_policy_decide(&p, false, 550, "", "bad-mailbox", now, &v);
	assert_true(v.suppress);
	assert_false(v.count_soft);
	assert_int_equal(v.severity, BOUNCE_HARD);
	assert_int_equal(v.source, QUEUE_SUPP_BOUNCE);
	assert_true(v.expires_ms == now + 90 * 86400000LL);
	/* A policy refusal is not the address's fault, with or without a
	 * status: the same verdict as "5.0.0". */
	bounce_policy_decide(&p, false, 554, "", "policy", now, &v);
	assert_false(v.suppress);
	assert_false(v.count_soft);
	assert_int_equal(v.severity, BOUNCE_IGNORED);
	p.hard_expiry_ms = 0;
	bounce_policy_decide(&p, false, 550, NULL, "bad-domain", now, &v);
	assert_true(v.suppress);
	assert_int_equal(v.expires_ms, 0);
	/* Without words that name the mailbox, nothing makes it hard. */
	bounce_policy_decide(&p, false, 550, NULL, NULL, now, &v);
	assert_false(v.suppress);
	assert_int_equal(v.severity, BOUNCE_IGNORED);
	/* A status of the reply's class only ("5.0.0", as tern-smtp and the
	 * report parser give one) is hard when the words name a bad mailbox
	 * or domain, else neither hard nor soft by default. */
	bounce_policy_decide(&p, false, 550, "5.0.0", "bad-mailbox", now, &v);
	assert_true(v.suppress);
	assert_int_equal(v.severity, BOUNCE_HARD);
	assert_int_equal(v.expires_ms, 0);
	bounce_policy_decide(&p, false, 0, "5.0.0", "bad-domain", now, &v);
	assert_true(v.suppress);
	bounce_policy_decide(&p, false, 550, "5.0.0", "other", now, &v);
	assert_false(v.suppress);
	assert_false(v.count_soft);
	assert_int_equal(v.severity, BOUNCE_IGNORED);
	bounce_policy_decide(&p, false, 554, "5.0.0", "policy", now, &v);
	assert_false(v.suppress);
	/* A specific status keeps its own verdict, whatever the words. */
	bounce_policy_decide(&p, false, 550, "5.7.1", "bad-mailbox", now, &v);
	assert_false(v.suppress);
	assert_int_equal(v.severity, BOUNCE_IGNORED);
	/* Temporary: counted as soft, not hard. */
	bounce_policy_decide(&p, false, 450, "4.0.0", "bad-mailbox", now, &v);
	assert_false(v.suppress);
	assert_true(v.count_soft);
	/* 4xx without a status: soft as 4.0.0, unless its class is not the
	 * mailbox's doing. */
	bounce_policy_decide(&p, false, 451, "", "mailbox-full", now, &v);
	assert_false(v.suppress);
	assert_true(v.count_soft);
	assert_int_equal(v.severity, BOUNCE_SOFT);
	assert_true(v.expires_ms == now + 30 * 86400000LL);
	bounce_policy_decide(&p, false, 451, "", "dns", now, &v);
	assert_false(v.count_soft);
	/* No reply at all says nothing. */
	bounce_policy_decide(&p, false, 0, "", "", now, &v);
	assert_false(v.suppress);
	assert_false(v.count_soft);
	assert_int_equal(v.severity, BOUNCE_IGNORED);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dsn_failed),
		cmocka_unit_test(test_dsn_delayed),
		cmocka_unit_test(test_dsn_delivered_full),
		cmocka_unit_test(test_dsn_long_and_hostile_fields),
		cmocka_unit_test(test_dsn_date),
		cmocka_unit_test(test_dsn_from_queue),
		cmocka_unit_test(test_verp_round_trip_and_tamper),
		cmocka_unit_test(test_verp_key_file),
		cmocka_unit_test(test_feedback_arf),
		cmocka_unit_test(test_feedback_base64_dsn),
		cmocka_unit_test(test_feedback_text_bounces),
		cmocka_unit_test(test_feedback_unrecognized),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_classify_operator_rules),
		cmocka_unit_test(test_shipped_classes_file),
		cmocka_unit_test(test_bounce_config_section),
		cmocka_unit_test(test_policy),
		cmocka_unit_test(test_policy_reply_without_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
