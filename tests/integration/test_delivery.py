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
