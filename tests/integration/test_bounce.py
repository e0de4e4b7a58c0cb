"""tern-bounce end to end, every daemon real: a message submitted over
SMTP fails (or is delayed, or delivered with NOTIFY=SUCCESS) at an
aiosmtpd sink; tern-qmgr hands the message to tern-bounce, which composes
the RFC 3464 DSN and has it queued by tern-cleanup from the null sender;
tern delivers it to the sender's domain, whose MX (dnsmasq) is a second
sink. No test doubles."""
import email
import os
import json
import re
import smtplib
import struct
import time

import lmdb
import pytest

from ternlib import Dns, free_port_on, rfc3464, verp_pipeline, wait_for

DEST_HOST = "127.0.0.3"		# MX of dest.test, the recipients
SENDER_HOST = "127.0.0.4"	# MX of example.test, the sender's domain


def pipeline(tern, sinks, test_dir, rcpt_reply=None, delivery=None,
             bounce=None, queue=None):
    """Without return paths: DSNs go from <> straight to the sender."""
    t, sub, _, dest, home, dns = verp_pipeline(
        tern, sinks, test_dir, rcpt_reply=rcpt_reply, delivery=delivery,
        bounce=bounce, queue=queue, return_path=None,
        dest_host=DEST_HOST, sender_host=SENDER_HOST)
    return t, sub, dest, home, dns


def submit(port, rcpt, notify=None, orcpt=None, envid=None, ret=None,
           sender="app@example.test"):
    msg = (f"From: App <{sender}>\r\nTo: <{rcpt}>\r\n"
           f"Subject: the original\r\nX-Original-Marker: 42\r\n\r\n"
           f"The body of the original.\r\n")
    mail_opts, rcpt_opts = [], []
    if envid:
        mail_opts.append(f"ENVID={envid}")
    if ret:
        mail_opts.append(f"RET={ret}")
    if notify:
        rcpt_opts.append(f"NOTIFY={notify}")
    if orcpt:
        rcpt_opts.append(f"ORCPT=rfc822;{orcpt}")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("app.example.test")
        s.mail(sender, mail_opts)
        code, text = s.rcpt(rcpt, rcpt_opts)
        assert code == 250, (code, text)
        code, text = s.data(msg.encode())
        assert code == 250, (code, text)
        m = re.search(r"queued as (\S+)", text.decode())
        assert m, text
        return m.group(1)


