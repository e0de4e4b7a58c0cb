"""tern-smtpd: submission, smtps and inbound listeners, ESMTP extensions,
AUTH, the hand-off to cleanup (the test double tests/tools/test_cleanup)
and the hardening the issue lists. Clients: smtplib, raw sockets, swaks,
openssl s_client."""
import base64
import os
import re
import socket
import smtplib
import ssl
import subprocess
import time

import pytest

import ternlib
from ternlib import (cleanup_commits, cleanup_message, cleanup_records,
                     start_smtpd, wait_for)

DOMAINS = {
    "domain example.test": {"return_path": "bounces.example.test"},
}


def make(tern, mode="submission", trusted=True, tls=False, users=None,
         smtpd=None, rules="", **listen_keys):
    """A tern with one listener named after its mode, started with the
    cleanup double. trusted: 127.0.0.0/8 may submit without AUTH."""
    t = tern(sections=dict(DOMAINS))
    keys = dict(listen_keys)
    if tls or mode == "smtps":
        cert, key = ternlib.tls_files(t.dir)
        keys.update(tls_cert=cert, tls_key=key)
    if trusted and mode != "inbound":
        keys["trusted_networks"] = "127.0.0.0/8"
    if users is not None:
        path = os.path.join(t.dir, "users")
        with open(path, "w") as f:
            for name, pw in users.items():
                r = subprocess.run(["openssl", "passwd", "-6", pw],
                                   capture_output=True, text=True, check=True)
                f.write(f"{name}:{r.stdout.strip()}\n")
        t.sections["auth"] = {"users_file": path}
    if smtpd:
        t.sections["smtpd"] = smtpd
    t.listen(mode, mode, **keys)
    start_smtpd(t, rules)
    return t


