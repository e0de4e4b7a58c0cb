"""tern-smtp, the delivery agent, against real peers: dnsmasq serving MX,
A and AAAA on a loopback port, aiosmtpd sinks on several 127.x addresses
(one port for all, as [delivery] smtp_port is one), and hostile servers
written here. Jobs come from tests/tools/test_qmgr, installed as tern-qmgr
(the real qmgr is rewritten in parallel); results are read from its log.
"""
import os
import re
import socket
import ssl
import threading
import time

import pytest

import ternlib

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def setup_tern(tern, dns_server, port, **delivery):
    keys = {"dns_servers": dns_server, "smtp_port": str(port),
            "tls": "none", "agents": "1", "connect_timeout": "3s",
            "command_timeout": "5s", "data_timeout": "5s",
            "dns_timeout": "5s"}
    keys.update({k: str(v) for k, v in delivery.items()})
    t = tern(sections={"delivery": keys, "server": {"verbose": "yes"}})
    q = ternlib.use_qmgr_double(t)
    return t, q


def rcpt_results(results):
    return [r for res in results for r in res["results"]]


@pytest.fixture
def port():
    return ternlib.free_port_on(HOSTS)


def test_mx_down_falls_back_to_next_mx(tern, sinks, dns, port):
    d = dns(["mx-host=example.test,mx1.example.test,10",
             "mx-host=example.test,mx2.example.test,20",
             "host-record=mx1.example.test,127.0.0.2",
             "host-record=mx2.example.test,127.0.0.3"])
    sink = sinks(host="127.0.0.3", port=port)
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["alice@example.test"])
    t.start()
    q.job(qid, "example.test")
    res = q.wait_results(1)
    r, = rcpt_results(res)
    assert r["code"] == 250 and r["status"] == "2.0.0", r
    assert r["stage"] == "dot", r
    assert r["host"] == "mx2.example.test" and r["addr"] == "127.0.0.3"
    msg, = sink.wait_messages(1)
    assert msg["to"] == ["alice@example.test"]
    assert msg["from"] == "sender@tern.test"
    # Dot-stuffing went both ways: the line that starts with a dot is intact.
    assert b"\r\n.leading dot\r\n" in msg["data"]
    t.wait_log(r"%s: to=<alice@example.test>, relay=mx2.example.test"
               r"\[127.0.0.3\]:%d, delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/"
               r"[0-9.]+/[0-9.]+, dsn=2.0.0, status=sent \(250 " % (qid, port))


def simple_dns(dns, domain="example.test", hosts=(("mx1", 10, "127.0.0.2"),)):
    recs = []
    for name, pref, addr in hosts:
        recs.append(f"mx-host={domain},{name}.{domain},{pref}")
        recs.append(f"host-record={name}.{domain},{addr}")
    return dns(recs)


def test_equal_preferences_spread(tern, sinks, dns, port):
    d = simple_dns(dns, hosts=(("mx1", 10, "127.0.0.2"),
                               ("mx2", 10, "127.0.0.3")))
    s1 = sinks(host="127.0.0.2", port=port)
    s2 = sinks(host="127.0.0.3", port=port)
    t, q = setup_tern(tern, d.server, port, connection_idle_timeout="0")
    qids = q.queue(["bob@example.test"], count=24)
    t.start()
    for qid in qids:
        q.job(qid, "example.test")
    res = q.wait_results(24)
    assert all(r["code"] == 250 for r in rcpt_results(res))
    s1.wait_messages(1)
    s2.wait_messages(1)
    assert len(s1.messages) + len(s2.messages) == 24


