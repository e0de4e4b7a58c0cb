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
