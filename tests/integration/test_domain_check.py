"""ternctl domain check: DKIM, SPF (evaluated by libspf2, its look-ups
sent through libunbound to the configured dns_servers), DMARC and the
return path's MX, against a dnsmasq zone on a loopback port (without
--ip: in a network namespace of the test's own, whose addresses it knows)."""
import os
import shutil
import subprocess
import sys

import pytest

import ternlib
from test_signer import keygen, txt_option


@pytest.fixture
def domains(tern, test_dir):
    """example.test (rsa key published, return path bounces.example.test
    with SPF through an include, DMARC p=reject, MX), news.example.test
    (key published, its own SPF with ~all, DMARC inherited) and
    other.test (nothing published)."""
    t = tern()
    keys = os.path.join(test_dir, "keys")
    os.makedirs(keys, exist_ok=True)
    paths = {d: os.path.join(keys, d + ".pem")
             for d in ("example.test", "news.example.test", "other.test")}
    zone = [txt_option(keygen(t, d, "s1", paths[d]))
            for d in ("example.test", "news.example.test")]
    keygen(t, "other.test", "s1", paths["other.test"])
    zone += [
        "txt-record=bounces.example.test,v=spf1 include:_spf.example.test -all",
        "txt-record=_spf.example.test,v=spf1 ip4:192.0.2.0/24 "
        "ip6:2001:db8::/32 -all",
        "txt-record=_dmarc.example.test,v=DMARC1; p=reject; rua=mailto:d@example.test",
        "mx-host=bounces.example.test,mx.example.test,10",
        "txt-record=news.example.test,v=spf1 ip4:192.0.2.0/24 ~all",
    ]
    dns = ternlib.Dns(zone, test_dir)
    t.sections["delivery"] = {"dns_servers": dns.server}
    t.sections["domain example.test"] = {
        "dkim_selector": "s1", "dkim_key": paths["example.test"],
        "return_path": "bounces.example.test"}
    t.sections["domain news.example.test"] = {
        "dkim_selector": "s1", "dkim_key": paths["news.example.test"]}
    t.sections["domain other.test"] = {
        "dkim_selector": "s1", "dkim_key": paths["other.test"]}
    t.write_config()
    yield t, dns
    dns.stop()


def check(t, *args):
    r = t.ternctl("domain", "check", *args)
    return r.returncode, r.stdout.splitlines(), r.stderr


def test_a_domain_set_up_right_passes(domains):
    t, dns = domains
    rc, lines, err = check(t, "example.test", "--ip", "192.0.2.7",
                           "--ip", "2001:db8::25")
    assert rc == 0, (lines, err)
    assert lines == [
        "example.test dkim s1: ok (rsa-sha256, 2048 bits)",
        "example.test spf: ok (192.0.2.7 may send for bounces.example.test)",
        "example.test spf: ok (2001:db8::25 may send for bounces.example.test)",
        "example.test dmarc: ok (p=reject at _dmarc.example.test; DKIM "
        "aligned: d=example.test; SPF aligned through the return path)",
        "example.test return-path: ok (bounces.example.test MX "
        "mx.example.test: it must lead to tern's inbound listener)",
    ]


def test_an_address_outside_the_spf_policy_fails(domains):
    t, dns = domains
    rc, lines, err = check(t, "example.test", "--ip", "198.51.100.7")
    assert rc == 1
    spf = [l for l in lines if " spf: " in l]
    assert len(spf) == 1, lines
    assert spf[0].startswith(
        "example.test spf: fail for 198.51.100.7 at bounces.example.test"), spf
    # softfail (~all) is told apart, and DMARC is inherited from the parent
    rc, lines, err = check(t, "news.example.test", "--ip", "198.51.100.7")
    assert rc == 1
    assert any(l.startswith("news.example.test spf: softfail for "
                            "198.51.100.7 at news.example.test")
               for l in lines), lines
    assert ("news.example.test dmarc: ok (p=reject at _dmarc.example.test; "
            "DKIM aligned: d=news.example.test; SPF aligned through the "
            "return path)") in lines


def test_nothing_published_is_reported_as_missing(domains):
    t, dns = domains
    rc, lines, err = check(t, "other.test", "--ip", "192.0.2.7")
    assert rc == 1
    assert lines[0].startswith("other.test dkim s1: missing record "
                               "s1._domainkey.other.test")
    assert lines[1].startswith("other.test spf: missing record at other.test")
    assert lines[2].startswith("other.test dmarc: missing record "
                               "_dmarc.other.test")
    assert len(lines) == 3, lines  # no return path: no MX line
    # every domain when none is named; exit 1 since one has problems
    rc, lines, err = check(t, "--ip", "192.0.2.7")
    assert rc == 1
    assert {l.split()[0] for l in lines} == {
        "example.test", "news.example.test", "other.test"}


def servfail_server():
    """A DNS server on a loopback port that answers SERVFAIL to every
    query (a broken resolver: quicker to meet than one that is down)."""
    import socket
    import threading
    import dnslib
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                data, peer = sock.recvfrom(4096)
            except OSError:
                return
            reply = dnslib.DNSRecord.parse(data).reply()
            reply.header.rcode = dnslib.RCODE.SERVFAIL
            sock.sendto(reply.pack(), peer)

    threading.Thread(target=serve, daemon=True).start()
    return sock