def events(t):
    r = t.ternctl("events", check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def report_parts(data):
    """The DSN's parts: (whole message, delivery-status text, returned part)."""
    msg = email.message_from_bytes(data)
    assert msg.get_content_type() == "multipart/report", data[:400]
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    status = [p for p in parts
              if p.get_content_type() == "message/delivery-status"]
    assert len(status) == 1, [p.get_content_type() for p in parts]
    raw = data.decode("utf-8", "replace")
    returned = [p for p in parts if p.get_content_type() in
                ("text/rfc822-headers", "message/rfc822")]
    assert len(returned) == 1
    return msg, raw, returned[0]


def test_failure_dsn_reaches_the_sender(tern, sinks, test_dir):
    def refuse(address):
        return "550 5.1.1 no such user here" if address.startswith("gone@") \
            else None

    t, port, dest, home, dns = pipeline(tern, sinks, test_dir, rcpt_reply=refuse)
    try:
        qid = submit(port, "gone@dest.test", orcpt="Gone@Dest.test",
                     envid="env-42", ret="HDRS")
        got = home.wait_messages(1, timeout=40)
        dsn = got[0]
        assert dsn["from"] in ("", "<>"), dsn["from"]
        assert dsn["to"] == ["app@example.test"]
        msg, raw, returned = report_parts(dsn["data"])
        assert msg["To"] and "app@example.test" in msg["To"]
        assert "MAILER-DAEMON@mail.tern.test" in msg["From"]
        assert re.search(r"(?m)^Reporting-MTA: dns; ?mail\.tern\.test", raw)
        assert re.search(r"(?m)^Original-Envelope-Id: env-42", raw), raw
        assert re.search(r"(?mi)^Final-Recipient: rfc822; ?gone@dest\.test",
                         raw), raw
        assert re.search(r"(?mi)^Original-Recipient: rfc822; ?Gone@Dest\.test",
                         raw), raw
        assert re.search(r"(?m)^Action: failed", raw)
        assert re.search(r"(?m)^Status: 5\.1\.1", raw)
        assert re.search(r"(?m)^Diagnostic-Code: smtp; ?550 5\.1\.1 no such "
                         r"user here", raw), raw
        # RET=HDRS: the original's headers come back, not its body
        assert returned.get_content_type() == "text/rfc822-headers"
        assert "X-Original-Marker: 42" in raw
        assert "The body of the original." not in raw
        t.wait_log(rf"{qid}: sender non-delivery notification: [0-9A-F]{{16}}")
        # the original is gone once the DSN was queued: nothing waits
        wait_for(lambda: qid not in t.ternctl("queue").stdout, 15,
                 what="the original leaving the queue")
        # exactly one DSN, even after a while
        time.sleep(2)
        assert len(home.messages) == 1
    finally:
        dns.stop()


@pytest.mark.parametrize("ret", ["FULL", None])
def test_ret_full_returns_the_whole_message(tern, sinks, test_dir, ret):
    """RET=FULL, and a failure without RET (as Postfix), return it all."""
    t, port, dest, home, dns = pipeline(
        tern, sinks, test_dir,
        rcpt_reply=lambda a: "550 5.1.1 unknown" if a.startswith("x@") else None)
    try:
        submit(port, "x@dest.test", ret=ret)
        dsn = home.wait_messages(1, timeout=40)[0]
        msg, raw, returned = report_parts(dsn["data"])
        assert returned.get_content_type() == "message/rfc822"
        assert "The body of the original." in raw
    finally:
        dns.stop()


def test_delay_dsn_once(tern, sinks, test_dir):
    t, port, dest, home, dns = pipeline(
        tern, sinks, test_dir,
        rcpt_reply=lambda a: "451 4.2.0 mailbox busy" if a.startswith("slow@")
        else None,
        delivery={"delay_warning": "1s"})
    try:
        qid = submit(port, "slow@dest.test")
        dsn = home.wait_messages(1, timeout=40)[0]
        msg, raw, _ = report_parts(dsn["data"])
        assert re.search(r"(?m)^Action: delayed", raw), raw
        assert re.search(r"(?m)^Status: 4\.2\.0", raw), raw
        assert re.search(r"(?m)^Will-Retry-Until: ", raw), raw
        t.wait_log(rf"{qid}: sender delay notification: ")
        # still being retried, and warned only once
        wait_for(lambda: sum(1 for e in events(t)
                             if e.get("type") == "deferred"
                             and e.get("recipient") == "slow@dest.test") >= 3,
                 30, what="more deferrals")
        assert len(home.messages) == 1
    finally:
        dns.stop()


def test_success_dsn_for_notify_success(tern, sinks, test_dir):
    t, port, dest, home, dns = pipeline(tern, sinks, test_dir)
    try:
        qid = submit(port, "ok@dest.test", notify="SUCCESS")
        dest.wait_messages(1, timeout=30)
        dsn = home.wait_messages(1, timeout=40)[0]
        msg, raw, _ = report_parts(dsn["data"])
        assert re.search(r"(?m)^Action: delivered", raw), raw
        assert re.search(r"(?m)^Status: 2\.0\.0", raw), raw
        assert re.search(r"(?mi)^Final-Recipient: rfc822; ?ok@dest\.test",
                         raw), raw
        t.wait_log(rf"{qid}: sender delivery notification: ")
    finally:
        dns.stop()


def test_no_dsn_for_notify_never_or_default_success(tern, sinks, test_dir):
    t, port, dest, home, dns = pipeline(
        tern, sinks, test_dir,
        rcpt_reply=lambda a: "550 5.1.1 unknown" if a.startswith("never@")
        else None)
    try:
        q1 = submit(port, "never@dest.test", notify="NEVER")
        q2 = submit(port, "fine@dest.test")	# default NOTIFY: no success DSN
        wait_for(lambda: any(e.get("type") == "bounced" for e in events(t)),
                 30, what="a bounced event")
        dest.wait_messages(1, timeout=30)
        for q in (q1, q2):
            wait_for(lambda q=q: q not in t.ternctl("queue").stdout, 15,
                     what="the message leaving the queue")
        time.sleep(3)
        assert home.messages == []
        assert "notification" not in t.log_text()
    finally:
        dns.stop()


def test_bounce_of_a_bounce_is_not_sent(tern, sinks, test_dir):
    """The DSN itself (null sender) fails at the sender's MX: no DSN about
    the DSN, and the queue empties."""
    port_hosts = [DEST_HOST, SENDER_HOST]
    port = free_port_on(port_hosts)
    sinks(host=DEST_HOST, port=port,
          rcpt_reply=lambda a: "550 5.1.1 unknown")
    home = sinks(host=SENDER_HOST, port=port,
                 rcpt_reply=lambda a: "550 5.1.1 no such sender")
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{DEST_HOST}",
               "mx-host=example.test,mx.example.test,10",
               f"host-record=mx.example.test,{SENDER_HOST}"], test_dir)
    try:
        t = tern({"delivery": {"dns_servers": dns.server,
                               "smtp_port": str(port), "tls": "none",
                               "retry_schedule": "1s"},
                  "domain example.test": {}})
        sub = t.listen("submission", "submission",
                       trusted_networks="127.0.0.0/8")
        t.start()
        qid = submit(sub, "gone@dest.test")
        m = t.wait_log(rf"{qid}: sender non-delivery notification: "
                       rf"([0-9A-F]{{16}})", timeout=40)
        dsn_qid = re.search(rf"{qid}: sender non-delivery notification: "
                            rf"([0-9A-F]{{16}})", t.log_text()).group(1)
        t.wait_log(rf"{dsn_qid}: to=<app@example.test>.*status=bounced",
                   timeout=30)
        wait_for(lambda: dsn_qid not in t.ternctl("queue").stdout, 15,
                 what="the DSN leaving the queue")
        time.sleep(2)
        assert home.messages == []
        assert len(re.findall(r"notification: ", t.log_text())) == 1
        del m
    finally:
        dns.stop()