class Raw:
    """A raw SMTP client: send bytes, read reply lines."""

    def __init__(self, port, timeout=10, greet=True):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if greet:
            self.greeting = self.reply()

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """One whole (possibly multiline) reply as text."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return "\n".join(lines)

    def cmd(self, text):
        self.send(text.encode() + b"\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closed the connection (after any data)."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()

    def tls(self):
        """Wraps the socket in TLS (after 220 to STARTTLS, or smtps)."""
        self.s = ternlib.client_tls_context().wrap_socket(self.s)


def s_client(args, lines, timeout=20):
    """openssl s_client with lines sent one by one; its output as text."""
    p = subprocess.Popen(["openssl", "s_client", "-quiet", *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    time.sleep(1)
    for line in lines:
        p.stdin.write(line.encode() + b"\r\n")
        p.stdin.flush()
        time.sleep(0.3)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return out.decode("utf-8", "replace")


def msg(subject="hi", frm="app@example.test", to="user@dest.test", body="hello"):
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}\r\n")


# ---- the core flow ----

def test_submission_message_reaches_cleanup_and_250_names_queue_id(tern):
    t = make(tern)
    with smtplib.SMTP("127.0.0.1", t.ports["submission"], timeout=10) as c:
        c.ehlo("client.test")
        c.mail("app@example.test")
        c.rcpt("user@dest.test")
        code, text = c.data(msg(body="line one\r\n.leading dot"))
    assert code == 250, text
    qid = text.decode().split("queued as ")[1]
    commits = cleanup_commits(t)
    assert len(commits) == 1
    r = commits[0]
    assert r["qid"] == qid and r["sender"] == "app@example.test"
    assert r["rcpts"] == ["user@dest.test"] and r["trusted"] is True
    assert r["listener"] == "submission" and r["helo"] == "client.test"
    data = cleanup_message(t, qid)
    assert data.endswith(b"line one\r\n.leading dot\r\n")
    t.wait_log(rf"{qid}: client=unknown\[127.0.0.1\]")
    t.wait_log(r"disconnect from unknown\[127.0.0.1\] ehlo=1 mail=1 rcpt=1 "
               r"data=1 quit=1 commands=5")


def test_ehlo_advertises_extensions(tern):
    t = make(tern, tls=True, users={"alice": "pw"})
    c = Raw(t.ports["submission"])
    assert c.greeting.startswith("220 mail.tern.test ESMTP")
    ehlo = c.cmd("EHLO client.test")
    for ext in ("PIPELINING", "SIZE 10485760", "8BITMIME", "SMTPUTF8",
                "ENHANCEDSTATUSCODES", "STARTTLS", "DSN", "CHUNKING"):
        assert ext in ehlo, ehlo
    # AUTH only after TLS.
    assert "AUTH" not in ehlo
    assert c.cmd("VRFY someone").startswith("252 ")
    assert c.cmd("HELP").startswith("214 ")
    assert c.cmd("NOOP").startswith("250 2.0.0")
    assert c.cmd("RSET").startswith("250 2.0.0")
    assert c.cmd("QUIT").startswith("221 2.0.0")


def test_250_waits_for_the_commit(tern):
    t = make(tern, rules="end_delay 1.5\n")
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<u@dest.test>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    start = time.monotonic()
    r = c.cmd(msg() + ".")
    assert r.startswith("250 2.0.0 Ok: queued as "), r
    assert time.monotonic() - start >= 1.4


def test_cleanup_refusals_are_passed_on(tern):
    rules = ("mail full@example.test 452 4.3.1 Insufficient system storage\n"
             "rcpt *suppressed* 550 5.1.1 Recipient is suppressed\n"
             "end *refuse* 554 5.7.1 Message refused by policy\n")
    t = make(tern, rules=rules)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<full@example.test>").startswith("452 4.3.1")
    assert c.cmd("MAIL FROM:<refuse@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<x-suppressed@dest.test>").startswith("550 5.1.1")
    assert c.cmd("RCPT TO:<ok@dest.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    assert c.cmd(msg() + ".").startswith("554 5.7.1")
    assert cleanup_commits(t) == []
    t.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127.0.0.1\]: 550 5.1.1 Recipient is "
               r"suppressed; from=<refuse@example.test> to=<x-suppressed@dest.test> "
               r"proto=ESMTP helo=<c.test>")


def test_cleanup_down_gives_451_and_no_250(tern):
    t = make(tern)
    pid = wait_for(lambda: t.pids_of("cleanup"), what="cleanup")[0]
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    os.kill(pid, 9)
    t.wait_log(r"lost connection to .*cleanup")
    r = c.cmd(msg() + ".")
    assert r.startswith("451 4.3.0"), r
    c.close()


def test_sigterm_gives_421_at_next_command(tern):
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    t.proc.send_signal(15)
    time.sleep(0.5)
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("421 4.3.2")
    assert c.closed()
    assert t.proc.wait(10) == 0


# ---- listener modes, TLS and AUTH ----

def test_submission_needs_auth_after_starttls(tern):
    t = make(tern, trusted=False, tls=True, users={"alice": "s3cret"})
    port = t.ports["submission"]
    c = Raw(port)
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("530 5.7.0")
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0s3cret").decode()
                 ).startswith("538 5.7.11")
    c.close()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("c.test")
        s.starttls(context=ternlib.client_tls_context())
        s.ehlo("c.test")
        assert "PLAIN" in s.esmtp_features["auth"]
        assert "starttls" not in s.esmtp_features
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("alice", "wrong")
        assert e.value.smtp_code == 535
        s.login("alice", "s3cret")
        s.sendmail("app@example.test", ["u@dest.test"], msg())
    r = cleanup_commits(t)[0]
    assert r["auth"] == "alice" and r["tls"].startswith("TLSv1.")
    assert r["trusted"] is False
    t.wait_log(rf"{r['qid']}: client=unknown\[127.0.0.1\], sasl_username=alice")
    t.wait_log(r"disconnect from .* ehlo=2 starttls=1 auth=3 mail=1 rcpt=1 data=1")


def test_auth_login_and_failure_delay(tern):
    t = make(tern, trusted=False, tls=True, users={"bob": "pw1"},
             smtpd={"auth_failure_delay": "1s"})
    with smtplib.SMTP("127.0.0.1", t.ports["submission"], timeout=20) as s:
        s.ehlo("c.test")
        s.starttls(context=ternlib.client_tls_context())
        s.ehlo("c.test")
        delays = []
        for _ in range(2):
            s.user, s.password = "bob", "bad"
            start = time.monotonic()
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.auth("LOGIN", s.auth_login, initial_response_ok=False)
            delays.append(time.monotonic() - start)
        # The delay grows with the client's failures.
        assert delays[0] >= 0.9 and delays[1] >= 1.9, delays
        s.user, s.password = "nobody", "x"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)
        s.user, s.password = "bob", "pw1"
        code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=True)
        assert code == 235
        # A second AUTH is refused.
        assert s.docmd("AUTH PLAIN AGJvYgBwdzE=")[0] == 503
        assert s.docmd("MAIL FROM:<app@example.test>")[0] == 250


def test_submission_sender_domain_must_be_ours(tern):
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<app@other.test>").startswith("550 5.7.1")
    assert c.cmd("MAIL FROM:<app@EXAMPLE.test>").startswith("250")


def test_submission_from_header_must_be_ours(tern):
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    for frm, ok in (("App <app@other.test>", False),
                    ("app@example.test,\r\n x@other.test", False),
                    ("<app@example.test> <x@other.test>", False),
                    ("x@other.test app@example.test", False),
                    ("\"x@other.test\" <app@example.test>", True)):
        c.cmd("MAIL FROM:<app@example.test>")
        c.cmd("RCPT TO:<u@dest.test>")
        assert c.cmd("DATA").startswith("354")
        r = c.cmd(f"From: {frm}\r\nSubject: s\r\n\r\nbody\r\n.")
        assert r.startswith("250" if ok else "550 5.7.1"), (frm, r)
    assert len(cleanup_commits(t)) == 1
    assert [r["event"] for r in cleanup_records(t)] == ["abort"] * 4 + ["commit"]
    # A From: hidden behind 70 KiB of header lines is not waved through.
    c.cmd("MAIL FROM:<app@example.test>")
    c.cmd("RCPT TO:<u@dest.test>")
    assert c.cmd("DATA").startswith("354")
    for _ in range(80):
        c.send(b"X-Pad: " + b"p" * 900 + b"\r\n")
    r = c.cmd("From: evil@other.test\r\n\r\nbody\r\n.")
    assert r.startswith("550 5.7.1"), r
    assert len(cleanup_commits(t)) == 1


def test_smtps_implicit_tls_with_s_client(tern):
    t = make(tern, mode="smtps")
    port = t.ports["smtps"]
    out = s_client(["-connect", f"127.0.0.1:{port}"],
                   ["EHLO c.test", "MAIL FROM:<app@example.test>",
                    "RCPT TO:<u@dest.test>", "QUIT"])
    assert "220 mail.tern.test ESMTP" in out
    assert "250 2.1.5" in out and "221 2.0.0" in out, out
    # Plain text on the smtps port is not SMTP.
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"EHLO c.test\r\n")
    c.settimeout(5)
    try:
        assert not c.recv(100).startswith(b"250")
    except ConnectionResetError:
        pass
    t.wait_log(r"TLS failed with unknown\[127.0.0.1\]")


def test_starttls_with_s_client_and_swaks(tern):
    t = make(tern, tls=True)
    port = t.ports["submission"]
    out = s_client(["-starttls", "smtp", "-connect", f"127.0.0.1:{port}"],
                   ["EHLO c.test", "STARTTLS", "QUIT"])
    assert "554 5.5.1" in out and "221" in out, out
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--tls",
                        "--from", "app@example.test", "--to", "u@dest.test",
                        "--ehlo", "swaks.test"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "queued as" in r.stdout
    assert cleanup_commits(t)[0]["tls"].startswith("TLSv1.")


def test_starttls_injection_is_discarded(tern):
    t = make(tern, tls=True)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    assert c.cmd("STARTTLS extra").startswith("501")
    c.send(b"STARTTLS\r\nNOOP\r\n")
    assert c.reply().startswith("220 2.0.0")
    assert c.buf == b""
    c.tls()
    c.s.settimeout(2)
    # The injected NOOP got no reply, before or after the handshake.
    with pytest.raises(socket.timeout):
        c.s.recv(100)
    c.s.settimeout(10)
    # State was reset: EHLO is needed again.
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("503 5.5.1")
    assert "STARTTLS" not in c.cmd("EHLO c.test")
    assert c.cmd("STARTTLS").startswith("554 5.5.1")


# ---- inbound ----

INBOUND_REFUSED = [
    "user@dest.test", "user%dest.test@bounces.example.test",
    "dest.test!user@bounces.example.test", "\"user@dest.test\"@bounces.example.test",
    "user@example.test", "postmaster@dest.test",
]


def test_inbound_takes_only_return_path_domains_and_postmaster(tern):
    t = make(tern, mode="inbound")
    c = Raw(t.ports["inbound"])
    ehlo = c.cmd("EHLO mx.remote.test")
    assert "AUTH" not in ehlo
    assert c.cmd("AUTH PLAIN AGFAYg==").startswith("503")
    assert c.cmd("MAIL FROM:<>").startswith("250")
    for rcpt in INBOUND_REFUSED:
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        assert r.startswith("550 5.7.1"), (rcpt, r)
    assert c.cmd("RCPT TO:<user@a@bounces.example.test>").startswith("553")
    assert c.cmd("RCPT TO:<@relay.test:user@dest.test>").startswith("550 5.7.1")
    t.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127.0.0.1\]: 550 5.7.1 Relay "
               r"access denied; from=<> to=<user@dest.test> proto=ESMTP")
    for rcpt in ("Postmaster", "postmaster@mail.tern.test",
                 "b+123@bounces.example.test", "@x.test:a@BOUNCES.example.test"):
        assert c.cmd(f"RCPT TO:<{rcpt}>").startswith("250"), rcpt
    assert c.cmd("DATA").startswith("354")
    assert c.cmd(msg(subject="DSN") + ".").startswith("250 2.0.0 Ok: queued as")
    r = cleanup_commits(t)[0]
    assert r["source"] == 2 and r["sender"] == ""
    assert r["rcpts"] == ["postmaster", "postmaster@mail.tern.test",
                          "b+123@bounces.example.test", "a@bounces.example.test"]


# ---- SMTP smuggling ----

# Published end-of-data look-alikes (SEC Consult 2023 and follow-ups).
SMUGGLING = [
    b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r\n.\n", b"\n.\r",
    b"\r.\n", b"\r.\r", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\n\r.\r\n",
    b"\r\r\n.\r\r\n",
]


@pytest.mark.parametrize("seq", SMUGGLING, ids=[repr(s) for s in SMUGGLING])
def test_smuggling_never_splits_a_message(tern, seq):
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.send(b"Subject: first\r\n\r\nfirst" + seq +
           b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@dest.test>\r\n"
           b"DATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
    final = c.reply()
    assert c.cmd("QUIT").startswith("221"), "a smuggled command was answered"
    commits = cleanup_commits(t)
    assert all(r["sender"] == "app@example.test" for r in commits)
    assert len(commits) <= 1
    if b"\x00" in seq:
        assert final.startswith("250 2.0.0"), final
        body = cleanup_message(t, commits[0]["qid"])
        assert b"MAIL FROM:<evil@example.test>" in body
    else:
        assert final.startswith("550 5.5.2"), final
        assert commits == []


def test_data_split_across_reads_at_every_point(tern):
    """The stream decoder and the plain sessions' own reads: the DATA
    stream cut in two at every point (the final CRLF.CRLF, a dot-stuffed
    line, a CR or LF alone in a read), with RSET pipelined after the dot,
    gives the same content and replies every time."""
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.cmd("EHLO c.test")
    head = b"From: app@example.test\r\nSubject: cut\r\n\r\n"
    stream = head + b"..dot\r\nline of more than sixteen bytes\r\n.\r\nRSET\r\n"
    want = head + b".dot\r\nline of more than sixteen bytes\r\n"
    for k in range(1, len(stream)):
        assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
        assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
        assert c.cmd("DATA").startswith("354")
        c.send(stream[:k])
        time.sleep(0.02)	# two reads, as far as the server can tell
        c.send(stream[k:])
        final = c.reply()
        assert final.startswith("250 2.0.0 Ok: queued as"), (k, final)
        assert c.reply().startswith("250 2.0.0"), k	# the RSET
        qid = final.split()[-1]
        assert cleanup_message(t, qid).endswith(want), k
    assert c.cmd("QUIT").startswith("221")
    assert len(cleanup_commits(t)) == len(stream) - 1


def test_large_message_with_pipelined_commands_after_the_dot(tern):
    """A message larger than one read, with the next transaction's commands
    in the same write as its final dot: the rest of a read the session
    could not use yet is kept, in order."""
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    body = b"".join(b"%06d " % i + b"x" * 70 + b"\r\n" for i in range(4000))
    body += b"..stuffed\r\n"
    mail = b"From: app@example.test\r\nSubject: big\r\n\r\n" + body
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.send(mail + b".\r\nMAIL FROM:<app@example.test>\r\n"
           b"RCPT TO:<v@dest.test>\r\nDATA\r\n")
    first = c.reply()
    assert first.startswith("250 2.0.0 Ok: queued as"), first
    assert c.reply().startswith("250 2.1.0")
    assert c.reply().startswith("250 2.1.5")
    assert c.reply().startswith("354")
    c.send(b"Subject: second\r\n\r\nsecond\r\n.\r\n")
    second = c.reply()
    assert second.startswith("250 2.0.0 Ok: queued as"), second
    content = cleanup_message(t, first.split()[-1])
    assert content.endswith(mail[:-len(b"..stuffed\r\n")] + b".stuffed\r\n")
    assert cleanup_message(t, second.split()[-1]).endswith(b"second\r\n")
    assert [r["rcpts"] for r in cleanup_commits(t)] == [["u@dest.test"],
                                                         ["v@dest.test"]]


def test_commands_pipelined_past_the_read_limit_while_cleanup_commits(tern):
    """While a plain session waits for cleanup's commit it reads on, up to
    256 KiB, then stops; when the 250 comes it answers everything that
    waited, in order, and reads the rest."""
    t = make(tern, rules="end_delay 1.0\n",
             smtpd={"max_junk_commands": "1000000"})
    c = Raw(t.ports["submission"], timeout=30)
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    n = 80000	# 480 KB of NOOP, well past the 256 KiB the session buffers
    c.send(msg().encode() + b".\r\n" + b"NOOP\r\n" * n + b"QUIT\r\n")
    data = c.buf
    while not data.endswith(b"221 2.0.0 Bye\r\n"):
        chunk = c.s.recv(1 << 20)
        assert chunk, data[-200:]
        data += chunk
    replies = data.split(b"\r\n")[:-1]
    assert replies[0].startswith(b"250 2.0.0 Ok: queued as"), replies[0]
    assert replies[1:-1] == [replies[1]] * n and replies[1].startswith(b"250")
    assert len(cleanup_commits(t)) == 1


def noop_until_stalled(s):
    """Sends NOOPs without reading a reply, until 64 MB went or sending
    stalls for 3 s (the server reads no more); returns the bytes sent."""
    chunk = b"NOOP\r\n" * 10000
    sent = 0
    s.settimeout(3)
    try:
        while sent < 64 << 20:
            s.sendall(chunk)
            sent += len(chunk)
    except (socket.timeout, ssl.SSLError):
        pass
    return sent


def test_a_client_that_never_reads_its_replies_is_not_buffered(tern):
    """Commands pipelined by a client that never reads the replies: past
    64 KiB of replies held, tern-smtpd reads no more commands, so the
    client's sending stalls once the socket buffers are full (without the
    limit all 64 MB would go through and 150 MB of replies pile up in
    tern-smtpd). Other sessions go on meanwhile."""
    t = make(tern, smtpd={"max_junk_commands": "1000000"})
    port = t.ports["submission"]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.settimeout(10)
    assert s.recv(4096).startswith(b"220")
    assert noop_until_stalled(s) < 32 << 20
    pid = t.pids_of("smtpd")[0]
    with open(f"/proc/{pid}/status") as f:
        rss_kb = int(next(l for l in f if l.startswith("VmRSS")).split()[1])
    assert rss_kb < 200 * 1024, rss_kb
    other = Raw(port)
    assert other.greeting.startswith("220")
    assert other.cmd("NOOP").startswith("250")
    s.close()


def test_a_tls_client_that_never_reads_its_replies_is_not_buffered(tern):
    """The same inside TLS: the filter encrypts only while the socket
    takes it, so the unread replies stay where the limit sees them."""
    t = make(tern, tls=True, smtpd={"max_junk_commands": "1000000"})
    port = t.ports["submission"]
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", port))
    raw.settimeout(10)
    buf = b""
    for cmd in (None, b"EHLO c.test\r\n", b"STARTTLS\r\n"):
        if cmd:
            raw.sendall(cmd)
        while not re.search(rb"(^|\n)\d{3} [^\n]*\n$", buf):
            buf += raw.recv(4096)
        buf = b""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    assert noop_until_stalled(ctx.wrap_socket(raw)) < 32 << 20
    other = Raw(port)
    assert other.cmd("NOOP").startswith("250")
    raw.close()


def test_pregreeting_talk_is_cut_off(tern):
    t = make(tern, smtpd={"greeting_delay": "1s"})
    c = Raw(t.ports["submission"], greet=False)
    c.send(b"EHLO early.test\r\n")
    assert c.reply().startswith("554 5.5.0")
    assert c.closed()
    t.wait_log(r"talked before the greeting")
    c = Raw(t.ports["submission"])
    assert c.greeting.startswith("220 ")


def test_data_before_354_is_refused_but_pipelining_works(tern):
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.send(b"EHLO c.test\r\nMAIL FROM:<app@example.test>\r\n"
           b"RCPT TO:<u@dest.test>\r\nDATA\r\n")
    assert c.reply().startswith("250-")
    assert c.reply().startswith("250 2.1.0")
    assert c.reply().startswith("250 2.1.5")
    assert c.reply().startswith("354")
    c.send(msg().encode() + b".\r\n")
    assert c.reply().startswith("250 2.0.0")
    c.send(b"MAIL FROM:<app@example.test>\r\nRCPT TO:<u@dest.test>\r\n"
           b"DATA\r\n" + msg().encode() + b".\r\n")
    assert c.reply().startswith("250")
    assert c.reply().startswith("250")
    assert c.reply().startswith("554 5.5.0")
    assert c.closed()
    assert len(cleanup_commits(t)) == 1


# ---- limits ----

def test_line_limits_and_bare_lf_in_commands(tern):
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    assert c.cmd("NOOP " + "x" * 600).startswith("500 5.5.2")
    c.send(b"NOOP\n")
    assert c.reply().startswith("500 5.5.2")
    c.send(b"NO\rOP\r\n")
    assert c.reply().startswith("500 5.5.2")
    assert c.cmd("NOOP").startswith("250")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    assert c.cmd("Subject: x\r\n\r\n" + "y" * 1001 + "\r\n.").startswith("550 5.5.2")
    assert c.cmd("NOOP").startswith("250")
    assert cleanup_commits(t) == []


def test_100_recipients_then_452(tern):
    t = make(tern, smtpd={"max_recipients": "100"})
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    c.send(b"MAIL FROM:<app@example.test>\r\n" +
           b"".join(b"RCPT TO:<u%d@dest.test>\r\n" % i for i in range(101)))
    assert c.reply().startswith("250")
    replies = [c.reply() for _ in range(101)]
    assert all(r.startswith("250 2.1.5") for r in replies[:100])
    assert replies[100].startswith("452 4.5.3")
    assert c.cmd("DATA").startswith("354")
    assert c.cmd(msg() + ".").startswith("250 2.0.0")
    assert len(cleanup_commits(t)[0]["rcpts"]) == 100


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_message_size_limit_streaming(tern, monkeypatch):
    # AddressSanitizer keeps freed memory in quarantine; keep it small so
    # RSS shows what the daemon holds, not what it freed.
    env = ternlib.daemon_env
    monkeypatch.setattr(ternlib, "daemon_env", lambda: dict(
        env(), ASAN_OPTIONS=env()["ASAN_OPTIONS"] + ":quarantine_size_mb=1"))
    t = make(tern)
    t.stop()
    t.sections["server"]["message_size_limit"] = "1M"
    t.start()
    t.wait_log(r"smtpd.*connected to cleanup", count=2)
    pid = t.pids_of("smtpd")[0]
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<app@example.test> SIZE=2000000").startswith("552 5.3.4")
    # Warm up, then stream 5 MiB without SIZE.
    for _ in range(2):
        assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
        assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
        assert c.cmd("DATA").startswith("354")
        before = rss_kb(pid)
        line = b"z" * 998 + b"\r\n"
        for _ in range(5 * 1024):
            c.send(line)
        r = c.cmd(".")
        assert r.startswith("552 5.3.4"), r
        after = rss_kb(pid)
    assert after - before < 4096, (before, after)
    assert c.cmd("NOOP").startswith("250")
    assert cleanup_commits(t) == []
    aborts = [r for r in cleanup_records(t) if r["event"] == "abort"]
    assert aborts and all(r["size"] <= 1024 * 1024 + 65536 for r in aborts)


def test_timeout_and_max_errors(tern):
    t = make(tern, smtpd={"timeout": "2s", "max_errors": "3"})
    c = Raw(t.ports["submission"])
    start = time.monotonic()
    assert c.reply().startswith("421 4.4.2")
    assert 1.5 <= time.monotonic() - start < 6
    assert c.closed()
    # A client that stalls inside DATA: 421, and cleanup forgets it.
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    c.cmd("MAIL FROM:<app@example.test>")
    c.cmd("RCPT TO:<u@dest.test>")
    assert c.cmd("DATA").startswith("354")
    c.send(b"Subject: stalled\r\n")
    assert c.reply().startswith("421 4.4.2")
    assert c.closed()
    wait_for(lambda: [r for r in cleanup_records(t) if r["event"] == "abort"],
             what="abort at cleanup")
    assert cleanup_commits(t) == []
    c = Raw(t.ports["submission"])
    assert c.cmd("BOGUS").startswith("500")
    assert c.cmd("MAIL FROM:<a@example.test>").startswith("503")
    r = c.cmd("RCPT TO:<a@b.test>")
    assert r.startswith("503") and "421 4.7.0" in c.reply()
    assert c.closed()


def test_junk_commands_past_the_limit_count_as_errors(tern):
    """NOOP, RSET, VRFY and HELP are answered, but past max_junk_commands
    per message each one is an error, so a client that only keeps the
    session alive is cut off at max_errors; an accepted message starts
    the count again."""
    t = make(tern, smtpd={"max_junk_commands": "4", "max_errors": "3"})
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    for cmd in ("NOOP", "RSET", "VRFY x", "HELP"):
        assert c.cmd(cmd).startswith(("250", "252", "214")), cmd
    c.cmd("MAIL FROM:<app@example.test>")
    c.cmd("RCPT TO:<u@dest.test>")
    assert c.cmd("DATA").startswith("354")
    assert c.cmd(msg() + ".").startswith("250 2.0.0 Ok: queued as")
    for _ in range(4 + 2):
        assert c.cmd("NOOP").startswith("250")
    # The third junk command past the limit is the third error.
    assert c.cmd("NOOP").startswith("250")
    assert "421 4.7.0" in c.reply()
    assert c.closed()
    t.wait_log(r"too many errors from unknown\[127\.0\.0\.1\]")


def test_sessions_per_client_limit(tern):
    t = make(tern, smtpd={"max_sessions_per_client": "3"})
    port = t.ports["submission"]
    held = [Raw(port) for _ in range(3)]
    c = Raw(port, greet=False)
    assert c.reply().startswith("421 4.7.0")
    assert c.closed()
    held[0].cmd("QUIT")
    held[0].closed()
    time.sleep(0.3)
    assert Raw(port).greeting.startswith("220 ")


def test_max_sessions_limit(tern):
    t = make(tern, smtpd={"max_sessions": "2"})
    port = t.ports["submission"]
    held = [Raw(port) for _ in range(2)]
    c = Raw(port, greet=False)
    assert c.reply().startswith("421 4.3.2")
    assert c.closed()
    assert held[1].cmd("NOOP").startswith("250")


def test_trickling_client_is_cut_off(tern):
    """One byte per half second never lets the read timeout fire, but the
    line must still be complete within the timeout."""
    t = make(tern, smtpd={"timeout": "2s"})
    c = Raw(t.ports["submission"])
    assert c.greeting.startswith("220")
    start = time.monotonic()
    got = b""
    c.s.settimeout(0.5)
    for b in b"EHLO trickle.test and a very long tail of bytes":
        try:
            c.s.sendall(bytes([b]))
            got += c.s.recv(4096)
        except socket.timeout:
            pass
        except OSError:
            break
        if got:
            break
    assert got.startswith(b"421 4.4.2"), got
    assert time.monotonic() - start < 10
    t.wait_log(r"timeout after CONNECTED|timeout after \w+ from unknown")


def test_10000_connections_do_not_block_a_new_session(tern):
    """The issue's figure: 10,000 concurrent connections, and a new client
    is still served (well within its 10 s socket timeout)."""
    t = make(tern, smtpd={"max_sessions": "12000",
                          "max_sessions_per_client": "12000"})
    port = t.ports["submission"]
    idle = []
    try:
        for _ in range(10000):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            assert c.noop()[0] == 250
            assert c.ehlo("late.test")[0] == 250
        assert len(t.pids_of("smtpd")) == 1
    finally:
        for s in idle:
            s.close()


def test_2000_idle_connections_do_not_block_a_new_session(tern):
    t = make(tern, smtpd={"max_sessions_per_client": "5000"})
    port = t.ports["submission"]
    idle = []
    try:
        for _ in range(2000):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        start = time.monotonic()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            assert c.noop()[0] == 250
        assert time.monotonic() - start < 3
    finally:
        for s in idle:
            s.close()


# ---- extensions ----

def test_bdat_chunking(tern):
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    c.cmd("MAIL FROM:<app@example.test>")
    c.cmd("RCPT TO:<u@dest.test>")
    part1 = b"Subject: chunks\r\n\r\n"
    part2 = b"one\r\n.two\r\n"
    c.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert c.reply().startswith("250 2.0.0")
    c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    r = c.reply()
    assert r.startswith("250 2.0.0 Ok: queued as"), r
    qid = r.split()[-1]
    assert cleanup_message(t, qid) == part1 + part2
    assert c.cmd("DATA").startswith("503")
    # A bare LF in a chunk refuses the message.
    c.cmd("MAIL FROM:<app@example.test>")
    c.cmd("RCPT TO:<u@dest.test>")
    c.send(b"BDAT 6 LAST\r\nab\ncd\r\n")
    assert c.reply().startswith("550 5.5.2")


def test_dsn_parameters_are_decoded_and_validated(tern):
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<app@example.test> ENVID=a+0D+0Ab").startswith("501")
    assert c.cmd("MAIL FROM:<app@example.test> RET=MAYBE").startswith("501")
    assert c.cmd("MAIL FROM:<app@example.test> FOO=1").startswith("555")
    assert c.cmd("MAIL FROM:<app@example.test> BODY=8BITMIME RET=HDRS "
                 "ENVID=id+2B1 SIZE=100").startswith("250")
    assert c.cmd("RCPT TO:<u@dest.test> NOTIFY=NEVER,SUCCESS").startswith("501")
    assert c.cmd("RCPT TO:<u@dest.test> ORCPT=rfc822;u+0A@dest.test").startswith("501")
    assert c.cmd("RCPT TO:<u@dest.test> NOTIFY=SUCCESS,FAILURE "
                 "ORCPT=rfc822;U+40dest.test").startswith("250")
    assert c.cmd("DATA").startswith("354")
    assert c.cmd(msg() + ".").startswith("250")
    r = cleanup_commits(t)[0]
    assert r["envid"] == "id+1" and r["ret"] == 2 and r["body"] == 1
    assert r["declared_size"] == 100
    assert r["orcpts"] == ["rfc822;U@dest.test"] and r["notify"] == [3]


def test_smtputf8(tern):
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    c.cmd("MAIL FROM:<app@example.test>")
    assert c.cmd("RCPT TO:<用户@dest.test>").startswith("553 5.6.7")
    c.cmd("RSET")
    assert c.cmd("MAIL FROM:<app@example.test> SMTPUTF8").startswith("250")
    assert c.cmd("RCPT TO:<用户@bücher.test>").startswith("250")
    c.send(b"RCPT TO:<\xff@dest.test>\r\n")
    assert c.reply().startswith("553")
    assert c.cmd("DATA").startswith("354")
    assert c.cmd(msg() + ".").startswith("250")
    r = cleanup_commits(t)[0]
    assert r["smtputf8"] is True and r["rcpts"] == ["用户@bücher.test"]


# ---- ternctl user add ----

def test_ternctl_user_add_then_auth(tern):
    t = tern(sections=dict(DOMAINS))
    cert, key = ternlib.tls_files(t.dir)
    users = os.path.join(t.dir, "users")
    with open(users, "w") as f:
        f.write("# AUTH users\nold:$6$x$y\n")
    os.chmod(users, 0o640)
    t.sections["auth"] = {"users_file": users}
    t.listen("submission", "submission", tls_cert=cert, tls_key=key)
    t.write_config()
    assert t.ternctl("user", "add", "bad:name", input="pw\n").returncode == 1
    assert t.ternctl("user", "add", "carol", input="").returncode == 1
    r = t.ternctl("user", "add", "carol", input="first\n")
    assert r.returncode == 0 and "added" in r.stdout, r.stderr
    r = t.ternctl("user", "add", "carol", input="s3cond pass\n")
    assert r.returncode == 0 and "updated" in r.stdout, r.stderr
    lines = open(users).read().splitlines()
    assert lines[:2] == ["# AUTH users", "old:$6$x$y"]
    assert len(lines) == 3 and lines[2].startswith(("carol:$y$", "carol:$6$"))
    assert oct(os.stat(users).st_mode & 0o777) == "0o640"
    start_smtpd(t)
    with smtplib.SMTP("127.0.0.1", t.ports["submission"], timeout=10) as s:
        s.starttls(context=ternlib.client_tls_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("carol", "first")
        s.login("carol", "s3cond pass")


# ---- concurrency and shutdown ----

def test_concurrent_sessions_share_the_cleanup_link(tern):
    import threading
    t = make(tern, rules="end_delay 0.2\n")
    port = t.ports["submission"]
    replies, errors = [], []

    def client(n):
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                c.ehlo("c.test")
                for i in range(4):
                    c.mail("app@example.test")
                    c.rcpt(f"u{n}-{i}@dest.test")
                    code, text = c.data(msg(subject=f"{n}-{i}"))
                    replies.append((code, text.decode(), f"{n}-{i}"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert errors == []
    assert len(replies) == 160 and all(code == 250 for code, _, _ in replies)
    commits = {r["qid"]: r for r in cleanup_commits(t)}
    assert len(commits) == 160
    # Each 250 names the commit of that very message.
    for _, text, tag in replies:
        qid = text.split("queued as ")[1]
        assert commits[qid]["rcpts"] == [f"u{tag}@dest.test"]
        assert f"Subject: {tag}\r\n".encode() in cleanup_message(t, qid)


def test_sigterm_lets_a_transaction_finish(tern):
    t = make(tern)
    c = Raw(t.ports["submission"])
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<app@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<u@dest.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.send(b"Subject: x\r\n\r\npart one\r\n")
    t.proc.send_signal(15)
    time.sleep(0.5)
    assert t.proc.poll() is None
    assert c.cmd("part two\r\n.").startswith("250 2.0.0")
    assert c.cmd("NOOP").startswith("421 4.3.2")
    assert c.closed()
    assert t.proc.wait(10) == 0
    assert len(cleanup_commits(t)) == 1


def test_random_abuse_leaves_the_server_serving(tern):
    """Sessions that send fragments of valid and invalid SMTP in random
    pieces and vanish at random points: no crash, no sanitizer report
    (checked at teardown), the same process still serves mail."""
    import random
    t = make(tern, tls=True, users={"u": "p"}, smtpd={"max_errors": "50"})
    port = t.ports["submission"]
    pid = t.pids_of("smtpd")
    words = [b"EHLO x\r\n", b"HELO x\r\n", b"MAIL FROM:<app@example.test>\r\n",
             b"MAIL FROM:<a@b@c> SIZE=9\r\n", b"RCPT TO:<u@dest.test>\r\n",
             b"RCPT TO:<postmaster>\r\n", b"DATA\r\n", b"BDAT 5\r\n", b"BDAT 3 LAST\r\n",
             b"abc", b"\r\n.\r\n", b"\n.\n", b".\r\n", b"RSET\r\n", b"NOOP\r\n",
             b"AUTH PLAIN\r\n", b"AUTH LOGIN dQ==\r\n", b"cA==\r\n", b"*\r\n",
             b"STARTTLS\r\n", b"VRFY x\r\n", b"\x00\xff\r", b"x" * 700,
             b"QUIT\r\n", b"From: a@other.test\r\n\r\n"]
    rng = random.Random(5321)
    for _ in range(60):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            for _ in range(rng.randint(1, 25)):
                s.sendall(b"".join(rng.choice(words)
                                   for _ in range(rng.randint(1, 4))))
                if rng.random() < 0.3:
                    try:
                        s.recv(4096)
                    except socket.timeout:
                        pass
            if rng.random() < 0.5:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        except OSError:
            pass
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.ehlo("c.test")
        c.mail("app@example.test")
        c.rcpt("u@dest.test")
        assert c.data(msg())[0] == 250
    assert t.pids_of("smtpd") == pid