def test_a_dns_server_that_fails_is_no_absence(domains):
    t, dns = domains
    broken = servfail_server()
    try:
        t.sections["delivery"] = {
            "dns_servers": f"127.0.0.1@{broken.getsockname()[1]}"}
        t.write_config()
        rc, lines, err = check(t, "example.test", "--ip", "192.0.2.7")
    finally:
        broken.close()
    assert rc == 1
    assert not [l for l in lines if "missing" in l], lines
    assert any("spf: lookup of bounces.example.test TXT failed" in l
               for l in lines), lines
    assert any("dmarc: lookup of _dmarc.example.test TXT failed" in l
               for l in lines), lines
    assert any("return-path: lookup of bounces.example.test MX failed" in l
               for l in lines), lines


def test_usage_errors(domains):
    t, dns = domains
    assert check(t, "example.test", "--ip", "not-an-ip")[0] == 2
    assert check(t, "--bogus")[0] == 2
    rc, lines, err = check(t, "nowhere.test")
    assert rc == 1 and "is not a [domain]" in err


# ---- without --ip: this host's addresses, in a network namespace ----

NETNS_DNS_PORT = 5353


@pytest.fixture
def netns(request):
    """A network namespace of our own whose only global addresses are
    192.0.2.10/24 and 2001:db8::10/64 (on a veth pair inside it; a dummy
    interface needs a kernel module) besides loopback. Returns its name;
    the processes started in it and the namespace go at teardown."""
    name = f"tern-spf-{os.getpid()}-{abs(hash(request.node.name)) % 10000}"
    started = []

    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "veth0", "type", "veth", "peer", "name",
           "veth1")
        ip("-n", name, "addr", "add", "192.0.2.10/24", "dev", "veth0")
        ip("-n", name, "addr", "add", "2001:db8::10/64", "dev", "veth0", "nodad")
        ip("-n", name, "link", "set", "veth0", "up")
        ip("-n", name, "link", "set", "veth1", "up")
        yield name, started
    finally:
        for p in started:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        assert name not in subprocess.run(["ip", "netns", "list"],
                                          capture_output=True,
                                          text=True).stdout


def netns_dns(ns, started, records, test_dir):
    """dnsmasq on 127.0.0.1:NETNS_DNS_PORT inside the namespace."""
    log = os.path.join(test_dir, "dnsmasq-netns.log")
    exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    p = subprocess.Popen(
        ["ip", "netns", "exec", ns, exe, "--keep-in-foreground",
         "--conf-file=/dev/null", f"--port={NETNS_DNS_PORT}", "--no-resolv",
         "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1",
         "--local=/test/", "--log-facility=" + log, "--log-queries",
         "--pid-file=", "--user=root"] + ["--" + r for r in records],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started.append(p)
    probe = ("import sys; sys.path.insert(0, %r); import dns_probe; "
             "sys.exit(0 if dns_probe.answers('127.0.0.1', %d) else 1)"
             % (os.path.dirname(__file__), NETNS_DNS_PORT))
    ternlib.wait_for(lambda: p.poll() is not None or subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", probe]).returncode == 0,
        10, what="dnsmasq in the namespace")
    assert p.poll() is None, p.stderr.read().decode()
    return log


def test_without_ip_the_hosts_global_addresses_are_checked(tern, test_dir,
                                                           netns):
    """ternctl domain check without --ip evaluates SPF for this host's
    global addresses, and only those (not loopback or link-local): pass
    where the policy lists them, fail for the one a policy excludes."""
    ns, started = netns
    log = netns_dns(ns, started, [
        "txt-record=pass.test,v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all",
        "txt-record=fail.test,v=spf1 -ip4:192.0.2.10 ip4:192.0.2.0/24 "
        "ip6:2001:db8::/32 -all",
    ], test_dir)
    t = tern()
    t.sections["delivery"] = {"dns_servers": f"127.0.0.1@{NETNS_DNS_PORT}"}
    t.sections["domain pass.test"] = {}
    t.sections["domain fail.test"] = {}
    t.write_config()

    def check_in_netns(domain):
        r = subprocess.run(
            ["ip", "netns", "exec", ns,
             os.path.join(ternlib.BUILD_DIR, "src/ctl/ternctl"), "-c",
             t.config_path, "domain", "check", domain],
            capture_output=True, text=True, env=ternlib.daemon_env(),
            timeout=60)
        return r.returncode, [l for l in r.stdout.splitlines()
                              if " spf: " in l], r
    rc, spf, r = check_in_netns("pass.test")
    assert sorted(spf) == [
        "pass.test spf: ok (192.0.2.10 may send for pass.test)",
        "pass.test spf: ok (2001:db8::10 may send for pass.test)",
    ], r.stdout + r.stderr
    rc, spf, r = check_in_netns("fail.test")
    assert rc == 1, r.stdout + r.stderr
    spf = sorted(spf)
    assert len(spf) == 2, r.stdout
    assert spf[0].startswith("fail.test spf: fail for 192.0.2.10 at fail.test"), spf
    assert spf[1] == "fail.test spf: ok (2001:db8::10 may send for fail.test)", spf
    # The answers came from the namespace's dnsmasq.
    with open(log) as f:
        assert "query[TXT] fail.test from 127.0.0.1" in f.read()