def test_implicit_mx(tern, sinks, dns, port):
    d = dns(["host-record=implicit.test,127.0.0.4"])
    sink = sinks(host="127.0.0.4", port=port)
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["carol@implicit.test"])
    t.start()
    q.job(qid, "implicit.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 250 and r["host"] == "implicit.test", r
    assert sink.wait_messages(1)[0]["to"] == ["carol@implicit.test"]


@pytest.mark.parametrize("domain,status,pattern", [
    ("nullmx.test", "5.1.10", "null MX"),
    ("nosuch.test", "5.1.2", "Host not found"),
])
def test_permanent_dns_failures(tern, dns, port, domain, status, pattern):
    d = dns(["mx-host=nullmx.test,.,0"])
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue([f"dave@{domain}"])
    t.start()
    q.job(qid, domain)
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 0 and r["status"] == status, r
    assert r["stage"] == "none", r
    assert pattern in r["text"]
    assert r["host"] == ""
    t.wait_log(r"%s: to=<dave@%s>, relay=none, .*dsn=%s, status=bounced"
               % (qid, domain, re.escape(status)))


def test_servfail_defers(tern, dns, port):
    # A zone forwarded to a server that does not answer: SERVFAIL or a
    # timeout, both deferrals.
    dead = ternlib.free_port()
    d = dns([f"server=/broken.test/127.0.0.1#{dead}"])
    t, q = setup_tern(tern, d.server, port, dns_timeout="3s")
    qid, = q.queue(["erin@broken.test"])
    t.start()
    q.job(qid, "broken.test")
    r, = rcpt_results(q.wait_results(1, timeout=30))
    assert r["code"] == 0 and r["status"] == "4.4.3", r


def test_mx_loop_to_ourselves(tern, dns, port):
    d = dns(["mx-host=loop.test,mail.tern.test,10",
             "host-record=mail.tern.test,127.0.0.2"])
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["frank@loop.test"])
    t.start()
    q.job(qid, "loop.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["status"] == "5.4.6" and "loops back to myself" in r["text"], r


def test_connection_reuse(tern, sinks, dns, port):
    d = simple_dns(dns)
    sink = sinks(host="127.0.0.2", port=port)
    t, q = setup_tern(tern, d.server, port, connection_idle_timeout="5s",
                      max_connections_per_destination="1")
    qids = q.queue(["gina@example.test"], count=10)
    t.start()
    for qid in qids:
        q.job(qid, "example.test")
    res = q.wait_results(10)
    assert all(r["code"] == 250 for r in rcpt_results(res))
    msgs = sink.wait_messages(10)
    # One client port: one connection carried all ten messages.
    assert len({m["peer"] for m in msgs}) == 1, [m["peer"] for m in msgs]


def test_per_recipient_outcomes(tern, sinks, dns, port):
    d = simple_dns(dns)

    def rcpt_reply(addr):
        if addr.startswith("soft"):
            return "451 4.2.1 mailbox busy"
        if addr.startswith("hard"):
            return "550 5.1.1 no such user"
        return None
    sink = sinks(host="127.0.0.2", port=port, rcpt_reply=rcpt_reply)
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["ok@example.test", "soft@example.test",
                    "hard@example.test"])
    t.start()
    q.job(qid, "example.test")
    res = {r["index"]: r for r in rcpt_results(q.wait_results(1))}
    assert res[0]["code"] == 250
    assert res[1]["code"] == 451 and res[1]["status"] == "4.2.1"
    assert res[2]["code"] == 550 and res[2]["status"] == "5.1.1"
    assert "in reply to RCPT TO command" in res[2]["text"]
    # qmgr decides on the stage, not on the wording
    assert [res[i]["stage"] for i in range(3)] == ["dot", "rcpt", "rcpt"]
    assert sink.wait_messages(1)[0]["to"] == ["ok@example.test"]


def test_data_rejection_applies_to_accepted(tern, sinks, dns, port):
    d = simple_dns(dns)
    sinks(host="127.0.0.2", port=port,
          data_reply=lambda env: "554 5.7.1 content rejected")
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["a1@example.test", "a2@example.test"])
    t.start()
    q.job(qid, "example.test")
    res = rcpt_results(q.wait_results(1))
    assert [r["code"] for r in res] == [554, 554]
    assert all(r["status"] == "5.7.1" for r in res)
    assert all(r["stage"] == "dot" for r in res), res


def tls_sink(sinks, test_dir, port, host="127.0.0.2", cn="mx1.example.test"):
    cert, key = ternlib.tls_files(test_dir, cn=cn)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return sinks(host=host, port=port, tls_context=ctx), cert


