"""pflogsumm, the Postfix log summarizer, over the log of the real daemons:
tern's log lines are in Postfix's shape, so `pflogsumm --syslog-name=tern`
must count what was sent. Every daemon is real (smtpd, cleanup, qmgr,
smtp, bounce); DNS is dnsmasq, the remote side aiosmtpd sinks that accept,
refuse with 5xx or defer with 4xx per recipient. Only pflogsumm's "Grand
Totals" are compared: its --smtpd-stats pairs connect and disconnect lines
by process id, and one tern-smtpd serves many sessions at once."""
import re
import shutil
import smtplib
import subprocess

from ternlib import rfc3464, verp_pipeline, wait_for

DEST_HOST = "127.0.0.3"		# mx.dest.test: the recipients' side
HOME_HOST = "127.0.0.4"		# mx.example.test: the sender's, DSNs go there


def refuse(address):
    """The recipients' MX: hard-* get 550, soft-* 451, the rest 250."""
    local = address.split("@")[0]
    if local.startswith("hard-"):
        return "550 5.1.1 <%s>: Recipient address rejected" % address
    if local.startswith("soft-"):
        return "451 4.3.0 <%s>: try again later" % address
    return None


def submit(port, rcpts, sender="app@example.test", subject="hello",
           extra_header="", want=250):
    """One SMTP session, one message: its queue ID (want=250), or the
    reply to the end of its data."""
    body = "".join(f"line {i} of a message from the app\r\n"
                   for i in range(20))
    msg = (f"From: App <{sender}>\r\n{extra_header}"
           f"To: undisclosed-recipients:;\r\n"
           f"Subject: {subject}\r\n\r\n{body}")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("app.example.test")
        code, text = s.mail(sender)
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (r, code, text)
        try:
            code, text = s.data(msg.encode())
        except smtplib.SMTPDataError as e:
            code, text = e.smtp_code, e.smtp_error
        assert code == want, (code, text)
        if want != 250:
            return text.decode()
        return re.search(r"queued as (\S+)", text.decode()).group(1)


def relay_attempt(port):
    """A stranger tries to relay through the inbound listener."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("mx.stranger.test")
        code, _ = s.mail("someone@stranger.test")
        assert code == 250
        code, text = s.rcpt("user@dest.test")
        assert code == 550 and text.startswith(b"5.7.1"), (code, text)


def send_null_sender(port, verp, data):
    """A remote MX's DSN (MAIL FROM:<>) to one of our return paths."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("mx.dest.test")
        code, _ = s.mail("")
        assert code == 250
        code, text = s.rcpt(verp)
        assert code == 250, (code, text)
        code, text = s.data(data.encode())
        assert code == 250, (code, text)
        return re.search(r"queued as (\S+)", text.decode()).group(1)