# ---- VERP return paths ----

VERP_RE = re.compile(r"^b-([a-z2-7]{36})@bounces\.example\.test$")


def submit_many(port, rcpts, sender="app@example.test"):
    msg = (f"From: App <{sender}>\r\nTo: undisclosed-recipients:;\r\n"
           f"Subject: news\r\n\r\nNews for everyone.\r\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("app.example.test")
        s.mail(sender)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (code, text)
        code, text = s.data(msg.encode())
        assert code == 250, (code, text)
        return re.search(r"queued as (\S+)", text.decode()).group(1)


def test_verp_sender_per_recipient(tern, sinks, test_dir):
    t, sub, _, dest, home, dns = verp_pipeline(tern, sinks, test_dir)
    try:
        submit_many(sub, ["a@dest.test", "b@dest.test"])
        got = dest.wait_messages(2, timeout=30)
        froms = {m["to"][0]: m["from"] for m in got}
        assert sorted(froms) == ["a@dest.test", "b@dest.test"]
        tokens = set()
        for f in froms.values():
            m = VERP_RE.match(f)
            assert m, f
            tokens.add(m.group(1))
        assert len(tokens) == 2		# one per recipient
        assert all(len(m["to"]) == 1 for m in got)
        # the key was made at first start, private to tern
        key = os.path.join(t.queue_dir, "verp.key")
        st = os.stat(key)
        assert st.st_size == 32 and (st.st_mode & 0o077) == 0
    finally:
        dns.stop()


# ---- inbound feedback to a return path ----

def sent_with_verp(tern, sinks, test_dir, rcpt):
    t, sub, inb, dest, home, dns = verp_pipeline(tern, sinks, test_dir,
                                                 inbound=True)
    qid = submit_many(sub, [rcpt])
    got = dest.wait_messages(1, timeout=30)[0]
    assert VERP_RE.match(got["from"]), got["from"]
    wait_for(lambda: qid not in t.ternctl("queue").stdout, 15,
             what="the original leaving the queue")
    return t, inb, dns, qid, got["from"]


def send_inbound(port, rcpt, data, sender=""):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("mx.dest.test")
        s.mail(sender)
        code, text = s.rcpt(rcpt)
        assert code == 250, (code, text)
        code, text = s.data(data.encode())
        assert code == 250, (code, text)
        return re.search(r"queued as (\S+)", text.decode()).group(1)


def arf(verp, rcpt):
    return (f"From: fbl@isp.test\r\nTo: {verp}\r\nSubject: complaint\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=feedback-report;"
            f" boundary=\"FF\"\r\n\r\n"
            f"--FF\r\nContent-Type: text/plain\r\n\r\nA user complained.\r\n"
            f"--FF\r\nContent-Type: message/feedback-report\r\n\r\n"
            f"Feedback-Type: abuse\r\nUser-Agent: isp-fbl/1.0\r\n"
            f"Version: 1\r\nOriginal-Rcpt-To: <{rcpt}>\r\n"
            f"\r\n--FF\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            f"From: app@example.test\r\nSubject: news\r\n\r\n--FF--\r\n")


def test_inbound_dsn_becomes_an_async_bounce(tern, sinks, test_dir):
    t, inb, dns, qid, verp = sent_with_verp(tern, sinks, test_dir,
                                            "late@dest.test")
    try:
        fid = send_inbound(inb, verp, rfc3464(verp, "late@dest.test"))
        wait_for(lambda: any(e.get("type") == "bounced" and
                             e.get("queue_id") == qid for e in events(t)), 20,
                 what="an async bounced event")
        ev = [e for e in events(t) if e.get("type") == "bounced"][0]
        assert ev["recipient"] == "late@dest.test"
        assert ev["status"] == "5.1.1"
        assert "async" in ev["text"] and "gone after all" in ev["text"]
        assert ev.get("bounce_class") == "bad-mailbox", ev
        # a hard bounce: suppressed per [bounce] hard_statuses
        wait_for(lambda: "late@dest.test" in
                 t.ternctl("suppression", "list").stdout, 15,
                 what="the address on the suppression list")
        # the report itself was consumed, not delivered anywhere
        wait_for(lambda: fid not in t.ternctl("queue").stdout, 15,
                 what="the report leaving the queue")
        t.wait_log(rf"{fid}: feedback: 1 report\(s\) about {qid}")
    finally:
        dns.stop()


def test_inbound_arf_becomes_a_complaint(tern, sinks, test_dir):
    t, inb, dns, qid, verp = sent_with_verp(tern, sinks, test_dir,
                                            "grumpy@dest.test")
    try:
        send_inbound(inb, verp, arf(verp, "grumpy@dest.test"),
                     sender="fbl@isp.test")
        wait_for(lambda: any(e.get("type") == "complaint" and
                             e.get("queue_id") == qid for e in events(t)), 20,
                 what="a complaint event")
        ev = [e for e in events(t) if e.get("type") == "complaint"][0]
        assert ev["recipient"] == "grumpy@dest.test"
        wait_for(lambda: "grumpy@dest.test" in
                 t.ternctl("suppression", "list").stdout, 15,
                 what="the complainer on the suppression list")
        assert "complaint" in t.ternctl("suppression", "list").stdout
    finally:
        dns.stop()


def test_unrecognized_inbound_mail_is_kept(tern, sinks, test_dir):
    t, inb, dns, qid, verp = sent_with_verp(tern, sinks, test_dir,
                                            "x@dest.test")
    try:
        fid = send_inbound(inb, verp, "From: someone@else.test\r\n"
                           "Subject: hello\r\n\r\nJust a note, no report.\r\n",
                           sender="someone@else.test")
        t.wait_log(rf"{fid}: unrecognized feedback kept for the operator",
                   timeout=20)
        show = t.ternctl("queue", "show", fid, check=True).stdout
        assert "held" in show.lower(), show
        # a forged token is no return path of ours: kept too
        forged = verp[:3] + ("a" if verp[3] != "a" else "b") + verp[4:]
        fid2 = send_inbound(inb, forged, rfc3464(forged, "x@dest.test"))
        t.wait_log(rf"{fid2}: unrecognized feedback kept for the operator "
                   r"\(held\): a report to no return path", timeout=20)
        assert not any(e.get("type") == "bounced" for e in events(t))
        # "postmaster" alone must be taken (RFC 5321 4.5.1): this host's
        fid3 = send_inbound(inb, "postmaster", "From: someone@else.test\r\n"
                            "Subject: hi\r\n\r\nHello, postmaster.\r\n",
                            sender="someone@else.test")
        t.wait_log(rf"{fid3}: unrecognized feedback kept for the operator",
                   timeout=20)
        show = t.ternctl("queue", "show", fid3, check=True).stdout
        assert "postmaster@mail.tern.test" in show, show
    finally:
        dns.stop()


def test_pending_dsn_survives_a_restart(tern, sinks, test_dir):
    """No tern-bounce at first (an idle stand-in): the failure's DSN stays
    pending in the queue; after a restart with the real one it is sent."""
    import ternlib
    port = free_port_on([DEST_HOST, SENDER_HOST])
    sinks(host=DEST_HOST, port=port, rcpt_reply=lambda a: "550 5.1.1 unknown")
    home = sinks(host=SENDER_HOST, port=port)
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{DEST_HOST}",
               "mx-host=example.test,mx.example.test,10",
               f"host-record=mx.example.test,{SENDER_HOST}"], test_dir)
    try:
        t = tern({"delivery": {"dns_servers": dns.server,
                               "smtp_port": str(port), "tls": "none",
                               "retry_schedule": "1s"},
                  "domain example.test": {}})
        sub = t.listen("submission", "submission",
                       trusted_networks="127.0.0.0/8")
        ternlib.idle_daemons(t, ["bounce"])
        t.start()
        qid = submit(sub, "gone@dest.test")
        wait_for(lambda: "DSN pending" in t.ternctl("queue", "show",
                                                    qid).stdout, 30,
                 what="the DSN pending")
        time.sleep(1)
        assert home.messages == []
        assert t.stop() == 0
        t._link_daemons()		# the real tern-bounce this time
        t.start()
        dsn = home.wait_messages(1, timeout=40)[0]
        _, raw, _ = report_parts(dsn["data"])
        assert re.search(r"(?mi)^Final-Recipient: rfc822; ?gone@dest\.test",
                         raw)
        wait_for(lambda: qid not in t.ternctl("queue").stdout, 15,
                 what="the original leaving the queue")
        time.sleep(1)
        assert len(home.messages) == 1
    finally:
        dns.stop()