def test_opportunistic_tls(tern, sinks, dns, port, test_dir):
    d = simple_dns(dns)
    sink, _cert = tls_sink(sinks, test_dir, port)
    t, q = setup_tern(tern, d.server, port, tls="opportunistic")
    qid, = q.queue(["tls@example.test"])
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 250 and r["tls"].startswith("TLSv1"), r
    assert sink.wait_messages(1)[0]["tls"] is True
    t.wait_log(r"Untrusted TLS connection established to mx1.example.test"
               r"\[127.0.0.2\]:%d: TLSv1.[23] with cipher" % port)


def test_required_tls_verified(tern, sinks, dns, port, test_dir):
    d = simple_dns(dns)
    sink, cert = tls_sink(sinks, test_dir, port)
    t, q = setup_tern(tern, d.server, port, tls="required", tls_ca_file=cert)
    qid, = q.queue(["tls@example.test"])
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 250, r
    assert sink.wait_messages(1)[0]["tls"] is True
    t.wait_log(r"Trusted TLS connection established to mx1.example.test")


def test_required_tls_wrong_name_defers(tern, sinks, dns, port, test_dir):
    d = simple_dns(dns)
    sink, cert = tls_sink(sinks, test_dir, port, cn="other.example.test")
    t, q = setup_tern(tern, d.server, port, tls="required", tls_ca_file=cert)
    qid, = q.queue(["tls@example.test"])
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 0 and r["status"] == "4.7.5", r
    assert sink.messages == []


def test_required_tls_without_starttls_defers(tern, sinks, dns, port):
    d = simple_dns(dns)
    sink = sinks(host="127.0.0.2", port=port)
    t, q = setup_tern(tern, d.server, port, tls="required")
    qid, = q.queue(["clear@example.test"])
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 0 and r["status"] == "4.7.4", r
    assert "TLS is required, but was not offered" in r["text"]
    assert r["stage"] == "helo", r
    time.sleep(0.3)
    assert sink.messages == []


class Hostile:
    """A scripted SMTP server: script(conn, sock) runs per connection in
    a thread; it records what the client sent."""

    def __init__(self, host, port, script):
        self.script = script
        self.received = []
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.stopping = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        self.connections += 1
        conn.settimeout(20)
        try:
            self.script(self, conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def readline(self, conn):
        buf = b""
        while not buf.endswith(b"\n"):
            c = conn.recv(1)
            if not c:
                raise OSError("closed")
            buf += c
        self.received.append(buf)
        return buf

    def stop(self):
        self.stopping = True
        # close() alone leaves a thread blocked in accept() listening on
        # the port (a later test could reach it); shutdown() wakes it.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@pytest.fixture
def hostile():
    made = []

    def make(host, port, script):
        h = Hostile(host, port, script)
        made.append(h)
        return h
    yield make
    for h in made:
        h.stop()


def reply_after_ehlo(payload):
    """Greets, then answers EHLO with payload and waits."""
    def script(h, conn):
        conn.sendall(b"220 hostile ESMTP\r\n")
        h.readline(conn)
        conn.sendall(payload)
        while True:
            h.readline(conn)
    return script


def reply_at_mail(payload):
    def script(h, conn):
        conn.sendall(b"220 hostile ESMTP\r\n")
        h.readline(conn)
        conn.sendall(b"250-hostile\r\n250 PIPELINING\r\n")
        h.readline(conn)
        conn.sendall(payload)
        while True:
            h.readline(conn)
    return script


@pytest.mark.parametrize("script", [
    reply_after_ehlo(b"250-\r\n"),                       # then silence
    reply_after_ehlo(b"250-" + b"A" * 65536 + b"\r\n"),  # a 64 KiB line, silence
    reply_after_ehlo(b"250-x\r\n" * 40000),              # endless continuation
    reply_after_ehlo(b"250 ok\x00evil\r\n"),
    reply_after_ehlo(b"250 ok\n"),
    reply_after_ehlo(b"250-mx\r\n550 liar\r\n"),
    reply_after_ehlo(b"\xff\xfe garbage\r\n"),
    reply_at_mail(b"250 ok\r\n250 " + b"B" * 200000 + b"\r\n"),
    reply_at_mail(b"250 ok\r\n451 \x00\r\n"),
], ids=["empty-continuation", "64k-line", "endless", "nul", "bare-lf",
        "inconsistent", "garbage", "long-rcpt-reply", "nul-at-rcpt"])
def test_hostile_replies_defer(tern, dns, port, hostile, script):
    d = simple_dns(dns)
    h = hostile("127.0.0.2", port, script)
    t, q = setup_tern(tern, d.server, port, command_timeout="2s")
    qid, = q.queue(["victim@example.test"])
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1, timeout=30))
    assert r["code"] == 0 and r["status"].startswith("4."), r
    # DATA may end the pipelined MAIL/RCPT group (RFC 2920 3.1), but no
    # message content follows it: the agent saw no 354.
    sent = [l[:4] for l in h.received]
    if b"DATA" in sent:
        assert set(sent[sent.index(b"DATA") + 1:]) <= {b"QUIT", b"RSET"}, sent
    # The agent survived: it takes the next job.
    q.job(qid, "example.test")
    assert len(q.wait_results(2, timeout=30)) == 2
    assert t.pids_of("smtp")


