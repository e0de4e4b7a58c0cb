"""The whole pipeline with every daemon real: an application submits over
SMTP to tern-smtpd, tern-cleanup fixes the message up, tern-signer signs
it, it is committed to the queue, tern-qmgr schedules it, tern-smtp looks
up the MX (dnsmasq) and delivers it to an aiosmtpd sink, where dkimpy
verifies the signature. No test doubles."""
import base64
import ctypes
import json
import os
import re
import signal
import smtplib
import socket
import stat
import subprocess

import dkim
import pytest

import ternlib
from ternlib import Dns, wait_for

SINK_HOST = "127.0.0.3"		# not an address tern listens on


def dkim_key(test_dir):
    key = os.path.join(test_dir, "example.test.s1.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", key],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform",
                          "DER"], check=True, capture_output=True).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    return key, record


def pipeline(tern, sinks, test_dir, sink_kw=None, delivery=None):
    sink = sinks(host=SINK_HOST, **(sink_kw or {}))
    dns = Dns(["mx-host=dest.test,mx.dest.test,10",
               f"host-record=mx.dest.test,{SINK_HOST}"], test_dir)
    key, record = dkim_key(test_dir)
    sections = {
        "delivery": {"dns_servers": dns.server, "smtp_port": str(sink.port),
                     "tls": "none", "retry_schedule": "1s",
                     **(delivery or {})},
        "domain example.test": {"dkim_selector": "s1", "dkim_key": key},
    }
    t = tern(sections)
    port = t.listen("submission", "submission", trusted_networks="127.0.0.0/8")
    t.start()
    return t, port, sink, dns, record