# ---- soft bounces count towards [bounce] soft_bounce_limit ----

def deferred_for(t, qid, rcpt):
    return any(e.get("type") == "deferred" and e.get("queue_id") == qid and
               e.get("recipient") == rcpt for e in events(t))


def suppression_of(t, address):
    out = t.ternctl("suppression", "list").stdout
    return [line for line in out.splitlines() if address in line]


def test_soft_bounces_suppress_at_the_limit(tern, sinks, test_dir):
    """452 4.2.2 (mailbox full) at RCPT: retries of one message count
    once; the third different message within the window suppresses the
    address. A throttling 4xx (rate-limited) never counts."""
    def reply(address):
        if address.startswith("full@"):
            return "452 4.2.2 mailbox full"
        if address.startswith("busy@"):
            return "451 4.7.0 too many messages, slow down"
        return None

    t, port, dest, home, dns = pipeline(
        tern, sinks, test_dir, rcpt_reply=reply,
        bounce={"soft_bounce_limit": "3", "soft_bounce_window": "1d"})
    try:
        first = submit(port, "full@dest.test")
        busy = [submit(port, "busy@dest.test") for _ in range(3)]
        # retried several times (1 s schedule), still one message
        wait_for(lambda: sum(1 for e in events(t) if e.get("type") ==
                             "deferred" and e.get("queue_id") == first) >= 3,
                 30, what="three deferrals of the first message")
        assert not suppression_of(t, "full@dest.test")
        second = submit(port, "full@dest.test")
        wait_for(lambda: deferred_for(t, second, "full@dest.test"), 20,
                 what="the second message deferred")
        time.sleep(1.5)
        assert not suppression_of(t, "full@dest.test")
        third = submit(port, "full@dest.test")
        wait_for(lambda: suppression_of(t, "full@dest.test"), 20,
                 what="the address suppressed after the third message")
        line = suppression_of(t, "full@dest.test")[0]
        assert "4.2.2" in line and "bounce" in line, line
        t.wait_log(r"suppressed <full@dest\.test>: 3 different messages "
                   r"soft-bounced")
        ev = [e for e in events(t) if e.get("queue_id") == third and
              e.get("type") == "deferred"]
        assert ev and ev[0].get("bounce_class") == "mailbox-full", ev
        # refused at RCPT from now on
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("app.example.test")
            s.mail("app@example.test")
            code, text = s.rcpt("full@dest.test")
            assert code == 550, (code, text)
        # the throttled address was deferred as often, never suppressed
        for qid in busy:
            assert deferred_for(t, qid, "busy@dest.test"), qid
        assert not suppression_of(t, "busy@dest.test")
        # removed by the operator (with the messages still retrying):
        # the count starts again. A message whose retry came first was
        # bounced as suppressed and is gone already.
        for qid in (first, second, third):
            r = t.ternctl("queue", "delete", qid)
            assert r.returncode == 0 or (
                "not found" in r.stderr and
                re.search(rf"{qid}: to=<full@dest\.test>, .*status=bounced "
                          r"\(recipient address suppressed", t.log_text())), \
                r.stderr
        t.ternctl("suppression", "remove", "full@dest.test", check=True)
        fourth = submit(port, "full@dest.test")
        wait_for(lambda: deferred_for(t, fourth, "full@dest.test"), 20,
                 what="the fourth message deferred")
        time.sleep(1.5)
        assert not suppression_of(t, "full@dest.test")
        # logged once, after the commit that suppressed
        assert len(re.findall(r"suppressed <full@dest\.test>: ",
                              t.log_text())) == 1, t.log_text()
    finally:
        dns.stop()