def test_starttls_response_injection(tern, dns, port, hostile, test_dir):
    """Plaintext after the 220 to STARTTLS must never be read as a reply
    after the handshake; EHLO is repeated inside TLS."""
    d = simple_dns(dns)
    cert, key = ternlib.tls_files(test_dir, cn="mx1.example.test")
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(cert, key)
    after_tls = []

    def script(h, conn):
        conn.sendall(b"220 hostile ESMTP\r\n")
        h.readline(conn)
        conn.sendall(b"250-hostile\r\n250 STARTTLS\r\n")
        assert h.readline(conn).upper().startswith(b"STARTTLS")
        # The injection: a reply the client has not asked for yet.
        conn.sendall(b"220 Ready\r\n250-EVIL\r\n250 EVIL\r\n")
        tls = sctx.wrap_socket(conn, server_side=True)
        line = h.readline(tls)
        after_tls.append(line)
        tls.sendall(b"250-hostile\r\n250 8BITMIME\r\n")
        while True:
            line = h.readline(tls)
            after_tls.append(line)
            cmd = line[:4].upper()
            if cmd == b"DATA":
                tls.sendall(b"354 go\r\n")
                while h.readline(tls) != b".\r\n":
                    pass
                tls.sendall(b"250 2.0.0 accepted\r\n")
            elif cmd == b"QUIT":
                tls.sendall(b"221 bye\r\n")
                return
            else:
                tls.sendall(b"250 ok\r\n")

    hostile("127.0.0.2", port, script)
    t, q = setup_tern(tern, d.server, port, tls="opportunistic")
    qid, = q.queue(["inj@example.test"])
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1, timeout=30))
    assert after_tls[0].upper().startswith(b"EHLO"), after_tls
    assert r["code"] == 250 and r["tls"], r
    t.wait_log(r"byte\(s\) after the 220 to STARTTLS discarded")


@pytest.mark.parametrize("pipelining", [True, False])
def test_mail_rejection_fails_transaction(tern, dns, port, hostile,
                                          pipelining):
    d = simple_dns(dns)
    ehlo = b"250-hostile\r\n250 PIPELINING\r\n" if pipelining else \
        b"250 hostile\r\n"

    def script(h, conn):
        conn.sendall(b"220 hostile ESMTP\r\n")
        h.readline(conn)
        conn.sendall(ehlo)
        while True:
            line = h.readline(conn)
            if line.startswith(b"MAIL"):
                conn.sendall(b"553 5.7.1 sender refused\r\n")
            elif line.startswith(b"RCPT"):
                conn.sendall(b"503 5.5.1 need MAIL\r\n")
            elif line.startswith(b"QUIT"):
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")

    h = hostile("127.0.0.2", port, script)
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["r1@example.test", "r2@example.test"])
    t.start()
    q.job(qid, "example.test")
    res = rcpt_results(q.wait_results(1))
    assert [r["code"] for r in res] == [553, 553], res
    assert all("MAIL FROM" in r["text"] for r in res)
    assert all(r["stage"] == "mail" for r in res), res
    # Without PIPELINING no RCPT follows the refused MAIL; RSET cleans up.
    sent = [l[:4] for l in h.received]
    if not pipelining:
        assert b"RCPT" not in sent, sent
    ternlib.wait_for(lambda: b"RSET" in [l[:4] for l in h.received], 5,
                     what="RSET after the refused MAIL")


