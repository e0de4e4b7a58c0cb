"""tern-smtpd: submission, smtps and inbound listeners, ESMTP extensions,
AUTH, the hand-off to cleanup (the test double tests/tools/test_cleanup)
and the hardening the issue lists. Clients: smtplib, raw sockets, swaks,
openssl s_client."""
import base64
import os
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