def test_user_unknown_without_enhanced_status_suppresses(tern, sinks,
                                                         test_dir):
    """A server without enhanced status codes: "550 No such user here" is
    a hard bounce by its words (5.0.0, class bad-mailbox); a 554 that says
    nothing about the mailbox fails the message but suppresses nothing."""
    def reply(address):
        if address.startswith("gone@"):
            return "550 No such user here"
        if address.startswith("spam@"):
            return "554 Transaction failed: message looks like spam"
        return None

    t, port, dest, home, dns = pipeline(tern, sinks, test_dir,
                                        rcpt_reply=reply)
    try:
        gone = submit(port, "gone@dest.test")
        spam = submit(port, "spam@dest.test")
        wait_for(lambda: suppression_of(t, "gone@dest.test"), 20,
                 what="the unknown user suppressed")
        line = suppression_of(t, "gone@dest.test")[0]
        assert "550 5.0.0" in line and "No such user" in line, line
        wait_for(lambda: any(e.get("type") == "bounced" and
                             e.get("queue_id") == spam for e in events(t)),
                 20, what="the spam-rejected message bounced")
        ev = [e for e in events(t) if e.get("queue_id") == gone and
              e.get("type") == "bounced"]
        assert ev and ev[0].get("bounce_class") == "bad-mailbox", ev
        assert not suppression_of(t, "spam@dest.test")
    finally:
        dns.stop()