def test_pipelined_data_without_recipients(tern, dns, port, hostile):
    """DATA goes out with MAIL and RCPT (RFC 2920 3.1). When no recipient
    was accepted and the server still says 354 to it, a lone dot ends
    the empty message, then RSET; the recipient keeps its RCPT result."""
    d = simple_dns(dns)

    def script(h, conn):
        conn.sendall(b"220 hostile ESMTP\r\n")
        h.readline(conn)
        conn.sendall(b"250-hostile\r\n250 PIPELINING\r\n")
        while True:
            line = h.readline(conn)
            if line.startswith(b"RCPT"):
                conn.sendall(b"550 5.1.1 no such user\r\n")
            elif line.startswith(b"DATA"):
                conn.sendall(b"354 go ahead anyway\r\n")
            elif line.startswith(b"."):
                conn.sendall(b"554 5.5.1 no valid recipients\r\n")
            elif line.startswith(b"QUIT"):
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")

    h = hostile("127.0.0.2", port, script)
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["nobody@example.test"])
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 550 and r["stage"] == "rcpt", r
    ternlib.wait_for(lambda: b"RSET" in [l[:4] for l in h.received], 5,
                     what="RSET after the empty DATA")
    sent = [l.rstrip(b"\r\n") for l in h.received]
    data_at = [i for i, l in enumerate(sent) if l.startswith(b"DATA")][0]
    assert sent[data_at + 1:data_at + 3] == [b".", b"RSET"], sent


def test_lost_after_data_defers(tern, dns, port, hostile):
    d = simple_dns(dns)

    def script(h, conn):
        conn.sendall(b"220 hostile ESMTP\r\n")
        h.readline(conn)
        conn.sendall(b"250 hostile\r\n")
        while True:
            line = h.readline(conn)
            if line.startswith(b"DATA"):
                conn.sendall(b"354 go\r\n")
                while h.readline(conn) != b".\r\n":
                    pass
                return      # hang up instead of answering the dot
            conn.sendall(b"250 ok\r\n")

    hostile("127.0.0.2", port, script)
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["dup@example.test"])
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 0 and r["status"].startswith("4."), r
    assert "may have been delivered" in r["text"]


def test_eight_bit_to_server_without_8bitmime(tern, dns, port, hostile):
    d = simple_dns(dns)

    def script(h, conn):
        conn.sendall(b"220 old ESMTP\r\n")
        h.readline(conn)
        conn.sendall(b"250 old\r\n")
        while True:
            line = h.readline(conn)
            if line.startswith(b"QUIT"):
                conn.sendall(b"221 bye\r\n")
                return
            conn.sendall(b"250 ok\r\n")

    h = hostile("127.0.0.2", port, script)
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["eight@example.test"], eight_bit=True,
                   message="Subject: caf\u00e9\n\ncaf\u00e9\n")
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["status"] == "4.6.3", r
    assert not any(l.startswith(b"MAIL") for l in h.received)