def submit(port, rcpt, subject="hello"):
    msg = (f"From: App <app@example.test>\r\nTo: <{rcpt}>\r\n"
           f"Subject: {subject}\r\n\r\nA message from the app.\r\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("app.example.test")
        # A MAIL refused (4xx while smtpd is not yet connected to
        # cleanup) is the answer: the RCPT after it would only say 503.
        code, text = s.mail("app@example.test")
        if code != 250:
            return code, text.decode()
        code, text = s.rcpt(rcpt)
        if code != 250:
            return code, text.decode()
        code, text = s.data(msg.encode())
        return code, text.decode()


def queue_id(reply_text):
    m = re.search(r"queued as (\S+)", reply_text)
    assert m, reply_text
    return m.group(1)


def events(t):
    r = t.ternctl("events", check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_submitted_message_is_signed_and_delivered(tern, sinks, test_dir):
    t, port, sink, dns, record = pipeline(tern, sinks, test_dir)
    try:
        code, text = submit(port, "user@dest.test")
        assert code == 250, text
        qid = queue_id(text)
        got = sink.wait_messages(1, timeout=30)[0]
        assert got["to"] == ["user@dest.test"]
        data = got["data"]
        # cleanup's fix-ups: Message-ID, Date and our Received were added
        assert re.search(rb"(?im)^Message-ID: <[^>]+@mail\.tern\.test>", data)
        assert re.search(rb"(?im)^Date: ", data)
        assert re.search(rb"(?im)^Received: from ", data)
        # the signer's signature verifies against the published key
        assert data.startswith(b"DKIM-Signature:") or b"\nDKIM-Signature:" in data
        assert dkim.verify(data, dnsfunc=lambda name, timeout=5: record), data[:600]
        # the queue is empty again and the journey is told by the events
        wait_for(lambda: any(e.get("type") == "delivered" for e in events(t)),
                 15, what="a delivered event")
        trace = t.ternctl("trace", qid, check=True).stdout
        assert "delivered" in trace and "user@dest.test" in trace, trace
        t.wait_log(rf"{qid}: to=<user@dest.test>, relay=mx\.dest\.test\[{SINK_HOST}\]"
                   rf":{sink.port}.*status=sent")
    finally:
        dns.stop()


def tcp_nodelay_of(pid, wanted):
    """TCP_NODELAY of the IPv4 TCP sockets of process pid whose (local
    port, remote port) wanted() accepts, read on copies of its descriptors
    (pidfd_getfd: root, or the daemons' own user)."""
    ports = {}
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            x = line.split()
            ports[x[9]] = (int(x[1].split(":")[1], 16),
                           int(x[2].split(":")[1], 16))
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    found = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            m = re.fullmatch(r"socket:\[(\d+)\]", link)
            if not m or m.group(1) not in ports or \
                    not wanted(*ports[m.group(1)]):
                continue
            copy = libc.syscall(438, pidfd, int(fd), 0)	# pidfd_getfd
            if copy < 0:
                raise OSError(ctypes.get_errno(), "pidfd_getfd")
            with socket.socket(fileno=copy) as sock:
                found.append(sock.getsockopt(socket.IPPROTO_TCP,
                                             socket.TCP_NODELAY))
    finally:
        os.close(pidfd)
    return found


def test_smtp_connections_send_small_writes_at_once(tern, sinks, test_dir):
    """tern-smtpd's client connections and tern-smtp's connections to a
    server have TCP_NODELAY: a reply or the last bytes of a message are
    not held back for the peer's delayed ACK (bench/README.md)."""
    t, port, sink, dns, record = pipeline(
        tern, sinks, test_dir, delivery={"connection_idle_timeout": "60s"})
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("app.example.test")
            refused = s.sendmail("app@example.test", ["user@dest.test"],
                                 b"From: <app@example.test>\r\n"
                                 b"Subject: hi\r\n\r\nhello\r\n")
            assert refused == {}, refused
            sink.wait_messages(1, timeout=30)
            # the client's session is still open, and so is the delivery
            # connection, cached for the next message
            server = [v for pid in t.pids_of("smtpd")
                      for v in tcp_nodelay_of(
                          pid, lambda lp, rp: lp == port and rp != 0)]
            client = [v for pid in t.pids_of("smtp")
                      for v in tcp_nodelay_of(
                          pid, lambda lp, rp: rp == sink.port)]
        assert server and all(server), server
        assert client and all(client), client
    finally:
        dns.stop()


def test_hard_bounce_suppresses_the_address(tern, sinks, test_dir):
    def refuse(address):
        return "550 5.1.1 no such user" if address.startswith("gone@") else None

    t, port, sink, dns, _ = pipeline(tern, sinks, test_dir,
                                     sink_kw={"rcpt_reply": refuse})
    try:
        code, text = submit(port, "gone@dest.test")
        assert code == 250, text
        qid = queue_id(text)
        wait_for(lambda: any(e.get("type") == "bounced" for e in events(t)),
                 30, what="a bounced event")
        bounced = [e for e in events(t) if e.get("type") == "bounced"][0]
        assert "5.1.1" in json.dumps(bounced)
        # classified by conf/bounce-classes (or the built-in rules)
        assert bounced["bounce_class"] == "bad-mailbox", bounced
        t.wait_log(rf"{qid}: to=<gone@dest.test>.*status=bounced")
        wait_for(lambda: "gone@dest.test" in
                 t.ternctl("suppression", "list").stdout, 15,
                 what="the address on the suppression list")
        # the next submission to it is refused at RCPT
        code, text = submit(port, "gone@dest.test")
        assert code // 100 == 5, (code, text)
        assert sink.messages == []
        # once the operator removes it, mail to it is accepted again
        t.ternctl("suppression", "remove", "gone@dest.test", check=True)
        code, text = submit(port, "gone@dest.test")
        assert code == 250, (code, text)
    finally:
        dns.stop()


def test_temporary_failure_is_retried_until_delivered(tern, sinks, test_dir):
    tries = []

    def later_then_ok(address):
        tries.append(address)
        return "451 4.3.0 try again" if len(tries) == 1 else None

    t, port, sink, dns, _ = pipeline(tern, sinks, test_dir,
                                     sink_kw={"rcpt_reply": later_then_ok})
    try:
        code, text = submit(port, "slow@dest.test")
        assert code == 250, text
        qid = queue_id(text)
        sink.wait_messages(1, timeout=60)
        assert len(tries) >= 2
        kinds = [e.get("type") for e in events(t)]
        assert "deferred" in kinds and "delivered" in kinds, kinds
        t.wait_log(rf"{qid}: to=<slow@dest.test>.*status=deferred")
    finally:
        dns.stop()


@pytest.mark.parametrize("count", [40])
def test_many_messages_all_arrive_once(tern, sinks, test_dir, count):
    t, port, sink, dns, record = pipeline(tern, sinks, test_dir)
    try:
        ids = set()
        for i in range(count):
            code, text = submit(port, f"u{i}@dest.test", subject=f"n{i}")
            assert code == 250, text
            ids.add(queue_id(text))
        assert len(ids) == count
        got = sink.wait_messages(count, timeout=60)
        rcpts = sorted(m["to"][0] for m in got)
        assert rcpts == sorted(f"u{i}@dest.test" for i in range(count))
        for m in got:
            assert dkim.verify(m["data"], dnsfunc=lambda name, timeout=5: record)
    finally:
        dns.stop()


def test_jailed_smtpd_reaches_cleanup_after_restarts(tern, sinks, test_dir):
    """tern-smtpd reaches tern-cleanup only through the socket ternd binds
    in its jail (run_dir/jail/smtpd/private/cleanup, passed to tern-cleanup
    as unix:cleanup-smtpd): mail still flows after cleanup is killed
    (ternd restarts it with the same socket), after a reload (every daemon
    replaced) and after a new ternd, which binds a new socket in place of
    the stale one, and clears what else an older run left there."""
    t, port, sink, dns, record = pipeline(tern, sinks, test_dir)
    jail = os.path.join(t.run_dir, "jail", "smtpd")

    def accepted(rcpt):
        # the replaced daemons connect again within moments: until then a
        # submission gets 4xx, never a lost 250
        result = []

        def attempt():
            code, text = submit(port, rcpt)
            assert code == 250 or code // 100 == 4, (code, text)
            result.append(text)
            return code == 250
        wait_for(attempt, 20, interval=0.3, what=f"a 250 for {rcpt}")
        return queue_id(result[-1])

    def bound():
        # A socket of its own, not a link to run_dir/private/cleanup.
        got = os.stat(os.path.join(jail, "private", "cleanup"))
        general = os.stat(os.path.join(t.run_dir, "private", "cleanup"))
        return stat.S_ISSOCK(got.st_mode) and got.st_nlink == 1 and \
            got.st_ino != general.st_ino

    try:
        assert ternlib.tree(jail) == ["private", "private/cleanup"]
        assert bound()
        ids = [accepted("first@dest.test")]

        jailed = os.stat(os.path.join(jail, "private", "cleanup")).st_ino
        old = t.pids_of("cleanup")
        os.kill(old[0], signal.SIGKILL)
        wait_for(lambda: t.pids_of("cleanup") and t.pids_of("cleanup") != old,
                 15, what="ternd to restart tern-cleanup")
        ids.append(accepted("after-kill@dest.test"))
        # The new tern-cleanup serves the same socket ternd keeps.
        assert os.stat(os.path.join(jail, "private", "cleanup")).st_ino == jailed

        old = t.pids_of("smtpd")
        t.proc.send_signal(signal.SIGHUP)
        t.wait_log(r"reload complete")
        wait_for(lambda: t.pids_of("smtpd") and t.pids_of("smtpd") != old,
                 15, what="a new tern-smtpd")
        ids.append(accepted("after-reload@dest.test"))

        # A ternd killed outright leaves its sockets behind; put
        # a link to its qmgr socket in the jail as an older run might have.
        t.kill()
        os.link(os.path.join(t.run_dir, "private", "qmgr"),
                os.path.join(jail, "private", "qmgr"))
        t.start()
        # (tern-pickup logs "daemon started" too: the master's line)
        t.wait_log(r"/master\[\d+\]: daemon started", count=2)
        assert ternlib.tree(jail) == ["private", "private/cleanup"]
        assert bound()
        t.wait_log(r"removed .*/jail/smtpd/private/qmgr")
        ids.append(accepted("after-new-ternd@dest.test"))

        got = sink.wait_messages(4, timeout=60)
        assert sorted(m["to"][0] for m in got) == sorted(
            ["first@dest.test", "after-kill@dest.test",
             "after-reload@dest.test", "after-new-ternd@dest.test"])
        assert len(set(ids)) == 4
    finally:
        dns.stop()