MB = 1024 * 1024


def softfail_list(n, now_ms):
    """A softfail record (queue/SCHEMA.md) of n recent failures."""
    return struct.pack(">BH", 1, n) + b"".join(
        struct.pack(">qQ", now_ms - n + i, 0x1000 + i) for i in range(n))


def test_soft_bounce_counts_not_kept_when_the_queue_is_full(tern, sinks,
                                                            test_dir):
    """The map is at [queue] map_size_max and 50 recipients soft-bounce at
    RCPT, each with a long list of earlier soft bounces: the counts (16 KB
    each, below soft_bounce_limit) have no room, the results do. The
    counts are not kept; every recipient is deferred as the reply says;
    tern-qmgr goes on."""
    rcpts = ["full%02d@dest.test" % i for i in range(50)]
    t, port, dest, home, dns = pipeline(
        tern, sinks, test_dir,
        rcpt_reply=lambda a: "452 4.2.2 mailbox full"
        if a.startswith("full") else None,
        bounce={"soft_bounce_limit": "1000"},
        queue={"map_size": "4M", "map_size_max": "4M"})
    try:
        t.wait_log(r"queue manager started")
        now_ms = int(time.time() * 1000)
        env = lmdb.open(t.queue_dir, map_size=4 * MB, max_dbs=20,
                        subdir=True, lock=True)
        try:
            db = env.open_db(b"softfail", create=False)
            with env.begin(write=True, db=db) as txn:
                for r in rcpts:
                    txn.put(r.encode(), softfail_list(998, now_ms))
            # ballast (more such lists) until less than 400 KB is left
            i = 0
            while True:
                info, psize = env.info(), env.stat()["psize"]
                if 4 * MB - (info["last_pgno"] + 1) * psize < 400 * 1024:
                    break
                with env.begin(write=True, db=db) as txn:
                    txn.put(b"ballast%04d@else.test" % i,
                            softfail_list(999, now_ms))
                i += 1
        finally:
            env.close()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.sendmail("app@example.test", rcpts,
                       b"From: app@example.test\r\nSubject: s\r\n\r\nb\r\n")
        wait_for(lambda: sum(1 for e in events(t) if e.get("type") ==
                             "deferred") >= 50, 30,
                 what="every recipient deferred")
        ev = [e for e in events(t) if e.get("type") == "deferred"]
        assert {e["recipient"] for e in ev} == set(rcpts)
        assert all(e["status"] == "4.2.2" for e in ev), ev
        log = t.log_text()
        assert len(re.findall(r"soft bounce of <full\d\d@dest\.test> not "
                              r"counted: queue map full", log)) >= 50, log
        assert not re.search(r"queue commit of \d+ change\(s\) failed", log)
        assert len(re.findall(r"queue manager started", log)) == 1, log
        env = lmdb.open(t.queue_dir, readonly=True, max_dbs=20, subdir=True,
                        lock=True)
        try:
            with env.begin() as txn:
                v = txn.get(b"full00@dest.test",
                            db=env.open_db(b"softfail", txn=txn, create=False))
        finally:
            env.close()
        assert struct.unpack(">BH", v[:3]) == (1, 998)
    finally:
        dns.stop()