def test_ipv6_only_mx(tern, sinks, dns):
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        port6 = s.getsockname()[1]
    d = dns(["mx-host=v6.test,mx6.v6.test,10",
             "host-record=mx6.v6.test,::1"])
    sink = sinks(host="::1", port=port6)
    t, q = setup_tern(tern, d.server, port6)
    qid, = q.queue(["ipv6@v6.test"])
    t.start()
    q.job(qid, "v6.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 250 and r["addr"] == "::1", r
    assert sink.wait_messages(1)[0]["to"] == ["ipv6@v6.test"]


def test_eight_bit_and_smtputf8_to_capable_server(tern, sinks, dns, port):
    d = simple_dns(dns)
    sink = sinks(host="127.0.0.2", port=port)
    t, q = setup_tern(tern, d.server, port)
    body = "Subject: caf\u00e9\n\nna\u00efve\n"
    qid, = q.queue(["j\u00fcrgen@example.test"], eight_bit=True,
                   smtputf8=True, message=body)
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 250, r
    msg, = sink.wait_messages(1)
    assert "na\u00efve".encode() in msg["data"]


def test_all_mx_down_defers(tern, dns, port):
    d = simple_dns(dns, hosts=(("mx1", 10, "127.0.0.2"),
                               ("mx2", 20, "127.0.0.3")))
    t, q = setup_tern(tern, d.server, port)
    qids = q.queue(["down@example.test"], count=3)
    t.start()
    for qid in qids:
        q.job(qid, "example.test")
    res = rcpt_results(q.wait_results(3))
    assert all(r["code"] == 0 and r["status"] == "4.4.1" for r in res), res
    assert all("Connection refused" in r["text"] for r in res)
    assert all(r["stage"] == "connect" for r in res), res
    t.wait_log(r"%s: to=<down@example.test>, relay=none, .*status=deferred "
               r"\(connect to mx2.example.test\[127.0.0.3\]:%d: Connection "
               r"refused\)" % (qids[0], port))


def greeting_script(payload):
    def script(h, conn):
        if payload:
            conn.sendall(payload)
        while True:
            h.readline(conn)
    return script


@pytest.mark.parametrize("payload", [None, b"421 4.3.2 busy\r\n",
                                     b"554 5.7.1 go away\r\n"],
                         ids=["silent", "421", "554"])
def test_bad_greeting_tries_next_mx(tern, sinks, dns, port, hostile, payload):
    d = simple_dns(dns, hosts=(("mx1", 10, "127.0.0.2"),
                               ("mx2", 20, "127.0.0.3")))
    hostile("127.0.0.2", port, greeting_script(payload))
    sink = sinks(host="127.0.0.3", port=port)
    t, q = setup_tern(tern, d.server, port, command_timeout="2s")
    qid, = q.queue(["greet@example.test"])
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 250 and r["addr"] == "127.0.0.3", r
    assert sink.wait_messages(1)


def test_max_messages_per_connection(tern, sinks, dns, port):
    d = simple_dns(dns)
    sink = sinks(host="127.0.0.2", port=port)
    t, q = setup_tern(tern, d.server, port, max_messages_per_connection="3",
                      max_connections_per_destination="1")
    qids = q.queue(["many@example.test"], count=7)
    t.start()
    for qid in qids:
        q.job(qid, "example.test")
    q.wait_results(7)
    msgs = sink.wait_messages(7)
    assert len({m["peer"] for m in msgs}) == 3, [m["peer"] for m in msgs]


def test_opportunistic_tls_handshake_failure_falls_back(tern, dns, port,
                                                        hostile):
    d = simple_dns(dns)
    delivered = []

    def script(h, conn):
        conn.sendall(b"220 broken-tls ESMTP\r\n")
        h.readline(conn)
        conn.sendall(b"250-broken-tls\r\n250 STARTTLS\r\n")
        while True:
            line = h.readline(conn)
            cmd = line[:4].upper()
            if cmd == b"STAR":
                conn.sendall(b"220 go ahead\r\n")
                conn.recv(4096)             # the ClientHello
                conn.sendall(b"this is not TLS\r\n" * 10)
                return
            if cmd == b"DATA":
                conn.sendall(b"354 go\r\n")
                while h.readline(conn) != b".\r\n":
                    pass
                delivered.append(True)
                conn.sendall(b"250 2.0.0 in clear\r\n")
            elif cmd == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")

    hostile("127.0.0.2", port, script)
    t, q = setup_tern(tern, d.server, port, tls="opportunistic")
    qid, = q.queue(["fallback@example.test"])
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 250 and r["tls"] == "", r
    assert delivered == [True]
    t.wait_log(r"TLS handshake with mx1.example.test\[127.0.0.2\] failed .*"
               r"trying again without TLS")


def test_address_literal(tern, sinks, dns, port):
    d = dns([])
    sink = sinks(host="127.0.0.2", port=port)
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["lit@[127.0.0.2]"])
    t.start()
    q.job(qid, "[127.0.0.2]")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 250 and r["addr"] == "127.0.0.2", r
    assert sink.wait_messages(1)[0]["to"] == ["lit@[127.0.0.2]"]