def pflogsumm(log_path):
    """Debian's pflogsumm (tools/deps test), in /usr/sbin."""
    exe = shutil.which("pflogsumm") or "/usr/sbin/pflogsumm"
    r = subprocess.run([exe, "--syslog-name=tern", "--detail", "10", log_path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


GRAND = {
    "received": r"received", "delivered": r"delivered",
    "deferred": r"deferred(?:  \(\d+ +deferrals\))?",
    "bounced": r"bounced",
    "rejected": r"rejected \(\d+%\)", "bytes received": r"bytes received",
    "bytes delivered": r"bytes delivered", "senders": r"senders",
    "sending domains": r"sending hosts/domains",
    "recipients": r"recipients", "recipient domains":
    r"recipient hosts/domains",
}


def grand_totals(report):
    """The "Grand Totals" counts by name."""
    got = {}
    for name, label in GRAND.items():
        m = re.search(r"(?m)^ +(\d+)([ km])  " + label + r"$", report)
        assert m, f"no {name!r} in:\n{report}"
        assert m.group(2) == " ", f"{name} not in plain units: {m.group(0)}"
        got[name] = int(m.group(1))
    m = re.search(r"(?m)^ +\d+   deferred  \((\d+) +deferrals\)$", report)
    got["deferrals"] = int(m.group(1)) if m else 0
    return got


def sizes_by_qid(log):
    """The message sizes tern logged (from=<...>, size=N: cleanup's at the
    commit, qmgr's when it takes the message; the first counts)."""
    sizes = {}
    for m in re.finditer(r"tern/(?:cleanup|qmgr)\[\d+\]: ([0-9A-F]+): "
                         r"from=<[^>]*>, size=(\d+), ", log):
        sizes.setdefault(m.group(1), int(m.group(2)))
    return sizes


def test_pflogsumm_counts_what_tern_did(tern, sinks, test_dir):
    t, sub, inb, dest, home, dns = verp_pipeline(
        tern, sinks, test_dir, rcpt_reply=refuse, inbound=True,
        retry_schedule="1h", dest_host=DEST_HOST, sender_host=HOME_HOST)
    try:
        # What is sent: per message its recipients.
        plan = [
            ["ok-1@dest.test"],
            ["ok-2@dest.test", "ok-3@dest.test", "ok-4@dest.test"],
            ["ok-5@dest.test", "hard-1@dest.test"],
            ["soft-1@dest.test"],
            ["hard-2@dest.test", "soft-2@dest.test", "ok-1@dest.test"],
        ]
        rcpts = [r for p in plan for r in p]
        ok = [r for r in rcpts if r.startswith("ok-")]
        hard = [r for r in rcpts if r.startswith("hard-")]
        soft = [r for r in rcpts if r.startswith("soft-")]
        qids = [submit(sub, p, subject=f"message {i}")
                for i, p in enumerate(plan)]
        relay_attempt(inb)
        # Refused at the end of its data by tern-cleanup (two From
        # fields): received, then rejected, as Postfix's header_checks.
        refused = submit(sub, ["ok-9@dest.test"], subject="refused",
                         extra_header="From: Other <app@example.test>\r\n",
                         want=550)
        assert "5.6.0" in refused, refused
        # Every recipient has had its one attempt (the retry is an hour
        # away); each hard bounce made a DSN from <> to the sender.
        got = dest.wait_messages(len(plan) - 1, timeout=30)
        wait_for(lambda: sum(len(m["to"]) for m in dest.messages)
                 == len(ok), 30, what="every ok- recipient delivered")
        dsns = home.wait_messages(len(hard), timeout=30)
        t.wait_log(r"status=deferred", count=len(soft), timeout=30)
        # A remote MX reports a late failure to a return path of ours:
        # mail from <> that tern-bounce consumes.
        verp = next(m["from"] for m in got if m["to"] == ["ok-5@dest.test"])
        fid = send_null_sender(inb, verp, rfc3464(verp, "ok-5@dest.test"))
        t.wait_log(rf"{fid}: feedback: 1 report\(s\)", timeout=20)
        wait_for(lambda: fid not in t.ternctl("queue").stdout, 15,
                 what="the report leaving the queue")
        assert len(home.messages) == len(hard)
        assert all(m["from"] in ("", "<>") for m in dsns), dsns
        log = t.log_text()
    finally:
        t.stop()
        dns.stop()

    report = pflogsumm(t.log_path)
    got = grand_totals(report)
    sizes = sizes_by_qid(log)
    received = qids + [fid]
    assert set(received) <= set(sizes), (received, sizes)
    # Postfix's cleanup line for a message without a Message-ID field.
    assert re.search(rf"(?m) {fid}: message-id=<>$", log), log
    # The DSNs tern made: their queue IDs from the delivery lines.
    dsn_qids = {m.group(1) for m in re.finditer(
        r"([0-9A-F]+): to=<app@example\.test>, .*status=sent", log)}
    assert len(dsn_qids) == len(hard), dsn_qids
    # The sizes are those of the messages as delivered.
    by_subject = {re.search(rb"(?m)^Subject: (.*?)\r?$", m["data"]).group(1):
                  len(m["data"]) for m in dest.messages}
    assert by_subject == {f"message {i}".encode(): sizes[q]
                          for i, q in enumerate(qids)
                          if any(r in ok for r in plan[i])}, by_subject
    assert sorted(len(m["data"]) for m in home.messages) == \
        sorted(sizes[q] for q in dsn_qids)
    want = {
        # every message taken in over SMTP, the refused one too; DSNs tern
        # made itself are not "received", as with Postfix's bounce(8)
        "received": len(received) + 1,
        # per recipient: the sink's, and the DSNs at the sender's MX
        "delivered": sum(len(m["to"]) for m in dest.messages) +
        len(home.messages),
        "deferred": sum(1 for p in plan if any(r in soft for r in p)),
        "deferrals": len(soft),
        "bounced": len(hard),
        "rejected": 2,			# the relay attempt, the two From
        "bytes received": sum(sizes[q] for q in received),
        # per recipient delivered, the size of its message
        "bytes delivered": sum(sizes[q] * sum(r in ok for r in p)
                               for q, p in zip(qids, plan)) +
        sum(sizes[q] for q in dsn_qids),
        "senders": 2,			# app@example.test and <>
        "sending domains": 2,		# example.test, the MX's client name
        "recipients": len(set(ok)) + 1,	# and app@example.test
        "recipient domains": 2,		# dest.test, example.test
    }
    assert len(home.messages) + len(ok) == want["delivered"]
    assert got == want, report