def rfc3464_full(verp, rcpt):
    return rfc3464(verp, rcpt).replace("Status: 5.1.1", "Status: 5.2.2") \
        .replace("550 5.1.1 mailbox gone after all",
                 "552 5.2.2 mailbox full")


def test_async_soft_bounces_count_too(tern, sinks, test_dir):
    """Two messages delivered, then a 5.2.2 report by mail for each: the
    first is counted, the second reaches soft_bounce_limit = 2."""
    t, sub, inb, dest, home, dns = verp_pipeline(
        tern, sinks, test_dir, inbound=True,
        bounce={"soft_bounce_limit": "2"})
    try:
        rcpt = "stuffed@dest.test"
        qids = [submit_many(sub, [rcpt]) for _ in range(2)]
        got = dest.wait_messages(2, timeout=30)
        verps = [m["from"] for m in got]
        assert all(VERP_RE.match(v) for v in verps), verps
        send_inbound(inb, verps[0], rfc3464_full(verps[0], rcpt))
        wait_for(lambda: sum(1 for e in events(t) if e.get("type") ==
                             "bounced" and e.get("recipient") == rcpt) == 1,
                 20, what="the first async bounce")
        time.sleep(1)
        assert not suppression_of(t, rcpt)
        send_inbound(inb, verps[1], rfc3464_full(verps[1], rcpt))
        wait_for(lambda: suppression_of(t, rcpt), 20,
                 what="the address suppressed after the second report")
        assert "5.2.2" in suppression_of(t, rcpt)[0]
        ev = [e for e in events(t) if e.get("type") == "bounced" and
              e.get("recipient") == rcpt]
        assert {e["queue_id"] for e in ev} == set(qids), ev
    finally:
        dns.stop()