def test_mx_address_is_our_own_listener(tern, dns, port):
    """An MX whose address is one of our listeners on the SMTP port is
    us, whatever its name: with nothing more preferred, 5.4.6."""
    d = dns(["mx-host=alias.test,other-name.alias.test,10",
             "mx-host=alias.test,backup.alias.test,20",
             "host-record=other-name.alias.test,127.0.0.5",
             "host-record=backup.alias.test,127.0.0.3"])
    t, q = setup_tern(tern, d.server, port)
    t.sections["listen inbound"] = {"address": f"127.0.0.5:{port}",
                                    "mode": "inbound"}
    qid, = q.queue(["me@alias.test"])
    t.start()
    ternlib.wait_port("127.0.0.5", port)
    q.job(qid, "alias.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["status"] == "5.4.6" and "loops back to myself" in r["text"], r


def test_silent_destination_probed_by_one_connection(tern, dns, port,
                                                     hostile):
    """Jobs waiting for a destination whose server never greets share the
    fate of the first connection: one connection, all deferred."""
    d = simple_dns(dns)
    h = hostile("127.0.0.2", port, greeting_script(None))
    t, q = setup_tern(tern, d.server, port, command_timeout="2s")
    qids = q.queue(["slow@example.test"], count=5)
    t.start()
    for qid in qids:
        q.job(qid, "example.test")
    res = rcpt_results(q.wait_results(5))
    assert all(r["code"] == 0 and r["status"].startswith("4.") for r in res)
    assert all("timed out while greeting" in r["text"] for r in res), res
    assert all(r["stage"] == "connect" for r in res), res
    assert h.connections == 1


def serve_normally(h, conn, delivered):
    """A plain, well-behaved SMTP conversation on conn."""
    conn.sendall(b"220 slow ESMTP\r\n")
    while True:
        line = h.readline(conn)
        cmd = line[:4].upper()
        if cmd == b"EHLO":
            conn.sendall(b"250-slow\r\n250 PIPELINING\r\n")
        elif cmd == b"DATA":
            conn.sendall(b"354 go\r\n")
            while h.readline(conn) != b".\r\n":
                pass
            delivered.append(True)
            conn.sendall(b"250 2.0.0 ok\r\n")
        elif cmd == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return
        else:
            conn.sendall(b"250 ok\r\n")


def test_result_for_a_lost_qmgr_connection_is_dropped(tern, dns, port,
                                                      hostile):
    """Job ids belong to one qmgr connection: after qmgr restarts, the
    result of an old job is dropped, never sent to the new qmgr."""
    import signal
    d = simple_dns(dns)
    delivered = []

    def script(h, conn):
        time.sleep(3)
        serve_normally(h, conn, delivered)

    hostile("127.0.0.2", port, script)
    t, q = setup_tern(tern, d.server, port, command_timeout="10s")
    qid, = q.queue(["restart@example.test"])
    t.start()
    q.job(qid, "example.test")
    ternlib.wait_for(lambda: os.path.exists(q.jobs_path), 5)
    time.sleep(1)
    old, = t.pids_of("qmgr")
    os.kill(old, signal.SIGKILL)
    # The restarted double hands the job out again (as qmgr requeues).
    res = q.wait_results(1, timeout=30)
    t.wait_log(r"the connection to tern-qmgr that sent job 1 is gone: its "
               r"result is dropped")
    time.sleep(0.5)
    res = q.wait_results(1)
    assert len(res) == 1 and res[0]["results"][0]["code"] == 250, res
    assert len(delivered) == 2      # a duplicate, never a loss


def test_destination_max_connections(tern, sinks, dns, port):
    d = simple_dns(dns)
    sink = sinks(host="127.0.0.2", port=port)
    t, q = setup_tern(tern, d.server, port, connection_idle_timeout="5s")
    t.sections["destination example.test"] = {"max_connections": "1"}
    qids = q.queue(["shaped@example.test"], count=8)
    t.start()
    for qid in qids:
        q.job(qid, "example.test")
    q.wait_results(8)
    msgs = sink.wait_messages(8)
    assert len({m["peer"] for m in msgs}) == 1, [m["peer"] for m in msgs]


def test_connection_cache_between_jobs(tern, sinks, dns, port):
    """Jobs that come one after another (default limits) reuse the cached
    connection while it is idle."""
    d = simple_dns(dns)
    sink = sinks(host="127.0.0.2", port=port)
    t, q = setup_tern(tern, d.server, port)
    qids = q.queue(["cache@example.test"], count=10)
    t.start()
    for n, qid in enumerate(qids, 1):
        q.job(qid, "example.test")
        q.wait_results(n)
    msgs = sink.wait_messages(10)
    assert len({m["peer"] for m in msgs}) == 1, [m["peer"] for m in msgs]


def scripted_server(ehlo_reply, delivered, seen):
    """EHLO answered with ehlo_reply; HELO, MAIL, RCPT with 250."""
    def script(h, conn):
        conn.sendall(b"220 scripted ESMTP\r\n")
        while True:
            line = h.readline(conn)
            seen.append(line)
            cmd = line[:4].upper()
            if cmd == b"EHLO":
                conn.sendall(ehlo_reply)
            elif cmd == b"DATA":
                conn.sendall(b"354 go\r\n")
                while h.readline(conn) != b".\r\n":
                    pass
                delivered.append(True)
                conn.sendall(b"250 2.0.0 ok\r\n")
            elif cmd == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")
    return script


def test_helo_fallback(tern, dns, port, hostile):
    d = simple_dns(dns)
    delivered, seen = [], []
    hostile("127.0.0.2", port, scripted_server(
        b"502 5.5.2 EHLO not implemented\r\n", delivered, seen))
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["old@example.test"])
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["code"] == 250, r
    assert [l[:4] for l in seen[:3]] == [b"EHLO", b"HELO", b"MAIL"], seen
    # No ESMTP: no SIZE= parameter either.
    assert seen[2].rstrip() == b"MAIL FROM:<sender@tern.test>", seen


def test_size_limit_honoured(tern, dns, port, hostile):
    d = simple_dns(dns)
    delivered, seen = [], []
    hostile("127.0.0.2", port, scripted_server(
        b"250-small\r\n250 SIZE 100\r\n", delivered, seen))
    t, q = setup_tern(tern, d.server, port)
    qid, = q.queue(["big@example.test"], message="Subject: big\n\n" +
                   "x" * 500 + "\n")
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1))
    assert r["status"] == "5.3.4" and "exceeds size limit 100" in r["text"], r
    assert not any(l.startswith(b"MAIL") for l in seen)


def test_large_message_streamed_intact(tern, sinks, dns, port):
    """A message of many 64 KiB chunks, with dot-led lines across chunk
    boundaries, arrives byte for byte."""
    d = simple_dns(dns)
    sink = sinks(host="127.0.0.2", port=port)
    t, q = setup_tern(tern, d.server, port)
    lines = ["Subject: large", ""]
    for i in range(60000):
        lines.append(("." if i % 3 == 0 else "") + "line %d " % i +
                     "y" * (i % 50))
    text = "\n".join(lines) + "\n"
    qid, = q.queue(["large@example.test"], message=text)
    t.start()
    q.job(qid, "example.test")
    r, = rcpt_results(q.wait_results(1, timeout=60))
    assert r["code"] == 250, r
    msg, = sink.wait_messages(1)
    assert msg["data"] == text.replace("\n", "\r\n").encode()
